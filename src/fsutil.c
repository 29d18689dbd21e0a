#include "config.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <grp.h>
#include <pthread.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "thread.h"

#define COPY_CHUNK (1u << 20)
#define CMP_CHUNK (64u * 1024)
/* A file this large, copied to be flushed, has each such part of it
 * written back while the rest is copied: the flush at the end waits
 * for the last part, not for all of it after the copy.  (Copied, then
 * flushed, 256 MiB took 0.25 s on disk; written back as copied,
 * 0.19 s.) */
#define WRITEBACK_CHUNK (8u << 20)

static _Atomic int have_openat2 = 1; /* set from pool threads too */

static int open_walk(int rootfd, const char *rel, int flags)
{
	/* Each component is opened with O_NOFOLLOW; ".." is refused so the
	 * walk cannot climb out of rootfd. */
	int cur = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	const char *p = rel;
	while (*p) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char *name = strndup(p, n);
		if (name == NULL) {
			close(cur);
			return -ENOMEM;
		}
		while (end && *end == '/')
			end++;
		int last = end == NULL || *end == '\0';
		int fd;
		if (strcmp(name, "..") == 0) {
			free(name);
			close(cur);
			return -EXDEV;
		}
		if (last)
			fd = openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC,
				    0);
		else
			fd = openat(cur, name,
				    O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					    O_CLOEXEC);
		int err = errno;
		free(name);
		close(cur);
		if (fd < 0)
			return -(err == ENOTDIR && !last ? ELOOP : err);
		cur = fd;
		if (last)
			return cur;
		p = end;
	}
	/* rel named the root itself (or was all slashes). */
	int fd = openat(cur, ".", flags | O_CLOEXEC, 0);
	int err = errno;
	close(cur);
	return fd < 0 ? -err : fd;
}

int fsutil_open_beneath(int rootfd, const char *rel, int flags)
{
	if (rel[0] == '\0')
		rel = ".";
	/* The kernel takes no path of PATH_MAX bytes or more in one call;
	 * a valid relative path may be exactly 4096 bytes long. */
	if (have_openat2 && strlen(rel) < PATH_MAX) {
		struct open_how how = {
			.flags = (uint64_t)(flags | O_CLOEXEC),
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
				   RESOLVE_NO_MAGICLINKS,
		};
		long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		/* Containers with old seccomp profiles answer ENOSYS or EPERM. */
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
		bool eperm = errno == EPERM;
		if (!eperm)
			have_openat2 = 0;
		int r = open_walk(rootfd, rel, flags);
		/* A real EPERM fails the walk as well; one the walk gets past
		 * was the filter's, and every later call would pay it. */
		if (eperm && r >= 0)
			have_openat2 = 0;
		return r;
	}
	return open_walk(rootfd, rel, flags);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void fsutil_names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int names_push(char ***v, size_t *n, size_t *cap, const char *name)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		char **nv = realloc(*v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[*n] = strdup(name);
	if ((*v)[*n] == NULL)
		return -ENOMEM;
	(*n)++;
	return 0;
}

/* The names in `dfd` (but "." and ".."), or only those of directories
 * and of entries of a type the file system does not tell. */
static int read_names(int dfd, bool dirs_only, char ***names, size_t *count)
{
	/* Read through dfd itself: a DIR stream would cost a second
	 * descriptor and five more system calls a directory. */
	_Alignas(struct dirent64) char buf[16384];
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (lseek(dfd, 0, SEEK_SET) < 0)
		return -errno;
	while (rc == 0) {
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
			unsigned char type = *(const unsigned char *)(buf + off +
					     offsetof(struct dirent64, d_type));
			const char *name =
				buf + off + offsetof(struct dirent64, d_name);
			off += reclen;
			if ((name[0] == '.' &&
			     (name[1] == '\0' ||
			      (name[1] == '.' && name[2] == '\0'))) ||
			    (dirs_only && type != DT_DIR && type != DT_UNKNOWN))
				continue;
			rc = names_push(&v, &n, &cap, name);
		}
	}
	if (rc < 0) {
		fsutil_names_free(v, n);
		return rc;
	}
	*names = v;
	*count = n;
	return 0;
}

int fsutil_read_names(int dfd, bool sorted, char ***names, size_t *count)
{
	int rc = read_names(dfd, false, names, count);

	if (rc == 0 && sorted && *count > 1)
		qsort(*names, *count, sizeof(**names), cmp_name);
	return rc;
}

/* A directory being emptied. */
struct rmframe {
	int fd;
	struct stat st;
	char *name; /* in its parent */
	char **names;
	size_t n, next;
};

/* Deeper than any generation can be (SNAPSHOT_MAX_PATH / 2 levels): what
 * is deeper was put there by someone else, and is left with an error
 * rather than given a descriptor per level. */
#define RMTREE_MAX_DEPTH 4096

/* Opens the directory `name` of `parent` (whose stat is *in) to be
 * emptied, on top of the stack. */
static int rm_push(struct rmframe **v, size_t *depth, size_t *cap, int parent,
		   const struct stat *in, const char *name)
{
	if (*depth == RMTREE_MAX_DEPTH)
		return -ELOOP;
	int fd = openat(parent, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* Not a directory after all: a file it may not unlink (in a sticky
	 * directory, say), not ours to remove. */
	if (fd < 0)
		return errno == ENOENT ? 0 : errno == ENOTDIR ? -EPERM : -errno;
	struct rmframe f = {.fd = fd};
	int rc = fstat(fd, &f.st) < 0 ? -errno : 0;
	if (rc == 0 && !fsutil_may_enter(in, &f.st))
		rc = -EPERM;
	/* A directory we cannot search is one we cannot empty. */
	if (rc == 0 && (f.st.st_mode & 0700) != 0700)
		(void)fchmod(fd, (f.st.st_mode & 07777) | 0700);
	if (rc == 0)
		rc = (f.name = strdup(name)) ? 0 : -ENOMEM;
	if (rc == 0)
		rc = fsutil_read_names(fd, false, &f.names, &f.n);
	if (rc == 0 && *depth == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct rmframe *nv = realloc(*v, nc * sizeof(*nv));
		if (nv == NULL)
			rc = -ENOMEM;
		else {
			*v = nv;
			*cap = nc;
		}
	}
	if (rc < 0) {
		close(fd);
		free(f.name);
		fsutil_names_free(f.names, f.n);
		return rc;
	}
	(*v)[(*depth)++] = f;
	return 0;
}

/* A user who owns no file, then the overflow one (a user namespace may
 * map only the first 65536): as whom to remove what is in a directory
 * fsutil_ours_but_open() holds. */
static const uid_t rm_nobody[] = {(uid_t)-2, 65534};

/* Leaves the calling thread no capability in effect: what it removes it
 * does with the rights of its file-system ids alone, whatever the
 * securebits let setfsuid() keep (SECBIT_NO_SETUID_FIXUP keeps
 * CAP_DAC_OVERRIDE and CAP_FOWNER).  Not even CAP_DAC_READ_SEARCH: it
 * would let it search directories on the way that they may not. */
static int rm_caps(void)
{
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	d[0].effective = d[1].effective = 0;
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* Takes, for the calling thread alone (file-system ids and supplementary
 * groups are a thread's own to the kernel; glibc's setgroups() sets every
 * thread's), the rights of the fewest who may write `st`: `u`, in a group
 * of its own when others may write it, else in the directory's group. */
static int rm_become(const struct stat *st, uid_t u)
{
	gid_t g = st->st_mode & S_IWOTH ? (gid_t)u : st->st_gid;

	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return -errno;
	(void)setfsgid(g);
	(void)setfsuid(u);
	/* Neither tells a refusal but by the ids it leaves. */
	if ((gid_t)setfsgid((gid_t)-1) != g || (uid_t)setfsuid((uid_t)-1) != u)
		return -EPERM;
	return rm_caps();
}

/* rm_become() as the first of rm_nobody[] the kernel takes. */
static int rm_become_any(const struct stat *st)
{
	int rc = -EPERM;

	for (size_t i = 0; i < 2 && rc == -EPERM; i++)
		rc = rm_become(st, rm_nobody[i]);
	return rc;
}

static int rmtree_dir(int parent, const struct stat *in, const char *name,
		      bool reduced);

/* Removes `name` of `parent` (whose stat is *in, NULL: as it is now)
 * and, if it is a directory, all it holds. */
static int rm_name(int parent, const struct stat *in, const char *name,
		   bool reduced)
{
	struct stat here;

	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	/* A directory: who can write the one it is in decides. */
	if (in == NULL && fstat(parent, &here) < 0)
		return -errno;
	return rmtree_dir(parent, in ? in : &here, name, reduced);
}

/* Removes the names `names` of `parent` (whose stat is *in), and what
 * they hold, on a thread that has the rights of its writers alone. */
static int rm_names(int parent, const struct stat *in, char *const *names,
		    size_t n)
{
	int first = 0;

	for (size_t i = 0; i < n; i++) {
		int rc = rm_name(parent, in, names[i], true);
		if (rc < 0 && first == 0)
			first = rc;
	}
	return first;
}

/* `name` of `parent` and all it holds, or else the `n` names `names`. */
struct rm_writers {
	int parent;
	const struct stat *in;
	const char *name;
	char *const *names;
	size_t n;
	int rc;
};

static void *rm_writers_run(void *arg)
{
	struct rm_writers *j = arg;

	j->rc = rm_become_any(j->in);
	if (j->rc == 0)
		j->rc = j->name ? rmtree_dir(j->parent, j->in, j->name, true)
				: rm_names(j->parent, j->in, j->names, j->n);
	return NULL;
}

static pthread_mutex_t rm_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned rm_running; /* such threads, under rm_mu */
static int rm_dumpable;	    /* the flag before the first of them */

/* Runs `fn` on a thread of its own and waits for it.  A thread that
 * changes its file-system ids makes the kernel take the whole process
 * for one that may not be dumped, nor its /proc files read by another
 * process of root's without CAP_SYS_PTRACE (which tells the holder of a
 * target's lock): what it was is put back once the thread is gone, its
 * ids with it. */
static int rm_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	/* Several at once (two halves, two mappings): the flag is read
	 * before the first and put back after the last. */
	pthread_mutex_lock(&rm_mu);
	if (rm_running++ == 0)
		rm_dumpable = prctl(PR_GET_DUMPABLE);
	pthread_mutex_unlock(&rm_mu);
	int rc = thread_start(&t, fn, arg);
	if (rc == 0)
		pthread_join(t, NULL);
	pthread_mutex_lock(&rm_mu);
	if (--rm_running == 0 && rm_dumpable == 1)
		(void)prctl(PR_SET_DUMPABLE, 1);
	pthread_mutex_unlock(&rm_mu);
	return rc;
}

/* What a struct rm_writers says, in `parent` (`in`, which
 * fsutil_ours_but_open() holds), on a thread that has the rights of its
 * writers alone (rm_become()): what is left is what they could not
 * remove either. */
static int rm_as_writers(struct rm_writers *j)
{
	int rc = rm_thread(rm_writers_run, j);

	return rc < 0 ? rc : j->rc;
}

static void *rm_become_run(void *arg)
{
	int *rc = arg;
	const struct stat open = {.st_mode = S_IFDIR | 0777};

	*rc = rm_become_any(&open);
	return NULL;
}

/* What the kernel answered: -1 not asked yet, else 0 or 1. */
static atomic_int rm_can_become = -1;

bool fsutil_can_act_as_writers(void)
{
	int known = atomic_load(&rm_can_become);
	int rc = -EPERM;

	if (known >= 0)
		return known;
	/* No thread to be had (EAGAIN) is no answer: asked again later.
	 * One given stands: a process rarely gains or loses capabilities,
	 * and either way errs on the side of leaving what it may not go
	 * into. */
	if (rm_thread(rm_become_run, &rc) < 0)
		return false;
	atomic_store(&rm_can_become, rc == 0);
	return rc == 0;
}

/* Removes the directory `name` of `parent` and all it holds, with an
 * explicit stack: depth comes from whoever wrote the tree.  What is in a
 * directory that fsutil_ours_but_open() holds is removed by
 * rm_as_writers(), unless this is that thread already (`reduced`). */
static int rmtree_dir(int parent, const struct stat *in, const char *name,
		      bool reduced)
{
	if (!reduced && fsutil_ours_but_open(in))
		return fsutil_can_act_as_writers()
			       ? rm_as_writers(&(struct rm_writers){
					 .parent = parent, .in = in,
					 .name = name})
			       : -EPERM;
	struct rmframe *v = NULL;
	size_t depth = 0, cap = 0;
	int rc = rm_push(&v, &depth, &cap, parent, in, name), first = rc;

	while (depth > 0) {
		struct rmframe *f = &v[depth - 1];
		bool guarded = !reduced && fsutil_ours_but_open(&f->st);
		if (f->next < f->n && guarded && fsutil_can_act_as_writers()) {
			rc = rm_as_writers(&(struct rm_writers){
				.parent = f->fd, .in = &f->st,
				.names = f->names + f->next,
				.n = f->n - f->next});
			f->next = f->n;
			if (rc < 0 && first == 0)
				first = rc;
		}
		if (f->next == f->n) {
			int up = depth > 1 ? v[depth - 2].fd : parent;
			close(f->fd);
			if (unlinkat(up, f->name, AT_REMOVEDIR) < 0 &&
			    errno != ENOENT && first == 0)
				first = -errno;
			free(f->name);
			fsutil_names_free(f->names, f->n);
			depth--;
			continue;
		}
		const char *n = f->names[f->next++];
		if (unlinkat(f->fd, n, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR && errno != EPERM) {
			if (first == 0)
				first = -errno;
			continue;
		}
		/* Without their rights, not gone into: not ours to empty. */
		rc = guarded ? -EPERM
			     : rm_push(&v, &depth, &cap, f->fd, &f->st, n);
		if (rc < 0 && first == 0)
			first = rc;
	}
	free(v);
	return first;
}

int fsutil_rmtree_in(int dirfd, const struct stat *in, const char *name)
{
	return rm_name(dirfd, in, name, false);
}

int fsutil_rmtree(int dirfd, const char *name)
{
	return fsutil_rmtree_in(dirfd, NULL, name);
}

int fsutil_open_unnamed(int dirfd)
{
	int fd = openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* EISDIR: a kernel that knows no O_TMPFILE. */
	if (errno == EISDIR || errno == EINVAL || errno == EOPNOTSUPP)
		return -EOPNOTSUPP;
	return -errno;
}

int fsutil_link_unnamed(int fd, int dirfd, const char *name)
{
	char proc[32];

	if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != EPERM && errno != ENOENT && errno != EACCES)
		return -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	return -errno;
}

/* A directory fsutil_tree_busy() reads: the directories in it. */
struct busyframe {
	int fd;
	char **dirs;
	size_t n, next;
};

/* Whether `st` changed at or after `since_ns`, and no more than
 * `ahead_ms` after the clock now: read for each directory, however long
 * the walk. */
static int changed_since(const struct stat *st, int64_t since_ns,
			 uint64_t ahead_ms)
{
	int64_t c = clock_ts_ns(&st->st_ctim);
	int64_t to = (int64_t)clock_us(CLOCK_REALTIME) * 1000 +
		     (int64_t)ahead_ms * 1000000;

	return c >= since_ns && c <= to;
}

/* The directory open as `fd`, on the file system `dev`: 1 when it
 * changed (see changed_since()), else on top of the stack with the names
 * of its directories (none at level `max`, the last one looked at).
 * `fd` is closed unless it is put on the stack. */
static int busy_push(struct busyframe **v, size_t *depth, size_t *cap,
		     size_t max, int fd, dev_t dev, int64_t since_ns,
		     uint64_t ahead_ms)
{
	struct busyframe f = {.fd = fd};
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -errno : 0;

	/* Another file system mounted here is not the target's. */
	if (rc == 0 && st.st_dev != dev) {
		close(fd);
		return 0;
	}
	if (rc == 0)
		rc = changed_since(&st, since_ns, ahead_ms);
	if (rc == 0 && *depth + 1 < max)
		rc = read_names(fd, true, &f.dirs, &f.n);
	if (rc == 0 && *depth == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct busyframe *nv = realloc(*v, nc * sizeof(*nv));
		if (nv == NULL) {
			rc = -ENOMEM;
			fsutil_names_free(f.dirs, f.n);
		} else {
			*v = nv;
			*cap = nc;
		}
	}
	if (rc != 0) {
		close(fd);
		return rc;
	}
	(*v)[(*depth)++] = f;
	return 0;
}

size_t fsutil_fd_share(size_t most)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / 4 < most)
		return (size_t)(rl.rlim_cur / 4);
	return most;
}

/* How deep fsutil_tree_busy() goes: a descriptor a level. */
static size_t busy_max_depth(void)
{
	size_t n = fsutil_fd_share(RMTREE_MAX_DEPTH);

	return n > 0 ? n : 1;
}

int fsutil_tree_busy(int dirfd, int64_t since_ns, uint64_t ahead_ms)
{
	struct busyframe *v = NULL;
	size_t depth = 0, cap = 0, max = busy_max_depth();
	struct stat top;
	int rc = fstat(dirfd, &top) < 0 ? -errno : 0;
	int fd = rc == 0 ? openat(dirfd, ".", O_RDONLY | O_DIRECTORY |
							O_CLOEXEC)
			 : -1;

	if (rc == 0)
		rc = fd < 0 ? -errno
			    : busy_push(&v, &depth, &cap, max, fd,
					top.st_dev, since_ns, ahead_ms);
	while (rc == 0 && depth > 0) {
		struct busyframe *f = &v[depth - 1];
		if (f->next == f->n) {
			close(f->fd);
			fsutil_names_free(f->dirs, f->n);
			depth--;
			continue;
		}
		/* One name at a time from its parent: no cost that grows
		 * with the depth, and no link followed. */
		fd = openat(f->fd, f->dirs[f->next++],
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK |
				    O_CLOEXEC);
		if (fd >= 0)
			rc = busy_push(&v, &depth, &cap, max, fd, top.st_dev,
				       since_ns, ahead_ms);
		else if (errno == ENOENT)
			rc = 1; /* removed while the tree was read */
		/* Not a directory after all, a link, one closed to us, or
		 * no descriptor left for it: not looked into. */
		else if (errno != ENOTDIR && errno != ELOOP &&
			 errno != EACCES && errno != EMFILE && errno != ENFILE)
			rc = -errno;
	}
	for (; depth > 0; depth--) {
		close(v[depth - 1].fd);
		fsutil_names_free(v[depth - 1].dirs, v[depth - 1].n);
	}
	free(v);
	return rc;
}

/* Names [from, to) of the directory fd (whose stat is *in), removed as
 * fsutil_rmtree_in() removes each; rc: the first failure. */
struct rm_part {
	int fd;
	const struct stat *in;
	char **names;
	size_t from, to;
	int rc;
};

static void *rm_part_run(void *arg)
{
	struct rm_part *r = arg;

	for (size_t i = r->from; i < r->to; i++) {
		int rc = fsutil_rmtree_in(r->fd, r->in, r->names[i]);
		if (rc < 0 && r->rc == 0)
			r->rc = rc;
	}
	return NULL;
}

/* Fewer names at the top than this, and one thread removes them all. */
#define RMTREE_HALVES_MIN 16

int fsutil_rmtree_halves(int dirfd, const char *name)
{
	struct rmframe *v = NULL;
	size_t depth = 0, cap = 0;
	struct stat here;
	pthread_t t;

	/* Not a directory, or not one to enter (or not as root): as one
	 * thread does it. */
	if (fstat(dirfd, &here) < 0 || fsutil_ours_but_open(&here) ||
	    rm_push(&v, &depth, &cap, dirfd, &here, name) < 0 || depth == 0) {
		free(v);
		return fsutil_rmtree(dirfd, name);
	}
	struct rmframe *f = &v[0];
	struct rm_part a = {.fd = f->fd, .in = &f->st, .names = f->names,
			    .to = f->n / 2};
	struct rm_part b = a;
	b.from = a.to;
	b.to = f->n;
	bool two = f->n >= RMTREE_HALVES_MIN &&
		   thread_start_beside(&t, rm_part_run, &b) == 0;
	if (!two)
		a.to = f->n;
	rm_part_run(&a);
	if (two)
		pthread_join(t, NULL);
	close(f->fd);
	int rc = a.rc ? a.rc : two ? b.rc : 0;
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT &&
	    rc == 0)
		rc = -errno;
	free(f->name);
	fsutil_names_free(f->names, f->n);
	free(v);
	return rc;
}

static int copy_rw(int in, int out, uint64_t size, uint64_t *copied)
{
	size_t bufsize = size < CMP_CHUNK ? (size_t)size + 1 : CMP_CHUNK;
	char *buf = malloc(bufsize);
	if (buf == NULL)
		return -ENOMEM;
	int rc = 0;
	while (*copied < size) {
		uint64_t want = size - *copied;
		if (want > bufsize)
			want = bufsize;
		ssize_t r = read(in, buf, (size_t)want);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		char *p = buf;
		while (r > 0) {
			ssize_t w = write(out, p, (size_t)r);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				goto out;
			}
			p += w;
			r -= w;
			*copied += (uint64_t)w;
		}
	}
out:
	free(buf);
	return rc;
}

/* What was copied to `out` from `off` since *sent (`done` bytes in
 * all) sent on to the disk once it makes WRITEBACK_CHUNK, or the copy
 * is `last`: only started, not waited for (a failure shows in the flush
 * that follows, as it would without this). */
static void write_back(int out, off_t off, uint64_t done, bool last,
		       uint64_t *sent)
{
	if (done == *sent || (done - *sent < WRITEBACK_CHUNK && !last))
		return;
	(void)sync_file_range(out, off + (off_t)*sent, (off_t)(done - *sent),
			      SYNC_FILE_RANGE_WRITE);
	*sent = done;
}

/* Copies len bytes at off from in to out, at the same offset: in the
 * kernel when it can, else through a buffer.  *done says how many.
 * With `writeback`, each WRITEBACK_CHUNK copied is sent on to the disk
 * at once. */
static int copy_range(int in, int out, off_t off, uint64_t len,
		      bool writeback, uint64_t *done)
{
	off_t oin = off, oout = off;
	char *buf = NULL;
	int rc = 0;
	uint64_t chunk = writeback ? WRITEBACK_CHUNK : COPY_CHUNK * 64ull;
	uint64_t sent = 0;

	*done = 0;
	while (*done < len && rc == 0) {
		uint64_t want = len - *done;
		if (want > chunk)
			want = chunk;
		ssize_t r = -1;
		if (buf == NULL) {
			r = copy_file_range(in, &oin, out, &oout, (size_t)want, 0);
			if (r < 0 && errno != EINTR && errno != EIO &&
			    errno != ENOSPC && errno != EDQUOT) {
				/* Not between these files: a buffer then. */
				buf = malloc(CMP_CHUNK);
				if (buf == NULL)
					rc = -ENOMEM;
				continue;
			}
		} else {
			r = pread(in, buf, want < CMP_CHUNK ? want : CMP_CHUNK,
				  oin);
			for (ssize_t w = 0, k; r > 0 && w < r; w += k) {
				k = pwrite(out, buf + w, (size_t)(r - w), oout + w);
				if (k < 0 && errno == EINTR)
					k = 0;
				else if (k <= 0) {
					rc = k < 0 ? -errno : -EIO;
					break;
				}
			}
			if (r > 0 && rc == 0) {
				oin += r;
				oout += r;
			}
		}
		if (rc < 0)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = -errno;
		else if (r == 0)
			break; /* the input ended early */
		else
			*done += (uint64_t)r;
		if (r > 0 && writeback)
			write_back(out, off, *done, *done == len, &sent);
	}
	free(buf);
	return rc;
}

int fsutil_copy(int in, int out, uint64_t size, bool writeback,
		uint64_t *copied)
{
	off_t pos = 0;

	*copied = 0;
	writeback = writeback && size >= WRITEBACK_CHUNK;
	/* Small files: two syscalls beat the setup cost of the in-kernel
	 * copy paths and of looking for holes. */
	if (size <= CMP_CHUNK)
		return copy_rw(in, out, size, copied);
	/* Only the data: a sparse file stays as sparse (a 100 GiB file of
	 * holes must not fill the target's file system). */
	while ((uint64_t)pos < size) {
		off_t d = lseek(in, pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break; /* a hole to the end */
		off_t h = d < 0 ? (off_t)size : lseek(in, d, SEEK_HOLE);
		if (d < 0 && pos == 0 && (errno == EINVAL || errno == EOPNOTSUPP))
			d = 0; /* no hole support: one data range */
		else if (d < 0 || h < 0)
			return -errno;
		if ((uint64_t)h > size)
			h = (off_t)size;
		uint64_t done = 0;
		int rc = copy_range(in, out, d, (uint64_t)(h - d), writeback,
				    &done);
		if (rc < 0)
			return rc;
		if (done < (uint64_t)(h - d)) {
			*copied = (uint64_t)d + done; /* ended early */
			return 0;
		}
		pos = h;
	}
	if (ftruncate(out, (off_t)size) < 0)
		return -errno;
	*copied = size;
	return 0;
}

static ssize_t read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static ssize_t pread_full(int fd, char *buf, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Compares [from, to) of a and b. */
static int same_range(int a, int b, off_t from, off_t to, char *ba, char *bb,
		      bool *same)
{
	*same = true;
	while (from < to && *same) {
		size_t n = (size_t)(to - from) < CMP_CHUNK ? (size_t)(to - from)
							     : CMP_CHUNK;
		ssize_t ra = pread_full(a, ba, n, from);
		ssize_t rb = pread_full(b, bb, n, from);
		if (ra < 0 || rb < 0)
			return -errno;
		*same = ra == rb && memcmp(ba, bb, (size_t)ra) == 0;
		if (ra == 0)
			break;
		from += ra;
	}
	return 0;
}

/* Where the next data of fd at or after pos is (end when none), or -1. */
static off_t next_data(int fd, off_t pos, off_t end)
{
	off_t d = lseek(fd, pos, SEEK_DATA);
	if (d < 0 && errno == ENXIO)
		return end;
	return d < 0 ? -1 : (d < end ? d : end);
}

/* Two files of `size` bytes, data range by data range: holes in both
 * are equal without being read. */
static int same_sparse(int a, int b, off_t size, char *ba, char *bb,
		       bool *same)
{
	off_t pos = 0;

	*same = true;
	while (pos < size && *same) {
		off_t da = next_data(a, pos, size), db = next_data(b, pos, size);
		if (da < 0 || db < 0) /* no hole support: all of it */
			return same_range(a, b, pos, size, ba, bb, same);
		off_t m = da < db ? da : db;
		if (m > pos) {
			pos = m;
			continue;
		}
		off_t ea = da == pos ? lseek(a, pos, SEEK_HOLE) : da;
		off_t eb = db == pos ? lseek(b, pos, SEEK_HOLE) : db;
		if (ea < 0 || eb < 0)
			return -errno;
		off_t e = ea < eb ? ea : eb;
		if (e > size)
			e = size;
		int rc = same_range(a, b, pos, e, ba, bb, same);
		if (rc < 0)
			return rc;
		pos = e;
	}
	return 0;
}

int fsutil_same_buffer(int fd, const void *buf, size_t len, bool *same)
{
	const char *p = buf;
	char *chunk;
	struct stat st;
	int rc = 0;

	*same = false;
	/* A live file of another size (or type) differs: no read needed. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != (uint64_t)len)
		return 0;
	chunk = malloc(CMP_CHUNK);
	if (chunk == NULL)
		return -ENOMEM;
	for (;;) {
		ssize_t r = read_full(fd, chunk, CMP_CHUNK);
		if (r < 0) {
			rc = -errno;
			break;
		}
		if ((size_t)r > len || memcmp(chunk, p, (size_t)r) != 0)
			break;
		if (r == 0) {
			*same = len == 0;
			break;
		}
		p += r;
		len -= (size_t)r;
	}
	free(chunk);
	return rc;
}

int fsutil_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int fsutil_same_content(int a, int b, bool *same)
{
	char *ba = malloc(CMP_CHUNK), *bb = malloc(CMP_CHUNK);
	struct stat sa, sb;
	int rc = 0;

	*same = false;
	if (ba == NULL || bb == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	/* Only regular files compare: a directory or a FIFO put in a
	 * file's place (a held one never ends) differs, unread. */
	if (!S_ISREG(sa.st_mode) || !S_ISREG(sb.st_mode) ||
	    sa.st_size != sb.st_size)
		goto out;
	if (sa.st_size > (off_t)CMP_CHUNK) {
		rc = same_sparse(a, b, sa.st_size, ba, bb, same);
		goto out;
	}
	for (;;) {
		ssize_t ra = read_full(a, ba, CMP_CHUNK);
		if (ra < 0) {
			rc = -errno;
			break;
		}
		ssize_t rb = read_full(b, bb, CMP_CHUNK);
		if (rb < 0) {
			rc = -errno;
			break;
		}
		if (ra != rb || memcmp(ba, bb, (size_t)ra) != 0)
			break;
		if (ra == 0) {
			*same = true;
			break;
		}
	}
out:
	free(ba);
	free(bb);
	return rc;
}

int fsutil_readlinkat(int dirfd, const char *name, char **out)
{
	size_t cap = 128;

	for (;;) {
		char *buf = malloc(cap);
		if (buf == NULL)
			return -ENOMEM;
		ssize_t n = readlinkat(dirfd, name, buf, cap);
		if (n < 0) {
			int err = errno;
			free(buf);
			return -err;
		}
		if ((size_t)n < cap) {
			buf[n] = '\0';
			*out = buf;
			return 0;
		}
		free(buf);
		if (cap > (size_t)PATH_MAX * 16)
			return -ENAMETOOLONG;
		cap *= 2;
	}
}

int fsutil_fsync(int fd)
{
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int fsutil_tmp_create(int dfd, const char *tmp, mode_t mode,
		      const char **step)
{
	*step = "remove";
	if (unlinkat(dfd, tmp, 0) < 0 && errno != ENOENT)
		return -errno;
	*step = "create";
	int fd = openat(dfd, tmp,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			mode);
	if (fd < 0)
		return -errno;
	*step = "chmod";
	if (fchmod(fd, mode) < 0) {
		int rc = -errno;
		close(fd);
		unlinkat(dfd, tmp, 0);
		return rc;
	}
	return fd;
}

int fsutil_tmp_commit(int dfd, const char *tmp, const char *name, int fd,
		      int rc, const char **step)
{
	if (close(fd) < 0 && rc == 0) {
		*step = "close";
		rc = -errno;
	}
	if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0) {
		*step = "rename";
		rc = -errno;
	}
	if (rc < 0)
		unlinkat(dfd, tmp, 0);
	return rc;
}

int fsutil_write_atomic(int dfd, const char *tmp, const char *name,
			const void *data, size_t len, mode_t mode,
			const char **step)
{
	const char *p = data;
	int fd = fsutil_tmp_create(dfd, tmp, mode, step);
	int rc = 0;

	if (fd < 0)
		return fd;
	*step = "write";
	while (rc == 0 && len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		p += w;
		len -= (size_t)w;
	}
	return fsutil_tmp_commit(dfd, tmp, name, fd, rc, step);
}

pid_t fsutil_flock_holder(int fd)
{
	struct stat st;
	pid_t holder = fstat(fd, &st) < 0 ? 0 : fsutil_flock_holder_of(&st);

	return holder > 0 ? holder : 0;
}

/* File `name` of the process of /proc/PID (`pfd`), to read by lines;
 * NULL when it cannot be opened (the process is gone, say). */
static FILE *proc_open(int pfd, const char *name)
{
	int fd = openat(pfd, name, O_RDONLY | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

	if (f == NULL && fd >= 0)
		close(fd);
	return f;
}

/* Whether the process of /proc/PID (`pfd`) runs as root or us: its
 * effective uid, from /proc/PID/status (the owner of /proc/PID is root
 * for a process that made itself undumpable). */
static bool runs_trusted(int pfd)
{
	char *line = NULL;
	size_t cap = 0;
	unsigned long ruid, euid;
	bool trusted = false;
	FILE *f = proc_open(pfd, "status");

	if (f == NULL)
		return false;
	while (getline(&line, &cap, f) > 0)
		if (sscanf(line, "Uid: %lu %lu", &ruid, &euid) == 2) {
			trusted = fsutil_trusted_uid((uid_t)euid);
			break;
		}
	free(line);
	fclose(f);
	return trusted;
}

/* What /proc/PID/fd/N (`name` in `dfd`) is open on: the file itself,
 * removed or not, without opening it (a FIFO cannot block) or waiting
 * for a network file system's server. */
static int fd_stat(int dfd, const char *name, struct stat *st)
{
	struct statx x;

	if (statx(dfd, name, AT_STATX_DONT_SYNC,
		  STATX_TYPE | STATX_MODE | STATX_UID | STATX_INO, &x) < 0)
		return -errno;
	st->st_mode = x.stx_mode;
	st->st_uid = x.stx_uid;
	st->st_ino = x.stx_ino;
	st->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	return 0;
}

/* Whether descriptor `name` of the process of /proc/PID (`pfd`) holds a
 * flock(2) lock: its fdinfo lists the locks held through it. */
static bool fd_flocked(int pfd, const char *name)
{
	char path[8 + NAME_MAX], *line = NULL;
	size_t cap = 0;
	bool locked = false;
	FILE *f;

	snprintf(path, sizeof(path), "fdinfo/%s", name);
	if ((f = proc_open(pfd, path)) == NULL)
		return false;
	while (!locked && getline(&line, &cap, f) > 0)
		locked = strncmp(line, "lock:", 5) == 0 &&
			 strstr(line, " FLOCK ") != NULL;
	free(line);
	fclose(f);
	return locked;
}

/* What a lock holder is looked for by: the file locked (st: what statx
 * tells of it), and the directory it must have open too, if any. */
struct lock_match {
	bool (*file)(int fddir, const char *name, const struct stat *st,
		     const struct lock_match *m);
	const struct stat *dir; /* NULL: any */
	const struct stat *of;	/* a file, or a lock file's target */
	const char *id;		/* what that lock file says */
	ino_t skip;		/* the lock file named now; 0: none */
};

/* Whether the process of /proc/PID (`pfd`) holds a lock `m` looks for.
 * 1, 0, or -errno when that cannot be told for want of memory or
 * descriptors. */
static int holds_lock(int pfd, const struct lock_match *m)
{
	bool has_dir = m->dir == NULL, has_lock = false;
	struct stat st = {0};
	struct dirent *e;
	DIR *d = fsutil_opendir_at(pfd, "fd");

	if (d == NULL) {
		int rc = errno;
		if (rc == EACCES || rc == EPERM)
			return -EACCES; /* not ours to look at */
		return rc == EMFILE || rc == ENFILE || rc == ENOMEM ? -rc : 0;
	}
	while ((!has_dir || !has_lock) && (e = readdir(d)) != NULL) {
		if (fd_stat(dirfd(d), e->d_name, &st) < 0)
			continue;
		if (!has_dir && S_ISDIR(st.st_mode) &&
		    st.st_dev == m->dir->st_dev && st.st_ino == m->dir->st_ino)
			has_dir = true;
		else if (!has_lock && m->file(dirfd(d), e->d_name, &st, m))
			has_lock = fd_flocked(pfd, e->d_name);
	}
	closedir(d);
	return has_dir && has_lock;
}

/* The first process of root's or ours but this one that holds a lock `m`
 * looks for, walking /proc: /proc/locks would be shorter, but each read
 * of it waits for an RCU grace period (4 to 20 ms here) and walks the
 * kernel's list of locks from its start, which any user can make long
 * (400,000 locks: 98 s).  0 when none is found or /proc cannot be read,
 * -errno when looking failed. */
static pid_t lock_holder(const struct lock_match *m)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t holder = 0;
	long self = (long)getpid();
	bool hidden = false;

	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while (holder == 0 && (e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == self)
			continue;
		int pfd = openat(dirfd(d), e->d_name,
				 O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0)
			continue; /* gone */
		int rc = runs_trusted(pfd) ? holds_lock(pfd, m) : 0;
		close(pfd);
		hidden |= rc == -EACCES;
		if (rc == -EACCES)
			rc = 0;
		holder = rc < 0 ? rc : rc ? (pid_t)pid : 0;
	}
	closedir(d);
	return holder == 0 && hidden ? -EACCES : holder;
}

static bool same_file(int fddir, const char *name, const struct stat *st,
		      const struct lock_match *m)
{
	(void)fddir;
	(void)name;
	return st->st_dev == m->of->st_dev && st->st_ino == m->of->st_ino;
}

pid_t fsutil_flock_holder_of(const struct stat *st)
{
	struct lock_match m = {.file = same_file, .of = st};
	pid_t holder = lock_holder(&m);

	return holder > 0 || holder == -EACCES ? holder : 0;
}

/* Whether the file open as `name` in `dfd` (/proc/PID/fd), a regular
 * file of inode `st`, says `id`: the lock file of this target, not some
 * other private file the process locked. */
static bool says_id(int dfd, const char *name, const struct stat *st,
		    const char *id)
{
	size_t len = strlen(id);
	char buf[FSUTIL_LOCK_ID_MAX];
	struct stat now;
	bool same = false;
	int fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (fstat(fd, &now) == 0 && S_ISREG(now.st_mode) &&
	    now.st_ino == st->st_ino)
		same = pread(fd, buf, sizeof(buf), 0) == (ssize_t)len &&
		       memcmp(buf, id, len) == 0;
	close(fd);
	return same;
}

/* A lock file of the target m->of other than the one named now: regular,
 * private to root or us as a lock file is, and saying so. */
static bool other_lock_file(int fddir, const char *name, const struct stat *st,
			    const struct lock_match *m)
{
	return S_ISREG(st->st_mode) && st->st_dev == m->of->st_dev &&
	       st->st_ino != m->skip && fsutil_trusted_uid(st->st_uid) &&
	       (st->st_mode & 0077) == 0 && says_id(fddir, name, st, m->id);
}

void fsutil_lock_id(const struct stat *dir, char *buf, size_t len)
{
	snprintf(buf, len, FSUTIL_LOCK_ID_PREFIX "%ju:%ju\n",
		 (uintmax_t)dir->st_dev, (uintmax_t)dir->st_ino);
}

pid_t fsutil_removed_lock_holder(const struct stat *dir, ino_t named)
{
	char id[FSUTIL_LOCK_ID_MAX];
	struct lock_match m = {.file = other_lock_file, .dir = dir, .of = dir,
			       .id = id, .skip = named};

	fsutil_lock_id(dir, id, sizeof(id));
	pid_t holder = lock_holder(&m);
	return holder == -EACCES ? 0 : holder;
}

char *fsutil_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *r;

	if (la == 0)
		return strdup(b);
	bool slash = a[la - 1] != '/'; /* "/" and "x" make "/x" */
	r = malloc(la + lb + 2);
	if (r == NULL)
		return NULL;
	memcpy(r, a, la);
	if (slash)
		r[la] = '/';
	memcpy(r + la + slash, b, lb + 1);
	return r;
}

/* ---- resolving a path that others may change ---- */

#define CHASE_MAX_HOPS 40

bool fsutil_trusted_uid(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

bool fsutil_ours_alone(const struct stat *st)
{
	return fsutil_trusted_uid(st->st_uid) && !(st->st_mode & 0022);
}

bool fsutil_ours_but_open(const struct stat *st)
{
	return fsutil_trusted_uid(st->st_uid) && (st->st_mode & 0022);
}

bool fsutil_may_enter(const struct stat *in, const struct stat *st)
{
	bool open = !fsutil_ours_alone(in);

	return !open ||
	       (st->st_uid == in->st_uid && st->st_gid == in->st_gid);
}

/* The groups of user `name` (own group `gid`), malloc'ed, *n of them;
 * NULL when they cannot be had. */
static gid_t *groups_of(const char *name, gid_t gid, int *n)
{
	gid_t *g = NULL;
	int cap = 32;

	for (int tries = 0; tries < 8; tries++) {
		gid_t *ng = realloc(g, (size_t)cap * sizeof(*g));
		if (ng == NULL)
			break;
		g = ng;
		*n = cap;
		if (getgrouplist(name, gid, g, n) >= 0)
			return g;
		cap = *n > cap ? *n : cap * 2;
	}
	free(g);
	return NULL;
}

bool fsutil_in_group(uid_t uid, gid_t gid)
{
	struct passwd pw, *found = NULL;
	size_t len = 1024;
	char *buf = NULL;
	bool in = false;
	int rc = ERANGE;

	while (rc == ERANGE && len <= (1u << 20)) {
		char *nb = realloc(buf, len);
		if (nb == NULL)
			break;
		buf = nb;
		rc = getpwuid_r(uid, &pw, buf, len, &found);
		len *= 2;
	}
	if (rc == 0 && found && pw.pw_gid == gid) {
		in = true;
	} else if (rc == 0 && found) {
		int n = 0;
		gid_t *g = groups_of(pw.pw_name, pw.pw_gid, &n);
		for (int i = 0; g && i < n && !in; i++)
			in = g[i] == gid;
		free(g);
	}
	free(buf);
	return in;
}

/* The tags of a POSIX ACL entry as the kernel stores them. */
enum {
	ACL_TAG_USER_OBJ = 0x01,
	ACL_TAG_USER = 0x02,
	ACL_TAG_GROUP_OBJ = 0x04,
	ACL_TAG_GROUP = 0x08,
	ACL_TAG_MASK = 0x10,
	ACL_TAG_OTHER = 0x20,
};

/* Little-endian, as the xattr keeps it. */
static unsigned acl_u16(const unsigned char *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* The xattr's entries (header, then tag, perm and id in 8 bytes each)
 * as struct fsutil_acl says. */
static void acl_parse(const unsigned char *v, size_t n, struct fsutil_acl *a)
{
	unsigned mask = 07;

	if (n < 4 || (n - 4) % 8 != 0 || acl_u16(v) != 2 || v[2] || v[3]) {
		*a = (struct fsutil_acl){.all = 0, .group = 0, .named = 07};
		return;
	}
	for (size_t i = 4; i < n; i += 8)
		if (acl_u16(v + i) == ACL_TAG_MASK)
			mask = acl_u16(v + i + 2) & 07;
	*a = (struct fsutil_acl){.all = 07, .group = 07, .named = 0};
	for (size_t i = 4; i < n; i += 8) {
		unsigned tag = acl_u16(v + i), perm = acl_u16(v + i + 2) & 07;
		if (tag == ACL_TAG_USER || tag == ACL_TAG_GROUP)
			a->named |= perm & mask;
		if (tag == ACL_TAG_USER || tag == ACL_TAG_GROUP_OBJ)
			a->group &= perm & mask;
		if (tag == ACL_TAG_USER || tag == ACL_TAG_GROUP ||
		    tag == ACL_TAG_GROUP_OBJ)
			a->all &= perm & mask;
		else if (tag == ACL_TAG_OTHER)
			a->all &= perm;
	}
}

int fsutil_acl_strip(int fd, bool *had)
{
	static const char *const names[] = {"system.posix_acl_default",
					    "system.posix_acl_access"};

	*had = false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		/* Looked for first: on a read-only mount, none to remove
		 * is no error. */
		if (fgetxattr(fd, names[i], NULL, 0) < 0)
			continue;
		if (fremovexattr(fd, names[i]) < 0 && errno != ENODATA)
			return -errno;
		*had = true;
	}
	return 0;
}

int fsutil_acl_read(int fd, struct fsutil_acl *a)
{
	/* Room for far more entries than a file system keeps. */
	unsigned char v[4 + 8 * 512];
	char p[40];

	*a = (struct fsutil_acl){.all = 07, .group = 07, .named = 0};
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = getxattr(p, "system.posix_acl_access", v, sizeof(v));
	if (n < 0 && (errno == ENODATA || errno == EOPNOTSUPP))
		return 0; /* none: the mode says it all */
	if (n < 0 && errno != ERANGE)
		return -errno;
	acl_parse(v, n < 0 ? 0 : (size_t)n, a);
	return 0;
}

const char *fsutil_writers(mode_t mode)
{
	if ((mode & 0022) == 0022)
		return "its group and others";
	return mode & 0020 ? "its group" : "others";
}

/* Whether only root or we can make a name in the directory `fd`. */
static bool names_ours(int fd, const struct stat *st)
{
	struct statvfs vfs;

	if (!fsutil_trusted_uid(st->st_uid))
		return false;
	if ((st->st_mode & 0022) == 0)
		return true;
	return fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY);
}

bool fsutil_trusted_dir(int fd, const struct stat *st)
{
	return names_ours(fd, st) ||
	       (fsutil_trusted_uid(st->st_uid) && (st->st_mode & S_ISVTX));
}

struct chase {
	char *done;	/* the directory reached, as a path, for messages */
	char *todo;	/* what is left to resolve */
	int fd;		/* the directory reached (O_PATH) */
	struct stat st; /* its metadata */
	unsigned hops;
	/* The first directory looked in whose names someone else can
	 * change, and its metadata: below it, they choose what a name is
	 * (a directory of root's, holding a link of root's, renamed in
	 * from beside it), so no link there is followed.  NULL: none. */
	char *swayed;
	struct stat swayed_st;
	char **err;
};

static int chase_fail(struct chase *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int chase_fail(struct chase *c, int rc, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	if (c->err == NULL)
		return rc;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(*c->err);
	*c->err = m;
	return rc;
}

/* "dir/name" for messages, without doubling the root's slash. */
static char *chase_where(const struct chase *c, const char *name)
{
	char *r;

	if (strcmp(c->done, "/") == 0)
		return asprintf(&r, "/%s", name) < 0 ? NULL : r;
	return fsutil_join(c->done, name);
}

static int chase_fail_name(struct chase *c, int rc, const char *name)
{
	char *w = chase_where(c, name);

	rc = chase_fail(c, rc, "%s: %s", w ? w : name, strerror(-rc));
	free(w);
	return rc;
}

/* Moves to the directory `fd` (which it takes), known as `where`. */
static int chase_enter(struct chase *c, int fd, char *where)
{
	int rc = 0;

	if (where == NULL)
		rc = -ENOMEM;
	else if (fstat(fd, &c->st) < 0)
		rc = -errno;
	if (rc < 0) {
		close(fd);
		free(where);
		return rc;
	}
	close(c->fd);
	c->fd = fd;
	free(c->done);
	c->done = where;
	return 0;
}

static int chase_todo(struct chase *c, const char *a, const char *b)
{
	char *t;

	if (asprintf(&t, "%s%s%s", a, *a && *b ? "/" : "", b) < 0)
		return -ENOMEM;
	free(c->todo);
	c->todo = t;
	return 0;
}

/* Replaces the symlink `name` (opened O_PATH as `lfd`) by what it says,
 * in front of `rest`, if it may be followed. */
static int chase_link(struct chase *c, int lfd, const struct stat *lst,
		      const char *name, const char *rest)
{
	char *where = chase_where(c, name), *t = NULL;
	int rc = 0;

	if (where == NULL)
		return -ENOMEM;
	if (!fsutil_trusted_uid(lst->st_uid))
		rc = chase_fail(c, -EPERM,
				"symlink %s is owned by uid %u; refusing to "
				"follow it",
				where, (unsigned)lst->st_uid);
	else if (!fsutil_trusted_dir(c->fd, &c->st))
		rc = chase_fail(c, -EPERM,
				"symlink %s is in a directory that %s can "
				"change; refusing to follow it",
				where,
				fsutil_trusted_uid(c->st.st_uid)
					? "other users"
					: "another user");
	else if (c->swayed)
		rc = chase_fail(c, -EPERM,
				"symlink %s is below %s, which %s can change; "
				"refusing to follow it",
				where, c->swayed,
				fsutil_trusted_uid(c->swayed_st.st_uid)
					? "other users"
					: "another user");
	else if (++c->hops > CHASE_MAX_HOPS)
		rc = chase_fail(c, -ELOOP, "%s: %s", where, strerror(ELOOP));
	else if ((rc = fsutil_readlinkat(lfd, "", &t)) < 0)
		rc = chase_fail(c, rc, "%s: %s", where, strerror(-rc));
	if (rc == 0 && t[0] == '/') {
		int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		rc = fd < 0 ? -errno : chase_enter(c, fd, strdup("/"));
	}
	if (rc == 0)
		rc = chase_todo(c, t, rest);
	free(t);
	free(where);
	return rc;
}

DIR *fsutil_opendir_at(int dfd, const char *name)
{
	int fd = openat(dfd, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (d == NULL && fd >= 0) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return d;
}

bool fsutil_dir_empty(int fd)
{
	DIR *d = fsutil_opendir_at(fd, ".");
	struct dirent *de;
	bool empty = d != NULL;

	while (empty && (de = readdir(d)) != NULL)
		empty = strcmp(de->d_name, ".") == 0 ||
			strcmp(de->d_name, "..") == 0;
	if (d)
		closedir(d);
	return empty;
}

bool fsutil_made_private(int fd, struct stat *st)
{
	return fstat(fd, st) == 0 && S_ISDIR(st->st_mode) &&
	       st->st_uid == geteuid() && (st->st_mode & 05077) == 0;
}

/* Calls `at` for each directory above the one open as `fd` (its
 * metadata in *st), by "..", until `at` returns other than 0 (that,
 * then) or the root, its own parent, is passed (0); -ELOOP past
 * RMTREE_MAX_DEPTH levels, or another negative errno. */
int fsutil_climb(int fd, const struct stat *st,
		 int (*at)(int fd, const struct stat *st, void *arg), void *arg)
{
	int cur = fcntl(fd, F_DUPFD_CLOEXEC, 0), rc = cur < 0 ? -errno : 0;
	struct stat cst = *st, ust;
	bool root = false;

	for (unsigned n = 0; rc == 0 && !root; n++) {
		int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (up < 0 || fstat(up, &ust) < 0)
			rc = -errno;
		else if (ust.st_dev == cst.st_dev && ust.st_ino == cst.st_ino)
			root = true;
		else if (n == RMTREE_MAX_DEPTH)
			rc = -ELOOP;
		else
			rc = at(up, &ust, arg);
		close(cur);
		cur = up;
		cst = ust;
	}
	if (cur >= 0)
		close(cur);
	return rc;
}

/* 1 when `st` is the directory `arg` points to the device and inode of. */
static int is_dir_id(int fd, const struct stat *st, void *arg)
{
	const uint64_t *id = arg;

	(void)fd;
	return (uint64_t)st->st_dev == id[0] && (uint64_t)st->st_ino == id[1];
}

int fsutil_within(int fd, uint64_t dev, uint64_t ino)
{
	uint64_t id[2] = {dev, ino};
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	return is_dir_id(fd, &st, id) ? 1 : fsutil_climb(fd, &st, is_dir_id, id);
}

/* Whether the directory open as `fd`, found where one was just made, is
 * that one, or as harmless: ours, private and empty.  Someone who can
 * write where it was made may have moved another there meanwhile, which
 * the 0755 the caller then gives a directory it made must not open. */
static bool made_by_us(int fd)
{
	struct stat st;

	return fsutil_made_private(fd, &st) && fsutil_dir_empty(fd);
}

/* The last component, opened with the caller's flags (and created first
 * when asked and missing): an fd, or a negative errno. */
static int chase_last(struct chase *c, const char *name, unsigned how,
		      int flags, bool *created)
{
	bool made = false;

	for (int tries = 0; tries < 2; tries++) {
		int fd = openat(c->fd, name, flags | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			if (made && created)
				*created = made_by_us(fd);
			return fd;
		}
		if (errno != ENOENT || !(how & FSUTIL_CHASE_MKDIR))
			return -errno;
		if (mkdirat(c->fd, name, 0700) == 0)
			made = true;
		else if (errno != EEXIST)
			return -errno;
	}
	return -ENOENT;
}

/* The directory reached, for messages: by its own path, for a relative
 * one ("./u" or "."); NULL when memory ran out. */
static char *chase_dir_name(const struct chase *c)
{
	char *real = c->done[0] == '/' ? NULL : fsutil_fd_path(c->fd);

	return real ? real : strdup(c->done);
}

/* -EPERM: the directory reached is one that someone else can write, who
 * can `what` by it. */
static int chase_distrust(struct chase *c, const char *what)
{
	char *real = chase_dir_name(c);
	const char *dir = real ? real : c->done;
	int rc;

	if (!fsutil_trusted_uid(c->st.st_uid))
		rc = chase_fail(c, -EPERM,
				"directory %s is owned by uid %u, who can %s",
				dir, (unsigned)c->st.st_uid, what);
	else
		rc = chase_fail(c, -EPERM,
				"directory %s is writable by %s (mode %04o), "
				"who can %s",
				dir, fsutil_writers(c->st.st_mode),
				(unsigned)(c->st.st_mode & 07777), what);
	free(real);
	return rc;
}

/* For FSUTIL_CHASE_TRUSTED: the directory reached is one whose names
 * only root or we can change. */
static int chase_trusted(struct chase *c)
{
	return fsutil_trusted_dir(c->fd, &c->st)
		       ? 0
		       : chase_distrust(c, "change what the path leads to");
}

/* For FSUTIL_CHASE_PLACED: the directory reached, which holds the last
 * component, is one where only root or we can make a name. */
static int chase_placed(struct chase *c)
{
	return names_ours(c->fd, &c->st)
		       ? 0
		       : chase_distrust(c, "move any file of root's into it");
}

/* One named component: 0 to go on, 1 when *out holds the final fd. */
static int chase_name(struct chase *c, const char *name, const char *rest,
		      unsigned how, int flags, bool *created, int *out)
{
	bool last = *rest == '\0';
	struct stat st;
	int rc;

	if ((how & FSUTIL_CHASE_TRUSTED) && (rc = chase_trusted(c)) < 0)
		return rc;
	if (c->swayed == NULL && !fsutil_trusted_dir(c->fd, &c->st)) {
		if ((c->swayed = chase_dir_name(c)) == NULL)
			return -ENOMEM;
		c->swayed_st = c->st;
	}
	if (last) {
		int fd = chase_last(c, name, how, flags, created);
		if (fd >= 0 && (how & FSUTIL_CHASE_PLACED)) {
			rc = fstat(fd, &st) < 0	   ? chase_fail_name(c, -errno, name)
			     : S_ISREG(st.st_mode) ? chase_placed(c)
						   : 0;
			if (rc < 0) {
				close(fd);
				return rc;
			}
		}
		if (fd >= 0) {
			*out = fd;
			return 1;
		}
		if (fd != -ELOOP && fd != -ENOTDIR)
			return chase_fail_name(c, fd, name);
	}
	/* A symlink, or on the way: look before going on. */
	int fd = openat(c->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return chase_fail_name(c, -errno, name);
	if (fstat(fd, &st) < 0) {
		rc = chase_fail_name(c, -errno, name);
	} else if (S_ISLNK(st.st_mode) && last && (how & FSUTIL_CHASE_NOFOLLOW)) {
		char *w = chase_where(c, name);
		rc = chase_fail(c, -ELOOP, "%s is a symbolic link", w ? w : name);
		free(w);
	} else if (S_ISLNK(st.st_mode)) {
		/* A link for the file is held to where the file would be. */
		rc = last && (how & FSUTIL_CHASE_PLACED) ? chase_placed(c) : 0;
		if (rc == 0)
			rc = chase_link(c, fd, &st, name, rest);
	} else if (last || !S_ISDIR(st.st_mode)) {
		rc = chase_fail_name(c, -ENOTDIR, name);
	} else {
		rc = chase_enter(c, fd, chase_where(c, name));
		if (rc == 0)
			rc = chase_todo(c, "", rest);
		return rc;
	}
	close(fd);
	return rc;
}

/* Resolves the next component of c->todo: 0 to go on, 1 when *out holds
 * the final fd, or a negative errno. */
static int chase_next(struct chase *c, unsigned how, int flags, bool *created,
		      int *out)
{
	const char *p = c->todo;

	while (*p == '/')
		p++;
	size_t n = strcspn(p, "/");
	const char *rest = p + n;
	while (*rest == '/')
		rest++;
	bool dot = n == 0 || (n == 1 && p[0] == '.');
	bool dotdot = n == 2 && p[0] == '.' && p[1] == '.';
	int rc = 0;

	if (!dot && !dotdot) {
		char *name = strndup(p, n);
		if (name == NULL)
			return -ENOMEM;
		rc = chase_name(c, name, rest, how, flags, created, out);
		free(name);
		return rc;
	}
	if (dotdot) {
		int fd = openat(c->fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		char *up = strdup(c->done), *s = up ? strrchr(up, '/') : NULL;
		if (s)
			s[s == up] = '\0';
		rc = fd < 0 ? -errno : chase_enter(c, fd, up);
		if (fd < 0)
			free(up);
	}
	if (rc == 0 && *rest == '\0') {
		/* The path ends at the directory reached. */
		int fd = openat(c->fd, ".", flags | O_CLOEXEC);
		if (fd < 0)
			return chase_fail(c, -errno, "%s: %s", c->done,
					  strerror(errno));
		*out = fd;
		return 1;
	}
	return rc == 0 ? chase_todo(c, "", rest) : rc;
}

/* For fsutil_climb(): a directory above, refused (logged in c's error) unless
 * only root or we can change it. */
static int above_trusted(int fd, const struct stat *st, void *arg)
{
	const struct chase *c = arg;
	struct chase up = {.err = c->err, .fd = fd, .st = *st};

	if (fsutil_trusted_dir(fd, st))
		return 0;
	up.done = fsutil_fd_path(fd);
	int rc = up.done ? chase_distrust(&up, "change what the path leads to")
			 : -ENOMEM;
	free(up.done);
	return rc;
}

/* For fsutil_climb(): the first directory above the working directory
 * whose names someone else can change, as c->swayed. */
static int above_swayed(int fd, const struct stat *st, void *arg)
{
	struct chase *c = arg;

	if (fsutil_trusted_dir(fd, st))
		return 0;
	c->swayed = fsutil_fd_path(fd);
	if (c->swayed == NULL) /* no /proc */
		c->swayed = strdup("a directory above the working one");
	c->swayed_st = *st;
	return c->swayed ? 1 : -ENOMEM;
}

/* A relative path looks no name up in the directories above the working
 * directory (`c`), as it does in those of an absolute path, but whoever
 * can change one of them chose what "." is.  With FSUTIL_CHASE_TRUSTED
 * they must be ones only root or we can change (above_trusted); else,
 * below one that is not, as below one on the way, no link is followed
 * (above_swayed). */
static int chase_above(struct chase *c, unsigned how)
{
	int rc = fsutil_climb(c->fd, &c->st,
			      how & FSUTIL_CHASE_TRUSTED ? above_trusted
							 : above_swayed,
			      c);

	return rc < 0 ? rc : 0;
}

int fsutil_chase(const char *path, unsigned how, int flags, bool *created,
		 char **err)
{
	bool abs = path[0] == '/';
	struct chase c = {.err = err};
	int fd = -1, rc;

	if (created)
		*created = false;
	if (*path == '\0')
		return chase_fail(&c, -ENOENT, "empty path");
	c.fd = open(abs ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c.fd < 0)
		return -errno;
	c.done = strdup(abs ? "/" : ".");
	c.todo = strdup(path);
	rc = c.done && c.todo ? 0 : -ENOMEM;
	if (rc == 0 && fstat(c.fd, &c.st) < 0)
		rc = -errno;
	if (rc == 0 && !abs)
		rc = chase_above(&c, how);
	while (rc == 0)
		rc = chase_next(&c, how, flags, created, &fd);
	close(c.fd);
	free(c.done);
	free(c.todo);
	free(c.swayed);
	return rc == 1 ? fd : rc;
}

const char *fsutil_chase_why(const char *why, const char *path, int rc)
{
	size_t n = strlen(path);

	if (why == NULL)
		return strerror(-rc);
	if (strncmp(why, path, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
		return why + n + 2;
	return why;
}

const char *fsutil_chase_dir_why(const char *why, const char *path, int rc)
{
	struct stat st;

	if (rc == -ENOTDIR && lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
		return "not a directory (a file is in its place, say); move "
		       "it away";
	return fsutil_chase_why(why, path, rc);
}

char *fsutil_fd_path(int fd)
{
	char proc[64], *r = NULL;

	/* What the descriptor is, not what the name leads to now. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (fsutil_readlinkat(AT_FDCWD, proc, &r) == 0 && r[0] == '/')
		return r;
	free(r);
	errno = ENOENT;
	return NULL;
}
