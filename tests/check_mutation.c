/* The promise, tested the hard way: a seeded random stream of changes of
 * every kind, in bursts and with pauses, against the real daemon.  After
 * each burst the target must equal the source within debounce + 1 s, and
 * a reader running throughout must never see a torn file, a generation
 * that loses files under it, or ENOENT for a name present both before and
 * after.  Replay a failure with ATOMSYNC_SEED=<seed>. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "state.h"
#include "testutil.h"

#define DEBOUNCE_MS 20
#define MIN_OPS 600

/* Files that are rewritten, replaced by rename and chmod'ed but never
 * removed: present in every snapshot, so a reader must always reach them
 * through the visible links, across every swap. */
static const char *anchors[] = {"anchor0", "anchor1", "keep/anchor2",
				"keep/deeper/anchor3"};
#define NANCHORS 4

static int is_anchor(const char *rel)
{
	for (int i = 0; i < NANCHORS; i++)
		if (strcmp(rel, anchors[i]) == 0)
			return 1;
	return 0;
}

/* "keep" and what is in it are never removed or renamed. */
static int is_kept_dir(const char *rel)
{
	return strncmp(rel, "keep", 4) == 0 && (rel[4] == '\0' || rel[4] == '/');
}

static char *tmp, *src, *dst, *logpath;
static unsigned seed;
static unsigned long rng;
static unsigned counter;

static unsigned rnd(unsigned n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rng >> 33) % n);
}

/* ---- self-checking file content ---- */

#define HDR "ATOMSYNC-TEST %010u %06u\n"
#define HDR_LEN 32 /* "ATOMSYNC-TEST " + 10 digits + " " + 6 digits + "\n" */

static char *make_content(unsigned n, unsigned len, size_t *total)
{
	char *b = malloc(HDR_LEN + len + 1);
	snprintf(b, HDR_LEN + 1, HDR, n, len);
	for (unsigned i = 0; i < len; i++)
		b[HDR_LEN + i] = (char)('a' + (n * 31u + i * 7u) % 26u);
	*total = HDR_LEN + len;
	return b;
}

/* 0: well formed, 1: empty (the source itself was empty for a moment
 * while being rewritten with O_TRUNC), -1: torn. */
static int check_content(const char *b, size_t got)
{
	unsigned n, len;
	if (got == 0)
		return 1;
	if (got < HDR_LEN || sscanf(b, "ATOMSYNC-TEST %10u %6u\n", &n, &len) != 2 ||
	    got != HDR_LEN + len)
		return -1;
	for (unsigned i = 0; i < len; i++)
		if (b[HDR_LEN + i] != (char)('a' + (n * 31u + i * 7u) % 26u))
			return -1;
	return 0;
}

/* ---- the source tree ---- */

struct list {
	char **v;
	size_t n;
};

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void list_add(struct list *l, const char *s)
{
	l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = strdup(s);
}

/* Relative paths of the source's dirs (with "" for the root), regular
 * files and symlinks. */
static void scan(const char *rel, struct list *dirs, struct list *files,
		 struct list *links)
{
	char *dir = *rel ? tu_path(src, rel) : strdup(src);
	DIR *d = opendir(dir);
	struct dirent *de;
	if (*rel == '\0')
		list_add(dirs, "");
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *r = *rel ? tu_path(rel, de->d_name) : strdup(de->d_name);
		char *full = tu_path(src, r);
		struct stat st;
		if (lstat(full, &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				list_add(dirs, r);
				scan(r, dirs, files, links);
			} else if (S_ISREG(st.st_mode)) {
				list_add(files, r);
			} else if (S_ISLNK(st.st_mode)) {
				list_add(links, r);
			}
		}
		free(full);
		free(r);
	}
	if (d)
		closedir(d);
	free(dir);
}

static void write_file(const char *rel, unsigned len, int trunc)
{
	size_t total;
	char *c = make_content(++counter, len, &total);
	char *p = tu_path(src, rel);
	int fd = open(p, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0644);
	if (fd >= 0) {
		ck_assert_int_eq(pwrite(fd, c, total, 0), (ssize_t)total);
		close(fd);
	}
	free(p);
	free(c);
}

static unsigned file_len(const char *rel)
{
	char *p = tu_path(src, rel);
	struct stat st;
	unsigned len = 0;
	if (stat(p, &st) == 0 && st.st_size >= HDR_LEN)
		len = (unsigned)st.st_size - HDR_LEN;
	free(p);
	return len;
}

static char *child_name(const char *dir, const char *prefix)
{
	char name[32];
	snprintf(name, sizeof(name), "%s%u", prefix, rnd(40));
	return *dir ? tu_path(dir, name) : strdup(name);
}

/* A relative link target from the directory of `from` to `to`. */
static char *relative_target(const char *from, const char *to)
{
	size_t depth = 0;
	for (const char *p = from; *p; p++)
		depth += *p == '/';
	size_t len = depth * 3 + strlen(to) + 1;
	char *t = malloc(len);
	t[0] = '\0';
	for (size_t i = 0; i < depth; i++)
		strcat(t, "../");
	strcat(t, to);
	return t;
}

static const char *op_names[] = {
	"create", "rewrite", "same-size", "rename-over", "delete", "chmod",
	"mkdir", "rmdir", "rename-dir", "symlink",
};
static unsigned op_count[10];

static void one_op(void)
{
	struct list dirs = {0}, files = {0}, links = {0};
	scan("", &dirs, &files, &links);
	unsigned op = rnd(100);
	unsigned kind;
	/* Weights: mostly writes, some structure changes. */
	if (op < 18 || files.n < 3)
		kind = 0;
	else if (op < 32)
		kind = 1;
	else if (op < 46)
		kind = 2;
	else if (op < 58)
		kind = 3;
	else if (op < 66)
		kind = 4;
	else if (op < 74)
		kind = 5;
	else if (op < 82)
		kind = 6;
	else if (op < 86)
		kind = 7;
	else if (op < 91)
		kind = 8;
	else
		kind = 9;

	const char *dir = dirs.v[rnd((unsigned)dirs.n)];
	const char *file = files.n ? files.v[rnd((unsigned)files.n)] : NULL;
	switch (kind) {
	case 0: { /* create */
		char *f = child_name(dir, "f");
		char *p = tu_path(src, f);
		struct stat st;
		if (lstat(p, &st) < 0)
			write_file(f, 1 + rnd(3000), 1);
		free(p);
		free(f);
		break;
	}
	case 1: /* in-place rewrite, new size */
		write_file(file, 1 + rnd(3000), 1);
		break;
	case 2: /* same size, same second: only the content differs */
		write_file(file, file_len(file), 0);
		break;
	case 3: { /* the editor's save: write a temp file, rename over */
		char *t = tu_path(dir, ".save-tmp");
		if (*dir == '\0') {
			free(t);
			t = strdup(".save-tmp");
		}
		write_file(t, 1 + rnd(3000), 1);
		char *from = tu_path(src, t), *to = tu_path(src, file);
		rename(from, to);
		unlink(from);
		free(from);
		free(to);
		free(t);
		break;
	}
	case 4: { /* delete */
		if (is_anchor(file))
			break;
		char *p = tu_path(src, file);
		unlink(p);
		free(p);
		break;
	}
	case 5: { /* chmod */
		static const mode_t modes[] = {0644, 0600, 0640, 0444, 0755, 0400};
		char *p = tu_path(src, file);
		chmod(p, modes[rnd(6)]);
		free(p);
		break;
	}
	case 6: { /* mkdir, several levels */
		char *d = child_name(dir, "d");
		unsigned levels = 1 + rnd(3);
		for (unsigned i = 1; i < levels; i++) {
			char *deeper = child_name(d, "d");
			free(d);
			d = deeper;
		}
		char *p = tu_path(src, d);
		tu_mkdirs(p, 0755);
		if (rnd(2))
			write_file(d[0] ? d : "x", 1 + rnd(500), 1);
		free(p);
		free(d);
		break;
	}
	case 7: /* remove a whole directory */
		if (*dir && !is_kept_dir(dir)) {
			char *p = tu_path(src, dir);
			tu_rmrf(p);
			free(p);
		}
		break;
	case 8: /* rename a whole directory */
		if (*dir && !is_kept_dir(dir)) {
			const char *into = dirs.v[rnd((unsigned)dirs.n)];
			size_t dl = strlen(dir);
			if (strncmp(into, dir, dl) == 0 &&
			    (into[dl] == '\0' || into[dl] == '/'))
				break; /* not into itself */
			char *n = child_name(into, "r");
			char *from = tu_path(src, dir), *to = tu_path(src, n);
			rename(from, to);
			free(from);
			free(to);
			free(n);
		}
		break;
	case 9: { /* create or retarget a symlink to a file in the tree */
		if (file == NULL)
			break;
		char *l = links.n && rnd(2) ? strdup(links.v[rnd((unsigned)links.n)])
					    : child_name(dir, "l");
		char *p = tu_path(src, l);
		char *t = relative_target(l, file);
		char *tmpl = tu_path(src, ".link-tmp");
		unlink(tmpl);
		if (symlink(t, tmpl) == 0 && rename(tmpl, p) < 0)
			unlink(tmpl);
		free(tmpl);
		free(t);
		free(p);
		free(l);
		break;
	}
	}
	op_count[kind]++;
	list_free(&dirs);
	list_free(&files);
	list_free(&links);
}

/* ---- the reader ---- */

/* Reads every file of the generation held by dfd; returns the number of
 * problems.  Fills `names` with what it saw. */
static int read_generation(int dfd, const char *rel, struct list *names)
{
	int fd = openat(dfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		fprintf(stderr, "reader: generation lost %s: %s\n", rel,
			strerror(errno));
		return 1;
	}
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int bad = 0;
	char buf[8192];
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' &&
		    (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		char *r = *rel ? tu_path(rel, de->d_name) : strdup(de->d_name);
		if (de->d_type == DT_DIR) {
			bad += read_generation(dfd, r, names);
		} else {
			list_add(names, r);
			int f = openat(dfd, r, O_RDONLY);
			if (f < 0) {
				fprintf(stderr, "reader: %s vanished from a held "
						"generation: %s\n",
					r, strerror(errno));
				bad++;
			} else {
				ssize_t n = read(f, buf, sizeof(buf));
				close(f);
				if (n < 0 || check_content(buf, (size_t)n) < 0) {
					fprintf(stderr, "reader: %s is torn\n", r);
					bad++;
				}
			}
		}
		free(r);
	}
	closedir(d);
	return bad;
}

static char *live(void)
{
	return tu_live(dst);
}

/* The generation the state names: visible links are complete for it
 * (the state is recorded after they are made). */
static char *settled(void)
{
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *g = NULL;
	struct timespec t;
	bool sound;
	if (dfd >= 0 && state_peek(dfd, &g, &t, &sound) < 0)
		g = NULL;
	if (dfd >= 0)
		close(dfd);
	return g;
}

static int same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static int read_visible(const char *rel, int *bad)
{
	char buf[8192];
	char *p = tu_path(dst, rel);
	int f = open(p, O_RDONLY);
	int err = errno;
	free(p);
	if (f < 0)
		return err;
	ssize_t n = read(f, buf, sizeof(buf));
	close(f);
	if (n < 0 || check_content(buf, (size_t)n) < 0) {
		fprintf(stderr, "reader: %s is torn (through its visible link)\n",
			rel);
		(*bad)++;
	}
	return 0;
}

static int reader(void)
{
	long rounds = 0, checked = 0;
	int bad = 0;
	char *data = tu_path(dst, "..data");
	char *stop = tu_path(tmp, "stop-reader");
	for (;;) {
		struct stat st;
		if (lstat(stop, &st) == 0 || getppid() == 1)
			break;
		/* (C) Names in every snapshot never give ENOENT. */
		for (int i = 0; i < NANCHORS; i++) {
			int e = read_visible(anchors[i], &bad);
			if (e != 0) {
				fprintf(stderr, "reader: %s: %s (it is in every "
						"snapshot)\n",
					anchors[i], strerror(e));
				bad++;
			}
		}
		int dfd = open(data, O_RDONLY | O_DIRECTORY);
		if (dfd < 0) {
			fprintf(stderr, "reader: open ..data: %s\n", strerror(errno));
			bad++;
			break;
		}
		/* (A) A generation held open stays whole and untorn. */
		struct list names = {0};
		bad += read_generation(dfd, "", &names);
		close(dfd);
		/* (B) In a settled generation that stays live, every name
		 * resolves through the visible links. */
		for (size_t i = 0; i < names.n; i += 1 + names.n / 16) {
			char *l0 = live(), *s0 = settled();
			int e = read_visible(names.v[i], &bad);
			char *l1 = live();
			if (e == ENOENT && same(l0, s0) && same(l0, l1)) {
				char *rel = tu_path(l0, names.v[i]);
				char *in = tu_path(dst, rel);
				if (lstat(in, &st) == 0) {
					fprintf(stderr, "reader: ENOENT for %s in "
							"settled generation %s\n",
						names.v[i], l0);
					bad++;
				}
				free(rel);
				free(in);
			}
			checked += same(l0, s0) && same(l0, l1);
			free(l0);
			free(s0);
			free(l1);
		}
		list_free(&names);
		rounds++;
		if (bad)
			break;
	}
	free(data);
	free(stop);
	fprintf(stderr, "reader: %ld rounds, %ld settled-name checks\n", rounds,
		checked);
	return bad ? 1 : rounds > 0 && checked > 0 ? 0 : 2;
}

/* ---- the test ---- */

static void setup(void)
{
	tmp = tu_mkdtemp_fast();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	logpath = tu_path(tmp, "daemon.log");
	tu_mkdirs(src, 0755);
	const char *s = getenv("ATOMSYNC_SEED");
	seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
	rng = seed;
	fprintf(stderr, "mutation test seed %u (replay: ATOMSYNC_SEED=%u)\n", seed,
		seed);
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(logpath);
	free(tmp);
}

START_TEST(test_no_update_is_ever_lost)
{
	char debounce[16];
	snprintf(debounce, sizeof(debounce), "%d", DEBOUNCE_MS);
	for (int i = 0; i < 12; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		write_file(name, 100 + rnd(2000), 1);
	}
	char *deeper = tu_path(src, "keep/deeper");
	tu_mkdirs(deeper, 0755);
	free(deeper);
	for (int i = 0; i < NANCHORS; i++)
		write_file(anchors[i], 100 + rnd(2000), 1);
	const char *argv[] = {tu_bin(), "--source", src, "--target", dst,
			      "--debounce", debounce, "--log-level", "debug", NULL};
	pid_t d = tu_spawn(argv, logpath);
	struct tu_pair p = {src, dst};
	ck_assert_msg(tu_wait_for(tu_trees_equal, &p, 5000),
		      "seed %u: first publish never converged", seed);
	/* The visible links of the first generation are in place once the
	 * state file names it. */
	for (long long end = tu_now_ms() + tu_scale(5000); tu_now_ms() < end;) {
		char *l = live(), *st = settled();
		int ok = same(l, st);
		free(l);
		free(st);
		if (ok)
			break;
		tu_nap(5);
	}
	pid_t r = fork();
	ck_assert_int_ge(r, 0);
	if (r == 0)
		_exit(reader());

	unsigned ops = 0, bursts = 0;
	while (ops < MIN_OPS) {
		unsigned n = 5 + rnd(30);
		int pauses = rnd(3) == 0;
		for (unsigned i = 0; i < n; i++) {
			one_op();
			if (pauses)
				tu_nap((int)rnd(15));
		}
		ops += n;
		bursts++;
		/* The promise: converged within debounce + 1 s (scaled for
		 * sanitizer and valgrind builds, which run everything slower). */
		if (!tu_wait_for(tu_trees_equal, &p, DEBOUNCE_MS + 1000)) {
			char *why = tu_diff_trees(src, dst);
			kill(d, SIGKILL);
			kill(r, SIGKILL);
			waitpid(r, NULL, 0);
			waitpid(d, NULL, 0);
			char *log = tu_read(logpath, NULL);
			size_t ll = log ? strlen(log) : 0;
			fprintf(stderr, "%s\n", log ? log + (ll > 6000 ? ll - 6000 : 0) : "");
			free(log);
			ck_abort_msg("seed %u: burst %u (%u ops): target did not "
				     "converge within debounce + 1 s: %s",
				     seed, bursts, ops, why);
		}
	}
	tu_write(tmp, "stop-reader", "", 0644);
	int rs = tu_wait_exit(r, 10000);
	ck_assert_int_eq(kill(d, SIGTERM), 0);
	int ds = tu_wait_exit(d, 10000);
	fprintf(stderr, "seed %u: %u ops in %u bursts:", seed, ops, bursts);
	for (int k = 0; k < 10; k++)
		fprintf(stderr, " %s=%u", op_names[k], op_count[k]);
	fprintf(stderr, "\n");
	ck_assert_msg(rs == 0, "seed %u: the reader saw a broken target (%d)", seed, rs);
	ck_assert_msg(ds == 0, "seed %u: daemon exit status %d", seed, ds);
	for (int k = 0; k < 10; k++)
		ck_assert_msg(op_count[k] > 0, "seed %u: no %s operation ran", seed,
			      op_names[k]);
}
END_TEST

static Suite *mutation_suite(void)
{
	Suite *s = suite_create("mutation");
	TCase *tc = tcase_create("random");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_no_update_is_ever_lost);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(mutation_suite());
}
