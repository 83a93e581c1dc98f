/*
 * test_moe.c — Mixture-of-Experts layers:
 *  - routing rules on hand-made logits (MoGE one-per-group, global top-K, group-limited, ties to
 *    the lower id, router_scale, renormalisation);
 *  - the dispatcher (cpu: pairs sorted by expert, one GEMM per expert, experts as tasks of a
 *    thread pool) against the naive per-token loop (ref), for several device counts and dtypes, and
 *    bit for bit the same on one thread as on two;
 *  - the random Pangu / Mixtral / Qwen2-MoE / Qwen3-MoE checkpoints of tests/fixtures/moe against
 *    an independent numpy reference (tools/make_moe_fixtures.py): logits within 1e-4 relative,
 *    expert choices identical, routing weights close; MoGE also under the topk and group-limited
 *    overrides on the same weights;
 *  - a tree batch gives each node the logits of its path alone (no routing leak across rows);
 *  - load balance: Imbalance Score 0 for MoGE on every batch, > 0 for global top-K.
 */
#include <stdint.h>

#include "harness.h"
#include "test_util.h"
#include "test_kernels.h"
#include "test_model.h"
#include "moge.h"
#include "test_ref.h"
#include "runtime/backend.h"
#include "runtime/moe.h"
#include "runtime/threadpool.h"

static uint64_t rng = 777;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}

/* ---------------------------------------------------------------------------------------- */

static void route(const model_config *c, const float *logits, const float *scale, int32_t *ex, float *w) {
    float p[64];
    uint8_t taken[64];
    moe_route_row(logits, c, scale, ex, w, p, taken);
}

static void test_routing_rules(void) {
    model_config c;
    memset(&c, 0, sizeof c);
    c.n_expert = 8;
    c.n_expert_used = 2;
    c.n_group = 2;
    /* group 0 = experts 0..3, group 1 = experts 4..7; the two best logits are both in group 0 */
    float logits[8] = {1.0f, 3.0f, 2.5f, 0.0f, 0.5f, 0.5f, -1.0f, 0.2f};
    int32_t ex[2];
    float w[2];
    c.routing = MOGE_ROUTING_MOGE;
    route(&c, logits, NULL, ex, w);
    CHECKF(ex[0] == 1 && ex[1] == 4, "moge chose %d %d (want 1 and 4: the tie 4/5 goes to 4)", ex[0], ex[1]);
    double sum = 0;
    for (int e = 0; e < 8; e++) sum += exp(logits[e]);
    CHECK(fabs(w[0] - exp(3.0) / sum) < 1e-6 && fabs(w[1] - exp(0.5) / sum) < 1e-6);
    c.routing = MOGE_ROUTING_TOPK;
    route(&c, logits, NULL, ex, w);
    CHECKF(ex[0] == 1 && ex[1] == 2, "topk chose %d %d", ex[0], ex[1]);
    c.norm_topk_prob = true;
    route(&c, logits, NULL, ex, w);
    CHECK(fabs(w[0] + w[1] - 1.0) < 1e-6 && fabs(w[0] - exp(3.0) / (exp(3.0) + exp(2.5))) < 1e-6);
    c.norm_topk_prob = false;
    float scale[8] = {1, 2, 1, 1, 0.5f, 1, 1, 1};
    c.routing = MOGE_ROUTING_MOGE;
    route(&c, logits, scale, ex, w);
    CHECK(fabs(w[0] - 2 * exp(3.0) / sum) < 1e-6 && fabs(w[1] - 0.5 * exp(0.5) / sum) < 1e-6);
    /* group-limited: 4 groups of 2, keep 2 groups; best per group: g0 3.0 (e1), g1 2.5 (e2),
     * g2 0.5 (e4, e5), g3 0.2 (e7) -> keep g0, g1 -> top-2 = 1, 2; with K=3 -> 1, 2, 0 */
    c.routing = MOGE_ROUTING_GROUP_LIMITED;
    c.n_group = 4;
    c.topk_group = 2;
    c.n_expert_used = 3;
    int32_t ex3[3];
    float w3[3];
    route(&c, logits, NULL, ex3, w3);
    CHECKF(ex3[0] == 0 && ex3[1] == 1 && ex3[2] == 2, "group_limited chose %d %d %d", ex3[0], ex3[1], ex3[2]);
    c.topk_group = 3; /* now g2 is kept too: top-3 of {0,1,2,3,4,5} = 1, 2, 0 still */
    float l2[8] = {0.1f, 3.0f, 2.5f, 0.0f, 2.6f, 0.5f, 9.0f, 0.2f}; /* g3 has the best expert 6 */
    route(&c, l2, NULL, ex3, w3);
    CHECKF(ex3[0] == 1 && ex3[1] == 4 && ex3[2] == 6, "group_limited (3 groups) chose %d %d %d", ex3[0], ex3[1], ex3[2]);
    /* all equal: ties everywhere go to the lowest ids */
    float flat[8] = {0};
    c.routing = MOGE_ROUTING_TOPK;
    route(&c, flat, NULL, ex3, w3);
    CHECK(ex3[0] == 0 && ex3[1] == 1 && ex3[2] == 2);
}

/* ---------------------------------------------------------------------------------------- */

static uint16_t f32_to_bf16(float f) { uint32_t b; memcpy(&b, &f, 4); return (uint16_t)(b >> 16); }

static void check_dispatch(dtype type, int n, int n_devices) {
    enum { N = 16, K = 4, E = 40, F = 24 };
    static float wf[N][3][F * E];
    static uint16_t wb[N][3][F * E];
    tensor gate[N], up[N], down[N];
    for (int e = 0; e < N; e++)
        for (int m = 0; m < 3; m++) {
            for (int i = 0; i < F * E; i++) { wf[e][m][i] = frand() * 0.3f; wb[e][m][i] = f32_to_bf16(wf[e][m][i]); }
            tensor t = {.name = "w", .type = type, .n_dims = 2, .shape = {m == 2 ? E : F, m == 2 ? F : E},
                        .data = type == DTYPE_F32 ? (void *)wf[e][m] : (void *)wb[e][m]};
            (m == 0 ? gate : m == 1 ? up : down)[e] = t;
        }
    float *x = malloc((size_t)n * E * sizeof(float)), *o1 = malloc((size_t)n * E * sizeof(float)), *o2 = malloc((size_t)n * E * sizeof(float));
    int32_t *experts = malloc((size_t)n * K * sizeof(int32_t)), *order = malloc((size_t)n * K * sizeof(int32_t)), offset[N + 1];
    float *weights = malloc((size_t)n * K * sizeof(float)), *pair_out = malloc((size_t)n * K * E * sizeof(float));
    float *scratch = malloc((size_t)(2 * moe_scratch_floats(n, E, F)) * sizeof(float)); /* a pool of 2 threads */
    for (int i = 0; i < n * E; i++) x[i] = frand();
    for (int r = 0; r < n; r++) /* one expert in each group of 4, like MoGE */
        for (int j = 0; j < K; j++) {
            experts[r * K + j] = j * 4 + (int)((frand() + 1.0f) * 2.0f) % 4;
            weights[r * K + j] = (frand() + 1.0f) * 0.5f;
        }
    int32_t begin[17];
    model_config c = {.n_expert = N, .n_group = 4};
    moe_device_ranges(&c, n_devices, begin);
    threadpool *pool = threadpool_new(2);
    moe_args a = {.out = o1, .x = x, .n = n, .n_embd = E, .n_ff = F, .k = K, .n_expert = N, .experts = experts,
                  .weights = weights, .gate = gate, .up = up, .down = down, .n_devices = n_devices, .device_begin = begin,
                  .order = order, .offset = offset, .pair_out = pair_out, .thread_scratch = scratch};
    backend_env env = {.pool = pool};
    backend_ref.moe_experts(&env, &a);
    a.out = o2;
    cpu->moe_experts(&env, &a);
    double e = nerr(o2, o1, (int64_t)n * E);
    CHECKF(e < 1e-5, "dispatch %s n=%d devices=%d: normalised error %.3g", dtype_name(type), n, n_devices, e);
    float *o3 = malloc((size_t)n * E * sizeof(float));
    a.out = o3;
    backend_env one = {.pool = NULL}; /* every expert on the caller */
    cpu->moe_experts(&one, &a);
    CHECKF(memcmp(o2, o3, (size_t)n * E * sizeof(float)) == 0, "dispatch %s n=%d devices=%d: two threads differ from one",
           dtype_name(type), n, n_devices);
    free(o3);
    threadpool_free(pool);
    free(x); free(o1); free(o2); free(experts); free(order); free(weights); free(pair_out); free(scratch);
}

static void test_dispatch_equals_naive(void) {
    int rows[] = {1, 3, 16, 33};
    int devs[] = {1, 2, 4};
    for (int r = 0; r < 4; r++)
        for (int d = 0; d < 3; d++) {
            check_dispatch(DTYPE_F32, rows[r], devs[d]);
            check_dispatch(DTYPE_BF16, rows[r], devs[d]);
        }
}

/* ---------------------------------------------------------------------------------------- */

static moge_model *load(const char *dir, moge_backend backend, moge_routing routing, int n_group, int topk_group) {
    moge_model_params p = moge_model_default_params();
    p.backend = backend;
    p.n_threads = 2;
    p.routing = routing;
    p.n_group = n_group;
    p.topk_group = topk_group;
    return test_load_params(dir, &p);
}

static void check_fixture(const char *name, const char *variant, moge_routing routing, int n_group, int topk_group, moge_backend backend) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "tests/fixtures/moe/%s", name);
    snprintf(path, sizeof path, "tests/fixtures/moe/%s%s.ref", name, variant);
    test_ref r;
    if (!ref_read(path, &r)) return;
    moge_model *m = load(dir, backend, routing, n_group, topk_group);
    if (m) ref_check(m, &r, path, backend == MOGE_BACKEND_REF ? "ref" : "cpu");
    moge_model_free(m);
    ref_free(&r);
}

static void test_fixtures_cpu(void) {
    check_fixture("pangu_16e4g", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_CPU);
    check_fixture("pangu_16e4g", ".topk", MOGE_ROUTING_TOPK, 0, 0, MOGE_BACKEND_CPU);
    check_fixture("pangu_16e4g", ".group_limited", MOGE_ROUTING_GROUP_LIMITED, 4, 2, MOGE_BACKEND_CPU);
    check_fixture("pangu_64e8g_bf16", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_CPU);
    check_fixture("mixtral_8e", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_CPU);
    check_fixture("qwen2_moe", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_CPU);
    check_fixture("qwen3_moe", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_CPU);
}

static void test_fixtures_ref(void) {
    check_fixture("pangu_16e4g", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_REF);
    check_fixture("pangu_64e8g_bf16", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_REF);
    check_fixture("mixtral_8e", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_REF);
    check_fixture("qwen2_moe", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_REF);
    check_fixture("qwen3_moe", "", MOGE_ROUTING_DEFAULT, 0, 0, MOGE_BACKEND_REF);
}

/* ---------------------------------------------------------------------------------------- */

static const int32_t TREE_PARENT[9] = {-1, 0, 0, 1, 1, 2, 3, 3, 6};

static void test_tree_no_routing_leak(void) {
    moge_model *m = load("tests/fixtures/moe/pangu_64e8g_bf16", MOGE_BACKEND_CPU, MOGE_ROUTING_DEFAULT, 0, 0);
    if (!m) return;
    moge_model_info info;
    moge_model_get_info(m, &info);
    int V = info.n_vocab;
    char err[256];
    moge_context *c = NULL, *pc = NULL;
    CHECK(moge_context_new(m, NULL, &c, err, sizeof err) == MOGE_OK);
    CHECK(moge_context_new(m, NULL, &pc, err, sizeof err) == MOGE_OK);
    int32_t prefix[4] = {5, 17, 3, 40}, tree[9] = {8, 9, 9, 21, 50, 2, 33, 11, 60};
    const float *lg;
    moge_batch pb = {.n = 4, .tokens = prefix};
    CHECK(moge_forward(c, &pb, &lg) == MOGE_OK && moge_kv_commit(c, NULL, 4) == MOGE_OK);
    CHECK(moge_forward(pc, &pb, &lg) == MOGE_OK && moge_kv_commit(pc, NULL, 4) == MOGE_OK);
    moge_batch tb = {.n = 9, .tokens = tree, .parent = TREE_PARENT};
    CHECK(moge_forward(c, &tb, &lg) == MOGE_OK);
    float *tl = malloc((size_t)9 * V * sizeof(float));
    memcpy(tl, lg, (size_t)9 * V * sizeof(float));
    double worst = 0;
    for (int node = 0; node < 9; node++) {
        int32_t path[9];
        int len = 0;
        for (int x = node; x >= 0; x = TREE_PARENT[x]) path[len++] = tree[x];
        for (int i = 0; i < len / 2; i++) { int32_t t = path[i]; path[i] = path[len - 1 - i]; path[len - 1 - i] = t; }
        moge_batch b = {.n = len, .tokens = path};
        CHECK(moge_forward(pc, &b, &lg) == MOGE_OK);
        double e = nerr(tl + (int64_t)node * V, lg + (int64_t)(len - 1) * V, V);
        worst = e > worst ? e : worst;
    }
    CHECKF(worst <= 1e-5, "MoE tree node vs its path alone: normalised error %.3g", worst);
    free(tl);
    moge_context_free(c);
    moge_context_free(pc);
    moge_model_free(m);
}

/* IS = 0 on every batch for MoGE with groups on devices; > 0 for global top-K on the same
 * weights. Batches of 1..16 random tokens, 20 batches. */
static void imbalance_run(moge_routing routing, double *mean_is, double *max_is, int64_t *dev0, int64_t *dev1) {
    moge_model *m = load("tests/fixtures/moe/pangu_64e8g_bf16", MOGE_BACKEND_CPU, routing, 0, 0);
    if (!m) return;
    moge_context_params p = moge_context_default_params();
    p.n_devices = 4;
    moge_context *c = NULL;
    char err[256];
    CHECK(moge_context_new(m, &p, &c, err, sizeof err) == MOGE_OK);
    uint64_t s = 4242;
    *max_is = 0;
    for (int b = 0; b < 20; b++) {
        int32_t tok[16];
        int n = 1 + b % 16;
        for (int i = 0; i < n; i++) { s = s * 6364136223846793005ull + 1; tok[i] = (int32_t)((s >> 33) % 97); }
        moge_batch batch = {.n = n, .tokens = tok};
        const float *lg;
        CHECK(moge_forward(c, &batch, &lg) == MOGE_OK);
        moge_kv_truncate(c, 0);
        for (int l = 0; l < moge_context_n_moe_layers(c); l++) {
            moge_moe_stats st;
            CHECK(moge_moe_stats_get(c, l, false, &st) == MOGE_OK);
            CHECK(st.n_rows == n);
            int64_t total = 0;
            for (int d = 0; d < st.n_devices; d++) total += st.device_pairs[d];
            CHECK(total == (int64_t)n * 8);
            if (st.imbalance > *max_is) *max_is = st.imbalance;
        }
    }
    moge_moe_stats tot;
    CHECK(moge_moe_stats_get(c, 0, true, &tot) == MOGE_OK);
    CHECK(tot.n_forwards == 20 && tot.n_devices == 4);
    *mean_is = tot.imbalance;
    *dev0 = tot.device_pairs[0];
    *dev1 = tot.device_pairs[1];
    moge_context_free(c);
    moge_model_free(m);
}

static void test_imbalance_score(void) {
    double moge_mean = -1, moge_max = -1, topk_mean = -1, topk_max = -1;
    int64_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    imbalance_run(MOGE_ROUTING_DEFAULT, &moge_mean, &moge_max, &a0, &a1);
    imbalance_run(MOGE_ROUTING_TOPK, &topk_mean, &topk_max, &b0, &b1);
    printf("  IS over 20 batches, 4 devices: moge mean %.3f max %.3f (device pairs %lld, %lld ...), topk mean %.3f max %.3f (%lld, %lld ...)\n",
           moge_mean, moge_max, (long long)a0, (long long)a1, topk_mean, topk_max, (long long)b0, (long long)b1);
    CHECK(moge_max == 0.0 && moge_mean == 0.0 && a0 == a1);
    CHECK(topk_max > 0.0);
}

int main(void) {
    static const harness_case per_kernels[] = {T(test_dispatch_equals_naive)};
    static const harness_case once[] = {T(test_routing_rules), T(test_fixtures_cpu), T(test_fixtures_ref), T(test_tree_no_routing_leak),
                                        T(test_imbalance_score)};
    int rc = harness_run_per_kernels(per_kernels, 1);
    return harness_run(once, (int)(sizeof once / sizeof once[0])) | rc;
}
