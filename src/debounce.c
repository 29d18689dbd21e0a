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

void debounce_retry(struct debounce *d, uint64_t at)
{
	d->retry = true;
	if (at > d->not_before)
		d->not_before = at;
}

void debounce_want(struct debounce *d, uint64_t at)
{
	d->retry = true;
	if (at > d->wanted_at)
		d->wanted_at = at;
}

uint64_t debounce_due(const struct debounce *d)
{
	if (d->running || (!d->pending && !d->retry))
		return DEBOUNCE_NEVER;
	if (!d->pending)
		return d->not_before > d->wanted_at ? d->not_before
						    : d->wanted_at;
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
	d->not_before = d->wanted_at = 0;
	return true;
}

void debounce_done(struct debounce *d)
{
	d->running = false;
}
