/* The service manager protocol, seen from the service manager's side: a
 * datagram socket in NOTIFY_SOCKET receives READY=1 once the targets are
 * published, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on
 * SIGTERM, and WATCHDOG=1 pings from the event loop. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char *tmp, *src, *dst, *sock, *logpath;
static int fd = -1;
static pid_t pid;

static void setup(void)
{
	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	sock = tu_path(tmp, "notify.sock");
	logpath = tu_path(tmp, "daemon.log");
	tu_write(src, "app.conf", "v1\n", 0644);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	ck_assert_uint_lt(strlen(sock), sizeof(sa.sun_path));
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pid = 0;
}

static void teardown(void)
{
	if (pid > 0)
		tu_kill(pid);
	close(fd);
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(sock);
	free(logpath);
	free(tmp);
}

/* With `config`, the daemon reads it instead of --source and --target. */
static void start_with(const char *watchdog_usec, const char *config)
{
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char p[32];
		snprintf(p, sizeof(p), "%d", (int)getpid());
		setenv("NOTIFY_SOCKET", sock, 1);
		if (watchdog_usec) {
			setenv("WATCHDOG_USEC", watchdog_usec, 1);
			setenv("WATCHDOG_PID", p, 1);
		}
		int l = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(l, 2);
		if (config)
			execl(tu_bin(), tu_bin(), "--config", config,
			      "--log-level", "debug", (char *)NULL);
		else
			execl(tu_bin(), tu_bin(), "--source", src, "--target",
			      dst, "--debounce", "10", "--log-level", "debug",
			      (char *)NULL);
		_exit(127);
	}
}

static void start(const char *watchdog_usec)
{
	start_with(watchdog_usec, NULL);
}

/* Whether process `p` has libsystemd mapped. */
static bool maps_libsystemd(pid_t p)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)p);
	size_t len = 0;
	char *maps = tu_read(path, &len);
	ck_assert_ptr_nonnull(maps);
	bool found = strstr(maps, "libsystemd.so") != NULL;
	free(maps);
	return found;
}

/* Next datagram, or NULL after the (scaled) timeout. */
static char *next_msg(int timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	if (poll(&p, 1, tu_scale(timeout_ms)) <= 0)
		return NULL;
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/* Waits for a message containing `want`, skipping watchdog pings and
 * status updates (counted). */
static char *wait_msg(const char *want, int *pings, int timeout_ms)
{
	long long end = tu_now_ms() + tu_scale(timeout_ms);
	while (tu_now_ms() < end) {
		char *m = next_msg((int)(end - tu_now_ms()));
		if (m == NULL)
			break;
		if (strstr(m, want))
			return m;
		if (pings && strcmp(m, "WATCHDOG=1") == 0)
			(*pings)++;
		free(m);
	}
	ck_abort_msg("no '%s' from the daemon", want);
	return NULL;
}

START_TEST(test_ready_reload_stopping_sequence)
{
	start(NULL);
	char *m = wait_msg("READY=1", NULL, 10000);
	/* READY means published: a unit ordered after us finds the files. */
	char *f = tu_path(dst, "app.conf");
	char *d = tu_read(f, NULL);
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d, "v1\n");
	free(d);
	free(f);
	free(m);
	ck_assert(maps_libsystemd(pid));

	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	m = wait_msg("RELOADING=1", NULL, 5000);
	ck_assert_msg(strstr(m, "MONOTONIC_USEC="), "%s", m);
	free(m);
	m = wait_msg("READY=1", NULL, 5000);
	free(m);

	/* STATUS follows publishes. */
	tu_write(src, "app.conf", "v2\n", 0644);
	m = wait_msg("STATUS=main: ..", NULL, 5000);
	free(m);

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	m = wait_msg("STOPPING=1", NULL, 5000);
	free(m);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
}
END_TEST

/* A mapping with more directories than watches says so in its status. */
START_TEST(test_status_says_a_mapping_rescans)
{
	char *text, *conf = tu_path(tmp, "atomsync.conf");
	tu_write(src, "a/b/c", "deep", 0644);
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmax_watches = 2\n[sync:main]\n"
				  "source = %s\ntarget = %s\n"
				  "poll_interval_ms = 200\n",
				  src, dst),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0600);
	start_with(NULL, conf);
	char *m = wait_msg(", re-scanning every ", NULL, 10000);
	ck_assert_msg(strncmp(m, "STATUS=main: ..", 15) == 0, "%s", m);
	free(m);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	free(text);
	free(conf);
}
END_TEST

/* A chain of directories under `top` in the source, past PATH_MAX. */
static void make_too_deep(const char *top)
{
	char name[250];
	int d = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	ck_assert_int_eq(mkdirat(d, top, 0755), 0);
	for (int i = 0; i < 18; i++) {
		int next = openat(d, i ? name : top, O_RDONLY | O_DIRECTORY);
		ck_assert_int_ge(next, 0);
		close(d);
		d = next;
		ck_assert_int_eq(mkdirat(d, name, 0755), 0);
	}
	close(d);
}

/* The daemon's status once a source (under a path short enough for
 * the name to reach the status's first 80 bytes, wherever the tests
 * run) holds `top` with a chain under it past PATH_MAX: the error that
 * quotes the name.  The daemon is stopped. */
static char *status_naming(const char *top)
{
	char dir[] = "/tmp/asn.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	free(src);
	src = tu_path(dir, "s");
	tu_mkdirs(src, 0755);
	make_too_deep(top);
	start(NULL);
	char *m = wait_msg("STATUS=main: error: ", NULL, 10000);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	tu_rmrf(dir);
	return m;
}

/* Each line of a message is a field the manager trusts from root: a
 * user's file name quoted in an error (here, a path too long) must not
 * start one. */
START_TEST(test_a_file_name_starts_no_field)
{
	char *m = status_naming("x\nWATCHDOG=trigger");
	ck_assert_msg(strchr(m, '\n') == NULL, "%s", m);
	ck_assert_msg(strstr(m, "bytes: x\\x0aWATCH"), "%s", m);
	free(m);
}
END_TEST

/* A name of bytes that are not UTF-8 (continuation bytes alone) where
 * the status is cut: the cut steps back over one sequence at most, and
 * the bytes before it are escaped, not dropped. */
START_TEST(test_a_cut_through_stray_bytes_keeps_them_escaped)
{
	char name[101];
	memset(name, 0x80, sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	char *m = status_naming(name);
	ck_assert_msg(strstr(m, "bytes: \\x80\\x80"), "%s", m);
	free(m);
}
END_TEST

START_TEST(test_watchdog_pings_come_from_the_loop)
{
	int pings = 0;
	start("200000"); /* 200 ms: pings every 100 ms */
	char *m = wait_msg("READY=1", &pings, 10000);
	free(m);
	long long end = tu_now_ms() + 1000;
	while (tu_now_ms() < end) {
		m = next_msg(200);
		if (m && strcmp(m, "WATCHDOG=1") == 0)
			pings++;
		free(m);
	}
	ck_assert_msg(pings >= 5, "only %d watchdog pings in a second", pings);
	/* A stalled loop stops pinging. */
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	while ((m = next_msg(50)) != NULL)
		free(m); /* drain */
	int late = 0;
	end = tu_now_ms() + 500;
	while (tu_now_ms() < end) {
		m = next_msg(100);
		late += m != NULL;
		free(m);
	}
	ck_assert_int_eq(late, 0);
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	m = wait_msg("WATCHDOG=1", NULL, 2000);
	free(m);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
}
END_TEST

START_TEST(test_without_notify_socket_nothing_is_sent)
{
	/* The same daemon, no NOTIFY_SOCKET: it runs and stops normally. */
	unsetenv("NOTIFY_SOCKET");
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst, NULL};
	pid = tu_spawn(argv, logpath);
	char *f = tu_path(dst, "app.conf");
	for (long long end = tu_now_ms() + tu_scale(5000); tu_now_ms() < end;) {
		struct stat st;
		if (stat(f, &st) == 0)
			break;
		tu_nap(5);
	}
	char *m = next_msg(300);
	ck_assert_ptr_null(m);
	ck_assert_msg(!maps_libsystemd(pid),
		      "libsystemd loaded without a service manager");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	free(f);
}
END_TEST

static Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("sd_notify");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ready_reload_stopping_sequence);
	tcase_add_test(tc, test_watchdog_pings_come_from_the_loop);
	tcase_add_test(tc, test_status_says_a_mapping_rescans);
	tcase_add_test(tc, test_a_file_name_starts_no_field);
	tcase_add_test(tc, test_a_cut_through_stray_bytes_keeps_them_escaped);
	tcase_add_test(tc, test_without_notify_socket_nothing_is_sent);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(notify_suite());
}
