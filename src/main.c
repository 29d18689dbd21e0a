#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "array.h"
#include "conf.h"
#include "daemon.h"
#include "hook.h"
#include "ignore.h"
#include "log.h"
#include "publish.h"
#include "snapshot.h"
#include "status.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#define DEFAULT_CONFIG SYSCONFDIR "/atomsync/atomsync.conf"

struct options {
	const char *config;
	const char *source, *target;
	bool once, dry_run, check_config, allow_empty, status;
	long debounce_ms; /* -1: as configured */
	bool level_set, format_set;
	enum log_level level;
	enum log_format format;
	/* --source/--target only */
	bool links_set, no_fsync;
	enum snap_links links;
	char **exclude; /* the arguments themselves */
	size_t nexclude, excludecap;
	long grace_ms; /* -1: default */
	bool adhoc_knobs; /* one of those was given */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: atomsyncd [--config FILE] [OPTION]...\n"
		"       atomsyncd --source DIR --target DIR [OPTION]...\n"
		"Keep target directories in step with source trees, atomically.\n"
		"\n"
		"  -c, --config FILE      read mappings from FILE (default "
		"%s)\n"
		"  -s, --source DIR       the tree to read (with --target: one "
		"mapping)\n"
		"  -t, --target DIR       the directory to publish into\n"
		"      --once             publish every mapping once and exit\n"
		"  -n, --dry-run          log what would change; write nothing\n"
		"      --check-config     report every problem in the config and "
		"exit\n"
		"      --status           show each target's live generation, "
		"whether it is in\n"
		"                         step with its source, its daemon and "
		"last error; exit\n"
		"                         0 when every target is in step\n"
		"      --debounce MS      quiet period before a publish\n"
		"      --allow-empty      publish a source that became empty\n"
		"      --log-level LEVEL  error, warn (or warning), info or debug\n"
		"      --log-format FMT   text, json or journal\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\n"
		"With --source and --target only:\n"
		"      --exclude PATTERN  skip what PATTERN matches (gitignore(5) "
		"rules; repeatable)\n"
		"      --symlinks MODE    inside (default), follow or skip\n"
		"      --no-fsync         do not flush generations to disk\n"
		"      --grace-ms MS      keep a replaced generation this long "
		"(default %d)\n"
		"\n"
		"Signals: TERM/INT finish the publish in progress and stop (the "
		"generation\nreplaced last is left for the next run to remove "
		"after its grace period);\nHUP reloads the config; USR1 logs the "
		"status of every mapping.\n"
		"Exit status: 0 success, 1 runtime failure (--status: a target "
		"not in step),\n2 usage or config error.\n"
		"See atomsyncd(8) and atomsync.conf(5).\n",
		DEFAULT_CONFIG, CONF_GRACE_MS);
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

/* A path option's argument that begins with '-' is an option typed
 * after one that needs an argument (-t --check-config), not a path to
 * write into: refuse it, and say how to name such a path.  An empty one
 * (an unset shell variable) names nothing. */
static int path_arg(const char *opt, const char *arg, const char **out)
{
	if (arg[0] == '\0')
		return usage_error("%s: empty path", opt);
	/* A second one is a slip (of a unit file, say), not a choice. */
	if (*out)
		return usage_error("%s given twice ('%s', then '%s')", opt,
				   *out, arg);
	if (arg[0] == '-')
		return usage_error("%s: '%s' looks like an option, not a path; "
				   "write a path that begins with '-' as "
				   "./%s",
				   opt, arg, arg);
	*out = arg;
	return 0;
}

static int parse_ms(const char *s, long max, long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}


/* What the command line changes in every config, the first and each
 * one a reload loads. */
static void apply_overrides(struct conf *c, void *data)
{
	const struct options *op = data;

	for (size_t i = 0; i < c->nsyncs; i++) {
		struct conf_sync *s = &c->syncs[i];
		if (op->allow_empty)
			s->allow_empty = true;
		if (op->debounce_ms >= 0) {
			s->debounce_ms = (unsigned)op->debounce_ms;
			if (s->max_delay_ms < s->debounce_ms)
				s->max_delay_ms = s->debounce_ms;
		}
	}
	/* The command line wins; a key removed from the file on reload
	 * goes back to its default. */
	if (!op->level_set)
		log_set_level(c->log_level_set ? c->log_level : LOG_LVL_INFO);
	if (!op->format_set)
		log_set_format(c->log_format_set ? c->log_format
						 : log_format_detect());
}

static int run_status(const struct options *op, struct conf *conf)
{
	/* The answer goes to standard output; a line on standard error is
	 * for a problem, not for each step of the comparison. */
	if (!op->level_set)
		log_set_level(LOG_LVL_WARN);
	int rc = status_show_all(conf, stdout);
	conf_free(conf);
	return rc < 0 ? EXIT_RUNTIME : 0;
}

static int run_once(const struct options *op, struct conf *conf)
{
	struct publish_seen seen = {0};
	int status = 0;

	for (size_t i = 0; i < conf->nsyncs; i++)
		if (publish_once(&conf->syncs[i], op->dry_run, &seen) < 0)
			status = EXIT_RUNTIME;
	publish_seen_fini(&seen);
	conf_free(conf);
	return status;
}

static int run_daemon(struct options *op, struct conf *conf)
{
	struct daemon_opts o = {
		.dry_run = op->dry_run,
		.adhoc = op->source != NULL,
		.override = apply_overrides,
		.data = op,
	};
	struct daemon *d = NULL;

	if (daemon_new(conf, &o, &d) < 0) {
		conf_free(conf);
		return EXIT_RUNTIME;
	}
	int rc = daemon_run(d);
	daemon_free(d);
	return rc < 0 ? EXIT_RUNTIME : 0;
}

/* ---- the command line ---- */

enum {
	OPT_ONCE = 256,
	OPT_CHECK,
	OPT_DEBOUNCE,
	OPT_EXCLUDE,
	OPT_SYMLINKS,
	OPT_NO_FSYNC,
	OPT_GRACE,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_ALLOW_EMPTY,
	OPT_STATUS,
};

static const struct option longopts[] = {
	{"config", required_argument, NULL, 'c'},
	{"source", required_argument, NULL, 's'},
	{"target", required_argument, NULL, 't'},
	{"once", no_argument, NULL, OPT_ONCE},
	{"dry-run", no_argument, NULL, 'n'},
	{"check-config", no_argument, NULL, OPT_CHECK},
	{"debounce", required_argument, NULL, OPT_DEBOUNCE},
	{"exclude", required_argument, NULL, OPT_EXCLUDE},
	{"symlinks", required_argument, NULL, OPT_SYMLINKS},
	{"no-fsync", no_argument, NULL, OPT_NO_FSYNC},
	{"grace-ms", required_argument, NULL, OPT_GRACE},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
	{"allow-empty", no_argument, NULL, OPT_ALLOW_EMPTY},
	{"status", no_argument, NULL, OPT_STATUS},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* Goes on parsing: what an option returns when the program does not end
 * with it. */
#define OPT_GO_ON (-1)

static int add_exclude(struct options *op, const char *pattern)
{
	char *why = NULL;

	if (ignore_check(pattern, &why) < 0) {
		usage_error("--exclude: %s", why ? why : "invalid pattern");
		free(why);
		return EXIT_USAGE;
	}
	if (array_grow(&op->exclude, &op->excludecap, op->nexclude,
		       sizeof(*op->exclude)) < 0)
		return EXIT_RUNTIME;
	op->exclude[op->nexclude++] = (char *)pattern;
	op->adhoc_knobs = true;
	return OPT_GO_ON;
}

static int parse_symlinks(struct options *op, const char *arg)
{
	op->links_set = op->adhoc_knobs = true;
	if (conf_parse_symlinks(arg, &op->links) < 0)
		return usage_error("--symlinks: '%s' is not inside, follow or "
				   "skip",
				   arg);
	return OPT_GO_ON;
}

/* The options that take a value other than a path. */
static int parse_value(struct options *op, int c, const char *arg)
{
	switch (c) {
	case OPT_DEBOUNCE:
		if (parse_ms(arg, 3600000, &op->debounce_ms) < 0)
			return usage_error("--debounce: '%s' is not a number "
					   "of milliseconds (0 to 3600000)",
					   arg);
		return OPT_GO_ON;
	case OPT_EXCLUDE:
		return add_exclude(op, arg);
	case OPT_SYMLINKS:
		return parse_symlinks(op, arg);
	case OPT_GRACE:
		op->adhoc_knobs = true;
		if (parse_ms(arg, 3600000, &op->grace_ms) < 0)
			return usage_error("--grace-ms: '%s' is not a number "
					   "of milliseconds (0 to 3600000)",
					   arg);
		return OPT_GO_ON;
	case OPT_LOG_LEVEL:
		op->level_set = true;
		if (log_level_parse(arg, &op->level) < 0)
			return usage_error("--log-level: '%s' is not error, "
					   "warn, info or debug",
					   arg);
		return OPT_GO_ON;
	default: /* OPT_LOG_FORMAT */
		op->format_set = true;
		if (log_format_parse(arg, &op->format) < 0)
			return usage_error("--log-format: '%s' is not text, "
					   "json or journal",
					   arg);
		return OPT_GO_ON;
	}
}

static int parse_option(struct options *op, int c, char **argv)
{
	switch (c) {
	case 'c':
		return path_arg("--config", optarg, &op->config) ? EXIT_USAGE
								  : OPT_GO_ON;
	case 's':
		return path_arg("--source", optarg, &op->source) ? EXIT_USAGE
								  : OPT_GO_ON;
	case 't':
		return path_arg("--target", optarg, &op->target) ? EXIT_USAGE
								  : OPT_GO_ON;
	case OPT_ONCE:
		op->once = true;
		return OPT_GO_ON;
	case 'n':
		op->dry_run = true;
		return OPT_GO_ON;
	case OPT_CHECK:
		op->check_config = true;
		return OPT_GO_ON;
	case OPT_ALLOW_EMPTY:
		op->allow_empty = true;
		return OPT_GO_ON;
	case OPT_STATUS:
		op->status = true;
		return OPT_GO_ON;
	case OPT_NO_FSYNC:
		op->no_fsync = op->adhoc_knobs = true;
		return OPT_GO_ON;
	case OPT_DEBOUNCE: case OPT_EXCLUDE: case OPT_SYMLINKS:
	case OPT_GRACE: case OPT_LOG_LEVEL: case OPT_LOG_FORMAT:
		return parse_value(op, c, optarg);
	case 'h':
		usage(stdout);
		return 0;
	case 'V':
		printf("atomsyncd %s\n", PACKAGE_VERSION);
		return 0;
	case ':':
		return usage_error("%s needs an argument", argv[optind - 1]);
	default:
		return usage_error("unknown option '%s'", argv[optind - 1]);
	}
}

/* Options that do not go together. */
static int check_options(const struct options *op, int argc, char **argv)
{
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if ((op->source == NULL) != (op->target == NULL))
		return usage_error("--source and --target go together");
	if (op->source && op->config)
		return usage_error("--config cannot be combined with --source "
				   "and --target");
	if (op->status && (op->once || op->dry_run || op->check_config))
		return usage_error("--status cannot be combined with --once, "
				   "--dry-run or --check-config");
	if (op->check_config && (op->once || op->dry_run))
		return usage_error("--check-config cannot be combined with "
				   "--once or --dry-run: it only checks");
	if (op->adhoc_knobs && op->source == NULL)
		return usage_error("--exclude, --symlinks, --no-fsync and "
				   "--grace-ms only go with --source and "
				   "--target; set them in the config file");
	return OPT_GO_ON;
}

static int parse_options(struct options *op, int argc, char **argv)
{
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:s:t:nhV", longopts, NULL)) !=
	       -1)
		if ((rc = parse_option(op, c, argv)) != OPT_GO_ON)
			return rc;
	return check_options(op, argc, argv);
}

/* ---- the config ---- */

/* The one mapping of --source and --target, with the options only they
 * take. */
static int load_adhoc(const struct options *op, struct conf **conf,
		      struct conf_errors *errs)
{
	int rc = conf_adhoc(op->source, op->target, conf, errs);

	if (rc < 0)
		return rc;
	struct conf_sync *s = &(*conf)->syncs[0];
	if (op->links_set)
		s->symlinks = op->links;
	if (op->no_fsync)
		s->fsync = false;
	if (op->grace_ms >= 0)
		s->grace_ms = (unsigned)op->grace_ms;
	for (size_t i = 0; rc == 0 && i < op->nexclude; i++)
		rc = conf_sync_add_exclude(s, op->exclude[i], NULL);
	return rc;
}

static int load_file(const struct options *op, struct conf **conf,
		     struct conf_errors *errs)
{
	const char *path = op->config ? op->config : DEFAULT_CONFIG;
	int rc = conf_load(path, conf, errs);

	if (rc >= 0)
		return 0;
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "atomsyncd: %s\n", errs->v[i]);
	if (errs->n == 0)
		fprintf(stderr, "atomsyncd: %s: %s\n", path, strerror(-rc));
	conf_errors_fini(errs);
	return EXIT_USAGE;
}

/* Loads and checks the config, reporting every problem at once. */
static int load_conf(const struct options *op, struct conf **conf)
{
	struct conf_errors errs = {0};
	int rc = op->source ? load_adhoc(op, conf, &errs)
			    : load_file(op, conf, &errs);

	if (rc == EXIT_USAGE)
		return rc;
	if (rc < 0) {
		fprintf(stderr, "atomsyncd: %s\n", strerror(-rc));
		conf_free(*conf);
		return EXIT_RUNTIME;
	}
	conf_check(*conf, &errs);
	conf_check_programs(*conf);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.v[i]);
	/* With the problems, or what --check-config says; logged when the
	 * mappings run. */
	for (size_t i = 0; i < (*conf)->warnings.n; i++) {
		if (op->check_config || errs.n > 0)
			fprintf(stderr, "warning: %s\n",
				(*conf)->warnings.v[i]);
		else
			log_warn("%s", (*conf)->warnings.v[i]);
	}
	if (errs.n > 0) {
		conf_errors_fini(&errs);
		conf_free(*conf);
		return EXIT_USAGE;
	}
	return OPT_GO_ON;
}

/* A snapshot is one large array of entries, made on a pool thread and
 * freed on another.  With glibc's defaults each pool thread grows an
 * arena of its own: a daemon keeping a tree of 100,000 entries grew from
 * 40 to over 100 MB in three publishes.  One arena keeps it at what it
 * holds.  Large arrays are left to glibc's own threshold, which rises to
 * the size of the first one freed: the arrays of each publish then reuse
 * the heap the last one freed rather than fault in new mappings (a record
 * of more than about 10,000 entries is kept in a store instead, and a
 * full read makes room for it at once: see snapshot_supersede()). */
static void tune_malloc(void)
{
#ifdef M_ARENA_MAX
	(void)mallopt(M_ARENA_MAX, 1);
#endif
}

/* A standard descriptor that whoever started us left closed would be
 * taken by the first file opened (the event loop's, a target's lock
 * file) and log lines then written into it: /dev/null holds its place,
 * once it is seen to be the null device (not a FIFO that would block,
 * nor a file that every log line would grow).  0, or a negative errno. */
static int stdio_hold(void)
{
	struct stat st;

	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		/* Those below are open: the lowest free one is fd.  O_RDWR
		 * opens even a FIFO at once. */
		int got = open("/dev/null", O_RDWR | O_NOCTTY);
		if (got < 0)
			return -errno;
		int rc = 0;
		if (got != fd)
			rc = -EBADF;
		else if (fstat(got, &st) < 0)
			rc = -errno;
		else if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
			rc = -ENODEV;
		if (rc < 0) {
			close(got);
			return rc;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	int held = stdio_hold();
	if (held < 0) {
		/* Where stderr is open, it says why. */
		fprintf(stderr, "atomsyncd: standard input, output or error is "
				"closed, and /dev/null cannot be opened in its "
				"place: %s\n",
			held == -ENODEV ? "not the null device"
					: strerror(-held));
		return 1;
	}

	struct options op = {
		.debounce_ms = -1,
		.grace_ms = -1,
		.level = LOG_LVL_INFO,
		.format = log_format_detect(),
	};
	struct conf *conf = NULL;
	int rc = parse_options(&op, argc, argv);

	if (rc != OPT_GO_ON) {
		free(op.exclude);
		return rc;
	}
	log_init(op.format, op.level);
	hook_close_inherited();
	tune_malloc();
	/* Deep trees and many mappings publishing at once hold a directory
	 * descriptor per level: use all the descriptors allowed. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	rc = load_conf(&op, &conf);
	free(op.exclude);
	if (rc != OPT_GO_ON)
		return rc;
	if (op.check_config) {
		printf("%s: OK, %zu mapping%s\n", conf->path, conf->nsyncs,
		       conf->nsyncs == 1 ? "" : "s");
		conf_free(conf);
		return 0;
	}
	apply_overrides(conf, &op);
	if (op.status)
		return run_status(&op, conf);
	if (op.once)
		return run_once(&op, conf);
	return run_daemon(&op, conf);
}
