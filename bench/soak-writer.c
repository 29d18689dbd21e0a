/* bench/soak-writer.c: the load generator and latency checker of bench/soak.
 *
 *   soak-writer port
 *       print a free TCP port on 127.0.0.1
 *   soak-writer init ROOT MAPPINGS DIRS FILES SIZE
 *       create ROOT/mNNN/dNNN/fNNN, every file with sequence number 0
 *   soak-writer run OPTION...
 *       change random files of every source at a steady rate, and check
 *       how long sampled changes take to become visible in the targets
 *
 * Every file holds a first line "soak mNNN dNNN/fNNN seq SSSSSSSSSS" and
 * filler derived from the same numbers, so that the content of any
 * (file, sequence number) can be computed again.  See bench/README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXBUF 8192

static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("soak-writer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t mono_ns)
{
	struct timespec ts = {mono_ns / 1000000000, mono_ns % 1000000000};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* The content of file (m, d, f) at sequence number seq; returns its length. */
static size_t make_content(char *buf, unsigned m, unsigned d, unsigned f,
			   uint32_t seq, size_t size)
{
	size_t want = size + seq % 64, n;
	n = (size_t)snprintf(buf, MAXBUF, "soak m%03u d%03u/f%03u seq %010u\n",
			     m, d, f, seq);
	uint64_t h = ((uint64_t)m << 40) ^ ((uint64_t)d << 28) ^
		     ((uint64_t)f << 16) ^ seq ^ 0x9e3779b97f4a7c15ULL;
	while (n + 17 <= want && n + 17 < MAXBUF) {
		h ^= h << 13;
		h ^= h >> 7;
		h ^= h << 17;
		n += (size_t)snprintf(buf + n, MAXBUF - n, "%016" PRIx64 "\n",
				      h);
	}
	return n;
}

static void write_all(int fd, const char *buf, size_t len, const char *path)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write %s: %s", path, strerror(errno));
		}
		buf += w;
		len -= (size_t)w;
	}
}

static unsigned parse_uint(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v > 100000000UL)
		die("%s: '%s' is not a number", what, s);
	return (unsigned)v;
}

/* ----------------------------------------------------------------- port */

static int cmd_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {0};
	socklen_t len = sizeof a;
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("finding a free port: %s", strerror(errno));
	printf("%u\n", ntohs(a.sin_port));
	close(fd);
	return 0;
}

/* ----------------------------------------------------------------- init */

static void mkdir_or_die(const char *p)
{
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		die("mkdir %s: %s", p, strerror(errno));
}

static int cmd_init(int argc, char **argv)
{
	if (argc != 6)
		die("usage: soak-writer init ROOT MAPPINGS DIRS FILES SIZE");
	const char *root = argv[1];
	unsigned nm = parse_uint(argv[2], "MAPPINGS"),
		 nd = parse_uint(argv[3], "DIRS"),
		 nf = parse_uint(argv[4], "FILES"),
		 size = parse_uint(argv[5], "SIZE");
	char path[4096], buf[MAXBUF];
	mkdir_or_die(root);
	for (unsigned m = 1; m <= nm; m++) {
		snprintf(path, sizeof path, "%s/m%03u", root, m);
		mkdir_or_die(path);
		for (unsigned d = 0; d < nd; d++) {
			snprintf(path, sizeof path, "%s/m%03u/d%03u", root, m,
				 d);
			mkdir_or_die(path);
			for (unsigned f = 0; f < nf; f++) {
				snprintf(path, sizeof path,
					 "%s/m%03u/d%03u/f%03u", root, m, d, f);
				size_t n = make_content(buf, m, d, f, 0, size);
				int fd = open(path,
					      O_WRONLY | O_CREAT | O_TRUNC, 0644);
				if (fd < 0)
					die("create %s: %s", path,
					    strerror(errno));
				write_all(fd, buf, n, path);
				close(fd);
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ run */

struct sample {
	int64_t made_mono, made_real;
	unsigned m, d, f;
	uint32_t seq;
	int rename; /* kind of change: 1 rename-save, 0 in-place */
};

enum result { RES_OK, RES_NEWER, RES_LATE, RES_TORN };
static const char *const result_name[] = {"ok", "newer", "late", "torn"};

static struct {
	const char *src, *dst;
	unsigned nm, nd, nf, size;
	int64_t timeout_ns;
} cfg;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sample *queue;
static size_t q_len, q_cap;
static int writer_done;

/* Results, owned by the checker thread until it is joined. */
static int64_t *lat;
static size_t n_lat, cap_lat;
static unsigned long n_res[4], n_read_err, n_odd;
static FILE *raw;

static void record(const struct sample *s, enum result r, int64_t seen)
{
	n_res[r]++;
	if (r == RES_OK || r == RES_NEWER) {
		if (n_lat == cap_lat) {
			cap_lat = cap_lat ? 2 * cap_lat : 1024;
			lat = realloc(lat, cap_lat * sizeof *lat);
			if (!lat)
				die("out of memory");
		}
		lat[n_lat++] = seen - s->made_mono;
	}
	if (raw) {
		fprintf(raw, "%.3f,m%03u,d%03u/f%03u,%s,%u,%s,", s->made_real / 1e9,
			s->m, s->d, s->f, s->rename ? "rename" : "inplace",
			s->seq, result_name[r]);
		if (r == RES_LATE)
			fputs("\n", raw);
		else
			fprintf(raw, "%.0f\n", (seen - s->made_mono) / 1e3);
	}
}

/* Look at the target once: -1 not yet, else the result. */
static int check_one(const struct sample *s)
{
	char path[4096], got[MAXBUF], want[MAXBUF];
	snprintf(path, sizeof path, "%s/m%03u/d%03u/f%03u", cfg.dst, s->m,
		 s->d, s->f);
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		n_read_err++;
		return -1;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, got + n, sizeof got - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == sizeof got - 1)
			break;
	}
	close(fd);
	got[n] = '\0';
	unsigned seq;
	if (sscanf(got, "soak m%*u d%*u/f%*u seq %u", &seq) != 1) {
		/* Not (yet) a whole first line: keep looking; a file that
		 * stays like this times out as late. */
		n_odd++;
		return -1;
	}
	if (seq < s->seq)
		return -1;
	if (seq > s->seq)
		return RES_NEWER;
	size_t wn = make_content(want, s->m, s->d, s->f, seq, cfg.size);
	return (wn == n && memcmp(want, got, n) == 0) ? RES_OK : RES_TORN;
}

static void *checker(void *arg)
{
	(void)arg;
	struct sample *mine = NULL;
	size_t n = 0, cap = 0;
	struct timespec poll = {0, 500000};
	for (;;) {
		pthread_mutex_lock(&q_lock);
		int done = writer_done;
		if (n + q_len > cap) {
			cap = (n + q_len) * 2 + 64;
			mine = realloc(mine, cap * sizeof *mine);
			if (!mine)
				die("out of memory");
		}
		memcpy(mine + n, queue, q_len * sizeof *queue);
		n += q_len;
		q_len = 0;
		pthread_mutex_unlock(&q_lock);
		if (done && n == 0)
			break;
		for (size_t i = 0; i < n;) {
			int r = check_one(&mine[i]);
			int64_t t = now_ns(CLOCK_MONOTONIC);
			if (r < 0 && t - mine[i].made_mono >= cfg.timeout_ns)
				r = RES_LATE;
			if (r < 0) {
				i++;
				continue;
			}
			record(&mine[i], (enum result)r, t);
			mine[i] = mine[--n];
		}
		nanosleep(&poll, NULL);
	}
	free(mine);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double pct_ms(double p)
{
	if (n_lat == 0)
		return 0;
	size_t k = (size_t)(p * (double)n_lat + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n_lat)
		k = n_lat;
	return lat[k - 1] / 1e6;
}

static void write_progress(int fd, unsigned long changes)
{
	char b[32];
	int len = snprintf(b, sizeof b, "%020lu\n", changes);
	if (pwrite(fd, b, (size_t)len, 0) < 0)
		die("progress file: %s", strerror(errno));
}

static volatile sig_atomic_t stop_now;
static void on_stop(int sig)
{
	(void)sig;
	stop_now = 1;
}

static int cmd_run(int argc, char **argv)
{
	unsigned rate = 1000, seconds = 600, per_s = 20, seed = 1;
	const char *raw_path = NULL, *progress = NULL, *stopped = NULL;
	cfg.nm = 50;
	cfg.nd = 20;
	cfg.nf = 10;
	cfg.size = 1024;
	cfg.timeout_ns = 10000000000LL;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (i + 1 >= argc)
			die("%s needs a value", o);
		const char *v = argv[++i];
		if (!strcmp(o, "--src"))
			cfg.src = v;
		else if (!strcmp(o, "--dst"))
			cfg.dst = v;
		else if (!strcmp(o, "--mappings"))
			cfg.nm = parse_uint(v, o);
		else if (!strcmp(o, "--dirs"))
			cfg.nd = parse_uint(v, o);
		else if (!strcmp(o, "--files"))
			cfg.nf = parse_uint(v, o);
		else if (!strcmp(o, "--size"))
			cfg.size = parse_uint(v, o);
		else if (!strcmp(o, "--rate"))
			rate = parse_uint(v, o);
		else if (!strcmp(o, "--seconds"))
			seconds = parse_uint(v, o);
		else if (!strcmp(o, "--samples-per-s"))
			per_s = parse_uint(v, o);
		else if (!strcmp(o, "--timeout-ms"))
			cfg.timeout_ns = (int64_t)parse_uint(v, o) * 1000000;
		else if (!strcmp(o, "--seed"))
			seed = parse_uint(v, o);
		else if (!strcmp(o, "--raw"))
			raw_path = v;
		else if (!strcmp(o, "--progress"))
			progress = v;
		else if (!strcmp(o, "--stopped"))
			stopped = v;
		else
			die("unknown option %s", o);
	}
	if (!cfg.src || !cfg.dst || !progress || !stopped)
		die("run needs --src, --dst, --progress and --stopped");
	if (!rate || !cfg.nm || !cfg.nd || !cfg.nf)
		die("rate and tree sizes must be positive");
	if (cfg.size < 64 || cfg.size > MAXBUF - 128)
		die("--size must be between 64 and %d", MAXBUF - 128);
	rng_state ^= (uint64_t)seed * 0x2545f4914f6cdd1dULL;
	if (!rng_state)
		rng_state = 1;

	size_t nfiles = (size_t)cfg.nm * cfg.nd * cfg.nf;
	uint32_t *seqs = calloc(nfiles, sizeof *seqs);
	if (!seqs)
		die("out of memory");
	if (raw_path) {
		raw = fopen(raw_path, "w");
		if (!raw)
			die("%s: %s", raw_path, strerror(errno));
		fputs("made_epoch_s,mapping,path,kind,seq,result,latency_us\n",
		      raw);
	}
	int pfd = open(progress, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (pfd < 0)
		die("%s: %s", progress, strerror(errno));
	write_progress(pfd, 0);

	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	prctl(PR_SET_TIMERSLACK, 1000UL); /* 1 us: keep the pacing tight */

	pthread_t th;
	if (pthread_create(&th, NULL, checker, NULL) != 0)
		die("pthread_create failed");

	unsigned stride = per_s ? (rate / per_s ? rate / per_s : 1) : 0;
	unsigned long changes = 0, n_rename = 0, n_inplace = 0;
	unsigned long behind = 0, n_samples = 0;
	int64_t period = 1000000000LL / rate;
	int64_t t0 = now_ns(CLOCK_MONOTONIC), end = t0 + seconds * 1000000000LL;
	int64_t sched0 = t0, next_progress = t0 + 1000000000LL;
	uint64_t base = 0; /* changes counted from sched0 */
	char path[4096], tmp[4096], buf[MAXBUF];

	while (!stop_now) {
		int64_t now = now_ns(CLOCK_MONOTONIC);
		if (now >= end)
			break;
		uint64_t due = base + (uint64_t)((now - sched0) / period) + 1;
		if (due > changes + rate) {
			/* More than a second behind: drop the backlog rather
			 * than burst to catch up. */
			behind++;
			base = changes;
			sched0 = now;
			due = changes + 1;
		}
		while (changes < due) {
			size_t k = (size_t)(rng() % nfiles);
			unsigned m = (unsigned)(k / ((size_t)cfg.nd * cfg.nf)) + 1;
			unsigned d = (unsigned)(k / cfg.nf % cfg.nd);
			unsigned f = (unsigned)(k % cfg.nf);
			int ren = (int)(rng() >> 63);
			uint32_t seq = ++seqs[k];
			size_t len = make_content(buf, m, d, f, seq, cfg.size);
			snprintf(path, sizeof path, "%s/m%03u/d%03u/f%03u",
				 cfg.src, m, d, f);
			if (ren) {
				snprintf(tmp, sizeof tmp,
					 "%s/m%03u/d%03u/.f%03u.tmp", cfg.src,
					 m, d, f);
				int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC,
					      0644);
				if (fd < 0)
					die("create %s: %s", tmp,
					    strerror(errno));
				write_all(fd, buf, len, tmp);
				if (close(fd) < 0)
					die("close %s: %s", tmp,
					    strerror(errno));
				if (rename(tmp, path) < 0)
					die("rename %s: %s", tmp,
					    strerror(errno));
				n_rename++;
			} else {
				int fd = open(path, O_WRONLY | O_TRUNC);
				if (fd < 0)
					die("open %s: %s", path,
					    strerror(errno));
				write_all(fd, buf, len, path);
				if (close(fd) < 0)
					die("close %s: %s", path,
					    strerror(errno));
				n_inplace++;
			}
			if (stride && changes % stride == 0) {
				struct sample s = {
					now_ns(CLOCK_MONOTONIC),
					now_ns(CLOCK_REALTIME),
					m, d, f, seq, ren};
				pthread_mutex_lock(&q_lock);
				if (q_len == q_cap) {
					q_cap = q_cap ? 2 * q_cap : 256;
					queue = realloc(queue,
							q_cap * sizeof *queue);
					if (!queue)
						die("out of memory");
				}
				queue[q_len++] = s;
				pthread_mutex_unlock(&q_lock);
				n_samples++;
			}
			changes++;
		}
		if (now >= next_progress) {
			write_progress(pfd, changes);
			next_progress += 1000000000LL;
		}
		int64_t next = sched0 + (int64_t)(changes - base) * period;
		sleep_until(next < end ? next : end);
	}
	int64_t t_stop = now_ns(CLOCK_MONOTONIC);
	write_progress(pfd, changes);
	close(pfd);
	{
		FILE *sf = fopen(stopped, "w");
		if (!sf)
			die("%s: %s", stopped, strerror(errno));
		fprintf(sf, "%.6f\n", now_ns(CLOCK_REALTIME) / 1e9);
		fclose(sf);
	}

	pthread_mutex_lock(&q_lock);
	writer_done = 1;
	pthread_mutex_unlock(&q_lock);
	pthread_join(th, NULL);
	if (raw && fclose(raw) != 0)
		die("%s: %s", raw_path, strerror(errno));

	qsort(lat, n_lat, sizeof *lat, cmp_i64);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double secs = (t_stop - t0) / 1e9;
	printf("changes=%lu\n", changes);
	printf("inplace=%lu\n", n_inplace);
	printf("renames=%lu\n", n_rename);
	printf("seconds=%.3f\n", secs);
	printf("rate=%.1f\n", secs > 0 ? changes / secs : 0);
	printf("behind=%lu\n", behind);
	printf("samples=%lu\n", n_samples);
	printf("visible=%lu\n", n_res[RES_OK] + n_res[RES_NEWER]);
	printf("newer=%lu\n", n_res[RES_NEWER]);
	printf("late=%lu\n", n_res[RES_LATE]);
	printf("torn=%lu\n", n_res[RES_TORN]);
	printf("read_errors=%lu\n", n_read_err);
	printf("odd_reads=%lu\n", n_odd);
	printf("p50_ms=%.3f\n", pct_ms(0.50));
	printf("p90_ms=%.3f\n", pct_ms(0.90));
	printf("p99_ms=%.3f\n", pct_ms(0.99));
	printf("max_ms=%.3f\n", n_lat ? lat[n_lat - 1] / 1e6 : 0.0);
	printf("cpu_s=%.2f\n", ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
				       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	printf("interrupted=%d\n", stop_now ? 1 : 0);
	free(seqs);
	free(lat);
	free(queue);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "port"))
		return cmd_port();
	if (argc >= 2 && !strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	fputs("usage: soak-writer port | init ROOT MAPPINGS DIRS FILES SIZE | "
	      "run OPTION...\n",
	      stderr);
	return 2;
}
