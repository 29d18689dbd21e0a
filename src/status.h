/* atomsyncd --status: for one mapping, the generation its target holds
 * and when it went live, whether the target equals the source now (the
 * comparison a publish would make), whether an atomsyncd holds the
 * target, and the last error recorded there.  It only reads: no target
 * is created, locked or cleaned, and nothing is written. */
#ifndef ATOMSYNC_STATUS_H
#define ATOMSYNC_STATUS_H

#include <stdbool.h>
#include <stdio.h>

#include "conf.h"

/* Prints the block of mapping `c` on `out`, one labelled fact a line,
 * names escaped as text log lines escape them.  *ok is true when the
 * target equals the source and no running daemon has recorded an error
 * for it.  0, or -ENOMEM. */
int status_show(const struct conf_sync *c, FILE *out, bool *ok);

/* --status: the blocks of every mapping of `conf` on `out`, a blank line
 * between two.  0 when every target is in step; -EAGAIN when one is not;
 * -EIO when `out` could not be written. */
int status_show_all(const struct conf *conf, FILE *out);

#endif
