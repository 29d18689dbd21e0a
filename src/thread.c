#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "thread.h"

/* pthread_create() with every signal blocked in the new thread: 0 or a
 * positive errno, as pthread_create() says. */
static int create(pthread_t *t, const pthread_attr_t *a,
		  void *(*fn)(void *), void *arg)
{
	sigset_t all, old;

	/* A new thread inherits the mask of the one that creates it. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(t, a, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	return -create(t, NULL, fn, arg);
}

/* What a thread started on the other CPUs runs, and where it may run
 * once it runs. */
struct thread_begin {
	void *(*fn)(void *);
	void *arg;
	cpu_set_t cpus;
};

static void *thread_begin(void *p)
{
	struct thread_begin b = *(struct thread_begin *)p;

	free(p);
	/* Not put back: it stays on the others, which still works. */
	(void)pthread_setaffinity_np(pthread_self(), sizeof(b.cpus), &b.cpus);
	return b.fn(b.arg);
}

/* Whether `a` now starts a thread on the CPUs the caller may run on but
 * the one it runs on now: false when there are no such. */
static bool start_elsewhere(struct thread_begin *b, pthread_attr_t *a)
{
	int cpu = sched_getcpu();
	cpu_set_t others;

	if (cpu < 0 || cpu >= CPU_SETSIZE ||
	    pthread_getaffinity_np(pthread_self(), sizeof(b->cpus),
				   &b->cpus) != 0 ||
	    !CPU_ISSET(cpu, &b->cpus) || CPU_COUNT(&b->cpus) < 2)
		return false;
	others = b->cpus;
	CPU_CLR(cpu, &others);
	return pthread_attr_setaffinity_np(a, sizeof(others), &others) == 0;
}

int thread_start_beside(pthread_t *t, void *(*fn)(void *), void *arg)
{
	struct thread_begin *b = calloc(1, sizeof(*b));
	pthread_attr_t a;
	int rc = -1;

	if (b == NULL)
		return -ENOMEM;
	b->fn = fn;
	b->arg = arg;
	if (pthread_attr_init(&a) == 0) {
		if (start_elsewhere(b, &a))
			rc = create(t, &a, thread_begin, b);
		pthread_attr_destroy(&a);
	}
	if (rc == 0)
		return 0;
	free(b);
	/* No other CPU, or sched_setaffinity() refused (a seccomp filter,
	 * as in atomsyncd.service): started where it would be. */
	return thread_start(t, fn, arg);
}
