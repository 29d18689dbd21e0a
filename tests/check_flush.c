/* Flushing a generation.  Entry by entry (flush_each()): each listed
 * entry is flushed, from threads that take no signals, and one that is
 * no longer what it says is refused, not flushed nor waited on.  While
 * it is written: a flush is made for each FLUSH_EARLY_OBJECTS new
 * entries, none for fewer; one asked for while another is under way is
 * made after it, and one not begun is made before flush_early_fini()
 * returns, unless the writer failed. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flush.h"
#include "testutil.h"

static char *tmp;
static int dfd;

/* syncfs() as the thread calls it (linked with --wrap=syncfs): with
 * `gated` set, the first call waits until flush_early_fini() has said
 * what becomes of a flush asked for meanwhile. */
int __real_syncfs(int fd);
static struct flush_early *gated;
static atomic_int inside;

static bool decided(struct flush_early *f)
{
	pthread_mutex_lock(&f->mu);
	bool d = f->state == FLUSH_EARLY_LAST || f->state == FLUSH_EARLY_DONE;
	pthread_mutex_unlock(&f->mu);
	return d;
}

int __wrap_syncfs(int fd);
int __wrap_syncfs(int fd)
{
	struct flush_early *f = gated;
	struct timespec ms = {0, 1000000};

	if (f && atomic_fetch_add(&inside, 1) == 0)
		while (!decided(f))
			nanosleep(&ms, NULL);
	return __real_syncfs(fd);
}

/* fsync() as flush_each() calls it (--wrap=fsync): counted, with the
 * calls made on another thread, and those of them that could take
 * SIGTERM. */
int __real_fsync(int fd);
static pthread_t main_thread;
static atomic_int fsyncs, fsyncs_elsewhere, fsyncs_unmasked;

int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
	atomic_fetch_add(&fsyncs, 1);
	if (!pthread_equal(pthread_self(), main_thread)) {
		sigset_t cur;
		pthread_sigmask(SIG_BLOCK, NULL, &cur);
		atomic_fetch_add(&fsyncs_elsewhere, 1);
		if (!sigismember(&cur, SIGTERM))
			atomic_fetch_add(&fsyncs_unmasked, 1);
	}
	return __real_fsync(fd);
}

static int flush_under_way(void *arg)
{
	(void)arg;
	return atomic_load(&inside) > 0;
}

static void setup(void)
{
	tmp = tu_mkdtemp();
	dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dfd, 0);
	gated = NULL;
	atomic_store(&inside, 0);
	main_thread = pthread_self();
	atomic_store(&fsyncs, 0);
	atomic_store(&fsyncs_elsewhere, 0);
	atomic_store(&fsyncs_unmasked, 0);
}

static void teardown(void)
{
	close(dfd);
	tu_rmrf(tmp);
	free(tmp);
}

static void note(struct flush_early *f, int n)
{
	for (int i = 0; i < n; i++)
		flush_early_note(f);
}

static int flushed_once(void *arg)
{
	struct flush_early *f = arg;

	pthread_mutex_lock(&f->mu);
	unsigned n = f->flushes;
	pthread_mutex_unlock(&f->mu);
	return n >= 1;
}

START_TEST(test_fewer_entries_are_not_flushed_on_the_way)
{
	struct flush_early f;

	flush_early_init(&f, dfd);
	note(&f, FLUSH_EARLY_OBJECTS - 1);
	ck_assert_int_eq(f.thread_state, FLUSH_THREAD_NONE);
	ck_assert_int_eq(flush_early_fini(&f, true), 0);
	ck_assert_uint_eq(f.flushes, 0);
}
END_TEST

START_TEST(test_a_flush_asked_for_is_made_before_fini_returns)
{
	struct flush_early f;

	flush_early_init(&f, dfd);
	note(&f, FLUSH_EARLY_OBJECTS);
	ck_assert_int_eq(f.thread_state, FLUSH_THREAD_RUNS);
	ck_assert_int_eq(flush_early_fini(&f, true), 0);
	ck_assert_uint_eq(f.flushes, 1);
	ck_assert_int_eq(f.fd, -1);
}
END_TEST

START_TEST(test_each_ask_after_a_flush_began_is_made)
{
	struct flush_early f;

	flush_early_init(&f, dfd);
	note(&f, FLUSH_EARLY_OBJECTS);
	ck_assert(tu_wait_for(flushed_once, &f, 10000));
	note(&f, FLUSH_EARLY_OBJECTS);
	ck_assert_int_eq(flush_early_fini(&f, true), 0);
	ck_assert_uint_eq(f.flushes, 2);
}
END_TEST

/* Asks for a flush while the first is under way, then stops with
 * `pending`: the flushes made. */
static unsigned ask_during_a_flush(bool pending)
{
	struct flush_early f;

	gated = &f;
	flush_early_init(&f, dfd);
	note(&f, FLUSH_EARLY_OBJECTS);
	ck_assert(tu_wait_for(flush_under_way, NULL, 10000));
	note(&f, FLUSH_EARLY_OBJECTS);
	ck_assert_int_eq(flush_early_fini(&f, pending), 0);
	return f.flushes;
}

/* Asked for while the first is under way: made after it. */
START_TEST(test_an_ask_during_a_flush_is_made_after_it)
{
	ck_assert_uint_eq(ask_during_a_flush(true), 2);
}
END_TEST

/* The writer failed: a flush not begun is not made. */
START_TEST(test_a_flush_not_begun_is_dropped_after_a_failure)
{
	ck_assert_uint_eq(ask_during_a_flush(false), 1);
}
END_TEST

/* Without a thread, the generation is flushed at the end alone. */
START_TEST(test_no_thread_no_flush_and_no_error)
{
	struct flush_early f;

	flush_early_init(&f, -1); /* cannot be opened again */
	note(&f, 2 * FLUSH_EARLY_OBJECTS);
	ck_assert_int_eq(f.thread_state, FLUSH_THREAD_FAILED);
	ck_assert_int_eq(flush_early_fini(&f, true), 0);
	ck_assert_uint_eq(f.flushes, 0);
}
END_TEST

/* A generation of `files` files in a directory "d" of tmp, as the entries
 * of *s (d first): their indexes in todo. */
static void small_generation(struct snapshot *s, size_t *todo, int files)
{
	static char names[64][16];

	ck_assert_int_le(files + 1, 64);
	memset(s, 0, sizeof(*s));
	s->v = calloc((size_t)files + 1, sizeof(*s->v));
	ck_assert_ptr_nonnull(s->v);
	s->v[0] = (struct snap_entry){.path = "d", .type = SNAP_DIR};
	ck_assert_int_eq(mkdirat(dfd, "d", 0700), 0);
	for (int i = 0; i < files; i++) {
		snprintf(names[i], sizeof(names[i]), "d/f%02d", i);
		s->v[i + 1] = (struct snap_entry){.path = names[i],
						  .type = SNAP_FILE};
		tu_write(tmp, names[i], "x", 0600);
	}
	s->n = (size_t)files + 1;
	for (size_t i = 0; i < s->n; i++)
		todo[i] = i;
}

START_TEST(test_each_entry_is_flushed_by_threads_without_signals)
{
	struct snapshot s;
	size_t todo[64];

	small_generation(&s, todo, 40);
	ck_assert_int_eq(flush_each(dfd, &s, todo, s.n), 0);
	int all = atomic_load(&fsyncs), elsewhere = atomic_load(&fsyncs_elsewhere),
	    unmasked = atomic_load(&fsyncs_unmasked);
	ck_assert_int_eq(all, 41);
	ck_assert_int_gt(elsewhere, 0);
	ck_assert_int_eq(unmasked, 0);
	free(s.v);
}
END_TEST

/* A FIFO planted where a file was written is neither opened for long
 * nor flushed; nor is anything a symlink in its place names. */
START_TEST(test_an_entry_swapped_is_refused)
{
	struct snapshot s;
	size_t todo[64];

	small_generation(&s, todo, 3);
	ck_assert_int_eq(unlinkat(dfd, "d/f01", 0), 0);
	ck_assert_int_eq(mkfifoat(dfd, "d/f01", 0600), 0);
	ck_assert_int_eq(flush_each(dfd, &s, todo + 2, 1), -EIO);
	ck_assert_int_eq(unlinkat(dfd, "d/f01", 0), 0);
	ck_assert_int_eq(symlinkat("f00", dfd, "d/f01"), 0);
	ck_assert_int_lt(flush_each(dfd, &s, todo + 2, 1), 0);
	/* A directory where a file was, and the other way round. */
	ck_assert_int_eq(unlinkat(dfd, "d/f01", 0), 0);
	ck_assert_int_eq(mkdirat(dfd, "d/f01", 0700), 0);
	ck_assert_int_eq(flush_each(dfd, &s, todo + 2, 1), -EIO);
	s.v[0].type = SNAP_FILE;
	ck_assert_int_eq(flush_each(dfd, &s, todo, 1), -EIO);
	int made = atomic_load(&fsyncs);
	ck_assert_int_eq(made, 0);
	free(s.v);
}
END_TEST

static Suite *flush_suite(void)
{
	Suite *s = suite_create("flush");
	TCase *tc = tcase_create("flush");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fewer_entries_are_not_flushed_on_the_way);
	tcase_add_test(tc, test_a_flush_asked_for_is_made_before_fini_returns);
	tcase_add_test(tc, test_each_ask_after_a_flush_began_is_made);
	tcase_add_test(tc, test_an_ask_during_a_flush_is_made_after_it);
	tcase_add_test(tc, test_a_flush_not_begun_is_dropped_after_a_failure);
	tcase_add_test(tc, test_no_thread_no_flush_and_no_error);
	tcase_add_test(tc, test_each_entry_is_flushed_by_threads_without_signals);
	tcase_add_test(tc, test_an_entry_swapped_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(flush_suite());
}
