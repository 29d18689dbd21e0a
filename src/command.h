/* The command lines of a mapping's commands (check_command, on_update)
 * and the words of its hook_env, as the config checks them and hook.c
 * runs them; nothing here starts a process. */
#ifndef ATOMSYNC_COMMAND_H
#define ATOMSYNC_COMMAND_H

#include <stdbool.h>

/* Splits a command line into words: blanks separate, '...' is literal,
 * "..." allows \" \\ \$ \`, a backslash quotes the next character.  No
 * expansion, no globbing.  *argv is NULL-terminated; free with
 * command_argv_free(). */
int command_split(const char *cmd, char ***argv, char **err);
void command_argv_free(char **argv);

/* The first shell syntax in cmd that command_split takes literally (outside
 * single quotes: > < | ; & $VAR $(...) `...`), quoted for a message
 * ("'>'", "'$HOME'"; malloc'ed), or NULL when there is none or when cmd
 * does not split.  When cmd runs a shell with -c (sh, bash, dash, after
 * env and its NAME=value words), which reads the syntax in its script
 * itself, only an operator or redirection word after the script is
 * (*after set): the shell passes it to the script as an argument. */
char *command_shell_syntax(const char *cmd, bool *after);

/* The PATH a command gets when the daemon has none. */
#define COMMAND_DEFAULT_PATH \
	"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Whether the program `name` (a command's first word) can be run, found
 * as a command with the environment `env` (hook_env's words; NULL:
 * none) finds it: in env's PATH, else the daemon's, else the default.
 * 0, -ENOENT (no such program), -EACCES (not executable), -ENOMEM. */
int command_program(const char *name, char *const env[]);

/* Whether `word` is a valid hook_env word (NAME or NAME=value, NAME made
 * of letters, digits and '_', not starting with a digit nor with
 * ATOMSYNC_); 0, or -EINVAL with *err saying why. */
int command_env_check(const char *word, char **err);

#endif
