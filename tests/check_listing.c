/* Listings of a tree of directories: every directory read whole or not
 * at all, names in order with the inodes their entries give, no link
 * followed, no recursion, and a bound on the names kept. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listing.h"
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

static struct listing *list(const char *dir, size_t max, int *rc)
{
	struct listing *l = NULL;
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	ck_assert_int_ge(fd, 0);
	*rc = listing_read(fd, max, NULL, &l);
	close(fd);
	return l;
}

/* The names listed for `path`, each followed by a space. */
static char *names_of(const struct listing *l, const char *path)
{
	const struct listing_dir *d = listing_find(l, path);
	char *out = calloc(1, 1);

	ck_assert_ptr_nonnull(d);
	for (size_t i = d->first; i < d->first + d->n; i++) {
		char *next = NULL;
		ck_assert_int_gt(asprintf(&next, "%s%s ", out,
					  listing_name(l, &l->names[i])),
				 0);
		free(out);
		out = next;
	}
	return out;
}

/* Each directory listed is the one at its path, and each of its names
 * carries the inode that name has. */
static void assert_identities(const struct listing *l, const char *root)
{
	for (size_t k = 0; k < l->ndirs; k++) {
		const struct listing_dir *d = &l->dirs[k];
		char *dir = d->path[0] ? tu_path(root, d->path) : strdup(root);
		struct stat st;
		ck_assert_int_eq(lstat(dir, &st), 0);
		ck_assert_uint_eq(d->dev, st.st_dev);
		ck_assert_uint_eq(d->ino, st.st_ino);
		for (size_t i = d->first; i < d->first + d->n; i++) {
			char *p = tu_path(dir, listing_name(l, &l->names[i]));
			ck_assert_int_eq(lstat(p, &st), 0);
			ck_assert_uint_eq(l->names[i].ino, st.st_ino);
			free(p);
		}
		free(dir);
	}
}

START_TEST(test_every_directory_is_listed_in_name_order)
{
	char *top = tu_path(tmp, "top");
	tu_write(top, "b", "1", 0644);
	tu_write(top, "a", "1", 0644);
	tu_write(top, "d/y", "1", 0644);
	tu_write(top, "d/x", "1", 0644);
	tu_write(top, "d/e/z", "1", 0644);
	char *empty = tu_path(top, "d/empty");
	ck_assert_int_eq(mkdir(empty, 0755), 0);
	char *fifo = tu_path(top, "fifo");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	int rc;
	struct listing *l = list(top, 100, &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(l->ndirs, 4);
	char *n = names_of(l, "");
	ck_assert_str_eq(n, "a b d fifo ");
	free(n);
	n = names_of(l, "d");
	ck_assert_str_eq(n, "e empty x y ");
	free(n);
	n = names_of(l, "d/e");
	ck_assert_str_eq(n, "z ");
	free(n);
	n = names_of(l, "d/empty");
	ck_assert_str_eq(n, "");
	free(n);
	ck_assert_ptr_null(listing_find(l, "a"));
	ck_assert_ptr_null(listing_find(l, "d/x"));
	ck_assert_uint_eq(l->names[listing_find(l, "d")->first].type, DT_DIR);
	assert_identities(l, top);
	listing_free(l);
	free(fifo);
	free(empty);
	free(top);
}
END_TEST

/* A link to a directory is a name, never a directory read: not one
 * inside the tree, nor one leading out of it. */
START_TEST(test_no_link_is_followed)
{
	char *top = tu_path(tmp, "top");
	tu_write(tmp, "outside/secret", "s", 0644);
	tu_write(top, "d/f", "1", 0644);
	char *out = tu_path(top, "out"), *in = tu_path(top, "in");
	char *target = tu_path(tmp, "outside");
	ck_assert_int_eq(symlink(target, out), 0);
	ck_assert_int_eq(symlink("d", in), 0);
	int rc;
	struct listing *l = list(top, 100, &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(l->ndirs, 2);
	ck_assert_ptr_null(listing_find(l, "out"));
	ck_assert_ptr_null(listing_find(l, "in"));
	char *n = names_of(l, "");
	ck_assert_str_eq(n, "d in out ");
	free(n);
	listing_free(l);
	free(target);
	free(in);
	free(out);
	free(top);
}
END_TEST

/* Past the bound, a directory is left out whole: those listed hold
 * every name they have. */
START_TEST(test_the_bound_leaves_directories_out_whole)
{
	char *top = tu_path(tmp, "top");
	for (int d = 0; d < 10; d++)
		for (int f = 0; f < 10; f++) {
			char rel[32];
			snprintf(rel, sizeof(rel), "d%d/f%d", d, f);
			tu_write(top, rel, "1", 0644);
		}
	int rc;
	/* The top's 10 names, and three directories of 10. */
	struct listing *l = list(top, 45, &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(l->ndirs, 4);
	ck_assert_uint_eq(l->nnames, 40);
	for (size_t k = 0; k < l->ndirs; k++)
		ck_assert_uint_eq(l->dirs[k].n, 10);
	assert_identities(l, top);
	listing_free(l);
	/* Not even the top fits: nothing is listed. */
	l = list(top, 9, &rc);
	ck_assert_int_eq(rc, -E2BIG);
	ck_assert_ptr_null(l);
	free(top);
}
END_TEST

/* A tree deeper than any stack would allow is listed without
 * recursion, down to the paths the kernel takes in one call. */
START_TEST(test_a_deep_tree_is_listed_without_recursion)
{
	/* LISTED: the deepest k with a path of 3k - 1 bytes under PATH_MAX. */
	enum { DEPTH = 3000, LISTED = PATH_MAX / 3 };
	char *top = tu_path(tmp, "top");
	ck_assert_int_eq(mkdir(top, 0755), 0);
	int fd = open(top, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < DEPTH; i++) {
		ck_assert_int_eq(mkdirat(fd, "dd", 0755), 0);
		int next = openat(fd, "dd", O_RDONLY | O_DIRECTORY);
		ck_assert_int_ge(next, 0);
		close(fd);
		fd = next;
	}
	close(fd);
	int rc;
	struct listing *l = list(top, 10 * DEPTH, &rc);

	/* "dd/dd/..." of k levels is 3k - 1 bytes long. */
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(l->ndirs, LISTED + 1);
	ck_assert_uint_eq(l->nnames, LISTED + 1);
	size_t deepest = 0;
	for (size_t k = 0; k < l->ndirs; k++)
		if (strlen(l->dirs[k].path) > deepest)
			deepest = strlen(l->dirs[k].path);
	ck_assert_uint_eq(deepest, LISTED * 3 - 1);
	ck_assert_uint_lt(deepest, PATH_MAX);
	listing_free(l);
	free(top);
}
END_TEST

/* A directory that another user owns or can write is a name, never a
 * directory read, and nothing below it is read either. */
START_TEST(test_what_others_can_change_is_not_read)
{
	char *top = tu_path(tmp, "top");
	tu_write(top, "open/sub/f", "1", 0644);
	tu_write(top, "theirs/sub/f", "1", 0644);
	tu_write(top, "mine/f", "1", 0644);
	char *open_ = tu_path(top, "open"), *theirs = tu_path(top, "theirs");
	ck_assert_int_eq(chmod(open_, 0777), 0);
	ck_assert_int_eq(chown(theirs, 2009, 100), 0);
	int rc;
	struct listing *l = list(top, 100, &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(l->ndirs, 2);
	ck_assert_ptr_nonnull(listing_find(l, "mine"));
	ck_assert_ptr_null(listing_find(l, "open"));
	ck_assert_ptr_null(listing_find(l, "open/sub"));
	ck_assert_ptr_null(listing_find(l, "theirs"));
	ck_assert_ptr_null(listing_find(l, "theirs/sub"));
	char *n = names_of(l, "");
	ck_assert_str_eq(n, "mine open theirs ");
	free(n);
	listing_free(l);
	/* A top others can write: nothing is read. */
	ck_assert_int_eq(chmod(top, 0777), 0);
	l = list(top, 100, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(l->ndirs, 0);
	listing_free(l);
	free(theirs);
	free(open_);
	free(top);
}
END_TEST

/* One directory listed alone, whoever can write it (the caller tells
 * whether to trust it): its names in order with their inodes, as the
 * top, and nothing below it. */
START_TEST(test_one_directory_is_listed_alone_whoever_can_write_it)
{
	char *top = tu_path(tmp, "top");
	tu_write(top, "b/f", "1", 0644);
	tu_write(top, "a.b", "1", 0644);
	tu_write(top, "a/f", "1", 0644);
	ck_assert_int_eq(chmod(top, 0777), 0);
	int fd = open(top, O_RDONLY | O_DIRECTORY);
	struct listing *l = NULL;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(listing_read_one(fd, &l), 0);
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0); /* the caller's, still open */
	close(fd);
	ck_assert_uint_eq(l->ndirs, 1);
	ck_assert_ptr_null(listing_find(l, "a"));
	char *n = names_of(l, "");
	ck_assert_str_eq(n, "a a.b b ");
	assert_identities(l, top);
	free(n);
	listing_free(l);
	free(top);
}
END_TEST

/* Stopped, it reads no further directory: told so before it starts, it
 * lists none, and the caller reads what it needs itself; told to go on,
 * it lists as it does with no flag. */
START_TEST(test_a_stopped_listing_reads_no_further)
{
	atomic_bool stop;
	struct listing *l = NULL;

	tu_write(tmp, "a/f", "1", 0644);
	tu_write(tmp, "b/g", "2", 0644);
	int fd = open(tmp, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	atomic_init(&stop, true);
	ck_assert_int_eq(listing_read(fd, 100, &stop, &l), 0);
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(l->ndirs, 0);
	ck_assert_ptr_null(listing_find(l, ""));
	listing_free(l);
	atomic_store(&stop, false);
	ck_assert_int_eq(listing_read(fd, 100, &stop, &l), 0);
	ck_assert_uint_eq(l->ndirs, 3);
	char *n = names_of(l, "a");
	ck_assert_str_eq(n, "f ");
	free(n);
	listing_free(l);
	close(fd);
}
END_TEST

static Suite *listing_suite(void)
{
	Suite *s = suite_create("listing");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_every_directory_is_listed_in_name_order);
	tcase_add_test(tc, test_no_link_is_followed);
	tcase_add_test(tc, test_the_bound_leaves_directories_out_whole);
	tcase_add_test(tc, test_a_deep_tree_is_listed_without_recursion);
	tcase_add_test(tc, test_what_others_can_change_is_not_read);
	tcase_add_test(tc, test_one_directory_is_listed_alone_whoever_can_write_it);
	tcase_add_test(tc, test_a_stopped_listing_reads_no_further);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(listing_suite());
}
