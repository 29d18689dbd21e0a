#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flush.h"
#include "fsutil.h"
#include "thread.h"

/* A journaling file system commits fsyncs issued together at once: a
 * publish waits for about one device flush, not one per directory. */
#define FLUSH_THREADS 16

/* The entries to flush, shared by the threads that flush them. */
struct flusher {
	const struct snapshot *s;
	const size_t *todo;
	size_t n;
	int dirfd;
	atomic_size_t next;
	atomic_int rc;
};

/* A file or directory of ours whose mode keeps even its owner from
 * reading it (a payload's 0200, file_mode 0040), for a writer that is
 * not root: opened with owner read added for a moment, in a generation
 * nobody else may enter yet, and its mode put back before the flush,
 * which then makes that durable too.  A descriptor, or -EACCES. */
static int open_owner_read(int dirfd, const char *path)
{
	int pfd = fsutil_open_beneath(dirfd, path, O_PATH);
	struct stat st;
	char proc[48];
	int fd = -EACCES;

	if (pfd < 0)
		return pfd == -ENOMEM ? pfd : -EACCES;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	if (fstat(pfd, &st) == 0 && st.st_uid == geteuid() &&
	    (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
	    chmod(proc, (st.st_mode & 07777) | S_IRUSR) == 0) {
		fd = open(proc, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		fd = fd < 0 ? -errno : fd;
		if ((fd >= 0 ? fchmod(fd, st.st_mode & 07777)
			     : chmod(proc, st.st_mode & 07777)) < 0 &&
		    fd >= 0) {
			close(fd);
			fd = -EACCES;
		}
	}
	close(pfd);
	return fd;
}

/* Opened without blocking and checked to be what was written: never
 * flush something else (a FIFO planted in its place would block the
 * open, a device's fsync() would reach the device). */
static int flush_one(const struct flusher *f, size_t i)
{
	const struct snap_entry *e = &f->s->v[i];
	struct stat st;
	int rc, fd = fsutil_open_beneath(f->dirfd, e->path,
					 O_RDONLY | O_NOCTTY | O_NONBLOCK);

	if (fd == -EACCES && geteuid() != 0)
		fd = open_owner_read(f->dirfd, e->path);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 ||
	    S_ISDIR(st.st_mode) != (e->type == SNAP_DIR) ||
	    !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
		rc = -EIO;
	else
		rc = fsutil_fsync(fd);
	close(fd);
	return rc;
}

static void *flush_worker(void *arg)
{
	struct flusher *f = arg;

	for (;;) {
		size_t k = atomic_fetch_add(&f->next, 1);
		if (k >= f->n || atomic_load(&f->rc) < 0)
			break;
		int rc = flush_one(f, f->todo[k]);
		int none = 0;
		if (rc < 0)
			atomic_compare_exchange_strong(&f->rc, &none, rc);
	}
	return NULL;
}

int flush_each(int dirfd, const struct snapshot *s, const size_t *todo,
	       size_t n)
{
	struct flusher f = {.s = s, .todo = todo, .n = n, .dirfd = dirfd};
	pthread_t t[FLUSH_THREADS - 1];
	size_t nt = 0, want = n < FLUSH_THREADS ? n : FLUSH_THREADS;

	atomic_init(&f.next, 0);
	atomic_init(&f.rc, 0);
	/* Threads that cannot be started leave their share to the rest. */
	while (nt + 1 < want &&
	       thread_start_beside(&t[nt], flush_worker, &f) == 0)
		nt++;
	flush_worker(&f);
	for (size_t i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	return atomic_load(&f.rc);
}

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
	if (thread_start(&f->thread, flush_early_run, f) == 0)
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
