/* status.c — status codes to text, the one name table of each public enum (what the command
 * line, JSON and messages call its values), and the version. */
#include <string.h>

#include "moge.h"

const char *moge_status_str(moge_status st) {
    switch (st) {
    case MOGE_OK: return "ok";
    case MOGE_ERR_IO: return "I/O error";
    case MOGE_ERR_FORMAT: return "malformed input";
    case MOGE_ERR_UNSUPPORTED: return "unsupported";
    case MOGE_ERR_SHAPE: return "wrong shape or dtype";
    case MOGE_ERR_NOMEM: return "out of memory";
    case MOGE_ERR_ARG: return "invalid argument";
    case MOGE_ERR_CONTEXT_FULL: return "context full";
    case MOGE_ERR_BUFFER: return "buffer too small";
    case MOGE_ERR_TOO_COMPLEX: return "pattern too complex for input";
    case MOGE_ERR_NUMERIC: return "non-finite values (NaN or Inf) in the logits";
    case MOGE_ERR_ABORTED: return "aborted by the caller";
    }
    return "unknown status";
}

const char *moge_version(void) { return MOGE_VERSION; }

/* Index = the enum's value; NULL-terminated. */
static const char *const SPEC_NAMES[] = {"none", "chain", "tree", NULL};
static const char *const QUANT_NAMES[] = {"none", "q8", "q4", "w8a8", "w4a8", NULL};
static const char *const ROUTING_NAMES[] = {"default", "moge", "topk", "group_limited", NULL};
static const char *const BACKEND_NAMES[] = {"cpu", "ref", NULL};
static const char *const STOP_NAMES[] = {"length", "end of sequence", "stopped", "context full", NULL};
_Static_assert(MOGE_SPEC_TREE == 2 && MOGE_QUANT_W4A8 == 4 && MOGE_ROUTING_GROUP_LIMITED == 3 && MOGE_BACKEND_REF == 1 &&
                   MOGE_STOP_CONTEXT_FULL == 3,
               "the name tables follow the enums' values");

static const char *name_of(const char *const *names, int v) {
    for (int i = 0; names[i]; i++)
        if (i == v) return names[i];
    return NULL;
}

static moge_status parse(const char *const *names, const char *s, int *out) {
    for (int i = 0; s && names[i]; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return MOGE_OK;
        }
    return MOGE_ERR_ARG;
}

#define NAME_PARSE(kind, type, table)                                                  \
    const char *moge_##kind##_name(type v) { return name_of(table, (int)v); }          \
    moge_status moge_##kind##_parse(const char *name, type *out) {                      \
        int v;                                                                          \
        moge_status st = parse(table, name, &v);                                        \
        if (st == MOGE_OK) *out = (type)v;                                              \
        return st;                                                                      \
    }
NAME_PARSE(spec, moge_spec_mode, SPEC_NAMES)
NAME_PARSE(quant, moge_quant, QUANT_NAMES)
NAME_PARSE(routing, moge_routing, ROUTING_NAMES)
NAME_PARSE(backend, moge_backend, BACKEND_NAMES)

const char *moge_stop_name(moge_stop_reason r) { return name_of(STOP_NAMES, (int)r); }
