/* errors.c — error message formatting. */
#include <stdarg.h>
#include <stdio.h>
#include "base/errors.h"

moge_status set_err(char *err, size_t err_size, moge_status st, const char *fmt, ...) {
    if (err && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return st;
}
