/*
 * backend.h — the op table every backend fills in. The transformer forward (forward.c) is
 * written once against this table; `ref` (backend_ref.c: plain loops with double accumulators,
 * the oracle) and `cpu` (backend_cpu.c: OpenBLAS and vectorisable loops) implement it.
 * tests/test_backend_ops.c compares every op of `cpu` with `ref` by normalised error.
 *
 * Ops never allocate; scratch space comes from the caller (sizes below).
 */
#ifndef MOGE_BACKEND_H
#define MOGE_BACKEND_H

#include <stdint.h>
#include "runtime/tensor.h"

/* Rows of a weight matrix the cpu backend converts to f32 at a time (for F16/BF16 GEMM). */
#define BACKEND_MATMUL_BLOCK 64

typedef struct {
    float *out;             /* (n, n_head * head_dim) */
    const float *q;         /* (n, n_head * head_dim), RoPE applied */
    const float *k_cache;   /* (n_head_kv, n_ctx, head_dim) of this layer; slots n_past..n_past+n-1 hold the batch */
    const float *v_cache;   /* same layout as k_cache */
    int n, n_past, n_ctx, n_head, n_head_kv, head_dim;
    const uint8_t *visible; /* NULL: causal (row i sees batch rows 0..i); else (n, n): row i sees batch row j iff visible[i*n+j] */
    float *scratch;         /* at least n_past + n floats */
} attn_args;

typedef struct backend_ops {
    const char *name;
    /* y (n, out) = x (n, in) · Wᵀ (+ bias (out) when not NULL), W a tensor of shape (out, in).
     * ws: BACKEND_MATMUL_BLOCK * in floats of scratch. */
    void (*matmul)(float *y, const float *x, int n, const tensor *w, const float *bias, float *ws);
    /* y (n, dim) = x / sqrt(mean(x²) + eps) * w, row by row; y may equal x. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int n, int dim, float eps);
    /* Rotate-half RoPE in place on x (n, n_heads * head_dim) at positions pos (n);
     * inv_freq (head_dim/2). Angle = (float)pos * inv_freq[j]. */
    void (*rope)(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq);
    /* Scaled dot-product attention over the cached slots 0..n_past-1 plus the visible batch rows. */
    void (*attention)(const attn_args *a);
    /* g = silu(g) * u over n elements. */
    void (*swiglu)(float *g, const float *u, int64_t n);
} backend_ops;

extern const backend_ops backend_ref;
extern const backend_ops backend_cpu;

/* Sets the number of threads the cpu backend may use (OpenBLAS's pool). */
void backend_cpu_set_threads(int n_threads);

#endif
