/*
 * test_simulate.c — the Ascend performance model (sim/, moge_simulate, `moge simulate`):
 * hand-computed roofline and collective costs, a whole step of a tiny dense config by hand, the
 * expected distinct experts against exact enumeration and top-K's busiest device against a
 * seeded Monte Carlo, determinism, the fit of the two constants, the paper table (non-fitted
 * decode rows within 25 %), measured routing frequencies from a real `moge eval --json`, and the
 * command line (bad input, --json, --spec-from a real `moge bench --json`, "modelled" on every line).
 */
#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"
#include "sim/sim.h"

#define PANGU "models/configs/pangu-pro-moe-72b"
#define TMP "build/test_simulate"

static bool near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-300; }

static void roofline_hand(void) {
    bool mem;
    /* 1 GB at 1 TB/s = 1 ms; 1 TFLOP at 1 PFLOP/s = 1 ms: a tie counts as memory-bound */
    CHECK(near(sim_roofline_s(1e9, 1e12, 1e12, 1e15, &mem), 1e-3, 1e-12) && mem);
    CHECK(near(sim_roofline_s(1e9, 1e12, 4e12, 1e15, &mem), 4e-3, 1e-12) && !mem);
    CHECK(near(sim_roofline_s(3e9, 1e12, 1e12, 1e15, &mem), 3e-3, 1e-12) && mem);
    CHECK(sim_roofline_s(0, 1e12, 0, 1e15, NULL) == 0);
}

static void collectives_hand(void) {
    const sim_device *a2 = sim_device_find("800I-A2"), *duo = sim_device_find("300i-duo");
    CHECK(a2 && duo && !sim_device_find("910C") && !sim_device_find(NULL));
    /* HCCS: measured algorithm bandwidth, 64 MB all-gathered by 4 NPUs at 64 GB/s = 1 ms */
    CHECK(near(sim_collective_s(a2, SIM_ALL_GATHER, 64e6, 4), 1e-3, 1e-12));
    CHECK(near(sim_collective_s(a2, SIM_REDUCE_SCATTER, 38e6, 2), 1e-3, 1e-12));
    CHECK(near(sim_collective_s(a2, SIM_ALL_REDUCE, 72e6, 8), 1e-3, 1e-12));
    CHECK(near(sim_collective_s(a2, SIM_ALL_REDUCE, 18e6, 2), 1e-3, 1e-12));
    /* 3 NPUs: halfway between the 2- and 4-NPU figures (38 and 64 -> 51 GB/s) */
    CHECK(near(sim_collective_s(a2, SIM_ALL_GATHER, 51e6, 3), 1e-3, 1e-12));
    /* 6 NPUs: halfway between 4 and 8 (30 and 72 -> 51 GB/s) */
    CHECK(near(sim_collective_s(a2, SIM_ALL_REDUCE, 51e6, 6), 1e-3, 1e-12));
    CHECK(sim_collective_s(a2, SIM_ALL_REDUCE, 1e9, 1) == 0);
    /* PCIe ring, 12.8 GB/s per chip: all-gather of 12.8 MB over 8 chips moves 7/8 of it */
    CHECK(near(sim_collective_s(duo, SIM_ALL_GATHER, 12.8e6, 8), 7.0 / 8 * 1e-3, 1e-12));
    CHECK(near(sim_collective_s(duo, SIM_ALL_REDUCE, 12.8e6, 2), 1e-3, 1e-12));
}

static bool write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    fputs(text, f);
    return fclose(f) == 0;
}

static double op_ms(const moge_simulate_result *r, const char *name) {
    for (int i = 0; i < r->n_ops; i++)
        if (!strcmp(r->ops[i].name, name)) return r->ops[i].seconds * 1e3;
    return -1;
}

/* A tiny dense config on one 800I-A2 NPU (no collectives), every op worked out by hand:
 * hidden 64, 2 layers, 4 heads of 16, 2 KV heads, MLP 128, vocabulary 256; W8A8, KV int8,
 * batch 1, context 16. Memory at 1.6 TB/s x 0.8 = 1.28e12 B/s; int8 524e12 x 0.92; fp16 262e12 x 0.92. */
static void step_by_hand(void) {
    CHECK(write_file(TMP "/tiny.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 256, \"hidden_size\": 64, "
                                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                                       "\"intermediate_size\": 128}"));
    moge_simulate_params p = moge_simulate_default_params();
    p.cards = 1, p.batch = 1, p.context = 16;
    moge_simulate_result r;
    char err[512];
    CHECKF(moge_simulate(TMP "/tiny.json", &p, &r, err, sizeof err) == MOGE_OK, "%s", err);
    const double bw = 1.28e12;
    /* q,k,v,o: 64 x (64 + 32 + 32) + 64 x 64 = 12288 int8 weights; activations 64 in, 128 q/k/v
     * out, 64 o in, 64 o out = 320 bytes; ops 2 x 12288 at 482 TOPS: memory-bound */
    CHECK(near(op_ms(&r, "attn_proj"), 2 * (12288 + 320) / bw * 1e3, 1e-9));
    /* KV: 1 sequence x (16 + 1) positions x K and V x 2 heads x 16 x 1 byte = 1088 B at the fitted
     * KV efficiency 1.6e12 x eta_kv; ops 1 x 17 x 4 x 4 heads x 16 = 4352 */
    CHECK(near(op_ms(&r, "attention"), 2 * 1088 / (1.6e12 * SIM_ETA_KV) * 1e3, 1e-9));
    /* MLP: 3 x 64 x 128 = 24576 weights, activations 2 x 64 + 3 x 128 = 512 bytes */
    CHECK(near(op_ms(&r, "mlp"), 2 * (24576 + 512) / bw * 1e3, 1e-9));
    /* lm_head fp16: 256 x 64 x 2 bytes + 1 row x 64 x 2 = 32896 bytes, once */
    CHECK(near(op_ms(&r, "lm_head"), 32896 / bw * 1e3, 1e-9));
    CHECK(near(op_ms(&r, "overhead"), 2 * SIM_LAYER_OVERHEAD_S * 1e3, 1e-9));
    CHECK(op_ms(&r, "tp_comm") < 0 && op_ms(&r, "experts") < 0); /* one chip: no collective; dense */
    double sum = 0;
    for (int i = 0; i < r.n_ops; i++) sum += r.ops[i].seconds;
    CHECK(near(r.step_s, sum, 1e-12));
    CHECK(near(r.t_weights_s + r.t_kv_s + r.t_compute_s + r.t_comm_s + r.t_overhead_s, r.step_s, 1e-12));
    CHECK(near(r.tokens_per_s_per_card, 1 / r.step_s, 1e-12));
    CHECK(r.chips == 1 && r.attn_tp == 1 && r.attn_dp == 1 && !strcmp(r.routing, "dense"));
    /* memory: 2 x (12288 + 24576) + embedding and lm_head 2 x 256 x 64 x 2 bytes; KV 16 x 2 x 2 x 16 x 2 layers */
    CHECK(near(r.weight_bytes_per_chip, 2 * (12288 + 24576) + 2.0 * 256 * 64 * 2, 1e-12));
    CHECK(near(r.kv_bytes_per_chip, 16 * 2 * 2 * 16 * 2, 1e-12));

    /* Two cards, batch 2: DP1 x TP... the default layout is TP = half the chips = 1, DP 2; each DP
     * rank one sequence: the same per-chip op times, no collective (TP 1). */
    p.cards = 2, p.batch = 2;
    moge_simulate_result r2;
    CHECK(moge_simulate(TMP "/tiny.json", &p, &r2, err, sizeof err) == MOGE_OK);
    CHECK(r2.attn_dp == 2 && r2.attn_tp == 1 && near(op_ms(&r2, "attention"), op_ms(&r, "attention"), 1e-12));
    /* TP 2: the projections' weights and the KV heads split; an all-reduce of 1 row x 64 x 2 bytes
     * over 2 NPUs at 18 GB/s per layer for attention and again for the MLP */
    p.attn_tp = 2, p.batch = 1;
    CHECK(moge_simulate(TMP "/tiny.json", &p, &r2, err, sizeof err) == MOGE_OK);
    CHECK(near(op_ms(&r2, "tp_comm"), 2 * 2 * 128 / 18e9 * 1e3, 1e-9));
    CHECK(near(op_ms(&r2, "attention"), 2 * (1088 / 2.0) / (1.6e12 * SIM_ETA_KV) * 1e3, 1e-9));
}

/* ---- distinct experts: exact enumeration twin ------------------------------------------------ */

/* Enumerates every outcome of `rows` independent rows, each choosing subset s (a bit mask over n
 * experts) with probability prob[s]; returns E[distinct experts] over all and per owner (n/owners
 * contiguous experts each) in per_owner[]. */
static double enumerate_distinct(int n, const double *prob, int n_sets, const unsigned *sets, int rows, int owners, double *per_owner) {
    int total = 1;
    for (int i = 0; i < rows; i++) total *= n_sets;
    double e = 0;
    for (int o = 0; o < owners; o++) per_owner[o] = 0;
    for (int code = 0; code < total; code++) {
        double w = 1;
        unsigned u = 0;
        int c = code;
        for (int i = 0; i < rows; i++, c /= n_sets) w *= prob[c % n_sets], u |= sets[c % n_sets];
        e += w * __builtin_popcount(u);
        int per = n / owners;
        for (int o = 0; o < owners; o++) per_owner[o] += w * __builtin_popcount(u & (((1u << per) - 1) << (o * per)));
    }
    return e;
}

static void distinct_vs_enumeration(void) {
    /* MoGE: 4 experts in 2 groups, one per group, skewed inside the groups */
    {
        const double pg0[2] = {0.7, 0.3}, pg1[2] = {0.2, 0.8};
        unsigned sets[4];
        double prob[4], p[4] = {pg0[0], pg0[1], pg1[0], pg1[1]}, per[2];
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) sets[a * 2 + b] = (1u << a) | (1u << (2 + b)), prob[a * 2 + b] = pg0[a] * pg1[b];
        for (int rows = 1; rows <= 4; rows++) {
            double e = enumerate_distinct(4, prob, 4, sets, rows, 2, per);
            sim_moe_load ld;
            sim_moe_layer_load(p, 4, 2, 2, true, 2, rows, &ld);
            CHECKF(near(ld.distinct, e, 1e-12), "rows %d: formula %g, enumeration %g", rows, ld.distinct, e);
            CHECKF(near(ld.distinct_max, per[0] > per[1] ? per[0] : per[1], 1e-12), "rows %d", rows);
            CHECK(ld.pairs_max == rows && ld.pairs_mean == rows && ld.imbalance == 0); /* one pair per group per row */
        }
    }
    /* Global top-2 of 4, a non-uniform distribution over the 6 pairs */
    {
        const unsigned sets[6] = {0x3, 0x5, 0x9, 0x6, 0xa, 0xc};
        const double prob[6] = {0.30, 0.05, 0.15, 0.20, 0.10, 0.20};
        double p[4] = {0}, per[2];
        for (int s = 0; s < 6; s++)
            for (int e = 0; e < 4; e++)
                if (sets[s] >> e & 1) p[e] += prob[s];
        for (int rows = 1; rows <= 5; rows++) {
            double e = enumerate_distinct(4, prob, 6, sets, rows, 2, per);
            CHECKF(near(sim_distinct_expected(p, 4, rows), e, 1e-12), "rows %d", rows);
            CHECKF(near(sim_distinct_expected(p, 2, rows), per[0], 1e-12) && near(sim_distinct_expected(p + 2, 2, rows), per[1], 1e-12),
                   "rows %d per device", rows);
        }
    }
    /* Uniform: N (1 - (1 - K/N)^B) for both rules; 1 row reads exactly K experts */
    sim_routing u;
    char err[256];
    CHECK(sim_routing_uniform(&u, 64, 8, 8, err, sizeof err) == MOGE_OK && !u.measured);
    CHECK(near(sim_distinct_expected(u.p, 64, 1), 8, 1e-12));
    CHECK(near(sim_distinct_expected(u.p, 64, 16), 64 * (1 - pow(56.0 / 64, 16)), 1e-12));
    CHECK(sim_distinct_expected(u.p, 64, 1e6) <= 64 && sim_distinct_expected(u.p, 64, 1e6) > 63.999);
    sim_routing_free(&u);
    CHECK(sim_routing_uniform(&u, 64, 7, 8, err, sizeof err) == MOGE_ERR_ARG);
}

static double normal_max_mc(int n, int trials, uint64_t *s);

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double normal_max_mc(int n, int trials, uint64_t *s) {
    double sum = 0;
    for (int t = 0; t < trials; t++) {
        double m = -1e300;
        for (int i = 0; i < n; i++) {
            double u1 = ((splitmix(s) >> 11) + 0.5) / 9007199254740992.0, u2 = ((splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
            double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
            if (z > m) m = z;
        }
        sum += m;
    }
    return sum / trials;
}

static void normal_max(void) {
    CHECK(sim_normal_max(1) == 0);
    CHECK(near(sim_normal_max(2), 1 / sqrt(M_PI), 1e-6));
    CHECK(near(sim_normal_max(4), 1.0293754, 1e-5));
    CHECK(near(sim_normal_max(8), 1.4236003, 1e-5));
    uint64_t s = 7;
    CHECK(near(sim_normal_max(5), normal_max_mc(5, 200000, &s), 0.01));
}

/* Top-K's busiest device against a seeded Monte Carlo of uniform top-8 of 64 on 4 devices. */
static void topk_busiest_vs_montecarlo(void) {
    const int N = 64, K = 8, D = 4, trials = 4000;
    double p[64];
    for (int e = 0; e < N; e++) p[e] = (double)K / N;
    uint64_t s = 12345;
    for (int rows = 16; rows <= 256; rows *= 4) {
        double sum_max = 0, sum_is = 0;
        for (int t = 0; t < trials; t++) {
            int dev[4] = {0};
            for (int r = 0; r < rows; r++) {
                int perm[64];
                for (int e = 0; e < N; e++) perm[e] = e;
                for (int j = 0; j < K; j++) { /* partial Fisher-Yates: K distinct experts */
                    int x = j + (int)(splitmix(&s) % (uint64_t)(N - j)), tmp = perm[j];
                    perm[j] = perm[x], perm[x] = tmp;
                    dev[perm[j] / (N / D)]++;
                }
            }
            int mx = 0, mn = 1 << 30;
            for (int d = 0; d < D; d++) mx = dev[d] > mx ? dev[d] : mx, mn = dev[d] < mn ? dev[d] : mn;
            sum_max += mx, sum_is += (double)(mx - mn) / rows;
        }
        sim_moe_load ld;
        sim_moe_layer_load(p, N, 8, K, false, D, rows, &ld);
        CHECKF(near(ld.pairs_max, sum_max / trials, 0.03), "rows %d: model %g, Monte Carlo %g", rows, ld.pairs_max, sum_max / trials);
        CHECKF(near(ld.imbalance, sum_is / trials, 0.15), "rows %d: IS model %g, Monte Carlo %g", rows, ld.imbalance, sum_is / trials);
        CHECK(ld.pairs_mean == rows * K / D && ld.pairs_max > ld.pairs_mean);
        sim_moe_layer_load(p, N, 8, K, true, D, rows, &ld); /* MoGE: balanced by construction */
        CHECK(ld.pairs_max == ld.pairs_mean && ld.imbalance == 0);
    }
}

/* ---- the whole model ----------------------------------------------------------------------- */

static void deterministic(void) {
    moge_simulate_params p = moge_simulate_default_params();
    p.batch = 300, p.spec_rows = 3, p.tau = 2.1, p.routing = MOGE_ROUTING_TOPK;
    moge_simulate_result a, b;
    char err[512];
    CHECKF(moge_simulate(PANGU, &p, &a, err, sizeof err) == MOGE_OK, "%s", err);
    CHECK(moge_simulate(PANGU "/config.json", &p, &b, err, sizeof err) == MOGE_OK);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK(a.step_s > 0 && a.t_draft_s > 0 && near(a.tokens_per_s_per_card, 300 * 2.1 / a.step_s / 4, 1e-12));
    CHECK(near(a.t_weights_s + a.t_kv_s + a.t_compute_s + a.t_comm_s + a.t_overhead_s, a.step_s, 1e-9));
}

static void calibration_fit(void) {
    sim_consts k = sim_consts_default();
    char err[512];
    CHECKF(sim_calibrate(PANGU, &k, err, sizeof err) == MOGE_OK, "%s", err);
    CHECKF(near(k.layer_overhead_s, SIM_LAYER_OVERHEAD_S, 1e-4), "fitted %.6e, shipped %.6e", k.layer_overhead_s, SIM_LAYER_OVERHEAD_S);
    CHECKF(near(k.eta_kv, SIM_ETA_KV, 1e-4), "fitted %.6f, shipped %.6f", k.eta_kv, SIM_ETA_KV);
    CHECK(k.eta_mem == SIM_ETA_MEM && k.eta_compute == SIM_ETA_COMPUTE);
}

/* The paper table: the fitted rows reproduce, every other decode row within 25 %, and each
 * speculation row is reproduced by a tau between 1 and the rows verified. */
static void paper_table(void) {
    moge_simulate_paper_row row;
    int n = 0, n_fit = 0, n_pred = 0;
    for (int32_t i = 0; moge_simulate_paper(i, &row); i++, n++) {
        char dir[256], err[512];
        snprintf(dir, sizeof dir, "models/%s", row.model);
        moge_simulate_params p = moge_simulate_default_params();
        p.device = row.device, p.cards = row.cards, p.batch = row.batch, p.spec_rows = row.spec_rows;
        moge_simulate_result r;
        CHECKF(moge_simulate(dir, &p, &r, err, sizeof err) == MOGE_OK, "%s: %s", row.label, err);
        double err_rate = row.tokens_per_s_per_card > 0 ? r.tokens_per_s_per_card / row.tokens_per_s_per_card - 1 : r.step_s * 1e3 / row.step_ms - 1;
        if (row.calibrated) {
            n_fit++;
            CHECKF(fabs(err_rate) < 0.001, "%s (fitted): %+.2f %%", row.label, 100 * err_rate);
        } else if (row.spec_rows == 1) {
            n_pred++;
            CHECKF(fabs(err_rate) <= 0.25, "%s: model %.0f tokens/s per card, paper %.0f (%+.1f %%)", row.label, r.tokens_per_s_per_card,
                   row.tokens_per_s_per_card, 100 * err_rate);
        } else {
            double tau = row.tokens_per_s_per_card * row.cards * r.step_s / row.batch;
            CHECKF(tau >= 1 && tau <= row.spec_rows, "%s: tau %g", row.label, tau);
        }
    }
    CHECK(n == 7 && n_fit == 2 && n_pred == 3);
    CHECK(!moge_simulate_paper(-1, &row) && !moge_simulate_paper(7, &row));
}

/* MoGE against global top-K on the same shape: top-K's busiest chip reads more experts and
 * computes more pairs, so small batches decode slower; the union of experts saturates. */
static void moge_vs_topk(void) {
    moge_simulate_params p = moge_simulate_default_params();
    moge_simulate_result m, t;
    char err[512];
    for (int b = 1; b <= 16; b *= 4) {
        p.batch = b;
        p.routing = MOGE_ROUTING_MOGE;
        CHECK(moge_simulate(PANGU, &p, &m, err, sizeof err) == MOGE_OK);
        p.routing = MOGE_ROUTING_TOPK;
        CHECK(moge_simulate(PANGU, &p, &t, err, sizeof err) == MOGE_OK);
        CHECKF(t.step_s > m.step_s, "batch %d: top-K %g s, MoGE %g s", b, t.step_s, m.step_s);
        CHECK(near(m.distinct_experts, t.distinct_experts, 1e-12)); /* same marginals, same union */
        CHECK(m.imbalance == 0 && t.imbalance > 0 && t.distinct_experts_chip > m.distinct_experts_chip);
    }
    CHECK(m.distinct_experts < 16 * 8); /* the union effect: 128 pairs read fewer than 128 experts */
    p.batch = 1, p.routing = MOGE_ROUTING_MOGE;
    CHECK(moge_simulate(PANGU, &p, &m, err, sizeof err) == MOGE_OK && near(m.distinct_experts, 8, 1e-12) && near(m.distinct_experts_chip, 2, 1e-12));
}

static void expect_arg(const char *model, moge_simulate_params p, moge_status want, const char *needle) {
    moge_simulate_result r;
    char err[512] = "";
    moge_status st = moge_simulate(model, &p, &r, err, sizeof err);
    CHECKF(st == want && strstr(err, needle), "status %d (want %d), message \"%s\" lacks \"%s\"", st, want, err, needle);
}

static void bad_params(void) {
    moge_simulate_params d = moge_simulate_default_params(), p;
    p = d, p.device = "H100";
    expect_arg(PANGU, p, MOGE_ERR_ARG, "device \"H100\" is not modelled");
    p = d, p.cards = 0;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "cards: 0");
    p = d, p.cards = 9;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "cards: 9");
    p = d, p.cards = 3; /* 3 chips neither divide 8 groups nor are a multiple of them */
    expect_arg(PANGU, p, MOGE_ERR_ARG, "expert groups");
    p = d, p.cards = 3, p.attn_tp = 3;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "attn_tp: 3 does not divide the model's 40 attention heads");
    p = d, p.attn_tp = 3;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "attn_tp: 3 does not divide the 4 chips");
    p = d, p.batch = 0;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "batch: 0");
    p = d, p.context = 0;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "context: 0");
    p = d, p.weight_bits = 4;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "weight_bits");
    p = d, p.spec_rows = 2, p.tau = 2.5;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "tau: 2.5");
    p = d, p.tau = 1.5;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "tau: 1.5");
    p = d, p.routing = MOGE_ROUTING_GROUP_LIMITED;
    expect_arg(PANGU, p, MOGE_ERR_ARG, "group_limited is not modelled");
    p = d, p.routing = MOGE_ROUTING_TOPK;
    expect_arg("models/configs/qwen2.5-32b", p, MOGE_ERR_ARG, "dense model");
    p = d, p.routing_stats = "tests/fixtures/eval/expected.json";
    expect_arg("models/configs/qwen2.5-32b", p, MOGE_ERR_ARG, "dense model");
    expect_arg("models/no-such-model", d, MOGE_ERR_IO, "models/no-such-model");
    p = d, p.routing_stats = TMP "/missing.json";
    expect_arg(PANGU, p, MOGE_ERR_IO, "missing.json");
    CHECK(write_file(TMP "/notjson.json", "{\"moe\": 3"));
    p = d, p.routing_stats = TMP "/notjson.json";
    expect_arg(PANGU, p, MOGE_ERR_FORMAT, "malformed JSON");
    /* 8 cards of 300I Duo = 16 chips over 8 groups: each group split over 2 chips */
    p = d, p.device = "300I-Duo", p.cards = 8;
    moge_simulate_result r;
    char err[256];
    CHECK(moge_simulate(PANGU, &p, &r, err, sizeof err) == MOGE_OK && r.chips == 16 && r.expert_owners == 8);
}

/* Routing frequencies measured by the real runtime: moge eval --json of the demo MoGE model. */
static void measured_routing(void) {
    int rc = moge_cmd("eval -m models/tinystories-moge -f tests/fixtures/eval/tinystories-6.txt --windows 4 -t 1 --json " TMP "/eval.json",
                      TMP "/eval.out", TMP "/eval.err");
    CHECKF(rc == 0, "moge eval exit %d", rc);
    char *text = slurp_text(TMP "/eval.json");
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *moe = cJSON_GetObjectItem(root, "moe"), *layers = cJSON_GetObjectItem(moe, "layers");
    double rows = cJSON_GetObjectItem(moe, "rows") ? cJSON_GetObjectItem(moe, "rows")->valuedouble : 0;
    CHECK(cJSON_GetArraySize(layers) == 6 && rows > 0);
    moge_simulate_params p = moge_simulate_default_params();
    p.batch = 3, p.routing_stats = TMP "/eval.json";
    moge_simulate_result m, u;
    char err[512];
    CHECKF(moge_simulate("models/tinystories-moge", &p, &m, err, sizeof err) == MOGE_OK, "%s", err);
    CHECK(m.routing_measured && !strcmp(m.routing, "moge"));
    /* the mean over layers of sum_e 1 - (1 - hits/rows)^(batch x 4 chips' DP... all rows: 3) */
    double want = 0;
    for (int l = 0; l < 6; l++) {
        const cJSON *hits = cJSON_GetObjectItem(cJSON_GetArrayItem(layers, l), "expert_hits");
        for (int e = 0; e < 32; e++) want += 1 - pow(1 - cJSON_GetArrayItem(hits, e)->valuedouble / rows, 3);
    }
    CHECKF(near(m.distinct_experts, want / 6, 1e-9), "model %g, from the file %g", m.distinct_experts, want / 6);
    p.routing_stats = NULL;
    CHECK(moge_simulate("models/tinystories-moge", &p, &u, err, sizeof err) == MOGE_OK && !u.routing_measured);
    CHECK(near(u.distinct_experts, 32 * (1 - pow(1 - 8.0 / 32, 3)), 1e-12));
    CHECK(m.distinct_experts < u.distinct_experts); /* skewed frequencies touch fewer experts */
    /* stats of another expert layout are refused, naming both */
    p.routing_stats = TMP "/eval.json";
    expect_arg(PANGU, p, MOGE_ERR_FORMAT, "measured on 32 experts in 8 groups");
    /* a tampered count */
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 2), "expert_hits"), 5, cJSON_CreateNumber(rows + 1));
    char *bad = cJSON_Print(root);
    CHECK(write_file(TMP "/eval-bad.json", bad));
    free(bad);
    cJSON_Delete(root);
    p.routing_stats = TMP "/eval-bad.json";
    expect_arg("models/tinystories-moge", p, MOGE_ERR_FORMAT, "moe.layers[2].expert_hits[5]");
}

/* ---- the command line ---------------------------------------------------------------------- */

static bool every_line_modelled(const char *path) {
    char *t = slurp_text(path);
    bool ok = t[0] != 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        if (!strstr(line, "modelled")) {
            printf("  line without \"modelled\": %s\n", line);
            ok = false;
        }
    free(t);
    return ok;
}

static void cli_output_and_json(void) {
    unlink(TMP "/out.json");
    int rc = moge_cmd("simulate -m " PANGU " --batch 456 --json " TMP "/out.json", TMP "/s.out", TMP "/s.err");
    CHECK(rc == 0);
    CHECK(every_line_modelled(TMP "/s.out"));
    char *t = slurp_text(TMP "/out.json");
    cJSON *j = cJSON_Parse(t);
    free(t);
    const cJSON *split = cJSON_GetObjectItem(j, "split");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "modelled")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, "tokens_per_s_per_card")) && cJSON_IsNumber(cJSON_GetObjectItem(j, "step_ms")));
    double tps = cJSON_GetObjectItem(j, "tokens_per_s_per_card") ? cJSON_GetObjectItem(j, "tokens_per_s_per_card")->valuedouble : 0;
    CHECKF(near(tps, 1148, 0.001), "%g", tps);
    const char *keys[] = {"weights_ms", "kv_ms", "compute_ms", "communication_ms", "overhead_ms"};
    double sum = 0;
    for (int i = 0; i < 5; i++) {
        const cJSON *x = cJSON_GetObjectItem(split, keys[i]);
        CHECKF(cJSON_IsNumber(x), "split.%s", keys[i]);
        sum += x ? x->valuedouble : 0;
    }
    CHECK(cJSON_GetObjectItem(j, "step_ms") && near(sum, cJSON_GetObjectItem(j, "step_ms")->valuedouble, 1e-9));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ops")) >= 8);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "moe"), "frequencies")));
    cJSON_Delete(j);

    /* --paper: every line modelled, the table as JSON */
    rc = moge_cmd("simulate --paper --json " TMP "/paper.json", TMP "/p.out", TMP "/p.err");
    CHECK(rc == 0 && every_line_modelled(TMP "/p.out"));
    t = slurp_text(TMP "/paper.json");
    j = cJSON_Parse(t);
    free(t);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rows")) == 7);
    cJSON_Delete(j);
    t = slurp_text(TMP "/p.out");
    CHECK(strstr(t, "reproduces 1528") && strstr(t, "reproduces 321") && strstr(t, "fitted (calibration row)"));
    free(t);

    /* --spec-from a real moge bench --json */
    rc = moge_cmd("bench --modes none,tree -n 16 --repeats 1 -t 1 --json " TMP "/bench.json", TMP "/b.out", TMP "/b.err");
    CHECKF(rc == 0, "moge bench exit %d", rc);
    rc = moge_cmd("simulate -m " PANGU " --batch 64 --spec-from " TMP "/bench.json --json " TMP "/spec.json", TMP "/sp.out", TMP "/sp.err");
    CHECK(rc == 0 && every_line_modelled(TMP "/sp.out"));
    t = slurp_text(TMP "/spec.json");
    j = cJSON_Parse(t);
    free(t);
    const cJSON *sp = cJSON_GetObjectItem(j, "speculation");
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(sp, "tau")) && cJSON_GetObjectItem(sp, "tau")->valuedouble >= 1);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(sp, "rows_per_sequence")) && cJSON_GetObjectItem(sp, "rows_per_sequence")->valuedouble >= 2);
    cJSON_Delete(j);
    /* --latency: the paper's 99.31 ms per token is the fitted batch 456 (batch 457 takes longer) */
    rc = moge_cmd("simulate -m " PANGU " --latency 99.31", TMP "/l.out", TMP "/l.err");
    t = slurp_text(TMP "/l.out");
    CHECKF(rc == 0 && strstr(t, "batch        456: the largest") && strstr(t, "inputs       batch 456,"), "%s", t);
    free(t);
    CHECK(every_line_modelled(TMP "/l.out"));
    /* measured routing through the command */
    rc = moge_cmd("simulate -m models/tinystories-moge --batch 4 --routing-stats " TMP "/eval.json", TMP "/r.out", TMP "/r.err");
    t = slurp_text(TMP "/r.out");
    CHECK(rc == 0 && strstr(t, "measured frequencies"));
    free(t);
}

static void cli_bad_input(void) {
    const char *O = TMP "/bad.out", *E = TMP "/bad.err";
    static const struct {
        const char *args; /* after "simulate"; "@" stands for -m PANGU */
        int rc;
        const char *needle;
    } cases[] = {
        {"", 2, "-m DIR|config.json is required"},
        {"@ --device 910C", 2, "device \"910C\" is not modelled"},
        {"@ --cards abc", 2, "--cards"},
        {"@ --cards 0", 2, "--cards"},
        {"@ --cards 3", 2, "expert groups"},
        {"@ --cards 16", 2, "cards: 16"},
        {"@ --batch 0", 2, "--batch"},
        {"@ --batch -5", 2, "--batch"},
        {"@ --quant q4", 2, "--quant: \"q4\" is not w8a8 or fp16"},
        {"@ --kv fp8", 2, "--kv"},
        {"@ --routing random", 2, "--routing"},
        {"@ --tau 1.5", 2, "--tau needs --spec-rows"},
        {"@ --spec-rows 2 --tau 3", 2, "tau: 3"},
        {"@ --spec-rows 2 --spec-from x.json", 2, "--spec-from"},
        {"@ --spec-from " TMP "/nope.json", 1, "nope.json"},
        {"@ --spec-from tests/fixtures/eval/expected.json", 1, "no speculative mode"},
        {"@ --routing-stats " TMP "/nope.json", 1, "nope.json"},
        {"-m models/no-such-model", 1, "no-such-model"},
        {"@ --frobnicate", 2, "unknown option \"--frobnicate\" (see moge simulate --help)"},
        {"@ stray", 2, "unexpected argument \"stray\""},
        {"@ --tau", 2, "--tau needs a value"},
        {"@ --spec-rows 2 --tau x", 2, "--tau"},
        {"@ --draft-layers -1", 2, "--draft-layers"},
        {"@ --batch", 2, "--batch"},
        {"--paper @", 2, "--paper takes no model"},
        {"@ --latency 90 --batch 4", 2, "give it or --batch, not both"},
        {"@ --latency 5", 1, "even batch 1 takes 18.44 ms"},
        {"@ --latency 0", 2, "--latency"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[512] = "simulate";
        const char *at = strchr(cases[i].args, '@');
        if (at) snprintf(args, sizeof args, "simulate %.*s-m " PANGU "%s", (int)(at - cases[i].args), cases[i].args, at + 1);
        else if (cases[i].args[0]) snprintf(args, sizeof args, "simulate %s", cases[i].args);
        expect_moge_error(args, cases[i].rc, cases[i].needle, O, E);
    }
    /* an unwritable --json leaves no file and fails */
    expect_moge_error("simulate -m " PANGU " --json " TMP "/no-dir/out.json", 1, "--json", O, E);
    CHECK(access(TMP "/no-dir/out.json", F_OK) != 0);
}

int main(void) {
    if (shell("mkdir -p " TMP) != 0) return 1;
    RUN_TESTS(T(roofline_hand), T(collectives_hand), T(step_by_hand), T(distinct_vs_enumeration), T(normal_max), T(topk_busiest_vs_montecarlo),
              T(deterministic), T(calibration_fit), T(paper_table), T(moge_vs_topk), T(bad_params), T(measured_routing),
              T(cli_output_and_json), T(cli_bad_input));
}
