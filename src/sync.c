#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "debounce.h"
#include "log.h"
#include "snapshot.h"
#include "sync.h"
#include "watch.h"
#include "writer.h"

#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 60000u
#define TORN_MAX_MS 5000u
/* A torn read this many times in a row is worth a warning. */
#define TORN_WARN 5

enum work_kind {
	WORK_PUBLISH,
	WORK_RETIRE,
	WORK_FINAL, /* at stop: wait out the grace periods, close the target */
};

struct sync {
	struct conf_sync *c;
	struct sync_opts o;
	uv_loop_t *loop;
	struct writer *w;
	struct watch *watch;
	struct debounce_timer db;
	uv_timer_t resync;
	uv_timer_t retire;
	uv_work_t work;
	enum work_kind kind;
	bool busy;		 /* s->work is queued or running */
	bool publish_after;	 /* a publish is due once it is done */
	bool stopping;
	bool started;
	unsigned open_handles;
	void (*stopped)(void *);
	void *stopped_data;

	/* Handed from the work thread to the loop thread. */
	int rc;
	bool source_failed; /* rc came from reading the source */
	char *err;
	struct snapshot *meta; /* watch list and warnings of the snapshot */
	struct writer_result res;
	uint64_t retire_next;
	uint64_t started_us, finished_us;

	/* For logging once per change of state. */
	char *last_err;
	unsigned failures, torn;
	bool source_missing;
	bool watch_limited;
	char **warned;
	size_t nwarned;

	struct sync_stats st;
	char *generation;
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
	st->generation = s->generation;
	st->last_error = s->last_err;
	st->watched = s->watch ? watch_count(s->watch) : 0;
}

static struct writer_opts writer_opts_of(const struct sync *s)
{
	struct writer_opts wo = {
		.name = s->c->name,
		.fsync = s->c->fsync,
		.dry_run = s->o.dry_run,
		.uid = s->c->uid,
		.gid = s->c->gid,
		.file_mode = s->c->file_mode,
		.dir_mode = s->c->dir_mode,
		.grace_ms = s->c->grace_ms,
	};
	return wo;
}

/* ---- on the thread pool ---- */

static void do_publish(struct sync *s)
{
	struct snapshot_opts so = {
		.links = s->c->symlinks,
		.exclude = s->c->exclude,
		.nexclude = s->c->nexclude,
	};
	struct snapshot *snap = NULL;

	if (s->w == NULL) {
		struct writer_opts wo = writer_opts_of(s);
		s->rc = writer_open(s->c->target, &wo, &s->w, &s->err);
		if (s->rc < 0)
			return;
	}
	s->rc = snapshot_take(s->c->source, &so, &snap, &s->err);
	if (s->rc < 0) {
		s->source_failed = true;
		return;
	}
	/* Keep what the loop thread needs; the writer takes the rest. */
	s->meta = calloc(1, sizeof(*s->meta));
	if (s->meta) {
		s->meta->root_fd = -1;
		s->meta->root_dev = snap->root_dev;
		s->meta->root_ino = snap->root_ino;
		s->meta->watch = snap->watch;
		s->meta->nwatch = snap->nwatch;
		s->meta->warn = snap->warn;
		s->meta->nwarn = snap->nwarn;
		snap->watch = NULL;
		snap->warn = NULL;
		snap->nwatch = snap->nwarn = 0;
	}
	s->rc = writer_publish(s->w, snap, &s->res, &s->err);
}

static void on_work(uv_work_t *req)
{
	struct sync *s = req->data;

	s->started_us = mono_us();
	switch (s->kind) {
	case WORK_PUBLISH:
		do_publish(s);
		break;
	case WORK_RETIRE:
		break;
	case WORK_FINAL:
		if (s->w == NULL)
			break;
		/* Readers keep their grace period even at shutdown. */
		writer_retire_wait(s->w);
		writer_close(s->w);
		s->w = NULL;
		break;
	}
	if (s->w)
		writer_retire(s->w, false, &s->retire_next);
	s->finished_us = mono_us();
}

/* ---- on the loop thread ---- */

static void on_after_work(uv_work_t *req, int status);

static void queue(struct sync *s, enum work_kind kind)
{
	if (s->busy)
		abort(); /* s->work is in flight: a logic error */
	s->kind = kind;
	s->busy = true;
	s->rc = 0;
	s->source_failed = false;
	s->work.data = s;
	if (uv_queue_work(s->loop, &s->work, on_work, on_after_work) < 0) {
		s->busy = false;
		log_msg(LOG_LVL_ERROR, s->c->name, "cannot queue work");
	}
}

static void on_fire(struct debounce_timer *t)
{
	struct sync *s = (struct sync *)((char *)t - offsetof(struct sync, db));

	if (s->stopping) {
		debounce_done(&t->d);
		return;
	}
	/* One work item at a time: a retire job in flight goes first. */
	if (s->busy) {
		s->publish_after = true;
		return;
	}
	queue(s, WORK_PUBLISH);
}

static void on_watch(void *data, const char *name, int root)
{
	struct sync *s = data;
	struct snapshot_opts so = {.exclude = s->c->exclude,
				   .nexclude = s->c->nexclude};

	/* An excluded name cannot change the snapshot; a reserved one (a
	 * source volume's ..data swap) can.  Only names are known here, so
	 * patterns that match whole paths do not filter events (the
	 * re-scan then finds nothing to publish). */
	if (!root && name && !(name[0] == '.' && name[1] == '.') &&
	    snapshot_excluded(&so, name, name))
		return;
	if (!s->stopping)
		debounce_timer_event(&s->db);
}

void sync_rescan(struct sync *s)
{
	if (s->stopping)
		return;
	s->st.rescans++;
	debounce_timer_retry(&s->db, 0);
}

static void on_resync(uv_timer_t *h)
{
	sync_rescan(h->data);
}

static void on_retire(uv_timer_t *h)
{
	struct sync *s = h->data;

	if (!s->busy && !s->stopping)
		queue(s, WORK_RETIRE);
	/* A running publish retires what is due when it ends. */
}

static void arm_retire(struct sync *s)
{
	if (s->retire_next == 0 || s->stopping) {
		uv_timer_stop(&s->retire);
		return;
	}
	uint64_t now = writer_now_ms();
	uv_timer_start(&s->retire, on_retire,
		       s->retire_next > now ? s->retire_next - now : 0, 0);
}

static void arm_resync(struct sync *s)
{
	uint64_t ms = s->watch_limited ? s->c->poll_interval_ms
					: (uint64_t)s->c->resync_interval_s * 1000u;
	if (ms == 0) {
		uv_timer_stop(&s->resync);
		return;
	}
	uv_timer_start(&s->resync, on_resync, ms, ms);
}

static bool warned_before(struct sync *s, const char *key)
{
	for (size_t i = 0; i < s->nwarned; i++)
		if (strcmp(s->warned[i], key) == 0)
			return true;
	return false;
}

/* Logs the snapshot's warnings that the previous one did not have. */
static void log_warnings(struct sync *s, const struct snapshot *m)
{
	char **now = calloc(m->nwarn ? m->nwarn : 1, sizeof(*now));
	size_t n = 0;

	for (size_t i = 0; now && i < m->nwarn; i++) {
		char *key;
		if (asprintf(&key, "%d %s", (int)m->warn[i].kind,
			     m->warn[i].path) < 0)
			continue;
		if (!warned_before(s, key))
			log_msg(LOG_LVL_WARN, s->c->name, "source %s: %s: %s",
				s->c->source, m->warn[i].path,
				snapshot_warn_str(m->warn[i].kind));
		now[n++] = key;
	}
	for (size_t i = 0; i < s->nwarned; i++)
		free(s->warned[i]);
	free(s->warned);
	s->warned = now;
	s->nwarned = n;
}

static void update_watches(struct sync *s, const struct snapshot *m)
{
	size_t added = 0;
	int rc;

	if (s->watch == NULL) {
		rc = watch_new(s->loop, s->c->source, on_watch, s, &s->watch);
		if (rc < 0) {
			log_msg(LOG_LVL_ERROR, s->c->name, "watch %s: %s",
				s->c->source, strerror(-rc));
			return;
		}
	}
	rc = watch_update(s->watch, m->watch, m->nwatch, &added);
	if (rc == -ENOSPC) {
		if (!s->watch_limited) {
			s->watch_limited = true;
			s->st.watch_fallbacks++;
			log_msg(LOG_LVL_WARN, s->c->name,
				"source %s: out of inotify watches "
				"(fs.inotify.max_user_watches); re-scanning "
				"every %u ms instead",
				s->c->source, s->c->poll_interval_ms);
			arm_resync(s);
		}
	} else if (rc < 0) {
		log_msg(LOG_LVL_WARN, s->c->name, "watch %s: %s", s->c->source,
			strerror(-rc));
	} else if (s->watch_limited) {
		s->watch_limited = false;
		log_msg(LOG_LVL_INFO, s->c->name,
			"source %s: every directory is watched again",
			s->c->source);
		arm_resync(s);
	}
	/* Changes made before a new watcher was in place went unseen: look
	 * once more. */
	if (added > 0)
		debounce_event(&s->db.d, uv_now(s->loop));
}

static uint64_t backoff_ms(unsigned failures, uint64_t min, uint64_t max)
{
	uint64_t ms = min;
	for (unsigned i = 1; i < failures && ms < max; i++)
		ms *= 2;
	return ms < max ? ms : max;
}

static void publish_done(struct sync *s)
{
	const char *name = s->c->name;

	if (s->meta) {
		log_warnings(s, s->meta);
		if (!s->stopping)
			update_watches(s, s->meta);
		snapshot_free(s->meta);
		s->meta = NULL;
	}
	if (s->rc == 0) {
		if (s->failures > 0 || s->source_missing)
			log_msg(LOG_LVL_INFO, name,
				"publishing works again (after %u failed "
				"attempts)",
				s->failures);
		s->failures = s->torn = 0;
		s->source_missing = false;
		free(s->last_err);
		s->last_err = NULL;
		s->st.failing_since_ms = 0;
		uint64_t us = s->finished_us - s->started_us;
		if (s->res.published) {
			s->st.publishes++;
			s->st.last_publish_ms = wall_ms();
			s->st.last_duration_us = us;
			log_msg(LOG_LVL_INFO, name,
				"published %s (%zu added, %zu changed, %zu "
				"removed) in %.1f ms",
				s->res.generation, s->res.added, s->res.changed,
				s->res.removed, (double)us / 1000.0);
		} else if (s->o.dry_run) {
			log_msg(LOG_LVL_INFO, name,
				"dry run: %zu added, %zu changed, %zu removed",
				s->res.added, s->res.changed, s->res.removed);
		} else {
			log_msg(LOG_LVL_DEBUG, name, "unchanged");
		}
		if (s->res.generation) {
			free(s->generation);
			s->generation = strdup(s->res.generation);
			if (s->st.last_publish_ms == 0)
				s->st.last_publish_ms = wall_ms();
		}
		s->st.files = s->res.files;
		s->st.bytes = s->res.bytes;
		debounce_timer_done(&s->db);
	} else if (s->rc == -EAGAIN) {
		/* A file was being written: try again once it is quiet. */
		s->torn++;
		log_msg(s->torn == TORN_WARN ? LOG_LVL_WARN : LOG_LVL_DEBUG,
			name, "%s; retrying", s->err);
		debounce_done(&s->db.d);
		uint64_t wait = backoff_ms(s->torn, 50, TORN_MAX_MS);
		if (wait < s->c->debounce_ms)
			wait = s->c->debounce_ms;
		debounce_timer_retry(&s->db, wait);
	} else {
		s->failures++;
		s->st.publish_errors++;
		if (s->st.failing_since_ms == 0)
			s->st.failing_since_ms = wall_ms();
		const char *msg = s->err ? s->err : strerror(-s->rc);
		bool missing = s->rc == -ENOENT && s->source_failed;
		if (s->last_err == NULL || strcmp(s->last_err, msg) != 0) {
			if (missing)
				log_msg(LOG_LVL_WARN, name,
					"%s; waiting for it to appear", msg);
			else
				log_msg(LOG_LVL_ERROR, name,
					"%s; retrying with backoff", msg);
			free(s->last_err);
			s->last_err = strdup(msg);
		} else {
			log_msg(LOG_LVL_DEBUG, name, "still failing: %s", msg);
		}
		s->source_missing = missing;
		debounce_done(&s->db.d);
		/* A missing source is also watched for through its parent;
		 * polling only covers a parent that is missing too. */
		debounce_timer_retry(&s->db,
				     backoff_ms(s->failures, BACKOFF_MIN_MS,
						missing ? 5000u : BACKOFF_MAX_MS));
	}
	free(s->err);
	s->err = NULL;
	writer_result_fini(&s->res);
	if (!s->started) {
		s->started = true;
		if (s->o.started)
			s->o.started(s, s->o.data);
	}
	if (s->o.changed)
		s->o.changed(s, s->o.data);
}

static void finish_stop(struct sync *s);

static void on_after_work(uv_work_t *req, int status)
{
	struct sync *s = req->data;
	enum work_kind kind = s->kind;

	(void)status;
	s->busy = false;
	if (kind == WORK_PUBLISH)
		publish_done(s);
	if (kind == WORK_FINAL) {
		finish_stop(s);
		return;
	}
	arm_retire(s);
	if (s->stopping) {
		if (s->publish_after) {
			s->publish_after = false;
			debounce_done(&s->db.d);
		}
		queue(s, WORK_FINAL);
	} else if (s->publish_after) {
		s->publish_after = false;
		queue(s, WORK_PUBLISH);
	}
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
	debounce_timer_init(loop, &s->db, c->debounce_ms, c->max_delay_ms,
			    on_fire);
	uv_timer_init(loop, &s->resync);
	uv_timer_init(loop, &s->retire);
	s->resync.data = s->retire.data = s;
	s->open_handles = 3;
	arm_resync(s);
	/* Watch the root (and its parent) now, so a source that does not
	 * exist yet is noticed when it appears. */
	if (watch_new(loop, c->source, on_watch, s, &s->watch) < 0)
		s->watch = NULL;
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
	void (*done)(void *) = s->stopped;
	void *data = s->stopped_data;
	for (size_t i = 0; i < s->nwarned; i++)
		free(s->warned[i]);
	free(s->warned);
	free(s->last_err);
	free(s->generation);
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
}

static void finish_stop(struct sync *s)
{
	if (s->watch)
		watch_close(s->watch, on_watch_closed, s);
	else
		on_watch_closed(s);
}

void sync_stop(struct sync *s, void (*done)(void *data), void *data)
{
	s->stopping = true;
	s->stopped = done;
	s->stopped_data = data;
	uv_timer_stop(&s->db.timer);
	uv_timer_stop(&s->resync);
	uv_timer_stop(&s->retire);
	/* A publish in progress finishes first; on_after_work goes on. */
	if (!s->busy)
		queue(s, WORK_FINAL);
}
