/* Recursive watching with libuv fs-event handles, which on Linux watch one
 * directory each: the set of watched directories is made to follow the
 * directories the last snapshot saw (by path and inode, so a directory
 * replaced under the same name is watched anew), plus each directory a
 * lookup of the root's path goes through (symbolic links followed), for
 * the name looked up in it: a root removed, renamed or replaced, or made
 * another directory by a link swapped on the way, is noticed.
 *
 * Every inotify watch of a user comes out of one pool
 * (fs.inotify.max_user_watches) that all of the user's processes share,
 * so the watches of all the mappings of a daemon come out of one budget
 * of their own, and a source with more directories than fit is watched
 * where it matters most: the root first, then level by level. */
#ifndef ATOMSYNC_WATCH_H
#define ATOMSYNC_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "snapshot.h"

/* When fs.inotify.max_user_watches cannot be read: half of the kernel's
 * historical default of 8192. */
#define WATCH_DEFAULT_MAX 4096

struct watch;
struct watch_budget;

/* A budget of `max` watches, shared by the watches given it. */
struct watch_budget *watch_budget_new(size_t max);
/* A lower maximum takes effect as each watch is next updated. */
void watch_budget_set_max(struct watch_budget *b, size_t max);
size_t watch_budget_max(const struct watch_budget *b);
/* Watches held, those on the way to the roots included. */
size_t watch_budget_used(const struct watch_budget *b);
/* Once every watch using it is closed. */
void watch_budget_free(struct watch_budget *b);

/* Half of /proc/sys/fs/inotify/max_user_watches (at least 1), or
 * WATCH_DEFAULT_MAX when it cannot be read; *from_kernel says which. */
size_t watch_default_max(bool *from_kernel);

/* libuv drops inotify's queue overflow without a word: past this many
 * events between two reads of a source, some may have been lost, so it
 * is read whole.  Half the kernel's queue (fs.inotify.max_queued_events,
 * 16384 by default), and no more than WATCH_OVERFLOW_EVENTS. */
#define WATCH_OVERFLOW_EVENTS 4096u
size_t watch_overflow_events(void);

/* The watches of all mappings share the loop's one inotify queue: when
 * more than watch_overflow_events() of their events come in one turn of
 * the loop, some of any mapping's may have been lost, and `flood` is
 * called (once for that turn). */
void watch_budget_on_flood(struct watch_budget *b, void (*flood)(void *arg),
			   void *arg);

/* Something may have changed in `dir` (a directory as watch_update was
 * given it; NULL for a directory on the way to the root): `name` is the
 * entry libuv named, "" when that may be `dir` itself (libuv names a
 * watched directory deleted or moved by its own last component), or
 * NULL when `dir` has just begun to be watched (what changed in it
 * before went unseen).  `root` is set when the event concerns the
 * source root itself, or the way to it. */
typedef void (*watch_cb)(void *data, const char *dir, const char *name,
			 int root);

/* `budget` may be NULL: no limit but the kernel's.  The watches on the
 * way to the root are taken even when the budget is spent. */
int watch_new(uv_loop_t *loop, const char *root, struct watch_budget *budget,
	      watch_cb cb, void *data, struct watch **out);

struct watch_result {
	size_t wanted;	/* distinct directories asked for */
	size_t added;	/* watchers started by this update */
	bool capped;	/* the budget left some of them unwatched */
};

/* Watches `dirs` (relative to the root, or absolute) as far as the budget
 * allows: when they do not all fit, those nearest the root, and among
 * directories as deep, the first in path order.  Returns -ENOSPC when the
 * kernel's limit on watches stopped some of them (once it refuses one, no
 * more are tried), or another negative errno when some directory cannot
 * be watched (a path too long for inotify); the others are in place.  A
 * directory that vanished meanwhile is no error. */
int watch_update(struct watch *w, const struct snap_dir *dirs, size_t n,
		 struct watch_result *r);

/* Number of directories watched (those on the way to the root not
 * counted). */
size_t watch_count(const struct watch *w);

/* Stops and closes every handle, giving their watches back to the budget
 * at once; `done(data)` runs once all are closed, after which `w` is
 * gone. */
void watch_close(struct watch *w, void (*done)(void *data), void *data);

#endif
