/* The watches of a source, against a real libuv loop and real
 * directories: a budget shared by every watch, the root and the levels
 * nearest it first, watches given back when a watch closes. */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "testutil.h"
#include "watch.h"

static char *tmp;
static uv_loop_t loop;

/* What the callback saw: the names of the entries events named. */
struct seen {
	char names[16][64];
	int n;
};

static void setup(void)
{
	tmp = tu_mkdtemp();
	ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static void closed(void *data)
{
	(*(int *)data)++;
}

static void teardown(void)
{
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	tu_rmrf(tmp);
	free(tmp);
}

static void on_change(void *data, const char *dir, const char *name,
		      int root)
{
	struct seen *s = data;

	(void)root;
	(void)dir;
	if (name && s->n < 16)
		snprintf(s->names[s->n++], sizeof(s->names[0]), "%s", name);
}

/* root/{a,b,c}/{x,y}: ten directories with the root, as a snapshot lists
 * them (in walk order, with the root listed twice). */
static char *make_tree(const char *name, struct snap_dir *dirs, size_t *n)
{
	static const char *rel[] = {"", "a", "a/x", "a/y", "b", "b/x", "b/y",
				    "c", "c/x", "c/y", ""};
	char *root = tu_path(tmp, name);

	*n = 0;
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		char *p = tu_path(root, rel[i]);
		struct stat st;
		tu_mkdirs(p, 0755);
		ck_assert_int_eq(stat(p, &st), 0);
		dirs[(*n)++] = (struct snap_dir){(char *)rel[i], st.st_dev,
						 st.st_ino};
		free(p);
	}
	return root;
}

static bool saw(const struct seen *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return true;
	return false;
}

/* Runs the loop until an event names `name` (a deadline of 5 s). */
static void run_until(struct seen *s, const char *name)
{
	long long end = tu_now_ms() + tu_scale(5000);
	while (!saw(s, name) && tu_now_ms() < end) {
		uv_run(&loop, UV_RUN_NOWAIT);
		tu_nap(5);
	}
	ck_assert_msg(saw(s, name), "no event named %s", name);
}

static void close_and_wait(struct watch *w)
{
	int done = 0;
	watch_close(w, closed, &done);
	while (!done)
		uv_run(&loop, UV_RUN_ONCE);
}

/* A directory the read listed that is a symlink by the time its watch
 * starts (swapped by whoever owns its parent, to /root say), or another
 * directory, is not watched: root watches only what it read. */
START_TEST(test_a_directory_swapped_after_the_read_is_not_watched)
{
	struct snap_dir dirs[16];
	size_t n;
	char *root = make_tree("src", dirs, &n);
	char *outside = tu_path(tmp, "outside"), *a = tu_path(root, "a");
	char *aside = tu_path(tmp, "a.moved"), *b = tu_path(root, "b");
	struct watch *w = NULL;
	struct seen seen = {0};
	struct watch_result r;

	tu_mkdirs(outside, 0755);
	ck_assert_int_eq(rename(a, aside), 0);
	ck_assert_int_eq(symlink(outside, a), 0);
	/* b: another directory of the same name. */
	char *bside = tu_path(tmp, "b.moved");
	ck_assert_int_eq(rename(b, bside), 0);
	tu_mkdirs(b, 0755);
	ck_assert_int_eq(watch_new(&loop, root, NULL, on_change, &seen, &w), 0);
	ck_assert_int_eq(watch_update(w, dirs, n, &r), 0);
	/* Of ten: a and b, and a/x, a/y, b/x, b/y, gone with them. */
	ck_assert_uint_eq(r.added, 4);
	tu_write(outside, "through-the-link", "1", 0644);
	tu_write(b, "in-the-new-b", "1", 0644);
	tu_write(root, "top", "1", 0644);
	run_until(&seen, "top");
	ck_assert(!saw(&seen, "through-the-link"));
	ck_assert(!saw(&seen, "in-the-new-b"));
	close_and_wait(w);
	free(bside);
	free(b);
	free(aside);
	free(a);
	free(outside);
	free(root);
}
END_TEST

/* The directories come in any order, some more than once: each is
 * watched once, and the same set in another order changes nothing
 * ("a.b" sorts before "a/b" by bytes, after it in a read; watches are
 * started by depth, "b" before "a/b"). */
START_TEST(test_directories_in_any_order_are_watched_once)
{
	static const char *rel[] = {"", "a", "a/b", "a/b/c", "a.b", "b"};
	struct snap_dir read[6], bytes[7], back[6];
	char *root = tu_path(tmp, "src");
	struct watch *w = NULL;
	struct seen seen = {0};
	struct watch_result r;

	for (size_t i = 0; i < 6; i++) {
		char *p = tu_path(root, rel[i]);
		struct stat st;
		tu_mkdirs(p, 0755);
		ck_assert_int_eq(stat(p, &st), 0);
		read[i] = (struct snap_dir){(char *)rel[i], st.st_dev,
					    st.st_ino};
		back[5 - i] = read[i];
		free(p);
	}
	/* In byte order, "a" twice. */
	size_t order[7] = {0, 1, 1, 4, 2, 3, 5};
	for (size_t i = 0; i < 7; i++)
		bytes[i] = read[order[i]];
	ck_assert_int_eq(watch_new(&loop, root, NULL, on_change, &seen, &w), 0);
	ck_assert_int_eq(watch_update(w, read, 6, &r), 0);
	ck_assert_uint_eq(r.added, 6);
	ck_assert_uint_eq(watch_count(w), 6);
	ck_assert_int_eq(watch_update(w, bytes, 7, &r), 0);
	ck_assert_uint_eq(r.wanted, 6);
	ck_assert_uint_eq(r.added, 0);
	ck_assert_int_eq(watch_update(w, back, 6, &r), 0);
	ck_assert_uint_eq(r.added, 0);
	ck_assert_uint_eq(watch_count(w), 6);
	tu_write(root, "a/b/c/deep", "1", 0644);
	tu_write(root, "a.b/beside", "1", 0644);
	run_until(&seen, "beside");
	run_until(&seen, "deep");
	close_and_wait(w);
	free(root);
}
END_TEST

START_TEST(test_budget_watches_the_root_then_the_nearest_levels)
{
	struct snap_dir dirs[16];
	size_t n;
	char *root = make_tree("src", dirs, &n);
	/* The directories on the way to the root, the root, and a, b and
	 * c. */
	size_t way = (size_t)tu_way_len(root);
	struct watch_budget *b = watch_budget_new(way + 4);
	struct watch *w = NULL;
	struct seen seen = {0};
	struct watch_result r;

	ck_assert_int_eq(watch_new(&loop, root, b, on_change, &seen, &w), 0);
	ck_assert_uint_eq(watch_budget_used(b), way);
	ck_assert_int_eq(watch_update(w, dirs, n, &r), 0);
	ck_assert_uint_eq(r.wanted, 10);
	ck_assert(r.capped);
	ck_assert_uint_eq(r.added, 4);
	ck_assert_uint_eq(watch_count(w), 4);
	ck_assert_uint_eq(watch_budget_used(b), way + 4);
	/* Events come in order on one inotify descriptor: one from c/y
	 * would come before the one from b. */
	tu_write(root, "c/y/deep", "1", 0644);
	tu_write(root, "b/shallow", "1", 0644);
	tu_write(root, "top", "1", 0644);
	run_until(&seen, "top");
	ck_assert_str_eq(seen.names[0], "shallow");
	ck_assert(!saw(&seen, "deep"));
	/* The same again changes nothing. */
	ck_assert_int_eq(watch_update(w, dirs, n, &r), 0);
	ck_assert_uint_eq(r.added, 0);
	ck_assert_uint_eq(watch_budget_used(b), way + 4);
	close_and_wait(w);
	ck_assert_uint_eq(watch_budget_used(b), 0);
	watch_budget_free(b);
	free(root);
}
END_TEST

START_TEST(test_a_level_that_fits_in_part_goes_in_path_order)
{
	struct snap_dir dirs[16];
	size_t n;
	char *root = make_tree("src", dirs, &n);
	size_t way = (size_t)tu_way_len(root);
	struct watch_budget *b = watch_budget_new(way + 3);
	struct watch *w = NULL;
	struct seen seen = {0};
	struct watch_result r;

	ck_assert_int_eq(watch_new(&loop, root, b, on_change, &seen, &w), 0);
	ck_assert_int_eq(watch_update(w, dirs, n, &r), 0);
	ck_assert(r.capped);
	ck_assert_uint_eq(watch_count(w), 3); /* the root, a and b */
	tu_write(root, "c/not-seen", "1", 0644);
	tu_write(root, "a/x/not-seen", "1", 0644);
	tu_write(root, "b/seen", "1", 0644);
	run_until(&seen, "seen");
	ck_assert(!saw(&seen, "not-seen"));
	/* A budget raised takes effect at the next update. */
	watch_budget_set_max(b, 100);
	ck_assert_int_eq(watch_update(w, dirs, n, &r), 0);
	ck_assert(!r.capped);
	ck_assert_uint_eq(r.added, 7);
	ck_assert_uint_eq(watch_count(w), 10);
	ck_assert_uint_eq(watch_budget_used(b), way + 10);
	/* And one lowered: the deepest go first. */
	watch_budget_set_max(b, way + 1);
	ck_assert_int_eq(watch_update(w, dirs, n, &r), 0);
	ck_assert(r.capped);
	ck_assert_uint_eq(watch_count(w), 1);
	ck_assert_uint_eq(watch_budget_used(b), way + 1);
	close_and_wait(w);
	watch_budget_free(b);
	free(root);
}
END_TEST

START_TEST(test_budget_is_shared_and_given_back)
{
	struct snap_dir d1[16], d2[16];
	size_t n1, n2;
	char *r1 = make_tree("one", d1, &n1), *r2 = make_tree("two", d2, &n2);
	size_t way = (size_t)tu_way_len(r1);
	struct watch_budget *b = watch_budget_new(2 * way + 13);
	struct watch *w1 = NULL, *w2 = NULL;
	struct seen s1 = {0}, s2 = {0};
	struct watch_result r;

	ck_assert_int_eq(watch_new(&loop, r1, b, on_change, &s1, &w1), 0);
	ck_assert_int_eq(watch_new(&loop, r2, b, on_change, &s2, &w2), 0);
	ck_assert_int_eq(watch_update(w1, d1, n1, &r), 0);
	ck_assert(!r.capped);
	ck_assert_uint_eq(watch_count(w1), 10);
	/* The two ways to the roots and ten leave three for the second. */
	ck_assert_int_eq(watch_update(w2, d2, n2, &r), 0);
	ck_assert(r.capped);
	ck_assert_uint_eq(watch_count(w2), 3);
	ck_assert_uint_eq(watch_budget_used(b), 2 * way + 13);
	/* The first one's watches come back when it closes. */
	close_and_wait(w1);
	ck_assert_uint_eq(watch_budget_used(b), way + 3);
	ck_assert_int_eq(watch_update(w2, d2, n2, &r), 0);
	ck_assert(!r.capped);
	ck_assert_uint_eq(r.added, 7);
	ck_assert_uint_eq(watch_count(w2), 10);
	ck_assert_uint_eq(watch_budget_used(b), way + 10);
	close_and_wait(w2);
	ck_assert_uint_eq(watch_budget_used(b), 0);
	watch_budget_free(b);
	free(r1);
	free(r2);
}
END_TEST

START_TEST(test_way_to_the_root_is_watched_past_the_budget)
{
	struct snap_dir dirs[16];
	size_t n;
	char *root = make_tree("src", dirs, &n);
	size_t way = (size_t)tu_way_len(root);
	struct watch_budget *b = watch_budget_new(1);
	struct watch *w1 = NULL, *w2 = NULL;
	struct seen seen = {0};
	struct watch_result r;

	ck_assert_int_eq(watch_new(&loop, root, b, on_change, &seen, &w1), 0);
	ck_assert_int_eq(watch_new(&loop, root, b, on_change, &seen, &w2), 0);
	ck_assert_uint_eq(watch_budget_used(b), 2 * way);
	ck_assert_int_eq(watch_update(w2, dirs, n, &r), 0);
	ck_assert(r.capped);
	ck_assert_uint_eq(watch_count(w2), 0);
	ck_assert_uint_eq(watch_budget_used(b), 2 * way);
	close_and_wait(w1);
	close_and_wait(w2);
	ck_assert_uint_eq(watch_budget_used(b), 0);
	watch_budget_free(b);
	free(root);
}
END_TEST

/* A symbolic link on the way to the root swapped for one to another
 * directory (a release deployed as current -> rel2) is told as an event
 * on the root, and the way is looked up again: a directory on the new
 * way renamed is told too, one only on the old way no more. */
START_TEST(test_a_link_swapped_on_the_way_is_seen)
{
	char *r1 = tu_path(tmp, "rel1"), *r2 = tu_path(tmp, "rel2");
	char *cur = tu_path(tmp, "current"), *next = tu_path(tmp, "next");
	char *root = tu_path(cur, "src"), *gone = tu_path(tmp, "gone");
	tu_write(r1, "src/f", "1", 0644);
	tu_write(r2, "src/f", "1", 0644);
	ck_assert_int_eq(symlink("rel1", cur), 0);
	struct watch *w = NULL;
	struct seen seen = {0};

	ck_assert_int_eq(watch_new(&loop, root, NULL, on_change, &seen, &w), 0);
	ck_assert_int_eq(symlink("rel2", next), 0);
	ck_assert_int_eq(rename(next, cur), 0);
	run_until(&seen, "current");
	ck_assert_int_eq(rename(r1, gone), 0);
	ck_assert_int_eq(rename(r2, r1), 0);
	run_until(&seen, "rel2");
	ck_assert(!saw(&seen, "gone"));
	ck_assert(!saw(&seen, "rel1"));
	close_and_wait(w);
	free(gone);
	free(root);
	free(next);
	free(cur);
	free(r2);
	free(r1);
}
END_TEST

/* Watches the way to `root` alone and says how many watches it took. */
static size_t way_watches(const char *root)
{
	struct watch_budget *b = watch_budget_new(1);
	struct watch *w = NULL;
	struct seen seen = {0};

	ck_assert_int_eq(watch_new(&loop, root, b, on_change, &seen, &w), 0);
	size_t used = watch_budget_used(b);
	close_and_wait(w);
	watch_budget_free(b);
	return used;
}

/* Another user's link on the way, or any link in a directory another
 * user can change, is not followed (a read refuses it): nobody else can
 * lead the way anywhere or make root watch a chain of their own.  A way
 * of root's own is watched to WATCH_MAX_HOPS directories at most. */
START_TEST(test_the_way_follows_no_link_another_user_controls)
{
	ck_assert_msg(tu_can_setuid(),
		      "this test gives a link to another user: run it as root");
	const unsigned atk = 2009;
	char *theirs = tu_path(tmp, "theirs"), *cur = tu_path(theirs, "cur");
	char *root = tu_path(cur, "src");
	tu_mkdirs(theirs, 0755);
	tu_mkdeep(theirs, "d", 50);
	char target[128] = "d";
	for (int i = 1; i < 50; i++)
		strcat(target, "/d");
	ck_assert_int_eq(symlink(target, cur), 0);
	/* Up to and with `theirs`, where "cur" is looked up. */
	size_t up_to = (size_t)tu_way_len(cur);
	ck_assert_uint_eq(way_watches(root), up_to + 50); /* root's own */
	ck_assert_int_eq(lchown(cur, atk, 100), 0);
	ck_assert_uint_eq(way_watches(root), up_to);
	ck_assert_int_eq(lchown(cur, 0, 0), 0);
	ck_assert_int_eq(chown(theirs, atk, 100), 0);
	ck_assert_uint_eq(way_watches(root), up_to);
	ck_assert_int_eq(chown(theirs, 0, 0), 0);
	ck_assert_int_eq(chmod(theirs, 0777), 0);
	ck_assert_uint_eq(way_watches(root), up_to);
	ck_assert_int_eq(chmod(theirs, 01777), 0); /* sticky: as /tmp */
	ck_assert_uint_eq(way_watches(root), up_to + 50);
	/* 300 directories deep, root's own. */
	char *deep = tu_path(tmp, "deep");
	tu_mkdirs(deep, 0755);
	tu_mkdeep(deep, "d", 300);
	char *far = malloc(strlen(deep) + 2 * 300 + 8);
	ck_assert_ptr_nonnull(far);
	strcpy(far, deep);
	for (int i = 0; i < 300; i++)
		strcat(far, "/d");
	strcat(far, "/src");
	ck_assert_uint_eq(way_watches(far), 256);
	free(far);
	free(deep);
	free(root);
	free(cur);
	free(theirs);
}
END_TEST

START_TEST(test_default_is_half_the_kernel_limit)
{
	bool kernel = false;
	size_t max = watch_default_max(&kernel);
	char *text = tu_read("/proc/sys/fs/inotify/max_user_watches", NULL);

	if (text == NULL) {
		ck_assert(!kernel);
		ck_assert_uint_eq(max, WATCH_DEFAULT_MAX);
		return;
	}
	ck_assert(kernel);
	unsigned long long v = strtoull(text, NULL, 10);
	ck_assert_uint_eq(max, v / 2 ? v / 2 : 1);
	free(text);
}
END_TEST

static Suite *watch_suite(void)
{
	Suite *s = suite_create("watch");
	TCase *tc = tcase_create("budget");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30); /* past run_until()'s deadline */
	tcase_add_test(tc, test_a_directory_swapped_after_the_read_is_not_watched);
	tcase_add_test(tc, test_directories_in_any_order_are_watched_once);
	tcase_add_test(tc, test_budget_watches_the_root_then_the_nearest_levels);
	tcase_add_test(tc, test_a_level_that_fits_in_part_goes_in_path_order);
	tcase_add_test(tc, test_budget_is_shared_and_given_back);
	tcase_add_test(tc, test_way_to_the_root_is_watched_past_the_budget);
	tcase_add_test(tc, test_a_link_swapped_on_the_way_is_seen);
	tcase_add_test(tc, test_the_way_follows_no_link_another_user_controls);
	tcase_add_test(tc, test_default_is_half_the_kernel_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(watch_suite());
}
