/*
 * backend_cpu.c — the fast CPU backend.
 *
 * Matmul: the weights the cpu backend loads are held in panel layout (tensor.h, laid out or
 * quantized into it at load, or mapped as they are from a pre-quantized "panel16" file): a tile of up to 8 input rows × 32 outputs (6 × 16 with AVX2 only)
 * walks the panels' columns, broadcasting one input value and multiply-adding a vector of 16
 * weights per step (Q8/Q4: 16 codes converted and multiplied by their scales first, the exact
 * dequantized values), so each output is one fused multiply-add chain in element order: no
 * horizontal sums, the weights read once per tile of rows, and the same bits at any batch size
 * (decode, tree verification and prompt prefill alike; a 680-token prefill of the dense
 * benchmark model took 1.1 s against 4.0 s through OpenBLAS sgemm on the 2-core machine).
 * Weights in row layout (a tied lm_head, which the token lookup shares; block-quantized
 * matrices built outside the loader) use tiles of 4 weight rows × 4 input rows with a fixed
 * reduction order up to BACKEND_INVARIANT_ROWS rows (int16 activations and integer dot
 * products, VNNI where present, for Q8/Q4); beyond, each panel of 16 weight rows is converted to
 * f32 once and run through the panel kernel (matmul_deq; OpenBLAS sgemm, used before, was slower
 * on the machines measured). W8A8 / W4A8 weights (DTYPE_Q8A8 / Q4A8) multiply int8 activations by integer
 * dot products (qatile; VNNI where present), again one fixed chain per value. Output rows are
 * split over the thread pool. Attention walks the visible slots in slot order, scoring 8 slots at a time.
 * Everything else is row-wise.
 */
#include <math.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MOGE_AVX2 1
#endif

#include "runtime/backend.h"
#include "runtime/quant_act.h"
#include "runtime/threadpool.h"


/* ------------------------------------------------------------------------------------------ */
/* matmul tiles with a fixed reduction order                                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * A tile is TO output rows (weight rows) times TR input rows (1 <= TR <= 4): one pass over the TO
 * weight rows, each weight vector loaded (and converted) once and multiplied into all TR input
 * rows, so a batch of up to 4 rows reads the weights once and larger batches read them again
 * from cache only. Every output value (o, r) has its own vector accumulator and a sequence of
 * operations that depends on neither the tile shape, nor the span split, nor the other rows, so
 * it is the same bits whatever the batch is (the batch-invariance contract of backend.h):
 *
 * F32 / F16 / BF16 weights, f32 activations: acc = fma(w[k..k+VL], x[r][k..k+VL], acc) for
 * k = 0, VL, 2 VL, ... in order (VL = 16 with AVX-512, else 8), then y = hsum(acc) + Σ (scalar
 * tail, in order).
 *
 * Q8 / Q4 weights: the activations are first quantized row by row (quant_act_row: int16, one
 * scale per block of 32; row-local, so still invariant); then per block b, in order, the exact
 * integer dot product S = Σ q_w · q_x in 8 int32 lanes (vpdpwssd, or pmaddwd + add), and
 * acc = fma((float)S, d_w * d_x, acc); y = hsum(acc). Per 32 weights and row that is 2 integer
 * multiply-adds, a conversion, a multiply and an fma — about a third of dequantizing the weights
 * to f32 — so the int8 kernel stays memory-bound on few cores. The activation rounding
 * (within 1.5e-5 of each block's largest value) is far below the weights' own.
 */
typedef struct {
    const float *x;   /* f32 rows (float weights) */
    const int16_t *q; /* int16 rows, stride nb * QBLOCK (quantized weights) */
    const float *d;   /* their scales, stride nb */
    act8_rows a8;     /* int8 rows (W8A8 / W4A8 weights) */
} acts;

/* The activations matmul_range needs for weights w: x itself, or x quantized into scratch
 * (quant_act_floats(n, in) floats). */
static acts prepare_acts(const tensor *w, const float *x, int n, float *scratch) {
    acts a = {.x = x};
    if (dtype_act8(w->type)) qa_act8_rows(x, n, w->shape[1], scratch, &a.a8);
    else if (dtype_is_quant(w->type) && !w->panel) qa_act_rows(x, n, w->shape[1], scratch, &a.q, &a.d);
    return a;
}

/* W8A8 / W4A8 (DTYPE_Q8A8 / DTYPE_Q4A8) in either layout, one value at a time: the kernels' twin
 * (quant.h act8_dot). */
static void matmul_act8_scalar(float *y, const act8_rows *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int64_t out = w->shape[0];
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r++) y[(int64_t)r * out + o] = act8_dot(w, o, x, r) + (bias ? bias[o] : 0.0f);
}

#ifdef MOGE_AVX2
/* 4 output rows need 16 accumulators: with AVX-512VL there are 32 vector registers, else 16. */
#ifdef __AVX512VL__
#define TILE_O 4
#else
#define TILE_O 2
#endif

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Weight rows are prefetched this many rows ahead (one 4-row tile): with the hardware
 * prefetcher alone a core streams the quantized weights at about 2/3 of the rate it streams f32
 * (measured), since it spends more time per byte. */
#define PREFETCH_ROWS 4

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* The loops over a tile's rows have constant trip counts after inlining; unrolling them keeps
 * the accumulators in registers (-O2 would not). */
#define UNROLL _Pragma("GCC unroll 4")
#define UNROLL8 _Pragma("GCC unroll 8")

/* 8 weights of a float-typed row starting at element k, as f32 (unused where AVX-512 has loadv). */
__attribute__((unused)) ALWAYS_INLINE __m256 load8(dtype T, const char *row, int k) {
    switch (T) {
    case DTYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k))), 16));
    case DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    default:
        return _mm256_loadu_ps((const float *)row + k);
    }
}

/* Float tiles use 512-bit vectors where AVX-512 is available (about a quarter more multiply-adds
 * per cycle than 256-bit on the machines measured), else 256-bit. Either way a value's sequence
 * is fixed by the build, never by the batch. */
#ifdef __AVX512F__
typedef __m512 vf;
#define VL 16
#define vf_zero() _mm512_setzero_ps()
#define vf_loadu(p) _mm512_loadu_ps(p)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
static inline float vf_hsum(__m512 v) {
    return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
/* VL weights of a float-typed row starting at element k, as f32. */
ALWAYS_INLINE __m512 loadv(dtype T, const char *row, int k) {
    switch (T) {
    case DTYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k))), 16));
    case DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k)));
    default:
        return _mm512_loadu_ps((const float *)row + k);
    }
}
#else
typedef __m256 vf;
#define VL 8
#define vf_zero() _mm256_setzero_ps()
#define vf_loadu(p) _mm256_loadu_ps(p)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_hsum(v) hsum(v)
#define loadv load8
#endif

/* A tile may run over a span of its dot products only (steps k0..k1 of 8 values for float
 * weights, blocks k0..k1 for quantized ones), keeping its accumulators in `save` between spans:
 * TILE_FIRST starts them at zero, else they are loaded; TILE_LAST finishes (tail, horizontal sum,
 * store to y), else they are saved; TILE_PREFETCH prefetches the weights of the next tile (into
 * L2 with TILE_PREFETCH_L2).
 * Splitting the dot products into spans changes no operation of any output value. */
enum { TILE_FIRST = 1, TILE_LAST = 2, TILE_PREFETCH = 4, TILE_PREFETCH_L2 = 8 };

/* Prefetch into L1 when the tile's rows are all the batch (the weights are used at once), into
 * L2 when the batch walks the tile in spans (L1 holds the current span; measured faster). */
ALWAYS_INLINE void prefetch(const char *p, int flags) {
    if (flags & TILE_PREFETCH_L2) _mm_prefetch(p, _MM_HINT_T1);
    else _mm_prefetch(p, _MM_HINT_T0);
}

#define TILE_BEGIN(V, ZERO)                                                                   \
    V acc[4][4];                                                                              \
    UNROLL for (int a = 0; a < TO; a++)                                                       \
        UNROLL for (int r = 0; r < TR; r++)                                                   \
            acc[a][r] = (flags & TILE_FIRST) ? ZERO : ((V *)save)[a * 4 + r];
#define TILE_SAVE(V)                                                                          \
    UNROLL for (int a = 0; a < TO; a++)                                                       \
        UNROLL for (int r = 0; r < TR; r++) ((V *)save)[a * 4 + r] = acc[a][r];

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

/* s + the pairwise products of a and b (16 int16 each), summed into 8 int32 lanes; exact. */
ALWAYS_INLINE __m256i dot_i16(__m256i s, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(s, a, b);
#elif defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(s, a, b);
#else
    return _mm256_add_epi32(s, _mm256_madd_epi16(a, b));
#endif
}

/* The 32 values of block b of a Q8 / Q4 row as two vectors of 16 int16. */
ALWAYS_INLINE void load_block(dtype T, const char *row, int b, __m256i *w0, __m256i *w1, float *d) {
    if (T == DTYPE_Q8) {
        const block_q8 *blk = (const block_q8 *)row + b;
        *w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk->q));
        *w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk->q + 16)));
        *d = blk->d;
    } else {
        const block_q4 *blk = (const block_q4 *)row + b;
        __m128i v = _mm_loadu_si128((const __m128i *)blk->q), m = _mm_set1_epi8(15);
        __m256i eight = _mm256_set1_epi16(8);
        *w0 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(v, m)), eight);
        *w1 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m)), eight);
        *d = blk->d;
    }
}

/* y[r * ldy + a] = W[o + a] · x[r] for a < TO, r < TR (blocks k0..k1 of this span);
 * block-quantized weights, int16 activations xq (stride nb * QBLOCK) with scales xd (stride nb). */
ALWAYS_INLINE void tile_q(dtype T, int TO, int TR, const tensor *w, int64_t o, int nb, const int16_t *xq, const float *xd, int k0,
                          int k1, int flags, void *save, float *y, int64_t ldy) {
    size_t rb = dtype_row_bytes(T, w->shape[1]), bs = T == DTYPE_Q8 ? sizeof(block_q8) : sizeof(block_q4);
    const char *wr[4];
    UNROLL for (int a = 0; a < TO; a++) wr[a] = (const char *)w->data + (size_t)(o + a) * rb;
    TILE_BEGIN(__m256, _mm256_setzero_ps())
    for (int b = k0; b < k1; b++) {
        __m256i x0[4], x1[4];
        float dx[4];
        UNROLL for (int r = 0; r < TR; r++) {
            const int16_t *xr = xq + ((int64_t)r * nb + b) * QBLOCK;
            x0[r] = _mm256_loadu_si256((const __m256i *)xr);
            x1[r] = _mm256_loadu_si256((const __m256i *)(xr + 16));
            dx[r] = xd[(int64_t)r * nb + b];
        }
        UNROLL for (int a = 0; a < TO; a++) {
            __m256i w0, w1;
            float dw;
            if (flags & TILE_PREFETCH) prefetch(wr[a] + PREFETCH_ROWS * rb + (size_t)b * bs, flags);
            load_block(T, wr[a], b, &w0, &w1, &dw);
            UNROLL for (int r = 0; r < TR; r++) {
                __m256i s = dot_i16(dot_i16(_mm256_setzero_si256(), w0, x0[r]), w1, x1[r]);
                acc[a][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * dx[r]), acc[a][r]);
            }
        }
    }
    if (!(flags & TILE_LAST)) {
        TILE_SAVE(__m256)
        return;
    }
    UNROLL for (int a = 0; a < TO; a++)
        UNROLL for (int r = 0; r < TR; r++) y[r * ldy + a] = hsum(acc[a][r]);
}

#define TILE_CASES(CALL, TO)                                                 \
    switch (tr) {                                                            \
    case 1: CALL(TO, 1); break;                                              \
    case 2: CALL(TO, 2); break;                                              \
    case 3: CALL(TO, 3); break;                                              \
    default: CALL(TO, 4); break;                                             \
    }
typedef void tile_fn(int to, int tr, const tensor *w, int64_t o, int in, const acts *x, int r0, int k0, int k1, int flags,
                     void *save, float *y, int64_t ldy);
#define TILE_TYPE(T, CALL)                                                                                       \
    static void tile_##T(int to, int tr, const tensor *w, int64_t o, int in, const acts *x, int r0, int k0, int k1, int flags, \
                         void *save, float *y, int64_t ldy) {                                                    \
        int nb = (in + QBLOCK - 1) / QBLOCK;                                                                     \
        (void)nb;                                                                                                \
        if (to == TILE_O) { TILE_CASES(CALL, TILE_O) } else { TILE_CASES(CALL, 1) }                              \
    }
#define F_CALL(T, TO_, TR_) tile_f(T, TO_, TR_, w, o, in, x->x + (int64_t)r0 * in, k0, k1, flags, save, y, ldy)
#define Q_CALL(T, TO_, TR_) \
    tile_q(T, TO_, TR_, w, o, nb, x->q + (int64_t)r0 * nb * QBLOCK, x->d + (int64_t)r0 * nb, k0, k1, flags, save, y, ldy)
#define F_CALL_F32(TO_, TR_) F_CALL(DTYPE_F32, TO_, TR_)
#define F_CALL_F16(TO_, TR_) F_CALL(DTYPE_F16, TO_, TR_)
#define F_CALL_BF16(TO_, TR_) F_CALL(DTYPE_BF16, TO_, TR_)
#define Q_CALL_Q8(TO_, TR_) Q_CALL(DTYPE_Q8, TO_, TR_)
#define Q_CALL_Q4(TO_, TR_) Q_CALL(DTYPE_Q4, TO_, TR_)
TILE_TYPE(F32, F_CALL_F32)
TILE_TYPE(F16, F_CALL_F16)
TILE_TYPE(BF16, F_CALL_BF16)
TILE_TYPE(Q8, Q_CALL_Q8)
TILE_TYPE(Q4, Q_CALL_Q4)

/* Panel-layout float weights (tensor.h): a tile is PT_ROWS input rows × PT_PANELS panels of
 * TENSOR_PANEL outputs. Per column k of the panels it loads the panels' weights as vectors,
 * broadcasts x[r][k] and multiply-adds, so output (r, o) is acc = fma(x[r][k], W[o][k], acc) for
 * k = 0, 1, ..., in - 1 from acc = 0: one fixed fused multiply-add chain per value, whatever the
 * tile, the vector width or the batch (a scalar fmaf loop gives the same bits), and no
 * horizontal sums. */
#define PNV (TENSOR_PANEL / VL) /* vectors per panel column */
#ifndef PT_PREFETCH
#define PT_PREFETCH 32 /* columns ahead (2 KB of an f32 panel) */
#endif
#ifndef PT_PREFETCH_FROM
#define PT_PREFETCH_FROM 2
#endif
#define PANEL_TILE PT_PANELS
#ifdef __AVX512F__
#define PT_ROWS 8
#define PT_PANELS 2
#else
#define PT_ROWS 6
#define PT_PANELS 1
#endif

ALWAYS_INLINE vf vf_mul(vf a, vf b) {
#ifdef __AVX512F__
    return _mm512_mul_ps(a, b);
#else
    return _mm256_mul_ps(a, b);
#endif
}
ALWAYS_INLINE vf vf_set1(float v) {
#ifdef __AVX512F__
    return _mm512_set1_ps(v);
#else
    return _mm256_set1_ps(v);
#endif
}
ALWAYS_INLINE void vf_storeu(float *p, vf v) {
#ifdef __AVX512F__
    _mm512_storeu_ps(p, v);
#else
    _mm256_storeu_ps(p, v);
#endif
}

/* Wider tiles for one or two rows, so that a tile still has 8 independent accumulator chains
 * (an fma waits 4 cycles for its accumulator; two can start per cycle): PT_C1 panels for one
 * row, PT_C2 for two, PT_PANELS for more. */
#define PT_C1 (4 * PT_PANELS)
#define PT_C2 (2 * PT_PANELS)
#define PT_ACC (PT_C1 * PNV) /* accumulators per row, at most */

/* The parts every panel tile shares: R × C·PNV accumulators (registers once inlined), one column
 * step (x[r * in] of each row times the column's weight vectors wv, added into the chains), and
 * the store of the finished values (cols of the C * TENSOR_PANEL; a partial panel through tmp). */
ALWAYS_INLINE void pt_zero(int R, int C, vf acc[PT_ROWS][PT_ACC]) {
    UNROLL8 for (int r = 0; r < R; r++)
        UNROLL8 for (int j = 0; j < C * PNV; j++) acc[r][j] = vf_zero();
}

ALWAYS_INLINE void pt_fma_rows(int R, int C, const float *x, int in, const vf *wv, vf acc[PT_ROWS][PT_ACC]) {
    UNROLL8 for (int r = 0; r < R; r++) {
        vf xb = vf_set1(x[(int64_t)r * in]);
        UNROLL8 for (int j = 0; j < C * PNV; j++) acc[r][j] = vf_fma(xb, wv[j], acc[r][j]);
    }
}

ALWAYS_INLINE void pt_store(int R, int C, vf acc[PT_ROWS][PT_ACC], float *y, int64_t ldy, int cols) {
    if (cols == C * TENSOR_PANEL) {
        UNROLL8 for (int r = 0; r < R; r++)
            UNROLL8 for (int j = 0; j < C * PNV; j++) vf_storeu(y + r * ldy + j * VL, acc[r][j]);
        return;
    }
    float tmp[PT_C1 * TENSOR_PANEL];
    UNROLL8 for (int r = 0; r < R; r++) {
        UNROLL8 for (int j = 0; j < C * PNV; j++) vf_storeu(tmp + j * VL, acc[r][j]);
        memcpy(y + r * ldy, tmp, (size_t)cols * sizeof(float));
    }
}

/* The codes of column k of a Q8 / Q4 panel block for rows v * VL .. v * VL + VL - 1, as f32. */
ALWAYS_INLINE vf qcodes(dtype T, const char *blk, int k, int v) {
#ifdef __AVX512F__
    (void)v;
    if (T == DTYPE_Q8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const pblock_q8 *)blk)->q[k])));
    __m128i by = _mm_loadu_si128((const __m128i *)((const pblock_q4 *)blk)->q[k / 2]);
    __m128i codes = _mm_and_si128(k % 2 ? _mm_srli_epi16(by, 4) : by, _mm_set1_epi8(15));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(codes), _mm512_set1_epi32(8)));
#else
    if (T == DTYPE_Q8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(((const pblock_q8 *)blk)->q[k] + 8 * v))));
    __m128i by = _mm_loadl_epi64((const __m128i *)(((const pblock_q4 *)blk)->q[k / 2] + 8 * v));
    __m128i codes = _mm_and_si128(k % 2 ? _mm_srli_epi16(by, 4) : by, _mm_set1_epi8(15));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(codes), _mm256_set1_epi32(8)));
#endif
}

/* Q8 / Q4 panels: per column k each weight is (float)code * scale (one rounding: the value
 * tensor_get gives), then the same fma chain as float panels. */
ALWAYS_INLINE void qptile(dtype T, int R, int C, const char *wp, size_t panel_bytes, int in, const float *x, float *y,
                          int64_t ldy, int cols) {
    vf acc[PT_ROWS][PT_ACC];
    pt_zero(R, C, acc);
    size_t bs = T == DTYPE_Q8 ? sizeof(pblock_q8) : sizeof(pblock_q4);
    int nb = (in + QBLOCK - 1) / QBLOCK;
    for (int b = 0; b < nb; b++) {
        vf ds[PT_ACC];
        UNROLL8 for (int c = 0; c < C; c++)
            UNROLL8 for (int v = 0; v < PNV; v++) ds[c * PNV + v] = vf_loadu(((const pblock_q8 *)(wp + c * panel_bytes + (size_t)b * bs))->d + v * VL);
        int kmax = in - b * QBLOCK < QBLOCK ? in - b * QBLOCK : QBLOCK;
        const float *xk = x + (int64_t)b * QBLOCK;
        for (int k = 0; k < kmax; k++) {
            vf wv[PT_ACC];
            UNROLL8 for (int c = 0; c < C; c++)
                UNROLL8 for (int v = 0; v < PNV; v++)
                    wv[c * PNV + v] = vf_mul(qcodes(T, wp + c * panel_bytes + (size_t)b * bs, k, v), ds[c * PNV + v]);
            pt_fma_rows(R, C, xk + k, in, wv, acc);
        }
    }
    pt_store(R, C, acc, y, ldy, cols);
}

/* y[r * ldy + j] for r < R, j < cols (cols <= C * TENSOR_PANEL): panels starting at wp. */
ALWAYS_INLINE void ptile(dtype T, int R, int C, const char *wp, size_t panel_bytes, int in, const float *x, float *y,
                         int64_t ldy, int cols) {
    if (T == DTYPE_Q8 || T == DTYPE_Q4) {
        qptile(T, R, C, wp, panel_bytes, in, x, y, ldy, cols);
        return;
    }
    vf acc[PT_ROWS][PT_ACC];
    pt_zero(R, C, acc);
    size_t esz = T == DTYPE_F32 ? 4 : 2, ahead = PT_PREFETCH * TENSOR_PANEL * esz;
    for (int k = 0; k < in; k++) {
        vf wv[PT_ACC];
        /* a tile of several rows reads few panels (streams) and does much work per byte: ask for
         * the lines PT_PREFETCH columns ahead, or the hardware prefetcher alone leaves it
         * waiting on memory (measured: 8 rows of the dense 1 GB model streamed 16.5 GB/s, one
         * row over 8 panels 25.5 GB/s) */
        if (R > PT_PREFETCH_FROM)
            UNROLL8 for (int c = 0; c < C; c++) _mm_prefetch(wp + c * panel_bytes + (size_t)k * TENSOR_PANEL * esz + ahead, _MM_HINT_T0);
        UNROLL8 for (int c = 0; c < C; c++)
            UNROLL8 for (int v = 0; v < PNV; v++) wv[c * PNV + v] = loadv(T, wp + c * panel_bytes, k * TENSOR_PANEL + v * VL);
        pt_fma_rows(R, C, x + k, in, wv, acc);
    }
    pt_store(R, C, acc, y, ldy, cols);
}

#define PT_CALL(T, R_, C_) ptile(T, R_, C_, wp, pb, in, x, y, ldy, cols)
#define PT_ROWS_CASES(T, C)                                                                                     \
    switch (R) {                                                                                                \
    case 1: PT_CALL(T, 1, C); break;                                                                            \
    case 2: PT_CALL(T, 2, C); break;                                                                            \
    case 3: PT_CALL(T, 3, C); break;                                                                            \
    case 4: PT_CALL(T, 4, C); break;                                                                            \
    case 5: PT_CALL(T, 5, C); break;                                                                            \
    case 6: PT_CALL(T, 6, C); break;                                                                            \
    PT_CASES_WIDE(T, C)                                                                                         \
    }
#if PT_ROWS == 8
#define PT_CASES_WIDE(T, C)                                                                                     \
    case 7: PT_CALL(T, 7, C); break;                                                                            \
    default: PT_CALL(T, 8, C); break;
#else
#define PT_CASES_WIDE(T, C) default: break;
#endif
/* (R, C) as matmul_panels chooses them: C == PT_C1 only with R == 1, PT_C2 with R <= 2. */
#define PT_TYPE(T, NAME)                                                                                        \
    static void NAME(int R, int C, const char *wp, size_t pb, int in, const float *x, float *y, int64_t ldy, int cols) { \
        if (C == PT_C1) PT_CALL(T, 1, PT_C1);                                                                   \
        else if (C == PT_C2 && R == 1) PT_CALL(T, 1, PT_C2);                                                    \
        else if (C == PT_C2) PT_CALL(T, 2, PT_C2);                                                              \
        else if (C == PT_PANELS) { PT_ROWS_CASES(T, PT_PANELS) }                                                \
        else { PT_ROWS_CASES(T, 1) }                                                                            \
    }
PT_TYPE(DTYPE_F32, ptile_F32)
PT_TYPE(DTYPE_F16, ptile_F16)
PT_TYPE(DTYPE_BF16, ptile_BF16)
PT_TYPE(DTYPE_Q8, ptile_Q8)
PT_TYPE(DTYPE_Q4, ptile_Q4)

/* y[r * out + o + a] += bias[o + a] for r < n, a < cols (after the chains: the same rounding for
 * every kernel); nothing without a bias. */
static void add_bias(float *y, int n, int64_t out, const float *bias, int o, int cols) {
    if (!bias) return;
    for (int r = 0; r < n; r++)
        for (int a = 0; a < cols; a++) y[(int64_t)r * out + o + a] += bias[o + a];
}

/* The panels of the next tile from output o of [o, o1): `widest` (one of `chain`, a kernel's tile
 * widths from the widest down to 1), or the next narrower one the panels left still fill; *cols
 * gets the outputs the tile covers. */
static int next_panels(int o, int o1, int widest, const int *chain, int *cols) {
    int left = (o1 - o + TENSOR_PANEL - 1) / TENSOR_PANEL, i = 0;
    while (chain[i] != widest) i++;
    while (chain[i] > left && chain[i] > 1) i++;
    *cols = o1 - o < chain[i] * TENSOR_PANEL ? o1 - o : chain[i] * TENSOR_PANEL;
    return chain[i];
}

/* y (n, out) columns [o0, o1) (o0 a multiple of TENSOR_PANEL) for panel-layout weights. */
static void matmul_panels(float *y, const float *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    size_t pb = tensor_panel_bytes(w->type, TENSOR_PANEL, in); /* one panel */
    void (*fn)(int, int, const char *, size_t, int, const float *, float *, int64_t, int) =
        w->type == DTYPE_F16 ? ptile_F16 : w->type == DTYPE_BF16 ? ptile_BF16 : w->type == DTYPE_Q8 ? ptile_Q8 :
        w->type == DTYPE_Q4 ? ptile_Q4 : ptile_F32;
    static const int chain[] = {PT_C1, PT_C2, PT_PANELS, 1};
    int widest = n == 1 ? PT_C1 : n == 2 ? PT_C2 : PT_PANELS;
    for (int o = o0, cols; o < o1; o += cols) {
        int c = next_panels(o, o1, widest, chain, &cols);
        const char *wp = (const char *)w->data + (size_t)(o / TENSOR_PANEL) * pb;
        for (int r = 0; r < n; r += PT_ROWS)
            fn(n - r < PT_ROWS ? n - r : PT_ROWS, c, wp, pb, in, x + (int64_t)r * in, y + (int64_t)r * out + o, out, cols);
        add_bias(y, n, out, bias, o, cols);
    }
}

/* W8A8 / W4A8 panels (DTYPE_Q8A8 / DTYPE_Q4A8, pblock_q8a8 / pblock_q4a8): integer dot products
 * of int8 activations with the weights' codes, 4 columns per 32-bit lane. Per block b and output
 * (r, o): S = Σ_j code_w · code_x (exact in int32), then acc = fma((float)S, d_w · d_x, acc) —
 * the chain of quant.h act8_dot, so the same bits at any batch size. The weights go in as the
 * unsigned stored codes (code + 128 for Q8A8, code + 8 for Q4A8, nibbles unpacked with a shift
 * and a mask) times the signed activations — vpdpbusd with VNNI; pmaddubsw + pmaddwd on plain
 * AVX2, which cannot overflow with 4-bit codes (|pair| <= 2 · 15 · 127) — and the offset times
 * Σ code_x is taken off at the end of the block. Q8A8 without VNNI would overflow pmaddubsw, so
 * there the codes are made signed again and multiplied by |x| with x's sign moved onto them (no
 * offset). Per 4 columns, 16 outputs and a row that is 1 instruction (VNNI, 512-bit) or 3-4 per
 * 8 outputs (AVX2), where the f32-activation kernels need a conversion and multiply-add per
 * column. */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define QA_VL 16
#define QA_ROWS 6
#define QA_PANELS 2
#define QA_VNNI 1
typedef __m512i qa_vi;
typedef __m512 qa_vf;
#define qa_zero() _mm512_setzero_si512()
#define qa_load(p) _mm512_loadu_si512((const void *)(p))
#define qa_set1(v) _mm512_set1_epi32(v)
#define qa_set1_8(v) _mm512_set1_epi8(v)
#define qa_and(a, b) _mm512_and_si512(a, b)
#define qa_srli16(a, k) _mm512_srli_epi16(a, k)
#define qa_dot_us(s, w, x) _mm512_dpbusd_epi32(s, w, x)
#define qa_sub(a, b) _mm512_sub_epi32(a, b)
#define qa_cvt(a) _mm512_cvtepi32_ps(a)
#define qa_fzero() _mm512_setzero_ps()
#define qa_floadu(p) _mm512_loadu_ps(p)
#define qa_fset1(v) _mm512_set1_ps(v)
#define qa_fmul(a, b) _mm512_mul_ps(a, b)
#define qa_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define qa_fstoreu(p, v) _mm512_storeu_ps(p, v)
#else
#define QA_VL 8
#define QA_ROWS 2
#define QA_PANELS 1
typedef __m256i qa_vi;
typedef __m256 qa_vf;
#define qa_zero() _mm256_setzero_si256()
#define qa_load(p) _mm256_loadu_si256((const __m256i *)(p))
#define qa_set1(v) _mm256_set1_epi32(v)
#define qa_set1_8(v) _mm256_set1_epi8(v)
#define qa_and(a, b) _mm256_and_si256(a, b)
#define qa_srli16(a, k) _mm256_srli_epi16(a, k)
#ifdef __AVXVNNI__
#define QA_VNNI 1
#define qa_dot_us(s, w, x) _mm256_dpbusd_avx_epi32(s, w, x)
#else
#define QA_VNNI 0
/* s + the sums of 4 products of unsigned w and signed x bytes; exact while no pair of products
 * leaves int16 (4-bit w, or signed w with |x| as the unsigned side). */
ALWAYS_INLINE __m256i qa_dot_us(__m256i s, __m256i w, __m256i x) {
    return _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}
#endif
#define qa_sub(a, b) _mm256_sub_epi32(a, b)
#define qa_cvt(a) _mm256_cvtepi32_ps(a)
#define qa_fzero() _mm256_setzero_ps()
#define qa_floadu(p) _mm256_loadu_ps(p)
#define qa_fset1(v) _mm256_set1_ps(v)
#define qa_fmul(a, b) _mm256_mul_ps(a, b)
#define qa_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define qa_fstoreu(p, v) _mm256_storeu_ps(p, v)
#endif
#define QA_PNV (TENSOR_PANEL / QA_VL)  /* vectors per panel */
#define QA_C1 (2 * QA_PANELS)         /* panels of a one-row tile */
#define QA_ACC (QA_C1 * QA_PNV)       /* accumulators per row, at most */

/* The stored-code offset the dot products leave in S (times Σ code_x): see above. */
#define QA_OFFSET(T) ((T) == DTYPE_Q4A8 ? 8 : QA_VNNI ? 128 : 0)

/* Weights of columns 4 g .. 4 g + 3 of a panel block, rows v · QA_VL .., as qa_dot takes them. */
ALWAYS_INLINE qa_vi qa_weights(dtype T, const char *blk, int g, int v) {
    if (T == DTYPE_Q4A8) {
        qa_vi raw = qa_load(((const pblock_q4a8 *)blk)->q[g % 4][v * QA_VL]);
        return qa_and(g < 4 ? raw : qa_srli16(raw, 4), qa_set1_8(15));
    }
    qa_vi raw = qa_load(((const pblock_q8a8 *)blk)->q[g][v * QA_VL]);
#if QA_VNNI
    return raw;
#else
    return _mm256_xor_si256(raw, _mm256_set1_epi8((char)0x80)); /* signed codes again */
#endif
}

/* s + the dot products of 4 weight codes and x's 4 codes (broadcast in every lane). */
ALWAYS_INLINE qa_vi qa_dot(dtype T, qa_vi s, qa_vi w, qa_vi x) {
#if !QA_VNNI
    if (T == DTYPE_Q8A8) return qa_dot_us(s, _mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
#endif
    (void)T;
    return qa_dot_us(s, w, x);
}

/* y[r * ldy + j] for r < R, j < cols (cols <= C * TENSOR_PANEL): activation rows r0 .. r0 + R - 1
 * of x times the panels starting at wp. */
ALWAYS_INLINE void qatile(dtype T, int R, int C, const char *wp, size_t panel_bytes, const act8_rows *x, int64_t r0, float *y,
                          int64_t ldy, int cols) {
    int64_t nb = x->nb;
    size_t bs = T == DTYPE_Q4A8 ? sizeof(pblock_q4a8) : sizeof(pblock_q8a8);
    qa_vf acc[QA_ROWS][QA_ACC];
    UNROLL8 for (int r = 0; r < R; r++)
        UNROLL8 for (int j = 0; j < C * QA_PNV; j++) acc[r][j] = qa_fzero();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk[QA_C1];
        UNROLL8 for (int c = 0; c < C; c++) blk[c] = wp + c * panel_bytes + (size_t)b * bs;
        const int8_t *xq = x->q + (r0 * nb + b) * QBLOCK;
        qa_vi S[QA_ROWS][QA_ACC];
        UNROLL8 for (int r = 0; r < R; r++)
            UNROLL8 for (int j = 0; j < C * QA_PNV; j++) S[r][j] = qa_zero();
        UNROLL8 for (int g = 0; g < QBLOCK / 4; g++) {
            qa_vi wv[QA_ACC];
            UNROLL8 for (int c = 0; c < C; c++)
                UNROLL8 for (int v = 0; v < QA_PNV; v++) wv[c * QA_PNV + v] = qa_weights(T, blk[c], g, v);
            UNROLL8 for (int r = 0; r < R; r++) {
                int32_t xi;
                memcpy(&xi, xq + r * nb * QBLOCK + 4 * g, sizeof xi);
                qa_vi xb = qa_set1(xi);
                UNROLL8 for (int j = 0; j < C * QA_PNV; j++) S[r][j] = qa_dot(T, S[r][j], wv[j], xb);
            }
        }
        UNROLL8 for (int r = 0; r < R; r++) {
            qa_vf dx = qa_fset1(x->d[(r0 + r) * nb + b]);
            qa_vi corr = qa_set1(QA_OFFSET(T) * x->s[(r0 + r) * nb + b]);
            UNROLL8 for (int c = 0; c < C; c++)
                UNROLL8 for (int v = 0; v < QA_PNV; v++) {
                    qa_vi s = S[r][c * QA_PNV + v];
                    if (QA_OFFSET(T)) s = qa_sub(s, corr);
                    qa_vf scale = qa_fmul(qa_floadu(((const float *)blk[c]) + v * QA_VL), dx);
                    acc[r][c * QA_PNV + v] = qa_fma(qa_cvt(s), scale, acc[r][c * QA_PNV + v]);
                }
        }
    }
    float tmp[QA_C1 * TENSOR_PANEL];
    UNROLL8 for (int r = 0; r < R; r++) {
        float *dst = cols == C * TENSOR_PANEL ? y + r * ldy : tmp;
        UNROLL8 for (int j = 0; j < C * QA_PNV; j++) qa_fstoreu(dst + j * QA_VL, acc[r][j]);
        if (dst == tmp) memcpy(y + r * ldy, tmp, (size_t)cols * sizeof(float));
    }
}

#define QA_CALL(R_, C_) qatile(T, R_, C_, wp, pb, x, r0, y, ldy, cols)
#if QA_ROWS > 2
#define QA_CASES_MORE(C_)                                                                                       \
    case 3: QA_CALL(3, C_); break;                                                                              \
    case 4: QA_CALL(4, C_); break;                                                                              \
    case 5: QA_CALL(5, C_); break;
#else
#define QA_CASES_MORE(C_)
#endif
#define QA_ROWS_CASES(C_)                                                                                       \
    switch (R) {                                                                                                \
    case 1: QA_CALL(1, C_); break;                                                                              \
    case 2: QA_CALL(2, C_); break;                                                                              \
    QA_CASES_MORE(C_)                                                                                           \
    default: QA_CALL(QA_ROWS, C_); break;                                                                       \
    }
/* (R, C) as matmul_act8 chooses them: QA_C1 panels only with one row. */
#define QA_TYPE(T_, NAME)                                                                                       \
    static void NAME(int R, int C, const char *wp, size_t pb, const act8_rows *x, int64_t r0, float *y, int64_t ldy, int cols) { \
        const dtype T = T_;                                                                                     \
        if (C == QA_C1) QA_CALL(1, QA_C1);                                                                      \
        else if (C == QA_PANELS) { QA_ROWS_CASES(QA_PANELS) }                                                   \
        else { QA_ROWS_CASES(1) }                                                                               \
    }
QA_TYPE(DTYPE_Q8A8, qatile_Q8A8)
QA_TYPE(DTYPE_Q4A8, qatile_Q4A8)

/* y (n, out) columns [o0, o1) (o0 a multiple of TENSOR_PANEL) for W8A8 / W4A8 weights. */
static void matmul_act8(float *y, const act8_rows *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    if (!w->panel) {
        matmul_act8_scalar(y, x, n, w, bias, o0, o1);
        return;
    }
    int out = (int)w->shape[0];
    size_t pb = tensor_panel_bytes(w->type, TENSOR_PANEL, w->shape[1]);
    void (*fn)(int, int, const char *, size_t, const act8_rows *, int64_t, float *, int64_t, int) =
        w->type == DTYPE_Q4A8 ? qatile_Q4A8 : qatile_Q8A8;
    static const int chain[] = {QA_C1, QA_PANELS, 1};
    int widest = n == 1 ? QA_C1 : QA_PANELS;
    for (int o = o0, cols; o < o1; o += cols) {
        int c = next_panels(o, o1, widest, chain, &cols);
        const char *wp = (const char *)w->data + (size_t)(o / TENSOR_PANEL) * pb;
        for (int r = 0; r < n; r += QA_ROWS)
            fn(n - r < QA_ROWS ? n - r : QA_ROWS, c, wp, pb, x, r, y + (int64_t)r * out + o, out, cols);
        add_bias(y, n, out, bias, o, cols);
    }
}

/* Bytes of input rows a span covers: keeps the span's slice of all the batch's rows in L1 while
 * the tile's weight slice is reused for each group of 4 rows. */
#ifndef SPAN_BYTES
#define SPAN_BYTES (32 * 1024)
#endif

/* y (n, out) rows [o0, o1) = x · Wᵀ + bias for n <= BACKEND_INVARIANT_ROWS. Up to 4 rows: one
 * pass over each weight tile. More: each weight tile is walked in spans, every group of 4 rows
 * taking the span in turn, so the weight slice is read from memory once and from L1 after. */
static void matmul_rows(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    int quant = dtype_is_quant(w->type);
    tile_fn *fn;
    switch (w->type) {
    case DTYPE_F16: fn = tile_F16; break;
    case DTYPE_BF16: fn = tile_BF16; break;
    case DTYPE_Q8: fn = tile_Q8; break;
    case DTYPE_Q4: fn = tile_Q4; break;
    default: fn = tile_F32; break;
    }
    /* steps: blocks of 32 (quantized) or elements up to the last multiple of VL */
    int steps = quant ? (in + QBLOCK - 1) / QBLOCK : in / VL * VL;
    int unit = quant ? QBLOCK * 2 : 4; /* activation bytes per step unit and row */
    int span = n <= 4 ? steps : SPAN_BYTES / (unit * n);
    if (!quant) span = span / 32 * 32;
    if (span < (quant ? 2 : 32)) span = quant ? 2 : 32;
    if (span >= steps) span = steps;
    vf save[BACKEND_INVARIANT_ROWS / 4][16];
    for (int o = o0; o < o1;) {
        int to = o1 - o >= TILE_O ? TILE_O : 1;
        if (steps == 0) { /* in < VL: the scalar tail only */
            for (int r = 0; r < n; r += 4)
                fn(to, n - r < 4 ? n - r : 4, w, o, in, x, r, 0, 0, TILE_FIRST | TILE_LAST, save[0], y + (int64_t)r * out + o, out);
        }
        for (int k0 = 0; k0 < steps; k0 += span) {
            int k1 = steps - k0 < span ? steps : k0 + span;
            for (int r = 0; r < n; r += 4) {
                int flags = (k0 == 0 ? TILE_FIRST : 0) | (k1 == steps ? TILE_LAST : 0) | (r == 0 ? TILE_PREFETCH : 0) |
                            (n > 4 ? TILE_PREFETCH_L2 : 0);
                fn(to, n - r < 4 ? n - r : 4, w, o, in, x, r, k0, k1, flags, save[r / 4], y + (int64_t)r * out + o, out);
            }
        }
        add_bias(y, n, out, bias, o, to);
        o += to;
    }
}

/* Any number of rows: panel-layout weights directly, others BACKEND_INVARIANT_ROWS rows at a
 * time (each row's values do not depend on the others, so the blocks change nothing; the tile
 * state of matmul_rows is sized for that many rows). */
static void matmul_range(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    if (dtype_act8(w->type)) {
        matmul_act8(y, &x->a8, n, w, bias, o0, o1);
        return;
    }
    if (w->panel) {
        matmul_panels(y, x->x, n, w, bias, o0, o1);
        return;
    }
    int64_t out = w->shape[0], in = w->shape[1], nb = (in + QBLOCK - 1) / QBLOCK;
    for (int r0 = 0; r0 < n; r0 += BACKEND_INVARIANT_ROWS) {
        acts part = *x;
        if (part.x) part.x += r0 * in;
        if (part.q) part.q += r0 * nb * QBLOCK, part.d += r0 * nb;
        int rows = n - r0 < BACKEND_INVARIANT_ROWS ? n - r0 : BACKEND_INVARIANT_ROWS;
        matmul_rows(y + r0 * out, &part, rows, w, bias, o0, o1);
    }
}

/* Weights not in panel layout (quantized, or a tied lm_head) and more rows than the invariant
 * kernels take (a long prefill): each panel of TENSOR_PANEL weight rows is converted once into
 * `panel` (TENSOR_PANEL * in floats, panel layout, the values tensor_get gives) and multiplied
 * into all n rows by the float panel kernel, so the conversion is paid once per pass, not per
 * row. (This replaced OpenBLAS sgemm, which was slower here and is not batch-invariant.) */
static void matmul_deq(float *y, const float *x, int n, const tensor *w, int o0, int o1, float *panel) {
    int64_t out = w->shape[0], in = w->shape[1];
    for (int64_t o = o0; o < o1; o += TENSOR_PANEL) {
        for (int j = 0; j < TENSOR_PANEL; j++)
            for (int64_t c = 0; c < in; c++) panel[c * TENSOR_PANEL + j] = o + j < o1 ? tensor_get(w, (o + j) * in + c) : 0.0f;
        int cols = o1 - o < TENSOR_PANEL ? (int)(o1 - o) : TENSOR_PANEL;
        for (int r = 0; r < n; r += PT_ROWS)
            ptile_F32(n - r < PT_ROWS ? n - r : PT_ROWS, 1, (const char *)panel, 0, (int)in, x + (int64_t)r * in, y + (int64_t)r * out + o,
                      out, cols);
    }
}
#else
#define PANEL_TILE 1
/* Portable fallback: the same per-value orders (one accumulator per value, element or block
 * order; panel layout: the same fmaf chain as the vector kernel, so the same bits). */
static void matmul_panels(float *y, const float *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r++) {
            float acc = 0.0f;
            for (int k = 0; k < in; k++) acc = fmaf(x[(int64_t)r * in + k], tensor_get(w, (int64_t)o * in + k), acc);
            y[(int64_t)r * out + o] = acc + (bias ? bias[o] : 0.0f);
        }
}

/* Over 64 rows, any layout: the values tensor_get gives, f32 activations (as the vector build). */
static void matmul_deq(float *y, const float *x, int n, const tensor *w, int o0, int o1, float *panel) {
    (void)panel;
    matmul_panels(y, x, n, w, NULL, o0, o1);
}

static void matmul_range(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    if (dtype_act8(w->type)) {
        matmul_act8_scalar(y, &x->a8, n, w, bias, o0, o1);
        return;
    }
    if (w->panel) {
        matmul_panels(y, x->x, n, w, bias, o0, o1);
        return;
    }
    int out = (int)w->shape[0], in = (int)w->shape[1], nb = (in + QBLOCK - 1) / QBLOCK;
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r++) {
            float acc = 0.0f;
            if (dtype_is_quant(w->type)) {
                for (int b = 0; b < nb; b++) {
                    int32_t s = 0;
                    float dw = 0.0f;
                    for (int j = 0; j < QBLOCK; j++) {
                        int q;
                        if (w->type == DTYPE_Q8) {
                            const block_q8 *blk = (const block_q8 *)((const char *)w->data + (size_t)o * dtype_row_bytes(w->type, in)) + b;
                            q = blk->q[j], dw = blk->d;
                        } else {
                            const block_q4 *blk = (const block_q4 *)((const char *)w->data + (size_t)o * dtype_row_bytes(w->type, in)) + b;
                            q = (j < QBLOCK / 2 ? (blk->q[j] & 15) : (blk->q[j - QBLOCK / 2] >> 4)) - 8, dw = blk->d;
                        }
                        s += q * x->q[((int64_t)r * nb + b) * QBLOCK + j];
                    }
                    acc += (float)s * (dw * x->d[(int64_t)r * nb + b]);
                }
            } else {
                for (int i = 0; i < in; i++) acc += tensor_get(w, (int64_t)o * in + i) * x->x[(int64_t)r * in + i];
            }
            y[(int64_t)r * out + o] = acc + (bias ? bias[o] : 0.0f);
        }
}
#endif

typedef struct {
    float *y;
    const acts *x;
    const float *xf; /* matmul_deq_task: f32 rows */
    int n, n_tasks;
    const tensor *w;
    const float *bias;
    float *panels;   /* matmul_deq_task: TENSOR_PANEL * in floats per task */
} matmul_job;

static void matmul_task(void *arg, int t) {
    const matmul_job *j = arg;
    int out = (int)j->w->shape[0];
    int o0 = (int)((int64_t)out * t / j->n_tasks), o1 = (int)((int64_t)out * (t + 1) / j->n_tasks);
    if (j->w->panel) { /* whole tiles of panels */
        int unit = TENSOR_PANEL * PANEL_TILE, units = (out + unit - 1) / unit;
        o0 = (int)((int64_t)units * t / j->n_tasks) * unit;
        o1 = (int)((int64_t)units * (t + 1) / j->n_tasks) * unit;
        if (o1 > out) o1 = out;
        if (o0 >= o1) return;
    }
    matmul_range(j->y, j->x, j->n, j->w, j->bias, o0, o1);
}

static void matmul_deq_task(void *arg, int t) {
    const matmul_job *j = arg;
    int out = (int)j->w->shape[0], in = (int)j->w->shape[1], units = (out + TENSOR_PANEL - 1) / TENSOR_PANEL;
    int o0 = (int)((int64_t)units * t / j->n_tasks) * TENSOR_PANEL, o1 = (int)((int64_t)units * (t + 1) / j->n_tasks) * TENSOR_PANEL;
    if (o1 > out) o1 = out;
    if (o0 >= o1) return;
    matmul_deq(j->y, j->xf, j->n, j->w, o0, o1, j->panels + (int64_t)t * TENSOR_PANEL * in);
    if (j->bias)
        for (int r = 0; r < j->n; r++)
            for (int o = o0; o < o1; o++) j->y[(int64_t)r * out + o] += j->bias[o];
}

static void cpu_matmul(const backend_env *env, float *y, const float *x, int n, const tensor *w, const float *bias) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    if (dtype_act8(w->type) && n > BACKEND_INVARIANT_ROWS) { /* the int8 rows of env->ws hold that many */
        for (int r = 0; r < n; r += BACKEND_INVARIANT_ROWS)
            cpu_matmul(env, y + (int64_t)r * out, x + (int64_t)r * in, n - r < BACKEND_INVARIANT_ROWS ? n - r : BACKEND_INVARIANT_ROWS, w, bias);
        return;
    }
    if (n <= BACKEND_INVARIANT_ROWS || w->panel) {
        /* small products are not worth waking the pool for (about 50 µs of hand-over) */
        int threads = threadpool_size(env->pool);
        int64_t work = (int64_t)out * in * n;
        acts xa = prepare_acts(w, x, n, env->ws);
        matmul_job j = {.y = y, .x = &xa, .n = n, .n_tasks = work >= (1 << 18) && out >= 16 * threads ? 4 * threads : 1, .w = w, .bias = bias};
        threadpool_run(env->pool, j.n_tasks, matmul_task, &j);
        return;
    }
    /* one task per thread, each with its own panel of env->ws (backend_ws_floats) */
    matmul_job j = {.y = y, .xf = x, .n = n, .n_tasks = threadpool_size(env->pool), .w = w, .bias = bias, .panels = env->ws};
    threadpool_run(env->pool, j.n_tasks, matmul_deq_task, &j);
}

/* ------------------------------------------------------------------------------------------ */
/* row-wise ops                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void cpu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *yr = y + (int64_t)r * dim;
        float ss = 0.0f;
        for (int i = 0; i < dim; i++) ss += xr[i] * xr[i];
        float scale = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * scale * w[i];
    }
}

static void cpu_rope(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq) {
    int half = head_dim / 2;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < half; j++) {
            float angle = (float)pos[r] * inv_freq[j], c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < n_heads; h++) {
                float *v = x + ((int64_t)r * n_heads + h) * head_dim;
                float a = v[j], b = v[j + half];
                v[j] = a * c - b * s;
                v[j + half] = b * c + a * s;
            }
        }
}

#ifdef MOGE_AVX2
/* exp of 8 lanes: range reduction by ln 2 and a degree-6 polynomial (about 2 ulp; inputs below
 * -87 give 0). Every lane runs the same operations, so a value's exp does not depend on its lane. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}
#endif

#ifdef MOGE_AVX2
static inline __m256 silu_mul8(__m256 x, __m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    return _mm256_mul_ps(_mm256_mul_ps(x, sig), u);
}
#endif

/* g = silu(g) * u = g / (1 + exp(-g)) * u, element-wise. Every element goes through the same
 * vector code (the tail through a padded copy), so a value's result does not depend on where it
 * sits in the batch: batch-invariant. */
static void cpu_swiglu(float *g, const float *u, int64_t n) {
#ifdef MOGE_AVX2
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        float gt[8] = {0}, ut[8] = {0};
        memcpy(gt, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ut, u + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(gt, silu_mul8(_mm256_loadu_ps(gt), _mm256_loadu_ps(ut)));
        memcpy(g + i, gt, (size_t)(n - i) * sizeof(float));
    }
#else
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

#ifndef MOGE_AVX2
static float dot_f32(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}
#endif

typedef struct {
    const attn_args *a;
    int n_args;
    float *ws;
    int n_tasks;
} attn_job;

/* p[s] = exp(p[s] - max) for s < n; p has room for n rounded up to 8. */
static void exp_shifted(float *p, int n, float max) {
#ifdef MOGE_AVX2
    for (int s = n; s % 8; s++) p[s] = max; /* padding lanes: exp(0), unused */
    __m256 m = _mm256_set1_ps(max);
    for (int s = 0; s < n; s += 8) _mm256_storeu_ps(p + s, exp8(_mm256_sub_ps(_mm256_loadu_ps(p + s), m)));
#else
    for (int s = 0; s < n; s++) p[s] = expf(p[s] - max);
#endif
}

#ifdef MOGE_AVX2
/* p[s] = q · k_s for the 8 slots s0..s0+7 (those at or after `end` get 0 without being read):
 * per slot an 8-lane fma chain over the D / 8 chunks, then the lanes summed in the butterfly
 * order of hsum() — done for the 8 slots at once by transposing (3 shuffle levels instead of 8
 * horizontal sums) — plus the scalar tail D % 8 in element order. The same bits as
 * hsum(chain) + tail slot by slot, wherever the block starts. */
static void scores8(const float *q, const float *kc, int s0, int end, int D, float *p) {
    __m256 acc[8];
    int D8 = D / 8 * 8;
    const float *k[8];
    for (int j = 0; j < 8; j++) { /* slots past the end: slot s0 again, its lane zeroed below */
        acc[j] = _mm256_setzero_ps();
        k[j] = kc + (int64_t)(s0 + j < end ? s0 + j : s0) * D;
    }
    /* the 8 chains interleaved (each still in d order: the same bits as one slot at a time) */
    for (int d = 0; d < D8; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
        UNROLL8 for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[j] + d), acc[j]);
    }
    for (int j = 0; j < 8; j++)
        if (s0 + j >= end) acc[j] = _mm256_setzero_ps();
    __m256 m[4], t[2];
    for (int j = 0; j < 4; j++) /* lanes i + i+4 */
        m[j] = _mm256_add_ps(_mm256_permute2f128_ps(acc[2 * j], acc[2 * j + 1], 0x20), _mm256_permute2f128_ps(acc[2 * j], acc[2 * j + 1], 0x31));
    for (int j = 0; j < 2; j++) /* + lanes i+2 */
        t[j] = _mm256_add_ps(_mm256_shuffle_ps(m[2 * j], m[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(m[2 * j], m[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 r = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)), /* + lane i+1 */
                             _mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* r holds slots 0 2 4 6 | 1 3 5 7 */
    r = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    float tail[8] = {0};
    for (int j = 0; j < 8 && s0 + j < end; j++)
        for (int d = D8; d < D; d++) tail[j] += q[d] * kc[(int64_t)(s0 + j) * D + d];
    _mm256_storeu_ps(p + s0, _mm256_add_ps(r, _mm256_loadu_ps(tail)));
}
#endif

#ifdef MOGE_AVX2
/* The visible slots of a row, in slot order, are numbered by ordinal k: the committed slots
 * 0..n_past-1 first (ordinal = slot), then the visible uncommitted ones (slot[k - n_past]). Every
 * sum below is a fixed function of the sequence p[0..nv) in ordinal order — the same sequence a
 * tree node and its path decoded alone see — so the results are batch-invariant. */
static inline int vslot(int k, int n_past, const int *slot) { return k < n_past ? k : slot[k - n_past]; }

/* out[d0 .. d0 + 8 NC) = Σ_k p[k] v_slot(k) / sum: element-wise fma chains, CH of them
 * interleaved by ordinal (k % CH) so that they overlap, added in a fixed order at the end. */
ALWAYS_INLINE void v_accum(int NC, int CH, const float *p, int nv, const float *vc, int n_past, const int *slot, int D, int d0,
                           float sum, float *out) {
    __m256 acc[4][8];
    UNROLL8 for (int h = 0; h < CH; h++)
        UNROLL8 for (int c = 0; c < NC; c++) acc[h][c] = _mm256_setzero_ps();
    int k = 0;
    for (; k + CH <= nv; k += CH)
        UNROLL8 for (int h = 0; h < CH; h++) {
            __m256 e = _mm256_set1_ps(p[k + h]);
            const float *v = vc + (int64_t)vslot(k + h, n_past, slot) * D + d0;
            UNROLL8 for (int c = 0; c < NC; c++) acc[h][c] = _mm256_fmadd_ps(e, _mm256_loadu_ps(v + 8 * c), acc[h][c]);
        }
    for (int h = 0; k < nv; k++, h++) { /* the last ordinals, each still in chain k % CH */
        __m256 e = _mm256_set1_ps(p[k]);
        const float *v = vc + (int64_t)vslot(k, n_past, slot) * D + d0;
        UNROLL8 for (int c = 0; c < NC; c++) acc[h][c] = _mm256_fmadd_ps(e, _mm256_loadu_ps(v + 8 * c), acc[h][c]);
    }
    __m256 den = _mm256_set1_ps(sum);
    UNROLL8 for (int c = 0; c < NC; c++) {
        __m256 r = acc[0][c];
        if (CH == 2) r = _mm256_add_ps(acc[0][c], acc[1][c]);
        if (CH == 4) r = _mm256_add_ps(_mm256_add_ps(acc[0][c], acc[1][c]), _mm256_add_ps(acc[2][c], acc[3][c]));
        _mm256_storeu_ps(out + d0 + 8 * c, _mm256_div_ps(r, den));
    }
}
#endif
/* Row i, head h of a; the scores live in p (backend_attn_ws_stride(n_ctx): n_ctx + 8 floats,
 * then n_ctx ints of slot numbers). */
static void attn_item(const attn_args *a, int i, int h, float *p) {
    int group = a->n_head / a->n_head_kv, D = a->head_dim, n_unc = a->n_prev + a->n;
    float scale = 1.0f / sqrtf((float)D);
    const float *q = a->q + ((int64_t)i * a->n_head + h) * D;
    const float *kc = a->k_cache + (int64_t)(h / group) * a->n_ctx * D;
    const float *vc = a->v_cache + (int64_t)(h / group) * a->n_ctx * D;
    float *out = a->out + ((int64_t)i * a->n_head + h) * D;
    int last = a->visible ? n_unc : a->n_prev + i + 1; /* uncommitted rows to look at */
    int n_slots = a->n_past + last;
    const uint8_t *vis = a->visible ? a->visible + (int64_t)i * a->ld : NULL;
    float maxs = -INFINITY;
#ifdef MOGE_AVX2
    for (int s0 = 0; s0 < n_slots; s0 += 8) scores8(q, kc, s0, n_slots, D, p);
    /* committed slots: scaled and their max taken 8 at a time (max is exact in any order) */
    __m256 vs = _mm256_set1_ps(scale), vmax = _mm256_set1_ps(-INFINITY);
    int s = 0;
    for (; s + 8 <= a->n_past; s += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(p + s), vs);
        _mm256_storeu_ps(p + s, v);
        vmax = _mm256_max_ps(vmax, v);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int l = 0; l < 8; l++) maxs = lanes[l] > maxs ? lanes[l] : maxs;
    for (; s < a->n_past; s++) {
        p[s] *= scale;
        maxs = p[s] > maxs ? p[s] : maxs;
    }
    /* visible uncommitted slots: compacted after the committed ones, in slot order */
    int *slot = (int *)(p + a->n_ctx + 8), nv = a->n_past;
    for (int j = 0; j < last; j++) {
        if (vis && !vis[j]) continue;
        float v = p[a->n_past + j] * scale;
        p[nv] = v;
        slot[nv - a->n_past] = a->n_past + j;
        nv++;
        maxs = v > maxs ? v : maxs;
    }
    exp_shifted(p, nv, maxs);
    /* sum: lane k % 8 takes ordinal k, lanes added by hsum's fixed order */
    __m256 vsum = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= nv; k += 8) vsum = _mm256_add_ps(vsum, _mm256_loadu_ps(p + k));
    _mm256_storeu_ps(lanes, vsum);
    for (; k < nv; k++) lanes[k % 8] += p[k];
    float sum = hsum(_mm256_loadu_ps(lanes));
    int d = 0;
    while (d + 8 <= D) { /* up to 64 elements per pass over the slots; chains fixed by D */
        int nc = (D - d) / 8 < 8 ? (D - d) / 8 : 8;
        switch (nc) {
        case 8: v_accum(8, 1, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        case 7: v_accum(7, 1, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        case 6: v_accum(6, 1, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        case 5: v_accum(5, 1, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        case 4: v_accum(4, 2, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        case 3: v_accum(3, 2, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        case 2: v_accum(2, 4, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        default: v_accum(1, 4, p, nv, vc, a->n_past, slot, D, d, sum, out); break;
        }
        d += nc * 8;
    }
    for (; d < D; d++) {
        float acc = 0.0f;
        for (k = 0; k < nv; k++) acc = fmaf(p[k], vc[(int64_t)vslot(k, a->n_past, slot) * D + d], acc);
        out[d] = acc / sum;
    }
#else
    for (int s = 0; s < n_slots; s++) {
        int j = s - a->n_past;
        if (j >= 0 && vis && !vis[j]) { p[s] = -INFINITY; continue; }
        p[s] = dot_f32(q, kc + (int64_t)s * D, D) * scale;
        maxs = p[s] > maxs ? p[s] : maxs;
    }
    exp_shifted(p, n_slots, maxs);
    /* visible slots in slot order: the same sums as the path alone */
    float sum = 0.0f;
    for (int s = 0; s < n_slots; s++)
        if (s < a->n_past || !vis || vis[s - a->n_past]) sum += p[s];
    for (int d = 0; d < D; d++) {
        float acc = 0.0f;
        for (int s = 0; s < n_slots; s++) {
            if (s >= a->n_past && vis && !vis[s - a->n_past]) continue;
            acc = fmaf(p[s], vc[(int64_t)s * D + d], acc);
        }
        out[d] = acc / sum;
    }
#endif
}

/* Task t handles the (set, row, key/value head) items t, t + n_tasks, ... numbered over every set
 * in order, each item the query heads that share the key/value head one after the other (so the
 * keys and values are read from memory once and then from the core's cache); its scores live in
 * ws + t * backend_attn_ws_stride(n_ctx). */
static void attn_task(void *arg, int t) {
    const attn_job *job = arg;
    float *p = job->ws + (int64_t)t * backend_attn_ws_stride(job->a[0].n_ctx);
    int64_t base = 0;
    for (int j = 0; j < job->n_args; j++) {
        const attn_args *a = &job->a[j];
        int group = a->n_head / a->n_head_kv;
        int64_t items = (int64_t)a->n * a->n_head_kv, first = (t - base % job->n_tasks + job->n_tasks) % job->n_tasks;
        for (int64_t item = first; item < items; item += job->n_tasks) {
            int i = (int)(item / a->n_head_kv), kh = (int)(item % a->n_head_kv);
            for (int h = kh * group; h < (kh + 1) * group; h++) attn_item(a, i, h, p);
        }
        base += items;
    }
}

static void cpu_attention(const backend_env *env, const attn_args *a, int n_args) {
    attn_job job = {.a = a, .n_args = n_args, .ws = env->attn_ws, .n_tasks = threadpool_size(env->pool)};
    int64_t items = 0, work = 0;
    for (int j = 0; j < n_args; j++) {
        items += (int64_t)a[j].n * a[j].n_head_kv;
        work += (int64_t)a[j].n * a[j].n_head * (a[j].n_past + a[j].n_prev + a[j].n) * a[j].head_dim;
    }
    if (n_args < 1 || items < 1) return;
    if (job.n_tasks > items) job.n_tasks = (int)items;
    if (work < (1 << 16)) job.n_tasks = 1;
    threadpool_run(env->pool, job.n_tasks, attn_task, &job);
}

/* ------------------------------------------------------------------------------------------ */
/* MoE dispatch                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* y (n, w rows) = x · wᵀ for one expert on one device (single-threaded); act is the device's
 * scratch for the int16 activations of row-major quantized weights. */
static void expert_matmul(float *y, const float *x, int n, const tensor *w, float *act) {
    acts xa = prepare_acts(w, x, n, act);
    matmul_range(y, &xa, n, w, NULL, 0, (int)w->shape[0]);
}

/* One expert of this process's devices: its rows gathered, gate and up, SwiGLU, down, each output
 * row scattered to its (row, slot) pair. Tasks are experts, not devices, so the threads share the
 * work expert by expert: a device owning more distinct experts than another in this batch (rows
 * are balanced by the routing, bytes are not) does not leave a thread idle. The scratch is the
 * running thread's (dev_scratch holds one per thread); every output is the same whichever thread
 * computes it. */
static void moe_expert_task(void *arg, int t) {
    const moe_args *a = arg;
    int e = a->device_begin[0] + t, first = a->offset[e], cnt = a->offset[e + 1] - first;
    if (cnt == 0) return;
    int E = a->n_embd, F = a->n_ff;
    float *xs = a->dev_scratch + (int64_t)threadpool_thread() * moe_scratch_floats(a->n, E, F);
    float *g = xs + (int64_t)a->n * E, *u = g + (int64_t)a->n * F, *y = u + (int64_t)a->n * F;
    float *act = xs + (int64_t)a->n * (2 * E + 2 * F) + (E > F ? E : F);
    for (int i = 0; i < cnt; i++)
        memcpy(xs + (int64_t)i * E, a->x + (int64_t)(a->order[first + i] / a->k) * E, (size_t)E * sizeof(float));
    expert_matmul(g, xs, cnt, &a->gate[e], act);
    expert_matmul(u, xs, cnt, &a->up[e], act);
    cpu_swiglu(g, u, (int64_t)cnt * F);
    expert_matmul(y, g, cnt, &a->down[e], act);
    for (int i = 0; i < cnt; i++)
        memcpy(a->pair_out + (int64_t)a->order[first + i] * E, y + (int64_t)i * E, (size_t)E * sizeof(float));
}

static void cpu_moe_experts(const backend_env *env, const moe_args *a) {
    int n_pairs = a->n * a->k, E = a->n_embd;
    /* counting sort of the (row, slot) pairs by expert; rows stay in order within an expert */
    memset(a->offset, 0, (size_t)(a->n_expert + 1) * sizeof(int32_t));
    for (int p = 0; p < n_pairs; p++) a->offset[a->experts[p] + 1]++;
    for (int e = 0; e < a->n_expert; e++) a->offset[e + 1] += a->offset[e];
    for (int p = 0; p < n_pairs; p++) a->order[a->offset[a->experts[p]]++] = p;
    for (int e = a->n_expert; e > 0; e--) a->offset[e] = a->offset[e - 1];
    a->offset[0] = 0;
    threadpool_run(env->pool, a->device_begin[a->n_devices] - a->device_begin[0], moe_expert_task, (void *)a);
    if (a->out) moe_combine(a->out, a->pair_out, a->weights, a->n, a->k, E);
}

/* This file is compiled once per kernel variant (Makefile CPU_VARIANTS: its instruction-set flags
 * and -DCPU_VARIANT=name); each copy exports its table as backend_cpu_<name>, and
 * cpu_dispatch.c picks the one this processor runs. */
#ifndef CPU_VARIANT
#error "backend_cpu.c is built once per kernel variant with -DCPU_VARIANT=name (see the Makefile)"
#endif
#define CPU_STR_(v) #v
#define CPU_STR(v) CPU_STR_(v)
#define CPU_OPS_(v) backend_cpu_##v
#define CPU_OPS(v) CPU_OPS_(v)
const backend_ops CPU_OPS(CPU_VARIANT) = {
    .name = "cpu",
    .variant = CPU_STR(CPU_VARIANT),
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .moe_experts = cpu_moe_experts,
    .quant_act_row = qa_act_row,
    .quant_act8_row = qa_act8_row,
};
