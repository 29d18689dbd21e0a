/* Sets of paths: what is added is found, once; what is not, is not. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "pathset.h"
#include "testutil.h"

START_TEST(test_added_paths_are_found_and_others_not)
{
	struct pathset p;
	pathset_init(&p);
	ck_assert(!pathset_has(&p, ""));
	ck_assert_int_eq(pathset_add(&p, "b/c/file", 3), 0); /* "b/c" */
	ck_assert_int_eq(pathset_add(&p, "", 0), 0);
	ck_assert_int_eq(pathset_add(&p, "a", 1), 0);
	ck_assert_int_eq(pathset_add(&p, "b/c", 3), 0);
	ck_assert_int_eq(pathset_add(&p, "a", 1), 0);
	pathset_seal(&p);
	ck_assert_uint_eq(p.n, 3);
	ck_assert(pathset_has(&p, ""));
	ck_assert(pathset_has(&p, "a"));
	ck_assert(pathset_has(&p, "b/c"));
	ck_assert(!pathset_has(&p, "b"));
	ck_assert(!pathset_has(&p, "b/c/file"));
	ck_assert(!pathset_has(&p, "a/"));
	pathset_fini(&p);
	ck_assert(!pathset_has(&p, "a"));
}
END_TEST

START_TEST(test_merge_joins_two_sets)
{
	struct pathset a, b;
	pathset_init(&a);
	pathset_init(&b);
	ck_assert_int_eq(pathset_add(&a, "x", 1), 0);
	ck_assert_int_eq(pathset_add(&b, "y", 1), 0);
	ck_assert_int_eq(pathset_add(&b, "x", 1), 0);
	pathset_seal(&b);
	ck_assert_int_eq(pathset_merge(&a, &b), 0);
	pathset_seal(&a);
	ck_assert_uint_eq(a.n, 2);
	ck_assert(pathset_has(&a, "x") && pathset_has(&a, "y"));
	ck_assert(!pathset_has(&a, "z"));
	/* A set that stands for every path makes the other one so. */
	pathset_add_all(&b);
	ck_assert_int_eq(pathset_merge(&a, &b), 0);
	ck_assert(a.all && pathset_has(&a, "z"));
	pathset_fini(&a);
	pathset_fini(&b);
}
END_TEST

START_TEST(test_too_many_paths_stand_for_all)
{
	struct pathset p;
	char name[32];
	pathset_init(&p);
	for (int i = 0; i <= PATHSET_MAX; i++) {
		snprintf(name, sizeof(name), "d%05d", i);
		ck_assert_int_eq(pathset_add(&p, name, strlen(name)), 0);
	}
	pathset_seal(&p);
	ck_assert(p.all);
	ck_assert_uint_eq(p.n, 0);
	ck_assert(pathset_has(&p, "never-added"));
	/* Adding to it changes nothing. */
	ck_assert_int_eq(pathset_add(&p, "x", 1), 0);
	ck_assert_uint_eq(p.n, 0);
	pathset_fini(&p);
}
END_TEST

static Suite *pathset_suite(void)
{
	Suite *s = suite_create("pathset");
	TCase *tc = tcase_create("set");
	tcase_add_test(tc, test_added_paths_are_found_and_others_not);
	tcase_add_test(tc, test_merge_joins_two_sets);
	tcase_add_test(tc, test_too_many_paths_stand_for_all);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(pathset_suite());
}
