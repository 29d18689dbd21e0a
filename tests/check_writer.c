/* The atomic writer: the Kubernetes AtomicWriter test suite ported case by
 * case (payloads become snapshots of real files), plus the rules atomsync
 * adds on top of it. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "snapshot.h"
#include "state.h"
#include "testutil.h"
#include "writer.h"

static char *tmp, *src, *dst;

/* fsync() as the writer calls it (linked with --wrap=fsync): the inodes
 * flushed since fsync_record(), up to FSYNCS_MAX of them. */
#define FSYNCS_MAX 256
int __real_fsync(int fd);
static pthread_mutex_t fsyncs_lock = PTHREAD_MUTEX_INITIALIZER;
static ino_t fsyncs[FSYNCS_MAX];
static size_t nfsyncs;

int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0) {
		pthread_mutex_lock(&fsyncs_lock);
		if (nfsyncs < FSYNCS_MAX)
			fsyncs[nfsyncs++] = st.st_ino;
		pthread_mutex_unlock(&fsyncs_lock);
	}
	return __real_fsync(fd);
}

/* The monotonic clock as the writer and these tests read it (linked
 * with --wrap=clock_gettime): `ahead_ms` ahead of the kernel's.  A test
 * that must act within a grace period gives one far longer than any
 * step takes, and skip_past() moves this clock past it at once: how
 * slow the machine is never decides what is due.  File times, and the
 * wall clock by which a start ages the generation it finds, are the
 * kernel's (wait_past() waits for real). */
int __real_clock_gettime(clockid_t id, struct timespec *ts);
static atomic_llong ahead_ms;

int __wrap_clock_gettime(clockid_t id, struct timespec *ts);
int __wrap_clock_gettime(clockid_t id, struct timespec *ts)
{
	int rc = __real_clock_gettime(id, ts);
	long long ahead = atomic_load(&ahead_ms);

	if (rc == 0 && id == CLOCK_MONOTONIC && ahead > 0) {
		ts->tv_sec += (time_t)(ahead / 1000);
		ts->tv_nsec += (long)(ahead % 1000) * 1000000L;
		if (ts->tv_nsec >= 1000000000L) {
			ts->tv_sec++;
			ts->tv_nsec -= 1000000000L;
		}
	}
	return rc;
}

/* Moves the monotonic clock (tu_now_ms()) past `due` at once. */
static void skip_past(long long due)
{
	long long now = tu_now_ms();

	if (now <= due)
		atomic_fetch_add(&ahead_ms, due - now + 1);
}

static void fsync_record(void)
{
	pthread_mutex_lock(&fsyncs_lock);
	nfsyncs = 0;
	pthread_mutex_unlock(&fsyncs_lock);
}

/* Whether `ino` was flushed since fsync_record(). */
static bool fsync_seen(ino_t ino)
{
	bool seen = false;

	pthread_mutex_lock(&fsyncs_lock);
	ck_assert_uint_lt(nfsyncs, FSYNCS_MAX);
	for (size_t i = 0; i < nfsyncs && !seen; i++)
		seen = fsyncs[i] == ino;
	pthread_mutex_unlock(&fsyncs_lock);
	return seen;
}

static void setup(void)
{
	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	tu_mkdirs(src, 0755);
	log_init(LOG_FMT_TEXT, LOG_LVL_ERROR);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(tmp);
}

static struct writer_opts opts(void)
{
	struct writer_opts o = {
		.fsync = true,
		.uid = SNAP_NO_ID,
		.gid = SNAP_NO_ID,
		.file_mode = -1,
		.dir_mode = -1,
		.grace_ms = 0,
		/* The Kubernetes writer publishes an empty payload. */
		.allow_empty = true,
	};
	return o;
}

static struct writer *open_writer_with(const struct writer_opts *o)
{
	struct writer *w = NULL;
	char *err = NULL;
	int rc = writer_open(dst, o, &w, &err);
	ck_assert_msg(rc == 0, "writer_open: %s", err ? err : strerror(-rc));
	return w;
}

static struct writer *open_writer(void)
{
	struct writer_opts o = opts();
	return open_writer_with(&o);
}

/* A grace period short enough for the tests of recycling to wait out. */
#define RECYCLE_GRACE_MS 30

static struct writer *open_recycling_writer(void)
{
	struct writer_opts o = opts();
	o.grace_ms = RECYCLE_GRACE_MS;
	return open_writer_with(&o);
}

/* A snapshot built the way Kubernetes builds a payload: each key (kept
 * verbatim, possibly unclean or invalid) maps to content, here a real file
 * in the source directory. */
static struct snapshot *payload_snapshot(const struct tu_file *payload)
{
	struct snapshot *s = NULL;
	char *err = NULL;

	/* Sources live under safe names so invalid keys can still have
	 * content. */
	tu_fill(src, (const struct tu_file[]){{NULL, 0, NULL}});
	ck_assert_int_eq(snapshot_open(src, &s, &err), 0);
	int k = 0;
	for (const struct tu_file *f = payload; f->path; f++, k++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", k);
		tu_write(src, name, f->data, f->mode);
		ck_assert_int_eq(snapshot_add_source(s, f->path, name), 0);
	}
	return s;
}

static int publish_payload(struct writer *w, const struct tu_file *payload,
			   struct writer_result *r, char **err)
{
	struct snapshot *s = payload_snapshot(payload);
	return writer_publish(w, s, r, err);
}

static int publish_tree(struct writer *w, struct writer_result *r, char **err)
{
	struct snapshot *s = NULL;
	int rc = snapshot_take(src, NULL, &s, err);
	if (rc < 0)
		return rc;
	return writer_publish(w, s, r, err);
}

/* Publishes the source, which must work, for what it leaves in the
 * target rather than for what it reports. */
static void publish_ok(struct writer *w)
{
	struct writer_result r = {0};
	char *err = NULL;
	int rc = publish_tree(w, &r, &err);
	ck_assert_msg(rc == 0, "%s", err ? err : strerror(-rc));
	writer_result_fini(&r);
	free(err);
}

#define ASSERT_TARGET(payload)                                               \
	do {                                                                 \
		char *d_ = tu_diff_target(dst, payload);                     \
		ck_assert_msg(d_ == NULL, "%s", d_);                         \
	} while (0)

#define ASSERT_TREES()                                                       \
	do {                                                                 \
		char *d_ = tu_diff_trees(src, dst);                          \
		ck_assert_msg(d_ == NULL, "%s", d_);                         \
	} while (0)

/* Publishes the source, which must differ from the target, and leaves
 * the target equal to it; closes `w`. */
static void publish_change_and_close(struct writer *w)
{
	struct writer_result r = {0};

	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
}

/* ---- Path validation (TestValidatePath, TestValidatePayload) ---- */

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_validate_path_cases)
{
	static const struct {
		const char *path;
		int valid;
	} cases[] = {
		{"i/am/well/behaved.txt", 1},
		{"keepyourheaddownandfollowtherules.txt", 1},
		{"/dev/null", 0},
		{"..sneaky.txt", 0},
		{"hello/there/../../../../../../etc/passwd", 0},
		{"hello/../etc/somethingbad", 0},
		{"hello/../etc/x", 0},
		{"", 0},
		{"foo/..bar", 1},
		{"foo//bar", 1},
		{"./bar", 1},
		{"..", 0},
		{"a/..", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		int rc = writer_validate_path(cases[i].path, &err);
		ck_assert_msg((rc == 0) == cases[i].valid, "%s: rc %d (%s)",
			      cases[i].path, rc, err ? err : "");
		if (rc < 0)
			ck_assert_msg(err && strstr(err, "invalid path"),
				      "error names the problem: %s", err);
		free(err);
	}
}
END_TEST

START_TEST(test_validate_path_lengths)
{
	char *err = NULL;
	char *p4097 = repeat('a', 4097), *n256 = repeat('a', 256);
	char *n255 = repeat('a', 255);

	ck_assert_int_lt(writer_validate_path(p4097, &err), 0);
	ck_assert_int_lt(writer_validate_path(n256, &err), 0);
	ck_assert_int_eq(writer_validate_path(n255, NULL), 0);

	/* Exactly 4096 bytes of names no longer than 255. */
	char *p = malloc(4097);
	size_t len = 0;
	for (int i = 0; i < 15; i++) {
		memset(p + len, 'a', 255);
		len += 255;
		p[len++] = '/';
	}
	memset(p + len, 'a', 254);
	len += 254;
	p[len++] = '/';
	p[len++] = 'b';
	p[len] = '\0';
	ck_assert_uint_eq(len, 4096);
	ck_assert_int_eq(writer_validate_path(p, NULL), 0);
	free(p);
	free(p4097);
	free(n256);
	free(n255);
	free(err);
}
END_TEST

START_TEST(test_clean_path)
{
	static const char *cases[][2] = {
		{"foo//bar", "foo/bar"}, {"./bar", "bar"},
		{"foo////bar", "foo/bar"}, {"bar///bar/zab.txt", "bar/bar/zab.txt"},
		{"a/./b/", "a/b"}, {"", "."}, {"/x/../y", "/y"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = snapshot_clean_path(cases[i][0]);
		ck_assert_str_eq(c, cases[i][1]);
		free(c);
	}
	/* A path as a snapshot holds it: what cleaning leaves as it is,
	 * relative and with no ".." element. */
	static const char *clean[] = {"a", "a/b", ".a", "a/.b", "a/b.",
				      "a/..b", "...", "a/..."};
	static const char *unclean[] = {"", "/a", ".", "..", "./a", "a/.",
					"a/./b", "a/..", "../a", "a/../b",
					"a//b", "a/", "/"};
	for (size_t i = 0; i < sizeof(clean) / sizeof(*clean); i++)
		ck_assert_msg(snapshot_path_is_clean(clean[i]), "%s", clean[i]);
	for (size_t i = 0; i < sizeof(unclean) / sizeof(*unclean); i++)
		ck_assert_msg(!snapshot_path_is_clean(unclean[i]), "%s",
			      unclean[i]);
}
END_TEST

START_TEST(test_payload_with_unclean_path_is_cleaned)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	const struct tu_file p[] = {{"foo////bar", 0644, "x"}, {NULL, 0, NULL}};

	ck_assert_int_eq(publish_payload(w, p, &r, NULL), 0);
	char *f = tu_path(dst, "foo/bar");
	char *d = tu_read(f, NULL);
	ck_assert_str_eq(d, "x");
	free(d);
	free(f);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

/* ---- Paths to remove (TestPathsToRemove) ---- */

static void check_removed(const struct tu_file *p1, const struct tu_file *p2,
			  const char *const *expected, size_t nexp)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	ck_assert_int_eq(publish_payload(w, p1, &r, NULL), 0);
	writer_result_fini(&r);
	ck_assert_int_eq(publish_payload(w, p2, &r, NULL), 0);
	ck_assert_uint_eq(r.removed, nexp);
	for (size_t i = 0; i < nexp; i++) {
		char *rel = tu_path("..data", expected[i]);
		char *p = tu_path(dst, rel);
		struct stat st;
		ck_assert_msg(lstat(p, &st) < 0 && errno == ENOENT,
			      "%s should be gone", expected[i]);
		free(p);
		free(rel);
	}
	ASSERT_TARGET(p2);
	writer_result_fini(&r);
	writer_close(w);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(test_paths_to_remove_simple)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"bar.txt", 0644, "bar"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"}, {NULL, 0, NULL}};
	const char *exp[] = {"bar.txt"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

START_TEST(test_paths_to_remove_subdir_file_and_empty_dirs)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"zip/bar.txt", 0644, "zip/b}ar"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"}, {NULL, 0, NULL}};
	const char *exp[] = {"zip/bar.txt", "zip"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

START_TEST(test_paths_to_remove_two_levels)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"zip/zap/bar.txt", 0644, "zip/bar"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"}, {NULL, 0, NULL}};
	const char *exp[] = {"zip/zap/bar.txt", "zip", "zip/zap"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

START_TEST(test_paths_to_remove_five_level_chain)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"zip/1/2/3/4/bar.txt", 0644, "zip/b}ar"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"}, {NULL, 0, NULL}};
	const char *exp[] = {"zip/1/2/3/4/bar.txt", "zip", "zip/1", "zip/1/2",
			     "zip/1/2/3", "zip/1/2/3/4"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

START_TEST(test_paths_to_remove_two_chains)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"zip/1/2/3/4/bar.txt", 0644, "zip/b}ar"},
				     {"zap/a/b/c/bar.txt", 0644, "zap/bar"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"}, {NULL, 0, NULL}};
	const char *exp[] = {"zip/1/2/3/4/bar.txt", "zip", "zip/1", "zip/1/2",
			     "zip/1/2/3", "zip/1/2/3/4", "zap", "zap/a",
			     "zap/a/b", "zap/a/b/c", "zap/a/b/c/bar.txt"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

START_TEST(test_paths_to_remove_keeps_shared_ancestors)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"zap/1/2/3/4/bar.txt", 0644, "zip/bar"},
				     {"zap/1/2/c/bar.txt", 0644, "zap/bar"},
				     {"zap/1/2/magic.txt", 0644, "indigo"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"},
				     {"zap/1/2/magic.txt", 0644, "indigo"},
				     {NULL, 0, NULL}};
	const char *exp[] = {"zap/1/2/3/4/bar.txt", "zap/1/2/3", "zap/1/2/3/4",
			     "zap/1/2/c", "zap/1/2/c/bar.txt"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

START_TEST(test_paths_to_remove_new_path_protects_ancestors)
{
	const struct tu_file p1[] = {{"foo.txt", 0644, "foo"},
				     {"zap/1/2/3/4/bar.txt", 0644, "zip/bar"},
				     {"zap/1/2/c/bar.txt", 0644, "zap/bar"},
				     {NULL, 0, NULL}};
	const struct tu_file p2[] = {{"foo.txt", 0644, "foo"},
				     {"zap/1/2/magic.txt", 0644, "indigo"},
				     {NULL, 0, NULL}};
	const char *exp[] = {"zap/1/2/3/4/bar.txt", "zap/1/2/3", "zap/1/2/3/4",
			     "zap/1/2/c", "zap/1/2/c/bar.txt"};
	check_removed(p1, p2, exp, N(exp));
}
END_TEST

/* ---- Write once into an empty target (TestWriteOnce) ---- */

/* 125 bytes of an ELF binary, as the Kubernetes test uses. */
static const unsigned char mystery[] = {
	0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x3e, 0x00, 0x01, 0x00, 0x00, 0x00,
	0x78, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x38, 0x00, 0x01, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x7d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7d, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xb0, 0x3c, 0x99, 0x0f, 0x05,
};

static void assert_nothing_written(void)
{
	char *live = tu_live(dst);
	ck_assert_msg(live == NULL, "..data exists: %s", live);
	ck_assert_int_eq(tu_generations(dst), 0);
	ck_assert_int_eq(tu_count_entries(dst), 0);
}

START_TEST(test_write_once_invalid_reserved_fails_whole)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *err = NULL;
	const struct tu_file p[] = {{"foo", 0644, "foo"},
				    {"..bar", 0644, "bar"},
				    {"binary.bin", 0644, "bin"},
				    {NULL, 0, NULL}};

	ck_assert_int_lt(publish_payload(w, p, &r, &err), 0);
	ck_assert_msg(err && strstr(err, "..bar"), "error names the path: %s",
		      err);
	assert_nothing_written();
	free(err);
	writer_close(w);
}
END_TEST

START_TEST(test_write_once_invalid_doubledot_fails_whole)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *err = NULL;
	const struct tu_file p[] = {{"foo/../bar", 0644, "foo"}, {NULL, 0, NULL}};

	ck_assert_int_lt(publish_payload(w, p, &r, &err), 0);
	ck_assert_msg(err && strstr(err, "foo/../bar"), "%s", err);
	assert_nothing_written();
	free(err);
	writer_close(w);
}
END_TEST

static void write_once(const struct tu_file *p)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *err = NULL;
	int rc = publish_payload(w, p, &r, &err);

	ck_assert_msg(rc == 0, "%s", err);
	ck_assert(r.published);
	ASSERT_TARGET(p);
	writer_result_fini(&r);
	writer_close(w);
}

START_TEST(test_write_once_basic)
{
	const struct tu_file p[] = {{"foo", 0644, "foo"},
				    {"bar", 0644, "bar"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_binary_and_dotfile)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct snapshot *s = NULL;

	tu_write_len(src, "binary.bin", mystery, sizeof(mystery), 0644);
	tu_write_len(src, ".binary.bin", mystery, sizeof(mystery), 0644);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	ck_assert_int_eq(writer_publish(w, s, &r, NULL), 0);
	ASSERT_TREES();
	char *p = tu_path(dst, ".binary.bin");
	size_t len = 0;
	char *d = tu_read(p, &len);
	ck_assert_uint_eq(len, 125);
	ck_assert(memcmp(d, mystery, 125) == 0);
	free(d);
	free(p);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

START_TEST(test_write_once_modes)
{
	const struct tu_file p[] = {{"foo", 0777, "foo"},
				    {"bar", 0400, "bar"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

/* A file is made with its mode where no one else can reach it, and the
 * umask takes bits from that: they are put back. */
START_TEST(test_write_once_modes_whatever_the_umask)
{
	const struct tu_file p[] = {{"foo", 0644, "foo"},
				    {"d/bar", 0755, "bar"},
				    {"baz", 0400, "baz"},
				    {NULL, 0, NULL}};
	mode_t um = umask(077);

	write_once(p);
	umask(um);
}
END_TEST

START_TEST(test_write_once_dotfiles)
{
	const struct tu_file p[] = {{"foo", 0644, "foo"},
				    {"bar", 0644, "bar"},
				    {".dotfile", 0644, "dotfile"},
				    {".dotfile.file", 0644, "dotfile.file"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_dotfile_modes)
{
	const struct tu_file p[] = {{"foo", 0407, "foo"},
				    {"bar", 0440, "bar"},
				    {".dotfile", 0777, "dotfile"},
				    {".dotfile.file", 0666, "dotfile.file"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_subdirectories)
{
	const struct tu_file p[] = {{"foo/bar.txt", 0644, "foo/bar"},
				    {"bar/zab.txt", 0644, "bar/zab.txt"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_subdirectory_modes)
{
	const struct tu_file p[] = {{"foo/bar.txt", 0400, "foo/bar"},
				    {"bar/zab.txt", 0644, "bar/zab.txt"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_unclean_subdirectories)
{
	const struct tu_file p[] = {{"foo//bar.txt", 0644, "foo//bar"},
				    {"bar///bar/zab.txt", 0644, "bar/../bar/zab.txt"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_nested_subdirectories)
{
	const struct tu_file p[] = {{"foo/bar.txt", 0644, "foo/bar"},
				    {"bar/zab.txt", 0644, "bar/zab.txt"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar"},
				    {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt"},
				    {NULL, 0, NULL}};
	write_once(p);
}
END_TEST

START_TEST(test_write_once_kitchen_sink)
{
	const struct tu_file p[] = {
		{"foo.log", 0644, "foo"},
		{"bar.zap", 0644, "bar"},
		{".dotfile", 0644, "dotfile"},
		{"foo/bar.txt", 0644, "foo/bar"},
		{"bar/zab.txt", 0644, "bar/zab.txt"},
		{"foo/blaz/bar.txt", 0644, "foo/blaz/bar"},
		{"bar/zib/zab.txt", 0400, "bar/zib/zab.txt"},
		{"1/2/3/4/5/6/7/8/9/10/.dotfile.lib", 0777, "1-2-3-dotfile"},
		{NULL, 0, NULL}};
	write_once(p);
}
END_TEST

/* ---- Update (TestUpdate) ---- */

static void update(const struct tu_file *first, const struct tu_file *next,
		   int should_write)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *err = NULL;

	ck_assert_int_eq(publish_payload(w, first, &r, &err), 0);
	ASSERT_TARGET(first);
	char *gen1 = tu_live(dst);
	writer_result_fini(&r);
	ck_assert_msg(publish_payload(w, next, &r, &err) == 0, "%s", err);
	ASSERT_TARGET(next);
	char *gen2 = tu_live(dst);
	ck_assert_int_eq(r.published, should_write);
	if (should_write)
		ck_assert_str_ne(gen1, gen2);
	else
		ck_assert_str_eq(gen1, gen2);
	/* Only the live generation remains. */
	ck_assert_int_eq(tu_generations(dst), 1);
	free(gen1);
	free(gen2);
	writer_result_fini(&r);
	writer_close(w);
}

START_TEST(test_update_content_and_mode)
{
	const struct tu_file a[] = {{"foo", 0644, "foo"}, {"bar", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo", 0644, "foo2"}, {"bar", 0640, "bar2"},
				    {NULL, 0, NULL}};
	update(a, b, 1);
}
END_TEST

START_TEST(test_update_identical_flat_writes_nothing)
{
	const struct tu_file a[] = {{"foo", 0644, "foo"}, {"bar", 0644, "bar"},
				    {NULL, 0, NULL}};
	update(a, a, 0);
}
END_TEST

START_TEST(test_update_identical_nested_writes_nothing)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/zab.txt", 0644, "bar"},
				    {NULL, 0, NULL}};
	update(a, a, 0);
}
END_TEST

static const struct tu_file two_dirs[] = {{"foo/bar.txt", 0644, "foo"},
					  {"bar/zab.txt", 0644, "bar"},
					  {NULL, 0, NULL}};

START_TEST(test_update_add_top_level_dir)
{
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/zab.txt", 0644, "bar"},
				    {"blu/zip.txt", 0644, "zip"},
				    {NULL, 0, NULL}};
	update(two_dirs, b, 1);
}
END_TEST

START_TEST(test_update_add_deep_path)
{
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/zab.txt", 0644, "bar"},
				    {"blu/two/2/3/4/5/zip.txt", 0644, "zip"},
				    {NULL, 0, NULL}};
	update(two_dirs, b, 1);
}
END_TEST

START_TEST(test_update_add_deep_path_under_existing_dir)
{
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/zab.txt", 0644, "bar"},
				    {"bar/2/3/4/5/zip.txt", 0644, "zip"},
				    {NULL, 0, NULL}};
	update(two_dirs, b, 1);
}
END_TEST

START_TEST(test_update_delete_removes_top_level_link)
{
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"}, {NULL, 0, NULL}};
	update(two_dirs, b, 1);
	char *p = tu_path(dst, "bar");
	struct stat st;
	ck_assert(lstat(p, &st) < 0 && errno == ENOENT);
	free(p);
}
END_TEST

START_TEST(test_update_delete_deep)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/1/2/3/zab.txt", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"}, {NULL, 0, NULL}};
	update(a, b, 1);
}
END_TEST

START_TEST(test_update_delete_deep_with_surviving_sibling)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/1/2/sip.txt", 0644, "sip"},
				    {"bar/1/2/3/zab.txt", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/1/2/sip.txt", 0644, "sip"},
				    {NULL, 0, NULL}};
	update(a, b, 1);
}
END_TEST

START_TEST(test_update_delete_deeper_with_surviving_sibling)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/1/2/sip.txt", 0644, "sip"},
				    {"bar/1/2/3/4/5/6zab.txt", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/1/2/sip.txt", 0644, "sip"},
				    {NULL, 0, NULL}};
	update(a, b, 1);
}
END_TEST

START_TEST(test_update_delete_all)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo"},
				    {"bar/1/2/sip.txt", 0644, "sip"},
				    {"bar/1/2/3/4/5/6zab.txt", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{NULL, 0, NULL}};
	update(a, b, 1);
	/* No visible names remain: only ..data, its generation, the state
	 * and the journal of what the second publish changed. */
	ck_assert_int_eq(tu_count_entries(dst), 4);
	char *journal = tu_path(dst, STATE_JOURNAL);
	ck_assert_int_eq(access(journal, F_OK), 0);
	free(journal);
}
END_TEST

START_TEST(test_update_replace_top_level_dir)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo"}, {NULL, 0, NULL}};
	const struct tu_file b[] = {{"bar/baz.txt", 0644, "baz"}, {NULL, 0, NULL}};
	update(a, b, 1);
}
END_TEST

/* ---- Multiple updates (TestMultipleUpdates) ---- */

static void multiple(const struct tu_file *const *steps, size_t n)
{
	struct writer *w = open_writer();
	for (size_t i = 0; i < n; i++) {
		struct writer_result r = {0};
		char *err = NULL;
		ck_assert_msg(publish_payload(w, steps[i], &r, &err) == 0,
			      "step %zu: %s", i, err);
		ASSERT_TARGET(steps[i]);
		ck_assert_int_eq(tu_generations(dst), 1);
		writer_result_fini(&r);
	}
	writer_close(w);
}

START_TEST(test_multiple_updates_modes)
{
	const struct tu_file a[] = {{"foo", 0644, "foo"}, {"bar", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo", 0400, "foo2"}, {"bar", 0400, "bar2"},
				    {NULL, 0, NULL}};
	const struct tu_file c[] = {{"foo", 0600, "foo3"}, {"bar", 0600, "bar3"},
				    {NULL, 0, NULL}};
	const struct tu_file *steps[] = {a, b, c};
	multiple(steps, 3);
}
END_TEST

START_TEST(test_multiple_updates_nested_modes)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo/bar"},
				    {"bar/zab.txt", 0644, "bar/zab.txt"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo/bar2"},
				    {"bar/zab.txt", 0400, "bar/zab.txt2"},
				    {NULL, 0, NULL}};
	const struct tu_file *steps[] = {a, b};
	multiple(steps, 2);
}
END_TEST

START_TEST(test_multiple_updates_four_in_a_row)
{
	const struct tu_file a[] = {{"foo", 0644, "foo"}, {"bar", 0644, "bar"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo", 0644, "foo2"}, {"bar", 0644, "bar2"},
				    {NULL, 0, NULL}};
	const struct tu_file c[] = {{"foo", 0644, "foo3"}, {"bar", 0644, "bar3"},
				    {NULL, 0, NULL}};
	const struct tu_file d[] = {{"foo", 0644, "foo4"}, {"bar", 0644, "bar4"},
				    {NULL, 0, NULL}};
	const struct tu_file *steps[] = {a, b, c, d};
	multiple(steps, 4);
}
END_TEST

START_TEST(test_multiple_updates_subdirectories)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo/bar"},
				    {"bar/zab.txt", 0644, "bar/zab.txt"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar"},
				    {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo/bar2"},
				    {"bar/zab.txt", 0644, "bar/zab.txt2"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2"},
				    {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2"},
				    {NULL, 0, NULL}};
	const struct tu_file *steps[] = {a, b};
	multiple(steps, 2);
}
END_TEST

START_TEST(test_multiple_updates_add_into_existing_dirs)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo/bar"},
				    {"bar//zab.txt", 0644, "bar/zab.txt"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar"},
				    {"bar/zib////zib/zab.txt", 0644, "bar/zib/zab.txt"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo/bar2"},
				    {"bar/zab.txt", 0644, "bar/zab.txt2"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2"},
				    {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2"},
				    {"add/new/keys.txt", 0644, "addNewKeys"},
				    {NULL, 0, NULL}};
	const struct tu_file c[] = {{"foo/bar.txt", 0644, "foo/bar2"},
				    {"bar/zab.txt", 0644, "bar/zab.txt2"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2"},
				    {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2"},
				    {"add/new/keys.txt", 0644, "addNewKeys"},
				    {"add/new/keys2.txt", 0644, "addNewKeys2"},
				    {"add/new/keys3.txt", 0644, "addNewKeys3"},
				    {NULL, 0, NULL}};
	const struct tu_file *steps[] = {a, b, c};
	multiple(steps, 3);
}
END_TEST

START_TEST(test_multiple_updates_pruning)
{
	const struct tu_file a[] = {{"foo/bar.txt", 0644, "foo/bar"},
				    {"bar//zab.txt", 0644, "bar/zab.txt"},
				    {"foo/blaz/bar.txt", 0644, "foo/blaz/bar"},
				    {"zip/zap/zup/fop.txt", 0644, "zip/zap/zup/fop.txt"},
				    {NULL, 0, NULL}};
	const struct tu_file b[] = {{"foo/bar.txt", 0644, "foo/bar2"},
				    {"bar/zab.txt", 0644, "bar/zab.txt2"},
				    {NULL, 0, NULL}};
	const struct tu_file c[] = {{"foo/bar.txt", 0644, "foo/bar"}, {NULL, 0, NULL}};
	const struct tu_file *steps[] = {a, b, c};
	multiple(steps, 3);
}
END_TEST

/* ---- Visible links (TestCreateUserVisibleFiles) ---- */

static void assert_link(const char *name, const char *want)
{
	char *p = tu_path(dst, name);
	char buf[256];
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	ck_assert_msg(n > 0, "%s is not a symlink", name);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
	free(p);
}

START_TEST(test_visible_links_top_level_only)
{
	const struct tu_file p[] = {{"foo", 0644, "a"},
				    {"bar/txt", 0644, "b"},
				    {"baz/qux/txt", 0644, "c"},
				    {"./zip", 0644, "d"},
				    {"zap///zup", 0644, "e"},
				    {NULL, 0, NULL}};
	write_once(p);
	assert_link("foo", "..data/foo");
	assert_link("bar", "..data/bar");
	assert_link("baz", "..data/baz");
	assert_link("zip", "..data/zip");
	assert_link("zap", "..data/zap");
	/* foo, bar, baz, zip, zap + ..data, generation, state file */
	ck_assert_int_eq(tu_count_entries(dst), 8);
}
END_TEST

START_TEST(test_write_again_after_crash_restores_links)
{
	const struct tu_file p[] = {{"foo", 0644, "a"}, {"bar/x", 0644, "b"},
				    {NULL, 0, NULL}};
	struct writer *w = open_writer();
	struct writer_result r = {0};

	ck_assert_int_eq(publish_payload(w, p, &r, NULL), 0);
	writer_result_fini(&r);
	writer_close(w);
	char *gen = tu_live(dst);
	char *foo = tu_path(dst, "foo"), *bar = tu_path(dst, "bar");
	ck_assert_int_eq(unlink(foo), 0);
	ck_assert_int_eq(unlink(bar), 0);

	w = open_writer();
	ck_assert_int_eq(publish_payload(w, p, &r, NULL), 0);
	ASSERT_TARGET(p);
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	writer_result_fini(&r);
	writer_close(w);
	free(foo);
	free(bar);
	free(gen);
	free(gen2);
}
END_TEST

/* In a target only root or we can change, the visible links of the
 * names a publish keeps are not looked at: one root removed comes back
 * at the next full check.  New names are looked at (one taken by
 * something else is refused) and linked, and a name that left loses its
 * link. */
START_TEST(test_visible_links_looked_at_where_names_change)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *err = NULL;
	struct stat st;

	tu_write(src, "a", "1", 0644);
	tu_write(src, "b/f", "b", 0644);
	publish_ok(w);
	char *b = tu_path(dst, "b"), *c = tu_path(dst, "c");
	char *sa = tu_path(src, "a"), *da = tu_path(dst, "a");
	ck_assert_int_eq(unlink(b), 0);
	tu_write(src, "a", "2", 0644);
	publish_ok(w);
	ck_assert_int_ne(lstat(b, &st), 0); /* not looked at */
	tu_write(dst, "c", "someone's", 0644);
	tu_write(src, "c", "new", 0644);
	ck_assert_int_eq(publish_tree(w, &r, &err), -EEXIST);
	ck_assert_msg(err && strstr(err, "c exists"), "%s", err);
	writer_result_fini(&r);
	ck_assert_int_eq(unlink(c), 0);
	ck_assert_int_eq(unlink(sa), 0);
	publish_ok(w);
	assert_link("c", "..data/c");
	ck_assert_int_ne(lstat(da, &st), 0);
	ck_assert_int_ne(lstat(b, &st), 0);
	writer_verify_next(w);
	publish_ok(w); /* nothing changed: the full check links b again */
	assert_link("b", "..data/b");
	ASSERT_TREES();
	writer_close(w);
	free(err);
	free(da);
	free(sa);
	free(c);
	free(b);
}
END_TEST

/* A target that others can write is refused: at the start, and by the
 * first publish after it became so, which leaves the live generation
 * as it was; once it is ours alone again, publishing goes on. */
START_TEST(test_a_target_others_can_write_is_refused)
{
	char *err = NULL;
	struct writer *w = NULL;
	struct writer_opts o = opts();

	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(chmod(dst, 0777), 0);
	ck_assert_int_eq(writer_open(dst, &o, &w, &err), -EPERM);
	ck_assert_msg(err && strstr(err, dst) &&
			      strstr(err, "writable by its group and others "
					  "(mode 0777)"),
		      "%s", err);
	ck_assert_int_eq(tu_count_entries(dst), 0);
	free(err);
	err = NULL;
	ck_assert_int_eq(chmod(dst, 0755), 0);
	w = open_writer();
	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	char *live = tu_live(dst);
	ck_assert_int_eq(chmod(dst, 0775), 0);
	ck_assert_int_eq(writer_check_target(w, &err), -EPERM);
	ck_assert_msg(err && strstr(err, "writable by its group (mode 0775)"),
		      "%s", err);
	free(err);
	err = NULL;
	struct writer_result r = {0};
	tu_write(src, "a", "2", 0644);
	ck_assert_int_eq(publish_tree(w, &r, &err), -EPERM);
	ck_assert_msg(err && strstr(err, "refusing to publish into it"), "%s",
		      err);
	writer_result_fini(&r);
	free(err);
	err = NULL;
	char *now = tu_live(dst);
	ck_assert_str_eq(now, live);
	free(now);
	ck_assert_int_eq(chmod(dst, 0755), 0);
	ck_assert_int_eq(writer_check_target(w, &err), 0);
	publish_ok(w);
	ASSERT_TREES();
	writer_close(w);
	free(live);
}
END_TEST

/* What a caller adds to a walked snapshot is checked like any entry
 * made by hand: its path cleaned, its missing parent made. */
START_TEST(test_entry_added_to_a_walk_is_checked)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct snapshot *s = NULL;
	char *err = NULL;

	tu_write(src, "a", "1", 0644);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, &err), 0);
	struct snap_entry e = {.path = "extra//./sub", .type = SNAP_DIR,
			       .mode = 0755, .uid = SNAP_NO_ID,
			       .gid = SNAP_NO_ID};
	ck_assert_int_eq(snapshot_add(s, &e), 0);
	ck_assert_int_eq(writer_publish(w, s, &r, &err), 0);
	writer_result_fini(&r);
	char *sub = tu_path(dst, "..data/extra/sub");
	struct stat st;
	ck_assert_int_eq(stat(sub, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	assert_link("extra", "..data/extra");
	writer_close(w);
	free(sub);
	free(err);
}
END_TEST

START_TEST(test_mode_only_change_publishes)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	tu_write(src, "f", "same", 0644);
	publish_ok(w);
	char *f = tu_path(src, "f");
	ck_assert_int_eq(chmod(f, 0600), 0);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 1);
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
	free(f);
}
END_TEST

/* ---- Rules beyond Kubernetes ---- */

START_TEST(test_unchanged_tree_writes_nothing)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct stat a, b, sa, sb;

	tu_write(src, "a/b/c", "c", 0644);
	tu_write(src, "d", "d", 0600);
	/* Past the window in which a file's times cannot tell a write that
	 * follows (50 ms here): else a publish that finds them past it
	 * later records them as settled, which is a write.  That takes
	 * 50 ms after the files were written, under valgrind say. */
	tu_nap(60);
	publish_ok(w);
	char *state = tu_path(dst, STATE_FILE);
	ck_assert_int_eq(stat(dst, &a), 0);
	ck_assert_int_eq(stat(state, &sa), 0);
	tu_nap(20);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
		ck_assert(!r.published);
		writer_result_fini(&r);
	}
	writer_close(w);
	/* A new writer (as a new --once run) also finds nothing to do. */
	w = open_writer();
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
	writer_close(w);
	ck_assert_int_eq(stat(dst, &b), 0);
	ck_assert_int_eq(stat(state, &sb), 0);
	ck_assert(a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
		  a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);
	ck_assert(sa.st_ino == sb.st_ino &&
		  sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec);
	ck_assert_int_eq(tu_generations(dst), 1);
	free(state);
}
END_TEST

START_TEST(test_same_size_edit_same_second_publishes)
{
	struct writer *w = open_writer();
	struct stat st;

	tu_write(src, "f", "aaaa", 0644);
	char *f = tu_path(src, "f");
	ck_assert_int_eq(stat(f, &st), 0);
	publish_ok(w);
	/* Same size, and the mtime put back: only ctime tells. */
	tu_write(src, "f", "bbbb", 0644);
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	ck_assert_int_eq(utimensat(AT_FDCWD, f, ts, 0), 0);
	publish_change_and_close(w);
	free(f);
}
END_TEST

/* Waits until the realtime clock is `ms` past the change time of the
 * file `rel` below `root` (or past now, when it is gone): its times then
 * prove it unchanged. */
static void wait_settled(const char *root, const char *rel, int ms)
{
	char *f = tu_path(root, rel);
	struct stat st;
	struct timespec now;

	if (stat(f, &st) < 0)
		clock_gettime(CLOCK_REALTIME, &st.st_ctim);
	do {
		tu_nap(5);
		clock_gettime(CLOCK_REALTIME, &now);
	} while (clock_ts_ns(&now) <
		 clock_ts_ns(&st.st_ctim) + (int64_t)ms * 1000000);
	free(f);
}

/* Two dates past 2262 compare equal as the record holds them (see
 * struct snap_entry): an edit of the same size that dates the file anew
 * that far is still published, told by its ctime. */
START_TEST(test_same_size_edit_dated_far_ahead_publishes)
{
	struct writer *w = open_writer();
	struct timespec far[2] = {{0, UTIME_OMIT}, {17961359744568LL, 0}};
	struct stat st;
	char *f = tu_path(src, "f");

	tu_write(src, "f", "aaaa", 0644);
	ck_assert_int_eq(utimensat(AT_FDCWD, f, far, 0), 0);
	ck_assert_int_eq(stat(f, &st), 0);
	ck_assert_int_gt(st.st_mtim.tv_sec, 9223372036LL); /* past 2262 */
	wait_settled(src, "f", 100); /* its times alone tell it unchanged */
	publish_ok(w);
	tu_write(src, "f", "bbbb", 0644);
	far[1].tv_sec++;
	ck_assert_int_eq(utimensat(AT_FDCWD, f, far, 0), 0);
	publish_change_and_close(w);
	free(f);
}
END_TEST

/* A live file whose recorded modification time is held at a limit (it
 * was dated past 2262 when the record learned it) is not trusted by its
 * times: edited in place and dated far again, it is written afresh. */
START_TEST(test_live_file_dated_far_is_not_trusted_by_its_times)
{
	struct writer *w = open_writer();
	struct timespec far[2] = {{0, UTIME_OMIT}, {17961359744568LL, 0}};
	char *live = tu_path(dst, "..data/f");
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct snapshot *s = NULL;
	char *gen = NULL;
	bool sound = false;

	tu_write(src, "f", "aaaa", 0644);
	wait_settled(src, "f", 100); /* its times alone tell it unchanged */
	publish_ok(w);
	writer_close(w);
	/* The record as a look at the far-dated file would have made it. */
	ck_assert_int_eq(utimensat(AT_FDCWD, live, far, 0), 0);
	ck_assert_int_eq(state_load(dfd, 100, &s, &gen, &sound), 0);
	snapshot_find(s, "f")->t_mtime_ns = INT64_MAX;
	ck_assert_int_eq(state_save(dfd, s, gen, sound), 0);
	/* Then the live file is edited, same size, and dated far again. */
	struct stat st;
	ck_assert_int_eq(stat(live, &st), 0);
	int fd = open(live, O_WRONLY | O_CLOEXEC); /* in place: same inode */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "zzzz", 4), 4);
	close(fd);
	ck_assert_int_eq(chmod(live, st.st_mode & 07777), 0);
	far[1].tv_sec++;
	ck_assert_int_eq(utimensat(AT_FDCWD, live, far, 0), 0);
	w = open_writer(); /* a start checks every live file */
	publish_change_and_close(w);
	snapshot_free(s);
	free(gen);
	close(dfd);
	free(live);
}
END_TEST

START_TEST(test_equal_metadata_within_racy_window_compares_content)
{
	/* The live copy differs from the source while every bit of source
	 * metadata matches the state: only a byte compare can tell, and it
	 * must happen for a file written this close to the last publish. */
	struct writer *w = open_writer();

	tu_write(src, "f", "aaaa", 0644);
	publish_ok(w);
	char *live = tu_path(dst, "..data/f");
	ck_assert_int_eq(chmod(live, 0644), 0);
	tu_write(dst, "..data/f", "zzzz", 0644);
	publish_change_and_close(w);
	free(live);
}
END_TEST

/* Rewrites the state file in `dst` as if the record of `path` had been
 * made with the times *st has, in the same timestamp tick as they were
 * set: what a record looks like when the file was written again within
 * the tick in which it was looked at. */
static void record_in_the_tick_of(const char *path, const struct stat *st)
{
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct snapshot *s = NULL;
	char *gen = NULL;
	bool sound = false;

	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(state_load(dfd, 100, &s, &gen, &sound), 0);
	struct snap_entry *e = snapshot_find(s, path);
	ck_assert_ptr_nonnull(e);
	e->mtime_ns = clock_ts_ns(&st->st_mtim);
	e->ctime_ns = clock_ts_ns(&st->st_ctim);
	s->taken = st->st_ctim;
	ck_assert_int_eq(state_save(dfd, s, gen, sound), 0);
	snapshot_free(s);
	free(gen);
	close(dfd);
}

/* Times recorded in the tick of a change prove nothing, however settled
 * the file is when it is next looked at: a same-size rewrite in that tick
 * left them as recorded, and only its bytes tell.  A file that had
 * settled when it was recorded is trusted by its times. */
START_TEST(test_a_record_made_in_the_tick_of_a_change_is_compared)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct stat st;

	tu_write(src, "g", "gggg", 0644);
	tu_nap(120); /* g has settled when f changes */
	tu_write(src, "f", "aaaa", 0644);
	publish_ok(w);
	writer_close(w);
	tu_write(src, "f", "bbbb", 0644);
	char *f = tu_path(src, "f");
	ck_assert_int_eq(stat(f, &st), 0);
	record_in_the_tick_of("f", &st);
	tu_nap(120); /* the next look finds f settled */
	w = open_writer();
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 1);
	ck_assert_uint_eq(r.compared, 1);
	ck_assert_uint_eq(r.linked, 1);
	ASSERT_TREES();
	writer_result_fini(&r);
	/* Copied once it had settled: its times now suffice. */
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	ck_assert_uint_eq(r.compared, 0);
	writer_result_fini(&r);
	writer_close(w);
	free(f);
}
END_TEST

/* Whether this process has `path` open. */
static bool have_open(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	bool found = false;

	ck_assert_ptr_nonnull(d);
	while (!found && (de = readdir(d)) != NULL) {
		char to[4096];
		ssize_t n = readlinkat(dirfd(d), de->d_name, to, sizeof(to) - 1);
		if (n > 0) {
			to[n] = '\0';
			found = strcmp(to, path) == 0;
		}
	}
	closedir(d);
	return found;
}

/* Whether this process has a file of `dir` open to write. */
static bool writes_in(const char *dir)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	size_t n = strlen(dir);
	bool found = false;

	ck_assert_ptr_nonnull(d);
	while (!found && (de = readdir(d)) != NULL) {
		char to[4096], info[320];
		ssize_t len = readlinkat(dirfd(d), de->d_name, to, sizeof(to) - 1);
		if (len <= 0)
			continue;
		to[len] = '\0';
		if (strncmp(to, dir, n) != 0 || to[n] != '/')
			continue;
		snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", de->d_name);
		char *text = tu_read(info, NULL), *flags = strstr(text, "flags:");
		found = flags && (strtoul(flags + 6, NULL, 8) & O_ACCMODE) !=
					 O_RDONLY;
		free(text);
	}
	closedir(d);
	return found;
}

/* Between publishes a writer holds nothing in the target open to write
 * (the lock file is open to read, the journal opened for each record),
 * so that its file system can be remounted read-only; a dry run (and
 * --status, which opens its writer as one) records nothing. */
START_TEST(test_dry_run_only_reads_the_journal)
{
	struct writer_result r = {0};
	struct writer *w = open_writer();
	char *journal = tu_path(dst, STATE_JOURNAL);
	struct stat before, after;

	for (int i = 0; i < 2; i++) {
		tu_write(src, "f", i ? "two" : "one", 0644);
		tu_nap(120);
		publish_ok(w);
		ck_assert(!writes_in(dst));
	}
	writer_close(w);
	ck_assert_int_eq(access(journal, F_OK), 0);
	ck_assert(!have_open(journal));
	w = open_writer();
	ck_assert(!writes_in(dst));
	writer_close(w);
	ck_assert_int_eq(stat(journal, &before), 0);
	struct writer_opts o = opts();
	o.dry_run = true;
	w = open_writer_with(&o);
	tu_write(src, "f", "three", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
	writer_close(w);
	ck_assert_int_eq(stat(journal, &after), 0);
	ck_assert_int_eq(after.st_size, before.st_size);
	ck_assert_int_eq(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	ck_assert_int_eq(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	free(journal);
}
END_TEST

/* A new writer trusts the state it loads: with the source as it is,
 * nothing is published and no file is compared. */
static void assert_restart_trusts_the_state(void)
{
	struct writer_result r = {0};
	struct writer *w = open_writer();

	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	ck_assert_uint_eq(r.compared, 0);
	writer_result_fini(&r);
	writer_close(w);
}

/* A restart trusts the state the journal brings up to date: nothing is
 * compared.  One whose last record a crash cut short names an older
 * generation: every file is compared, and the target stays right. */
START_TEST(test_restart_trusts_the_state_its_journal_completes)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "d%d/f%d", i % 4, i);
		tu_write_deep(src, name, name);
	}
	tu_nap(120);
	publish_ok(w);
	for (int i = 0; i < 3; i++) {
		tu_write(src, "d1/f1", i == 1 ? "one" : "two!", 0644);
		tu_nap(120); /* settled when looked at */
		publish_ok(w);
	}
	writer_close(w);
	char *journal = tu_path(dst, STATE_JOURNAL);
	size_t len = 0;
	char *text = tu_read(journal, &len);
	ck_assert_ptr_nonnull(strstr(text, "\nrecord "));
	assert_restart_trusts_the_state();
	/* A new writer goes on with the journal: even its first publish
	 * adds a record, and the state file stays (a --once run of one
	 * change costs what changed). */
	char *state = tu_path(dst, STATE_FILE);
	struct stat st0, st;
	ck_assert_int_eq(stat(state, &st0), 0);
	w = open_writer();
	for (int i = 0; i < 2; i++) {
		tu_write(src, "d1/f1", i ? "four" : "three", 0644);
		tu_nap(120);
		publish_ok(w);
		ck_assert_int_eq(stat(state, &st), 0);
		ck_assert_uint_eq(st.st_ino, st0.st_ino);
	}
	writer_close(w);
	free(text);
	text = tu_read(journal, &len);
	/* The last record cut short. */
	tu_write_len(dst, STATE_JOURNAL, text, len - 8, 0600);
	w = open_writer();
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	ck_assert_uint_eq(r.compared, 20);
	ASSERT_TREES();
	writer_result_fini(&r);
	/* Nothing went after it: the state was written whole. */
	ck_assert_int_eq(stat(state, &st), 0);
	ck_assert_uint_ne(st.st_ino, st0.st_ino);
	tu_write(src, "d1/f1", "five", 0644);
	tu_nap(120);
	publish_ok(w);
	writer_close(w);
	assert_restart_trusts_the_state();
	free(text);
	free(state);
	free(journal);
}
END_TEST

/* A state file and journal that describe another generation than the
 * live one (put back from before it) are not gone on with: a record
 * appended to them would start from entries the live generation does
 * not hold.  The state is written whole instead. */
START_TEST(test_state_of_another_generation_is_not_gone_on_with)
{
	struct writer *w = open_writer();
	char *state = tu_path(dst, STATE_FILE);
	char *journal = tu_path(dst, STATE_JOURNAL);
	char *state_old = tu_path(tmp, "state.old");
	char *journal_old = tu_path(tmp, "journal.old");
	char *x = tu_path(src, "d/x");
	struct stat st0, st;

	tu_write_deep(src, "d/x", "x");
	tu_write_deep(src, "d/y", "y");
	for (int i = 0; i < 2; i++) {
		tu_write(src, "d/y", i ? "y2" : "y", 0644);
		tu_nap(120);
		publish_ok(w); /* the second adds a record to the journal */
	}
	writer_close(w);
	/* Aside as they are (their inodes too: the journal stays on its
	 * base), while x goes from the live generation. */
	ck_assert_int_eq(rename(state, state_old), 0);
	ck_assert_int_eq(rename(journal, journal_old), 0);
	ck_assert_int_eq(unlink(x), 0);
	w = open_writer();
	publish_ok(w);
	writer_close(w);
	ck_assert_int_eq(rename(state_old, state), 0);
	ck_assert_int_eq(rename(journal_old, journal), 0);
	ck_assert_int_eq(stat(state, &st0), 0);
	/* They say x is there; ..data names a generation without it. */
	w = open_writer();
	ck_assert(!have_open(journal));
	tu_write(src, "d/y", "y3", 0644);
	tu_nap(120);
	publish_ok(w);
	writer_close(w);
	ck_assert_int_eq(stat(state, &st), 0);
	ck_assert_uint_ne(st.st_ino, st0.st_ino);
	/* What the next writer loads is the live generation. */
	assert_restart_trusts_the_state();
	free(x);
	free(state);
	free(journal);
	free(state_old);
	free(journal_old);
}
END_TEST

/* ..data names the generation `gen`. */
static void assert_live_gen(const char *gen)
{
	char *now = tu_live(dst);
	ck_assert_str_eq(now, gen);
	free(now);
}

/* ..data removed by hand: the next publish puts it back even with
 * nothing to publish, and so does the next writer, from the state file,
 * rather than take the generation it names for debris. */
START_TEST(test_removed_data_is_put_back)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *data = tu_path(dst, "..data");

	tu_write(src, "a", "1", 0644);
	tu_write(src, "d/b", "2", 0644);
	tu_nap(120);
	publish_ok(w);
	char *gen = tu_live(dst);
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
	assert_live_gen(gen);
	ASSERT_TREES();
	writer_close(w);
	ck_assert_int_eq(unlink(data), 0);
	w = open_writer();
	assert_live_gen(gen);
	ASSERT_TREES();
	writer_close(w);
	/* Without a state file to say which, nothing is put back. */
	char *state = tu_path(dst, STATE_FILE);
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(unlink(state), 0);
	w = open_writer();
	ck_assert_int_ne(access(data, F_OK), 0);
	writer_close(w);
	free(state);
	free(gen);
	free(data);
}
END_TEST

/* ..data pointed elsewhere by hand while no writer had the target (a
 * mistyped rollback, a generation long gone): the next writer puts it
 * back from the state file, as a running one would, rather than refuse
 * the target for good.  Without a sound state file it is no target of
 * ours, and refused. */
START_TEST(test_repointed_data_is_put_back_at_open)
{
	const char *wrong[] = {"..rollback-typo",
			       "..2020_01_01_00_00_00.000000000"};
	struct writer *w = open_writer();
	char *data = tu_path(dst, "..data"), *err = NULL;

	tu_write(src, "a", "1", 0644);
	tu_write(src, "d/b", "2", 0644);
	publish_ok(w);
	writer_close(w);
	char *gen = tu_live(dst);
	for (size_t i = 0; i < 2; i++) {
		ck_assert_int_eq(unlink(data), 0);
		ck_assert_int_eq(symlink(wrong[i], data), 0);
		w = open_writer();
		assert_live_gen(gen);
		ASSERT_TREES();
		writer_close(w);
	}
	/* A dry run (--status) would put it back as well: it is not in
	 * step (no live generation, as with ..data removed), and not
	 * refused; ..data stays as it is. */
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(symlink(wrong[0], data), 0);
	struct writer_opts o = opts();
	o.dry_run = true;
	w = open_writer_with(&o);
	ck_assert_ptr_null(writer_live_generation(w));
	writer_close(w);
	char link[64] = "";
	ck_assert_int_gt(readlink(data, link, sizeof(link) - 1), 0);
	ck_assert_str_eq(link, wrong[0]);
	char *state = tu_path(dst, STATE_FILE);
	ck_assert_int_eq(unlink(state), 0);
	o = opts();
	w = NULL;
	ck_assert_int_eq(writer_open(dst, &o, &w, &err), -EEXIST);
	ck_assert_msg(err && strstr(err, "..rollback-typo") &&
			      strstr(err, "no sound state file"),
		      "%s", err);
	free(err);
	free(state);
	free(gen);
	free(data);
}
END_TEST

/* A directory made where ..data was: no rename puts the link back over
 * it, and it is not ours to remove.  Every publish is refused, with a
 * line that says what to do and no change to the live generation,
 * until it is moved away; then the link is put back. */
START_TEST(test_data_replaced_by_a_directory_is_refused)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *data = tu_path(dst, "..data");
	char *err = NULL;

	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	char *gen = tu_live(dst);
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(mkdir(data, 0755), 0);
	tu_write(dst, "..data/mine", "operator's", 0644);
	for (int change = 0; change < 2; change++) {
		if (change)
			tu_write(src, "a", "2", 0644);
		ck_assert_int_eq(publish_tree(w, &r, &err), -EEXIST);
		ck_assert_ptr_nonnull(err);
		ck_assert_ptr_nonnull(strstr(err, "..data exists and is not a "
						  "symlink; not publishing until "
						  "it is moved away"));
		free(err);
		err = NULL;
		ck_assert(!r.published);
		writer_result_fini(&r);
		char *mine = tu_path(data, "mine");
		char *held = tu_read(mine, NULL);
		ck_assert_str_eq(held, "operator's");
		free(held);
		free(mine);
		char *g = tu_path(dst, gen);
		ck_assert_int_eq(access(g, F_OK), 0);
		free(g);
	}
	tu_rmrf(data);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
	free(gen);
	free(data);
}
END_TEST

START_TEST(test_touch_without_change_writes_nothing)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	tu_write(src, "f", "same", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	char *gen = strdup(r.generation);
	writer_result_fini(&r);
	tu_write(src, "f", "same", 0644); /* new mtime, same bytes */
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	ck_assert_str_eq(r.generation, gen);
	writer_result_fini(&r);
	writer_close(w);
	free(gen);
}
END_TEST

/* Files in `dirs` top-level directories, `per` in each: enough for a
 * generation written whole to be written in two halves. */
static void wide_tree(int dirs, int per)
{
	for (int d = 0; d < dirs; d++)
		for (int f = 0; f < per; f++) {
			char n[32];
			snprintf(n, sizeof(n), "d%02d/f%d", d, f);
			tu_write(src, n, n, 0644);
		}
}

/* Two threads write a generation written whole, each its own top-level
 * names: the result counts what both wrote. */
START_TEST(test_a_generation_written_whole_counts_both_halves)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	wide_tree(20, 20);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.copied, 400);
	ck_assert_uint_eq(r.bytes_copied, 20 * (10 * 6 + 10 * 7));
	writer_result_fini(&r);
	ASSERT_TREES();
	/* Nothing to recycle (no grace): written whole again, by links. */
	tu_write(src, "d00/f0", "changed", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.copied, 1);
	ck_assert_uint_eq(r.linked, 399);
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
}
END_TEST

/* Lines logged on the test's thread. */
static char sunk[4096];

static void sink_line(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	size_t n = strlen(sunk);
	snprintf(sunk + n, sizeof(sunk) - n, "%s\n", msg);
}

/* Live files others may write are looked at as they are linked: one
 * changed in each half is written afresh, and both are told on the
 * caller's thread (the log a library caller set), none elsewhere. */
START_TEST(test_both_halves_tell_on_the_callers_thread)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};
	struct log_sink sink = {.fn = sink_line};

	o.file_mode = 0666;
	struct writer *w = open_writer_with(&o);
	wide_tree(20, 20);
	publish_ok(w);
	/* Changed in mode alone, so that a compare by content (of a file
	 * written moments ago) finds it the same. */
	char *a = tu_path(dst, "..data/d00/f3"), *b = tu_path(dst, "..data/d15/f3");
	ck_assert_int_eq(chmod(a, 0600), 0);
	ck_assert_int_eq(chmod(b, 0600), 0);
	free(a);
	free(b);
	tu_write(src, "d05/f0", "a change to publish", 0644);
	sunk[0] = '\0';
	const struct log_sink *old = log_sink_set(&sink);
	int rc = publish_tree(w, &r, NULL);
	log_sink_set(old);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(r.changed, 3);
	ck_assert_uint_eq(r.copied, 3);
	ck_assert_msg(strstr(sunk, "d00/f3 was changed") &&
			      strstr(sunk, "d15/f3 was changed"),
		      "%s", sunk);
	writer_result_fini(&r);
	/* Written afresh, with the mode they are published with. */
	struct stat st;
	ck_assert_int_eq(stat(a = tu_path(dst, "..data/d00/f3"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	ck_assert_int_eq(stat(b = tu_path(dst, "..data/d15/f3"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	free(a);
	free(b);
	writer_close(w);
}
END_TEST

/* A file gone between the read and the write fails the first half
 * early: the second stops too rather than write thousands of files into
 * a generation that goes. */
START_TEST(test_a_half_that_fails_stops_the_other)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct snapshot *s = NULL;
	char *err = NULL, *gone = tu_path(src, "d00/f1");

	wide_tree(20, 500);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	ck_assert_int_eq(unlink(gone), 0);
	int rc = writer_publish(w, s, &r, &err);
	ck_assert_msg(rc < 0 && strstr(err, "d00/f1"), "%d: %s", rc, err);
	/* The second half alone holds 5,000. */
	ck_assert_msg(r.copied < 5000, "%zu copied", r.copied);
	ck_assert_int_eq(tu_generations(dst), 0);
	writer_result_fini(&r);
	free(err);
	free(gone);
	writer_close(w);
}
END_TEST

/* As the user who owns the whole tree: a first publish, which a file
 * of the last top-level directory (the second half's) that its owner
 * cannot read must stop, naming it.  0 when it does. */
static int publish_unreadable_half(void *arg)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};
	struct writer *w = NULL;
	char *err = NULL;

	(void)arg;
	if (writer_open(dst, &o, &w, NULL) < 0)
		return 2;
	int rc = publish_tree(w, &r, &err);
	int ok = rc < 0 && err && strstr(err, "d19/secret") ? 0 : 3;
	if (ok)
		fprintf(stderr, "publish: %d, %s\n", rc, err ? err : "-");
	writer_result_fini(&r);
	free(err);
	writer_close(w);
	return ok;
}

START_TEST(test_a_file_the_second_half_cannot_read_is_reported)
{
	ck_assert_msg(tu_can_setuid(), "this test reads files as another "
				       "user: run it as root");
	wide_tree(20, 20);
	tu_write(src, "d19/secret", "s", 0000);
	const char *argv[] = {"chown", "-R", "2008:2008", tmp, NULL};
	ck_assert_int_eq(tu_run(argv, NULL, NULL, 10000), 0);
	ck_assert_int_eq(tu_call_as(2008, publish_unreadable_half, NULL), 0);
}
END_TEST

START_TEST(test_unchanged_files_are_reused_not_copied)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct stat a, b;

	for (int i = 0; i < 20; i++) {
		char n[32];
		snprintf(n, sizeof(n), "d%d/f%d", i % 3, i);
		tu_write(src, n, n, 0644);
	}
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.copied, 20);
	writer_result_fini(&r);
	char *old = tu_path(dst, "..data/d1/f1");
	ck_assert_int_eq(stat(old, &a), 0);
	/* Held open by a "reader" across the publish. */
	int fd = open(old, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	tu_write(src, "d0/f0", "changed", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.copied, 1);
	ck_assert_uint_eq(r.linked, 19);
	ck_assert_int_eq(stat(old, &b), 0);
	ck_assert(a.st_ino == b.st_ino); /* same inode, never rewritten */
	char buf[16] = {0};
	ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 5);
	ck_assert_str_eq(buf, "d1/f1");
	close(fd);
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
	free(old);
}
END_TEST

START_TEST(test_invalid_snapshot_keeps_previous_generation)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	const struct tu_file good[] = {{"a", 0644, "a"}, {NULL, 0, NULL}};
	const struct tu_file bad[] = {{"a", 0644, "b"}, {"/abs", 0644, "x"},
				      {NULL, 0, NULL}};
	char *err = NULL;

	ck_assert_int_eq(publish_payload(w, good, &r, NULL), 0);
	char *gen = tu_live(dst);
	writer_result_fini(&r);
	ck_assert_int_lt(publish_payload(w, bad, &r, &err), 0);
	ck_assert_msg(strstr(err, "/abs") != NULL, "%s", err);
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	ck_assert_int_eq(tu_generations(dst), 1);
	ASSERT_TARGET(good);
	free(err);
	free(gen);
	free(gen2);
	writer_close(w);
}
END_TEST

START_TEST(test_user_file_in_target_is_never_clobbered)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *err = NULL;

	tu_write(src, "app.conf", "v1", 0644);
	publish_ok(w);
	char *gen = tu_live(dst);
	tu_write(dst, "mine", "user data", 0644);
	tu_write(src, "mine", "from source", 0644);
	tu_write(src, "app.conf", "v2", 0644);
	ck_assert_int_lt(publish_tree(w, &r, &err), 0);
	ck_assert_msg(strstr(err, "mine") && strstr(err, "not a link"), "%s", err);
	char *p = tu_path(dst, "mine");
	char *d = tu_read(p, NULL);
	ck_assert_str_eq(d, "user data");
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	ck_assert_int_eq(tu_generations(dst), 1);
	/* A user's directory, too. */
	ck_assert_int_eq(unlink(p), 0);
	tu_mkdirs(p, 0755);
	free(err);
	err = NULL;
	ck_assert_int_lt(publish_tree(w, &r, &err), 0);
	ck_assert_msg(strstr(err, "mine"), "%s", err);
	free(err);
	free(d);
	free(p);
	free(gen);
	free(gen2);
	writer_close(w);
}
END_TEST

START_TEST(test_user_files_beside_links_are_left_alone)
{
	struct writer *w = open_writer();

	tu_write(src, "a", "a", 0644);
	publish_ok(w);
	tu_write(dst, "other", "x", 0644);
	tu_write(dst, "..reserved-by-someone", "y", 0644);
	char *a = tu_path(src, "a");
	unlink(a);
	tu_write(src, "b", "b", 0644);
	publish_ok(w);
	writer_close(w);
	w = open_writer(); /* recovery must not touch them either */
	writer_close(w);
	char *o = tu_path(dst, "other"), *res = tu_path(dst, "..reserved-by-someone");
	struct stat st;
	ck_assert_int_eq(lstat(o, &st), 0);
	ck_assert_int_eq(lstat(res, &st), 0);
	free(a);
	free(o);
	free(res);
}
END_TEST

START_TEST(test_recovery_removes_debris)
{
	struct writer *w = open_writer();

	tu_write(src, "a", "a", 0644);
	publish_ok(w);
	writer_close(w);
	char *gen = tu_live(dst);
	tu_write(dst, "..2020_01_01_00_00_00.123/x", "half", 0644);
	tu_write(dst, STATE_TMP, "partial", 0644);
	char *tmpl = tu_path(dst, "..data_tmp");
	ck_assert_int_eq(symlink("..2020_01_01_00_00_00.123", tmpl), 0);
	/* A link of a new name made ahead of a swap that never came. */
	char *ahead = tu_path(dst, WRITER_LINK_AHEAD "12");
	ck_assert_int_eq(symlink("..data/b", ahead), 0);

	w = open_writer();
	ck_assert_str_eq(writer_live_generation(w), gen);
	struct stat st;
	ck_assert(lstat(tmpl, &st) < 0);
	ck_assert(lstat(ahead, &st) < 0);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert_int_eq(tu_count_entries(dst), 4); /* ..data, gen, state, a */
	ASSERT_TREES();
	writer_close(w);
	free(gen);
	free(ahead);
	free(tmpl);
}
END_TEST

START_TEST(test_recovery_keeps_a_just_replaced_generation_for_its_grace)
{
	struct writer_opts o = opts();
	struct writer *w = NULL;

	o.grace_ms = 300;
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	tu_write(src, "a", "22", 0644);
	publish_ok(w);
	/* A crash: the replaced generation is still there, in its grace. */
	writer_close(w);
	ck_assert_int_eq(tu_generations(dst), 2);
	/* A half-built one (mode 0700) is removed at once. */
	char *half = tu_path(dst, "..2020_01_01_00_00_00.7");
	tu_mkdirs(half, 0700);
	chmod(half, 0700);
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	struct stat st;
	ck_assert(stat(half, &st) < 0 && errno == ENOENT);
	ck_assert_int_eq(tu_generations(dst), 2);
	/* Past its grace period it stays, to be recycled. */
	writer_retire_wait(w);
	ck_assert_int_eq(tu_generations(dst), 2);
	ASSERT_TREES();
	writer_close(w);
	free(half);
}
END_TEST

/* After the clock was set back, the generation ..data named before the
 * live one is named after it: it is the one kept for its grace period
 * all the same, not removed as if that were over. */
START_TEST(test_recovery_keeps_the_replaced_generation_after_a_clock_step)
{
	struct writer_opts o = opts();
	struct writer *w = NULL;

	o.grace_ms = 600000;
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	char *first = tu_live(dst);
	tu_write(src, "a", "22", 0644);
	publish_ok(w);
	writer_close(w);
	/* As a clock set back an hour before the second would have named
	 * it: the replaced one is named after the live one. */
	char *was = tu_path(dst, first), *later = tu_path(dst, "..2999_01_01_00_00_00.1");
	ck_assert_int_eq(rename(was, later), 0);
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	struct stat st;
	ck_assert_int_eq(stat(later, &st), 0);
	ck_assert_int_eq(tu_generations(dst), 2);
	ASSERT_TREES();
	writer_close(w);
	free(later);
	free(was);
	free(first);
}
END_TEST

START_TEST(test_target_created_with_mode_0755_and_parent_required)
{
	struct writer *w = NULL;
	struct writer_opts o = opts();
	char *err = NULL;
	struct stat st;

	mode_t um = umask(077);
	w = open_writer();
	writer_close(w);
	umask(um); /* the tests after it, in one process under valgrind */
	ck_assert_int_eq(stat(dst, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);

	char *deep = tu_path(tmp, "missing/target");
	ck_assert_int_eq(writer_open(deep, &o, &w, &err), -ENOENT);
	ck_assert_msg(strstr(err, deep) && strstr(err, "parent"), "%s", err);
	free(err);
	free(deep);
}
END_TEST

/* A target whose setgid bit makes what is made in it take its group and
 * that bit: its generations' directories, which carry the bit while they
 * are private, are still taken for ours, and end up without it. */
START_TEST(test_a_setgid_target_takes_generations)
{
	struct stat st;

	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(chmod(dst, 02755), 0);
	struct writer *w = open_writer();
	tu_write(src, "d/e/f", "1", 0644);
	publish_ok(w);
	tu_write(src, "d/e/f", "2", 0644);
	tu_write(src, "d/g/h", "2", 0644);
	publish_ok(w);
	ASSERT_TREES();
	char *e = tu_path(dst, "..data/d/e");
	ck_assert_int_eq(stat(e, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	free(e);
	writer_close(w);
}
END_TEST

START_TEST(test_generation_layout)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct stat st;

	tu_write(src, "tls/cert.pem", "cert", 0640);
	tu_write(src, "app.conf", "x", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	writer_close(w);
	char *gen = tu_live(dst);
	/* ..YYYY_MM_DD_HH_MM_SS.<suffix> */
	ck_assert_uint_gt(strlen(gen), 22);
	ck_assert(strncmp(gen, "..20", 4) == 0 && gen[6] == '_' &&
		  gen[21] == '.');
	ck_assert_str_eq(gen, r.generation);
	char *g = tu_path(dst, gen);
	ck_assert_int_eq(stat(g, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	assert_link("tls", "..data/tls");
	assert_link("app.conf", "..data/app.conf");
	/* Nothing of ours inside the generation. */
	ck_assert_int_eq(tu_count_entries(g), 2);
	writer_result_fini(&r);
	free(g);
	free(gen);
}
END_TEST

START_TEST(test_setuid_bits_dropped)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct stat st;

	tu_write(src, "suid", "x", 06755);
	tu_mkdirs(src, 0755);
	char *d = tu_path(src, "sticky");
	tu_mkdirs(d, 01777);
	chmod(d, 01777);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	char *p = tu_path(dst, "..data/suid");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	free(p);
	p = tu_path(dst, "..data/sticky");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	free(p);
	free(d);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

START_TEST(test_group_and_other_write_bits_are_dropped)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct stat st;

	/* Anyone could change a 0666 file or fill a 0777 directory of the
	 * live generation; unless asked for, neither bit reaches it. */
	tu_write(src, "open/file", "x", 0666);
	char *d = tu_path(src, "open");
	ck_assert_int_eq(chmod(d, 0777), 0);
	tu_write(src, "group", "x", 0664);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	const struct {
		const char *path;
		mode_t mode;
	} want[] = {{"..data/open", 0755}, {"..data/open/file", 0644},
		    {"..data/group", 0644}};
	for (size_t i = 0; i < 3; i++) {
		char *p = tu_path(dst, want[i].path);
		ck_assert_int_eq(stat(p, &st), 0);
		ck_assert_uint_eq(st.st_mode & 07777, want[i].mode);
		free(p);
	}
	writer_result_fini(&r);
	/* file_mode and dir_mode may still ask for them. */
	struct writer_opts o = opts();
	o.file_mode = 0666;
	o.dir_mode = 0777;
	writer_set_opts(w, &o);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	char *p = tu_path(dst, "..data/open/file");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	free(p);
	p = tu_path(dst, "..data/open");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0777);
	free(p);
	free(d);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

/* Appends to dst/..data/rel as someone editing the target in place. */
static void tamper(const char *rel, const char *more)
{
	char *p = tu_path(dst, "..data");
	char *f = tu_path(p, rel);
	int fd = open(f, O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, more, strlen(more)), (ssize_t)strlen(more));
	close(fd);
	free(f);
	free(p);
}

static ino_t live_ino(const char *rel)
{
	struct stat st;
	char *p = tu_path(dst, "..data");
	char *f = tu_path(p, rel);
	ck_assert_int_eq(stat(f, &st), 0);
	free(f);
	free(p);
	return st.st_ino;
}

/* The names one file has in the source, hard links or ways to it through
 * a link to a directory, are one file in the generation as well: a user
 * who writes the source cannot have root write a copy for each name. */
START_TEST(test_names_of_one_source_file_share_one_copy)
{
	static char big[65536];
	memset(big, 'b', sizeof(big));
	tu_write_len(src, "f0", big, sizeof(big), 0644);
	char *f0 = tu_path(src, "f0");
	for (int i = 1; i < 50; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		char *p = tu_path(src, n);
		ck_assert_int_eq(link(f0, p), 0);
		free(p);
	}
	tu_write(src, "d/x", "x\n", 0644);
	char *l1 = tu_path(src, "l1"), *l2 = tu_path(src, "l2");
	ck_assert_int_eq(symlink("d", l1), 0);
	ck_assert_int_eq(symlink("d", l2), 0);
	struct writer *w = open_recycling_writer();
	publish_ok(w);
	ino_t one = live_ino("f0");
	for (int i = 1; i < 50; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		ck_assert_msg(live_ino(n) == one, "%s is a copy of its own", n);
	}
	ck_assert(live_ino("l1/x") == live_ino("l2/x"));
	size_t len = 0;
	char *f7 = tu_path(dst, "f7"), *d = tu_read(f7, &len);
	ck_assert_uint_eq(len, sizeof(big));
	ck_assert(memcmp(d, big, len) == 0);
	free(d);
	/* A name given a file of its own gets one in the target; the other
	 * names keep theirs, recycled or not. */
	usleep((RECYCLE_GRACE_MS + 20) * 1000);
	char *f3 = tu_path(src, "f3");
	ck_assert_int_eq(unlink(f3), 0);
	tu_write(src, "f3", "own\n", 0644);
	publish_ok(w);
	char *t3 = tu_path(dst, "f3");
	d = tu_read(t3, NULL);
	ck_assert_str_eq(d, "own\n");
	free(d);
	ck_assert(live_ino("f3") != live_ino("f0"));
	ck_assert(live_ino("f4") == live_ino("f0"));
	d = tu_read(f7, &len);
	ck_assert_uint_eq(len, sizeof(big));
	ck_assert(memcmp(d, big, len) == 0);
	free(d);
	/* A change to the file they share reaches every name, one copy. */
	usleep((RECYCLE_GRACE_MS + 20) * 1000);
	tu_write_len(src, "f0", "new\n", 4, 0644);
	publish_ok(w);
	d = tu_read(f7, NULL);
	ck_assert_str_eq(d, "new\n");
	free(d);
	ck_assert(live_ino("f49") == live_ino("f0"));
	/* Links followed wherever they lead: the same. */
	usleep((RECYCLE_GRACE_MS + 20) * 1000);
	tu_write(src, "d/x", "y\n", 0644);
	struct snapshot_opts so = {.links = SNAP_LINKS_FOLLOW};
	struct snapshot *s = NULL;
	ck_assert_int_eq(snapshot_take(src, &so, &s, NULL), 0);
	struct writer_result r = {0};
	ck_assert_int_eq(writer_publish(w, s, &r, NULL), 0);
	writer_result_fini(&r);
	ck_assert(live_ino("l1/x") == live_ino("l2/x"));
	writer_close(w);
	free(t3);
	free(f3);
	free(f7);
	free(l1);
	free(l2);
	free(f0);
}
END_TEST


/* dst/..data/rel holds `want`. */
static void assert_live(const char *rel, const char *want)
{
	char *p = tu_path(dst, "..data");
	char *f = tu_path(p, rel);
	char *t = tu_read(f, NULL);
	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(t, want);
	free(t);
	free(f);
	free(p);
}

/* Every one of `files` in the target has mode `want`. */
static void assert_modes(const char *const *files, size_t n, unsigned want)
{
	for (size_t i = 0; i < n; i++) {
		char *p = tu_path(dst, files[i]);
		struct stat st;
		ck_assert_int_eq(stat(p, &st), 0);
		ck_assert_msg((st.st_mode & 07777) == want, "%s: mode %o",
			      files[i], (unsigned)st.st_mode & 07777);
		free(p);
	}
}

/* A refresh of the live record that read `dir` again and copied the
 * rest. */
static struct snapshot *refresh_live(struct writer *w, const char *dir)
{
	char *dirs[] = {(char *)dir}, *err = NULL;
	struct snapshot *s = NULL;
	ck_assert_int_eq(snapshot_refresh(writer_live(w), NULL, dirs, 1, NULL,
					  &s, &err),
			 0);
	ck_assert_uint_gt(s->nruns, 0); /* e and e/c were copied */
	return s;
}

/* A writer that published d/a and e/c (and whatever else the source
 * holds), each 0644. */
static struct writer *published_d_and_e(void)
{
	tu_write(src, "d/a", "a1\n", 0644);
	tu_write(src, "e/c", "c\n", 0644);
	struct writer *w = open_writer();
	publish_ok(w);
	return w;
}

/* Options that give files `mode` from now on. */
static void give_file_mode(struct writer *w, int mode)
{
	struct writer_opts o = opts();
	o.file_mode = mode;
	writer_set_opts(w, &o);
}

static void publish_refresh_ok(struct writer *w, const char *dir)
{
	struct writer_result r = {0};
	char *err = NULL;
	int rc = writer_publish(w, refresh_live(w, dir), &r, &err);
	ck_assert_msg(rc == 0, "%s", err ? err : strerror(-rc));
	writer_result_fini(&r);
}

/* A file written in the tick of its record (racy) is compared by content
 * at the next publish even when a refresh copied it, its directory not
 * read again: a change the record's times cannot show is not linked
 * forward but found (the file then no longer matches the record, and
 * the publish is tried again, -EAGAIN). */
START_TEST(test_racy_copy_is_compared_by_content)
{
	struct writer *w = published_d_and_e();
	struct writer_result r = {0};
	char *err = NULL;
	char *f = tu_path(src, "e/c");

	int fd = open(f, O_WRONLY | O_CLOEXEC); /* in place, same size */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "C\n", 2), 2);
	close(fd);
	const struct snap_entry *o = snapshot_find(writer_live(w), "e/c");
	ck_assert_ptr_nonnull(o);
	ck_assert(o->flags & SNAP_F_RACY); /* written just before its read */
	tu_write(src, "d/a", "a2\n", 0644);
	int rc = writer_publish(w, refresh_live(w, "d"), &r, &err);
	ck_assert_msg(rc == -EAGAIN, "publish: %d (%s)", rc, err ? err : "");
	free(err);
	writer_result_fini(&r);
	writer_close(w);
	free(f);
}
END_TEST

/* Publishes of refreshes, as the daemon makes them (only the directories
 * changed are read again), after random changes at two depths (in d3 or
 * in d3/s1, which then holds what changed while d3 does not): each
 * leaves the target equal to the source, whether the copies of the live
 * record are racy or settled (every fifth round waits until they are). */
START_TEST(test_refresh_publishes_follow_random_changes)
{
	const char *env = getenv("ATOMSYNC_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
			    : (unsigned)time(NULL);
	unsigned rng = seed;
	char rel[64], body[96], dir[16];

	for (int d = 0; d < 5; d++)
		for (int k = 0; k < 6; k++) {
			snprintf(rel, sizeof(rel), "d%d/f%d", d, k);
			tu_write(src, rel, rel, 0644);
			snprintf(rel, sizeof(rel), "d%d/s%d/f%d", d, k % 2, k);
			tu_write(src, rel, rel, 0644);
		}
	wait_settled(src, rel, 60);
	struct writer *w = open_recycling_writer();
	publish_ok(w);
	for (unsigned round = 0; round < 120; round++) {
		int d = (int)(rand_r(&rng) % 5), k = (int)(rand_r(&rng) % 8);
		if (rand_r(&rng) % 2)
			snprintf(dir, sizeof(dir), "d%d", d);
		else
			snprintf(dir, sizeof(dir), "d%d/s%d", d, k % 2);
		snprintf(rel, sizeof(rel), "%s/f%d", dir, k);
		char *f = tu_path(src, rel);
		switch (rand_r(&rng) % 4) {
		case 0: /* written anew, of another size or the same */
			snprintf(body, sizeof(body), "%u %s", round % 2, rel);
			tu_write(src, rel, body, 0644);
			break;
		case 1:
			(void)unlink(f);
			break;
		case 2:
			(void)chmod(f, rand_r(&rng) % 2 ? 0600 : 0755);
			break;
		default: /* a new directory, read whole */
			snprintf(rel, sizeof(rel), "%s/n%u/g", dir, round);
			tu_write(src, rel, rel, 0644);
		}
		free(f);
		if (round % 5 == 4)
			wait_settled(src, rel, 60);
		struct writer_result r = {0};
		char *err = NULL;
		int rc = writer_publish(w, refresh_live(w, dir), &r, &err);
		ck_assert_msg(rc == 0, "seed %u round %u: %s", seed, round,
			      err ? err : strerror(-rc));
		writer_result_fini(&r);
		char *diff = tu_diff_trees(src, dst);
		ck_assert_msg(diff == NULL, "seed %u round %u: %s", seed, round,
			      diff);
	}
	writer_close(w);
}
END_TEST

/* A refresh copies the live record's entries with the modes they were
 * published with; when the options give other modes since, the copies
 * take them too: given before the next publish, between a prepare and
 * its commit, or before a publish that failed. */
START_TEST(test_refresh_copies_take_modes_given_since)
{
	const char *files[] = {"d/a", "d/b", "e/c"};
	tu_write(src, "d/b", "b\n", 0644);
	struct writer *w = published_d_and_e();
	tu_write(src, "d/a", "a2\n", 0644);
	give_file_mode(w, 0600);
	publish_refresh_ok(w, "d");
	assert_modes(files, 3, 0600);
	assert_live("d/a", "a2\n");
	writer_close(w);
}
END_TEST

START_TEST(test_refresh_copies_take_modes_given_before_a_commit)
{
	const char *files[] = {"d/a", "e/c"};
	struct writer *w = published_d_and_e();
	tu_write(src, "d/a", "a2\n", 0644);
	struct writer_pending *p = NULL;
	struct writer_result r = {0};
	char *err = NULL;
	ck_assert_int_eq(writer_prepare(w, refresh_live(w, "d"), &p, &r, &err),
			 0);
	ck_assert_ptr_nonnull(p);
	give_file_mode(w, 0600);
	ck_assert_int_eq(writer_commit(w, p, &r, &err), 0);
	writer_result_fini(&r);
	tu_write(src, "d/a", "a3\n", 0644);
	publish_refresh_ok(w, "d");
	assert_modes(files, 2, 0600);
	writer_close(w);
}
END_TEST

START_TEST(test_refresh_copies_take_modes_after_a_failed_publish)
{
	const char *files[] = {"d/a", "e/c"};
	struct writer *w = published_d_and_e();
	give_file_mode(w, 0600);
	/* A top-level name taken in the target fails the publish after
	 * its record was given the new modes. */
	tu_write(src, "x/y", "y\n", 0644);
	tu_write(dst, "x", "not ours\n", 0644);
	struct writer_result r = {0};
	char *err = NULL;
	ck_assert_int_eq(writer_publish(w, refresh_live(w, ""), &r, &err),
			 -EEXIST);
	writer_result_fini(&r);
	free(err);
	char *x = tu_path(dst, "x");
	ck_assert_int_eq(unlink(x), 0);
	free(x);
	tu_write(src, "d/a", "a2\n", 0644);
	publish_refresh_ok(w, "d");
	assert_modes(files, 2, 0600);
	writer_close(w);
}
END_TEST

/* Appends to dst/..data/rel as uid, who may write it. */
static void tamper_as(unsigned uid, const char *rel, const char *more)
{
	char *cmd = NULL;
	ck_assert_int_ge(asprintf(&cmd, "printf '%s' >> '%s/..data/%s'", more,
				  dst, rel),
			 0);
	ck_assert_int_eq(tu_sh_as(uid, cmd), 0);
	free(cmd);
}

/* Files that another user can write (here: anyone, by file_mode; the
 * next test: their owner) are checked at every publish that links them
 * forward. */
START_TEST(test_live_file_changed_behind_our_back_is_written_afresh)
{
	ck_assert_msg(tu_can_setuid(), "this test writes files as another "
				       "user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct writer_opts o = opts();
	o.file_mode = 0666;
	struct writer *w = open_writer_with(&o);
	struct writer_result r = {0};

	tu_write(src, "app.conf", "good\n", 0644);
	tu_write(src, "other", "same\n", 0644);
	tu_write(src, "third", "v1\n", 0644);
	/* Past the window in which a file's times prove nothing (then its
	 * content is compared, and a change would show that way). */
	tu_nap(120);
	publish_ok(w);
	ino_t before = live_ino("app.conf");
	/* Edited in place in the target by another user; another file
	 * changes in the source: the edited one is not linked forward. */
	tamper_as(2005, "app.conf", "evil\n");
	tu_write(src, "third", "v2\n", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 2);
	writer_result_fini(&r);
	assert_live("app.conf", "good\n");
	ck_assert(live_ino("app.conf") != before);
	/* Edited again, and nothing changes in the source: a full check
	 * (the resync timer asks for one) finds it. */
	tamper_as(2005, "app.conf", "evil again\n");
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 1);
	writer_result_fini(&r);
	assert_live("app.conf", "good\n");
	/* A mode changed in place, found after a restart (a new writer
	 * checks every file, from the state file's record). */
	writer_close(w);
	w = open_writer_with(&o);
	char *p = tu_path(dst, "..data/other");
	ck_assert_int_eq(chmod(p, 0600), 0);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 1);
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	free(p);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

/* Options that give a generation's files and directories to `uid`, for
 * a test run as root that then acts as that user. */
static struct writer_opts owner_opts(unsigned uid)
{
	ck_assert_msg(tu_can_setuid(), "this test acts as another user: run "
				       "it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct writer_opts o = opts();
	o.uid = o.gid = uid;
	return o;
}

/* The same for files given to another user, who may write them. */
START_TEST(test_live_file_its_owner_changed_is_written_afresh)
{
	struct writer_opts o = owner_opts(2004);
	struct writer *w = open_writer_with(&o);
	struct writer_result r = {0};

	tu_write(src, "app.conf", "good\n", 0644);
	tu_write(src, "d/deep.conf", "good\n", 0644);
	tu_write(src, "third", "v1\n", 0644);
	tu_nap(120);
	publish_ok(w);
	tamper_as(2004, "app.conf", "evil\n");
	tamper_as(2004, "d/deep.conf", "evil\n");
	tu_write(src, "third", "v2\n", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 3);
	ck_assert_uint_eq(r.linked, 0);
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
}
END_TEST

/* A file only root can write (ours, 0644) is not looked at before it is
 * linked forward: a change made to it in the target by root is found by
 * the next full check, as the re-scan timer asks for one. */
START_TEST(test_live_file_only_root_can_write_is_checked_at_full_checks)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	tu_write(src, "root.conf", "good\n", 0644);
	tu_write(src, "third", "v1\n", 0644);
	tu_nap(120);
	publish_ok(w);
	tamper("root.conf", "edited\n");
	tu_write(src, "third", "v2\n", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 1);
	ck_assert_uint_eq(r.linked, 1);
	writer_result_fini(&r);
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 1);
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
}
END_TEST

/* A full check whose publish is dropped (check_command vetoes it, the
 * swap fails) is made by the next publish: a file it found changed in
 * place is not linked forward without a look by the publishes after,
 * when the next full check may be a restart away (resync_interval_s =
 * 0). */
START_TEST(test_full_check_of_a_dropped_publish_is_made_again)
{
	struct writer *w = open_writer();
	struct writer_pending *p = NULL;
	struct writer_result r = {0};
	struct snapshot *s = NULL;

	tu_write(src, "root.conf", "good\n", 0644);
	tu_write(src, "third", "v1\n", 0644);
	tu_nap(120);
	publish_ok(w);
	tamper("root.conf", "edited\n");
	writer_verify_next(w);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	ck_assert_int_eq(writer_prepare(w, s, &p, &r, NULL), 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(r.changed, 1);
	writer_abort(w, p);
	writer_result_fini(&r);
	tu_write(src, "third", "v2\n", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 2);
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
}
END_TEST

START_TEST(test_live_generation_not_ours_is_not_reused)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	tu_write(src, "f", "x", 0644);
	publish_ok(w);
	writer_close(w);
	/* Someone else's directory, as ..data may name when the target
	 * belongs to another user. */
	char *gen = tu_live(dst);
	char *g = tu_path(dst, gen);
	ck_assert_int_eq(chown(g, 2003, 2003), 0);
	ino_t before = live_ino("f");
	w = open_writer();
	tu_write(src, "g", "y", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.linked, 0);
	ck_assert(live_ino("f") != before);
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
	free(g);
	free(gen);
}
END_TEST

START_TEST(test_file_changed_during_copy_is_not_published)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	struct snapshot *s = NULL;
	char *err = NULL;

	tu_write(src, "f", "v1", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	char *gen = strdup(r.generation);
	writer_result_fini(&r);
	tu_write(src, "f", "v2-longer", 0644);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	/* Written again between the snapshot and the copy. */
	tu_write(src, "f", "v3-even-longer", 0644);
	ck_assert_int_eq(writer_publish(w, s, &r, &err), -EAGAIN);
	ck_assert_msg(strstr(err, "changed while being read"), "%s", err);
	/* Nothing is kept of an attempt that will be made again. */
	ck_assert_ptr_null(r.paths);
	char *live = tu_live(dst);
	ck_assert_str_eq(live, gen);
	ck_assert_int_eq(tu_generations(dst), 1);
	writer_result_fini(&r);
	free(err);
	free(live);
	free(gen);
	writer_close(w);
}
END_TEST

/* r->paths as "a|b|c". */
static char *joined_paths(const struct writer_result *r)
{
	char *j = calloc(1, r->paths_len + 1);
	size_t n = 0;
	for (size_t i = 0; i < r->paths_len; i++) {
		j[i] = r->paths[i] ? r->paths[i] : '|';
		n += r->paths[i] == '\0';
	}
	if (r->paths_len)
		j[r->paths_len - 1] = '\0';
	ck_assert_uint_eq(n, r->added + r->changed + r->removed);
	return j;
}

START_TEST(test_result_lists_the_paths_added_changed_and_removed)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};

	tu_write(src, "a", "1", 0644);
	tu_write(src, "d/b", "2", 0644);
	tu_write(src, "c", "3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	char *j = joined_paths(&r);
	ck_assert_str_eq(j, "a|c|d|d/b");
	free(j);
	writer_result_fini(&r);
	/* Changed, removed with its directory, added, unchanged. */
	tu_write(src, "a", "1 and more", 0644);
	char *d = tu_path(src, "d");
	tu_rmrf(d);
	free(d);
	tu_write(src, "e", "5", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	j = joined_paths(&r);
	ck_assert_str_eq(j, "a|d|d/b|e");
	free(j);
	writer_result_fini(&r);
	/* Nothing changed: no list. */
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	ck_assert_ptr_null(r.paths);
	ck_assert_uint_eq(r.paths_len, 0);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

START_TEST(test_large_file_streams)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	size_t n = 8u << 20;
	char *buf = malloc(n);

	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(i * 2654435761u >> 13);
	tu_write_len(src, "big", buf, n, 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.bytes_copied, n);
	ASSERT_TREES();
	free(buf);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

START_TEST(test_live_dir_swapped_for_symlink_writes_nothing_outside)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	char *outside = tu_path(tmp, "outside");

	tu_mkdirs(outside, 0755);
	tu_write(src, "d/f", "f", 0644);
	tu_write(src, "d/g", "g", 0644);
	publish_ok(w);
	/* Someone replaces a directory of the live generation with a link
	 * to elsewhere. */
	char *gen = tu_live(dst);
	char *rel = tu_path(gen, "d");
	char *d = tu_path(dst, rel);
	tu_rmrf(d);
	ck_assert_int_eq(symlink(outside, d), 0);
	tu_write(src, "d/g", "g2", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_int_eq(tu_count_entries(outside), 0);
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
	free(outside);
	free(gen);
	free(rel);
	free(d);
}
END_TEST

START_TEST(test_dry_run_writes_nothing)
{
	struct writer_opts o = opts();
	struct writer *w = NULL;
	struct writer_result r = {0};
	struct snapshot *s = NULL;

	o.dry_run = true;
	tu_write(src, "a", "a", 0644);
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	ck_assert_int_eq(writer_publish(w, s, &r, NULL), 0);
	ck_assert(!r.published);
	ck_assert_uint_eq(r.added, 1);
	struct stat st;
	ck_assert(stat(dst, &st) < 0 && errno == ENOENT);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

/* A dry run whose counts the caller reports (--status) logs nothing
 * per path, per leftover or per file changed in the live generation. */
static char *dry_run_output(bool quiet, struct writer_result *r,
			    uint64_t *files, uint64_t *bytes)
{
	static char buf[65536];
	struct writer_opts o = opts();
	struct writer *w = NULL;
	struct snapshot *s = NULL;
	int pipefd[2], saved = dup(2);

	o.dry_run = true;
	o.quiet = quiet;
	log_init(LOG_FMT_TEXT, LOG_LVL_DEBUG);
	ck_assert_int_eq(pipe(pipefd), 0);
	dup2(pipefd[1], 2);
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	ck_assert_int_eq(writer_live_summary(w, files, bytes), 0);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	ck_assert_int_eq(writer_prepare(w, s, &(struct writer_pending *){NULL},
				       r, NULL),
			 0);
	writer_close(w);
	dup2(saved, 2);
	close(saved);
	close(pipefd[1]);
	ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
	close(pipefd[0]);
	buf[n > 0 ? n : 0] = '\0';
	log_init(LOG_FMT_TEXT, LOG_LVL_ERROR);
	return buf;
}

START_TEST(test_quiet_dry_run_counts_without_a_line_per_path)
{
	struct writer *w = open_writer();
	struct writer_result r = {0};
	uint64_t files = 0, bytes = 0;

	tu_write(src, "keep", "same", 0644);
	tu_write(src, "edit", "old", 0644);
	tu_write(src, "gone", "bye", 0644);
	publish_ok(w);
	writer_close(w);
	tu_write(src, "edit", "new!", 0644);
	tu_write(src, "added", "hello", 0644);
	char *p = tu_path(src, "gone");
	ck_assert_int_eq(unlink(p), 0);
	free(p);
	/* A leftover, and a live file changed behind the writer's back. */
	char *gen = tu_live(dst), *rel = tu_path(gen, "keep");
	tu_write(dst, WRITER_DATA_TMP, "x", 0644);
	tu_write(dst, rel, "SAME", 0644);

	char *out = dry_run_output(true, &r, &files, &bytes);
	ck_assert_msg(out[0] == '\0', "%s", out);
	ck_assert_uint_eq(r.added, 1);
	ck_assert_uint_eq(r.changed, 2);
	ck_assert_uint_eq(r.removed, 1);
	ck_assert(!r.published);
	/* What is live, as the state file describes it. */
	ck_assert_uint_eq(files, 3);
	ck_assert_uint_eq(bytes, 4 + 3 + 3);
	writer_result_fini(&r);
	/* Without quiet, the same run says it all. */
	out = dry_run_output(false, &r, &files, &bytes);
	ck_assert_msg(strstr(out, "would add added") &&
			      strstr(out, "would update edit") &&
			      strstr(out, "would remove gone") &&
			      strstr(out, "would remove leftover ..data_tmp") &&
			      strstr(out, "keep was changed in the live"),
		      "%s", out);
	writer_result_fini(&r);
	free(gen);
	free(rel);
}
END_TEST

START_TEST(test_live_summary_and_recorded_error)
{
	struct writer *w = open_writer();
	uint64_t files = 0, bytes = 0, ms = 0;
	char *msg = NULL;

	ck_assert_int_eq(writer_live_summary(w, &files, &bytes), -ENOENT);
	tu_write(src, "a", "12345", 0644);
	tu_write(src, "d/b", "678", 0644);
	publish_ok(w);
	ck_assert_int_eq(writer_live_summary(w, &files, &bytes), 0);
	ck_assert_uint_eq(files, 2);
	ck_assert_uint_eq(bytes, 8);

	int dfd = open(dst, O_RDONLY | O_DIRECTORY);
	ck_assert_int_eq(writer_record_error(w, 1234, "it failed"), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), 0);
	ck_assert_uint_eq(ms, 1234);
	ck_assert_str_eq(msg, "it failed");
	free(msg);
	ck_assert_int_eq(writer_record_error(w, 0, NULL), 0);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -ENOENT);
	writer_close(w);

	/* A dry run writes nothing, this neither. */
	struct writer_opts o = opts();
	o.dry_run = true;
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	ck_assert_int_eq(writer_record_error(w, 1, "no"), -EROFS);
	ck_assert_int_eq(state_error_load(dfd, &ms, &msg), -ENOENT);
	writer_close(w);
	/* A record cut short by a crash is debris, removed on open. */
	tu_write(dst, STATE_ERROR_TMP, "atomsync-error 1\n", 0600);
	w = open_writer();
	ck_assert_int_eq(faccessat(dfd, STATE_ERROR_TMP, F_OK, AT_SYMLINK_NOFOLLOW),
			 -1);
	writer_close(w);
	close(dfd);
}
END_TEST

START_TEST(test_second_writer_on_same_target_is_refused)
{
	struct writer *w = open_writer(), *w2 = NULL;
	struct writer_opts o = opts();
	char *err = NULL;

	ck_assert_int_eq(writer_open(dst, &o, &w2, &err), -EBUSY);
	ck_assert_msg(strstr(err, "in use"), "%s", err);
	free(err);
	writer_close(w);
}
END_TEST

START_TEST(test_grace_keeps_old_generation_until_due)
{
	struct writer_opts o = opts();
	struct writer *w = NULL;
	uint64_t next = 0;

	o.grace_ms = 200;
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	tu_write(src, "a", "22", 0644);
	publish_ok(w);
	ck_assert_int_eq(writer_retire(w, false, &next), 0);
	ck_assert_int_eq(tu_generations(dst), 2);
	ck_assert_uint_gt(next, 0);
	while (next != 0) {
		tu_nap(20);
		ck_assert_int_eq(writer_retire(w, false, &next), 0);
	}
	/* Due: kept as the spare, recycled by the next publish. */
	ck_assert_int_eq(tu_generations(dst), 2);
	tu_write(src, "a", "333", 0644);
	publish_ok(w);
	ck_assert_int_eq(tu_generations(dst), 2);
	ASSERT_TREES();
	writer_close(w);
}
END_TEST

/* Waits until the clock is past `due`: a grace period, which is itself
 * what the tests of recycling wait for. */
static void wait_past(long long due)
{
	while (tu_now_ms() <= due)
		tu_nap(5);
}

/* Publishes the source and makes the generation it replaced the spare:
 * its grace period (short: RECYCLE_GRACE_MS) waited out. */
static void publish_and_retire(struct writer *w, unsigned grace_ms)
{
	publish_ok(w);
	long long due = tu_now_ms() + grace_ms;
	wait_past(due);
	ck_assert_int_eq(writer_retire(w, false, NULL), 0);
}

static ino_t ino_of(const char *dir, const char *rel)
{
	char *p = tu_path(dir, rel);
	struct stat st;
	ck_assert_int_eq(lstat(p, &st), 0);
	free(p);
	return st.st_ino;
}

/* tmp/REL, a directory of `uid`'s with mode `mode`. */
static char *dir_as(const char *rel, unsigned uid, mode_t mode)
{
	char *p = tu_path(tmp, rel);

	tu_mkdirs(p, mode);
	ck_assert_int_eq(chown(p, uid, uid), 0);
	ck_assert_int_eq(chmod(p, mode), 0);
	return p;
}

/* As `uid`: mv FROM TO, both below tmp. */
static void move_as(unsigned uid, const char *from, const char *to)
{
	char *cmd = NULL;

	ck_assert_int_gt(asprintf(&cmd, "mv '%s/%s' '%s/%s'", tmp, from, tmp,
				  to),
			 0);
	ck_assert_int_eq(tu_sh_as(uid, cmd), 0);
	free(cmd);
}

/* Whether TARGET/..atomsync.aside/NAME/REL (REL "": the entry itself)
 * exists for some NAME, owned by `uid`; *st: what it is.  The directory
 * that holds them is root's alone. */
static bool aside_holds(const char *rel, uid_t uid, struct stat *st)
{
	char *aside = tu_path(dst, "..atomsync.aside");
	DIR *d = opendir(aside);
	struct dirent *de;
	bool found = false;

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(lstat(aside, st), 0);
	ck_assert(S_ISDIR(st->st_mode));
	ck_assert_uint_eq(st->st_mode & 07777, 0700);
	ck_assert_uint_eq(st->st_uid, 0);
	while (!found && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *p = NULL;
		ck_assert_int_gt(asprintf(&p, "%s/%s%s%s", aside, de->d_name,
					  *rel ? "/" : "", rel),
				 0);
		found = lstat(p, st) == 0 && st->st_uid == uid;
		free(p);
	}
	closedir(d);
	free(aside);
	return found;
}

/* A publish, then one that recycles the generation it replaced, where
 * `what` is in the way: it is moved aside and the publish goes through. */
static void recycle_moves_aside(struct writer *w, const char *what)
{
	/* No other replaced generation is the spare or in reserve: the one
	 * publish_and_retire() replaces is the one recycled.  An older one
	 * that came due before (a slow run: valgrind) would be. */
	ck_assert_int_eq(writer_retire(w, true, NULL), 0);
	tu_write(src, "d/f", what, 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	tu_write(src, "d/f", "", 0644);
	publish_ok(w);
	ASSERT_TREES();
}

/* Given to another user (owner =), a generation's directories are theirs
 * to change, and they can move in what they own from elsewhere, with
 * what it holds.  Root removes none of it that they could not remove
 * themselves, and takes over (chown) no directory that is not one of
 * the generation's: the publish that recycles the generation moves such
 * a one aside, whole, out of every generation, and goes through. */
START_TEST(test_what_a_generations_owner_moved_in_is_left_alone)
{
	struct writer_opts o = owner_opts(2004);
	o.grace_ms = RECYCLE_GRACE_MS;
	struct writer *w = open_writer_with(&o);

	tu_write(src, "d/f", "1", 0644);
	tu_write(src, "e/sub/f", "1", 0644);
	publish_and_retire(w, 0);
	/* A directory of 2005's anyone can write, put in place of e/sub. */
	free(dir_as("x", 2004, 0755));
	free(dir_as("y", 0, 0777));
	char *vic = dir_as("y/vic", 2005, 0777);
	move_as(2004, "dst/..data/e/sub", "x/sub");
	move_as(2004, "y/vic", "dst/..data/e/sub");
	recycle_moves_aside(w, "e/sub");
	struct stat st;
	/* Still 2005's and open to all, aside. */
	ck_assert(aside_holds("", 2005, &st));
	ck_assert_uint_eq(st.st_mode & 07777, 0777);
	/* Root's file in root's directory, in a directory of 2004's moved
	 * into d: the directory of 2004's may go, root's stays. */
	char *rootdir = dir_as("x/stuff/rootdir", 0, 0755);
	char *stuff = tu_path(tmp, "x/stuff");
	ck_assert_int_eq(chown(stuff, 2004, 2004), 0);
	tu_write(rootdir, "rootfile", "root's\n", 0644);
	move_as(2004, "x/stuff", "dst/..data/d/stuff");
	recycle_moves_aside(w, "d/stuff");
	ck_assert(aside_holds("rootdir/rootfile", 0, &st));
	writer_close(w);
	/* Nor by the next writer, which removes what is left over. */
	w = open_writer_with(&o);
	writer_close(w);
	ck_assert(aside_holds("rootdir/rootfile", 0, &st));
	ck_assert(aside_holds("", 2005, &st));
	ck_assert_uint_eq(st.st_mode & 07777, 0777);
	free(stuff);
	free(rootdir);
	free(vic);
}
END_TEST

/* A directory of the spare that no generation since changed anything
 * below, and that only we or root could have, is kept without being
 * opened: at a million files that is ten thousand directories, cold on
 * disk.  What root did inside it is not seen then (as for any file only
 * we or root can write), until the next full check. */
START_TEST(test_recycle_opens_no_directory_nothing_changed_in)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};

	tu_write(src, "x/sub/f", "f", 0644);
	tu_write(src, "y/g", "g1", 0644);
	publish_and_retire(w, 0);
	char *g1 = tu_live(dst);
	tu_write(src, "y/g", "g2", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	char *sub = tu_path(dst, g1);
	char *gone = tu_path(sub, "x/sub");
	tu_rmrf(gone);
	tu_write(src, "y/g", "g3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	writer_result_fini(&r);
	char *lf = tu_path(dst, "..data/x/sub/f");
	ck_assert_int_ne(access(lf, F_OK), 0); /* x was not read */
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published); /* the full check found it */
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
	free(lf);
	free(gone);
	free(sub);
	free(g1);
}
END_TEST

START_TEST(test_recycle_changes_only_what_differs)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};

	tu_write(src, "a", "1", 0644);
	tu_write(src, "b", "b1", 0644);
	tu_write(src, "d/c", "c", 0644);
	tu_write(src, "d/e", "e", 0644);
	publish_and_retire(w, 0);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1), d1 = ino_of(dst, "..data/d");
	tu_write(src, "a", "22", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	/* Another user's name, planted while it was live, and a file
	 * replaced behind atomsync's back. */
	char *gd = tu_path(dst, g1);
	tu_write(gd, "d/planted", "x", 0644);
	char *gb = tu_path(gd, "b");
	ck_assert_int_eq(unlink(gb), 0);
	tu_write(gd, "b", "XX", 0644);
	free(gb);
	char *g2 = tu_live(dst);
	ino_t c2 = ino_of(dst, "..data/d/c");
	tu_write(src, "f", "new", 0644);
	char *e = tu_path(src, "d/e");
	unlink(e);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	/* The spare became the new generation, its unchanged files kept. */
	char *g3 = tu_live(dst);
	ck_assert_str_ne(g3, g1);
	ck_assert_uint_eq(ino_of(dst, g3), root1);
	ck_assert_uint_eq(ino_of(dst, "..data/d"), d1);
	ck_assert_uint_eq(ino_of(dst, "..data/d/c"), c2);
	ck_assert_uint_eq(r.copied, 1); /* f */
	ck_assert_int_eq(tu_generations(dst), 2);
	ASSERT_TREES();
	/* The generation it replaced is untouched. */
	char *a2 = tu_path(dst, g2);
	char *ea = tu_path(a2, "d/e"), *t = tu_read(ea, NULL);
	ck_assert_str_eq(t, "e");
	writer_result_fini(&r);
	/* What it recorded is right: the next full check finds it intact. */
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
	writer_close(w);
	free(t);
	free(ea);
	free(a2);
	free(e);
	free(gd);
	free(g1);
	free(g2);
	free(g3);
}
END_TEST

/* What was planted in a replaced generation while it was live (a link
 * in place of a directory, a FIFO in place of a file) is removed, never
 * followed or opened, when it is recycled into a generation that looks
 * at where it is (a name came there: a file changed in place beside it
 * leaves the rest for a full check). */
START_TEST(test_recycle_never_follows_what_was_planted)
{
	char *outside = tu_path(tmp, "outside");

	tu_mkdirs(outside, 0755);
	tu_write(outside, "keep", "mine", 0644);
	struct writer *w = open_recycling_writer();
	tu_write(src, "d/keep", "theirs", 0644);
	tu_write(src, "f", "1", 0644);
	publish_and_retire(w, 0);
	char *g1 = tu_live(dst), *gd = tu_path(dst, g1);
	tu_write(src, "f", "22", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	char *d = tu_path(gd, "d"), *f = tu_path(gd, "f");
	tu_rmrf(d);
	ck_assert_int_eq(symlink(outside, d), 0);
	ck_assert_int_eq(unlink(f), 0);
	ck_assert_int_eq(mkfifo(f, 0644), 0);
	tu_write(src, "f", "333", 0644);
	tu_write(src, "g", "g", 0644);
	publish_ok(w);
	ASSERT_TREES();
	char *k = tu_path(outside, "keep"), *t = tu_read(k, NULL);
	ck_assert_str_eq(t, "mine");
	struct stat st;
	char *ld = tu_path(dst, "..data/d");
	ck_assert_int_eq(lstat(ld, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	writer_close(w);
	free(ld);
	free(t);
	free(k);
	free(d);
	free(f);
	free(gd);
	free(g1);
	free(outside);
}
END_TEST

/* A file is shared by hard link between the live generation and the one
 * recycled into the next: a change of its mode must never reach the live
 * copy, nor may content written into the live copy be kept. */
START_TEST(test_recycle_never_changes_a_shared_file)
{
	struct writer *w = open_recycling_writer();

	tu_write(src, "a", "same", 0644);
	tu_write(src, "b", "1", 0644);
	tu_write(src, "c", "c", 0644);
	publish_and_retire(w, 0);
	tu_write(src, "b", "2", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	/* a is one inode in both generations. */
	char *g2 = tu_live(dst), *live = tu_path(dst, g2);
	char *la = tu_path(live, "a"), *lc = tu_path(live, "c");
	struct stat before;
	ck_assert_int_eq(stat(la, &before), 0);
	ck_assert_uint_ge(before.st_nlink, 2);
	/* c written in place in the live generation (same size), by root:
	 * a full check tells (else only a compare of c, made while its
	 * times are too recent to trust, would). */
	int fd = open(lc, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "X", 1), 1);
	close(fd);
	char *sa = tu_path(src, "a");
	ck_assert_int_eq(chmod(sa, 0600), 0);
	writer_verify_next(w);
	publish_ok(w);
	struct stat after;
	ck_assert_int_eq(stat(la, &after), 0);
	ck_assert_uint_eq(after.st_mode & 07777, 0644);
	ck_assert_uint_eq(after.st_ino, before.st_ino);
	ASSERT_TREES(); /* a is 0600 and c is "c" in the new one */
	writer_close(w);
	free(sa);
	free(la);
	free(lc);
	free(live);
	free(g2);
}
END_TEST

/* The spare is recycled through the changes of every generation made
 * since it was live, each in another directory, not only those of the
 * last one: what it holds elsewhere is kept as it is. */
START_TEST(test_recycle_through_several_generations)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};

	/* The first one replaced is due after the third publish (which
	 * must find it in its grace period), the others not. */
	o.grace_ms = 30000;
	struct writer *w = open_writer_with(&o);
	tu_write(src, "a/f", "a1", 0644);
	tu_write(src, "b/f", "b1", 0644);
	tu_write(src, "c/f", "c1", 0644);
	tu_write(src, "d/f", "d1", 0644);
	tu_write(src, "top", "t1", 0644);
	publish_ok(w);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1), d1 = ino_of(dst, "..data/d/f");
	tu_write(src, "a/f", "a2", 0644);
	publish_ok(w);
	long long due = tu_now_ms() + 30000;
	o.grace_ms = 60000;
	writer_set_opts(w, &o);
	char *g2 = tu_live(dst);
	tu_write(src, "b/f", "b2", 0644);
	tu_write(src, "b/new", "n", 0644);
	char *sd = tu_path(src, "d");
	ck_assert_int_eq(chmod(sd, 0750), 0);
	publish_ok(w);
	char *g3 = tu_live(dst);
	ck_assert_msg(ino_of(dst, g3) != root1,
		      "the third publish took 30 s to start");
	skip_past(due);
	tu_write(src, "c/f", "c2", 0644);
	char *st = tu_path(src, "top");
	ck_assert_int_eq(unlink(st), 0);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.copied, 1); /* c/f: the spare gets the others by link */
	writer_result_fini(&r);
	char *g4 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g4), root1);
	ck_assert_uint_eq(ino_of(dst, "..data/d/f"), d1);
	ASSERT_TREES();
	/* The generation between is as it was. */
	char *a2 = tu_path(dst, g2), *bf = tu_path(a2, "b/f");
	char *t = tu_read(bf, NULL);
	ck_assert_str_eq(t, "b1");
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
	writer_close(w);
	free(t);
	free(bf);
	free(a2);
	free(st);
	free(sd);
	free(g1);
	free(g2);
	free(g3);
	free(g4);
}
END_TEST

/* A file not linked forward after all (gone from the live generation)
 * counts as a change of its directory for later recycling: the spare's
 * older copy there is not kept in place of the one now live. */
START_TEST(test_recycle_after_a_file_was_copied_instead_of_linked)
{
	struct writer_opts o = opts();

	o.grace_ms = 30000;
	struct writer *w = open_writer_with(&o);
	tu_write(src, "d/a", "a", 0644);
	tu_write(src, "t", "1", 0644);
	tu_nap(120); /* its times tell: linked, not compared */
	publish_ok(w);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1);
	char *la = tu_path(dst, "..data/d/a");
	ck_assert_int_eq(unlink(la), 0);
	tu_write(src, "t", "22", 0644);
	publish_ok(w);
	long long due = tu_now_ms() + 30000;
	o.grace_ms = 60000;
	writer_set_opts(w, &o);
	tu_write(src, "t", "333", 0644);
	publish_ok(w);
	char *g3 = tu_live(dst);
	ck_assert_msg(ino_of(dst, g3) != root1,
		      "the third publish took 30 s to start");
	ino_t a3 = ino_of(dst, "..data/d/a");
	skip_past(due);
	tu_write(src, "t", "4444", 0644);
	publish_ok(w);
	char *g4 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g4), root1);
	ck_assert_uint_eq(ino_of(dst, "..data/d/a"), a3);
	ASSERT_TREES();
	writer_close(w);
	free(g1);
	free(g3);
	free(g4);
	free(la);
}
END_TEST

/* A target opened by path after the caller looked at it (no_create
 * with expect_ino) is the directory looked at: another renamed into its
 * place since, root's with a generation in it, is neither locked nor
 * cleaned of what an interrupted publish left. */
START_TEST(test_open_takes_only_the_target_looked_at)
{
	struct writer_opts o = opts();
	struct writer *w = NULL;
	char *err = NULL, *other = tu_path(tmp, "other");
	char *tmpl = tu_path(dst, WRITER_DATA_TMP), *lock;
	struct stat st;

	tu_write(src, "a", "1", 0644);
	w = open_writer_with(&o);
	publish_ok(w);
	writer_close(w);
	ck_assert_int_eq(symlink("..gone", tmpl), 0);
	ck_assert_int_eq(rename(dst, other), 0);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(stat(dst, &st), 0);
	o.no_create = true;
	o.expect_dev = (uint64_t)st.st_dev;
	o.expect_ino = (uint64_t)st.st_ino;
	ck_assert_int_eq(rmdir(dst), 0);
	ck_assert_int_eq(rename(other, dst), 0);
	lock = tu_path(dst, WRITER_LOCK);
	ck_assert_int_eq(unlink(lock), 0);
	ck_assert_int_eq(writer_open(dst, &o, &w, &err), -ESTALE);
	ck_assert_msg(strstr(err, "replaced as it was opened"), "%s", err);
	free(err);
	err = NULL;
	ck_assert_int_eq(lstat(tmpl, &st), 0);
	ck_assert_int_ne(lstat(lock, &st), 0);
	/* Where the caller found no directory, none is taken. */
	o.expect_ino = WRITER_NO_DIR;
	ck_assert_int_eq(writer_open(dst, &o, &w, &err), -ESTALE);
	free(err);
	ck_assert_int_eq(lstat(tmpl, &st), 0);
	/* The one looked at is taken. */
	ck_assert_int_eq(stat(dst, &st), 0);
	o.expect_ino = (uint64_t)st.st_ino;
	o.expect_dev = (uint64_t)st.st_dev;
	w = open_writer_with(&o);
	ck_assert_int_ne(lstat(tmpl, &st), 0);
	writer_close(w);
	free(other);
	free(tmpl);
	free(lock);
}
END_TEST

/* Two generations due at once: the newer is the spare, the other waits
 * in reserve for the publish after, which recycles it rather than link
 * every file into a new one.  At rest, one replaced generation stays.
 * The two publishes after come within a grace period (a minute, the
 * clock skipped past it), or the one the first of them replaced would
 * be due too, and the newer spare. */
START_TEST(test_recycle_keeps_one_in_reserve)
{
	enum { GRACE_MS = 60000 };
	struct writer_opts o = opts();
	o.grace_ms = GRACE_MS;
	struct writer *w = open_writer_with(&o);

	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1);
	for (int v = 2; v <= 3; v++) {
		tu_write(src, "a", v == 2 ? "22" : "333", 0644);
		publish_ok(w);
	}
	skip_past(tu_now_ms() + GRACE_MS);
	ck_assert_int_eq(writer_retire(w, false, NULL), 0);
	ck_assert_int_eq(tu_generations(dst), 3);
	long long t4 = tu_now_ms();
	for (int v = 4; v <= 5; v++) {
		tu_write(src, "a", v == 4 ? "4444" : "55555", 0644);
		publish_ok(w);
	}
	ck_assert_msg(tu_now_ms() - t4 < GRACE_MS,
		      "two publishes took %lld ms, more than the grace period",
		      tu_now_ms() - t4);
	char *g5 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g5), root1);
	ASSERT_TREES();
	/* At rest. */
	uint64_t next = 1;
	while (next != 0) {
		skip_past((long long)next);
		ck_assert_int_eq(writer_retire(w, false, &next), 0);
	}
	ck_assert_int_eq(tu_generations(dst), 2);
	writer_close(w);
	free(g1);
	free(g5);
}
END_TEST

/* A replaced generation whose grace period is over is recycled by the
 * next publish even when nobody asked the writer for what is due (the
 * daemon asks only between its work items). */
START_TEST(test_recycle_takes_what_is_due_itself)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};

	tu_write(src, "a", "1", 0644);
	publish_ok(w);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1);
	tu_write(src, "a", "22", 0644);
	publish_ok(w);
	long long due = tu_now_ms() + RECYCLE_GRACE_MS;
	wait_past(due);
	tu_write(src, "a", "333", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.linked, 0);
	writer_result_fini(&r);
	char *g3 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g3), root1);
	ck_assert_int_eq(tu_generations(dst), 2);
	ASSERT_TREES();
	writer_close(w);
	free(g1);
	free(g3);
}
END_TEST

/* A file anyone may write, in directories only we can, shared by the
 * live generation and the spare: written in place, it is neither kept in the recycled one nor
 * linked forward from the live one, however alike its times look. */
START_TEST(test_recycle_checks_files_others_can_write)
{
	ck_assert_msg(tu_can_setuid(), "this test writes files as another "
				       "user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct writer_opts o = opts();
	o.grace_ms = RECYCLE_GRACE_MS;
	o.file_mode = 0666;
	struct writer *w = open_writer_with(&o);
	struct writer_result r = {0};

	tu_write(src, "d/a", "same", 0644);
	tu_write(src, "b", "1", 0644);
	char *sd = tu_path(src, "d");
	ck_assert_int_eq(chmod(sd, 0755), 0); /* reached by uid 2005 */
	free(sd);
	tu_nap(120);
	publish_and_retire(w, 0);
	tu_write(src, "b", "2", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	tamper_as(2005, "d/a", "evil");
	tu_nap(120);
	tu_write(src, "b", "3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 2);
	ck_assert_uint_eq(r.linked, 0);
	writer_result_fini(&r);
	assert_live("d/a", "same");
	assert_live("b", "3");
	writer_close(w);
}
END_TEST

/* The one private (0700) generation in dst, the standby; malloc'ed. */
static char *standby_of(void)
{
	char *found = NULL;

	ck_assert_int_eq(tu_generations_of_mode(dst, 0700, &found), 1);
	return found;
}

/* A writer that has published twice in a row, the second within the
 * grace period (60 s) of the first: a burst, with nothing due. */
static struct writer *burst_writer(struct writer_opts *o)
{
	o->grace_ms = 60000;
	struct writer *w = open_writer_with(o);
	publish_ok(w);
	ck_assert(writer_standby_wanted(w)); /* none replaced yet */
	tu_write(src, "top", "burst", 0644);
	publish_ok(w);
	ck_assert(writer_standby_wanted(w));
	return w;
}

/* Enough entries (bulk/f00000 on) for a record kept in a store. */
static void stored_tree(void)
{
	for (int f = 0; f < 11000; f++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "bulk/f%05d", f);
		tu_write(src, rel, "x", 0644);
	}
}

/* The standby writes what it learns of the live files into the live
 * record: not while a read maps it copy-on-write, which would find the
 * change in pages it never wrote. */
START_TEST(test_standby_refuses_while_the_live_record_is_read)
{
	struct writer_opts o = opts();
	struct snapshot *s = NULL;
	atomic_bool stop = false;
	char *err = NULL;

	stored_tree();
	struct writer *w = burst_writer(&o);
	const struct snapshot *l = writer_live(w);
	ck_assert_int_eq(l->mem, SNAP_MEM_STORE);
	struct snapshot_opts so = {.over = l};
	ck_assert_int_eq(snapshot_take(src, &so, &s, &err), 0);
	ck_assert(snapshot_viewed(l));
	ck_assert_int_eq(writer_standby(w, &stop, &err), -EBUSY);
	ck_assert_msg(strstr(err, "the live record is being read"), "%s", err);
	ck_assert_int_eq(tu_generations_of_mode(dst, 0700, NULL), 0);
	snapshot_free(s);
	ck_assert(!snapshot_viewed(l));
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	ck_assert_int_eq(tu_generations_of_mode(dst, 0700, NULL), 1);
	free(err);
	writer_close(w);
}
END_TEST

/* A record of a size kept in a store for the reads to come is not, by a
 * writer that makes one publish (--once): the copy would be for nobody. */
START_TEST(test_one_shot_writer_keeps_no_store)
{
	stored_tree();
	for (int once = 0; once < 2; once++) {
		struct writer_opts o = opts();
		struct writer_result r = {0};
		o.one_shot = once;
		struct writer *w = open_writer_with(&o);
		tu_write(src, "bulk/f00000", once ? "one" : "two", 0644);
		ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
		ck_assert(r.published);
		ck_assert_int_eq(writer_live(w)->mem,
				 once ? SNAP_MEM_OWN : SNAP_MEM_STORE);
		writer_result_fini(&r);
		writer_close(w);
		ASSERT_TREES();
	}
}
END_TEST

/* The threads this process runs. */
static int threads_now(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static int alone(void *arg)
{
	(void)arg;
	return threads_now() == 1;
}

/* A one-shot writer (--once) reads the spare's directories ahead, on the
 * thread that checks the live files, and takes one as read only where
 * nobody but us or root could have changed it since: another directory
 * put in its place, and one that others can write, are read when the
 * spare is recycled. */
/* A one-shot writer's options (--once), that loads the live record when
 * told, with the recycling writer's grace period. */
static struct writer_opts once_opts(void)
{
	struct writer_opts o = opts();

	o.grace_ms = RECYCLE_GRACE_MS;
	o.one_shot = o.load_later = true;
	return o;
}

/* A --once publish does not wait for the listing of the generation it
 * recycles: with nothing to publish it stops it, and a build stops it
 * where it got and reads the rest itself.  Whatever it had listed, the
 * target holds the source. */
START_TEST(test_once_publishes_while_the_spare_is_listed)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};
	char *err = NULL, name[32];

	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "d%03d/f", i);
		tu_write(src, name, "1", 0644);
	}
	publish_ok(w);
	tu_write(src, "d000/f", "2", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	writer_close(w);
	struct writer_opts o = once_opts();
	o.check_s = 3600; /* no check of the live files: the listing alone */
	for (int k = 0; k < 3; k++) {
		if (k > 0) {
			snprintf(name, sizeof(name), "d%03d/f", 100 * k + 7);
			tu_write(src, name, k == 1 ? "x" : "yy", 0644);
		}
		w = open_writer_with(&o);
		ck_assert_int_eq(writer_load(w, &err), 0);
		writer_verify_start(w);
		ck_assert_int_eq(publish_tree(w, &r, &err), 0);
		ck_assert(r.published == (k > 0));
		ck_assert_uint_eq(r.changed, k > 0 ? 1 : 0);
		ASSERT_TREES();
		writer_result_fini(&r);
		writer_close(w);
	}
}
END_TEST

START_TEST(test_once_reads_again_what_changed_in_the_spare)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};
	char *err = NULL;

	tu_write(src, "d/f", "1", 0644);
	tu_write(src, "e/g", "1", 0644);
	publish_ok(w);
	char *spare = tu_live(dst);
	ino_t spare_ino = ino_of(dst, spare);
	tu_write(src, "d/f", "2", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	writer_close(w);
	struct writer_opts o = once_opts();
	w = open_writer_with(&o);
	ck_assert_ptr_null(writer_live(w));
	ck_assert_int_eq(writer_load(w, &err), 0);
	ck_assert_ptr_nonnull(writer_live(w));
	ck_assert_int_eq(threads_now(), 1);
	writer_verify_start(w);
	ck_assert(tu_wait_for(alone, NULL, 10000)); /* read, and checked */
	char *sp = tu_path(dst, spare);
	char *d = tu_path(sp, "d"), *e = tu_path(sp, "e");
	char *moved = tu_path(tmp, "moved");
	ck_assert_int_eq(rename(d, moved), 0);
	ck_assert_int_eq(mkdir(d, 0755), 0);
	tu_write(d, "planted", "x", 0644);
	ck_assert_int_eq(chmod(e, 0777), 0);
	tu_write(e, "planted", "x", 0644);
	tu_write(src, "e/g", "2", 0644);
	ck_assert_int_eq(publish_tree(w, &r, &err), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(ino_of(dst, "..data/."), spare_ino); /* recycled */
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
	/* Not loaded first: the publish loads the record itself. */
	w = open_writer_with(&o);
	tu_write(src, "d/f", "3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, &err), 0);
	ck_assert(r.published);
	ASSERT_TREES();
	writer_result_fini(&r);
	writer_close(w);
	free(moved);
	free(e);
	free(d);
	free(sp);
	free(spare);
}
END_TEST

/* The source changed in a/f, published: the standby was recycled into
 * the new generation (root inode `root`), which holds the source. */
static void assert_standby_recycled(struct writer *w, ino_t root)
{
	struct writer_result r = {0};

	tu_write(src, "a/f", "changed", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.copied, 1);
	writer_result_fini(&r);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), root);
	free(g);
	ASSERT_TREES();
	/* What it recorded is right: a full check finds it intact. */
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(!r.published);
	writer_result_fini(&r);
}

/* A target made writable by others (chmod by root) takes no standby
 * either: nothing is written into it until it is ours alone again. */
START_TEST(test_no_standby_in_a_target_others_can_write)
{
	struct writer_opts o = opts();
	atomic_bool stop = false;
	char *err = NULL;

	tu_write(src, "a/f", "a1", 0644);
	struct writer *w = burst_writer(&o);
	int gens = tu_generations(dst);
	ck_assert(writer_standby_wanted(w));
	ck_assert_int_eq(chmod(dst, 0777), 0);
	ck_assert(!writer_standby_wanted(w));
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(tu_generations(dst), gens);
	ck_assert_int_eq(chmod(dst, 0755), 0);
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	ck_assert_int_eq(tu_generations(dst), gens + 1);
	writer_close(w);
}
END_TEST

START_TEST(test_standby_is_recycled_into_the_next_generation)
{
	struct writer_opts o = opts();
	atomic_bool stop = false;
	char *err = NULL;

	tu_write(src, "a/f", "a1", 0644);
	tu_write(src, "b/f", "b1", 0644);
	struct writer *w = burst_writer(&o);
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	ck_assert(!writer_standby_wanted(w)); /* it is there */
	char *sb = standby_of(), *sbp = tu_path(dst, sb);
	ck_assert_int_eq(tu_generations(dst), 3);
	/* The live generation again, by links. */
	ck_assert_uint_eq(ino_of(sbp, "a/f"), ino_of(dst, "..data/a/f"));
	ck_assert_uint_eq(ino_of(sbp, "b/f"), ino_of(dst, "..data/b/f"));
	ck_assert_uint_eq(ino_of(sbp, "top"), ino_of(dst, "..data/top"));
	ck_assert_int_eq(tu_count_entries(sbp), 3);
	ino_t bf = ino_of(dst, "..data/b/f");
	char *g2 = tu_live(dst), *a2 = tu_path(dst, g2);
	assert_standby_recycled(w, ino_of(dst, sb));
	ck_assert_uint_eq(ino_of(dst, "..data/b/f"), bf);
	/* The generation it replaced, which readers may hold, is as it
	 * was. */
	char *af = tu_path(a2, "a/f"), *t = tu_read(af, NULL);
	ck_assert_str_eq(t, "a1");
	ck_assert_int_eq(tu_generations(dst), 3);
	/* None is left at exit: the live one and the one replaced last. */
	ck_assert(writer_standby_wanted(w));
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	ck_assert_int_eq(tu_generations(dst), 4);
	writer_retire_exit(w);
	ck_assert_int_eq(tu_generations(dst), 2);
	ck_assert_uint_eq(ino_of(dst, g2), ino_of(a2, "."));
	writer_close(w);
	free(t);
	free(af);
	free(a2);
	free(g2);
	free(sbp);
	free(sb);
}
END_TEST

/* A standby stopped before its first entry is recycled all the same. */
START_TEST(test_standby_stopped_is_finished_by_the_next_publish)
{
	struct writer_opts o = opts();
	atomic_bool stop = true;
	char *err = NULL;

	tu_write(src, "a/f", "a1", 0644);
	tu_write(src, "b/f", "b1", 0644);
	struct writer *w = burst_writer(&o);
	ck_assert_int_eq(writer_standby(w, &stop, &err), -ECANCELED);
	char *sb = standby_of(), *sbp = tu_path(dst, sb);
	ck_assert_int_eq(tu_count_entries(sbp), 0);
	assert_standby_recycled(w, ino_of(dst, sb));
	writer_close(w);
	free(sbp);
	free(sb);
}
END_TEST

/* A publish that meets a torn read leaves the standby it recycled as
 * the spare, for the publish that tries again; what the torn one wrote
 * into it is never published. */
START_TEST(test_torn_read_hands_the_standby_back)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};
	struct snapshot *s = NULL;
	atomic_bool stop = false;
	char *err = NULL;

	tu_write(src, "a/f", "a1", 0644);
	tu_write(src, "b/f", "b1", 0644);
	struct writer *w = burst_writer(&o);
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	char *sb = standby_of();
	ino_t root = ino_of(dst, sb);
	char *live = tu_live(dst);
	tu_write(src, "b/f", "b2-longer", 0644);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	/* Written again between the snapshot and the copy. */
	tu_write(src, "b/f", "b3-even-longer", 0644);
	ck_assert_int_eq(writer_publish(w, s, &r, &err), -EAGAIN);
	writer_result_fini(&r);
	free(err);
	err = NULL;
	char *live2 = tu_live(dst);
	ck_assert_str_eq(live2, live);
	ck_assert_int_eq(tu_generations(dst), 3);
	ck_assert(!writer_standby_wanted(w)); /* the spare is back */
	char *sb2 = standby_of();
	ck_assert_uint_eq(ino_of(dst, sb2), root);
	/* The source as the torn attempt would have had it but for b/f,
	 * and b/f as the live generation holds it. */
	tu_write(src, "b/f", "b1", 0644);
	assert_standby_recycled(w, root);
	writer_close(w);
	free(sb2);
	free(live2);
	free(live);
	free(sb);
}
END_TEST

/* A publish that meets a torn read in a recycled spare hands it back
 * knowing where it changed it: the publish that tries again recycles it,
 * looks only there, and flushes there even what it finds already done
 * (c/h, linked by the torn one and never flushed); what no generation
 * changed (e) it neither reads nor flushes. */
START_TEST(test_torn_read_in_a_spare_flushes_what_it_changed)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};
	struct snapshot *s = NULL;
	char *err = NULL;

	tu_write(src, "c/h", "v0", 0644);
	tu_write(src, "d/f", "d1", 0644);
	tu_write(src, "e/g", "e1", 0644);
	publish_ok(w);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1);
	tu_write(src, "c/h", "v1-longer", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	tu_write(src, "d/f", "d2-longer", 0644);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	/* Written again between the snapshot and the copy. */
	tu_write(src, "d/f", "d3-even-longer", 0644);
	ck_assert_int_eq(writer_publish(w, s, &r, &err), -EAGAIN);
	writer_result_fini(&r);
	free(err);
	char *live = tu_live(dst), *sp = standby_of(), *ch = tu_path(sp, "c/h");
	/* The spare is back, and the torn publish got as far as c/h: the
	 * live file, linked. */
	ck_assert_uint_eq(ino_of(dst, sp), root1);
	ck_assert_uint_eq(ino_of(dst, ch), ino_of(dst, "..data/c/h"));
	fsync_record();
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	writer_result_fini(&r);
	char *g3 = tu_live(dst);
	ck_assert_str_ne(g3, live);
	ck_assert_uint_eq(ino_of(dst, g3), root1);
	char *c = tu_path(g3, "c"), *d = tu_path(g3, "d");
	char *e = tu_path(g3, "e");
	ck_assert_msg(fsync_seen(ino_of(dst, c)), "c was not flushed");
	ck_assert(fsync_seen(ino_of(dst, d)));
	ck_assert_msg(!fsync_seen(ino_of(dst, e)), "e was looked at anew");
	ASSERT_TREES();
	writer_close(w);
	free(c);
	free(d);
	free(e);
	free(g3);
	free(ch);
	free(sp);
	free(live);
	free(g1);
}
END_TEST

/* The group `path` has, stat'ed. */
static gid_t gid_of(const char *path)
{
	struct stat st;

	ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
	return st.st_gid;
}

/* A setgid target gives everything made in it its group, in recycled
 * generations too (whose directories lost the bit): with dir_mode 0750
 * and file_mode 0640 the group's readers read every file after every
 * publish. */
START_TEST(test_a_setgid_target_gives_its_group_to_recycled_ones)
{
	ck_assert_msg(tu_can_setuid(), "this test reads as another user: "
				       "run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(chown(dst, 0, 2003), 0);
	ck_assert_int_eq(chmod(dst, 02755), 0);
	struct writer_opts o = opts();
	o.grace_ms = RECYCLE_GRACE_MS;
	o.dir_mode = 0750;
	o.file_mode = 0640;
	struct writer *w = open_writer_with(&o);
	char *a = tu_path(dst, "d/a"), *d = tu_path(dst, "..data/d");
	char *g1 = NULL;
	ino_t root1 = 0;

	for (int round = 0; round < 3; round++) {
		char body[16], *out = NULL;
		snprintf(body, sizeof(body), "v%d", round);
		tu_write(src, "d/a", body, 0644);
		tu_write(src, "top", "t", 0644);
		publish_and_retire(w, RECYCLE_GRACE_MS);
		char *g = tu_live(dst), *top = tu_path(dst, "..data/top");
		if (round == 0) {
			g1 = strdup(g);
			root1 = ino_of(dst, g1);
		}
		ck_assert_uint_eq(gid_of(d), 2003);
		ck_assert_uint_eq(gid_of(a), 2003);
		ck_assert_uint_eq(gid_of(top), 2003);
		const char *argv[] = {"cat", a, NULL};
		ck_assert_int_eq(tu_run_as(2003, argv, &out, NULL, 5000), 0);
		ck_assert_str_eq(out, body);
		free(out);
		free(top);
		free(g);
	}
	/* The third publish recycled the first generation. */
	char *g3 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g3), root1);
	writer_close(w);
	free(g3);
	free(g1);
	free(d);
	free(a);
}
END_TEST

/* Lets the files written so far age past the window in which a file is
 * racy (written within 50 ms of a read of it, snapshot.c): such a file is
 * compared by content at the next publish, opened by its path, and where
 * openat2(2) is missing (valgrind) that is one directory at a time, each
 * counted by tu_opens as an open of the directory it passes. */
static void age_past_racy(void)
{
	wait_past(tu_now_ms() + 60);
}

/* As publish_counting_opens(), the result in *r (to be finished). */
static int publish_counting_opens_r(struct writer *w, const char *name,
				    struct writer_result *r)
{
	struct snapshot *s = NULL;
	char *err = NULL;

	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	atomic_store(&tu_opens, 0);
	atomic_store(&tu_opens_of, name);
	int rc = writer_publish(w, s, r, &err);
	atomic_store(&tu_opens_of, NULL);
	ck_assert_msg(rc == 0, "publish: %s", err ? err : strerror(-rc));
	ck_assert(r->published);
	return atomic_load(&tu_opens);
}

/* Publishes the source, which must publish, counting the writer's opens
 * of `name`. */
static int publish_counting_opens(struct writer *w, const char *name)
{
	struct writer_result r = {0};
	int n = publish_counting_opens_r(w, name, &r);

	writer_result_fini(&r);
	return n;
}

/* A change at the top of a tree, into a recycled spare: the directories
 * below that no generation since changed are kept without being opened
 * (at a million files, ten thousand of them); one that changed is
 * looked at. */
START_TEST(test_recycle_opens_no_directory_that_did_not_change)
{
	struct writer *w = open_recycling_writer();

	tu_write(src, "top", "1", 0644);
	tu_write(src, "sub-a/f", "a1", 0644);
	tu_write(src, "sub-b/f", "b1", 0644);
	tu_write(src, "sub-b/deeper/g", "g1", 0644);
	age_past_racy();
	publish_ok(w);
	char *g1 = tu_live(dst);
	ino_t root1 = ino_of(dst, g1);
	tu_write(src, "sub-a/f", "a2-longer", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	tu_write(src, "top", "22", 0644);
	ck_assert_int_eq(publish_counting_opens(w, "sub-b"), 0);
	char *g3 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g3), root1);
	ASSERT_TREES();
	/* Changed since the spare was made: sub-a is looked at. */
	tu_write(src, "top", "333", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	tu_write(src, "sub-a/f", "a3-longer-still", 0644);
	ck_assert_int_gt(publish_counting_opens(w, "sub-a"), 0);
	ASSERT_TREES();
	writer_close(w);
	free(g3);
	free(g1);
}
END_TEST

/* A file changed beside others leaves its directory as it was, but for
 * it: recycled, the top is not read again (its names, and the
 * directories there, not looked at one by one: what root planted in the
 * spare stays until a publish reads the top), while the files changed
 * in any generation since the spare are written anew, not kept stale. */
START_TEST(test_recycle_reads_no_name_beside_a_file_that_changed)
{
	struct writer *w = open_recycling_writer();

	tu_write(src, "top", "1", 0644);
	tu_write(src, "other", "o1", 0644);
	tu_write(src, "sub-a/f", "a1", 0644);
	tu_write(src, "sub-a/g", "g1", 0644);
	tu_write(src, "sub-b/f", "b1", 0644);
	age_past_racy();
	publish_ok(w);
	char *g1 = tu_live(dst), *gd = tu_path(dst, g1);
	ino_t root1 = ino_of(dst, g1);
	tu_write(src, "other", "o2-longer", 0644);
	tu_write(src, "sub-a/f", "a2-longer", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	tu_write(gd, "planted", "p", 0644);
	tu_write(src, "top", "22", 0644);
	tu_write(src, "sub-a/g", "g2-longer", 0644);
	publish_ok(w);
	char *g3 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g3), root1);
	const char *want[][2] = {{"top", "22"},	       {"other", "o2-longer"},
				 {"sub-a/f", "a2-longer"}, {"sub-a/g", "g2-longer"},
				 {"sub-b/f", "b1"},	       {"planted", "p"}};
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
		char *d = tu_path(dst, "..data"), *p = tu_path(d, want[k][0]);
		char *t = tu_read(p, NULL);
		ck_assert_msg(t && strcmp(t, want[k][1]) == 0, "%s: %s",
			      want[k][0], t ? t : "missing");
		free(t);
		free(p);
		free(d);
	}
	/* Once a name comes at the top, the top of the generation
	 * recycled is read again (what was planted there goes), and a
	 * directory in which a file changed since is read too, not kept
	 * whole. */
	tu_write(src, "top", "333", 0644);
	tu_write(src, "sub-b/f", "b2-longer", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g3 is the spare */
	tu_write(src, "new", "n", 0644);
	publish_ok(w);
	ASSERT_TREES();
	writer_close(w);
	free(g3);
	free(gd);
	free(g1);
}
END_TEST

/* A directory that could be kept whole but for something below it that
 * changed is built entry by entry, the entries before that one included:
 * none is left as kept unread (a directory among them, left so, would be
 * passed over as a file, and what is below it built at the root). */
START_TEST(test_recycle_builds_a_directory_kept_whole_but_for_one_entry)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};

	tu_write(src, "top", "1", 0644);
	tu_write(src, "d/a", "a", 0644);
	tu_write(src, "d/m/x", "x", 0644);
	tu_write(src, "d/sub/c", "c", 0644);
	tu_write(src, "d/z", "z", 0644);
	age_past_racy();
	publish_ok(w);
	tu_write(src, "top", "22", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	/* The root is looked at (top changed since g1); d is as g1 left
	 * it, but d/sub is not. */
	tu_write(src, "top", "333", 0644);
	tu_write(src, "d/sub/c", "cc", 0644);
	/* d/m is kept whole (in d, which is built), never opened. */
	ck_assert_int_eq(publish_counting_opens_r(w, "m", &r), 0);
	ASSERT_TREES();
	/* d/a, d/m/x and d/z kept; top and d/sub/c copied. */
	ck_assert_uint_eq(r.linked, 3);
	ck_assert_uint_eq(r.copied, 2);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

/* In a directory no generation since the spare changed, its children
 * are kept whole in one run, up to the one that holds what changed (in
 * b/sub, below b): that one is built, and the run goes on after it;
 * none is opened (a run that stopped at b/sub itself would leave b kept
 * unread, and build b/sub at the root). */
START_TEST(test_recycle_keeps_runs_of_children_whole)
{
	struct writer *w = open_recycling_writer();
	struct writer_result r = {0};

	tu_write(src, "a/f", "a", 0644);
	tu_write(src, "b/x", "x", 0644);
	tu_write(src, "b/sub/y", "y", 0644);
	tu_write(src, "b/t/f", "t", 0644);
	tu_write(src, "c/f", "c", 0644);
	tu_write(src, "e/f", "e", 0644);
	age_past_racy();
	publish_ok(w);
	tu_write(src, "c/f", "cc", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	tu_write(src, "b/sub/y", "yy", 0644);
	ck_assert_int_eq(publish_counting_opens_r(w, "t", &r), 0);
	ASSERT_TREES();
	/* a/f, b/x, b/t/f and e/f kept, c/f linked from the live one. */
	ck_assert_uint_eq(r.linked, 5);
	ck_assert_uint_eq(r.copied, 1);
	writer_result_fini(&r);
	writer_close(w);
}
END_TEST

/* A run of children kept whole ends with their directory: what comes
 * after it (c, in a root in which a name came) is looked at as its own
 * level has it, here found with another mode in the spare, and given
 * its own back. */
START_TEST(test_recycle_run_of_children_ends_with_their_directory)
{
	struct writer *w = open_recycling_writer();

	tu_write(src, "top", "1", 0644);
	tu_write(src, "b/sub/y", "y", 0644);
	tu_write(src, "b/t/f", "t", 0644);
	tu_write(src, "c/f", "c", 0644);
	age_past_racy();
	publish_ok(w);
	char *g1 = tu_live(dst);
	tu_write(src, "top", "22", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS); /* g1 is the spare */
	char *c = tu_path(dst, g1);
	char *cc = tu_path(c, "c");
	ck_assert_int_eq(chmod(cc, 0750), 0);
	tu_write(src, "top", "333", 0644);
	tu_write(src, "new", "n", 0644);
	tu_write(src, "b/sub/y", "yy", 0644);
	publish_ok(w);
	ASSERT_TREES();
	writer_close(w);
	free(cc);
	free(c);
	free(g1);
}
END_TEST

struct stopper {
	atomic_bool *stop;
	long us;
};

static void *stop_later(void *arg)
{
	struct stopper *st = arg;
	struct timespec ts = {0, st->us * 1000L};

	nanosleep(&ts, NULL);
	atomic_store(st->stop, true);
	return NULL;
}

static int writer_standby_rc;

/* This test's source and target on a tmpfs, where there is one: trees of
 * thousands of files made and removed round after round cost ext4
 * seconds of looking for free inodes (its allocator passes over those
 * freed recently), and flushing is not what the test is about. */
static void use_memory(void)
{
	teardown();
	tmp = tu_mkdtemp_fast();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	tu_mkdirs(src, 0755);
}

/* A tree of `files` files in 12 directories, published in a burst, and
 * a standby linked of it that `*stop` stops after `us` microseconds (its
 * outcome in writer_standby_rc). */
static struct writer *standby_stopped_after(atomic_bool *stop, long us,
					    int files, char **err)
{
	struct writer_opts o = opts();
	struct stopper st = {stop, us};
	pthread_t t;

	/* Where a standby stops is what is tested, not the flush: 2,000
	 * files flushed several times a round take a loaded disk past the
	 * test's time limit. */
	o.fsync = false;
	tu_rmrf(dst);
	tu_rmrf(src);
	tu_mkdirs(src, 0755);
	for (int k = 0; k < files; k++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "%c/%c/f%d", 'a' + k % 4, 'p' + k % 3,
			 k);
		tu_write(src, rel, rel, 0644);
	}
	tu_write(src, "a/f", "a1", 0644);
	struct writer *w = burst_writer(&o);
	ck_assert_int_eq(pthread_create(&t, NULL, stop_later, &st), 0);
	writer_standby_rc = writer_standby(w, stop, err);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	return w;
}

/* Wherever a change stops the standby, what it linked so far is kept
 * and the rest made by the publish: the source, exactly. */
START_TEST(test_standby_stopped_anywhere_is_recycled_right)
{
	use_memory();
	for (int round = 0; round < 12; round++) {
		atomic_bool stop = false;
		char *err = NULL;
		struct writer *w = standby_stopped_after(&stop, round * 150L,
							 120, &err);
		int rc = writer_standby_rc;
		ck_assert_msg(rc == 0 || rc == -ECANCELED, "round %d: %s", round,
			      strerror(-rc));
		char *sb = standby_of();
		assert_standby_recycled(w, ino_of(dst, sb));
		writer_close(w);
		free(sb);
	}
}
END_TEST

/* A standby stopped where no publish took it (a read found nothing to
 * publish) is gone on with, in the same directory, however often it is
 * stopped: what it linked is kept, the rest linked, and the next publish
 * recycles the whole. */
START_TEST(test_standby_stopped_is_gone_on_with)
{
	use_memory();
	for (int round = 0; round < 8; round++) {
		atomic_bool stop = round == 0;
		char *err = NULL;
		/* 2,000 files take a standby some milliseconds: most rounds
		 * stop it part of the way. */
		struct writer *w = standby_stopped_after(&stop, round * 1500L,
							 2000, &err);
		int rc = writer_standby_rc;
		char *sb = standby_of();
		ino_t ino = ino_of(dst, sb);
		if (rc == -ECANCELED) {
			/* Stopped again at once, before it reaches where it
			 * stopped first: both are left to finish. */
			ck_assert(writer_standby_wanted(w));
			atomic_store(&stop, true);
			ck_assert_int_eq(writer_standby(w, &stop, &err),
					 -ECANCELED);
			ck_assert(writer_standby_wanted(w));
			atomic_store(&stop, false);
			ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
			free(sb);
			sb = standby_of();
			ck_assert_uint_eq(ino_of(dst, sb), ino);
		}
		ck_assert_msg(rc == 0 || rc == -ECANCELED, "round %d: %s", round,
			      strerror(-rc));
		ck_assert(!writer_standby_wanted(w)); /* linked whole */
		assert_standby_recycled(w, ino);
		writer_close(w);
		free(sb);
	}
}
END_TEST

/* What a standby learns of the live files (after a start without a
 * state, the identity of each) reaches the state on disk, though the
 * journal records only what differs from what live holds. */
START_TEST(test_what_a_standby_learns_is_recorded)
{
	struct writer_opts o = opts();
	atomic_bool stop = false;
	char *err = NULL;

	o.grace_ms = 60000;
	for (int k = 0; k < 12; k++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "d%d/f%d", k % 3, k);
		tu_write(src, rel, rel, 0644);
	}
	struct writer *w = open_writer_with(&o);
	publish_ok(w);
	writer_close(w);
	char *state = tu_path(dst, STATE_FILE);
	ck_assert_int_eq(unlink(state), 0);
	tu_nap(120);
	w = open_writer_with(&o);
	publish_ok(w); /* unchanged, compared by content: identities unknown */
	ck_assert(writer_standby_wanted(w));
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	tu_write(src, "d0/f0", "changed", 0644);
	publish_ok(w);
	writer_close(w);
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct snapshot *s = NULL;
	char *gen = NULL;
	bool sound;
	ck_assert_int_eq(state_load(dfd, 100, &s, &gen, &sound), 0);
	for (size_t i = 0; i < s->n; i++)
		ck_assert_msg(s->v[i].type == SNAP_DIR || s->v[i].t_ino != 0,
			      "%s: identity not recorded", s->v[i].path);
	snapshot_free(s);
	free(gen);
	free(state);
	close(dfd);
}
END_TEST

/* A standby stopped partway gives way to a replaced generation that is
 * due, which is complete: recycling the partial one would link all it
 * lacks (at a million files, seconds) on the change's path.  Whether the
 * publish finds it due (round 0) or writer_gc_take does first (round 1),
 * the replaced one is recycled and the partial one removed. */
START_TEST(test_partial_standby_gives_way_to_a_due_one)
{
	for (int round = 0; round < 2; round++) {
		struct writer_opts o = opts();
		struct writer_result r = {0};
		atomic_bool stop = true;
		char *err = NULL;

		tu_rmrf(dst);
		o.grace_ms = 60000;
		struct writer *w = open_writer_with(&o);
		tu_write(src, "a/f", "1", 0644);
		tu_write(src, "b/g", "g", 0644);
		publish_ok(w);
		char *first = tu_live(dst);
		ino_t replaced = ino_of(dst, first);
		tu_write(src, "a/f", "2", 0644);
		publish_ok(w);
		long long due = tu_now_ms() + o.grace_ms;
		ck_assert_msg(writer_standby_wanted(w),
			      "the second publish took a grace period");
		ck_assert_int_eq(writer_standby(w, &stop, &err), -ECANCELED);
		char *sb = standby_of();
		ino_t partial = ino_of(dst, sb);
		skip_past(due);
		if (round == 1) {
			ck_assert_int_eq(writer_retire(w, false, NULL), 0);
			ck_assert_int_eq(tu_generations_of_mode(dst, 0700, NULL),
					 0);
		}
		tu_write(src, "a/f", "3", 0644);
		ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
		ck_assert(r.published);
		writer_result_fini(&r);
		char *g = tu_live(dst);
		ck_assert_uint_eq(ino_of(dst, g), replaced);
		ck_assert_uint_ne(ino_of(dst, g), partial);
		ASSERT_TREES();
		ck_assert_int_eq(writer_retire(w, false, NULL), 0);
		ck_assert_int_eq(tu_generations_of_mode(dst, 0700, NULL), 0);
		writer_close(w);
		free(g);
		free(sb);
		free(first);
	}
}
END_TEST

/* `n` files in 10 directories of the source. */
static void write_files(int n)
{
	for (int k = 0; k < n; k++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "d%d/f%d", k % 10, k);
		tu_write(src, rel, rel, 0644);
	}
}

/* A writer (grace period a minute) that published 3,000 files and then
 * one change, in a burst: the generation it replaced, `replaced` its root
 * inode, is due at *due; no standby ran. */
static struct writer *replaced_in_a_burst(ino_t *replaced, long long *due)
{
	struct writer_opts o = opts();

	o.grace_ms = 60000;
	write_files(3000);
	struct writer *w = open_writer_with(&o);
	publish_ok(w);
	char *first = tu_live(dst);
	*replaced = ino_of(dst, first);
	free(first);
	tu_write(src, "d0/f0", "2", 0644);
	publish_ok(w);
	*due = tu_now_ms() + o.grace_ms;
	return w;
}

/* `s` published (just before the replaced generation is due): that
 * generation, its root inode `replaced`, is recycled into the new one.
 * Closes `w`. */
static void publish_recycles_one_due(struct writer *w, struct snapshot *s,
				     ino_t replaced)
{
	struct writer_result r = {0};

	ck_assert_int_eq(writer_publish(w, s, &r, NULL), 0);
	ck_assert(r.published);
	writer_result_fini(&r);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), replaced);
	ASSERT_TREES();
	writer_close(w);
	free(g);
}

/* With nothing to recycle, a publish that would link every file waits
 * for a replaced generation that comes due sooner than that would take
 * (as the last standby measured it), and recycles that one. */
START_TEST(test_publish_waits_for_one_due_sooner_than_linking_all)
{
	atomic_bool stop = false;
	char *err = NULL;
	ino_t replaced;
	long long due;
	struct writer *w = replaced_in_a_burst(&replaced, &due);
	long long t0 = tu_now_ms();

	ck_assert_msg(writer_standby_wanted(w),
		      "the second publish took a grace period");
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	long long linking = tu_now_ms() - t0;
	tu_write(src, "d0/f0", "3", 0644);
	publish_ok(w); /* recycles the standby: no spare is left */
	ck_assert_msg(tu_now_ms() + linking / 2 < due,
		      "the standby took %lld ms, past the grace period",
		      linking);
	tu_write(src, "d0/f0", "4", 0644);
	struct snapshot *s = NULL;
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	/* Read ahead: from here to the writer's choice is a compare. */
	skip_past(due - linking / 2);
	publish_recycles_one_due(w, s, replaced);
}
END_TEST

/* Before a standby has measured how fast linking goes (after a start, a
 * change may stop the first one at once), a publish that would link
 * every file still waits for a replaced generation that comes due sooner
 * than linking would take at the fastest (3,000 files at 2 us, on two
 * threads: 3 ms), and recycles it. */
START_TEST(test_publish_waits_before_a_link_rate_is_known)
{
	ino_t replaced;
	long long due;
	struct writer *w = replaced_in_a_burst(&replaced, &due);
	struct snapshot *s = NULL;

	tu_write(src, "d0/f0", "3", 0644);
	ck_assert_int_eq(snapshot_take(src, NULL, &s, NULL), 0);
	skip_past(due - 3);
	publish_recycles_one_due(w, s, replaced);
}
END_TEST

/* The live generation a start finds has a place among the generations
 * like one made here: the standby linked from it after the start is
 * recycled by the first change looking only where that change is.  A
 * file only root could have replaced in another directory of the
 * standby is not looked at then (as in any generation only we can
 * change); the next full check finds it. */
START_TEST(test_standby_after_a_start_is_looked_at_where_it_differs)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};
	atomic_bool stop = false;
	char *err = NULL;

	o.grace_ms = 60000;
	tu_write(src, "x/f", "x", 0644);
	tu_write(src, "y/g", "y1", 0644);
	struct writer *w = open_writer_with(&o);
	publish_ok(w);
	writer_close(w);
	w = open_writer_with(&o);
	publish_ok(w); /* unchanged: the full check of a start */
	ck_assert(writer_standby_wanted(w)); /* none replaced yet */
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	char *sb = standby_of();
	ino_t root = ino_of(dst, sb);
	char *sd = tu_path(dst, sb), *sf = tu_path(sd, "x/f");
	ck_assert_int_eq(unlink(sf), 0); /* a link to the live one */
	tu_write(sd, "x/f", "root's", 0644);
	tu_write(src, "y/g", "y2", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	ck_assert_uint_eq(r.changed, 1);
	writer_result_fini(&r);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), root); /* the standby, renamed */
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_msg(r.published, "x was read by the change before");
	writer_result_fini(&r);
	ASSERT_TREES();
	writer_close(w);
	free(g);
	free(sf);
	free(sd);
	free(sb);
}
END_TEST

/* The live generation a start finds is looked at in full once it is
 * recycled: a name put into it while no writer ran is not in the state,
 * and only a full look finds it (the check at the start looks at the
 * files the state lists). */
START_TEST(test_live_found_at_a_start_is_recycled_in_full)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};

	o.grace_ms = 300;
	tu_write(src, "x/f", "x", 0644);
	tu_write(src, "y/g", "y1", 0644);
	struct writer *w = open_writer_with(&o);
	publish_ok(w);
	writer_close(w);
	char *live = tu_live(dst);
	char *ld = tu_path(dst, live);
	ino_t found = ino_of(dst, live);
	tu_write(ld, "x/extra", "stale", 0644);
	w = open_writer_with(&o);
	tu_write(src, "y/g", "y2", 0644);
	publish_ok(w); /* the full check of a start; `live` is replaced */
	long long due = tu_now_ms() + o.grace_ms;
	wait_past(due);
	ck_assert_int_eq(writer_retire(w, false, NULL), 0); /* the spare */
	tu_write(src, "y/g", "y3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published);
	writer_result_fini(&r);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), found); /* recycled */
	ASSERT_TREES();
	writer_close(w);
	free(g);
	free(ld);
	free(live);
}
END_TEST

/* A writer that published x/f and y/g ("y1"), then y/g again ("y2")
 * within the grace period (a minute), and skipped until the generation
 * that replaced is due; that one's name in *g1, its root inode in
 * *old. */
static struct writer *burst_writer_due(struct writer_opts *o, char **g1,
				       ino_t *old)
{
	o->grace_ms = 60000;
	tu_write(src, "x/f", "x", 0644);
	tu_write(src, "y/g", "y1", 0644);
	struct writer *w = open_writer_with(o);
	publish_ok(w);
	*g1 = tu_live(dst);
	*old = ino_of(dst, *g1);
	/* None replaced yet: the first change would link every file. */
	ck_assert(writer_standby_wanted(w));
	tu_write(src, "y/g", "y2", 0644);
	publish_ok(w);
	long long due = tu_now_ms() + o->grace_ms;
	ck_assert_msg(writer_standby_wanted(w),
		      "the second publish took a grace period");
	skip_past(due);
	return w;
}

/* In a burst, a replaced generation that is due is recycled into the
 * standby, looked at only where it differs from the live one; so is the
 * one a restart finds due, looked at in full.  A standby is not wanted
 * once changes come further apart than the grace period, nor with
 * grace_ms 0. */
START_TEST(test_standby_recycles_one_that_is_due)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};
	atomic_bool stop = false;
	char *err = NULL;
	ino_t old;

	char *g1;
	struct writer *w = burst_writer_due(&o, &g1, &old);
	ck_assert(writer_standby_wanted(w));
	/* Nothing changed in x since: it is not read, so root's change to
	 * it stays (a full check finds it). */
	char *x1 = tu_path(dst, g1);
	char *xf = tu_path(x1, "x/f");
	ck_assert_int_eq(unlink(xf), 0);
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	ck_assert(!writer_standby_wanted(w)); /* it is there */
	char *sb = standby_of(), *sd = tu_path(dst, sb);
	ck_assert_uint_eq(ino_of(dst, sb), old); /* recycled, not made */
	ck_assert_int_eq(tu_generations(dst), 2);
	ck_assert_uint_eq(ino_of(sd, "y/g"), ino_of(dst, "..data/y/g"));
	char *sx = tu_path(sd, "x/f");
	ck_assert_int_ne(access(sx, F_OK), 0); /* x was not read */
	tu_write(src, "y/g", "y3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 1);
	writer_result_fini(&r);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), old);
	writer_verify_next(w);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert(r.published); /* the full check found x/f missing */
	writer_result_fini(&r);
	ASSERT_TREES();
	/* Changes further apart than the grace period are no burst. */
	skip_past(tu_now_ms() + o.grace_ms);
	char *kept = tu_live(dst);
	ino_t kino = ino_of(dst, kept);
	tu_write(src, "y/g", "y4", 0644);
	publish_ok(w);
	ck_assert(!writer_standby_wanted(w));
	writer_close(w);
	/* A restart within the grace period of the generation the last run
	 * left: the first change will recycle it once it is due. */
	w = open_writer_with(&o);
	publish_ok(w); /* unchanged: every live file has been looked at */
	ck_assert(!writer_standby_wanted(w));
	writer_close(w);
	/* Past it, the standby after a start recycles it (read in full:
	 * what the last run did to it is not known), off the way of the
	 * first change, which recycles the standby.  A start ages it by the
	 * wall clock: a shorter grace period, waited out. */
	o.grace_ms = 300;
	tu_nap(400);
	w = open_writer_with(&o);
	publish_ok(w);
	ck_assert(writer_standby_wanted(w));
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	char *sb2 = standby_of();
	ck_assert_uint_eq(ino_of(dst, sb2), kino);
	tu_write(src, "y/g", "y5", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 1);
	writer_result_fini(&r);
	char *g5 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g5), kino);
	ASSERT_TREES();
	writer_close(w);
	free(g5);
	free(sb2);
	free(kept);
	/* grace_ms = 0 keeps no generation but the live one, standby or
	 * replaced. */
	o.grace_ms = 0;
	tu_rmrf(dst);
	w = open_writer_with(&o);
	publish_ok(w);
	ck_assert(!writer_standby_wanted(w));
	writer_close(w);
	free(g);
	free(sx);
	free(sd);
	free(sb);
	free(xf);
	free(x1);
	free(g1);
}
END_TEST

/* While publishes come within a grace period of each other, a standby
 * of the live generation stays the spare: the replaced generations that
 * leave their reserve are removed rather than take its place. */
START_TEST(test_standby_keeps_its_place_in_a_burst)
{
	struct writer_opts o = opts();
	struct writer_result r = {0};
	atomic_bool stop = false;
	char *err = NULL;
	enum { G = 60000 }; /* the grace period; the clock skips */

	o.grace_ms = G;
	tu_write(src, "x/f", "x", 0644);
	struct writer *w = open_writer_with(&o);
	publish_ok(w);
	/* Three replaced at once (the first at t0), one before they are
	 * due (t0 + 0.8 G), and one after (t0 + 1.5 G), which recycles the
	 * newest; the standby recycles the next, and the first stays. */
	const char *v[] = {"1", "2", "3", "4", "5"};
	long long t0 = 0, at[] = {0, 0, 0, G / 10 * 8, G / 10 * 15};
	for (int k = 0; k < 5; k++) {
		skip_past(t0 + at[k]);
		tu_write(src, "a", v[k], 0644);
		publish_ok(w);
		if (k == 0)
			t0 = tu_now_ms();
	}
	ck_assert_msg(tu_now_ms() < t0 + G / 10 * 19,
		      "the publishes took too long");
	ck_assert(writer_standby_wanted(w));
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	char *sb = standby_of();
	ino_t ino = ino_of(dst, sb);
	/* The first leaves its reserve at t0 + 2 G; the last publish was
	 * less than a grace period ago. */
	skip_past(t0 + G / 10 * 21);
	ck_assert_int_eq(writer_retire(w, false, NULL), 0);
	ck_assert_int_eq(tu_generations_of_mode(dst, 0700, NULL), 1);
	tu_write(src, "a", "after", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	writer_result_fini(&r);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), ino);
	ASSERT_TREES();
	writer_close(w);
	free(g);
	free(sb);
}
END_TEST

/* A standby recycling a replaced generation, stopped before it got
 * anywhere, leaves to look at all the directories where that generation
 * may differ from the live one: the publish that takes it finds y/g as
 * the replaced generation held it, and changes it. */
START_TEST(test_recycled_standby_stopped_leaves_where_it_differs)
{
	struct writer_opts o = opts();
	atomic_bool stop = true;
	char *err = NULL;
	ino_t old;
	char *g1;

	struct writer *w = burst_writer_due(&o, &g1, &old);
	ck_assert_int_eq(writer_standby(w, &stop, &err), -ECANCELED);
	char *sb = standby_of();
	ck_assert_uint_eq(ino_of(dst, sb), old);
	tu_write(src, "x/f", "x2", 0644);
	publish_ok(w);
	char *g = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g), old); /* the partial one, renamed */
	ASSERT_TREES();
	writer_close(w);
	free(g);
	free(sb);
	free(g1);
}
END_TEST

/* A file another user can write, changed in the live generation, is not
 * carried into a standby, nor kept from one. */
START_TEST(test_standby_checks_files_others_can_write)
{
	ck_assert_msg(tu_can_setuid(), "this test writes files as another "
				       "user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct writer_opts o = opts();
	atomic_bool stop = false;
	struct writer_result r = {0};
	char *err = NULL;

	o.file_mode = 0666;
	tu_write(src, "d/a", "same", 0644);
	tu_write(src, "b", "1", 0644);
	char *sd = tu_path(src, "d");
	ck_assert_int_eq(chmod(sd, 0755), 0); /* reached by uid 2005 */
	free(sd);
	tu_nap(120);
	struct writer *w = burst_writer(&o);
	/* Changed before: the standby is not made. */
	tamper_as(2005, "d/a", "evil");
	ck_assert_int_eq(writer_standby(w, &stop, &err), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, dst));
	free(err);
	err = NULL;
	ck_assert_int_eq(tu_generations(dst), 2);
	tu_write(src, "b", "2", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	writer_result_fini(&r);
	assert_live("d/a", "same");
	/* Changed after: the publish that recycles it writes it afresh. */
	ck_assert_int_eq(writer_standby(w, &stop, &err), 0);
	tamper_as(2005, "d/a", "evil");
	tu_nap(120);
	tu_write(src, "b", "3", 0644);
	ck_assert_int_eq(publish_tree(w, &r, NULL), 0);
	ck_assert_uint_eq(r.changed, 2);
	writer_result_fini(&r);
	assert_live("d/a", "same");
	assert_live("b", "3");
	writer_close(w);
}
END_TEST

/* A standby of a tree this large is linked in two halves, by two
 * threads (a/ in the first, top and z/ in the second): a live file that
 * another user changed, in the half `bad` is in, fails it as a whole
 * with the error of that half, and nothing of it is left. */
static void split_standby_fails_at(const char *bad)
{
	ck_assert_msg(tu_can_setuid(), "this test writes files as another "
				       "user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct writer_opts o = opts();
	atomic_bool stop = false;
	char *err = NULL;

	o.file_mode = 0666;
	for (int k = 0; k < 150; k++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "a/f%03d", k);
		tu_write(src, rel, "a", 0644);
		rel[0] = 'z';
		tu_write(src, rel, "z", 0644);
	}
	tu_nap(120);
	struct writer *w = burst_writer(&o);
	tamper_as(2005, bad, "evil");
	ck_assert_int_eq(writer_standby(w, &stop, &err), -ESTALE);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, dst));
	free(err);
	ck_assert_int_eq(tu_generations(dst), 2);
	writer_close(w);
}

START_TEST(test_split_standby_fails_in_its_first_half)
{
	split_standby_fails_at("a/f149");
}
END_TEST

START_TEST(test_split_standby_fails_in_its_second_half)
{
	split_standby_fails_at("z/f149");
}
END_TEST

/* As a user: through a descriptor of `dir`, opened while the user may
 * write it, puts a file of theirs in place of "a" again and again until
 * that is refused.  Writes a byte to `ready` once one is in place. */
static int plant_loop(const char *dir, int ready)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long long end = tu_now_ms() + tu_scale(20000);
	bool planted = false;

	if (dfd < 0)
		return 2;
	while (tu_now_ms() < end) {
		int fd = openat(dfd, "planted", O_WRONLY | O_CREAT | O_TRUNC |
						    O_NOFOLLOW, 0666);
		if (fd < 0 && errno == EACCES)
			return planted ? 0 : 3;
		if (fd < 0)
			continue;
		bool wrote = write(fd, "evil", 4) == 4;
		close(fd);
		if (!wrote)
			return 4;
		if (renameat(dfd, "planted", dfd, "a") < 0) {
			if (errno == EACCES)
				return planted ? 0 : 3;
			continue;
		}
		if (!planted && write(ready, "x", 1) != 1)
			return 4;
		planted = true;
	}
	return 5;
}

/* plant_loop(), and then its result, as a digit, to `ready` too: under
 * valgrind the exit status is valgrind's. */
static int plant_until_refused(const char *dir, int ready)
{
	int rc = plant_loop(dir, ready);
	char c = (char)('0' + rc);

	return write(ready, &c, 1) == 1 ? rc : 6;
}

/* A directory of the spare that every user could write (dir_mode = 0777
 * until a restart with 0755) is recycled: someone who opened it while
 * they could keeps putting a file of theirs in it, which must not be
 * published, nor linked forward without a look.  The directory is not
 * kept at all (what they moved into it may be root's, see check_security):
 * it is moved aside whole and made anew. */
/* Options that let others write a generation's directories, and a
 * writer with them that has published d/a and t (to be recycled). */
static struct writer *open_dirs_published(struct writer_opts *o)
{
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	*o = opts();
	o->fsync = false;
	o->grace_ms = RECYCLE_GRACE_MS;
	o->dir_mode = 0777;
	struct writer *w = open_writer_with(o);

	tu_write(src, "d/a", "good", 0644);
	tu_write(src, "t", "1", 0644);
	publish_ok(w);
	return w;
}

START_TEST(test_recycled_dir_others_could_write_is_shut_first)
{
	ck_assert_msg(tu_can_setuid(), "this test writes files as another "
				       "user: run it as root");
	struct writer_opts o;
	struct writer *w = open_dirs_published(&o);
	char *g1 = tu_live(dst), *gd = tu_path(dst, g1);
	char *d1 = tu_path(gd, "d");
	ino_t root1 = ino_of(dst, g1), dir1 = ino_of(gd, "d");
	tu_write(src, "t", "22", 0644);
	/* Closed before it retires g1: with that dir_mode it recycles none,
	 * and would remove it. */
	publish_ok(w);
	wait_past(tu_now_ms() + RECYCLE_GRACE_MS);
	writer_close(w);
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		if (setgroups(0, NULL) < 0 || setresgid(2006, 2006, 2006) < 0 ||
		    setresuid(2006, 2006, 2006) < 0)
			_exit(125);
		int rc = plant_until_refused(d1, pfd[1]);
		free(d1); /* for valgrind, which checks the child too */
		free(gd);
		free(g1);
		_exit(rc);
	}
	close(pfd[1]);
	char c;
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	/* Files to copy after d/a: the time between its look and the end of
	 * the directory. */
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d/n%03d", i);
		tu_write(src, name, "n", 0644);
	}
	o.dir_mode = 0755;
	w = open_writer_with(&o);
	publish_ok(w);
	tu_kill(pid);
	close(pfd[0]);
	char *g3 = tu_live(dst);
	ck_assert_uint_eq(ino_of(dst, g3), root1); /* the spare, recycled */
	ck_assert_uint_ne(ino_of(dst, "..data/d"), dir1);
	ASSERT_TREES();
	/* And the publish after, which links d/a forward. */
	tu_write(src, "t", "333", 0644);
	publish_ok(w);
	ASSERT_TREES();
	writer_close(w);
	free(g3);
	free(d1);
	free(gd);
	free(g1);
}
END_TEST

/* Such a directory that cannot be moved aside (WRITER_ASIDE is a file
 * here) fails the publish, saying which and why, not gone into; the live
 * generation stays, and the next publish, once it can, goes on. */
START_TEST(test_recycled_open_dir_that_cannot_go_aside_says_so)
{
	struct writer_opts o;
	struct writer *w = open_dirs_published(&o);

	tu_write(src, "t", "22", 0644);
	publish_ok(w);
	wait_past(tu_now_ms() + RECYCLE_GRACE_MS);
	writer_close(w);
	char *live = tu_live(dst), *aside = tu_path(dst, WRITER_ASIDE);
	tu_write(dst, WRITER_ASIDE, "not a directory", 0600);
	tu_write(src, "t", "333", 0644);
	o.dir_mode = 0755;
	w = open_writer_with(&o);
	struct writer_result r = {0};
	char *err = NULL;
	ck_assert_int_eq(publish_tree(w, &r, &err), -EPERM);
	ck_assert_msg(err && strstr(err, ": d, made while dir_mode let others "
					 "write it, cannot be moved aside "
					 "into " WRITER_ASIDE ": "),
		      "%s", err ? err : "no error");
	writer_result_fini(&r);
	free(err);
	char *now = tu_live(dst);
	ck_assert_str_eq(now, live);
	char *t = tu_path(dst, "t"), *text = tu_read(t, NULL);
	ck_assert_str_eq(text, "22");
	free(text);
	free(t);
	ck_assert_int_eq(unlink(aside), 0);
	publish_ok(w);
	ASSERT_TREES();
	writer_close(w);
	free(now);
	free(aside);
	free(live);
}
END_TEST

/* What the user owner named put into a generation is still theirs once a
 * reload takes owner away: a directory of theirs holding one of theirs in
 * another group (which a removal does not go into) is moved aside when
 * the generation is recycled, or removed, not left in the target, one
 * more at each start. */
START_TEST(test_what_a_former_owner_left_goes_aside)
{
	struct writer_opts o = owner_opts(2005);
	o.fsync = false;
	o.grace_ms = RECYCLE_GRACE_MS;
	struct writer *w = open_writer_with(&o);

	tu_write(src, "d/f", "1", 0644);
	publish_ok(w);
	char *g1 = tu_live(dst), *cmd, *p;
	ck_assert_int_gt(asprintf(&p, "%s/%s/d/o/p", dst, g1), 0);
	ck_assert_int_gt(asprintf(&cmd, "mkdir -p '%s'", p), 0);
	ck_assert_int_eq(tu_sh_as(2005, cmd), 0);
	ck_assert_int_eq(chown(p, 2005, 3000), 0);
	writer_close(w);
	o.uid = o.gid = SNAP_NO_ID;
	for (int i = 0; i < 4; i++) {
		w = open_writer_with(&o);
		tu_write(src, "d/f", i % 2 ? "22" : "333", 0644);
		publish_ok(w);
		wait_past(tu_now_ms() + RECYCLE_GRACE_MS);
		writer_close(w);
	}
	ASSERT_TREES();
	ck_assert_int_le(tu_generations(dst), 2);
	char *aside = tu_path(dst, WRITER_ASIDE);
	ck_assert_int_eq(tu_count_names(aside), 1);
	/* Nothing of the live generation is theirs any more. */
	char *find, *out = NULL;
	ck_assert_int_gt(asprintf(&find, "find '%s/..data/' ! -uid 0", dst), 0);
	const char *argv[] = {"sh", "-c", find, NULL};
	ck_assert_int_eq(tu_run(argv, &out, NULL, 20000), 0);
	ck_assert_msg(out[0] == '\0', "still theirs: %s", out);
	free(out);
	free(find);
	free(aside);
	free(cmd);
	free(p);
	free(g1);
}
END_TEST

/* The same where the recycle stops (the file system full) after it took
 * over the top of a former owner's directories but before it reached what
 * is theirs below: the unfinished generation, whose top is root's by
 * then, is moved aside all the same, not left in the target. */
START_TEST(test_a_recycle_stopped_after_taking_over_goes_aside)
{
	tu_private_mounts();
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(mount("tmpfs", dst, "tmpfs", 0, "size=512k,mode=0755"),
			 0);
	struct writer_opts o = owner_opts(2005);
	o.fsync = false;
	o.grace_ms = RECYCLE_GRACE_MS;
	struct writer *w = open_writer_with(&o);

	tu_write(src, "d/o/x", "1", 0644);
	publish_ok(w);
	char *g1 = tu_live(dst), *p;
	tu_write(src, "t", "2", 0644);
	publish_ok(w);
	ck_assert_int_gt(asprintf(&p, "%s/%s/d/o/p", dst, g1), 0);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	ck_assert_int_eq(chown(p, 2005, 3000), 0);
	wait_past(tu_now_ms() + RECYCLE_GRACE_MS);
	writer_close(w);
	/* d/a, copied after d is taken over and before d/o is reached,
	 * does not fit. */
	char *big = malloc(1024 * 1024 + 1);
	memset(big, 'b', 1024 * 1024);
	big[1024 * 1024] = '\0';
	tu_write(src, "d/a", big, 0644);
	o.uid = o.gid = SNAP_NO_ID;
	w = open_writer_with(&o);
	struct writer_result r = {0};
	char *err = NULL;
	ck_assert_int_eq(publish_tree(w, &r, &err), -ENOSPC);
	writer_result_fini(&r);
	free(err);
	writer_close(w);
	char *aside = tu_path(dst, WRITER_ASIDE);
	ck_assert_int_eq(tu_count_names(aside), 1);
	ck_assert_int_eq(tu_generations(dst), 1); /* the live one */
	ck_assert_int_eq(umount2(dst, MNT_DETACH), 0);
	free(aside);
	free(big);
	free(p);
	free(g1);
}
END_TEST

#define TOGGLED 40

/* As a user, in `dir`, which they may write: puts a file of theirs in
 * place of f<i> (the file there kept aside as k<i>), or puts that back,
 * for one i after another at random, until killed.  Writes a byte to
 * `ready` once each has had its turn. */
static int toggle_files(const char *dir, int ready)
{
	long long end = tu_now_ms() + tu_scale(20000);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool theirs[TOGGLED] = {false};
	unsigned seed = 1;
	char f[16], k[16];

	if (dfd < 0)
		return 2;
	for (long n = 0; tu_now_ms() < end; n++) {
		int i = n < TOGGLED ? (int)n : (int)(rand_r(&seed) % TOGGLED);
		snprintf(f, sizeof(f), "f%02d", i);
		snprintf(k, sizeof(k), "k%02d", i);
		if (theirs[i]) {
			(void)renameat(dfd, k, dfd, f);
		} else {
			(void)renameat(dfd, f, dfd, k);
			int fd = openat(dfd, "planted", O_WRONLY | O_CREAT |
							    O_TRUNC, 0644);
			if (fd < 0 || write(fd, "evil", 4) != 4)
				return 3;
			close(fd);
			(void)renameat(dfd, "planted", dfd, f);
		}
		theirs[i] = !theirs[i];
		if (n == TOGGLED && write(ready, "x", 1) != 1)
			return 4;
	}
	return 5;
}

/* The live generation's directory that every user can write (dir_mode =
 * 0777 until a restart with 0755) is linked from: a name there may be
 * someone else's file by the time it is linked, though its look (the
 * full check) found atomsync's.  None is ever linked into the new
 * generation, where the directory being only root's, the publishes
 * after would link it forward without a look. */
START_TEST(test_link_from_a_dir_others_can_write_is_looked_at)
{
	ck_assert_msg(tu_can_setuid(), "this test writes files as another "
				       "user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct writer_opts o = opts();
	o.fsync = false;
	o.dir_mode = 0777;
	struct writer *w = open_writer_with(&o);

	for (int i = 0; i < TOGGLED; i++) {
		char name[16];
		snprintf(name, sizeof(name), "d/f%02d", i);
		tu_write(src, name, "good", 0644);
	}
	tu_nap(120); /* their times tell: no compare of content */
	publish_ok(w);
	writer_close(w);
	char *gen = tu_live(dst), *gd = tu_path(dst, gen);
	char *d = tu_path(gd, "d");
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		if (setgroups(0, NULL) < 0 || setresgid(2007, 2007, 2007) < 0 ||
		    setresuid(2007, 2007, 2007) < 0)
			_exit(125);
		_exit(toggle_files(d, pfd[1]));
	}
	close(pfd[1]);
	char c;
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	close(pfd[0]);
	/* Copied between the look at every file and the first link: time
	 * for each to change hands again. */
	size_t big = 16u << 20;
	char *data = calloc(1, big);
	tu_write_len(src, "a_big", data, big, 0644);
	free(data);
	o.dir_mode = 0755;
	w = open_writer_with(&o);
	publish_ok(w);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ASSERT_TREES();
	writer_close(w);
	free(d);
	free(gd);
	free(gen);
}
END_TEST

/* A reader that keeps a generation open past its grace period, until it
 * is recycled: files it opened keep their content; a name it opens then
 * is a complete file of the newer version. */
START_TEST(test_reader_holding_a_recycled_generation)
{
	struct writer *w = open_recycling_writer();

	tu_write(src, "a", "v1", 0644);
	tu_write(src, "b", "v1", 0644);
	publish_and_retire(w, 0);
	int dfd = open(dst, O_RDONLY | O_DIRECTORY);
	int gfd = openat(dfd, "..data", O_RDONLY | O_DIRECTORY);
	int afd = openat(gfd, "a", O_RDONLY);
	ck_assert_int_ge(afd, 0);
	tu_write(src, "a", "v2", 0644);
	tu_write(src, "b", "v2", 0644);
	publish_and_retire(w, RECYCLE_GRACE_MS);
	tu_write(src, "a", "v3", 0644);
	tu_write(src, "b", "v3", 0644);
	publish_ok(w);
	char buf[8] = {0};
	ck_assert_int_eq(pread(afd, buf, sizeof(buf) - 1, 0), 2);
	ck_assert_str_eq(buf, "v1");
	int bfd = openat(gfd, "b", O_RDONLY);
	ck_assert_int_ge(bfd, 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(pread(bfd, buf, sizeof(buf) - 1, 0), 2);
	ck_assert_str_eq(buf, "v3");
	close(bfd);
	close(afd);
	close(gfd);
	close(dfd);
	writer_close(w);
}
END_TEST

/* ---- Readers during 200 publishes ---- */

#define NFILES 8

/* Version v of file i: "v<v> i<i> " padded to a size that differs
 * between versions, so a mix or a tear shows. */
static void version_data(int v, int i, char *buf, size_t *len)
{
	int n = snprintf(buf, 64, "v%d i%d ", v, i);
	size_t want = (size_t)(100 + i * 37 + v * 1500);
	for (size_t k = (size_t)n; k < want; k++)
		buf[k] = (char)('a' + (k * (size_t)(v + 3) + (size_t)i) % 26);
	*len = want;
}

static int reader(const char *target)
{
	char want[2][NFILES][4096];
	size_t wlen[2][NFILES];
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < NFILES; i++)
			version_data(v, i, want[v][i], &wlen[v][i]);
	char *data = tu_path(target, "..data");
	char buf[8192];
	long rounds = 0;
	for (;;) {
		int dfd = open(data, O_RDONLY | O_DIRECTORY);
		if (dfd < 0) {
			fprintf(stderr, "reader: open ..data: %s\n", strerror(errno));
			return 1;
		}
		int seen = -1;
		for (int i = 0; i < NFILES; i++) {
			char name[32];
			snprintf(name, sizeof(name), "%s/f%d", i % 2 ? "sub" : ".", i);
			int fd = openat(dfd, name, O_RDONLY);
			if (fd < 0) {
				fprintf(stderr, "reader: %s: %s (round %ld)\n", name,
					strerror(errno), rounds);
				return 1;
			}
			ssize_t n = read(fd, buf, sizeof(buf));
			close(fd);
			/* Dwell in the generation like a reader that parses
			 * what it reads, so a publish overlaps it. */
			if (rounds % 3 == 0) {
				struct timespec ts = {0, 200000L * (rounds % 7)};
				nanosleep(&ts, NULL);
			}
			int v = buf[1] - '0';
			if (n <= 0 || (v != 0 && v != 1) || (size_t)n != wlen[v][i] ||
			    memcmp(buf, want[v][i], (size_t)n) != 0) {
				fprintf(stderr, "reader: %s torn (round %ld)\n", name, rounds);
				return 1;
			}
			if (seen >= 0 && seen != v) {
				fprintf(stderr, "reader: mixed versions (round %ld)\n", rounds);
				return 1;
			}
			seen = v;
		}
		close(dfd);
		rounds++;
		if (getppid() == 1)
			return 1;
		struct stat st;
		char *stop = tu_path(target, "..stop-reader");
		int done = lstat(stop, &st) == 0;
		free(stop);
		if (done) {
			free(data);
			return rounds > 0 ? 0 : 1;
		}
	}
}

static void write_version(int v)
{
	for (int i = 0; i < NFILES; i++) {
		char name[32], buf[4096];
		size_t len;
		snprintf(name, sizeof(name), "%s/f%d", i % 2 ? "sub" : ".", i);
		version_data(v, i, buf, &len);
		tu_write_len(src, name, buf, len, 0644);
	}
}

START_TEST(test_reader_never_sees_enoent_torn_or_mixed)
{
	struct writer_opts o = opts();
	struct writer *w = NULL;
	struct writer_result r = {0};
	char *err = NULL;

	/* The guarantee holds for readers that finish within the grace
	 * period; slow runs (valgrind) get a proportionally longer one. */
	o.grace_ms = (unsigned)tu_scale(1000);
	ck_assert_int_eq(writer_open(dst, &o, &w, NULL), 0);
	write_version(0);
	publish_ok(w);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(reader(dst));
	/* A quarter under valgrind: the same paths, each publish checked. */
	for (int k = 1; k <= (int)tu_rounds(200); k++) {
		write_version(k % 2);
		int rc = publish_tree(w, &r, &err);
		ck_assert_msg(rc == 0, "publish %d: %s", k, err);
		ck_assert(r.published);
		writer_result_fini(&r);
		writer_retire(w, false, NULL);
	}
	tu_write(dst, "..stop-reader", "", 0644);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "reader saw a broken target");
	writer_retire(w, true, NULL);
	ck_assert_int_eq(tu_generations(dst), 1);
	writer_close(w);
}
END_TEST

static Suite *writer_suite(void)
{
	Suite *s = suite_create("writer");
	TCase *tc = tcase_create("kubernetes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_validate_path_cases);
	tcase_add_test(tc, test_validate_path_lengths);
	tcase_add_test(tc, test_clean_path);
	tcase_add_test(tc, test_payload_with_unclean_path_is_cleaned);
	tcase_add_test(tc, test_paths_to_remove_simple);
	tcase_add_test(tc, test_paths_to_remove_subdir_file_and_empty_dirs);
	tcase_add_test(tc, test_paths_to_remove_two_levels);
	tcase_add_test(tc, test_paths_to_remove_five_level_chain);
	tcase_add_test(tc, test_paths_to_remove_two_chains);
	tcase_add_test(tc, test_paths_to_remove_keeps_shared_ancestors);
	tcase_add_test(tc, test_paths_to_remove_new_path_protects_ancestors);
	tcase_add_test(tc, test_write_once_invalid_reserved_fails_whole);
	tcase_add_test(tc, test_write_once_invalid_doubledot_fails_whole);
	tcase_add_test(tc, test_write_once_basic);
	tcase_add_test(tc, test_write_once_binary_and_dotfile);
	tcase_add_test(tc, test_write_once_modes);
	tcase_add_test(tc, test_write_once_modes_whatever_the_umask);
	tcase_add_test(tc, test_write_once_dotfiles);
	tcase_add_test(tc, test_write_once_dotfile_modes);
	tcase_add_test(tc, test_refresh_copies_take_modes_given_since);
	tcase_add_test(tc, test_racy_copy_is_compared_by_content);
	tcase_add_test(tc, test_refresh_publishes_follow_random_changes);
	tcase_add_test(tc, test_refresh_copies_take_modes_given_before_a_commit);
	tcase_add_test(tc, test_refresh_copies_take_modes_after_a_failed_publish);
	tcase_add_test(tc, test_write_once_subdirectories);
	tcase_add_test(tc, test_write_once_subdirectory_modes);
	tcase_add_test(tc, test_write_once_unclean_subdirectories);
	tcase_add_test(tc, test_write_once_nested_subdirectories);
	tcase_add_test(tc, test_write_once_kitchen_sink);
	tcase_add_test(tc, test_update_content_and_mode);
	tcase_add_test(tc, test_update_identical_flat_writes_nothing);
	tcase_add_test(tc, test_update_identical_nested_writes_nothing);
	tcase_add_test(tc, test_update_add_top_level_dir);
	tcase_add_test(tc, test_update_add_deep_path);
	tcase_add_test(tc, test_update_add_deep_path_under_existing_dir);
	tcase_add_test(tc, test_update_delete_removes_top_level_link);
	tcase_add_test(tc, test_update_delete_deep);
	tcase_add_test(tc, test_update_delete_deep_with_surviving_sibling);
	tcase_add_test(tc, test_update_delete_deeper_with_surviving_sibling);
	tcase_add_test(tc, test_update_delete_all);
	tcase_add_test(tc, test_names_of_one_source_file_share_one_copy);
	tcase_add_test(tc, test_update_replace_top_level_dir);
	tcase_add_test(tc, test_multiple_updates_modes);
	tcase_add_test(tc, test_multiple_updates_nested_modes);
	tcase_add_test(tc, test_multiple_updates_four_in_a_row);
	tcase_add_test(tc, test_multiple_updates_subdirectories);
	tcase_add_test(tc, test_multiple_updates_add_into_existing_dirs);
	tcase_add_test(tc, test_multiple_updates_pruning);
	tcase_add_test(tc, test_visible_links_top_level_only);
	tcase_add_test(tc, test_write_again_after_crash_restores_links);
	tcase_add_test(tc, test_visible_links_looked_at_where_names_change);
	tcase_add_test(tc, test_a_target_others_can_write_is_refused);
	tcase_add_test(tc, test_entry_added_to_a_walk_is_checked);
	tcase_add_test(tc, test_mode_only_change_publishes);
	suite_add_tcase(s, tc);

	tc = tcase_create("atomsync");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_unchanged_tree_writes_nothing);
	tcase_add_test(tc, test_open_takes_only_the_target_looked_at);
	tcase_add_test(tc, test_same_size_edit_same_second_publishes);
	tcase_add_test(tc, test_same_size_edit_dated_far_ahead_publishes);
	tcase_add_test(tc, test_live_file_dated_far_is_not_trusted_by_its_times);
	tcase_add_test(tc, test_equal_metadata_within_racy_window_compares_content);
	tcase_add_test(tc, test_a_record_made_in_the_tick_of_a_change_is_compared);
	tcase_add_test(tc, test_restart_trusts_the_state_its_journal_completes);
	tcase_add_test(tc, test_state_of_another_generation_is_not_gone_on_with);
	tcase_add_test(tc, test_removed_data_is_put_back);
	tcase_add_test(tc, test_repointed_data_is_put_back_at_open);
	tcase_add_test(tc, test_data_replaced_by_a_directory_is_refused);
	tcase_add_test(tc, test_touch_without_change_writes_nothing);
	tcase_add_test(tc, test_unchanged_files_are_reused_not_copied);
	tcase_add_test(tc, test_a_generation_written_whole_counts_both_halves);
	tcase_add_test(tc, test_a_half_that_fails_stops_the_other);
	tcase_add_test(tc, test_both_halves_tell_on_the_callers_thread);
	tcase_add_test(tc, test_a_file_the_second_half_cannot_read_is_reported);
	tcase_add_test(tc, test_invalid_snapshot_keeps_previous_generation);
	tcase_add_test(tc, test_user_file_in_target_is_never_clobbered);
	tcase_add_test(tc, test_user_files_beside_links_are_left_alone);
	tcase_add_test(tc, test_recovery_removes_debris);
	tcase_add_test(tc, test_recovery_keeps_a_just_replaced_generation_for_its_grace);
	tcase_add_test(tc, test_recovery_keeps_the_replaced_generation_after_a_clock_step);
	tcase_add_test(tc, test_target_created_with_mode_0755_and_parent_required);
	tcase_add_test(tc, test_a_setgid_target_takes_generations);
	tcase_add_test(tc, test_a_setgid_target_gives_its_group_to_recycled_ones);
	tcase_add_test(tc, test_generation_layout);
	tcase_add_test(tc, test_setuid_bits_dropped);
	tcase_add_test(tc, test_group_and_other_write_bits_are_dropped);
	tcase_add_test(tc, test_live_file_changed_behind_our_back_is_written_afresh);
	tcase_add_test(tc, test_live_file_its_owner_changed_is_written_afresh);
	tcase_add_test(tc, test_what_a_generations_owner_moved_in_is_left_alone);
	tcase_add_test(tc, test_live_file_only_root_can_write_is_checked_at_full_checks);
	tcase_add_test(tc, test_full_check_of_a_dropped_publish_is_made_again);
	tcase_add_test(tc, test_live_generation_not_ours_is_not_reused);
	tcase_add_test(tc, test_file_changed_during_copy_is_not_published);
	tcase_add_test(tc, test_large_file_streams);
	tcase_add_test(tc, test_result_lists_the_paths_added_changed_and_removed);
	tcase_add_test(tc, test_live_dir_swapped_for_symlink_writes_nothing_outside);
	tcase_add_test(tc, test_dry_run_writes_nothing);
	tcase_add_test(tc, test_quiet_dry_run_counts_without_a_line_per_path);
	tcase_add_test(tc, test_live_summary_and_recorded_error);
	tcase_add_test(tc, test_second_writer_on_same_target_is_refused);
	tcase_add_test(tc, test_grace_keeps_old_generation_until_due);
	tcase_add_test(tc, test_recycle_changes_only_what_differs);
	tcase_add_test(tc, test_recycle_opens_no_directory_nothing_changed_in);
	tcase_add_test(tc, test_recycle_never_changes_a_shared_file);
	tcase_add_test(tc, test_recycle_checks_files_others_can_write);
	tcase_add_test(tc, test_recycle_takes_what_is_due_itself);
	tcase_add_test(tc, test_standby_is_recycled_into_the_next_generation);
	tcase_add_test(tc, test_no_standby_in_a_target_others_can_write);
	tcase_add_test(tc, test_standby_refuses_while_the_live_record_is_read);
	tcase_add_test(tc, test_one_shot_writer_keeps_no_store);
	tcase_add_test(tc, test_once_reads_again_what_changed_in_the_spare);
	tcase_add_test(tc, test_once_publishes_while_the_spare_is_listed);
	tcase_add_test(tc, test_dry_run_only_reads_the_journal);
	tcase_add_test(tc, test_standby_stopped_is_finished_by_the_next_publish);
	tcase_add_test(tc, test_torn_read_hands_the_standby_back);
	tcase_add_test(tc, test_torn_read_in_a_spare_flushes_what_it_changed);
	tcase_add_test(tc, test_recycle_opens_no_directory_that_did_not_change);
	tcase_add_test(tc, test_recycle_reads_no_name_beside_a_file_that_changed);
	tcase_add_test(tc,
		       test_recycle_builds_a_directory_kept_whole_but_for_one_entry);
	tcase_add_test(tc, test_recycle_keeps_runs_of_children_whole);
	tcase_add_test(tc,
		       test_recycle_run_of_children_ends_with_their_directory);
	tcase_add_test(tc, test_standby_stopped_anywhere_is_recycled_right);
	tcase_add_test(tc, test_standby_stopped_is_gone_on_with);
	tcase_add_test(tc, test_what_a_standby_learns_is_recorded);
	tcase_add_test(tc, test_standby_recycles_one_that_is_due);
	tcase_add_test(tc, test_recycled_standby_stopped_leaves_where_it_differs);
	tcase_add_test(tc, test_standby_keeps_its_place_in_a_burst);
	tcase_add_test(tc, test_partial_standby_gives_way_to_a_due_one);
	tcase_add_test(tc, test_publish_waits_for_one_due_sooner_than_linking_all);
	tcase_add_test(tc, test_publish_waits_before_a_link_rate_is_known);
	tcase_add_test(tc, test_standby_after_a_start_is_looked_at_where_it_differs);
	tcase_add_test(tc, test_live_found_at_a_start_is_recycled_in_full);
	tcase_add_test(tc, test_standby_checks_files_others_can_write);
	tcase_add_test(tc, test_split_standby_fails_in_its_first_half);
	tcase_add_test(tc, test_split_standby_fails_in_its_second_half);
	tcase_add_test(tc, test_recycle_through_several_generations);
	tcase_add_test(tc, test_recycle_keeps_one_in_reserve);
	tcase_add_test(tc, test_recycle_after_a_file_was_copied_instead_of_linked);
	tcase_add_test(tc, test_recycled_dir_others_could_write_is_shut_first);
	tcase_add_test(tc, test_recycled_open_dir_that_cannot_go_aside_says_so);
	tcase_add_test(tc, test_what_a_former_owner_left_goes_aside);
	tcase_add_test(tc, test_a_recycle_stopped_after_taking_over_goes_aside);
	tcase_add_test(tc, test_link_from_a_dir_others_can_write_is_looked_at);
	tcase_add_test(tc, test_recycle_never_follows_what_was_planted);
	tcase_add_test(tc, test_reader_holding_a_recycled_generation);
	tcase_add_test(tc, test_reader_never_sees_enoent_torn_or_mixed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(writer_suite());
}
