#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYS_PIDFD_H
#include <sys/pidfd.h>
#endif

#include "command.h"
#include "fsutil.h"
#include "hook.h"
#include "launch.h"
#include "log.h"
#include "snapshot.h"

/* Since Linux 5.1 a new system call has one number on every
 * architecture (but alpha). */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* Kept of a command's stderr, for the log. */
#define TAIL_BYTES 4096
#define TAIL_LOG_BYTES 512

/* The command's first process, the leader of its process group. */
enum hook_leader {
	LEADER_RUNS,
	LEADER_EXITED,	/* a zombie still: the group's id is nobody else's */
	LEADER_REAPED,
};

/* How far a timeout has gone in stopping the group. */
enum hook_stop {
	STOP_NONE,
	STOP_TERM_SENT, /* SIGKILL follows, leader or not */
	STOP_KILL_SENT,
};

struct hook {
	uv_signal_t child; /* SIGCHLD: the leader's exit, seen unreaped */
	uv_pipe_t err;
	uv_timer_t timeout;
	uv_timer_t drain;
	unsigned open_handles;
	hook_done_cb done;
	void *data;
	char tail[TAIL_BYTES];
	size_t tail_len;
	enum hook_leader leader;
	enum hook_stop stop;
	bool eof, finished, timed_out;
	int64_t status;
	int term_signal;
	int pid;
	unsigned timeout_s;
};


/* An environment under construction. */
struct envb {
	char **v;
	size_t n;
	bool nomem;
};

static void env_add(struct envb *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void env_add(struct envb *b, const char *fmt, ...)
{
	va_list ap;
	char *e = NULL;

	if (b->nomem)
		return;
	va_start(ap, fmt);
	if (vasprintf(&e, fmt, ap) < 0)
		e = NULL;
	va_end(ap);
	char **v = e ? realloc(b->v, (b->n + 2) * sizeof(*v)) : NULL;
	if (v == NULL) {
		free(e);
		b->nomem = true;
		return;
	}
	b->v = v;
	b->v[b->n++] = e;
	b->v[b->n] = NULL;
}

/* The hook_env words: NAME=value as given, NAME with the daemon's value
 * when it has one. */
static void env_pass(struct envb *b, char *const *pass, size_t npass)
{
	for (size_t i = 0; i < npass; i++) {
		const char *val = strchr(pass[i], '=') ? NULL : getenv(pass[i]);
		if (val)
			env_add(b, "%s=%s", pass[i], val);
		else if (strchr(pass[i], '='))
			env_add(b, "%s", pass[i]);
	}
}

char **hook_env(const struct hook_vars *v)
{
	struct envb b = {0};
	const char *path = getenv("PATH"), *lang = getenv("LANG");

	env_pass(&b, v->pass, v->npass);
	if (!launch_env_value(b.v, "PATH"))
		env_add(&b, "PATH=%s", path ? path : HOOK_DEFAULT_PATH);
	if (lang && !launch_env_value(b.v, "LANG"))
		env_add(&b, "LANG=%s", lang);
	env_add(&b, "ATOMSYNC_NAME=%s", v->name);
	env_add(&b, "ATOMSYNC_TARGET=%s", v->target);
	env_add(&b, "ATOMSYNC_GENERATION=%s", v->gen ? v->gen : "");
	if (v->gen_dir)
		env_add(&b, "ATOMSYNC_GENERATION_DIR=%s", v->gen_dir);
	if (v->changed >= 0)
		env_add(&b, "ATOMSYNC_CHANGED=%ld", v->changed);
	if (v->changed_file)
		env_add(&b, "ATOMSYNC_CHANGED_FILE=/dev/fd/3");
	if (v->incomplete)
		env_add(&b, "ATOMSYNC_CHANGED_INCOMPLETE=1");
	if (b.nomem) {
		hook_env_free(b.v);
		return NULL;
	}
	return b.v;
}

void hook_changes_fini(struct hook_changes *c)
{
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

/* Appends the path at p (NUL-ended) to `to`, unless that would pass a
 * bound; false then. */
static bool changes_put(struct hook_changes *to, const char *p)
{
	size_t n = strlen(p) + 1;

	if (to->n == HOOK_CHANGES_MAX || to->len + n > HOOK_CHANGES_MAX_BYTES)
		return false;
	memcpy(to->buf + to->len, p, n);
	to->len += n;
	to->n++;
	return true;
}

void hook_changes_add(struct hook_changes *c, const char *list, size_t len,
		      bool incomplete)
{
	size_t cap = c->len + len, ia = 0, ib = 0;
	struct hook_changes m = {.incomplete = c->incomplete || incomplete};

	if (len == 0) {
		c->incomplete = m.incomplete;
		return;
	}
	m.buf = malloc(cap < HOOK_CHANGES_MAX_BYTES ? cap : HOOK_CHANGES_MAX_BYTES);
	if (m.buf == NULL) {
		c->incomplete = true; /* what it has stays */
		return;
	}
	/* Both are in order: merge them, each path once. */
	while (ia < c->len || ib < len) {
		const char *a = ia < c->len ? c->buf + ia : NULL;
		const char *b = ib < len ? list + ib : NULL;
		int cmp = a == NULL ? 1 : b == NULL ? -1 : snapshot_path_cmp(a, b);
		if (!changes_put(&m, cmp <= 0 ? a : b)) {
			m.incomplete = true;
			break;
		}
		if (cmp <= 0)
			ia += strlen(a) + 1;
		if (cmp >= 0)
			ib += strlen(b) + 1;
	}
	free(c->buf);
	*c = m;
}

/* Where memfd_create is not allowed: a file with no name in /tmp. */
static int changes_tmpfile(void)
{
	int fd = open("/tmp", O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int hook_changes_fd(const struct hook_changes *c)
{
	int fd = memfd_create("atomsync-changed", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 && (fd = changes_tmpfile()) < 0)
		return fd;
	for (size_t off = 0; off < c->len;) {
		ssize_t w = write(fd, c->buf + off, c->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		off += (size_t)w;
	}
	/* The command reads it from the start, and cannot change it for
	 * whoever reads it after (sealing is best effort: a tmpfile
	 * cannot be sealed, and is the command's alone anyway). */
	if (lseek(fd, 0, SEEK_SET) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	(void)fcntl(fd, F_ADD_SEALS,
		    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
	return fd;
}

void hook_env_free(char **env)
{
	command_argv_free(env);
}

/* A process id as a pidfile holds it: digits, white space around them. */
static int parse_pid(const char *buf, int *pid)
{
	char *end;

	while (isspace((unsigned char)*buf))
		buf++;
	if (!isdigit((unsigned char)*buf))
		return -EINVAL;
	errno = 0;
	long v = strtol(buf, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	if (errno || *end || v < 2 || v > HOOK_PID_MAX)
		return -EINVAL;
	*pid = (int)v;
	return 0;
}

/* The pidfile's owner and type, as OpenSSH's StrictModes has them: a
 * file that someone else can write names whichever process they like. */
static int pidfile_trusted(const char *pidfile, const struct stat *st,
			   char **err)
{
	if (!S_ISREG(st->st_mode))
		return log_err_set(err, -EPERM,
				   "reload_pidfile %s: not a regular file; "
				   "refusing it",
				   pidfile);
	if (!fsutil_trusted_uid(st->st_uid))
		return log_err_set(err, -EPERM,
				   "reload_pidfile %s: owned by uid %u, not by "
				   "root or atomsyncd's user; refusing it",
				   pidfile, (unsigned)st->st_uid);
	/* Another name of a file of root's, linked into place by another
	 * user (where fs.protected_hardlinks is off), passes every other
	 * check. */
	if (st->st_nlink > 1)
		return log_err_set(err, -EPERM,
				   "reload_pidfile %s: has %lu names, one of "
				   "which another user could have made; "
				   "refusing it",
				   pidfile, (unsigned long)st->st_nlink);
	if (st->st_mode & 0022)
		return log_err_set(err, -EPERM,
				   "reload_pidfile %s: writable by %s (mode "
				   "%04o); refusing it",
				   pidfile, st->st_mode & 0020 ? "its group"
							       : "others",
				   (unsigned)(st->st_mode & 07777));
	return 0;
}

int hook_read_pidfile(const char *pidfile, int *pid, struct stat *st,
		      char **err)
{
	char *why = NULL, buf[64];
	/* O_NONBLOCK: a FIFO must not hold up the loop before it is seen
	 * for what it is. */
	int fd = fsutil_chase(pidfile,
			      FSUTIL_CHASE_NOFOLLOW | FSUTIL_CHASE_TRUSTED |
				      FSUTIL_CHASE_PLACED,
			      O_RDONLY | O_NONBLOCK | O_NOCTTY, NULL, &why);

	if (fd < 0) {
		int rc = log_err_set(err, fd, "reload_pidfile %s: %s", pidfile,
				     fsutil_chase_why(why, pidfile, fd));
		free(why);
		return rc;
	}
	int rc = fstat(fd, st) < 0 ? -errno : 0;
	if (rc < 0)
		rc = log_err_set(err, rc, "reload_pidfile %s: %s", pidfile,
				 strerror(-rc));
	else
		rc = pidfile_trusted(pidfile, st, err);
	ssize_t n = rc < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
	if (rc == 0 && n < 0)
		rc = log_err_set(err, -errno, "reload_pidfile %s: %s", pidfile,
				 strerror(errno));
	close(fd);
	if (rc < 0)
		return rc;
	size_t len = n > 0 ? (size_t)n : 0;
	buf[len] = '\0';
	/* A pidfile is a number; anything longer is something else. */
	if (len == sizeof(buf) - 1 || parse_pid(buf, pid) < 0)
		return log_err_set(err, -EINVAL,
				   "reload_pidfile %s: no process id in it",
				   pidfile);
	return 0;
}

int hook_pidfd_open(int pid)
{
#ifdef HAVE_PIDFD_OPEN
	int fd = pidfd_open(pid, 0);
#else
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	return fd < 0 ? -errno : fd;
}

static int pidfd_signal(int pidfd, int sig)
{
#ifdef HAVE_PIDFD_SEND_SIGNAL
	int rc = pidfd_send_signal(pidfd, sig, NULL, 0);
#else
	int rc = (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#endif
	return rc < 0 ? -errno : 0;
}

/* When process pid started, in ns of CLOCK_REALTIME: field 22 of
 * /proc/PID/stat, in clock ticks since boot.  -ENOENT and the like when
 * /proc does not show it. */
static int proc_start_ns(int pid, int64_t *ns)
{
	char *path, buf[2048];
	struct timespec real, boot;

	if (asprintf(&path, "/proc/%d/stat", pid) < 0)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	free(path);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* The name in parentheses may hold anything: start after its end. */
	char *p = strrchr(buf, ')');
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || !isdigit((unsigned char)p[1]))
		return -EIO;
	unsigned long long ticks = strtoull(p + 1, NULL, 10);
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0 || clock_gettime(CLOCK_REALTIME, &real) < 0 ||
	    clock_gettime(CLOCK_BOOTTIME, &boot) < 0)
		return -EIO;
	int64_t boot_ns = ((int64_t)real.tv_sec - boot.tv_sec) * 1000000000LL +
			  (real.tv_nsec - boot.tv_nsec);
	*ns = boot_ns + (int64_t)(ticks / (unsigned long long)hz) * 1000000000LL +
	      (int64_t)(ticks % (unsigned long long)hz) * 1000000000LL / hz;
	return 0;
}

/* Whether process pid can be the one the pidfile (metadata st) names:
 * one that started after the file was last written got the pid after
 * the process it names was gone. */
static int pid_matches_pidfile(const char *pidfile, int pid,
			       const struct stat *st, char **err)
{
	int64_t start, written = (int64_t)st->st_mtim.tv_sec * 1000000000LL +
				 st->st_mtim.tv_nsec;

	/* With /proc/PID out of sight (systemd's ProtectProc=invisible,
	 * hidepid=) there is nothing to compare: the pidfd still reaches
	 * only the process that had the pid when it was opened. */
	if (proc_start_ns(pid, &start) < 0)
		return 0;
	if (start > written + HOOK_START_SLACK_NS)
		return log_err_set(err, -ESRCH,
				   "reload_pidfile %s: process %d started after "
				   "the file was written: a stale pidfile, not "
				   "signalled",
				   pidfile, pid);
	return 0;
}

int hook_signal_pidfile(const char *pidfile, int sig, char **err)
{
	struct stat st;
	int pid, rc = hook_read_pidfile(pidfile, &pid, &st, err);

	if (rc < 0)
		return rc;
	/* From here on the pid cannot be given to another process under
	 * us: the pidfd stays with the one it was opened for. */
	int fd = hook_pidfd_open(pid);
	if (fd < 0)
		return log_err_set(err, fd, "reload_pidfile %s: process %d: %s",
				   pidfile, pid, strerror(-fd));
	rc = pid_matches_pidfile(pidfile, pid, &st, err);
	if (rc == 0 && (rc = pidfd_signal(fd, sig)) < 0)
		log_err_set(err, rc, "reload_pidfile %s: signal %d to process "
				     "%d: %s",
			    pidfile, sig, pid, strerror(-rc));
	close(fd);
	return rc;
}

int hook_signal_pidfd(int pidfd, int pid, int sig, char **err)
{
	if (pidfd < 0)
		return log_err_set(err, pidfd,
				   "reload_pid %d: %s (when the mapping started)",
				   pid, strerror(-pidfd));
	int rc = pidfd_signal(pidfd, sig);
	if (rc < 0)
		return log_err_set(err, rc, "reload_pid %d: signal %d: %s", pid,
				   sig, strerror(-rc));
	return 0;
}

bool hook_ok(const struct hook_result *r)
{
	return !r->spawn_error && !r->timed_out && r->signal == 0 &&
	       r->status == 0;
}

struct wait_ctx {
	bool done;
	int rc;
	char *why;
};

static void on_waited(void *data, const struct hook_result *r)
{
	struct wait_ctx *w = data;

	w->done = true;
	if (hook_ok(r))
		return;
	w->rc = -ECANCELED;
	w->why = hook_describe(r);
}

int hook_run_wait(const char *cmd, char *const env[], int fd3,
		  unsigned timeout_s, char **why)
{
	uv_loop_t loop;
	struct wait_ctx w = {0};
	struct hook *h = NULL;
	char **argv = NULL;
	int rc = command_split(cmd, &argv, why);

	if (rc < 0)
		return rc;
	rc = uv_loop_init(&loop);
	if (rc < 0) {
		command_argv_free(argv);
		return rc;
	}
	rc = hook_run(&loop, argv, env, fd3, timeout_s, on_waited, &w, &h);
	command_argv_free(argv);
	if (rc == 0)
		uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (rc < 0)
		return rc;
	if (w.rc < 0 && why) {
		free(*why);
		*why = w.why;
	} else {
		free(w.why);
	}
	return w.rc;
}

char *hook_describe(const struct hook_result *r)
{
	char how[96], *m = NULL;
	const char *tail = r->stderr_tail ? r->stderr_tail : "";

	if (r->spawn_error) {
		/* The program can be a long path: no fixed buffer. */
		if (asprintf(&m, "%s could not start: %s",
			     r->file ? r->file : "command",
			     strerror(-r->spawn_error)) < 0)
			m = NULL;
		return m;
	}
	if (r->timed_out && r->signal == 0)
		snprintf(how, sizeof(how),
			 "timed out (it then exited with status %d)", r->status);
	else if (r->timed_out)
		snprintf(how, sizeof(how), "timed out and was killed (signal %d)",
			 r->signal);
	else if (r->signal)
		snprintf(how, sizeof(how), "killed by signal %d", r->signal);
	else
		snprintf(how, sizeof(how), "exit status %d", r->status);
	if (asprintf(&m, "%s%s%s", how, *tail ? ": " : "", tail) < 0)
		m = NULL;
	return m;
}

static void on_closed(uv_handle_t *h)
{
	struct hook *k = h->data;

	if (--k->open_handles == 0)
		free(k);
}

static void close_all(struct hook *k)
{
	uv_handle_t *hs[] = {(uv_handle_t *)&k->child, (uv_handle_t *)&k->err,
			     (uv_handle_t *)&k->timeout, (uv_handle_t *)&k->drain};
	for (size_t i = 0; i < 4; i++) {
		/* The kill timer outlives the leader: children that ignored
		 * SIGTERM still get their SIGKILL. */
		if (i == 2 && k->stop == STOP_TERM_SENT && uv_is_active(hs[i]))
			continue;
		if (!uv_is_closing(hs[i]))
			uv_close(hs[i], on_closed);
	}
}

/* The last lines of stderr, starting at a line boundary. */
static const char *tail_text(struct hook *k)
{
	if (k->tail_len == sizeof(k->tail))
		k->tail_len--;
	k->tail[k->tail_len] = '\0';
	while (k->tail_len > 0 && (k->tail[k->tail_len - 1] == '\n' ||
				   k->tail[k->tail_len - 1] == '\r'))
		k->tail[--k->tail_len] = '\0';
	const char *t = k->tail;
	if (k->tail_len > TAIL_LOG_BYTES) {
		t = k->tail + k->tail_len - TAIL_LOG_BYTES;
		const char *nl = strchr(t, '\n');
		if (nl && nl[1])
			t = nl + 1;
	}
	return t;
}

static void finish(struct hook *k)
{
	if (k->finished)
		return;
	k->finished = true;
	struct hook_result r = {
		.status = k->term_signal ? -1 : (int)k->status,
		.signal = k->term_signal,
		.timed_out = k->timed_out,
		.stderr_tail = tail_text(k),
	};
	k->done(k->data, &r);
	close_all(k);
}

static void on_drained(uv_timer_t *t)
{
	finish(t->data);
}

static void reap(struct hook *k)
{
	while (waitpid(k->pid, NULL, 0) < 0 && errno == EINTR)
		;
	k->leader = LEADER_REAPED;
}

/* On SIGCHLD (any child's): whether the leader exited, told without
 * reaping it.  Once SIGTERM went to its group, it stays a zombie until
 * the SIGKILL that follows has gone too: while it does, no other
 * process can have its id, the group's. */
static void on_child(uv_signal_t *h, int signum)
{
	struct hook *k = h->data;
	siginfo_t si = {0};

	(void)signum;
	if (k->leader != LEADER_RUNS ||
	    waitid(P_PID, (id_t)k->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
	    si.si_pid != k->pid)
		return;
	uv_signal_stop(h);
	k->leader = LEADER_EXITED;
	if (si.si_code == CLD_EXITED)
		k->status = si.si_status;
	else
		k->term_signal = si.si_status;
	if (k->stop != STOP_TERM_SENT)
		reap(k);
	if (k->stop == STOP_NONE)
		uv_timer_stop(&k->timeout);
	/* What it wrote last may still be in the pipe; a child it left
	 * behind may keep the pipe open, so do not wait long for EOF. */
	if (k->eof)
		finish(k);
	else
		uv_timer_start(&k->drain, on_drained, 100, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char scratch[4096];

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct hook *k = s->data;

	if (n < 0) {
		k->eof = true;
		uv_read_stop(s);
		if (k->leader != LEADER_RUNS)
			finish(k);
		return;
	}
	/* Keep the last TAIL_BYTES. */
	size_t len = (size_t)n;
	const char *d = buf->base;
	if (len >= sizeof(k->tail)) {
		d += len - sizeof(k->tail);
		len = sizeof(k->tail);
	}
	if (k->tail_len + len > sizeof(k->tail)) {
		size_t drop = k->tail_len + len - sizeof(k->tail);
		memmove(k->tail, k->tail + drop, k->tail_len - drop);
		k->tail_len -= drop;
	}
	memcpy(k->tail + k->tail_len, d, len);
	k->tail_len += len;
}

static void on_kill(uv_timer_t *t)
{
	struct hook *k = t->data;

	/* The whole group, whether or not its leader still runs: unreaped,
	 * it holds the group's id. */
	kill(-k->pid, SIGKILL);
	k->stop = STOP_KILL_SENT;
	if (k->leader == LEADER_EXITED)
		reap(k);
	if (k->finished && !uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, on_closed);
}

static void terminate(struct hook *k)
{
	if (k->leader != LEADER_RUNS || k->stop != STOP_NONE)
		return;
	k->stop = STOP_TERM_SENT;
	/* The whole group: a shell's children too. */
	kill(-k->pid, SIGTERM);
	uv_timer_start(&k->timeout, on_kill, HOOK_KILL_GRACE_MS, 0);
}

static void on_timeout(uv_timer_t *t)
{
	struct hook *k = t->data;

	k->timed_out = true;
	terminate(k);
}

void hook_close_inherited(void)
{
#ifdef HAVE_CLOSE_RANGE
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
#endif
	/* Without close_range() (before Linux 5.11): one at a time. */
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	while (d && (de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name);
		if (fd > 2 && fd != dirfd(d))
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	if (d)
		closedir(d);
}

/* Starts argv with its stderr into k->err, the pipe's other end: 0, or
 * a negative errno (nothing started, the pipe left unopened). */
static int start_command(struct hook *k, char *const argv[],
			 char *const env[], int fd3)
{
	int p[2], rc;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	/* Watched from before it starts: its SIGCHLD is not missed. */
	rc = uv_signal_start(&k->child, on_child, SIGCHLD);
	if (rc == 0)
		rc = launch_command(argv, env, p[1], fd3, &k->pid);
	close(p[1]);
	if (rc == 0)
		rc = uv_pipe_open(&k->err, p[0]);
	if (rc < 0 && k->pid > 0) {
		/* Started, but its stderr cannot be read: stopped at once. */
		kill(-k->pid, SIGKILL);
		reap(k);
	}
	if (rc < 0)
		close(p[0]);
	return rc;
}

int hook_run(uv_loop_t *loop, char *const argv[], char *const env[],
	     int fd3, unsigned timeout_s, hook_done_cb done, void *data,
	     struct hook **out)
{
	struct hook *k = calloc(1, sizeof(*k));
	int rc;

	*out = NULL;
	if (k == NULL) {
		/* Reported like any command that cannot start. */
		struct hook_result r = {.status = -1, .spawn_error = -ENOMEM,
					.file = argv[0], .stderr_tail = ""};
		done(data, &r);
		return 0;
	}
	k->done = done;
	k->data = data;
	k->timeout_s = timeout_s;
	uv_signal_init(loop, &k->child);
	uv_pipe_init(loop, &k->err, 0);
	uv_timer_init(loop, &k->timeout);
	uv_timer_init(loop, &k->drain);
	k->err.data = k->timeout.data = k->drain.data = k->child.data = k;
	k->open_handles = 4;
	rc = start_command(k, argv, env, fd3);
	if (rc < 0) {
		struct hook_result r = {.status = -1, .spawn_error = rc,
					.file = argv[0], .stderr_tail = ""};
		k->leader = LEADER_REAPED;
		k->finished = true;
		done(data, &r);
		close_all(k);
		return 0;
	}
	uv_read_start((uv_stream_t *)&k->err, on_alloc, on_read);
	if (timeout_s > 0)
		uv_timer_start(&k->timeout, on_timeout,
			       (uint64_t)timeout_s * 1000u, 0);
	*out = k;
	return 0;
}
