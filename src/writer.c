#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "flush.h"
#include "fsutil.h"
#include "listing.h"
#include "log.h"
#include "pathset.h"
#include "state.h"
#include "thread.h"
#include "writer.h"

/* A standby, or a generation written whole, that weighs this much and
 * more (an entry each, and copied bytes: half_weight()) is written by
 * two threads. */
#define HALVES_MIN 128
/* A copied file weighs one entry more for each this many of its bytes
 * (on tmpfs, writing a file of 4 KiB costs about as much as copying 32
 * KiB more), so that a few large files are copied by two threads too. */
#define HALVES_BYTES ((uint64_t)32 << 10)
/* Up to this many new files and directories are fsync'ed each (all at
 * once: flush_each()).  A larger generation (a first publish) is flushed
 * with one syncfs(), which also flushes unrelated data on the same file
 * system. */
#define FSYNC_EACH_MAX 512
/* A generation flushed on the way (flush.h) ends with syncfs() too. */
_Static_assert(FLUSH_EARLY_OBJECTS > FSYNC_EACH_MAX,
	       "early flushes are for generations flushed with syncfs()");

/* Files told one by one as changed in the live generation, a publish. */
#define WARN_LIVE_MAX 10

struct retired {
	char *name;
	uint64_t due_ms;
	uint64_t seq;		  /* its place among the generations this
				     writer made; 0: not one of them */
	struct pathset *changed;  /* where it differs from the one it
				     replaced (see changed_paths()); NULL:
				     not known */
};

/* What the spare generation is. */
enum spare_kind {
	SPARE_REPLACED, /* a replaced generation past its grace period */
	SPARE_STANDBY,	/* linked from the live one (writer_standby()) */
	SPARE_PARTIAL,	/* the same, stopped before it was complete */
};

/* Per entry of a record, its class (CLS_*, see below). */
struct classes {
	uint8_t *v;	/* per entry of the snapshot `id` (0: none) */
	uint64_t id;
	uint64_t files; /* its regular files, and their total size */
	uint64_t bytes;
};

static void classes_fini(struct classes *c)
{
	free(c->v);
	*c = (struct classes){0};
}

/* What writer_open() found of the lock file, which tells a directory
 * that was a target (generations of ours may be left in it to remove)
 * from one that never was (a name like theirs is someone's data). */
enum lock_found {
	LOCK_NONE,	/* not taken: refused (a dry run: would be) */
	LOCK_FOUND,	/* there, naming no target (empty, say, or an
			   older atomsyncd's) */
	LOCK_OURS,	/* there, naming a target (this one, or the one it
			   was copied from): it was one */
	LOCK_MADE,	/* none was there: made by this writer */
};

struct writer {
	char *path;
	int dfd;		/* target directory, -1 in a dry run without one */
	int lock_fd;		/* WRITER_LOCK in it, flock()ed; -1: none */
	bool made_target;	/* writer_open() made the target directory */
	enum lock_found lock;	/* and its lock file */
	struct writer_opts o;
	char *name;		/* copy of o.name */
	char *live_gen;		/* what ..data names, NULL when none */
	int live_fd;		/* that generation, -1 when none */
	struct snapshot *live;	/* what the live generation holds */
	struct state_log slog;	/* what the state on disk holds: live,
				   when slog.base is set */
	bool live_learned;	/* a standby learned, into live, what the
				   state on disk does not hold */
	bool live_trusted;	/* live came from the state file, not a scan */
	int state_refused;	/* writer_state_refused() */
	bool took_others;	/* since the last commit, a recycle took over
				   a directory others could write: a
				   generation dropped may hold what is theirs
				   below it (drop_generation()) */
	bool live_durable;	/* its files were flushed before it went live
				   (a publish that links them forward then
				   need not flush them) */
	uint32_t tgid;		/* a setgid target's group, which everything
				   made in it is given unless group= says
				   otherwise; SNAP_NO_ID: not setgid */
	uint64_t projected;	/* the snapshot normalize() gave the current
				   options' modes and owners, by id (0: none);
				   nothing may change what project_mode()
				   reads of its entries after that */
	uint64_t same_copies;	/* the snapshot whose copies of the live
				   record project() left as they were: each
				   equal to its live entry in every field
				   when diff() reads it, and in type, mode
				   and owner after (0: none) */
	bool live_found;	/* the live generation was there at the start:
				   names put into it meanwhile are not known,
				   so once replaced it is looked at in full */
	bool live_foreign;	/* ..data names a directory not of ours */
	bool verify_live;	/* the next diff checks every live file */
	bool visible_synced;	/* the visible links are those of `live`, as
				   the last sync left them, in a target only
				   we or root can change */
	/* That check, made ahead on a thread of its own (writer_verify_
	 * start()): per entry of `live`, whether the file is intact. */
	pthread_t verify_thread;
	bool verifying;		/* the thread runs, or is to be joined */
	uint8_t *live_ok;	/* its answers, NULL: none */
	bool live_loaded;	/* `live` is what the live generation holds
				   (writer_load) */
	struct listing *spare_listed; /* the spare's directories, read
					 ahead by that thread, from */
	int spare_fd;		      /* (-1: none to read) */
	size_t spare_max;	      /* names it lists at most */
	atomic_bool verify_stop;      /* it lists no further name */
	bool verify_checks;	      /* it checks the live files (live_ok) */
	bool root;		/* run as root: its rights are not its mode's */
	bool in_memory;		/* the target is on tmpfs or ramfs */
	bool exact_dino;	/* its directory entries tell inode numbers */
	atomic_bool named_only; /* a file written unnamed could not be
				   named (no /proc, no CAP_DAC_READ_SEARCH):
				   files are written under their names (set
				   by either thread of a build) */
	struct retired *retired;
	size_t nretired;
	char *spare;		/* a generation to recycle into the next one */
	enum spare_kind spare_kind;
	char **drop;		/* generations the next writer_gc_take takes,
				   due or not (readers never had them) */
	size_t ndrop;
	struct pathset *spare_left; /* a partial standby's directories that
				       it did not finish; of another spare,
				       those a build torn by a read changed
				       (spare_hand_back()) */
	size_t spare_built;	/* its entries it got through */
	unsigned warned_live;	/* files told changed in the live generation
				   by the publish under way */
	uint64_t link_ns;	/* what a standby took to link an entry, as
				   the last fresh one measured; 0: unknown */
	uint64_t last_commit_ms;
	bool burst;		/* the live one came within a grace period of
				   the one before: the next may come as soon,
				   with no replaced generation due */
	uint64_t seq;		/* of the last generation made here */
	uint64_t live_seq;	/* the live one's (see struct retired) */
	uint64_t spare_seq;	/* the spare's */
	struct pathset *live_changed; /* the live one's */
	struct classes cls;	/* of `live`, when cls.id is live's */
};

enum action {
	ACT_DIR,  /* create the directory */
	ACT_LINK, /* hard-link the unchanged file from the live generation */
	ACT_COPY, /* stream the file from the source */
	ACT_KEEP, /* recycled as it was: nothing new to flush */
};

/* What diff() and same_subtree() need to know of an entry, one byte per
 * entry of a record, kept with it: at a million entries, reading the
 * entries themselves (96 bytes and a path each, cold) costs most of a
 * one-file publish.  A copy of a live entry has the live one's class. */
enum {
	CLS_DIR = ACT_DIR,   /* a directory */
	CLS_LINK = ACT_LINK, /* a file linked forward when it is unchanged */
	CLS_LOOK = 0x7f,     /* a file to compare by content (racy, or its
				identity unknown) */
	CLS_KIND = 0x7f,
	CLS_OURS = 0x80,     /* recorded_ours() */
};

struct writer_pending {
	struct snapshot *s;
	char *gen;
	char *dir;   /* target/gen, for hooks */
	uint8_t *act;
	bool recycled;		 /* gen is the spare, renamed */
	enum spare_kind spare_kind; /* what that spare was */
	struct pathset *spare_left; /* see struct writer */
	bool standby;		 /* writer_standby(): never made live */
	size_t built;		 /* entries of s written when it stopped */
	size_t split, built2;	 /* a standby's second half: from split
				    (0: none) up to built2 */
	bool names;		 /* a top-level name came or went */
	bool verify;		 /* prepared at a full check (see
				    writer_verify_next()) */
	/* Where the spare may differ from s (NULL: anywhere): directories
	 * in which a name came or went (or whose own mode or owner
	 * changed), and files whose name stayed but not what it holds. */
	struct pathset *differ;
	struct pathset *changed; /* the same, of s and the live generation */
	struct classes cls;	 /* of s, from diff() */
};


uint64_t writer_now_ms(void)
{
	return clock_mono_ms();
}

void writer_result_fini(struct writer_result *r)
{
	free(r->generation);
	free(r->paths);
	memset(r, 0, sizeof(*r));
}

const char *writer_live_generation(const struct writer *w)
{
	return w->live_gen;
}

static int target_ours(const struct writer *w, char **err);
static uint32_t group_of(const struct writer *w);

/* The line for a target path that did not resolve (fd, and why from
 * fsutil_chase()). */
static int target_unreachable(const struct writer *w, int fd, const char *why,
			      char **err)
{
	return log_err_set(err, fd, "target %s: %s", w->path,
			   fsutil_chase_dir_why(why, w->path, fd));
}

int writer_check_target(const struct writer *w, char **err)
{
	struct stat a, b;
	char *why = NULL;

	if (w->dfd < 0)
		return 0;
	int fd = fsutil_chase(w->path, 0, O_RDONLY | O_DIRECTORY, NULL, &why);
	if (fd == -ENOENT) {
		free(why);
		/* Still linked somewhere: moved away rather than removed. */
		return fstat(w->dfd, &a) == 0 && a.st_nlink > 0 ? -ESTALE
							       : -ENOENT;
	}
	if (fd < 0) {
		int rc = target_unreachable(w, fd, why, err);
		free(why);
		return rc;
	}
	int rc = fstat(fd, &b) < 0 || fstat(w->dfd, &a) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return log_err_set(err, rc, "target %s: %s", w->path,
				   strerror(-rc));
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return -ESTALE;
	return target_ours(w, err);
}

void writer_verify_next(struct writer *w)
{
	w->verify_live = true;
}

bool writer_check_due(const struct writer *w)
{
	return w->verify_live;
}

int writer_target_busy(const struct writer *w, uint64_t quiet_ms)
{
	if (w->dfd < 0)
		return 0;
	/* Ctimes come from this clock: after a step of it, changes made
	 * before look long past or far ahead, and are not waited for. */
	int64_t now_ns = (int64_t)clock_us(CLOCK_REALTIME) * 1000;
	return fsutil_tree_busy(w->dfd, now_ns - (int64_t)quiet_ms * 1000000,
				quiet_ms);
}

int writer_target_id(const struct writer *w, uint64_t *dev, uint64_t *ino)
{
	struct stat st;

	if (w->dfd < 0 || fstat(w->dfd, &st) < 0)
		return w->dfd < 0 ? -ENOENT : -errno;
	*dev = (uint64_t)st.st_dev;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

const struct snapshot *writer_live(const struct writer *w)
{
	return w->live;
}

int writer_live_summary(const struct writer *w, uint64_t *files,
			uint64_t *bytes)
{
	if (w->live_gen == NULL || w->live == NULL)
		return -ENOENT;
	if (w->live_foreign)
		return -EPERM;
	*files = *bytes = 0;
	for (size_t i = 0; i < w->live->n; i++) {
		if (w->live->v[i].type != SNAP_FILE)
			continue;
		(*files)++;
		*bytes += w->live->v[i].size;
	}
	return 0;
}

int writer_state_refused(const struct writer *w)
{
	return w->state_refused;
}

int writer_record_error(struct writer *w, uint64_t when_ms, const char *msg)
{
	if (w->dfd < 0 || w->o.dry_run)
		return -EROFS;
	/* A directory moved away is not written to again. */
	int rc = writer_check_target(w, NULL);
	if (rc < 0)
		return rc;
	return msg ? state_error_save(w->dfd, when_ms, msg)
		   : state_error_clear(w->dfd);
}

int writer_validate_path(const char *path, char **err)
{
	size_t len = strlen(path);

	if (len == 0)
		return log_err_set(err, -EINVAL, "invalid path \"\": must not be "
					     "empty");
	if (path[0] == '/')
		return log_err_set(err, -EINVAL,
			       "invalid path %s: must be a relative path",
			       path);
	if (len > WRITER_MAX_PATH)
		return log_err_set(err, -ENAMETOOLONG,
			       "invalid path %.64s...: longer than %d bytes",
			       path, WRITER_MAX_PATH);
	const char *p = path;
	for (;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return log_err_set(err, -EINVAL,
				       "invalid path %s: must not contain "
				       "'..'",
				       path);
		if (n > WRITER_MAX_NAME)
			return log_err_set(err, -ENAMETOOLONG,
				       "invalid path %.64s...: a name is "
				       "longer than %d bytes",
				       path, WRITER_MAX_NAME);
		if (e == NULL)
			break;
		p = e + 1;
	}
	/* The first name as cleaning leaves it, past "." and empty elements:
	 * "./..data" cleans to "..data", which is reserved too. */
	const char *first = path;
	while (*first == '/' ||
	       (first[0] == '.' && (first[1] == '/' || first[1] == '\0')))
		first++;
	if (first[0] == '.' && first[1] == '.')
		return log_err_set(err, -EINVAL,
			       "invalid path %s: must not start with '..' "
			       "(reserved)",
			       path);
	return 0;
}

/* Whether only we or root can change the directory `fd` names: owned
 * by one of us and writable by nobody else. */
static bool dir_ours(int fd)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) &&
	       fsutil_ours_alone(&st);
}

/* "..2026_11_25_16_04_05.<suffix>": a generation directory. */
static bool is_generation_name(const char *n)
{
	static const char shape[] = "..dddd_dd_dd_dd_dd_dd.";

	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? !isdigit((unsigned char)n[i])
				    : n[i] != shape[i])
			return false;
	}
	return n[sizeof(shape) - 1] != '\0' &&
	       strchr(n + sizeof(shape) - 1, '/') == NULL;
}

/* A link made ahead of a swap (WRITER_LINK_AHEAD and a number). */
static bool is_ahead_name(const char *n)
{
	size_t k = sizeof(WRITER_LINK_AHEAD) - 1;

	if (strncmp(n, WRITER_LINK_AHEAD, k) != 0 || n[k] == '\0')
		return false;
	return strspn(n + k, "0123456789") == strlen(n + k);
}

bool writer_work_name(const char *name)
{
	static const char *const files[] = {
		STATE_FILE,	   STATE_TMP,	     STATE_JOURNAL,
		STATE_JOURNAL_TMP, STATE_ERROR_FILE, STATE_ERROR_TMP,
		WRITER_LINK_TMP,
	};

	if (is_generation_name(name) || is_ahead_name(name))
		return true;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (strcmp(name, files[i]) == 0)
			return true;
	return false;
}

static int open_generation(int dfd, const char *gen)
{
	int fd = openat(dfd, gen, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The live generation, if it is one of ours: files are linked forward
 * from it, so one that someone else made or could change (a user who
 * owns the target directory can point ..data anywhere in it) is never
 * trusted.  -EPERM then. */
static int open_live(struct writer *w)
{
	struct stat st;
	int fd = open_generation(w->dfd, w->live_gen);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !fsutil_ours_alone(&st)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* ..data that is not a symlink (a directory made in its place, say):
 * no rename can replace a directory with a link, and what someone put
 * there is not ours to remove; refused, with `then` saying what follows
 * (at a start and at each publish alike). */
static int data_in_the_way(const struct writer *w, const char *then,
			   char **err)
{
	return log_err_set(err, -EEXIST, "target %s: %s exists and is not a "
					 "symlink; %s",
			   w->path, WRITER_DATA, then);
}

/* What ..data names: a generation's name in *gen, anything else in
 * *other; both NULL (and 0) when there is no ..data. */
static int read_live(struct writer *w, char **gen, char **other, char **err)
{
	char *t = NULL;
	int rc = fsutil_readlinkat(w->dfd, WRITER_DATA, &t);

	*gen = *other = NULL;
	if (rc == -ENOENT)
		return 0;
	if (rc == -EINVAL)
		return data_in_the_way(w, "refusing to manage this directory",
				       err);
	if (rc < 0)
		return log_err_set(err, rc, "target %s: reading %s: %s", w->path,
			       WRITER_DATA, strerror(-rc));
	*(is_generation_name(t) ? gen : other) = t;
	return 0;
}

/* ..data names `other`, no generation's name, and the state file gives
 * none to put back: this is no target of ours. */
static int foreign_data(struct writer *w, const char *other, char **err)
{
	char *t = log_escape(other);
	int rc = log_err_set(err, -EEXIST,
			     "target %s: %s points to \"%s\", not to a "
			     "generation of ours, and no sound state file "
			     "names one; refusing to manage this directory",
			     w->path, WRITER_DATA, t ? t : "?");

	free(t);
	return rc;
}

static int retire_add(struct writer *w, char *gen, uint64_t due_ms,
		      uint64_t seq, struct pathset *changed);
static void verify_drop(struct writer *w);

/* Points ..data at `gen`, in one rename. */
static int link_data(struct writer *w, const char *gen, char **err)
{
	int rc = 0;

	if (unlinkat(w->dfd, WRITER_DATA_TMP, 0) < 0 && errno != ENOENT)
		rc = log_err_set(err, -errno, "target %s: removing %s: %s",
				 w->path, WRITER_DATA_TMP, strerror(errno));
	else if (symlinkat(gen, w->dfd, WRITER_DATA_TMP) < 0)
		rc = log_err_set(err, -errno, "target %s: symlink %s: %s",
				 w->path, WRITER_DATA_TMP, strerror(errno));
	else if (renameat(w->dfd, WRITER_DATA_TMP, w->dfd, WRITER_DATA) < 0) {
		rc = log_err_set(err, -errno, "target %s: rename %s over %s: %s",
				 w->path, WRITER_DATA_TMP, WRITER_DATA,
				 strerror(errno));
		unlinkat(w->dfd, WRITER_DATA_TMP, 0);
	}
	return rc;
}

/* ..data removed or pointed elsewhere (by hand, say; `was` is what it
 * named then) while `gen` is still there: it is put back, and readers
 * find the live generation again. */
static int put_back_data(struct writer *w, const char *gen, const char *why,
			 const char *was, char **err)
{
	int rc = link_data(w, gen, err);
	char *t = was ? log_escape(was) : NULL;

	if (rc == 0 && was)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: %s named %s; put back, naming %s (%s)",
			w->path, WRITER_DATA, t ? t : "another entry", gen,
			why);
	else if (rc == 0)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: %s was removed; put back, naming %s (%s)",
			w->path, WRITER_DATA, gen, why);
	free(t);
	return rc;
}

/* The generation a sound state file names, when it is there, complete
 * and ours (malloc'ed), or NULL. */
static char *recorded_generation(const struct writer *w)
{
	char *gen = NULL;
	struct timespec t;
	struct stat st;
	bool sound = false;

	if (state_peek(w->dfd, &gen, &t, &sound) < 0 || !sound ||
	    !is_generation_name(gen)) {
		free(gen);
		return NULL;
	}
	int fd = open_generation(w->dfd, gen);
	bool ok = fd >= 0 && fstat(fd, &st) == 0 && fsutil_ours_alone(&st) &&
		  (st.st_mode & 07777) == 0755;
	if (fd >= 0)
		close(fd);
	if (!ok) {
		free(gen);
		gen = NULL;
	}
	return gen;
}

/* The live generation that ..data named until it was removed (or
 * pointed at `was`, no generation's name: by hand, while no daemon
 * ran): the one the state file names (recorded_generation()).  Put
 * back rather than taken for what an interrupted publish left (and
 * removed, with every other generation: with the source missing, the
 * target would be left with none).  Whether it was put back (or, in a
 * dry run, would be: the target then has no live generation, as with
 * ..data removed, and is not in step). */
static bool put_back_recorded(struct writer *w, const char *was)
{
	char *err = NULL, *gen = recorded_generation(w);

	if (gen && w->o.dry_run) {
		if (!w->o.quiet)
			log_msg(LOG_LVL_INFO, w->name,
				"dry run: would put %s back, naming %s",
				WRITER_DATA, gen);
		free(gen);
		return true;
	}
	bool ok = gen && put_back_data(w, gen, "the generation the state "
					     "file describes",
				       was, &err) == 0;
	if (err)
		log_msg(LOG_LVL_WARN, w->name, "%s", err);
	free(err);
	free(gen);
	return ok;
}

/* Makes `name` (NULL: none) the spare, with what is known of it; the
 * caller has taken the name of the one before. */
static void spare_set(struct writer *w, char *name, uint64_t seq,
		      enum spare_kind kind, struct pathset *left)
{
	w->spare = name;
	w->spare_seq = seq;
	w->spare_kind = kind;
	w->spare_built = 0;
	pathset_free(w->spare_left);
	w->spare_left = left;
}

/* Whether the spare gives way to a replaced generation that is due: a
 * standby stopped partway lacks what it did not link (at a million files,
 * seconds of work), which a complete generation has. */
static bool spare_yields(const struct writer *w)
{
	return w->spare == NULL || w->spare_kind == SPARE_PARTIAL;
}

/* The newest replaced generation whose grace period is over as of `now`
 * (they are kept in the order they were replaced); SIZE_MAX: none. */
static size_t newest_due(const struct writer *w, uint64_t now)
{
	size_t newest = SIZE_MAX;

	for (size_t i = 0; i < w->nretired; i++)
		if (w->retired[i].due_ms <= now)
			newest = i;
	return newest;
}

/* Whether dir_mode lets group or others write a generation's
 * directories. */
static bool dirs_open(const struct writer *w)
{
	return w->o.dir_mode >= 0 && (w->o.dir_mode & 022);
}

/* Whether replaced generations are recycled: not where dir_mode lets
 * group or others write their directories, as what those users put there
 * is not ours to clear (fsutil_rmtree() does not go into a directory of
 * theirs): a recycle would fail on it, each time. */
static bool recycles_replaced(const struct writer *w)
{
	return !dirs_open(w);
}

/* The replaced generation the next publish may recycle: the newest
 * whose grace period is over; in a one-shot writer, the newest at all,
 * which writer_gc_take_exit() removes as soon as this publish replaces
 * the live generation (its grace period is cut short either way, see
 * recover()).  SIZE_MAX: none. */
static size_t newest_recyclable(const struct writer *w, uint64_t now)
{
	if (w->o.one_shot && w->nretired > 0)
		return w->nretired - 1;
	return newest_due(w, now);
}

/* How much is left of the grace period of the generations ..data left,
 * in ms (<= 0: none, or no live generation).  They were replaced when
 * ..data last changed: the mtime of its link, which outlives the
 * process that made it. */
static int64_t grace_left(const struct writer *w)
{
	struct stat st;
	struct timespec now;

	if (w->live_gen == NULL ||
	    fstatat(w->dfd, WRITER_DATA, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t swapped = (int64_t)st.st_mtim.tv_sec * 1000 +
			  st.st_mtim.tv_nsec / 1000000;
	int64_t nowms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	return swapped + (int64_t)w->o.grace_ms - nowms;
}

/* A complete generation (mode 0755) other than the live one. */
static bool is_replaced(const struct writer *w, const char *n)
{
	struct stat st;

	return is_generation_name(n) && w->live_gen &&
	       strcmp(n, w->live_gen) != 0 &&
	       fstatat(w->dfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755;
}

/* The one replaced generation to keep: the newest complete one named
 * before the live one (names are UTC times), the one ..data named last.
 * Within its grace period a reader may still be in it; past it, it is
 * recycled into the next generation.  Older ones are removed even within
 * the grace period, so that the target never holds more than the live
 * generation and one replaced one at rest.  With none named before it,
 * the newest named after it: the clock was set back since that one was
 * live (one that never was, of a publish cut short before its swap,
 * loses to any named before).  NULL when there is none. */
static char *grace_keeper(const struct writer *w, DIR *d)
{
	char *keep = NULL, *after = NULL;
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (!is_replaced(w, n))
			continue;
		bool later = strcmp(n, w->live_gen) > 0;
		char **slot = later ? &after : &keep;
		if (*slot && strcmp(n, *slot) < 0)
			continue;
		free(*slot);
		*slot = strdup(n);
	}
	rewinddir(d);
	if (keep == NULL)
		return after;
	free(after);
	return keep;
}

/* Whether users other than root and us can write a generation's
 * directories (owner, or a dir_mode open to group or others): only then
 * can one hold what is not ours to remove. */
static bool others_write(const struct writer *w)
{
	return (w->o.uid != SNAP_NO_ID && !fsutil_trusted_uid(w->o.uid)) ||
	       dirs_open(w);
}

static int drop_generation(struct writer *w, const char *gen,
			   const char *what);

/* A replaced generation which a run that did not wait for it left: no
 * debris, removed without a warning.  Past its grace period, or older
 * than `kept`, the one kept for the rest of its own (one that may still
 * be within it, had the generation after it been live only briefly). */
static void retire_now(struct writer *w, const char *n, const char *kept)
{
	const char *why = kept ? ", older than " : ", its grace period over";

	if (w->o.dry_run) {
		if (!w->o.quiet)
			log_msg(LOG_LVL_INFO, w->name,
				"target %s: dry run: would remove replaced "
				"generation %s%s%s",
				w->path, n, why, kept ? kept : "");
		return;
	}
	if (drop_generation(w, n, "replaced") == 0)
		log_msg(LOG_LVL_INFO, w->name,
			"target %s: removed replaced generation %s%s%s",
			w->path, n, why, kept ? kept : "");
}

/* WRITER_ASIDE of the target, made if need be: a descriptor, or a
 * negative errno (-EPERM when it is not a directory we made private). */
static int aside_open(int dfd)
{
	struct stat st;

	if (mkdirat(dfd, WRITER_ASIDE, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(dfd, WRITER_ASIDE,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR || errno == ELOOP ? -EPERM : -errno;
	if (!fsutil_made_private(fd, &st)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* Whether `name` of `dfd` is a directory others can write: one of ours
 * made while dir_mode let them, or one of the user owner named (either
 * may be so no longer since a reload), it may hold what they put there. */
static bool others_dir_at(int dfd, const char *name)
{
	struct stat st;

	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode) && !fsutil_ours_alone(&st);
}

/* Whether the generation `gen` of `dfd` has such a directory at its
 * top: all of a generation's directories below the top were made with
 * one owner and mode (one a recycle took over from the top down, and
 * left unfinished, is told by writer->took_others). */
static bool holds_others_dirs(int dfd, const char *gen)
{
	int fd = openat(dfd, gen,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	char **names = NULL;
	size_t n = 0;
	bool open = false;

	if (fd >= 0 && fsutil_read_names(fd, false, &names, &n) == 0)
		for (size_t i = 0; i < n && !open; i++)
			open = others_dir_at(fd, names[i]);
	fsutil_names_free(names, n);
	if (fd >= 0)
		close(fd);
	return open;
}

/* Whether fsutil_rmtree() failed with `rc` to remove `name` of `dfd`
 * for what is not ours to remove, or too deep to, in the generations of
 * a mapping others can write (`others`): what is then moved aside
 * whole.  A directory filled again as it was emptied is another user's
 * doing there: nothing of ours writes into what it removes, and they can
 * write its directories (owner and dir_mode leave the top one root's,
 * but not those below it).  Out of descriptors (one a level) is theirs
 * only where `name` is not ours alone or holds directories they can
 * write; else it may be ours, it passes, and the removal is tried again
 * later. */
static bool not_ours_to_remove(int rc, bool others, int dfd,
			       const char *name)
{
	struct stat st;

	if (!others)
		return false;
	if (rc == -EPERM || rc == -EACCES || rc == -ELOOP || rc == -ENOTEMPTY)
		return true;
	/* A chain of directories made deep by those who can write them
	 * (theirs, or ours that dir_mode opens) is theirs to answer for. */
	return (rc == -EMFILE || rc == -ENFILE) &&
	       ((fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		 !fsutil_ours_alone(&st)) ||
		holds_others_dirs(dfd, name));
}

/* What is left of the generation `gen` of the target open as `dfd` (the
 * mapping `name`'s, at `path`) once its removal failed with `rc`: where
 * it holds what is not ours to remove (what another user put into a
 * directory of theirs there), moved whole into WRITER_ASIDE, out of the
 * target's way, else left for a later start; told either way, `what`
 * saying what it was.  1 when moved, else `rc`. */
static int gen_aside(int dfd, bool others, const char *name,
		     const char *path, const char *gen, const char *what,
		     int rc)
{
	others = others || holds_others_dirs(dfd, gen);
	int afd = not_ours_to_remove(rc, others, dfd, gen) ? aside_open(dfd)
							  : -1;

	if (afd >= 0 && renameat2(dfd, gen, afd, gen, RENAME_NOREPLACE) == 0) {
		log_msg(LOG_LVL_WARN, name,
			"target %s: removing %s (%s): %s; what is left of it "
			"moved aside to %s/%s/%s",
			path, gen, what, strerror(-rc), path, WRITER_ASIDE,
			gen);
		rc = 1;
	} else {
		log_msg(LOG_LVL_WARN, name,
			"target %s: cannot remove %s (%s): %s; leaving it",
			path, gen, what, strerror(-rc));
	}
	if (afd >= 0)
		close(afd);
	return rc;
}

/* The generation `gen` (`what`: unfinished, not recycled...) removed,
 * or what is left of it moved aside (gen_aside()).  0 when it is gone. */
static int drop_generation(struct writer *w, const char *gen,
			   const char *what)
{
	int rc = fsutil_rmtree(w->dfd, gen);

	return rc == 0 ? 0
		       : gen_aside(w->dfd, others_write(w) || w->took_others,
				   w->name, w->path, gen, what, rc);
}

static void remove_leftover(struct writer *w, const char *n)
{
	if (w->o.dry_run) {
		if (!w->o.quiet)
			log_msg(LOG_LVL_INFO, w->name,
				"target %s: dry run: would remove leftover %s",
				w->path, n);
		return;
	}
	if (drop_generation(w, n, "left by an interrupted publish") == 0)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: removed %s left by an interrupted publish",
			w->path, n);
}

/* The replaced generation `keep` (NULL: none) kept, as recover() found
 * it `left_ms` within its grace period: retired, or the spare past it;
 * in a dry run only named.  Takes `keep`, but for a dry run; returns the
 * name to leave, or NULL. */
static const char *keep_replaced(struct writer *w, char *keep, int64_t left_ms)
{
	if (keep == NULL || w->o.dry_run)
		return keep;
	if (left_ms <= 0 && !recycles_replaced(w)) {
		free(keep); /* removed with the others */
		return NULL;
	}
	if (left_ms <= 0 && w->o.grace_ms > 0) {
		/* Past its grace: recycled next. */
		spare_set(w, keep, 0, SPARE_REPLACED, NULL);
		return keep;
	}
	if (retire_add(w, keep, writer_now_ms() + (uint64_t)left_ms, 0,
		       NULL) < 0) {
		free(keep);
		return NULL;
	}
	log_msg(LOG_LVL_INFO, w->name,
		w->o.one_shot ? "target %s: %s is within its grace period: "
				"kept unless this run publishes, which "
				"recycles it"
			      : "target %s: keeping %s for the rest of its "
				"grace period",
		w->path, keep);
	return keep;
}

/* Whether `n` is the name of a publish's temporary file or link. */
static bool temporary_name(const char *n)
{
	return strcmp(n, WRITER_DATA_TMP) == 0 || strcmp(n, STATE_TMP) == 0 ||
	       strcmp(n, STATE_ERROR_TMP) == 0 ||
	       strcmp(n, STATE_JOURNAL_TMP) == 0 ||
	       strcmp(n, WRITER_LINK_TMP) == 0 || is_ahead_name(n);
}

/* Whether the entry `de` at a temporary name can be what a publish
 * left there: a link or a file, never a directory, which is someone's
 * and is not removed (with all it holds). */
static bool temporary_ours(const struct writer *w, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type != DT_DIR;
	return fstatat(w->dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	       !S_ISDIR(st.st_mode);
}

static void leave_temporary(const struct writer *w, const char *n)
{
	if (w->o.quiet)
		return;
	log_msg(LOG_LVL_WARN, w->name,
		"target %s: %s is a directory, which no publish leaves "
		"there: not removed; move it away, as a publish needs the "
		"name",
		w->path, n);
}

/* Whether the target is a directory this writer found with no lock file
 * naming it and that holds no generation of ours: no ..data, no state
 * file (one that reads as ours: a file of that name is not one). */
static bool never_published(const struct writer *w)
{
	struct stat st;
	struct timespec when;
	char *gen = NULL;
	bool sound;

	if ((w->lock != LOCK_MADE && w->lock != LOCK_FOUND) ||
	    fstatat(w->dfd, WRITER_DATA, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return false;
	int rc = state_peek(w->dfd, &gen, &when, &sound);
	free(gen);
	return rc < 0;
}

/* The first name in the target shaped like a generation's, in *name:
 * 1 when there is one, 0 when none, -errno when it cannot be read. */
static int first_generation(const struct writer *w, char **name)
{
	DIR *d = fsutil_opendir_at(w->dfd, ".");
	struct dirent *de;

	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL && !is_generation_name(de->d_name))
		;
	*name = de ? strdup(de->d_name) : NULL;
	int rc = de == NULL ? 0 : *name ? 1 : -ENOMEM;
	closedir(d);
	return rc;
}

/* A directory that never was a target (no lock file till now, no
 * ..data, no state file) holds no generation of ours: a name there that
 * looks like one is someone's data, which recover() must not remove.
 * Refused (-EEXIST), naming it.  (The names of a publish's temporary
 * links and files are atomsync's own.) */
static int foreign_leftovers(struct writer *w, char **err)
{
	char *gen = NULL;
	int rc = 0;

	if (w->made_target || !never_published(w))
		return 0;
	int found = first_generation(w, &gen);
	if (found == -ENOMEM)
		return found;
	if (found > 0)
		rc = log_err_set(err, -EEXIST,
				 "target %s: %s looks like atomsync's, in a "
				 "directory atomsync never published to; move "
				 "it away first",
				 w->path, gen);
	free(gen);
	return rc;
}

/* Removes what an interrupted publish left behind, and replaced
 * generations but one (grace_keeper): that one is retired like any
 * replaced generation while in its grace period, else kept to be
 * recycled (see keep_replaced()).  A one-shot writer that publishes
 * recycles it either way: it would remove it on its way out
 * (writer_gc_take_exit()), as the target keeps one replaced generation
 * at rest, and recycled it costs what changed, where a new one costs a
 * link for every file.  What cannot be removed is logged and left for a
 * later start: it must not keep the mapping from publishing. */
static void recover(struct writer *w)
{
	DIR *d = fsutil_opendir_at(w->dfd, ".");
	if (d == NULL) {
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: cannot look for leftovers: %s", w->path,
			strerror(errno));
		return;
	}
	int64_t left_ms = grace_left(w);
	/* A grace period of 0 asks for no replaced generation at all. */
	char *keep = w->live_gen && (left_ms > 0 || w->o.grace_ms > 0)
			     ? grace_keeper(w, d)
			     : NULL;
	const char *kept = keep_replaced(w, keep, left_ms);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		bool gen = is_generation_name(n) &&
			   (w->live_gen == NULL || strcmp(n, w->live_gen) != 0);
		if (kept && strcmp(n, kept) == 0)
			continue;
		bool tmp = !gen && temporary_name(n);
		if (gen && is_replaced(w, n))
			retire_now(w, n, left_ms > 0 ? kept : NULL);
		else if (tmp && !temporary_ours(w, de))
			leave_temporary(w, n);
		else if (gen || tmp)
			remove_leftover(w, n);
	}
	if (w->o.dry_run)
		free(keep);
	closedir(d);
}

/* The source is gone from a snapshot that becomes the live state. */
static void detach_source(struct snapshot *s)
{
	if (s->root_fd >= 0) {
		close(s->root_fd);
		s->root_fd = -1;
	}
	if (s->ext_fd >= 0) {
		close(s->ext_fd);
		s->ext_fd = -1;
	}
	log_list_fini(&s->problems);
	snapshot_drop_extras(s);
	for (size_t i = 0; s->held && i < s->n; i++) {
		free(s->v[i].src);
		s->v[i].src = NULL;
		/* The payload is the caller's only until the call returns. */
		s->v[i].data = NULL;
		s->v[i].flags &= (uint8_t)~SNAP_F_DATA;
	}
}

/* What the live generation holds, from a scan of it: files are then
 * compared by content, their identity being unknown. */
static int scan_live(struct writer *w, char **err)
{
	struct snapshot *s = NULL;
	/* Through the generation open: its path, through a directory of
	 * another user's, may lead elsewhere by now. */
	struct snapshot_opts so = {.links = SNAP_LINKS_SKIP,
				   .root_open = w->live_fd >= 0,
				   .root_fd = w->live_fd};
	char *dir = fsutil_join(w->path, w->live_gen);

	if (dir == NULL)
		return -ENOMEM;
	int rc = snapshot_take(dir, &so, &s, NULL);
	if (rc < 0) {
		rc = log_err_set(err, rc, "target %s: reading %s: %s", w->path,
				 w->live_gen, strerror(-rc));
		free(dir);
		return rc;
	}
	free(dir);
	bool owners = w->o.uid != SNAP_NO_ID || group_of(w) != SNAP_NO_ID;
	for (size_t i = 0; i < s->n; i++) {
		struct snap_entry *e = &s->v[i];
		e->ino = e->t_ino = 0; /* identity unknown: compare content */
		/* With owner or group set, what the files have is what the
		 * next snapshot is compared with. */
		struct stat st;
		int fd = owners ? fsutil_open_beneath(w->live_fd, e->path, O_PATH)
				: -1;
		if (fd >= 0 && fstat(fd, &st) == 0) {
			e->uid = w->o.uid == SNAP_NO_ID ? SNAP_NO_ID
							: (uint32_t)st.st_uid;
			e->gid = group_of(w) == SNAP_NO_ID ? SNAP_NO_ID
							   : (uint32_t)st.st_gid;
		}
		if (fd >= 0)
			close(fd);
	}
	detach_source(s);
	w->live = s;
	return 0;
}

/* `old` gives way to the live record, which is made ready for the reads
 * to come unless there will be none. */
static void supersede(struct writer *w, struct snapshot *old)
{
	if (w->o.one_shot)
		snapshot_free(old);
	else
		snapshot_supersede(old, w->live);
}

/* The largest number of entries a source (or a state file) may hold. */
static size_t max_files(const struct writer *w)
{
	return w->o.max_files ? w->o.max_files : WRITER_MAX_FILES;
}

/* Why the state file loaded (state_load_log() came to rc) does not
 * stand for the live generation, which is scanned instead. */
static void say_state_unused(const struct writer *w, int rc, bool sound)
{
	if (rc == -EPERM)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: state file %s or %s could have been "
			"written by another user; comparing content instead",
			w->path, STATE_FILE, STATE_JOURNAL);
	else if (rc == 0 && !sound)
		log_msg(LOG_LVL_INFO, w->name,
			"target %s: %s was not flushed before the machine "
			"restarted; comparing content",
			w->path, w->live_gen);
	else if (rc == 0)
		log_msg(LOG_LVL_INFO, w->name,
			"target %s: state file %s does not describe %s; "
			"comparing content instead",
			w->path, STATE_FILE, w->live_gen);
	else if (rc == -EINVAL)
		log_msg(LOG_LVL_INFO, w->name,
			"target %s: state file %s or %s is damaged; "
			"comparing content instead",
			w->path, STATE_FILE, STATE_JOURNAL);
	else if (rc == -EFBIG)
		log_msg(LOG_LVL_INFO, w->name,
			"target %s: state file %s lists more entries than "
			"max_files (%zu); comparing content instead",
			w->path, STATE_FILE, max_files(w));
}

/* Reads what the live generation holds: from the state file when it
 * describes that generation, else by scanning the generation itself (then
 * every file's content is compared on the next publish). */
static int load_live(struct writer *w, char **err)
{
	struct snapshot *s = NULL;
	char *gen = NULL;
	int rc;

	w->live_trusted = w->live_durable = false;
	/* Unless the state read describes the live generation, the first
	 * publish writes it whole. */
	state_log_fini(&w->slog);
	/* A number of its own, as one made here has: a standby linked from
	 * its record differs from the next generation only where that one
	 * changes (with 0, it would be looked at in full).  The generation
	 * itself is retired as unknown (live_found). */
	w->live_seq = w->live_gen && !w->live_foreign ? ++w->seq : 0;
	w->live_found = true;
	if (w->live_gen == NULL || w->live_foreign) {
		/* Nothing to compare with: every file is written afresh. */
		rc = snapshot_open(NULL, &s, NULL);
		if (rc < 0)
			return rc;
		w->live = s;
		return 0;
	}
	bool sound = false, durable = false;
	/* A dry run (and --status) records nothing: the journal is only
	 * read. */
	rc = state_load_log(w->dfd, max_files(w), &s, &gen, &sound, &durable,
			    w->o.dry_run ? NULL : &w->slog);
	if (rc == 0 && sound && strcmp(gen, w->live_gen) == 0) {
		free(gen);
		w->live = s;
		w->live_trusted = true;
		w->live_durable = durable;
		return 0;
	}
	w->state_refused = rc == -EINVAL || rc == -EFBIG ? rc : 0;
	say_state_unused(w, rc, sound);
	state_log_fini(&w->slog);
	free(gen);
	snapshot_free(s);
	return scan_live(w, err);
}

/* Whether generations are flushed: asked for, and on a file system that
 * has a disk.  tmpfs and ramfs keep nothing across a reboot, and their
 * fsync() does nothing but cost a publish its threads. */
static bool flushes(const struct writer *w)
{
	return w->o.fsync && !w->in_memory;
}

/* What the file system under `fd` is: in memory (tmpfs, ramfs), and
 * whether a directory entry's inode number is the file's own, as local
 * file systems make it (overlayfs, FUSE and network ones need not). */
static void fs_kind(int fd, bool *memory, bool *dino)
{
	struct statfs sf;

	*memory = *dino = false;
	if (fstatfs(fd, &sf) < 0)
		return;
	*memory = sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
	*dino = *memory || sf.f_type == EXT4_SUPER_MAGIC ||
		sf.f_type == XFS_SUPER_MAGIC;
}

void writer_set_opts(struct writer *w, const struct writer_opts *o)
{
	free(w->name);
	w->projected = 0; /* modes and owners may be given otherwise now */
	w->o = *o;
	w->name = o->name ? strdup(o->name) : NULL;
	w->o.name = w->name;
}

/* A setgid target gives what is made in it its group, as the kernel
 * does to what is made directly in it: every entry of every generation,
 * recycled ones too, whose directories lose the bit (dir_mode).  Read
 * at open and at each publish; a change projects every entry anew. */
static void target_group(struct writer *w)
{
	struct stat st;
	uint32_t g = SNAP_NO_ID;

	if (w->dfd >= 0 && fstat(w->dfd, &st) == 0 && (st.st_mode & S_ISGID))
		g = (uint32_t)st.st_gid;
	if (g != w->tgid) {
		w->tgid = g;
		w->projected = 0;
	}
}

/* The group entries are published with: group=, or a setgid target's. */
static uint32_t group_of(const struct writer *w)
{
	return w->o.gid != SNAP_NO_ID ? w->o.gid : w->tgid;
}

/* The target holds what readers trust and what root's hooks are run
 * on: a directory that another user owns or can write (one put in place
 * of a target that was moved away, say) is refused, not written into. */
static int target_ours(const struct writer *w, char **err)
{
	struct stat st;

	if (fstat(w->dfd, &st) < 0)
		return log_err_set(err, -errno, "target %s: %s", w->path,
				   strerror(errno));
	if (!fsutil_trusted_uid(st.st_uid))
		return log_err_set(err, -EPERM,
				   "target %s is owned by uid %u, not by root "
				   "or atomsyncd's user; refusing to publish "
				   "into it",
				   w->path, (unsigned)st.st_uid);
	if (st.st_mode & 0022)
		return log_err_set(err, -EPERM,
				   "target %s is writable by %s (mode %04o); "
				   "refusing to publish into it",
				   w->path, fsutil_writers(st.st_mode),
				   (unsigned)(st.st_mode & 07777));
	return 0;
}

/* An ACL on the target, inherited from a default one of its parent's
 * (which the parent's owner may set), would be inherited in turn by
 * every generation: a user it names could read, or with file_mode's
 * group write, change the files.  A generation has its mode bits alone:
 * the target's ACLs go, said once. */
static void strip_acls(struct writer *w)
{
	bool had = false;
	int rc = fsutil_acl_strip(w->dfd, &had);

	if (rc < 0)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: removing its ACL: %s; generations may "
			"inherit it",
			w->path, strerror(-rc));
	else if (had)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: had an ACL (inherited from its parent, "
			"say); removed, so that new generations have their "
			"mode bits alone (generations made before keep "
			"theirs: setfacl -R -b on the target removes them)",
			w->path);
}

/* Whether the target open as `fd` is the directory the caller looked
 * at (expect_ino): a user who can rename in its parent could have put
 * another of root's in its place since. */
static bool expected_target(const struct writer *w, int fd)
{
	struct stat st;

	if (!w->o.no_create || w->o.expect_ino == 0)
		return true;
	return fstat(fd, &st) == 0 && (uint64_t)st.st_dev == w->o.expect_dev &&
	       (uint64_t)st.st_ino == w->o.expect_ino;
}

/* Opens the target directory (creating it unless in a dry run), resolved
 * as a root daemon must: a symlink on the way that another user could
 * have put there is refused, and nothing is written. */
static int open_target(struct writer *w, char **err)
{
	bool created = false;
	char *why = NULL;
	unsigned how = w->o.dry_run || w->o.no_create ? 0 : FSUTIL_CHASE_MKDIR;
	int fd = fsutil_chase(w->path, how, O_RDONLY | O_DIRECTORY, &created,
			      &why);

	if (fd >= 0 && !expected_target(w, fd)) {
		close(fd);
		fd = -ESTALE;
		log_err_set(err, fd, "target %s: replaced as it was opened; "
				     "looked at again",
			    w->path);
	} else if (fd >= 0) {
		/* mkdir is subject to the umask; the layout wants 0755.
		 * Through the descriptor: a link swapped in is not followed. */
		if (created)
			(void)fchmod(fd, 0755);
		w->made_target = created;
		w->dfd = fd;
		fs_kind(fd, &w->in_memory, &w->exact_dino);
		target_group(w);
		int rc = target_ours(w, err);
		if (rc == 0 && !w->o.dry_run)
			strip_acls(w);
		return rc;
	} else if (fd == -ENOENT && w->o.no_create) {
		log_err_set(err, fd, "target %s: gone as it was opened; "
				     "looked for again",
			    w->path);
	} else if (fd == -ENOENT && !w->o.dry_run) {
		log_err_set(err, fd, "target %s: parent directory does not "
				     "exist (%s)",
			    w->path, why ? why : strerror(-fd));
	} else if (fd != -ENOENT) {
		target_unreachable(w, fd, why, err);
	}
	free(why);
	return fd < 0 ? fd : 0;
}

/* A lock file another user owns (an operator's chown -R, say) lets
 * them open it and hold its lock, keeping every writer out: it is taken
 * back, with a warning (one they opened before still can, and is named
 * then: see lock_target()).  -EACCES when it cannot be. */
static int lock_owned(const struct writer *w, int fd, const struct stat *st)
{
	if (fsutil_trusted_uid(st->st_uid))
		return 0;
	/* The mode too: its owner may have changed it meanwhile. */
	if (fchown(fd, geteuid(), getegid()) < 0 || fchmod(fd, 0600) < 0)
		return -EACCES;
	log_msg(LOG_LVL_WARN, w->name,
		"target %s: lock file %s was owned by uid %u, who could hold "
		"its lock; taken back",
		w->path, WRITER_LOCK, (unsigned)st->st_uid);
	return 0;
}

/* Whether the lock file open as `fd` names a target, as lock_say_id()
 * has it say. */
static bool lock_names_target(int fd)
{
	char buf[sizeof(FSUTIL_LOCK_ID_PREFIX) - 1];

	return pread(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) &&
	       memcmp(buf, FSUTIL_LOCK_ID_PREFIX, sizeof(buf)) == 0;
}

/* What a run would find of the lock file, for a dry run, which takes
 * none: it tells a directory that was no target as a run does. */
static enum lock_found lock_seen(const struct writer *w)
{
	struct stat st;

	if (fstatat(w->dfd, WRITER_LOCK, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? LOCK_MADE : LOCK_NONE;
	if (!S_ISREG(st.st_mode))
		return LOCK_NONE; /* a run is refused for it */
	int fd = openat(w->dfd, WRITER_LOCK,
			O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return LOCK_NONE;
	enum lock_found found = fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)
					? LOCK_NONE
				: lock_names_target(fd) ? LOCK_OURS
							: LOCK_FOUND;
	close(fd);
	return found;
}

/* Whether the lock file open as `fd` says it is this target's (see
 * lock_say_id()). */
static bool lock_names_this(const struct writer *w, int fd)
{
	char id[FSUTIL_LOCK_ID_MAX], buf[FSUTIL_LOCK_ID_MAX];
	struct stat st;
	size_t len;

	if (fstat(w->dfd, &st) < 0)
		return false;
	fsutil_lock_id(&st, id, sizeof(id));
	len = strlen(id);
	return pread(fd, buf, sizeof(buf), 0) == (ssize_t)len &&
	       memcmp(buf, id, len) == 0;
}

/* A lock file with more than one name that root or we did not make
 * ours alone (0600): whatever it holds, it may be another's file. */
static bool lock_linked_to_any(const struct stat *st)
{
	return st->st_nlink != 1 &&
	       (!fsutil_trusted_uid(st->st_uid) || (st->st_mode & 0077));
}

/* Whether the lock file open as `fd` (`st`) may be another file's name
 * too: taking its lock would hold someone else's (a lock file of root's
 * own, such as /run/xtables.lock, or another target's), and taking it
 * back would change that file.  Only this target's own, linked
 * elsewhere since, is used. */
static bool lock_linked_elsewhere(const struct writer *w, int fd,
				  const struct stat *st)
{
	return lock_linked_to_any(st) ||
	       (st->st_nlink != 1 && !lock_names_this(w, fd));
}

/* The lock file, opened: made if missing (*made), in a target only we
 * or root can write (target_ours()).  -ESTALE when another made it
 * meanwhile; -EEXIST when something else has its name (a directory, a
 * FIFO, a socket, a link); -EMLINK when it is another file's hard link
 * and would have to be changed (its owner, its mode), which would change
 * that file: one put there while another user could write the target.
 * Read-only: flock() needs no more, and a file held open to write keeps
 * the target's file system from being remounted read-only. */
static int open_lock(struct writer *w, bool *made)
{
	struct stat st;
	int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	int fd = openat(w->dfd, WRITER_LOCK, flags);

	*made = fd < 0 && errno == ENOENT;
	if (*made)
		fd = openat(w->dfd, WRITER_LOCK, flags | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return errno == EEXIST		       ? -ESTALE
		       : errno == ELOOP || errno == ENXIO ? -EEXIST
							  : -errno;
	int rc = fstat(fd, &st) < 0	  ? -errno
		 : !S_ISREG(st.st_mode) ? -EEXIST
		 : lock_linked_elsewhere(w, fd, &st) ? -EMLINK
						  : lock_owned(w, fd, &st);
	if (rc == 0 && (st.st_mode & 0077) && fchmod(fd, 0600) < 0)
		rc = -EPERM;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* Whether the lock file open as `fd` still has its name. */
static bool lock_named(const struct writer *w, int fd)
{
	struct stat held, named;

	return fstat(fd, &held) == 0 &&
	       fstatat(w->dfd, WRITER_LOCK, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
	       held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/* The lock file says which target it locks, for a writer that comes
 * once it was removed (fsutil_removed_lock_holder()), and for the next
 * writer_open() (LOCK_OURS), which then removes what looks like a
 * generation as a leftover: in a directory that never was a target,
 * only once a generation is about to be written (a refused open leaves
 * it as it found it).  Written only when it says something else: made
 * here, or by an older atomsyncd; and flushed, as a generation may be
 * left beside it.  A failure only leaves those writers unable to
 * tell. */
static void lock_say_id(const struct writer *w)
{
	char id[FSUTIL_LOCK_ID_MAX];
	struct stat st;
	size_t len;

	if (w->lock_fd < 0 || lock_names_this(w, w->lock_fd) ||
	    fstat(w->dfd, &st) < 0)
		return;
	fsutil_lock_id(&st, id, sizeof(id));
	len = strlen(id);
	/* Written through a descriptor of its own, closed at once; never
	 * through another name of the file (see open_lock()). */
	int fd = openat(w->dfd, WRITER_LOCK,
			O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
	    lock_named(w, fd) && lock_named(w, w->lock_fd) &&
	    ftruncate(fd, 0) == 0 && pwrite(fd, id, len, 0) == (ssize_t)len &&
	    flushes(w))
		(void)fsync(fd);
	close(fd);
}

/* Opens and flocks the lock file: 0 with w->lock_fd held; -EBUSY with
 * *holder (0: unknown) when another holds it; -ESTALE when it was made,
 * or removed or replaced, by another meanwhile (the lock held would not
 * be the one named). */
static int take_lock(struct writer *w, bool *made, pid_t *holder)
{
	int fd = open_lock(w, made), rc = 0;

	if (fd < 0)
		return fd;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (rc == -EBUSY)
			*holder = fsutil_flock_holder(fd);
	} else if (!lock_named(w, fd)) {
		rc = -ESTALE;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	w->lock_fd = fd;
	w->lock = *made			   ? LOCK_MADE
		  : lock_names_target(fd) ? LOCK_OURS
					   : LOCK_FOUND;
	/* Said at once where the directory is a target; in one that never
	 * was, only before a generation is written (writer_prepare()). */
	if (!never_published(w))
		lock_say_id(w);
	return 0;
}

/* A lock file made here, in a target that was there: it may have been
 * removed or moved away (by root) while another writer held it, which
 * keeps its lock and would go on publishing beside us.  Only then are
 * the open files of root's processes looked at, which costs a ms or
 * more.  Refused, the lock file made goes again (then its lock), so the
 * next writer to come makes it and looks too. */
static int removed_lock(struct writer *w, char **err)
{
	struct stat st, mine;
	pid_t other;

	if (fstat(w->dfd, &st) < 0 || fstat(w->lock_fd, &mine) < 0)
		return log_err_set(err, -errno, "target %s: %s", w->path,
				   strerror(errno));
	other = fsutil_removed_lock_holder(&st, mine.st_ino);
	if (other < 0)
		return log_err_set(err, other,
				   "target %s: looking for a writer whose lock "
				   "file was removed: %s",
				   w->path, strerror(-other));
	if (other == 0)
		return 0;
	if (lock_named(w, w->lock_fd))
		(void)unlinkat(w->dfd, WRITER_LOCK, 0);
	close(w->lock_fd);
	w->lock_fd = -1;
	return log_err_set(err, -EBUSY,
			   "target %s: in use by another atomsyncd (pid %ld), "
			   "whose lock file %s was removed or moved; restart "
			   "that one to lock the target again",
			   w->path, (long)other, WRITER_LOCK);
}

/* A dry run takes no lock, and writes nothing; but where another
 * writer holds one, a run would be refused, and what it would remove is
 * that writer's (a standby): -EBUSY, as a run has.  The holder is looked
 * for in /proc, not by taking the lock even for a moment, which would
 * refuse a run that starts then; where /proc cannot tell, nothing is
 * said.  A lock file a run would refuse is refused too (see
 * open_lock()). */
static int lock_free(const struct writer *w, pid_t *holder)
{
	struct stat st;

	if (fstatat(w->dfd, WRITER_LOCK, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0; /* none: a run makes it */
	if (!S_ISREG(st.st_mode))
		return -EEXIST;
	if (lock_linked_to_any(&st))
		return -EMLINK;
	int fd = openat(w->dfd, WRITER_LOCK,
			O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return 0; /* none, or none of ours: a run finds out */
	int rc = lock_linked_elsewhere(w, fd, &st) ? -EMLINK : 0;
	*holder = rc == 0 ? fsutil_flock_holder(fd) : 0;
	close(fd);
	return rc < 0 ? rc : *holder > 0 && *holder != getpid() ? -EBUSY : 0;
}

/* What a refusal to take the lock (rc) means, for its line. */
static const char *lock_why(const struct writer *w, int rc)
{
	struct stat st;

	switch (rc) {
	case -ESTALE:
		return "made and removed again by another, over and over";
	case -EEXIST:
		return "not a regular file (a directory, a FIFO, a socket or a "
		       "symbolic link); move it away";
	case -EMLINK:
		return "a hard link of another file, which taking the lock "
		       "back would change; move it away";
	case -EACCES:
		if (fstatat(w->dfd, WRITER_LOCK, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return "cannot be made: Permission denied";
		return "owned by another user, who could hold its lock; "
		       "remove it";
	default:
		return strerror(-rc);
	}
}

/* One writer per target.  The lock is on a file only root or we can
 * open: anyone can open a directory of mode 0755, and flock() it to
 * keep every writer out. */
static int lock_target(struct writer *w, char **err)
{
	bool made = false;
	pid_t holder = 0;
	int rc = -ESTALE;

	/* --status (quiet) looks at a target its daemon holds. */
	if (w->o.dry_run && w->dfd >= 0)
		w->lock = lock_seen(w);
	if (w->o.dry_run)
		rc = w->o.quiet ? 0 : lock_free(w, &holder);
	else
		for (int tries = 0; rc == -ESTALE && tries < 8; tries++)
			rc = take_lock(w, &made, &holder);
	if (w->o.dry_run && rc == 0)
		return 0;
	if (rc < 0)
		w->lock = LOCK_NONE;
	if (rc == 0)
		return made && !w->made_target ? removed_lock(w, err) : 0;
	if (rc == -EBUSY && holder > 0)
		return log_err_set(err, rc,
				   "target %s: in use by another atomsyncd "
				   "(pid %ld)",
				   w->path, (long)holder);
	if (rc == -EBUSY)
		return log_err_set(err, rc,
				   "target %s: in use by another writer: this "
				   "process's, or one /proc does not show as "
				   "root's or ours (fuser %s/%s names it)",
				   w->path, w->path, WRITER_LOCK);
	return log_err_set(err, rc, "target %s: lock file %s: %s", w->path,
			   WRITER_LOCK, lock_why(w, rc));
}

/* ..data names a generation that is gone: the one the state file
 * names is put back when it can be, else the target has none live. */
static int live_missing(struct writer *w, char **err)
{
	char *was = w->live_gen, *other = NULL;
	int rc = 0;

	w->live_gen = NULL;
	w->live_fd = -1;
	if (put_back_recorded(w, was))
		rc = w->o.dry_run ? 0 : read_live(w, &w->live_gen, &other, err);
	else
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: %s names missing generation %s", w->path,
			WRITER_DATA, was);
	free(was);
	free(other);
	if (rc == 0 && w->live_gen && (w->live_fd = open_live(w)) < 0) {
		free(w->live_gen);
		w->live_gen = NULL;
		w->live_fd = -1;
	}
	return rc;
}

/* Opens the generation ..data names, if it is one that may be reused. */
static int open_live_generation(struct writer *w, char **err)
{
	char *other = NULL;
	int rc = read_live(w, &w->live_gen, &other, err);

	if (rc == 0 && w->live_gen == NULL && put_back_recorded(w, other)) {
		free(other);
		other = NULL;
		if (!w->o.dry_run)
			rc = read_live(w, &w->live_gen, &other, err);
	}
	if (rc == 0 && other)
		rc = foreign_data(w, other, err);
	free(other);
	if (rc < 0 || w->live_gen == NULL)
		return rc;
	w->live_fd = open_live(w);
	if (w->live_fd == -EPERM) {
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: %s names %s, which another user made or "
			"can change; none of its files are reused",
			w->path, WRITER_DATA, w->live_gen);
		w->live_foreign = true;
		w->live_fd = -1;
	} else if (w->live_fd == -ENOENT || w->live_fd == -ENOTDIR) {
		rc = live_missing(w, err);
	} else if (w->live_fd < 0) {
		/* Not knowing the live generation is no reason to take it
		 * for debris (EMFILE, ENOMEM): try again later. */
		rc = log_err_set(err, w->live_fd, "target %s: opening %s: %s",
				 w->path, w->live_gen, strerror(-w->live_fd));
		w->live_fd = -1;
	}
	return rc;
}

/* Where dir_mode lets a group or others write the directories of a
 * generation, what is in them is removed with their rights alone
 * (fsutil_rmtree()): said at open when that cannot be, or cannot go
 * into a directory in one. */
static void warn_open_dirs(const struct writer *w)
{
	mode_t m = (mode_t)w->o.dir_mode;
	/* The bits of the fewest who may write: others', else the group's. */
	mode_t theirs = m & 0002 ? m & 07 : (m >> 3) & 07;

	if (!fsutil_can_act_as_writers())
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: dir_mode lets %s write the directories of "
			"its generations, but atomsyncd cannot take their "
			"rights alone (CAP_SETUID and CAP_SETGID) to remove "
			"a directory in one of those; a replaced generation "
			"that has one is moved aside whole",
			w->path, fsutil_writers(m));
	else if ((theirs & 05) != 05)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: dir_mode %04o lets %s write but not read "
			"and search the directories of its generations; a "
			"replaced generation with a directory in one is moved "
			"aside whole",
			w->path, (unsigned)m, m & 0002 ? "others" : "its group");
}

/* A writer that is not root has only its owner's rights on what it
 * makes: a dir_mode without them (0700) would keep it from filling,
 * recycling and removing its own directories (every publish would fail,
 * and leave one it cannot remove). */
static int dir_mode_usable(const struct writer *w, char **err)
{
	int m = w->o.dir_mode;

	if (m < 0 || (m & 0700) == 0700 || w->root)
		return 0;
	return log_err_set(err, -EINVAL,
			   "target %s: dir_mode %04o leaves out its owner's "
			   "rwx (0700), which a writer not run as root needs "
			   "on the directories it fills, recycles and removes",
			   w->path, (unsigned)m);
}

/* A writer refused at open takes away the lock file it made, leaving
 * the directory as it found it.  (Still named by it: the lock held.) */
static void drop_made_lock(struct writer *w)
{
	if (w->lock == LOCK_MADE && w->lock_fd >= 0 &&
	    lock_named(w, w->lock_fd) && unlinkat(w->dfd, WRITER_LOCK, 0) == 0)
		w->lock = LOCK_NONE;
}

int writer_open(const char *target, const struct writer_opts *o,
		struct writer **out, char **err)
{
	struct writer *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL)
		return -ENOMEM;
	w->dfd = w->live_fd = w->lock_fd = w->spare_fd = -1;
	w->tgid = SNAP_NO_ID;
	w->root = geteuid() == 0;
	state_log_init(&w->slog);
	w->verify_live = true; /* nothing is known of the files yet */
	writer_set_opts(w, o);
	w->path = strdup(target);
	rc = w->path ? dir_mode_usable(w, err) : -ENOMEM;
	if (rc == 0)
		rc = open_target(w, err);
	if (rc == -ENOENT && o->dry_run) {
		/* Nothing there yet: everything would be added. */
		rc = snapshot_open(NULL, &w->live, NULL);
		w->live_loaded = rc == 0;
		if (rc == 0) {
			*out = w;
			return 0;
		}
	}
	if (rc == 0)
		rc = lock_target(w, err);
	if (rc == 0 && dirs_open(w))
		warn_open_dirs(w);
	if (rc == 0)
		rc = open_live_generation(w, err);
	if (rc == 0)
		rc = foreign_leftovers(w, err);
	if (rc == 0)
		recover(w);
	if (rc == 0 && !o->load_later)
		rc = writer_load(w, err);
	if (rc < 0) {
		drop_made_lock(w);
		writer_close(w);
		return rc;
	}
	*out = w;
	return 0;
}

/* A one-shot writer (--once) checks every live file only as often as a
 * daemon does (check_s): when the record it loaded says they were last
 * all checked that long ago or more, or does not say.  Between, as
 * between a daemon's full checks, the files only root or we can write
 * are linked forward without a look. */
static bool checked_lately(const struct writer *w)
{
	struct timespec now;

	if (!w->o.one_shot || w->o.check_s == 0 || !w->live_trusted ||
	    w->live == NULL || w->live->checked <= 0)
		return false;
	clock_gettime(CLOCK_REALTIME, &now);
	/* A time ahead of the clock (one set back since) is not trusted. */
	return now.tv_sec >= w->live->checked &&
	       now.tv_sec - w->live->checked < (int64_t)w->o.check_s;
}

int writer_load(struct writer *w, char **err)
{
	if (w->live_loaded)
		return 0;
	int rc = load_live(w, err);
	if (rc < 0 && err && *err == NULL)
		log_err_set(err, rc, "target %s: %s", w->path, strerror(-rc));
	w->live_loaded = rc == 0;
	if (rc == 0 && checked_lately(w))
		w->verify_live = false;
	return rc;
}

size_t writer_expect(const struct writer *w)
{
	size_t n = 0;

	if (w->live)
		return w->live->n;
	if (w->dfd >= 0 && w->live_gen && !w->live_foreign)
		(void)state_entries(w->dfd, max_files(w), &n);
	return n;
}

void writer_close(struct writer *w)
{
	if (w == NULL)
		return;
	verify_drop(w);
	for (size_t i = 0; i < w->nretired; i++) {
		free(w->retired[i].name);
		pathset_free(w->retired[i].changed);
	}
	free(w->retired);
	for (size_t i = 0; i < w->ndrop; i++)
		free(w->drop[i]); /* 0700: the next writer_open removes them */
	free(w->drop);
	free(w->spare);
	pathset_free(w->spare_left);
	pathset_free(w->live_changed);
	if (w->live_fd >= 0)
		close(w->live_fd);
	if (w->lock_fd >= 0)
		close(w->lock_fd);
	if (w->dfd >= 0)
		close(w->dfd);
	snapshot_free(w->live);
	classes_fini(&w->cls);
	state_log_fini(&w->slog);
	free(w->live_gen);
	free(w->path);
	free(w->name);
	free(w);
}

/* The source's bits, less group and other write: a 0777 directory or a
 * 0666 file in the source must not let every user change what readers
 * of the target trust (and what the next publish links forward).  Only
 * file_mode and dir_mode can ask for them. */
#define WRITER_MODE_MASK 0755u

static uint32_t project_mode(const struct writer *w, const struct snap_entry *e)
{
	/* A writer not root needs its own rights to fill, recycle and
	 * remove its directories: a source's 0055 is 0755 here (a dir_mode
	 * without them is refused at open). */
	if (e->type == SNAP_DIR)
		return w->o.dir_mode >= 0 ? (uint32_t)w->o.dir_mode
		       : (e->mode & WRITER_MODE_MASK) | (w->root ? 0 : 0700u);
	if (w->o.file_mode >= 0)
		return (uint32_t)w->o.file_mode;
	/* A payload's mode is what its program asked for. */
	return e->mode & (e->flags & SNAP_F_DATA ? 0777u : WRITER_MODE_MASK);
}

/* parent of "a/b/c" is "a/b" (length 3); of "a", "" (0). */
static size_t parent_len(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? (size_t)(s - p) : 0;
}

/* One pass over a sorted snapshot, keeping the chain of directories the
 * current entry is in: 1 when every entry's parent is there (a walked
 * snapshot always), 0 when some parent is missing, or -ENOMEM. */
static int parents_present(const struct snapshot *s)
{
	size_t *chain = NULL, depth = 0, cap = 0;
	int rc = 1;

	for (size_t i = 0; i < s->n && rc == 1; i++) {
		const char *p = s->v[i].path;
		size_t pl = parent_len(p);
		/* Sorted, a directory's descendants follow it at once. */
		while (depth > 0) {
			const char *d = s->v[chain[depth - 1]].path;
			size_t dl = strlen(d);
			if (dl < strlen(p) && strncmp(d, p, dl) == 0 &&
			    p[dl] == '/')
				break;
			depth--;
		}
		if (pl != 0 &&
		    (depth == 0 || strlen(s->v[chain[depth - 1]].path) != pl))
			rc = 0;
		if (rc == 1 && s->v[i].type == SNAP_DIR) {
			if (depth == cap) {
				size_t nc = cap ? cap * 2 : 16;
				size_t *v = realloc(chain, nc * sizeof(*v));
				if (v == NULL) {
					rc = -ENOMEM;
					break;
				}
				chain = v;
				cap = nc;
			}
			chain[depth++] = i;
		}
	}
	free(chain);
	return rc;
}

/* Validates every path and cleans those that need it. */
static int clean_paths(struct snapshot *s, char **err)
{
	for (size_t i = 0; i < s->n; i++) {
		struct snap_entry *e = &s->v[i];
		int rc = writer_validate_path(e->path, err);
		if (rc < 0)
			return rc;
		if (snapshot_path_is_clean(e->path))
			continue; /* as every walked path is: no copy */
		char *c = snapshot_clean_path(e->path);
		if (c == NULL)
			return -ENOMEM;
		if (strcmp(c, ".") == 0) {
			free(c);
			return log_err_set(err, -EINVAL,
				       "invalid path %s: names the target "
				       "itself",
				       e->path);
		}
		if (!e->pooled)
			free(e->path);
		e->path = c;
		e->pooled = false;
		s->held++;
		s->sorted = false;
	}
	return 0;
}

/* How much of `p` the directories of `prev`, the path before it in
 * order, cover: the length of the longest prefix of p that is a
 * directory of prev's (an ancestor, or prev itself), 0 when none. */
static size_t ancestors_shared(const char *prev, const char *p)
{
	size_t j = 0, last = 0;

	for (; p[j] && p[j] == prev[j]; j++)
		if (p[j] == '/')
			last = j;
	if (p[j] == '/' && prev[j] == '\0')
		last = j;
	return last;
}

/* The directory p[0..len) as an entry of `s`, unless its first `n`
 * (sorted) hold it. */
static int add_parent(struct snapshot *s, size_t n, const char *p, size_t len)
{
	char *parent = strndup(p, len);
	int rc = parent ? 0 : -ENOMEM;

	if (rc == 0 && snapshot_find_n(s, n, parent) == NULL) {
		struct snap_entry d = {
			.path = parent,
			.type = SNAP_DIR,
			.mode = 0755,
			.uid = SNAP_NO_ID,
			.gid = SNAP_NO_ID,
		};
		rc = snapshot_add(s, &d);
	}
	free(parent);
	return rc < 0 ? rc : 0;
}

/* Every entry's parent must be a directory entry: adds the missing ones,
 * each once, in one pass.  Sorted, the paths below a directory follow
 * one another, so what the path before shares with an entry's had its
 * directories looked at already: a path 2,000 levels deep costs 2,000
 * lookups, not a pass and a sort per level. */
static int add_parents(struct snapshot *s)
{
	int rc = parents_present(s);
	size_t n = s->n;
	const char *prev = "";

	if (rc != 0)
		return rc < 0 ? rc : 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *p = s->v[i].path;
		size_t from = ancestors_shared(prev, p);
		for (size_t j = from ? from + 1 : 0; p[j] && rc == 0; j++)
			if (p[j] == '/')
				rc = add_parent(s, n, p, j);
		prev = p;
	}
	if (rc == 0 && s->n != n)
		snapshot_sort(s);
	return rc;
}

/* Validates and cleans every path, sorts, and adds the directories a
 * hand-built snapshot only implies, so that what is written is a tree:
 * one path at most once, and no file with entries below it. */
static int make_tree(struct snapshot *s, char **err)
{
	int rc = clean_paths(s, err);

	if (rc < 0)
		return rc;
	snapshot_sort(s);
	rc = add_parents(s);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i + 1 < s->n; i++) {
		const char *a = s->v[i].path, *b = s->v[i + 1].path;
		size_t la = strlen(a);
		if (strcmp(a, b) == 0)
			return log_err_set(err, -EINVAL,
					   "payload: path %s given twice", a);
		/* Sorted so that a directory's descendants follow it. */
		if (s->v[i].type == SNAP_FILE && strncmp(a, b, la) == 0 &&
		    b[la] == '/')
			return log_err_set(err, -EINVAL,
					   "payload: %s is a file but %s is "
					   "below it",
					   a, b);
	}
	return 0;
}

void writer_project_entry(const void *w, struct snap_entry *e)
{
	const struct writer *wr = w;

	e->mode = project_mode(wr, e);
	e->uid = wr->o.uid;
	e->gid = group_of(wr);
}

static void project_range(const struct writer *w, struct snapshot *s,
			  size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		writer_project_entry(w, &s->v[i]);
}

/* Gives every entry the mode and owner it is published with.  What a
 * refresh copied from the live record has them already when the same
 * options put them there (projecting twice changes nothing): at a
 * million entries, a pass over all of them costs tens of
 * milliseconds. */
static void project(struct writer *w, struct snapshot *s)
{
	bool runs = w->live && s->base_id == w->live->id &&
		    w->projected == w->live->id;
	size_t i = 0;

	for (size_t r = 0; runs && r < s->nruns; r++) {
		project_range(w, s, i, s->runs[r].at);
		i = s->runs[r].at + s->runs[r].n;
	}
	project_range(w, s, i, s->n);
	w->projected = s->id;
	w->same_copies = runs ? s->id : 0;
}

/* A tree (make_tree()) with the owner and modes the writer gives. */
static int normalize(struct writer *w, struct snapshot *s, char **err)
{
	/* A walk is one already (see struct snapshot): at a million entries
	 * make_tree()'s passes cost tens of milliseconds a publish. */
	if (s->walked)
		snapshot_sort(s);
	else {
		int rc = make_tree(s, err);
		if (rc < 0)
			return rc;
	}
	project(w, s);
	return 0;
}

/* What the top-level name N of the target is, to its visible link. */
enum visible {
	VIS_ABSENT, /* nothing: the link is to be made */
	VIS_OURS,   /* our link "..data/N" */
	VIS_ASTRAY, /* a link naming anything else: made by hand (only root
		       or we can write the target), holding no data, and put
		       back as ..data is */
	VIS_TAKEN,  /* a file, directory or other: someone's, refused */
};

static int visible_state(const struct writer *w, const char *name,
			 enum visible *v)
{
	struct stat st;
	char *t = NULL;

	*v = VIS_ABSENT;
	if (fstatat(w->dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	*v = VIS_TAKEN;
	if (!S_ISLNK(st.st_mode))
		return 0;
	int rc = fsutil_readlinkat(w->dfd, name, &t);
	if (rc < 0)
		return rc;
	bool match = strncmp(t, WRITER_DATA "/", sizeof(WRITER_DATA)) == 0 &&
		     strcmp(t + sizeof(WRITER_DATA), name) == 0;
	free(t);
	*v = match ? VIS_OURS : VIS_ASTRAY;
	return 0;
}

/* The live generation's name still names the directory the writer
 * holds (live_fd), which is not removed. */
static bool live_fd_current(const struct writer *w)
{
	struct stat a, b;

	return fstat(w->live_fd, &b) == 0 && b.st_nlink > 0 &&
	       fstatat(w->dfd, w->live_gen, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* ..data names the live generation, which is still there: the very
 * directory the writer holds, not removed. */
static bool live_in_place(const struct writer *w)
{
	struct stat a;
	char *t = NULL;
	bool same = fsutil_readlinkat(w->dfd, WRITER_DATA, &t) == 0 &&
		    strcmp(t, w->live_gen) == 0;

	free(t);
	if (!same)
		return false;
	if (w->live_fd >= 0)
		return live_fd_current(w);
	return fstatat(w->dfd, w->live_gen, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(a.st_mode);
}

static bool visible_in_place(const struct writer *w, const char *name)
{
	enum visible v;

	return visible_state(w, name, &v) == 0 && v == VIS_OURS;
}

int writer_check_name(const struct writer *w, const char *name)
{
	if (w->dfd < 0 || w->o.dry_run || w->live_gen == NULL ||
	    w->live_foreign || w->live == NULL)
		return 0;
	bool all = name == NULL;
	if ((all || strcmp(name, WRITER_DATA) == 0 ||
	     strcmp(name, w->live_gen) == 0) &&
	    !live_in_place(w))
		return -ESTALE;
	if (!all)
		return strchr(name, '/') == NULL &&
				       snapshot_find(w->live, name) &&
				       !visible_in_place(w, name)
			       ? -ESTALE
			       : 0;
	for (size_t i = 0; i < w->live->n;
	     i = snapshot_subtree_end(w->live, i)) {
		const char *p = w->live->v[i].path;
		if (*p && strchr(p, '/') == NULL && !visible_in_place(w, p))
			return -ESTALE;
	}
	return 0;
}

/* What keeps a publish from going ahead without being an error of the
 * moment: reported all at once, so one run tells the operator every
 * name to move and every entry to make readable. */
struct problems {
	struct log_list taken;	    /* names in the target that are not ours */
	struct log_list unreadable; /* source entries that cannot be read */
	struct log_list aside;	    /* entries moved to WRITER_ASIDE */
};

static void problems_fini(struct problems *pb)
{
	log_list_fini(&pb->taken);
	log_list_fini(&pb->unreadable);
	log_list_fini(&pb->aside);
}

/* What a build moved aside (see move_aside()), in one line, whether the
 * publish went on or not. */
static void asides_report(const struct writer *w, const struct problems *pb)
{
	char *all = log_list_count(&pb->aside) > 0
			    ? log_list_join(&pb->aside, ", ")
			    : NULL;

	if (all)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: not atomsync's to remove, moved aside to "
			"%s/%s: %s",
			w->path, w->path, WRITER_ASIDE, all);
	free(all);
}

/* The message for all of them, and -EEXIST or -EACCES; 0 when none. */
static int problems_report(const struct writer *w, const struct snapshot *s,
			   const struct problems *pb, char **err)
{
	size_t nt = log_list_count(&pb->taken);
	size_t nu = log_list_count(&pb->unreadable);
	char *t = NULL, *u = NULL, *a = NULL, *b = NULL;

	if (nt + nu == 0)
		return 0;
	if (nt == 1)
		a = log_strdupf("target %s: %s exists and is not a link managed "
				"by atomsync; refusing to replace it, and "
				"publishing nothing until it is moved away",
				w->path, pb->taken.v[0]);
	else if (nt > 1 && (t = log_list_join(&pb->taken, ", ")))
		a = log_strdupf("target %s: %zu names exist and are not links "
				"managed by atomsync; refusing to replace "
				"them, and publishing nothing until they are "
				"moved away: %s",
				w->path, nt, t);
	if (nu == 1)
		b = log_strdupf("source %s: cannot read %s", s->root,
				pb->unreadable.v[0]);
	else if (nu > 1 && (u = log_list_join(&pb->unreadable, ", ")))
		b = log_strdupf("source %s: %zu entries cannot be read: %s",
				s->root, nu, u);
	log_err_set(err, 0, "%s%s%s", a ? a : "", a && b ? "; " : "",
		    b ? b : "");
	free(a);
	free(b);
	free(t);
	free(u);
	return nt ? -EEXIST : -EACCES;
}

/* Whether the visible links of the live generation can be taken to be
 * as the last sync left them, with no look: only we or root could have
 * changed them since, and still only we or root can (a full check,
 * `full`, looks at each, and puts back one an operator removed). */
static bool visible_trusted(const struct writer *w, bool full)
{
	return w->visible_synced && !full && w->live != NULL &&
	       dir_ours(w->dfd);
}

/* Every top-level name must be absent from the target or our own link;
 * those of the live generation are, when trusted. */
static int check_visible(struct writer *w, const struct snapshot *s,
			 struct problems *pb, char **err)
{
	bool trusted = visible_trusted(w, w->verify_live);
	size_t run = 0;

	if (w->dfd < 0)
		return 0;
	/* Sorted by normalize(), what is below a name follows it: only the
	 * top-level names are looked at, not every entry; those a refresh
	 * copied from the live record are in it, and are passed over a run
	 * of copies at a time (at a million files, not ten thousand
	 * searches for where a name's entries end). */
	for (size_t i = 0, next; i < s->n; i = next) {
		const char *p = s->v[i].path;
		enum visible v;
		next = trusted ? snapshot_copies_end(s, i, w->live, &run) : i;
		if (next > i)
			continue;
		next = snapshot_subtree_end(s, i);
		if (strchr(p, '/') || (trusted && snapshot_find(w->live, p)))
			continue;
		int rc = visible_state(w, p, &v);
		if (rc == 0 && v == VIS_TAKEN)
			log_list_add(&pb->taken, "%s", p);
		else if (rc < 0)
			return log_err_set(err, rc, "target %s: %s: %s", w->path,
					   p, strerror(-rc));
	}
	return 0;
}

/* A link of the top-level name `p` naming something else replaced
 * with ours, `tmp` (naming `t`), in one rename: a reader finds one or
 * the other. */
static int relink_from(struct writer *w, const char *tmp, const char *p,
		       const char *t)
{
	char *was = NULL;
	/* Only a link is replaced: not a file put there since. */
	int rc = fsutil_readlinkat(w->dfd, p, &was);

	if (rc == 0 && renameat(w->dfd, tmp, w->dfd, p) < 0)
		rc = -errno;
	if (rc == 0)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: %s named %s; put back, naming %s", w->path,
			p, was, t);
	free(was);
	return rc;
}

static int relink_visible(struct writer *w, const char *p, const char *t)
{
	int rc = 0;

	if (unlinkat(w->dfd, WRITER_LINK_TMP, 0) < 0 && errno != ENOENT)
		rc = -errno;
	if (rc == 0 && symlinkat(t, w->dfd, WRITER_LINK_TMP) < 0)
		rc = -errno;
	if (rc == 0)
		rc = relink_from(w, WRITER_LINK_TMP, p, t);
	if (rc < 0)
		unlinkat(w->dfd, WRITER_LINK_TMP, 0);
	return rc;
}

/* The visible link of the top-level name `p`, made when it is absent and
 * put back when it names something else; -EEXIST when a file or
 * directory is in its way. */
static int link_visible(struct writer *w, const char *p)
{
	enum visible v;
	int rc = visible_state(w, p, &v);

	if (rc < 0 || v == VIS_OURS)
		return rc;
	if (v == VIS_TAKEN)
		return -EEXIST;
	char *t = fsutil_join(WRITER_DATA, p);
	if (t == NULL)
		return -ENOMEM;
	if (v == VIS_ASTRAY)
		rc = relink_visible(w, p, t);
	else if (symlinkat(t, w->dfd, p) < 0)
		rc = -errno;
	free(t);
	return rc;
}

/* Our visible link of the top-level name `p` removed; 0 when there is
 * none (a name that is not ours is left alone). */
static int unlink_visible(struct writer *w, const char *p)
{
	enum visible v;

	if (visible_state(w, p, &v) < 0 || v != VIS_OURS)
		return 0;
	return unlinkat(w->dfd, p, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* What a publish changes of the visible links that are `old`'s, as the
 * last sync left them: links for the top-level names of `s` that `old`
 * lacks, and ours of those `old` had and `s` lacks removed.  At a
 * million files and ten thousand top-level names, the full pass below
 * costs tens of thousands of system calls. */
static int sync_visible_changed(struct writer *w, const struct snapshot *s,
				const struct snapshot *old)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < s->n; i++) {
		const char *p = s->v[i].path;
		if (!strchr(p, '/') && !snapshot_find(old, p))
			rc = link_visible(w, p);
	}
	for (size_t i = 0; rc == 0 && i < old->n; i++) {
		const char *p = old->v[i].path;
		if (!strchr(p, '/') && !snapshot_find(s, p))
			rc = unlink_visible(w, p);
	}
	return rc;
}

/* One pass of making the visible links match `s`: creates the missing
 * ones, and removes links of ours whose names are not in `s` (whatever
 * left them: a name that went, a crash).  Returns the first error. */
static int sync_visible_once(struct writer *w, const struct snapshot *s,
			     char **err)
{
	int first = 0;

	for (size_t i = 0; i < s->n; i++) {
		const char *p = s->v[i].path;
		if (strchr(p, '/'))
			continue;
		int rc = link_visible(w, p);
		if (rc < 0 && first == 0)
			first = log_err_set(err, rc, "target %s: visible link %s: %s",
					    w->path, p, strerror(-rc));
	}
	DIR *d = fsutil_opendir_at(w->dfd, ".");
	if (d == NULL)
		return first ? first
			     : log_err_set(err, -errno, "target %s: %s", w->path,
					   strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (n[0] == '.' && (n[1] == '.' || n[1] == '\0'))
			continue; /* ., .. and reserved names */
		int rc = snapshot_find(s, n) ? 0 : unlink_visible(w, n);
		if (rc < 0 && first == 0)
			first = log_err_set(err, rc,
					    "target %s: removing visible link %s: "
					    "%s",
					    w->path, n, strerror(-rc));
	}
	closedir(d);
	return first;
}

/* After the swap the new generation is live whatever happens here; a
 * failed link is tried once more (the steps are idempotent), and a
 * failure that stays is returned so the publish is retried.  Only what
 * changed from `old` is looked at when the links are trusted to be
 * `old`'s, nothing when no top-level name came or went (`names`); every
 * name otherwise, and at a full check (`full`). */
static int sync_visible(struct writer *w, const struct snapshot *s,
			const struct snapshot *old, bool full, bool names,
			char **err)
{
	bool trusted = old && visible_trusted(w, full);
	int rc = !trusted ? -EAGAIN
		 : names  ? sync_visible_changed(w, s, old)
			  : 0;

	w->visible_synced = false;
	if (rc != 0)
		rc = sync_visible_once(w, s, NULL);
	if (rc != 0)
		rc = sync_visible_once(w, s, err);
	/* Trusted, the target was just seen to be ours alone. */
	w->visible_synced = rc == 0 && (trusted || dir_ours(w->dfd));
	return rc;
}

/* An error about the source file `src` of a snapshot: below its root, or
 * an absolute path (a follow_into directory's). */
static int src_err(char **err, int rc, const struct snapshot *s,
		   const char *src, const char *what)
{
	bool abs = src[0] == '/';

	return log_err_set(err, rc, "source %s%s%s: %s", abs ? "" : s->root,
			   abs ? "" : "/", src, what);
}

/* Opens the source file behind `e`: a descriptor, or -EAGAIN when the
 * file is gone or replaced since the walk (the snapshot is retried), or
 * another negative errno, each with its message in *err. */
static int open_source(const struct snapshot *s, const struct snap_entry *e,
		       char **err)
{
	const char *src = e->src ? e->src : e->path;
	/* O_NONBLOCK: a FIFO swapped in since the walk must not hang us. */
	int fd = snapshot_open_src(s, e->flags, src,
				   O_RDONLY | O_NOCTTY | O_NONBLOCK);

	if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR || fd == -ENXIO)
		return src_err(err, -EAGAIN, s, src, "changed while being read");
	if (fd < 0)
		return src_err(err, fd, s, src, strerror(-fd));
	return fd;
}

static bool same_stat(const struct snap_entry *e, const struct stat *st)
{
	return S_ISREG(st->st_mode) && (uint64_t)st->st_size == e->size &&
	       clock_ts_ns(&st->st_mtim) == e->mtime_ns &&
	       clock_ts_ns(&st->st_ctim) == e->ctime_ns &&
	       (uint64_t)st->st_ino == e->ino && (uint64_t)st->st_dev == e->dev;
}

/* Does the live copy of `e` hold the payload's bytes? */
static int same_data(struct writer *w, const struct snap_entry *e, bool *same,
		     char **err)
{
	int fd = fsutil_open_beneath(w->live_fd, e->path,
				     O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		*same = false;
		return 0;
	}
	int rc = fsutil_same_buffer(fd, e->data, (size_t)e->size, same);
	close(fd);
	if (rc < 0)
		return log_err_set(err, rc, "target %s: reading %s: %s",
				   w->path, e->path, strerror(-rc));
	return 0;
}

/* Does the live copy of `l` hold what the source file behind `e` holds? */
static int same_content(struct writer *w, const struct snapshot *s,
			const struct snap_entry *e, bool *same, char **err)
{
	if (e->flags & SNAP_F_DATA)
		return same_data(w, e, same, err);
	int a = open_source(s, e, err);
	if (a < 0)
		return a;
	int b = fsutil_open_beneath(w->live_fd, e->path, O_RDONLY | O_NOCTTY |
							      O_NONBLOCK);
	if (b < 0) {
		close(a);
		*same = false;
		return 0;
	}
	int rc = fsutil_same_content(a, b, same);
	close(a);
	close(b);
	if (rc < 0)
		return log_err_set(err, rc,
				   "comparing source %s/%s with its copy in "
				   "target %s: %s",
				   s->root, e->src ? e->src : e->path, w->path,
				   strerror(-rc));
	return 0;
}

/* Appends `path` to r->paths.  The buffer doubles from 256 bytes, so
 * its size follows from paths_len and is not kept. */
static int note_path(struct writer_result *r, const char *path)
{
	size_t n = strlen(path) + 1, cap = 256, want;

	while (cap < r->paths_len)
		cap *= 2;
	if (r->paths == NULL || r->paths_len + n > cap) {
		for (want = cap; want < r->paths_len + n; want *= 2)
			;
		char *p = realloc(r->paths, want);
		if (p == NULL)
			return -ENOMEM;
		r->paths = p;
	}
	memcpy(r->paths + r->paths_len, path, n);
	r->paths_len += n;
	return 0;
}

/* Whether a live file (*st) is still the one atomsync left there for
 * `o`: a file changed behind its back (written, chmod'ed, replaced) must
 * be written afresh from the source, never linked into the next
 * generation.  Its inode and modification time were recorded when it was
 * written; content written since moves the time, and a mode or owner
 * change shows in the mode and owner.  `gen` is the live generation,
 * whose owner its files have unless owner=/group= say otherwise. */
static bool intact(const struct stat *st, const struct snap_entry *o,
		   const struct stat *gen)
{
	if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size != o->size ||
	    (st->st_mode & 07777) != o->mode)
		return false;
	if (st->st_uid != (o->uid == SNAP_NO_ID ? gen->st_uid : o->uid) ||
	    st->st_gid != (o->gid == SNAP_NO_ID ? gen->st_gid : o->gid))
		return false;
	/* Unknown (a state that did not record it): content decides.  A
	 * time held at a limit proves nothing: any other far date equals
	 * it, and no ctime is recorded to tell them apart. */
	return o->t_ino == 0 ||
	       ((uint64_t)st->st_ino == o->t_ino &&
		!clock_ns_held(o->t_mtime_ns) &&
		clock_ts_ns(&st->st_mtim) == o->t_mtime_ns);
}

static bool live_intact(const struct writer *w, const struct snap_entry *o,
			const struct stat *gen)
{
	struct stat st;

	return w->live_fd >= 0 &&
	       fstatat(w->live_fd, o->path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       intact(&st, o, gen);
}

/* Whose files the live generation holds, unless owner or group say
 * otherwise: whoever wrote it.  Us, but for atomsyncd --status run by
 * another user than the daemon's. */
static void live_owner(const struct writer *w, struct stat *gen)
{
	if (w->live_fd < 0 || fstat(w->live_fd, gen) < 0) {
		gen->st_uid = geteuid();
		gen->st_gid = getegid();
	}
}

/* The full check's answer for the live file `o`: made ahead, or now. */
static bool live_checked(const struct writer *w, const struct snap_entry *o,
			 const struct stat *gen)
{
	if (w->live_ok)
		return w->live_ok[o - w->live->v];
	return live_intact(w, o, gen);
}

/* At most this many names more than the live generation holds are read
 * of the spare: it differs from that one only where a few publishes
 * changed it. */
#define SPARE_LISTED_MORE 4096

/* The live files it checks only when told before it started; else it
 * touches the spare's fields alone, while the writer goes on (see
 * writer_prepare()). */
static void *verify_worker(void *arg)
{
	struct writer *w = arg;

	if (w->verify_checks) {
		const struct snapshot *l = w->live;
		struct stat gen;
		live_owner(w, &gen);
		for (size_t i = 0; i < l->n; i++)
			w->live_ok[i] = l->v[i].type == SNAP_FILE &&
					live_intact(w, &l->v[i], &gen);
	}
	if (w->spare_fd >= 0) {
		(void)listing_read(w->spare_fd, w->spare_max, &w->verify_stop,
				   &w->spare_listed);
		close(w->spare_fd);
		w->spare_fd = -1;
	}
	return NULL;
}

/* Waits for a check made ahead; its answers stay until dropped. */
static void verify_join(struct writer *w)
{
	if (w->verifying)
		pthread_join(w->verify_thread, NULL);
	w->verifying = false;
}

/* The spare's listing as far as it got: the thread lists no further
 * name (a directory it was in is left out), and a build reads the
 * directories it did not list (prune()). */
static void verify_stop(struct writer *w)
{
	atomic_store_explicit(&w->verify_stop, true, memory_order_relaxed);
	verify_join(w);
}

static void verify_drop(struct writer *w)
{
	verify_stop(w);
	w->verify_checks = false;
	free(w->live_ok);
	w->live_ok = NULL;
	listing_free(w->spare_listed);
	w->spare_listed = NULL;
}

/* The spare (or, for want of one, the replaced generation it takes:
 * see newest_recyclable()), for a one-shot writer to read its
 * directories ahead of the publish that recycles it (a daemon mostly
 * knows where it differs, and keeps no listing of a million names beside
 * its record): -1 when there is none, or one another user could change,
 * which no publish recycles. */
static int spare_ahead(const struct writer *w)
{
	const char *spare = w->spare;
	struct stat st;

	if (!w->o.one_shot || w->live == NULL)
		return -1;
	if (spare == NULL && w->nretired > 0)
		spare = w->retired[newest_recyclable(w, 0)].name;
	if (spare == NULL)
		return -1;
	int fd = open_generation(w->dfd, spare);
	if (fd >= 0 && (fstat(fd, &st) < 0 || !fsutil_ours_alone(&st))) {
		close(fd);
		fd = -1;
	}
	return fd < 0 ? -1 : fd;
}

void writer_verify_start(struct writer *w)
{
	verify_drop(w);
	if (w->verify_live && w->live && w->live_fd >= 0 && w->live->n > 0)
		w->live_ok = malloc(w->live->n);
	w->spare_fd = spare_ahead(w);
	if (w->live_ok == NULL && w->spare_fd < 0)
		return;
	if (w->spare_fd >= 0)
		w->spare_max = w->live->n + w->live->n / 8 + SPARE_LISTED_MORE;
	w->verify_checks = w->live_ok != NULL;
	atomic_store_explicit(&w->verify_stop, false, memory_order_relaxed);
	w->verifying = thread_start(&w->verify_thread, verify_worker, w) == 0;
	if (!w->verifying) {
		/* Checked as the publish goes, and read then. */
		w->verify_checks = false;
		free(w->live_ok);
		w->live_ok = NULL;
		if (w->spare_fd >= 0)
			close(w->spare_fd);
		w->spare_fd = -1;
	}
}

/* A line each for the first few a publish finds: a live generation
 * removed by hand would otherwise give one for every file. */
static void warn_changed_in_live(struct writer *w, const char *path)
{
	if (w->o.quiet || w->warned_live > WARN_LIVE_MAX)
		return;
	if (w->warned_live++ < WARN_LIVE_MAX)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: %s was changed in the live generation; "
			"writing it afresh from the source",
			w->path, path);
	else
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: more files were changed in the live "
			"generation; writing them afresh without a line each",
			w->path);
}

/* Counts a path as added, changed or removed (`verb` says which, for a
 * dry run's line). */
static int note_change(struct writer *w, struct writer_result *r,
		       size_t *count, const char *verb, const char *path)
{
	(*count)++;
	if (note_path(r, path) < 0)
		return -ENOMEM;
	if (w->o.dry_run && !w->o.quiet)
		log_msg(LOG_LVL_INFO, w->name, "dry run: would %s %s", verb,
			path);
	return 0;
}

/* Whether the file `e` differs from its live copy `o`; *link when it
 * does not and the live copy may be linked forward. */
static int diff_file(struct writer *w, struct snapshot *s,
		     struct snap_entry *e, const struct snap_entry *o,
		     const struct stat *gen, struct writer_result *r,
		     bool *changed, bool *link, char **err)
{
	/* Every file, when a full check is due; else those linked forward
	 * are checked as they are (build_entry). */
	if (w->verify_live && !live_checked(w, o, gen)) {
		warn_changed_in_live(w, e->path);
		*changed = true;
		return 0;
	}
	*changed = o->size != e->size;
	if (!*changed && o->ino != 0 && o->ino == e->ino && o->dev == e->dev &&
	    o->mtime_ns == e->mtime_ns && o->ctime_ns == e->ctime_ns &&
	    !(o->flags & SNAP_F_RACY)) {
		/* A write since o was recorded would have moved the times. */
		*link = true;
		if (e->flags & SNAP_F_RACY)
			e->flags &= (uint8_t)~SNAP_F_RACY;
	} else if (!*changed) {
		struct timespec now;
		bool same = false;
		clock_gettime(CLOCK_REALTIME, &now);
		int rc = same_content(w, s, e, &same, err);
		if (rc < 0)
			return rc;
		r->compared++;
		*link = same;
		*changed = !same;
		/* Its bytes were read now: what they were at its times. */
		if (same)
			snapshot_mark_racy(e, &now);
	}
	/* Linked: the same file as before.  Written only when it says
	 * otherwise: an entry a read over the record took from it is on a
	 * page that is still the record's until written. */
	if (e->t_ino != o->t_ino || e->t_mtime_ns != o->t_mtime_ns) {
		e->t_ino = o->t_ino;
		e->t_mtime_ns = o->t_mtime_ns;
	}
	return 0;
}

/* Whether `e` records an entry owned by root or `euid` that nobody else
 * can write, as fsutil_ours_alone() tells of one looked at. */
static bool recorded_ours(const struct snap_entry *e, uid_t euid)
{
	return !(e->mode & 0022) &&
	       (e->uid == SNAP_NO_ID || e->uid == 0 || e->uid == euid);
}

static uint8_t class_of(const struct snap_entry *e, uid_t euid)
{
	uint8_t c = e->type == SNAP_DIR ? CLS_DIR
		    : (e->flags & SNAP_F_RACY) || e->ino == 0 ? CLS_LOOK
							     : CLS_LINK;
	return (uint8_t)(c | (recorded_ours(e, euid) ? CLS_OURS : 0));
}

/* Makes w->cls the classes of the live record, from its entries unless
 * it is already. */
static int live_classes(struct writer *w)
{
	const struct snapshot *l = w->live;
	uid_t euid = geteuid();

	if (w->cls.id == l->id && w->cls.v)
		return 0;
	classes_fini(&w->cls);
	if ((w->cls.v = malloc(l->n ? l->n : 1)) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		w->cls.v[i] = class_of(&l->v[i], euid);
		if (l->v[i].type == SNAP_FILE) {
			w->cls.files++;
			w->cls.bytes += l->v[i].size;
		}
	}
	w->cls.id = l->id;
	return 0;
}

/* The classes of s, found by diff(), become the live record's once s
 * is. */
static void classes_adopt(struct writer *w, struct classes *c)
{
	if (w->live == NULL || c->id != w->live->id)
		return;
	classes_fini(&w->cls);
	w->cls = *c;
	*c = (struct classes){0};
}

/* From s->v[i] on, the copies of the live record (l->v[j] on) whose
 * action their class alone tells: a directory as it was, a file linked
 * forward, as diff_file() would find them without a look at the live
 * entries, which they equal (see same_copies).  Not a file to compare by
 * content (CLS_LOOK) nor any file at a full check.  Their entries are
 * not read: at a million, that costs tens of milliseconds a publish.
 * Their classes are copied into `cls`.  Returns how many. */
static size_t copies_known(const struct writer *w, const struct snapshot *s,
			   size_t i, size_t j, size_t *run, uint8_t *act,
			   uint8_t *cls)
{
	size_t n = w->same_copies == s->id && !w->verify_live && i < s->n
			   ? snapshot_copied(s, i, w->live, j, run)
			   : 0;
	size_t k = 0;

	for (; k < n; k++) {
		uint8_t c = w->cls.v[j + k] & CLS_KIND;
		if (c == CLS_LOOK)
			break;
		act[i + k] = c; /* ACT_DIR or ACT_LINK */
	}
	/* Up to the one to compare, not the whole run: a run with many
	 * such comes back here once for each. */
	memcpy(cls + i, w->cls.v + j, k);
	return k;
}

/* Regular files and their bytes, among the entries diff() looked at one
 * by one. */
struct tally {
	uint64_t files, bytes;
};

static void tally_add(struct tally *t, const struct snap_entry *e)
{
	if (e->type == SNAP_FILE) {
		t->files++;
		t->bytes += e->size;
	}
}

/* What the entry p->s->v[i] needs: added when `o`, its live entry, is
 * NULL, else compared with it. */
static int diff_entry(struct writer *w, struct writer_pending *p, size_t i,
		      const struct snap_entry *o, const struct stat *gen,
		      struct writer_result *r, char **err)
{
	struct snap_entry *e = &p->s->v[i];
	int rc = 0;

	p->act[i] = e->type == SNAP_DIR ? ACT_DIR : ACT_COPY;
	if (o == NULL) {
		p->names |= !strchr(e->path, '/');
		return note_change(w, r, &r->added, "add", e->path);
	}
	bool changed = o->type != e->type || o->mode != e->mode ||
		       o->uid != e->uid || o->gid != e->gid;
	bool link = false;
	if (!changed && e->type == SNAP_FILE)
		rc = diff_file(w, p->s, e, o, gen, r, &changed, &link, err);
	if (link)
		p->act[i] = ACT_LINK;
	if (rc == 0 && changed)
		rc = note_change(w, r, &r->changed, "update", e->path);
	return rc;
}

/* Decides, entry by entry, what the new generation needs, and p->cls;
 * sets p->names when a top-level name came or went.  The files of the
 * copies it does not look at are the live record's, less those of the
 * live entries it did. */
static int diff(struct writer *w, struct writer_pending *p,
		struct writer_result *r, char **err)
{
	struct snapshot *s = p->s;
	const struct snapshot *l = w->live;
	uint8_t *act = p->act, *cls = p->cls.v;
	struct tally ts = {0}, tl = {0};
	size_t i = 0, j = 0, run = 0;
	uid_t euid = geteuid();
	struct stat gen;
	int rc = 0;

	live_owner(w, &gen);
	while (rc == 0 && (i < s->n || j < l->n)) {
		size_t k = copies_known(w, s, i, j, &run, act, cls);
		i += k;
		j += k;
		if (i == s->n && j == l->n)
			break;
		int c = i == s->n   ? 1
			: j == l->n ? -1
				    : snapshot_merge_cmp(s, i, l, j, &run);
		if (c > 0) {
			tally_add(&tl, &l->v[j]);
			p->names |= !strchr(l->v[j].path, '/');
			rc = note_change(w, r, &r->removed, "remove",
					 l->v[j++].path);
			continue;
		}
		rc = diff_entry(w, p, i++, c == 0 ? &l->v[j++] : NULL, &gen,
				r, err);
		tally_add(&ts, &s->v[i - 1]);
		if (c == 0)
			tally_add(&tl, &l->v[j - 1]);
		cls[i - 1] = class_of(&s->v[i - 1], euid);
	}
	r->files = ts.files + w->cls.files - tl.files;
	r->bytes = ts.bytes + w->cls.bytes - tl.bytes;
	p->cls.files = r->files;
	p->cls.bytes = r->bytes;
	p->cls.id = s->id;
	return rc;
}

/* Creates "..YYYY_MM_DD_HH_MM_SS.<ns>" (UTC) with a name no other
 * generation has: a new directory, or `from` renamed. */
static int make_generation(struct writer *w, const char *from, char **gen)
{
	struct timespec ts;
	struct tm tm;
	char buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, sizeof(buf), "..%Y_%m_%d_%H_%M_%S.", &tm);
	for (long k = 0; k < 1000; k++) {
		snprintf(buf + n, sizeof(buf) - n, "%09ld",
			 (ts.tv_nsec + k) % 1000000000L);
		int rc = from ? renameat2(w->dfd, from, w->dfd, buf,
					  RENAME_NOREPLACE)
			      : mkdirat(w->dfd, buf, 0700);
		if (rc == 0) {
			*gen = strdup(buf);
			if (*gen == NULL) {
				fsutil_rmtree(w->dfd, buf);
				return -ENOMEM;
			}
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

#define LEVEL_ROOT SIZE_MAX

struct level {
	const char *path; /* the directory's path in the generation */
	size_t len;
	size_t idx;	  /* its entry in the snapshot, LEVEL_ROOT: the top */
	int nfd, ofd;	  /* new and live generation, ofd -1 if absent */
	uint32_t mode;	  /* the mode it must have */
	uint32_t cur;	  /* the mode it has */
	bool recycled;	  /* kept from a replaced generation: holds entries */
	bool dirty;	  /* changed: to be flushed */
	bool new_ours;	  /* only we or root could have changed its entries
			     in the new (recycled) generation, nor those of
			     any directory above it: see dir_ours() */
	bool live_ours;	  /* the same, in the live generation */
	bool same;	  /* recycled and known to hold what the new one
			     must (see level_same()) */
	size_t end;	  /* past its last entry (see level_end()), 0: not
			     known yet */
	struct stat found; /* as it was before it was taken over (chown,
			      chmod): who could have put what it holds */
};

struct build {
	struct writer *w;
	struct snapshot *s;
	uint8_t *act;
	struct writer_result *r;
	struct problems *pb;
	char **err;
	struct stat gen;  /* the live generation, for its owner */
	bool checked;	  /* the diff checked every live file already */
	bool standby;	  /* see struct writer_pending: links, or fails */
	bool unflushed;	  /* recycled from a standby that was never
			     flushed: every directory is flushed */
	const struct pathset *left; /* the spare's directories that may hold
				       what was never flushed; NULL: none */
	bool learned;	  /* a standby recorded what a live file is */
	const atomic_bool *stop; /* set: a standby stops where it is */
	uid_t euid;	  /* ours, asked once (a system call each time) */
	gid_t egid;
	const uint8_t *cls;	      /* the classes of s's entries */
	const struct pathset *differ; /* see struct writer_pending */
	struct pathset *changed;      /* the same */
	pthread_mutex_t *lock;	      /* guards `changed` when two build */
	/* With two threads: set by the first to fail, for the other to stop
	 * (NULL: one); `half`, the second, which leaves its warnings to the
	 * first (the caller's, whose log they go to). */
	atomic_bool *failed;
	bool half;
	int naming_refused; /* with two building, why either set
			       named_only, for the first to log once both
			       are done (-errno; 0: not) */
	struct level *lv;
	size_t depth, cap;
	size_t skip;	  /* entries after the one built, kept unread */
	size_t subtree_n; /* the entries of the last subtree looked at */
	size_t to;	  /* past the last entry of this build's range */
	/* The entries of the directories in `differ`, by index and in
	 * order (see same_run()); NULL: not known, or none. */
	size_t *marks;
	size_t marks_n;
	char *pbuf;	  /* a path being looked up (see level_join()) */
	size_t pcap;
	struct twins *twins; /* guarded by `lock` when two build */
};

/* The files a build copied that the source may hold under other names
 * too (more than one link, or reached through a link to a directory,
 * inside the source or followed), by source identity: the entry of s
 * each was copied for, plus one (0: a free slot).  Open addressing; cap
 * is a power of two. */
struct twin {
	uint64_t dev, ino;
	size_t i;
};

struct twins {
	struct twin *v;
	size_t n, cap;
};

/* What the two threads of a build share is taken under b->lock (none
 * when one builds). */
static void build_lock(const struct build *b)
{
	if (b->lock)
		pthread_mutex_lock(b->lock);
}

static void build_unlock(const struct build *b)
{
	if (b->lock)
		pthread_mutex_unlock(b->lock);
}

/* The owner and group the directory or file `e` is to have. */
static void owner_of(const struct build *b, const struct snap_entry *e,
		     uid_t *u, gid_t *g)
{
	*u = e->uid == SNAP_NO_ID ? b->euid : e->uid;
	*g = e->gid == SNAP_NO_ID ? b->egid : e->gid;
}

/* Whether only we or root could ever have written the file `e` records:
 * made by atomsync with an owner of ours and a mode that lets nobody
 * else write, it can change only by root's hand (a full check, at each
 * re-scan, catches that).  Its bytes need no check before it is linked
 * or kept, in a directory whose names nobody else can change either. */
static bool only_ours(const struct build *b, const struct snap_entry *e)
{
	/* b->euid: geteuid() per entry would cost a system call each. */
	return e->type == SNAP_FILE && recorded_ours(e, b->euid);
}

/* Whether a recycled directory holds what the new generation needs
 * there without a look at it: no generation since the spare changed
 * anything in it, nor does the new one, and nobody but us or root could
 * have.  Not at a full check, which looks at everything. */
static bool level_same(const struct build *b, const struct level *l)
{
	return l->recycled && l->new_ours && b->differ && !b->checked &&
	       !pathset_has(b->differ, l->path);
}

static int close_level(struct build *b)
{
	struct level *l = &b->lv[--b->depth];
	int rc = 0;

	if (l->mode != l->cur && fchmod(l->nfd, l->mode) < 0)
		rc = -errno;
	if (rc < 0)
		log_err_set(b->err, rc, "target %s: directory %s: %s", b->w->path,
			l->path, strerror(-rc));
	/* A recycled directory that did not change needs no flush. */
	if (l->recycled && !l->dirty && l->mode == l->cur && !b->unflushed &&
	    l->idx != LEVEL_ROOT && !(b->left && pathset_has(b->left, l->path)))
		b->act[l->idx] = ACT_KEEP;
	close(l->nfd);
	if (l->ofd >= 0)
		close(l->ofd);
	return rc;
}

/* Gives a file just written its owner and mode, and records what it is
 * now, to tell later whether someone changed it. */
static int finish_file(struct build *b, struct snap_entry *e, int out)
{
	struct stat st;

	if ((e->uid != SNAP_NO_ID || e->gid != SNAP_NO_ID) &&
	    fchown(out, e->uid, e->gid) < 0)
		return log_err_set(b->err, -errno, "target %s: chown %s: %s",
				   b->w->path, e->path, strerror(errno));
	if (fstat(out, &st) < 0 ||
	    ((st.st_mode & 07777) != e->mode && fchmod(out, e->mode) < 0))
		return log_err_set(b->err, -errno, "target %s: chmod %s: %s",
				   b->w->path, e->path, strerror(errno));
	e->t_ino = (uint64_t)st.st_ino;
	e->t_mtime_ns = clock_ts_ns(&st.st_mtim);
	return 0;
}

/* The mode a file is made with under its name.  In a new directory,
 * where no one but us can be, its own (less what the umask takes, which
 * finish_file() puts back), which saves a chmod a file; in a recycled
 * one, where a reader may be, or where the file is to be given to
 * another owner, private until complete. */
static mode_t new_mode(const struct snap_entry *e, const struct level *l)
{
	if (l->recycled || e->uid != SNAP_NO_ID || e->gid != SNAP_NO_ID)
		return 0600;
	return e->mode & 0777;
}

/* A new file to write the entry `name` of the directory of `l` into.
 * One kept from a replaced generation may still have a reader in it (one
 * that holds it past its grace period, or that a --once run recycles
 * within it), so the file is made unnamed (*unnamed) and named once
 * complete (see file_done()): such a reader finds the name missing, or a
 * complete file, never one half written.  Where the file system makes no
 * unnamed file, and in a new directory, under its name at once. */
static int new_file(struct build *b, const struct snap_entry *e,
		    const struct level *l, const char *name, bool *unnamed)
{
	int fd = l->recycled && !b->w->named_only ? fsutil_open_unnamed(l->nfd)
						  : -EOPNOTSUPP;

	*unnamed = fd >= 0;
	if (fd == -EOPNOTSUPP) {
		fd = openat(l->nfd, name,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    new_mode(e, l));
		if (fd < 0)
			fd = -errno;
	}
	if (fd < 0)
		return log_err_set(b->err, fd, "target %s: creating %s: %s",
				   b->w->path, e->path, strerror(-fd));
	return fd;
}

/* What file_done() returns when a file written unnamed cannot be named:
 * the caller writes it again, under its name. */
#define NAMING_REFUSED (-ENOTNAM)

static int remove_entry(struct build *b, struct level *l, const char *n,
			const char *path);

/* A name no source entry has (see snapshot.c's layout_name()). */
#define NAMING_PROBE "..atomsync.probe"

/* Whether naming a file written unnamed is refused as such (as a file
 * named in the top of the generation, private to us while it is written,
 * shows): a refusal in a directory another user can write may be of
 * their making (they removed it, say), and a probe that cannot even be
 * made (no inode left: they can use them up) tells nothing; neither may
 * turn naming off for good. */
static bool naming_refused(const struct build *b)
{
	int top = b->lv[0].nfd, fd = fsutil_open_unnamed(top);

	if (fd < 0)
		return false;
	int rc = fsutil_link_unnamed(fd, top, NAMING_PROBE);
	close(fd);
	if (rc == 0)
		(void)unlinkat(top, NAMING_PROBE, 0);
	return rc == -ENOENT || rc == -EPERM || rc == -EACCES;
}

/* On the thread a build's log lines go to (see thread.h). */
static void warn_named_only(struct writer *w, int rc)
{
	log_msg(LOG_LVL_WARN, w->name,
		"target %s: cannot name a file written unnamed (%s): mount "
		"/proc; meanwhile changed files are written under their names, "
		"where a reader still in a recycled generation may find one "
		"half written",
		w->path, strerror(-rc));
}

/* Names the complete unnamed file `out`; where that is refused for want
 * of /proc and of CAP_DAC_READ_SEARCH, files are written under their
 * names from then on (NAMING_REFUSED). */
static int name_file(struct build *b, const struct snap_entry *e,
		     struct level *l, const char *name, int out)
{
	int rc = fsutil_link_unnamed(out, l->nfd, name);

	/* Taken while the file was written, in a directory another user
	 * can write: cleared (or moved aside) once, as any name is. */
	if (rc == -EEXIST && !l->new_ours) {
		rc = remove_entry(b, l, name, e->path);
		if (rc == 0)
			rc = fsutil_link_unnamed(out, l->nfd, name);
	}

	if ((rc == -ENOENT || rc == -EPERM || rc == -EACCES) &&
	    naming_refused(b)) {
		b->w->named_only = true;
		/* Two building: said once, by the first, once both are done. */
		if (b->lock)
			b->naming_refused = rc;
		else
			warn_named_only(b->w, rc);
		return NAMING_REFUSED;
	}
	if (rc < 0)
		log_err_set(b->err, rc, "target %s: naming %s: %s", b->w->path,
			    e->path, strerror(-rc));
	return rc;
}

/* The file `out`, `copied` bytes written in full and given its owner
 * and mode (finish_file()), closed and counted; named `name` first when
 * it is unnamed.  `rc`: how the writing went (nothing is named after a
 * failure). */
static int file_done(struct build *b, const struct snap_entry *e,
		     struct level *l, const char *name, int out,
		     bool unnamed, uint64_t copied, int rc)
{
	if (rc == 0 && unnamed)
		rc = name_file(b, e, l, name, out);
	if (close(out) < 0 && rc == 0)
		rc = log_err_set(b->err, -errno, "target %s: writing %s: %s",
				 b->w->path, e->path, strerror(errno));
	if (rc == 0) {
		b->r->copied++;
		b->r->bytes_copied += copied;
	}
	return rc;
}

/* Writes a payload's bytes as the new file `name`. */
static int write_data(struct build *b, struct snap_entry *e,
		      struct level *l, const char *name)
{
	bool unnamed;
	int rc, out = new_file(b, e, l, name, &unnamed);

	if (out < 0)
		return out;
	rc = fsutil_write_all(out, e->data, (size_t)e->size);
	if (rc < 0)
		log_err_set(b->err, rc, "target %s: writing %s: %s", b->w->path,
			    e->path, strerror(-rc));
	if (rc == 0)
		rc = finish_file(b, e, out);
	rc = file_done(b, e, l, name, out, unnamed, e->size, rc);
	return rc == NAMING_REFUSED ? write_data(b, e, l, name) : rc;
}

static int copy_fail(struct build *b, int in, const struct snap_entry *e,
		     int rc)
{
	char c;

	/* Tell a read error from a write error by trying to read. */
	if (pread(in, &c, 1, 0) < 0)
		return src_err(b->err, rc, b->s, e->src ? e->src : e->path,
			       strerror(-rc));
	return log_err_set(b->err, rc, "target %s: writing %s: %s", b->w->path,
			   e->path, strerror(-rc));
}

static size_t twin_slot(const struct twins *t, uint64_t dev, uint64_t ino)
{
	size_t k = (size_t)((ino * 0x9e3779b97f4a7c15u) ^ dev) & (t->cap - 1);

	while (t->v[k].i && (t->v[k].dev != dev || t->v[k].ino != ino))
		k = (k + 1) & (t->cap - 1);
	return k;
}

static int twins_grow(struct twins *t)
{
	struct twins g = {.cap = t->cap ? t->cap * 2 : 64};

	g.v = calloc(g.cap, sizeof(*g.v));
	if (g.v == NULL)
		return -ENOMEM;
	for (size_t k = 0; k < t->cap; k++)
		if (t->v[k].i)
			g.v[twin_slot(&g, t->v[k].dev, t->v[k].ino)] = t->v[k];
	g.n = t->n;
	free(t->v);
	*t = g;
	return 0;
}

/* Entry i of b->s is the copy of the source file `st` names: the one its
 * other names link to from now on.  Out of memory, they are copied.
 * Under build_lock(), as twin_of() and the copy between them are. */
static void twin_note(struct build *b, size_t i, const struct stat *st)
{
	struct twins *t = b->twins;

	if (2 * (t->n + 1) <= t->cap || twins_grow(t) == 0) {
		struct twin *v = &t->v[twin_slot(t, (uint64_t)st->st_dev,
						 (uint64_t)st->st_ino)];
		t->n += v->i == 0;
		*v = (struct twin){(uint64_t)st->st_dev, (uint64_t)st->st_ino,
				   i + 1};
	}
}

/* The entry this build copied the source file `st` for, when it stands
 * for `e` as well: the same file as the snapshot saw both, to be given
 * the same mode and owner.  NULL otherwise. */
static const struct snap_entry *twin_of(struct build *b,
					const struct snap_entry *e,
					const struct stat *st)
{
	const struct snap_entry *f = NULL;
	struct twins *t = b->twins;

	if (t->cap) {
		size_t i = t->v[twin_slot(t, (uint64_t)st->st_dev,
					  (uint64_t)st->st_ino)].i;
		f = i ? &b->s->v[i - 1] : NULL;
	}
	if (f == NULL || f == e || f->t_ino == 0 || f->size != e->size ||
	    f->mode != e->mode || f->uid != e->uid || f->gid != e->gid ||
	    f->mtime_ns != e->mtime_ns || f->ctime_ns != e->ctime_ns)
		return NULL;
	return f;
}

/* Links `name` to the copy this build made of the same source file for
 * another of its names (twin_of()), so that a generation holds a file's
 * data once, as the source does: a user who writes the source cannot
 * make root write a copy of one file of theirs for each of a million
 * names.  That copy is opened by its path in the generation without a
 * link on the way, and must still be the very file written.  1 when
 * there is none to link to (or it has as many links as the file system
 * allows): the caller copies. */
static int link_twin(struct build *b, struct snap_entry *e, struct level *l,
		     const char *name, const struct stat *st)
{
	const struct snap_entry *f = twin_of(b, e, st);
	struct stat fs;

	if (f == NULL)
		return 1;
	int fd = fsutil_open_beneath(b->lv[0].nfd, f->path, O_PATH);
	if (fd < 0)
		return 1;
	/* On the generation's file system, as atomsync left it (inode and
	 * times, not only the number: one freed is given out again). */
	int rc = fstat(fd, &fs) == 0 && fs.st_dev == b->lv[0].found.st_dev &&
				 intact(&fs, f, &b->gen)
			 ? fsutil_link_unnamed(fd, l->nfd, name)
			 : 1;
	if (rc == -EEXIST && !l->new_ours) {
		rc = remove_entry(b, l, name, e->path);
		if (rc == 0)
			rc = fsutil_link_unnamed(fd, l->nfd, name);
	}
	close(fd);
	if (rc != 0)
		return 1;
	e->t_ino = f->t_ino;
	e->t_mtime_ns = f->t_mtime_ns;
	b->r->linked++;
	return 0;
}

/* Streams the open source file `in` into a new `name` in the directory
 * of `l`, owned and with the mode the entry says.  The file must still
 * be the one the snapshot saw, before and after the copy: otherwise it
 * was being written and the copy may be torn. */
static int copy_new(struct build *b, struct snap_entry *e, int in,
		    struct level *l, const char *name)
{
	const char *src = e->src ? e->src : e->path;
	uint64_t copied = 0;
	struct stat st;
	bool unnamed;
	int rc, out = new_file(b, e, l, name, &unnamed);

	if (out < 0)
		return out;
	rc = fsutil_copy(in, out, e->size, flushes(b->w), &copied);
	if (rc < 0)
		rc = copy_fail(b, in, e, rc);
	else if (copied != e->size || fstat(in, &st) < 0 || !same_stat(e, &st))
		rc = src_err(b->err, -EAGAIN, b->s, src,
			     "changed while being read");
	else
		rc = finish_file(b, e, out);
	return file_done(b, e, l, name, out, unnamed, copied, rc);
}

/* `name` from the source file open as `in`, the snapshot's still: a link
 * to the copy made for another of its names (link_twin()), else a copy
 * of its own (copy_new()). */
static int copy_into(struct build *b, struct snap_entry *e, int in,
		     struct level *l, const char *name)
{
	const char *src = e->src ? e->src : e->path;
	struct stat st;
	int rc;

	if (fstat(in, &st) < 0 || !same_stat(e, &st))
		return src_err(b->err, -EAGAIN, b->s, src,
			       "changed while being read");
	bool twins = st.st_nlink > 1 || e->src != NULL ||
		     (e->flags & (SNAP_F_FOLLOW | SNAP_F_EXTERNAL));
	/* A file with other names is looked up, copied and noted under the
	 * lock: the two threads of a build would otherwise each copy it. */
	if (twins)
		build_lock(b);
	bool linked = twins && link_twin(b, e, l, name, &st) == 0;
	rc = linked ? 0 : copy_new(b, e, in, l, name);
	if (rc == 0 && twins && !linked)
		twin_note(b, (size_t)(e - b->s->v), &st);
	if (twins)
		build_unlock(b);
	/* Again under its name: from the start, as the snapshot saw it. */
	if (rc == NAMING_REFUSED)
		rc = lseek(in, 0, SEEK_SET) < 0
			     ? src_err(b->err, -errno, b->s, src, strerror(errno))
			     : copy_into(b, e, in, l, name);
	return rc;
}

static int copy_file(struct build *b, struct snap_entry *e,
		     struct level *l, const char *name)
{
	if (e->flags & SNAP_F_DATA)
		return write_data(b, e, l, name);
	int in = open_source(b->s, e, b->err);

	if (in == -EACCES || in == -EPERM) {
		/* Reported with the others once the tree is done. */
		log_list_add(&b->pb->unreadable, "%s (%s)", e->path,
			     strerror(-in));
		return 0;
	}
	if (in < 0)
		return in;
	int rc = copy_into(b, e, in, l, name);
	close(in);
	return rc;
}

/* A file the recycled directory holds as the live one does (the very
 * inode, as the directory's entry says), where nobody but us could have
 * changed either: kept without a look at the file itself. */
static void keep_known(struct build *b, const struct level *l,
		       struct snap_entry *e, uint64_t ino, unsigned char type)
{
	size_t i = (size_t)(e - b->s->v);

	if (b->w->exact_dino && l->new_ours && l->live_ours &&
	    b->act[i] == ACT_LINK && type == DT_REG && e->t_ino != 0 &&
	    ino == e->t_ino && only_ours(b, e)) {
		b->act[i] = ACT_KEEP;
		b->r->linked++;
	}
}

/* The path of `name` in the directory of level l, in b's buffer. */
static const char *level_join(struct build *b, const struct level *l,
			      const char *name)
{
	size_t n = strlen(name), need = l->len + 1 + n + 1;

	if (need > b->pcap) {
		char *p = realloc(b->pbuf, need);
		if (p == NULL)
			return NULL;
		b->pbuf = p;
		b->pcap = need;
	}
	char *o = b->pbuf;
	if (l->len) {
		memcpy(o, l->path, l->len);
		o += l->len;
		*o++ = '/';
	}
	memcpy(o, name, n + 1);
	return b->pbuf;
}

/* The entry `n` of the recycled directory of `l`, which another user
 * can write (owner), or that holds what they put there (a directory of
 * theirs in a top-level one gone from the source, say), moved whole
 * into WRITER_ASIDE, out of every generation: it may hold a directory
 * that is not theirs nor ours, which is never gone into
 * (fsutil_may_enter()), nor removed or changed.  Whatever is at `n` by
 * then is what goes, under a name no other takes; what it was is looked
 * at once it is there, where nobody else can reach it.  0, or a negative
 * errno when it cannot be moved (-EPERM: WRITER_ASIDE is not ours). */
static int move_aside(struct build *b, const struct level *l, const char *n,
		      const char *path)
{
	struct timespec now;
	struct stat st;
	char name[64];
	int rc = -EEXIST, afd = aside_open(b->w->dfd);

	clock_gettime(CLOCK_REALTIME, &now);
	for (unsigned k = 0; afd >= 0 && rc == -EEXIST && k < 16; k++) {
		snprintf(name, sizeof(name), "%lld.%09ld.%u",
			 (long long)now.tv_sec, now.tv_nsec, k);
		rc = renameat2(l->nfd, n, afd, name, RENAME_NOREPLACE) == 0
			     ? 0
			     : -errno;
	}
	if (afd < 0 || rc < 0) {
		if (afd >= 0)
			close(afd);
		return afd < 0 ? afd : rc;
	}
	char uid[24] = "?";
	if (fstatat(afd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		st.st_mode = 0;
	else
		snprintf(uid, sizeof(uid), "%u", (unsigned)st.st_uid);
	log_list_add(&b->pb->aside, "%s (%s of uid %s, now %s)", path,
		     S_ISDIR(st.st_mode)   ? "a directory"
		     : S_ISLNK(st.st_mode) ? "a symbolic link"
		     : S_ISREG(st.st_mode) ? "a file"
					   : "an entry",
		     uid, name);
	close(afd);
	return 0;
}

/* Removes the entry `n` of the recycled directory of `l` (`path` in
 * the generation, NULL: made from `n` when it is told), or moves it
 * aside (move_aside()) when what it holds is not ours to remove; also
 * to clear a name for a new entry.  0 when it was not there either. */
static int remove_entry(struct build *b, struct level *l, const char *n,
			const char *path)
{
	int rc = fsutil_rmtree_in(l->nfd, &l->found, n);

	l->dirty = true;
	if (rc == 0)
		return 0;
	if (path == NULL && (path = level_join(b, l, n)) == NULL)
		path = n;
	/* Others may have written it, or where it is, since owner or
	 * dir_mode let them (a reload may have taken those away). */
	bool others = others_write(b->w) || !fsutil_ours_alone(&l->found) ||
		      others_dir_at(l->nfd, n);
	if (not_ours_to_remove(rc, others, l->nfd, n) &&
	    move_aside(b, l, n, path) == 0)
		return 0;
	return log_err_set(b->err, rc, "target %s: removing %s: %s",
			   b->w->path, path, strerror(-rc));
}

/* The name `n` of a recycled directory, which the snapshot holds as
 * `e`: kept when keep_known() can tell it is as it must be.  Without
 * one, it is removed (whatever it is: what left the source, or what
 * someone put there while the generation was live). */
static int prune_name(struct build *b, struct level *l, const char *n,
		      struct snap_entry *e, uint64_t ino, unsigned char type)
{
	if (e) {
		keep_known(b, l, e, ino, type);
		return 0;
	}
	return remove_entry(b, l, n, NULL);
}

/* The directory of level l as the check thread read it ahead (see
 * spare_ahead()), when that stands for a read now: the very directory,
 * which nobody but us or root could have changed since (its mode and
 * owner say so now, and only they could have changed those). */
static const struct listing_dir *listed(const struct build *b,
					const struct level *l)
{
	const struct listing_dir *d =
		l->new_ours ? listing_find(b->w->spare_listed, l->path) : NULL;

	return d && d->dev == (uint64_t)l->found.st_dev &&
			       d->ino == (uint64_t)l->found.st_ino
		       ? d
		       : NULL;
}

/* prune() from the listing `d` of l's directory, in `li`: its names are
 * in order, and each is looked for where the last one was found
 * (snapshot_find_next()): a root of ten thousand directories is not ten
 * thousand bisections of a million entries. */
static int prune_names(struct build *b, struct level *l,
		       const struct listing *li, const struct listing_dir *d)
{
	struct snap_cursor cur = {0};
	int rc = 0;

	for (size_t k = 0; rc == 0 && k < d->n; k++) {
		const struct listing_name *ln = &li->names[d->first + k];
		const char *n = listing_name(li, ln);
		const char *path = level_join(b, l, n);
		rc = path ? prune_name(b, l, n,
				       snapshot_find_next(b->s, path, &cur),
				       ln->ino, ln->type)
			  : -ENOMEM;
	}
	return rc;
}

/* Removes the names of a recycled directory that the snapshot does not
 * hold, and keeps what keep_known() can tell is as it must be: from what
 * the check thread listed of it ahead (listed()), else read now. */
static int prune(struct build *b, struct level *l)
{
	const struct listing_dir *ld = listed(b, l);
	struct listing *own = NULL;
	int rc = 0;

	if (ld == NULL && (rc = listing_read_one(l->nfd, &own)) < 0)
		return log_err_set(b->err, rc, "target %s: reading %s: %s",
				   b->w->path, l->len ? l->path : ".",
				   strerror(-rc));
	rc = own ? prune_names(b, l, own, &own->dirs[0])
		 : prune_names(b, l, b->w->spare_listed, ld);
	listing_free(own);
	return rc;
}

/* The directory `st` found at e's path, which could not be moved aside
 * (`rc`), is not one atomsync made (see fsutil_may_enter()): it is
 * neither taken over nor removed.  Or it is, made while dir_mode let
 * others write it (`was_open`): it is not gone into either. */
static int not_ours(struct build *b, const struct snap_entry *e,
		    const struct stat *st, bool was_open, int rc)
{
	if (was_open)
		return log_err_set(b->err, rc,
				   "target %s: %s, made while dir_mode let "
				   "others write it, cannot be moved aside "
				   "into %s: %s; left as it is",
				   b->w->path, e->path, WRITER_ASIDE,
				   strerror(-rc));
	return log_err_set(b->err, rc,
			   "target %s: %s, in a directory another user can "
			   "write, is not atomsync's (owner %u, group %u), "
			   "and cannot be moved aside into %s: %s; left as "
			   "it is",
			   b->w->path, e->path, (unsigned)st->st_uid,
			   (unsigned)st->st_gid, WRITER_ASIDE, strerror(-rc));
}

/* A directory of a recycled generation kept for entry `e`: a descriptor,
 * or -ENOENT when it is not a directory (removed, to be made anew). */
static int reuse_dir(struct build *b, struct level *p, const char *name,
		     const struct snap_entry *e, struct level *l)
{
	struct stat st;
	int fd = openat(p->nfd, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	bool dir = fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);

	/* A directory of ours that others can write, made while dir_mode
	 * let them and to be closed now, may hold one of root's that they
	 * moved in, with what they could not remove: neither gone into nor
	 * made private to be pruned, but moved aside whole, and made anew.
	 * (While dir_mode stays open, what is in it is pruned with their
	 * rights: fsutil_rmtree().) */
	bool was_open = dir && !(e->mode & 0022) && fsutil_ours_but_open(&st);
	if (dir && (was_open || !fsutil_may_enter(&p->found, &st))) {
		close(fd);
		p->dirty = true;
		int rc = move_aside(b, p, name, e->path);
		if (rc == 0)
			return -ENOENT; /* made anew */
		return not_ours(b, e, &st, was_open, rc);
	}
	if (dir) {
		l->found = st;
		uid_t u;
		gid_t g;
		owner_of(b, e, &u, &g);
		bool owned = st.st_uid == u && st.st_gid == g;
		bool alone = fsutil_ours_alone(&st);
		if (!alone)
			b->w->took_others = true;
		/* As it was left, by us and for us alone, since then. */
		l->new_ours = p->new_ours && owned && alone;
		/* Its mode read again once the owner it had can no longer
		 * change it.  One others can write that is to be ours alone
		 * is made private (as a new one is) before its entries are
		 * looked at: whoever opened it while they could write it
		 * could otherwise put a file in it after the look, which
		 * the publishes after would trust (dir_ours()). */
		bool ok = owned ||
			  (fchown(fd, u, g) == 0 && fstat(fd, &st) == 0);
		l->cur = st.st_mode & 07777;
		if (ok && (l->cur & 0022) && !(e->mode & 0022) &&
		    fsutil_trusted_uid(u)) {
			ok = fchmod(fd, 0700) == 0;
			l->cur = 0700;
		}
		if (ok)
			return fd;
	}
	if (fd >= 0)
		close(fd);
	int rc = remove_entry(b, p, name, e->path);
	return rc < 0 ? rc : -ENOENT;
}

static int push_level(struct build *b, const struct level *l)
{
	if (b->depth == b->cap) {
		size_t cap = b->cap * 2;
		struct level *v = realloc(b->lv, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		b->lv = v;
		b->cap = cap;
	}
	b->lv[b->depth++] = *l;
	return l->recycled && !l->same ? prune(b, &b->lv[b->depth - 1]) : 0;
}

static int build_dir(struct build *b, size_t i, struct level *p,
		     const char *name)
{
	struct snap_entry *e = &b->s->v[i];
	struct level l = {.path = e->path, .len = strlen(e->path), .idx = i,
			  .mode = e->mode, .cur = 0700, .ofd = -1};
	int nfd = p->recycled ? reuse_dir(b, p, name, e, &l) : -ENOENT;

	if (nfd != -ENOENT && nfd < 0)
		return nfd;
	l.recycled = nfd >= 0;
	l.same = level_same(b, &l);
	if (nfd < 0) {
		p->dirty = true;
		if (mkdirat(p->nfd, name, 0700) < 0)
			return log_err_set(b->err, -errno,
					   "target %s: mkdir %s: %s", b->w->path,
					   e->path, strerror(errno));
		nfd = openat(p->nfd, name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0)
			return log_err_set(b->err, -errno,
					   "target %s: open %s: %s", b->w->path,
					   e->path, strerror(errno));
		if (!fsutil_made_private(nfd, &l.found)) {
			close(nfd);
			return log_err_set(b->err, -EPERM,
					   "target %s: %s was replaced by "
					   "another directory as it was made",
					   b->w->path, e->path);
		}
		if ((e->uid != SNAP_NO_ID || e->gid != SNAP_NO_ID) &&
		    fchown(nfd, e->uid, e->gid) < 0) {
			int rc = -errno;
			close(nfd);
			return log_err_set(b->err, rc, "target %s: chown %s: %s",
					   b->w->path, e->path, strerror(-rc));
		}
	}
	if (p->ofd >= 0)
		l.ofd = openat(p->ofd, name,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	l.live_ours = p->live_ours && dir_ours(l.ofd);
	l.nfd = nfd;
	int rc = push_level(b, &l);
	if (rc == -ENOMEM) {
		close(nfd);
		if (l.ofd >= 0)
			close(l.ofd);
	}
	return rc;
}

/* A file not linked forward after all: written afresh, and told as
 * changed; 1. */
static int not_linked(struct build *b, const struct snap_entry *e)
{
	if (b->standby)
		return -ESTALE; /* the publish that comes tells */
	if (!b->half)
		warn_changed_in_live(b->w, e->path);
	b->r->changed++;
	return note_path(b->r, e->path) < 0 ? -ENOMEM : 1;
}

/* Hard-links the live copy of an unchanged file, checked to be what
 * atomsync left there; 1 when it cannot be linked (to be copied). */
static int link_file(struct build *b, struct snap_entry *e, struct level *p,
		     const char *name)
{
	struct stat st;
	/* In a live directory that others can change, a name looked at
	 * may be another file by the time it is linked: there the link is
	 * looked at instead (at a full check too), where nobody else can
	 * change it, as the directory it is in may become ours alone. */
	bool after = !p->live_ours;

	if (p->ofd < 0)
		return 1;
	if (!b->checked && !after && !only_ours(b, e) &&
	    (fstatat(p->ofd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	     !intact(&st, e, &b->gen)))
		return not_linked(b, e);
	if (linkat(p->ofd, name, p->nfd, name, 0) < 0) {
		/* A standby holds links alone: what keeps one from being
		 * made (a full file system) ends it, told as it is. */
		if (b->standby && errno != ENOENT)
			return log_err_set(b->err, -errno,
					   "target %s: linking %s: %s",
					   b->w->path, e->path,
					   strerror(errno));
		return 1; /* gone or cannot be linked: copied instead */
	}
	if (after && (fstatat(p->nfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		      !intact(&st, e, &b->gen))) {
		if (unlinkat(p->nfd, name, 0) < 0)
			return log_err_set(b->err, -errno,
					   "target %s: removing %s: %s",
					   b->w->path, e->path,
					   strerror(errno));
		return not_linked(b, e);
	}
	b->r->linked++;
	/* Compared by content: learn what it is. */
	if (e->t_ino == 0 &&
	    fstatat(p->nfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		e->t_ino = (uint64_t)st.st_ino;
		e->t_mtime_ns = clock_ts_ns(&st.st_mtim);
		b->learned |= b->standby;
	}
	return 0;
}

/* In a recycled directory, an unchanged file is kept when it is the very
 * file the live generation holds (the same inode, recorded when it was
 * written) and as atomsync left it: 1 then.  Anything else in its place
 * is removed (0). */
static int keep_file(struct build *b, size_t i, struct level *p,
		     const char *name)
{
	struct snap_entry *e = &b->s->v[i];
	struct stat st;

	if (b->act[i] == ACT_KEEP)
		return 1; /* told by prune() */
	/* The spare's, unchanged since, is the live one's: level_same(). */
	if (b->act[i] == ACT_LINK && p->same && only_ours(b, e) &&
	    !pathset_has(b->differ, e->path)) {
		b->act[i] = ACT_KEEP;
		b->r->linked++;
		return 1;
	}
	if (fstatat(p->nfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0
				       : log_err_set(b->err, -errno,
						     "target %s: %s: %s",
						     b->w->path, e->path,
						     strerror(errno));
	if (b->act[i] == ACT_LINK && e->t_ino != 0 && intact(&st, e, &b->gen)) {
		b->act[i] = ACT_KEEP;
		b->r->linked++;
		return 1;
	}
	return remove_entry(b, p, name, e->path);
}

/* Whether the directory s->v[i], in a recycled level `p` that is looked
 * at (a name in it changed), is there as the spare had it: not in differ
 * (a directory that came, went, or changed its mode or owner in any
 * generation since is in differ itself, see changed_paths()), and found
 * a directory of ours alone with the owner and mode it is to have.  One
 * fstatat() in place of opening it: a root of 10,000 directories in
 * which one name changed is not 10,000 directories to open. */
static bool dir_as_left(const struct build *b, size_t i, const struct level *p,
			const char *name)
{
	const struct snap_entry *e = &b->s->v[i];
	struct stat st;
	uid_t u;
	gid_t g;

	owner_of(b, e, &u, &g);
	return p->recycled && p->new_ours && b->differ && !b->checked &&
	       !pathset_has(b->differ, e->path) &&
	       fstatat(p->nfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode) && st.st_uid == u && st.st_gid == g &&
	       fsutil_ours_alone(&st) && (st.st_mode & 07777) == e->mode;
}

static int size_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/* b->marks made: the directories and files of b->differ found by path
 * once, so that same_run() and same_subtree() look at bytes, not at the
 * path of every entry.
 * Only where a level can be the same (level_same()); NULL when out of
 * memory, and no subtree is then kept whole (same_subtree()). */
static void marks_make(struct build *b, bool recycled)
{
	const struct pathset *d = b->differ;

	if (!recycled || d == NULL || d->all || b->checked || b->unflushed)
		return;
	b->marks = malloc((d->n + 1) * sizeof(*b->marks));
	if (b->marks == NULL)
		return;
	for (size_t k = 0; k < d->n; k++) {
		const struct snap_entry *e = snapshot_find(b->s, d->v[k]);
		if (e != NULL)
			b->marks[b->marks_n++] = (size_t)(e - b->s->v);
	}
	qsort(b->marks, b->marks_n, sizeof(*b->marks), size_cmp);
}

/* The first mark at or past entry i, SIZE_MAX when none is. */
static size_t mark_from(const struct build *b, size_t i)
{
	size_t lo = 0, hi = b->marks_n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->marks[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->marks_n ? b->marks[lo] : SIZE_MAX;
}

/* Past the last entry of the level `l` in this build's range. */
static size_t level_end(const struct build *b, struct level *l)
{
	if (l->idx == LEVEL_ROOT)
		return b->to; /* the root is each half's */
	if (l->end == 0)
		l->end = snapshot_subtree_end(b->s, l->idx);
	return l->end < b->to ? l->end : b->to;
}

/* The entry of the level `l`'s child that holds entry k: k itself, or
 * the directory above it named as l's entry.  SIZE_MAX when out of
 * memory. */
static size_t child_holding(const struct build *b, const struct level *l,
			    size_t k)
{
	const char *path = b->s->v[k].path;
	const char *slash = strchr(path + (l->len ? l->len + 1 : 0), '/');

	if (slash == NULL)
		return k;
	char *dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		return SIZE_MAX;
	const struct snap_entry *e = snapshot_find_n(b->s, k, dir);
	free(dir);
	return e != NULL ? (size_t)(e - b->s->v) : SIZE_MAX;
}

/* From entry i on, in a level `p` known to be the same (level_same()),
 * the children kept whole, as same_subtree() keeps one: every entry in
 * them a file to link forward or a directory not in differ, and only
 * ours.  Act and class bytes are scanned across many at once, up to a
 * directory in differ (a mark) or one that is not so: at the top of a
 * million files, ten thousand children are not ten thousand subtrees
 * looked up.  How many entries that is, 0 when i's must be read. */
static size_t same_run(struct build *b, size_t i, struct level *p)
{
	size_t end = level_end(b, p), lim = mark_from(b, i), k, c, files = 0;

	if (lim > end)
		lim = end;
	for (k = i; k < lim; k++) {
		uint8_t a = b->act[k];
		if (!(b->cls[k] & CLS_OURS) || (a != ACT_LINK && a != ACT_DIR))
			break;
	}
	c = k == end ? end : child_holding(b, p, k);
	if (c == SIZE_MAX || c <= i)
		return 0;
	for (k = i; k < c; k++)
		files += b->act[k] == ACT_LINK;
	memset(b->act + i, ACT_KEEP, c - i);
	b->r->linked += files;
	return c - i;
}

/* Entry `i`, a directory in the recycled level `p` that holds what the
 * new generation needs (level_same()), or found there as it was left
 * (dir_as_left()): when no generation since the spare changed anything
 * below it either, and only we or root could have, its entries are kept
 * without opening a directory (at a million files, ten thousand of
 * them, cold on disk); how many that is, 0 when it must be read.  In a
 * level that is the same, the children after it too (same_run()). */
static size_t same_subtree(struct build *b, size_t i, struct level *p,
			   const char *name)
{
	const struct snapshot *s = b->s;

	/* Without the marks, what differs below may be anywhere. */
	if (b->unflushed || b->marks == NULL)
		return 0;
	if (p->same)
		return same_run(b, i, p);
	if (!dir_as_left(b, i, p, name))
		return 0;
	/* Found by bisection, tried first where the last one ended: a
	 * million entries are not a million paths compared, and ten
	 * thousand directories of one size not a bisection each. */
	size_t j = snapshot_subtree_end_near(s, i, b->subtree_n), k,
	       files = 0;

	b->subtree_n = j - i;
	/* A directory or file of differ below it (a mark) is not as the
	 * spare has it. */
	if (mark_from(b, i) < j)
		return 0;

	/* A byte or two an entry, not the entry: this may be most of a
	 * million. */
	for (k = i; k < j; k++) {
		uint8_t a = b->act[k];
		if (!(b->cls[k] & CLS_OURS) || (a != ACT_LINK && a != ACT_DIR))
			return 0;
		files += a == ACT_LINK;
	}
	memset(b->act + i, ACT_KEEP, j - i);
	b->r->linked += files;
	return j - i;
}

static int build_entry(struct build *b, size_t i)
{
	struct snap_entry *e = &b->s->v[i];
	size_t pl = parent_len(e->path);

	/* Leave the directories this entry is not in. */
	while (b->depth > 1 && !(b->lv[b->depth - 1].len == pl &&
				 strncmp(b->lv[b->depth - 1].path, e->path,
					 pl) == 0)) {
		int rc = close_level(b);
		if (rc < 0)
			return rc;
	}
	struct level *p = &b->lv[b->depth - 1];
	const char *name = e->path + (pl ? pl + 1 : 0);

	if (b->act[i] == ACT_DIR) {
		size_t n = same_subtree(b, i, p, name);
		b->skip = n ? n - 1 : 0;
		return n ? 0 : build_dir(b, i, p, name);
	}
	int rc = p->recycled ? keep_file(b, i, p, name) : 0;
	if (rc != 0)
		return rc < 0 ? rc : 0;
	p->dirty = true;
	rc = b->act[i] == ACT_LINK ? link_file(b, e, p, name) : 1;
	if (rc <= 0)
		return rc;
	if (b->standby)
		return -ESTALE; /* holds nothing but links */
	/* Not the live file after all: its directory changed too (out of
	 * memory, the set stands for every one). */
	if (b->act[i] == ACT_LINK) {
		build_lock(b);
		(void)pathset_add(b->changed, e->path, parent_len(e->path));
		build_unlock(b);
	}
	b->act[i] = ACT_COPY; /* new data: flushed with the rest */
	return copy_file(b, e, p, name);
}

/* The new files and directories of a generation, its root included;
 * *reused, whether it holds files of the live one (linked or kept). */
static size_t flush_objects(const struct snapshot *s, const uint8_t *act,
			    bool *reused)
{
	size_t objects = 1;

	*reused = false;
	for (size_t i = 0; i < s->n; i++) {
		objects += act[i] == ACT_DIR || act[i] == ACT_COPY;
		/* The entry is read until one is found, not each time. */
		*reused = *reused || (s->v[i].type == SNAP_FILE &&
				      (act[i] == ACT_LINK ||
				       act[i] == ACT_KEEP));
	}
	return objects;
}

/* Flushes the new files and directories of the generation (not its root,
 * whose mode changes after), all at once. */
static int flush(struct writer *w, struct snapshot *s, const uint8_t *act,
		 int gfd, const char *gen, bool *all, char **err)
{
	bool reused;
	size_t objects = flush_objects(s, act, &reused), n = 0;

	/* Files of a live generation not known to be on disk (published
	 * without fsync, or found by a scan) are flushed too, with the rest
	 * of the file system. */
	*all = objects > FSYNC_EACH_MAX || (reused && !w->live_durable);
	if (*all || objects == 1)
		return 0; /* one syncfs() once the root is 0755, or nothing */
	size_t *todo = malloc((objects - 1) * sizeof(*todo));
	if (todo == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		if (act[i] == ACT_DIR || act[i] == ACT_COPY)
			todo[n++] = i;
	int rc = flush_each(gfd, s, todo, n);
	free(todo);
	if (rc < 0)
		log_err_set(err, rc, "target %s: flushing %s: %s", w->path, gen,
			    strerror(-rc));
	return rc;
}

/* Step (1) ends here: the complete generation becomes readable (0755)
 * and, with fsync, is on disk before ..data may name it. */
static int open_up(struct writer *w, int gfd, const char *gen, bool all,
		   mode_t mode, char **err)
{
	int rc = 0;

	if (fchmod(gfd, mode) < 0)
		rc = -errno;
	else if (flushes(w) && all && syncfs(gfd) < 0)
		rc = -errno;
	else if (flushes(w) && !all)
		rc = fsutil_fsync(gfd);
	if (rc < 0)
		log_err_set(err, rc, "target %s: %s %s: %s", w->path,
			    flushes(w) ? "flushing" : "chmod", gen,
			    strerror(-rc));
	return rc;
}

/* Whether building entry `i` wrote something new: a file copied, or a
 * directory made (not one recycled, nor one kept unread). */
static bool built_new(const struct build *b, size_t i)
{
	const struct level *l = &b->lv[b->depth - 1];

	if (b->act[i] == ACT_COPY)
		return true;
	return b->act[i] == ACT_DIR && l->idx == i && !l->recycled;
}

/* Writes the entries [from, to) of b->s in turn, until one fails or
 * `stop` is set (-ECANCELED); *at: the first not written (`to` when all
 * were).  Each new one is counted towards an early flush when `early`. */
static int build_range(struct build *b, size_t from, size_t to, size_t *at,
		       const atomic_bool *stop, struct flush_early *early)
{
	size_t i = from;
	int rc = 0;

	b->to = to;
	while (i < to && rc == 0) {
		bool halt = (stop && atomic_load_explicit(
					     stop, memory_order_relaxed)) ||
			    (b->failed && atomic_load_explicit(
						  b->failed, memory_order_relaxed));
		rc = halt ? -ECANCELED : build_entry(b, i);
		if (rc == 0 && early && built_new(b, i)) {
			build_lock(b); /* the other half counts too */
			flush_early_note(early);
			build_unlock(b);
		}
		if (rc == 0)
			i += 1 + b->skip;
		b->skip = 0;
	}
	if (rc < 0 && rc != -ECANCELED && b->failed)
		atomic_store(b->failed, true);
	*at = i;
	return rc;
}

/* Closes the levels of b from the innermost down to `keep` (those below
 * are another build's), unchanged, and frees the stack. */
static void levels_free(struct build *b, size_t keep)
{
	while (b->depth > keep) {
		struct level *l = &b->lv[--b->depth];
		close(l->nfd);
		if (l->ofd >= 0)
			close(l->ofd);
	}
	free(b->lv);
	free(b->pbuf);
}

/* The second half of a build, on a thread of its own: the entries
 * [from, to) of s, which start at a top-level name.  Its own levels
 * (the root's descriptors borrowed), result and error. */
struct build_half {
	struct build b;
	struct writer_result r;
	struct problems pb;
	char *err;
	struct flush_early *early; /* b's, counted under its lock */
	size_t from, to, at;
	int rc;
};

static void *build_half_run(void *arg)
{
	struct build_half *h = arg;

	h->rc = build_range(&h->b, h->from, h->to, &h->at, h->b.stop,
			    h->early);
	while (h->b.depth > 1 && h->rc == 0)
		h->rc = close_level(&h->b);
	return NULL;
}

/* What writing entry k of `s` weighs against the others, in entries:
 * one, and where `act` (NULL: none) says it is copied, one more for each
 * HALVES_BYTES of its bytes. */
static uint64_t half_weight(const struct snapshot *s, const uint8_t *act,
			    size_t k)
{
	if (act == NULL || act[k] != ACT_COPY)
		return 1;
	uint64_t more = s->v[k].size / HALVES_BYTES;
	/* A sparse file may claim any size: the sum must not wrap. */
	return 1 + (more < UINT32_MAX ? more : UINT32_MAX);
}

/* How far a first half of weight `left` is from half of `total`, twice. */
static uint64_t half_gap(uint64_t left, uint64_t total)
{
	return 2 * left > total ? 2 * left - total : total - 2 * left;
}

/* Where the entries of `s` split in two: the top-level name nearest the
 * middle by weight (half_weight()), which may be before it or after it:
 * four files of 64 MiB copied are two halves of two, as 10,000 small
 * ones are of 5,000.  0 when it is too small to be worth a thread, or
 * has no top-level name but its first.  `left`, `la` and `lb` are the
 * weights of the entries before `mid`, `after` and `before`. */
static size_t halves_split(const struct snapshot *s, const uint8_t *act)
{
	uint64_t total = act ? 0 : s->n, left = 0;
	size_t mid = 0;

	for (size_t k = 0; act && k < s->n; k++)
		total += half_weight(s, act, k);
	if (total < HALVES_MIN)
		return 0;
	if (act == NULL)
		left = mid = s->n / 2; /* each weighs one: no need to read */
	while (mid < s->n && 2 * left < total)
		left += half_weight(s, act, mid++);
	size_t after = mid, before = mid;
	uint64_t la = left, lb = left;
	while (after < s->n && parent_len(s->v[after].path) != 0)
		la += half_weight(s, act, after++);
	while (before > 0 &&
	       (before == s->n || parent_len(s->v[before].path) != 0))
		lb -= half_weight(s, act, --before);
	if (after == s->n)
		return before; /* 0: none */
	return before > 0 && half_gap(lb, total) < half_gap(la, total)
		       ? before
		       : after;
}

/* The first failure of two halves, else -ECANCELED when either stopped. */
static int halves_rc(int a, int b)
{
	if (a < 0 && a != -ECANCELED)
		return a;
	if (b < 0 && b != -ECANCELED)
		return b;
	return a < 0 ? a : b;
}

/* What the second half wrote and found, added to b's. */
static int halves_merge(struct build *b, const struct build_half *h)
{
	const struct log_list *from[] = {&h->pb.taken, &h->pb.unreadable,
					 &h->pb.aside};
	struct log_list *to[] = {&b->pb->taken, &b->pb->unreadable,
				 &b->pb->aside};

	b->r->copied += h->r.copied;
	b->r->linked += h->r.linked;
	b->r->bytes_copied += h->r.bytes_copied;
	b->r->changed += h->r.changed;
	for (size_t k = 0; k < 3; k++) {
		for (size_t i = 0; i < from[k]->n; i++)
			log_list_add(to[k], "%s", from[k]->v[i]);
		to[k]->more += from[k]->more;
	}
	/* Its files not linked after all, told here. */
	for (size_t at = 0; at < h->r.paths_len;
	     at += strlen(h->r.paths + at) + 1) {
		warn_changed_in_live(b->w, h->r.paths + at);
		if (note_path(b->r, h->r.paths + at) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* The entries of p->s written by two threads (this one, and one for the
 * second half, from p->split) into directories apart: linking costs the
 * kernel about as much as a copy of a small file does, and each half
 * takes a core.  A standby is then done sooner between changes
 * (p->built: how far the first half got, p->built2 the second), and a
 * generation written whole (the first, or none to recycle) sooner.
 * Both count their new entries towards an `early` flush.  Alone, when
 * the thread cannot be started. */
static int build_halves(struct build *b, struct writer_pending *p,
			struct flush_early *early)
{
	struct build_half h = {.b = *b, .to = p->s->n, .early = early};
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	atomic_bool failed = false;
	pthread_t t;

	p->split = halves_split(p->s, b->act);
	h.from = p->split;
	h.b.r = &h.r;
	h.b.pb = &h.pb;
	h.b.err = &h.err;
	h.b.depth = 1;
	h.b.pbuf = NULL; /* one of its own */
	h.b.pcap = 0;
	h.b.lv = p->split ? malloc(h.b.cap * sizeof(*h.b.lv)) : NULL;
	if (h.b.lv)
		h.b.lv[0] = b->lv[0];
	b->lock = h.b.lock = &lock;
	b->failed = h.b.failed = &failed;
	h.b.half = true;
	if (h.b.lv == NULL || thread_start_beside(&t, build_half_run, &h) < 0) {
		free(h.b.lv);
		p->split = 0;
		b->lock = NULL;
		b->failed = NULL;
		return build_range(b, 0, p->s->n, &p->built, b->stop, early);
	}
	int rc = build_range(b, 0, p->split, &p->built, b->stop, early);
	pthread_join(t, NULL);
	b->lock = NULL;
	b->failed = NULL;
	p->built2 = h.at;
	b->learned |= h.b.learned;
	int named = b->naming_refused ? b->naming_refused : h.b.naming_refused;
	if (named)
		warn_named_only(b->w, named);
	b->naming_refused = 0;
	int both = halves_rc(rc, h.rc);
	if (both == h.rc && rc != h.rc && h.err) {
		free(*b->err);
		*b->err = h.err;
		h.err = NULL;
	}
	if (halves_merge(b, &h) < 0 && both == 0)
		both = -ENOMEM;
	levels_free(&h.b, 1); /* the root is b's */
	free(h.err);
	free(h.r.paths);
	problems_fini(&h.pb);
	return both;
}

/* Writes the entries of a publish's p->s (p->built: how many were): in
 * turn into a recycled generation, where few change; in two halves into
 * a new one, where all are written.  Flushes are asked for as they are
 * written: a generation with that many new entries is flushed with one
 * syncfs() at the end (see flush.h).  A standby's are not: a change
 * stops one at once, and its publish must not wait for a flush first. */
static int build_entries(struct build *b, struct writer_pending *p, int gfd)
{
	struct flush_early early;
	struct flush_early *fe = flushes(b->w) ? &early : NULL;

	flush_early_init(&early, gfd);
	int rc = p->recycled ? build_range(b, 0, p->s->n, &p->built, b->stop, fe)
			     : build_halves(b, p, fe);
	int frc = flush_early_fini(&early, rc == 0);
	if (rc == 0 && frc < 0)
		rc = log_err_set(b->err, frc, "target %s: flushing %s: %s",
				 b->w->path, p->gen, strerror(-frc));
	return rc;
}

/* Writes every entry of p->s into the generation p->gen (a recycled
 * one holds entries already), flushes and opens it up.  -ECANCELED when
 * `stop` (NULL: never) was set first. */
static int build(struct writer *w, struct writer_pending *p,
		 struct writer_result *r, struct problems *pb,
		 const atomic_bool *stop, char **err)
{
	struct snapshot *s = p->s;
	const char *gen = p->gen;
	struct twins twins = {0};
	struct build b = {
		.twins = &twins,
		.w = w, .s = s, .act = p->act, .r = r, .pb = pb, .err = err,
		.cap = 16, .checked = w->verify_live,
		.euid = geteuid(), .egid = getegid(),
		.differ = p->differ, .changed = p->changed,
		.cls = p->standby ? w->cls.v : p->cls.v,
		.standby = p->standby, .stop = stop,
		.unflushed = p->recycled && p->spare_kind == SPARE_PARTIAL,
		.left = p->recycled ? p->spare_left : NULL,
	};
	int rc = 0;

	live_owner(w, &b.gen);
	b.lv = malloc(b.cap * sizeof(*b.lv));
	if (b.lv == NULL)
		return -ENOMEM;
	int gfd = open_generation(w->dfd, gen);
	if (gfd < 0) {
		free(b.lv);
		return log_err_set(err, gfd, "target %s: open %s: %s", w->path,
				   gen, strerror(-gfd));
	}
	int ofd = w->live_fd >= 0 ? openat(w->live_fd, ".",
					   O_RDONLY | O_DIRECTORY | O_CLOEXEC)
				  : -1;
	b.lv[b.depth++] = (struct level){
		.path = "", .len = 0, .idx = LEVEL_ROOT, .nfd = gfd, .ofd = ofd,
		.mode = 0755, .cur = 0700, .recycled = p->recycled,
		.new_ours = dir_ours(gfd), .live_ours = dir_ours(ofd),
	};
	if (fstat(gfd, &b.lv[0].found) < 0) {
		rc = -errno;
		log_err_set(err, rc, "target %s: %s: %s", w->path, gen,
			    strerror(-rc));
	}
	b.lv[0].same = level_same(&b, &b.lv[0]);
	marks_make(&b, p->recycled);
	if (rc == 0 && p->recycled && !b.lv[0].same)
		rc = prune(&b, &b.lv[0]);
	if (rc == 0)
		rc = p->standby ? build_halves(&b, p, NULL)
				: build_entries(&b, p, gfd);
	w->live_learned |= b.learned;
	while (b.depth > 1 && rc == 0)
		rc = close_level(&b);
	/* Unreadable entries make it incomplete: it goes, unflushed. */
	if (log_list_count(&pb->unreadable) > 0)
		goto out;
	/* The root stays 0700 until every entry is flushed: nobody else can
	 * reach into the generation (to plant a FIFO for the flush to open,
	 * say) before it is complete.  Then it becomes 0755. */
	bool all = false;
	if (rc == 0 && flushes(w))
		rc = flush(w, s, p->act, gfd, gen, &all, err);
	/* A standby stays private until it is recycled. */
	if (rc == 0)
		rc = open_up(w, gfd, gen, all, p->standby ? 0700 : 0755, err);
out:
	levels_free(&b, 0);
	free(b.marks);
	free(twins.v);
	return rc;
}

static void pending_free(struct writer_pending *p)
{
	if (p == NULL)
		return;
	snapshot_free(p->s);
	free(p->gen);
	free(p->dir);
	free(p->act);
	classes_fini(&p->cls);
	pathset_free(p->differ);
	pathset_free(p->changed);
	pathset_free(p->spare_left);
	free(p);
}

/* Whether `s` holds anything but directories: a tree of empty ones is
 * as empty as no entry at all, for allow_empty. */
static bool holds_a_file(const struct snapshot *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].type != SNAP_DIR)
			return true;
	return false;
}

/* -ENODATA: `s` has no file in place of a live generation that has. */
static int empty_refused(const struct writer *w, const struct snapshot *s,
			 char **err)
{
	char left[96] = "";

	/* Not the "at most" of a refresh: a source lost at once would be
	 * said to have names left out. */
	if (s->unlisted > 0 && s->unlisted_exact)
		snprintf(left, sizeof(left),
			 " (%llu name%s in it left out: excluded, skipped or "
			 "reserved)",
			 (unsigned long long)s->unlisted,
			 s->unlisted == 1 ? "" : "s");
	return log_err_set(err, -ENODATA,
			   "%s%s is empty%s; keeping the live generation %s "
			   "(%s publishes an empty one)",
			   s->root ? "source " : "payload",
			   s->root ? s->root : "", left,
			   w->live_gen ? w->live_gen : "",
			   /* a mapping's key or option, or the library's */
			   w->name ? "allow_empty = yes, or --allow-empty,"
				   : "allow_empty");
}

/* Whether `s` may be published at all: valid paths, not an empty source
 * in place of a live generation that has content (a lost mount, a
 * checkout being cloned again) unless allowed, and nothing in the way
 * (every problem found, reported at once). */
static int prepare_check(struct writer *w, struct snapshot *s,
			 struct problems *pb, char **err)
{
	int rc = normalize(w, s, err);

	if (rc < 0)
		return rc;
	if (!holds_a_file(s) && w->live && holds_a_file(w->live) &&
	    !w->o.allow_empty)
		return empty_refused(w, s, err);
	for (size_t i = 0; i < s->problems.n; i++)
		log_list_add(&pb->unreadable, "%s", s->problems.v[i]);
	pb->unreadable.more += s->problems.more;
	rc = check_visible(w, s, pb, err);
	if (rc == 0)
		rc = problems_report(w, s, pb, err);
	return rc;
}

/* In a dry run (and --status) with nothing to publish: the top-level
 * names of `s` whose visible link is missing (removed by hand), counted
 * as added, since readers do not find them; a publish puts them back. */
static int visible_missing(struct writer *w, const struct snapshot *s,
			   struct writer_result *r)
{
	int rc = 0;

	for (size_t i = 0; i < s->n && rc == 0; i++) {
		const char *p = s->v[i].path;
		enum visible v;
		if (strchr(p, '/') == NULL && visible_state(w, p, &v) == 0 &&
		    (v == VIS_ABSENT || v == VIS_ASTRAY))
			rc = note_change(w, r, &r->added, "add", p);
	}
	return rc;
}

/* Nothing to publish.  Restores visible links a crash may have taken.
 * What was compared is now known to match as of this snapshot, so it
 * becomes the live state in memory (no compare next time); the state
 * file is only rewritten when it did not describe the live generation
 * at all.  Takes `s`. */
static int prepare_unchanged(struct writer *w, struct snapshot *s,
			     struct writer_result *r, char **err)
{
	int rc = 0;

	r->generation = strdup(w->live_gen);
	if (w->o.dry_run) {
		rc = visible_missing(w, s, r);
		snapshot_free(s);
		return rc;
	}
	rc = sync_visible(w, s, w->live, w->verify_live, false, err);
	/* Untrusted, the state is written whole; else what changed in it
	 * is added to the journal, once there is one to add to. */
	if (!w->live_trusted)
		state_log_fini(&w->slog);
	bool save = !w->live_trusted || w->slog.base;
	struct snapshot *old = w->live;
	detach_source(s);
	w->live = s;
	w->live_trusted = true;
	const char *file = STATE_FILE;
	int sr = save ? state_record(w->dfd, &w->slog, old, w->live,
				     w->live_gen, w->o.fsync, &file)
		      : 0;
	supersede(w, old);
	if (sr < 0)
		log_msg(LOG_LVL_WARN, w->name, "target %s: saving %s: %s",
			w->path, file, strerror(-sr));
	return rc;
}

/* Sleeps until the monotonic clock reads `due_ms` (writer_now_ms()). */
static void sleep_until_ms(uint64_t due_ms)
{
	uint64_t now;

	while ((now = writer_now_ms()) < due_ms) {
		struct timespec ts = {(time_t)((due_ms - now) / 1000),
				      (long)((due_ms - now) % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* The rate linking is taken at before a standby measured one (after a
 * start, a change may stop the first standby before it links enough to
 * tell): faster than any seen (about 6 us a link on tmpfs, 17 on disk),
 * so that only a publish sure to link for longer waits. */
#define LINK_NS_UNKNOWN 2000u

/* When the next publish would link every file of the live generation,
 * or all a standby stopped partway lacks, and a replaced generation
 * comes due sooner than that linking would take (at the rate the last
 * standby linked), waits for that one: recycled, it costs what changed.
 * At a million files on disk, linking takes seconds; the wait is at most
 * a grace period. */
static void await_due(struct writer *w)
{
	uint64_t now = writer_now_ms();
	uint64_t link_ns = w->link_ns ? w->link_ns : LINK_NS_UNKNOWN;

	if (!spare_yields(w) || w->nretired == 0 || w->live == NULL ||
	    !recycles_replaced(w) || newest_recyclable(w, now) != SIZE_MAX)
		return;
	size_t built = w->spare ? w->spare_built : 0, first = 0;
	if (built > w->live->n)
		return;
	size_t left = w->live->n - built;
	for (size_t i = 1; i < w->nretired; i++)
		if (w->retired[i].due_ms < w->retired[first].due_ms)
			first = i;
	uint64_t due = w->retired[first].due_ms;
	/* Into a generation of its own, two threads link them. */
	size_t threads = w->spare == NULL && halves_split(w->live, NULL) ? 2 : 1;
	if (due - now >= (uint64_t)left * link_ns / 1000000u / threads)
		return;
	log_msg(LOG_LVL_DEBUG, w->name,
		"target %s: waiting %llu ms for %s to be due, rather than "
		"linking %zu files", w->path, (unsigned long long)(due - now),
		w->retired[first].name, left);
	sleep_until_ms(due);
}

/* Puts `gen` on the list writer_gc_take removes; false when out of
 * memory. */
static bool drop_add(struct writer *w, char *gen)
{
	char **v = realloc(w->drop, (w->ndrop + 1) * sizeof(*v));

	if (v == NULL)
		return false;
	w->drop = v;
	w->drop[w->ndrop++] = gen;
	return true;
}

/* The newest replaced generation whose grace period is over becomes the
 * spare, when writer_gc_take() made none yet (or, when `yield`, left a
 * partial standby, dropped then): the daemon takes what is due only
 * between its work items, and a publish should not link every file anew
 * for want of one. */
static void take_spare(struct writer *w, bool yield)
{
	bool free_for_it = !w->spare || (yield && spare_yields(w));
	size_t newest = free_for_it ? newest_recyclable(w, writer_now_ms())
				    : SIZE_MAX;

	if (newest == SIZE_MAX)
		return;
	if (w->spare && !drop_add(w, w->spare))
		return; /* the partial one is recycled after all */
	spare_set(w, w->retired[newest].name, w->retired[newest].seq,
		  SPARE_REPLACED, NULL);
	pathset_free(w->retired[newest].changed);
	memmove(&w->retired[newest], &w->retired[newest + 1],
		(w->nretired - newest - 1) * sizeof(*w->retired));
	w->nretired--;
}

/* The spare generation `spare` made private again (0700: unfinished, to
 * recover(), and out of reach of other users); a negative errno, and in
 * *why what it means when that is not strerror()'s, when it cannot be
 * recycled. */
static int spare_take_over(struct writer *w, const struct writer_pending *p,
			   const char *spare, const char **why)
{
	struct stat st;

	/* A standby was private (0700) from the start: nobody else's. */
	if (p->spare_kind == SPARE_REPLACED && !recycles_replaced(w)) {
		*why = "dir_mode lets others write in it";
		return -EPERM;
	}
	int fd = open_generation(w->dfd, spare);
	int rc = fd < 0 ? fd : 0;
	/* Like the live generation: none that someone else made. */
	if (rc == 0 && (fstat(fd, &st) < 0 || !fsutil_ours_alone(&st)))
		rc = -EPERM;
	if (rc == 0 && fchmod(fd, 0700) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* The spare generation taken over (spare_take_over()) and renamed to a
 * new generation's name, in p->gen; when it cannot be recycled, it is
 * removed and a negative errno returned. */
static int recycle_spare(struct writer *w, struct writer_pending *p,
			 uint64_t *seq)
{
	const char *why = NULL;

	/* A standby goes on with the partial one it is given: what it
	 * records of it (see standby_left) holds only for that one. */
	take_spare(w, !p->standby);
	char *spare = w->spare;
	*seq = w->spare_seq;
	p->spare_kind = w->spare_kind;
	p->spare_left = w->spare_left;
	w->spare_left = NULL;
	spare_set(w, NULL, 0, SPARE_REPLACED, NULL);
	if (spare == NULL)
		return -ENOENT;
	int rc = spare_take_over(w, p, spare, &why);
	if (rc == 0)
		rc = make_generation(w, spare, &p->gen);
	if (rc < 0) {
		/* What dir_mode asks for is no news at each publish. */
		log_msg(why ? LOG_LVL_DEBUG : LOG_LVL_INFO, w->name,
			"target %s: cannot recycle %s (%s); removing it",
			w->path, spare, why ? why : strerror(-rc));
		(void)drop_generation(w, spare, "not recycled");
	}
	free(spare);
	return rc;
}

/* Where k copies of live entries from s->v[i] on differ, given their
 * actions: the files to be copied (a copy equal to its live entry is
 * otherwise the same, see same_copies). */
static int copies_changed(const struct snapshot *s, size_t i, size_t k,
			  const uint8_t *act, struct pathset *out)
{
	const uint8_t *a = act + i, *end = act + i + k;
	int rc = 0;

	while (rc == 0 && (a = memchr(a, ACT_COPY, (size_t)(end - a)))) {
		const char *p = s->v[a - act].path;
		rc = pathset_add(out, p, strlen(p));
		a++;
	}
	return rc;
}

/* Adds to `out` where `s`, whose entries are to be or were written as
 * `act` says, differs from the live generation `l`: the directories in
 * which a name came or went (or changed type), a directory whose own
 * mode or owner changed, and a file whose name stayed but which is not
 * the live one's (not its directory: beside ten thousand directories,
 * a file changed at the top leaves the top as it was, but for it).
 * `same`: the copies of l's entries in s equal them (see same_copies),
 * and are not read. */
static int changed_paths(const struct snapshot *l, const struct snapshot *s,
			const uint8_t *act, bool same, struct pathset *out)
{
	size_t i = 0, j = 0, run = 0;
	int rc = 0;

	while (rc == 0 && (i < s->n || j < l->n)) {
		size_t k = same && i < s->n ? snapshot_copied(s, i, l, j, &run)
					    : 0;
		if (k) {
			rc = copies_changed(s, i, k, act, out);
			i += k;
			j += k;
			continue;
		}
		int c = i == s->n   ? 1
			: j == l->n ? -1
				    : snapshot_merge_cmp(s, i, l, j, &run);
		const struct snap_entry *e = c > 0 ? &l->v[j] : &s->v[i];
		const struct snap_entry *o = c == 0 ? &l->v[j] : NULL;
		bool parent = o == NULL || o->type != e->type;
		bool self = e->type == SNAP_DIR &&
			    (parent || o->mode != e->mode || o->uid != e->uid ||
			     o->gid != e->gid);
		if (!parent && e->type == SNAP_FILE)
			self = act[i] == ACT_COPY;
		if (parent)
			rc = pathset_add(out, e->path, parent_len(e->path));
		if (rc == 0 && self)
			rc = pathset_add(out, e->path, strlen(e->path));
		i += c <= 0;
		j += c >= 0;
	}
	pathset_seal(out);
	return rc;
}

/* Where the spare (made here as generation `from`) may differ from
 * p->s: where each generation made since differs from the one it
 * replaced, and where p->s differs from the live one.  NULL, for a look
 * everywhere, when one of those is not known. */
static struct pathset *spare_differs(const struct writer *w, uint64_t from,
				     const struct writer_pending *p)
{
	uint64_t next = from + 1;
	struct pathset *u = NULL;
	/* A standby made from the live one differs only where p->s does. */
	bool live = from == w->live_seq;

	if (from == 0 || (w->live_changed == NULL && !live) || w->live == NULL)
		return NULL;
	/* Replaced ones are kept in the order they were replaced. */
	for (size_t i = 0; i < w->nretired; i++) {
		const struct retired *t = &w->retired[i];
		if (t->seq > from && (t->seq != next++ || t->changed == NULL))
			return NULL;
	}
	if ((next != w->live_seq && !live) || (u = pathset_new()) == NULL)
		return NULL;
	int rc = live ? 0 : pathset_merge(u, w->live_changed);
	if (rc == 0 && p->spare_left)
		rc = pathset_merge(u, p->spare_left);
	for (size_t i = 0; rc == 0 && i < w->nretired; i++)
		if (w->retired[i].seq > from)
			rc = pathset_merge(u, w->retired[i].changed);
	if (rc == 0)
		rc = pathset_merge(u, p->changed);
	pathset_seal(u);
	if (rc < 0) {
		pathset_free(u);
		u = NULL;
	}
	return u;
}

/* A torn read is tried again soon: the spare is handed back (still
 * 0700).  Where only we could write it, a build changed a complete spare
 * only where it was to look (p->differ): it is looked at there again,
 * and flushed (spare_left), and is otherwise what it was.  Else it is
 * looked at in full (seq 0). */
static void spare_hand_back(struct writer *w, struct writer_pending *p,
			    uint64_t from)
{
	bool known = p->differ && p->spare_kind != SPARE_PARTIAL &&
		     !others_write(w);
	struct pathset *left = known ? pathset_new() : NULL;
	int rc = left ? pathset_merge(left, p->differ) : 0;

	/* A file it wrote is flushed with its directory. */
	for (size_t i = 0; rc == 0 && left && i < p->differ->n; i++)
		rc = pathset_add(left, p->differ->v[i],
				 parent_len(p->differ->v[i]));
	if (rc < 0) {
		pathset_free(left);
		left = NULL;
	}
	if (left) {
		pathset_seal(left);
		spare_set(w, p->gen, from, p->spare_kind, left);
	} else {
		spare_set(w, p->gen, 0, SPARE_PARTIAL, NULL);
	}
	p->gen = NULL;
}

/* Writes the new generation, into the spare one when there is one; on
 * failure nothing of it is left, but for a spare that met a torn read:
 * it stays the spare. */
static int prepare_build(struct writer *w, struct writer_pending *p,
			 struct writer_result *r, struct problems *pb,
			 char **err)
{
	uint64_t from = 0;

	await_due(w);
	p->recycled = recycle_spare(w, p, &from) == 0;
	int rc = p->recycled ? 0 : make_generation(w, NULL, &p->gen);
	if (rc < 0)
		return log_err_set(err, rc,
				   "target %s: creating a generation: %s",
				   w->path, strerror(-rc));
	/* What recycling needs to know, now and through this one later;
	 * out of memory, a set stands for every directory. */
	if ((p->changed = pathset_new()) == NULL)
		rc = -ENOMEM;
	else if (w->live == NULL)
		pathset_add_all(p->changed);
	else
		(void)changed_paths(w->live, p->s, p->act,
				   w->same_copies == p->s->id, p->changed);
	if (rc == 0 && p->recycled)
		p->differ = spare_differs(w, from, p);
	if (rc == 0)
		rc = build(w, p, r, pb, NULL, err);
	asides_report(w, pb);
	if (p->changed)
		pathset_seal(p->changed);
	if (rc == 0)
		rc = problems_report(w, p->s, pb, err);
	if (rc == 0 && (p->dir = fsutil_join(w->path, p->gen)) == NULL)
		rc = -ENOMEM;
	if (rc == -EAGAIN && p->recycled) {
		spare_hand_back(w, p, from);
	} else if (rc < 0) {
		(void)drop_generation(w, p->gen, "unfinished");
	}
	return rc;
}

/* When a full check is due (a name of the target found changed by
 * hand) and no publish makes it (a veto, a source refused as empty):
 * the live generation's visible links put back all the same, as ..data
 * is (data_present()), for its readers.  What is missing inside it
 * only a publish puts back. */
static void keep_live_visible(struct writer *w)
{
	if (w->verify_live && !w->o.dry_run && w->live && w->live_gen &&
	    !w->live_foreign && w->dfd >= 0)
		(void)sync_visible(w, w->live, NULL, true, true, NULL);
}

/* ..data removed, or naming another entry, while this writer has its
 * live generation: put back, so that readers find it again even when
 * nothing is to be published. */
static int data_present(struct writer *w, char **err)
{
	char *t = NULL;
	struct stat st;

	if (w->o.dry_run)
		return 0;
	int rc = fsutil_readlinkat(w->dfd, WRITER_DATA, &t);
	if (rc == -EINVAL)
		return data_in_the_way(w, "not publishing until it is moved "
					  "away",
				       err);
	if (w->live_gen == NULL || w->live_foreign) {
		free(t);
		return 0;
	}
	bool other = rc == 0 && strcmp(t, w->live_gen) != 0;
	if ((rc == -ENOENT || other) &&
	    fstatat(w->dfd, w->live_gen, &st, AT_SYMLINK_NOFOLLOW) == 0)
		rc = put_back_data(w, w->live_gen, "the live generation",
				   other ? t : NULL, err);
	else
		rc = 0; /* gone too: the publish makes another */
	free(t);
	return rc;
}

/* The live generation renamed or replaced by hand while this writer
 * holds it: what the held descriptor shows is not what readers find, so
 * it is let go, opened again by name, and every file checked. */
static void live_moved(struct writer *w)
{
	if (w->o.dry_run || w->live_gen == NULL || w->live_foreign ||
	    w->live_fd < 0 || live_fd_current(w))
		return;
	close(w->live_fd);
	w->live_fd = -1;
	free(w->live_ok);
	w->live_ok = NULL;
	w->verify_live = true;
}

/* diff() of p->s, into the actions and classes it is given here. */
static int prepare_diff(struct writer *w, struct writer_pending *p,
			struct writer_result *r, char **err)
{
	size_t n = p->s->n ? p->s->n : 1;

	if ((p->act = calloc(n, 1)) == NULL ||
	    (p->cls.v = malloc(n)) == NULL)
		return -ENOMEM;
	int rc = live_classes(w);
	return rc < 0 ? rc : diff(w, p, r, err);
}

/* When the files of what the next publish records were last all
 * checked: now, at a full check; else when those of the live record
 * were. */
static int64_t record_checked(const struct writer *w)
{
	struct timespec now;

	if (!w->verify_live)
		return w->live ? w->live->checked : 0;
	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec > 0 ? (int64_t)now.tv_sec : 0;
}

int writer_prepare(struct writer *w, struct snapshot *s,
		   struct writer_pending **out, struct writer_result *r,
		   char **err)
{
	struct problems pb = {0};
	struct writer_pending *p = calloc(1, sizeof(*p));
	int rc = p ? writer_load(w, err) : -ENOMEM;

	/* It may have become another user's to change since it was opened
	 * (fchmod by root): nothing is written into it then. */
	if (rc == 0 && w->dfd >= 0)
		rc = target_ours(w, err);
	if (rc == 0)
		target_group(w);
	if (rc == 0 && w->dfd >= 0)
		rc = data_present(w, err);
	bool ours = rc == 0 && w->dfd >= 0;
	*out = NULL;
	memset(r, 0, sizeof(*r));
	w->warned_live = 0;
	/* The diff needs the check of the live files made ahead; only a
	 * build needs the spare's listing, and nothing else waits for it. */
	if (w->verify_checks)
		verify_join(w);
	live_moved(w);
	if (w->live_gen && w->live_fd < 0 && !w->live_foreign)
		w->live_fd = open_live(w);
	if (rc == 0) {
		p->s = s;
		s = NULL;
		p->verify = w->verify_live;
		p->s->checked = record_checked(w);
		rc = prepare_check(w, p->s, &pb, err);
	}
	if (rc == 0)
		rc = prepare_diff(w, p, r, err);
	if (rc == 0 && r->added + r->changed + r->removed == 0 && w->live_gen) {
		rc = prepare_unchanged(w, p->s, r, err);
		p->s = NULL;
		classes_adopt(w, &p->cls);
	} else if (rc == 0 && !w->o.dry_run) {
		/* Before a generation is in it, which a crash may leave. */
		if (w->lock == LOCK_MADE || w->lock == LOCK_FOUND)
			lock_say_id(w);
		verify_stop(w);
		rc = prepare_build(w, p, r, &pb, err);
		if (rc == 0) {
			*out = p;
			p = NULL;
		}
	}
	if (rc == 0)
		w->verify_live = false;
	else if (ours && rc != -EAGAIN)
		keep_live_visible(w);
	verify_drop(w);
	problems_fini(&pb);
	pending_free(p);
	snapshot_free(s);
	if (rc < 0) {
		/* A caller may try again with the same result (-EAGAIN). */
		free(r->paths);
		r->paths = NULL;
		r->paths_len = 0;
	}
	return rc;
}

const char *writer_pending_dir(const struct writer_pending *p)
{
	return p->dir;
}

void writer_abort(struct writer *w, struct writer_pending *p)
{
	if (p == NULL)
		return;
	/* What a full check found (a file changed in place) went with the
	 * generation; the next publish must look again, or it links such
	 * a file forward without a look (only_ours()). */
	if (p->verify)
		w->verify_live = true;
	(void)drop_generation(w, p->gen, "not published");
	keep_live_visible(w);
	pending_free(p);
}

/* Takes `changed` (freed when it cannot add), not `gen`. */
static int retire_add(struct writer *w, char *gen, uint64_t due_ms,
		      uint64_t seq, struct pathset *changed)
{
	struct retired *v = realloc(w->retired,
				    (w->nretired + 1) * sizeof(*v));
	if (v == NULL) {
		pathset_free(changed);
		return -ENOMEM;
	}
	w->retired = v;
	w->retired[w->nretired] = (struct retired){
		.name = gen, .due_ms = due_ms, .seq = seq, .changed = changed,
	};
	w->nretired++;
	return 0;
}

/* Step (3), made ahead: the links that new top-level names need are made
 * before the swap, under names of ours (WRITER_LINK_AHEAD and their
 * index), and renamed into place after it.  A rename takes no new inode:
 * a file system with none left (ENOSPC, EDQUOT) fails the publish before
 * the swap, with the live generation as it was, not after it with names
 * missing. */
struct ahead {
	const char **name; /* top-level names of the new generation */
	bool *astray;	    /* its link there names something else */
	size_t n, cap;
	size_t made;	    /* links made, of the first names */
};

static int ahead_add(struct ahead *a, const char *name, bool astray)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 16;
		const char **nv = realloc(a->name, cap * sizeof(*nv));
		if (nv)
			a->name = nv;
		bool *av = nv ? realloc(a->astray, cap * sizeof(*av)) : NULL;
		if (av == NULL)
			return -ENOMEM;
		a->astray = av;
		a->cap = cap;
	}
	a->name[a->n] = name;
	a->astray[a->n++] = astray;
	return 0;
}

/* The names of p->s whose links are to be made ahead: those the live
 * generation lacks, when its links are trusted to be as the last sync
 * left them (see sync_visible()); else every name not linked already.
 * A name in the way of a link is left to the pass after the swap. */
static int ahead_find(struct writer *w, const struct writer_pending *p,
		      struct ahead *a)
{
	const struct snapshot *s = p->s, *old = w->live;
	bool trusted = old && visible_trusted(w, p->verify);

	if (trusted && !p->names)
		return 0;
	for (size_t i = 0; i < s->n; i = snapshot_subtree_end(s, i)) {
		const char *n = s->v[i].path;
		enum visible v = VIS_ABSENT;
		if (strchr(n, '/') || (trusted && snapshot_find(old, n)))
			continue;
		if (!trusted && visible_state(w, n, &v) < 0)
			continue;
		if (v != VIS_OURS && v != VIS_TAKEN &&
		    ahead_add(a, n, v == VIS_ASTRAY) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* The name the link of a->name[i] is made under. */
static char *ahead_tmp(size_t i)
{
	return log_strdupf(WRITER_LINK_AHEAD "%zu", i);
}

static void ahead_undo(struct writer *w, struct ahead *a)
{
	for (size_t i = 0; i < a->made; i++) {
		char *tmp = ahead_tmp(i);
		if (tmp)
			(void)unlinkat(w->dfd, tmp, 0);
		free(tmp);
	}
	a->made = 0;
}

static int ahead_make(struct writer *w, struct ahead *a, char **err)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < a->n; i++) {
		char *tmp = ahead_tmp(i);
		char *t = fsutil_join(WRITER_DATA, a->name[i]);
		rc = tmp && t ? 0 : -ENOMEM;
		/* One a crash left: recover() removes them, but for one
		 * it could not. */
		if (rc == 0 && symlinkat(t, w->dfd, tmp) < 0 &&
		    (errno != EEXIST || unlinkat(w->dfd, tmp, 0) < 0 ||
		     symlinkat(t, w->dfd, tmp) < 0))
			rc = -errno;
		if (rc == 0)
			a->made = i + 1;
		else
			rc = log_err_set(err, rc,
					 "target %s: visible link %s, made "
					 "before the switch: %s",
					 w->path, a->name[i], strerror(-rc));
		free(tmp);
		free(t);
	}
	if (rc < 0)
		ahead_undo(w, a);
	return rc;
}

/* After the swap: each link made ahead renamed to its name.  One that
 * cannot be (a name taken meanwhile) is removed, and left to
 * sync_visible(), which makes whatever link is still missing. */
static void ahead_place(struct writer *w, struct ahead *a)
{
	for (size_t i = 0; i < a->made; i++) {
		char *tmp = ahead_tmp(i);
		char *t = a->astray[i] ? fsutil_join(WRITER_DATA, a->name[i])
				       : NULL;
		int rc = tmp && (t || !a->astray[i]) ? 0 : -ENOMEM;
		if (rc == 0 && a->astray[i])
			rc = relink_from(w, tmp, a->name[i], t);
		else if (rc == 0 && renameat2(w->dfd, tmp, w->dfd, a->name[i],
					      RENAME_NOREPLACE) < 0)
			rc = -errno;
		if (rc < 0 && tmp)
			(void)unlinkat(w->dfd, tmp, 0);
		free(tmp);
		free(t);
	}
	a->made = 0;
}

static void ahead_fini(struct ahead *a)
{
	free(a->name);
	free(a->astray);
}

/* Step (2), the one atomic step: a ..data_tmp link to the new
 * generation is renamed over ..data.  A reader resolves either the old
 * or the new generation, each complete.  Before it, the links of new
 * names are made ahead (`a`).  On failure the new generation goes, and
 * those links with it. */
static int swap_data(struct writer *w, struct writer_pending *p,
		     struct ahead *a, char **err)
{
	int rc = ahead_find(w, p, a);

	if (rc < 0)
		rc = log_err_set(err, rc, "target %s: %s", w->path,
				 strerror(-rc));
	if (rc == 0)
		rc = ahead_make(w, a, err);
	if (rc == 0)
		rc = link_data(w, p->gen, err);
	if (rc < 0) {
		ahead_undo(w, a);
		writer_abort(w, p);
	}
	return rc;
}

/* Step (5): the replaced generation goes once readers that opened it
 * have had their grace period (it is then kept to be recycled); at
 * once with none.  Takes `gen`. */
static void retire_replaced(struct writer *w, char *gen, uint64_t seq,
			    struct pathset *changed)
{
	if (w->o.grace_ms > 0 &&
	    retire_add(w, gen, writer_now_ms() + w->o.grace_ms, seq,
		       changed) == 0)
		return;
	if (w->o.grace_ms == 0)
		pathset_free(changed);
	/* Before the publish is done, on both cores (see
	 * fsutil_rmtree_halves). */
	int rc = fsutil_rmtree_halves(w->dfd, gen);
	if (rc < 0)
		(void)gen_aside(w->dfd, others_write(w), w->name, w->path,
				gen, "replaced", rc);
	free(gen);
}

int writer_commit(struct writer *w, struct writer_pending *p,
		  struct writer_result *r, char **err)
{
	struct ahead a = {0};
	int rc = swap_data(w, p, &a, err);

	if (rc < 0) {
		ahead_fini(&a);
		return rc;
	}
	/* The swap is durable once the target directory is flushed.  Until
	 * it is, ..data on disk may still name the old generation: keep that
	 * one (a later start removes it) and report the failure. */
	int frc = flushes(w) ? fsutil_fsync(w->dfd) : 0;
	if (frc < 0)
		log_err_set(err, frc,
			    "target %s: flushing the switch to %s: %s; the "
			    "previous generation is kept",
			    w->path, p->gen, strerror(-frc));

	struct snapshot *old = w->live;
	char *old_gen = w->live_gen;
	int old_fd = w->live_fd;
	uint64_t old_seq = w->live_found ? 0 : w->live_seq;
	struct pathset *old_changed = w->live_changed;

	w->took_others = false; /* what it took over is published */
	uint64_t now = writer_now_ms();
	w->burst = w->last_commit_ms && now - w->last_commit_ms < w->o.grace_ms;
	w->last_commit_ms = now;
	detach_source(p->s);
	w->live = p->s;
	classes_adopt(w, &p->cls);
	w->live_gen = p->gen;
	w->live_seq = ++w->seq;
	w->live_found = false;
	w->live_changed = p->changed;
	p->changed = NULL;
	w->live_trusted = true;
	w->live_foreign = false;
	/* All of it, what it linked included (see flush()). */
	w->live_durable = flushes(w) && frc == 0;
	w->live_fd = open_generation(w->dfd, w->live_gen);
	if (w->live_fd < 0)
		log_msg(LOG_LVL_WARN, w->name,
			"target %s: opening %s: %s; unchanged files will be "
			"copied until it opens",
			w->path, w->live_gen, strerror(-w->live_fd));
	p->s = NULL;
	p->gen = NULL;

	/* Steps (3) and (4): the links of new names, made ahead, put in
	 * place only now, so that none ever dangles; then links of names
	 * that left. */
	ahead_place(w, &a);
	ahead_fini(&a);
	int vrc = sync_visible(w, w->live, old, p->verify, p->names, err);

	const char *file = STATE_FILE;
	rc = state_record(w->dfd, &w->slog, old, w->live, w->live_gen,
			  w->o.fsync && frc == 0, &file);
	if (rc < 0)
		log_msg(LOG_LVL_WARN, w->name, "target %s: saving %s: %s",
			w->path, file, strerror(-rc));
	if (old_fd >= 0)
		close(old_fd);
	supersede(w, old);
	if (old_gen && frc == 0) {
		retire_replaced(w, old_gen, old_seq, old_changed);
	} else { /* kept on disk, or none */
		free(old_gen);
		pathset_free(old_changed);
	}
	r->published = true;
	free(r->generation);
	r->generation = strdup(w->live_gen);
	pending_free(p);
	return frc < 0 ? frc : vrc;
}

int writer_publish(struct writer *w, struct snapshot *s,
		   struct writer_result *r, char **err)
{
	struct writer_pending *p = NULL;
	int rc = writer_prepare(w, s, &p, r, err);

	if (rc < 0 || p == NULL)
		return rc;
	return writer_commit(w, p, r, err);
}

/* The spare is a standby of the live generation that was stopped (by a
 * read that found nothing to publish, say): linking the rest of it
 * costs what it lacks. */
static bool standby_resumable(const struct writer *w)
{
	return w->spare && w->spare_kind == SPARE_PARTIAL &&
	       w->spare_seq == w->live_seq && w->spare_left;
}

bool writer_standby_wanted(const struct writer *w)
{
	/* Until a generation has been replaced (after a start), the next
	 * change would link every file; with grace_ms = 0 none is ever
	 * kept, by choice. */
	bool none = w->nretired == 0 && w->o.grace_ms > 0;

	/* A standby a change stopped, when no publish took it, is gone on
	 * with; a replaced generation that is due is recycled into one, off
	 * the way of the next change (see standby_begin()).  Nothing is
	 * written into a target another user can write (or owns) now: the
	 * next publish says why. */
	return (w->burst || none) && !w->o.dry_run &&
	       (!w->spare || standby_resumable(w) ||
		w->spare_kind == SPARE_REPLACED) &&
	       w->live && w->live_fd >= 0 && !w->live_foreign &&
	       !w->verify_live && target_ours(w, NULL) == 0;
}

/* The directories a standby stopped at entry `k` of `s` did not finish:
 * those the entry is in, up to the top (those after it are not there
 * yet, and are made anew), and, for a recycled one, those `before` where
 * it was to be looked at (a standby gone on with starts from the top
 * again, and may stop before it reaches them); NULL when out of
 * memory. */
static struct pathset *standby_left(const struct snapshot *s, size_t k,
				    const struct pathset *before)
{
	struct pathset *u = pathset_new();
	int rc = u ? 0 : -ENOMEM;
	const char *e = k < s->n ? s->v[k].path : "";

	for (size_t len = 0; rc == 0; len++) {
		if (e[len] == '/' || len == 0)
			rc = pathset_add(u, e, len);
		if (e[len] == '\0')
			break;
	}
	if (rc == 0 && before)
		rc = pathset_merge(u, before);
	if (rc < 0) {
		pathset_free(u);
		return NULL;
	}
	pathset_seal(u);
	return u;
}

/* The generation a standby is linked into: a stopped one, or a replaced
 * one that is due, recycled, in which only the directories where it may
 * differ from the live one are looked at; else a new one.  In a burst
 * past its first grace period, that costs what the last publishes
 * changed rather than every file. */
static int standby_begin(struct writer *w, struct writer_pending *p)
{
	uint64_t from = 0;
	bool replaced = w->spare ? w->spare_kind == SPARE_REPLACED
				 : newest_due(w, writer_now_ms()) != SIZE_MAX;

	if (standby_resumable(w) || replaced) {
		if ((p->changed = pathset_new()) == NULL)
			return -ENOMEM;
		pathset_seal(p->changed); /* p->s is the live one */
		p->recycled = recycle_spare(w, p, &from) == 0;
		if (p->recycled)
			p->differ = spare_differs(w, from, p);
	}
	return p->recycled ? 0 : make_generation(w, NULL, &p->gen);
}

/* The entries a standby got through, in both halves. */
static size_t standby_built(const struct writer_pending *p)
{
	return p->built + (p->split ? p->built2 - p->split : 0);
}

/* What a stopped standby left unfinished (standby_left()), in both
 * halves: those of the second where it stopped, unless it was done. */
static struct pathset *standby_left_halves(const struct writer_pending *p,
					   const struct pathset *before)
{
	struct pathset *u = standby_left(p->s, p->built, before);

	if (u == NULL || !p->split || p->built2 == p->s->n)
		return u;
	struct pathset *v = standby_left(p->s, p->built2, u);
	pathset_free(u);
	return v;
}

/* The rate a fresh standby linked at, from enough entries to tell (one
 * gone on with passes over what it has).  One a change stopped early
 * counts too: after a start, that may be all there is. */
static void standby_rate(struct writer *w, const struct writer_pending *p,
			 uint64_t t0_us)
{
	size_t n = standby_built(p);

	/* A thread's rate: a publish links what a stopped standby left on
	 * one, a generation of its own on two (see await_due()). */
	if (!p->recycled && n >= 64)
		w->link_ns = (clock_us(CLOCK_MONOTONIC) - t0_us) * 1000u *
			     (p->split ? 2 : 1) / n;
}

/* A standby is the live generation linked anew, file by file, into a
 * private one (0700, as any generation being written), then flushed:
 * recycled as the spare, it differs from the next generation only in
 * what that one changes.  Readers never saw it, so it needs no grace
 * period.  Stopped, what it holds so far is still the spare, looked at
 * in full when it is recycled. */
int writer_standby(struct writer *w, const atomic_bool *stop, char **err)
{
	struct writer_result r = {0};
	struct problems pb = {0};
	struct writer_pending p = {.s = w->live, .standby = true};

	verify_drop(w);
	if (!writer_standby_wanted(w))
		return 0;
	/* What it learns of the live files goes into the live record. */
	if (snapshot_viewed(w->live))
		return log_err_set(err, -EBUSY,
				   "target %s: the live record is being read",
				   w->path);
	if ((p.act = malloc(w->live->n ? w->live->n : 1)) == NULL ||
	    live_classes(w) < 0) {
		free(p.act);
		return -ENOMEM;
	}
	for (size_t i = 0; i < w->live->n; i++)
		p.act[i] = (w->cls.v[i] & CLS_KIND) == CLS_DIR ? ACT_DIR
							       : ACT_LINK;
	int rc = standby_begin(w, &p);
	uint64_t t0 = clock_us(CLOCK_MONOTONIC);
	if (rc < 0)
		log_err_set(err, rc, "target %s: creating a generation: %s",
			    w->path, strerror(-rc));
	else
		rc = build(w, &p, &r, &pb, stop, err);
	asides_report(w, &pb);
	standby_rate(w, &p, t0);
	/* What it learned of the live files goes into the state only when
	 * that is written whole: the journal records what differs from
	 * live, which already holds it. */
	if (w->live_learned)
		state_log_fini(&w->slog);
	w->live_learned = false;
	/* Recycled, it may still differ where it was to be looked at (and
	 * anywhere, when that was not known). */
	struct pathset *left =
		rc == -ECANCELED && (!p.recycled || p.differ)
			? standby_left_halves(&p, p.recycled ? p.differ
							     : NULL)
			: NULL;
	if (rc == 0 || rc == -ECANCELED) {
		spare_set(w, p.gen, rc == 0 || left ? w->live_seq : 0,
			  rc == 0 ? SPARE_STANDBY : SPARE_PARTIAL, left);
		w->spare_built = standby_built(&p);
		p.gen = NULL;
	} else if (p.gen) {
		(void)drop_generation(w, p.gen, "unfinished");
	}
	if (rc == -ESTALE)
		log_err_set(err, rc, "target %s: a live file is not as it was "
			    "left", w->path);
	free(p.gen);
	free(p.act);
	pathset_free(p.differ);
	pathset_free(p.changed);
	pathset_free(p.spare_left);
	free(r.paths);
	problems_fini(&pb);
	return rc;
}

struct writer_gc {
	int dfd; /* its own descriptor: the writer may be closed meanwhile */
	bool others; /* others_write() of the writer */
	char *path, *name;
	char **gens;
	size_t n;
};

/* Adds `gen` to the generations *gcp removes; false when it cannot (it
 * is kept for the next try). */
static bool gc_add(struct writer *w, struct writer_gc **gcp, char *gen)
{
	struct writer_gc *gc = *gcp;

	if (gc == NULL) {
		gc = calloc(1, sizeof(*gc));
		if (gc)
			gc->dfd = fcntl(w->dfd, F_DUPFD_CLOEXEC, 0);
		if (gc == NULL || gc->dfd < 0) {
			free(gc);
			return false;
		}
		gc->others = others_write(w);
		gc->path = strdup(w->path);
		gc->name = w->name ? strdup(w->name) : NULL;
		gc->gens = calloc(w->nretired + w->ndrop + 1,
				  sizeof(*gc->gens));
		*gcp = gc;
	}
	if (gc->gens == NULL)
		return false;
	gc->gens[gc->n++] = gen;
	return true;
}

/* When a replaced generation that is due goes: it is kept for one more
 * grace period while no spare is free for it, as a publish soon after
 * can recycle it instead of linking every file into a new one. */
static uint64_t reserve_until(const struct writer *w, const struct retired *t)
{
	return t->due_ms + w->o.grace_ms;
}

/* When `t` next comes due or leaves the reserve, as of `now`. */
static uint64_t retired_until(const struct writer *w, const struct retired *t,
			      uint64_t now)
{
	return t->due_ms > now ? t->due_ms : reserve_until(w, t);
}

/* A generation that is due becomes the spare, to be recycled into the
 * next one, when there is none or only a standby stopped partway (which
 * goes); else it stays in reserve (see reserve_until()), and the newest
 * whose reserve ran out takes the spare's place (the newest replaced one
 * is the one kept at rest).  The others are taken, and those dropped.
 * `all` takes the spare too. */
struct writer_gc *writer_gc_take(struct writer *w, bool all, uint64_t *next_ms)
{
	uint64_t now = writer_now_ms(), next = 0;
	struct writer_gc *gc = NULL;
	size_t k = 0, expired = SIZE_MAX;
	size_t newest = all ? SIZE_MAX : newest_due(w, now);

	for (size_t i = 0; i < w->ndrop; i++)
		if (!gc_add(w, &gc, w->drop[i]))
			w->drop[k++] = w->drop[i]; /* the next time */
	w->ndrop = k;
	k = 0;

	/* A standby of the live generation is what the next publish wants:
	 * while publishes come within a grace period of each other, none out
	 * of its reserve takes its place (recycled, it would be read where
	 * every publish since changed something, or in full). */
	bool keep = w->spare && w->spare_kind == SPARE_STANDBY &&
		    w->spare_seq == w->live_seq &&
		    now - w->last_commit_ms < w->o.grace_ms;

	for (size_t i = 0; !all && !keep && i < w->nretired; i++)
		if (reserve_until(w, &w->retired[i]) <= now)
			expired = i;
	for (size_t i = 0; i < w->nretired; i++) {
		struct retired t = w->retired[i];
		uint64_t until = retired_until(w, &t, now);
		if (!all && until > now && !(i == newest && spare_yields(w))) {
			if (next == 0 || until < next)
				next = until;
			w->retired[k++] = t;
			continue;
		}
		if ((i == newest || i == expired) && recycles_replaced(w)) {
			char *old = w->spare;
			spare_set(w, t.name, t.seq, SPARE_REPLACED, NULL);
			pathset_free(t.changed);
			/* Not a replaced one: never recycled as one. */
			if (old && !gc_add(w, &gc, old) && !drop_add(w, old))
				t = (struct retired){.name = old,
						     .due_ms = t.due_ms};
			else
				continue;
		}
		if (gc_add(w, &gc, t.name))
			pathset_free(t.changed);
		else
			w->retired[k++] = t;
	}
	w->nretired = k;
	if (all && w->spare && gc_add(w, &gc, w->spare))
		spare_set(w, NULL, 0, SPARE_REPLACED, NULL);
	/* What could not be taken now is tried again in a second. */
	if (w->ndrop && (next == 0 || next > now + 1000))
		next = now + 1000;
	if (next_ms)
		*next_ms = next;
	return gc;
}

uint64_t writer_next_due(const struct writer *w)
{
	uint64_t now = writer_now_ms(), next = 0;

	if (w->ndrop)
		return now; /* dropped: due at once */

	for (size_t i = 0; i < w->nretired; i++) {
		uint64_t until = retired_until(w, &w->retired[i], now);
		if (next == 0 || until < next)
			next = until;
	}
	return next;
}

int writer_gc_run(struct writer_gc *gc)
{
	int rc = 0;

	for (size_t i = 0; gc && i < gc->n; i++) {
		int r = fsutil_rmtree(gc->dfd, gc->gens[i]);
		if (r < 0)
			r = gen_aside(gc->dfd, gc->others, gc->name, gc->path,
				      gc->gens[i], "replaced", r);
		if (r < 0 && rc == 0)
			rc = r;
	}
	return rc;
}

void writer_gc_free(struct writer_gc *gc)
{
	if (gc == NULL)
		return;
	for (size_t i = 0; i < gc->n; i++)
		free(gc->gens[i]);
	free(gc->gens);
	free(gc->path);
	free(gc->name);
	close(gc->dfd);
	free(gc);
}

int writer_retire(struct writer *w, bool all, uint64_t *next_ms)
{
	struct writer_gc *gc = writer_gc_take(w, all, next_ms);
	int rc = writer_gc_run(gc);

	writer_gc_free(gc);
	return rc;
}

void writer_retire_wait(struct writer *w)
{
	uint64_t last = 0;

	/* Not the reserve after (reserve_until()): once due, a generation
	 * is no reader's to keep. */
	for (size_t i = 0; i < w->nretired; i++)
		if (w->retired[i].due_ms > last)
			last = w->retired[i].due_ms;
	if (last > 0)
		sleep_until_ms(last);
	writer_retire(w, false, NULL);
}

/* The target this writer made, left empty, is removed: through the
 * directory it is in, found from it (not by its path again), and only
 * where nobody else can move another directory to its name meanwhile. */
static void unmake_target(struct writer *w)
{
	size_t len = strlen(w->path);
	struct stat st, in, at;

	while (len > 1 && w->path[len - 1] == '/')
		len--;
	size_t b = len;
	while (b > 0 && w->path[b - 1] != '/')
		b--;
	char *name = strndup(w->path + b, len - b);
	int pfd = openat(w->dfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (name && pfd >= 0 && strcmp(name, ".") != 0 &&
	    strcmp(name, "..") != 0 && fstat(w->dfd, &st) == 0 &&
	    fstat(pfd, &in) == 0 && fsutil_trusted_dir(pfd, &in) &&
	    fstatat(pfd, name, &at, AT_SYMLINK_NOFOLLOW) == 0 &&
	    at.st_dev == st.st_dev && at.st_ino == st.st_ino &&
	    fsutil_dir_empty(w->dfd) && unlinkat(pfd, name, AT_REMOVEDIR) == 0)
		w->made_target = false;
	if (pfd >= 0)
		close(pfd);
	free(name);
}

/* Nothing ever published (a plain file in the way, say, or no source):
 * the target is left as it was found, without the lock file (and not
 * there at all when a one-shot writer made it), unless there is more of ours
 * to go first (what `gc` is to remove, a generation left over, which
 * the next writer must find locked as a target's to remove it), or an
 * error recorded, which --status reads. */
static void drop_unused_lock(struct writer *w, const struct writer_gc *gc)
{
	struct stat st;
	char *gen = NULL;

	if (gc == NULL && w->ndrop == 0 && w->spare == NULL &&
	    never_published(w) &&
	    fstatat(w->dfd, STATE_ERROR_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
	    first_generation(w, &gen) == 0) {
		drop_made_lock(w);
		/* Not a daemon's: a consumer may hold a bind mount of it. */
		if (w->o.one_shot && w->made_target && w->lock == LOCK_NONE)
			unmake_target(w);
	}
	free(gen);
}

/* Takes every replaced generation but the one replaced last (the list
 * is in the order they were replaced), and the spare when that one is
 * left beside it. */
struct writer_gc *writer_gc_take_exit(struct writer *w)
{
	struct writer_gc *gc = writer_gc_take(w, false, NULL);
	size_t k = 0;

	for (size_t i = 0; i < w->nretired; i++) {
		if (i + 1 < w->nretired && gc_add(w, &gc, w->retired[i].name))
			pathset_free(w->retired[i].changed);
		else
			w->retired[k++] = w->retired[i];
	}
	w->nretired = k;
	/* A standby is no replaced generation: it never stays. */
	if ((w->nretired == 1 || w->spare_kind != SPARE_REPLACED) && w->spare &&
	    gc_add(w, &gc, w->spare))
		spare_set(w, NULL, 0, SPARE_REPLACED, NULL);
	drop_unused_lock(w, gc);
	return gc;
}

void writer_retire_exit(struct writer *w)
{
	struct writer_gc *gc = writer_gc_take_exit(w);

	(void)writer_gc_run(gc); /* logged there */
	writer_gc_free(gc);
}
