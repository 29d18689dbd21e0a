/* libFuzzer target for the state file and its journal: state_load() and
 * state_peek() on what a crash, a full disk or a bug could leave in a
 * target.
 *
 * The input up to its first NUL byte is written as the state file
 * (..atomsync); what follows that NUL, if there is one, as the journal
 * (..atomsync.journal), each mode 0600 in a scratch directory.  A journal
 * names the inode of the state file it was made on: "@INO@" in the input
 * stands for that number, which no input could know.  Any broken
 * invariant aborts:
 *
 *   load      returns 0, -ENOENT, -EINVAL or -EFBIG (more than
 *             MAX_ENTRIES: never another error for a file of ours), and
 *             on success a generation name and at most
 *             MAX_ENTRIES entries, sorted in path order, each path clean
 *             and each a file or a directory.
 *   peek      names the same generation as load whenever load succeeds.
 *   save      what load gave, written whole with state_save() and loaded
 *             again, is the same entries and generation (the journal is
 *             gone then). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot.h"
#include "state.h"

#define MAX_ENTRIES 1000

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",     \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static char dir[4096];
static int dfd = -1;

static void remove_tmp(void)
{
	if (dfd >= 0) {
		unlinkat(dfd, STATE_FILE, 0);
		unlinkat(dfd, STATE_JOURNAL, 0);
		unlinkat(dfd, STATE_TMP, 0);
		unlinkat(dfd, STATE_JOURNAL_TMP, 0);
	}
	if (dir[0])
		rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/atomsync-fuzz-XXXXXX",
		 t && *t ? t : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz_state: scratch directory");
		abort();
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		abort();
	atexit(remove_tmp);
	return 0;
}

static void put(const char *name, const uint8_t *data, size_t size);

/* The journal with "@INO@" replaced by the state file's inode. */
static void put_journal(const uint8_t *data, size_t size)
{
	static const char mark[] = "@INO@";
	const size_t ml = sizeof(mark) - 1;
	struct stat st;
	char ino[32];

	CHECK(fstatat(dfd, STATE_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0);
	int il = snprintf(ino, sizeof(ino), "%llu",
			  (unsigned long long)st.st_ino);
	uint8_t *out = malloc(size / ml * (size_t)il + size + 1);
	size_t n = 0;
	CHECK(out != NULL);
	for (size_t i = 0; i < size;) {
		if (size - i >= ml && memcmp(data + i, mark, ml) == 0) {
			memcpy(out + n, ino, (size_t)il);
			n += (size_t)il;
			i += ml;
		} else {
			out[n++] = data[i++];
		}
	}
	put(STATE_JOURNAL, out, n);
	free(out);
}

static void put(const char *name, const uint8_t *data, size_t size)
{
	int fd = openat(dfd, name,
			O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			0600);
	size_t off = 0;

	CHECK(fd >= 0);
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0);
		off += (size_t)n;
	}
	CHECK(close(fd) == 0);
}

static bool same_entry(const struct snap_entry *a, const struct snap_entry *b)
{
	return strcmp(a->path, b->path) == 0 && a->type == b->type &&
	       a->mode == b->mode && a->uid == b->uid && a->gid == b->gid &&
	       a->size == b->size && a->mtime_ns == b->mtime_ns &&
	       a->ctime_ns == b->ctime_ns && a->dev == b->dev &&
	       a->ino == b->ino && a->t_ino == b->t_ino &&
	       a->t_mtime_ns == b->t_mtime_ns;
}

static void check_loaded(const struct snapshot *s, const char *gen)
{
	CHECK(gen != NULL);
	CHECK(s->n <= MAX_ENTRIES);
	for (size_t i = 0; i < s->n; i++) {
		const struct snap_entry *e = &s->v[i];
		CHECK(e->type == SNAP_DIR || e->type == SNAP_FILE);
		CHECK(e->path != NULL);
		char *c = snapshot_clean_path(e->path);
		CHECK(c != NULL);
		CHECK(strcmp(c, e->path) == 0);
		free(c);
		if (i > 0)
			CHECK(snapshot_path_cmp(s->v[i - 1].path, e->path) < 0);
	}
}

/* Written whole and loaded again: the same state. */
static void check_round_trip(const struct snapshot *s, const char *gen)
{
	struct snapshot *t = NULL;
	char *g = NULL;
	bool sound = false;

	CHECK(state_save(dfd, s, gen, true) == 0);
	CHECK(faccessat(dfd, STATE_JOURNAL, F_OK, AT_SYMLINK_NOFOLLOW) < 0);
	CHECK(state_load(dfd, MAX_ENTRIES, &t, &g, &sound) == 0);
	CHECK(sound);
	CHECK(strcmp(g, gen) == 0);
	CHECK(t->n == s->n);
	for (size_t i = 0; i < s->n; i++)
		CHECK(same_entry(&s->v[i], &t->v[i]));
	snapshot_free(t);
	free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t head = nul ? (size_t)(nul - data) : size;
	struct snapshot *s = NULL;
	char *gen = NULL, *pgen = NULL;
	bool sound = false, psound = false;
	struct timespec rec;

	put(STATE_FILE, data, head);
	if (nul)
		put_journal(nul + 1, size - head - 1);
	else
		CHECK(unlinkat(dfd, STATE_JOURNAL, 0) == 0 || errno == ENOENT);
	int rc = state_load(dfd, MAX_ENTRIES, &s, &gen, &sound);
	CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL || rc == -EFBIG);
	int prc = state_peek(dfd, &pgen, &rec, &psound);
	if (rc == 0) {
		check_loaded(s, gen);
		CHECK(prc == 0);
		CHECK(strcmp(pgen, gen) == 0);
		check_round_trip(s, gen);
	}
	snapshot_free(s);
	free(gen);
	free(pgen);
	return 0;
}
