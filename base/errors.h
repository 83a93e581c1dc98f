/* errors.h — the one helper that formats error messages into a caller's buffer. */
#ifndef MOGE_ERRORS_H
#define MOGE_ERRORS_H

#include <stddef.h>
#include "moge.h"

/* Formats a message into err (err may be NULL, err_size may be 0) and returns st, so callers
 * can write `return set_err(err, n, MOGE_ERR_IO, "%s: ...", path);`. */
moge_status set_err(char *err, size_t err_size, moge_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Returns from the enclosing function (whose status variable is `st`) when x fails. */
#define TRY(x) do { if ((st = (x)) != MOGE_OK) return st; } while (0)

#endif
