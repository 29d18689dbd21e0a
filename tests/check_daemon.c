/* atomsyncd as a long-running daemon, driven from outside: start-up
 * publish, live changes, signals, reload, and the cases that make peers
 * stall: a missing or replaced source, a source that is itself a
 * Kubernetes volume, and a mapping that keeps failing. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_fixture fx;
static char *tmp, *src, *dst, *logpath, *conf, *fast;
static pid_t pid;

static void setup(void)
{
	tu_fixture_setup(&fx, 0);
	tmp = fx.tmp;
	src = fx.src;
	dst = fx.dst;
	logpath = fx.log;
	conf = fx.conf;
	pid = 0;
}

static void teardown(void)
{
	if (getenv("ATOMSYNC_KEEP_LOGS")) {
		char *d = tu_read(logpath, NULL);
		fprintf(stderr, "---- daemon log ----\n%s\n", d ? d : "");
		free(d);
	}
	if (fast)
		tu_rmrf(fast);
	free(fast);
	fast = NULL;
	fx.pid = pid;
	tu_fixture_teardown(&fx);
}

static void start_adhoc(const char *debounce)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", debounce, "--log-level", "debug",
			      NULL};
	pid = tu_spawn(argv, logpath);
}

static void start_conf(void)
{
	const char *argv[] = {tu_bin(), "--config", conf, "--log-level",
			      "debug", NULL};
	pid = tu_spawn(argv, logpath);
}

/* Waits until dst mirrors src; fails with the last difference. */
static void converge(const char *s, const char *d, int ms)
{
	tu_converge(s, d, ms, logpath);
}

static void wait_log(const char *text, int count, int ms)
{
	tu_wait_text(logpath, text, count, ms, logpath);
}

static void stop_daemon(void)
{
	tu_stop(&pid, 10000);
}

START_TEST(test_startup_publish_then_live_changes)
{
	tu_write(src, "app.conf", "v1\n", 0644);
	tu_write(src, "tls/cert.pem", "cert\n", 0600);
	start_adhoc("0");
	converge(src, dst, 3000);
	tu_write(src, "app.conf", "v2 longer\n", 0644);
	converge(src, dst, 1000);
	tu_write(src, "new/deep/er/file", "x", 0640);
	converge(src, dst, 1000);
	char *a = tu_path(src, "new"), *b = tu_path(src, "renamed");
	ck_assert_int_eq(rename(a, b), 0);
	converge(src, dst, 1000);
	char *f = tu_path(src, "renamed/deep/er/file");
	ck_assert_int_eq(chmod(f, 0600), 0);
	converge(src, dst, 1000);
	ck_assert_int_eq(unlink(f), 0);
	converge(src, dst, 1000);
	/* Editors save by writing a temp file and renaming it over. */
	tu_write(src, ".app.conf.swp", "v3\n", 0644);
	char *t = tu_path(src, ".app.conf.swp"), *o = tu_path(src, "app.conf");
	ck_assert_int_eq(rename(t, o), 0);
	converge(src, dst, 1000);
	stop_daemon();
	free(a);
	free(b);
	free(f);
	free(t);
	free(o);
}
END_TEST

struct target_file {
	const char *path, *data;
};

static int target_holds(void *arg)
{
	const struct target_file *f = arg;
	char *p = tu_path(dst, f->path);
	char *d = tu_read(p, NULL);
	int ok = d && strcmp(d, f->data) == 0;
	free(d);
	free(p);
	return ok;
}

/* Waits until the target shows `data` at `path`. */
static void wait_target(const char *path, const char *data, int ms)
{
	struct target_file f = {path, data};
	if (!tu_wait_for(target_holds, &f, ms)) {
		char *log = tu_read(logpath, NULL);
		fprintf(stderr, "%s\n", log ? log : "");
		free(log);
		ck_abort_msg("%s never reached the target with '%s'", path, data);
	}
}

static void start_excluding(const char *const *pats)
{
	const char *argv[32] = {tu_bin(), "--source", src, "--target", dst,
				"--debounce", "10", "--log-level", "debug"};
	size_t n = 9;
	for (size_t i = 0; pats[i] && n + 3 < 32; i++) {
		argv[n++] = "--exclude";
		argv[n++] = pats[i];
	}
	argv[n] = NULL;
	pid = tu_spawn(argv, logpath);
}

/* Writes src/rel as an editor saves: under a name excluded everywhere,
 * then renamed, so the only event that matters names `rel`. */
static void save_as(const char *rel, const char *data)
{
	char *t = tu_path(src, "incoming.tmp"), *p = tu_path(src, rel);
	tu_write(src, "incoming.tmp", data, 0644);
	ck_assert_int_eq(rename(t, p), 0);
	free(t);
	free(p);
}

/* The watch knows only a changed entry's name: a "!" pattern may bring
 * any name back somewhere, so no event may be dropped. */
START_TEST(test_reincluded_names_are_followed_live)
{
	tu_write(src, "keep.tmp", "v1", 0644);
	tu_write(src, "d/keep.tmp", "v1", 0644);
	tu_write(src, "x.tmp", "v1", 0644);
	start_excluding((const char *const[]){"*.tmp", "!keep.tmp", NULL});
	wait_target("keep.tmp", "v1", 3000);
	wait_target("d/keep.tmp", "v1", 1000);
	/* The look taken once the watches are in place is over. */
	wait_log("unchanged", 1, 3000);
	tu_write(src, "keep.tmp", "v2", 0644);
	wait_target("keep.tmp", "v2", 1000);
	tu_write(src, "d/keep.tmp", "v2", 0644);
	wait_target("d/keep.tmp", "v2", 1000);
	char *x = tu_path(dst, "x.tmp");
	ck_assert_int_eq(access(x, F_OK), -1);
	stop_daemon();
	free(x);
}
END_TEST

/* Names that an anchored or a directory-only pattern excludes only in
 * some places, or only as directories, still wake the daemon. */
START_TEST(test_names_excluded_only_somewhere_are_followed_live)
{
	tu_write(src, "app.conf", "v1", 0644);
	tu_write(src, "sub/x", "excluded", 0644);
	tu_write(src, "d/keep", "v1", 0644);
	start_excluding((const char *const[]){"*.tmp", "cache/", "sub/x",
					      "/top", NULL});
	wait_target("app.conf", "v1", 3000);
	wait_log("unchanged", 1, 3000);
	save_as("cache", "a file");
	wait_target("cache", "a file", 1000);
	save_as("x", "not in sub");
	wait_target("x", "not in sub", 1000);
	save_as("d/top", "not at the top");
	wait_target("d/top", "not at the top", 1000);
	char *t = tu_path(dst, "incoming.tmp"), *x = tu_path(dst, "sub/x");
	ck_assert_int_eq(access(t, F_OK), -1);
	ck_assert_int_eq(access(x, F_OK), -1);
	stop_daemon();
	free(t);
	free(x);
}
END_TEST

START_TEST(test_same_size_edit_in_same_second_is_published)
{
	tu_write(src, "flag", "aaaa", 0644);
	start_adhoc("0");
	converge(src, dst, 3000);
	for (int i = 0; i < 20; i++) {
		char v[5];
		snprintf(v, sizeof(v), "%c%c%c%c", 'b' + i % 20, 'b' + i % 20,
			 'b' + i % 20, 'b' + i % 20);
		tu_write(src, "flag", v, 0644);
		converge(src, dst, 1000);
	}
	stop_daemon();
}
END_TEST

START_TEST(test_sigint_and_sigterm_exit_0)
{
	tu_write(src, "a", "a", 0644);
	start_adhoc("10");
	converge(src, dst, 3000);
	ck_assert_int_eq(kill(pid, SIGINT), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	wait_log("stopped", 1, 1000);
}
END_TEST

/* Starts argv as tu_spawn() does, with the standard descriptors in
 * `closed` (bit n: descriptor n) left closed, as a careless parent
 * leaves them. */
static pid_t spawn_closed(const char *const argv[], unsigned closed)
{
	pid_t p = fork();

	ck_assert_int_ge(p, 0);
	if (p == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || nul < 0)
			_exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		for (int i = 0; i < 3; i++)
			if (closed & (1u << i))
				close(i);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return p;
}

/* What a closed standard descriptor would have given the first file
 * opened (the event loop's, a lock file) is /dev/null's: the loop closes
 * cleanly, and no log line is written into a lock file. */
START_TEST(test_closed_standard_descriptors_are_held_open)
{
	tu_write(src, "a", "a", 0644);
	const char *daemon[] = {tu_bin(), "--source", src, "--target", dst,
				"--debounce", "10", NULL};
	pid = spawn_closed(daemon, 1u << 0);
	converge(src, dst, 3000);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	wait_log("stopped", 1, 1000);

	tu_write(src, "a", "b", 0644);
	const char *once[] = {tu_bin(), "--once", "--source", src, "--target",
			      dst, NULL};
	pid = spawn_closed(once, 1u << 2);
	ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
	pid = 0;
	converge(src, dst, 1000);
	char *lock = tu_path(dst, "..atomsync.lock");
	char *text = tu_read(lock, NULL);
	ck_assert_msg(text && strncmp(text, "atomsync lock of ", 17) == 0 &&
			      strchr(text, '\n') == text + strlen(text) - 1,
		      "lock file holds: %s", text ? text : "(nothing)");
	free(text);
	free(lock);
}
END_TEST

static void write_conf(const char *text)
{
	char *tmpname = tu_path(tmp, "atomsync.conf.new");
	tu_write(tmp, "atomsync.conf.new", text, 0644);
	ck_assert_int_eq(rename(tmpname, conf), 0);
	free(tmpname);
}

/* One mapping per letter in names: src-X -> dst-X; the mapping named
 * `excl` also excludes *.tmp. */
static char *conf_text(const char *names, char excl)
{
	char *text = strdup("[daemon]\nlog_level = debug\n");
	for (const char *n = names; *n; n++) {
		char *add;
		ck_assert_int_ge(asprintf(&add,
					  "%s[sync:%c]\nsource = %s/src-%c\n"
					  "target = %s/dst-%c\ndebounce_ms = 20\n%s",
					  text, *n, tmp, *n, tmp, *n,
					  *n == excl ? "exclude = *.tmp\n" : ""),
				 0);
		free(text);
		text = add;
	}
	return text;
}

static char *side(const char *what, char n)
{
	char name[16];
	snprintf(name, sizeof(name), "%s-%c", what, n);
	return tu_path(tmp, name);
}

START_TEST(test_config_mappings_and_reload)
{
	for (const char *n = "abcd"; *n; n++) {
		char *s = side("src", *n);
		tu_write(s, "file", s, 0644);
		free(s);
	}
	char *text = conf_text("abc", 0);
	write_conf(text);
	free(text);
	start_conf();
	for (const char *n = "abc"; *n; n++) {
		char *s = side("src", *n), *d = side("dst", *n);
		converge(s, d, 3000);
		free(s);
		free(d);
	}
	wait_log("3 of 3 mappings published; watching", 1, 1000);

	/* b goes, c changes, d comes, a stays untouched. */
	text = conf_text("acd", 'c');
	write_conf(text);
	free(text);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("reloaded: 3 mappings", 1, 5000);
	char *s = side("src", 'd'), *d = side("dst", 'd');
	converge(s, d, 3000);
	free(s);
	free(d);
	ck_assert_int_eq(tu_file_count(logpath, "sync \"a\": changed"), 0);
	ck_assert_int_eq(tu_file_count(logpath, "sync \"a\": starting"), 0);
	ck_assert_int_eq(tu_file_count(logpath, "sync \"c\": changed; restarting"), 1);
	ck_assert_int_eq(tu_file_count(logpath, "sync \"b\": removed; stopping"), 1);
	/* b is no longer followed; a, c and d are. */
	char *sb = side("src", 'b'), *db = side("dst", 'b');
	tu_write(sb, "file", "after b was removed", 0644);
	for (const char *n = "acd"; *n; n++) {
		char *sx = side("src", *n), *dx = side("dst", *n);
		tu_write(sx, "file", "changed", 0644);
		converge(sx, dx, 3000);
		free(sx);
		free(dx);
	}
	char *bfile = tu_path(db, "file");
	char *bdata = tu_read(bfile, NULL);
	ck_assert_str_ne(bdata, "after b was removed");

	/* A broken config is reported; the running one stays. */
	int done = tu_file_count(logpath, "reload done");
	write_conf("[sync:a]\nsource = relative\n");
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("keeping the running configuration", 1, 5000);
	wait_log("atomsync.conf:2:", 1, 1000);

	/* So is a good one that another user could have written: b is not
	 * started again. */
	text = conf_text("ab", 0);
	write_conf(text);
	free(text);
	ck_assert_int_eq(chmod(conf, 0666), 0);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("keeping the running configuration", 2, 5000);
	wait_log("reload: ", 4, 1000);
	char *why;
	ck_assert_int_ge(asprintf(&why,
				  "error: reload: %s: writable by its group and "
				  "others (mode 0666); refusing to read it\n",
				  conf),
			 0);
	ck_assert_int_eq(tu_file_count(logpath, why), 1);
	free(why);
	ck_assert_int_eq(chmod(conf, 0644), 0);
	ck_assert_int_eq(chown(conf, 2003, 2003), 0);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("keeping the running configuration", 3, 5000);
	ck_assert_int_ge(asprintf(&why,
				  "error: reload: %s: owned by uid 2003, not by "
				  "root; refusing to read it\n",
				  conf),
			 0);
	ck_assert_int_eq(tu_file_count(logpath, why), 1);
	free(why);
	ck_assert_int_eq(tu_file_count(logpath, "sync \"b\": starting"), 0);
	char *sa = side("src", 'a'), *da = side("dst", 'a');
	tu_write(sa, "file", "still followed", 0644);
	converge(sa, da, 3000);
	/* None of the three refused reloads was done. */
	ck_assert_int_eq(tu_file_count(logpath, "reload done"), done);
	stop_daemon();
	free(sa);
	free(da);
	free(sb);
	free(db);
	free(bfile);
	free(bdata);
}
END_TEST

/* A chain: one's target is two's source, two's target is three's. */
/* Mapping a, removed by a reload, stops without waiting out its long
 * grace period: its target keeps the live generation and the one it
 * replaced, whole, while mapping b goes on publishing. */
/* The private (0700) generation in `d`, the standby: its inode, 0 when
 * there is none. */
static ino_t standby_ino(const char *d)
{
	char *name = NULL;
	struct stat st;
	ino_t ino = 0;

	if (tu_generations_of_mode(d, 0700, &name) > 0) {
		char *p = tu_path(d, name);
		if (lstat(p, &st) == 0)
			ino = st.st_ino;
		free(p);
	}
	free(name);
	return ino;
}

static int has_standby(void *arg)
{
	return standby_ino(arg) != 0;
}

/* Whether the log (arg) tells of a standby linked after its last
 * publish. */
static int linked_after_last_publish(void *arg)
{
	char *log = tu_read(arg, NULL), *last = NULL;

	for (char *p = log; p && (p = strstr(p, " published ..")); p++)
		last = p;
	int linked = last && strstr(last, "standby generation linked");
	free(log);
	return linked;
}

/* 40 files in 4 directories, published by a daemon whose replaced
 * generations stay 60 s. */
static void start_with_long_grace(void)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", "--grace-ms", "60000",
			      "--log-level", "debug", NULL};
	char data[32];

	for (int k = 0; k < 40; k++) {
		snprintf(data, sizeof(data), "d%d/f%d", k % 4, k);
		tu_write(src, data, data, 0644);
	}
	pid = tu_spawn(argv, logpath);
	converge(src, dst, 5000);
}

/* Changes that follow each other within the grace period (60 s here):
 * after each publish a standby is linked, and the next publish recycles
 * it, stopped or not.  A stop leaves none. */
START_TEST(test_burst_of_changes_recycles_a_standby)
{
	char data[32];

	start_with_long_grace();
	/* One rename each: written in place, a change is seen (and
	 * published) as the truncation, then the write, then the chmod. */
	tu_replace(src, "d0/c", "first", 0644);
	wait_target("d0/c", "first", 5000);
	for (int i = 1; i <= 4; i++) {
		/* One linked whole at least (after that publish: it may be
		 * linked before the change shows here), the others stopped
		 * or not. */
		if (i == 1)
			ck_assert_msg(tu_wait_for(linked_after_last_publish,
						  logpath, 5000),
				      "no standby linked after a publish");
		ck_assert_msg(tu_wait_for(has_standby, dst, 5000),
			      "no standby after change %d", i);
		ino_t sb = standby_ino(dst);
		snprintf(data, sizeof(data), "%d", i);
		tu_replace(src, i % 2 ? "d0/c" : "d3/f3", data, 0644);
		wait_target(i % 2 ? "d0/c" : "d3/f3", data, 5000);
		char *live = tu_live(dst), *lp = tu_path(dst, live);
		struct stat st;
		ck_assert_int_eq(stat(lp, &st), 0);
		ck_assert_uint_eq(st.st_ino, sb);
		free(lp);
		free(live);
	}
	converge(src, dst, 5000);
	ck_assert_int_ge(tu_file_count(logpath, "standby generation linked"), 1);
	stop_daemon();
	ck_assert_uint_eq(standby_ino(dst), 0);
	ck_assert_int_eq(tu_generations(dst), 2);
}
END_TEST

/* After a start, no generation has been replaced: the daemon links a
 * standby, and the first change recycles it instead of linking every
 * file.  A stop leaves none. */
START_TEST(test_first_change_after_a_start_recycles_a_standby)
{
	start_with_long_grace();
	/* Linked whole, or stopped by a read (the log's own lines wake the
	 * watcher of the source's parent here): the spare either way. */
	wait_log("standby generation ", 1, 5000);
	ino_t sb = standby_ino(dst);
	ck_assert_uint_ne(sb, 0);
	tu_replace(src, "d1/f1", "changed", 0644);
	wait_target("d1/f1", "changed", 5000);
	char *live = tu_live(dst), *lp = tu_path(dst, live);
	struct stat st;
	ck_assert_int_eq(stat(lp, &st), 0);
	ck_assert_uint_eq(st.st_ino, sb);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	stop_daemon();
	ck_assert_uint_eq(standby_ino(dst), 0);
	ck_assert_int_eq(tu_generations(dst), 2);
	free(lp);
	free(live);
}
END_TEST

START_TEST(test_stopped_mapping_leaves_its_replaced_generation)
{
	char *sa = side("src", 'a'), *da = side("dst", 'a');
	char *sb = side("src", 'b'), *db = side("dst", 'b');
	char *text = conf_text("ba", 0), *grace_a;

	tu_write(sa, "f", "1", 0644);
	tu_write(sb, "f", "1", 0644);
	/* [sync:a] is the last section. */
	ck_assert_int_ge(asprintf(&grace_a, "%sgrace_ms = 60000\n", text), 0);
	write_conf(grace_a);
	start_conf();
	converge(sa, da, 5000);
	converge(sb, db, 5000);
	/* Replaced generations of a's, to be kept for 60 s. */
	tu_write(sa, "f", "2", 0644);
	converge(sa, da, 5000);
	tu_write(sa, "f", "3", 0644);
	converge(sa, da, 5000);
	ck_assert_int_eq(tu_readable_generations(da), 3);
	free(text);
	text = conf_text("b", 0);
	write_conf(text);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("reloaded: 1 mapping", 1, 5000);
	ck_assert_int_eq(tu_generations(da), 2);
	tu_write(sb, "f", "2", 0644);
	converge(sb, db, 3000);
	stop_daemon();
	free(text);
	free(grace_a);
	free(sa);
	free(da);
	free(sb);
	free(db);
}
END_TEST

START_TEST(test_chain_of_mappings_carries_a_change_to_the_end)
{
	char *b = tu_path(tmp, "b"), *c = tu_path(tmp, "c"), *d = tu_path(tmp, "d");
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:one]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n"
				  "[sync:two]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n"
				  "[sync:three]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n",
				  src, b, b, c, c, d),
			 0);
	write_conf(text);
	free(text);
	tu_write(src, "app.conf", "v1\n", 0644);
	tu_write(src, "sub/deep", "deep\n", 0600);
	start_conf();
	converge(src, d, 5000);
	tu_write(src, "app.conf", "v2, longer\n", 0644);
	converge(src, d, 5000);
	ck_assert_int_eq(tu_file_count(logpath, "feedback loop"), 0);
	stop_daemon();
	free(b);
	free(c);
	free(d);
}
END_TEST

START_TEST(test_check_config_reports_every_problem)
{
	char *out, *err;
	write_conf("[sync:a]\nsource = /x\ntarget = /y\nbogus = 1\n"
		   "debounce_ms = -4\n[sync:b]\nsource = /x/y\n");
	const char *argv[] = {tu_bin(), "--check-config", "--config", conf, NULL};
	ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 2);
	ck_assert_msg(strstr(err, "atomsync.conf:4: ") && strstr(err, "bogus"),
		      "%s", err);
	ck_assert_msg(strstr(err, "atomsync.conf:5: "), "%s", err);
	ck_assert_msg(strstr(err, "atomsync.conf:6: ") &&
			      strstr(err, "target is required"),
		      "%s", err);
	ck_assert_int_eq(tu_lines(err), 3);
	free(out);
	free(err);
	write_conf("[sync:a]\nsource = /x\ntarget = /y\n");
	ck_assert_int_eq(tu_run(argv, &out, &err, 5000), 0);
	ck_assert_msg(strstr(out, "OK"), "%s", out);
	free(out);
	free(err);
	/* A missing config file is a usage error naming it. */
	const char *miss[] = {tu_bin(), "--config", "/nonexistent/x.conf", NULL};
	ck_assert_int_eq(tu_run(miss, &out, &err, 5000), 2);
	ck_assert_msg(strstr(err, "/nonexistent/x.conf"), "%s", err);
	free(out);
	free(err);
}
END_TEST

/* A target whose source is missing at a start still has what an earlier
 * run published: that is what the status tells, not "no live
 * generation". */
START_TEST(test_status_of_a_target_whose_source_is_missing)
{
	tu_write(src, "a", "v1", 0644);
	const char *once[] = {tu_bin(), "--once", "--source", src, "--target",
			      dst, NULL};
	ck_assert_int_eq(tu_run(once, NULL, NULL, 20000), 0);
	char *gen = tu_live(dst), *want;
	tu_rmrf(src);
	start_adhoc("0");
	wait_log("0 of 1 mapping published; failing: main; watching", 1, 5000);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	ck_assert_int_ge(asprintf(&want, "status: live %s, published 20", gen),
			 0);
	wait_log(want, 1, 5000);
	ck_assert_int_eq(tu_file_count(logpath, "Z; 1 file, 2 bytes;"), 1);
	stop_daemon();
	free(want);
	free(gen);
}
END_TEST

START_TEST(test_missing_source_is_waited_for)
{
	tu_rmrf(src);
	start_adhoc("0");
	wait_log("waiting for it to appear", 1, 3000);
	wait_log("0 of 1 mapping published; failing: main; watching", 1, 3000);
	tu_write(src, "late", "arrived", 0644);
	converge(src, dst, 3000);
	/* The failure was logged once, not once per retry. */
	ck_assert_int_eq(tu_file_count(logpath, "waiting for it to appear"), 1);
	/* Usually one failed attempt, more on a slow machine: either way
	 * in good English. */
	wait_log("publishing works again (after ", 1, 3000);
	char *log = tu_read(logpath, NULL);
	const char *p = strstr(log, "works again (after ");
	unsigned n = 0;
	char word[32] = "";
	ck_assert_int_eq(sscanf(p, "works again (after %u failed %31[a-z)]", &n,
				word),
			 2);
	ck_assert_str_eq(word, n == 1 ? "attempt)" : "attempts)");
	free(log);
	stop_daemon();
}
END_TEST

START_TEST(test_source_root_replaced_or_renamed)
{
	tu_write(src, "a", "1", 0644);
	start_adhoc("0");
	converge(src, dst, 3000);
	/* Renamed away and a new tree put in its place. */
	char *old = tu_path(tmp, "src.old");
	ck_assert_int_eq(rename(src, old), 0);
	char *fresh = tu_path(tmp, "fresh");
	tu_write(fresh, "b", "2", 0644);
	ck_assert_int_eq(rename(fresh, src), 0);
	converge(src, dst, 3000);
	/* The new root is watched too. */
	tu_write(src, "c", "3", 0644);
	converge(src, dst, 3000);
	/* Removed and recreated. */
	tu_rmrf(src);
	tu_write(src, "d", "4", 0644);
	converge(src, dst, 3000);
	tu_write(src, "e", "5", 0644);
	converge(src, dst, 3000);
	stop_daemon();
	free(old);
	free(fresh);
}
END_TEST

/* A source maintained like a ConfigMap volume: each version in a new
 * generation directory, swapped in by renaming a ..data_tmp link. */
static void kube_version(int v)
{
	char gen[64], path[128], lnk[256];
	snprintf(gen, sizeof(gen), "..gen_%03d", v);
	snprintf(path, sizeof(path), "%s/app.conf", gen);
	char body[64];
	snprintf(body, sizeof(body), "version %d\n", v);
	tu_write(src, path, body, 0644);
	snprintf(path, sizeof(path), "%s/tls/key.pem", gen);
	tu_write(src, path, v % 3 ? "same key\n" : "rotated key\n", 0600);
	if (v % 2) {
		snprintf(path, sizeof(path), "%s/odd-only", gen);
		tu_write(src, path, "odd\n", 0644);
	}
	char *tmpl = tu_path(src, "..data_tmp"), *data = tu_path(src, "..data");
	ck_assert_int_eq(symlink(gen, tmpl), 0);
	ck_assert_int_eq(rename(tmpl, data), 0);
	const char *names[] = {"app.conf", "tls", "odd-only"};
	for (int i = 0; i < 3; i++) {
		char *vis = tu_path(src, names[i]);
		snprintf(lnk, sizeof(lnk), "..data/%s", names[i]);
		if (i < 2 || v % 2)
			symlink(lnk, vis); /* EEXIST after the first time */
		else
			unlink(vis);
		free(vis);
	}
	if (v > 0) {
		char old[64];
		snprintf(old, sizeof(old), "..gen_%03d", v - 1);
		char *o = tu_path(src, old);
		tu_rmrf(o);
		free(o);
	}
	free(tmpl);
	free(data);
}

START_TEST(test_kubernetes_volume_source_through_many_swaps)
{
	kube_version(0);
	start_adhoc("20");
	converge(src, dst, 3000);
	for (int v = 1; v <= 25; v++) {
		kube_version(v);
		converge(src, dst, 3000);
		char *p = tu_path(dst, "app.conf");
		char *d = tu_read(p, NULL);
		char want[32];
		snprintf(want, sizeof(want), "version %d\n", v);
		ck_assert_str_eq(d, want);
		free(d);
		free(p);
	}
	stop_daemon();
}
END_TEST

struct want {
	const char *path, *content;
};

static int file_says(void *arg)
{
	struct want *w = arg;
	char *d = tu_read(w->path, NULL);
	int ok = d && strcmp(d, w->content) == 0;
	free(d);
	return ok;
}

/* certbot's layout: live/ links into archive/, outside the source, the
 * link there at the start or made while the daemon runs (found by a read
 * of its directory alone, not a full walk).  Either way, a change behind
 * it is published. */
static void follow_link_made(bool later)
{
	char *archive = tu_path(tmp, "archive");
	tu_write(archive, "cert1.pem", "v1", 0644);
	tu_write(src, "other", "x", 0644);
	char *link = tu_path(src, "cert.pem");
	char *target = tu_path(archive, "cert1.pem");
	if (!later)
		ck_assert_int_eq(symlink(target, link), 0);
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:certs]\nsource = %s\ntarget = %s\n"
				  "symlinks = follow\ndebounce_ms = 10\n"
				  "resync_interval_s = 0\n",
				  src, dst),
			 0);
	write_conf(text);
	free(text);
	start_conf();
	/* After the start-up publish the daemon looks once more (its new
	 * watches were not in place for the first): let that pass, so only
	 * a watch can see what follows. */
	wait_log("\"certs\": unchanged", 1, 5000);
	if (later)
		ck_assert_int_eq(symlink(target, link), 0);
	/* The tree helpers do not follow links out of the source: look at
	 * the file itself. */
	char *out = tu_path(dst, "cert.pem");
	struct want w1 = {out, "v1"}, w2 = {out, "v2 renewed"};
	ck_assert_msg(tu_wait_for(file_says, &w1, 5000), "never published v1");
	/* The file behind the link changes; the link does not. */
	tu_write(archive, "cert1.pem", "v2 renewed", 0644);
	ck_assert_msg(tu_wait_for(file_says, &w2, 3000),
		      "a change behind a followed link was missed");
	free(out);
	stop_daemon();
	free(archive);
	free(link);
	free(target);
}

START_TEST(test_followed_links_are_watched_where_they_lead)
{
	follow_link_made(false);
}
END_TEST

START_TEST(test_a_link_made_later_is_watched_where_it_leads)
{
	follow_link_made(true);
}
END_TEST

START_TEST(test_failing_mapping_does_not_stop_others)
{
	char *good = side("src", 'g'), *goodd = side("dst", 'g');
	tu_write(good, "f", "good", 0644);
	tu_write(src, "f", "bad", 0644);
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:bad]\nsource = %s\ntarget = %s/no/parent/dst\n"
				  "debounce_ms = 0\n"
				  "[sync:good]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n",
				  src, tmp, good, goodd),
			 0);
	write_conf(text);
	free(text);
	start_conf();
	converge(good, goodd, 3000);
	wait_log("parent directory does not exist", 1, 3000);
	/* The start-up line says which mapping is not there yet. */
	wait_log("1 of 2 mappings published; failing: bad; watching", 1, 3000);
	/* Changes keep flowing for the healthy mapping while the other one
	 * retries, and its error is logged once. */
	for (int i = 0; i < 5; i++) {
		char v[16];
		snprintf(v, sizeof(v), "good %d", i);
		tu_write(good, "f", v, 0644);
		tu_write(src, "f", v, 0644);
		converge(good, goodd, 3000);
	}
	/* Two retries, each logged at debug level only. */
	wait_log("still failing: ", 2, 10000);
	ck_assert_int_eq(tu_file_count(logpath, "No such file or directory); retrying"), 1);
	/* Fix it: the mapping recovers and says so. */
	char *parent = tu_path(tmp, "no/parent");
	tu_mkdirs(parent, 0755);
	char *bdst = tu_path(tmp, "no/parent/dst");
	converge(src, bdst, 70000);
	wait_log("publishing works again", 1, 1000);
	stop_daemon();
	free(parent);
	free(bdst);
	free(good);
	free(goodd);
}
END_TEST

/* How many files named ..atomsync.lock process `p` has open. */
static int open_lock_files(pid_t p)
{
	char dir[64], link[4096];
	int n = 0;
	snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)p);
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		ssize_t len = readlinkat(dirfd(d), e->d_name, link,
					 sizeof(link) - 1);
		if (len > 0) {
			link[len] = '\0';
			n += strstr(link, "/..atomsync.lock") != NULL;
		}
	}
	closedir(d);
	return n;
}

/* --once on the target the daemon holds gives up with status 1 and a
 * line that says `text`. */
static void once_kept_out(const char *text)
{
	const char *once[] = {tu_bin(), "--source", src, "--target", dst,
			      "--once", NULL};
	char *err;
	ck_assert_int_eq(tu_run(once, NULL, &err, 10000), 1);
	ck_assert_int_eq(tu_lines(err), 1);
	ck_assert_msg(strstr(err, text) &&
			      strstr(err, "; not publishing to it (exit status 1)\n"),
		      "%s", err);
	free(err);
}

/* The daemon holds the target, whose lock `text` names: --once gives up
 * with status 1, a second daemon says so once and waits, and takes the
 * target over when the first stops. */
static void kept_out_then_taken_over(const char *text)
{
	once_kept_out(text);

	char *log2 = tu_path(tmp, "second.log");
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", "--log-level", "debug", NULL};
	pid_t second = tu_spawn(argv, log2);
	struct tu_needle n = {log2, "; waiting for it to stop, trying again "
				    "every few seconds", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 5000), "%s",
		      tu_read(log2, NULL));
	/* The line that says so names the holder. */
	char *all = tu_read(log2, NULL), *said = strstr(all, "; waiting for it");
	ck_assert_ptr_nonnull(said);
	*said = '\0';
	said = strrchr(all, '\n');
	ck_assert_msg(strstr(said ? said : all, text), "%s", all);
	free(all);
	/* Each try lets go of the lock file it opened. */
	struct tu_needle tries = {log2, "still failing: ", 2};
	ck_assert_msg(tu_wait_for(tu_file_holds, &tries, 10000), "%s",
		      tu_read(log2, NULL));
	ck_assert_int_le(open_lock_files(second), 1);
	/* Kept out, it knows nothing of what is live there. */
	ck_assert_int_eq(kill(second, SIGUSR1), 0);
	struct tu_needle st = {log2, "status: target not open; 0 files", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &st, 5000), "%s",
		      tu_read(log2, NULL));
	/* The first one stops: the second takes the target over. */
	stop_daemon();
	pid = second;
	struct tu_needle again = {log2, "publishing works again", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &again, 15000), "%s",
		      tu_read(log2, NULL));
	tu_write(src, "a", "second", 0644);
	converge(src, dst, 3000);
	/* Said once, not at every retry (those are at debug level). */
	ck_assert_int_eq(tu_file_count(log2, "; waiting for it to stop"), 1);
	stop_daemon();
	free(log2);
}

START_TEST(test_target_locked_by_another_daemon)
{
	tu_write(src, "a", "first", 0644);
	start_adhoc("0");
	converge(src, dst, 3000);
	char *text;
	ck_assert_int_ge(asprintf(&text, "in use by another atomsyncd (pid %ld)",
				  (long)pid),
			 0);
	kept_out_then_taken_over(text);
	free(text);
}
END_TEST

/* A lock file removed (by root) while the daemon holds it: the daemon
 * keeps its lock on the removed file, and a second atomsyncd, which
 * takes a new one, still finds the first through /proc and keeps out. */
START_TEST(test_a_removed_lock_file_still_keeps_others_out)
{
	tu_write(src, "a", "first", 0644);
	start_adhoc("0");
	converge(src, dst, 3000);
	char *lock = tu_path(dst, "..atomsync.lock"), *text;
	ck_assert_int_eq(unlink(lock), 0);
	ck_assert_int_ge(asprintf(&text, "in use by another atomsyncd (pid "
					 "%ld), whose lock file "
					 "..atomsync.lock was removed or moved",
				  (long)pid),
			 0);
	/* Not only the first to come: the one that found it does not
	 * leave a lock file behind for the next to take unlooked. */
	once_kept_out(text);
	kept_out_then_taken_over(text);
	free(lock);
	free(text);
}
END_TEST

static int exists(void *arg)
{
	struct stat st;
	return lstat(arg, &st) == 0;
}

static int missing(void *arg)
{
	return !exists(arg);
}

/* The last error of a failing mapping is in its target, for
 * atomsyncd --status: written when it changes, not at every retry, and
 * removed once publishing works again. */
START_TEST(test_failing_mapping_records_its_error_in_the_target)
{
	char *errfile = tu_path(dst, "..atomsync.error");
	char *in_way = tu_path(dst, "b"), *also = tu_path(dst, "c");
	struct stat st, again;

	tu_write(src, "a", "1", 0644);
	start_adhoc("0");
	converge(src, dst, 3000);
	ck_assert(missing(errfile));
	tu_write(dst, "b", "mine", 0644);
	tu_write(src, "b", "theirs", 0644);
	wait_log("b exists and is not a link managed by atomsync", 1, 5000);
	ck_assert_msg(tu_wait_for(exists, errfile, 3000), "no error file");
	ck_assert_int_eq(lstat(errfile, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	char *text = tu_read(errfile, NULL);
	ck_assert_msg(strncmp(text, "atomsync-error 1\ntime 1", 23) == 0 &&
			      strstr(text, "\nmessage target\\x20") &&
			      strstr(text, ":\\x20b\\x20exists\\x20and\\x20is\\x20not"),
		      "%s", text);
	free(text);
	/* Retried twice more with the same error: not written again. */
	wait_log("still failing: ", 2, 10000);
	ck_assert_int_eq(lstat(errfile, &again), 0);
	ck_assert_uint_eq(again.st_ino, st.st_ino);
	/* A new error replaces it. */
	tu_write(dst, "c", "mine too", 0644);
	tu_write(src, "c", "theirs too", 0644);
	struct tu_needle two = {errfile, "2\\x20names\\x20exist", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &two, 10000), "%s",
		      tu_read(errfile, NULL));
	/* Fixed: gone. */
	ck_assert_int_eq(unlink(in_way), 0);
	ck_assert_int_eq(unlink(also), 0);
	wait_log("publishing works again", 1, 70000);
	ck_assert_msg(tu_wait_for(missing, errfile, 3000), "error file stays");
	converge(src, dst, 3000);
	stop_daemon();
	free(errfile);
	free(in_way);
	free(also);
}
END_TEST

/* SIGUSR1 asks for the state of every mapping; the daemon runs on. */
START_TEST(test_sigusr1_logs_status_and_keeps_running)
{
	tu_write(src, "a", "12345", 0644);
	tu_write(src, "d/b", "678", 0644);
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:web]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n"
				  "[sync:bad]\nsource = %s\n"
				  "target = %s/no/parent/dst\n",
				  src, dst, src, tmp),
			 0);
	write_conf(text);
	free(text);
	start_conf();
	wait_log("1 of 2 mappings published; failing: bad; watching", 1, 5000);
	char *gen = tu_live(dst);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_log("sync \"bad\": status: ", 1, 5000);
	wait_log("info: status: atomsyncd ", 1, 1000);
	ck_assert_int_eq(tu_file_count(logpath, "; 2 mappings; 0 reloads, 0 "
						"refused"),
			 1);
	char *want;
	ck_assert_int_ge(asprintf(&want,
				  "info: sync \"web\": status: live %s, "
				  "published 20",
				  gen),
			 0);
	ck_assert_int_eq(tu_file_count(logpath, want), 1);
	ck_assert_int_eq(tu_file_count(logpath, "Z; 2 files, 8 bytes; 2 "
						"directories watched; healthy"),
			 1);
	/* The failing one's line ends with its last error. */
	char *log = tu_read(logpath, NULL);
	char *bad = strstr(log, "info: sync \"bad\": status: target not "
				"open; 0 files, 0 bytes; 0 directories "
				"watched; failing since 20");
	ck_assert_msg(bad, "%s", log);
	*strchr(bad, '\n') = '\0';
	ck_assert_msg(strstr(bad, "Z: target ") &&
			      strstr(bad, "/no/parent/dst: parent directory "
					  "does not exist"),
		      "%s", bad);
	free(log);
	/* Still running, and still following its source. */
	tu_write(src, "a", "after the signal", 0644);
	converge(src, dst, 3000);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_log("info: status: atomsyncd ", 2, 5000);
	stop_daemon();
	free(want);
	free(gen);
}
END_TEST

START_TEST(test_dry_run_daemon_writes_nothing)
{
	tu_write(src, "a", "a", 0644);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--dry-run", "--debounce", "0", NULL};
	pid = tu_spawn(argv, logpath);
	wait_log("would add a", 1, 3000);
	tu_write(src, "b", "b", 0644);
	wait_log("would add b", 1, 3000);
	struct stat st;
	ck_assert(stat(dst, &st) < 0 && errno == ENOENT);
	stop_daemon();
}
END_TEST

START_TEST(test_file_being_rewritten_converges_untorn)
{
	/* A big file rewritten in place, chunk by chunk, for a while: a
	 * copy that overlaps a write is retried, and once the writer is done
	 * the target holds the final content. */
	size_t n = 4u << 20, chunk = 64u << 10;
	char *buf = malloc(n);
	memset(buf, 'a', n);
	tu_write_len(src, "big", buf, n, 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	char *p = tu_path(src, "big");
	int fd = open(p, O_WRONLY);
	for (int round = 0; round < 6; round++) {
		memset(buf, 'b' + round, n);
		for (size_t off = 0; off < n; off += chunk) {
			ck_assert_int_eq(pwrite(fd, buf + off, chunk, (off_t)off),
					 (ssize_t)chunk);
			struct timespec ts = {0, 300000};
			nanosleep(&ts, NULL);
		}
	}
	close(fd);
	converge(src, dst, 5000);
	stop_daemon();
	free(p);
	free(buf);
}
END_TEST

START_TEST(test_out_of_inotify_watches_falls_back_to_rescans)
{
	/* A user namespace has its own watch limit: 3 watches for a tree
	 * of 8 directories. */
	const char *probe[] = {"unshare", "--user", "--map-root-user", "sh", "-c",
			       "echo 3 > /proc/sys/user/max_inotify_watches", NULL};
	ck_assert_msg(tu_run(probe, NULL, NULL, 5000) == 0,
		      "this test needs user namespaces (unshare --user)");
	for (int i = 0; i < 8; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d%d/f", i);
		tu_write(src, name, "v1", 0644);
	}
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:limited]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\npoll_interval_ms = 200\n",
				  src, dst),
			 0);
	write_conf(text);
	free(text);
	/* The directories on the way to the source (those on the way to
	 * the target are the same ones), the source and its first
	 * directory. */
	char *cmd;
	ck_assert_int_ge(asprintf(&cmd,
				  "echo %d > /proc/sys/user/max_inotify_watches "
				  "&& exec '%s' --config '%s' --log-level debug",
				  tu_way_len(src) + 2, tu_bin(), conf),
			 0);
	const char *argv[] = {"unshare", "--user", "--map-root-user", "sh", "-c",
			      cmd, NULL};
	pid = tu_spawn(argv, logpath);
	converge(src, dst, 5000);
	wait_log("9 directories, 2 watched: out of inotify watches "
		 "(fs.inotify.max_user_watches); re-scanning every ",
		 1, 3000);
	wait_log("raise fs.inotify.max_user_watches to watch them all", 1, 1000);
	/* Changes in directories without a watch still arrive. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 8; i++) {
			char name[32], v[16];
			snprintf(name, sizeof(name), "d%d/f", i);
			snprintf(v, sizeof(v), "v%d-%d", round + 2, i);
			tu_write(src, name, v, 0644);
		}
		converge(src, dst, 3000);
	}
	/* Logged once, not at every re-scan. */
	ck_assert_int_eq(tu_file_count(logpath, "out of inotify watches"), 1);
	stop_daemon();
	free(cmd);
}
END_TEST

/* Makes `top` directories d000, d001, ... in `dir`, each with `sub`
 * directories s000, ...; the last holds a file.  With the root, that is
 * 1 + top * (1 + sub) directories. */
static void make_tree(const char *dir, int top, int sub)
{
	for (int i = 0; i < top; i++) {
		char *d;
		ck_assert_int_ge(asprintf(&d, "%s/d%03d", dir, i), 0);
		ck_assert_int_eq(mkdir(d, 0755), 0);
		for (int k = 0; k < sub; k++) {
			char *s;
			ck_assert_int_ge(asprintf(&s, "%s/s%03d", d, k), 0);
			ck_assert_int_eq(mkdir(s, 0755), 0);
			free(s);
		}
		free(d);
	}
	char *last;
	if (sub > 0)
		ck_assert_int_ge(asprintf(&last, "d%03d/s%03d/f", top - 1,
					  sub - 1),
				 0);
	else
		ck_assert_int_ge(asprintf(&last, "d%03d/f", top - 1), 0);
	tu_write(dir, last, "v1", 0644);
	free(last);
}

struct sample {
	const char *file, *name;
	double value;
	bool at_least; /* or more */
};

/* The value of the sample `name` (up to the space before the value) in a
 * metrics file; -1 when it is not there. */
static double sample_in(const char *file, const char *name)
{
	char *text = tu_read(file, NULL);
	size_t n = strlen(name);
	double v = -1;

	for (const char *p = text; p && *p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, name, n) == 0 && p[n] == ' ') {
			v = atof(p + n + 1);
			break;
		}
	}
	free(text);
	return v;
}

static int sample_is(void *arg)
{
	const struct sample *s = arg;
	double v = sample_in(s->file, s->name);
	return s->at_least ? v >= s->value : v == s->value;
}

static void wait_for_sample(struct sample *s, int ms)
{
	if (!tu_wait_for(sample_is, s, ms)) {
		char *text = tu_read(s->file, NULL);
		fprintf(stderr, "%s\n", text ? text : "(no metrics file)");
		free(text);
		ck_abort_msg("%s never was %s%g", s->name,
			     s->at_least ? "at least " : "", s->value);
	}
}

/* Waits until the metrics file shows `value` for `name`. */
static void wait_sample(const char *file, const char *name, double value,
			int ms)
{
	struct sample s = {file, name, value, false};
	wait_for_sample(&s, ms);
}

static void write_cap_conf(const char *metrics, const char *max)
{
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmetrics_file = %s\nmax_watches = %s\n"
				  "[sync:cap]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\npoll_interval_ms = 200\n"
				  "fsync = no\n",
				  metrics, max, src, dst),
			 0);
	write_conf(text);
	free(text);
}

START_TEST(test_max_watches_caps_watches_and_rescans)
{
	/* 321 directories; watches for those on the way to the source and
	 * the target, the root and seven of the twenty at the first level. */
	int way = tu_way_len(src) + tu_way_len(dst), max = way + 8;
	char maxs[16];
	snprintf(maxs, sizeof(maxs), "%d", max);
	make_tree(src, 20, 15);
	char *metrics = tu_path(tmp, "metrics.prom");
	write_cap_conf(metrics, maxs);
	start_conf();
	converge(src, dst, 10000);
	char *warning;
	ck_assert_int_ge(asprintf(&warning,
				  "warning: sync \"cap\": source %s: 321 "
				  "directories, 8 watched: the daemon's "
				  "max_watches (%d, shared by every mapping) "
				  "is reached; re-scanning every ",
				  src, max),
			 0);
	wait_log(warning, 1, 5000);
	wait_log("raise max_watches in [daemon] to watch them all", 1, 1000);
	wait_sample(metrics, "atomsync_rescanning{sync=\"cap\"}", 1, 5000);
	wait_sample(metrics, "atomsync_watched_directories{sync=\"cap\"}", 8,
		    1000);
	wait_sample(metrics, "atomsync_source_directories{sync=\"cap\"}", 321,
		    1000);
	wait_sample(metrics, "atomsync_watches", max, 1000);
	wait_sample(metrics, "atomsync_max_watches", max, 1000);
	wait_sample(metrics, "atomsync_watch_limit_fallbacks_total{sync=\"cap\"}",
		    1, 1000);
	/* A change two levels down, where nothing watches, is published by
	 * the next re-scan: after poll_interval_ms, or 20 times what a walk
	 * of 321 directories takes. */
	double every = sample_in(metrics, "atomsync_rescan_interval_seconds"
					  "{sync=\"cap\"}");
	ck_assert_msg(every >= 0.2 && every < 5, "re-scanning every %g s", every);
	tu_write(src, "d019/s014/new", "unwatched", 0644);
	converge(src, dst, (int)(every * 2000) + 2000);
	tu_write(src, "d013/s000/f", "unwatched too", 0644);
	converge(src, dst, (int)(every * 2000) + 2000);
	/* Logged once, not at every re-scan. */
	double rescans = sample_in(metrics, "atomsync_rescans_total{sync=\"cap\"}");
	struct sample more = {metrics, "atomsync_rescans_total{sync=\"cap\"}",
			      rescans + 3, true};
	wait_for_sample(&more, 5000);
	char *once;
	ck_assert_int_ge(asprintf(&once, "max_watches (%d, shared", max), 0);
	ck_assert_int_eq(tu_file_count(logpath, once), 1);
	free(once);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_log("; 8 of 321 directories watched, re-scanning every ", 1, 5000);
	ck_assert_int_eq(tu_file_count(logpath, " s; healthy"), 1);
	/* Room for all of them: watched again after the reload. */
	write_cap_conf(metrics, "1000");
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("using at most 1000 inotify watches (max_watches); "
		 "re-scanning every mapping",
		 1, 5000);
	wait_log("every directory is watched again (321)", 1, 5000);
	wait_sample(metrics, "atomsync_rescanning{sync=\"cap\"}", 0, 5000);
	wait_sample(metrics, "atomsync_watched_directories{sync=\"cap\"}", 321,
		    1000);
	wait_sample(metrics, "atomsync_rescan_interval_seconds{sync=\"cap\"}", 0,
		    1000);
	wait_sample(metrics, "atomsync_watches", 321 + way + 1, 1000);
	stop_daemon();
	free(warning);
	free(metrics);
}
END_TEST

/* Mappings a and b, each on a tree of 41 directories, as the config
 * lists them. */
static void write_ab(const char *metrics, bool a, bool b, int max)
{
	char *text, *ma, *mb;
#define MAPPING "[sync:%c]\nsource = %s/%c\ntarget = %s/%c\n" \
		"poll_interval_ms = 200\n"
	ck_assert_int_ge(asprintf(&ma, MAPPING, 'a', src, 'a', dst, 'a'), 0);
	ck_assert_int_ge(asprintf(&mb, MAPPING, 'b', src, 'b', dst, 'b'), 0);
#undef MAPPING
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmetrics_file = %s\n"
				  "max_watches = %d\n%s%s",
				  metrics, max, a ? ma : "", b ? mb : ""),
			 0);
	write_conf(text);
	free(text);
	free(ma);
	free(mb);
}

START_TEST(test_max_watches_is_shared_by_mappings_and_given_back)
{
	char *sa = tu_path(src, "a"), *sb = tu_path(src, "b");
	char *da = tu_path(dst, "a"), *db = tu_path(dst, "b");
	char *metrics = tu_path(tmp, "metrics.prom");
	tu_mkdirs(sa, 0755);
	tu_mkdirs(sb, 0755);
	tu_mkdirs(dst, 0755);
	make_tree(sa, 40, 0);
	make_tree(sb, 40, 0);
	/* Each mapping also watches the directories on the way to its
	 * source and target: room for them besides 60. */
	int wa = tu_way_len(sa) + tu_way_len(da), wb = tu_way_len(sb) + tu_way_len(db);
	int max = 60 + wa - 2 + wb - 2;
	write_ab(metrics, true, false, max);
	start_conf();
	converge(sa, da, 10000);
	/* a watches its 41 directories, those on the way to its source and
	 * target, and its target. */
	wait_sample(metrics, "atomsync_watched_directories{sync=\"a\"}", 41, 5000);
	wait_sample(metrics, "atomsync_watches", 41 + wa + 1, 1000);
	wait_sample(metrics, "atomsync_rescanning{sync=\"a\"}", 0, 1000);
	/* b gets what a and the way to its own source and target leave:
	 * 14, and its target none. */
	write_ab(metrics, true, true, max);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("reload done", 1, 5000);
	converge(sb, db, 5000);
	char *warning;
	ck_assert_int_ge(asprintf(&warning,
				  "sync \"b\": source %s: 41 directories, 14 "
				  "watched: the daemon's max_watches (%d",
				  sb, max),
			 0);
	wait_log(warning, 1, 5000);
	wait_sample(metrics, "atomsync_rescanning{sync=\"b\"}", 1, 5000);
	wait_sample(metrics, "atomsync_watched_directories{sync=\"b\"}", 14, 1000);
	wait_sample(metrics, "atomsync_watches", max, 1000);
	wait_sample(metrics, "atomsync_rescanning{sync=\"a\"}", 0, 1000);
	ck_assert_int_eq(tu_file_count(logpath, "sync \"a\": source"), 0);
	/* a stops and gives its watches back; b, short of them, takes them
	 * at the re-scan the reload starts. */
	write_ab(metrics, false, true, max);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("reload done", 2, 5000);
	wait_log("every directory is watched again (41)", 1, 5000);
	wait_sample(metrics, "atomsync_rescanning{sync=\"b\"}", 0, 5000);
	wait_sample(metrics, "atomsync_watched_directories{sync=\"b\"}", 41, 1000);
	wait_sample(metrics, "atomsync_watches", 41 + wb + 1, 1000);
	stop_daemon();
	free(warning);
	free(metrics);
	free(sa);
	free(sb);
	free(da);
	free(db);
}
END_TEST

/* User and system time the process has used, in clock ticks. */
static long long cpu_ticks(pid_t p)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
	char *text = tu_read(path, NULL);
	ck_assert_msg(text, "%s cannot be read", path);
	/* The name in parentheses may hold spaces: count from its end. */
	char *f = strrchr(text, ')');
	unsigned long long ut = 0, st = 0;
	ck_assert_int_eq(sscanf(f + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
				       "%*u %*u %llu %llu",
				&ut, &st),
			 2);
	free(text);
	return (long long)(ut + st);
}

/* Starts the daemon on `big` with 100 watches: max_watches, or with
 * `kernel`, the kernel's limit in a user namespace. */
static void start_big(bool kernel, const char *big, const char *out,
		      const char *metrics)
{
	char *text, *cmd;
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmetrics_file = %s\n%s"
				  "[sync:big]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\npoll_interval_ms = 100\n"
				  "fsync = no\n",
				  metrics, kernel ? "" : "max_watches = 100\n",
				  big, out),
			 0);
	write_conf(text);
	free(text);
	ck_assert_int_ge(asprintf(&cmd,
				  "%sexec '%s' --config '%s' --log-level debug",
				  kernel ? "echo 100 > /proc/sys/user/"
					   "max_inotify_watches && "
					 : "",
				  tu_bin(), conf),
			 0);
	const char *ns[] = {"unshare", "--user", "--map-root-user", "sh", "-c",
			    cmd, NULL};
	const char *plain[] = {"sh", "-c", cmd, NULL};
	pid = tu_spawn(kernel ? ns : plain, logpath);
	free(cmd);
}

/* The share of a core the daemon used over `ms` of wall-clock time. */
static double cpu_share(int ms)
{
	long long t0 = tu_now_ms(), c0 = cpu_ticks(pid);
	while (tu_now_ms() - t0 < ms) {
		ck_assert_int_eq(kill(pid, 0), 0);
		tu_nap(100);
	}
	long long ticks = cpu_ticks(pid) - c0, took = tu_now_ms() - t0;
	return (double)ticks / (double)sysconf(_SC_CLK_TCK) /
	       ((double)took / 1000.0);
}

/* A source of 20,201 directories on tmpfs with 100 watches and the
 * shortest poll_interval_ms.  Each re-scan waits 20 times what the last
 * one took, so over two intervals or more the daemon uses about 5% of a
 * core, 7.5% at worst, whatever a walk takes on a loaded machine or with
 * sanitizers; the bound is twice that.  Re-scanning every
 * poll_interval_ms used all of a core it could get: a third of one on two
 * cores shared by six busy processes. */
struct rescans_after {
	const char *metrics;
	double before;
};

static int rescans_after(void *arg)
{
	const struct rescans_after *r = arg;

	return sample_in(r->metrics, "atomsync_rescans_total{sync=\"big\"}") >
	       r->before;
}

/* Resident memory of `p`, in KiB (VmRSS). */
static long rss_kib(pid_t p)
{
	char path[64], *text;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)p);
	text = tu_read(path, NULL);
	ck_assert_ptr_nonnull(text);
	char *at = strstr(text, "VmRSS:");
	ck_assert_ptr_nonnull(at);
	long kib = strtol(at + 6, NULL, 10);
	free(text);
	return kib;
}

/* Publishes run on the thread pool, each making and freeing a snapshot
 * of the whole tree: the memory it frees is used again, and the daemon
 * stays at about what it holds after the first one. */
START_TEST(test_memory_stays_flat_over_publishes)
{
	fast = tu_mkdtemp_fast();
	char *big = tu_path(fast, "src"), *out = tu_path(fast, "dst");
	char rel[32];
	ck_assert_int_eq(mkdir(big, 0755), 0);
	for (int i = 0; i < 30000; i++) {
		snprintf(rel, sizeof(rel), "d%03d/f%05d", i / 100, i);
		tu_write_deep(big, rel, "x");
	}
	const char *argv[] = {tu_bin(), "--source", big, "--target", out,
			      "--debounce", "0", "--log-level", "debug", NULL};
	pid = tu_spawn(argv, logpath);
	wait_log("watching", 1, 60000);
	wait_log("unchanged", 1, 60000); /* the walk after the watches */
	long first = rss_kib(pid);
	for (int i = 1; i <= 8; i++) {
		snprintf(rel, sizeof(rel), "d%03d/f%05d", i * 30, i * 3000);
		/* One rename, one publish: a file written in place can be
		 * read again after its publish, and the memory would then be
		 * measured with a read in flight (two arrays of entries). */
		tu_replace(big, rel, "changed", 0644);
		wait_log("(0 added, 1 changed, 0 removed)", i, 30000);
	}
	long last = rss_kib(pid);
	fprintf(stderr, "memory: %ld KiB after the first publish, %ld KiB "
			"after 8 more\n", first, last);
	ck_assert_msg(last < first + first / 4,
		      "%ld KiB after the first publish, %ld KiB after 8 more",
		      first, last);
	stop_daemon();
	free(big);
	free(out);
}
END_TEST

static void large_tree_costs_little(bool kernel)
{
	fast = tu_mkdtemp_fast();
	char *big = tu_path(fast, "src"), *out = tu_path(fast, "dst");
	char *metrics = tu_path(tmp, "metrics.prom");
	ck_assert_int_eq(mkdir(big, 0755), 0);
	make_tree(big, 200, 100);
	start_big(kernel, big, out, metrics);
	char *capped;
	ck_assert_int_ge(asprintf(&capped, "20201 directories, %d watched: ",
				  100 - tu_way_len(big) - tu_way_len(out)),
			 0);
	wait_log(kernel ? "out of inotify watches" : capped, 1, 60000);
	free(capped);
	/* The walk that follows the new watches is over. */
	wait_log("unchanged", 1, 60000);
	struct tu_needle m = {metrics, "atomsync_rescans_total{sync=\"big\"}", 1};
	ck_assert(tu_wait_for(tu_file_holds, &m, 5000));
	double every = sample_in(metrics, "atomsync_rescan_interval_seconds"
					  "{sync=\"big\"}");
	int window = every * 2000 > 15000 ? (int)(every * 2000) : 15000;
	double before = sample_in(metrics, "atomsync_rescans_total{sync=\"big\"}");
	double share = cpu_share(window);
	fprintf(stderr, "%s: %.1f%% of a core over %d ms, re-scanning every "
			"%g s\n",
		kernel ? "kernel limit" : "max_watches", share * 100, window,
		every);
	ck_assert_msg(share < 0.15, "%.1f%% of a core", share * 100);
	/* And it goes on re-scanning, at the interval it says now: that
	 * grows with what a walk took, on a machine loaded meanwhile. */
	struct rescans_after r = {metrics, before};
	every = sample_in(metrics, "atomsync_rescan_interval_seconds"
				   "{sync=\"big\"}");
	ck_assert(tu_wait_for(rescans_after, &r, (int)(every * 2000) + 10000));
	stop_daemon();
	free(metrics);
	free(big);
	free(out);
}

START_TEST(test_rescans_past_max_watches_cost_little_cpu)
{
	large_tree_costs_little(false);
}
END_TEST

START_TEST(test_rescans_past_the_kernel_limit_cost_little_cpu)
{
	const char *probe[] = {"unshare", "--user", "--map-root-user", "sh", "-c",
			       "echo 100 > /proc/sys/user/max_inotify_watches",
			       NULL};
	/* Needed as by test_out_of_inotify_watches_falls_back_to_rescans:
	 * a test that passed without running would say nothing. */
	ck_assert_msg(tu_run(probe, NULL, NULL, 5000) == 0,
		      "this test needs user namespaces (unshare --user)");
	large_tree_costs_little(true);
}
END_TEST

START_TEST(test_event_loop_closes_cleanly_under_valgrind)
{
	ck_assert_msg(access("/usr/bin/valgrind", X_OK) == 0,
		      "valgrind is needed (scripts/test installs it)");
	tu_write(src, "a", "1", 0644);
	const char *argv[] = {"valgrind", "--quiet", "--error-exitcode=99",
			      "--leak-check=full", "--show-leak-kinds=definite,indirect",
			      "--errors-for-leak-kinds=definite,indirect",
			      tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", NULL};
	pid = tu_spawn(argv, logpath);
	converge(src, dst, 30000);
	tu_write(src, "b/c", "2", 0644);
	converge(src, dst, 10000);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_log("re-scanning", 1, 10000);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	int st = tu_wait_exit(pid, 30000);
	pid = 0;
	ck_assert_msg(st == 0, "exit status %d under valgrind", st);
	ck_assert_int_eq(tu_file_count(logpath, "did not close cleanly"), 0);
}
END_TEST

START_TEST(test_target_removed_or_moved_is_published_anew)
{
	tu_write(src, "app.conf", "v1", 0644);
	/* There already: its creation is no event to publish again for. */
	tu_mkdirs(dst, 0755);
	start_adhoc("0");
	converge(src, dst, 5000);
	/* Each publish is followed by a re-read once its watches are in
	 * place: wait for it, so the removal does not race a publish. */
	wait_log("unchanged", 1, 5000);
	/* An operator "resets" the target. */
	tu_rmrf(dst);
	converge(src, dst, tu_scale(5000));
	wait_log("was removed; publishing it anew", 1, 1000);
	/* Or moves it away: the configured path is the target. */
	char *moved = tu_path(tmp, "moved");
	ck_assert_int_eq(rename(dst, moved), 0);
	converge(src, dst, tu_scale(5000));
	wait_log("was moved away or replaced by another directory", 1, 1000);
	tu_write(src, "app.conf", "v2", 0644);
	converge(src, dst, 5000);
	/* The moved copy is left as it was. */
	char *old = tu_path(moved, "app.conf");
	char *data = tu_read(old, NULL);
	ck_assert_str_eq(data, "v1");
	free(data);
	/* A new, empty directory in its place is filled.  Swapped in at
	 * once: moved away first, the target would be healed before a
	 * mkdir could make the empty one. */
	char *aside = tu_path(tmp, "aside");
	ck_assert_int_eq(mkdir(aside, 0755), 0);
	ck_assert_int_eq(renameat2(AT_FDCWD, aside, AT_FDCWD, dst,
				   RENAME_EXCHANGE), 0);
	converge(src, dst, tu_scale(5000));
	stop_daemon();
	/* One line each time. */
	ck_assert_int_eq(tu_file_count(logpath, "publishing it anew"), 3);
	free(aside);
	free(old);
	free(moved);
}
END_TEST

/* What an operator removes or repoints in the target (the live
 * generation, a visible link, ..data) is put back at once, not at the
 * next re-scan, 300 s away. */
START_TEST(test_what_is_removed_in_the_target_is_put_back)
{
	tu_write(src, "app.conf", "v1", 0644);
	tu_write(src, "tls/cert.pem", "cert", 0600);
	start_adhoc("0");
	converge(src, dst, 5000);
	wait_log("unchanged", 1, 5000);
	char *live = tu_live(dst), *gen = tu_path(dst, live);
	tu_rmrf(gen);
	converge(src, dst, tu_scale(6000));
	char *vis = tu_path(dst, "app.conf");
	ck_assert_int_eq(unlink(vis), 0);
	converge(src, dst, tu_scale(6000));
	/* A visible link repointed holds no data: put back, while a change
	 * elsewhere is published all the same. */
	char *vtmp = tu_path(dst, "..vtmp");
	ck_assert_int_eq(symlink("..data/tls", vtmp), 0);
	ck_assert_int_eq(rename(vtmp, vis), 0);
	tu_write(src, "tls/cert.pem", "cert2", 0600);
	converge(src, dst, tu_scale(6000));
	wait_log("app.conf named ..data/tls; put back, naming ..data/app.conf",
		 1, 3000);
	char *data = tu_path(dst, "..data"), *tmpl = tu_path(dst, "..tmp");
	ck_assert_int_eq(symlink("..nowhere", tmpl), 0);
	ck_assert_int_eq(rename(tmpl, data), 0);
	converge(src, dst, tu_scale(6000));
	/* The live generation renamed, not removed: its files are intact
	 * where it went, but readers do not find them. */
	char *now = tu_live(dst), *where = tu_path(dst, now);
	char *aside = tu_path(dst, "..moved-by-hand");
	ck_assert_int_eq(rename(where, aside), 0);
	converge(src, dst, tu_scale(6000));
	/* Each is found at once, unless a publish under way puts it back
	 * first. */
	int checks = tu_file_count(logpath, "checking the target whole");
	ck_assert_int_ge(checks, 1);
	ck_assert_int_le(checks, 5);
	/* The daemon's own publishes are as published: none is followed
	 * by a check of the whole target.  The events of the first are
	 * read before the change that starts the second. */
	tu_write(src, "app.conf", "v2", 0644);
	converge(src, dst, 3000);
	tu_write(src, "app.conf", "v3", 0644);
	converge(src, dst, 3000);
	ck_assert_int_eq(tu_file_count(logpath, "checking the target whole"),
			 checks);
	stop_daemon();
	free(aside);
	free(where);
	free(now);
	free(tmpl);
	free(data);
	free(vtmp);
	free(vis);
	free(gen);
	free(live);
}
END_TEST

/* ..data made a directory by hand, round after round: each put-back
 * that finds it there fails, and once it is moved away the next is made
 * as soon as the target is quiet (a second), not after a wait grown by
 * the rounds before (4 s, then 8, 16 and up to 60 s, before). */
START_TEST(test_a_failed_put_back_is_made_once_the_obstacle_goes)
{
	char *data = tu_path(dst, "..data"), *in_way = tu_path(dst, "in-way");
	const char *failed = "exists and is not a symlink";

	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	for (int round = 1; round <= 3; round++) {
		int seen = tu_file_count(logpath, failed);
		/* In one step: a put-back still under way must not put the
		 * link back between its removal and the directory. */
		ck_assert_int_eq(mkdir(in_way, 0755), 0);
		ck_assert_int_eq(renameat2(AT_FDCWD, in_way, AT_FDCWD, data,
					   RENAME_EXCHANGE),
				 0);
		ck_assert_int_eq(unlink(in_way), 0);
		wait_log(failed, seen + 1, 10000);
		ck_assert_int_eq(rmdir(data), 0);
		converge(src, dst, 2500);
	}
	stop_daemon();
	free(in_way);
	free(data);
}
END_TEST

/* A user who writes the source can make names to warn about as fast as
 * they like (FIFOs, under new names): at most 100 lines a minute say
 * so, then one line says the rest are counted. */
START_TEST(test_warnings_about_the_source_are_limited_a_minute)
{
	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	for (int i = 0; i < 150; i++) {
		char name[32], *p;
		snprintf(name, sizeof(name), "fifo%03d", i);
		p = tu_path(src, name);
		ck_assert_int_eq(mkfifo(p, 0644), 0);
		free(p);
	}
	wait_log("more than 100 warnings about it in a minute", 1, 10000);
	ck_assert_int_eq(tu_file_count(logpath, "(FIFO, socket or device)"),
			 100);
	stop_daemon();
	ck_assert_int_eq(tu_file_count(logpath, "more than 100 warnings"), 1);
}
END_TEST

/* dir/fifo0..fifo{n-1}, names a read leaves out (and, unlike links,
 * no cause to read the source whole), made in tmp and moved into the
 * source at once. */
static void fifos(const char *dir, int n)
{
	char *d = tu_path(tmp, dir), *in = tu_path(src, dir);
	tu_mkdirs(d, 0755);
	for (int i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "fifo%d", i);
		char *p = tu_path(d, name);
		ck_assert_int_eq(mkfifo(p, 0644), 0);
		free(p);
	}
	ck_assert_int_eq(rename(d, in), 0);
	free(in);
	free(d);
}

/* The names reads leave out are bounded in the whole source, however it
 * was read: a refresh of one directory counts those of the rest too. */
START_TEST(test_names_left_out_are_bounded_across_refreshes)
{
	char *text;
	ck_assert_int_ge(asprintf(&text, "[sync:a]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\nmax_files = 100\n",
				  src, dst),
			 0);
	write_conf(text);
	tu_write(src, "app.conf", "v1", 0644);
	start_conf();
	wait_target("app.conf", "v1", 5000);
	fifos("A", 70);
	tu_write(src, "app.conf", "v2", 0644);
	wait_target("app.conf", "v2", 5000);
	fifos("B", 70);
	tu_write(src, "app.conf", "v3", 0644);
	wait_log("more than 100 names left out (skipped or excluded; "
		 "max_files)",
		 1, 5000);
	stop_daemon();
	char *p = tu_path(dst, "app.conf"), *got = tu_read(p, NULL);
	ck_assert_str_eq(got, "v2");
	free(got);
	free(p);
	free(text);
}
END_TEST

/* A read keeps its first 1000 warnings and counts the rest, which one
 * line says, before the lines of the minute run out. */
START_TEST(test_warnings_past_a_thousand_a_read_are_counted)
{
	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	char *d = tu_path(tmp, "gone");
	tu_mkdirs(d, 0755);
	for (int i = 0; i < 1005; i++) {
		char name[32], *p;
		snprintf(name, sizeof(name), "gone/link%04d", i);
		p = tu_path(tmp, name);
		ck_assert_int_eq(symlink("nowhere", p), 0);
		free(p);
	}
	char *in = tu_path(src, "gone");
	ck_assert_int_eq(rename(d, in), 0);
	wait_log("more than 1000 warnings about one read; those past the "
		 "first are not listed",
		 1, 10000);
	wait_log("more than 100 warnings about it in a minute", 1, 10000);
	ck_assert_int_eq(tu_file_count(logpath, "dangling symlink"), 99);
	stop_daemon();
	free(in);
	free(d);
}
END_TEST

/* Publishing that keeps failing because of something in the target
 * backs off, up to a minute; the operator's fix is an event there, and
 * is tried once the target is quiet, not after the rest of the wait.
 * A publish that goes through starts the backoff over. */
START_TEST(test_a_fix_in_the_target_ends_the_backoff)
{
	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	wait_log("unchanged", 1, 5000);
	char *data = tu_path(dst, "..data");
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(mkdir(data, 0755), 0);
	/* The fourth failure: the next attempt is 8 s away. */
	wait_log("still failing: target", 3, tu_scale(20000));
	ck_assert_int_eq(rmdir(data), 0);
	converge(src, dst, 3000);
	wait_log("publishing works again (after 4 failed attempts)", 1,
		 3000);
	/* Broken again: tried again after 1 s, then 2 s, as the first
	 * time, not after the 32 s that a sixth failure in a row waits. */
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(mkdir(data, 0755), 0);
	wait_log("retrying with backoff", 2, 5000);
	wait_log("still failing: target", 5, 8000);
	/* Put back again, once the target has been quiet for a wait that
	 * grows with each put-back in a minute (4 s for this third). */
	ck_assert_int_eq(rmdir(data), 0);
	converge(src, dst, tu_scale(10000));
	stop_daemon();
	free(data);
}
END_TEST

/* The same for a source that something else took the place of (a file):
 * its name in its parent is watched, and the directory put back is
 * tried once it is quiet, as a source that appears is. */
START_TEST(test_a_fix_of_the_source_ends_the_backoff)
{
	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	tu_rmrf(src);
	tu_write(tmp, "src", "not a directory", 0644);
	/* The fourth failure: the next attempt is 8 s away. */
	wait_log("still failing: source", 3, tu_scale(20000));
	ck_assert_int_eq(unlink(src), 0);
	tu_mkdirs(src, 0755);
	tu_write(src, "app.conf", "v2", 0644);
	long long fixed = tu_now_ms();
	converge(src, dst, 10000);
	ck_assert_msg(tu_now_ms() - fixed < tu_scale(4000),
		      "published %lld ms after the source was put back: the "
		      "backoff's, not once it was quiet",
		      tu_now_ms() - fixed);
	wait_log("publishing works again", 1, 1000);
	stop_daemon();
}
END_TEST

/* A publish that fails after it wrote into the target (a full file
 * system) backs off as the man page says: its own generation, made and
 * removed, is no fix of the operator's that would bring the next
 * attempt nearer.  An operator's change there still does. */
START_TEST(test_a_full_target_backs_off)
{
	/* In a mount namespace of the forked test's own. */
	tu_private_mounts();
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(mount("tmpfs", dst, "tmpfs", 0, "size=256k,mode=0755"),
			 0);
	tu_write(src, "small", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	char *filler = calloc(1, 64 * 1024 + 1), *big = malloc(220 * 1024 + 1);
	memset(filler, 'f', 64 * 1024);
	memset(big, 'b', 220 * 1024);
	big[220 * 1024] = '\0';
	tu_write(dst, "filler", filler, 0644);
	tu_write(src, "big", big, 0644);
	wait_log("No space left on device; retrying with backoff", 1, 5000);
	/* Tried again after 1 s, then 2 s later, then not for 4 s: each
	 * time the same error, else it is told anew at error level. */
	wait_log("still failing: target", 2, tu_scale(8000));
	long long until = tu_now_ms() + 2500;
	while (tu_now_ms() < until)
		tu_nap(50);
	ck_assert_msg(tu_file_count(logpath, "still failing: target") == 2,
		      "%d failed attempts where 3 are due (1 s, then 2 s, then "
		      "4 s apart)",
		      tu_file_count(logpath, "still failing: target") + 1);
	/* The fourth: the next is 8 s away, but space made in the target
	 * is tried once the target is quiet (a second). */
	wait_log("still failing: target", 3, tu_scale(6000));
	char *f = tu_path(dst, "filler");
	ck_assert_int_eq(unlink(f), 0);
	long long made = tu_now_ms();
	converge(src, dst, 10000);
	ck_assert_msg(tu_now_ms() - made < 6000,
		      "put back %lld ms after space was made: the backoff's, "
		      "not a second after",
		      tu_now_ms() - made);
	wait_log("publishing works again (after 4 failed attempts)", 1, 1000);
	stop_daemon();
	ck_assert_int_eq(umount2(dst, MNT_DETACH), 0);
	free(f);
	free(big);
	free(filler);
}
END_TEST

/* The daemon holds nothing in the target open to write between
 * publishes (the lock file is open to read, the journal opened for each
 * record): the target's file system can be remounted read-only while it
 * runs, and the daemon publishes again once it is writable. */
START_TEST(test_the_target_can_be_remounted_read_only)
{
	tu_private_mounts();
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(mount("tmpfs", dst, "tmpfs", 0, "size=1m,mode=0755"), 0);
	char name[32];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "f%02d", i);
		tu_write(src, name, "v1", 0644);
	}
	start_adhoc("0");
	converge(src, dst, 5000);
	/* Two more publishes, of a file each: recorded in the journal,
	 * unless the files read first were too new to be trusted (then
	 * the state is written whole; check_writer holds the journal to
	 * it). */
	tu_write(src, "f00", "v2", 0644);
	converge(src, dst, 5000);
	tu_write(src, "f01", "v2", 0644);
	converge(src, dst, 5000);
	/* Busy only while the daemon writes there (the record of the last
	 * publish, the replaced generation removed a second on): tried
	 * again until then. */
	long long until = tu_now_ms() + tu_scale(5000);
	int rc;
	while ((rc = mount("none", dst, "none", MS_REMOUNT | MS_RDONLY, NULL)) < 0 &&
	       errno == EBUSY && tu_now_ms() < until)
		tu_nap(50);
	ck_assert_msg(rc == 0, "remount read-only: %s", strerror(errno));
	tu_write(src, "f02", "v2", 0644);
	wait_log("Read-only file system", 1, 5000);
	ck_assert_int_eq(mount("none", dst, "none", MS_REMOUNT, NULL), 0);
	converge(src, dst, tu_scale(10000));
	stop_daemon();
	ck_assert_int_eq(umount2(dst, MNT_DETACH), 0);
}
END_TEST

/* A target in a directory every user can write: whoever moves it away
 * there could move each copy made anew away again (root's files, which
 * they cannot remove), so it is not made anew until root makes it. */
START_TEST(test_a_target_others_moved_away_is_not_made_anew)
{
	ck_assert_msg(tu_can_setuid(),
		      "this test acts as another user: run it as root");
	char *par = tu_path(tmp, "shared"), *tgt = tu_path(par, "tgt");
	char *cmd = NULL;
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	tu_mkdirs(par, 0777);
	ck_assert_int_eq(chmod(par, 0777), 0);
	tu_write(src, "app.conf", "v1", 0644);
	const char *argv[] = {tu_bin(), "--source", src, "--target", tgt,
			      "--debounce", "0", "--log-level", "debug", NULL};
	pid = tu_spawn(argv, logpath);
	converge(src, tgt, 5000);
	wait_log("unchanged", 1, 5000);
	ck_assert_int_ne(asprintf(&cmd, "mv %s %s/theirs", tgt, par), -1);
	ck_assert_int_eq(tu_sh_as(2009, cmd), 0);
	wait_log("is gone, and directory", 1, 5000);
	wait_log("not making it anew", 1, 1000);
	tu_write(src, "app.conf", "v2", 0644);
	wait_log("still failing: target", 1, 5000);
	ck_assert_int_ne(access(tgt, F_OK), 0);
	/* What is gone is not told as live. */
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_log("status: target not open; 0 files, 0 bytes;", 1, 5000);
	/* Made again by root: published to. */
	ck_assert_int_eq(mkdir(tgt, 0755), 0);
	converge(src, tgt, tu_scale(10000));
	/* Said once the publish is over, as its status is. */
	wait_log("publishing works again", 1, 5000);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_log("status: live ..", 1, 5000);
	/* Moved away with one of theirs put in its place, removed once
	 * refused: not made anew either. */
	free(cmd);
	ck_assert_int_ne(asprintf(&cmd, "mv %s %s/again && mkdir %s", tgt,
				  par, tgt), -1);
	ck_assert_int_eq(tu_sh_as(2009, cmd), 0);
	wait_log("owned by uid 2009", 1, 5000);
	int gone = tu_file_count(logpath, "is gone, and directory");
	ck_assert_int_eq(rmdir(tgt), 0);
	tu_write(src, "app.conf", "v3", 0644);
	wait_log("is gone, and directory", gone + 1, 10000);
	ck_assert_int_ne(access(tgt, F_OK), 0);
	ck_assert_int_eq(mkdir(tgt, 0755), 0);
	converge(src, tgt, tu_scale(10000));
	/* The copy moved away is left as it was. */
	char *old = tu_path(par, "theirs/app.conf"), *data = tu_read(old, NULL);
	ck_assert_str_eq(data, "v1");
	stop_daemon();
	free(data);
	free(old);
	free(cmd);
	free(tgt);
	free(par);
}
END_TEST

/* Touches a name of its own in `dir` every 100 ms until killed: an
 * operator at work in the target. */
static pid_t start_toucher(const char *dir)
{
	char *junk = tu_path(dir, "operator.tmp");
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		const struct timespec ts = {.tv_nsec = 100 * 1000000L};
		for (;;) {
			int fd = open(junk, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (fd >= 0)
				close(fd);
			unlink(junk);
			nanosleep(&ts, NULL);
		}
	}
	free(junk);
	return p;
}

/* A put-back waits for the target to be quiet, and each event there
 * pushes it on; a change in the source must not wait with it, or an
 * operator busy in the target would hold every change back. */
START_TEST(test_a_busy_target_holds_no_change_back)
{
	tu_write(src, "app.conf", "v1", 0644);
	tu_write(src, "other.conf", "o1", 0644);
	start_adhoc("100");
	converge(src, dst, 5000);
	/* Its visible links are made after ..data names it: wait for the
	 * re-read that follows the publish. */
	wait_log("unchanged", 1, 5000);
	char *vis = tu_path(dst, "other.conf");
	ck_assert_int_eq(unlink(vis), 0);
	wait_log("checking the target whole", 1, 5000);
	pid_t t = start_toucher(dst);
	tu_write(src, "app.conf", "v2", 0644);
	/* Published, and the link put back with it, while the target is
	 * still busy. */
	converge(src, dst, 3000);
	tu_kill(t);
	stop_daemon();
	free(vis);
}
END_TEST

/* rm -rf of the target, which must not fail for a put-back under it;
 * the target is then published anew. */
static void rm_rf_target(void)
{
	char *out = NULL, *err = NULL;
	const char *rm[] = {"rm", "-rf", dst, NULL};

	ck_assert_msg(tu_run(rm, &out, &err, 60000) == 0, "rm -rf: %s", err);
	converge(src, dst, tu_scale(10000));
	wait_log("was removed; publishing it anew", 1, 1000);
	stop_daemon();
	free(out);
	free(err);
}

/* An rm -rf of the whole target while the daemon idles removes the live
 * generation and visible links before the target: that is not put back
 * under it (rm would fail, the directory not empty), and once the target
 * is gone it is published anew. */
START_TEST(test_rm_rf_of_the_target_is_not_fought_over)
{
	char name[32];
	for (int k = 0; k < 2000; k++) {
		snprintf(name, sizeof(name), "n%04d", k);
		tu_write(src, name, name, 0644);
	}
	start_adhoc("0");
	converge(src, dst, tu_scale(20000));
	wait_log("unchanged", 1, tu_scale(10000));
	wait_log("standby generation linked", 1, tu_scale(10000));
	rm_rf_target();
}
END_TEST

/* What an rm -rf of the target removes first, by hand: the visible links
 * and ..data, changes to the target directory itself that make a put-back
 * due once the target is quiet.  The live generation (malloc'ed). */
static char *unlink_top(void)
{
	char *live = tu_live(dst);
	ck_assert_ptr_nonnull(live);
	char *gen = tu_path(dst, live);
	DIR *d = opendir(dst);
	ck_assert_ptr_nonnull(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_type == DT_LNK)
			ck_assert_int_eq(unlinkat(dirfd(d), e->d_name, 0), 0);
	closedir(d);
	free(live);
	return gen;
}

/* Removes `n` files of the directory `dir`, one every 50 ms: an rm -rf at
 * work in a generation, which changes nothing in the target directory
 * meanwhile.  Nothing may be put back in the target under it. */
static void remove_slowly(const char *dir, int n)
{
	int names = tu_count_names(dst);
	char name[32];

	for (int k = 0; k < n; k++) {
		snprintf(name, sizeof(name), "f%02d", k);
		char *f = tu_path(dir, name);
		ck_assert_int_eq(unlink(f), 0);
		free(f);
		tu_nap(50);
		ck_assert_int_le(tu_count_names(dst), names);
		ck_assert_ptr_null(tu_live(dst));
	}
}

static void slow_rm_setup(void)
{
	char name[32];

	for (int k = 0; k < 60; k++) {
		snprintf(name, sizeof(name), "a/f%02d", k);
		tu_write(src, name, name, 0644);
	}
	tu_write(src, "top.conf", "t", 0644);
	start_adhoc("0");
	converge(src, dst, tu_scale(10000));
	/* Both, in either order, before the target is touched: with the
	 * loop slow to turn, the standby can be linked before the read of
	 * the newly watched directories, a publish that goes ahead (and
	 * puts ..data back) whatever the target is doing. */
	wait_log("unchanged", 1, tu_scale(10000));
	wait_log("standby generation linked", 1, tu_scale(10000));
}

/* An rm -rf that takes its time (a large tree, a loaded machine) empties
 * a generation for seconds with nothing changed in the target directory
 * itself: the put-back of the links and ..data it removed first waits
 * for it, rather than making its last rmdir fail. */
START_TEST(test_a_slow_rm_rf_of_the_target_is_not_fought_over)
{
	slow_rm_setup();
	char *gen = unlink_top(), *sub = tu_path(gen, "a");
	remove_slowly(sub, 60); /* 3 s: three times the quiet wait */
	rm_rf_target();
	free(sub);
	free(gen);
}
END_TEST

/* The same rm -rf stopped half-way (^C) leaves the target without
 * ..data: once nothing in it changes, it is put back. */
START_TEST(test_an_interrupted_rm_rf_of_the_target_is_put_back)
{
	slow_rm_setup();
	char *gen = unlink_top(), *sub = tu_path(gen, "a");
	remove_slowly(sub, 30);
	converge(src, dst, tu_scale(10000));
	stop_daemon();
	free(sub);
	free(gen);
}
END_TEST

/* A release deployed by swapping a symbolic link on the way to the
 * source (current -> rel2), or by renaming a directory on the way and
 * putting another in its place, is published at once, not at the next
 * re-scan (300 s away): the directories on the way are watched. */
START_TEST(test_swaps_on_the_way_to_the_source_are_followed)
{
	char *r1 = tu_path(tmp, "rel1"), *r2 = tu_path(tmp, "rel2");
	char *cur = tu_path(tmp, "current"), *next = tu_path(tmp, "next");
	char *source = tu_path(cur, "config"), *old = tu_path(tmp, "old");
	tu_write(r1, "config/app", "v1", 0644);
	tu_write(r2, "config/app", "v2", 0644);
	ck_assert_int_eq(symlink("rel1", cur), 0);
	const char *argv[] = {tu_bin(), "--source", source, "--target", dst,
			      "--debounce", "0", "--log-level", "debug", NULL};
	pid = tu_spawn(argv, logpath);
	wait_target("app", "v1", 5000);
	ck_assert_int_eq(symlink("rel2", next), 0);
	ck_assert_int_eq(rename(next, cur), 0);
	wait_target("app", "v2", tu_scale(3000));
	/* Watched where it is now. */
	tu_write(r2, "config/app", "v3", 0644);
	wait_target("app", "v3", tu_scale(3000));
	ck_assert_int_eq(rename(r2, old), 0);
	tu_write(r2, "config/app", "v4", 0644);
	wait_target("app", "v4", tu_scale(3000));
	stop_daemon();
	free(old);
	free(source);
	free(next);
	free(cur);
	free(r2);
	free(r1);
}
END_TEST

/* Waits for the fourth failure in a row (the one after it is 8 s away),
 * `before` of them logged before, makes the fix, and sees it published
 * well before the backoff would have it. */
static void fixed_soon(int before, void (*fix)(void), const char *file,
		       const char *data)
{
	wait_log("still failing:", before + 3, tu_scale(12000));
	fix();
	long long made = tu_now_ms();
	wait_target(file, data, 10000);
	/* Slower machines get more, never the backoff's 8 s. */
	int limit = tu_scale(5000) < 7000 ? tu_scale(5000) : 7000;
	long long took = tu_now_ms() - made;
	if (took >= limit) {
		char *log = tu_read(logpath, NULL);
		fprintf(stderr, "%s\n", log ? log : "");
		free(log);
	}
	ck_assert_msg(took < limit,
		      "%s published %lld ms after the fix: the backoff's, not "
		      "once quiet",
		      data, took);
}

static void remount_rw(void)
{
	ck_assert_int_eq(mount("none", dst, "none", MS_REMOUNT | MS_BIND, NULL),
			 0);
}

static void chmod_target(void)
{
	ck_assert_int_eq(chmod(dst, 0755), 0);
}

static void shrink_source(void)
{
	char *p = tu_path(src, "big");
	ck_assert_int_eq(unlink(p), 0);
	tu_write(src, "app.conf", "v4", 0644);
	free(p);
}

/* A target removed and a file put in its place is not told as open by
 * SIGUSR1 (what was published is gone with it), and a directory put
 * back is published to. */
START_TEST(test_a_file_in_place_of_the_target_is_no_open_target)
{
	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	converge(src, dst, 5000);
	wait_log("unchanged", 1, 5000);
	tu_rmrf(dst);
	tu_write(tmp, "dst", "a file", 0644);
	tu_write(src, "app.conf", "v2", 0644);
	wait_log("not a directory (a file is in its place, say); move it away",
		 1, 5000);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_log("status: target not open; 0 files, 0 bytes;", 1, 5000);
	ck_assert_int_eq(unlink(dst), 0);
	ck_assert_int_eq(mkdir(dst, 0755), 0);
	converge(src, dst, tu_scale(10000));
	stop_daemon();
}
END_TEST

/* What operators do to fix a target that keeps failing, and that no
 * directory watched sees, ends the backoff as a fix in the target does:
 * a file system remounted read-write, a chmod of one mounted on the
 * target (which the daemon refused, others being able to write it), and
 * less in the source where the target has no room. */
START_TEST(test_fixes_of_mounts_and_room_end_the_backoff)
{
	/* In a mount namespace of the forked test's own. */
	tu_private_mounts();
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(mount(dst, dst, NULL, MS_BIND, NULL), 0);
	ck_assert_int_eq(mount("none", dst, "none",
			       MS_REMOUNT | MS_BIND | MS_RDONLY, NULL),
			 0);
	tu_write(src, "app.conf", "v1", 0644);
	start_adhoc("0");
	wait_log("Read-only file system; retrying with backoff", 1, 5000);
	fixed_soon(0, remount_rw, "app.conf", "v1");
	int before = tu_file_count(logpath, "still failing:");
	ck_assert_int_eq(mount("tmpfs", dst, "tmpfs", 0, "size=256k,mode=1777"),
			 0);
	tu_write(src, "app.conf", "v2", 0644);
	fixed_soon(before, chmod_target, "app.conf", "v2");
	before = tu_file_count(logpath, "still failing:");
	char *big = malloc(300 * 1024 + 1);
	memset(big, 'b', 300 * 1024);
	big[300 * 1024] = '\0';
	tu_write(src, "big", big, 0644);
	tu_write(src, "app.conf", "v3", 0644);
	fixed_soon(before, shrink_source, "app.conf", "v4");
	stop_daemon();
	ck_assert_int_eq(umount2(dst, MNT_DETACH), 0);
	ck_assert_int_eq(umount2(dst, MNT_DETACH), 0);
	free(big);
}
END_TEST

/* A release put in place by mounting it over the source, and a tmpfs
 * target unmounted from under the daemon: no directory it watches sees
 * either, so it follows the mount table. */
START_TEST(test_mounts_over_the_source_and_target_are_followed)
{
	/* In a mount namespace of the forked test's own. */
	tu_private_mounts();
	char *rel1 = tu_path(tmp, "rel1"), *rel2 = tu_path(tmp, "rel2");
	tu_write(rel1, "app.conf", "v1", 0644);
	tu_write(rel2, "app.conf", "v2", 0644);
	ck_assert_int_eq(mount(rel1, src, NULL, MS_BIND, NULL), 0);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(mount("tmpfs", dst, "tmpfs", 0, "mode=0755"), 0);
	start_adhoc("0");
	wait_target("app.conf", "v1", 5000);
	wait_log("unchanged", 1, 5000);
	ck_assert_int_eq(mount(rel2, src, NULL, MS_BIND, NULL), 0);
	wait_target("app.conf", "v2", tu_scale(3000));
	/* And watched where it is now. */
	tu_write(src, "app.conf", "v3", 0644);
	wait_target("app.conf", "v3", tu_scale(3000));
	ck_assert_int_eq(umount2(dst, MNT_DETACH), 0);
	wait_target("app.conf", "v3", tu_scale(3000));
	wait_log("names another directory since the mounts changed", 2, 1000);
	stop_daemon();
	ck_assert_int_eq(umount2(src, MNT_DETACH), 0);
	ck_assert_int_eq(umount2(src, MNT_DETACH), 0);
	free(rel1);
	free(rel2);
}
END_TEST

/* A source emptied but for an excluded file: the re-read of its one
 * directory says it is empty, and counts only the names it left out
 * (not those of the read before as well). */
START_TEST(test_an_emptied_source_counts_the_names_left_out_once)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", "--exclude", "*.tmp",
			      "--log-level", "debug", NULL};
	char *a = tu_path(src, "a");
	tu_write(src, "a", "1", 0644);
	tu_write(src, "b.tmp", "2", 0644);
	pid = tu_spawn(argv, logpath);
	wait_target("a", "1", 5000);
	ck_assert_int_eq(unlink(a), 0);
	wait_log("is empty", 1, 5000);
	stop_daemon();
	int once = tu_file_count(logpath, "is empty; keeping");
	int counted = tu_file_count(logpath, "is empty (1 name in it left out");
	ck_assert_msg(once + counted == tu_file_count(logpath, "is empty"),
		      "%s", tu_read(logpath, NULL));
	free(a);
}
END_TEST

/* A source that is gone names no other directory: a mount elsewhere
 * meanwhile is not reported as one, only the publish's own failure.
 * (Moved away and back, it is the directory it was, however late the
 * daemon looks at the mount table.) */
START_TEST(test_a_mount_elsewhere_while_the_source_is_gone_says_nothing)
{
	tu_private_mounts();
	char *mp = tu_path(tmp, "mp"), *away = tu_path(tmp, "src.away");
	tu_write(src, "app.conf", "v1", 0644);
	tu_mkdirs(mp, 0755);
	start_adhoc("0");
	wait_target("app.conf", "v1", 5000);
	ck_assert_int_eq(rename(src, away), 0);
	wait_log("No such file or directory", 1, 5000);
	int failing = tu_file_count(logpath, "still failing: source");
	ck_assert_int_eq(mount("tmpfs", mp, "tmpfs", 0, "size=64k"), 0);
	ck_assert_int_eq(umount2(mp, MNT_DETACH), 0);
	/* The read the mount table's change asks for, while it is gone. */
	wait_log("still failing: source", failing + 1, 5000);
	tu_write(away, "app.conf", "v2", 0644);
	ck_assert_int_eq(rename(away, src), 0);
	wait_target("app.conf", "v2", tu_scale(5000));
	stop_daemon();
	ck_assert_int_eq(tu_file_count(logpath, "names another directory"), 0);
	free(away);
	free(mp);
}
END_TEST

/* Links `to` to the file `from`, and writes "new" through it. */
static void write_through_new_name(const char *from, const char *to)
{
	ck_assert_int_eq(link(from, to), 0);
	int fd = open(to, O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "new\n", 4), 4);
	ck_assert_int_eq(close(fd), 0);
}

/* A new name for a published file, and the file written through it at
 * once: the event names only the new name, but the old one changed as
 * well, and is published so. */
START_TEST(test_a_file_written_through_a_new_name_changes_under_both)
{
	char *f = tu_path(src, "d1/f"), *h = tu_path(src, "d2/h");

	tu_write(src, "d1/f", "old\n", 0644);
	tu_write(src, "d2/other", "x\n", 0644);
	start_adhoc("0");
	converge(src, dst, 3000);
	write_through_new_name(f, h);
	converge(src, dst, 5000);
	stop_daemon();
	free(h);
	free(f);
}
END_TEST

/* The same through a new name that is excluded (an editor's "m.tmp"
 * twin): the event names only that name, which is not published, but
 * the file changed under its own. */
START_TEST(test_a_file_written_through_an_excluded_new_name_changes)
{
	char *m = tu_path(src, "d1/m"), *t = tu_path(src, "d1/m.tmp"), *text;
	char *shown = tu_path(dst, "d1/m");

	tu_write(src, "d1/m", "old\n", 0644);
	ck_assert_int_gt(asprintf(&text, "[sync:s]\nsource = %s\ntarget = %s\n"
					 "debounce_ms = 0\nexclude = *.tmp\n",
				  src, dst),
			 0);
	write_conf(text);
	start_conf();
	converge(src, dst, 5000);
	write_through_new_name(m, t);
	struct tu_needle n = {shown, "new", 1};
	ck_assert_msg(tu_wait_for(tu_file_holds, &n, 5000),
		      "d1/m not published again");
	stop_daemon();
	free(text);
	free(shown);
	free(t);
	free(m);
}
END_TEST

/* The kernel's queue of events, as many as it holds. */
static unsigned long queued_events_max(void)
{
	char *t = tu_read("/proc/sys/fs/inotify/max_queued_events", NULL);
	unsigned long n = t ? strtoul(t, NULL, 10) : 0;

	free(t);
	ck_assert_msg(n > 0 && n <= 1000000, "max_queued_events: %lu", n);
	return n;
}

/* `n` excluded files in `dir`, made or removed in one go. */
static void excluded_files(const char *dir, unsigned long n, bool make)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	ck_assert_int_ge(dfd, 0);
	for (unsigned long i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "x%lu.tmp", i);
		if (make) {
			int fd = openat(dfd, name,
					O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			ck_assert_int_ge(fd, 0);
			close(fd);
		} else {
			ck_assert_int_eq(unlinkat(dfd, name, 0), 0);
		}
	}
	close(dfd);
}

/* Fifty files d00/f .. d49/f below `root`, all holding `text`. */
static void fifty_files(const char *root, const char *text)
{
	for (int i = 0; i < 50; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "d%02d/f", i);
		tu_write(root, rel, text, 0644);
	}
}

/* While the daemon is not scheduled, a build floods a source with
 * excluded names, more than the kernel queues, and then files change
 * (in the same mapping's source, or in another's, whose watches share
 * the one queue): their events are lost with the queue's overflow,
 * which libuv does not report.  The excluded names count towards it all
 * the same, so the sources are read whole and nothing is lost. */
START_TEST(test_a_flood_of_excluded_names_loses_no_change)
{
	unsigned long flood = queued_events_max() + 1000;
	char *text, *junk = tu_path(src, "junk"), *other = tu_path(tmp, "src2");
	char *dst2 = tu_path(tmp, "dst2");
	const char *changed = _i ? other : src, *shown = _i ? dst2 : dst;

	fifty_files(src, "0\n");
	fifty_files(other, "0\n");
	tu_mkdirs(junk, 0755);
	ck_assert_int_gt(asprintf(&text,
				  "[sync:s]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\nexclude = *.tmp\n"
				  "[sync:t]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\n",
				  src, dst, other, dst2),
			 0);
	write_conf(text);
	start_conf();
	converge(src, dst, 5000);
	converge(other, dst2, 5000);
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	excluded_files(junk, flood, true);
	fifty_files(changed, "1\n");
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	/* The excluded files go again, so the trees can compare equal. */
	excluded_files(junk, flood, false);
	converge(changed, shown, 10000);
	stop_daemon();
	free(dst2);
	free(other);
	free(junk);
	free(text);
}
END_TEST

START_TEST(test_certbot_live_directory_follows_renewals)
{
	/* /etc/letsencrypt as certbot keeps it: the files of live/NAME are
	 * links to numbered files in archive/NAME, and a renewal writes new
	 * files and moves the links. */
	char *le = tu_path(tmp, "letsencrypt");
	char *live = tu_path(le, "live/example.org");
	char *archive = tu_path(le, "archive");
	tu_write(archive, "example.org/cert1.pem", "CERT 1\n", 0644);
	tu_write(archive, "example.org/privkey1.pem", "KEY 1\n", 0600);
	tu_write(le, "secret/other.key", "not yours\n", 0600);
	tu_mkdirs(live, 0755);
	char *cert = tu_path(live, "cert.pem"), *key = tu_path(live, "privkey.pem");
	char *stray = tu_path(live, "stray.pem");
	ck_assert_int_eq(symlink("../../archive/example.org/cert1.pem", cert), 0);
	ck_assert_int_eq(symlink("../../archive/example.org/privkey1.pem", key), 0);
	ck_assert_int_eq(symlink("../../secret/other.key", stray), 0);
	char *text;
	ck_assert_int_gt(asprintf(&text,
				  "[sync:certs]\nsource = %s\ntarget = %s\n"
				  "debounce_ms = 0\nfollow_into = %s\n",
				  live, dst, archive), 0);
	write_conf(text);
	free(text);
	start_conf();
	char *tcert = tu_path(dst, "cert.pem"), *tstray = tu_path(dst, "stray.pem");
	struct tu_needle n = {tcert, "CERT 1", 1};
	ck_assert(tu_wait_for(tu_file_holds, &n, 5000));
	wait_log("stray.pem: symlink points outside the source; skipped", 1, 3000);
	ck_assert_int_ne(access(tstray, F_OK), 0);
	/* The warning belongs to the publish, so it comes before it (whose
	 * line follows the files it shows). */
	wait_log(": published ..", 1, 3000);
	char *log = tu_read(logpath, NULL);
	const char *skipped = strstr(log, "stray.pem: symlink points outside");
	const char *published = strstr(log, ": published ..");
	ck_assert_msg(published && skipped < published, "%s", log);
	free(log);
	/* certbot renew */
	tu_write(archive, "example.org/cert2.pem", "CERT 2\n", 0644);
	char *next = tu_path(live, "cert.pem.new");
	ck_assert_int_eq(symlink("../../archive/example.org/cert2.pem", next), 0);
	ck_assert_int_eq(rename(next, cert), 0);
	struct tu_needle n2 = {tcert, "CERT 2", 1};
	ck_assert(tu_wait_for(tu_file_holds, &n2, 5000));
	stop_daemon();
	free(next);
	free(tcert);
	free(tstray);
	free(cert);
	free(key);
	free(stray);
	free(archive);
	free(live);
	free(le);
}
END_TEST

/* The daemon's CPU time through re-scans, in a program of its own
 * (check_daemon_cpu, this file built with CHECK_DAEMON_CPU): its windows
 * of two re-scan intervals are mostly waiting, which `make -jN check`
 * then does beside the rest rather than after it. */
#ifdef CHECK_DAEMON_CPU
static const bool cpu_part = true;
#else
static const bool cpu_part = false;
#endif

static void add_daemon_cases(Suite *s)
{
	TCase *tc = tcase_create("daemon");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_startup_publish_then_live_changes);
	tcase_add_test(tc, test_a_file_written_through_a_new_name_changes_under_both);
	tcase_add_loop_test(tc, test_a_flood_of_excluded_names_loses_no_change, 0, 2);
	tcase_add_test(tc, test_a_file_written_through_an_excluded_new_name_changes);
	tcase_add_test(tc, test_target_removed_or_moved_is_published_anew);
	tcase_add_test(tc, test_what_is_removed_in_the_target_is_put_back);
	tcase_add_test(tc, test_a_failed_put_back_is_made_once_the_obstacle_goes);
	tcase_add_test(tc, test_warnings_about_the_source_are_limited_a_minute);
	tcase_add_test(tc, test_warnings_past_a_thousand_a_read_are_counted);
	tcase_add_test(tc, test_names_left_out_are_bounded_across_refreshes);
	tcase_add_test(tc, test_rm_rf_of_the_target_is_not_fought_over);
	tcase_add_test(tc, test_a_slow_rm_rf_of_the_target_is_not_fought_over);
	tcase_add_test(tc, test_an_interrupted_rm_rf_of_the_target_is_put_back);
	tcase_add_test(tc, test_a_busy_target_holds_no_change_back);
	tcase_add_test(tc, test_a_target_others_moved_away_is_not_made_anew);
	tcase_add_test(tc, test_a_fix_in_the_target_ends_the_backoff);
	tcase_add_test(tc, test_a_fix_of_the_source_ends_the_backoff);
	tcase_add_test(tc, test_a_full_target_backs_off);
	tcase_add_test(tc, test_the_target_can_be_remounted_read_only);
	tcase_add_test(tc, test_swaps_on_the_way_to_the_source_are_followed);
	tcase_add_test(tc, test_mounts_over_the_source_and_target_are_followed);
	tcase_add_test(tc, test_a_mount_elsewhere_while_the_source_is_gone_says_nothing);
	tcase_add_test(tc, test_an_emptied_source_counts_the_names_left_out_once);
	tcase_add_test(tc, test_fixes_of_mounts_and_room_end_the_backoff);
	tcase_add_test(tc, test_a_file_in_place_of_the_target_is_no_open_target);
	tcase_add_test(tc, test_certbot_live_directory_follows_renewals);
	tcase_add_test(tc, test_reincluded_names_are_followed_live);
	tcase_add_test(tc, test_names_excluded_only_somewhere_are_followed_live);
	tcase_add_test(tc, test_same_size_edit_in_same_second_is_published);
	tcase_add_test(tc, test_burst_of_changes_recycles_a_standby);
	tcase_add_test(tc, test_first_change_after_a_start_recycles_a_standby);
	tcase_add_test(tc, test_sigint_and_sigterm_exit_0);
	tcase_add_test(tc, test_closed_standard_descriptors_are_held_open);
	tcase_add_test(tc, test_config_mappings_and_reload);
	tcase_add_test(tc,
		       test_stopped_mapping_leaves_its_replaced_generation);
	tcase_add_test(tc, test_check_config_reports_every_problem);
	tcase_add_test(tc, test_chain_of_mappings_carries_a_change_to_the_end);
	tcase_add_test(tc, test_missing_source_is_waited_for);
	tcase_add_test(tc, test_status_of_a_target_whose_source_is_missing);
	tcase_add_test(tc, test_source_root_replaced_or_renamed);
	tcase_add_test(tc, test_kubernetes_volume_source_through_many_swaps);
	tcase_add_test(tc, test_followed_links_are_watched_where_they_lead);
	tcase_add_test(tc, test_a_link_made_later_is_watched_where_it_leads);
	tcase_add_test(tc, test_failing_mapping_does_not_stop_others);
	tcase_add_test(tc, test_target_locked_by_another_daemon);
	tcase_add_test(tc, test_a_removed_lock_file_still_keeps_others_out);
	tcase_add_test(tc, test_sigusr1_logs_status_and_keeps_running);
	tcase_add_test(tc, test_dry_run_daemon_writes_nothing);
	tcase_add_test(tc, test_failing_mapping_records_its_error_in_the_target);
	tcase_add_test(tc, test_file_being_rewritten_converges_untorn);
	tcase_add_test(tc, test_out_of_inotify_watches_falls_back_to_rescans);
	tcase_add_test(tc, test_max_watches_caps_watches_and_rescans);
	tcase_add_test(tc, test_max_watches_is_shared_by_mappings_and_given_back);
	/* Valgrind cannot run a sanitized binary: that build leaves it to
	 * the normal one. */
	if (getenv("ATOMSYNC_SANITIZED") == NULL)
		tcase_add_test(tc, test_event_loop_closes_cleanly_under_valgrind);
	suite_add_tcase(s, tc);
	/* Of glibc's allocator, which a sanitized binary replaces. */
	TCase *mem = tcase_create("memory");
	tcase_add_checked_fixture(mem, setup, teardown);
	tcase_set_timeout(mem, 300);
	if (getenv("ATOMSYNC_SANITIZED") == NULL)
		tcase_add_test(mem, test_memory_stays_flat_over_publishes);
	suite_add_tcase(s, mem);
}

static void add_cpu_cases(Suite *s)
{
	/* A window of two re-scan intervals: a minute when the machine is
	 * loaded. */
	TCase *cpu = tcase_create("cpu");
	tcase_add_checked_fixture(cpu, setup, teardown);
	tcase_set_timeout(cpu, 300);
	tcase_add_test(cpu, test_rescans_past_max_watches_cost_little_cpu);
	tcase_add_test(cpu, test_rescans_past_the_kernel_limit_cost_little_cpu);
	suite_add_tcase(s, cpu);
}

int main(void)
{
	Suite *s = suite_create(cpu_part ? "daemon_cpu" : "daemon");

	if (cpu_part)
		add_cpu_cases(s);
	else
		add_daemon_cases(s);
	return tu_run_suite(s);
}
