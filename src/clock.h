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
