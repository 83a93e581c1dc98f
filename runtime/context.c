/*
 * context.c — context lifetime, KV commit/truncate. The forward pass lives in forward.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/comm.h"
#include "runtime/context.h"
#include "base/errors.h"
#include "runtime/moe.h"

/* The KV cache's first size in slots per sequence (or n_ctx when smaller): a short prompt and
 * answer never grow it. */
#define KV_FIRST_SLOTS 256

moge_context_params moge_context_default_params(void) {
    moge_context_params p = {.n_ctx = 0, .n_batch = 512, .n_seq = 1};
    return p;
}

/* Zeroed, 64-byte aligned (whole cache lines: the cpu kernels' vector loads of activation rows
 * then do not straddle lines). */
static void *alloc_floats(int64_t n, int *failed) {
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes);
    if (!p) *failed = 1;
    else memset(p, 0, bytes);
    return p;
}

moge_status moge_context_new(moge_model *m, const moge_context_params *params, moge_context **out, char *err, size_t n) {
    if (out) *out = NULL;
    if (!m || !out) return set_err(err, n, MOGE_ERR_ARG, "moge_context_new: model and out must not be NULL");
    if (comm_leads(m->comm)) return comm_context_new(m, params, out, err, n); /* on every rank */
    moge_status st = context_new(m, params, out, err, n);
    if (st == MOGE_OK) (*out)->comm = m->comm; /* a job of one rank */
    return st;
}

moge_status context_new(moge_model *m, const moge_context_params *params, moge_context **out, char *err, size_t n) {
    moge_context_params p = params ? *params : moge_context_default_params();
    const model_config *c = &m->cfg;
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_seq < 0 || p.n_threads < 0)
        return set_err(err, n, MOGE_ERR_ARG, "moge_context_new: n_ctx, n_batch, n_seq and n_threads must not be negative");
    if (p.n_ctx == 0) p.n_ctx = c->max_position;
    if (p.n_ctx > c->max_position)
        return set_err(err, n, MOGE_ERR_ARG, "n_ctx %d exceeds the model's max_position_embeddings (%d)", p.n_ctx, c->max_position);
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_seq > MOGE_MAX_SEQ)
        return set_err(err, n, MOGE_ERR_ARG, "n_seq %d exceeds the most sequences a context holds (%d)", p.n_seq, MOGE_MAX_SEQ);
    if (p.n_batch == 0) p.n_batch = 512;
    if ((int64_t)p.n_batch > (int64_t)p.n_seq * p.n_ctx) p.n_batch = p.n_seq * p.n_ctx;
    if ((int64_t)p.n_seq * p.n_ctx > INT32_MAX / 2)
        return set_err(err, n, MOGE_ERR_ARG, "n_seq %d x n_ctx %d slots is too large", p.n_seq, p.n_ctx);

    moge_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    ctx->model = m;
    ctx->n_ctx = p.n_ctx;
    ctx->n_batch = p.n_batch;
    ctx->n_seq = p.n_seq;
    ctx->n_threads = p.n_threads > 0 ? p.n_threads : m->n_threads;
    ctx->abort_cb = p.abort_cb;
    ctx->abort_cb_user = p.abort_cb_user;
    /* a sequence's uncommitted rows: at most a batch, and at most its slots; with several
     * sequences at most MOGE_SEQ_ROWS (each keeps a visibility matrix of seq_rows² bytes) */
    ctx->seq_rows = p.n_batch < p.n_ctx ? p.n_batch : p.n_ctx;
    if (p.n_seq > 1 && ctx->seq_rows > MOGE_SEQ_ROWS) ctx->seq_rows = MOGE_SEQ_ROWS;
    int64_t B = p.n_batch, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    int64_t max_in = c->n_embd;
    if (c->n_ff > max_in) max_in = c->n_ff;
    if (c->n_ff_shared > max_in) max_in = c->n_ff_shared;
    if (Q > max_in) max_in = Q;
    int failed = 0;
    ctx->kv_cap = p.n_ctx < KV_FIRST_SLOTS ? p.n_ctx : KV_FIRST_SLOTS; /* grown by forwards that need more */
    ctx->k_cache = alloc_floats((int64_t)p.n_seq * c->n_layer * KV * ctx->kv_cap, &failed);
    ctx->v_cache = alloc_floats((int64_t)p.n_seq * c->n_layer * KV * ctx->kv_cap, &failed);
    ctx->seq = calloc((size_t)p.n_seq, sizeof *ctx->seq);
    if (!ctx->seq) failed = 1;
    for (int s = 0; ctx->seq && s < p.n_seq; s++) {
        int64_t R = ctx->seq_rows;
        ctx->seq[s].depth = calloc((size_t)R, sizeof(int32_t));
        ctx->seq[s].visible = calloc((size_t)(R * R), 1);
        if (!ctx->seq[s].depth || !ctx->seq[s].visible) failed = 1;
    }
    ctx->row_seq = calloc((size_t)B, sizeof(int32_t));
    ctx->row_unc = calloc((size_t)B, sizeof(int32_t));
    ctx->runs = calloc((size_t)B, sizeof *ctx->runs);
    ctx->attn = calloc((size_t)B, sizeof *ctx->attn);
    ctx->seq_seen = calloc((size_t)p.n_seq, 1);
    if (!ctx->row_seq || !ctx->row_unc || !ctx->runs || !ctx->attn || !ctx->seq_seen) failed = 1;
    ctx->x = alloc_floats(B * c->n_embd, &failed);
    ctx->xb = alloc_floats(B * c->n_embd, &failed);
    ctx->q = alloc_floats(B * Q, &failed);
    ctx->k = alloc_floats(B * KV, &failed);
    ctx->v = alloc_floats(B * KV, &failed);
    ctx->att = alloc_floats(B * Q, &failed);
    int64_t ff = c->n_ff > c->n_ff_shared ? c->n_ff : c->n_ff_shared;
    ctx->gate = alloc_floats(B * ff, &failed);
    ctx->up = alloc_floats(B * ff, &failed);
    ctx->logits = alloc_floats(B * c->n_vocab, &failed);
    bool pooled = m->ops != &backend_ref; /* every cpu kernel variant runs on the pool */
    ctx->env.pool = pooled ? threadpool_new(ctx->n_threads) : NULL;
    if (pooled && !ctx->env.pool) failed = 1;
    ctx->env.ws = alloc_floats(backend_ws_floats(max_in, threadpool_size(ctx->env.pool)), &failed);
    ctx->env.attn_ws = alloc_floats((int64_t)threadpool_size(ctx->env.pool) * backend_attn_ws_stride(ctx->kv_cap), &failed);
    ctx->pos = calloc((size_t)B, sizeof(int32_t));
    int R = moge_comm_size(m->comm);
    ctx->rank = moge_comm_rank(m->comm);
    ctx->n_ranks = R;
    if (c->n_expert > 0) {
        int N = c->n_expert, K = c->n_expert_used, L = c->n_layer;
        /* devices in the whole job: each rank runs R-th of them, whole groups of its own experts */
        int D = p.n_devices > 0 ? p.n_devices : R * moe_default_devices(&(model_config){.n_group = c->n_group / R}, ctx->n_threads);
        if (c->n_group % D != 0 || D % R != 0) {
            moge_context_free(ctx);
            if (R > 1)
                return set_err(err, n, MOGE_ERR_ARG, "n_devices %d must divide the %d expert groups and be a multiple of the %d ranks", D,
                               c->n_group, R);
            return set_err(err, n, MOGE_ERR_ARG, "n_devices %d must divide the %d expert groups (each device owns whole groups)", D, c->n_group);
        }
        ctx->n_devices = D;
        ctx->n_local_devices = D / R;
        ctx->first_device = ctx->rank * (D / R);
        ctx->device_begin = calloc((size_t)D + 1, sizeof(int32_t));
        if (ctx->device_begin) moe_device_ranges(c, D, ctx->device_begin);
        ctx->router_logits = alloc_floats(B * N, &failed);
        ctx->experts = calloc((size_t)(L * B * K), sizeof(int32_t));
        ctx->weights = alloc_floats(L * B * K, &failed);
        ctx->order = calloc((size_t)(B * K), sizeof(int32_t));
        ctx->offset = calloc((size_t)N + 1, sizeof(int32_t));
        ctx->pair_out = alloc_floats(B * K * c->n_embd, &failed);
        ctx->thread_scratch = alloc_floats(threadpool_size(ctx->env.pool) * moe_scratch_floats(B, c->n_embd, c->n_ff_expert), &failed);
        if (R > 1) ctx->xchg = alloc_floats(B * K * c->n_embd, &failed);
        ctx->route_p = alloc_floats(N, &failed);
        ctx->route_taken = calloc((size_t)N, 1);
        ctx->moe_out = alloc_floats(B * c->n_embd, &failed);
        ctx->shared_out = alloc_floats(B * c->n_embd, &failed);
        ctx->last_device_pairs = calloc((size_t)(L * D), sizeof(int64_t));
        ctx->tot_device_pairs = calloc((size_t)(L * D), sizeof(int64_t));
        ctx->last_expert_hits = calloc((size_t)L * N, sizeof(int64_t));
        ctx->tot_expert_hits = calloc((size_t)L * N, sizeof(int64_t));
        ctx->last_imbalance = calloc((size_t)L, sizeof(double));
        ctx->last_distinct = calloc((size_t)L, sizeof(double));
        ctx->tot_imbalance = calloc((size_t)L, sizeof(double));
        ctx->tot_imbalance_max = calloc((size_t)L, sizeof(double));
        ctx->tot_distinct = calloc((size_t)L, sizeof(double));
        if (!ctx->device_begin || !ctx->experts || !ctx->order || !ctx->offset || !ctx->route_taken ||
            !ctx->last_device_pairs || !ctx->tot_device_pairs || !ctx->last_expert_hits || !ctx->tot_expert_hits ||
            !ctx->last_imbalance || !ctx->last_distinct || !ctx->tot_imbalance || !ctx->tot_imbalance_max || !ctx->tot_distinct)
            failed = 1;
    }
    if (R > 1) { /* a job's forward commands and gathers (a dense model's too) */
        ctx->xchg_bytes = calloc((size_t)R * 3, sizeof(int));
        if (!ctx->xchg_bytes) failed = 1;
        else ctx->xchg_displ = ctx->xchg_bytes + R, ctx->xchg_at = ctx->xchg_displ + R;
        ctx->cmd_buf = calloc((size_t)comm_forward_buf_ints((int)B), sizeof(int32_t));
        if (!ctx->cmd_buf) failed = 1;
    }
    if (failed || !ctx->pos) {
        moge_context_free(ctx);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory allocating a context of %d sequence%s of %d slots", p.n_seq,
                       p.n_seq == 1 ? "" : "s", p.n_ctx);
    }
    *out = ctx;
    return MOGE_OK;
}

moge_status context_kv_reserve(moge_context *ctx, int slots) {
    if (slots <= ctx->kv_cap) return MOGE_OK;
    const model_config *c = &ctx->model->cfg;
    int64_t cap = 2 * (int64_t)ctx->kv_cap;
    if (cap < slots) cap = slots;
    if (cap > ctx->n_ctx) cap = ctx->n_ctx;
    int64_t D = c->head_dim, LH = (int64_t)c->n_layer * c->n_head_kv, old = ctx->kv_cap;
    int failed = 0;
    float *kc = alloc_floats(ctx->n_seq * LH * cap * D, &failed), *vc = alloc_floats(ctx->n_seq * LH * cap * D, &failed);
    float *ws = alloc_floats((int64_t)threadpool_size(ctx->env.pool) * backend_attn_ws_stride((int)cap), &failed);
    if (failed) {
        free(kc); free(vc); free(ws);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory growing the KV cache from %lld to %lld slots per sequence",
                       (long long)old, (long long)cap);
    }
    for (int s = 0; s < ctx->n_seq; s++) { /* the rows in use: committed, then uncommitted */
        int64_t rows = ctx->seq[s].n_past + ctx->seq[s].n_last;
        if (rows > old) rows = old;
        for (int64_t b = s * LH; b < (s + 1) * LH; b++) {
            memcpy(kc + b * cap * D, ctx->k_cache + b * old * D, (size_t)(rows * D) * sizeof(float));
            memcpy(vc + b * cap * D, ctx->v_cache + b * old * D, (size_t)(rows * D) * sizeof(float));
        }
    }
    free(ctx->k_cache); free(ctx->v_cache); free(ctx->env.attn_ws);
    ctx->k_cache = kc;
    ctx->v_cache = vc;
    ctx->env.attn_ws = ws;
    ctx->kv_cap = (int)cap;
    return MOGE_OK;
}

void moge_context_free(moge_context *ctx) {
    if (!ctx) return;
    if (comm_leads(ctx->comm)) comm_command(ctx->comm, COMM_CTX_FREE, ctx->comm_id, 0, 0, 0, 0, NULL, 0, NULL, 0);
    free(ctx->xchg); free(ctx->xchg_bytes); free(ctx->cmd_buf);
    free(ctx->k_cache); free(ctx->v_cache);
    free(ctx->x); free(ctx->xb); free(ctx->q); free(ctx->k); free(ctx->v); free(ctx->att);
    free(ctx->gate); free(ctx->up); free(ctx->logits); free(ctx->env.ws); free(ctx->env.attn_ws);
    free(ctx->pos);
    for (int s = 0; ctx->seq && s < ctx->n_seq; s++) {
        free(ctx->seq[s].depth);
        free(ctx->seq[s].visible);
    }
    free(ctx->seq); free(ctx->row_seq); free(ctx->row_unc); free(ctx->runs); free(ctx->attn); free(ctx->seq_seen);
    threadpool_free(ctx->env.pool);
    free(ctx->device_begin); free(ctx->router_logits); free(ctx->experts); free(ctx->weights);
    free(ctx->order); free(ctx->offset); free(ctx->pair_out); free(ctx->thread_scratch);
    free(ctx->route_p); free(ctx->route_taken); free(ctx->moe_out); free(ctx->shared_out);
    free(ctx->last_device_pairs); free(ctx->tot_device_pairs); free(ctx->last_expert_hits); free(ctx->tot_expert_hits);
    free(ctx->last_imbalance); free(ctx->last_distinct); free(ctx->tot_imbalance); free(ctx->tot_imbalance_max);
    free(ctx->tot_distinct);
    if (ctx->upper_free) ctx->upper_free(ctx->upper_state);
    free(ctx);
}

const char *moge_context_error(const moge_context *ctx) { return ctx ? ctx->err : "no context"; }
int32_t moge_context_n_past(const moge_context *ctx) { return ctx->seq[0].n_past; }
int32_t moge_context_n_ctx(const moge_context *ctx) { return ctx->n_ctx; }
int32_t moge_context_n_batch(const moge_context *ctx) { return ctx->n_batch; }
int32_t moge_context_n_seq(const moge_context *ctx) { return ctx->n_seq; }
int32_t moge_context_n_threads(const moge_context *ctx) { return threadpool_size(ctx->env.pool); }
int32_t moge_seq_n_past(const moge_context *ctx, int32_t seq) {
    return ctx && seq >= 0 && seq < ctx->n_seq ? ctx->seq[seq].n_past : -1;
}

static moge_status check_seq(moge_context *ctx, const char *fn, int32_t seq) {
    if (seq < 0 || seq >= ctx->n_seq)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "%s: sequence %d is outside 0..%d (the context holds %d)", fn, seq,
                       ctx->n_seq - 1, ctx->n_seq);
    return MOGE_OK;
}

moge_status moge_seq_kv_commit(moge_context *ctx, int32_t seq, const int32_t *rows, int32_t n_rows) {
    if (!ctx) return MOGE_ERR_ARG;
    moge_status st = check_seq(ctx, "moge_kv_commit", seq);
    if (st != MOGE_OK) return st;
    kv_seq *sq = &ctx->seq[seq];
    if (n_rows < 0 || n_rows > sq->n_last)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                       "moge_kv_commit: %d rows asked, the last forward left %d uncommitted", n_rows, sq->n_last);
    if (rows) {
        for (int k = 0; k < n_rows; k++)
            if (rows[k] < 0 || rows[k] >= sq->n_last || (k > 0 && rows[k] <= rows[k - 1]))
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                               "moge_kv_commit: rows[%d] = %d must be increasing and below %d", k, rows[k], sq->n_last);
        const model_config *c = &ctx->model->cfg;
        int D = c->head_dim;
        int64_t LH = (int64_t)c->n_layer * c->n_head_kv;
        /* rows[k] >= k, so copying in increasing k never overwrites a row still to be moved. */
        for (int64_t lh = seq * LH; lh < (seq + 1) * LH; lh++) {
            float *kc = ctx->k_cache + lh * ctx->kv_cap * D, *vc = ctx->v_cache + lh * ctx->kv_cap * D;
            for (int k = 0; k < n_rows; k++) {
                if (rows[k] == k) continue;
                memcpy(kc + (int64_t)(sq->n_past + k) * D, kc + (int64_t)(sq->n_past + rows[k]) * D, (size_t)D * sizeof(float));
                memcpy(vc + (int64_t)(sq->n_past + k) * D, vc + (int64_t)(sq->n_past + rows[k]) * D, (size_t)D * sizeof(float));
            }
        }
    }
    sq->n_past += n_rows;
    sq->n_last = 0;
    ctx->err[0] = 0;
    if (comm_leads(ctx->comm)) /* every rank keeps the same rows */
        return comm_command(ctx->comm, COMM_COMMIT, ctx->comm_id, seq, n_rows, rows != NULL, 0, rows,
                            rows ? (int64_t)n_rows * (int64_t)sizeof *rows : 0, ctx->err, sizeof ctx->err);
    return MOGE_OK;
}

moge_status moge_seq_kv_truncate(moge_context *ctx, int32_t seq, int32_t n_past) {
    if (!ctx) return MOGE_ERR_ARG;
    moge_status st = check_seq(ctx, "moge_kv_truncate", seq);
    if (st != MOGE_OK) return st;
    kv_seq *sq = &ctx->seq[seq];
    if (n_past < 0 || n_past > sq->n_past)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_kv_truncate: %d is outside 0..%d", n_past, sq->n_past);
    sq->n_past = n_past;
    sq->n_last = 0;
    if (comm_leads(ctx->comm))
        return comm_command(ctx->comm, COMM_TRUNCATE, ctx->comm_id, seq, n_past, 0, 0, NULL, 0, ctx->err, sizeof ctx->err);
    return MOGE_OK;
}

moge_status moge_kv_commit(moge_context *ctx, const int32_t *rows, int32_t n_rows) {
    return moge_seq_kv_commit(ctx, 0, rows, n_rows);
}

moge_status moge_kv_truncate(moge_context *ctx, int32_t n_past) { return moge_seq_kv_truncate(ctx, 0, n_past); }

/* ------------------------------------------------------------------------------------------ */
/* MoE load statistics                                                                        */
/* ------------------------------------------------------------------------------------------ */

void moe_stats_record(moge_context *ctx, int l, int n) {
    const model_config *c = &ctx->model->cfg;
    int D = ctx->n_devices, N = c->n_expert, K = c->n_expert_used;
    int64_t *dev = ctx->last_device_pairs + (int64_t)l * D, *hits = ctx->last_expert_hits + (int64_t)l * N;
    memset(dev, 0, (size_t)D * sizeof *dev);
    memset(hits, 0, (size_t)N * sizeof *hits);
    const int32_t *experts = ctx->experts + (int64_t)l * ctx->n_batch * K;
    for (int p = 0; p < n * K; p++) hits[experts[p]]++;
    int distinct = 0;
    for (int d = 0; d < D; d++)
        for (int e = ctx->device_begin[d]; e < ctx->device_begin[d + 1]; e++) {
            dev[d] += hits[e];
            distinct += hits[e] > 0;
        }
    int64_t lo = dev[0], hi = dev[0];
    for (int d = 1; d < D; d++) { lo = dev[d] < lo ? dev[d] : lo; hi = dev[d] > hi ? dev[d] : hi; }
    double is = (double)(hi - lo) / n;
    ctx->last_imbalance[l] = is;
    ctx->last_distinct[l] = distinct;
    for (int d = 0; d < D; d++) ctx->tot_device_pairs[(int64_t)l * D + d] += dev[d];
    for (int e = 0; e < N; e++) ctx->tot_expert_hits[(int64_t)l * N + e] += hits[e];
    ctx->tot_imbalance[l] += is;
    if (is > ctx->tot_imbalance_max[l]) ctx->tot_imbalance_max[l] = is;
    ctx->tot_distinct[l] += distinct;
    if (l == 0) {
        ctx->last_rows = n;
        ctx->tot_rows += n;
        ctx->tot_forwards++;
    }
}

int32_t moge_context_n_moe_layers(const moge_context *ctx) {
    return ctx->model->cfg.n_expert > 0 ? ctx->model->cfg.n_layer : 0;
}

moge_status moge_moe_stats_get(const moge_context *ctx, int32_t layer, bool totals, moge_moe_stats *out) {
    if (!ctx || !out || layer < 0 || layer >= moge_context_n_moe_layers(ctx)) return MOGE_ERR_ARG;
    const model_config *c = &ctx->model->cfg;
    int D = ctx->n_devices, N = c->n_expert;
    memset(out, 0, sizeof *out);
    out->n_devices = D;
    out->n_experts = N;
    if (totals) {
        double f = ctx->tot_forwards > 0 ? (double)ctx->tot_forwards : 1.0;
        out->n_rows = ctx->tot_rows;
        out->n_forwards = ctx->tot_forwards;
        out->device_pairs = ctx->tot_device_pairs + (int64_t)layer * D;
        out->expert_hits = ctx->tot_expert_hits + (int64_t)layer * N;
        out->imbalance = ctx->tot_imbalance[layer] / f;
        out->imbalance_max = ctx->tot_imbalance_max[layer];
        out->distinct_experts = ctx->tot_distinct[layer] / f;
    } else {
        out->n_rows = ctx->last_rows;
        out->n_forwards = ctx->last_rows > 0;
        out->device_pairs = ctx->last_device_pairs + (int64_t)layer * D;
        out->expert_hits = ctx->last_expert_hits + (int64_t)layer * N;
        out->imbalance = out->imbalance_max = ctx->last_imbalance[layer];
        out->distinct_experts = ctx->last_distinct[layer];
    }
    return MOGE_OK;
}

moge_status moge_moe_routing(const moge_context *ctx, int32_t layer, const int32_t **experts, const float **weights) {
    if (!ctx || layer < 0 || layer >= moge_context_n_moe_layers(ctx) || ctx->last_rows == 0) return MOGE_ERR_ARG;
    int64_t off = (int64_t)layer * ctx->n_batch * ctx->model->cfg.n_expert_used;
    if (experts) *experts = ctx->experts + off;
    if (weights) *weights = ctx->weights + off;
    return MOGE_OK;
}

void moge_forward_times_get(const moge_context *ctx, moge_forward_times *out) {
    if (!out) return;
    if (ctx) *out = ctx->times;
    else memset(out, 0, sizeof *out);
}

void moge_forward_times_reset(moge_context *ctx) {
    if (ctx) memset(&ctx->times, 0, sizeof ctx->times);
}

const char *moge_forward_part_name(int part) {
    static const char *const names[MOGE_N_PARTS] = {"qkv", "attention", "out_proj", "mlp", "router", "experts", "lm_head", "other"};
    return part >= 0 && part < MOGE_N_PARTS ? names[part] : NULL;
}

void moge_moe_stats_reset(moge_context *ctx) {
    if (!ctx || ctx->model->cfg.n_expert == 0) return;
    const model_config *c = &ctx->model->cfg;
    int64_t L = c->n_layer;
    memset(ctx->tot_device_pairs, 0, (size_t)(L * ctx->n_devices) * sizeof(int64_t));
    memset(ctx->tot_expert_hits, 0, (size_t)(L * c->n_expert) * sizeof(int64_t));
    memset(ctx->tot_imbalance, 0, (size_t)L * sizeof(double));
    memset(ctx->tot_imbalance_max, 0, (size_t)L * sizeof(double));
    memset(ctx->tot_distinct, 0, (size_t)L * sizeof(double));
    ctx->tot_rows = ctx->tot_forwards = 0;
}
