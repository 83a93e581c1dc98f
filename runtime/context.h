/*
 * context.h — a model's run state: the KV cache and every buffer a forward needs, allocated once
 * in moge_context_new() from n_ctx and n_batch.
 */
#ifndef MOGE_CONTEXT_H
#define MOGE_CONTEXT_H

#include <stdint.h>
#include "runtime/model.h"

struct moge_context {
    moge_model *model;
    int n_ctx, n_batch;
    int n_past;       /* committed slots */
    int n_last;       /* rows written by the last forward (still in slots n_past..), 0 after commit */
    float *k_cache;   /* (n_layer, n_head_kv, n_ctx, head_dim) */
    float *v_cache;   /* same */
    /* activations, sized for n_batch rows */
    float *x;         /* (n_batch, n_embd) residual stream */
    float *xb;        /* (n_batch, n_embd) normed input of a sub-layer; also the sub-layer's output */
    float *q;         /* (n_batch, n_head * head_dim) */
    float *k, *v;     /* (n_batch, n_head_kv * head_dim) */
    float *att;       /* (n_batch, n_head * head_dim) */
    float *gate, *up; /* (n_batch, n_ff) */
    float *logits;    /* (n_batch, n_vocab) */
    float *scores;    /* (n_ctx) attention scratch */
    float *ws;        /* (BACKEND_MATMUL_BLOCK * max input width) matmul scratch */
    int32_t *pos;     /* (n_batch) positions in use */
    int32_t *depth;   /* (n_batch) tree depths */
    uint8_t *visible; /* (n_batch, n_batch) tree visibility */
    char err[512];
};

#endif
