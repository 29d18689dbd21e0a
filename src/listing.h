/* The names in a tree of directories, read ahead of the work that needs
 * them: a --once run reads the generation it will recycle while it reads
 * the source.  A directory is listed whole or not at all; each listed
 * one carries its device and inode, so that a user can tell that the
 * directory it holds open is the one that was read. */
#ifndef ATOMSYNC_LISTING_H
#define ATOMSYNC_LISTING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct listing_name {
	size_t name;	/* offset in the listing's pool of names */
	uint64_t ino;	/* as the directory entry gives them */
	unsigned char type;
};

struct listing_dir {
	char *path;	/* "" for the top, then "a", "a/b" */
	uint64_t dev, ino;
	size_t first, n; /* its names: names[first .. first + n), in
			    strcmp() order */
};

struct listing {
	struct listing_dir *dirs; /* sorted by path (strcmp) */
	size_t ndirs, capdirs;
	struct listing_name *names;
	size_t nnames, capnames;
	char *pool;
	size_t pool_len, pool_cap;
};

/* Lists the directory open as `fd` and every directory below it,
 * following no symbolic link, until `max_names` names are listed: the
 * directories read by then are listed whole, the rest not at all.  Only
 * directories that root or we own and nobody else can write are read,
 * nor any below one that is not, nor one whose path is PATH_MAX bytes or
 * more.  Once `stop` (when not NULL) is set, it reads no further name:
 * the directories read whole so far are what it lists.  0 (a top left
 * out or stopped before: nothing listed), or a negative errno with
 * nothing listed (*out NULL). */
int listing_read(int fd, size_t max_names, const atomic_bool *stop,
		 struct listing **out);
/* Lists the directory open as `fd` alone, whoever owns it (the caller
 * tells whether it can be trusted), as the top ("").  0, or a negative
 * errno with nothing listed (*out NULL). */
int listing_read_one(int fd, struct listing **out);
void listing_free(struct listing *l);
/* The directory listed at `path`, NULL when it was not read. */
const struct listing_dir *listing_find(const struct listing *l,
				       const char *path);
static inline const char *listing_name(const struct listing *l,
				       const struct listing_name *n)
{
	return l->pool + n->name;
}

#endif
