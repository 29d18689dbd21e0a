#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch.h"

/* execvp()'s search path when the environment has none. */
#define LAUNCH_DEFAULT_PATH "/bin:/usr/bin"

const char *launch_env_value(char *const env[], const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; env && env[i]; i++)
		if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
			return env[i] + n + 1;
	return NULL;
}

/* 0 when `f` is an executable regular file; -ENOENT, or -EACCES for
 * one that is there but not to be run. */
static int runnable(const char *f)
{
	struct stat st;

	if (stat(f, &st) < 0 || !S_ISREG(st.st_mode))
		return -ENOENT;
	return access(f, X_OK) == 0 ? 0 : -EACCES;
}

/* The file execvp() would run for `name`: as it is when it holds a '/',
 * else the first executable regular file of that name in the PATH
 * directories, a relative one (or an empty one: ".") taken from "/",
 * where the command runs.  Looked at before the start: a failed exec
 * is not always told to the parent (under valgrind, say). */
int launch_find(const char *name, const char *path, char **out)
{
	int rc = -ENOENT;

	if (strchr(name, '/')) {
		/* A relative one from "/", as the command runs. */
		char *f = NULL;
		if (asprintf(&f, "%s%s", name[0] == '/' ? "" : "/", name) < 0)
			return -ENOMEM;
		rc = runnable(f);
		if (rc < 0)
			free(f);
		else
			*out = f;
		return rc;
	}
	if (path == NULL)
		path = LAUNCH_DEFAULT_PATH;
	for (const char *p = path;; p++) {
		const char *e = strchrnul(p, ':');
		int len = (int)(e - p);
		char *f = NULL;
		if (asprintf(&f, "%s%.*s%s%s", *p == '/' ? "" : "/", len, p,
			     len ? "/" : "", name) < 0)
			return -ENOMEM;
		int r = runnable(f);
		if (r == 0) {
			*out = f;
			return 0;
		}
		if (r == -EACCES)
			rc = r;
		free(f);
		if (*e == '\0')
			return rc;
		p = e;
	}
}

/* `fd`, or a copy of it above 3 (close-on-exec, in *copy), so that
 * moving the child's descriptors 0 to 3 into place never overwrites it
 * first. */
static int above_three(int fd, int *copy)
{
	if (fd > 3)
		return fd;
	*copy = fcntl(fd, F_DUPFD_CLOEXEC, 4);
	return *copy < 0 ? -errno : *copy;
}

/* /dev/null, err and fd3 (when >= 0) as 0 to 3, and "/". */
static int actions(posix_spawn_file_actions_t *fa, int err, int fd3)
{
	int rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null",
						  O_RDONLY, 0);

	if (rc == 0)
		rc = posix_spawn_file_actions_addopen(fa, 1, "/dev/null",
						      O_WRONLY, 0);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(fa, err, 2);
	if (rc == 0 && fd3 >= 0)
		rc = posix_spawn_file_actions_adddup2(fa, fd3, 3);
	if (rc == 0)
		rc = posix_spawn_file_actions_addchdir_np(fa, "/");
	return -rc;
}

/* A session of its own; no signal blocked, none ignored or caught. */
static int attributes(posix_spawnattr_t *at)
{
	sigset_t none, all;
	int rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETSID |
						  POSIX_SPAWN_SETSIGMASK |
						  POSIX_SPAWN_SETSIGDEF);

	sigemptyset(&none);
	/* Every bit, not sigfillset(): that leaves out the C library's own
	 * signals, which its posix_spawn() then has the command ignore (an
	 * ignored signal stays ignored across exec). */
	memset(&all, 0xff, sizeof(all));
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(at, &none);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(at, &all);
	return -rc;
}

/* posix_spawn(), and for a file the kernel cannot run as it is (no
 * "#!" line), /bin/sh with it, as execvp() does. */
static int start(const char *file, char *const argv[], char *const env[],
		 const posix_spawn_file_actions_t *fa,
		 const posix_spawnattr_t *at, pid_t *pid)
{
	int rc = posix_spawn(pid, file, fa, at, argv, env);
	size_t n = 0;

	if (rc != ENOEXEC)
		return -rc;
	while (argv[n])
		n++;
	char **sh = calloc(n + 2, sizeof(*sh));
	if (sh == NULL)
		return -ENOMEM;
	sh[0] = "/bin/sh";
	sh[1] = (char *)file;
	for (size_t i = 1; i < n; i++)
		sh[i + 1] = argv[i];
	rc = posix_spawn(pid, "/bin/sh", fa, at, sh, env);
	free(sh);
	return -rc;
}

int launch_command(char *const argv[], char *const env[], int err_fd, int fd3,
		   int *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int err_copy = -1, fd3_copy = -1, err = err_fd, f3 = fd3;
	char *file = NULL;
	pid_t p = -1;
	int rc = launch_find(argv[0], launch_env_value(env, "PATH"), &file);

	if (rc == 0 && (err = above_three(err_fd, &err_copy)) < 0)
		rc = err;
	if (rc == 0 && fd3 >= 0 && (f3 = above_three(fd3, &fd3_copy)) < 0)
		rc = f3;
	if (rc == 0 && (rc = -posix_spawn_file_actions_init(&fa)) == 0) {
		if ((rc = -posix_spawnattr_init(&at)) == 0) {
			rc = actions(&fa, err, f3);
			if (rc == 0)
				rc = attributes(&at);
			if (rc == 0)
				rc = start(file, argv, env, &fa, &at, &p);
			posix_spawnattr_destroy(&at);
		}
		posix_spawn_file_actions_destroy(&fa);
	}
	if (err_copy >= 0)
		close(err_copy);
	if (fd3_copy >= 0)
		close(fd3_copy);
	free(file);
	if (rc == 0)
		*pid = (int)p;
	return rc;
}
