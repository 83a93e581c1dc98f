/*
 * bench_forward.c — `make bench`: the verification cost curve and decode speed against the
 * memory-bandwidth roofline, measured in one run on this machine.
 *
 *  1. Read bandwidth with all threads (sum over a 512 MiB buffer, best of 5).
 *  2. Models: stories260K, the demo target (models/tinystories-moge), and three random benchmark models generated on first use under
 *     build/bench-models/ (not committed): a Pangu-shaped MoGE (~1 GB of f32 weights: hidden 1024,
 *     8 layers, 16/4 heads, 64 experts of width 128 in 8 groups, 8 per token, shared expert 512,
 *     vocabulary 8192), a dense Llama of the same active size (feed-forward 1536), and a dense
 *     ~1 GB Llama (hidden 2048, 6 layers, 32/8 heads, feed-forward 4096, vocabulary 8192).
 *     Each is run with its weights as stored (f32) and quantized at load to Q8, W8A8, Q4 and W4A8.
 *     A fourth, dense-272m (271.6 M parameters: hidden 1024, 24 layers, 16/4 heads, feed-forward
 *     2816, vocabulary 512, untied lm_head), is not in the default run: it is written when named
 *     (tools/bench_peer.sh compares it with llama.cpp).
 *  3. For n = 1, 2, 4, ..., 64 rows (a chain after a 32-token prefix): median time of a forward,
 *     relative to one row (the median of paired ratios, below), distinct experts touched and
 *     bytes of weights read per pass (quantized bytes for Q8/W8A8 and Q4/W4A8: 36 / 20 bytes per
 *     32 weights; the MoE routers stay f32).
 *  4. Decode tokens/s at n = 1 against bandwidth / bytes read per token.
 *  4b. Per n, the floor of a pass: the longer of its bytes at the model's measured bandwidth and
 *     its multiply-adds (weights × rows, attention scores and sums) at the processor's measured
 *     multiply-add peak (independent chains of the kernel variant's own instructions on every
 *     thread: f32 fused multiply-adds, or the int8 dot products of W8A8/W4A8), and that floor over
 *     the measured one-row time: how far below the measured "× one row" a pass of n rows could go
 *     on this machine.
 *  4c. In the default run (and alone with --experts): the expert dispatch by itself, the rate
 *     its weights stream at with 1, 2, 3, 4, 6 and 8 rows per expert (bench_experts), and the
 *     attention by itself, one row and 16 after 32, 448 and 2000 slots (bench_attention).
 *  5. Memory: the process's resident set after loading (and its peak while loading) and after the
 *     runs, against the model's weight bytes (as stored, and as held:
 *     moge_model_info.resident_bytes) and its KV cache.
 * Times are medians of 5 runs after a warm-up (11 for n = 1). "× one row" is the median of 5
 * paired ratios, each n-row forward over a one-row forward timed just before it (so a machine
 * whose speed drifts weighs on both alike). Quote ratios measured in one run.
 * `bench_forward MODEL_DIR...` benchmarks only those directories; MOGE_BENCH_WEIGHTS=none (or
 * q8, w8a8, q4, w4a8, a comma list) only those weight formats. Options:
 *   -t N           threads (default: moge_cpu_default_threads(), one per physical core)
 *   --write-models writes the benchmark models named (a directory of BENCH_MODELS; none named: all
 *                  of them) that do not exist yet, and exits
 *   --experts      only the bandwidth, the multiply-add peak, the expert dispatch and attention tables
 *   --decode N     instead of the above: per directory and weight format, decodes N tokens one at a
 *                  time from an empty KV cache (each forward committed) after one untimed token,
 *                  as llama-bench's generation test (-p 0 -n N) does, and prints one line
 *                  "decode N tokens: X tokens/s (DIR, weights W, T threads)"
 */
#include <cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/bigalloc.h"
#include "base/clock.h"
#include "moge.h"
#include "runtime/backend.h"
#include "runtime/threadpool.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------------------------------ */
/* bandwidth                                                                                  */

/* The read bandwidth a decode can reach, measured two ways over the same buffer, best of 5 each,
 * and the larger one kept: a summing loop over disjoint halves per thread (8 independent vector
 * accumulators, so the adds keep up with memory), and the cpu backend's own f32 kernel reading the
 * buffer as a weight matrix in panel layout times one row (a GEMV over the thread pool: the
 * kernels' loads, prefetch and thread split). The headline figure reads 512 MiB. Each model's
 * roofline is measured again, by the GEMV alone, over as many bytes as its decode reads per token
 * and between its timed one-row forwards: a large last-level cache (260 MiB on some hosts) keeps a
 * share of any stream that does not fit, and that share depends on the stream's size; and on a
 * shared host a bandwidth measured apart from the decode can catch a busier moment (one run put a
 * w4a8 decode at 141 % of a roofline measured a second later). */
typedef struct { const float *p; size_t n; double sum; } sum_job;
static void *sum_worker(void *arg) {
    sum_job *j = arg;
    float acc[128] = {0}; /* 8 accumulators of 16 lanes (or 32 of 4 with SSE) */
    for (size_t i = 0; i + 128 <= j->n; i += 128)
        for (int k = 0; k < 128; k++) acc[k] += j->p[i + k];
    double s = 0;
    for (int k = 0; k < 128; k++) s += acc[k];
    j->sum = s;
    return NULL;
}

static double bandwidth_sum(const float *buf, size_t n, int n_threads) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[64];
        sum_job jobs[64];
        double t0 = clock_now();
        for (int t = 0; t < n_threads; t++) {
            jobs[t].p = buf + n / n_threads * t;
            jobs[t].n = n / n_threads;
            pthread_create(&th[t], NULL, sum_worker, &jobs[t]);
        }
        double s = 0;
        for (int t = 0; t < n_threads; t++) { pthread_join(th[t], NULL); s += jobs[t].sum; }
        double bw = n * sizeof(float) / (clock_now() - t0);
        if (bw > best && s > 0) best = bw;
    }
    return best;
}

/* The kernels' own reading of `bytes` (rounded down to whole panels of 4096 columns): one f32
 * GEMV of kernel variant `ops` over a buffer written beforehand, on a thread pool of its own. */
typedef struct {
    float *buf, *y, *ws;
    tensor w;
    threadpool *pool;
    backend_env env;
    const backend_ops *ops;
} gemv_probe;
enum { PROBE_IN = 4096 };

static bool probe_init(gemv_probe *p, double bytes, int n_threads, const backend_ops *ops) {
    memset(p, 0, sizeof *p);
    p->ops = ops;
    int64_t out = (int64_t)(bytes / sizeof(float)) / PROBE_IN / TENSOR_PANEL * TENSOR_PANEL;
    if (out < TENSOR_PANEL) out = TENSOR_PANEL;
    p->buf = big_alloc((size_t)out * PROBE_IN * sizeof(float)); /* the weights' memory: huge pages when the kernel gives them */
    p->y = malloc((size_t)out * sizeof(float));
    p->ws = malloc((size_t)backend_ws_floats(PROBE_IN, n_threads) * sizeof(float));
    p->pool = threadpool_new(n_threads);
    if (!p->buf || !p->y || !p->ws || !p->pool) return false;
    for (int64_t i = 0; i < out * PROBE_IN; i++) p->buf[i] = (float)(i & 7);
    p->w = (tensor){.type = DTYPE_F32, .n_dims = 2, .shape = {out, PROBE_IN}, .data = p->buf, .panel = TENSOR_PANEL};
    p->env = (backend_env){.pool = p->pool, .ws = p->ws};
    return true;
}

/* One pass; its read rate in bytes per second. */
static double probe_run(gemv_probe *p) {
    static float x[PROBE_IN];
    for (int i = 0; i < PROBE_IN; i++) x[i] = 1.0f / (float)(i + 1);
    double t0 = clock_now();
    p->ops->matmul(&p->env, p->y, x, 1, &p->w, NULL);
    return (double)p->w.shape[0] * PROBE_IN * sizeof(float) / (clock_now() - t0);
}

static void probe_free(gemv_probe *p) {
    threadpool_free(p->pool);
    free(p->ws);
    free(p->y);
    free(p->buf);
}

static double measure_bandwidth(int n_threads, double bytes, double *sum_bw, double *gemv_bw) {
    gemv_probe p;
    *sum_bw = *gemv_bw = 0;
    if (probe_init(&p, bytes, n_threads, backend_cpu_best())) {
        *sum_bw = bandwidth_sum(p.buf, (size_t)p.w.shape[0] * PROBE_IN, n_threads);
        for (int rep = 0; rep < 6; rep++) { /* the first pass warms the pool */
            double bw = probe_run(&p);
            if (rep > 0 && bw > *gemv_bw) *gemv_bw = bw;
        }
    }
    probe_free(&p);
    return *sum_bw > *gemv_bw ? *sum_bw : *gemv_bw;
}

/* ------------------------------------------------------------------------------------------ */
/* multiply-add peak                                                                          */

/* Multiply-adds per second of one thread, as the kernels of a variant do them: f32 fused
 * multiply-adds (ymm for avx2/avxvnni, zmm for avx512/avx512vnni) for float and Q8/Q4 weights, and
 * the unsigned × signed byte dot products of W8A8/W4A8 (vpmaddubsw + vpmaddwd on ymm, vpdpbusd on
 * ymm with AVX-VNNI or zmm with AVX-512 VNNI: kernels.h QA_DOT_US). 12 independent chains (an
 * instruction waits about 4 cycles for its chain and two start per cycle on the machines measured,
 * so 8 keep the units busy), counted in float lanes or byte products. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEAK_CHAINS 12
#define PEAK_UNROLL _Pragma("GCC unroll 12") /* the chains in registers, not in memory */
/* NAME(iters): PEAK_CHAINS chains of type V, `iters` steps each: multiply-adds per second. */
#define PEAK_LOOP(NAME, TARGET, V, INIT, STEP, FIRST, PER_STEP)                                 \
    __attribute__((target(TARGET))) static double NAME(long iters) {                            \
        V a[PEAK_CHAINS], m = INIT(1), c = INIT(3);                                             \
        (void)m; /* MADD8 multiplies the chain itself */                                        \
        for (int j = 0; j < PEAK_CHAINS; j++) a[j] = INIT(j);                                   \
        double t0 = clock_now();                                                                \
        for (long i = 0; i < iters; i++)                                                        \
            PEAK_UNROLL for (int j = 0; j < PEAK_CHAINS; j++) a[j] = STEP(a[j], m, c);          \
        double t = clock_now() - t0;                                                            \
        double sink = 0;                                                                        \
        for (int j = 0; j < PEAK_CHAINS; j++) sink += FIRST(a[j]);                              \
        return sink == -1.0 ? 0 : (double)iters * PEAK_CHAINS * PER_STEP / t;                   \
    }
#define F8(v) _mm256_set1_ps(0.999f + 1e-3f * (float)(v))
#define F16(v) _mm512_set1_ps(0.999f + 1e-3f * (float)(v))
#define I8(v) _mm256_set1_epi8((char)(v))
#define I16(v) _mm512_set1_epi8((char)(v))
#define FMA8(a, m, c) _mm256_fmadd_ps(a, m, c)
#define FMA16(a, m, c) _mm512_fmadd_ps(a, m, c)
/* the chain's own value as the unsigned bytes: a product of the loop's constants would be
 * computed once for all chains */
#define MADD8(a, w, x) _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(a, x), _mm256_set1_epi16(1)))
#define DPB8(a, w, x) _mm256_dpbusd_avx_epi32(a, w, x)
#define DPB16(a, w, x) _mm512_dpbusd_epi32(a, w, x)
#define FIRST_PS8(v) _mm256_cvtss_f32(v)
#define FIRST_PS16(v) _mm512_cvtss_f32(v)
#define FIRST_I8(v) _mm256_cvtsi256_si32(v)
#define FIRST_I16(v) _mm512_cvtsi512_si32(v)
PEAK_LOOP(peak_fma_ymm, "avx2,fma", __m256, F8, FMA8, FIRST_PS8, 8)
PEAK_LOOP(peak_fma_zmm, "avx512f", __m512, F16, FMA16, FIRST_PS16, 16)
PEAK_LOOP(peak_madd_ymm, "avx2", __m256i, I8, MADD8, FIRST_I8, 32)
PEAK_LOOP(peak_dpb_ymm, "avx2,avxvnni", __m256i, I8, DPB8, FIRST_I8, 32)
PEAK_LOOP(peak_dpb_zmm, "avx512f,avx512bw,avx512vnni", __m512i, I16, DPB16, FIRST_I16, 64)
#endif

/* The instructions of a variant's kernels: f32 multiply-adds, or int8 dot products. */
typedef enum { PEAK_NONE, PEAK_FMA_YMM, PEAK_FMA_ZMM, PEAK_MADD_YMM, PEAK_DPB_YMM, PEAK_DPB_ZMM } peak_kind;
static const char *const PEAK_NAMES[] = {"none", "ymm fma", "zmm fma", "ymm vpmaddubsw", "ymm vpdpbusd", "zmm vpdpbusd"};
static peak_kind peak_of(const char *kernels, bool int8) {
    if (strcmp(kernels, "avx512vnni") == 0) return int8 ? PEAK_DPB_ZMM : PEAK_FMA_ZMM;
    if (strcmp(kernels, "avx512") == 0) return int8 ? PEAK_MADD_YMM : PEAK_FMA_ZMM;
    if (strcmp(kernels, "avxvnni") == 0) return int8 ? PEAK_DPB_YMM : PEAK_FMA_YMM;
    if (strcmp(kernels, "avx2") == 0) return int8 ? PEAK_MADD_YMM : PEAK_FMA_YMM;
    return PEAK_NONE; /* the scalar and generic variants */
}

typedef struct { peak_kind kind; double per_s; } peak_job;
static void *peak_worker(void *arg) {
    peak_job *j = arg;
    j->per_s = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    double (*loops[])(long) = {NULL, peak_fma_ymm, peak_fma_zmm, peak_madd_ymm, peak_dpb_ymm, peak_dpb_zmm};
    for (int rep = 0; rep < 3 && loops[j->kind]; rep++) { /* about 20 ms each at 3 GHz; the best counts */
        double r = loops[j->kind](5000000);
        if (r > j->per_s) j->per_s = r;
    }
#endif
    return NULL;
}

/* Multiply-adds per second of n_threads threads running at once, as the kernels of variant
 * `kernels` do them (f32, or int8 for W8A8/W4A8); 0 for the scalar and generic variants. */
static double mac_peak(const char *kernels, bool int8, int n_threads) {
    peak_kind kind = peak_of(kernels, int8);
    if (kind == PEAK_NONE) return 0;
    pthread_t th[64];
    peak_job jobs[64];
    if (n_threads > 64) n_threads = 64;
    for (int t = 0; t < n_threads; t++) {
        jobs[t].kind = kind;
        pthread_create(&th[t], NULL, peak_worker, &jobs[t]);
    }
    double sum = 0;
    for (int t = 0; t < n_threads; t++) { pthread_join(th[t], NULL); sum += jobs[t].per_s; }
    return sum;
}

/* ------------------------------------------------------------------------------------------ */
/* the expert dispatch alone                                                                  */

/* The cpu backend's MoE expert op (backend_ops.moe_experts) on MoGE-shaped layers of f32 experts
 * in panel layout (32 experts of 128 × 1024 in 8 groups, K = 8, as the 1.6 GB stand-in; 8 layers
 * of random weights, 403 MB), every expert given exactly R rows (4R rows, row r taking expert
 * 4 g + r mod 4 of each group g), for R = 1, 2, 3, 4, 6, 8: the rate its weights stream at, on
 * all threads and on one, against R = 1 — where a verification pass of many rows loses time in
 * the experts (each sees a few of the rows) — and its multiply-adds at the measured peak. */
enum { XB_EXPERTS = 32, XB_EMBD = 1024, XB_FF = 128, XB_K = 8, XB_LAYERS = 8 };
static double experts_time(const backend_ops *ops, threadpool *pool, tensor (*w)[3][XB_EXPERTS], int rows_per_expert, float *ws) {
    int n = 4 * rows_per_expert, K = XB_K;
    static int32_t ex[64 * XB_K], order[64 * XB_K], offset[XB_EXPERTS + 1], begin[2] = {0, XB_EXPERTS};
    static float x[64 * XB_EMBD], out[64 * XB_EMBD], weights[64 * XB_K];
    static float pair_out[64 * XB_K * XB_EMBD];
    for (int r = 0; r < n; r++)
        for (int g = 0; g < K; g++) ex[r * K + g] = 4 * g + r % 4, weights[r * K + g] = 1.0f / K;
    for (int i = 0; i < n * XB_EMBD; i++) x[i] = 1.0f / (float)(i % 97 + 1);
    backend_env env = {.pool = pool, .ws = NULL};
    double t[5];
    for (int rep = 0; rep < 6; rep++) { /* the first warms the pool */
        double t0 = clock_now();
        for (int l = 0; l < XB_LAYERS; l++) {
            moe_args a = {.out = out, .x = x, .n = n, .n_embd = XB_EMBD, .n_ff = XB_FF, .k = K, .n_expert = XB_EXPERTS,
                          .experts = ex, .weights = weights, .gate = w[l][0], .up = w[l][1], .down = w[l][2], .n_devices = 1,
                          .device_begin = begin, .order = order, .offset = offset, .pair_out = pair_out, .thread_scratch = ws};
            ops->moe_experts(&env, &a);
        }
        if (rep > 0) t[rep - 1] = clock_now() - t0;
    }
    qsort(t, 5, sizeof t[0], cmp_double);
    return t[2];
}

static void bench_experts(const backend_ops *ops, int n_threads, double fma_ps) {
    size_t per = (size_t)3 * XB_EMBD * XB_FF, total = per * XB_EXPERTS * XB_LAYERS;
    float *buf = big_alloc(total * sizeof(float));
    tensor (*w)[3][XB_EXPERTS] = calloc(XB_LAYERS, sizeof *w);
    float *ws = malloc((size_t)(n_threads > 0 ? n_threads : 1) * moe_scratch_floats(64, XB_EMBD, XB_FF) * sizeof(float));
    threadpool *pools[2] = {threadpool_new(n_threads), threadpool_new(1)};
    if (!buf || !w || !ws || !pools[0] || !pools[1]) {
        printf("\nexpert dispatch: no memory for %.0f MB of experts\n", total * 4 / 1e6);
    } else {
        for (size_t i = 0; i < total; i++) buf[i] = (float)(int)(i % 13) * 0.01f - 0.06f;
        for (int l = 0; l < XB_LAYERS; l++)
            for (int e = 0; e < XB_EXPERTS; e++) {
                float *b = buf + ((size_t)l * XB_EXPERTS + e) * per;
                for (int m = 0; m < 3; m++)
                    w[l][m][e] = (tensor){.type = DTYPE_F32, .n_dims = 2, .shape = {m == 2 ? XB_EMBD : XB_FF, m == 2 ? XB_FF : XB_EMBD},
                                          .data = b + (size_t)m * XB_EMBD * XB_FF, .panel = TENSOR_PANEL};
            }
        printf("\nexpert dispatch alone (%s kernels; %d MoGE-shaped layers, %d f32 experts of %d × %d each, K = %d, %.0f MB; every "
               "expert given the same number of rows; medians of 5):\n", ops->variant, XB_LAYERS, XB_EXPERTS, XB_FF, XB_EMBD, XB_K,
               total * 4 / 1e6);
        printf("| rows per expert | %d threads: ms | GB/s | × the 1-row rate | 1 thread: ms | GB/s | × the 1-row rate | "
               "multiply-adds at peak, ms (%d threads) |\n", n_threads, n_threads);
        printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        static const int R[] = {1, 2, 3, 4, 6, 8};
        double base[2] = {0, 0};
        for (size_t i = 0; i < sizeof R / sizeof R[0]; i++) {
            double ts[2], gbs[2];
            for (int p = 0; p < 2; p++) {
                ts[p] = experts_time(ops, pools[p], w, R[i], ws);
                gbs[p] = total * 4.0 / ts[p] / 1e9;
                if (i == 0) base[p] = gbs[p];
            }
            char at_peak[32] = "-"; /* no vector peak for the scalar variants */
            if (fma_ps > 0) snprintf(at_peak, sizeof at_peak, "%.2f", (double)R[i] * XB_EXPERTS * per * XB_LAYERS / fma_ps * 1e3);
            printf("| %d | %.2f | %.1f | %.2f | %.2f | %.1f | %.2f | %s |\n", R[i], ts[0] * 1e3, gbs[0], gbs[0] / base[0], ts[1] * 1e3,
                   gbs[1], gbs[1] / base[1], at_peak);
        }
    }
    threadpool_free(pools[0]);
    threadpool_free(pools[1]);
    free(ws);
    free(w);
    free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* attention alone                                                                            */

/* The cpu backend's attention op (backend_ops.attention) with the MoGE stand-in's shapes (32
 * query heads sharing 16 key/value heads of 32, 18 layers of f32 caches), one row and a chain of
 * 16 after contexts of 32, 448 and 2000 committed slots: time, multiply-adds per second (scores
 * and weighted sums) and 16 rows over one. Medians of 9, both alternating. */
static void bench_attention(const backend_ops *ops, int n_threads, double fma_ps) {
    enum { H = 32, HKV = 16, D = 32, L = 18, ROWS = 16 };
    static const int past[] = {32, 448, 2000};
    int n_ctx_max = 2000 + ROWS;
    size_t cache = (size_t)HKV * n_ctx_max * D;
    float *k = malloc(cache * L * sizeof(float)), *v = malloc(cache * L * sizeof(float));
    float *q = malloc((size_t)ROWS * H * D * sizeof(float)), *out = malloc((size_t)ROWS * H * D * sizeof(float));
    float *ws = malloc((size_t)(n_threads > 0 ? n_threads : 1) * backend_attn_ws_stride(n_ctx_max) * sizeof(float));
    threadpool *pool = threadpool_new(n_threads);
    if (!k || !v || !q || !out || !ws || !pool) {
        printf("\nattention: no memory for the caches\n");
    } else {
        for (size_t i = 0; i < cache * L; i++) k[i] = (float)(int)(i * 7 % 13) * 0.05f - 0.3f, v[i] = (float)(int)(i * 5 % 11) * 0.05f - 0.25f;
        for (int i = 0; i < ROWS * H * D; i++) q[i] = (float)(i % 17) * 0.03f - 0.2f;
        backend_env env = {.pool = pool, .attn_ws = ws};
        printf("\nattention alone (%s kernels; %d query heads on %d key/value heads of %d, %d layers; medians of 9):\n", ops->variant, H, HKV, D,
               L);
        printf("| committed slots | 1 row: ms | G multiply-adds/s | %d rows: ms | G multiply-adds/s | %d rows / 1 | %% of the f32 peak (%d rows) |\n",
               ROWS, ROWS, ROWS);
        printf("|---:|---:|---:|---:|---:|---:|---:|\n");
        for (size_t c = 0; c < sizeof past / sizeof past[0]; c++) {
            double t[2][9];
            for (int rep = 0; rep < 10; rep++) /* the first warms the caches and the pool */
                for (int j = 0; j < 2; j++) {
                    double t0 = clock_now();
                    for (int l = 0; l < L; l++) {
                        attn_args a = {.out = out, .q = q, .k_cache = k + cache * l, .v_cache = v + cache * l, .n_past = past[c], .n = j ? ROWS : 1,
                                       .n_ctx = n_ctx_max, .n_head = H, .n_head_kv = HKV, .head_dim = D};
                        ops->attention(&env, &a, 1);
                    }
                    if (rep > 0) t[j][rep - 1] = clock_now() - t0;
                }
            qsort(t[0], 9, sizeof(double), cmp_double);
            qsort(t[1], 9, sizeof(double), cmp_double);
            double f1 = 2.0 * H * D * (past[c] + 1) * L, fn = 2.0 * H * D * ((double)ROWS * past[c] + ROWS * (ROWS + 1) / 2.0) * L;
            char pct[32] = "-";
            if (fma_ps > 0) snprintf(pct, sizeof pct, "%.0f", 100.0 * fn / t[1][4] / fma_ps);
            printf("| %d | %.2f | %.1f | %.2f | %.1f | %.2f | %s |\n", past[c], t[0][4] * 1e3, f1 / t[0][4] / 1e9, t[1][4] * 1e3,
                   fn / t[1][4] / 1e9, t[1][4] / t[0][4], pct);
        }
    }
    threadpool_free(pool);
    free(k); free(v); free(q); free(out); free(ws);
}

/* ------------------------------------------------------------------------------------------ */
/* random benchmark models (safetensors writer)                                               */

typedef struct { char name[128]; int64_t rows, cols; } spec;

static uint64_t rng_state = 1;
static float frand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / 8388608.0 - 1.0);
}

static int write_model(const char *dir, const char *config, const spec *t, int n) {
    mkdir("build", 0755);
    mkdir("build/bench-models", 0755);
    mkdir(dir, 0755);
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(config, f);
    fclose(f);
    cJSON *h = cJSON_CreateObject();
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        if (t[i].rows > 0) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].rows));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].cols));
        int64_t bytes = (t[i].rows > 0 ? t[i].rows : 1) * t[i].cols * 4;
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *hj = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(hj), padded = (hl + 7) / 8 * 8;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f) { free(hj); return -1; }
    uint64_t len = padded;
    fwrite(&len, 8, 1, f);
    fwrite(hj, 1, hl, f);
    for (size_t i = hl; i < padded; i++) fputc(' ', f);
    free(hj);
    float *row = malloc(1 << 20);
    for (int i = 0; i < n; i++) {
        int is_norm = t[i].rows == 0;
        int64_t total = (t[i].rows > 0 ? t[i].rows : 1) * t[i].cols;
        float scale = is_norm ? 0.0f : 1.0f / sqrtf((float)t[i].cols);
        for (int64_t done = 0; done < total;) {
            int64_t chunk = total - done < (1 << 18) ? total - done : (1 << 18);
            for (int64_t k = 0; k < chunk; k++) row[k] = is_norm ? 1.0f : frand() * scale * 1.7f;
            fwrite(row, 4, (size_t)chunk, f);
            done += chunk;
        }
    }
    free(row);
    int bad = ferror(f);
    fclose(f);
    if (bad || rename(tmp, path) != 0) return -1;
    return 0;
}

typedef struct {
    const char *dir;
    int moe, hid, layers, heads, kvh, ff, vocab; /* ff: dense feed-forward width */
    uint64_t seed;
    bool on_request; /* not in the default run: only when named */
} bench_spec;

enum { HD = 64, NEXP = 64, KEXP = 8, FEXP = 128, FSH = 512 };
static const bench_spec BENCH_MODELS[] = {
    {"build/bench-models/pangu-bench", 1, 1024, 8, 16, 4, 0, 8192, 11, false},
    {"build/bench-models/dense-bench", 0, 1024, 8, 16, 4, 1536, 8192, 12, false},
    {"build/bench-models/dense-1g", 0, 2048, 6, 32, 8, 4096, 8192, 13, false},
    {"build/bench-models/dense-272m", 0, 1024, 24, 16, 4, 2816, 512, 14, true},
};

static int ensure_model(const bench_spec *b) {
    struct stat sb;
    static spec t[16 * 210 + 8];
    char cfg[2048], path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", b->dir);
    if (stat(path, &sb) == 0) return 0;
    fprintf(stderr, "bench: writing %s (once) ...\n", b->dir);
    int n = 0, HID = b->hid, HEADS = b->heads, KVH = b->kvh, VOCAB = b->vocab;
#define ADD(r, c, ...) (snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__), t[n].rows = (r), t[n].cols = (c), n++)
    ADD(VOCAB, HID, "model.embed_tokens.weight");
    ADD(0, HID, "model.norm.weight");
    ADD(VOCAB, HID, "lm_head.weight");
    for (int l = 0; l < b->layers; l++) {
        ADD(0, HID, "model.layers.%d.input_layernorm.weight", l);
        ADD(0, HID, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(HEADS * HD, HID, "model.layers.%d.self_attn.q_proj.weight", l);
        ADD(KVH * HD, HID, "model.layers.%d.self_attn.k_proj.weight", l);
        ADD(KVH * HD, HID, "model.layers.%d.self_attn.v_proj.weight", l);
        ADD(HID, HEADS * HD, "model.layers.%d.self_attn.o_proj.weight", l);
        if (b->moe) {
            ADD(0, HEADS * HD, "model.layers.%d.self_attn.q_proj.bias", l);
            ADD(0, KVH * HD, "model.layers.%d.self_attn.k_proj.bias", l);
            ADD(0, KVH * HD, "model.layers.%d.self_attn.v_proj.bias", l);
            ADD(0, HID, "model.layers.%d.self_attn.o_proj.bias", l);
            ADD(NEXP, HID, "model.layers.%d.mlp.gate.weight", l);
            ADD(0, NEXP, "model.layers.%d.mlp.router_scale", l);
            for (int e = 0; e < NEXP; e++) {
                ADD(FEXP, HID, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
                ADD(FEXP, HID, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
                ADD(HID, FEXP, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
            }
            ADD(FSH, HID, "model.layers.%d.mlp.shared_expert.gate_proj.weight", l);
            ADD(FSH, HID, "model.layers.%d.mlp.shared_expert.up_proj.weight", l);
            ADD(HID, FSH, "model.layers.%d.mlp.shared_expert.down_proj.weight", l);
        } else {
            ADD(b->ff, HID, "model.layers.%d.mlp.gate_proj.weight", l);
            ADD(b->ff, HID, "model.layers.%d.mlp.up_proj.weight", l);
            ADD(HID, b->ff, "model.layers.%d.mlp.down_proj.weight", l);
        }
    }
#undef ADD
    if (b->moe)
        snprintf(cfg, sizeof cfg,
                 "{\"architectures\": [\"PanguProMoEForCausalLM\"], \"vocab_size\": %d, \"hidden_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"hidden_act\": \"silu\", "
                 "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"max_position_embeddings\": 1024, \"tie_word_embeddings\": false, "
                 "\"num_experts\": %d, \"num_experts_per_tok\": %d, \"moe_intermediate_size\": %d, \"shared_expert_intermediate_size\": %d}\n",
                 VOCAB, HID, b->layers, HEADS, KVH, NEXP, KEXP, FEXP, FSH);
    else
        snprintf(cfg, sizeof cfg,
                 "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"hidden_act\": \"silu\", "
                 "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"max_position_embeddings\": 1024, \"tie_word_embeddings\": false}\n",
                 VOCAB, HID, b->ff, b->layers, HEADS, KVH);
    rng_state = b->seed;
    return write_model(b->dir, cfg, t, n);
}

/* ------------------------------------------------------------------------------------------ */

/* Whether the comma-separated list has the item name. */
static int list_has(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t k = end ? (size_t)(end - p) : strlen(p);
        if (k == n && strncmp(p, name, n) == 0) return 1;
        p += k + (end ? 1 : 0);
    }
    return 0;
}

/* Bytes of a (rows, cols) matrix as the model holds it. */
static double mat_bytes(double rows, double cols, const char *quant) {
    double blocks = rows * ceil(cols / 32);
    if (strcmp(quant, "q8") == 0 || strcmp(quant, "w8a8") == 0) return blocks * 36;
    if (strcmp(quant, "q4") == 0 || strcmp(quant, "w4a8") == 0) return blocks * 20;
    return rows * cols * 4;
}

/* Bytes of weights one forward over a batch reads: everything but the embedding table and the
 * experts no row was routed to (the MoE routers stay f32 when quantized). */
static double pass_bytes(const moge_model_info *in, const moge_context *ctx) {
    double E = in->n_embd, Q = (double)in->n_head * in->head_dim, KV = (double)in->n_head_kv * in->head_dim;
    const char *qt = in->quant;
    double per_layer = mat_bytes(Q, E, qt) + mat_bytes(KV, E, qt) * 2 + mat_bytes(E, Q, qt), moe = 0;
    if (in->n_expert) {
        per_layer += mat_bytes(in->n_expert, E, "none") + 2 * mat_bytes(in->n_ff_shared, E, qt) + mat_bytes(E, in->n_ff_shared, qt);
        double expert = 2 * mat_bytes(in->n_ff_expert, E, qt) + mat_bytes(E, in->n_ff_expert, qt);
        for (int l = 0; l < moge_context_n_moe_layers(ctx); l++) {
            moge_moe_stats st;
            moge_moe_stats_get(ctx, l, false, &st);
            moe += st.distinct_experts * expert;
        }
    } else {
        per_layer += 2 * mat_bytes(in->n_ff, E, qt) + mat_bytes(E, in->n_ff, qt);
    }
    return per_layer * in->n_layer + moe + mat_bytes(in->n_vocab, E, qt);
}

/* Multiply-adds of a pass of n rows (a chain after n_past committed tokens): every weight the row
 * uses (its K experts of a MoE layer) once per row, the attention scores and weighted sums over
 * its visible slots, and the lm_head for every row (a verification needs every row's logits). */
static double pass_fmas(const moge_model_info *in, int n, int n_past) {
    double E = in->n_embd, Q = (double)in->n_head * in->head_dim, KV = (double)in->n_head_kv * in->head_dim;
    double per_row = E * Q * 2 + E * KV * 2;
    if (in->n_expert)
        per_row += (double)in->n_expert * E + 3.0 * in->n_ff_shared * E + 3.0 * in->n_expert_used * in->n_ff_expert * E;
    else
        per_row += 3.0 * in->n_ff * E;
    double slots = (double)n * n_past + (double)n * (n + 1) / 2; /* visible slots summed over the rows */
    return (per_row * n + 2.0 * Q * slots) * in->n_layer + (double)n * in->n_vocab * E;
}

/* A field of /proc/self/status in bytes: "VmRSS:" (resident set) or "VmHWM:" (its peak). */
static double status_bytes(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0) kb = atof(line + strlen(field));
    if (f) fclose(f);
    return kb * 1024;
}
static double rss_bytes(void) { return status_bytes("VmRSS:"); }

/* Resets the peak resident set (VmHWM) to the current one; false where the kernel does not allow it. */
static bool reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

typedef struct {
    char model[64];
    const char *quant;
    double mb_token, tps, roof, r16, floor16, r64, load_s, rss_mb, peak_mb, weight_mb, resident_mb;
} summary_row;
static summary_row summary[32];

/* Milliseconds per forward of each part of moge_forward_times, between two snapshots. */
#define N_PARTS MOGE_N_PARTS
static void parts_ms(const moge_forward_times *a, const moge_forward_times *b, double *ms) {
    for (int i = 0; i < N_PARTS; i++) ms[i] = (b->seconds[i] - a->seconds[i]) * 1e3;
}
static int n_summary;
static const char *run_kernels = "?"; /* the kernel variant the models ran (MOGE_KERNELS or the best) */

static void bench_model(const char *dir, double bw, int n_threads, moge_quant quant, double fma_ps) {
    char err[512];
    moge_model_params mp = moge_model_default_params();
    mp.n_threads = n_threads;
    mp.quant = quant;
    moge_model *m = NULL;
    bool peak_ok = reset_peak();
    double rss0 = rss_bytes(), t_load = clock_now();
    if (moge_model_load(dir, &mp, &m, err, sizeof err) != MOGE_OK) { printf("%s: %s\n", dir, err); return; }
    t_load = clock_now() - t_load;
    double rss_load = rss_bytes() - rss0, peak_load = status_bytes("VmHWM:") - rss0;
    moge_model_info in;
    moge_model_get_info(m, &in);
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 64;
    moge_context *ctx = NULL;
    if (moge_context_new(m, &cp, &ctx, err, sizeof err) != MOGE_OK) { printf("%s: %s\n", dir, err); moge_model_free(m); return; }
    double kv_bytes = 2.0 * in.n_layer * in.n_head_kv * in.head_dim * cp.n_ctx * 4;
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (i * 37 + 11) % in.n_vocab;
    const float *lg;
    moge_batch pre = {.n = 32, .tokens = tok};
    moge_forward(ctx, &pre, &lg);
    moge_kv_commit(ctx, NULL, 32);
    printf("\n%s, weights %s — %s, %.0f MB of weights as stored, %.0f MB held (loaded in %.2f s)\n", dir, in.quant, in.architecture,
           in.weight_bytes / 1e6, in.resident_bytes / 1e6, t_load);
    printf("| rows | ms / forward | × one row | distinct experts / layer | MB read / pass | GB/s | G multiply-adds | floor ms | "
           "floor × one row |\n");
    printf("|-----:|-------------:|----------:|-------------------------:|---------------:|-----:|----------------:|---------:|"
           "----------------:|\n");
    summary_row *sr = n_summary < 32 ? &summary[n_summary++] : &summary[31];
    const char *base = strrchr(dir, '/');
    snprintf(sr->model, sizeof sr->model, "%s", base ? base + 1 : dir);
    sr->quant = in.quant;
    run_kernels = in.kernels;
    sr->load_s = t_load;
    sr->weight_mb = in.weight_bytes / 1e6;
    sr->resident_mb = in.resident_bytes / 1e6;
    double t1 = 0, bw_model = 0;
    double parts[7][N_PARTS]; /* per row count: the parts of its median forward */
    for (int n = 1, ni = 0; n <= 64; n *= 2, ni++) {
        double times[11];
        int reps = n == 1 ? 11 : 5;
        moge_batch b = {.n = n, .tokens = tok};
        moge_forward(ctx, &b, &lg); /* warm-up */
        /* one row: the roofline's bandwidth is measured between the timed forwards, over as many
         * bytes as a forward reads, by the kernels' GEMV (the best pass counts), so the machine's
         * load at the time weighs on both alike */
        gemv_probe probe;
        bool probing = n == 1 && probe_init(&probe, pass_bytes(&in, ctx), n_threads, backend_cpu_find(in.kernels));
        if (probing) probe_run(&probe);
        /* n > 1: each timed forward right after a timed one-row forward (not committed, the same
         * position), and "× one row" the median of those pairs' ratios: on a shared machine
         * whose speed drifts over the seconds a model's rows take, a ratio of medians measured
         * apart moves with the drift, a pair's ratio much less */
        double ratios[11], rep_parts[11][N_PARTS];
        moge_batch b1 = {.n = 1, .tokens = tok};
        for (int r = 0; r < reps; r++) {
            double t_one = 0;
            if (n > 1) {
                double t0 = clock_now();
                moge_forward(ctx, &b1, &lg);
                t_one = clock_now() - t0;
            }
            moge_forward_times f0, f1;
            moge_forward_times_get(ctx, &f0);
            double t0 = clock_now();
            moge_forward(ctx, &b, &lg);
            times[r] = clock_now() - t0;
            moge_forward_times_get(ctx, &f1);
            parts_ms(&f0, &f1, rep_parts[r]);
            ratios[r] = n > 1 ? times[r] / t_one : 1.0;
            double bwr = probing ? probe_run(&probe) : 0;
            if (bwr > bw_model) bw_model = bwr;
        }
        if (n == 1) probe_free(&probe);
        double sorted[11];
        memcpy(sorted, times, sizeof sorted);
        qsort(sorted, (size_t)reps, sizeof sorted[0], cmp_double);
        for (int r = 0; r < reps; r++)
            if (times[r] == sorted[reps / 2]) memcpy(parts[ni], rep_parts[r], sizeof parts[ni]);
        memcpy(times, sorted, sizeof sorted);
        qsort(ratios, (size_t)reps, sizeof ratios[0], cmp_double);
        double t = times[reps / 2], ratio = ratios[reps / 2];
        if (n == 1) t1 = t;
        double distinct = 0;
        for (int l = 0; l < moge_context_n_moe_layers(ctx); l++) {
            moge_moe_stats st;
            moge_moe_stats_get(ctx, l, false, &st);
            distinct += st.distinct_experts / moge_context_n_moe_layers(ctx);
        }
        double bytes = pass_bytes(&in, ctx);
        char dist[32] = "-";
        if (in.n_expert) snprintf(dist, sizeof dist, "%.1f of %d", distinct, in.n_expert);
        if (n == 1 && bw_model <= 0) bw_model = bw; /* no room for a second buffer: the 512 MiB figure */
        double fmas = pass_fmas(&in, n, 32), floor_s = bytes / bw_model;
        if (fma_ps > 0 && fmas / fma_ps > floor_s) floor_s = fmas / fma_ps;
        printf("| %4d | %12.3f | %9.2f | %24s | %14.1f | %4.1f | %15.2f | %8.3f | %15.2f |\n", n, t * 1e3, ratio, dist, bytes / 1e6,
               bytes / t / 1e9, fmas / 1e9, floor_s * 1e3, floor_s / t1);
        if (n == 1) {
            double roof = bw_model / bytes;
            printf("decode at n=1: %.1f tokens/s; roofline %.1f tokens/s (%.1f MB/token at %.1f GB/s, read over %.0f MB) = %.0f %% of the limit\n",
                   1.0 / t, roof, bytes / 1e6, bw_model / 1e9, bytes / 1e6, 100.0 / t / roof);
            sr->mb_token = bytes / 1e6;
            sr->tps = 1.0 / t;
            sr->roof = roof;
        }
        if (n == 16) sr->r16 = ratio, sr->floor16 = floor_s / t1;
        if (n == 64) sr->r64 = ratio;
    }
    printf("where the time goes (ms; the median forward of each row count, moge_forward_times):\n| rows |");
    for (int i = 0; i < N_PARTS; i++) printf(" %s |", moge_forward_part_name(i));
    printf("\n|-----:|");
    for (int i = 0; i < N_PARTS; i++) printf("---:|");
    printf("\n");
    for (int n = 1, ni = 0; n <= 64; n *= 2, ni++) {
        printf("| %4d |", n);
        for (int i = 0; i < N_PARTS; i++) printf(" %.2f |", parts[ni][i]);
        printf("\n");
    }
    double rss_run = rss_bytes() - rss0;
    sr->rss_mb = rss_run / 1e6;
    char peak[64] = "";
    if (peak_ok) snprintf(peak, sizeof peak, " (peak +%.0f MB while loading)", peak_load / 1e6);
    printf("memory: resident set +%.0f MB after loading%s, +%.0f MB after the runs = %.2f × (the weights held, %.0f MB, + KV "
           "cache, %.1f MB)\n",
           rss_load / 1e6, peak, rss_run / 1e6, rss_run / (in.resident_bytes + kv_bytes), in.resident_bytes / 1e6, kv_bytes / 1e6);
    sr->peak_mb = peak_ok ? peak_load / 1e6 : -1;
    moge_context_free(ctx);
    moge_model_free(m);
}

/* --decode N: n_tok one-token forwards from an empty cache, each committed, after one untimed
 * token (tokens (37 i + 11) mod vocabulary); prints the rate. 0, or 1 when the model fails. */
static int bench_decode(const char *dir, int n_threads, moge_quant quant, int n_tok) {
    char err[512];
    moge_model_params mp = moge_model_default_params();
    mp.n_threads = n_threads;
    mp.quant = quant;
    moge_model *m = NULL;
    if (moge_model_load(dir, &mp, &m, err, sizeof err) != MOGE_OK) { fprintf(stderr, "%s: %s\n", dir, err); return 1; }
    moge_model_info in;
    moge_model_get_info(m, &in);
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = n_tok + 1;
    cp.n_batch = 1;
    moge_context *ctx = NULL;
    if (moge_context_new(m, &cp, &ctx, err, sizeof err) != MOGE_OK) { fprintf(stderr, "%s: %s\n", dir, err); moge_model_free(m); return 1; }
    const float *lg;
    int32_t tok = 11 % in.n_vocab;
    moge_batch b = {.n = 1, .tokens = &tok};
    int rc = moge_forward(ctx, &b, &lg) != MOGE_OK; /* warm-up, not committed */
    double t0 = clock_now();
    for (int i = 0; i < n_tok && !rc; i++) {
        tok = (int32_t)((37 * i + 11) % in.n_vocab);
        rc = moge_forward(ctx, &b, &lg) != MOGE_OK || moge_kv_commit(ctx, NULL, 1) != MOGE_OK;
    }
    double t = clock_now() - t0;
    if (rc) fprintf(stderr, "%s: %s\n", dir, moge_context_error(ctx));
    else printf("decode %d tokens: %.2f tokens/s (%s, weights %s, %d threads, %s kernels)\n", n_tok, n_tok / t, dir, in.quant, n_threads,
                in.kernels);
    moge_context_free(ctx);
    moge_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    int n_threads = moge_cpu_default_threads(), n_decode = 0;
    bool write_only = false, experts_only = false;
    const char *dirs[16];
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0) n_threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--decode") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0) n_decode = atoi(argv[++i]);
        else if (strcmp(argv[i], "--write-models") == 0) write_only = true;
        else if (strcmp(argv[i], "--experts") == 0) experts_only = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_forward [-t THREADS] [--write-models | --decode N | --experts] [MODEL_DIR...]\n");
            return 2;
        } else if (n_dirs < 16) dirs[n_dirs++] = argv[i];
    }
    bool default_run = n_dirs == 0;
    if (n_dirs == 0 && !experts_only) {
        if (!write_only) {
            dirs[n_dirs++] = "models/stories260K";
            dirs[n_dirs++] = "models/tinystories-moge"; /* the demo target */
        }
        for (size_t i = 0; i < sizeof BENCH_MODELS / sizeof BENCH_MODELS[0]; i++)
            if (write_only || !BENCH_MODELS[i].on_request) dirs[n_dirs++] = BENCH_MODELS[i].dir;
    }
    for (size_t i = 0; i < sizeof BENCH_MODELS / sizeof BENCH_MODELS[0]; i++)
        for (int d = 0; d < n_dirs; d++)
            if (strcmp(dirs[d], BENCH_MODELS[i].dir) == 0 && ensure_model(&BENCH_MODELS[i]) != 0) {
                fprintf(stderr, "bench: cannot write the benchmark model %s\n", BENCH_MODELS[i].dir);
                return 1;
            }
    if (write_only) return 0;
    moge_quant quants[] = {MOGE_QUANT_NONE, MOGE_QUANT_Q8, MOGE_QUANT_W8A8, MOGE_QUANT_Q4, MOGE_QUANT_W4A8};
    const char *names[] = {"none", "q8", "w8a8", "q4", "w4a8"};
    const char *only = getenv("MOGE_BENCH_WEIGHTS"); /* e.g. "none" or "q8,q4" (a comma-separated list) */
    if (n_decode) {
        int rc = 0;
        for (int d = 0; d < n_dirs; d++)
            for (int q = 0; q < 5; q++)
                if (!only || list_has(only, names[q])) rc |= bench_decode(dirs[d], n_threads, quants[q], n_decode);
        return rc;
    }
    double sum_bw = 0, gemv_bw = 0, bw = measure_bandwidth(n_threads, 512.0 * (1 << 20), &sum_bw, &gemv_bw);
    char cpu[128];
    moge_cpu_name(cpu, sizeof cpu);
    const char *kernels = getenv("MOGE_KERNELS") && *getenv("MOGE_KERNELS") ? getenv("MOGE_KERNELS") : moge_cpu_kernels_best();
    double peak[2] = {mac_peak(kernels, false, n_threads), mac_peak(kernels, true, n_threads)}; /* f32, int8 */
    printf("moge bench: %s, %d threads, read bandwidth %.1f GB/s (512 MiB, best of 5: summing loop %.1f, the %s kernels' f32 "
           "GEMV %.1f); multiply-add peak of the %s kernels, all threads: %.1f G/s f32 (%s), %.1f G/s int8 (%s)\n", cpu, n_threads,
           bw / 1e9, sum_bw / 1e9, moge_cpu_kernels_best(), gemv_bw / 1e9, kernels, peak[0] / 1e9, PEAK_NAMES[peak_of(kernels, false)],
           peak[1] / 1e9, PEAK_NAMES[peak_of(kernels, true)]);
    if (experts_only || default_run) {
        const backend_ops *ops = backend_cpu_find(kernels) ? backend_cpu_find(kernels) : backend_cpu_best();
        bench_experts(ops, n_threads, peak[0]);
        bench_attention(ops, n_threads, peak[0]);
    }
    if (experts_only) return 0;
    for (int d = 0; d < n_dirs; d++)
        for (int q = 0; q < 5; q++)
            if (!only || list_has(only, names[q]))
                bench_model(dirs[d], bw, n_threads, quants[q], peak[quants[q] == MOGE_QUANT_W8A8 || quants[q] == MOGE_QUANT_W4A8]);
    printf("\nSummary (%s, %s kernels, %d threads, read bandwidth %.1f GB/s over 512 MiB; each roofline measured over its model's "
           "bytes per token):\n", cpu, run_kernels, n_threads, bw / 1e9);
    printf("| model | weights | MB / token | decode tokens/s | roofline | %% of roofline | 16 rows / 1 | its floor / 1 | 64 rows / 1 | "
           "load s | held MB | RSS MB | peak RSS MB while loading |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n_summary; i++) {
        const summary_row *r = &summary[i];
        printf("| %s | %s | %.1f | %.1f | %.1f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f |\n", r->model, r->quant, r->mb_token,
               r->tps, r->roof, 100.0 * r->tps / r->roof, r->r16, r->floor16, r->r64, r->load_s, r->resident_mb, r->rss_mb, r->peak_mb);
    }
    return 0;
}
