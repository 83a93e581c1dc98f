/*
 * backend_cpu.c — the fast CPU backend.
 *
 * Matmul: for batches of up to BACKEND_INVARIANT_ROWS rows (decode, draft levels, tree
 * verification) an AVX2/FMA kernel reads each weight row once for all rows of the batch (up to 4
 * rows share one pass over the row in registers) and splits output rows over the thread pool;
 * each output value is a fixed sequence of FMAs, so it does not depend on the rest of the batch.
 * Larger batches (prompt prefill) go to OpenBLAS GEMM (F16/BF16 weights converted a block of rows
 * at a time). Attention walks the visible slots in slot order. Everything else is row-wise.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MOGE_AVX2 1
#endif

#include "runtime/backend.h"
#include "runtime/threadpool.h"

void backend_cpu_set_threads(int n_threads) {
    if (n_threads > 0) openblas_set_num_threads(n_threads);
}

/* ------------------------------------------------------------------------------------------ */
/* dot products with a fixed reduction order                                                  */
/* ------------------------------------------------------------------------------------------ */

#ifdef MOGE_AVX2
static inline __m256 load8(const tensor *w, const void *p) {
    switch (w->type) {
    case DTYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    case DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    default:
        return _mm256_loadu_ps((const float *)p);
    }
}

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#endif

/* y[r * ldy] = W[o] · x[r] for r < n (n <= 4): one pass over the weight row. */
static void dot_rows(const tensor *w, int64_t o, int in, const float *x, int n, float *y, int64_t ldy) {
    int i = 0;
    float acc_tail[4] = {0, 0, 0, 0};
#ifdef MOGE_AVX2
    size_t esz = dtype_size(w->type);
    const char *wr = (const char *)w->data + (size_t)o * in * esz;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; i + 8 <= in; i += 8) {
        __m256 wv = load8(w, wr + (size_t)i * esz);
        for (int r = 0; r < n; r++) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (int64_t)r * in + i), acc[r]);
    }
#endif
    for (; i < in; i++) {
        float wv = tensor_get(w, (int64_t)o * in + i);
        for (int r = 0; r < n; r++) acc_tail[r] += wv * x[(int64_t)r * in + i];
    }
    for (int r = 0; r < n; r++) {
#ifdef MOGE_AVX2
        y[r * ldy] = hsum(acc[r]) + acc_tail[r];
#else
        y[r * ldy] = acc_tail[r];
#endif
    }
}

/* y (n, out) rows [o0, o1) = x · Wᵀ + bias. */
static void matmul_range(float *y, const float *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r += 4) {
            int m = n - r < 4 ? n - r : 4;
            dot_rows(w, o, in, x + (int64_t)r * in, m, y + (int64_t)r * out + o, out);
            if (bias)
                for (int k = 0; k < m; k++) y[(int64_t)(r + k) * out + o] += bias[o];
        }
}

typedef struct {
    float *y;
    const float *x;
    int n, n_tasks;
    const tensor *w;
    const float *bias;
} matmul_job;

static void matmul_task(void *arg, int t) {
    const matmul_job *j = arg;
    int out = (int)j->w->shape[0];
    int o0 = (int)((int64_t)out * t / j->n_tasks), o1 = (int)((int64_t)out * (t + 1) / j->n_tasks);
    matmul_range(j->y, j->x, j->n, j->w, j->bias, o0, o1);
}

static void cpu_matmul(const backend_env *env, float *y, const float *x, int n, const tensor *w, const float *bias) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    if (n <= BACKEND_INVARIANT_ROWS) {
        /* small products are not worth waking the pool for (about 50 µs of hand-over) */
        int threads = threadpool_size(env->pool);
        int64_t work = (int64_t)out * in * n;
        matmul_job j = {.y = y, .x = x, .n = n, .n_tasks = work >= (1 << 18) && out >= 16 * threads ? 4 * threads : 1, .w = w, .bias = bias};
        threadpool_run(env->pool, j.n_tasks, matmul_task, &j);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int r = 0; r < n; r++) memcpy(y + (int64_t)r * out, bias, (size_t)out * sizeof(float));
        beta = 1.0f;
    }
    if (w->type == DTYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w->data, in, beta, y, out);
        return;
    }
    for (int r0 = 0; r0 < out; r0 += BACKEND_MATMUL_BLOCK) {
        int rows = out - r0 < BACKEND_MATMUL_BLOCK ? out - r0 : BACKEND_MATMUL_BLOCK;
        tensor_to_f32(w, (int64_t)r0 * in, (int64_t)rows * in, env->ws);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, in, 1.0f, x, in, env->ws, in, beta, y + r0, out);
    }
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

static void cpu_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ------------------------------------------------------------------------------------------ */
/* attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static float dot_f32(const float *a, const float *b, int n) {
    int i = 0;
    float tail = 0.0f;
#ifdef MOGE_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
#endif
    for (; i < n; i++) tail += a[i] * b[i];
#ifdef MOGE_AVX2
    return hsum(acc) + tail;
#else
    return tail;
#endif
}

typedef struct {
    const attn_args *a;
    float *ws;
    int n_tasks;
} attn_job;

/* Task t handles the (row, head) items t, t + n_tasks, ...; its scores live in ws + t * n_ctx. */
static void attn_task(void *arg, int t) {
    const attn_job *job = arg;
    const attn_args *a = job->a;
    int group = a->n_head / a->n_head_kv, D = a->head_dim, n_unc = a->n_prev + a->n;
    float scale = 1.0f / sqrtf((float)D);
    float *p = job->ws + (int64_t)t * a->n_ctx;
    for (int item = t; item < a->n * a->n_head; item += job->n_tasks) {
        int i = item / a->n_head, h = item % a->n_head;
        const float *q = a->q + ((int64_t)i * a->n_head + h) * D;
        const float *kc = a->k_cache + (int64_t)(h / group) * a->n_ctx * D;
        const float *vc = a->v_cache + (int64_t)(h / group) * a->n_ctx * D;
        float *out = a->out + ((int64_t)i * a->n_head + h) * D;
        int last = a->visible ? n_unc : a->n_prev + i + 1; /* uncommitted rows to look at */
        const uint8_t *vis = a->visible ? a->visible + (int64_t)i * a->ld : NULL;
        float maxs = -INFINITY;
        for (int s = 0; s < a->n_past + last; s++) {
            int j = s - a->n_past;
            if (j >= 0 && vis && !vis[j]) continue;
            p[s] = dot_f32(q, kc + (int64_t)s * D, D) * scale;
            maxs = p[s] > maxs ? p[s] : maxs;
        }
        float sum = 0.0f;
        for (int d = 0; d < D; d++) out[d] = 0.0f;
        for (int s = 0; s < a->n_past + last; s++) {
            int j = s - a->n_past;
            if (j >= 0 && vis && !vis[j]) continue;
            float e = expf(p[s] - maxs);
            sum += e;
            const float *v = vc + (int64_t)s * D;
            for (int d = 0; d < D; d++) out[d] += e * v[d];
        }
        for (int d = 0; d < D; d++) out[d] /= sum;
    }
}

static void cpu_attention(const backend_env *env, const attn_args *a) {
    attn_job job = {.a = a, .ws = env->attn_ws, .n_tasks = threadpool_size(env->pool)};
    if (job.n_tasks > a->n * a->n_head) job.n_tasks = a->n * a->n_head;
    if ((int64_t)a->n * a->n_head * (a->n_past + a->n_prev + a->n) * a->head_dim < (1 << 16)) job.n_tasks = 1;
    threadpool_run(env->pool, job.n_tasks, attn_task, &job);
}

/* ------------------------------------------------------------------------------------------ */
/* MoE dispatch                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* One device: every active expert it owns, one small GEMM each over the expert's gathered rows.
 * Runs inside a pool task, so its matmuls are single-threaded (matmul_range). */
static void moe_device_task(void *arg, int d) {
    const moe_args *a = arg;
    int E = a->n_embd, F = a->n_ff;
    float *xs = a->dev_scratch + (int64_t)d * moe_scratch_floats(a->n, E, F);
    float *g = xs + (int64_t)a->n * E, *u = g + (int64_t)a->n * F, *y = u + (int64_t)a->n * F;
    for (int e = a->device_begin[d]; e < a->device_begin[d + 1]; e++) {
        int first = a->offset[e], cnt = a->offset[e + 1] - first;
        if (cnt == 0) continue;
        for (int i = 0; i < cnt; i++)
            memcpy(xs + (int64_t)i * E, a->x + (int64_t)(a->order[first + i] / a->k) * E, (size_t)E * sizeof(float));
        matmul_range(g, xs, cnt, &a->gate[e], NULL, 0, F);
        matmul_range(u, xs, cnt, &a->up[e], NULL, 0, F);
        cpu_swiglu(g, u, (int64_t)cnt * F);
        matmul_range(y, g, cnt, &a->down[e], NULL, 0, E);
        for (int i = 0; i < cnt; i++)
            memcpy(a->pair_out + (int64_t)a->order[first + i] * E, y + (int64_t)i * E, (size_t)E * sizeof(float));
    }
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
    threadpool_run(env->pool, a->n_devices, moe_device_task, (void *)a);
    for (int r = 0; r < a->n; r++) {
        float *out = a->out + (int64_t)r * E;
        for (int i = 0; i < E; i++) out[i] = 0.0f;
        for (int j = 0; j < a->k; j++) {
            const float *y = a->pair_out + (int64_t)(r * a->k + j) * E;
            float w = a->weights[r * a->k + j];
            for (int i = 0; i < E; i++) out[i] += w * y[i];
        }
    }
}

const backend_ops backend_cpu = {
    .name = "cpu",
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .moe_experts = cpu_moe_experts,
};
