/* File-system primitives: resolving a path that other users can change,
 * with links made by real other uids (setpriv; the tests run as root). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "testutil.h"

#define OTHER 2003u

static char *tmp;

static void setup(void)
{
	ck_assert_msg(tu_can_setuid(),
		      "these tests act as other users: run them as root");
	/* In memory: these tests make thousands of files and directories
	 * (4,000 locks, a chain 3,000 deep), and on an ext4 without a
	 * journal each new inode looks past every one removed in its group
	 * in the last minutes, as a full run of the suite leaves them: the
	 * lock tests took 2.3 s there, 0.14 s on a file system with one. */
	tmp = tu_mkdtemp_fast();
	/* Other users must be able to reach what they are given. */
	ck_assert_int_eq(chmod(tmp, 0755), 0);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(tmp);
}

/* tmp/NAME, made by root (mode) or handed to uid. */
static char *mkdir_in(const char *name, mode_t mode, int uid)
{
	char *p = tu_path(tmp, name);
	tu_mkdirs(p, mode);
	ck_assert_int_eq(chmod(p, mode), 0);
	if (uid >= 0)
		ck_assert_int_eq(chown(p, (uid_t)uid, (gid_t)uid), 0);
	return p;
}

static void same_inode(int fd, const char *path)
{
	struct stat a, b;
	ck_assert_int_eq(fstat(fd, &a), 0);
	ck_assert_int_eq(stat(path, &b), 0);
	ck_assert(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/* What sits at the temporary name is never written through: a FIFO
 * would block, a hard link would carry the text to another file. */
START_TEST(test_write_atomic_replaces_whatever_holds_the_temporary_name)
{
	char *fifo = tu_path(tmp, "f.tmp"), *other = tu_path(tmp, "other");
	char *final = tu_path(tmp, "f");
	const char *step = NULL;
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY);
	struct stat st;

	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	ck_assert_int_eq(fsutil_write_atomic(dfd, "f.tmp", "f", "one\n", 4,
					     0640, &step),
			 0);
	char *got = tu_read(final, NULL);
	ck_assert_str_eq(got, "one\n");
	free(got);
	/* Exactly the mode asked for, whatever the umask. */
	mode_t old = umask(077);
	tu_write(tmp, "other", "theirs\n", 0644);
	ck_assert_int_eq(link(other, fifo), 0);
	ck_assert_int_eq(fsutil_write_atomic(dfd, "f.tmp", "f", "two\n", 4,
					     0644, &step),
			 0);
	umask(old);
	ck_assert_int_eq(stat(final, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0644);
	got = tu_read(other, NULL);
	ck_assert_str_eq(got, "theirs\n");
	free(got);
	ck_assert_int_ne(access(fifo, F_OK), 0);
	/* A failure names its step and leaves no temporary file. */
	ck_assert_int_eq(unlink(final), 0);
	tu_write(final, "x", "x", 0644);
	ck_assert_int_eq(fsutil_write_atomic(dfd, "f.tmp", "f", "three\n", 6,
					     0644, &step),
			 -EISDIR);
	ck_assert_str_eq(step, "rename");
	ck_assert_int_ne(access(fifo, F_OK), 0);
	close(dfd);
	free(fifo);
	free(other);
	free(final);
}
END_TEST

/* What an access ACL grants all it names, and some of them, through its
 * mask; a file without one promises what its mode says. */
START_TEST(test_acl_read_tells_what_all_and_some_are_granted)
{
	struct fsutil_acl a;
	tu_write(tmp, "plain", "x", 0644);
	tu_write(tmp, "deny", "x", 0644);
	tu_write(tmp, "masked", "x", 0644);
	char *plain = tu_path(tmp, "plain"), *deny = tu_path(tmp, "deny");
	char *masked = tu_path(tmp, "masked"), *dir = tu_path(tmp, "shared");
	tu_mkdirs(dir, 0755);
	tu_acl(deny, 06, 'u', 2003, 0, 04);
	tu_acl(masked, 06, 'u', 2003, 06, 04);
	tu_acl(dir, 07, 'g', 3000, 07, 05);
	const char *paths[] = {plain, deny, masked, dir};
	const unsigned all[] = {07, 0, 04, 05}, named[] = {0, 0, 04, 07};
	for (int i = 0; i < 4; i++) {
		int fd = open(paths[i], O_PATH | O_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fsutil_acl_read(fd, &a), 0);
		ck_assert_msg(a.all == all[i] && a.named == named[i],
			      "%s: all %o named %o", paths[i], a.all, a.named);
		close(fd);
	}
	free(dir);
	free(masked);
	free(deny);
	free(plain);
}
END_TEST

/* Membership of a group as the user database says: root in its own;
 * a user it does not know in none. */
START_TEST(test_in_group_asks_the_user_database)
{
	ck_assert(fsutil_in_group(0, 0));
	ck_assert(!fsutil_in_group(0, 54321));
	ck_assert(!fsutil_in_group(54321, 54321));
}
END_TEST

START_TEST(test_root_owned_links_are_followed)
{
	char *real = mkdir_in("real", 0755, -1);
	char *link = tu_path(tmp, "link");
	ck_assert_int_eq(symlink("real", link), 0);
	/* /var/run -> /run, as Debian has it: through a root link, then
	 * "..", ".", and doubled slashes. */
	char *p;
	ck_assert_int_gt(asprintf(&p, "%s//link/./../link/", tmp), 0);
	char *err = NULL;
	int fd = fsutil_chase(p, 0, O_RDONLY | O_DIRECTORY, NULL, &err);
	ck_assert_msg(fd >= 0, "%s", err);
	same_inode(fd, real);
	close(fd);
	free(p);
	free(err);
	free(link);
	free(real);
}
END_TEST

START_TEST(test_link_owned_by_another_user_is_refused)
{
	char *parent = mkdir_in("app", 0755, OTHER);
	char *elsewhere = mkdir_in("elsewhere", 0755, -1);
	char *cmd;
	ck_assert_int_gt(asprintf(&cmd, "ln -s '%s' '%s/target'", elsewhere,
				  parent), 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	char *target = tu_path(parent, "target");
	char *err = NULL;
	int fd = fsutil_chase(target, FSUTIL_CHASE_MKDIR,
			      O_RDONLY | O_DIRECTORY, NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, target) && strstr(err, "uid 2003"), "%s", err);
	/* On the way to something else, the same. */
	char *below = tu_path(target, "sub");
	fd = fsutil_chase(below, FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_int_eq(tu_count_entries(elsewhere), 0);
	free(below);
	free(cmd);
	free(target);
	free(err);
	free(parent);
	free(elsewhere);
}
END_TEST

START_TEST(test_root_link_in_a_directory_others_change_is_refused)
{
	/* A link of root's that another user could have renamed into place. */
	char *parent = mkdir_in("app", 0755, OTHER);
	char *real = mkdir_in("real", 0755, -1);
	char *link = tu_path(parent, "target");
	ck_assert_int_eq(symlink(real, link), 0);
	char *err = NULL;
	int fd = fsutil_chase(link, 0, O_RDONLY | O_DIRECTORY, NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, "another user can change"), "%s", err);
	/* Root's, but writable by everyone: the same. */
	char *open_dir = mkdir_in("open", 0777, -1);
	char *link2 = tu_path(open_dir, "l");
	ck_assert_int_eq(symlink(real, link2), 0);
	fd = fsutil_chase(link2, 0, O_RDONLY | O_DIRECTORY, NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, "other users can change"), "%s", err);
	/* Sticky, as /tmp: only the link's owner may move it. */
	ck_assert_int_eq(chmod(open_dir, 01777), 0);
	fd = fsutil_chase(link2, 0, O_RDONLY | O_DIRECTORY, NULL, &err);
	ck_assert_msg(fd >= 0, "%s", err);
	same_inode(fd, real);
	close(fd);
	free(err);
	free(link);
	free(link2);
	free(open_dir);
	free(parent);
	free(real);
}
END_TEST

/* Below a directory another user can change, a link of root's in a
 * directory of root's is no better: they can rename that directory of
 * root's, link and all, into place from beside it. */
START_TEST(test_root_link_below_a_directory_others_change_is_refused)
{
	char *home = mkdir_in("home", 0755, OTHER);
	char *hostrun = mkdir_in("hostrun", 0755, -1);
	char *rootfs = tu_path(home, "rootfs"), *run = tu_path(rootfs, "run");
	char *app = tu_path(home, "deploy/run/app"), *err = NULL, *cmd;
	tu_mkdirs(rootfs, 0755);
	ck_assert_int_eq(symlink(hostrun, run), 0);
	tu_mkdirs(app, 0755);
	ck_assert_int_gt(asprintf(&cmd, "cd '%s' && mv deploy theirs && "
					"mv rootfs deploy",
				  home),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	int fd = fsutil_chase(app, FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			      NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, "deploy/run is below") &&
			      strstr(err, "which another user can change"),
		      "%s", err);
	ck_assert_int_eq(tu_count_entries(hostrun), 0);
	/* From a working directory below theirs, the same. */
	char *deploy = tu_path(home, "deploy"), *here = getcwd(NULL, 0);
	ck_assert_int_eq(chdir(deploy), 0);
	fd = fsutil_chase("run/app", FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_int_eq(chdir(here), 0);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, "which another user can change"), "%s", err);
	ck_assert_int_eq(tu_count_entries(hostrun), 0);
	free(here);
	free(deploy);
	/* Where only root can change the way, the same link is followed. */
	ck_assert_int_eq(chown(home, 0, 0), 0);
	fd = fsutil_chase(app, FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_msg(fd >= 0, "%s", err);
	close(fd);
	free(cmd);
	free(err);
	free(app);
	free(run);
	free(rootfs);
	free(hostrun);
	free(home);
}
END_TEST

/* FSUTIL_CHASE_TRUSTED: every directory on the way must be one only
 * root (or we) can change; the last component itself may be anyone's. */
START_TEST(test_trusted_refuses_a_directory_others_can_change)
{
	char *app = mkdir_in("app", 0755, OTHER);
	char *cfg = tu_path(app, "cfg");
	char *err = NULL;
	tu_mkdirs(cfg, 0755);
	int fd = fsutil_chase(cfg, 0, O_RDONLY | O_DIRECTORY, NULL, &err);
	ck_assert_int_ge(fd, 0); /* as before, without it */
	close(fd);
	fd = fsutil_chase(cfg, FSUTIL_CHASE_TRUSTED, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, app) && strstr(err, "owned by uid 2003"),
		      "%s", err);
	/* Root's, but its group can write it. */
	ck_assert_int_eq(chown(app, 0, 0), 0);
	ck_assert_int_eq(chmod(app, 0775), 0);
	fd = fsutil_chase(cfg, FSUTIL_CHASE_TRUSTED, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, "writable by its group (mode 0775)"), "%s",
		      err);
	/* Sticky, as /tmp: only an entry's owner may move it. */
	ck_assert_int_eq(chmod(app, 01777), 0);
	fd = fsutil_chase(cfg, FSUTIL_CHASE_TRUSTED, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_msg(fd >= 0, "%s", err);
	same_inode(fd, cfg);
	close(fd);
	/* The last component is the caller's to judge. */
	ck_assert_int_eq(chmod(app, 0755), 0);
	ck_assert_int_eq(chown(cfg, OTHER, OTHER), 0);
	fd = fsutil_chase(cfg, FSUTIL_CHASE_TRUSTED, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_msg(fd >= 0, "%s", err);
	close(fd);
	/* Below it, it is on the way. */
	char *below = tu_path(cfg, "x");
	tu_mkdirs(below, 0755);
	fd = fsutil_chase(below, FSUTIL_CHASE_TRUSTED, O_RDONLY | O_DIRECTORY,
			  NULL, &err);
	ck_assert_int_eq(fd, -EPERM);
	ck_assert_msg(strstr(err, cfg), "%s", err);
	free(below);
	free(err);
	free(cfg);
	free(app);
}
END_TEST

START_TEST(test_nofollow_refuses_a_final_link)
{
	char *f = tu_path(tmp, "file");
	char *l = tu_path(tmp, "link");
	tu_write(tmp, "file", "x", 0644);
	ck_assert_int_eq(symlink("file", l), 0);
	char *err = NULL;
	int fd = fsutil_chase(l, FSUTIL_CHASE_NOFOLLOW, O_RDONLY, NULL, &err);
	ck_assert_int_eq(fd, -ELOOP);
	ck_assert_msg(strstr(err, "is a symbolic link"), "%s", err);
	fd = fsutil_chase(l, 0, O_RDONLY, NULL, &err);
	ck_assert_int_ge(fd, 0);
	same_inode(fd, f);
	close(fd);
	free(err);
	free(f);
	free(l);
}
END_TEST

START_TEST(test_mkdir_makes_only_the_last_component)
{
	char *d = tu_path(tmp, "new");
	bool created = false;
	char *err = NULL;
	int fd = fsutil_chase(d, FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			      &created, &err);
	ck_assert_int_ge(fd, 0);
	ck_assert(created);
	close(fd);
	fd = fsutil_chase(d, FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			  &created, &err);
	ck_assert_int_ge(fd, 0);
	ck_assert(!created);
	close(fd);
	char *deep = tu_path(tmp, "missing/new");
	fd = fsutil_chase(deep, FSUTIL_CHASE_MKDIR, O_RDONLY | O_DIRECTORY,
			  &created, &err);
	ck_assert_int_eq(fd, -ENOENT);
	ck_assert_msg(strstr(err, "missing"), "%s", err);
	free(err);
	free(deep);
	free(d);
}
END_TEST

START_TEST(test_loops_and_files_on_the_way)
{
	char *a = tu_path(tmp, "a"), *b = tu_path(tmp, "b");
	ck_assert_int_eq(symlink("b", a), 0);
	ck_assert_int_eq(symlink("a", b), 0);
	char *err = NULL;
	ck_assert_int_eq(fsutil_chase(a, 0, O_RDONLY, NULL, &err), -ELOOP);
	tu_write(tmp, "f", "x", 0644);
	char *through = tu_path(tmp, "f/x");
	ck_assert_int_eq(fsutil_chase(through, 0, O_RDONLY, NULL, &err),
			 -ENOTDIR);
	ck_assert_int_eq(fsutil_chase("", 0, O_RDONLY, NULL, &err), -ENOENT);
	free(err);
	free(through);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_flock_holder_is_found)
{
	int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fsutil_flock_holder(fd), 0);
	/* locked: the child says it holds the lock; release: the parent
	 * closes it to let the child go. */
	int locked[2], release[2];
	ck_assert_int_eq(pipe(locked), 0);
	ck_assert_int_eq(pipe(release), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		/* Takes the lock on its own open of the directory. */
		char c;
		close(locked[0]);
		close(release[1]);
		int lfd = open(tmp, O_RDONLY | O_DIRECTORY);
		if (lfd < 0 || flock(lfd, LOCK_EX) < 0)
			_exit(1);
		if (write(locked[1], "l", 1) != 1)
			_exit(1);
		while (read(release[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(locked[1]);
	close(release[0]);
	char c;
	ck_assert_int_eq(read(locked[0], &c, 1), 1);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), -1);
	ck_assert_int_eq(fsutil_flock_holder(fd), child);
	/* Another file's lock is not this one's. */
	char *other = mkdir_in("other", 0755, -1);
	int ofd = open(other, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_eq(fsutil_flock_holder(ofd), 0);
	close(release[1]);
	close(locked[0]);
	int st;
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(fsutil_flock_holder(fd), 0);
	close(ofd);
	close(fd);
	free(other);
}
END_TEST

/* What a child holds: flocks on `lock` and on n - 1 removed files beside
 * it, with `dir` open; as user `uid` (-1: root's), taken before the
 * locks or, with `uid_after`, after them.  `lock` says the lock id of
 * `dir` with `id`, and is handed to `chown_to` when that is not -1. */
struct holding {
	const char *dir, *lock;
	int n, uid, chown_to;
	bool uid_after, id;
};

static int drop_to(int uid)
{
	return uid < 0 || (setgid((gid_t)uid) == 0 && setuid((uid_t)uid) == 0)
		       ? 0
		       : -1;
}

/* Takes what `h` says, as the child. */
static int lock_files(const struct holding *h)
{
	struct stat st;
	char id[FSUTIL_LOCK_ID_MAX];
	int first = -1;

	if (stat(h->dir, &st) < 0)
		return -1;
	fsutil_lock_id(&st, id, sizeof(id));
	for (int i = 0; i < h->n; i++) {
		char *p = i ? NULL : strdup(h->lock);
		if (i && asprintf(&p, "%s.%d", h->lock, i) < 0)
			return -1;
		int fd = open(p, O_RDWR | O_CREAT, 0600);
		if (fd < 0 || flock(fd, LOCK_EX) < 0 || (i && unlink(p) < 0))
			return -1;
		free(p);
		first = i ? first : fd;
	}
	if (h->id && write(first, id, strlen(id)) != (ssize_t)strlen(id))
		return -1;
	return h->chown_to >= 0 &&
			       fchown(first, (uid_t)h->chown_to,
				      (gid_t)h->chown_to) < 0
		       ? -1
		       : 0;
}

static void child_holds(const struct holding *h, int locked, int rel)
{
	struct rlimit rl;
	char c;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		_exit(1);
	if (rl.rlim_cur < (rlim_t)h->n + 64) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)h->n + 64;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			_exit(1);
	}
	if ((!h->uid_after && drop_to(h->uid) < 0) ||
	    open(h->dir, O_RDONLY | O_DIRECTORY) < 0 || lock_files(h) < 0 ||
	    (h->uid_after && drop_to(h->uid) < 0) || write(locked, "l", 1) != 1)
		_exit(1);
	while (read(rel, &c, 1) > 0)
		;
	_exit(0);
}

/* A child that holds what `h` says until the parent closes *release. */
static pid_t hold_lock(const struct holding *h, int *release)
{
	int locked[2], rel[2];
	char c;
	ck_assert_int_eq(pipe(locked), 0);
	ck_assert_int_eq(pipe(rel), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(locked[0]);
		close(rel[1]);
		child_holds(h, locked[1], rel[0]);
	}
	close(locked[1]);
	close(rel[0]);
	ck_assert_int_eq(read(locked[0], &c, 1), 1);
	close(locked[0]);
	*release = rel[1];
	return child;
}

static void let_go(pid_t child, int release)
{
	int status;
	close(release);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A removed lock that `h` says is held, as the child takes it: not a
 * writer's lock file of `dir` (stat `st`). */
static void not_a_writers(struct holding *h, const struct stat *st)
{
	int release;
	pid_t child = hold_lock(h, &release);
	if (h->n > 0 && unlink(h->lock) < 0)
		ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(fsutil_removed_lock_holder(st, 0), 0);
	let_go(child, release);
}

/* Removed locks that are not a writer's: any user can lock files of
 * theirs with the target open, or any process some private file. */
static void others_are_not_writers(const char *dir, const struct stat *st)
{
	char *theirs = mkdir_in("theirs", 0755, OTHER);
	char *lock = tu_path(theirs, "lock"), *ours = tu_path(tmp, "ours");
	/* Another user's, many of them: their holder is looked at once
	 * (4,000 looks at 4,000 open files each held a root --once for
	 * minutes).  Valgrind keeps the limit on open files as it found
	 * it. */
	struct holding h = {dir, lock, getenv("ATOMSYNC_VALGRIND") ? 500 : 4000,
			    OTHER, -1, false, true};
	not_a_writers(&h, st);
	/* Root's lock file, held by a process that is another user's now. */
	h = (struct holding){dir, ours, 1, OTHER, -1, true, true};
	not_a_writers(&h, st);
	/* Held by root, but another user's file, or a file that does not
	 * say it is the target's lock file. */
	h = (struct holding){dir, ours, 1, -1, OTHER, false, true};
	not_a_writers(&h, st);
	h = (struct holding){dir, ours, 1, -1, -1, false, false};
	not_a_writers(&h, st);
	free(ours);
	free(lock);
	free(theirs);
}

/* The lock file named now is not one removed or moved away; one moved
 * away, or removed, is found with its holder. */
START_TEST(test_removed_lock_holder_is_found)
{
	char *dir = mkdir_in("target", 0755, -1), *other = mkdir_in("o", 0755, -1);
	char *lock = tu_path(dir, "..atomsync.lock"), *moved = tu_path(tmp, "m");
	struct stat st, ost, lst;
	int release;
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(stat(other, &ost), 0);
	others_are_not_writers(dir, &st);
	struct holding h = {dir, lock, 1, -1, -1, false, true};
	pid_t child = hold_lock(&h, &release);
	ck_assert_int_eq(stat(lock, &lst), 0);
	ck_assert_int_eq(fsutil_removed_lock_holder(&st, lst.st_ino), 0);
	ck_assert_int_eq(rename(lock, moved), 0);
	ck_assert_int_eq(fsutil_removed_lock_holder(&st, 0), child);
	ck_assert_int_eq(unlink(moved), 0);
	ck_assert_int_eq(fsutil_removed_lock_holder(&st, 0), child);
	/* Another directory is not the one it has open. */
	ck_assert_int_eq(fsutil_removed_lock_holder(&ost, 0), 0);
	let_go(child, release);
	ck_assert_int_eq(fsutil_removed_lock_holder(&st, 0), 0);
	free(moved);
	free(lock);
	free(other);
	free(dir);
}
END_TEST

/* In a mount namespace of its own: a ConfigMap-like layout in a 0777
 * directory of a tmpfs, read-only once written. */
static int configmap_child(void *arg)
{
	const char *mnt = arg;
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", mnt, "tmpfs", 0, "mode=0777") < 0)
		return 10;
	char *gen = tu_path(mnt, "..2026_11_30_00_00_00.1");
	tu_write(gen, "atomsync.conf", "[sync:a]\n", 0644);
	char *data = tu_path(mnt, "..data"), *conf = tu_path(mnt, "atomsync.conf");
	if (symlink("..2026_11_30_00_00_00.1", data) < 0 ||
	    symlink("..data/atomsync.conf", conf) < 0 || chmod(mnt, 0777) < 0)
		return 11;
	char *err = NULL;
	int rc = 0;
	/* Writable by all: refused. */
	int fd = fsutil_chase(conf, 0, O_RDONLY, NULL, &err);
	if (fd != -EPERM)
		rc = 12;
	else if (mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL) < 0)
		rc = 13;
	/* Read-only: nobody but root can change it. */
	else if ((fd = fsutil_chase(conf, 0, O_RDONLY, NULL, &err)) < 0)
		rc = 14;
	if (fd >= 0)
		close(fd);
	/* Freed: under valgrind the child is checked for leaks. */
	free(err);
	free(gen);
	free(data);
	free(conf);
	return rc;
}

START_TEST(test_links_on_a_read_only_mount_are_followed)
{
	char *mnt = tu_path(tmp, "volume");
	tu_mkdirs(mnt, 0755);
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		int rc = configmap_child(mnt);
		free(mnt); /* the child is checked for leaks under valgrind */
		_exit(rc);
	}
	int st;
	ck_assert_int_eq(waitpid(p, &st, 0), p);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %d",
		      WEXITSTATUS(st));
	free(mnt);
}
END_TEST

/* In `dir`: an unnamed file written, then named "f"; 0 when "f" then
 * holds what was written, else the step that failed. */
static int unnamed_then_named(void *arg)
{
	int dfd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = dfd < 0 ? -1 : fsutil_open_unnamed(dfd);
	char buf[8] = {0};

	if (fd < 0)
		return 1;
	if (faccessat(dfd, "f", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 2; /* named before it is asked to be */
	if (write(fd, "whole", 5) != 5 || fsutil_link_unnamed(fd, dfd, "f") < 0)
		return 3;
	int in = openat(dfd, "f", O_RDONLY);
	if (in < 0 || read(in, buf, sizeof(buf)) != 5 || strcmp(buf, "whole"))
		return 4;
	/* The name is not taken over: naming twice fails. */
	if (fsutil_link_unnamed(fd, dfd, "f") != -EEXIST)
		return 5;
	close(in);
	close(fd);
	close(dfd);
	return 0;
}

struct held_file {
	int dfd, fd;
};

static int link_held(void *arg)
{
	const struct held_file *h = arg;

	return fsutil_link_unnamed(h->fd, h->dfd, "g") == 0 ? 0 : 1;
}

/* Named by root, who may link a descriptor (CAP_DAC_READ_SEARCH), and by
 * another user.  One that did not open the file is refused a link by its
 * descriptor, as every user without that capability is on some kernels:
 * it is named through /proc then. */
START_TEST(test_unnamed_file_is_named_once_complete)
{
	char *mine = mkdir_in("mine", 0755, -1);
	char *theirs = mkdir_in("theirs", 0755, (int)OTHER);

	ck_assert_int_eq(unnamed_then_named(mine), 0);
	ck_assert_int_eq(tu_call_as(OTHER, unnamed_then_named, theirs), 0);
	struct held_file h = {.dfd = open(theirs, O_RDONLY | O_DIRECTORY)};
	h.fd = fsutil_open_unnamed(h.dfd);
	ck_assert_int_ge(h.fd, 0);
	/* Theirs (protected_hardlinks: a user links only a file of theirs,
	 * or one they may read and write). */
	ck_assert_int_eq(fchown(h.fd, OTHER, OTHER), 0);
	ck_assert_int_eq(tu_call_as(OTHER, link_held, &h), 0);
	ck_assert_int_eq(faccessat(h.dfd, "g", F_OK, AT_SYMLINK_NOFOLLOW), 0);
	close(h.fd);
	close(h.dfd);
	free(mine);
	free(theirs);
}
END_TEST

/* A generation's shape, wide enough for two threads: files, directories
 * holding more, one the owner cannot search, and a link out of it. */
static void wide_tree(const char *dir)
{
	char rel[64];
	for (int i = 0; i < 40; i++) {
		snprintf(rel, sizeof(rel), i % 2 ? "n%02d" : "n%02d/d/f", i);
		tu_write(dir, rel, "x", 0644);
	}
	char *locked = tu_path(dir, "n00/d");
	ck_assert_int_eq(chmod(locked, 0), 0);
	free(locked);
	char *link = tu_path(dir, "n02/out");
	ck_assert_int_eq(symlink("../../outside", link), 0);
	free(link);
}

START_TEST(test_rmtree_halves_removes_a_wide_tree_and_follows_no_link)
{
	char *out = mkdir_in("outside", 0755, -1);
	tu_write(out, "keep", "k", 0644);
	char *gen = mkdir_in("gen", 0755, -1);
	wide_tree(gen);
	char *top = tu_path(tmp, "top-link");
	ck_assert_int_eq(symlink("outside", top), 0);
	tu_write(tmp, "file", "f", 0644);
	int fd = open(tmp, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);

	ck_assert_int_eq(fsutil_rmtree_halves(fd, "gen"), 0);
	ck_assert_int_eq(fsutil_rmtree_halves(fd, "top-link"), 0);
	ck_assert_int_eq(fsutil_rmtree_halves(fd, "file"), 0);
	ck_assert_int_eq(fsutil_rmtree_halves(fd, "missing"), 0);
	ck_assert_int_eq(faccessat(fd, "gen", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	ck_assert_int_eq(faccessat(fd, "top-link", F_OK, AT_SYMLINK_NOFOLLOW),
			 -1);
	ck_assert_int_eq(faccessat(fd, "file", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	ck_assert_int_eq(faccessat(fd, "outside/keep", F_OK, 0), 0);
	close(fd);
	free(top);
	free(gen);
	free(out);
}
END_TEST

/* In a directory anyone can write, a directory another user made is
 * theirs: neither half goes into it; the rest goes. */
START_TEST(test_rmtree_halves_leaves_what_it_may_not_enter)
{
	char *open_dir = mkdir_in("open", 01777, -1);
	char rel[32];
	for (int i = 0; i < 30; i++) {
		snprintf(rel, sizeof(rel), "f%02d", i);
		tu_write(open_dir, rel, "x", 0644);
	}
	char *theirs = tu_path(open_dir, "theirs");
	char *cmd = NULL;
	ck_assert_int_ge(asprintf(&cmd, "mkdir '%s' && echo t > '%s/x'",
				  theirs, theirs),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	free(cmd);
	int fd = open(tmp, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);

	ck_assert_int_eq(fsutil_rmtree_halves(fd, "open"), -EPERM);
	ck_assert_int_eq(faccessat(fd, "open/theirs/x", F_OK, 0), 0);
	for (int i = 0; i < 30; i++) {
		snprintf(rel, sizeof(rel), "open/f%02d", i);
		ck_assert_int_eq(faccessat(fd, rel, F_OK, AT_SYMLINK_NOFOLLOW),
				 -1);
	}
	close(fd);
	free(theirs);
	free(open_dir);
}
END_TEST

/* Removing, on two threads at once, what others may write takes their
 * ids on a thread each: the kernel then takes the process for one that
 * may not be dumped, and the flag must be back once they are all done,
 * however they overlapped. */
START_TEST(test_rmtree_halves_leaves_the_process_dumpable)
{
	ck_assert_msg(geteuid() == 0, "this test takes other ids: run it as "
				      "root");
	ck_assert_int_eq(prctl(PR_GET_DUMPABLE), 1);
	int fd = open(tmp, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	for (int round = 0; round < 10; round++) {
		char *gen = mkdir_in("gen", 0755, -1), rel[32];
		for (int i = 0; i < 32; i++) {
			snprintf(rel, sizeof(rel), "d%02d/e/f", i);
			tu_write(gen, rel, "x", 0644);
			/* As dir_mode 0777 makes them. */
			for (int k = 0; k < 2; k++) {
				snprintf(rel, sizeof(rel), k ? "d%02d/e" : "d%02d", i);
				char *d = tu_path(gen, rel);
				ck_assert_int_eq(chmod(d, 0777), 0);
				free(d);
			}
		}
		ck_assert_int_eq(fsutil_rmtree_halves(fd, "gen"), 0);
		ck_assert_int_eq(faccessat(fd, "gen", F_OK, 0), -1);
		ck_assert_int_eq(prctl(PR_GET_DUMPABLE), 1);
		free(gen);
	}
	close(fd);
}
END_TEST

#define MS 1000000LL

static int64_t now_ns(void)
{
	return (int64_t)clock_us(CLOCK_REALTIME) * 1000;
}

static int64_t ctime_of(const char *path)
{
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	return clock_ts_ns(&st.st_ctim);
}

/* Naps until the clock is `ms` past `t`. */
static void wait_past(int64_t t, long ms)
{
	while (now_ns() <= t + ms * MS)
		tu_nap(10);
}

/* What empties a directory three levels down shows, and nothing outside
 * does (a link out of the tree is not followed, a FIFO not opened). */
START_TEST(test_tree_busy_finds_a_change_anywhere_in_the_tree)
{
	char *gen = mkdir_in("gen", 0755, -1), *out = mkdir_in("out", 0755, -1);
	tu_write(gen, "a/b/c/file", "x", 0644);
	tu_write(gen, "x/y/z", "x", 0644);
	char *link = tu_path(gen, "x/out"), *fifo = tu_path(gen, "fifo");
	ck_assert_int_eq(symlink("../../out", link), 0);
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	int64_t made = now_ns();
	int fd = open(gen, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);

	ck_assert_int_eq(fsutil_tree_busy(fd, made - 1000 * MS, 1000), 1);
	ck_assert_int_eq(fsutil_tree_busy(fd, made + 10000 * MS, 1000), 0);

	wait_past(made, 300);
	tu_write(out, "new", "n", 0644);
	ck_assert_int_eq(fsutil_tree_busy(fd, ctime_of(out) - 100 * MS, 1000),
			 0);
	char *deep = tu_path(gen, "a/b/c/file"), *c = tu_path(gen, "a/b/c");
	ck_assert_int_eq(unlink(deep), 0);
	ck_assert_int_eq(fsutil_tree_busy(fd, ctime_of(c) - 100 * MS, 1000),
			 1);
	close(fd);
	free(c);
	free(deep);
	free(fifo);
	free(link);
	free(out);
	free(gen);
}
END_TEST

/* Each directory is opened from its parent, whatever the depth: a change
 * 3,000 levels down (a path four times PATH_MAX) is found, given the
 * descriptors; a quarter of those allowed is as deep as it goes. */
START_TEST(test_tree_busy_reads_a_deep_chain)
{
	struct rlimit was;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
	rlim_t hard = was.rlim_max == RLIM_INFINITY ? 65536 : was.rlim_max;
	int levels = hard / 4 > 3016 ? 3000 : (int)(hard / 4) - 16;
	struct rlimit wide = {hard, was.rlim_max};
	struct rlimit narrow = {(rlim_t)levels * 2, was.rlim_max};
	ck_assert_int_gt(levels, 100);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &wide), 0);
	char *gen = mkdir_in("gen", 0755, -1);
	tu_mkdeep(gen, "d", levels);
	int64_t made = now_ns();
	int fd = open(gen, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	wait_past(made, 300);
	int64_t t = made + 200 * MS;
	ck_assert_int_eq(fsutil_tree_busy(fd, t, 1000), 0);
	/* The file at the bottom goes. */
	int at = dup(fd);
	for (int i = 0; i < levels; i++) {
		int sub = openat(at, "d", O_RDONLY | O_DIRECTORY);
		ck_assert_int_ge(sub, 0);
		close(at);
		at = sub;
	}
	ck_assert_int_eq(unlinkat(at, "bottom", 0), 0);
	close(at);
	ck_assert_int_eq(fsutil_tree_busy(fd, t, 1000), 1);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &narrow), 0);
	ck_assert_int_eq(fsutil_tree_busy(fd, t, 1000), 0);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
	close(fd);
	tu_rmdeep(gen, "d");
	free(gen);
}
END_TEST

/* Joined paths have one slash between their parts: "/" and "etc" make
 * "/etc", which an open beneath "/" takes as relative once the first
 * slash is cut (a followed link to "/", say). */
START_TEST(test_join_puts_one_slash_between)
{
	const char *cases[][3] = {{"a", "b", "a/b"},	{"/", "etc", "/etc"},
				  {"", "b", "b"},	{"/a/", "b", "/a/b"},
				  {"/a", "b/c", "/a/b/c"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *j = fsutil_join(cases[i][0], cases[i][1]);
		ck_assert_str_eq(j, cases[i][2]);
		free(j);
	}
}
END_TEST

static Suite *fsutil_suite(void)
{
	Suite *s = suite_create("fsutil");
	TCase *tc = tcase_create("chase");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_acl_read_tells_what_all_and_some_are_granted);
	tcase_add_test(tc, test_in_group_asks_the_user_database);
	tcase_add_test(tc, test_join_puts_one_slash_between);
	tcase_add_test(tc, test_root_owned_links_are_followed);
	tcase_add_test(tc, test_link_owned_by_another_user_is_refused);
	tcase_add_test(tc, test_root_link_in_a_directory_others_change_is_refused);
	tcase_add_test(tc, test_root_link_below_a_directory_others_change_is_refused);
	tcase_add_test(tc, test_trusted_refuses_a_directory_others_can_change);
	tcase_add_test(tc, test_nofollow_refuses_a_final_link);
	tcase_add_test(tc, test_mkdir_makes_only_the_last_component);
	tcase_add_test(tc, test_loops_and_files_on_the_way);
	tcase_add_test(tc, test_links_on_a_read_only_mount_are_followed);
	tcase_add_test(tc, test_flock_holder_is_found);
	tcase_add_test(tc, test_removed_lock_holder_is_found);
	tcase_add_test(tc,
		       test_write_atomic_replaces_whatever_holds_the_temporary_name);
	tcase_add_test(tc,
		       test_rmtree_halves_removes_a_wide_tree_and_follows_no_link);
	tcase_add_test(tc, test_rmtree_halves_leaves_what_it_may_not_enter);
	tcase_add_test(tc, test_rmtree_halves_leaves_the_process_dumpable);
	tcase_add_test(tc, test_unnamed_file_is_named_once_complete);
	tcase_add_test(tc, test_tree_busy_finds_a_change_anywhere_in_the_tree);
	tcase_add_test(tc, test_tree_busy_reads_a_deep_chain);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(fsutil_suite());
}
