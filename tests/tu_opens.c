/* openat() for a test linked with -Wl,--wrap=openat (in an object of its
 * own, pulled in only by such a test): counts the calls on a path that
 * starts with tu_opens_of. */
#include "config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <string.h>

#include "testutil.h"

const char *_Atomic tu_opens_of;
atomic_int tu_opens;

int __real_openat(int dfd, const char *path, int flags, ...);
int __wrap_openat(int dfd, const char *path, int flags, ...);

int __wrap_openat(int dfd, const char *path, int flags, ...)
{
	const char *of = atomic_load(&tu_opens_of);
	int mode = 0;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	if (of && strncmp(path, of, strlen(of)) == 0)
		atomic_fetch_add(&tu_opens, 1);
	return __real_openat(dfd, path, flags, mode);
}
