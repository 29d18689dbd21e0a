#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "state.h"

#define STATE_MAGIC "atomsync-state 1"

char *state_escape(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++)
		n += (*p <= 0x20 || *p >= 0x7f || *p == '\\') ? 4 : 1;
	char *r = malloc(n + 1), *q = r;
	if (r == NULL)
		return NULL;
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '\\') {
			*q++ = '\\';
			*q++ = 'x';
			*q++ = hex[*p >> 4];
			*q++ = hex[*p & 15];
		} else {
			*q++ = (char)*p;
		}
	}
	*q = '\0';
	return r;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int state_unescape(const char *s, char **out)
{
	char *r = malloc(strlen(s) + 1), *q = r;

	if (r == NULL)
		return -ENOMEM;
	while (*s) {
		if (*s != '\\') {
			*q++ = *s++;
			continue;
		}
		int hi, lo;
		if (s[1] != 'x' || (hi = hexval(s[2])) < 0 ||
		    (lo = hexval(s[3])) < 0 || (hi == 0 && lo == 0)) {
			free(r);
			return -EINVAL;
		}
		*q++ = (char)(hi << 4 | lo);
		s += 4;
	}
	*q = '\0';
	*out = r;
	return 0;
}

int state_save(int dfd, const struct snapshot *s, const char *gen)
{
	int fd = openat(dfd, STATE_TMP,
			O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			0644);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		int rc = -errno;
		close(fd);
		unlinkat(dfd, STATE_TMP, 0);
		return rc;
	}
	char *eg = state_escape(gen);
	int rc = 0;
	if (eg == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	fprintf(f, "%s\ngeneration %s\nrecorded %lld %ld\nentries %zu\n",
		STATE_MAGIC, eg, (long long)s->taken.tv_sec,
		(long)s->taken.tv_nsec, s->n);
	free(eg);
	for (size_t i = 0; i < s->n; i++) {
		const struct snap_entry *e = &s->v[i];
		char *ep = state_escape(e->path);
		if (ep == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		fprintf(f,
			"%c %o %" PRIu32 " %" PRIu32 " %" PRIu64
			" %lld %ld %lld %ld %" PRIu64 " %" PRIu64 " %s\n",
			e->type == SNAP_DIR ? 'D' : 'F', (unsigned)e->mode,
			e->uid, e->gid, e->size, (long long)e->mtime.tv_sec,
			(long)e->mtime.tv_nsec, (long long)e->ctime.tv_sec,
			(long)e->ctime.tv_nsec, e->dev, e->ino, ep);
		free(ep);
	}
	fprintf(f, "end\n");
out:
	if (fflush(f) != 0 && rc == 0)
		rc = -errno;
	if (ferror(f) && rc == 0)
		rc = -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	/* No fsync: a state file lost in a crash names an older generation
	 * (or none) and is simply not trusted on the next start. */
	if (rc == 0 && renameat(dfd, STATE_TMP, dfd, STATE_FILE) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(dfd, STATE_TMP, 0);
	return rc;
}

static int read_all(int dfd, char **buf, size_t *len)
{
	int fd = openat(dfd, STATE_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *b = malloc(cap);
	if (b == NULL) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (n + 1 >= cap) {
			char *nb = realloc(b, cap * 2);
			if (nb == NULL) {
				free(b);
				close(fd);
				return -ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, b + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int rc = -errno;
			free(b);
			close(fd);
			return rc;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

/* Splits off the next line; NULL at the end or on a line without '\n'. */
static char *next_line(char **p, char *end)
{
	char *s = *p;
	char *nl = memchr(s, '\n', (size_t)(end - s));

	if (s >= end || nl == NULL)
		return NULL;
	*nl = '\0';
	*p = nl + 1;
	return s;
}

static int parse_entry(char *line, struct snap_entry *e)
{
	char type;
	unsigned mode;
	long long ms, cs;
	long mn, cn;
	int off = 0;

	if (sscanf(line,
		   "%c %o %" SCNu32 " %" SCNu32 " %" SCNu64
		   " %lld %ld %lld %ld %" SCNu64 " %" SCNu64 " %n",
		   &type, &mode, &e->uid, &e->gid, &e->size, &ms, &mn, &cs,
		   &cn, &e->dev, &e->ino, &off) != 11 ||
	    off == 0)
		return -EINVAL;
	if ((type != 'D' && type != 'F') || mode > 07777 || mn < 0 ||
	    mn > 999999999 || cn < 0 || cn > 999999999)
		return -EINVAL;
	const char *p = line + off;
	if (*p == '\0' || strchr(p, ' ') != NULL)
		return -EINVAL;
	int rc = state_unescape(p, &e->path);
	if (rc < 0)
		return rc;
	e->type = type == 'D' ? SNAP_DIR : SNAP_FILE;
	e->mode = mode;
	e->mtime.tv_sec = (time_t)ms;
	e->mtime.tv_nsec = mn;
	e->ctime.tv_sec = (time_t)cs;
	e->ctime.tv_nsec = cn;
	return 0;
}

int state_load(int dfd, struct snapshot **out, char **gen)
{
	char *buf = NULL, *p, *end, *line;
	size_t len = 0;
	struct snapshot *s = NULL;
	long long sec;
	long nsec;
	size_t count;
	int rc = read_all(dfd, &buf, &len);

	if (rc < 0)
		return rc;
	p = buf;
	end = buf + len;
	*gen = NULL;
	rc = -EINVAL;
	line = next_line(&p, end);
	if (line == NULL || strcmp(line, STATE_MAGIC) != 0)
		goto fail;
	line = next_line(&p, end);
	if (line == NULL || strncmp(line, "generation ", 11) != 0 ||
	    state_unescape(line + 11, gen) < 0)
		goto fail;
	line = next_line(&p, end);
	if (line == NULL ||
	    sscanf(line, "recorded %lld %ld", &sec, &nsec) != 2)
		goto fail;
	line = next_line(&p, end);
	if (line == NULL || sscanf(line, "entries %zu", &count) != 1)
		goto fail;
	if (snapshot_open(NULL, &s, NULL) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	s->taken.tv_sec = (time_t)sec;
	s->taken.tv_nsec = nsec;
	for (size_t i = 0; i < count; i++) {
		struct snap_entry e = {0};
		line = next_line(&p, end);
		if (line == NULL || parse_entry(line, &e) < 0)
			goto fail;
		/* Entries must come sorted and unique, as they were saved. */
		if (s->n > 0 &&
		    snapshot_path_cmp(s->v[s->n - 1].path, e.path) >= 0) {
			free(e.path);
			goto fail;
		}
		int r = snapshot_add(s, &e);
		free(e.path);
		if (r < 0) {
			rc = r;
			goto fail;
		}
	}
	line = next_line(&p, end);
	if (line == NULL || strcmp(line, "end") != 0 || p != end)
		goto fail;
	free(buf);
	*out = s;
	return 0;
fail:
	free(buf);
	free(*gen);
	*gen = NULL;
	snapshot_free(s);
	return rc;
}
