/* atomsyncd --status as an operator runs it: what it says of targets in
 * step, behind, missing or failing under a running daemon, its exit
 * statuses, and that it writes, locks and cleans nothing. */
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

#define OTHER 2003u

static struct tu_fixture fx;
static char *tmp, *src, *dst, *logpath, *conf;
static pid_t pid;

static void setup(void)
{
	tu_fixture_setup(&fx, TU_SHARED);
	tmp = fx.tmp;
	src = fx.src;
	dst = fx.dst;
	logpath = fx.log;
	conf = fx.conf;
	pid = 0;
}

static void teardown(void)
{
	fx.pid = pid;
	tu_fixture_teardown(&fx);
}

static int once(void)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--once", NULL};
	return tu_run(argv, NULL, NULL, 20000);
}

/* atomsyncd --status --source src --target dst: its exit status. */
static int status(char **out, char **err)
{
	const char *argv[] = {tu_bin(), "--status", "--source", src,
			      "--target", dst, NULL};
	return tu_run(argv, out, err, 20000);
}

/* Every entry of `dir`, the directory itself included, with its type,
 * mode, owner, size, times, inode, links and link target. */
static char *tree_state(const char *dir)
{
	char *cmd, *out = NULL;
	ck_assert_int_gt(asprintf(&cmd,
				  "find '%s' -printf '%%P %%y %%m %%U %%s %%T@ "
				  "%%C@ %%i %%n %%l\\n' | sort",
				  dir),
			 0);
	const char *argv[] = {"sh", "-c", cmd, NULL};
	ck_assert_int_eq(tu_run(argv, &out, NULL, 20000), 0);
	free(cmd);
	return out;
}

#define ASSERT_HAS(out, text)                                                \
	ck_assert_msg(strstr((out), (text)), "no \"%s\" in:\n%s", (text), (out))

START_TEST(test_in_step_exits_0_and_says_so)
{
	char *out, *err;
	tu_write(src, "a", "12345", 0644);
	tu_write(src, "d/b", "678", 0644);
	ck_assert_int_eq(once(), 0);
	char *gen = tu_live(dst), *want;
	ck_assert_int_eq(status(&out, &err), 0);
	ck_assert_msg(strncmp(out, "sync \"main\"\n", 12) == 0, "%s", out);
	ck_assert_int_ge(asprintf(&want, "  source:      %s\n  target:      %s\n"
				  "  live:        %s\n  published:   20",
				  src, dst, gen),
			 0);
	ASSERT_HAS(out, want);
	ASSERT_HAS(out, "  state file:  describes the live generation, from "
			"a full read of the source 20");
	ASSERT_HAS(out, "  content:     2 files, 8 bytes\n");
	ASSERT_HAS(out, "  in step:     yes\n");
	ASSERT_HAS(out, "  daemon:      not running (nothing holds the target's "
			"lock)\n");
	ASSERT_HAS(out, "  last error:  none\n");
	ck_assert_int_eq(tu_lines(out), 10);
	ck_assert_msg(err[0] == '\0', "%s", err);
	free(want);
	free(gen);
	free(out);
	free(err);
}
END_TEST

/* A state file cut short, which a publish refuses (and compares content
 * instead), is said to be damaged, though its head reads well. */
START_TEST(test_a_state_file_cut_short_is_damaged)
{
	char *out, *err;
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%02d", i);
		tu_write(src, name, name, 0644);
	}
	ck_assert_int_eq(once(), 0);
	char *state = tu_path(dst, "..atomsync");
	char *journal = tu_path(dst, "..atomsync.journal");
	(void)unlink(journal);
	struct stat st;
	ck_assert_int_eq(stat(state, &st), 0);
	ck_assert_int_eq(truncate(state, st.st_size - 40), 0);
	ck_assert_int_eq(status(&out, &err), 0);
	ASSERT_HAS(out, "  state file:  damaged (a publish compares content)\n");
	ASSERT_HAS(out, "  in step:     yes\n");
	ck_assert_msg(err[0] == '\0', "%s", err);
	free(out);
	free(err);
	free(journal);
	free(state);
}
END_TEST

/* What the writer moved aside is said, with how many, and only then (it
 * is the in-step verdict that sets the exit status). */
START_TEST(test_what_was_set_aside_is_said)
{
	char *out, *err, *aside = tu_path(dst, "..atomsync.aside"), *want;

	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(once(), 0);
	ck_assert_int_eq(status(&out, &err), 0);
	ck_assert_msg(strstr(out, "set aside:") == NULL, "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(mkdir(aside, 0700), 0);
	tu_write(aside, "1.2.0", "", 0644);
	tu_write(aside, "..2026_01_01_00_00_00.000000000/d/x", "", 0644);
	ck_assert_int_eq(status(&out, &err), 0);
	ck_assert_int_ge(asprintf(&want, "  set aside:   2 entries in %s/"
				  "..atomsync.aside that other users put into "
				  "generations, not atomsync's to remove: to be "
				  "looked at and removed by an administrator\n",
				  dst),
			 0);
	ASSERT_HAS(out, want);
	ASSERT_HAS(out, "  in step:     yes\n");
	free(want);
	free(out);
	free(err);
	free(aside);
}
END_TEST

/* A source changed while no daemon runs: behind, by how much, and not a
 * byte, time or inode of the target changes (leftovers stay too). */
START_TEST(test_changed_source_exits_1_with_counts_and_writes_nothing)
{
	char *out, *err;
	tu_write(src, "a", "v1", 0644);
	tu_write(src, "d/b", "mode", 0644);
	tu_write(src, "gone", "bye", 0644);
	ck_assert_int_eq(once(), 0);
	tu_write(src, "a", "v2, longer", 0644);
	char *b = tu_path(src, "d/b"), *gone = tu_path(src, "gone");
	ck_assert_int_eq(chmod(b, 0600), 0);
	ck_assert_int_eq(unlink(gone), 0);
	tu_write(src, "new", "hello", 0644);
	tu_write(dst, "..data_tmp", "debris", 0644);
	tu_mkdirs(dst, 0755);
	char *old = tu_path(dst, "..2020_01_01_00_00_00.000000001");
	tu_mkdirs(old, 0755);
	char *before = tree_state(dst);

	ck_assert_int_eq(status(&out, &err), 1);
	ASSERT_HAS(out, "  in step:     no, behind the source: 4 paths differ "
			"(1 added, 2 changed, 1 removed)\n");
	ASSERT_HAS(out, "  content:     3 files, 9 bytes\n");
	ASSERT_HAS(out, "  last error:  none recorded\n");
	/* For people: no line per path, nothing on stderr. */
	ck_assert_msg(err[0] == '\0', "%s", err);
	char *after = tree_state(dst);
	ck_assert_str_eq(before, after);
	free(out);
	free(err);
	free(before);
	free(after);
	free(old);
	free(b);
	free(gone);
}
END_TEST

/* A visible link removed by hand: readers do not find the name, so the
 * target is not in step, though the source did not change; --once puts
 * it back. */
START_TEST(test_missing_visible_link_is_not_in_step)
{
	char *out, *err;
	tu_write(src, "a", "1", 0644);
	tu_write(src, "d/b", "2", 0644);
	ck_assert_int_eq(once(), 0);
	char *link = tu_path(dst, "d");
	ck_assert_int_eq(unlink(link), 0);
	ck_assert_int_eq(status(&out, &err), 1);
	ASSERT_HAS(out, "  in step:     no, behind the source: 1 path differs "
			"(1 added, 0 changed, 0 removed)\n");
	free(out);
	free(err);
	ck_assert_int_eq(access(link, F_OK), -1); /* --status wrote nothing */
	ck_assert_int_eq(once(), 0);
	ck_assert_int_eq(status(&out, &err), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	free(out);
	free(err);
	free(link);
}
END_TEST

START_TEST(test_missing_target_is_not_created)
{
	char *out, *err, *want;
	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(status(&out, &err), 1);
	ck_assert_int_ge(asprintf(&want, "  in step:     cannot tell: target %s "
				  "does not exist\n",
				  dst),
			 0);
	ASSERT_HAS(out, want);
	ASSERT_HAS(out, "  daemon:      cannot tell: the target cannot be "
			"opened\n");
	ASSERT_HAS(out, "  last error:  unknown: the target cannot be opened");
	ck_assert_msg(strstr(out, "live:") == NULL, "%s", out);
	struct stat st;
	ck_assert(stat(dst, &st) < 0 && errno == ENOENT);
	free(want);
	free(out);
	free(err);
	/* A file in its place: what a run would say of it. */
	tu_write(tmp, "dst", "a file", 0644);
	ck_assert_int_eq(status(&out, &err), 1);
	ck_assert_int_ge(asprintf(&want, "  in step:     cannot tell: target %s: "
				  "not a directory (a file is in its place, "
				  "say); move it away\n",
				  dst),
			 0);
	ASSERT_HAS(out, want);
	free(want);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_missing_source_cannot_tell)
{
	char *out, *err, *want;
	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(once(), 0);
	tu_rmrf(src);
	ck_assert_int_eq(status(&out, &err), 1);
	ck_assert_int_ge(asprintf(&want, "  in step:     cannot tell: source %s: "
				  "No such file or directory\n",
				  src),
			 0);
	ASSERT_HAS(out, want);
	ASSERT_HAS(out, "  content:     1 file, 1 byte\n");
	free(want);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_usage_and_config_errors_exit_2)
{
	tu_write(tmp, "bad.conf", "[sync:a]\nsource = /x\ntarget = /y\nbogus = 1\n",
		 0644);
	char *bad = tu_path(tmp, "bad.conf"), *none = tu_path(tmp, "none.conf");
	const char *cases[][5] = {
		{"--status", "--once", NULL},
		{"--status", "--dry-run", NULL},
		{"--status", "--check-config", NULL},
		{"--status", "--source", "x", NULL},
		{"--status", "--config", none, NULL},
		{"--status", "--config", bad, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[8] = {tu_bin()};
		for (int k = 0; k < 5 && cases[i][k]; k++)
			argv[k + 1] = cases[i][k];
		char *out, *err;
		ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 2);
		ck_assert_msg(tu_lines(err) == 1, "case %zu: %s", i, err);
		ck_assert_msg(out[0] == '\0', "case %zu: %s", i, out);
		free(out);
		free(err);
	}
	char *err;
	const char *both[] = {tu_bin(), "--status", "--once", NULL};
	ck_assert_int_eq(tu_run(both, NULL, &err, 5000), 2);
	ASSERT_HAS(err, "--status cannot be combined with --once");
	free(err);
	free(bad);
	free(none);
}
END_TEST

/* One block per mapping of the config, in its order; 1 when any one is
 * not in step. */
START_TEST(test_every_mapping_of_the_config)
{
	char *other = tu_path(tmp, "src2"), *odst = tu_path(tmp, "dst2");
	char *text, *out, *err;
	tu_write(src, "a", "1", 0644);
	tu_write(other, "b", "2", 0644);
	ck_assert_int_eq(once(), 0);
	ck_assert_int_ge(asprintf(&text, "[sync:web]\nsource = %s\ntarget = %s\n"
				  "[sync:api]\nsource = %s\ntarget = %s\n",
				  src, dst, other, odst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *argv[] = {tu_bin(), "--status", "--config", conf, NULL};
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 1);
	char *api = strstr(out, "\n\nsync \"api\"\n");
	ck_assert_msg(strncmp(out, "sync \"web\"\n", 11) == 0 && api, "%s", out);
	*api = '\0';
	ASSERT_HAS(out, "  in step:     yes\n");
	ASSERT_HAS(api + 1, "  in step:     cannot tell: target ");
	free(out);
	free(err);
	/* Both in step: 0. */
	const char *o2[] = {tu_bin(), "--source", other, "--target", odst,
			    "--once", NULL};
	ck_assert_int_eq(tu_run(o2, NULL, NULL, 20000), 0);
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	ck_assert_int_eq(tu_lines(out), 21);
	free(out);
	free(err);
	free(text);
	free(other);
	free(odst);
}
END_TEST

/* The source is read as a publish reads it: the mapping's excludes,
 * symlinks mode and limits. */
START_TEST(test_source_is_read_as_a_publish_reads_it)
{
	char *text, *out, *err;
	tu_write(src, "app.conf", "1", 0644);
	tu_write(src, "app.conf.swp", "editor", 0644);
	char *link = tu_path(src, "alias");
	ck_assert_int_eq(symlink("app.conf", link), 0);
	ck_assert_int_ge(asprintf(&text, "[sync:web]\nsource = %s\ntarget = %s\n"
				  "exclude = *.swp\nsymlinks = skip\n"
				  "max_files = 3\n",
				  src, dst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *o[] = {tu_bin(), "--config", conf, "--once", NULL};
	ck_assert_int_eq(tu_run(o, NULL, NULL, 20000), 0);
	tu_write(src, "other.swp", "editor", 0644);
	const char *argv[] = {tu_bin(), "--status", "--config", conf, NULL};
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	ASSERT_HAS(out, "  content:     1 file, 1 byte\n");
	free(out);
	free(err);
	/* The same from the command line. */
	const char *adhoc[] = {tu_bin(), "--status", "--source", src, "--target",
			       dst, "--exclude", "*.swp", "--symlinks", "skip",
			       NULL};
	ck_assert_int_eq(tu_run(adhoc, &out, &err, 20000), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	free(out);
	free(err);
	/* Past max_files, it cannot tell, as a publish could not go on. */
	tu_write(src, "d/e/f", "x", 0644);
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 1);
	ASSERT_HAS(out, "  in step:     cannot tell: source ");
	ASSERT_HAS(out, "(max_files)");
	free(out);
	free(err);
	free(link);
	free(text);
}
END_TEST

/* A state file that lists more entries than a max_files lowered since
 * is said to be that, not damaged, by --status and by a publish, which
 * compares content and goes on. */
START_TEST(test_a_state_file_past_a_lowered_max_files_says_so)
{
	char *text, *out, *err;
	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%02d", i);
		tu_write(src, name, name, 0644);
	}
	ck_assert_int_eq(once(), 0);
	for (int i = 5; i < 20; i++) {
		char *p = tu_path(src, "f00");
		p[strlen(p) - 2] = (char)('0' + i / 10);
		p[strlen(p) - 1] = (char)('0' + i % 10);
		ck_assert_int_eq(unlink(p), 0);
		free(p);
	}
	ck_assert_int_ge(asprintf(&text, "[sync:web]\nsource = %s\ntarget = %s\n"
				  "max_files = 10\n",
				  src, dst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	const char *st[] = {tu_bin(), "--status", "--config", conf, NULL};
	ck_assert_int_eq(tu_run(st, &out, &err, 20000), 1);
	ASSERT_HAS(out, "  state file:  lists more entries than max_files "
			"(a publish compares content)\n");
	ASSERT_HAS(out, "(0 added, 0 changed, 15 removed)");
	ck_assert_msg(strstr(out, "damaged") == NULL, "%s", out);
	free(out);
	free(err);
	const char *o[] = {tu_bin(), "--config", conf, "--once", NULL};
	ck_assert_int_eq(tu_run(o, &out, &err, 20000), 0);
	ASSERT_HAS(err, "state file ..atomsync lists more entries than "
			"max_files (10); comparing content instead\n");
	ck_assert_msg(strstr(err, "damaged") == NULL, "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(tu_run(st, &out, &err, 20000), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	free(out);
	free(err);
	free(text);
}
END_TEST

static int exists(void *arg)
{
	struct stat st;
	return lstat(arg, &st) == 0;
}

static int missing(void *arg)
{
	return !exists(arg);
}

static void wait_log(const char *text)
{
	tu_wait_text(logpath, text, 1, 70000, logpath);
}

/* Under a running daemon that has yet to publish a change (it waits a
 * minute for the source to be quiet): behind, and no error is implied. */
START_TEST(test_running_daemon_behind_without_error)
{
	char *out, *err, *want;
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "60000", NULL};

	tu_write(src, "a", "1", 0644);
	pid = tu_spawn(argv, logpath);
	wait_log("1 of 1 mapping published");
	tu_write(src, "b", "2", 0644);
	ck_assert_int_eq(status(&out, &err), 1);
	ck_assert_int_ge(asprintf(&want, "  in step:     no, behind the "
				  "source: 1 path differs (1 added, 0 changed, "
				  "0 removed)\n  daemon:      running, pid %ld "
				  "(atomsyncd)\n  last error:  none recorded "
				  "(the daemon may yet publish the difference; ",
				  (long)pid),
			 0);
	ASSERT_HAS(out, want);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(want);
	free(out);
	free(err);
}
END_TEST

/* The lock file removed under a running daemon: the daemon is still
 * found, what to do about the lock is said, and the exit status says
 * something needs a hand though the target is in step. */
START_TEST(test_running_daemon_whose_lock_file_was_removed)
{
	char *out, *err, *want, *lock = tu_path(dst, "..atomsync.lock");
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", NULL};

	tu_write(src, "a", "1", 0644);
	pid = tu_spawn(argv, logpath);
	wait_log("1 of 1 mapping published");
	ck_assert_int_eq(unlink(lock), 0);
	ck_assert_int_eq(status(&out, &err), 1);
	ASSERT_HAS(out, "  in step:     yes\n");
	ck_assert_int_ge(asprintf(&want, "  daemon:      running, pid %ld "
				  "(atomsyncd); its lock file was removed or "
				  "moved: restart it to lock the target again\n",
				  (long)pid),
			 0);
	ASSERT_HAS(out, want);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(want);
	free(out);
	free(err);
	free(lock);
}
END_TEST

/* A daemon stopped while its mapping failed leaves its error recorded;
 * once the source no longer holds what failed, the target is in step
 * and the error no longer holds: said so, and no failure. */
START_TEST(test_an_error_left_by_a_stopped_daemon_that_no_longer_holds)
{
	char *errfile = tu_path(dst, "..atomsync.error"), *out, *err;
	char *b = tu_path(src, "b");
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", NULL};

	tu_write(src, "a", "1", 0644);
	pid = tu_spawn(argv, logpath);
	wait_log("1 of 1 mapping published");
	tu_write(dst, "b", "mine", 0644);
	tu_write(src, "b", "theirs", 0644);
	wait_log("until it is moved away; retrying");
	ck_assert_msg(tu_wait_for(exists, errfile, 3000), "no error file");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	ck_assert_int_eq(unlink(b), 0);
	ck_assert_int_eq(status(&out, &err), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	ASSERT_HAS(out, "  last error:  none (the target is in step; a daemon "
			"no longer running recorded at 20");
	ASSERT_HAS(out, "b exists and is not a link managed by atomsync");
	free(out);
	free(err);
	free(b);
	free(errfile);
}
END_TEST

/* Under a running daemon whose mapping fails: the error it recorded,
 * the daemon by its pid; after the fix, in step and no error left. */
START_TEST(test_running_daemon_failing_then_fixed)
{
	char *errfile = tu_path(dst, "..atomsync.error");
	char *in_way = tu_path(dst, "b"), *out, *err, *want;
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", NULL};

	tu_write(src, "a", "1", 0644);
	pid = tu_spawn(argv, logpath);
	wait_log("1 of 1 mapping published");
	tu_write(dst, "b", "mine", 0644);
	tu_write(src, "b", "theirs", 0644);
	wait_log("until it is moved away; retrying");
	ck_assert_msg(tu_wait_for(exists, errfile, 3000), "no error file");

	ck_assert_int_eq(status(&out, &err), 1);
	ck_assert_int_ge(asprintf(&want, "  in step:     no, a publish would "
				  "fail: target %s: b exists and is not a link "
				  "managed by atomsync; refusing to replace it, "
				  "and publishing nothing until it is moved "
				  "away\n"
				  "  daemon:      running, pid %ld (atomsyncd)\n"
				  "  last error:  20",
				  dst, (long)pid),
			 0);
	ASSERT_HAS(out, want);
	free(want);
	ck_assert_int_ge(asprintf(&want, " ago): target %s: b exists and is not "
				  "a link managed by atomsync; refusing to "
				  "replace it, and publishing nothing until it "
				  "is moved away\n",
				  dst),
			 0);
	ASSERT_HAS(out, want);
	free(want);
	free(out);
	free(err);

	ck_assert_int_eq(unlink(in_way), 0);
	wait_log("publishing works again");
	ck_assert_msg(tu_wait_for(missing, errfile, 3000), "error file stays");
	ck_assert_int_eq(status(&out, &err), 0);
	ck_assert_int_ge(asprintf(&want, "  in step:     yes\n  daemon:      "
				  "running, pid %ld (atomsyncd)\n  last error:  "
				  "none\n",
				  (long)pid),
			 0);
	ASSERT_HAS(out, want);
	/* The daemon runs on, and stops cleanly. */
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(want);
	free(out);
	free(err);
	free(errfile);
	free(in_way);
}
END_TEST

/* Paths and messages reach the terminal escaped as in text log lines. */
START_TEST(test_control_bytes_are_escaped)
{
	char *out, *err;
	free(fx.src);
	free(fx.dst);
	src = fx.src = tu_path(tmp, "src\x1b[2J\nx");
	dst = fx.dst = tu_path(tmp, "dst\x9b\tx");
	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(once(), 0);
	ck_assert_int_eq(status(&out, &err), 0);
	ASSERT_HAS(out, "/src\\x1b[2J\\x0ax\n");
	ASSERT_HAS(out, "/dst\\x9b\\x09x\n");
	for (const char *p = out; *p; p++)
		ck_assert_msg((unsigned char)*p >= 0x20 || *p == '\n',
			      "byte 0x%02x in:\n%s", (unsigned char)*p, out);
	free(out);
	free(err);
}
END_TEST

/* What another user can plant or has written: an error file of theirs
 * is not shown, a FIFO does not hang, and root, who does not trust a
 * generation of theirs, says so instead of guessing. */
START_TEST(test_what_other_users_wrote_is_not_believed)
{
	ck_assert_msg(tu_can_setuid(), "this test needs root");
	char *out, *err, *cmd;
	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(once(), 0);
	ck_assert_int_eq(chown(dst, OTHER, OTHER), 0);
	ck_assert_int_gt(asprintf(&cmd, "printf 'atomsync-error 1\\ntime 1\\n"
				  "message forged\\n' > '%s/..atomsync.error'",
				  dst),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	free(cmd);
	/* A daemon run as root refuses that target: whether it is in step
	 * only its owner's can tell. */
	ck_assert_int_eq(status(&out, &err), 1);
	ASSERT_HAS(out, "  last error:  not shown: ..atomsync.error could have "
			"been written by another user\n");
	ASSERT_HAS(out, "  in step:     cannot tell: the target belongs to uid "
			"2003: run --status as that user\n");
	ck_assert_msg(strstr(out, "forged") == NULL, "%s", out);
	free(out);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "rm '%s/..atomsync.error' && mkfifo "
				  "'%s/..atomsync.error'",
				  dst, dst),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	free(cmd);
	ck_assert_int_eq(status(&out, &err), 1);
	ASSERT_HAS(out, "  last error:  unknown: ..atomsync.error is damaged\n");
	free(out);
	free(err);

	/* A daemon that runs as that user. */
	char *mine = tu_path(tmp, "mine");
	tu_mkdirs(mine, 0755);
	ck_assert_int_eq(chown(mine, OTHER, OTHER), 0);
	free(fx.dst);
	dst = fx.dst = tu_path(mine, "dst");
	const char *o[] = {tu_bin(), "--source", src, "--target", dst, "--once",
			   NULL};
	ck_assert_int_eq(tu_run_as(OTHER, o, NULL, NULL, 20000), 0);
	ck_assert_int_eq(status(&out, &err), 1);
	ASSERT_HAS(out, "  in step:     cannot tell: the target belongs to uid "
			"2003: run --status as that user\n");
	free(out);
	free(err);
	const char *as[] = {tu_bin(), "--status", "--source", src, "--target",
			    dst, NULL};
	ck_assert_int_eq(tu_run_as(OTHER, as, &out, &err, 20000), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	free(out);
	free(err);
	free(mine);
}
END_TEST

/* Run by a user who is not the daemon's: what it cannot read, it says
 * so; what it can, it compares as the daemon would, the files being the
 * daemon's and not changed behind its back. */
START_TEST(test_another_user_is_told_what_it_cannot_read)
{
	ck_assert_msg(tu_can_setuid(), "this test needs root");
	char *out, *err;
	tu_write(src, "a", "1", 0600);
	ck_assert_int_eq(once(), 0);
	const char *argv[] = {tu_bin(), "--status", "--source", src, "--target",
			      dst, NULL};
	ck_assert_int_eq(tu_run_as(OTHER, argv, &out, &err, 20000), 1);
	ASSERT_HAS(out, "  state file:  cannot be read: Permission denied\n");
	ASSERT_HAS(out, "  in step:     cannot tell: source ");
	ASSERT_HAS(out, "/a: Permission denied\n");
	free(out);
	free(err);
	char *a = tu_path(src, "a");
	ck_assert_int_eq(chmod(a, 0644), 0);
	ck_assert_int_eq(once(), 0);
	ck_assert_int_eq(tu_run_as(OTHER, argv, &out, &err, 20000), 0);
	ASSERT_HAS(out, "  in step:     yes\n");
	free(out);
	free(err);
	/* Whether a daemon of root's holds the target is not theirs to
	 * see: not "not running" while one does. */
	const char *daemon[] = {tu_bin(), "--source", src, "--target", dst,
				"--debounce", "0", NULL};
	pid = tu_spawn(daemon, logpath);
	wait_log("1 of 1 mapping published");
	ck_assert_int_eq(tu_run_as(OTHER, argv, &out, &err, 20000), 0);
	char *want;
	ck_assert_int_ge(asprintf(&want, "  daemon:      cannot tell: the open "
				  "files of root's processes are not uid %u's "
				  "to look at (run as root)\n",
				  (unsigned)OTHER),
			 0);
	ASSERT_HAS(out, want);
	free(want);
	free(out);
	free(err);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(a);
}
END_TEST

static Suite *status_suite(void)
{
	Suite *s = suite_create("status");
	TCase *tc = tcase_create("status");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_in_step_exits_0_and_says_so);
	tcase_add_test(tc, test_a_state_file_cut_short_is_damaged);
	tcase_add_test(tc, test_a_state_file_past_a_lowered_max_files_says_so);
	tcase_add_test(tc, test_what_was_set_aside_is_said);
	tcase_add_test(tc, test_changed_source_exits_1_with_counts_and_writes_nothing);
	tcase_add_test(tc, test_missing_visible_link_is_not_in_step);
	tcase_add_test(tc, test_missing_target_is_not_created);
	tcase_add_test(tc, test_missing_source_cannot_tell);
	tcase_add_test(tc, test_usage_and_config_errors_exit_2);
	tcase_add_test(tc, test_every_mapping_of_the_config);
	tcase_add_test(tc, test_source_is_read_as_a_publish_reads_it);
	tcase_add_test(tc, test_running_daemon_failing_then_fixed);
	tcase_add_test(tc, test_an_error_left_by_a_stopped_daemon_that_no_longer_holds);
	tcase_add_test(tc, test_running_daemon_whose_lock_file_was_removed);
	tcase_add_test(tc, test_running_daemon_behind_without_error);
	tcase_add_test(tc, test_control_bytes_are_escaped);
	tcase_add_test(tc, test_what_other_users_wrote_is_not_believed);
	tcase_add_test(tc, test_another_user_is_told_what_it_cannot_read);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(status_suite());
}
