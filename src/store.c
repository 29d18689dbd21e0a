#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "store.h"

/* A memfd and the mappings of it that are alive (the shared one and the
 * views).  Not locked: a record is handed from thread to thread, and
 * only the thread that holds it maps or unmaps. */
struct store {
	int fd;
	size_t refs;
	size_t size; /* bytes of the memfd */
	void *map;   /* the shared mapping, NULL: none (see store_view()) */
	size_t maplen;
};

/* What /proc/self/pagemap says of a page. */
#define PM_PRESENT ((uint64_t)1 << 63)
#define PM_SWAPPED ((uint64_t)1 << 62)
#define PM_FILE ((uint64_t)1 << 61)
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
/* Pages looked at per read of the pagemap. */
#define PM_BATCH 4096

static int write_all(int fd, const char *p, size_t len, size_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (size_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* A memfd for a record.  Never executable (with vm.memfd_noexec=2, a
 * memfd that could be is refused); a kernel before 6.3 does not know the
 * flag.  Mode 0600, not memfd's 0777: a record lists a source's files,
 * for nobody to open through /proc/PID/fd. */
static int record_memfd(void)
{
	int fd = memfd_create("atomsync-record", MFD_CLOEXEC | MFD_NOEXEC_SEAL);

	if (fd < 0 && errno == EINVAL)
		fd = memfd_create("atomsync-record", MFD_CLOEXEC);
	if (fd >= 0 && fchmod(fd, 0600) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int store_copy(const void *src, size_t bytes, size_t len, struct store **out,
	       void **map)
{
	struct store *x = malloc(sizeof(*x));
	int rc = x ? 0 : -ENOMEM;

	if (x)
		*x = (struct store){.fd = record_memfd(), .refs = 1,
				    .size = len};
	if (rc == 0 && x->fd < 0)
		rc = -errno;
	if (rc == 0 && ftruncate(x->fd, (off_t)len) < 0)
		rc = -errno;
	/* Written, not copied through a mapping: the pages are not
	 * cleared first. */
	if (rc == 0)
		rc = write_all(x->fd, src, bytes < len ? bytes : len, 0);
	void *m = rc == 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE,
				 MAP_SHARED, x->fd, 0)
			  : MAP_FAILED;
	if (rc == 0 && m == MAP_FAILED)
		rc = -errno;
	if (rc < 0) {
		if (x && x->fd >= 0)
			close(x->fd);
		free(x);
		return rc;
	}
	x->map = m;
	x->maplen = len;
	*out = x;
	*map = m;
	return 0;
}

void store_populate(void *map, size_t len)
{
	/* Only advice: before Linux 5.14, the pages come as they are
	 * touched. */
	(void)madvise(map, len, MADV_POPULATE_READ);
}

void store_let_go(struct store *x, size_t from, size_t to)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (to > x->maplen)
		to = x->maplen;
	from = array_round_up(from, page);
	to = to / page * page;
	/* Only advice. */
	if (x->map && from < to)
		(void)madvise((char *)x->map + from, to - from, MADV_DONTNEED);
}

int store_view(struct store *x, size_t len, enum store_reads reads,
	       void **out)
{
	if (len > x->size) {
		if (ftruncate(x->fd, (off_t)len) < 0)
			return -errno;
		x->size = len;
	}
	/* A page mapped by both would count twice in the resident set. */
	if (reads == STORE_READS_ALL)
		store_let_go(x, 0, x->maplen);
	/* Made readable at once, then writable: populating a writable
	 * private mapping would copy every page.  A view of a few pages
	 * maps them as they are touched: populating a million entries'
	 * and letting the shared mapping's go cost more than the publish
	 * of one changed file. */
	int flags = MAP_PRIVATE | (reads == STORE_READS_ALL ? MAP_POPULATE : 0);
	void *m = mmap(NULL, len, PROT_READ, flags, x->fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	if (mprotect(m, len, PROT_READ | PROT_WRITE) < 0) {
		int rc = -errno;
		munmap(m, len);
		return rc;
	}
	x->refs++;
	*out = m;
	return 0;
}

bool store_alone(const struct store *x)
{
	return x->refs == 1;
}

/* A page the view wrote (or the kernel swapped out, which only a
 * written page of a view can be): not x's any longer. */
static bool own_page(uint64_t pm)
{
	return (pm & PM_SWAPPED) || ((pm & PM_PRESENT) && !(pm & PM_FILE));
}

int store_own_pages(const void *view, size_t len, bool *own)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t pages = len / page;
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t *v = pm >= 0 ? malloc(PM_BATCH * sizeof(*v)) : NULL;
	int rc = pm < 0 ? -errno : v ? 0 : -ENOMEM;

	for (size_t p = 0; rc == 0 && p < pages; p += PM_BATCH) {
		size_t n = pages - p < PM_BATCH ? pages - p : PM_BATCH;
		off_t at = (off_t)(((uintptr_t)view / page + p) * sizeof(*v));
		ssize_t got = pread(pm, v, n * sizeof(*v), at);
		if (got != (ssize_t)(n * sizeof(*v)))
			rc = got < 0 ? -errno : -EIO;
		for (size_t i = 0; rc == 0 && i < n; i++)
			own[p + i] = own_page(v[i]);
	}
	free(v);
	if (pm >= 0)
		close(pm);
	return rc;
}

/* Writes to x the pages of `view` that are its own (written since it
 * was made), as the pagemap tells; every page when it cannot. */
static int write_own(struct store *x, const char *view, size_t len)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t pages = len / page;
	bool *own = malloc(pages ? pages : 1);
	int rc = 0;

	if (own == NULL || store_own_pages(view, len, own) < 0) {
		free(own);
		return write_all(x->fd, view, len, 0);
	}
	for (size_t i = 0, k; rc == 0 && i < pages; i += k) {
		for (k = 1; i + k < pages && own[i + k] == own[i]; k++)
			;
		if (own[i])
			rc = write_all(x->fd, view + i * page, k * page,
				       i * page);
	}
	free(own);
	return rc;
}

int store_absorb(struct store *x, void *view, size_t len, void **out)
{
	if (x->refs != 1)
		return -EBUSY;
	int rc = write_own(x, view, len);
	void *m = rc == 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE,
				 MAP_SHARED, x->fd, 0)
			  : MAP_FAILED;
	if (rc == 0 && m == MAP_FAILED)
		rc = -errno;
	if (rc < 0)
		return rc;
	munmap(view, len);
	x->map = m;
	x->maplen = len;
	store_populate(m, len);
	/* What lies past the record is no one's. */
	if (len < x->size && ftruncate(x->fd, (off_t)len) == 0)
		x->size = len;
	*out = m;
	return 0;
}

void store_unmap(struct store *x, void *map, size_t len)
{
	munmap(map, len);
	if (map == x->map)
		x->map = NULL;
	if (--x->refs > 0)
		return;
	close(x->fd);
	free(x);
}
