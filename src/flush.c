#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "flush.h"

static void *flush_early_run(void *arg)
{
	struct flush_early *f = arg;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (f->state == FLUSH_EARLY_WAIT)
			pthread_cond_wait(&f->cv, &f->mu);
		if (f->state == FLUSH_EARLY_DONE)
			break;
		f->state = f->state == FLUSH_EARLY_LAST ? FLUSH_EARLY_DONE
							: FLUSH_EARLY_WAIT;
		pthread_mutex_unlock(&f->mu);
		int rc = syncfs(f->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&f->mu);
		f->flushes++;
		if (rc < 0 && f->rc == 0)
			f->rc = rc;
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

void flush_early_init(struct flush_early *f, int dirfd)
{
	*f = (struct flush_early){.dirfd = dirfd, .fd = -1};
}

/* The thread, started: else the generation is flushed at the end
 * alone, as a smaller one is. */
static enum flush_early_thread flush_early_start(struct flush_early *f)
{
	/* An open file of its own: syncfs() reports a write-back error
	 * once to each open file, and the writer's own last flush must see
	 * it too. */
	f->fd = openat(f->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->fd < 0)
		return FLUSH_THREAD_FAILED;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->state = FLUSH_EARLY_WAIT;
	/* Signals are for the writing thread to take. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&f->thread, NULL, flush_early_run, f);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		return FLUSH_THREAD_RUNS;
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	close(f->fd);
	f->fd = -1;
	return FLUSH_THREAD_FAILED;
}

void flush_early_note(struct flush_early *f)
{
	if (++f->objects < FLUSH_EARLY_OBJECTS)
		return;
	f->objects = 0;
	if (f->thread_state == FLUSH_THREAD_NONE)
		f->thread_state = flush_early_start(f);
	if (f->thread_state != FLUSH_THREAD_RUNS)
		return;
	pthread_mutex_lock(&f->mu);
	f->state = FLUSH_EARLY_ASKED;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

int flush_early_fini(struct flush_early *f, bool pending)
{
	if (f->thread_state != FLUSH_THREAD_RUNS)
		return 0;
	pthread_mutex_lock(&f->mu);
	f->state = f->state == FLUSH_EARLY_ASKED && pending ? FLUSH_EARLY_LAST
							     : FLUSH_EARLY_DONE;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	close(f->fd);
	f->fd = -1;
	f->thread_state = FLUSH_THREAD_NONE;
	return f->rc;
}
