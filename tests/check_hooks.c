/* Hooks and observability, driven from outside: check_command vetoes,
 * on_update and the reload signal after a publish, timeouts, coalescing,
 * and the metrics a scraper sees (curl), including what garbage, huge,
 * slow and hundreds of idle HTTP clients cannot do to the daemon, what
 * /healthz says of a publish that hangs (faultinject.so), and a metrics
 * file whose directory another user replaced by a link. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_fixture fx;
static char *tmp, *src, *dst, *logpath, *conf;
static pid_t pid;
static int port;

static void setup(void)
{
	tu_fixture_setup(&fx, 0);
	tmp = fx.tmp;
	src = fx.src;
	dst = fx.dst;
	logpath = fx.log;
	conf = fx.conf;
	tu_write(src, "app.conf", "v1\n", 0644);
	pid = 0;
	port = tu_free_port();
}

static void teardown(void)
{
	fx.pid = pid;
	tu_fixture_teardown(&fx);
}

static void write_conf(const char *daemon_keys, const char *sync_keys)
{
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nlog_level = debug\n%s\n"
				  "[sync:web]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n%s\n",
				  daemon_keys, src, dst, sync_keys),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	free(text);
}

/* Starts the daemon on a config made of `daemon_keys` and `sync_keys`,
 * with `env` (NAME=VALUE strings, NULL-ended; may be NULL) added to its
 * environment. */
static void start_env(const char *daemon_keys, const char *sync_keys,
		      const char *const *env)
{
	const char *argv[16];
	int n = 0;

	write_conf(daemon_keys, sync_keys);
	if (env) {
		argv[n++] = "env";
		while (*env && n < 12)
			argv[n++] = *env++;
	}
	argv[n++] = tu_bin();
	argv[n++] = "--config";
	argv[n++] = conf;
	argv[n] = NULL;
	pid = tu_spawn(argv, logpath);
}

static void start(const char *daemon_keys, const char *sync_keys)
{
	start_env(daemon_keys, sync_keys, NULL);
}

static void stop(void)
{
	tu_stop(&pid, 15000);
}

static void wait_file(const char *file, const char *text, int count, int ms)
{
	tu_wait_text(file, text, count, ms, logpath);
}

static char *target_file(const char *rel)
{
	char *p = tu_path(dst, rel);
	char *d = tu_read(p, NULL);
	free(p);
	return d;
}

static int target_says(void *arg)
{
	char *d = target_file("app.conf");
	int ok = d && strcmp(d, arg) == 0;
	free(d);
	return ok;
}

static void wait_target(const char *content)
{
	if (!tu_wait_for(target_says, (void *)content, 5000)) {
		char *log = tu_read(logpath, NULL);
		fprintf(stderr, "%s\n", log ? log : "");
		free(log);
		ck_abort_msg("target never said %s", content);
	}
}

/* GET through curl; returns the HTTP status, body in *body. */
static int curl_get(const char *path, char **body)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	const char *argv[] = {"curl", "-s", "-m", "10", "-o", "-", "-w",
			      "\n%{http_code}", url, NULL};
	char *out = NULL, *err = NULL;
	int rc = tu_run(argv, &out, &err, 15000);
	free(err);
	ck_assert_msg(rc == 0, "curl %s failed (%d)", url, rc);
	char *nl = strrchr(out, '\n');
	int code = atoi(nl + 1);
	*nl = '\0';
	*body = out;
	return code;
}

/* The value on the sample line that starts with `name`. */
static long long metric(const char *body, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = body; p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, name, n) == 0)
			return atoll(p + n);
	}
	ck_abort_msg("no %s in:\n%s", name, body);
	return -1;
}

/* Polls /metrics until the sample `name` has `value` (a rendering may be
 * up to a second old). */
static void wait_metric(const char *name, long long value)
{
	long long got = -1;
	for (long long end = tu_now_ms() + tu_scale(5000);
	     got != value && tu_now_ms() < end; tu_nap(50)) {
		char *body;
		ck_assert_int_eq(curl_get("/metrics", &body), 200);
		got = metric(body, name);
		free(body);
	}
	ck_assert_msg(got == value, "%s%lld, want %lld", name, got, value);
}

/* Polls /healthz until it answers `code`; returns the body. */
static char *wait_healthz(int code, int ms)
{
	char *body = NULL;
	int got = 0;
	for (long long end = tu_now_ms() + tu_scale(ms);; tu_nap(100)) {
		free(body);
		got = curl_get("/healthz", &body);
		if (got == code || tu_now_ms() >= end)
			break;
	}
	ck_assert_msg(got == code, "/healthz answered %d, want %d: %s", got,
		      code, body);
	return body;
}

static int have_curl(void)
{
	const char *argv[] = {"curl", "--version", NULL};
	return tu_run(argv, NULL, NULL, 5000) == 0;
}

/* An on_update that records its run N (its ATOMSYNC_ variables in
 * DIR/env.N, a copy of its changed-paths file in DIR/changed.N), then
 * blocks until DIR/go.N appears, and exits with the status written in
 * it: the test decides when a run ends and how, so what lands meanwhile
 * does not depend on timing. */
static const char blocking_hook[] =
	"#!/bin/sh\n"
	"d=$1\n"
	"n=$(( $(cat \"$d/runs\" 2>/dev/null || echo 0) + 1 ))\n"
	"echo $n > \"$d/runs\"\n"
	"if [ -n \"$ATOMSYNC_CHANGED_FILE\" ]; then\n"
	"  cp \"$ATOMSYNC_CHANGED_FILE\" \"$d/changed.$n\" || exit 9\n"
	"fi\n"
	"env | grep ^ATOMSYNC_ | sort > \"$d/env.tmp\"\n"
	"mv \"$d/env.tmp\" \"$d/env.$n\"\n"
	"while [ ! -s \"$d/go.$n\" ]; do sleep 0.01; done\n"
	"exit $(cat \"$d/go.$n\")\n";

static void start_blocking_hook(const char *more_keys)
{
	char *keys;
	tu_write(tmp, "hook.sh", blocking_hook, 0755);
	ck_assert_int_ge(asprintf(&keys, "on_update = %s/hook.sh %s\n%s", tmp,
				  tmp, more_keys),
			 0);
	start("", keys);
	free(keys);
}

/* Waits for run n of the blocking hook; its variables (malloc'ed). */
static char *hook_run_env(int n)
{
	char name[32];
	snprintf(name, sizeof(name), "env.%d", n);
	char *f = tu_path(tmp, name);
	wait_file(f, "ATOMSYNC_NAME=web\n", 1, 10000);
	char *env = tu_read(f, NULL);
	free(f);
	return env;
}

/* Ends run n of the blocking hook with `status`. */
static void hook_run_end(int n, int status)
{
	char name[32], st[16];
	snprintf(name, sizeof(name), "go.%d", n);
	snprintf(st, sizeof(st), "%d\n", status);
	tu_write(tmp, name, st, 0644);
}

/* Puts `data` at src/rel in one rename, so that it is one change. */
static void put_source(const char *rel, const char *data)
{
	tu_write(tmp, "put.tmp", data, 0644);
	char *from = tu_path(tmp, "put.tmp"), *to = tu_path(src, rel);
	ck_assert_int_eq(rename(from, to), 0);
	free(from);
	free(to);
}

static int target_has(void *arg)
{
	char *d = target_file(arg);
	free(d);
	return d != NULL;
}

static void wait_target_has(const char *rel)
{
	if (!tu_wait_for(target_has, (void *)rel, 5000))
		ck_abort_msg("target never had %s", rel);
}

/* A publish that lands while on_update runs is what the next run is
 * told about, even though the run under way ends after it. */
START_TEST(test_on_update_gets_the_documented_environment)
{
	start_blocking_hook("");
	char *env = hook_run_env(1);
	char *gen0 = tu_live(dst), want[512];
	snprintf(want, sizeof(want), "ATOMSYNC_GENERATION=%s\n", gen0);
	ck_assert_msg(strstr(env, want), "%s", env);
	ck_assert_msg(strstr(env, "ATOMSYNC_CHANGED=1\n"), "%s", env);
	snprintf(want, sizeof(want), "ATOMSYNC_TARGET=%s\n", dst);
	ck_assert_msg(strstr(env, want), "%s", env);
	free(env);
	/* Published while run 1 still runs. */
	put_source("new", "n\n");
	wait_target_has("new");
	char *gen1 = tu_live(dst);
	ck_assert_str_ne(gen0, gen1);
	hook_run_end(1, 0);
	env = hook_run_env(2);
	snprintf(want, sizeof(want), "ATOMSYNC_GENERATION=%s\n", gen1);
	ck_assert_msg(strstr(env, want), "%s", env);
	ck_assert_msg(strstr(env, "ATOMSYNC_CHANGED=1\n"), "%s", env);
	hook_run_end(2, 0);
	stop();
	free(env);
	free(gen0);
	free(gen1);
}
END_TEST

/* The copy of run n's changed-paths file, NULs shown as '|'. */
static char *hook_run_changed(int n)
{
	char name[32];
	size_t len = 0;
	snprintf(name, sizeof(name), "changed.%d", n);
	char *f = tu_path(tmp, name);
	char *d = tu_read(f, &len);
	ck_assert_msg(d != NULL, "no %s", f);
	for (size_t i = 0; i < len; i++)
		if (d[i] == '\0')
			d[i] = '|';
	free(f);
	return d;
}

static int target_lacks(void *arg)
{
	char *d = target_file(arg);
	free(d);
	return d == NULL;
}

/* Every publish since the last good run is in the file a run is given,
 * each path once, and the count says how many; a run that fails gives
 * its paths back for its retry. */
START_TEST(test_on_update_is_told_every_path_changed_since_its_last_good_run)
{
	tu_write(src, "old", "o\n", 0644);
	start_blocking_hook("");
	char *env = hook_run_env(1), *ch = hook_run_changed(1);
	ck_assert_str_eq(ch, "app.conf|old|");
	ck_assert_msg(strstr(env, "ATOMSYNC_CHANGED=2\n") &&
			      strstr(env, "ATOMSYNC_CHANGED_FILE=/dev/fd/3\n") &&
			      !strstr(env, "INCOMPLETE"),
		      "%s", env);
	free(env);
	free(ch);
	/* Two publishes while run 1 blocks. */
	put_source("app.conf", "v2\n");
	put_source("a", "a\n");
	wait_target("v2\n");
	wait_target_has("a");
	char *d = tu_path(tmp, "d.tmp"), *to = tu_path(src, "d");
	tu_write(d, "b", "b\n", 0644);
	ck_assert_int_eq(rename(d, to), 0);
	free(d);
	free(to);
	char *old = tu_path(src, "old");
	ck_assert_int_eq(unlink(old), 0);
	free(old);
	put_source("app.conf", "v3\n");
	wait_target("v3\n");
	wait_target_has("d/b");
	ck_assert(tu_wait_for(target_lacks, "old", 5000));
	hook_run_end(1, 0);
	env = hook_run_env(2);
	ch = hook_run_changed(2);
	ck_assert_str_eq(ch, "a|app.conf|d|d/b|old|");
	ck_assert_msg(strstr(env, "ATOMSYNC_CHANGED=5\n"), "%s", env);
	free(env);
	free(ch);
	/* A publish while run 2 blocks; then run 2 fails: its retry is told
	 * about both. */
	put_source("c", "c\n");
	wait_target_has("c");
	hook_run_end(2, 1);
	env = hook_run_env(3);
	ch = hook_run_changed(3);
	ck_assert_str_eq(ch, "a|app.conf|c|d|d/b|old|");
	ck_assert_msg(strstr(env, "ATOMSYNC_CHANGED=6\n"), "%s", env);
	hook_run_end(3, 0);
	wait_file(logpath, "after-publish actions work again", 1, 5000);
	stop();
	free(env);
	free(ch);
}
END_TEST

/* The example of the manual: act only when app.conf changed. */
START_TEST(test_on_update_can_act_on_one_file_only)
{
	char *keys, *runs = tu_path(tmp, "reloads");
	ck_assert_int_ge(asprintf(&keys,
				  "on_update = sh -c 'if [ -n "
				  "\"$ATOMSYNC_CHANGED_INCOMPLETE\" ] || grep -qzxF "
				  "app.conf \"$ATOMSYNC_CHANGED_FILE\"; then echo "
				  "\"$ATOMSYNC_GENERATION\" >> \"%s\"; fi'",
				  runs),
			 0);
	start("", keys);
	free(keys);
	wait_file(runs, "\n", 1, 5000);
	put_source("other", "x\n");
	wait_target_has("other");
	wait_file(logpath, "on_update done", 2, 5000);
	put_source("app.conf", "v2\n");
	wait_target("v2\n");
	wait_file(runs, "\n", 2, 5000);
	wait_file(logpath, "on_update done", 3, 5000);
	stop();
	/* The start-up publish and the change of app.conf. */
	ck_assert_int_eq(tu_file_count(runs, "\n"), 2);
	free(runs);
}
END_TEST

/* Whether the list of descriptors in `file` (one a line) names `fd`. */
static bool lists_fd(const char *file, const char *fd)
{
	char *text = tu_read(file, NULL), *line;
	bool found = false;

	ck_assert_ptr_nonnull(text);
	for (char *p = strtok_r(text, "\n", &line); p && !found;
	     p = strtok_r(NULL, "\n", &line))
		found = strcmp(p, fd) == 0;
	free(text);
	return found;
}

/* Descriptors the daemon's parent left open (7 and 9 here) do not reach
 * a hook: it has its standard streams, and on_update descriptor 3. */
START_TEST(test_hooks_get_no_descriptor_the_daemon_inherited)
{
	char *keys, *checkf = tu_path(tmp, "check.fds"), *updf = tu_path(tmp, "update.fds");
	ck_assert_int_ge(asprintf(&keys,
				  "check_command = sh -c 'ls /proc/$$/fd > "
				  "\"%s.tmp\" && mv \"%s.tmp\" \"%s\"'\n"
				  "on_update = sh -c 'ls /proc/$$/fd > "
				  "\"%s.tmp\" && mv \"%s.tmp\" \"%s\"'",
				  checkf, checkf, checkf, updf, updf, updf),
			 0);
	write_conf("", keys);
	free(keys);
	const char *argv[] = {"sh", "-c",
			      "exec 7<\"$1\" 9<\"$1\"; exec \"$0\" --config \"$1\"",
			      tu_bin(), conf, NULL};
	pid = tu_spawn(argv, logpath);
	wait_file(updf, "3\n", 1, 5000);
	stop();
	ck_assert(lists_fd(checkf, "2") && lists_fd(updf, "3"));
	ck_assert(!lists_fd(checkf, "3"));
	for (int i = 0; i < 2; i++) {
		const char *f = i ? updf : checkf;
		ck_assert_msg(!lists_fd(f, "7") && !lists_fd(f, "9"), "%s: %s", f,
			      tu_read(f, NULL));
	}
	free(checkf);
	free(updf);
}
END_TEST

/* Nothing of the daemon's environment but PATH and LANG reaches a hook
 * unless hook_env names it; hooks start in /. */
START_TEST(test_hooks_get_a_clean_environment)
{
	setenv("DB_PASSWORD", "hunter2", 1);
	setenv("KEEP_ME", "kept", 1);
	setenv("LANG", "C.UTF-8", 1);
	unsetenv("NOT_SET_ANYWHERE");
	char *keys, *checkf = tu_path(tmp, "check.env"), *envf = tu_path(tmp, "env");
	ck_assert_int_ge(asprintf(&keys,
				  "hook_env = KEEP_ME NOT_SET_ANYWHERE "
				  "'GREETING=hello world'\n"
				  "check_command = sh -c 'env > \"%s\"'\n"
				  "on_update = sh -c '{ env; echo cwd=$(pwd); } > "
				  "\"%s.tmp\" && mv \"%s.tmp\" \"%s\"'",
				  checkf, envf, envf, envf),
			 0);
	start("", keys);
	free(keys);
	wait_file(envf, "ATOMSYNC_NAME=web\n", 1, 5000);
	stop();
	unsetenv("DB_PASSWORD");
	unsetenv("KEEP_ME");
	char *files[] = {checkf, envf};
	for (int i = 0; i < 2; i++) {
		char *env = tu_read(files[i], NULL);
		ck_assert_ptr_nonnull(env);
		ck_assert_msg(!strstr(env, "hunter2") && !strstr(env, "NOT_SET"),
			      "%s", env);
		ck_assert_msg(strstr(env, "KEEP_ME=kept\n") &&
				      strstr(env, "GREETING=hello world\n") &&
				      strstr(env, "LANG=C.UTF-8\n") &&
				      strstr(env, "\nPATH="),
			      "%s", env);
		free(env);
	}
	ck_assert_int_eq(tu_file_count(envf, "\ncwd=/\n"), 1);
	free(checkf);
	free(envf);
}
END_TEST

/* A command with shell syntax but no shell passes the check with a
 * warning that names where and what, is warned about at start and on
 * reload; when it cannot start, the log names the program. */
START_TEST(test_shell_syntax_is_warned_about_and_a_missing_program_named)
{
	const char *keys = "on_update = /no/such/program --now > /tmp/out";
	char *text;
	ck_assert_int_ge(asprintf(&text, "[sync:web]\nsource = %s\ntarget = %s\n%s\n",
				  src, dst, keys),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	free(text);
	const char *argv[] = {tu_bin(), "--check-config", "--config", conf, NULL};
	char *out = NULL, *err = NULL;
	ck_assert_int_eq(tu_run(argv, &out, &err, 10000), 0);
	ck_assert_msg(strstr(out, ": OK, 1 mapping"), "%s", out);
	char want[1024];
	snprintf(want, sizeof(want),
		 "warning: %s:4: [sync:web]: on_update: '>' is shell syntax, but "
		 "the command runs without a shell (write sh -c '...' for one)\n"
		 "warning: %s:4: [sync:web]: on_update: /no/such/program: no "
		 "such program; the command cannot start\n",
		 conf, conf);
	ck_assert_msg(strcmp(err, want) == 0, "%s", err);
	free(out);
	free(err);

	start("", keys);
	wait_file(logpath, "on_update /no/such/program could not start: No such "
			   "file or directory; retrying",
		  1, 5000);
	ck_assert_int_eq(tu_file_count(logpath, "on_update: '>' is shell syntax"), 1);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_file(logpath, "reload done", 1, 5000);
	/* One line: a reload, on the event loop, looks for no program. */
	ck_assert_int_eq(tu_file_count(logpath, "reload: "), 1);
	ck_assert_int_eq(tu_file_count(logpath, "on_update: '>' is shell syntax"), 2);
	stop();
}
END_TEST

/* Whether none of the generations listed in the file `arg` is left. */
static int vetoed_gone(void *arg)
{
	size_t len = 0;
	char *text = tu_read(arg, &len), *save = NULL;
	int gone = text != NULL;
	for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l;
	     l = strtok_r(NULL, "\n", &save)) {
		struct stat st;
		gone &= lstat(l, &st) < 0 && errno == ENOENT;
	}
	free(text);
	return gone;
}

/* The vetoes listed in `arg` are gone, and no other generation is open
 * to readers than the live one (a second veto, of the unlink and the
 * write seen apart, may be under way). */
static int veto_settled(void *arg)
{
	return vetoed_gone(arg) && tu_generations_of_mode(dst, 0755, NULL) == 1 &&
	       tu_generations(dst) <= 2;
}

START_TEST(test_check_command_veto_keeps_the_old_generation)
{
	char *vetoed = tu_path(tmp, "vetoed"), *keys = NULL;
	tu_write(src, "ok", "", 0644);
	ck_assert_int_ge(asprintf(&keys, "check_command = sh -c 'test -f "
				  "\"$ATOMSYNC_GENERATION_DIR/ok\" || { echo "
				  "\"$ATOMSYNC_GENERATION_DIR\" >>%s; echo no ok "
				  "file in the new version >&2; exit 3; }'",
				  vetoed),
			 0);
	start("", keys);
	free(keys);
	wait_target("v1\n");
	char *gen = tu_live(dst);
	char *ok = tu_path(src, "ok");
	ck_assert_int_eq(unlink(ok), 0);
	tu_write(src, "app.conf", "v2 (broken)\n", 0644);
	/* The unlink and the write may be seen apart: one veto or two. */
	wait_file(logpath, "exit status 3: no ok file in the new version", 1, 5000);
	char *now = tu_live(dst);
	ck_assert_str_eq(gen, now);
	char *d = target_file("app.conf");
	ck_assert_str_eq(d, "v1\n");
	free(d);
	/* Nothing of the vetoed generation is left behind (it is removed on
	 * the thread pool, right after the veto): the live one stays, and
	 * at most a private standby beside it. */
	ck_assert_msg(tu_wait_for(veto_settled, vetoed, 3000),
		      "a vetoed generation is left: %d generations, %d of "
		      "them open", tu_generations(dst),
		      tu_generations_of_mode(dst, 0755, NULL));
	free(vetoed);
	/* The next change tries again, and passes. */
	tu_write(src, "ok", "", 0644);
	tu_write(src, "app.conf", "v3\n", 0644);
	wait_target("v3\n");
	stop();
	free(gen);
	free(now);
	free(ok);
}
END_TEST

/* A change vetoed is published with the next generation that passes,
 * though that one's own change is in another directory: the read after a
 * veto starts from the source, not from what the target holds. */
START_TEST(test_change_vetoed_is_published_with_the_next_that_passes)
{
	tu_write(src, "ok", "", 0644);
	tu_write_deep(src, "a/x", "a1\n");
	start("", "check_command = sh -c 'test -f \"$ATOMSYNC_GENERATION_DIR/ok\" "
		  "|| { echo no ok file in the new version >&2; exit 3; }'");
	wait_target("v1\n");
	char *ok = tu_path(src, "ok");
	ck_assert_int_eq(unlink(ok), 0);
	wait_file(logpath, "exit status 3: no ok file", 1, 5000);
	/* Read again only in a/, and vetoed there too. */
	tu_write_deep(src, "a/x", "a2\n");
	wait_file(logpath, "exit status 3: no ok file", 2, 5000);
	/* Only the top directory changes now. */
	tu_write(src, "ok", "", 0644);
	tu_converge(src, dst, 5000, logpath);
	char *d = target_file("a/x");
	ck_assert_str_eq(d, "a2\n");
	stop();
	free(d);
	free(ok);
}
END_TEST

static int process_gone(void *arg)
{
	pid_t p = *(pid_t *)arg;
	return kill(p, 0) < 0 && errno == ESRCH;
}

/* A check that outlives its timeout vetoes, even when it then exits 0 on
 * the SIGTERM that ends it. */
START_TEST(test_check_that_times_out_vetoes_even_if_it_exits_0)
{
	start("", "hook_timeout_s = 1\n"
		  "check_command = sh -c 'test -f \"$ATOMSYNC_GENERATION_DIR/slow\" "
		  "|| exit 0; trap \"exit 0\" TERM; sleep 30 & wait'");
	wait_target("v1\n");
	char *gen = tu_live(dst);
	tu_write(src, "slow", "", 0644);
	wait_file(logpath, "timed out (it then exited with status 0)", 1, 8000);
	char *now = tu_live(dst);
	ck_assert_str_eq(gen, now);
	char *d = target_file("slow");
	ck_assert_ptr_null(d);
	stop();
	free(gen);
	free(now);
}
END_TEST

START_TEST(test_hook_ignoring_sigterm_is_killed_at_the_timeout)
{
	char *keys;
	ck_assert_int_ge(asprintf(&keys,
				  "hook_timeout_s = 1\n"
				  "on_update = sh -c 'trap \"\" TERM; echo $$ > "
				  "\"%s/hook.pid\"; sleep 1000'",
				  tmp),
			 0);
	start("", keys);
	free(keys);
	char *pidf = tu_path(tmp, "hook.pid");
	wait_file(pidf, "\n", 1, 5000);
	char *d = tu_read(pidf, NULL);
	pid_t hp = (pid_t)atoi(d);
	free(d);
	ck_assert_int_gt(hp, 1);
	long long t0 = tu_now_ms();
	ck_assert_msg(tu_wait_for(process_gone, &hp, 6000),
		      "hook %d survived its timeout", (int)hp);
	/* SIGTERM at 1 s is ignored; SIGKILL comes after the grace period. */
	ck_assert_int_ge(tu_now_ms() - t0, 1000);
	wait_file(logpath, "timed out and was killed", 1, 2000);
	stop();
	free(pidf);
}
END_TEST

/* The group is killed, not just its leader: a child that ignores SIGTERM
 * dies once the grace period after the timeout is over, even though the
 * leader itself exited at the SIGTERM. */
START_TEST(test_children_of_a_timed_out_hook_are_killed_too)
{
	char *script, *keys;
	ck_assert_int_ge(asprintf(&script,
				  "#!/bin/sh\n"
				  "sh -c 'trap \"\" TERM; echo $$ > \"$1.tmp\"; "
				  "mv \"$1.tmp\" \"$1\"; exec sleep 1000' x "
				  "\"%s/child.pid\" &\n"
				  "wait\n",
				  tmp),
			 0);
	tu_write(tmp, "hook.sh", script, 0755);
	free(script);
	ck_assert_int_ge(asprintf(&keys, "hook_timeout_s = 1\non_update = %s/hook.sh",
				  tmp),
			 0);
	start("", keys);
	free(keys);
	char *pidf = tu_path(tmp, "child.pid");
	wait_file(pidf, "\n", 1, 5000);
	char *d = tu_read(pidf, NULL);
	pid_t cp = (pid_t)atoi(d);
	free(d);
	ck_assert_int_gt(cp, 1);
	ck_assert_msg(tu_wait_for(process_gone, &cp, tu_scale(8000)),
		      "hook child %d survived the timeout", (int)cp);
	wait_file(logpath, "timed out and was killed", 1, 2000);
	stop();
	free(pidf);
}
END_TEST

/* SIGTERM during check_command: the publish under way still finishes,
 * and on_update still runs for it before the daemon exits. */
START_TEST(test_stop_finishes_the_publish_under_way_and_its_hooks)
{
	char *keys, *checks = tu_path(tmp, "checks"), *runs = tu_path(tmp, "runs");
	ck_assert_int_ge(asprintf(&keys,
				  "check_command = sh -c 'echo c >> \"%s\"; sleep 1'\n"
				  "on_update = sh -c 'cat \"$ATOMSYNC_TARGET/app.conf\" "
				  ">> \"%s\"'",
				  checks, runs),
			 0);
	start("", keys);
	free(keys);
	wait_file(runs, "v1", 1, 8000);
	/* Renamed in whole from outside the source, so that the check under
	 * way can only be v2's: no empty or half-written state is seen. */
	tu_write(tmp, "v2.tmp", "v2\n", 0644);
	char *from = tu_path(tmp, "v2.tmp"), *to = tu_path(src, "app.conf");
	ck_assert_int_eq(rename(from, to), 0);
	free(from);
	free(to);
	wait_file(checks, "c", 2, 5000);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	int st = tu_wait_exit(pid, 15000);
	pid = 0;
	ck_assert_msg(st == 0, "daemon exit status %d", st);
	char *d = target_file("app.conf");
	ck_assert_str_eq(d, "v2\n");
	free(d);
	ck_assert_int_eq(tu_file_count(runs, "v2"), 1);
	/* The live generation, and the one it replaced, kept to be
	 * recycled once its grace period is over. */
	ck_assert_int_eq(tu_generations(dst), 2);
	free(checks);
	free(runs);
}
END_TEST

START_TEST(test_burst_during_a_running_hook_gives_exactly_one_more_run)
{
	char *keys, *runs = tu_path(tmp, "runs");
	ck_assert_int_ge(asprintf(&keys,
				  "on_update = sh -c 'echo run >> \"%s\"; sleep 1.5'",
				  runs),
			 0);
	start("", keys);
	free(keys);
	wait_file(runs, "run", 1, 5000); /* the start-up publish */
	for (int i = 0; i < 10; i++) {
		char v[16];
		snprintf(v, sizeof(v), "burst %d\n", i);
		tu_write(src, "app.conf", v, 0644);
		wait_target(v);
	}
	wait_file(runs, "run", 2, 5000);
	/* When the second run ends, a third one owed would start at once,
	 * and a stop lets a running or owed run finish: none must come. */
	wait_file(logpath, "on_update done", 2, 10000);
	stop();
	ck_assert_int_eq(tu_file_count(runs, "run"), 2);
	free(runs);
}
END_TEST

START_TEST(test_reload_signal_reaches_the_process_in_the_pidfile)
{
	char *sig = tu_path(tmp, "sig.log"), *pidf = tu_path(tmp, "app.pid");
	char *script;
	ck_assert_int_ge(asprintf(&script,
				  "trap 'echo hup >> \"%s\"' HUP; echo $$ > \"%s\"; "
				  "while :; do sleep 0.05; done",
				  sig, pidf),
			 0);
	const char *app[] = {"sh", "-c", script, NULL};
	char *applog = tu_path(tmp, "app.log");
	pid_t ap = tu_spawn(app, applog);
	wait_file(pidf, "\n", 1, 5000);
	char *keys;
	ck_assert_int_ge(asprintf(&keys, "reload_signal = HUP\nreload_pidfile = %s",
				  pidf),
			 0);
	start("", keys);
	free(keys);
	wait_file(sig, "hup", 1, 5000);
	tu_write(src, "app.conf", "v2\n", 0644);
	wait_file(sig, "hup", 2, 5000);
	stop();
	tu_kill(ap);
	free(script);
	free(sig);
	free(pidf);
	free(applog);
}
END_TEST

/* ---- reload_pidfile against other users (real uids, as root) ---- */

#define PID_OWNER 2001u

static void reload_setup(void)
{
	ck_assert_msg(tu_can_setuid(),
		      "these tests act as other users: run them as root");
	setup();
	/* Other users must be able to reach what they are given. */
	ck_assert_int_eq(chmod(tmp, 0755), 0);
}

/* Whether our child p still runs (not even a zombie). */
static int still_runs(pid_t p)
{
	int st;
	return waitpid(p, &st, WNOHANG) == 0;
}

/* A pidfile that another user wrote names a process of root's: the
 * daemon refuses it, and the process lives on. */
START_TEST(test_pidfile_of_another_user_is_refused)
{
	const char *sl[] = {"sleep", "1000", NULL};
	char *sleeplog = tu_path(tmp, "sleep.log");
	pid_t victim = tu_spawn(sl, sleeplog);
	char *dir = tu_path(tmp, "u"), *cmd, *keys;
	tu_mkdirs(dir, 0755);
	ck_assert_int_eq(chown(dir, PID_OWNER, PID_OWNER), 0);
	ck_assert_int_ge(asprintf(&cmd, "echo %d > %s/app.pid", (int)victim, dir),
			 0);
	ck_assert_int_eq(tu_sh_as(PID_OWNER, cmd), 0);
	ck_assert_int_ge(asprintf(&keys, "reload_signal = TERM\n"
					 "reload_pidfile = %s/app.pid",
				  dir),
			 0);
	start("", keys);
	wait_file(logpath, "u is owned by uid 2001, who can change what the path "
			    "leads to", 1, 5000);
	tu_write(src, "app.conf", "v2\n", 0644);
	wait_target("v2\n");
	ck_assert_msg(still_runs(victim), "process %d was signalled",
		      (int)victim);
	stop();
	ck_assert(still_runs(victim));
	tu_kill(victim);
	free(keys);
	free(cmd);
	free(dir);
	free(sleeplog);
}
END_TEST

/* A pidfile older than the process it names is stale: its pid was given
 * again, to a process the daemon must not signal. */
START_TEST(test_stale_pidfile_is_not_signalled)
{
	const char *sl[] = {"sleep", "1000", NULL};
	char *sleeplog = tu_path(tmp, "sleep.log");
	pid_t victim = tu_spawn(sl, sleeplog);
	char pidtext[32], *keys, *pidf = tu_path(tmp, "app.pid");
	snprintf(pidtext, sizeof(pidtext), "%d\n", (int)victim);
	tu_write(tmp, "app.pid", pidtext, 0644);
	/* Written a minute before that process started. */
	struct timespec ts[2];
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= 60;
	ts[1] = ts[0];
	ck_assert_int_eq(utimensat(AT_FDCWD, pidf, ts, 0), 0);
	ck_assert_int_ge(asprintf(&keys, "reload_signal = TERM\nreload_pidfile = %s",
				  pidf),
			 0);
	start("", keys);
	wait_file(logpath, "app.pid: process", 1, 5000);
	char want[128];
	snprintf(want, sizeof(want),
		 "app.pid: process %d started after the file was written",
		 (int)victim);
	ck_assert_int_eq(tu_file_count(logpath, want), 1);
	ck_assert_msg(still_runs(victim), "process %d was signalled",
		      (int)victim);
	/* Written again by the process that has the pid: it works. */
	tu_write(tmp, "app.pid", pidtext, 0644);
	tu_write(src, "app.conf", "v2\n", 0644);
	wait_file(logpath, "after-publish actions work again", 1, 10000);
	ck_assert_int_eq(tu_wait_exit(victim, 5000), 128 + SIGTERM);
	stop();
	free(keys);
	free(pidf);
	free(sleeplog);
}
END_TEST

/* reload_pid is held from the mapping's start: when its process is gone
 * and a new one has its pid, the new one is not signalled.  In a pid
 * namespace of its own, where the test decides which pid comes next. */
START_TEST(test_reload_pid_is_never_a_later_process_with_that_pid)
{
	const char *probe[] = {"unshare", "--pid", "--fork", "--mount-proc",
			       "sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid",
			       NULL};
	ck_assert_msg(tu_run(probe, NULL, NULL, 5000) == 0,
		      "this test needs pid namespaces (unshare --pid, as root)");
	/* As pid 1: the first process (a), then the daemon, which sends a
	 * TERM at its start-up publish; then b gets a's pid. */
	char *script;
	ck_assert_int_ge(asprintf(&script,
		"set -e; t='%s'\n"
		"sleep 1000 & a=$!\n"
		"printf '[sync:web]\\nsource = %%s\\ntarget = %%s\\n"
		"debounce_ms = 0\\nreload_signal = TERM\\nreload_pid = %%s\\n' "
		"'%s' '%s' $a > \"$t/pid.conf\"\n"
		"'%s' --config \"$t/pid.conf\" --log-level debug & d=$!\n"
		"wait $a || true\n"
		"echo $((a - 1)) > /proc/sys/kernel/ns_last_pid\n"
		"sleep 1000 & b=$!\n"
		"echo \"$a $b\" > \"$t/pids.tmp\"; mv \"$t/pids.tmp\" \"$t/pids\"\n"
		"while [ ! -e \"$t/stop\" ]; do sleep 0.01; done\n"
		"kill -TERM $d; wait $d\n"
		"if kill -0 $b; then echo alive; else echo gone; fi > \"$t/b.tmp\"\n"
		"kill $b; mv \"$t/b.tmp\" \"$t/b\"\n",
		tmp, src, dst, tu_bin()),
		0);
	const char *argv[] = {"unshare", "--pid", "--fork", "--mount-proc",
			      "sh", "-c", script, NULL};
	pid = tu_spawn(argv, logpath);
	char *pids = tu_path(tmp, "pids"), *bf = tu_path(tmp, "b");
	wait_file(pids, "\n", 1, 10000);
	char *d = tu_read(pids, NULL);
	int a = 0, b = 0;
	ck_assert_int_eq(sscanf(d, "%d %d", &a, &b), 2);
	free(d);
	ck_assert_int_eq(a, b);
	/* A publish: the signal finds no process. */
	tu_write(src, "app.conf", "v2\n", 0644);
	char want[64];
	snprintf(want, sizeof(want), "reload_pid %d: signal 15: No such process",
		 a);
	wait_file(logpath, want, 1, 10000);
	tu_write(tmp, "stop", "", 0644);
	wait_file(bf, "\n", 1, 20000);
	ck_assert_int_eq(tu_file_count(bf, "alive"), 1);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	free(pids);
	free(bf);
	free(script);
}
END_TEST

/* Reading a FIFO would block until someone writes to it: every mapping
 * would stall.  It is refused at once, and the others go on. */
START_TEST(test_fifo_pidfile_does_not_stall_the_daemon)
{
	char *fifo = tu_path(tmp, "app.pid"), *keys;
	char *src2 = tu_path(tmp, "src2"), *dst2 = tu_path(tmp, "dst2");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	tu_write(src2, "b", "b1\n", 0644);
	ck_assert_int_ge(asprintf(&keys, "reload_pidfile = %s\n"
					 "[sync:other]\nsource = %s\ntarget = %s\n"
					 "debounce_ms = 0",
				  fifo, src2, dst2),
			 0);
	start("", keys);
	wait_file(logpath, "app.pid: not a regular file", 1, 5000);
	/* Once more, after a publish of its own mapping (the same failure
	 * is not logged again). */
	tu_write(src, "app.conf", "v2\n", 0644);
	wait_target("v2\n");
	tu_write(src2, "b", "b2\n", 0644);
	char *b = tu_path(dst2, "b");
	struct tu_needle n = {b, "b2\n", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 5000),
		      "the other mapping stalled");
	stop();
	free(b);
	free(keys);
	free(fifo);
	free(src2);
	free(dst2);
}
END_TEST

START_TEST(test_a_failing_hook_is_retried_and_counted)
{
	char *flag = tu_path(tmp, "hook-may-pass");
	char *keys;
	ck_assert_int_ge(asprintf(&keys,
				  "on_update = sh -c 'test -f \"%s\" || { echo not yet "
				  ">&2; exit 1; }'",
				  flag),
			 0);
	start("", keys);
	free(keys);
	wait_file(logpath, "on_update exit status 1: not yet; retrying", 1, 5000);
	tu_write(tmp, "hook-may-pass", "", 0644);
	wait_file(logpath, "after-publish actions work again", 1, 10000);
	/* The failure was logged once, not once per retry. */
	ck_assert_int_eq(tu_file_count(logpath, "not yet; retrying"), 1);
	stop();
	free(flag);
}
END_TEST

START_TEST(test_metrics_match_what_happened)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk, *mfile = tu_path(tmp, "metrics.prom");
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d\n"
				       "metrics_file = %s",
				  port, mfile),
			 0);
	tu_write(src, "ok", "", 0644);
	start(dk, "check_command = sh -c 'test -f \"$ATOMSYNC_GENERATION_DIR/ok\"'");
	free(dk);
	wait_target("v1\n");
	wait_file(logpath, "serving /metrics", 1, 5000);
	for (int i = 2; i <= 4; i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%d\n", i);
		tu_write(src, "app.conf", v, 0644);
		wait_target(v);
	}
	/* One event, one veto. */
	char *ok = tu_path(src, "ok");
	unlink(ok);
	wait_file(logpath, "check_command vetoed", 1, 5000);

	/* A write may reach the daemon as one event or two, so the log says
	 * what happened; once it has settled, the metrics must agree. */
	int published = -1, vetoed = -1, stable = 0;
	for (long long end = tu_now_ms() + tu_scale(5000);
	     stable < 3 && tu_now_ms() < end; tu_nap(100)) {
		int p2 = tu_file_count(logpath, "\"web\": published ");
		int v2 = tu_file_count(logpath, "check_command vetoed");
		stable = p2 == published && v2 == vetoed ? stable + 1 : 0;
		published = p2;
		vetoed = v2;
	}
	ck_assert_int_ge(published, 4);
	ck_assert_int_ge(vetoed, 1);
	char *body;
	ck_assert_int_eq(curl_get("/metrics", &body), 200);
	ck_assert_int_eq(metric(body, "atomsync_publishes_total{sync=\"web\"} "),
			 published);
	ck_assert_int_eq(metric(body, "atomsync_vetoes_total{sync=\"web\"} "), vetoed);
	ck_assert_int_eq(metric(body, "atomsync_publish_errors_total{sync=\"web\"} "),
			 0);
	ck_assert_int_eq(metric(body, "atomsync_live_files{sync=\"web\"} "), 2);
	ck_assert_int_eq(metric(body, "atomsync_live_bytes{sync=\"web\"} "), 3);
	ck_assert_int_eq(metric(body, "atomsync_publish_duration_seconds_count"
				      "{sync=\"web\"} "),
			 published);
	ck_assert_int_eq(metric(body, "atomsync_publish_duration_seconds_bucket"
				      "{sync=\"web\",le=\"+Inf\"} "),
			 published);
	ck_assert_int_eq(metric(body, "atomsync_watched_directories{sync=\"web\"} "),
			 1);
	long long last = metric(body, "atomsync_last_publish_timestamp_seconds"
				      "{sync=\"web\"} ");
	ck_assert_int_ge(last, (long long)time(NULL) - 60);
	ck_assert_msg(strstr(body, "# TYPE atomsync_publishes_total counter"), "%s",
		      body);
	ck_assert_msg(strstr(body, "atomsync_build_info{version=\""), "%s", body);
	free(body);
	/* The textfile is there and whole. */
	char vline[80];
	snprintf(vline, sizeof(vline), "atomsync_vetoes_total{sync=\"web\"} %d\n",
		 vetoed);
	wait_file(mfile, vline, 1, 5000);
	/* Reloads count. */
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_file(logpath, "reload done", 1, 5000);
	wait_metric("atomsync_config_reloads_total ", 1);
	stop();
	free(ok);
	free(mfile);
}
END_TEST

/* How /healthz starts for a mapping that fails. */
static const char failing[] = "unhealthy: sync \"web\" failing for ";

START_TEST(test_healthz_reports_a_stalled_mapping)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk;
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d\n"
				       "unhealthy_after_s = 1",
				  port),
			 0);
	free(fx.dst);
	dst = fx.dst = tu_path(tmp, "missing/parent/dst");
	start(dk, "");
	free(dk);
	wait_file(logpath, "serving /metrics", 1, 5000);
	char *body = wait_healthz(503, 10000);
	/* The mapping and the kind of problem; the path is in the log only. */
	ck_assert_msg(strncmp(body, failing, strlen(failing)) == 0 &&
			      !strstr(body, tmp) && !strstr(body, "parent"),
		      "%s", body);
	free(body);
	wait_file(logpath, "missing/parent", 1, 5000);
	/* Fixed: healthy again. */
	char *parent = tu_path(tmp, "missing/parent");
	tu_mkdirs(parent, 0755);
	free(wait_healthz(200, 70000));
	stop();
	free(parent);
}
END_TEST

START_TEST(test_healthz_never_names_the_source)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk;
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d\n"
				       "unhealthy_after_s = 1",
				  port),
			 0);
	free(fx.src);
	src = fx.src = tu_path(tmp, "private-x7/source");
	start(dk, "");
	free(dk);
	wait_file(logpath, "private-x7/source", 1, 5000);
	char *body = wait_healthz(503, 10000);
	ck_assert_msg(strncmp(body, failing, strlen(failing)) == 0 &&
			      !strstr(body, "private-x7") && !strstr(body, tmp),
		      "%s", body);
	free(body);
	stop();
}
END_TEST

static int connect_local(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	for (int i = 0; i < 200; i++) {
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		tu_nap(20);
	}
	ck_abort_msg("cannot connect to port %d", port);
	return -1;
}

/* Sends `req` and returns what comes back before the server closes or
 * goes quiet. */
static char *exchange(const char *req, size_t len)
{
	int fd = connect_local();
	size_t off = 0;
	while (off < len) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the server may hang up on a huge request */
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	return tu_read_reply(fd);
}

START_TEST(test_garbage_huge_and_slow_requests_do_no_harm)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk;
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d", port), 0);
	start(dk, "");
	free(dk);
	wait_target("v1\n");
	wait_file(logpath, "serving /metrics", 1, 5000);

	/* Slow clients hold connections open without finishing a request. */
	int slow[8];
	for (int i = 0; i < 8; i++) {
		slow[i] = connect_local();
		send(slow[i], "GET /metr", 9, MSG_NOSIGNAL);
	}
	const char *garbage = "\x16\x03\x01 garbage \r\n\r\n";
	char *r = exchange(garbage, strlen(garbage));
	ck_assert_msg(r[0] == '\0' || strstr(r, " 400 "), "%s", r);
	free(r);
	const char *post = "POST /metrics HTTP/1.1\r\nHost: x\r\n"
			   "Content-Length: 5\r\n\r\nhello";
	r = exchange(post, strlen(post));
	ck_assert_msg(strstr(r, " 405 "), "%s", r);
	free(r);
	const char *nothing = "GET /nothing HTTP/1.0\r\n\r\n";
	r = exchange(nothing, strlen(nothing));
	ck_assert_msg(strstr(r, " 404 "), "%s", r);
	free(r);
	size_t big = 1 << 20;
	char *huge = malloc(big + 64);
	strcpy(huge, "GET /metrics HTTP/1.1\r\nX-Big: ");
	size_t h = strlen(huge);
	memset(huge + h, 'a', big);
	memcpy(huge + h + big, "\r\n\r\n", 4);
	r = exchange(huge, h + big + 4);
	ck_assert_msg(r[0] == '\0' || strstr(r, " 413 ") || strstr(r, " 431 ") ||
			      strstr(r, " 400 "),
		      "%s", r);
	free(r);
	free(huge);

	/* Meanwhile the daemon serves and syncs as usual. */
	char *body;
	long long t0 = tu_now_ms();
	ck_assert_int_eq(curl_get("/healthz", &body), 200);
	ck_assert_int_lt(tu_now_ms() - t0, tu_scale(3000));
	free(body);
	tu_write(src, "app.conf", "after the attack\n", 0644);
	wait_target("after the attack\n");
	ck_assert_int_eq(curl_get("/metrics", &body), 200);
	free(body);
	for (int i = 0; i < 8; i++)
		close(slow[i]);
	stop();
}
END_TEST

/* A socket listening on 127.0.0.1:at, as another program would hold
 * it. */
static int hold_port(int at)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)at)};

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	return fd;
}

/* A reload to a metrics_listen that cannot be had (a port another
 * program holds) keeps serving on the address it had, and says so; a
 * reload once it is free moves. */
START_TEST(test_a_reload_to_a_busy_port_keeps_the_endpoint)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk, *line, *body;
	int other = tu_free_port();
	int busy = hold_port(other);
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d", port), 0);
	start(dk, "");
	free(dk);
	wait_file(logpath, "serving /metrics", 1, 5000);
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d", other),
			 0);
	write_conf(dk, "");
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	ck_assert_int_ge(asprintf(&line, "; still serving /metrics and /healthz "
					 "on 127.0.0.1:%d",
				  port),
			 0);
	wait_file(logpath, line, 1, 5000);
	ck_assert_int_eq(curl_get("/healthz", &body), 200);
	free(body);
	free(line);
	/* Free now: the next reload moves there. */
	close(busy);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	ck_assert_int_ge(asprintf(&line, "serving /metrics and /healthz on "
					 "127.0.0.1:%d\n",
				  other),
			 0);
	wait_file(logpath, line, 1, 5000);
	stop();
	free(line);
	free(dk);
}
END_TEST

/* A port another program holds when the daemon starts (a user who took
 * it while the daemon restarted, say) is tried again, and had once it is
 * free: no reload needed, no endpoint given up for good. */
START_TEST(test_a_busy_port_is_taken_once_free)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk, *line, *body;
	int busy = hold_port(port);
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d", port), 0);
	start(dk, "");
	wait_file(logpath, "no HTTP metrics until it can listen (trying again "
			   "in 1 s, then less often)",
		  1, 5000);
	close(busy);
	ck_assert_int_ge(asprintf(&line, "serving /metrics and /healthz on "
					 "127.0.0.1:%d\n",
				  port),
			 0);
	wait_file(logpath, line, 1, 5000);
	ck_assert_int_eq(curl_get("/healthz", &body), 200);
	/* Said once, not at every try (those are at debug level). */
	ck_assert_int_eq(tu_file_count(logpath, "no HTTP metrics until it can "
						"listen"),
			 1);
	stop();
	free(body);
	free(line);
	free(dk);
}
END_TEST

/* The server has closed fd (recv sees the end), without blocking. */
static int closed_by_server(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

START_TEST(test_healthz_answers_under_a_crowd_of_idle_and_slow_clients)
{
	enum { IDLE = 200, SLOW = 20 };
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk;
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d", port), 0);
	start(dk, "");
	free(dk);
	wait_target("v1\n");
	wait_file(logpath, "serving /metrics", 1, 5000);

	/* From this host: connections that say nothing, and connections
	 * that send a request header a byte at a time. */
	int idle[IDLE], slow[SLOW];
	const char *hdr = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nX: y";
	size_t hlen = strlen(hdr), sent = 0;
	for (int i = 0; i < IDLE; i++)
		idle[i] = connect_local();
	for (int i = 0; i < SLOW; i++)
		slow[i] = connect_local();
	/* The health check gets through, promptly, all along. */
	long long end = tu_now_ms() + tu_scale(6000);
	for (int round = 0; tu_now_ms() < end; round++, tu_nap(500)) {
		for (int i = 0; i < SLOW; i++)
			send(slow[i], hdr + sent % hlen, 1,
			     MSG_NOSIGNAL | MSG_DONTWAIT);
		sent++;
		char *body;
		long long t0 = tu_now_ms();
		int code = curl_get("/healthz", &body);
		long long took = tu_now_ms() - t0;
		ck_assert_msg(code == 200, "round %d: /healthz answered %d: %s",
			      round, code, body);
		ck_assert_msg(took < tu_scale(2000), "round %d: /healthz took %lld ms",
			      round, took);
		free(body);
	}
	/* The idle crowd was let go: past the first few, a connection has
	 * a short time to speak. */
	int closed = 0;
	for (int i = 0; i < IDLE; i++)
		closed += closed_by_server(idle[i]);
	ck_assert_int_ge(closed, IDLE - 40);
	for (int i = 0; i < IDLE; i++)
		close(idle[i]);
	for (int i = 0; i < SLOW; i++)
		close(slow[i]);
	stop();
}
END_TEST

/* The environment that runs the daemon under the fault shim, its
 * fsync() calls hung while the file `hang` exists; `said` (NULL: none)
 * is made when one hangs.  NULL-terminated in env[6], freed with
 * fault_env_free(). */
static void fault_env(const char *hang, const char *said, char *env[6])
{
	const char *shim = getenv("FAULTINJECT");
	const char *asan0 = getenv("ASAN_OPTIONS");
	int n = 0;

	ck_assert_msg(shim && *shim, "FAULTINJECT is not set (make check sets it)");
	ck_assert_int_ge(asprintf(&env[n++], "LD_PRELOAD=%s", shim), 0);
	env[n++] = strdup("FAULT_HANG=fsync");
	ck_assert_int_ge(asprintf(&env[n++], "FAULT_HANG_WHILE=%s", hang), 0);
	if (said)
		ck_assert_int_ge(asprintf(&env[n++], "FAULT_HANG_SAY=%s", said), 0);
	/* An ASan build wants its runtime first; the shim only wraps libc. */
	ck_assert_int_ge(asprintf(&env[n++], "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
				  asan0 ? asan0 : "", asan0 && *asan0 ? ":" : ""),
			 0);
	env[n] = NULL;
}

static void fault_env_free(char *env[6])
{
	for (int i = 0; env[i]; i++)
		free(env[i]);
}

START_TEST(test_a_hung_publish_turns_healthz_503_until_it_ends)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk, *hang = tu_path(tmp, "hang"), *env[6];
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d\n"
				       "unhealthy_after_s = 1",
				  port),
			 0);
	fault_env(hang, NULL, env);
	start_env(dk, "", (const char **)env);
	wait_target("v1\n");
	wait_file(logpath, "serving /metrics", 1, 5000);
	free(wait_healthz(200, 5000));

	/* The disk stops answering in the middle of a publish. */
	tu_write(tmp, "hang", "", 0644);
	tu_write(src, "app.conf", "v2\n", 0644);
	char *body = wait_healthz(503, 10000);
	ck_assert_msg(strncmp(body, "unhealthy: sync \"web\": publish running for ",
			      43) == 0,
		      "%s", body);
	free(body);
	ck_assert_int_eq(curl_get("/metrics", &body), 200);
	ck_assert_int_ge(metric(body, "atomsync_publish_running_seconds{sync=\"web\"} "),
			 1);
	free(body);
	ck_assert(target_says("v1\n"));

	/* It answers again: the publish ends, and all is well. */
	ck_assert_int_eq(unlink(hang), 0);
	wait_target("v2\n");
	free(wait_healthz(200, 5000));
	wait_metric("atomsync_publish_running_seconds{sync=\"web\"} ", 0);
	stop();
	free(dk);
	free(hang);
	fault_env_free(env);
}
END_TEST

/* A SIGHUP while the start-up publish is still on its way is done once
 * that publish is; the summary of the start is logged all the same. */
START_TEST(test_a_reload_during_the_start_still_sums_it_up)
{
	char *hang = tu_path(tmp, "hang"), *said = tu_path(tmp, "said");
	char *env[6];
	fault_env(hang, said, env);
	tu_write(tmp, "hang", "", 0644);
	start_env("", "", (const char **)env);
	ck_assert_msg(tu_wait_for(tu_exists, said, 10000),
		      "the start-up publish never flushed");
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_file(logpath, "SIGHUP: reloading", 1, 5000);
	ck_assert_int_eq(unlink(hang), 0);
	wait_target("v1\n");
	wait_file(logpath, "reload done", 1, 5000);
	wait_file(logpath, "1 of 1 mapping published; watching", 1, 5000);
	stop();
	free(hang);
	free(said);
	fault_env_free(env);
}
END_TEST

static int exists(const char *dir, const char *name)
{
	char *p = tu_path(dir, name);
	struct stat st;
	int r = lstat(p, &st) == 0;
	free(p);
	return r;
}

START_TEST(test_metrics_file_is_not_written_through_another_users_link)
{
	enum { OTHER = 2003 };
	ck_assert_msg(tu_can_setuid(),
		      "this test acts as another user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	/* A user's directory, where the metrics file was to go in prom/;
	 * the user made prom a link to a directory of root's. */
	char *home = tu_path(tmp, "home"), *prom = tu_path(home, "prom");
	char *victim = tu_path(tmp, "victim"), *cmd;
	tu_mkdirs(prom, 0755);
	ck_assert_int_eq(chown(home, OTHER, OTHER), 0);
	ck_assert_int_eq(chown(prom, OTHER, OTHER), 0);
	tu_mkdirs(victim, 0755);
	ck_assert_int_ge(asprintf(&cmd, "rmdir '%s' && ln -s '%s' '%s'", prom,
				  victim, prom),
			 0);
	ck_assert_int_eq(tu_sh_as(OTHER, cmd), 0);
	free(cmd);

	char *dk;
	ck_assert_int_ge(asprintf(&dk, "metrics_file = %s/atomsync.prom", prom), 0);
	/* The file must be readable by the collector whatever the umask. */
	mode_t old = umask(077);
	start(dk, "");
	umask(old);
	free(dk);
	wait_target("v1\n");
	char *refused;
	ck_assert_int_ge(asprintf(&refused, "symlink %s is owned by uid %d", prom,
				  OTHER),
			 0);
	wait_file(logpath, refused, 1, 5000);
	/* More attempts, the same problem: logged once. */
	tu_write(src, "app.conf", "v2\n", 0644);
	wait_target("v2\n");
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_file(logpath, "reload done", 1, 5000);

	/* Through a link of root's, as /var/run -> /run, it is written. */
	char *real = tu_path(tmp, "real"), *link = tu_path(tmp, "link");
	tu_mkdirs(real, 0755);
	ck_assert_int_eq(symlink("real", link), 0);
	ck_assert_int_ge(asprintf(&dk, "metrics_file = %s/atomsync.prom", link), 0);
	write_conf(dk, "");
	free(dk);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_file(logpath, "written again", 1, 5000);
	ck_assert_int_eq(tu_file_count(logpath, refused), 1);
	ck_assert(!exists(victim, "atomsync.prom"));
	ck_assert(!exists(victim, "atomsync.prom.tmp"));
	char *file = tu_path(real, "atomsync.prom");
	struct stat st;
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0644);
	stop();
	free(file);
	free(refused);
	free(real);
	free(link);
	free(victim);
	free(prom);
	free(home);
}
END_TEST

/* --once with the config of start(): exit status and stderr. */
static int once(const char *sync_keys, char **err)
{
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:web]\nsource = %s\ntarget = %s\n%s\n", src,
				  dst, sync_keys),
			 0);
	tu_write(tmp, "atomsync.conf", text, 0644);
	free(text);
	const char *argv[] = {tu_bin(), "--config", conf, "--once", NULL};
	return tu_run(argv, NULL, err, 30000);
}

START_TEST(test_once_runs_the_check_and_the_hooks_too)
{
	char *err, *keys, *envf = tu_path(tmp, "env");
	ck_assert_int_ge(asprintf(&keys,
				  "check_command = sh -c 'test -f "
				  "\"$ATOMSYNC_GENERATION_DIR/ok\" || { echo no ok >&2; "
				  "exit 4; }'\n"
				  "on_update = sh -c 'env > \"%s\"; "
				  "cp \"$ATOMSYNC_CHANGED_FILE\" \"%s/changed.1\"'",
				  envf, tmp),
			 0);
	/* Vetoed with nothing live yet: nothing is published, and said. */
	ck_assert_int_eq(once(keys, &err), 1);
	ck_assert_msg(strstr(err, "exit status 4: no ok; nothing is published"),
		      "%s", err);
	free(err);
	tu_write(src, "ok", "", 0644);
	ck_assert_int_eq(once(keys, &err), 0);
	free(err);
	char *gen = tu_live(dst);
	char want[512];
	snprintf(want, sizeof(want), "ATOMSYNC_GENERATION=%s\n", gen);
	ck_assert_int_eq(tu_file_count(envf, want), 1);
	ck_assert_int_eq(tu_file_count(envf, "ATOMSYNC_CHANGED=2\n"), 1);
	char *ch = hook_run_changed(1);
	ck_assert_str_eq(ch, "app.conf|ok|");
	free(ch);
	/* Vetoed: exit 1, the reason, and the live generation stays. */
	char *ok = tu_path(src, "ok");
	unlink(ok);
	tu_write(src, "app.conf", "v2\n", 0644);
	unlink(envf);
	ck_assert_int_eq(once(keys, &err), 1);
	ck_assert_msg(strstr(err, "check_command vetoed") &&
			      strstr(err, "exit status 4: no ok; the live "
					  "generation stays"),
		      "%s", err);
	free(err);
	char *gen2 = tu_live(dst);
	ck_assert_str_eq(gen, gen2);
	ck_assert_int_eq(tu_generations(dst), 1);
	ck_assert(access(envf, F_OK) < 0); /* no publish, no on_update */
	free(keys);
	/* A failing on_update after a publish: exit 1, but it is published. */
	ck_assert_int_eq(once("on_update = false", &err), 1);
	ck_assert_msg(strstr(err, "on_update exit status 1"), "%s", err);
	free(err);
	char *d = tu_path(dst, "app.conf");
	char *c = tu_read(d, NULL);
	ck_assert_str_eq(c, "v2\n");
	free(c);
	free(d);
	free(ok);
	free(gen);
	free(gen2);
	free(envf);
}
END_TEST

START_TEST(test_an_emptied_source_keeps_the_last_generation)
{
	ck_assert_msg(have_curl(), "curl is needed (scripts/test installs it)");
	char *dk;
	ck_assert_int_ge(asprintf(&dk, "metrics_listen = 127.0.0.1:%d\n"
				       "unhealthy_after_s = 1",
				  port),
			 0);
	start(dk, "");
	wait_target("v1\n");
	wait_file(logpath, "serving /metrics", 1, 5000);
	/* A lost mount, a checkout being cloned again: nothing there. */
	char *f = tu_path(src, "app.conf");
	ck_assert_int_eq(unlink(f), 0);
	wait_file(logpath, "is empty; keeping the live generation", 1, 5000);
	char *body = wait_healthz(503, 10000);
	ck_assert_msg(strstr(body, "(its source is empty)"), "%s", body);
	free(body);
	wait_metric("atomsync_source_empty{sync=\"web\"} ", 1);
	wait_metric("atomsync_failing{sync=\"web\"} ", 1);
	ck_assert(target_says("v1\n"));
	/* Content again: published, healthy. */
	tu_write(src, "app.conf", "v2\n", 0644);
	wait_target("v2\n");
	free(wait_healthz(200, 10000));
	wait_metric("atomsync_source_empty{sync=\"web\"} ", 0);
	stop();
	/* Unless an empty source is what is wanted. */
	ck_assert_int_eq(unlink(f), 0);
	start(dk, "allow_empty = yes");
	char *visible = tu_path(dst, "app.conf");
	for (long long end = tu_now_ms() + tu_scale(5000);
	     access(visible, F_OK) == 0 && tu_now_ms() < end; tu_nap(20))
		;
	ck_assert_int_ne(access(visible, F_OK), 0);
	stop();
	free(visible);
	free(f);
	free(dk);
}
END_TEST

static int visible_back(void *arg)
{
	char *d = target_file(arg);
	int ok = d && strcmp(d, "b\n") == 0;
	free(d);
	return ok;
}

/* A visible link removed by hand while no publish can put it back (a
 * veto; with _i 1 a source emptied, a lost mount) is put back from the
 * live generation all the same; and the attempts a veto ends are not
 * made again and again meanwhile. */
START_TEST(test_a_link_removed_while_nothing_publishes_is_put_back)
{
	tu_write(src, "ok", "", 0644);
	tu_write(src, "b.conf", "b\n", 0644);
	start("", "check_command = sh -c 'test -f \"$ATOMSYNC_GENERATION_DIR/ok\" "
		  "|| exit 3'");
	wait_target("v1\n");
	char *ok = tu_path(src, "ok"), *b = tu_path(dst, "b.conf");
	char *app = tu_path(src, "app.conf"), *sb = tu_path(src, "b.conf");
	const char *why = "check_command vetoed";
	if (_i == 0) {
		ck_assert_int_eq(unlink(ok), 0);
	} else {
		why = "is empty; keeping the live generation";
		ck_assert_int_eq(unlink(ok), 0);
		ck_assert_int_eq(unlink(app), 0);
		ck_assert_int_eq(unlink(sb), 0);
	}
	wait_file(logpath, why, 1, 5000);
	ck_assert_int_eq(unlink(b), 0);
	ck_assert_msg(tu_wait_for(visible_back, "b.conf", 5000),
		      "b.conf was not put back");
	ck_assert(target_says("v1\n"));
	/* The put-back's own change asks for one more attempt, a second
	 * on; then none comes until the source changes (an empty source
	 * is looked at again every few seconds, by design). */
	if (_i == 0) {
		tu_nap(tu_scale(2500));
		int tries = tu_file_count(logpath, why);
		tu_nap(tu_scale(3000));
		ck_assert_int_eq(tu_file_count(logpath, why), tries);
	}
	stop();
	free(sb);
	free(app);
	free(b);
	free(ok);
}
END_TEST

static Suite *hooks_suite(void)
{
	Suite *s = suite_create("hooks");
	TCase *tc = tcase_create("hooks");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_on_update_gets_the_documented_environment);
	tcase_add_loop_test(tc,
			    test_a_link_removed_while_nothing_publishes_is_put_back,
			    0, 2);
	tcase_add_test(tc, test_on_update_is_told_every_path_changed_since_its_last_good_run);
	tcase_add_test(tc, test_on_update_can_act_on_one_file_only);
	tcase_add_test(tc, test_hooks_get_a_clean_environment);
	tcase_add_test(tc, test_hooks_get_no_descriptor_the_daemon_inherited);
	tcase_add_test(tc, test_shell_syntax_is_warned_about_and_a_missing_program_named);
	tcase_add_test(tc, test_check_command_veto_keeps_the_old_generation);
	tcase_add_test(tc, test_change_vetoed_is_published_with_the_next_that_passes);
	tcase_add_test(tc, test_check_that_times_out_vetoes_even_if_it_exits_0);
	tcase_add_test(tc, test_hook_ignoring_sigterm_is_killed_at_the_timeout);
	tcase_add_test(tc, test_children_of_a_timed_out_hook_are_killed_too);
	tcase_add_test(tc, test_stop_finishes_the_publish_under_way_and_its_hooks);
	tcase_add_test(tc, test_burst_during_a_running_hook_gives_exactly_one_more_run);
	tcase_add_test(tc, test_reload_signal_reaches_the_process_in_the_pidfile);
	tcase_add_test(tc, test_a_failing_hook_is_retried_and_counted);
	tcase_add_test(tc, test_once_runs_the_check_and_the_hooks_too);
	suite_add_tcase(s, tc);
	tc = tcase_create("reload");
	tcase_add_checked_fixture(tc, reload_setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pidfile_of_another_user_is_refused);
	tcase_add_test(tc, test_fifo_pidfile_does_not_stall_the_daemon);
	tcase_add_test(tc, test_stale_pidfile_is_not_signalled);
	tcase_add_test(tc, test_reload_pid_is_never_a_later_process_with_that_pid);
	suite_add_tcase(s, tc);
	tc = tcase_create("metrics");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_metrics_match_what_happened);
	tcase_add_test(tc, test_healthz_reports_a_stalled_mapping);
	tcase_add_test(tc, test_an_emptied_source_keeps_the_last_generation);
	tcase_add_test(tc, test_garbage_huge_and_slow_requests_do_no_harm);
	tcase_add_test(tc, test_a_reload_to_a_busy_port_keeps_the_endpoint);
	tcase_add_test(tc, test_a_busy_port_is_taken_once_free);
	tcase_add_test(tc, test_healthz_never_names_the_source);
	tcase_add_test(tc, test_healthz_answers_under_a_crowd_of_idle_and_slow_clients);
	tcase_add_test(tc, test_a_hung_publish_turns_healthz_503_until_it_ends);
	tcase_add_test(tc, test_a_reload_during_the_start_still_sums_it_up);
	tcase_add_test(tc, test_metrics_file_is_not_written_through_another_users_link);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(hooks_suite());
}
