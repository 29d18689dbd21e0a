/* libFuzzer target for the path helpers: writer_validate_path(),
 * snapshot_clean_path(), snapshot_path_cmp(), state_escape() and
 * state_unescape().
 *
 * The input is split at NUL bytes into up to three strings a, b, c (with
 * no NUL in it, into two halves a and b, and c = ""); the whole input up
 * to its first NUL is checked as one path too.  Any broken invariant
 * aborts:
 *
 *   validate  agrees with the Kubernetes AtomicWriter rules, restated here:
 *             not empty, not absolute, at most 4096 bytes, no ".." element,
 *             no element over 255 bytes, no leading ".." name -- and, where
 *             Kubernetes looks only at the path as given, also no leading
 *             ".." name once cleaned ("./..data"); an error comes with a
 *             message, success leaves none.
 *   clean     agrees with a plain element-stack version of Go's path.Clean;
 *             is idempotent; never longer than its input (but "" -> ".");
 *             keeps an absolute path absolute and a relative one relative.
 *   valid + clean
 *             a path that validates cleans to a relative path that is not
 *             ".", has no ".." element and whose first name does not start
 *             with ".." (the names the writer keeps for itself: ..data,
 *             ..data_tmp, ..atomsync, generations).
 *   cmp       cmp(x, x) == 0; zero exactly when strcmp() is; antisymmetric;
 *             transitive on a, b, c; a directory's descendants sort right
 *             after it: a < b and b not below a imply a/c < b.
 *   escape    unescape(escape(x)) == x; escape(x) is printable ASCII without
 *             spaces; whatever unescape() accepts survives the round trip. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"
#include "state.h"
#include "writer.h"

#define CHECK(cond, x)                                                       \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",     \
				__FILE__, __LINE__, #cond);                  \
			dump("for", (x));                                    \
			abort();                                             \
		}                                                            \
	} while (0)

/* Prints a string with its unprintable bytes escaped, cut at 300 bytes. */
static void dump(const char *what, const char *s)
{
	size_t n = strlen(s);

	fprintf(stderr, "%s (%zu bytes): \"", what, n);
	for (size_t i = 0; i < n && i < 300; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			fputc(ch, stderr);
		else
			fprintf(stderr, "\\x%02x", ch);
	}
	fprintf(stderr, "%s\"\n", n > 300 ? "..." : "");
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

/* The rules of Kubernetes' validatePath(), element by element. */
static bool model_valid(const char *p)
{
	size_t len = strlen(p);

	if (len == 0 || p[0] == '/' || len > WRITER_MAX_PATH)
		return false;
	size_t first = strcspn(p, "/");
	for (const char *e = p;;) {
		size_t n = strcspn(e, "/");
		if (n == 2 && e[0] == '.' && e[1] == '.')
			return false;
		if (n > WRITER_MAX_NAME)
			return false;
		if (e[n] == '\0')
			break;
		e += n + 1;
	}
	return !(first > 2 && p[0] == '.' && p[1] == '.');
}

/* Go's path.Clean by an element stack: drop empty and "." elements, let
 * ".." pop a name (or stay, leading a relative path; vanish at the root). */
static char *model_clean(const char *p)
{
	size_t len = strlen(p);
	bool rooted = p[0] == '/';
	const char **start = malloc((len / 2 + 2) * sizeof(*start));
	size_t *lens = malloc((len / 2 + 2) * sizeof(*lens));
	size_t depth = 0, keep = 0; /* keep: leading ".." elements */
	char *out = malloc(len + 2), *w = out;

	if (start == NULL || lens == NULL || out == NULL)
		abort();
	for (const char *e = p;;) {
		size_t n = strcspn(e, "/");
		if (n == 0 || (n == 1 && e[0] == '.')) {
			/* nothing */
		} else if (n == 2 && e[0] == '.' && e[1] == '.') {
			if (depth > keep) {
				depth--;
			} else if (!rooted) {
				start[depth] = e;
				lens[depth++] = 2;
				keep = depth;
			}
		} else {
			start[depth] = e;
			lens[depth++] = n;
		}
		if (e[n] == '\0')
			break;
		e += n + 1;
	}
	if (rooted)
		*w++ = '/';
	for (size_t i = 0; i < depth; i++) {
		if (i > 0)
			*w++ = '/';
		memcpy(w, start[i], lens[i]);
		w += lens[i];
	}
	if (w == out)
		*w++ = '.';
	*w = '\0';
	free(start);
	free(lens);
	return out;
}

static bool has_dotdot_element(const char *p)
{
	for (const char *e = p;;) {
		size_t n = strcspn(e, "/");
		if (n == 2 && e[0] == '.' && e[1] == '.')
			return true;
		if (e[n] == '\0')
			return false;
		e += n + 1;
	}
}

static void check_clean(const char *p)
{
	char *c = snapshot_clean_path(p);
	CHECK(c != NULL, p);
	char *m = model_clean(p);
	if (strcmp(c, m) != 0) {
		dump("path", p);
		dump("snapshot_clean_path", c);
		dump("expected", m);
		abort();
	}
	free(m);
	size_t n = strlen(p), cn = strlen(c);
	CHECK(cn > 0, p);
	CHECK(cn <= (n ? n : 1), p);
	CHECK((c[0] == '/') == (p[0] == '/'), p);
	CHECK(strstr(c, "//") == NULL, p);
	CHECK(cn == 1 || c[cn - 1] != '/', p);
	char *cc = snapshot_clean_path(c);
	CHECK(cc != NULL && strcmp(cc, c) == 0, p);
	free(cc);

	char *err = NULL;
	int rc = writer_validate_path(p, &err);
	/* The Kubernetes rules look at the path as given; the writer goes
	 * on with the cleaned path, whose first name must not start with
	 * ".." either ("./..data" cleans to "..data"). */
	bool k8s = model_valid(p);
	bool reserved = k8s && c[0] == '.' && c[1] == '.';
	if (rc == 0 && reserved) {
		dump("valid path", p);
		dump("cleans to", c);
		fprintf(stderr, "a valid path cleans to a name starting with "
				"'..' (reserved)\n");
		abort();
	}
	if ((rc == 0) != (k8s && !reserved)) {
		dump("path", p);
		fprintf(stderr, "writer_validate_path: %d (%s), expected %s\n",
			rc, err ? err : "no message", k8s ? "valid" : "invalid");
		abort();
	}
	if (rc == 0) {
		CHECK(err == NULL, p);
		/* What the writer goes on to use. */
		CHECK(c[0] != '/', p);
		CHECK(!has_dotdot_element(c), p);
		/* The cleaned form is valid itself, unless it is ".". */
		char *err2 = NULL;
		CHECK(strcmp(c, ".") == 0 || writer_validate_path(c, &err2) == 0,
		      p);
		free(err2);
	} else {
		CHECK(rc == -EINVAL || rc == -ENAMETOOLONG, p);
		CHECK(err != NULL && strncmp(err, "invalid path", 12) == 0, p);
	}
	free(err);
	free(c);
}

static void check_escape(const char *p)
{
	char *e = state_escape(p);
	CHECK(e != NULL, p);
	for (const unsigned char *q = (const unsigned char *)e; *q; q++)
		CHECK(*q > 0x20 && *q < 0x7f, p);
	char *u = NULL;
	CHECK(state_unescape(e, &u) == 0, p);
	if (strcmp(u, p) != 0) {
		dump("string", p);
		dump("escaped", e);
		dump("unescaped", u);
		abort();
	}
	free(u);
	free(e);

	/* Read as an escaped string, as from a damaged state file. */
	u = NULL;
	if (state_unescape(p, &u) == 0) {
		CHECK(u != NULL && strlen(u) <= strlen(p), p);
		char *e2 = state_escape(u), *u2 = NULL;
		CHECK(e2 != NULL && state_unescape(e2, &u2) == 0, p);
		CHECK(strcmp(u2, u) == 0, p);
		free(u2);
		free(e2);
		free(u);
	}
}

static void check_cmp(const char *a, const char *b, const char *c)
{
	CHECK(snapshot_path_cmp(a, a) == 0, a);
	int ab = snapshot_path_cmp(a, b), ba = snapshot_path_cmp(b, a);
	CHECK(sign(ab) == -sign(ba), a);
	CHECK((ab == 0) == (strcmp(a, b) == 0), a);
	int bc = snapshot_path_cmp(b, c), ac = snapshot_path_cmp(a, c);
	if (ab <= 0 && bc <= 0)
		CHECK(ac <= 0, a);
	if (ab >= 0 && bc >= 0)
		CHECK(ac >= 0, a);

	/* a < b, b not a or below it: everything below a sorts before b. */
	size_t an = strlen(a);
	if (ab < 0 && !(strncmp(b, a, an) == 0 && b[an] == '/')) {
		size_t cn = strlen(c);
		char *ac2 = malloc(an + cn + 2);
		CHECK(ac2 != NULL, a);
		memcpy(ac2, a, an);
		ac2[an] = '/';
		memcpy(ac2 + an + 1, c, cn + 1);
		if (snapshot_path_cmp(ac2, b) >= 0) {
			dump("a", a);
			dump("b", b);
			dump("a/c", ac2);
			fprintf(stderr, "a < b, but a/c does not sort before b\n");
			abort();
		}
		free(ac2);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Three NUL-terminated copies side by side. */
	char *buf = malloc(size + 3);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = buf[size + 2] = '\0';

	const char *a = buf, *b, *c;
	char *nul = memchr(buf, '\0', size);
	if (nul != NULL) {
		b = nul + 1;
		c = b + strlen(b) + (b + strlen(b) < buf + size ? 1 : 0);
	} else {
		/* No NUL: two halves (the whole string is checked below). */
		char *half = malloc(size + 2);
		if (half == NULL) {
			free(buf);
			return 0;
		}
		size_t h = size / 2;
		memcpy(half, data, h);
		half[h] = '\0';
		memcpy(half + h + 1, data + h, size - h);
		half[size + 1] = '\0';
		check_clean(half);
		check_clean(half + h + 1);
		check_cmp(half, half + h + 1, "");
		check_cmp(half + h + 1, half, "x");
		free(half);
		check_clean(buf);
		check_escape(buf);
		free(buf);
		return 0;
	}
	check_clean(a);
	check_clean(b);
	check_clean(c);
	check_escape(a);
	check_escape(b);
	check_escape(c);
	check_cmp(a, b, c);
	check_cmp(b, c, a);
	check_cmp(c, a, b);
	free(buf);
	return 0;
}
