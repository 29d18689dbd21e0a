/* Exclude patterns: the rules of gitignore(5) as git applies them, the
 * examples of its manual, invalid patterns, the name-only filter the
 * daemon's watch uses, and time on hostile names. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ignore.h"
#include "testutil.h"

/* A list from a NULL-terminated array of patterns, all valid. */
static struct ignore *list(const char *const *pats)
{
	struct ignore *ig = ignore_new();
	ck_assert_ptr_nonnull(ig);
	for (size_t i = 0; pats[i]; i++) {
		char *err = NULL;
		ck_assert_msg(ignore_add(ig, pats[i], &err) == 0, "%s: %s",
			      pats[i], err ? err : "?");
		ck_assert_ptr_null(err);
	}
	return ig;
}

#define LIST(...) list((const char *const[]){__VA_ARGS__, NULL})

/* Whether a walk that never enters an excluded directory leaves `path`
 * out: each directory on the way is asked about first. */
static bool walk_excludes(const struct ignore *ig, const char *path, bool dir)
{
	char *p = strdup(path);
	bool out = false;

	ck_assert_ptr_nonnull(p);
	for (char *s = strchr(p, '/'); s && !out; s = strchr(s + 1, '/')) {
		*s = '\0';
		out = ignore_match(ig, p, true);
		*s = '/';
	}
	out = out || ignore_match(ig, path, dir);
	free(p);
	return out;
}

#define EXCL(ig, path, dir)                                                  \
	ck_assert_msg(walk_excludes(ig, path, dir), "%s%s should be excluded", \
		      path, (dir) ? "/" : "")
#define KEPT(ig, path, dir)                                                  \
	ck_assert_msg(!walk_excludes(ig, path, dir), "%s%s should be kept",   \
		      path, (dir) ? "/" : "")

START_TEST(test_what_worked_before_still_does)
{
	struct ignore *ig = LIST("*.swp", "*~", ".git", "sub/file");
	EXCL(ig, "a.swp", false);
	EXCL(ig, "d/e/b.swp", false);
	EXCL(ig, "d/keep~", false);
	EXCL(ig, ".git", true);
	EXCL(ig, ".git", false);
	EXCL(ig, "x/.git", true);
	EXCL(ig, "sub/file", false);
	KEPT(ig, "x/sub/file", false);
	KEPT(ig, "a.swp.txt", false);
	ignore_free(ig);
	/* A leading dot is an ordinary character. */
	ig = LIST("*");
	EXCL(ig, ".hidden", false);
	EXCL(ig, "d", true);
	ignore_free(ig);
}
END_TEST

START_TEST(test_a_name_without_slash_matches_at_any_depth)
{
	struct ignore *ig = LIST("node_modules", "*.tmp");
	EXCL(ig, "node_modules", true);
	EXCL(ig, "a/b/node_modules", true);
	EXCL(ig, "a/node_modules", false);
	EXCL(ig, "x.tmp", false);
	EXCL(ig, "a/b/c/x.tmp", false);
	KEPT(ig, "node_modules2", true);
	KEPT(ig, "a/x.tmp.old", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_a_leading_or_middle_slash_anchors_at_the_root)
{
	struct ignore *ig = LIST("/build", "doc/frotz", "/a/*/c");
	EXCL(ig, "build", true);
	EXCL(ig, "build", false);
	KEPT(ig, "src/build", true);
	EXCL(ig, "doc/frotz", false);
	KEPT(ig, "a/doc/frotz", false);
	EXCL(ig, "a/b/c", false);
	KEPT(ig, "a/b/b/c", false);
	KEPT(ig, "x/a/b/c", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_a_trailing_slash_matches_directories_only)
{
	struct ignore *ig = LIST("cache/", "doc/frotz/", "/top/");
	EXCL(ig, "cache", true);
	EXCL(ig, "a/b/cache", true);
	KEPT(ig, "cache", false);
	KEPT(ig, "a/cache", false);
	EXCL(ig, "doc/frotz", true);
	KEPT(ig, "doc/frotz", false);
	KEPT(ig, "a/doc/frotz", true);
	EXCL(ig, "top", true);
	KEPT(ig, "a/top", true);
	/* Everything inside an excluded directory goes with it. */
	EXCL(ig, "cache/file", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_star_and_question_mark_stop_at_a_slash)
{
	struct ignore *ig = LIST("/doc/*.html", "/a?b", "/x*y");
	EXCL(ig, "doc/index.html", false);
	KEPT(ig, "doc/api/index.html", false);
	EXCL(ig, "axb", false);
	KEPT(ig, "a/b", false);
	EXCL(ig, "xy", false);
	EXCL(ig, "x-long-y", false);
	KEPT(ig, "x/y", false);
	KEPT(ig, "x/z/y", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_classes)
{
	struct ignore *ig = LIST("[abc].1", "[!abc].2", "[^abc].3", "[a-cx-z].4",
				 "[]].5", "[!]].6", "[a-].7", "[[:digit:]]*.8",
				 "[\\]x].9", "[A-\\]].10", "[[:upper:][:space:]].11");
	EXCL(ig, "b.1", false);
	KEPT(ig, "d.1", false);
	EXCL(ig, "d.2", false);
	KEPT(ig, "a.2", false);
	EXCL(ig, "d.3", false);
	KEPT(ig, "c.3", false);
	EXCL(ig, "b.4", false);
	EXCL(ig, "y.4", false);
	KEPT(ig, "m.4", false);
	EXCL(ig, "].5", false);
	EXCL(ig, "x.6", false);
	KEPT(ig, "].6", false);
	EXCL(ig, "-.7", false);
	EXCL(ig, "a.7", false);
	KEPT(ig, "b.7", false);
	EXCL(ig, "7up.8", false);
	KEPT(ig, "up.8", false);
	EXCL(ig, "].9", false);
	EXCL(ig, "x.9", false);
	KEPT(ig, "\\.9", false);
	EXCL(ig, "Z.10", false);
	EXCL(ig, "].10", false);
	KEPT(ig, "^.10", false);
	EXCL(ig, "Q.11", false);
	EXCL(ig, " .11", false);
	KEPT(ig, "q.11", false);
	ignore_free(ig);
	/* A range ends at the byte after '-', even a '[' that starts a
	 * "[:class:]": as git reads it, the set is 'a' and '4' to '[', the
	 * first ']' closes it and the second is a plain ']'. */
	ig = LIST("[a4-[:space:]]");
	EXCL(ig, "4]", false);
	EXCL(ig, "Z]", false);
	EXCL(ig, "s]", false);
	KEPT(ig, "4", false);
	KEPT(ig, "a", false);
	KEPT(ig, " ]", false);
	KEPT(ig, "3]", false);
	ignore_free(ig);
	/* No class matches '/', negated or not. */
	ig = LIST("/a[!x]b", "/c[+-0]d");
	KEPT(ig, "a/b", false);
	EXCL(ig, "ayb", false);
	KEPT(ig, "c/d", false);
	EXCL(ig, "c.d", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_a_backslash_escapes)
{
	struct ignore *ig = LIST("\\*", "\\?x", "\\[a]", "\\!keep", "\\#tag",
				 "sp\\ ace", "back\\\\slash");
	EXCL(ig, "*", false);
	KEPT(ig, "a", false);
	EXCL(ig, "?x", false);
	KEPT(ig, "ax", false);
	EXCL(ig, "[a]", false);
	KEPT(ig, "a", false);
	EXCL(ig, "!keep", false);
	KEPT(ig, "keep", false);
	EXCL(ig, "#tag", false);
	EXCL(ig, "sp ace", false);
	EXCL(ig, "back\\slash", false);
	ignore_free(ig);
}
END_TEST

/* Trailing spaces are dropped, as gitignore drops them (a line pasted
 * from a .gitignore, or --exclude 'foo '), unless a backslash escapes
 * the last one. */
START_TEST(test_trailing_spaces_are_dropped_unless_escaped)
{
	struct ignore *ig = LIST("plain  ", "kept\\ ", "both\\\\ ");
	EXCL(ig, "plain", false);
	KEPT(ig, "plain ", false);
	EXCL(ig, "kept ", false);
	KEPT(ig, "kept", false);
	EXCL(ig, "both\\", false);
	KEPT(ig, "both\\ ", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_two_stars)
{
	struct ignore *ig = LIST("**/foo", "**/bar/baz", "abc/**", "a/**/b",
				 "x**y");
	EXCL(ig, "foo", false);
	EXCL(ig, "p/q/foo", true);
	EXCL(ig, "bar/baz", false);
	EXCL(ig, "p/bar/baz", false);
	KEPT(ig, "bar/p/baz", false);
	/* Everything inside, not the directory itself. */
	KEPT(ig, "abc", true);
	KEPT(ig, "abc", false);
	EXCL(ig, "abc/f", false);
	EXCL(ig, "abc/d", true);
	ck_assert(ignore_match(ig, "abc/d/e/f", false));
	KEPT(ig, "p/abc/f", false);
	/* Zero or more directories. */
	EXCL(ig, "a/b", false);
	EXCL(ig, "a/x/b", false);
	EXCL(ig, "a/x/y/b", false);
	KEPT(ig, "a/xb", false);
	KEPT(ig, "p/a/b", false);
	/* Other runs of stars are one star. */
	EXCL(ig, "x-y", false);
	EXCL(ig, "p/xy", false);
	ignore_free(ig);
	ig = LIST("/x**y");
	KEPT(ig, "x/y", false);
	ignore_free(ig);
	ig = LIST("**");
	EXCL(ig, "anything", false);
	ignore_free(ig);
	ig = LIST("/**");
	EXCL(ig, "a", false);
	ck_assert(ignore_match(ig, "a/b/c", false));
	ignore_free(ig);
}
END_TEST

START_TEST(test_the_last_match_wins_and_bang_reincludes)
{
	struct ignore *ig = LIST("*.tmp", "!keep.tmp");
	EXCL(ig, "x.tmp", false);
	KEPT(ig, "keep.tmp", false);
	KEPT(ig, "d/keep.tmp", false);
	ignore_free(ig);
	ig = LIST("!keep.tmp", "*.tmp");
	EXCL(ig, "keep.tmp", false);
	ignore_free(ig);
	/* Nothing inside an excluded directory comes back. */
	ig = LIST("build/", "!build/keep");
	EXCL(ig, "build/keep", false);
	ck_assert(!ignore_match(ig, "build/keep", false));
	ignore_free(ig);
}
END_TEST

/* The examples of gitignore(5), one by one. */
START_TEST(test_the_examples_of_the_gitignore_manual)
{
	struct ignore *ig = LIST("hello.*");
	EXCL(ig, "hello.c", false);
	EXCL(ig, "a/hello.d", true);
	KEPT(ig, "hello", false);
	ignore_free(ig);

	ig = LIST("foo/");
	EXCL(ig, "foo", true);
	EXCL(ig, "foo/bar", false);
	KEPT(ig, "foo", false); /* a regular file or a symlink */
	ignore_free(ig);

	ig = LIST("doc/frotz/");
	EXCL(ig, "doc/frotz", true);
	KEPT(ig, "a/doc/frotz", true);
	ignore_free(ig);
	ig = LIST("frotz/");
	EXCL(ig, "frotz", true);
	EXCL(ig, "a/frotz", true);
	ignore_free(ig);

	/* doc/frotz and /doc/frotz have the same effect. */
	const char *pats[] = {"doc/frotz", "/doc/frotz"};
	for (size_t i = 0; i < 2; i++) {
		ig = list((const char *const[]){pats[i], NULL});
		EXCL(ig, "doc/frotz", false);
		KEPT(ig, "a/doc/frotz", false);
		ignore_free(ig);
	}

	ig = LIST("foo/*");
	EXCL(ig, "foo/test.json", false);
	EXCL(ig, "foo/bar", true);
	ck_assert(!ignore_match(ig, "foo/bar/hello.c", false));
	ignore_free(ig);

	ig = LIST("**/foo/bar");
	EXCL(ig, "foo/bar", false);
	EXCL(ig, "x/y/foo/bar", true);
	ignore_free(ig);

	/* Exclude everything except directory foo/bar. */
	ig = LIST("/*", "!/foo", "/foo/*", "!/foo/bar");
	EXCL(ig, "x", false);
	EXCL(ig, "y", true);
	KEPT(ig, "foo", true);
	EXCL(ig, "foo/baz", false);
	KEPT(ig, "foo/bar", true);
	KEPT(ig, "foo/bar/deep/file", false);
	ignore_free(ig);

	/* A literal leading "!" or "#". */
	ig = LIST("\\!important!.txt", "\\#notes");
	EXCL(ig, "!important!.txt", false);
	EXCL(ig, "#notes", false);
	ignore_free(ig);
}
END_TEST

START_TEST(test_invalid_patterns_are_refused_with_the_reason)
{
	static const struct {
		const char *pat, *why;
	} bad[] = {
		{"", "empty"},
		{"   ", "empty"},
		{"!", "empty"},
		{"/", "empty"},
		{"!/", "empty"},
		{"//", "empty"},
		{"a//b", "empty path component"},
		{"foo[", "without a closing ']'"},
		{"[", "without a closing ']'"},
		{"[!", "without a closing ']'"},
		{"[]", "without a closing ']'"},
		{"[a\\", "without a closing ']'"},
		{"[[:alpha:]", "without a closing ']'"},
		{"foo\\", "trailing backslash"},
		{"#comment", "comment"},
		{"[z-a]", "backwards"},
		{"[[:nope:]]", "unknown character class"},
		{"[[::]]", "unknown character class"},
		{"a[/]b", "'/' inside"},
		{"[.-/]", "'/' inside"},
	};
	struct ignore *ig = ignore_new();

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char *err = NULL;
		ck_assert_int_eq(ignore_check(bad[i].pat, &err), -EINVAL);
		ck_assert_ptr_nonnull(err);
		ck_assert_msg(strstr(err, bad[i].why) != NULL, "%s: %s",
			      bad[i].pat, err);
		ck_assert_msg(strchr(err, '\n') == NULL, "%s", err);
		char *quoted;
		ck_assert_int_ge(asprintf(&quoted, "'%s'", bad[i].pat), 0);
		ck_assert_msg(strncmp(err, quoted, strlen(quoted)) == 0, "%s",
			      err);
		free(quoted);
		free(err);
		err = NULL;
		ck_assert_int_eq(ignore_add(ig, bad[i].pat, &err), -EINVAL);
		ck_assert_ptr_nonnull(err);
		free(err);
	}
	ck_assert_uint_eq(ignore_count(ig), 0);
	ck_assert_int_eq(ignore_check("[[:x]", NULL), 0); /* no ":]": '[' */
	ignore_free(ig);
}
END_TEST

START_TEST(test_no_list_excludes_nothing)
{
	struct ignore *ig = ignore_new();
	ck_assert(!ignore_match(NULL, "a", false));
	ck_assert(!ignore_match(ig, "a", true));
	ck_assert(!ignore_name_excluded(NULL, "a"));
	ck_assert(!ignore_name_excluded(ig, "a"));
	ck_assert_uint_eq(ignore_count(NULL), 0);
	ignore_free(ig);
	ignore_free(NULL);
}
END_TEST

START_TEST(test_the_name_filter_drops_only_what_is_excluded_everywhere)
{
	struct ignore *ig = LIST("*.tmp", "**/cache", ".git", "build/", "/top",
				 "sub/x", "abc/**");
	ck_assert(ignore_name_excluded(ig, "a.tmp"));
	ck_assert(ignore_name_excluded(ig, "cache"));
	ck_assert(ignore_name_excluded(ig, ".git"));
	/* A file named build is not excluded; top and x only in one place;
	 * abc itself not at all. */
	ck_assert(!ignore_name_excluded(ig, "build"));
	ck_assert(!ignore_name_excluded(ig, "top"));
	ck_assert(!ignore_name_excluded(ig, "x"));
	ck_assert(!ignore_name_excluded(ig, "abc"));
	ck_assert(!ignore_name_excluded(ig, "other"));
	ck_assert(!ignore_name_excluded(ig, "d/a.tmp"));
	ignore_free(ig);
	/* Any "!" may bring a name back somewhere. */
	ig = LIST("*.tmp", "!keep.tmp");
	ck_assert(!ignore_name_excluded(ig, "a.tmp"));
	ck_assert(!ignore_name_excluded(ig, "keep.tmp"));
	ignore_free(ig);
}
END_TEST

/* Names come from whoever writes the source: many stars against long
 * near-misses must not backtrack exponentially. */
START_TEST(test_hostile_names_take_linear_time)
{
	struct ignore *ig = LIST(
		"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
		"/*a*a*a*/**/a*a*a*/**/a*a*a*/**/a*a*a*/**/*b",
		"**/a/**/a/**/a/**/a/**/a/**/a/**/b/**",
		"[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*c");
	char name[256], *path = malloc(8192);

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	/* 1,000 directories "a" and "aaaaaaa" in turn, then the name. */
	size_t n = 0;
	for (int i = 0; i < 1000; i++) {
		const char *c = i % 2 ? "aaaaaaa/" : "a/";
		memcpy(path + n, c, strlen(c));
		n += strlen(c);
	}
	memcpy(path + n, name, sizeof(name));
	long long t0 = tu_now_ms();
	for (int i = 0; i < 20; i++) {
		ck_assert(!ignore_match(ig, name, false));
		ck_assert(!ignore_match(ig, path, false));
		ck_assert(!ignore_match(ig, path, true));
		ck_assert(!ignore_name_excluded(ig, name));
	}
	long long took = tu_now_ms() - t0;
	/* Linear: a few milliseconds; exponential: never. */
	ck_assert_msg(took < tu_scale(2000), "took %lld ms", took);
	ignore_free(ig);
	free(path);
}
END_TEST

static Suite *ignore_suite(void)
{
	Suite *s = suite_create("ignore");
	TCase *tc = tcase_create("rules");
	tcase_add_test(tc, test_what_worked_before_still_does);
	tcase_add_test(tc, test_a_name_without_slash_matches_at_any_depth);
	tcase_add_test(tc, test_a_leading_or_middle_slash_anchors_at_the_root);
	tcase_add_test(tc, test_a_trailing_slash_matches_directories_only);
	tcase_add_test(tc, test_star_and_question_mark_stop_at_a_slash);
	tcase_add_test(tc, test_classes);
	tcase_add_test(tc, test_a_backslash_escapes);
	tcase_add_test(tc, test_trailing_spaces_are_dropped_unless_escaped);
	tcase_add_test(tc, test_two_stars);
	tcase_add_test(tc, test_the_last_match_wins_and_bang_reincludes);
	tcase_add_test(tc, test_the_examples_of_the_gitignore_manual);
	tcase_add_test(tc, test_invalid_patterns_are_refused_with_the_reason);
	tcase_add_test(tc, test_no_list_excludes_nothing);
	tcase_add_test(tc, test_the_name_filter_drops_only_what_is_excluded_everywhere);
	tcase_add_test(tc, test_hostile_names_take_linear_time);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(ignore_suite());
}
