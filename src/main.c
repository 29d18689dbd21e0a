#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "snapshot.h"
#include "writer.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* A torn read is retried this many times before --once gives up. */
#define ONCE_TRIES 5

struct options {
	const char *source, *target;
	bool once, dry_run, fsync;
	enum log_level level;
	enum log_format format;
	enum snap_links links;
	char **exclude;
	size_t nexclude;
	unsigned grace_ms;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: atomsyncd --source DIR --target DIR [--once] [OPTION]...\n"
		"Keep a target directory in step with a source tree, atomically.\n"
		"\n"
		"  -s, --source DIR       the tree to read\n"
		"  -t, --target DIR       the directory to publish into\n"
		"      --once             publish once and exit\n"
		"  -n, --dry-run          log what would change; write nothing\n"
		"      --exclude GLOB     skip names or paths matching GLOB "
		"(repeatable)\n"
		"      --symlinks MODE    inside (default), follow or skip\n"
		"      --no-fsync         do not flush generations to disk\n"
		"      --grace-ms MS      keep a replaced generation this long "
		"(default 1000)\n"
		"      --log-level LEVEL  error, warn, info (default) or debug\n"
		"      --log-format FMT   text, json or journal\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\n"
		"Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
		"See atomsyncd(8).\n");
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

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static void log_warnings(const struct snapshot *s)
{
	for (size_t i = 0; i < s->nwarn; i++)
		log_warn("source %s: %s: %s", s->root, s->warn[i].path,
			 snapshot_warn_str(s->warn[i].kind));
}

static int run_once(const struct options *op)
{
	struct snapshot_opts so = {
		.links = op->links,
		.exclude = op->exclude,
		.nexclude = op->nexclude,
	};
	struct writer_opts wo = {
		.fsync = op->fsync,
		.dry_run = op->dry_run,
		.uid = SNAP_NO_ID,
		.gid = SNAP_NO_ID,
		.file_mode = -1,
		.dir_mode = -1,
		.grace_ms = op->grace_ms,
	};
	struct writer *w = NULL;
	struct writer_result r = {0};
	char *err = NULL;
	int rc = writer_open(op->target, &wo, &w, &err);

	if (rc < 0) {
		log_error("%s", err ? err : strerror(-rc));
		free(err);
		return EXIT_RUNTIME;
	}
	for (int attempt = 1;; attempt++) {
		struct snapshot *s = NULL;
		free(err);
		err = NULL;
		rc = snapshot_take(op->source, &so, &s, &err);
		if (rc == 0) {
			if (attempt == 1)
				log_warnings(s);
			rc = writer_publish(w, s, &r, &err);
		}
		if (rc != -EAGAIN || attempt == ONCE_TRIES)
			break;
		log_debug("%s; retrying", err ? err : "source changed");
		struct timespec ts = {0, 20000000L * attempt};
		nanosleep(&ts, NULL);
	}
	if (rc == -EAGAIN) {
		log_error("%s; gave up after %d tries", err, ONCE_TRIES);
	} else if (rc < 0) {
		log_error("%s", err ? err : strerror(-rc));
	} else if (op->dry_run) {
		log_info("dry run: %zu added, %zu changed, %zu removed",
			 r.added, r.changed, r.removed);
	} else if (r.published) {
		log_info("target %s: published %s (%zu added, %zu changed, "
			 "%zu removed; %zu copied, %zu reused)",
			 op->target, r.generation, r.added, r.changed,
			 r.removed, r.copied, r.linked);
	} else {
		log_info("target %s: unchanged (%s)", op->target,
			 r.generation ? r.generation : "empty");
	}
	free(err);
	writer_result_fini(&r);

	/* A replaced generation stays whole for its grace period, for
	 * readers that still have it open; then it goes. */
	uint64_t next = 0;
	writer_retire(w, false, &next);
	while (next != 0) {
		uint64_t now = writer_now_ms();
		if (next > now) {
			struct timespec ts = {
				(time_t)((next - now) / 1000),
				(long)((next - now) % 1000) * 1000000L,
			};
			nanosleep(&ts, NULL);
		}
		writer_retire(w, false, &next);
	}
	writer_close(w);
	return rc < 0 ? EXIT_RUNTIME : 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_ONCE = 256,
		OPT_EXCLUDE,
		OPT_SYMLINKS,
		OPT_NO_FSYNC,
		OPT_GRACE,
		OPT_LOG_LEVEL,
		OPT_LOG_FORMAT,
	};
	static const struct option longopts[] = {
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 't'},
		{"once", no_argument, NULL, OPT_ONCE},
		{"dry-run", no_argument, NULL, 'n'},
		{"exclude", required_argument, NULL, OPT_EXCLUDE},
		{"symlinks", required_argument, NULL, OPT_SYMLINKS},
		{"no-fsync", no_argument, NULL, OPT_NO_FSYNC},
		{"grace-ms", required_argument, NULL, OPT_GRACE},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct options op = {
		.fsync = true,
		.level = LOG_LVL_INFO,
		.format = log_format_detect(),
		.links = SNAP_LINKS_INSIDE,
		.grace_ms = 1000,
	};
	unsigned long v;
	int c, status;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:t:nhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			op.source = optarg;
			break;
		case 't':
			op.target = optarg;
			break;
		case OPT_ONCE:
			op.once = true;
			break;
		case 'n':
			op.dry_run = true;
			break;
		case OPT_EXCLUDE: {
			char **nv = realloc(op.exclude, (op.nexclude + 1) *
								sizeof(*nv));
			if (nv == NULL)
				return EXIT_RUNTIME;
			op.exclude = nv;
			op.exclude[op.nexclude++] = optarg;
			break;
		}
		case OPT_SYMLINKS:
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
			op.fsync = false;
			break;
		case OPT_GRACE:
			if (parse_uint(optarg, 3600000, &v) < 0)
				return usage_error("--grace-ms: '%s' is not a "
						   "number of milliseconds "
						   "(0 to 3600000)",
						   optarg);
			op.grace_ms = (unsigned)v;
			break;
		case OPT_LOG_LEVEL:
			if (log_level_parse(optarg, &op.level) < 0)
				return usage_error("--log-level: '%s' is not "
						   "error, warn, info or debug",
						   optarg);
			break;
		case OPT_LOG_FORMAT:
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
	log_init(op.format, op.level);
	if (op.source == NULL || op.target == NULL)
		return usage_error("%s", "--source and --target are both "
					 "required");
	if (!op.once)
		return usage_error("%s", "only --once is implemented");
	status = run_once(&op);
	free(op.exclude);
	return status;
}
