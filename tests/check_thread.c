/* Threads the core starts take no signal, whatever the mask of the
 * thread that starts them, and leave that mask as it was.  One started
 * beside a caller that goes on working starts on another CPU, then may
 * run wherever the caller may. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <string.h>

#include "testutil.h"
#include "thread.h"

static void *read_mask(void *arg)
{
	pthread_sigmask(SIG_BLOCK, NULL, arg);
	return NULL;
}

START_TEST(test_a_thread_takes_no_signal)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1,
				   SIGUSR2, SIGCHLD, SIGPIPE, SIGALRM};
	sigset_t none, before, after, in;
	pthread_t t;

	/* The caller takes every signal, as the daemon's loop does. */
	sigemptyset(&none);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &none, &before), 0);
	sigemptyset(&in);
	ck_assert_int_eq(thread_start(&t, read_mask, &in), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		ck_assert_msg(sigismember(&in, sigs[i]), "signal %d taken",
			      sigs[i]);
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	for (int sig = 1; sig < SIGRTMIN; sig++)
		ck_assert_int_eq(sigismember(&after, sig), 0);
	pthread_sigmask(SIG_SETMASK, &before, NULL);
}
END_TEST

/* The caller's own mask, blocking some, is as it was after. */
START_TEST(test_the_callers_mask_is_kept)
{
	sigset_t some, after, in;
	pthread_t t;

	sigemptyset(&some);
	sigaddset(&some, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &some, NULL), 0);
	ck_assert_int_eq(thread_start(&t, read_mask, &in), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert(sigismember(&in, SIGTERM));
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	ck_assert(sigismember(&after, SIGUSR1));
	ck_assert(!sigismember(&after, SIGTERM));
	ck_assert(!sigismember(&after, SIGINT));
}
END_TEST

/* Where a thread started beside found itself, and what it may use. */
struct where {
	atomic_int cpu; /* -1 until it ran */
	cpu_set_t may;
	sigset_t mask;
};

static void *note_where(void *arg)
{
	struct where *w = arg;

	pthread_getaffinity_np(pthread_self(), sizeof(w->may), &w->may);
	pthread_sigmask(SIG_BLOCK, NULL, &w->mask);
	atomic_store(&w->cpu, sched_getcpu());
	return NULL;
}

/* Started beside `caller` (the CPUs the caller may use: `may`), the
 * caller spinning on the CPU it is on meanwhile: where it ran first. */
static int start_beside(const cpu_set_t *may, struct where *w, int *caller)
{
	pthread_t t;
	int before, after;

	ck_assert_int_eq(sched_setaffinity(0, sizeof(*may), may), 0);
	do {
		atomic_store(&w->cpu, -1);
		before = sched_getcpu();
		ck_assert_int_eq(thread_start_beside(&t, note_where, w), 0);
		while (atomic_load(&w->cpu) < 0)
			;
		after = sched_getcpu();
		ck_assert_int_eq(pthread_join(t, NULL), 0);
	} while (before != after); /* moved meanwhile: not known where */
	*caller = before;
	return atomic_load(&w->cpu);
}

START_TEST(test_a_thread_beside_starts_elsewhere_then_runs_anywhere)
{
	cpu_set_t all, two;
	struct where w;
	int caller, first = -1, second = -1;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(all), &all), 0);
	for (int c = 0; c < CPU_SETSIZE && second < 0; c++)
		if (CPU_ISSET(c, &all))
			*(first < 0 ? &first : &second) = c;
	CPU_ZERO(&two);
	CPU_SET(first, &two);
	if (second >= 0)
		CPU_SET(second, &two);
	int ran = start_beside(&two, &w, &caller);
	/* Another of the two when there are two, else the one there is. */
	if (second >= 0)
		ck_assert_int_ne(ran, caller);
	else
		ck_assert_int_eq(ran, caller);
	ck_assert(CPU_ISSET(ran, &two));
	ck_assert(CPU_EQUAL(&w.may, &two));
	ck_assert(sigismember(&w.mask, SIGTERM));
	ck_assert_int_eq(sched_setaffinity(0, sizeof(all), &all), 0);
}
END_TEST

static Suite *thread_suite(void)
{
	Suite *s = suite_create("thread");
	TCase *tc = tcase_create("thread");
	tcase_add_test(tc, test_a_thread_takes_no_signal);
	tcase_add_test(tc, test_the_callers_mask_is_kept);
	tcase_add_test(tc, test_a_thread_beside_starts_elsewhere_then_runs_anywhere);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(thread_suite());
}
