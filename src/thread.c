#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "thread.h"

struct thread_begin {
	void *(*fn)(void *);
	void *arg;
	cpu_set_t cpus; /* where it may run once it runs */
	bool moved;	/* started on those but the caller's */
};

static void *thread_begin(void *p)
{
	struct thread_begin b = *(struct thread_begin *)p;

	free(p);
	/* Not put back: it stays on the others, which still works. */
	if (b.moved)
		(void)pthread_setaffinity_np(pthread_self(), sizeof(b.cpus),
					     &b.cpus);
	return b.fn(b.arg);
}

/* Starts the thread on the CPUs the caller may run on but the one it
 * runs on now, when there are such. */
static void start_elsewhere(struct thread_begin *b, pthread_attr_t *a)
{
	int cpu = sched_getcpu();
	cpu_set_t others;

	if (cpu < 0 || cpu >= CPU_SETSIZE ||
	    pthread_getaffinity_np(pthread_self(), sizeof(b->cpus),
				   &b->cpus) != 0 ||
	    !CPU_ISSET(cpu, &b->cpus) || CPU_COUNT(&b->cpus) < 2)
		return;
	others = b->cpus;
	CPU_CLR(cpu, &others);
	b->moved = pthread_attr_setaffinity_np(a, sizeof(others), &others) == 0;
}

static int start(pthread_t *t, void *(*fn)(void *), void *arg, bool beside)
{
	struct thread_begin *b = calloc(1, sizeof(*b));
	pthread_attr_t a;
	sigset_t all, old;
	int rc;

	if (b == NULL)
		return -ENOMEM;
	b->fn = fn;
	b->arg = arg;
	if ((rc = pthread_attr_init(&a)) != 0) {
		free(b);
		return -rc;
	}
	if (beside)
		start_elsewhere(b, &a);
	/* A new thread inherits the mask of the one that creates it. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, &a, thread_begin, b);
	/* Where sched_setaffinity() is refused (a seccomp filter, as in
	 * atomsyncd.service), started where it would be. */
	if (rc != 0 && b->moved) {
		b->moved = false;
		rc = pthread_create(t, NULL, thread_begin, b);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	if (rc != 0)
		free(b);
	return -rc;
}

int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	return start(t, fn, arg, false);
}

int thread_start_beside(pthread_t *t, void *(*fn)(void *), void *arg)
{
	return start(t, fn, arg, true);
}
