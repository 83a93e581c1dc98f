/*
 * test_backend_ops.c — every op of the cpu backend against the ref backend on random inputs,
 * compared by normalised error ||cpu - ref|| / ||ref||, once per cpu kernel variant this
 * processor runs (test_kernels.h).
 */
#include <stdint.h>

#include "harness.h"
#include "test_util.h"
#include "test_kernels.h"
#include "runtime/backend.h"
#include "runtime/quant.h"
#include "runtime/threadpool.h"

static uint64_t rng = 12345;
static float ws_buf[64 * 256], attn_buf[2 * 4096];
static backend_env env = {.ws = ws_buf, .attn_ws = attn_buf};
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}
static void fill(float *x, int64_t n, float scale) { for (int64_t i = 0; i < n; i++) x[i] = frand() * scale; }

static uint16_t f32_to_bf16(float f) { uint32_t b; memcpy(&b, &f, 4); return (uint16_t)(b >> 16); }
/* f32 -> f16 by truncation; inputs are in the normal range of f16. */
static uint16_t f32_to_f16(float f) {
    uint32_t b; memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000;
    int32_t exp = (int32_t)((b >> 23) & 0xff) - 127 + 15;
    if (exp <= 0) return (uint16_t)sign;
    return (uint16_t)(sign | ((uint32_t)exp << 10) | ((b >> 13) & 0x3ff));
}

#define TOL 1e-5

static void check_matmul(dtype type, int n, int out, int in, int with_bias, int panel) {
    float *wf = malloc((size_t)out * in * sizeof(float));
    uint16_t *w16 = malloc((size_t)out * in * sizeof(uint16_t));
    float *x = malloc((size_t)n * in * sizeof(float)), *bias = malloc((size_t)out * sizeof(float));
    float *y1 = malloc((size_t)n * out * sizeof(float)), *y2 = malloc((size_t)n * out * sizeof(float));
    fill(wf, (int64_t)out * in, 0.5f);
    fill(x, (int64_t)n * in, 1.0f);
    fill(bias, out, 1.0f);
    for (int64_t i = 0; i < (int64_t)out * in; i++) w16[i] = type == DTYPE_BF16 ? f32_to_bf16(wf[i]) : f32_to_f16(wf[i]);
    tensor w = {.name = "w", .type = type, .n_dims = 2, .shape = {out, in}, .data = type == DTYPE_F32 ? (void *)wf : (void *)w16};
    void *packed = NULL;
    if (panel) { /* the layout the cpu backend gets at load; ref reads it through tensor_get */
        packed = aligned_alloc(64, (tensor_panel_bytes(type, out, in) + 63) / 64 * 64);
        tensor_pack_panels(&w, packed, &w);
    }
    backend_ref.matmul(&env, y1, x, n, &w, with_bias ? bias : NULL);
    cpu->matmul(&env, y2, x, n, &w, with_bias ? bias : NULL);
    double e = nerr(y2, y1, (int64_t)n * out);
    CHECKF(e < TOL, "matmul %s%s n=%d out=%d in=%d bias=%d: normalised error %.3g", dtype_name(type), panel ? " panels" : "", n,
           out, in, with_bias, e);
    if (panel) { /* exactly one fmaf chain per value, in element order */
        int exact = 1;
        for (int r = 0; r < n && exact; r++)
            for (int o = 0; o < out && exact; o++) {
                float acc = 0.0f;
                for (int k = 0; k < in; k++) acc = fmaf(x[(int64_t)r * in + k], tensor_get(&w, (int64_t)o * in + k), acc);
                if (with_bias) acc += bias[o];
                exact = memcmp(&acc, &y2[(int64_t)r * out + o], sizeof acc) == 0 || (acc == 0.0f && y2[(int64_t)r * out + o] == 0.0f);
            }
        CHECKF(exact, "matmul %s panels n=%d out=%d in=%d: not the element-order fmaf chain", dtype_name(type), n, out, in);
    }
    free(packed); free(wf); free(w16); free(x); free(bias); free(y1); free(y2);
}

static void test_matmul(void) {
    dtype types[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    int rows[] = {1, 2, 3, 7, 16, 64, 65, 100}; /* the tile shapes: 1, 2 and 3 rows have their own, 16 is three passes */
    for (int t = 0; t < 3; t++)
        for (int r = 0; r < 8; r++) {
            check_matmul(types[t], rows[r], 131, 72, 0, 0);
            check_matmul(types[t], rows[r], 70, 33, 1, 0);
            check_matmul(types[t], rows[r], 131, 72, 0, 1); /* partial last panel and tile */
            check_matmul(types[t], rows[r], 70, 33, 1, 1);
            check_matmul(types[t], rows[r], 16, 5, 1, 1);   /* one panel */
            check_matmul(types[t], rows[r], 64, 128, 0, 1); /* whole tiles */
        }
}

/* Q8 / Q4 in panel layout (what the cpu backend holds): every value is exactly the fmaf chain
 * over tensor_get's dequantized weights, for any batch size (so rows are batch-invariant), and
 * close to the ref backend on the row-major blocks. */
static void test_quant_panels(void) {
    dtype types[] = {DTYPE_Q8, DTYPE_Q4};
    int rows[] = {1, 2, 7, 64, 100};
    static const int shapes[][2] = {{70, 72}, {19, 37}}; /* partial panels; a partial block with an odd tail */
    for (int t = 0; t < 4; t++) {
        int out = shapes[t / 2][0], in = shapes[t / 2][1];
        float *wf = malloc((size_t)out * in * sizeof(float)), *row = malloc((size_t)in * sizeof(float));
        fill(wf, (int64_t)out * in, 0.5f);
        tensor src = {.name = "w", .type = DTYPE_F32, .n_dims = 2, .shape = {out, in}, .data = wf}, rm, pw;
        dtype type = types[t % 2];
        void *qbuf = malloc(dtype_row_bytes(type, in) * (size_t)out);
        void *pbuf = aligned_alloc(64, (tensor_panel_bytes(type, out, in) + 63) / 64 * 64);
        quant_tensor(&src, type, qbuf, row, &rm);
        tensor_pack_panels(&rm, pbuf, &pw);
        for (int64_t i = 0; i < (int64_t)out * in; i++)
            if (tensor_get(&pw, i) != tensor_get(&rm, i)) { CHECKF(0, "%s panel value %lld differs", dtype_name(type), (long long)i); break; }
        float *x = malloc((size_t)100 * in * sizeof(float)), *y = malloc((size_t)100 * out * sizeof(float)),
              *y1 = malloc((size_t)out * sizeof(float)), *yr = malloc((size_t)100 * out * sizeof(float));
        fill(x, (int64_t)100 * in, 1.0f);
        for (int ri = 0; ri < 5; ri++) {
            int n = rows[ri];
            cpu->matmul(&env, y, x, n, &pw, NULL);
            backend_ref.matmul(&env, yr, x, n, &rm, NULL);
            CHECKF(nerr(y, yr, (int64_t)n * out) < TOL, "%s panels n=%d: cpu vs ref %.3g", dtype_name(type), n, nerr(y, yr, (int64_t)n * out));
            int exact = 1;
            for (int r = 0; r < n && exact; r++)
                for (int o = 0; o < out && exact; o++) {
                    float acc = 0.0f;
                    for (int k = 0; k < in; k++) acc = fmaf(x[(int64_t)r * in + k], tensor_get(&pw, (int64_t)o * in + k), acc);
                    exact = memcmp(&acc, &y[(int64_t)r * out + o], sizeof acc) == 0;
                }
            CHECKF(exact, "%s panels n=%d: not the element-order fmaf chain", dtype_name(type), n);
            for (int r = 0; r < n; r++) {
                cpu->matmul(&env, y1, x + (int64_t)r * in, 1, &pw, NULL);
                if (memcmp(y1, y + (int64_t)r * out, (size_t)out * sizeof(float))) { CHECKF(0, "%s panels n=%d: row %d differs alone", dtype_name(type), n, r); break; }
            }
        }
        free(wf); free(row); free(qbuf); free(pbuf); free(x); free(y); free(y1); free(yr);
    }
}

/* W8A8 / W4A8 (DTYPE_Q8A8 / Q4A8) in panel layout and row-major: every value is exactly quant.h's act8_dot (the
 * integer block dot products and the fmaf chain over the blocks) on the activations
 * quant_act8_rows makes, at any batch size (more than 64 rows go in chunks), with and without
 * threads and bias; close to the ref backend, which multiplies the same rounded activations in
 * double; the panel values are the row-major ones. */
static void check_act8(dtype type) {
    int rows[] = {1, 2, 3, 5, 7, 8, 64, 65, 130};
    /* partial panels and blocks, 1-4 panel tiles, and the demo target's shapes */
    static const int shapes[][2] = {{70, 72}, {19, 37}, {48, 256}, {33, 200}, {64, 128}, {128, 64}, {512, 128}};
    threadpool *pool = threadpool_new(2);
    backend_env env2 = env;
    env2.pool = pool;
    for (int t = 0; t < 7; t++) {
        int out = shapes[t][0], in = shapes[t][1];
        float *wf = malloc((size_t)out * in * sizeof(float)), *row = malloc((size_t)in * sizeof(float)), *bias = malloc((size_t)out * sizeof(float));
        fill(wf, (int64_t)out * in, 0.5f);
        fill(bias, out, 1.0f);
        tensor src = {.name = "w", .type = DTYPE_F32, .n_dims = 2, .shape = {out, in}, .data = wf}, rm, pw;
        void *qbuf = malloc(dtype_row_bytes(type, in) * (size_t)out);
        void *pbuf = aligned_alloc(64, (tensor_panel_bytes(type, out, in) + 63) / 64 * 64);
        quant_tensor(&src, type, qbuf, row, &rm);
        tensor_pack_panels(&rm, pbuf, &pw);
        CHECK(rm.type == type && pw.panel == TENSOR_PANEL && tensor_panel_bytes(type, out, in) == tensor_panel_bytes(dtype_base(type), out, in));
        /* the panel values are the row-major ones, and those of the base format's quantization */
        tensor base;
        void *bbuf = malloc(dtype_row_bytes(dtype_base(type), in) * (size_t)out);
        quant_tensor(&src, dtype_base(type), bbuf, row, &base);
        for (int64_t i = 0; i < (int64_t)out * in; i++)
            if (tensor_get(&pw, i) != tensor_get(&rm, i) || tensor_get(&rm, i) != tensor_get(&base, i)) {
                CHECKF(0, "%s panel value %lld differs", dtype_name(type), (long long)i);
                break;
            }
        free(bbuf);
        int nmax = 130;
        float *x = malloc((size_t)nmax * in * sizeof(float)), *y = malloc((size_t)nmax * out * sizeof(float)),
              *y1 = malloc((size_t)out * sizeof(float)), *yr = malloc((size_t)nmax * out * sizeof(float));
        float *scratch = malloc((size_t)quant_act8_floats(nmax, in) * sizeof(float));
        fill(x, (int64_t)nmax * in, 1.0f);
        x[5] = 0.0f, x[in + 3] = 40.0f; /* a zero and an outlier */
        act8_rows xa;
        quant_act8_rows(x, nmax, in, scratch, &xa);
        for (int ri = 0; ri < 9; ri++) {
            int n = rows[ri];
            for (int v = 0; v < 4; v++) { /* panels / row-major, pool or not, bias or not */
                const tensor *w = v % 2 ? &rm : &pw;
                const float *b = v >= 2 ? bias : NULL;
                cpu->matmul(v >= 2 ? &env2 : &env, y, x, n, w, b);
                int exact = 1;
                for (int r = 0; r < n && exact; r++)
                    for (int o = 0; o < out && exact; o++) {
                        float want = act8_dot(w, o, &xa, r) + (b ? b[o] : 0.0f);
                        exact = memcmp(&want, &y[(int64_t)r * out + o], sizeof want) == 0;
                    }
                CHECKF(exact, "%s %s n=%d out=%d in=%d%s: not act8_dot", dtype_name(type), v % 2 ? "row-major" : "panels", n, out, in, b ? " bias" : "");
                backend_ref.matmul(&env, yr, x, n, w, b);
                double e = nerr(y, yr, (int64_t)n * out);
                CHECKF(e < TOL, "%s n=%d out=%d in=%d: cpu vs ref %.3g", dtype_name(type), n, out, in, e);
            }
            for (int r = 0; r < n; r += 7) {
                cpu->matmul(&env, y1, x + (int64_t)r * in, 1, &pw, bias);
                cpu->matmul(&env2, y, x, n, &pw, bias);
                if (memcmp(y1, y + (int64_t)r * out, (size_t)out * sizeof(float))) { CHECKF(0, "%s n=%d: row %d differs alone", dtype_name(type), n, r); break; }
            }
        }
        free(wf); free(row); free(bias); free(qbuf); free(pbuf); free(x); free(y); free(y1); free(yr); free(scratch);
    }
    threadpool_free(pool);
}

static void test_act8(void) {
    check_act8(DTYPE_Q8A8);
    check_act8(DTYPE_Q4A8);
}

static void test_rmsnorm(void) {
    /* 96: whole vectors; 1027: the 32-wide loop, one 8-wide step and a scalar tail; 5: the tail alone */
    static const int dims[] = {96, 1027, 5};
    for (int d = 0; d < 3; d++) {
        int n = 5, dim = dims[d];
        float *x = malloc(sizeof(float) * n * dim), *w = malloc(sizeof(float) * dim), *y1 = malloc(sizeof(float) * n * dim),
              *y2 = malloc(sizeof(float) * n * dim), *y3 = malloc(sizeof(float) * n * dim);
        fill(x, n * dim, 3.0f);
        fill(w, dim, 1.0f);
        backend_ref.rmsnorm(y1, x, w, n, dim, 1e-5f);
        cpu->rmsnorm(y2, x, w, n, dim, 1e-5f);
        double e = nerr(y2, y1, n * dim);
        CHECKF(e < TOL, "rmsnorm dim %d: normalised error %.3g", dim, e);
        /* in place (q / k norms) and one row at a time: the same bits */
        memcpy(y3, x, sizeof(float) * n * dim);
        cpu->rmsnorm(y3, y3, w, n, dim, 1e-5f);
        CHECKF(!memcmp(y3, y2, sizeof(float) * n * dim), "rmsnorm dim %d: in place differs", dim);
        for (int r = 0; r < n; r++) cpu->rmsnorm(y3 + r * dim, x + r * dim, w, 1, dim, 1e-5f);
        CHECKF(!memcmp(y3, y2, sizeof(float) * n * dim), "rmsnorm dim %d: one row at a time differs", dim);
        free(x), free(w), free(y1), free(y2), free(y3);
    }
}

static void test_rope(void) {
    /* head widths: one vector of pairs; two and a scalar tail; wider than the cosine table */
    static const int hds[] = {16, 36, 1030};
    float inv[515];
    for (int d = 0; d < 3; d++) {
        int n = 6, heads = 3, hd = hds[d], len = n * heads * hd;
        float *x1 = malloc(sizeof(float) * len), *x2 = malloc(sizeof(float) * len), *x3 = malloc(sizeof(float) * len);
        int32_t pos[6] = {0, 1, 2, 17, 300, 4095};
        for (int j = 0; j < hd / 2; j++) inv[j] = (float)(1.0 / pow(10000.0, 2.0 * j / hd));
        fill(x1, len, 1.0f);
        memcpy(x2, x1, sizeof(float) * len);
        memcpy(x3, x1, sizeof(float) * len);
        backend_ref.rope(x1, pos, n, heads, hd, inv);
        cpu->rope(x2, pos, n, heads, hd, inv);
        double e = nerr(x2, x1, len);
        CHECKF(e < TOL, "rope head_dim %d: normalised error %.3g", hd, e);
        for (int r = 0; r < n; r++) cpu->rope(x3 + r * heads * hd, pos + r, 1, heads, hd, inv); /* one row at a time: the same bits */
        CHECKF(!memcmp(x3, x2, sizeof(float) * len), "rope head_dim %d: one row at a time differs", hd);
        free(x1), free(x2), free(x3);
    }
    int hd = 16;
    for (int j = 0; j < hd / 2; j++) inv[j] = (float)(1.0 / pow(10000.0, 2.0 * j / hd));
    /* Position 0 is the identity. */
    float x3[16], x4[16];
    fill(x3, 16, 1.0f);
    memcpy(x4, x3, sizeof x3);
    int32_t p0 = 0;
    cpu->rope(x4, &p0, 1, 1, 16, inv);
    CHECK(nerr(x4, x3, 16) < 1e-7);
}

/* n_prev earlier uncommitted rows and n new ones; parent (n_prev + n) over all of them, or NULL
 * for causal. */
static void check_attention(int n_past, int n_prev, int n, int heads, int kv_heads, int hd, const int32_t *parent) {
    int n_ctx = n_past + n_prev + n + 3, n_unc = n_prev + n;
    int64_t cache = (int64_t)kv_heads * n_ctx * hd;
    float *kc = malloc(cache * sizeof(float)), *vc = malloc(cache * sizeof(float));
    float *q = malloc((size_t)n * heads * hd * sizeof(float));
    float *o1 = malloc((size_t)n * heads * hd * sizeof(float)), *o2 = malloc((size_t)n * heads * hd * sizeof(float));
    uint8_t *vis = calloc((size_t)n_unc * n_unc, 1);
    fill(kc, cache, 1.0f);
    fill(vc, cache, 1.0f);
    fill(q, (int64_t)n * heads * hd, 1.0f);
    if (parent)
        for (int i = 0; i < n_unc; i++) {
            if (parent[i] >= 0) memcpy(vis + i * n_unc, vis + parent[i] * n_unc, (size_t)n_unc);
            vis[i * n_unc + i] = 1;
        }
    attn_args a = {.out = o1, .q = q, .k_cache = kc, .v_cache = vc, .n_past = n_past, .n_prev = n_prev, .n = n, .n_ctx = n_ctx,
                   .n_head = heads, .n_head_kv = kv_heads, .head_dim = hd, .visible = parent ? vis + n_prev * n_unc : NULL, .ld = n_unc};
    backend_ref.attention(&env, &a, 1);
    a.out = o2;
    cpu->attention(&env, &a, 1);
    double e = nerr(o2, o1, (int64_t)n * heads * hd);
    CHECKF(e < TOL, "attention n_past=%d n_prev=%d n=%d heads=%d/%d tree=%d: normalised error %.3g", n_past, n_prev, n, heads, kv_heads, parent != NULL, e);
    /* threads: the same bits */
    threadpool *pool = threadpool_new(2);
    backend_env env2 = env;
    env2.pool = pool;
    float *o3 = malloc((size_t)n * heads * hd * sizeof(float));
    a.out = o3;
    cpu->attention(&env2, &a, 1);
    CHECK(memcmp(o2, o3, (size_t)n * heads * hd * sizeof(float)) == 0);
    threadpool_free(pool);
    free(kc); free(vc); free(q); free(o1); free(o2); free(o3); free(vis);
}

static void test_attention(void) {
    int32_t tree[7] = {-1, 0, 0, 1, 1, 2, 5};
    check_attention(0, 0, 1, 4, 2, 8, NULL);
    check_attention(0, 0, 9, 4, 2, 8, NULL);
    check_attention(13, 0, 1, 6, 3, 16, NULL);
    check_attention(13, 0, 5, 6, 1, 12, NULL);
    check_attention(0, 0, 7, 4, 4, 8, tree);
    check_attention(21, 0, 7, 8, 2, 12, tree);
    check_attention(21, 3, 4, 8, 2, 12, tree); /* rows 3..6 appended to an uncommitted 0..2 */
    check_attention(5, 4, 3, 4, 2, 16, NULL);
    check_attention(37, 0, 7, 4, 2, 32, tree);
    check_attention(29, 0, 5, 4, 2, 64, NULL);  /* the head sizes attn_item compiles apart: 32, 64, 128 */
    check_attention(19, 0, 7, 4, 1, 128, tree);
    check_attention(70, 2, 5, 2, 1, 64, NULL);
}

/* The cpu matmul gives each row the same bits whatever the other rows of the batch are (up to
 * BACKEND_INVARIANT_ROWS rows), with and without threads. */
static void check_batch_invariance(int panel, int n) {
    int out = 300, in = 172;
    float *w = malloc((size_t)out * in * sizeof(float)), *x = malloc((size_t)n * in * sizeof(float));
    float *y = malloc((size_t)n * out * sizeof(float)), *y1 = malloc((size_t)out * sizeof(float));
    fill(w, (int64_t)out * in, 0.5f);
    fill(x, (int64_t)n * in, 1.0f);
    tensor t = {.name = "w", .type = DTYPE_F32, .n_dims = 2, .shape = {out, in}, .data = w};
    void *packed = NULL;
    if (panel) {
        packed = aligned_alloc(64, (tensor_panel_bytes(DTYPE_F32, out, in) + 63) / 64 * 64);
        tensor_pack_panels(&t, packed, &t);
    }
    threadpool *pool = threadpool_new(2);
    backend_env env2 = env;
    env2.pool = pool;
    cpu->matmul(&env2, y, x, n, &t, NULL);
    for (int r = 0; r < n; r++) {
        cpu->matmul(&env, y1, x + (int64_t)r * in, 1, &t, NULL);
        CHECKF(memcmp(y1, y + (int64_t)r * out, (size_t)out * sizeof(float)) == 0, "%s, %d rows: row %d differs alone",
               panel ? "panels" : "rows", n, r);
    }
    threadpool_free(pool);
    free(packed); free(w); free(x); free(y); free(y1);
}

/* Panel-layout weights: invariant at any batch size (prefill included). */
static void test_matmul_batch_invariance(void) {
    check_batch_invariance(0, 13);
    check_batch_invariance(1, 3);
    check_batch_invariance(1, 13);
    check_batch_invariance(1, 16);
    check_batch_invariance(1, 100);
}

static void test_swiglu(void) {
    float g1[300], g2[300], u[300];
    fill(g1, 300, 6.0f);
    fill(u, 300, 2.0f);
    memcpy(g2, g1, sizeof g1);
    backend_ref.swiglu(g1, u, 300);
    cpu->swiglu(g2, u, 300);
    double e = nerr(g2, g1, 300);
    CHECKF(e < TOL, "swiglu: normalised error %.3g", e);
}

/* The comparison itself must be able to fail: a perturbed output is caught. */
static void test_negative_control(void) {
    float a[64], b[64];
    fill(a, 64, 1.0f);
    memcpy(b, a, sizeof a);
    b[17] += 0.01f;
    CHECK(nerr(b, a, 64) > TOL);
}

int main(void) {
    RUN_TESTS_PER_KERNELS(T(test_matmul), T(test_matmul_batch_invariance), T(test_quant_panels), T(test_act8), T(test_rmsnorm), T(test_rope), T(test_attention), T(test_swiglu),
              T(test_negative_control));
}
