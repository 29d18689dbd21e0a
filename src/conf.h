/* The INI configuration: a [daemon] section and one [sync:NAME] section
 * per mapping.  Loading records every problem as "file:line: message" and
 * goes on, so one run reports all of them; conf_check() adds the checks
 * that need the whole file (duplicate targets, feedback loops). */
#ifndef ATOMSYNC_CONF_H
#define ATOMSYNC_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ignore.h"
#include "log.h"
#include "snapshot.h"

#define CONF_DEBOUNCE_MS 100
#define CONF_MAX_DELAY_MS 2000
#define CONF_RESYNC_S 300
#define CONF_GRACE_MS 1000
#define CONF_POLL_MS 2000
#define CONF_HOOK_TIMEOUT_S 30
#define CONF_UNHEALTHY_S 300
#define CONF_MAX_FILES 1000000
/* fs.inotify.max_user_watches is an int. */
#define CONF_MAX_WATCHES 2147483647

struct conf_sync {
	char *name;
	unsigned line; /* of the [sync:NAME] header */
	char *source, *target;
	unsigned source_line, target_line;
	unsigned debounce_ms, max_delay_ms;
	unsigned debounce_line, max_delay_line; /* 0: not given */
	unsigned check_command_line, on_update_line;
	char **exclude; /* the patterns as written */
	size_t nexclude;
	struct ignore *ignore; /* the same, compiled; NULL when none */
	bool fsync;
	unsigned resync_interval_s;
	unsigned poll_interval_ms;
	enum snap_links symlinks;
	char **follow_into; /* absolute directories links may lead into */
	size_t nfollow_into;
	unsigned follow_into_line;
	size_t max_files;   /* entries of the source */
	uint64_t max_bytes; /* bytes in its files; 0: no limit */
	bool allow_empty;   /* an empty source may replace content */
	char *owner, *group;
	uint32_t uid, gid; /* resolved; SNAP_NO_ID when not set */
	int file_mode, dir_mode; /* -1 when not set */
	unsigned grace_ms;
	/* hooks */
	char *check_command, *on_update;
	int reload_signal; /* 0 when not set */
	char *reload_pidfile;
	int reload_pid;	/* 0 when not set */
	unsigned hook_timeout_s;
	char **hook_env; /* NAME or NAME=value, for the commands */
	size_t nhook_env;
};

struct conf_errors {
	char **v;
	size_t n;
	size_t cap; /* conf.c's */
};

struct conf {
	char *path;
	enum log_level log_level;
	bool log_level_set;
	enum log_format log_format;
	bool log_format_set;
	char *metrics_file;
	unsigned metrics_file_line;
	char *metrics_listen;
	unsigned unhealthy_after_s;
	size_t max_watches; /* for all mappings; 0: half the kernel's limit */
	struct conf_sync *syncs;
	size_t nsyncs;
	/* What is valid but likely not what was meant ("file:line:
	 * message"), for --check-config and the log. */
	struct conf_errors warnings;
};

/* Reads `path`, which must be a regular file owned by root or by the
 * user we run as and writable by no one else.  Returns 0 with *out set
 * even when problems were found (they are in errs); a negative errno,
 * with one message in errs, when the file cannot be read or is not to
 * be trusted. */
int conf_load(const char *path, struct conf **out, struct conf_errors *errs);
/* Whole-config checks; appends to errs. */
void conf_check(const struct conf *c, struct conf_errors *errs);
/* Adds to c->warnings each check_command and on_update whose program is
 * not there or not executable, looked up as it will be (hook_env's
 * PATH, else the daemon's).  It looks at files, which may be on a file
 * system that hangs: not for a reload, on the event loop. */
void conf_check_programs(struct conf *c);
/* A config holding one mapping, for --source/--target. */
int conf_adhoc(const char *source, const char *target, struct conf **out,
	       struct conf_errors *errs);

/* Appends an exclude pattern (gitignore(5) syntax); -EINVAL with the
 * reason in *err when it is not a valid one, -ENOMEM. */
int conf_sync_add_exclude(struct conf_sync *s, const char *pattern,
			  char **err);

struct conf_sync *conf_sync_dup(const struct conf_sync *s);
void conf_sync_free(struct conf_sync *s);
/* Whether two mappings would behave the same (a reload keeps it running). */
bool conf_sync_equal(const struct conf_sync *a, const struct conf_sync *b);
void conf_free(struct conf *c);

void conf_errors_add(struct conf_errors *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void conf_errors_fini(struct conf_errors *e);

/* Parses "127.0.0.1:9464", "[::1]:9464", "*:9464" or ":9464" (any
 * address); host gets "" for any.  host and port may be NULL to only check. */
int conf_parse_listen(const char *s, char *host, size_t hostsize,
		      unsigned *port);

/* Parses a signal name (HUP, SIGHUP) or number; -EINVAL otherwise. */
int conf_parse_signal(const char *s, int *out);
/* "inside", "follow" or "skip" (the symlinks key, --symlinks); -EINVAL
 * for anything else. */
int conf_parse_symlinks(const char *s, enum snap_links *out);

#endif
