/* One mapping at run time: watches its source, debounces, and publishes
 * through the writer on libuv's thread pool so the loop never blocks.
 * Failures are retried with backoff and logged once per change of state. */
#ifndef ATOMSYNC_SYNC_H
#define ATOMSYNC_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"

struct sync;
struct watch_budget;

struct sync_opts {
	bool dry_run;
	/* The inotify watches all the mappings share (NULL: no limit but
	 * the kernel's). */
	struct watch_budget *budget;
	/* Called once: when the start-up publish has been attempted, or
	 * at sync_stop when it has not been. */
	void (*started)(struct sync *s, void *data);
	/* Called after every publish attempt. */
	void (*changed)(struct sync *s, void *data);
	void *data;
};

/* Upper bounds (seconds) of the publish duration histogram buckets. */
#define SYNC_BUCKETS 13
extern const double sync_bucket_bounds[SYNC_BUCKETS];

/* What a mapping's last attempt knew of its target. */
enum sync_target {
	SYNC_TARGET_UNTRIED,  /* no attempt has ended yet */
	SYNC_TARGET_OPEN,     /* opened, and there */
	SYNC_TARGET_NOT_OPEN, /* not opened, or gone and not made anew */
};

/* Counters and gauges, read on the loop thread. */
struct sync_stats {
	uint64_t publishes, publish_errors, vetoes, hook_failures;
	uint64_t rescans, watch_fallbacks;
	/* Reads of the source, those of all of it, and the entries they
	 * looked at (a read of the changed directories looks at few). */
	uint64_t reads, full_reads, entries_read;
	/* Files whose bytes were compared, their times proving nothing. */
	uint64_t files_compared;
	uint64_t last_publish_ms;      /* wall clock, 0 when never */
	uint64_t last_duration_us;
	uint64_t failing_since_ms;     /* wall clock, 0 when healthy */
	bool source_empty;	       /* failing: an empty source refused */
	uint64_t publish_started_ms;   /* wall clock: the publish or commit
					* on the thread pool, 0 when none */
	uint64_t files, bytes;	       /* in the live generation */
	uint64_t watched;	       /* source directories watched */
	uint64_t directories;	       /* source directories to watch */
	bool watch_limited;	       /* not every one: re-scanning */
	uint64_t rescan_interval_ms;   /* while watch_limited */
	uint64_t buckets[SYNC_BUCKETS]; /* publishes per duration bucket */
	uint64_t duration_count;
	double duration_sum;	       /* seconds */
	enum sync_target target;
	const char *generation;	       /* live generation or NULL (always
					* unless SYNC_TARGET_OPEN) */
	const char *last_error;	       /* NULL when the last attempt was fine */
	unsigned torn;		       /* reads torn by a change, in a row */
};

int sync_start(uv_loop_t *loop, const struct conf_sync *c,
	       const struct sync_opts *o, struct sync **out);
/* Finishes the publish in progress, closes every handle and the target;
 * `done` runs when all of it is over, after which `s` is gone. */
void sync_stop(struct sync *s, void (*done)(void *data), void *data);

/* Re-scan now (as after SIGHUP for a mapping that did not change). */
void sync_rescan(struct sync *s);

/* Events of any mapping may have been lost (the kernel's queue, which
 * all share, may have overflowed): the source is read whole, as after a
 * change, without the check of every live file a re-scan makes. */
void sync_flood(struct sync *s);
/* The mount table changed: the source or target read or written anew
 * when its path no longer names the directory the last publish found. */
void sync_mounts_changed(struct sync *s);

const char *sync_name(const struct sync *s);
const struct conf_sync *sync_conf(const struct sync *s);
void sync_get_stats(const struct sync *s, struct sync_stats *st);

#endif
