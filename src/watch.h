/* Recursive watching with libuv fs-event handles, which on Linux watch one
 * directory each: the set of watched directories is made to follow the
 * directories the last snapshot saw (by path and inode, so a directory
 * replaced under the same name is watched anew), plus the parent of the
 * source root so a root that is removed, renamed or replaced is noticed.
 * When the kernel has no watch left, a source is watched where it matters
 * most: the root first, then level by level. */
#ifndef ATOMSYNC_WATCH_H
#define ATOMSYNC_WATCH_H

#include <stddef.h>

#include <uv.h>

#include "snapshot.h"

struct watch;

/* Something may have changed: `name` is the entry libuv named (or NULL);
 * `root` is set when the event concerns the source root itself. */
typedef void (*watch_cb)(void *data, const char *name, int root);

int watch_new(uv_loop_t *loop, const char *root, watch_cb cb, void *data,
	      struct watch **out);

struct watch_result {
	size_t wanted;	/* distinct directories asked for */
	size_t added;	/* watchers started by this update */
};

/* Watches `dirs` (relative to the root, or absolute), those nearest the
 * root first.  Returns -ENOSPC when the kernel's limit on watches stopped
 * some of them (once it refuses one, no more are tried), or another
 * negative errno when some directory cannot be watched (a path too long
 * for inotify); the others are in place.  A directory that vanished
 * meanwhile is no error. */
int watch_update(struct watch *w, const struct snap_dir *dirs, size_t n,
		 struct watch_result *r);

/* Number of directories watched (the root's parent not counted). */
size_t watch_count(const struct watch *w);

/* Stops and closes every handle; `done(data)` runs once all are closed,
 * after which `w` is gone. */
void watch_close(struct watch *w, void (*done)(void *data), void *data);

#endif
