/* The config file: values, defaults, and one clear line per problem. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "testutil.h"

static char *tmp, *path;

static void setup(void)
{
	tmp = tu_mkdtemp();
	path = tu_path(tmp, "atomsync.conf");
}

static void teardown(void)
{
	tu_rmrf(tmp);
	free(path);
	free(tmp);
}

static struct conf *load(const char *text, struct conf_errors *errs)
{
	struct conf *c = NULL;
	tu_write(tmp, "atomsync.conf", text, 0644);
	ck_assert_int_eq(conf_load(path, &c, errs), 0);
	conf_check(c, errs);
	conf_check_programs(c);
	return c;
}

static void assert_error(const struct conf_errors *e, unsigned line,
			 const char *needle)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "atomsync.conf:%u: ", line);
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->v[i], prefix) && strstr(e->v[i], needle))
			return;
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  %s\n", e->v[i]);
	ck_abort_msg("no error at line %u mentioning '%s'", line, needle);
}

START_TEST(test_full_example_and_defaults)
{
	struct conf_errors e = {0};
	struct conf *c = load("[daemon]\n"
			      "log_level = debug\n"
			      "log_format = json\n"
			      "\n"
			      "[sync:web]\n"
			      "source = /srv/config/web\n"
			      "target = /run/web-config\n"
			      "debounce_ms = 250        ; quiet period\n"
			      "max_delay_ms = 5000\n"
			      "exclude = *.swp *~ .git\n"
			      "fsync = no\n"
			      "resync_interval_s = 60\n"
			      "symlinks = follow\n"
			      "owner = root\n"
			      "group = 0\n"
			      "file_mode = 0640\n"
			      "dir_mode = 0750\n"
			      "grace_ms = 0\n"
			      "\n"
			      "[sync:defaults]\n"
			      "source = /a\n"
			      "target = /b\n",
			      &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	ck_assert(c->log_level_set && c->log_level == LOG_LVL_DEBUG);
	ck_assert(c->log_format == LOG_FMT_JSON);
	ck_assert_uint_eq(c->nsyncs, 2);
	struct conf_sync *s = &c->syncs[0];
	ck_assert_str_eq(s->name, "web");
	ck_assert_str_eq(s->source, "/srv/config/web");
	ck_assert_uint_eq(s->debounce_ms, 250);
	ck_assert_uint_eq(s->max_delay_ms, 5000);
	ck_assert_uint_eq(s->nexclude, 3);
	ck_assert_str_eq(s->exclude[2], ".git");
	ck_assert(!s->fsync);
	ck_assert_int_eq(s->symlinks, SNAP_LINKS_FOLLOW);
	ck_assert_uint_eq(s->uid, 0);
	ck_assert_uint_eq(s->gid, 0);
	ck_assert_int_eq(s->file_mode, 0640);
	ck_assert_int_eq(s->dir_mode, 0750);
	ck_assert_uint_eq(s->grace_ms, 0);
	s = &c->syncs[1];
	ck_assert_uint_eq(s->debounce_ms, CONF_DEBOUNCE_MS);
	ck_assert_uint_eq(s->max_delay_ms, CONF_MAX_DELAY_MS);
	ck_assert(s->fsync);
	ck_assert_uint_eq(s->resync_interval_s, CONF_RESYNC_S);
	ck_assert_int_eq(s->symlinks, SNAP_LINKS_INSIDE);
	ck_assert_uint_eq(s->uid, SNAP_NO_ID);
	ck_assert_int_eq(s->file_mode, -1);
	ck_assert_uint_eq(s->grace_ms, CONF_GRACE_MS);
	conf_free(c);
}
END_TEST

START_TEST(test_every_problem_reported_with_its_line)
{
	struct conf_errors e = {0};
	struct conf *c = load("[daemon]\n"			    /* 1 */
			      "log_level = loud\n"		    /* 2 */
			      "colour = blue\n"			    /* 3 */
			      "[sync:a]\n"			    /* 4 */
			      "source = relative/path\n"	    /* 5 */
			      "target = /t\n"			    /* 6 */
			      "debounce_ms = soon\n"		    /* 7 */
			      "debounce_ms = 5\n"		    /* 8 */
			      "fsync = maybe\n"			    /* 9 */
			      "symlinks = sideways\n"		    /* 10 */
			      "file_mode = 0999\n"		    /* 11 */
			      "owner = no-such-user-atomsync\n"	    /* 12 */
			      "this line is garbage\n"		    /* 13 */
			      "[bogus]\n"			    /* 14 */
			      "key = ignored\n"			    /* 15 */
			      "[sync:a]\n"			    /* 16 */
			      "[sync:bad name]\n"		    /* 17 */
			      "[sync:b\n"			    /* 18 */
			      "max_delay_ms = 99999999999\n"	    /* 19 */
			      "[sync:c]\n"			    /* 20 */
			      "debounce_ms = 500\n"		    /* 21 */
			      "max_delay_ms = 100\n"		    /* 22 */
			      "grace_ms =\n",			    /* 23 */
			      &e);
	assert_error(&e, 2, "log_level");
	assert_error(&e, 3, "unknown key 'colour'");
	assert_error(&e, 5, "absolute path");
	assert_error(&e, 7, "debounce_ms");
	assert_error(&e, 8, "debounce_ms given twice (first at line 7)");
	assert_error(&e, 9, "fsync");
	assert_error(&e, 10, "symlinks");
	assert_error(&e, 11, "file_mode");
	assert_error(&e, 12, "no user");
	assert_error(&e, 13, "expected 'key = value'");
	assert_error(&e, 14, "unknown section [bogus]");
	assert_error(&e, 16, "given twice");
	assert_error(&e, 17, "mapping name");
	assert_error(&e, 18, "without ']'");
	assert_error(&e, 20, "source is required");
	/* At the line that made it shorter, not at the section's. */
	assert_error(&e, 22, "max_delay_ms");
	assert_error(&e, 23, "empty value");
	/* Nothing is reported for the keys of a broken section. */
	for (size_t i = 0; i < e.n; i++)
		ck_assert_msg(strstr(e.v[i], ":15:") == NULL, "%s", e.v[i]);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

/* A debounce_ms longer than the default max_delay_ms takes it along;
 * one given shorter is an error at the later of the two lines. */
START_TEST(test_max_delay_follows_a_longer_debounce)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\n"		/* 1 */
			      "source = /s\n"		/* 2 */
			      "target = /t\n"		/* 3 */
			      "debounce_ms = 5000\n"	/* 4 */
			      "[sync:b]\n"		/* 5 */
			      "source = /s2\n"		/* 6 */
			      "target = /t2\n"		/* 7 */
			      "max_delay_ms = 3000\n"	/* 8 */
			      "debounce_ms = 5000\n",	/* 9 */
			      &e);
	ck_assert_uint_eq(c->syncs[0].debounce_ms, 5000);
	ck_assert_uint_eq(c->syncs[0].max_delay_ms, 5000);
	assert_error(&e, 9, "max_delay_ms (3000) is shorter than debounce_ms");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

/* A command whose program is not there, or not executable, fails each
 * time it runs: said at its line, with the PATH the commands get. */
START_TEST(test_a_command_that_cannot_start_is_warned_about)
{
	struct conf_errors e = {0};
	char *bin = tu_path(tmp, "bin"), *text;

	tu_write(bin, "mine", "#!/bin/sh\n", 0755);
	tu_write(bin, "plain", "#!/bin/sh\n", 0644);
	ck_assert_int_eq(setenv("PATH", "/usr/bin:/bin", 1), 0);
	ck_assert_int_gt(asprintf(&text,
				  "[sync:a]\n"				/* 1 */
				  "source = /s\n"			/* 2 */
				  "target = /t\n"			/* 3 */
				  "on_update = /usr/sbin/ngnix -s reload\n" /* 4 */
				  "check_command = ngnix -t\n"		/* 5 */
				  "[sync:b]\n"				/* 6 */
				  "source = /s2\n"			/* 7 */
				  "target = /t2\n"			/* 8 */
				  "on_update = %s/plain\n"		/* 9 */
				  "hook_env = PATH=%s\n"		/* 10 */
				  "check_command = mine\n"		/* 11 */
				  "[sync:c]\n"				/* 12 */
				  "source = /s3\n"			/* 13 */
				  "target = /t3\n"			/* 14 */
				  "on_update = sh -c 'nginx -s reload'\n", /* 15 */
				  bin, bin),
			 0);
	struct conf *c = load(text, &e);
	ck_assert_uint_eq(e.n, 0);
	struct conf_errors *w = &c->warnings;
	assert_error(w, 4, "on_update: /usr/sbin/ngnix: no such program; the "
			   "command cannot start");
	assert_error(w, 5, "check_command: ngnix: no such program in PATH");
	assert_error(w, 9, "plain is not executable");
	ck_assert_msg(w->n == 3, "%zu warnings", w->n);
	conf_free(c);
	free(text);
	free(bin);
}
END_TEST

#define DIR_MODE_CONF "[sync:a]\nsource = /s\ntarget = /t\ndir_mode = 0550\n"

/* Run as another user: 0 when the config's dir_mode is refused at its
 * line, naming what is missing. */
static int dir_mode_refused(void *arg)
{
	struct conf_errors e = {0};
	struct conf *c = NULL;
	int rc = 1;

	(void)arg;
	if (conf_load(path, &c, &e) == 0 && e.n == 0)
		for (size_t i = 0; i < c->warnings.n; i++)
			if (strstr(c->warnings.v[i], "atomsync.conf:4: ") &&
			    strstr(c->warnings.v[i], "dir_mode: '0550'") &&
			    strstr(c->warnings.v[i], "0700"))
				rc = 0;
	conf_errors_fini(&e);
	conf_free(c);
	return rc;
}

/* A daemon not run as root needs rwx on the directories it makes: the
 * config warns at once, as --check-config does, not each publish; a
 * warning, as root's config read by a user (--status) is still valid. */
START_TEST(test_dir_mode_without_owner_rwx_refused_for_a_user)
{
	struct conf_errors e = {0};
	ck_assert_msg(tu_can_setuid(), "this test loads a config as another "
				       "user: run it as root");
	struct conf *c = load(DIR_MODE_CONF, &e);
	/* Root's writer needs no owner bits. */
	ck_assert_uint_eq(e.n, 0);
	ck_assert_uint_eq(c->warnings.n, 0);
	ck_assert_int_eq(c->syncs[0].dir_mode, 0550);
	conf_free(c);
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	ck_assert_int_eq(tu_call_as(2003, dir_mode_refused, NULL), 0);
}
END_TEST

START_TEST(test_invalid_excludes_reported_with_their_lines)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\n"				/* 1 */
			      "source = /s\n"				/* 2 */
			      "target = /t\n"				/* 3 */
			      "exclude = *.tmp foo[ .git/\n"		/* 4 */
			      "  node_modules/ bad\\\n"			/* 5 */
			      "exclude = !\n"				/* 6 */
			      "exclude = / #draft [z-a]\n",		/* 7 */
			      &e);
	assert_error(&e, 4, "exclude: 'foo[': '[' without a closing ']'");
	assert_error(&e, 5, "exclude: 'bad\\': a trailing backslash");
	assert_error(&e, 6, "exclude: '!': an empty pattern");
	assert_error(&e, 7, "exclude: '/': an empty pattern");
	assert_error(&e, 7, "exclude: '#draft': a leading '#'");
	assert_error(&e, 7, "exclude: '[z-a]'");
	ck_assert_uint_eq(e.n, 6);
	for (size_t i = 0; i < e.n; i++)
		ck_assert_msg(strstr(e.v[i], "[sync:a]: exclude: ") != NULL,
			      "%s", e.v[i]);
	/* The valid ones are kept, in order. */
	struct conf_sync *s = &c->syncs[0];
	ck_assert_uint_eq(s->nexclude, 3);
	ck_assert_str_eq(s->exclude[1], ".git/");
	ck_assert_uint_eq(ignore_count(s->ignore), 3);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

START_TEST(test_excludes_follow_gitignore_rules)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\n"
			      "source = /s\n"
			      "target = /t\n"
			      "exclude = .git/ /build **/*.tmp\n"
			      "  !keep.tmp My\\ Documents/\n",
			      &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	struct conf_sync *s = &c->syncs[0];
	ck_assert_uint_eq(s->nexclude, 5);
	ck_assert_str_eq(s->exclude[4], "My\\ Documents/");
	ck_assert(ignore_match(s->ignore, "x/.git", true));
	ck_assert(!ignore_match(s->ignore, "x/.git", false));
	ck_assert(ignore_match(s->ignore, "build", false));
	ck_assert(!ignore_match(s->ignore, "x/build", false));
	ck_assert(ignore_match(s->ignore, "x/y.tmp", false));
	ck_assert(!ignore_match(s->ignore, "x/keep.tmp", false));
	ck_assert(ignore_match(s->ignore, "My Documents", true));
	/* A copy matches the same. */
	struct conf_sync *d = conf_sync_dup(s);
	ck_assert_ptr_nonnull(d);
	ck_assert(conf_sync_equal(d, s));
	ck_assert(ignore_match(d->ignore, "x/y.tmp", false));
	ck_assert(!ignore_match(d->ignore, "keep.tmp", false));
	conf_sync_free(d);
	conf_free(c);
}
END_TEST

/* An indented line after a key continues its value even when it starts
 * with "[" (a character class); one that reads as a section header
 * ("[sync:NAME]", "[daemon]", however spaced or commented) is one, as it
 * always was. */
START_TEST(test_an_indented_bracket_continues_excludes)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\n"
			      "source = /s\n"
			      "target = /t\n"
			      "exclude = *.tmp\n"
			      "    [ab]1.log\n"
			      "    [Mm]akefile ;comment\n",
			      &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	struct conf_sync *s = &c->syncs[0];
	ck_assert_uint_eq(s->nexclude, 3);
	ck_assert(ignore_match(s->ignore, "b1.log", false));
	ck_assert(!ignore_match(s->ignore, "c1.log", false));
	ck_assert(ignore_match(s->ignore, "x/Makefile", false));
	conf_free(c);
	conf_errors_fini(&e);
	c = load("[sync:a]\n"
		 "source = /s\n"
		 "target = /t\n"
		 "exclude = *.tmp\n"
		 "\t[ sync : b ] ; the second\n"
		 "source = /s2\n"
		 "target = /t2\n"
		 "exclude = *.log\n"
		 "   [daemon] # its own\n"
		 "log_level = debug\n",
		 &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	ck_assert_uint_eq(c->nsyncs, 2);
	ck_assert_uint_eq(c->syncs[0].nexclude, 1);
	ck_assert_str_eq(c->syncs[1].source, "/s2");
	ck_assert_int_eq(c->log_level, LOG_LVL_DEBUG);
	conf_free(c);
	conf_errors_fini(&e);
}
END_TEST

START_TEST(test_long_lines_and_long_section_names)
{
	struct conf_errors e = {0};
	char *deep = malloc(600);
	strcpy(deep, "/srv");
	while (strlen(deep) < 500)
		strcat(deep, "/very-long-directory-name");
	char *text;
	char name[80];
	memset(name, 'n', 70);
	name[70] = '\0';
	ck_assert_int_ge(asprintf(&text,
				  "[sync:%s]\n"
				  "source = %s ; a deep path\n"
				  "target = /t\n"
				  "exclude = *.a\n"
				  "  *.b *.c\n"
				  "exclude = *.d\n",
				  name, deep),
			 0);
	struct conf *c = load(text, &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	ck_assert_str_eq(c->syncs[0].name, name);
	ck_assert_str_eq(c->syncs[0].source, deep);
	ck_assert_uint_eq(c->syncs[0].nexclude, 4);
	conf_free(c);
	free(text);
	free(deep);
}
END_TEST

START_TEST(test_same_target_twice)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\nsource = /s1\ntarget = /t\n"
			      "[sync:b]\nsource = /s2\ntarget = /t/\n",
			      &e);
	/* Each as written: the same directory is not the same text. */
	assert_error(&e, 6, "target /t/ is also the target of [sync:a] (/t)");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
	c = load("[sync:a]\nsource = /s1\ntarget = /t\n"
		 "[sync:b]\nsource = /s2\ntarget = /t\n",
		 &e);
	assert_error(&e, 6, "target /t is also the target of [sync:a]");
	ck_assert_msg(strchr(e.v[0], '(') == NULL, "%s", e.v[0]);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

/* One directory named twice through a dangling link (the first
 * mapping makes it, the second then writes to it, replacing what the
 * first published): the same target, and so is one through a relative
 * link whose own directory is missing. */
START_TEST(test_same_target_through_a_dangling_link)
{
	struct conf_errors e = {0};
	char *text, *a = tu_path(tmp, "tgt/a"), *l = tu_path(tmp, "alias");
	char *r = tu_path(tmp, "rel");

	tu_mkdirs(tmp, 0755);
	ck_assert_int_eq(symlink(a, l), 0);
	ck_assert_int_eq(symlink("tgt/b", r), 0);
	ck_assert_int_ge(asprintf(&text,
				  "[sync:a]\nsource = /s1\ntarget = %s\n"
				  "[sync:b]\nsource = /s2\ntarget = %s\n"
				  "[sync:c]\nsource = /s3\ntarget = %s/x\n"
				  "[sync:d]\nsource = /s4\ntarget = %s/tgt/b/x\n",
				  a, l, r, tmp),
			 0);
	struct conf *c = load(text, &e);
	assert_error(&e, 6, "is also the target of [sync:a]");
	assert_error(&e, 12, "is also the target of [sync:c]");
	ck_assert_uint_eq(e.n, 2);
	conf_errors_fini(&e);
	conf_free(c);
	free(text);
	/* A relative dangling link in a directory reached through a link
	 * points from where that directory really is. */
	char *deep = tu_path(tmp, "elsewhere/deep"), *via = tu_path(tmp, "via");
	char *dl = tu_path(deep, "dl");
	tu_mkdirs(deep, 0755);
	ck_assert_int_eq(symlink(deep, via), 0);
	ck_assert_int_eq(symlink("../x", dl), 0);
	ck_assert_int_ge(asprintf(&text,
				  "[sync:a]\nsource = /s1\ntarget = %s/via/dl\n"
				  "[sync:b]\nsource = /s2\ntarget = %s/elsewhere/x\n"
				  "[sync:c]\nsource = /s3\ntarget = %s/x\n",
				  tmp, tmp, tmp),
			 0);
	c = load(text, &e);
	assert_error(&e, 6, "is also the target of [sync:a]");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
	free(text);
	free(dl);
	free(via);
	free(deep);
	free(r);
	free(l);
	free(a);
}
END_TEST

/* Links that the daemon would not follow (another user's, in a
 * directory of theirs) are names as written to the checks across
 * mappings: the user who owns where one mapping's source, target or
 * metrics_file lies cannot have the whole file refused (no start, no
 * reload) by pointing them at another mapping's.  The same links made
 * by root still count. */
START_TEST(test_links_of_another_user_do_not_join_mappings)
{
	ck_assert_msg(tu_can_setuid(), "this test makes links as another "
				       "user: run it as root");
	struct conf_errors e = {0};
	char *user = tu_path(tmp, "user"), *area = tu_path(tmp, "area");
	char *vt = tu_path(area, "vt"), *cmd, *text;

	tu_mkdirs(user, 0755);
	tu_mkdirs(vt, 0755);
	ck_assert_int_eq(chmod(tmp, 0755), 0);
	ck_assert_int_eq(chown(user, 2003, 2003), 0);
	/* Its target to the victim's, its source above that, and
	 * metrics_file into it. */
	ck_assert_int_ge(asprintf(&cmd,
				  "ln -s %s %s/t && ln -s %s %s/s && "
				  "ln -s %s/m.prom %s/m.prom",
				  vt, user, area, user, vt, user),
			 0);
	ck_assert_int_eq(tu_sh_as(2003, cmd), 0);
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmetrics_file = %s/m.prom\n"
				  "[sync:victim]\nsource = /s1\ntarget = %s\n"
				  "[sync:user]\nsource = %s/s\ntarget = %s/t\n",
				  user, vt, user, user),
			 0);
	struct conf *c = load(text, &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	conf_free(c);
	/* Root's: the same target, and a loop. */
	char *t = tu_path(user, "t"), *s = tu_path(user, "s");
	ck_assert_int_eq(chown(user, 0, 0), 0);
	ck_assert_int_eq(lchown(t, 0, 0), 0);
	ck_assert_int_eq(lchown(s, 0, 0), 0);
	c = load(text, &e);
	assert_error(&e, 8, "is also the target of [sync:victim]");
	assert_error(&e, 8, "feedback loop: [sync:user] -> [sync:user]");
	ck_assert_uint_eq(e.n, 2);
	conf_errors_fini(&e);
	conf_free(c);
	/* metrics_file's own name is replaced, never followed: only its
	 * directory leads somewhere. */
	char *m = tu_path(user, "m.prom");
	ck_assert_int_eq(unlink(m), 0);
	ck_assert_int_eq(symlink(vt, m), 0);
	free(text);
	ck_assert_int_ge(asprintf(&text,
				  "[daemon]\nmetrics_file = %s/m.prom/x.prom\n"
				  "[sync:victim]\nsource = /s1\ntarget = %s\n",
				  user, vt),
			 0);
	c = load(text, &e);
	assert_error(&e, 2, "is inside the target of [sync:victim]");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
	free(m);
	free(s);
	free(t);
	free(text);
	free(cmd);
	free(vt);
	free(area);
	free(user);
}
END_TEST

/* metrics_file is rewritten every few seconds: in a source each write
 * would be published, in a target it would stand among a publish's
 * names. */
START_TEST(test_metrics_file_in_a_source_or_target)
{
	struct conf_errors e = {0};
	struct conf *c = load("[daemon]\nmetrics_file = /s1/m.prom\n"
			      "[sync:a]\nsource = /s1\ntarget = /t1\n",
			      &e);
	assert_error(&e, 2, "metrics_file /s1/m.prom is inside the source of "
			    "[sync:a] (/s1): each write of it would be "
			    "published");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
	c = load("[sync:a]\nsource = /s1\ntarget = /t1\n"
		 "[daemon]\nmetrics_file = /t1/sub/m.prom\n",
		 &e);
	assert_error(&e, 5, "metrics_file /t1/sub/m.prom is inside the target "
			    "of [sync:a] (/t1)");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
	c = load("[daemon]\nmetrics_file = /var/m.prom\n"
		 "[sync:a]\nsource = /s1\ntarget = /t1\n",
		 &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	conf_free(c);
}
END_TEST

START_TEST(test_nested_targets_and_empty_config)
{
	struct conf_errors e = {0};
	struct conf *c = load("\xef\xbb\xbf[sync:a]\nsource = /s1\ntarget = /t\n"
			      "[sync:b]\nsource = /s2\ntarget = /t/inner\n",
			      &e);
	assert_error(&e, 6, "inside the target of [sync:a]");
	ck_assert_uint_eq(e.n, 1); /* and the BOM is no problem */
	conf_errors_fini(&e);
	conf_free(c);
	c = load("[daemon]\nlog_level = info\n", &e);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_msg(strstr(e.v[0], "no [sync:NAME] section"), "%s", e.v[0]);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

/* The error that names `loop` at `line`, and no other loop error. */
static void assert_only_loop(const struct conf_errors *e, unsigned line,
			     const char *loop)
{
	size_t n = 0;
	for (size_t i = 0; i < e->n; i++)
		n += strstr(e->v[i], "feedback loop") != NULL;
	if (n != 1)
		for (size_t i = 0; i < e->n; i++)
			fprintf(stderr, "  %s\n", e->v[i]);
	ck_assert_uint_eq(n, 1);
	assert_error(e, line, loop);
}

START_TEST(test_chains_are_not_loops)
{
	struct conf_errors e = {0};
	/* one feeds two feeds three, and three's target holds nobody's
	 * source: a chain, as three separate daemons would run it. */
	struct conf *c = load("[sync:one]\nsource = /a\ntarget = /b\n"
			      "[sync:two]\nsource = /b\ntarget = /c\n"
			      "[sync:three]\nsource = /c/sub\ntarget = /d\n"
			      "[sync:four]\nsource = /b\ntarget = /e/inner\n"
			      "[sync:five]\nsource = /e\ntarget = /f\n",
			      &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	conf_free(c);
}
END_TEST

START_TEST(test_self_loops)
{
	struct conf_errors e = {0};
	char *text;
	ck_assert_int_ge(asprintf(&text,
				  "[sync:in]\nsource = %s\ntarget = %s/out\n"
				  "[sync:same]\nsource = /s\ntarget = /s/\n"
				  "[sync:around]\ntarget = /w\nsource = /w/src\n",
				  tmp, tmp),
			 0);
	struct conf *c = load(text, &e);
	assert_error(&e, 3, "feedback loop: [sync:in] -> [sync:in] (its target");
	assert_error(&e, 3, "is inside its source");
	assert_error(&e, 6, "feedback loop: [sync:same] -> [sync:same] (its "
			    "source and target are the same: /s/)");
	assert_error(&e, 8, "feedback loop: [sync:around] -> [sync:around] "
			    "(its source /w/src is inside its target /w)");
	ck_assert_uint_eq(e.n, 3);
	conf_errors_fini(&e);
	conf_free(c);
	free(text);
}
END_TEST

START_TEST(test_two_and_three_cycles)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:one]\nsource = /a\ntarget = /b\n"
			      "[sync:two]\nsource = /b/x\ntarget = /a\n",
			      &e);
	assert_only_loop(&e, 3, "feedback loop: [sync:one] -> [sync:two] -> "
				"[sync:one]");
	ck_assert_uint_eq(e.n, 1);
	conf_errors_fini(&e);
	conf_free(c);
	/* A three-cycle behind a chain that leads into it: the chain's
	 * head is no part of the loop. */
	c = load("[sync:head]\nsource = /h\ntarget = /p\n"
		 "[sync:p]\nsource = /p\ntarget = /q\n"
		 "[sync:q]\nsource = /q\ntarget = /r/deep\n"
		 "[sync:r]\nsource = /r\ntarget = /p/in\n",
		 &e);
	/* /p/in is also inside the target /p of head: reported apart. */
	assert_error(&e, 12, "inside the target of [sync:head]");
	assert_only_loop(&e, 6, "feedback loop: [sync:p] -> [sync:q] -> "
				"[sync:r] -> [sync:p]");
	ck_assert_uint_eq(e.n, 2);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

/* Every mapping reads and writes the same tree: one line each, not one
 * per way round the mappings, and the walk does not blow up. */
START_TEST(test_many_loops_each_once)
{
	struct conf_errors e = {0};
	char *text = strdup("");
	for (int i = 0; i < 300; i++) {
		char *add;
		ck_assert_int_ge(asprintf(&add,
					  "%s[sync:m%d]\nsource = /all\n"
					  "target = /all/t%d\n",
					  text, i, i),
				 0);
		free(text);
		text = add;
	}
	struct conf *c = load(text, &e);
	assert_error(&e, 3, "feedback loop: [sync:m0] -> [sync:m0] (its "
			    "target /all/t0 is inside its source /all)");
	assert_error(&e, 900, "feedback loop: [sync:m299] -> [sync:m299] ");
	ck_assert_uint_eq(e.n, 300);
	for (size_t i = 0; i < e.n; i++)
		for (size_t k = i + 1; k < e.n; k++)
			ck_assert_str_ne(e.v[i], e.v[k]);
	conf_errors_fini(&e);
	conf_free(c);
	free(text);
}
END_TEST

START_TEST(test_unreadable_file)
{
	struct conf *c = NULL;
	struct conf_errors e = {0};
	char *p = tu_path(tmp, "missing.conf");
	ck_assert_int_eq(conf_load(p, &c, &e), -ENOENT);
	ck_assert_ptr_null(c);
	/* One message, naming the file. */
	ck_assert_uint_eq(e.n, 1);
	ck_assert_msg(strncmp(e.v[0], p, strlen(p)) == 0 &&
			      strstr(e.v[0], ": No such file or directory"),
		      "%s", e.v[0]);
	conf_errors_fini(&e);
	free(p);
}
END_TEST

/* A source or target given as a relative path is that error alone,
 * not also one of a key missing. */
START_TEST(test_a_relative_path_is_one_error)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\nsource = rel/src\ntarget = t\n", &e);

	assert_error(&e, 2, "source: 'rel/src' is not an absolute path");
	assert_error(&e, 3, "target: 't' is not an absolute path");
	ck_assert_msg(e.n == 2, "%zu errors, the last: %s", e.n,
		      e.v[e.n - 1]);
	conf_free(c);
	conf_errors_fini(&e);
}
END_TEST

/* White space inside the brackets is ignored, around the colon too. */
START_TEST(test_white_space_in_section_headers)
{
	struct conf_errors e = {0};
	struct conf *c = load("[ sync : a ]\nsource = /s\ntarget = /t\n"
			      "[\tsync:b\t]\nsource = /s2\ntarget = /t2\n"
			      "[ daemon ]\n",
			      &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	ck_assert_uint_eq(c->nsyncs, 2);
	ck_assert_str_eq(c->syncs[0].name, "a");
	ck_assert_str_eq(c->syncs[1].name, "b");
	conf_free(c);
	conf_errors_fini(&e);
	c = load("[sync : a b]\nsource = /s\ntarget = /t\n", &e);
	assert_error(&e, 1, "a mapping name is letters");
	conf_free(c);
	conf_errors_fini(&e);
}
END_TEST

START_TEST(test_equal_and_dup)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\nsource = /s\ntarget = /t\nexclude = x y\n",
			      &e);
	struct conf_sync *d = conf_sync_dup(&c->syncs[0]);
	ck_assert(conf_sync_equal(d, &c->syncs[0]));
	d->debounce_ms++;
	ck_assert(!conf_sync_equal(d, &c->syncs[0]));
	d->debounce_ms--;
	free(d->exclude[1]);
	d->exclude[1] = strdup("z");
	ck_assert(!conf_sync_equal(d, &c->syncs[0]));
	conf_sync_free(d);
	conf_free(c);
}
END_TEST

START_TEST(test_hook_env_words_and_bad_names)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\n"					 /* 1 */
			      "source = /s\n"					 /* 2 */
			      "target = /t\n"					 /* 3 */
			      "hook_env = LANGUAGE TZ=UTC 'GREETING=hello world'\n" /* 4 */
			      "[sync:b]\n"					 /* 5 */
			      "source = /s2\n"					 /* 6 */
			      "target = /t2\n"					 /* 7 */
			      "hook_env = 1X OK my-var=1 '' ATOMSYNC_NAME=x OK=2\n" /* 8 */
			      "[sync:c]\n"					 /* 9 */
			      "source = /s3\n"					 /* 10 */
			      "target = /t3\n"					 /* 11 */
			      "hook_env = A 'B=unterminated\n",		 /* 12 */
			      &e);
	assert_error(&e, 8, "[sync:b]: hook_env: '1X' is not a variable name");
	assert_error(&e, 8, "hook_env: 'my-var' is not a variable name");
	assert_error(&e, 8, "hook_env: ATOMSYNC_NAME: the ATOMSYNC_ variables");
	assert_error(&e, 8, "hook_env: '' is not a variable name");
	assert_error(&e, 8, "hook_env: OK given twice");
	assert_error(&e, 12, "hook_env: unterminated '");
	ck_assert_uint_eq(e.n, 6);
	/* Only the valid words are kept, as a reload would compare them. */
	ck_assert_uint_eq(c->syncs[1].nhook_env, 1);
	ck_assert_str_eq(c->syncs[1].hook_env[0], "OK");
	ck_assert_ptr_null(c->syncs[1].hook_env[1]);
	struct conf_sync *s = &c->syncs[0];
	ck_assert_uint_eq(s->nhook_env, 3);
	ck_assert_str_eq(s->hook_env[0], "LANGUAGE");
	ck_assert_str_eq(s->hook_env[1], "TZ=UTC");
	ck_assert_str_eq(s->hook_env[2], "GREETING=hello world");
	/* A reload that changes the words restarts the mapping. */
	struct conf_sync *d = conf_sync_dup(s);
	ck_assert(conf_sync_equal(d, s));
	free(d->hook_env[1]);
	d->hook_env[1] = strdup("TZ=CET");
	ck_assert(!conf_sync_equal(d, s));
	conf_sync_free(d);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

/* Commands run without a shell: syntax only a shell reads is valid but
 * does something else, and is warned about, with its line. */
START_TEST(test_shell_syntax_in_commands_is_warned_about)
{
	static const struct {
		const char *cmd, *found; /* NULL: no warning */
		bool after;		 /* after a -c script */
	} cases[] = {
		{"/usr/bin/logger updated > /tmp/log", "'>'", false},
		{"app < in", "'<'", false},
		{"app | tee", "'|'", false},
		{"app; other", "';'", false},
		{"app &", "'&'", false},
		{"app && other", "'&&'", false},
		{"echo $HOME", "'$HOME'", false},
		{"echo \"$HOME\"", "'$HOME'", false},
		{"echo $(date)", "'$(...)'", false},
		{"echo ${X}", "'${...}'", false},
		{"echo `date`", "'`...`'", false},
		{"echo $1", "'$1'", false},
		{"echo '$HOME > x | y; z &'", NULL, false},
		{"echo \\$HOME \\> \\;", NULL, false},
		{"echo \"a > b; c | d & e\"", NULL, false},
		{"echo \"\\$HOME\"", NULL, false},
		{"echo a$ b", NULL, false},
		{"sh -c 'app > /tmp/log'", NULL, false},
		{"/bin/sh -ec 'app | tee x'", NULL, false},
		{"bash -o pipefail -c 'a | b'", NULL, false},
		{"env A=1 dash -e -c 'echo $A'", NULL, false},
		{"sh script.sh > log", "'>'", false},
		{"nginx -s reload", NULL, false},
		/* After the script, the shell's $0, $1: not run by it. */
		{"sh -c 'nginx -t' && systemctl reload nginx", "'&&'", true},
		{"/bin/sh -ec \"app\" sh x | tee", "'|'", true},
		{"bash -c 'app' 2>&1", "'2>&1'", true},
		{"sh -c 'app' >/tmp/log", "'>/tmp/log'", true},
		{"sh -c 'echo \"$1\"' sh '&&'", "'&&'", true},
		{"sh -c 'echo \"$1\" >&2' sh arg", NULL, false},
		{"sh -c", NULL, false},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	char *bin = tu_path(tmp, "bin"), *dirs;
	/* Programs that can start, or the commands say that too. */
	tu_write(bin, "app", "#!/bin/sh\n", 0755);
	tu_write(bin, "nginx", "#!/bin/sh\n", 0755);
	ck_assert_int_gt(asprintf(&dirs, "%s:/usr/bin:/bin", bin), 0);
	ck_assert_int_eq(setenv("PATH", dirs, 1), 0);
	free(dirs);
	free(bin);
	char *text = strdup("[sync:a]\nsource = /s\ntarget = /t\n");
	for (size_t i = 0; i < n; i++) {
		char *more;
		ck_assert_int_ge(asprintf(&more, "%s[sync:c%zu]\nsource = /s%zu\n"
						 "target = /t%zu\non_update = %s\n",
					  text, i, i, i, cases[i].cmd),
				 0);
		free(text);
		text = more;
	}
	struct conf_errors e = {0};
	struct conf *c = load(text, &e);
	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (cases[i].found == NULL)
			continue;
		/* The on_update line of the i-th mapping. */
		char want[160];
		snprintf(want, sizeof(want),
			 "atomsync.conf:%zu: [sync:c%zu]: on_update: %s %s",
			 4 + 4 * i + 3, i, cases[i].found,
			 cases[i].after ? "after the script of sh -c is an "
					  "argument of that script"
					: "is shell syntax");
		ck_assert_msg(k < c->warnings.n, "no warning for %s", cases[i].cmd);
		ck_assert_msg(strstr(c->warnings.v[k], want), "%s: %s (want %s)",
			      cases[i].cmd, c->warnings.v[k], want);
		k++;
	}
	ck_assert_msg(k == c->warnings.n, "extra warning: %s",
		      k < c->warnings.n ? c->warnings.v[k] : "");
	conf_free(c);
	free(text);
}
END_TEST

/* The forms of metrics_listen: an address and a port; "*" or nothing
 * before the colon for every address; never a name. */
START_TEST(test_listen_addresses)
{
	static const struct {
		const char *in, *host;
		unsigned port;
	} ok[] = {
		{"127.0.0.1:9464", "127.0.0.1", 9464}, {"[::1]:1", "::1", 1},
		{"*:9464", "", 9464}, {":9464", "", 9464},
	};
	static const char *bad[] = {"localhost:9464", "9464", "127.0.0.1:",
				    "127.0.0.1:0", "127.0.0.1:65536",
				    "[::1]9464", "::1:9464x"};
	char host[64];
	unsigned port;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_msg(conf_parse_listen(ok[i].in, host, sizeof(host),
						&port) == 0,
			      "%s", ok[i].in);
		ck_assert_str_eq(host, ok[i].host);
		ck_assert_uint_eq(port, ok[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(conf_parse_listen(bad[i], host, sizeof(host),
						&port) < 0,
			      "%s", bad[i]);
}
END_TEST

START_TEST(test_signal_names)
{
	int s;
	ck_assert_int_eq(conf_parse_signal("HUP", &s), 0);
	ck_assert_int_eq(s, 1);
	ck_assert_int_eq(conf_parse_signal("SIGUSR1", &s), 0);
	ck_assert_int_eq(s, 10);
	ck_assert_int_eq(conf_parse_signal("15", &s), 0);
	ck_assert_int_eq(s, 15);
	ck_assert_int_lt(conf_parse_signal("NOPE", &s), 0);
	ck_assert_int_lt(conf_parse_signal("0", &s), 0);
	/* KILL and STOP reload nothing; 32 and 33 are the C library's. */
	const char *refused[] = {"9", "19", "32", "33", "65", "KILL"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++)
		ck_assert_msg(conf_parse_signal(refused[i], &s) < 0, "%s",
			      refused[i]);
	ck_assert_int_eq(conf_parse_signal("34", &s), 0);
	ck_assert_int_eq(s, 34);
}
END_TEST

/* Each problem once, with where it was: the [daemon] section named as
 * a mapping's is, the first of a section given twice, and an empty
 * source not reported as missing too. */
START_TEST(test_errors_say_where)
{
	struct conf_errors e = {0};
	struct conf *c = load("[daemon]\n"			/* 1 */
			      "unhealthy_after_s = 0\n"	/* 2 */
			      "[daemon]\n"			/* 3 */
			      "[sync:a]\n"			/* 4 */
			      "source =\n"			/* 5 */
			      "target = /t\n",			/* 6 */
			      &e);
	assert_error(&e, 2, "[daemon]: unhealthy_after_s: '0' is not");
	assert_error(&e, 3, "[daemon] given twice (first at line 1)");
	assert_error(&e, 5, "[sync:a]: source: empty value");
	ck_assert_uint_eq(e.n, 3);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

START_TEST(test_limits_empty_sources_and_follow_into)
{
	struct conf_errors e = {0};
	struct conf *c = load("[sync:a]\n"				/* 1 */
			      "source = /s\n"				/* 2 */
			      "target = /t\n"				/* 3 */
			      "max_files = 10\n"			/* 4 */
			      "max_bytes = 2G\n"			/* 5 */
			      "allow_empty = yes\n"			/* 6 */
			      "follow_into = /etc/le/archive /opt/x\n"	/* 7 */
			      "follow_into = /more\n"			/* 8 */
			      "    /andmore\n"				/* 9 */
			      "[sync:b]\n"				/* 10 */
			      "source = /s2\n"				/* 11 */
			      "target = /t2\n"				/* 12 */
			      "max_files = 0\n"				/* 13 */
			      "max_bytes = 12Q\n"			/* 14 */
			      "allow_empty = perhaps\n"			/* 15 */
			      "follow_into = relative\n"		/* 16 */
			      "symlinks = follow\n"			/* 17 */
			      "follow_into = /abs\n",			/* 18 */
			      &e);
	struct conf_sync *a = &c->syncs[0], *b = &c->syncs[1];
	ck_assert_uint_eq(a->max_files, 10);
	ck_assert_uint_eq(a->max_bytes, 2ull << 30);
	ck_assert(a->allow_empty);
	ck_assert_uint_eq(a->nfollow_into, 4);
	ck_assert_str_eq(a->follow_into[3], "/andmore");
	ck_assert_uint_eq(b->max_files, CONF_MAX_FILES);
	ck_assert_uint_eq(b->max_bytes, 0);
	ck_assert(!b->allow_empty);
	assert_error(&e, 13, "max_files");
	assert_error(&e, 14, "max_bytes");
	assert_error(&e, 15, "allow_empty");
	assert_error(&e, 16, "follow_into: 'relative' is not an absolute path");
	assert_error(&e, 16, "only applies to symlinks = inside");
	ck_assert_uint_eq(e.n, 5);
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

START_TEST(test_max_watches_values)
{
	static const char *bad[] = {"0", "-1", "lots", "10k", "2147483648",
				    "99999999999999999999"};
	struct conf_errors e = {0};
	struct conf *c = load("[daemon]\nmax_watches = 100\n"
			      "[sync:a]\nsource = /s\ntarget = /t\n",
			      &e);

	ck_assert_msg(e.n == 0, "%s", e.n ? e.v[0] : "");
	ck_assert_uint_eq(c->max_watches, 100);
	conf_free(c);
	/* Not set: half of the kernel's limit, decided when the daemon
	 * starts. */
	c = load("[sync:a]\nsource = /s\ntarget = /t\n", &e);
	ck_assert_uint_eq(c->max_watches, 0);
	conf_free(c);
	c = load("[daemon]\nmax_watches = 2147483647\n"
		 "[sync:a]\nsource = /s\ntarget = /t\n",
		 &e);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_uint_eq(c->max_watches, 2147483647u);
	conf_free(c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text, *want;
		ck_assert_int_ge(asprintf(&text,
					  "[daemon]\nmax_watches = %s\n"
					  "[sync:a]\nsource = /s\ntarget = /t\n",
					  bad[i]),
				 0);
		ck_assert_int_ge(asprintf(&want,
					  "max_watches: '%s' is not a whole "
					  "number from 1 to 2147483647",
					  bad[i]),
				 0);
		c = load(text, &e);
		assert_error(&e, 2, want);
		ck_assert_uint_eq(e.n, 1);
		ck_assert_uint_eq(c->max_watches, 0);
		conf_errors_fini(&e);
		conf_free(c);
		free(text);
		free(want);
	}
	/* Only in [daemon]: the budget is the daemon's, not a mapping's. */
	c = load("[sync:a]\nsource = /s\ntarget = /t\nmax_watches = 10\n", &e);
	assert_error(&e, 4, "unknown key 'max_watches'");
	conf_errors_fini(&e);
	conf_free(c);
}
END_TEST

static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_example_and_defaults);
	tcase_add_test(tc, test_every_problem_reported_with_its_line);
	tcase_add_test(tc, test_limits_empty_sources_and_follow_into);
	tcase_add_test(tc, test_max_watches_values);
	tcase_add_test(tc, test_dir_mode_without_owner_rwx_refused_for_a_user);
	tcase_add_test(tc, test_max_delay_follows_a_longer_debounce);
	tcase_add_test(tc, test_a_command_that_cannot_start_is_warned_about);
	tcase_add_test(tc, test_invalid_excludes_reported_with_their_lines);
	tcase_add_test(tc, test_excludes_follow_gitignore_rules);
	tcase_add_test(tc, test_an_indented_bracket_continues_excludes);
	tcase_add_test(tc, test_long_lines_and_long_section_names);
	tcase_add_test(tc, test_same_target_twice);
	tcase_add_test(tc, test_metrics_file_in_a_source_or_target);
	tcase_add_test(tc, test_links_of_another_user_do_not_join_mappings);
	tcase_add_test(tc, test_same_target_through_a_dangling_link);
	tcase_add_test(tc, test_chains_are_not_loops);
	tcase_add_test(tc, test_self_loops);
	tcase_add_test(tc, test_two_and_three_cycles);
	tcase_add_test(tc, test_many_loops_each_once);
	tcase_add_test(tc, test_nested_targets_and_empty_config);
	tcase_add_test(tc, test_unreadable_file);
	tcase_add_test(tc, test_white_space_in_section_headers);
	tcase_add_test(tc, test_a_relative_path_is_one_error);
	tcase_add_test(tc, test_equal_and_dup);
	tcase_add_test(tc, test_signal_names);
	tcase_add_test(tc, test_errors_say_where);
	tcase_add_test(tc, test_listen_addresses);
	tcase_add_test(tc, test_hook_env_words_and_bad_names);
	tcase_add_test(tc, test_shell_syntax_in_commands_is_warned_about);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(conf_suite());
}
