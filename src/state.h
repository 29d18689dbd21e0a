/* The one state file atomsync keeps in a target (..atomsync): which
 * generation is live and, for every entry in it, the source metadata it
 * was projected from.  It makes "has anything changed?" cheap; it is only
 * trusted when it names the generation ..data points to. */
#ifndef ATOMSYNC_STATE_H
#define ATOMSYNC_STATE_H

#include <stdbool.h>

#include "snapshot.h"

#define STATE_FILE "..atomsync"
#define STATE_TMP "..atomsync.tmp"

/* Loads the state in `dfd`.  *gen is the generation it describes; the
 * snapshot has no source (root_fd -1) and its `taken` is the time the
 * described generation was recorded.  *sound is false when that
 * generation was not flushed to disk and the machine has restarted since:
 * its files may not hold what the state says.  -ENOENT: none; -EINVAL:
 * damaged, or more than max_entries entries; -EPERM: a file someone
 * other than root or us could have written. */
int state_load(int dfd, size_t max_entries, struct snapshot **out, char **gen,
	       bool *sound);

/* Writes the state (mode 0600) through STATE_TMP and a rename, so a
 * reader of the state file sees the old or the new one whole.  `flushed`: whether the
 * generation was made durable before it went live. */
int state_save(int dfd, const struct snapshot *s, const char *gen,
	       bool flushed);

/* Escapes bytes that are not printable ASCII, space and backslash as \xHH;
 * the result is malloc'ed. */
char *state_escape(const char *s);
/* Inverse of state_escape; -EINVAL on a malformed escape. */
int state_unescape(const char *s, char **out);

#endif
