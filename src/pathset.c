#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "pathset.h"

void pathset_init(struct pathset *p)
{
	memset(p, 0, sizeof(*p));
	p->sealed = true;
}

static void drop_paths(struct pathset *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	free(p->v);
	p->v = NULL;
	p->n = p->cap = 0;
}

void pathset_fini(struct pathset *p)
{
	drop_paths(p);
	pathset_init(p);
}

struct pathset *pathset_new(void)
{
	struct pathset *p = malloc(sizeof(*p));

	if (p)
		pathset_init(p);
	return p;
}

void pathset_free(struct pathset *p)
{
	if (p == NULL)
		return;
	drop_paths(p);
	free(p);
}

void pathset_add_all(struct pathset *p)
{
	drop_paths(p);
	p->all = true;
	p->sealed = true;
}

int pathset_add(struct pathset *p, const char *path, size_t len)
{
	if (p->all)
		return 0;
	/* The same path added again and again (every file of a directory)
	 * is kept once without a sort. */
	if (p->n > 0 && strlen(p->v[p->n - 1]) == len &&
	    memcmp(p->v[p->n - 1], path, len) == 0)
		return 0;
	if (p->n == PATHSET_MAX) {
		pathset_add_all(p);
		return 0;
	}
	char *c = strndup(path, len);
	if (c == NULL || array_grow(&p->v, &p->cap, p->n, sizeof(*p->v)) < 0) {
		free(c);
		pathset_add_all(p);
		return -ENOMEM;
	}
	p->v[p->n++] = c;
	p->sealed = false;
	return 0;
}

int pathset_merge(struct pathset *p, const struct pathset *src)
{
	int rc = 0;

	if (src->all) {
		pathset_add_all(p);
		return 0;
	}
	for (size_t i = 0; rc == 0 && i < src->n; i++)
		rc = pathset_add(p, src->v[i], strlen(src->v[i]));
	return rc;
}

static int cmp_path(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void pathset_seal(struct pathset *p)
{
	size_t k = 0;

	if (p->sealed)
		return;
	qsort(p->v, p->n, sizeof(*p->v), cmp_path);
	for (size_t i = 0; i < p->n; i++) {
		if (k > 0 && strcmp(p->v[k - 1], p->v[i]) == 0)
			free(p->v[i]);
		else
			p->v[k++] = p->v[i];
	}
	p->n = k;
	p->sealed = true;
}

bool pathset_has(const struct pathset *p, const char *path)
{
	if (p->all)
		return true;
	return p->n > 0 && bsearch(&path, p->v, p->n, sizeof(*p->v),
				   cmp_path) != NULL;
}
