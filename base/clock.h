/* clock.h — the one monotonic clock (seconds) of the library and the command. */
#ifndef MOGE_BASE_CLOCK_H
#define MOGE_BASE_CLOCK_H

/* Seconds since an arbitrary start (CLOCK_MONOTONIC): for durations only. */
double clock_now(void);

#endif
