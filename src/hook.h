/* Commands run on behalf of a mapping (check_command, on_update): split
 * into words like a shell would but run without one, spawned with libuv in
 * a process group of their own, with a timeout that sends SIGTERM to the
 * group and SIGKILL after a grace period, and the tail of their stderr
 * kept for the log. */
#ifndef ATOMSYNC_HOOK_H
#define ATOMSYNC_HOOK_H

#include <stdbool.h>
#include <sys/stat.h>

#include <uv.h>

#include "command.h"

/* How long a command has after SIGTERM before SIGKILL. */
#define HOOK_KILL_GRACE_MS 2000

struct hook;

struct hook_result {
	int status;	 /* exit status, or -1 when killed by a signal */
	int signal;	 /* the signal that ended it, or 0 */
	bool timed_out;	 /* it outlived its timeout */
	int spawn_error; /* it could not start: a negative errno */
	const char *file; /* the program, for messages (NULL: unknown) */
	const char *stderr_tail; /* its last few stderr lines, or "" */
};

/* Whether the command succeeded: it started, ran within its timeout and
 * exited 0 (one that outlives its timeout fails even if it then exits 0
 * on SIGTERM). */
bool hook_ok(const struct hook_result *r);

typedef void (*hook_done_cb)(void *data, const struct hook_result *r);

/* Marks every descriptor the process was started with, past standard
 * error, close-on-exec: a command gets what hook_run() gives it, not
 * what the daemon's parent left open (a socket, a file of root's).
 * Called once, before anything of the daemon's own is opened. */
void hook_close_inherited(void);

/* Starts argv with the environment `env` (NAME=value entries,
 * NULL-terminated: nothing of the daemon's own is added) in the
 * directory /, with `fd3` (unless -1) as its descriptor 3.  `done` runs
 * exactly once: when the command has ended, or at once (with
 * spawn_error set, *out NULL) when it cannot start.  After a timeout,
 * SIGKILL reaches the process group after the grace period even if its
 * leader has exited: the leader is not reaped until then, so the
 * group's id is no other process's.  Takes SIGCHLD on the loop while a
 * command runs, and reaps nothing but its own. */
int hook_run(uv_loop_t *loop, char *const argv[], char *const env[],
	     int fd3, unsigned timeout_s, hook_done_cb done, void *data,
	     struct hook **out);

/* PATH when the daemon has none. */
#define HOOK_DEFAULT_PATH COMMAND_DEFAULT_PATH

/* What a mapping's command is told. */
struct hook_vars {
	const char *name, *target, *gen;
	const char *gen_dir; /* check_command: ATOMSYNC_GENERATION_DIR */
	long changed;	     /* on_update: ATOMSYNC_CHANGED; -1: not set */
	bool changed_file;   /* ATOMSYNC_CHANGED_FILE=/dev/fd/3 */
	bool incomplete;     /* ATOMSYNC_CHANGED_INCOMPLETE=1 */
	/* The hook_env words of the mapping: NAME passes the daemon's
	 * value of NAME when it has one, NAME=value sets it. */
	char *const *pass;
	size_t npass;
};

/* The whole environment of a mapping's command, made afresh so that
 * nothing else of the daemon's (secrets included) reaches it: PATH (the
 * daemon's, or HOOK_DEFAULT_PATH), LANG when the daemon has it, the
 * hook_env words, which may set those two, and ATOMSYNC_NAME,
 * ATOMSYNC_TARGET, ATOMSYNC_GENERATION and what else `v` holds.
 * NULL-terminated; NULL when out of memory. */
char **hook_env(const struct hook_vars *v);
void hook_env_free(char **env);

/* The paths that publishes changed since on_update last succeeded,
 * each once, in snapshot_path_cmp order.  The list is bounded: beyond
 * HOOK_CHANGES_MAX paths or HOOK_CHANGES_MAX_BYTES of them, or when
 * memory runs out, it keeps what it has and is marked incomplete. */
#define HOOK_CHANGES_MAX 100000
#define HOOK_CHANGES_MAX_BYTES (16u << 20)

struct hook_changes {
	char *buf;	 /* the paths, each ended by a NUL */
	size_t len, n;	 /* bytes and paths in buf */
	bool incomplete; /* some changed paths are not in it */
};

/* Adds the paths of `list` (NUL-ended, in snapshot_path_cmp order, as
 * a writer_result has them) to `c`; `incomplete` when the list itself
 * is. */
void hook_changes_add(struct hook_changes *c, const char *list, size_t len,
		      bool incomplete);
void hook_changes_fini(struct hook_changes *c);

/* A file holding the paths of `c` as they are in buf, read from its
 * start, with no name in any file system (a sealed memfd; an O_TMPFILE
 * where memfd_create is not allowed): a descriptor, or a negative
 * errno. */
int hook_changes_fd(const struct hook_changes *c);

/* The largest process id Linux gives (pid_max's limit). */
#define HOOK_PID_MAX 4194304

/* Reads the process id in `pidfile` as a root daemon must read a file
 * that names whom to signal: resolved with fsutil_chase (no untrusted
 * symlink on the way, none at the end), without blocking on a FIFO, and
 * refused unless it is a regular file owned by root or atomsyncd's user
 * and writable by neither group nor others; a bounded read.  *st is the
 * file's.  0, or a negative errno with *err naming the file and why. */
int hook_read_pidfile(const char *pidfile, int *pid, struct stat *st,
		      char **err);

/* A process may start this long after its pidfile's time stamp and
 * still be taken for the one that wrote it: file times lag the clock by
 * up to a tick, and /proc counts start times in ticks. */
#define HOOK_START_SLACK_NS 1000000000LL

/* A pidfd for pid (close-on-exec), or a negative errno. */
int hook_pidfd_open(int pid);

/* Sends `sig` to the process in `pidfile`, read now with
 * hook_read_pidfile, through a pidfd, so that a pid given to another
 * process meanwhile is never hit; and not to a process that started
 * after the file was written (its pid was given again). */
int hook_signal_pidfile(const char *pidfile, int sig, char **err);

/* Sends `sig` through `pidfd`, which was opened for `pid` (reload_pid)
 * when the mapping started, or is the negative errno of that open: a
 * later process with the same pid is never signalled. */
int hook_signal_pidfd(int pidfd, int pid, int sig, char **err);

/* Runs cmd to its end on a loop of its own (for one-shot runs).  0 when
 * hook_ok() holds, else -ECANCELED with *why (malloc'ed) describing how
 * it ended and the end of its stderr. */
int hook_run_wait(const char *cmd, char *const env[], int fd3,
		  unsigned timeout_s, char **why);

/* How a command that failed ended, with the end of its stderr:
 * "exit status 3: TAIL", "killed by signal 9", "timed out and was killed
 * (signal 15)", "/usr/bin/x could not start: No such file or directory".
 * Malloc'ed; NULL when out of memory. */
char *hook_describe(const struct hook_result *r);

#endif
