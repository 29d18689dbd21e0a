#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

#define ARRAY_FIRST 8

int array_grow(void *vp, size_t *cap, size_t n, size_t size)
{
	void *v, *nv;

	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : ARRAY_FIRST;
	if (nc < n + 1)
		nc = n + 1;
	if (nc > SIZE_MAX / size)
		return -ENOMEM;
	/* The caller's pointer is of its own type: copied, not cast. */
	memcpy(&v, vp, sizeof(v));
	nv = realloc(v, nc * size);
	if (nv == NULL)
		return -ENOMEM;
	memcpy(vp, &nv, sizeof(nv));
	*cap = nc;
	return 0;
}
