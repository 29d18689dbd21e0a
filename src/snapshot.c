#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#ifdef HAVE_MALLOC_TRIM
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "fsutil.h"
#include "ignore.h"
#include "log.h"
#include "snapshot.h"
#include "statahead.h"
#include "store.h"

/* Symlinks followed while resolving one link, as the kernel's limit. */
#define MAX_LINK_HOPS 40

/* A file whose ctime is this close to (or after) the time its times were
 * recorded (by a stat, or by reading its bytes) may have been written
 * again within the same timestamp tick, so equal times do not prove equal
 * content: the bytes must be compared.  File systems with nanosecond
 * timestamps tick with the kernel's coarse clock (1 to 10 ms); one with
 * whole seconds (a zero nanosecond part) may tick once a second or every
 * two (FAT). */
#define RACY_FINE_NS 50000000LL
#define RACY_COARSE_NS 2000000000LL
/* Entry arrays of this size and more, sized at once, are mappings of
 * their own, in huge pages where the kernel has them (see array.h): the
 * state of a few thousand files loaded, say. */
#define ENTRIES_MAP_MIN ARRAY_HUGE_MIN
/* A record with this many bytes of entries and more is kept in a store,
 * which the next read views rather than copies: a copy writes every page
 * of a new array, each faulted in anew (a one-file publish at 10,000
 * files, 240 pages, took 6 ms copied under such a hypervisor, 1.7 ms
 * viewed).  Below it the copy is cheaper, though not free: glibc's
 * heap mostly gives back what the last read freed, and a one-file
 * publish at 1,000 files faults in about 17 pages anew for it.  A view
 * is mapped, unmapped and advised at each publish, each of them
 * interrupting every core the daemon's threads ran on (1,000 files:
 * change to visible p50 1.7 ms copied, 2.5 ms viewed, bench/latency). */
#define STORE_MIN ((size_t)128 << 10)
/* Bytes of entries a refresh moves in a view at a time, the record's
 * pages let go behind them (merge_moved()). */
#define MOVE_CHUNK ((size_t)1 << 20)

/* A symlink read during the walk, and what it said. */
struct linkrec {
	char *path; /* relative to the source root */
	char *target;
};

/* A directory being read. */
struct frame {
	int fd;
	char *path;	/* in the target; "" for the root */
	char *src;	/* to read: relative to the root, or absolute when
			   flags has SNAP_F_EXTERNAL */
	unsigned flags;
	uint64_t dev, ino;
	uid_t uid;	/* its owner, group and mode */
	gid_t gid;
	mode_t mode;
	/* Reached through a link, or below a directory that was: the
	 * owner, group and mode of the directory that holds the link.
	 * Its writers reach what is here, and are judged as its own are. */
	bool via;
	uid_t via_uid;
	gid_t via_gid;
	mode_t via_mode;
	char **names;
	size_t n, next;
};

struct walk {
	struct snapshot *s;
	const struct snapshot_opts *o;
	struct frame *stack;
	size_t depth, cap;
	struct linkrec *links;
	size_t nlinks, linkcap;
	char **into; /* real paths of o->follow_into that exist */
	size_t ninto;
	char *err;
	struct timespec seen; /* when it began: no stat is older */
	/* A refresh: what it starts from, the directories above the one
	 * it reads (for loops), and the subdirectories it did not enter
	 * because they are the same as in prev. */
	const struct snapshot *prev;
	struct snap_cursor prev_cur; /* where in prev the last was found */
	struct snap_dir *above;
	size_t nabove;
	char **kept;
	size_t nkept, keptcap;
	/* A full read over a record (snapshot_opts.over): prev's entries
	 * not passed yet start at over_at (see over_put()). */
	const struct snapshot *over;
	size_t over_at;
	/* Whether users are in groups, as the last asked of the user
	 * database (which each question costs a read of). */
	struct member {
		uid_t uid;
		gid_t gid;
		bool in;
	} members[8];
	size_t nmembers;
};

/* The writers of the directories a link's resolution looks names up in,
 * as one class: whoever can change one of them (rename a directory of
 * theirs over one on the way, say) chooses what the link leads to, so
 * what it leads to is judged for them too.  Two different classes count
 * as anyone, as via_from() does. */
struct deciders {
	bool set;
	uid_t uid;
	gid_t gid;
	mode_t mode;
};

/* What a name turned out to be. */
struct found {
	struct stat st;
	char *src;	/* where to read it (owned) */
	unsigned flags;
	bool linked;	/* reached through a symlink */
	bool skip;	/* a warning says why it is left out */
	struct deciders dec; /* who chose where the link led */
};

/* Notes what a symlink said.  A source whose versions are swapped by a
 * symlink (a Kubernetes volume's ..data) may change while it is walked:
 * the same link read twice must agree, or the snapshot would mix two
 * versions.  -EAGAIN when it does not. */
static int note_link(struct walk *w, const char *path, const char *target)
{
	for (size_t i = 0; i < w->nlinks; i++) {
		if (strcmp(w->links[i].path, path) != 0)
			continue;
		if (strcmp(w->links[i].target, target) == 0)
			return 0;
		return log_err_set(&w->err, -EAGAIN,
				   "source %s: symlink %s changed while the "
				   "tree was read",
				   w->s->root, path);
	}
	if (array_grow(&w->links, &w->linkcap, w->nlinks, sizeof(*w->links)) <
	    0)
		return -ENOMEM;
	struct linkrec *v = w->links;
	v[w->nlinks].path = strdup(path);
	v[w->nlinks].target = strdup(target);
	if (v[w->nlinks].path == NULL || v[w->nlinks].target == NULL) {
		free(v[w->nlinks].path);
		free(v[w->nlinks].target);
		return -ENOMEM;
	}
	w->nlinks++;
	return 0;
}

/* At the end of the walk every link must still say what it said. */
static int links_unchanged(struct walk *w)
{
	for (size_t i = 0; i < w->nlinks; i++) {
		char *t = NULL;
		int rc = fsutil_readlinkat(w->s->root_fd, w->links[i].path, &t);
		bool same = rc == 0 && strcmp(t, w->links[i].target) == 0;
		free(t);
		if (!same)
			return log_err_set(&w->err, -EAGAIN,
					   "source %s: symlink %s changed while "
					   "the tree was read",
					   w->s->root, w->links[i].path);
	}
	return 0;
}

static void links_free(struct walk *w)
{
	for (size_t i = 0; i < w->nlinks; i++) {
		free(w->links[i].path);
		free(w->links[i].target);
	}
	free(w->links);
}


int snapshot_path_cmp(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	/* Equal bytes are equal either way: only the first that differs is
	 * mapped, '/' below every byte but the end. */
	while (*p == *q && *p) {
		p++;
		q++;
	}
	int x = *p == '/' ? 1 : *p == 0 ? 0 : *p + 1;
	int y = *q == '/' ? 1 : *q == 0 ? 0 : *q + 1;
	return (x > y) - (x < y);
}

char *snapshot_clean_path(const char *path)
{
	size_t n = strlen(path);
	if (n == 0)
		return strdup(".");
	char *out = malloc(n + 2);
	if (out == NULL)
		return NULL;
	int rooted = path[0] == '/';
	size_t r = 0, w = 0, dotdot = 0;

	if (rooted) {
		out[w++] = '/';
		r = dotdot = 1;
	}
	while (r < n) {
		if (path[r] == '/') {
			r++;
		} else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
			r++;
		} else if (path[r] == '.' && path[r + 1] == '.' &&
			   (r + 2 == n || path[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && out[w] != '/')
					w--;
			} else if (!rooted) {
				if (w > 0)
					out[w++] = '/';
				out[w++] = '.';
				out[w++] = '.';
				dotdot = w;
			}
		} else {
			if ((rooted && w != 1) || (!rooted && w != 0))
				out[w++] = '/';
			while (r < n && path[r] != '/')
				out[w++] = path[r++];
		}
	}
	if (w == 0)
		out[w++] = '.';
	out[w] = '\0';
	return out;
}

bool snapshot_path_is_clean(const char *p)
{
	if (*p == '\0' || *p == '/')
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");
		bool dots = p[0] == '.' && (n == 1 || (n == 2 && p[1] == '.'));
		if (n == 0 || dots)
			return false;
		if (p[n] == '\0')
			return true;
		p += n + 1;
	}
}

bool snapshot_excluded(const struct snapshot_opts *o, const char *path,
		       bool dir)
{
	/* Asked only about what the walk reaches: it never enters an
	 * excluded directory, so nothing inside one comes back. */
	return o != NULL && ignore_match(o->exclude, path, dir);
}

const char *snapshot_warn_str(enum snap_warn kind)
{
	switch (kind) {
	case SNAP_W_OUTSIDE:
		return "symlink points outside the source; skipped";
	case SNAP_W_LOOP:
		return "symlink loop; skipped";
	case SNAP_W_DANGLING:
		return "dangling symlink; skipped";
	case SNAP_W_SPECIAL:
		return "not a regular file or directory (FIFO, socket or "
		       "device); skipped";
	case SNAP_W_LINK:
		return "symlink skipped (symlinks = skip)";
	case SNAP_W_RESERVED:
		return "names starting with '..' are reserved; skipped";
	case SNAP_W_TARGET:
		return "leads into the target itself; skipped";
	case SNAP_W_UNREADABLE:
		return "a file that a user who can write its directory (or "
		       "change the way to it) may not read; skipped";
	case SNAP_W_HIDDEN:
		return "symlink through a directory that a user who can write "
		       "its directory may not enter; skipped";
	case SNAP_W_PROC:
		return "symlink into /proc or /sys (what a file there holds "
		       "depends on who reads it); skipped";
	case SNAP_W_HIDDEN_BELOW:
		return "a directory that a user who can change the way to it "
		       "(the directory of a symlink to it, or one above the "
		       "source) may not enter; skipped";
	}
	return "skipped";
}

void snapshot_entry_fini(struct snap_entry *e)
{
	if (!e->pooled)
		free(e->path);
	free(e->src);
	e->path = e->src = NULL;
	e->pooled = false;
}

/* A block of paths a snapshot holds together: one allocation for many
 * short strings, rather than one each (and its overhead), and one free.
 * A refresh holds the blocks of the record it refreshes too, for the
 * entries it kept as they were: `refs` counts the snapshots. */
struct snap_pool {
	size_t refs;
	size_t used, size;
	char bytes[];
};

#define POOL_BLOCK ((size_t)256 << 10)
/* A snapshot's first block: a refresh adds the paths of a few
 * directories, and each refresh of it holds that block on. */
#define POOL_FIRST ((size_t)4 << 10)

/* A copy of `p` in s's pool, or NULL when out of memory.  Only a block
 * of s's alone takes more: another snapshot's `used` is its own. */
static char *pool_copy(struct snapshot *s, const char *p)
{
	size_t len = strlen(p) + 1;
	struct snap_pool *b = s->npools ? s->pools[s->npools - 1] : NULL;

	if (b == NULL || b->refs > 1 || b->size - b->used < len) {
		size_t size = POOL_FIRST << (s->npools < 6 ? s->npools : 6);
		if (size < len)
			size = len;
		if (array_grow(&s->pools, &s->poolcap, s->npools,
			       sizeof(*s->pools)) < 0 ||
		    (b = malloc(sizeof(*b) + size)) == NULL)
			return NULL;
		*b = (struct snap_pool){.refs = 1, .size = size};
		s->pools[s->npools++] = b;
		s->pool_bytes += size;
	}
	char *c = memcpy(b->bytes + b->used, p, len);
	b->used += len;
	s->pool_used += len;
	return c;
}

/* s holds the blocks of `from` too. */
static int pool_share(struct snapshot *s, const struct snapshot *from)
{
	size_t n = s->npools + from->npools;

	if (from->npools == 0)
		return 0;
	if (n > s->poolcap) {
		struct snap_pool **v = realloc(s->pools, n * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		s->pools = v;
		s->poolcap = n;
	}
	/* Before s's own, so that the last is still one only s adds to. */
	memmove(s->pools + from->npools, s->pools,
		s->npools * sizeof(*s->pools));
	for (size_t i = 0; i < from->npools; i++) {
		s->pools[i] = from->pools[i];
		s->pools[i]->refs++;
	}
	s->npools = n;
	s->pool_bytes += from->pool_bytes;
	s->pool_used += from->pool_used;
	return 0;
}

static void pool_release(struct snapshot *s)
{
	for (size_t i = 0; i < s->npools; i++)
		if (--s->pools[i]->refs == 0)
			free(s->pools[i]);
	free(s->pools);
	s->pools = NULL;
	s->npools = s->poolcap = 0;
	s->pool_bytes = s->pool_used = 0;
}

/* How entries_resize() makes room for a large array. */
enum ent_map {
	ENT_HEAP,     /* malloc's, grown in place where it can be */
	ENT_HUGE,     /* whole huge pages, for a start or a full read */
	ENT_POPULATE, /* small pages, all made at once: a refresh fills
		       * every one right away, and a fault per page would
		       * cost more than the copy */
};

static void entries_release(struct snapshot *s)
{
	if (s->store)
		store_unmap(s->store, s->v, s->vmap);
	else if (s->vmap)
		munmap(s->v, s->vmap);
	else
		free(s->v);
	s->v = NULL;
	s->vmap = 0;
	s->vhuge = false;
	s->store = NULL;
	s->mem = SNAP_MEM_OWN;
}

/* s's entries (none yet) in the view `view` of x, `len` bytes. */
static void entries_view(struct snapshot *s, struct store *x, void *view,
			 size_t len)
{
	entries_release(s);
	s->v = view;
	s->vmap = len;
	s->cap = len / sizeof(*s->v);
	s->store = x;
	s->mem = SNAP_MEM_VIEW;
}

/* A mapping of `bytes` (whole pages) in small pages, made at once. */
static void *map_populated(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Room for `cap` entries (or more): in the heap, or, for a large size
 * and a `map` other than ENT_HEAP, in a mapping of its own; a mapping
 * already stays one, shrunk in place (to whole small pages).  Only an
 * array sized at once is mapped.  Huge pages are for a start or a full
 * read: one may have to be compacted first, which they can wait for,
 * not the publish of one change. */
static int entries_resize(struct snapshot *s, size_t cap, enum ent_map map)
{
	const size_t sz = sizeof(*s->v);

	if (cap > (SIZE_MAX - ARRAY_HUGE_PAGE) / sz)
		return -ENOMEM;
	size_t bytes = (cap ? cap : 1) * sz;
	if (s->vmap == 0 && (map == ENT_HEAP || bytes < ENTRIES_MAP_MIN)) {
		struct snap_entry *v = realloc(s->v, bytes);
		if (v == NULL)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
		return 0;
	}
	if (s->vmap && bytes <= s->vmap) {
		size_t keep =
			array_round_up(bytes, (size_t)sysconf(_SC_PAGESIZE));
		/* An array as large as one mapped at once keeps its huge
		 * pages whole (at most 2 MiB more): a split to give back less
		 * makes each small page of them fault again at its next
		 * touch, under a hypervisor's shadow tables tens of
		 * microseconds each. */
		if (s->vhuge && bytes >= ENTRIES_MAP_MIN)
			keep = array_round_up(bytes, ARRAY_HUGE_PAGE);
		if (keep < s->vmap)
			munmap((char *)s->v + keep, s->vmap - keep);
		s->vmap = keep;
		s->vhuge = s->vhuge && keep % ARRAY_HUGE_PAGE == 0;
		s->cap = keep / sz;
		return 0;
	}
	/* A mapping grown by appends stays one of huge pages, filled as
	 * entries come. */
	if (map == ENT_HEAP)
		map = ENT_HUGE;
	size_t len = array_round_up(bytes, (size_t)sysconf(_SC_PAGESIZE));
	struct snap_entry *v = map == ENT_HUGE ? array_map_huge(bytes, &len)
					       : map_populated(len);
	if (v == NULL)
		return -ENOMEM;
	if (s->n)
		memcpy(v, s->v, s->n * sz);
	entries_release(s);
	s->v = v;
	s->vmap = len;
	s->vhuge = map == ENT_HUGE;
	s->cap = len / sz;
	return 0;
}

int snapshot_reserve(struct snapshot *s, size_t n)
{
	return n > s->cap ? entries_resize(s, n, ENT_HUGE) : 0;
}

void snapshot_free(struct snapshot *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; s->held && i < s->n; i++)
		snapshot_entry_fini(&s->v[i]);
	snapshot_drop_extras(s);
	if (s->root_fd >= 0)
		close(s->root_fd);
	if (s->ext_fd >= 0)
		close(s->ext_fd);
	log_list_fini(&s->problems);
	entries_release(s);
	pool_release(s);
	free(s->runs);
	free(s->root);
	free(s->root_real);
	free(s);
}

/* Every pooled path copied into one block, the blocks s held given up:
 * each refresh leaves behind the paths it replaced, in blocks that the
 * paths it kept still hold on to.  As it was when out of memory. */
static void pool_compact(struct snapshot *s)
{
	size_t total = 0;

	for (size_t i = 0; i < s->n; i++)
		total += s->v[i].pooled ? strlen(s->v[i].path) + 1 : 0;
	struct snap_pool *b = malloc(sizeof(*b) + total);
	struct snap_pool **v = malloc(sizeof(*v));
	if (b == NULL || v == NULL) {
		free(b);
		free(v);
		return;
	}
	*b = (struct snap_pool){.refs = 1, .used = total, .size = total};
	char *at = b->bytes;
	for (size_t i = 0; i < s->n; i++) {
		struct snap_entry *e = &s->v[i];
		if (!e->pooled)
			continue;
		size_t len = strlen(e->path) + 1;
		e->path = memcpy(at, e->path, len);
		at += len;
	}
	pool_release(s);
	v[0] = b;
	s->pools = v;
	s->npools = s->poolcap = 1;
	s->pool_bytes = s->pool_used = total;
}

/* s's entries moved into a store of their own, or its view of one made
 * the store's content: the next refresh views them. */
static void entries_store(struct snapshot *s)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = array_round_up(s->n * sizeof(*s->v), page);
	struct store *x = NULL;
	void *m = NULL;

	if (s->mem == SNAP_MEM_VIEW && store_alone(s->store) &&
	    store_absorb(s->store, s->v, s->vmap, &m) == 0) {
		s->v = m;
		s->mem = SNAP_MEM_STORE;
	} else if (s->mem == SNAP_MEM_OWN &&
		   store_copy(s->v, s->n * sizeof(*s->v), len, &x, &m) == 0) {
		bool heap = s->vmap == 0;
		entries_release(s);
#ifdef HAVE_MALLOC_TRIM
		/* Below glibc's threshold for a mapping of its own, the
		 * array freed stays the heap's, resident: no later array
		 * reuses it now that refreshes view the store. */
		if (heap)
			(void)malloc_trim(0);
#else
		(void)heap;
#endif
		store_populate(m, len);
		s->v = m;
		s->vmap = len;
		s->cap = len / sizeof(*s->v);
		s->store = x;
		s->mem = SNAP_MEM_STORE;
	}
}

void snapshot_same_init(struct snap_same *c, const struct snapshot *s,
			const struct snapshot *prev)
{
	*c = (struct snap_same){0};
	if (s->mem != SNAP_MEM_VIEW || prev->mem != SNAP_MEM_STORE ||
	    s->store != prev->store)
		return;
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	c->own = malloc(s->vmap / page ? s->vmap / page : 1);
	if (c->own && store_own_pages(s->v, s->vmap, c->own) < 0) {
		free(c->own);
		c->own = NULL;
	}
	c->n = s->n < prev->n ? s->n : prev->n;
}

size_t snapshot_same_from(const struct snap_same *c, size_t i)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t sz = sizeof(struct snap_entry);

	if (c->own == NULL || i >= c->n)
		return 0;
	/* The first page written at or after entry i's, and the entries
	 * wholly before it. */
	size_t p = i * sz / page;
	while (p * page < c->n * sz && !c->own[p])
		p++;
	size_t end = p * page / sz;
	if (end > c->n)
		end = c->n;
	return end > i ? end - i : 0;
}

void snapshot_same_fini(struct snap_same *c)
{
	free(c->own);
	c->own = NULL;
}

void snapshot_supersede(struct snapshot *old, struct snapshot *s)
{
	snapshot_free(old);
	if (s == NULL)
		return;
	/* A refresh copies a small record (and one whose paths are not all
	 * pooled) rather than viewing it. */
	if (s->mem == SNAP_MEM_VIEW ||
	    (s->held == 0 && s->n >= STORE_MIN / sizeof(*s->v)))
		entries_store(s);
	/* Blocks that only dropped entries' paths hold on to (and each
	 * refresh adds one): a copy of a million paths costs tens of
	 * milliseconds, so after an eighth of them, and at least 512 KiB. */
	if (s->pool_bytes > s->pool_used + s->pool_used / 8 + 2 * POOL_BLOCK &&
	    (s->store == NULL || store_alone(s->store)))
		pool_compact(s);
}

static void extras_fini(struct snapshot_extras *x)
{
	for (size_t i = 0; i < x->nwarn; i++)
		free(x->warn[i].path);
	for (size_t i = 0; i < x->nwatch; i++)
		free(x->watch[i].path);
	free(x->warn);
	free(x->watch);
	memset(x, 0, sizeof(*x));
}

void snapshot_drop_extras(struct snapshot *s)
{
	extras_fini(&s->extras);
}

void snapshot_extras_free(struct snapshot_extras *x)
{
	if (x == NULL)
		return;
	extras_fini(x);
	free(x);
}

void snapshot_warnings_log(const struct snapshot_extras *x, const char *name,
			   const char *source)
{
	for (size_t i = 0; x && i < x->nwarn; i++)
		log_msg(LOG_LVL_WARN, name, "source %s: %s: %s", source,
			x->warn[i].path, snapshot_warn_str(x->warn[i].kind));
	if (x && x->nwarn_more)
		log_msg(LOG_LVL_WARN, name,
			"source %s: %llu more warnings, not listed", source,
			(unsigned long long)x->nwarn_more);
}

struct snapshot_extras *snapshot_take_extras(struct snapshot *s)
{
	struct snapshot_extras *x = malloc(sizeof(*x));

	if (x == NULL)
		return NULL;
	*x = s->extras;
	memset(&s->extras, 0, sizeof(s->extras));
	return x;
}

/* A read kept for long (the live state, the base of the next read) holds
 * no room it will not use: up to half its entries' worth after doubling. */
static void trim(struct snapshot *s)
{
	if (s == NULL || s->n == 0 || s->cap <= s->n)
		return;
	(void)entries_resize(s, s->n, ENT_HEAP); /* as it is when it cannot */
}

/* Appends *c with its path copied into s's pool (its other strings
 * become s's); -ENOMEM leaves s as it was.  `c` must not be one of s's
 * own entries, which growing the array moves: callers pass a copy. */
static int entry_put(struct snapshot *s, const struct snap_entry *c)
{
	if (s->n == s->cap &&
	    entries_resize(s, s->cap ? s->cap * 2 : 16, ENT_HEAP) < 0)
		return -ENOMEM;
	char *p = pool_copy(s, c->path);
	if (p == NULL)
		return -ENOMEM;
	struct snap_entry *d = &s->v[s->n++];
	*d = *c;
	d->path = p;
	d->pooled = true;
	s->held += d->src || d->data || (d->flags & SNAP_F_DATA);
	s->walked = s->sorted = false;
	return 0;
}

int snapshot_append(struct snapshot *s, const struct snap_entry *e)
{
	struct snap_entry c = *e;
	int rc = entry_put(s, &c);

	if (rc == 0 && !c.pooled)
		free(c.path);
	return rc;
}

int snapshot_add(struct snapshot *s, const struct snap_entry *e)
{
	struct snap_entry c = *e;

	c.src = e->src ? strdup(e->src) : NULL;
	if ((e->src && c.src == NULL) || entry_put(s, &c) < 0) {
		free(c.src);
		return -ENOMEM;
	}
	return 0;
}

static int add_warning(struct snapshot *s, const char *path,
		       enum snap_warn kind)
{
	struct snapshot_extras *x = &s->extras;

	if (x->nwarn == SNAPSHOT_WARN_MAX) {
		x->nwarn_more++;
		return 0;
	}
	if (array_grow(&x->warn, &x->warncap, x->nwarn, sizeof(*x->warn)) < 0)
		return -ENOMEM;
	x->warn[x->nwarn].path = strdup(path);
	if (x->warn[x->nwarn].path == NULL)
		return -ENOMEM;
	x->warn[x->nwarn].kind = kind;
	x->nwarn++;
	return 0;
}

static int add_watch(struct snapshot *s, const char *dir,
		     const struct stat *st)
{
	struct snapshot_extras *x = &s->extras;

	if (array_grow(&x->watch, &x->watchcap, x->nwatch,
		       sizeof(*x->watch)) < 0)
		return -ENOMEM;
	x->watch[x->nwatch].path = strdup(dir);
	if (x->watch[x->nwatch].path == NULL)
		return -ENOMEM;
	x->watch[x->nwatch].dev = (uint64_t)st->st_dev;
	x->watch[x->nwatch].ino = (uint64_t)st->st_ino;
	x->nwatch++;
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return snapshot_path_cmp(((const struct snap_entry *)a)->path,
				 ((const struct snap_entry *)b)->path);
}

void snapshot_sort(struct snapshot *s)
{
	if (s->sorted)
		return;
	/* A walk often emits its entries in order: check before sorting. */
	for (size_t i = 1; i < s->n; i++)
		if (cmp_entry(&s->v[i - 1], &s->v[i]) > 0) {
			qsort(s->v, s->n, sizeof(*s->v), cmp_entry);
			s->nruns = 0; /* moved: no longer where they were */
			break;
		}
	s->sorted = true;
}

/* The run s->v[i] is in, when s is a refresh of l and it is a copy of
 * one of l's entries; NULL otherwise.  *run: see snapshot_copied(). */
static const struct snap_run *run_of(const struct snapshot *s, size_t i,
				     const struct snapshot *l, size_t *run)
{
	if (s->base_id == 0 || s->base_id != l->id)
		return NULL;
	while (*run < s->nruns && s->runs[*run].at + s->runs[*run].n <= i)
		(*run)++;
	const struct snap_run *r = *run < s->nruns ? &s->runs[*run] : NULL;
	return r && r->at <= i ? r : NULL;
}

size_t snapshot_copied(const struct snapshot *s, size_t i,
		       const struct snapshot *l, size_t j, size_t *run)
{
	const struct snap_run *r = run_of(s, i, l, run);

	if (r == NULL || r->from + (i - r->at) != j)
		return 0;
	return r->at + r->n - i;
}

bool snapshot_is_copy(const struct snapshot *s, size_t i,
		      const struct snapshot *l, size_t *run)
{
	return run_of(s, i, l, run) != NULL;
}

size_t snapshot_copies_end(const struct snapshot *s, size_t i,
			   const struct snapshot *l, size_t *run)
{
	const struct snap_run *r = run_of(s, i, l, run);

	return r ? r->at + r->n : i;
}

bool snapshot_viewed(const struct snapshot *s)
{
	return s->mem == SNAP_MEM_STORE && !store_alone(s->store);
}

int snapshot_merge_cmp(const struct snapshot *s, size_t i,
		       const struct snapshot *l, size_t j, size_t *run)
{
	if (snapshot_copied(s, i, l, j, run))
		return 0;
	return snapshot_path_cmp(s->v[i].path, l->v[j].path);
}

struct snap_entry *snapshot_find(const struct snapshot *s, const char *path)
{
	return snapshot_find_n(s, s->n, path);
}

struct snap_entry *snapshot_find_n(const struct snapshot *s, size_t n,
				   const char *path)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = snapshot_path_cmp(s->v[mid].path, path);
		if (c == 0)
			return &s->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The first entry of `prev` that does not sort before `path`, where
 * every entry before `from` does, tried first `step` on from there: the
 * entries read again of one directory are often as far apart in prev as
 * the last two were (ten thousand top-level directories of one size),
 * and a guess that holds is two paths compared, not a bisection of a
 * million.  A step of 0 tries `from` itself: paths asked in the order a
 * snapshot holds them (a walk beside the record, a listing against a
 * snapshot) are each one compare. */
static size_t lower_bound_near(const struct snapshot *prev, const char *path,
			       size_t from, size_t step)
{
	size_t lo = from, hi = prev->n, g = from + step;

	if (g < prev->n) {
		if (snapshot_path_cmp(prev->v[g].path, path) < 0)
			lo = g + 1;
		else if (g == from ||
			 snapshot_path_cmp(prev->v[g - 1].path, path) < 0)
			return g;
		else
			hi = g - 1;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (snapshot_path_cmp(prev->v[mid].path, path) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct snap_entry *snapshot_find_next(const struct snapshot *s,
				      const char *path, struct snap_cursor *c)
{
	size_t from = c->at;

	/* Not past the last one asked: from the start. */
	if (from > s->n ||
	    (from > 0 && snapshot_path_cmp(s->v[from - 1].path, path) >= 0)) {
		from = 0;
		c->step = 0;
	}
	size_t at = lower_bound_near(s, path, from, c->step);
	bool found = at < s->n && strcmp(s->v[at].path, path) == 0;

	c->step = at - from;
	c->at = at + found;
	return found ? &s->v[at] : NULL;
}

void snapshot_mark_racy(struct snap_entry *e, const struct timespec *seen)
{
	/* A held time has no sub-second part to tell the file system by. */
	bool fine = (!clock_ns_held(e->ctime_ns) && e->ctime_ns % 1000000000) ||
		    (!clock_ns_held(e->mtime_ns) && e->mtime_ns % 1000000000);
	int64_t window = fine ? RACY_FINE_NS : RACY_COARSE_NS;
	int64_t from = clock_ts_ns(seen);

	from = from < INT64_MIN + window ? INT64_MIN : from - window;
	if (e->type == SNAP_FILE && e->ctime_ns >= from)
		e->flags |= SNAP_F_RACY;
	else
		e->flags &= (uint8_t)~SNAP_F_RACY;
}

static void fill_from_stat(struct snap_entry *e, const struct stat *st)
{
	e->type = S_ISDIR(st->st_mode) ? SNAP_DIR : SNAP_FILE;
	/* setuid, setgid and sticky bits are never projected. */
	e->mode = st->st_mode & 0777;
	e->uid = e->gid = SNAP_NO_ID;
	e->size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
	e->mtime_ns = clock_ts_ns(&st->st_mtim);
	e->ctime_ns = clock_ts_ns(&st->st_ctim);
	e->dev = (uint64_t)st->st_dev;
	e->ino = (uint64_t)st->st_ino;
}

/* Where snapshot ids come from. */
static atomic_uint_fast64_t last_id;

static int open_root(const char *root, int fd, struct snapshot **out,
		     char **err);

int snapshot_open(const char *root, struct snapshot **out, char **err)
{
	return open_root(root, -1, out, err);
}

static int way_of(struct snapshot *s, const struct stat *root);

/* snapshot_open(), or with `fd` >= 0, of the directory open as `fd` (a
 * copy of it), which `root` names. */
static int open_root(const char *root, int fd, struct snapshot **out,
		     char **err)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	struct stat st;

	if (s == NULL)
		return -ENOMEM;
	s->id = atomic_fetch_add(&last_id, 1) + 1;
	s->root_fd = s->ext_fd = -1;
	clock_gettime(CLOCK_REALTIME, &s->taken);
	if (root == NULL) {
		*out = s;
		return 0;
	}
	s->root = strdup(root);
	if (s->root == NULL) {
		snapshot_free(s);
		return -ENOMEM;
	}
	/* A symlink on the way that another user could have put there would
	 * redirect what root reads: refused. */
	char *why = NULL;
	s->root_fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0)
			     : fsutil_chase(root, 0, O_RDONLY | O_DIRECTORY,
					    NULL, &why);
	if (s->root_fd < 0 && fd >= 0)
		s->root_fd = -errno;
	if (s->root_fd < 0) {
		int rc = s->root_fd;
		snapshot_free(s);
		rc = log_err_set(err, rc, "source %s: %s", root,
				 why && rc == -EPERM ? why : strerror(-rc));
		free(why);
		return rc;
	}
	free(why);
	if (fstat(s->root_fd, &st) < 0) {
		int rc = -errno;
		snapshot_free(s);
		return log_err_set(err, rc, "source %s: %s", root, strerror(-rc));
	}
	s->root_dev = (uint64_t)st.st_dev;
	s->root_ino = (uint64_t)st.st_ino;
	int wrc = way_of(s, &st);
	if (wrc < 0) {
		snapshot_free(s);
		return log_err_set(err, wrc, "source %s: the directories above "
				   "it: %s", root, strerror(-wrc));
	}
	s->root_real = fsutil_fd_path(s->root_fd);
	if (s->root_real == NULL) /* no /proc */
		s->root_real = realpath(root, NULL);
	if (s->root_real == NULL) {
		int rc = -errno;
		snapshot_free(s);
		return log_err_set(err, rc, "source %s: %s", root, strerror(-rc));
	}
	*out = s;
	return 0;
}

int snapshot_add_source(struct snapshot *s, const char *path, const char *src)
{
	struct snap_entry e = {0};
	struct stat st;
	int fd = fsutil_open_beneath(s->root_fd, src, O_PATH);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	close(fd);
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return -EINVAL;
	fill_from_stat(&e, &st);
	snapshot_mark_racy(&e, &s->taken);
	e.path = (char *)path;
	e.src = strcmp(path, src) == 0 ? NULL : (char *)src;
	return snapshot_add(s, &e);
}

/* Component list used while resolving a link inside the source. */
struct comps {
	char **v;
	size_t n, cap;
};

static void comps_free(struct comps *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i]);
	free(c->v);
	c->v = NULL;
	c->n = c->cap = 0;
}

static int comps_push(struct comps *c, const char *s, size_t len)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		char **v = realloc(c->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n] = strndup(s, len);
	if (c->v[c->n] == NULL)
		return -ENOMEM;
	c->n++;
	return 0;
}

/* Appends the components of `p` in order. */
static int comps_split(struct comps *c, const char *p)
{
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		int rc = comps_push(c, p, len);
		if (rc < 0)
			return rc;
		p += len;
	}
	return 0;
}

/* Puts the components of `p` in front of the pending queue, which is kept
 * reversed so the next component is popped from the end. */
static int queue_prepend(struct comps *q, const char *p)
{
	struct comps tmp = {0};
	int rc = comps_split(&tmp, p);

	for (size_t i = tmp.n; rc == 0 && i > 0; i--)
		rc = comps_push(q, tmp.v[i - 1], strlen(tmp.v[i - 1]));
	comps_free(&tmp);
	return rc;
}

static char *comps_join(const struct comps *c, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(c->v[i]) + 1;
	char *r = malloc(len), *p = r;
	if (r == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = '/';
		size_t l = strlen(c->v[i]);
		memcpy(p, c->v[i], l);
		p += l;
	}
	*p = '\0';
	return r;
}

/* The length of the next component of `p` (after its slashes, which
 * *p is moved past). */
static size_t next_comp(const char **p)
{
	while (**p == '/')
		(*p)++;
	return strcspn(*p, "/");
}

/* Where an absolute link target leads below root_real: what is left of
 * it once it is there (for resolve_from() to go on with), or NULL when
 * it leads elsewhere.  Components are compared one by one, so doubled
 * slashes and "." do not matter, and ".." is taken lexically while the
 * path is still on root_real's own way down (a real path, without links,
 * so its parent is what ".." names). */
static const char *below_root(const char *root_real, const char *target)
{
	const char *r = root_real, *t = target;
	size_t depth = 0, rn = 0, tn;

	while ((tn = next_comp(&t)) > 0) {
		if (tn == 1 && t[0] == '.') {
			t += tn;
			continue;
		}
		if (tn == 2 && t[0] == '.' && t[1] == '.') {
			/* Back up: root_real's first `depth` components. */
			r = root_real;
			depth -= depth > 0;
			for (size_t i = 0; i < depth; i++)
				r += next_comp(&r);
			t += tn;
			continue;
		}
		const char *at = r;
		rn = next_comp(&at);
		if (rn == 0)
			return t; /* below the root from here */
		if (rn != tn || strncmp(at, t, tn) != 0)
			return NULL; /* off its way, at a real directory */
		r = at + rn;
		depth++;
		t += tn;
	}
	return next_comp(&r) == 0 ? t : NULL;
}

static bool writers_trusted(uid_t uid, mode_t mode);

/* Adds the writers of a directory of owner `uid`, group `gid` and mode
 * `mode` to a class of writers (*set, *uid, *gid, *mode).  One owner
 * stays one class, with the write bits of both, and the group that may
 * write; two owners, or two groups that may write, are anyone. */
static void class_merge(bool *set, uid_t *cu, gid_t *cg, mode_t *cm, uid_t uid,
			gid_t gid, mode_t mode)
{
	const mode_t wr = S_IWGRP | S_IWOTH;

	mode &= S_IWUSR | wr;
	if (!*set) {
		*set = true;
		*cu = uid;
		*cg = gid;
		*cm = mode;
	} else if (*cu != uid ||
		   ((*cm & S_IWGRP) && (mode & S_IWGRP) && *cg != gid)) {
		*cm = S_IWOTH;
	} else {
		if (mode & S_IWGRP)
			*cg = gid;
		*cm |= mode;
	}
}

static void deciders_add(struct deciders *d, uid_t uid, gid_t gid,
			 mode_t mode)
{
	if (!writers_trusted(uid, mode))
		class_merge(&d->set, &d->uid, &d->gid, &d->mode, uid, gid,
			    mode);
}

/* A name `st` looked up in the directory `in` (whose writers' mode,
 * ACL included, is in_mode): in a sticky directory of root's only its
 * owner (or root) can move it, else in's writers can. */
static void deciders_lookup(struct deciders *d, const struct stat *in,
			    mode_t in_mode, const struct stat *st)
{
	if ((in->st_mode & S_ISVTX) && fsutil_trusted_uid(in->st_uid))
		deciders_add(d, st->st_uid, st->st_gid, S_IWUSR);
	else
		deciders_add(d, in->st_uid, in->st_gid, in_mode);
}

/* `mode`, that of the directory open as `fd` (-1: not to be opened), as
 * its writers have it: an access ACL that lets a user or group it names
 * write (or one that cannot be read) makes it one anyone may write, as
 * they may be in its group or not.  The mask shows in the group's bits:
 * without w there, none. */
static mode_t writers_mode(int fd, mode_t mode)
{
	struct fsutil_acl acl = {.named = 0};

	if ((mode & S_IWGRP) &&
	    (fd < 0 || fsutil_acl_read(fd, &acl) < 0 || (acl.named & 02)))
		mode |= S_IWOTH;
	return mode;
}

/* The mode of the directory `path` beneath `base` (found as *st) as
 * frame_of() takes it (writers_mode()). */
static mode_t acl_writers(int base, const char *path, const struct stat *st)
{
	mode_t m = st->st_mode;

	if (!(m & S_IWGRP) || !S_ISDIR(m))
		return m;
	int fd = openat(base, *path ? path : ".",
			O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
	m = writers_mode(fd, m);
	if (fd >= 0)
		close(fd);
	return m;
}

/* For fsutil_climb(): each directory above the source root, whose
 * writers (in a sticky one of root's, the owner of the name below) can
 * move what is below it, the root itself included. */
struct way_climb {
	struct deciders d;
	struct stat below;
};

static int way_step(int fd, const struct stat *st, void *arg)
{
	struct way_climb *c = arg;
	struct statvfs vfs;

	/* A directory of root's on a file system mounted read-only (a
	 * Kubernetes volume, whose directories are 0777): only a remount,
	 * which takes root, could move a name, as fsutil_trusted_dir()
	 * holds.  Not another's: a writable mount of it may be elsewhere. */
	bool frozen = fsutil_trusted_uid(st->st_uid) && fstatvfs(fd, &vfs) == 0 &&
		      (vfs.f_flag & ST_RDONLY);
	if (!frozen)
		deciders_lookup(&c->d, st, writers_mode(fd, st->st_mode),
				&c->below);
	c->below = *st;
	return 0;
}

/* s->way: who, but root and us, can change which directory the root is,
 * by moving it or a directory above it (one of root's that they may not
 * read, from beside it, say). */
static int way_of(struct snapshot *s, const struct stat *root)
{
	struct way_climb c = {.below = *root};
	int rc = fsutil_climb(s->root_fd, root, way_step, &c);

	s->way = (struct snap_writers){c.d.set, c.d.uid, c.d.gid, c.d.mode};
	return rc;
}

/* Where a resolution starts: beneath `base` (the source root, or "/"
 * with `bound` NULL), in its directory `dir` (relative to base). */
struct resolve {
	int base;
	const char *bound; /* an absolute link must lead below it */
	struct comps stack, queue;
	struct stat top;   /* the directory the stack names */
	mode_t top_mode;   /* its mode, as its writers have it */
	uint64_t dev, ino; /* the directory the walk has open there */
	struct deciders dec;
};

/* The stack's directory looked at again (after ".."). */
static int resolve_top(struct resolve *r)
{
	char *p = comps_join(&r->stack, r->stack.n);
	int rc = p == NULL ? -ENOMEM
		 : fstatat(r->base, *p ? p : ".", &r->top,
			   AT_SYMLINK_NOFOLLOW) < 0
			 ? -errno
			 : 0;
	if (rc == 0)
		r->top_mode = acl_writers(r->base, p, &r->top);
	free(p);
	return rc == -ENOTDIR ? -ENOENT : rc;
}

/* The directories from base down to `dir`, as deciders. */
static int resolve_start(struct resolve *r, const char *dir)
{
	struct comps c = {0};
	int rc = resolve_top(r);

	if (rc == 0)
		rc = comps_split(&c, dir);
	for (size_t i = 0; rc == 0 && i < c.n; i++) {
		struct stat in = r->top;
		mode_t in_mode = r->top_mode;
		rc = comps_push(&r->stack, c.v[i], strlen(c.v[i]));
		if (rc == 0)
			rc = resolve_top(r);
		if (rc == 0 && !S_ISDIR(r->top.st_mode))
			rc = -EAGAIN; /* no longer the directory walked */
		if (rc == 0)
			deciders_lookup(&r->dec, &in, in_mode, &r->top);
	}
	comps_free(&c);
	/* Not the directory the walk has open: it was moved meanwhile. */
	if (rc == 0 && ((uint64_t)r->top.st_dev != r->dev ||
			(uint64_t)r->top.st_ino != r->ino))
		rc = -EAGAIN;
	return rc == -ENOENT ? -EAGAIN : rc;
}

/* A link met at the stack's top: its text replaces it. */
static int resolve_link(struct walk *w, struct resolve *r, const char *cur,
			int *hops)
{
	char *link = NULL;
	int rc;

	if (++*hops > MAX_LINK_HOPS)
		return -ELOOP;
	rc = fsutil_readlinkat(r->base, cur, &link);
	if (rc == -EINVAL)
		rc = -EAGAIN; /* no longer a link: changed meanwhile */
	/* /proc/self and /proc/PID/fd/N say what the daemon holds now,
	 * which changes as it reads: not checked again. */
	if (rc == 0 && r->bound == NULL && strncmp(cur, "proc/", 5) != 0) {
		char *abs = fsutil_join("/", cur);
		rc = abs ? note_link(w, abs, link) : -ENOMEM;
		free(abs);
	} else if (rc == 0 && r->bound) {
		rc = note_link(w, cur, link);
	}
	free(r->stack.v[--r->stack.n]);
	const char *rest = link;
	if (rc == 0 && link[0] == '/') {
		rest = r->bound ? below_root(r->bound, link) : link;
		if (rest == NULL)
			rc = -EXDEV;
		while (rc == 0 && r->stack.n > 0)
			free(r->stack.v[--r->stack.n]);
	}
	if (rc == 0)
		rc = queue_prepend(&r->queue, rest);
	/* Relative, it goes on from the directory that holds it (top). */
	if (rc == 0 && link[0] == '/')
		rc = resolve_top(r);
	free(link);
	return rc;
}

/* One component of the queue, `c` (owned). */
static int resolve_step(struct walk *w, struct resolve *r, char *c, int *hops)
{
	if (strcmp(c, ".") == 0 || c[0] == '\0') {
		free(c);
		return 0;
	}
	if (strcmp(c, "..") == 0) {
		free(c);
		if (r->stack.n == 0)
			return r->bound ? -EXDEV : 0; /* "/.." is "/" */
		free(r->stack.v[--r->stack.n]);
		return resolve_top(r);
	}
	int rc = comps_push(&r->stack, c, strlen(c));
	free(c);
	char *cur = rc == 0 ? comps_join(&r->stack, r->stack.n) : NULL;
	struct stat st;
	if (rc == 0 && cur == NULL)
		rc = -ENOMEM;
	if (rc == 0 && fstatat(r->base, cur, &st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = errno == ENOTDIR ? -ENOENT : -errno;
	if (rc == 0)
		deciders_lookup(&r->dec, &r->top, r->top_mode, &st);
	if (rc == 0 && S_ISLNK(st.st_mode))
		rc = resolve_link(w, r, cur, hops);
	else if (rc == 0 && !S_ISDIR(st.st_mode) && r->queue.n > 0)
		rc = -ENOENT;
	else if (rc == 0) {
		r->top = st;
		r->top_mode = acl_writers(r->base, cur, &st);
	}
	free(cur);
	return rc;
}

/* Resolves the symlink `dir/name` (dir relative to `base`) to a
 * symlink-free path beneath it, one component at a time, as a kernel
 * path walk does, noting the writers of every directory it looks a
 * name up in (those above `dir` included) in *dec.  -EXDEV: it leads
 * out of `bound`; -ELOOP: too many links; -ENOENT: dangling. */
static int resolve_from(struct walk *w, int base, const char *bound,
			const struct frame *f, const char *dir,
			const char *name, struct deciders *dec, char **out)
{
	struct resolve r = {.base = base, .bound = bound, .dev = f->dev,
			    .ino = f->ino};
	int hops = 0;
	int rc = resolve_start(&r, dir);

	if (rc == 0)
		rc = comps_push(&r.queue, name, strlen(name));
	while (rc == 0 && r.queue.n > 0)
		rc = resolve_step(w, &r, r.queue.v[--r.queue.n], &hops);
	if (rc == 0) {
		*out = comps_join(&r.stack, r.stack.n);
		rc = *out ? 0 : -ENOMEM;
	}
	*dec = r.dec;
	comps_free(&r.stack);
	comps_free(&r.queue);
	return rc;
}

static void names_free(char **v, size_t n)
{
	fsutil_names_free(v, n);
}

static int read_names(int dfd, char ***names, size_t *count)
{
	return fsutil_read_names(dfd, true, names, count);
}

/* Names starting with ".." are reserved.  Those of the layout a source
 * that is itself a target or a Kubernetes volume has go without a word;
 * any other is worth a warning. */
static bool layout_name(const char *n)
{
	static const char shape[] = "..dddd_dd_dd_dd_dd_dd.";

	if (strcmp(n, "..data") == 0 || strcmp(n, "..data_tmp") == 0 ||
	    strncmp(n, "..atomsync", 10) == 0)
		return true;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? !isdigit((unsigned char)n[i])
				    : n[i] != shape[i])
			return false;
	return true;
}

/* ---- the walk: an explicit stack, never the C stack ---- */

/* A frame to walk the directory open as `fd`, described by `st`, with
 * its mode as its writers have it (writers_mode()). */
static struct frame frame_of(int fd, char *path, char *src, unsigned flags,
			     const struct stat *st)
{
	mode_t mode = fd >= 0 ? writers_mode(fd, st->st_mode) : st->st_mode;

	return (struct frame){
		.fd = fd, .path = path, .src = src, .flags = flags,
		.dev = (uint64_t)st->st_dev, .ino = (uint64_t)st->st_ino,
		.uid = st->st_uid, .gid = st->st_gid, .mode = mode,
	};
}

/* The writers of a directory of this owner, group and mode, as a frame
 * of their own to judge against. */
static struct frame writers_frame(uid_t uid, gid_t gid, mode_t mode)
{
	return (struct frame){.fd = -1, .uid = uid, .gid = gid, .mode = mode};
}

/* The writers of the directory that holds the link f was reached by. */
static struct frame via_of(const struct frame *f)
{
	return writers_frame(f->via_uid, f->via_gid, f->via_mode);
}

/* Those what a link leads to is judged for, into j: f's writers, those
 * of the directory holding the link f was reached through, and those
 * who chose where it led (d).  Their number. */
static size_t judges(const struct frame *f, const struct deciders *d,
		     struct frame j[3])
{
	size_t n = 0;

	j[n++] = writers_frame(f->uid, f->gid, f->mode);
	if (f->via)
		j[n++] = via_of(f);
	if (d->set)
		j[n++] = writers_frame(d->uid, d->gid, d->mode);
	return n;
}

/* Whether only root or we may write a directory of this owner and mode:
 * judging against its writers keeps nothing out. */
static bool writers_trusted(uid_t uid, mode_t mode)
{
	return fsutil_trusted_uid(uid) && !(mode & (S_IWGRP | S_IWOTH));
}

/* What a directory entered from f, through a link or not, was reached
 * through.  Below a link, the writers of the directory that holds it;
 * below a second one, those of both, which one frame can hold when
 * either is root's alone or they are the same, and which count as
 * anyone otherwise.  Not into a follow_into directory, whose content
 * whoever writes the source may publish. */
static void via_from(struct frame *child, const struct frame *f, bool link)
{
	bool own = link && (!f->via || writers_trusted(f->via_uid, f->via_mode));
	bool kept = !link || writers_trusted(f->uid, f->mode) ||
		    (f->via_uid == f->uid && f->via_gid == f->gid &&
		     f->via_mode == f->mode);

	child->via = f->via || link;
	child->via_uid = own ? f->uid : f->via_uid;
	child->via_gid = own ? f->gid : f->via_gid;
	child->via_mode = own ? f->mode : kept ? f->via_mode : (mode_t)S_IWOTH;
	/* What a follow_into directory holds is the config's to give. */
	if ((child->flags & SNAP_F_EXTERNAL) && !(child->flags & SNAP_F_FOLLOW))
		child->via = false;
}

/* Below a link, those who chose where it led are judged as well. */
static void via_add(struct frame *child, const struct deciders *d)
{
	if (!d->set)
		return;
	/* Root's alone are no class to merge with: judged for, they keep
	 * nothing out. */
	if (child->via && writers_trusted(child->via_uid, child->via_mode))
		child->via = false;
	class_merge(&child->via, &child->via_uid, &child->via_gid,
		    &child->via_mode, d->uid, d->gid, d->mode);
}

/* What is below the root is judged for those who can move it into place
 * as well (s->way), as what is below a link is for its deciders. */
static void via_way(struct frame *f, const struct snapshot *s)
{
	const struct deciders d = {s->way.set, s->way.uid, s->way.gid,
				   s->way.mode};

	via_add(f, &d);
}

static void frame_fini(struct frame *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f->src);
	names_free(f->names, f->n);
}

static bool on_stack(const struct walk *w, const struct stat *st)
{
	for (size_t i = 0; i < w->depth; i++)
		if (w->stack[i].dev == (uint64_t)st->st_dev &&
		    w->stack[i].ino == (uint64_t)st->st_ino)
			return true;
	for (size_t i = 0; i < w->nabove; i++)
		if (w->above[i].dev == (uint64_t)st->st_dev &&
		    w->above[i].ino == (uint64_t)st->st_ino)
			return true;
	return false;
}

/* Reads f's names and puts it on the stack, which then owns it. */
static int push_frame(struct walk *w, struct frame *f)
{
	int rc = read_names(f->fd, &f->names, &f->n);

	if (rc == 0 && w->depth == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 32;
		struct frame *v = realloc(w->stack, cap * sizeof(*v));
		if (v == NULL)
			rc = -ENOMEM;
		else {
			w->stack = v;
			w->cap = cap;
		}
	}
	if (rc < 0)
		return rc; /* the caller still owns f */
	f->next = 0;
	w->stack[w->depth++] = *f;
	return 0;
}

static bool inside(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The absolute path of the link `name` in f, through the source's real
 * path. */
static char *link_path(const struct walk *w, const struct frame *f,
		       const char *name)
{
	char *full;

	if (f->flags & SNAP_F_EXTERNAL)
		return fsutil_join(f->src, name);
	if (asprintf(&full, "%s%s%s/%s", w->s->root_real, *f->src ? "/" : "",
		     f->src, name) < 0)
		return NULL;
	return full;
}

/* A link that leads out of the source, tried against follow_into: where
 * it really leads must be inside one of those directories, and is then
 * opened by that symlink-free path, so a link changed meanwhile cannot
 * take it elsewhere. */
static int resolve_into(struct walk *w, const struct frame *f,
			const char *name, struct found *out)
{
	struct snapshot *s = w->s;
	char *full = NULL, *real = NULL;
	int rc = -EXDEV;

	if (w->ninto == 0)
		return -EXDEV;
	full = link_path(w, f, name);
	if (full == NULL)
		return -ENOMEM;
	real = realpath(full, NULL);
	if (real == NULL)
		rc = errno == ELOOP ? -ELOOP : -ENOENT;
	for (size_t i = 0; real && i < w->ninto && rc == -EXDEV; i++)
		if (inside(real, w->into[i]))
			rc = 0;
	int fd = rc == 0 ? fsutil_open_beneath(s->ext_fd, real + 1, O_PATH) : -1;
	if (rc == 0 && (fd < 0 || fstat(fd, &out->st) < 0))
		rc = -EAGAIN; /* changed since realpath() */
	if (fd >= 0)
		close(fd);
	free(full);
	if (rc < 0) {
		free(real);
		return rc;
	}
	out->src = real;
	out->flags = f->flags | SNAP_F_EXTERNAL;
	return 0;
}

/* Whether `st` is the target the read is told to avoid. */
static bool is_target(const struct snapshot_opts *o, const struct stat *st)
{
	return o && o->avoid_ino && (uint64_t)st->st_dev == o->avoid_dev &&
	       (uint64_t)st->st_ino == o->avoid_ino;
}

/* Whether the target is among the directories on the way to `real`, a
 * real path. */
static bool below_target(const struct walk *w, const char *real)
{
	struct stat a;
	bool below = false;
	char *p = strdup(real);

	for (char *slash; !below && p && (slash = strrchr(p, '/')) != NULL;) {
		*slash = '\0';
		below = stat(slash == p ? "/" : p, &a) == 0 &&
			is_target(w->o, &a);
		if (slash == p)
			break;
	}
	free(p);
	return below;
}

/* A link that leads into the target would publish what the last publish
 * wrote, which the next one changes (a file linked forward changes its
 * change time): skipped, as the target itself is (add_dir()).  `real`:
 * its real path; NULL to find it from out->src, below the root.  1 when
 * skipped. */
static int skip_in_target(struct walk *w, const char *real, const char *cpath,
			  struct found *out)
{
	const struct snapshot_opts *o = w->o;
	char *own = NULL, *full = NULL;
	bool below;

	if (o == NULL || o->avoid_ino == 0 ||
	    (uint64_t)out->st.st_dev != o->avoid_dev)
		return 0;
	if (real == NULL) {
		full = fsutil_join(w->s->root_real, out->src);
		real = own = full ? realpath(full, NULL) : NULL;
	}
	below = real && below_target(w, real);
	free(own);
	free(full);
	if (!below)
		return 0;
	out->skip = true;
	int rc = add_warning(w->s, cpath, SNAP_W_TARGET);
	return rc < 0 ? rc : 1;
}

static int link_warning(struct walk *w, const char *cpath, int rc,
			struct found *out)
{
	out->skip = true;
	return add_warning(w->s, cpath,
			   rc == -EXDEV	  ? SNAP_W_OUTSIDE
			   : rc == -ELOOP ? SNAP_W_LOOP
					  : SNAP_W_DANGLING);
}

/* Whether f's owner is in its group: not so for one made in a setgid
 * directory of a group they are not in. */
static bool owner_in_group(struct walk *w, const struct frame *f)
{
	struct member *m = w->members;

	for (size_t i = 0; i < w->nmembers; i++)
		if (m[i].uid == f->uid && m[i].gid == f->gid)
			return m[i].in;
	size_t at = w->nmembers < 8 ? w->nmembers++ : (size_t)f->uid % 8;
	m[at] = (struct member){f->uid, f->gid, fsutil_in_group(f->uid, f->gid)};
	return m[at].in;
}

/* Whether a user other than root or us who can write the directory f
 * (its owner, its group, anyone: as its mode says) lacks on `st` the
 * permission `grp` gives its group and `oth` everyone.  Its owner has
 * it on what they own (they can chmod it), and on what its group has
 * when they are in it; its group what its group has. */
static bool mode_denies(struct walk *w, const struct frame *f,
			const struct stat *st, mode_t grp, mode_t oth)
{
	bool group_has = st->st_gid == f->gid && (st->st_mode & grp);

	if (st->st_mode & oth)
		return false;
	if (f->mode & S_IWOTH)
		return true;
	if ((f->mode & S_IWGRP) && !group_has)
		return true;
	if (fsutil_trusted_uid(f->uid) || st->st_uid == f->uid)
		return false;
	return !group_has || !owner_in_group(w, f);
}

/* Whether f's writers include one other than the owner of `st`, who
 * can change what it grants anyway. */
static bool others_write(const struct frame *f, const struct stat *st)
{
	return (f->mode & (S_IWGRP | S_IWOTH)) ||
	       (!fsutil_trusted_uid(f->uid) && st->st_uid != f->uid);
}

/* Whether all of f's writers have on `st` what its group has: others
 * may not write f, and its owner is in the group, or has st anyway. */
static bool through_group(struct walk *w, const struct frame *f,
			  const struct stat *st, mode_t grp)
{
	if ((f->mode & S_IWOTH) || st->st_gid != f->gid ||
	    !(st->st_mode & grp))
		return false;
	return fsutil_trusted_uid(f->uid) || st->st_uid == f->uid ||
	       owner_in_group(w, f);
}

/* Whether the access ACL of `st`, open as `fd`, keeps one of f's writers
 * from `oth` (the bit of others: 04 or 01) that its mode bits let them
 * have: a user it names ("user:2003:---"), or, for writers who are not
 * all in its group, any entry. */
static bool acl_keeps(struct walk *w, const struct frame *f,
		      const struct stat *st, int fd, mode_t grp, mode_t oth)
{
	struct fsutil_acl acl;

	if (fsutil_acl_read(fd, &acl) < 0)
		return true;
	return !((through_group(w, f, st, grp) ? acl.group : acl.all) & oth);
}

/* The same as mode_denies(), with the access ACL of `st` (open as
 * `fd`). */
static bool denied_to_writers(struct walk *w, const struct frame *f,
			      const struct stat *st, mode_t grp, mode_t oth,
			      int fd)
{
	return mode_denies(w, f, st, grp, oth) ||
	       (others_write(f, st) && acl_keeps(w, f, st, fd, grp, oth));
}

/* Opens directory `name` (of `len` bytes) beneath `dfd` as it is, no
 * link followed, and says whether a user who can write f may not enter
 * it: *hidden.  The new descriptor, or -errno. */
static int enter_dir(struct walk *w, const struct frame *f, int dfd,
		     const char *name, size_t len, bool *hidden)
{
	char *n = strndup(name, len);
	struct stat st;
	int fd = n ? openat(dfd, n, O_PATH | O_NOFOLLOW | O_DIRECTORY |
					   O_CLOEXEC)
		   : -1;
	int rc = fd >= 0 ? 0 : n ? -errno : -ENOMEM;

	free(n);
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	if (rc == 0)
		*hidden = denied_to_writers(w, f, &st, S_IXGRP, S_IXOTH, fd);
	if (rc < 0 && fd >= 0)
		close(fd);
	return rc < 0 ? rc : fd;
}

/* The directory `name` in dfd that a link leads to, found as *st says:
 * 1 when a user who can write f may not enter it (its copy's mode keeps
 * them out, but not what an ACL narrows), 0, or -errno. */
static int hidden_dir(struct walk *w, const struct frame *f, int dfd,
		      const char *name, const struct stat *st)
{
	bool hidden = false;
	struct stat now;
	int fd = enter_dir(w, f, dfd, name, strlen(name), &hidden);

	if (fd < 0)
		return fd;
	int rc = fstat(fd, &now) < 0 ? -errno
		 : now.st_dev != st->st_dev || now.st_ino != st->st_ino
			 ? -EAGAIN
			 : hidden;
	close(fd);
	return rc;
}

/* Whether `fd` is on a file system of the kernel's own (proc, sysfs,
 * debugfs and the like), whose files hold what each reader may see
 * (/proc/PID/maps for its owner, all of a PCI device's config space for
 * root alone), not what their mode bits say: never published from a
 * link.  A link into sysfs would also walk its web of links. */
static bool on_kernel_fs(int fd)
{
	static const long kernel[] = {
		PROC_SUPER_MAGIC,  SYSFS_MAGIC,	     DEBUGFS_MAGIC,
		TRACEFS_MAGIC,	   SECURITYFS_MAGIC, BPF_FS_MAGIC,
		CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, BINFMTFS_MAGIC,
		EFIVARFS_MAGIC,	   PSTOREFS_MAGIC,   SELINUX_MAGIC,
		SMACK_MAGIC,	   0x62656570 /* configfs */};
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return true; /* not to be told: not read */
	for (size_t i = 0; i < sizeof(kernel) / sizeof(*kernel); i++)
		if ((long)sf.f_type == kernel[i])
			return true;
	return false;
}

/* Whether a directory on the way from `root` (the source root, or "/")
 * to `real` (a path with no link on it, relative to it), or `real`
 * itself when it is a directory, is one that a user who can write f,
 * the directory of a link to it, may not go through (another user's
 * 0700 directory): the link would hand them what it keeps from them.
 * Each directory is looked at as opened on the way, no link followed,
 * and *st is what `real` is at its end, so that what is read later
 * (checked against *st) is what was reached this way.  1 (hidden), 2
 * (a file of a kernel file system: on_kernel_fs()) or 0; a negative errno
 * when the way is not there as it was (-ELOOP: a link at its end now). */
static int hidden_from_writers(struct walk *w, const struct frame *f,
			       int root, const char *real, struct stat *st)
{
	int dfd = root, rc = 0;
	const char *p = real, *slash;
	bool hidden = false;

	while (!hidden && (slash = strchr(p, '/')) != NULL) {
		int next = enter_dir(w, f, dfd, p, (size_t)(slash - p),
				     &hidden);
		if (dfd != root)
			close(dfd);
		if (next < 0)
			return next;
		dfd = next;
		p = slash + 1;
	}
	if (hidden)
		rc = 1;
	else if (fstatat(dfd, *p ? p : ".", st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = -errno;
	else if (S_ISLNK(st->st_mode))
		rc = -ELOOP;
	else if (S_ISDIR(st->st_mode) && *p)
		rc = hidden_dir(w, f, dfd, p, st);
	if (rc == 0 && !S_ISDIR(st->st_mode) && on_kernel_fs(dfd))
		rc = 2;
	if (dfd != root)
		close(dfd);
	return rc;
}

/* hidden_from_writers() for each of judges() (with the deciders of the
 * resolution, out->dec).  0 when the way is open (*st: what it leads
 * to); 1 when skipped with a warning; a negative errno. */
static int way_open(struct walk *w, const struct frame *f, int root,
		    const char *real, const char *cpath, struct found *out)
{
	struct frame j[3];
	size_t n = judges(f, &out->dec, j);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = hidden_from_writers(w, &j[i], root, real, &out->st);
	if (rc == 0)
		return 0;
	out->skip = rc > 0;
	if (rc > 0) {
		rc = add_warning(w->s, cpath,
				 rc == 1 ? SNAP_W_HIDDEN : SNAP_W_PROC);
		return rc < 0 ? rc : 1;
	}
	if (rc == -ENOMEM)
		return log_err_set(&w->err, rc, "source %s/%s: %s", w->s->root,
				   cpath, strerror(-rc));
	/* Changed under us: the caller retries. */
	return log_err_set(&w->err, -EAGAIN,
			   "source %s/%s: changed while being read (%s)",
			   w->s->root, cpath, strerror(-rc));
}

/* A link with symlinks = inside: resolved within the source (or into a
 * follow_into directory); *out says what it leads to. */
static int link_inside(struct walk *w, const struct frame *f, const char *name,
		       const char *cpath, struct found *out)
{
	struct snapshot *s = w->s;
	char *resolved = NULL;
	int rc = -EXDEV;

	if (!(f->flags & SNAP_F_EXTERNAL))
		rc = resolve_from(w, s->root_fd, s->root_real, f, f->src, name,
				  &out->dec, &resolved);
	if (rc == -EXDEV)
		rc = resolve_into(w, f, name, out);
	if (rc == -EAGAIN)
		return log_err_set(&w->err, rc,
				   "source %s/%s: changed while being read",
				   s->root, cpath);
	if (rc == -EXDEV || rc == -ELOOP || rc == -ENOENT)
		return link_warning(w, cpath, rc, out);
	if (rc < 0)
		return log_err_set(&w->err, rc, "source %s/%s: %s", s->root,
				   cpath, strerror(-rc));
	if (resolved == NULL) { /* into a follow_into directory */
		out->dec = (struct deciders){0}; /* the config's choice */
		rc = skip_in_target(w, out->src, cpath, out);
		return rc < 0 ? rc : 0;
	}
	rc = way_open(w, f, s->root_fd, resolved, cpath, out);
	if (rc != 0) {
		free(resolved);
		return rc < 0 ? rc : 0;
	}
	out->src = resolved;
	out->flags = f->flags;
	return 0;
}

/* The path of f's directory below "/", without the leading slash. */
static char *dir_below_slash(const struct walk *w, const struct frame *f)
{
	char *d;

	if (f->flags & SNAP_F_EXTERNAL)
		return strdup(f->src + 1);
	if (asprintf(&d, "%s%s%s", w->s->root_real + 1,
		     *f->src && w->s->root_real[1] ? "/" : "", f->src) < 0)
		return NULL;
	return d;
}

/* A link with symlinks = follow: used by its real path, every link on
 * the way resolved one by one (/proc/self/fd/N names the daemon's own
 * files), and only when the writers of its directory, and of every
 * directory the resolution looked a name up in, may enter every
 * directory on that way, as with symlinks = inside.  Opened by that path
 * with no link followed, so a link changed since cannot lead
 * elsewhere. */
static int link_follow(struct walk *w, const struct frame *f, const char *name,
		       const char *cpath, struct found *out)
{
	char *dir = dir_below_slash(w, f), *rel = NULL, *real = NULL;
	int rc = dir ? resolve_from(w, w->s->ext_fd, NULL, f, dir, name,
				    &out->dec, &rel)
		     : -ENOMEM;

	free(dir);
	if (rc == -ENOENT || rc == -ELOOP)
		return link_warning(w, cpath, rc, out);
	if (rc == -EAGAIN)
		return log_err_set(&w->err, rc,
				   "source %s/%s: changed while being read",
				   w->s->root, cpath);
	if (rc == 0 && asprintf(&real, "/%s", rel) < 0)
		rc = -ENOMEM;
	if (rc < 0) {
		free(rel);
		return log_err_set(&w->err, rc, "source %s/%s: %s", w->s->root,
				   cpath, strerror(-rc));
	}
	/* Inside the source, its way is judged from the root, as with
	 * symlinks = inside: not the directories above it. */
	const char *in = below_root(w->s->root_real, real);
	rc = in ? way_open(w, f, w->s->root_fd, in, cpath, out)
		: way_open(w, f, w->s->ext_fd, rel, cpath, out);
	free(rel);
	if (rc != 0) {
		free(real);
		return rc < 0 ? rc : 0;
	}
	free(out->src);
	out->src = real;
	out->flags = f->flags | SNAP_F_FOLLOW | SNAP_F_EXTERNAL;
	rc = skip_in_target(w, real, cpath, out);
	return rc < 0 ? rc : 0;
}

static int found_link(struct walk *w, const struct frame *f, const char *name,
		      const char *cpath, struct found *out)
{
	enum snap_links mode = w->o ? w->o->links : SNAP_LINKS_INSIDE;

	out->linked = true;
	/* Excluded whatever it leads to: not even read. */
	if (snapshot_excluded(w->o, cpath, false) &&
	    snapshot_excluded(w->o, cpath, true)) {
		out->skip = true;
		return 0;
	}
	if (mode == SNAP_LINKS_SKIP) {
		out->skip = true;
		return add_warning(w->s, cpath, SNAP_W_LINK);
	}
	/* What it leads to changes where no event for this directory is
	 * seen. */
	w->s->indirect = true;
	if (mode == SNAP_LINKS_INSIDE && !(f->flags & SNAP_F_FOLLOW)) {
		free(out->src);
		out->src = NULL;
		return link_inside(w, f, name, cpath, out);
	}
	return link_follow(w, f, name, cpath, out);
}

/* Stats `name` of frame f, following a link as the mode says. */
static int find(struct walk *w, const struct frame *f, const char *name,
		const char *cpath, struct found *out)
{
	struct snapshot *s = w->s;

	out->flags = f->flags;
	out->src = (f->flags & SNAP_F_EXTERNAL) || strcmp(f->path, f->src)
			   ? fsutil_join(f->src, name)
			   : strdup(cpath);
	if (out->src == NULL)
		return -ENOMEM;
	s->read++;
	bool early = w->o && w->o->statahead && !w->prev &&
		     statahead_take(w->o->statahead, cpath, f->dev, f->ino,
				    clock_ts_ns(&s->taken), &out->st);
	if (!early && fstatat(f->fd, name, &out->st, AT_SYMLINK_NOFOLLOW) < 0) {
		out->skip = true;
		if (errno == ENOENT) /* gone since readdir: not there */
			return 0;
		if (errno == EACCES || errno == EPERM) {
			log_list_add(&s->problems, "%s (%s)", cpath,
				     strerror(errno));
			return 0;
		}
		return log_err_set(&w->err, -errno, "source %s/%s: %s", s->root,
				   cpath, strerror(errno));
	}
	if (S_ISLNK(out->st.st_mode))
		return found_link(w, f, name, cpath, out);
	return 0;
}

/* Watches the directory a linked file really is in, so a change there
 * is seen: by its absolute path when followed anywhere, else below the
 * root. */
static int watch_file_dir(struct walk *w, const char *where, unsigned flags)
{
	struct snapshot *s = w->s;
	struct stat dst;
	int rc = 0;

	if (flags & (SNAP_F_FOLLOW | SNAP_F_EXTERNAL)) {
		char *full = flags & SNAP_F_EXTERNAL ? strdup(where)
						     : fsutil_join(s->root, where);
		char *real = full ? realpath(full, NULL) : NULL;
		char *slash = real ? strrchr(real, '/') : NULL;
		if (slash) {
			*slash = '\0';
			const char *dir = slash == real ? "/" : real;
			if (stat(dir, &dst) == 0)
				rc = add_watch(s, dir, &dst);
		}
		free(real);
		free(full);
		return rc;
	}
	char *dir = strdup(where);
	if (dir == NULL)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	int dfd = fsutil_open_beneath(s->root_fd, slash ? dir : "", O_PATH);
	if (dfd >= 0) {
		if (fstat(dfd, &dst) == 0)
			rc = add_watch(s, slash ? dir : "", &dst);
		close(dfd);
	}
	free(dir);
	return rc;
}

int snapshot_open_src(const struct snapshot *s, unsigned flags,
		      const char *src, int oflags)
{
	if (flags & SNAP_F_EXTERNAL)
		return fsutil_open_beneath(s->ext_fd, src + 1, oflags);
	if (!(flags & SNAP_F_FOLLOW))
		return fsutil_open_beneath(s->root_fd, src, oflags);
	int fd = openat(s->root_fd, src, oflags | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The file `fd` found, opened as a copy will open it (O_PATH): the same
 * file, -EAGAIN when it is not there as found, or another -errno. */
static int open_found(const struct walk *w, const struct found *fd)
{
	struct stat st;
	int o = snapshot_open_src(w->s, fd->flags, fd->src, O_PATH);

	if (o >= 0 && (fstat(o, &st) < 0 || st.st_dev != fd->st.st_dev ||
		       st.st_ino != fd->st.st_ino)) {
		close(o);
		o = -EAGAIN;
	}
	/* Gone, or something else in its place, since it was found. */
	return o == -ENOENT || o == -ELOOP || o == -ENOTDIR || o == -EXDEV
		       ? -EAGAIN
		       : o;
}

/* Whether a user other than root or us who can write the directory f
 * (its owner, its group, anyone: as its mode says) may not read the file
 * found in it: 1 or 0, -EAGAIN when it is not there as found.  Such a
 * user could have linked or moved there a file they cannot read
 * (/etc/shadow, where the kernel's fs.protected_hardlinks is off; a file
 * whose other name was since replaced keeps one link), and a publish
 * would hand it to them.  As mode_denies() says, with its ACL. */
static int kept_from_writers(struct walk *w, const struct frame *f,
			     const struct found *fd)
{
	if (mode_denies(w, f, &fd->st, S_IRGRP, S_IROTH))
		return 1;
	if (!others_write(f, &fd->st))
		return 0;
	/* Opened only where an ACL can matter: a shared directory. */
	int o = open_found(w, fd);
	if (o < 0)
		return o;
	int kept = acl_keeps(w, f, &fd->st, o, S_IRGRP, S_IROTH);
	close(o);
	return kept;
}

/* Whether the writers of the directory holding the link f was reached
 * through may not enter the directory found in f, open as `fd`. */
static bool via_hidden(struct walk *w, const struct frame *f,
		       const struct found *found, int fd)
{
	struct frame v = via_of(f);

	return denied_to_writers(w, &v, &found->st, S_IXGRP, S_IXOTH, fd);
}

/* The same for each of judges(): f's writers, those of the directory
 * that holds the link f was reached through, and those who chose where
 * it led. */
static int kept_from_any(struct walk *w, const struct frame *f,
			 const struct found *fd)
{
	struct frame j[3];
	size_t n = judges(f, &fd->dec, j);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = kept_from_writers(w, &j[i], fd);
	return rc;
}

/* Notes that s->v[at..at+n) are copies of prev's entries from `from`. */
static int run_note(struct snapshot *s, size_t at, size_t from, size_t n)
{
	struct snap_run *r = s->nruns ? &s->runs[s->nruns - 1] : NULL;

	if (r && r->at + r->n == at && r->from + r->n == from) {
		r->n += n;
		return 0;
	}
	if (array_grow(&s->runs, &s->runcap, s->nruns, sizeof(*s->runs)) < 0)
		return -ENOMEM;
	s->runs[s->nruns++] = (struct snap_run){at, from, n};
	return 0;
}

/* The record's entry k, as the walk over it finds it: in the view,
 * where the walk has not written yet, else in the record itself (whose
 * pages the view made are mapped again only as they are read). */
static const struct snap_entry *over_entry(const struct walk *w, size_t k)
{
	const struct snapshot *s = w->s;

	return s->mem == SNAP_MEM_VIEW && k >= s->n ? &s->v[k] : &w->over->v[k];
}

/* Whether c, as found, is the record's entry o: once given the mode and
 * owner it is published with, the same in every field a walk sets. */
static bool over_same(const struct walk *w, const struct snap_entry *o,
		      const struct snap_entry *c)
{
	struct snap_entry p = *c;

	if (w->o && w->o->project)
		w->o->project(w->o->project_arg, &p);
	return o->pooled && o->src == NULL && o->data == NULL &&
	       p.src == NULL && p.data == NULL && o->type == p.type &&
	       o->flags == p.flags && o->mode == p.mode && o->uid == p.uid &&
	       o->gid == p.gid && o->size == p.size &&
	       o->mtime_ns == p.mtime_ns && o->ctime_ns == p.ctime_ns &&
	       o->dev == p.dev && o->ino == p.ino;
}

/* In a read over a record: c found the same as the record's entry of
 * its path is that entry, with what the writer learned of it, and at the
 * same index is not even written (its page stays the record's).  1 then;
 * 0 for c to be added as it is. */
static int over_put(struct walk *w, const struct snap_entry *c)
{
	const struct snapshot *b = w->over;
	struct snapshot *s = w->s;
	const struct snap_entry *o = NULL;

	if (b == NULL)
		return 0;
	/* Before the look: growing moves the entries out of the view. */
	if (s->n == s->cap && entries_resize(s, s->cap * 2, ENT_HEAP) < 0)
		return -ENOMEM;
	for (; w->over_at < b->n; w->over_at++) {
		o = over_entry(w, w->over_at);
		if (snapshot_path_cmp(o->path, c->path) >= 0)
			break;
	}
	if (w->over_at == b->n || strcmp(o->path, c->path) != 0 ||
	    !over_same(w, o, c))
		return 0;
	size_t k = w->over_at++;
	if (run_note(s, s->n, k, 1) < 0)
		return -ENOMEM;
	if (s->mem != SNAP_MEM_VIEW || s->n != k)
		s->v[s->n] = *o;
	s->n++;
	s->pool_used += strlen(o->path) + 1;
	s->walked = s->sorted = false;
	return 1;
}

/* Appends the file `*cpath` (which the entry then owns) and watches
 * where its content lives when a link led to it. */
static int add_file(struct walk *w, const struct frame *f, char **cpath,
		    struct found *fd)
{
	struct snapshot *s = w->s;
	struct snap_entry e = {0};
	int rc;

	if ((rc = kept_from_any(w, f, fd)) == -EAGAIN)
		return log_err_set(&w->err, rc,
				   "source %s/%s: changed while being read",
				   s->root, *cpath);
	if (rc < 0)
		return log_err_set(&w->err, rc, "source %s/%s: %s", s->root,
				   *cpath, strerror(-rc));
	if (rc == 1)
		return add_warning(s, *cpath, SNAP_W_UNREADABLE);
	fill_from_stat(&e, &fd->st);
	e.flags = (uint8_t)fd->flags;
	snapshot_mark_racy(&e, &w->seen);
	/* Written through another of its names, it changes where no event
	 * for this directory is.  Met by a refresh (a name just linked to a
	 * file, and written through at once): the file's other names, which
	 * it keeps as they were, are read again by a full walk. */
	if (fd->st.st_nlink > 1 && w->prev)
		return -ESTALE;
	if (fd->st.st_nlink > 1)
		s->indirect = true;
	s->bytes += e.size;
	if (w->prev && w->o && w->o->max_bytes &&
	    w->prev->bytes + s->bytes > w->o->max_bytes)
		return -ESTALE; /* a full walk says where */
	if (w->o && w->o->max_bytes && s->bytes > w->o->max_bytes)
		return log_err_set(&w->err, -EFBIG,
				   "source %s: more than %llu bytes in files "
				   "(max_bytes), at %s",
				   s->root, (unsigned long long)w->o->max_bytes,
				   *cpath);
	if (strcmp(*cpath, fd->src) != 0) {
		e.src = fd->src;
		fd->src = NULL;
	}
	e.path = *cpath;
	rc = over_put(w, &e);
	if (rc == 0)
		rc = snapshot_append(s, &e);
	else if (rc > 0)
		free(e.path); /* the record's is kept */
	if (rc < 0) {
		e.path = NULL;
		snapshot_entry_fini(&e);
		return rc;
	}
	*cpath = NULL;
	if (!fd->linked)
		return 0;
	const struct snap_entry *a = &s->v[s->n - 1];
	return watch_file_dir(w, a->src ? a->src : a->path, fd->flags);
}

/* Opens the directory `name` of f (reached as *fd says) for the walk;
 * -EAGAIN when it is no longer what was found. */
static int open_dir(struct walk *w, const struct frame *f, const char *name,
		    const char *cpath, const struct found *fd)
{
	struct snapshot *s = w->s;
	int sub, serr = 0;
	struct stat sst;

	if (fd->flags & SNAP_F_EXTERNAL && fd->linked) {
		sub = fsutil_open_beneath(s->ext_fd, fd->src + 1,
					  O_RDONLY | O_DIRECTORY);
		serr = sub < 0 ? -sub : 0;
	} else if (fd->linked && !(fd->flags & SNAP_F_FOLLOW)) {
		sub = fsutil_open_beneath(s->root_fd, fd->src,
					  O_RDONLY | O_DIRECTORY);
		serr = sub < 0 ? -sub : 0;
	} else {
		sub = openat(f->fd, name,
			     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		serr = sub < 0 ? errno : 0;
	}
	if (sub < 0 && serr == ENOENT) /* gone since readdir */
		return -ENOENT;
	if (sub < 0 && (serr == EACCES || serr == EPERM)) {
		log_list_add(&s->problems, "%s (%s)", cpath, strerror(serr));
		return -EACCES;
	}
	if (sub < 0 && serr != ENOTDIR && serr != ELOOP)
		return log_err_set(&w->err, -serr, "source %s/%s: %s", s->root,
				   cpath, strerror(serr));
	if (sub < 0 || fstat(sub, &sst) < 0 || sst.st_dev != fd->st.st_dev ||
	    sst.st_ino != fd->st.st_ino) {
		if (sub >= 0)
			close(sub);
		return log_err_set(&w->err, -EAGAIN,
				   "source %s/%s: changed while being read",
				   s->root, cpath);
	}
	return sub;
}

/* prev's entry for the directory `path` when it is the one found (dev,
 * ino), reached as it was (no link followed): NULL when it is not. */
static const struct snap_entry *prev_dir(struct walk *w, const char *path,
					 unsigned flags, uint64_t dev,
					 uint64_t ino)
{
	/* Names come in order: ten thousand subdirectories of the root
	 * are not ten thousand bisections of a million entries. */
	const struct snap_entry *e =
		flags ? NULL : snapshot_find_next(w->prev, path, &w->prev_cur);

	if (e && e->type == SNAP_DIR && e->flags == 0 && e->src == NULL &&
	    e->dev == dev && e->ino == ino)
		return e;
	return NULL;
}

/* Takes over *cpath into w->kept: a directory kept as prev had it. */
static int keep_path(struct walk *w, char **cpath)
{
	int rc = array_grow(&w->kept, &w->keptcap, w->nkept,
			    sizeof(*w->kept));

	if (rc == 0) {
		w->kept[w->nkept++] = *cpath;
		*cpath = NULL;
	}
	return rc;
}

/* A refresh does not enter a subdirectory of a directory it re-reads
 * when prev has the same directory there (see same_as_before()); found
 * untouched since (its change time too), it is not even opened: a root
 * of 10,000 directories is read again for what changed in it, not
 * opened 10,000 times.  One that a security module or a FUSE server
 * refuses to open from now on, without a change to it, keeps what prev
 * read of it until the next full read, which reports it. */
static bool same_unopened(struct walk *w, const char *cpath,
			  const struct found *fd)
{
	if (w->depth != 1 || w->prev == NULL || fd->linked)
		return false;
	const struct snap_entry *e =
		prev_dir(w, cpath, fd->flags, (uint64_t)fd->st.st_dev,
			 (uint64_t)fd->st.st_ino);

	return e && e->ctime_ns == clock_ts_ns(&fd->st.st_ctim);
}

/* Appends the directory `*cpath` and makes *child the frame to walk it
 * with (child->fd -1 when it is left out, or kept as prev had it). */
static int add_dir(struct walk *w, const struct frame *f, const char *name,
		   char **cpath, struct found *fd, struct frame *child)
{
	struct snapshot *s = w->s;
	const struct snapshot_opts *o = w->o;
	bool same = false;

	if (is_target(o, &fd->st)) {
		s->indirect = true;
		return add_warning(s, *cpath, SNAP_W_TARGET);
	}
	if (on_stack(w, &fd->st))
		return add_warning(s, *cpath, SNAP_W_LOOP);
	same = same_unopened(w, *cpath, fd);
	int sub = same ? -1 : open_dir(w, f, name, *cpath, fd);
	if (sub == -ENOENT || sub == -EACCES)
		return 0;
	if (sub < 0 && !same)
		return sub;
	/* Below a link, what its maker may not enter stays out. */
	if (sub >= 0 && f->via && !fd->linked && via_hidden(w, f, fd, sub)) {
		close(sub);
		return add_warning(s, *cpath, SNAP_W_HIDDEN_BELOW);
	}
	if (sub >= 0 && (fd->flags & SNAP_F_FOLLOW) && on_kernel_fs(sub)) {
		close(sub);
		return add_warning(s, *cpath, SNAP_W_PROC);
	}
	struct snap_entry e = {0};
	fill_from_stat(&e, &fd->st);
	e.flags = (uint8_t)fd->flags;
	e.path = *cpath;
	e.src = strcmp(*cpath, fd->src) == 0 ? NULL : fd->src;
	int rc = over_put(w, &e);
	if (rc == 0)
		rc = snapshot_add(s, &e);
	if (rc >= 0)
		rc = add_watch(s, fd->src, &fd->st);
	if (rc >= 0 && same)
		rc = keep_path(w, cpath);
	if (rc < 0 || same) {
		if (sub >= 0)
			close(sub);
		return rc < 0 ? rc : 0;
	}
	*child = frame_of(sub, *cpath, fd->src, fd->flags, &fd->st);
	via_from(child, f, fd->linked);
	via_add(child, &fd->dec);
	*cpath = NULL;
	fd->src = NULL;
	return 0;
}

/* The paths read so far within SNAPSHOT_PATH_BYTES an entry of
 * max_files; a refresh, which counts the last read's as well, gives way
 * to a full walk (-ESTALE) to tell exactly. */
static int paths_bounded(struct walk *w, const char *cpath)
{
	const struct snapshot *s = w->s;
	uint64_t max = w->o ? (uint64_t)w->o->max_files * SNAPSHOT_PATH_BYTES
			    : 0;
	uint64_t held = (w->prev ? w->prev->path_bytes : 0) + s->path_bytes;

	if (max == 0 || held <= max)
		return 0;
	if (w->prev)
		return -ESTALE;
	return log_err_set(&w->err, -EFBIG,
			   "source %s: paths of more than %llu bytes in all "
			   "(%d a file on average, of max_files), at %.256s",
			   s->root, (unsigned long long)max,
			   SNAPSHOT_PATH_BYTES, cpath);
}

/* The names this read left out, within max_files: each costs it a look,
 * and a chain of directories that link twice to the one below doubles
 * them at each level.  A refresh counts those of the read it refreshes
 * too, and gives way to a full walk to tell exactly. */
static int unlisted_bounded(struct walk *w, const char *cpath)
{
	const struct snapshot *s = w->s;
	size_t max = w->o ? w->o->max_files : 0;
	uint64_t held = (w->prev ? w->prev->unlisted : 0) + s->unlisted;

	if (max == 0 || held <= max)
		return 0;
	if (w->prev)
		return -ESTALE;
	return log_err_set(&w->err, -EFBIG,
			   "source %s: more than %zu names left out (skipped "
			   "or excluded; max_files), at %.256s",
			   s->root, max, cpath);
}

/* One name of the directory f: an entry, a warning, or a directory to
 * walk next (child->fd >= 0). */
static int walk_name(struct walk *w, const struct frame *f, const char *name,
		     struct frame *child)
{
	struct snapshot *s = w->s;
	struct found fd = {0};
	char *cpath = fsutil_join(f->path, name);
	size_t listed = s->n;
	int rc = 0;

	child->fd = -1;
	if (cpath == NULL)
		return -ENOMEM;
	if (strlen(cpath) > SNAPSHOT_MAX_PATH) {
		rc = log_err_set(&w->err, -ENAMETOOLONG,
				 "source %s: path longer than %d bytes: "
				 "%.256s...",
				 s->root, SNAPSHOT_MAX_PATH, cpath);
		goto out;
	}
	if (name[0] == '.' && name[1] == '.') {
		if (!layout_name(name))
			rc = add_warning(s, cpath, SNAP_W_RESERVED);
		goto out;
	}
	rc = find(w, f, name, cpath, &fd);
	if (rc < 0 || fd.skip)
		goto out;
	/* The type is known now, a link's by where it leads. */
	if (snapshot_excluded(w->o, cpath, S_ISDIR(fd.st.st_mode)))
		goto out;
	if (w->prev && w->o && w->o->max_files &&
	    w->prev->n + s->n >= w->o->max_files) {
		rc = -ESTALE; /* a full walk says where */
		goto out;
	}
	if (w->o && w->o->max_files && s->n >= w->o->max_files) {
		rc = log_err_set(&w->err, -EFBIG,
				 "source %s: more than %zu files and "
				 "directories (max_files), at %s",
				 s->root, w->o->max_files, cpath);
		goto out;
	}
	s->path_bytes += strlen(cpath) + 1;
	if ((rc = paths_bounded(w, cpath)) < 0)
		goto out;
	if (S_ISREG(fd.st.st_mode))
		rc = add_file(w, f, &cpath, &fd);
	else if (S_ISDIR(fd.st.st_mode))
		rc = add_dir(w, f, name, &cpath, &fd, child);
	else
		rc = add_warning(s, cpath, SNAP_W_SPECIAL);
out:
	if (s->n == listed && rc == 0) {
		s->unlisted++;
		rc = unlisted_bounded(w, cpath);
	}
	free(fd.src);
	free(cpath);
	return rc;
}

/* A refresh does not enter a subdirectory of a directory it re-reads
 * when prev has the same directory there: what is in it is prev's, or
 * re-read on its own when it changed. */
static bool same_as_before(struct walk *w, const struct frame *c)
{
	return prev_dir(w, c->path, c->flags, c->dev, c->ino) != NULL;
}

/* Takes over c's path into w->kept and closes the rest of it. */
static int note_kept(struct walk *w, struct frame *c)
{
	int rc = keep_path(w, &c->path);

	frame_fini(c);
	return rc;
}

/* Walks depth first, in path order, holding one descriptor and one list
 * of names per level: memory is linear in the tree, and depth is bounded
 * by SNAPSHOT_MAX_PATH. */
static int walk(struct walk *w, struct frame *root)
{
	int rc = push_frame(w, root);

	if (rc < 0) {
		frame_fini(root);
		return log_err_set(&w->err, rc, "source %s: %s", w->s->root,
				   strerror(-rc));
	}
	while (w->depth > 0 && rc == 0) {
		struct frame *f = &w->stack[w->depth - 1];
		if (f->next == f->n) {
			frame_fini(f);
			w->depth--;
			continue;
		}
		struct frame child = {.fd = -1};
		rc = walk_name(w, f, f->names[f->next++], &child);
		if (rc < 0 || child.fd < 0)
			continue;
		if (w->depth == 1 && w->prev && same_as_before(w, &child)) {
			rc = note_kept(w, &child);
			continue;
		}
		rc = push_frame(w, &child);
		if (rc == 0)
			continue; /* the stack owns it */
		if (rc == -EACCES || rc == -EPERM) {
			/* Opened but not readable: left out, reported. */
			log_list_add(&w->s->problems, "%s (%s)", child.path,
				     strerror(-rc));
			rc = 0;
		} else if (rc == -ENOENT) {
			/* Removed once opened (a removed directory reads as
			 * ENOENT): a torn read, not a missing source. */
			rc = log_err_set(&w->err, -EAGAIN,
					 "source %s/%s: changed while being read",
					 w->s->root, child.path);
		} else if (rc < 0) {
			rc = log_err_set(&w->err, rc, "source %s/%s: %s",
					 w->s->root, child.path, strerror(-rc));
		}
		frame_fini(&child);
	}
	while (w->depth > 0)
		frame_fini(&w->stack[--w->depth]);
	return rc;
}

/* The real paths of the follow_into directories that exist, and "/"
 * opened, where follow_into or symlinks = follow may lead out of the
 * source. */
static int resolve_into_dirs(struct walk *w)
{
	const struct snapshot_opts *o = w->o;

	if (o == NULL || (o->nfollow_into == 0 && o->links != SNAP_LINKS_FOLLOW))
		return 0;
	if (o->nfollow_into &&
	    (w->into = calloc(o->nfollow_into, sizeof(*w->into))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < o->nfollow_into; i++) {
		char *r = realpath(o->follow_into[i], NULL);
		if (r)
			w->into[w->ninto++] = r;
	}
	w->s->ext_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	return w->s->ext_fd < 0 ? -errno : 0;
}

static void walk_fini(struct walk *w)
{
	free(w->stack);
	free(w->err);
	links_free(w);
	for (size_t i = 0; i < w->ninto; i++)
		free(w->into[i]);
	free(w->into);
	for (size_t i = 0; i < w->nkept; i++)
		free(w->kept[i]);
	free(w->kept);
	free(w->above);
}

/* The walk's entries in a view of the store of o->over, sharing its
 * blocks of paths: a full read over the live record writes only what
 * changed or moved (see over_put()).  0 then; else (no store, no memfd,
 * out of memory) it makes an array of its own. */
static int over_start(struct walk *w, const struct snapshot_opts *o)
{
	const struct snapshot *b = o ? o->over : NULL;
	struct snapshot *s = w->s;
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t sz = sizeof(*s->v);
	void *view = NULL;

	if (b == NULL || b->mem != SNAP_MEM_STORE || b->held > 0 ||
	    b->root == NULL || strcmp(b->root, s->root) != 0 ||
	    b->n > (SIZE_MAX - page) / sz / 2)
		return -EINVAL;
	/* A little room for what was added since: past the record, a
	 * page read is one the memfd holds. */
	size_t len = array_round_up((b->n + b->n / 256 + 1) * sz, page);
	if (store_view(b->store, len, STORE_READS_ALL, &view) < 0)
		return -ENOMEM;
	if (pool_share(s, b) < 0) {
		store_unmap(b->store, view, len);
		return -ENOMEM;
	}
	entries_view(s, b->store, view, len);
	s->pool_used -= b->pool_used; /* what it keeps, as it keeps it */
	w->over = b;
	return 0;
}

/* A root that one who can move it into place (s->way) may not list or
 * enter: what it holds is theirs to have only as its mode says, which a
 * generation's top does not keep (it is open to all).  Refused, with
 * -EACCES, as a directory hidden from its parent's writers is left out
 * below it. */
static int root_hidden(struct walk *w, const struct stat *st)
{
	const struct snap_writers *v = &w->s->way;
	int fd = w->s->root_fd;

	if (!v->set)
		return 0;
	struct frame j = writers_frame(v->uid, v->gid, v->mode);
	if (!denied_to_writers(w, &j, st, S_IXGRP, S_IXOTH, fd) &&
	    !denied_to_writers(w, &j, st, S_IRGRP, S_IROTH, fd))
		return 0;
	if (v->mode & S_IWOTH)
		return log_err_set(&w->err, -EACCES,
				   "source %s: any user can move it into place "
				   "and not all may read it; refusing to "
				   "publish it",
				   w->s->root);
	return log_err_set(&w->err, -EACCES,
			   "source %s: uid %u%s can move it into place and "
			   "may not read it; refusing to publish it",
			   w->s->root, (unsigned)v->uid,
			   (v->mode & S_IWGRP) ? " or its group" : "");
}

int snapshot_take(const char *root, const struct snapshot_opts *o,
		  struct snapshot **out, char **err)
{
	struct snapshot *s;
	struct walk w = {0};
	struct stat st;
	int rc = open_root(root, o && o->root_open ? o->root_fd : -1, &s, err);

	if (rc < 0)
		return rc;
	w.s = s;
	w.o = o;
	w.seen = s->taken;
	/* Room beyond what is expected, for what was added since; not to
	 * be had, the walk grows its array as it goes. */
	if (over_start(&w, o) < 0 && o && o->expect)
		(void)snapshot_reserve(s, o->expect + o->expect / 8);
	if (fstat(s->root_fd, &st) < 0)
		rc = -errno;
	if (rc == 0)
		rc = resolve_into_dirs(&w);
	if (rc == 0)
		rc = add_watch(s, "", &st);
	if (rc == 0)
		rc = root_hidden(&w, &st);
	struct frame f = frame_of(
		rc == 0 ? fcntl(s->root_fd, F_DUPFD_CLOEXEC, 0) : -1,
		strdup(""), strdup(""), 0, &st);
	via_way(&f, s);
	if (rc == 0 && (f.fd < 0 || f.path == NULL || f.src == NULL)) {
		rc = f.fd < 0 ? -errno : -ENOMEM;
		frame_fini(&f);
	} else if (rc == 0) {
		rc = walk(&w, &f);
	} else {
		frame_fini(&f);
	}
	if (rc == 0)
		rc = links_unchanged(&w);
	if (rc < 0) {
		if (w.err == NULL)
			log_err_set(&w.err, rc, "source %s: %s", root,
				    strerror(-rc));
		if (err) {
			free(*err);
			*err = w.err;
			w.err = NULL;
		}
		snapshot_free(s);
		s = NULL;
	}
	walk_fini(&w);
	trim(s);
	if (s)
		s->walked = s->unlisted_exact = true;
	if (s && w.over)
		s->base_id = w.over->id; /* with the runs it took over */
	*out = s;
	return rc;
}


/* ---- a refresh: prev with some directories read again ---- */

struct refresh {
	struct walk w;
	char **done; /* directories read again (not owned) */
	size_t ndone, donecap;
	char **cuts; /* prev's directories whose subtree was dropped */
	size_t ncuts, cutcap;
	/* Names looked at on their own (not owned), and their directories,
	 * whose own entry was read again; sorted by strcmp(). */
	char **looked;
	size_t nlooked, lookedcap;
	char **selfs;
	size_t nselfs, selfcap;
	/* The directories of names that could not be (owned). */
	char **parents;
	size_t nparents, parentcap;
	const struct snap_warning *warn; /* prev's warnings */
	size_t nwarn;
	/* prev's directories to watch, and of its directory entries those
	 * the merge dropped (in path order); what it added, as indexes in
	 * the refresh: the new list of watches, from them. */
	const struct snap_dir *watch;
	size_t nwatch;
	char **dirs_gone;
	size_t ngone, gonecap;
	size_t *dirs_new;
	size_t nnew, newcap;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_str_path(const void *a, const void *b)
{
	return snapshot_path_cmp(*(char *const *)a, *(char *const *)b);
}

/* Whether the first len bytes of p are a name in v (sorted by strcmp). */
static bool in_set(char *const *v, size_t n, const char *p, size_t len)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strncmp(v[mid], p, len);
		if (c == 0 && v[mid][len] != '\0')
			c = 1;
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static size_t parent_len(const char *path)
{
	const char *sl = strrchr(path, '/');

	return sl ? (size_t)(sl - path) : 0;
}

/* Whether `dir` was read already: as all of a subdirectory new to a
 * directory read again, or as one gone from it. */
static bool refresh_covered(const struct refresh *r, const char *dir)
{
	const struct walk *w = &r->w;
	size_t parent = 0;

	if (*dir == '\0')
		return false;
	for (size_t i = 0;; i++) {
		if (dir[i] != '/' && dir[i] != '\0')
			continue;
		/* dir[0..i) is a child of dir[0..parent) */
		if (in_set(r->done, r->ndone, dir, parent) &&
		    !in_set(w->kept, w->nkept, dir, i))
			return true;
		if (dir[i] == '\0')
			return false;
		parent = i;
	}
}

static int push_str(char ***v, size_t *n, size_t *cap, char *p)
{
	if (array_grow(v, cap, *n, sizeof(**v)) < 0)
		return -ENOMEM;
	(*v)[(*n)++] = p;
	return 0;
}

/* The directories above `dir`, for the walk's loop check: the root and
 * every one on the way, as prev has them. */
static int refresh_above(struct refresh *r, const char *dir)
{
	struct walk *w = &r->w;
	size_t cap = 1;

	for (const char *p = dir; *p; p++)
		cap += *p == '/';
	free(w->above);
	w->above = calloc(cap, sizeof(*w->above));
	if (w->above == NULL)
		return -ENOMEM;
	w->above[0] = (struct snap_dir){.dev = w->s->root_dev,
					.ino = w->s->root_ino};
	w->nabove = 1;
	for (size_t i = 0; dir[i]; i++) {
		if (dir[i] != '/')
			continue;
		char *up = strndup(dir, i);
		if (up == NULL)
			return -ENOMEM;
		const struct snap_entry *e = snapshot_find(w->prev, up);
		free(up);
		if (e == NULL)
			return -ESTALE;
		w->above[w->nabove++] = (struct snap_dir){.dev = e->dev,
							  .ino = e->ino};
	}
	return 0;
}

/* Opens `dir`, which must still be the directory prev has there, and
 * appends its own entry afresh (not the root's: it has none) when `own`. */
static int refresh_open(struct refresh *r, const char *dir, struct stat *st,
			bool own)
{
	struct snapshot *s = r->w.s;
	const struct snap_entry *e = *dir ? snapshot_find(r->w.prev, dir) : NULL;

	if (*dir && (e == NULL || e->type != SNAP_DIR || e->src || e->flags))
		return -ESTALE;
	int fd = fsutil_open_beneath(s->root_fd, dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd == -ENOMEM ? fd : -ESTALE;
	s->read++;
	uint64_t dev = e ? e->dev : s->root_dev, ino = e ? e->ino : s->root_ino;
	int rc = fstat(fd, st) < 0 ? -errno : 0;
	if (rc == 0 && ((uint64_t)st->st_dev != dev || (uint64_t)st->st_ino != ino))
		rc = -ESTALE;
	if (rc == 0 && e && own) {
		struct snap_entry ne = {0};
		fill_from_stat(&ne, st);
		ne.path = (char *)dir;
		rc = snapshot_add(s, &ne);
		s->path_bytes += strlen(dir) + 1;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* Reads `dir` again: its entries, and all of any subdirectory that is
 * not the one prev had. */
static int refresh_dir(struct refresh *r, char *dir)
{
	struct walk *w = &r->w;
	struct stat st;

	if (refresh_covered(r, dir))
		return 0;
	int rc = refresh_above(r, dir);
	int fd = rc == 0 ? refresh_open(r, dir, &st, true) : rc;
	if (fd < 0)
		return fd;
	struct frame f = frame_of(fd, strdup(dir), strdup(dir), 0, &st);
	via_way(&f, w->s);
	if (f.path == NULL || f.src == NULL ||
	    push_str(&r->done, &r->ndone, &r->donecap, dir) < 0) {
		frame_fini(&f);
		return -ENOMEM;
	}
	qsort(r->done, r->ndone, sizeof(*r->done), cmp_str);
	rc = walk(w, &f);
	if (w->nkept > 1)
		qsort(w->kept, w->nkept, sizeof(*w->kept), cmp_str);
	return rc;
}

/* Whether prev's `path` is replaced by what was read again: an entry of
 * a directory read again, or inside a subdirectory dropped (*cut_dir set
 * when path is such a subdirectory itself). */
static bool refresh_replaced(const struct refresh *r, const char *path,
			     uint8_t type, bool *cut_dir)
{
	const struct walk *w = &r->w;
	size_t len = strlen(path);

	*cut_dir = false;
	if (in_set(r->looked, r->nlooked, path, len))
		return true;
	if (in_set(r->done, r->ndone, path, parent_len(path))) {
		*cut_dir = type == SNAP_DIR && !in_set(w->kept, w->nkept,
						       path, len);
		return true;
	}
	/* A directory read again has its own entry afresh, as has one a
	 * name was looked at in. */
	return type == SNAP_DIR && (in_set(r->done, r->ndone, path, len) ||
				    in_set(r->selfs, r->nselfs, path, len));
}

static bool under(const char *path, const char *dir, size_t dlen)
{
	return strncmp(path, dir, dlen) == 0 && path[dlen] == '/';
}

/* The first entry from `a` on that is not below `dir` (of length
 * `len`), in a sorted snapshot where those below it from `a` on follow
 * one another.  Galloping first: a subtree is most often small beside
 * the whole (a file has none). */
static size_t below_end(const struct snapshot *s, size_t a, const char *dir,
			size_t len)
{
	size_t b = s->n;

	/* What is before `a` is below `dir`. */
	for (size_t step = 1; a < b; step *= 2) {
		size_t probe = b - a > step ? a + step : b;
		if (!under(s->v[probe - 1].path, dir, len)) {
			b = probe;
			break;
		}
		a = probe;
	}
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (under(s->v[mid].path, dir, len))
			a = mid + 1;
		else
			b = mid;
	}
	return a;
}

size_t snapshot_subtree_end(const struct snapshot *s, size_t i)
{
	const char *dir = s->v[i].path;

	return below_end(s, i + 1, dir, strlen(dir));
}

size_t snapshot_subtree_end_near(const struct snapshot *s, size_t i, size_t n)
{
	const char *dir = s->v[i].path;
	size_t len = strlen(dir), e = i + n;

	/* What is below `dir` follows it at once: e is the end when the
	 * entry before it is below and e is not. */
	if (n >= 1 && e <= s->n &&
	    (n == 1 || under(s->v[e - 1].path, dir, len)) &&
	    (e == s->n || !under(s->v[e].path, dir, len)))
		return e;
	return below_end(s, i + 1, dir, len);
}

/* prev's entries a directory read again may replace: its own and all
 * below it, [lo, hi). */
struct span {
	size_t lo, hi;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The first of prev's entries that does not sort before `path`. */
static size_t lower_bound(const struct snapshot *prev, const char *path)
{
	return lower_bound_near(prev, path, 0, 0);
}

/* The span of `dir` in prev, which is sorted: `dir` and what is below
 * it follow one another there. */
static struct span dir_span(const struct snapshot *prev, const char *dir)
{
	size_t len = strlen(dir);

	if (len == 0)
		return (struct span){0, prev->n};
	size_t lo = lower_bound(prev, dir);
	/* `dir`'s own entry, when it has one, comes first. */
	size_t own = lo < prev->n && strcmp(prev->v[lo].path, dir) == 0;
	return (struct span){lo, below_end(prev, lo + own, dir, len)};
}

/* prev's entry of `path` alone, or none (lo == hi). */
static struct span entry_span(const struct snapshot *prev, const char *path)
{
	size_t lo = lower_bound(prev, path);

	return (struct span){lo, lo + (lo < prev->n &&
				       strcmp(prev->v[lo].path, path) == 0)};
}

/* The spans of the directories read again and of the names looked at on
 * their own (and their directories' own entries), in order, joined where
 * they overlap; only there may an entry of prev be replaced. */
static struct span *refresh_spans(const struct refresh *r, size_t *n)
{
	size_t all = r->ndone + r->nlooked + r->nselfs, m = 0, k = 0;
	struct span *v = malloc((all ? all : 1) * sizeof(*v));

	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < r->ndone; i++)
		v[m++] = dir_span(r->w.prev, r->done[i]);
	for (size_t i = 0; i < r->nlooked + r->nselfs; i++) {
		const char *p = i < r->nlooked ? r->looked[i]
					       : r->selfs[i - r->nlooked];
		struct span e = entry_span(r->w.prev, p);
		if (e.hi > e.lo)
			v[m++] = e;
	}
	if (m > 1)
		qsort(v, m, sizeof(*v), cmp_span);
	for (size_t i = 0; i < m; i++) {
		if (k > 0 && v[i].lo <= v[k - 1].hi) {
			if (v[i].hi > v[k - 1].hi)
				v[k - 1].hi = v[i].hi;
			continue;
		}
		v[k++] = v[i];
	}
	*n = k;
	return v;
}

/* The entries read again, s's so far: sorted, each path once (a
 * directory both read again and listed by its parent read again is
 * there twice, both fresh), moved out of s into *out. */
static int refresh_fresh(struct snapshot *s, struct snap_entry **out,
			 size_t *n)
{
	size_t k = 0;

	*out = malloc((s->n ? s->n : 1) * sizeof(**out));
	if (*out == NULL)
		return -ENOMEM;
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_entry);
	for (size_t i = 0; i < s->n; i++) {
		if (k > 0 && strcmp((*out)[k - 1].path, s->v[i].path) == 0) {
			snapshot_entry_fini(&s->v[i]);
			continue;
		}
		(*out)[k++] = s->v[i];
	}
	s->n = 0;
	*n = k;
	return 0;
}

/* Whether prev is in path order, as a refresh needs it: marked so, or
 * found so (a walk is, but does not say). */
static bool in_order(const struct snapshot *prev)
{
	for (size_t i = 1; !prev->sorted && i < prev->n; i++)
		if (snapshot_path_cmp(prev->v[i - 1].path, prev->v[i].path) >= 0)
			return false;
	return true;
}

/* How a refresh holds what it keeps of the record it refreshes. */
enum keep {
	KEEP_COPY,  /* copied, each path into its own pool */
	KEEP_SHARE, /* copied, the paths left in the record's blocks */
	KEEP_VIEW,  /* in a view of the record's store: only an entry that
		     * moved (or is new) is written */
};

struct merge {
	struct refresh *r;
	struct snap_entry *fresh; /* read again, in order */
	size_t *at;		  /* where each goes among prev's */
	size_t nfresh, next;
	const char *cut; /* a directory of prev dropped with all below it */
	size_t cutlen;
	enum keep keep;
	bool same_next; /* prev's next entry was read again as it holds
			   it: kept (merge_spanned()) */
	size_t sub; /* entries of the last directory kept whole, its own
		       and those below it */
	size_t gone; /* bytes of prev's mapping let go (merge_moved()) */
};

/* What was read again of prev's entry `i`, found as prev holds it,
 * dropped for prev's own: its path no longer counts. */
static void merge_fresh_drop(struct merge *m, struct snap_entry *e)
{
	struct snapshot *s = m->r->w.s;
	uint64_t len = strlen(e->path) + 1;

	s->path_bytes -= len < s->path_bytes ? len : s->path_bytes;
	if (e->pooled)
		s->pool_used -= len < s->pool_used ? len : s->pool_used;
	snapshot_entry_fini(e);
	m->same_next = true;
}

/* Adds what was read again that sorts before prev's entry `i`.  In a
 * span (`paired`, with merge_spanned() of `i` next), what is found just
 * as prev's entry `i` holds it is not added: prev's is kept in its
 * place, with what the writer learned of it, and in a view not even
 * written (a top-level directory read again among ten thousand is not
 * ten thousand pages copied). */
static void merge_fresh(struct merge *m, size_t i, bool paired)
{
	const struct snapshot *prev = m->r->w.prev;
	struct snapshot *s = m->r->w.s;

	for (; m->next < m->nfresh && m->at[m->next] <= i; m->next++) {
		struct snap_entry *e = &m->fresh[m->next];
		if (paired && m->at[m->next] == i &&
		    strcmp(prev->v[i].path, e->path) == 0 &&
		    over_same(&m->r->w, &prev->v[i], e)) {
			merge_fresh_drop(m, e);
			continue;
		}
		if (e->type == SNAP_DIR &&
		    array_grow(&m->r->dirs_new, &m->r->newcap, m->r->nnew,
			       sizeof(*m->r->dirs_new)) == 0)
			m->r->dirs_new[m->r->nnew++] = s->n;
		else if (e->type == SNAP_DIR)
			m->r->watch = NULL; /* out of memory: from s itself */
		s->v[s->n++] = *e; /* s's now */
		s->bytes += e->type == SNAP_FILE ? e->size : 0;
	}
}

/* prev's entry `e`, in a span: kept unless read again (or below a
 * subdirectory read again in full) and found otherwise; 1 when kept. */
static int merge_spanned(struct merge *m, const struct snap_entry *e)
{
	struct refresh *r = m->r;
	bool cut_dir, same = m->same_next;

	m->same_next = false;
	if (m->cut && under(e->path, m->cut, m->cutlen))
		return same;
	m->cut = NULL;
	if (!refresh_replaced(r, e->path, e->type, &cut_dir))
		return 1;
	if (!cut_dir)
		return same;
	/* What is below it was read again, even when it is kept. */
	m->cut = e->path;
	m->cutlen = strlen(e->path);
	int rc = push_str(&r->cuts, &r->ncuts, &r->cutcap, (char *)e->path);
	return rc < 0 ? rc : same;
}

/* prev's entry `e`, replaced or gone: neither its path nor its bytes
 * count any longer, nor its watch. */
static int merge_dropped(struct merge *m, const struct snap_entry *e)
{
	struct refresh *r = m->r;
	struct snapshot *s = r->w.s;
	uint64_t len = strlen(e->path) + 1;

	if (e->type == SNAP_DIR && push_str(&r->dirs_gone, &r->ngone,
					    &r->gonecap, (char *)e->path) < 0)
		return -ENOMEM;
	s->path_bytes -= len < s->path_bytes ? len : s->path_bytes;
	if (m->keep != KEEP_COPY && e->pooled)
		s->pool_used -= len < s->pool_used ? len : s->pool_used;
	if (e->type == SNAP_FILE)
		s->bytes -= e->size < s->bytes ? e->size : s->bytes;
	return 0;
}

/* prev's entries [i, i+n) kept, moved in the view (what came or went
 * before them moved them): the view's pages they are written to become
 * its own, so the record's mapping lets go of those read, a chunk at a
 * time (a name added at the top of a million entries moves them all,
 * and would have both hold all of them at once). */
static void merge_moved(struct merge *m, size_t i, size_t n)
{
	const struct snapshot *prev = m->r->w.prev;
	struct snapshot *s = m->r->w.s;
	const size_t sz = sizeof(*s->v), chunk = MOVE_CHUNK / sz;
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);

	while (n > 0) {
		size_t k = n < chunk ? n : chunk;
		memcpy(&s->v[s->n], &prev->v[i], k * sz);
		s->n += k;
		i += k;
		n -= k;
		/* The page of entry i may hold more to read. */
		size_t read = i * sz / page * page;
		store_let_go(prev->store, m->gone, read);
		m->gone = read;
	}
}

/* prev's entries [i, i+n) kept, as the next of s's. */
static int merge_keep(struct merge *m, size_t i, size_t n)
{
	const struct snapshot *prev = m->r->w.prev;
	struct snapshot *s = m->r->w.s;

	if (n == 0)
		return 0;
	if (run_note(s, s->n, i, n) < 0)
		return -ENOMEM;
	switch (m->keep) {
	case KEEP_COPY:
		for (size_t k = i; k < i + n; k++)
			if (snapshot_add(s, &prev->v[k]) < 0)
				return -ENOMEM;
		return 0;
	case KEEP_VIEW:
		/* Where they were: the view holds them already.  Not
		 * written, the pages stay the record's. */
		if (s->n == i)
			s->n += n;
		else
			merge_moved(m, i, n);
		return 0;
	case KEEP_SHARE:
		memcpy(&s->v[s->n], &prev->v[i], n * sizeof(*s->v));
		s->n += n;
		return 0;
	}
	return -EINVAL;
}

/* prev's entries [i, end), outside every span: kept, with what was read
 * again going in between where it sorts. */
static int merge_unspanned(struct merge *m, size_t i, size_t end)
{
	while (i < end) {
		merge_fresh(m, i, false);
		size_t to = m->next < m->nfresh && m->at[m->next] < end
				    ? m->at[m->next]
				    : end;
		if (merge_keep(m, i, to - i) < 0)
			return -ENOMEM;
		i = to;
	}
	return 0;
}

/* strcmp() of `d` with `dir` (of length `len`) followed by a '/'. */
static int cmp_below(const char *d, const char *dir, size_t len)
{
	int c = strncmp(d, dir, len);

	return c != 0 ? c : (int)(unsigned char)d[len] - '/';
}

/* Whether `dir` (of length `len`) or a path below it is in v (sorted by
 * strcmp()): `dir` itself, or the first that sorts from "dir/" on starts
 * so ("dir-x" and "dir.x" sort between "dir" and "dir/x"). */
static bool set_at_or_below(char *const *v, size_t n, const char *dir,
			    size_t len)
{
	size_t lo = 0, hi = n;

	if (in_set(v, n, dir, len))
		return true;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_below(v[mid], dir, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && strncmp(v[lo], dir, len) == 0 && v[lo][len] == '/';
}

/* Whether anything at or below `dir` was read again: a directory, or a
 * name looked at on its own. */
static bool done_at_or_below(const struct refresh *r, const char *dir,
			     size_t len)
{
	return set_at_or_below(r->done, r->ndone, dir, len) ||
	       set_at_or_below(r->looked, r->nlooked, dir, len) ||
	       set_at_or_below(r->selfs, r->nselfs, dir, len);
}

/* How many of prev's entries from `i` (kept, in a span that ends at
 * `hi`) are kept at once: 1, or a directory kept as it was with all
 * below it when nothing there was read again.  Each of those would be
 * kept on its own: beside a file changed at the top of a million files,
 * that is a million entries (and their paths) not looked at. */
static size_t merge_kept_whole(struct merge *m, size_t i, size_t hi)
{
	const struct snap_entry *e = &m->r->w.prev->v[i];
	size_t len, end;

	if (e->type != SNAP_DIR || m->cut != NULL)
		return 1; /* not one, or below one read again whole */
	len = strlen(e->path);
	if (done_at_or_below(m->r, e->path, len))
		return 1;
	/* Tried first where the last one's ended: siblings are often of
	 * one size. */
	end = snapshot_subtree_end_near(m->r->w.prev, i, m->sub);
	m->sub = end - i;
	if (end > hi)
		end = hi;
	/* Nothing read again goes in between (by the above, nothing can). */
	if (m->next < m->nfresh && m->at[m->next] < end)
		end = m->at[m->next];
	return end > i ? end - i : 1;
}

/* prev's entries that were not read again, and those that were, merged
 * in path order in one pass: only prev's entries in the span of a
 * directory read again are looked at one by one (but what is below a
 * directory kept whole, see merge_kept_whole()), the rest kept a range
 * at a time (and in a view, where it already is, not even touched). */
static int merge_run(struct merge *m, const struct span *sp, size_t nsp)
{
	const struct snapshot *prev = m->r->w.prev;
	size_t i = 0;

	for (size_t j = 0; j <= nsp; j++) {
		size_t lo = j < nsp ? sp[j].lo : prev->n;
		if (merge_unspanned(m, i, lo) < 0)
			return -ENOMEM;
		for (i = lo; j < nsp && i < sp[j].hi;) {
			merge_fresh(m, i, true);
			int rc = merge_spanned(m, &prev->v[i]);
			if (rc < 0)
				return rc;
			size_t n = rc == 0 ? 1 : merge_kept_whole(m, i, sp[j].hi);
			if (rc == 0)
				rc = merge_dropped(m, &prev->v[i]);
			else
				rc = merge_keep(m, i, n);
			if (rc < 0)
				return rc;
			i += n;
		}
	}
	merge_fresh(m, SIZE_MAX, false);
	return 0;
}

/* Room in s for `n` entries, and how it keeps prev's: in a view of
 * prev's store when it has one, sharing prev's blocks of paths when its
 * paths are all in them; else copied. */
static int refresh_room(struct snapshot *s, const struct snapshot *prev,
			size_t n, enum keep *keep)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t sz = sizeof(*s->v);
	size_t len = n <= (SIZE_MAX - page) / sz ? array_round_up(n * sz, page)
						  : 0;
	void *view = NULL;

	*keep = prev->held ? KEEP_COPY : KEEP_SHARE;
	if (*keep == KEEP_SHARE && pool_share(s, prev) < 0)
		return -ENOMEM;
	if (*keep == KEEP_SHARE && prev->mem == SNAP_MEM_STORE && len &&
	    store_view(prev->store, len, STORE_READS_FEW, &view) == 0) {
		/* Empty: what it read is in `fresh`. */
		entries_view(s, prev->store, view, len);
		*keep = KEEP_VIEW;
		return 0;
	}
	if (s->cap < n && entries_resize(s, n, ENT_POPULATE) < 0)
		return -ENOMEM;
	return 0;
}

/* s's entries, those read again, merged with prev's that were not:
 * room is made for all at once (growing by doubling would copy a large
 * tree's array several times over). */
static int refresh_keep_entries(struct refresh *r)
{
	const struct snapshot *prev = r->w.prev;
	struct snapshot *s = r->w.s;
	struct merge m = {.r = r};
	struct span *sp = NULL;
	size_t nsp = 0;
	int rc = in_order(prev) ? 0 : -ESTALE;

	if (rc == 0)
		rc = refresh_fresh(s, &m.fresh, &m.nfresh);
	if (rc == 0)
		rc = refresh_room(s, prev, m.nfresh + prev->n, &m.keep);
	if (rc == 0 && ((m.at = malloc((m.nfresh ? m.nfresh : 1) *
				       sizeof(*m.at))) == NULL ||
			(sp = refresh_spans(r, &nsp)) == NULL))
		rc = -ENOMEM;
	for (size_t i = 0, from = 0; rc == 0 && i < m.nfresh; i++) {
		m.at[i] = lower_bound_near(prev, m.fresh[i].path, from,
					   i > 1 ? m.at[i - 1] - m.at[i - 2] : 0);
		from = m.at[i];
	}
	/* Less what the merge drops, and with what it adds. */
	s->bytes = prev->bytes;
	s->path_bytes += prev->path_bytes;
	/* At most: what was read again is counted twice until a full walk
	 * counts it once. */
	s->unlisted += prev->unlisted;
	if (rc == 0)
		rc = merge_run(&m, sp, nsp);
	/* What reads s from now on (the writer, a check of every live
	 * file) reads the view: the record's mapping lets go of what the
	 * walk and the merge read of it, so that a page counts once. */
	if (rc == 0 && m.keep == KEEP_VIEW)
		store_let_go(prev->store, 0, SIZE_MAX);
	for (size_t i = m.next; i < m.nfresh; i++)
		snapshot_entry_fini(&m.fresh[i]);
	free(m.fresh);
	free(m.at);
	free(sp);
	return rc;
}

static bool refresh_warning_kept(const struct refresh *r, const char *path)
{
	if (in_set(r->done, r->ndone, path, parent_len(path)) ||
	    in_set(r->looked, r->nlooked, path, strlen(path)))
		return false;
	for (size_t i = 0; path[i]; i++)
		if (path[i] == '/' && in_set(r->cuts, r->ncuts, path, i))
			return false;
	return true;
}

static int cmp_warn(const void *a, const void *b)
{
	return snapshot_path_cmp(((const struct snap_warning *)a)->path,
				 ((const struct snap_warning *)b)->path);
}

/* prev's warnings for what was not read again, with the new ones, in
 * the order a walk finds them. */
static int refresh_warnings(struct refresh *r)
{
	struct snapshot *s = r->w.s;

	if (r->ncuts > 1)
		qsort(r->cuts, r->ncuts, sizeof(*r->cuts), cmp_str);
	for (size_t i = 0; i < r->nwarn; i++)
		if (refresh_warning_kept(r, r->warn[i].path) &&
		    add_warning(s, r->warn[i].path, r->warn[i].kind) < 0)
			return -ENOMEM;
	if (s->extras.nwarn > 1)
		qsort(s->extras.warn, s->extras.nwarn,
		      sizeof(*s->extras.warn), cmp_warn);
	return 0;
}

static int cmp_gone(const void *key, const void *elem)
{
	return snapshot_path_cmp(key, *(char *const *)elem);
}

static int add_watch_of(struct snapshot *s, const char *path, uint64_t dev,
			uint64_t ino)
{
	struct stat st = {0};

	st.st_dev = (dev_t)dev;
	st.st_ino = (ino_t)ino;
	return add_watch(s, path, &st);
}

/* Where a directory entry is watched, as add_dir() does: where it
 * really is, when a link led to it. */
static const char *dir_watched(const struct snap_entry *e)
{
	return e->src ? e->src : e->path;
}

/* prev's watches but those of directories the merge dropped, with those
 * of the directories it added, merged in path order (prev's are in it,
 * as a walk lists them): a watch for the root and every directory
 * entry, without looking at every entry. */
static int watches_from_prev(struct refresh *r)
{
	struct snapshot *s = r->w.s;
	size_t i = 0, k = 0;
	int rc = 0;

	while (rc == 0 && (i < r->nwatch || k < r->nnew)) {
		const struct snap_dir *d = i < r->nwatch ? &r->watch[i] : NULL;
		const struct snap_entry *e =
			k < r->nnew ? &s->v[r->dirs_new[k]] : NULL;
		if (d && *d->path && r->ngone &&
		    bsearch(d->path, r->dirs_gone, r->ngone,
			    sizeof(*r->dirs_gone), cmp_gone)) {
			i++;
			continue;
		}
		int c = d == NULL ? 1
			: e == NULL ? -1
				    : snapshot_path_cmp(d->path, e->path);
		if (c < 0) {
			rc = add_watch_of(s, d->path, d->dev, d->ino);
			i++;
			continue;
		}
		i += c == 0; /* the same directory read again */
		rc = add_watch_of(s, dir_watched(e), e->dev, e->ino);
		k++;
	}
	return rc;
}

/* The directories to watch of the walk's list `v` that are not the
 * tree's own (where a link it met led: a file's directory, out of the
 * source or excluded), added to s's.  `v` is freed. */
static int keep_link_watches(struct snapshot *s, struct snap_dir *v, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		const struct snap_entry *e =
			v[i].path[0] && v[i].path[0] != '/'
				? snapshot_find(s, v[i].path)
				: NULL;
		bool tree = v[i].path[0] == '\0' ||
			    (e && e->type == SNAP_DIR && e->src == NULL &&
			     e->dev == v[i].dev && e->ino == v[i].ino);
		if (rc == 0 && !tree)
			rc = add_watch_of(s, v[i].path, v[i].dev, v[i].ino);
		free(v[i].path);
	}
	free(v);
	return rc;
}

/* The directories to watch are the root and every directory entry, as
 * a walk lists them: from prev's when they are there (the root's is, in
 * any walk's), else from every entry.  prev has no links (it would not
 * be refreshed), so a link is one the walk met, and where it leads is
 * watched too, as a full walk does (the next read is one). */
static int refresh_watches(struct refresh *r)
{
	struct snapshot *s = r->w.s;
	struct snapshot_extras *x = &s->extras;
	struct snap_dir *walked = x->watch;
	size_t nwalked = x->nwatch;
	int rc = 0;

	if (s->indirect) {
		x->watch = NULL;
		x->watchcap = 0;
	} else {
		for (size_t i = 0; i < nwalked; i++)
			free(walked[i].path);
		walked = NULL;
		nwalked = 0;
	}
	x->nwatch = 0;
	if (r->watch && r->nwatch > 0) {
		rc = watches_from_prev(r);
	} else {
		rc = add_watch_of(s, "", s->root_dev, s->root_ino);
		for (size_t i = 0; rc == 0 && i < s->n; i++)
			if (s->v[i].type == SNAP_DIR)
				rc = add_watch_of(s, dir_watched(&s->v[i]),
						  s->v[i].dev, s->v[i].ino);
	}
	if (walked == NULL)
		return rc;
	int krc = keep_link_watches(s, walked, nwalked);
	return rc < 0 ? rc : krc;
}

static int refresh_merge(struct refresh *r)
{
	struct snapshot *s = r->w.s;
	const struct snapshot_opts *o = r->w.o;
	int rc = refresh_keep_entries(r);

	if (rc < 0)
		return rc;
	/* Over a limit: a full walk says where. */
	if (o && ((o->max_files && s->n > o->max_files) ||
		  (o->max_bytes && s->bytes > o->max_bytes)))
		return -ESTALE;
	rc = refresh_warnings(r);
	return rc < 0 ? rc : refresh_watches(r);
}

/* The directories to read again, `dirs` and r->parents, in path order
 * (parents first), each once; NULL when one is not below the root. */
static char **refresh_todo(const struct refresh *r, char *const *dirs,
			   size_t nd, size_t *out_n)
{
	size_t n = nd + r->nparents, k = 0;
	char **v = malloc((n ? n : 1) * sizeof(*v));

	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		v[i] = i < nd ? dirs[i] : r->parents[i - nd];
		if (v[i][0] == '/') {
			free(v);
			return NULL;
		}
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_str_path);
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(v[k - 1], v[i]) != 0)
			v[k++] = v[i];
	*out_n = k;
	return v;
}

static bool refresh_possible(const struct snapshot *prev,
			     const struct snapshot_opts *o)
{
	return prev->root && !prev->indirect &&
	       log_list_count(&prev->problems) == 0 &&
	       (o == NULL || o->nfollow_into == 0);
}

/* Whether the name `path` can be looked at on its own: a plain file in
 * prev, or not there, in a directory prev has as such, and a file now
 * or gone.  Anything else (a directory, a link, a name of the layout)
 * reads its directory again. */
static bool name_alone(struct refresh *r, const char *path)
{
	const struct snapshot *prev = r->w.prev;
	struct snapshot *s = r->w.s;
	size_t dl = parent_len(path);
	const char *name = path + (dl ? dl + 1 : 0);
	const struct snap_entry *e = snapshot_find(prev, path);
	struct stat st;

	if (name[0] == '\0' || (name[0] == '.' && name[1] == '.') ||
	    (e && (e->type != SNAP_FILE || e->src ||
		   (e->flags & ~SNAP_F_RACY))))
		return false;
	char *dir = strndup(path, dl);
	e = dir && dl ? snapshot_find(prev, dir) : NULL;
	int fd = dir && (dl == 0 || (e && e->type == SNAP_DIR && !e->flags &&
				     !e->src))
			 ? fsutil_open_beneath(s->root_fd, dir,
					       O_RDONLY | O_DIRECTORY)
			 : -ENOENT;
	free(dir);
	if (fd < 0)
		return false;
	s->read++;
	int rc = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	close(fd);
	return rc == 0 ? S_ISREG(st.st_mode) : rc == -ENOENT;
}

/* Sorts the names of `c` out: those to look at on their own into
 * *alone (sorted, each once), the directories of the others into
 * r->parents. */
static int refresh_split(struct refresh *r, const struct snap_changed *c,
			 char ***alone, size_t *na)
{
	const char *last = NULL;
	size_t k = 0;

	*na = 0;
	*alone = malloc((c->nnames ? c->nnames : 1) * sizeof(**alone));
	if (*alone == NULL)
		return -ENOMEM;
	if (c->nnames > 0)
		memcpy(*alone, c->names, c->nnames * sizeof(**alone));
	if (c->nnames > 1)
		qsort(*alone, c->nnames, sizeof(**alone), cmp_str);
	for (size_t i = 0; i < c->nnames; i++) {
		char *p = (*alone)[i];
		if (p[0] == '/')
			return -ESTALE;
		/* Sorted: a name told twice follows itself. */
		if (last && strcmp(last, p) == 0)
			continue;
		last = p;
		if (name_alone(r, p)) {
			(*alone)[k++] = p;
			continue;
		}
		char *d = strndup(p, parent_len(p));
		if (d == NULL || push_str(&r->parents, &r->nparents,
					  &r->parentcap, d) < 0) {
			free(d);
			return -ENOMEM;
		}
	}
	*na = k;
	return 0;
}

/* Looks at the name `path` on its own (name_alone()): its entry afresh,
 * or none when it is gone, and its directory's own entry, once. */
static int refresh_name(struct refresh *r, char *path)
{
	struct walk *w = &r->w;
	size_t dl = parent_len(path);
	struct frame f = {.fd = -1}, child = {.fd = -1};
	struct stat st;

	if (refresh_covered(r, path))
		return 0;
	char *dir = strndup(path, dl);
	if (dir == NULL)
		return -ENOMEM;
	bool own = dl && !in_set(r->selfs, r->nselfs, dir, dl);
	/* No loop to look for above it: a directory fails it (below). */
	int fd = refresh_open(r, dir, &st, own), rc;
	if (fd < 0) {
		free(dir);
		return fd;
	}
	f = frame_of(fd, dir, strdup(dir), 0, &st);
	via_way(&f, w->s);
	rc = f.src ? walk_name(w, &f, path + (dl ? dl + 1 : 0), &child)
		   : -ENOMEM;
	if (rc == 0 && child.fd >= 0)
		rc = -ESTALE; /* a directory since: its parent is read */
	if (rc == 0 && own &&
	    (rc = push_str(&r->selfs, &r->nselfs, &r->selfcap, f.path)) == 0) {
		f.path = NULL; /* r->selfs' */
		qsort(r->selfs, r->nselfs, sizeof(*r->selfs), cmp_str);
	}
	if (rc == 0 && (rc = push_str(&r->looked, &r->nlooked, &r->lookedcap,
				      path)) == 0)
		qsort(r->looked, r->nlooked, sizeof(*r->looked), cmp_str);
	frame_fini(&child);
	frame_fini(&f);
	return rc;
}

static int refresh_run(struct refresh *r, const struct snap_changed *c)
{
	struct snapshot *s = r->w.s;
	size_t k = 0, na = 0;
	char **alone = NULL, **todo = NULL;
	int rc = 0;

	if (s->root_dev != r->w.prev->root_dev ||
	    s->root_ino != r->w.prev->root_ino)
		rc = -ESTALE; /* the source was replaced */
	if (rc == 0) /* for a link it meets, with symlinks = follow */
		rc = resolve_into_dirs(&r->w);
	if (rc == 0)
		rc = refresh_split(r, c, &alone, &na);
	if (rc == 0 && (todo = refresh_todo(r, c->dirs, c->ndirs, &k)) == NULL)
		rc = -ESTALE;
	for (size_t i = 0; rc == 0 && i < k; i++)
		rc = refresh_dir(r, todo[i]);
	for (size_t i = 0; rc == 0 && i < na; i++)
		rc = refresh_name(r, alone[i]);
	free(todo);
	free(alone);
	if (rc == 0)
		rc = refresh_merge(r);
	if (rc == 0)
		rc = links_unchanged(&r->w);
	/* What cannot be read is reported by a full walk, all of it. */
	if (rc == 0 && log_list_count(&s->problems) > 0)
		rc = -ESTALE;
	return rc;
}

int snapshot_refresh(const struct snapshot *prev,
		     const struct snapshot_extras *px, char *const *dirs,
		     size_t n, const struct snapshot_opts *o,
		     struct snapshot **out, char **err)
{
	const struct snap_changed c = {.dirs = dirs, .ndirs = n};

	return snapshot_refresh_changed(prev, px, &c, o, out, err);
}

int snapshot_refresh_changed(const struct snapshot *prev,
			     const struct snapshot_extras *px,
			     const struct snap_changed *c,
			     const struct snapshot_opts *o,
			     struct snapshot **out, char **err)
{
	if (px == NULL)
		px = &prev->extras;
	struct refresh r = {.w = {.o = o, .prev = prev},
			    .warn = px->warn, .nwarn = px->nwarn,
			    .watch = px->watch, .nwatch = px->nwatch};
	struct snapshot *s = NULL;
	int rc;

	*out = NULL;
	/* Past its warnings' cap: a full walk counts them again. */
	if (!refresh_possible(prev, o) || px->nwarn_more)
		return -ESTALE;
	rc = snapshot_open(prev->root, &s, err);
	if (rc < 0)
		return rc;
	/* The entries read again were looked at now, each marked racy or
	 * not by that; those kept keep the mark prev gave them. */
	r.w.seen = s->taken;
	s->taken = prev->taken;
	r.w.s = s;
	rc = refresh_run(&r, c);
	/* A failure is reported the way a full walk reports it; a torn
	 * read is retried as one. */
	if (rc < 0 && rc != -EAGAIN && rc != -ENOMEM)
		rc = -ESTALE;
	if (rc < 0 && rc != -ESTALE) {
		if (r.w.err == NULL)
			log_err_set(&r.w.err, rc, "source %s: %s", prev->root,
				    strerror(-rc));
		if (err) {
			free(*err);
			*err = r.w.err;
			r.w.err = NULL;
		}
	}
	if (rc < 0) {
		snapshot_free(s);
		s = NULL;
	}
	walk_fini(&r.w);
	free(r.done);
	free(r.cuts);
	free(r.looked);
	names_free(r.selfs, r.nselfs);
	names_free(r.parents, r.nparents);
	free(r.dirs_gone);
	free(r.dirs_new);
	trim(s);
	if (s) { /* merged in order, duplicates gone (refresh_merge()) */
		s->walked = s->sorted = true;
		s->base_id = prev->id;
	}
	*out = s;
	return rc;
}
