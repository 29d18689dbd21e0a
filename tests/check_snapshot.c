/* Reading a source tree: order, reserved names, symlinks in each mode,
 * special files, excludes (typed: a link is a directory when followed to
 * one) and what gets watched. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "fsutil.h"
#include "ignore.h"
#include "log.h"
#include "snapshot.h"
#include "store.h"
#include "testutil.h"

static char *tmp, *src;

static void setup(void)
{
	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	tu_mkdirs(src, 0755);
	log_init(LOG_FMT_TEXT, LOG_LVL_ERROR);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(src);
	free(tmp);
}

static void link_in(const char *target, const char *rel)
{
	char *p = tu_path(src, rel);
	ck_assert_msg(symlink(target, p) == 0, "symlink %s", rel);
	free(p);
}

static struct snapshot *take(enum snap_links mode)
{
	struct snapshot_opts o = {.links = mode};
	struct snapshot *s = NULL;
	char *err = NULL;
	int rc = snapshot_take(src, &o, &s, &err);
	ck_assert_msg(rc == 0, "snapshot: %s", err);
	return s;
}

static int has_warning(const struct snapshot *s, const char *path,
		       enum snap_warn kind)
{
	for (size_t i = 0; i < s->extras.nwarn; i++)
		if (strcmp(s->extras.warn[i].path, path) == 0 &&
		    s->extras.warn[i].kind == kind)
			return 1;
	return 0;
}

static const struct snap_entry *must_find(const struct snapshot *s,
					  const char *path)
{
	const struct snap_entry *e = snapshot_find(s, path);
	ck_assert_msg(e != NULL, "%s missing from snapshot", path);
	return e;
}

START_TEST(test_path_order_keeps_descendants_together)
{
	ck_assert_int_lt(snapshot_path_cmp("a", "a/b"), 0);
	ck_assert_int_lt(snapshot_path_cmp("a/b", "a/c"), 0);
	ck_assert_int_lt(snapshot_path_cmp("a/zzz", "a.b"), 0);
	ck_assert_int_lt(snapshot_path_cmp("a.b", "b"), 0);
	ck_assert_int_eq(snapshot_path_cmp("x/y", "x/y"), 0);
	ck_assert_int_gt(snapshot_path_cmp("a-", "a/"), 0);
	ck_assert_int_lt(snapshot_path_cmp("\x01", "\xff"), 0);
}
END_TEST

/* The order as defined byte by byte: '/' below every other byte, the
 * end below '/'. */
static int path_cmp_by_bytes(const char *a, const char *b)
{
	for (const unsigned char *p = (const void *)a, *q = (const void *)b;;
	     p++, q++) {
		int x = *p == '/' ? 1 : *p == 0 ? 0 : *p + 1;
		int y = *q == '/' ? 1 : *q == 0 ? 0 : *q + 1;
		if (x != y)
			return x < y ? -1 : 1;
		if (x == 0)
			return 0;
	}
}

/* Every pair of short paths over bytes around '/' (those just below and
 * above it, the lowest and the highest), prefixes of each other too,
 * compares as the byte-by-byte order has it. */
START_TEST(test_path_order_is_the_byte_order_with_slash_lowest)
{
	static const char bytes[] = "\x01-./a\xff";
	const size_t nb = sizeof(bytes) - 1;
	char v[400][4];
	size_t n = 0;

	for (size_t len = 0; len <= 3; len++) {
		size_t count = 1;
		for (size_t i = 0; i < len; i++)
			count *= nb;
		for (size_t k = 0; k < count && n < 400; k++) {
			size_t x = k;
			for (size_t i = 0; i < len; i++, x /= nb)
				v[n][i] = bytes[x % nb];
			v[n++][len] = '\0';
		}
	}
	ck_assert_uint_eq(n, 1 + 6 + 36 + 216);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			ck_assert_int_eq(snapshot_path_cmp(v[i], v[j]),
					 path_cmp_by_bytes(v[i], v[j]));
}
END_TEST

START_TEST(test_walk_is_sorted_with_dirs_before_children)
{
	tu_write(src, "a.b", "1", 0644);
	tu_write(src, "a/z", "2", 0644);
	tu_write(src, "a/b/c", "3", 0644);
	tu_write(src, "B", "4", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	const char *want[] = {"B", "a", "a/b", "a/b/c", "a/z", "a.b"};
	ck_assert_uint_eq(s->n, 6);
	for (size_t i = 0; i < 6; i++)
		ck_assert_str_eq(s->v[i].path, want[i]);
	ck_assert_int_eq(s->v[1].type, SNAP_DIR);
	ck_assert_int_eq(s->v[3].type, SNAP_FILE);
	ck_assert_uint_eq(s->v[3].size, 1);
	snapshot_free(s);
}
END_TEST

/* A root given open is read through its descriptor: the path, which
 * another directory now has, only names it. */
START_TEST(test_a_root_given_open_is_read_through_it)
{
	char *other = tu_path(tmp, "other"), *was = tu_path(tmp, "was");
	tu_write(src, "mine", "1", 0644);
	tu_write(other, "theirs", "2", 0644);
	int fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(rename(src, was), 0);
	ck_assert_int_eq(rename(other, src), 0);
	struct snapshot_opts o = {.links = SNAP_LINKS_SKIP, .root_open = true,
				  .root_fd = fd};
	struct snapshot *s = NULL;
	char *err = NULL;

	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), 0);
	ck_assert_uint_eq(s->n, 1);
	ck_assert_str_eq(s->v[0].path, "mine");
	ck_assert_str_eq(s->root, src);
	snapshot_free(s);
	/* Without it, the path is what is read. */
	o.root_open = false;
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), 0);
	ck_assert_uint_eq(s->n, 1);
	ck_assert_str_eq(s->v[0].path, "theirs");
	snapshot_free(s);
	close(fd);
	free(err);
	free(was);
	free(other);
}
END_TEST

/* Where what is below each entry ends, against a plain scan: subtrees
 * of every size from none to most of the tree, names that share a prefix
 * ("a", "a.b", "a/b"), and the last entry; and the same found from a
 * guess of every size. */
START_TEST(test_subtree_end_is_where_the_names_below_end)
{
	char name[64];
	tu_write(src, "a.b", "1", 0644);
	tu_write(src, "a/b/c", "2", 0644);
	tu_write(src, "a/z", "3", 0644);
	for (int d = 0; d < 9; d++)
		for (int f = 0; f < (1 << d); f++) {
			snprintf(name, sizeof(name), "d%d/sub/f%03d", d, f);
			tu_write(src, name, "x", 0644);
		}
	tu_write(src, "zz/last", "4", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	snapshot_sort(s);
	ck_assert(s->sorted);
	for (size_t i = 0; i < s->n; i++) {
		const char *p = s->v[i].path;
		size_t len = strlen(p), end = i + 1;
		while (end < s->n && strncmp(s->v[end].path, p, len) == 0 &&
		       s->v[end].path[len] == '/')
			end++;
		ck_assert_msg(snapshot_subtree_end(s, i) == end,
			      "%s: %zu, not %zu", p, snapshot_subtree_end(s, i),
			      end);
		/* Whatever the guess, right, too short, too long or past
		 * the last entry. */
		for (size_t n = 0; n <= s->n - i + 1; n++)
			ck_assert_msg(snapshot_subtree_end_near(s, i, n) == end,
				      "%s, guess %zu: %zu, not %zu", p, n,
				      snapshot_subtree_end_near(s, i, n), end);
	}
	snapshot_free(s);
}
END_TEST

/* snapshot_find_next() finds what snapshot_find() does, whatever was
 * asked before: each path in order, paths that are not there (between
 * "a", "a.b" and "a/b"), and every path after every pair of others (a
 * step right, short, long, backwards or past the end). */
START_TEST(test_find_next_finds_what_find_does)
{
	char name[64];
	tu_write(src, "a.b", "1", 0644);
	tu_write(src, "a/b/c", "2", 0644);
	for (int d = 0; d < 6; d++)
		for (int f = 0; f < (1 << d); f++) {
			snprintf(name, sizeof(name), "d%d/f%02d", d, f);
			tu_write(src, name, "x", 0644);
		}
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	snapshot_sort(s);
	struct snap_cursor c = {0};
	const char *missing[] = {"", "0", "a-", "a.a", "a.c", "a/a", "a/b/b",
				 "d3/f", "d5/f99", "zz"};

	for (size_t i = 0; i < s->n; i++)
		ck_assert_ptr_eq(snapshot_find_next(s, s->v[i].path, &c),
				 &s->v[i]);
	for (size_t k = 0; k < sizeof(missing) / sizeof(*missing); k++) {
		ck_assert_ptr_null(snapshot_find_next(s, missing[k], &c));
		c = (struct snap_cursor){0};
		ck_assert_ptr_null(snapshot_find_next(s, missing[k], &c));
	}
	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; j < s->n; j++)
			for (size_t k = 0; k < s->n; k += 7) {
				c = (struct snap_cursor){0};
				(void)snapshot_find_next(s, s->v[i].path, &c);
				(void)snapshot_find_next(s, s->v[j].path, &c);
				ck_assert_ptr_eq(
					snapshot_find_next(s, s->v[k].path, &c),
					&s->v[k]);
			}
	snapshot_free(s);
}
END_TEST

/* A directory far larger than one read of its entries. */
START_TEST(test_large_directory_is_read_whole)
{
	char name[80];
	const int n = 3000;
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name),
			 "big/%04d-a-name-long-enough-to-fill-the-buffer", i);
		tu_write(src, name, "x", 0644);
	}
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->n, (size_t)n + 1);
	ck_assert_str_eq(s->v[0].path, "big");
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name),
			 "big/%04d-a-name-long-enough-to-fill-the-buffer", i);
		ck_assert_str_eq(s->v[i + 1].path, name);
	}
	snapshot_free(s);
}
END_TEST

/* A walk told what to expect makes room at once: more than a mapping's
 * worth is a mapping of its own, which keeps what is appended past it
 * and is cut down to what a read kept holds. */
START_TEST(test_expected_size_is_reserved_and_trimmed)
{
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE, .expect = 20000};
	struct snapshot *s = NULL, *plain = take(SNAP_LINKS_INSIDE);
	char *err = NULL, name[32];

	tu_write(src, "a/f", "1", 0644);
	tu_write(src, "b", "2", 0644);
	snapshot_free(plain);
	plain = take(SNAP_LINKS_INSIDE);
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), 0);
	ck_assert_uint_eq(s->n, plain->n);
	for (size_t i = 0; i < s->n; i++)
		ck_assert_str_eq(s->v[i].path, plain->v[i].path);
	/* Trimmed: one small page's worth of the mapping is left. */
	ck_assert_uint_gt(s->vmap, 0);
	ck_assert_uint_le(s->vmap, (size_t)sysconf(_SC_PAGESIZE));
	ck_assert_uint_ge(s->cap, s->n);
	/* Grown past the room made: appended entries all stay. */
	ck_assert_int_eq(snapshot_reserve(s, 9000), 0);
	for (int i = 0; i < 30000; i++) {
		snprintf(name, sizeof(name), "z/%05d", i);
		struct snap_entry e = {.path = strdup(name), .type = SNAP_FILE};
		ck_assert_int_eq(snapshot_append(s, &e), 0);
	}
	ck_assert_uint_eq(s->n, plain->n + 30000);
	ck_assert_str_eq(s->v[plain->n].path, "z/00000");
	ck_assert_str_eq(s->v[s->n - 1].path, "z/29999");
	ck_assert_str_eq(s->v[0].path, plain->v[0].path);
	snapshot_free(s);
	snapshot_free(plain);
}
END_TEST

/* Room for ARRAY_HUGE_MIN bytes of entries or more, made at once (a
 * state loaded, a walk told what to expect), is whole huge pages; trimmed
 * to what a read kept holds, from as much on it gives back the room past
 * them, none of theirs. */
START_TEST(test_trim_keeps_huge_pages_whole)
{
	const size_t huge = ARRAY_HUGE_PAGE;
	const size_t want = ARRAY_HUGE_MIN / sizeof(struct snap_entry) + 64;
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE,
				  .expect = 4 * want};
	struct snapshot *s = NULL;
	char *err = NULL, name[32];

	ck_assert_int_eq(snapshot_open(NULL, &s, NULL), 0);
	ck_assert_int_eq(snapshot_reserve(s, want), 0);
	ck_assert_uint_eq(s->vmap, huge);
	snapshot_free(s);
	s = NULL;
	for (size_t i = 0; i < want; i++) {
		snprintf(name, sizeof(name), "d/%05zu", i);
		tu_write(src, name, "", 0644);
	}
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), 0);
	ck_assert_uint_eq(s->n, want + 1);
	ck_assert_uint_eq(s->vmap, huge);
	ck_assert_uint_eq(s->cap, huge / sizeof(struct snap_entry));
	snprintf(name, sizeof(name), "d/%05zu", want - 1);
	ck_assert_str_eq(s->v[s->n - 1].path, name);
	snapshot_free(s);
}
END_TEST

START_TEST(test_reserved_names_are_skipped_dotfiles_kept)
{
	tu_write(src, "..hidden", "x", 0644);
	tu_write(src, "..dir/f", "x", 0644);
	tu_write(src, ".dotfile", "x", 0644);
	tu_write(src, "d/..inner", "x", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->n, 2);
	must_find(s, ".dotfile");
	must_find(s, "d");
	snapshot_free(s);
}
END_TEST

START_TEST(test_extras_are_taken_apart_from_the_entries)
{
	tu_write(src, "d/f", "x", 0644);
	link_in("/etc/hostname", "out");
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	struct snapshot_extras *x = snapshot_take_extras(s);
	ck_assert_ptr_nonnull(x);
	ck_assert_uint_eq(x->nwarn, 1);
	ck_assert_str_eq(x->warn[0].path, "out");
	ck_assert_int_eq(x->warn[0].kind, SNAP_W_OUTSIDE);
	ck_assert_uint_eq(x->nwatch, 2); /* the root and d */
	/* Gone from the snapshot, whose entries stay. */
	ck_assert_uint_eq(s->extras.nwarn, 0);
	ck_assert_uint_eq(s->extras.nwatch, 0);
	must_find(s, "d/f");
	snapshot_free(s);
	ck_assert_str_eq(x->watch[1].path, "d");
	snapshot_extras_free(x);
}
END_TEST

START_TEST(test_symlink_inside_is_copied_as_content)
{
	tu_write(src, "real/conf", "x", 0640);
	link_in("real/conf", "alias");
	link_in("real", "dirlink");
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	const struct snap_entry *e = must_find(s, "alias");
	ck_assert_int_eq(e->type, SNAP_FILE);
	ck_assert_str_eq(e->src, "real/conf");
	ck_assert_uint_eq(e->mode, 0640);
	e = must_find(s, "dirlink");
	ck_assert_int_eq(e->type, SNAP_DIR);
	e = must_find(s, "dirlink/conf");
	ck_assert_str_eq(e->src, "real/conf");
	ck_assert_uint_eq(s->extras.nwarn, 0);
	snapshot_free(s);
}
END_TEST

START_TEST(test_symlink_outside_is_skipped_with_warning)
{
	tu_write(tmp, "secret", "s", 0600);
	link_in("../secret", "rel");
	link_in("/etc/passwd", "abs");
	link_in("sub/../../secret", "sneaky");
	tu_mkdirs(src, 0755);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->n, 0);
	ck_assert(has_warning(s, "rel", SNAP_W_OUTSIDE));
	ck_assert(has_warning(s, "abs", SNAP_W_OUTSIDE));
	ck_assert(has_warning(s, "sneaky", SNAP_W_OUTSIDE) ||
		  has_warning(s, "sneaky", SNAP_W_DANGLING));
	snapshot_free(s);
}
END_TEST

START_TEST(test_absolute_symlink_into_source_counts_as_inside)
{
	tu_write(src, "f", "x", 0644);
	char *real = realpath(src, NULL);
	char *t = tu_path(real, "f");
	link_in(t, "abs");
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	const struct snap_entry *e = must_find(s, "abs");
	ck_assert_str_eq(e->src, "f");
	snapshot_free(s);
	free(t);
	free(real);
}
END_TEST

/* An absolute target spelled with doubled slashes, ".", or ".." along
 * the source's own real path still leads inside; one that leaves it, to
 * a sibling or an ancestor, does not. */
START_TEST(test_absolute_symlink_spelled_loosely_counts_as_inside)
{
	tu_write(src, "f", "x", 0644);
	char *real = realpath(src, NULL), *base = strrchr(real, '/') + 1, *t;
	char *targets[5], *second = strchr(real + 1, '/');
	ck_assert_ptr_nonnull(second);
	/* Doubled within the source's own path. */
	ck_assert_int_gt(asprintf(&targets[4], "%.*s/%s/f",
				  (int)(second - real), real, second),
			 0);
	ck_assert_int_gt(asprintf(&targets[0], "%s//f", real), 0);
	ck_assert_int_gt(asprintf(&targets[1], "%s/./f", real), 0);
	ck_assert_int_gt(asprintf(&targets[2], "%s/../%s/f", real, base), 0);
	ck_assert_int_gt(asprintf(&targets[3], "%s/.//../%s//./f", real, base),
			 0);
	for (int i = 0; i < 5; i++) {
		char name[8];
		snprintf(name, sizeof(name), "l%d", i);
		link_in(targets[i], name);
		free(targets[i]);
	}
	ck_assert_int_gt(asprintf(&t, "%s/../sibling", real), 0);
	link_in(t, "out1");
	free(t);
	ck_assert_int_gt(asprintf(&t, "%s/..", real), 0);
	link_in(t, "out2");
	free(t);
	char *sibling = tu_path(tmp, "sibling");
	tu_mkdirs(sibling, 0755);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	for (int i = 0; i < 5; i++) {
		char name[8];
		snprintf(name, sizeof(name), "l%d", i);
		const struct snap_entry *e = must_find(s, name);
		ck_assert_str_eq(e->src, "f");
	}
	ck_assert(has_warning(s, "out1", SNAP_W_OUTSIDE));
	ck_assert(has_warning(s, "out2", SNAP_W_OUTSIDE));
	snapshot_free(s);
	free(sibling);
	free(real);
}
END_TEST

START_TEST(test_symlink_loops_are_detected)
{
	link_in("b", "a");
	link_in("a", "b");
	tu_mkdirs(src, 0755);
	char *d = tu_path(src, "d");
	tu_mkdirs(d, 0755);
	free(d);
	link_in("..", "d/up");
	link_in(".", "self");
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert(has_warning(s, "a", SNAP_W_LOOP));
	ck_assert(has_warning(s, "b", SNAP_W_LOOP));
	ck_assert(has_warning(s, "d/up", SNAP_W_LOOP));
	ck_assert(has_warning(s, "self", SNAP_W_LOOP));
	snapshot_free(s);
}
END_TEST

START_TEST(test_follow_mode_follows_outside_and_still_detects_loops)
{
	tu_write(tmp, "archive/cert1.pem", "c1", 0644);
	char *arch = tu_path(tmp, "archive");
	tu_mkdirs(src, 0755);
	link_in("../archive/cert1.pem", "cert.pem");
	link_in(arch, "arch");
	link_in(".", "self");
	struct snapshot *s = take(SNAP_LINKS_FOLLOW);
	const struct snap_entry *e = must_find(s, "cert.pem");
	ck_assert(e->flags & SNAP_F_FOLLOW);
	must_find(s, "arch/cert1.pem");
	ck_assert(has_warning(s, "self", SNAP_W_LOOP));
	snapshot_free(s);
	free(arch);
}
END_TEST

START_TEST(test_skip_mode_ignores_links)
{
	tu_write(src, "f", "x", 0644);
	link_in("f", "alias");
	struct snapshot *s = take(SNAP_LINKS_SKIP);
	ck_assert_uint_eq(s->n, 1);
	ck_assert(has_warning(s, "alias", SNAP_W_LINK));
	snapshot_free(s);
}
END_TEST

START_TEST(test_dangling_link_warns)
{
	link_in("nowhere", "dangling");
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert(has_warning(s, "dangling", SNAP_W_DANGLING));
	ck_assert_uint_eq(s->n, 0);
	snapshot_free(s);
}
END_TEST

START_TEST(test_special_files_are_skipped_without_blocking)
{
	char *fifo = tu_path(src, "fifo");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	char *sock = tu_path(src, "sock");
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	ck_assert_uint_lt(strlen(sock), sizeof(sa.sun_path));
	strcpy(sa.sun_path, sock);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	link_in("fifo", "fifolink");
	tu_write(src, "ok", "x", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->n, 1);
	ck_assert(has_warning(s, "fifo", SNAP_W_SPECIAL));
	ck_assert(has_warning(s, "sock", SNAP_W_SPECIAL));
	ck_assert(has_warning(s, "fifolink", SNAP_W_SPECIAL));
	snapshot_free(s);
	close(fd);
	free(fifo);
	free(sock);
}
END_TEST

START_TEST(test_kubernetes_volume_as_source)
{
	/* The layout a ConfigMap volume has: visible links into ..data. */
	tu_write(src, "..2026_01_01_00_00_00.1/app.conf", "app", 0644);
	tu_write(src, "..2026_01_01_00_00_00.1/tls/cert.pem", "cert", 0600);
	link_in("..2026_01_01_00_00_00.1", "..data");
	link_in("..data/app.conf", "app.conf");
	link_in("..data/tls", "tls");
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->n, 3);
	const struct snap_entry *e = must_find(s, "app.conf");
	ck_assert_str_eq(e->src, "..2026_01_01_00_00_00.1/app.conf");
	must_find(s, "tls");
	e = must_find(s, "tls/cert.pem");
	ck_assert_uint_eq(e->mode, 0600);
	ck_assert_uint_eq(s->extras.nwarn, 0);
	/* The real directories behind the links are watched. */
	int found = 0;
	for (size_t i = 0; i < s->extras.nwatch; i++)
		found += strcmp(s->extras.watch[i].path, "..2026_01_01_00_00_00.1/tls") == 0 ||
			 strcmp(s->extras.watch[i].path, "..2026_01_01_00_00_00.1") == 0;
	ck_assert_int_eq(found, 2);
	snapshot_free(s);
}
END_TEST

START_TEST(test_a_volume_swapped_during_the_walk_never_mixes_versions)
{
	/* Two versions of a volume, ..data flipped between them without
	 * pause while snapshots are taken: each snapshot must come from one
	 * version only, or be refused as torn (-EAGAIN). */
	const char *gens[] = {"..gen_a", "..gen_b"};
	for (int g = 0; g < 2; g++)
		for (int i = 0; i < 40; i++) {
			char n[64];
			snprintf(n, sizeof(n), "%s/f%02d", gens[g], i);
			tu_write(src, n, gens[g], 0644);
		}
	link_in("..gen_a", "..data");
	for (int i = 0; i < 40; i++) {
		char n[32], t[48];
		snprintf(n, sizeof(n), "f%02d", i);
		snprintf(t, sizeof(t), "..data/f%02d", i);
		link_in(t, n);
	}
	pid_t flipper = fork();
	ck_assert_int_ge(flipper, 0);
	if (flipper == 0) {
		char *tmpl = tu_path(src, "..data_tmp"), *data = tu_path(src, "..data");
		for (int k = 0; getppid() != 1; k++) {
			unlink(tmpl);
			if (symlink(gens[k % 2], tmpl) == 0)
				rename(tmpl, data);
		}
		_exit(0);
	}
	int whole = 0, torn = 0;
	for (int k = 0; k < 300; k++) {
		struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE};
		struct snapshot *s = NULL;
		char *err = NULL;
		int rc = snapshot_take(src, &o, &s, &err);
		free(err);
		if (rc == -EAGAIN) {
			torn++;
			continue;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(s->n, 40);
		for (size_t i = 1; i < s->n; i++)
			ck_assert_msg(strncmp(s->v[i].src, s->v[0].src, 7) == 0,
				      "snapshot %d mixes %s and %s", k, s->v[0].src,
				      s->v[i].src);
		whole++;
		snapshot_free(s);
	}
	kill(flipper, SIGKILL);
	waitpid(flipper, NULL, 0);
	fprintf(stderr, "swapped volume: %d whole snapshots, %d refused as torn\n",
		whole, torn);
	ck_assert_int_gt(torn, 0); /* the swaps did land during walks */
}
END_TEST

/* A list of valid exclude patterns, NULL-terminated. */
static struct ignore *excludes(const char *const *pats)
{
	struct ignore *ig = ignore_new();
	ck_assert_ptr_nonnull(ig);
	for (size_t i = 0; pats[i]; i++)
		ck_assert_int_eq(ignore_add(ig, pats[i], NULL), 0);
	return ig;
}

static struct snapshot *take_excluding(enum snap_links mode,
				       const struct ignore *ig)
{
	struct snapshot_opts o = {.links = mode, .exclude = ig};
	struct snapshot *s = NULL;
	char *err = NULL;
	int rc = snapshot_take(src, &o, &s, &err);
	ck_assert_msg(rc == 0, "snapshot: %s", err);
	return s;
}

static bool watched(const struct snapshot *s, const char *dir)
{
	for (size_t i = 0; i < s->extras.nwatch; i++)
		if (strcmp(s->extras.watch[i].path, dir) == 0)
			return true;
	return false;
}

START_TEST(test_excludes_match_names_and_paths)
{
	tu_write(src, "a.swp", "x", 0644);
	tu_write(src, "d/b.swp", "x", 0644);
	tu_write(src, "d/keep~", "x", 0644);
	tu_write(src, ".git/HEAD", "x", 0644);
	tu_write(src, "logs/x.log", "x", 0644);
	tu_write(src, "deep/logs/y.log", "x", 0644);
	tu_write(src, "keep.conf", "x", 0644);
	struct ignore *ig = excludes(
		(const char *const[]){"*.swp", "*~", ".git", "logs/*.log", NULL});
	struct snapshot *s = take_excluding(SNAP_LINKS_INSIDE, ig);
	ck_assert_ptr_null(snapshot_find(s, "a.swp"));
	ck_assert_ptr_null(snapshot_find(s, "d/b.swp"));
	ck_assert_ptr_null(snapshot_find(s, "d/keep~"));
	ck_assert_ptr_null(snapshot_find(s, ".git"));
	ck_assert(!watched(s, ".git"));
	ck_assert_ptr_null(snapshot_find(s, "logs/x.log"));
	must_find(s, "deep/logs/y.log");
	must_find(s, "keep.conf");
	snapshot_free(s);
	ignore_free(ig);
}
END_TEST

START_TEST(test_excluded_directories_are_not_entered)
{
	tu_write(src, "build/out.o", "x", 0644);
	tu_write(src, "build/keep", "x", 0644);
	tu_write(src, "sub/build", "a file, not a directory", 0644);
	tu_write(src, "x.tmp", "x", 0644);
	tu_write(src, "keep.tmp", "x", 0644);
	struct ignore *ig = excludes((const char *const[]){
		"build/", "!build/keep", "*.tmp", "!keep.tmp", NULL});
	struct snapshot *s = take_excluding(SNAP_LINKS_INSIDE, ig);
	ck_assert_ptr_null(snapshot_find(s, "build"));
	ck_assert_ptr_null(snapshot_find(s, "build/keep"));
	ck_assert(!watched(s, "build"));
	must_find(s, "sub/build");
	ck_assert_ptr_null(snapshot_find(s, "x.tmp"));
	must_find(s, "keep.tmp");
	snapshot_free(s);
	ignore_free(ig);
}
END_TEST

/* A link is a directory for the patterns when it is followed to one. */
START_TEST(test_links_to_directories_are_directories_to_excludes)
{
	char *outside = tu_path(tmp, "outside");
	tu_write(outside, "f", "x", 0644);
	tu_write(src, "real/f", "x", 0644);
	link_in("real", "dirlink");
	link_in("real/f", "filelink");
	link_in(outside, "outdir");
	struct ignore *ig = excludes((const char *const[]){
		"dirlink/", "filelink/", "outdir/", NULL});
	struct snapshot *s = take_excluding(SNAP_LINKS_INSIDE, ig);
	must_find(s, "real/f");
	ck_assert_ptr_null(snapshot_find(s, "dirlink"));
	ck_assert_ptr_null(snapshot_find(s, "dirlink/f"));
	must_find(s, "filelink");
	snapshot_free(s);
	s = take_excluding(SNAP_LINKS_FOLLOW, ig);
	ck_assert_ptr_null(snapshot_find(s, "dirlink"));
	ck_assert_ptr_null(snapshot_find(s, "outdir"));
	ck_assert_ptr_null(snapshot_find(s, "outdir/f"));
	must_find(s, "filelink");
	snapshot_free(s);
	ignore_free(ig);
	free(outside);
}
END_TEST

/* An editor's lock link (".#name" -> nowhere) is excluded, not reported;
 * one excluded only as a directory is a dangling link all the same. */
START_TEST(test_excluded_links_are_not_read)
{
	link_in("user@host.1234", ".#app.conf");
	link_in("nowhere", "gone");
	struct ignore *ig =
		excludes((const char *const[]){".#*", "gone/", NULL});
	struct snapshot *s = take_excluding(SNAP_LINKS_INSIDE, ig);
	ck_assert_uint_eq(s->n, 0);
	ck_assert_uint_eq(s->extras.nwarn, 1);
	ck_assert(has_warning(s, "gone", SNAP_W_DANGLING));
	snapshot_free(s);
	ignore_free(ig);
}
END_TEST

START_TEST(test_watch_list_covers_every_directory)
{
	tu_write(src, "a/b/c/f", "x", 0644);
	tu_write(src, "x/f", "x", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	const char *want[] = {"", "a", "a/b", "a/b/c", "x"};
	ck_assert_uint_eq(s->extras.nwatch, 5);
	for (size_t i = 0; i < 5; i++) {
		int ok = 0;
		for (size_t k = 0; k < s->extras.nwatch; k++)
			ok |= strcmp(s->extras.watch[k].path, want[i]) == 0;
		ck_assert_msg(ok, "%s not watched", want[i]);
	}
	snapshot_free(s);
}
END_TEST

START_TEST(test_missing_source_names_the_path)
{
	struct snapshot *s = NULL;
	char *err = NULL;
	char *p = tu_path(tmp, "nope");
	ck_assert_int_eq(snapshot_take(p, NULL, &s, &err), -ENOENT);
	ck_assert_msg(strstr(err, p) != NULL, "%s", err);
	free(err);
	free(p);
}
END_TEST

START_TEST(test_metadata_recorded)
{
	tu_write(src, "f", "hello", 0640);
	char *f = tu_path(src, "f");
	struct stat st;
	ck_assert_int_eq(stat(f, &st), 0);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	const struct snap_entry *e = must_find(s, "f");
	ck_assert_uint_eq(e->size, 5);
	ck_assert_uint_eq(e->mode, 0640);
	ck_assert_uint_eq(e->ino, st.st_ino);
	ck_assert_int_eq(e->ctime_ns, clock_ts_ns(&st.st_ctim));
	ck_assert_int_eq(e->mtime_ns, clock_ts_ns(&st.st_mtim));
	snapshot_free(s);
	free(f);
}
END_TEST

START_TEST(test_odd_names_survive)
{
	const char *names[] = {"with space", "new\nline", "\xff\xfe-bytes",
			       "tab\there"};
	for (size_t i = 0; i < 4; i++)
		tu_write(src, names[i], names[i], 0644);
	char name255[256];
	memset(name255, 'n', 255);
	name255[255] = '\0';
	tu_write(src, name255, "long", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->n, 5);
	for (size_t i = 0; i < 4; i++)
		must_find(s, names[i]);
	must_find(s, name255);
	snapshot_free(s);
}
END_TEST

START_TEST(test_deep_tree_stops_at_the_path_limit)
{
	/* 12,000 levels (on tmpfs: a disk takes its time over so many
	 * directories): far past the 4096-byte path limit.  The walk does
	 * not recurse, stops at the limit and names the path. */
	char *fast = tu_mkdtemp_fast();
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE};
	struct snapshot *s = NULL;
	char *err = NULL;
	tu_mkdeep(fast, "d", 12000);
	int rc = snapshot_take(fast, &o, &s, &err);
	tu_rmdeep(fast, "d");
	ck_assert_int_eq(rc, -ENAMETOOLONG);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, "longer than 4096 bytes: d/d/d/"), "%s", err);
	free(err);
	err = NULL;
	/* "d/" 2047 times and "bottom": 4100 bytes, one level too many. */
	tu_mkdeep(fast, "d", 2047);
	ck_assert_int_eq(snapshot_take(fast, &o, &s, &err), -ENAMETOOLONG);
	tu_rmdeep(fast, "d");
	free(err);
	err = NULL;
	tu_mkdeep(fast, "d", 2045);
	rc = snapshot_take(fast, &o, &s, &err);
	tu_rmdeep(fast, "d");
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_uint_eq(s->n, 2046);
	snapshot_free(s);
	tu_rmrf(fast);
	free(fast);
}
END_TEST

/* Paths may hold SNAPSHOT_PATH_BYTES an entry of max_files on average:
 * a user's tree of paths near the 4096-byte limit would otherwise cost
 * root 4 KiB an entry in memory and in the state file.  A refresh keeps
 * the count as a full walk makes it. */
START_TEST(test_paths_are_bounded_with_max_files)
{
	char a[201], b[201], rel[700];
	memset(a, 'a', 200);
	memset(b, 'b', 200);
	a[200] = b[200] = '\0';
	for (int i = 0; i < 2; i++) {
		snprintf(rel, sizeof(rel), "%s/%s/%s%d", a, b, a, i);
		tu_write_deep(src, rel, "x");
	}
	/* 201 + 402 + 2 x 604 bytes of paths: within 10 x 256. */
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE, .max_files = 10};
	struct snapshot *s = NULL, *inc = NULL, *full = NULL;
	char *err = NULL;
	ck_assert_msg(snapshot_take(src, &o, &s, &err) == 0, "%s", err);
	ck_assert_uint_eq(s->path_bytes, 201 + 402 + 2 * 604);
	/* Two more: past it. */
	for (int i = 2; i < 4; i++) {
		snprintf(rel, sizeof(rel), "%s/%s/%s%d", a, b, a, i);
		tu_write_deep(src, rel, "x");
	}
	ck_assert_int_eq(snapshot_take(src, &o, &full, &err), -EFBIG);
	ck_assert_msg(strstr(err, "paths of more than 2560 bytes in all (256 a "
				  "file on average, of max_files)"),
		      "%s", err);
	/* A refresh that would pass it gives way to a full walk. */
	snprintf(rel, sizeof(rel), "%s/%s", a, b);
	char *dirs[] = {rel};
	ck_assert_int_eq(snapshot_refresh(s, NULL, dirs, 1, &o, &inc, &err),
			 -ESTALE);
	/* Within a larger bound (a refresh counts what it read again on
	 * top of what it replaces, until the merge), one removed and one
	 * changed, refreshed: counted as a walk counts them. */
	o.max_files = 20;
	snprintf(rel, sizeof(rel), "%s/%s/%s3", a, b, a);
	char *gone = tu_path(src, rel);
	ck_assert_int_eq(unlink(gone), 0);
	snprintf(rel, sizeof(rel), "%s/%s/%s0", a, b, a);
	tu_write(src, rel, "changed", 0644);
	snprintf(rel, sizeof(rel), "%s/%s", a, b);
	ck_assert_msg(snapshot_refresh(s, NULL, dirs, 1, &o, &inc, &err) == 0,
		      "%s", err);
	ck_assert_msg(snapshot_take(src, &o, &full, &err) == 0, "%s", err);
	ck_assert_uint_eq(full->path_bytes, 201 + 402 + 3 * 604);
	ck_assert_uint_eq(inc->path_bytes, full->path_bytes);
	snapshot_free(full);
	snapshot_free(inc);
	snapshot_free(s);
	free(gone);
	free(err);
}
END_TEST

START_TEST(test_limits_on_files_and_bytes)
{
	for (int i = 0; i < 5; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		tu_write(src, n, "0123456789", 0644);
	}
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE, .max_files = 4};
	struct snapshot *s = NULL;
	char *err = NULL;
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), -EFBIG);
	ck_assert_msg(strstr(err, "more than 4 files and directories "
				  "(max_files)"),
		      "%s", err);
	o.max_files = 5;
	o.max_bytes = 49;
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), -EFBIG);
	ck_assert_msg(strstr(err, "more than 49 bytes in files (max_bytes)"),
		      "%s", err);
	o.max_bytes = 50;
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), 0);
	ck_assert_uint_eq(s->bytes, 50);
	snapshot_free(s);
	free(err);
}
END_TEST

/* Names a read leaves out count as well: a chain of directories that
 * link twice to the one below doubles them at each level, and neither
 * the time nor the warnings (memory) of such a read may grow past
 * max_files with it. */
START_TEST(test_names_left_out_are_bounded_with_max_files)
{
	tu_write(src, "a", "x", 0644);
	for (int i = 0; i < 30; i++) {
		char n[32];
		snprintf(n, sizeof(n), "l0/..x%02d", i);
		tu_write(src, n, "", 0644);
		snprintf(n, sizeof(n), "l0/gone%02d", i);
		link_in("nowhere", n);
	}
	for (int i = 1; i <= 3; i++) {
		char d[16], l[16];
		snprintf(d, sizeof(d), "../l%d", i - 1);
		snprintf(l, sizeof(l), "l%d", i);
		char *dir = tu_path(src, l);
		tu_mkdirs(dir, 0755);
		free(dir);
		snprintf(l, sizeof(l), "l%d/x", i);
		link_in(d, l);
		snprintf(l, sizeof(l), "l%d/y", i);
		link_in(d, l);
	}
	/* 60 names left out in l0, reached 1 + 2 + 4 + 8 ways: 900. */
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE, .max_files = 899};
	struct snapshot *s = NULL;
	char *err = NULL;
	ck_assert_int_eq(snapshot_take(src, &o, &s, &err), -EFBIG);
	ck_assert_msg(strstr(err, "more than 899 names left out (skipped or "
				  "excluded; max_files), at "),
		      "%s", err);
	free(err);
	err = NULL;
	o.max_files = 900;
	ck_assert_msg(snapshot_take(src, &o, &s, &err) == 0, "%s", err);
	ck_assert_uint_eq(s->unlisted, 900);
	ck_assert_uint_eq(s->extras.nwarn, 900);
	snapshot_free(s);
	/* Past SNAPSHOT_WARN_MAX, warnings are counted, not kept. */
	for (int i = 0; i < 30; i++) {
		char n[32];
		snprintf(n, sizeof(n), "l0/more%02d", i);
		link_in("nowhere", n);
	}
	o.max_files = 0;
	ck_assert_msg(snapshot_take(src, &o, &s, &err) == 0, "%s", err);
	ck_assert_uint_eq(s->extras.nwarn, SNAPSHOT_WARN_MAX);
	ck_assert_uint_eq(s->extras.nwarn_more, 90 * 15 - SNAPSHOT_WARN_MAX);
	snapshot_free(s);
	free(err);
}
END_TEST

START_TEST(test_reserved_names_warn_unless_a_layout_of_their_own)
{
	tu_write(src, "..hidden", "x", 0644);
	tu_write(src, "..data/f", "x", 0644);
	tu_write(src, "..2026_11_25_16_04_05.123456789/f", "x", 0644);
	tu_write(src, "..atomsync", "x", 0644);
	tu_write(src, "d/..inner", "x", 0644);
	struct snapshot *s = take(SNAP_LINKS_INSIDE);
	ck_assert(has_warning(s, "..hidden", SNAP_W_RESERVED));
	ck_assert(has_warning(s, "d/..inner", SNAP_W_RESERVED));
	ck_assert_uint_eq(s->extras.nwarn, 2);
	snapshot_free(s);
}
END_TEST

START_TEST(test_follow_into_named_directories_only)
{
	/* certbot: live/NAME/cert.pem -> ../../archive/NAME/cert1.pem */
	char *le = tu_path(tmp, "letsencrypt");
	tu_write(le, "archive/example.org/cert1.pem", "CERT\n", 0644);
	tu_write(le, "archive/example.org/privkey1.pem", "KEY\n", 0600);
	tu_write(le, "secret/shadow", "root:x\n", 0600);
	char *live = tu_path(le, "live/example.org");
	tu_mkdirs(live, 0755);
	free(src);
	src = strdup(live);
	link_in("../../archive/example.org/cert1.pem", "cert.pem");
	link_in("../../archive/example.org/privkey1.pem", "privkey.pem");
	link_in("../../archive", "all");
	link_in("../../archive/../secret/shadow", "sneaky");
	char *archive = tu_path(le, "archive");
	char *into[] = {archive};
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE,
				  .follow_into = into, .nfollow_into = 1};
	struct snapshot *s = NULL;
	char *err = NULL;
	ck_assert_msg(snapshot_take(src, &o, &s, &err) == 0, "%s", err);
	const struct snap_entry *e = must_find(s, "cert.pem");
	ck_assert(e->flags & SNAP_F_EXTERNAL);
	must_find(s, "privkey.pem");
	must_find(s, "all/example.org/cert1.pem");
	ck_assert_ptr_null(snapshot_find(s, "sneaky"));
	ck_assert(has_warning(s, "sneaky", SNAP_W_OUTSIDE));
	/* Where they lead is watched. */
	int watched = 0;
	for (size_t i = 0; i < s->extras.nwatch; i++)
		watched |= strstr(s->extras.watch[i].path, "archive/example.org") != NULL;
	ck_assert(watched);
	snapshot_free(s);
	/* Without it, the links lead outside and are skipped. */
	s = take(SNAP_LINKS_INSIDE);
	ck_assert_ptr_null(snapshot_find(s, "cert.pem"));
	ck_assert(has_warning(s, "cert.pem", SNAP_W_OUTSIDE));
	snapshot_free(s);
	free(archive);
	free(live);
	free(le);
}
END_TEST

START_TEST(test_followed_link_into_the_target_is_skipped)
{
	/* symlinks = follow and a link up to a directory that holds the
	 * target: the target must not be copied into itself. */
	char *dst = tu_path(tmp, "dst");
	tu_write(dst, "..data/f", "x", 0644);
	tu_write(src, "f", "x", 0644);
	link_in("..", "up");
	/* A file in it, through ..data: no directory on the way is the
	 * target, but the target is on the way. */
	char *deep = tu_path(dst, "..data/f");
	link_in(deep, "deep");
	free(deep);
	struct stat st;
	ck_assert_int_eq(stat(dst, &st), 0);
	struct snapshot_opts o = {.links = SNAP_LINKS_FOLLOW,
				  .avoid_dev = (uint64_t)st.st_dev,
				  .avoid_ino = (uint64_t)st.st_ino};
	struct snapshot *s = NULL;
	char *err = NULL;
	ck_assert_msg(snapshot_take(src, &o, &s, &err) == 0, "%s", err);
	ck_assert(has_warning(s, "up/dst", SNAP_W_TARGET));
	ck_assert_ptr_null(snapshot_find(s, "up/dst"));
	ck_assert(has_warning(s, "up/src", SNAP_W_LOOP));
	ck_assert(has_warning(s, "deep", SNAP_W_TARGET));
	ck_assert_ptr_null(snapshot_find(s, "deep"));
	ck_assert_ptr_nonnull(snapshot_find(s, "f"));
	snapshot_free(s);
	free(dst);
}
END_TEST

START_TEST(test_unreadable_directories_are_all_listed)
{
	ck_assert_msg(tu_can_setuid(), "this test needs root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	tu_write(src, "a/f", "x", 0644);
	tu_write(src, "b/f", "x", 0644);
	tu_write(src, "c/f", "x", 0644);
	char *a = tu_path(src, "a"), *c = tu_path(src, "c");
	ck_assert_int_eq(chmod(a, 0700), 0);
	ck_assert_int_eq(chmod(c, 0700), 0);
	/* Read as another user (effective ids only, given back after): a and
	 * c cannot be. */
	struct snapshot *s = NULL;
	ck_assert_int_eq(setegid(65534), 0);
	ck_assert_int_eq(seteuid(65534), 0);
	int rc = snapshot_take(src, NULL, &s, NULL);
	ck_assert_int_eq(seteuid(0), 0);
	ck_assert_int_eq(setegid(0), 0);
	ck_assert_int_eq(rc, 0);
	char *all = log_list_join(&s->problems, ", ");
	ck_assert_uint_eq(log_list_count(&s->problems), 2);
	ck_assert_msg(strstr(all, "a (Permission denied)") &&
			      strstr(all, "c (Permission denied)"),
		      "%s", all);
	ck_assert_ptr_nonnull(snapshot_find(s, "b/f"));
	free(all);
	snapshot_free(s);
	free(a);
	free(c);
}
END_TEST

/* ---- refresh: only the directories that changed read again ---- */

static int cmp_watch(const void *x, const void *y)
{
	const struct snap_dir *a = x, *b = y;
	int c = strcmp(a->path, b->path);

	return c ? c : a->ino < b->ino ? -1 : a->ino > b->ino;
}

/* The watches of `s`, sorted and each once, as a watcher takes them. */
static struct snap_dir *watch_set(const struct snapshot *s, size_t *n)
{
	size_t k = 0, m = s->extras.nwatch;
	struct snap_dir *v = malloc((m ? m : 1) * sizeof(*v));

	ck_assert_ptr_nonnull(v);
	if (m)
		memcpy(v, s->extras.watch, m * sizeof(*v));
	qsort(v, m, sizeof(*v), cmp_watch);
	for (size_t i = 0; i < m; i++)
		if (k == 0 || cmp_watch(&v[k - 1], &v[i]) != 0)
			v[k++] = v[i];
	*n = k;
	return v;
}

/* The same watches as a full walk's, in its order; once a link was met
 * (`indirect`), the same set: the next read is a full walk's anyway. */
static void assert_same_watches(const struct snapshot *a,
				const struct snapshot *b, unsigned round)
{
	size_t na = a->extras.nwatch, nb = b->extras.nwatch;
	struct snap_dir *va = a->extras.watch, *vb = b->extras.watch;

	if (a->indirect) {
		va = watch_set(a, &na);
		vb = watch_set(b, &nb);
	}
	for (size_t i = 0; i < na || i < nb; i++)
		if (i == na || i == nb ||
		    !(strcmp(va[i].path, vb[i].path) == 0 &&
		      va[i].ino == vb[i].ino))
			ck_abort_msg("round %u: watch %s, a walk has %s", round,
				     i < na ? va[i].path : "none",
				     i < nb ? vb[i].path : "none");
	if (a->indirect) {
		free(va);
		free(vb);
	}
}

/* Every field a full walk records, compared. */
static void assert_same_snapshot(const struct snapshot *a,
				 const struct snapshot *b, unsigned round)
{
	if (!(a->n == b->n))
			ck_abort_msg("round %u: %zu entries, a walk has %zu",
		      round, a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct snap_entry *x = &a->v[i], *y = &b->v[i];
		if (!(strcmp(x->path, y->path) == 0))
			ck_abort_msg("round %u: entry %zu is %s, a walk has %s", round,
			      i, x->path, y->path);
		if (!(x->type == y->type && x->mode == y->mode &&
				      x->size == y->size && x->ino == y->ino &&
				      x->dev == y->dev &&
				      ((x->flags ^ y->flags) & ~SNAP_F_RACY) == 0 &&
				      x->mtime_ns == y->mtime_ns &&
				      x->ctime_ns == y->ctime_ns &&
				      (x->src == NULL) == (y->src == NULL)))
			ck_abort_msg("round %u: %s differs from a walk's (size %llu/%llu "
			      "ino %llu/%llu mode %o/%o)", round, x->path,
			      (unsigned long long)x->size,
			      (unsigned long long)y->size,
			      (unsigned long long)x->ino,
			      (unsigned long long)y->ino, x->mode, y->mode);
	}
	if (a->bytes != b->bytes)
		ck_abort_msg("round %u: bytes differ", round);
	if (!(a->extras.nwarn == b->extras.nwarn))
			ck_abort_msg("round %u: %zu warnings, a walk has %zu", round,
		      a->extras.nwarn, b->extras.nwarn);
	for (size_t i = 0; i < a->extras.nwarn; i++)
		if (!(strcmp(a->extras.warn[i].path,
				     b->extras.warn[i].path) == 0 &&
				      a->extras.warn[i].kind ==
					      b->extras.warn[i].kind))
			ck_abort_msg("round %u: warning %s, a walk has %s", round,
			      a->extras.warn[i].path, b->extras.warn[i].path);
	assert_same_watches(a, b, round);
}

static unsigned long rrng;

static unsigned rrnd(unsigned n)
{
	rrng = rrng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rrng >> 33) % n);
}

/* The directories a watcher reports a change in: the nearest one above
 * a changed path that the last snapshot has (only those are watched; a
 * directory made since shows as a change of the one it was made in), and
 * each watched directory that is itself removed or moved.  With `names`,
 * as the daemon hears it: the name in that directory (the changed path,
 * or the directory made since that holds it) rather than the directory,
 * but for a directory that reports itself. */
struct dirty {
	char *v[1024];
	size_t n;
	bool names;
	char *nv[1024];
	size_t nn;
};

static void dirty_push(struct dirty *d, char *dir)
{
	if (d->n == 1024)
		ck_abort_msg("too many changes");
	d->v[d->n++] = dir;
}

static void dirty_add(struct dirty *d, const struct snapshot *prev,
		      const char *rel)
{
	char *dir = strdup(rel);
	size_t below = strlen(rel);

	for (;;) {
		char *sl = strrchr(dir, '/');
		if (sl)
			*sl = '\0';
		else
			dir[0] = '\0';
		const struct snap_entry *e = snapshot_find(prev, dir);
		if (dir[0] == '\0' || (e && e->type == SNAP_DIR))
			break;
		below = strlen(dir);
	}
	if (!d->names) {
		dirty_push(d, dir);
		return;
	}
	if (d->nn == 1024)
		ck_abort_msg("too many changes");
	d->nv[d->nn++] = strndup(rel, below);
	free(dir);
}

static void dirty_free(struct dirty *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	for (size_t i = 0; i < d->nn; i++)
		free(d->nv[i]);
}

/* `rel` goes: every watched directory there reports itself gone. */
static void dirty_gone(struct dirty *d, const struct snapshot *prev,
		       const char *rel)
{
	size_t n = strlen(rel);

	dirty_add(d, prev, rel);
	for (size_t i = 0; i < prev->n; i++)
		if (prev->v[i].type == SNAP_DIR &&
		    strncmp(prev->v[i].path, rel, n) == 0 &&
		    (prev->v[i].path[n] == '\0' || prev->v[i].path[n] == '/'))
			dirty_push(d, strdup(prev->v[i].path));
}

/* A name among those the random changes use: few, so they collide. */
static char *random_path(unsigned depth)
{
	static const char *names[] = {"a", "b", "c", "d.txt", "e", "a.b"};
	char buf[256] = "";
	for (unsigned i = 0; i <= depth; i++) {
		if (i)
			strcat(buf, "/");
		strcat(buf, names[rrnd(6)]);
	}
	return strdup(buf);
}

static void write_file(const char *path, unsigned len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			      O_NONBLOCK, 0644); /* never wait on a FIFO */

	if (fd >= 0) {
		ck_assert_int_ge(write(fd, "xyz", len), 0);
		close(fd);
	}
}

/* A directory replaced by another under the same name (often with the
 * same inode number: only the events tell them apart). */
static void replace_dir(struct dirty *d, const struct snapshot *prev,
			const char *rel, const char *p)
{
	char *b = tu_path(p, "b"), *c = tu_path(b, "c");

	dirty_gone(d, prev, rel);
	tu_rmrf(p);
	if (mkdir(p, 0755) == 0 && mkdir(b, 0755) == 0)
		write_file(c, 1);
	free(b);
	free(c);
}

/* One random change below src; the directories it touches go to d. */
static void random_change(struct dirty *d, const struct snapshot *prev)
{
	char *rel = random_path(rrnd(3)), *to = random_path(rrnd(3));
	char *p = tu_path(src, rel), *q = tu_path(src, to);

	switch (rrnd(8)) {
	case 0: /* a file written, or rewritten */
		write_file(p, rrnd(4));
		dirty_add(d, prev, rel);
		break;
	case 1:
		(void)mkdir(p, 0755);
		dirty_add(d, prev, rel);
		break;
	case 2: /* gone, with all it holds */
		dirty_gone(d, prev, rel);
		tu_rmrf(p);
		break;
	case 3: /* moved, a directory with its subtree, maybe over an
		   empty one */
		dirty_gone(d, prev, to);
		dirty_gone(d, prev, rel);
		(void)rename(p, q);
		break;
	case 4: /* a directory's own watch reports it too */
		(void)chmod(p, rrnd(2) ? 0700 : 0755);
		dirty_gone(d, prev, rel);
		break;
	case 5:
		replace_dir(d, prev, rel, p);
		break;
	case 6:
		(void)mkfifo(p, 0644);
		dirty_add(d, prev, rel);
		break;
	default: { /* a reserved name: a warning */
		char *r = tu_path(src, "..x");
		write_file(r, 1);
		dirty_add(d, prev, "..x");
		free(r);
	}
	}
	free(rel);
	free(to);
	free(p);
	free(q);
}

/* A merge of a refresh with the snapshot it was made from, as the writer
 * and the state make one: each comparison the refresh's runs answer is
 * the one the paths give. */
static void assert_merge_cmp(const struct snapshot *s,
			     const struct snapshot *l, unsigned round)
{
	size_t i = 0, j = 0, run = 0, known = 0, upto = 0;

	ck_assert(s->base_id == l->id && l->id != 0);
	while (i < s->n && j < l->n) {
		int c = snapshot_merge_cmp(s, i, l, j, &run);
		int p = snapshot_path_cmp(s->v[i].path, l->v[j].path);
		if (!((c < 0) == (p < 0) && (c > 0) == (p > 0)))
			ck_abort_msg("round %u: %s against %s: %d, paths say %d",
				     round, s->v[i].path, l->v[j].path, c, p);
		known += c == 0;
		/* What snapshot_copied() says are copies are: the same path
		 * and metadata, entry for entry (each looked at once). */
		size_t run2 = 0, k = snapshot_copied(s, i, l, j, &run2);
		for (size_t m = upto > i ? upto - i : 0; m < k; m++) {
			const struct snap_entry *x = &s->v[i + m], *y = &l->v[j + m];
			if (!(strcmp(x->path, y->path) == 0 &&
			      x->type == y->type && x->mode == y->mode &&
			      x->size == y->size && x->ino == y->ino &&
			      x->mtime_ns == y->mtime_ns &&
			      x->ctime_ns == y->ctime_ns && x->flags == y->flags))
				ck_abort_msg("round %u: %s told a copy of %s",
					     round, x->path, y->path);
		}
		upto = i + k > upto ? i + k : upto;
		ck_assert(k == 0 || c == 0);
		i += c <= 0;
		j += c >= 0;
	}
	size_t copied = 0, copies = 0;
	for (size_t k = 0; k < s->nruns; k++)
		copied += s->runs[k].n;
	ck_assert_uint_le(copied, known);
	/* snapshot_is_copy() says so of exactly the entries in runs, each
	 * of whose paths the snapshot it was made from has. */
	run = 0;
	for (size_t k = 0; k < s->n; k++) {
		if (!snapshot_is_copy(s, k, l, &run))
			continue;
		copies++;
		if (snapshot_find(l, s->v[k].path) == NULL)
			ck_abort_msg("round %u: %s told a copy", round,
				     s->v[k].path);
	}
	ck_assert_uint_eq(copies, copied);
}

/* Files in two directories out of the random changes' way, one sorting
 * before their names and one after: enough entries for a record kept in
 * a store (a megabyte of them), which a refresh then views. */
static void make_bulk(void)
{
	static const char *dirs[] = {"0bulk", "zbulk"};
	for (size_t d = 0; d < 2; d++) {
		char *dir = tu_path(src, dirs[d]);
		ck_assert_int_eq(mkdir(dir, 0755), 0);
		for (int f = 0; f < 6000; f++) {
			char name[32];
			snprintf(name, sizeof(name), "f%05d", f);
			char *p = tu_path(dir, name);
			write_file(p, 1);
			free(p);
		}
		free(dir);
	}
}

/* What snapshot_same_from() says is the same is, byte for byte; how
 * many it says. */
static size_t assert_same_known(const struct snapshot *s,
				const struct snapshot *prev, unsigned round)
{
	struct snap_same same;
	size_t known = 0;

	snapshot_same_init(&same, s, prev);
	for (size_t i = 0; i < s->n && i < prev->n;) {
		size_t k = snapshot_same_from(&same, i);
		for (size_t m = i; m < i + k; m++)
			if (memcmp(&s->v[m], &prev->v[m], sizeof(s->v[m])))
				ck_abort_msg("round %u: entry %zu, %s, told "
					     "the same as %s", round, m,
					     s->v[m].path, prev->v[m].path);
		known += k;
		i += k ? k : 1;
	}
	snapshot_same_fini(&same);
	return known;
}

/* Rounds of random changes, each read again by a refresh of the last
 * read and compared with a full walk.  `stored`: the last read replaced
 * as the daemon replaces it (snapshot_supersede()), so that each
 * refresh views it: the view must leave it as it was. */
static void random_refreshes(unsigned rounds, bool stored, bool names)
{
	struct ignore *ig = ignore_new();
	char *err = NULL;
	ck_assert_int_eq(ignore_add(ig, "*.txt", &err), 0);
	ck_assert_int_eq(ignore_add(ig, "/b/e/", &err), 0);
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE, .exclude = ig};
	struct snapshot *prev = NULL, *full = NULL, *inc = NULL, *last = NULL;
	size_t known = 0;
	const char *env = getenv("ATOMSYNC_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
			    : (unsigned)time(NULL);

	rrng = seed;
	if (stored)
		make_bulk();
	ck_assert_int_eq(snapshot_take(src, &o, &prev, &err), 0);
	ck_assert_int_eq(snapshot_take(src, &o, &last, &err), 0);
	if (stored) {
		snapshot_supersede(NULL, prev);
		ck_assert_int_eq(prev->mem, SNAP_MEM_STORE);
	}
	for (unsigned round = 0; round < rounds; round++) {
		struct dirty d = {.names = names};
		for (unsigned k = rrnd(4) + 1; k > 0; k--)
			random_change(&d, prev);
		ck_assert_int_eq(snapshot_take(src, &o, &full, &err), 0);
		/* Every other round as the daemon refreshes: from a record
		 * whose warnings were taken out and are handed back. */
		struct snapshot_extras *px =
			round % 2 ? snapshot_take_extras(prev) : NULL;
		ck_assert(round % 2 == 0 || px != NULL);
		struct snap_changed c = {d.v, d.n, d.nv, d.nn};
		int rc = snapshot_refresh_changed(prev, px, &c, &o, &inc, &err);
		ck_assert_msg(rc == 0, "seed %u round %u: refresh: %s", seed,
			      round, rc == -ESTALE ? "stale" : err);
		assert_same_snapshot(inc, full, round);
		assert_merge_cmp(inc, prev, round);
		if (stored) {
			ck_assert_int_eq(inc->mem, SNAP_MEM_VIEW);
			known += assert_same_known(inc, prev, round);
			/* Its warnings aside (taken out every other round). */
			snapshot_drop_extras(last);
			if (px == NULL)
				snapshot_drop_extras(prev);
			assert_same_snapshot(prev, last, round);
		}
		snapshot_extras_free(px);
		dirty_free(&d);
		if (stored) {
			snapshot_supersede(prev, inc);
			ck_assert_int_eq(inc->mem, SNAP_MEM_STORE);
		} else {
			snapshot_free(prev);
		}
		snapshot_free(last);
		last = full;
		prev = inc;
	}
	snapshot_free(last);
	snapshot_free(prev);
	ignore_free(ig);
	/* The bulk before the random names mostly stays where it was. */
	ck_assert_msg(!stored || known > rounds * 1000,
		      "seed %u: %zu entries known the same", seed, known);
}

START_TEST(test_refresh_equals_a_full_walk_after_random_changes)
{
	random_refreshes(150, false, false);
}
END_TEST

/* The same, told the names that changed, as the daemon is. */
START_TEST(test_refresh_by_name_equals_a_full_walk)
{
	random_refreshes(150, false, true);
}
END_TEST

START_TEST(test_refresh_of_a_stored_record_views_it_and_leaves_it)
{
	random_refreshes(tu_rounds(60), true, false);
	tu_rmrf(src);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	random_refreshes(tu_rounds(60), true, true);
}
END_TEST

/* What a writer publishes entries with, in the tests: a mode masked as
 * the writer masks it and an owner it forces, so that no entry as found
 * is as the record holds it until projected. */
static void test_project(const void *arg, struct snap_entry *e)
{
	(void)arg;
	e->mode &= 0755;
	e->uid = e->gid = 4242;
}

/* Projects what a writer would: all but the copies of the record. */
static void project_new(struct snapshot *s, const struct snapshot *l)
{
	size_t run = 0;

	for (size_t i = 0; i < s->n; i++)
		if (l == NULL || !snapshot_is_copy(s, i, l, &run))
			test_project(NULL, &s->v[i]);
}

/* A record as the writer leaves it: each file's inode in the target
 * learned (here made up from its own), where not known yet. */
static void learn_inodes(struct snapshot *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].type == SNAP_FILE && s->v[i].t_ino == 0)
			s->v[i].t_ino = s->v[i].ino + 7;
}

/* Rounds of random changes, each read in full over the record of the
 * round before, kept as the daemon keeps it: the read equals a plain
 * full walk, leaves the record as it was, writes only the pages of what
 * changed or moved, and takes what is the same with what was learned of
 * it. */
static void random_reads_over(unsigned rounds)
{
	struct ignore *ig = ignore_new();
	char *err = NULL;
	ck_assert_int_eq(ignore_add(ig, "*.txt", &err), 0);
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE, .exclude = ig};
	struct snapshot_opts ov = o;
	struct snapshot *prev = NULL, *full = NULL, *over = NULL, *last = NULL;
	size_t known = 0, copied = 0;
	const char *env = getenv("ATOMSYNC_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
			    : (unsigned)time(NULL);

	ov.project = test_project;
	rrng = seed;
	make_bulk();
	ck_assert_int_eq(snapshot_take(src, &o, &prev, &err), 0);
	ck_assert_int_eq(snapshot_take(src, &o, &last, &err), 0);
	project_new(prev, NULL);
	project_new(last, NULL);
	snapshot_supersede(NULL, prev);
	ck_assert_int_eq(prev->mem, SNAP_MEM_STORE);
	for (unsigned round = 0; round < rounds; round++) {
		struct dirty d = {0};
		for (unsigned k = rrnd(4) + 1; k > 0; k--)
			random_change(&d, prev);
		dirty_free(&d);
		learn_inodes(prev);
		learn_inodes(last);
		ov.over = prev;
		ck_assert_int_eq(snapshot_take(src, &o, &full, &err), 0);
		int rc = snapshot_take(src, &ov, &over, &err);
		ck_assert_msg(rc == 0, "seed %u round %u: %s", seed, round, err);
		ck_assert_int_eq(over->mem, SNAP_MEM_VIEW);
		assert_merge_cmp(over, prev, round);
		known += assert_same_known(over, prev, round);
		size_t run = 0;
		for (size_t i = 0; i < over->n; i++) {
			const struct snap_entry *e = &over->v[i];
			bool copy = snapshot_is_copy(over, i, prev, &run);
			copied += copy;
			/* Only a copy carries what was learned. */
			if (e->type == SNAP_FILE && (e->t_ino != 0) != copy)
				ck_abort_msg("seed %u round %u: %s %s, inode "
					     "%llu", seed, round, e->path,
					     copy ? "copied" : "read",
					     (unsigned long long)e->t_ino);
		}
		project_new(over, prev);
		project_new(full, NULL);
		assert_same_snapshot(over, full, round);
		assert_same_snapshot(prev, last, round);
		snapshot_supersede(prev, over);
		ck_assert_int_eq(over->mem, SNAP_MEM_STORE);
		snapshot_free(last);
		last = full;
		prev = over;
	}
	snapshot_free(last);
	snapshot_free(prev);
	ignore_free(ig);
	/* The bulk, found as it was, is the record's, mostly unwritten. */
	ck_assert_msg(copied > rounds * 10000 && known > rounds * 1000,
		      "seed %u: %zu copied, %zu known the same", seed, copied,
		      known);
}

START_TEST(test_full_read_over_a_stored_record_writes_only_what_changed)
{
	random_reads_over(tu_rounds(40));
}
END_TEST

/* More entries than the view of the record has room for: the read moves
 * into an array of its own, and is still what a walk gives. */
START_TEST(test_full_read_over_a_record_grows_out_of_its_view)
{
	struct snapshot_opts o = {.project = test_project};
	struct snapshot *prev = NULL, *full = NULL, *over = NULL;
	char *err = NULL, *dir = tu_path(src, "new");

	make_bulk();
	ck_assert_int_eq(snapshot_take(src, NULL, &prev, &err), 0);
	project_new(prev, NULL);
	snapshot_supersede(NULL, prev);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	for (int f = 0; f < 2000; f++) {
		char name[32];
		snprintf(name, sizeof(name), "g%05d", f);
		tu_write(dir, name, "x", 0644);
	}
	o.over = prev;
	ck_assert_int_eq(snapshot_take(src, &o, &over, &err), 0);
	ck_assert_int_eq(snapshot_take(src, NULL, &full, &err), 0);
	ck_assert_int_eq(over->mem, SNAP_MEM_OWN);
	ck_assert_uint_eq(over->n, prev->n + 2001);
	assert_merge_cmp(over, prev, 0);
	project_new(over, prev);
	project_new(full, NULL);
	assert_same_snapshot(over, full, 0);
	snapshot_supersede(prev, over);
	snapshot_free(over);
	snapshot_free(full);
	free(dir);
}
END_TEST

/* Each refresh holds on to the blocks of paths of the record it
 * refreshes, and adds one for what it read again: a long run of them
 * must not hold every path ever read. */
START_TEST(test_paths_replaced_again_and_again_are_let_go)
{
	struct snapshot *prev = NULL, *inc = NULL, *full = NULL;
	char *d = tu_path(src, "d"), *err = NULL;
	char *dirs[] = {"d"};

	tu_mkdirs(d, 0755);
	for (int f = 0; f < 20; f++) {
		char name[32];
		snprintf(name, sizeof(name), "a-rather-long-name-%02d", f);
		tu_write(d, name, "x", 0644);
	}
	ck_assert_int_eq(snapshot_take(src, NULL, &prev, &err), 0);
	for (int round = 0; round < 400; round++) {
		tu_write(d, "a-rather-long-name-00", round % 2 ? "x" : "yy",
			 0644);
		ck_assert_int_eq(
			snapshot_refresh(prev, NULL, dirs, 1, NULL, &inc, &err),
			0);
		snapshot_supersede(prev, inc);
		if (inc->pool_bytes >= (uint64_t)1 << 20)
			ck_abort_msg("round %d: %llu bytes of blocks for %llu "
				     "of paths", round,
				     (unsigned long long)inc->pool_bytes,
				     (unsigned long long)inc->pool_used);
		prev = inc;
	}
	ck_assert_int_eq(snapshot_take(src, NULL, &full, &err), 0);
	snapshot_drop_extras(prev);
	snapshot_drop_extras(full);
	assert_same_snapshot(prev, full, 400);
	snapshot_free(prev);
	snapshot_free(full);
	free(d);
}
END_TEST

START_TEST(test_refresh_reads_only_the_directories_that_changed)
{
	char rel[64];
	for (int d = 0; d < 50; d++)
		for (int f = 0; f < 100; f++) {
			snprintf(rel, sizeof(rel), "d%02d/f%03d", d, f);
			tu_write_deep(src, rel, "x");
		}
	struct snapshot *prev = take(SNAP_LINKS_INSIDE), *inc = NULL;
	ck_assert_uint_ge(prev->read, 5050);
	tu_write(src, "d17/f042", "changed", 0644);
	char *dirs[] = {"d17"};
	char *err = NULL;
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, dirs, 1, NULL, &inc, &err), 0);
	ck_assert_msg(inc->read < 200, "%llu entries read",
		      (unsigned long long)inc->read);
	ck_assert_uint_eq(must_find(inc, "d17/f042")->size, 7);
	struct snapshot *full = take(SNAP_LINKS_INSIDE);
	assert_same_snapshot(inc, full, 0);
	snapshot_free(full);
	snapshot_free(inc);
	snapshot_free(prev);
}
END_TEST

/* src/rel, freed at the next call. */
static const char *at(const char *rel)
{
	static char *p;

	free(p);
	p = rel ? tu_path(src, rel) : NULL;
	return p;
}

/* A refresh told the names that changed; how many names it read, and
 * that it gives the entries and watches a full walk does. */
static unsigned long long refresh_names(struct snapshot **prev,
					char **names, size_t n)
{
	struct snap_changed c = {.names = names, .nnames = n};
	struct snapshot *inc = NULL, *full = take(SNAP_LINKS_INSIDE);
	char *err = NULL;

	ck_assert_int_eq(
		snapshot_refresh_changed(*prev, NULL, &c, NULL, &inc, &err), 0);
	assert_same_snapshot(inc, full, 0);
	unsigned long long read = inc->read;
	snapshot_free(full);
	snapshot_free(*prev);
	*prev = inc;
	return read;
}

/* A file at the top beside many directories, told by name, is that name
 * looked at, not every directory beside it: changed, added, removed, or
 * deep in a directory (whose own entry is read again too).  A name that
 * is or was a directory, a link or anything but a file reads its
 * directory again. */
START_TEST(test_refresh_by_name_reads_the_name_only)
{
	char rel[64];
	for (int d = 0; d < 200; d++) {
		snprintf(rel, sizeof(rel), "d%03d/f", d);
		tu_write_deep(src, rel, "x");
	}
	tu_write(src, "top", "1", 0644);
	struct snapshot *prev = take(SNAP_LINKS_INSIDE);
	char *top[] = {"top"}, *new[] = {"new"}, *deep[] = {"d042/g"};
	char *both[] = {"new", "top", "new"}, *deep2[] = {"d042/f"};

	tu_write(src, "top", "22", 0644);
	ck_assert_uint_le(refresh_names(&prev, top, 1), 3);
	ck_assert_uint_eq(must_find(prev, "top")->size, 2);
	tu_write(src, "new", "1", 0644);
	ck_assert_uint_le(refresh_names(&prev, new, 1), 3);
	ck_assert_int_eq(unlink(at("top")), 0);
	tu_write(src, "new", "333", 0644);
	ck_assert_uint_le(refresh_names(&prev, both, 3), 6);
	ck_assert_ptr_null(snapshot_find(prev, "top"));
	tu_write(src, "d042/g", "1", 0644); /* d042 changes too */
	ck_assert_uint_le(refresh_names(&prev, deep, 1), 4);
	tu_write(src, "d042/f", "4444", 0644);
	ck_assert_uint_le(refresh_names(&prev, deep2, 1), 4);
	/* A directory where a file was: the root is read again. */
	ck_assert_int_eq(unlink(at("new")), 0);
	ck_assert_int_eq(mkdir(at("new"), 0755), 0);
	tu_write(src, "new/x", "1", 0644);
	ck_assert_uint_ge(refresh_names(&prev, new, 1), 200);
	/* And back: it was one. */
	tu_rmrf(at("new"));
	tu_write(src, "new", "1", 0644);
	ck_assert_uint_ge(refresh_names(&prev, new, 1), 200);
	/* A file gone from a directory kept whole, the root read again. */
	char *gone[] = {"d042/g", "sub"};
	ck_assert_int_eq(unlink(at("d042/g")), 0);
	ck_assert_int_eq(mkdir(at("sub"), 0755), 0);
	ck_assert_uint_ge(refresh_names(&prev, gone, 2), 200);
	ck_assert_ptr_null(snapshot_find(prev, "d042/g"));
	/* A FIFO, a link (after which a refresh cannot be sure). */
	char *link[] = {"link"}, *fifo[] = {"fifo"};
	ck_assert_int_eq(mkfifo(at("fifo"), 0644), 0);
	ck_assert_uint_ge(refresh_names(&prev, fifo, 1), 200);
	ck_assert_int_eq(symlink("d000/f", at("link")), 0);
	ck_assert_uint_ge(refresh_names(&prev, link, 1), 200);
	snapshot_free(prev);
	at(NULL);
}
END_TEST

static void refresh_meets_links(enum snap_links mode)
{
	struct ignore *ig = ignore_new();
	char *err = NULL;
	ck_assert_int_eq(ignore_add(ig, "/hidden/", &err), 0);
	struct snapshot_opts o = {.links = mode, .exclude = ig};
	struct snapshot *prev = NULL, *inc = NULL, *full = NULL;

	tu_rmrf(tmp);
	tu_write(src, "a/f", "1", 0644);
	tu_write(src, "hidden/key", "k", 0644);
	tu_write(tmp, "archive/cert1.pem", "c1", 0644);
	tu_write(tmp, "shared/x/y", "y", 0644);
	ck_assert_int_eq(snapshot_take(src, &o, &prev, &err), 0);
	ck_assert(!prev->indirect);
	char *arch = tu_path(tmp, "archive/cert1.pem");
	char *shared = tu_path(tmp, "shared");
	link_in(arch, "a/cert.pem");
	link_in(shared, "shared");
	link_in("../hidden/key", "a/key");
	link_in("a", "alias");
	char *dirs[] = {"", "a"};
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, dirs, 2, &o, &inc, &err), 0);
	ck_assert_int_eq(snapshot_take(src, &o, &full, &err), 0);
	ck_assert(inc->indirect);
	must_find(inc, "alias/f");
	assert_same_snapshot(inc, full, 0);
	if (mode == SNAP_LINKS_FOLLOW) {
		must_find(inc, "shared/x/y");
		char *real = realpath(tmp, NULL), *where = NULL;
		ck_assert_ptr_nonnull(real);
		ck_assert_int_ge(asprintf(&where, "%s/archive", real), 0);
		ck_assert_msg(watched(inc, where), "%s not watched", where);
		free(where);
		ck_assert_int_ge(asprintf(&where, "%s/src/hidden", real), 0);
		ck_assert_msg(watched(inc, where), "%s not watched", where);
		free(where);
		free(real);
	} else {
		ck_assert(watched(inc, "hidden")); /* a/key's */
	}
	free(arch);
	free(shared);
	snapshot_free(full);
	snapshot_free(inc);
	snapshot_free(prev);
	ignore_free(ig);
}

/* Links met by a refresh (prev had none, or it would not refresh):
 * where they lead is watched, as a full walk watches it: a file's
 * directory out of the source, a directory linked to, a file in an
 * excluded one.  Else a change there went unseen until a full read. */
START_TEST(test_refresh_watches_where_new_links_lead)
{
	refresh_meets_links(SNAP_LINKS_FOLLOW);
	refresh_meets_links(SNAP_LINKS_INSIDE);
}
END_TEST

/* A directory of many subdirectories read again (a file in it changed)
 * opens none of those found as they were, change time and all: at the
 * top of a big tree, that is thousands of directories not opened. */
START_TEST(test_refresh_opens_no_subdirectory_found_as_it_was)
{
	char rel[32], *err = NULL, *dirs[] = {""};

	for (int d = 0; d < 50; d++) {
		snprintf(rel, sizeof(rel), "sub-%02d/f", d);
		tu_write_deep(src, rel, "x");
	}
	tu_write(src, "top", "1", 0644);
	atomic_store(&tu_opens, 0);
	atomic_store(&tu_opens_of, "sub-");
	struct snapshot *prev = take(SNAP_LINKS_INSIDE), *inc = NULL;
	int opened = atomic_load(&tu_opens);
	ck_assert_int_eq(opened, 50);
	tu_write(src, "top", "22", 0644);
	char *d7 = tu_path(src, "sub-07");
	ck_assert_int_eq(chmod(d7, 0750), 0); /* its change time moves */
	atomic_store(&tu_opens, 0);
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, dirs, 1, NULL, &inc, &err), 0);
	atomic_store(&tu_opens_of, NULL);
	opened = atomic_load(&tu_opens);
	ck_assert_int_eq(opened, 1);
	ck_assert_uint_eq(must_find(inc, "top")->size, 2);
	ck_assert_uint_eq(must_find(inc, "sub-07")->mode, 0750);
	struct snapshot *full = take(SNAP_LINKS_INSIDE);
	assert_same_snapshot(inc, full, 0);
	snapshot_free(full);
	snapshot_free(inc);
	snapshot_free(prev);
	free(d7);
}
END_TEST

/* A snapshot of src in which no file is racy any longer: their times
 * alone tell them unchanged from now on. */
static struct snapshot *take_settled(void)
{
	long long deadline = tu_now_ms() + 10000;

	for (;;) {
		struct snapshot *s = take(SNAP_LINKS_INSIDE);
		bool racy = false;
		for (size_t i = 0; i < s->n; i++)
			racy |= (s->v[i].flags & SNAP_F_RACY) != 0;
		if (!racy)
			return s;
		snapshot_free(s);
		ck_assert_msg(tu_now_ms() < deadline, "files still racy");
		tu_nap(10);
	}
}

/* What a refresh reads again and finds as the record holds it (once
 * given the mode and owner it was published with) stays the record's
 * entry, with what was learned of it: at the top of a big tree, a file
 * changed beside ten thousand directories is not ten thousand entries
 * written anew.  What changed is read as it is: top, a's mode, and b
 * and what was added to it (but b/f, read again and found as it
 * was). */
START_TEST(test_refresh_keeps_what_it_finds_as_the_record_holds_it)
{
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE,
				  .project = test_project};
	char *err = NULL, *dirs[] = {"", "b"}, *a = tu_path(src, "a");
	const char *anew[] = {"top", "a", "b", "b/g"};

	tu_write_deep(src, "a/f", "x");
	tu_write_deep(src, "b/f", "x");
	tu_write(src, "top", "1", 0644);
	tu_write(src, "u", "1", 0644);
	struct snapshot *prev = take_settled(), *inc = NULL;
	snapshot_sort(prev);
	project_new(prev, NULL);
	learn_inodes(prev);
	tu_write(src, "top", "22", 0644);
	ck_assert_int_eq(chmod(a, 0700), 0);
	tu_write(src, "b/g", "y", 0644);
	ck_assert_int_eq(snapshot_refresh(prev, NULL, dirs, 2, &o, &inc, &err),
			 0);
	ck_assert_uint_eq(inc->n, prev->n + 1);
	size_t run = 0;
	for (size_t i = 0; i < inc->n; i++) {
		const struct snap_entry *e = &inc->v[i];
		bool read = false;
		for (size_t k = 0; k < sizeof(anew) / sizeof(*anew); k++)
			read |= strcmp(e->path, anew[k]) == 0;
		ck_assert_msg(snapshot_is_copy(inc, i, prev, &run) != read,
			      "%s %s", e->path, read ? "kept" : "read anew");
		/* Only a copy carries what was learned. */
		ck_assert_msg(e->type != SNAP_FILE || (e->t_ino != 0) != read,
			      "%s: inode %llu", e->path,
			      (unsigned long long)e->t_ino);
	}
	ck_assert_uint_eq(must_find(inc, "top")->size, 2);
	ck_assert_uint_eq(must_find(inc, "a")->mode, 0700);
	struct snapshot *full = take(SNAP_LINKS_INSIDE);
	project_new(full, NULL);
	project_new(inc, prev);
	assert_same_snapshot(inc, full, 0);
	snapshot_free(full);
	snapshot_free(inc);
	snapshot_free(prev);
	free(a);
}
END_TEST

/* How often the record's mapping was let go of behind what a merge
 * moved (a range short of its end), not all at once. */
static size_t let_go_behind;

void __real_store_let_go(struct store *x, size_t from, size_t to);
void __wrap_store_let_go(struct store *x, size_t from, size_t to);
void __wrap_store_let_go(struct store *x, size_t from, size_t to)
{
	if (to != SIZE_MAX)
		let_go_behind++;
	__real_store_let_go(x, from, to);
}

/* Pages of a stored record and of the refresh's view of it mapped once
 * the refresh is over. */
struct mapped {
	size_t record, view;
};

/* A refresh of `dirs` of the stored record `prev`, its pages all mapped
 * first, which must equal a full walk: what it left mapped. */
static struct mapped refresh_mapped(struct snapshot *prev, char **dirs,
				    size_t n, unsigned step)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t pages = (prev->n * sizeof(*prev->v) + page - 1) / page;
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE};
	struct snapshot *inc = NULL, *full = NULL;
	struct mapped m;
	char *err = NULL;

	store_populate(prev->v, pages * page);
	ck_assert_uint_eq(tu_pages_present(prev->v, pages), pages);
	ck_assert_int_eq(snapshot_take(src, &o, &full, &err), 0);
	let_go_behind = 0;
	ck_assert_int_eq(snapshot_refresh(prev, NULL, dirs, n, &o, &inc, &err),
			 0);
	ck_assert_int_eq(inc->mem, SNAP_MEM_VIEW);
	m.record = tu_pages_present(prev->v, pages);
	m.view = tu_pages_present(inc->v, pages);
	assert_same_snapshot(inc, full, step);
	snapshot_free(full);
	snapshot_free(inc);
	return m;
}

/* A refresh of a few directories maps only the pages of its view that it
 * touches (a one-file publish at a million entries is not 24,000 pages
 * mapped anew), and the record's mapping lets go of what it read, behind
 * the entries the merge moves and all of it once the merge is over, so
 * that each page counts once in the resident set. */
START_TEST(test_refresh_maps_each_page_of_the_record_once)
{
	struct snapshot_opts o = {.links = SNAP_LINKS_INSIDE};
	struct snapshot *prev = NULL;
	char *err = NULL, *few[] = {"m"}, *top[] = {"", "m"};

	make_bulk();
	tu_write_deep(src, "m/f", "x");
	ck_assert_int_eq(snapshot_take(src, &o, &prev, &err), 0);
	snapshot_supersede(NULL, prev);
	ck_assert_int_eq(prev->mem, SNAP_MEM_STORE);
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t pages = (prev->n * sizeof(*prev->v) + page - 1) / page;

	tu_write(src, "m/f", "yy", 0644);
	struct mapped m = refresh_mapped(prev, few, 1, 0);
	ck_assert_msg(m.view <= pages / 8 && m.record <= pages / 8,
		      "of %zu pages, %zu in the view, %zu in the record",
		      pages, m.view, m.record);
	ck_assert_uint_eq(let_go_behind, 0);
	/* "0a" sorts before all the rest, which moves by one. */
	tu_write(src, "0a", "1", 0644);
	m = refresh_mapped(prev, top, 2, 1);
	ck_assert_msg(m.record <= pages / 8, "%zu of %zu pages left",
		      m.record, pages);
	ck_assert_uint_ge(let_go_behind, 1);
	snapshot_free(prev);
}
END_TEST

/* A walk says what it guarantees, for the writer to skip checking it;
 * an entry added by hand takes that back. */
START_TEST(test_walk_tells_what_it_guarantees)
{
	tu_write_deep(src, "b/f", "x");
	tu_write_deep(src, "a/g", "y");
	struct snapshot *prev = take(SNAP_LINKS_INSIDE), *inc = NULL;
	ck_assert(prev->walked);
	snapshot_sort(prev);
	ck_assert(prev->walked && prev->sorted);
	tu_write(src, "a/g", "changed", 0644);
	char *dirs[] = {"a"};
	char *err = NULL;
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, dirs, 1, NULL, &inc, &err), 0);
	ck_assert(inc->walked && inc->sorted);
	struct snap_entry e = {.path = "c/./h", .type = SNAP_FILE};
	ck_assert_int_eq(snapshot_add(inc, &e), 0);
	ck_assert(!inc->walked && !inc->sorted);
	snapshot_sort(inc);
	ck_assert(!inc->walked && inc->sorted);
	snapshot_free(inc);
	snapshot_free(prev);
}
END_TEST

/* Paths live in their snapshot's pool: an entry moved from one snapshot
 * into another is copied there, and outlives the first (under ASan and
 * valgrind, a path left pointing into the first would be read freed). */
START_TEST(test_entry_moved_between_snapshots_keeps_its_path)
{
	struct snapshot *a = NULL, *b = NULL;
	char *err = NULL;
	ck_assert_int_eq(snapshot_open(NULL, &a, &err), 0);
	ck_assert_int_eq(snapshot_open(NULL, &b, &err), 0);
	struct snap_entry e = {.path = strdup("d/f"), .type = SNAP_FILE};
	ck_assert_ptr_nonnull(e.path);
	ck_assert_int_eq(snapshot_append(a, &e), 0); /* a owns it now */
	ck_assert(a->v[0].pooled);
	ck_assert_str_eq(a->v[0].path, "d/f");
	struct snap_entry moved = a->v[0];
	ck_assert_int_eq(snapshot_append(b, &moved), 0);
	a->v[0].path = NULL;
	snapshot_free(a);
	ck_assert(b->v[0].pooled);
	ck_assert_str_eq(b->v[0].path, "d/f");
	/* A copy of one of its own, while the array grows under it. */
	for (size_t i = 1; i < 40; i++) {
		ck_assert_int_eq(snapshot_add(b, &b->v[i - 1]), 0);
		ck_assert_str_eq(b->v[i].path, "d/f");
		ck_assert(b->v[i].path != b->v[i - 1].path);
	}
	snapshot_free(b);
}
END_TEST

/* Entries a refresh copied on both sides of a gap where it dropped some
 * (a file gone from the end of a directory read again, after a
 * subdirectory it kept) are two runs, not one: a merge must find the
 * file removed, not take the next entry for it. */
START_TEST(test_refresh_runs_break_where_entries_were_dropped)
{
	tu_write_deep(src, "d/s/k", "x");
	tu_write_deep(src, "d/z", "y");
	tu_write_deep(src, "e", "z");
	struct snapshot *prev = take(SNAP_LINKS_INSIDE), *inc = NULL;
	snapshot_sort(prev);
	char *z = tu_path(src, "d/z");
	ck_assert_int_eq(unlink(z), 0);
	free(z);
	char *dirs[] = {"d"};
	char *err = NULL;
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, dirs, 1, NULL, &inc, &err), 0);
	ck_assert_uint_eq(inc->n, prev->n - 1);
	assert_merge_cmp(inc, prev, 0);
	size_t run = 0;
	ck_assert_int_gt(snapshot_merge_cmp(inc, 3, prev, 3, &run), 0);
	snapshot_free(inc);
	snapshot_free(prev);
}
END_TEST

START_TEST(test_refresh_refuses_what_it_cannot_be_sure_of)
{
	tu_write_deep(src, "real/f", "x");
	tu_write_deep(src, "other/g", "y");
	struct snapshot *prev = take(SNAP_LINKS_INSIDE), *inc = NULL;
	char *dirs[] = {"other"}, *err = NULL;
	/* A directory replaced, its parent not reported: not the same. */
	char *p = tu_path(src, "other"), *q = tu_path(src, "next");
	tu_mkdirs(q, 0755);
	tu_rmrf(p);
	ck_assert_int_eq(rename(q, p), 0);
	free(p);
	free(q);
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, dirs, 1, NULL, &inc, &err),
		-ESTALE);
	snapshot_free(prev);
	/* A link read: what it leads to changes unreported. */
	link_in("real/f", "ln");
	prev = take(SNAP_LINKS_INSIDE);
	ck_assert(prev->indirect);
	char *root[] = {""};
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, root, 1, NULL, &inc, &err),
		-ESTALE);
	ck_assert_ptr_null(inc);
	snapshot_free(prev);
	/* A file with a second name: written through that one, no event
	 * comes from this directory. */
	char *ln = tu_path(src, "ln"), *f = tu_path(src, "real/f");
	char *outside = tu_path(tmp, "f2");
	ck_assert_int_eq(unlink(ln), 0);
	ck_assert_int_eq(link(f, outside), 0);
	prev = take(SNAP_LINKS_INSIDE);
	ck_assert(prev->indirect);
	ck_assert_int_eq(
		snapshot_refresh(prev, NULL, root, 1, NULL, &inc, &err),
		-ESTALE);
	snapshot_free(prev);
	free(ln);
	free(f);
	free(outside);
}
END_TEST

/* `files` files in one directory, read, kept as the daemon keeps its
 * record, then one of them changed and read again by name: how the
 * record and the read hold their entries. */
static void one_change_over(int files, enum snap_mem *record,
			    enum snap_mem *read)
{
	struct snapshot *prev = NULL, *inc = NULL, *full = NULL;
	struct dirty d = {.names = true};
	char *err = NULL, *dir = tu_path(src, "d");

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	for (int f = 0; f < files; f++) {
		char name[32];
		snprintf(name, sizeof(name), "d/f%05d", f);
		char *p = tu_path(src, name);
		write_file(p, 1);
		free(p);
	}
	ck_assert_int_eq(snapshot_take(src, NULL, &prev, &err), 0);
	snapshot_supersede(NULL, prev);
	*record = prev->mem;
	char *p = tu_path(src, "d/f00007");
	write_file(p, 2);
	free(p);
	dirty_add(&d, prev, "d/f00007");
	struct snap_changed c = {d.v, d.n, d.nv, d.nn};
	ck_assert_int_eq(snapshot_refresh_changed(prev, NULL, &c, NULL, &inc,
						  &err),
			 0);
	ck_assert_int_eq(snapshot_take(src, NULL, &full, &err), 0);
	assert_same_snapshot(inc, full, 0);
	*read = inc->mem;
	dirty_free(&d);
	snapshot_free(full);
	snapshot_free(inc);
	snapshot_free(prev);
	free(dir);
}

/* A record of two thousand entries (192 KB) is kept in a store and
 * viewed by the next read, which then writes only the pages that
 * changed, not a copy of every entry. */
START_TEST(test_a_record_of_two_thousand_entries_is_viewed)
{
	enum snap_mem record, read;

	one_change_over(2000, &record, &read);
	ck_assert_int_eq(record, SNAP_MEM_STORE);
	ck_assert_int_eq(read, SNAP_MEM_VIEW);
}
END_TEST

/* One of a thousand (96 KB) is copied: in the heap's pages, a copy costs
 * less than mapping and unmapping a view at each publish. */
START_TEST(test_a_record_of_a_thousand_entries_is_copied)
{
	enum snap_mem record, read;

	one_change_over(1000, &record, &read);
	ck_assert_int_eq(record, SNAP_MEM_OWN);
	ck_assert_int_eq(read, SNAP_MEM_OWN);
}
END_TEST

static Suite *snapshot_suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = tcase_create("walk");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_path_order_keeps_descendants_together);
	tcase_add_test(tc, test_extras_are_taken_apart_from_the_entries);
	tcase_add_test(tc, test_walk_is_sorted_with_dirs_before_children);
	tcase_add_test(tc, test_a_root_given_open_is_read_through_it);
	tcase_add_test(tc, test_subtree_end_is_where_the_names_below_end);
	tcase_add_test(tc, test_find_next_finds_what_find_does);
	tcase_add_test(tc, test_path_order_is_the_byte_order_with_slash_lowest);
	tcase_add_test(tc, test_large_directory_is_read_whole);
	tcase_add_test(tc, test_expected_size_is_reserved_and_trimmed);
	tcase_add_test(tc, test_trim_keeps_huge_pages_whole);
	tcase_add_test(tc, test_reserved_names_are_skipped_dotfiles_kept);
	tcase_add_test(tc, test_symlink_inside_is_copied_as_content);
	tcase_add_test(tc, test_symlink_outside_is_skipped_with_warning);
	tcase_add_test(tc, test_absolute_symlink_into_source_counts_as_inside);
	tcase_add_test(tc, test_absolute_symlink_spelled_loosely_counts_as_inside);
	tcase_add_test(tc, test_symlink_loops_are_detected);
	tcase_add_test(tc, test_follow_mode_follows_outside_and_still_detects_loops);
	tcase_add_test(tc, test_skip_mode_ignores_links);
	tcase_add_test(tc, test_dangling_link_warns);
	tcase_add_test(tc, test_special_files_are_skipped_without_blocking);
	tcase_add_test(tc, test_kubernetes_volume_as_source);
	tcase_add_test(tc, test_a_volume_swapped_during_the_walk_never_mixes_versions);
	tcase_add_test(tc, test_excludes_match_names_and_paths);
	tcase_add_test(tc, test_excluded_directories_are_not_entered);
	tcase_add_test(tc, test_links_to_directories_are_directories_to_excludes);
	tcase_add_test(tc, test_excluded_links_are_not_read);
	tcase_add_test(tc, test_watch_list_covers_every_directory);
	tcase_add_test(tc, test_missing_source_names_the_path);
	tcase_add_test(tc, test_metadata_recorded);
	tcase_add_test(tc, test_odd_names_survive);
	tcase_add_test(tc, test_deep_tree_stops_at_the_path_limit);
	tcase_add_test(tc, test_limits_on_files_and_bytes);
	tcase_add_test(tc, test_paths_are_bounded_with_max_files);
	tcase_add_test(tc, test_names_left_out_are_bounded_with_max_files);
	tcase_add_test(tc, test_reserved_names_warn_unless_a_layout_of_their_own);
	tcase_add_test(tc, test_follow_into_named_directories_only);
	tcase_add_test(tc, test_followed_link_into_the_target_is_skipped);
	tcase_add_test(tc, test_unreadable_directories_are_all_listed);
	tcase_add_test(tc, test_refresh_equals_a_full_walk_after_random_changes);
	tcase_add_test(tc, test_refresh_by_name_equals_a_full_walk);
	tcase_add_test(tc, test_refresh_by_name_reads_the_name_only);
	tcase_add_test(tc, test_refresh_watches_where_new_links_lead);
	tcase_add_test(tc, test_refresh_reads_only_the_directories_that_changed);
	tcase_add_test(tc, test_refresh_opens_no_subdirectory_found_as_it_was);
	tcase_add_test(tc, test_refresh_keeps_what_it_finds_as_the_record_holds_it);
	tcase_add_test(tc, test_refresh_maps_each_page_of_the_record_once);
	tcase_add_test(tc, test_refresh_refuses_what_it_cannot_be_sure_of);
	tcase_add_test(tc, test_walk_tells_what_it_guarantees);
	tcase_add_test(tc, test_entry_moved_between_snapshots_keeps_its_path);
	tcase_add_test(tc, test_refresh_runs_break_where_entries_were_dropped);
	suite_add_tcase(s, tc);
	/* A record kept in a store, read again and again; and whether one
	 * is kept there at all. */
	TCase *st = tcase_create("stored");
	tcase_add_checked_fixture(st, setup, teardown);
	tcase_set_timeout(st, 60);
	tcase_add_test(st, test_refresh_of_a_stored_record_views_it_and_leaves_it);
	tcase_add_test(st, test_paths_replaced_again_and_again_are_let_go);
	tcase_add_test(st, test_full_read_over_a_stored_record_writes_only_what_changed);
	tcase_add_test(st, test_full_read_over_a_record_grows_out_of_its_view);
	tcase_add_test(st, test_a_record_of_two_thousand_entries_is_viewed);
	tcase_add_test(st, test_a_record_of_a_thousand_entries_is_copied);
	suite_add_tcase(s, st);
	return s;
}

int main(void)
{
	return tu_run_suite(snapshot_suite());
}
