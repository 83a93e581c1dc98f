/*
 * quant_act.h — quantization of activations for the integer kernels (the formats and contracts are
 * quant.h's quant_act_row / quant_act8_row): header-only, so that every kernel variant of the cpu
 * backend (runtime/cpu/, compiled once per instruction set) inlines the vector form its
 * instruction set allows, while quant.c exports the same code for the reference backend and the
 * tests. Every form gives the same values as the scalar act_block.
 */
#ifndef MOGE_QUANT_ACT_H
#define MOGE_QUANT_ACT_H

#include <math.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "runtime/quant.h"

/* max |x| over the n (<= QBLOCK) values of x. */
static inline float qa_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

/* One block of activations (the first min(left, QBLOCK) values of xb, the rest zero) as codes
 * lrintf(x * (lim / max|x|)) clamped to ±lim; returns the scale max|x| / lim. The scalar form of
 * quant_act_row and quant_act8_row (their vector loops give the same values). */
static inline float act_block(const float *xb, int64_t left, int lim, int codes[QBLOCK]) {
    int m = left < QBLOCK ? (int)left : QBLOCK;
    float amax = qa_amax(xb, m), inv = amax > 0.0f ? (float)lim / amax : 0.0f;
    for (int j = 0; j < QBLOCK; j++) {
        int v = j < m ? (int)lrintf(xb[j] * inv) : 0;
        codes[j] = v > lim ? lim : v < -lim ? -lim : v;
    }
    return amax / (float)lim;
}

#if defined(__AVX2__)
/* A whole block of activations (32 floats at xb), vectorised: the codes lrintf(x * (lim / max|x|))
 * clamped to ±lim as 4 vectors of 8 int32 in element order; returns the scale max|x| / lim. The
 * same values as act_block (max|x| is exact, the products are the same float multiplies, and
 * cvtps rounds to nearest even as lrintf does in the default rounding mode). */
static inline float act_block_avx2(const float *xb, int lim, __m256i codes[4]) {
    __m256 v[4], absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), m = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(xb + 8 * k);
        m = _mm256_max_ps(m, _mm256_and_ps(v[k], absmask));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h), inv = amax > 0.0f ? (float)lim / amax : 0.0f;
    __m256 vi = _mm256_set1_ps(inv);
    __m256i hi = _mm256_set1_epi32(lim), lo = _mm256_set1_epi32(-lim);
    for (int k = 0; k < 4; k++) codes[k] = _mm256_min_epi32(hi, _mm256_max_epi32(lo, _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vi))));
    return amax / (float)lim;
}
#endif

static inline void qa_act_row(const float *x, int64_t n, int16_t *q, float *d) {
    int64_t b = 0;
#if defined(__AVX2__)
    /* whole blocks vectorised (the same values as the scalar loop below) */
    for (; (b + 1) * QBLOCK <= n; b++) {
        __m256i i[4];
        d[b] = act_block_avx2(x + b * QBLOCK, QACT_MAX, i);
        /* packs works within 128-bit lanes: restore the element order */
        _mm256_storeu_si256((__m256i *)(q + b * QBLOCK), _mm256_permute4x64_epi64(_mm256_packs_epi32(i[0], i[1]), 0xD8));
        _mm256_storeu_si256((__m256i *)(q + b * QBLOCK + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(i[2], i[3]), 0xD8));
    }
#endif
    for (; b * QBLOCK < n; b++) {
        int codes[QBLOCK];
        d[b] = act_block(x + b * QBLOCK, n - b * QBLOCK, QACT_MAX, codes);
        for (int j = 0; j < QBLOCK; j++) q[b * QBLOCK + j] = (int16_t)codes[j];
    }
}

static inline void qa_act_rows(const float *x, int64_t n, int64_t cols, float *scratch, const int16_t **q, const float **d) {
    int64_t nb = (cols + QBLOCK - 1) / QBLOCK;
    int16_t *qs = (int16_t *)scratch;
    float *ds = scratch + n * nb * QBLOCK / 2;
    for (int64_t r = 0; r < n; r++) qa_act_row(x + r * cols, cols, qs + r * nb * QBLOCK, ds + r * nb);
    *q = qs;
    *d = ds;
}

static inline void qa_act8_row(const float *x, int64_t n, int8_t *q, float *d, int32_t *s) {
    int64_t b = 0;
#if defined(__AVX2__)
    /* whole blocks vectorised (the same values as the scalar loop below) */
    for (; (b + 1) * QBLOCK <= n; b++) {
        __m256i i[4], sum = _mm256_setzero_si256();
        d[b] = act_block_avx2(x + b * QBLOCK, QACT8_MAX, i);
        for (int k = 0; k < 4; k++) sum = _mm256_add_epi32(sum, i[k]);
        /* packs works within 128-bit lanes: 0 1 4 5 | 2 3 6 7 after two packs, in dwords of 4 bytes */
        __m256i p16a = _mm256_packs_epi32(i[0], i[1]), p16b = _mm256_packs_epi32(i[2], i[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * QBLOCK), p8);
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        s[b] = _mm_cvtsi128_si32(h);
    }
#endif
    for (; b * QBLOCK < n; b++) {
        int codes[QBLOCK];
        d[b] = act_block(x + b * QBLOCK, n - b * QBLOCK, QACT8_MAX, codes);
        s[b] = 0;
        for (int j = 0; j < QBLOCK; j++) q[b * QBLOCK + j] = (int8_t)codes[j], s[b] += codes[j];
    }
}

static inline void qa_act8_rows(const float *x, int64_t n, int64_t cols, float *scratch, act8_rows *out) {
    int64_t nb = (cols + QBLOCK - 1) / QBLOCK;
    float *d = scratch;
    int32_t *s = (int32_t *)(scratch + n * nb);
    int8_t *q = (int8_t *)(scratch + 2 * n * nb);
    for (int64_t r = 0; r < n; r++) qa_act8_row(x + r * cols, cols, q + r * nb * QBLOCK, d + r * nb, s + r * nb);
    *out = (act8_rows){.q = q, .d = d, .s = s, .nb = nb};
}

#endif
