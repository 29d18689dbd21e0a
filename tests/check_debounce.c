/* The debounce state machine, driven by a fake clock. */
#include "config.h"

#include <check.h>

#include "debounce.h"
#include "testutil.h"

START_TEST(test_nothing_pending_is_never_due)
{
	struct debounce d;
	debounce_init(&d, 100, 2000);
	ck_assert_uint_eq(debounce_due(&d), DEBOUNCE_NEVER);
	ck_assert(!debounce_fire(&d, 1000000));
}
END_TEST

START_TEST(test_quiet_period_after_last_event)
{
	struct debounce d;
	debounce_init(&d, 100, 2000);
	debounce_event(&d, 1000);
	ck_assert_uint_eq(debounce_due(&d), 1100);
	debounce_event(&d, 1050);
	ck_assert_uint_eq(debounce_due(&d), 1150);
	ck_assert(!debounce_fire(&d, 1149));
	ck_assert(debounce_fire(&d, 1150));
	ck_assert(d.running);
	ck_assert_uint_eq(debounce_due(&d), DEBOUNCE_NEVER);
}
END_TEST

START_TEST(test_max_delay_bounds_a_constant_stream)
{
	struct debounce d;
	debounce_init(&d, 100, 500);
	uint64_t t = 0, fired_at = 0;
	/* An event every 50 ms forever: the quiet period never comes. */
	for (t = 0; t <= 2000; t += 10) {
		if (t % 50 == 0)
			debounce_event(&d, t);
		if (debounce_fire(&d, t)) {
			fired_at = t;
			break;
		}
	}
	ck_assert_uint_eq(fired_at, 500);
}
END_TEST

START_TEST(test_events_while_running_give_exactly_one_more)
{
	struct debounce d;
	debounce_init(&d, 100, 2000);
	debounce_event(&d, 0);
	ck_assert(debounce_fire(&d, 100));
	/* A burst during the publish. */
	for (uint64_t t = 110; t < 200; t += 10)
		debounce_event(&d, t);
	ck_assert_uint_eq(debounce_due(&d), DEBOUNCE_NEVER);
	ck_assert(!debounce_fire(&d, 1000));
	debounce_done(&d);
	ck_assert_uint_eq(debounce_due(&d), 290);
	ck_assert(debounce_fire(&d, 300));
	debounce_done(&d);
	ck_assert_uint_eq(debounce_due(&d), DEBOUNCE_NEVER);
}
END_TEST

START_TEST(test_zero_quiet_period_fires_at_once)
{
	struct debounce d;
	debounce_init(&d, 0, 0);
	debounce_event(&d, 42);
	ck_assert_uint_eq(debounce_due(&d), 42);
	ck_assert(debounce_fire(&d, 42));
}
END_TEST

START_TEST(test_retry_waits_for_backoff_even_without_events)
{
	struct debounce d;
	debounce_init(&d, 100, 2000);
	debounce_event(&d, 0);
	ck_assert(debounce_fire(&d, 100));
	debounce_done(&d);
	debounce_retry(&d, 1150);
	ck_assert_uint_eq(debounce_due(&d), 1150);
	/* A change meanwhile does not shorten the backoff. */
	debounce_event(&d, 500);
	ck_assert(!debounce_fire(&d, 1000));
	ck_assert(debounce_fire(&d, 1150));
	debounce_done(&d);
	/* The backoff does not stick to the next burst. */
	debounce_event(&d, 2000);
	ck_assert_uint_eq(debounce_due(&d), 2100);
}
END_TEST

START_TEST(test_retry_without_changes_fires_exactly_when_due)
{
	struct debounce d;
	debounce_init(&d, 100, 2000);
	debounce_retry(&d, 0);
	ck_assert_uint_eq(debounce_due(&d), 0);
	ck_assert(debounce_fire(&d, 0));
	debounce_done(&d);
	debounce_retry(&d, 1010);
	ck_assert(!debounce_fire(&d, 1009));
	ck_assert(debounce_fire(&d, 1010));
	debounce_done(&d);
	ck_assert_uint_eq(debounce_due(&d), DEBOUNCE_NEVER);
}
END_TEST

/* A publish wanted once the target is quiet, pushed on as it keeps
 * changing, holds no change of the source back: the burst publishes in
 * its own time, and the maximum delay still bounds a stream. */
START_TEST(test_want_holds_no_change_back)
{
	struct debounce d;
	debounce_init(&d, 100, 300);
	debounce_want(&d, 1000);
	ck_assert_uint_eq(debounce_due(&d), 1000);
	ck_assert(!debounce_fire(&d, 999));
	debounce_event(&d, 10);
	ck_assert_uint_eq(debounce_due(&d), 110);
	for (uint64_t t = 0; t < 300; t += 50) {
		debounce_want(&d, t + 1000); /* pushed on and on */
		debounce_event(&d, t);
	}
	ck_assert_uint_eq(debounce_due(&d), 310);
	ck_assert(debounce_fire(&d, 310));
	debounce_done(&d);
	/* Taken by that publish: nothing is left to fire. */
	ck_assert_uint_eq(debounce_due(&d), DEBOUNCE_NEVER);
	/* Without a change it fires when wanted, and never before a
	 * backoff. */
	debounce_want(&d, 2000);
	debounce_retry(&d, 2500);
	ck_assert_uint_eq(debounce_due(&d), 2500);
	ck_assert(debounce_fire(&d, 2500));
	debounce_done(&d);
	debounce_retry(&d, 3000);
	debounce_want(&d, 3400);
	ck_assert_uint_eq(debounce_due(&d), 3400);
	/* A backoff still holds a change back. */
	debounce_event(&d, 3010);
	ck_assert_uint_eq(debounce_due(&d), 3110);
	debounce_retry(&d, 3600);
	ck_assert_uint_eq(debounce_due(&d), 3600);
}
END_TEST

/* A backoff after a failure ends sooner once something that may have
 * fixed its cause has been quiet a while, but events that keep coming
 * never make the retries more frequent than the backoff. */
START_TEST(test_hasten_shortens_a_backoff_never_more)
{
	struct debounce d;
	debounce_init(&d, 100, 2000);
	debounce_event(&d, 0);
	ck_assert(debounce_fire(&d, 100));
	debounce_done(&d);
	debounce_retry(&d, 60000); /* failed: a minute's backoff */
	debounce_hasten(&d, 5000); /* the target changed at 4000 */
	ck_assert_uint_eq(debounce_due(&d), 5000);
	for (uint64_t t = 4000; t < 70000; t += 100)
		debounce_hasten(&d, t + 1000); /* and keeps changing */
	ck_assert_uint_eq(debounce_due(&d), 60000);
	ck_assert(debounce_fire(&d, 60000));
	debounce_done(&d);
	/* Taken by that attempt: the next backoff is whole. */
	debounce_retry(&d, 120000);
	ck_assert_uint_eq(debounce_due(&d), 120000);
	/* A change of the source still waits for the backoff; one of the
	 * target (made during an attempt) brings both nearer. */
	debounce_event(&d, 70000);
	ck_assert_uint_eq(debounce_due(&d), 120000);
	debounce_hasten(&d, 71000);
	ck_assert_uint_eq(debounce_due(&d), 71000);
}
END_TEST

START_TEST(test_event_long_after_burst_starts_new_window)
{
	struct debounce d;
	debounce_init(&d, 100, 300);
	debounce_event(&d, 0);
	ck_assert(debounce_fire(&d, 100));
	debounce_done(&d);
	debounce_event(&d, 10000);
	/* max delay counts from the first event of the new burst. */
	debounce_event(&d, 10090);
	debounce_event(&d, 10180);
	debounce_event(&d, 10270);
	ck_assert_uint_eq(debounce_due(&d), 10300);
}
END_TEST

static Suite *debounce_suite(void)
{
	Suite *s = suite_create("debounce");
	TCase *tc = tcase_create("machine");
	tcase_add_test(tc, test_nothing_pending_is_never_due);
	tcase_add_test(tc, test_quiet_period_after_last_event);
	tcase_add_test(tc, test_max_delay_bounds_a_constant_stream);
	tcase_add_test(tc, test_events_while_running_give_exactly_one_more);
	tcase_add_test(tc, test_zero_quiet_period_fires_at_once);
	tcase_add_test(tc, test_want_holds_no_change_back);
	tcase_add_test(tc, test_hasten_shortens_a_backoff_never_more);
	tcase_add_test(tc, test_retry_waits_for_backoff_even_without_events);
	tcase_add_test(tc, test_event_long_after_burst_starts_new_window);
	tcase_add_test(tc, test_retry_without_changes_fires_exactly_when_due);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(debounce_suite());
}
