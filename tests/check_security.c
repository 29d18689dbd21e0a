/* A root atomsyncd among users who are not root: what another uid can
 * plant or swap (symlinks on the way to a target or a source, files in a
 * generation) must never redirect or taint what root writes.  The other
 * users are real uids, through setpriv(1); the tests run as root. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define APP_UID 2003u

static char *tmp, *src, *dst, *logpath;
static pid_t pid;

static void setup(void)
{
	ck_assert_msg(tu_can_setuid(),
		      "these tests act as other users: run them as root");
	tmp = tu_mkdtemp();
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	logpath = tu_path(tmp, "daemon.log");
	tu_mkdirs(src, 0755);
	tu_write(src, "app.conf", "secret: no\n", 0644);
	pid = 0;
}

static void teardown(void)
{
	if (pid > 0)
		tu_kill(pid);
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(logpath);
	free(tmp);
}

static int once_to(const char *source, const char *target, char **err)
{
	const char *argv[] = {tu_bin(), "--source", source, "--target", target,
			      "--once", NULL};
	return tu_run(argv, NULL, err, 30000);
}

/* tmp/NAME, a directory handed to `uid`. */
static char *dir_of(const char *name, unsigned uid)
{
	char *p = tu_path(tmp, name);
	tu_mkdirs(p, 0755);
	ck_assert_int_eq(chown(p, uid, uid), 0);
	return p;
}

/* As `uid`: ln -s TO AT. */
static void link_as(unsigned uid, const char *to, const char *at)
{
	char *cmd;
	ck_assert_int_gt(asprintf(&cmd, "ln -s '%s' '%s'", to, at), 0);
	ck_assert_int_eq(tu_sh_as(uid, cmd), 0);
	free(cmd);
}

START_TEST(test_target_swapped_for_a_users_link_is_refused)
{
	/* The application user owns the directory that holds the target and
	 * makes the target a link to a directory of root's. */
	char *app = dir_of("app", APP_UID);
	char *victim = tu_path(tmp, "victim");
	tu_mkdirs(victim, 0755);
	char *target = tu_path(app, "config");
	link_as(APP_UID, victim, target);
	char *err = NULL;
	ck_assert_int_eq(once_to(src, target, &err), 1);
	ck_assert_msg(strstr(err, target) && strstr(err, "uid 2003") &&
			      strstr(err, "refusing to follow"),
		      "%s", err);
	ck_assert_int_eq(tu_count_entries(victim), 0);
	free(err);
	/* The same target as a directory of its own is fine. */
	char *cmd;
	ck_assert_int_gt(asprintf(&cmd, "rm '%s' && mkdir '%s'", target, target),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(once_to(src, target, &err), 0);
	char *why = tu_diff_trees(src, target);
	ck_assert_msg(why == NULL, "%s", why);
	free(cmd);
	free(err);
	free(target);
	free(victim);
	free(app);
}
END_TEST

START_TEST(test_daemon_refuses_a_users_link_at_start)
{
	char *app = dir_of("app", APP_UID);
	char *victim = tu_path(tmp, "victim");
	tu_mkdirs(victim, 0755);
	char *target = tu_path(app, "config");
	link_as(APP_UID, victim, target);
	const char *argv[] = {tu_bin(), "--source", src, "--target", target,
			      "--debounce", "0", NULL};
	pid = tu_spawn(argv, logpath);
	struct tu_needle n = {logpath, "refusing to follow it; retrying", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "no refusal logged");
	ck_assert_int_eq(tu_count_entries(victim), 0);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	ck_assert_int_eq(tu_count_entries(victim), 0);
	free(target);
	free(victim);
	free(app);
}
END_TEST

static int is_file(void *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A user who owns a target directory plants links at the names of the
 * error file: root replaces them and writes nothing through them. */
START_TEST(test_error_file_links_in_a_users_target_are_replaced)
{
	char *target = dir_of("cfg", APP_UID);
	char *victim = tu_path(tmp, "victim");
	char *errfile = tu_path(target, "..atomsync.error");
	char *errtmp = tu_path(target, "..atomsync.error.tmp");
	const char *argv[] = {tu_bin(), "--source", src, "--target", target,
			      "--debounce", "0", NULL};
	char *cmd;

	tu_write(tmp, "victim", "root's\n", 0644);
	pid = tu_spawn(argv, logpath);
	struct tu_needle pub = {logpath, "published ..", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &pub, 10000), "%s",
		      tu_read(logpath, NULL));
	link_as(APP_UID, victim, errfile);
	link_as(APP_UID, victim, errtmp);
	ck_assert_int_gt(asprintf(&cmd, "echo mine > '%s/notes'", target), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	tu_write(src, "notes", "theirs\n", 0644);
	struct tu_needle n = {logpath, "notes exists and is not a link", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "%s",
		      tu_read(logpath, NULL));
	struct stat st;
	ck_assert_msg(tu_wait_for(is_file, errfile, 3000), "no error file");
	ck_assert_int_eq(lstat(errfile, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_uid, 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_lt(lstat(errtmp, &st), 0);
	char *text = tu_read(victim, NULL);
	ck_assert_str_eq(text, "root's\n");
	free(text);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(cmd);
	free(errfile);
	free(errtmp);
	free(victim);
	free(target);
}
END_TEST

START_TEST(test_root_owned_link_on_the_way_works)
{
	/* As Debian's /var/run -> /run. */
	char *run = tu_path(tmp, "run");
	tu_mkdirs(run, 0755);
	char *var = tu_path(tmp, "var");
	tu_mkdirs(var, 0755);
	char *varrun = tu_path(var, "run");
	ck_assert_int_eq(symlink(run, varrun), 0);
	char *target = tu_path(varrun, "config");
	char *err = NULL;
	ck_assert_msg(once_to(src, target, &err) == 0, "%s", err);
	char *real = tu_path(run, "config");
	char *why = tu_diff_trees(src, real);
	ck_assert_msg(why == NULL, "%s", why);
	free(err);
	free(real);
	free(target);
	free(varrun);
	free(var);
	free(run);
}
END_TEST

START_TEST(test_source_swapped_for_a_users_link_is_refused)
{
	/* The deploy user owns the directory that holds the source and
	 * points the source at a tree of root's. */
	char *deploy = dir_of("deploy", APP_UID);
	char *secrets = tu_path(tmp, "secrets");
	tu_write(secrets, "shadow", "root:x:0:0\n", 0600);
	char *source = tu_path(deploy, "current");
	link_as(APP_UID, secrets, source);
	char *err = NULL;
	ck_assert_int_eq(once_to(source, dst, &err), 1);
	ck_assert_msg(strstr(err, source) && strstr(err, "uid 2003"), "%s", err);
	char *copied = tu_path(dst, "shadow");
	ck_assert_int_ne(access(copied, F_OK), 0);
	free(copied);
	free(err);
	free(source);
	free(secrets);
	free(deploy);
}
END_TEST

static Suite *security_suite(void)
{
	Suite *s = suite_create("security");
	TCase *tc = tcase_create("paths");

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_target_swapped_for_a_users_link_is_refused);
	tcase_add_test(tc, test_daemon_refuses_a_users_link_at_start);
	tcase_add_test(tc, test_root_owned_link_on_the_way_works);
	tcase_add_test(tc, test_error_file_links_in_a_users_target_are_replaced);
	tcase_add_test(tc, test_source_swapped_for_a_users_link_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(security_suite());
}
