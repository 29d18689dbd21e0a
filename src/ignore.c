#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ignore.h"
#include "log.h"

enum tok_kind {
	T_CHAR,	 /* one byte */
	T_ANY,	 /* '?' */
	T_CLASS, /* "[...]" */
	T_STAR,	 /* '*' */
	T_SLASH, /* only until the pattern is cut into components */
};

struct tok {
	uint8_t kind;
	uint8_t ch;   /* T_CHAR */
	uint32_t cls; /* T_CLASS: index into the pattern's classes */
};

/* One component of a pattern: a glob, or "**" (any number of path
 * components, none included). */
struct seg {
	bool dstar;
	size_t first, n; /* its tokens */
};

#define P_NEGATE 0x1u /* "!": re-includes */
#define P_DIR 0x2u    /* a trailing '/': directories only */
#define P_BASE 0x4u   /* matches the last component at any depth */

struct pattern {
	unsigned flags;
	struct tok *tok;
	size_t ntok;
	struct seg *seg;
	size_t nseg;
	uint8_t (*cls)[32]; /* the bytes each "[...]" matches, as bits */
	size_t ncls;
};

struct ignore {
	struct pattern *v;
	size_t n, cap;
	bool negated; /* some pattern re-includes */
};

struct lexer {
	const char *text; /* the whole pattern, for messages */
	const char *p;
	struct pattern *pat;
	char **err;
};

static int bad(struct lexer *lx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad(struct lexer *lx, const char *fmt, ...)
{
	char *why = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&why, fmt, ap) < 0)
		why = NULL;
	va_end(ap);
	log_err_set(lx->err, -EINVAL, "'%s': %s", lx->text,
		    why ? why : "invalid pattern");
	free(why);
	return -EINVAL;
}

static void set_bits(uint8_t *set, unsigned lo, unsigned hi)
{
	for (unsigned c = lo; c <= hi; c++)
		set[c >> 3] |= (uint8_t)(1u << (c & 7));
}

/* The POSIX classes in the C locale, as pairs of range ends, so that no
 * locale changes what a pattern means. */
static const struct {
	const char *name, *ranges;
} posix_classes[] = {
	{"alnum", "09AZaz"}, {"alpha", "AZaz"},	    {"blank", "  \t\t"},
	{"cntrl", "\x01\x1f\x7f\x7f"},		    {"digit", "09"},
	{"graph", "!~"},     {"lower", "az"},	    {"print", " ~"},
	{"punct", "!/:@[`{~"}, {"space", "\t\r  "}, {"upper", "AZ"},
	{"xdigit", "09AFaf"},
};

/* The named class "[:name:]" (len bytes of name). */
static int class_named(struct lexer *lx, uint8_t *set, const char *name,
		       size_t len)
{
	for (size_t i = 0; i < sizeof(posix_classes) / sizeof(*posix_classes);
	     i++) {
		const char *r = posix_classes[i].ranges;
		if (strlen(posix_classes[i].name) != len ||
		    memcmp(posix_classes[i].name, name, len) != 0)
			continue;
		for (; *r; r += 2)
			set_bits(set, (unsigned char)r[0], (unsigned char)r[1]);
		return 0;
	}
	return bad(lx, "unknown character class [:%.*s:]", (int)len, name);
}

/* One item of a "[...]" at *pp: a byte, an escaped byte, a range or a
 * named class, read as git's wildmatch reads them.  *prev is the byte a
 * '-' would start a range from, or -1. */
static int class_item(struct lexer *lx, uint8_t *set, const char **pp,
		      int *prev)
{
	const char *p = *pp;
	unsigned char c = (unsigned char)*p;

	if (c == '-' && *prev >= 0 && p[1] != '\0' && p[1] != ']') {
		unsigned char hi = (unsigned char)*++p;
		if (hi == '\\' && (hi = (unsigned char)*++p) == '\0')
			return bad(lx, "'[' without a closing ']'");
		if (hi == '/')
			return bad(lx, "'/' inside [...] never matches");
		if (hi < *prev)
			return bad(lx, "the range %c-%c in [...] is backwards",
				   *prev, hi);
		set_bits(set, (unsigned)*prev, hi);
		*prev = -1;
		*pp = p + 1;
		return 0;
	}
	if (c == '[' && p[1] == ':') {
		const char *end = strchr(p + 2, ']');
		if (end == NULL)
			return bad(lx, "'[' without a closing ']'");
		if (end >= p + 3 && end[-1] == ':') {
			*prev = -1;
			*pp = end + 1;
			return class_named(lx, set, p + 2,
					   (size_t)(end - 1 - (p + 2)));
		}
		/* No ":]": the '[' is an ordinary byte. */
	}
	if (c == '\\' && (c = (unsigned char)*++p) == '\0')
		return bad(lx, "'[' without a closing ']'");
	/* A class never matches '/'; one that names it is a mistake. */
	if (c == '/')
		return bad(lx, "'/' inside [...] never matches");
	set_bits(set, c, c);
	*prev = c;
	*pp = p + 1;
	return 0;
}

/* "[...]", lx->p just after the '['. */
static int lex_class(struct lexer *lx)
{
	struct pattern *pat = lx->pat;
	uint8_t *set = pat->cls[pat->ncls];
	const char *p = lx->p;
	bool neg = false;
	int prev = -1, rc = 0;

	memset(set, 0, sizeof(*pat->cls));
	if (*p == '!' || *p == '^') {
		neg = true;
		p++;
	}
	/* A ']' right after the '[' (or "[!") is an ordinary byte. */
	for (const char *first = p; rc == 0 && (*p != ']' || p == first);) {
		if (*p == '\0')
			return bad(lx, "'[' without a closing ']'");
		rc = class_item(lx, set, &p, &prev);
	}
	if (rc < 0)
		return rc;
	for (size_t i = 0; neg && i < sizeof(*pat->cls); i++)
		set[i] = (uint8_t)~set[i];
	set['/' >> 3] &= (uint8_t) ~(1u << ('/' & 7));
	lx->p = p + 1;
	pat->tok[pat->ntok++] =
		(struct tok){.kind = T_CLASS, .cls = (uint32_t)pat->ncls++};
	return 0;
}

/* Reads the pattern into tokens; '/' is a token still. */
static int lex(struct lexer *lx)
{
	struct pattern *pat = lx->pat;

	while (*lx->p) {
		unsigned char c = (unsigned char)*lx->p++;
		struct tok t = {.kind = T_CHAR, .ch = c};
		if (c == '\\') {
			if (*lx->p == '\0')
				return bad(lx, "a trailing backslash escapes "
					       "nothing (a space after it at "
					       "the end of a line is lost: "
					       "write [\\ ] for one)");
			t.ch = c = (unsigned char)*lx->p++;
			if (c == '/')
				t.kind = T_SLASH;
		} else if (c == '/') {
			t.kind = T_SLASH;
		} else if (c == '*') {
			t.kind = T_STAR;
		} else if (c == '?') {
			t.kind = T_ANY;
		} else if (c == '[') {
			int rc = lex_class(lx);
			if (rc < 0)
				return rc;
			continue;
		}
		pat->tok[pat->ntok++] = t;
	}
	return 0;
}

/* Moves the tokens [from, to) down to the end of those kept, one star for
 * a run of them; a run of two or more alone between slashes of a path
 * pattern is "**". */
static void add_seg(struct pattern *pat, size_t *kept, size_t from,
		    size_t to)
{
	struct seg *s = &pat->seg[pat->nseg++];
	bool stars = true;

	s->first = *kept;
	for (size_t i = from; i < to; i++) {
		stars = stars && pat->tok[i].kind == T_STAR;
		if (pat->tok[i].kind == T_STAR && *kept > s->first &&
		    pat->tok[*kept - 1].kind == T_STAR)
			continue;
		pat->tok[(*kept)++] = pat->tok[i];
	}
	s->n = *kept - s->first;
	s->dstar = !(pat->flags & P_BASE) && stars && to - from >= 2;
	/* Two "**" in a row are one. */
	if (s->dstar && pat->nseg > 1 && s[-1].dstar)
		pat->nseg--;
}

/* Cuts the tokens into components and settles what the slashes mean. */
static int make_segments(struct lexer *lx)
{
	struct pattern *pat = lx->pat;
	size_t lo = 0, hi = pat->ntok, kept = 0;
	bool anchored = false;

	if (hi > lo && pat->tok[hi - 1].kind == T_SLASH) {
		pat->flags |= P_DIR;
		hi--;
	}
	if (hi > lo && pat->tok[lo].kind == T_SLASH) {
		anchored = true;
		lo++;
	}
	if (lo == hi)
		return bad(lx, "an empty pattern");
	if (!anchored)
		pat->flags |= P_BASE;
	for (size_t i = lo; i < hi; i++)
		if (pat->tok[i].kind == T_SLASH)
			pat->flags &= ~P_BASE;
	for (size_t i = lo, from = lo; i <= hi; i++) {
		if (i < hi && pat->tok[i].kind != T_SLASH)
			continue;
		if (i == from)
			return bad(lx, "an empty path component (\"//\")");
		add_seg(pat, &kept, from, i);
		from = i + 1;
	}
	pat->ntok = kept;
	struct seg *s = pat->seg;
	if (!(pat->flags & P_BASE) && s[pat->nseg - 1].dstar) {
		/* A trailing "**" is everything inside, not the directory
		 * itself: one component or more. */
		s[pat->nseg] = s[pat->nseg - 1];
		s[pat->nseg - 1].dstar = false;
		pat->nseg++;
	}
	if (pat->nseg == 2 && s[0].dstar) {
		/* "**" and one name: that name at any depth. */
		s[0] = s[1];
		pat->nseg = 1;
		pat->flags |= P_BASE;
	}
	return 0;
}

static void pattern_fini(struct pattern *pat)
{
	free(pat->tok);
	free(pat->seg);
	free(pat->cls);
}

/* The length of `text` without its trailing spaces, as gitignore drops
 * them, but for one a backslash escapes. */
static size_t trimmed_len(const char *text)
{
	size_t end = strlen(text);

	while (end > 0 && text[end - 1] == ' ') {
		size_t bs = 0;
		while (bs < end - 1 && text[end - 2 - bs] == '\\')
			bs++;
		if (bs % 2)
			break;
		end--;
	}
	return end;
}

static int compile_trimmed(const char *shown, const char *text,
			   struct pattern *pat, char **err);

static int compile(const char *text, struct pattern *pat, char **err)
{
	size_t end = trimmed_len(text);

	if (text[end] == '\0')
		return compile_trimmed(text, text, pat, err);
	char *own = strndup(text, end);
	int rc = own ? compile_trimmed(text, own, pat, err) : -ENOMEM;
	free(own);
	return rc;
}

/* `text` compiled; errors name `shown`, the pattern as given. */
static int compile_trimmed(const char *shown, const char *text,
			   struct pattern *pat, char **err)
{
	struct lexer lx = {.text = shown, .p = text, .pat = pat, .err = err};
	size_t len = strlen(text), ncls = 0;
	int rc;

	memset(pat, 0, sizeof(*pat));
	/* In a .gitignore such a line is a comment: say so rather than
	 * match nothing. */
	if (text[0] == '#')
		return bad(&lx, "a leading '#' makes a comment in gitignore; "
				"write \\# for a literal '#'");
	if (text[0] == '!') {
		pat->flags |= P_NEGATE;
		lx.p++;
	}
	for (const char *c = text; *c; c++)
		ncls += *c == '[';
	/* Every token takes at least one byte of the text. */
	pat->tok = malloc((len + 1) * sizeof(*pat->tok));
	pat->seg = malloc((len + 2) * sizeof(*pat->seg));
	pat->cls = ncls ? malloc(ncls * sizeof(*pat->cls)) : NULL;
	if (pat->tok == NULL || pat->seg == NULL || (ncls && pat->cls == NULL))
		rc = -ENOMEM;
	else
		rc = lex(&lx);
	if (rc == 0)
		rc = make_segments(&lx);
	if (rc < 0)
		pattern_fini(pat);
	return rc;
}

static bool tok_match(const struct pattern *pat, const struct tok *t,
		      unsigned char c)
{
	switch (t->kind) {
	case T_CHAR:
		return t->ch == c;
	case T_ANY:
		return true;
	case T_CLASS:
		return (pat->cls[t->cls][c >> 3] >> (c & 7)) & 1;
	}
	return false;
}

/* One component s[0..n) against a glob.  Each token but a star takes one
 * byte, so when the text after a star fails, only the latest star needs
 * to take one byte more: at most n times the glob's length steps. */
static bool glob_match(const struct pattern *pat, const struct seg *g,
		       const char *s, size_t n)
{
	const struct tok *t = pat->tok + g->first;
	size_t i = 0, j = 0, star = SIZE_MAX, mark = 0;

	while (j < n) {
		if (i < g->n && t[i].kind == T_STAR) {
			star = i++;
			mark = j;
		} else if (i < g->n &&
			   tok_match(pat, &t[i], (unsigned char)s[j])) {
			i++;
			j++;
		} else if (star != SIZE_MAX) {
			i = star + 1;
			j = ++mark;
		} else {
			return false;
		}
	}
	while (i < g->n && t[i].kind == T_STAR)
		i++;
	return i == g->n;
}

static size_t comp_end(const char *path, size_t len, size_t j)
{
	const char *e = memchr(path + j, '/', len - j);
	return e ? (size_t)(e - path) : len;
}

/* The whole path against the components of a pattern: the same walk as
 * glob_match one level up, "**" being the star and each glob taking one
 * path component. */
static bool path_match(const struct pattern *pat, const char *path,
		       size_t len)
{
	const struct seg *g = pat->seg;
	size_t i = 0, j = 0, star = SIZE_MAX, mark = 0;

	while (j < len) {
		size_t e = comp_end(path, len, j);
		if (i < pat->nseg && g[i].dstar) {
			star = i++;
			mark = j;
		} else if (i < pat->nseg &&
			   glob_match(pat, &g[i], path + j, e - j)) {
			i++;
			j = e < len ? e + 1 : len;
		} else if (star != SIZE_MAX) {
			i = star + 1;
			e = comp_end(path, len, mark);
			j = mark = e < len ? e + 1 : len;
		} else {
			return false;
		}
	}
	while (i < pat->nseg && g[i].dstar)
		i++;
	return i == pat->nseg;
}

struct ignore *ignore_new(void)
{
	return calloc(1, sizeof(struct ignore));
}

void ignore_free(struct ignore *ig)
{
	if (ig == NULL)
		return;
	for (size_t i = 0; i < ig->n; i++)
		pattern_fini(&ig->v[i]);
	free(ig->v);
	free(ig);
}

int ignore_add(struct ignore *ig, const char *pattern, char **err)
{
	struct pattern pat;
	int rc = compile(pattern, &pat, err);

	if (rc < 0)
		return rc;
	if (ig->n == ig->cap) {
		size_t cap = ig->cap ? ig->cap * 2 : 8;
		struct pattern *v = realloc(ig->v, cap * sizeof(*v));
		if (v == NULL) {
			pattern_fini(&pat);
			return -ENOMEM;
		}
		ig->v = v;
		ig->cap = cap;
	}
	ig->v[ig->n++] = pat;
	if (pat.flags & P_NEGATE)
		ig->negated = true;
	return 0;
}

int ignore_check(const char *pattern, char **err)
{
	struct pattern pat;
	int rc = compile(pattern, &pat, err);

	if (rc == 0)
		pattern_fini(&pat);
	return rc;
}

size_t ignore_count(const struct ignore *ig)
{
	return ig ? ig->n : 0;
}

bool ignore_match(const struct ignore *ig, const char *path, bool dir)
{
	if (ig == NULL)
		return false;
	size_t len = strlen(path);
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t blen = len - (size_t)(base - path);

	/* The last pattern that matches decides. */
	for (size_t k = ig->n; k-- > 0;) {
		const struct pattern *pat = &ig->v[k];
		if ((pat->flags & P_DIR) && !dir)
			continue;
		if ((pat->flags & P_BASE)
			    ? glob_match(pat, &pat->seg[0], base, blen)
			    : path_match(pat, path, len))
			return !(pat->flags & P_NEGATE);
	}
	return false;
}

bool ignore_name_excluded(const struct ignore *ig, const char *name)
{
	if (ig == NULL || ig->negated || strchr(name, '/') != NULL)
		return false;
	for (size_t k = 0; k < ig->n; k++) {
		const struct pattern *pat = &ig->v[k];
		if ((pat->flags & (P_BASE | P_DIR)) == P_BASE &&
		    glob_match(pat, &pat->seg[0], name, strlen(name)))
			return true;
	}
	return false;
}
