/* Threads the core starts take no signal, whatever the mask of the
 * thread that starts them, and leave that mask as it was. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
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

static Suite *thread_suite(void)
{
	Suite *s = suite_create("thread");
	TCase *tc = tcase_create("thread");
	tcase_add_test(tc, test_a_thread_takes_no_signal);
	tcase_add_test(tc, test_the_callers_mask_is_kept);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(thread_suite());
}
