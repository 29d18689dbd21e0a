/* The hook module in-process: the environment a command gets, and the
 * list of changed paths handed to on_update (union, order, bounds, the
 * file it is read from). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"
#include "testutil.h"

/* A NUL-ended list from "a|b|c". */
static char *list(const char *bars, size_t *len)
{
	char *l = strdup(bars);
	*len = strlen(l) + 1;
	for (char *p = l; *p; p++)
		if (*p == '|')
			*p = '\0';
	return l;
}

static void add(struct hook_changes *c, const char *bars)
{
	size_t len;
	char *l = list(bars, &len);
	hook_changes_add(c, l, len, false);
	free(l);
}

/* c's paths as "a|b|c". */
static char *shown(const struct hook_changes *c)
{
	char *s = calloc(1, c->len + 1);
	for (size_t i = 0; i < c->len; i++)
		s[i] = c->buf[i] ? c->buf[i] : '|';
	if (c->len)
		s[c->len - 1] = '\0';
	return s;
}

START_TEST(test_changes_are_a_union_in_path_order)
{
	struct hook_changes c = {0};

	add(&c, "app.conf|d|d/b|old");
	add(&c, "a|app.conf|d/a|d.txt|z");
	char *s = shown(&c);
	/* '/' sorts before every other byte: a directory's paths follow it. */
	ck_assert_str_eq(s, "a|app.conf|d|d/a|d/b|d.txt|old|z");
	ck_assert_uint_eq(c.n, 8);
	ck_assert(!c.incomplete);
	free(s);
	/* Adding nothing changes nothing, but an incomplete list says so. */
	hook_changes_add(&c, NULL, 0, true);
	ck_assert_uint_eq(c.n, 8);
	ck_assert(c.incomplete);
	hook_changes_fini(&c);
	ck_assert_ptr_null(c.buf);
	ck_assert_uint_eq(c.n + c.len, 0);
}
END_TEST

START_TEST(test_changes_beyond_the_bound_are_marked_incomplete)
{
	size_t n = HOOK_CHANGES_MAX + 1, len = 0;
	char *big = malloc(n * 16);

	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(big + len, "f%09zu", i) + 1;
	struct hook_changes c = {0};
	hook_changes_add(&c, big, len, false);
	ck_assert_uint_eq(c.n, HOOK_CHANGES_MAX);
	ck_assert(c.incomplete);
	/* The first ones, in order. */
	ck_assert_str_eq(c.buf, "f000000000");
	add(&c, "a");
	ck_assert_uint_eq(c.n, HOOK_CHANGES_MAX);
	ck_assert_str_eq(c.buf, "a");
	hook_changes_fini(&c);

	/* Long paths: the byte bound comes first. */
	size_t plen = 4000, np = HOOK_CHANGES_MAX_BYTES / plen + 10;
	char *longs = malloc(np * plen);
	for (size_t i = 0; i < np; i++) {
		memset(longs + i * plen, 'x', plen - 1);
		sprintf(longs + i * plen, "%08zu", i);
		longs[i * plen + 8] = 'x';
		longs[i * plen + plen - 1] = '\0';
	}
	hook_changes_add(&c, longs, np * plen, false);
	ck_assert(c.incomplete);
	ck_assert_uint_le(c.len, HOOK_CHANGES_MAX_BYTES);
	ck_assert_uint_eq(c.n, HOOK_CHANGES_MAX_BYTES / plen);
	hook_changes_fini(&c);
	free(longs);
	free(big);
}
END_TEST

START_TEST(test_changes_file_reads_from_its_start_and_cannot_change)
{
	struct hook_changes c = {0};
	add(&c, "a|b/c");
	int fd = hook_changes_fd(&c);
	ck_assert_int_ge(fd, 0);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	char buf[16];
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 6);
	ck_assert_int_eq(memcmp(buf, "a\0b/c\0", 6), 0);
	/* As a command opens it, by the name in ATOMSYNC_CHANGED_FILE. */
	char *name;
	ck_assert_int_ge(asprintf(&name, "/dev/fd/%d", fd), 0);
	size_t len = 0;
	char *d = tu_read(name, &len);
	ck_assert_uint_eq(len, 6);
	ck_assert_int_eq(memcmp(d, "a\0b/c\0", 6), 0);
	ck_assert_int_lt(write(fd, "x", 1), 0);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_lt(ftruncate(fd, 0), 0);
	free(d);
	free(name);
	close(fd);
	hook_changes_fini(&c);
	/* An empty list is an empty file. */
	fd = hook_changes_fd(&c);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 0);
	close(fd);
}
END_TEST

static const char *env_get(char **env, const char *name)
{
	size_t n = strlen(name);
	for (char **e = env; *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

START_TEST(test_env_holds_only_what_is_named)
{
	char *saved_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	setenv("DB_PASSWORD", "hunter2", 1);
	setenv("KEEP_ME", "kept", 1);
	unsetenv("NOT_SET_ANYWHERE");
	unsetenv("PATH");
	unsetenv("LANG");
	char *pass[] = {"KEEP_ME", "NOT_SET_ANYWHERE", "TZ=UTC"};
	struct hook_vars v = {
		.name = "web", .target = "/t", .gen = "..g", .changed = 3,
		.changed_file = true, .incomplete = true,
		.pass = pass, .npass = 3,
	};
	char **env = hook_env(&v);
	size_t n = 0;
	while (env[n])
		n++;
	ck_assert_uint_eq(n, 9);
	ck_assert_str_eq(env_get(env, "KEEP_ME"), "kept");
	ck_assert_str_eq(env_get(env, "TZ"), "UTC");
	ck_assert_str_eq(env_get(env, "PATH"), HOOK_DEFAULT_PATH);
	ck_assert_str_eq(env_get(env, "ATOMSYNC_NAME"), "web");
	ck_assert_str_eq(env_get(env, "ATOMSYNC_TARGET"), "/t");
	ck_assert_str_eq(env_get(env, "ATOMSYNC_GENERATION"), "..g");
	ck_assert_str_eq(env_get(env, "ATOMSYNC_CHANGED"), "3");
	ck_assert_str_eq(env_get(env, "ATOMSYNC_CHANGED_FILE"), "/dev/fd/3");
	ck_assert_str_eq(env_get(env, "ATOMSYNC_CHANGED_INCOMPLETE"), "1");
	hook_env_free(env);
	/* The daemon's PATH and LANG pass; hook_env may set them instead. */
	setenv("PATH", "/opt/bin:/usr/bin", 1);
	setenv("LANG", "C.UTF-8", 1);
	char *path[] = {"PATH=/usr/bin"};
	struct hook_vars w = {.name = "web", .target = "/t", .changed = -1,
			      .pass = path, .npass = 1};
	env = hook_env(&w);
	ck_assert_str_eq(env_get(env, "PATH"), "/usr/bin");
	ck_assert_str_eq(env_get(env, "LANG"), "C.UTF-8");
	ck_assert_ptr_null(env_get(env, "ATOMSYNC_CHANGED"));
	ck_assert_ptr_null(env_get(env, "ATOMSYNC_CHANGED_FILE"));
	ck_assert_ptr_null(env_get(env, "DB_PASSWORD"));
	hook_env_free(env);
	if (saved_path)
		setenv("PATH", saved_path, 1);
	free(saved_path);
}
END_TEST

/* ---- reload_pidfile, with files made by real other uids ---- */

#define OTHER 2001u

static char *tmp;

static void pidfile_setup(void)
{
	ck_assert_msg(tu_can_setuid(),
		      "these tests act as other users: run them as root");
	tmp = tu_mkdtemp();
	/* Other users must be able to reach what they are given. */
	ck_assert_int_eq(chmod(tmp, 0755), 0);
}

static void pidfile_teardown(void)
{
	tu_rmrf(tmp);
	free(tmp);
}

/* hook_read_pidfile on tmp/name: its pid, or -1 with the message in
 * *why (malloc'ed). */
static int read_pidfile(const char *name, char **why)
{
	char *p = tu_path(tmp, name);
	struct stat st;
	int pid = -1;
	*why = NULL;
	if (hook_read_pidfile(p, &pid, &st, why) < 0)
		pid = -1;
	free(p);
	return pid;
}

static void assert_refused(const char *name, const char *needle)
{
	char *why;
	ck_assert_int_eq(read_pidfile(name, &why), -1);
	ck_assert_msg(why && strstr(why, needle) && strstr(why, tmp),
		      "%s: %s (want %s)", name, why, needle);
	free(why);
}

START_TEST(test_pidfile_of_root_is_read)
{
	char *why;
	tu_write(tmp, "app.pid", "1234\n", 0644);
	ck_assert_int_eq(read_pidfile("app.pid", &why), 1234);
	tu_write(tmp, "spaces.pid", "  77 \n\n", 0600);
	ck_assert_int_eq(read_pidfile("spaces.pid", &why), 77);
	/* Through a link that root made, in a directory only root changes,
	 * as /var/run -> /run. */
	tu_write(tmp, "real/app.pid", "4321\n", 0644);
	char *l = tu_path(tmp, "run");
	ck_assert_int_eq(symlink("real", l), 0);
	free(l);
	ck_assert_int_eq(read_pidfile("run/app.pid", &why), 4321);
}
END_TEST

START_TEST(test_pidfile_others_can_write_is_refused)
{
	tu_write(tmp, "group.pid", "1234\n", 0664);
	assert_refused("group.pid", "writable by its group (mode 0664)");
	tu_write(tmp, "others.pid", "1234\n", 0646);
	assert_refused("others.pid", "writable by others (mode 0646)");
	/* Written by another user, in a sticky directory (as /tmp) where
	 * anyone may make files. */
	char *dir = tu_path(tmp, "s"), *cmd;
	tu_mkdirs(dir, 0755);
	ck_assert_int_eq(chmod(dir, 01777), 0);
	ck_assert_int_ge(asprintf(&cmd, "echo 1 > %s/app.pid; chmod 644 %s/app.pid",
				  dir, dir),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	assert_refused("s/app.pid", "writable by its group and others (mode "
				    "1777), who can move any file of root's "
				    "into it");
	/* Nor one of root's that such a user moved there, from a directory
	 * they can write: a generation's with dir_mode 0777, say, where
	 * atomsyncd copied their "pidfile" as root's. */
	char *open_dir = tu_path(tmp, "open");
	tu_write(open_dir, "pid", "1\n", 0644);
	ck_assert_int_eq(chmod(open_dir, 0777), 0);
	free(cmd);
	ck_assert_int_ge(asprintf(&cmd, "mv %s/pid %s/root.pid", open_dir, dir),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	assert_refused("s/root.pid", "directory");
	assert_refused("s/root.pid", "/s is writable by its group and others");
	free(open_dir);
	/* Their link to root's pidfile is not followed. */
	tu_write(tmp, "root.pid", "1234\n", 0644);
	free(cmd);
	ck_assert_int_ge(asprintf(&cmd, "ln -s %s/root.pid %s/link.pid", tmp, dir),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	assert_refused("s/link.pid", "is a symbolic link");
	free(cmd);
	ck_assert_int_ge(asprintf(&cmd, "ln -s %s %s/dir", tmp, dir), 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	assert_refused("s/dir/root.pid", "refusing to follow it");
	free(cmd);
	free(dir);
}
END_TEST

/* A pidfile of root's, in a directory another user owns: they could
 * move any file of root's with a process id in it there (or put it back
 * in turn), so it says nothing of who wrote it. */
START_TEST(test_pidfile_in_a_directory_of_another_user_is_refused)
{
	char *dir = tu_path(tmp, "u");
	tu_mkdirs(dir, 0755);
	ck_assert_int_eq(chown(dir, OTHER, OTHER), 0);
	tu_write(tmp, "u/app.pid", "1234\n", 0644);
	char *f = tu_path(dir, "app.pid");
	ck_assert_int_eq(chown(f, 0, 0), 0);
	assert_refused("u/app.pid", "is owned by uid 2001, who can change what "
				    "the path leads to");
	/* Nor in one of root's that its group can change. */
	ck_assert_int_eq(chown(dir, 0, OTHER), 0);
	ck_assert_int_eq(chmod(dir, 0775), 0);
	assert_refused("u/app.pid", "writable by its group (mode 0775)");
	ck_assert_int_eq(chmod(dir, 0755), 0);
	char *why;
	ck_assert_int_eq(read_pidfile("u/app.pid", &why), 1234);
	free(why);
	/* A second name of it, as a user's hard link would be. */
	char *other = tu_path(tmp, "other.pid");
	ck_assert_int_eq(link(f, other), 0);
	assert_refused("u/app.pid", "has 2 names, one of which another user "
				    "could have made");
	free(other);
	free(f);
	free(dir);
}
END_TEST

START_TEST(test_pidfile_that_is_no_file_or_no_pid_is_refused)
{
	char *f = tu_path(tmp, "fifo.pid");
	ck_assert_int_eq(mkfifo(f, 0644), 0);
	long long t0 = tu_now_ms();
	assert_refused("fifo.pid", "not a regular file");
	ck_assert_int_lt(tu_now_ms() - t0, 1000);
	free(f);
	char *d = tu_path(tmp, "dir.pid");
	tu_mkdirs(d, 0755);
	free(d);
	assert_refused("dir.pid", "not a regular file");
	char *l = tu_path(tmp, "link.pid");
	tu_write(tmp, "real.pid", "1234\n", 0644);
	ck_assert_int_eq(symlink("real.pid", l), 0);
	free(l);
	assert_refused("link.pid", "is a symbolic link");
	tu_write(tmp, "empty.pid", "", 0644);
	assert_refused("empty.pid", "no process id");
	tu_write(tmp, "word.pid", "12abc\n", 0644);
	assert_refused("word.pid", "no process id");
	tu_write(tmp, "one.pid", "1\n", 0644);
	assert_refused("one.pid", "no process id");
	char big[200];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[150] = '5';
	tu_write(tmp, "big.pid", big, 0644);
	assert_refused("big.pid", "no process id");
	assert_refused("missing.pid", "No such file or directory");
}
END_TEST


/* A child that waits to be signalled. */
static pid_t child(void)
{
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		pause();
		_exit(0);
	}
	return p;
}

START_TEST(test_signal_goes_through_a_pidfd)
{
	pid_t p = child();
	char pidtext[32], *why = NULL, *f = tu_path(tmp, "app.pid");
	snprintf(pidtext, sizeof(pidtext), "%d\n", (int)p);
	tu_write(tmp, "app.pid", pidtext, 0644);
	ck_assert_int_eq(hook_signal_pidfile(f, SIGUSR1, &why), 0);
	int st;
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR1);
	/* Gone now: reported, with the file and the process. */
	ck_assert_int_eq(hook_signal_pidfile(f, SIGUSR1, &why), -ESRCH);
	snprintf(pidtext, sizeof(pidtext), "process %d: No such process",
		 (int)p);
	ck_assert_msg(strstr(why, f) && strstr(why, pidtext), "%s", why);
	free(why);
	why = NULL;
	/* reload_pid: the pidfd opened at the start is what is signalled. */
	p = child();
	int fd = hook_pidfd_open(p);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(hook_signal_pidfd(fd, p, SIGUSR2, &why), 0);
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR2);
	ck_assert_int_eq(hook_signal_pidfd(fd, p, SIGUSR2, &why), -ESRCH);
	ck_assert_msg(strstr(why, "No such process"), "%s", why);
	free(why);
	why = NULL;
	close(fd);
	ck_assert_int_eq(hook_signal_pidfd(-ESRCH, 77, SIGHUP, &why), -ESRCH);
	ck_assert_str_eq(why, "reload_pid 77: No such process (when the mapping "
			      "started)");
	free(why);
	free(f);
}
END_TEST

START_TEST(test_signal_spares_a_process_younger_than_its_pidfile)
{
	char *why = NULL, *f = tu_path(tmp, "app.pid");
	tu_write(tmp, "app.pid", "1\n", 0644); /* overwritten below */
	pid_t p = child();
	char pidtext[32];
	snprintf(pidtext, sizeof(pidtext), "%d\n", (int)p);
	tu_write(tmp, "app.pid", pidtext, 0644);
	struct timespec ts[2];
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= 5;
	ts[1] = ts[0];
	ck_assert_int_eq(utimensat(AT_FDCWD, f, ts, 0), 0);
	ck_assert_int_eq(hook_signal_pidfile(f, SIGTERM, &why), -ESRCH);
	ck_assert_msg(strstr(why, "started after the file was written"), "%s",
		      why);
	int st;
	ck_assert_int_eq(waitpid(p, &st, WNOHANG), 0);
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	free(why);
	free(f);
}
END_TEST

/* After a timeout, the group's SIGKILL comes HOOK_KILL_GRACE_MS after
 * its SIGTERM.  A leader that exits on SIGTERM must not be reaped
 * before then: the id of its group would be free, and a process made
 * meanwhile with that id as its own group's (here: right after it, with
 * ns_last_pid) would get root's SIGKILL. */
struct reuse {
	const char *pidfile;
	int leader;
	pid_t victim;
	bool timed_out;
};

static void on_reuse_done(void *data, const struct hook_result *r)
{
	struct reuse *x = data;
	char *text = tu_read(x->pidfile, NULL), *last;

	x->timed_out = r->timed_out;
	x->leader = atoi(text);
	free(text);
	ck_assert_int_gt(x->leader, 1);
	int n = asprintf(&last, "%d", x->leader - 1);
	int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0 && n > 0 && write(fd, last, (size_t)n) == n,
		      "ns_last_pid: %s", strerror(errno));
	close(fd);
	free(last);
	x->victim = fork();
	if (x->victim == 0) {
		setsid();
		pause();
		_exit(0);
	}
	ck_assert_int_gt(x->victim, 0);
}

START_TEST(test_a_timed_out_group_id_is_not_reused_before_its_sigkill)
{
	ck_assert_msg(tu_can_setuid(), "ns_last_pid needs root");
	char *dir = tu_mkdtemp(), *pidfile = tu_path(dir, "pid"), *cmd;
	ck_assert_int_ge(asprintf(&cmd, "echo $$ > '%s'; trap 'exit 0' TERM; "
					"while :; do sleep 0.05; done",
				  pidfile),
			 0);
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	struct reuse x = {.pidfile = pidfile};
	struct hook *h = NULL;
	uv_loop_t loop;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(hook_run(&loop, argv, env, -1, 1, on_reuse_done, &x,
				  &h),
			 0);
	uv_run(&loop, UV_RUN_DEFAULT); /* through the SIGKILL */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	ck_assert(x.timed_out);
	int status;
	pid_t got = waitpid(x.victim, &status, WNOHANG);
	ck_assert_msg(got == 0, "pid %d (group %d's old id: %d): %s", x.victim,
		      x.victim, x.leader,
		      got > 0 && WIFSIGNALED(status) ? "killed" : "gone");
	ck_assert_int_ne(x.victim, x.leader);
	/* Nothing of the leader is left either. */
	ck_assert_int_lt(kill(x.leader, 0), 0);
	kill(x.victim, SIGKILL);
	ck_assert_int_eq(waitpid(x.victim, NULL, 0), x.victim);
	tu_rmrf(dir);
	free(cmd);
	free(pidfile);
	free(dir);
}
END_TEST

static Suite *hook_suite(void)
{
	Suite *s = suite_create("hook");
	TCase *tc = tcase_create("hook");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_changes_are_a_union_in_path_order);
	tcase_add_test(tc, test_changes_beyond_the_bound_are_marked_incomplete);
	tcase_add_test(tc, test_changes_file_reads_from_its_start_and_cannot_change);
	tcase_add_test(tc, test_env_holds_only_what_is_named);
	tcase_add_test(tc, test_a_timed_out_group_id_is_not_reused_before_its_sigkill);
	suite_add_tcase(s, tc);
	tc = tcase_create("pidfile");
	tcase_add_checked_fixture(tc, pidfile_setup, pidfile_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_pidfile_of_root_is_read);
	tcase_add_test(tc, test_pidfile_others_can_write_is_refused);
	tcase_add_test(tc, test_pidfile_in_a_directory_of_another_user_is_refused);
	tcase_add_test(tc, test_pidfile_that_is_no_file_or_no_pid_is_refused);
	/* Valgrind (3.19) knows no pidfd_open: its run of the unit tests
	 * leaves these to the others. */
	if (getenv("ATOMSYNC_VALGRIND") == NULL) {
		tcase_add_test(tc, test_signal_goes_through_a_pidfd);
		tcase_add_test(tc,
			       test_signal_spares_a_process_younger_than_its_pidfile);
	}
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(hook_suite());
}
