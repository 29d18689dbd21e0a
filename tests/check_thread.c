/* Threads the core starts take no signal, whatever the mask of the
 * thread that starts them, and leave that mask as it was.  One started
 * beside a caller that goes on working starts on another CPU, then may
 * run wherever the caller may; where that is refused, it starts all the
 * same. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* sched_setaffinity() and sched_setscheduler() fail with EPERM from now
 * on, as under atomsyncd.service's SystemCallFilter=~@resources. */
static int refuse_scheduling(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sched_setaffinity, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sched_setscheduler, 1,
			 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return 1;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	return sched_setaffinity(0, sizeof(one), &one) == 0 || errno != EPERM
		       ? 2
		       : 0;
}

/* In a child of its own: the filter stays with the process. */
START_TEST(test_a_thread_beside_starts_where_scheduling_is_refused)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct where w;
		int rc = refuse_scheduling();
		pthread_t t;
		atomic_store(&w.cpu, -1);
		if (rc == 0 && thread_start_beside(&t, note_where, &w) != 0)
			rc = 3;
		if (rc == 0 && (pthread_join(t, NULL) != 0 ||
				atomic_load(&w.cpu) < 0))
			rc = 4;
		_exit(rc);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

static Suite *thread_suite(void)
{
	Suite *s = suite_create("thread");
	TCase *tc = tcase_create("thread");
	tcase_add_test(tc, test_a_thread_takes_no_signal);
	tcase_add_test(tc, test_the_callers_mask_is_kept);
	tcase_add_test(tc, test_a_thread_beside_starts_elsewhere_then_runs_anywhere);
	tcase_add_test(tc, test_a_thread_beside_starts_where_scheduling_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(thread_suite());
}
