/* status.c — status codes to text. */
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
    }
    return "unknown status";
}
