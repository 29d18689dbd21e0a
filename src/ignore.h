/* Exclude patterns with the rules of gitignore(5), as git applies them: a
 * pattern without a slash (but a trailing one) matches a name at any
 * depth, any other is anchored at the source root; a trailing slash
 * matches directories only; "*", "?" and "[...]" never match '/'; "**"
 * between slashes spans directories; "!" re-includes; the last pattern
 * that matches decides.
 *
 * Matching never backtracks more than one star at a time: it takes time
 * proportional to the length of the path times that of the pattern, with
 * no recursion, whatever the names. */
#ifndef ATOMSYNC_IGNORE_H
#define ATOMSYNC_IGNORE_H

#include <stdbool.h>
#include <stddef.h>

struct ignore;

/* An empty list (it matches nothing); NULL when out of memory. */
struct ignore *ignore_new(void);
void ignore_free(struct ignore *ig);

/* Appends one pattern.  -EINVAL with a one-line message in *err (an
 * unterminated '[', a trailing backslash, an empty pattern...); -ENOMEM. */
int ignore_add(struct ignore *ig, const char *pattern, char **err);

/* Whether `pattern` would be accepted; the same errors as ignore_add. */
int ignore_check(const char *pattern, char **err);

/* Number of patterns in the list. */
size_t ignore_count(const struct ignore *ig);

/* Whether the last pattern that matches the clean relative path `path`
 * (a directory when `dir`) excludes it.  Only the path itself is looked
 * at: the caller does not ask about what lies inside an excluded
 * directory (a walk does not enter it, so nothing there comes back).
 * A NULL list excludes nothing. */
bool ignore_match(const struct ignore *ig, const char *path, bool dir);

/* Whether a name is excluded wherever it is and whatever its type: there
 * is no "!" pattern, and one that is neither anchored nor for directories
 * only matches the name.  For callers that know only a name (an inotify
 * event); false means "maybe not". */
bool ignore_name_excluded(const struct ignore *ig, const char *name);

#endif
