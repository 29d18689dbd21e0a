/* Milliseconds and microseconds of the monotonic and wall clocks. */
#ifndef ATOMSYNC_CLOCK_H
#define ATOMSYNC_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A timestamp (a file's times, say) in nanoseconds, to compare. */
static inline int64_t clock_ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* Monotonic: for durations and deadlines. */
static inline uint64_t clock_mono_ms(void)
{
	return clock_us(CLOCK_MONOTONIC) / 1000u;
}

/* Wall clock: for what is shown (metrics, status). */
static inline uint64_t clock_wall_ms(void)
{
	return clock_us(CLOCK_REALTIME) / 1000u;
}

#endif
