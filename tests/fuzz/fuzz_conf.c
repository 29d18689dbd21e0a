/* libFuzzer target for the config loader: the input is a whole config
 * file.  It is written to a file of ours, mode 0600, in a directory of
 * its own under $TMPDIR (not a memfd: conf_load() refuses a file others
 * may write, and resolves the path as a root daemon must, which
 * /proc/self/fd/N links do not pass),
 * read back by conf_load(), then conf_check() runs on the result.  Besides memory errors and leaks
 * (ASan, LSan, UBSan), any broken invariant aborts:
 *
 *   - conf_load() on a readable file returns 0 and a config;
 *   - every message is "PATH: ..." or "PATH:LINE: ..." with 1 <= LINE <=
 *     the number of lines in the input;
 *   - every value kept is within the range the loader promises;
 *   - a config without any message has a mapping, and every mapping has
 *     a source and a target (and not both reload_pidfile and reload_pid);
 *   - every exclude pattern kept is valid and without an unescaped blank,
 *     and each is compiled;
 *   - conf_sync_dup() gives a mapping conf_sync_equal() to the original. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",     \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static int fd = -1;
static char dir[4096], path[4200];

static void remove_tmp(void)
{
	if (path[0])
		unlink(path);
	if (dir[0])
		rmdir(dir);
}

/* In a directory of its own: conf_load() refuses a file in one where
 * others may make names, as /tmp is. */
static int open_scratch(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/atomsync-fuzz-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz_conf: scratch directory");
		dir[0] = '\0';
		return -1;
	}
	atexit(remove_tmp);
	snprintf(path, sizeof(path), "%s/atomsync.conf", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror("fuzz_conf: scratch file");
		path[0] = '\0';
		return -1;
	}
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (open_scratch() < 0)
		abort();
	return 0;
}

static void put_input(const uint8_t *data, size_t size)
{
	CHECK(ftruncate(fd, 0) == 0);
	size_t off = 0;
	while (off < size) {
		ssize_t n = pwrite(fd, data + off, size - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0);
		off += (size_t)n;
	}
}

/* Lines as getline(3) sees them: one per '\n', plus an unterminated
 * last one. */
static unsigned long count_lines(const uint8_t *data, size_t size)
{
	unsigned long n = 0;

	for (size_t i = 0; i < size; i++)
		n += data[i] == '\n';
	if (size > 0 && data[size - 1] != '\n')
		n++;
	return n;
}

static void check_message(const char *m, unsigned long nlines)
{
	size_t pl = strlen(path);

	CHECK(m != NULL);
	if (strncmp(m, path, pl) != 0 || m[pl] != ':') {
		fprintf(stderr, "message without the file name: \"%s\"\n", m);
		abort();
	}
	const char *p = m + pl + 1;
	if (*p == ' ')
		return; /* "PATH: message", about the whole file */
	CHECK(isdigit((unsigned char)*p));
	char *end;
	errno = 0;
	unsigned long line = strtoul(p, &end, 10);
	CHECK(errno == 0 && *end == ':');
	if (line < 1 || line > nlines) {
		fprintf(stderr, "line %lu out of 1..%lu: \"%s\"\n", line, nlines,
			m);
		abort();
	}
}

static bool valid_name(const char *n)
{
	if (n == NULL || *n == '\0')
		return false;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && *n != '-' && *n != '_' &&
		    *n != '.')
			return false;
	return true;
}

static void check_sync(const struct conf *c, size_t i)
{
	const struct conf_sync *s = &c->syncs[i];

	CHECK(valid_name(s->name));
	for (size_t k = 0; k < i; k++)
		CHECK(strcmp(c->syncs[k].name, s->name) != 0);
	CHECK(s->line >= 1);
	CHECK(s->source == NULL || s->source[0] == '/');
	CHECK(s->target == NULL || s->target[0] == '/');
	CHECK(s->debounce_ms <= 3600000);
	CHECK(s->max_delay_ms <= 86400000);
	CHECK(s->resync_interval_s <= 604800);
	CHECK(s->poll_interval_ms >= 100 && s->poll_interval_ms <= 3600000);
	CHECK(s->grace_ms <= 3600000);
	CHECK(s->file_mode >= -1 && s->file_mode <= 0777);
	CHECK(s->dir_mode >= -1 && s->dir_mode <= 0777);
	CHECK(s->symlinks == SNAP_LINKS_INSIDE ||
	      s->symlinks == SNAP_LINKS_FOLLOW || s->symlinks == SNAP_LINKS_SKIP);
	CHECK(s->owner != NULL || s->uid == SNAP_NO_ID);
	CHECK(s->group != NULL || s->gid == SNAP_NO_ID);
	CHECK(s->reload_signal >= 0 && s->reload_signal <= 64);
	CHECK(s->reload_pid == 0 ||
	      (s->reload_pid >= 2 && s->reload_pid <= 4194304));
	CHECK(s->reload_pidfile == NULL || s->reload_pidfile[0] == '/');
	CHECK(s->hook_timeout_s >= 1 && s->hook_timeout_s <= 86400);
	CHECK(s->nexclude == 0 || s->exclude != NULL);
	CHECK(ignore_count(s->ignore) == s->nexclude);
	for (size_t k = 0; k < s->nexclude; k++) {
		const char *x = s->exclude[k];
		CHECK(x != NULL && x[0] != '\0' && ignore_check(x, NULL) == 0);
		/* Blanks separate patterns unless a backslash escapes one. */
		for (size_t i = 0; x[i]; i++) {
			CHECK(x[i] != ' ' && x[i] != '\t');
			if (x[i] == '\\')
				i++;
		}
	}
	CHECK(s->nhook_env == 0 || s->hook_env != NULL);
	for (size_t k = 0; k < s->nhook_env; k++)
		CHECK(s->hook_env[k] != NULL && s->hook_env[k][0] != '\0');

	struct conf_sync *d = conf_sync_dup(s);
	CHECK(d != NULL);
	CHECK(conf_sync_equal(s, d));
	CHECK(conf_sync_equal(d, s));
	conf_sync_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *c = NULL;
	struct conf_errors errs = {0};
	unsigned long nlines = count_lines(data, size);

	put_input(data, size);
	int rc = conf_load(path, &c, &errs);
	if (rc != 0) {
		fprintf(stderr, "conf_load(%s): %s\n", path, strerror(-rc));
		abort();
	}
	CHECK(c != NULL);
	CHECK(c->path != NULL && strcmp(c->path, path) == 0);
	CHECK(c->metrics_file == NULL || c->metrics_file[0] == '/');
	CHECK(c->unhealthy_after_s >= 1 && c->unhealthy_after_s <= 604800);
	for (size_t i = 0; i < c->nsyncs; i++)
		check_sync(c, i);
	size_t nload = errs.n;
	conf_check(c, &errs);
	CHECK(errs.n >= nload);
	for (size_t i = 0; i < errs.n; i++)
		check_message(errs.v[i], nlines);
	if (errs.n == 0) {
		CHECK(c->nsyncs > 0);
		for (size_t i = 0; i < c->nsyncs; i++) {
			CHECK(c->syncs[i].source != NULL);
			CHECK(c->syncs[i].target != NULL);
			CHECK(c->syncs[i].max_delay_ms >=
			      c->syncs[i].debounce_ms);
			CHECK(!(c->syncs[i].reload_pidfile &&
				c->syncs[i].reload_pid));
		}
	}
	conf_errors_fini(&errs);
	CHECK(errs.v == NULL && errs.n == 0);
	conf_free(c);
	return 0;
}
