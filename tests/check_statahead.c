/* Stats taken ahead of a walk: what the walk takes from there is what it
 * would have found itself, only in the directory it reads, never through
 * a link, and a walk with them reads the same snapshot as one without. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "snapshot.h"
#include "statahead.h"
#include "testutil.h"

static char *tmp, *src;

static void setup(void)
{
	char rel[32];

	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	for (int d = 0; d < 4; d++)
		for (int f = 0; f < 20; f++) {
			snprintf(rel, sizeof(rel), "d%d/f%02d", d, f);
			tu_write(src, rel, rel, 0644);
		}
	tu_write(src, "top", "top", 0644);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(src);
	free(tmp);
}

static struct snapshot *walk(struct statahead *a)
{
	struct snapshot_opts o = {.statahead = a};
	struct snapshot *s = NULL;
	char *err = NULL;

	ck_assert_msg(snapshot_take(src, &o, &s, &err) == 0, "%s", err);
	snapshot_sort(s);
	return s;
}

/* The directory `path` is in, as the walk would have it open. */
static void dir_of(const char *path, struct stat *st)
{
	char *p = tu_path(src, path);
	*strrchr(p, '/') = '\0';
	ck_assert_int_eq(lstat(p, st), 0);
	free(p);
}

/* Every file but the first name (where a walk starts, and the thread
 * stops), stat'ed ahead as lstat(2) has it, and taken only in its
 * directory, by a walk that began before; never a directory, which the
 * walk stats as it opens it. */
START_TEST(test_taken_as_lstat_has_it)
{
	char rel[32];

	/* The second time past ARRAY_HUGE_MIN (160 bytes a name): the
	 * thread's stats are in a mapping of its own. */
	for (int i = 0; _i == 1 && i < 2100; i++) {
		snprintf(rel, sizeof(rel), "big/f%04d", i);
		tu_write(src, rel, rel, 0644);
	}
	struct snapshot *rec = walk(NULL);
	struct statahead *a = NULL;
	struct stat want, dir, got;
	size_t files = 0;
	int64_t began = clock_ts_ns(&rec->taken);

	ck_assert_int_eq(statahead_new(&a), 0);
	ck_assert(!statahead_take(a, rec->v[1].path, 0, 0, began, &got));
	ck_assert_int_eq(statahead_start(a, src, rec), 0);
	ck_assert_int_eq(statahead_start(a, src, rec), -EALREADY);
	/* The walk begins, at the first name: the thread stats no sooner. */
	ck_assert(!statahead_take(a, rec->v[0].path, 0, 0, began, &got));
	statahead_wait(a);
	for (size_t i = 1; i < rec->n; i++) {
		const char *path = rec->v[i].path;
		char *p = tu_path(src, path);
		ck_assert_int_eq(lstat(p, &want), 0);
		free(p);
		dir_of(path, &dir);
		if (S_ISDIR(want.st_mode)) {
			ck_assert_msg(!statahead_take(a, path, dir.st_dev,
						      dir.st_ino, began, &got),
				      "directory %s taken", path);
			continue;
		}
		files++;
		ck_assert_msg(!statahead_take(a, path, dir.st_dev,
					      dir.st_ino + 1, began, &got),
			      "%s taken in another directory", path);
		ck_assert_msg(!statahead_take(a, path, dir.st_dev, dir.st_ino,
					      INT64_MAX, &got),
			      "%s taken by a walk that began after it", path);
		ck_assert_msg(statahead_take(a, path, dir.st_dev, dir.st_ino,
					     began, &got),
			      "%s not taken", path);
		ck_assert_uint_eq(got.st_ino, want.st_ino);
		ck_assert_uint_eq(got.st_mode, want.st_mode);
		ck_assert_int_eq(got.st_size, want.st_size);
		ck_assert_int_eq(got.st_mtim.tv_nsec, want.st_mtim.tv_nsec);
	}
	ck_assert_uint_eq(statahead_used(a), files);
	ck_assert_uint_gt(files, _i == 1 ? ARRAY_HUGE_MIN / 160 : 0);
	statahead_free(a);
	snapshot_free(rec);
	statahead_free(NULL);
}
END_TEST

/* A directory made a link since the record was read is not gone
 * through: nothing below it is taken, whatever the link leads to. */
START_TEST(test_no_link_on_the_way)
{
	struct snapshot *rec = walk(NULL);
	struct statahead *a = NULL;
	struct stat dir, got;
	char *d2 = tu_path(src, "d2"), *away = tu_path(tmp, "away");

	ck_assert_int_eq(rename(d2, away), 0);
	ck_assert_int_eq(symlink("d1", d2), 0);
	ck_assert_int_eq(statahead_new(&a), 0);
	ck_assert_int_eq(statahead_start(a, src, rec), 0);
	ck_assert(!statahead_take(a, rec->v[0].path, 0, 0, 0, &got));
	statahead_wait(a);
	/* Asked with d1's identity, as a walk through the link would be. */
	char *d1 = tu_path(src, "d1");
	ck_assert_int_eq(stat(d1, &dir), 0);
	ck_assert(!statahead_take(a, "d2/f05", dir.st_dev, dir.st_ino,
				  clock_ts_ns(&rec->taken), &got));
	ck_assert_uint_eq(statahead_used(a), 0);
	statahead_free(a);
	snapshot_free(rec);
	free(d1);
	free(away);
	free(d2);
}
END_TEST

/* A walk with stats taken ahead (as many as the thread takes while it
 * runs) reads what one without does: names the record lacks, and files
 * changed since it was read, included.  A thread whose walk never
 * begins is stopped all the same. */
START_TEST(test_a_walk_with_them_reads_the_same)
{
	struct snapshot *rec = walk(NULL), *plain, *fast;
	struct statahead *a = NULL;

	tu_write(src, "d3/new", "new", 0644);
	tu_write(src, "d0/f00", "changed", 0644);
	ck_assert_int_eq(statahead_new(&a), 0);
	ck_assert_int_eq(statahead_start(a, src, rec), 0);
	fast = walk(a);
	plain = walk(NULL);
	ck_assert_uint_eq(fast->n, plain->n);
	for (size_t i = 0; i < plain->n; i++) {
		const struct snap_entry *x = &plain->v[i], *y = &fast->v[i];
		ck_assert_str_eq(x->path, y->path);
		ck_assert_uint_eq(x->ino, y->ino);
		ck_assert_uint_eq(x->size, y->size);
		ck_assert_int_eq(x->mtime_ns, y->mtime_ns);
		ck_assert_int_eq(x->ctime_ns, y->ctime_ns);
	}
	statahead_free(a);
	ck_assert_int_eq(statahead_new(&a), 0);
	ck_assert_int_eq(statahead_start(a, src, rec), 0);
	statahead_free(a);
	snapshot_free(fast);
	snapshot_free(plain);
	snapshot_free(rec);
}
END_TEST

static Suite *statahead_suite(void)
{
	Suite *s = suite_create("statahead");
	TCase *tc = tcase_create("statahead");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_taken_as_lstat_has_it, 0, 2);
	tcase_add_test(tc, test_no_link_on_the_way);
	tcase_add_test(tc, test_a_walk_with_them_reads_the_same);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(statahead_suite());
}
