/* An LD_PRELOAD library for the fault-injection tests: the Nth call of
 * the file-system functions it wraps fails with a chosen errno, once; or
 * every call of one function hangs while a file exists, as on a disk or
 * NFS server that stops answering.
 *
 *   FAULT_NTH=N        fail the Nth counted call (unset or 0: never)
 *   FAULT_ERRNO=NAME   EIO (default), ENOSPC, EACCES, EMFILE or ENOENT
 *   FAULT_COUNT=FILE   at exit, write "calls=N" there (to size a sweep)
 *   FAULT_ONLY=CALL[,CALL]...  count the calls of these alone (names
 *                      below)
 *   FAULT_INET=1       socket() refuses AF_INET and AF_INET6 with
 *                      EAFNOSUPPORT, every time, as systemd's
 *                      RestrictAddressFamilies= does (not counted)
 *   FAULT_HANG=CALL[,CALL]...  calls of CALL (fsync, write, ...: a name
 *                      below)...
 *   FAULT_HANG_WHILE=FILE  ...block while FILE exists
 *   FAULT_HANG_SAY=FILE  made when a call starts to block, for a test to
 *                      look at what the process left as it is then
 *   FAULT_HANG_TALLY=FILE  a byte added to FILE as each call starts to
 *                      block: how many block at once, from how many
 *                      threads
 *   FAULT_TMPFILE_AFTER_HANG=1  once a call has hung, every open of an
 *                      unnamed file (O_TMPFILE) fails with ENOSPC, as when
 *                      another user has taken the last inode meanwhile
 *   FAULT_HANG_MADE=NAME  ...only a call on the path NAME, and only once
 *                      mkdirat() has made NAME (openat, say: the next
 *                      step, for a test to act between the two; or
 *                      unlinkat, as the directory is removed)
 *   FAULT_NO_FD_LINK=1 linkat() refuses a link by descriptor
 *                      (AT_EMPTY_PATH) and one through /proc (ENOENT)
 *
 * Counted: open, openat, openat2 (through syscall), write (not to fds 0-2,
 * so logging is not what fails), copy_file_range, fsync, fdatasync,
 * syncfs, symlinkat, renameat, mkdirat, unlinkat, linkat; getdents64
 * and sync_file_range only when FAULT_ONLY names them. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static long calls, nth = -1;
static int fault_errno = EIO;
static pthread_once_t ready = PTHREAD_ONCE_INIT;
static const char *hang_call, *hang_while, *hang_made, *only;
static int made; /* mkdirat() has made hang_made */
static int hung; /* a call has hung, and gone on */

static void init(void)
{
	const char *n = getenv("FAULT_NTH");
	const char *e = getenv("FAULT_ERRNO");

	nth = n ? atol(n) : 0;
	hang_call = getenv("FAULT_HANG");
	hang_while = getenv("FAULT_HANG_WHILE");
	hang_made = getenv("FAULT_HANG_MADE");
	only = getenv("FAULT_ONLY");
	if (e == NULL || strcmp(e, "EIO") == 0)
		fault_errno = EIO;
	else if (strcmp(e, "ENOSPC") == 0)
		fault_errno = ENOSPC;
	else if (strcmp(e, "EACCES") == 0)
		fault_errno = EACCES;
	else if (strcmp(e, "EMFILE") == 0)
		fault_errno = EMFILE;
	else if (strcmp(e, "ENOENT") == 0)
		fault_errno = ENOENT;
}

/* Whether `name` is one of the comma-separated names in `list`. */
static int listed(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

/* Blocks a call of `name` (on `path`, NULL: none) while the
 * FAULT_HANG_WHILE file exists. */
static void hang(const char *name, const char *path)
{
	if (hang_call == NULL || hang_while == NULL || !listed(hang_call, name))
		return;
	if (hang_made && (!__atomic_load_n(&made, __ATOMIC_SEQ_CST) ||
			  path == NULL || strcmp(path, hang_made) != 0))
		return;
	struct timespec ts = {0, 10 * 1000 * 1000};
	const char *say = getenv("FAULT_HANG_SAY");
	const char *tally = getenv("FAULT_HANG_TALLY");
	if (say && access(hang_while, F_OK) == 0) {
		/* Not through the wrapper: it is no call of the process. */
		long fd = syscall(SYS_openat, AT_FDCWD, say,
				  O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close((int)fd);
	}
	if (tally && access(hang_while, F_OK) == 0) {
		long fd = syscall(SYS_openat, AT_FDCWD, tally,
				  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
				  0644);
		if (fd >= 0) {
			(void)syscall(SYS_write, (int)fd, "x", (size_t)1);
			close((int)fd);
		}
	}
	while (access(hang_while, F_OK) == 0) {
		nanosleep(&ts, NULL);
		__atomic_store_n(&hung, 1, __ATOMIC_SEQ_CST);
	}
}

/* True when this call of `name` (on `path`, NULL: none) is the one to
 * fail. */
static int fault_at(const char *name, const char *path)
{
	pthread_once(&ready, init); /* several threads call in */
	hang(name, path);
	if (only && !listed(only, name))
		return 0;
	/* Atomic: a publish flushes from several threads at once. */
	if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) == nth && nth > 0) {
		errno = fault_errno;
		return 1;
	}
	return 0;
}

static int fault(const char *name)
{
	return fault_at(name, NULL);
}

__attribute__((destructor)) static void report(void)
{
	const char *f = getenv("FAULT_COUNT");
	if (f == NULL)
		return;
	FILE *o = fopen(f, "w");
	if (o) {
		fprintf(o, "calls=%ld\n", calls);
		fclose(o);
	}
}

/* The real `name`, looked up once: threads of the process may be the
 * first to call it at once. */
#define REAL(type, name, ...)                                                \
	static type (*found)(__VA_ARGS__);                                   \
	type (*real)(__VA_ARGS__) = __atomic_load_n(&found, __ATOMIC_ACQUIRE); \
	if (real == NULL) {                                                  \
		real = (type(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name);         \
		__atomic_store_n(&found, real, __ATOMIC_RELEASE);            \
	}

int open(const char *path, int flags, ...)
{
	REAL(int, "open", const char *, int, ...);
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (fault("open"))
		return -1;
	return real(path, flags, mode);
}

int openat(int dfd, const char *path, int flags, ...)
{
	REAL(int, "openat", int, const char *, int, ...);
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (fault_at("openat", path))
		return -1;
	if ((flags & O_TMPFILE) == O_TMPFILE &&
	    __atomic_load_n(&hung, __ATOMIC_SEQ_CST) &&
	    getenv("FAULT_TMPFILE_AFTER_HANG")) {
		errno = ENOSPC;
		return -1;
	}
	return real(dfd, path, flags, mode);
}

long syscall(long number, ...)
{
	REAL(long, "syscall", long, ...);
	va_list ap;
	long a[6];
	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_openat2 && fault("openat2"))
		return -1;
	return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, "write", int, const void *, size_t);
	if (fd > 2 && fault("write"))
		return -1;
	return real(fd, buf, n);
}

ssize_t copy_file_range(int in, off_t *oin, int out, off_t *oout, size_t n,
			unsigned flags)
{
	REAL(ssize_t, "copy_file_range", int, off_t *, int, off_t *, size_t,
	     unsigned);
	if (fault("copy_file_range"))
		return -1;
	return real(in, oin, out, oout, n, flags);
}

int fsync(int fd)
{
	REAL(int, "fsync", int);
	if (fault("fsync"))
		return -1;
	return real(fd);
}

int fdatasync(int fd)
{
	REAL(int, "fdatasync", int);
	if (fault("fdatasync"))
		return -1;
	return real(fd);
}

int syncfs(int fd)
{
	REAL(int, "syncfs", int);
	if (fault("syncfs"))
		return -1;
	return real(fd);
}

int symlinkat(const char *target, int dfd, const char *path)
{
	REAL(int, "symlinkat", const char *, int, const char *);
	if (fault("symlinkat"))
		return -1;
	return real(target, dfd, path);
}

int renameat(int od, const char *op, int nd, const char *np)
{
	REAL(int, "renameat", int, const char *, int, const char *);
	if (fault("renameat"))
		return -1;
	return real(od, op, nd, np);
}

int mkdirat(int dfd, const char *path, mode_t mode)
{
	REAL(int, "mkdirat", int, const char *, mode_t);
	if (fault_at("mkdirat", path))
		return -1;
	int rc = real(dfd, path, mode);
	if (rc == 0 && hang_made && strcmp(path, hang_made) == 0)
		__atomic_store_n(&made, 1, __ATOMIC_SEQ_CST);
	return rc;
}

/* As a directory removed once it was opened reads. */
ssize_t getdents64(int fd, void *buf, size_t n)
{
	REAL(ssize_t, "getdents64", int, void *, size_t);
	pthread_once(&ready, init); /* several threads call in */
	if (only && listed(only, "getdents64") && fault("getdents64"))
		return -1;
	return real(fd, buf, n);
}

/* Counted, to tell how a copy was written back. */
int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
	REAL(int, "sync_file_range", int, off_t, off_t, unsigned int);
	pthread_once(&ready, init); /* several threads call in */
	if (only && listed(only, "sync_file_range") &&
	    fault("sync_file_range"))
		return -1;
	return real(fd, off, n, flags);
}

int unlinkat(int dfd, const char *path, int flags)
{
	REAL(int, "unlinkat", int, const char *, int);
	if (fault_at("unlinkat", path))
		return -1;
	return real(dfd, path, flags);
}

int linkat(int od, const char *op, int nd, const char *np, int flags)
{
	REAL(int, "linkat", int, const char *, int, const char *, int);
	if (fault("linkat"))
		return -1;
	/* FAULT_NO_FD_LINK: neither a link by descriptor (as without
	 * CAP_DAC_READ_SEARCH on some kernels) nor through /proc (as where
	 * it is not mounted). */
	if (getenv("FAULT_NO_FD_LINK") &&
	    ((flags & AT_EMPTY_PATH) || strncmp(op, "/proc/", 6) == 0)) {
		errno = ENOENT;
		return -1;
	}
	return real(od, op, nd, np, flags);
}

int socket(int domain, int type, int protocol)
{
	REAL(int, "socket", int, int, int);
	const char *inet = getenv("FAULT_INET");
	if (inet && strcmp(inet, "1") == 0 &&
	    (domain == AF_INET || domain == AF_INET6)) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	return real(domain, type, protocol);
}
