/* Crashes: while the daemon publishes a stream of changes it is killed
 * with SIGKILL at random moments of its publishes (once one is seen under
 * way, however loaded the machine), 200 times (50 in the sanitizer build,
 * whose every start costs several times more: its memory checks of the
 * recovery need no more), and restarted each time.  A
 * checker running throughout asserts that ..data always resolves to a
 * complete generation (every file there, none torn); after the restarts
 * the debris of the interrupted publishes is gone and the target equals
 * the source.  Replay a failure with ATOMSYNC_SEED=<seed>. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define NFILES 150
#define KILLS 200
#define KILLS_SANITIZED 50

static char *tmp, *src, *dst, *logpath;
static unsigned seed;
static unsigned long rng;

static unsigned rnd(unsigned n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rng >> 33) % n);
}

static void name_of(int i, char *buf, size_t size)
{
	snprintf(buf, size, "%c/f%02d", 'a' + i % 3, i);
}

/* Self-checking content: "<len> <seq>\n" then len bytes from seq. */
static size_t make(unsigned seq, char *buf)
{
	unsigned len = 10 + (seq * 7919u) % 3000u;
	int h = snprintf(buf, 32, "%05u %010u\n", len, seq);
	for (unsigned i = 0; i < len; i++)
		buf[h + i] = (char)('a' + (seq + i) % 26);
	return (size_t)h + len;
}

static int valid(const char *buf, size_t n)
{
	unsigned len, seq;
	if (n < 17 || sscanf(buf, "%5u %10u\n", &len, &seq) != 2 || n != 17 + len)
		return 0;
	for (unsigned i = 0; i < len; i++)
		if (buf[17 + i] != (char)('a' + (seq + i) % 26))
			return 0;
	return 1;
}

/* Replaces a file atomically in the source (so the source itself is
 * never torn). */
static void change(int i, unsigned seq)
{
	char name[32], tmpn[64], buf[4096];
	name_of(i, name, sizeof(name));
	snprintf(tmpn, sizeof(tmpn), "%c/.tmp%02d", 'a' + i % 3, i);
	size_t n = make(seq, buf);
	tu_write_len(src, tmpn, buf, n, 0644);
	char *from = tu_path(src, tmpn), *to = tu_path(src, name);
	ck_assert_int_eq(rename(from, to), 0);
	free(from);
	free(to);
}

/* The checker: ..data must always name a whole generation. */
static int checker(void)
{
	char *data = tu_path(dst, "..data");
	char *stop = tu_path(tmp, "stop-checker");
	char buf[8192];
	long rounds = 0;
	for (;;) {
		struct stat st;
		if (lstat(stop, &st) == 0 || getppid() == 1)
			break;
		int dfd = open(data, O_RDONLY | O_DIRECTORY);
		if (dfd < 0) {
			if (errno == ENOENT && rounds == 0) {
				tu_nap(1);
				continue; /* before the first publish */
			}
			fprintf(stderr, "checker: ..data does not resolve: %s\n",
				strerror(errno));
			return 1;
		}
		for (int i = 0; i < NFILES; i++) {
			char name[32];
			name_of(i, name, sizeof(name));
			int fd = openat(dfd, name, O_RDONLY);
			if (fd < 0) {
				fprintf(stderr, "checker: %s missing from the live "
						"generation: %s\n",
					name, strerror(errno));
				return 1;
			}
			ssize_t n = read(fd, buf, sizeof(buf));
			close(fd);
			if (n < 0 || !valid(buf, (size_t)n)) {
				fprintf(stderr, "checker: %s is torn in the live "
						"generation\n",
					name);
				return 1;
			}
		}
		close(dfd);
		rounds++;
	}
	fprintf(stderr, "checker: %ld rounds\n", rounds);
	free(data);
	free(stop);
	return rounds > 0 ? 0 : 2;
}

/* The generations still private (0700, as one is until complete and
 * flushed), as a list of names; a kill leaves one behind until the next
 * daemon has recovered. */
struct names {
	char *v[16];
	int n;
};

static int listed(const struct names *l, const char *name)
{
	for (int i = 0; l && i < l->n; i++)
		if (strcmp(l->v[i], name) == 0)
			return 1;
	return 0;
}

/* Only what atomsync keeps: ..data, its generation, the state and its
 * journal, the visible names, and one generation besides: a complete
 * replaced one (in its grace period, or kept to be recycled), or a
 * standby the running daemon linked (private, but not one of those the
 * killed daemon left, `killed`: after a start that finds no replaced
 * generation, a standby is kept for the first change). */
static char *debris(const struct names *killed)
{
	char *live = tu_live(dst), *bad = NULL;
	DIR *d = opendir(dst);
	struct dirent *de;
	int spare = 0;
	while (d && (de = readdir(d)) != NULL && !bad) {
		const char *n = de->d_name;
		struct stat st;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (strcmp(n, "..data") == 0 || strcmp(n, "..atomsync") == 0 ||
		    strcmp(n, "..atomsync.journal") == 0 ||
		    strcmp(n, "..atomsync.lock") == 0 ||
		    (live && strcmp(n, live) == 0) || n[0] != '.' || n[1] != '.')
			continue;
		if (strncmp(n, "..2", 3) == 0 && !spare &&
		    fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode) &&
		    ((st.st_mode & 0777) == 0755 ||
		     ((st.st_mode & 0777) == 0700 && !listed(killed, n)))) {
			spare = 1;
			continue;
		}
		bad = strdup(n);
	}
	if (d)
		closedir(d);
	free(live);
	return bad;
}

static void private_generations(struct names *out)
{
	DIR *d = opendir(dst);
	struct dirent *de;
	out->n = 0;
	while (d && out->n < 16 && (de = readdir(d)) != NULL) {
		struct stat st;
		if (strncmp(de->d_name, "..2", 3) == 0 &&
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700)
			out->v[out->n++] = strdup(de->d_name);
	}
	if (d)
		closedir(d);
}

static void names_fini(struct names *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

/* Whether a publish is under way that was not before: a private
 * generation that is not in `before`. */
static int publishing(const struct names *before)
{
	struct names now;
	int found = 0;
	private_generations(&now);
	for (int i = 0; i < now.n && !found; i++) {
		found = 1;
		for (int k = 0; k < before->n; k++)
			if (strcmp(now.v[i], before->v[k]) == 0)
				found = 0;
	}
	names_fini(&now);
	return found;
}

static pid_t start(void)
{
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", "0", "--log-level", "debug", NULL};
	return tu_spawn(argv, logpath);
}

static void setup(void)
{
	tmp = tu_mkdtemp_fast();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	logpath = tu_path(tmp, "daemon.log");
	const char *s = getenv("ATOMSYNC_SEED");
	seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
	rng = seed;
	fprintf(stderr, "crash test seed %u (replay: ATOMSYNC_SEED=%u)\n", seed, seed);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(logpath);
	free(tmp);
}

/* What tells why `gen` stayed: its mode, the target's entries, and the
 * end of the daemon's log, on stderr. */
static void dump_log_tail(const char *gen)
{
	struct stat st;
	char *g = tu_path(dst, gen);
	if (lstat(g, &st) == 0)
		fprintf(stderr, "%s: mode %o\n", gen, (unsigned)st.st_mode & 07777);
	free(g);
	DIR *d = opendir(dst);
	for (struct dirent *de; d && (de = readdir(d)) != NULL;)
		fprintf(stderr, "  target has %s\n", de->d_name);
	if (d)
		closedir(d);
	size_t len = 0;
	char *log = tu_read(logpath, &len);
	if (log) {
		size_t from = len > 6000 ? len - 6000 : 0;
		fprintf(stderr, "daemon log, last %zu bytes:\n%s\n", len - from,
			log + from);
	}
	free(log);
}

START_TEST(test_sigkill_at_random_moments_loses_nothing)
{
	const int kills =
		getenv("ATOMSYNC_SANITIZED") ? KILLS_SANITIZED : KILLS;
	unsigned seq = 1;
	for (int i = 0; i < NFILES; i++)
		change(i, seq++);
	pid_t d = start();
	struct tu_pair p = {src, dst};
	ck_assert_msg(tu_wait_for(tu_trees_equal, &p, 5000), "seed %u: no first publish",
		      seed);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(checker());

	for (int k = 1; k <= kills; k++) {
		/* Changes keep coming while the daemon runs ... */
		struct names before;
		private_generations(&before);
		long long until = tu_now_ms() + rnd(25);
		do {
			change((int)rnd(NFILES), seq++);
		} while (tu_now_ms() < until);
		/* ... and it dies at a random moment of its work: once a
		 * publish is seen under way (on a loaded machine it may start
		 * late), a little into it. */
		for (long long end = tu_now_ms() + tu_scale(2000);
		     !publishing(&before) && tu_now_ms() < end;) {
			struct timespec poll = {0, 100000L};
			nanosleep(&poll, NULL);
		}
		names_fini(&before);
		struct timespec ts = {0, (long)rnd(2000) * 1000L};
		nanosleep(&ts, NULL);
		kill(d, SIGKILL);
		waitpid(d, NULL, 0);
		int st;
		if (waitpid(c, &st, WNOHANG) == c)
			ck_abort_msg("seed %u: kill %d: the checker saw a broken "
				     "target",
				     seed, k);
		struct names killed;
		private_generations(&killed);
		d = start();
		if (k % 25 == 0) {
			/* Quiet: the restarted daemon cleans up and converges. */
			ck_assert_msg(tu_wait_for(tu_trees_equal, &p, 5000),
				      "seed %u: kill %d: no convergence", seed, k);
			char *left = NULL;
			for (long long end = tu_now_ms() + tu_scale(3000);
			     tu_now_ms() < end; tu_nap(10)) {
				free(left);
				if ((left = debris(&killed)) == NULL)
					break;
			}
			if (left)
				dump_log_tail(left);
			ck_assert_msg(left == NULL, "seed %u: kill %d: %s left behind",
				      seed, k, left);
		}
		names_fini(&killed);
	}
	ck_assert_msg(tu_wait_for(tu_trees_equal, &p, 5000), "seed %u: no convergence",
		      seed);
	tu_write(tmp, "stop-checker", "", 0644);
	int cs = tu_wait_exit(c, 10000);
	ck_assert_msg(cs == 0, "seed %u: the checker saw a broken target (%d)", seed,
		      cs);
	ck_assert_int_eq(kill(d, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(d, 10000), 0);
	/* Debris was found and removed along the way. */
	int removed = tu_file_count(logpath, "left by an interrupted publish") +
		      tu_file_count(logpath, "its grace period over") +
		      tu_file_count(logpath, ", older than ..");
	int kept = tu_file_count(logpath, "for the rest of its grace period");
	fprintf(stderr, "seed %u: %d kills; recovery removed %d unfinished "
			"generations and kept %d replaced ones for their grace "
			"period\n",
		seed, kills, removed, kept);
	/* The kills did land in the middle of publishes. */
	ck_assert_int_gt(removed + kept, kills / 2);
}
END_TEST

static int no_debris(void *arg)
{
	char *bad = debris(arg);

	free(bad);
	return bad == NULL;
}

/* At rest after a change: the live generation and the one it replaced,
 * both complete. */
static int live_and_replaced(void *arg)
{
	return tu_generations(arg) == 2 &&
	       tu_generations_of_mode(arg, 0755, NULL) == 2;
}

START_TEST(test_restart_with_nothing_to_publish_keeps_one_standby)
{
	/* What a kill in the middle of recycling the only replaced
	 * generation leaves: the live one, and a private one (here an empty
	 * directory named like a generation).  The next daemon has nothing to
	 * publish: it removes the private one and links a standby for the
	 * first change, which is all the target holds besides the live
	 * one. */
	unsigned seq = 1;
	for (int i = 0; i < NFILES; i++)
		change(i, seq++);
	const char *once[] = {tu_bin(), "--once", "--source", src, "--target",
			      dst, NULL};
	ck_assert_int_eq(tu_run(once, NULL, NULL, 10000), 0);
	char *left = tu_path(dst, "..2026_01_01_00_00_00.000000001");
	ck_assert_int_eq(mkdir(left, 0700), 0);
	struct names killed;
	private_generations(&killed);
	ck_assert_int_eq(killed.n, 1);
	pid_t d = start();
	tu_wait_text(logpath, "standby generation linked", 1, 10000, logpath);
	struct stat st;
	ck_assert_int_eq(lstat(left, &st), -1);
	ck_assert_int_eq(tu_generations_of_mode(dst, 0700, NULL), 1);
	ck_assert_int_eq(tu_generations(dst), 2);
	/* The daemon may still be recording its state (a journal made
	 * under a temporary name): what is left is what stays. */
	if (!tu_wait_for(no_debris, &killed, 5000)) {
		char *bad = debris(&killed);
		ck_abort_msg("%s left behind", bad ? bad : "?");
	}
	/* The first change recycles it; once the generation it replaced is
	 * due, that one takes the standby's place. */
	change(0, seq++);
	struct tu_pair p = {src, dst};
	ck_assert(tu_wait_for(tu_trees_equal, &p, 5000));
	ck_assert_msg(tu_wait_for(live_and_replaced, dst, 4000),
		      "%d generations, %d complete", tu_generations(dst),
		      tu_generations_of_mode(dst, 0755, NULL));
	ck_assert_int_eq(kill(d, SIGTERM), 0);
	ck_assert_int_eq(tu_wait_exit(d, 10000), 0);
	names_fini(&killed);
	free(left);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("kill -9");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_sigkill_at_random_moments_loses_nothing);
	tcase_add_test(tc, test_restart_with_nothing_to_publish_keeps_one_standby);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(crash_suite());
}
