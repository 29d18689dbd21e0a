#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "ignore.h"
#include "log.h"
#include "snapshot.h"

/* Symlinks followed while resolving one link, as the kernel's limit. */
#define MAX_LINK_HOPS 40

struct dirid {
	uint64_t dev, ino;
};

/* A symlink read during the walk, and what it said. */
struct linkrec {
	char *path; /* relative to the source root */
	char *target;
};

struct walk {
	struct snapshot *s;
	const struct snapshot_opts *o;
	struct dirid *stack; /* directories being walked, for loop checks */
	size_t depth, cap;
	struct linkrec *links;
	size_t nlinks;
	char *err;
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
	struct linkrec *v = realloc(w->links, (w->nlinks + 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	w->links = v;
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

	for (;; p++, q++) {
		int x = *p == '/' ? 1 : *p == 0 ? 0 : *p + 1;
		int y = *q == '/' ? 1 : *q == 0 ? 0 : *q + 1;
		if (x != y)
			return x < y ? -1 : 1;
		if (x == 0)
			return 0;
	}
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
	}
	return "skipped";
}

void snapshot_entry_fini(struct snap_entry *e)
{
	free(e->path);
	free(e->src);
	e->path = e->src = NULL;
}

void snapshot_free(struct snapshot *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		snapshot_entry_fini(&s->v[i]);
	for (size_t i = 0; i < s->nwarn; i++)
		free(s->warn[i].path);
	for (size_t i = 0; i < s->nwatch; i++)
		free(s->watch[i].path);
	if (s->root_fd >= 0)
		close(s->root_fd);
	free(s->v);
	free(s->warn);
	free(s->watch);
	free(s->root);
	free(s->root_real);
	free(s);
}

int snapshot_append(struct snapshot *s, const struct snap_entry *e)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct snap_entry *v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = *e;
	return 0;
}

int snapshot_add(struct snapshot *s, const struct snap_entry *e)
{
	struct snap_entry d = *e;

	d.path = strdup(e->path);
	d.src = e->src ? strdup(e->src) : NULL;
	if (d.path == NULL || (e->src && d.src == NULL) ||
	    snapshot_append(s, &d) < 0) {
		snapshot_entry_fini(&d);
		return -ENOMEM;
	}
	return 0;
}

static int add_warning(struct snapshot *s, const char *path,
		       enum snap_warn kind)
{
	if (s->nwarn == s->warncap) {
		size_t cap = s->warncap ? s->warncap * 2 : 8;
		struct snap_warning *v = realloc(s->warn, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		s->warn = v;
		s->warncap = cap;
	}
	s->warn[s->nwarn].path = strdup(path);
	if (s->warn[s->nwarn].path == NULL)
		return -ENOMEM;
	s->warn[s->nwarn].kind = kind;
	s->nwarn++;
	return 0;
}

static int add_watch(struct snapshot *s, const char *dir,
		     const struct stat *st)
{
	if (s->nwatch == s->watchcap) {
		size_t cap = s->watchcap ? s->watchcap * 2 : 16;
		struct snap_dir *v = realloc(s->watch, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		s->watch = v;
		s->watchcap = cap;
	}
	s->watch[s->nwatch].path = strdup(dir);
	if (s->watch[s->nwatch].path == NULL)
		return -ENOMEM;
	s->watch[s->nwatch].dev = (uint64_t)st->st_dev;
	s->watch[s->nwatch].ino = (uint64_t)st->st_ino;
	s->nwatch++;
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return snapshot_path_cmp(((const struct snap_entry *)a)->path,
				 ((const struct snap_entry *)b)->path);
}

void snapshot_sort(struct snapshot *s)
{
	/* A walk emits its entries in order: check before sorting. */
	for (size_t i = 1; i < s->n; i++)
		if (cmp_entry(&s->v[i - 1], &s->v[i]) > 0) {
			qsort(s->v, s->n, sizeof(*s->v), cmp_entry);
			return;
		}
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

static void fill_from_stat(struct snap_entry *e, const struct stat *st)
{
	e->type = S_ISDIR(st->st_mode) ? SNAP_DIR : SNAP_FILE;
	/* setuid, setgid and sticky bits are never projected. */
	e->mode = st->st_mode & 0777;
	e->uid = e->gid = SNAP_NO_ID;
	e->size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
	e->mtime = st->st_mtim;
	e->ctime = st->st_ctim;
	e->dev = (uint64_t)st->st_dev;
	e->ino = (uint64_t)st->st_ino;
}

int snapshot_open(const char *root, struct snapshot **out, char **err)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	struct stat st;

	if (s == NULL)
		return -ENOMEM;
	s->root_fd = -1;
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
	s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->root_fd < 0) {
		int rc = -errno;
		snapshot_free(s);
		return log_err_set(err, rc, "source %s: %s", root, strerror(-rc));
	}
	if (fstat(s->root_fd, &st) < 0) {
		int rc = -errno;
		snapshot_free(s);
		return log_err_set(err, rc, "source %s: %s", root, strerror(-rc));
	}
	s->root_dev = (uint64_t)st.st_dev;
	s->root_ino = (uint64_t)st.st_ino;
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

/* Strips root_real from an absolute link target; NULL when it leads
 * elsewhere. */
static const char *strip_root(const char *root_real, const char *target)
{
	size_t n = strlen(root_real);

	if (strcmp(root_real, "/") == 0)
		return target + 1;
	if (strncmp(target, root_real, n) != 0)
		return NULL;
	if (target[n] == '\0')
		return target + n;
	if (target[n] != '/')
		return NULL;
	return target + n + 1;
}

/* Resolves the symlink `dir/name` (dir relative to the source root) to a
 * symlink-free path below the root.  -EXDEV: it leads outside; -ELOOP:
 * too many links; -ENOENT: dangling. */
static int resolve_inside(struct walk *w, const char *dir, const char *name,
			  char **out)
{
	struct snapshot *s = w->s;
	struct comps stack = {0}, queue = {0};
	char *link = NULL, *cur = NULL;
	int hops = 0, rc;

	rc = comps_split(&stack, dir);
	if (rc < 0)
		goto out;
	rc = comps_push(&queue, name, strlen(name));
	if (rc < 0)
		goto out;

	while (queue.n > 0) {
		char *c = queue.v[--queue.n];
		if (strcmp(c, ".") == 0 || c[0] == '\0') {
			free(c);
			continue;
		}
		if (strcmp(c, "..") == 0) {
			free(c);
			if (stack.n == 0) {
				rc = -EXDEV;
				goto out;
			}
			free(stack.v[--stack.n]);
			continue;
		}
		rc = comps_push(&stack, c, strlen(c));
		free(c);
		if (rc < 0)
			goto out;
		free(cur);
		cur = comps_join(&stack, stack.n);
		if (cur == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		struct stat st;
		if (fstatat(s->root_fd, cur, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = -errno;
			if (rc == -ENOTDIR)
				rc = -ENOENT;
			goto out;
		}
		if (!S_ISLNK(st.st_mode)) {
			if (!S_ISDIR(st.st_mode) && queue.n > 0) {
				rc = -ENOENT;
				goto out;
			}
			continue;
		}
		if (++hops > MAX_LINK_HOPS) {
			rc = -ELOOP;
			goto out;
		}
		free(link);
		link = NULL;
		rc = fsutil_readlinkat(s->root_fd, cur, &link);
		if (rc == 0)
			rc = note_link(w, cur, link);
		if (rc < 0)
			goto out;
		free(stack.v[--stack.n]);
		if (link[0] == '/') {
			const char *rest = strip_root(s->root_real, link);
			if (rest == NULL) {
				rc = -EXDEV;
				goto out;
			}
			while (stack.n > 0)
				free(stack.v[--stack.n]);
			rc = queue_prepend(&queue, rest);
		} else {
			rc = queue_prepend(&queue, link);
		}
		if (rc < 0)
			goto out;
	}
	*out = comps_join(&stack, stack.n);
	rc = *out ? 0 : -ENOMEM;
out:
	free(cur);
	free(link);
	comps_free(&stack);
	comps_free(&queue);
	return rc;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_names(int dfd, char ***names, size_t *count)
{
	/* Read through dfd itself: a second descriptor for a DIR stream
	 * would cost five more system calls a directory. */
	_Alignas(struct dirent64) char buf[16384];
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (lseek(dfd, 0, SEEK_SET) < 0)
		return -errno;
	for (;;) {
		ssize_t got = getdents64(dfd, buf, sizeof(buf));
		if (got <= 0) {
			rc = got < 0 ? -errno : 0;
			break;
		}
		for (size_t off = 0; off < (size_t)got && rc == 0;) {
			unsigned short reclen;
			memcpy(&reclen,
			       buf + off + offsetof(struct dirent64, d_reclen),
			       sizeof(reclen));
			const char *name =
				buf + off + offsetof(struct dirent64, d_name);
			off += reclen;
			/* "." and "..", and every name starting with "..",
			 * which is reserved (a source that is itself a
			 * Kubernetes volume keeps its generations there). */
			if (name[0] == '.' && name[1] == '.')
				continue;
			if (name[0] == '.' && name[1] == '\0')
				continue;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 32;
				char **nv = realloc(v, nc * sizeof(*nv));
				if (nv == NULL) {
					rc = -ENOMEM;
					break;
				}
				v = nv;
				cap = nc;
			}
			v[n] = strdup(name);
			if (v[n] == NULL) {
				rc = -ENOMEM;
				break;
			}
			n++;
		}
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_name);
	*names = v;
	*count = n;
	return 0;
}

static bool on_stack(const struct walk *w, const struct stat *st)
{
	for (size_t i = 0; i < w->depth; i++)
		if (w->stack[i].dev == (uint64_t)st->st_dev &&
		    w->stack[i].ino == (uint64_t)st->st_ino)
			return true;
	return false;
}

static int push_dir(struct walk *w, const struct stat *st)
{
	if (w->depth == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 32;
		struct dirid *v = realloc(w->stack, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		w->stack = v;
		w->cap = cap;
	}
	w->stack[w->depth].dev = (uint64_t)st->st_dev;
	w->stack[w->depth].ino = (uint64_t)st->st_ino;
	w->depth++;
	return 0;
}

static int walk_dir(struct walk *w, int dfd, const char *path,
		    const char *src, unsigned flags);

/* One name of a directory being walked. */
static int walk_name(struct walk *w, int dfd, const char *path,
		     const char *src, unsigned flags, const char *name)
{
	struct snapshot *s = w->s;
	char *cpath = fsutil_join(path, name);
	/* Most names are read where they are projected: one string. */
	bool own_src = strcmp(path, src) != 0;
	char *csrc = own_src ? fsutil_join(src, name) : cpath;
	unsigned cflags = flags;
	int rc = 0, linked = 0;
	struct stat st;

	if (cpath == NULL || csrc == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT) /* gone since readdir: not there */
			goto out;
		rc = log_err_set(&w->err, -errno, "source %s/%s: %s", s->root,
			     csrc, strerror(errno));
		goto out;
	}
	if (S_ISLNK(st.st_mode)) {
		enum snap_links mode = w->o ? w->o->links : SNAP_LINKS_INSIDE;
		linked = 1;
		/* Excluded whatever it leads to: not even read. */
		if (snapshot_excluded(w->o, cpath, false) &&
		    snapshot_excluded(w->o, cpath, true))
			goto out;
		if (mode == SNAP_LINKS_SKIP) {
			rc = add_warning(s, cpath, SNAP_W_LINK);
			goto out;
		}
		if (mode == SNAP_LINKS_INSIDE && !(flags & SNAP_F_FOLLOW)) {
			char *resolved = NULL;
			rc = resolve_inside(w, src, name, &resolved);
			if (rc == -EAGAIN)
				goto out;
			if (rc == -EXDEV || rc == -ELOOP || rc == -ENOENT) {
				rc = add_warning(s, cpath,
						 rc == -EXDEV ? SNAP_W_OUTSIDE
						 : rc == -ELOOP
							 ? SNAP_W_LOOP
							 : SNAP_W_DANGLING);
				goto out;
			}
			if (rc < 0) {
				rc = log_err_set(&w->err, rc, "source %s/%s: %s",
					     s->root, csrc, strerror(-rc));
				goto out;
			}
			int fd = fsutil_open_beneath(s->root_fd, resolved,
						     O_PATH);
			if (fd < 0 || fstat(fd, &st) < 0) {
				rc = fd < 0 ? fd : -errno;
				if (fd >= 0)
					close(fd);
				free(resolved);
				/* Changed under us: the caller retries. */
				rc = log_err_set(&w->err, -EAGAIN,
					     "source %s/%s: changed while "
					     "being read (%s)",
					     s->root, csrc, strerror(-rc));
				goto out;
			}
			close(fd);
			if (own_src)
				free(csrc);
			csrc = resolved;
			own_src = true;
		} else {
			/* The link itself is noted; where it leads, the kernel
			 * resolves. */
			char *t = NULL;
			if (fsutil_readlinkat(dfd, name, &t) == 0)
				rc = note_link(w, csrc, t);
			free(t);
			if (rc < 0)
				goto out;
			if (fstatat(dfd, name, &st, 0) < 0) {
				if (errno == ENOENT || errno == ELOOP ||
				    errno == ENOTDIR) {
					rc = add_warning(s, cpath,
							 errno == ELOOP
								 ? SNAP_W_LOOP
								 : SNAP_W_DANGLING);
					goto out;
				}
				rc = log_err_set(&w->err, -errno,
					     "source %s/%s: %s", s->root, csrc,
					     strerror(errno));
				goto out;
			}
			cflags |= SNAP_F_FOLLOW;
		}
	}
	/* The type is known now, a link's by where it leads. */
	if (snapshot_excluded(w->o, cpath, S_ISDIR(st.st_mode)))
		goto out;

	if (S_ISREG(st.st_mode)) {
		struct snap_entry e = {0};
		fill_from_stat(&e, &st);
		e.path = cpath;
		e.flags = (uint8_t)cflags;
		if (own_src && strcmp(cpath, csrc) != 0 &&
		    (e.src = strdup(csrc)) == NULL)
			rc = -ENOMEM;
		else
			rc = snapshot_append(s, &e);
		if (rc == 0)
			cpath = NULL; /* the entry owns it now */
		else
			free(e.src);
		if (rc == 0 && linked && (cflags & SNAP_F_FOLLOW)) {
			/* Followed anywhere: watch the directory the file
			 * really is in, by its absolute path. */
			char *full = fsutil_join(s->root, csrc);
			char *real = full ? realpath(full, NULL) : NULL;
			char *slash = real ? strrchr(real, '/') : NULL;
			struct stat dst;
			if (slash) {
				*slash = '\0';
				const char *dir = slash == real ? "/" : real;
				if (stat(dir, &dst) == 0)
					rc = add_watch(s, dir, &dst);
			}
			free(real);
			free(full);
		} else if (rc == 0 && linked) {
			/* Watch where the content really lives. */
			char *slash = strrchr(csrc, '/');
			struct stat dst;
			if (slash)
				*slash = '\0';
			int dfd2 = fsutil_open_beneath(s->root_fd,
						       slash ? csrc : "", O_PATH);
			if (dfd2 >= 0) {
				if (fstat(dfd2, &dst) == 0)
					rc = add_watch(s, slash ? csrc : "", &dst);
				close(dfd2);
			}
		}
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = add_warning(s, cpath, SNAP_W_SPECIAL);
		goto out;
	}
	if (on_stack(w, &st)) {
		rc = add_warning(s, cpath, SNAP_W_LOOP);
		goto out;
	}

	int sub, serr = 0;
	if (linked && !(cflags & SNAP_F_FOLLOW)) {
		sub = fsutil_open_beneath(s->root_fd, csrc,
					  O_RDONLY | O_DIRECTORY);
		serr = sub < 0 ? -sub : 0;
	} else {
		sub = openat(dfd, name,
			     O_RDONLY | O_DIRECTORY | O_CLOEXEC |
				     ((cflags & SNAP_F_FOLLOW) ? 0 : O_NOFOLLOW));
		serr = sub < 0 ? errno : 0;
	}
	if (sub < 0) {
		if (serr == ENOENT) /* gone since readdir */
			goto out;
		if (serr == ENOTDIR || serr == ELOOP)
			rc = log_err_set(&w->err, -EAGAIN,
				     "source %s/%s: changed while being read",
				     s->root, csrc);
		else
			rc = log_err_set(&w->err, -serr, "source %s/%s: %s",
				     s->root, csrc, strerror(serr));
		goto out;
	}
	struct stat sst;
	if (fstat(sub, &sst) < 0 || sst.st_dev != st.st_dev ||
	    sst.st_ino != st.st_ino) {
		close(sub);
		rc = log_err_set(&w->err, -EAGAIN,
			     "source %s/%s: changed while being read", s->root,
			     csrc);
		goto out;
	}
	struct snap_entry e = {0};
	fill_from_stat(&e, &sst);
	e.path = cpath;
	e.src = strcmp(cpath, csrc) == 0 ? NULL : csrc;
	e.flags = (uint8_t)cflags;
	rc = snapshot_add(s, &e);
	if (rc == 0)
		rc = add_watch(s, csrc, &sst);
	if (rc == 0)
		rc = push_dir(w, &sst);
	if (rc == 0) {
		rc = walk_dir(w, sub, cpath, csrc, cflags);
		w->depth--;
	}
	close(sub);
out:
	free(cpath);
	if (own_src)
		free(csrc);
	return rc;
}

static int walk_dir(struct walk *w, int dfd, const char *path,
		    const char *src, unsigned flags)
{
	char **names = NULL;
	size_t n = 0;
	int rc = read_names(dfd, &names, &n);

	if (rc < 0)
		return log_err_set(&w->err, rc, "source %s%s%s: %s", w->s->root,
			       *src ? "/" : "", src, strerror(-rc));
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = walk_name(w, dfd, path, src, flags, names[i]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int snapshot_take(const char *root, const struct snapshot_opts *o,
		  struct snapshot **out, char **err)
{
	struct snapshot *s;
	struct walk w = {0};
	struct stat st;
	int rc = snapshot_open(root, &s, err);

	if (rc < 0)
		return rc;
	w.s = s;
	w.o = o;
	if (fstat(s->root_fd, &st) < 0) {
		rc = log_err_set(err, -errno, "source %s: %s", root,
			     strerror(errno));
		goto fail;
	}
	rc = push_dir(&w, &st);
	if (rc == 0)
		rc = add_watch(s, "", &st);
	if (rc == 0)
		rc = walk_dir(&w, s->root_fd, "", "", 0);
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
		goto fail;
	}
	free(w.stack);
	free(w.err);
	links_free(&w);
	*out = s;
	return 0;
fail:
	free(w.stack);
	free(w.err);
	links_free(&w);
	snapshot_free(s);
	return rc;
}
