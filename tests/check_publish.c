/* A mapping's publishes as the daemon drives them, step by step and
 * without a loop: the directories a watcher would report, a check that
 * vetoes now and then, a publish that fails, a full check due; after each
 * step, what the target holds is what a full walk of the source gives. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "ignore.h"
#include "log.h"
#include "publish.h"
#include "snapshot.h"
#include "state.h"
#include "writer.h"
#include "testutil.h"

static char *tmp, *src, *dst;
static struct conf *conf;

static void setup(void)
{
	struct conf_errors errs = {0};

	tmp = tu_mkdtemp();
	src = tu_path(tmp, "src");
	dst = tu_path(tmp, "dst");
	tu_mkdirs(src, 0755);
	log_init(LOG_FMT_TEXT, LOG_LVL_ERROR);
	ck_assert_int_eq(conf_adhoc(src, dst, &conf, &errs), 0);
	conf->syncs[0].fsync = false;
}

static void teardown(void)
{
	conf_free(conf);
	tu_rmrf(tmp);
	free(src);
	free(dst);
	free(tmp);
}

static unsigned long rrng;
static unsigned seed_now; /* for the messages */
/* How the publish read the source this round, for the messages. */
static char read_how[1024];

static unsigned rrnd(unsigned n)
{
	rrng = rrng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rrng >> 33) % n);
}

/* What a watcher reports: the nearest directory above a changed path
 * that the last read has (only those are watched), and each watched
 * directory removed or moved. */
static void dirty_add(struct publish_dirty *d, const struct snapshot *prev,
		      const char *rel)
{
	char *dir = strdup(rel);

	for (;;) {
		char *sl = strrchr(dir, '/');
		if (sl)
			*sl = '\0';
		else
			dir[0] = '\0';
		const struct snap_entry *e = snapshot_find(prev, dir);
		if (dir[0] == '\0' || (e && e->type == SNAP_DIR))
			break;
	}
	publish_dirty_add(d, dir);
	free(dir);
}

static void dirty_gone(struct publish_dirty *d, const struct snapshot *prev,
		       const char *rel)
{
	size_t n = strlen(rel);

	dirty_add(d, prev, rel);
	for (size_t i = 0; i < prev->n; i++)
		if (prev->v[i].type == SNAP_DIR &&
		    strncmp(prev->v[i].path, rel, n) == 0 &&
		    (prev->v[i].path[n] == '\0' || prev->v[i].path[n] == '/'))
			publish_dirty_add(d, prev->v[i].path);
}

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
	static const char *bodies[] = {"xyz", "abc", "q12"};
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			      O_NONBLOCK, 0644);

	if (fd >= 0) {
		ck_assert_int_ge(write(fd, bodies[rrnd(3)], len), 0);
		close(fd);
	}
}

static bool is_link(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0 && S_ISLNK(st.st_mode);
}

/* Whether every directory on the way to `rel` is one, not a link that
 * would take the change elsewhere (where the watcher sees it, not here). */
static bool plain_way(const char *rel)
{
	char *p = tu_path(src, rel);
	size_t skip = strlen(src) + 1;
	bool ok = true;

	for (char *sl = strchr(p + skip, '/'); ok && sl; sl = strchr(sl + 1, '/')) {
		struct stat st;
		*sl = '\0';
		ok = lstat(p, &st) < 0 || S_ISDIR(st.st_mode);
		*sl = '/';
	}
	free(p);
	return ok;
}

/* One random change below src; the directories it touches go to d. */
static void random_change(struct publish_dirty *d, const struct snapshot *prev)
{
	char *rel = random_path(rrnd(3)), *to = random_path(rrnd(3));
	char *p = tu_path(src, rel), *q = tu_path(src, to);

	unsigned op = rrnd(9);
	if (!plain_way(rel) || !plain_way(to))
		op = 99;
	switch (op) {
	case 0: /* written or rewritten, often the same size at once */
	case 1:
		write_file(p, 1 + rrnd(3));
		dirty_add(d, prev, rel);
		break;
	case 2:
		(void)mkdir(p, 0755);
		dirty_add(d, prev, rel);
		break;
	case 3:
		dirty_gone(d, prev, rel);
		tu_rmrf(p);
		break;
	case 4:
		dirty_gone(d, prev, to);
		dirty_gone(d, prev, rel);
		(void)rename(p, q);
		break;
	case 5: /* a mode: a directory's own watch reports it too */
		if (!is_link(p))
			(void)chmod(p, rrnd(2) ? 0700 : 0755);
		dirty_gone(d, prev, rel);
		break;
	case 6:
		(void)mkfifo(p, 0644);
		dirty_add(d, prev, rel);
		break;
	case 99:
		break;
	case 7: /* skipped, with a warning */
		(void)symlink("a", p);
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

/* The live record is what a full walk gives, entry for entry. */
static void assert_live_is_a_walk(const struct snapshot *l,
				  const struct snapshot *s, unsigned round)
{
	ck_assert_msg(l->n == s->n,
		      "seed %u round %u: %zu entries live, %zu walked (%s)",
		      seed_now, round, l->n, s->n, read_how);
	for (size_t i = 0; i < s->n; i++) {
		const struct snap_entry *x = &l->v[i], *y = &s->v[i];
		ck_assert_msg(strcmp(x->path, y->path) == 0 &&
				      x->type == y->type &&
				      x->size == y->size && x->ino == y->ino &&
				      x->mtime_ns % 1000000000 ==
					      y->mtime_ns % 1000000000 &&
				      x->ctime_ns == y->ctime_ns,
			      "seed %u round %u: live %s, walked %s (%s)", seed_now,
			      round, x->path, y->path, read_how);
	}
}

/* What the state file and its journal say the target holds is the live
 * record (and so what a full walk gives). */
static void assert_state_is_live(const struct snapshot *l, unsigned round)
{
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct snapshot *st = NULL;
	char *gen = NULL;
	bool sound = false;

	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(state_load(dfd, 1000000, &st, &gen, &sound), 0);
	close(dfd);
	assert_live_is_a_walk(st, l, round);
	for (size_t i = 0; i < l->n; i++)
		if (st->v[i].t_ino != l->v[i].t_ino)
			ck_abort_msg("seed %u round %u: %s saved with inode "
				     "%llu, live %llu", seed_now, round,
				     l->v[i].path,
				     (unsigned long long)st->v[i].t_ino,
				     (unsigned long long)l->v[i].t_ino);
	snapshot_free(st);
	free(gen);
}

/* The directories the watches reported (what a refresh reads again), for
 * a message. */
static void note_reported(const struct publish_dirty *d)
{
	size_t len = (size_t)snprintf(read_how, sizeof(read_how), "reported:");

	for (size_t i = 0; i < d->n; i++) {
		if (len >= sizeof(read_how))
			break;
		len += (size_t)snprintf(read_how + len, sizeof(read_how) - len,
					" \"%s\"", d->dirs[i]);
	}
}

static void assert_warnings(const struct snapshot_extras *x,
			    const struct snapshot *s, unsigned round)
{
	ck_assert_ptr_nonnull(x);
	ck_assert_msg(x->nwarn == s->extras.nwarn,
		      "seed %u round %u: %zu warnings, a walk has %zu (%s)",
		      seed_now, round, x->nwarn, s->extras.nwarn, read_how);
	for (size_t i = 0; i < x->nwarn; i++)
		ck_assert_msg(strcmp(x->warn[i].path, s->extras.warn[i].path) ==
					      0 &&
				      x->warn[i].kind == s->extras.warn[i].kind,
			      "seed %u round %u: warning %s, a walk has %s (%s)",
			      seed_now, round, x->warn[i].path,
			      s->extras.warn[i].path, read_how);
	/* Both list the root, then each directory in path order: the first
	 * one apart names what the read missed or kept too long. */
	size_t n = x->nwatch < s->extras.nwatch ? x->nwatch : s->extras.nwatch;
	size_t i = 0;
	while (i < n && strcmp(x->watch[i].path, s->extras.watch[i].path) == 0)
		i++;
	ck_assert_msg(i == n && x->nwatch == s->extras.nwatch,
		      "seed %u round %u: %zu watches, a walk has %zu; first "
		      "apart: \"%s\", a walk has \"%s\" (%s)",
		      seed_now, round, x->nwatch, s->extras.nwatch,
		      i < x->nwatch ? x->watch[i].path : "(none)",
		      i < s->extras.nwatch ? s->extras.watch[i].path : "(none)",
		      read_how);
}

static size_t nftw_count;

static int count_one(const char *path, const struct stat *st, int type,
		     struct FTW *f)
{
	(void)path;
	(void)st;
	(void)type;
	(void)f;
	nftw_count++;
	return 0;
}

/* Bulk files, out of the random changes' way, sort before and after
 * their names: a live record of a megabyte and more, which the writer
 * keeps in a store and each refresh views. */
static const char *const bulk_dirs[] = {"0bulk", "zbulk"};
#define BULK_FILES 6000

static void make_bulk(void)
{
	for (size_t d = 0; d < 2; d++) {
		char *dir = tu_path(src, bulk_dirs[d]);
		ck_assert_int_eq(mkdir(dir, 0755), 0);
		for (int f = 0; f < BULK_FILES; f++) {
			char name[32];
			snprintf(name, sizeof(name), "f%05d", f);
			tu_write(dir, name, name, 0644);
		}
		free(dir);
	}
}

static bool in_bulk(const char *path)
{
	for (size_t d = 0; d < 2; d++) {
		size_t n = strlen(bulk_dirs[d]);
		if (strncmp(path, bulk_dirs[d], n) == 0 && path[n] == '/')
			return true;
	}
	return false;
}

/* Every file the walk has holds in the target what it holds in the
 * source (the bulk files, which never change, are only counted). */
static void assert_target_holds(const struct snapshot *s, unsigned round)
{
	char *data = tu_path(dst, "..data");

	for (size_t i = 0; i < s->n; i++) {
		const struct snap_entry *e = &s->v[i];
		if (in_bulk(e->path))
			continue;
		char *a = tu_path(src, e->path), *b = tu_path(data, e->path);
		struct stat st;
		ck_assert_msg(lstat(b, &st) == 0, "seed %u round %u: %s missing",
			      seed_now, round, e->path);
		ck_assert_msg((e->type == SNAP_DIR) == !!S_ISDIR(st.st_mode),
			      "seed %u round %u: %s of another type", seed_now, round, e->path);
		if (e->type == SNAP_FILE) {
			size_t la = 0, lb = 0;
			char *x = tu_read(a, &la), *y = tu_read(b, &lb);
			ck_assert_msg(la == lb && memcmp(x, y, la) == 0,
				      "seed %u round %u: %s holds %.*s, the source "
				      "%.*s",
				      seed_now, round, e->path, (int)lb, y, (int)la, x);
			free(x);
			free(y);
		}
		free(a);
		free(b);
	}
	nftw_count = 0;
	char *dot = tu_path(data, ".");
	ck_assert_int_eq(nftw(dot, count_one, 16, FTW_PHYS), 0);
	free(dot);
	ck_assert_msg(nftw_count - 1 == s->n, "seed %u round %u: %zu entries in the "
		      "target, %zu in the source", seed_now, round, nftw_count - 1, s->n);
	free(data);
}

/* The files and bytes a publish reports are the walk's, whether it
 * looked at each entry or took the live record's counts for copies. */
static void assert_totals(const struct writer_result *r,
			  const struct snapshot *s, unsigned round)
{
	uint64_t files = 0, bytes = 0;

	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].type == SNAP_FILE) {
			files++;
			bytes += s->v[i].size;
		}
	ck_assert_msg(r->files == files && r->bytes == bytes,
		      "seed %u round %u: %zu files of %llu bytes reported, "
		      "%llu of %llu walked",
		      seed_now, round, r->files, (unsigned long long)r->bytes,
		      (unsigned long long)files, (unsigned long long)bytes);
}

/* A name in the way in the target: the publish fails until it goes. */
static void block_target(bool on)
{
	char *p = tu_path(dst, "c");

	if (on) {
		int fd = open(p, O_WRONLY | O_CREAT, 0644);
		if (fd >= 0)
			close(fd);
	} else {
		(void)unlink(p);
	}
	free(p);
}

/* A directory where the swap puts its link: the commit fails before
 * the swap. */
static void block_swap(bool on)
{
	char *p = tu_path(dst, "..data_tmp");

	if (on) {
		tu_mkdirs(p, 0755);
		tu_write(p, "x", "x", 0644);
	} else {
		tu_rmrf(p);
	}
	free(p);
}

/* A full check with nothing in its way: it goes through, and leaves
 * what a walk gives.  1 when its read was over the live record (in a
 * store once a publish of the bulk went through). */
static unsigned full_check_over(struct publish *p,
				const struct snapshot_opts *so, unsigned round)
{
	struct snapshot *full = NULL;
	char *err = NULL;

	block_target(false);
	p->verify = true;
	int rc = publish_prepare(p);
	if (rc == 0 && p->pending)
		rc = publish_commit(p);
	ck_assert_msg(rc == 0, "seed %u: the last full check: %s", seed_now,
		      p->err);
	ck_assert(p->full);
	ck_assert_int_eq(snapshot_take(src, so, &full, &err), 0);
	assert_live_is_a_walk(writer_live(p->w), full, round);
	unsigned over = writer_live(p->w)->base_id != 0;
	snapshot_free(full);
	publish_reset(p);
	return over;
}

/* Rounds of a few changes, then a publish: vetoed now and then, failing
 * before the swap or at a visible name now and then, a full check due
 * now and then.  A publish that goes through leaves what a full walk
 * gives, in the live record and in the target. */
/* The symbolic links of src, removed and reported: while the source
 * holds one, every read is a full one, and a sequence that made one
 * early and never met it again would test no read of what changed. */
static struct publish_dirty *drop_d;
static const struct snapshot *drop_prev;

static int drop_link(const char *p, const struct stat *st, int type,
		     struct FTW *f)
{
	(void)st;
	(void)f;
	if (type == FTW_SL || type == FTW_SLN) {
		dirty_gone(drop_d, drop_prev, p + strlen(src) + 1);
		ck_assert_int_eq(unlink(p), 0);
	}
	return 0;
}

static void drop_links(struct publish_dirty *d, const struct snapshot *prev)
{
	drop_d = d;
	drop_prev = prev;
	ck_assert_int_eq(nftw(src, drop_link, 16, FTW_PHYS), 0);
}

static void run_rounds(unsigned rounds, bool bulk)
{
	unsigned nrefresh = 0, nveto = 0, nstored = 0, nover = 0;
	struct publish p;
	struct snapshot *prev = NULL, *full = NULL;
	struct snapshot_opts so = publish_snapshot_opts(&conf->syncs[0]);
	const char *env = getenv("ATOMSYNC_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
			    : (unsigned)time(NULL);
	char *err = NULL;
	bool blocked = false;

	rrng = seed_now = seed;
	if (bulk)
		make_bulk();
	publish_init(&p, &conf->syncs[0], false);
	ck_assert_int_eq(snapshot_take(src, &so, &prev, &err), 0);
	/* Rounds go on (four times as many at most) until enough of them
	 * were reads of what changed, and with the bulk, publishes of a
	 * stored record: a sequence may make a link early, or fail and veto
	 * a run of publishes, each of which calls for a full read. */
	for (unsigned round = 0;
	     round < rounds || ((nrefresh <= rounds / 8 ||
				 (bulk && nstored <= rounds / 8)) &&
				round < 4 * rounds);
	     round++) {
		if (prev->indirect && rrnd(3) == 0)
			drop_links(&p.dirty, prev);
		for (unsigned k = rrnd(3); k > 0; k--)
			random_change(&p.dirty, prev);
		if (rrnd(8) == 0) {
			blocked = !blocked;
			block_target(blocked);
		}
		p.verify = rrnd(10) == 0;
		note_reported(&p.dirty);
		int rc = publish_prepare(&p);
		if (p.full)
			snprintf(read_how, sizeof(read_how), "a full read");
		nrefresh += p.was_read && !p.full;
		ck_assert_int_eq(snapshot_take(src, &so, &full, &err), 0);
		if (p.was_read)
			assert_warnings(p.extras, full, round);
		bool veto = rc == 0 && p.pending && rrnd(3) == 0;
		nveto += veto;
		if (veto) {
			publish_vetoed(&p, "no");
			publish_abort(&p);
		} else if (rc == 0 && p.pending) {
			unsigned fault = rrnd(8);
			if (fault == 0)
				block_swap(true);
			else if (fault == 1 && !blocked)
				block_target(blocked = true);
			rc = publish_commit(&p);
			if (fault == 0)
				block_swap(false);
		}
		ck_assert_msg(rc == 0 || rc == -EEXIST || rc == -ENODATA ||
				      rc == -EISDIR,
			      "seed %u round %u: %s", seed, round, p.err);
		if (rc == 0 && !veto) {
			assert_live_is_a_walk(writer_live(p.w), full, round);
			assert_target_holds(full, round);
			assert_totals(&p.res, full, round);
			nstored += writer_live(p.w)->mem == SNAP_MEM_STORE;
			/* A full read over the record it replaced. */
			nover += p.full && writer_live(p.w)->base_id != 0;
			assert_state_is_live(writer_live(p.w), round);
		}
		publish_reset(&p);
		snapshot_free(prev);
		prev = full;
		full = NULL;
	}
	/* The rounds' full checks may all have been vetoed or failed: one
	 * more that goes through, over the record the rounds left. */
	if (bulk)
		nover += full_check_over(&p, &so, rounds);
	snapshot_free(prev);
	publish_fini(&p);
	/* The sequence went where it was meant to. */
	ck_assert_msg(nrefresh > rounds / 8, "seed %u: %u refreshed, %u vetoed",
		      seed, nrefresh, nveto);
	/* With the bulk, a live record in a store, which the next refresh
	 * views. */
	ck_assert_msg(!bulk || nstored > rounds / 8, "seed %u: %u stored",
		      seed, nstored);
	ck_assert_msg(!bulk || nover > 0, "seed %u: no full read over the "
		      "record", seed);
}

START_TEST(test_every_publish_is_what_a_full_walk_gives)
{
	/* Not run: the test vetoes, or lets the generation through. */
	conf->syncs[0].check_command = strdup("true");
	conf->syncs[0].symlinks = SNAP_LINKS_SKIP;
	run_rounds(300, false);
}
END_TEST

START_TEST(test_every_publish_of_a_stored_record_is_what_a_full_walk_gives)
{
	conf->syncs[0].check_command = strdup("true");
	conf->syncs[0].symlinks = SNAP_LINKS_SKIP;
	run_rounds(tu_rounds(40), true);
}
END_TEST

/* Modes and owners the writer gives: what a full read over the record
 * finds the same, it takes projected as the record holds it. */
static void set_modes(struct conf_sync *c)
{
	char *err = NULL;

	c->check_command = strdup("true");
	c->symlinks = SNAP_LINKS_SKIP;
	c->file_mode = 0640;
	c->dir_mode = 0750;
	c->uid = 1234;
	c->gid = 1234;
	c->ignore = ignore_new();
	ck_assert_int_eq(ignore_add(c->ignore, "*.txt", &err), 0);
	ck_assert_int_eq(ignore_add(c->ignore, "/b/e/", &err), 0);
}

START_TEST(test_every_publish_of_a_stored_record_is_what_a_full_walk_gives_with_modes)
{
	set_modes(&conf->syncs[0]);
	run_rounds(tu_rounds(40), true);
}
END_TEST

START_TEST(test_every_publish_is_what_a_full_walk_gives_with_modes)
{
	set_modes(&conf->syncs[0]);
	run_rounds(300, false);
}
END_TEST

/* A directory removed and made again at once often gets the inode number
 * it had (ext4 hands out the lowest free one), so the parent read again
 * finds "the same directory" there and keeps what the last read had in
 * it.  The old directory's own watch reports it gone: that report has it
 * read again, and what was made in it is found. */
START_TEST(test_a_directory_made_anew_with_its_inode_is_read_again)
{
	struct snapshot_opts so = publish_snapshot_opts(&conf->syncs[0]);
	struct snapshot *full = NULL;
	struct publish p;
	char *err = NULL;
	char *a = tu_path(src, "a"), *c = tu_path(a, "c");

	tu_mkdirs(c, 0755);
	tu_rmrf(c);
	tu_write(src, "f", "x", 0644);
	publish_init(&p, &conf->syncs[0], false);
	ck_assert_int_eq(publish_prepare(&p), 0);
	ck_assert(p.full && p.res.published);
	publish_reset(&p);

	tu_rmrf(a);
	ck_assert_int_eq(mkdir(a, 0755), 0);
	ck_assert_int_eq(mkdir(c, 0755), 0);
	publish_dirty_add(&p.dirty, ""); /* a went, a came */
	publish_dirty_add(&p.dirty, "a"); /* the old a's watch: gone */
	note_reported(&p.dirty);
	ck_assert_int_eq(publish_prepare(&p), 0);
	ck_assert_msg(!p.full, "a refresh, not a full read");
	ck_assert_int_eq(snapshot_take(src, &so, &full, &err), 0);
	assert_warnings(p.extras, full, 0);
	assert_live_is_a_walk(writer_live(p.w), full, 0);
	ck_assert_ptr_nonnull(snapshot_find(writer_live(p.w), "a/c"));
	snapshot_free(full);
	publish_fini(&p);
	free(a);
	free(c);
}
END_TEST

/* A --once run whose source is gone fails after the state was loaded,
 * the live files checked and the spare's directories read beside the
 * walk that failed: the target stays as it was, and the next run
 * recycles the spare. */
START_TEST(test_once_without_its_source_leaves_the_target)
{
	struct conf_sync *c = &conf->syncs[0];
	char *away = tu_path(tmp, "away"), *diff = NULL;

	c->grace_ms = 30;
	tu_write(src, "d/f", "1", 0644);
	tu_write(src, "e/g", "1", 0644);
	ck_assert_int_eq(publish_once(c, false, NULL), 0);
	tu_write(src, "d/f", "2", 0644);
	ck_assert_int_eq(publish_once(c, false, NULL), 0);
	tu_nap(60); /* the replaced one is past its grace: the spare */
	char *live = tu_live(dst);
	ck_assert_int_eq(rename(src, away), 0);
	ck_assert_int_lt(publish_once(c, false, NULL), 0);
	char *still = tu_live(dst);
	ck_assert_str_eq(still, live);
	ck_assert_int_eq(rename(away, src), 0);
	diff = tu_diff_trees(src, dst);
	ck_assert_msg(diff == NULL, "%s", diff);
	ck_assert_int_eq(tu_generations(dst), 2);
	tu_write(src, "e/g", "3", 0644);
	ck_assert_int_eq(publish_once(c, false, NULL), 0);
	ck_assert_int_eq(tu_generations(dst), 2);
	diff = tu_diff_trees(src, dst);
	ck_assert_msg(diff == NULL, "%s", diff);
	free(still);
	free(live);
	free(away);
}
END_TEST

static Suite *publish_suite(void)
{
	Suite *s = suite_create("publish");
	TCase *tc = tcase_create("publish");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_every_publish_is_what_a_full_walk_gives);
	tcase_add_test(tc,
		       test_every_publish_of_a_stored_record_is_what_a_full_walk_gives);
	tcase_add_test(
		tc, test_every_publish_of_a_stored_record_is_what_a_full_walk_gives_with_modes);
	tcase_add_test(tc,
		       test_every_publish_is_what_a_full_walk_gives_with_modes);
	tcase_add_test(tc, test_a_directory_made_anew_with_its_inode_is_read_again);
	tcase_add_test(tc, test_once_without_its_source_leaves_the_target);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(publish_suite());
}
