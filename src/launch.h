/* Starting a hook's command so that its process group can be signalled
 * safely: the leader stays the caller's child, unreaped, for as long as
 * the caller wants (libuv's uv_spawn() reaps it as soon as it exits, and
 * its id can then be another process group's). */
#ifndef ATOMSYNC_LAUNCH_H
#define ATOMSYNC_LAUNCH_H

/* Starts argv (argv[0] looked up in env's PATH, as execvp() would, from
 * "/") as the leader of a session and process group of its own, with
 * env, its working directory "/", no signal blocked or ignored,
 * standard input and output /dev/null, standard error `err_fd` and,
 * when `fd3` >= 0, that as descriptor 3.  Every other descriptor must
 * be close-on-exec.  A file with no "#!" line runs through /bin/sh.
 * The child is left to the caller to reap: until it does, its pid, and
 * so its process group's id, is nobody else's.  0 and *pid, or a
 * negative errno (-ENOENT: not found; -EACCES: found, not executable). */
int launch_command(char *const argv[], char *const env[], int err_fd, int fd3,
		   int *pid);

/* The file launch_command() would run for `name`, with the PATH `path`
 * (NULL: /bin:/usr/bin): 0 and *out (malloc'ed), or -ENOENT (none) or
 * -EACCES (found, not executable). */
int launch_find(const char *name, const char *path, char **out);

/* The value of `name` in env (NAME=value entries, NULL-terminated; env
 * may be NULL), or NULL. */
const char *launch_env_value(char *const env[], const char *name);

#endif
