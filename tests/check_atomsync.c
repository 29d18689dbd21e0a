/* libatomsync through its public API (atomsync.h), linked against the
 * shared library: the Kubernetes AtomicWriter tests
 * (pkg/volume/util/atomic_writer_test.go) table by table, then the
 * options, errors and what the library must not do (print, keep the
 * caller's memory). */
#include "config.h"

#include <atomsync.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "snapshot.h"
#include "testutil.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAXF 12

/* A FileProjection: data is a string unless len says otherwise. */
struct pf {
	const char *path;
	mode_t mode;
	const char *data;
	size_t len;
};

static char *tmp, *dst;

static void setup(void)
{
	tmp = tu_mkdtemp();
	dst = tu_path(tmp, "dst");
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(dst);
	free(tmp);
}

static size_t pf_len(const struct pf *f)
{
	return f->len ? f->len : f->data ? strlen(f->data) : 0;
}

static size_t pf_count(const struct pf *p)
{
	size_t n = 0;
	while (n < MAXF && p[n].path)
		n++;
	return n;
}

static struct atomsync_writer *open_writer(const struct atomsync_options *o)
{
	struct atomsync_writer *w = NULL;
	int rc = atomsync_writer_open(dst, o, &w);
	ck_assert_msg(rc == 0, "atomsync_writer_open: %s",
		      atomsync_writer_error(w));
	return w;
}

/* Kubernetes' own writer: no grace period to wait for. */
static struct atomsync_writer *k8s_writer(void)
{
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.grace_ms = 0;
	return open_writer(&o);
}

static int write_pf(struct atomsync_writer *w, const struct pf *p)
{
	struct atomsync_file f[MAXF];
	size_t n = pf_count(p);

	for (size_t i = 0; i < n; i++)
		f[i] = (struct atomsync_file){p[i].path, p[i].data, pf_len(&p[i]),
					      p[i].mode};
	return atomsync_write(w, f, n);
}

/* ---- checkVolumeContents: what readers see through the visible links
 * is the payload, with its exact content and mode ---- */

static struct pf seen[64];
static size_t nseen;
static size_t data_prefix;

static int collect(const char *path, const struct stat *st, int flag,
		   struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F)
		return 0;
	ck_assert_uint_lt(nseen, N(seen));
	size_t len = 0;
	struct pf *f = &seen[nseen++];
	f->path = strdup(path + data_prefix);
	f->data = tu_read(path, &len);
	f->len = len;
	f->mode = st->st_mode & 07777;
	return 0;
}

static void seen_free(void)
{
	for (size_t i = 0; i < nseen; i++) {
		free((char *)seen[i].path);
		free((char *)seen[i].data);
	}
	nseen = 0;
}

/* Walks each visible link's target, as the upstream helper does. */
static void walk_visible(void)
{
	DIR *d = opendir(dst);
	struct dirent *de;

	ck_assert_ptr_nonnull(d);
	seen_free();
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "..", 2) == 0 || strcmp(de->d_name, ".") == 0)
			continue;
		char *p = tu_path(dst, de->d_name), buf[256];
		ssize_t n = readlink(p, buf, sizeof(buf) - 1);
		ck_assert_msg(n > 0, "visible name %s is not a link", de->d_name);
		buf[n] = '\0';
		char *want = tu_path("..data", de->d_name);
		ck_assert_str_eq(buf, want);
		char *data = tu_path(dst, "..data");
		data_prefix = strlen(data) + 1;
		char *real = tu_path(dst, buf);
		ck_assert_int_eq(nftw(real, collect, 16, FTW_PHYS), 0);
		free(real);
		free(data);
		free(want);
		free(p);
	}
	closedir(d);
}

static void check_volume(const struct pf *payload, const char *name)
{
	size_t n = pf_count(payload);

	walk_visible();
	ck_assert_msg(nseen == n, "%s: %zu files seen, %zu in the payload",
		      name, nseen, n);
	for (size_t i = 0; i < n; i++) {
		char *c = snapshot_clean_path(payload[i].path);
		const struct pf *g = NULL;
		for (size_t k = 0; k < nseen && !g; k++)
			if (strcmp(seen[k].path, c) == 0)
				g = &seen[k];
		ck_assert_msg(g != NULL, "%s: %s is missing", name, c);
		ck_assert_msg(g->len == pf_len(&payload[i]) &&
				      memcmp(g->data, payload[i].data, g->len) == 0,
			      "%s: content of %s differs", name, c);
		ck_assert_msg(g->mode == (payload[i].mode ? payload[i].mode : 0644),
			      "%s: mode of %s is %o, want %o", name, c,
			      (unsigned)g->mode, (unsigned)payload[i].mode);
		free(c);
	}
	seen_free();
}

/* ---- TestWriteOnce ---- */

/* 125 bytes of an ELF binary, the upstream test's "mystery binary". */
static const unsigned char mystery[125] = {
	0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x3e, 0x00, 0x01, 0x00, 0x00, 0x00,
	0x78, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x38, 0x00, 0x01, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x7d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7d, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xb0, 0x3c, 0x99, 0x0f, 0x05,
};
#define BIN ((const char *)mystery), sizeof(mystery)

static const struct {
	const char *name;
	struct pf payload[MAXF];
	int success;
} write_once[] = {
	{"invalid payload 1",
	 {{"foo", 0644, "foo", 0}, {"..bar", 0644, "bar", 0},
	  {"binary.bin", 0644, BIN}},
	 0},
	{"invalid payload 2", {{"foo/../bar", 0644, "foo", 0}}, 0},
	{"basic 1", {{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0}}, 1},
	{"basic 2", {{"binary.bin", 0644, BIN}, {".binary.bin", 0644, BIN}}, 1},
	{"basic mode 1", {{"foo", 0777, "foo", 0}, {"bar", 0400, "bar", 0}}, 1},
	{"dotfiles",
	 {{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0},
	  {".dotfile", 0644, "dotfile", 0},
	  {".dotfile.file", 0644, "dotfile.file", 0}},
	 1},
	{"dotfiles mode",
	 {{"foo", 0407, "foo", 0}, {"bar", 0440, "bar", 0},
	  {".dotfile", 0777, "dotfile", 0},
	  {".dotfile.file", 0666, "dotfile.file", 0}},
	 1},
	{"subdirectories 1",
	 {{"foo/bar.txt", 0644, "foo/bar", 0},
	  {"bar/zab.txt", 0644, "bar/zab.txt", 0}},
	 1},
	{"subdirectories mode 1",
	 {{"foo/bar.txt", 0400, "foo/bar", 0},
	  {"bar/zab.txt", 0644, "bar/zab.txt", 0}},
	 1},
	{"subdirectories 2",
	 {{"foo//bar.txt", 0644, "foo//bar", 0},
	  {"bar///bar/zab.txt", 0644, "bar/../bar/zab.txt", 0}},
	 1},
	{"subdirectories 3",
	 {{"foo/bar.txt", 0644, "foo/bar", 0},
	  {"bar/zab.txt", 0644, "bar/zab.txt", 0},
	  {"foo/blaz/bar.txt", 0644, "foo/blaz/bar", 0},
	  {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt", 0}},
	 1},
	{"kitchen sink",
	 {{"foo.log", 0644, "foo", 0}, {"bar.zap", 0644, "bar", 0},
	  {".dotfile", 0644, "dotfile", 0},
	  {"foo/bar.txt", 0644, "foo/bar", 0},
	  {"bar/zab.txt", 0644, "bar/zab.txt", 0},
	  {"foo/blaz/bar.txt", 0644, "foo/blaz/bar", 0},
	  {"bar/zib/zab.txt", 0400, "bar/zib/zab.txt", 0},
	  {"1/2/3/4/5/6/7/8/9/10/.dotfile.lib", 0777, "1-2-3-dotfile", 0}},
	 1},
};

START_TEST(test_write_once)
{
	struct atomsync_writer *w = k8s_writer();
	int rc = write_pf(w, write_once[_i].payload);

	if (write_once[_i].success) {
		ck_assert_msg(rc == 0, "%s: %s", write_once[_i].name,
			      atomsync_writer_error(w));
		check_volume(write_once[_i].payload, write_once[_i].name);
	} else {
		ck_assert_msg(rc == -EINVAL, "%s: rc %d", write_once[_i].name, rc);
		const char *e = atomsync_writer_error(w);
		ck_assert_msg(e && strstr(e, "invalid path") && !strchr(e, '\n'),
			      "%s: one line naming the path: %s",
			      write_once[_i].name, e);
		/* Nothing was written: no generation, no visible name. */
		ck_assert_int_eq(tu_generations(dst), 0);
		ck_assert_int_eq(tu_count_entries(dst), 0);
	}
	atomsync_writer_close(w);
}
END_TEST

/* ---- TestUpdate ---- */

static const struct {
	const char *name;
	struct pf first[MAXF], next[MAXF];
	int should_write;
} update[] = {
	{"update", {{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0}},
	 {{"foo", 0644, "foo2", 0}, {"bar", 0640, "bar2", 0}}, 1},
	{"no update", {{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0}},
	 {{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0}}, 0},
	{"no update 2",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0}}, 0},
	{"add 1",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0},
	  {"blu/zip.txt", 0644, "zip", 0}},
	 1},
	{"add 2",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0},
	  {"blu/two/2/3/4/5/zip.txt", 0644, "zip", 0}},
	 1},
	{"add 3",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0},
	  {"bar/2/3/4/5/zip.txt", 0644, "zip", 0}},
	 1},
	{"delete 1",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}}, 1},
	{"delete 2",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/1/2/3/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}}, 1},
	{"delete 3",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/1/2/sip.txt", 0644, "sip", 0},
	  {"bar/1/2/3/zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/1/2/sip.txt", 0644, "sip", 0}},
	 1},
	{"delete 4",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/1/2/sip.txt", 0644, "sip", 0},
	  {"bar/1/2/3/4/5/6zab.txt", 0644, "bar", 0}},
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/1/2/sip.txt", 0644, "sip", 0}},
	 1},
	{"delete all",
	 {{"foo/bar.txt", 0644, "foo", 0}, {"bar/1/2/sip.txt", 0644, "sip", 0},
	  {"bar/1/2/3/4/5/6zab.txt", 0644, "bar", 0}},
	 {{NULL, 0, NULL, 0}}, 1},
	{"add and delete 1", {{"foo/bar.txt", 0644, "foo", 0}},
	 {{"bar/baz.txt", 0644, "baz", 0}}, 1},
};

START_TEST(test_update)
{
	struct atomsync_writer *w = k8s_writer();

	ck_assert_msg(write_pf(w, update[_i].first) == 0, "%s: %s",
		      update[_i].name, atomsync_writer_error(w));
	check_volume(update[_i].first, update[_i].name);
	char *gen = strdup(atomsync_writer_generation(w));
	ck_assert_msg(write_pf(w, update[_i].next) == 0, "%s: %s",
		      update[_i].name, atomsync_writer_error(w));
	check_volume(update[_i].next, update[_i].name);
	/* An unchanged payload writes nothing: the same generation. */
	ck_assert_msg((strcmp(gen, atomsync_writer_generation(w)) != 0) ==
			      update[_i].should_write,
		      "%s: generation %s -> %s", update[_i].name, gen,
		      atomsync_writer_generation(w));
	ck_assert_int_eq(tu_generations(dst), 1);
	free(gen);
	atomsync_writer_close(w);
}
END_TEST

/* ---- TestMultipleUpdates ---- */

static const struct {
	const char *name;
	struct pf payloads[4][MAXF];
	int n;
} multiple[] = {
	{"update 1",
	 {{{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0}},
	  {{"foo", 0400, "foo2", 0}, {"bar", 0400, "bar2", 0}},
	  {{"foo", 0600, "foo3", 0}, {"bar", 0600, "bar3", 0}}},
	 3},
	{"update 2",
	 {{{"foo/bar.txt", 0644, "foo/bar", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt", 0}},
	  {{"foo/bar.txt", 0644, "foo/bar2", 0},
	   {"bar/zab.txt", 0400, "bar/zab.txt2", 0}}},
	 2},
	{"clear sentinel",
	 {{{"foo", 0644, "foo", 0}, {"bar", 0644, "bar", 0}},
	  {{"foo", 0644, "foo2", 0}, {"bar", 0644, "bar2", 0}},
	  {{"foo", 0644, "foo3", 0}, {"bar", 0644, "bar3", 0}},
	  {{"foo", 0644, "foo4", 0}, {"bar", 0644, "bar4", 0}}},
	 4},
	{"subdirectories 2",
	 {{{"foo/bar.txt", 0644, "foo/bar", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar", 0},
	   {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt", 0}},
	  {{"foo/bar.txt", 0644, "foo/bar2", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt2", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2", 0},
	   {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2", 0}}},
	 2},
	{"add 1",
	 {{{"foo/bar.txt", 0644, "foo/bar", 0},
	   {"bar//zab.txt", 0644, "bar/zab.txt", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar", 0},
	   {"bar/zib////zib/zab.txt", 0644, "bar/zib/zab.txt", 0}},
	  {{"foo/bar.txt", 0644, "foo/bar2", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt2", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2", 0},
	   {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2", 0},
	   {"add/new/keys.txt", 0644, "addNewKeys", 0}}},
	 2},
	{"add 2",
	 {{{"foo/bar.txt", 0644, "foo/bar2", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt2", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2", 0},
	   {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2", 0},
	   {"add/new/keys.txt", 0644, "addNewKeys", 0}},
	  {{"foo/bar.txt", 0644, "foo/bar2", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt2", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar2", 0},
	   {"bar/zib/zab.txt", 0644, "bar/zib/zab.txt2", 0},
	   {"add/new/keys.txt", 0644, "addNewKeys", 0},
	   {"add/new/keys2.txt", 0644, "addNewKeys2", 0},
	   {"add/new/keys3.txt", 0644, "addNewKeys3", 0}}},
	 2},
	{"remove 1",
	 {{{"foo/bar.txt", 0644, "foo/bar", 0},
	   {"bar//zab.txt", 0644, "bar/zab.txt", 0},
	   {"foo/blaz/bar.txt", 0644, "foo/blaz/bar", 0},
	   {"zip/zap/zup/fop.txt", 0644, "zip/zap/zup/fop.txt", 0}},
	  {{"foo/bar.txt", 0644, "foo/bar2", 0},
	   {"bar/zab.txt", 0644, "bar/zab.txt2", 0}},
	  {{"foo/bar.txt", 0644, "foo/bar", 0}}},
	 3},
};

START_TEST(test_multiple_updates)
{
	struct atomsync_writer *w = k8s_writer();

	for (int k = 0; k < multiple[_i].n; k++) {
		ck_assert_msg(write_pf(w, multiple[_i].payloads[k]) == 0,
			      "%s: step %d: %s", multiple[_i].name, k,
			      atomsync_writer_error(w));
		check_volume(multiple[_i].payloads[k], multiple[_i].name);
	}
	atomsync_writer_close(w);
}
END_TEST

/* ---- TestPathsToRemove: the paths of the old generation that the new
 * one no longer has, as a set ---- */

#define MAXP 16

static const struct {
	const char *name;
	struct pf payload1[MAXF], payload2[MAXF];
	const char *expected[MAXP];
} to_remove[] = {
	{"simple", {{"foo.txt", 0644, "foo", 0}, {"bar.txt", 0644, "bar", 0}},
	 {{"foo.txt", 0644, "foo", 0}}, {"bar.txt"}},
	{"simple 2",
	 {{"foo.txt", 0644, "foo", 0}, {"zip/bar.txt", 0644, "zip/b}ar", 0}},
	 {{"foo.txt", 0644, "foo", 0}}, {"zip/bar.txt", "zip"}},
	{"subdirs 1",
	 {{"foo.txt", 0644, "foo", 0}, {"zip/zap/bar.txt", 0644, "zip/bar", 0}},
	 {{"foo.txt", 0644, "foo", 0}}, {"zip/zap/bar.txt", "zip", "zip/zap"}},
	{"subdirs 2",
	 {{"foo.txt", 0644, "foo", 0},
	  {"zip/1/2/3/4/bar.txt", 0644, "zip/b}ar", 0}},
	 {{"foo.txt", 0644, "foo", 0}},
	 {"zip/1/2/3/4/bar.txt", "zip", "zip/1", "zip/1/2", "zip/1/2/3",
	  "zip/1/2/3/4"}},
	{"subdirs 3",
	 {{"foo.txt", 0644, "foo", 0},
	  {"zip/1/2/3/4/bar.txt", 0644, "zip/b}ar", 0},
	  {"zap/a/b/c/bar.txt", 0644, "zap/bar", 0}},
	 {{"foo.txt", 0644, "foo", 0}},
	 {"zip/1/2/3/4/bar.txt", "zip", "zip/1", "zip/1/2", "zip/1/2/3",
	  "zip/1/2/3/4", "zap", "zap/a", "zap/a/b", "zap/a/b/c",
	  "zap/a/b/c/bar.txt"}},
	{"subdirs 4",
	 {{"foo.txt", 0644, "foo", 0},
	  {"zap/1/2/3/4/bar.txt", 0644, "zip/bar", 0},
	  {"zap/1/2/c/bar.txt", 0644, "zap/bar", 0},
	  {"zap/1/2/magic.txt", 0644, "indigo", 0}},
	 {{"foo.txt", 0644, "foo", 0}, {"zap/1/2/magic.txt", 0644, "indigo", 0}},
	 /* Upstream lists zap/1/2/3/4/bar.txt twice: a set holds it once. */
	 {"zap/1/2/3/4/bar.txt", "zap/1/2/3", "zap/1/2/3/4", "zap/1/2/c",
	  "zap/1/2/c/bar.txt"}},
	{"subdirs 5",
	 {{"foo.txt", 0644, "foo", 0},
	  {"zap/1/2/3/4/bar.txt", 0644, "zip/bar", 0},
	  {"zap/1/2/c/bar.txt", 0644, "zap/bar", 0}},
	 {{"foo.txt", 0644, "foo", 0}, {"zap/1/2/magic.txt", 0644, "indigo", 0}},
	 {"zap/1/2/3/4/bar.txt", "zap/1/2/3", "zap/1/2/3/4", "zap/1/2/c",
	  "zap/1/2/c/bar.txt"}},
};

static char *paths[64];
static size_t npaths;

static int list_path(const char *path, const struct stat *st, int flag,
		     struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level == 0)
		return 0;
	ck_assert_uint_lt(npaths, N(paths));
	paths[npaths++] = strdup(path + data_prefix);
	return 0;
}

/* Every path (files and directories) in the generation `gen`. */
static size_t list_generation(const char *gen, char **out, size_t max)
{
	char *dir = tu_path(dst, gen);

	npaths = 0;
	data_prefix = strlen(dir) + 1;
	ck_assert_int_eq(nftw(dir, list_path, 16, FTW_PHYS), 0);
	ck_assert_uint_le(npaths, max);
	memcpy(out, paths, npaths * sizeof(*out));
	free(dir);
	return npaths;
}

static bool in_list(char *const *v, size_t n, const char *p)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], p) == 0)
			return true;
	return false;
}

START_TEST(test_paths_to_remove)
{
	struct atomsync_writer *w = k8s_writer();
	char *before[64], *after[64];

	ck_assert_int_eq(write_pf(w, to_remove[_i].payload1), 0);
	size_t nb = list_generation(atomsync_writer_generation(w), before, 64);
	ck_assert_int_eq(write_pf(w, to_remove[_i].payload2), 0);
	size_t na = list_generation(atomsync_writer_generation(w), after, 64);

	/* removed = before - after, which must equal the expected set. */
	size_t nexp = 0, nremoved = 0;
	while (nexp < MAXP && to_remove[_i].expected[nexp])
		nexp++;
	for (size_t i = 0; i < nb; i++) {
		if (in_list(after, na, before[i]))
			continue;
		nremoved++;
		ck_assert_msg(in_list((char *const *)to_remove[_i].expected, nexp,
				      before[i]),
			      "%s: %s removed, not expected", to_remove[_i].name,
			      before[i]);
	}
	ck_assert_msg(nremoved == nexp, "%s: %zu removed, want %zu",
		      to_remove[_i].name, nremoved, nexp);
	/* And none of them is still there for readers. */
	for (size_t i = 0; i < nexp; i++) {
		char *rel = tu_path("..data", to_remove[_i].expected[i]);
		char *p = tu_path(dst, rel);
		struct stat st;
		ck_assert_msg(lstat(p, &st) < 0 && errno == ENOENT,
			      "%s: %s is still there", to_remove[_i].name, rel);
		free(p);
		free(rel);
	}
	for (size_t i = 0; i < nb; i++)
		free(before[i]);
	for (size_t i = 0; i < na; i++)
		free(after[i]);
	atomsync_writer_close(w);
}
END_TEST

/* ---- TestValidatePayload: every file empty, mode 0 ---- */

static char *long_path(void)
{
	char *p = malloc(4098);
	memset(p, 'a', 4097); /* maxPathLength + 1 */
	p[4097] = '\0';
	return p;
}

static const struct {
	const char *name;
	const char *paths[3];
	int valid;
	const char *expected[3];
} validate[] = {
	{"valid payload", {"foo", "bar"}, 1, {"foo", "bar"}},
	{"payload with path length > 4096 is invalid", {"(long)"}, 0, {NULL}},
	{"payload with absolute path is invalid", {"/dev/null"}, 0, {NULL}},
	{"payload with reserved path is invalid", {"..sneaky.txt"}, 0, {NULL}},
	{"payload with doubledot path is invalid", {"foo/../etc/password"}, 0,
	 {NULL}},
	{"payload with empty path is invalid", {""}, 0, {NULL}},
	{"payload with unclean path should be cleaned", {"foo////bar"}, 1,
	 {"foo/bar"}},
};

START_TEST(test_validate_payload)
{
	struct atomsync_writer *w = k8s_writer();
	struct atomsync_file f[3];
	char *lp = long_path();
	size_t n = 0;

	for (; n < 3 && validate[_i].paths[n]; n++) {
		const char *p = validate[_i].paths[n];
		f[n] = (struct atomsync_file){
			strcmp(p, "(long)") == 0 ? lp : p, NULL, 0, 0};
	}
	int rc = atomsync_write(w, f, n);
	if (!validate[_i].valid) {
		ck_assert_msg(rc < 0, "%s: unexpected success", validate[_i].name);
		const char *e = atomsync_writer_error(w);
		ck_assert_msg(e && strstr(e, "invalid path"), "%s: %s",
			      validate[_i].name, e);
		ck_assert_int_eq(tu_generations(dst), 0);
	} else {
		ck_assert_msg(rc == 0, "%s: %s", validate[_i].name,
			      atomsync_writer_error(w));
		char *got[8];
		size_t ng = list_generation(atomsync_writer_generation(w), got, 8);
		size_t files = 0;
		for (size_t i = 0; i < ng; i++) {
			char *p = tu_path(dst, "..data");
			char *q = tu_path(p, got[i]);
			struct stat st;
			ck_assert_int_eq(lstat(q, &st), 0);
			if (S_ISREG(st.st_mode)) {
				files++;
				ck_assert_msg(in_list((char *const *)validate[_i].expected,
						      n, got[i]),
					      "%s: unexpected %s", validate[_i].name,
					      got[i]);
				ck_assert_int_eq(st.st_size, 0);
			}
			free(q);
			free(p);
			free(got[i]);
		}
		ck_assert_uint_eq(files, n);
	}
	free(lp);
	atomsync_writer_close(w);
}
END_TEST

/* ---- TestCreateUserVisibleFiles ---- */

static const struct {
	const char *name;
	const char *paths[4];
	const char *links[4]; /* visible name, then its target */
	const char *error;    /* or the error it must give */
} visible[] = {
	{"simple path", {"foo", "bar"},
	 {"foo", "..data/foo", "bar", "..data/bar"}, NULL},
	/* foo/bar is a file and has foo/bar/txt below it: upstream makes the
	 * links before it writes (and fails); atomsync refuses the payload
	 * whole and makes nothing. */
	{"simple nested path", {"foo/bar", "foo/bar/txt", "bar/txt"}, {NULL},
	 "payload: foo/bar is a file but foo/bar/txt is below it"},
	{"unclean nested path", {"./bar", "foo///bar"},
	 {"bar", "..data/bar", "foo", "..data/foo"}, NULL},
};

START_TEST(test_create_user_visible_files)
{
	struct atomsync_writer *w = k8s_writer();
	struct atomsync_file f[4];
	size_t n = 0;

	for (; n < 4 && visible[_i].paths[n]; n++)
		f[n] = (struct atomsync_file){visible[_i].paths[n], "", 0, 0};
	int rc = atomsync_write(w, f, n);
	if (visible[_i].error) {
		ck_assert_int_eq(rc, -EINVAL);
		ck_assert_msg(strstr(atomsync_writer_error(w), visible[_i].error),
			      "%s: %s", visible[_i].name, atomsync_writer_error(w));
		ck_assert_int_eq(tu_count_entries(dst), 0);
	} else {
		ck_assert_msg(rc == 0, "%s", atomsync_writer_error(w));
		for (size_t i = 0; i < 4 && visible[_i].links[i]; i += 2) {
			char *p = tu_path(dst, visible[_i].links[i]), buf[64];
			ssize_t k = readlink(p, buf, sizeof(buf) - 1);
			ck_assert_msg(k > 0, "%s: %s is not a link", visible[_i].name,
				      p);
			buf[k] = '\0';
			ck_assert_str_eq(buf, visible[_i].links[i + 1]);
			free(p);
		}
	}
	atomsync_writer_close(w);
}
END_TEST

/* ---- Options ---- */

static void assert_stat(const char *rel, mode_t mode, uid_t uid, gid_t gid)
{
	char *p = tu_path(dst, rel);
	struct stat st;

	ck_assert_msg(stat(p, &st) == 0, "%s: %s", p, strerror(errno));
	ck_assert_msg((st.st_mode & 07777) == mode, "%s: mode %o, want %o", rel,
		      (unsigned)(st.st_mode & 07777), (unsigned)mode);
	ck_assert_msg(st.st_uid == uid && st.st_gid == gid,
		      "%s: owner %u:%u, want %u:%u", rel, (unsigned)st.st_uid,
		      (unsigned)st.st_gid, (unsigned)uid, (unsigned)gid);
	free(p);
}

static const struct pf nested[] = {
	{"conf/app.ini", 0600, "[app]\n", 0},
	{"conf/tls/key.pem", 0644, "KEY", 0},
	{"top.txt", 0, "top", 0},
	{NULL, 0, NULL, 0},
};

START_TEST(test_defaults_modes_and_owner)
{
	struct atomsync_writer *w = open_writer(NULL);

	ck_assert_int_eq(write_pf(w, nested), 0);
	/* Each file's own mode (0: 0644), directories 0755, our owner. */
	assert_stat("conf/app.ini", 0600, geteuid(), getegid());
	assert_stat("conf/tls/key.pem", 0644, geteuid(), getegid());
	assert_stat("top.txt", 0644, geteuid(), getegid());
	assert_stat("conf/tls", 0755, geteuid(), getegid());
	assert_stat("..data", 0755, geteuid(), getegid());
	atomsync_writer_close(w);
}
END_TEST

START_TEST(test_file_mode_and_dir_mode_apply_to_every_entry)
{
	struct atomsync_options o;

	atomsync_options_init(&o);
	o.file_mode = 0440;
	o.dir_mode = 0750;
	struct atomsync_writer *w = open_writer(&o);
	ck_assert_int_eq(write_pf(w, nested), 0);
	assert_stat("conf/app.ini", 0440, geteuid(), getegid());
	assert_stat("conf/tls/key.pem", 0440, geteuid(), getegid());
	assert_stat("top.txt", 0440, geteuid(), getegid());
	assert_stat("conf", 0750, geteuid(), getegid());
	assert_stat("conf/tls", 0750, geteuid(), getegid());
	atomsync_writer_close(w);
}
END_TEST

static int other_reads(void *arg)
{
	char *d = tu_read(arg, NULL);
	int ok = d && strcmp(d, "KEY") == 0;
	free(d);
	return ok ? 0 : 1;
}

START_TEST(test_owner_and_group_are_given_to_every_entry)
{
	ck_assert_msg(tu_can_setuid(), "this test gives files to other users: "
				       "run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.uid = 2001;
	o.gid = 2002;
	o.file_mode = 0400;
	o.dir_mode = 0500;
	struct atomsync_writer *w = open_writer(&o);
	ck_assert_int_eq(write_pf(w, nested), 0);
	assert_stat("conf/app.ini", 0400, 2001, 2002);
	assert_stat("conf/tls/key.pem", 0400, 2001, 2002);
	assert_stat("conf/tls", 0500, 2001, 2002);
	assert_stat("top.txt", 0400, 2001, 2002);
	/* Uid 2001 reads its key through the visible link; 2003 cannot. */
	char *key = tu_path(dst, "conf/tls/key.pem");
	ck_assert_int_eq(tu_call_as(2001, other_reads, key), 0);
	ck_assert_int_ne(tu_call_as(2003, other_reads, key), 0);
	/* Unchanged: the owner is part of what is compared. */
	char *gen = strdup(atomsync_writer_generation(w));
	ck_assert_int_eq(write_pf(w, nested), 0);
	ck_assert_str_eq(gen, atomsync_writer_generation(w));
	free(gen);
	free(key);
	atomsync_writer_close(w);
}
END_TEST

START_TEST(test_bad_modes_and_options_are_refused)
{
	struct atomsync_writer *w = open_writer(NULL);
	const struct pf setuid[] = {{"run.sh", 04755, "#!/bin/sh\n", 0},
				    {NULL, 0, NULL, 0}};

	ck_assert_int_eq(write_pf(w, setuid), -EINVAL);
	ck_assert_ptr_nonnull(strstr(atomsync_writer_error(w), "run.sh"));
	ck_assert_int_eq(tu_generations(dst), 0);
	/* Size but no data. */
	struct atomsync_file f = {"x", NULL, 3, 0644};
	ck_assert_int_eq(atomsync_write(w, &f, 1), -EINVAL);
	ck_assert_ptr_nonnull(strstr(atomsync_writer_error(w), "x"));
	atomsync_writer_close(w);

	struct atomsync_options o;
	atomsync_options_init(&o);
	o.file_mode = 01777;
	ck_assert_int_eq(atomsync_writer_open(dst, &o, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(atomsync_writer_error(w), "file_mode"));
	atomsync_writer_close(w);
	/* Flags that are neither 0 nor 1, a grace period over an hour. */
	struct atomsync_options bad[3];
	for (size_t i = 0; i < 3; i++)
		atomsync_options_init(&bad[i]);
	bad[0].fsync = 7;
	bad[1].allow_empty = -1;
	bad[2].grace_ms = 3600001;
	const char *named[] = {"fsync 7", "allow_empty -1", "grace_ms 3600001"};
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(atomsync_writer_open(dst, &bad[i], &w), -EINVAL);
		ck_assert_msg(strstr(atomsync_writer_error(w), named[i]), "%s",
			      atomsync_writer_error(w));
		atomsync_writer_close(w);
	}
	/* A newer caller's struct: known fields, then unknown ones. */
	struct {
		struct atomsync_options o;
		long future;
	} big = {.o = o, .future = 0};
	big.o.file_mode = -1;
	big.o.size = sizeof(big);
	ck_assert_int_eq(atomsync_writer_open(dst, &big.o, &w), 0);
	atomsync_writer_close(w);
	big.future = 1;
	ck_assert_int_eq(atomsync_writer_open(dst, &big.o, &w), -EINVAL);
	atomsync_writer_close(w);
	o.size = 0;
	ck_assert_int_eq(atomsync_writer_open(dst, &o, &w), -EINVAL);
	atomsync_writer_close(w);
}
END_TEST

/* ---- The target: created and locked as the daemon does ---- */

START_TEST(test_open_creates_and_locks_the_target)
{
	struct atomsync_writer *w = open_writer(NULL), *w2 = NULL;
	struct stat st;

	ck_assert_int_eq(stat(dst, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0755);
	ck_assert_int_eq(atomsync_writer_open(dst, NULL, &w2), -EBUSY);
	ck_assert_ptr_nonnull(strstr(atomsync_writer_error(w2), dst));
	atomsync_writer_close(w2);
	atomsync_writer_close(w);

	char *deep = tu_path(tmp, "missing/target");
	ck_assert_int_eq(atomsync_writer_open(deep, NULL, &w), -ENOENT);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "missing") && !strchr(e, '\n'), "%s", e);
	atomsync_writer_close(w);
	free(deep);
}
END_TEST

/* A path as deep as the limits allow (4,095 bytes, 2,047 directories)
 * is one write's work, not one pass and one sort per level (that took
 * 47 s of CPU).  Each level is open while it is written: the test
 * allows the descriptors that takes. */
START_TEST(test_a_path_as_deep_as_allowed_is_written)
{
	struct rlimit rl;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	ck_assert_msg(rl.rlim_cur >= 2200, "needs 2,200 descriptors, has %lu",
		      (unsigned long)rl.rlim_cur);
	char *p = malloc(4096);
	for (int i = 0; i < 2047; i++)
		memcpy(p + 2 * i, "a/", 2);
	memcpy(p + 4094, "f", 2);
	/* Not flushed: 2,047 new directories are flushed with syncfs(2),
	 * which waits for whatever else the file system holds unwritten
	 * (the other tests' files, under make -j): not what is timed. */
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.grace_ms = 0;
	o.fsync = 0;
	struct atomsync_writer *w = open_writer(&o);
	struct atomsync_file f = {p, "deep", 4, 0644};
	ck_assert_msg(atomsync_write(w, &f, 1) == 0, "%s",
		      atomsync_writer_error(w));
	/* From the target: its path and p are past PATH_MAX together. */
	char got[8] = "";
	int d = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = openat(d, p, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, got, sizeof(got) - 1), 4);
	ck_assert_str_eq(got, "deep");
	close(fd);
	close(d);
	atomsync_writer_close(w);
	free(p);
}
END_TEST

/* A directory that was never a target, holding what looks like a
 * generation: someone's data, refused rather than removed as a leftover;
 * moved away, the directory becomes a target. */
START_TEST(test_a_generation_name_in_a_new_target_is_not_removed)
{
	char *gen = tu_path(dst, "..2020_01_01_00_00_00.000000000");
	char *lock = tu_path(dst, "..atomsync.lock"), *kept = tu_path(tmp, "kept");
	struct atomsync_writer *w = NULL;

	tu_write(gen, "data", "theirs\n", 0644);
	ck_assert_int_eq(atomsync_writer_open(dst, NULL, &w), -EEXIST);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "..2020_01_01_00_00_00.000000000 looks "
				     "like atomsync's"),
		      "%s", e);
	atomsync_writer_close(w);
	char *data = tu_path(gen, "data"), *got = tu_read(data, NULL);
	ck_assert_str_eq(got, "theirs\n");
	ck_assert_int_ne(access(lock, F_OK), 0);
	ck_assert_int_eq(rename(gen, kept), 0);
	w = open_writer(NULL);
	atomsync_writer_close(w);
	free(got);
	free(data);
	free(kept);
	free(lock);
	free(gen);
}
END_TEST

/* Nor is a lock file that names no target (an empty one, say), or a
 * file named like the state file that is not one, a sign that the
 * directory was a target: the name like a generation's is still
 * refused, and what they hold stays, however often it is opened (a
 * refused open leaves the lock file as it found it). */
START_TEST(test_a_lock_or_state_file_of_no_target_removes_nothing)
{
	char *gen = tu_path(dst, "..2020_01_01_00_00_00.000000000");
	char *data = tu_path(gen, "data");
	const char *const signs[] = {"..atomsync.lock", "..atomsync"};

	tu_write(gen, "data", "theirs\n", 0644);
	for (int k = 0; k < 2; k++) {
		struct atomsync_writer *w = NULL;
		char *sign = tu_path(dst, signs[k]);
		tu_write(dst, signs[k], k ? "not a state file\n" : "", 0600);
		for (int again = 0; again < 2; again++) {
			w = NULL;
			ck_assert_int_eq(atomsync_writer_open(dst, NULL, &w),
					 -EEXIST);
			const char *e = atomsync_writer_error(w);
			ck_assert_msg(e && strstr(e, "looks like atomsync's"),
				      "%s", e);
			atomsync_writer_close(w);
		}
		char *got = tu_read(data, NULL);
		ck_assert_str_eq(got, "theirs\n");
		ck_assert_int_eq(unlink(sign), 0);
		free(got);
		free(sign);
	}
	free(data);
	free(gen);
}
END_TEST

/* A directory at a name a publish gives its temporary links and files
 * is someone's: left, with all it holds, where a link or file at that
 * name, which an interrupted publish leaves, is removed. */
START_TEST(test_a_directory_at_a_temporary_name_is_left)
{
	const char *const names[] = {"..data_tmp", "..atomsync.tmp",
				     "..atomsync.link.7"};
	struct atomsync_file f = {"x", "1", 1, 0644};
	struct atomsync_writer *w = open_writer(NULL);

	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	atomsync_writer_close(w);
	for (int k = 0; k < 3; k++) {
		char *d = tu_path(dst, names[k]);
		tu_write(d, "kept", "theirs\n", 0644);
		free(d);
	}
	char *link = tu_path(dst, "..atomsync.link.8");
	ck_assert_int_eq(symlink("..data/x", link), 0);
	w = open_writer(NULL);
	atomsync_writer_close(w);
	for (int k = 0; k < 3; k++) {
		char *d = tu_path(dst, names[k]), *kf = tu_path(d, "kept");
		char *got = tu_read(kf, NULL);
		ck_assert_msg(got && strcmp(got, "theirs\n") == 0, "%s: %s",
			      names[k], got ? got : "gone");
		free(got);
		free(kf);
		free(d);
	}
	struct stat st;
	ck_assert_int_ne(lstat(link, &st), 0);
	free(link);
}
END_TEST

/* Any refusal at open leaves a directory that was no target as it was:
 * without the lock file the refused writer made. */
START_TEST(test_a_refused_open_takes_its_lock_file_away)
{
	char *data = tu_path(dst, "..data"), *lock = tu_path(dst, "..atomsync.lock");
	struct atomsync_writer *w = NULL;

	ck_assert_int_eq(mkdir(dst, 0755), 0);
	ck_assert_int_eq(symlink("elsewhere", data), 0);
	ck_assert_int_eq(atomsync_writer_open(dst, NULL, &w), -EEXIST);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "not to a generation of ours"), "%s", e);
	atomsync_writer_close(w);
	ck_assert_int_ne(access(lock, F_OK), 0);
	ck_assert_int_eq(unlink(data), 0);
	tu_write(dst, "..data", "a file\n", 0644);
	w = NULL;
	ck_assert_int_lt(atomsync_writer_open(dst, NULL, &w), 0);
	atomsync_writer_close(w);
	ck_assert_int_ne(access(lock, F_OK), 0);
	char *got = tu_read(data, NULL);
	ck_assert_str_eq(got, "a file\n");
	free(got);
	free(lock);
	free(data);
}
END_TEST

/* Retiring with `wait` waits out the grace period of each replaced
 * generation (2 s here), not the one more a generation kept to be
 * recycled may then stay for (4 s in all). */
START_TEST(test_retire_waits_one_grace_period)
{
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.grace_ms = 2000;
	struct atomsync_writer *w = open_writer(&o);
	const char *v[] = {"1", "22", "333"};

	long long before = 0;
	for (int k = 0; k < 3; k++) {
		struct atomsync_file f = {"a", v[k], strlen(v[k]), 0644};
		before = tu_now_ms();
		ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	}
	/* The last one replaced is due 2 s after its write began, at
	 * the earliest; the first leaves the reserve 4 s after its own. */
	long long after = tu_now_ms();
	ck_assert_int_eq(atomsync_writer_retire(w, 1), 0);
	long long end = tu_now_ms();
	ck_assert_msg(end - before >= 2000,
		      "retire returned %lld ms after the write began",
		      end - before);
	ck_assert_msg(end - after < tu_scale(3500),
		      "retire waited %lld ms, past the grace period",
		      end - after);
	atomsync_writer_close(w);
}
END_TEST

/* A writer that never published (a plain file in the way) leaves the
 * directory as it found it when closed: its own data, no lock file.
 * Once a target, it keeps its lock file. */
START_TEST(test_a_writer_that_never_published_takes_its_lock_file_away)
{
	char *lock = tu_path(dst, "..atomsync.lock"), *a = tu_path(dst, "a");
	struct atomsync_file f = {"a", "1", 1, 0644};
	struct atomsync_writer *w;

	tu_write(dst, "a", "theirs\n", 0644);
	w = open_writer(NULL);
	ck_assert_int_eq(access(lock, F_OK), 0);
	ck_assert_int_eq(atomsync_write(w, &f, 1), -EEXIST);
	atomsync_writer_close(w);
	ck_assert_int_ne(access(lock, F_OK), 0);
	char *got = tu_read(a, NULL);
	ck_assert_str_eq(got, "theirs\n");
	/* Nothing written at all: the same. */
	atomsync_writer_close(open_writer(NULL));
	ck_assert_int_ne(access(lock, F_OK), 0);
	ck_assert_int_eq(unlink(a), 0);
	w = open_writer(NULL);
	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	atomsync_writer_close(w);
	ck_assert_int_eq(access(lock, F_OK), 0);
	free(got);
	free(a);
	free(lock);
}
END_TEST

/* A child made by fork() shares the writer's lock: it is refused, and
 * its close leaves the parent's target as it is; the parent goes on. */
START_TEST(test_a_writer_is_refused_in_a_child_after_fork)
{
	struct atomsync_writer *w = open_writer(NULL);
	struct atomsync_file f = {"a", "1", 1, 0644};
	int status;

	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	char *gen = strdup(atomsync_writer_generation(w));
	pid_t c = fork();
	if (c == 0) {
		int ok = atomsync_write(w, &f, 1) == -EBUSY &&
			 atomsync_writer_retire(w, 0) == -EBUSY &&
			 atomsync_write_tree(w, tmp) == -EBUSY &&
			 strstr(atomsync_writer_error(w), "fork()") != NULL;
		atomsync_writer_close(w);
		free(gen); /* what valgrind would count lost in the child */
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_gt(c, 0);
	ck_assert_int_eq(waitpid(c, &status, 0), c);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "status %d", status);
	char *live = tu_live(dst);
	ck_assert_str_eq(live, gen);
	f.data = "2";
	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	char *a = tu_path(dst, "a"), *got = tu_read(a, NULL);
	ck_assert_str_eq(got, "2");
	/* Still locked against another writer. */
	struct atomsync_writer *w2 = NULL;
	ck_assert_int_eq(atomsync_writer_open(dst, NULL, &w2), -EBUSY);
	atomsync_writer_close(w2);
	atomsync_writer_close(w);
	ck_assert_int_eq(atomsync_writer_open(dst, NULL, NULL), -EINVAL);
	free(got);
	free(a);
	free(live);
	free(gen);
}
END_TEST

START_TEST(test_target_through_another_users_link_is_refused)
{
	ck_assert_msg(tu_can_setuid(), "this test plants links as another user: "
				       "run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	char *dir = tu_path(tmp, "user"), *secret = tu_path(tmp, "secret");
	tu_mkdirs(dir, 0755);
	tu_mkdirs(secret, 0700);
	ck_assert_int_eq(chown(dir, 2001, 2001), 0);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "ln -s %s %s/link", secret, dir);
	ck_assert_int_eq(tu_sh_as(2001, cmd), 0);
	char *link = tu_path(dir, "link");
	struct atomsync_writer *w = NULL;
	ck_assert_int_eq(atomsync_writer_open(link, NULL, &w), -EPERM);
	ck_assert_ptr_nonnull(strstr(atomsync_writer_error(w), "link"));
	atomsync_writer_close(w);
	ck_assert_int_eq(tu_count_entries(secret), 0);
	free(link);
	free(dir);
	free(secret);
}
END_TEST

/* The user who owns the directory that holds a target can move the
 * target away and put a directory of theirs in its place, for readers
 * to find: the next write, and the next write_tree, are refused, and
 * nothing is written into either; so are they once the target is
 * removed. */
/* What the symbolic link `path` names, allocated. */
static char *link_text(const char *path)
{
	char buf[4096];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	ck_assert_msg(n >= 0, "readlink %s: %s", path, strerror(errno));
	buf[n] = '\0';
	return strdup(buf);
}

/* As uid 2003, into dst (theirs): files whose mode keeps even their
 * owner from reading them, flushed all the same; a dir_mode without the
 * owner's rwx refused at open. */
static int write_unreadable_as_owner(void *arg)
{
	const char *target = arg;
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.grace_ms = 0;
	o.fsync = 1;
	struct atomsync_writer *w = NULL;
	if (atomsync_writer_open(target, &o, &w) != 0)
		return 10;
	const struct pf p[] = {{"pub", 0644, "1", 0},
			       {"secret", 0040, "2", 0},
			       {"wo", 0200, "3", 0},
			       {NULL, 0, NULL, 0}};
	int rc = write_pf(w, p) != 0 ? 11 : write_pf(w, p) != 0 ? 12 : 0;
	atomsync_writer_close(w);
	if (rc)
		return rc;
	o.dir_mode = 0300;
	rc = atomsync_writer_open(target, &o, &w);
	const char *e = atomsync_writer_error(w);
	if (rc != -EINVAL || e == NULL || !strstr(e, "dir_mode 0300"))
		rc = 13;
	else
		rc = 0;
	atomsync_writer_close(w);
	return rc;
}

/* As the caller: opens `arg`, a directory of root's the caller may not
 * write; 0 when refused for that, named so. */
static int open_unwritable(void *arg)
{
	struct atomsync_writer *w = NULL;
	int rc = atomsync_writer_open(arg, NULL, &w);
	const char *e = atomsync_writer_error(w);

	rc = rc == -EACCES && e && strstr(e, "cannot be made: Permission "
					     "denied")
		     ? 0
		     : 20;
	if (rc)
		fprintf(stderr, "%s\n", e ? e : "no error");
	atomsync_writer_close(w);
	return rc;
}

/* A writer not root, in a directory of root's with no lock file, is
 * told it cannot make one, not that another user owns it. */
START_TEST(test_a_writer_not_root_is_told_it_cannot_make_the_lock)
{
	ck_assert_msg(tu_can_setuid(), "this test opens as another user: run "
				       "it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(tu_call_as(2003, open_unwritable, dst), 0);
}
END_TEST

START_TEST(test_a_writer_not_root_flushes_what_its_owner_may_not_read)
{
	ck_assert_msg(tu_can_setuid(), "this test writes as another user: run "
				       "it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(chown(dst, 2003, 2003), 0);
	ck_assert_int_eq(tu_call_as(2003, write_unreadable_as_owner, dst), 0);
	const char *names[] = {"pub", "secret", "wo"};
	const mode_t modes[] = {0644, 0040, 0200};
	for (size_t i = 0; i < N(names); i++) {
		char *f = tu_path(dst, names[i]);
		struct stat st;
		ck_assert_int_eq(stat(f, &st), 0);
		ck_assert_uint_eq(st.st_mode & 07777, modes[i]);
		ck_assert_uint_eq(st.st_uid, 2003);
		free(f);
	}
}
END_TEST

/* A record of the last error that atomsyncd left in the target (which
 * --status shows) goes once a write goes through; a write that fails
 * records none. */
START_TEST(test_a_record_of_an_error_goes_once_a_write_works)
{
	struct atomsync_writer *w = k8s_writer();
	const struct pf good[] = {{"a", 0644, "1", 0}, {NULL, 0, NULL, 0}};
	const struct pf bad[] = {{"../a", 0644, "1", 0}, {NULL, 0, NULL, 0}};
	char *rec = tu_path(dst, "..atomsync.error");

	ck_assert_int_eq(write_pf(w, good), 0);
	atomsync_writer_close(w);
	tu_write(dst, "..atomsync.error",
		 "atomsync-error 1\n1764979200000\ntarget: a hook failed\n", 0600);
	w = k8s_writer();
	ck_assert_int_eq(write_pf(w, bad), -EINVAL);
	char *text = tu_read(rec, NULL);
	ck_assert_msg(strstr(text, "a hook failed"), "%s", text);
	free(text);
	ck_assert_int_eq(write_pf(w, good), 0);
	ck_assert_int_ne(access(rec, F_OK), 0);
	atomsync_writer_close(w);
	free(rec);
}
END_TEST

/* As uid 2003: a tree whose directory, another user's, keeps its owner
 * out (0055) but not 2003 (others may read and search). */
static int write_tree_as_2003(void *arg)
{
	char **a = arg;
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.grace_ms = 0;
	o.fsync = 1;
	struct atomsync_writer *w = NULL;
	if (atomsync_writer_open(a[0], &o, &w) != 0)
		return 10;
	int rc = atomsync_write_tree(w, a[1]) != 0	? 11
		 : atomsync_write_tree(w, a[1]) != 0 ? 12
						       : 0;
	atomsync_writer_close(w);
	return rc;
}

START_TEST(test_a_writer_not_root_keeps_its_rights_on_its_directories)
{
	ck_assert_msg(tu_can_setuid(), "this test writes as another user: run "
				       "it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	char *src = tu_path(tmp, "src"), *d = tu_path(tmp, "src/d");
	tu_write(src, "d/f", "theirs\n", 0644);
	ck_assert_int_eq(chown(d, 2004, 2004), 0);
	ck_assert_int_eq(chmod(d, 0055), 0);
	tu_mkdirs(dst, 0755);
	ck_assert_int_eq(chown(dst, 2003, 2003), 0);
	char *a[] = {dst, src};
	ck_assert_int_eq(tu_call_as(2003, write_tree_as_2003, a), 0);
	char *pd = tu_path(dst, "d"), *pf = tu_path(dst, "d/f"), *text;
	struct stat st;
	ck_assert_int_eq(stat(pd, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	text = tu_read(pf, NULL);
	ck_assert_str_eq(text, "theirs\n");
	free(text);
	free(pf);
	free(pd);
	free(d);
	free(src);
}
END_TEST

/* An options struct whose size ends inside a field (not a header's) is
 * refused, not read in part. */
START_TEST(test_options_cut_inside_a_field_are_refused)
{
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.size = offsetof(struct atomsync_options, grace_ms) + 2;
	struct atomsync_writer *w = NULL;
	ck_assert_int_eq(atomsync_writer_open(dst, &o, &w), -EINVAL);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "ends inside a field"), "%s", e);
	atomsync_writer_close(w);
	o.size = offsetof(struct atomsync_options, grace_ms);
	ck_assert_int_eq(atomsync_writer_open(dst, &o, &w), 0);
	atomsync_writer_close(w);
}
END_TEST

/* A file system with no inode left for the links of new top-level
 * names: the write fails before ..data moves, and the generation live
 * before it stays whole and in view, not one that lacks names. */
START_TEST(test_no_room_for_new_names_leaves_the_live_generation)
{
	tu_private_mounts();
	char *mnt = tu_path(tmp, "mnt"), *target = tu_path(mnt, "t");
	char *data = tu_path(target, "..data"), *x = tu_path(target, "x");
	tu_mkdirs(mnt, 0755);
	ck_assert_int_eq(mount("tmpfs", mnt, "tmpfs", 0,
			       "size=1m,nr_inodes=64,mode=0755"),
			 0);
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.grace_ms = 0;
	struct atomsync_writer *w = NULL;
	ck_assert_int_eq(atomsync_writer_open(target, &o, &w), 0);
	const struct pf one[] = {{"x", 0644, "1", 0}, {NULL, 0, NULL, 0}};
	ck_assert_int_eq(write_pf(w, one), 0);
	char *live = link_text(data);
	int before = tu_count_entries(target);
	/* Room for the generation of nine files (a directory and nine
	 * files), ..data_tmp and three links: not for nine. */
	struct statvfs sv;
	ck_assert_int_eq(statvfs(mnt, &sv), 0);
	ck_assert_uint_gt(sv.f_ffree, 14);
	for (unsigned long i = 0; i < sv.f_ffree - 14; i++) {
		char name[32];
		snprintf(name, sizeof(name), "hog%lu", i);
		tu_write(mnt, name, "", 0644);
	}
	struct pf nine[10] = {{NULL, 0, NULL, 0}};
	char names[9][4];
	for (int i = 0; i < 9; i++) {
		snprintf(names[i], sizeof(names[i]), "f%d", i);
		nine[i] = (struct pf){names[i], 0644, "2", 0};
	}
	ck_assert_int_eq(write_pf(w, nine), -ENOSPC);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "visible link"), "%s", e ? e : "(none)");
	char *now = link_text(data), *got = tu_read(x, NULL);
	ck_assert_str_eq(now, live);
	ck_assert_str_eq(got, "1");
	ck_assert_int_eq(tu_count_entries(target), before);
	for (unsigned long i = 0; i < sv.f_ffree - 14; i++) {
		char name[32];
		snprintf(name, sizeof(name), "hog%lu", i);
		char *hog = tu_path(mnt, name);
		ck_assert_int_eq(unlink(hog), 0);
		free(hog);
	}
	ck_assert_int_eq(write_pf(w, nine), 0);
	for (int i = 0; i < 9; i++) {
		char *f = tu_path(target, names[i]), *v = tu_read(f, NULL);
		ck_assert_str_eq(v, "2");
		free(v);
		free(f);
	}
	ck_assert_int_eq(access(x, F_OK), -1);
	atomsync_writer_close(w);
	ck_assert_int_eq(umount2(mnt, MNT_DETACH), 0);
	free(got);
	free(now);
	free(live);
	free(x);
	free(data);
	free(target);
	free(mnt);
}
END_TEST

START_TEST(test_a_target_moved_away_is_refused_at_the_next_write)
{
	ck_assert_msg(tu_can_setuid(), "this test moves the target as another "
				       "user: run it as root");
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	char *dir = tu_path(tmp, "user"), *target = tu_path(dir, "tgt");
	char *theirs = tu_path(target, "app.conf");
	char *moved = tu_path(dir, "moved"), *src = tu_path(tmp, "src");
	tu_mkdirs(dir, 0755);
	ck_assert_int_eq(chown(dir, 2001, 2001), 0);
	tu_write(src, "app.conf", "tree", 0644);
	struct atomsync_writer *w = NULL;
	ck_assert_int_eq(atomsync_writer_open(target, NULL, &w), 0);
	const struct pf a[] = {{"app.conf", 0644, "a", 0}, {NULL, 0, NULL, 0}};
	const struct pf b[] = {{"app.conf", 0644, "b", 0}, {NULL, 0, NULL, 0}};
	ck_assert_int_eq(write_pf(w, a), 0);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "mv '%s' '%s' && mkdir '%s' && echo x > '%s'",
		 target, moved, target, theirs);
	ck_assert_int_eq(tu_sh_as(2001, cmd), 0);
	ck_assert_int_eq(write_pf(w, b), -ESTALE);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "no longer leads to the directory this "
				     "writer opened") && !strchr(e, '\n'),
		      "%s", e);
	ck_assert_int_eq(atomsync_write_tree(w, src), -ESTALE);
	ck_assert_int_eq(atomsync_writer_retire(w, 0), -ESTALE);
	ck_assert_int_eq(tu_count_entries(target), 1);
	char *was = tu_path(moved, "app.conf"), *got = tu_read(was, NULL);
	ck_assert_str_eq(got, "a");
	atomsync_writer_close(w);
	/* Removed: refused too, not written where nobody finds it. */
	tu_rmrf(moved);
	ck_assert_int_eq(atomsync_writer_open(moved, NULL, &w), 0);
	tu_rmrf(moved);
	ck_assert_int_eq(write_pf(w, a), -ENOENT);
	e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "was removed; open it again"), "%s", e);
	atomsync_writer_close(w);
	free(got);
	free(was);
	free(src);
	free(moved);
	free(theirs);
	free(target);
	free(dir);
}
END_TEST

/* ---- The library prints nothing; warnings go to the callback ---- */

struct lines {
	int n, warnings;
	char last[512];
};

static void on_log(void *ctx, int priority, const char *msg)
{
	struct lines *l = ctx;
	l->n++;
	l->warnings += priority <= 4;
	snprintf(l->last, sizeof(l->last), "%s", msg);
}

/* Opens a writer on a target holding the debris of a crash (a warning)
 * with stderr going to a file; returns what was written there. */
static char *open_on_debris(const struct atomsync_options *o)
{
	struct atomsync_writer *w = open_writer(NULL);
	const struct pf p[] = {{"a", 0644, "a", 0}, {NULL, 0, NULL, 0}};
	ck_assert_int_eq(write_pf(w, p), 0);
	atomsync_writer_close(w);
	char *tmpl = tu_path(dst, "..data_tmp");
	ck_assert_int_eq(symlink("..nowhere", tmpl), 0);

	char *errf = tu_path(tmp, "stderr");
	int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int saved = dup(STDERR_FILENO);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	int rc = atomsync_writer_open(dst, o, &w);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	ck_assert_int_eq(rc, 0);
	atomsync_writer_close(w);
	struct stat st;
	ck_assert_msg(lstat(tmpl, &st) < 0, "the debris is gone");
	char *out = tu_read(errf, NULL);
	free(errf);
	free(tmpl);
	return out;
}

START_TEST(test_nothing_is_printed_warnings_go_to_the_callback)
{
	struct lines l = {0};
	struct atomsync_options o;

	char *out = open_on_debris(NULL);
	ck_assert_str_eq(out, "");
	free(out);

	atomsync_options_init(&o);
	o.log = on_log;
	o.log_ctx = &l;
	out = open_on_debris(&o);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(l.warnings, 1);
	ck_assert_msg(strstr(l.last, "..data_tmp") && strstr(l.last, dst),
		      "the warning names the path: %s", l.last);
	free(out);
}
END_TEST

/* Writers in two threads at once: each one's warnings reach its own
 * callback, none the other's or stderr. */
struct job {
	char *target;
	struct lines l;
	int rc[20];
};

static void *run_job(void *arg)
{
	struct job *j = arg;
	struct atomsync_options o;
	char data[256];

	atomsync_options_init(&o);
	o.grace_ms = 0;
	o.log = on_log;
	o.log_ctx = &j->l;
	for (int i = 0; i < 20; i++) {
		struct atomsync_writer *w = NULL;
		/* Debris each time, for a warning at each open. */
		char *tmpl = tu_path(j->target, "..data_tmp");
		if (symlink("..nowhere", tmpl) < 0)
			j->rc[i] = -errno;
		free(tmpl);
		if (j->rc[i] == 0)
			j->rc[i] = atomsync_writer_open(j->target, &o, &w);
		snprintf(data, sizeof(data), "%s %d", j->target, i);
		struct atomsync_file f = {"who", data, strlen(data), 0644};
		if (j->rc[i] == 0)
			j->rc[i] = atomsync_write(w, &f, 1);
		if (j->rc[i] == 0 && !strstr(j->l.last, j->target))
			j->rc[i] = -EXDEV; /* another writer's line */
		atomsync_writer_close(w);
	}
	return NULL;
}

START_TEST(test_writers_in_two_threads_keep_their_lines_apart)
{
	struct job j[2] = {{.target = tu_path(tmp, "one")},
			   {.target = tu_path(tmp, "two")}};
	pthread_t t[2];

	tu_mkdirs(j[0].target, 0755);
	tu_mkdirs(j[1].target, 0755);
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(pthread_create(&t[k], NULL, run_job, &j[k]), 0);
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(pthread_join(t[k], NULL), 0);
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 20; i++)
			ck_assert_msg(j[k].rc[i] == 0, "%s, round %d: %d",
				      j[k].target, i, j[k].rc[i]);
		ck_assert_int_eq(j[k].l.warnings, 20);
		char *who = tu_path(j[k].target, "who");
		char *d = tu_read(who, NULL), want[256];
		snprintf(want, sizeof(want), "%s 19", j[k].target);
		ck_assert_str_eq(d, want);
		free(d);
		free(who);
		free(j[k].target);
	}
}
END_TEST

/* ---- The payload is the caller's: nothing keeps pointing into it ---- */

START_TEST(test_payload_memory_is_not_kept)
{
	struct atomsync_writer *w = k8s_writer();
	char *buf = strdup("v1");
	struct atomsync_file f = {"k", buf, 2, 0644};

	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	/* The caller reuses its buffer: the live file keeps v1, and writing
	 * the new bytes compares against the file, not the old buffer. */
	memcpy(buf, "v2", 2);
	char *k = tu_path(dst, "k");
	char *d = tu_read(k, NULL);
	ck_assert_str_eq(d, "v1");
	free(d);
	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	d = tu_read(k, NULL);
	ck_assert_str_eq(d, "v2");
	free(d);
	free(buf);
	/* And a new buffer with the same bytes changes nothing. */
	char *gen = strdup(atomsync_writer_generation(w));
	f.data = "v2";
	ck_assert_int_eq(atomsync_write(w, &f, 1), 0);
	ck_assert_str_eq(gen, atomsync_writer_generation(w));
	free(gen);
	free(k);
	atomsync_writer_close(w);
}
END_TEST

/* A file changed in the live generation behind the writer's back is
 * written afresh, even with the same payload. */
START_TEST(test_tampered_live_file_is_written_again)
{
	struct atomsync_writer *w = k8s_writer();
	const struct pf p[] = {{"cfg", 0644, "good", 0}, {NULL, 0, NULL, 0}};

	ck_assert_int_eq(write_pf(w, p), 0);
	char *f = tu_path(dst, "cfg");
	tu_write(dst, "..data/cfg", "evil", 0644);
	ck_assert_int_eq(write_pf(w, p), 0);
	char *d = tu_read(f, NULL);
	ck_assert_str_eq(d, "good");
	free(d);
	free(f);
	atomsync_writer_close(w);
}
END_TEST

/* Errors speak of the payload and the options, not of a source or a
 * configuration file, and leave the live generation as it was. */
START_TEST(test_payload_errors_name_the_payload)
{
	struct atomsync_options o;
	atomsync_options_init(&o);
	o.allow_empty = 0;
	struct atomsync_writer *w = open_writer(&o);
	const struct pf p[] = {{"cfg", 0644, "good", 0}, {NULL, 0, NULL, 0}};

	ck_assert_int_eq(write_pf(w, p), 0);
	char *gen = strdup(atomsync_writer_generation(w));
	ck_assert_int_eq(atomsync_write(w, NULL, 0), -ENODATA);
	const char *e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "payload is empty; keeping the live "
				     "generation") &&
			      strstr(e, gen) && strstr(e, "allow_empty") &&
			      !strstr(e, "source") && !strstr(e, "= yes"),
		      "%s", e ? e : "(no error)");
	struct atomsync_file twice[] = {{"a", "1", 1, 0}, {"./a", "2", 1, 0}};
	ck_assert_int_eq(atomsync_write(w, twice, 2), -EINVAL);
	e = atomsync_writer_error(w);
	ck_assert_msg(e && strstr(e, "payload: path a given twice"), "%s",
		      e ? e : "(no error)");
	/* A tree of empty directories holds no more. */
	char *empty = tu_path(tmp, "empty"), *ef = tu_path(tmp, "empty/e/f");
	tu_mkdirs(ef, 0755);
	ck_assert_int_eq(atomsync_write_tree(w, empty), -ENODATA);
	ck_assert_str_eq(atomsync_writer_generation(w), gen);
	check_volume(p, "after the refused writes");
	free(ef);
	free(empty);
	free(gen);
	atomsync_writer_close(w);

	/* A writer whose open failed holds only its error. */
	char *deep = tu_path(tmp, "missing/target");
	ck_assert_int_eq(atomsync_writer_open(deep, NULL, &w), -ENOENT);
	ck_assert_int_eq(atomsync_write(w, NULL, 0), -EBADF);
	ck_assert_int_eq(atomsync_write_tree(w, tmp), -EBADF);
	ck_assert_int_eq(atomsync_writer_retire(w, 0), -EBADF);
	ck_assert_ptr_null(atomsync_writer_generation(w));
	atomsync_writer_close(w);
	atomsync_writer_close(NULL);
	free(deep);
}
END_TEST

/* A target that is a link of the caller's own, in a directory only it
 * can change, leads where it names, which is made when missing. */
START_TEST(test_a_trusted_link_as_target_leads_to_where_it_names)
{
	char *real = tu_path(tmp, "real");
	struct atomsync_writer *w = NULL;
	const struct pf p[] = {{"cfg", 0644, "good", 0}, {NULL, 0, NULL, 0}};
	struct stat st;

	/* The target, dst, is the link. */
	ck_assert_int_eq(symlink(real, dst), 0);
	ck_assert_int_eq(atomsync_writer_open(dst, NULL, &w), 0);
	ck_assert_int_eq(write_pf(w, p), 0);
	atomsync_writer_close(w);
	ck_assert_int_eq(lstat(real, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0755);
	check_volume(p, "through the link");
	free(real);
}
END_TEST

/* ---- atomsync_write_tree: what atomsyncd --once does ---- */

/* The library says which version it is, and its major version is the
 * header's. */
START_TEST(test_version_is_the_librarys)
{
	const char *v = atomsync_version();

	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, PACKAGE_VERSION);
	ck_assert_int_eq(atoi(v), ATOMSYNC_VERSION_MAJOR);
	ck_assert_msg(strchr(v, '.') && strchr(strchr(v, '.') + 1, '.'),
		      "%s is not MAJOR.MINOR.PATCH", v);
}
END_TEST

START_TEST(test_write_tree_mirrors_a_source)
{
	char *src = tu_path(tmp, "src");
	const struct tu_file tree[] = {{"a.conf", 0644, "a=1\n"},
				       {"d/b.conf", 0600, "b=2\n"},
				       {NULL, 0, NULL}};
	tu_fill(src, tree);
	struct atomsync_writer *w = k8s_writer();
	ck_assert_msg(atomsync_write_tree(w, src) == 0, "%s",
		      atomsync_writer_error(w));
	char *d = tu_diff_trees(src, dst);
	ck_assert_msg(d == NULL, "%s", d);
	char *gen = strdup(atomsync_writer_generation(w));
	ck_assert_int_eq(atomsync_write_tree(w, src), 0);
	ck_assert_str_eq(gen, atomsync_writer_generation(w));
	char *missing = tu_path(tmp, "nope");
	ck_assert_int_eq(atomsync_write_tree(w, missing), -ENOENT);
	ck_assert_ptr_nonnull(strstr(atomsync_writer_error(w), missing));
	/* The failure left the live generation alone. */
	ck_assert_str_eq(gen, atomsync_writer_generation(w));
	d = tu_diff_trees(src, dst);
	ck_assert_msg(d == NULL, "%s", d);
	/* The target, or a directory in it, is no source for it. */
	char *data = tu_path(dst, "..data"), *sub = tu_path(dst, "d");
	const char *in[] = {dst, data, sub};
	for (size_t i = 0; i < sizeof(in) / sizeof(*in); i++) {
		ck_assert_int_eq(atomsync_write_tree(w, in[i]), -EINVAL);
		ck_assert_msg(strstr(atomsync_writer_error(w), "or inside it"),
			      "%s", atomsync_writer_error(w));
		ck_assert_str_eq(gen, atomsync_writer_generation(w));
	}
	d = tu_diff_trees(src, dst);
	ck_assert_msg(d == NULL, "%s", d);
	free(sub);
	free(data);
	free(missing);
	free(gen);
	free(src);
	atomsync_writer_close(w);
}
END_TEST

static Suite *atomsync_suite(void)
{
	Suite *s = suite_create("atomsync");
	TCase *tc = tcase_create("kubernetes");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_write_once, 0, (int)N(write_once));
	tcase_add_loop_test(tc, test_update, 0, (int)N(update));
	tcase_add_loop_test(tc, test_multiple_updates, 0, (int)N(multiple));
	tcase_add_loop_test(tc, test_paths_to_remove, 0, (int)N(to_remove));
	tcase_add_loop_test(tc, test_validate_payload, 0, (int)N(validate));
	tcase_add_loop_test(tc, test_create_user_visible_files, 0,
			    (int)N(visible));
	suite_add_tcase(s, tc);

	tc = tcase_create("api");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults_modes_and_owner);
	tcase_add_test(tc, test_file_mode_and_dir_mode_apply_to_every_entry);
	tcase_add_test(tc, test_owner_and_group_are_given_to_every_entry);
	tcase_add_test(tc, test_bad_modes_and_options_are_refused);
	tcase_add_test(tc, test_open_creates_and_locks_the_target);
	tcase_add_test(tc, test_target_through_another_users_link_is_refused);
	tcase_add_test(tc, test_a_writer_is_refused_in_a_child_after_fork);
	tcase_add_test(tc, test_a_generation_name_in_a_new_target_is_not_removed);
	tcase_add_test(tc, test_a_lock_or_state_file_of_no_target_removes_nothing);
	tcase_add_test(tc, test_a_directory_at_a_temporary_name_is_left);
	tcase_add_test(tc, test_retire_waits_one_grace_period);
	tcase_add_test(tc, test_a_refused_open_takes_its_lock_file_away);
	tcase_add_test(tc, test_a_writer_that_never_published_takes_its_lock_file_away);
	tcase_add_test(tc, test_a_path_as_deep_as_allowed_is_written);
	tcase_add_test(tc, test_a_target_moved_away_is_refused_at_the_next_write);
	tcase_add_test(tc, test_no_room_for_new_names_leaves_the_live_generation);
	tcase_add_test(tc, test_a_writer_not_root_flushes_what_its_owner_may_not_read);
	tcase_add_test(tc, test_a_writer_not_root_is_told_it_cannot_make_the_lock);
	tcase_add_test(tc, test_options_cut_inside_a_field_are_refused);
	tcase_add_test(tc, test_a_writer_not_root_keeps_its_rights_on_its_directories);
	tcase_add_test(tc, test_a_record_of_an_error_goes_once_a_write_works);
	tcase_add_test(tc, test_nothing_is_printed_warnings_go_to_the_callback);
	tcase_add_test(tc, test_writers_in_two_threads_keep_their_lines_apart);
	tcase_add_test(tc, test_payload_memory_is_not_kept);
	tcase_add_test(tc, test_tampered_live_file_is_written_again);
	tcase_add_test(tc, test_payload_errors_name_the_payload);
	tcase_add_test(tc, test_a_trusted_link_as_target_leads_to_where_it_names);
	tcase_add_test(tc, test_write_tree_mirrors_a_source);
	tcase_add_test(tc, test_version_is_the_librarys);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(atomsync_suite());
}
