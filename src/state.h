/* The state file atomsync keeps in a target (..atomsync): which
 * generation is live and, for every entry in it, the source metadata it
 * was projected from.  It makes "has anything changed?" cheap; it is only
 * trusted when it names the generation ..data points to.  Beside it, the
 * error file (..atomsync.error): the last error met publishing into the
 * target, kept while publishing fails. */
#ifndef ATOMSYNC_STATE_H
#define ATOMSYNC_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "snapshot.h"

#define STATE_FILE "..atomsync"
#define STATE_TMP "..atomsync.tmp"
#define STATE_JOURNAL "..atomsync.journal"
#define STATE_JOURNAL_TMP "..atomsync.journal.tmp"
#define STATE_ERROR_FILE "..atomsync.error"
#define STATE_ERROR_TMP "..atomsync.error.tmp"
/* Longer error messages are cut to this many bytes when recorded. */
#define STATE_ERROR_MAX 4096

/* Writes the state (mode 0600) through STATE_TMP and a rename, so a
 * reader of the state file sees the old or the new one whole, and
 * removes any journal.  `flushed`: whether the generation was made
 * durable before it went live. */
int state_save(int dfd, const struct snapshot *s, const char *gen,
	       bool flushed);

/* What a writer knows of the state it keeps in a target, to record a
 * publish as what it changed (appended to STATE_JOURNAL) instead of
 * writing every entry again. */
struct state_log {
	char *base;	     /* the generation STATE_FILE names; NULL:
				unknown, the next record writes it whole */
	uint64_t base_bytes; /* its size */
	uint64_t base_ino;   /* and inode: a journal names both */
	char *gen;	     /* the generation last recorded */
	bool flushed;	     /* and whether it was flushed */
	uint64_t bytes;	     /* the journal's size, 0: none yet */
	uint64_t ino;	     /* and inode, 0: none yet; opened to append
				for each record and closed after, as a
				file held open to write keeps the file
				system from being remounted read-only */
};

/* Loads the state in `dfd`: the state file, then the publishes its
 * journal records, up to the last one written whole.  *gen is the
 * generation it describes; the
 * snapshot has no source (root_fd -1) and its `taken` is the time the
 * described generation was recorded.  *sound is false when that
 * generation was not flushed to disk and the machine has restarted since:
 * its files may not hold what the state says.  -ENOENT: none; -EINVAL:
 * damaged; -EFBIG: more than max_entries entries; -EPERM: a file
 * someone other than root or us could have written. */
int state_load(int dfd, size_t max_entries, struct snapshot **out, char **gen,
	       bool *sound);
/* The same, and *flushed (when not NULL) says whether the generation
 * was recorded as flushed to disk before it went live.  `l` (when not
 * NULL) knows the state it loaded, so the next state_record of a publish
 * made from it only appends what that changed: to the journal read, or
 * to a new one when there was none on this state file.  `l` knows
 * nothing (the next record writes the state whole) when the journal ends
 * in a record cut short or damaged, cannot be opened to write, or has
 * another name too. */
int state_load_log(int dfd, size_t max_entries, struct snapshot **out,
		   char **gen, bool *sound, bool *flushed,
		   struct state_log *l);

void state_log_init(struct state_log *l);
/* Forgets what is on disk: the next state_record writes it whole. */
void state_log_fini(struct state_log *l);

/* Records `s`, generation `gen`, as the state in `dfd`.  When `l` knows
 * the state on disk and `prev` is what it holds (the caller's last
 * recorded snapshot), the entries that differ are appended to the
 * journal; otherwise, or when the journal has grown to half the state
 * file, the state is written whole (state_save) and the journal
 * removed.  On failure `l` forgets, the state on disk names an older
 * generation, which is not trusted, and *file (when not NULL) names the
 * file that could not be written. */
int state_record(int dfd, struct state_log *l, const struct snapshot *prev,
		 const struct snapshot *s, const char *gen, bool flushed,
		 const char **file);

/* How many entries the state file in `dfd` says it holds (its journal
 * not read): what the next read of the source will likely find, for it
 * to make room for at once.  -EFBIG: more than max_entries; the same
 * errors as state_load otherwise. */
int state_entries(int dfd, size_t max_entries, size_t *n);

/* Only the header of the state file in `dfd`: the generation it
 * describes, when that was recorded, and whether it is sound (as
 * state_load says).  The same errors as state_load. */
int state_peek(int dfd, char **gen, struct timespec *recorded, bool *sound);

/* Records `msg` (cut to STATE_ERROR_MAX bytes) and the wall-clock time
 * `when_ms` in STATE_ERROR_FILE (mode 0600), written to STATE_ERROR_TMP
 * and renamed over it: whatever sits at either name (a link, a FIFO) is
 * replaced, never followed or opened. */
int state_error_save(int dfd, uint64_t when_ms, const char *msg);
/* Removes the error file; a missing one is no error. */
int state_error_clear(int dfd);
/* Reads the error file: -ENOENT when there is none, -EINVAL when it is
 * damaged or too big, -EPERM when someone other than root or us could
 * have written it. */
int state_error_load(int dfd, uint64_t *when_ms, char **msg);

/* Escapes bytes that are not printable ASCII, space and backslash as \xHH;
 * the result is malloc'ed. */
char *state_escape(const char *s);
/* Inverse of state_escape; -EINVAL on a malformed escape. */
int state_unescape(const char *s, char **out);

#endif
