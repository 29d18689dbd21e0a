/* Faults, for real: every file-system call of one whole publish is made
 * to fail in turn (an LD_PRELOAD shim fails the Nth call with EIO,
 * ENOSPC, EACCES or EMFILE).  Whatever call fails, the publish either
 * reports the error with the previous generation live and intact, or
 * completes; no partial generation or ..data_tmp is left; and the next
 * run, without the fault, converges.  Then a target on a tmpfs that is
 * really full, a metrics socket refused as systemd refuses it, and a
 * daemon short of file descriptors. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char *tmp, *src, *v1, *pristine;
/* The --grace-ms of once(). */
static const char *once_grace = "0";
static bool once_nofsync; /* --no-fsync for the next runs */

static void setup(void)
{
	tmp = tu_mkdtemp_fast();
	src = tu_path(tmp, "src");
	v1 = tu_path(tmp, "src.v1");
	pristine = tu_path(tmp, "dst.v1");
	tu_mkdirs(src, 0755);
}

static void teardown(void)
{
	/* What a test mounted (in its own mount namespace) is in the way of
	 * removing tmp. */
	const char *mounts[] = {"small", "ro"};
	for (size_t i = 0; i < sizeof(mounts) / sizeof(*mounts); i++) {
		char *m = tu_path(tmp, mounts[i]);
		(void)umount2(m, MNT_DETACH);
		free(m);
	}
	tu_rmrf(tmp);
	once_grace = "0";
	free(src);
	free(v1);
	free(pristine);
	free(tmp);
}

static const char *shim(void)
{
	const char *s = getenv("FAULTINJECT");
	return s && *s ? s : "./faultinject.so";
}

/* `dst` holds what the source does. */
static void assert_copy(const char *dst)
{
	char *d = tu_diff_trees(src, dst);

	ck_assert_msg(d == NULL, "%s", d);
}

/* Runs --once on dst with FAULT_* in the environment (nth 0: none). */
static int once(const char *dst, long nth, const char *err_name,
		const char *count, char **err)
{
	pid_t pid;
	int pe[2];
	ck_assert_int_eq(pipe(pe), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char n[32];
		snprintf(n, sizeof(n), "%ld", nth);
		if (nth >= 0) {
			setenv("LD_PRELOAD", shim(), 1);
			setenv("FAULT_NTH", n, 1);
			setenv("FAULT_ERRNO", err_name, 1);
			/* An ASan build wants its runtime first; the shim only
			 * wraps libc calls. */
			setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
		}
		if (count)
			setenv("FAULT_COUNT", count, 1);
		dup2(pe[1], 2);
		close(pe[0]);
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 1);
		char *argv[] = {(char *)tu_bin(), "--source", src, "--target",
				(char *)dst, "--once", "--grace-ms",
				(char *)once_grace, once_nofsync ? "--no-fsync" : NULL,
				NULL};
		execv(tu_bin(), argv);
		_exit(127);
	}
	close(pe[1]);
	size_t cap = 8192, len = 0;
	char *buf = malloc(cap);
	ssize_t r;
	while ((r = read(pe[0], buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	close(pe[0]);
	int st;
	waitpid(pid, &st, 0);
	*err = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The calls the shim counted, as its FAULT_COUNT file says; -1 when
 * there is none. */
static long counted_calls(const char *file)
{
	char *c = tu_read(file, NULL);
	long n = c ? atol(c + 6) : -1;

	free(c);
	return n;
}

static void copy_tree(const char *from, const char *to)
{
	const char *argv[] = {"cp", "-a", from, to, NULL};
	ck_assert_int_eq(tu_run(argv, NULL, NULL, 20000), 0);
}

/* Names in dst besides ours: ..data, the live generation, the state and
 * its journal. */
static char *debris(const char *dst, int allow_old_generation)
{
	char *live = tu_live(dst);
	DIR *d = opendir(dst);
	struct dirent *de;
	char *bad = NULL;
	int old = 0;
	while (d && (de = readdir(d)) != NULL && !bad) {
		const char *n = de->d_name;
		if (strncmp(n, "..", 2) != 0 || strcmp(n, "..") == 0)
			continue;
		if (strcmp(n, "..data") == 0 || strcmp(n, "..atomsync") == 0 ||
		    strcmp(n, "..atomsync.journal") == 0 ||
		    strcmp(n, "..atomsync.lock") == 0 ||
		    (live && strcmp(n, live) == 0))
			continue;
		/* A complete old generation whose removal failed is no
		 * partial one; the next run removes it. */
		if (allow_old_generation && strncmp(n, "..2", 3) == 0 && !old) {
			old = 1;
			continue;
		}
		bad = strdup(n);
	}
	if (d)
		closedir(d);
	free(live);
	return bad;
}

/* Every visible name is our link and resolves. */
static int visible_ok(const char *want_src, const char *dst)
{
	DIR *d = opendir(want_src);
	struct dirent *de;
	int ok = 1;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *p = tu_path(dst, de->d_name);
		struct stat st;
		ok &= stat(p, &st) == 0;
		free(p);
	}
	if (d)
		closedir(d);
	return ok;
}

static void make_v1(void)
{
	char big[200000];
	memset(big, 'x', sizeof(big));
	tu_write(src, "app.conf", "v1\n", 0644);
	tu_write(src, "keep", "unchanged\n", 0644);
	tu_write(src, "mode", "mode\n", 0644);
	tu_write(src, "tls/cert.pem", "cert v1\n", 0600);
	tu_write(src, "tls/key.pem", "key\n", 0600);
	tu_write(src, "gone/file", "removed in v2\n", 0644);
	tu_write(src, "deep/a/b/c", "deep\n", 0644);
	tu_write_len(src, "big", big, sizeof(big), 0644);
}

static void make_v2(void)
{
	char big[300000];
	memset(big, 'y', sizeof(big));
	tu_write(src, "app.conf", "v2 is longer\n", 0644);
	char *p = tu_path(src, "mode");
	chmod(p, 0600);
	free(p);
	tu_write(src, "tls/cert.pem", "cert v2\n", 0600);
	p = tu_path(src, "gone");
	tu_rmrf(p);
	free(p);
	tu_write(src, "new/dir/file", "added\n", 0644);
	tu_write_len(src, "big", big, sizeof(big), 0644);
}

START_TEST(test_every_failing_call_of_a_publish)
{
	static const char *errnos[] = {"EIO", "ENOSPC", "EACCES", "EMFILE"};
	char *err = NULL, *dst = tu_path(tmp, "dst");
	char *count = tu_path(tmp, "count");

	make_v1();
	ck_assert_int_eq(once(pristine, -1, NULL, NULL, &err), 0);
	free(err);
	copy_tree(src, v1);
	make_v2();
	/* How many calls one publish of v2 makes. */
	copy_tree(pristine, dst);
	ck_assert_int_eq(once(dst, 0, "EIO", count, &err), 0);
	free(err);
	long total = counted_calls(count);
	ck_assert_msg(total > 40, "only %ld calls counted: is the shim loaded?", total);
	tu_rmrf(dst);

	/* Every call fails with each error; in the sanitizer build, whose
	 * every run costs several times more, with one of them in turn (its
	 * memory checks of each failure's path need no more). */
	size_t each = getenv("ATOMSYNC_SANITIZED") ? 1 : 4;
	int failed_runs = 0;
	for (long n = 1; n <= total + 2; n++) {
		for (size_t j = 0; j < each; j++) {
			size_t k = (j + (size_t)n) % 4;
			copy_tree(pristine, dst);
			int rc = once(dst, n, errnos[k], NULL, &err);
			ck_assert_msg(rc == 0 || rc == 1, "call %ld (%s): exit %d: %s", n,
				      errnos[k], rc, err);
			/* A failure reported after the swap (a visible link that
			 * could not be made or removed even on a second try, or
			 * the swap not flushed) leaves the new generation live;
			 * any other (one made before the swap included) leaves
			 * the old one. */
			int after_swap = rc == 1 && ((strstr(err, "visible link") &&
						      !strstr(err, "before the switch")) ||
						     strstr(err, "flushing the switch"));
			const char *want = rc == 0 || after_swap ? src : v1;
			char *why = tu_diff_trees(want, dst);
			ck_assert_msg(why == NULL,
				      "call %ld (%s), exit %d: live generation is "
				      "not %s: %s\n%s",
				      n, errnos[k], rc, want == src ? "v2" : "v1", why,
				      err);
			ck_assert_msg(after_swap || visible_ok(want, dst),
				      "call %ld (%s): a visible name is missing: %s", n,
				      errnos[k], err);
			if (rc == 1) {
				failed_runs++;
				ck_assert_msg(strstr(err, " error: "),
					      "call %ld (%s): no error reported: %s", n,
					      errnos[k], err);
			}
			char *left = debris(dst, rc == 0 || after_swap);
			ck_assert_msg(left == NULL, "call %ld (%s): %s left behind", n,
				      errnos[k], left);
			free(err);
			/* The fault is gone: the next run converges. */
			rc = once(dst, -1, NULL, NULL, &err);
			ck_assert_msg(rc == 0, "call %ld (%s): the run after failed: %s", n,
				      errnos[k], err);
			why = tu_diff_trees(src, dst);
			ck_assert_msg(why == NULL, "call %ld (%s): no convergence: %s", n,
				      errnos[k], why);
			left = debris(dst, 0);
			ck_assert_msg(left == NULL, "call %ld (%s): %s left after recovery",
				      n, errnos[k], left);
			ck_assert_int_eq(tu_generations(dst), 1);
			free(err);
			tu_rmrf(dst);
		}
	}
	/* Most calls matter: a failure of each is reported. */
	ck_assert_int_gt(failed_runs, (int)(total * each / 4));
	fprintf(stderr, "fault sweep: %ld calls x %zu errors, %d publishes "
			"failed cleanly\n",
		total, each, failed_runs);
	free(dst);
	free(count);
}
END_TEST

static int put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, text, strlen(text));
	close(fd);
	return w == (ssize_t)strlen(text) ? 0 : -1;
}

/* Enters a user and mount namespace where this process is root, so a
 * tmpfs can be mounted without privileges; 0 when that is not allowed. */
static int private_mounts(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	char map[64];

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return 0;
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
	if (put("/proc/self/uid_map", map) < 0 ||
	    put("/proc/self/setgroups", "deny") < 0)
		return 0;
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
	if (put("/proc/self/gid_map", map) < 0)
		return 0;
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

static int no_debris(void *dst)
{
	char *left = debris(dst, 1);
	free(left);
	return left == NULL;
}

/* A file of another user's in a directory others may write is opened to
 * read its ACL: gone or replaced as it is (ENOENT on each open in turn,
 * through openat2), the read is retried or the publish fails, and never
 * goes through without the file. */
START_TEST(test_a_file_gone_as_its_acl_is_read_is_not_left_out)
{
	char *shared = tu_path(src, "shared"), *f = tu_path(shared, "f");
	char *count = tu_path(tmp, "count"), *dst = tu_path(tmp, "dst");
	char *got = tu_path(dst, "shared/f"), *err;
	tu_write(shared, "f", "theirs\n", 0644);
	ck_assert_int_eq(chmod(shared, 01777), 0);
	ck_assert_int_eq(chown(f, 2004, 2004), 0);
	setenv("FAULT_ONLY", "openat2", 1);
	ck_assert_int_eq(once(dst, 0, "ENOENT", count, &err), 0);
	free(err);
	long total = counted_calls(count);
	ck_assert_msg(total >= 2, "%ld calls counted: is the shim loaded?",
		      total);
	for (long n = 1; n <= total; n++) {
		tu_rmrf(dst);
		int rc = once(dst, n, "ENOENT", NULL, &err);
		ck_assert_msg(rc == 0 || rc == 1, "call %ld: exit %d: %s", n, rc,
			      err);
		ck_assert_msg(strstr(err, "may not read") == NULL,
			      "call %ld: %s", n, err);
		char *text = rc == 0 ? tu_read(got, NULL) : NULL;
		ck_assert_msg(rc == 1 || (text && strcmp(text, "theirs\n") == 0),
			      "call %ld: published without shared/f: %s", n, err);
		free(text);
		free(err);
	}
	unsetenv("FAULT_ONLY");
	free(got);
	free(dst);
	free(count);
	free(f);
	free(shared);
}
END_TEST

START_TEST(test_full_disk_fails_cleanly_and_recovers)
{
	char *mnt = tu_path(tmp, "small");
	tu_mkdirs(mnt, 0755);
	/* The user namespace is entered in the forked test process only. */
	ck_assert_msg(private_mounts() &&
			      mount("tmpfs", mnt, "tmpfs", 0,
				    "size=512k,mode=0755") == 0,
		      "this test mounts a tmpfs (as root): %s", strerror(errno));
	char *dst = tu_path(mnt, "dst"), *logpath = tu_path(tmp, "daemon.log");
	char buf[100000];
	memset(buf, 'f', sizeof(buf));
	tu_write(src, "a", "small\n", 0644);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "20", "--log-level", "debug", NULL};
	pid_t pid = tu_spawn(argv, logpath);
	struct tu_pair p = {src, dst};
	ck_assert(tu_wait_for(tu_trees_equal, &p, 5000));
	/* 6 x 100 KB do not fit in 512 KB next to the live generation. */
	for (int i = 0; i < 6; i++) {
		char n[16];
		snprintf(n, sizeof(n), "big%d", i);
		tu_write_len(src, n, buf, sizeof(buf), 0644);
	}
	for (long long end = tu_now_ms() + tu_scale(5000); tu_now_ms() < end;
	     tu_nap(20))
		if (tu_file_count(logpath, "No space left on device") > 0)
			break;
	ck_assert_int_gt(tu_file_count(logpath, "No space left on device"), 0);
	/* The old generation is live and whole, and nothing half-written
	 * stays behind to fill the disk. */
	char *f = tu_path(dst, "a");
	char *d = tu_read(f, NULL);
	ck_assert_str_eq(d, "small\n");
	ck_assert_int_eq(kill(pid, 0), 0);
	/* Space comes back: it converges, without a restart. */
	for (int i = 3; i < 6; i++) {
		char n[64];
		snprintf(n, sizeof(n), "%s/big%d", src, i);
		unlink(n);
	}
	ck_assert_msg(tu_wait_for(tu_trees_equal, &p, 70000), "no convergence");
	/* Nothing half-written stays: the live generation and the one it
	 * replaced, no more. */
	ck_assert_msg(tu_generations(dst) <= 2, "%d generations",
		      tu_generations(dst));
	/* The error file goes once the publish that went through has been
	 * reported, just after its generation went live. */
	ck_assert_msg(tu_wait_for(no_debris, dst, 5000), "%s left behind",
		      debris(dst, 1));
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	free(d);
	free(f);
	free(dst);
	free(logpath);
	free(mnt);
}
END_TEST

/* A read-only target, as the shipped unit's ProtectSystem=strict makes
 * one outside ReadWritePaths=: the error says so, under systemd only. */
START_TEST(test_read_only_target_names_the_fix_under_systemd)
{
	char *mnt = tu_path(tmp, "ro");
	tu_mkdirs(mnt, 0755);
	ck_assert_msg(private_mounts() &&
			      mount("tmpfs", mnt, "tmpfs", MS_RDONLY,
				    "size=64k,mode=0755") == 0,
		      "this test mounts a tmpfs (as root): %s", strerror(errno));
	char *dst = tu_path(mnt, "dst"), *logpath = tu_path(tmp, "daemon.log");
	tu_write(src, "a", "a\n", 0644);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "20", NULL};
	/* Without systemd, the plain error; under it (systemd sets
	 * INVOCATION_ID) the daemon says where the fix is.  Both keep
	 * retrying. */
	for (int systemd = 0; systemd < 2; systemd++) {
		if (systemd)
			setenv("INVOCATION_ID",
			       "0123456789abcdef0123456789abcdef", 1);
		else
			unsetenv("INVOCATION_ID");
		unlink(logpath);
		pid_t pid = tu_spawn(argv, logpath);
		for (long long end = tu_now_ms() + tu_scale(5000);
		     tu_now_ms() < end; tu_nap(20))
			if (tu_file_count(logpath, "retrying") > 0)
				break;
		ck_assert_int_gt(tu_file_count(logpath, "Read-only file system"),
				 0);
		ck_assert_int_eq(tu_file_count(logpath, "ReadWritePaths="),
				 systemd);
		ck_assert_int_eq(kill(pid, 0), 0);
		ck_assert_int_eq(kill(pid, SIGTERM), 0);
		ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
		/* --once says the same, and exits 1. */
		const char *once[] = {tu_bin(), "--source", src, "--target", dst,
				      "--once", NULL};
		unlink(logpath);
		pid = tu_spawn(once, logpath);
		ck_assert_int_eq(tu_wait_exit(pid, 10000), 1);
		ck_assert_int_gt(tu_file_count(logpath, "Read-only file system"),
				 0);
		ck_assert_int_eq(tu_file_count(logpath, "ReadWritePaths="),
				 systemd);
	}
	unsetenv("INVOCATION_ID");
	free(dst);
	free(logpath);
	free(mnt);
}
END_TEST

/* metrics_listen refused an Internet socket, as the shipped unit's
 * RestrictAddressFamilies= does until a drop-in allows one: the error
 * says so, under systemd only, and the daemon publishes on. */
START_TEST(test_refused_metrics_socket_names_the_fix_under_systemd)
{
	char *dst = tu_path(tmp, "dst"), *logpath = tu_path(tmp, "daemon.log");
	char *conf = tu_path(tmp, "atomsync.conf"), *text;
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmetrics_listen = 127.0.0.1:%d\n"
				  "[sync:a]\nsource = %s\ntarget = %s\n",
				  tu_free_port(), src, dst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	tu_write(src, "a", "a\n", 0644);
	char *preload;
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	/* An ASan build wants its runtime first; the shim only wraps libc. */
	const char *argv[] = {"env", preload, "FAULT_INET=1",
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--config", conf, NULL};
	struct tu_pair p = {src, dst};
	for (int systemd = 0; systemd < 2; systemd++) {
		if (systemd)
			setenv("INVOCATION_ID",
			       "0123456789abcdef0123456789abcdef", 1);
		else
			unsetenv("INVOCATION_ID");
		unlink(logpath);
		pid_t pid = tu_spawn(argv, logpath);
		ck_assert(tu_wait_for(tu_trees_equal, &p, 5000));
		/* Started (signals handled): the target is in step already
		 * on the second round, and the metrics error comes before
		 * the signal handlers. */
		tu_wait_text(logpath, "; watching", 1, 5000, logpath);
		ck_assert_int_eq(tu_file_count(logpath,
					       "Address family not supported"),
				 1);
		ck_assert_int_eq(tu_file_count(logpath,
					       "RestrictAddressFamilies="),
				 systemd);
		ck_assert_int_eq(kill(pid, SIGTERM), 0);
		ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	}
	unsetenv("INVOCATION_ID");
	free(preload);
	free(text);
	free(conf);
	free(dst);
	free(logpath);
}
END_TEST

/* Threads of process `pid`, from /proc. */
static int threads_of(pid_t pid)
{
	char path[64], *text;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	text = tu_read(path, NULL);
	const char *t = text ? strstr(text, "\nThreads:") : NULL;
	int n = t ? atoi(t + 9) : 0;
	free(text);
	return n;
}

struct flushing {
	pid_t pid;
	int want;
};

static int many_flushing(void *arg)
{
	const struct flushing *f = arg;
	return threads_of(f->pid) >= f->want;
}

/* Starts atomsyncd --once on dst with the calls named (comma-separated)
 * hanging while the file `hang` exists, which this creates. */
static pid_t spawn_hung_once(const char *dst, const char *calls,
			     const char *hang, const char *logpath)
{
	char *preload, *hang_calls, *hang_while;

	tu_write(tmp, "hang", "", 0644);
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	ck_assert_int_ge(asprintf(&hang_calls, "FAULT_HANG=%s", calls), 0);
	ck_assert_int_ge(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	const char *argv[] = {"env", preload, hang_calls, hang_while,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", dst,
			      "--once", NULL};
	pid_t pid = tu_spawn(argv, logpath);
	free(preload);
	free(hang_calls);
	free(hang_while);
	return pid;
}

/* A new directory on a disk: in memory, nothing is flushed. */
static char *disk_dir(void)
{
	char *disk = tu_mkdtemp();

	ck_assert_msg(!tu_in_memory(disk),
		      "%s is in memory: set TMPDIR to a directory on a disk",
		      disk);
	return disk;
}

START_TEST(test_flushes_of_a_publish_are_issued_together)
{
	char *disk = disk_dir();
	char *dst = tu_path(disk, "dst"), *hang = tu_path(tmp, "hang");
	char *logpath = tu_path(tmp, "once.log"), *err = NULL, dir[32];

	/* 30 new directories and a new file to flush, in one publish. */
	for (int i = 0; i < 30; i++) {
		snprintf(dir, sizeof(dir), "d%02d/f", i);
		tu_write(src, dir, "1", 0644);
	}
	ck_assert_int_eq(once(dst, -1, "EIO", NULL, &err), 0);
	free(err);
	tu_write(src, "d00/f", "22", 0644);
	pid_t pid = spawn_hung_once(dst, "fsync", hang, logpath);
	/* Every fsync hangs: they are all under way at once, each in a
	 * thread of its own, rather than one after another. */
	struct flushing f = {pid, 8};
	int together = tu_wait_for(many_flushing, &f, 5000);
	int seen = threads_of(pid);
	unlink(hang);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	ck_assert_msg(together, "%d threads flushing", seen);
	assert_copy(dst);
	tu_rmrf(disk);
	free(disk);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

/* A generation with this many new files and directories is flushed
 * while it is written as well as once complete (src/flush.h). */
#define EARLY_OBJECTS 4096

/* Runs --once on dst counting its calls of `call` alone, the Nth of them
 * (0: none) failing with EIO: its exit status, the calls in *calls. */
static int once_counting(const char *dst, const char *call, long nth,
			 long *calls, char **err)
{
	char *count = tu_path(tmp, "calls.count");

	setenv("FAULT_ONLY", call, 1);
	int rc = once(dst, nth, "EIO", count, err);
	unsetenv("FAULT_ONLY");
	*calls = counted_calls(count);
	unlink(count);
	free(count);
	return rc;
}

static int once_syncfs(const char *dst, long nth, long *calls, char **err)
{
	return once_counting(dst, "syncfs", nth, calls, err);
}

START_TEST(test_a_large_generation_is_flushed_while_written)
{
	char *disk = disk_dir();
	char *dst = tu_path(disk, "dst"), *dst2 = tu_path(disk, "dst2");
	char *err = NULL, name[32];
	long calls;

	for (int i = 0; i < EARLY_OBJECTS + 100; i++) {
		snprintf(name, sizeof(name), "d%d/f%05d", i % 10, i);
		tu_write(src, name, "x", 0644);
	}
	ck_assert_int_eq(once_syncfs(dst, 0, &calls, &err), 0);
	/* One asked for on the way, once 4,096 were written, and the last. */
	ck_assert_msg(calls == 2, "%ld syncfs() calls: %s", calls, err);
	free(err);
	assert_copy(dst);

	/* The one on the way fails: the publish fails, with nothing of the
	 * generation left, and the next run makes it. */
	int rc = once_syncfs(dst2, 1, &calls, &err);
	ck_assert_msg(rc == 1 && strstr(err, "flushing"), "exit %d: %s", rc,
		      err);
	ck_assert_msg(calls == 1, "%ld syncfs() calls: %s", calls, err);
	free(err);
	char *data = tu_path(dst2, "..data"), *left = debris(dst2, 0);
	ck_assert_msg(access(data, F_OK) < 0, "%s is there", data);
	ck_assert_msg(left == NULL, "%s left behind", left);
	ck_assert_int_eq(tu_generations(dst2), 0);
	ck_assert_int_eq(once(dst2, -1, NULL, NULL, &err), 0);
	free(err);
	assert_copy(dst2);

	/* The last fails after the one on the way went through: the same. */
	char *dst3 = tu_path(disk, "dst3"), *data3 = tu_path(dst3, "..data");
	rc = once_syncfs(dst3, 2, &calls, &err);
	ck_assert_msg(rc == 1 && strstr(err, "flushing") && calls == 2,
		      "exit %d, %ld syncfs() calls: %s", rc, calls, err);
	free(err);
	ck_assert_msg(access(data3, F_OK) < 0, "%s is there", data3);
	ck_assert_int_eq(tu_generations(dst3), 0);
	tu_rmrf(disk);
	free(dst3);
	free(data3);
	free(data);
	free(disk);
	free(dst);
	free(dst2);
}
END_TEST

/* A large file copied into a generation to be flushed is sent on to the
 * disk 8 MiB at a time as it is copied (src/fsutil.c), so that the flush
 * at the end waits for the last part only.  Smaller files, and a copy
 * that is not to be flushed, are left to the flush. */
START_TEST(test_a_large_file_is_written_back_as_it_is_copied)
{
	char *disk = disk_dir();
	char *dst = tu_path(disk, "dst"), *dst2 = tu_path(disk, "dst2");
	char *err = NULL, *big = malloc(20 << 20);
	long calls;

	ck_assert_ptr_nonnull(big);
	memset(big, 'b', 20 << 20);
	tu_write_len(src, "big", big, 20 << 20, 0644);
	memset(big, 's', 1 << 20);
	tu_write_len(src, "small", big, 1 << 20, 0644);
	ck_assert_int_eq(once_counting(dst, "sync_file_range", 0, &calls, &err),
			 0);
	/* 20 MiB: at least 8 + 8 + 4. */
	ck_assert_msg(calls >= 3 && calls <= 20, "%ld calls: %s", calls, err);
	free(err);
	assert_copy(dst);
	/* Only the small file copied again. */
	tu_write_len(src, "small", big, (1 << 20) - 1, 0644);
	ck_assert_int_eq(once_counting(dst, "sync_file_range", 0, &calls, &err),
			 0);
	ck_assert_msg(calls == 0, "%ld calls: %s", calls, err);
	free(err);
	/* Not to be flushed. */
	once_nofsync = true;
	ck_assert_int_eq(once_counting(dst2, "sync_file_range", 0, &calls, &err),
			 0);
	once_nofsync = false;
	ck_assert_msg(calls == 0, "%ld calls: %s", calls, err);
	free(err);
	assert_copy(dst2);
	tu_rmrf(disk);
	free(big);
	free(disk);
	free(dst);
	free(dst2);
}
END_TEST

/* Past the 50 ms grace period of the generation --once replaced last
 * (so that it is recycled), `rel` changed to `text` and --once run: the
 * syncfs() calls it made. */
static long recycled_change(const char *dst, const char *rel,
			    const char *text)
{
	char *err = NULL;
	long calls;
	long long due = tu_now_ms() + 100;

	while (tu_now_ms() < due)
		tu_nap(10); /* the grace period itself is what is waited for */
	tu_write(src, rel, text, 0644);
	ck_assert_int_eq(once_syncfs(dst, 0, &calls, &err), 0);
	ck_assert_msg(strstr(err, "1 changed") != NULL, "%s", err);
	free(err);
	return calls;
}

/* The files a publish takes from the live generation (linked forward,
 * or kept in the one it recycles) may not be on disk when that one was
 * published without fsync: a publish with fsync then flushes them too,
 * with syncfs().  From one recorded flushed, only what it wrote is. */
START_TEST(test_files_of_an_unflushed_generation_are_flushed_when_reused)
{
	char *disk = disk_dir();
	char *dst = tu_path(disk, "dst"), *err = NULL, name[32];
	long calls;

	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "d%d/f%02d", i % 4, i);
		tu_write(src, name, "1", 0644);
	}
	once_grace = "50";
	once_nofsync = true;
	ck_assert_int_eq(once_syncfs(dst, 0, &calls, &err), 0);
	once_nofsync = false;
	ck_assert_msg(calls == 0, "%ld syncfs() calls: %s", calls, err);
	free(err);
	calls = recycled_change(dst, "d0/f00", "2");
	ck_assert_msg(calls == 1, "%ld syncfs() calls", calls);
	calls = recycled_change(dst, "d0/f00", "3");
	ck_assert_msg(calls == 0, "%ld syncfs() calls", calls);
	assert_copy(dst);
	tu_rmrf(disk);
	free(disk);
	free(dst);
}
END_TEST

/* Recycled, a generation has only what changed to write: nothing is
 * flushed on the way, and a few new entries each with fsync(). */
START_TEST(test_a_recycled_generation_is_not_flushed_on_the_way)
{
	char *disk = disk_dir();
	char *dst = tu_path(disk, "dst"), *err = NULL, name[32];
	long calls;

	for (int i = 0; i < EARLY_OBJECTS + 100; i++) {
		snprintf(name, sizeof(name), "d%05d/f", i);
		tu_write(src, name, "1", 0644);
	}
	once_grace = "50";
	ck_assert_int_eq(once_syncfs(dst, 0, &calls, &err), 0);
	free(err);
	tu_write(src, "d00000/f", "2", 0644);
	ck_assert_int_eq(once_syncfs(dst, 0, &calls, &err), 0);
	free(err);
	calls = recycled_change(dst, "d00000/f", "3");
	ck_assert_msg(calls == 0, "%ld syncfs() calls", calls);
	assert_copy(dst);
	tu_rmrf(disk);
	free(disk);
	free(dst);
}
END_TEST

/* A standby is flushed once linked, not on the way: a change stops it
 * at once, and its publish must not wait for a flush first. */
START_TEST(test_a_standby_is_not_flushed_while_linked)
{
	char *disk = disk_dir();
	char *dst = tu_path(disk, "dst"), *logpath = tu_path(tmp, "daemon.log");
	char *count = tu_path(tmp, "syncfs.count"), name[32];
	char *preload, *counted;

	/* More new directories than one flush on the way is asked for
	 * after, in the standby as in the first publish (and fewer than
	 * two: asks not yet taken are made once). */
	for (int i = 0; i < EARLY_OBJECTS + 100; i++) {
		snprintf(name, sizeof(name), "d%05d", i);
		char *dir = tu_path(src, name);
		tu_mkdirs(dir, 0755);
		free(dir);
	}
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	ck_assert_int_ge(asprintf(&counted, "FAULT_COUNT=%s", count), 0);
	const char *argv[] = {"env", preload, "FAULT_ONLY=syncfs", counted,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", dst,
			      "--log-level", "debug", NULL};
	pid_t pid = tu_spawn(argv, logpath);
	tu_wait_text(logpath, "standby generation linked", 1, 60000, logpath);
	kill(pid, SIGTERM);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	long calls = counted_calls(count);
	/* The first publish's 4,196 new directories: one on the way and
	 * the last; the standby's: the last alone. */
	ck_assert_msg(calls == 3, "%ld syncfs() calls", calls);
	assert_copy(dst);
	tu_rmrf(disk);
	free(preload);
	free(counted);
	free(count);
	free(logpath);
	free(disk);
	free(dst);
}
END_TEST

/* A directory removed once the walk opened it reads as ENOENT: that is
 * a source that changed while it was read, tried again, not a missing
 * source to wait for.  The second directory read fails so, once. */
START_TEST(test_a_directory_removed_while_read_is_a_torn_read)
{
	char *preload, *err = NULL, *dst = tu_path(tmp, "dst");

	tu_write(src, "sub/f", "1", 0644);
	tu_write(src, "top", "1", 0644);
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	const char *argv[] = {"env", preload, "FAULT_ONLY=getdents64",
			      "FAULT_NTH=3", "FAULT_ERRNO=ENOENT",
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", dst,
			      "--once", "--log-level", "debug", NULL};
	int rc = tu_run(argv, NULL, &err, 30000);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
	ck_assert_msg(strstr(err, "/sub: changed while being read; retrying"),
		      "%s", err);
	assert_copy(dst);
	free(err);
	free(preload);
	free(dst);
}
END_TEST

/* tmpfs keeps nothing across a reboot and its fsync() does nothing: a
 * publish there issues none (each one would hang here). */
START_TEST(test_a_target_in_memory_is_not_flushed)
{
	char mem[] = "/dev/shm/atomsync-test.XXXXXX";
	ck_assert_msg(mkdtemp(mem) != NULL, "mkdtemp %s: %s", mem,
		      strerror(errno));
	ck_assert_msg(tu_in_memory(mem), "/dev/shm is not a tmpfs");
	char *dst = tu_path(mem, "dst"), *hang = tu_path(tmp, "hang");
	char *logpath = tu_path(tmp, "once.log");
	tu_write(src, "d/f", "1", 0644);
	tu_write(src, "g", "2", 0644);
	pid_t pid = spawn_hung_once(dst, "fsync,fdatasync,syncfs", hang,
				    logpath);
	int rc = tu_wait_exit(pid, 10000);
	unlink(hang);
	if (rc == -1)
		ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	ck_assert_msg(rc == 0, "atomsyncd --once: %d (-1: hung flushing)", rc);
	assert_copy(dst);
	tu_rmrf(mem);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

/* A generation of `dst` with mode 0700: one being written. */
static int private_generation(void *arg)
{
	return tu_generations_of_mode(arg, 0700, NULL) > 0;
}

/* SIGKILL in the middle of recycling a replaced generation into the next
 * one (held where it removes a changed file's old name): the live
 * generation stays whole, and the next run removes the half-recycled one
 * and converges. */
START_TEST(test_kill_in_the_middle_of_a_recycle)
{
	char *dst = tu_path(tmp, "dst"), *hang = tu_path(tmp, "hang");
	char *logpath = tu_path(tmp, "once.log");
	const char *run[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--grace-ms", "50", NULL};
	char *err = NULL;

	tu_write(src, "a", "v1\n", 0644);
	tu_write(src, "d/b", "b\n", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	tu_write(src, "a", "v2\n", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	long long due = tu_now_ms() + 100;
	copy_tree(src, v1);
	char *live = tu_live(dst);
	while (tu_now_ms() < due)
		tu_nap(10); /* the grace period itself is what is waited for */
	tu_write(src, "a", "v3\n", 0644);
	tu_write(tmp, "hang", "", 0644);
	char *preload, *hang_while;
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	ck_assert_int_ge(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	const char *argv[] = {"env", preload, "FAULT_HANG=unlinkat", hang_while,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", dst,
			      "--once", "--grace-ms", "50", NULL};
	pid_t pid = tu_spawn(argv, logpath);
	ck_assert_msg(tu_wait_for(private_generation, dst, 5000),
		      "no generation being recycled");
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	tu_wait_exit(pid, 5000);
	unlink(hang);
	/* Still the version before, whole. */
	char *now = tu_live(dst);
	ck_assert_str_eq(now, live);
	char *why = tu_diff_trees(v1, dst);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	ck_assert_msg(strstr(err, "left by an interrupted publish"), "%s", err);
	free(err);
	why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_int_eq(tu_generations(dst), 2);
	ck_assert_int_eq(private_generation(dst), 0);
	free(now);
	free(live);
	free(preload);
	free(hang_while);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

/* Whether the file `name` in the directory `dfd` holds `len` bytes of
 * `c` and nothing else. */
static bool holds_all(int dfd, const char *name, char c, size_t len)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	char buf[4096];
	size_t got = 0;
	ssize_t r;
	bool ok = fd >= 0;

	while (ok && (r = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < r; i++)
			ok = ok && buf[i] == c;
		got += (size_t)r;
	}
	if (fd >= 0)
		close(fd);
	return ok && got == len;
}

/* A --once into `dst` (grace period a minute; or of the mapping of the
 * file `conf`), held in each copy_file_range() while tmp/hang exists
 * (made here; the caller removes it), its log in `logpath`, a byte added
 * to tmp/tally for each copy held: once the first is held, its pid. */
static pid_t once_held_in_a_copy(const char *dst, const char *conf,
				 const char *logpath)
{
	char *hang = tu_path(tmp, "hang"), *said = tu_path(tmp, "hanging");
	char *tally = tu_path(tmp, "tally");
	char *preload, *hang_while, *hang_say, *hang_tally;

	tu_write(tmp, "hang", "", 0644);
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	ck_assert_int_ge(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	ck_assert_int_ge(asprintf(&hang_say, "FAULT_HANG_SAY=%s", said), 0);
	ck_assert_int_ge(asprintf(&hang_tally, "FAULT_HANG_TALLY=%s", tally), 0);
	const char *argv[] = {"env", preload, "FAULT_HANG=copy_file_range",
			      hang_while, hang_say, hang_tally,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", dst,
			      "--once", "--grace-ms", "60000", NULL};
	if (conf) {
		argv[8] = "--config";
		argv[9] = conf;
		argv[10] = "--once";
		argv[11] = NULL;
	}
	pid_t pid = tu_spawn(argv, logpath);
	ck_assert_msg(tu_wait_for(tu_exists, said, 10000), "the copy never started");
	free(preload);
	free(hang_while);
	free(hang_say);
	free(hang_tally);
	free(tally);
	free(said);
	free(hang);
	return pid;
}

/* A reader that holds the replaced generation a --once run recycles
 * within its grace period (root's: mode 0700 keeps no one else out of
 * a directory it already holds).  Held in the middle of the copy of a
 * changed file, the run has left the name missing there, not a file
 * half written; once it is done, the name holds the whole new file. */
START_TEST(test_a_recycled_generation_shows_no_half_written_file)
{
	char *dst = tu_path(tmp, "dst"), *hang = tu_path(tmp, "hang");
	char *logpath = tu_path(tmp, "once.log");
	const char *run[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--grace-ms", "60000", NULL};
	size_t len = 1u << 20; /* copied with copy_file_range() */
	char *data = malloc(len), *err = NULL;

	memset(data, 'A', len);
	tu_write_len(src, "big", data, len, 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	char *first = tu_live(dst), *fp = tu_path(dst, first);
	memset(data, 'B', len);
	tu_write_len(src, "big", data, len, 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	int held = open(fp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(held, 0);
	memset(data, 'C', len);
	tu_write_len(src, "big", data, len, 0644);

	pid_t pid = once_held_in_a_copy(dst, NULL, logpath);
	struct stat st;
	int fd = openat(held, "big", O_RDONLY | O_CLOEXEC);
	int seen = fd < 0 ? -errno : 0;
	if (fd >= 0 && fstat(fd, &st) < 0)
		st.st_size = -1;
	if (fd >= 0)
		close(fd);
	unlink(hang);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	ck_assert_msg(seen == -ENOENT, "big in the recycled generation: %s",
		      seen ? strerror(-seen) : "present, half written");
	/* Recycled: the generation held is the live one now, whole. */
	ck_assert(holds_all(held, "big", 'C', len));
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_int_eq(tu_generations(dst), 2);
	close(held);
	free(first);
	free(fp);
	free(data);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

static int tallied_two(void *arg)
{
	struct stat st;

	return stat(arg, &st) == 0 && st.st_size >= 2;
}

/* A generation written whole of a few large files is copied by two
 * threads, each its own top-level names, as one of thousands of small
 * files is: held in copy_file_range(), two copies are under way at
 * once.  Four files of 1 MiB, or two of 1 and 3 MiB, whose middle by
 * weight falls in the last.  Let go, the run publishes every file
 * whole. */
START_TEST(test_a_few_large_files_are_copied_by_two_threads)
{
	char *dst = tu_path(tmp, "dst"), *hang = tu_path(tmp, "hang");
	char *tally = tu_path(tmp, "tally"), *logpath = tu_path(tmp, "once.log");
	/* Copied with copy_file_range(): each over 64 KiB. */
	const size_t mib[2][4] = {{1, 1, 1, 1}, {1, 3, 0, 0}};
	char *data = malloc(3u << 20), name[2] = "a";

	for (int k = 0; k < 4 && mib[_i][k]; k++) {
		memset(data, 'a' + k, mib[_i][k] << 20);
		name[0] = (char)('a' + k);
		tu_write_len(src, name, data, mib[_i][k] << 20, 0644);
	}
	pid_t pid = once_held_in_a_copy(dst, NULL, logpath);
	bool two = tu_wait_for(tallied_two, tally, 10000);
	unlink(hang);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	ck_assert_msg(two, "the files were copied one at a time");
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dfd, 0);
	for (int k = 0; k < 4 && mib[_i][k]; k++) {
		name[0] = (char)('a' + k);
		ck_assert_msg(holds_all(dfd, name, name[0], mib[_i][k] << 20),
			      "%s", name);
	}
	close(dfd);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	free(data);
	free(tally);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

/* Where a file written unnamed cannot be named (no link by descriptor,
 * no /proc), the publish goes through all the same, the changed files
 * written under their names, and says once what that costs. */
START_TEST(test_unnamed_files_that_cannot_be_named_are_written_named)
{
	char *dst = tu_path(tmp, "dst"), *err = NULL, *preload;
	const char *run[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--grace-ms", "60000", NULL};

	tu_write(src, "a", "1", 0644);
	tu_write(src, "d/b", "1", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	tu_write(src, "a", "22", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	/* Within the grace period: recycled, each of them changed. */
	tu_write(src, "a", "333", 0644);
	tu_write(src, "d/b", "333", 0644);
	ck_assert_int_ge(asprintf(&preload, "LD_PRELOAD=%s", shim()), 0);
	const char *argv[] = {"env", preload, "FAULT_NO_FD_LINK=1",
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", dst,
			      "--once", "--grace-ms", "60000", NULL};
	ck_assert_int_eq(tu_run(argv, NULL, &err, 20000), 0);
	const char *say = strstr(err, "cannot name a file written unnamed");
	ck_assert_msg(say && !strstr(say + 1, "cannot name a file"), "%s", err);
	/* Each counted once, though the first was written twice. */
	ck_assert_msg(strstr(err, "2 changed, 0 removed; 2 copied,"), "%s",
		      err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_int_eq(tu_generations(dst), 2);
	free(err);
	free(preload);
	free(dst);
}
END_TEST

/* Two runs of `run` into `dst`: the first publishes the 1 MiB file
 * `big` (under d/), the second a change beside it; then big changes, for
 * a third run to recycle the first generation and write it anew there.
 * Returns d of that generation, held (as its owner can: it is renamed
 * as it is recycled). */
static int hold_d_to_recycle(const char *const run[], const char *dst,
			     const char *big)
{
	size_t len = 1u << 20; /* copied with copy_file_range() */
	char *data = malloc(len), *err = NULL;

	memset(data, 'A', len);
	tu_write_len(src, big, data, len, 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	char *first = tu_live(dst), *fp = tu_path(dst, first);
	char *d = tu_path(fp, "d");
	int held = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(held, 0);
	tu_write(src, "d/x", "2", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	memset(data, 'B', len);
	tu_write_len(src, big, data, len, 0644);
	free(d);
	free(fp);
	free(first);
	free(data);
	return held;
}

/* The directory a changed file is written for removed while the file
 * is written unnamed (as the user an `owner` mapping gives it to can do):
 * naming it fails, and so does that publish, but naming is not given up
 * for the changes after it, which a reader still in a recycled
 * generation would then find half written.  Not either when no inode is
 * left to try naming with (_i 1: they can use them up meanwhile). */
START_TEST(test_a_directory_removed_under_an_unnamed_file_keeps_naming_on)
{
	if (_i == 1)
		ck_assert_int_eq(setenv("FAULT_TMPFILE_AFTER_HANG", "1", 1), 0);
	char *dst = tu_path(tmp, "dst"), *hang = tu_path(tmp, "hang");
	char *logpath = tu_path(tmp, "once.log");
	const char *run[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--grace-ms", "60000", NULL};
	char *err = NULL;
	int held = hold_d_to_recycle(run, dst, "d/e/big");
	pid_t pid = once_held_in_a_copy(dst, NULL, logpath);
	unsetenv("FAULT_TMPFILE_AFTER_HANG");
	/* What the old file's name still holds goes first. */
	(void)unlinkat(held, "e/big", 0);
	int gone = unlinkat(held, "e", AT_REMOVEDIR) == 0 ? 0 : -errno;
	unlink(hang);
	int rc = tu_wait_exit(pid, 20000);
	ck_assert_msg(gone == 0, "rmdir d/e: %s", strerror(-gone));
	ck_assert_int_eq(rc, 1);
	close(held);
	ck_assert_int_eq(tu_file_count(logpath, "naming d/e/big: No such file"),
			 1);
	ck_assert_int_eq(tu_file_count(logpath, "cannot name a file"), 0);
	/* The next run publishes it. */
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s: %s", why, err);
	free(err);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

/* With owner, that user can put a directory of theirs at the name of a
 * changed file while it is written unnamed: the name is cleared (what
 * is theirs moved aside) and the file named, rather than the publish
 * failing on it. */
START_TEST(test_a_name_taken_while_a_file_is_written_is_cleared)
{
	char *dst = tu_path(tmp, "dst"), *hang = tu_path(tmp, "hang");
	char *logpath = tu_path(tmp, "once.log"), *text;

	ck_assert_int_gt(asprintf(&text, "[sync:m]\nsource = %s\ntarget = %s\n"
					 "owner = 2006\ngrace_ms = 60000\n",
				  src, dst),
			 0);
	tu_write(tmp, "m.conf", text, 0644);
	char *conf = tu_path(tmp, "m.conf");
	const char *run[] = {tu_bin(), "--config", conf, "--once", NULL};
	int held = hold_d_to_recycle(run, dst, "d/big");
	pid_t pid = once_held_in_a_copy(dst, conf, logpath);
	/* 2006's, with a file of theirs in it, at the name. */
	(void)unlinkat(held, "big", 0);
	ck_assert_int_eq(mkdirat(held, "big", 0755), 0);
	int in = openat(held, "big", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(in, 0);
	char *theirs = tu_path(tmp, "theirs");
	tu_write(tmp, "theirs", "theirs", 0644);
	ck_assert_int_eq(renameat(AT_FDCWD, theirs, in, "theirs"), 0);
	free(theirs);
	ck_assert_int_eq(fchownat(in, "theirs", 2006, 2006, 0), 0);
	ck_assert_int_eq(fchown(in, 2006, 2006), 0);
	close(in);
	unlink(hang);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	ck_assert_int_eq(tu_file_count(logpath, "moved aside"), 1);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	close(held);
	free(conf);
	free(text);
	free(hang);
	free(logpath);
	free(dst);
}
END_TEST

/* A tree of ours too deep for the descriptors left (one a level) to
 * remove from a recycled generation: that publish fails, and the tree is
 * removed once they are back, never moved aside as if it were another
 * user's. */
START_TEST(test_our_tree_short_of_descriptors_is_not_moved_aside)
{
	char *dst = tu_path(tmp, "dst"), *err = NULL, *cmd, deep[512] = "deep";
	const char *run[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--grace-ms", "60000", NULL};

	for (int i = 0; i < 120; i++)
		strcat(deep, "/a");
	strcat(deep, "/f");
	tu_write(src, deep, "1", 0644);
	tu_write(src, "keep", "1", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	tu_write(src, "keep", "2", 0644);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	free(err);
	char *gone = tu_path(src, "deep");
	tu_rmrf(gone);
	/* The next run recycles the first generation, and removes deep. */
	ck_assert_int_ge(asprintf(&cmd, "ulimit -n 100 && exec '%s' --source "
					"'%s' --target '%s' --once --grace-ms "
					"60000",
				  tu_bin(), src, dst),
			 0);
	const char *few[] = {"sh", "-c", cmd, NULL};
	ck_assert_int_eq(tu_run(few, NULL, &err, 20000), 1);
	ck_assert_msg(strstr(err, "Too many open files"), "%s", err);
	ck_assert_msg(strstr(err, "aside") == NULL, "%s", err);
	free(err);
	ck_assert_int_eq(tu_run(run, NULL, &err, 20000), 0);
	char *why = tu_diff_trees(src, dst), *aside = tu_path(dst, "..atomsync.aside");
	ck_assert_msg(why == NULL, "%s: %s", why, err);
	ck_assert_int_eq(access(aside, F_OK), -1);
	free(aside);
	free(err);
	free(gone);
	free(cmd);
	free(dst);
}
END_TEST

START_TEST(test_short_of_file_descriptors)
{
	/* 40 descriptors: enough for the loop and a shallow tree, not for
	 * a tree 40 levels deep (a descriptor per level while writing). */
	char *dst = tu_path(tmp, "dst"), *logpath = tu_path(tmp, "daemon.log");
	char *cmd;
	tu_write(src, "a", "a\n", 0644);
	ck_assert_int_ge(asprintf(&cmd,
				  "ulimit -n 40 && exec '%s' --source '%s' --target "
				  "'%s' --debounce 20 --log-level debug",
				  tu_bin(), src, dst),
			 0);
	const char *argv[] = {"sh", "-c", cmd, NULL};
	pid_t pid = tu_spawn(argv, logpath);
	struct tu_pair p = {src, dst};
	ck_assert(tu_wait_for(tu_trees_equal, &p, 5000));
	char deep[4096] = "d";
	for (int i = 1; i < 60; i++)
		strcat(deep, "/d");
	strcat(deep, "/file");
	tu_write(src, deep, "deep\n", 0644);
	for (long long end = tu_now_ms() + tu_scale(5000); tu_now_ms() < end;
	     tu_nap(20))
		if (tu_file_count(logpath, "Too many open files") > 0)
			break;
	ck_assert_int_gt(tu_file_count(logpath, "Too many open files"), 0);
	ck_assert_int_eq(kill(pid, 0), 0); /* still up */
	/* Logged once, not at every retry (each of which says it is still
	 * failing, at debug level). */
	struct tu_needle retried = {logpath, "still failing: ", 2};
	ck_assert(tu_wait_for(tu_file_holds, &retried, 10000));
	ck_assert_int_le(tu_file_count(logpath, "Too many open files; retrying"), 1);
	/* A shallower tree fits: it converges without a restart. */
	char *d0 = tu_path(src, "d");
	tu_rmrf(d0);
	tu_write(src, "d/d/d/file", "shallow\n", 0644);
	ck_assert_msg(tu_wait_for(tu_trees_equal, &p, 70000), "no convergence");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	free(d0);
	free(cmd);
	free(dst);
	free(logpath);
}
END_TEST

static Suite *faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_every_failing_call_of_a_publish);
	tcase_add_test(tc, test_a_file_gone_as_its_acl_is_read_is_not_left_out);
	tcase_add_test(tc, test_full_disk_fails_cleanly_and_recovers);
	tcase_add_test(tc, test_read_only_target_names_the_fix_under_systemd);
	tcase_add_test(tc, test_refused_metrics_socket_names_the_fix_under_systemd);
	tcase_add_test(tc, test_flushes_of_a_publish_are_issued_together);
	tcase_add_test(tc, test_a_large_generation_is_flushed_while_written);
	tcase_add_test(tc, test_a_standby_is_not_flushed_while_linked);
	tcase_add_test(tc, test_a_recycled_generation_is_not_flushed_on_the_way);
	tcase_add_test(tc, test_files_of_an_unflushed_generation_are_flushed_when_reused);
	tcase_add_test(tc, test_a_large_file_is_written_back_as_it_is_copied);
	tcase_add_test(tc, test_a_target_in_memory_is_not_flushed);
	tcase_add_test(tc, test_a_directory_removed_while_read_is_a_torn_read);
	tcase_add_test(tc, test_kill_in_the_middle_of_a_recycle);
	tcase_add_test(tc, test_a_recycled_generation_shows_no_half_written_file);
	tcase_add_loop_test(tc, test_a_few_large_files_are_copied_by_two_threads,
			    0, 2);
	tcase_add_test(tc, test_unnamed_files_that_cannot_be_named_are_written_named);
	tcase_add_loop_test(tc,
			    test_a_directory_removed_under_an_unnamed_file_keeps_naming_on,
			    0, 2);
	tcase_add_test(tc, test_a_name_taken_while_a_file_is_written_is_cleared);
	tcase_add_test(tc, test_our_tree_short_of_descriptors_is_not_moved_aside);
	tcase_add_test(tc, test_short_of_file_descriptors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(faults_suite());
}
