/* Milliseconds and microseconds of the monotonic and wall clocks. */
#ifndef ATOMSYNC_CLOCK_H
#define ATOMSYNC_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A timestamp (a file's times, say) in nanoseconds, to compare; one
 * past the year 2262 or before 1678 (anyone may date a file so) is held
 * at the limit rather than overflowing. */
static inline int64_t clock_ts_ns(const struct timespec *t)
{
	if (t->tv_sec >= INT64_MAX / 1000000000LL)
		return INT64_MAX;
	if (t->tv_sec <= INT64_MIN / 1000000000LL)
		return INT64_MIN;
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* Whether clock_ts_ns() held the time at a limit: it then tells neither
 * the time nor its sub-second part. */
static inline bool clock_ns_held(int64_t ns)
{
	return ns == INT64_MAX || ns == INT64_MIN;
}

/* The timespec of clock_ts_ns()'s nanoseconds (a held one stays held). */
static inline struct timespec clock_ns_ts(int64_t ns)
{
	struct timespec t = {.tv_sec = (time_t)(ns / 1000000000LL),
			     .tv_nsec = (long)(ns % 1000000000LL)};

	if (t.tv_nsec < 0) {
		t.tv_sec--;
		t.tv_nsec += 1000000000L;
	}
	return t;
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
