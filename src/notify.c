#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"

struct notify {
	uv_timer_t watchdog;
	char *status;
};

#define SYSTEMD_SONAME "libsystemd.so.0"

/* libsystemd is loaded only when a service manager listens: a one-shot
 * run or a container never maps it and the libraries it pulls in. */
static struct {
	__typeof__(sd_notify) *notify;
	__typeof__(sd_watchdog_enabled) *watchdog_enabled;
} sd;

static int sd_load(void)
{
	static int loaded; /* 0 not tried, 1 loaded, -1 failed */

	if (loaded)
		return loaded > 0 ? 0 : -ENOENT;
	loaded = -1;
	if (getenv("NOTIFY_SOCKET") == NULL)
		return -ENOENT;
	void *lib = dlopen(SYSTEMD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		log_warn("NOTIFY_SOCKET is set but %s cannot be loaded (%s): "
			 "the service manager will not hear from atomsyncd",
			 SYSTEMD_SONAME, dlerror());
		return -ENOENT;
	}
	void *f[2] = {dlsym(lib, "sd_notify"),
		      dlsym(lib, "sd_watchdog_enabled")};
	if (f[0] == NULL || f[1] == NULL) {
		log_warn("%s: missing symbol", SYSTEMD_SONAME);
		dlclose(lib);
		return -ENOENT;
	}
	/* POSIX allows converting dlsym's result to a function pointer. */
	memcpy(&sd.notify, &f[0], sizeof(f[0]));
	memcpy(&sd.watchdog_enabled, &f[1], sizeof(f[1]));
	loaded = 1;
	return 0;
}

static void send_msg(const char *msg)
{
	if (sd_load() < 0)
		return;
	int rc = sd.notify(0, msg);
	if (rc < 0)
		log_debug("sd_notify: %s", strerror(-rc));
}

static void on_watchdog(uv_timer_t *h)
{
	(void)h;
	/* Sent from a loop timer: if the loop stalls, pings stop and the
	 * service manager restarts us. */
	send_msg("WATCHDOG=1");
}

int notify_new(uv_loop_t *loop, struct notify **out)
{
	struct notify *n = calloc(1, sizeof(*n));
	uint64_t usec = 0;

	if (n == NULL)
		return -ENOMEM;
	uv_timer_init(loop, &n->watchdog);
	n->watchdog.data = n;
	if (sd_load() == 0 && sd.watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Twice per interval, as sd_watchdog_enabled(3) advises. */
		uint64_t ms = usec / 2000;
		uv_timer_start(&n->watchdog, on_watchdog, 0, ms ? ms : 1);
	}
	*out = n;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct notify *n = h->data;

	free(n->status);
	free(n);
}

void notify_close(struct notify *n)
{
	if (n == NULL)
		return;
	uv_timer_stop(&n->watchdog);
	uv_close((uv_handle_t *)&n->watchdog, on_closed);
}

void notify_ready(struct notify *n)
{
	(void)n;
	send_msg("READY=1");
}

void notify_reloading(struct notify *n)
{
	struct timespec ts;
	char msg[96];

	(void)n;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull +
			 (unsigned long long)ts.tv_nsec / 1000ull);
	send_msg(msg);
}

void notify_stopping(struct notify *n)
{
	(void)n;
	send_msg("STOPPING=1");
}

void notify_status(struct notify *n, const char *status)
{
	if (n->status && strcmp(n->status, status) == 0)
		return;
	/* Each line of the message is a field the manager trusts from
	 * root: a newline in a source's file name, quoted in an error,
	 * must not start one (MAINPID=, WATCHDOG=trigger). */
	char *text = log_escape(status), *msg;
	int rc = text ? asprintf(&msg, "STATUS=%s", text) : -1;
	free(text);
	if (rc < 0)
		return;
	send_msg(msg);
	free(msg);
	free(n->status);
	n->status = strdup(status);
}
