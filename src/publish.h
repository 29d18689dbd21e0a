/* One mapping's publish, the same for the daemon and for --once: open
 * (or check again) the target, read the source, prepare the generation,
 * let check_command see it, make it live, then send the reload signal and
 * run on_update; and keep the target's error record in step.
 *
 * The steps that touch files run wherever the caller wants them (the
 * daemon: libuv's thread pool, one step at a time; --once: in line).
 * The commands are the caller's to run (the daemon: on its loop; --once:
 * to their end), from the environments and messages made here, so both
 * tell a command the same things and report the same failures. */
#ifndef ATOMSYNC_PUBLISH_H
#define ATOMSYNC_PUBLISH_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "snapshot.h"
#include "writer.h"

struct hook_changes;

/* How a mapping's configuration reads for the writer and the snapshot. */
struct writer_opts publish_writer_opts(const struct conf_sync *c,
				       bool dry_run);
struct snapshot_opts publish_snapshot_opts(const struct conf_sync *c);

/* What changed in the source since it was last read, as the watcher
 * told: directories relative to the source root, names in a directory
 * whose other entries did not change (paths relative to the root, see
 * snapshot_refresh_changed()), or anything (`all`). */
struct publish_dirty {
	char **dirs;
	size_t n, cap;
	char **names;
	size_t nnames, namecap;
	bool all;
};

/* `dir` changed; an absolute one (a link led there) makes it all. */
void publish_dirty_add(struct publish_dirty *d, const char *dir);
/* The name `path` changed (once: a name already there is not added). */
void publish_dirty_add_name(struct publish_dirty *d, const char *path);
void publish_dirty_all(struct publish_dirty *d);
void publish_dirty_fini(struct publish_dirty *d);

/* A mapping's publishes.  The fields below `results` are what the last
 * step left, for the caller to read; the rest belongs to publish.c. */
struct publish {
	const struct conf_sync *c;
	bool dry_run;
	struct writer *w;	/* the locked target, NULL until opened */
	bool had_target;	/* one was opened: gone since, it is made
				 * anew only where nobody else can change
				 * the way to it */
	uint64_t had_dev, had_ino; /* the last one opened, */
	char *had_gen;		   /* and its live generation then: one
				      moved back holds it still */
	uint64_t seen_dev, seen_ino; /* the directory remake_refused()
					found fit to open (WRITER_NO_DIR:
					no directory; 0: any may be) */
	bool target_gone;	/* the last attempt found it gone and not
				 * to be made anew: its generations are no
				 * more */
	bool verify;		/* the next prepare checks every live file
				 * (and reads the whole source) */
	uint64_t settle_ms;	/* when not 0, the next prepare is a
				 * put-back, which waits until nothing in
				 * the target changed for this long: it
				 * ends with -EINPROGRESS, having done
				 * nothing, while someone is at work there */
	/* What the next prepare reads again of the source (the caller's to
	 * fill; emptied by the prepare, but kept by one that met a file
	 * being written, for the retry): without the last read to start
	 * from, or with `all`, the whole of it. */
	struct publish_dirty dirty;
	/* The writer's live record is the last read of the source (taken
	 * over by a publish or a compare that found nothing to publish),
	 * so the next read can start from it: one copy of the read, not
	 * two.  Its warnings were the caller's extras, kept here. */
	bool base_live;
	struct snapshot_extras *base_extras;
	bool once;		/* no read follows: keep no base */
	char *recorded_err;	/* what the target's error file holds */
	bool record_clear;	/* known to hold none */

	/* results */
	int rc;
	bool source_failed;	/* rc came from reading the source */
	char *err;		/* why rc, when known */
	struct writer_pending *pending; /* waiting for check_command */
	struct writer_result res;
	struct snapshot_extras *extras; /* the walk's warnings and watches */
	uint64_t scan_us;	/* what looking cost: the walk, and the
				 * compare when nothing changed */
	bool was_read;		/* the source was read */
	uint64_t read;		/* entries of it looked at */
	bool full;		/* the whole source was read */
};

void publish_init(struct publish *p, const struct conf_sync *c, bool dry_run);
/* Closes the target (without waiting for grace periods). */
void publish_fini(struct publish *p);

/* Clears the results of the last step. */
void publish_reset(struct publish *p);

/* Opens the target (anew when it was removed or moved away), takes a
 * snapshot and prepares a generation; commits it too when there is no
 * check_command.  -EAGAIN: the source changed while it was read.
 * Blocking: on a worker thread or in line. */
int publish_prepare(struct publish *p);
/* Makes the prepared generation live. */
int publish_commit(struct publish *p);
/* Drops the prepared generation; the live one stays. */
void publish_abort(struct publish *p);

/* The environment of check_command for the prepared generation; NULL
 * when out of memory.  Free with hook_env_free(). */
char **publish_check_env(const struct publish *p);
/* Hooks are given the target's path: 0 when it leads to the directory
 * `w` writes and only root or atomsyncd's user can change that (see
 * FSUTIL_CHASE_TRUSTED), else a negative errno with *err saying why: a
 * user who owns a directory on the way could put one of theirs in the
 * target's place for a hook run as root to read. */
int publish_hook_target(const struct conf_sync *c, const struct writer *w,
			char **err);
/* check_command was not run (`why`, from publish_hook_target): p->err
 * says so and p->rc is -EPERM.  The caller drops the generation. */
void publish_unchecked(struct publish *p, const char *why);
/* check_command said no (`why`: how it ended): p->err says so and p->rc
 * is -ECANCELED.  The caller drops the generation with publish_abort. */
void publish_vetoed(struct publish *p, const char *why);
/* What a refused publish leaves, for its line: "the live generation
 * stays", or that nothing is published when the target has none. */
const char *publish_stays(const struct publish *p);

/* Sends the reload signal (reload_pidfile, or reload_pid through
 * `pidfd`, opened when the mapping started); 0 when none is configured.
 * A negative errno with *err saying why. */
int publish_signal(const struct conf_sync *c, int pidfd, char **err);
/* The environment of on_update after generation `gen`, told about the
 * paths in `ch`. */
char **publish_update_env(const struct conf_sync *c, const char *gen,
			  const struct hook_changes *ch);

/* Keeps the target's error file in step: `msg` is recorded when it
 * differs from what is, NULL removes the record.  Not in a dry run; a
 * failure is logged at debug level only (the log has the error). */
void publish_record_error(struct publish *p, const char *msg);

/* The targets a run of --once has published to, by device and inode:
 * a directory that two mappings reach by different paths (a bind mount)
 * is published to by the first alone, not replaced by the second. */
struct publish_seen {
	struct publish_seen_target {
		uint64_t dev, ino;
		const char *name; /* the mapping's */
	} *v;
	size_t n, cap;
};

void publish_seen_fini(struct publish_seen *seen);

/* --once: one mapping published to its end, torn reads retried, the
 * commands run and waited for, the outcome logged.  0 or a negative
 * errno (already logged): -EEXIST when its target is one in `seen`
 * (NULL: none), to which it is added. */
int publish_once(const struct conf_sync *c, bool dry_run,
		 struct publish_seen *seen);

#endif
