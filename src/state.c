#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "state.h"

#define STATE_MAGIC "atomsync-state 3"

/* This boot of the machine, to tell whether unflushed data survived:
 * read once, as it cannot change while we run (a journal of a thousand
 * records would otherwise read it a thousand times at a start). */
static char boot_buf[64];
static pthread_once_t boot_once = PTHREAD_ONCE_INIT;

static void boot_read(void)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	snprintf(boot_buf, sizeof(boot_buf), "unknown");
	if (f) {
		if (fgets(boot_buf, (int)sizeof(boot_buf), f) == NULL)
			snprintf(boot_buf, sizeof(boot_buf), "unknown");
		boot_buf[strcspn(boot_buf, "\n ")] = '\0';
		fclose(f);
	}
}

static const char *boot_id(void)
{
	pthread_once(&boot_once, boot_read);
	return boot_buf;
}

static bool needs_escape(unsigned char c)
{
	return c <= 0x20 || c >= 0x7f || c == '\\';
}

/* Writes `s` escaped at q (at most 4 bytes per byte of s, no NUL);
 * returns the end. */
static char *escape_into(char *q, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (needs_escape(*p)) {
			*q++ = '\\';
			*q++ = 'x';
			*q++ = hex[*p >> 4];
			*q++ = hex[*p & 15];
		} else {
			*q++ = (char)*p;
		}
	}
	return q;
}

char *state_escape(const char *s)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += needs_escape(*p) ? 4 : 1;
	char *r = malloc(n + 1);
	if (r == NULL)
		return NULL;
	*escape_into(r, s) = '\0';
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

/* state_unescape() into `s` itself: what it decodes is never longer. */
static int unescape_in_place(char *s)
{
	char *q = s;

	while (*s) {
		if (*s != '\\') {
			*q++ = *s++;
			continue;
		}
		int hi, lo;
		if (s[1] != 'x' || (hi = hexval(s[2])) < 0 ||
		    (lo = hexval(s[3])) < 0 || (hi == 0 && lo == 0))
			return -EINVAL;
		*q++ = (char)(hi << 4 | lo);
		s += 4;
	}
	*q = '\0';
	return 0;
}

int state_unescape(const char *s, char **out)
{
	char *r = strdup(s);

	if (r == NULL)
		return -ENOMEM;
	int rc = unescape_in_place(r);
	if (rc < 0) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* An output buffer flushed to an fd. */
struct out {
	int fd;
	char buf[65536];
	size_t len;
	uint64_t total; /* bytes handed to write() */
	int err;
};

static void out_flush(struct out *o)
{
	size_t off = 0;

	while (off < o->len && o->err == 0) {
		ssize_t w = write(o->fd, o->buf + off, o->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			o->err = w < 0 ? -errno : -EIO;
		else
			off += (size_t)w;
	}
	o->total += off;
	o->len = 0;
}

static void out_bytes(struct out *o, const char *s, size_t n)
{
	while (n > 0) {
		if (o->len == sizeof(o->buf))
			out_flush(o);
		size_t k = sizeof(o->buf) - o->len;
		if (k > n)
			k = n;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
	}
}

static void out_str(struct out *o, const char *s)
{
	out_bytes(o, s, strlen(s));
}

/* Escaped straight into the buffer: no copy per path. */
static void out_escaped(struct out *o, const char *s)
{
	size_t worst = 4 * strlen(s);

	if (worst > sizeof(o->buf) - o->len)
		out_flush(o);
	if (worst > sizeof(o->buf)) {
		char *e = state_escape(s);
		if (e == NULL) {
			if (o->err == 0)
				o->err = -ENOMEM;
			return;
		}
		out_str(o, e);
		free(e);
		return;
	}
	o->len = (size_t)(escape_into(o->buf + o->len, s) - o->buf);
}

/* A constant base each: a division by a variable base costs more than
 * the rest of an entry. */
static void out_dec(struct out *o, uint64_t v, char sep)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	tmp[--i] = sep;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	out_bytes(o, tmp + i, sizeof(tmp) - i);
}

static void out_oct(struct out *o, uint32_t v, char sep)
{
	char tmp[16];
	size_t i = sizeof(tmp);

	tmp[--i] = sep;
	do {
		tmp[--i] = (char)('0' + (v & 7));
		v >>= 3;
	} while (v);
	out_bytes(o, tmp + i, sizeof(tmp) - i);
}

static void out_snum(struct out *o, int64_t v, char sep)
{
	if (v < 0)
		out_bytes(o, "-", 1);
	out_dec(o, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, sep);
}

/* A time as seconds and nanoseconds, each followed by a space. */
static void out_time(struct out *o, int64_t ns)
{
	struct timespec t = clock_ns_ts(ns);

	out_snum(o, (int64_t)t.tv_sec, ' ');
	out_dec(o, (uint64_t)t.tv_nsec, ' ');
}

/* "F 644 uid gid size msec mnsec csec cnsec dev ino tino tmsec tmnsec
 * path" (see parse_entry). */
static void out_entry(struct out *o, const struct snap_entry *e)
{
	out_str(o, e->type == SNAP_DIR ? "D " : "F ");
	out_oct(o, e->mode, ' ');
	out_dec(o, e->uid, ' ');
	out_dec(o, e->gid, ' ');
	out_dec(o, e->size, ' ');
	out_time(o, e->mtime_ns);
	out_time(o, e->ctime_ns);
	out_dec(o, e->dev, ' ');
	out_dec(o, e->ino, ' ');
	out_dec(o, e->t_ino, ' ');
	out_time(o, e->t_mtime_ns);
	out_escaped(o, e->path);
	out_str(o, "\n");
}

/* "recorded SEC NSEC\nflushed 0|1 BOOT\n": when the source was read, and
 * whether the generation was flushed (in this boot, when not); then
 * "checked SEC\n" when the generation's files were all checked against
 * the record (s->checked). */
static void out_recorded(struct out *o, const struct snapshot *s,
			 bool flushed)
{
	out_str(o, "\nrecorded ");
	out_snum(o, (int64_t)s->taken.tv_sec, ' ');
	out_dec(o, (uint64_t)s->taken.tv_nsec, '\n');
	out_str(o, flushed ? "flushed 1 " : "flushed 0 ");
	out_str(o, boot_id());
	out_str(o, "\n");
	if (s->checked > 0) {
		out_str(o, "checked ");
		out_dec(o, (uint64_t)s->checked, '\n');
	}
}

static struct out *out_new(int fd)
{
	struct out *o = malloc(sizeof(*o));

	if (o) {
		o->fd = fd;
		o->len = 0;
		o->total = 0;
		o->err = 0;
	}
	return o;
}

/* The whole state, through STATE_TMP, and no journal; *bytes is its
 * size. */
static int save_full(int dfd, const struct snapshot *s, const char *gen,
		     bool flushed, uint64_t *bytes)
{
	struct out *o = out_new(-1);
	const char *step;
	int rc = 0;

	if (o == NULL)
		return -ENOMEM;
	/* Private: it names what 0700 directories of the source hold. */
	o->fd = fsutil_tmp_create(dfd, STATE_TMP, 0600, &step);
	if (o->fd < 0) {
		rc = o->fd;
		free(o);
		return rc;
	}
	out_str(o, STATE_MAGIC "\ngeneration ");
	out_escaped(o, gen);
	out_recorded(o, s, flushed);
	out_str(o, "entries ");
	out_dec(o, s->n, '\n');
	for (size_t i = 0; i < s->n; i++)
		out_entry(o, &s->v[i]);
	out_str(o, "end\n");
	out_flush(o);
	*bytes = o->total;
	/* No fsync: a state file lost in a crash names an older generation
	 * (or none) and is simply not trusted on the next start. */
	rc = fsutil_tmp_commit(dfd, STATE_TMP, STATE_FILE, o->fd, o->err,
			       &step);
	free(o);
	/* A journal left beside names another base: it goes. */
	if (rc == 0 && unlinkat(dfd, STATE_JOURNAL, 0) < 0 && errno != ENOENT)
		rc = -errno;
	return rc;
}

int state_save(int dfd, const struct snapshot *s, const char *gen,
	       bool flushed)
{
	uint64_t bytes;

	return save_full(dfd, s, gen, flushed, &bytes);
}

/* ---- the journal ----
 *
 * "atomsync-journal 1\nbase GEN INO\n" (the state file's generation and
 * inode), then one record per publish:
 * "record GEN\nrecorded ...\nflushed ...\n", the entries it added or
 * changed (as in the state file) and "- PATH" for each it removed, and
 * "commit N" with the number of entries it leaves.  A record cut short
 * by a crash has no commit line and is not applied; a journal whose
 * base is not the state file there is left over from an older one
 * (written whole, then a crash before the journal went) and ignored. */

#define JOURNAL_MAGIC "atomsync-journal 1"

void state_log_init(struct state_log *l)
{
	*l = (struct state_log){.base = NULL};
}

void state_log_fini(struct state_log *l)
{
	free(l->base);
	free(l->gen);
	state_log_init(l);
}

/* Whether the state file says the same of both (paths aside).  One
 * that was racy (SNAP_F_RACY) and no longer is differs too: recorded
 * again, with a later record's time, a load need not compare it. */
static bool same_saved(const struct snap_entry *a, const struct snap_entry *b)
{
	return !((a->flags & SNAP_F_RACY) && !(b->flags & SNAP_F_RACY)) &&
	       a->type == b->type && a->mode == b->mode && a->uid == b->uid &&
	       a->gid == b->gid && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
	       a->dev == b->dev && a->ino == b->ino && a->t_ino == b->t_ino &&
	       a->t_mtime_ns == b->t_mtime_ns;
}

/* An entry of `s` added or changed, or (del) one of `prev` removed. */
struct op {
	size_t i;
	bool del;
};

/* What differs from `prev` to `s`, in path order; -E2BIG when more than
 * `max` entries do (the state is then cheaper written whole). */
static int diff(const struct snapshot *prev, const struct snapshot *s,
		size_t max, struct op **out, size_t *n)
{
	struct op *v = NULL;
	size_t nv = 0, cap = 0, i = 0, j = 0, run = 0;
	struct snap_same same;

	/* Where s still shares prev's pages, nothing is read. */
	snapshot_same_init(&same, s, prev);
	while (i < prev->n || j < s->n) {
		size_t k = i == j ? snapshot_same_from(&same, i) : 0;
		if (k) {
			i += k;
			j += k;
			continue;
		}
		int c = i == prev->n ? 1
			: j == s->n  ? -1
				     : -snapshot_merge_cmp(s, j, prev, i, &run);
		struct op op;
		if (c < 0) {
			op = (struct op){i++, true};
		} else if (c > 0) {
			op = (struct op){j++, false};
		} else if (same_saved(&prev->v[i++], &s->v[j])) {
			j++;
			continue;
		} else {
			op = (struct op){j++, false};
		}
		int rc = nv == max ? -E2BIG : 0;
		if (rc == 0 && nv == cap) {
			cap = cap ? 2 * cap : 16;
			struct op *nw = realloc(v, cap * sizeof(*v));
			rc = nw ? 0 : -ENOMEM;
			v = nw ? nw : v;
		}
		if (rc < 0) {
			snapshot_same_fini(&same);
			free(v);
			return rc;
		}
		v[nv++] = op;
	}
	snapshot_same_fini(&same);
	*out = v;
	*n = nv;
	return 0;
}

static int open_trusted_as(int dfd, const char *name, int access);

/* A new journal on l->base, made under STATE_JOURNAL_TMP and renamed
 * into place with its header, so a reader never sees it without one;
 * open to append to.  Returns its fd or a negative errno. */
static int journal_create(int dfd, struct state_log *l)
{
	const char *step;
	int fd = fsutil_tmp_create(dfd, STATE_JOURNAL_TMP, 0600, &step);
	struct out *o = fd < 0 ? NULL : out_new(fd);
	int rc = fd < 0 ? fd : o ? 0 : -ENOMEM;

	if (o) {
		out_str(o, JOURNAL_MAGIC "\nbase ");
		out_escaped(o, l->base);
		out_str(o, " ");
		out_dec(o, l->base_ino, '\n');
		out_flush(o);
		rc = o->err;
		l->bytes = o->total;
		free(o);
	}
	struct stat st;
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	if (rc == 0 && renameat(dfd, STATE_JOURNAL_TMP, dfd, STATE_JOURNAL) < 0)
		rc = -errno;
	if (rc < 0 && fd >= 0) {
		close(fd);
		unlinkat(dfd, STATE_JOURNAL_TMP, 0);
		return rc;
	}
	if (rc == 0)
		l->ino = (uint64_t)st.st_ino;
	return rc < 0 ? rc : fd;
}

/* The journal this log appended to last, opened to append to again:
 * -E2BIG (the state is to be written whole) when it is not the same
 * file as it was left, or cannot be opened to write. */
static int journal_reopen(int dfd, const struct state_log *l)
{
	struct stat st;
	int fd = open_trusted_as(dfd, STATE_JOURNAL, O_WRONLY | O_APPEND);

	if (fd < 0)
		return -E2BIG;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != l->ino ||
	    st.st_nlink != 1 || (uint64_t)st.st_size != l->bytes) {
		close(fd);
		return -E2BIG;
	}
	return fd;
}

/* -E2BIG when the state is better written whole: the journal has grown
 * to half its size, or the record would be a quarter of it. */
static int journal_append(int dfd, struct state_log *l,
			  const struct snapshot *prev, const struct snapshot *s,
			  const char *gen, bool flushed)
{
	struct op *ops = NULL;
	size_t n = 0;
	int rc = diff(prev, s, s->n / 4 + 16, &ops, &n);

	/* The same generation, the same entries: nothing to say.  Not
	 * when they were last checked either: a full check that finds
	 * nothing to publish writes nothing into the target (its readers
	 * may watch it), and the next run checks again. */
	if (rc == 0 && n == 0 && strcmp(gen, l->gen) == 0) {
		free(ops);
		return 0;
	}
	if (rc == 0 && l->bytes > l->base_bytes / 2)
		rc = -E2BIG;
	if (rc < 0) {
		free(ops);
		return rc;
	}
	int fd = l->ino ? journal_reopen(dfd, l) : journal_create(dfd, l);
	struct out *o = fd < 0 ? NULL : out_new(fd);
	if (o == NULL) {
		free(ops);
		if (fd >= 0)
			close(fd);
		return fd < 0 ? fd : -ENOMEM;
	}
	out_str(o, "record ");
	out_escaped(o, gen);
	out_recorded(o, s, flushed);
	for (size_t k = 0; k < n; k++) {
		if (!ops[k].del) {
			out_entry(o, &s->v[ops[k].i]);
			continue;
		}
		out_str(o, "- ");
		out_escaped(o, prev->v[ops[k].i].path);
		out_str(o, "\n");
	}
	out_str(o, "commit ");
	out_dec(o, s->n, '\n');
	out_flush(o);
	rc = o->err;
	l->bytes += o->total;
	free(o);
	free(ops);
	close(fd);
	return rc;
}

static int record_full(int dfd, struct state_log *l, const struct snapshot *s,
		       const char *gen, bool flushed)
{
	uint64_t bytes = 0;
	struct stat st;

	state_log_fini(l);
	int rc = save_full(dfd, s, gen, flushed, &bytes);
	/* A journal left by a crash between the rename and the unlink may
	 * name the same generation: the inode tells the files apart. */
	if (rc == 0 && fstatat(dfd, STATE_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = -errno;
	if (rc == 0) {
		l->base = strdup(gen);
		l->base_bytes = bytes;
		l->base_ino = (uint64_t)st.st_ino;
	}
	return rc;
}

int state_record(int dfd, struct state_log *l, const struct snapshot *prev,
		 const struct snapshot *s, const char *gen, bool flushed,
		 const char **file)
{
	int rc = -E2BIG;
	const char *at = STATE_JOURNAL;

	/* The same generation again was flushed only if it was then. */
	if (l->gen && strcmp(l->gen, gen) == 0)
		flushed = flushed && l->flushed;
	if (l->base && l->gen && prev)
		rc = journal_append(dfd, l, prev, s, gen, flushed);
	if (rc == -E2BIG) {
		at = STATE_FILE;
		rc = record_full(dfd, l, s, gen, flushed);
	}
	if (rc < 0 && file)
		*file = at;
	if (rc == 0 && l->base && (l->gen == NULL || strcmp(l->gen, gen) != 0)) {
		free(l->gen);
		l->gen = strdup(gen);
	}
	l->flushed = flushed;
	/* Whatever the journal holds now, nothing more goes after it. */
	if (rc < 0 || l->base == NULL || l->gen == NULL)
		state_log_fini(l);
	return rc;
}

/* The state file is read a buffer at a time: a planted file (a 3 GiB
 * sparse one, say) costs no more memory than the entries it really
 * holds, which are bounded too. */
#define READ_CHUNK 65536
/* A line holds at most a 4096-byte path, each byte escaped to 4, and its
 * numbers. */
#define LINE_MAX_BYTES (4 * 4096 + 512)

struct reader {
	int fd;
	char *buf;
	size_t cap, start, end;
	bool eof;
	int err;
};

/* The next line, NUL-terminated in place; NULL at the end, on a line
 * without '\n', on one too long, or on an error (r->err). */
static char *next_line(struct reader *r)
{
	for (;;) {
		char *s = r->buf + r->start;
		char *nl = memchr(s, '\n', r->end - r->start);
		if (nl) {
			*nl = '\0';
			r->start = (size_t)(nl - r->buf) + 1;
			return s;
		}
		if (r->eof || r->end - r->start > LINE_MAX_BYTES)
			return NULL;
		memmove(r->buf, s, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
		ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r->err = -errno;
			return NULL;
		}
		r->eof = n == 0;
		r->end += (size_t)n;
	}
}

/* Opens the state or error file if atomsync can trust it: a regular
 * file (never a FIFO, which O_NONBLOCK keeps from hanging the open) that
 * only root or we could have written.  -EPERM when someone else could
 * have. */
static int open_trusted_as(int dfd, const char *name, int access)
{
	int fd = openat(dfd, name,
			access | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0	     ? -errno
		 : !S_ISREG(st.st_mode)	     ? -EINVAL
		 : !fsutil_trusted_uid(st.st_uid) ||
				 (st.st_mode & 0022)
			 ? -EPERM
			 : 0;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

static int open_trusted(int dfd, const char *name)
{
	return open_trusted_as(dfd, name, O_RDONLY);
}

/* Reads one unsigned number in `base` (at most 10) ended by `end`: a
 * space, stepped over, or the line's end. */
static int num_until(char **p, unsigned base, char end, uint64_t *out)
{
	char *s = *p;
	uint64_t v = 0;

	for (; (unsigned)(*s - '0') < base; s++)
		v = v * base + (unsigned)(*s - '0');
	size_t digits = (size_t)(s - *p);
	if (digits == 0 || *s != end)
		return -EINVAL;
	/* Nineteen digits cannot overflow; more must be read with care. */
	if (digits > 19) {
		v = 0;
		for (char *q = *p; q < s; q++)
			if (__builtin_mul_overflow(v, base, &v) ||
			    __builtin_add_overflow(v, (unsigned)(*q - '0'), &v))
				return -EINVAL;
	}
	*p = end ? s + 1 : s;
	*out = v;
	return 0;
}

static int num(char **p, unsigned base, uint64_t *out)
{
	return num_until(p, base, ' ', out);
}

/* The inode of the file open as `fd`; 0 (no file has it) when unknown. */
static uint64_t fd_ino(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Seconds may be negative (a file dated before 1970). */
static int snum(char **p, int64_t *out)
{
	bool neg = **p == '-';
	uint64_t v;

	if (neg)
		(*p)++;
	if (num(p, 10, &v) < 0 || v > INT64_MAX)
		return -EINVAL;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* "F 644 uid gid size msec mnsec csec cnsec dev ino tino tmsec tmnsec
 * path": the source's metadata, then the live file's inode and
 * modification time as atomsync left them.  e->path is decoded in
 * `line`, and lives as long as it does. */
static int parse_entry(char *line, struct snap_entry *e)
{
	uint64_t f[13];
	int64_t ms, cs, ts;
	char *p = line + 2;

	if ((line[0] != 'D' && line[0] != 'F') || line[1] != ' ')
		return -EINVAL;
	if (num(&p, 8, &f[0]) < 0 || num(&p, 10, &f[1]) < 0 ||
	    num(&p, 10, &f[2]) < 0 || num(&p, 10, &f[3]) < 0 ||
	    snum(&p, &ms) < 0 || num(&p, 10, &f[5]) < 0 ||
	    snum(&p, &cs) < 0 || num(&p, 10, &f[7]) < 0 ||
	    num(&p, 10, &f[8]) < 0 || num(&p, 10, &f[9]) < 0 ||
	    num(&p, 10, &f[10]) < 0 || snum(&p, &ts) < 0 ||
	    num(&p, 10, &f[12]) < 0)
		return -EINVAL;
	f[4] = (uint64_t)ms;
	f[6] = (uint64_t)cs;
	if (f[0] > 07777 || f[1] > UINT32_MAX || f[2] > UINT32_MAX ||
	    f[5] > 999999999 || f[7] > 999999999 || f[12] > 999999999)
		return -EINVAL;
	e->t_ino = f[10];
	e->t_mtime_ns = clock_ts_ns(&(struct timespec){(time_t)ts, (long)f[12]});
	if (*p == '\0' || strchr(p, ' ') != NULL)
		return -EINVAL;
	int rc = unescape_in_place(p);
	if (rc < 0)
		return rc;
	/* The writer records such paths only: any other is damage. */
	if (!snapshot_path_is_clean(p))
		return -EINVAL;
	e->path = p;
	e->type = line[0] == 'D' ? SNAP_DIR : SNAP_FILE;
	e->mode = (uint32_t)f[0];
	e->uid = (uint32_t)f[1];
	e->gid = (uint32_t)f[2];
	e->size = f[3];
	e->mtime_ns = clock_ts_ns(&(struct timespec){(time_t)ms, (long)f[5]});
	e->ctime_ns = clock_ts_ns(&(struct timespec){(time_t)cs, (long)f[7]});
	e->dev = f[8];
	e->ino = f[9];
	return 0;
}

/* A count that is all of what `p` holds, of at most `max`: -EFBIG
 * when it is more. */
static int count_of(char *p, uint64_t max, size_t *count)
{
	uint64_t v;

	if (num_until(&p, 10, '\0', &v) < 0)
		return -EINVAL;
	if (v > max)
		return -EFBIG;
	*count = (size_t)v;
	return 0;
}

/* "recorded SEC NSEC": when the source was read. */
static int parse_taken(char *line, struct timespec *taken)
{
	int64_t sec;
	uint64_t nsec;

	if (line == NULL || strncmp(line, "recorded ", 9) != 0)
		return -EINVAL;
	line += 9;
	if (snum(&line, &sec) < 0 || num_until(&line, 10, '\0', &nsec) < 0 ||
	    nsec > 999999999)
		return -EINVAL;
	taken->tv_sec = (time_t)sec;
	taken->tv_nsec = (long)nsec;
	return 0;
}

/* "flushed 0|1 BOOT": *boot is the boot's id, one word. */
static int parse_flushed(const char *line, bool *flushed, const char **boot)
{
	if (line == NULL || strncmp(line, "flushed ", 8) != 0 ||
	    (line[8] != '0' && line[8] != '1') || line[9] != ' ')
		return -EINVAL;
	size_t n = strcspn(line + 10, " ");
	if (n == 0 || n >= 64 || line[10 + n] != '\0')
		return -EINVAL;
	*flushed = line[8] == '1';
	*boot = line + 10;
	return 0;
}

/* "checked SEC": when the generation's files were last all checked; a
 * state written before it was recorded has none (0). */
static int parse_checked(char *line, int64_t *checked)
{
	uint64_t v;

	line += 8;
	if (num_until(&line, 10, '\0', &v) < 0 || v == 0 || v > INT64_MAX)
		return -EINVAL;
	*checked = (int64_t)v;
	return 0;
}

/* The header: magic, generation, when recorded, whether flushed, and
 * how many entries follow.  Each line holds its fields and nothing
 * more: one with more is damaged, as a line cut short is. */
static int parse_recorded(struct reader *r, struct timespec *taken,
			  bool *sound, bool *was_flushed)
{
	const char *was, *now = boot_id();

	if (parse_taken(next_line(r), taken) < 0 ||
	    parse_flushed(next_line(r), was_flushed, &was) < 0)
		return -EINVAL;
	*sound = *was_flushed ||
		 (strcmp(was, now) == 0 && strcmp(now, "unknown") != 0);
	return 0;
}

static int parse_head(struct reader *r, size_t max_entries, char **gen,
		      struct timespec *taken, bool *sound, bool *flushed,
		      int64_t *checked, size_t *count)
{
	char *line = next_line(r);

	if (line == NULL || strcmp(line, STATE_MAGIC) != 0)
		return -EINVAL;
	line = next_line(r);
	if (line == NULL || strncmp(line, "generation ", 11) != 0 ||
	    state_unescape(line + 11, gen) < 0 ||
	    parse_recorded(r, taken, sound, flushed) < 0)
		return -EINVAL;
	line = next_line(r);
	*checked = 0;
	if (line && strncmp(line, "checked ", 8) == 0) {
		if (parse_checked(line, checked) < 0)
			return -EINVAL;
		line = next_line(r);
	}
	if (line == NULL || strncmp(line, "entries ", 8) != 0)
		return -EINVAL;
	return count_of(line + 8, max_entries, count);
}

static int parse_entries(struct reader *r, struct snapshot *s, size_t count)
{
	/* Room at once, untouched where a damaged file claims too many; not
	 * to be had, the entries are added one by one all the same. */
	(void)snapshot_reserve(s, count);
	for (size_t i = 0; i < count; i++) {
		struct snap_entry e = {0};
		char *line = next_line(r);
		if (line == NULL || parse_entry(line, &e) < 0)
			return -EINVAL;
		/* Entries must come sorted and unique, as they were saved. */
		if (s->n > 0 &&
		    snapshot_path_cmp(s->v[s->n - 1].path, e.path) >= 0)
			return -EINVAL;
		int rc = snapshot_add(s, &e);
		if (rc < 0)
			return rc;
	}
	char *line = next_line(r);
	if (line == NULL || strcmp(line, "end") != 0)
		return -EINVAL;
	/* Nothing may follow. */
	if (next_line(r) != NULL || r->start != r->end || !r->eof)
		return -EINVAL;
	return 0;
}

/* ---- reading the journal ---- */

/* An entry to set (or, del, remove), the seq'th of the journal. */
struct jop {
	struct snap_entry e;
	size_t seq;
	bool del;
};

/* What the journal's records hold, and the last one written whole. */
struct jread {
	struct jop *v;
	size_t n, cap, max;
	bool want_ops;	       /* false: the headers only (state_peek),
				  each line checked but not kept */
	char *gen;	       /* NULL: no record */
	struct timespec taken;
	bool sound, flushed;
	int64_t checked;       /* 0: not said */
	size_t count;	       /* entries the last record leaves */
	bool append;	       /* read from a descriptor that could write */
	bool on_base;	       /* made on the state file read */
	bool ended;	       /* every record whole, up to its end */
	uint64_t ino;	       /* with `append`: the journal's inode, when
				  on this base, ended and to be appended
				  to; else 0 */
	uint64_t bytes;	       /* its size then */
};

static void jread_fini(struct jread *j)
{
	for (size_t k = 0; k < j->n; k++)
		free(j->v[k].e.path);
	free(j->v);
	free(j->gen);
}

static void jread_drop(struct jread *j, size_t from)
{
	while (j->n > from)
		free(j->v[--j->n].e.path);
}

static int parse_op(struct jread *j, char *line)
{
	struct jop op = {.seq = j->n, .del = line[0] == '-'};
	int rc = op.del ? (line[1] == ' ' ? state_unescape(line + 2, &op.e.path)
					  : -EINVAL)
			: parse_entry(line, &op.e);

	/* An entry's path is the line's, which the next line replaces:
	 * copied when it is kept. */
	if (rc == 0 && !op.del) {
		op.e.path = j->want_ops ? strdup(op.e.path) : NULL;
		if (j->want_ops && op.e.path == NULL)
			rc = -ENOMEM;
	}

	/* Headers only, but a record with a damaged line is not one load
	 * applies, so neither does state_peek. */
	if (rc < 0 || !j->want_ops) {
		free(op.e.path);
		return rc;
	}
	if (j->n == j->max) {
		free(op.e.path);
		return -EINVAL;
	}
	if (j->n == j->cap) {
		size_t cap = j->cap ? 2 * j->cap : 64;
		struct jop *v = realloc(j->v, cap * sizeof(*v));
		if (v == NULL) {
			free(op.e.path);
			return -ENOMEM;
		}
		j->v = v;
		j->cap = cap;
	}
	j->v[j->n++] = op;
	return 0;
}

/* One record: 1 when it was written whole, 0 at the end of the journal
 * (or of what a crash left of it), -EINVAL when damaged. */
static int read_record(struct reader *r, struct jread *j)
{
	struct timespec taken;
	bool sound, flushed;
	char *gen = NULL, *line = next_line(r);
	size_t from = j->n, count = 0;
	int64_t checked = 0;
	int rc = 0;

	if (line == NULL) {
		/* Nothing after the last commit: a record appended goes
		 * on from there. */
		j->ended = r->eof && r->start == r->end && r->err == 0;
		return 0;
	}
	if (strncmp(line, "record ", 7) != 0 ||
	    state_unescape(line + 7, &gen) < 0 ||
	    parse_recorded(r, &taken, &sound, &flushed) < 0)
		rc = -EINVAL;
	while (rc == 0 && (line = next_line(r)) != NULL &&
	       strncmp(line, "commit ", 7) != 0)
		rc = strncmp(line, "checked ", 8) == 0
			     ? parse_checked(line, &checked)
			     : parse_op(j, line);
	/* "commit N" and nothing else: a line with more is damaged. */
	if (rc == 0 && line != NULL && count_of(line + 7, SIZE_MAX, &count) < 0)
		rc = -EINVAL;
	if (rc < 0 || line == NULL) {
		jread_drop(j, from);
		free(gen);
		return rc;
	}
	/* Recorded no earlier than its record says. */
	for (size_t k = from; k < j->n; k++)
		snapshot_mark_racy(&j->v[k].e, &taken);
	free(j->gen);
	j->gen = gen;
	j->taken = taken;
	j->sound = sound;
	j->flushed = flushed;
	j->checked = checked;
	j->count = count;
	return 1;
}

/* Whether the journal's "base GEN INO" line names this state file. */
static bool journal_on(char *line, const char *base, uint64_t ino)
{
	char *sp = line ? strrchr(line, ' ') : NULL, *b = NULL, *p;
	uint64_t v = 0;

	if (sp == NULL || strncmp(line, "base ", 5) != 0 || sp < line + 5)
		return false;
	*sp = '\0';
	p = sp + 1;
	bool ok = num_until(&p, 10, '\0', &v) == 0 && v == ino &&
		  state_unescape(line + 5, &b) == 0 && strcmp(b, base) == 0;
	free(b);
	return ok;
}

/* The records of the journal in `dfd` made on the state file that names
 * `base` (inode `ino`); none when there is no such journal. */
static int journal_read(int dfd, const char *base, uint64_t ino,
			struct jread *j)
{
	struct reader r = {.cap = READ_CHUNK + LINE_MAX_BYTES};
	char *line;
	int rc = 0;

	j->ino = 0;
	r.fd = open_trusted_as(dfd, STATE_JOURNAL, j->append ? O_RDWR : O_RDONLY);
	/* One that cannot be opened to write (append-only, a read-only
	 * mount) is still read; nothing is appended to it. */
	if (r.fd < 0 && r.fd != -ENOENT && j->append) {
		j->append = false;
		r.fd = open_trusted(dfd, STATE_JOURNAL);
	}
	if (r.fd < 0)
		return r.fd == -ENOENT ? 0 : r.fd;
	r.buf = malloc(r.cap);
	if (r.buf && (line = next_line(&r)) && strcmp(line, JOURNAL_MAGIC) == 0 &&
	    journal_on(next_line(&r), base, ino)) {
		j->on_base = true;
		while ((rc = read_record(&r, j)) > 0)
			;
	}
	/* A damaged record ends the journal: what follows is not applied,
	 * and the state names an older generation than ..data. */
	if (rc == -EINVAL)
		rc = 0;
	if (r.buf == NULL || r.err < 0)
		rc = r.buf ? r.err : -ENOMEM;
	free(r.buf);
	/* Read to its end, the file offset is where the next record goes:
	 * not into a file with another name too (a copy made with cp -al
	 * would change with it). */
	struct stat st;
	if (rc == 0 && j->append && j->ended && fstat(r.fd, &st) == 0 &&
	    st.st_nlink == 1 && lseek(r.fd, 0, SEEK_CUR) == st.st_size) {
		j->ino = (uint64_t)st.st_ino;
		j->bytes = (uint64_t)st.st_size;
	}
	close(r.fd);
	return rc;
}

static int cmp_jop(const void *a, const void *b)
{
	const struct jop *x = a, *y = b;
	int c = snapshot_path_cmp(x->e.path, y->e.path);

	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Moves *e to the end of t; its strings are t's once it is there. */
static int move_entry(struct snapshot *t, struct snap_entry *e)
{
	int rc = snapshot_append(t, e);

	if (rc == 0)
		e->path = e->src = NULL;
	return rc;
}

/* Whether j->v[k] is the last operation on its path (j->v sorted). */
static bool last_on_path(const struct jread *j, size_t k)
{
	return k + 1 == j->n || strcmp(j->v[k].e.path, j->v[k + 1].e.path) != 0;
}

/* The journal's operations applied where s holds their entries, when
 * each that wins on its path changes an entry s has: a record of one
 * changed file is then that entry, not a copy of a million.  False, s as
 * it was, when one adds or removes a name, or when there are so many
 * that a copy costs less. */
static bool journal_apply_in_place(struct snapshot *s, struct jread *j)
{
	if (s->n != j->count || j->n > s->n / 8)
		return false;
	for (size_t k = 0; k < j->n; k++)
		if (last_on_path(j, k) &&
		    (j->v[k].del || snapshot_find(s, j->v[k].e.path) == NULL))
			return false;
	for (size_t k = 0; k < j->n; k++) {
		if (!last_on_path(j, k))
			continue;
		struct snap_entry *d = snapshot_find(s, j->v[k].e.path);
		char *path = d->path;
		bool pooled = d->pooled;
		/* Its path stays s's; the op keeps its own, freed with j. */
		*d = j->v[k].e;
		d->path = path;
		d->pooled = pooled;
	}
	s->taken = j->taken;
	s->checked = j->checked;
	return true;
}

/* `s` with the journal's operations applied, the last on each path
 * winning: s itself (journal_apply_in_place()), or a new snapshot, into
 * which s's entries and j's move. */
static int journal_apply(struct snapshot *s, struct jread *j, size_t max,
			 struct snapshot **out)
{
	struct snapshot *t = NULL;
	size_t i = 0, k = 0;
	int rc;

	if (j->n > 1)
		qsort(j->v, j->n, sizeof(*j->v), cmp_jop);
	if (journal_apply_in_place(s, j)) {
		*out = s;
		return 0;
	}
	rc = snapshot_open(NULL, &t, NULL);
	if (rc < 0)
		return rc;
	(void)snapshot_reserve(t, s->n + j->n);
	while (rc == 0 && (i < s->n || k < j->n)) {
		while (k + 1 < j->n &&
		       strcmp(j->v[k].e.path, j->v[k + 1].e.path) == 0)
			k++;
		int c = i == s->n ? 1
			: k == j->n ? -1
				    : snapshot_path_cmp(s->v[i].path,
							j->v[k].e.path);
		if (c < 0)
			rc = move_entry(t, &s->v[i++]);
		else if (j->v[k++].del)
			i += c == 0;
		else if ((rc = move_entry(t, &j->v[k - 1].e)) == 0)
			i += c == 0;
		if (t->n > max)
			rc = -EFBIG;
	}
	if (rc == 0 && t->n != j->count)
		rc = -EINVAL;
	if (rc < 0) {
		snapshot_free(t);
		return rc;
	}
	t->taken = j->taken;
	t->checked = j->checked;
	*out = t;
	return 0;
}

/* Applies the journal beside the state file to *s, which describes
 * *gen, and says what the result describes; j is what was read. */
static int journal_load(int dfd, size_t max_entries, uint64_t ino,
			struct snapshot **s, char **gen, bool *sound,
			bool *flushed, struct jread *j)
{
	struct snapshot *t = NULL;

	/* More than the writer ever leaves before it writes the state
	 * whole: a journal made of removals, of half the state's size. */
	j->max = max_entries > SIZE_MAX / 8 ? SIZE_MAX : 4 * max_entries + 1024;
	int rc = journal_read(dfd, *gen, ino, j);
	if (rc == 0 && j->gen)
		rc = journal_apply(*s, j, max_entries, &t);
	if (rc == 0 && t) {
		if (t != *s)
			snapshot_free(*s);
		*s = t;
		free(*gen);
		*gen = j->gen;
		j->gen = NULL;
		*sound = j->sound;
		*flushed = j->flushed;
	}
	return rc;
}

/* What the next state_record appends to: the journal just read, or a
 * new one when none was made on this state file.  Nothing, when a
 * record in it was cut short or damaged: one after it would never be
 * applied. */
static void log_resume(struct state_log *l, char **base,
		       const struct stat *st, const char *gen, bool flushed,
		       struct jread *j)
{
	state_log_fini(l);
	if ((j->on_base && j->ino == 0) || (l->gen = strdup(gen)) == NULL)
		return;
	l->base = *base;
	*base = NULL;
	l->base_bytes = (uint64_t)st->st_size;
	l->base_ino = (uint64_t)st->st_ino;
	l->flushed = flushed;
	l->ino = j->ino;
	l->bytes = j->ino ? j->bytes : 0;
}

int state_load(int dfd, size_t max_entries, struct snapshot **out, char **gen,
	       bool *sound)
{
	return state_load_log(dfd, max_entries, out, gen, sound, NULL, NULL);
}

int state_load_log(int dfd, size_t max_entries, struct snapshot **out,
		   char **gen, bool *sound, bool *was_flushed,
		   struct state_log *l)
{
	struct reader r = {.cap = READ_CHUNK + LINE_MAX_BYTES};
	struct jread j = {.want_ops = true, .append = l != NULL};
	struct snapshot *s = NULL;
	struct stat st;
	char *base = NULL;
	size_t count = 0;
	bool flushed = false;
	int rc;

	*gen = NULL;
	r.fd = open_trusted(dfd, STATE_FILE);
	if (r.fd < 0)
		return r.fd;
	r.buf = malloc(r.cap);
	rc = r.buf ? snapshot_open(NULL, &s, NULL) : -ENOMEM;
	if (rc == 0)
		rc = parse_head(&r, max_entries, gen, &s->taken, sound,
				&flushed, &s->checked, &count);
	if (rc == 0)
		rc = parse_entries(&r, s, count);
	/* Recorded no earlier than the state says. */
	for (size_t i = 0; rc == 0 && i < s->n; i++)
		snapshot_mark_racy(&s->v[i], &s->taken);
	if (rc == -EINVAL && r.err < 0)
		rc = r.err;
	if (rc == 0 && fstat(r.fd, &st) < 0)
		rc = -errno;
	close(r.fd);
	free(r.buf);
	if (rc == 0 && l && (base = strdup(*gen)) == NULL)
		rc = -ENOMEM;
	if (rc == 0)
		rc = journal_load(dfd, max_entries, (uint64_t)st.st_ino, &s,
				  gen, sound, &flushed, &j);
	/* The bytes in its files, as a walk counts them: a refresh of it
	 * counts on them. */
	for (size_t i = 0; rc == 0 && i < s->n; i++)
		s->bytes += s->v[i].type == SNAP_FILE ? s->v[i].size : 0;
	if (rc == 0 && l)
		log_resume(l, &base, &st, *gen, flushed, &j);
	if (was_flushed)
		*was_flushed = rc == 0 && flushed;
	jread_fini(&j);
	free(base);
	if (rc < 0) {
		free(*gen);
		*gen = NULL;
		snapshot_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* The header of the state file in `dfd` (see parse_head()); *ino is
 * the file's inode.  *gen is NULL on failure. */
static int read_head(int dfd, size_t max_entries, char **gen,
		     struct timespec *taken, bool *sound, size_t *count,
		     uint64_t *ino)
{
	struct reader r = {.cap = READ_CHUNK + LINE_MAX_BYTES};
	bool flushed;
	int64_t checked;

	*gen = NULL;
	r.fd = open_trusted(dfd, STATE_FILE);
	if (r.fd < 0)
		return r.fd;
	r.buf = malloc(r.cap);
	int rc = r.buf ? parse_head(&r, max_entries, gen, taken, sound,
				    &flushed, &checked, count)
		       : -ENOMEM;
	if (rc == -EINVAL && r.err < 0)
		rc = r.err;
	*ino = fd_ino(r.fd);
	close(r.fd);
	free(r.buf);
	if (rc < 0) {
		free(*gen);
		*gen = NULL;
	}
	return rc;
}

int state_entries(int dfd, size_t max_entries, size_t *n)
{
	struct timespec taken;
	bool sound;
	char *gen;
	uint64_t ino;

	*n = 0;
	int rc = read_head(dfd, max_entries, &gen, &taken, &sound, n, &ino);
	if (rc < 0)
		*n = 0;
	free(gen);
	return rc;
}

int state_peek(int dfd, char **gen, struct timespec *recorded, bool *sound)
{
	size_t count = 0;
	uint64_t ino;
	int rc = read_head(dfd, SIZE_MAX, gen, recorded, sound, &count, &ino);

	/* The journal's last record, read past its entries. */
	struct jread j = {.want_ops = false};
	if (rc == 0)
		rc = journal_read(dfd, *gen, ino, &j);
	if (rc == 0 && j.gen) {
		free(*gen);
		*gen = j.gen;
		j.gen = NULL;
		*recorded = j.taken;
		*sound = j.sound;
	}
	jread_fini(&j);
	if (rc < 0) {
		free(*gen);
		*gen = NULL;
	}
	return rc;
}

/* ---- the error file ---- */

#define ERROR_MAGIC "atomsync-error 1"
/* The magic, the time and a message of STATE_ERROR_MAX bytes, each
 * escaped to 4. */
#define ERROR_FILE_MAX (4 * STATE_ERROR_MAX + 128)

int state_error_save(int dfd, uint64_t when_ms, const char *msg)
{
	char *cut = strndup(msg, STATE_ERROR_MAX);
	char *esc = cut ? state_escape(cut) : NULL;
	char *text = NULL;
	const char *step;
	int rc;

	free(cut);
	if (esc == NULL || asprintf(&text, ERROR_MAGIC "\ntime %" PRIu64
				    "\nmessage %s\n", when_ms, esc) < 0) {
		free(esc);
		return -ENOMEM;
	}
	free(esc);
	/* No fsync: a record lost in a crash costs only what --status says
	 * until the next failure or success. */
	rc = fsutil_write_atomic(dfd, STATE_ERROR_TMP, STATE_ERROR_FILE, text,
				 strlen(text), 0600, &step);
	free(text);
	return rc;
}

int state_error_clear(int dfd)
{
	if (unlinkat(dfd, STATE_ERROR_FILE, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* "atomsync-error 1\ntime MS\nmessage ESCAPED\n" and nothing else. */
static int parse_error(char *text, uint64_t *when_ms, char **msg)
{
	char *p = text, *end;

	if (strncmp(p, ERROR_MAGIC "\ntime ", sizeof(ERROR_MAGIC) + 5) != 0)
		return -EINVAL;
	p += sizeof(ERROR_MAGIC) + 5;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long ms = strtoull(p, &end, 10);
	if (errno || strncmp(end, "\nmessage ", 9) != 0)
		return -EINVAL;
	p = end + 9;
	end = strchr(p, '\n');
	if (end == NULL || end[1] != '\0' || end == p)
		return -EINVAL;
	*end = '\0';
	if (strchr(p, ' ') || state_unescape(p, msg) < 0)
		return -EINVAL;
	*when_ms = (uint64_t)ms;
	return 0;
}

int state_error_load(int dfd, uint64_t *when_ms, char **msg)
{
	char *buf = malloc(ERROR_FILE_MAX + 1);
	size_t len = 0;
	int rc = 0;
	int fd = buf ? open_trusted(dfd, STATE_ERROR_FILE) : -ENOMEM;

	*msg = NULL;
	if (fd < 0) {
		free(buf);
		return fd;
	}
	/* Bounded whatever the file's size: one byte more than a record
	 * can hold tells that it is too big. */
	while (rc == 0 && len <= ERROR_FILE_MAX) {
		ssize_t n = read(fd, buf + len, ERROR_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
	}
	close(fd);
	if (rc == 0 && (len > ERROR_FILE_MAX || memchr(buf, '\0', len)))
		rc = -EINVAL;
	if (rc == 0) {
		buf[len] = '\0';
		rc = parse_error(buf, when_ms, msg);
	}
	free(buf);
	return rc;
}
