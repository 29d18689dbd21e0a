/* atomsyncd driven as a user drives it: the one-shot command line, its
 * exit statuses and its messages, on real directories. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
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
		/* --once would be ignored: it only checks. */
		{"--check-config", "--once", NULL},
		{"--check-config", "--dry-run", NULL},
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

/* Runs the binary under test with `args` (NULL-ended, "SRC" and "DST"
 * standing for the fixture's source and target) as case i of a test: it
 * must exit 2 with one line on standard error, which is returned. */
static char *usage_case(const char *const args[8], size_t i)
{
	const char *argv[10] = {tu_bin()};
	char *out, *err;

	for (int k = 0; k < 8 && args[k]; k++)
		argv[k + 1] = strcmp(args[k], "SRC") == 0   ? src
			      : strcmp(args[k], "DST") == 0 ? dst
							    : args[k];
	ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 2);
	ck_assert_msg(tu_lines(err) == 1, "case %zu: %s", i, err);
	free(out);
	return err;
}

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
		char *err = usage_case(cases[i], i), *want;
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

/* An empty path (an unset variable in a unit file or script) is a
 * usage error naming the option, not a path resolved against the
 * working directory or a "feedback loop". */
START_TEST(test_path_options_refuse_empty_paths)
{
	const char *cases[][8] = {
		{"-s", "SRC", "-t", "", "--check-config", NULL},
		{"--source=", "--target", "DST", "--once", NULL},
		{"--config", "", NULL},
	};
	const char *opt[] = {"--target", "--source", "--config"};
	char *cwd = getcwd(NULL, 0);

	ck_assert_int_eq(chdir(tmp), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = usage_case(cases[i], i), *want;
		ck_assert_int_ge(asprintf(&want, "atomsyncd: %s: empty path",
					  opt[i]),
				 0);
		ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
			      "case %zu: %s", i, err);
		free(want);
		free(err);
	}
	ck_assert_int_lt(access(dst, F_OK), 0);
	ck_assert_int_lt(access("..atomsync.lock", F_OK), 0);
	ck_assert_int_eq(chdir(cwd), 0);
	free(cwd);
}
END_TEST

/* A configuration file that is not there is named once, as the walk to
 * it names it, relative or not. */
START_TEST(test_a_missing_config_file_is_named_once)
{
	const char *cases[][8] = {
		{"-c", "nothere.conf", "--check-config", NULL},
		{"-c", "/nowhere/nothere.conf", "--check-config", NULL},
	};
	const char *want[] = {
		"atomsyncd: ./nothere.conf: No such file or directory\n",
		"atomsyncd: /nowhere/nothere.conf: /nowhere: No such file or "
		"directory\n"};
	char *cwd = getcwd(NULL, 0);

	ck_assert_int_eq(chdir(tmp), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = usage_case(cases[i], i);
		ck_assert_str_eq(err, want[i]);
		free(err);
	}
	ck_assert_int_eq(chdir(cwd), 0);
	free(cwd);
}
END_TEST

/* A path option given twice is a slip to be told of, not the last one
 * taken: nothing is read or written. */
START_TEST(test_path_options_given_twice_are_refused)
{
	const char *cases[][8] = {
		{"-s", "SRC", "-t", "DST", "-s", "/x", "--once", NULL},
		{"--target", "DST", "-s", "SRC", "--target=/y", "--once", NULL},
		{"-c", "/a.conf", "-c", "/b.conf", "--check-config", NULL},
	};
	const char *opt[] = {"--source", "--target", "--config"};
	const char *first[] = {src, dst, "/a.conf"};
	const char *then[] = {"/x", "/y", "/b.conf"};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = usage_case(cases[i], i), *line;
		ck_assert_int_ge(asprintf(&line, "%s given twice ('%s', then "
						 "'%s')",
					  opt[i], first[i], then[i]),
				 0);
		ck_assert_msg(strstr(err, line), "case %zu: %s", i, err);
		free(line);
		free(err);
	}
	ck_assert_int_lt(access(dst, F_OK), 0);
}
END_TEST

#define OTHER 2003u
#define THIRD 2004u

/* --check-config on `conf`, as root (uid < 0) or as uid; the exit status,
 * with stderr in *err. */
static int check_conf_as(int uid, const char *conf, char **err)
{
	const char *argv[] = {tu_bin(), "--check-config", "--config", conf,
			      NULL};
	if (uid < 0)
		return tu_run(argv, NULL, err, 5000);
	return tu_run_as((unsigned)uid, argv, NULL, err, 5000);
}

/* Refused with exit 2 and the one line "atomsyncd: CONF: WHY". */
static void assert_refused(int uid, const char *conf, const char *why)
{
	char *err, *want;
	ck_assert_int_eq(check_conf_as(uid, conf, &err), 2);
	ck_assert_int_ge(asprintf(&want, "atomsyncd: %s: %s\n", conf, why), 0);
	ck_assert_msg(strcmp(err, want) == 0, "got: %s\nwanted: %s", err, want);
	free(want);
	free(err);
}

/* Refused, as root, for the directory `dir`: "directory DIR WHY". */
static void assert_dir_refused(const char *conf, const char *dir,
			       const char *why)
{
	char *want;
	ck_assert_int_ge(asprintf(&want, "directory %s %s", dir, why), 0);
	assert_refused(-1, conf, want);
	free(want);
}

static void assert_accepted(int uid, const char *conf)
{
	char *err;
	int rc = check_conf_as(uid, conf, &err);
	ck_assert_msg(rc == 0, "uid %d, %s: exit %d: %s", uid, conf, rc, err);
	free(err);
}

static char *write_conf_at(const char *dir, const char *name, mode_t mode,
			   int owner)
{
	char *text, *p = tu_path(dir, name);
	ck_assert_int_ge(asprintf(&text, "[sync:a]\nsource = %s\ntarget = %s\n",
				  src, dst),
			 0);
	tu_write(dir, name, text, mode);
	ck_assert_int_eq(chmod(p, mode), 0);
	if (owner >= 0)
		ck_assert_int_eq(chown(p, (uid_t)owner, (gid_t)owner), 0);
	free(text);
	return p;
}

/* Whoever can write the config file chooses where a root daemon writes:
 * only root or atomsyncd's own user may own it, and nobody else may
 * write it. */
START_TEST(test_config_file_owned_or_writable_by_others_is_refused)
{
	ck_assert_msg(tu_can_setuid(),
		      "this test acts as other users: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	char *c = write_conf_at(tmp, "good.conf", 0644, -1);
	assert_accepted(-1, c);
	assert_accepted(OTHER, c);
	ck_assert_int_eq(chown(c, OTHER, OTHER), 0);
	assert_refused(-1, c, "owned by uid 2003, not by root; refusing to "
			      "read it");
	assert_accepted(OTHER, c);
	assert_refused(THIRD, c, "owned by uid 2003, not by root or uid "
				 "2004, which atomsyncd runs as; refusing "
				 "to read it");
	ck_assert_int_eq(chown(c, 0, 0), 0);
	ck_assert_int_eq(chmod(c, 0664), 0);
	assert_refused(-1, c, "writable by its group (mode 0664); refusing to "
			      "read it");
	ck_assert_int_eq(chmod(c, 0646), 0);
	assert_refused(OTHER, c, "writable by others (mode 0646); refusing to "
				 "read it");
	ck_assert_int_eq(chmod(c, 0666), 0);
	assert_refused(-1, c, "writable by its group and others (mode 0666); "
			      "refusing to read it");
	free(c);
}
END_TEST

/* The file's owner vouches for it only where nobody else could have put
 * it: whoever can change a directory on the way, or make a name in the
 * one that holds it (sticky or not), could move there a file of root's
 * that says what they like, such as a copy atomsyncd made of their
 * source into a generation dir_mode lets them write. */
START_TEST(test_config_file_where_others_could_put_it_is_refused)
{
	ck_assert_msg(tu_can_setuid(),
		      "this test acts as other users: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	char *home = tu_path(tmp, "home"), *want;
	tu_mkdirs(home, 0755);
	char *c = write_conf_at(home, "atomsync.conf", 0600, -1);
	ck_assert_int_eq(chown(home, OTHER, OTHER), 0);
	assert_dir_refused(c, home, "is owned by uid 2003, who can change what "
				    "the path leads to");
	ck_assert_int_eq(chown(home, 0, 0), 0);
	ck_assert_int_eq(chmod(home, 0775), 0);
	assert_dir_refused(c, home, "is writable by its group (mode 0775), who "
				    "can change what the path leads to");
	ck_assert_int_eq(chmod(home, 01777), 0);
	assert_dir_refused(c, home, "is writable by its group and others (mode "
				    "1777), who can move any file of root's "
				    "into it");
	/* A directory of root's in a sticky one, as /tmp/atomsync: nobody
	 * else can move it, nor make a name in it. */
	char *sub = tu_path(home, "etc");
	tu_mkdirs(sub, 0755);
	char *c2 = write_conf_at(sub, "atomsync.conf", 0600, -1);
	assert_accepted(-1, c2);
	/* Named from inside it, relative, the same; but not where the user
	 * who owns a directory above could have swapped what "." is. */
	char *cmd, *out = NULL, *err = NULL;
	ck_assert_int_ge(asprintf(&cmd, "cd '%s' && exec '%s' --check-config "
					"--config atomsync.conf",
				  sub, tu_bin()),
			 0);
	const char *sh[] = {"sh", "-c", cmd, NULL};
	ck_assert_int_eq(tu_run(sh, &out, &err, 5000), 0);
	free(out);
	free(err);
	ck_assert_int_eq(chmod(home, 0755), 0);
	ck_assert_int_eq(chown(home, OTHER, OTHER), 0);
	ck_assert_int_eq(tu_run(sh, &out, &err, 5000), 2);
	ck_assert_int_ge(asprintf(&want, "atomsyncd: atomsync.conf: directory "
					 "%s is owned by uid 2003, who can "
					 "change what the path leads to\n",
				  home),
			 0);
	ck_assert_str_eq(err, want);
	free(out);
	free(err);
	free(cmd);
	/* Named from inside the user's own directory: that directory by
	 * its path, not as ".". */
	ck_assert_int_ge(asprintf(&cmd, "cd '%s' && exec '%s' --check-config "
					"--config atomsync.conf",
				  home, tu_bin()),
			 0);
	sh[2] = cmd;
	ck_assert_int_eq(tu_run(sh, &out, &err, 5000), 2);
	ck_assert_str_eq(err, want);
	free(want);
	free(out);
	free(err);
	free(cmd);
	free(c2);
	free(sub);
	free(c);
	free(home);
}
END_TEST

START_TEST(test_config_file_fifo_directory_and_foreign_link_are_refused)
{
	ck_assert_msg(tu_can_setuid(),
		      "this test acts as other users: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	/* A FIFO nobody writes to: refused at once, not waited on. */
	char *fifo = tu_path(tmp, "fifo.conf");
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	assert_refused(-1, fifo, "not a regular file; refusing to read it");
	assert_refused(-1, tmp, "not a regular file; refusing to read it");
	/* A link another user made to a good file is not followed. */
	char *c = write_conf_at(tmp, "good.conf", 0644, -1);
	char *home = tu_path(tmp, "home");
	tu_mkdirs(home, 0755);
	ck_assert_int_eq(chown(home, OTHER, OTHER), 0);
	char *cmd, *link = tu_path(home, "link.conf");
	ck_assert_int_ge(asprintf(&cmd, "ln -s '%s' '%s'", c, link), 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	char *err;
	ck_assert_int_eq(check_conf_as(-1, link, &err), 2);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, "/home is owned by uid 2003, who can change "
				  "what the path leads to"),
		      "%s", err);
	free(err);
	/* Its owner may use it. */
	assert_accepted(OTHER, link);
	free(cmd);
	free(link);
	free(home);
	free(c);
	free(fifo);
}
END_TEST

/* A Kubernetes ConfigMap or Secret volume: root's links through ..data
 * in a root directory (mode 1777 on a Secret's tmpfs), files 0644.  Such
 * a volume is mounted read-only, which is what lets a link in a directory
 * every user can write be followed: on a file system others can write,
 * anyone could have moved in a link of root's. */
START_TEST(test_config_file_from_a_configmap_volume_is_read)
{
	ck_assert_msg(tu_can_setuid(),
		      "this test acts as other users: run it as root");
	tu_private_mounts();
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	const mode_t modes[] = {0755, 01777};
	for (size_t i = 0; i < 2; i++) {
		char name[16];
		snprintf(name, sizeof(name), "volume%zu", i);
		char *vol = tu_path(tmp, name);
		char *gen = tu_path(vol, "..2026_11_25_16_04_05.123456789");
		tu_mkdirs(gen, 0755);
		free(write_conf_at(gen, "atomsync.conf", 0644, -1));
		char *data = tu_path(vol, "..data"), *c = tu_path(vol, "atomsync.conf");
		ck_assert_int_eq(symlink("..2026_11_25_16_04_05.123456789", data), 0);
		ck_assert_int_eq(symlink("..data/atomsync.conf", c), 0);
		ck_assert_int_eq(chmod(vol, modes[i]), 0);
		if (modes[i] & 0002) {
			assert_dir_refused(c, vol, "is writable by its group "
						   "and others (mode 1777), "
						   "who can move any file of "
						   "root's into it");
			ck_assert_int_eq(mount(vol, vol, "none", MS_BIND, NULL),
					 0);
			ck_assert_int_eq(mount("none", vol, "none",
					       MS_REMOUNT | MS_BIND | MS_RDONLY,
					       NULL),
					 0);
		}
		assert_accepted(-1, c);
		assert_accepted(OTHER, c);
		if (modes[i] & 0002)
			ck_assert_int_eq(umount2(vol, MNT_DETACH), 0);
		free(vol);
		free(gen);
		free(data);
		free(c);
	}
}
END_TEST

/* Two mappings whose targets are one directory by two paths (a bind
 * mount, which no config check can see): --once publishes the first,
 * and refuses the second rather than replace what the first put there. */
START_TEST(test_once_refuses_a_target_published_by_another_mapping)
{
	char *src2 = tu_path(tmp, "src2"), *alias = tu_path(tmp, "alias");
	char *conf = tu_path(tmp, "two.conf"), *text, *err = NULL;
	char *ours = tu_path(dst, "app.conf"), *theirs = tu_path(dst, "z");

	tu_private_mounts();
	tu_write(src, "app.conf", "first\n", 0644);
	tu_write(src2, "z", "second\n", 0644);
	tu_mkdirs(dst, 0755);
	tu_mkdirs(alias, 0755);
	ck_assert_int_eq(mount(dst, alias, "none", MS_BIND, NULL), 0);
	ck_assert_int_ge(asprintf(&text,
				  "[sync:a]\nsource = %s\ntarget = %s\n"
				  "[sync:b]\nsource = %s\ntarget = %s\n",
				  src, dst, src2, alias),
			 0);
	tu_write(tmp, "two.conf", text, 0644);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	ck_assert_int_eq(tu_run(argv, NULL, &err, 20000), 1);
	ck_assert_msg(strstr(err, "the same directory as the target of "
				  "[sync:a]"),
		      "%s", err);
	char *got = tu_read(ours, NULL);
	ck_assert_str_eq(got, "first\n");
	ck_assert_int_ne(access(theirs, F_OK), 0);
	ck_assert_int_eq(umount2(alias, MNT_DETACH), 0);
	free(got);
	free(err);
	free(text);
	free(theirs);
	free(ours);
	free(conf);
	free(alias);
	free(src2);
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

/* Appends to the file `rel` of the live generation, as root could. */
static void edit_live(const char *rel)
{
	char *p = tu_path(dst, "..data"), *q = tu_path(p, rel);
	FILE *f = fopen(q, "a");
	ck_assert_ptr_nonnull(f);
	fputs("edited", f);
	fclose(f);
	free(q);
	free(p);
}

/* Makes the next --once run due for a check of every live file: the
 * state's record of the last one (in the state file, and in each
 * record of its journal) is set to long ago. */
static void age_check(void)
{
	const char *files[] = {"..atomsync", "..atomsync.journal"};
	int aged = 0;

	for (size_t k = 0; k < 2; k++) {
		char *p = tu_path(dst, files[k]);
		char *text = tu_read(p, NULL);
		free(p);
		if (text == NULL)
			continue;
		/* "1" then zeros, in the place of the time: 2001 or so. */
		for (char *at = text; (at = strstr(at, "\nchecked ")); at++) {
			size_t n = strspn(at + 9, "0123456789");
			ck_assert_uint_gt(n, 0);
			memset(at + 9, '0', n);
			at[9] = '1';
			aged++;
		}
		tu_write(dst, files[k], text, 0600);
		free(text);
	}
	ck_assert_msg(aged > 0, "the state records no check");
}

/* --once checks every live file when the state says a check is due,
 * here on a thread of its own while it reads the source: an edit in
 * place in the live generation, which only root could make there, is
 * found and written afresh, whichever file of many it is, at the top or
 * below. */
START_TEST(test_once_finds_a_live_file_changed_in_place)
{
	const char *more[] = {"top.conf", "d3/sub/deep", "d3/zz", "d4.conf"};
	char *out, *err, rel[32];

	for (int k = 0; k < 300; k++) {
		snprintf(rel, sizeof(rel), "d%d/f%d", k % 10, k);
		tu_write(src, rel, rel, 0644);
	}
	for (size_t k = 0; k < sizeof(more) / sizeof(*more); k++)
		tu_write(src, more[k], more[k], 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
	/* Nothing edited: every file found as it was left. */
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(strstr(err, "unchanged") &&
			      !strstr(err, "changed in the live generation"),
		      "%s", err);
	free(out);
	free(err);
	for (int k = 0; k < 300; k += 149) {
		snprintf(rel, sizeof(rel), "d%d/f%d", k % 10, k);
		edit_live(rel);
	}
	for (size_t k = 0; k < sizeof(more) / sizeof(*more); k++)
		edit_live(more[k]);
	age_check();
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(strstr(err, "d0/f0 was changed in the live generation"),
		      "%s", err);
	ck_assert_msg(strstr(err, "d9/f149 was changed in the live generation"),
		      "%s", err);
	ck_assert_msg(strstr(err, "d8/f298 was changed in the live generation"),
		      "%s", err);
	for (size_t k = 0; k < sizeof(more) / sizeof(*more); k++) {
		char *line = NULL;
		ck_assert_int_gt(asprintf(&line, " %s was changed in the live "
						 "generation", more[k]), 0);
		ck_assert_msg(strstr(err, line), "%s: %s", more[k], err);
		free(line);
	}
	ASSERT_TREES();
	free(out);
	free(err);
	/* Every file: ten lines, then one for the rest. */
	for (int k = 0; k < 300; k++) {
		snprintf(rel, sizeof(rel), "d%d/f%d", k % 10, k);
		edit_live(rel);
	}
	age_check();
	ck_assert_int_eq(once(&out, &err), 0);
	int lines = 0;
	for (const char *at = err;
	     (at = strstr(at, "was changed in the live generation")); at++)
		lines++;
	ck_assert_int_eq(lines, 10);
	ck_assert_msg(strstr(err, "more files were changed in the live "
				  "generation; writing them afresh"),
		      "%s", err);
	ASSERT_TREES();
	free(out);
	free(err);
}
END_TEST

/* The text of the live generation's file `rel`. */
static char *live_text(const char *rel)
{
	char *p = tu_path(dst, "..data"), *q = tu_path(p, rel);
	char *text = tu_read(q, NULL);
	free(q);
	free(p);
	ck_assert_ptr_nonnull(text);
	return text;
}

/* arg is a path: its inode last changed 100 ms ago or more. */
static int changed_long_ago(void *arg)
{
	struct stat st;
	struct timespec now;

	if (stat(arg, &st) < 0)
		return 0;
	clock_gettime(CLOCK_REALTIME, &now);
	return (now.tv_sec - st.st_ctim.tv_sec) * 1000000000LL +
		       (now.tv_nsec - st.st_ctim.tv_nsec) >=
	       100000000LL;
}

/* --once checks every live file as often as a daemon does: within
 * resync_interval_s (300 s with --source and --target) of the last check
 * the state records, an edit in place stays, as it would between a
 * daemon's re-reads, and a change in the source is published beside it;
 * once due, or at every run with resync_interval_s = 0, it is found and
 * written afresh. */
START_TEST(test_once_checks_the_live_files_as_often_as_a_daemon)
{
	char *out, *err, *text, *conf;

	tu_write(src, "a", "a\n", 0644);
	tu_write(src, "d/b", "b\n", 0644);
	/* Past the window of a file written as it is read (50 ms, see
	 * SNAP_F_RACY), whose bytes are compared, which would find the
	 * edit. */
	char *a = tu_path(src, "a");
	ck_assert(tu_wait_for(changed_long_ago, a, 2000));
	free(a);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
	edit_live("a");
	tu_write(src, "d/b", "b2\n", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(!strstr(err, "changed in the live generation"), "%s", err);
	free(out);
	free(err);
	ck_assert_str_eq(text = live_text("d/b"), "b2\n");
	free(text);
	ck_assert_str_eq(text = live_text("a"), "a\nedited");
	free(text);

	age_check();
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(strstr(err, " a was changed in the live generation"),
		      "%s", err);
	free(out);
	free(err);
	ASSERT_TREES();

	ck_assert_int_ge(asprintf(&conf, "[sync:a]\nsource = %s\ntarget = %s\n"
					 "resync_interval_s = 0\n",
				  src, dst),
			 0);
	tu_write(tmp, "every.conf", conf, 0600);
	free(conf);
	conf = tu_path(tmp, "every.conf");
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	edit_live("a");
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	ck_assert_msg(strstr(err, " a was changed in the live generation"),
		      "%s", err);
	free(out);
	free(err);
	ASSERT_TREES();
	free(conf);
}
END_TEST

static int once_grace(const char *grace, long long *took_ms)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--once", "--grace-ms", grace, NULL};
	char *out = NULL, *err = NULL;
	long long t0 = tu_now_ms();
	int rc = tu_run(argv, &out, &err, 20000);
	if (took_ms)
		*took_ms = tu_now_ms() - t0;
	ck_assert_msg(rc == 0, "%s", err);
	free(out);
	free(err);
	return rc;
}

/* The generation ..data named before the live one. */
static char *replaced_generation(void)
{
	DIR *d = opendir(dst);
	char *live = tu_live(dst), *found = NULL;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "..2", 3) == 0 &&
		    strcmp(de->d_name, live) != 0) {
			free(found);
			found = strdup(de->d_name);
		}
	if (d)
		closedir(d);
	free(live);
	return found;
}

START_TEST(test_once_does_not_wait_out_the_grace_period)
{
	long long took;

	tu_write(src, "a", "1", 0644);
	once_grace("60000", &took);
	for (int k = 2; k <= 4; k++) {
		char *before = tu_live(dst);
		char *older = replaced_generation(), v[8];
		struct stat held = {0}, live;
		if (older) {
			char *op = tu_path(dst, older);
			ck_assert_int_eq(stat(op, &held), 0);
			free(op);
		}
		snprintf(v, sizeof(v), "%d", k);
		tu_write(src, "a", v, 0644);
		once_grace("60000", &took);
		/* Live and durable is done: no minute of grace waited out. */
		ck_assert_msg(took < tu_scale(10000), "run %d took %lld ms", k,
			      took);
		ASSERT_TREES();
		/* The live generation and the one it replaced, no more: an
		 * older one still in its grace period goes. */
		ck_assert_int_eq(tu_generations(dst), 2);
		char *rep = replaced_generation();
		ck_assert_ptr_nonnull(rep);
		ck_assert_str_eq(rep, before);
		/* Which it goes into: recycled, within its grace period or
		 * not, rather than a link made anew for every file. */
		char *now = tu_live(dst), *np = tu_path(dst, now);
		ck_assert_int_eq(stat(np, &live), 0);
		ck_assert_int_eq(older != NULL, k > 2);
		if (older)
			ck_assert_uint_eq(live.st_ino, held.st_ino);
		free(np);
		free(now);
		free(older);
		free(rep);
		free(before);
	}
}
END_TEST

/* A dry run tells what a run would do with the replaced generations it
 * finds, and does none of it: the one replaced last stays (within its
 * grace period, it is no leftover), an older complete one would go. */
START_TEST(test_dry_run_tells_which_replaced_generation_would_go)
{
	const char *older = "..2000_01_01_00_00_00.000000000";
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--once", "--grace-ms", "60000", "--dry-run",
			      NULL};
	char *out = NULL, *err = NULL;

	tu_write(src, "a", "1", 0644);
	once_grace("60000", NULL);
	tu_write(src, "a", "22", 0644);
	once_grace("60000", NULL);
	char *rep = replaced_generation(), *op = tu_path(dst, older);
	ck_assert_int_eq(mkdir(op, 0755), 0);
	ck_assert_int_eq(chmod(op, 0755), 0);
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	ck_assert_msg(strstr(err, "leftover") == NULL, "%s", err);
	char *want, *not;
	/* Not "its grace period over": the one after it was live only
	 * briefly, and it may well be within its own. */
	ck_assert_int_ge(asprintf(&want, "would remove replaced generation %s, "
				  "older than %s\n", older, rep),
			 0);
	ck_assert_int_ge(asprintf(&not, "replaced generation %s", rep), 0);
	ck_assert_msg(strstr(err, want), "%s", err);
	ck_assert_msg(strstr(err, not) == NULL, "%s", err);
	ck_assert_int_eq(tu_generations(dst), 3);
	ck_assert_int_eq(access(op, F_OK), 0);
	free(out);
	free(err);
	/* And a run does it. */
	argv[8] = NULL;
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
	ck_assert_msg(strstr(err, want + strlen("would remove ")), "%s", err);
	ck_assert_msg(strstr(err, "removed replaced generation"), "%s", err);
	ck_assert_int_eq(tu_generations(dst), 2);
	ck_assert_int_eq(access(op, F_OK), -1);
	free(not);
	free(want);
	free(op);
	free(rep);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_next_once_retires_a_generation_past_its_grace)
{
	tu_write(src, "a", "1", 0644);
	once_grace("300", NULL);
	tu_write(src, "a", "22", 0644);
	long long replaced = tu_now_ms();
	once_grace("300", NULL);
	ck_assert_int_eq(tu_generations(dst), 2);
	/* Within the grace period a run that changes nothing keeps it. */
	once_grace("300", NULL);
	if (tu_now_ms() < replaced + 250)
		ck_assert_int_eq(tu_generations(dst), 2);
	while (tu_now_ms() < replaced + 400)
		tu_nap(20); /* the grace period itself is what is waited for */
	/* Past its grace period, the replaced generation is recycled into
	 * the next one: its directory becomes the new live generation. */
	char *rep = replaced_generation(), *path = tu_path(dst, rep);
	int held = open(path, O_RDONLY | O_DIRECTORY);
	struct stat st;
	ck_assert_int_ge(held, 0);
	tu_write(src, "b", "new", 0644);
	once_grace("300", NULL);
	ck_assert_int_eq(tu_generations(dst), 2);
	ck_assert_int_lt(access(path, F_OK), 0);
	/* Not removed: renamed to be the live generation. */
	char *live = tu_live(dst), *lp = tu_path(dst, live);
	struct stat now;
	ck_assert_int_eq(fstat(held, &st), 0);
	ck_assert_uint_gt(st.st_nlink, 0);
	ck_assert_int_eq(stat(lp, &now), 0);
	ck_assert_uint_eq(now.st_ino, st.st_ino);
	close(held);
	ASSERT_TREES();
	free(lp);
	free(live);
	free(path);
	free(rep);
}
END_TEST

START_TEST(test_missing_source_exits_1_naming_it)
{
	char *out, *err;
	tu_rmrf(src);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_int_eq(error_lines(err), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, src) && strstr(err, "No such file"), "%s", err);
	/* The target there before is left as it was: empty, no lock. */
	ck_assert_int_eq(tu_count_names(dst), 0);
	ck_assert_int_eq(access(dst, F_OK), 0);
	free(out);
	free(err);
}
END_TEST

/* A source whose every file is excluded is as empty as one with none:
 * the last generation stays, and the line says names were left out and
 * names the option an ad hoc run has. */
START_TEST(test_a_source_all_excluded_is_empty_and_says_so)
{
	char *out, *err;
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--exclude", "*.tmp", "--once", NULL};

	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
	char *a = tu_path(src, "a");
	ck_assert_int_eq(unlink(a), 0);
	tu_write(src, "b.tmp", "2", 0644);
	ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 1);
	ck_assert_int_eq(error_lines(err), 1);
	ck_assert_msg(strstr(err, "is empty (1 name in it left out: excluded, "
				  "skipped or reserved); keeping the live") &&
			      strstr(err, "--allow-empty"),
		      "%s", err);
	char *got = tu_path(dst, "a"), *data = tu_read(got, NULL);
	ck_assert_str_eq(data, "1");
	free(data);
	free(got);
	free(a);
	free(out);
	free(err);
}
END_TEST

/* A run that publishes nothing leaves no target it made. */
START_TEST(test_missing_source_leaves_no_target_it_made)
{
	char *out, *err;
	tu_rmrf(src);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_msg(strstr(err, src) && strstr(err, "No such file"), "%s", err);
	ck_assert_int_lt(access(dst, F_OK), 0);
	ck_assert_int_eq(errno, ENOENT);
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

/* A target that is a file: one line, naming it once. */
START_TEST(test_target_that_is_a_file_names_it_once)
{
	char *out, *err, *want;
	tu_write(src, "f", "x", 0644);
	(void)rmdir(dst);
	tu_write(tmp, "dst", "a file", 0644);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_int_gt(asprintf(&want, "target %s: not a directory (a file is "
					 "in its place, say); move it away",
				  dst),
			 0);
	ck_assert_msg(strstr(err, want), "%s", err);
	free(want);
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

START_TEST(test_every_problem_is_reported_at_once)
{
	char *out, *err;
	publish_v1();
	char *gen = tu_live(dst);
	/* Three names in the way in the target, and 25 more: all in one
	 * line, the first 20 by name. */
	char name[32];
	for (int i = 0; i < 28; i++) {
		snprintf(name, sizeof(name), "mine-%02d", i);
		tu_write(dst, name, "mine\n", 0644);
		tu_write(src, name, "theirs\n", 0644);
	}
	tu_write(src, "app.conf", "v2\n", 0644);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, "28 names exist and are not links managed "
				  "by atomsync") &&
			      strstr(err, "mine-00, mine-01") &&
			      strstr(err, "mine-19, and 8 more"),
		      "%s", err);
	assert_v1_intact(gen);
	free(gen);
	free(out);
	free(err);
}
END_TEST

/* A directory that never was a target, with a file in the way: refused,
 * and left as it was, without the lock file the run made. */
START_TEST(test_a_refused_first_publish_leaves_the_directory_as_found)
{
	char *out, *err;
	tu_write(src, "app.conf", "v1\n", 0644);
	tu_write(dst, "app.conf", "mine\n", 0644);
	ck_assert_int_eq(once(&out, &err), 1);
	ck_assert_msg(strstr(err, "app.conf exists and is not a link managed "
				  "by atomsync"),
		      "%s", err);
	DIR *d = opendir(dst);
	struct dirent *de;
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		ck_assert_msg(strcmp(de->d_name, ".") == 0 ||
				      strcmp(de->d_name, "..") == 0 ||
				      strcmp(de->d_name, "app.conf") == 0,
			      "%s left in the target", de->d_name);
	closedir(d);
	char *mine = tu_path(dst, "app.conf"), *got = tu_read(mine, NULL);
	ck_assert_str_eq(got, "mine\n");
	free(got);
	free(mine);
	free(out);
	free(err);
}
END_TEST

/* A dry run against a target a running daemon holds fails as a run
 * would, and reports nothing of the daemon's as debris. */
START_TEST(test_a_dry_run_against_a_held_target_fails_as_a_run_would)
{
	char *out, *err, *logpath = tu_path(tmp, "daemon.log");
	const char *daemon[] = {tu_bin(), "--source", src, "--target", dst,
				"--debounce", "0", NULL};
	const char *dry[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--dry-run", NULL};

	tu_write(src, "app.conf", "v1\n", 0644);
	pid_t pid = tu_spawn(daemon, logpath);
	struct tu_needle pub = {logpath, "published ..", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &pub, 10000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_eq(tu_run(dry, &out, &err, 20000), 1);
	ck_assert_msg(strstr(err, "in use by another atomsyncd (pid") &&
			      !strstr(err, "would remove"),
		      "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	ck_assert_int_eq(tu_run(dry, &out, &err, 20000), 0);
	free(out);
	free(err);
	free(logpath);
}
END_TEST

/* A dry run on a directory that was never a target, holding a name like
 * a generation's, is refused as a run is, not told it "would remove" it;
 * nothing there changes. */
START_TEST(test_a_dry_run_refuses_what_looks_like_a_generation_as_a_run_does)
{
	char *out, *err, *gen = tu_path(dst, "..2020_01_01_00_00_00.000000000");
	char *data = tu_path(gen, "data");
	const char *dry[] = {tu_bin(), "--source", src, "--target", dst,
			     "--once", "--dry-run", NULL};

	tu_write(src, "app.conf", "v1\n", 0644);
	tu_write(gen, "data", "theirs\n", 0644);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(tu_run(dry, &out, &err, 20000), 1);
		ck_assert_msg(strstr(err, "looks like atomsync's") &&
				      !strstr(err, "would remove"),
			      "%s", err);
		free(out);
		free(err);
		/* An empty lock file names no target either. */
		tu_write(dst, "..atomsync.lock", "", 0600);
	}
	char *got = tu_read(data, NULL);
	ck_assert_str_eq(got, "theirs\n");
	free(got);
	free(data);
	free(gen);
}
END_TEST

/* A visible link repointed by hand holds no data: the next run puts it
 * back, in one rename, and publishes what changed all the same. */
START_TEST(test_a_repointed_visible_link_is_put_back)
{
	char *out, *err;
	publish_v1();
	char *vis = tu_path(dst, "app.conf"), *tmpl = tu_path(dst, "..tmp");
	ck_assert_int_eq(symlink("/etc/hostname", tmpl), 0);
	ck_assert_int_eq(rename(tmpl, vis), 0);
	tu_write(src, "other.conf", "new\n", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_msg(strstr(err, "app.conf named /etc/hostname; put back, "
				  "naming ..data/app.conf"),
		      "%s", err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	char *link = tu_path(dst, "..atomsync.link.tmp");
	ck_assert_int_ne(access(link, F_OK), 0);
	free(link);
	free(tmpl);
	free(vis);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_followed_link_up_never_copies_the_target_into_itself)
{
	/* symlinks = follow, and a link to the directory that holds both the
	 * source and the target. */
	char *out, *err;
	tu_write(src, "app.conf", "v1\n", 0644);
	char *up = tu_path(src, "up");
	ck_assert_int_eq(symlink("..", up), 0);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--symlinks", "follow", "--once", NULL};
	for (int run = 0; run < 3; run++) {
		ck_assert_int_eq(tu_run(argv, &out, &err, 20000), 0);
		ck_assert_msg(strstr(err, "up/dst: leads into the target itself; "
					  "skipped"),
			      "%s", err);
		free(out);
		free(err);
	}
	char *nested = tu_path(dst, "up/dst");
	ck_assert_int_ne(access(nested, F_OK), 0);
	free(nested);
	free(up);
}
END_TEST

/* Runs --once `runs` times with `args` after the source and target: each
 * exits 0 and warns that `name` leads into the target. */
static void once_skips_into_target(const char *const *args, const char *name,
				   int runs)
{
	const char *argv[12] = {tu_bin(), "--source", src, "--target", dst,
				"--once"};
	size_t n = 6;
	char *out, *err, *want;

	for (; *args && n < 11; args++)
		argv[n++] = *args;
	ck_assert_int_ge(asprintf(&want, "%s: leads into the target itself; "
					 "skipped", name),
			 0);
	for (int run = 0; run < runs; run++) {
		int rc = tu_run(argv, &out, &err, 20000);
		ck_assert_msg(rc == 0 && strstr(err, want), "run %d: exit %d: %s",
			      run, rc, err);
		free(out);
		free(err);
	}
	free(want);
}

START_TEST(test_links_into_the_target_never_wedge_the_mapping)
{
	/* A link to a file of the target (through ..data, or its visible
	 * name) would publish what the last publish wrote, which the next
	 * changes: every publish failed "changed while being read". */
	char *out, *err;
	tu_write(src, "app.conf", "v1\n", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
	const char *follow[] = {"--symlinks", "follow", NULL};
	char *data = tu_path(dst, "..data/app.conf");
	char *shown = tu_path(dst, "app.conf");
	char *l1 = tu_path(src, "via-data"), *l2 = tu_path(src, "via-name");
	ck_assert_int_eq(symlink(data, l1), 0);
	ck_assert_int_eq(symlink(shown, l2), 0);
	once_skips_into_target(follow, "via-data", 3);
	once_skips_into_target(follow, "via-name", 1);
	tu_write(src, "app.conf", "v2\n", 0644);
	once_skips_into_target(follow, "via-data", 1);
	char *got = tu_read(shown, NULL);
	ck_assert_str_eq(got, "v2\n");
	free(got);
	char *in = tu_path(dst, "via-data");
	ck_assert_int_ne(access(in, F_OK), 0);
	free(in);
	/* The same through a follow_into directory that holds the target. */
	ck_assert_int_eq(unlink(l2), 0);
	char *conf, *text;
	ck_assert_int_ge(asprintf(&text, "[sync:a]\nsource = %s\ntarget = %s\n"
					 "follow_into = %s\n",
				  src, dst, tmp),
			 0);
	tu_write(tmp, "into.conf", text, 0644);
	conf = tu_path(tmp, "into.conf");
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	for (int run = 0; run < 3; run++) {
		int rc = tu_run(argv, &out, &err, 20000);
		ck_assert_msg(rc == 0 && strstr(err, "via-data: leads into the "
						     "target itself; skipped"),
			      "run %d: exit %d: %s", run, rc, err);
		free(out);
		free(err);
	}
	free(text);
	free(conf);
	free(l1);
	free(l2);
	free(data);
	free(shown);
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

/* A read lists its first SNAPSHOT_WARN_MAX warnings and counts the rest:
 * whoever writes the source can make as many as they like. */
START_TEST(test_warnings_past_a_thousand_are_counted)
{
	char *out, *err;
	tu_write(src, "ok", "x", 0644);
	for (int i = 0; i < 1005; i++) {
		char n[16];
		snprintf(n, sizeof(n), "gone%04d", i);
		char *p = tu_path(src, n);
		ck_assert_int_eq(symlink("nowhere", p), 0);
		free(p);
	}
	ck_assert_int_eq(once(&out, &err), 0);
	size_t n = 0;
	for (const char *p = err; (p = strstr(p, "dangling symlink")); p++)
		n++;
	ck_assert_uint_eq(n, 1000);
	ck_assert_msg(strstr(err, "gone0999: dangling symlink") &&
			      !strstr(err, "gone1000") &&
			      strstr(err, ": 5 more warnings, not listed\n"),
		      "%s", err);
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
		/* Sticky, as /tmp: nobody else may move the source away. */
		ck_assert_int_eq(chmod(tmp, 01777), 0);
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

/* A publish that goes through removes the error a daemon recorded in
 * the target: it is no longer why the target lags.  A dry run leaves
 * it. */
START_TEST(test_once_removes_a_recorded_error)
{
	char *out, *err;
	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(once(&out, &err), 0);
	free(out);
	free(err);
	char *errfile = tu_path(dst, "..atomsync.error");
	tu_write(dst, "..atomsync.error",
		 "atomsync-error 1\ntime 1\nmessage old\n", 0600);
	const char *dry[] = {tu_bin(), "--source", src, "--target", dst, "--once",
			     "--dry-run", NULL};
	ck_assert_int_eq(tu_run(dry, NULL, NULL, 20000), 0);
	ck_assert_int_eq(access(errfile, F_OK), 0);
	ck_assert_int_eq(once(&out, &err), 0);
	ck_assert_int_lt(access(errfile, F_OK), 0);
	free(errfile);
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
	/* ..data, the live generation and the one it replaced (in its
	 * grace period), ..atomsync and the journal the second run added
	 * to it, a, b */
	ck_assert_int_eq(tu_count_entries(dst), 7);
	ck_assert_int_eq(tu_generations(dst), 2);
	char *journal = tu_path(dst, "..atomsync.journal");
	ck_assert_int_eq(access(journal, F_OK), 0);
	free(journal);
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
	tcase_add_test(tc, test_path_options_refuse_empty_paths);
	tcase_add_test(tc, test_path_options_given_twice_are_refused);
	tcase_add_test(tc, test_a_missing_config_file_is_named_once);
	tcase_add_test(tc, test_config_file_owned_or_writable_by_others_is_refused);
	tcase_add_test(tc, test_config_file_where_others_could_put_it_is_refused);
	tcase_add_test(tc, test_config_file_fifo_directory_and_foreign_link_are_refused);
	tcase_add_test(tc, test_config_file_from_a_configmap_volume_is_read);
	tcase_add_test(tc, test_once_projects_the_tree);
	tcase_add_test(tc, test_once_refuses_a_target_published_by_another_mapping);
	tcase_add_test(tc, test_once_finds_a_live_file_changed_in_place);
	tcase_add_test(tc, test_once_checks_the_live_files_as_often_as_a_daemon);
	tcase_add_test(tc, test_once_does_not_wait_out_the_grace_period);
	tcase_add_test(tc, test_next_once_retires_a_generation_past_its_grace);
	tcase_add_test(tc, test_dry_run_tells_which_replaced_generation_would_go);
	tcase_add_test(tc, test_missing_source_exits_1_naming_it);
	tcase_add_test(tc, test_missing_source_leaves_no_target_it_made);
	tcase_add_test(tc, test_a_source_all_excluded_is_empty_and_says_so);
	tcase_add_test(tc, test_missing_target_parent_exits_1);
	tcase_add_test(tc, test_target_that_is_a_file_names_it_once);
	tcase_add_test(tc, test_collision_with_user_file_exits_1_and_keeps_generation);
	tcase_add_test(tc, test_every_problem_is_reported_at_once);
	tcase_add_test(tc, test_a_refused_first_publish_leaves_the_directory_as_found);
	tcase_add_test(tc, test_a_repointed_visible_link_is_put_back);
	tcase_add_test(tc, test_a_dry_run_against_a_held_target_fails_as_a_run_would);
	tcase_add_test(tc, test_a_dry_run_refuses_what_looks_like_a_generation_as_a_run_does);
	tcase_add_test(tc, test_followed_link_up_never_copies_the_target_into_itself);
	tcase_add_test(tc, test_links_into_the_target_never_wedge_the_mapping);
	tcase_add_test(tc, test_special_files_warn_and_never_block);
	tcase_add_test(tc, test_symlink_loop_and_escape_warn);
	tcase_add_test(tc, test_warnings_past_a_thousand_are_counted);
	tcase_add_test(tc, test_unreadable_file_exits_1_and_keeps_generation);
	tcase_add_test(tc, test_exclude_options_follow_gitignore_rules);
	tcase_add_test(tc, test_exclude_key_follows_gitignore_rules);
	tcase_add_test(tc, test_invalid_excludes_are_usage_errors);
	tcase_add_test(tc, test_dry_run_changes_nothing);
	tcase_add_test(tc, test_target_only_holds_our_names);
	tcase_add_test(tc, test_once_removes_a_recorded_error);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(cli_suite());
}
