/* latency.c: the measuring half of bench/latency.
 *
 *   latency gen DIR
 *	Create the test tree in DIR (which must not exist): 1,000 files of
 *	4 KiB, d000/f00000 ... d019/f00999, deterministic content.
 *
 *   latency run --src DIR --vis PREFIX [OPTION]...
 *	Wait until the synchroniser under test is ready, then make -n
 *	in-place writes and -n rename-saves to random files of DIR, one at a
 *	time, and after each one poll PREFIX/<same path> until it holds the
 *	new content.  Prints one line per kind:
 *
 *	  RESULT <label> <kind> <ok> <timeouts> <p50_ms> <p90_ms> <max_ms>
 *
 *	Options:
 *	  -n N            changes per kind (default 200)
 *	  --seed S        seed of the file and gap choices (default 1)
 *	  --label NAME    first field of the RESULT lines (default "-")
 *	  --pid PID       the daemon under test: stop with an error if it dies
 *	  --timeout-ms M  per-change timeout (default 5000)
 *	  --ready-s S     how long to wait for readiness (default 120)
 *	  --raw FILE      append one CSV line per change to FILE
 *
 *   latency change --src DIR --vis PREFIX --path REL --stage DIR [OPTION]...
 *	Replace DIR/REL -n times, each time with new content of --size bytes
 *	written to a file in --stage (on the same filesystem, outside the
 *	watched tree) and renamed over it, so that one change is one event;
 *	after each, poll PREFIX/REL until it holds the new content.  Prints
 *	one line per change:
 *
 *	  CHANGE <seq> <latency_ms>
 *
 *	and stops with an error if a change is not visible in time.
 *	Options: -n N (default 10), --size BYTES (default 4096),
 *	--gap-ms M between changes (default 50), --timeout-ms, --pid, --label
 *	as for run.
 *
 * Built by bench/latency and bench/run with `cc -O2`; needs nothing but
 * libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NFILES 1000
#define NDIRS 20
#define FSIZE 4096
#define MAX_SIZE 65536 /* the largest content `change` writes */
#define POLL_NS 50000L /* sleep between two reads of the target */

static const char *prog = "latency";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000L,
			      .tv_nsec = ns % 1000000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* splitmix64: a fixed seed gives the same changes on every run. */
static uint64_t rng_state;
static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static void rel_path(char *buf, size_t n, unsigned i)
{
	snprintf(buf, n, "d%03u/f%05u", i % NDIRS, i);
}

/* SIZE bytes: a header line, then filler that depends on the header. */
static void fill_n(char *buf, const char *hdr, size_t size)
{
	static const char alpha[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t h = strlen(hdr);
	uint32_t x = 2166136261u;

	memcpy(buf, hdr, h);
	for (size_t i = 0; i < h; i++)
		x = (x ^ (unsigned char)hdr[i]) * 16777619u;
	for (size_t i = h; i < size - 1; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = alpha[(x >> 16) & 63];
	}
	buf[size - 1] = '\n';
}

static void fill(char *buf, const char *hdr)
{
	fill_n(buf, hdr, FSIZE);
}

static void write_all(int fd, const char *buf, size_t n, const char *what)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("writing %s: %s", what, strerror(errno));
		}
		buf += w;
		n -= (size_t)w;
	}
}

static int cmd_gen(const char *dir)
{
	char path[4096], rel[32], hdr[64], buf[FSIZE];

	if (mkdir(dir, 0755) < 0)
		die("mkdir %s: %s", dir, strerror(errno));
	for (unsigned d = 0; d < NDIRS; d++) {
		snprintf(path, sizeof(path), "%s/d%03u", dir, d);
		if (mkdir(path, 0755) < 0)
			die("mkdir %s: %s", path, strerror(errno));
	}
	for (unsigned i = 0; i < NFILES; i++) {
		rel_path(rel, sizeof(rel), i);
		snprintf(path, sizeof(path), "%s/%s", dir, rel);
		snprintf(hdr, sizeof(hdr), "original %s\n", rel);
		fill(buf, hdr);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			die("create %s: %s", path, strerror(errno));
		write_all(fd, buf, FSIZE, path);
		if (close(fd) < 0)
			die("close %s: %s", path, strerror(errno));
	}
	return 0;
}

/* ---- run ---- */

static const char *src, *vis, *label = "-", *raw_path;
static pid_t daemon_pid;
static unsigned timeout_ms = 5000;
static FILE *raw;
static uint64_t nonce; /* makes every run's contents new */

static void check_daemon(void)
{
	char p[64], st[512];

	if (daemon_pid <= 0)
		return;
	if (kill(daemon_pid, 0) < 0 && errno == ESRCH)
		die("%s: the daemon (pid %d) has exited", label, (int)daemon_pid);
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)daemon_pid);
	FILE *f = fopen(p, "r");
	if (f == NULL)
		return;
	size_t n = fread(st, 1, sizeof(st) - 1, f);
	fclose(f);
	st[n] = '\0';
	char *rp = strrchr(st, ')');
	if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
		die("%s: the daemon (pid %d) has exited", label, (int)daemon_pid);
}

/* Does PATH hold exactly WANT (LEN bytes)? */
static int holds(const char *path, const char *want, size_t len)
{
	static char got[MAX_SIZE + 1];
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	while (n < sizeof(got)) {
		ssize_t r = read(fd, got + n, sizeof(got) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	return n == len && memcmp(got, want, len) == 0;
}

/* Poll PATH until it holds WANT (LEN bytes); the time it did, or 0 on
 * timeout. */
static uint64_t wait_visible_n(const char *path, const char *want, size_t len,
			       uint64_t t0, uint64_t limit_ns)
{
	unsigned polls = 0;

	for (;;) {
		if (holds(path, want, len))
			return now_ns();
		uint64_t t = now_ns();
		if (t - t0 >= limit_ns)
			return 0;
		if (++polls % 2000 == 0)
			check_daemon();
		sleep_ns(POLL_NS);
	}
}

static uint64_t wait_visible(const char *path, const char *want, uint64_t t0,
			     uint64_t limit_ns)
{
	return wait_visible_n(path, want, FSIZE, t0, limit_ns);
}

/* The readiness probe: SRC/bench-ready, rewritten until it shows up. */
static void wait_ready(unsigned ready_s)
{
	char sp[4096], vp[4096], hdr[64], buf[FSIZE];
	uint64_t start = now_ns();

	snprintf(sp, sizeof(sp), "%s/bench-ready", src);
	snprintf(vp, sizeof(vp), "%s/bench-ready", vis);
	for (unsigned k = 1;; k++) {
		snprintf(hdr, sizeof(hdr), "ready %u run %" PRIx64 "\n", k,
			 nonce);
		fill(buf, hdr);
		int fd = open(sp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die("create %s: %s", sp, strerror(errno));
		write_all(fd, buf, FSIZE, sp);
		close(fd);
		uint64_t t = now_ns();
		if (wait_visible(vp, buf, t, 2000000000u))
			break;
		check_daemon();
		if (now_ns() - start > (uint64_t)ready_s * 1000000000u)
			die("%s: not ready after %u s (%s never appeared)", label,
			    ready_s, vp);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least P% at or below it. */
static double pct_ms(const uint64_t *v, size_t n, unsigned p)
{
	size_t r = (n * p + 99) / 100;
	if (r == 0)
		r = 1;
	return (double)v[r - 1] / 1e6;
}

enum kind { INPLACE, RENAME };

static void run_kind(enum kind k, unsigned n, unsigned *seq)
{
	const char *kname = k == INPLACE ? "inplace" : "rename";
	uint64_t *lat = calloc(n ? n : 1, sizeof(*lat));
	size_t ok = 0;
	unsigned lost = 0;
	char rel[32], sp[4096], tp[4096], vp[4096], hdr[128], buf[FSIZE];

	if (lat == NULL)
		die("out of memory");
	for (unsigned i = 0; i < n; i++) {
		unsigned f = (unsigned)(rng() % NFILES);
		long gap_ns = (long)(rng() % 5000001u); /* 0-5 ms */
		sleep_ns(gap_ns);
		(*seq)++;
		rel_path(rel, sizeof(rel), f);
		snprintf(sp, sizeof(sp), "%s/%s", src, rel);
		snprintf(vp, sizeof(vp), "%s/%s", vis, rel);
		snprintf(hdr, sizeof(hdr), "change %u %s %s run %" PRIx64 "\n",
			 *seq, kname, rel, nonce);
		fill(buf, hdr);

		uint64_t t0;
		if (k == INPLACE) {
			int fd = open(sp, O_WRONLY | O_TRUNC | O_CLOEXEC);
			if (fd < 0)
				die("open %s: %s", sp, strerror(errno));
			write_all(fd, buf, FSIZE, sp);
			t0 = now_ns();
			if (close(fd) < 0)
				die("close %s: %s", sp, strerror(errno));
		} else {
			snprintf(tp, sizeof(tp), "%s/d%03u/.f%05u.tmp", src,
				 f % NDIRS, f);
			int fd = open(tp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				      0644);
			if (fd < 0)
				die("create %s: %s", tp, strerror(errno));
			write_all(fd, buf, FSIZE, tp);
			if (close(fd) < 0)
				die("close %s: %s", tp, strerror(errno));
			if (rename(tp, sp) < 0)
				die("rename %s: %s", tp, strerror(errno));
			t0 = now_ns();
		}
		uint64_t t1 = wait_visible(vp, buf, t0,
					   (uint64_t)timeout_ms * 1000000u);
		if (t1 == 0) {
			lost++;
			check_daemon();
			if (lost <= 3)
				fprintf(stderr, "%s %s: change %u to %s not "
					"visible after %u ms (lost update)\n",
					label, kname, *seq, rel, timeout_ms);
			else if (lost == 4)
				fprintf(stderr, "%s %s: (further lost updates "
					"are only counted)\n", label, kname);
		} else {
			lat[ok++] = t1 - t0;
		}
		if (raw) {
			if (t1)
				fprintf(raw, "%s,%s,%u,%s,%" PRIu64 "\n", label,
					kname, *seq, rel, (t1 - t0) / 1000u);
			else
				fprintf(raw, "%s,%s,%u,%s,timeout\n", label,
					kname, *seq, rel);
		}
	}
	qsort(lat, ok, sizeof(*lat), cmp_u64);
	if (ok > 0)
		printf("RESULT %s %s %zu %u %.3f %.3f %.3f\n", label, kname, ok,
		       lost, pct_ms(lat, ok, 50), pct_ms(lat, ok, 90),
		       (double)lat[ok - 1] / 1e6);
	else
		printf("RESULT %s %s 0 %u - - -\n", label, kname, lost);
	fflush(stdout);
	free(lat);
}

static unsigned num(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v > 100000000u)
		die("%s: bad number '%s'", opt, s);
	return (unsigned)v;
}

/* Sleep as close to POLL_NS as the kernel allows (default slack is 50 us,
 * which would double the poll period), and make this run's contents new. */
static void poll_setup(void)
{
	struct timespec rt;

	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	clock_gettime(CLOCK_REALTIME, &rt);
	nonce = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
}

/* The options run and change share; true when `o` is one of them. */
static bool common_option(const char *o, const char *v)
{
	if (strcmp(o, "--src") == 0)
		src = v;
	else if (strcmp(o, "--vis") == 0)
		vis = v;
	else if (strcmp(o, "--label") == 0)
		label = v;
	else if (strcmp(o, "--pid") == 0)
		daemon_pid = (pid_t)num(o, v);
	else if (strcmp(o, "--timeout-ms") == 0)
		timeout_ms = num(o, v);
	else
		return false;
	return true;
}

static int cmd_run(int argc, char **argv)
{
	unsigned n = 200, ready_s = 120;
	uint64_t seed = 1;

	for (int i = 0; i < argc; i++) {
		const char *o = argv[i];
		if (i + 1 >= argc)
			die("%s needs a value", o);
		const char *v = argv[++i];
		if (common_option(o, v))
			continue;
		if (strcmp(o, "-n") == 0)
			n = num(o, v);
		else if (strcmp(o, "--seed") == 0)
			seed = num(o, v);
		else if (strcmp(o, "--ready-s") == 0)
			ready_s = num(o, v);
		else if (strcmp(o, "--raw") == 0)
			raw_path = v;
		else
			die("unknown option '%s'", o);
	}
	if (src == NULL || vis == NULL)
		die("run needs --src and --vis");
	if (raw_path && (raw = fopen(raw_path, "a")) == NULL)
		die("%s: %s", raw_path, strerror(errno));
	poll_setup();
	rng_state = seed;

	wait_ready(ready_s);
	unsigned seq = 0;
	run_kind(INPLACE, n, &seq);
	run_kind(RENAME, n, &seq);
	if (raw && fclose(raw) != 0)
		die("%s: %s", raw_path, strerror(errno));
	return 0;
}

/* ---- change ---- */

/* Write BUF to TMP and rename it over SP; the time the rename returned. */
static uint64_t replace(const char *tmp, const char *sp, const char *buf,
			size_t size)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("create %s: %s", tmp, strerror(errno));
	write_all(fd, buf, size, tmp);
	if (close(fd) < 0)
		die("close %s: %s", tmp, strerror(errno));
	if (rename(tmp, sp) < 0)
		die("rename %s to %s: %s", tmp, sp, strerror(errno));
	return now_ns();
}

static void change_loop(const char *rel, const char *stage, unsigned n,
			size_t size, unsigned gap_ms)
{
	static char buf[MAX_SIZE];
	char sp[4096], tp[4096], vp[4096], hdr[128];

	snprintf(sp, sizeof(sp), "%s/%s", src, rel);
	snprintf(vp, sizeof(vp), "%s/%s", vis, rel);
	snprintf(tp, sizeof(tp), "%s/change.tmp", stage);
	for (unsigned i = 1; i <= n; i++) {
		if (i > 1)
			sleep_ns((long)gap_ms * 1000000L);
		snprintf(hdr, sizeof(hdr), "change %u %s run %" PRIx64 "\n",
			 i, label, nonce);
		if (strlen(hdr) >= size)
			die("--size %zu: too small for the header", size);
		fill_n(buf, hdr, size);
		uint64_t t0 = replace(tp, sp, buf, size);
		uint64_t t1 = wait_visible_n(vp, buf, size, t0,
					     (uint64_t)timeout_ms * 1000000u);
		if (t1 == 0) {
			check_daemon();
			die("%s: change %u: %s did not hold the new content "
			    "after %u ms", label, i, vp, timeout_ms);
		}
		printf("CHANGE %u %.3f\n", i, (double)(t1 - t0) / 1e6);
		fflush(stdout);
	}
}

static int cmd_change(int argc, char **argv)
{
	const char *rel = NULL, *stage = NULL;
	unsigned n = 10, size = FSIZE, gap_ms = 50;

	for (int i = 0; i < argc; i++) {
		const char *o = argv[i];
		if (i + 1 >= argc)
			die("%s needs a value", o);
		const char *v = argv[++i];
		if (common_option(o, v))
			continue;
		if (strcmp(o, "--path") == 0)
			rel = v;
		else if (strcmp(o, "--stage") == 0)
			stage = v;
		else if (strcmp(o, "-n") == 0)
			n = num(o, v);
		else if (strcmp(o, "--size") == 0)
			size = num(o, v);
		else if (strcmp(o, "--gap-ms") == 0)
			gap_ms = num(o, v);
		else
			die("unknown option '%s'", o);
	}
	if (src == NULL || vis == NULL || rel == NULL || stage == NULL)
		die("change needs --src, --vis, --path and --stage");
	if (size < 2 || size > MAX_SIZE)
		die("--size: from 2 to %u", MAX_SIZE);
	poll_setup();
	change_loop(rel, stage, n, size, gap_ms);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "gen") == 0)
		return cmd_gen(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "change") == 0)
		return cmd_change(argc - 2, argv + 2);
	fprintf(stderr, "usage: %s gen DIR\n"
			"       %s run --src DIR --vis PREFIX [-n N] [--seed S] "
			"[--label NAME]\n"
			"             [--pid PID] [--timeout-ms M] [--ready-s S] "
			"[--raw FILE]\n"
			"       %s change --src DIR --vis PREFIX --path REL "
			"--stage DIR [-n N]\n"
			"             [--size BYTES] [--gap-ms M] [--pid PID] "
			"[--timeout-ms M] [--label NAME]\n",
		prog, prog, prog);
	return 2;
}
