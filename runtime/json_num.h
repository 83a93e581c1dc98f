/* json_num.h — range-checked reading of JSON numbers, shared by every loader (config.json,
 * safetensors headers, tokenizer.json). A JSON number is a double: it is checked against the
 * range as a double, before any cast, since casting one outside the target type's range
 * (1e10 to int, 1e300 to uint64_t) is undefined behaviour. */
#ifndef MOGE_JSON_NUM_H
#define MOGE_JSON_NUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moge.h"

struct cJSON;

/* True when j is a JSON number that is a whole number in [lo, hi] (lo and hi within ±2^53);
 * then *out holds it. False for anything else (not a number, NaN, a fraction, out of range),
 * and *out is left alone. */
bool json_integer(const struct cJSON *j, double lo, double hi, int64_t *out);

/* The same for the int32 range [lo, hi]. */
bool json_int32(const struct cJSON *j, int32_t lo, int32_t hi, int32_t *out);

/* Reads and parses the JSON file at path into *out (the caller frees it with cJSON_Delete); on
 * failure *out is NULL and err names the file (read_whole_file's errors, or "PATH: malformed
 * JSON"). */
moge_status json_read_file(const char *path, struct cJSON **out, char *err, size_t err_size);

#endif
