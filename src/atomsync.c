/* libatomsync: the writer behind atomsyncd as a library (atomsync.h).
 * Only what is declared there is exported (atomsync.map); the rest is
 * the core the daemon is built from. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atomsync.h"
#include "fsutil.h"
#include "log.h"
#include "snapshot.h"
#include "writer.h"

/* As atomsyncd --once: a file that changes while it is copied makes the
 * walk start again, a few times. */
#define TREE_TRIES 5

struct atomsync_writer {
	struct writer *w;
	struct atomsync_options o;
	struct log_sink sink;
	const struct log_sink *saved;
	char *target;
	char *err;
	pid_t pid; /* the process that opened it, whose lock it holds */
	bool cleared; /* atomsyncd's error record in the target, if any,
			 was removed since the open */
};

void atomsync_options_init(struct atomsync_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->fsync = 1;
	opts->grace_ms = 1000;
	opts->file_mode = -1;
	opts->dir_mode = -1;
	opts->uid = (uid_t)-1;
	opts->gid = (gid_t)-1;
	opts->allow_empty = 1;
}

/* As grace_ms in atomsync.conf. */
#define ATOMSYNC_GRACE_MAX_MS 3600000u

/* Whether the options of `size` bytes (an older header's, or a newer
 * one's) end inside one of this library's fields, which would take the
 * caller's bytes for the first half of it and its default for the rest. */
static bool cuts_a_field(size_t size)
{
#define FIELD(f)                                                     \
	{offsetof(struct atomsync_options, f),                       \
	 sizeof(((const struct atomsync_options *)NULL)->f)}
	static const size_t fields[][2] = {
		FIELD(size),	  FIELD(fsync),	    FIELD(grace_ms),
		FIELD(file_mode), FIELD(dir_mode),  FIELD(uid),
		FIELD(gid),	  FIELD(max_files), FIELD(allow_empty),
		FIELD(log),	  FIELD(log_ctx),
	};
#undef FIELD
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (size > fields[i][0] && size < fields[i][0] + fields[i][1])
			return true;
	return false;
}

/* Takes the fields the caller knows of; a larger struct (a newer header)
 * is accepted when what this library does not know of is zero. */
static int options_copy(struct atomsync_options *dst,
			const struct atomsync_options *src, char **err)
{
	atomsync_options_init(dst);
	if (src == NULL)
		return 0;
	if (src->size < offsetof(struct atomsync_options, fsync) + sizeof(int))
		return log_err_set(err, -EINVAL,
				   "options: size %zu is too small; call "
				   "atomsync_options_init first",
				   src->size);
	if (cuts_a_field(src->size))
		return log_err_set(err, -EINVAL,
				   "options: size %zu ends inside a field; "
				   "call atomsync_options_init first",
				   src->size);
	for (size_t i = sizeof(*dst); i < src->size; i++)
		if (((const unsigned char *)src)[i] != 0)
			return log_err_set(err, -EINVAL,
					   "options: size %zu: fields this "
					   "library does not know are set",
					   src->size);
	memcpy(dst, src, src->size < sizeof(*dst) ? src->size : sizeof(*dst));
	dst->size = sizeof(*dst);
	if (dst->file_mode < -1 || dst->file_mode > 0777)
		return log_err_set(err, -EINVAL,
				   "options: file_mode %o is not -1 or within "
				   "0777",
				   (unsigned)dst->file_mode);
	if (dst->dir_mode < -1 || dst->dir_mode > 0777)
		return log_err_set(err, -EINVAL,
				   "options: dir_mode %o is not -1 or within "
				   "0777",
				   (unsigned)dst->dir_mode);
	/* Another value is a field mistaken for another (a pointer, a
	 * count), as atomsync.conf's yes and no are all there is. */
	if ((dst->fsync != 0 && dst->fsync != 1) ||
	    (dst->allow_empty != 0 && dst->allow_empty != 1))
		return log_err_set(err, -EINVAL,
				   "options: fsync %d, allow_empty %d: each is "
				   "0 or 1",
				   dst->fsync, dst->allow_empty);
	if (dst->grace_ms > ATOMSYNC_GRACE_MAX_MS)
		return log_err_set(err, -EINVAL,
				   "options: grace_ms %u is over %u (an hour)",
				   dst->grace_ms, ATOMSYNC_GRACE_MAX_MS);
	return 0;
}

static struct writer_opts writer_opts_of(const struct atomsync_options *o)
{
	struct writer_opts wo = {
		.fsync = o->fsync != 0,
		.uid = o->uid == (uid_t)-1 ? SNAP_NO_ID : (uint32_t)o->uid,
		.gid = o->gid == (gid_t)-1 ? SNAP_NO_ID : (uint32_t)o->gid,
		.file_mode = o->file_mode,
		.dir_mode = o->dir_mode,
		.grace_ms = o->grace_ms,
		.max_files = o->max_files,
		.allow_empty = o->allow_empty != 0,
	};
	return wo;
}

/* Every call routes the core's log lines to the writer's callback (or
 * nowhere) for its duration, and starts with no error. */
static void enter(struct atomsync_writer *aw)
{
	aw->saved = log_sink_set(&aw->sink);
	free(aw->err);
	aw->err = NULL;
}

static int leave(struct atomsync_writer *aw, int rc)
{
	log_sink_set(aw->saved);
	if (rc < 0 && aw->err == NULL)
		aw->err = log_strdupf("target %s: %s", aw->target,
				      strerror(-rc));
	return rc;
}

int atomsync_writer_open(const char *target,
			 const struct atomsync_options *opts,
			 struct atomsync_writer **out)
{
	struct atomsync_writer *aw = calloc(1, sizeof(*aw));

	if (out == NULL) {
		free(aw);
		return -EINVAL;
	}
	*out = aw;
	if (aw == NULL)
		return -ENOMEM;
	aw->pid = getpid();
	int rc = options_copy(&aw->o, opts, &aw->err);
	if (rc < 0)
		return rc;
	aw->sink.fn = aw->o.log;
	aw->sink.ctx = aw->o.log_ctx;
	if (target == NULL || *target == '\0')
		return log_err_set(&aw->err, -EINVAL, "target: no path given");
	aw->target = strdup(target);
	if (aw->target == NULL)
		return log_err_set(&aw->err, -ENOMEM, "target %s: %s", target,
				   strerror(ENOMEM));
	struct writer_opts wo = writer_opts_of(&aw->o);
	enter(aw);
	rc = writer_open(target, &wo, &aw->w, &aw->err);
	return leave(aw, rc);
}

/* The payload as a snapshot whose entries point into it. */
static int payload_snapshot(const struct atomsync_writer *aw,
			    const struct atomsync_file *payload, size_t n,
			    struct snapshot **out, char **err)
{
	size_t max = aw->o.max_files ? aw->o.max_files : WRITER_MAX_FILES;
	struct snapshot *s = NULL;

	if (n > max)
		return log_err_set(err, -EFBIG,
				   "payload: %zu files, more than max_files "
				   "(%zu)",
				   n, max);
	if (n > 0 && payload == NULL)
		return log_err_set(err, -EINVAL, "payload: NULL with %zu files",
				   n);
	int rc = snapshot_open(NULL, &s, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct atomsync_file *f = &payload[i];
		if (f->path == NULL)
			rc = log_err_set(err, -EINVAL,
					 "payload: file %zu has no path", i);
		else if (f->data == NULL && f->size > 0)
			rc = log_err_set(err, -EINVAL,
					 "invalid path %s: no data for %zu bytes",
					 f->path, f->size);
		else if (f->mode & ~(mode_t)0777)
			rc = log_err_set(err, -EINVAL,
					 "invalid path %s: mode %o has bits "
					 "beyond 0777",
					 f->path, (unsigned)f->mode);
		if (rc < 0)
			break;
		struct snap_entry e = {
			.path = (char *)f->path,
			.data = f->data,
			.type = SNAP_FILE,
			.flags = SNAP_F_DATA,
			.mode = f->mode ? (uint32_t)f->mode : 0644u,
			.uid = SNAP_NO_ID,
			.gid = SNAP_NO_ID,
			.size = f->size,
		};
		rc = snapshot_add(s, &e);
	}
	if (rc < 0) {
		snapshot_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Whether `aw` may be used here: open, and in the process that opened
 * it.  A child made by fork() shares its lock with the parent (one lock
 * on one open file), so the two would publish into one target at once:
 * it must open a writer of its own. */
static int usable(struct atomsync_writer *aw)
{
	if (aw == NULL || aw->w == NULL)
		return -EBADF;
	if (getpid() == aw->pid)
		return 0;
	return log_err_set(&aw->err, -EBUSY,
			   "target %s: this writer was opened by process %d; "
			   "a process made by fork() must open its own",
			   aw->target, (int)aw->pid);
}

/* Whether the target's path still leads to the directory the writer
 * opened: whoever owns a directory on the way could have moved it away
 * and put one of theirs in its place, for readers to find. */
static int target_held(struct atomsync_writer *aw)
{
	int rc = writer_check_target(aw->w, &aw->err);

	if (rc == -ESTALE)
		return log_err_set(&aw->err, rc,
				   "target %s no longer leads to the directory "
				   "this writer opened (moved away or replaced "
				   "since); open it again",
				   aw->target);
	if (rc == -ENOENT)
		return log_err_set(&aw->err, rc,
				   "target %s was removed; open it again",
				   aw->target);
	return rc;
}

/* The record of its last error that atomsyncd keeps in a target (for
 * --status) is removed once a write goes through, as atomsyncd removes
 * it: it no longer tells why the target lags.  The library records none
 * of its own: its errors are its caller's, and a failed write leaves the
 * target as it was. */
static int recorded(struct atomsync_writer *aw, int rc)
{
	if (rc == 0 && !aw->cleared)
		aw->cleared = writer_record_error(aw->w, 0, NULL) == 0;
	return rc;
}

int atomsync_write(struct atomsync_writer *aw,
		   const struct atomsync_file *payload, size_t n)
{
	struct snapshot *s = NULL;
	struct writer_result r = {0};
	int rc = usable(aw);

	if (rc < 0)
		return rc;
	enter(aw);
	rc = target_held(aw);
	if (rc < 0)
		return leave(aw, rc);
	(void)writer_retire(aw->w, false, NULL);
	/* No re-scan timer here: each write checks every live file. */
	writer_verify_next(aw->w);
	rc = payload_snapshot(aw, payload, n, &s, &aw->err);
	if (rc == 0)
		rc = writer_publish(aw->w, s, &r, &aw->err);
	writer_result_fini(&r);
	return leave(aw, recorded(aw, rc));
}

/* One walk of the source and its publish; -EAGAIN: walk again. */
static int tree_once(struct atomsync_writer *aw, const char *source_dir,
		     const struct snapshot_opts *so)
{
	struct snapshot *s = NULL;
	struct writer_result r = {0};

	free(aw->err);
	aw->err = NULL;
	int rc = snapshot_take(source_dir, so, &s, &aw->err);
	if (rc < 0)
		return rc;
	struct snapshot_extras *x = snapshot_take_extras(s);
	snapshot_warnings_log(x, NULL, source_dir);
	snapshot_extras_free(x);
	rc = writer_publish(aw->w, s, &r, &aw->err);
	writer_result_fini(&r);
	return rc;
}

/* A source that is the target or lies in it would publish the target's
 * own content (a generation, through a name shown there) in its place:
 * -EINVAL, as the daemon refuses such a mapping. */
static int source_outside(struct atomsync_writer *aw, const char *source_dir,
			  const struct snapshot_opts *so)
{
	int fd = so->avoid_ino ? open(source_dir,
				      O_PATH | O_DIRECTORY | O_CLOEXEC)
			       : -1;
	int rc = fd < 0 ? 0 : fsutil_within(fd, so->avoid_dev, so->avoid_ino);

	if (fd >= 0)
		close(fd);
	if (rc == 1)
		return log_err_set(&aw->err, -EINVAL,
				   "source %s: the target %s or inside it",
				   source_dir, aw->target);
	if (rc < 0)
		return log_err_set(&aw->err, rc, "source %s: %s", source_dir,
				   strerror(-rc));
	return 0; /* not there: the walk says so */
}

int atomsync_write_tree(struct atomsync_writer *aw, const char *source_dir)
{
	struct snapshot_opts so = {
		.links = SNAP_LINKS_INSIDE,
		.max_files = aw && aw->o.max_files ? aw->o.max_files
						   : WRITER_MAX_FILES,
	};
	int rc = usable(aw);

	if (rc < 0)
		return rc;
	enter(aw);
	if (source_dir == NULL || *source_dir == '\0')
		return leave(aw, log_err_set(&aw->err, -EINVAL,
					     "source: no path given"));
	if ((rc = target_held(aw)) < 0)
		return leave(aw, rc);
	/* A followed link must not lead the walk back into the target. */
	(void)writer_target_id(aw->w, &so.avoid_dev, &so.avoid_ino);
	if ((rc = source_outside(aw, source_dir, &so)) < 0)
		return leave(aw, rc);
	(void)writer_retire(aw->w, false, NULL);
	writer_verify_next(aw->w); /* as atomsync_write() does */
	for (int attempt = 1;; attempt++) {
		rc = tree_once(aw, source_dir, &so);
		if (rc != -EAGAIN || attempt == TREE_TRIES)
			break;
		struct timespec ts = {0, 20000000L * attempt};
		nanosleep(&ts, NULL);
	}
	return leave(aw, recorded(aw, rc));
}

const char *atomsync_writer_generation(const struct atomsync_writer *aw)
{
	return aw && aw->w ? writer_live_generation(aw->w) : NULL;
}

int atomsync_writer_retire(struct atomsync_writer *aw, int wait)
{
	int rc = usable(aw);

	if (rc < 0)
		return rc;
	enter(aw);
	/* Refused, as a write is, where the path leads elsewhere now. */
	if ((rc = target_held(aw)) < 0)
		return leave(aw, rc);
	if (wait)
		writer_retire_wait(aw->w);
	rc = writer_retire(aw->w, false, NULL);
	if (rc < 0)
		log_err_set(&aw->err, rc,
			    "target %s: removing a replaced generation: %s",
			    aw->target, strerror(-rc));
	return leave(aw, rc);
}

const char *atomsync_version(void)
{
	return PACKAGE_VERSION;
}

const char *atomsync_writer_error(const struct atomsync_writer *aw)
{
	return aw ? aw->err : NULL;
}

void atomsync_writer_close(struct atomsync_writer *aw)
{
	if (aw == NULL)
		return;
	if (aw->w) {
		const struct log_sink *saved = log_sink_set(&aw->sink);
		/* A child after fork(): its descriptors closed, nothing of
		 * the parent's target touched. */
		if (getpid() == aw->pid)
			writer_retire_exit(aw->w);
		writer_close(aw->w);
		log_sink_set(saved);
	}
	free(aw->target);
	free(aw->err);
	free(aw);
}
