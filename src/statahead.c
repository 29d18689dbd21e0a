#include "config.h"

#include "statahead.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "fsutil.h"
#include "thread.h"

struct statahead_entry {
	struct stat st;
	uint64_t dir_dev, dir_ino; /* the directory it was looked up in */
};

struct statahead {
	const struct snapshot *rec;
	char *root;
	size_t lo;		/* the first entry of rec stat'ed ahead */
	struct statahead_entry *v; /* from lo on */
	size_t vmap;		/* v's mapping's size; 0: malloc's */
	atomic_uchar *done;	/* each of v, once its stat is there */
	atomic_size_t walk_at;	/* the last entry the walk asked for */
	atomic_bool stop;
	atomic_bool ready;	/* rec, lo, v and done are set */
	/* The thread stats nothing before the walk asks its first name:
	 * each stat is then later than the time the walk tells a file
	 * written as it reads by (see snapshot_mark_racy()). */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool begun;		/* under mu */
	bool asked;		/* the walk's: it told the thread so */
	int64_t from_ns;	/* the wall clock before its first stat */
	struct snap_cursor cur; /* the walk's */
	size_t used;		/* stats it took */
	pthread_t t;
	bool running;
};

int statahead_new(struct statahead **out)
{
	struct statahead *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return -ENOMEM;
	atomic_init(&a->walk_at, 0);
	atomic_init(&a->stop, false);
	atomic_init(&a->ready, false);
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	*out = a;
	return 0;
}

/* Until the walk asks its first name, or is over: whether it began. */
static bool await_walk(struct statahead *a)
{
	pthread_mutex_lock(&a->mu);
	while (!a->begun &&
	       !atomic_load_explicit(&a->stop, memory_order_relaxed))
		pthread_cond_wait(&a->cv, &a->mu);
	bool begun = a->begun;
	pthread_mutex_unlock(&a->mu);
	return begun;
}

/* Wakes the thread: the walk began (`begun`), or it is to stop. */
static void wake(struct statahead *a, bool begun)
{
	pthread_mutex_lock(&a->mu);
	if (begun)
		a->begun = true;
	else
		atomic_store_explicit(&a->stop, true, memory_order_relaxed);
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* The directory of `path` (its first dlen bytes), opened below root
 * without a link on the way, and its device and inode. */
static int open_parent(int root, const char *path, size_t dlen,
		       struct stat *st)
{
	char *dir = strndup(path, dlen);

	if (dir == NULL)
		return -ENOMEM;
	int fd = fsutil_open_beneath(root, dir, O_PATH | O_DIRECTORY);
	free(dir);
	if (fd >= 0 && fstat(fd, st) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* The root as the walk opens it: a link on the way that another user
 * could have put there is refused (see fsutil_chase()). */
static int open_root(const char *path)
{
	char *why = NULL;
	int fd = fsutil_chase(path, 0, O_RDONLY | O_DIRECTORY, NULL, &why);

	free(why);
	return fd;
}

/* From the last entry back, until the walk is there; a directory's
 * names are together in the record, but for those of its
 * subdirectories, after each of which it is opened again. */
static void *statahead_run(void *arg)
{
	struct statahead *a = arg;
	const struct snapshot *r = a->rec;
	struct timespec now;
	const char *dir = NULL; /* the path dfd is, its first dlen bytes */
	size_t dlen = 0;
	struct stat dst;

	if (!await_walk(a))
		return NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	a->from_ns = clock_ts_ns(&now);
	int root = open_root(a->root), dfd = -1;

	for (size_t i = r->n; root >= 0 && i-- > a->lo;) {
		if (atomic_load_explicit(&a->stop, memory_order_relaxed) ||
		    atomic_load_explicit(&a->walk_at, memory_order_relaxed) >= i)
			break;
		const struct snap_entry *e = &r->v[i];
		/* Reached through a link: the walk reads it elsewhere. */
		if (e->src || (e->flags & (SNAP_F_FOLLOW | SNAP_F_EXTERNAL)))
			continue;
		const char *slash = strrchr(e->path, '/');
		size_t n = slash ? (size_t)(slash - e->path) : 0;
		if (dir == NULL || n != dlen || memcmp(dir, e->path, n) != 0) {
			if (dfd >= 0)
				close(dfd);
			dfd = open_parent(root, e->path, n, &dst);
			dir = e->path;
			dlen = n;
		}
		struct statahead_entry *x = &a->v[i - a->lo];
		if (dfd < 0 || fstatat(dfd, slash ? slash + 1 : e->path, &x->st,
				       AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		x->dir_dev = (uint64_t)dst.st_dev;
		x->dir_ino = (uint64_t)dst.st_ino;
		atomic_store_explicit(&a->done[i - a->lo], 1,
				      memory_order_release);
	}
	if (dfd >= 0)
		close(dfd);
	if (root >= 0)
		close(root);
	return NULL;
}

/* Room for n entries: in huge pages from ARRAY_HUGE_MIN on, since the
 * kernel's first write to each small page (the stat it returns) would
 * fault it in: 10,000 entries span 400 of them. */
static struct statahead_entry *entries_new(size_t n, size_t *vmap)
{
	size_t bytes = n * sizeof(struct statahead_entry);

	*vmap = 0;
	return bytes < ARRAY_HUGE_MIN ? malloc(bytes)
				      : array_map_huge(bytes, vmap);
}

int statahead_start(struct statahead *a, const char *root,
		const struct snapshot *rec)
{
	if (a->rec || a->running)
		return -EALREADY;
	size_t lo = rec->n > STATAHEAD_MAX ? rec->n - STATAHEAD_MAX : 0;
	size_t n = rec->n - lo;
	if (n == 0)
		return 0;
	a->root = strdup(root);
	a->v = entries_new(n, &a->vmap);
	a->done = calloc(n, sizeof(*a->done));
	if (a->root == NULL || a->v == NULL || a->done == NULL)
		return -ENOMEM;
	a->rec = rec;
	a->lo = lo;
	int rc = thread_start(&a->t, statahead_run, a);
	a->running = rc == 0;
	/* Not before the thread: nothing is taken from an ahead that did
	 * not start. */
	if (a->running)
		atomic_store_explicit(&a->ready, true, memory_order_release);
	return rc;
}

bool statahead_take(struct statahead *a, const char *path, uint64_t dir_dev,
		    uint64_t dir_ino, int64_t since_ns, struct stat *st)
{
	if (a == NULL)
		return false;
	if (!a->asked) {
		a->asked = true;
		wake(a, true);
	}
	if (!atomic_load_explicit(&a->ready, memory_order_acquire))
		return false;
	const struct snap_entry *e = snapshot_find_next(a->rec, path, &a->cur);
	if (e == NULL)
		return false;
	size_t i = (size_t)(e - a->rec->v);
	if (i > atomic_load_explicit(&a->walk_at, memory_order_relaxed))
		atomic_store_explicit(&a->walk_at, i, memory_order_relaxed);
	if (i < a->lo ||
	    !atomic_load_explicit(&a->done[i - a->lo], memory_order_acquire))
		return false;
	const struct statahead_entry *x = &a->v[i - a->lo];
	/* A directory the walk stats itself, just before it opens it: its
	 * mode and owner judge what is below. */
	if (x->dir_dev != dir_dev || x->dir_ino != dir_ino ||
	    a->from_ns < since_ns || S_ISDIR(x->st.st_mode))
		return false;
	*st = x->st;
	a->used++;
	return true;
}

void statahead_wait(struct statahead *a)
{
	if (a && a->running && !a->asked)
		wake(a, false); /* no walk: nothing to take ahead of */
	if (a && a->running) {
		pthread_join(a->t, NULL);
		a->running = false;
	}
}

size_t statahead_used(const struct statahead *a)
{
	return a ? a->used : 0;
}

void statahead_free(struct statahead *a)
{
	if (a == NULL)
		return;
	wake(a, false);
	statahead_wait(a);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	if (a->vmap)
		munmap(a->v, a->vmap);
	else
		free(a->v);
	free(a->done);
	free(a->root);
	free(a);
}
