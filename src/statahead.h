/* Stats of a source's names taken ahead of a walk, on a thread of its
 * own.  A --once run reads the whole source on one thread; from the
 * record it loads it knows which names the source most likely holds.
 * While the walk goes from the first name on, this thread stats the
 * record's names from the last one back, until the two meet: each core
 * makes about half of the calls.  The walk takes a file's stat from
 * here in place of its own call only when the name was looked up in the
 * very directory it reads (the same device and inode), once the walk
 * had begun: one taken a little earlier, as a walk that came by sooner
 * would have taken it, and checked again, as any is, when the file is
 * opened to be copied.  The root is opened as the walk opens it, and
 * each directory below it without a link on the way. */
#ifndef ATOMSYNC_STATAHEAD_H
#define ATOMSYNC_STATAHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "snapshot.h"

/* At most this many of the record's last names are stat'ed ahead (160
 * bytes each): at a million, 10 MiB, not 160. */
#define STATAHEAD_MAX 65536

struct statahead;

/* One with nothing in it yet, for a walk to ask from its start. */
int statahead_new(struct statahead **out);
/* Starts the thread on the names of `rec` (sorted, as a loaded state
 * is; it must stay as it is until statahead_free()) below `root`.  Once
 * only; -EALREADY after.  One that cannot start stays empty. */
int statahead_start(struct statahead *a, const char *root,
		const struct snapshot *rec);
/* The walk's side, from one thread, names asked in path order: *st
 * for the file `path` found in the directory (dir_dev, dir_ino) no
 * earlier than `since_ns` (the wall clock the walk started at, from
 * which it tells a file written as it reads), and true; false when there
 * is none, or it is a directory, and the walk makes the call itself.
 * Names asked tell the thread where the walk is, so that it stops
 * there. */
bool statahead_take(struct statahead *a, const char *path, uint64_t dir_dev,
		    uint64_t dir_ino, int64_t since_ns, struct stat *st);
/* Waits until the thread has gone as far as it goes: the walk never
 * does (it makes the calls itself meanwhile); a caller that wants every
 * stat there will be does, once it has asked for a name (before that,
 * the thread stats nothing, and is stopped). */
void statahead_wait(struct statahead *a);
/* How many stats the walk took from here. */
size_t statahead_used(const struct statahead *a);
/* Stops the thread, waits for it, and frees it all; NULL is fine. */
void statahead_free(struct statahead *a);

#endif
