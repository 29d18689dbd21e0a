#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "publish.h"
#include "snapshot.h"
#include "state.h"
#include "status.h"
#include "writer.h"

/* A read torn by a change is tried this many times, as --once does. */
#define TRIES 5

enum verdict {
	V_SAME,	   /* the target equals the source */
	V_BEHIND,  /* paths differ */
	V_FAILS,   /* a publish would fail */
	V_UNKNOWN, /* cannot tell */
};

struct view {
	const struct conf_sync *c;
	int dfd;   /* the target, -1 when it cannot be opened */
	uid_t target_uid; /* its owner, when neither root nor us */
	char *why; /* why not, or why the comparison did not end */
	/* ..data */
	char *live;
	int live_rc;
	struct timespec live_time;
	/* the state file */
	int state_rc;
	char *state_gen;
	struct timespec state_time;
	bool state_sound;
	/* the comparison, as a publish makes it */
	enum verdict v;
	bool never; /* no live generation to compare with */
	struct writer_result r;
	int sum_rc;
	uint64_t files, bytes;
	/* who holds the target's lock */
	pid_t holder;
	bool holder_hidden; /* none seen, but not every process could be */
	bool lock_removed; /* it holds a lock file that was removed */
	char *comm;
	size_t aside; /* entries of WRITER_ASIDE */
	/* the error file */
	int err_rc;
	uint64_t err_ms;
	char *err_msg;
};

/* "  label:       value", the value escaped as in text log lines. */
static void put(FILE *out, const char *label, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void put(FILE *out, const char *label, const char *fmt, ...)
{
	va_list ap;
	char *text = NULL, *esc;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	esc = text ? log_escape(text) : NULL;
	fprintf(out, "  %-12s %s\n", label, esc ? esc : "?");
	free(text);
	free(esc);
}

/* "2026-11-25T16:04:05Z (3 min ago)" */
static void fmt_when(char *buf, size_t size, time_t t)
{
	struct tm tm;
	char iso[32] = "?";
	long long ago = (long long)(time(NULL) - t);

	if (gmtime_r(&t, &tm))
		strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (ago < 0)
		snprintf(buf, size, "%s (in the future)", iso);
	else if (ago < 120)
		snprintf(buf, size, "%s (%lld s ago)", iso, ago);
	else if (ago < 2 * 3600)
		snprintf(buf, size, "%s (%lld min ago)", iso, ago / 60);
	else if (ago < 2 * 86400)
		snprintf(buf, size, "%s (%lld h ago)", iso, ago / 3600);
	else
		snprintf(buf, size, "%s (%lld days ago)", iso, ago / 86400);
}

/* Without creating it, and resolved as the daemon resolves it. */
static void open_target(struct view *v)
{
	char *why = NULL;
	int fd = fsutil_chase(v->c->target, 0, O_RDONLY | O_DIRECTORY, NULL,
			      &why);

	v->dfd = fd;
	if (fd >= 0)
		return;
	v->v = V_UNKNOWN;
	if (fd == -ENOENT)
		v->why = log_strdupf("target %s does not exist", v->c->target);
	else
		v->why = log_strdupf("target %s: %s", v->c->target,
				     fsutil_chase_dir_why(why, v->c->target,
							  fd));
	free(why);
}

/* How many entries WRITER_ASIDE holds (0: none, or no such directory):
 * what the writer moved out of generations, for an administrator. */
static size_t count_aside(int dfd)
{
	DIR *d = fsutil_opendir_at(dfd, WRITER_ASIDE);
	struct dirent *de;
	size_t n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void read_target(struct view *v)
{
	struct stat st;

	v->live_rc = fsutil_readlinkat(v->dfd, WRITER_DATA, &v->live);
	/* ..data is renamed into place at each publish: its time is when
	 * the live generation went live. */
	if (v->live_rc == 0 &&
	    fstatat(v->dfd, WRITER_DATA, &st, AT_SYMLINK_NOFOLLOW) == 0)
		v->live_time = st.st_mtim;
	v->state_rc = state_peek(v->dfd, &v->state_gen, &v->state_time,
				 &v->state_sound);
	v->aside = count_aside(v->dfd);
}

/* The holder of the daemon's flock, as /proc names it: taking the
 * lock, even for a moment, could make a daemon that starts meanwhile
 * give up on the target. */
static void read_daemon(struct view *v)
{
	char path[64], name[64];
	struct stat st;
	ino_t named = 0;
	FILE *f;

	if (fstatat(v->dfd, WRITER_LOCK, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		named = st.st_ino;
		v->holder = fsutil_flock_holder_of(&st);
		v->holder_hidden = v->holder == -EACCES;
	}
	/* Else one that holds a lock file removed or moved away. */
	if (v->holder <= 0 && fstat(v->dfd, &st) == 0) {
		pid_t other = fsutil_removed_lock_holder(&st, named);
		v->holder = other > 0 ? other : 0;
		v->lock_removed = other > 0;
	}
	if (v->holder <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)v->holder);
	f = fopen(path, "re");
	if (f && fgets(name, sizeof(name), f)) {
		name[strcspn(name, "\n")] = '\0';
		v->comm = strdup(name);
	}
	if (f)
		fclose(f);
}

/* Reads the source and compares it with the live generation, as a dry
 * run of a publish does; a dry run never prepares a generation. */
static int compare_tries(struct writer *w, const char *source,
			 const struct snapshot_opts *so,
			 struct writer_result *r, char **err, bool *read_fail)
{
	for (int attempt = 1;; attempt++) {
		struct snapshot *s = NULL;
		struct writer_pending *p = NULL;
		free(*err);
		*err = NULL;
		writer_result_fini(r);
		int rc = snapshot_take(source, so, &s, err);
		*read_fail = rc < 0;
		if (rc == 0)
			rc = writer_prepare(w, s, &p, r, err);
		writer_abort(w, p);
		if (rc != -EAGAIN || attempt == TRIES)
			return rc;
		struct timespec ts = {0, 20000000L * attempt};
		nanosleep(&ts, NULL);
	}
}

/* The target belongs to a user who is neither root nor us (v->target_uid
 * says who). */
static bool target_foreign(struct view *v)
{
	struct stat st;

	if (v->dfd < 0 || fstat(v->dfd, &st) < 0 ||
	    fsutil_trusted_uid(st.st_uid))
		return false;
	v->target_uid = st.st_uid;
	return true;
}

/* The live generation belongs to a user who is neither root nor us:
 * the daemon's own, or someone who planted it. */
static char *foreign_why(const struct view *v)
{
	struct stat st;

	if (v->live && fstatat(v->dfd, v->live, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !fsutil_trusted_uid(st.st_uid))
		return log_strdupf("the live generation belongs to uid %u: run "
				   "--status as that user",
				   (unsigned)st.st_uid);
	return log_strdupf("others can change the live generation");
}

static void compare(struct view *v)
{
	const struct conf_sync *c = v->c;
	struct writer_opts wo = publish_writer_opts(c, true);
	struct snapshot_opts so = publish_snapshot_opts(c);
	struct writer *w = NULL;
	char *err = NULL;
	bool read_fail = false;

	wo.quiet = true;
	int rc = writer_open(c->target, &wo, &w, &err);
	if (rc == -EPERM && target_foreign(v)) {
		/* Refused as ours; a daemon run as its owner takes it. */
		v->sum_rc = -ENODATA;
		v->v = V_UNKNOWN;
		v->why = log_strdupf("the target belongs to uid %u: run "
				     "--status as that user",
				     (unsigned)v->target_uid);
		free(err);
		return;
	}
	v->sum_rc = rc == 0 ? writer_live_summary(w, &v->files, &v->bytes)
			    : -ENODATA; /* not known */
	/* What a publish makes of the state file, read whole. */
	if (rc == 0 && v->state_rc == 0)
		v->state_rc = writer_state_refused(w);
	if (rc == 0 && v->sum_rc == -EPERM) {
		/* Not trusted, so every file counts as new: what the daemon
		 * sees only its user can tell. */
		writer_close(w);
		v->v = V_UNKNOWN;
		v->why = foreign_why(v);
		return;
	}
	if (rc == 0) {
		/* A followed link must not lead the walk into the target. */
		(void)writer_target_id(w, &so.avoid_dev, &so.avoid_ino);
		rc = compare_tries(w, c->source, &so, &v->r, &err, &read_fail);
		v->never = writer_live_generation(w) == NULL;
		writer_close(w);
	}
	if (rc == 0) {
		size_t n = v->r.added + v->r.changed + v->r.removed;
		v->v = n == 0 && !v->never ? V_SAME : V_BEHIND;
	} else if (rc == -EAGAIN) {
		v->v = V_UNKNOWN;
		v->why = log_strdupf("the source kept changing while it was "
				     "read (%s)",
				     err ? err : strerror(-rc));
	} else {
		/* Unreadable entries: not an answer, for a user who may not
		 * read what the daemon reads. */
		v->v = read_fail || rc == -EACCES ? V_UNKNOWN : V_FAILS;
		v->why = err ? strdup(err) : strdup(strerror(-rc));
	}
	free(err);
}

static void print_live(FILE *out, const struct view *v)
{
	char when[96];

	if (v->live_rc == -ENOENT) {
		put(out, "live:", "none (nothing published yet)");
	} else if (v->live_rc == -EINVAL) {
		put(out, "live:", "unknown: %s is not a symbolic link",
		    WRITER_DATA);
	} else if (v->live_rc < 0) {
		put(out, "live:", "unknown: %s: %s", WRITER_DATA,
		    strerror(-v->live_rc));
	} else {
		put(out, "live:", "%s", v->live);
		fmt_when(when, sizeof(when), v->live_time.tv_sec);
		put(out, "published:", "%s", when);
	}
}

/* Only when there is something: an administrator has to look at it. */
static void print_aside(FILE *out, const struct view *v)
{
	if (v->aside > 0)
		put(out, "set aside:", "%zu entr%s in %s/%s that other users "
		    "put into generations, not atomsync's to remove: to be "
		    "looked at and removed by an administrator",
		    v->aside, v->aside == 1 ? "y" : "ies", v->c->target,
		    WRITER_ASIDE);
}

static void print_content(FILE *out, const struct view *v)
{
	if (v->sum_rc == 0)
		put(out, "content:", "%llu file%s, %llu byte%s",
		    (unsigned long long)v->files, v->files == 1 ? "" : "s",
		    (unsigned long long)v->bytes, v->bytes == 1 ? "" : "s");
	else if (v->sum_rc == -EPERM)
		put(out, "content:", "not counted: %s names a generation that "
		    "another user made or can change", WRITER_DATA);
}

/* What the state file says: what a restarted daemon trusts. */
static void print_state(FILE *out, const struct view *v)
{
	const char *label = "state file:";
	char when[96];

	if (v->state_rc == 0) {
		bool live = v->live && strcmp(v->state_gen, v->live) == 0;
		fmt_when(when, sizeof(when), v->state_time.tv_sec);
		put(out, label, "describes %s%s, from a full read of the "
		    "source %s%s",
		    live ? "the live generation" : v->state_gen,
		    live ? "" : " (not the live one: a publish compares "
				"content)",
		    when,
		    v->state_sound ? "" : "; not flushed before the machine "
					  "restarted");
	} else if (v->state_rc == -ENOENT) {
		put(out, label, "none (a publish compares content)");
	} else if (v->state_rc == -EPERM) {
		put(out, label, "not trusted: another user could have written "
		    "it");
	} else if (v->state_rc == -EINVAL) {
		put(out, label, "damaged (a publish compares content)");
	} else if (v->state_rc == -EFBIG) {
		put(out, label, "lists more entries than max_files (a publish "
		    "compares content)");
	} else {
		put(out, label, "cannot be read: %s", strerror(-v->state_rc));
	}
}

static void print_verdict(FILE *out, const struct view *v)
{
	const struct writer_result *r = &v->r;
	size_t n = r->added + r->changed + r->removed;

	switch (v->v) {
	case V_SAME:
		put(out, "in step:", "yes");
		break;
	case V_BEHIND:
		if (v->never)
			put(out, "in step:", "no, behind the source: nothing "
			    "published yet (%zu path%s to add)",
			    n, n == 1 ? "" : "s");
		else
			put(out, "in step:", "no, behind the source: %zu path%s "
			    "differ%s (%zu added, %zu changed, %zu removed)",
			    n, n == 1 ? "" : "s", n == 1 ? "s" : "", r->added,
			    r->changed, r->removed);
		break;
	case V_FAILS:
		put(out, "in step:", "no, a publish would fail: %s", v->why);
		break;
	case V_UNKNOWN:
		put(out, "in step:", "cannot tell: %s", v->why);
		break;
	}
}

static void print_daemon(FILE *out, const struct view *v)
{
	if (v->dfd < 0)
		put(out, "daemon:", "cannot tell: the target cannot be opened");
	else if (v->holder > 0)
		put(out, "daemon:", "running, pid %ld%s%s%s%s", (long)v->holder,
		    v->comm ? " (" : "", v->comm ? v->comm : "",
		    v->comm ? ")" : "",
		    v->lock_removed ? "; its lock file was removed or moved: "
				      "restart it to lock the target again"
				    : "");
	else if (v->holder_hidden && geteuid() != 0)
		put(out, "daemon:", "cannot tell: the open files of root's "
		    "processes are not uid %u's to look at (run as root)",
		    (unsigned)geteuid());
	else if (v->holder_hidden)
		put(out, "daemon:", "cannot tell: the open files of other "
		    "processes cannot be looked at here");
	else
		put(out, "daemon:", "not running (nothing holds the target's "
		    "lock)");
}

/* The daemon records its last error in the target, which it cannot do
 * when the error is that it cannot write there. */
static void print_error(FILE *out, const struct view *v)
{
	const char *label = "last error:";
	char when[96];

	if (v->dfd < 0) {
		put(out, label, "unknown: the target cannot be opened (see the "
		    "daemon's log)");
	} else if (v->err_rc == 0 && v->v == V_SAME && v->holder <= 0) {
		/* Left by a daemon that stopped failing to publish what the
		 * source no longer holds. */
		fmt_when(when, sizeof(when), (time_t)(v->err_ms / 1000));
		put(out, label, "none (the target is in step; a daemon no "
		    "longer running recorded at %s: %s)", when, v->err_msg);
	} else if (v->err_rc == 0) {
		fmt_when(when, sizeof(when), (time_t)(v->err_ms / 1000));
		put(out, label, "%s: %s", when, v->err_msg);
	} else if (v->err_rc == -ENOENT && v->v == V_SAME) {
		put(out, label, "none");
	} else if (v->err_rc == -ENOENT && v->holder > 0) {
		/* Behind, with no error: a publish to come, or an error it
		 * cannot record; which, its log says. */
		put(out, label, "none recorded (the daemon may yet publish "
		    "the difference; an error that keeps it from writing the "
		    "target cannot be recorded there: see its log)");
	} else if (v->err_rc == -ENOENT) {
		put(out, label, "none recorded");
	} else if (v->err_rc == -EPERM) {
		put(out, label, "not shown: %s could have been written by "
		    "another user", STATE_ERROR_FILE);
	} else if (v->err_rc == -EINVAL) {
		put(out, label, "unknown: %s is damaged", STATE_ERROR_FILE);
	} else {
		put(out, label, "unknown: %s: %s", STATE_ERROR_FILE,
		    strerror(-v->err_rc));
	}
}

int status_show(const struct conf_sync *c, FILE *out, bool *ok)
{
	struct view v = {.c = c, .dfd = -1};
	char *name = log_escape(c->name);

	if (name == NULL)
		return -ENOMEM;
	open_target(&v);
	if (v.dfd >= 0) {
		read_target(&v);
		compare(&v);
		/* After the comparison, which may take a while: the
		 * freshest answer. */
		read_daemon(&v);
		v.err_rc = state_error_load(v.dfd, &v.err_ms, &v.err_msg);
	}
	fprintf(out, "sync \"%s\"\n", name);
	put(out, "source:", "%s", c->source);
	put(out, "target:", "%s", c->target);
	if (v.dfd >= 0) {
		print_live(out, &v);
		print_state(out, &v);
		print_content(out, &v);
		print_aside(out, &v);
	}
	print_verdict(out, &v);
	print_daemon(out, &v);
	print_error(out, &v);
	/* A daemon on a lock file that is gone is found by a second one
	 * only through /proc (not from another PID namespace): it needs
	 * a restart. */
	*ok = v.v == V_SAME && !(v.holder > 0 && v.err_rc == 0) &&
	      !v.lock_removed;
	if (v.dfd >= 0)
		close(v.dfd);
	writer_result_fini(&v.r);
	free(name);
	free(v.why);
	free(v.live);
	free(v.state_gen);
	free(v.comm);
	free(v.err_msg);
	return 0;
}

int status_show_all(const struct conf *conf, FILE *out)
{
	int rc = 0;

	for (size_t i = 0; i < conf->nsyncs; i++) {
		bool ok = false;
		if (i > 0)
			putc('\n', out);
		if (status_show(&conf->syncs[i], out, &ok) < 0 || !ok)
			rc = -EAGAIN;
	}
	if (fflush(out) != 0)
		rc = -EIO;
	return rc;
}
