#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "launch.h"
#include "log.h"

static const char *basename_of(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

void command_argv_free(char **argv)
{
	if (argv == NULL)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

/* One loop over the command line, the quoting rules its cases: longer
 * than most functions, but read best as one. */
int command_split(const char *cmd, char ***out, char **err)
{
	char **argv = NULL;
	size_t argc = 0;
	size_t len = strlen(cmd);
	char *word = malloc(len + 1);
	size_t w = 0;
	bool in_word = false;
	const char *p = cmd;

	if (word == NULL)
		return -ENOMEM;
	for (;;) {
		char c = *p;
		if (c == '\0' || c == ' ' || c == '\t' || c == '\n') {
			if (in_word) {
				char **nv = realloc(argv, (argc + 2) * sizeof(*nv));
				if (nv == NULL)
					goto nomem;
				argv = nv;
				argv[argc] = strndup(word, w);
				if (argv[argc] == NULL)
					goto nomem;
				argc++;
				argv[argc] = NULL;
				w = 0;
				in_word = false;
			}
			if (c == '\0')
				break;
			p++;
			continue;
		}
		in_word = true;
		if (c == '\'') {
			const char *e = strchr(p + 1, '\'');
			if (e == NULL) {
				free(word);
				command_argv_free(argv);
				return log_err_set(err, -EINVAL,
						   "unterminated ' in \"%s\"", cmd);
			}
			memcpy(word + w, p + 1, (size_t)(e - p - 1));
			w += (size_t)(e - p - 1);
			p = e + 1;
		} else if (c == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
					p++;
				word[w++] = *p++;
			}
			if (*p != '"') {
				free(word);
				command_argv_free(argv);
				return log_err_set(err, -EINVAL,
						   "unterminated \" in \"%s\"", cmd);
			}
			p++;
		} else if (c == '\\') {
			if (p[1] == '\0') {
				free(word);
				command_argv_free(argv);
				return log_err_set(err, -EINVAL,
						   "trailing \\ in \"%s\"", cmd);
			}
			word[w++] = p[1];
			p += 2;
		} else {
			word[w++] = c;
			p++;
		}
	}
	free(word);
	if (argc == 0) {
		command_argv_free(argv);
		return log_err_set(err, -EINVAL, "empty command");
	}
	*out = argv;
	return 0;
nomem:
	free(word);
	command_argv_free(argv);
	return -ENOMEM;
}

/* Where argv has a shell run a -c script: the script's index, or 0. */
static size_t shell_script(char **argv)
{
	size_t i = 0;
	bool c = false;

	if (strcmp(basename_of(argv[0]), "env") == 0)
		for (i = 1; argv[i] && (argv[i][0] == '-' || strchr(argv[i], '='));)
			i++;
	if (argv[i] == NULL)
		return 0;
	const char *b = basename_of(argv[i]);
	if (strcmp(b, "sh") != 0 && strcmp(b, "bash") != 0 &&
	    strcmp(b, "dash") != 0)
		return 0;
	for (i++; argv[i] && (argv[i][0] == '-' || argv[i][0] == '+'); i++) {
		if (strcmp(argv[i] + 1, "o") == 0 && argv[i + 1])
			i++; /* -o OPTION */
		else if (argv[i][0] == '-' && argv[i][1] != '-' &&
			 strchr(argv[i] + 1, 'c'))
			c = true;
	}
	return c && argv[i] ? i : 0;
}

/* Whether a word after a shell's script is an operator or redirection
 * meant for that shell ("&&", "|", ";", ">log", "2>&1"): the shell
 * takes it for an argument of the script ($0, $1, ...). */
static bool operator_word(const char *w)
{
	size_t d = strspn(w, "0123456789");

	if (w[d] == '<' || w[d] == '>' || (w[0] == '&' && w[1] == '>'))
		return true;
	return w[0] && strspn(w, "&|;") == strlen(w);
}

/* The first word after argv's -c script that is shell syntax, quoted
 * (malloc'ed), or NULL. */
static char *after_script(char **argv, size_t script)
{
	char *r = NULL;

	for (size_t k = script + 1; argv[k]; k++)
		if (operator_word(argv[k])) {
			if (asprintf(&r, "'%s'", argv[k]) < 0)
				r = NULL;
			break;
		}
	return r;
}

/* The shell syntax at p, quoted (malloc'ed), or NULL. */
static char *syntax_at(const char *p, bool in_dq)
{
	char *r = NULL;
	size_t n;

	if (*p == '`')
		return strdup("'`...`'");
	if (*p == '$' && (p[1] == '(' || p[1] == '{'))
		return strdup(p[1] == '(' ? "'$(...)'" : "'${...}'");
	if (*p == '$' && (isalpha((unsigned char)p[1]) || p[1] == '_')) {
		for (n = 2; isalnum((unsigned char)p[n]) || p[n] == '_'; n++)
			;
	} else if (*p == '$' && p[1] && strchr("0123456789?$!#@*-", p[1])) {
		n = 2;
	} else if (!in_dq && strchr("><|;&", *p)) {
		n = p[1] && strchr("><|;&", p[1]) ? 2 : 1;
	} else {
		return NULL;
	}
	if (asprintf(&r, "'%.*s'", (int)n, p) < 0)
		return NULL;
	return r;
}

char *command_shell_syntax(const char *cmd, bool *after)
{
	char **argv = NULL;
	bool in_dq = false;

	*after = false;
	if (command_split(cmd, &argv, NULL) < 0)
		return NULL;
	size_t script = shell_script(argv);
	char *r = script ? after_script(argv, script) : NULL;
	command_argv_free(argv);
	*after = r != NULL;
	if (script)
		return r;
	/* Read as command_split reads it. */
	for (const char *p = cmd; *p; p++) {
		if (*p == '\\' && p[1] && (!in_dq || strchr("\"\\$`", p[1]))) {
			p++;
		} else if (*p == '\'' && !in_dq) {
			p = strchr(p + 1, '\'');
		} else if (*p == '"') {
			in_dq = !in_dq;
		} else {
			char *t = syntax_at(p, in_dq);
			if (t)
				return t;
		}
	}
	return NULL;
}

int command_program(const char *name, char *const env[])
{
	const char *path = launch_env_value(env, "PATH");
	char *file = NULL;

	if (path == NULL)
		path = getenv("PATH");
	int rc = launch_find(name, path ? path : COMMAND_DEFAULT_PATH, &file);

	free(file);
	return rc;
}

int command_env_check(const char *word, char **err)
{
	size_t len = strcspn(word, "=");
	bool ok = len > 0 && !isdigit((unsigned char)word[0]);

	for (size_t i = 0; ok && i < len; i++)
		ok = isalnum((unsigned char)word[i]) || word[i] == '_';
	if (!ok)
		return log_err_set(err, -EINVAL,
				   "'%.*s' is not a variable name (letters, "
				   "digits and '_', not starting with a digit)",
				   (int)len, word);
	if (strncmp(word, "ATOMSYNC_", 9) == 0)
		return log_err_set(err, -EINVAL,
				   "%.*s: the ATOMSYNC_ variables are atomsyncd's "
				   "own",
				   (int)len, word);
	return 0;
}

