#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

void *array_map_huge(size_t bytes, size_t *len)
{
	const size_t huge = ARRAY_HUGE_PAGE;

	if (bytes > SIZE_MAX - 2 * huge)
		return NULL;
	bytes = array_round_up(bytes, huge);
	/* One huge page more, to cut it aligned out of. */
	size_t raw_len = bytes + huge;
	char *raw = mmap(NULL, raw_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (raw == MAP_FAILED)
		return NULL;
	char *p = raw + (huge - (uintptr_t)raw % huge) % huge;
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + raw_len > p + bytes)
		munmap(p + bytes, (size_t)(raw + raw_len - (p + bytes)));
	(void)madvise(p, bytes, MADV_HUGEPAGE);
	*len = bytes;
	return p;
}
