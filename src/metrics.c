#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dlfcn.h>
#include <microhttpd.h>

#include "clock.h"
#include "conf.h"
#include "fsutil.h"
#include "log.h"
#include "metrics.h"
#include "thread.h"

static void esc_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void head(FILE *f, const char *name, const char *type,
		 const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Milliseconds from `then` to `now`; 0 when the clock went back. */
static uint64_t since(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

static double running_s(const struct metrics_view *v,
			const struct sync_stats *st)
{
	if (st->publish_started_ms == 0)
		return 0;
	return (double)since(v->now_ms, st->publish_started_ms) / 1000.0;
}

/* One line per mapping of a per-mapping number. */
#define PER_SYNC(f, v, metric, type, help, fmt, expr)                        \
	do {                                                                 \
		head(f, metric, type, help);                                 \
		for (size_t i_ = 0; i_ < (v)->n; i_++) {                     \
			const struct sync_stats *st = &(v)->syncs[i_].st;    \
			fprintf(f, metric "{sync=\"");                       \
			esc_label(f, (v)->syncs[i_].name);                   \
			fprintf(f, "\"} " fmt "\n", expr);                   \
			(void)st;                                            \
		}                                                            \
	} while (0)

static void render_daemon(FILE *f, const struct metrics_view *v)
{
	head(f, "atomsync_build_info", "gauge", "Build information.");
	fprintf(f, "atomsync_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	head(f, "atomsync_start_time_seconds", "gauge",
	     "When the daemon started, in seconds since the epoch.");
	fprintf(f, "atomsync_start_time_seconds %.3f\n", v->start_time);
	head(f, "atomsync_config_reloads_total", "counter",
	     "Configuration reloads that took effect.");
	fprintf(f, "atomsync_config_reloads_total %llu\n",
		(unsigned long long)v->reloads);
	head(f, "atomsync_config_reload_failures_total", "counter",
	     "Configuration reloads refused because the file had problems.");
	fprintf(f, "atomsync_config_reload_failures_total %llu\n",
		(unsigned long long)v->reload_failures);
	head(f, "atomsync_max_watches", "gauge",
	     "Inotify watches the mappings may take together (max_watches).");
	fprintf(f, "atomsync_max_watches %llu\n",
		(unsigned long long)v->max_watches);
	head(f, "atomsync_watches", "gauge",
	     "Inotify watches the mappings hold, on the parents of the "
	     "sources too.");
	fprintf(f, "atomsync_watches %llu\n", (unsigned long long)v->watches);
}

static void render_syncs(FILE *f, const struct metrics_view *v)
{
	PER_SYNC(f, v, "atomsync_publishes_total", "counter",
		 "New generations made live.", "%llu",
		 (unsigned long long)st->publishes);
	PER_SYNC(f, v, "atomsync_publish_errors_total", "counter",
		 "Publish attempts that failed.", "%llu",
		 (unsigned long long)st->publish_errors);
	PER_SYNC(f, v, "atomsync_vetoes_total", "counter",
		 "Generations check_command refused.", "%llu",
		 (unsigned long long)st->vetoes);
	PER_SYNC(f, v, "atomsync_hook_failures_total", "counter",
		 "Failed runs of on_update or of the reload signal.", "%llu",
		 (unsigned long long)st->hook_failures);
	PER_SYNC(f, v, "atomsync_last_publish_timestamp_seconds", "gauge",
		 "When the live generation was published (0: never).", "%.3f",
		 (double)st->last_publish_ms / 1000.0);
	PER_SYNC(f, v, "atomsync_publish_running_seconds", "gauge",
		 "How long the publish under way has run (0: none).", "%.3f",
		 running_s(v, st));
	PER_SYNC(f, v, "atomsync_failing", "gauge",
		 "1 while the target does not follow the source.", "%d",
		 st->failing_since_ms ? 1 : 0);
	PER_SYNC(f, v, "atomsync_source_empty", "gauge",
		 "1 while an empty source is refused and the last generation "
		 "kept.",
		 "%d", st->source_empty ? 1 : 0);
	PER_SYNC(f, v, "atomsync_live_files", "gauge",
		 "Regular files in the live generation.", "%llu",
		 (unsigned long long)st->files);
	PER_SYNC(f, v, "atomsync_live_bytes", "gauge",
		 "Bytes in the files of the live generation.", "%llu",
		 (unsigned long long)st->bytes);
	PER_SYNC(f, v, "atomsync_watched_directories", "gauge",
		 "Source directories under an inotify watch.", "%llu",
		 (unsigned long long)st->watched);
	PER_SYNC(f, v, "atomsync_source_directories", "gauge",
		 "Source directories the last read found.", "%llu",
		 (unsigned long long)st->directories);
	PER_SYNC(f, v, "atomsync_rescanning", "gauge",
		 "1 while some source directories are not watched and the "
		 "source is re-scanned instead.",
		 "%d", st->watch_limited ? 1 : 0);
	PER_SYNC(f, v, "atomsync_rescan_interval_seconds", "gauge",
		 "How often the source is re-scanned while "
		 "atomsync_rescanning is 1; 0 otherwise.",
		 "%.3f", (double)st->rescan_interval_ms / 1000.0);
	PER_SYNC(f, v, "atomsync_rescans_total", "counter",
		 "Re-scans not caused by a change (timer, reload).", "%llu",
		 (unsigned long long)st->rescans);
	PER_SYNC(f, v, "atomsync_source_reads_total", "counter",
		 "Reads of the source: of the directories that changed, or "
		 "of all of it.", "%llu", (unsigned long long)st->reads);
	PER_SYNC(f, v, "atomsync_source_full_reads_total", "counter",
		 "Reads of all of the source (at start, on a re-scan, when "
		 "the changes cannot be trusted to say what changed).",
		 "%llu", (unsigned long long)st->full_reads);
	PER_SYNC(f, v, "atomsync_entries_read_total", "counter",
		 "Files, directories and other entries of the source looked "
		 "at by its reads.", "%llu",
		 (unsigned long long)st->entries_read);
	PER_SYNC(f, v, "atomsync_files_compared_total", "counter",
		 "Files whose bytes were compared with the live copy because "
		 "they changed too recently for their times to tell.", "%llu",
		 (unsigned long long)st->files_compared);
	PER_SYNC(f, v, "atomsync_watch_limit_fallbacks_total", "counter",
		 "Times a watch limit (max_watches, the kernel's) or a "
		 "directory that cannot be watched forced periodic re-scans.",
		 "%llu", (unsigned long long)st->watch_fallbacks);
}

static void render_durations(FILE *f, const struct metrics_view *v)
{
	head(f, "atomsync_publish_duration_seconds", "histogram",
	     "How long publishing a new generation took.");
	for (size_t i = 0; i < v->n; i++) {
		const struct sync_stats *st = &v->syncs[i].st;
		for (int b = 0; b < SYNC_BUCKETS; b++) {
			fprintf(f, "atomsync_publish_duration_seconds_bucket{sync=\"");
			esc_label(f, v->syncs[i].name);
			fprintf(f, "\",le=\"%g\"} %llu\n", sync_bucket_bounds[b],
				(unsigned long long)st->buckets[b]);
		}
		fprintf(f, "atomsync_publish_duration_seconds_bucket{sync=\"");
		esc_label(f, v->syncs[i].name);
		fprintf(f, "\",le=\"+Inf\"} %llu\n",
			(unsigned long long)st->duration_count);
		fprintf(f, "atomsync_publish_duration_seconds_sum{sync=\"");
		esc_label(f, v->syncs[i].name);
		fprintf(f, "\"} %.6f\n", st->duration_sum);
		fprintf(f, "atomsync_publish_duration_seconds_count{sync=\"");
		esc_label(f, v->syncs[i].name);
		fprintf(f, "\"} %llu\n", (unsigned long long)st->duration_count);
	}
}

char *metrics_render(const struct metrics_view *v)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	render_daemon(f, v);
	render_syncs(f, v);
	render_durations(f, v);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

char *metrics_unhealthy(const struct metrics_view *v, uint64_t now_ms)
{
	uint64_t limit = (uint64_t)v->unhealthy_after_s * 1000u;
	char *r = NULL;
	int n = 0;

	for (size_t i = 0; i < v->n && r == NULL; i++) {
		const struct sync_stats *st = &v->syncs[i].st;
		uint64_t failing = since(now_ms, st->failing_since_ms);
		uint64_t running = since(now_ms, st->publish_started_ms);
		/* last_error names paths: it goes to the log, not here. */
		if (st->failing_since_ms && failing >= limit)
			n = asprintf(&r, "sync \"%s\" failing for %llu s%s",
				     v->syncs[i].name,
				     (unsigned long long)failing / 1000,
				     st->source_empty ? " (its source is empty)"
						      : "");
		else if (st->publish_started_ms && running >= limit)
			n = asprintf(&r, "sync \"%s\": publish running for %llu s",
				     v->syncs[i].name,
				     (unsigned long long)running / 1000);
		if (n < 0)
			return strdup("a mapping is failing");
	}
	return r;
}

/* Writes `text` to `name` in `dfd` through `tmp`; *step says which call
 * failed. */
int metrics_write_file(const char *path, const char *text, char **err)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;

	if (path[0] != '/' || *name == '\0' || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return log_err_set(err, -EINVAL,
				   "not an absolute path to a file");
	char *dir = slash == path ? strdup("/")
				  : strndup(path, (size_t)(slash - path));
	char *tmp = NULL, *why = NULL;
	int rc = -ENOMEM;
	if (dir == NULL || asprintf(&tmp, "%s.tmp", name) < 0) {
		free(dir);
		return log_err_set(err, rc, "%s", strerror(-rc));
	}
	/* The directory as a root daemon must resolve it: its owner may
	 * have replaced it, or a directory above, by a symlink. */
	int dfd = fsutil_chase(dir, 0, O_RDONLY | O_DIRECTORY, NULL, &why);
	if (dfd < 0) {
		rc = log_err_set(err, dfd, "%s",
				 why ? why : strerror(-dfd));
	} else {
		const char *step = "";
		/* No fsync: the next publish attempt writes it again.  The
		 * unit's UMask= must not hide it from the collector: 0644. */
		rc = fsutil_write_atomic(dfd, tmp, name, text, strlen(text),
					 0644, &step);
		if (rc < 0)
			rc = log_err_set(err, rc, "%s %s/%s: %s", step, dir,
					 strcmp(step, "rename") == 0 ? name : tmp,
					 strerror(-rc));
		close(dfd);
	}
	free(why);
	free(tmp);
	free(dir);
	return rc;
}

/* ---- HTTP ---- */

/* A rendering younger than this is served again without asking the loop,
 * so a flood of requests costs the loop one rendering a second. */
#define FRESH_MS 1000
/* How long after asking the HTTP thread waits for the loop's answer.  A
 * stalled loop costs one such wait, not one per request: a request that
 * finds the question already older than this does not wait at all. */
#define ANSWER_WAIT_MS 250

/* Connections: enough that a crowd of idle or slow clients leaves room
 * for the health check, bounded in memory (MEMORY_LIMIT each) and in
 * descriptors (a quarter of RLIMIT_NOFILE at most: publishing needs the
 * rest). */
#define MAX_CONNECTIONS 512u
#define MIN_CONNECTIONS 16u
#define MEMORY_LIMIT ((size_t)16384)
/* A connection may stay silent this long; once more than BUSY are open,
 * new ones get BUSY_TIMEOUT_S, so idle and slow clients make room for
 * requests that come and go. */
#define TIMEOUT_S 10u
#define BUSY 32u
#define BUSY_TIMEOUT_S 2u
/* Those timeouts restart with each byte: a client that sends a byte a
 * second would keep its connection for ever, and a few hundred such
 * (from any of 127.0.0.0/8, past the limit per address) keep the health
 * check out.  So a connection must also have sent a whole request
 * within the same time of opening, or of its last answer, however it
 * trickles in; the reaper (reap_run()) checks every REAP_MS. */
#define REAP_MS 250u

/* libmicrohttpd and the TLS libraries it links are loaded on first use:
 * a daemon that serves no metrics over HTTP does not carry them. */
static struct {
	void *lib;
	struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t,
					   MHD_AcceptPolicyCallback, void *,
					   MHD_AccessHandlerCallback, void *, ...);
	void (*stop_daemon)(struct MHD_Daemon *);
	struct MHD_Response *(*create_response)(size_t, void *,
						enum MHD_ResponseMemoryMode);
	enum MHD_Result (*add_header)(struct MHD_Response *, const char *,
				      const char *);
	enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int,
					  struct MHD_Response *);
	void (*destroy_response)(struct MHD_Response *);
	enum MHD_Result (*set_option)(struct MHD_Connection *,
				      enum MHD_CONNECTION_OPTION, ...);
	const union MHD_ConnectionInfo *(*get_info)(
		struct MHD_Connection *, enum MHD_ConnectionInfoType, ...);
} mhd;

#define MHD_NSYMS 8

static int mhd_load(char **err)
{
	static const char *const names[MHD_NSYMS] = {
		"MHD_start_daemon",	    "MHD_stop_daemon",
		"MHD_create_response_from_buffer", "MHD_add_response_header",
		"MHD_queue_response",	    "MHD_destroy_response",
		"MHD_set_connection_option", "MHD_get_connection_info",
	};
	void *f[MHD_NSYMS];

	if (mhd.lib)
		return 0;
	void *lib = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
		return log_err_set(err, -ENOENT,
				   "metrics_listen needs %s (Debian: "
				   "libmicrohttpd12): %s",
				   MHD_SONAME, dlerror());
	for (int i = 0; i < MHD_NSYMS; i++) {
		f[i] = dlsym(lib, names[i]);
		if (f[i] == NULL) {
			dlclose(lib);
			return log_err_set(err, -ENOENT, "%s: missing symbol %s",
					   MHD_SONAME, names[i]);
		}
	}
	/* POSIX allows converting dlsym's result to a function pointer. */
	memcpy(&mhd.start_daemon, &f[0], sizeof(f[0]));
	memcpy(&mhd.stop_daemon, &f[1], sizeof(f[1]));
	memcpy(&mhd.create_response, &f[2], sizeof(f[2]));
	memcpy(&mhd.add_header, &f[3], sizeof(f[3]));
	memcpy(&mhd.queue_response, &f[4], sizeof(f[4]));
	memcpy(&mhd.destroy_response, &f[5], sizeof(f[5]));
	memcpy(&mhd.set_option, &f[6], sizeof(f[6]));
	memcpy(&mhd.get_info, &f[7], sizeof(f[7]));
	mhd.lib = lib;
	return 0;
}

struct metrics {
	struct MHD_Daemon *mhd;
	uv_async_t async;
	metrics_collect_cb collect;
	void *data;
	_Atomic unsigned open;	  /* connections, counted on the HTTP thread */
	pthread_mutex_t mu;
	pthread_cond_t cond;	  /* on the monotonic clock */
	uint64_t asked, answered; /* request and answer generations */
	uint64_t asked_ms;	  /* monotonic: when the open question was asked */
	char *text;		  /* latest rendering */
	char *unhealthy;	  /* latest health verdict */
	uint64_t last_answer_ms;  /* monotonic */
	unsigned unhealthy_after_s;
	bool stopping;
	/* The open connections and by when each must have sent a whole
	 * request (UINT64_MAX: it has), for the reaper; under conns_mu, which
	 * a connection's close waits for, so that a descriptor the reaper
	 * shuts down is still the connection's. */
	pthread_mutex_t conns_mu;
	pthread_cond_t reap_cond; /* on the monotonic clock */
	struct conn_slot *conns;
	size_t nconns;
	pthread_t reaper;
	bool reaping, reap_stop;
};

struct conn_slot {
	struct MHD_Connection *c; /* NULL: free */
	int fd;
	uint64_t due_ms; /* monotonic */
};

/* On the loop thread: render for the HTTP thread. */
static void on_async(uv_async_t *a)
{
	struct metrics *m = a->data;
	struct metrics_view v = {0};

	pthread_mutex_lock(&m->mu);
	uint64_t want = m->asked;
	pthread_mutex_unlock(&m->mu);

	v.now_ms = clock_wall_ms();
	m->collect(m->data, &v);
	char *text = metrics_render(&v);
	char *bad = metrics_unhealthy(&v, v.now_ms);
	free(v.syncs);

	pthread_mutex_lock(&m->mu);
	free(m->text);
	free(m->unhealthy);
	m->text = text;
	m->unhealthy = bad;
	m->unhealthy_after_s = v.unhealthy_after_s;
	m->answered = want;
	m->last_answer_ms = clock_mono_ms();
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mu);
}

/* What a request is answered from. */
struct answer {
	char *text, *bad;   /* copies */
	bool stalled;	    /* the loop has not answered for too long */
	uint64_t silent_ms; /* since the loop last answered */
	bool stopping;
};

static struct timespec mono_at(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000L};
	return ts;
}

/* On the HTTP thread: the latest rendering, asking the loop for a new one
 * when it is not fresh and waiting a little for it. */
static void fetch(struct metrics *m, struct answer *a)
{
	pthread_mutex_lock(&m->mu);
	uint64_t now = clock_mono_ms();
	bool fresh = m->text && now - m->last_answer_ms < FRESH_MS;
	if (!m->stopping && !fresh) {
		if (m->answered == m->asked) {
			m->asked++;
			m->asked_ms = now;
			uv_async_send(&m->async);
		}
		struct timespec until = mono_at(m->asked_ms + ANSWER_WAIT_MS);
		while (m->answered < m->asked && !m->stopping &&
		       pthread_cond_timedwait(&m->cond, &m->mu, &until) == 0)
			;
	}
	a->silent_ms = clock_mono_ms() - m->last_answer_ms;
	a->stalled = m->answered < m->asked &&
		     a->silent_ms >= (uint64_t)m->unhealthy_after_s * 1000u;
	a->stopping = m->stopping;
	a->text = m->text ? strdup(m->text) : NULL;
	a->bad = m->unhealthy ? strdup(m->unhealthy) : NULL;
	pthread_mutex_unlock(&m->mu);
}

/* On the HTTP thread.  Under a crowd, the connection is closed once
 * answered: a client that keeps whole requests coming on one would
 * otherwise hold its room for ever, and a few hundred such (from any of
 * 127.0.0.0/8) keep the health check out; closed, each queues again
 * behind it. */
static enum MHD_Result reply(const struct metrics *m, struct MHD_Connection *c,
			     unsigned code, const char *type, const char *body)
{
	struct MHD_Response *r = mhd.create_response(
		strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	mhd.add_header(r, "Content-Type", type);
	mhd.add_header(r, "Cache-Control", "no-store");
	if (m->open > BUSY)
		mhd.add_header(r, "Connection", "close");
	enum MHD_Result ret = mhd.queue_response(c, code, r);
	mhd.destroy_response(r);
	return ret;
}

/* The answer to GET /metrics or /healthz. */
static enum MHD_Result reply_with(const struct metrics *m,
				  struct MHD_Connection *c, bool metrics,
				  const struct answer *a)
{
	char *body = NULL;
	enum MHD_Result ret;

	if (a->stopping)
		return reply(m, c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
			     "stopping\n");
	if (a->stalled) {
		if (asprintf(&body,
			     "unhealthy: event loop not answering for %llu s\n",
			     (unsigned long long)a->silent_ms / 1000) < 0)
			body = NULL;
		ret = reply(m, c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
			    body ? body : "unhealthy\n");
	} else if (metrics) {
		ret = reply(m, c, a->text ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
			    "text/plain; version=0.0.4; charset=utf-8",
			    a->text ? a->text : "no metrics yet\n");
	} else if (a->bad) {
		if (asprintf(&body, "unhealthy: %s\n", a->bad) < 0)
			body = NULL;
		ret = reply(m, c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
			    body ? body : "unhealthy\n");
	} else {
		ret = reply(m, c, MHD_HTTP_OK, "text/plain", "ok\n");
	}
	free(body);
	return ret;
}

/* By when a connection must have sent a whole request, from now. */
static uint64_t head_due(const struct metrics *m)
{
	return clock_mono_ms() +
	       (m->open > BUSY ? BUSY_TIMEOUT_S : TIMEOUT_S) * 1000u;
}

/* The slot of connection c, NULL when it has none; under conns_mu. */
static struct conn_slot *slot_of(struct metrics *m, struct MHD_Connection *c)
{
	for (size_t i = 0; i < m->nconns; i++)
		if (m->conns[i].c == c)
			return &m->conns[i];
	return NULL;
}

/* Sets connection c's slot: `fd` and `due_ms`, or no slot at all when
 * `fd` is -1; `add` takes a free one. */
static void slot_set(struct metrics *m, struct MHD_Connection *c, bool add,
		     int fd, uint64_t due_ms)
{
	pthread_mutex_lock(&m->conns_mu);
	struct conn_slot *sl = slot_of(m, add ? NULL : c);
	if (sl && fd < 0)
		sl->c = NULL;
	else if (sl)
		*sl = (struct conn_slot){c, add ? fd : sl->fd, due_ms};
	pthread_mutex_unlock(&m->conns_mu);
}

/* On the HTTP thread. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct metrics *m = cls;
	bool metrics = strcmp(url, "/metrics") == 0;
	bool health = strcmp(url, "/healthz") == 0;

	(void)version;
	(void)upload;
	if (*state == NULL) {
		/* First call, headers only: come back for the body. */
		*state = m;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0; /* a body is read and ignored */
		return MHD_YES;
	}
	/* The request is in, body and all (one trickled in counts against
	 * the same time as its head): the reaper lets it be. */
	slot_set(m, c, false, 0, UINT64_MAX);
	if (!metrics && !health)
		return reply(m, c, MHD_HTTP_NOT_FOUND, "text/plain",
			     "not found: try /metrics or /healthz\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(m, c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
			     "only GET\n");

	struct answer a = {0};
	fetch(m, &a);
	enum MHD_Result ret = reply_with(m, c, metrics, &a);
	free(a.text);
	free(a.bad);
	return ret;
}

/* On a thread of its own: shuts down each connection past its due time
 * with no whole request, which libmicrohttpd then closes. */
static void *reap_run(void *arg)
{
	struct metrics *m = arg;

	pthread_mutex_lock(&m->conns_mu);
	while (!m->reap_stop) {
		uint64_t now = clock_mono_ms();
		for (size_t i = 0; i < m->nconns; i++) {
			struct conn_slot *sl = &m->conns[i];
			if (sl->c == NULL || sl->due_ms > now)
				continue;
			(void)shutdown(sl->fd, SHUT_RDWR);
			sl->due_ms = UINT64_MAX;
		}
		struct timespec until = mono_at(now + REAP_MS);
		(void)pthread_cond_timedwait(&m->reap_cond, &m->conns_mu,
					     &until);
	}
	pthread_mutex_unlock(&m->conns_mu);
	return NULL;
}

/* On the HTTP thread: a request answered, and the connection kept open
 * for the next, which has the time of a new connection to come. */
static void on_completed(void *cls, struct MHD_Connection *c, void **state,
			 enum MHD_RequestTerminationCode why)
{
	struct metrics *m = cls;

	(void)state;
	(void)why;
	slot_set(m, c, false, 0, head_due(m));
}

/* On the HTTP thread: counts connections, gives each a time by which to
 * speak, and under a crowd a new one little. */
static void on_connection(void *cls, struct MHD_Connection *c, void **ctx,
			  enum MHD_ConnectionNotificationCode what)
{
	struct metrics *m = cls;

	(void)ctx;
	if (what == MHD_CONNECTION_NOTIFY_CLOSED) {
		/* Before libmicrohttpd closes its descriptor. */
		slot_set(m, c, false, -1, 0);
		if (m->open > 0)
			m->open--;
		return;
	}
	if (++m->open > BUSY)
		mhd.set_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
			       (unsigned)BUSY_TIMEOUT_S);
	const union MHD_ConnectionInfo *ci =
		mhd.get_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		slot_set(m, c, true, ci->connect_fd, head_due(m));
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vmsg(LOG_LVL_DEBUG, NULL, fmt, ap);
}

static void on_async_closed(uv_handle_t *h)
{
	struct metrics *m = h->data;

	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->conns_mu);
	pthread_cond_destroy(&m->reap_cond);
	free(m->conns);
	free(m->text);
	free(m->unhealthy);
	free(m);
}

/* The address to listen on, and the MHD flags it needs. */
static int listen_addr(const char *listen, struct sockaddr_storage *ss,
		       unsigned *flags, unsigned *port, char **err)
{
	char host[64];

	if (conf_parse_listen(listen, host, sizeof(host), port) < 0)
		return log_err_set(err, -EINVAL, "metrics_listen %s: not HOST:PORT",
				   listen);
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '\0' || strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)*port);
		if (host[0])
			inet_pton(AF_INET6, host, &a->sin6_addr);
		else
			a->sin6_addr = in6addr_any;
		*flags |= MHD_USE_IPv6;
		if (host[0] == '\0')
			*flags |= MHD_USE_DUAL_STACK;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)*port);
		inet_pton(AF_INET, host, &a->sin_addr);
	}
	return 0;
}

static unsigned connection_limit(void)
{
	unsigned n = (unsigned)fsutil_fd_share(MAX_CONNECTIONS);

	return n < MIN_CONNECTIONS ? MIN_CONNECTIONS : n;
}

static struct metrics *metrics_new(uv_loop_t *loop, unsigned unhealthy_after_s,
				   metrics_collect_cb collect, void *data)
{
	struct metrics *m = calloc(1, sizeof(*m));
	pthread_condattr_t ca;

	if (m == NULL)
		return NULL;
	m->nconns = connection_limit();
	m->conns = calloc(m->nconns, sizeof(*m->conns));
	if (m->conns == NULL) {
		free(m);
		return NULL;
	}
	m->collect = collect;
	m->data = data;
	m->last_answer_ms = clock_mono_ms();
	m->unhealthy_after_s = unhealthy_after_s;
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_mutex_init(&m->conns_mu, NULL);
	pthread_cond_init(&m->reap_cond, &ca);
	pthread_condattr_destroy(&ca);
	uv_async_init(loop, &m->async, on_async);
	m->async.data = m;
	return m;
}

int metrics_http_start(uv_loop_t *loop, const char *listen,
		       unsigned unhealthy_after_s, metrics_collect_cb collect,
		       void *data, struct metrics **out, char **err)
{
	struct sockaddr_storage ss;
	unsigned port, flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
			       MHD_USE_ERROR_LOG;
	int rc = listen_addr(listen, &ss, &flags, &port, err);

	if (rc == 0)
		rc = mhd_load(err);
	if (rc < 0)
		return rc;
	struct metrics *m = metrics_new(loop, unhealthy_after_s, collect, data);
	if (m == NULL)
		return log_err_set(err, -ENOMEM, "metrics_listen %s: %s", listen,
				   strerror(ENOMEM));
	/* Bounded against garbage, huge, idle and slow clients; one address
	 * may take three quarters of the connections, so the local health
	 * check still gets in when a neighbour holds many open. */
	unsigned limit = (unsigned)m->nconns;
	errno = 0;
	/* The logger first: libmicrohttpd writes what it says before it
	 * to stderr, raw. */
	m->mhd = mhd.start_daemon(
		flags, (uint16_t)port, NULL, NULL, on_request, m,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_TIMEOUT, TIMEOUT_S,
		MHD_OPTION_CONNECTION_LIMIT, limit,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, limit - limit / 4,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, MEMORY_LIMIT,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, m,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, m, MHD_OPTION_END);
	if (m->mhd == NULL) {
		int e = errno ? errno : EADDRINUSE;
		uv_close((uv_handle_t *)&m->async, on_async_closed);
		return log_err_set(err, -e, "metrics_listen %s: cannot listen: %s",
				   listen, strerror(e));
	}
	rc = thread_start(&m->reaper, reap_run, m);
	m->reaping = rc == 0;
	if (rc < 0) {
		metrics_http_stop(m);
		return log_err_set(err, rc, "metrics_listen %s: %s", listen,
				   strerror(-rc));
	}
	*out = m;
	return 0;
}

void metrics_http_stop(struct metrics *m)
{
	if (m == NULL)
		return;
	/* Wake a request waiting for the loop before the thread is joined. */
	pthread_mutex_lock(&m->mu);
	m->stopping = true;
	m->answered = m->asked;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mu);
	if (m->reaping) {
		pthread_mutex_lock(&m->conns_mu);
		m->reap_stop = true;
		pthread_cond_signal(&m->reap_cond);
		pthread_mutex_unlock(&m->conns_mu);
		pthread_join(m->reaper, NULL);
	}
	mhd.stop_daemon(m->mhd);
	uv_close((uv_handle_t *)&m->async, on_async_closed);
}
