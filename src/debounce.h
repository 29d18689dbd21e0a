/* When to publish after a burst of changes: after a quiet period with no
 * new event, but no later than a maximum delay after the first event of
 * the burst, so a tree that never stops changing is still published.
 * The state machine is pure (the caller passes the time); the libuv glue
 * in debounce_timer.h only arms a timer for debounce_due(). */
#ifndef ATOMSYNC_DEBOUNCE_H
#define ATOMSYNC_DEBOUNCE_H

#include <stdbool.h>
#include <stdint.h>

#define DEBOUNCE_NEVER UINT64_MAX

struct debounce {
	uint64_t quiet_ms, max_ms;
	bool pending;	     /* changes not yet published */
	bool retry;	     /* a publish is wanted without a change */
	bool running;	     /* a publish is under way */
	uint64_t first, last; /* first and last event of the pending burst */
	uint64_t not_before; /* earliest time of the next publish (backoff) */
	uint64_t wanted_at;  /* a publish wanted without a change, not
				before then; changes do not wait for it */
	uint64_t hasten_at;  /* the backoff ends then at the latest (0:
				not shortened) */
};

void debounce_init(struct debounce *d, uint64_t quiet_ms, uint64_t max_ms);
/* Something changed at `now`. */
void debounce_event(struct debounce *d, uint64_t now);
/* Publish at `at` even without a new event (a retry after a failure, a
 * re-scan); changes still wait for their quiet period, but never publish
 * before `at`. */
void debounce_retry(struct debounce *d, uint64_t at);
/* Publish at `at` even without a new event (a put-back once the target
 * is quiet), but hold no change back for it: a burst pending meanwhile
 * publishes when its quiet period or maximum delay is over, and takes
 * the wanted publish with it. */
void debounce_want(struct debounce *d, uint64_t at);
/* Something that may have ended the cause of a failure happened (the
 * target was changed by hand): the backoff ends at `at` at the latest.
 * Called again, `at` moves on, but never past the backoff, so that
 * events that keep coming cannot make failing publishes more frequent
 * than it allows. */
void debounce_hasten(struct debounce *d, uint64_t at);
/* When the next publish is due; DEBOUNCE_NEVER when nothing is pending or
 * a publish is running. */
uint64_t debounce_due(const struct debounce *d);
/* True when a publish must start now; it is then marked running and the
 * pending burst is taken by it. */
bool debounce_fire(struct debounce *d, uint64_t now);
/* The running publish finished; events that came meanwhile stay pending. */
void debounce_done(struct debounce *d);

#endif
