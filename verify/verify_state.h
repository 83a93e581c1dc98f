/*
 * verify_state.h — what verify/ keeps per context: the scratch of tree verification (the target's
 * processed distribution, the children of a node, the recent tokens of the repetition penalty)
 * and the planner's calibration (verify/planner.c). Made on first use and hung on the context's
 * upper_state hook, which frees it with the context: the runtime knows nothing of trees or
 * acceptance rules.
 */
#ifndef MOGE_VERIFY_STATE_H
#define MOGE_VERIFY_STATE_H

#include <stdint.h>

#include "moge.h"

struct planner;

typedef struct {
    float *probs, *q;           /* (n_vocab) the target's processed p and the draft's residual q */
    int32_t *idx;               /* (n_vocab) the sampler's index scratch */
    int32_t *recent;            /* (recent_cap) recent tokens of the repetition penalty */
    int32_t recent_cap;
    int32_t *children, *child_tok; /* (n_batch) a node's children and their tokens */
    struct planner *planner;    /* NULL until planner_start makes it */
} verify_state;

/* ctx's verify state, made on first use; NULL when out of memory (message in the context). */
verify_state *verify_state_get(moge_context *ctx);

/* Makes vs->recent hold at least `cap` tokens. MOGE_ERR_NOMEM (message in the context) leaves it
 * as it was. */
moge_status verify_state_recent(moge_context *ctx, verify_state *vs, int64_t cap);

#endif
