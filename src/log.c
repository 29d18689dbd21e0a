#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "log.h"

static atomic_int cur_level = LOG_LVL_INFO;
static atomic_int cur_format = LOG_FMT_TEXT;
/* Per thread, so that writers in several threads keep their lines apart
 * and the daemon's threads keep writing to stderr. */
static _Thread_local const struct log_sink *cur_sink;

static const struct {
	const char *name;
	enum log_level level;
} level_names[] = {
	{"error", LOG_LVL_ERROR},
	{"warn", LOG_LVL_WARN},
	{"info", LOG_LVL_INFO},
	{"debug", LOG_LVL_DEBUG},
};

enum log_format log_format_detect(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	/* journald sets JOURNAL_STREAM=dev:ino of the socket it gave us; only
	 * trust it while stderr is still that socket (not redirected). */
	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return LOG_FMT_TEXT;
	if (fstat(STDERR_FILENO, &st) != 0)
		return LOG_FMT_TEXT;
	if ((unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino)
		return LOG_FMT_JOURNAL;
	return LOG_FMT_TEXT;
}

void log_init(enum log_format fmt, enum log_level level)
{
	cur_format = fmt;
	cur_level = level;
}

void log_set_level(enum log_level level)
{
	cur_level = level;
}

void log_set_format(enum log_format fmt)
{
	cur_format = fmt;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (strcmp(s, level_names[i].name) == 0) {
			*out = level_names[i].level;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -EINVAL;
}

int log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_FMT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FMT_JSON;
	else if (strcmp(s, "journal") == 0)
		*out = LOG_FMT_JOURNAL;
	else
		return -EINVAL;
	return 0;
}

const char *log_level_name(enum log_level level)
{
	switch (level) {
	case LOG_LVL_ERROR:
		return "error";
	case LOG_LVL_WARN:
		return "warning";
	case LOG_LVL_INFO:
		return "info";
	case LOG_LVL_DEBUG:
		return "debug";
	}
	return "info";
}

/* A growable line buffer: a message may hold a path of any length. */
struct line {
	char *buf;
	size_t len, cap;
	int failed;
};

static void line_reserve(struct line *l, size_t more)
{
	if (l->failed || l->len + more + 1 <= l->cap)
		return;
	size_t cap = l->cap ? l->cap : 256;
	while (cap < l->len + more + 1)
		cap *= 2;
	char *nb = realloc(l->buf, cap);
	if (nb == NULL) {
		l->failed = 1;
		return;
	}
	l->buf = nb;
	l->cap = cap;
}

static void line_add(struct line *l, const char *s, size_t n)
{
	line_reserve(l, n);
	if (l->failed)
		return;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->buf[l->len] = '\0';
}

static void line_str(struct line *l, const char *s)
{
	line_add(l, s, strlen(s));
}

/* The length of the well-formed UTF-8 sequence at p (whose first byte is
 * 0x80 or more), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n = 0;

	if ((c & 0xe0) == 0xc0 && c >= 0xc2)
		n = 2;
	else if ((c & 0xf0) == 0xe0)
		n = 3;
	else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
		n = 4;
	/* The second byte's range also rules out overlong forms,
	 * surrogates and code points past U+10FFFF. */
	unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
	unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
	if (n == 0 || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if ((p[k] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* U+0080 to U+009F, which a terminal may take for commands (U+009B is
 * CSI): the two bytes c2 80 to c2 9f. */
static bool is_c1(const unsigned char *p, size_t n)
{
	return n == 2 && p[0] == 0xc2 && p[1] < 0xa0;
}

/* The code point of the well-formed sequence of n bytes at p. */
static uint32_t utf8_cp(const unsigned char *p, size_t n)
{
	uint32_t cp = n == 1 ? p[0] : p[0] & (0x7fu >> n);

	for (size_t k = 1; k < n; k++)
		cp = cp << 6 | (p[k] & 0x3fu);
	return cp;
}

/* Characters that are invisible or change how the text around them is
 * shown: the bidirectional controls (U+061C, U+200E/F, U+202A to U+202E,
 * U+2066 to U+2069), which can make a line read as another, the line and
 * paragraph separators U+2028/9, zero-width U+200B to U+200D and the
 * U+FEFF mark.  A file name holding them is spelled out in a log. */
static bool is_format(const unsigned char *p, size_t n)
{
	uint32_t cp = n >= 2 ? utf8_cp(p, n) : 0;

	return cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
	       (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* JSON string body: escapes quotes, backslashes and control characters
 * (C1 too, and is_format()'s), and spells bytes that are not valid UTF-8
 * as the text \xHH so the line stays valid JSON whatever a file name
 * holds. */
static void line_json(struct line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char tmp[16];

	while (*p) {
		unsigned char c = *p;
		size_t n = c < 0x80 ? 1 : utf8_len(p);
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			line_add(l, tmp, 2);
		} else if (c < 0x20 || c == 0x7f || is_c1(p, n) ||
			   is_format(p, n)) {
			snprintf(tmp, sizeof(tmp), "\\u%04x",
				 (unsigned)utf8_cp(p, n ? n : 1));
			line_add(l, tmp, 6);
		} else if (n == 0) {
			snprintf(tmp, sizeof(tmp), "\\\\x%02x", c);
			line_add(l, tmp, strlen(tmp));
			n = 1;
		} else {
			line_add(l, (const char *)p, n);
		}
		p += n;
	}
}

/* Text and journal lines: control characters (C0 with tab and newline,
 * DEL, C1, is_format()'s) and bytes that are not well-formed UTF-8 are
 * spelled \xHH, so that one event stays one line and nothing a file name
 * holds reaches a terminal raw. */
static void line_text(struct line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char tmp[8];

	while (*p) {
		size_t n = *p < 0x80 ? 1 : utf8_len(p);
		if (n == 0 || *p < 0x20 || *p == 0x7f || is_c1(p, n) ||
		    is_format(p, n)) {
			for (size_t k = 0; k < (n ? n : 1); k++) {
				snprintf(tmp, sizeof(tmp), "\\x%02x", p[k]);
				line_add(l, tmp, 4);
			}
			p += n ? n : 1;
		} else {
			line_add(l, (const char *)p, n);
			p += n;
		}
	}
}

char *log_escape(const char *s)
{
	struct line l = {0};

	line_text(&l, s);
	if (l.failed) {
		free(l.buf);
		return NULL;
	}
	return l.buf ? l.buf : strdup("");
}

static void format_time(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

const struct log_sink *log_sink_set(const struct log_sink *sink)
{
	const struct log_sink *old = cur_sink;

	cur_sink = sink;
	return old;
}

static void sink_vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void sink_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char *msg = NULL;

	if (cur_sink->fn == NULL)
		return;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	cur_sink->fn(cur_sink->ctx, (int)level, msg ? msg : fmt);
	free(msg);
	errno = saved_errno;
}

/* `sync "NAME": TEXT`, or TEXT alone, as the text and journal formats
 * end a line. */
static void line_message(struct line *l, const char *sync, const char *text)
{
	if (sync) {
		line_str(l, "sync \"");
		line_text(l, sync);
		line_str(l, "\": ");
	}
	line_text(l, text);
}

static void format_journal(struct line *l, enum log_level level,
			   const char *sync, const char *text)
{
	char tbuf[16];

	snprintf(tbuf, sizeof(tbuf), "<%d>", (int)level);
	line_str(l, tbuf);
	line_message(l, sync, text);
}

static void format_json(struct line *l, enum log_level level,
			const char *sync, const char *text)
{
	char tbuf[64];

	format_time(tbuf, sizeof(tbuf));
	line_str(l, "{\"time\":\"");
	line_str(l, tbuf);
	line_str(l, "\",\"level\":\"");
	line_str(l, log_level_name(level));
	line_str(l, "\"");
	if (sync) {
		line_str(l, ",\"sync\":\"");
		line_json(l, sync);
		line_str(l, "\"");
	}
	line_str(l, ",\"msg\":\"");
	line_json(l, text);
	line_str(l, "\"}");
}

static void format_text(struct line *l, enum log_level level,
			const char *sync, const char *text)
{
	char tbuf[64];

	format_time(tbuf, sizeof(tbuf));
	line_str(l, tbuf);
	line_str(l, " ");
	line_str(l, log_level_name(level));
	line_str(l, ": ");
	line_message(l, sync, text);
}

/* One write per line keeps lines from several threads whole. */
static void write_line(const struct line *l)
{
	const char *p = l->buf;
	size_t left = l->len;

	while (left > 0) {
		ssize_t w = write(STDERR_FILENO, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		left -= (size_t)w;
	}
}

void log_vmsg(enum log_level level, const char *sync, const char *fmt,
	      va_list ap)
{
	if (cur_sink) {
		sink_vmsg(level, fmt, ap);
		return;
	}
	if ((int)level > cur_level)
		return;

	int saved_errno = errno;
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	const char *text = msg ? msg : fmt;
	struct line l = {0};

	switch ((enum log_format)cur_format) {
	case LOG_FMT_JOURNAL:
		format_journal(&l, level, sync, text);
		break;
	case LOG_FMT_JSON:
		format_json(&l, level, sync, text);
		break;
	case LOG_FMT_TEXT:
	default:
		format_text(&l, level, sync, text);
		break;
	}
	line_add(&l, "\n", 1);
	if (!l.failed)
		write_line(&l);
	free(l.buf);
	free(msg);
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *sync, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, sync, fmt, ap);
	va_end(ap);
}

int log_err_set(char **err, int rc, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	if (err == NULL)
		return rc;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(*err);
	*err = m;
	return rc;
}

const char *log_hint(int rc)
{
	if (getenv("INVOCATION_ID") == NULL)
		return "";
	if (rc == -EROFS)
		return " (under systemd, a target outside the unit's "
		       "ReadWritePaths= is read-only: add it in a drop-in)";
	if (rc == -EAFNOSUPPORT)
		return " (under systemd, the unit allows Internet sockets only "
		       "with a drop-in: RestrictAddressFamilies=AF_INET "
		       "AF_INET6)";
	return "";
}

void log_list_add(struct log_list *l, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	if (l->n == LOG_LIST_MAX) {
		l->more++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m == NULL || array_grow(&l->v, &l->cap, l->n, sizeof(*l->v)) < 0) {
		free(m);
		l->more++; /* still counted */
		return;
	}
	l->v[l->n++] = m;
}

size_t log_list_count(const struct log_list *l)
{
	return l->n + l->more;
}

char *log_list_join(const struct log_list *l, const char *sep)
{
	size_t len = 32 + strlen(sep);
	for (size_t i = 0; i < l->n; i++)
		len += strlen(l->v[i]) + strlen(sep);
	char *r = malloc(len), *p = r;
	if (r == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < l->n; i++)
		p += sprintf(p, "%s%s", i ? sep : "", l->v[i]);
	if (l->more)
		sprintf(p, "%sand %zu more", sep, l->more);
	return r;
}

void log_list_fini(struct log_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

char *log_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	return m;
}
