/* The service manager protocol (sd_notify): readiness, reload, stop,
 * status and watchdog pings.  Every call is a no-op when the daemon was
 * not started with NOTIFY_SOCKET. */
#ifndef ATOMSYNC_NOTIFY_H
#define ATOMSYNC_NOTIFY_H

#include <stdint.h>

#include <uv.h>

struct notify;

/* Starts the watchdog timer on `loop` when WATCHDOG_USEC asks for one. */
int notify_new(uv_loop_t *loop, struct notify **out);
/* Stops the watchdog and frees n once its handle is closed. */
void notify_close(struct notify *n);

void notify_ready(struct notify *n);
/* RELOADING=1 with the MONOTONIC_USEC the protocol asks for. */
void notify_reloading(struct notify *n);
void notify_stopping(struct notify *n);
/* STATUS=, sent only when it differs from the last one, with control
 * characters and bytes that are not UTF-8 escaped as log_escape() does. */
void notify_status(struct notify *n, const char *status);

#endif
