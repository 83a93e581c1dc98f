/*
 * context.h — a model's run state: the KV cache and every buffer a forward needs, allocated in
 * moge_context_new() from n_ctx, n_batch and n_seq. The KV cache alone starts small (kv_cap
 * slots per sequence) and grows as the sequences fill it, up to n_ctx: a model that claims a
 * context of 10^7 tokens costs memory for the tokens it holds, not for the claim.
 *
 * Sequences: the cache holds n_seq independent regions of n_ctx slots each. A forward's rows are
 * grouped in runs, one per sequence; a row sees only its own sequence's committed slots and the
 * uncommitted rows of that sequence its visibility rule allows, so a sequence's logits do not
 * depend on the others in the batch (the kernels are batch-invariant).
 */
#ifndef MOGE_CONTEXT_H
#define MOGE_CONTEXT_H

#include <stdint.h>
#include "runtime/model.h"
#include "runtime/threadpool.h"

/* One sequence's part of the cache. */
typedef struct {
    int n_past;       /* committed slots */
    int n_last;       /* uncommitted rows (slots n_past..n_past+n_last-1), 0 after commit */
    int32_t *depth;   /* (seq_rows) tree depth of each uncommitted row */
    uint8_t *visible; /* (seq_rows, seq_rows): row g marks the uncommitted rows node g sees */
} kv_seq;

struct moge_context {
    moge_model *model;
    int n_ctx, n_batch, n_seq; /* n_ctx: slots per sequence */
    int n_threads;    /* of env.pool (moge_context_params.n_threads, else the model's) */
    bool (*abort_cb)(void *); /* moge_context_params.abort_cb, checked by moge_forward */
    void *abort_cb_user;
    int seq_rows;     /* the most uncommitted rows of one sequence: min(n_batch, n_ctx) */
    kv_seq *seq;      /* (n_seq) */
    int kv_cap;       /* slots allocated per sequence, layer and KV head (<= n_ctx; context_kv_reserve grows it) */
    float *k_cache;   /* (n_seq, n_layer, n_head_kv, kv_cap, head_dim) */
    float *v_cache;   /* same */
    /* activations, sized for n_batch rows */
    float *x;         /* (n_batch, n_embd) residual stream */
    float *xb;        /* (n_batch, n_embd) normed input of a sub-layer; also the sub-layer's output */
    float *q;         /* (n_batch, n_head * head_dim) */
    float *k, *v;     /* (n_batch, n_head_kv * head_dim) */
    float *att;       /* (n_batch, n_head * head_dim) */
    float *gate, *up; /* (n_batch, n_ff) */
    float *logits;    /* (n_batch, n_vocab) */
    backend_env env;  /* thread pool and op scratch */
    int32_t *pos;     /* (n_batch) positions of the batch's rows */
    int32_t *row_seq, *row_unc; /* (n_batch) each row's sequence and uncommitted-row number in it */
    struct run_info { int seq, first, n, n_prev; } *runs; /* (n_batch) the batch's runs of one sequence */
    int n_runs;
    uint8_t *seq_seen; /* (n_seq) scratch of the batch check */
    attn_args *attn;   /* (n_batch) the runs' attention arguments */
    /* MoE (model with experts) */
    int n_devices;
    int32_t *device_begin; /* (n_devices + 1) expert ranges of the devices */
    float *router_logits;  /* (n_batch, n_expert) */
    int32_t *experts;      /* (n_layer, n_batch, k) routing of the last forward */
    float *weights;        /* (n_layer, n_batch, k) */
    int32_t *order, *offset;
    float *pair_out;       /* (n_batch * k, n_embd) */
    float *thread_scratch; /* one moe_scratch_floats per thread of env.pool */
    float *route_p;        /* (n_expert) */
    uint8_t *route_taken;  /* (n_expert) */
    float *moe_out;        /* (n_batch, n_embd) */
    float *shared_out;     /* (n_batch, n_embd) */
    /* load statistics per layer: the last forward and running totals */
    int64_t *last_device_pairs, *last_expert_hits; /* (n_layer, n_devices), (n_layer, n_expert) */
    double *last_imbalance, *last_distinct;        /* (n_layer) */
    int64_t *tot_device_pairs, *tot_expert_hits;
    double *tot_imbalance, *tot_imbalance_max, *tot_distinct;
    int64_t tot_rows, tot_forwards, last_rows;
    /* state a module above the runtime keeps per context (verify/verify_state.h), made there on
     * first use and freed with the context by upper_free; the runtime never looks inside */
    void *upper_state;
    void (*upper_free)(void *);
    /* expert parallelism (runtime/comm.h): the job (NULL: one process) and this context's id in
     * it; this rank runs devices [first_device, first_device + n_local_devices) of device_begin
     * (every device in one process) */
    moge_comm *comm;
    int comm_id, rank, n_ranks;
    int first_device, n_local_devices;
    float *xchg;             /* (n_batch * k, n_embd) the ranks' expert outputs, in rank order */
    int *xchg_bytes, *xchg_displ, *xchg_at; /* (n_ranks) */
    int32_t *cmd_buf;        /* rank 0: a forward's command (comm_forward_buf_ints) */
    moge_rank_stats rstat;   /* this rank's running figures */
    moge_forward_times times; /* where its forwards' time went (forward.c) */
    char err[512];
};

/* Makes the KV cache hold at least `slots` (<= n_ctx) slots per sequence: the cache grows to twice
 * its size at least (at most n_ctx), the committed and uncommitted rows of every sequence copied,
 * and the attention scratch with it. MOGE_ERR_NOMEM (message in ctx->err) leaves it as it was. */
moge_status context_kv_reserve(moge_context *ctx, int slots);

/* moge_context_new on this process alone (the ranks of a job each call it: runtime/comm.c). */
moge_status context_new(moge_model *m, const moge_context_params *params, moge_context **out, char *err, size_t n);

/* Records the load of MoE layer l for the batch routed into ctx->experts (n rows). */
void moe_stats_record(moge_context *ctx, int l, int n);

#endif
