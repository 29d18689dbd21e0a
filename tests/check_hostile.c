/* Hostile or odd input: names no one expects, paths at the limits, deep
 * and wide trees, links that lead out or around, FIFOs, files changing
 * while they are copied, unreadable files, and someone swapping symlinks
 * into the target while the daemon publishes.  Each gets the documented
 * behaviour, and the daemon stays up. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_fixture fx;
static char *tmp, *src, *dst, *logpath;
static pid_t pid;

static void setup(void)
{
	tu_fixture_setup(&fx, TU_FAST);
	tmp = fx.tmp;
	src = fx.src;
	dst = fx.dst;
	logpath = fx.log;
	pid = 0;
}

static void teardown(void)
{
	fx.pid = pid;
	tu_fixture_teardown(&fx);
}

static int once(char **err)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst, "--once",
			      NULL};
	return tu_run(argv, NULL, err, 120000);
}

static void converge(int ms)
{
	tu_converge(src, dst, ms, logpath);
}

static void start_daemon(void)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "10", "--log-level", "debug", NULL};
	pid = tu_spawn(argv, logpath);
}

static void stop_daemon(void)
{
	tu_stop(&pid, 20000);
}

START_TEST(test_odd_names_are_published_exactly)
{
	char n255[256];
	memset(n255, 'n', 255);
	n255[255] = '\0';
	const char *names[] = {"with space", "new\nline", "tab\there", "\xff\xfe\x80",
			       "caf\xc3\xa9", "back\\slash", "-leading-dash",
			       "quote\"s'", "*?[glob]", n255};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		tu_write(src, names[i], names[i], 0644);
		char *dir = tu_path("dir", names[i]);
		tu_write(src, dir, "inside", 0600);
		free(dir);
	}
	/* A dry run logs every path: one line each, with what a terminal
	 * would act on spelled out. */
	const char *dry[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--dry-run", NULL};
	char *err;
	ck_assert_int_eq(tu_run(dry, NULL, &err, 120000), 0);
	int adds = 0;
	for (const char *p = err; (p = strstr(p, "would add ")); p++)
		adds++;
	ck_assert_int_eq(adds, 21); /* 10 names, dir, 10 names in dir */
	ck_assert_int_eq(tu_lines(err), adds + 1);
	ck_assert_msg(strstr(err, "would add new\\x0aline\n"), "%s", err);
	ck_assert_msg(strstr(err, "would add dir/tab\\x09here\n"), "%s", err);
	ck_assert_msg(strstr(err, "would add \\xff\\xfe\\x80\n"), "%s", err);
	ck_assert_msg(strstr(err, "would add caf\xc3\xa9\n"), "%s", err);
	free(err);
	ck_assert_int_eq(once(&err), 0);
	free(err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	/* The state file keeps them: a second run finds nothing to do. */
	char *gen = tu_live(dst);
	ck_assert_int_eq(once(&err), 0);
	ck_assert_msg(strstr(err, "unchanged"), "%s", err);
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	/* One event, one log line: a newline in a name is not a new line. */
	ck_assert_int_eq(tu_lines(err), 1);
	free(err);
	free(gen);
	free(gen2);
}
END_TEST

START_TEST(test_paths_at_the_4096_byte_limit)
{
	/* 15 names of 255 bytes and more: a path just under the limit. */
	char *rel = calloc(1, 8192);
	char name[256];
	memset(name, 'p', 255);
	name[255] = '\0';
	for (int i = 0; i < 15; i++) {
		strcat(rel, name);
		strcat(rel, "/");
	}
	strcat(rel, "last-file"); /* 15 * 256 + 9 = 3849 bytes */
	tu_write(src, rel, "deep", 0644);
	char *err;
	ck_assert_int_eq(once(&err), 0);
	free(err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	char *gen = tu_live(dst);
	/* Over the limit: refused whole, naming the path; nothing changes. */
	char *over = calloc(1, 8192);
	strcpy(over, rel);
	*strrchr(over, '/') = '\0';
	strcat(over, "/");
	strcat(over, name); /* 15 * 256 + 255 = 4095 ... */
	strcat(over, "/x"); /* ... + 2 = 4097 bytes */
	ck_assert_uint_eq(strlen(over), 4097);
	tu_write_deep(src, over, "too deep");
	tu_write(src, "top", "changed", 0644);
	ck_assert_int_eq(once(&err), 1);
	ck_assert_msg(strstr(err, "longer than 4096 bytes"), "%s", err);
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	free(err);
	free(gen);
	free(gen2);
	free(rel);
	free(over);
}
END_TEST

START_TEST(test_200_levels_deep)
{
	char *rel = calloc(1, 1024);
	for (int i = 0; i < 200; i++)
		strcat(rel, "d/");
	strcat(rel, "bottom");
	tu_write(src, rel, "found me", 0644);
	char *err;
	ck_assert_int_eq(once(&err), 0);
	free(err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	free(rel);
}
END_TEST

START_TEST(test_12000_levels_deep_fail_cleanly_in_linear_memory)
{
	/* A tree that once overflowed the walk's stack and took memory in
	 * the square of its depth.  The walk stops at the path limit, names
	 * the path, and --once exits 1 without touching the target. */
	tu_write(src, "top", "v1", 0644);
	char *err;
	ck_assert_int_eq(once(&err), 0);
	free(err);
	char *gen = tu_live(dst);
	tu_mkdeep(src, "d", 12000);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst, "--once",
			      NULL};
	struct rusage ru;
	int rc = tu_run_rusage(argv, NULL, &err, 120000, &ru);
	ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
	ck_assert_msg(strstr(err, "longer than 4096 bytes: d/d/d/d/"), "%s", err);
	ck_assert_int_eq(tu_lines(err), 1);
	/* Linear: the whole walk of 2,048 levels fits in a few MiB more
	 * than an empty run (sanitizers add their own). */
	long limit_kib = getenv("ATOMSYNC_SANITIZED") ? 256 * 1024 : 48 * 1024;
	ck_assert_msg(ru.ru_maxrss < limit_kib, "peak RSS %ld KiB", ru.ru_maxrss);
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	free(err);
	free(gen);
	free(gen2);
	tu_rmdeep(src, "d");
}
END_TEST

START_TEST(test_deep_tree_fails_one_mapping_and_not_the_others)
{
	char *good = tu_path(tmp, "good"), *goodd = tu_path(tmp, "goodd");
	char *conf = tu_path(tmp, "atomsync.conf");
	tu_write(good, "f", "v1", 0644);
	tu_mkdeep(src, "d", 12000);
	char *text;
	ck_assert_int_gt(asprintf(&text,
				  "[sync:deep]\nsource = %s\ntarget = %s\n"
				  "[sync:good]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n",
				  src, dst, good, goodd), 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *argv[] = {tu_bin(), "--config", conf, NULL};
	pid = tu_spawn(argv, logpath);
	struct tu_pair p = {good, goodd};
	ck_assert(tu_wait_for(tu_trees_equal, &p, 10000));
	struct tu_needle n = {logpath, "longer than 4096 bytes", 1};
	ck_assert(tu_wait_for(tu_file_holds, &n, 30000));
	tu_write(good, "f", "v2", 0644);
	ck_assert(tu_wait_for(tu_trees_equal, &p, 10000));
	stop_daemon();
	tu_rmdeep(src, "d");
	free(text);
	free(conf);
	free(good);
	free(goodd);
}
END_TEST

START_TEST(test_sparse_file_stays_sparse)
{
	/* 100 GiB of which 12 KiB hold data. */
	char *f = tu_path(src, "huge");
	int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	const off_t at[] = {0, 50LL << 30, (100LL << 30) - 4096};
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pwrite(fd, "data", 4, at[i]), 4);
	ck_assert_int_eq(ftruncate(fd, 100LL << 30), 0);
	close(fd);
	char *err;
	ck_assert_int_eq(once(&err), 0);
	free(err);
	char *copy = tu_path(dst, "..data/huge");
	struct stat st;
	ck_assert_int_eq(stat(copy, &st), 0);
	ck_assert_int_eq(st.st_size, 100LL << 30);
	ck_assert_msg(st.st_blocks * 512 < (1 << 20), "%lld bytes allocated",
		      (long long)st.st_blocks * 512);
	fd = open(copy, O_RDONLY);
	char buf[8];
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(pread(fd, buf, 4, at[i]), 4);
		ck_assert(memcmp(buf, "data", 4) == 0);
	}
	ck_assert_int_eq(pread(fd, buf, 4, 1LL << 30), 4);
	ck_assert(memcmp(buf, "\0\0\0\0", 4) == 0);
	close(fd);
	/* Unchanged but compared by content (a restart without the state
	 * file): the holes are not read. */
	char *state = tu_path(dst, "..atomsync");
	ck_assert_int_eq(unlink(state), 0);
	long long t0 = tu_now_ms();
	ck_assert_int_eq(once(&err), 0);
	ck_assert_msg(strstr(err, "unchanged"), "%s", err);
	ck_assert_int_lt(tu_now_ms() - t0, tu_scale(10000));
	free(err);
	free(state);
	free(copy);
	free(f);
}
END_TEST

START_TEST(test_limits_on_files_and_bytes_name_the_key)
{
	tu_write(src, "a", "0123456789", 0644);
	tu_write(src, "b", "0123456789", 0644);
	char *conf = tu_path(tmp, "atomsync.conf");
	char *text;
	ck_assert_int_gt(asprintf(&text,
				  "[sync:s]\nsource = %s\ntarget = %s\n"
				  "max_bytes = 15\n",
				  src, dst), 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	char *err;
	ck_assert_int_eq(tu_run(argv, NULL, &err, 20000), 1);
	ck_assert_msg(strstr(err, "more than 15 bytes in files (max_bytes)"),
		      "%s", err);
	ck_assert_ptr_null(tu_live(dst));
	free(err);
	free(text);
	ck_assert_int_gt(asprintf(&text,
				  "[sync:s]\nsource = %s\ntarget = %s\n"
				  "max_files = 1\n",
				  src, dst), 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	ck_assert_int_eq(tu_run(argv, NULL, &err, 20000), 1);
	ck_assert_msg(strstr(err, "more than 1 files and directories "
				  "(max_files)"),
		      "%s", err);
	free(err);
	free(text);
	free(conf);
}
END_TEST

START_TEST(test_100000_files)
{
	char name[64];
	for (int i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "d%03d/f%05d", i % 250, i);
		tu_write(src, name, name + 5, 0644);
	}
	char *err;
	long long t0 = tu_now_ms();
	ck_assert_int_eq(once(&err), 0);
	long long first = tu_now_ms() - t0;
	ck_assert_msg(strstr(err, "100250 added"), "%s", err);
	free(err);
	t0 = tu_now_ms();
	ck_assert_int_eq(once(&err), 0);
	long long noop = tu_now_ms() - t0;
	ck_assert_msg(strstr(err, "unchanged"), "%s", err);
	free(err);
	fprintf(stderr, "100,000 files: first publish %lld ms, no-op %lld ms\n", first,
		noop);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
}
END_TEST

START_TEST(test_links_out_loops_fifos_and_sockets_do_not_stop_the_daemon)
{
	tu_write(src, "ok", "ok", 0644);
	start_daemon();
	converge(5000);
	char *p;
	p = tu_path(src, "shadow");
	ck_assert_int_eq(symlink("/etc/shadow", p), 0);
	free(p);
	p = tu_path(src, "up");
	ck_assert_int_eq(symlink("../../..", p), 0);
	free(p);
	p = tu_path(src, "loop");
	ck_assert_int_eq(symlink("loop", p), 0);
	free(p);
	p = tu_path(src, "fifo");
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	free(p);
	char *sock = tu_path(src, "sock");
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) < sizeof(sa.sun_path)) {
		strcpy(sa.sun_path, sock);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	tu_write(src, "after", "still syncing", 0644);
	converge(5000);
	for (const char *n = "shadow\0up\0loop\0fifo\0sock\0"; *n; n += strlen(n) + 1) {
		char *t = tu_path(dst, n);
		struct stat st;
		ck_assert_msg(lstat(t, &st) < 0, "%s was published", n);
		free(t);
	}
	/* Each warned about once, not at every re-scan. */
	tu_write(src, "again", "x", 0644);
	converge(5000);
	ck_assert_int_eq(tu_file_count(logpath, "shadow: symlink points outside"), 1);
	ck_assert_int_eq(tu_file_count(logpath, "loop: symlink loop"), 1);
	ck_assert_int_eq(tu_file_count(logpath, "fifo: not a regular file"), 1);
	stop_daemon();
	close(fd);
	free(sock);
}
END_TEST

/* Grows, shrinks, rewrites, removes and recreates files, as fast as it
 * can, until told to stop. */
static int hammer(void)
{
	char *stop = tu_path(tmp, "stop-hammer");
	char *big = malloc(1 << 20);
	unsigned n = 0;
	struct stat st;
	while (lstat(stop, &st) < 0 && getppid() != 1) {
		n++;
		memset(big, 'a' + (int)(n % 26), 1 << 20);
		char *p = tu_path(src, "grows");
		int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			(void)!write(fd, big, 4096);
			close(fd);
		}
		free(p);
		p = tu_path(src, "shrinks");
		if (truncate(p, (off_t)(n * 7919 % 65536)) < 0 && errno == ENOENT)
			tu_write(src, "shrinks", "start", 0644);
		free(p);
		p = tu_path(src, "vanishes");
		if (n % 2)
			unlink(p);
		else
			tu_write_len(src, "vanishes", big, 1000 + n % 5000, 0644);
		free(p);
		p = tu_path(src, "rewritten");
		fd = open(p, O_WRONLY | O_CREAT, 0644);
		if (fd >= 0) {
			for (int off = 0; off < (1 << 20); off += 65536)
				(void)!pwrite(fd, big + off, 65536, off);
			close(fd);
		}
		free(p);
	}
	free(big);
	free(stop);
	return 0;
}

START_TEST(test_files_changing_during_the_copy)
{
	tu_write(src, "steady", "steady", 0644);
	start_daemon();
	converge(5000);
	pid_t h = fork();
	ck_assert_int_ge(h, 0);
	if (h == 0)
		_exit(hammer());
	tu_nap(tu_scale(3000));
	tu_write(tmp, "stop-hammer", "", 0644);
	ck_assert_int_eq(tu_wait_exit(h, 10000), 0);
	ck_assert_msg(kill(pid, 0) == 0, "the daemon died");
	/* Once they are quiet, the target holds what they ended as. */
	converge(20000);
	stop_daemon();
}
END_TEST

START_TEST(test_unreadable_file_is_an_error_until_it_is_readable)
{
	int as_root = geteuid() == 0;
	if (as_root) {
		/* Root reads everything: run as nobody, in a directory that
		 * is sticky, as /tmp, so that nobody else may move the
		 * source away (or the unreadable file is only skipped). */
		ck_assert_int_eq(chmod(tmp, 01777), 0);
		ck_assert_int_eq(chown(src, 65534, 65534), 0);
	}
	tu_write(src, "ok", "v1", 0644);
	tu_write(src, "secret", "s", 0000);
	if (as_root) {
		char *f = tu_path(src, "ok");
		ck_assert_int_eq(chown(f, 65534, 65534), 0);
		free(f);
	}
	const char *root_argv[] = {"setpriv", "--reuid", "65534", "--regid", "65534",
				   "--clear-groups", tu_bin(), "--source", src,
				   "--target", dst, "--debounce", "10",
				   "--log-level", "debug", NULL};
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst, "--debounce",
			      "10", "--log-level", "debug", NULL};
	pid = tu_spawn(as_root ? root_argv : argv, logpath);
	for (long long end = tu_now_ms() + tu_scale(5000); tu_now_ms() < end; tu_nap(20))
		if (tu_file_count(logpath, "Permission denied; retrying") > 0)
			break;
	ck_assert_int_eq(tu_file_count(logpath, "cannot read secret (Permission denied); retrying"), 1);
	/* Retries happen (logged at debug level); the line does not repeat. */
	struct tu_needle retried = {logpath, "still failing: ", 2};
	ck_assert(tu_wait_for(tu_file_holds, &retried, 10000));
	ck_assert_int_eq(tu_file_count(logpath, "cannot read secret (Permission denied); retrying"), 1);
	char *f = tu_path(src, "secret");
	ck_assert_int_eq(chmod(f, 0644), 0);
	free(f);
	converge(10000);
	stop_daemon();
}
END_TEST

/* Swaps symlinks to `canary` into the target as fast as it can: over a
 * visible link, over a directory of the live generation, over ..data. */
static int attacker(const char *canary)
{
	char *stop = tu_path(tmp, "stop-attacker");
	struct stat st;
	unsigned n = 0;
	while (lstat(stop, &st) < 0 && getppid() != 1) {
		n++;
		char *gen = tu_live(dst);
		char buf[4096];
		if (gen) {
			/* A directory of the live generation. */
			snprintf(buf, sizeof(buf), "%s/%s/d", dst, gen);
			char moved[4200];
			snprintf(moved, sizeof(moved), "%s.moved%u", buf, n);
			if (rename(buf, moved) == 0)
				(void)!symlink(canary, buf);
			/* A file of it, replaced by a link. */
			snprintf(buf, sizeof(buf), "%s/%s/top", dst, gen);
			snprintf(moved, sizeof(moved), "%s.moved%u", buf, n);
			if (rename(buf, moved) == 0) {
				char target[4200];
				snprintf(target, sizeof(target), "%s/written", canary);
				(void)!symlink(target, buf);
			}
			free(gen);
		}
		if (n % 7 == 0) {
			/* The visible link of d. */
			snprintf(buf, sizeof(buf), "%s/d", dst);
			char tmpl[4200];
			snprintf(tmpl, sizeof(tmpl), "%s/.evil%u", dst, n);
			if (symlink(canary, tmpl) == 0 && rename(tmpl, buf) < 0)
				unlink(tmpl);
		}
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	free(stop);
	return 0;
}

static int canary_intact(const char *canary)
{
	int n = tu_count_entries(canary);
	char *m = tu_path(canary, "marker");
	char *c = tu_read(m, NULL);
	int ok = n == 1 && c && strcmp(c, "untouched") == 0;
	free(c);
	free(m);
	return ok;
}

START_TEST(test_symlinks_swapped_into_the_target_never_redirect_a_write)
{
	char *canary = tu_path(tmp, "canary");
	tu_write(canary, "marker", "untouched", 0644);
	tu_write(src, "top", "top", 0644);
	tu_write(src, "d/f", "f", 0644);
	start_daemon();
	converge(5000);
	pid_t a = fork();
	ck_assert_int_ge(a, 0);
	if (a == 0)
		_exit(attacker(canary));
	/* A stream of changes meanwhile, to files in d and at the top. */
	for (int i = 0; i < 200; i++) {
		char v[32], n[32];
		snprintf(v, sizeof(v), "v%d", i);
		snprintf(n, sizeof(n), "d/f%d", i % 5);
		tu_write(src, n, v, 0644);
		tu_write(src, "top", v, 0644);
		tu_nap(5);
	}
	tu_write(tmp, "stop-attacker", "", 0644);
	ck_assert_int_eq(tu_wait_exit(a, 10000), 0);
	ck_assert_msg(canary_intact(canary), "something was written outside the "
					     "target");
	ck_assert_msg(kill(pid, 0) == 0, "the daemon died");
	/* A link swapped over a visible name is not ours, so it is never
	 * clobbered; once it is gone the target converges. */
	char *d = tu_path(dst, "d");
	struct stat st;
	if (lstat(d, &st) == 0 && S_ISLNK(st.st_mode)) {
		char buf[4096];
		ssize_t n = readlink(d, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			if (strcmp(buf, "..data/d") != 0)
				unlink(d);
		}
	}
	tu_write(src, "top", "final", 0644);
	converge(20000);
	ck_assert_msg(canary_intact(canary), "something was written outside the "
					     "target");
	stop_daemon();
	free(d);
	free(canary);
}
END_TEST

static Suite *hostile_suite(void)
{
	Suite *s = suite_create("hostile");
	TCase *tc = tcase_create("input");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_odd_names_are_published_exactly);
	tcase_add_test(tc, test_paths_at_the_4096_byte_limit);
	tcase_add_test(tc, test_200_levels_deep);
	tcase_add_test(tc, test_12000_levels_deep_fail_cleanly_in_linear_memory);
	tcase_add_test(tc, test_deep_tree_fails_one_mapping_and_not_the_others);
	tcase_add_test(tc, test_sparse_file_stays_sparse);
	tcase_add_test(tc, test_limits_on_files_and_bytes_name_the_key);
	tcase_add_test(tc, test_100000_files);
	tcase_add_test(tc, test_links_out_loops_fifos_and_sockets_do_not_stop_the_daemon);
	tcase_add_test(tc, test_files_changing_during_the_copy);
	tcase_add_test(tc, test_unreadable_file_is_an_error_until_it_is_readable);
	tcase_add_test(tc, test_symlinks_swapped_into_the_target_never_redirect_a_write);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(hostile_suite());
}
