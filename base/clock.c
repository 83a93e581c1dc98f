/* clock.c — the monotonic clock (clock.h). */
#include <time.h>

#include "base/clock.h"

double clock_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
