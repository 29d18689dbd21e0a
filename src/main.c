#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <time.h>

#include <uv.h>

#include "clock.h"
#include "conf.h"
#include "hook.h"
#include "ignore.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "snapshot.h"
#include "status.h"
#include "sync.h"
#include "watch.h"
#include "writer.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#define DEFAULT_CONFIG SYSCONFDIR "/atomsync/atomsync.conf"

/* A torn read is retried this many times before --once gives up. */
#define ONCE_TRIES 5

struct options {
	const char *config;
	const char *source, *target;
	bool once, dry_run, check_config, allow_empty, status;
	long debounce_ms; /* -1: as configured */
	bool level_set, format_set;
	enum log_level level;
	enum log_format format;
	/* --source/--target only */
	bool links_set, no_fsync;
	enum snap_links links;
	char **exclude;
	size_t nexclude;
	long grace_ms; /* -1: default */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: atomsyncd [--config FILE] [OPTION]...\n"
		"       atomsyncd --source DIR --target DIR [OPTION]...\n"
		"Keep target directories in step with source trees, atomically.\n"
		"\n"
		"  -c, --config FILE      read mappings from FILE (default "
		"%s)\n"
		"  -s, --source DIR       the tree to read (with --target: one "
		"mapping)\n"
		"  -t, --target DIR       the directory to publish into\n"
		"      --once             publish every mapping once and exit\n"
		"  -n, --dry-run          log what would change; write nothing\n"
		"      --check-config     report every problem in the config and "
		"exit\n"
		"      --status           show each target's live generation, "
		"whether it is in\n"
		"                         step with its source, its daemon and "
		"last error; exit\n"
		"                         0 when every target is in step\n"
		"      --debounce MS      quiet period before a publish\n"
		"      --allow-empty      publish a source that became empty\n"
		"      --log-level LEVEL  error, warn, info or debug\n"
		"      --log-format FMT   text, json or journal\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\n"
		"With --source and --target only:\n"
		"      --exclude PATTERN  skip what PATTERN matches (gitignore(5) "
		"rules; repeatable)\n"
		"      --symlinks MODE    inside (default), follow or skip\n"
		"      --no-fsync         do not flush generations to disk\n"
		"      --grace-ms MS      keep a replaced generation this long "
		"(default %d)\n"
		"\n"
		"Signals: TERM/INT finish the publish in progress and stop (a "
		"replaced\ngeneration is kept for its grace period first); HUP "
		"reloads the config;\nUSR1 logs the status of every mapping.\n"
		"Exit status: 0 success, 1 runtime failure (--status: a target "
		"not in step),\n2 usage or config error.\n"
		"See atomsyncd(8) and atomsync.conf(5).\n",
		DEFAULT_CONFIG, CONF_GRACE_MS);
}

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "atomsyncd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see atomsyncd --help)\n");
	return EXIT_USAGE;
}

/* A path option's argument that begins with '-' is an option typed
 * after one that needs an argument (-t --check-config), not a path to
 * write into: refuse it, and say how to name such a path. */
static int path_arg(const char *opt, const char *arg, const char **out)
{
	if (arg[0] == '-')
		return usage_error("%s: '%s' looks like an option, not a path; "
				   "write a path that begins with '-' as "
				   "./%s",
				   opt, arg, arg);
	*out = arg;
	return 0;
}

static int parse_ms(const char *s, long max, long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ---- --once ---- */

/* check_command on the prepared generation; a veto drops it (*p NULL). */
static int once_check(const struct conf_sync *c, struct writer *w,
		      struct writer_pending **p, char **err)
{
	const char *dir = writer_pending_dir(*p);
	const char *gen = strrchr(dir, '/');
	struct hook_vars hv = {
		.name = c->name, .target = c->target,
		.gen = gen ? gen + 1 : dir, .gen_dir = dir, .changed = -1,
		.pass = c->hook_env, .npass = c->nhook_env,
	};
	char **env = hook_env(&hv);
	char *why = NULL;
	int rc = env ? hook_run_wait(c->check_command, env, -1,
				     c->hook_timeout_s, &why)
		     : -ENOMEM;

	hook_env_free(env);
	if (rc < 0) {
		free(*err);
		if (asprintf(err, "check_command vetoed %s: %s; the live "
				  "generation stays",
			     dir, why ? why : strerror(-rc)) < 0)
			*err = NULL;
		writer_abort(w, *p);
		*p = NULL;
	}
	free(why);
	return rc;
}

/* on_update after a publish, told about the paths it changed. */
static int once_on_update(const struct conf_sync *c,
			  const struct writer_result *r, char **why)
{
	struct hook_changes ch = {0};

	hook_changes_add(&ch, r->paths, r->paths_len, false);
	struct hook_vars hv = {
		.name = c->name, .target = c->target, .gen = r->generation,
		.changed = (long)ch.n, .changed_file = true,
		.incomplete = ch.incomplete,
		.pass = c->hook_env, .npass = c->nhook_env,
	};
	char **env = hook_env(&hv);
	int fd = hook_changes_fd(&ch), rc;

	if (fd < 0)
		rc = log_err_set(why, fd, "changed-paths file: %s",
				 strerror(-fd));
	else
		rc = env ? hook_run_wait(c->on_update, env, fd,
					 c->hook_timeout_s, why)
			 : -ENOMEM;
	if (fd >= 0)
		close(fd);
	hook_env_free(env);
	hook_changes_fini(&ch);
	return rc;
}

/* After a publish, as the daemon does: the signal, then on_update. */
static int once_after_publish(const struct conf_sync *c,
			      const struct writer_result *r, char **hook_err)
{
	if (c->reload_pidfile &&
	    hook_signal_pidfile(c->reload_pidfile, c->reload_signal,
				hook_err) < 0)
		return -EIO;
	if (c->reload_pid) {
		int fd = hook_pidfd_open(c->reload_pid);
		int rc = hook_signal_pidfd(fd, c->reload_pid, c->reload_signal,
					   hook_err);
		if (fd >= 0)
			close(fd);
		if (rc < 0)
			return -EIO;
	}
	if (c->on_update == NULL)
		return 0;
	char *why = NULL;
	int rc = once_on_update(c, r, &why);
	if (rc < 0 && asprintf(hook_err, "on_update %s",
			       why ? why : strerror(-rc)) < 0)
		*hook_err = NULL;
	free(why);
	return rc < 0 ? -EIO : 0;
}

static int run_once(const struct conf_sync *c, bool dry_run)
{
	struct snapshot_opts so = sync_snapshot_opts(c);
	struct writer_opts wo = sync_writer_opts(c, dry_run);
	struct writer *w = NULL;
	struct writer_result r = {0};
	char *err = NULL;
	int rc = writer_open(c->target, &wo, &w, &err);

	if (rc < 0) {
		log_msg(LOG_LVL_ERROR, c->name, "%s%s",
			err ? err : strerror(-rc),
			rc == -EBUSY ? "; not publishing to it (exit status 1)"
				     : log_hint(rc));
		free(err);
		return rc;
	}
	struct writer_pending *p = NULL;
	bool warned = false;
	/* A followed link must not lead the walk back into the target. */
	(void)writer_target_id(w, &so.avoid_dev, &so.avoid_ino);
	for (int attempt = 1;; attempt++) {
		struct snapshot *s = NULL;
		free(err);
		err = NULL;
		rc = snapshot_take(c->source, &so, &s, &err);
		if (rc == 0) {
			/* Once, from the first walk that got through. */
			for (size_t i = 0; !warned && i < s->nwarn; i++)
				log_msg(LOG_LVL_WARN, c->name,
					"source %s: %s: %s", c->source,
					s->warn[i].path,
					snapshot_warn_str(s->warn[i].kind));
			warned = true;
			rc = writer_prepare(w, s, &p, &r, &err);
		}
		if (rc != -EAGAIN || attempt == ONCE_TRIES)
			break;
		log_msg(LOG_LVL_DEBUG, c->name, "%s; retrying",
			err ? err : "source changed");
		struct timespec ts = {0, 20000000L * attempt};
		nanosleep(&ts, NULL);
	}
	/* The check sees the complete generation before it goes live. */
	if (rc == 0 && p && c->check_command)
		rc = once_check(c, w, &p, &err);
	if (rc == 0 && p)
		rc = writer_commit(w, p, &r, &err);
	char *hook_err = NULL;
	if (rc == 0 && r.published && once_after_publish(c, &r, &hook_err) < 0)
		rc = -EIO;
	/* As the daemon does: a recorded error is gone once a publish goes
	 * through. */
	if (!dry_run && (rc == 0 || hook_err))
		(void)writer_record_error(w, 0, NULL);
	if (hook_err) {
		/* The publish itself went through. */
		log_msg(LOG_LVL_INFO, c->name,
			"target %s: published %s (%zu added, %zu changed, %zu "
			"removed)",
			c->target, r.generation, r.added, r.changed, r.removed);
		free(err);
		err = hook_err;
	}
	if (rc == -EAGAIN)
		log_msg(LOG_LVL_ERROR, c->name, "%s; gave up after %d tries",
			err, ONCE_TRIES);
	else if (rc < 0)
		log_msg(LOG_LVL_ERROR, c->name, "%s%s",
			err ? err : strerror(-rc), log_hint(rc));
	else if (dry_run)
		log_msg(LOG_LVL_INFO, c->name,
			"dry run: %zu added, %zu changed, %zu removed", r.added,
			r.changed, r.removed);
	else if (r.published)
		log_msg(LOG_LVL_INFO, c->name,
			"target %s: published %s (%zu added, %zu changed, %zu "
			"removed; %zu copied, %zu reused)",
			c->target, r.generation, r.added, r.changed, r.removed,
			r.copied, r.linked);
	else
		log_msg(LOG_LVL_INFO, c->name, "target %s: unchanged (%s)",
			c->target, r.generation ? r.generation : "empty");
	free(err);
	writer_result_fini(&r);

	/* Live and durable: done.  The generation just replaced stays for
	 * readers that still have it open; the next run retires it. */
	writer_retire_exit(w);
	writer_close(w);
	return rc < 0 ? rc : 0;
}

/* ---- --status ---- */

static int run_status(const struct options *op, struct conf *conf)
{
	int status = 0;

	/* The answer goes to standard output; a line on standard error is
	 * for a problem, not for each step of the comparison. */
	if (!op->level_set)
		log_set_level(LOG_LVL_WARN);
	for (size_t i = 0; i < conf->nsyncs; i++) {
		bool ok = false;
		if (i > 0)
			putchar('\n');
		if (status_show(&conf->syncs[i], stdout, &ok) < 0 || !ok)
			status = EXIT_RUNTIME;
	}
	conf_free(conf);
	if (fflush(stdout) != 0)
		status = EXIT_RUNTIME;
	return status;
}

/* ---- the daemon ---- */

/* TERM, INT, HUP and USR1 */
#define NSIGNALS 4

struct daemon {
	uv_loop_t loop;
	uv_signal_t sig[NSIGNALS];
	uv_timer_t status; /* coalesces STATUS= and metrics file updates */
	struct notify *notify;
	struct metrics *http;
	char *http_listen; /* what http listens on */
	double start_time;
	uint64_t reloads, reload_failures;
	bool reloading;	   /* READY=1 is owed once the reload is done */
	const struct options *op;
	struct conf *conf;
	struct sync **syncs;
	size_t nsyncs;
	bool stopping;
	size_t stops_pending;
	/* A reload waits for stopped mappings before starting new ones. */
	struct conf *next;
	size_t starting; /* start-up publishes not yet attempted */
	struct watch_budget *budget; /* inotify watches, for all mappings */
	char *metrics_file_err; /* what was last logged about metrics_file */
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

/* (Re)starts the HTTP endpoint when metrics_listen says so. */
static void apply_http(struct daemon *d)
{
	const char *want = d->stopping ? NULL : d->conf->metrics_listen;
	char *err = NULL;

	if (want && d->http_listen && strcmp(want, d->http_listen) == 0)
		return;
	if (d->http) {
		metrics_http_stop(d->http);
		d->http = NULL;
		free(d->http_listen);
		d->http_listen = NULL;
	}
	if (want == NULL)
		return;
	int rc = metrics_http_start(&d->loop, want, d->conf->unhealthy_after_s,
				    collect, d, &d->http, &err);
	if (rc < 0) {
		log_error("%s; no HTTP metrics until the next reload%s",
			  err ? err : strerror(-rc), log_hint(rc));
		free(err);
		return;
	}
	d->http_listen = strdup(want);
	log_info("serving /metrics and /healthz on %s", want);
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
			fprintf(f, "error: %.80s", st.last_error);
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
		 d->op->dry_run ? "checked (dry run)" : "published",
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
	if (d->starting > 0 || d->stops_pending > 0 || d->stopping)
		return;
	if (d->reloading) {
		d->reloading = false;
		log_info("reload done");
	} else {
		log_started(d);
	}
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
		.dry_run = d->op->dry_run,
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
	struct sync **v = realloc(d->syncs, (d->nsyncs + 1) * sizeof(*v));
	if (v == NULL) {
		sync_stop(s, NULL, NULL);
		return -ENOMEM;
	}
	d->syncs = v;
	d->syncs[d->nsyncs++] = s;
	d->starting++;
	return 0;
}

/* The last handles: once they are closed the loop ends. */
static void close_signals(struct daemon *d)
{
	for (size_t i = 0; i < NSIGNALS; i++)
		uv_close((uv_handle_t *)&d->sig[i], NULL);
	uv_close((uv_handle_t *)&d->status, NULL);
	notify_close(d->notify);
	d->notify = NULL;
	apply_http(d);
}

static void apply_next(struct daemon *d);

static void on_sync_stopped(void *data)
{
	struct daemon *d = data;

	if (--d->stops_pending > 0)
		return;
	if (d->stopping) {
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
	if (d->stopping)
		return;
	d->stopping = true;
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

static void apply_overrides(const struct options *op, struct conf *c)
{
	for (size_t i = 0; i < c->nsyncs; i++) {
		struct conf_sync *s = &c->syncs[i];
		if (op->allow_empty)
			s->allow_empty = true;
		if (op->debounce_ms >= 0) {
			s->debounce_ms = (unsigned)op->debounce_ms;
			if (s->max_delay_ms < s->debounce_ms)
				s->max_delay_ms = s->debounce_ms;
		}
	}
	/* The command line wins; a key removed from the file on reload
	 * goes back to its default. */
	if (!op->level_set)
		log_set_level(c->log_level_set ? c->log_level : LOG_LVL_INFO);
	if (!op->format_set)
		log_set_format(c->log_format_set ? c->log_format
						 : log_format_detect());
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

static void reload(struct daemon *d)
{
	struct conf *n = NULL;
	struct conf_errors errs = {0};

	if (d->stopping)
		return;
	notify_reloading(d->notify);
	d->reloading = true;
	if (d->op->source) {
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
		if (rc < 0 && errs.n == 0)
			log_error("reload: %s: %s", d->conf->path,
				  strerror(-rc));
		for (size_t i = 0; i < errs.n; i++)
			log_error("reload: %s", errs.v[i]);
		if (rc < 0)
			log_error("reload: %s cannot be read; keeping the "
				  "running configuration",
				  d->conf->path);
		else
			log_error("reload: %zu problem%s; keeping the running "
				  "configuration",
				  errs.n, errs.n == 1 ? "" : "s");
		conf_errors_fini(&errs);
		conf_free(n);
		d->reload_failures++;
		maybe_ready(d);
		return;
	}
	apply_overrides(d->op, n);
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
	if (st.generation == NULL)
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

static int run_daemon(const struct options *op, struct conf *conf)
{
	struct daemon d = {.op = op, .conf = conf};
	static const int sigs[NSIGNALS] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
	const char *from;
	size_t max = max_watches(conf, &from);
	int rc;

	d.budget = watch_budget_new(max);
	if (d.budget == NULL) {
		log_error("cannot start: %s", strerror(ENOMEM));
		return EXIT_RUNTIME;
	}
	rc = uv_loop_init(&d.loop);
	if (rc < 0) {
		log_error("cannot start the event loop: %s", uv_strerror(rc));
		watch_budget_free(d.budget);
		return EXIT_RUNTIME;
	}
	signal(SIGPIPE, SIG_IGN);
	notify_new(&d.loop, &d.notify);
	uv_timer_init(&d.loop, &d.status);
	d.status.data = &d;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	d.start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	apply_http(&d);
	for (size_t i = 0; i < NSIGNALS; i++) {
		uv_signal_init(&d.loop, &d.sig[i]);
		d.sig[i].data = &d;
		uv_signal_start(&d.sig[i], on_signal, sigs[i]);
	}
	log_info("atomsyncd %s starting: %zu mapping%s", PACKAGE_VERSION,
		 conf->nsyncs, conf->nsyncs == 1 ? "" : "s");
	log_debug("using at most %zu inotify watches (%s)", max, from);
	for (size_t i = 0; i < conf->nsyncs; i++)
		start_sync(&d, &conf->syncs[i]);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&d.loop);
	watch_budget_free(d.budget);
	free(d.syncs);
	free(d.http_listen);
	free(d.metrics_file_err);
	conf_free(d.conf);
	if (rc < 0) {
		log_error("event loop did not close cleanly: %s",
			  uv_strerror(rc));
		return EXIT_RUNTIME;
	}
	log_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_ONCE = 256,
		OPT_CHECK,
		OPT_DEBOUNCE,
		OPT_EXCLUDE,
		OPT_SYMLINKS,
		OPT_NO_FSYNC,
		OPT_GRACE,
		OPT_LOG_LEVEL,
		OPT_LOG_FORMAT,
		OPT_ALLOW_EMPTY,
		OPT_STATUS,
	};
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 't'},
		{"once", no_argument, NULL, OPT_ONCE},
		{"dry-run", no_argument, NULL, 'n'},
		{"check-config", no_argument, NULL, OPT_CHECK},
		{"debounce", required_argument, NULL, OPT_DEBOUNCE},
		{"exclude", required_argument, NULL, OPT_EXCLUDE},
		{"symlinks", required_argument, NULL, OPT_SYMLINKS},
		{"no-fsync", no_argument, NULL, OPT_NO_FSYNC},
		{"grace-ms", required_argument, NULL, OPT_GRACE},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
		{"allow-empty", no_argument, NULL, OPT_ALLOW_EMPTY},
		{"status", no_argument, NULL, OPT_STATUS},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct options op = {
		.debounce_ms = -1,
		.grace_ms = -1,
		.level = LOG_LVL_INFO,
		.format = log_format_detect(),
	};
	struct conf *conf = NULL;
	struct conf_errors errs = {0};
	bool adhoc_knobs = false;
	int c, status = 0, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:s:t:nhV", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			if (path_arg("--config", optarg, &op.config))
				return EXIT_USAGE;
			break;
		case 's':
			if (path_arg("--source", optarg, &op.source))
				return EXIT_USAGE;
			break;
		case 't':
			if (path_arg("--target", optarg, &op.target))
				return EXIT_USAGE;
			break;
		case OPT_ONCE:
			op.once = true;
			break;
		case 'n':
			op.dry_run = true;
			break;
		case OPT_CHECK:
			op.check_config = true;
			break;
		case OPT_ALLOW_EMPTY:
			op.allow_empty = true;
			break;
		case OPT_STATUS:
			op.status = true;
			break;
		case OPT_DEBOUNCE:
			if (parse_ms(optarg, 3600000, &op.debounce_ms) < 0)
				return usage_error("--debounce: '%s' is not a "
						   "number of milliseconds (0 "
						   "to 3600000)",
						   optarg);
			break;
		case OPT_EXCLUDE: {
			char *why = NULL;
			if (ignore_check(optarg, &why) < 0) {
				usage_error("--exclude: %s",
					    why ? why : "invalid pattern");
				free(why);
				free(op.exclude);
				return EXIT_USAGE;
			}
			char **nv = realloc(op.exclude,
					    (op.nexclude + 1) * sizeof(*nv));
			if (nv == NULL)
				return EXIT_RUNTIME;
			op.exclude = nv;
			op.exclude[op.nexclude++] = optarg;
			adhoc_knobs = true;
			break;
		}
		case OPT_SYMLINKS:
			op.links_set = adhoc_knobs = true;
			if (strcmp(optarg, "inside") == 0)
				op.links = SNAP_LINKS_INSIDE;
			else if (strcmp(optarg, "follow") == 0)
				op.links = SNAP_LINKS_FOLLOW;
			else if (strcmp(optarg, "skip") == 0)
				op.links = SNAP_LINKS_SKIP;
			else
				return usage_error("--symlinks: '%s' is not "
						   "inside, follow or skip",
						   optarg);
			break;
		case OPT_NO_FSYNC:
			op.no_fsync = adhoc_knobs = true;
			break;
		case OPT_GRACE:
			adhoc_knobs = true;
			if (parse_ms(optarg, 3600000, &op.grace_ms) < 0)
				return usage_error("--grace-ms: '%s' is not a "
						   "number of milliseconds (0 "
						   "to 3600000)",
						   optarg);
			break;
		case OPT_LOG_LEVEL:
			op.level_set = true;
			if (log_level_parse(optarg, &op.level) < 0)
				return usage_error("--log-level: '%s' is not "
						   "error, warn, info or debug",
						   optarg);
			break;
		case OPT_LOG_FORMAT:
			op.format_set = true;
			if (log_format_parse(optarg, &op.format) < 0)
				return usage_error("--log-format: '%s' is not "
						   "text, json or journal",
						   optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("atomsyncd %s\n", PACKAGE_VERSION);
			return 0;
		case ':':
			return usage_error("%s needs an argument",
					   argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'",
					   argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if ((op.source == NULL) != (op.target == NULL))
		return usage_error("--source and --target go together");
	if (op.source && op.config)
		return usage_error("--config cannot be combined with --source "
				   "and --target");
	if (op.status && (op.once || op.dry_run || op.check_config))
		return usage_error("--status cannot be combined with --once, "
				   "--dry-run or --check-config");
	if (adhoc_knobs && op.source == NULL)
		return usage_error("--exclude, --symlinks, --no-fsync and "
				   "--grace-ms only go with --source and "
				   "--target; set them in the config file");
	log_init(op.format, op.level);
	/* Deep trees and many mappings publishing at once hold a directory
	 * descriptor per level: use all the descriptors allowed. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}

	if (op.source) {
		rc = conf_adhoc(op.source, op.target, &conf, &errs);
		if (rc == 0) {
			struct conf_sync *s = &conf->syncs[0];
			if (op.links_set)
				s->symlinks = op.links;
			if (op.no_fsync)
				s->fsync = false;
			if (op.grace_ms >= 0)
				s->grace_ms = (unsigned)op.grace_ms;
			for (size_t i = 0; rc == 0 && i < op.nexclude; i++)
				rc = conf_sync_add_exclude(s, op.exclude[i],
							   NULL);
		}
	} else {
		const char *path = op.config ? op.config : DEFAULT_CONFIG;
		rc = conf_load(path, &conf, &errs);
		if (rc < 0) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "atomsyncd: %s\n", errs.v[i]);
			if (errs.n == 0)
				fprintf(stderr, "atomsyncd: %s: %s\n", path,
					strerror(-rc));
			conf_errors_fini(&errs);
			return EXIT_USAGE;
		}
	}
	free(op.exclude);
	if (rc < 0) {
		fprintf(stderr, "atomsyncd: %s\n", strerror(-rc));
		return EXIT_RUNTIME;
	}
	conf_check(conf, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.v[i]);
	/* With the problems, or what --check-config says; logged when the
	 * mappings run. */
	for (size_t i = 0; i < conf->warnings.n; i++) {
		if (op.check_config || errs.n > 0)
			fprintf(stderr, "warning: %s\n", conf->warnings.v[i]);
		else
			log_warn("%s", conf->warnings.v[i]);
	}
	if (errs.n > 0) {
		conf_errors_fini(&errs);
		conf_free(conf);
		return EXIT_USAGE;
	}
	if (op.check_config) {
		printf("%s: OK, %zu mapping%s\n", conf->path, conf->nsyncs,
		       conf->nsyncs == 1 ? "" : "s");
		conf_free(conf);
		return 0;
	}
	apply_overrides(&op, conf);

	if (op.status)
		return run_status(&op, conf);
	if (op.once) {
		for (size_t i = 0; i < conf->nsyncs; i++)
			if (run_once(&conf->syncs[i], op.dry_run) < 0)
				status = EXIT_RUNTIME;
		conf_free(conf);
		return status;
	}
	return run_daemon(&op, conf);
}
