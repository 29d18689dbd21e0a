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

void debounce_hasten(struct debounce *d, uint64_t at)
{
	if (at > d->hasten_at)
		d->hasten_at = at;
}

/* The backoff's end, as debounce_hasten() may have brought it nearer. */
static uint64_t floor_of(const struct debounce *d)
{
	return d->hasten_at && d->hasten_at < d->not_before ? d->hasten_at
							     : d->not_before;
}

uint64_t debounce_due(const struct debounce *d)
{
	if (d->running || (!d->pending && !d->retry))
		return DEBOUNCE_NEVER;
	uint64_t floor = floor_of(d);
	if (!d->pending)
		return floor > d->wanted_at ? floor : d->wanted_at;
	uint64_t due = d->last + d->quiet_ms;
	if (d->max_ms > 0 && d->first + d->max_ms < due)
		due = d->first + d->max_ms;
	return due > floor ? due : floor;
}

bool debounce_fire(struct debounce *d, uint64_t now)
{
	uint64_t due = debounce_due(d);

	if (due == DEBOUNCE_NEVER || now < due)
		return false;
	d->pending = d->retry = false;
	d->running = true;
	d->not_before = d->wanted_at = d->hasten_at = 0;
	return true;
}

void debounce_done(struct debounce *d)
{
	d->running = false;
}
