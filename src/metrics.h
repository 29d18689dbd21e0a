/* What happened, for dashboards: the Prometheus text format, written to a
 * file for node_exporter's textfile collector and served over HTTP
 * (GET /metrics, GET /healthz) by libmicrohttpd on a thread of its own.
 * The numbers live on the loop thread; the HTTP thread asks the loop for a
 * rendering when the one it has is over a second old, and a loop that
 * does not answer is itself a health problem. */
#ifndef ATOMSYNC_METRICS_H
#define ATOMSYNC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sync.h"

struct metrics_sync {
	const char *name;
	struct sync_stats st;
};

struct metrics_view {
	double start_time;	/* seconds since the epoch */
	uint64_t now_ms;	/* wall clock when the numbers were taken */
	uint64_t reloads, reload_failures;
	unsigned unhealthy_after_s;
	uint64_t max_watches, watches; /* inotify: allowed, held */
	struct metrics_sync *syncs;
	size_t n;
};

/* The exposition text (malloc'ed). */
char *metrics_render(const struct metrics_view *v);
/* NULL when healthy, else why not (malloc'ed): the mapping and the kind
 * of problem only, never an error message, for /healthz answers anyone
 * who can connect. */
char *metrics_unhealthy(const struct metrics_view *v, uint64_t now_ms);
/* Writes the text to `path` (absolute) through a temporary file and a
 * rename, so the collector never reads half of it.  The directory is
 * resolved with fsutil_chase(): a symlink on the way that another user
 * owns or can replace is refused, and nothing is written.  The file is
 * mode 0644 whatever the umask.  On error, *err says what failed. */
int metrics_write_file(const char *path, const char *text, char **err);

struct metrics;

/* Fills `out` (on the loop thread); out->syncs is freed by the caller. */
typedef void (*metrics_collect_cb)(void *data, struct metrics_view *out);

/* unhealthy_after_s: how long the loop may stay silent before /healthz
 * says so (updated from each answer's view). */
int metrics_http_start(uv_loop_t *loop, const char *listen,
		       unsigned unhealthy_after_s, metrics_collect_cb collect,
		       void *data, struct metrics **out, char **err);
/* Stops the HTTP thread and closes the loop handle. */
void metrics_http_stop(struct metrics *m);

#endif
