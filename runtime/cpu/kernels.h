/*
 * kernels.h — private to the cpu backend's kernel files (the .c files of runtime/cpu/); nothing else includes it.
 *
 * Every file of runtime/cpu/ is compiled once per kernel variant (Makefile CPU_VARIANTS, with that
 * variant's instruction-set flags and -DCPU_VARIANT=name), and backend_cpu.c assembles the
 * variant's backend_ops table, backend_cpu_<name>, which cpu_dispatch.c picks by CPUID. The files:
 *
 *   matmul.c       the matmul op: threads, the choice of kernel by weight type, layout and batch,
 *                  the prefill path over 64 rows (matmul_deq), and the portable twin of every kernel
 *   matmul_float.c float activations times F32 / F16 / BF16 weights: row-layout tiles (tile_f)
 *                  and panel tiles (ptile)
 *   matmul_quant.c Q8 / Q4 weights: panels dequantized in registers (qptile), row-layout blocks
 *                  times int16 activations (tile_q, vpdpwssd); W8A8 / W4A8 panels times int8
 *                  activations (qatile: vpdpbusd with VNNI, pmaddubsw without)
 *   attention.c    scores, softmax and the weighted sum of values over the visible slots
 *   elementwise.c  rmsnorm, rope, swiglu
 *   moe.c          MoE expert dispatch: the (row, expert) pairs sorted by expert, experts per device
 *   backend_cpu.c  the table
 *
 * This header holds what they share: the per-instruction-set choices (the only place that asks
 * the compiler's target macros), the SIMD helpers (static inline, so a kernel in any file inlines
 * them), and the declarations of the functions one file calls in another. Those are extern (hidden
 * by the build's -fvisibility=hidden) and named per variant (CPU_SYM: matmul_range_avx2, ...), as
 * every variant's objects are linked into one library.
 */
#ifndef MOGE_CPU_KERNELS_H
#define MOGE_CPU_KERNELS_H

#include <math.h>
#include <string.h>

#include "runtime/backend.h"
#include "runtime/quant_act.h"
#include "runtime/threadpool.h"

/* Every declaration below is of this library only (hidden, as -fvisibility=hidden makes the
 * definitions): calls and function addresses across the kernel files then need no GOT, the same
 * code as when they were static in one file. */
#pragma GCC visibility push(hidden)

#ifndef CPU_VARIANT
#error "runtime/cpu/ is built once per kernel variant with -DCPU_VARIANT=name (see the Makefile)"
#endif
#define CPU_CAT_(a, b) a##_##b
#define CPU_CAT(a, b) CPU_CAT_(a, b)
#define CPU_SYM(name) CPU_CAT(name, CPU_VARIANT) /* name_<variant> */

/* ------------------------------------------------------------------------------------------ */
/* per-instruction-set choices                                                                */
/* ------------------------------------------------------------------------------------------ */

/*
 * MOGE_AVX2: the vector kernels (AVX2 + FMA at least); without it (the scalar and generic
 * variants) every op runs its portable twin, the same per-value operation order.
 * Float tiles: VL floats per vector — 512-bit where AVX-512 is available (about a quarter more
 * multiply-adds per cycle than 256-bit on the machines measured), else 256-bit; either way a
 * value's sequence is fixed by the build, never by the batch. Row-layout tiles: TILE_O weight
 * rows (4 need 16 accumulators: with AVX-512VL there are 32 vector registers, else 16). Panel
 * tiles: PT_ROWS input rows × PT_PANELS panels. Row-layout Q8 / Q4 blocks: the int16 dot product
 * I16_DOT (VNNI's vpdpwssd where present). W8A8 / W4A8 panels: QA_VL int32 lanes, QA_ROWS ×
 * QA_PANELS tiles, the unsigned × signed byte dot product QA_DOT_US (vpdpbusd where QA_VNNI,
 * else pmaddubsw + pmaddwd).
 */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MOGE_AVX2 1

#ifdef __AVX512F__
typedef __m512 vf;
#define VL 16
#define vf_zero() _mm512_setzero_ps()
#define vf_loadu(p) _mm512_loadu_ps(p)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vf_mul(a, b) _mm512_mul_ps(a, b)
#define vf_set1(v) _mm512_set1_ps(v)
#define vf_storeu(p, v) _mm512_storeu_ps(p, v)
#define PT_ROWS 8
#define PT_PANELS 2
#else
typedef __m256 vf;
#define VL 8
#define vf_zero() _mm256_setzero_ps()
#define vf_loadu(p) _mm256_loadu_ps(p)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_mul(a, b) _mm256_mul_ps(a, b)
#define vf_set1(v) _mm256_set1_ps(v)
#define vf_storeu(p, v) _mm256_storeu_ps(p, v)
#define PT_ROWS 6
#define PT_PANELS 1
#endif

#ifdef __AVX512VL__
#define TILE_O 4
#else
#define TILE_O 2
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define I16_DOT(s, a, b) _mm256_dpwssd_epi32(s, a, b)
#elif defined(__AVXVNNI__)
#define I16_DOT(s, a, b) _mm256_dpwssd_avx_epi32(s, a, b)
#else
#define I16_DOT(s, a, b) _mm256_add_epi32(s, _mm256_madd_epi16(a, b))
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define QA_VL 16
#define QA_ROWS 6
#define QA_PANELS 2
#define QA_VNNI 1
#define QA_DOT_US(s, w, x) _mm512_dpbusd_epi32(s, w, x)
#else
#define QA_VL 8
#define QA_ROWS 2
#define QA_PANELS 1
#ifdef __AVXVNNI__
#define QA_VNNI 1
#define QA_DOT_US(s, w, x) _mm256_dpbusd_avx_epi32(s, w, x)
#else
#define QA_VNNI 0
/* s + the sums of 4 products of unsigned w and signed x bytes; exact while no pair of products
 * leaves int16 (4-bit w, or signed w with |x| as the unsigned side). */
#define QA_DOT_US(s, w, x) _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)))
#endif
#endif

#else /* no AVX2: the portable twins */
#define PT_PANELS 1
#endif

/* ------------------------------------------------------------------------------------------ */
/* shared helpers                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* The activations a matmul kernel takes for weights w (prepare_acts). */
typedef struct {
    const float *x;   /* f32 rows (float weights) */
    const int16_t *q; /* int16 rows, stride nb * QBLOCK (quantized weights) */
    const float *d;   /* their scales, stride nb */
    act8_rows a8;     /* int8 rows (W8A8 / W4A8 weights) */
} acts;

/* A helper the kernels call with constant arguments, inlined so that the compiler specialises it
 * (every variant, the scalar ones included). */
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#ifdef MOGE_AVX2
/* The loops over a tile's rows have constant trip counts after inlining; unrolling them keeps
 * the accumulators in registers (-O2 would not). */
#define UNROLL _Pragma("GCC unroll 4")
#define UNROLL8 _Pragma("GCC unroll 8")

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 8 weights of a float-typed row starting at element k, as f32. */
ALWAYS_INLINE __m256 load8(dtype T, const char *row, int k) {
    switch (T) {
    case DTYPE_BF16: {
        /* the 8 values in both 128-bit lanes, then each moved into the upper half of its dword by one
         * shuffle within lanes (vpmovzxwd and a shift crossed lanes and took two operations) */
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
        const __m256i up = _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7, -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1,
                                            -1, 14, 15);
        return _mm256_castsi256_ps(_mm256_shuffle_epi8(v, up));
    }
    case DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    default:
        return _mm256_loadu_ps((const float *)row + k);
    }
}

#if VL == 16
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
#define vf_hsum(v) hsum(v)
#define loadv load8
#endif

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

/* ------------------------------------------------------------------------------------------ */
/* matmul tiles (matmul_float.c, matmul_quant.c), chosen by matmul.c                          */
/* ------------------------------------------------------------------------------------------ */

/* A row-layout tile may run over a span of its dot products only (steps k0..k1 of VL values for
 * float weights, blocks k0..k1 for quantized ones), keeping its accumulators in `save` between
 * spans: TILE_FIRST starts them at zero, else they are loaded; TILE_LAST finishes (tail,
 * horizontal sum, store to y), else they are saved; TILE_PREFETCH prefetches the weights of the
 * next tile (into L2 with TILE_PREFETCH_L2). Splitting the dot products into spans changes no
 * operation of any output value. */
enum { TILE_FIRST = 1, TILE_LAST = 2, TILE_PREFETCH = 4, TILE_PREFETCH_L2 = 8 };

/* Weight rows are prefetched this many rows ahead (one 4-row tile): with the hardware
 * prefetcher alone a core streams the quantized weights at about 2/3 of the rate it streams f32
 * (measured), since it spends more time per byte. */
#define PREFETCH_ROWS 4

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

/* A row-layout tile of weight type T: y[r * ldy + a] = W[o + a] · x[r0 + r] for a < to (TILE_O
 * or 1), r < tr (1..4). TILE_TYPE(T, CALL) defines tile_T, CALL(TO, TR) running the kernel
 * inlined with constant TO and TR. */
typedef void tile_fn(int to, int tr, const tensor *w, int64_t o, int in, const acts *x, int r0, int k0, int k1, int flags,
                     void *save, float *y, int64_t ldy);
#define TILE_CASES(CALL, TO)                                                 \
    switch (tr) {                                                            \
    case 1: CALL(TO, 1); break;                                              \
    case 2: CALL(TO, 2); break;                                              \
    case 3: CALL(TO, 3); break;                                              \
    default: CALL(TO, 4); break;                                             \
    }
#define TILE_TYPE(T, CALL)                                                                                       \
    void tile_##T(int to, int tr, const tensor *w, int64_t o, int in, const acts *x, int r0, int k0, int k1, int flags, \
                  void *save, float *y, int64_t ldy) {                                                           \
        int nb = (in + QBLOCK - 1) / QBLOCK;                                                                     \
        (void)nb;                                                                                                \
        if (to == TILE_O) { TILE_CASES(CALL, TILE_O) } else { TILE_CASES(CALL, 1) }                              \
    }

/* Panel-layout tiles (tensor.h): PT_ROWS input rows × up to PT_C1 panels of TENSOR_PANEL outputs
 * (wider for one or two rows, so that a tile still has 8 independent accumulator chains: an fma
 * waits 4 cycles for its accumulator; two can start per cycle: PT_C1 panels for one row, PT_C2
 * for two, PT_PANELS for more). PT_TYPE(T, NAME, TILE) defines NAME(R, C, ...) running
 * TILE(T, R, C, ...) inlined with constant R and C, for the (R, C) matmul_panels chooses. */
#define PNV (TENSOR_PANEL / VL) /* vectors per panel column */
#define PT_C1 (4 * PT_PANELS)
#define PT_C2 (2 * PT_PANELS)
/* Panels of a 3-row tile of float weights: with AVX2 two (12 chains; over one panel, 6 chains
 * leave the fma units waiting on their latency and the prefetchers follow one stream: a 3-row pass
 * of the dense 1.7 GB stand-in took 3-6 % less time on a Zen 3, the MoGE one no measurable change;
 * Q8 / Q4 tiles, which need registers to convert their codes, were slower so and keep one, as do
 * F16 / BF16, whose conversions spilled an accumulator), else PT_PANELS. */
#define PT_C3 (PT_PANELS == 1 ? PT_C2 : PT_PANELS)
#define PT_ACC (PT_C1 * PNV) /* accumulators per row, at most */
typedef void ptile_fn(int R, int C, const char *wp, size_t pb, int in, const float *x, float *y, int64_t ldy, int cols,
                      const char *ahead, size_t ahead_step);

/* A tile that is one of several passes of rows over the same panels (a batch of more than PT_ROWS
 * rows) finds them in cache after the first pass and would leave memory idle while it computes:
 * matmul_panels gives each pass a share of the next tile's panels to bring into L2 meanwhile,
 * ahead_step bytes per column (per block for the int8 tiles) from `ahead` (so too a single pass
 * of several rows over one panel, a second stream beside its own: matmul.c tile_prefetches;
 * NULL: the tile's own prefetch instead). A prefetch never faults, so the last column's may
 * reach a little past the next tile. */
ALWAYS_INLINE void pt_prefetch_ahead(const char *ahead, size_t step, int k) {
    for (size_t j = 0; j < step; j += 64) _mm_prefetch(ahead + (size_t)k * step + j, _MM_HINT_T1);
}

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

/* One column step of a panel tile whose weight vector j (j < C * PNV: panel j / PNV, vector
 * j % PNV) is the expression W(j): with several rows the C * PNV vectors are made first and
 * pt_fma_rows multiplies them into every row; with one row each goes into its chain as soon as it
 * is made (made all first, the converted ones of F16 / BF16 / Q8 / Q4 left no register for an
 * accumulator of the 4-panel AVX2 tile, and every column then waited on its store and reload).
 * The same operations either way. */
#define PT_COLUMN(R, C, x, in, acc, W)                                                                          \
    do {                                                                                                        \
        if ((R) == 1) {                                                                                         \
            vf xb_ = vf_set1((x)[0]);                                                                           \
            UNROLL8 for (int j_ = 0; j_ < (C) * PNV; j_++) (acc)[0][j_] = vf_fma(xb_, W(j_), (acc)[0][j_]);      \
        } else {                                                                                                \
            vf wv_[PT_ACC];                                                                                     \
            UNROLL8 for (int j_ = 0; j_ < (C) * PNV; j_++) wv_[j_] = W(j_);                                     \
            pt_fma_rows(R, C, x, in, wv_, acc);                                                                 \
        }                                                                                                       \
    } while (0)

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

#define PT_CALL(TILE, T, R_, C_) TILE(T, R_, C_, wp, pb, in, x, y, ldy, cols, ahead, ahead_step)
#define PT_ROWS_CASES(TILE, T, C)                                                                               \
    switch (R) {                                                                                                \
    case 1: PT_CALL(TILE, T, 1, C); break;                                                                      \
    case 2: PT_CALL(TILE, T, 2, C); break;                                                                      \
    case 3: PT_CALL(TILE, T, 3, C); break;                                                                      \
    case 4: PT_CALL(TILE, T, 4, C); break;                                                                      \
    case 5: PT_CALL(TILE, T, 5, C); break;                                                                      \
    case 6: PT_CALL(TILE, T, 6, C); break;                                                                      \
    PT_CASES_WIDE(TILE, T, C)                                                                                   \
    }
#if PT_ROWS == 8
#define PT_CASES_WIDE(TILE, T, C)                                                                               \
    case 7: PT_CALL(TILE, T, 7, C); break;                                                                      \
    default: PT_CALL(TILE, T, 8, C); break;
#else
#define PT_CASES_WIDE(TILE, T, C) default: break;
#endif
/* (R, C) as matmul_panels chooses them: C == PT_C1 only with R == 1, PT_C2 with R <= 2 (and 3 where
 * PT_C3 is PT_C2). */
#define PT_TYPE(T, NAME, TILE)                                                                                  \
    void NAME(int R, int C, const char *wp, size_t pb, int in, const float *x, float *y, int64_t ldy, int cols,   \
              const char *ahead, size_t ahead_step) {                                                           \
        if (C == PT_C1) PT_CALL(TILE, T, 1, PT_C1);                                                             \
        else if (C == PT_C2 && R == 1) PT_CALL(TILE, T, 1, PT_C2);                                              \
        else if (C == PT_C2 && R == 3 && PT_C3 == PT_C2) PT_CALL(TILE, T, 3, PT_C3);                            \
        else if (C == PT_C2) PT_CALL(TILE, T, 2, PT_C2);                                                        \
        else if (C == PT_PANELS) { PT_ROWS_CASES(TILE, T, PT_PANELS) }                                          \
        else { PT_ROWS_CASES(TILE, T, 1) }                                                                      \
    }

/* W8A8 / W4A8 panel tiles: up to QA_ROWS activation rows (int8) × QA_C1 panels. */
#define QA_PNV (TENSOR_PANEL / QA_VL)  /* vectors per panel */
/* Panels of a one-row tile: with 256-bit vectors four (one panel at a time was a single stream, two
 * left memory waiting: on a Zen 3 one-row decode of dense-272m at W4A8 1.17x faster with four than
 * with two, 5 of 5 alternating runs, W8A8 1.01x; the tile's 8 running sums still fit the 16
 * registers); with AVX-512 VNNI twice QA_PANELS, 4 panels of one vector each (wider untimed). */
#define QA_C1 ((QA_VL == 8 ? 4 : 2) * QA_PANELS)
#define QA_ACC (QA_C1 * QA_PNV)       /* accumulators per row, at most */
typedef void qatile_fn(int R, int C, const char *wp, size_t pb, const act8_rows *x, int64_t r0, float *y, int64_t ldy, int cols,
                       const char *ahead, size_t ahead_step);

#define tile_F32 CPU_SYM(tile_F32)
#define tile_F16 CPU_SYM(tile_F16)
#define tile_BF16 CPU_SYM(tile_BF16)
#define tile_Q8 CPU_SYM(tile_Q8)
#define tile_Q4 CPU_SYM(tile_Q4)
#define ptile_F32 CPU_SYM(ptile_F32)
#define ptile_F16 CPU_SYM(ptile_F16)
#define ptile_BF16 CPU_SYM(ptile_BF16)
#define ptile_Q8 CPU_SYM(ptile_Q8)
#define ptile_Q4 CPU_SYM(ptile_Q4)
#define qatile_Q8A8 CPU_SYM(qatile_Q8A8)
#define qatile_Q4A8 CPU_SYM(qatile_Q4A8)
tile_fn tile_F32, tile_F16, tile_BF16;         /* matmul_float.c */
ptile_fn ptile_F32, ptile_F16, ptile_BF16;
tile_fn tile_Q8, tile_Q4;                      /* matmul_quant.c */
ptile_fn ptile_Q8, ptile_Q4;
qatile_fn qatile_Q8A8, qatile_Q4A8;
#endif /* MOGE_AVX2 */

/* ------------------------------------------------------------------------------------------ */
/* across files                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* matmul.c: the activations matmul_range needs for weights w (x itself, or x quantized into
 * scratch: quant_act_floats(n, in) floats), and y (n, out) columns [o0, o1) = x · Wᵀ + bias on
 * the calling thread. */
#define prepare_acts CPU_SYM(prepare_acts)
#define matmul_range CPU_SYM(matmul_range)
acts prepare_acts(const tensor *w, const float *x, int n, float *scratch);
void matmul_range(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1);

/* The ops of the table (backend.h backend_ops). */
#define cpu_matmul CPU_SYM(cpu_matmul)
#define cpu_rmsnorm CPU_SYM(cpu_rmsnorm)
#define cpu_rope CPU_SYM(cpu_rope)
#define cpu_attention CPU_SYM(cpu_attention)
#define cpu_swiglu CPU_SYM(cpu_swiglu)
#define cpu_moe_experts CPU_SYM(cpu_moe_experts)
void cpu_matmul(const backend_env *env, float *y, const float *x, int n, const tensor *w, const float *bias); /* matmul.c */
void cpu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps);                       /* elementwise.c */
void cpu_rope(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq);
void cpu_swiglu(float *g, const float *u, int64_t n);
void cpu_attention(const backend_env *env, const attn_args *a, int n_args); /* attention.c */
void cpu_moe_experts(const backend_env *env, const moe_args *a);           /* moe.c */

#pragma GCC visibility pop
#endif
