/* Threads the core starts for work of its own (flushing, checking the
 * live generation).  They take no signals: those are for the thread that
 * started them, the daemon's loop or a library caller's, which may rely
 * on sigwait() or a handler running there.  Nor do they log: the sink
 * log lines go to is the calling thread's (log_sink_set()), so what they
 * have to say is handed back to the thread that started them (a library
 * caller's lines would otherwise reach stderr). */
#ifndef ATOMSYNC_THREAD_H
#define ATOMSYNC_THREAD_H

#include <pthread.h>

/* pthread_create() with every signal blocked in the new thread: 0, or a
 * negative errno (no thread). */
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
/* The same, for a thread beside a caller that goes on working: it starts
 * on a CPU the caller may run on other than the one it runs on (when
 * there is one), then may run on any the caller may.  A new thread
 * otherwise starts on its creator's CPU, where a scheduler that packs
 * the virtual CPUs of a guest leaves it until the next tick (4 ms at
 * 250 Hz) while the creator runs and the other CPU idles. */
int thread_start_beside(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
