/*
 * backend_cpu.c — the fast CPU backend: OpenBLAS GEMM/GEMV for matrices (F16/BF16 weights are
 * converted to f32 a block of rows at a time), float loops the compiler vectorises for the rest.
 * Threads: OpenBLAS's own pool, sized by backend_cpu_set_threads().
 */
#include <cblas.h>
#include <math.h>
#include <string.h>
#include "runtime/backend.h"
#include "runtime/threadpool.h"

void backend_cpu_set_threads(int n_threads) {
    if (n_threads > 0) openblas_set_num_threads(n_threads);
}

/* One output row of a 16-bit weight matrix against one input row. */
static float dot_row_16(const tensor *w, int64_t row, const float *x, int64_t in) {
    const uint16_t *wr = (const uint16_t *)w->data + row * in;
    float acc[8] = {0};
    int64_t i = 0;
    if (w->type == DTYPE_BF16) {
        for (; i + 8 <= in; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += bf16_to_f32(wr[i + k]) * x[i + k];
        for (; i < in; i++) acc[0] += bf16_to_f32(wr[i]) * x[i];
    } else {
        for (; i + 8 <= in; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += f16_to_f32(wr[i + k]) * x[i + k];
        for (; i < in; i++) acc[0] += f16_to_f32(wr[i]) * x[i];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void cpu_matmul(float *y, const float *x, int n, const tensor *w, const float *bias, float *ws) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    float beta = 0.0f;
    if (bias) {
        for (int r = 0; r < n; r++) memcpy(y + (int64_t)r * out, bias, (size_t)out * sizeof(float));
        beta = 1.0f;
    }
    if (w->type == DTYPE_F32) {
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w->data, in, x, 1, beta, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w->data, in, beta, y, out);
        return;
    }
    if (n == 1) {
        for (int o = 0; o < out; o++) y[o] = (bias ? bias[o] : 0.0f) + dot_row_16(w, o, x, in);
        return;
    }
    for (int r0 = 0; r0 < out; r0 += BACKEND_MATMUL_BLOCK) {
        int rows = out - r0 < BACKEND_MATMUL_BLOCK ? out - r0 : BACKEND_MATMUL_BLOCK;
        tensor_to_f32(w, (int64_t)r0 * in, (int64_t)rows * in, ws);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, in, 1.0f, x, in, ws, in, beta, y + r0, out);
    }
}

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
    float c[half > 0 ? half : 1], s[half > 0 ? half : 1];
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < half; j++) {
            float angle = (float)pos[r] * inv_freq[j];
            c[j] = cosf(angle);
            s[j] = sinf(angle);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)r * n_heads + h) * head_dim;
            for (int j = 0; j < half; j++) {
                float a = v[j], b = v[j + half];
                v[j] = a * c[j] - b * s[j];
                v[j + half] = b * c[j] + a * s[j];
            }
        }
    }
}

static void cpu_attention(const attn_args *a) {
    int group = a->n_head / a->n_head_kv, D = a->head_dim;
    float scale = 1.0f / sqrtf((float)D);
    float *p = a->scratch;
    for (int i = 0; i < a->n; i++) {
        /* Causal rows only look at slots up to their own; tree rows score every slot, then mask. */
        int n_slots = a->visible ? a->n_past + a->n : a->n_past + i + 1;
        for (int h = 0; h < a->n_head; h++) {
            const float *q = a->q + ((int64_t)i * a->n_head + h) * D;
            const float *kc = a->k_cache + (int64_t)(h / group) * a->n_ctx * D;
            const float *vc = a->v_cache + (int64_t)(h / group) * a->n_ctx * D;
            float *out = a->out + ((int64_t)i * a->n_head + h) * D;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n_slots, D, scale, kc, D, q, 1, 0.0f, p, 1);
            if (a->visible) {
                const uint8_t *vis = a->visible + (int64_t)i * a->n;
                for (int j = 0; j < a->n; j++)
                    if (!vis[j]) p[a->n_past + j] = -INFINITY;
            }
            float maxs = -INFINITY, sum = 0.0f;
            for (int s = 0; s < n_slots; s++) maxs = p[s] > maxs ? p[s] : maxs;
            for (int s = 0; s < n_slots; s++) {
                p[s] = expf(p[s] - maxs);
                sum += p[s];
            }
            cblas_sgemv(CblasRowMajor, CblasTrans, n_slots, D, 1.0f / sum, vc, D, p, 1, 0.0f, out, 1);
        }
    }
}

static void cpu_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* y (n, out) = x (n, in) · Wᵀ without OpenBLAS (safe inside pool workers): each weight row is
 * read (and converted) once and used for all n rows. wrow: scratch of `in` floats. */
static void matmul_rows(float *y, const float *x, int n, const tensor *w, float *wrow) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    for (int o = 0; o < out; o++) {
        const float *wr;
        if (w->type == DTYPE_F32) {
            wr = (const float *)w->data + (int64_t)o * in;
        } else {
            tensor_to_f32(w, (int64_t)o * in, in, wrow);
            wr = wrow;
        }
        for (int r = 0; r < n; r++) {
            const float *xr = x + (int64_t)r * in;
            float acc[8] = {0};
            int i = 0;
            for (; i + 8 <= in; i += 8)
                for (int k = 0; k < 8; k++) acc[k] += wr[i + k] * xr[i + k];
            for (; i < in; i++) acc[0] += wr[i] * xr[i];
            y[(int64_t)r * out + o] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
    }
}

/* One device: every active expert it owns, one small GEMM each over the expert's gathered rows. */
static void moe_device_task(void *arg, int d) {
    const moe_args *a = arg;
    int E = a->n_embd, F = a->n_ff;
    float *xs = a->dev_scratch + (int64_t)d * moe_scratch_floats(a->n, E, F);
    float *g = xs + (int64_t)a->n * E, *u = g + (int64_t)a->n * F, *y = u + (int64_t)a->n * F, *wrow = y + (int64_t)a->n * E;
    for (int e = a->device_begin[d]; e < a->device_begin[d + 1]; e++) {
        int first = a->offset[e], cnt = a->offset[e + 1] - first;
        if (cnt == 0) continue;
        for (int i = 0; i < cnt; i++)
            memcpy(xs + (int64_t)i * E, a->x + (int64_t)(a->order[first + i] / a->k) * E, (size_t)E * sizeof(float));
        matmul_rows(g, xs, cnt, &a->gate[e], wrow);
        matmul_rows(u, xs, cnt, &a->up[e], wrow);
        cpu_swiglu(g, u, (int64_t)cnt * F);
        matmul_rows(y, g, cnt, &a->down[e], wrow);
        for (int i = 0; i < cnt; i++)
            memcpy(a->pair_out + (int64_t)a->order[first + i] * E, y + (int64_t)i * E, (size_t)E * sizeof(float));
    }
}

static void cpu_moe_experts(const moe_args *a) {
    int n_pairs = a->n * a->k, E = a->n_embd;
    /* counting sort of the (row, slot) pairs by expert; rows stay in order within an expert */
    memset(a->offset, 0, (size_t)(a->n_expert + 1) * sizeof(int32_t));
    for (int p = 0; p < n_pairs; p++) a->offset[a->experts[p] + 1]++;
    for (int e = 0; e < a->n_expert; e++) a->offset[e + 1] += a->offset[e];
    for (int p = 0; p < n_pairs; p++) a->order[a->offset[a->experts[p]]++] = p;
    for (int e = a->n_expert; e > 0; e--) a->offset[e] = a->offset[e - 1];
    a->offset[0] = 0;
    threadpool_run(a->pool, a->n_devices, moe_device_task, (void *)a);
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
