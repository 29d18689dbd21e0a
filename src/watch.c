#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "watch.h"

struct wentry {
	uv_fs_event_t h;
	struct watch *w;
	char *rel; /* as the snapshot named it */
	char *base; /* last component of the watched path */
	uint64_t dev, ino;
	int root_parent; /* the watcher on the root's parent */
	int stale; /* the directory itself was deleted or moved */
	int counted; /* started: holds a watch of the budget */
	int fresh; /* started by the update under way */
};

struct watch_budget {
	size_t max, used;
};

struct watch {
	uv_loop_t *loop;
	struct watch_budget *budget; /* or NULL */
	char *root;
	char *root_base; /* last component of the root, for the parent */
	watch_cb cb;
	void *data;
	struct wentry **v; /* sorted by rel */
	size_t n;
	struct wentry *parent;
	unsigned closing; /* handles not yet closed */
	int dead;	  /* watch_close was called */
	void (*done)(void *data);
	void *done_data;
};

struct watch_budget *watch_budget_new(size_t max)
{
	struct watch_budget *b = calloc(1, sizeof(*b));

	if (b)
		b->max = max;
	return b;
}

void watch_budget_set_max(struct watch_budget *b, size_t max)
{
	b->max = max;
}

size_t watch_budget_max(const struct watch_budget *b)
{
	return b->max;
}

size_t watch_budget_used(const struct watch_budget *b)
{
	return b->used;
}

void watch_budget_free(struct watch_budget *b)
{
	free(b);
}

size_t watch_default_max(bool *from_kernel)
{
	char buf[32];
	int fd = open("/proc/sys/fs/inotify/max_user_watches",
		      O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	*from_kernel = false;
	if (n <= 0 || !isdigit((unsigned char)buf[0]))
		return WATCH_DEFAULT_MAX;
	buf[n] = '\0';
	char *end;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || (*end != '\n' && *end != '\0'))
		return WATCH_DEFAULT_MAX;
	*from_kernel = true;
	/* The other half stays for the user's other programs. */
	v /= 2;
	return v == 0 ? 1 : v > SIZE_MAX ? SIZE_MAX : (size_t)v;
}

static void on_event(uv_fs_event_t *h, const char *filename, int events,
		     int status)
{
	struct wentry *e = h->data;
	struct watch *w = e->w;

	(void)events;
	(void)status;
	if (w->dead)
		return;
	/* libuv names the watched directory itself when it is deleted or
	 * moved (by the last component of the path it was given: for one
	 * added through /proc/self/fd, a number, which an entry of that name
	 * matches too, to no harm); its inotify watch may be gone, and a
	 * new directory can come back with the same inode number, so restart
	 * it next time. */
	if (filename == NULL || (e->base && strcmp(filename, e->base) == 0))
		e->stale = 1;
	if (e->root_parent) {
		/* Only the root's own name matters in its parent. */
		if (filename && strcmp(filename, w->root_base) == 0)
			w->cb(w->data, NULL, filename, 1);
		return;
	}
	/* NULL is kept for a directory newly watched. */
	w->cb(w->data, e->rel, filename ? filename : "", 0);
}

static void maybe_done(struct watch *w)
{
	if (!w->dead || w->closing > 0)
		return;
	void (*done)(void *) = w->done;
	void *data = w->done_data;
	free(w->v);
	free(w->root);
	free(w->root_base);
	free(w);
	if (done)
		done(data);
}

static void on_close(uv_handle_t *h)
{
	struct wentry *e = h->data;
	struct watch *w = e->w;

	free(e->rel);
	free(e->base);
	free(e);
	w->closing--;
	maybe_done(w);
}

/* The kernel's watch goes at once (uv_close stops the handle); the
 * memory when libuv is done with it. */
static void entry_close(struct wentry *e)
{
	if (e->counted && e->w->budget)
		e->w->budget->used--;
	e->counted = 0;
	e->w->closing++;
	uv_close((uv_handle_t *)&e->h, on_close);
}

static int entry_start(struct watch *w, const char *path, struct wentry **out)
{
	struct wentry *e = calloc(1, sizeof(*e));
	int rc;

	if (e == NULL)
		return -ENOMEM;
	e->w = w;
	rc = uv_fs_event_init(w->loop, &e->h);
	if (rc < 0) {
		free(e);
		return rc;
	}
	e->h.data = e;
	rc = uv_fs_event_start(&e->h, on_event, path, 0);
	if (rc < 0) {
		entry_close(e);
		return rc;
	}
	e->counted = 1;
	if (w->budget)
		w->budget->used++;
	const char *slash = strrchr(path, '/');
	e->base = strdup(slash && slash[1] ? slash + 1 : path);
	*out = e;
	return 0;
}

int watch_new(uv_loop_t *loop, const char *root, struct watch_budget *budget,
	      watch_cb cb, void *data, struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return -ENOMEM;
	w->loop = loop;
	w->budget = budget;
	w->cb = cb;
	w->data = data;
	w->root = strdup(root);
	char *copy = strdup(root);
	if (w->root == NULL || copy == NULL) {
		free(copy);
		free(w->root);
		free(w);
		return -ENOMEM;
	}
	w->root_base = strdup(basename(copy));
	free(copy);
	if (w->root_base == NULL) {
		free(w->root);
		free(w);
		return -ENOMEM;
	}
	copy = strdup(root);
	char *parent = copy ? dirname(copy) : NULL;
	/* Without a parent to watch, a replaced root is still found by the
	 * periodic re-scan.  It is one watch per mapping, and the only one
	 * that sees a source replaced: taken even past the budget. */
	if (parent && strcmp(parent, root) != 0 &&
	    entry_start(w, parent, &w->parent) == 0)
		w->parent->root_parent = 1;
	free(copy);
	*out = w;
	return 0;
}

static int cmp_dir(const void *a, const void *b)
{
	return strcmp(((const struct snap_dir *)a)->path,
		      ((const struct snap_dir *)b)->path);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp((*(struct wentry *const *)a)->rel,
		      (*(struct wentry *const *)b)->rel);
}

/* Levels below the root: "" is 0, "a" 1, "a/b" 2.  An absolute path (a
 * directory a followed link leads to) counts its own components. */
static size_t depth_of(const char *p)
{
	size_t d = *p && *p != '/' ? 1 : 0;

	for (; *p; p++)
		d += *p == '/';
	return d;
}

static int cmp_depth(const void *a, const void *b)
{
	const struct snap_dir *x = *(const struct snap_dir *const *)a;
	const struct snap_dir *y = *(const struct snap_dir *const *)b;
	size_t dx = depth_of(x->path), dy = depth_of(y->path);

	return dx < dy ? -1 : dx > dy ? 1 : strcmp(x->path, y->path);
}

/* A copy of `dirs` in path order, each directory once (one reached twice
 * is watched once). */
static struct snap_dir *sorted_unique(const struct snap_dir *dirs, size_t n,
				      size_t *out_n)
{
	struct snap_dir *v = malloc((n ? n : 1) * sizeof(*v));
	size_t k = 0;

	if (v == NULL)
		return NULL;
	if (n > 0)
		memcpy(v, dirs, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_dir);
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(v[i].path, v[k - 1].path) != 0)
			v[k++] = v[i];
	*out_n = k;
	return v;
}

/* Keeps in `v` (path order, which stays) the `allow` directories nearest
 * the root; at the level that fits only in part, the first in path
 * order. */
static int keep_nearest(struct snap_dir *v, size_t *n, size_t allow)
{
	size_t maxd = 0, level = 0, left = allow, k = 0;

	if (*n <= allow)
		return 0;
	for (size_t i = 0; i < *n; i++) {
		size_t d = depth_of(v[i].path);
		maxd = d > maxd ? d : maxd;
	}
	size_t *count = calloc(maxd + 1, sizeof(*count));
	if (count == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < *n; i++)
		count[depth_of(v[i].path)]++;
	while (level <= maxd && count[level] <= left)
		left -= count[level++];
	for (size_t i = 0; i < *n; i++) {
		size_t d = depth_of(v[i].path);
		if (d < level || (d == level && left > 0)) {
			left -= d == level;
			v[k++] = v[i];
		}
	}
	*n = k;
	free(count);
	return 0;
}

/* How many directories this watch may hold: what the others leave. */
static size_t allowance(const struct watch *w)
{
	if (w->budget == NULL)
		return SIZE_MAX;
	size_t others = w->budget->used - w->n;
	return others < w->budget->max ? w->budget->max - others : 0;
}

/* The directory `d` as the read found it, opened (O_PATH): below the
 * root without a symlink on the way (a followed one's by a path whose
 * links root trusts), and the very directory, by device and inode, the
 * read listed.  A name that another user swapped for a link since (to
 * /root, say) is not watched through it: root watches only what it read,
 * and the next read tells what is there now.  -ENOENT otherwise. */
static int open_read_dir(int rootfd, const struct snap_dir *d)
{
	struct stat st;
	int fd = d->path[0] == '/'
			 ? fsutil_chase(d->path, 0, O_PATH | O_DIRECTORY, NULL,
					NULL)
			 : fsutil_open_beneath(rootfd, d->path,
					       O_PATH | O_DIRECTORY);

	if (fd < 0)
		return fd == -ENOMEM ? fd : -ENOENT;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != d->dev ||
	    (uint64_t)st.st_ino != d->ino) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

/* Starts a watcher on `d`: 0, or a libuv error.  The kernel's watch is
 * added through the descriptor (/proc/self/fd), not the name. */
static int start_dir(struct watch *w, int rootfd, const struct snap_dir *d,
		     struct wentry **out)
{
	struct wentry *e = NULL;
	char proc[40];
	int fd = open_read_dir(rootfd, d), r = fd < 0 ? fd : 0;

	if (fd >= 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		r = entry_start(w, proc, &e);
		close(fd);
	}
	if (r == 0 && (e->rel = strdup(d->path)) == NULL) {
		entry_close(e);
		r = -ENOMEM;
	}
	if (r < 0)
		return r;
	e->dev = d->dev;
	e->ino = d->ino;
	e->fresh = 1;
	*out = e;
	return 0;
}

/* Starts watchers on `todo`, nearest the root first, into nv[*k...]; once
 * the kernel has no watch left, the rest are not tried. */
static int start_all(struct watch *w, const struct snap_dir **todo, size_t t,
		     struct wentry **nv, size_t *k, size_t *added)
{
	int rc = 0;
	int rootfd = t ? fsutil_chase(w->root, 0, O_PATH | O_DIRECTORY, NULL,
				      NULL)
		       : -1;

	qsort(todo, t, sizeof(*todo), cmp_depth);
	for (size_t i = 0; i < t; i++) {
		struct wentry *e = NULL;
		int r = start_dir(w, rootfd, todo[i], &e);
		if (r == 0) {
			nv[(*k)++] = e;
			(*added)++;
		} else if (r == UV_ENOSPC) {
			rc = -ENOSPC; /* the limit is the news, over any other */
			break;
		} else if (r != UV_ENOENT && r != UV_ENOTDIR && rc == 0) {
			rc = r;
		}
	}
	if (rootfd >= 0)
		close(rootfd);
	return rc;
}

int watch_update(struct watch *w, const struct snap_dir *dirs, size_t n,
		 struct watch_result *r)
{
	size_t i = 0, j = 0, k = 0, t = 0;
	struct snap_dir *want = sorted_unique(dirs, n, &n);
	struct wentry **nv = malloc((n + w->n + 1) * sizeof(*nv));
	const struct snap_dir **todo = malloc((n + 1) * sizeof(*todo));
	int rc = want && nv && todo ? 0 : -ENOMEM;

	*r = (struct watch_result){.wanted = n};
	if (rc == 0 && n > allowance(w)) {
		r->capped = true;
		rc = keep_nearest(want, &n, allowance(w));
	}
	if (rc < 0) {
		free(want);
		free(nv);
		free(todo);
		return rc;
	}
	/* Keep what is still wanted and still the same directory. */
	while (i < n || j < w->n) {
		int c = i == n ? 1 : j == w->n ? -1 : strcmp(want[i].path, w->v[j]->rel);
		if (c > 0) {
			entry_close(w->v[j++]);
			continue;
		}
		if (c == 0 && w->v[j]->dev == want[i].dev &&
		    w->v[j]->ino == want[i].ino && !w->v[j]->stale) {
			nv[k++] = w->v[j++];
			i++;
			continue;
		}
		if (c == 0)
			entry_close(w->v[j++]); /* replaced by another dir */
		todo[t++] = &want[i++];
	}
	rc = start_all(w, todo, t, nv, &k, &r->added);
	qsort(nv, k, sizeof(*nv), cmp_entry);
	free(w->v);
	free(want);
	free(todo);
	w->v = nv;
	w->n = k;
	for (size_t x = 0; x < k; x++)
		if (nv[x]->fresh) {
			nv[x]->fresh = 0;
			w->cb(w->data, nv[x]->rel, NULL, 0);
		}
	return rc;
}

size_t watch_count(const struct watch *w)
{
	return w->n;
}

void watch_close(struct watch *w, void (*done)(void *data), void *data)
{
	w->dead = 1;
	w->done = done;
	w->done_data = data;
	for (size_t i = 0; i < w->n; i++)
		entry_close(w->v[i]);
	w->n = 0;
	if (w->parent) {
		entry_close(w->parent);
		w->parent = NULL;
	}
	maybe_done(w);
}
