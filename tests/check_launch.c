/* launch_command(): how a hook's command is found and what it starts
 * with (session, directory, descriptors, signals), and that its first
 * process is left to the caller to reap. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launch.h"
#include "testutil.h"

static char *tmp;

static void setup(void)
{
	tmp = tu_mkdtemp();
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(tmp);
}

/* Runs argv with env and waits for it; what it wrote to stderr. */
static char *run(char *const argv[], char *const env[], int fd3, int *rc)
{
	int p[2], pid = -1, status;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	*rc = launch_command(argv, env, p[1], fd3, &pid);
	close(p[1]);
	if (*rc < 0) {
		close(p[0]);
		return NULL;
	}
	char *out = calloc(1, 8192);
	size_t len = 0;
	ssize_t n;
	while ((n = read(p[0], out + len, 8191 - len)) > 0)
		len += (size_t)n;
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "status %d: %s", status, out);
	return out;
}

START_TEST(test_found_in_the_path_the_command_is_given)
{
	char *bin = tu_path(tmp, "bin"), *path, *out;
	int rc;

	tu_write(bin, "tool", "#!/bin/sh\necho tool \"$@\" >&2\n", 0755);
	tu_write(bin, "noexec", "#!/bin/sh\n", 0644);
	ck_assert_int_ge(asprintf(&path, "PATH=/nowhere:%s", bin), 0);
	char *env[] = {path, NULL};
	char *tool[] = {"tool", "a b", NULL};
	out = run(tool, env, -1, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(out, "tool a b\n");
	free(out);
	/* Not the caller's PATH: the command's. */
	char *none[] = {"PATH=/nowhere", NULL};
	ck_assert_ptr_null(run(tool, none, -1, &rc));
	ck_assert_int_eq(rc, -ENOENT);
	char *noexec[] = {"noexec", NULL};
	ck_assert_ptr_null(run(noexec, env, -1, &rc));
	ck_assert_int_eq(rc, -EACCES);
	char *absent[] = {"/nowhere/tool", NULL};
	ck_assert_ptr_null(run(absent, env, -1, &rc));
	ck_assert_int_eq(rc, -ENOENT);
	/* A relative path from "/", where it runs, not from here. */
	char *rel[] = {"bin/sh", "-c", "echo rel >&2", NULL};
	ck_assert_int_ne(access("bin/sh", F_OK), 0);
	out = run(rel, env, -1, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(out, "rel\n");
	free(out);
	free(path);
	free(bin);
}
END_TEST

START_TEST(test_a_file_without_a_hash_bang_line_runs_through_sh)
{
	char *bin = tu_path(tmp, "bin"), *path;
	int rc;

	tu_write(bin, "plain", "echo plain \"$1\" >&2\n", 0755);
	ck_assert_int_ge(asprintf(&path, "PATH=%s", bin), 0);
	char *env[] = {path, NULL}, *plain[] = {"plain", "x", NULL};
	char *out = run(plain, env, -1, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(out, "plain x\n");
	free(out);
	free(path);
	free(bin);
}
END_TEST

/* What argv, with descriptor 3 (already 3) as its 3, writes to stderr,
 * for a child of the test process: -1 when it cannot start. */
static int child_output(char *const argv[], char *out, size_t size)
{
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	int p[2], pid = -1;
	size_t len = 0;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0 || launch_command(argv, env, p[1], 3,
						      &pid) < 0)
		return -1;
	close(p[1]);
	while (len < size - 1 && (n = read(p[0], out + len, size - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(p[0]);
	waitpid(pid, NULL, 0);
	fprintf(stderr, "%s", out);
	return 0;
}

/* In a process of its own: descriptor 3 is check's to use here. */
static int clean_state_child(const char *three)
{
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	signal(SIGUSR2, SIG_IGN);
	/* A descriptor that is 3 already, given as descriptor 3. */
	int fd = open(three, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (fd != 3 && dup3(fd, 3, O_CLOEXEC) != 3))
		return 2;
	/* Its signal state as the shell execs with it (a shell's own
	 * changes as it waits for a child). */
	char *sig[] = {"/bin/sh", "-c",
		       "exec grep -E '^Sig(Blk|Ign)' /proc/self/status >&2",
		       NULL};
	char *sh[] = {"/bin/sh", "-c",
		      "echo $(readlink /proc/$$/fd/0 /proc/$$/fd/1) >&2; "
		      "echo sid=$(($(cut -d' ' -f6 /proc/$$/stat) == $$)) "
		      "cwd=$(pwd) >&2; cat <&3 >&2",
		      NULL};
	char a[256], b[256];
	if (child_output(sig, a, sizeof(a)) < 0 ||
	    child_output(sh, b, sizeof(b)) < 0)
		return 3;
	if (strcmp(a, "SigBlk:\t0000000000000000\n"
		      "SigIgn:\t0000000000000000\n") != 0)
		return 4;
	return strcmp(b, "/dev/null /dev/null\nsid=1 cwd=/\ngiven\n") ? 5 : 0;
}

START_TEST(test_it_starts_alone_in_a_clean_state)
{
	char *three = tu_path(tmp, "three");
	int status;

	tu_write(tmp, "three", "given\n", 0644);
	pid_t c = fork();
	if (c == 0)
		_exit(clean_state_child(three));
	ck_assert_int_gt(c, 0);
	ck_assert_int_eq(waitpid(c, &status, 0), c);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "status %d (see its output above)", status);
	free(three);
}
END_TEST

START_TEST(test_the_first_process_is_left_unreaped)
{
	char *argv[] = {"/bin/true", NULL}, *env[] = {NULL};
	int p[2], pid = -1;
	siginfo_t si = {0};

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(launch_command(argv, env, p[1], -1, &pid), 0);
	close(p[1]);
	close(p[0]);
	ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(si.si_pid, pid);
	/* Exited, and still there: its id is nobody else's. */
	ck_assert_int_eq(kill(pid, 0), 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ck_assert_int_lt(kill(pid, 0), 0);
}
END_TEST

static Suite *launch_suite(void)
{
	Suite *s = suite_create("launch");
	TCase *tc = tcase_create("launch");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_found_in_the_path_the_command_is_given);
	tcase_add_test(tc, test_the_first_process_is_left_unreaped);
	/* Under valgrind (3.19), posix_spawn()'s child is a fork: an exec
	 * error does not reach the parent (no fallback to /bin/sh), and the
	 * command starts with valgrind's signal mask.  Its run of the unit
	 * tests leaves these to the others. */
	if (getenv("ATOMSYNC_VALGRIND") == NULL) {
		tcase_add_test(tc,
			       test_a_file_without_a_hash_bang_line_runs_through_sh);
		tcase_add_test(tc, test_it_starts_alone_in_a_clean_state);
	}
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(launch_suite());
}
