/* A root atomsyncd among users who are not root: what another uid can
 * plant or swap (symlinks on the way to a target or a source, files in a
 * generation) must never redirect or taint what root writes.  The other
 * users are real uids, through setpriv(1); the tests run as root. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fsutil.h"
#include "testutil.h"

#define APP_UID 2003u
/* Another user of a source the app user shares. */
#define OTHER_UID 2004u

static struct tu_fixture fx;
static char *tmp, *src, *dst, *logpath;
static pid_t pid;

static void setup(void)
{
	ck_assert_msg(tu_can_setuid(),
		      "these tests act as other users: run them as root");
	tu_fixture_setup(&fx, TU_SHARED);
	tmp = fx.tmp;
	src = fx.src;
	dst = fx.dst;
	logpath = fx.log;
	tu_write(src, "app.conf", "secret: no\n", 0644);
	pid = 0;
}

static void teardown(void)
{
	fx.pid = pid;
	tu_fixture_teardown(&fx);
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

/* A daemon on `target` (debounce 0), once it has published: its pid in
 * `pid`. */
static void daemon_published(const char *target)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", target,
			      "--debounce", "0", NULL};

	pid = tu_spawn(argv, logpath);
	struct tu_needle pub = {logpath, "published ..", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &pub, 10000), "%s",
		      tu_read(logpath, NULL));
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
	ck_assert_int_eq(tu_count_names(victim), 0);
	free(err);
	err = NULL;
	/* Nor is a directory of theirs at that name written into: what it
	 * holds they could change under root's hooks and readers. */
	char *cmd;
	ck_assert_int_gt(asprintf(&cmd, "rm '%s' && mkdir '%s'", target, target),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(once_to(src, target, &err), 1);
	ck_assert_msg(strstr(err, target) && strstr(err, "owned by uid 2003") &&
			      strstr(err, "refusing to publish into it"),
		      "%s", err);
	ck_assert_int_eq(tu_count_names(target), 0);
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
	ck_assert_int_eq(tu_count_names(victim), 0);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	ck_assert_int_eq(tu_count_names(victim), 0);
	free(target);
	free(victim);
	free(app);
}
END_TEST

/* As a child run as a user: swaps `arg` and `arg`.theirs. */
static int exchange_target(void *arg)
{
	char *theirs;

	if (asprintf(&theirs, "%s.theirs", (const char *)arg) < 0)
		return 1;
	int rc = renameat2(AT_FDCWD, arg, AT_FDCWD, theirs, RENAME_EXCHANGE);
	free(theirs);
	return rc < 0;
}

/* The user who owns the directory that holds a target moves the target
 * away while the daemon runs and puts a directory of theirs in its
 * place, to have root publish, and run its hooks, where they can change
 * what is published: the daemon refuses that directory and writes
 * nothing into it, not even its error file. */
START_TEST(test_a_users_directory_put_in_place_of_the_target_is_refused)
{
	char *app = dir_of("app", APP_UID);
	char *target = tu_path(app, "cfg");
	char *cmd;

	daemon_published(target);
	ck_assert_int_gt(asprintf(&cmd, "mkdir '%s.theirs'", target), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	/* At once: the daemon makes a target anew as soon as it is gone. */
	ck_assert_int_eq(tu_call_as(APP_UID, exchange_target, target), 0);
	tu_write(src, "notes", "theirs\n", 0644);
	struct tu_needle n = {logpath, "owned by uid 2003, not by root or "
				       "atomsyncd's user; refusing to publish "
				       "into it",
			      1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_eq(tu_count_names(target), 0);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	ck_assert_int_eq(tu_count_names(target), 0);
	free(cmd);
	free(target);
	free(app);
}
END_TEST

/* The same user renames a directory of root's that sits beside the
 * target into its place (root's link in it leads elsewhere): the daemon
 * takes no directory that is not empty for the target made again, and
 * writes nothing into it; an empty one made by root it publishes to. */
START_TEST(test_a_directory_of_roots_moved_in_as_the_target_is_refused)
{
	char *app = dir_of("app", APP_UID);
	char *target = tu_path(app, "cfg"), *rootdir = tu_path(app, "rootdir");
	char *conf = tu_path(rootdir, "app.conf"), *cmd;
	struct stat st;

	tu_mkdirs(rootdir, 0755);
	ck_assert_int_eq(symlink("/etc/hostname", conf), 0);
	daemon_published(target);
	/* Said once, at the start: the way to it is the user's. */
	ck_assert_int_eq(tu_file_count(logpath, "a directory of root's moved "
						 "there before a start is "
						 "taken for the target"),
			 1);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mv cfg cfg.old && "
					"mv rootdir cfg",
				  app),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	tu_write(src, "notes", "after\n", 0644);
	struct tu_needle n = {logpath, "was replaced by a directory that is "
				       "not empty",
			      1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_eq(tu_count_names(target), 1);
	char *in = tu_path(target, "app.conf"), buf[64];
	ssize_t len = readlink(in, buf, sizeof(buf) - 1);
	ck_assert_int_eq(len, (ssize_t)strlen("/etc/hostname"));
	buf[len] = '\0';
	ck_assert_str_eq(buf, "/etc/hostname");
	free(in);
	/* Root makes it again, empty: published to. */
	char *old = tu_path(tmp, "rootdir.old");
	ck_assert_int_eq(rename(target, old), 0);
	tu_mkdirs(target, 0755);
	struct tu_needle again = {logpath, "published ..", 2};
	ck_assert_msg(tu_wait_for(tu_file_holds, &again, 10000), "%s",
		      tu_read(logpath, NULL));
	char *notes = tu_path(target, "notes");
	ck_assert_int_eq(lstat(notes, &st), 0);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(notes);
	free(old);
	free(cmd);
	free(conf);
	free(rootdir);
	free(target);
	free(app);
}
END_TEST

/* A daemon on app/cfg, which the app user moves away to cfg.old (the
 * daemon let go of it, as it says) and then puts one of theirs in its
 * place (refused).  Its pid in `pid`. */
static void lose_target_to_theirs(const char *app, const char *target)
{
	char *cmd;

	daemon_published(target);
	/* Gone first, as the daemon sees it (the writer it held let go),
	 * then one of theirs. */
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mv cfg cfg.old", app), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	tu_write(src, "notes", "after\n", 0644);
	struct tu_needle gone = {logpath, "not making it anew", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &gone, 10000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mkdir cfg", app), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	struct tu_needle n = {logpath, "cfg is owned by uid 2003, not by root", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "%s",
		      tu_read(logpath, NULL));
}

/* The target moved away and one of the user's put in its place, then
 * the original moved back: that one, though not empty, is the target
 * the daemon had, and it publishes there again. */
START_TEST(test_the_target_moved_back_is_published_to_again)
{
	char *app = dir_of("app", APP_UID), *cmd;
	char *target = tu_path(app, "cfg");

	lose_target_to_theirs(app, target);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && rmdir cfg && mv cfg.old cfg",
				  app),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	tu_write(src, "more", "then\n", 0644);
	char *more = tu_path(target, "more");
	struct tu_needle shown = {more, "then", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &shown, 15000), "%s",
		      tu_read(logpath, NULL));
	free(more);
	char *notes = tu_path(target, "notes"), *text = tu_read(notes, NULL);
	ck_assert_str_eq(text, "after\n");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(text);
	free(notes);
	free(cmd);
	free(target);
	free(app);
}
END_TEST

/* The same, but what comes back at the target's device and inode (a
 * directory made since, given them again once that one was removed)
 * does not hold the generation that was live: refused. */
START_TEST(test_another_directory_at_the_targets_inode_is_refused)
{
	char *app = dir_of("app", APP_UID), *cmd;
	char *target = tu_path(app, "cfg"), *old = tu_path(app, "cfg.old");
	char *oldtmp = tu_path(old, "..data_tmp"), *olddata = tu_path(old, "..data");

	lose_target_to_theirs(app, target);
	/* As root: its ..data now names another generation, as another
	 * target's would. */
	char *other = tu_path(old, "..2001_01_01_00_00_00.1");
	tu_mkdirs(other, 0755);
	ck_assert_int_eq(symlink("..2001_01_01_00_00_00.1", oldtmp), 0);
	ck_assert_int_eq(rename(oldtmp, olddata), 0);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && rmdir cfg && mv cfg.old cfg",
				  app),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	struct tu_needle refused = {logpath, "was replaced by a directory that "
					     "is not empty",
				    1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &refused, 15000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(other);
	free(olddata);
	free(oldtmp);
	free(old);
	free(target);
	free(app);
}
END_TEST

/* The owner of the target's parent gives it a default ACL naming them:
 * the target made there, and so every generation, would inherit it, and
 * let them read what only root and its group may.  The target's ACLs go
 * as it is opened; a generation has its mode bits alone. */
START_TEST(test_an_acl_inherited_by_the_target_is_removed)
{
	char *app = dir_of("app", APP_UID), *cmd, *err = NULL;
	char *target = tu_path(app, "cfg"), *secret = tu_path(target, "secret");
	/* user::rwx user:2003:rwx group::r-x mask::rwx other::r-x */
	unsigned char v[4 + 5 * 8] = {2, 0, 0, 0};
	const unsigned e[5][3] = {{0x01, 7, ~0u}, {0x02, 7, APP_UID},
				  {0x04, 5, ~0u}, {0x10, 7, ~0u},
				  {0x20, 5, ~0u}};
	for (int i = 0; i < 5; i++) {
		unsigned char *p = v + 4 + 8 * i;
		p[0] = (unsigned char)e[i][0];
		p[1] = 0;
		p[2] = (unsigned char)e[i][1];
		p[3] = 0;
		for (int b = 0; b < 4; b++)
			p[4 + b] = (unsigned char)(e[i][2] >> (8 * b));
	}
	ck_assert_int_eq(setxattr(app, "system.posix_acl_default", v,
				  sizeof(v), 0),
			 0);
	tu_write(src, "secret", "root's group's\n", 0640);
	ck_assert_int_eq(once_to(src, target, &err), 0);
	ck_assert_msg(strstr(err, "had an ACL"), "%s", err);
	ck_assert_int_lt(getxattr(target, "system.posix_acl_access", NULL, 0), 0);
	ck_assert_int_lt(getxattr(target, "system.posix_acl_default", NULL, 0),
			 0);
	ck_assert_int_gt(asprintf(&cmd, "cat '%s' >/dev/null 2>&1", secret), 0);
	ck_assert_int_ne(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	free(err);
	free(secret);
	free(target);
	free(app);
}
END_TEST

/* The same user moves the target away and puts a link in its place: the
 * link is refused, and the directory moved away, root's, is not written
 * to again, not even its error file (each error is recorded as it is
 * logged, before the daemon goes on). */
START_TEST(test_a_target_moved_away_is_not_written_to_again)
{
	char *app = dir_of("app", APP_UID);
	char *target = tu_path(app, "cfg"), *moved = tu_path(app, "cfg.old");
	char *victim = tu_path(tmp, "victim"), *cmd;
	tu_mkdirs(victim, 0755);

	daemon_published(target);
	ck_assert_int_gt(asprintf(&cmd, "mv '%s' '%s' && ln -s '%s' '%s'",
				  target, moved, victim, target),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	tu_write(src, "notes", "after\n", 0644);
	struct tu_needle n = {logpath, "refusing to follow it", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	char *error = tu_path(moved, "..atomsync.error");
	ck_assert_msg(access(error, F_OK) < 0 && errno == ENOENT,
		      "%s was written", error);
	ck_assert_int_eq(tu_count_names(victim), 0);
	free(error);
	free(cmd);
	free(victim);
	free(moved);
	free(target);
	free(app);
}
END_TEST

/* tmp/app.conf: one mapping, the lines `lines` added (a hook, say; the
 * path, malloc'ed). */
static char *mapping_conf(const char *target, const char *lines)
{
	char *text;
	ck_assert_int_gt(asprintf(&text, "[sync:app]\nsource = %s\n"
					 "target = %s\ndebounce_ms = 0\n%s\n",
				  src, target, lines),
			 0);
	tu_write(tmp, "app.conf", text, 0644);
	free(text);
	return tu_path(tmp, "app.conf");
}

/* --once with mapping_conf(): its exit status, its standard error in
 * *err. */
static int once_with(const char *target, const char *lines, char **err)
{
	char *conf = mapping_conf(target, lines);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	int rc = tu_run(argv, NULL, err, 30000);
	free(conf);
	return rc;
}

/* Hooks are handed the target's path.  The user who owns a directory on
 * it could put a directory of theirs in the target's place for a hook,
 * run as root, to read or parse: no hook is run there, and a generation
 * that check_command was to pass is not published.  Once only root can
 * change the path, they run. */
START_TEST(test_hooks_are_not_run_where_a_user_can_redirect_the_target)
{
	char *app = dir_of("app", APP_UID);
	char *target = tu_path(app, "cfg");
	char *ran = tu_path(tmp, "ran"), *line, *err = NULL, *why;
	char *data = tu_path(target, "..data");
	struct stat st;

	ck_assert_int_gt(asprintf(&why, "directory %s is owned by uid 2003, "
					"who can change what the path leads "
					"to; hooks are not run on a path "
					"another user can redirect",
				  app),
			 0);
	ck_assert_int_gt(asprintf(&line, "check_command = sh -c 'echo check "
					 ">> %s'",
				  ran),
			 0);
	ck_assert_int_eq(once_with(target, line, &err), 1);
	const char *said_once = strstr(err, "check_command not run on ");
	ck_assert_msg(said_once && strstr(err, why) &&
			      !strstr(said_once + 1, "check_command not run"),
		      "%s", err);
	ck_assert_int_lt(lstat(ran, &st), 0);
	ck_assert_int_lt(lstat(data, &st), 0); /* nothing published */
	free(err);
	free(line);
	ck_assert_int_gt(asprintf(&line, "on_update = sh -c 'echo update >> "
					 "%s'",
				  ran),
			 0);
	ck_assert_int_eq(once_with(target, line, &err), 1);
	ck_assert_msg(strstr(err, "on_update not run: ") && strstr(err, why),
		      "%s", err);
	ck_assert_int_lt(lstat(ran, &st), 0);
	ck_assert_int_eq(lstat(data, &st), 0); /* published, not told */
	free(err);
	/* The directory given to root: the path is root's alone. */
	ck_assert_int_eq(chown(app, 0, 0), 0);
	tu_write(src, "app.conf", "secret: still no\n", 0644);
	ck_assert_int_eq(once_with(target, line, &err), 0);
	free(err);
	char *said = tu_read(ran, NULL);
	ck_assert_str_eq(said, "update\n");
	free(said);
	free(line);
	free(why);
	free(data);
	free(ran);
	free(target);
	free(app);
}
END_TEST

/* The daemon, the same: check_command is not run, nothing published. */
START_TEST(test_daemon_runs_no_check_where_a_user_can_redirect_the_target)
{
	char *app = dir_of("app", APP_UID);
	char *target = tu_path(app, "cfg");
	char *ran = tu_path(tmp, "ran"), *line;
	char *data = tu_path(target, "..data");
	struct stat st;

	ck_assert_int_gt(asprintf(&line, "check_command = sh -c 'echo check "
					 ">> %s'",
				  ran),
			 0);
	char *conf = mapping_conf(target, line);
	const char *argv[] = {tu_bin(), "--config", conf, NULL};
	pid = tu_spawn(argv, logpath);
	struct tu_needle n = {logpath, "is owned by uid 2003, who can change "
				       "what the path leads to; hooks are not "
				       "run on a path another user can "
				       "redirect; nothing is published (the "
				       "target has no live generation yet)",
			      1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "%s",
		      tu_read(logpath, NULL));
	ck_assert_int_lt(lstat(ran, &st), 0);
	ck_assert_int_lt(lstat(data, &st), 0);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	tu_wait_exit(pid, 20000);
	pid = 0;
	ck_assert_int_lt(lstat(ran, &st), 0);
	free(conf);
	free(line);
	free(data);
	free(ran);
	free(target);
	free(app);
}
END_TEST

/* Whether someone holds a flock(2) lock on `arg`, a file or directory:
 * ours, tried for, is refused (a moment's hold of it only delays
 * theirs). */
static int locked(void *arg)
{
	int fd = open(arg, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int held = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 &&
		   errno == EWOULDBLOCK;

	if (fd >= 0)
		close(fd);
	return held;
}

/* Anyone may open a target (mode 0755) and flock(2) it: the daemon's
 * lock is on a file in it that only root can open, so a user who holds
 * the directory's keeps no publish out, and cannot take the daemon's. */
START_TEST(test_a_user_holding_a_lock_on_the_target_keeps_nothing_out)
{
	char *err = NULL, *cmd, *out = tu_path(tmp, "flock.log");

	ck_assert_int_eq(once_to(src, dst, &err), 0);
	free(err);
	/* Held by the process killed below, not by a child of flock(1). */
	ck_assert_int_gt(asprintf(&cmd, "exec 3<'%s' && flock -x 3 && "
					"exec sleep 60",
				  dst),
			 0);
	const char *argv[] = {"setpriv", "--reuid=2003", "--regid=2003",
			      "--clear-groups", "sh", "-c", cmd, NULL};
	pid_t holder = tu_spawn(argv, out);
	ck_assert_msg(tu_wait_for(locked, dst, 10000), "the user took no lock");
	free(cmd);
	ck_assert_int_gt(asprintf(&cmd, "flock -n -x '%s/..atomsync.lock' true",
				  dst),
			 0);
	ck_assert_int_ne(tu_sh_as(APP_UID, cmd), 0);
	tu_write(src, "app.conf", "secret: still no\n", 0644);
	ck_assert_msg(once_to(src, dst, &err) == 0, "%s", err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	tu_kill(holder);
	free(err);
	free(cmd);
	free(out);
}
END_TEST

/* A lock file a user came to own (a chown -R of the target, undone on
 * the target alone) would let them hold its lock and keep every writer
 * out: it is taken back.  One they opened before still holds, and the
 * line says how to find them.  Something else in its place is refused,
 * naming what to do. */
START_TEST(test_a_lock_file_a_user_owns_is_taken_back)
{
	char *err = NULL, *cmd, *out = tu_path(tmp, "flock.log");
	char *lock = tu_path(dst, "..atomsync.lock");
	struct stat st;

	ck_assert_int_eq(once_to(src, dst, &err), 0);
	free(err);
	ck_assert_int_eq(chown(lock, APP_UID, APP_UID), 0);
	ck_assert_int_eq(chmod(lock, 0644), 0);
	/* Held by the process killed below, not by a child of flock(1). */
	ck_assert_int_gt(asprintf(&cmd, "exec 3<'%s' && flock -x 3 && "
					"exec sleep 60",
				  lock),
			 0);
	const char *argv[] = {"setpriv", "--reuid=2003", "--regid=2003",
			      "--clear-groups", "sh", "-c", cmd, NULL};
	pid_t holder = tu_spawn(argv, out);
	ck_assert_msg(tu_wait_for(locked, lock, 10000), "the user took no lock");
	free(cmd);
	ck_assert_int_eq(once_to(src, dst, &err), 1);
	ck_assert_msg(strstr(err, "was owned by uid 2003") &&
			      strstr(err, "taken back") && strstr(err, "fuser"),
		      "%s", err);
	free(err);
	ck_assert_int_eq(lstat(lock, &st), 0);
	ck_assert_uint_eq(st.st_uid, 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_gt(asprintf(&cmd, "exec 3<'%s'", lock), 0);
	ck_assert_int_ne(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	tu_kill(holder);
	tu_write(src, "app.conf", "secret: later\n", 0644);
	ck_assert_msg(once_to(src, dst, &err) == 0, "%s", err);
	free(err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_int_eq(unlink(lock), 0);
	ck_assert_int_eq(mkdir(lock, 0700), 0);
	ck_assert_int_eq(once_to(src, dst, &err), 1);
	ck_assert_msg(strstr(err, "not a regular file") &&
			      strstr(err, "move it away"),
		      "%s", err);
	free(err);
	free(lock);
	free(out);
}
END_TEST

/* The file `path` as it was: owner, mode and contents. */
static void assert_file_is(const char *path, uid_t uid, mode_t mode,
			   const char *text)
{
	struct stat st;
	char *got = tu_read(path, NULL);

	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_uint_eq(st.st_uid, uid);
	ck_assert_uint_eq(st.st_mode & 07777, mode);
	ck_assert_str_eq(got, text);
	free(got);
}

/* The lock file as another name of a file (put there while a user could
 * write the target: a chown -R undone on the target alone) is refused,
 * dry run or not: taking it back would change that file's owner, mode
 * or contents (another user's, or root's that others may read), and
 * its lock may be someone else's (root's own 0600 file, another
 * target's lock file).  The target's
 * own lock file, linked elsewhere since, is used as it is, and not
 * written.  A socket in its place is named as such. */
START_TEST(test_a_lock_file_linked_to_another_file_is_left_alone)
{
	char *err = NULL, *lock = tu_path(dst, "..atomsync.lock");
	char *shadow = tu_path(tmp, "shadow"), *theirs = tu_path(tmp, "theirs");
	char *key = tu_path(tmp, "key");

	ck_assert_int_eq(once_to(src, dst, &err), 0);
	free(err);
	tu_write(tmp, "shadow", "root's\n", 0640);
	tu_write(tmp, "theirs", "2003's\n", 0666);
	ck_assert_int_eq(chmod(theirs, 0666), 0);
	ck_assert_int_eq(chown(theirs, APP_UID, APP_UID), 0);
	tu_write(tmp, "key", "root's key\n", 0600);
	tu_write(tmp, "other", "atomsync lock of 1:1\n", 0600);
	char *ours = tu_path(tmp, "ours"), *was = tu_read(lock, NULL);
	char *other = tu_path(tmp, "other");
	ck_assert_int_eq(link(lock, ours), 0);
	const char *const victims[] = {shadow, theirs, key, other};
	for (int k = 0; k < 4; k++) {
		ck_assert_int_eq(unlink(lock), 0);
		ck_assert_int_eq(link(victims[k], lock), 0);
		for (int dry = 0; dry < 2; dry++) {
			const char *argv[] = {tu_bin(),	 "--source", src,
					      "--target", dst,	     "--once",
					      dry ? "--dry-run" : NULL, NULL};
			ck_assert_int_eq(tu_run(argv, NULL, &err, 30000), 1);
			ck_assert_msg(strstr(err, "a hard link of another "
						  "file") &&
					      strstr(err, "move it away"),
				      "%s", err);
			free(err);
		}
	}
	assert_file_is(shadow, 0, 0640, "root's\n");
	assert_file_is(theirs, APP_UID, 0666, "2003's\n");
	assert_file_is(key, 0, 0600, "root's key\n");
	assert_file_is(other, 0, 0600, "atomsync lock of 1:1\n");
	ck_assert_int_eq(unlink(lock), 0);
	ck_assert_int_eq(link(ours, lock), 0);
	tu_write(src, "app.conf", "through its own lock, linked\n", 0644);
	ck_assert_msg(once_to(src, dst, &err) == 0, "%s", err);
	free(err);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	assert_file_is(ours, 0, 0600, was);
	ck_assert_int_eq(unlink(lock), 0);
	ck_assert_int_eq(mknod(lock, S_IFSOCK | 0600, 0), 0);
	ck_assert_int_eq(once_to(src, dst, &err), 1);
	ck_assert_msg(strstr(err, "a socket") && strstr(err, "move it away"),
		      "%s", err);
	free(err);
	free(lock);
	free(shadow);
	free(theirs);
	free(key);
	free(ours);
	free(was);
	free(other);
}
END_TEST

/* A file in a user's source that they may not read (a hard link to one
 * of root's, made where fs.protected_hardlinks is off, here by root for
 * them; one whose other name was since replaced has one link) is not
 * published; one anyone may read, or their own, is.  So in a directory
 * of root's that a group can write, for what that group may not read.
 * In a directory only root can write, root's file is root's choice. */
START_TEST(test_a_file_the_sources_writers_cannot_read_is_skipped)
{
	char *usrc = dir_of("usrc", APP_UID), *err = NULL;
	char *secret = tu_path(tmp, "secret"), *open_file = tu_path(tmp, "open");
	char *at = tu_path(usrc, "shadow"), *at2 = tu_path(usrc, "motd");
	char *shown = tu_path(dst, "shadow"), *motd = tu_path(dst, "motd");
	char *mine2 = tu_path(dst, "mine2"), *cmd, *text;
	struct stat st;

	tu_write(tmp, "secret", "root's only\n", 0640);
	tu_write(tmp, "open", "anyone's\n", 0644);
	ck_assert_int_eq(link(secret, at), 0);
	ck_assert_int_eq(link(open_file, at2), 0);
	/* Root's own name replaced: the user's is the only one left. */
	tu_write(tmp, "secret.new", "root's new\n", 0640);
	char *renamed = tu_path(tmp, "secret.new");
	ck_assert_int_eq(rename(renamed, secret), 0);
	ck_assert_int_eq(lstat(at, &st), 0);
	ck_assert_uint_eq(st.st_nlink, 1);
	ck_assert_int_gt(asprintf(&cmd, "echo mine > '%s/mine' && chmod 0 "
					"'%s/mine' && ln '%s/mine' '%s/mine2'",
				  usrc, usrc, usrc, usrc),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(once_to(usrc, dst, &err), 0);
	ck_assert_msg(strstr(err, "shadow: a file that a user who can write "
				  "its directory (or change the way to it) may "
				  "not read; skipped"),
		      "%s", err);
	ck_assert_int_lt(lstat(shown, &st), 0);
	text = tu_read(motd, NULL);
	ck_assert_str_eq(text, "anyone's\n");
	free(text);
	ck_assert_int_eq(lstat(mine2, &st), 0); /* theirs, mode 0 or not */
	free(err);
	/* Root's directory, which the user's group can write. */
	ck_assert_int_eq(chown(usrc, 0, APP_UID), 0);
	ck_assert_int_eq(chmod(usrc, 02775), 0);
	ck_assert_int_eq(once_to(usrc, dst, &err), 0);
	ck_assert_msg(strstr(err, "shadow: a file that a user who can write"),
		      "%s", err);
	ck_assert_int_lt(lstat(shown, &st), 0);
	free(err);
	/* Root's alone: published. */
	ck_assert_int_eq(chmod(usrc, 0755), 0);
	ck_assert_int_eq(once_to(usrc, dst, &err), 0);
	text = tu_read(shown, NULL);
	ck_assert_str_eq(text, "root's only\n");
	free(text);
	free(err);
	free(cmd);
	free(renamed);
	free(mine2);
	free(motd);
	free(shown);
	free(at2);
	free(at);
	free(open_file);
	free(secret);
	free(usrc);
}
END_TEST

/* The files under a directory, and the bytes of their distinct inodes
 * (what the directory holds of data however many names it has). */
#define INODES_MAX 8192
static ino_t seen_ino[INODES_MAX];
static size_t nseen, nfiles;
static unsigned long long data_bytes;

static int count_file(const char *p, const struct stat *st, int type,
		      struct FTW *f)
{
	(void)p;
	(void)f;
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	nfiles++;
	for (size_t i = 0; i < nseen; i++)
		if (seen_ino[i] == st->st_ino)
			return 0;
	ck_assert_uint_lt(nseen, INODES_MAX);
	seen_ino[nseen++] = st->st_ino;
	data_bytes += (unsigned long long)st->st_size;
	return 0;
}

/* As the user: in the directory `arg`, f0 (1 MiB) and 2,000 more names
 * of it, and d0/x (64 KiB) with d1 to d10, each linking twice to the one
 * below.  In one process: 2,000 ln(1) may take longer than a test waits
 * on a loaded machine. */
static int make_many_names(void *arg)
{
	static char zeros[65536];
	char a[32], b[32];

	if (chdir(arg) < 0 || mkdir("d0", 0755) < 0)
		return 1;
	int fd = open("f0", O_WRONLY | O_CREAT | O_EXCL, 0644);
	for (int i = 0; fd >= 0 && i < 16; i++)
		if (write(fd, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros))
			return 1;
	int fd2 = open("d0/x", O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || close(fd) < 0 || fd2 < 0 ||
	    write(fd2, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros) ||
	    close(fd2) < 0)
		return 1;
	for (int i = 1; i <= 2000; i++) {
		snprintf(a, sizeof(a), "f%d", i);
		if (link("f0", a) < 0)
			return 1;
	}
	for (int k = 1; k <= 10; k++) {
		snprintf(a, sizeof(a), "../d%d", k - 1);
		snprintf(b, sizeof(b), "d%d", k);
		if (mkdir(b, 0755) < 0)
			return 1;
		snprintf(b, sizeof(b), "d%d/a", k);
		if (symlink(a, b) < 0)
			return 1;
		snprintf(b, sizeof(b), "d%d/b", k);
		if (symlink(a, b) < 0)
			return 1;
	}
	return 0;
}

/* A source two users share: the app user links to a file of the other
 * user's (readable by all) in a directory that keeps everyone else out.
 * Published through the link, the file would be theirs to read: the link
 * is skipped, and says why; a link of theirs to their own file, and
 * root's to the same file, are published. */
START_TEST(test_a_link_through_a_directory_its_writer_may_not_enter_is_skipped)
{
	char *shared = tu_path(tmp, "shared"), *err = NULL, *cmd, *text;
	char *pub = dir_of("shared/pub", APP_UID);
	char *priv = dir_of("shared/priv", OTHER_UID);
	char *x = tu_path(dst, "pub/x"), *y = tu_path(dst, "pub/y/s");
	char *z = tu_path(dst, "pub/z"), *r = tu_path(dst, "r");
	struct stat st;

	tu_write(priv, "secret", "the other user's\n", 0644);
	tu_write(priv, "sub/s", "below it\n", 0644);
	ck_assert_int_eq(chmod(priv, 0700), 0);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && ln -s ../priv/secret x && "
					"ln -s ../priv/sub y && echo mine > m "
					"&& ln -s m z",
				  pub),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	char *rl = tu_path(shared, "r");
	ck_assert_int_eq(symlink("priv/secret", rl), 0);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	ck_assert_msg(strstr(err, "pub/x: symlink through a directory that a "
				  "user who can write its directory may not "
				  "enter; skipped") &&
			      strstr(err, "pub/y: symlink through"),
		      "%s", err);
	ck_assert_int_lt(lstat(x, &st), 0);
	ck_assert_int_lt(lstat(y, &st), 0);
	text = tu_read(z, NULL);
	ck_assert_str_eq(text, "mine\n");
	free(text);
	text = tu_read(r, NULL);
	ck_assert_str_eq(text, "the other user's\n");
	free(text);
	free(err);
	/* The directory opened to all: the links are published. */
	ck_assert_int_eq(chmod(priv, 0755), 0);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	ck_assert_msg(strstr(err, "symlink through") == NULL, "%s", err);
	text = tu_read(y, NULL);
	ck_assert_str_eq(text, "below it\n");
	free(text);
	free(err);
	free(rl);
	free(cmd);
	free(r);
	free(z);
	free(y);
	free(x);
	free(priv);
	free(pub);
	free(shared);
}
END_TEST

/* --once with symlinks = follow from `source` to dst. */
static int once_following(const char *source, char **err)
{
	const char *argv[] = {tu_bin(), "--source", source, "--target", dst,
			      "--symlinks", "follow", "--once", NULL};
	return tu_run(argv, NULL, err, 30000);
}

/* symlinks = follow reads anywhere, but only what the link's maker may
 * reach: the way to a file is judged as inside the source (a 0700
 * directory of root's on it keeps it out), and /proc, whose files are
 * each reader's own view (/proc/self/maps, /proc/self/fd/N: the
 * daemon's memory and open directories), is never read. */
START_TEST(test_a_followed_link_is_judged_on_its_real_way)
{
	char *usrc = dir_of("usrc", APP_UID), *priv = tu_path(tmp, "priv");
	char *err = NULL, *cmd, *text;
	char *open_dir = dir_of("open", 0);
	struct stat st;

	tu_write(priv, "pub.txt", "behind root's door\n", 0644);
	tu_write(priv, "sub/x", "below it\n", 0644);
	ck_assert_int_eq(chmod(priv, 0700), 0);
	tu_write(open_dir, "ok", "anyone's\n", 0644);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && ln -s '%s/pub.txt' leak && "
					"ln -s '%s/sub' leakdir && ln -s "
					"'%s/ok' ok && ln -s /proc/self/maps "
					"maps && ln -s /proc/self/fd/3 fd && "
					"ln -s /proc/1 pid1",
				  usrc, priv, priv, open_dir),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(once_following(usrc, &err), 0);
	ck_assert_msg(strstr(err, "leak: symlink through a directory that a "
				  "user who can write its directory may not "
				  "enter; skipped") &&
			      strstr(err, "leakdir: symlink through") &&
			      strstr(err, "maps: symlink into /proc") &&
			      strstr(err, "pid1: symlink into /proc"),
		      "%s", err);
	const char *gone[] = {"leak", "leakdir", "maps", "pid1"};
	for (size_t i = 0; i < sizeof(gone) / sizeof(*gone); i++) {
		char *p = tu_path(dst, gone[i]);
		ck_assert_msg(lstat(p, &st) < 0, "%s published", gone[i]);
		free(p);
	}
	/* fd 3, whatever the daemon holds there, is nothing of priv's. */
	char *fd = tu_path(dst, "fd/x");
	ck_assert_int_lt(lstat(fd, &st), 0);
	free(fd);
	char *ok = tu_path(dst, "ok");
	text = tu_read(ok, NULL);
	ck_assert_str_eq(text, "anyone's\n");
	free(text);
	free(err);
	/* The door opened: the same links are published. */
	ck_assert_int_eq(chmod(priv, 0755), 0);
	ck_assert_int_eq(once_following(usrc, &err), 0);
	char *x = tu_path(dst, "leakdir/x");
	text = tu_read(x, NULL);
	ck_assert_str_eq(text, "below it\n");
	free(text);
	free(x);
	free(err);
	free(ok);
	free(cmd);
	free(open_dir);
	free(priv);
	free(usrc);
}
END_TEST

/* A source directory that a group may write, holding other users'
 * directories: a member can rename theirs over another's at any time,
 * so which link a path names there is theirs to choose.  A link is so
 * judged for the writers of every directory its resolution looks a name
 * up in, the shared one included: another user's link to their own
 * private file is skipped while the group could swap it in, and
 * published once only root may rename there. */
START_TEST(test_a_link_is_judged_for_whoever_could_swap_it)
{
	char *shared = tu_path(tmp, "shared"), *err = NULL, *text;
	char *theirs = dir_of("shared/theirs", OTHER_UID);
	char *priv = dir_of("shared/priv", OTHER_UID);
	char *t = tu_path(dst, "theirs/t"), *u = tu_path(dst, "theirs/u");
	struct stat st;

	tu_write(priv, "diary", "theirs alone\n", 0644);
	ck_assert_int_eq(chown(priv, OTHER_UID, OTHER_UID), 0);
	ck_assert_int_eq(chmod(priv, 0700), 0);
	tu_write(shared, "pub", "anyone's\n", 0644);
	char *lt = tu_path(theirs, "t"), *lu = tu_path(theirs, "u");
	link_as(OTHER_UID, "../priv/diary", lt);
	link_as(OTHER_UID, "../pub", lu);
	ck_assert_int_eq(chown(shared, 0, APP_UID), 0);
	ck_assert_int_eq(chmod(shared, 0775), 0);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	ck_assert_msg(strstr(err, "theirs/t: symlink through a directory that "
				  "a user who can write its directory may not "
				  "enter; skipped"),
		      "%s", err);
	ck_assert_int_lt(lstat(t, &st), 0);
	text = tu_read(u, NULL);
	ck_assert_str_eq(text, "anyone's\n");
	free(text);
	free(err);
	/* The same with symlinks = follow. */
	ck_assert_int_eq(once_following(shared, &err), 0);
	ck_assert_msg(strstr(err, "theirs/t: symlink through"), "%s", err);
	ck_assert_int_lt(lstat(t, &st), 0);
	free(err);
	/* Only root may rename there: their link is theirs alone. */
	ck_assert_int_eq(chmod(shared, 0755), 0);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	text = tu_read(t, NULL);
	ck_assert_str_eq(text, "theirs alone\n");
	free(text);
	free(err);
	free(lu);
	free(lt);
	free(u);
	free(t);
	free(priv);
	free(theirs);
	free(shared);
}
END_TEST

/* Gives `dir` the ACL of a drop directory: its owner and group rwx, the
 * user `uid` rwx by name, others nothing. */
static void acl_drop_dir(const char *dir, unsigned uid)
{
	const uint32_t any = 0xffffffffu;
	const struct {
		uint16_t tag, perm;
		uint32_t id;
	} e[] = {{0x01, 7, any}, {0x02, 7, uid}, {0x04, 7, any},
		 {0x10, 7, any}, {0x20, 0, any}};
	unsigned char v[4 + sizeof(e)];
	uint32_t version = 2;

	memcpy(v, &version, 4);
	memcpy(v + 4, e, sizeof(e));
	ck_assert_int_eq(setxattr(dir, "system.posix_acl_access", v, sizeof(v), 0),
			 0);
}

/* Who may choose what a link reads is judged with their ACL rights, and
 * as one class when they are one owner: root's link through a directory
 * an ACL lets uid 2004 write is judged for anyone; a source of one user
 * whose directories have other groups, none of which may write, is that
 * user's; and root's link to a directory of that user's is judged for
 * that user alone, like the same link to a file in it. */
START_TEST(test_a_link_is_judged_for_its_deciders_as_they_are)
{
	char *shared = tu_path(tmp, "s/shared"), *priv = tu_path(tmp, "priv");
	char *err = NULL, *text, *cfg = tu_path(shared, "cfg");
	char *l = tu_path(tmp, "s/a/L"), *shown = tu_path(dst, "a/L");
	char *s = tu_path(tmp, "s");
	struct stat st;

	tu_write(priv, "secret", "the group's\n", 0644);
	ck_assert_int_eq(chown(priv, 0, 2100), 0);
	ck_assert_int_eq(chmod(priv, 0750), 0);
	tu_mkdirs(shared, 0770);
	ck_assert_int_eq(chown(shared, 0, 2100), 0);
	acl_drop_dir(shared, OTHER_UID);
	char *secret = tu_path(priv, "secret");
	ck_assert_int_eq(symlink(secret, cfg), 0);
	tu_write(s, "a/keep", "x\n", 0644);
	ck_assert_int_eq(symlink("../shared/cfg", l), 0);
	ck_assert_int_eq(once_following(s, &err), 0);
	ck_assert_msg(strstr(err, "a/L: symlink through a directory"), "%s",
		      err);
	ck_assert_int_lt(lstat(shown, &st), 0);
	free(err);
	/* One user's source, directories of other groups none may write. */
	char *one = dir_of("one", APP_UID), *cmd;
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mkdir conf priv && echo "
					"mine > priv/f && chmod 700 priv && "
					"chmod 600 priv/f && ln -s ../priv/f "
					"conf/x",
				  one),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	char *conf_dir = tu_path(one, "conf"), *x = tu_path(dst, "conf/x");
	ck_assert_int_eq(chown(conf_dir, APP_UID, 2100), 0);
	ck_assert_int_eq(once_to(one, dst, &err), 0);
	text = tu_read(x, NULL);
	ck_assert_str_eq(text, "mine\n");
	free(text);
	free(err);
	/* Root's links to a directory of a user's and to a file in it. */
	char *r = tu_path(tmp, "r"), *u = dir_of("r/u", OTHER_UID);
	tu_write(u, "priv/f", "theirs\n", 0600);
	char *pd = tu_path(u, "priv"), *pf = tu_path(u, "priv/f");
	ck_assert_int_eq(chown(pd, OTHER_UID, OTHER_UID), 0);
	ck_assert_int_eq(chown(pf, OTHER_UID, OTHER_UID), 0);
	ck_assert_int_eq(chmod(pd, 0700), 0);
	char *lp = tu_path(r, "p"), *lpf = tu_path(r, "pf");
	ck_assert_int_eq(symlink("u/priv", lp), 0);
	ck_assert_int_eq(symlink("u/priv/f", lpf), 0);
	ck_assert_int_eq(once_to(r, dst, &err), 0);
	char *got_p = tu_path(dst, "p/f"), *got_pf = tu_path(dst, "pf");
	ck_assert_msg(lstat(got_p, &st) == 0 && lstat(got_pf, &st) == 0, "%s",
		      err);
	free(err);
	free(got_pf);
	free(got_p);
	free(lpf);
	free(lp);
	free(pf);
	free(pd);
	free(u);
	free(r);
	free(x);
	free(conf_dir);
	free(cmd);
	free(one);
	free(secret);
	free(s);
	free(shown);
	free(l);
	free(cfg);
	free(priv);
	free(shared);
}
END_TEST

/* An access ACL that keeps the writer of a source directory out of a
 * directory or a file of another user's ("user:2003:---", the mode
 * bits saying all may) keeps out their links to it; and a directory
 * that a group an ACL names may write counts as one others may write,
 * whose members may then not have a file the mode keeps from others. */
START_TEST(test_an_acl_that_keeps_a_writer_out_is_honoured)
{
	char *shared = tu_path(tmp, "shared"), *err = NULL, *cmd, *text;
	char *pub = dir_of("shared/pub", APP_UID);
	char *priv = dir_of("shared/priv", OTHER_UID);
	char *sub = tu_path(priv, "sub"), *own = tu_path(priv, "own");
	char *y = tu_path(dst, "pub/y/s"), *w = tu_path(dst, "pub/w");
	char *team = dir_of("shared/team", OTHER_UID);
	char *kept = tu_path(dst, "team/kept");
	struct stat st;

	tu_write(priv, "sub/s", "below it\n", 0644);
	tu_write(priv, "own", "the other user's\n", 0644);
	tu_write(team, "kept", "not for the team\n", 0640);
	/* All of the other user's, who alone may write where they are. */
	ck_assert_int_gt(asprintf(&cmd, "chown -R %u:%u '%s' '%s'", OTHER_UID,
				  OTHER_UID, priv, team),
			 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	tu_acl(sub, 07, 'u', APP_UID, 0, 05);
	tu_acl(own, 06, 'u', APP_UID, 0, 04);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && ln -s ../priv/sub y && "
					"ln -s ../priv/own w",
				  pub),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	ck_assert_msg(strstr(err, "pub/y: symlink through a directory that a "
				  "user who can write its directory may not "
				  "enter; skipped") &&
			      strstr(err, "pub/w: a file that a user who can "
					  "write its directory (or change the way "
					  "to it) may not read"),
		      "%s", err);
	ck_assert_int_lt(lstat(y, &st), 0);
	ck_assert_int_lt(lstat(w, &st), 0);
	text = tu_read(kept, NULL);
	ck_assert_str_eq(text, "not for the team\n");
	free(text);
	free(err);
	/* A group an ACL names may write team/: its members are no owner
	 * of kept, nor in its group. */
	tu_acl(team, 07, 'g', 3000, 07, 05);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	ck_assert_msg(strstr(err, "team/kept: a file that a user who can "
				  "write its directory (or change the way "
					  "to it) may not read"),
		      "%s", err);
	ck_assert_int_lt(lstat(kept, &st), 0);
	free(err);
	/* Without the ACLs, the links are published. */
	ck_assert_int_eq(removexattr(sub, "system.posix_acl_access"), 0);
	ck_assert_int_eq(removexattr(own, "system.posix_acl_access"), 0);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	text = tu_read(y, NULL);
	ck_assert_str_eq(text, "below it\n");
	free(text);
	text = tu_read(w, NULL);
	ck_assert_str_eq(text, "the other user's\n");
	free(text);
	free(err);
	free(cmd);
	free(kept);
	free(team);
	free(w);
	free(y);
	free(own);
	free(sub);
	free(priv);
	free(pub);
	free(shared);
}
END_TEST

/* dst/rel holds `want`. */
static void target_reads(const char *rel, const char *want)
{
	char *p = tu_path(dst, rel), *text = tu_read(p, NULL);

	ck_assert_msg(text && strcmp(text, want) == 0, "%s: %s", rel,
		      text ? text : "(cannot be read)");
	free(text);
	free(p);
}

/* What a link to a directory reaches is judged for the link's maker as
 * well as for the directory's own writers: files and directories below
 * it that an ACL keeps from them stay out, even where the directory is
 * not published on its own; links root alone made keep nothing out.  An
 * ACL that only adds a reader keeps nobody out; and a directory's owner
 * in its group (here the user database's "daemon") has what the group
 * has. */
START_TEST(test_a_link_to_a_directory_is_judged_for_its_maker)
{
	char *shared = tu_path(tmp, "shared"), *err = NULL, *cmd;
	char *pub = dir_of("shared/pub", APP_UID);
	char *priv = dir_of("shared/priv", OTHER_UID);
	char *own = tu_path(priv, "own"), *sub = tu_path(priv, "sub");
	char *grp = tu_path(shared, "grp"), *gf = tu_path(shared, "grp/f");
	char *dm = tu_path(shared, "dm"), *df = tu_path(shared, "dm/f");
	struct stat st;

	tu_write(priv, "own", "the other user's\n", 0644);
	tu_write(priv, "sub/s", "below it\n", 0644);
	tu_write(priv, "open", "for all\n", 0644);
	tu_write(shared, "grp/f", "the group's\n", 0640);
	tu_write(shared, "dm/f", "daemon's group's\n", 0640);
	ck_assert_int_gt(asprintf(&cmd, "chown -R %u:%u '%s' && chown -R "
				  "%u:3000 '%s' && chmod 2775 '%s' && chown 1:1 "
				  "'%s' && chown %u:1 '%s'",
				  OTHER_UID, OTHER_UID, priv, OTHER_UID, grp, grp,
				  dm, OTHER_UID, df),
			 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	tu_acl(own, 06, 'u', APP_UID, 0, 04);
	tu_acl(sub, 07, 'u', APP_UID, 0, 05);
	tu_acl(gf, 06, 'u', 2009, 04, 04);
	ck_assert_int_eq(chmod(gf, 0640), 0);
	/* A chain of two links that only root made and may change: what is
	 * below them is judged as root's, not anyone's. */
	tu_write(shared, "conf/db.pw", "root's group's\n", 0640);
	char *rel = tu_path(shared, "rel/v1"), *cur = tu_path(shared, "current");
	tu_mkdirs(rel, 0755);
	char *rc = tu_path(rel, "conf");
	ck_assert_int_eq(symlink("../../conf", rc), 0);
	ck_assert_int_eq(symlink("rel/v1", cur), 0);
	free(rc);
	free(cur);
	free(rel);
	ck_assert_int_gt(asprintf(&cmd, "ln -s ../priv '%s/pd'", pub), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	const char *argv[] = {tu_bin(), "--source", shared, "--target", dst,
			      "--exclude", "/priv/", "--once", NULL};
	ck_assert_int_eq(tu_run(argv, NULL, &err, 30000), 0);
	ck_assert_msg(strstr(err, "pub/pd/own: a file that a user who can "
				  "write its directory (or change the way "
					  "to it) may not read") &&
			      strstr(err, "pub/pd/sub: a directory that a "
					  "user who can change the way to it "
					  "(the directory of a symlink to it, "
					  "or one above the source) may not "
					  "enter; skipped"),
		      "%s", err);
	char *p = tu_path(dst, "pub/pd/own");
	ck_assert_int_lt(lstat(p, &st), 0);
	free(p);
	p = tu_path(dst, "pub/pd/sub");
	ck_assert_int_lt(lstat(p, &st), 0);
	free(p);
	target_reads("pub/pd/open", "for all\n");
	target_reads("grp/f", "the group's\n");
	target_reads("dm/f", "daemon's group's\n");
	target_reads("current/conf/db.pw", "root's group's\n");
	free(err);
	free(cmd);
	free(df);
	free(dm);
	free(gf);
	free(grp);
	free(sub);
	free(own);
	free(priv);
	free(pub);
	free(shared);
}
END_TEST

/* A directory made in a setgid one has its group whoever makes it: its
 * owner may not read what that group may unless they are in it, and a
 * link of theirs to such a file of another user's is skipped. */
START_TEST(test_a_group_the_owner_is_not_in_grants_them_nothing)
{
	char *shared = tu_path(tmp, "shared"), *err = NULL, *cmd;
	char *l = tu_path(dst, "pub/l");
	struct stat st;

	tu_mkdirs(shared, 0755);
	ck_assert_int_eq(chown(shared, 0, 3000), 0);
	ck_assert_int_eq(chmod(shared, 02777), 0);
	tu_write(shared, "priv/f", "the group's\n", 0640);
	ck_assert_int_gt(asprintf(&cmd, "chown -R %u:3000 '%s/priv' && "
				  "chmod 0755 '%s/priv'",
				  OTHER_UID, shared, shared),
			 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	/* APP_UID, in no group but their own, makes pub (of group 3000). */
	ck_assert_int_gt(asprintf(&cmd, "mkdir '%s/pub' && chmod 0755 "
				  "'%s/pub' && ln -s ../priv/f '%s/pub/l'",
				  shared, shared, shared),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	char *pub = tu_path(shared, "pub");
	ck_assert_int_eq(stat(pub, &st), 0);
	ck_assert_uint_eq(st.st_gid, 3000);
	ck_assert_int_eq(once_to(shared, dst, &err), 0);
	ck_assert_msg(strstr(err, "pub/l: a file that a user who can write "
				  "its directory (or change the way to it) may "
				  "not read; skipped"),
		      "%s", err);
	ck_assert_int_lt(lstat(l, &st), 0);
	free(pub);
	free(err);
	free(cmd);
	free(l);
	free(shared);
}
END_TEST

/* A user who writes the source cannot have root write a copy of one file
 * of theirs for each of its names: 2,001 names of one file, and a chain
 * of directories each linking twice to the one below (2,046 ways to one
 * file), are one copy of the first and two of the second. */
START_TEST(test_a_users_many_names_of_one_file_are_not_copies)
{
	char *usrc = dir_of("usrc", APP_UID), *link = tu_path(dst, "..data");
	char *data = NULL, *err = NULL, gen[256];

	ck_assert_int_eq(tu_call_as(APP_UID, make_many_names, usrc), 0);
	ck_assert_int_eq(once_to(usrc, dst, &err), 0);
	/* The generation by its own name: nftw() goes into no link. */
	ssize_t len = readlink(link, gen, sizeof(gen) - 1);
	ck_assert_int_gt(len, 0);
	gen[len] = '\0';
	data = tu_path(dst, gen);
	nseen = nfiles = 0;
	data_bytes = 0;
	ck_assert_int_eq(nftw(data, count_file, 16, FTW_PHYS), 0);
	/* Every name is there: f0 to f2000, d0/x, and 2,046 ways to it. */
	ck_assert_msg(nfiles == 2001 + 1 + 2046, "%zu files in %s", nfiles, data);
	ck_assert_uint_eq(nseen, 3);
	ck_assert_uint_eq(data_bytes, 16 * 65536 + 2 * 65536);
	free(err);
	free(data);
	free(link);
	free(usrc);
}
END_TEST

/* A user who writes the source cannot have root's read meet names it
 * leaves out without end: a chain of directories that link twice to the
 * one below doubles them at each level, and they count against
 * max_files as published names do, the live generation staying. */
START_TEST(test_a_users_names_left_out_through_links_are_bounded)
{
	char *usrc = dir_of("usrc", APP_UID), *conf = tu_path(tmp, "a.conf");
	char *text, *cmd, *err = NULL;

	ck_assert_int_gt(asprintf(&text, "[sync:app]\nsource = %s\n"
				  "target = %s\nmax_files = 10000\n",
				  usrc, dst),
			 0);
	tu_write(tmp, "a.conf", text, 0644);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && echo 1 > a && mkdir l0 && "
				  ": > l0/..b && for i in $(seq 40); do "
				  "ln l0/..b l0/..x$i; done", usrc),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	ck_assert_int_eq(tu_run(argv, NULL, NULL, 30000), 0);
	free(cmd);
	/* 41 names left out in l0, reached 511 ways. */
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && for i in $(seq 8); do "
				  "mkdir l$i && ln -s ../l$((i-1)) l$i/x && "
				  "ln -s ../l$((i-1)) l$i/y; done && echo 2 > a",
				  usrc),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(tu_run(argv, NULL, &err, 30000), 1);
	ck_assert_msg(strstr(err, "more than 10000 names left out (skipped or "
				  "excluded; max_files), at l"),
		      "%s", err);
	char *a = tu_path(dst, "a");
	size_t len;
	char *got = tu_read(a, &len);
	ck_assert_str_eq(got, "1\n");
	free(got);
	free(a);
	free(err);
	free(cmd);
	free(text);
	free(conf);
	free(usrc);
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

/* The deploy user owns the directory that holds the source: a directory
 * of root's beside it, which they may not read, they can rename into its
 * place.  What they chose is judged for them: refused when they may not
 * enter it, and what they may not read in it is left out. */
START_TEST(test_a_directory_of_roots_moved_in_as_the_source_is_judged)
{
	char *deploy = dir_of("deploy", APP_UID), *err = NULL, *cmd;
	char *source = tu_path(deploy, "current");
	char *vault = tu_path(deploy, "vault"), *keys = tu_path(deploy, "keys");
	char *notes = tu_path(dst, "notes"), *key = tu_path(dst, "key");
	char *pub = tu_path(dst, "pub"), *text;

	tu_write(source, "app.conf", "theirs\n", 0644);
	ck_assert_int_eq(chown(source, APP_UID, APP_UID), 0);
	tu_write(vault, "notes", "root's notes\n", 0644);
	ck_assert_int_eq(chmod(vault, 0700), 0);
	tu_write(keys, "key", "root's key\n", 0600);
	tu_write(keys, "pub", "anyone's\n", 0644);
	ck_assert_int_eq(once_to(source, dst, &err), 0);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mv current theirs && "
					"mv vault current",
				  deploy),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	ck_assert_int_eq(once_to(source, dst, &err), 1);
	ck_assert_msg(strstr(err, "uid 2003 can move it into place and may "
				  "not read it; refusing to publish it"),
		      "%s", err);
	ck_assert_int_ne(access(notes, F_OK), 0);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mv current vault && "
					"mv keys current",
				  deploy),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	ck_assert_int_eq(once_to(source, dst, &err), 0);
	ck_assert_msg(strstr(err, "key: a file that a user who can write"),
		      "%s", err);
	ck_assert_int_ne(access(key, F_OK), 0);
	text = tu_read(pub, NULL);
	ck_assert_str_eq(text, "anyone's\n");
	free(text);
	free(err);
	free(pub);
	free(key);
	free(notes);
	free(keys);
	free(vault);
	free(source);
	free(deploy);
}
END_TEST

/* A source in a volume mounted read-only, whose directories are 0777 as
 * a Kubernetes ConfigMap's are: nobody can move a name there, so what
 * only root may read is published as ever. */
START_TEST(test_a_source_in_a_read_only_volume_is_judged_for_no_one)
{
	tu_private_mounts();
	char *vol = tu_path(tmp, "vol"), *app = tu_path(vol, "app");
	char *key = tu_path(dst, "key"), *err = NULL;
	struct stat st;

	tu_write(app, "key", "root's\n", 0400);
	tu_write(app, "pub", "anyone's\n", 0644);
	ck_assert_int_eq(chmod(vol, 0777), 0);
	ck_assert_int_eq(mount(vol, vol, NULL, MS_BIND, NULL), 0);
	ck_assert_int_eq(mount("none", vol, "none",
			       MS_REMOUNT | MS_BIND | MS_RDONLY, NULL),
			 0);
	ck_assert_int_eq(once_to(app, dst, &err), 0);
	ck_assert_msg(!strstr(err, "skipped"), "%s", err);
	ck_assert_int_eq(lstat(key, &st), 0);
	ck_assert_int_eq(umount2(vol, MNT_DETACH), 0);
	free(err);
	/* A user's directory mounted read-only somewhere is still theirs
	 * to change where it is mounted writable. */
	ck_assert_int_eq(chown(vol, APP_UID, APP_UID), 0);
	ck_assert_int_eq(chmod(vol, 0755), 0);
	ck_assert_int_eq(mount(vol, vol, NULL, MS_BIND, NULL), 0);
	ck_assert_int_eq(mount("none", vol, "none",
			       MS_REMOUNT | MS_BIND | MS_RDONLY, NULL),
			 0);
	ck_assert_int_eq(once_to(app, dst, &err), 0);
	ck_assert_msg(strstr(err, "key: a file that a user"), "%s", err);
	ck_assert_int_lt(lstat(key, &st), 0);
	ck_assert_int_eq(umount2(vol, MNT_DETACH), 0);
	free(err);
	free(key);
	free(app);
	free(vol);
}
END_TEST

/* As the application user: swaps its directory entry `at` (the target)
 * with a new link to `to`, in one step. */
struct swap {
	const char *at, *to;
};

static int swap_in_link(void *arg)
{
	const struct swap *sw = arg;
	char *tmpname;
	if (asprintf(&tmpname, "%s.new", sw->at) < 0 ||
	    symlink(sw->to, tmpname) < 0)
		return 1;
	return renameat2(AT_FDCWD, tmpname, AT_FDCWD, sw->at,
			 RENAME_EXCHANGE) < 0
		       ? 2
		       : 0;
}

START_TEST(test_target_swapped_while_running_is_refused)
{
	/* The running daemon holds the target; the application user, who
	 * owns its parent, swaps a link to another directory in its place,
	 * then someone reloads.  Nothing may reach the link's directory. */
	char *app = dir_of("app", APP_UID);
	char *victim = tu_path(tmp, "victim");
	tu_mkdirs(victim, 0755);
	char *target = tu_path(app, "config");
	char *conf = tu_path(tmp, "atomsync.conf"), *text;
	ck_assert_int_gt(asprintf(&text, "[sync:app]\nsource = %s\ntarget = %s\n"
					 "debounce_ms = 0\n",
				  src, target), 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	free(text);
	const char *argv[] = {tu_bin(), "--config", conf, NULL};
	pid = tu_spawn(argv, logpath);
	struct tu_pair p = {src, target};
	ck_assert(tu_wait_for(tu_trees_equal, &p, 10000));
	/* The target's files belong to root: the user can move the target
	 * as a whole, but not empty it. */
	struct swap sw = {target, victim};
	ck_assert_int_eq(tu_call_as(APP_UID, swap_in_link, &sw), 0);
	/* A reload that changes the mapping opens the target anew. */
	ck_assert_int_gt(asprintf(&text, "[sync:app]\nsource = %s\ntarget = %s\n"
					 "debounce_ms = 1\n",
				  src, target), 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	free(text);
	free(conf);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	tu_write(src, "app.conf", "secret: yes\n", 0644);
	struct tu_needle n = {logpath, "refusing to follow it", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 10000), "no refusal logged");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	ck_assert_int_eq(tu_count_names(victim), 0);
	free(target);
	free(victim);
	free(app);
}
END_TEST

/* The name of a generation in `dst` that is not live, or NULL. */
static char *pending_generation(const char *target, const char *except)
{
	char *live = tu_live(target), *found = NULL;
	DIR *d = opendir(target);
	struct dirent *de;
	while (d && !found && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "..2", 3) == 0 &&
		    (live == NULL || strcmp(de->d_name, live) != 0) &&
		    (except == NULL || strcmp(de->d_name, except) != 0))
			found = strdup(de->d_name);
	if (d)
		closedir(d);
	free(live);
	return found;
}

/* The standby the daemon linked after its start, recycled under a new
 * name by the publish under way. */
static char *standby_name;

static int has_pending(void *arg)
{
	char *g = pending_generation(arg, standby_name);
	free(g);
	return g != NULL;
}

START_TEST(test_generation_is_private_until_flushed)
{
	/* A directory of the source that anyone may write.  While a new
	 * generation is flushed (held here: the disk stops answering), no
	 * other user may reach into it, to plant a FIFO for the flush to
	 * open, say. */
	const char *shim = getenv("FAULTINJECT");
	ck_assert_msg(shim && *shim, "FAULTINJECT is not set (make check sets it)");
	tu_write(src, "open/f", "v1\n", 0666);
	char *open_dir = tu_path(src, "open");
	ck_assert_int_eq(chmod(open_dir, 0777), 0);
	char *hang = tu_path(tmp, "hang"), *preload, *hang_while, *asan;
	const char *asan0 = getenv("ASAN_OPTIONS");
	ck_assert_int_gt(asprintf(&preload, "LD_PRELOAD=%s", shim), 0);
	ck_assert_int_gt(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	ck_assert_int_gt(asprintf(&asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
				  asan0 ? asan0 : "", asan0 && *asan0 ? ":" : ""),
			 0);
	const char *argv[] = {"env", preload, "FAULT_HANG=fsync", hang_while, asan,
			      tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", "--log-level", "debug", NULL};
	pid = tu_spawn(argv, logpath);
	struct tu_pair p = {src, dst};
	ck_assert(tu_wait_for(tu_trees_equal, &p, 10000));
	/* The standby linked after a start is done (gone on with, if a read
	 * stopped it): the private generation to look into is the
	 * publish's. */
	tu_wait_text(logpath, "standby generation linked", 1, 10000, logpath);
	standby_name = pending_generation(dst, NULL);
	ck_assert_ptr_nonnull(standby_name);
	tu_write(tmp, "hang", "", 0644);
	/* Renamed into place: one complete change (a write in place may be
	 * read half done, and published in two steps). */
	tu_replace(src, "open/f", "v2\n", 0666);
	ck_assert(tu_wait_for(has_pending, dst, 10000));
	char *gen = pending_generation(dst, standby_name);
	free(standby_name);
	standby_name = NULL;
	char *cmd;
	ck_assert_int_gt(asprintf(&cmd, "mkfifo '%s/%s/open/planted'", dst, gen),
			 0);
	ck_assert_int_ne(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	ck_assert_int_gt(asprintf(&cmd, "ls '%s/%s'", dst, gen), 0);
	ck_assert_int_ne(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	/* The disk answers again: the publish ends, readable by all, and
	 * still writable by nobody else. */
	ck_assert_int_eq(unlink(hang), 0);
	ck_assert(tu_wait_for(tu_trees_equal, &p, 10000));
	/* Live now: that generation, or, when a read found the file
	 * changing and was tried again, the one it was recycled into. */
	char *live = tu_live(dst);
	char *g = tu_path(dst, live), *o = tu_path(g, "open");
	free(live);
	struct stat st;
	ck_assert_int_eq(stat(g, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	ck_assert_int_eq(stat(o, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	free(g);
	free(o);
	free(gen);
	free(open_dir);
	free(hang);
	free(preload);
	free(hang_while);
	free(asan);
}
END_TEST

/* --once of a mapping with the line `extra` (dir_mode or owner, which
 * let another user write a generation's directories) and a grace period
 * of 100 ms. */
static int once_others_write(const char *extra, char **err)
{
	char *lines;
	ck_assert_int_gt(asprintf(&lines, "%s\ngrace_ms = 100\nfsync = no",
				  extra),
			 0);
	int rc = once_with(dst, lines, err);
	free(lines);
	return rc;
}

/* Run `k` of --once with once_others_write(`lines`), with the source's
 * `file` changed to "k" and the replaced generation past its grace
 * period, which is what is waited for: the one replaced is due to be
 * recycled.  The target's `file` must then hold "k". */
static void recycle_file_run(const char *lines, const char *file, int k)
{
	char v[16], *err = NULL, *t = tu_path(dst, file), *now;

	snprintf(v, sizeof(v), "%d", k);
	tu_write(src, file, v, 0644);
	long long due = tu_now_ms() + 150;
	while (tu_now_ms() < due)
		tu_nap(10);
	ck_assert_msg(once_others_write(lines, &err) == 0, "run %d: %s", k,
		      err);
	free(err);
	now = tu_read(t, NULL);
	ck_assert_msg(now && strcmp(now, v) == 0, "run %d: %s is %s", k, file,
		      now ? now : "missing");
	free(now);
	free(t);
}

/* The same, and the whole target must mirror the source. */
static void recycle_run(const char *lines, const char *file, int k)
{
	recycle_file_run(lines, file, k);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "run %d: %s", k, why);
}

/* Where dir_mode lets them, a user puts a directory of theirs into a
 * generation.  Root does not go into it to clear it, so that generation
 * is not recycled once replaced (a recycle would fail on it): every
 * publish goes through, and what is left of the generation, what the
 * user made in it, is moved aside, out of the target's way. */
START_TEST(test_a_users_directory_in_a_generation_does_not_stop_publishing)
{
	char *err = NULL, *cmd;

	tu_write(src, "d/t", "0", 0644);
	ck_assert_int_eq(once_others_write("dir_mode = 0777", &err), 0);
	free(err);
	char *gen = tu_live(dst), *mine = tu_path(dst, gen);
	ck_assert_int_gt(asprintf(&cmd, "mkdir '%s/d/mine' && echo m > "
					"'%s/d/mine/m'",
				  mine, mine),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	for (int k = 1; k <= 3; k++)
		recycle_file_run("dir_mode = 0777", "d/t", k);
	char *rel, *m;
	ck_assert_int_gt(asprintf(&rel, "..atomsync.aside/%s/d/mine/m", gen), 0);
	m = tu_path(dst, rel);
	free(rel);
	struct stat st;
	ck_assert_int_eq(stat(m, &st), 0);
	ck_assert_uint_eq(st.st_uid, APP_UID);
	ck_assert_int_eq(access(mine, F_OK), -1);
	free(m);
	free(cmd);
	free(mine);
	free(gen);
}
END_TEST

/* Where dir_mode lets them, a user puts a directory in the place of a
 * live file, where the daemon does not look until a full check.  A
 * same-size change of the source file, compared with that copy, finds it
 * differs (a directory, like a FIFO, is not read, and no error blames
 * the source): the change is published at once. */
START_TEST(test_a_users_plant_in_place_of_a_live_file_is_no_copy_of_it)
{
	char *conf = mapping_conf(dst, "dir_mode = 0777\nfsync = no"), *cmd;
	char *b = tu_path(dst, "d/b");
	/* The file alone: directories differ by dir_mode. */
	struct tu_needle was = {b, "aaaa", 1}, now = {b, "bbbb", 1};

	tu_write(src, "d/b", "aaaa", 0644);
	const char *argv[] = {tu_bin(), "--config", conf, "--log-level",
			      "debug", NULL};
	pid = tu_spawn(argv, logpath);
	ck_assert(tu_wait_for(tu_file_holds, &was, 10000));
	char *gen = tu_live(dst);
	ck_assert_int_gt(asprintf(&cmd, "rm '%s/%s/d/b' && mkdir '%s/%s/d/b'",
				  dst, gen, dst, gen),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	/* The same size, a new modification time. */
	tu_replace(src, "d/b", "bbbb", 0644);
	if (!tu_wait_for(tu_file_holds, &now, 10000)) {
		char *log = tu_read(logpath, NULL);
		ck_abort_msg("d/b not published:\n%s", log ? log : "");
	}
	ck_assert_int_eq(tu_file_count(logpath, "Is a directory"), 0);
	tu_stop(&pid, 10000);
	free(gen);
	free(cmd);
	free(conf);
	free(b);
}
END_TEST

static int not_dot(const struct dirent *de)
{
	return strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
}

/* With owner, that user owns a generation's directories and can put one
 * there of another group's, which atomsync never goes into.  Recycled,
 * the generation has it moved aside, whole, out of every generation:
 * each publish goes through. */
START_TEST(test_a_directory_the_owner_put_in_a_generation_is_moved_aside)
{
	char *err = NULL, *cmd, v[16], *owner;
	int moved = 0;

	ck_assert_int_gt(asprintf(&owner, "owner = %u", APP_UID), 0);
	tu_write(src, "d/t", "0", 0644);
	ck_assert_int_eq(once_others_write(owner, &err), 0);
	free(err);
	for (int k = 1; k <= 3; k++) {
		ck_assert_int_gt(asprintf(&cmd, "mkdir '%s/..data/d/pd%d' && "
						"echo x > '%s/..data/d/pd%d/x'",
					  dst, k, dst, k),
				 0);
		ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
		free(cmd);
		snprintf(v, sizeof(v), "%d", k);
		tu_write(src, "d/t", v, 0644);
		/* Past the grace period, which is what is waited for. */
		long long due = tu_now_ms() + 150;
		while (tu_now_ms() < due)
			tu_nap(10);
		ck_assert_msg(once_others_write(owner, &err) == 0, "run %d: %s",
			      k, err);
		/* Said in one line, with what was moved and where to. */
		char *said = strstr(err, "moved aside to ");
		if (said) {
			char *want;
			ck_assert_int_gt(asprintf(&want, "moved aside to %s/"
						  "..atomsync.aside: d/pd",
						  dst),
					 0);
			ck_assert_msg(strstr(err, want), "run %d: %s", k, err);
			ck_assert_msg(strstr(said, "(a directory of uid 2003, "
						   "now "),
				      "run %d: %s", k, err);
			free(want);
			moved++;
		}
		free(err);
		char *why = tu_diff_trees(src, dst);
		ck_assert_msg(why == NULL, "run %d: %s", k, why);
	}
	/* The first two generations were recycled, the last is live; what
	 * was moved is in a directory of root's alone. */
	ck_assert_int_eq(moved, 2);
	char *aside = tu_path(dst, "..atomsync.aside");
	struct stat ast;
	ck_assert_int_eq(lstat(aside, &ast), 0);
	ck_assert(S_ISDIR(ast.st_mode));
	ck_assert_uint_eq(ast.st_mode & 07777, 0700);
	ck_assert_uint_eq(ast.st_uid, 0);
	struct dirent **de;
	int n = scandir(aside, &de, not_dot, alphasort);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++) {
		char *x, *rel;
		ck_assert_int_gt(asprintf(&rel, "%s/x", de[i]->d_name), 0);
		x = tu_path(aside, rel);
		struct stat st;
		ck_assert_int_eq(stat(x, &st), 0);
		ck_assert_uint_eq(st.st_uid, APP_UID);
		free(x);
		free(rel);
		free(de[i]);
	}
	free(de);
	free(aside);
	free(owner);
}
END_TEST

/* How many entries TARGET/..atomsync.aside holds. */
static int asides(void)
{
	char *aside = tu_path(dst, "..atomsync.aside");
	struct dirent **de;
	int n = scandir(aside, &de, not_dot, alphasort);

	for (int i = 0; i < n; i++)
		free(de[i]);
	if (n >= 0)
		free(de);
	free(aside);
	return n;
}

/* The owner puts a directory of theirs into a directory at the top of a
 * generation, which then leaves the source: recycled, the generation has
 * that directory moved aside whole, from its top (private to root while
 * it is written), and the publish goes through. */
START_TEST(test_a_top_level_directory_gone_with_a_plant_is_moved_aside)
{
	char *err = NULL, *cmd, *owner, *gone = tu_path(src, "d");

	ck_assert_int_gt(asprintf(&owner, "owner = %u", APP_UID), 0);
	tu_write(src, "d/t", "0", 0644);
	tu_write(src, "keep", "0", 0644);
	ck_assert_int_eq(once_others_write(owner, &err), 0);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "mkdir '%s/..data/d/p'", dst), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	tu_rmrf(gone);
	for (int k = 1; k <= 2; k++)
		recycle_run(owner, "keep", k);
	ck_assert_int_eq(asides(), 1);
	free(cmd);
	free(owner);
	free(gone);
}
END_TEST

/* With owner, that user can put a directory of theirs into a generation
 * while check_command looks at it (done here by the check itself, as
 * root, with their uid), then the check says no: what is left of the
 * generation goes aside, not into the target, where each veto would
 * leave one more. */
START_TEST(test_a_vetoed_generation_holding_a_plant_goes_aside)
{
	char *err = NULL, *lines;

	ck_assert_int_gt(asprintf(&lines, "owner = %u\ncheck_command = sh -c "
					  "'mkdir \"$ATOMSYNC_GENERATION_DIR/d/p\" "
					  "&& chown %u:%u "
					  "\"$ATOMSYNC_GENERATION_DIR/d/p\" && "
					  "exit 1'",
				  APP_UID, APP_UID, APP_UID),
			 0);
	tu_write(src, "d/t", "0", 0644);
	for (int k = 1; k <= 2; k++) {
		ck_assert_int_eq(once_others_write(lines, &err), 1);
		ck_assert_msg(strstr(err, "(not published): Operation not "
					  "permitted; what is left of it moved "
					  "aside to"),
			      "run %d: %s", k, err);
		free(err);
		ck_assert_int_eq(tu_generations(dst), 0);
	}
	ck_assert_int_eq(asides(), 2);
	free(lines);
}
END_TEST

/* 4,200 directories, each in the one before, in the directory `arg`. */
static int chain_of_dirs(void *arg)
{
	int fd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	for (int i = 0; fd >= 0 && i < 4200; i++) {
		int in = mkdirat(fd, "a", 0755) == 0
				 ? openat(fd, "a", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
				 : -1;
		close(fd);
		fd = in;
	}
	if (fd < 0)
		return 1;
	close(fd);
	return 0;
}

/* The owner puts a chain of directories of theirs, deeper than atomsync
 * goes to remove a tree, into a generation: recycled, it is moved aside
 * whole rather than fail every publish that recycles it.  So too where
 * the descriptors run out first (_i 1: one a level, 4,096 at most), and
 * where the user is of the group dir_mode lets write (_i 2), in a
 * generation whose top directory is root's alone. */
START_TEST(test_a_tree_too_deep_to_remove_is_moved_aside)
{
	char *err = NULL, *cmd, *owner;
	struct rlimit was, few = {4096, 4096};

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
	if (_i >= 1)
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &few), 0);

	/* Their group too: the directories are then all theirs, and gone
	 * into to be removed. */
	if (_i < 2)
		ck_assert_int_gt(asprintf(&owner, "owner = %u\ngroup = %u",
					  APP_UID, APP_UID),
				 0);
	else
		ck_assert_int_gt(asprintf(&owner, "group = %u\ndir_mode = 0775",
					  APP_UID),
				 0);
	tu_write(src, "d/t", "0", 0644);
	ck_assert_int_eq(once_others_write(owner, &err), 0);
	free(err);
	cmd = tu_path(dst, "..data/d");
	ck_assert_int_eq(tu_call_as(APP_UID, chain_of_dirs, cmd), 0);
	/* Group-writable directories differ from the source's by mode:
	 * there the file tells the publish. */
	for (int k = 1; k <= 2; k++)
		(_i < 2 ? recycle_run : recycle_file_run)(owner, "d/t", k);
	ck_assert_int_eq(asides(), 1);
	free(cmd);
	free(owner);
	/* Raised again as far as it may be (this test's own process). */
	(void)setrlimit(RLIMIT_NOFILE, &was);
}
END_TEST

static int exists(void *path)
{
	return access(path, F_OK) == 0;
}

/* As the owner: holds the directory `path` (opened before this returns,
 * while it is readable: a publish that recycles its generation makes that
 * private) and, once told through `go`, puts a directory of theirs
 * holding a file in the place of the one atomsync made there, `name`.
 * The child's pid. */
static pid_t swap_made_dir_as_owner(const char *path, const char *name,
				    const int go[2])
{
	int opened[2];
	char c;

	ck_assert_int_eq(pipe(opened), 0);
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p > 0) {
		close(opened[1]);
		ck_assert_msg(read(opened[0], &c, 1) == 1,
			      "the owner could not open %s", path);
		close(opened[0]);
		return p;
	}
	close(go[1]); /* a test that fails closes the other end: done */
	close(opened[0]);
	if (setgroups(0, NULL) < 0 || setresgid(APP_UID, APP_UID, APP_UID) < 0 ||
	    setresuid(APP_UID, APP_UID, APP_UID) < 0)
		_exit(125);
	int d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0 || write(opened[1], "o", 1) != 1 || read(go[0], &c, 1) != 1 ||
	    renameat(d, name, d, "was-atomsyncs") < 0 || mkdirat(d, name, 0755) < 0)
		_exit(1);
	int n = openat(d, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int f = n < 0 ? -1 : openat(n, "planted", O_WRONLY | O_CREAT | O_EXCL, 0644);
	_exit(f < 0 ? 2 : 0);
}

/* With owner, that user owns a recycled generation's directories, and
 * can put a directory of theirs (with what they like in it) in the
 * place of one atomsync has just made there, before it opens it.  It
 * finds that, and the publish fails rather than fill theirs and make it
 * part of the generation; the next one goes through. */
START_TEST(test_a_directory_swapped_as_it_is_made_is_not_used)
{
	const char *shim = getenv("FAULTINJECT");
	char *err = NULL, *owner, *lines, *preload, *hang_while, *hang_say;
	char *hang = tu_path(tmp, "hang"), *said = tu_path(tmp, "hanging");
	int go[2];

	ck_assert_msg(shim && *shim, "FAULTINJECT is not set (make check sets it)");
	ck_assert_int_gt(asprintf(&owner, "owner = %u", APP_UID), 0);
	tu_write(src, "d/t", "0", 0644);
	ck_assert_int_eq(once_others_write(owner, &err), 0);
	free(err);
	char *first = tu_live(dst), *held = tu_path(dst, first);
	char *d = tu_path(held, "d");
	tu_write(src, "d/t", "1", 0644);
	ck_assert_int_eq(once_others_write(owner, &err), 0);
	free(err);
	char *live = tu_live(dst);
	/* The first generation, replaced, is the one the next run recycles;
	 * in it, the owner holds d. */
	ck_assert_int_eq(pipe(go), 0);
	pid_t swapper = swap_made_dir_as_owner(d, "new", go);
	tu_write(src, "d/new/f", "2", 0644);
	tu_write(tmp, "hang", "", 0644);
	ck_assert_int_gt(asprintf(&lines, "%s\ngrace_ms = 100\nfsync = no",
				  owner),
			 0);
	char *conf = mapping_conf(dst, lines);
	ck_assert_int_gt(asprintf(&preload, "LD_PRELOAD=%s", shim), 0);
	ck_assert_int_gt(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	ck_assert_int_gt(asprintf(&hang_say, "FAULT_HANG_SAY=%s", said), 0);
	const char *argv[] = {"env", preload, "FAULT_HANG=openat",
			      "FAULT_HANG_MADE=new", hang_while, hang_say,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--config", conf, "--once", NULL};
	pid = tu_spawn(argv, logpath);
	ck_assert_msg(tu_wait_for(exists, said, 10000),
		      "d/new was never made");
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(tu_wait_exit(swapper, 10000), 0);
	ck_assert_int_eq(unlink(hang), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 1);
	pid = 0;
	ck_assert_int_eq(tu_file_count(logpath, "d/new was replaced by another "
						"directory as it was made"),
			 1);
	/* The last good generation is still live, and theirs is in none:
	 * what is left of the one that failed, theirs in it, is aside. */
	char *now = tu_live(dst), *planted = tu_path(dst, "..data/d/new/planted");
	ck_assert_str_eq(now, live);
	ck_assert_int_eq(access(planted, F_OK), -1);
	ck_assert_int_eq(tu_file_count(logpath, "(unfinished): Operation not "
						"permitted; what is left of it "
						"moved aside to"),
			 1);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(once_others_write(owner, &err), 0);
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s: %s", why, err);
	ck_assert_int_eq(access(planted, F_OK), -1);
	close(go[0]);
	close(go[1]);
	free(err);
	free(now);
	free(planted);
	free(conf);
	free(lines);
	free(preload);
	free(hang_while);
	free(hang_say);
	free(live);
	free(d);
	free(held);
	free(first);
	free(owner);
	free(said);
	free(hang);
}
END_TEST

/* The user who owns a target's parent moves a private directory of
 * root's into the place of the target just made, before it is opened:
 * the 0755 a new target gets must not open theirs up (it stays 0700,
 * what is in it unread by others). */
START_TEST(test_a_private_directory_swapped_in_as_the_target_is_made_stays_so)
{
	const char *shim = getenv("FAULTINJECT");
	char *parent = tu_path(tmp, "P"), *priv = tu_path(parent, "priv");
	char *target = tu_path(parent, "t"), *hang = tu_path(tmp, "hang");
	char *said = tu_path(tmp, "hanging"), *preload, *hang_while, *hang_say;
	struct stat st;

	ck_assert_msg(shim && *shim, "FAULTINJECT is not set (make check sets it)");
	tu_write(priv, "secret", "root's\n", 0644);
	ck_assert_int_eq(chmod(priv, 0700), 0);
	ck_assert_int_eq(chown(parent, APP_UID, APP_UID), 0);
	tu_write(tmp, "hang", "", 0644);
	ck_assert_int_gt(asprintf(&preload, "LD_PRELOAD=%s", shim), 0);
	ck_assert_int_gt(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	ck_assert_int_gt(asprintf(&hang_say, "FAULT_HANG_SAY=%s", said), 0);
	const char *argv[] = {"env", preload, "FAULT_HANG=openat",
			      "FAULT_HANG_MADE=t", hang_while, hang_say,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--source", src, "--target", target,
			      "--once", NULL};
	pid = tu_spawn(argv, logpath);
	ck_assert_msg(tu_wait_for(exists, said, 10000), "t was never made");
	/* As the parent's owner may (root does it here: coreutils has no
	 * exchange). */
	ck_assert_int_eq(renameat2(AT_FDCWD, priv, AT_FDCWD, target,
				   RENAME_EXCHANGE),
			 0);
	ck_assert_int_eq(unlink(hang), 0);
	(void)tu_wait_exit(pid, 20000);
	pid = 0;
	ck_assert_int_eq(stat(target, &st), 0);
	ck_assert_uint_eq(st.st_uid, 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	/* The one made is where the private one was, empty, and was not
	 * opened up either. */
	ck_assert_int_eq(stat(priv, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	free(hang_say);
	free(hang_while);
	free(preload);
	free(said);
	free(hang);
	free(target);
	free(priv);
	free(parent);
}
END_TEST

/* As one who may write the directory `arg`: a file of theirs in it. */
static int plant_in(void *arg)
{
	int d = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int f = d < 0 ? -1 : openat(d, "planted", O_WRONLY | O_CREAT | O_EXCL, 0644);

	return f < 0 ? 1 : 0;
}

/* With owner (_i 0), or group and dir_mode (1), that user can write a
 * replaced generation's directories, and so put a file back into one
 * while atomsync removes it: the removal finds it not empty.  What is
 * left of that generation is moved aside, not left in the target beside
 * the live one; the next publish goes through. */
START_TEST(test_a_directory_refilled_as_it_is_removed_is_moved_aside)
{
	const char *shim = getenv("FAULTINJECT");
	char *err = NULL, *extra, *lines, *preload, *hang_while, *hang_say;
	/* Where the removal, as whoever dir_mode lets write, can say it
	 * is held: the shim writes there from the thread held. */
	char *signals = tu_path(tmp, "signals");
	tu_mkdirs(signals, 0777);
	ck_assert_int_eq(chmod(signals, 0777), 0);
	char *hang = tu_path(signals, "hang"), *said = tu_path(signals, "hanging");

	ck_assert_msg(shim && *shim, "FAULTINJECT is not set (make check sets it)");
	if (_i == 0)
		ck_assert_int_gt(asprintf(&extra, "owner = %u", APP_UID), 0);
	else
		ck_assert_int_gt(asprintf(&extra, "group = %u\ndir_mode = 0775",
					  APP_UID),
				 0);
	ck_assert_int_gt(asprintf(&lines, "%s\ngrace_ms = 0\nfsync = no", extra),
			 0);
	char *conf = mapping_conf(dst, lines);
	tu_write(src, "d/t", "0", 0644);
	char *inner = tu_path(src, "d/inner");
	tu_mkdirs(inner, 0755);
	free(inner);
	ck_assert_int_eq(once_with(dst, lines, &err), 0);
	free(err);
	err = NULL;
	char *first = tu_live(dst), *held = tu_path(dst, first);
	char *d = tu_path(held, "d"), *planted = tu_path(d, "planted");
	/* The next run makes d/inner in its new generation, then removes
	 * the first one, and is held as it removes d/inner there. */
	tu_write(src, "d/t", "1", 0644);
	tu_write(signals, "hang", "", 0644);
	ck_assert_int_gt(asprintf(&preload, "LD_PRELOAD=%s", shim), 0);
	ck_assert_int_gt(asprintf(&hang_while, "FAULT_HANG_WHILE=%s", hang), 0);
	ck_assert_int_gt(asprintf(&hang_say, "FAULT_HANG_SAY=%s", said), 0);
	const char *argv[] = {"env", preload, "FAULT_HANG=unlinkat",
			      "FAULT_HANG_MADE=inner", hang_while, hang_say,
			      "ASAN_OPTIONS=verify_asan_link_order=0",
			      tu_bin(), "--config", conf, "--once", NULL};
	pid = tu_spawn(argv, logpath);
	ck_assert_msg(tu_wait_for(exists, said, 10000),
		      "d/inner of the replaced generation was never removed");
	ck_assert_int_eq(tu_call_as(APP_UID, plant_in, d), 0);
	ck_assert_int_eq(unlink(hang), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
	pid = 0;
	ck_assert_int_eq(tu_file_count(logpath, "Directory not empty; what is "
						"left of it moved aside to"),
			 1);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(access(held, F_OK), -1);
	char *aside = tu_path(dst, "..atomsync.aside"), *kept = tu_path(aside, first);
	char *theirs = tu_path(kept, "d/planted");
	ck_assert_int_eq(access(theirs, F_OK), 0);
	/* The next publish goes through, and removes what it replaced. */
	tu_write(src, "d/t", "2", 0644);
	ck_assert_int_eq(once_with(dst, lines, &err), 0);
	char *t = tu_path(dst, "d/t"), *now = tu_read(t, NULL);
	ck_assert_msg(now && strcmp(now, "2") == 0, "d/t is %s: %s",
		      now ? now : "missing", err);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(asides(), 1);
	free(now);
	free(t);
	free(err);
	free(theirs);
	free(kept);
	free(aside);
	free(planted);
	free(d);
	free(held);
	free(first);
	free(preload);
	free(hang_while);
	free(hang_say);
	free(conf);
	free(lines);
	free(extra);
	free(said);
	free(hang);
	free(signals);
}
END_TEST

#define NO_SETUID "--bounding-set=-setuid,-setgid"

/* --once as root under setpriv(1) with `how` (an option of its): its
 * status, its standard error in *err. */
static int once_under(const char *how, const char *lines, char **err)
{
	char *conf = mapping_conf(dst, lines);
	const char *argv[] = {"setpriv", how, tu_bin(), "--config", conf,
			      "--once", NULL};
	int rc = tu_run(argv, NULL, err, 30000);
	free(conf);
	return rc;
}

/* Where dir_mode lets others (_i 0, 2), or a group (_i 1), write the
 * directories of a generation, which are root's, a user can move into
 * one a directory of root's that they can write and that has the same
 * owner and group, holding one of root's of that owner and group that
 * they cannot write, with a file of root's in it.  Removing the replaced
 * generation must not remove more than they could themselves: root's
 * file stays, aside. */
START_TEST(test_a_directory_of_roots_moved_into_a_generation_keeps_what_it_holds)
{
	char *err = NULL, *lines, *cmd;
	char *home = tu_path(tmp, "home"), *shared = tu_path(home, "shared");
	char *victim = tu_path(shared, "victim");

	bool group = _i == 1;
	if (!group)
		ck_assert_int_gt(asprintf(&lines, "dir_mode = 0777\ngrace_ms = 0"),
				 0);
	else
		ck_assert_int_gt(asprintf(&lines, "group = %u\ndir_mode = 0775\n"
						  "grace_ms = 0",
					  APP_UID),
				 0);
	/* Their home, and in it a directory of root's they may write. */
	tu_mkdirs(victim, 0755);
	ck_assert_int_eq(chown(home, APP_UID, APP_UID), 0);
	ck_assert_int_eq(chown(shared, 0, group ? APP_UID : 0), 0);
	ck_assert_int_eq(chown(victim, 0, group ? APP_UID : 0), 0);
	ck_assert_int_eq(chmod(shared, group ? 0775 : 0777), 0);
	tu_write(victim, "precious", "root's", 0644);
	tu_write(src, "d/t", "0", 0644);
	ck_assert_int_eq(once_with(dst, lines, &err), 0);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "mv '%s' '%s/..data/d/shared'", shared,
				  dst),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	char *first = tu_live(dst);
	tu_write(src, "d/t", "1", 0644);
	/* _i 2: where setfsuid() leaves the capabilities that override
	 * permissions (SECBIT_NO_SETUID_FIXUP), they are dropped all the
	 * same. */
	ck_assert_int_eq(_i == 2 ? once_under("--securebits=+no_setuid_fixup",
					      lines, &err)
				 : once_with(dst, lines, &err),
			 0);
	/* The replaced generation, what root's directory held still in it,
	 * is aside; nothing of it is left in the target. */
	char *aside = tu_path(dst, "..atomsync.aside"), *kept = tu_path(aside, first);
	char *precious = tu_path(kept, "d/shared/victim/precious");
	char *now = tu_read(precious, NULL);
	ck_assert_msg(now && strcmp(now, "root's") == 0,
		      "root's file is %s: %s", now ? now : "gone", err);
	/* Kept by the thread with their rights, not for want of it. */
	ck_assert_msg(strstr(err, "cannot take their rights") == NULL, "%s",
		      err);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_ptr_nonnull(strstr(err, "what is left of it moved aside to"));
	free(err);
	free(now);
	free(precious);
	free(kept);
	free(aside);
	free(first);
	free(cmd);
	free(lines);
	free(victim);
	free(shared);
	free(home);
}
END_TEST

/* Without the capabilities to take the rights of those dir_mode lets
 * write a generation's directories, a mapping says so as it starts; a
 * replaced generation that has only files in those is removed, and one
 * with a directory in one is moved aside whole, not removed as root;
 * with them, it is removed. */
START_TEST(test_without_setuid_a_replaced_generation_goes_aside_whole)
{
	const char *lines = "dir_mode = 0777\ngrace_ms = 0";
	char *err = NULL;

	tu_write(src, "d/f", "0", 0644);
	ck_assert_int_eq(once_under(NO_SETUID, lines, &err), 0);
	ck_assert_msg(strstr(err, "cannot take their rights alone (CAP_SETUID "
				  "and CAP_SETGID)") != NULL,
		      "%s", err);
	free(err);
	tu_write(src, "d/f", "1", 0644);
	ck_assert_int_eq(once_under(NO_SETUID, lines, &err), 0);
	free(err);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(asides(), -1);
	tu_write(src, "d/e/f", "0", 0644);
	ck_assert_int_eq(once_under(NO_SETUID, lines, &err), 0);
	free(err);
	tu_write(src, "d/e/f", "1", 0644);
	ck_assert_int_eq(once_under(NO_SETUID, lines, &err), 0);
	ck_assert_msg(strstr(err, "what is left of it moved aside to") != NULL,
		      "%s", err);
	free(err);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(asides(), 1);
	tu_write(src, "d/e/f", "2", 0644);
	ck_assert_int_eq(once_with(dst, lines, &err), 0);
	ck_assert_msg(strstr(err, "CAP_SETUID") == NULL, "%s", err);
	free(err);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(asides(), 1);
	char *f = tu_path(dst, "d/e/f"), *now = tu_read(f, NULL);
	ck_assert_msg(now && strcmp(now, "2") == 0, "d/e/f is %s",
		      now ? now : "missing");
	free(now);
	free(f);
}
END_TEST

/* A sticky directory of root's that a user put into a generation, with
 * a file of theirs in it, is one whose files only they may remove: what
 * is left of that generation goes aside, rather than stay in the target
 * beside the live one. */
START_TEST(test_a_sticky_directory_moved_into_a_generation_goes_aside)
{
	const char *lines = "dir_mode = 0777\ngrace_ms = 0";
	char *err = NULL, *cmd;
	char *home = tu_path(tmp, "home"), *sticky = tu_path(home, "sticky");

	tu_mkdirs(sticky, 01777);
	ck_assert_int_eq(chmod(home, 0777), 0);
	ck_assert_int_eq(chmod(sticky, 01777), 0);
	tu_write(src, "d/t", "0", 0644);
	ck_assert_int_eq(once_with(dst, lines, &err), 0);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "echo mine > '%s/own' && "
					"mv '%s' '%s/..data/d/sticky'",
				  sticky, sticky, dst),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	tu_write(src, "d/t", "1", 0644);
	ck_assert_int_eq(once_with(dst, lines, &err), 0);
	ck_assert_msg(strstr(err, "what is left of it moved aside to") != NULL &&
			      strstr(err, "cannot take their rights") == NULL,
		      "%s", err);
	free(err);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(asides(), 1);
	free(cmd);
	free(sticky);
	free(home);
}
END_TEST

/* A dir_mode that lets others write but not read and search (0733):
 * they could not go into a directory in one, nor can its removal; the
 * mapping says so as it starts, and a replaced generation with one goes
 * aside whole, each time; publishing goes on. */
START_TEST(test_a_dir_mode_others_may_write_but_not_read_goes_aside)
{
	const char *lines = "dir_mode = 0733\ngrace_ms = 0";
	char *err = NULL;

	for (int k = 0; k <= 2; k++) {
		char v[8];
		snprintf(v, sizeof(v), "%d", k);
		tu_write(src, "d/sub/g", v, 0644);
		ck_assert_msg(once_with(dst, lines, &err) == 0, "%s", err);
		ck_assert_msg(strstr(err, "dir_mode 0733 lets others write but "
					  "not read and search") != NULL,
			      "%s", err);
		free(err);
		ck_assert_int_eq(tu_generations(dst), 1);
		ck_assert_int_eq(asides(), k == 0 ? -1 : k);
	}
}
END_TEST

/* With dir_mode closed: `file` of the source changed twice, each time
 * past the grace period of the generation before, so that the second
 * recycles the first; then the target mirrors the source, and root's
 * file ("root's") is aside. */
static void closed_twice_keeps_roots_file(const char *file)
{
	char *err = NULL, *find;

	for (int k = 1; k <= 2; k++) {
		char v[8];
		snprintf(v, sizeof(v), "%d", k);
		tu_write(src, file, v, 0644);
		long long due = tu_now_ms() + 150;
		while (tu_now_ms() < due)
			tu_nap(10);
		ck_assert_msg(once_with(dst, "grace_ms = 100", &err) == 0, "%s",
			      err);
		free(err);
	}
	char *why = tu_diff_trees(src, dst);
	ck_assert_msg(why == NULL, "%s", why);
	ck_assert_int_gt(asprintf(&find, "grep -rqx \"root's\" '%s/..atomsync.aside'",
				  dst),
			 0);
	ck_assert_msg(system(find) == 0, "root's file is gone");
	free(find);
}

/* Made while dir_mode let others write them, a generation's directories
 * may hold a directory of root's that a user moved in, under the name of
 * one of the source's, with one of root's they cannot write in it.  Once
 * dir_mode no longer lets them, that generation is recycled: the
 * directory is not gone into as root (nor what is in it pruned), but
 * moved aside whole, and made anew. */
/* Published with dir_mode 0777; then, as APP_UID, a directory of root's
 * they may write (in their home), holding one of root's they may not,
 * with root's file, moved into the live generation at `at` (what was
 * there moved beside it first). */
static void publish_open_and_plant(const char *at)
{
	char *err = NULL, *cmd;
	char *home = tu_path(tmp, "home"), *sub = tu_path(home, "sub");
	char *inner = tu_path(sub, "inner");

	ck_assert_int_eq(once_with(dst, "dir_mode = 0777\ngrace_ms = 100", &err),
			 0);
	free(err);
	tu_mkdirs(inner, 0755);
	ck_assert_int_eq(chown(home, APP_UID, APP_UID), 0);
	ck_assert_int_eq(chmod(sub, 0777), 0);
	tu_write(inner, "x", "root's", 0644);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s/..data' && { [ ! -e '%s' ] || "
					"mv '%s' '%s.was'; } && mv '%s' '%s'",
				  dst, at, at, at, sub, at),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	free(inner);
	free(sub);
	free(home);
}

START_TEST(test_a_directory_moved_in_before_dir_mode_was_closed_is_not_reused)
{
	tu_write(src, "d/sub/inner/f", "0", 0644);
	publish_open_and_plant("d/sub");
	/* dir_mode closed: a new generation, then one that recycles the
	 * first, past its grace period. */
	closed_twice_keeps_roots_file("d/sub/inner/f");
}
END_TEST

/* A thread that takes others' file-system ids leaves the kernel taking
 * the whole process for one that may not be dumped, whose /proc files
 * only CAP_SYS_PTRACE then reads: another atomsyncd (the units keep no
 * such capability) would no longer tell who holds a target's lock.  Once
 * a daemon has removed, with those rights, a generation of a dir_mode
 * open to others, its descriptors can still be listed without it. */
START_TEST(test_a_daemon_that_removed_as_others_stays_readable)
{
	char *conf = mapping_conf(dst, "dir_mode = 0777\ngrace_ms = 0");
	/* Both without it: a process whose capabilities are not all the
	 * reader's is never read without it, dumpable or not. */
	const char *argv[] = {"setpriv", "--bounding-set=-sys_ptrace", tu_bin(),
			      "--config", conf, NULL};
	char *fds, *cmd;

	tu_write(src, "d/e/f", "0", 0644);
	pid = tu_spawn(argv, logpath);
	tu_wait_text(logpath, " published ..", 1, 10000, logpath);
	tu_write(src, "d/e/f", "1", 0644);
	tu_wait_text(logpath, " published ..", 2, 10000, logpath);
	ck_assert_int_gt(asprintf(&fds, "/proc/%d/fd/0", (int)pid), 0);
	ck_assert_int_gt(asprintf(&cmd, "setpriv --bounding-set=-sys_ptrace "
					"stat -L '%s' >/dev/null",
				  fds),
			 0);
	/* Once the generation it replaced is gone, its threads are. */
	ck_assert(tu_wait_for(tu_one_generation, dst, 10000));
	ck_assert_msg(system(cmd) == 0, "%s cannot be read without "
					"CAP_SYS_PTRACE",
		      fds);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	tu_wait_exit(pid, 20000);
	pid = 0;
	free(cmd);
	free(fds);
	free(conf);
}
END_TEST

/* With a dir_mode open to others, a daemon's standby (linked between
 * the changes of a burst, and private until it is published) is
 * recycled as it is: nothing of it goes aside, publish after publish. */
START_TEST(test_a_burst_with_open_dir_mode_sets_nothing_aside)
{
	char *conf = mapping_conf(dst, "dir_mode = 0777");
	const char *argv[] = {tu_bin(), "--config", conf, NULL};

	tu_write(src, "d/e/f", "0", 0644);
	pid = tu_spawn(argv, logpath);
	tu_wait_text(logpath, " published ..", 1, 10000, logpath);
	for (int k = 1; k <= 6; k++) {
		char v[8];
		snprintf(v, sizeof(v), "%d", k);
		tu_write(src, "d/e/f", v, 0644);
		tu_wait_text(logpath, " published ..", 1 + k, 10000, logpath);
	}
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	tu_wait_exit(pid, 20000);
	pid = 0;
	ck_assert_int_eq(tu_file_count(logpath, "aside"), 0);
	ck_assert_int_eq(asides(), -1);
	free(conf);
}
END_TEST

/* The same closed over a directory that has left the source: its
 * prune cannot remove what was moved into it, and moves it aside whole
 * rather than fail the publish. */
START_TEST(test_a_directory_left_the_source_after_dir_mode_closed_goes_aside)
{
	char *gone = tu_path(src, "gone");

	tu_write(src, "d/f", "0", 0644);
	tu_write(src, "gone/g", "0", 0644);
	publish_open_and_plant("gone/sub");
	tu_rmrf(gone);
	closed_twice_keeps_roots_file("d/f");
	free(gone);
}
END_TEST

#define CHAIN 1200

/* As one who may write the directory `arg` (a generation's "a"): each of
 * its directories d1199 .. d1 put into the one before, a chain of them
 * 1,200 deep. */
static int chain_generation_dirs(void *arg)
{
	int fd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	for (int i = CHAIN - 1; fd >= 0 && i > 0; i--) {
		char from[16], to[32];
		snprintf(from, sizeof(from), "d%d", i);
		snprintf(to, sizeof(to), "d%d/d%d", i - 1, i);
		if (renameat(fd, from, fd, to) < 0)
			return 1;
	}
	return fd < 0;
}

/* Where dir_mode lets others write a generation's directories, they can
 * chain them deeper than the descriptors a removal has (one a level):
 * that generation goes aside, rather than stay in the target, one more
 * each publish. */
START_TEST(test_a_generation_chained_past_the_descriptors_goes_aside)
{
	const char *lines = "dir_mode = 0777\ngrace_ms = 0";
	char *conf = mapping_conf(dst, lines), *a = tu_path(src, "a"), *err = NULL;
	const char *argv[] = {"prlimit", "--nofile=1024:1024", tu_bin(),
			      "--config", conf, "--once", NULL};

	tu_mkdirs(a, 0755);
	for (int i = 0; i < CHAIN; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "d%d", i);
		char *d = tu_path(a, rel);
		ck_assert_int_eq(mkdir(d, 0755), 0);
		free(d);
	}
	tu_write(src, "t", "0", 0644);
	ck_assert_int_eq(tu_run(argv, NULL, &err, 60000), 0);
	free(err);
	char *live = tu_path(dst, "..data/a");
	ck_assert_int_eq(tu_call_as(APP_UID, chain_generation_dirs, live), 0);
	tu_write(src, "t", "1", 0644);
	ck_assert_int_eq(tu_run(argv, NULL, &err, 60000), 0);
	ck_assert_msg(strstr(err, "Too many open files; what is left of it "
				  "moved aside") != NULL,
		      "%s", err);
	ck_assert_int_eq(tu_generations(dst), 1);
	free(err);
	free(live);
	free(a);
	free(conf);
}
END_TEST

/* A daemon run as another user than root can take nobody's rights: in
 * a generation whose directories dir_mode lets others write, a user can
 * move in one of the daemon's user's own directories, holding one they
 * cannot write with that user's file in it.  The daemon says, as it
 * starts, that it cannot take their rights, and the file stays (aside). */
START_TEST(test_a_daemon_not_root_keeps_its_users_files_moved_in)
{
	char *base = tu_path(tmp, "nr"), *nsrc = tu_path(base, "src");
	char *ndst = tu_path(base, "tgt"), *ext = tu_path(base, "ext");
	char *conf = tu_path(base, "app.conf"), *text, *cmd, *err = NULL;

	tu_mkdirs(base, 0755);
	ck_assert_int_eq(chown(base, APP_UID, APP_UID), 0);
	ck_assert_int_gt(asprintf(&cmd,
				  "mkdir -p '%s/d' '%s/shared/secret' && "
				  "echo 0 > '%s/d/t' && echo mine > "
				  "'%s/shared/secret/f' && chmod 777 '%s' "
				  "'%s/shared'",
				  nsrc, ext, nsrc, ext, ext, ext),
			 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	free(cmd);
	ck_assert_int_gt(asprintf(&text, "[sync:app]\nsource = %s\ntarget = "
					 "%s\ndir_mode = 0777\ngrace_ms = 0\n",
				  nsrc, ndst),
			 0);
	tu_write(base, "app.conf", text, 0644);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	ck_assert_int_eq(tu_run_as(APP_UID, argv, NULL, &err, 30000), 0);
	ck_assert_msg(strstr(err, "cannot take their rights alone") != NULL,
		      "%s", err);
	free(err);
	ck_assert_int_gt(asprintf(&cmd, "mv '%s/shared' '%s/..data/d/'", ext,
				  ndst),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER_UID, cmd), 0);
	free(cmd);
	ck_assert_int_gt(asprintf(&cmd, "echo 1 > '%s/d/t'", nsrc), 0);
	ck_assert_int_eq(tu_sh_as(APP_UID, cmd), 0);
	ck_assert_int_eq(tu_run_as(APP_UID, argv, NULL, &err, 30000), 0);
	ck_assert_msg(strstr(err, "what is left of it moved aside to") != NULL,
		      "%s", err);
	char *aside = tu_path(ndst, "..atomsync.aside");
	char *find = NULL;
	ck_assert_int_gt(asprintf(&find, "test -n \"$(find '%s' -name f)\"",
				  aside),
			 0);
	ck_assert_int_eq(tu_sh_as(0, find), 0);
	free(find);
	free(aside);
	free(err);
	free(cmd);
	free(text);
	free(conf);
	free(ext);
	free(ndst);
	free(nsrc);
	free(base);
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
	tcase_add_test(tc, test_target_swapped_while_running_is_refused);
	tcase_add_test(tc, test_root_owned_link_on_the_way_works);
	tcase_add_test(tc, test_a_users_directory_put_in_place_of_the_target_is_refused);
	tcase_add_test(tc, test_a_target_moved_away_is_not_written_to_again);
	tcase_add_test(tc, test_a_directory_of_roots_moved_in_as_the_target_is_refused);
	tcase_add_test(tc, test_the_target_moved_back_is_published_to_again);
	tcase_add_test(tc, test_another_directory_at_the_targets_inode_is_refused);
	tcase_add_test(tc, test_an_acl_inherited_by_the_target_is_removed);
	tcase_add_test(tc, test_hooks_are_not_run_where_a_user_can_redirect_the_target);
	tcase_add_test(tc, test_daemon_runs_no_check_where_a_user_can_redirect_the_target);
	tcase_add_test(tc, test_a_user_holding_a_lock_on_the_target_keeps_nothing_out);
	tcase_add_test(tc, test_a_lock_file_a_user_owns_is_taken_back);
	tcase_add_test(tc, test_a_lock_file_linked_to_another_file_is_left_alone);
	tcase_add_test(tc, test_a_file_the_sources_writers_cannot_read_is_skipped);
	tcase_add_test(tc,
		       test_a_link_through_a_directory_its_writer_may_not_enter_is_skipped);
	tcase_add_test(tc, test_a_followed_link_is_judged_on_its_real_way);
	tcase_add_test(tc, test_a_link_is_judged_for_whoever_could_swap_it);
	tcase_add_test(tc, test_a_link_is_judged_for_its_deciders_as_they_are);
	tcase_add_test(tc, test_an_acl_that_keeps_a_writer_out_is_honoured);
	tcase_add_test(tc, test_a_group_the_owner_is_not_in_grants_them_nothing);
	tcase_add_test(tc, test_a_link_to_a_directory_is_judged_for_its_maker);
	tcase_add_test(tc, test_a_users_many_names_of_one_file_are_not_copies);
	tcase_add_test(tc, test_a_users_names_left_out_through_links_are_bounded);
	tcase_add_test(tc, test_source_swapped_for_a_users_link_is_refused);
	tcase_add_test(tc, test_a_directory_of_roots_moved_in_as_the_source_is_judged);
	tcase_add_test(tc, test_a_source_in_a_read_only_volume_is_judged_for_no_one);
	tcase_add_test(tc, test_generation_is_private_until_flushed);
	tcase_add_test(tc,
		       test_a_users_directory_in_a_generation_does_not_stop_publishing);
	tcase_add_test(tc,
		       test_a_users_plant_in_place_of_a_live_file_is_no_copy_of_it);
	tcase_add_test(tc,
		       test_a_directory_the_owner_put_in_a_generation_is_moved_aside);
	tcase_add_test(tc, test_a_directory_swapped_as_it_is_made_is_not_used);
	tcase_add_test(tc,
		       test_a_private_directory_swapped_in_as_the_target_is_made_stays_so);
	tcase_add_loop_test(tc, test_a_tree_too_deep_to_remove_is_moved_aside,
			    0, 3);
	tcase_add_loop_test(tc,
			    test_a_directory_refilled_as_it_is_removed_is_moved_aside,
			    0, 2);
	tcase_add_loop_test(
		tc, test_a_directory_of_roots_moved_into_a_generation_keeps_what_it_holds,
		0, 3);
	tcase_add_test(tc,
		       test_without_setuid_a_replaced_generation_goes_aside_whole);
	tcase_add_test(tc, test_a_sticky_directory_moved_into_a_generation_goes_aside);
	tcase_add_test(tc, test_a_dir_mode_others_may_write_but_not_read_goes_aside);
	tcase_add_test(tc, test_a_daemon_not_root_keeps_its_users_files_moved_in);
	tcase_add_test(tc, test_a_burst_with_open_dir_mode_sets_nothing_aside);
	tcase_add_test(tc, test_a_generation_chained_past_the_descriptors_goes_aside);
	tcase_add_test(
		tc, test_a_directory_left_the_source_after_dir_mode_closed_goes_aside);
	tcase_add_test(tc, test_a_daemon_that_removed_as_others_stays_readable);
	tcase_add_test(tc,
		       test_a_directory_moved_in_before_dir_mode_was_closed_is_not_reused);
	tcase_add_test(tc,
		       test_a_top_level_directory_gone_with_a_plant_is_moved_aside);
	tcase_add_test(tc, test_a_vetoed_generation_holding_a_plant_goes_aside);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(security_suite());
}
