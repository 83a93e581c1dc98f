/* tree.c — the draft token tree (parallel arrays; see moge_tree in moge.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moge.h"

moge_status moge_tree_init(moge_tree *t, int32_t cap) {
    memset(t, 0, sizeof *t);
    if (cap < 1) return MOGE_ERR_ARG;
    t->cap = cap;
    t->token = malloc((size_t)cap * sizeof(int32_t));
    t->parent = malloc((size_t)cap * sizeof(int32_t));
    t->depth = malloc((size_t)cap * sizeof(int32_t));
    t->logp = malloc((size_t)cap * sizeof(float));
    t->q = calloc((size_t)cap, sizeof(const float *));
    if (!t->token || !t->parent || !t->depth || !t->logp || !t->q) {
        moge_tree_free(t);
        return MOGE_ERR_NOMEM;
    }
    return MOGE_OK;
}

void moge_tree_free(moge_tree *t) {
    if (!t) return;
    free(t->token); free(t->parent); free(t->depth); free(t->logp); free(t->q);
    memset(t, 0, sizeof *t);
}

void moge_tree_reset(moge_tree *t, int32_t root_token) {
    t->n = 1;
    t->token[0] = root_token;
    t->parent[0] = -1;
    t->depth[0] = 0;
    t->logp[0] = 0.0f;
    t->q[0] = NULL;
    t->sampled = t->without_replacement = false;
}

int32_t moge_tree_add(moge_tree *t, int32_t parent, int32_t token, float logp) {
    if (t->n >= t->cap || parent < 0 || parent >= t->n) return -1;
    int32_t i = t->n++;
    t->token[i] = token;
    t->parent[i] = parent;
    t->depth[i] = t->depth[parent] + 1;
    t->logp[i] = logp;
    t->q[i] = NULL;
    return i;
}
