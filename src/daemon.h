/* The daemon: runs every mapping of a config on one libuv loop, with the
 * signals (TERM/INT stop, HUP reloads, USR1 logs the status), the systemd
 * notifications, the metrics endpoint and file, and the inotify watches
 * all mappings share. */
#ifndef ATOMSYNC_DAEMON_H
#define ATOMSYNC_DAEMON_H

#include <stdbool.h>

#include "conf.h"

struct daemon;

struct daemon_opts {
	bool dry_run;
	/* One mapping from the command line: no config file to reload. */
	bool adhoc;
	/* What the command line changes in a config, the one given to
	 * daemon_new and each one a reload loads. */
	void (*override)(struct conf *c, void *data);
	void *data;
};

/* Takes `conf` (checked, overrides applied) when it succeeds.  0, or a
 * negative errno, logged. */
int daemon_new(struct conf *conf, const struct daemon_opts *o,
	       struct daemon **out);
/* Starts every mapping and runs until a stop signal has been handled and
 * every mapping has stopped.  0, or a negative errno, logged. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);

#endif
