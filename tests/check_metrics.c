/* The metrics text and the HTTP endpoint, without the daemon: what is
 * rendered from given numbers, when a mapping counts as unhealthy, how the
 * textfile is written, and a /healthz that says so, promptly, when the
 * event loop stops answering. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "metrics.h"
#include "testutil.h"

static struct metrics_sync one = {.name = "web"};

static void view(struct metrics_view *v)
{
	v->start_time = 1700000000.5;
	v->now_ms = 1700000100000;
	v->reloads = 2;
	v->reload_failures = 1;
	v->unhealthy_after_s = 60;
	v->syncs = &one;
	v->n = 1;
}

START_TEST(test_render_follows_the_exposition_format)
{
	struct metrics_view v = {0};
	view(&v);
	one.st.publishes = 7;
	one.st.vetoes = 1;
	one.st.files = 3;
	one.st.bytes = 4096;
	one.st.duration_count = 7;
	one.st.duration_sum = 0.042;
	for (int b = 0; b < SYNC_BUCKETS; b++)
		one.st.buckets[b] = b < 3 ? 2 : 7;
	char *t = metrics_render(&v);
	ck_assert_msg(strstr(t, "# TYPE atomsync_publishes_total counter\n"
				"atomsync_publishes_total{sync=\"web\"} 7\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_vetoes_total{sync=\"web\"} 1\n"), "%s", t);
	ck_assert_msg(strstr(t, "atomsync_live_bytes{sync=\"web\"} 4096\n"), "%s", t);
	ck_assert_msg(strstr(t, "atomsync_config_reloads_total 2\n"), "%s", t);
	ck_assert_msg(strstr(t, "atomsync_start_time_seconds 1700000000.500\n"), "%s",
		      t);
	ck_assert_msg(strstr(t, "atomsync_publish_duration_seconds_bucket{sync=\"web\","
				"le=\"0.001\"} 2\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_publish_duration_seconds_bucket{sync=\"web\","
				"le=\"+Inf\"} 7\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_publish_duration_seconds_count{sync=\"web\"} 7\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "# TYPE atomsync_publish_running_seconds gauge\n"
				"atomsync_publish_running_seconds{sync=\"web\"} 0.000\n"),
		      "%s", t);
	/* Every sample line belongs to a declared metric. */
	for (char *l = t; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (*l == '#' || *l == '\0')
			continue;
		ck_assert_msg(strncmp(l, "atomsync_", 9) == 0, "stray line: %.40s", l);
	}
	free(t);
}
END_TEST

START_TEST(test_render_shows_a_mapping_that_rescans)
{
	struct metrics_view v = {0};
	view(&v);
	memset(&one.st, 0, sizeof(one.st));
	v.max_watches = 100;
	v.watches = 100;
	one.st.watched = 99;
	one.st.directories = 20201;
	one.st.watch_limited = true;
	one.st.rescan_interval_ms = 12345;
	one.st.watch_fallbacks = 1;
	char *t = metrics_render(&v);
	ck_assert_msg(strstr(t, "# TYPE atomsync_max_watches gauge\n"
				"atomsync_max_watches 100\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_watches 100\n"), "%s", t);
	ck_assert_msg(strstr(t, "atomsync_watched_directories{sync=\"web\"} 99\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_source_directories{sync=\"web\"} 20201\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "# TYPE atomsync_rescanning gauge\n"
				"atomsync_rescanning{sync=\"web\"} 1\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_rescan_interval_seconds{sync=\"web\"} "
				"12.345\n"),
		      "%s", t);
	ck_assert_msg(strstr(t, "atomsync_watch_limit_fallbacks_total{sync=\"web\"} "
				"1\n"),
		      "%s", t);
	free(t);
	/* Re-scanning is working as configured, not a failure. */
	ck_assert_ptr_null(metrics_unhealthy(&v, v.now_ms));
}
END_TEST

START_TEST(test_unhealthy_only_after_the_threshold)
{
	struct metrics_view v = {0};
	view(&v);
	memset(&one.st, 0, sizeof(one.st));
	ck_assert_ptr_null(metrics_unhealthy(&v, 1000000));
	one.st.failing_since_ms = 1000000;
	one.st.last_error = "target /srv/secret/x: Permission denied";
	ck_assert_ptr_null(metrics_unhealthy(&v, 1000000 + 59999));
	char *why = metrics_unhealthy(&v, 1000000 + 61000);
	ck_assert_str_eq(why ? why : "(healthy)", "sync \"web\" failing for 61 s");
	free(why);
	/* A clock set back is no reason. */
	ck_assert_ptr_null(metrics_unhealthy(&v, 1000));
}
END_TEST

START_TEST(test_a_publish_that_runs_on_is_unhealthy_and_shown)
{
	struct metrics_view v = {0};
	view(&v);
	memset(&one.st, 0, sizeof(one.st));
	one.st.publish_started_ms = v.now_ms - 2500;
	char *t = metrics_render(&v);
	ck_assert_msg(strstr(t, "atomsync_publish_running_seconds{sync=\"web\"} 2.500\n"),
		      "%s", t);
	free(t);
	ck_assert_ptr_null(metrics_unhealthy(&v, v.now_ms));
	char *why = metrics_unhealthy(&v, one.st.publish_started_ms + 60000);
	ck_assert_str_eq(why ? why : "(healthy)",
			 "sync \"web\": publish running for 60 s");
	free(why);
}
END_TEST

START_TEST(test_textfile_is_readable_whatever_the_umask)
{
	char *tmp = tu_mkdtemp(), *file = tu_path(tmp, "m.prom"), *err = NULL;
	mode_t old = umask(077);
	int rc = metrics_write_file(file, "atomsync_x 1\n", &err);
	umask(old);
	ck_assert_msg(rc == 0, "%s", err ? err : "?");
	struct stat st;
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0644);
	char *text = tu_read(file, NULL);
	ck_assert_str_eq(text, "atomsync_x 1\n");
	free(text);
	/* Only the file itself is left. */
	ck_assert_int_eq(tu_count_entries(tmp), 1);
	tu_rmrf(tmp);
	free(file);
	free(tmp);
}
END_TEST

START_TEST(test_textfile_never_writes_through_a_planted_link)
{
	char *tmp = tu_mkdtemp(), *file = tu_path(tmp, "m.prom"), *err = NULL;
	char *tmpname = tu_path(tmp, "m.prom.tmp"), *victim = tu_path(tmp, "victim");
	tu_write(tmp, "victim", "precious\n", 0644);
	/* A link at the temporary name goes; the file is made anew. */
	ck_assert_int_eq(symlink(victim, tmpname), 0);
	ck_assert_int_eq(metrics_write_file(file, "atomsync_x 2\n", &err), 0);
	char *text = tu_read(victim, NULL);
	ck_assert_str_eq(text, "precious\n");
	free(text);
	text = tu_read(file, NULL);
	ck_assert_str_eq(text, "atomsync_x 2\n");
	free(text);
	/* The name itself a link: replaced, not written through. */
	ck_assert_int_eq(unlink(file), 0);
	ck_assert_int_eq(symlink(victim, file), 0);
	ck_assert_int_eq(metrics_write_file(file, "atomsync_x 3\n", &err), 0);
	text = tu_read(victim, NULL);
	ck_assert_str_eq(text, "precious\n");
	free(text);
	struct stat st;
	ck_assert_int_eq(lstat(file, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	/* A directory that is not there: an error naming it. */
	char *gone = tu_path(tmp, "gone/m.prom");
	ck_assert_int_eq(metrics_write_file(gone, "x\n", &err), -ENOENT);
	ck_assert_msg(err && strstr(err, "/gone"), "%s", err ? err : "(none)");
	ck_assert_int_eq(metrics_write_file("/", "x\n", &err), -EINVAL);
	free(err);
	free(gone);
	tu_rmrf(tmp);
	free(victim);
	free(tmpname);
	free(file);
	free(tmp);
}
END_TEST

static void collect(void *data, struct metrics_view *v)
{
	(void)data;
	view(v);
	v->syncs = calloc(1, sizeof(*v->syncs));
	v->syncs[0] = one;
	v->unhealthy_after_s = 1;
}

static char *get(int port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	ck_assert_int_eq(write(fd, req, (size_t)n), n);
	return tu_read_reply(fd);
}

START_TEST(test_healthz_says_so_when_the_loop_stops_answering)
{
	uv_loop_t loop;
	struct metrics *m = NULL;
	char listen[64], *err = NULL;
	int port = tu_free_port();

	memset(&one.st, 0, sizeof(one.st));
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	uv_loop_init(&loop);
	ck_assert_int_eq(metrics_http_start(&loop, listen, 1, collect, NULL, &m, &err),
			 0);
	/* Nobody runs the loop: a stalled daemon, for over a second. */
	tu_nap(1100);
	long long t0 = tu_now_ms();
	char *r = get(port, "/healthz");
	ck_assert_msg(strstr(r, " 503 ") &&
			      strstr(r, "\r\n\r\nunhealthy: event loop not answering "
					"for "),
		      "%s", r);
	/* Within a bounded wait, not forever. */
	ck_assert_int_lt(tu_now_ms() - t0, tu_scale(3000));
	/* The loop was asked once: later requests do not wait for it again,
	 * so a crowd of them does not block the HTTP thread. */
	t0 = tu_now_ms();
	for (int i = 0; i < 10; i++) {
		free(r);
		r = get(port, "/healthz");
		ck_assert_msg(strstr(r, " 503 "), "%s", r);
	}
	ck_assert_int_lt(tu_now_ms() - t0, tu_scale(1000));
	free(r);
	r = get(port, "/metrics");
	ck_assert_msg(strstr(r, " 503 "), "%s", r);
	free(r);
	metrics_http_stop(m);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* Lines logged on the test's thread. */
static char said[4096];

static void say_line(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	size_t n = strlen(said);
	snprintf(said + n, sizeof(said) - n, "%s\n", msg);
}

/* libmicrohttpd speaks through our log only when its logger is its
 * first option: else it says so, and whatever it says before that goes
 * to stderr raw. */
START_TEST(test_the_http_library_speaks_only_through_our_log)
{
	uv_loop_t loop;
	struct metrics *m = NULL;
	char listen[64], *err = NULL;
	struct log_sink sink = {.fn = say_line};

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", tu_free_port());
	uv_loop_init(&loop);
	said[0] = '\0';
	const struct log_sink *old = log_sink_set(&sink);
	int rc = metrics_http_start(&loop, listen, 1, collect, NULL, &m, &err);
	log_sink_set(old);
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_msg(strstr(said, "MHD") == NULL, "%s", said);
	metrics_http_stop(m);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static void *run_loop(void *arg)
{
	uv_run(arg, UV_RUN_DEFAULT);
	return NULL;
}

/* On the loop thread: the endpoint and this handle go, the loop ends. */
static void on_stop(uv_async_t *a)
{
	metrics_http_stop(a->data);
	uv_close((uv_handle_t *)a, NULL);
}

START_TEST(test_a_running_loop_is_healthy)
{
	uv_loop_t loop;
	uv_async_t keep;
	struct metrics *m = NULL;
	char listen[64], *err = NULL;
	int port = tu_free_port();
	pthread_t th;

	memset(&one.st, 0, sizeof(one.st));
	one.st.publishes = 3;
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	uv_loop_init(&loop);
	uv_async_init(&loop, &keep, on_stop);
	ck_assert_int_eq(metrics_http_start(&loop, listen, 1, collect, NULL, &m, &err),
			 0);
	keep.data = m;
	pthread_create(&th, NULL, run_loop, &loop);
	tu_nap(1200);
	char *r = get(port, "/healthz");
	ck_assert_msg(strstr(r, " 200 ") && strstr(r, "ok"), "%s", r);
	free(r);
	r = get(port, "/metrics");
	ck_assert_msg(strstr(r, " 200 ") &&
			      strstr(r, "atomsync_publishes_total{sync=\"web\"} 3"),
		      "%s", r);
	free(r);
	/* Handles are closed on the loop's own thread. */
	uv_async_send(&keep);
	pthread_join(th, NULL);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* As a neighbour would: `n` connections to `port` from 127.0.0.2 and
 * 127.0.0.3 (past the limit for one address), each sending a byte of a
 * request head every 300 ms and never the end, until killed.  Says on
 * `ready` once all are made. */
static void trickle(int port, int n, int ready)
{
	int *fd = calloc((size_t)n, sizeof(*fd));
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};

	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	for (int i = 0; fd && i < n; i++) {
		struct sockaddr_in from = {.sin_family = AF_INET};
		inet_pton(AF_INET, i % 2 ? "127.0.0.2" : "127.0.0.3",
			  &from.sin_addr);
		fd[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fd[i] < 0 ||
		    bind(fd[i], (struct sockaddr *)&from, sizeof(from)) < 0 ||
		    connect(fd[i], (struct sockaddr *)&to, sizeof(to)) < 0)
			_exit(1);
	}
	if (fd == NULL || write(ready, "r", 1) != 1)
		_exit(1);
	for (;;) {
		for (int i = 0; i < n; i++)
			(void)send(fd[i], "G", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		tu_nap(300);
	}
}

/* A connection to `port` from 127.0.0.2 or .3 (by `i`), or -1. */
static int neighbour_connect(int port, int i)
{
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	struct sockaddr_in from = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	inet_pton(AF_INET, i % 2 ? "127.0.0.2" : "127.0.0.3", &from.sin_addr);
	if (fd >= 0 && (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0 ||
			connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* As a neighbour would: `n` keep-alive connections, each sending a whole
 * request every 300 ms and reading the answers, and made again as soon
 * as the server closes one, until killed.  Says on `ready` once all
 * are made. */
static void keep_asking(int port, int n, int ready)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	int *fd = calloc((size_t)n, sizeof(*fd));
	char buf[4096];

	for (int i = 0; fd && i < n; i++)
		if ((fd[i] = neighbour_connect(port, i)) < 0)
			_exit(1);
	if (fd == NULL || write(ready, "r", 1) != 1)
		_exit(1);
	for (;;) {
		for (int i = 0; i < n; i++) {
			ssize_t r;
			while ((r = recv(fd[i], buf, sizeof(buf),
					 MSG_DONTWAIT)) > 0)
				;
			if (r == 0 || send(fd[i], req, sizeof(req) - 1,
					   MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				close(fd[i]);
				fd[i] = neighbour_connect(port, i);
			}
		}
		tu_nap(300);
	}
}

/* The health check asked while a neighbour (`neighbour`, in a child)
 * holds a few more connections than the server takes (its share of the
 * limit on open files, 16 to 512), so that few wait to be taken when
 * room is made: each of those is taken before the health check.  It
 * must answer, within the wait of get(). */
static void health_past(void (*neighbour)(int port, int n, int ready),
			int settle_ms)
{
	uv_loop_t loop;
	uv_async_t keep;
	struct metrics *m = NULL;
	char listen[64], *err = NULL;
	int port = tu_free_port(), ready[2];
	pthread_t th;
	char c;

	memset(&one.st, 0, sizeof(one.st));
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	uv_loop_init(&loop);
	uv_async_init(&loop, &keep, on_stop);
	ck_assert_int_eq(metrics_http_start(&loop, listen, 60, collect, NULL, &m,
					    &err),
			 0);
	keep.data = m;
	pthread_create(&th, NULL, run_loop, &loop);
	size_t share = fsutil_fd_share(512);
	int n = (int)(share < 16 ? 16 : share) + 16;
	ck_assert_int_eq(pipe(ready), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0)
		neighbour(port, n, ready[1]);
	close(ready[1]);
	ck_assert_msg(read(ready[0], &c, 1) == 1, "the neighbour could not "
						   "connect %d times", n);
	tu_nap(settle_ms);
	long long t0 = tu_now_ms();
	char *r = get(port, "/healthz");
	long long took = tu_now_ms() - t0;
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	ck_assert_msg(strstr(r, " 200 "), "no answer in %lld ms: %s", took, r);
	free(r);
	uv_async_send(&keep);
	pthread_join(th, NULL);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	close(ready[0]);
}

/* A few hundred connections that trickle in a request head a byte at a
 * time (each byte restarts the inactivity timeout) fill every slot:
 * those past their time with no whole head are closed, so the health
 * check gets in within seconds, not once the neighbour stops. */
START_TEST(test_slow_clients_cannot_keep_the_health_check_out)
{
	health_past(trickle, 0);
}
END_TEST

/* A few hundred keep-alive connections that each ask again and again,
 * whole requests in time, every room taken and asking by the time the
 * health check comes: under such a crowd every answer closes its
 * connection, which queues again behind the health check. */
START_TEST(test_busy_clients_cannot_keep_the_health_check_out)
{
	health_past(keep_asking, 1000);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_render_follows_the_exposition_format);
	tcase_add_test(tc, test_render_shows_a_mapping_that_rescans);
	tcase_add_test(tc, test_unhealthy_only_after_the_threshold);
	tcase_add_test(tc, test_a_publish_that_runs_on_is_unhealthy_and_shown);
	tcase_add_test(tc, test_textfile_is_readable_whatever_the_umask);
	tcase_add_test(tc, test_textfile_never_writes_through_a_planted_link);
	tcase_add_test(tc, test_healthz_says_so_when_the_loop_stops_answering);
	tcase_add_test(tc, test_a_running_loop_is_healthy);
	tcase_add_test(tc, test_the_http_library_speaks_only_through_our_log);
	tcase_add_test(tc, test_slow_clients_cannot_keep_the_health_check_out);
	tcase_add_test(tc, test_busy_clients_cannot_keep_the_health_check_out);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(metrics_suite());
}
