/*
 * matmul_float.c — matmul kernels for float weights (F32 / F16 / BF16) and f32 activations,
 * in row layout (tile_f) and in panel layout (ptile); matmul.c picks one. Built per kernel
 * variant (kernels.h); the scalar variant has none (matmul.c's portable twin runs instead).
 *
 * Row layout. A tile is TO output rows (weight rows) times TR input rows (1 <= TR <= 4): one pass
 * over the TO weight rows, each weight vector loaded (and converted) once and multiplied into all
 * TR input rows, so a batch of up to 4 rows reads the weights once and larger batches read them
 * again from cache only. Every output value (o, r) has its own vector accumulator and a sequence
 * of operations that depends on neither the tile shape, nor the span split, nor the other rows,
 * so it is the same bits whatever the batch is (the batch-invariance contract of backend.h):
 * acc = fma(w[k..k+VL], x[r][k..k+VL], acc) for k = 0, VL, 2 VL, ... in order (VL = 16 with
 * AVX-512, else 8), then y = hsum(acc) + Σ (scalar tail, in order).
 *
 * Panel layout (tensor.h): a tile is PT_ROWS input rows × PT_PANELS panels of TENSOR_PANEL
 * outputs. Per column k of the panels it loads the panels' weights as vectors, broadcasts
 * x[r][k] and multiply-adds, so output (r, o) is acc = fma(x[r][k], W[o][k], acc) for
 * k = 0, 1, ..., in - 1 from acc = 0: one fixed fused multiply-add chain per value, whatever the
 * tile, the vector width or the batch (a scalar fmaf loop gives the same bits), and no
 * horizontal sums.
 */
#include "runtime/cpu/kernels.h"

#ifdef MOGE_AVX2
/* One step of a float tile: VL weights at element K of each of the TO rows times the TR rows. */
#define TILE_STEP(K)                                                                          \
    do {                                                                                      \
        vf xv[4];                                                                             \
        UNROLL for (int r = 0; r < TR; r++) xv[r] = vf_loadu(x + (int64_t)r * in + (K));     \
        UNROLL for (int a = 0; a < TO; a++) {                                                 \
            vf wv = loadv(T, wr[a], (K));                                                     \
            UNROLL for (int r = 0; r < TR; r++) acc[a][r] = vf_fma(wv, xv[r], acc[a][r]);     \
        }                                                                                     \
    } while (0)

/* y[r * ldy + a] = W[o + a] · x[r] for a < TO, r < TR (elements k0..k1 of this span, multiples
 * of VL; the last span also the scalar tail); float weights, f32 activations. */
ALWAYS_INLINE void tile_f(dtype T, int TO, int TR, const tensor *w, int64_t o, int in, const float *x, int k0, int k1, int flags,
                          void *save, float *y, int64_t ldy) {
    size_t rb = dtype_row_bytes(T, in);
    const char *wr[4];
    UNROLL for (int a = 0; a < TO; a++) wr[a] = (const char *)w->data + (size_t)(o + a) * rb;
    TILE_BEGIN(vf, vf_zero())
    int k = k0;
    if (flags & TILE_PREFETCH)
        for (; k + 16 <= k1; k += 16) {
            UNROLL for (int a = 0; a < TO; a++) prefetch(wr[a] + PREFETCH_ROWS * rb + (size_t)k * dtype_size(T), flags);
            TILE_STEP(k);
            if (VL == 8) TILE_STEP(k + 8);
        }
    for (; k + VL <= k1; k += VL) TILE_STEP(k);
    if (!(flags & TILE_LAST)) {
        TILE_SAVE(vf)
        return;
    }
    float tail[4][4];
    UNROLL for (int a = 0; a < TO; a++)
        UNROLL for (int r = 0; r < TR; r++) tail[a][r] = 0.0f;
    for (k = in / VL * VL; k < in; k++)
        UNROLL for (int a = 0; a < TO; a++) {
            float wv;
            if (T == DTYPE_BF16) wv = bf16_to_f32(((const uint16_t *)wr[a])[k]);
            else if (T == DTYPE_F16) wv = f16_to_f32(((const uint16_t *)wr[a])[k]);
            else wv = ((const float *)wr[a])[k];
            UNROLL for (int r = 0; r < TR; r++) tail[a][r] += wv * x[(int64_t)r * in + k];
        }
    UNROLL for (int a = 0; a < TO; a++)
        UNROLL for (int r = 0; r < TR; r++) y[r * ldy + a] = vf_hsum(acc[a][r]) + tail[a][r];
}

#define F_CALL(T, TO_, TR_) tile_f(T, TO_, TR_, w, o, in, x->x + (int64_t)r0 * in, k0, k1, flags, save, y, ldy)
#define F_CALL_F32(TO_, TR_) F_CALL(DTYPE_F32, TO_, TR_)
#define F_CALL_F16(TO_, TR_) F_CALL(DTYPE_F16, TO_, TR_)
#define F_CALL_BF16(TO_, TR_) F_CALL(DTYPE_BF16, TO_, TR_)
TILE_TYPE(F32, F_CALL_F32)
TILE_TYPE(F16, F_CALL_F16)
TILE_TYPE(BF16, F_CALL_BF16)

#ifndef PT_PREFETCH
#define PT_PREFETCH 32 /* columns ahead (2 KB of an f32 panel) */
#endif
#ifndef PT_PREFETCH_FROM
#define PT_PREFETCH_FROM 2
#endif

/* y[r * ldy + j] for r < R, j < cols (cols <= C * TENSOR_PANEL): float panels starting at wp. */
ALWAYS_INLINE void ptile(dtype T, int R, int C, const char *wp, size_t panel_bytes, int in, const float *x, float *y,
                         int64_t ldy, int cols, const char *ahead, size_t ahead_step) {
    vf acc[PT_ROWS][PT_ACC];
    pt_zero(R, C, acc);
    size_t esz = T == DTYPE_F32 ? 4 : 2, dist = PT_PREFETCH * TENSOR_PANEL * esz;
    for (int k = 0; k < in; k++) {
        /* a tile of several rows reads few panels (streams) and does much work per byte: ask for
         * the lines PT_PREFETCH columns ahead, or the hardware prefetcher alone leaves it
         * waiting on memory (measured: 8 rows of the dense 1 GB model streamed 16.5 GB/s, one
         * row over 8 panels 25.5 GB/s) */
        if (ahead) pt_prefetch_ahead(ahead, ahead_step, k);
        else if (R > PT_PREFETCH_FROM)
            UNROLL8 for (int c = 0; c < C; c++) _mm_prefetch(wp + c * panel_bytes + (size_t)k * TENSOR_PANEL * esz + dist, _MM_HINT_T0);
#define F_WEIGHTS(j) loadv(T, wp + (j) / PNV * panel_bytes, k * TENSOR_PANEL + (j) % PNV * VL)
        PT_COLUMN(R, C, x + k, in, acc, F_WEIGHTS);
#undef F_WEIGHTS
    }
    pt_store(R, C, acc, y, ldy, cols);
}

PT_TYPE(DTYPE_F32, ptile_F32, ptile)
PT_TYPE(DTYPE_F16, ptile_F16, ptile)
PT_TYPE(DTYPE_BF16, ptile_BF16, ptile)
#endif
