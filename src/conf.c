#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "command.h"
#include "conf.h"
#include "fsutil.h"

/* inih hands the handler at most INI_MAX_LINE bytes of a line; a longer
 * value (a deep path, a long command) is kept here and inih is given a
 * reference to it instead. */
#define LONG_MARK '\x01'

enum section_kind {
	SEC_NONE,   /* before any section header */
	SEC_DAEMON,
	SEC_SYNC,
	SEC_BAD,    /* unknown or broken header; its keys are not checked */
};

/* A key given in a section, and where first. */
struct seen_key {
	char *key;
	unsigned line;
};

struct parser {
	const char *path;
	FILE *f;
	char *line;
	size_t cap;
	unsigned lineno;
	enum section_kind kind;
	char *section;	       /* its full name, as written */
	bool continuation;     /* the current line continues the previous key */
	bool prev_key;	       /* the previous significant line was a key */
	struct conf *c;
	struct conf_sync *cur; /* when kind == SEC_SYNC */
	struct seen_key *seen; /* keys given in the current section */
	size_t nseen;
	char **longv;
	size_t nlong;
	struct conf_errors *errs;
	unsigned daemon_line;  /* where [daemon] began; 0: not yet */
};

static void errors_vadd(struct conf_errors *e, const char *prefix,
			const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void errors_vadd(struct conf_errors *e, const char *prefix,
			const char *fmt, va_list ap)
{
	char *m = NULL, *body = NULL;

	if (vasprintf(&body, fmt, ap) < 0)
		return;
	if (asprintf(&m, "%s%s", prefix, body) < 0)
		m = NULL;
	free(body);
	if (m == NULL)
		return;
	if (array_grow(&e->v, &e->cap, e->n, sizeof(*e->v)) < 0) {
		free(m);
		return;
	}
	e->v[e->n++] = m;
}

void conf_errors_add(struct conf_errors *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(e, "", fmt, ap);
	va_end(ap);
}

void conf_errors_fini(struct conf_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	e->v = NULL;
	e->n = e->cap = 0;
}

/* "file:line: ", "file:line: [daemon]: " or "file:line: [sync:NAME]: "
 * before a message. */
static void pvadd(struct parser *p, struct conf_errors *e, const char *fmt,
		  va_list ap) __attribute__((format(printf, 3, 0)));

static void pvadd(struct parser *p, struct conf_errors *e, const char *fmt,
		  va_list ap)
{
	char *where = NULL;
	int rc;

	if (p->kind == SEC_SYNC && p->cur)
		rc = asprintf(&where, "%s:%u: [sync:%s]: ", p->path, p->lineno,
			      p->cur->name);
	else
		rc = asprintf(&where, "%s:%u: %s", p->path, p->lineno,
			      p->kind == SEC_DAEMON ? "[daemon]: " : "");
	if (rc < 0)
		return;
	errors_vadd(e, where, fmt, ap);
	free(where);
}

static void perr(struct parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void perr(struct parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pvadd(p, p->errs, fmt, ap);
	va_end(ap);
}

static void pwarn(struct parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void pwarn(struct parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pvadd(p, &p->c->warnings, fmt, ap);
	va_end(ap);
}

static void sync_defaults(struct conf_sync *s)
{
	s->debounce_ms = CONF_DEBOUNCE_MS;
	s->max_delay_ms = CONF_MAX_DELAY_MS;
	s->fsync = true;
	s->resync_interval_s = CONF_RESYNC_S;
	s->poll_interval_ms = CONF_POLL_MS;
	s->symlinks = SNAP_LINKS_INSIDE;
	s->max_files = CONF_MAX_FILES;
	s->uid = s->gid = SNAP_NO_ID;
	s->file_mode = s->dir_mode = -1;
	s->grace_ms = CONF_GRACE_MS;
	s->hook_timeout_s = CONF_HOOK_TIMEOUT_S;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Drops the white space around the first colon of a section name, in
 * place: "[ sync : web ]" is [sync:web], as the brackets' is ignored. */
static void close_colon(char *name)
{
	char *c = strchr(name, ':');

	if (c == NULL)
		return;
	char *l = c, *r = c + 1;
	while (l > name && isspace((unsigned char)l[-1]))
		l--;
	while (isspace((unsigned char)*r))
		r++;
	*l++ = ':';
	memmove(l, r, strlen(r) + 1);
}

static bool valid_sync_name(const char *n)
{
	if (*n == '\0')
		return false;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && *n != '-' && *n != '_' &&
		    *n != '.')
			return false;
	return true;
}

static void clear_seen(struct parser *p)
{
	for (size_t i = 0; i < p->nseen; i++)
		free(p->seen[i].key);
	free(p->seen);
	p->seen = NULL;
	p->nseen = 0;
}

/* The name of the section header `t` (cut in place: spaces around it
 * and a comment after it go), or NULL: *unclosed says whether for want
 * of its ']' or for text after it. */
static char *header_name(char *t, bool *unclosed)
{
	char *end = strchr(t, ']');

	*unclosed = end == NULL;
	if (end == NULL)
		return NULL;
	*end = '\0';
	char *rest = trim(end + 1);
	if (*rest != '\0' && *rest != ';' && *rest != '#')
		return NULL;
	char *name = trim(t + 1);
	close_colon(name);
	return name;
}

/* A section header line: sets up where the keys that follow go. */
static void start_section(struct parser *p, char *t)
{
	bool unclosed;
	char *name = header_name(t, &unclosed);

	clear_seen(p);
	p->cur = NULL;
	p->kind = SEC_BAD;
	if (name == NULL) {
		if (unclosed)
			perr(p, "section header without ']'");
		else
			perr(p, "unexpected text after [%s]", t + 1);
		return;
	}
	free(p->section);
	p->section = strdup(name);
	if (strcmp(name, "daemon") == 0) {
		if (p->daemon_line) {
			perr(p, "[daemon] given twice (first at line %u)",
			     p->daemon_line);
			return;
		}
		p->daemon_line = p->lineno;
		p->kind = SEC_DAEMON;
		return;
	}
	if (strncmp(name, "sync:", 5) != 0) {
		perr(p, "unknown section [%s] (expected [daemon] or "
			"[sync:NAME])",
		     name);
		return;
	}
	const char *sn = name + 5;
	if (!valid_sync_name(sn)) {
		perr(p, "[%s]: a mapping name is letters, digits, '-', '_' and "
			"'.'",
		     name);
		return;
	}
	for (size_t i = 0; i < p->c->nsyncs; i++) {
		if (strcmp(p->c->syncs[i].name, sn) == 0) {
			perr(p, "[sync:%s] given twice (first at line %u)", sn,
			     p->c->syncs[i].line);
			return;
		}
	}
	struct conf_sync *v = realloc(p->c->syncs,
				      (p->c->nsyncs + 1) * sizeof(*v));
	if (v == NULL)
		return;
	p->c->syncs = v;
	p->cur = &v[p->c->nsyncs++];
	memset(p->cur, 0, sizeof(*p->cur));
	sync_defaults(p->cur);
	p->cur->name = strdup(sn);
	p->cur->line = p->lineno;
	p->kind = SEC_SYNC;
}

/* Whether an indented line `t` reads as a section header, as
 * start_section() reads one: comments and spaces allowed. */
static bool header_like(const char *t)
{
	bool unclosed;
	char *c = strdup(t), *name = c ? header_name(c, &unclosed) : NULL;
	bool like = name && (strcmp(name, "daemon") == 0 ||
			     strncmp(name, "sync:", 5) == 0);

	free(c);
	return like;
}

/* The next line into p->line, without its line end (or a byte order
 * mark, as some editors write one): its length, or -1 at the end. */
static ssize_t next_line(struct parser *p)
{
	ssize_t n = getline(&p->line, &p->cap, p->f);

	if (n < 0)
		return -1;
	p->lineno++;
	while (n > 0 && (p->line[n - 1] == '\n' || p->line[n - 1] == '\r'))
		p->line[--n] = '\0';
	if (p->lineno == 1 && n >= 3 && memcmp(p->line, "\xef\xbb\xbf", 3) == 0) {
		memmove(p->line, p->line + 3, (size_t)n - 2);
		n -= 3;
	}
	return n;
}

/* Whether p->line (n bytes) holds a control character: said if so. */
static bool control_char(struct parser *p, ssize_t n)
{
	for (ssize_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p->line[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			perr(p, "control character (byte 0x%02x) in line", ch);
			return true;
		}
	}
	return false;
}

/* `v` up to a ';' after white space, which starts a comment (as inih
 * takes it on a key's line, but not on a continuation). */
static char *cut_comment(char *v)
{
	for (char *c = v; *c; c++) {
		if (*c == ';' && c > v && isspace((unsigned char)c[-1])) {
			*c = '\0';
			break;
		}
	}
	return v;
}

/* The key line or continuation `t`, too long for inih's buffer: its
 * value is kept aside, and inih is given a mark that names it. */
static char *stow_long(struct parser *p, char *t, char *buf, int size)
{
	char *v = t;
	if (!p->continuation) {
		char *d = strpbrk(t, "=:");
		*d = '\0';
		v = d + 1;
	}
	v = trim(cut_comment(v));
	char **lv = realloc(p->longv, (p->nlong + 1) * sizeof(*lv));
	if (lv == NULL)
		return NULL;
	p->longv = lv;
	p->longv[p->nlong] = strdup(v);
	const char *key = p->continuation ? "" : trim(t);
	if ((int)strlen(key) + 24 >= size)
		perr(p, "key name too long");
	if (p->continuation)
		snprintf(buf, (size_t)size, " %c%zu\n", LONG_MARK, p->nlong);
	else if ((int)strlen(key) + 24 < size)
		snprintf(buf, (size_t)size, "%s = %c%zu\n", key, LONG_MARK,
			 p->nlong);
	else
		snprintf(buf, (size_t)size, "\n");
	p->nlong++;
	return buf;
}

/* Our reader for inih: counts lines, follows section headers itself (inih
 * would cut long names silently), notes lines inih would reject so every
 * one is reported, and stows values too long for inih's line buffer. */
static char *reader(char *buf, int size, void *stream)
{
	struct parser *p = stream;
	ssize_t n = next_line(p);

	if (n < 0)
		return NULL;
	snprintf(buf, (size_t)size, "\n"); /* what inih skips */
	if (control_char(p, n))
		return buf;
	bool indented = n > 0 && isspace((unsigned char)p->line[0]);
	char *t = trim(p->line);
	p->continuation = false;
	if (*t == '\0' || *t == ';' || *t == '#') {
		/* inih would end a multi-line value here too. */
		if (*t == '\0')
			p->prev_key = false;
		return buf;
	}
	/* An indented "[ab]1.log" after a key continues its patterns; an
	 * indented "[sync:b]" there is a header, as it always was. */
	if (*t == '[' && (!(indented && p->prev_key) || header_like(t))) {
		p->prev_key = false;
		start_section(p, t);
		/* inih only needs to know a section started. */
		snprintf(buf, (size_t)size, "[s]\n");
		return buf;
	}
	if (indented && p->prev_key) {
		p->continuation = true;
		t = trim(cut_comment(t));
	} else if (strpbrk(t, "=:") == NULL) {
		perr(p, "expected 'key = value' or '[section]', got \"%.40s\"",
		     t);
		p->prev_key = false;
		return buf;
	}
	p->prev_key = true;
	/* A leading space is what tells inih a line continues a value. */
	if (strlen(t) + 2 > (size_t)size)
		return stow_long(p, t, buf, size);
	snprintf(buf, (size_t)size, "%s%s\n", p->continuation ? " " : "", t);
	return buf;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max,
		      unsigned *out)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* A number of bytes, with an optional K, M, G or T (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	if (*end) {
		const char *units = "KMGT", *u = strchr(units, toupper(*end));
		if (u == NULL || end[1] != '\0')
			return -EINVAL;
		shift = 10 * (unsigned)(u - units + 1);
	}
	if (errno || v == 0 || v > (UINT64_MAX >> 1) >> shift)
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"yes", "true", "on", "1"};
	static const char *no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_mode(const char *s, int *out)
{
	char *end;

	if (*s < '0' || *s > '7')
		return -EINVAL;
	errno = 0;
	long v = strtol(s, &end, 8);
	if (errno || *end || v < 0 || v > 0777)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

int conf_parse_listen(const char *s, char *host, size_t hostsize,
		      unsigned *port)
{
	const char *colon;
	size_t hl;
	unsigned pt;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		colon = close + 1;
		s++;
		hl = (size_t)(close - s);
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (parse_uint(colon + 1, 1, 65535, &pt) < 0)
		return -EINVAL;
	char h[64];
	if (hl >= sizeof(h))
		return -EINVAL;
	memcpy(h, s, hl);
	h[hl] = '\0';
	unsigned char buf[16];
	if (strcmp(h, "*") != 0 && h[0] != '\0' &&
	    inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1)
		return -EINVAL;
	if (host) {
		if (hl >= hostsize)
			return -EINVAL;
		strcpy(host, strcmp(h, "*") == 0 ? "" : h);
	}
	if (port)
		*port = pt;
	return 0;
}

int conf_parse_signal(const char *s, int *out)
{
	static const struct {
		const char *name;
		int sig;
	} sigs[] = {
		{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
		{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},
		{"CONT", SIGCONT}, {"WINCH", SIGWINCH}, {"ALRM", SIGALRM},
	};
	unsigned n;

	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		if (strcasecmp(s, sigs[i].name) == 0) {
			*out = sigs[i].sig;
			return 0;
		}
	}
	/* Not KILL or STOP, which no program can take as a reload, nor the
	 * two below SIGRTMIN that the C library keeps for itself. */
	if (parse_uint(s, 1, 64, &n) == 0 && n != SIGKILL && n != SIGSTOP &&
	    n != 32 && n != 33) {
		*out = (int)n;
		return 0;
	}
	return -EINVAL;
}

/* A user or group by name, or by number. */
static int resolve_id(const char *v, bool user, uint32_t *id)
{
	unsigned n;

	if (user) {
		struct passwd *pw = getpwnam(v);
		if (pw) {
			*id = pw->pw_uid;
			return 0;
		}
	} else {
		struct group *gr = getgrnam(v);
		if (gr) {
			*id = gr->gr_gid;
			return 0;
		}
	}
	if (parse_uint(v, 0, UINT32_MAX - 1, &n) < 0)
		return -ENOENT;
	*id = n;
	return 0;
}

static unsigned seen_before(struct parser *p, const char *key)
{
	for (size_t i = 0; i < p->nseen; i++)
		if (strcmp(p->seen[i].key, key) == 0)
			return p->seen[i].line;
	struct seen_key *v = realloc(p->seen, (p->nseen + 1) * sizeof(*v));
	if (v != NULL) {
		p->seen = v;
		p->seen[p->nseen++] = (struct seen_key){strdup(key), p->lineno};
	}
	return 0;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

int conf_sync_add_exclude(struct conf_sync *s, const char *pattern,
			  char **err)
{
	if (s->ignore == NULL && (s->ignore = ignore_new()) == NULL)
		return -ENOMEM;
	char **nv = realloc(s->exclude, (s->nexclude + 1) * sizeof(*nv));
	if (nv == NULL)
		return -ENOMEM;
	s->exclude = nv;
	if ((nv[s->nexclude] = strdup(pattern)) == NULL)
		return -ENOMEM;
	int rc = ignore_add(s->ignore, pattern, err);
	if (rc < 0) {
		free(nv[s->nexclude]);
		return rc;
	}
	s->nexclude++;
	return 0;
}

/* Patterns are separated by blanks; a backslash escapes one ("\ "). */
static void add_excludes(struct parser *p, const char *v)
{
	while (*v) {
		size_t n = 0;
		v += strspn(v, " \t");
		while (v[n] && v[n] != ' ' && v[n] != '\t')
			n += v[n] == '\\' && v[n + 1] ? 2 : 1;
		if (n == 0)
			break;
		char *pat = strndup(v, n), *err = NULL;
		int rc = pat ? conf_sync_add_exclude(p->cur, pat, &err) : -ENOMEM;
		if (rc < 0)
			perr(p, "exclude: %s", err ? err : strerror(-rc));
		free(err);
		free(pat);
		v += n;
	}
}

/* Absolute directories, separated by white space; the key may repeat. */
static void add_follow_into(struct parser *p, const char *v)
{
	struct conf_sync *s = p->cur;
	char *copy = strdup(v), *save = NULL;

	if (s->follow_into_line == 0)
		s->follow_into_line = p->lineno;
	for (char *tok = copy ? strtok_r(copy, " \t", &save) : NULL; tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (tok[0] != '/') {
			perr(p, "follow_into: '%s' is not an absolute path", tok);
			continue;
		}
		char **nv = realloc(s->follow_into,
				    (s->nfollow_into + 1) * sizeof(*nv));
		if (nv == NULL)
			break;
		s->follow_into = nv;
		s->follow_into[s->nfollow_into++] = strdup(tok);
	}
	free(copy);
}

/* check_command, on_update: a command that splits into words. */
static void set_command(struct parser *p, const char *key, const char *v)
{
	struct conf_sync *s = p->cur;
	char **argv = NULL, *err = NULL, *syntax = NULL;

	if (command_split(v, &argv, &err) < 0)
		perr(p, "%s: %s", key, err ? err : "cannot parse");
	else
		set_str(key[0] == 'c' ? &s->check_command : &s->on_update, v);
	/* Valid, but it does not do what it says. */
	bool after = false;
	if (argv && (syntax = command_shell_syntax(v, &after)) != NULL &&
	    after)
		pwarn(p, "%s: %s after the script of sh -c is an argument of "
			 "that script ($0, $1, ...), not run by the shell (put "
			 "it inside the quotes)",
		      key, syntax);
	else if (syntax)
		pwarn(p, "%s: %s is shell syntax, but the command runs without "
			 "a shell (write sh -c '...' for one)",
		      key, syntax);
	*(key[0] == 'c' ? &s->check_command_line : &s->on_update_line) =
		p->lineno;
	command_argv_free(argv);
	free(syntax);
	free(err);
}

/* Whether hook_env's `word` is a valid NAME or NAME=value not among
 * the `n` kept before it; an error is reported when not. */
static bool hook_env_word_ok(struct parser *p, char *const *kept, size_t n,
			     const char *word)
{
	size_t len = strcspn(word, "=");
	char *err = NULL;

	if (command_env_check(word, &err) < 0) {
		perr(p, "hook_env: %s", err ? err : "invalid");
		free(err);
		return false;
	}
	for (size_t k = 0; k < n; k++) {
		if (strncmp(kept[k], word, len) == 0 &&
		    strcspn(kept[k], "=") == len) {
			perr(p, "hook_env: %.*s given twice", (int)len, word);
			return false;
		}
	}
	return true;
}

/* hook_env: words split as a command is, each NAME or NAME=value; only
 * the valid ones are kept (the others are errors). */
static void set_hook_env(struct parser *p, const char *v)
{
	struct conf_sync *s = p->cur;
	char **words = NULL, *err = NULL;
	size_t n = 0;

	if (command_split(v, &words, &err) < 0) {
		perr(p, "hook_env: %s", err ? err : "cannot parse");
		free(err);
		return;
	}
	for (size_t i = 0; words[i]; i++) {
		if (hook_env_word_ok(p, words, n, words[i]))
			words[n++] = words[i];
		else
			free(words[i]);
	}
	words[n] = NULL;
	command_argv_free(s->hook_env);
	s->hook_env = words;
	s->nhook_env = n;
}

/* The keys that take a whole number within a range. */
static const struct {
	const char *key;
	size_t off; /* of an unsigned in struct conf_sync */
	unsigned min, max;
} sync_numbers[] = {
	{"debounce_ms", offsetof(struct conf_sync, debounce_ms), 0, 3600000},
	{"max_delay_ms", offsetof(struct conf_sync, max_delay_ms), 0, 86400000},
	{"resync_interval_s", offsetof(struct conf_sync, resync_interval_s), 0,
	 604800},
	{"poll_interval_ms", offsetof(struct conf_sync, poll_interval_ms), 100,
	 3600000},
	{"grace_ms", offsetof(struct conf_sync, grace_ms), 0, 3600000},
	{"hook_timeout_s", offsetof(struct conf_sync, hook_timeout_s), 1,
	 86400},
};

static bool sync_number(struct parser *p, const char *key, const char *v)
{
	for (size_t i = 0; i < sizeof(sync_numbers) / sizeof(*sync_numbers);
	     i++) {
		unsigned u;
		if (strcmp(key, sync_numbers[i].key) != 0)
			continue;
		if (parse_uint(v, sync_numbers[i].min, sync_numbers[i].max,
			       &u) < 0)
			perr(p, "%s: '%s' is not a whole number from %lu to %lu",
			     key, v, (unsigned long)sync_numbers[i].min,
			     (unsigned long)sync_numbers[i].max);
		else
			*(unsigned *)(void *)((char *)p->cur +
					      sync_numbers[i].off) = u;
		if (sync_numbers[i].off ==
		    offsetof(struct conf_sync, debounce_ms))
			p->cur->debounce_line = p->lineno;
		else if (sync_numbers[i].off ==
			 offsetof(struct conf_sync, max_delay_ms))
			p->cur->max_delay_line = p->lineno;
		return true;
	}
	return false;
}

static void set_path(struct parser *p, const char *key, const char *v)
{
	struct conf_sync *s = p->cur;

	/* Given, if not valid: not reported as missing too. */
	*(key[0] == 's' ? &s->source_line : &s->target_line) = p->lineno;
	if (v[0] != '/')
		perr(p, "%s: '%s' is not an absolute path", key, v);
	else
		set_str(key[0] == 's' ? &s->source : &s->target, v);
}

int conf_parse_symlinks(const char *s, enum snap_links *out)
{
	if (strcmp(s, "inside") == 0)
		*out = SNAP_LINKS_INSIDE;
	else if (strcmp(s, "follow") == 0)
		*out = SNAP_LINKS_FOLLOW;
	else if (strcmp(s, "skip") == 0)
		*out = SNAP_LINKS_SKIP;
	else
		return -EINVAL;
	return 0;
}

static void set_symlinks(struct parser *p, const char *v)
{
	if (conf_parse_symlinks(v, &p->cur->symlinks) < 0)
		perr(p, "symlinks: '%s' is not inside, follow or skip", v);
}

static void set_owner(struct parser *p, const char *key, const char *v)
{
	struct conf_sync *s = p->cur;
	bool user = key[0] == 'o';
	uint32_t id;

	set_str(user ? &s->owner : &s->group, v);
	if (resolve_id(v, user, &id) < 0)
		perr(p, "%s: no %s '%s'", key, user ? "user" : "group", v);
	else if (user)
		s->uid = id;
	else
		s->gid = id;
}

static void set_mode(struct parser *p, const char *key, const char *v)
{
	struct conf_sync *s = p->cur;
	int m;

	if (parse_mode(v, &m) < 0) {
		perr(p, "%s: '%s' is not an octal mode from 0 to 0777", key, v);
		return;
	}
	if (key[0] == 'f') {
		s->file_mode = m;
		return;
	}
	s->dir_mode = m;
	/* The mapping fails as it opens its target (writer_open()); said
	 * at the line, for --check-config.  A warning: whether it holds
	 * depends on who reads the file (--status by a user, say). */
	if ((m & 0700) != 0700 && geteuid() != 0)
		pwarn(p, "%s: '%s' leaves out its owner's rwx (0700), which "
			 "atomsyncd needs on the directories it fills, recycles "
			 "and removes when not run as root: the mapping fails "
			 "at start",
		      key, v);
}

/* What reads the source and shapes the target. */
static bool sync_content_key(struct parser *p, const char *key,
			     const char *v)
{
	struct conf_sync *s = p->cur;
	unsigned n;

	if (strcmp(key, "source") == 0 || strcmp(key, "target") == 0)
		set_path(p, key, v);
	else if (strcmp(key, "exclude") == 0)
		add_excludes(p, v);
	else if (strcmp(key, "fsync") == 0) {
		if (parse_bool(v, &s->fsync) < 0)
			perr(p, "fsync: '%s' is not yes or no", v);
	} else if (strcmp(key, "symlinks") == 0)
		set_symlinks(p, v);
	else if (strcmp(key, "follow_into") == 0)
		add_follow_into(p, v);
	else if (strcmp(key, "max_files") == 0) {
		if (parse_uint(v, 1, 100000000, &n) < 0)
			perr(p, "max_files: '%s' is not a whole number from 1 "
				"to 100000000",
			     v);
		else
			s->max_files = n;
	} else if (strcmp(key, "max_bytes") == 0) {
		if (parse_size(v, &s->max_bytes) < 0)
			perr(p, "max_bytes: '%s' is not a number of bytes "
				"(1 or more, with an optional K, M, G or T)",
			     v);
	} else if (strcmp(key, "allow_empty") == 0) {
		if (parse_bool(v, &s->allow_empty) < 0)
			perr(p, "allow_empty: '%s' is not yes or no", v);
	} else if (strcmp(key, "owner") == 0 || strcmp(key, "group") == 0)
		set_owner(p, key, v);
	else if (strcmp(key, "file_mode") == 0 || strcmp(key, "dir_mode") == 0)
		set_mode(p, key, v);
	else
		return false;
	return true;
}

/* The commands and the signal after a publish. */
static bool sync_hook_key(struct parser *p, const char *key, const char *v)
{
	struct conf_sync *s = p->cur;
	unsigned pid;

	if (strcmp(key, "check_command") == 0 || strcmp(key, "on_update") == 0)
		set_command(p, key, v);
	else if (strcmp(key, "hook_env") == 0)
		set_hook_env(p, v);
	else if (strcmp(key, "reload_signal") == 0) {
		if (conf_parse_signal(v, &s->reload_signal) < 0)
			perr(p, "reload_signal: '%s' is not HUP, INT, QUIT, "
				"USR1, USR2, TERM, CONT, WINCH, ALRM or a number "
				"from 1 to 64 (but 9, 19, 32 and 33)",
			     v);
	} else if (strcmp(key, "reload_pidfile") == 0) {
		if (v[0] != '/')
			perr(p, "reload_pidfile: '%s' is not an absolute path", v);
		else
			set_str(&s->reload_pidfile, v);
	} else if (strcmp(key, "reload_pid") == 0) {
		if (parse_uint(v, 2, 4194304, &pid) < 0)
			perr(p, "reload_pid: '%s' is not a process id from 2 to "
				"4194304",
			     v);
		else
			s->reload_pid = (int)pid;
	} else
		return false;
	return true;
}

static void sync_key(struct parser *p, const char *key, const char *v)
{
	if (!sync_number(p, key, v) && !sync_content_key(p, key, v) &&
	    !sync_hook_key(p, key, v))
		perr(p, "unknown key '%s'", key);
}

static void daemon_key(struct parser *p, const char *key, const char *v)
{
	struct conf *c = p->c;

	if (strcmp(key, "log_level") == 0) {
		if (log_level_parse(v, &c->log_level) < 0)
			perr(p, "log_level: '%s' is not error, warn, info or "
				"debug",
			     v);
		else
			c->log_level_set = true;
	} else if (strcmp(key, "log_format") == 0) {
		if (log_format_parse(v, &c->log_format) < 0)
			perr(p, "log_format: '%s' is not text, json or journal",
			     v);
		else
			c->log_format_set = true;
	} else if (strcmp(key, "metrics_file") == 0) {
		if (v[0] != '/')
			perr(p, "metrics_file: '%s' is not an absolute path", v);
		else {
			set_str(&c->metrics_file, v);
			c->metrics_file_line = p->lineno;
		}
	} else if (strcmp(key, "metrics_listen") == 0) {
		if (conf_parse_listen(v, NULL, 0, NULL) < 0)
			perr(p, "metrics_listen: '%s' is not HOST:PORT (an IP "
				"address or *, and a port from 1 to 65535)",
			     v);
		else
			set_str(&c->metrics_listen, v);
	} else if (strcmp(key, "unhealthy_after_s") == 0) {
		unsigned u;
		if (parse_uint(v, 1, 604800, &u) < 0)
			perr(p, "unhealthy_after_s: '%s' is not a whole number "
				"from 1 to 604800",
			     v);
		else
			c->unhealthy_after_s = u;
	} else if (strcmp(key, "max_watches") == 0) {
		unsigned u;
		if (parse_uint(v, 1, CONF_MAX_WATCHES, &u) < 0)
			perr(p, "max_watches: '%s' is not a whole number from 1 "
				"to %d",
			     v, CONF_MAX_WATCHES);
		else
			c->max_watches = u;
	} else {
		perr(p, "unknown key '%s'", key);
	}
}

static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parser *p = user;
	const char *v = value;

	(void)section; /* the reader tracks sections, with full names */
	if (value[0] == LONG_MARK) {
		size_t i = strtoul(value + 1, NULL, 10);
		v = i < p->nlong && p->longv[i] ? p->longv[i] : "";
	}
	switch (p->kind) {
	case SEC_NONE:
		perr(p, "'%s' outside any section", name);
		return 1;
	case SEC_BAD:
		return 1;
	case SEC_DAEMON:
	case SEC_SYNC:
		break;
	}
	bool list = p->kind == SEC_SYNC && (strcmp(name, "exclude") == 0 ||
					    strcmp(name, "follow_into") == 0);
	if (p->continuation) {
		if (list && name[0] == 'e')
			add_excludes(p, v);
		else if (list)
			add_follow_into(p, v);
		else
			perr(p, "%s: only exclude and follow_into may continue "
				"on an indented line",
			     name);
		return 1;
	}
	unsigned first = seen_before(p, name);
	if (first) {
		if (list) {
			if (name[0] == 'e')
				add_excludes(p, v);
			else
				add_follow_into(p, v);
			return 1;
		}
		perr(p, "%s given twice (first at line %u)", name, first);
		return 1;
	}
	if (*v == '\0' && strcmp(name, "exclude") != 0) {
		perr(p, "%s: empty value", name);
		/* Given, if empty: not reported as missing too. */
		if (p->kind == SEC_SYNC && p->cur &&
		    (strcmp(name, "source") == 0 || strcmp(name, "target") == 0))
			*(name[0] == 's' ? &p->cur->source_line
					 : &p->cur->target_line) = p->lineno;
		return 1;
	}
	if (p->kind == SEC_DAEMON)
		daemon_key(p, name, v);
	else
		sync_key(p, name, v);
	return 1;
}

static struct conf *conf_new(const char *path)
{
	struct conf *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->path = strdup(path);
	c->log_level = LOG_LVL_INFO;
	c->unhealthy_after_s = CONF_UNHEALTHY_S;
	return c;
}

/* Per-mapping checks that need the whole section. */
static void finish_syncs(struct conf *c, struct conf_errors *errs)
{
	for (size_t i = 0; i < c->nsyncs; i++) {
		struct conf_sync *s = &c->syncs[i];
		if (s->source_line == 0)
			conf_errors_add(errs, "%s:%u: [sync:%s]: source is required",
					c->path, s->line, s->name);
		if (s->target_line == 0)
			conf_errors_add(errs, "%s:%u: [sync:%s]: target is required",
					c->path, s->line, s->name);
		if (s->reload_signal && !s->reload_pidfile && !s->reload_pid)
			conf_errors_add(errs,
					"%s:%u: [sync:%s]: reload_signal needs "
					"reload_pidfile or reload_pid",
					c->path, s->line, s->name);
		if (s->reload_pidfile && s->reload_pid)
			conf_errors_add(errs,
					"%s:%u: [sync:%s]: reload_pidfile and "
					"reload_pid exclude each other",
					c->path, s->line, s->name);
		if ((s->reload_pidfile || s->reload_pid) && !s->reload_signal)
			s->reload_signal = SIGHUP;
		if (s->nfollow_into && s->symlinks != SNAP_LINKS_INSIDE)
			conf_errors_add(errs,
					"%s:%u: [sync:%s]: follow_into only "
					"applies to symlinks = inside (follow "
					"follows every link, skip none)",
					c->path, s->follow_into_line, s->name);
		/* The default gives way to a longer quiet period. */
		if (s->max_delay_line == 0 && s->max_delay_ms < s->debounce_ms)
			s->max_delay_ms = s->debounce_ms;
		if (s->max_delay_ms < s->debounce_ms)
			conf_errors_add(errs,
					"%s:%u: [sync:%s]: max_delay_ms (%u) is "
					"shorter than debounce_ms (%u)",
					c->path,
					s->max_delay_line > s->debounce_line
						? s->max_delay_line
						: s->debounce_line,
					s->name, s->max_delay_ms,
					s->debounce_ms);
	}
}

/* A command whose program cannot start fails every time it runs: said
 * before, as --check-config is run to find out. */
static void program_warning(struct conf *c, const struct conf_sync *s,
			    const char *key, const char *cmd, unsigned line)
{
	char **argv = NULL;

	if (cmd == NULL || command_split(cmd, &argv, NULL) < 0)
		return;
	/* "app;": the shell syntax is the mistake, said already. */
	int rc = strpbrk(argv[0], "<>|;&$`") ? 0
						: command_program(argv[0], s->hook_env);
	if (rc == -ENOENT)
		conf_errors_add(&c->warnings,
				"%s:%u: [sync:%s]: %s: %s: no such program%s; "
				"the command cannot start",
				c->path, line, s->name, key, argv[0],
				strchr(argv[0], '/') ? "" : " in PATH");
	else if (rc == -EACCES)
		conf_errors_add(&c->warnings,
				"%s:%u: [sync:%s]: %s: %s is not executable; "
				"the command cannot start",
				c->path, line, s->name, key, argv[0]);
	command_argv_free(argv);
}

void conf_check_programs(struct conf *c)
{
	for (size_t i = 0; i < c->nsyncs; i++) {
		const struct conf_sync *s = &c->syncs[i];
		program_warning(c, s, "check_command", s->check_command,
				s->check_command_line);
		program_warning(c, s, "on_update", s->on_update,
				s->on_update_line);
	}
}

/* Why an open config file is not to be trusted, or NULL: it says where a
 * root daemon writes, so only root or our own user may own it and write
 * it, as OpenSSH's StrictModes has it. */
static const char *distrust(const struct stat *st, char *buf, size_t size)
{
	if (!S_ISREG(st->st_mode))
		return "not a regular file";
	if (!fsutil_trusted_uid(st->st_uid)) {
		if (geteuid() == 0)
			snprintf(buf, size, "owned by uid %u, not by root",
				 (unsigned)st->st_uid);
		else
			snprintf(buf, size,
				 "owned by uid %u, not by root or uid %u, "
				 "which atomsyncd runs as",
				 (unsigned)st->st_uid, (unsigned)geteuid());
		return buf;
	}
	if ((st->st_mode & 0022) == 0)
		return NULL;
	snprintf(buf, size, "writable by %s (mode %04o)",
		 fsutil_writers(st->st_mode), (unsigned)(st->st_mode & 07777));
	return buf;
}

/* Whether the message `err` starts by naming `path` (as "./path" for a
 * relative one, as the walk to it names it). */
static bool names_path(const char *err, const char *path)
{
	size_t n = strlen(path);

	if (err && path[0] != '/' && strncmp(err, "./", 2) == 0 &&
	    strncmp(path, "./", 2) != 0)
		err += 2;
	return err && strncmp(err, path, n) == 0 && err[n] == ':';
}

/* Opens the config file through fsutil_chase (a symlink only root or we
 * could have made is followed, as a Kubernetes ConfigMap has them) with
 * O_NONBLOCK, so a FIFO cannot hang the start, and checks what it is.
 * Its owner is what vouches for it, so it must also be where nobody else
 * could have put it, or replaced it since: whoever can change a
 * directory on the way could move there a file of root's that says what
 * they like (a copy atomsyncd made of their source, say). */
static int open_conf(const char *path, FILE **out, struct conf_errors *errs)
{
	char *err = NULL, buf[128];
	const char *why = NULL;
	struct stat st;
	int fd = fsutil_chase(path, FSUTIL_CHASE_TRUSTED | FSUTIL_CHASE_PLACED,
			      O_RDONLY | O_NONBLOCK | O_NOCTTY, NULL, &err);

	if (fd < 0) {
		/* The message names the component that failed, which is
		 * often the file itself. */
		if (names_path(err, path))
			conf_errors_add(errs, "%s", err);
		else
			conf_errors_add(errs, "%s: %s", path,
					err ? err : strerror(-fd));
		free(err);
		return fd;
	}
	int rc = -EPERM;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		why = strerror(errno);
	} else {
		why = distrust(&st, buf, sizeof(buf));
	}
	if (why == NULL && (*out = fdopen(fd, "r")) == NULL) {
		rc = -errno;
		why = strerror(errno);
	}
	if (why) {
		conf_errors_add(errs, "%s: %s; refusing to read it", path, why);
		close(fd);
		return rc;
	}
	return 0;
}

int conf_load(const char *path, struct conf **out, struct conf_errors *errs)
{
	struct parser p = {.path = path, .errs = errs};
	struct conf *c;
	int rc = open_conf(path, &p.f, errs);

	if (rc < 0)
		return rc;
	c = conf_new(path);
	if (c == NULL) {
		fclose(p.f);
		return -ENOMEM;
	}
	p.c = c;
	/* Every problem is recorded by the reader or the handler, each with
	 * its line; inih's own return value adds nothing. */
	(void)ini_parse_stream(reader, &p, handler, &p);
	if (ferror(p.f))
		conf_errors_add(errs, "%s: read error", path);
	fclose(p.f);
	free(p.line);
	free(p.section);
	clear_seen(&p);
	for (size_t i = 0; i < p.nlong; i++)
		free(p.longv[i]);
	free(p.longv);
	finish_syncs(c, errs);
	*out = c;
	return 0;
}

/* "dir/rest" made absolute and cleaned, or NULL. */
static char *absolute_clean(const char *dir, const char *rest)
{
	char *abs = NULL, *cwd = NULL;

	if (rest[0] == '/')
		abs = strdup(rest);
	else if (dir || (cwd = getcwd(NULL, 0)) != NULL)
		if (asprintf(&abs, "%s/%s", dir ? dir : cwd, rest) < 0)
			abs = NULL;
	free(cwd);
	char *clean = abs ? snapshot_clean_path(abs) : NULL;
	free(abs);
	return clean;
}

/* The real path of the directory open as `fd`: what it is, not what a
 * name leads to by now. */
static char *fd_real(int fd, const char *path)
{
	char *r = fsutil_fd_path(fd);

	return r ? r : realpath(path, NULL); /* no /proc */
}

/* The directory that holds the last name of `path`, opened as the
 * daemon opens a path (see fsutil_chase()), and its real path, *dir;
 * *name is that name (in `path`).  An fd, or -errno. */
static int parent_fd(char *path, char **name, char **dir)
{
	char *slash = strrchr(path, '/');
	const char *at = slash == path ? "/" : path;

	*slash = '\0';
	int dfd = fsutil_chase(at, 0, O_RDONLY | O_DIRECTORY, NULL, NULL);
	*dir = dfd >= 0 ? fd_real(dfd, at) : NULL;
	*slash = '/';
	*name = slash + 1;
	if (dfd >= 0 && *dir == NULL) {
		int rc = -errno;
		close(dfd);
		return rc;
	}
	return dfd;
}

/* The dangling link `path`, when the daemon would follow it: owned by
 * root or by it, in a directory only root or it can change (so read
 * there, from the directory checked, it says the same), which is reached
 * the same way.  *to is its text, *dir the real path of its directory;
 * -EPERM when it would not be followed. */
static int followed_link(char *path, char **to, char **dir)
{
	struct stat dst, st;
	char *name;
	int dfd = parent_fd(path, &name, dir), rc = -EPERM;

	if (dfd < 0)
		return dfd;
	if (fstat(dfd, &dst) == 0 &&
	    fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode) && fsutil_trusted_uid(st.st_uid) &&
	    fsutil_trusted_dir(dfd, &dst))
		rc = fsutil_readlinkat(dfd, name, to);
	close(dfd);
	if (rc < 0) {
		free(*dir);
		*dir = NULL;
	}
	return rc;
}

/* `clean` with its first `cut` bytes, a dangling link, replaced by
 * where the link points (relative to the real path of the link's
 * directory, which may itself be reached through a link); NULL when the
 * daemon would not follow it. */
static char *through_link(char *clean, size_t cut)
{
	char *to = NULL, *joined = NULL, *dir = NULL, *r = NULL;
	char save = clean[cut];

	clean[cut] = '\0';
	int rc = followed_link(clean, &to, &dir);
	clean[cut] = save;
	if (rc == 0 && asprintf(&joined, "%s%s", to, clean + cut) >= 0)
		r = absolute_clean(dir, joined);
	free(joined);
	free(dir);
	free(to);
	return r;
}

/* The real path of `prefix` as the daemon reaches it: through no link
 * that another user could have put there, which it refuses to follow
 * (see fsutil_chase()), and taken from what it opened, not by resolving
 * the name again, which such a user could meanwhile have changed.  A
 * file is its directory's real path and its name.  NULL, errno set,
 * otherwise: EPERM for such a link. */
static char *real_prefix(char *prefix)
{
	int fd = fsutil_chase(prefix, 0, O_RDONLY | O_DIRECTORY, NULL, NULL);
	char *r = NULL, *name, *dir = NULL;

	if (fd >= 0)
		r = fd_real(fd, prefix);
	else if (fd == -ENOTDIR && strcmp(prefix, "/") != 0 &&
		 (fd = parent_fd(prefix, &name, &dir)) >= 0)
		r = fsutil_join(dir, name);
	if (fd >= 0) {
		close(fd);
		free(dir);
		return r;
	}
	errno = -fd;
	return NULL;
}

/* Where a path really is, as far as it exists: the real path of its
 * longest existing prefix, followed by the rest, cleaned and absolute.
 * A dangling link on the way is followed (as making the directory would
 * be), so that two names of one target compare equal.  A link the daemon
 * would refuse to follow (another user's, or in a directory another user
 * can change) is taken as the name it is: whoever put it there cannot
 * make two mappings, or a mapping and metrics_file, seem to meet and so
 * have the whole file refused; the mapping itself fails to open. */
static char *normalize_path(const char *path)
{
	char *clean = absolute_clean(NULL, path), *r = NULL;
	int hops = 0;

	/* Cut at each '/' from the right until a prefix exists. */
	for (size_t cut = clean ? strlen(clean) : 0; clean && !r;) {
		char save = clean[cut];
		clean[cut] = '\0';
		char root[] = "/";
		char *real = real_prefix(cut ? clean : root);
		clean[cut] = save;
		if (real == NULL && errno == EPERM)
			break; /* the name as written */
		if (real) {
			const char *base = strcmp(real, "/") == 0 ? "" : real;
			if (asprintf(&r, "%s%s", base, clean + cut) < 0)
				r = NULL;
			else if (r[0] == '\0')
				r = (free(r), strdup("/"));
			free(real);
			break;
		}
		char *next = errno == ENOENT && hops < 40
				     ? through_link(clean, cut)
				     : NULL;
		if (next) {
			free(clean);
			clean = next;
			cut = strlen(clean);
			hops++;
			continue;
		}
		if (cut == 0)
			break;
		while (cut > 0 && clean[--cut] != '/')
			;
	}
	if (r == NULL)
		return clean;
	free(clean);
	return r;
}

/* a is b or lies below it. */
static bool within(const char *a, const char *b)
{
	size_t n = strlen(b);

	if (strcmp(b, "/") == 0)
		return true;
	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* "file:line" for a config file; the command line has no lines. */
static char *where(const struct conf *c, unsigned line)
{
	char *r;
	if (line == 0)
		return strdup(c->path);
	if (asprintf(&r, "%s:%u", c->path, line) < 0)
		return NULL;
	return r;
}

/* Targets that are the same or nested: two writers in one place. */
static void check_targets(const struct conf *c, char **dst,
			  struct conf_errors *errs)
{
	for (size_t i = 0; i < c->nsyncs; i++) {
		const struct conf_sync *s = &c->syncs[i];
		if (dst[i] == NULL)
			continue;
		char *at = where(c, s->target_line);
		for (size_t k = 0; k < c->nsyncs; k++) {
			const struct conf_sync *o = &c->syncs[k];
			if (k == i || dst[k] == NULL)
				continue;
			bool same_text = strcmp(s->target, o->target) == 0;
			/* The other's as written, where it says it otherwise
			 * (a/../b, a link on the way). */
			if (k < i && strcmp(dst[i], dst[k]) == 0)
				conf_errors_add(errs,
						"%s: [sync:%s]: target %s is "
						"also the target of [sync:%s]%s%s%s",
						at, s->name, s->target, o->name,
						same_text ? "" : " (",
						same_text ? "" : o->target,
						same_text ? "" : ")");
			else if (strcmp(dst[i], dst[k]) != 0 &&
				 within(dst[i], dst[k]))
				conf_errors_add(errs,
						"%s: [sync:%s]: target %s is "
						"inside the target of "
						"[sync:%s] (%s)",
						at, s->name, s->target, o->name,
						o->target);
		}
		free(at);
	}
}

/* Where metrics_file is written: its directory as normalize_path() has
 * it, and its own name, which is replaced by a rename, never followed. */
static char *metrics_path(const char *file)
{
	char *clean = absolute_clean(NULL, file), *r = NULL;
	char *slash = clean ? strrchr(clean, '/') : NULL;

	if (slash == NULL || slash[1] == '\0')
		return clean;
	*slash = '\0';
	char *dir = normalize_path(*clean ? clean : "/");
	if (dir)
		r = fsutil_join(dir, slash + 1);
	free(dir);
	free(clean);
	return r;
}

/* metrics_file, rewritten every few seconds, in a source would be
 * published again and again; in a target, it would stand among the
 * names of a publish. */
static void check_metrics_file(const struct conf *c, char **src, char **dst,
			       struct conf_errors *errs)
{
	char *mf = c->metrics_file ? metrics_path(c->metrics_file) : NULL;

	for (size_t i = 0; mf && i < c->nsyncs; i++) {
		const struct conf_sync *s = &c->syncs[i];
		bool in_src = src[i] && within(mf, src[i]);
		if (!in_src && !(dst[i] && within(mf, dst[i])))
			continue;
		char *at = where(c, c->metrics_file_line);
		conf_errors_add(errs,
				"%s: metrics_file %s is inside the %s of "
				"[sync:%s] (%s)%s",
				at, c->metrics_file, in_src ? "source" : "target",
				s->name, in_src ? s->source : s->target,
				in_src ? ": each write of it would be published"
				       : "");
		free(at);
	}
	free(mf);
}

/* The mappings as a graph: i feeds k when what i writes is what k reads,
 * holds it or lies inside it.  A chain is fine; a cycle publishes its
 * own output for ever. */
struct loops {
	const struct conf *c;
	char **src, **dst;
	size_t *stack; /* the path of the walk, as mapping indexes */
	size_t *pos;   /* where each mapping is on it */
	size_t *next;  /* the next mapping to try from each */
	unsigned char *state; /* 0 not seen, 1 on the path, 2 done */
	bool *head;    /* a loop reported starts at this mapping */
	size_t depth;
	struct conf_errors *errs;
};

static bool feeds(const struct loops *l, size_t i, size_t k)
{
	return l->dst[i] && l->src[k] &&
	       (within(l->dst[i], l->src[k]) || within(l->src[k], l->dst[i]));
}

/* Why a mapping feeds itself, which the names alone do not say. */
static void self_loop(FILE *f, const struct conf_sync *s, const char *src,
		      const char *dst)
{
	if (strcmp(src, dst) == 0)
		fprintf(f, " (its source and target are the same: %s)",
			s->target);
	else if (within(dst, src))
		fprintf(f, " (its target %s is inside its source %s)",
			s->target, s->source);
	else
		fprintf(f, " (its source %s is inside its target %s)",
			s->source, s->target);
}

/* The loop that closes back to the walk's path at `from`, once, at the
 * line of the target of its first mapping. */
static void report_loop(struct loops *l, size_t from)
{
	const struct conf *c = l->c;
	const struct conf_sync *first = &c->syncs[l->stack[from]];
	char *text = NULL, *at = where(c, first->target_line);
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL || at == NULL) {
		if (f)
			fclose(f);
		free(at);
		return;
	}
	for (size_t j = from; j < l->depth; j++)
		fprintf(f, "[sync:%s] -> ", c->syncs[l->stack[j]].name);
	fprintf(f, "[sync:%s]", first->name);
	if (from + 1 == l->depth)
		self_loop(f, first, l->src[l->stack[from]], l->dst[l->stack[from]]);
	fclose(f);
	conf_errors_add(l->errs, "%s: feedback loop: %s", at, text);
	free(text);
	free(at);
}

static void loops_push(struct loops *l, size_t i)
{
	l->state[i] = 1;
	l->pos[i] = l->depth;
	l->stack[l->depth++] = i;
}

/* A depth-first walk with its own stack (a config may hold thousands of
 * mappings): every edge back to the path closes a loop.  Each loop found
 * is reported once, and at most one per mapping it starts at: every
 * tangle of mappings that feed each other shows, yet mappings that all
 * read and write one tree give one line each, not one per ordering. */
static void find_loops(struct loops *l)
{
	size_t n = l->c->nsyncs;

	for (size_t root = 0; root < n; root++) {
		if (l->state[root] != 0)
			continue;
		loops_push(l, root);
		while (l->depth > 0) {
			size_t u = l->stack[l->depth - 1];
			if (l->next[u] == n) {
				l->state[u] = 2;
				l->depth--;
				continue;
			}
			size_t k = l->next[u]++;
			if (!feeds(l, u, k))
				continue;
			if (l->state[k] == 1 && !l->head[k]) {
				l->head[k] = true;
				report_loop(l, l->pos[k]);
			}
			else if (l->state[k] == 0)
				loops_push(l, k);
		}
	}
}

static void check_loops(const struct conf *c, char **src, char **dst,
			struct conf_errors *errs)
{
	size_t n = c->nsyncs;
	struct loops l = {
		.c = c,
		.src = src,
		.dst = dst,
		.stack = calloc(n, sizeof(size_t)),
		.pos = calloc(n, sizeof(size_t)),
		.next = calloc(n, sizeof(size_t)),
		.state = calloc(n, 1),
		.head = calloc(n, sizeof(bool)),
		.errs = errs,
	};

	if (l.stack && l.pos && l.next && l.state && l.head)
		find_loops(&l);
	else
		conf_errors_add(errs, "%s: out of memory", c->path);
	free(l.stack);
	free(l.pos);
	free(l.next);
	free(l.state);
	free(l.head);
}

void conf_check(const struct conf *c, struct conf_errors *errs)
{
	size_t n = c->nsyncs;

	if (n == 0) {
		conf_errors_add(errs, "%s: no [sync:NAME] section", c->path);
		return;
	}
	char **src = calloc(n, sizeof(*src));
	char **dst = calloc(n, sizeof(*dst));

	if (src == NULL || dst == NULL) {
		conf_errors_add(errs, "%s: out of memory", c->path);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (c->syncs[i].source)
			src[i] = normalize_path(c->syncs[i].source);
		if (c->syncs[i].target)
			dst[i] = normalize_path(c->syncs[i].target);
	}
	check_targets(c, dst, errs);
	check_loops(c, src, dst, errs);
	check_metrics_file(c, src, dst, errs);
out:
	for (size_t i = 0; src && dst && i < n; i++) {
		free(src[i]);
		free(dst[i]);
	}
	free(src);
	free(dst);
}

int conf_adhoc(const char *source, const char *target, struct conf **out,
	       struct conf_errors *errs)
{
	struct conf *c = conf_new("command line");

	if (c == NULL)
		return -ENOMEM;
	c->syncs = calloc(1, sizeof(*c->syncs));
	if (c->syncs == NULL) {
		conf_free(c);
		return -ENOMEM;
	}
	c->nsyncs = 1;
	sync_defaults(&c->syncs[0]);
	c->syncs[0].name = strdup("main");
	c->syncs[0].source = strdup(source);
	c->syncs[0].target = strdup(target);
	(void)errs;
	*out = c;
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct conf_sync *conf_sync_dup(const struct conf_sync *s)
{
	struct conf_sync *d = malloc(sizeof(*d));

	if (d == NULL)
		return NULL;
	*d = *s;
	d->name = dup_or_null(s->name);
	d->source = dup_or_null(s->source);
	d->target = dup_or_null(s->target);
	d->owner = dup_or_null(s->owner);
	d->group = dup_or_null(s->group);
	d->check_command = dup_or_null(s->check_command);
	d->on_update = dup_or_null(s->on_update);
	d->reload_pidfile = dup_or_null(s->reload_pidfile);
	d->exclude = NULL;
	d->nexclude = 0;
	d->ignore = NULL;
	for (size_t i = 0; i < s->nexclude; i++) {
		if (conf_sync_add_exclude(d, s->exclude[i], NULL) < 0) {
			conf_sync_free(d);
			return NULL;
		}
	}
	d->follow_into = s->nfollow_into
				 ? calloc(s->nfollow_into, sizeof(char *))
				 : NULL;
	for (size_t i = 0; i < s->nfollow_into && d->follow_into; i++)
		d->follow_into[i] = strdup(s->follow_into[i]);
	d->hook_env = s->nhook_env ? calloc(s->nhook_env + 1, sizeof(char *))
				   : NULL;
	for (size_t i = 0; i < s->nhook_env && d->hook_env; i++)
		d->hook_env[i] = strdup(s->hook_env[i]);
	if (d->hook_env == NULL)
		d->nhook_env = 0;
	return d;
}

static void sync_fini(struct conf_sync *s)
{
	free(s->name);
	free(s->source);
	free(s->target);
	free(s->owner);
	free(s->group);
	free(s->check_command);
	free(s->on_update);
	free(s->reload_pidfile);
	for (size_t i = 0; i < s->nexclude; i++)
		free(s->exclude[i]);
	free(s->exclude);
	for (size_t i = 0; i < s->nfollow_into; i++)
		free(s->follow_into[i]);
	free(s->follow_into);
	ignore_free(s->ignore);
	command_argv_free(s->hook_env);
}

void conf_sync_free(struct conf_sync *s)
{
	if (s == NULL)
		return;
	sync_fini(s);
	free(s);
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

bool conf_sync_equal(const struct conf_sync *a, const struct conf_sync *b)
{
	if (!str_eq(a->name, b->name) || !str_eq(a->source, b->source) ||
	    !str_eq(a->target, b->target) || a->debounce_ms != b->debounce_ms ||
	    a->max_delay_ms != b->max_delay_ms || a->fsync != b->fsync ||
	    a->resync_interval_s != b->resync_interval_s ||
	    a->poll_interval_ms != b->poll_interval_ms ||
	    a->symlinks != b->symlinks || a->uid != b->uid || a->gid != b->gid ||
	    a->file_mode != b->file_mode || a->dir_mode != b->dir_mode ||
	    a->grace_ms != b->grace_ms ||
	    !str_eq(a->check_command, b->check_command) ||
	    !str_eq(a->on_update, b->on_update) ||
	    a->reload_signal != b->reload_signal ||
	    !str_eq(a->reload_pidfile, b->reload_pidfile) ||
	    a->reload_pid != b->reload_pid ||
	    a->hook_timeout_s != b->hook_timeout_s ||
	    a->nexclude != b->nexclude || a->max_files != b->max_files ||
	    a->max_bytes != b->max_bytes || a->allow_empty != b->allow_empty ||
	    a->nfollow_into != b->nfollow_into ||
	    a->nhook_env != b->nhook_env)
		return false;
	for (size_t i = 0; i < a->nexclude; i++)
		if (strcmp(a->exclude[i], b->exclude[i]) != 0)
			return false;
	for (size_t i = 0; i < a->nfollow_into; i++)
		if (strcmp(a->follow_into[i], b->follow_into[i]) != 0)
			return false;
	for (size_t i = 0; i < a->nhook_env; i++)
		if (strcmp(a->hook_env[i], b->hook_env[i]) != 0)
			return false;
	return true;
}

void conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nsyncs; i++)
		sync_fini(&c->syncs[i]);
	free(c->syncs);
	free(c->metrics_file);
	free(c->metrics_listen);
	free(c->path);
	conf_errors_fini(&c->warnings);
	free(c);
}
