/* Helpers shared by the check tests: temp directories, files, payloads,
 * and waiting for a condition with a deadline. */
#ifndef ATOMSYNC_TESTUTIL_H
#define ATOMSYNC_TESTUTIL_H

#include <stdatomic.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* One file of a payload, as the Kubernetes tests describe them. */
struct tu_file {
	const char *path;
	mode_t mode;
	const char *data;
};

/* A fresh directory under $TMPDIR (or /tmp); free() the result.  When
 * that is in memory (tmpfs, ramfs), where a publish flushes nothing, under
 * /var/tmp instead if that is on a disk: tests of flushing need one. */
char *tu_mkdtemp(void);
/* Whether `dir` is on tmpfs or ramfs (aborts when it cannot tell). */
bool tu_in_memory(const char *dir);
/* Like tu_mkdtemp, on tmpfs (/dev/shm) when it can: for tests whose
 * deadlines are about the daemon, not about a noisy disk. */
char *tu_mkdtemp_fast(void);
/* Removes a tree; never follows symlinks. */
void tu_rmrf(const char *path);
/* Joins with '/' into a malloc'ed string. */
char *tu_path(const char *a, const char *b);
/* Writes `data` to dir/rel (creating parents) and sets `mode`. */
void tu_write(const char *dir, const char *rel, const char *data, mode_t mode);
void tu_write_len(const char *dir, const char *rel, const void *data,
		  size_t len, mode_t mode);
/* Replaces dir/rel in one rename, from a file written beside `dir` (not
 * in it): a watcher of `dir` sees one complete change, not the
 * truncation, the write and the chmod one after another. */
void tu_replace(const char *dir, const char *rel, const char *data,
		mode_t mode);
/* Writes dir/rel one component at a time, for paths past PATH_MAX. */
void tu_write_deep(const char *dir, const char *rel, const char *data);
/* Makes dir/name/name/... `depth` directories deep (names of one byte
 * make a path past any limit quickly), with a file at the bottom. */
void tu_mkdeep(const char *dir, const char *name, int depth);
/* Removes such a tree, however deep, without recursion or a descriptor
 * per level. */
void tu_rmdeep(const char *dir, const char *name);
/* Reads a whole file (NUL-terminated); NULL if it cannot be read. */
char *tu_read(const char *path, size_t *len);
/* mkdir -p */
void tu_mkdirs(const char *path, mode_t mode);
/* Replaces everything in `dir` with `payload` (cleaned paths). */
void tu_fill(const char *dir, const struct tu_file *payload);
/* Where ..data points in `dst` (malloc'ed), or NULL. */
char *tu_live(const char *dst);
/* Number of generation directories in `dst`. */
int tu_generations(const char *dst);
/* Those of them whose mode is `mode` (0755: complete; 0700: being
 * written, or a daemon's standby); in *name (malloc'ed, NULL: none) the
 * last one found, when `name` is not NULL. */
int tu_generations_of_mode(const char *dst, mode_t mode, char **name);
/* Those that are complete: not one being written, nor a standby. */
int tu_readable_generations(const char *dst);
/* The names in `dst`, all of them. */
int tu_count_names(const char *dst);
/* The same, less the lock file a writer leaves in a target it opened
 * (..atomsync.lock): what publishes made. */
int tu_count_entries(const char *dst);
/* The permission bits atomsync projects by default: the source's, less
 * setuid, setgid, sticky and group and other write. */
#define TU_PROJECTED 0755u
/* Asserts that what readers see in `dst` through its visible links is
 * exactly `payload`: names, content and modes; returns a description of
 * the first difference, or NULL. */
char *tu_diff_target(const char *dst, const struct tu_file *payload);
/* Asserts that dst (through ..data) holds the same files, dirs, content
 * and permission bits as the source tree src; NULL or a description. */
char *tu_diff_trees(const char *src, const char *dst);
/* The atomsyncd binary under test ($ATOMSYNCD, else ../src/atomsyncd). */
const char *tu_bin(void);
/* Runs argv (argv[0] is looked up in PATH unless it has a '/') with a
 * deadline; captures stdout and stderr (malloc'ed, may be NULL).  Returns
 * the exit status, 128+signal when killed by one, or -1 on timeout (the
 * child is then killed). */
int tu_run(const char *const argv[], char **out, char **err, int timeout_ms);
/* tu_run, with the child's resource usage (its peak RSS, say). */
struct rusage;
int tu_run_rusage(const char *const argv[], char **out, char **err,
		  int timeout_ms, struct rusage *ru);
/* tu_run as another user: through setpriv(1) with that uid and gid and no
 * supplementary groups (the tests run as root). */
int tu_run_as(unsigned uid, const char *const argv[], char **out, char **err,
	      int timeout_ms);
/* A shell command line as another user; its exit status. */
int tu_sh_as(unsigned uid, const char *cmd);
/* Runs fn(arg) in a child that has become uid (and gid uid, no
 * supplementary groups) for real, for what a shell command cannot do
 * atomically; its return value is the exit status. */
int tu_call_as(unsigned uid, int (*fn)(void *arg), void *arg);
/* Whether the tests can act as other users (they run as root). */
bool tu_can_setuid(void);
/* Starts argv in the background with stdout and stderr appended to
 * `logfile`; returns the pid. */
pid_t tu_spawn(const char *const argv[], const char *logfile);
/* Waits for pid to exit; returns its status as tu_run does, or -1 after
 * timeout_ms (the process is left running). */
int tu_wait_exit(pid_t pid, int timeout_ms);
/* Kills (SIGKILL) and reaps pid if it still runs. */
void tu_kill(pid_t pid);
/* Polls cond(arg) every few ms until it is true (returns 1) or the
 * (scaled) deadline passes (returns 0). */
int tu_wait_for(int (*cond)(void *arg), void *arg, int timeout_ms);
/* Number of times `needle` occurs in the file. */
int tu_file_count(const char *path, const char *needle);

/* Conditions for tu_wait_for: */
struct tu_pair {
	const char *src, *dst;
};
/* arg is a struct tu_pair: dst mirrors src (tu_diff_trees finds nothing). */
int tu_trees_equal(void *arg);
/* arg is a target directory: exactly one generation is left in it. */
int tu_one_generation(void *arg);
struct tu_needle {
	const char *file, *text;
	int count;
};
/* arg is a struct tu_needle: `text` occurs `count` times or more. */
int tu_file_holds(void *arg);
/* arg is a path: something is there (a dangling link too). */
int tu_exists(void *arg);

/* The fixture of a test that runs atomsyncd: a fresh temporary directory
 * (TU_FAST: on tmpfs when it can; TU_SHARED: mode 0755, for other uids to
 * reach) with src/ made in it, and the paths dst, daemon.log and
 * atomsync.conf there; pid is the daemon's, killed at teardown if it
 * still runs. */
struct tu_fixture {
	char *tmp, *src, *dst, *log, *conf;
	pid_t pid;
};
#define TU_FAST 0x1u
#define TU_SHARED 0x2u
void tu_fixture_setup(struct tu_fixture *f, unsigned flags);
void tu_fixture_teardown(struct tu_fixture *f);

/* For tests that run the daemon, with its log in `logfile`: each waits
 * with a deadline and, when it passes, prints the end of the log and
 * fails the test. */
/* `file` holds `text` `count` times or more. */
void tu_wait_text(const char *file, const char *text, int count, int ms,
		  const char *logfile);
/* dst mirrors src (tu_diff_trees); the failure names the difference. */
void tu_converge(const char *src, const char *dst, int ms,
		 const char *logfile);
/* SIGTERM to *pid, which must exit with status 0 within ms; *pid is 0
 * once it has been waited for. */
void tu_stop(pid_t *pid, int ms);

/* A loopback TCP port nothing listens on: the kernel's choice for 0. */
int tu_free_port(void);
/* Reads what comes back on fd (at most 64 KiB) until the peer closes or
 * stays quiet for 5 s (scaled), closes fd and returns it, NUL-ended. */
char *tu_read_reply(int fd);
/* Counts lines in s. */
int tu_lines(const char *s);
/* Runs a check suite; the exit status for main(). */
struct Suite;
int tu_run_suite(struct Suite *s);
/* Monotonic milliseconds. */
/* How many of the n pages from m (page-aligned) are mapped now, in the
 * resident set (/proc/self/pagemap). */
size_t tu_pages_present(const void *m, size_t n);
long long tu_now_ms(void);
/* Sleeps a few milliseconds (for polling loops with a deadline). */
void tu_nap(int ms);
/* Scales a timeout by $CK_TIMEOUT_MULTIPLIER (valgrind, sanitizers). */
/* Puts the test in a mount namespace of its own, where what it mounts
 * goes nowhere else (as root; CK_FORK=no keeps it for the tests after,
 * which mount nothing on their paths). */
void tu_private_mounts(void);

/* Gives `path` a POSIX access ACL, written as the kernel keeps it: the
 * owner's `own`, a named entry ('u' for user `id`, 'g' for group `id`)
 * with `perm`, and its group, the mask and others with `rest` (each as
 * the bits of "others": 04, 02, 01). */
void tu_acl(const char *path, unsigned own, char kind, unsigned id,
	    unsigned perm, unsigned rest);
int tu_scale(int ms);
/* The rounds of a randomized test whose every round checks itself: a
 * quarter (at least one) under valgrind, where a round costs tens of
 * times more and checks the memory of the same paths. */
unsigned tu_rounds(unsigned n);
/* The directories a lookup of `path` goes through, its parent included,
 * as the daemon watches them (watch.c): the components of its parent's
 * real path, and "/".  The parent must exist. */
int tu_way_len(const char *path);

/* In a test linked with -Wl,--wrap=openat: the calls of openat() on a
 * path that starts with tu_opens_of (NULL: none) since tu_opens was
 * last set. */
extern const char *_Atomic tu_opens_of;
extern atomic_int tu_opens;

#endif
