/* json_num.c — range-checked reading of JSON numbers (see json_num.h). */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "runtime/errors.h"
#include "runtime/fileio.h"
#include "runtime/json_num.h"

bool json_integer(const cJSON *j, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d)) return false; /* NaN fails the first test */
    *out = (int64_t)d;
    return true;
}

bool json_int32(const cJSON *j, int32_t lo, int32_t hi, int32_t *out) {
    int64_t v;
    if (!json_integer(j, lo, hi, &v)) return false;
    *out = (int32_t)v;
    return true;
}

moge_status json_read_file(const char *path, cJSON **out, char *err, size_t n) {
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    moge_status st = read_whole_file(path, &text, &len, err, n);
    if (st != MOGE_OK) return st;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    return *out ? MOGE_OK : set_err(err, n, MOGE_ERR_FORMAT, "%s: malformed JSON", path);
}
