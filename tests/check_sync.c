/* One mapping at run time, driven on a real libuv loop with real
 * directories: the start-up publish, a change followed, a stop that waits
 * out the grace period of a replaced generation and closes every
 * handle. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "clock.h"
#include "conf.h"
#include "sync.h"
#include "watch.h"
#include "testutil.h"

static char *tmp, *src, *dst;

/* fsutil_copy() as the writer calls it (linked with --wrap=fsutil_copy):
 * with tear_next set, the source grows just before it is copied, as a
 * file being written does, once. */
int __real_fsutil_copy(int in, int out, uint64_t size, bool writeback,
		       uint64_t *copied);
static atomic_int tear_next;

int __wrap_fsutil_copy(int in, int out, uint64_t size, bool writeback,
		       uint64_t *copied);
int __wrap_fsutil_copy(int in, int out, uint64_t size, bool writeback,
		       uint64_t *copied)
{
	if (atomic_exchange(&tear_next, 0)) {
		char self[64];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", in);
		int fd = open(self, O_WRONLY | O_APPEND | O_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(write(fd, "+more", 5), 5);
		close(fd);
	}
	return __real_fsutil_copy(in, out, size, writeback, copied);
}

static uv_loop_t loop;
static struct conf *conf;
static int started, stopped;
static struct sync *cur; /* the sync the waits look at */

static void on_started(struct sync *s, void *data)
{
	(void)s;
	(void)data;
	started++;
}

static void on_stopped(void *data)
{
	(void)data;
	stopped++;
}

static void setup(void)
{
	struct conf_errors errs = {0};

	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	tu_mkdirs(src, 0755);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(conf_adhoc(src, dst, &conf, &errs), 0);
	conf->syncs[0].debounce_ms = 10;
	conf->syncs[0].max_delay_ms = 10;
	conf->syncs[0].fsync = false;
	started = stopped = 0;
	cur = NULL;
}

static void teardown(void)
{
	/* Every handle is closed once the sync has stopped. */
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	conf_free(conf);
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(tmp);
}

static struct sync *start(void)
{
	struct sync_opts o = {.started = on_started};
	struct sync *s = NULL;

	ck_assert_int_eq(sync_start(&loop, &conf->syncs[0], &o, &s), 0);
	return s;
}

/* What the sync under test has done, and how the target differs, for a
 * wait that failed. */
static char *sync_said(void)
{
	struct sync_stats st;
	char *diff, *out = NULL;

	if (cur == NULL)
		return strdup("");
	sync_get_stats(cur, &st);
	diff = tu_diff_trees(src, dst);
	/* Where it waits: on a publish in the pool, or on an event. */
	long long busy = st.publish_started_ms
				 ? (long long)(clock_wall_ms() -
					       st.publish_started_ms)
				 : -1;
	if (asprintf(&out,
		     " (%llu publishes, %llu errors, %llu reads, %llu full, "
		     "%u torn; %llu of %llu directories watched; publishing "
		     "for %lld ms (-1: not); last error: %s; target: %s)",
		     (unsigned long long)st.publishes,
		     (unsigned long long)st.publish_errors,
		     (unsigned long long)st.reads,
		     (unsigned long long)st.full_reads, st.torn,
		     (unsigned long long)st.watched,
		     (unsigned long long)st.directories, busy,
		     st.last_error ? st.last_error : "none",
		     diff ? diff : "as the source") < 0)
		out = NULL;
	free(diff);
	return out;
}

/* Runs the loop until cond(arg) holds, or fails after `ms`. */
static void run_until(int (*cond)(void *), void *arg, int ms, const char *what)
{
	long long end = tu_now_ms() + tu_scale(ms);

	while (!cond(arg)) {
		if (tu_now_ms() >= end) {
			char *said = sync_said();
			ck_abort_msg("never happened: %s%s", what,
				     said ? said : "");
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		tu_nap(2);
	}
}

static int is_set(void *arg)
{
	return *(int *)arg > 0;
}

static int trees_equal(void *arg)
{
	(void)arg;
	char *why = tu_diff_trees(src, dst);
	free(why);
	return why == NULL;
}

/* The loop has seen the publish through (the files go live before).
 * Once the count is past the one waited for, the wait ends too: the
 * caller's check of the count then says what it is. */
static int publishes_are(void *arg)
{
	struct sync_stats st;

	sync_get_stats(cur, &st);
	return st.publishes >= (uint64_t)*(int *)arg;
}

/* Waits for publish number `n`, which must be the last. */
static void published(int n, int ms, const char *what)
{
	struct sync_stats st;

	run_until(publishes_are, &n, ms, what);
	sync_get_stats(cur, &st);
	ck_assert_msg(st.publishes == (uint64_t)n,
		      "%s: %llu publishes where %d were due", what,
		      (unsigned long long)st.publishes, n);
}

static int exists(void *arg)
{
	return access(arg, F_OK) == 0;
}

static int generations_are(void *arg)
{
	return tu_generations(dst) == *(int *)arg;
}

/* Complete ones: a standby may be linked meanwhile, on the pool. */
static int readable_generations_are(void *arg)
{
	return tu_readable_generations(dst) == *(int *)arg;
}

START_TEST(test_start_publishes_and_follows_a_change)
{
	tu_write(src, "a", "1", 0644);
	struct sync *s = start();
	run_until(is_set, &started, 5000, "start-up publish");
	ck_assert_int_eq(started, 1);
	ck_assert(trees_equal(NULL));
	struct sync_stats st;
	sync_get_stats(s, &st);
	ck_assert_uint_eq(st.publishes, 1);
	ck_assert_ptr_null(st.last_error);
	tu_write(src, "d/b", "2", 0644);
	int two = 2;
	cur = s;
	published(two, 5000, "the change published");
	ck_assert(trees_equal(NULL));
	sync_get_stats(s, &st);
	ck_assert_uint_eq(st.files, 2);
	sync_stop(s, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
	ck_assert_int_eq(started, 1);
}
END_TEST

/* A stop does not wait out a grace period: it leaves the generation
 * replaced last, whole, for the next writer of the target to retire,
 * and removes older ones. */
START_TEST(test_stop_leaves_the_last_replaced_generation)
{
	conf->syncs[0].grace_ms = 60000;
	tu_write(src, "a", "1", 0644);
	struct sync *s = start();
	int one = 1, two = 2;
	cur = s;
	published(one, 5000, "start-up publish");
	tu_write(src, "a", "2", 0644);
	published(two, 5000, "the change published");
	ck_assert(trees_equal(NULL));
	ck_assert(readable_generations_are(&two));
	int three = 3;
	tu_write(src, "a", "3", 0644);
	published(three, 5000, "the next change published");
	ck_assert(readable_generations_are(&three));
	/* Within its grace period, and the stop does not wait for it (nor
	 * leaves a standby). */
	sync_stop(s, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
	ck_assert(generations_are(&two));
	ck_assert(trees_equal(NULL));
}
END_TEST

/* Stopped before its start-up publish was tried: it says it started (a
 * daemon waits for every mapping to), and stops. */
START_TEST(test_stop_before_the_first_publish)
{
	tu_write(src, "a", "1", 0644);
	struct sync *s = start();
	sync_stop(s, on_stopped, NULL);
	ck_assert_int_eq(started, 1);
	run_until(is_set, &stopped, 5000, "stop");
	ck_assert_int_eq(started, 1);
	ck_assert_int_ne(access(dst, F_OK), 0);
}
END_TEST

/* A source that does not exist is an error, recorded in the stats and
 * retried; the mapping still reports its start. */
START_TEST(test_missing_source_is_reported_and_waited_for)
{
	tu_rmrf(src);
	struct sync *s = start();
	run_until(is_set, &started, 5000, "start-up publish tried");
	struct sync_stats st;
	sync_get_stats(s, &st);
	ck_assert_ptr_nonnull(st.last_error);
	ck_assert_uint_eq(st.publish_errors, 1);
	tu_write(src, "a", "1", 0644);
	int one = 1;
	cur = s;
	published(one, 10000, "source published once there");
	ck_assert(trees_equal(NULL));
	sync_stop(s, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
}
END_TEST

/* At stop, the publish under way finishes (its check, then its reload
 * signal, which fails at once here); the replaced generation stays. */
START_TEST(test_stop_during_a_check_with_a_failing_signal)
{
	char *marker = tu_path(tmp, "checking"), *cmd;
	struct conf_sync *c = &conf->syncs[0];

	ck_assert_int_ge(asprintf(&cmd, "sh -c 'touch %s; sleep 0.3'", marker),
			 0);
	c->check_command = cmd;
	c->reload_pidfile = tu_path(tmp, "none.pid");
	c->reload_signal = SIGHUP;
	c->grace_ms = 500;
	tu_write(src, "a", "1", 0644);
	struct sync *s = start();
	int one = 1;
	cur = s;
	published(one, 5000, "start-up publish");
	unlink(marker);
	tu_write(src, "a", "2", 0644);
	run_until(exists, marker, 5000, "check_command started");
	sync_stop(s, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
	ck_assert(trees_equal(NULL));
	int two = 2;
	ck_assert(generations_are(&two));
	free(marker);
}
END_TEST

static int reads_are(void *arg)
{
	struct sync_stats st;

	sync_get_stats(cur, &st);
	return st.reads == (uint64_t)*(int *)arg;
}

/* 50 directories of 100 files: 5,050 entries. */
static void make_big_tree(void)
{
	char rel[32];

	for (int d = 0; d < 50; d++)
		for (int f = 0; f < 100; f++) {
			snprintf(rel, sizeof(rel), "d%02d/f%03d", d, f);
			tu_write_deep(src, rel, "x");
		}
}

/* The big tree published, its newly watched directories read again, and
 * one file changed and published: the stats before and after the
 * change.  A copy to tear (tear_next) is torn at the change. */
static void big_tree_changed(struct sync_stats *before,
			     struct sync_stats *after)
{
	int tear = atomic_exchange(&tear_next, 0);

	make_big_tree();
	cur = start();
	run_until(is_set, &started, 20000, "start-up publish");
	int two = 2;
	run_until(reads_are, &two, 20000, "newly watched directories read");
	sync_get_stats(cur, before);
	atomic_store(&tear_next, tear);
	tu_write(src, "d17/f042", "changed", 0644);
	published(two, 5000, "the change published");
	ck_assert(trees_equal(NULL));
	sync_get_stats(cur, after);
}

/* The start-up publish reads all of the source; the directories then
 * watched for the first time are read once more (what changed before
 * went unseen).  Then a file changed in one directory is that name
 * looked at, not the hundred beside it; so is one replaced by a rename,
 * and one at the top beside the fifty directories.  A directory made
 * reads the directory it was made in. */
START_TEST(test_a_change_reads_only_what_changed)
{
	struct sync_stats before, after, top, dir;

	big_tree_changed(&before, &after);
	ck_assert_uint_eq(before.full_reads, 1);
	ck_assert_uint_eq(after.full_reads, before.full_reads);
	ck_assert_uint_eq(after.reads, before.reads + 1);
	ck_assert_msg(after.entries_read - before.entries_read <= 3,
		      "%llu entries read for one file",
		      (unsigned long long)(after.entries_read -
					   before.entries_read));
	int n = 3;
	tu_replace(src, "top", "1", 0644);
	published(n, 5000, "the file at the top published");
	ck_assert(trees_equal(NULL));
	sync_get_stats(cur, &top);
	ck_assert_uint_eq(top.full_reads, before.full_reads);
	ck_assert_msg(top.entries_read - after.entries_read <= 6,
		      "%llu entries read for a file at the top",
		      (unsigned long long)(top.entries_read -
					   after.entries_read));
	n++;
	tu_write_deep(src, "new/f", "1");
	published(n, 5000, "the new directory published");
	ck_assert(trees_equal(NULL));
	sync_get_stats(cur, &dir);
	ck_assert_uint_eq(dir.full_reads, before.full_reads);
	ck_assert_uint_ge(dir.entries_read - top.entries_read, 50);
	sync_stop(cur, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
}
END_TEST

/* A read torn by a file being written publishes nothing; the read tried
 * again starts from the live record all the same, and reads again only
 * where the source changed. */
START_TEST(test_a_torn_read_is_read_again_where_it_changed)
{
	struct sync_stats before, after;

	atomic_store(&tear_next, 1);
	big_tree_changed(&before, &after);
	ck_assert_int_eq(atomic_load(&tear_next), 0);
	ck_assert_uint_ge(after.reads, before.reads + 2);
	ck_assert_uint_eq(after.full_reads, before.full_reads);
	ck_assert_msg(after.entries_read - before.entries_read < 400,
		      "%llu entries read for one file, torn once",
		      (unsigned long long)(after.entries_read -
					   before.entries_read));
	sync_stop(cur, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
}
END_TEST

/* Without a watch on every directory, a change may be where no event
 * came from: every read is of all of the source. */
START_TEST(test_unwatched_directories_make_every_read_a_full_one)
{
	struct watch_budget *b = watch_budget_new(3);
	struct sync_opts o = {.started = on_started, .budget = b};

	make_big_tree();
	ck_assert_int_eq(sync_start(&loop, &conf->syncs[0], &o, &cur), 0);
	run_until(is_set, &started, 20000, "start-up publish");
	struct sync_stats before, after;
	sync_get_stats(cur, &before);
	ck_assert(before.watch_limited);
	tu_write(src, "new", "1", 0644); /* in the root, which is watched */
	int two = 2;
	published(two, 5000, "the change published");
	sync_get_stats(cur, &after);
	ck_assert_uint_eq(after.full_reads, after.reads);
	ck_assert_uint_ge(after.entries_read - before.entries_read, 5050);
	sync_stop(cur, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
	uv_run(&loop, UV_RUN_DEFAULT);
	watch_budget_free(b);
}
END_TEST

/* A file changed is compared by its bytes while its times are too recent
 * to prove anything; once they are not, it is trusted again, however many
 * publishes ago its directory was last read. */
START_TEST(test_files_changed_earlier_are_not_compared_again)
{
	char rel[16], body[16];

	for (int i = 0; i < 10; i++) {
		snprintf(rel, sizeof(rel), "d%d/f", i);
		tu_write_deep(src, rel, "v00");
	}
	tu_nap(120); /* past the window in which times prove nothing */
	cur = start();
	run_until(is_set, &started, 20000, "start-up publish");
	int want = 1;
	for (int i = 0; i < 10; i++) {
		snprintf(rel, sizeof(rel), "d%d/f", i);
		snprintf(body, sizeof(body), "v%02d", i + 1); /* same size */
		tu_write_deep(src, rel, body);
		want++;
		published(want, 5000, "the change published");
		tu_nap(60); /* the next change comes after the window */
	}
	struct sync_stats before, after;
	sync_get_stats(cur, &before);
	ck_assert_uint_eq(before.full_reads, 1);
	tu_write_deep(src, "d0/f", "v99");
	want++;
	published(want, 5000, "the last change published");
	ck_assert(trees_equal(NULL));
	sync_get_stats(cur, &after);
	ck_assert_uint_eq(after.full_reads, before.full_reads);
	/* The file changed, and the one changed before it: copied while
	 * its times were too recent to tell, it is compared once more. */
	ck_assert_msg(after.files_compared - before.files_compared <= 2,
		      "%llu files compared for one change",
		      (unsigned long long)(after.files_compared -
					   before.files_compared));
	sync_stop(cur, on_stopped, NULL);
	run_until(is_set, &stopped, 5000, "stop");
}
END_TEST

static Suite *sync_suite(void)
{
	Suite *s = suite_create("sync");
	TCase *tc = tcase_create("sync");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_start_publishes_and_follows_a_change);
	tcase_add_test(tc, test_stop_leaves_the_last_replaced_generation);
	tcase_add_test(tc, test_stop_before_the_first_publish);
	tcase_add_test(tc, test_missing_source_is_reported_and_waited_for);
	tcase_add_test(tc, test_stop_during_a_check_with_a_failing_signal);
	tcase_add_test(tc, test_a_change_reads_only_what_changed);
	tcase_add_test(tc, test_a_torn_read_is_read_again_where_it_changed);
	tcase_add_test(tc, test_unwatched_directories_make_every_read_a_full_one);
	tcase_add_test(tc, test_files_changed_earlier_are_not_compared_again);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(sync_suite());
}
