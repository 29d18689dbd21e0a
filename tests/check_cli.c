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

/* A source as a developer's checkout has it. */
static void write_checkout(void)
{
	static const char *const files[] = {
		".git/HEAD", ".git/objects/ab/cdef", "build/out.o",
		"build/keep.txt", "node_modules/x/index.js",
		"web/node_modules/y/index.js", "a.tmp", "web/b.tmp",
		"web/deep/c.tmp", "web/deep/keep.tmp", "app.conf",
		"web/index.html", "sub/build/out.o", "docs/node_modules",
		"sub/.gitignore", NULL,
	};
	for (size_t i = 0; files[i]; i++)
		tu_write(src, files[i], files[i], 0644);
}

/* What of write_checkout() passes the excludes of the two tests below:
 * a file named like an excluded directory, a directory that an anchored
 * pattern names elsewhere, and a name brought back by "!" outside an
 * excluded directory, not inside one. */
static void assert_checkout_published(void)
{
	static const struct tu_file want[] = {
		{"app.conf", 0644, "app.conf"},
		{"web/index.html", 0644, "web/index.html"},
		{"web/deep/keep.tmp", 0644, "web/deep/keep.tmp"},
		{"sub/build/out.o", 0644, "sub/build/out.o"},
		{"docs/node_modules", 0644, "docs/node_modules"},
		{"sub/.gitignore", 0644, "sub/.gitignore"},
		{NULL, 0, NULL},
	};
	char *d = tu_diff_target(dst, want);
	ck_assert_msg(d == NULL, "%s", d);
	static const char *const gone[] = {".git", "build", "node_modules",
					   "web/node_modules", NULL};
	for (size_t i = 0; gone[i]; i++) {
		char *p = tu_path(dst, gone[i]);
		struct stat st;
		ck_assert_msg(lstat(p, &st) < 0 && errno == ENOENT,
			      "%s reached the target", gone[i]);
		free(p);
	}
}

START_TEST(test_exclude_options_follow_gitignore_rules)
{
	const char *argv[] = {
		tu_bin(), "--source", src, "--target", dst, "--once",
		"--exclude", ".git/", "--exclude", "/build",
		"--exclude", "node_modules/", "--exclude", "**/*.tmp",
		"--exclude", "!keep.tmp", "--exclude", "!build/keep.txt", NULL,
	};
	char *out, *err;

	write_checkout();
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	assert_checkout_published();
	free(out);
	free(err);
}
END_TEST

START_TEST(test_exclude_key_follows_gitignore_rules)
{
	char *conf = tu_path(tmp, "atomsync.conf"), *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:checkout]\n"
				  "source = %s\n"
				  "target = %s\n"
				  "exclude = .git/ /build node_modules/\n"
				  "  **/*.tmp !keep.tmp\n"
				  "exclude = !build/keep.txt\n",
				  src, dst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	char *out, *err;

	write_checkout();
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	assert_checkout_published();
	free(out);
	free(err);
	free(text);
	free(conf);
}
END_TEST

START_TEST(test_invalid_excludes_are_usage_errors)
{
	const char *bad[] = {"foo[", "!", "/", "trailing\\", NULL};
	for (size_t i = 0; bad[i]; i++) {
		const char *argv[] = {tu_bin(), "--source", src, "--target",
				      dst, "--once", "--exclude", bad[i], NULL};
		char *out, *err, *want;
		ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 2);
		ck_assert_msg(tu_lines(err) == 1, "%s", err);
		ck_assert_int_ge(asprintf(&want, "atomsyncd: --exclude: '%s': ",
					  bad[i]),
				 0);
		ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
		free(want);
		free(out);
		free(err);
	}
	/* In the config: --check-config names the line; nothing is
	 * published. */
	char *conf = tu_path(tmp, "atomsync.conf"), *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:x]\nsource = %s\ntarget = %s\n"
				  "exclude = *.tmp\n  cache/ [abc\n",
				  src, dst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *check[] = {tu_bin(), "--config", conf, "--check-config",
			       NULL};
	const char *run[] = {tu_bin(), "--config", conf, "--once", NULL};
	char *out, *err;
	ck_assert_int_eq(tu_run(check, &out, &err, 5000), 2);
	ck_assert_msg(tu_lines(err) == 1, "%s", err);
	ck_assert_msg(strstr(err, "atomsync.conf:5: [sync:x]: exclude: "
				  "'[abc': '[' without a closing ']'"),
		      "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(tu_run(run, &out, &err, 5000), 2);
	ck_assert_ptr_null(tu_live(dst));
	free(out);
	free(err);
	free(text);
	free(conf);
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
	tcase_add_test(tc, test_once_projects_the_tree);
	tcase_add_test(tc, test_missing_source_exits_1_naming_it);
	tcase_add_test(tc, test_missing_target_parent_exits_1);
	tcase_add_test(tc, test_collision_with_user_file_exits_1_and_keeps_generation);
	tcase_add_test(tc, test_special_files_warn_and_never_block);
	tcase_add_test(tc, test_symlink_loop_and_escape_warn);
	tcase_add_test(tc, test_unreadable_file_exits_1_and_keeps_generation);
	tcase_add_test(tc, test_exclude_options_follow_gitignore_rules);
	tcase_add_test(tc, test_exclude_key_follows_gitignore_rules);
	tcase_add_test(tc, test_invalid_excludes_are_usage_errors);
	tcase_add_test(tc, test_dry_run_changes_nothing);
	tcase_add_test(tc, test_target_only_holds_our_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(cli_suite());
}
