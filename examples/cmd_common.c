/* cmd_common.c — flag value parsing shared by the subcommands (see cli.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moge.h"

#include "examples/cli.h"

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "moge %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_int(const char *cmd, const char *flag, const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "moge %s: %s: expected an integer in %ld..%ld, got \"%s\"\n", cmd, flag, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *cmd, const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "moge %s: %s: expected a number in %g..%g, got \"%s\"\n", cmd, flag, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "moge %s: %s: expected a non-negative integer, got \"%s\"\n", cmd, flag, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_quant(const char *cmd, const char *s, int *out) {
    if (!strcmp(s, "none")) *out = MOGE_QUANT_NONE;
    else if (!strcmp(s, "q8")) *out = MOGE_QUANT_Q8;
    else if (!strcmp(s, "q4")) *out = MOGE_QUANT_Q4;
    else {
        fprintf(stderr, "moge %s: --quant: expected none, q8 or q4, got \"%s\"\n", cmd, s);
        return false;
    }
    return true;
}

bool cli_tree_shape(const char *cmd, const char *s, int32_t *shape, int32_t *n) {
    *n = 0;
    for (const char *q = s; *q;) {
        char *end;
        long x = strtol(q, &end, 10);
        if (end == q || x < 1 || x > 16 || *n == 16 || (*end && *end != ',')) break;
        shape[(*n)++] = (int32_t)x;
        if (!*end) return true;
        q = end + 1;
    }
    fprintf(stderr, "moge %s: --tree-shape: expected up to 16 numbers 1..16 separated by commas, got \"%s\"\n", cmd, s);
    return false;
}
