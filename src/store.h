/* Memory that a second mapping shares copy-on-write: the pages of a
 * memfd, mapped shared by the one that owns them and privately by views
 * of it.  A view costs page tables, not a copy: only the pages it writes
 * become its own.  Made for the live record, which the next read of the
 * source repeats but for what changed. */
#ifndef ATOMSYNC_STORE_H
#define ATOMSYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>

struct store;

/* A new store of `len` bytes (whole pages) holding a copy of the `bytes`
 * at `src` (zeros after them), mapped shared at *map, its pages not
 * mapped yet: the caller frees `src`, then calls store_populate().
 * -ENOSYS and the like when the system has no memfd: the caller keeps
 * `src`. */
int store_copy(const void *src, size_t bytes, size_t len, struct store **out,
	       void **map);

/* Maps the pages of a store's shared mapping at once rather than as
 * they are touched (so that they count in the process's resident set,
 * as its memory does). */
void store_populate(void *map, size_t len);

/* How much of a store a view is to read. */
enum store_reads {
	/* All of it (a full read over the record): the pages of x's
	 * shared mapping are unmapped, not lost, and the view is mapped
	 * whole at once; until they are read again through x, they count
	 * in the resident set once, through the view. */
	STORE_READS_ALL,
	/* A few of its pages (a refresh of a few directories): x's shared
	 * mapping keeps its pages, which a refresh reads, and the view maps
	 * a page only as it is touched.  A page read through both counts
	 * twice until store_let_go() of it. */
	STORE_READS_FEW,
};

/* A private view of the first `len` bytes (whole pages) of x, mapped at
 * *out: what x holds, and zeros past its end.  Takes a reference to x.
 * Writing to x while a view of it exists shows in the pages the view has
 * not written yet: only a store with no view is written. */
int store_view(struct store *x, size_t len, enum store_reads reads,
	       void **out);

/* Unmaps the whole pages within bytes [from, to) of x's shared mapping
 * (the memfd keeps them; they come back as they are read), so that what
 * a view of the same pages holds counts once in the resident set. */
void store_let_go(struct store *x, size_t from, size_t to);

/* Whether one mapping of x alone is alive (no view beside the shared
 * one, or no shared one beside the view). */
bool store_alone(const struct store *x);

/* For each of the `len` bytes (whole pages) of the view at `view`,
 * whether it wrote the page: own[k] for page k.  An error when the
 * pagemap cannot be read (then any page may be). */
int store_own_pages(const void *view, size_t len, bool *own);

/* Makes the view at `view` (`len` bytes) the content of x, which it holds
 * the last reference to: the pages it wrote are written to x, and x is
 * then mapped shared at *out in its place (its pages mapped only once
 * the view is unmapped, so that none counts twice).  On failure the view
 * is left as it was. */
int store_absorb(struct store *x, void *view, size_t len, void **out);

/* Unmaps `len` bytes at `map` (a mapping of x's, shared or a view) and
 * drops the reference it held. */
void store_unmap(struct store *x, void *map, size_t len);

#endif
