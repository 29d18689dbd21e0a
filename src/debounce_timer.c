#include "config.h"

#include "debounce_timer.h"

static void on_timer(uv_timer_t *h)
{
	struct debounce_timer *t = (struct debounce_timer *)h;

	if (debounce_fire(&t->d, uv_now(h->loop)))
		t->fire(t);
	else
		debounce_timer_arm(t);
}

int debounce_timer_init(uv_loop_t *loop, struct debounce_timer *t,
			uint64_t quiet_ms, uint64_t max_ms,
			void (*fire)(struct debounce_timer *t))
{
	debounce_init(&t->d, quiet_ms, max_ms);
	t->fire = fire;
	return uv_timer_init(loop, &t->timer);
}

void debounce_timer_arm(struct debounce_timer *t)
{
	uint64_t due = debounce_due(&t->d);

	if (due == DEBOUNCE_NEVER) {
		uv_timer_stop(&t->timer);
		return;
	}
	uint64_t now = uv_now(t->timer.loop);
	uv_timer_start(&t->timer, on_timer, due > now ? due - now : 0, 0);
}

void debounce_timer_event(struct debounce_timer *t)
{
	debounce_event(&t->d, uv_now(t->timer.loop));
	debounce_timer_arm(t);
}

void debounce_timer_done(struct debounce_timer *t)
{
	debounce_done(&t->d);
	debounce_timer_arm(t);
}

void debounce_timer_retry(struct debounce_timer *t, uint64_t delay_ms)
{
	uint64_t now = uv_now(t->timer.loop);

	debounce_retry(&t->d, now + delay_ms);
	debounce_timer_arm(t);
}

void debounce_timer_want(struct debounce_timer *t, uint64_t delay_ms)
{
	debounce_want(&t->d, uv_now(t->timer.loop) + delay_ms);
	debounce_timer_arm(t);
}

void debounce_timer_hasten(struct debounce_timer *t, uint64_t delay_ms)
{
	debounce_hasten(&t->d, uv_now(t->timer.loop) + delay_ms);
	debounce_timer_arm(t);
}
