/* libFuzzer target for the exclude patterns (src/ignore.c).
 *
 * The input is patterns, one a line, then a NUL and a path; a path ending
 * in '/' is asked about as a directory.  Any broken invariant aborts:
 *
 *   check     ignore_check() and ignore_add() agree; a refused pattern
 *             comes with one line that starts with the quoted pattern, an
 *             accepted one with no message.
 *   model     for a clean path, each accepted pattern matches as a plain
 *             restatement of gitignore(5) says: fnmatch(3) on one
 *             component at a time, and a table over (pattern component,
 *             path component) for "**"; the whole list as the last
 *             pattern that matches says.
 *   name      a name ignore_name_excluded() drops is excluded at the end
 *             of the path, as a file and as a directory.
 *   time      matching is never slow (libFuzzer's -timeout catches it).
 *
 * The model leaves out what fnmatch(3) reads differently on purpose:
 * "[." and "[=" (collating elements there, ordinary bytes here), a range
 * "-[:" (glibc reads it its own way; git, and so ignore.c, ends the range at
 * the '[', as tests/check_ignore.c shows) and an escaped '/'. */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ignore.h"

#define MAX_PATS 16

static const char *cur_pat, *cur_path;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",     \
				__FILE__, __LINE__, #cond);                  \
			dump("pattern", cur_pat);                            \
			dump("path", cur_path);                              \
			abort();                                             \
		}                                                            \
	} while (0)

static void dump(const char *what, const char *s)
{
	if (s == NULL)
		return;
	fprintf(stderr, "%s: \"", what);
	for (size_t i = 0; s[i] && i < 300; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			fputc(ch, stderr);
		else
			fprintf(stderr, "\\x%02x", ch);
	}
	fprintf(stderr, "\"\n");
}

/* A clean relative path: not empty, no empty component. */
static bool clean(const char *p)
{
	size_t n = strlen(p);
	return n > 0 && p[0] != '/' && p[n - 1] != '/' && !strstr(p, "//");
}

/* Splits s at '/' (in place) into at most max parts; their number. */
static size_t split(char *s, char **v, size_t max)
{
	size_t n = 0;
	for (char *p = s;; p++) {
		if (n == max)
			return SIZE_MAX;
		v[n++] = p;
		p = strchr(p, '/');
		if (p == NULL)
			return n;
		*p = '\0';
	}
}

static bool only_stars(const char *s)
{
	return strlen(s) >= 2 && strspn(s, "*") == strlen(s);
}

/* Whether pattern components seg[i..] match path components comp[j..],
 * as a table filled from the end. */
static bool table_match(char **seg, size_t m, char **comp, size_t n)
{
	bool *t = calloc((m + 1) * (n + 1), sizeof(*t));
	CHECK(t != NULL);
#define T(i, j) t[(i) * (n + 1) + (j)]
	T(m, n) = true;
	for (size_t i = m; i-- > 0;) {
		for (size_t j = n + 1; j-- > 0;) {
			if (only_stars(seg[i]))
				T(i, j) = i == m - 1 ? j < n
						     : T(i + 1, j) ||
							       (j < n && T(i, j + 1));
			else
				T(i, j) = j < n &&
					  fnmatch(seg[i], comp[j], 0) == 0 &&
					  T(i + 1, j + 1);
		}
	}
	bool r = T(0, 0);
#undef T
	free(t);
	return r;
}

/* -1: the model does not say; else whether `pat` matches. */
static int model(const char *pat, const char *path, bool dir)
{
	if (strstr(pat, "[.") || strstr(pat, "[=") || strstr(pat, "-[:") ||
	    strstr(pat, "\\/"))
		return -1;
	char *body = strdup(pat[0] == '!' ? pat + 1 : pat);
	char *p = strdup(path);
	char *seg[64], *comp[64];
	int r = -1;

	CHECK(body != NULL && p != NULL);
	size_t len = strlen(body);
	/* Trailing spaces go, as gitignore drops them, but for one a
	 * backslash escapes. */
	while (len > 0 && body[len - 1] == ' ') {
		size_t bs = 0;
		while (bs < len - 1 && body[len - 2 - bs] == '\\')
			bs++;
		if (bs % 2)
			break;
		body[--len] = '\0';
	}
	bool dironly = len > 0 && body[len - 1] == '/';
	if (dironly)
		body[--len] = '\0';
	bool anchored = body[0] == '/';
	char *b = anchored ? body + 1 : body;
	size_t n = split(p, comp, 64);
	if (n == SIZE_MAX)
		goto out;
	if (dironly && !dir) {
		r = 0;
	} else if (!anchored && strchr(b, '/') == NULL) {
		r = fnmatch(b, comp[n - 1], 0) == 0;
	} else {
		size_t m = split(b, seg, 64);
		if (m != SIZE_MAX)
			r = table_match(seg, m, comp, n);
	}
out:
	free(body);
	free(p);
	return r;
}

static void check_one(const char *pat, char **err)
{
	char *e2 = NULL;
	int rc = ignore_check(pat, err);
	struct ignore *ig = ignore_new();

	CHECK(ig != NULL);
	CHECK(ignore_add(ig, pat, &e2) == rc);
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK((rc == 0) == (*err == NULL) && (rc == 0) == (e2 == NULL));
	if (rc < 0) {
		CHECK(strcmp(*err, e2) == 0);
		CHECK(strchr(*err, '\n') == NULL);
		CHECK((*err)[0] == '\'' &&
		      strncmp(*err + 1, pat, strlen(pat)) == 0);
	}
	free(e2);
	ignore_free(ig);
}

static void check_list(char **pats, size_t n, const char *path, bool dir)
{
	struct ignore *all = ignore_new();
	int want = 0;

	CHECK(all != NULL);
	for (size_t i = 0; i < n; i++) {
		struct ignore *one = ignore_new();
		bool neg = pats[i][0] == '!';
		cur_pat = pats[i];
		/* A "!" pattern shows that it matches by bringing back what
		 * "*" excluded. */
		CHECK(one != NULL && (!neg || ignore_add(one, "*", NULL) == 0));
		CHECK(ignore_add(one, pats[i], NULL) == 0);
		CHECK(ignore_add(all, pats[i], NULL) == 0);
		bool got = ignore_match(one, path, dir) != neg;
		int m = model(pats[i], path, dir);
		CHECK(m < 0 || got == (m == 1));
		if (want >= 0 && m < 0)
			want = -1;
		else if (want >= 0 && m == 1)
			want = !neg;
		ignore_free(one);
	}
	cur_pat = NULL;
	CHECK(want < 0 || ignore_match(all, path, dir) == (want == 1));
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (ignore_name_excluded(all, base)) {
		CHECK(ignore_match(all, path, false));
		CHECK(ignore_match(all, path, true));
	}
	ignore_free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 2), *pats[MAX_PATS];
	size_t n = 0;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = '\0';
	char *path = buf + strlen(buf) + 1;
	if (path > buf + size)
		path = buf + size; /* no NUL: no path */
	for (char *line = buf, *nl; line && n < MAX_PATS; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		char *err = NULL;
		cur_pat = line;
		check_one(line, &err);
		if (err == NULL)
			pats[n++] = line;
		free(err);
	}
	size_t plen = strlen(path);
	bool dir = plen > 0 && path[plen - 1] == '/';
	if (dir)
		path[--plen] = '\0';
	cur_path = path;
	if (clean(path))
		check_list(pats, n, path, dir);
	cur_pat = cur_path = NULL;
	free(buf);
	return 0;
}
