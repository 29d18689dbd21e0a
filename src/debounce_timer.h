/* The libuv glue of the debounce state machine: a timer armed for
 * debounce_due(), that calls `fire` when a publish must start. */
#ifndef ATOMSYNC_DEBOUNCE_TIMER_H
#define ATOMSYNC_DEBOUNCE_TIMER_H

#include <stdint.h>

#include <uv.h>

#include "debounce.h"

struct debounce_timer {
	uv_timer_t timer;
	struct debounce d;
	void (*fire)(struct debounce_timer *t); /* a publish must start */
};

int debounce_timer_init(uv_loop_t *loop, struct debounce_timer *t,
			uint64_t quiet_ms, uint64_t max_ms,
			void (*fire)(struct debounce_timer *t));
/* Re-arms the timer for whatever the state machine says is due. */
void debounce_timer_arm(struct debounce_timer *t);
void debounce_timer_event(struct debounce_timer *t);
void debounce_timer_done(struct debounce_timer *t);
void debounce_timer_retry(struct debounce_timer *t, uint64_t delay_ms);
/* debounce_want() in `delay_ms`. */
void debounce_timer_want(struct debounce_timer *t, uint64_t delay_ms);
/* debounce_hasten() in `delay_ms`. */
void debounce_timer_hasten(struct debounce_timer *t, uint64_t delay_ms);

#endif
