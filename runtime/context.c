/*
 * context.c — context lifetime, KV commit/truncate. The forward pass lives in forward.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"
#include "runtime/errors.h"

moge_context_params moge_context_default_params(void) {
    moge_context_params p = {.n_ctx = 0, .n_batch = 512};
    return p;
}

static void *alloc_floats(int64_t n, int *failed) {
    void *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) *failed = 1;
    return p;
}

moge_status moge_context_new(moge_model *m, const moge_context_params *params, moge_context **out, char *err, size_t n) {
    if (out) *out = NULL;
    if (!m || !out) return set_err(err, n, MOGE_ERR_ARG, "moge_context_new: model and out must not be NULL");
    moge_context_params p = params ? *params : moge_context_default_params();
    const model_config *c = &m->cfg;
    if (p.n_ctx < 0 || p.n_batch < 0)
        return set_err(err, n, MOGE_ERR_ARG, "moge_context_new: n_ctx and n_batch must not be negative");
    if (p.n_ctx == 0) p.n_ctx = c->max_position;
    if (p.n_ctx > c->max_position)
        return set_err(err, n, MOGE_ERR_ARG, "n_ctx %d exceeds the model's max_position_embeddings (%d)", p.n_ctx, c->max_position);
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;

    moge_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    ctx->model = m;
    ctx->n_ctx = p.n_ctx;
    ctx->n_batch = p.n_batch;
    int64_t B = p.n_batch, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    int64_t max_in = c->n_embd;
    if (c->n_ff > max_in) max_in = c->n_ff;
    if (Q > max_in) max_in = Q;
    int failed = 0;
    ctx->k_cache = alloc_floats((int64_t)c->n_layer * KV * p.n_ctx, &failed);
    ctx->v_cache = alloc_floats((int64_t)c->n_layer * KV * p.n_ctx, &failed);
    ctx->x = alloc_floats(B * c->n_embd, &failed);
    ctx->xb = alloc_floats(B * c->n_embd, &failed);
    ctx->q = alloc_floats(B * Q, &failed);
    ctx->k = alloc_floats(B * KV, &failed);
    ctx->v = alloc_floats(B * KV, &failed);
    ctx->att = alloc_floats(B * Q, &failed);
    ctx->gate = alloc_floats(B * c->n_ff, &failed);
    ctx->up = alloc_floats(B * c->n_ff, &failed);
    ctx->logits = alloc_floats(B * c->n_vocab, &failed);
    ctx->scores = alloc_floats(p.n_ctx, &failed);
    ctx->ws = alloc_floats(BACKEND_MATMUL_BLOCK * max_in, &failed);
    ctx->pos = calloc((size_t)B, sizeof(int32_t));
    ctx->depth = calloc((size_t)B, sizeof(int32_t));
    ctx->visible = calloc((size_t)(B * B), 1);
    if (failed || !ctx->pos || !ctx->depth || !ctx->visible) {
        moge_context_free(ctx);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory allocating a context of %d slots", p.n_ctx);
    }
    *out = ctx;
    return MOGE_OK;
}

void moge_context_free(moge_context *ctx) {
    if (!ctx) return;
    free(ctx->k_cache); free(ctx->v_cache);
    free(ctx->x); free(ctx->xb); free(ctx->q); free(ctx->k); free(ctx->v); free(ctx->att);
    free(ctx->gate); free(ctx->up); free(ctx->logits); free(ctx->scores); free(ctx->ws);
    free(ctx->pos); free(ctx->depth); free(ctx->visible);
    free(ctx);
}

const char *moge_context_error(const moge_context *ctx) { return ctx ? ctx->err : "no context"; }
int32_t moge_context_n_past(const moge_context *ctx) { return ctx->n_past; }
int32_t moge_context_n_ctx(const moge_context *ctx) { return ctx->n_ctx; }
int32_t moge_context_n_batch(const moge_context *ctx) { return ctx->n_batch; }

moge_status moge_kv_commit(moge_context *ctx, const int32_t *rows, int32_t n_rows) {
    if (n_rows < 0 || n_rows > ctx->n_last)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                       "moge_kv_commit: %d rows asked, the last forward left %d uncommitted", n_rows, ctx->n_last);
    if (rows) {
        for (int k = 0; k < n_rows; k++)
            if (rows[k] < 0 || rows[k] >= ctx->n_last || (k > 0 && rows[k] <= rows[k - 1]))
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                               "moge_kv_commit: rows[%d] = %d must be increasing and below %d", k, rows[k], ctx->n_last);
        const model_config *c = &ctx->model->cfg;
        int D = c->head_dim;
        /* rows[k] >= k, so copying in increasing k never overwrites a row still to be moved. */
        for (int64_t lh = 0; lh < (int64_t)c->n_layer * c->n_head_kv; lh++) {
            float *kc = ctx->k_cache + lh * ctx->n_ctx * D, *vc = ctx->v_cache + lh * ctx->n_ctx * D;
            for (int k = 0; k < n_rows; k++) {
                if (rows[k] == k) continue;
                memcpy(kc + (int64_t)(ctx->n_past + k) * D, kc + (int64_t)(ctx->n_past + rows[k]) * D, (size_t)D * sizeof(float));
                memcpy(vc + (int64_t)(ctx->n_past + k) * D, vc + (int64_t)(ctx->n_past + rows[k]) * D, (size_t)D * sizeof(float));
            }
        }
    }
    ctx->n_past += n_rows;
    ctx->n_last = 0;
    ctx->err[0] = 0;
    return MOGE_OK;
}

moge_status moge_kv_truncate(moge_context *ctx, int32_t n_past) {
    if (n_past < 0 || n_past > ctx->n_past)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_kv_truncate: %d is outside 0..%d", n_past, ctx->n_past);
    ctx->n_past = n_past;
    ctx->n_last = 0;
    return MOGE_OK;
}
