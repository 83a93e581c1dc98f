/*
 * paper.c — the decode figures of the Pangu Pro MoE paper (arXiv 2505.21411, section on inference
 * on Ascend; W8A8, input length 2048, 4 cards, tokens/s per card = batch / TPOT / 4) and the fit
 * of the model's two free constants to two of them.
 */
#include <math.h>

#include "runtime/errors.h"
#include "sim/sim.h"

static const moge_simulate_paper_row ROWS[] = {
    {"800I A2, Pangu Pro MoE, batch 1", "configs/pangu-pro-moe-72b", "800I-A2", 4, 1, 1, 18.44, 0, true},
    {"800I A2, Pangu Pro MoE", "configs/pangu-pro-moe-72b", "800I-A2", 4, 456, 1, 99.31, 1148, true},
    {"300I Duo, Pangu Pro MoE", "configs/pangu-pro-moe-72b", "300I-Duo", 4, 80, 1, 99.5, 201, false},
    {"800I A2, 32B dense", "configs/qwen2.5-32b", "800I-A2", 4, 336, 1, 86.34, 973, false},
    {"800I A2, 72B dense", "configs/qwen2.5-72b", "800I-A2", 4, 228, 1, 97.74, 583, false},
    {"800I A2, Pangu Pro MoE + MTP", "configs/pangu-pro-moe-72b", "800I-A2", 4, 584, 2, 95.6, 1528, false},
    {"300I Duo, Pangu Pro MoE + MTP", "configs/pangu-pro-moe-72b", "300I-Duo", 4, 128, 2, 99.7, 321, false},
};

bool moge_simulate_paper(int32_t i, moge_simulate_paper_row *out) {
    if (i < 0 || i >= (int32_t)(sizeof ROWS / sizeof ROWS[0])) return false;
    *out = ROWS[i];
    return true;
}

/* The step of `batch` sequences of the Pangu config on 4 x 800I-A2 under k. */
static moge_status pangu_step(const model_config *c, const sim_routing *r, const sim_consts *k, int batch, double *step_s, char *err,
                              size_t n) {
    moge_simulate_params p = moge_simulate_default_params();
    p.batch = batch;
    moge_simulate_result res;
    moge_status st = sim_step(c, &p, r, k, &res, err, n);
    *step_s = res.step_s;
    return st;
}

moge_status sim_calibrate(const char *pangu, sim_consts *k, char *err, size_t n) {
    model_config c;
    moge_status st = sim_load_config(pangu, &c, err, n);
    if (st != MOGE_OK) return st;
    sim_routing r;
    if ((st = sim_routing_uniform(&r, c.n_expert, c.n_group, c.n_expert_used, err, n)) != MOGE_OK) return st;
    const double t1 = ROWS[0].step_ms * 1e-3, t456 = ROWS[1].batch / ROWS[1].tokens_per_s_per_card / ROWS[1].cards;
    /* The step is (time of the ops) + layers x overhead; the overhead follows from the batch-1 step
     * given eta_kv, and eta_kv (the step falls as it grows) from batch 456 given the overhead, by
     * bisection; alternate until both hold. */
    for (int it = 0; it < 30 && st == MOGE_OK; it++) {
        double s;
        sim_consts z = *k;
        z.layer_overhead_s = 0;
        if ((st = pangu_step(&c, &r, &z, 1, &s, err, n)) != MOGE_OK) break;
        k->layer_overhead_s = (t1 - s) / c.n_layer;
        double lo = 0.01, hi = 1.0;
        for (int b = 0; b < 60 && st == MOGE_OK; b++) {
            k->eta_kv = 0.5 * (lo + hi);
            st = pangu_step(&c, &r, k, ROWS[1].batch, &s, err, n);
            if (s > t456) lo = k->eta_kv;
            else hi = k->eta_kv;
        }
    }
    sim_routing_free(&r);
    if (st == MOGE_OK && !(k->layer_overhead_s > 0 && k->eta_kv > 0.011 && k->eta_kv < 0.999))
        return set_err(err, n, MOGE_ERR_ARG, "%s: the fit left its range (overhead %g s, eta_kv %g)", pangu, k->layer_overhead_s, k->eta_kv);
    return st;
}
