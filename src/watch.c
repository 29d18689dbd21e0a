#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
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
	int ancestor; /* a directory on the way to the root: `rel` is its
			 absolute path, `names` what the way looks up in it */
	char **names;
	size_t nnames;
	int stale; /* the directory itself was deleted or moved */
	int counted; /* started: holds a watch of the budget */
	int fresh; /* started by the update under way */
};

struct watch_budget {
	size_t max, used;
	/* The events of all its watches in one turn of the loop (one
	 * uv_now()), which libuv reads from the one inotify queue at once:
	 * past turn_max, that queue may have overflowed. */
	uint64_t turn_ms;
	size_t turn_events, turn_max;
	void (*flood)(void *arg);
	void *flood_arg;
};

struct watch {
	uv_loop_t *loop;
	struct watch_budget *budget; /* or NULL */
	char *root;
	watch_cb cb;
	void *data;
	struct wentry **v; /* sorted by rel */
	size_t n;
	struct wentry **anc; /* the directories on the way to the root */
	size_t nanc;
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

void watch_budget_on_flood(struct watch_budget *b, void (*flood)(void *arg),
			   void *arg)
{
	b->flood = flood;
	b->flood_arg = arg;
	b->turn_max = watch_overflow_events();
}

/* Counts an event of the turn `now`; the first past turn_max floods. */
static void budget_event(struct watch_budget *b, uint64_t now)
{
	if (now != b->turn_ms) {
		b->turn_ms = now;
		b->turn_events = 0;
	}
	if (++b->turn_events == b->turn_max + 1 && b->flood)
		b->flood(b->flood_arg);
}

void watch_budget_free(struct watch_budget *b)
{
	free(b);
}

/* A number in a file of /proc/sys/fs/inotify: 0 and *v, or -1. */
static int inotify_sysctl(const char *name, unsigned long long *v)
{
	char buf[32], *path, *end;

	if (asprintf(&path, "/proc/sys/fs/inotify/%s", name) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	free(path);
	if (fd >= 0)
		close(fd);
	if (n <= 0 || !isdigit((unsigned char)buf[0]))
		return -1;
	buf[n] = '\0';
	errno = 0;
	*v = strtoull(buf, &end, 10);
	return errno || (*end != '\n' && *end != '\0') ? -1 : 0;
}

size_t watch_default_max(bool *from_kernel)
{
	unsigned long long v;

	*from_kernel = inotify_sysctl("max_user_watches", &v) == 0;
	if (!*from_kernel)
		return WATCH_DEFAULT_MAX;
	/* The other half stays for the user's other programs. */
	v /= 2;
	return v == 0 ? 1 : v > SIZE_MAX ? SIZE_MAX : (size_t)v;
}

size_t watch_overflow_events(void)
{
	unsigned long long v;

	if (inotify_sysctl("max_queued_events", &v) < 0 ||
	    v / 2 >= WATCH_OVERFLOW_EVENTS)
		return WATCH_OVERFLOW_EVENTS;
	return v / 2 == 0 ? 1 : (size_t)(v / 2);
}

static void anc_update(struct watch *w);

static void names_clear(struct wentry *e)
{
	for (size_t i = 0; i < e->nnames; i++)
		free(e->names[i]);
	e->nnames = 0;
}

static bool has_name(const struct wentry *e, const char *name)
{
	for (size_t i = 0; i < e->nnames; i++)
		if (strcmp(e->names[i], name) == 0)
			return true;
	return false;
}

static void on_event(uv_fs_event_t *h, const char *filename, int events,
		     int status)
{
	struct wentry *e = h->data;
	struct watch *w = e->w;

	(void)events;
	(void)status;
	if (w->budget)
		budget_event(w->budget, uv_now(w->loop));
	if (w->dead)
		return;
	/* libuv names the watched directory itself when it is deleted or
	 * moved (by the last component of the path it was given: for one
	 * added through /proc/self/fd, a number, which an entry of that name
	 * matches too, to no harm); its inotify watch may be gone, and a
	 * new directory can come back with the same inode number, so restart
	 * it next time. */
	bool self = filename == NULL ||
		    (e->base && strcmp(filename, e->base) == 0);

	if (self)
		e->stale = 1;
	if (e->ancestor) {
		/* Only the names the way to the root goes through matter: one
		 * removed, renamed or pointed elsewhere (a symbolic link
		 * swapped) may make the root another directory, and the way
		 * there is looked up again. */
		if (filename && !has_name(e, filename))
			return;
		anc_update(w);
		w->cb(w->data, NULL, filename ? filename : "", 1);
		return;
	}
	/* NULL is kept for a directory newly watched; "" tells that the
	 * directory itself may have changed, not one of its names. */
	w->cb(w->data, e->rel, self ? "" : filename, 0);
}

static void maybe_done(struct watch *w)
{
	if (!w->dead || w->closing > 0)
		return;
	void (*done)(void *) = w->done;
	void *data = w->done_data;
	free(w->v);
	free(w->anc);
	free(w->root);
	free(w);
	if (done)
		done(data);
}

static void on_close(uv_handle_t *h)
{
	struct wentry *e = h->data;
	struct watch *w = e->w;

	names_clear(e);
	free(e->names);
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

/* ---- the way to the root ---- */

/* Symbolic links followed on the way to the root, as the kernel does. */
#define WATCH_MAX_LINKS 40
/* Directories watched on the way: far more than any real path has, and
 * few enough that looking the way up again (one lstat(2) of a longer
 * path each) stays quick on the loop. */
#define WATCH_MAX_HOPS 256

/* A directory on the way, and a name looked up in it. */
struct hop {
	char *dir, *name;
};

struct way {
	struct hop *v;
	size_t n, cap;
};

static void way_fini(struct way *y)
{
	for (size_t i = 0; i < y->n; i++) {
		free(y->v[i].dir);
		free(y->v[i].name);
	}
	free(y->v);
}

static int way_add(struct way *y, const char *dir, const char *name,
		   size_t len)
{
	if (y->n == y->cap) {
		size_t cap = y->cap ? 2 * y->cap : 8;
		struct hop *v = realloc(y->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		y->v = v;
		y->cap = cap;
	}
	struct hop *h = &y->v[y->n];
	h->dir = strdup(dir);
	h->name = strndup(name, len);
	if (h->dir == NULL || h->name == NULL) {
		free(h->dir);
		free(h->name);
		return -ENOMEM;
	}
	y->n++;
	return 0;
}

/* `dir` followed by `name` (len bytes), or its parent for "..". */
static char *way_step(const char *dir, const char *name, size_t len)
{
	char *p = NULL;

	if (len == 2 && memcmp(name, "..", 2) == 0) {
		const char *slash = strrchr(dir, '/');
		return strndup(dir, slash && slash != dir ? (size_t)(slash - dir)
							 : 1);
	}
	if (asprintf(&p, "%s%s%.*s", dir, strcmp(dir, "/") ? "/" : "",
		     (int)len, name) < 0)
		return NULL;
	return p;
}

/* Whether the link `lst`, found in `dir`, is one a read follows (see
 * fsutil_chase()): another user's link, or one in a directory others
 * can change, ends the way (the read refuses it, in one line), so that
 * nobody but root or us can make the way long or lead it anywhere. */
static bool way_follows(const char *dir, const struct stat *lst)
{
	struct stat st;
	bool ok = false;

	if (!fsutil_trusted_uid(lst->st_uid))
		return false;
	int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		ok = fstat(fd, &st) == 0 && fsutil_trusted_dir(fd, &st);
		close(fd);
	}
	return ok;
}

/* The directories a lookup of the absolute path `root` goes through,
 * each with the name looked up in it, symbolic links followed as a read
 * follows them, down to the root itself, the first name that is missing
 * or no directory, or WATCH_MAX_HOPS names. */
static int way_of(const char *root, struct way *y)
{
	char *dir = strdup("/"), *rest = strdup(root), *link = NULL;
	int rc = dir && rest ? 0 : -ENOMEM, links = 0;
	size_t at = 0;

	while (rc == 0) {
		while (rest[at] == '/')
			at++;
		size_t len = strcspn(rest + at, "/");
		if (len == 0)
			break;
		const char *name = rest + at;
		at += len;
		if (len == 1 && name[0] == '.')
			continue;
		if (y->n == WATCH_MAX_HOPS)
			break; /* watched up to here */
		if (!(len == 2 && memcmp(name, "..", 2) == 0))
			rc = way_add(y, dir, name, len);
		char *next = rc == 0 ? way_step(dir, name, len) : NULL;
		struct stat st;
		if (next == NULL || lstat(next, &st) < 0) {
			rc = next ? rc : -ENOMEM;
			free(next);
			break; /* the way ends here: watched up to it */
		}
		if (S_ISLNK(st.st_mode) && ++links <= WATCH_MAX_LINKS &&
		    way_follows(dir, &st) &&
		    fsutil_readlinkat(AT_FDCWD, next, &link) == 0) {
			/* The link's text, then what was left. */
			char *r = NULL;
			if (asprintf(&r, "%s/%s", link, rest + at) < 0)
				r = NULL;
			free(link);
			link = NULL;
			if (r && r[0] == '/') {
				free(dir);
				dir = strdup("/");
			}
			free(next);
			free(rest);
			rest = r;
			at = 0;
			rc = r && dir ? 0 : -ENOMEM;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			free(next);
			break;
		}
		free(dir);
		dir = next;
	}
	free(dir);
	free(rest);
	return rc;
}

/* The watched directory `dir` of the way, from `old` (taken out of it)
 * or started anew; NULL when it cannot be watched. */
static struct wentry *anc_entry(struct watch *w, struct wentry **old,
				size_t nold, const char *dir)
{
	struct wentry *e = NULL;

	for (size_t i = 0; i < nold; i++)
		if (old[i] && !old[i]->stale && strcmp(old[i]->rel, dir) == 0) {
			e = old[i];
			old[i] = NULL;
			names_clear(e);
			return e;
		}
	if (entry_start(w, dir, &e) < 0)
		return NULL;
	e->ancestor = 1;
	if ((e->rel = strdup(dir)) == NULL) {
		entry_close(e);
		return NULL;
	}
	return e;
}

static int anc_add_name(struct wentry *e, const char *name)
{
	if (has_name(e, name))
		return 0;
	char **v = realloc(e->names, (e->nnames + 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	e->names = v;
	if ((v[e->nnames] = strdup(name)) == NULL)
		return -ENOMEM;
	e->nnames++;
	return 0;
}

/* Watches the directories on the way to the root as it is now: those
 * still on it are kept, the others closed.  What cannot be watched (out
 * of memory, a directory root cannot read) is left to the re-scan. */
static void anc_update(struct watch *w)
{
	struct way y = {0};
	struct wentry **old = w->anc, **nv = NULL;
	size_t nold = w->nanc, k = 0;

	if (w->dead || w->root[0] != '/' || way_of(w->root, &y) < 0 ||
	    (nv = calloc(y.n ? y.n : 1, sizeof(*nv))) == NULL) {
		way_fini(&y);
		return; /* as it was */
	}
	for (size_t i = 0; i < y.n; i++) {
		size_t at = 0;
		while (at < k && strcmp(nv[at]->rel, y.v[i].dir) != 0)
			at++;
		if (at == k) {
			struct wentry *e = anc_entry(w, old, nold, y.v[i].dir);
			if (e == NULL)
				continue;
			nv[k++] = e;
		}
		(void)anc_add_name(nv[at], y.v[i].name);
	}
	for (size_t i = 0; i < nold; i++)
		if (old[i])
			entry_close(old[i]);
	free(old);
	w->anc = nv;
	w->nanc = k;
	way_fini(&y);
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
	if (w->root == NULL) {
		free(w);
		return -ENOMEM;
	}
	/* The only watches that see a root replaced, a few per mapping:
	 * taken even past the budget.  Without them, the periodic re-scan
	 * still finds it. */
	anc_update(w);
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
	/* A read lists them in order but for names with a byte below '/':
	 * at 10,000 directories, a sort after every publish spared. */
	size_t run = 1;
	while (run < n && cmp_dir(&v[run - 1], &v[run]) <= 0)
		run++;
	if (run < n)
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

	/* The way to the root as it is now, should an event have been
	 * missed. */
	anc_update(w);
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
	size_t kept = k;
	rc = start_all(w, todo, t, nv, &k, &r->added);
	/* Those kept are in order; new ones come after them. */
	if (k > kept)
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
	for (size_t i = 0; i < w->nanc; i++)
		entry_close(w->anc[i]);
	w->nanc = 0;
	maybe_done(w);
}
