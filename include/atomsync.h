/* libatomsync: publish a set of files into a directory atomically, in
 * the layout of Kubernetes ConfigMap and Secret volumes:
 *
 *   target/..data -> ..2026_11_25_16_04_05.123456789   (swapped by rename)
 *   target/..2026_11_25_16_04_05.123456789/            (complete generation)
 *   target/NAME -> ..data/NAME                         (one per top-level name)
 *
 * A reader that opens target/NAME sees either the whole old version of
 * it or the whole new one, never a torn file or a missing name.  One
 * that needs several files of one version resolves ..data once and opens
 * them all in that generation (a publish may fall between two lookups
 * through the visible links), for up to grace_ms (a reader still in a
 * replaced one after that may find it gone).
 *
 * Every function that returns int returns 0 or a negative errno; the
 * writer keeps a one-line message naming the path for the last failure.  Beyond its
 * writers the library holds only process-wide values that no call
 * changes (see atomsync_write(3)), and it writes nothing to stderr:
 * warnings go to the options' log callback when one is set.  It is
 * thread-compatible: a writer may be used by one thread at a time;
 * writers of different targets may run in different threads.  See
 * atomsync_write(3). */
#ifndef ATOMSYNC_H
#define ATOMSYNC_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATOMSYNC_VERSION_MAJOR 0

/* The version of the library the program runs with, "MAJOR.MINOR.PATCH"
 * (ATOMSYNC_VERSION_MAJOR is the one it was built against). */
const char *atomsync_version(void);

/* Set by atomsync_options_init(); `size` lets a newer library tell which
 * fields a program built against an older header knows. */
struct atomsync_options {
	size_t size;	     /* sizeof(struct atomsync_options) */
	int fsync;	     /* 1: a generation is durable before it goes live */
	unsigned grace_ms;   /* a replaced generation stays whole this long
				(counted by the writer that finds it) */
	int file_mode;	     /* -1: each file's own mode (a tree's & 0755);
				else every file's */
	int dir_mode;	     /* -1: 0755 (a tree's own & 0755); else every
				directory's */
	uid_t uid;	     /* (uid_t)-1: the caller's; else the owner */
	gid_t gid;	     /* (gid_t)-1: the caller's; else the group */
	size_t max_files;    /* files a payload may hold (files and
				directories a tree); 0: 1000000 */
	int allow_empty;     /* 1: an empty payload may replace content */
	/* Where warnings and notices go (syslog priorities: 3 error,
	 * 4 warning, 6 info, 7 debug); NULL: nowhere. */
	void (*log)(void *ctx, int priority, const char *msg);
	void *log_ctx;
};

/* One file of a payload.  `path` is relative to the target; directories
 * are implied by the paths.  `mode` is 0 (0644) or permission bits
 * within 0777. */
struct atomsync_file {
	const char *path;
	const void *data;
	size_t size;
	mode_t mode;
};

struct atomsync_writer;

/* The defaults: fsync on, grace_ms 1000, each file's mode, directories
 * 0755, the caller's owner, 1000000 files, empty payloads allowed, no
 * log. */
void atomsync_options_init(struct atomsync_options *opts);

/* Opens `target` (creating it, mode 0755, when its parent exists), locks
 * it against a second writer and removes debris of an interrupted
 * publish.  opts NULL: the defaults.  On failure *out is a writer that
 * holds only the error (atomsync_writer_error, then
 * atomsync_writer_close), or NULL when out of memory. */
int atomsync_writer_open(const char *target,
			 const struct atomsync_options *opts,
			 struct atomsync_writer **out);

/* Makes the `n` files of `payload` the content of the target, replacing
 * whatever it held.  Validates every path first (no "..", no absolute or
 * empty path, none starting with "..", names up to 255 bytes, paths up
 * to 4096, no duplicate, no file below a file) and writes nothing when
 * one is invalid.  Writes nothing either when the target already holds
 * exactly this payload.  The payload is only read during the call. */
int atomsync_write(struct atomsync_writer *w,
		   const struct atomsync_file *payload, size_t n);

/* The same with the files and directories of `source_dir`, as
 * atomsyncd --once does: symlinks that stay inside the source are
 * copied, others skipped with a warning. */
int atomsync_write_tree(struct atomsync_writer *w, const char *source_dir);

/* The generation ..data names ("..2026_..."), or NULL when none. */
const char *atomsync_writer_generation(const struct atomsync_writer *w);

/* Removes replaced generations whose grace period has run out; with
 * `wait`, waits out every grace period first (blocking). */
int atomsync_writer_retire(struct atomsync_writer *w, int wait);

/* The last failure as one line naming the path, or NULL when the last
 * call succeeded. */
const char *atomsync_writer_error(const struct atomsync_writer *w);

/* Removes what is due (atomsync_writer_retire(w, 0)), unlocks and frees
 * (w is not to be used after).  A replaced generation still in its grace
 * period is left to the next writer of the target; a directory nothing
 * was ever published into is left without the lock file. */
void atomsync_writer_close(struct atomsync_writer *w);

#ifdef __cplusplus
}
#endif

#endif
