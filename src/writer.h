/* The atomic projection of a snapshot into a target directory, with the
 * on-disk layout of the Kubernetes AtomicWriter:
 *
 *   target/..data -> ..2026_11_25_16_04_05.123456789   (swapped by rename)
 *   target/..2026_11_25_16_04_05.123456789/            (complete generation)
 *   target/NAME -> ..data/NAME                         (one per top-level name)
 *
 * A publish writes a complete new generation, renames a ..data_tmp symlink
 * to it over ..data (the one atomic step), then adds and removes visible
 * links and retires the old generation.  Nothing here knows about libuv. */
#ifndef ATOMSYNC_WRITER_H
#define ATOMSYNC_WRITER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot.h"

#define WRITER_DATA "..data"
#define WRITER_DATA_TMP "..data_tmp"
/* Where a visible link is made to be renamed over one that names
 * something else. */
#define WRITER_LINK_TMP "..atomsync.link.tmp"
/* The links of new top-level names, made ahead of the swap: this and a
 * number. */
#define WRITER_LINK_AHEAD "..atomsync.link."
/* The file in a target whose flock(2) says a writer uses it: mode 0600,
 * so that only root or atomsyncd's user can open it, and hold it. */
#define WRITER_LOCK "..atomsync.lock"
/* The directory in a target (root's, or atomsyncd's user's, mode 0700)
 * where what another user put into a recycled generation, which is not
 * atomsync's to remove, is moved. */
#define WRITER_ASIDE "..atomsync.aside"
/* writer_opts.expect_ino of no directory: any is another. */
#define WRITER_NO_DIR UINT64_MAX
#define WRITER_MAX_PATH 4096
#define WRITER_MAX_NAME 255
/* Entries (files and directories) of a source, unless configured. */
#define WRITER_MAX_FILES 1000000

struct writer_opts {
	const char *name;   /* mapping name for log lines, or NULL */
	bool fsync;	    /* make a generation durable before it goes live */
	bool dry_run;	    /* log what would change, write nothing */
	uint32_t uid, gid;  /* owner of projected entries; SNAP_NO_ID: ours */
	int file_mode;	    /* permission bits of files, -1: the source's */
	int dir_mode;	    /* permission bits of directories, -1: source's */
	unsigned grace_ms;  /* how long a superseded generation stays whole for
			       readers that still have it open */
	size_t max_files;   /* entries a source may have (files and
			       directories); 0: WRITER_MAX_FILES */
	bool allow_empty;   /* an empty source may replace a live
			       generation that has content */
	bool quiet;	    /* with dry_run: no line per path, leftover or
			       changed live file; the caller reports the
			       counts */
	bool one_shot;	    /* one publish, then the writer is closed: the
			       live record is not kept ready for reads to
			       come (see snapshot_supersede) */
	bool no_create;	    /* a missing target is an error, not made */
	uint64_t expect_dev, expect_ino; /* with no_create, when expect_ino
			       is not 0: the directory the caller looked
			       at (WRITER_NO_DIR: it found none); another
			       found in its place is -ESTALE */
	bool load_later;    /* writer_open leaves the live record to
			       writer_load(), for the caller to read the
			       source meanwhile */
	unsigned check_s;   /* with one_shot: every live file is checked
			       only when the state says they were last all
			       checked this many seconds ago or more (0:
			       at every open); see checked_lately() */
};

struct writer_result {
	bool published;	   /* a new generation went live */
	char *generation;  /* what ..data names now (malloc'ed), or NULL */
	size_t added, changed, removed; /* paths, old -> new */
	/* Those paths, relative to the target, each ended by a NUL, in
	 * snapshot_path_cmp order (malloc'ed; NULL when there is none). */
	char *paths;
	size_t paths_len;
	size_t copied, linked;		/* files written / reused */
	/* Files whose bytes were compared with their live copies: their
	 * times alone could not tell (see SNAP_F_RACY). */
	size_t compared;
	uint64_t bytes_copied;
	size_t files;	     /* regular files in the live generation */
	uint64_t bytes;	     /* and their total size */
};

struct writer;
struct writer_pending;

/* Opens (creating it, mode 0755, if missing) and locks the target, and
 * removes debris of an interrupted publish. */
int writer_open(const char *target, const struct writer_opts *o,
		struct writer **out, char **err);
void writer_close(struct writer *w);
/* Loads the live generation's record, when writer_open left it
 * (load_later): from the state file, else by a scan of the generation.
 * 0 when it is loaded, now or before; else a negative errno with *err,
 * and the next call tries again.  writer_prepare calls it first. */
int writer_load(struct writer *w, char **err);

/* Changes options that take effect at the next publish. */
void writer_set_opts(struct writer *w, const struct writer_opts *o);

/* Validates `s`, compares it with the live generation and, when anything
 * differs, writes the complete new generation without making it live.
 * Takes ownership of `s`.  *out is NULL when nothing changed (no
 * generation is written; missing visible links are restored).
 * -EAGAIN: a source file changed while it was read; take a new snapshot. */
int writer_prepare(struct writer *w, struct snapshot *s,
		   struct writer_pending **out, struct writer_result *r,
		   char **err);

/* The prepared generation's directory, for a check before it goes live. */
const char *writer_pending_dir(const struct writer_pending *p);

/* Makes a prepared generation live. */
int writer_commit(struct writer *w, struct writer_pending *p,
		  struct writer_result *r, char **err);

/* Drops a prepared generation; the live one is untouched.  A full check
 * it was prepared at (writer_verify_next) is made by the next
 * writer_prepare. */
void writer_abort(struct writer *w, struct writer_pending *p);

/* writer_prepare, then writer_commit. */
int writer_publish(struct writer *w, struct snapshot *s,
		   struct writer_result *r, char **err);

/* Whether a standby is worth linking now: no generation is there to
 * recycle into the next one, and the live generation came within a
 * grace period of the one before (a burst, which may go on) or none
 * has been replaced yet (after a start). */
bool writer_standby_wanted(const struct writer *w);

/* When writer_standby_wanted(), links the live generation's files into a
 * new private one (0700) and flushes it, for the next publish to recycle:
 * that one then costs what changed, not what exists.  Meant for a thread
 * of its own between publishes; a publish waits for it.  Once `stop`
 * (read as it goes) is set, it returns -ECANCELED soon, keeping what it
 * linked so far to be recycled.  It is removed with the replaced
 * generations, and never left at exit (writer_gc_take_exit). */
int writer_standby(struct writer *w, const atomic_bool *stop, char **err);

/* Removes superseded generations whose grace period has run out (all of
 * them when `all`).  *next_ms is the monotonic time (ms) at which the next
 * one is due, or 0 when none is left. */
int writer_retire(struct writer *w, bool all, uint64_t *next_ms);

/* writer_retire in two halves, so the removal need not hold up the next
 * publish: take the generations that are due (cheap; with the writer
 * like any other call, NULL when none is), then remove them on any
 * thread and free. */
struct writer_gc;
struct writer_gc *writer_gc_take(struct writer *w, bool all,
				 uint64_t *next_ms);
/* When the next superseded generation is due (ms, monotonic), 0: none. */
uint64_t writer_next_due(const struct writer *w);
int writer_gc_run(struct writer_gc *gc);
void writer_gc_free(struct writer_gc *gc);

/* Waits out the grace period of every superseded generation (blocking:
 * at most grace_ms), then removes what is due, as writer_retire(). */
void writer_retire_wait(struct writer *w);

/* What a process that exits without waiting leaves: removes superseded
 * generations that are due, and every other but the one replaced last,
 * which stays for the rest of its grace period (the next writer_open
 * retires it from the time ..data changed, which the target keeps). */
void writer_retire_exit(struct writer *w);
/* The same in two halves, as writer_gc_take: NULL when nothing goes. */
struct writer_gc *writer_gc_take_exit(struct writer *w);

/* The generation ..data names, or NULL. */
const char *writer_live_generation(const struct writer *w);

/* Whether the entry `name` of the target directory (NULL: each of them)
 * is as the last publish left it: ..data naming the live generation, that
 * generation in place, a visible link of the live generation naming
 * ..data/NAME.  -ESTALE when not; 0 too for any other name, and when the
 * writer has no live generation of its own.  A few system calls a name;
 * every top-level name with NULL. */
int writer_check_name(const struct writer *w, const char *name);

/* Whether `name`, in the target directory itself, is one that a publish
 * that fails changes: a generation (made and removed, a standby) and the
 * state and error files.  Not ..data, a visible link, ..data_tmp, the
 * lock or WRITER_ASIDE, which only an operator changes then. */
bool writer_work_name(const char *name);

/* Whether the configured path still names the directory the writer
 * holds: -ENOENT when that was removed, -ESTALE when it was moved away
 * or the path names another directory, or another negative errno with
 * *err (a symlink that may not be followed, say). */
int writer_check_target(const struct writer *w, char **err);

/* Every file a publish links forward from the live generation, or keeps
 * in a recycled one, that a user other than us or root could have
 * written is first checked to be what atomsync left there (one changed
 * behind its back is written afresh); files only we or root can write
 * are not looked at.  This asks the next writer_prepare to check every
 * live file, and so to publish anew when one changed even if the source
 * did not; a new writer does it at its first. */
void writer_verify_next(struct writer *w);
/* Whether the next writer_prepare checks every live file: a full check
 * is due (writer_verify_next, a new writer; see writer_opts.check_s). */
bool writer_check_due(const struct writer *w);

/* When a full check is due (writer_verify_next, a new writer), starts
 * it on a thread of its own, for the caller to read the source
 * meanwhile; the next writer_prepare waits for it and uses what it found.
 * A one-shot writer's thread also reads the directories of the replaced
 * generation that writer_prepare recycles, for it not to read them then
 * (one only we or root could have changed since is taken as read).
 * Meanwhile the thread reads the live generation's record: the calls
 * that change it or what it names (writer_prepare, writer_standby,
 * writer_close, writer_verify_start) wait for the thread first; others
 * (writer_gc_take, after a failed read) leave it alone. */
void writer_verify_start(struct writer *w);

/* Whether someone is at work in the target (see fsutil_tree_busy()):
 * 1 when a directory in it changed within `quiet_ms` of now, or went away
 * as it was read, else 0 or a negative errno.  What was removed from the
 * target by hand is put back once it is quiet: an rm -rf of the whole
 * target empties each generation without a change to the target
 * directory itself, and a put-back meanwhile would make it fail. */
int writer_target_busy(const struct writer *w, uint64_t quiet_ms);

/* The target directory's identity, for a walk to keep out of it;
 * -ENOENT in a dry run without a target. */
int writer_target_id(const struct writer *w, uint64_t *dev, uint64_t *ino);

/* The live generation's record: the snapshot the last publish, or the
 * last compare that found nothing to publish, took over (its entries as
 * read, with the generation's own inodes), or what was loaded or scanned
 * at the start (then with no source: root NULL); NULL until writer_load
 * when writer_open left it.  Valid until the next
 * writer_prepare, writer_commit or writer_close; to read only, also while
 * the check thread runs. */
const struct snapshot *writer_live(const struct writer *w);
/* How many entries a read of the source will likely find: the live
 * record's, or before writer_load() what the state file says it holds;
 * 0 when not known. */
size_t writer_expect(const struct writer *w);
/* Gives e the mode and owner w publishes it with (w is a writer; the
 * type is snapshot_opts.project's). */
void writer_project_entry(const void *w, struct snap_entry *e);

/* Why the state file (or its journal) was refused when the writer
 * opened, which a look at its head alone (state_peek()) does not tell:
 * -EINVAL damaged (cut short, say), -EFBIG more entries than max_files;
 * else 0. */
int writer_state_refused(const struct writer *w);

/* Regular files in the live generation and their bytes, as the writer
 * knows them (from the state file, or a scan of the generation);
 * -ENOENT: no live generation; -EPERM: one another user made or can
 * change, whose files are not counted. */
int writer_live_summary(const struct writer *w, uint64_t *files,
			uint64_t *bytes);

/* Records `msg` as the target's last error (state_error_save) through
 * the target's descriptor, with its wall-clock time; NULL removes the
 * record.  -EROFS in a dry run. */
int writer_record_error(struct writer *w, uint64_t when_ms, const char *msg);

/* Checks one path of a snapshot as the Kubernetes AtomicWriter does. */
int writer_validate_path(const char *path, char **err);

void writer_result_fini(struct writer_result *r);

/* Monotonic clock in milliseconds. */
uint64_t writer_now_ms(void);

#endif
