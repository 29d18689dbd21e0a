#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "fsutil.h"
#include "hook.h"
#include "log.h"
#include "publish.h"
#include "snapshot.h"
#include "state.h"
#include "statahead.h"
#include "thread.h"
#include "writer.h"

/* A torn read is retried this many times before --once gives up. */
#define ONCE_TRIES 5

struct writer_opts publish_writer_opts(const struct conf_sync *c, bool dry_run)
{
	struct writer_opts wo = {
		.name = c->name,
		.fsync = c->fsync,
		.dry_run = dry_run,
		.uid = c->uid,
		.gid = c->gid,
		.file_mode = c->file_mode,
		.dir_mode = c->dir_mode,
		.grace_ms = c->grace_ms,
		.max_files = c->max_files,
		.allow_empty = c->allow_empty,
	};
	return wo;
}

struct snapshot_opts publish_snapshot_opts(const struct conf_sync *c)
{
	struct snapshot_opts so = {
		.links = c->symlinks,
		.exclude = c->ignore,
		.follow_into = c->follow_into,
		.nfollow_into = c->nfollow_into,
		.max_files = c->max_files,
		.max_bytes = c->max_bytes,
	};
	return so;
}

/* Appends a copy of `path` to *v; an absolute one, or out of memory,
 * makes `d` all. */
static void dirty_push(struct publish_dirty *d, char ***v, size_t *n,
		       size_t *cap, const char *path)
{
	char *copy = NULL;

	if (path[0] == '/' || (copy = strdup(path)) == NULL ||
	    array_grow(v, cap, *n, sizeof(**v)) < 0) {
		free(copy);
		publish_dirty_all(d);
		return;
	}
	(*v)[(*n)++] = copy;
}

void publish_dirty_add(struct publish_dirty *d, const char *dir)
{
	if (!d->all)
		dirty_push(d, &d->dirs, &d->n, &d->cap, dir);
}

void publish_dirty_add_name(struct publish_dirty *d, const char *path)
{
	if (d->all)
		return;
	for (size_t i = 0; i < d->nnames; i++)
		if (strcmp(d->names[i], path) == 0)
			return;
	dirty_push(d, &d->names, &d->nnames, &d->namecap, path);
}

void publish_dirty_all(struct publish_dirty *d)
{
	publish_dirty_fini(d);
	d->all = true;
}

void publish_dirty_fini(struct publish_dirty *d)
{
	fsutil_names_free(d->dirs, d->n);
	fsutil_names_free(d->names, d->nnames);
	memset(d, 0, sizeof(*d));
}

void publish_init(struct publish *p, const struct conf_sync *c, bool dry_run)
{
	memset(p, 0, sizeof(*p));
	p->c = c;
	p->dry_run = dry_run;
}

void publish_reset(struct publish *p)
{
	p->rc = 0;
	p->source_failed = false;
	p->was_read = p->full = false;
	p->read = 0;
	free(p->err);
	p->err = NULL;
	writer_result_fini(&p->res);
	/* The last read's warnings, should the next read start from it. */
	if (p->extras) {
		snapshot_extras_free(p->base_extras);
		p->base_extras = p->extras;
		p->extras = NULL;
	}
}

void publish_fini(struct publish *p)
{
	publish_reset(p);
	if (p->pending && p->w)
		writer_abort(p->w, p->pending);
	p->pending = NULL;
	writer_close(p->w);
	p->w = NULL;
	free(p->recorded_err);
	free(p->had_gen);
	p->had_gen = NULL;
	p->recorded_err = NULL;
	publish_dirty_fini(&p->dirty);
	snapshot_extras_free(p->base_extras);
	p->base_extras = NULL;
	p->base_live = false;
}

/* Whether the directory open as `fd` is the target this mapping last
 * had, moved back: its device and inode, which a directory made since
 * may have been given again once that one was removed, and ..data
 * naming the generation that was live then, which no other has. */
static bool had_again(const struct publish *p, int fd)
{
	struct stat st;
	char *gen = NULL;
	bool same = p->had_gen && fstat(fd, &st) == 0 &&
		    (uint64_t)st.st_dev == p->had_dev &&
		    (uint64_t)st.st_ino == p->had_ino &&
		    fsutil_readlinkat(fd, WRITER_DATA, &gen) == 0 &&
		    strcmp(gen, p->had_gen) == 0;

	free(gen);
	return same;
}

/* A target gone (moved away, or replaced and then removed) with nothing
 * in its place, in a directory that another user can change: that user
 * may have moved it, and could move each copy made anew away again,
 * filling the disk with root's files.  It is made anew only once root
 * (or we) made the directory again; one of someone else's is refused
 * when it is opened.  Nor is a directory there that is not empty taken
 * for one root made again: that user could have renamed a directory of
 * root's into place from beside it (another mapping's target, a tree
 * whose links lead elsewhere).  1 when something is there, 0 when
 * nothing is and it may be made, -EPERM when it may not. */
static int remake_refused(struct publish *p)
{
	char *why = NULL;
	int fd = fsutil_chase(p->c->target, 0, O_RDONLY | O_DIRECTORY, NULL,
			      NULL);
	/* A directory there that is not empty (root's fresh one is), nor
	 * the one this mapping last had, moved back. */
	bool full = fd >= 0 && !fsutil_dir_empty(fd) && !had_again(p, fd);
	struct stat st;

	/* Opened again by path: it must be this one (or, where none was,
	 * none), not one renamed into its place since. */
	p->seen_dev = 0;
	p->seen_ino = full ? 0 : WRITER_NO_DIR;
	if (fd >= 0 && !full && fstat(fd, &st) == 0) {
		p->seen_dev = (uint64_t)st.st_dev;
		p->seen_ino = (uint64_t)st.st_ino;
	}
	if (fd >= 0)
		close(fd);
	if (fd != -ENOENT && !full)
		return 1; /* something there: opened (not made) and checked */
	fd = fsutil_chase(p->c->target, FSUTIL_CHASE_TRUSTED,
			  O_RDONLY | O_DIRECTORY, NULL, &why);
	if (fd >= 0)
		close(fd);
	if (fd == -EPERM && full)
		log_err_set(&p->err, fd,
			    "target %s was replaced by a directory that is "
			    "not empty, and %s; not publishing into it (one "
			    "of root's could have been moved there): move it "
			    "away and make the target again, empty, as root",
			    p->c->target, why ? why : strerror(-fd));
	else if (fd == -EPERM)
		log_err_set(&p->err, fd,
			    "target %s is gone, and %s; not making it anew "
			    "(whoever can change that could move each copy "
			    "away again): make it again, as root, to publish "
			    "to it",
			    p->c->target, why ? why : strerror(-fd));
	free(why);
	return fd == -EPERM ? fd : full;
}

/* A target first opened where another user can change the way to it:
 * taken as found, it may be a directory of root's they renamed there
 * (another mapping's target), which said once tells the operator. */
static void warn_way(const struct publish *p)
{
	char *why = NULL;
	int fd = fsutil_chase(p->c->target, FSUTIL_CHASE_TRUSTED,
			      O_RDONLY | O_DIRECTORY, NULL, &why);

	if (fd >= 0)
		close(fd);
	if (fd == -EPERM && why)
		log_msg(LOG_LVL_WARN, p->c->name,
			"target %s: %s; a directory of root's moved there "
			"before a start is taken for the target: keep targets "
			"where only root can change the way to them",
			p->c->target, fsutil_chase_why(why, p->c->target, fd));
	free(why);
}

/* The configured path is the target: one removed, or moved away, by an
 * operator is made anew (and locked anew) rather than left missing or
 * published into where it went. */
static int check_target(struct publish *p)
{
	int rc = writer_check_target(p->w, &p->err);

	/* A file in its place, or a link or a directory refused: the
	 * directory held is not the target (nor is anything) until one
	 * that can be is there again. */
	if (rc == -ENOTDIR || rc == -ELOOP || rc == -EPERM)
		p->target_gone = true;
	if (rc == 0 || (rc != -ENOENT && rc != -ESTALE))
		return rc;
	if (remake_refused(p) < 0) {
		p->target_gone = true;
		return -EPERM;
	}
	log_msg(LOG_LVL_WARN, p->c->name,
		"target %s was %s; publishing it anew", p->c->target,
		rc == -ENOENT ? "removed"
			      : "moved away or replaced by another directory");
	const char *gen = writer_live_generation(p->w);
	free(p->had_gen);
	p->had_gen = gen ? strdup(gen) : NULL;
	writer_close(p->w);
	p->w = NULL;
	p->base_live = false; /* a new writer has a record of its own */
	return 0;
}

static int open_target(struct publish *p)
{
	p->target_gone = false;
	if (p->w && (p->rc = check_target(p)) < 0)
		return p->rc;
	/* Where the check cannot be made, the put-back goes ahead. */
	if (p->w && p->settle_ms &&
	    writer_target_busy(p->w, p->settle_ms) == 1)
		return p->rc = -EINPROGRESS;
	p->settle_ms = 0;
	if (p->w && p->verify)
		writer_verify_next(p->w);
	p->verify = false;
	/* Once it had one, a missing target is made only where nobody
	 * else can change the way to it; one there is opened without
	 * making it, should it be removed meanwhile. */
	int there = p->w == NULL && p->had_target ? remake_refused(p) : 0;
	p->target_gone = there < 0;
	if (there < 0)
		return p->rc = -EPERM;
	if (p->w == NULL) {
		struct writer_opts wo = publish_writer_opts(p->c, p->dry_run);
		wo.one_shot = p->once;
		wo.load_later = p->once;
		/* As often as a daemon's full check. */
		wo.check_s = p->once ? p->c->resync_interval_s : 0;
		wo.no_create = there == 1;
		if (wo.no_create) {
			wo.expect_dev = p->seen_dev;
			wo.expect_ino = p->seen_ino;
		}
		p->rc = writer_open(p->c->target, &wo, &p->w, &p->err);
		if (p->rc == 0 && !p->had_target)
			warn_way(p);
		p->had_target |= p->rc == 0;
		if (p->rc == 0)
			(void)writer_target_id(p->w, &p->had_dev, &p->had_ino);
	}
	return p->rc;
}

/* What a read of the whole source is told: room at once for what the
 * last read found (in huge pages): grown by doubling on the heap, the
 * array would be copied on the way, each copy beside the live record.
 * The daemon's heap has no room freed by the reads before either: a
 * large live record is in a store (see snapshot_supersede()), not the
 * heap.  And it reads over the live record: what is as it holds it
 * stays its, not copied (a second record beside it at a million entries
 * is a hundred MB more).  A --once run, whose record is loaded while
 * the source is read, has neither; it keeps no store to read over. */
static struct snapshot_opts full_opts(const struct publish *p,
				      const struct snapshot_opts *so)
{
	const struct snapshot *base = writer_live(p->w);
	struct snapshot_opts o = *so;

	o.expect = base ? base->n : 0;
	o.over = base;
	o.project = writer_project_entry;
	o.project_arg = p->w;
	return o;
}

/* What a read that went through tells the publish. */
static int source_read(struct publish *p, int rc, const struct snapshot *snap)
{
	p->source_failed = rc < 0;
	if (rc < 0)
		return rc;
	p->read = snap->read;
	p->was_read = true;
	return 0;
}

/* Reads the source: again only where it changed when the last read is
 * there to start from, as the live record, and can be trusted to give
 * what a full walk would (snapshot_refresh says when not); the whole of
 * it otherwise. */
static int read_source(struct publish *p, const struct snapshot_opts *so,
		       bool full, struct snapshot **snap)
{
	const struct snapshot *base = writer_live(p->w);
	/* What is read again as the record holds it stays the record's,
	 * once given the mode and owner it was published with. */
	struct snapshot_opts ro = *so;
	int rc = -ESTALE;

	ro.project = writer_project_entry;
	ro.project_arg = p->w;
	if (!full && p->base_live && p->base_extras && !p->dirty.all) {
		const struct snap_changed c = {
			.dirs = p->dirty.dirs, .ndirs = p->dirty.n,
			.names = p->dirty.names, .nnames = p->dirty.nnames};
		rc = snapshot_refresh_changed(base, p->base_extras, &c, &ro,
					      snap, &p->err);
	}
	/* Until this read is what the target holds. */
	p->base_live = false;
	p->full = rc == -ESTALE;
	if (p->full) {
		struct snapshot_opts o = full_opts(p, so);
		rc = snapshot_take(p->c->source, &o, snap, &p->err);
	}
	return source_read(p, rc, *snap);
}

/* A read of the whole source on a thread of its own. */
struct walk_job {
	const char *source;
	struct snapshot_opts o;
	struct snapshot *snap;
	char *err;
	int rc;
};

static void *walk_run(void *arg)
{
	struct walk_job *j = arg;

	j->rc = snapshot_take(j->source, &j->o, &j->snap, &j->err);
	return NULL;
}

/* The first read of a writer opened with load_later (--once): the
 * source is read on a thread of its own while this one gets the writer
 * ready: it loads the live record, then starts the check of every live
 * file on a thread that takes the other core (see writer_verify_start).
 * The walk touches nothing of the writer but the options it projects
 * entries with. */
static int read_beside(struct publish *p, const struct snapshot_opts *so,
		       struct snapshot **snap)
{
	struct walk_job j = {.source = p->c->source, .o = full_opts(p, so)};
	struct statahead *a = NULL;
	pthread_t t;

	/* Room at once for what the state holds: not an array doubled and
	 * copied as the walk grows it, before the state is loaded. */
	j.o.expect = writer_expect(p->w);
	if (statahead_new(&a) == 0)
		j.o.statahead = a;
	bool beside = thread_start_beside(&t, walk_run, &j) == 0;
	int rc = writer_load(p->w, &p->err);

	if (rc == 0)
		writer_verify_start(p->w);
	/* With no full check due, that core stats the source ahead. */
	if (rc == 0 && beside && a && !writer_check_due(p->w) &&
	    writer_live(p->w))
		(void)statahead_start(a, p->c->source, writer_live(p->w));
	if (beside)
		pthread_join(t, NULL);
	else if (rc == 0)
		walk_run(&j);
	if (statahead_used(a) > 0)
		log_msg(LOG_LVL_DEBUG, p->c->name,
			"source %s: %zu names looked up ahead", p->c->source,
			statahead_used(a));
	statahead_free(a);
	p->base_live = false;
	p->full = true;
	if (rc < 0) {
		/* The walk was for nothing: the writer has no record. */
		snapshot_free(j.snap);
		free(j.err);
		return rc;
	}
	free(p->err);
	p->err = j.err;
	*snap = j.snap;
	return source_read(p, j.rc, j.snap);
}

/* The read now is the live record: the next read can start from it.
 * Not in a dry run (the record stays as it was), nor for --once. */
static void base_taken(struct publish *p)
{
	p->base_live = !p->once && !p->dry_run && p->extras != NULL;
}

/* A read of part of the source that met a file being written published
 * nothing: the live record is still what the next read starts from, and
 * what was to be read again still is.  The retry then costs what
 * changed, not a walk of the whole source. */
static int read_done(struct publish *p)
{
	/* Not full: read again from the live record (read_source()). */
	if (p->rc == -EAGAIN && !p->full) {
		snapshot_extras_free(p->extras);
		p->extras = NULL;
		p->base_live = true;
		return p->rc;
	}
	publish_dirty_fini(&p->dirty);
	return p->rc;
}

int publish_prepare(struct publish *p)
{
	struct snapshot_opts so = publish_snapshot_opts(p->c);
	struct snapshot *snap = NULL;
	uint64_t start_us = clock_us(CLOCK_MONOTONIC);
	bool full = p->verify;

	publish_reset(p);
	if (open_target(p) < 0)
		return p->rc;
	/* A followed link must not lead the walk back into the target. */
	(void)writer_target_id(p->w, &so.avoid_dev, &so.avoid_ino);
	/* No live record yet: the writer was opened to load it later. */
	if (writer_live(p->w) == NULL) {
		p->rc = read_beside(p, &so, &snap);
	} else {
		/* Every live file is checked, when that is due, while the
		 * source is read. */
		writer_verify_start(p->w);
		p->rc = read_source(p, &so, full, &snap);
	}
	if (p->rc < 0)
		return read_done(p);
	uint64_t walked_us = clock_us(CLOCK_MONOTONIC);
	/* What the caller needs of the walk; the writer takes the rest. */
	p->extras = snapshot_take_extras(snap);
	p->rc = writer_prepare(p->w, snap, &p->pending, &p->res, &p->err);
	if (p->rc == 0 && p->pending == NULL)
		base_taken(p); /* nothing to publish */
	/* What a re-scan costs: the walk, and the compare when it found
	 * nothing to publish; copying what changed is the price of the
	 * change, not of looking. */
	p->scan_us = (p->rc == 0 && p->pending == NULL
			      ? clock_us(CLOCK_MONOTONIC)
			      : walked_us) -
		     start_us;
	if (read_done(p) < 0)
		return p->rc;
	/* With a check to pass, the generation waits for it. */
	if (p->pending && p->c->check_command == NULL)
		return publish_commit(p);
	return p->rc;
}

int publish_commit(struct publish *p)
{
	p->rc = writer_commit(p->w, p->pending, &p->res, &p->err);
	p->pending = NULL;
	/* After a failure, whatever the record became, the next read is a
	 * full one. */
	if (p->rc == 0)
		base_taken(p);
	return p->rc;
}

void publish_abort(struct publish *p)
{
	writer_abort(p->w, p->pending);
	p->pending = NULL;
}

char **publish_check_env(const struct publish *p)
{
	const char *dir = writer_pending_dir(p->pending);
	const char *gen = strrchr(dir, '/');
	struct hook_vars hv = {
		.name = p->c->name, .target = p->c->target,
		.gen = gen ? gen + 1 : dir, .gen_dir = dir, .changed = -1,
		.pass = p->c->hook_env, .npass = p->c->nhook_env,
	};

	return hook_env(&hv);
}

int publish_hook_target(const struct conf_sync *c, const struct writer *w,
			char **err)
{
	uint64_t dev, ino;
	struct stat st;
	char *why = NULL;
	int fd = fsutil_chase(c->target, FSUTIL_CHASE_TRUSTED,
			      O_RDONLY | O_DIRECTORY, NULL, &why);
	int rc = fd < 0 ? fd : fstat(fd, &st) < 0 ? -errno : 0;

	if (fd >= 0)
		close(fd);
	if (rc == 0 && (w == NULL || writer_target_id(w, &dev, &ino) < 0 ||
			(uint64_t)st.st_dev != dev ||
			(uint64_t)st.st_ino != ino)) {
		rc = -ESTALE;
		why = strdup("it no longer leads to the directory atomsyncd "
			     "writes");
	}
	if (rc < 0)
		log_err_set(err, rc,
			    "target %s: %s; hooks are not run on a path "
			    "another user can redirect",
			    c->target, fsutil_chase_why(why, c->target, rc));
	free(why);
	return rc;
}

void publish_unchecked(struct publish *p, const char *why)
{
	free(p->err);
	if (asprintf(&p->err, "check_command not run on %s: %s",
		     writer_pending_dir(p->pending), why) < 0)
		p->err = NULL;
	p->rc = -EPERM;
}

void publish_vetoed(struct publish *p, const char *why)
{
	free(p->err);
	if (asprintf(&p->err, "check_command vetoed %s: %s",
		     writer_pending_dir(p->pending), why ? why : "veto") < 0)
		p->err = NULL;
	p->rc = -ECANCELED;
}

int publish_signal(const struct conf_sync *c, int pidfd, char **err)
{
	int rc = 0;

	if (c->reload_signal == 0)
		return 0;
	if (c->reload_pidfile)
		rc = hook_signal_pidfile(c->reload_pidfile, c->reload_signal,
					 err);
	else
		rc = hook_signal_pidfd(pidfd, c->reload_pid, c->reload_signal,
				       err);
	if (rc == 0)
		log_msg(LOG_LVL_DEBUG, c->name, "sent reload signal %d",
			c->reload_signal);
	return rc;
}

char **publish_update_env(const struct conf_sync *c, const char *gen,
			  const struct hook_changes *ch)
{
	struct hook_vars hv = {
		.name = c->name, .target = c->target, .gen = gen,
		.changed = (long)ch->n, .changed_file = true,
		.incomplete = ch->incomplete,
		.pass = c->hook_env, .npass = c->nhook_env,
	};

	return hook_env(&hv);
}

/* The target's error file tells why it lags: written when the error
 * changes, removed when publishing works again.  A target that cannot be
 * opened cannot hold it; the log has the error. */
void publish_record_error(struct publish *p, const char *msg)
{
	if (p->w == NULL || p->dry_run ||
	    (msg == NULL ? p->record_clear
			 : p->recorded_err && strcmp(p->recorded_err, msg) == 0))
		return;
	int rc = writer_record_error(p->w, clock_wall_ms(), msg);
	free(p->recorded_err);
	p->recorded_err = rc == 0 && msg ? strdup(msg) : NULL;
	p->record_clear = rc == 0 && msg == NULL;
	if (rc < 0)
		log_msg(LOG_LVL_DEBUG, p->c->name, "target %s: %s %s: %s",
			p->c->target,
			msg ? "recording the error in" : "removing",
			STATE_ERROR_FILE, strerror(-rc));
}

/* ---- --once ---- */

/* Prepares, retrying a torn read a few times; logs the walk's warnings
 * once, from the first walk that got through. */
static int once_prepare(struct publish *p)
{
	bool warned = false;

	for (int attempt = 1;; attempt++) {
		int rc = publish_prepare(p);
		if (!warned)
			snapshot_warnings_log(p->extras, p->c->name,
					      p->c->source);
		warned |= p->extras != NULL;
		if (rc != -EAGAIN || attempt == ONCE_TRIES)
			return rc;
		log_msg(LOG_LVL_DEBUG, p->c->name, "%s; retrying",
			p->err ? p->err : "source changed");
		struct timespec ts = {0, 20000000L * attempt};
		nanosleep(&ts, NULL);
	}
}

const char *publish_stays(const struct publish *p)
{
	return p->w && writer_live_generation(p->w)
		       ? "the live generation stays"
		       : "nothing is published (the target has no live "
			 "generation yet)";
}

/* check_command on the prepared generation; a veto drops it. */
static int once_check(struct publish *p)
{
	char *why = NULL;
	if (publish_hook_target(p->c, p->w, &why) < 0) {
		publish_unchecked(p, why);
		free(why);
		publish_abort(p);
		log_msg(LOG_LVL_ERROR, p->c->name,
			"%s; %s", p->err, publish_stays(p));
		return -ECANCELED; /* logged, as a veto is */
	}
	char **env = publish_check_env(p);
	int rc = env ? hook_run_wait(p->c->check_command, env, -1,
				     p->c->hook_timeout_s, &why)
		     : -ENOMEM;

	hook_env_free(env);
	if (rc < 0) {
		publish_vetoed(p, why ? why : strerror(-rc));
		publish_abort(p);
		log_msg(LOG_LVL_ERROR, p->c->name,
			"%s; %s", p->err, publish_stays(p));
	}
	free(why);
	return rc;
}

static int once_on_update(struct publish *p, char **why)
{
	struct hook_changes ch = {0};
	char *t = NULL;
	int rc = publish_hook_target(p->c, p->w, &t);

	if (rc < 0) {
		log_err_set(why, rc, "not run: %s", t ? t : strerror(-rc));
		free(t);
		return rc;
	}
	hook_changes_add(&ch, p->res.paths, p->res.paths_len, false);
	char **env = publish_update_env(p->c, p->res.generation, &ch);
	int fd = hook_changes_fd(&ch);

	if (fd < 0)
		rc = log_err_set(why, fd, "changed-paths file: %s",
				 strerror(-fd));
	else
		rc = env ? hook_run_wait(p->c->on_update, env, fd,
					 p->c->hook_timeout_s, why)
			 : -ENOMEM;
	if (fd >= 0)
		close(fd);
	hook_env_free(env);
	hook_changes_fini(&ch);
	return rc;
}

/* After a publish, as the daemon does: the signal, then on_update. */
static int once_after_publish(struct publish *p, char **hook_err)
{
	int fd = p->c->reload_pid ? hook_pidfd_open(p->c->reload_pid) : -1;
	int rc = publish_signal(p->c, fd, hook_err);

	if (fd >= 0)
		close(fd);
	if (rc < 0 || p->c->on_update == NULL)
		return rc;
	char *why = NULL;
	rc = once_on_update(p, &why);
	if (rc < 0 && asprintf(hook_err, "on_update %s",
			       why ? why : strerror(-rc)) < 0)
		*hook_err = NULL;
	free(why);
	return rc;
}

static void once_log(const struct publish *p, int rc)
{
	const struct writer_result *r = &p->res;
	const char *name = p->c->name, *target = p->c->target;

	if (rc == -ECANCELED)
		return; /* the veto (or the check refused) is logged */
	if (rc == -EAGAIN)
		log_msg(LOG_LVL_ERROR, name, "%s; gave up after %d tries",
			p->err, ONCE_TRIES);
	else if (rc < 0)
		log_msg(LOG_LVL_ERROR, name, "%s%s",
			p->err ? p->err : strerror(-rc), log_hint(rc));
	else if (p->dry_run)
		log_msg(LOG_LVL_INFO, name,
			"dry run: %zu added, %zu changed, %zu removed",
			r->added, r->changed, r->removed);
	else if (r->published)
		log_msg(LOG_LVL_INFO, name,
			"target %s: published %s (%zu added, %zu changed, %zu "
			"removed; %zu copied, %zu reused)",
			target, r->generation, r->added, r->changed,
			r->removed, r->copied, r->linked);
	else
		log_msg(LOG_LVL_INFO, name, "target %s: unchanged (%s)",
			target, r->generation ? r->generation : "empty");
}

static int once_open(struct publish *p)
{
	int rc = open_target(p);

	if (rc < 0)
		log_msg(LOG_LVL_ERROR, p->c->name, "%s%s",
			p->err ? p->err : strerror(-rc),
			rc == -EBUSY ? "; not publishing to it (exit status 1)"
				     : log_hint(rc));
	return rc;
}

void publish_seen_fini(struct publish_seen *seen)
{
	free(seen->v);
	*seen = (struct publish_seen){0};
}

/* -EEXIST, logged, when p's target is one an earlier mapping of the run
 * published to; else it is noted as this one's. */
static int once_seen(struct publish *p, struct publish_seen *seen)
{
	uint64_t dev, ino;

	if (seen == NULL || writer_target_id(p->w, &dev, &ino) < 0)
		return 0;
	for (size_t i = 0; i < seen->n; i++)
		if (seen->v[i].dev == dev && seen->v[i].ino == ino) {
			log_msg(LOG_LVL_ERROR, p->c->name,
				"target %s: the same directory as the target "
				"of [sync:%s] (another path to it: a link or "
				"a bind mount); not publishing to it (exit "
				"status 1)",
				p->c->target, seen->v[i].name);
			return -EEXIST;
		}
	if (array_grow(&seen->v, &seen->cap, seen->n, sizeof(*seen->v)) < 0) {
		log_msg(LOG_LVL_ERROR, p->c->name, "target %s: %s",
			p->c->target, strerror(ENOMEM));
		return -ENOMEM;
	}
	seen->v[seen->n++] = (struct publish_seen_target){dev, ino,
							  p->c->name};
	return 0;
}

int publish_once(const struct conf_sync *c, bool dry_run,
		 struct publish_seen *seen)
{
	struct publish p;
	char *hook_err = NULL;

	publish_init(&p, c, dry_run);
	p.once = true;
	int rc = once_open(&p);
	if (rc == 0)
		rc = once_seen(&p, seen);
	if (rc < 0) {
		publish_fini(&p);
		return rc;
	}
	rc = once_prepare(&p);
	/* The check sees the complete generation before it goes live. */
	if (rc == 0 && p.pending)
		rc = once_check(&p);
	if (rc == 0 && p.pending)
		rc = publish_commit(&p);
	if (rc == 0 && p.res.published && once_after_publish(&p, &hook_err) < 0)
		rc = -EIO;
	/* As the daemon does: a recorded error is gone once a publish goes
	 * through. */
	if (rc == 0 || hook_err)
		publish_record_error(&p, NULL);
	if (hook_err) {
		/* The publish itself went through. */
		log_msg(LOG_LVL_INFO, c->name,
			"target %s: published %s (%zu added, %zu changed, %zu "
			"removed)",
			c->target, p.res.generation, p.res.added,
			p.res.changed, p.res.removed);
		free(p.err);
		p.err = hook_err;
	}
	once_log(&p, rc);
	/* Live and durable: done.  The generation just replaced stays for
	 * readers that still have it open; the next run retires it. */
	writer_retire_exit(p.w);
	publish_fini(&p);
	return rc < 0 ? rc : 0;
}
