/*
 * backend_ref.c — the reference backend: the most direct loops, double accumulators, no
 * libraries. It is slow on purpose; it is the oracle the fast backend is tested against.
 */
#include <math.h>
#include "runtime/backend.h"

/* Values b0 .. b0 + m - 1 of row x as the matmul multiplies them: W8A8 / W4A8 weights (DTYPE_Q8A8,
 * DTYPE_Q4A8) multiply the int8-quantized values (quant_act8_row over the block, the rounding the
 * cpu kernels make), other weights x itself. */
static void ref_act_block(const tensor *w, const float *x, int64_t b0, int m, double *v) {
    if (!dtype_act8(w->type)) {
        for (int j = 0; j < m; j++) v[j] = x[b0 + j];
        return;
    }
    int8_t q[QBLOCK];
    float d;
    int32_t s;
    quant_act8_row(x + b0, m, q, &d, &s);
    for (int j = 0; j < m; j++) v[j] = (double)q[j] * d;
}

static void ref_matmul(const backend_env *env, float *y, const float *x, int n, const tensor *w, const float *bias) {
    (void)env;
    int64_t out = w->shape[0], in = w->shape[1];
    for (int r = 0; r < n; r++)
        for (int64_t o = 0; o < out; o++) {
            double acc = bias ? bias[o] : 0.0, v[QBLOCK];
            for (int64_t b0 = 0; b0 < in; b0 += QBLOCK) {
                int m = in - b0 < QBLOCK ? (int)(in - b0) : QBLOCK;
                ref_act_block(w, x + (int64_t)r * in, b0, m, v);
                for (int j = 0; j < m; j++) acc += (double)tensor_get(w, o * in + b0 + j) * v[j];
            }
            y[(int64_t)r * out + o] = (float)acc;
        }
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (int64_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        double scale = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) y[(int64_t)r * dim + i] = (float)(xr[i] * scale * w[i]);
    }
}

static void ref_rope(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq) {
    int half = head_dim / 2;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)r * n_heads + h) * head_dim;
            for (int j = 0; j < half; j++) {
                double angle = (float)pos[r] * inv_freq[j];
                double c = cos(angle), s = sin(angle), a = v[j], b = v[j + half];
                v[j] = (float)(a * c - b * s);
                v[j + half] = (float)(b * c + a * s);
            }
        }
}

static void ref_attention_one(const backend_env *env, const attn_args *a) {
    int group = a->n_head / a->n_head_kv, D = a->head_dim, n_unc = a->n_prev + a->n;
    double scale = 1.0 / sqrt((double)D);
    float *scores = env->attn_ws;
    for (int i = 0; i < a->n; i++)
        for (int h = 0; h < a->n_head; h++) {
            const float *q = a->q + ((int64_t)i * a->n_head + h) * D;
            const float *kc = a->k_cache + (int64_t)(h / group) * a->n_ctx * D;
            const float *vc = a->v_cache + (int64_t)(h / group) * a->n_ctx * D;
            float *out = a->out + ((int64_t)i * a->n_head + h) * D;
            int n_slots = a->n_past + n_unc;
            double maxs = -INFINITY;
            for (int s = 0; s < n_slots; s++) {
                int j = s - a->n_past; /* uncommitted row index, or negative for a committed slot */
                int vis = j < 0 || (a->visible ? a->visible[(int64_t)i * a->ld + j] : j <= a->n_prev + i);
                if (!vis) { scores[s] = NAN; continue; }
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double)q[d] * kc[(int64_t)s * D + d];
                scores[s] = (float)(dot * scale);
                if (scores[s] > maxs) maxs = scores[s];
            }
            double sum = 0;
            for (int s = 0; s < n_slots; s++)
                if (!isnan(scores[s])) sum += exp(scores[s] - maxs);
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int s = 0; s < n_slots; s++)
                    if (!isnan(scores[s])) acc += exp(scores[s] - maxs) / sum * vc[(int64_t)s * D + d];
                out[d] = (float)acc;
            }
        }
}

static void ref_attention(const backend_env *env, const attn_args *a, int n_args) {
    for (int j = 0; j < n_args; j++) ref_attention_one(env, &a[j]);
}

static void ref_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double x = g[i];
        g[i] = (float)(x / (1.0 + exp(-x)) * u[i]);
    }
}

/* Each (row, expert) pair on its own: the obviously correct MoE. Without out (a rank of a job),
 * only the pairs of the devices' experts, into pair_out. */
static void ref_moe_experts(const backend_env *env, const moe_args *a) {
    float *g = a->thread_scratch, *u = g + a->n_ff, *y = u + a->n_ff;
    int lo = a->device_begin[0], hi = a->device_begin[a->n_devices];
    for (int r = 0; r < a->n; r++) {
        const float *x = a->x + (int64_t)r * a->n_embd;
        float *out = a->out ? a->out + (int64_t)r * a->n_embd : NULL;
        for (int i = 0; out && i < a->n_embd; i++) out[i] = 0.0f;
        for (int j = 0; j < a->k; j++) {
            int e = a->experts[r * a->k + j];
            if (e < lo || e >= hi) continue;
            float *yp = out ? y : a->pair_out + (int64_t)(r * a->k + j) * a->n_embd;
            ref_matmul(env, g, x, 1, &a->gate[e], NULL);
            ref_matmul(env, u, x, 1, &a->up[e], NULL);
            ref_swiglu(g, u, a->n_ff);
            ref_matmul(env, yp, g, 1, &a->down[e], NULL);
            for (int i = 0; out && i < a->n_embd; i++) out[i] += a->weights[r * a->k + j] * y[i];
        }
    }
}

const backend_ops backend_ref = {
    .name = "ref",
    .matmul = ref_matmul,
    .rmsnorm = ref_rmsnorm,
    .rope = ref_rope,
    .attention = ref_attention,
    .swiglu = ref_swiglu,
    .moe_experts = ref_moe_experts,
    .quant_act_row = quant_act_row,
    .quant_act8_row = quant_act8_row,
};
