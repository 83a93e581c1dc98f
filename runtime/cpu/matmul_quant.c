/*
 * matmul_quant.c — matmul kernels for block-quantized weights (tensor.h: blocks of 32 codes with
 * an f32 scale); matmul.c picks one. Built per kernel variant (kernels.h); the scalar variant has
 * none (matmul.c's portable twin runs instead). Each output value is one fixed chain of
 * operations, whatever the tile or the batch (the batch-invariance contract of backend.h).
 *
 * Q8 / Q4 panels, f32 activations (qptile): per column k each weight is (float)code * scale, then
 * the fma chain of the float panels (matmul_float.c).
 *
 * Q8 / Q4 rows, int16 activations (tile_q: a tied lm_head, matrices built outside the loader):
 * the activations are first quantized row by row (quant_act_row: int16, one scale per block of
 * 32; row-local, so still invariant); then per block b, in order, the exact integer dot product
 * S = Σ q_w · q_x in 8 int32 lanes (I16_DOT: vpdpwssd, or pmaddwd + add), and
 * acc = fma((float)S, d_w * d_x, acc); y = hsum(acc). Per 32 weights and row that is 2 integer
 * multiply-adds, a conversion, a multiply and an fma — about a third of dequantizing the weights
 * to f32 — so the int8 kernel stays memory-bound on few cores. The activation rounding
 * (within 1.5e-5 of each block's largest value) is far below the weights' own.
 *
 * W8A8 / W4A8 panels (DTYPE_Q8A8 / DTYPE_Q4A8, pblock_q8a8 / pblock_q4a8; qatile): integer dot
 * products of int8 activations with the weights' codes, 4 columns per 32-bit lane. Per block b
 * and output (r, o): S = Σ_j code_w · code_x (exact in int32), then acc = fma((float)S, d_w · d_x,
 * acc) — the chain of quant.h act8_dot, so the same bits at any batch size. The weights go in as
 * the unsigned stored codes (code + 128 for Q8A8, code + 8 for Q4A8, nibbles unpacked with a
 * shift and a mask) times the signed activations — vpdpbusd with VNNI; pmaddubsw + pmaddwd on
 * plain AVX2, which cannot overflow with 4-bit codes (|pair| <= 2 · 15 · 127) — and the offset
 * times Σ code_x is taken off at the end of the block. Q8A8 without VNNI would overflow
 * pmaddubsw, so there the codes are made signed again and multiplied by |x| with x's sign moved
 * onto them (no offset). Per 4 columns, 16 outputs and a row that is 1 instruction (VNNI,
 * 512-bit) or 3-4 per 8 outputs (AVX2), where the f32-activation kernels need a conversion and
 * multiply-add per column.
 */
#include "runtime/cpu/kernels.h"

#ifdef MOGE_AVX2
/* ------------------------------------------------------------------------------------------ */
/* Q8 / Q4 panels, f32 activations                                                            */
/* ------------------------------------------------------------------------------------------ */

/* The codes of column k of a Q8 / Q4 panel block for rows v * VL .. v * VL + VL - 1, as f32. */
ALWAYS_INLINE vf qcodes(dtype T, const char *blk, int k, int v) {
#if VL == 16
    (void)v;
    if (T == DTYPE_Q8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const pblock_q8 *)blk)->q[k])));
    __m128i by = _mm_loadu_si128((const __m128i *)((const pblock_q4 *)blk)->q[k / 2]);
    __m128i codes = _mm_and_si128(k % 2 ? _mm_srli_epi16(by, 4) : by, _mm_set1_epi8(15));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(codes), _mm512_set1_epi32(8)));
#else
    if (T == DTYPE_Q8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(((const pblock_q8 *)blk)->q[k] + 8 * v))));
    /* Q4: the column's 16 codes in both 128-bit lanes; vpshufb puts code v * 8 + j into the low
     * byte of dword j (a shuffle within lanes, where vpmovzxbd crosses them), and 2^23 + code read
     * as a float, minus 2^23 + 8, is code - 8 exactly without a conversion: about a quarter less
     * time per column on the Zen 3 (one row, weights in L2) */
    __m256i by = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((const pblock_q4 *)blk)->q[k / 2]));
    __m256i codes = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(by, 4) : by, _mm256_set1_epi8(15));
    const __m256i to_lanes = v ? _mm256_setr_epi8(8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1, -1, -1, 12, -1, -1, -1, 13, -1, -1, -1, 14,
                                                  -1, -1, -1, 15, -1, -1, -1)
                               : _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1, -1, -1, 4, -1, -1, -1, 5, -1, -1, -1, 6, -1,
                                                  -1, -1, 7, -1, -1, -1);
    __m256i bits = _mm256_or_si256(_mm256_shuffle_epi8(codes, to_lanes), _mm256_set1_epi32(0x4B000000)); /* 2^23 + code */
    return _mm256_sub_ps(_mm256_castsi256_ps(bits), _mm256_set1_ps(8388616.0f));
#endif
}

/* Q8 / Q4 panels: per column k each weight is (float)code * scale (one rounding: the value
 * tensor_get gives), then the same fma chain as float panels. */
ALWAYS_INLINE void qptile(dtype T, int R, int C, const char *wp, size_t panel_bytes, int in, const float *x, float *y,
                          int64_t ldy, int cols, const char *ahead, size_t ahead_step) {
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
        _Pragma("GCC unroll 2") /* a Q4 column's nibble (low for even k, high for odd) known when compiling */
        for (int k = 0; k < kmax; k++) {
            if (ahead) pt_prefetch_ahead(ahead, ahead_step, b * QBLOCK + k);
#define Q_WEIGHTS(j) vf_mul(qcodes(T, wp + (j) / PNV * panel_bytes + (size_t)b * bs, k, (j) % PNV), ds[j])
            PT_COLUMN(R, C, xk + k, in, acc, Q_WEIGHTS);
#undef Q_WEIGHTS
        }
    }
    pt_store(R, C, acc, y, ldy, cols);
}

PT_TYPE(DTYPE_Q8, ptile_Q8, qptile)
PT_TYPE(DTYPE_Q4, ptile_Q4, qptile)

/* ------------------------------------------------------------------------------------------ */
/* Q8 / Q4 rows, int16 activations                                                            */
/* ------------------------------------------------------------------------------------------ */

/* s + the pairwise products of a and b (16 int16 each), summed into 8 int32 lanes; exact. */
ALWAYS_INLINE __m256i dot_i16(__m256i s, __m256i a, __m256i b) {
    return I16_DOT(s, a, b);
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

#define Q_CALL(T, TO_, TR_) \
    tile_q(T, TO_, TR_, w, o, nb, x->q + (int64_t)r0 * nb * QBLOCK, x->d + (int64_t)r0 * nb, k0, k1, flags, save, y, ldy)
#define Q_CALL_Q8(TO_, TR_) Q_CALL(DTYPE_Q8, TO_, TR_)
#define Q_CALL_Q4(TO_, TR_) Q_CALL(DTYPE_Q4, TO_, TR_)
TILE_TYPE(Q8, Q_CALL_Q8)
TILE_TYPE(Q4, Q_CALL_Q4)

/* ------------------------------------------------------------------------------------------ */
/* W8A8 / W4A8 panels, int8 activations                                                       */
/* ------------------------------------------------------------------------------------------ */

#if QA_VL == 16
typedef __m512i qa_vi;
typedef __m512 qa_vf;
#define qa_zero() _mm512_setzero_si512()
#define qa_load(p) _mm512_loadu_si512((const void *)(p))
#define qa_set1(v) _mm512_set1_epi32(v)
#define qa_set1_8(v) _mm512_set1_epi8(v)
#define qa_and(a, b) _mm512_and_si512(a, b)
#define qa_srli16(a, k) _mm512_srli_epi16(a, k)
#define qa_sub(a, b) _mm512_sub_epi32(a, b)
#define qa_cvt(a) _mm512_cvtepi32_ps(a)
#define qa_fzero() _mm512_setzero_ps()
#define qa_floadu(p) _mm512_loadu_ps(p)
#define qa_fset1(v) _mm512_set1_ps(v)
#define qa_fmul(a, b) _mm512_mul_ps(a, b)
#define qa_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define qa_fstoreu(p, v) _mm512_storeu_ps(p, v)
#else
typedef __m256i qa_vi;
typedef __m256 qa_vf;
#define qa_zero() _mm256_setzero_si256()
#define qa_load(p) _mm256_loadu_si256((const __m256i *)(p))
#define qa_set1(v) _mm256_set1_epi32(v)
#define qa_set1_8(v) _mm256_set1_epi8(v)
#define qa_and(a, b) _mm256_and_si256(a, b)
#define qa_srli16(a, k) _mm256_srli_epi16(a, k)
#define qa_sub(a, b) _mm256_sub_epi32(a, b)
#define qa_cvt(a) _mm256_cvtepi32_ps(a)
#define qa_fzero() _mm256_setzero_ps()
#define qa_floadu(p) _mm256_loadu_ps(p)
#define qa_fset1(v) _mm256_set1_ps(v)
#define qa_fmul(a, b) _mm256_mul_ps(a, b)
#define qa_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define qa_fstoreu(p, v) _mm256_storeu_ps(p, v)
#endif

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
    if (T == DTYPE_Q8A8) return QA_DOT_US(s, _mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
#endif
    (void)T;
    return QA_DOT_US(s, w, x);
}

/* y[r * ldy + j] for r < R, j < cols (cols <= C * TENSOR_PANEL): activation rows r0 .. r0 + R - 1
 * of x times the panels starting at wp; per block, ahead_step bytes of the next tile from `ahead`
 * brought into L2 (kernels.h pt_prefetch_ahead; none when NULL). */
ALWAYS_INLINE void qatile(dtype T, int R, int C, const char *wp, size_t panel_bytes, const act8_rows *x, int64_t r0, float *y,
                          int64_t ldy, int cols, const char *ahead, size_t ahead_step) {
    int64_t nb = x->nb;
    size_t bs = T == DTYPE_Q4A8 ? sizeof(pblock_q4a8) : sizeof(pblock_q8a8);
    qa_vf acc[QA_ROWS][QA_ACC];
    UNROLL8 for (int r = 0; r < R; r++)
        UNROLL8 for (int j = 0; j < C * QA_PNV; j++) acc[r][j] = qa_fzero();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk[QA_C1];
        UNROLL8 for (int c = 0; c < C; c++) blk[c] = wp + c * panel_bytes + (size_t)b * bs;
        const int8_t *xq = x->q + (r0 * nb + b) * QBLOCK;
        if (ahead) pt_prefetch_ahead(ahead, ahead_step, (int)b);
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
                UNROLL8 for (int j = 0; j < C * QA_PNV; j++) {
                    S[r][j] = qa_dot(T, S[r][j], wv[j], xb);
#if !QA_VNNI
                    /* one running sum per vector: left alone, GCC re-associated the block's 8 integer sums
                     * into trees whose partial products did not fit the 16 AVX2 registers (spilled) */
                    __asm__("" : "+x"(S[r][j]));
#endif
                }
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

#define QA_CALL(R_, C_) qatile(T, R_, C_, wp, pb, x, r0, y, ldy, cols, ahead, ahead_step)
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
    void NAME(int R, int C, const char *wp, size_t pb, const act8_rows *x, int64_t r0, float *y, int64_t ldy, int cols,    \
              const char *ahead, size_t ahead_step) {                                                           \
        const dtype T = T_;                                                                                     \
        if (C == QA_C1) QA_CALL(1, QA_C1);                                                                      \
        else if (C == QA_PANELS) { QA_ROWS_CASES(QA_PANELS) }                                                   \
        else { QA_ROWS_CASES(1) }                                                                               \
    }
QA_TYPE(DTYPE_Q8A8, qatile_Q8A8)
QA_TYPE(DTYPE_Q4A8, qatile_Q4A8)
#endif
