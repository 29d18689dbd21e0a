/* Growable arrays: room is doubled, so that n appends cost O(n) copies,
 * not O(n^2) as one realloc per element does. */
#ifndef ATOMSYNC_ARRAY_H
#define ATOMSYNC_ARRAY_H

#include <stddef.h>

/* Makes room for one more element in the array that `vp` points to (a
 * pointer to its first element, of `size` bytes each) holding `n`, with
 * room for *cap: 0, or -ENOMEM with the array as it was. */
int array_grow(void *vp, size_t *cap, size_t n, size_t size);

/* `x` rounded up to a multiple of `to` (not 0); x + to must not wrap. */
static inline size_t array_round_up(size_t x, size_t to)
{
	return (x + to - 1) / to * to;
}

#define ARRAY_HUGE_PAGE ((size_t)2 << 20)
/* Arrays of this size and more, sized at once, are worth huge pages: a
 * page fault can cost tens of microseconds under a hypervisor, and 10,000
 * entries of 96 bytes span 240 pages of 4 KiB, each faulted in at its
 * first write (one huge page: one fault). */
#define ARRAY_HUGE_MIN ((size_t)256 << 10)

/* A zeroed mapping of its own of at least `bytes`, in whole huge pages
 * (*len: its size), aligned to one and advised to be made of them (only
 * advice: without, it is a mapping like malloc's), or NULL;
 * munmap(p, *len) frees it. */
void *array_map_huge(size_t bytes, size_t *len);

#endif
