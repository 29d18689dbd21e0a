/* The state file: exact round trips, and refusal of anything damaged. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot.h"
#include "state.h"
#include "testutil.h"

static char *tmp;
static int dfd;

static void setup(void)
{
	tmp = tu_mkdtemp();
	dfd = open(tmp, O_RDONLY | O_DIRECTORY);
}

static void teardown(void)
{
	close(dfd);
	tu_rmrf(tmp);
	free(tmp);
}

START_TEST(test_escape_round_trip)
{
	const char *cases[] = {"plain", "with space", "new\nline", "back\\slash",
			       "\xff\xfe\x80", "\x7f", "tab\t", "caf\xc3\xa9", ""};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = state_escape(cases[i]), *u = NULL;
		ck_assert_ptr_null(strpbrk(e, " \n\t"));
		ck_assert_int_eq(state_unescape(e, &u), 0);
		ck_assert_str_eq(u, cases[i]);
		free(e);
		free(u);
	}
	char *u = NULL;
	ck_assert_int_eq(state_unescape("bad\\q", &u), -EINVAL);
	ck_assert_int_eq(state_unescape("bad\\x0", &u), -EINVAL);
	ck_assert_int_eq(state_unescape("nul\\x00", &u), -EINVAL);
}
END_TEST

static struct snapshot *sample(void)
{
	struct snapshot *s = NULL;
	ck_assert_int_eq(snapshot_open(NULL, &s, NULL), 0);
	s->taken.tv_sec = 1764086645;
	s->taken.tv_nsec = 123456789;
	struct snap_entry d = {.path = "dir", .type = SNAP_DIR, .mode = 0750,
			       .uid = SNAP_NO_ID, .gid = 33, .ino = 7, .dev = 9};
	struct snap_entry f = {.path = "dir/new\nline \xff", .type = SNAP_FILE,
			       .mode = 0400, .uid = 0, .gid = SNAP_NO_ID,
			       .size = 1ull << 40, .dev = 2049, .ino = 1234567};
	f.mtime.tv_sec = -86400 * 365; /* before 1970 */
	f.mtime.tv_nsec = 1;
	f.ctime.tv_sec = 1700000001;
	f.ctime.tv_nsec = 999999999;
	ck_assert_int_eq(snapshot_add(s, &d), 0);
	ck_assert_int_eq(snapshot_add(s, &f), 0);
	return s;
}

START_TEST(test_save_load_round_trip)
{
	struct snapshot *s = sample(), *l = NULL;
	char *gen = NULL;
	bool sound = false;
	ck_assert_int_eq(state_save(dfd, s, "..2026_11_25_16_04_05.1", true), 0);
	ck_assert_int_eq(state_load(dfd, &l, &gen, &sound), 0);
	ck_assert(sound);
	ck_assert_str_eq(gen, "..2026_11_25_16_04_05.1");
	ck_assert_int_eq(l->taken.tv_sec, s->taken.tv_sec);
	ck_assert_int_eq(l->taken.tv_nsec, s->taken.tv_nsec);
	ck_assert_uint_eq(l->n, 2);
	for (size_t i = 0; i < 2; i++) {
		const struct snap_entry *a = &s->v[i], *b = &l->v[i];
		ck_assert_str_eq(a->path, b->path);
		ck_assert_int_eq(a->type, b->type);
		ck_assert_uint_eq(a->mode, b->mode);
		ck_assert_uint_eq(a->uid, b->uid);
		ck_assert_uint_eq(a->gid, b->gid);
		ck_assert_uint_eq(a->size, b->size);
		ck_assert_uint_eq(a->dev, b->dev);
		ck_assert_uint_eq(a->ino, b->ino);
		ck_assert_int_eq(a->mtime.tv_sec, b->mtime.tv_sec);
		ck_assert_int_eq(a->mtime.tv_nsec, b->mtime.tv_nsec);
		ck_assert_int_eq(a->ctime.tv_sec, b->ctime.tv_sec);
		ck_assert_int_eq(a->ctime.tv_nsec, b->ctime.tv_nsec);
	}
	/* No temp file is left behind. */
	ck_assert_int_eq(faccessat(dfd, STATE_TMP, F_OK, 0), -1);
	snapshot_free(s);
	snapshot_free(l);
	free(gen);
}
END_TEST

static int load_text(const char *text)
{
	tu_write(tmp, STATE_FILE, text, 0644);
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	int rc = state_load(dfd, &l, &gen, &sound);
	snapshot_free(l);
	free(gen);
	return rc;
}

START_TEST(test_damaged_state_is_refused)
{
	struct snapshot *s = sample();
	ck_assert_int_eq(state_save(dfd, s, "..g", true), 0);
	snapshot_free(s);
	char *p = tu_path(tmp, STATE_FILE);
	size_t len = 0;
	char *good = tu_read(p, &len);
	free(p);

	/* Every truncation of a good file is refused. */
	for (size_t cut = 0; cut < len; cut++) {
		char *t = strndup(good, cut);
		ck_assert_msg(load_text(t) == -EINVAL, "truncated at %zu", cut);
		free(t);
	}
	ck_assert_int_eq(load_text(good), 0);
	ck_assert_int_eq(load_text("atomsync-state 1\n"), -EINVAL);
	/* Well formed but one defect each: */
	ck_assert_int_eq(load_text("atomsync-state 2\ngeneration ..g\nrecorded 1 2\n"
				   "flushed 1 x\nentries 1\nF 644 0 0 1 1 1 1 1 1 1 a\nend\n"),
			 0);
	ck_assert_int_eq(load_text("atomsync-state 2\ngeneration ..g\nrecorded 1 2\n"
				   "flushed 2 x\nentries 1\nF 644 0 0 1 1 1 1 1 1 1 a\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 2\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 2\nF 644 0 0 1 1 1 1 1 1 1 b\n"
				   "F 644 0 0 1 1 1 1 1 1 1 a\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 2\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 1\nX 644 0 0 1 1 1 1 1 1 1 a\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 2\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 1\nF 644 0 0 1 1 1 1 1 1 1 a\nend\ntrailing\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 2\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 1\nF 644 0 0 1 1 1 1 1 1 1 a b\nend\n"),
			 -EINVAL);
	/* Numbers: the largest of 64 bits is read, one more is refused, and
	 * so are a digit outside the base, a sign and an empty field. */
	const char *head = "atomsync-state 2\ngeneration ..g\nrecorded 1 2\n"
			   "flushed 1 x\nentries 1\n";
	const struct {
		const char *entry;
		int rc;
	} nums[] = {
		{"F 644 0 0 1 1 1 1 1 18446744073709551615 "
		 "00000000000000000000000000001 a", 0},
		{"F 644 0 0 1 1 1 1 1 18446744073709551616 1 a", -EINVAL},
		{"F 644 0 0 1 1 1 1 1 1 99999999999999999999 a", -EINVAL},
		{"F 648 0 0 1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 +1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 1x 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0  1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 1 -1 1 -1 1 1 1 a", 0},
		{"F 644 0 0 1 1 1000000000 1 1 1 1 a", -EINVAL},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		char *t = NULL;
		ck_assert_int_ge(asprintf(&t, "%s%s\nend\n", head, nums[i].entry),
				 0);
		ck_assert_msg(load_text(t) == nums[i].rc, "%s", nums[i].entry);
		free(t);
	}
	tu_write(tmp, STATE_FILE,
		 "atomsync-state 2\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
		 "entries 1\nF 644 0 0 1 1 1 1 1 18446744073709551615 "
		 "00000000000000000000000000001 a\nend\n",
		 0644);
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, &l, &gen, &sound), 0);
	ck_assert_uint_eq(l->v[0].dev, UINT64_MAX);
	ck_assert_uint_eq(l->v[0].ino, 1);
	snapshot_free(l);
	free(gen);
	free(good);
}
END_TEST

START_TEST(test_unflushed_state_is_sound_only_in_the_same_boot)
{
	struct snapshot *s = sample(), *l = NULL;
	char *gen = NULL;
	bool sound = true;
	ck_assert_int_eq(state_save(dfd, s, "..g", false), 0);
	ck_assert_int_eq(state_load(dfd, &l, &gen, &sound), 0);
	ck_assert(sound); /* written in this boot */
	snapshot_free(l);
	free(gen);
	/* The same, as if written before a restart. */
	char *p = tu_path(tmp, STATE_FILE);
	char *d = tu_read(p, NULL);
	char *f = strstr(d, "flushed 0 ");
	ck_assert_ptr_nonnull(f);
	memcpy(f + 10, "00000000", 8);
	tu_write(tmp, STATE_FILE, d, 0644);
	ck_assert_int_eq(state_load(dfd, &l, &gen, &sound), 0);
	ck_assert(!sound);
	snapshot_free(l);
	free(gen);
	/* Flushed: sound whatever the boot. */
	free(d);
	ck_assert_int_eq(state_save(dfd, s, "..g", true), 0);
	d = tu_read(p, NULL);
	f = strstr(d, "flushed 1 ");
	memcpy(f + 10, "00000000", 8);
	tu_write(tmp, STATE_FILE, d, 0644);
	ck_assert_int_eq(state_load(dfd, &l, &gen, &sound), 0);
	ck_assert(sound);
	snapshot_free(l);
	snapshot_free(s);
	free(gen);
	free(d);
	free(p);
}
END_TEST

START_TEST(test_missing_state_is_enoent)
{
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, &l, &gen, &sound), -ENOENT);
}
END_TEST

static Suite *state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_escape_round_trip);
	tcase_add_test(tc, test_save_load_round_trip);
	tcase_add_test(tc, test_damaged_state_is_refused);
	tcase_add_test(tc, test_missing_state_is_enoent);
	tcase_add_test(tc, test_unflushed_state_is_sound_only_in_the_same_boot);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(state_suite());
}
