#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <grp.h>
#include <unistd.h>

#include <check.h>

#include "fsutil.h"
#include "snapshot.h"
#include "testutil.h"

static void die(const char *what, const char *path)
{
	fprintf(stderr, "testutil: %s %s: %s\n", what, path, strerror(errno));
	abort();
}

bool tu_in_memory(const char *dir)
{
	struct statfs sf;

	if (statfs(dir, &sf) < 0)
		die("statfs", dir);
	return sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
}

char *tu_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *t;

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	if (tu_in_memory(tmp) && access("/var/tmp", W_OK) == 0 &&
	    !tu_in_memory("/var/tmp"))
		tmp = "/var/tmp";
	if (asprintf(&t, "%s/atomsync-test.XXXXXX", tmp) < 0)
		abort();
	if (mkdtemp(t) == NULL)
		die("mkdtemp", t);
	return t;
}

char *tu_mkdtemp_fast(void)
{
	char t[] = "/dev/shm/atomsync-test.XXXXXX";

	if (getenv("TMPDIR") == NULL && mkdtemp(t) != NULL)
		return strdup(t);
	return tu_mkdtemp();
}

/* rm -rf: the core's removal first, which keeps out of what another user
 * could have moved in (a daemon run as nobody made it, say); then
 * whatever that left by rm itself, which goes down trees deeper than
 * PATH_MAX, for no test to leave it behind. */
void tu_rmrf(const char *path)
{
	char *copy = strdup(path);
	char *slash = strrchr(copy, '/');
	int dfd;
	const char *name;

	if (slash == NULL) {
		dfd = AT_FDCWD;
		name = copy;
	} else {
		*slash = '\0';
		dfd = open(*copy ? copy : "/", O_RDONLY | O_DIRECTORY);
		name = slash + 1;
	}
	if (dfd >= 0 || dfd == AT_FDCWD) {
		fsutil_rmtree(dfd, name);
		if (dfd >= 0)
			close(dfd);
	}
	free(copy);
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--one-file-system", "--", path,
		       (char *)NULL);
		_exit(127);
	}
	while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

char *tu_path(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *r = malloc(la + lb + 2);
	if (r == NULL)
		abort();
	memcpy(r, a, la);
	r[la] = '/';
	memcpy(r + la + 1, b, lb + 1);
	return r;
}

void tu_mkdirs(const char *path, mode_t mode)
{
	char *p = strdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			die("mkdir", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		die("mkdir", p);
	free(p);
}

void tu_write_len(const char *dir, const char *rel, const void *data,
		  size_t len, mode_t mode)
{
	char *p = tu_path(dir, rel);
	size_t cut = (size_t)(strrchr(p, '/') - p);
	p[cut] = '\0';
	tu_mkdirs(p, 0755);
	p[cut] = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
	if (fd < 0)
		die("open", p);
	const char *d = data;
	while (len > 0) {
		ssize_t w = write(fd, d, len);
		if (w <= 0)
			die("write", p);
		d += w;
		len -= (size_t)w;
	}
	if (fchmod(fd, mode) < 0)
		die("fchmod", p);
	close(fd);
	free(p);
}

void tu_write(const char *dir, const char *rel, const char *data, mode_t mode)
{
	tu_write_len(dir, rel, data, strlen(data), mode);
}

void tu_replace(const char *dir, const char *rel, const char *data,
		mode_t mode)
{
	char *tmp = tu_path(dir, "../.tu-replace");
	char *p = tu_path(dir, rel);
	size_t cut = (size_t)(strrchr(tmp, '/') - tmp);

	tmp[cut] = '\0';
	tu_write(tmp, ".tu-replace", data, mode);
	tmp[cut] = '/';
	if (rename(tmp, p) < 0)
		die("rename", p);
	free(tmp);
	free(p);
}

char *tu_read(const char *path, size_t *lenp)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

void tu_fill(const char *dir, const struct tu_file *payload)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *p = tu_path(dir, de->d_name);
		tu_rmrf(p);
		free(p);
	}
	if (d)
		closedir(d);
	for (const struct tu_file *f = payload; f->path; f++) {
		char *c = snapshot_clean_path(f->path);
		tu_write(dir, c, f->data, f->mode);
		free(c);
	}
}

char *tu_live(const char *dst)
{
	char *p = tu_path(dst, "..data");
	char *t = NULL;
	int dfd = open(dst, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		if (fsutil_readlinkat(dfd, "..data", &t) < 0)
			t = NULL;
		close(dfd);
	}
	free(p);
	return t;
}

int tu_generations(const char *dst)
{
	DIR *d = opendir(dst);
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "..2", 3) == 0)
			n++;
	if (d)
		closedir(d);
	return n;
}

int tu_generations_of_mode(const char *dst, mode_t mode, char **name)
{
	DIR *d = opendir(dst);
	struct dirent *de;
	struct stat st;
	int n = 0;
	if (name)
		*name = NULL;
	while (d && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "..2", 3) != 0 ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    (st.st_mode & 07777) != mode)
			continue;
		n++;
		if (name) {
			free(*name);
			*name = strdup(de->d_name);
		}
	}
	if (d)
		closedir(d);
	return n;
}

int tu_readable_generations(const char *dst)
{
	return tu_generations_of_mode(dst, 0755, NULL);
}

static int count_names(const char *dst, const char *but)
{
	DIR *d = opendir(dst);
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    (but == NULL || strcmp(de->d_name, but)))
			n++;
	if (d)
		closedir(d);
	return n;
}

int tu_count_names(const char *dst)
{
	return count_names(dst, NULL);
}

int tu_count_entries(const char *dst)
{
	return count_names(dst, "..atomsync.lock");
}

/* A collected file or directory of a tree. */
struct item {
	char *path;
	int isdir;
	mode_t mode;
	char *data;
	size_t len;
};

struct items {
	struct item *v;
	size_t n, cap;
};

static void items_add(struct items *it, const char *path, int isdir,
		      mode_t mode, char *data, size_t len)
{
	if (it->n == it->cap) {
		it->cap = it->cap ? it->cap * 2 : 64;
		it->v = realloc(it->v, it->cap * sizeof(*it->v));
	}
	it->v[it->n++] = (struct item){strdup(path), isdir, mode, data, len};
}

static void items_free(struct items *it)
{
	for (size_t i = 0; i < it->n; i++) {
		free(it->v[i].path);
		free(it->v[i].data);
	}
	free(it->v);
}

static int item_cmp(const void *a, const void *b)
{
	return snapshot_path_cmp(((const struct item *)a)->path,
				 ((const struct item *)b)->path);
}

/* Whether a symlink at `full` should be followed as atomsync does with
 * symlinks = inside: it resolves below `base_real` and is no loop. */
static int follow_ok(const char *full, const char *base_real,
		     const char *dir_real)
{
	char *rp = realpath(full, NULL);
	int ok = 0;
	size_t n = strlen(base_real);
	if (rp && strncmp(rp, base_real, n) == 0 && (rp[n] == '/' || rp[n] == '\0')) {
		size_t m = strlen(rp);
		/* A directory that contains this one would loop. */
		ok = !(strncmp(dir_real, rp, m) == 0 &&
		       (dir_real[m] == '/' || dir_real[m] == '\0'));
	}
	free(rp);
	return ok;
}

/* Collects a tree, following symlinks (as a reader would), skipping names
 * that start with ".." at the top when `skip_reserved`. */
static void collect(const char *base, const char *rel, struct items *it,
		    int skip_reserved)
{
	char *base_real = realpath(base, NULL);
	char *dir = *rel ? tu_path(base, rel) : strdup(base);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (skip_reserved && strncmp(de->d_name, "..", 2) == 0)
			continue;
		char *r = *rel ? tu_path(rel, de->d_name) : strdup(de->d_name);
		char *full = tu_path(base, r);
		struct stat st;
		char *dir_real = realpath(dir, NULL);
		int skip = de->d_type == DT_LNK &&
			   !(base_real && dir_real &&
			     follow_ok(full, base_real, dir_real));
		free(dir_real);
		if (!skip && stat(full, &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				items_add(it, r, 1, st.st_mode & 07777, NULL, 0);
				collect(base, r, it, 0);
			} else if (S_ISREG(st.st_mode)) {
				size_t len = 0;
				char *data = tu_read(full, &len);
				items_add(it, r, 0, st.st_mode & 07777, data, len);
			}
		}
		free(full);
		free(r);
	}
	if (d)
		closedir(d);
	free(dir);
	free(base_real);
}

static char *describe(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static char *describe(const char *fmt, ...)
{
	va_list ap;
	char *r;

	va_start(ap, fmt);
	if (vasprintf(&r, fmt, ap) < 0)
		abort();
	va_end(ap);
	return r;
}

char *tu_diff_target(const char *dst, const struct tu_file *payload)
{
	struct items got = {0};
	char *res = NULL;

	/* Every visible name must be our link into ..data. */
	DIR *d = opendir(dst);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "..", 2) == 0 || strcmp(de->d_name, ".") == 0)
			continue;
		char *p = tu_path(dst, de->d_name);
		char buf[4096];
		ssize_t n = readlink(p, buf, sizeof(buf) - 1);
		free(p);
		if (n < 0) {
			res = describe("visible name %s is not a symlink", de->d_name);
			break;
		}
		buf[n] = '\0';
		char *want = tu_path("..data", de->d_name);
		if (strcmp(buf, want) != 0)
			res = describe("visible link %s points to %s", de->d_name, buf);
		free(want);
		if (res)
			break;
	}
	if (d)
		closedir(d);
	if (res)
		return res;

	collect(dst, "", &got, 1);
	size_t nfiles = 0;
	for (const struct tu_file *f = payload; f->path; f++)
		nfiles++;
	size_t seen = 0;
	for (size_t i = 0; i < got.n && !res; i++) {
		struct item *g = &got.v[i];
		if (g->isdir)
			continue;
		seen++;
		const struct tu_file *m = NULL;
		for (const struct tu_file *f = payload; f->path; f++) {
			char *c = snapshot_clean_path(f->path);
			if (strcmp(c, g->path) == 0)
				m = f;
			free(c);
		}
		if (m == NULL)
			res = describe("unexpected file %s", g->path);
		else if (g->len != strlen(m->data) ||
			 memcmp(g->data, m->data, g->len) != 0)
			res = describe("content of %s differs", g->path);
		else if (g->mode != (m->mode & TU_PROJECTED)) {
			char b[32];
			snprintf(b, sizeof(b), "%o, want %o", (unsigned)g->mode,
				 (unsigned)(m->mode & TU_PROJECTED));
			res = describe("mode of %s is %s", g->path, b);
		}
	}
	if (!res && seen != nfiles) {
		char b[64];
		snprintf(b, sizeof(b), "%zu files, want %zu", seen, nfiles);
		res = describe("target holds %s", b);
	}
	items_free(&got);
	return res;
}

char *tu_diff_trees(const char *src, const char *dst)
{
	struct items a = {0}, b = {0};
	char *res = NULL;
	char *data = tu_path(dst, "..data");

	collect(src, "", &a, 1);
	collect(data, "", &b, 0);
	free(data);
	if (a.n > 1)
		qsort(a.v, a.n, sizeof(*a.v), item_cmp);
	if (b.n > 1)
		qsort(b.v, b.n, sizeof(*b.v), item_cmp);
	size_t i = 0, j = 0;
	while (!res && (i < a.n || j < b.n)) {
		int c = i == a.n ? 1 : j == b.n ? -1 : item_cmp(&a.v[i], &b.v[j]);
		if (c < 0)
			res = describe("missing in target: %s", a.v[i].path);
		else if (c > 0)
			res = describe("extra in target: %s", b.v[j].path);
		else if (a.v[i].isdir != b.v[j].isdir)
			res = describe("type differs: %s", a.v[i].path);
		else if (!a.v[i].isdir && (a.v[i].len != b.v[j].len ||
					   memcmp(a.v[i].data, b.v[j].data, a.v[i].len)))
			res = describe("content differs: %s", a.v[i].path);
		else if ((a.v[i].mode & TU_PROJECTED) != b.v[j].mode) {
			char m[32];
			snprintf(m, sizeof(m), " (%o vs %o)",
				 (unsigned)(a.v[i].mode & TU_PROJECTED),
				 (unsigned)b.v[j].mode);
			res = describe("mode differs: %s%s", a.v[i].path, m);
		}
		i++;
		j++;
	}
	items_free(&a);
	items_free(&b);
	return res;
}

size_t tu_pages_present(const void *m, size_t n)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t v[512];
	size_t k = 0;

	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < n; i += 512) {
		size_t c = n - i < 512 ? n - i : 512;
		off_t at = (off_t)(((uintptr_t)m / page + i) * sizeof(*v));
		ck_assert_int_eq(pread(fd, v, c * sizeof(*v), at),
				 (ssize_t)(c * sizeof(*v)));
		for (size_t j = 0; j < c; j++)
			k += (v[j] >> 63) & 1;
	}
	close(fd);
	return k;
}

long long tu_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_nap(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int tu_way_len(const char *path)
{
	char *copy = strdup(path);
	ck_assert_ptr_nonnull(copy);
	char *slash = strrchr(copy, '/');
	ck_assert_ptr_nonnull(slash);
	*slash = '\0';
	char *parent = realpath(*copy ? copy : "/", NULL);
	ck_assert_ptr_nonnull(parent);
	int n = 1;
	for (const char *c = parent; *c; c++)
		n += *c == '/' && c[1] != '\0';
	free(parent);
	free(copy);
	return n;
}

int tu_scale(int ms)
{
	const char *m = getenv("CK_TIMEOUT_MULTIPLIER");
	double f = m ? atof(m) : 1.0;
	if (f < 1.0)
		f = 1.0;
	return (int)(ms * f);
}

unsigned tu_rounds(unsigned n)
{
	if (getenv("ATOMSYNC_VALGRIND") == NULL || n < 4)
		return n;
	return n / 4;
}

const char *tu_bin(void)
{
	const char *b = getenv("ATOMSYNCD");
	return b && *b ? b : "../src/atomsyncd";
}

struct sink {
	int fd;
	char *buf;
	size_t len, cap;
};

static void sink_read(struct sink *k)
{
	char tmp[4096];
	ssize_t n = read(k->fd, tmp, sizeof(tmp));
	if (n <= 0) {
		close(k->fd);
		k->fd = -1;
		return;
	}
	if (k->len + (size_t)n + 1 > k->cap) {
		k->cap = (k->len + (size_t)n + 1) * 2;
		k->buf = realloc(k->buf, k->cap);
	}
	memcpy(k->buf + k->len, tmp, (size_t)n);
	k->len += (size_t)n;
	k->buf[k->len] = '\0';
}

int tu_run(const char *const argv[], char **out, char **err, int timeout_ms)
{
	return tu_run_rusage(argv, out, err, timeout_ms, NULL);
}

int tu_run_rusage(const char *const argv[], char **out, char **err,
		  int timeout_ms, struct rusage *ru)
{
	int po[2], pe[2];
	if (pipe(po) < 0 || pipe(pe) < 0)
		abort();
	pid_t pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		close(po[1]);
		close(pe[1]);
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	struct sink so = {po[0], NULL, 0, 0}, se = {pe[0], NULL, 0, 0};
	long long deadline = tu_now_ms() + tu_scale(timeout_ms);
	int timed_out = 0;
	while (so.fd >= 0 || se.fd >= 0) {
		struct pollfd p[2] = {{so.fd, POLLIN, 0}, {se.fd, POLLIN, 0}};
		long long left = deadline - tu_now_ms();
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		int r = poll(p, 2, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (p[0].revents)
			sink_read(&so);
		if (p[1].revents)
			sink_read(&se);
	}
	if (timed_out)
		kill(pid, SIGKILL);
	int status = 0;
	struct rusage scratch;
	wait4(pid, &status, 0, ru ? ru : &scratch);
	if (so.fd >= 0)
		close(so.fd);
	if (se.fd >= 0)
		close(se.fd);
	if (out)
		*out = so.buf ? so.buf : strdup("");
	else
		free(so.buf);
	if (err)
		*err = se.buf ? se.buf : strdup("");
	else
		free(se.buf);
	if (timed_out)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int tu_run_as(unsigned uid, const char *const argv[], char **out, char **err,
	      int timeout_ms)
{
	char ids[2][32];
	size_t n = 0;
	while (argv[n])
		n++;
	const char **v = calloc(n + 5, sizeof(*v));
	if (v == NULL)
		abort();
	snprintf(ids[0], sizeof(ids[0]), "--reuid=%u", uid);
	snprintf(ids[1], sizeof(ids[1]), "--regid=%u", uid);
	v[0] = "setpriv";
	v[1] = ids[0];
	v[2] = ids[1];
	v[3] = "--clear-groups";
	memcpy(v + 4, argv, (n + 1) * sizeof(*v));
	int rc = tu_run(v, out, err, timeout_ms);
	free(v);
	return rc;
}

int tu_sh_as(unsigned uid, const char *cmd)
{
	const char *argv[] = {"sh", "-c", cmd, NULL};
	char *err = NULL;
	int rc = tu_run_as(uid, argv, NULL, &err, 20000);
	if (rc != 0)
		fprintf(stderr, "as uid %u: %s: exit %d: %s\n", uid, cmd, rc,
			err ? err : "");
	free(err);
	return rc;
}

int tu_call_as(unsigned uid, int (*fn)(void *arg), void *arg)
{
	pid_t p = fork();
	if (p < 0)
		abort();
	if (p == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			_exit(125);
		_exit(fn(arg));
	}
	int st = 0;
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool tu_can_setuid(void)
{
	return geteuid() == 0;
}

int tu_lines(const char *s)
{
	int n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

pid_t tu_spawn(const char *const argv[], const char *logfile)
{
	pid_t pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int nul = open("/dev/null", O_RDONLY);
		if (fd < 0 || nul < 0)
			_exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

int tu_wait_exit(pid_t pid, int timeout_ms)
{
	long long deadline = tu_now_ms() + tu_scale(timeout_ms);
	int status;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0)
			return -2;
		if (tu_now_ms() > deadline)
			return -1;
		tu_nap(5);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

void tu_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

int tu_wait_for(int (*cond)(void *arg), void *arg, int timeout_ms)
{
	long long deadline = tu_now_ms() + tu_scale(timeout_ms);
	for (;;) {
		if (cond(arg))
			return 1;
		if (tu_now_ms() > deadline)
			return 0;
		tu_nap(5);
	}
}

int tu_file_count(const char *path, const char *needle)
{
	char *d = tu_read(path, NULL);
	int n = 0;
	for (const char *p = d; p && (p = strstr(p, needle)); p++)
		n++;
	free(d);
	return n;
}

int tu_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY, CK_NORMAL unless set */
	int failed = srunner_ntests_failed(sr), ran = srunner_ntests_run(sr);
	srunner_free(sr);
	/* A CK_RUN_CASE or CK_RUN_SUITE that names nothing runs nothing,
	 * which is not a pass. */
	if (ran == 0)
		fprintf(stderr, "no test ran (CK_RUN_SUITE, CK_RUN_CASE?)\n");
	return failed == 0 && ran > 0 ? 0 : 1;
}

int tu_trees_equal(void *arg)
{
	const struct tu_pair *p = arg;
	char *d = tu_diff_trees(p->src, p->dst);
	free(d);
	return d == NULL;
}

int tu_one_generation(void *arg)
{
	return tu_generations(arg) == 1;
}

int tu_file_holds(void *arg)
{
	const struct tu_needle *n = arg;
	return tu_file_count(n->file, n->text) >= n->count;
}

int tu_exists(void *arg)
{
	struct stat st;
	return lstat(arg, &st) == 0;
}

int tu_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

char *tu_read_reply(int fd)
{
	char *buf = calloc(1, 65536);
	size_t got = 0;
	struct pollfd p = {fd, POLLIN, 0};
	while (got < 65535 && poll(&p, 1, tu_scale(5000)) > 0) {
		ssize_t r = read(fd, buf + got, 65535 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	return buf;
}

void tu_write_deep(const char *dir, const char *rel, const char *data)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		die("open", dir);
	char *copy = strdup(rel), *save = NULL;
	char *tok = strtok_r(copy, "/", &save);
	while (fd >= 0 && tok) {
		char *next = strtok_r(NULL, "/", &save);
		if (next == NULL) {
			int f = openat(fd, tok, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (f < 0 || write(f, data, strlen(data)) < 0)
				die("write deep", tok);
			close(f);
		} else {
			if (mkdirat(fd, tok, 0755) < 0 && errno != EEXIST)
				die("mkdirat", tok);
			int sub = openat(fd, tok, O_RDONLY | O_DIRECTORY);
			close(fd);
			fd = sub;
		}
		tok = next;
	}
	if (fd >= 0)
		close(fd);
	free(copy);
}

void tu_mkdeep(const char *dir, const char *name, int depth)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		die("open", dir);
	for (int i = 0; i < depth; i++) {
		if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST)
			die("mkdirat", name);
		int sub = openat(fd, name, O_RDONLY | O_DIRECTORY);
		if (sub < 0)
			die("openat", name);
		close(fd);
		fd = sub;
	}
	int f = openat(fd, "bottom", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (f < 0)
		die("create", "bottom");
	close(f);
	close(fd);
}

void tu_rmdeep(const char *dir, const char *name)
{
	/* Down to the bottom with one descriptor, then up through "..",
	 * removing each level on the way: no one else changes the tree. */
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	int depth = 0;
	while (fd >= 0) {
		int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (sub < 0)
			break;
		close(fd);
		fd = sub;
		depth++;
	}
	if (fd < 0)
		return;
	unlinkat(fd, "bottom", 0);
	for (; depth > 0; depth--) {
		int up = openat(fd, "..", O_RDONLY | O_DIRECTORY);
		close(fd);
		if (up < 0)
			return;
		unlinkat(up, name, AT_REMOVEDIR);
		fd = up;
	}
	close(fd);
}

/* The end of a daemon's log, on stderr, for a test about to fail. */
static void print_log_tail(const char *logfile)
{
	char *log = tu_read(logfile, NULL);
	size_t n = log ? strlen(log) : 0;

	fprintf(stderr, "%s\n", log ? log + (n > 8000 ? n - 8000 : 0) : "");
	free(log);
}

void tu_wait_text(const char *file, const char *text, int count, int ms,
		  const char *logfile)
{
	struct tu_needle n = {file, text, count};

	if (tu_wait_for(tu_file_holds, &n, ms))
		return;
	print_log_tail(logfile);
	ck_abort_msg("%s never held '%s' x%d", file, text, count);
}

void tu_converge(const char *src, const char *dst, int ms,
		 const char *logfile)
{
	struct tu_pair p = {src, dst};

	if (tu_wait_for(tu_trees_equal, &p, ms))
		return;
	char *why = tu_diff_trees(src, dst);
	print_log_tail(logfile);
	ck_abort_msg("target %s did not converge: %s", dst, why);
}

void tu_stop(pid_t *pid, int ms)
{
	ck_assert_msg(kill(*pid, 0) == 0, "the daemon is gone");
	ck_assert_int_eq(kill(*pid, SIGTERM), 0);
	int st = tu_wait_exit(*pid, ms);
	if (st != -1)
		*pid = 0; /* reaped */
	ck_assert_msg(st == 0, "daemon exit status %d", st);
}

void tu_fixture_setup(struct tu_fixture *f, unsigned flags)
{
	f->tmp = flags & TU_FAST ? tu_mkdtemp_fast() : tu_mkdtemp();
	if (flags & TU_SHARED)
		ck_assert_int_eq(chmod(f->tmp, 0755), 0);
	f->src = tu_path(f->tmp, "src");
	f->dst = tu_path(f->tmp, "dst");
	f->log = tu_path(f->tmp, "daemon.log");
	f->conf = tu_path(f->tmp, "atomsync.conf");
	tu_mkdirs(f->src, 0755);
	f->pid = 0;
}

void tu_fixture_teardown(struct tu_fixture *f)
{
	if (f->pid > 0)
		tu_kill(f->pid);
	tu_rmrf(f->tmp);
	free(f->src);
	free(f->dst);
	free(f->log);
	free(f->conf);
	free(f->tmp);
	memset(f, 0, sizeof(*f));
}

void tu_private_mounts(void)
{
	/* "none", not NULL: valgrind reads both as strings. */
	ck_assert_msg(unshare(CLONE_NEWNS) == 0 &&
			      mount("none", "/", "none", MS_REC | MS_PRIVATE,
				    NULL) == 0,
		      "this test mounts (as root): %s", strerror(errno));
}

/* One entry: tag, perm, id, little-endian. */
static void acl_entry(unsigned char *p, unsigned tag, unsigned perm,
		      unsigned id)
{
	p[0] = (unsigned char)tag;
	p[1] = 0;
	p[2] = (unsigned char)perm;
	p[3] = 0;
	for (int i = 0; i < 4; i++)
		p[4 + i] = (unsigned char)(id >> (8 * i));
}

void tu_acl(const char *path, unsigned own, char kind, unsigned id,
	    unsigned perm, unsigned rest)
{
	unsigned char v[4 + 5 * 8] = {2, 0, 0, 0};
	/* In the kernel's order: owner, users, group, groups, mask, others. */
	bool user = kind == 'u';
	acl_entry(v + 4, 0x01, own, ~0u);
	acl_entry(v + 12, user ? 0x02 : 0x04, user ? perm : rest,
		  user ? id : ~0u);
	acl_entry(v + 20, user ? 0x04 : 0x08, user ? rest : perm,
		  user ? ~0u : id);
	acl_entry(v + 28, 0x10, user ? rest : (rest | perm), ~0u);
	acl_entry(v + 36, 0x20, rest, ~0u);
	ck_assert_msg(setxattr(path, "system.posix_acl_access", v, sizeof(v),
			       0) == 0,
		      "setxattr %s: %s", path, strerror(errno));
}
