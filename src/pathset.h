/* Sets of paths, such as the directories in which one generation
 * differs from the one it replaced.  Past PATHSET_MAX paths a set stands
 * for every path: that costs a caller more work, never a wrong answer. */
#ifndef ATOMSYNC_PATHSET_H
#define ATOMSYNC_PATHSET_H

#include <stdbool.h>
#include <stddef.h>

#define PATHSET_MAX 4096

struct pathset {
	char **v;    /* sorted and each once after pathset_seal() */
	size_t n, cap;
	bool all;    /* stands for every path */
	bool sealed; /* nothing added since pathset_seal() */
};

void pathset_init(struct pathset *p);
void pathset_fini(struct pathset *p);
/* An empty set of its own, NULL when out of memory; pathset_free()
 * takes NULL too. */
struct pathset *pathset_new(void);
void pathset_free(struct pathset *p);
/* Adds the first `len` bytes of `path`: 0, or -ENOMEM with the set
 * standing for every path. */
int pathset_add(struct pathset *p, const char *path, size_t len);
/* Makes the set stand for every path. */
void pathset_add_all(struct pathset *p);
/* Adds every path of `src`: 0 or -ENOMEM, as pathset_add(). */
int pathset_merge(struct pathset *p, const struct pathset *src);
/* Sorts the set and drops repeated paths, for pathset_has(). */
void pathset_seal(struct pathset *p);
/* Whether `path` is in the set (a sealed one). */
bool pathset_has(const struct pathset *p, const char *path);

#endif
