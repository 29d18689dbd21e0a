#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "array.h"
#include "clock.h"
#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "sync.h"
#include "watch.h"

/* TERM, INT, HUP and USR1 */
#define NSIGNALS 4

/* A reload, from SIGHUP to the READY=1 that ends it. */
enum reload_state {
	RELOAD_NONE,
	RELOAD_APPLYING, /* the new config's mappings are starting */
	RELOAD_REFUSED,	 /* the running config stays (said why) */
};

/* The daemon's life: a reload may come in any phase but the last. */
enum daemon_phase {
	PHASE_STARTING, /* the start-up summary and READY=1 are owed */
	PHASE_RUNNING,
	PHASE_STOPPING,
};

struct daemon {
	uv_loop_t loop;
	uv_signal_t sig[NSIGNALS];
	uv_timer_t status; /* coalesces STATUS= and metrics file updates */
	struct notify *notify;
	struct metrics *http;
	char *http_listen; /* what http listens on */
	uv_timer_t http_retry; /* listening again after it failed */
	unsigned http_retry_s; /* the wait before the next try; 0: none */
	double start_time;
	uint64_t reloads, reload_failures;
	enum reload_state reload; /* READY=1 is owed once one is over */
	struct daemon_opts o;
	struct conf *conf;
	struct sync **syncs;
	size_t nsyncs, syncscap;
	enum daemon_phase phase;
	size_t stops_pending;
	/* A reload waits for stopped mappings before starting new ones. */
	struct conf *next;
	size_t starting; /* start-up publishes not yet attempted */
	struct watch_budget *budget; /* inotify watches, for all mappings */
	const char *budget_from;     /* where its maximum came from */
	char *metrics_file_err; /* what was last logged about metrics_file */
	uv_poll_t mounts; /* /proc/self/mountinfo: the mount table changed */
	int mounts_fd;	  /* -1 when it cannot be watched */
};

static void collect(void *data, struct metrics_view *v)
{
	struct daemon *d = data;

	v->start_time = d->start_time;
	v->now_ms = clock_wall_ms();
	v->reloads = d->reloads;
	v->reload_failures = d->reload_failures;
	v->unhealthy_after_s = d->conf->unhealthy_after_s;
	v->max_watches = watch_budget_max(d->budget);
	v->watches = watch_budget_used(d->budget);
	v->syncs = calloc(d->nsyncs ? d->nsyncs : 1, sizeof(*v->syncs));
	if (v->syncs == NULL)
		return;
	for (size_t i = 0; i < d->nsyncs; i++) {
		v->syncs[i].name = sync_name(d->syncs[i]);
		sync_get_stats(d->syncs[i], &v->syncs[i].st);
	}
	v->n = d->nsyncs;
}

static void write_metrics_file(struct daemon *d)
{
	const char *path = d->conf->metrics_file;
	struct metrics_view v = {0};
	char *text, *err = NULL, *line = NULL;

	if (path == NULL)
		return;
	collect(d, &v);
	text = metrics_render(&v);
	free(v.syncs);
	int rc = text ? metrics_write_file(path, text, &err) : -ENOMEM;
	free(text);
	/* Written after every publish attempt: logged once per change. */
	if (rc < 0 && asprintf(&line, "metrics_file %s: %s; nothing written",
			       path, err ? err : strerror(-rc)) < 0)
		line = NULL;
	free(err);
	if (line && (d->metrics_file_err == NULL ||
		     strcmp(line, d->metrics_file_err) != 0))
		log_error("%s", line);
	else if (rc == 0 && d->metrics_file_err)
		log_info("metrics_file %s: written again", path);
	free(d->metrics_file_err);
	d->metrics_file_err = line;
}

static int http_start(struct daemon *d, const char *listen, char **err)
{
	return metrics_http_start(&d->loop, listen, d->conf->unhealthy_after_s,
				  collect, d, &d->http, err);
}

static void http_apply(struct daemon *d, bool retry);

static void on_http_retry(uv_timer_t *h)
{
	http_apply(h->data, true);
}

/* Nothing is served: an address in use (a port taken by another process,
 * which may go away) or not there yet is tried again after 1 s, then
 * twice as long each time up to a minute, said once, at the first
 * failure; another error waits for a reload. */
static void http_retry(struct daemon *d, const char *err, int rc)
{
	if (rc != -EADDRINUSE && rc != -EADDRNOTAVAIL) {
		log_error("%s; no HTTP metrics until the next reload%s",
			  err ? err : strerror(-rc), log_hint(rc));
		return;
	}
	if (d->http_retry_s == 0)
		log_error("%s; no HTTP metrics until it can listen (trying "
			  "again in 1 s, then less often)%s",
			  err ? err : strerror(-rc), log_hint(rc));
	else
		log_debug("%s; trying again in %u s", err ? err : strerror(-rc),
			  d->http_retry_s);
	unsigned wait = d->http_retry_s ? d->http_retry_s : 1;
	d->http_retry_s = wait * 2 > 60 ? 60 : wait * 2;
	uv_timer_start(&d->http_retry, on_http_retry, wait * 1000u, 0);
}

/* (Re)starts the HTTP endpoint when metrics_listen says so.  The old one
 * goes first (the new address may share its port), and is served again
 * when the new one cannot be: a reload does not take /healthz away.  Not
 * a `retry`: a start, a reload or a stop, which says anew what fails. */
static void http_apply(struct daemon *d, bool retry)
{
	const char *want =
		d->phase == PHASE_STOPPING ? NULL : d->conf->metrics_listen;
	char *err = NULL, *old = d->http_listen;

	uv_timer_stop(&d->http_retry);
	if (!retry)
		d->http_retry_s = 0;
	if (want && old && strcmp(want, old) == 0)
		return;
	d->http_listen = NULL;
	if (d->http) {
		metrics_http_stop(d->http);
		d->http = NULL;
	}
	int rc = want ? http_start(d, want, &err) : 0;
	int back = rc < 0 && old ? http_start(d, old, NULL) : -ENOENT;
	if (back == 0) {
		log_error("%s; still serving /metrics and /healthz on %s%s",
			  err ? err : strerror(-rc), old, log_hint(rc));
		d->http_listen = old;
		d->http_retry_s = 0;
		free(err);
		return;
	}
	if (rc < 0)
		http_retry(d, err, rc);
	else
		d->http_retry_s = 0;
	if (rc == 0 && want && (d->http_listen = strdup(want)) != NULL)
		log_info("serving /metrics and /healthz on %s", want);
	else if (want == NULL && old && d->phase != PHASE_STOPPING)
		log_info("metrics_listen removed: no longer serving /metrics "
			 "and /healthz on %s",
			 old);
	free(old);
	free(err);
}

static void apply_http(struct daemon *d)
{
	http_apply(d, false);
}

/* At most STATUS_ERROR_MAX bytes of an error, not cut inside a UTF-8
 * sequence (the manager drops a status that is not UTF-8). */
#define STATUS_ERROR_MAX 80

static void status_error(FILE *f, const char *err)
{
	size_t n = strnlen(err, STATUS_ERROR_MAX + 1);

	/* Back to the start of a sequence (at most 3 bytes back: bytes
	 * that are not UTF-8 are escaped whole by notify_status()). */
	if (n > STATUS_ERROR_MAX)
		for (n = STATUS_ERROR_MAX;
		     n > STATUS_ERROR_MAX - 3 &&
		     ((unsigned char)err[n] & 0xc0) == 0x80;
		     n--)
			;
	fprintf(f, "error: %.*s", (int)n, err);
}

/* "web: ..2026_11_25_16_04_05.123 at 16:04:05; api: error: ..." */
static void update_status(uv_timer_t *h)
{
	struct daemon *d = h->data;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return;
	if (d->nsyncs == 0)
		fprintf(f, "no mappings");
	for (size_t i = 0; i < d->nsyncs; i++) {
		struct sync_stats st;
		sync_get_stats(d->syncs[i], &st);
		fprintf(f, "%s%s: ", i ? "; " : "", sync_name(d->syncs[i]));
		if (st.last_error)
			status_error(f, st.last_error);
		else if (st.generation) {
			time_t t = (time_t)(st.last_publish_ms / 1000);
			struct tm tm;
			char hhmmss[16] = "";
			if (localtime_r(&t, &tm))
				strftime(hhmmss, sizeof(hhmmss), "%H:%M:%S", &tm);
			fprintf(f, "%s at %s", st.generation, hhmmss);
		} else
			fprintf(f, "starting");
		if (st.watch_limited)
			fprintf(f, ", re-scanning every %.1f s",
				(double)st.rescan_interval_ms / 1000.0);
	}
	fclose(f);
	notify_status(d->notify, text);
	free(text);
	write_metrics_file(d);
}

static void status_soon(struct daemon *d)
{
	if (!uv_is_active((uv_handle_t *)&d->status))
		uv_timer_start(&d->status, update_status, 200, 0);
}

/* Once every start-up publish has been tried, which went through and
 * which did not: "2 of 3 mappings published; failing: web; watching". */
static void log_started(struct daemon *d)
{
	char *failing = NULL, *torn = NULL;
	size_t flen = 0, tlen = 0, ok = 0;
	FILE *ff = open_memstream(&failing, &flen);
	FILE *ft = open_memstream(&torn, &tlen);

	for (size_t i = 0; ff && ft && i < d->nsyncs; i++) {
		struct sync_stats st;
		sync_get_stats(d->syncs[i], &st);
		FILE *f = st.last_error ? ff : st.torn ? ft : NULL;
		if (f)
			fprintf(f, "%s%s", ftell(f) > 0 ? ", " : "",
				sync_name(d->syncs[i]));
		else
			ok++;
	}
	if (ff)
		fclose(ff);
	if (ft)
		fclose(ft);
	log_info("%zu of %zu mapping%s %s%s%s%s%s; watching", ok, d->nsyncs,
		 d->nsyncs == 1 ? "" : "s",
		 d->o.dry_run ? "checked (dry run)" : "published",
		 failing && *failing ? "; failing: " : "",
		 failing ? failing : "",
		 torn && *torn ? "; source still changing: " : "",
		 torn ? torn : "");
	free(failing);
	free(torn);
}

/* READY=1 once every mapping's start-up publish has been attempted, at
 * start and after a reload. */
static void maybe_ready(struct daemon *d)
{
	if (d->starting > 0 || d->stops_pending > 0 ||
	    d->phase == PHASE_STOPPING)
		return;
	/* A SIGHUP during the start still gets the summary, which counts
	 * the reloaded config's mappings too. */
	if (d->phase == PHASE_STARTING)
		log_started(d);
	d->phase = PHASE_RUNNING;
	if (d->reload == RELOAD_APPLYING)
		log_info("reload done");
	d->reload = RELOAD_NONE;
	update_status(&d->status);
	notify_ready(d->notify);
}

static void on_started(struct sync *s, void *data)
{
	struct daemon *d = data;

	(void)s;
	if (d->starting > 0 && --d->starting == 0)
		maybe_ready(d);
}

static void on_changed(struct sync *s, void *data)
{
	(void)s;
	status_soon(data);
}

static int start_sync(struct daemon *d, const struct conf_sync *c)
{
	struct sync_opts so = {
		.dry_run = d->o.dry_run,
		.budget = d->budget,
		.started = on_started,
		.changed = on_changed,
		.data = d,
	};
	struct sync *s = NULL;
	int rc = sync_start(&d->loop, c, &so, &s);

	if (rc < 0) {
		log_msg(LOG_LVL_ERROR, c->name, "cannot start: %s",
			strerror(-rc));
		return rc;
	}
	if (array_grow(&d->syncs, &d->syncscap, d->nsyncs,
		       sizeof(*d->syncs)) < 0) {
		sync_stop(s, NULL, NULL);
		return -ENOMEM;
	}
	d->syncs[d->nsyncs++] = s;
	d->starting++;
	return 0;
}

static void on_mounts(uv_poll_t *h, int status, int events)
{
	struct daemon *d = h->data;

	(void)status;
	(void)events;
	for (size_t i = 0; d->phase != PHASE_STOPPING && i < d->nsyncs; i++)
		sync_mounts_changed(d->syncs[i]);
}

static void on_mounts_closed(uv_handle_t *h)
{
	struct daemon *d = h->data;

	close(d->mounts_fd);
	d->mounts_fd = -1;
}

/* A file system mounted on a source or a target, or unmounted from under
 * one, changes what its path names without an event in any directory
 * watched; the kernel marks /proc/self/mountinfo for every change of the
 * mount table (POLLPRI).  Without it, the resync timer finds out. */
static void watch_mounts(struct daemon *d)
{
	d->mounts_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (d->mounts_fd >= 0 &&
	    uv_poll_init(&d->loop, &d->mounts, d->mounts_fd) == 0) {
		d->mounts.data = d;
		if (uv_poll_start(&d->mounts, UV_PRIORITIZED, on_mounts) < 0) {
			log_debug("mount changes are not watched");
			uv_close((uv_handle_t *)&d->mounts, on_mounts_closed);
		}
		return;
	}
	log_debug("mount changes are not watched: %s", strerror(errno));
	if (d->mounts_fd >= 0)
		close(d->mounts_fd);
	d->mounts_fd = -1;
}

/* The last handles: once they are closed the loop ends. */
static void close_signals(struct daemon *d)
{
	if (d->mounts_fd >= 0 && !uv_is_closing((uv_handle_t *)&d->mounts))
		uv_close((uv_handle_t *)&d->mounts, on_mounts_closed);
	for (size_t i = 0; i < NSIGNALS; i++)
		uv_close((uv_handle_t *)&d->sig[i], NULL);
	uv_close((uv_handle_t *)&d->status, NULL);
	notify_close(d->notify);
	d->notify = NULL;
	apply_http(d);
	uv_close((uv_handle_t *)&d->http_retry, NULL);
}

static void apply_next(struct daemon *d);

static void on_sync_stopped(void *data)
{
	struct daemon *d = data;

	if (--d->stops_pending > 0)
		return;
	if (d->phase == PHASE_STOPPING) {
		close_signals(d);
		return;
	}
	apply_next(d);
}

static void remove_sync(struct daemon *d, size_t i)
{
	struct sync *s = d->syncs[i];

	d->syncs[i] = d->syncs[--d->nsyncs];
	d->stops_pending++;
	sync_stop(s, on_sync_stopped, d);
}

static void shutdown_all(struct daemon *d)
{
	if (d->phase == PHASE_STOPPING)
		return;
	d->phase = PHASE_STOPPING;
	log_info("stopping");
	notify_stopping(d->notify);
	conf_free(d->next);
	d->next = NULL;
	if (d->nsyncs == 0 && d->stops_pending == 0) {
		close_signals(d);
		return;
	}
	while (d->nsyncs > 0)
		remove_sync(d, d->nsyncs - 1);
}

static const struct conf_sync *find_conf(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->nsyncs; i++)
		if (strcmp(c->syncs[i].name, name) == 0)
			return &c->syncs[i];
	return NULL;
}

/* The watches all mappings may take: max_watches, or half of the
 * kernel's limit as it is now (an administrator may have raised it). */
static size_t max_watches(const struct conf *c, const char **from)
{
	bool kernel = false;

	if (c->max_watches) {
		*from = "max_watches";
		return c->max_watches;
	}
	size_t max = watch_default_max(&kernel);
	*from = kernel ? "half of fs.inotify.max_user_watches"
		       : "fs.inotify.max_user_watches cannot be read";
	return max;
}

/* After a reload, before new mappings start: with a new maximum, every
 * mapping that runs on re-scans, so that one over it gives watches back
 * and one short of them takes more; otherwise those short of them look
 * now for what stopped mappings gave back. */
static void apply_budget(struct daemon *d, const struct conf *n)
{
	const char *from;
	size_t max = max_watches(n, &from);
	bool changed = max != watch_budget_max(d->budget);

	if (changed) {
		watch_budget_set_max(d->budget, max);
		log_info("using at most %zu inotify watches (%s); re-scanning "
			 "every mapping",
			 max, from);
	}
	for (size_t i = 0; i < d->nsyncs; i++) {
		struct sync_stats st;
		sync_get_stats(d->syncs[i], &st);
		if (changed || st.watch_limited)
			sync_rescan(d->syncs[i]);
	}
}

/* Starts the mappings of d->next that are not running (all stopped ones
 * have finished stopping), and makes it the current config. */
static void apply_next(struct daemon *d)
{
	struct conf *n = d->next;

	if (n == NULL)
		return;
	d->next = NULL;
	apply_budget(d, n);
	for (size_t i = 0; i < n->nsyncs; i++) {
		bool running = false;
		for (size_t k = 0; k < d->nsyncs; k++)
			running |= strcmp(sync_name(d->syncs[k]),
					  n->syncs[i].name) == 0;
		if (!running) {
			log_msg(LOG_LVL_INFO, n->syncs[i].name, "starting");
			start_sync(d, &n->syncs[i]);
		}
	}
	conf_free(d->conf);
	d->conf = n;
	d->reloads++;
	apply_http(d);
	log_info("configuration %s reloaded: %zu mapping%s", n->path,
		 n->nsyncs, n->nsyncs == 1 ? "" : "s");
	maybe_ready(d);
}

/* A config that did not load or check: every problem, and the running
 * configuration stays. */
static void reload_refused(struct daemon *d, int rc,
			   const struct conf_errors *errs)
{
	if (rc < 0 && errs->n == 0)
		log_error("reload: %s: %s", d->conf->path, strerror(-rc));
	for (size_t i = 0; i < errs->n; i++)
		log_error("reload: %s", errs->v[i]);
	if (rc < 0)
		log_error("reload: %s cannot be read; keeping the running "
			  "configuration",
			  d->conf->path);
	else
		log_error("reload: %zu problem%s; keeping the running "
			  "configuration",
			  errs->n, errs->n == 1 ? "" : "s");
	d->reload_failures++;
}

static void reload(struct daemon *d)
{
	struct conf *n = NULL;
	struct conf_errors errs = {0};

	if (d->phase == PHASE_STOPPING)
		return;
	notify_reloading(d->notify);
	enum reload_state was = d->reload;
	d->reload = RELOAD_APPLYING;
	if (d->o.adhoc) {
		log_info("SIGHUP: no config file to reload; re-scanning");
		for (size_t i = 0; i < d->nsyncs; i++)
			sync_rescan(d->syncs[i]);
		maybe_ready(d);
		return;
	}
	log_info("SIGHUP: reloading %s", d->conf->path);
	int rc = conf_load(d->conf->path, &n, &errs);
	if (rc == 0)
		conf_check(n, &errs);
	for (size_t i = 0; n && i < n->warnings.n; i++)
		log_warn("reload: %s", n->warnings.v[i]);
	if (rc < 0 || errs.n > 0) {
		/* One applying still is done once its mappings start. */
		if (was != RELOAD_APPLYING)
			d->reload = RELOAD_REFUSED;
		reload_refused(d, rc, &errs);
		conf_errors_fini(&errs);
		conf_free(n);
		maybe_ready(d);
		return;
	}
	if (d->o.override)
		d->o.override(n, d->o.data);
	conf_free(d->next);
	d->next = n;
	/* Stop what was removed or changed; keep the rest undisturbed. */
	for (size_t i = d->nsyncs; i > 0; i--) {
		struct sync *s = d->syncs[i - 1];
		const struct conf_sync *nc = find_conf(n, sync_name(s));
		if (nc && conf_sync_equal(nc, sync_conf(s)))
			continue;
		log_msg(LOG_LVL_INFO, sync_name(s), "%s",
			nc ? "changed; restarting" : "removed; stopping");
		remove_sync(d, i - 1);
	}
	if (d->stops_pending == 0)
		apply_next(d);
}

/* "2026-11-25T16:04:05Z", as log lines give times. */
static void wall_time(uint64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "?");
}

static const char *plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

/* One mapping's state, on one line. */
static void log_sync_status(struct sync *s)
{
	struct sync_stats st;
	char when[32], since[32];
	char *live = NULL, *health = NULL, *watched = NULL;

	sync_get_stats(s, &st);
	wall_time(st.last_publish_ms, when, sizeof(when));
	wall_time(st.failing_since_ms, since, sizeof(since));
	if (st.target == SYNC_TARGET_UNTRIED)
		live = strdup("starting");
	else if (st.target == SYNC_TARGET_NOT_OPEN)
		live = strdup("target not open");
	else if (st.generation == NULL)
		live = strdup("no live generation");
	else if (asprintf(&live, "live %s, published %s", st.generation,
			  when) < 0)
		live = NULL;
	if (st.last_error &&
	    asprintf(&health, "failing since %s: %s", since, st.last_error) < 0)
		health = NULL;
	if (st.watch_limited &&
	    asprintf(&watched, "%llu of %llu directories watched, re-scanning "
			       "every %.1f s",
		     (unsigned long long)st.watched,
		     (unsigned long long)st.directories,
		     (double)st.rescan_interval_ms / 1000.0) < 0)
		watched = NULL;
	else if (!st.watch_limited &&
		 asprintf(&watched, "%llu director%s watched",
			  (unsigned long long)st.watched,
			  st.watched == 1 ? "y" : "ies") < 0)
		watched = NULL;
	log_msg(LOG_LVL_INFO, sync_name(s),
		"status: %s; %llu file%s, %llu byte%s; %s; %s",
		live ? live : "?", (unsigned long long)st.files,
		plural(st.files), (unsigned long long)st.bytes,
		plural(st.bytes), watched ? watched : "?",
		health	   ? health
		: st.torn ? "source still changing; retrying"
			   : "healthy");
	free(live);
	free(health);
	free(watched);
}

/* SIGUSR1: the state of the daemon and of every mapping, for whoever
 * asks, at info level. */
static void log_status(struct daemon *d)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	log_info("status: atomsyncd %s, up %.0f s; %zu mapping%s; %llu "
		 "reload%s, %llu refused",
		 PACKAGE_VERSION,
		 (double)now.tv_sec + (double)now.tv_nsec / 1e9 - d->start_time,
		 d->nsyncs, plural(d->nsyncs), (unsigned long long)d->reloads,
		 plural(d->reloads), (unsigned long long)d->reload_failures);
	for (size_t i = 0; i < d->nsyncs; i++)
		log_sync_status(d->syncs[i]);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;

	if (signum == SIGHUP)
		reload(d);
	else if (signum == SIGUSR1)
		log_status(d);
	else
		shutdown_all(d);
}


/* So many events at once that the kernel's queue may have overflowed,
 * losing any mapping's: every source is read whole. */
static void on_flood(void *arg)
{
	struct daemon *d = arg;

	log_debug("more than %zu inotify events at once; reading every "
		  "source whole",
		  watch_overflow_events());
	for (size_t i = 0; i < d->nsyncs; i++)
		sync_flood(d->syncs[i]);
}

int daemon_new(struct conf *conf, const struct daemon_opts *o,
	       struct daemon **out)
{
	struct daemon *d = calloc(1, sizeof(*d));
	int rc;

	if (d) {
		d->mounts_fd = -1;
		d->phase = PHASE_STARTING;
	}
	if (d == NULL || (d->budget = watch_budget_new(max_watches(
				  conf, &d->budget_from))) == NULL) {
		free(d);
		log_error("cannot start: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	rc = uv_loop_init(&d->loop);
	if (rc < 0) {
		log_error("cannot start the event loop: %s", uv_strerror(rc));
		watch_budget_free(d->budget);
		free(d);
		return rc;
	}
	d->o = *o;
	d->conf = conf;
	watch_budget_on_flood(d->budget, on_flood, d);
	*out = d;
	return 0;
}

static void start_handles(struct daemon *d)
{
	static const int sigs[NSIGNALS] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

	signal(SIGPIPE, SIG_IGN);
	notify_new(&d->loop, &d->notify);
	uv_timer_init(&d->loop, &d->status);
	d->status.data = d;
	uv_timer_init(&d->loop, &d->http_retry);
	d->http_retry.data = d;
	d->start_time = (double)clock_us(CLOCK_REALTIME) / 1e6;
	/* Signals first: a SIGTERM while the listener binds is then a
	 * clean stop, not the default action. */
	for (size_t i = 0; i < NSIGNALS; i++) {
		uv_signal_init(&d->loop, &d->sig[i]);
		d->sig[i].data = d;
		uv_signal_start(&d->sig[i], on_signal, sigs[i]);
	}
	watch_mounts(d);
	apply_http(d);
}

int daemon_run(struct daemon *d)
{
	struct conf *conf = d->conf;

	start_handles(d);
	log_info("atomsyncd %s starting: %zu mapping%s", PACKAGE_VERSION,
		 conf->nsyncs, conf->nsyncs == 1 ? "" : "s");
	log_debug("using at most %zu inotify watches (%s)",
		  watch_budget_max(d->budget), d->budget_from);
	for (size_t i = 0; i < conf->nsyncs; i++)
		start_sync(d, &conf->syncs[i]);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&d->loop);
	if (rc < 0) {
		log_error("event loop did not close cleanly: %s",
			  uv_strerror(rc));
		return rc;
	}
	log_info("stopped");
	return 0;
}

void daemon_free(struct daemon *d)
{
	if (d == NULL)
		return;
	watch_budget_free(d->budget);
	free(d->syncs);
	free(d->http_listen);
	free(d->metrics_file_err);
	conf_free(d->next);
	conf_free(d->conf);
	free(d);
}
