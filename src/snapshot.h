/* A snapshot: the sorted list of directories and regular files a source
 * tree holds at one moment, with the metadata that tells whether a file
 * changed.  Content is never held in memory; the writer streams it from
 * the source when it projects the snapshot. */
#ifndef ATOMSYNC_SNAPSHOT_H
#define ATOMSYNC_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "log.h"

enum snap_type {
	SNAP_DIR = 1,
	SNAP_FILE = 2,
};

enum snap_links {
	SNAP_LINKS_INSIDE = 0, /* copy links that resolve inside the source */
	SNAP_LINKS_FOLLOW,     /* follow every link, wherever it points */
	SNAP_LINKS_SKIP,       /* ignore all links */
};

/* Reached through symlinks = follow (links below it are followed too). */
#define SNAP_F_FOLLOW 0x1u
/* `src` is an absolute, symlink-free path: into a follow_into directory,
 * or where a followed link really leads. */
#define SNAP_F_EXTERNAL 0x2u
/* The content is `data` (size bytes, the caller's memory), not a source
 * file: a payload handed to libatomsync.  Its mode is the caller's, not
 * masked as a source's is. */
#define SNAP_F_DATA 0x4u
/* Its times were recorded within a timestamp tick of its last change: a
 * write after that may have left them as they were, so equal times do not
 * prove equal content (see snapshot_mark_racy). */
#define SNAP_F_RACY 0x8u

/* The longest relative path a source may hold (and a target take). */
#define SNAPSHOT_MAX_PATH 4096
/* Bytes of path an entry may hold on average, with max_files: a tree of
 * paths near SNAPSHOT_MAX_PATH would otherwise hold 4 KiB an entry in
 * memory and in the state file, 4 GB at a million entries. */
#define SNAPSHOT_PATH_BYTES 256

#define SNAP_NO_ID UINT32_MAX

struct snap_entry {
	char *path; /* clean relative path in the target */
	char *src;  /* path to read, relative to the source root; NULL: path */
	const void *data; /* with SNAP_F_DATA: the content (not owned) */
	uint8_t type;
	uint8_t flags;
	/* `path` is in its snapshot's pool, freed with it, not on its own
	 * (every entry snapshot_add*() made); false for one not added yet,
	 * or whose path was replaced by a malloc'ed one. */
	bool pooled;
	uint32_t mode; /* permission bits (the writer projects them) */
	uint32_t uid, gid; /* projected owner, SNAP_NO_ID when not forced */
	uint64_t size;
	/* Times as clock_ts_ns() holds them: 8 bytes, not a timespec's 16,
	 * in an entry of which a tree has millions.  Two times past its
	 * limits compare equal, but a change also moves the ctime, which
	 * only the clock sets. */
	int64_t mtime_ns, ctime_ns;
	uint64_t dev, ino; /* source identity; ino 0 means unknown */
	/* In the live state: the generation's file as atomsync left it, to
	 * tell a file changed behind its back (t_ino 0: unknown). */
	uint64_t t_ino;
	int64_t t_mtime_ns;
};

enum snap_warn {
	SNAP_W_OUTSIDE,	 /* symlink leads out of the source */
	SNAP_W_LOOP,	 /* symlink loop */
	SNAP_W_DANGLING, /* symlink to nothing */
	SNAP_W_SPECIAL,	 /* FIFO, socket or device */
	SNAP_W_LINK,	 /* symlink ignored (symlinks = skip) */
	SNAP_W_RESERVED, /* a name starting with "..", not a volume's own */
	SNAP_W_TARGET,	 /* leads into the target itself */
	SNAP_W_UNREADABLE, /* a file that a user who can write its
			      directory may not read */
	SNAP_W_HIDDEN,	   /* a link through a directory that a user who
			      can write its directory may not enter */
	SNAP_W_HIDDEN_BELOW, /* below a link, a directory that a user who
				can write the link's directory may not
				enter */
	SNAP_W_PROC,	     /* a link into /proc, /sys and the like */
};

/* The warnings a read keeps, the first in path order: each holds a path,
 * and a few links can have a read meet a name millions of times. */
#define SNAPSHOT_WARN_MAX 1000

struct snap_warning {
	char *path;
	enum snap_warn kind;
};

/* A directory to watch: relative to the source root, or absolute. */
struct snap_dir {
	char *path;
	uint64_t dev, ino;
};

/* What a walk finds besides the entries: its warnings, and the
 * directories whose changes matter.  A caller that wants them takes them
 * with snapshot_take_extras() before handing the snapshot on. */
struct snapshot_extras {
	struct snap_warning *warn;
	size_t nwarn;
	/* Warnings past SNAPSHOT_WARN_MAX, counted, not kept (a read with
	 * some is not refreshed: a full walk counts them again). */
	uint64_t nwarn_more;
	struct snap_dir *watch; /* directories to watch */
	size_t nwatch;
	size_t warncap, watchcap; /* snapshot.c's */
};

struct ignore;
struct snap_pool;
struct store;

/* Where a snapshot's entries are. */
enum snap_mem {
	SNAP_MEM_OWN,	/* the heap's, or a mapping of its own (vmap) */
	SNAP_MEM_STORE, /* a store's pages, mapped shared: what a refresh
			 * of it views rather than copies */
	SNAP_MEM_VIEW,	/* a view of the store of the record it refreshes:
			 * only the pages it wrote are its own */
};

/* Entries a refresh copied as they were: v[at..at+n) of the refresh are
 * v[from..from+n) of the snapshot it was made from. */
struct snap_run {
	size_t at, from, n;
};

struct statahead;

struct snapshot_opts {
	enum snap_links links;
	const struct ignore *exclude; /* gitignore(5) patterns, or NULL */
	/* Directories that links may lead into, besides the source (with
	 * SNAP_LINKS_INSIDE): absolute paths. */
	char *const *follow_into;
	size_t nfollow_into;
	/* Entries (files and directories); 0: no limit.  Their paths may
	 * also hold SNAPSHOT_PATH_BYTES each on average, no more, and a
	 * read may leave out as many names again, no more (links to
	 * directories can have it meet one name many times). */
	size_t max_files;
	uint64_t max_bytes; /* bytes in files; 0: no limit */
	/* The target: a link that leads into it is skipped (0: none). */
	uint64_t avoid_dev, avoid_ino;
	/* Entries the walk will likely find (the last read's), made room
	 * for at once; 0: not known. */
	size_t expect;
	/* A record to read over (the live record, in a store): an entry
	 * found the same as its entry of that path, once `project` has
	 * given it its mode and owner, is that entry, and stays where it is
	 * in a copy-on-write view of the record (noted as a run, as in a
	 * refresh).  NULL, or a record not in a store: an array of its
	 * own.  A refresh keeps the record's entry of what it reads again
	 * and finds the same, by `project` too. */
	const struct snapshot *over;
	void (*project)(const void *arg, struct snap_entry *e);
	const void *project_arg;
	/* With root_open, the root is read through a copy of root_fd, and
	 * the path given names it in messages alone: it is not resolved
	 * again, for another to have put something else there meanwhile. */
	bool root_open;
	int root_fd;
	/* Stats taken ahead on another thread (see statahead.h), or NULL: a
	 * full walk (snapshot_take) asks it before each call of its own. */
	struct statahead *statahead;
};

struct snapshot {
	char *root;	 /* the source as given; NULL for a loaded state */
	char *root_real; /* its real path, for absolute links and watches */
	int root_fd;	 /* -1 when there is no source behind it */
	uint64_t root_dev, root_ino;
	/* Who, but root and us, can move the root or a directory above it,
	 * and so choose what it is: one class of writers (an owner, a
	 * group that may write, or anyone), judged for as a link's are. */
	struct snap_writers {
		bool set;
		uid_t uid;
		gid_t gid;
		mode_t mode;
	} way;
	struct timespec taken; /* wall clock when the walk started */
	/* A writer's record: the wall-clock second its generation's files
	 * were last all checked against it (writer_opts.check_s); 0: not
	 * known. */
	int64_t checked;
	struct snap_entry *v;
	size_t n, cap;
	size_t vmap;	 /* bytes v maps (see entries_resize()); 0: malloc'ed */
	bool vhuge;	 /* that mapping is one of huge pages (map_huge()) */
	enum snap_mem mem;
	struct store *store; /* with SNAP_MEM_STORE and SNAP_MEM_VIEW */
	struct snapshot_extras extras;
	/* Blocks of pooled paths, the last one taking new paths: a refresh
	 * shares the blocks of what it kept with the record it refreshes. */
	struct snap_pool **pools;
	size_t npools, poolcap;
	uint64_t pool_bytes; /* in those blocks */
	/* Of those, in paths its entries hold, or held when a path of its
	 * own replaced them: the rest is left by entries dropped. */
	uint64_t pool_used;
	/* Entries that may hold a source path, a payload, or a path not
	 * pooled (counted where made, not where dropped): with none, there
	 * is nothing to detach or free entry by entry. */
	size_t held;
	int ext_fd;	 /* "/", to open SNAP_F_EXTERNAL files; -1: none */
	/* Entries that could not be read: the snapshot is incomplete and
	 * must not be published. */
	struct log_list problems;
	uint64_t bytes;	 /* in its files */
	/* In its paths, NULs included (by a walk or a refresh; 0 for a
	 * record loaded from the state file, whose next full walk counts). */
	uint64_t path_bytes;
	uint64_t read;	 /* names the walk looked at: what it cost */
	/* Of those, the names it left out (skipped, excluded, reserved):
	 * at most max_files.  Exact after a walk; a refresh adds its own to
	 * those of the read it refreshes (what it read again counts twice,
	 * until a full walk). */
	uint64_t unlisted;
	bool unlisted_exact; /* by a full walk, not at most */
	/* A symlink was resolved, a file has more than one name, or a
	 * directory led into the target: a change may then show up where
	 * no event for its directory is. */
	bool indirect;
	/* What a walk guarantees, for a writer to skip checking it again:
	 * `walked`, every path clean, valid and there once, below its
	 * parent's entry (snapshot_take(), snapshot_refresh()); `sorted`, in
	 * snapshot_path_cmp() order (snapshot_sort(), snapshot_refresh()).
	 * snapshot_add() and snapshot_append() clear both; whoever changes
	 * an entry's path in place clears them too. */
	bool walked, sorted;
	/* Which snapshot this is (unique in the process), and for a
	 * refresh, the one it was made from (0: none) and what it copied
	 * from it (dropped when the entries are sorted anew). */
	uint64_t id, base_id;
	struct snap_run *runs;
	size_t nruns, runcap;
};

/* Walks `root` into a new snapshot.  On failure *err (malloc'ed) says
 * which path failed and why.  Entries that cannot be read (a directory
 * without permission) do not fail the walk: they are listed in
 * s->problems, for a caller to report all at once. */
int snapshot_take(const char *root, const struct snapshot_opts *o,
		  struct snapshot **out, char **err);

/* A copy of `prev` (a walk of the same source with the same options)
 * with the directories `dirs` (relative to the root, "" for the root
 * itself) read again: their own metadata, their entries, and all of any
 * subdirectory that is new or no longer the same directory; the rest is
 * prev's.  Gives what snapshot_take would, provided nothing but `dirs`
 * changed since prev was taken.  prev's warnings are px's, or prev's own
 * when px is NULL (a snapshot whose extras were taken keeps none).
 * -ESTALE when a refresh cannot be sure to (prev resolved links or was
 * incomplete, a directory is not the one prev had, a limit is reached):
 * take a full snapshot instead.  Other errors as snapshot_take's. */
int snapshot_refresh(const struct snapshot *prev,
		     const struct snapshot_extras *px, char *const *dirs,
		     size_t n, const struct snapshot_opts *o,
		     struct snapshot **out, char **err);

/* What changed in a source, as its watches told: directories to read
 * again whole, and names (paths of an entry, relative to the root) that
 * changed in a directory whose other entries did not. */
struct snap_changed {
	char *const *dirs;
	size_t ndirs;
	char *const *names;
	size_t nnames;
};

/* snapshot_refresh, with names besides: each looked at on its own when
 * it was and is a file (or is gone), its directory's own entry read
 * again; a name that is, or was, anything else reads its directory
 * again whole.  A change of one file beside ten thousand directories is
 * then one name looked at, not ten thousand. */
int snapshot_refresh_changed(const struct snapshot *prev,
			     const struct snapshot_extras *px,
			     const struct snap_changed *c,
			     const struct snapshot_opts *o,
			     struct snapshot **out, char **err);

/* An empty snapshot bound to the source directory `root` (or to no
 * source when root is NULL), to be filled with snapshot_add*(). */
int snapshot_open(const char *root, struct snapshot **out, char **err);

/* Appends a copy of *e (its strings are duplicated, the path into s's
 * pool). */
int snapshot_add(struct snapshot *s, const struct snap_entry *e);
/* Appends *e, taking over its malloc'ed strings: its path is copied into
 * s's pool and freed (unless pooled: another snapshot's, left to it). */
int snapshot_append(struct snapshot *s, const struct snap_entry *e);

/* Opens `src`, the source of an entry with `flags` (SNAP_F_*), as a read
 * reached it: by its real path beneath "/" with SNAP_F_EXTERNAL, else
 * beneath the root, with no link followed either way (an entry of an
 * older record with SNAP_F_FOLLOW alone: following links); with
 * `oflags` (O_CLOEXEC added).  A descriptor, or -errno. */
int snapshot_open_src(const struct snapshot *s, unsigned flags,
		      const char *src, int oflags);

/* Appends `path` (kept verbatim: the writer validates and cleans it) as a
 * copy of `src`, a file or directory below the source root, with its
 * current metadata. */
int snapshot_add_source(struct snapshot *s, const char *path,
			const char *src);

void snapshot_sort(struct snapshot *s);
struct snap_entry *snapshot_find(const struct snapshot *s, const char *path);
/* In a sorted snapshot, the index past entry i and every entry below
 * it. */
size_t snapshot_subtree_end(const struct snapshot *s, size_t i);
/* The same, tried first at i + n (n == 0: no guess): two paths compared
 * when that is it, as it often is for siblings of one size. */
size_t snapshot_subtree_end_near(const struct snapshot *s, size_t i, size_t n);
/* The same among the first n entries only (which must be sorted). */
struct snap_entry *snapshot_find_n(const struct snapshot *s, size_t n,
				   const char *path);
/* snapshot_find() of paths asked in order (the names of one directory,
 * say): each is looked for from where the last one was, first as far on
 * as that was from the one before it (two paths compared where the
 * directories between are of one size).  Asked out of order, it looks
 * from the start.  A cursor starts zeroed. */
struct snap_cursor {
	size_t at, step;
};
struct snap_entry *snapshot_find_next(const struct snapshot *s,
				      const char *path, struct snap_cursor *c);
void snapshot_free(struct snapshot *s);
/* Which entries of a refresh are byte for byte those of the record it
 * views, at the same index, known without reading either: the pages
 * holding them were never written.  A compare of the two (the state's
 * journal) skips them. */
struct snap_same {
	bool *own; /* per page of the view, whether it wrote it; NULL: none
		    * is known the same */
	size_t n;  /* entries both have */
};
void snapshot_same_init(struct snap_same *c, const struct snapshot *s,
			const struct snapshot *prev);
/* How many entries from index i on are known the same. */
size_t snapshot_same_from(const struct snap_same *c, size_t i);
void snapshot_same_fini(struct snap_same *c);

/* Frees `old`, which `s` replaces as the record the next refresh starts
 * from.  A large `s` is then kept in a store, so that the refresh views
 * it rather than copying it: a refresh of `old` writes to it only what
 * it changed (the rest stays old's pages).  Without memfds, or when
 * another view of the store is alive, `s` stays as it is. */
void snapshot_supersede(struct snapshot *old, struct snapshot *s);
/* Room for `n` entries in all, made at once. */
int snapshot_reserve(struct snapshot *s, size_t n);

/* Moves the walk's warnings and directories to watch out of `s` into a
 * struct of their own (malloc'ed; NULL when out of memory, and then they
 * stay in `s`). */
struct snapshot_extras *snapshot_take_extras(struct snapshot *s);
/* Frees them, in `s` (for a snapshot that no longer needs them). */
void snapshot_drop_extras(struct snapshot *s);
void snapshot_extras_free(struct snapshot_extras *x);
/* Logs each warning `x` keeps, then how many more it counted, as the
 * mapping `name`'s (NULL: none), about `source`. */
void snapshot_warnings_log(const struct snapshot_extras *x, const char *name,
			   const char *source);
void snapshot_entry_fini(struct snap_entry *e);

/* In a merge of `s` with `l` in path order (both sorted), compares
 * s->v[i] with l->v[j] as snapshot_path_cmp() would: without a look at
 * the paths when s is a refresh of l that copied the one into the other.
 * *run is a cursor, 0 at the start; i must not go back between calls. */
int snapshot_merge_cmp(const struct snapshot *s, size_t i,
		       const struct snapshot *l, size_t j, size_t *run);

/* How many entries from s->v[i] on are copies, as a refresh made them,
 * of l's from l->v[j] on: 0 when s->v[i] is not one of l->v[j] (or s is
 * not a refresh of l).  *run as snapshot_merge_cmp()'s. */
size_t snapshot_copied(const struct snapshot *s, size_t i,
		       const struct snapshot *l, size_t j, size_t *run);
/* Whether s->v[i] is a copy of one of l's entries (so l has its path).
 * *run as snapshot_merge_cmp()'s. */
bool snapshot_is_copy(const struct snapshot *s, size_t i,
		      const struct snapshot *l, size_t *run);
/* The end of the run of copies of l's entries that s->v[i] is in, as a
 * refresh made them (each has its path, and its parents', in l); i when
 * it is not a copy.  *run as snapshot_merge_cmp()'s. */
size_t snapshot_copies_end(const struct snapshot *s, size_t i,
			   const struct snapshot *l, size_t *run);
/* Whether a read (a refresh, or a full read over s) maps s's store
 * copy-on-write now: s must not be written then, or the read would find
 * the change in the pages it has not written. */
bool snapshot_viewed(const struct snapshot *s);

/* Path order in which a directory's descendants follow it directly:
 * bytewise, except that '/' sorts before every other byte. */
int snapshot_path_cmp(const char *a, const char *b);

/* Lexical clean-up as Go's path.Clean: "foo//bar" -> "foo/bar",
 * "./bar" -> "bar", "" -> ".". */
char *snapshot_clean_path(const char *p);
/* Whether `p` is a path as a snapshot holds it: relative, with no empty,
 * "." or ".." element (snapshot_clean_path() leaves it as it is, and it
 * stays below the root). */
bool snapshot_path_is_clean(const char *p);

/* Whether the exclude patterns leave out `path` (relative to the source
 * root), a directory when `dir`: a symlink is one when it is followed to
 * a directory. */
bool snapshot_excluded(const struct snapshot_opts *o, const char *path,
		       bool dir);

const char *snapshot_warn_str(enum snap_warn kind);

/* Sets or clears SNAP_F_RACY on `e`, whose times (or content) were taken
 * at `seen` or later. */
void snapshot_mark_racy(struct snap_entry *e, const struct timespec *seen);

#endif
