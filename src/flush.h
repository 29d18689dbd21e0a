/* Flushing what a generation holds to disk before ..data names it.
 *
 * A few new files and directories are flushed each, all at once
 * (flush_each()).  A generation with many is flushed with one syncfs()
 * once it is complete; asked for along the way as well, from a thread
 * of its own, the disk writes back what is done while the rest is
 * written, and the last syncfs() has little left to wait for. */
#ifndef ATOMSYNC_FLUSH_H
#define ATOMSYNC_FLUSH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "snapshot.h"

/* fsync()s the entries todo[0..n) of `s` (paths below the directory
 * `dirfd`) from several threads at once.  Each is opened without
 * following symlinks or blocking, and flushed only when it is still the
 * regular file or directory the entry says: -EIO otherwise.  The first
 * failure, or 0; after one, the rest may be left unflushed. */
int flush_each(int dirfd, const struct snapshot *s, const size_t *todo,
	       size_t n);

/* A flush is asked for each time this many new files and directories
 * have been written: a generation that has that many is flushed with
 * syncfs() in the end anyway (not file by file). */
#define FLUSH_EARLY_OBJECTS 4096

/* The thread, as the writing thread sees it. */
enum flush_early_thread {
	FLUSH_THREAD_NONE,   /* none running: no flush asked for since */
	FLUSH_THREAD_FAILED, /* could not be started: none made */
	FLUSH_THREAD_RUNS,
};

/* What the thread is asked to do (under mu). */
enum flush_early_state {
	FLUSH_EARLY_WAIT,  /* nothing: it waits to be asked */
	FLUSH_EARLY_ASKED, /* a flush is asked for, not begun */
	FLUSH_EARLY_LAST,  /* the same, and the thread stops after it */
	FLUSH_EARLY_DONE,  /* the thread stops, or has */
};

struct flush_early {
	int dirfd;		/* the writer's (borrowed) */
	int fd;			/* the thread's own open file of it */
	enum flush_early_thread thread_state;
	pthread_t thread;
	pthread_mutex_t mu;	/* guards state, rc and flushes */
	pthread_cond_t cv;
	enum flush_early_state state;
	int rc;			/* the first failure */
	unsigned flushes;	/* syncfs() calls made */
	size_t objects;		/* written since the last ask (by the
				   writers, one at a time) */
};

/* Ready to flush the file system that holds the directory `dirfd`,
 * which must stay open until flush_early_fini(). */
void flush_early_init(struct flush_early *f, int dirfd);
/* Counts a new file or directory written; asks for a flush each
 * FLUSH_EARLY_OBJECTS of them (starting the thread at the first).  Two
 * threads that write one generation call it under a lock of theirs. */
void flush_early_note(struct flush_early *f);
/* Stops the thread, once it has made a flush asked for and not begun
 * when `pending` (else that one is dropped: the writer failed): the
 * first failure of a flush, or 0.  f->flushes says how many there
 * were. */
int flush_early_fini(struct flush_early *f, bool pending);

#endif
