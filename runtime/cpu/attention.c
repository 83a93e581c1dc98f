/*
 * attention.c — the cpu backend's attention op (backend_ops.attention): per row and query head,
 * the scores of the visible key slots, their softmax and the weighted sum of the values. A row
 * sees the committed slots 0..n_past-1 of its sequence and the uncommitted rows its visibility
 * rule allows (causal, or a tree row's ancestors: attn_args.visible); the visible slots are walked
 * in slot order, scoring 8 slots at a time (4 when two query heads that share a key/value head go
 * together, each key and value vector then loaded once for both: attn_pair_d), every slot's sum
 * in one fixed order, so a row's result is the same bits as when its path is decoded alone
 * (batch-invariant) and whether or not its heads were paired. Rows and heads are spread over the
 * thread pool. Built per kernel variant (kernels.h); without AVX2 the portable twin below runs the
 * same sums in order.
 */
#include "runtime/cpu/kernels.h"

typedef struct {
    const attn_args *a;
    int n_args;
    float *ws;
    int n_tasks;
    int64_t items; /* (row, key/value head) pairs over every set */
} attn_job;

#ifdef MOGE_AVX2
/* p[s] = exp(p[s] - max) for s < n; p has room for n rounded up to 8. */
static void exp_shifted(float *p, int n, float max) {
    for (int s = n; s % 8; s++) p[s] = max; /* padding lanes: exp(0), unused */
    __m256 m = _mm256_set1_ps(max);
    for (int s = 0; s < n; s += 8) _mm256_storeu_ps(p + s, exp8(_mm256_sub_ps(_mm256_loadu_ps(p + s), m)));
}

/* p[s] = q · k_s for the 8 slots s0..s0+7 (those at or after `end` get 0 without being read):
 * per slot an 8-lane fma chain over the D / 8 chunks, then the lanes summed in the butterfly
 * order of hsum() — done for the 8 slots at once by transposing (3 shuffle levels instead of 8
 * horizontal sums) — plus the scalar tail D % 8 in element order. The same bits as
 * hsum(chain) + tail slot by slot, wherever the block starts. */
ALWAYS_INLINE void scores8(const float *q, const float *kc, int s0, int end, int D, float *p) {
    __m256 acc[8];
    int D8 = D / 8 * 8;
    const float *k[8];
    bool full = s0 + 8 <= end;
    UNROLL8 for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    if (full) /* one base and constant offsets (D is known where it matters: attn_item) */
        UNROLL8 for (int j = 0; j < 8; j++) k[j] = kc + (int64_t)s0 * D + j * D;
    else /* slots past the end: slot s0 again, its lane zeroed below */
        UNROLL8 for (int j = 0; j < 8; j++) k[j] = kc + (int64_t)(s0 + j < end ? s0 + j : s0) * D;
    /* the 8 chains interleaved (each still in d order: the same bits as one slot at a time) */
    for (int d = 0; d < D8; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
        UNROLL8 for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[j] + d), acc[j]);
    }
    if (!full)
        UNROLL8 for (int j = 0; j < 8; j++)
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
    if (D8 == D) { /* no scalar tail: its zeros added as they would be (a -0 score becomes +0) */
        _mm256_storeu_ps(p + s0, _mm256_add_ps(r, _mm256_setzero_ps()));
        return;
    }
    float tail[8] = {0};
    for (int j = 0; j < 8 && s0 + j < end; j++)
        for (int d = D8; d < D; d++) tail[j] += q[d] * kc[(int64_t)(s0 + j) * D + d];
    _mm256_storeu_ps(p + s0, _mm256_add_ps(r, _mm256_loadu_ps(tail)));
}

/* The scores of 4 slots from their chains acc[0..3] (8 lanes each), summed as scores8 sums them
 * (lanes i + i+4, then + i+2, then + i+1: hsum's order), plus 0 as there; stored to p[0..3]. */
ALWAYS_INLINE void reduce4(const __m256 *acc, float *p) {
    __m256 m0 = _mm256_add_ps(_mm256_permute2f128_ps(acc[0], acc[1], 0x20), _mm256_permute2f128_ps(acc[0], acc[1], 0x31));
    __m256 m1 = _mm256_add_ps(_mm256_permute2f128_ps(acc[2], acc[3], 0x20), _mm256_permute2f128_ps(acc[2], acc[3], 0x31));
    __m256 t = _mm256_add_ps(_mm256_shuffle_ps(m0, m1, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(m0, m1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 r = _mm256_add_ps(_mm256_shuffle_ps(t, t, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(t, t, _MM_SHUFFLE(3, 1, 3, 1)));
    /* r holds slots 0 2 0 2 | 1 3 1 3 */
    r = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5));
    _mm_storeu_ps(p, _mm_add_ps(_mm256_castps256_ps128(r), _mm_setzero_ps()));
}

/* scores8's sums for two query heads that share their keys (D a multiple of 8), 4 slots at a
 * time: p0[s] = q0 · k_s and p1[s] = q1 · k_s for s0..s0+3 (0 at or after `end`), each key vector
 * loaded once for both heads (scoring one head after the other read every key twice, from memory
 * again when a head's keys and values outgrow L2). The same bits as scores8, slot for slot. */
ALWAYS_INLINE void scores4x2(const float *q0, const float *q1, const float *kc, int s0, int end, int D, float *p0, float *p1) {
    __m256 acc[2][4];
    const float *k[4];
    bool full = s0 + 4 <= end;
    UNROLL8 for (int j = 0; j < 4; j++) acc[0][j] = acc[1][j] = _mm256_setzero_ps();
    if (full)
        UNROLL8 for (int j = 0; j < 4; j++) k[j] = kc + (int64_t)s0 * D + j * D;
    else
        UNROLL8 for (int j = 0; j < 4; j++) k[j] = kc + (int64_t)(s0 + j < end ? s0 + j : s0) * D;
    for (int d = 0; d < D; d += 8) {
        __m256 a = _mm256_loadu_ps(q0 + d), b = _mm256_loadu_ps(q1 + d);
        UNROLL8 for (int j = 0; j < 4; j++) {
            __m256 kv = _mm256_loadu_ps(k[j] + d);
            acc[0][j] = _mm256_fmadd_ps(a, kv, acc[0][j]);
            acc[1][j] = _mm256_fmadd_ps(b, kv, acc[1][j]);
        }
    }
    if (!full)
        UNROLL8 for (int j = 0; j < 4; j++)
            if (s0 + j >= end) acc[0][j] = acc[1][j] = _mm256_setzero_ps();
    reduce4(acc[0], p0 + s0);
    reduce4(acc[1], p1 + s0);
}

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
/* v_accum's sums for two query heads that share their values (weights p0, p1; sums sum0, sum1),
 * each value vector loaded once for both: elements d0 .. d0 + 8 NC of the chains of a pass of CH
 * interleaved chains (the CH of v_accum's pass these elements belong to, so the same bits). */
ALWAYS_INLINE void v_accum2(int NC, int CH, const float *p0, const float *p1, int nv, const float *vc, int n_past, const int *slot, int D,
                            int d0, float sum0, float sum1, float *out0, float *out1) {
    __m256 acc[2][4][4];
    UNROLL8 for (int h = 0; h < CH; h++)
        UNROLL8 for (int c = 0; c < NC; c++) acc[0][h][c] = acc[1][h][c] = _mm256_setzero_ps();
    int k = 0;
    for (; k + CH <= nv; k += CH)
        UNROLL8 for (int h = 0; h < CH; h++) {
            __m256 e0 = _mm256_set1_ps(p0[k + h]), e1 = _mm256_set1_ps(p1[k + h]);
            const float *v = vc + (int64_t)vslot(k + h, n_past, slot) * D + d0;
            UNROLL8 for (int c = 0; c < NC; c++) {
                __m256 vv = _mm256_loadu_ps(v + 8 * c);
                acc[0][h][c] = _mm256_fmadd_ps(e0, vv, acc[0][h][c]);
                acc[1][h][c] = _mm256_fmadd_ps(e1, vv, acc[1][h][c]);
            }
        }
    for (int h = 0; k < nv; k++, h++) {
        __m256 e0 = _mm256_set1_ps(p0[k]), e1 = _mm256_set1_ps(p1[k]);
        const float *v = vc + (int64_t)vslot(k, n_past, slot) * D + d0;
        UNROLL8 for (int c = 0; c < NC; c++) {
            __m256 vv = _mm256_loadu_ps(v + 8 * c);
            acc[0][h][c] = _mm256_fmadd_ps(e0, vv, acc[0][h][c]);
            acc[1][h][c] = _mm256_fmadd_ps(e1, vv, acc[1][h][c]);
        }
    }
    UNROLL8 for (int q = 0; q < 2; q++) {
        __m256 den = _mm256_set1_ps(q ? sum1 : sum0);
        float *out = q ? out1 : out0;
        UNROLL8 for (int c = 0; c < NC; c++) {
            __m256 r = acc[q][0][c];
            if (CH == 2) r = _mm256_add_ps(acc[q][0][c], acc[q][1][c]);
            if (CH == 4) r = _mm256_add_ps(_mm256_add_ps(acc[q][0][c], acc[q][1][c]), _mm256_add_ps(acc[q][2][c], acc[q][3][c]));
            _mm256_storeu_ps(out + d0 + 8 * c, _mm256_div_ps(r, den));
        }
    }
}
#else
static float dot_f32(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

/* p[s] = exp(p[s] - max) for s < n. */
static void exp_shifted(float *p, int n, float max) {
    for (int s = 0; s < n; s++) p[s] = expf(p[s] - max);
}
#endif

#ifdef MOGE_AVX2
/* Row i's raw scores p[0..n_slots) (slot order) into softmax weights: scaled, the visible
 * uncommitted slots compacted after the committed ones (their slot numbers in slot[]), then
 * exp(p - max). Returns the count of visible slots nv; *sum_out gets their sum (lane k % 8 takes
 * ordinal k, the lanes added in hsum's order). */
static int softmax_row(const attn_args *a, int i, float *p, int *slot, float scale, float *sum_out) {
    int last = a->visible ? a->n_prev + a->n : a->n_prev + i + 1; /* uncommitted rows to look at */
    const uint8_t *vis = a->visible ? a->visible + (int64_t)i * a->ld : NULL;
    float maxs = -INFINITY;
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
    int nv = a->n_past;
    for (int j = 0; j < last; j++) {
        if (vis && !vis[j]) continue;
        float v = p[a->n_past + j] * scale;
        p[nv] = v;
        slot[nv - a->n_past] = a->n_past + j;
        nv++;
        maxs = v > maxs ? v : maxs;
    }
    exp_shifted(p, nv, maxs);
    __m256 vsum = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= nv; k += 8) vsum = _mm256_add_ps(vsum, _mm256_loadu_ps(p + k));
    _mm256_storeu_ps(lanes, vsum);
    for (; k < nv; k++) lanes[k % 8] += p[k];
    *sum_out = hsum(_mm256_loadu_ps(lanes));
    return nv;
}

/* The chains of v_accum's pass over elements d.. (up to 64 of them, fixed by D): how many
 * 8-element chunks (*nc) and how many interleaved chains (returned). */
static inline int v_pass(int D, int d, int *nc) {
    *nc = (D - d) / 8 < 8 ? (D - d) / 8 : 8;
    return *nc >= 5 ? 1 : *nc >= 3 ? 2 : 4;
}
#endif

/* Row i, head h of a; the scores live in p (backend_attn_ws_stride(n_ctx): n_ctx + 8 floats,
 * then n_ctx ints of slot numbers). */
ALWAYS_INLINE void attn_item_d(const attn_args *a, int i, int h, float *p, int D) {
    int group = a->n_head / a->n_head_kv;
    float scale = 1.0f / sqrtf((float)D);
    const float *q = a->q + ((int64_t)i * a->n_head + h) * D;
    const float *kc = a->k_cache + (int64_t)(h / group) * a->n_ctx * D;
    const float *vc = a->v_cache + (int64_t)(h / group) * a->n_ctx * D;
    float *out = a->out + ((int64_t)i * a->n_head + h) * D;
    int last = a->visible ? a->n_prev + a->n : a->n_prev + i + 1; /* uncommitted rows to look at */
    int n_slots = a->n_past + last;
#ifdef MOGE_AVX2
    for (int s0 = 0; s0 < n_slots; s0 += 8) scores8(q, kc, s0, n_slots, D, p);
    int *slot = (int *)(p + a->n_ctx + 8);
    float sum;
    int nv = softmax_row(a, i, p, slot, scale, &sum), d = 0;
    while (d + 8 <= D) { /* up to 64 elements per pass over the slots; chains fixed by D */
        int nc;
        v_pass(D, d, &nc); /* the switch spells its chains out as constants */
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
        for (int k = 0; k < nv; k++) acc = fmaf(p[k], vc[(int64_t)vslot(k, a->n_past, slot) * D + d], acc);
        out[d] = acc / sum;
    }
#else
    const uint8_t *vis = a->visible ? a->visible + (int64_t)i * a->ld : NULL;
    float maxs = -INFINITY;
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

#ifdef MOGE_AVX2
/* Row i, heads h and h + 1, which share their keys and values (D a multiple of 8): attn_item_d's
 * results for both, the same bits, with every key and value vector loaded once for the two (the
 * second head's scores in p2, backend_attn_ws_stride's third part). */
ALWAYS_INLINE void attn_pair_d(const attn_args *a, int i, int h, float *p, float *p2, int D) {
    int group = a->n_head / a->n_head_kv;
    float scale = 1.0f / sqrtf((float)D);
    const float *q0 = a->q + ((int64_t)i * a->n_head + h) * D, *q1 = q0 + D;
    const float *kc = a->k_cache + (int64_t)(h / group) * a->n_ctx * D;
    const float *vc = a->v_cache + (int64_t)(h / group) * a->n_ctx * D;
    float *out0 = a->out + ((int64_t)i * a->n_head + h) * D, *out1 = out0 + D;
    int n_slots = a->n_past + (a->visible ? a->n_prev + a->n : a->n_prev + i + 1);
    for (int s0 = 0; s0 < n_slots; s0 += 4) scores4x2(q0, q1, kc, s0, n_slots, D, p, p2);
    int *slot = (int *)(p + a->n_ctx + 8);
    float sum0, sum1;
    int nv = softmax_row(a, i, p, slot, scale, &sum0);
    softmax_row(a, i, p2, slot, scale, &sum1); /* the same slots */
    for (int d = 0; d < D;) {
        int nc, ch = v_pass(D, d, &nc), step = 4 / ch; /* 8 accumulators per call */
        for (int c0 = 0; c0 < nc; c0 += step) {
            int n = nc - c0 < step ? nc - c0 : step, d0 = d + 8 * c0;
#define V2(NC_, CH_) v_accum2(NC_, CH_, p, p2, nv, vc, a->n_past, slot, D, d0, sum0, sum1, out0, out1)
            if (ch == 1) {
                switch (n) {
                case 4: V2(4, 1); break;
                case 3: V2(3, 1); break;
                case 2: V2(2, 1); break;
                default: V2(1, 1); break;
                }
            } else if (ch == 2) {
                if (n == 2) V2(2, 2);
                else V2(1, 2);
            } else V2(1, 4);
#undef V2
        }
        d += nc * 8;
    }
}
#endif

/* Row i, head h: attn_item_d with the common head sizes known to the compiler (the chunk loops
 * unrolled, constant offsets: 16 rows over 448 slots about a fifth faster, measured on a Zen 3). */
static void attn_item(const attn_args *a, int i, int h, float *p) {
    switch (a->head_dim) {
    case 32: attn_item_d(a, i, h, p, 32); break;
    case 64: attn_item_d(a, i, h, p, 64); break;
    case 128: attn_item_d(a, i, h, p, 128); break;
    default: attn_item_d(a, i, h, p, a->head_dim); break;
    }
}

/* Row i, the query heads h0 .. h1 - 1 that share a key/value head: in pairs where the vector
 * kernels have them (head sizes a multiple of 8), else one at a time. */
static void attn_heads(const attn_args *a, int i, int h0, int h1, float *p) {
    int h = h0;
#ifdef MOGE_AVX2
    float *p2 = p + 2 * (int64_t)a->n_ctx + 8;
    if (a->head_dim % 8 == 0)
        for (; h + 2 <= h1; h += 2) switch (a->head_dim) {
            case 32: attn_pair_d(a, i, h, p, p2, 32); break;
            case 64: attn_pair_d(a, i, h, p, p2, 64); break;
            case 128: attn_pair_d(a, i, h, p, p2, 128); break;
            default: attn_pair_d(a, i, h, p, p2, a->head_dim); break;
            }
#endif
    for (; h < h1; h++) attn_item(a, i, h, p);
}

/* Task t handles a contiguous share of the (set, key/value head, row) items, numbered over every
 * set in order and within a set by key/value head first: the rows of one key/value head follow
 * each other on one thread, each item the query heads that share it one after the other, so a
 * head's keys and values are read from memory once and then from the core's cache (numbered by
 * row first, a core cycled through every head's keys and values for each row, and at a context
 * of a few hundred slots they no longer fit its L2). Its scores live in
 * ws + t * backend_attn_ws_stride(n_ctx). */
static void attn_task(void *arg, int t) {
    const attn_job *job = arg;
    float *p = job->ws + (int64_t)t * backend_attn_ws_stride(job->a[0].n_ctx);
    int64_t lo = job->items * t / job->n_tasks, hi = job->items * (t + 1) / job->n_tasks, base = 0;
    for (int j = 0; j < job->n_args && base < hi; j++) {
        const attn_args *a = &job->a[j];
        int group = a->n_head / a->n_head_kv;
        int64_t items = (int64_t)a->n * a->n_head_kv;
        for (int64_t item = lo > base ? lo - base : 0; item < items && base + item < hi; item++) {
            int kh = (int)(item / a->n), i = (int)(item % a->n);
            attn_heads(a, i, kh * group, (kh + 1) * group, p);
        }
        base += items;
    }
}

void cpu_attention(const backend_env *env, const attn_args *a, int n_args) {
    attn_job job = {.a = a, .n_args = n_args, .ws = env->attn_ws, .n_tasks = threadpool_size(env->pool)};
    int64_t items = 0, work = 0;
    for (int j = 0; j < n_args; j++) {
        items += (int64_t)a[j].n * a[j].n_head_kv;
        work += (int64_t)a[j].n * a[j].n_head * (a[j].n_past + a[j].n_prev + a[j].n) * a[j].head_dim;
    }
    if (n_args < 1 || items < 1) return;
    job.items = items;
    if (job.n_tasks > items) job.n_tasks = (int)items;
    if (work < (1 << 16)) job.n_tasks = 1;
    threadpool_run(env->pool, job.n_tasks, attn_task, &job);
}
