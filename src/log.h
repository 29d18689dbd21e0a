/* Logging to stderr: plain text with timestamps, journald priority
 * prefixes, or one JSON object per line. */
#ifndef ATOMSYNC_LOG_H
#define ATOMSYNC_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERROR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

enum log_format {
	LOG_FMT_TEXT,
	LOG_FMT_JOURNAL,
	LOG_FMT_JSON,
};

/* Picks the journal format when stderr is the stream JOURNAL_STREAM names,
 * text otherwise. */
enum log_format log_format_detect(void);
void log_init(enum log_format fmt, enum log_level level);
void log_set_level(enum log_level level);
void log_set_format(enum log_format fmt);
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level level);

/* Errors travel as negative errno return values, so callers put
 * strerror(-rc) in the message themselves; there is no errno-appending
 * variant.  `sync` names the mapping a line is about, or is NULL. */
void log_msg(enum log_level level, const char *sync, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *sync, const char *fmt,
	      va_list ap) __attribute__((format(printf, 3, 0)));

/* Where the calling thread's lines go instead of stderr: for libatomsync,
 * which must not write to a program's stderr unless asked.  fn (NULL:
 * nowhere) gets every line, whatever the level, with no time or prefix.
 * Returns the sink that was in place (NULL: stderr), to put back. */
struct log_sink {
	void (*fn)(void *ctx, int level, const char *msg);
	void *ctx;
};
const struct log_sink *log_sink_set(const struct log_sink *sink);

/* Sets *err (when err is not NULL) to a malloc'ed message for the caller
 * to log, and returns rc: how a module returns an error with its context
 * without logging it. */
int log_err_set(char **err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* What to add to an error message with errno -rc to say where the fix
 * is, or "": under systemd (INVOCATION_ID set), the shipped unit's
 * ProtectSystem=strict makes a target outside ReadWritePaths= read-only
 * for the daemon alone, and its RestrictAddressFamilies= refuses the
 * sockets of metrics_listen, which a user who sees a writable / and a
 * working network does not expect. */
const char *log_hint(int rc);

/* `s` as text log lines spell it (control characters and bytes that are
 * not well-formed UTF-8 as \xHH), for output meant for a terminal;
 * malloc'ed, NULL when out of memory. */
char *log_escape(const char *s);

/* asprintf into a new string; NULL when out of memory. */
char *log_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Problems gathered to be reported at once: the first LOG_LIST_MAX are
 * kept, the rest only counted. */
#define LOG_LIST_MAX 20
struct log_list {
	char **v;
	size_t n, more;
	size_t cap; /* log.c's */
};
void log_list_add(struct log_list *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
size_t log_list_count(const struct log_list *l);
/* "a, b, c, and 4 more" with sep ", " (malloc'ed), or NULL when out of
 * memory. */
char *log_list_join(const struct log_list *l, const char *sep);
void log_list_fini(struct log_list *l);

#define log_error(...) log_msg(LOG_LVL_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, NULL, __VA_ARGS__)

#endif
