#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "fsutil.h"
#include "listing.h"

/* The directories still to be read: paths, as a stack (no recursion
 * over a tree of any depth). */
struct pending {
	char **v;
	size_t n, cap;
};

static int pending_push(struct pending *p, char *path)
{
	if (path == NULL ||
	    array_grow(&p->v, &p->cap, p->n, sizeof(*p->v)) < 0) {
		free(path);
		return -ENOMEM;
	}
	p->v[p->n++] = path;
	return 0;
}

static void pending_fini(struct pending *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	free(p->v);
}

static int add_name(struct listing *l, const struct dirent *de)
{
	size_t len = strlen(de->d_name) + 1;

	if (array_grow(&l->names, &l->capnames, l->nnames,
		       sizeof(*l->names)) < 0)
		return -ENOMEM;
	while (l->pool_cap - l->pool_len < len) {
		size_t cap = l->pool_cap ? l->pool_cap * 2 : 4096;
		char *p = realloc(l->pool, cap);
		if (p == NULL)
			return -ENOMEM;
		l->pool = p;
		l->pool_cap = cap;
	}
	memcpy(l->pool + l->pool_len, de->d_name, len);
	l->names[l->nnames++] = (struct listing_name){
		.name = l->pool_len, .ino = (uint64_t)de->d_ino,
		.type = de->d_type,
	};
	l->pool_len += len;
	return 0;
}

static int name_cmp(const void *a, const void *b, void *pool)
{
	const struct listing_name *x = a, *y = b;

	return strcmp((const char *)pool + x->name,
		      (const char *)pool + y->name);
}

/* Whether the listed name `n` of the directory open as `fd` is a
 * directory; the file system may not say in the entry. */
static bool is_dir(const struct listing *l, const struct listing_name *n,
		   int fd)
{
	struct stat st;

	if (n->type != DT_UNKNOWN)
		return n->type == DT_DIR;
	return fstatat(fd, listing_name(l, n), &st, AT_SYMLINK_NOFOLLOW) ==
		       0 &&
	       S_ISDIR(st.st_mode);
}

/* Queues the directories among the names just listed in `d`. */
static int queue_subdirs(const struct listing *l, const struct listing_dir *d,
			 int fd, struct pending *todo)
{
	for (size_t i = d->first; i < d->first + d->n; i++) {
		const struct listing_name *n = &l->names[i];
		if (!is_dir(l, n, fd))
			continue;
		const char *name = listing_name(l, n);
		/* Each directory is opened by its path in one call. */
		if (strlen(d->path) + 1 + strlen(name) >= PATH_MAX)
			continue;
		char *p = d->path[0] ? fsutil_join(d->path, name)
				     : strdup(name);
		if (pending_push(todo, p) < 0)
			return -ENOMEM;
	}
	return 0;
}

static bool stopped(const atomic_bool *stop)
{
	return stop && atomic_load_explicit(stop, memory_order_relaxed);
}

/* Lists the names of `d` (but "." and "..") in l as the directory
 * `path` (which it takes) that `st` describes, sorted: 0, 1 when that
 * would pass `max` names, 2 once `stop` is set (nothing of it is kept
 * then), or a negative errno. */
static int list_names(struct listing *l, DIR *d, char *path,
		      const struct stat *st, size_t max,
		      const atomic_bool *stop)
{
	size_t first = l->nnames, pool = l->pool_len;
	struct dirent *de;
	int rc = 0;

	while (rc == 0) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			rc = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = l->nnames == max ? 1 : stopped(stop) ? 2 : add_name(l, de);
	}
	if (rc == 0 && array_grow(&l->dirs, &l->capdirs, l->ndirs,
				  sizeof(*l->dirs)) < 0)
		rc = -ENOMEM;
	if (rc != 0) {
		l->nnames = first;
		l->pool_len = pool;
		free(path);
		return rc;
	}
	struct listing_dir *ld = &l->dirs[l->ndirs++];
	*ld = (struct listing_dir){
		.path = path, .dev = (uint64_t)st->st_dev,
		.ino = (uint64_t)st->st_ino, .first = first,
		.n = l->nnames - first,
	};
	if (ld->n > 1)
		qsort_r(l->names + first, ld->n, sizeof(*l->names), name_cmp,
			l->pool);
	return 0;
}

/* Reads the directory open as `fd` (which it closes) into l as `path`
 * (which it takes): 0, 1 when that would pass `max` names, 2 once `stop`
 * is set (nothing of it is kept then), or a negative errno.  One that
 * another user can change is left out, with all below it: a listing of
 * it could not be trusted once read, and its owner could make it a chain
 * of directories as deep as the bound allows. */
static int read_dir(struct listing *l, int fd, char *path, size_t max,
		    const atomic_bool *stop, struct pending *todo)
{
	struct stat st;
	bool ours = fstat(fd, &st) == 0 && fsutil_ours_alone(&st);
	DIR *d = ours ? fdopendir(fd) : NULL;
	int rc;

	if (!ours) {
		close(fd);
		free(path);
		return 0;
	}
	if (d == NULL) {
		rc = -errno;
		close(fd);
		free(path);
		return rc;
	}
	rc = list_names(l, d, path, &st, max, stop);
	if (rc == 0)
		rc = queue_subdirs(l, &l->dirs[l->ndirs - 1], dirfd(d), todo);
	closedir(d);
	return rc;
}

static int dir_cmp(const void *a, const void *b)
{
	const struct listing_dir *x = a, *y = b;

	return strcmp(x->path, y->path);
}

int listing_read(int fd, size_t max_names, const atomic_bool *stop,
		 struct listing **out)
{
	struct listing *l = calloc(1, sizeof(*l));
	struct pending todo = {0};
	int rc = l ? 0 : -ENOMEM;
	int top = rc == 0 ? openat(fd, ".", O_RDONLY | O_DIRECTORY |
						O_CLOEXEC)
			  : -1;

	*out = NULL;
	if (rc == 0 && top < 0)
		rc = -errno;
	if (rc == 0)
		rc = read_dir(l, top, strdup(""), max_names, stop, &todo);
	while (rc == 0 && todo.n > 0) {
		char *path = todo.v[--todo.n];
		/* Gone, or a link by now: not listed, read when needed. */
		int dfd = fsutil_open_beneath(fd, path,
					      O_RDONLY | O_DIRECTORY |
						      O_NOFOLLOW);
		if (dfd < 0) {
			free(path);
			rc = dfd == -ENOMEM || dfd == -EMFILE ? dfd : 0;
			continue;
		}
		rc = read_dir(l, dfd, path, max_names, stop, &todo);
	}
	if (rc == 2) /* stopped: what was read is listed */
		rc = 0;
	pending_fini(&todo);
	if (rc < 0 || (rc == 1 && l->ndirs == 0)) {
		listing_free(l);
		return rc < 0 ? rc : -E2BIG;
	}
	if (l->ndirs > 1)
		qsort(l->dirs, l->ndirs, sizeof(*l->dirs), dir_cmp);
	*out = l;
	return 0;
}

void listing_free(struct listing *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->ndirs; i++)
		free(l->dirs[i].path);
	free(l->dirs);
	free(l->names);
	free(l->pool);
	free(l);
}

int listing_read_one(int fd, struct listing **out)
{
	struct listing *l = calloc(1, sizeof(*l));
	struct stat st;
	DIR *d = NULL;
	int rc = l ? 0 : -ENOMEM;
	int dfd = rc == 0 ? openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
			  : -1;

	*out = NULL;
	if (rc == 0 && (dfd < 0 || fstat(dfd, &st) < 0 ||
			(d = fdopendir(dfd)) == NULL))
		rc = -errno;
	if (rc == 0) {
		char *path = strdup("");
		rc = path ? list_names(l, d, path, &st, SIZE_MAX, NULL) : -ENOMEM;
	}
	if (d)
		closedir(d);
	else if (dfd >= 0)
		close(dfd);
	if (rc < 0) {
		listing_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

const struct listing_dir *listing_find(const struct listing *l,
				       const char *path)
{
	struct listing_dir key = {.path = (char *)path};

	if (l == NULL || l->ndirs == 0)
		return NULL;
	return bsearch(&key, l->dirs, l->ndirs, sizeof(*l->dirs), dir_cmp);
}
