/* Growable arrays: room is doubled, so that n appends cost O(n) copies,
 * not O(n^2) as one realloc per element does. */
#ifndef ATOMSYNC_ARRAY_H
#define ATOMSYNC_ARRAY_H

#include <stddef.h>

/* Makes room for one more element in the array that `vp` points to (a
 * pointer to its first element, of `size` bytes each) holding `n`, with
 * room for *cap: 0, or -ENOMEM with the array as it was. */
int array_grow(void *vp, size_t *cap, size_t n, size_t size);

#endif
