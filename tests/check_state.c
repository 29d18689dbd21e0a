/* The state file: exact round trips, and refusal of anything damaged. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
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
	f.mtime_ns = -86400LL * 365 * 1000000000 + 1; /* before 1970 */
	f.ctime_ns = 1700000001999999999LL;
	f.t_ino = 424242;
	f.t_mtime_ns = 1700000002000000005LL;
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
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
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
		ck_assert_int_eq(a->mtime_ns, b->mtime_ns);
		ck_assert_int_eq(a->ctime_ns, b->ctime_ns);
		ck_assert_uint_eq(a->t_ino, b->t_ino);
		ck_assert_int_eq(a->t_mtime_ns, b->t_mtime_ns);
	}
	/* Private: it lists what 0700 directories of the source hold. */
	struct stat st;
	ck_assert_int_eq(fstatat(dfd, STATE_FILE, &st, 0), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	/* No temp file is left behind. */
	ck_assert_int_eq(faccessat(dfd, STATE_TMP, F_OK, 0), -1);
	snapshot_free(s);
	snapshot_free(l);
	free(gen);
}
END_TEST

/* Anyone may date a file far ahead or back (touch -d): such times are
 * held at the limits of clock_ts_ns(), kept so through a save and a
 * load, also when a state file holds them in full, and a file changed
 * since the read is still told racy, without an overflow (the sanitizer
 * build would stop on one). */
START_TEST(test_far_dates_round_trip)
{
	struct snapshot *s = sample(), *l = NULL;
	char *gen = NULL;
	bool sound = false;
	struct timespec back = {-17961359744568LL, 5}, ahead = {17961359744568LL, 7};

	s->v[0].mtime_ns = s->v[0].ctime_ns = clock_ts_ns(&back);
	s->v[1].mtime_ns = s->v[1].ctime_ns = clock_ts_ns(&ahead);
	ck_assert_int_eq(s->v[0].mtime_ns, INT64_MIN);
	ck_assert_int_eq(s->v[1].mtime_ns, INT64_MAX);
	s->taken.tv_sec = 17961359744568LL; /* a clock far off */
	ck_assert_int_eq(state_save(dfd, s, "..g", true), 0);
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
	for (size_t i = 0; i < 2; i++) {
		ck_assert_int_eq(l->v[i].mtime_ns, s->v[i].mtime_ns);
		ck_assert_int_eq(l->v[i].ctime_ns, s->v[i].ctime_ns);
		if (l->v[i].type == SNAP_FILE)
			ck_assert(l->v[i].flags & SNAP_F_RACY);
	}
	snapshot_free(l);
	free(gen);
	/* The times in full, as a state file may hold them. */
	tu_write(tmp, STATE_FILE,
		 "atomsync-state 3\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
		 "entries 1\nF 644 0 0 1 17961359744568 3 -17961359744568 4 1 1 "
		 "1 17961359744568 9 a\nend\n",
		 0644);
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
	ck_assert_uint_eq(l->n, 1);
	ck_assert_int_eq(l->v[0].mtime_ns, INT64_MAX);
	ck_assert_int_eq(l->v[0].ctime_ns, INT64_MIN);
	ck_assert_int_eq(l->v[0].t_mtime_ns, INT64_MAX);
	snapshot_free(s);
	snapshot_free(l);
	free(gen);
}
END_TEST

/* Whole-second times (a file system that keeps no more) give a file two
 * seconds in which a write may leave them as they were; a time held at
 * a limit says nothing of that, so the other decides. */
START_TEST(test_racy_window_of_whole_seconds)
{
	const struct timespec seen = {1700000000, 300000000};
	struct snap_entry e = {.path = "f", .type = SNAP_FILE};
	const int64_t whole = 1700000000LL * 1000000000;
	const int64_t fine = whole + 1000;
	const struct {
		int64_t mtime, ctime;
		bool racy;
	} c[] = {
		{whole, whole, true},	  /* 0.3 s after: within 2 s */
		{INT64_MAX, whole, true}, /* held: the ctime's whole second */
		{INT64_MIN, whole, true},
		{fine, fine, false},	  /* 0.3 s after: past 50 ms */
		{INT64_MAX, fine, false},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(*c); i++) {
		e.mtime_ns = c[i].mtime;
		e.ctime_ns = c[i].ctime;
		snapshot_mark_racy(&e, &seen);
		ck_assert_msg(!!(e.flags & SNAP_F_RACY) == c[i].racy,
			      "case %zu: racy %d", i, !!(e.flags & SNAP_F_RACY));
	}
}
END_TEST

/* Nanoseconds and back, before 1970 too, and at the limits. */
START_TEST(test_times_in_nanoseconds_and_back)
{
	const struct timespec t[] = {
		{0, 0}, {0, 1}, {-1, 999999999}, {-31536000, 1},
		{1700000001, 999999999}, {-9223372035, 0}, {9223372035, 5},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(*t); i++) {
		struct timespec b = clock_ns_ts(clock_ts_ns(&t[i]));
		ck_assert_msg(b.tv_sec == t[i].tv_sec && b.tv_nsec == t[i].tv_nsec,
			      "%lld.%09ld came back as %lld.%09ld",
			      (long long)t[i].tv_sec, t[i].tv_nsec,
			      (long long)b.tv_sec, b.tv_nsec);
	}
	struct timespec max = clock_ns_ts(INT64_MAX), min = clock_ns_ts(INT64_MIN);
	ck_assert_int_eq(clock_ts_ns(&max), INT64_MAX);
	ck_assert_int_eq(clock_ts_ns(&min), INT64_MIN);
	ck_assert(min.tv_nsec >= 0 && min.tv_nsec < 1000000000);
}
END_TEST

static int load_text(const char *text)
{
	tu_write(tmp, STATE_FILE, text, 0644);
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	int rc = state_load(dfd, 100, &l, &gen, &sound);
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
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\n"
				   "flushed 1 x\nentries 1\nF 644 0 0 1 1 1 1 1 1 1 1 1 1 a\nend\n"),
			 0);
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\n"
				   "flushed 2 x\nentries 1\nF 644 0 0 1 1 1 1 1 1 1 1 1 1 a\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 2\nF 644 0 0 1 1 1 1 1 1 1 1 1 1 b\n"
				   "F 644 0 0 1 1 1 1 1 1 1 1 1 1 a\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 1\nX 644 0 0 1 1 1 1 1 1 1 1 1 1 a\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 1\nF 644 0 0 1 1 1 1 1 1 1 1 1 1 a\nend\ntrailing\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
				   "entries 1\nF 644 0 0 1 1 1 1 1 1 1 1 1 1 a b\nend\n"),
			 -EINVAL);
	/* A header line with more than its fields, or a field that is not
	 * a plain number. */
	const char *heads[] = {
		"recorded 1 2 x\nflushed 1 x\nentries 0\n",
		"recorded 1 2x\nflushed 1 x\nentries 0\n",
		"recorded +1 2\nflushed 1 x\nentries 0\n",
		"recorded 1 2\nflushed 1 x y\nentries 0\n",
		"recorded 1 2\nflushed 1 \nentries 0\n",
		"recorded 1 2\nflushed 10 x\nentries 0\n",
		"recorded 1 2\nflushed 1 x\nentries 0x\n",
		"recorded 1 2\nflushed 1 x\nentries -0\n",
		"recorded 1 2\nflushed 1 x\nentries  0\n",
	};
	for (size_t k = 0; k < sizeof(heads) / sizeof(*heads); k++) {
		char *t = NULL;
		ck_assert_int_gt(asprintf(&t, "atomsync-state 3\ngeneration ..g\n"
					  "%send\n", heads[k]), 0);
		ck_assert_msg(load_text(t) == -EINVAL, "%s", heads[k]);
		free(t);
	}
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\n"
				   "recorded -1 2\nflushed 0 x\nentries 0\nend\n"),
			 0);
	/* Nanoseconds out of their range. */
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\n"
				   "recorded 1 -962\nflushed 1 x\nentries 0\nend\n"),
			 -EINVAL);
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\n"
				   "recorded 1 1000000000\nflushed 1 x\nentries 0\nend\n"),
			 -EINVAL);
	/* A path the writer would never record: not clean, not relative, or
	 * with a ".." element (escaped or not). */
	const char *unclean[] = {"d/ex/", "d//x", "./x", "d/./x", "d/../x",
				 "d/x/.", "d/x/..", ".", "..", "../x", "/x",
				 "d\\x2f", "d\\x2f\\x2fx", "d/\\x2e/x",
				 "d/\\x2e\\x2e/x"};
	for (size_t k = 0; k < sizeof(unclean) / sizeof(*unclean); k++) {
		char *t = NULL;
		ck_assert_int_gt(asprintf(&t, "atomsync-state 3\ngeneration ..g\n"
					  "recorded 1 2\nflushed 1 x\nentries 1\n"
					  "F 644 0 0 1 1 1 1 1 1 1 1 1 1 %s\nend\n",
					  unclean[k]), 0);
		ck_assert_msg(load_text(t) == -EINVAL, "%s", unclean[k]);
		free(t);
	}
	/* Numbers: the largest of 64 bits is read, one more is refused, and
	 * so are a digit outside the base, a sign and an empty field. */
	const char *head = "atomsync-state 3\ngeneration ..g\nrecorded 1 2\n"
			   "flushed 1 x\nentries 1\n";
	const struct {
		const char *entry;
		int rc;
	} nums[] = {
		{"F 644 0 0 1 1 1 1 1 18446744073709551615 "
		 "00000000000000000000000000001 1 1 1 a", 0},
		{"F 644 0 0 1 1 1 1 1 18446744073709551616 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 1 1 1 1 1 1 99999999999999999999 1 1 1 a", -EINVAL},
		{"F 648 0 0 1 1 1 1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 +1 1 1 1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 1x 1 1 1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0  1 1 1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 1 -1 1 -1 1 1 1 1 -1 1 a", 0},
		{"F 644 0 0 1 1 1000000000 1 1 1 1 1 1 1 a", -EINVAL},
		{"F 644 0 0 1 1 1 1 1 1 1 1 1 1000000000 a", -EINVAL},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		char *t = NULL;
		ck_assert_int_ge(asprintf(&t, "%s%s\nend\n", head, nums[i].entry),
				 0);
		ck_assert_msg(load_text(t) == nums[i].rc, "%s", nums[i].entry);
		free(t);
	}
	tu_write(tmp, STATE_FILE,
		 "atomsync-state 3\ngeneration ..g\nrecorded 1 2\nflushed 1 x\n"
		 "entries 1\nF 644 0 0 1 1 1 1 1 18446744073709551615 "
		 "00000000000000000000000000001 1 1 1 a\nend\n",
		 0644);
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
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
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
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
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
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
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
	ck_assert(sound);
	snapshot_free(l);
	snapshot_free(s);
	free(gen);
	free(d);
	free(p);
}
END_TEST

static long maxrss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

START_TEST(test_huge_or_planted_state_costs_no_memory)
{
	/* A 3 GiB sparse file: refused at once, without reading it all. */
	int fd = openat(dfd, STATE_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 3LL << 30), 0);
	close(fd);
	long before = maxrss_kib();
	long long t0 = tu_now_ms();
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), -EINVAL);
	ck_assert_int_lt(maxrss_kib() - before, 16 * 1024);
	ck_assert_int_lt(tu_now_ms() - t0, tu_scale(2000));
	/* A header that claims more entries than a source may have. */
	ck_assert_int_eq(load_text("atomsync-state 3\ngeneration ..g\nrecorded 1 2\n"
				   "flushed 1 x\nentries 101\n"),
			 -EFBIG);
	/* A good header, then one endless line. */
	char *big = malloc(1 << 20);
	memset(big, 'a', 1 << 20);
	big[(1 << 20) - 1] = '\0';
	char *t;
	ck_assert_int_gt(asprintf(&t, "atomsync-state 3\ngeneration ..g\n"
				      "recorded 1 2\nflushed 1 x\nentries 1\n%s",
				  big), 0);
	ck_assert_int_eq(load_text(t), -EINVAL);
	free(t);
	free(big);
}
END_TEST

START_TEST(test_state_others_could_write_is_not_trusted)
{
	ck_assert_msg(tu_can_setuid(), "this test needs root");
	struct snapshot *s = sample(), *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_save(dfd, s, "..g", true), 0);
	ck_assert_int_eq(fchownat(dfd, STATE_FILE, 2003, 2003, 0), 0);
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), -EPERM);
	ck_assert_int_eq(fchownat(dfd, STATE_FILE, 0, 0, 0), 0);
	ck_assert_int_eq(fchmodat(dfd, STATE_FILE, 0666, 0), 0);
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), -EPERM);
	ck_assert_int_eq(fchmodat(dfd, STATE_FILE, 0600, 0), 0);
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), 0);
	snapshot_free(l);
	free(gen);
	/* A FIFO in its place neither hangs nor counts. */
	ck_assert_int_eq(unlinkat(dfd, STATE_FILE, 0), 0);
	ck_assert_int_eq(mkfifoat(dfd, STATE_FILE, 0600), 0);
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), -EINVAL);
	snapshot_free(s);
}
END_TEST

START_TEST(test_missing_state_is_enoent)
{
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, 100, &l, &gen, &sound), -ENOENT);
}
END_TEST

START_TEST(test_peek_reads_only_the_header)
{
	struct snapshot *s = sample();
	struct timespec t;
	char *gen = NULL;
	bool sound = false;
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), -ENOENT);
	ck_assert_int_eq(state_save(dfd, s, "..2026_11_25_16_04_05.1", false), 0);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), 0);
	ck_assert_str_eq(gen, "..2026_11_25_16_04_05.1");
	ck_assert_int_eq(t.tv_sec, s->taken.tv_sec);
	ck_assert_int_eq(t.tv_nsec, s->taken.tv_nsec);
	ck_assert(sound); /* same boot */
	free(gen);
	/* The entries are not read: a damaged one does not matter here. */
	tu_write(tmp, STATE_FILE, "atomsync-state 3\ngeneration ..g\nrecorded 1 2\n"
				  "flushed 1 x\nentries 1\nF garbage\n", 0600);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), 0);
	ck_assert_str_eq(gen, "..g");
	free(gen);
	tu_write(tmp, STATE_FILE, "atomsync-state 3\ngeneration ..g\n", 0600);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), -EINVAL);
	ck_assert_ptr_null(gen);
	snapshot_free(s);
}
END_TEST

START_TEST(test_error_file_round_trip)
{
	const char *msg = "target /srv/a b: new\nline \x1b[31m\\x41 caf\xc3\xa9";
	uint64_t ms = 0;
	char *got = NULL;
	ck_assert_int_eq(state_error_load(dfd, &ms, &got), -ENOENT);
	ck_assert_int_eq(state_error_save(dfd, 1764086645123ULL, msg), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &got), 0);
	ck_assert_uint_eq(ms, 1764086645123ULL);
	ck_assert_str_eq(got, msg);
	free(got);
	/* Private, like the state: errors name paths. */
	struct stat st;
	ck_assert_int_eq(fstatat(dfd, STATE_ERROR_FILE, &st, AT_SYMLINK_NOFOLLOW), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(faccessat(dfd, STATE_ERROR_TMP, F_OK, AT_SYMLINK_NOFOLLOW), -1);
	/* The one line of the message holds no newline or space raw. */
	char *p = tu_path(tmp, STATE_ERROR_FILE);
	char *text = tu_read(p, NULL);
	ck_assert_int_eq(tu_lines(text), 3);
	free(text);
	free(p);
	/* A long one is cut. */
	char *big = malloc(3 * STATE_ERROR_MAX);
	memset(big, 'e', 3 * STATE_ERROR_MAX - 1);
	big[3 * STATE_ERROR_MAX - 1] = '\0';
	ck_assert_int_eq(state_error_save(dfd, 1, big), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &got), 0);
	ck_assert_uint_eq(strlen(got), STATE_ERROR_MAX);
	free(got);
	free(big);
	ck_assert_int_eq(state_error_clear(dfd), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &got), -ENOENT);
	ck_assert_int_eq(state_error_clear(dfd), 0);
}
END_TEST

static int error_text(const char *text)
{
	uint64_t ms;
	char *msg = NULL;
	tu_write(tmp, STATE_ERROR_FILE, text, 0600);
	int rc = state_error_load(dfd, &ms, &msg);
	free(msg);
	return rc;
}

START_TEST(test_damaged_error_file_is_refused)
{
	ck_assert_int_eq(error_text("atomsync-error 1\ntime 5\nmessage ok\n"), 0);
	const char *bad[] = {
		"",
		"atomsync-error 2\ntime 5\nmessage ok\n",
		"atomsync-error 1\ntime x\nmessage ok\n",
		"atomsync-error 1\ntime -5\nmessage ok\n",
		"atomsync-error 1\ntime 99999999999999999999999\nmessage ok\n",
		"atomsync-error 1\ntime 5\nmessage \n",
		"atomsync-error 1\ntime 5\nmessage two words\n",
		"atomsync-error 1\ntime 5\nmessage bad\\q\n",
		"atomsync-error 1\ntime 5\nmessage ok",
		"atomsync-error 1\ntime 5\nmessage ok\nmore\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(error_text(bad[i]) == -EINVAL, "case %zu", i);
	/* A 3 GiB sparse file costs a few KiB of reading. */
	int fd = openat(dfd, STATE_ERROR_FILE, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 3LL << 30), 0);
	close(fd);
	long long t0 = tu_now_ms();
	uint64_t ms;
	char *msg = NULL;
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -EINVAL);
	ck_assert_int_lt(tu_now_ms() - t0, tu_scale(2000));
	/* A FIFO neither hangs nor counts; a link is not followed. */
	ck_assert_int_eq(unlinkat(dfd, STATE_ERROR_FILE, 0), 0);
	ck_assert_int_eq(mkfifoat(dfd, STATE_ERROR_FILE, 0600), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -EINVAL);
	ck_assert_int_eq(unlinkat(dfd, STATE_ERROR_FILE, 0), 0);
	tu_write(tmp, "elsewhere", "atomsync-error 1\ntime 5\nmessage ok\n", 0600);
	ck_assert_int_eq(symlinkat("elsewhere", dfd, STATE_ERROR_FILE), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -ELOOP);
	ck_assert_ptr_null(msg);
}
END_TEST

START_TEST(test_error_file_others_could_write_is_not_trusted)
{
	ck_assert_msg(tu_can_setuid(), "this test needs root");
	uint64_t ms;
	char *msg = NULL;
	ck_assert_int_eq(state_error_save(dfd, 5, "ok"), 0);
	ck_assert_int_eq(fchownat(dfd, STATE_ERROR_FILE, 2003, 2003, 0), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -EPERM);
	ck_assert_int_eq(fchownat(dfd, STATE_ERROR_FILE, 0, 0, 0), 0);
	ck_assert_int_eq(fchmodat(dfd, STATE_ERROR_FILE, 0622, 0), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -EPERM);
	ck_assert_ptr_null(msg);
}
END_TEST

/* Whoever can write in the target may plant links, FIFOs or hard links
 * at both names: they are replaced, never followed or opened. */
START_TEST(test_error_file_replaces_what_is_planted)
{
	char *victim = tu_path(tmp, "victim"), *text;
	tu_write(tmp, "victim", "precious\n", 0644);
	ck_assert_int_eq(symlinkat(victim, dfd, STATE_ERROR_TMP), 0);
	ck_assert_int_eq(symlinkat(victim, dfd, STATE_ERROR_FILE), 0);
	ck_assert_int_eq(state_error_save(dfd, 5, "first"), 0);
	ck_assert_int_eq(linkat(dfd, "victim", dfd, STATE_ERROR_TMP, 0), 0);
	ck_assert_int_eq(state_error_save(dfd, 6, "second"), 0);
	ck_assert_int_eq(mkfifoat(dfd, STATE_ERROR_TMP, 0666), 0);
	ck_assert_int_eq(state_error_save(dfd, 7, "third"), 0);
	text = tu_read(victim, NULL);
	ck_assert_str_eq(text, "precious\n");
	free(text);
	struct stat st;
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_uint_eq(st.st_nlink, 1);
	ck_assert_uint_eq(st.st_mode & 07777, 0644);
	uint64_t ms;
	char *msg = NULL;
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), 0);
	ck_assert_str_eq(msg, "third");
	free(msg);
	/* A directory in the way fails the save and is left alone. */
	ck_assert_int_eq(mkdirat(dfd, STATE_ERROR_TMP, 0755), 0);
	ck_assert_int_lt(state_error_save(dfd, 8, "fourth"), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), 0);
	ck_assert_str_eq(msg, "third");
	free(msg);
	free(victim);
}
END_TEST

/* ---- the journal ---- */

/* A tree of 10 directories and up to 200 files, as a model: what each
 * slot holds (0: nothing), to build snapshots from. */
#define SLOTS 200
static unsigned model[SLOTS];

static struct snapshot *from_model(unsigned step)
{
	struct snapshot *s = NULL;
	ck_assert_int_eq(snapshot_open(NULL, &s, NULL), 0);
	/* Wholly the model's: a read's nanoseconds kept from the clock
	 * would make two steps a second apart as little as none apart when
	 * the clock passed a second in between (and racy then). */
	s->taken.tv_sec = 1764086645 + step;
	s->taken.tv_nsec = 500000000;
	for (unsigned d = 0; d < 10; d++) {
		char p[32];
		snprintf(p, sizeof(p), "d%u", d);
		struct snap_entry e = {.path = p, .type = SNAP_DIR,
				       .mode = 0755, .ino = 1000 + d};
		ck_assert_int_eq(snapshot_add(s, &e), 0);
	}
	for (unsigned i = 0; i < SLOTS; i++) {
		if (model[i] == 0)
			continue;
		char p[64];
		snprintf(p, sizeof(p), "d%u/f %03u", i % 10, i);
		struct snap_entry e = {.path = p, .type = SNAP_FILE,
				       .mode = 0644, .size = model[i],
				       .ino = 5000 + i, .t_ino = 9000 + model[i]};
		e.mtime_ns = (1700000000LL + model[i]) * 1000000000;
		e.ctime_ns = e.mtime_ns;
		ck_assert_int_eq(snapshot_add(s, &e), 0);
	}
	snapshot_sort(s);
	return s;
}

static void assert_same(const struct snapshot *a, const struct snapshot *b)
{
	ck_assert_uint_eq(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct snap_entry *x = &a->v[i], *y = &b->v[i];
		ck_assert_str_eq(x->path, y->path);
		ck_assert_int_eq(x->type, y->type);
		ck_assert_uint_eq(x->mode, y->mode);
		ck_assert_uint_eq(x->size, y->size);
		ck_assert_uint_eq(x->ino, y->ino);
		ck_assert_uint_eq(x->t_ino, y->t_ino);
		ck_assert_int_eq(x->mtime_ns, y->mtime_ns);
		ck_assert_int_eq(x->ctime_ns, y->ctime_ns);
	}
}

static void assert_loads(const struct snapshot *want, const char *want_gen)
{
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound = false;
	ck_assert_int_eq(state_load(dfd, 1000, &l, &gen, &sound), 0);
	ck_assert_str_eq(gen, want_gen);
	ck_assert(sound);
	assert_same(want, l);
	ck_assert_int_eq(l->taken.tv_sec, want->taken.tv_sec);
	snapshot_free(l);
	free(gen);
}

static ino_t state_ino(void)
{
	struct stat st;
	ck_assert_int_eq(fstatat(dfd, STATE_FILE, &st, 0), 0);
	return st.st_ino;
}

/* Names that start or end with dots, or hold bytes the state escapes,
 * are clean paths: saved whole and as a journal's record, they load back
 * as they were. */
START_TEST(test_dotted_and_escaped_names_load_back)
{
	const char *names[] = {".hidden", ".hidden/..x", ".hidden/.x.",
			       "a b", "a b/x..", "a\\b", "d", "d/...",
			       "d/.x", "d/x.", "d/\xc3\xa9 \t\x1b"};
	struct snapshot *s = NULL, *t = NULL;
	struct state_log l;

	ck_assert_int_eq(snapshot_open(NULL, &s, NULL), 0);
	s->taken.tv_sec = 1764086645;
	for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
		bool dir = strcmp(names[k], ".hidden") == 0 ||
			   strcmp(names[k], "a b") == 0 ||
			   strcmp(names[k], "d") == 0;
		struct snap_entry e = {.path = (char *)names[k],
				       .type = dir ? SNAP_DIR : SNAP_FILE,
				       .mode = 0644, .ino = 100 + k,
				       .size = k};
		ck_assert_int_eq(snapshot_add(s, &e), 0);
	}
	snapshot_sort(s);
	state_log_init(&l);
	ck_assert_int_eq(state_record(dfd, &l, NULL, s, "..one", true, NULL),
			 0);
	assert_loads(s, "..one");
	/* The same names changed: a record of each in the journal. */
	ck_assert_int_eq(snapshot_open(NULL, &t, NULL), 0);
	t->taken.tv_sec = s->taken.tv_sec + 1;
	for (size_t i = 0; i < s->n; i++) {
		struct snap_entry e = s->v[i];
		e.size += e.type == SNAP_FILE ? 1000 : 0;
		ck_assert_int_eq(snapshot_add(t, &e), 0);
	}
	ck_assert_int_eq(state_record(dfd, &l, s, t, "..two", true, NULL), 0);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), 0);
	assert_loads(t, "..two");
	state_log_fini(&l);
	snapshot_free(t);
	snapshot_free(s);
}
END_TEST

START_TEST(test_journal_round_trip)
{
	struct state_log l;
	struct snapshot *prev = NULL;
	unsigned appended = 0, whole = 0, seed = 12345;

	memset(model, 0, sizeof(model));
	for (unsigned i = 0; i < SLOTS; i += 2)
		model[i] = 1;
	state_log_init(&l);
	for (unsigned step = 0; step < 400; step++) {
		/* Add, change or remove a few files. */
		for (unsigned k = 0; k < 1 + step % 3; k++) {
			seed = seed * 1103515245u + 12345u;
			unsigned i = (seed >> 8) % SLOTS;
			model[i] = (seed >> 20) % 3 == 0 ? 0 : step + 2;
		}
		struct snapshot *s = from_model(step);
		char gen[32];
		snprintf(gen, sizeof(gen), "..g%04u", step);
		ino_t before = step ? state_ino() : 0;
		ck_assert_int_eq(
			state_record(dfd, &l, prev, s, gen, true, NULL), 0);
		if (step && state_ino() == before)
			appended++;
		else
			whole++;
		assert_loads(s, gen);
		/* The same generation and entries again: nothing written. */
		struct stat a, b;
		ck_assert_int_eq(fstatat(dfd, STATE_FILE, &a, 0), 0);
		int had = fstatat(dfd, STATE_JOURNAL, &b, 0) == 0;
		off_t size = had ? b.st_size : 0;
		ck_assert_int_eq(
			state_record(dfd, &l, s, s, gen, true, NULL), 0);
		ck_assert_int_eq(fstatat(dfd, STATE_FILE, &b, 0), 0);
		ck_assert_uint_eq(a.st_ino, b.st_ino);
		if (had) {
			ck_assert_int_eq(fstatat(dfd, STATE_JOURNAL, &b, 0), 0);
			ck_assert_int_eq(b.st_size, size);
		}
		snapshot_free(prev);
		prev = s;
	}
	/* Mostly appended, and written whole as the journal grew. */
	ck_assert_uint_gt(appended, 300);
	ck_assert_uint_gt(whole, 5);
	struct stat st;
	ck_assert_int_eq(fstatat(dfd, STATE_JOURNAL, &st, 0), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL_TMP, F_OK, 0), -1);
	/* A recording with nothing to go on writes it whole, journal gone. */
	state_log_fini(&l);
	ck_assert_int_eq(
		state_record(dfd, &l, prev, prev, "..whole", true, NULL), 0);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), -1);
	assert_loads(prev, "..whole");
	/* Another generation with the same entries: a record of none. */
	ck_assert_int_eq(
		state_record(dfd, &l, prev, prev, "..same", true, NULL), 0);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), 0);
	assert_loads(prev, "..same");
	state_log_fini(&l);
	snapshot_free(prev);
}
END_TEST

/* Three generations: ..g1 written whole, ..g2 and ..g3 appended. */
static struct snapshot *three_generations(struct snapshot **s1,
					  struct snapshot **s2)
{
	struct state_log l;

	state_log_init(&l);
	memset(model, 0, sizeof(model));
	for (unsigned i = 0; i < 40; i++)
		model[i] = 1;
	*s1 = from_model(1);
	ck_assert_int_eq(
		state_record(dfd, &l, NULL, *s1, "..g1", true, NULL), 0);
	model[3] = 0;
	model[41] = 7;
	*s2 = from_model(2);
	ck_assert_int_eq(
		state_record(dfd, &l, *s1, *s2, "..g2", true, NULL), 0);
	model[5] = 9;
	model[3] = 4;
	struct snapshot *s3 = from_model(3);
	ck_assert_int_eq(state_record(dfd, &l, *s2, s3, "..g3", true, NULL), 0);
	state_log_fini(&l);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), 0);
	return s3;
}

/* Records that only change files the state holds, some the same file
 * again, load as their last record left each file; so do they once a
 * later record removes one. */
START_TEST(test_journal_of_changes_loads_back)
{
	struct state_log l;
	struct snapshot *prev = NULL;
	const unsigned changed[][2] = {{3, 77}, {77, 150}, {3, 199}, {0, 3}};

	for (unsigned i = 0; i < SLOTS; i++)
		model[i] = 1;
	state_log_init(&l);
	for (unsigned step = 0; step <= 5; step++) {
		if (step > 0 && step < 5) {
			model[changed[step - 1][0]] = step + 1;
			model[changed[step - 1][1]] = step + 1;
		} else if (step == 5) {
			model[150] = 0;
		}
		struct snapshot *s = from_model(step);
		char gen[32];
		snprintf(gen, sizeof(gen), "..c%u", step);
		ino_t before = step ? state_ino() : 0;
		ck_assert_int_eq(
			state_record(dfd, &l, prev, s, gen, true, NULL), 0);
		/* Appended: the journal is what the load applies. */
		if (step > 0)
			ck_assert_uint_eq(state_ino(), before);
		assert_loads(s, gen);
		snapshot_free(prev);
		prev = s;
	}
	state_log_fini(&l);
	snapshot_free(prev);
}
END_TEST

START_TEST(test_journal_cut_short_is_not_applied)
{
	struct snapshot *s1, *s2, *s3 = three_generations(&s1, &s2);
	char *p = tu_path(tmp, STATE_JOURNAL);
	size_t len = 0;
	char *good = tu_read(p, &len);
	const char *last = strstr(good, "record ..g3\n");
	ck_assert_ptr_nonnull(last);

	assert_loads(s3, "..g3");
	/* A crash while the last record was written: the one before. */
	for (size_t cut = (size_t)(last - good); cut < len; cut++) {
		tu_write_len(tmp, STATE_JOURNAL, good, cut, 0600);
		assert_loads(s2, "..g2");
	}
	/* A damaged record ends the journal where it is. */
	char *bad = strdup(good);
	char *e = strstr(bad, "record ..g2\n");
	e = strchr(strchr(strchr(strchr(e, '\n') + 1, '\n') + 1, '\n') + 1,
		   '\n');
	e[1] = 'X';
	tu_write(tmp, STATE_JOURNAL, bad, 0600);
	assert_loads(s1, "..g1");
	/* A journal made on another state file is not applied: one that
	 * names another generation (and, below, the same one written
	 * whole again: a crash before the journal went). */
	free(bad);
	bad = strdup(good);
	memcpy(strstr(bad, "base ..g1") + 8, "9", 1);
	tu_write(tmp, STATE_JOURNAL, bad, 0600);
	assert_loads(s1, "..g1");
	/* Nor one that claims a count its entries do not make. */
	free(bad);
	bad = strdup(good);
	char *c = strstr(strstr(bad, "record ..g3\n"), "commit ");
	ck_assert_ptr_nonnull(c);
	c[7] = c[7] == '9' ? '8' : '9';
	tu_write(tmp, STATE_JOURNAL, bad, 0600);
	struct snapshot *l = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, 1000, &l, &gen, &sound), -EINVAL);
	/* A commit line with more than its count is damaged: the record
	 * it ends is not applied. */
	free(bad);
	bad = strdup(good);
	c = strstr(strstr(bad, "record ..g3\n"), "commit ");
	char *bad2 = NULL;
	size_t at = (size_t)(strchr(c, '\n') - bad);
	ck_assert_int_gt(asprintf(&bad2, "%.*s x%s", (int)at, bad, bad + at), 0);
	tu_write(tmp, STATE_JOURNAL, bad2, 0600);
	assert_loads(s2, "..g2");
	free(bad2);
	/* Nor more entries than a source may have, which is told apart
	 * from damage. */
	tu_write(tmp, STATE_JOURNAL, good, 0600);
	ck_assert_int_eq(state_load(dfd, s2->n, &l, &gen, &sound), -EFBIG);
	ck_assert_int_eq(state_load(dfd, s3->n, &l, &gen, &sound), 0);
	snapshot_free(l);
	free(gen);
	ck_assert_int_eq(state_save(dfd, s2, "..g1", true), 0);
	tu_write(tmp, STATE_JOURNAL, good, 0600);
	assert_loads(s2, "..g1");
	free(bad);
	free(good);
	free(p);
	snapshot_free(s1);
	snapshot_free(s2);
	snapshot_free(s3);
}
END_TEST

/* Loads with a log, records `s` as `gen` and says whether that was
 * appended: the state file stays the one loaded. */
static bool resumed_record(const struct snapshot *s, const char *gen,
			   bool flushed, const char *want_gen,
			   const char *want_base)
{
	struct state_log l;
	struct snapshot *got = NULL;
	char *g = NULL;
	bool sound = false;

	state_log_init(&l);
	ck_assert_int_eq(state_load_log(dfd, 1000, &got, &g, &sound, NULL, &l), 0);
	ck_assert_str_eq(g, want_gen);
	if (want_base)
		ck_assert_str_eq(l.base, want_base);
	else
		ck_assert_ptr_null(l.base);
	ino_t before = state_ino();
	ck_assert_int_eq(state_record(dfd, &l, got, s, gen, flushed, NULL), 0);
	bool appended = state_ino() == before;
	state_log_fini(&l);
	snapshot_free(got);
	free(g);
	assert_loads(s, gen);
	return appended;
}

START_TEST(test_journal_resumed_after_a_load)
{
	struct snapshot *s1, *s2, *s3 = three_generations(&s1, &s2);
	char *p = tu_path(tmp, STATE_JOURNAL);
	size_t len = 0, len4 = 0;
	char *good = tu_read(p, &len);

	/* A later process goes on with the journal it read. */
	model[7] = 11;
	struct snapshot *s4 = from_model(4);
	ck_assert(resumed_record(s4, "..g4", true, "..g3", "..g1"));
	char *more = tu_read(p, &len4);
	ck_assert_uint_gt(len4, len);
	ck_assert_int_eq(memcmp(more, good, len), 0);
	/* One cut short, or damaged, at its end: a record after it would
	 * never be applied, so the state is written whole. */
	for (unsigned k = 0; k < 3; k++) {
		snapshot_free(s1);
		snapshot_free(s2);
		snapshot_free(s3);
		s3 = three_generations(&s1, &s2);
		char *j = tu_read(p, &len), *bad = NULL;
		if (k == 0)
			bad = strndup(j, len - 3);
		else
			ck_assert_int_ge(asprintf(&bad, "%s%s", j,
						  k == 1 ? "junk\n"
							 : "record ..g"),
					 0);
		tu_write(tmp, STATE_JOURNAL, bad, 0600);
		ck_assert(!resumed_record(s4, "..g5", true,
					  k == 0 ? "..g2" : "..g3", NULL));
		ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), -1);
		free(bad);
		free(j);
	}
	/* No journal: the first record starts one on this state file. */
	ck_assert(resumed_record(s3, "..g6", true, "..g5", "..g5"));
	/* One made on another state file is replaced. */
	ck_assert_int_eq(state_save(dfd, s2, "..g2", true), 0);
	tu_write(tmp, STATE_JOURNAL, good, 0600);
	ck_assert(resumed_record(s4, "..g7", true, "..g2", "..g2"));
	char *text = tu_read(p, NULL);
	ck_assert_ptr_nonnull(strstr(text, "base ..g2 "));
	ck_assert_ptr_null(strstr(text, "record ..g3\n"));
	free(text);
	/* Recorded unflushed, the same generation stays so. */
	ck_assert(resumed_record(s1, "..g8", false, "..g7", "..g2"));
	ck_assert(resumed_record(s3, "..g8", true, "..g8", "..g2"));
	text = tu_read(p, NULL);
	char *r = strstr(text, "record ..g8\n");
	ck_assert_ptr_nonnull(r = strstr(r + 1, "record ..g8\n"));
	ck_assert_ptr_nonnull(strstr(r, "flushed 0 "));
	free(text);
	free(more);
	free(good);
	free(p);
	snapshot_free(s1);
	snapshot_free(s2);
	snapshot_free(s3);
	snapshot_free(s4);
}
END_TEST

/* Sets or clears the append-only attribute of the journal. */
static void journal_append_only(bool on)
{
	int fd = openat(dfd, STATE_JOURNAL, O_RDONLY | O_CLOEXEC), attr = 0;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ioctl(fd, FS_IOC_GETFLAGS, &attr), 0);
	attr = on ? attr | FS_APPEND_FL : attr & ~FS_APPEND_FL;
	ck_assert_msg(ioctl(fd, FS_IOC_SETFLAGS, &attr) == 0,
		      "append-only attribute: %s", strerror(errno));
	close(fd);
}

/* A journal that cannot be opened to write is read all the same, and
 * one with another name too (a copy made with cp -al) is never written
 * through: neither is appended to. */
START_TEST(test_journal_not_ours_alone_is_only_read)
{
	struct snapshot *s1, *s2, *s3 = three_generations(&s1, &s2);
	struct snapshot *got = NULL;
	struct state_log l;
	char *gen = NULL, *p = tu_path(tmp, STATE_JOURNAL);
	bool sound;

	state_log_init(&l);
	journal_append_only(true);
	int rc = state_load_log(dfd, 1000, &got, &gen, &sound, NULL, &l);
	journal_append_only(false);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(gen, "..g3");
	ck_assert_ptr_null(l.base);
	snapshot_free(got);
	free(gen);

	char *copy = tu_path(tmp, "journal-copy");
	ck_assert_int_eq(link(p, copy), 0);
	size_t len = 0, len2 = 0;
	char *before = tu_read(copy, &len);
	ck_assert(!resumed_record(s1, "..g4", true, "..g3", NULL));
	char *after = tu_read(copy, &len2);
	ck_assert_uint_eq(len2, len);
	ck_assert_int_eq(memcmp(before, after, len), 0);
	free(before);
	free(after);
	free(copy);
	free(p);
	snapshot_free(s1);
	snapshot_free(s2);
	snapshot_free(s3);
}
END_TEST

/* A file racy when recorded (changed within a tick of the read) and
 * found the same since is recorded again, under a later record: else
 * every load would compare it again. */
START_TEST(test_journal_records_a_file_no_longer_racy)
{
	struct state_log l;
	struct snapshot *got = NULL;
	char *gen = NULL;
	bool sound;

	state_log_init(&l);
	memset(model, 0, sizeof(model));
	model[1] = 2;
	struct snapshot *s1 = from_model(1);
	struct snap_entry *e = snapshot_find(s1, "d1/f 001");
	e->ctime_ns = clock_ts_ns(&s1->taken);
	ck_assert_int_eq(
		state_record(dfd, &l, NULL, s1, "..g1", true, NULL), 0);
	state_log_fini(&l);
	ck_assert_int_eq(state_load_log(dfd, 1000, &got, &gen, &sound, NULL, &l), 0);
	ck_assert(snapshot_find(got, "d1/f 001")->flags & SNAP_F_RACY);
	/* A second later its bytes were found the same. */
	struct snapshot *s2 = from_model(2);
	snapshot_find(s2, "d1/f 001")->ctime_ns = e->ctime_ns;
	ino_t before = state_ino();
	ck_assert_int_eq(state_record(dfd, &l, got, s2, "..g2", true, NULL), 0);
	ck_assert_uint_eq(state_ino(), before);
	state_log_fini(&l);
	snapshot_free(got);
	free(gen);
	ck_assert_int_eq(state_load(dfd, 1000, &got, &gen, &sound), 0);
	ck_assert_str_eq(gen, "..g2");
	ck_assert(!(snapshot_find(got, "d1/f 001")->flags & SNAP_F_RACY));
	snapshot_free(got);
	free(gen);
	snapshot_free(s1);
	snapshot_free(s2);
}
END_TEST

/* A record that fails says which file could not be written: the journal
 * (here a directory is in its way), or the state file written whole. */
/* A source read at a time before 1970 (a clock set wrong) is written
 * with its sign, and loads again. */
START_TEST(test_negative_recorded_time_round_trips)
{
	struct snapshot *s = sample(), *got = NULL;
	char *gen = NULL;
	bool sound;
	s->taken.tv_sec = -796135962;
	s->taken.tv_nsec = 842035611;
	ck_assert_int_eq(state_save(dfd, s, "..g1", true), 0);
	ck_assert_int_eq(state_load(dfd, 1000, &got, &gen, &sound), 0);
	ck_assert_int_eq(got->taken.tv_sec, -796135962);
	ck_assert_int_eq(got->taken.tv_nsec, 842035611);
	snapshot_free(got);
	snapshot_free(s);
	free(gen);
}
END_TEST

/* When the files of the generation were last all checked goes with the
 * state, whole and in a journal's records; one that says nothing of it
 * (written before it was kept) loads as 0.  A check alone, with no
 * entry changed, writes nothing. */
START_TEST(test_checked_time_goes_with_the_state)
{
	struct snapshot *s = sample(), *t = NULL, *got = NULL;
	struct state_log l;
	char *gen = NULL;
	bool sound;

	s->checked = 1764086000;
	state_log_init(&l);
	ck_assert_int_eq(state_record(dfd, &l, NULL, s, "..g1", true, NULL), 0);
	ck_assert_int_eq(state_load(dfd, 100, &got, &gen, &sound), 0);
	ck_assert_int_eq(got->checked, 1764086000);
	snapshot_free(got);
	free(gen);
	/* The same entries, checked later: nothing is written. */
	ck_assert_int_eq(snapshot_open(NULL, &t, NULL), 0);
	t->taken = s->taken;
	for (size_t i = 0; i < s->n; i++)
		ck_assert_int_eq(snapshot_add(t, &s->v[i]), 0);
	t->checked = 1764086300;
	ck_assert_int_eq(state_record(dfd, &l, s, t, "..g1", true, NULL), 0);
	ck_assert_int_lt(faccessat(dfd, STATE_JOURNAL, F_OK, 0), 0);
	/* Then a publish (a file grew), checked then: its record says so. */
	t->v[t->n - 1].size++;
	ck_assert_int_eq(state_record(dfd, &l, s, t, "..g2", true, NULL), 0);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), 0);
	ck_assert_int_eq(state_load(dfd, 100, &got, &gen, &sound), 0);
	ck_assert_int_eq(got->checked, 1764086300);
	ck_assert_str_eq(gen, "..g2");
	snapshot_free(got);
	free(gen);
	state_log_fini(&l);
	/* Not said, and said wrong. */
	const char *head = "atomsync-state 3\ngeneration ..g\nrecorded 1 2\n"
			   "flushed 1 x\n";
	const char *tail = "entries 1\nF 644 0 0 1 3 4 3 4 1 1 1 3 4 a\nend\n";
	char *text;
	ck_assert_int_ge(asprintf(&text, "%s%s", head, tail), 0);
	ck_assert_int_eq(unlinkat(dfd, STATE_JOURNAL, 0), 0);
	ck_assert_int_eq(load_text(text), 0);
	free(text);
	const char *bad[] = {"checked 0\n", "checked -5\n", "checked 12x\n",
			     "checked \n"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(*bad); k++) {
		ck_assert_int_ge(asprintf(&text, "%s%s%s", head, bad[k], tail), 0);
		ck_assert_msg(load_text(text) == -EINVAL, "%s", bad[k]);
		free(text);
	}
	snapshot_free(t);
	snapshot_free(s);
}
END_TEST

/* The count a state file's header gives, for a read to make room for:
 * no more than asked for, and nothing from a state that is not there. */
START_TEST(test_entries_are_counted_from_the_header)
{
	struct snapshot *s = sample();
	size_t n = 7;

	ck_assert_int_eq(state_entries(dfd, 100, &n), -ENOENT);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(state_save(dfd, s, "..g1", true), 0);
	ck_assert_int_eq(state_entries(dfd, 100, &n), 0);
	ck_assert_uint_eq(n, s->n);
	ck_assert_int_eq(state_entries(dfd, 1, &n), -EFBIG);
	ck_assert_uint_eq(n, 0);
	snapshot_free(s);
}
END_TEST

START_TEST(test_failed_record_names_its_file)
{
	struct state_log l;
	state_log_init(&l);
	memset(model, 0, sizeof(model));
	struct snapshot *s1 = from_model(0), *s2 = from_model(1);
	const char *file = NULL;
	ck_assert_int_eq(
		state_record(dfd, &l, NULL, s1, "..g1", true, &file), 0);
	ck_assert_ptr_null(file);
	ck_assert_int_eq(mkdirat(dfd, STATE_JOURNAL, 0700), 0);
	ck_assert_int_eq(mkdirat(dfd, STATE_JOURNAL "/x", 0700), 0);
	ck_assert_int_lt(
		state_record(dfd, &l, s1, s2, "..g2", true, &file), 0);
	ck_assert_str_eq(file, STATE_JOURNAL);
	file = NULL;
	ck_assert_int_eq(mkdirat(dfd, STATE_TMP, 0700), 0);
	ck_assert_int_eq(mkdirat(dfd, STATE_TMP "/x", 0700), 0);
	ck_assert_int_lt(
		state_record(dfd, &l, s1, s2, "..g2", true, &file), 0);
	ck_assert_str_eq(file, STATE_FILE);
	state_log_fini(&l);
	snapshot_free(s1);
	snapshot_free(s2);
}
END_TEST

START_TEST(test_journal_racy_by_its_record)
{
	/* A file changed within a tick of the read that recorded it may
	 * change again unseen: it is compared, not trusted, after a load. */
	struct state_log l;
	state_log_init(&l);
	memset(model, 0, sizeof(model));
	model[0] = 1;
	struct snapshot *s1 = from_model(0), *s2 = NULL;
	ck_assert_int_eq(
		state_record(dfd, &l, NULL, s1, "..g1", true, NULL), 0);
	model[1] = 2;
	s2 = from_model(0);
	for (size_t i = 0; i < s2->n; i++)
		if (strcmp(s2->v[i].path, "d1/f 001") == 0)
			s2->v[i].ctime_ns = clock_ts_ns(&s2->taken);
	ck_assert_int_eq(state_record(dfd, &l, s1, s2, "..g2", true, NULL), 0);
	/* A later read, of other files: it leaves d1/f 001 as it was. */
	struct snapshot *s3 = from_model(100);
	for (size_t i = 0; i < s3->n; i++)
		if (strcmp(s3->v[i].path, "d1/f 001") == 0)
			s3->v[i].ctime_ns = clock_ts_ns(&s2->taken);
	s3->v[0].ino++;
	ck_assert_int_eq(state_record(dfd, &l, s2, s3, "..g3", true, NULL), 0);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), 0);
	struct snapshot *got = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, 1000, &got, &gen, &sound), 0);
	ck_assert_str_eq(gen, "..g3");
	ck_assert_int_eq(got->taken.tv_sec, s3->taken.tv_sec);
	struct snap_entry *e = snapshot_find(got, "d1/f 001");
	ck_assert_ptr_nonnull(e);
	ck_assert(e->flags & SNAP_F_RACY);
	ck_assert(!(snapshot_find(got, "d0/f 000")->flags & SNAP_F_RACY));
	snapshot_free(got);
	free(gen);
	/* Unflushed once, the same generation stays so when recorded
	 * again flushed. */
	ck_assert_int_eq(state_record(dfd, &l, s3, s1, "..g4", false, NULL), 0);
	ck_assert_int_eq(state_record(dfd, &l, s1, s2, "..g4", true, NULL), 0);
	char *p = tu_path(tmp, STATE_JOURNAL);
	char *text = tu_read(p, NULL);
	char *r = strstr(text, "record ..g4\n");
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_null(strstr(r, "flushed 1 "));
	free(text);
	free(p);
	state_log_fini(&l);
	snapshot_free(s1);
	snapshot_free(s2);
	snapshot_free(s3);
}
END_TEST

START_TEST(test_journal_others_could_write_is_not_trusted)
{
	ck_assert_msg(tu_can_setuid(), "this test needs root");
	struct snapshot *s1, *s2, *s3 = three_generations(&s1, &s2);
	struct snapshot *l = NULL;
	char *gen = NULL;
	struct timespec t;
	bool sound;
	ck_assert_int_eq(fchownat(dfd, STATE_JOURNAL, 2003, 2003, 0), 0);
	ck_assert_int_eq(state_load(dfd, 1000, &l, &gen, &sound), -EPERM);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), -EPERM);
	ck_assert_int_eq(fchownat(dfd, STATE_JOURNAL, 0, 0, 0), 0);
	ck_assert_int_eq(fchmodat(dfd, STATE_JOURNAL, 0620, 0), 0);
	ck_assert_int_eq(state_load(dfd, 1000, &l, &gen, &sound), -EPERM);
	ck_assert_int_eq(fchmodat(dfd, STATE_JOURNAL, 0600, 0), 0);
	assert_loads(s3, "..g3");
	/* A FIFO in its place neither hangs nor counts. */
	ck_assert_int_eq(unlinkat(dfd, STATE_JOURNAL, 0), 0);
	ck_assert_int_eq(mkfifoat(dfd, STATE_JOURNAL, 0600), 0);
	ck_assert_int_eq(state_load(dfd, 1000, &l, &gen, &sound), -EINVAL);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), -EINVAL);
	/* Gone: the state file alone, naming the generation it was
	 * written for. */
	ck_assert_int_eq(unlinkat(dfd, STATE_JOURNAL, 0), 0);
	assert_loads(s1, "..g1");
	snapshot_free(s1);
	snapshot_free(s2);
	snapshot_free(s3);
}
END_TEST

START_TEST(test_peek_reads_the_journal)
{
	struct snapshot *s1, *s2, *s3 = three_generations(&s1, &s2);
	struct timespec t;
	char *gen = NULL;
	bool sound = false;
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), 0);
	ck_assert_str_eq(gen, "..g3");
	ck_assert_int_eq(t.tv_sec, s3->taken.tv_sec);
	ck_assert(sound);
	free(gen);
	/* A record with a damaged line is not applied by a load, so peek
	 * does not name it either (nor any after it). */
	char *p = tu_path(tmp, STATE_JOURNAL);
	char *bad = tu_read(p, NULL);
	char *e = strstr(bad, "record ..g2\n");
	e = strchr(strchr(strchr(strchr(e, '\n') + 1, '\n') + 1, '\n') + 1,
		   '\n');
	e[1] = 'X'; /* its second line: neither an entry nor a removal */
	tu_write(tmp, STATE_JOURNAL, bad, 0600);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), 0);
	ck_assert_str_eq(gen, "..g1");
	free(gen);
	assert_loads(s1, "..g1");
	free(bad);
	free(p);
	/* Written whole again: the journal goes, the state file names it. */
	ck_assert_int_eq(state_save(dfd, s2, "..g4", true), 0);
	ck_assert_int_eq(faccessat(dfd, STATE_JOURNAL, F_OK, 0), -1);
	ck_assert_int_eq(state_peek(dfd, &gen, &t, &sound), 0);
	ck_assert_str_eq(gen, "..g4");
	free(gen);
	snapshot_free(s1);
	snapshot_free(s2);
	snapshot_free(s3);
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
	tcase_add_test(tc, test_far_dates_round_trip);
	tcase_add_test(tc, test_times_in_nanoseconds_and_back);
	tcase_add_test(tc, test_racy_window_of_whole_seconds);
	tcase_add_test(tc, test_damaged_state_is_refused);
	tcase_add_test(tc, test_missing_state_is_enoent);
	tcase_add_test(tc, test_huge_or_planted_state_costs_no_memory);
	tcase_add_test(tc, test_state_others_could_write_is_not_trusted);
	tcase_add_test(tc, test_unflushed_state_is_sound_only_in_the_same_boot);
	tcase_add_test(tc, test_peek_reads_only_the_header);
	tcase_add_test(tc, test_journal_round_trip);
	tcase_add_test(tc, test_dotted_and_escaped_names_load_back);
	tcase_add_test(tc, test_journal_of_changes_loads_back);
	tcase_add_test(tc, test_journal_cut_short_is_not_applied);
	tcase_add_test(tc, test_journal_resumed_after_a_load);
	tcase_add_test(tc, test_journal_not_ours_alone_is_only_read);
	tcase_add_test(tc, test_journal_records_a_file_no_longer_racy);
	tcase_add_test(tc, test_journal_racy_by_its_record);
	tcase_add_test(tc, test_journal_others_could_write_is_not_trusted);
	tcase_add_test(tc, test_peek_reads_the_journal);
	tcase_add_test(tc, test_error_file_round_trip);
	tcase_add_test(tc, test_damaged_error_file_is_refused);
	tcase_add_test(tc, test_error_file_others_could_write_is_not_trusted);
	tcase_add_test(tc, test_error_file_replaces_what_is_planted);
	tcase_add_test(tc, test_failed_record_names_its_file);
	tcase_add_test(tc, test_negative_recorded_time_round_trips);
	tcase_add_test(tc, test_checked_time_goes_with_the_state);
	tcase_add_test(tc, test_entries_are_counted_from_the_header);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(state_suite());
}
