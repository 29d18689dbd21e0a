/* atomsyncd driven as a user drives it: the one-shot command line, its
 * exit statuses and its messages, on real directories. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char *tmp, *src, *dst;

static void setup(void)
{
	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	tu_mkdirs(src, 0755);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(tmp);
}

static int once(char **out, char **err)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--once", NULL};
	return tu_run(argv, out, err, 20000);
}

/* Error lines are the ones at level "error". */
static int error_lines(const char *err)
{
	int n = 0;
	for (const char *p = err; (p = strstr(p, " error: ")); p++)
		n++;
	return n;
}

#define ASSERT_TREES()                                                       \
	do {                                                                 \
		char *d_ = tu_diff_trees(src, dst);                          \
		ck_assert_msg(d_ == NULL, "%s", d_);                         \
	} while (0)

START_TEST(test_help_and_version)
{
	char *out, *err;
	const char *h[] = {tu_bin(), "--help", NULL};
	ck_assert_int_eq(tu_run(h, &out, &err, 5000), 0);
	ck_assert_msg(strstr(out, "Usage: atomsyncd"), "%s", out);
	ck_assert_msg(strstr(out, "--once"), "%s", out);
	free(out);
	free(err);
	const char *v[] = {tu_bin(), "--version", NULL};
	ck_assert_int_eq(tu_run(v, &out, &err, 5000), 0);
	ck_assert_msg(strncmp(out, "atomsyncd ", 10) == 0, "%s", out);
	ck_assert_int_eq(tu_lines(out), 1);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_usage_errors_exit_2_with_one_line)
{
	const char *cases[][6] = {
		{"--bogus", NULL},
		{"--source", NULL},
		{"--source", "a", "--target", "b", "extra", NULL},
		{"--symlinks", "sideways", NULL},
		{"--log-level", "loud", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[8] = {tu_bin()};
		for (int k = 0; k < 6 && cases[i][k]; k++)
			argv[k + 1] = cases[i][k];
		char *out, *err;
		ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 2);
		ck_assert_msg(tu_lines(err) == 1, "case %zu: %s", i, err);
		ck_assert_msg(strncmp(err, "atomsyncd: ", 11) == 0, "%s", err);
		free(out);
		free(err);
	}
}
END_TEST

/* An option typed where a path option wants its argument is not taken
 * for a path: nothing is written into ./--check-config. */
START_TEST(test_path_options_refuse_option_looking_arguments)
{
	const char *cases[][8] = {
		{"-s", "SRC", "-t", "--check-config", "--once", NULL},
		{"--source", "SRC", "--target", "-n", "--once", NULL},
		{"--source=--once", "--target", "DST", "--once", NULL},
		{"-s", "-t", "DST", "--once", NULL},
		{"-c", "--once", NULL},
		{"--config=-x", NULL},
	};
	const char *opt[] = {"--target", "--target", "--source", "--source",
			     "--config", "--config"};
	const char *arg[] = {"--check-config", "-n", "--once", "-t", "--once",
			     "-x"};
	char *cwd = getcwd(NULL, 0);
	ck_assert_int_eq(chdir(tmp), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[10] = {tu_bin()};
		for (int k = 0; k < 8 && cases[i][k]; k++)
			argv[k + 1] = strcmp(cases[i][k], "SRC") == 0   ? src
				      : strcmp(cases[i][k], "DST") == 0 ? dst
									: cases[i][k];
		char *out, *err, *want;
		ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 2);
		ck_assert_msg(tu_lines(err) == 1, "case %zu: %s", i, err);
		ck_assert_int_ge(asprintf(&want,
					  "atomsyncd: %s: '%s' looks like an "
					  "option, not a path; write a path "
					  "that begins with '-' as ./%s",
					  opt[i], arg[i], arg[i]),
				 0);
		ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
			      "case %zu: %s", i, err);
		ck_assert_int_lt(access(arg[i], F_OK), 0);
		free(want);
		free(out);
		free(err);
	}
	ck_assert_int_lt(access(dst, F_OK), 0);
	/* Named as ./-x, such a path works. */
	const char *dash[] = {tu_bin(), "-s", src, "-t", "./--check-config",
			      "--once", NULL};
	ck_assert_int_eq(tu_run(dash, NULL, NULL, 20000), 0);
	ck_assert_int_eq(access("--check-config/..data", F_OK), 0);
	ck_assert_int_eq(chdir(cwd), 0);
	free(cwd);
}
END_TEST

START_TEST(test_once_projects_the_tree)
{
	char *out, *err;
	tu_write(src, "app.conf", "listen 80\n", 0644);
	tu_write(src, "tls/key.pem", "secret\n", 0600);
	tu_write(src, "a/b/c/deep", "deep\n", 0444);
	ck_assert_int_eq(once(&out, &err), 0);
	ASSERT_TREES();
	ck_assert_msg(strstr(err, "published"), "%s", err);
	char *gen = tu_live(dst);
	ck_assert_ptr_nonnull(gen);
	free(gen);
	free(out);
	free(err);
	/* A re-run with nothing changed writes nothing. */
	char *g1 = tu_live(dst);
	ck_assert_int_eq(once(&out, &err), 0);
	char *g2 = tu_live(dst);
	ck_assert_str_eq(g1, g2);
	ck_assert_msg(strstr(err, "unchanged"), "%s", err);
	free(g1);
	free(g2);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_missing_source_exits_1_naming_it)
{
	char *out, *err;
	tu_rmrf(src);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_int_eq(error_lines(err), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, src) && strstr(err, "No such file"), "%s", err);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_missing_target_parent_exits_1)
{
	char *out, *err;
	free(dst);
	dst = tu_path(tmp, "no/such/dst");
	tu_write(src, "f", "x", 0644);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, dst) && strstr(err, "parent"), "%s", err);
	free(out);
	free(err);
}
END_TEST

static void publish_v1(void)
{
	char *out, *err;
	tu_write(src, "app.conf", "v1\n", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
}

static void assert_v1_intact(const char *gen)
{
	char *now = tu_live(dst);
	ck_assert_str_eq(now, gen);
	ck_assert_int_eq(tu_generations(dst), 1);
	char *p = tu_path(dst, "app.conf");
	char *d = tu_read(p, NULL);
	ck_assert_str_eq(d, "v1\n");
	free(d);
	free(p);
	free(now);
}

START_TEST(test_collision_with_user_file_exits_1_and_keeps_generation)
{
	char *out, *err;
	publish_v1();
	char *gen = tu_live(dst);
	tu_write(dst, "notes.txt", "mine\n", 0644);
	tu_write(src, "notes.txt", "theirs\n", 0644);
	tu_write(src, "app.conf", "v2\n", 0644);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, "notes.txt") && strstr(err, "refusing"), "%s", err);
	assert_v1_intact(gen);
	char *p = tu_path(dst, "notes.txt");
	char *d = tu_read(p, NULL);
	ck_assert_str_eq(d, "mine\n");
	free(d);
	free(p);
	free(gen);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_special_files_warn_and_never_block)
{
	char *out, *err;
	tu_write(src, "ok", "x", 0644);
	char *fifo = tu_path(src, "pipe");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(strstr(err, "warning") && strstr(err, "pipe") &&
			      strstr(err, "FIFO"),
		      "%s", err);
	char *p = tu_path(dst, "pipe");
	struct stat st;
	ck_assert(lstat(p, &st) < 0 && errno == ENOENT);
	free(p);
	free(fifo);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_symlink_loop_and_escape_warn)
{
	char *out, *err;
	tu_write(src, "ok", "x", 0644);
	char *a = tu_path(src, "loop-a"), *b = tu_path(src, "loop-b");
	char *esc = tu_path(src, "shadow");
	ck_assert_int_eq(symlink("loop-b", a), 0);
	ck_assert_int_eq(symlink("loop-a", b), 0);
	ck_assert_int_eq(symlink("/etc/shadow", esc), 0);
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(strstr(err, "loop-a") && strstr(err, "loop"), "%s", err);
	ck_assert_msg(strstr(err, "shadow") && strstr(err, "outside"), "%s", err);
	char *p = tu_path(dst, "shadow");
	struct stat st;
	ck_assert(lstat(p, &st) < 0 && errno == ENOENT);
	free(p);
	free(a);
	free(b);
	free(esc);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_unreadable_file_exits_1_and_keeps_generation)
{
	/* As root every file is readable: run as nobody instead. */
	char *out, *err;
	int as_root = geteuid() == 0;
	const char *nobody = "65534";

	if (as_root) {
		ck_assert_int_eq(chmod(tmp, 0755), 0);
		ck_assert_int_eq(chown(src, 65534, 65534), 0);
		ck_assert_int_eq(chmod(tmp, 0777), 0);
	}
	tu_write(src, "app.conf", "v1\n", 0644);
	const char *argv_root[] = {"setpriv", "--reuid", nobody, "--regid", nobody,
				   "--clear-groups", tu_bin(), "--source", src,
				   "--target", dst, "--once", NULL};
	const char *argv_user[] = {tu_bin(), "--source", src, "--target", dst,
				   "--once", NULL};
	const char *const *argv = as_root ? argv_root : argv_user;
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	free(out);
	free(err);
	char *gen = tu_live(dst);
	tu_write(src, "secret", "s\n", 0000);
	tu_write(src, "app.conf", "v2\n", 0644);
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, "secret") && strstr(err, "Permission denied"),
		      "%s", err);
	assert_v1_intact(gen);
	free(gen);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_dry_run_changes_nothing)
{
	char *out, *err;
	tu_write(src, "f", "x", 0644);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst, "--once",
			      "--dry-run", NULL};
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	ck_assert_msg(strstr(err, "would add f"), "%s", err);
	struct stat st;
	ck_assert(stat(dst, &st) < 0 && errno == ENOENT);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_target_only_holds_our_names)
{
	char *out, *err;
	tu_write(src, "a", "1", 0644);
	tu_write(src, "b/c", "2", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
	tu_write(src, "a", "11", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	/* ..data, one generation, ..atomsync, a, b */
	ck_assert_int_eq(tu_count_entries(dst), 5);
	ck_assert_int_eq(tu_generations(dst), 1);
	free(out);
	free(err);
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("once");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_help_and_version);
	tcase_add_test(tc, test_usage_errors_exit_2_with_one_line);
	tcase_add_test(tc, test_path_options_refuse_option_looking_arguments);
	tcase_add_test(tc, test_once_projects_the_tree);
	tcase_add_test(tc, test_missing_source_exits_1_naming_it);
	tcase_add_test(tc, test_missing_target_parent_exits_1);
	tcase_add_test(tc, test_collision_with_user_file_exits_1_and_keeps_generation);
	tcase_add_test(tc, test_special_files_warn_and_never_block);
	tcase_add_test(tc, test_symlink_loop_and_escape_warn);
	tcase_add_test(tc, test_unreadable_file_exits_1_and_keeps_generation);
	tcase_add_test(tc, test_dry_run_changes_nothing);
	tcase_add_test(tc, test_target_only_holds_our_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(cli_suite());
}
