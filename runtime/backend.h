/*
 * backend.h — the op table every backend fills in. The transformer forward (forward.c) is
 * written once against this table; `ref` (backend_ref.c: plain loops with double accumulators,
 * the oracle) and `cpu` (runtime/cpu/: AVX2/AVX-512 kernels, threads)
 * implement it. tests/test_backend_ops.c compares every op of `cpu` with `ref` by normalised error.
 *
 * Batch invariance (cpu): for weights in panel layout (every matrix the cpu backend loads, float
 * or quantized, except a tied lm_head left in float) at any batch size, and for the others for
 * batches of up to BACKEND_INVARIANT_ROWS rows, every output value
 * is computed by the same sequence of floating-point operations whatever the other rows of the
 * batch are, and attention sums over the visible slots in slot order, skipping masked ones. So a
 * tree node's logits equal, bit for bit, those of its path decoded one token at a time — which is
 * what makes greedy speculative decoding reproduce target-only decoding exactly.
 *
 * Ops never allocate; scratch space comes from the caller (sizes below).
 */
#ifndef MOGE_BACKEND_H
#define MOGE_BACKEND_H

#include <stdint.h>
#include "runtime/quant.h"
#include "runtime/tensor.h"

/* Batches up to this many rows use the batch-invariant kernels for row-layout and quantized
 * weights; larger ones (prompt prefill) convert the weights a panel at a time to f32 (the same
 * values) and use the panel kernel. Panel-layout weights are invariant at any batch size. */
#define BACKEND_INVARIANT_ROWS 64

struct threadpool;

/* Attention scratch per thread: n_ctx + 8 scores, n_ctx slot numbers, then n_ctx + 8 scores of a
 * second query head (the cpu backend scores two heads that share their keys in one pass). */
static inline int64_t backend_attn_ws_stride(int n_ctx) { return 3 * (int64_t)n_ctx + 16; }

/* What every op may use: the thread pool (NULL = single-threaded) and scratch memory. */
typedef struct {
    struct threadpool *pool;
    float *ws;       /* matmul: backend_ws_floats(largest input width, threads) floats */
    float *attn_ws;  /* attention: threadpool_size(pool) * backend_attn_ws_stride(n_ctx) floats */
} backend_env;

typedef struct {
    float *out;             /* (n, n_head * head_dim) */
    const float *q;         /* (n, n_head * head_dim), RoPE applied */
    const float *k_cache;   /* (n_head_kv, n_ctx, head_dim) of this layer (n_ctx: the slots allocated per head) */
    const float *v_cache;   /* same layout as k_cache */
    int n_past;             /* committed slots 0..n_past-1, visible to every row */
    int n_prev;             /* rows of earlier uncommitted forwards, at slots n_past..n_past+n_prev-1 */
    int n;                  /* the batch's rows, at slots n_past+n_prev+i */
    int n_ctx, n_head, n_head_kv, head_dim;
    /* NULL: causal (row i sees every earlier uncommitted row and batch rows 0..i); else row i
     * sees uncommitted row j (0 <= j < n_prev + n) iff visible[i * ld + j]. */
    const uint8_t *visible;
    int ld;
} attn_args;

/* The routed experts of one MoE layer over a batch. */
typedef struct {
    float *out;                 /* (n, n_embd) = Σ_j weights[r][j] · expert_{experts[r][j]}(x[r]); NULL: only
                                   pair_out of the pairs whose expert the devices own (a rank of a job) */
    const float *x;             /* (n, n_embd) the normed input */
    int n, n_embd, n_ff, k, n_expert;
    const int32_t *experts;     /* (n, k) ascending expert ids per row */
    const float *weights;       /* (n, k) */
    const tensor *gate, *up;    /* [n_expert] of (n_ff, n_embd) */
    const tensor *down;         /* [n_expert] of (n_embd, n_ff) */
    int n_devices;              /* this process's devices: device d owns experts [device_begin[d], device_begin[d+1]) */
    const int32_t *device_begin;/* (n_devices + 1) */
    int32_t *order;             /* scratch (n * k) */
    int32_t *offset;            /* scratch (n_expert + 1) */
    float *pair_out;            /* scratch (n * k, n_embd) */
    float *thread_scratch;      /* scratch of the pool's threads: threadpool_size * moe_scratch_floats(n, n_embd, n_ff) */
} moe_args;

/* out (n, E) = Σ_j weights[r][j] · pair_out[r * k + j] for each row r, summed in slot order (the
 * ascending expert ids) from 0: the one order every backend and every rank of a job sums in
 * (runtime/moe_routing.c). */
void moe_combine(float *out, const float *pair_out, const float *weights, int n, int k, int E);

/* Scratch floats one device needs for a batch of up to n rows (gathered inputs, gate, up, output,
 * and the int16 activations of the row-major quantized kernels). */
static inline int64_t moe_scratch_floats(int64_t n, int64_t n_embd, int64_t n_ff) {
    int64_t wide = n_embd > n_ff ? n_embd : n_ff;
    return n * (2 * n_embd + 2 * n_ff) + wide + quant_act_floats(n, wide);
}

/* Floats of backend_env.ws for matmul inputs up to max_in wide and n_threads threads: the int16
 * activations of up to BACKEND_INVARIANT_ROWS rows, or one weight panel converted to f32 per
 * thread (more rows than that with weights not in panel layout). */
static inline int64_t backend_ws_floats(int64_t max_in, int n_threads) {
    int64_t panels = (int64_t)(n_threads > 0 ? n_threads : 1) * TENSOR_PANEL * max_in,
            act = quant_act_floats(BACKEND_INVARIANT_ROWS, max_in);
    return panels > act ? panels : act;
}

typedef struct backend_ops {
    const char *name;    /* "cpu" or "ref" */
    const char *variant; /* cpu: the kernel variant (instruction set) it was compiled for; ref: NULL */
    /* y (n, out) = x (n, in) · Wᵀ (+ bias (out) when not NULL), W a tensor of shape (out, in). */
    void (*matmul)(const backend_env *env, float *y, const float *x, int n, const tensor *w, const float *bias);
    /* y (n, dim) = x / sqrt(mean(x²) + eps) * w, row by row; y may equal x. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int n, int dim, float eps);
    /* Rotate-half RoPE in place on x (n, n_heads * head_dim) at positions pos (n);
     * inv_freq (head_dim/2). Angle = (float)pos * inv_freq[j]. */
    void (*rope)(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq);
    /* Scaled dot-product attention over the committed slots plus the visible uncommitted rows, for
     * n_args independent row sets (e.g. one per sequence of the batch, each with its own cache
     * region and n_ctx equal in all) in one call; a row's result depends on its own set only. */
    void (*attention)(const backend_env *env, const attn_args *a, int n_args);
    /* g = silu(g) * u over n elements. */
    void (*swiglu)(float *g, const float *u, int64_t n);
    /* Routed experts: ref runs each (row, expert) pair on its own; cpu sorts the pairs by expert,
     * runs one small GEMM per active expert (its weights read once per batch) on the device that
     * owns it, and sums each row's pairs in ascending expert order. */
    void (*moe_experts)(const backend_env *env, const moe_args *a);
    /* The activation quantizers (quant.h quant_act_row / quant_act8_row, the same contract and
     * values) in the form this backend's integer kernels run: the vector form of a cpu variant,
     * so the tests check each against the definition. */
    void (*quant_act_row)(const float *x, int64_t n, int16_t *q, float *d);
    void (*quant_act8_row)(const float *x, int64_t n, int8_t *q, float *d, int32_t *s);
} backend_ops;

extern const backend_ops backend_ref;

/* The cpu backend is compiled once per kernel variant (the files of runtime/cpu/ with each
 * variant's instruction-set flags, runtime/cpu/backend_cpu.c assembling its table backend_cpu_<name>;
 * runtime/cpu_dispatch.c): on x86-64 "scalar" (the baseline build, no
 * vector kernels: the obviously-correct twin), "avx2" (x86-64-v3: AVX2, FMA, F16C), "avxvnni"
 * (that plus AVX-VNNI), "avx512" (x86-64-v4: AVX-512 F/BW/DQ/VL) and "avx512vnni" (that plus
 * AVX-512 VNNI); elsewhere "generic". Every variant is batch-invariant on its own; different
 * variants may differ in the last bits (a model keeps one variant for all its work). */
int backend_cpu_variant_count(void);
const backend_ops *backend_cpu_variant(int i);         /* i < backend_cpu_variant_count(), baseline first */
bool backend_cpu_runs(const backend_ops *variant);     /* this processor (and OS) can run it */
const backend_ops *backend_cpu_find(const char *name); /* by name; NULL when no such variant is built */
const backend_ops *backend_cpu_best(void);             /* the widest variant this processor runs */

#endif
