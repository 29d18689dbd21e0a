#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fsutil.h"

#define COPY_CHUNK (1u << 20)
#define CMP_CHUNK (64u * 1024)

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

static int rmtree_dir(int parent, const char *name)
{
	int fd = openat(parent, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;

	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700)
		(void)fchmod(fd, (st.st_mode & 07777) | 0700);

	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int err = errno;
		close(fd);
		return -err;
	}
	int rc = 0;
	struct dirent *de;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL) {
			if (errno != 0 && rc == 0)
				rc = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0 ||
			    errno == ENOENT)
				continue;
			if (errno != EISDIR) {
				if (rc == 0)
					rc = -errno;
				continue;
			}
		} else if (de->d_type == DT_UNKNOWN) {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0 ||
			    errno == ENOENT)
				continue;
			if (errno != EISDIR && errno != EPERM) {
				if (rc == 0)
					rc = -errno;
				continue;
			}
		}
		int r = rmtree_dir(dirfd(d), de->d_name);
		if (r < 0 && rc == 0)
			rc = r;
	}
	closedir(d);
	if (rc < 0)
		return rc;
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int fsutil_rmtree(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	return rmtree_dir(dirfd, name);
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

int fsutil_copy(int in, int out, uint64_t size, uint64_t *copied)
{
	*copied = 0;
	/* Small files: two syscalls beat the setup cost of the in-kernel
	 * copy paths. */
	if (size <= CMP_CHUNK)
		return copy_rw(in, out, size, copied);

	int use_cfr = 1, use_sendfile = 1;
	while (*copied < size) {
		uint64_t want = size - *copied;
		if (want > COPY_CHUNK * 64ull)
			want = COPY_CHUNK * 64ull;
		ssize_t r;
		if (use_cfr) {
			r = copy_file_range(in, NULL, out, NULL, (size_t)want,
					    0);
			if (r < 0 &&
			    (errno == EXDEV || errno == EINVAL ||
			     errno == ENOSYS || errno == EOPNOTSUPP ||
			     errno == EBADF || errno == EPERM)) {
				use_cfr = 0;
				continue;
			}
		} else if (use_sendfile) {
			r = sendfile(out, in, NULL, (size_t)want);
			if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
				use_sendfile = 0;
				continue;
			}
		} else {
			return copy_rw(in, out, size, copied);
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		*copied += (uint64_t)r;
	}
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

int fsutil_same_content(int a, int b, bool *same)
{
	char *ba = malloc(CMP_CHUNK), *bb = malloc(CMP_CHUNK);
	int rc = 0;

	if (ba == NULL || bb == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	*same = false;
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

char *fsutil_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *r;

	if (la == 0)
		return strdup(b);
	r = malloc(la + lb + 2);
	if (r == NULL)
		return NULL;
	memcpy(r, a, la);
	r[la] = '/';
	memcpy(r + la + 1, b, lb + 1);
	return r;
}
