/* Log lines: one line per event in every format, valid JSON whatever a
 * file name holds, and journal priorities only when stderr is the
 * journal's stream. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

static int saved = -1, pipefd[2];

static void capture(void)
{
	ck_assert_int_eq(pipe(pipefd), 0);
	saved = dup(2);
	dup2(pipefd[1], 2);
}

static char *captured(void)
{
	static char buf[8192];
	dup2(saved, 2);
	close(saved);
	close(pipefd[1]);
	ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
	close(pipefd[0]);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

START_TEST(test_json_escapes_everything_a_name_can_hold)
{
	log_init(LOG_FMT_JSON, LOG_LVL_DEBUG);
	capture();
	log_msg(LOG_LVL_WARN, "we\"b", "file %s gone",
		"a\"b\\c\nd\te\x01 caf\xc3\xa9 \xff\xfe end");
	char *out = captured();
	ck_assert_int_eq(tu_lines(out), 1);
	ck_assert_msg(strstr(out, "\"level\":\"warning\""), "%s", out);
	ck_assert_msg(strstr(out, "\"sync\":\"we\\\"b\""), "%s", out);
	ck_assert_msg(strstr(out, "\"msg\":\"file a\\\"b\\\\c\\u000ad\\u0009e\\u0001 "
				  "caf\xc3\xa9 \\\\xff\\\\xfe end gone\"}"),
		      "%s", out);
	ck_assert_msg(strncmp(out, "{\"time\":\"20", 11) == 0, "%s", out);
}
END_TEST

/* Only well-formed UTF-8 passes: overlong forms, surrogates and code
 * points past U+10FFFF are spelled out byte by byte. */
START_TEST(test_json_lets_only_valid_utf8_through)
{
	log_init(LOG_FMT_JSON, LOG_LVL_DEBUG);
	capture();
	log_msg(LOG_LVL_INFO, NULL, "[%s|%s|%s|%s|%s|%s]", "\xe0\x80\x80",
		"\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x8f\xbf\xbf",
		"\xf0\x9f\x98\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf\xe0\xa0\x80",
		"\xe2\x82");
	char *out = captured();
	ck_assert_msg(strstr(out, "\"msg\":\"["
				  "\\\\xe0\\\\x80\\\\x80|"
				  "\\\\xed\\\\xa0\\\\x80|"
				  "\\\\xf4\\\\x90\\\\x80\\\\x80|"
				  "\\\\xf0\\\\x8f\\\\xbf\\\\xbf|"
				  "\xf0\x9f\x98\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf\xe0\xa0\x80|"
				  "\\\\xe2\\\\x82]\""),
		      "%s", out);
}
END_TEST

START_TEST(test_text_keeps_one_line_per_event)
{
	log_init(LOG_FMT_TEXT, LOG_LVL_INFO);
	capture();
	log_msg(LOG_LVL_ERROR, "web", "name with\nnewline\r");
	log_msg(LOG_LVL_DEBUG, NULL, "not shown at info");
	char *out = captured();
	ck_assert_int_eq(tu_lines(out), 1);
	ck_assert_msg(strstr(out, "Z error: sync \"web\": name with\\x0anewline"
				  "\\x0d\n"),
		      "%s", out);
}
END_TEST

/* What a file name may hold and a terminal or journal must never get
 * raw: C0 controls with tab and newline, DEL, C1 controls (U+009B is a
 * CSI of its own), and bytes that are not well-formed UTF-8.  Printable
 * text, UTF-8 included, passes as it is. */
static const char hostile[] = "a\x1b[31mred\x1b[0m\tb\x7f c\xc2\x9b" "2J "
			      "\xc2\x80\xc2\x9f\xc2\xa0 caf\xc3\xa9 \xff\xfe"
			      "\xe2\x82 \xed\xa0\x80 \\x1b end";
static const char escaped[] = "a\\x1b[31mred\\x1b[0m\\x09b\\x7f "
			      "c\\xc2\\x9b2J \\xc2\\x80\\xc2\\x9f\xc2\xa0 "
			      "caf\xc3\xa9 \\xff\\xfe\\xe2\\x82 "
			      "\\xed\\xa0\\x80 \\x1b end";

/* No byte below 0x20 but the newline at the end, no DEL, no C1. */
static void assert_clean(const char *out)
{
	size_t n = strlen(out);
	ck_assert_msg(n > 0 && out[n - 1] == '\n', "%s", out);
	for (size_t i = 0; i + 1 < n; i++) {
		unsigned char c = (unsigned char)out[i];
		ck_assert_msg(c >= 0x20 && c != 0x7f, "byte 0x%02x at %zu: %s",
			      c, i, out);
		ck_assert_msg(!(c == 0xc2 && (unsigned char)out[i + 1] < 0xa0),
			      "C1 control at %zu: %s", i, out);
	}
}

START_TEST(test_text_and_journal_escape_control_bytes)
{
	enum log_format fmts[] = {LOG_FMT_TEXT, LOG_FMT_JOURNAL};
	for (size_t i = 0; i < 2; i++) {
		log_init(fmts[i], LOG_LVL_INFO);
		capture();
		log_msg(LOG_LVL_WARN, "w\x1b", "file %s gone", hostile);
		char *out = captured();
		assert_clean(out);
		ck_assert_int_eq(tu_lines(out), 1);
		ck_assert_msg(strstr(out, "sync \"w\\x1b\": file "), "%s", out);
		char *want;
		ck_assert_int_ge(asprintf(&want, "file %s gone\n", escaped), 0);
		ck_assert_msg(strstr(out, want), "%s\nwanted %s", out, want);
		free(want);
	}
}
END_TEST

/* What --status prints is spelled as text log lines spell it. */
START_TEST(test_escape_spells_names_as_text_lines_do)
{
	char *e = log_escape(hostile);
	ck_assert_str_eq(e, escaped);
	free(e);
	e = log_escape("");
	ck_assert_str_eq(e, "");
	free(e);
	e = log_escape("new\nline caf\xc3\xa9");
	ck_assert_str_eq(e, "new\\x0aline caf\xc3\xa9");
	free(e);
}
END_TEST

/* A name that holds characters which reorder or hide text (U+202E
 * turns "gpj.exe" into what reads "exe.jpg"; U+2028 ends a line in some
 * viewers) is spelled out, in text and journal lines and in JSON. */
START_TEST(test_text_that_reorders_or_hides_is_spelled_out)
{
	static const char name[] = "a\xe2\x80\xaegpj.exe b\xe2\x80\xa8"
				   "c\xe2\x80\x8b d\xe2\x81\xa6" "e\xd8\x9c "
				   "f\xef\xbb\xbf \xe2\x80\x90 \xe2\x80\xaf";
	char *e = log_escape(name);
	ck_assert_str_eq(e, "a\\xe2\\x80\\xaegpj.exe b\\xe2\\x80\\xa8"
			    "c\\xe2\\x80\\x8b d\\xe2\\x81\\xa6e\\xd8\\x9c "
			    "f\\xef\\xbb\\xbf \xe2\x80\x90 \xe2\x80\xaf");
	free(e);
	log_init(LOG_FMT_JSON, LOG_LVL_INFO);
	capture();
	log_msg(LOG_LVL_INFO, NULL, "%s", name);
	char *out = captured();
	ck_assert_msg(strstr(out, "\"msg\":\"a\\u202egpj.exe b\\u2028c"
				  "\\u200b d\\u2066" "e\\u061c f\\ufeff "
				  "\xe2\x80\x90 \xe2\x80\xaf\""),
		      "%s", out);
}
END_TEST

START_TEST(test_json_escapes_c1_controls)
{
	log_init(LOG_FMT_JSON, LOG_LVL_INFO);
	capture();
	log_msg(LOG_LVL_INFO, NULL, "%s", "[\xc2\x9b\xc2\x80\xc2\xa0\x7f]");
	char *out = captured();
	assert_clean(out);
	ck_assert_msg(strstr(out, "\"msg\":\"[\\u009b\\u0080\xc2\xa0\\u007f]\""),
		      "%s", out);
}
END_TEST

START_TEST(test_journal_format_only_when_stderr_is_the_stream)
{
	struct stat st;
	char js[64];

	capture();
	ck_assert_int_eq(fstat(2, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	enum log_format f = log_format_detect();
	setenv("JOURNAL_STREAM", "1:2", 1);
	enum log_format other = log_format_detect();
	unsetenv("JOURNAL_STREAM");
	enum log_format none = log_format_detect();
	log_init(f, LOG_LVL_INFO);
	log_msg(LOG_LVL_ERROR, "web", "failed");
	log_msg(LOG_LVL_INFO, NULL, "fine");
	char *out = captured();
	ck_assert_int_eq(f, LOG_FMT_JOURNAL);
	ck_assert_int_eq(other, LOG_FMT_TEXT);
	ck_assert_int_eq(none, LOG_FMT_TEXT);
	ck_assert_str_eq(out, "<3>sync \"web\": failed\n<6>fine\n");
}
END_TEST

START_TEST(test_level_and_format_names)
{
	enum log_level l;
	enum log_format f;
	ck_assert_int_eq(log_level_parse("warning", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_WARN);
	ck_assert_int_eq(log_level_parse("debug", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_DEBUG);
	ck_assert_int_lt(log_level_parse("verbose", &l), 0);
	ck_assert_int_eq(log_format_parse("json", &f), 0);
	ck_assert_int_eq(f, LOG_FMT_JSON);
	ck_assert_int_lt(log_format_parse("xml", &f), 0);
	char *err = NULL;
	ck_assert_int_eq(log_err_set(&err, -5, "path %s", "x"), -5);
	ck_assert_str_eq(err, "path x");
	free(err);
	ck_assert_int_eq(log_err_set(NULL, -2, "ignored"), -2);
}
END_TEST

/* Entries up to LOG_LIST_MAX are kept in order (the list grows by
 * doubling); past it they are only counted. */
START_TEST(test_list_keeps_entries_in_order_and_counts_the_rest)
{
	struct log_list l = {0};
	size_t total = LOG_LIST_MAX + 5;

	for (size_t i = 0; i < total; i++)
		log_list_add(&l, "entry %zu", i);
	ck_assert_uint_eq(log_list_count(&l), total);
	ck_assert_uint_eq(l.n, LOG_LIST_MAX);
	ck_assert_uint_ge(l.cap, l.n);
	for (size_t i = 0; i < l.n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "entry %zu", i);
		ck_assert_str_eq(l.v[i], want);
	}
	log_list_fini(&l);
	ck_assert_ptr_null(l.v);
	ck_assert_uint_eq(l.cap, 0);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("formats");
	tcase_add_test(tc, test_json_escapes_everything_a_name_can_hold);
	tcase_add_test(tc, test_json_lets_only_valid_utf8_through);
	tcase_add_test(tc, test_text_keeps_one_line_per_event);
	tcase_add_test(tc, test_text_and_journal_escape_control_bytes);
	tcase_add_test(tc, test_json_escapes_c1_controls);
	tcase_add_test(tc, test_text_that_reorders_or_hides_is_spelled_out);
	tcase_add_test(tc, test_escape_spells_names_as_text_lines_do);
	tcase_add_test(tc, test_journal_format_only_when_stderr_is_the_stream);
	tcase_add_test(tc, test_level_and_format_names);
	tcase_add_test(tc, test_list_keeps_entries_in_order_and_counts_the_rest);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(log_suite());
}
