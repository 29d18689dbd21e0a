/* One mapping at run time.  Its publishes go through these states, one
 * publish at a time (the debounce timer starts one, and holds back the
 * next until it is over):
 *
 *          fire                  prepared, with check_command
 *   IDLE ---------> PUBLISHING ---------------------------> CHECKING
 *    ^                  |                                passes |  | no
 *    |                  | committed, unchanged or failed        v  v
 *    +-- publish_finished <---------------------- COMMITTING  ABORTING
 *
 * PUBLISHING, COMMITTING and ABORTING are work items on libuv's thread
 * pool; CHECKING runs a command from the loop.  In a burst of changes,
 * a publish that found no replaced generation to recycle is followed by
 *
 *   IDLE --(writer_standby_wanted)--> STANDBY --(linked, or stopped)--> IDLE
 *
 * a work item that links a standby generation for the next publish to
 * recycle; a change that comes meanwhile stops it, and its publish
 * starts as soon as it has.  Beside the state, the
 * mapping's phase: STARTING until the start-up publish has been tried,
 * then RUNNING, and STOPPING once sync_stop is called: the publish under
 * way finishes (its check included), then the after-publish actions it
 * made due run once, then
 *
 *   IDLE --stop_continue--> DRAINING --(none left)--> CLOSING --> freed
 *
 * DRAINING removes the superseded generations but the one replaced last
 * (which keeps its grace period: the next writer of the target counts it
 * from when ..data changed), on the thread pool; then the target is
 * closed.  CLOSING closes the handles.
 *
 * Two things run beside the publishes: the removal of superseded
 * generations (gc: one at a time, on the thread pool), and the
 * after-publish actions (post: the reload signal and on_update, IDLE,
 * RUNNING, or in BACKOFF after a failure until the retry timer fires). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "debounce_timer.h"
#include "fsutil.h"
#include "hook.h"
#include "ignore.h"
#include "log.h"
#include "pathset.h"
#include "publish.h"
#include "snapshot.h"
#include "sync.h"
#include "watch.h"
#include "writer.h"

#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 60000u
#define TORN_MAX_MS 5000u
/* A torn read this many times in a row is worth a warning. */
#define TORN_WARN 5
/* Without a watch on every directory, the source is re-scanned no sooner
 * than this many times what the last re-scan took. */
#define RESCAN_COST_FACTOR 20u
/* Past this many changed directories (and an eighth of those watched),
 * reading the source whole costs little more; past this many changed
 * names, their directories are read again rather than each name. */
#define DIRTY_FULL 64u
/* What was removed from the target by hand is put back once nothing
 * has changed in it for this long (or debounce_ms, if longer). */
#define REPAIR_QUIET_MS 1000u
/* A put-back waits no longer than this for someone at work in the
 * target to stop: a user who can write in it (owner=, dir_mode) could
 * keep changing something there for ever. */
#define REPAIR_HOLD_MAX_MS 60000u
/* Put-backs repeated within BACKOFF_MAX_MS wait longer each time, up to
 * this: only root can change the names in the target, and readers find
 * no files while it waits, but a process that undoes each put-back at
 * once must not have the target checked whole every second. */
#define REPAIR_WAIT_MAX_MS 8000u
/* Lines a minute for what a read of the source skipped (see
 * warn_line_allowed()). */
#define WARN_LINES_MAX 100u

const double sync_bucket_bounds[SYNC_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25,  0.5,    1,     2.5,  5,     10,
};

/* The diagram at the top shows the transitions. */
enum sync_state {
	ST_IDLE,
	ST_PUBLISHING, /* snapshot, prepare, and commit unless checked */
	ST_CHECKING,   /* check_command runs on the prepared generation */
	ST_COMMITTING, /* a checked generation goes live */
	ST_ABORTING,   /* a vetoed generation goes */
	ST_STANDBY,    /* a standby generation is linked (writer_standby) */
	ST_DRAINING,   /* at stop: older replaced generations removed */
	ST_CLOSING,    /* the handles close */
};

enum sync_phase {
	PH_STARTING, /* the start-up publish has not been tried yet */
	PH_RUNNING,
	PH_STOPPING,
};

/* A put-back of what was changed in the target by hand. */
enum repair_state {
	REPAIR_NONE,
	REPAIR_DUE,  /* the next publish puts back, once the target is quiet */
	REPAIR_HELD, /* one found someone at work there (since held_ms) */
	REPAIR_NOW,  /* held too long: the next one puts back at once */
};

enum post_state {
	POST_IDLE,
	POST_RUNNING, /* the reload signal is sent, on_update runs */
	POST_BACKOFF, /* failed: post_retry runs them again */
};

/* What a publish ends with. */
enum outcome {
	OUT_OK,
	OUT_VETO,  /* check_command said no */
	OUT_TORN,  /* a file was being written: try again */
	OUT_BUSY,  /* a put-back found someone at work in the target */
	OUT_ERROR,
};

struct sync {
	struct conf_sync *c;
	struct sync_opts o;
	uv_loop_t *loop;
	struct publish pub; /* the target, and what the last step left */
	struct watch *watch;
	struct watch *twatch; /* the target's name in its parent, and the
				 target directory itself */
	struct debounce_timer db;
	uv_timer_t resync;
	uv_timer_t retire;
	uv_timer_t post_retry;
	uv_work_t work;
	/* Replaced generations are removed by a work item of their own, so
	 * the next publish need not wait for a thousand unlinks. */
	uv_work_t gc_work;
	struct writer_gc *gc;	  /* being removed (NULL: no removal runs) */
	struct writer_gc *gc_taken; /* waiting for that to finish */
	enum sync_state state;
	enum sync_phase phase;
	bool fire_held;		/* a publish waits for STANDBY to stop */
	atomic_bool standby_stop; /* set: the standby stops where it is */
	int standby_rc;		  /* how it ended (from the work item) */
	uint64_t standby_us;	  /* and what it took */
	char *standby_err;	  /* why it failed */
	bool verify_due;    /* the next publish checks every live file */
	/* Names in the target directory that something changed, checked
	 * once no work item holds the writer; and how many such checks in a
	 * row found the target not as published. */
	struct pathset tnames;
	unsigned repairs;
	uint64_t repair_ms; /* when the last such check failed (uv_now) */
	enum repair_state repair;
	uint64_t held_ms;
	/* What changed since the publish under way read the source. */
	struct publish_dirty dirty;
	size_t events;
	/* Every event since, excluded names' too, against the most that
	 * cannot have overflowed the kernel's queue (watch_overflow_events). */
	size_t raw_events, events_full;
	unsigned open_handles;
	void (*stopped)(void *);
	void *stopped_data;

	/* Handed from the work thread to the loop thread. */
	uint64_t retire_next;	     /* loop thread only */
	uint64_t retire_next_work;   /* set by the work item */
	bool may_take_gc;	     /* the loop has room for what is due */
	struct writer_gc *gc_handed; /* taken by the work item */
	uint64_t started_us, finished_us;
	uint64_t scan_us;	     /* what the last look cost */

	/* on_update and the reload signal after a publish */
	enum post_state post;
	bool post_due;	      /* a publish the actions have not followed */
	unsigned post_failures;
	/* Paths changed by publishes that no run was given yet, and by
	 * those the run under way (or its retry) was given. */
	struct hook_changes post_changed, post_given;
	char *post_last_err;
	/* reload_pid's process, held from the start so that its pid
	 * cannot be another's later; a negative errno if it was gone. */
	int reload_pidfd;

	/* For logging once per change of state. */
	char *last_err;
	int fail_rc; /* of the last attempt, while publishing fails */
	unsigned failures, torn;
	bool source_missing;
	bool watch_limited;
	/* The source's top directory as the last read found it, and the
	 * target as the last publish did: 0 and 0 until then. */
	uint64_t src_dev, src_ino, tgt_dev, tgt_ino;
	char **warned; /* sorted */
	size_t nwarned;
	bool warned_more; /* the last read had more than it listed */
	/* Lines of those logged in the minute from warn_minute_ms on, and
	 * those past WARN_LINES_MAX in it, counted instead. */
	uint64_t warn_minute_ms;
	unsigned warn_lines, warn_dropped;

	struct sync_stats st;
	char *generation; /* what ..data names: on_update is told this */
	enum sync_target target; /* as the last attempt found it */
};

static uint64_t backoff_ms(unsigned failures, uint64_t min, uint64_t max)
{
	uint64_t ms = min;
	for (unsigned i = 1; i < failures && ms < max; i++)
		ms *= 2;
	return ms < max ? ms : max;
}

const char *sync_name(const struct sync *s)
{
	return s->c->name;
}

const struct conf_sync *sync_conf(const struct sync *s)
{
	return s->c;
}

void sync_get_stats(const struct sync *s, struct sync_stats *st)
{
	*st = s->st;
	st->target = s->target;
	/* A target gone, or not opened: nothing of it is known to be. */
	st->generation = s->target == SYNC_TARGET_OPEN ? s->generation : NULL;
	if (s->target != SYNC_TARGET_OPEN)
		st->files = st->bytes = 0;
	st->last_error = s->last_err;
	st->torn = s->torn;
	st->watched = s->watch ? watch_count(s->watch) : 0;
	st->watch_limited = s->watch_limited;
}

/* ---- on the thread pool ---- */

static void on_work(uv_work_t *req)
{
	struct sync *s = req->data;

	switch (s->state) {
	case ST_PUBLISHING:
		s->started_us = clock_us(CLOCK_MONOTONIC);
		publish_prepare(&s->pub);
		break;
	case ST_COMMITTING:
		publish_commit(&s->pub);
		break;
	case ST_ABORTING:
		publish_abort(&s->pub);
		break;
	case ST_STANDBY:
		s->standby_us = clock_us(CLOCK_MONOTONIC);
		s->standby_rc = writer_standby(s->pub.w, &s->standby_stop,
					       &s->standby_err);
		s->standby_us = clock_us(CLOCK_MONOTONIC) - s->standby_us;
		break;
	default:
		abort(); /* no work item in the other states */
	}
	/* The loop thread reads retire_next meanwhile (a removal ending
	 * re-arms the timer), so the work item hands its value over. */
	s->retire_next_work = 0;
	if (s->pub.w && s->may_take_gc)
		s->gc_handed =
			writer_gc_take(s->pub.w, false, &s->retire_next_work);
	else if (s->pub.w)
		s->retire_next_work = writer_next_due(s->pub.w);
	s->finished_us = clock_us(CLOCK_MONOTONIC);
}

static void on_gc(uv_work_t *req)
{
	struct sync *s = req->data;

	writer_gc_run(s->gc);
}

static void drain(struct sync *s);
static void finish_stop(struct sync *s);
static void gc_kick(struct sync *s);
static void arm_retire(struct sync *s);

static void on_gc_done(uv_work_t *req, int status)
{
	struct sync *s = req->data;

	(void)status;
	writer_gc_free(s->gc);
	s->gc = NULL;
	if (s->state == ST_DRAINING) {
		drain(s);
		return;
	}
	gc_kick(s);
	arm_retire(s);
}

/* Starts removing what the last work item took, unless a removal runs. */
static void gc_kick(struct sync *s)
{
	if (s->gc || s->gc_taken == NULL)
		return;
	s->gc = s->gc_taken;
	s->gc_taken = NULL;
	s->gc_work.data = s;
	if (uv_queue_work(s->loop, &s->gc_work, on_gc, on_gc_done) < 0) {
		writer_gc_run(s->gc); /* cannot happen with a live loop */
		writer_gc_free(s->gc);
		s->gc = NULL;
	}
}

/* ---- on the loop thread ---- */

static void on_after_work(uv_work_t *req, int status);

/* Adds `dir` to `d` once; past DIRTY_FULL directories and an eighth of
 * the source's, the whole source is read instead. */
static void dirty_add(const struct sync *s, struct publish_dirty *d,
		      const char *dir)
{
	size_t many = s->st.directories / 8;

	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->dirs[i], dir) == 0)
			return;
	publish_dirty_add(d, dir);
	if (d->n > DIRTY_FULL && d->n > many)
		publish_dirty_all(d);
}

/* Adds the name `path` to `d` once; past DIRTY_FULL names, their
 * directories are read again instead (dirty_add()). */
static void dirty_add_name(const struct sync *s, struct publish_dirty *d,
			   const char *path)
{
	publish_dirty_add_name(d, path);
	if (d->nnames <= DIRTY_FULL)
		return;
	char **v = d->names;
	size_t n = d->nnames;

	d->names = NULL;
	d->nnames = d->namecap = 0;
	for (size_t i = 0; i < n; i++) {
		char *sl = strrchr(v[i], '/');
		*(sl ? sl : v[i]) = '\0';
		dirty_add(s, d, v[i]);
		free(v[i]);
	}
	free(v);
}

/* Gives the publish what changed, added to what one torn by a file being
 * written kept; what comes meanwhile is for the next one.  Without a
 * watch on every directory, all of it is read. */
static void hand_dirty(struct sync *s)
{
	struct publish_dirty *d = &s->pub.dirty;

	if (s->dirty.all || s->watch_limited || s->watch == NULL ||
	    s->raw_events > s->events_full)
		publish_dirty_all(d);
	for (size_t i = 0; !d->all && i < s->dirty.n; i++)
		dirty_add(s, d, s->dirty.dirs[i]);
	for (size_t i = 0; !d->all && i < s->dirty.nnames; i++)
		dirty_add_name(s, d, s->dirty.names[i]);
	publish_dirty_fini(&s->dirty);
	s->events = s->raw_events = 0;
}

/* `dir` (NULL: the source itself) may have changed. */
static void note_dirty(struct sync *s, const char *dir)
{
	s->events++;
	if (dir == NULL)
		publish_dirty_all(&s->dirty);
	else if (!s->dirty.all)
		dirty_add(s, &s->dirty, dir);
}

/* The entry `name` of `dir` may have changed, and nothing else there. */
static void note_name(struct sync *s, const char *dir, const char *name)
{
	char *path = NULL;

	s->events++;
	if (s->dirty.all)
		return;
	if ((path = fsutil_join(dir, name)) == NULL)
		dirty_add(s, &s->dirty, dir);
	else
		dirty_add_name(s, &s->dirty, path);
	free(path);
}

/* How long the target must have been quiet: a second, or debounce_ms. */
static uint64_t quiet_wait_ms(const struct sync *s)
{
	return s->c->debounce_ms > REPAIR_QUIET_MS ? s->c->debounce_ms
						   : REPAIR_QUIET_MS;
}

/* Whether a change of the source waits to be published. */
static bool source_waiting(const struct sync *s)
{
	const struct publish_dirty *d = &s->pub.dirty, *e = &s->dirty;

	return s->events > 0 || d->all || d->n > 0 || d->nnames > 0 ||
	       e->all || e->n > 0 || e->nnames > 0;
}

/* A hold of a put-back past REPAIR_HOLD_MAX_MS ends: the publish about
 * to start puts the target back without waiting for it to be quiet. */
static void repair_hold_end(struct sync *s)
{
	if (s->repair != REPAIR_HELD || source_waiting(s) ||
	    uv_now(s->loop) - s->held_ms < REPAIR_HOLD_MAX_MS)
		return;
	log_msg(LOG_LVL_WARN, s->c->name,
		"target %s is still being changed after %u s; putting it back "
		"now",
		s->c->target, REPAIR_HOLD_MAX_MS / 1000);
	s->repair = REPAIR_NOW;
}

/* How long the target must have been quiet for the publish about to
 * start: 0 but for one that only puts back what was changed in the
 * target by hand, with no change of the source waiting for it. */
static uint64_t settle_ms(const struct sync *s)
{
	if (s->repair == REPAIR_NONE || s->repair == REPAIR_NOW ||
	    source_waiting(s))
		return 0;
	return quiet_wait_ms(s);
}

/* Moves to `to`, a state whose step runs on the thread pool. */
static void queue(struct sync *s, enum sync_state to)
{
	s->state = to;
	s->work.data = s;
	s->may_take_gc = s->gc_taken == NULL;
	s->gc_handed = NULL;
	if (to == ST_STANDBY) {
		s->fire_held = false;
		atomic_store(&s->standby_stop, false);
	}
	if (to == ST_PUBLISHING) {
		/* Handed to the work item, which owns the writer. */
		s->pub.verify = s->verify_due;
		repair_hold_end(s);
		s->pub.settle_ms = settle_ms(s);
		s->verify_due = false;
		hand_dirty(s);
	}
	/* A write that never returns (a hung disk or NFS server) shows as a
	 * publish that runs on and on. */
	if (to == ST_PUBLISHING || to == ST_COMMITTING)
		s->st.publish_started_ms = clock_wall_ms();
	if (uv_queue_work(s->loop, &s->work, on_work, on_after_work) < 0) {
		/* Cannot happen with a live loop. */
		s->st.publish_started_ms = 0;
		log_msg(LOG_LVL_ERROR, s->c->name, "cannot queue work");
	}
}

static void on_fire(struct debounce_timer *t)
{
	struct sync *s = (struct sync *)((char *)t - offsetof(struct sync, db));

	if (s->phase == PH_STOPPING) {
		debounce_done(&t->d);
		return;
	}
	/* The publish starts once the standby stops: it is recycled. */
	if (s->state == ST_STANDBY) {
		s->fire_held = true;
		s->st.publish_started_ms = clock_wall_ms();
		atomic_store(&s->standby_stop, true);
		return;
	}
	/* The debounce holds a publish running until publish_finished. */
	if (s->state != ST_IDLE)
		abort();
	queue(s, ST_PUBLISHING);
}

/* Whether a publish failed for want of room (on the target's file
 * system, or within max_files and max_bytes): less in the source can fix
 * it. */
static bool too_big(int rc)
{
	return rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG;
}

/* Whether the excluded name `name` of `dir` is a file with other names:
 * written through it (a link made to a file as its .tmp twin, say), the
 * file changes under a name that is not excluded. */
static bool another_name(const struct sync *s, const char *dir,
			 const char *name)
{
	if (dir == NULL)
		return false;
	char *d = dir[0] == '/' ? strdup(dir) : fsutil_join(s->c->source, dir);
	char *p = d ? fsutil_join(d, name) : NULL;
	struct stat st;
	bool more = p && lstat(p, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_nlink > 1;

	free(p);
	free(d);
	return more;
}

void sync_flood(struct sync *s)
{
	if (s->phase == PH_STOPPING)
		return;
	note_dirty(s, NULL);
	debounce_timer_event(&s->db);
}

static void on_watch(void *data, const char *dir, const char *name,
		     int root)
{
	struct sync *s = data;

	if (s->phase == PH_STOPPING)
		return;
	/* A flood of excluded names (a build's *.tmp) fills the kernel's
	 * queue as well, and what it then drops is unknown: read whole. */
	if (++s->raw_events > s->events_full && !s->dirty.all) {
		sync_flood(s);
		return;
	}
	if (name == NULL) {
		/* Newly watched: changes made before went unseen. */
		note_dirty(s, dir);
		debounce_event(&s->db.d, uv_now(s->loop));
		return;
	}
	/* A name excluded wherever it is and whatever its type cannot
	 * change the snapshot; a reserved one (a source volume's ..data
	 * swap) can.  Only the name is known here, not the directory or the
	 * type: with anchored, directory-only or "!" patterns the event
	 * goes through (the re-scan then finds nothing to publish). */
	if (!root && name && !(name[0] == '.' && name[1] == '.') &&
	    ignore_name_excluded(s->c->ignore, name)) {
		/* Its other names, wherever they are, changed with it. */
		if (another_name(s, dir, name))
			sync_flood(s);
		return;
	}
	/* While publishing fails, the source's name (or the way to it)
	 * changed may be the operator's fix, a directory put back where a
	 * file was, and so may what is in it when the target has no room
	 * for it: tried once it is quiet, as on_target_watch() does. */
	if (s->failures > 0 && (root || too_big(s->fail_rc)))
		debounce_timer_hasten(&s->db, quiet_wait_ms(s));
	/* "": the directory itself, or a name that may be it. */
	if (root || name[0] == '\0')
		note_dirty(s, root ? NULL : dir);
	else
		note_name(s, dir, name);
	debounce_timer_event(&s->db);
}

/* The first of the changed names in the target that is not as the last
 * publish left it ("" for one of them when there were too many to
 * list), or NULL. */
static const char *target_changed(struct sync *s)
{
	const struct writer *w = s->pub.w;

	if (s->tnames.all)
		return writer_check_name(w, NULL) < 0 ? "" : NULL;
	for (size_t i = 0; i < s->tnames.n; i++)
		if (writer_check_name(w, s->tnames.v[i]) < 0)
			return s->tnames.v[i];
	return NULL;
}

/* How long a put-back waits for the target to be quiet: an rm -rf of the
 * whole target removes the live generation first and the target last,
 * and that is published anew, not fought over.  Longer each time checks
 * keep failing after a publish, so nothing can make this spin. */
static uint64_t repair_wait_ms(const struct sync *s)
{
	uint64_t quiet = quiet_wait_ms(s);

	/* One that failed (..data made a directory, say) is tried again
	 * once quiet: what changed since may be the operator's fix. */
	if (s->repairs <= 1 || s->failures > 0)
		return quiet;
	uint64_t wait = backoff_ms(s->repairs - 1, BACKOFF_MIN_MS,
				   REPAIR_WAIT_MAX_MS);
	return wait > quiet ? wait : quiet;
}

/* A full check is due to put back `bad` ("": one of many names). */
static void repair_due(struct sync *s, const char *bad)
{
	char *name = log_escape(*bad ? bad : "an entry");

	log_msg(s->repairs ? LOG_LVL_DEBUG : LOG_LVL_WARN, s->c->name,
		"target %s: %s is not as published (changed by hand?); "
		"checking the target whole",
		s->c->target, name ? name : "an entry");
	free(name);
	s->verify_due = true;
	s->repairs++;
	s->repair_ms = uv_now(s->loop);
	debounce_timer_want(&s->db, repair_wait_ms(s));
}

/* What an operator removed or replaced in the target (..data, the live
 * generation, a visible link) would leave readers without files until
 * the next re-scan: a publish that checks the target whole puts it back.
 * Our own publishes change those names too, and are found as published. */
static void check_target_names(struct sync *s)
{
	if (s->tnames.n == 0 && !s->tnames.all)
		return;
	const char *bad = s->pub.w && s->phase != PH_STOPPING
				  ? target_changed(s)
				  : NULL;
	if (bad == NULL) {
		/* Not at once: the put-back's own changes are found as
		 * published, and an operator who keeps undoing it would
		 * get a warning and a publish each time. */
		if (uv_now(s->loop) - s->repair_ms > BACKOFF_MAX_MS)
			s->repairs = 0;
	} else {
		if (s->repair == REPAIR_NONE)
			s->repair = REPAIR_DUE;
		/* A full check due already puts it back as well. */
		if (!s->verify_due)
			repair_due(s, bad);
	}
	pathset_fini(&s->tnames);
	pathset_init(&s->tnames);
}

static void on_target_watch(void *data, const char *dir, const char *name,
			    int root)
{
	struct sync *s = data;

	(void)dir;
	if (s->phase == PH_STOPPING)
		return;
	/* While publishing fails, a change to the target or the way to it
	 * may be the operator's fix: tried once it is quiet, not after the
	 * rest of the backoff.  Not a change to a name the writer makes
	 * and removes itself: each failed attempt (a generation made and
	 * removed, a standby) would hasten the next, every second. */
	bool ours = !root && name && writer_work_name(name);
	if (s->failures > 0 && !ours)
		debounce_timer_hasten(&s->db, quiet_wait_ms(s));
	if (root) {
		/* The target's own name in its parent. */
		debounce_timer_event(&s->db);
		return;
	}
	if (name == NULL || *name == '\0')
		pathset_add_all(&s->tnames);
	else
		(void)pathset_add(&s->tnames, name, strlen(name));
	/* A put-back due waits for the target to be quiet; a change in
	 * the source does not wait for it (and puts back what it finds).
	 * Nor for the writer's own names: a vetoed generation removed would
	 * ask for the next attempt, vetoed in turn, every second. */
	if (s->repair != REPAIR_NONE && !ours)
		debounce_timer_want(&s->db, repair_wait_ms(s));
	if (s->state == ST_IDLE)
		check_target_names(s);
}

/* The target's path watched as the directory dev/ino (when known). */
static void watch_target_at(struct sync *s, uint64_t dev, uint64_t ino)
{
	char root[] = "";
	struct snap_dir d = {.path = root, .dev = dev, .ino = ino};
	struct watch_result r;

	if (s->twatch && ino)
		(void)watch_update(s->twatch, &d, 1, &r);
}

/* The target directory itself, as the last publish found it, is watched
 * for what is done to the names in it. */
static void watch_target(struct sync *s)
{
	watch_target_at(s, s->tgt_dev, s->tgt_ino);
}

/* The directory the target's path names now, watched until a publish
 * knows the target (a file system mounted on it, say, which a publish
 * refused): a fix there, a chmod, is then seen as one. */
static void watch_target_path(struct sync *s)
{
	struct stat st;
	int fd = fsutil_chase(s->c->target, 0, O_PATH | O_DIRECTORY, NULL,
			      NULL);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0)
		watch_target_at(s, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
	close(fd);
}

void sync_rescan(struct sync *s)
{
	if (s->phase == PH_STOPPING)
		return;
	s->st.rescans++;
	/* A re-read not caused by a change also checks every live file. */
	s->verify_due = true;
	debounce_timer_retry(&s->db, 0);
}

static void on_resync(uv_timer_t *h)
{
	sync_rescan(h->data);
}

/* What `path` names now, against the directory dev/ino it named. */
enum moved { MOVED_NOT, MOVED_GONE, MOVED_OTHER };

static enum moved moved(const char *path, uint64_t dev, uint64_t ino)
{
	struct stat st;

	if (dev == 0 && ino == 0)
		return MOVED_NOT; /* not known */
	int fd = fsutil_chase(path, 0, O_PATH | O_DIRECTORY, NULL, NULL);
	if (fd < 0)
		return MOVED_GONE;
	bool same = fstat(fd, &st) == 0 && (uint64_t)st.st_dev == dev &&
		    (uint64_t)st.st_ino == ino;
	close(fd);
	return same ? MOVED_NOT : MOVED_OTHER;
}

void sync_mounts_changed(struct sync *s)
{
	if (s->phase == PH_STOPPING)
		return;
	enum moved sm = moved(s->c->source, s->src_dev, s->src_ino);
	enum moved tm = moved(s->c->target, s->tgt_dev, s->tgt_ino);
	bool src = sm != MOVED_NOT, tgt = tm != MOVED_NOT;
	if (!src && !tgt) {
		/* A file system remounted read-write, say, while publishing
		 * fails: the operator's fix, tried once it is quiet. */
		if (s->failures > 0)
			debounce_timer_hasten(&s->db, quiet_wait_ms(s));
		return;
	}
	/* One that is gone is said by the read or publish that finds it. */
	if (sm == MOVED_OTHER || tm == MOVED_OTHER)
		log_msg(LOG_LVL_INFO, s->c->name,
			"%s %s names another directory since the mounts "
			"changed; %s it anew",
			sm == MOVED_OTHER ? "source" : "target",
			sm == MOVED_OTHER ? s->c->source : s->c->target,
			sm == MOVED_OTHER ? "reading" : "publishing");
	/* Known again once read or written. */
	if (src) {
		s->src_dev = s->src_ino = 0;
		note_dirty(s, NULL);
	}
	if (tgt) {
		s->tgt_dev = s->tgt_ino = 0;
		watch_target_path(s);
	}
	debounce_timer_event(&s->db);
}

static void on_retire(uv_timer_t *h)
{
	struct sync *s = h->data;

	if (s->state == ST_DRAINING) {
		drain(s);
		return;
	}
	/* Taking is cheap, so with no work item using the writer it is done
	 * here; a publish under way takes what is due when it ends, and a
	 * removal under way re-arms this when it is done. */
	if (s->state != ST_IDLE || s->phase == PH_STOPPING ||
	    s->pub.w == NULL || s->gc || s->gc_taken)
		return;
	s->gc_taken = writer_gc_take(s->pub.w, false, &s->retire_next);
	gc_kick(s);
	arm_retire(s);
}

static void arm_retire(struct sync *s)
{
	/* At stop, drain() arms it. */
	if (s->state == ST_DRAINING)
		return;
	/* While a removal runs, its end re-arms the timer. */
	if (s->retire_next == 0 || s->phase == PH_STOPPING || s->gc ||
	    s->gc_taken) {
		uv_timer_stop(&s->retire);
		return;
	}
	uint64_t now = writer_now_ms();
	uv_timer_start(&s->retire, on_retire,
		       s->retire_next > now ? s->retire_next - now : 0, 0);
}

/* While some directories go unwatched, the source is re-scanned every
 * poll_interval_ms, or 20 times as long as the last look took if that is
 * longer: however large the source, re-scanning keeps to about 5% of a
 * core (and of the time of the disk or server behind it). */
static uint64_t rescan_interval_ms(const struct sync *s)
{
	uint64_t ms = s->scan_us * RESCAN_COST_FACTOR / 1000u;

	return ms > s->c->poll_interval_ms ? ms : s->c->poll_interval_ms;
}

static void arm_resync(struct sync *s)
{
	uint64_t ms = s->watch_limited ? rescan_interval_ms(s)
					: (uint64_t)s->c->resync_interval_s * 1000u;
	s->st.rescan_interval_ms = s->watch_limited ? ms : 0;
	if (ms == 0) {
		uv_timer_stop(&s->resync);
		return;
	}
	uv_timer_start(&s->resync, on_resync, ms, ms);
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A new minute for the source's warnings, once the last is over: how
 * many it held back is logged then (at the first read after it). */
static void warn_minute_roll(struct sync *s)
{
	uint64_t now = uv_now(s->loop);

	if (s->warn_minute_ms != 0 && now - s->warn_minute_ms < 60000u)
		return;
	if (s->warn_dropped)
		log_msg(LOG_LVL_WARN, s->c->name,
			"source %s: %u warnings about it were not logged (at "
			"most %u a minute are)",
			s->c->source, s->warn_dropped, WARN_LINES_MAX);
	s->warn_minute_ms = now;
	s->warn_lines = s->warn_dropped = 0;
}

/* Whether a line for the source's warning may be logged now: at most
 * WARN_LINES_MAX a minute, as a user who writes the source can make a
 * new one every moment (FIFOs made and removed under new names).  Past
 * that a line says so, and the rest are counted (warn_minute_roll()). */
static bool warn_line_allowed(struct sync *s)
{
	if (s->warn_lines < WARN_LINES_MAX) {
		s->warn_lines++;
		return true;
	}
	if (s->warn_dropped++ == 0)
		log_msg(LOG_LVL_WARN, s->c->name,
			"source %s: more than %u warnings about it in a "
			"minute; the rest of the minute's are counted, not "
			"logged",
			s->c->source, WARN_LINES_MAX);
	return false;
}

/* Logs the snapshot's warnings that the previous one did not have. */
static void log_warnings(struct sync *s, const struct snapshot_extras *m)
{
	char **now = calloc(m->nwarn ? m->nwarn : 1, sizeof(*now));
	size_t n = 0;

	warn_minute_roll(s);
	/* Said before the lines it would otherwise wait behind. */
	if (m->nwarn_more == 0) {
		s->warned_more = false;
	} else if (!s->warned_more && warn_line_allowed(s)) {
		log_msg(LOG_LVL_WARN, s->c->name,
			"source %s: more than %d warnings about one read; "
			"those past the first are not listed",
			s->c->source, SNAPSHOT_WARN_MAX);
		s->warned_more = true;
	}
	for (size_t i = 0; now && i < m->nwarn; i++) {
		char *key;
		if (asprintf(&key, "%d %s", (int)m->warn[i].kind,
			     m->warn[i].path) < 0)
			continue;
		bool logged = s->nwarned > 0 &&
			      bsearch(&key, s->warned, s->nwarned,
				      sizeof(*s->warned), cmp_key);
		if (!logged && warn_line_allowed(s)) {
			log_msg(LOG_LVL_WARN, s->c->name, "source %s: %s: %s",
				s->c->source, m->warn[i].path,
				snapshot_warn_str(m->warn[i].kind));
			logged = true;
		}
		/* One held back is not taken for logged: it is tried again
		 * with the next read, in a later minute if need be. */
		if (logged)
			now[n++] = key;
		else
			free(key);
	}
	if (n > 1)
		qsort(now, n, sizeof(*now), cmp_key);
	for (size_t i = 0; i < s->nwarned; i++)
		free(s->warned[i]);
	free(s->warned);
	s->warned = now;
	s->nwarned = n;
}

/* Once, when a mapping starts re-scanning instead of watching. */
static void log_limited(struct sync *s, int rc, const struct watch_result *r)
{
	size_t n = watch_count(s->watch);
	double every = (double)s->st.rescan_interval_ms / 1000.0;
	char why[160];

	if (rc == -ENOSPC)
		snprintf(why, sizeof(why),
			 "out of inotify watches (fs.inotify.max_user_watches)");
	else if (r->capped)
		snprintf(why, sizeof(why),
			 "the daemon's max_watches (%zu, shared by every "
			 "mapping) is reached",
			 watch_budget_max(s->o.budget));
	else
		snprintf(why, sizeof(why), "cannot watch every directory (%s)",
			 strerror(-rc));
	log_msg(LOG_LVL_WARN, s->c->name,
		"source %s: %zu director%s, %zu watched: %s; re-scanning every "
		"%.1f s instead (longer when a re-scan takes long)%s",
		s->c->source, r->wanted, r->wanted == 1 ? "y" : "ies", n, why,
		every,
		rc == -ENOSPC ? "; raise fs.inotify.max_user_watches to watch "
				"them all"
		: r->capped   ? "; raise max_watches in [daemon] to watch them "
				"all"
			      : "");
}

static void update_watches(struct sync *s,
			   const struct snapshot_extras *m)
{
	struct watch_result r;
	int rc;

	if (s->watch == NULL) {
		rc = watch_new(s->loop, s->c->source, s->o.budget, on_watch, s,
			       &s->watch);
		if (rc < 0) {
			log_msg(LOG_LVL_ERROR, s->c->name, "watch %s: %s",
				s->c->source, strerror(-rc));
			return;
		}
	}
	for (size_t i = 0; i < m->nwatch; i++)
		if (m->watch[i].path[0] == '\0') {
			s->src_dev = m->watch[i].dev;
			s->src_ino = m->watch[i].ino;
		}
	rc = watch_update(s->watch, m->watch, m->nwatch, &r);
	s->st.directories = r.wanted;
	if (rc < 0 || r.capped) {
		/* Whatever is not watched is re-scanned instead, at an
		 * interval set anew by what each look costs. */
		bool first = !s->watch_limited;
		s->watch_limited = true;
		arm_resync(s);
		if (first) {
			s->st.watch_fallbacks++;
			log_limited(s, rc, &r);
		}
	} else if (s->watch_limited) {
		s->watch_limited = false;
		log_msg(LOG_LVL_INFO, s->c->name,
			"source %s: every directory is watched again (%zu)",
			s->c->source, r.wanted);
		arm_resync(s);
	}
	/* Changes made before a new watcher was in place went unseen: each
	 * was reported (on_watch), to be read once more. */
}

/* ---- after a publish: on_update and the reload signal ---- */

static void post_kick(struct sync *s);
static void stop_continue(struct sync *s);

static void on_post_retry(uv_timer_t *h)
{
	struct sync *s = h->data;

	s->post = POST_IDLE;
	post_kick(s);
}

static void post_result(struct sync *s, const char *failure)
{
	const char *name = s->c->name;

	if (failure == NULL) {
		if (s->post_failures > 0)
			log_msg(LOG_LVL_INFO, name,
				"after-publish actions work again");
		s->post_failures = 0;
		hook_changes_fini(&s->post_given);
		free(s->post_last_err);
		s->post_last_err = NULL;
	} else {
		s->post_failures++;
		s->st.hook_failures++;
		if (s->post_last_err == NULL ||
		    strcmp(s->post_last_err, failure) != 0)
			log_msg(LOG_LVL_ERROR, name, "%s; retrying with backoff",
				failure);
		free(s->post_last_err);
		s->post_last_err = strdup(failure);
		/* The retry is told about all of it again. */
		hook_changes_add(&s->post_changed, s->post_given.buf,
				 s->post_given.len, s->post_given.incomplete);
		hook_changes_fini(&s->post_given);
		/* Retry, unless a newer publish runs them anyway; a stopping
		 * daemon does not wait for retries. */
		s->post_due = s->phase != PH_STOPPING;
		if (s->post_due) {
			s->post = POST_BACKOFF;
			uv_timer_start(&s->post_retry, on_post_retry,
				       backoff_ms(s->post_failures,
						  BACKOFF_MIN_MS,
						  BACKOFF_MAX_MS),
				       0);
		}
	}
	if (s->phase == PH_STOPPING) {
		stop_continue(s);
		return;
	}
	post_kick(s);
}

static void on_update_done(void *data, const struct hook_result *r)
{
	struct sync *s = data;
	char *failure = NULL;

	s->post = POST_IDLE;
	if (!hook_ok(r)) {
		char *why = hook_describe(r);
		if (why == NULL || asprintf(&failure, "on_update %s", why) < 0)
			failure = NULL;
		free(why);
	} else {
		log_msg(LOG_LVL_DEBUG, s->c->name, "on_update done");
	}
	post_result(s, failure ? failure : (hook_ok(r) ? NULL : "on_update failed"));
	free(failure);
}

/* Starts on_update, told about the paths in s->post_given. */
static void post_start_on_update(struct sync *s)
{
	char **argv = NULL, *failure = NULL, *why = NULL;

	if (publish_hook_target(s->c, s->pub.w, &why) < 0) {
		if (asprintf(&failure, "on_update not run: %s", why) < 0)
			failure = NULL;
		free(why);
		post_result(s, failure ? failure : "on_update not run");
		free(failure);
		return;
	}
	char **env = publish_update_env(s->c, s->generation, &s->post_given);
	int fd = hook_changes_fd(&s->post_given);

	if (fd < 0 && asprintf(&failure, "on_update: changed-paths file: %s",
			       strerror(-fd)) < 0)
		failure = NULL;
	if (fd < 0 || env == NULL ||
	    command_split(s->c->on_update, &argv, NULL) < 0) {
		hook_env_free(env);
		if (fd >= 0)
			close(fd);
		post_result(s, failure ? failure : "on_update cannot be started");
		free(failure);
		return;
	}
	struct hook *h = NULL;
	/* A command that cannot start reports through on_update_done at
	 * once, which makes it POST_IDLE again. */
	s->post = POST_RUNNING;
	hook_run(s->loop, argv, env, fd, s->c->hook_timeout_s, on_update_done,
		 s, &h);
	close(fd); /* the command has its own */
	command_argv_free(argv);
	hook_env_free(env);
}

/* Runs the after-publish actions when one is due and none is running:
 * changes that come meanwhile coalesce into exactly one more run. */
static void post_kick(struct sync *s)
{
	if (!s->post_due || s->post != POST_IDLE)
		return;
	s->post_due = false;
	/* This run consumes what came so far; what comes while it runs is
	 * for the next one. */
	hook_changes_fini(&s->post_given);
	s->post_given = s->post_changed;
	memset(&s->post_changed, 0, sizeof(s->post_changed));
	char *failure = NULL;
	if (publish_signal(s->c, s->reload_pidfd, &failure) < 0) {
		post_result(s, failure ? failure : "reload signal failed");
		free(failure);
		return;
	}
	if (s->c->on_update == NULL) {
		post_result(s, NULL);
		return;
	}
	post_start_on_update(s);
}

/* ---- the end of a publish ---- */

/* A new generation went live (even if a later step failed). */
static void note_published(struct sync *s)
{
	uint64_t us = s->finished_us - s->started_us;
	double sec = (double)us / 1e6;

	s->st.publishes++;
	s->st.last_publish_ms = clock_wall_ms();
	s->st.last_duration_us = us;
	s->st.duration_count++;
	s->st.duration_sum += sec;
	for (int b = 0; b < SYNC_BUCKETS; b++)
		if (sec <= sync_bucket_bounds[b])
			s->st.buckets[b]++;
	log_msg(LOG_LVL_INFO, s->c->name,
		"published %s (%zu added, %zu changed, %zu removed) in %.1f ms",
		s->pub.res.generation, s->pub.res.added, s->pub.res.changed,
		s->pub.res.removed, (double)us / 1000.0);
	if (s->c->on_update)
		hook_changes_add(&s->post_changed, s->pub.res.paths,
				 s->pub.res.paths_len, false);
	if (s->c->on_update || s->c->reload_signal) {
		/* Instead of a retry: the new publish runs them anyway. */
		s->post_due = true;
		uv_timer_stop(&s->post_retry);
		if (s->post == POST_BACKOFF)
			s->post = POST_IDLE;
	}
	free(s->generation);
	s->generation = strdup(s->pub.res.generation);
}

/* The live generation, when none is known yet: what the writer found
 * in the target, for a publish that found the source unchanged since
 * before we started, or that failed before it named one (its source
 * missing, an empty one refused). */
static void note_live(struct sync *s)
{
	const char *gen = s->pub.w ? writer_live_generation(s->pub.w) : NULL;

	if (s->generation || gen == NULL || s->target != SYNC_TARGET_OPEN)
		return;
	s->generation = strdup(gen);
	s->st.last_publish_ms = clock_wall_ms();
	(void)writer_live_summary(s->pub.w, &s->st.files, &s->st.bytes);
}

/* What the publish left, whatever its outcome: the live generation and
 * the walk's warnings and directories. */
static void note_result(struct sync *s)
{
	/* The warnings first: "skipped" lines belong to the publish. */
	if (s->pub.extras)
		log_warnings(s, s->pub.extras);
	if (s->pub.res.published)
		note_published(s);
	else
		note_live(s);
	if (s->pub.extras && s->phase != PH_STOPPING)
		update_watches(s, s->pub.extras);
}

static void finished_ok(struct sync *s)
{
	const char *name = s->c->name;
	const struct writer_result *r = &s->pub.res;

	if (s->failures > 0 || s->source_missing)
		log_msg(LOG_LVL_INFO, name,
			"publishing works again (after %u failed attempt%s)",
			s->failures, s->failures == 1 ? "" : "s");
	s->failures = s->torn = 0;
	s->source_missing = false;
	free(s->last_err);
	s->last_err = NULL;
	s->st.failing_since_ms = 0;
	s->st.source_empty = false;
	if (!r->published && s->o.dry_run)
		log_msg(LOG_LVL_INFO, name,
			"dry run: %zu added, %zu changed, %zu removed",
			r->added, r->changed, r->removed);
	else if (!r->published)
		log_msg(LOG_LVL_DEBUG, name, "unchanged");
	s->st.files = r->files;
	s->st.bytes = r->bytes;
	if (s->pub.w &&
	    writer_target_id(s->pub.w, &s->tgt_dev, &s->tgt_ino) == 0)
		watch_target(s);
	debounce_timer_done(&s->db);
	post_kick(s);
}

/* The next change tries again; nothing is retried on its own (the same
 * tree would be vetoed the same way). */
static void finished_veto(struct sync *s)
{
	s->st.vetoes++;
	if (s->st.failing_since_ms == 0)
		s->st.failing_since_ms = clock_wall_ms();
	free(s->last_err);
	s->last_err = s->pub.err ? strdup(s->pub.err) : NULL;
	debounce_timer_done(&s->db);
}

/* A file was being written: try again once it is quiet. */
static void finished_torn(struct sync *s)
{
	s->torn++;
	log_msg(s->torn == TORN_WARN ? LOG_LVL_WARN : LOG_LVL_DEBUG,
		s->c->name, "%s; retrying", s->pub.err);
	debounce_done(&s->db.d);
	uint64_t wait = backoff_ms(s->torn, 50, TORN_MAX_MS);
	if (wait < s->c->debounce_ms)
		wait = s->c->debounce_ms;
	debounce_timer_retry(&s->db, wait);
}

/* A put-back found someone still at work in the target (an rm -rf of
 * it, emptying a generation): tried again once it is quiet. */
static void finished_busy(struct sync *s)
{
	if (s->repair == REPAIR_DUE) {
		s->repair = REPAIR_HELD;
		s->held_ms = uv_now(s->loop);
	}
	log_msg(LOG_LVL_DEBUG, s->c->name,
		"target %s is still being changed; putting it back once "
		"nothing in it changed for %llu ms",
		s->c->target, (unsigned long long)quiet_wait_ms(s));
	s->verify_due = true;
	debounce_done(&s->db.d);
	debounce_timer_want(&s->db, quiet_wait_ms(s));
}

/* Why publishing fails, once per change of the reason. */
static void log_failure(struct sync *s, const char *msg, bool missing,
			bool empty, bool locked)
{
	const char *name = s->c->name;

	if (s->last_err && strcmp(s->last_err, msg) == 0) {
		log_msg(LOG_LVL_DEBUG, name, "still failing: %s", msg);
		return;
	}
	if (missing)
		log_msg(LOG_LVL_WARN, name, "%s; waiting for it to appear",
			msg);
	else if (empty)
		log_msg(LOG_LVL_ERROR, name,
			"%s; waiting for it to have content", msg);
	else if (locked)
		log_msg(LOG_LVL_ERROR, name,
			"%s; waiting for it to stop, trying again every few "
			"seconds",
			msg);
	else
		log_msg(LOG_LVL_ERROR, name, "%s; retrying with backoff%s",
			msg, log_hint(s->pub.rc));
	free(s->last_err);
	s->last_err = strdup(msg);
}

static void finished_error(struct sync *s)
{
	const char *msg = s->pub.err ? s->pub.err : strerror(-s->pub.rc);
	bool missing = s->pub.rc == -ENOENT && s->pub.source_failed;
	/* The target could not be opened: locked by another. */
	bool locked = s->pub.rc == -EBUSY && s->pub.w == NULL;
	/* An empty source (a lost mount?) waits for content. */
	bool empty = s->pub.rc == -ENODATA;

	s->failures++;
	s->fail_rc = s->pub.rc;
	s->st.publish_errors++;
	/* A mount on the target seen before the last publish had ended
	 * left the directory it replaced known as the target. */
	if (s->tgt_ino && moved(s->c->target, s->tgt_dev, s->tgt_ino))
		s->tgt_dev = s->tgt_ino = 0;
	if (s->tgt_ino == 0)
		watch_target_path(s);
	if (s->st.failing_since_ms == 0)
		s->st.failing_since_ms = clock_wall_ms();
	s->st.source_empty = empty;
	log_failure(s, msg, missing, empty, locked);
	s->source_missing = missing;
	debounce_done(&s->db.d);
	/* A missing source is also watched for through its parent; polling
	 * only covers a parent that is missing too.  A target another
	 * daemon lets go of is taken over soon. */
	debounce_timer_retry(&s->db,
			     backoff_ms(s->failures, BACKOFF_MIN_MS,
					missing || locked || empty
						? 5000u
						: BACKOFF_MAX_MS));
}

/* PUBLISHING, COMMITTING or ABORTING -> IDLE. */
static void publish_finished(struct sync *s, enum outcome out)
{
	s->state = ST_IDLE;
	s->target = s->pub.w && !s->pub.target_gone ? SYNC_TARGET_OPEN
						   : SYNC_TARGET_NOT_OPEN;
	note_result(s);
	/* A hold counts busy finds in a row: one that ended otherwise
	 * (failed, torn) leaves the put-back due, to wait anew. */
	if (out != OUT_BUSY &&
	    (s->repair == REPAIR_HELD || s->repair == REPAIR_NOW))
		s->repair = REPAIR_DUE;
	switch (out) {
	case OUT_OK:
		/* It made the full check: what was missing is back. */
		s->repair = REPAIR_NONE;
		finished_ok(s);
		break;
	case OUT_VETO:
		finished_veto(s);
		break;
	case OUT_TORN:
		finished_torn(s);
		break;
	case OUT_BUSY:
		finished_busy(s);
		break;
	case OUT_ERROR:
		finished_error(s);
		break;
	}
	publish_record_error(&s->pub, s->last_err);
	publish_reset(&s->pub);
	if (s->phase == PH_STARTING) {
		s->phase = PH_RUNNING;
		if (s->o.started)
			s->o.started(s, s->o.data);
	}
	if (s->o.changed)
		s->o.changed(s, s->o.data);
}

static void on_check_done(void *data, const struct hook_result *r)
{
	struct sync *s = data;

	if (hook_ok(r)) {
		queue(s, ST_COMMITTING);
		return;
	}
	char *why = hook_describe(r);
	publish_vetoed(&s->pub, why);
	free(why);
	log_msg(LOG_LVL_ERROR, s->c->name, "%s; %s",
		s->pub.err ? s->pub.err : "veto", publish_stays(&s->pub));
	queue(s, ST_ABORTING);
}

/* Runs check_command against the prepared generation. */
static void start_check(struct sync *s)
{
	char **argv = NULL, *why = NULL;

	if (publish_hook_target(s->c, s->pub.w, &why) < 0) {
		publish_unchecked(&s->pub, why);
		free(why);
		log_msg(LOG_LVL_ERROR, s->c->name, "%s; %s",
			s->pub.err ? s->pub.err : "check_command not run",
			publish_stays(&s->pub));
		queue(s, ST_ABORTING);
		return;
	}
	char **env = publish_check_env(&s->pub);

	if (env == NULL || command_split(s->c->check_command, &argv, NULL) < 0) {
		hook_env_free(env);
		struct hook_result r = {.status = -1, .spawn_error = -ENOMEM,
					.file = s->c->check_command,
					.stderr_tail = ""};
		on_check_done(s, &r);
		return;
	}
	struct hook *h = NULL;
	/* on_check_done moves on: now, when the command cannot start. */
	s->state = ST_CHECKING;
	hook_run(s->loop, argv, env, -1, s->c->hook_timeout_s, on_check_done,
		 s, &h);
	command_argv_free(argv);
	hook_env_free(env);
}

/* STANDBY -> IDLE, or on to the publish that stopped it. */
static void standby_finished(struct sync *s)
{
	int rc = s->standby_rc;

	s->state = ST_IDLE;
	/* Not worth more than debug: the publish that comes reports what
	 * keeps it from writing, and a burst would repeat it. */
	if (rc < 0 && rc != -ECANCELED)
		log_msg(LOG_LVL_DEBUG, s->c->name,
			"linking a standby generation: %s; the next publish "
			"links every file",
			s->standby_err ? s->standby_err : strerror(-rc));
	else
		log_msg(LOG_LVL_DEBUG, s->c->name,
			"standby generation %s in %.1f ms",
			rc == 0 ? "linked" : "stopped by a change",
			(double)s->standby_us / 1000.0);
	free(s->standby_err);
	s->standby_err = NULL;
	if (!s->fire_held)
		return;
	s->fire_held = false;
	if (s->phase == PH_STOPPING)
		debounce_done(&s->db.d);
	else
		queue(s, ST_PUBLISHING);
}

static void on_after_work(uv_work_t *req, int status)
{
	struct sync *s = req->data;
	enum sync_state done = s->state;

	(void)status;
	s->st.publish_started_ms = 0;
	s->retire_next = s->retire_next_work;
	if (s->state == ST_PUBLISHING)
		s->scan_us = s->pub.scan_us;
	if (s->state == ST_PUBLISHING && s->pub.was_read) {
		s->st.reads++;
		s->st.full_reads += s->pub.full;
		s->st.entries_read += s->pub.read;
		s->st.files_compared += s->pub.res.compared;
	}
	if (s->gc_handed) {
		s->gc_taken = s->gc_handed; /* was NULL when the work started */
		s->gc_handed = NULL;
	}
	switch (s->state) {
	case ST_PUBLISHING:
		if (s->pub.rc == 0 && s->pub.pending) {
			/* Prepared; the check decides, even at stop: the
			 * publish under way is finished. */
			start_check(s);
			return;
		}
		publish_finished(s, s->pub.rc == 0		    ? OUT_OK
				    : s->pub.rc == -EAGAIN	    ? OUT_TORN
				    : s->pub.rc == -EINPROGRESS ? OUT_BUSY
								: OUT_ERROR);
		break;
	case ST_COMMITTING:
		publish_finished(s, s->pub.rc == 0 ? OUT_OK : OUT_ERROR);
		break;
	case ST_ABORTING:
		publish_finished(s, OUT_VETO);
		break;
	case ST_STANDBY:
		standby_finished(s);
		break;
	default:
		abort(); /* no work item in the other states */
	}
	if (s->state == ST_IDLE)
		check_target_names(s);
	/* In a burst, the next publish recycles a standby.  Not at stop,
	 * nor with a full check due (what was removed from the target by
	 * hand is put back only once it is quiet). */
	if (s->state == ST_IDLE && s->phase == PH_RUNNING &&
	    done != ST_STANDBY && !s->verify_due && s->pub.w &&
	    writer_standby_wanted(s->pub.w))
		queue(s, ST_STANDBY);
	gc_kick(s);
	arm_retire(s);
	stop_continue(s);
}

int sync_start(uv_loop_t *loop, const struct conf_sync *c,
	       const struct sync_opts *o, struct sync **out)
{
	struct sync *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->c = conf_sync_dup(c);
	if (s->c == NULL) {
		free(s);
		return -ENOMEM;
	}
	s->o = *o;
	s->loop = loop;
	s->events_full = watch_overflow_events();
	publish_init(&s->pub, s->c, o->dry_run);
	pathset_init(&s->tnames);
	s->reload_pidfd = c->reload_pid ? hook_pidfd_open(c->reload_pid) : -1;
	debounce_timer_init(loop, &s->db, c->debounce_ms, c->max_delay_ms,
			    on_fire);
	uv_timer_init(loop, &s->resync);
	uv_timer_init(loop, &s->retire);
	uv_timer_init(loop, &s->post_retry);
	s->resync.data = s->retire.data = s->post_retry.data = s;
	s->open_handles = 4;
	arm_resync(s);
	/* Watch the root (and its parent) now, so a source that does not
	 * exist yet is noticed when it appears. */
	if (watch_new(loop, c->source, o->budget, on_watch, s, &s->watch) < 0)
		s->watch = NULL;
	/* And the target's name, so one removed or moved away is noticed. */
	if (watch_new(loop, c->target, o->budget, on_target_watch, s,
		      &s->twatch) < 0)
		s->twatch = NULL;
	/* The start-up publish: the target is right even if the source
	 * changed while we were not running. */
	debounce_timer_retry(&s->db, 0);
	*out = s;
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct sync *s = h->data;

	if (--s->open_handles > 0)
		return;
	writer_gc_free(s->gc_taken);
	void (*done)(void *) = s->stopped;
	void *data = s->stopped_data;
	for (size_t i = 0; i < s->nwarned; i++)
		free(s->warned[i]);
	free(s->warned);
	free(s->last_err);
	publish_fini(&s->pub);
	publish_dirty_fini(&s->dirty);
	pathset_fini(&s->tnames);
	free(s->post_last_err);
	hook_changes_fini(&s->post_changed);
	hook_changes_fini(&s->post_given);
	if (s->reload_pidfd >= 0)
		close(s->reload_pidfd);
	free(s->generation);
	free(s->standby_err);
	conf_sync_free(s->c);
	free(s);
	if (done)
		done(data);
}

static void on_watch_closed(void *data)
{
	struct sync *s = data;

	s->watch = NULL;
	s->db.timer.data = s;
	uv_close((uv_handle_t *)&s->db.timer, on_handle_closed);
	uv_close((uv_handle_t *)&s->resync, on_handle_closed);
	uv_close((uv_handle_t *)&s->retire, on_handle_closed);
	uv_close((uv_handle_t *)&s->post_retry, on_handle_closed);
}

/* At stop, what is under way finishes first: the publish with its check,
 * then the after-publish actions it made due (once, without retries).
 * Whichever ends last queues the final work. */
static void stop_continue(struct sync *s)
{
	if (s->phase != PH_STOPPING || s->state != ST_IDLE ||
	    s->post == POST_RUNNING)
		return;
	if (s->post_due) {
		post_kick(s); /* may end at once and come back here */
		return;
	}
	s->state = ST_DRAINING;
	drain(s);
}

/* A stop leaves what an exiting --once leaves: the live generation and
 * the one replaced last, which keeps the rest of its grace period (the
 * next writer of the target counts it from when ..data changed).  Older
 * ones are removed on the thread pool (on_gc_done comes back here); then
 * the target is closed and the handles with it. */
static void drain(struct sync *s)
{
	if (s->gc || s->gc_taken) {
		gc_kick(s);
		return;
	}
	s->gc_taken = s->pub.w ? writer_gc_take_exit(s->pub.w) : NULL;
	if (s->gc_taken) {
		gc_kick(s);
		return;
	}
	publish_fini(&s->pub);
	s->state = ST_CLOSING;
	finish_stop(s);
}

static void on_twatch_closed(void *data)
{
	struct sync *s = data;

	s->twatch = NULL;
	if (s->watch)
		watch_close(s->watch, on_watch_closed, s);
	else
		on_watch_closed(s);
}

static void finish_stop(struct sync *s)
{
	if (s->twatch)
		watch_close(s->twatch, on_twatch_closed, s);
	else
		on_twatch_closed(s);
}

void sync_stop(struct sync *s, void (*done)(void *data), void *data)
{
	/* The start-up publish will not be tried now. */
	if (s->phase == PH_STARTING && s->o.started)
		s->o.started(s, s->o.data);
	s->phase = PH_STOPPING;
	s->stopped = done;
	s->stopped_data = data;
	atomic_store(&s->standby_stop, true);
	uv_timer_stop(&s->db.timer);
	uv_timer_stop(&s->resync);
	uv_timer_stop(&s->retire);
	/* A failed on_update waiting for its retry is not run again. */
	if (s->post == POST_BACKOFF) {
		s->post_due = false;
		s->post = POST_IDLE;
	}
	uv_timer_stop(&s->post_retry);
	stop_continue(s);
}
