/* File-system primitives that never follow a symlink they were not told
 * to, built on *at() calls so a path swapped mid-operation cannot redirect
 * them. */
#ifndef ATOMSYNC_FSUTIL_H
#define ATOMSYNC_FSUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Opens `rel` below `rootfd` without crossing any symlink or leaving the
 * directory (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a walk of
 * O_NOFOLLOW opens where openat2 is missing).  "" opens the root itself.
 * Returns an fd or a negative errno (-ELOOP when a symlink is in the way). */
int fsutil_open_beneath(int rootfd, const char *rel, int flags);

/* Removes `name` in `dirfd` and, if it is a directory, all it holds
 * (without recursion, and up to 4096 levels deep).  Symlinks are removed,
 * never followed.  A directory fsutil_may_enter() refuses is left, with
 * -EPERM, as is what holds it.  What is in a directory of root's (or
 * ours) that its group or others may write is removed on a thread with
 * the rights of those alone (fsutil_can_act_as_writers()): what they
 * could not remove is left, and fails the removal; without that thread,
 * the files in it are removed, but no directory in it is gone into
 * (-EPERM).  Missing is not an error.  Goes on after a failure and
 * returns the first. */
int fsutil_rmtree(int dirfd, const char *name);
/* Whether fsutil_rmtree() can take the rights of those who may write a
 * directory: a user who owns nothing, in their group or its own, with
 * CAP_SETUID and CAP_SETGID.  Asked of the kernel (on a thread: see
 * rm_thread()) until it answers. */
bool fsutil_can_act_as_writers(void);
/* The same in a directory whose owner or mode has changed since what it
 * holds was put there: `in` is what it was then (NULL: as it is). */
int fsutil_rmtree_in(int dirfd, const struct stat *in, const char *name);
/* An unnamed regular file in `dirfd` (O_TMPFILE, mode 0600), for
 * fsutil_link_unnamed() to name once it is complete; -EOPNOTSUPP where
 * the file system makes none. */
int fsutil_open_unnamed(int dirfd);
/* Gives the unnamed file `fd` the name `name` in `dirfd` (which must be
 * free): by its descriptor where that is allowed (CAP_DAC_READ_SEARCH),
 * else through /proc/self/fd. */
int fsutil_link_unnamed(int fd, int dirfd, const char *name);
/* fsutil_rmtree() on two threads, each removing half of the names the
 * directory `name` holds (one, for a handful): for a generation that a
 * caller waits to see gone, at half the time on two cores. */
int fsutil_rmtree_halves(int dirfd, const char *name);

/* Whether someone is at work in the tree of `dirfd` (the directory
 * itself and those below it, on its file system, up to 4096 levels down
 * or fsutil_fd_share() of them, links not followed): 1 when one of them
 * changed (by its ctime, which no user can set, in clock_ts_ns()'s
 * nanoseconds) at or after `since_ns` and no more than `ahead_ms` past
 * the clock as it is read (later is a clock stepped back, not a change),
 * or went away while the tree was read; else 0, or a negative errno.
 * What deletes a tree (rm -rf) changes the directory it empties all
 * along.  Reads every directory of the tree once, each from its parent. */
int fsutil_tree_busy(int dirfd, int64_t since_ns, uint64_t ahead_ms);

/* How many descriptors one task beside publishing (a walk, the metrics
 * listener's connections) may hold: `most`, or a quarter of
 * RLIMIT_NOFILE's soft limit when that is fewer; publishes need the
 * rest. */
size_t fsutil_fd_share(size_t most);

/* The names in the directory `dfd` but "." and "..", sorted bytewise when
 * asked; free with fsutil_names_free. */
int fsutil_read_names(int dfd, bool sorted, char ***names, size_t *count);
void fsutil_names_free(char **v, size_t n);

/* Streams up to `size` bytes from `in` to `out` (copy_file_range, then
 * read/write); *copied says how many were copied, which is fewer when
 * the input ended early.  With `writeback` (out is to be flushed), a
 * large file is sent on to the disk part by part as it is copied. */
int fsutil_copy(int in, int out, uint64_t size, bool writeback,
		uint64_t *copied);

/* Compares two open files byte for byte from their current offsets;
 * anything but two regular files of one size differs, unread. */
int fsutil_same_content(int a, int b, bool *same);

/* Compares the open file `fd`, from its current offset, with `len`
 * bytes of `buf`. */
int fsutil_same_buffer(int fd, const void *buf, size_t len, bool *same);

/* Writes all `len` bytes of `buf` (retrying short writes and EINTR). */
int fsutil_write_all(int fd, const void *buf, size_t len);

/* Reads a symlink of any length; *out is malloc'ed. */
int fsutil_readlinkat(int dirfd, const char *name, char **out);

/* fsync that retries EINTR. */
int fsutil_fsync(int fd);

/* A file replaced atomically in the directory `dfd`, in two steps:
 * fsutil_tmp_create makes `tmp` afresh (whatever sits at that name, a
 * hard link to a file elsewhere or a FIFO, is unlinked, never opened)
 * with exactly `mode`, whatever the umask, and returns its descriptor;
 * fsutil_tmp_commit closes it and, when `rc` (what writing it came to)
 * is 0, renames it over `name`, or else removes it.  No fsync: each
 * caller says why losing the file in a crash is harmless.  A negative
 * errno with *step ("remove", "create", "chmod", "close", "rename")
 * saying what failed. */
int fsutil_tmp_create(int dfd, const char *tmp, mode_t mode,
		      const char **step);
int fsutil_tmp_commit(int dfd, const char *tmp, const char *name, int fd,
		      int rc, const char **step);
/* Both, with `len` bytes of `data` in between ("write" when that fails). */
int fsutil_write_atomic(int dfd, const char *tmp, const char *name,
			const void *data, size_t len, mode_t mode,
			const char **step);

/* The process (running as root or us) holding a flock(2) lock on the
 * file open as `fd`, as /proc/PID/fd and fdinfo say: its pid, or 0 when
 * that cannot be told (no /proc, a holder in another pid namespace, or
 * one whose open files we may not look at). */
pid_t fsutil_flock_holder(int fd);
/* The same for the file `st` describes; -EACCES when none was found but
 * a process of root's had open files we may not look at (we are not
 * root). */
pid_t fsutil_flock_holder_of(const struct stat *st);
/* What a lock file says, to be told from other files: of which target
 * directory (`dir`) it is the lock file.  A line shorter than
 * FSUTIL_LOCK_ID_MAX. */
#define FSUTIL_LOCK_ID_MAX 64
#define FSUTIL_LOCK_ID_PREFIX "atomsync lock of "
void fsutil_lock_id(const struct stat *dir, char *buf, size_t len);
/* Another process, running as root or us, that has directory `dir` open
 * and holds a flock(2) lock on a lock file of it (mode 0600 or less,
 * owned by root or us, saying fsutil_lock_id(dir)) other than the one of
 * inode `named` (0: none): a writer of that target whose lock file was
 * removed or moved away while it held it.  Its pid, 0 when there is none
 * or it cannot be told (as above), or -errno (ENOMEM, EMFILE) when
 * looking failed.  It looks at every open file of every process of root's
 * or ours: not for every open of a target. */
pid_t fsutil_removed_lock_holder(const struct stat *dir, ino_t named);

/* Root and the user atomsyncd runs as: who may own what it trusts. */
bool fsutil_trusted_uid(uid_t uid);
/* Owned by root or us and writable by nobody else: only root or we can
 * have changed it (a generation, a directory in one). */
bool fsutil_ours_alone(const struct stat *st);
/* Whether only root or we can change the names in the directory open as
 * `fd` (any kind, O_PATH too), whose metadata is `st`: owned by one of us
 * and not writable by others, unless sticky (as /tmp is: there only an
 * entry's owner may rename or remove it), or on a file system mounted
 * read-only (a Kubernetes ConfigMap volume's directory is 0777, but only
 * a remount, which takes root, could change it).  A symbolic link is
 * followed only in such a directory. */
bool fsutil_trusted_dir(int fd, const struct stat *st);
/* Whether the directory `st`, found in the directory `in`, may be
 * emptied, or taken over (chown, chmod) as one of a generation's: where
 * a user other than root and us can write `in`, only one with the owner
 * and group of `in`, as all of a generation's directories below its top
 * have.  Another that user may have moved in, with what they could not
 * remove or change themselves in it. */
bool fsutil_may_enter(const struct stat *in, const struct stat *st);
/* Whether `st` is root's (or ours) but its group or others may write it
 * (dir_mode).  A directory they moved into it may be one of root's with
 * its very owner and group (fsutil_may_enter() lets it pass), holding
 * what they could not remove themselves: what is in it is for the
 * kernel to tell, not its owner (fsutil_rmtree()). */
bool fsutil_ours_but_open(const struct stat *st);
/* Whether user `uid` is in group `gid`, its own or another, as the user
 * database says: false for a user it does not know. */
bool fsutil_in_group(uid_t uid, gid_t gid);

/* What the POSIX access ACL of a file grants beyond its owner, in the
 * bits of "others" (04 read, 02 write, 01 search or execute), each entry
 * through the ACL's mask. */
struct fsutil_acl {
	/* Granted to every user and group it names, its group and others:
	 * what mode bits that say "others may" still promise.  07 for a
	 * file without such an ACL. */
	unsigned all;
	/* Granted to every user it names and to its group: what the
	 * members of its group are sure of.  07 without such an ACL. */
	unsigned group;
	/* Granted to one or more users or groups it names, besides the
	 * file's own group: 0 without such an ACL. */
	unsigned named;
};

/* The access ACL of what `fd` is open on (O_PATH will do).  One that
 * cannot be made sense of (too large, or of an unknown version) grants
 * nothing to all and everything to some.  0, or -errno when it cannot be
 * read. */
int fsutil_acl_read(int fd, struct fsutil_acl *a);

/* Removes the access and default ACLs of the directory open as `fd`
 * (*had: it had one): what is made in it then has its mode bits alone.
 * 0, or -errno. */
int fsutil_acl_strip(int fd, bool *had);

/* Who besides the owner may write a file of mode `mode` (some of 0022):
 * "its group and others", "its group" or "others", for messages. */
const char *fsutil_writers(mode_t mode);

/* `name` in `dfd` ("." for dfd itself, no link followed) opened to be
 * read with readdir(); NULL, errno set, when it cannot be. */
DIR *fsutil_opendir_at(int dfd, const char *name);

/* Whether the directory open as `fd` is the directory (dev, ino) or
 * below it, by its ".." up to the root: 1, 0, or a negative errno. */
int fsutil_within(int fd, uint64_t dev, uint64_t ino);

/* Whether the directory open as `fd` has no entry but . and .. (false
 * when it cannot be read). */
bool fsutil_dir_empty(int fd);

/* Calls `at` with each directory above the one open as `fd` (found as
 * *st), nearest first, up to "/" (and across mounts, as ".." goes): an
 * O_PATH descriptor it may not keep, and its metadata.  Stops at the
 * first nonzero it returns, and returns that; 0 at "/", or -errno. */
int fsutil_climb(int fd, const struct stat *st,
		 int (*at)(int fd, const struct stat *st, void *arg), void *arg);

/* Whether the directory open as `fd` (its metadata in *st) is one we
 * made private: in a directory others can write, one of them may have
 * put another in the place of the one just made, which what follows
 * (a chown, a chmod) must not touch.  They can move only directories
 * they can write.  The setgid bit a directory takes from a setgid
 * parent lets nobody in: it is no sign of another's. */
bool fsutil_made_private(int fd, struct stat *st);

/* Opens `path` as a root daemon must resolve a path that other users may
 * change (as systemd's chase() does): one component at a time, following
 * a symlink only when it is owned by root or by us and sits in a
 * directory only root or we can change; otherwise -EPERM, with *err
 * naming the link.  `flags` are those of the final open (never O_PATH;
 * O_NOFOLLOW and O_CLOEXEC are added).  Returns an fd or a negative errno
 * with *err (when not NULL) saying which component failed and why. */
/* A missing last component is made, 0700: *created says whether the
 * directory opened is the one made (or ours, private and empty as it
 * is), for the caller to open up; false for another moved there. */
#define FSUTIL_CHASE_MKDIR 0x1u
#define FSUTIL_CHASE_NOFOLLOW 0x2u /* the last component must not be a link */
/* Every directory a name is looked up in (and, for a relative path, each
 * above the working directory) must be one only root or we can
 * change (owned by one of us and writable by nobody else, sticky, or
 * read-only), so that nobody else can make the path lead elsewhere
 * later: for a path handed on as a string (to a hook, say).  -EPERM
 * otherwise, *err naming the directory and who can change it. */
#define FSUTIL_CHASE_TRUSTED 0x4u
/* The directory that holds the last component, when that is a regular
 * file (anything else is the caller's to refuse), and each that holds a
 * link followed for it, must be one where only root or we can make a
 * name: not one others can write, even sticky, where anyone may move in
 * a file of root's from a directory they can write (a copy atomsyncd
 * made into a generation whose dir_mode lets them, say), whose owner
 * then vouches for nothing: for a file whose owner is what makes it
 * trusted.  -EPERM otherwise. */
#define FSUTIL_CHASE_PLACED 0x8u
int fsutil_chase(const char *path, unsigned how, int flags, bool *created,
		 char **err);

/* For a message that names `path` already: the error of a chase of it
 * (*err of fsutil_chase()) without the "PATH: " it begins with when
 * what failed is `path` itself; the error as it is otherwise, or
 * strerror(-rc) when there is none. */
const char *fsutil_chase_why(const char *why, const char *path, int rc);
/* The same for a chase with O_DIRECTORY, where a file (or a FIFO, a
 * socket...) has the name `path`: what to do about it. */
const char *fsutil_chase_dir_why(const char *why, const char *path, int rc);

/* The absolute path of what `fd` is open on (malloc'ed), or NULL with
 * errno set. */
char *fsutil_fd_path(int fd);

/* "a/b" ("/b" when a is "/": no second slash), or b alone when a is
 * empty; NULL when out of memory. */
char *fsutil_join(const char *a, const char *b);

#endif
