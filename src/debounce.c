#include "config.h"

#include "debounce.h"

void debounce_init(struct debounce *d, uint64_t quiet_ms, uint64_t max_ms)
{
	*d = (struct debounce){.quiet_ms = quiet_ms, .max_ms = max_ms};
}

void debounce_event(struct debounce *d, uint64_t now)
{
	if (!d->pending) {
		d->pending = true;
		d->first = now;
	}
	d->last = now;
}

void debounce_retry(struct debounce *d, uint64_t now, uint64_t at)
{
	(void)now;
	d->retry = true;
	if (at > d->not_before)
		d->not_before = at;
}

uint64_t debounce_due(const struct debounce *d)
{
	if (d->running || (!d->pending && !d->retry))
		return DEBOUNCE_NEVER;
	if (!d->pending)
		return d->not_before;
	uint64_t due = d->last + d->quiet_ms;
	if (d->max_ms > 0 && d->first + d->max_ms < due)
		due = d->first + d->max_ms;
	return due > d->not_before ? due : d->not_before;
}

bool debounce_fire(struct debounce *d, uint64_t now)
{
	uint64_t due = debounce_due(d);

	if (due == DEBOUNCE_NEVER || now < due)
		return false;
	d->pending = d->retry = false;
	d->running = true;
	d->not_before = 0;
	return true;
}

void debounce_done(struct debounce *d)
{
	d->running = false;
}

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

	debounce_retry(&t->d, now, now + delay_ms);
	debounce_timer_arm(t);
}
