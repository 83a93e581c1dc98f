/*
 * forward.c — the transformer forward over one batch of rows, written once against the backend
 * op table (backend.h). Llama-family block:
 *   x += o_proj(attention(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))
 *   x += down(silu(gate(norm(x))) * up(norm(x)))
 * then logits = lm_head(norm(x)). K/V of row i go to cache slot n_past + i.
 */
#include <math.h>
#include <string.h>

#include "runtime/comm.h"
#include "runtime/context.h"
#include "base/errors.h"
#include "runtime/finite.h"
#include "runtime/moe.h"

/* Validates the batch (nothing changes on error), then splits it into runs of one sequence
 * (ctx->runs) and fills ctx->pos, ctx->row_seq, ctx->row_unc and each sequence's depth and
 * visible rows. Uncommitted rows are numbered per sequence: rows of earlier forwards kept with
 * `extend` first (0..n_prev-1), then this batch's. A sequence's visible row g marks the
 * uncommitted rows node g sees. */
static moge_status prepare_batch(moge_context *ctx, const moge_batch *b) {
    const model_config *c = &ctx->model->cfg;
    int n = b->n, R = ctx->seq_rows;
    if (n < 1 || n > ctx->n_batch || !b->tokens)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: batch of %d rows (at most %d)", n, ctx->n_batch);
    memset(ctx->seq_seen, 0, (size_t)ctx->n_seq);
    ctx->n_runs = 0;
    for (int i = 0; i < n; i++) { /* the runs, checked */
        int s = b->seq ? b->seq[i] : 0;
        if (s < 0 || s >= ctx->n_seq)
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: seq[%d] = %d is outside 0..%d (the context holds %d sequence%s)",
                           i, s, ctx->n_seq - 1, ctx->n_seq, ctx->n_seq == 1 ? "" : "s");
        if (i > 0 && s == ctx->runs[ctx->n_runs - 1].seq) {
            ctx->runs[ctx->n_runs - 1].n++;
            continue;
        }
        if (ctx->seq_seen[s])
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: the rows of sequence %d are not contiguous (row %d)", s, i);
        ctx->seq_seen[s] = 1;
        const kv_seq *sq = &ctx->seq[s];
        ctx->runs[ctx->n_runs++] = (struct run_info){.seq = s, .first = i, .n = 1, .n_prev = b->extend ? sq->n_last : 0};
    }
    for (int r = 0; r < ctx->n_runs; r++) {
        const struct run_info *ru = &ctx->runs[r];
        const kv_seq *sq = &ctx->seq[ru->seq];
        if (ru->n_prev + ru->n > R)
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: %d rows of sequence %d%s (at most %d uncommitted rows)", ru->n,
                           ru->seq, ru->n_prev ? " after earlier uncommitted rows" : "", R);
        if (sq->n_past + ru->n_prev + ru->n > ctx->n_ctx)
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_CONTEXT_FULL, "context full: %d cached + %d new tokens exceed n_ctx %d%s",
                           sq->n_past + ru->n_prev, ru->n, ctx->n_ctx, ctx->n_seq > 1 ? " (slots per sequence)" : "");
        for (int j = 0; j < ru->n; j++) {
            int i = ru->first + j, g = ru->n_prev + j;
            if (b->tokens[i] < 0 || b->tokens[i] >= c->n_vocab)
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: token %d at row %d is outside the vocabulary (0..%d)",
                               b->tokens[i], i, c->n_vocab - 1);
            int p = b->parent ? b->parent[i] : g - 1;
            if (p < -1 || p >= g)
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: parent[%d] = %d (must be -1 or below %d)", i, p, g);
            if (b->pos && b->pos[i] < 0)
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_forward: pos[%d] = %d is negative", i, b->pos[i]);
        }
    }
    int slots = 0; /* the cache's slots per sequence this batch reaches */
    for (int r = 0; r < ctx->n_runs; r++) {
        const struct run_info *ru = &ctx->runs[r];
        int need = ctx->seq[ru->seq].n_past + ru->n_prev + ru->n;
        slots = need > slots ? need : slots;
    }
    moge_status st = context_kv_reserve(ctx, slots);
    if (st != MOGE_OK) return st;
    for (int r = 0; r < ctx->n_runs; r++) {
        const struct run_info *ru = &ctx->runs[r];
        kv_seq *sq = &ctx->seq[ru->seq];
        for (int j = 0; j < ru->n; j++) {
            int i = ru->first + j, g = ru->n_prev + j;
            int p = b->parent ? b->parent[i] : g - 1;
            sq->depth[g] = p < 0 ? 0 : sq->depth[p] + 1;
            /* node g sees what its parent sees, and itself (kept even for causal batches, which a
             * later `extend` batch may hang from) */
            uint8_t *vis = sq->visible + (int64_t)g * R;
            if (p >= 0) memcpy(vis, sq->visible + (int64_t)p * R, (size_t)g);
            else memset(vis, 0, (size_t)g);
            vis[g] = 1;
            ctx->pos[i] = b->pos ? b->pos[i] : sq->n_past + sq->depth[g];
            ctx->row_seq[i] = ru->seq;
            ctx->row_unc[i] = g;
        }
    }
    return MOGE_OK;
}

/* Adds the time since *t to *part and restarts *t from now (ctx->times, moge_forward_times). */
static inline void lap(double *part, double *t) {
    double now = comm_now();
    *part += now - *t;
    *t = now;
}

/* x += Σ routed experts + shared expert, over the normed input ctx->xb (n rows). In a job of
 * several ranks each computes its own experts' pairs, the ranks exchange them, and each sums every
 * row's pairs in the order one process does (moe_combine). */
static moge_status moe_layer(moge_context *ctx, int l, int n, double *t) {
    const moge_model *m = ctx->model;
    const model_config *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    const backend_ops *ops = m->ops;
    const backend_env *env = &ctx->env;
    int E = c->n_embd, N = c->n_expert, K = c->n_expert_used;
    int32_t *experts = ctx->experts + (int64_t)l * ctx->n_batch * K;
    float *weights = ctx->weights + (int64_t)l * ctx->n_batch * K;
    ops->matmul(env, ctx->router_logits, ctx->xb, n, &w->router, NULL);
    for (int r = 0; r < n; r++)
        moe_route_row(ctx->router_logits + (int64_t)r * N, c, w->router_scale, experts + (int64_t)r * K,
                      weights + (int64_t)r * K, ctx->route_p, ctx->route_taken);
    moe_stats_record(ctx, l, n);
    lap(&ctx->times.seconds[MOGE_PART_ROUTER], t);
    moe_args a = {
        .out = ctx->moe_out, .x = ctx->xb, .n = n, .n_embd = E, .n_ff = c->n_ff_expert, .k = K, .n_expert = N,
        .experts = experts, .weights = weights, .gate = w->exp_gate, .up = w->exp_up, .down = w->exp_down,
        .n_devices = ctx->n_local_devices, .device_begin = ctx->device_begin + ctx->first_device,
        .order = ctx->order, .offset = ctx->offset, .pair_out = ctx->pair_out, .thread_scratch = ctx->thread_scratch,
    };
    bool multi = comm_multi(ctx->comm);
    if (multi) a.out = NULL; /* this rank's pairs only */
    double t0 = *t;
    ops->moe_experts(env, &a);
    lap(&ctx->times.seconds[MOGE_PART_EXPERTS], t);
    ctx->rstat.expert_seconds += *t - t0;
    if (multi) {
        moge_status st = comm_exchange_pairs(ctx, experts, n);
        if (st != MOGE_OK) return st;
        moe_combine(ctx->moe_out, ctx->pair_out, weights, n, K, E);
    } else {
        ctx->rstat.pairs += (int64_t)n * K;
        ctx->rstat.rows += n;
    }
    for (int64_t i = 0; i < (int64_t)n * E; i++) ctx->x[i] += ctx->moe_out[i];
    lap(&ctx->times.seconds[MOGE_PART_OTHER], t); /* the exchange and the sum */
    if (c->n_ff_shared > 0) {
        ops->matmul(env, ctx->gate, ctx->xb, n, &w->sh_gate, NULL);
        ops->matmul(env, ctx->up, ctx->xb, n, &w->sh_up, NULL);
        ops->swiglu(ctx->gate, ctx->up, (int64_t)n * c->n_ff_shared);
        ops->matmul(env, ctx->shared_out, ctx->gate, n, &w->sh_down, NULL);
        lap(&ctx->times.seconds[MOGE_PART_MLP], t);
        for (int r = 0; r < n; r++) {
            float scale = 1.0f;
            if (w->sh_gate_w) { /* Qwen2-MoE: sigmoid(shared_expert_gate · h) */
                double dot = 0;
                for (int i = 0; i < E; i++) dot += (double)w->sh_gate_w[i] * ctx->xb[(int64_t)r * E + i];
                scale = (float)(1.0 / (1.0 + exp(-dot)));
            }
            for (int i = 0; i < E; i++) ctx->x[(int64_t)r * E + i] += scale * ctx->shared_out[(int64_t)r * E + i];
        }
        lap(&ctx->times.seconds[MOGE_PART_OTHER], t);
    }
    return MOGE_OK;
}

/* The caller's abort callback said stop (moge_context_params.abort_cb). */
static bool aborted(moge_context *ctx) { return ctx->abort_cb && ctx->abort_cb(ctx->abort_cb_user); }

/* A forward stopped between layers: none of its rows stays (with extend, the rows it extended do),
 * the committed slots are untouched. */
static moge_status abort_forward(moge_context *ctx) {
    for (int r = 0; r < ctx->n_runs; r++) ctx->seq[ctx->runs[r].seq].n_last = ctx->runs[r].n_prev;
    return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ABORTED, "moge_forward: aborted by the caller");
}

moge_status moge_forward(moge_context *ctx, const moge_batch *b, const float **logits) {
    if (!ctx || !b || !logits) return MOGE_ERR_ARG;
    *logits = NULL;
    if (aborted(ctx)) return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ABORTED, "moge_forward: aborted by the caller");
    moge_status st = prepare_batch(ctx, b);
    if (st != MOGE_OK) return st;
    double t_start = comm_now(), comm0 = ctx->rstat.comm_seconds;
    if (comm_leads(ctx->comm) && (st = comm_forward_command(ctx, b)) != MOGE_OK) return st; /* every rank runs it */
    const backend_env *env = &ctx->env;
    const moge_model *m = ctx->model;
    const model_config *c = &m->cfg;
    const backend_ops *ops = m->ops;
    int n = b->n, E = c->n_embd, D = c->head_dim, H = c->n_head, HKV = c->n_head_kv, F = c->n_ff;
    int KV = HKV * D;
    moge_forward_times *tm = &ctx->times;
    double t = t_start; /* the parts' clock (lap) */

    for (int i = 0; i < n; i++) tensor_to_f32(&m->tok_embd, (int64_t)b->tokens[i] * E, E, ctx->x + (int64_t)i * E);

    bool abortable = ctx->abort_cb && !comm_multi(ctx->comm); /* an MPI job's ranks finish the forward together */
    for (int l = 0; l < c->n_layer; l++) {
        if (l > 0 && abortable && aborted(ctx)) return abort_forward(ctx);
        const layer_weights *w = &m->layers[l];
        /* attention */
        ops->rmsnorm(ctx->xb, ctx->x, w->attn_norm, n, E, c->norm_eps);
        lap(&tm->seconds[MOGE_PART_OTHER], &t);
        ops->matmul(env, ctx->q, ctx->xb, n, &w->wq, w->bq);
        ops->matmul(env, ctx->k, ctx->xb, n, &w->wk, w->bk);
        ops->matmul(env, ctx->v, ctx->xb, n, &w->wv, w->bv);
        lap(&tm->seconds[MOGE_PART_QKV], &t);
        if (w->q_norm) { /* Qwen3: RMSNorm over each head */
            ops->rmsnorm(ctx->q, ctx->q, w->q_norm, n * H, D, c->norm_eps);
            ops->rmsnorm(ctx->k, ctx->k, w->k_norm, n * HKV, D, c->norm_eps);
        }
        ops->rope(ctx->q, ctx->pos, n, H, D, m->rope_inv_freq);
        ops->rope(ctx->k, ctx->pos, n, HKV, D, m->rope_inv_freq);
        for (int r = 0; r < ctx->n_runs; r++) {
            const struct run_info *ru = &ctx->runs[r];
            const kv_seq *sq = &ctx->seq[ru->seq];
            int64_t layer = ((int64_t)ru->seq * c->n_layer + l) * HKV * ctx->kv_cap * D;
            float *kc = ctx->k_cache + layer, *vc = ctx->v_cache + layer;
            for (int j = 0; j < ru->n; j++)
                for (int h = 0; h < HKV; h++) {
                    int64_t slot = (int64_t)h * ctx->kv_cap + sq->n_past + ru->n_prev + j, i = ru->first + j;
                    memcpy(kc + slot * D, ctx->k + i * KV + (int64_t)h * D, (size_t)D * sizeof(float));
                    memcpy(vc + slot * D, ctx->v + i * KV + (int64_t)h * D, (size_t)D * sizeof(float));
                }
            ctx->attn[r] = (attn_args){
                .out = ctx->att + (int64_t)ru->first * H * D, .q = ctx->q + (int64_t)ru->first * H * D, .k_cache = kc, .v_cache = vc,
                .n_past = sq->n_past, .n_prev = ru->n_prev, .n = ru->n, .n_ctx = ctx->kv_cap, .n_head = H, .n_head_kv = HKV, .head_dim = D,
                .visible = b->parent || ru->n_prev ? sq->visible + (int64_t)ru->n_prev * ctx->seq_rows : NULL, .ld = ctx->seq_rows,
            };
        }
        lap(&tm->seconds[MOGE_PART_OTHER], &t);
        ops->attention(env, ctx->attn, ctx->n_runs);
        lap(&tm->seconds[MOGE_PART_ATTENTION], &t);
        ops->matmul(env, ctx->xb, ctx->att, n, &w->wo, w->bo);
        lap(&tm->seconds[MOGE_PART_OUT_PROJ], &t);
        for (int64_t i = 0; i < (int64_t)n * E; i++) ctx->x[i] += ctx->xb[i];
        /* MLP or MoE */
        ops->rmsnorm(ctx->xb, ctx->x, w->ffn_norm, n, E, c->norm_eps);
        lap(&tm->seconds[MOGE_PART_OTHER], &t);
        if (c->n_expert > 0) {
            if ((st = moe_layer(ctx, l, n, &t)) != MOGE_OK) return st;
            continue;
        }
        ops->matmul(env, ctx->gate, ctx->xb, n, &w->w_gate, NULL);
        ops->matmul(env, ctx->up, ctx->xb, n, &w->w_up, NULL);
        ops->swiglu(ctx->gate, ctx->up, (int64_t)n * F);
        ops->matmul(env, ctx->xb, ctx->gate, n, &w->w_down, NULL);
        lap(&tm->seconds[MOGE_PART_MLP], &t);
        for (int64_t i = 0; i < (int64_t)n * E; i++) ctx->x[i] += ctx->xb[i];
    }
    lap(&tm->seconds[MOGE_PART_OTHER], &t);
    tm->forwards++;
    tm->rows += n;
    if (abortable && aborted(ctx)) return abort_forward(ctx); /* before the lm_head */
    ctx->rstat.forwards++;
    if (ctx->rank != 0) { /* a follower: rank 0 alone samples from the logits */
        for (int r = 0; r < ctx->n_runs; r++) ctx->seq[ctx->runs[r].seq].n_last = ctx->runs[r].n_prev + ctx->runs[r].n;
        ctx->rstat.compute_seconds += comm_now() - t_start - (ctx->rstat.comm_seconds - comm0);
        *logits = ctx->logits;
        return MOGE_OK;
    }
    int n_out = n;
    if (b->logits_last_only) { /* the last row of each run */
        n_out = ctx->n_runs;
        for (int r = 0; r < ctx->n_runs; r++)
            memmove(ctx->x + (int64_t)r * E, ctx->x + (int64_t)(ctx->runs[r].first + ctx->runs[r].n - 1) * E, (size_t)E * sizeof(float));
    }
    ops->rmsnorm(ctx->xb, ctx->x, m->out_norm, n_out, E, c->norm_eps);
    ops->matmul(env, ctx->logits, ctx->xb, n_out, &m->lm_head, NULL);
    if (!logits_finite(ctx->logits, (int64_t)n_out * c->n_vocab)) { /* broken weights: name them, do not sample from NaN */
        char why[256];
        model_find_nonfinite(m, why, sizeof why);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NUMERIC, "the forward's logits hold NaN or Inf: %s", why);
    }
    lap(&tm->seconds[MOGE_PART_LM_HEAD], &t);
    for (int r = 0; r < ctx->n_runs; r++) ctx->seq[ctx->runs[r].seq].n_last = ctx->runs[r].n_prev + ctx->runs[r].n;
    ctx->rstat.compute_seconds += comm_now() - t_start - (ctx->rstat.comm_seconds - comm0);
    ctx->err[0] = 0;
    *logits = ctx->logits;
    return MOGE_OK;
}
