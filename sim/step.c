/*
 * step.c — one decode (or speculative verification) step, op by op, on the slowest chip.
 *
 * Layout (the paper's H2P): the chips (cards x chips per card) run attention as DP x TP (each DP
 * rank holds ceil(batch / DP) sequences, each TP rank heads / TP query heads and its share of the
 * KV heads); a layer's attention output is all-reduced in its TP group. A MoE layer then
 * all-gathers every row to every chip, each chip computes its whole expert groups (more chips than
 * groups: each group's experts split in slices over chips / groups chips) and the shared expert's
 * 1 / chips slice for every row, and the outputs are reduce-scattered back. A dense model's MLP is
 * tensor-parallel like its attention (TP group, then an all-reduce). The lm_head is split over all
 * chips by vocabulary. Per layer:
 *   attn_proj  q, k, v and o projections (matmul)
 *   attention  the KV-cache read of the step's sequences and QK / PV (fp16)
 *   tp_comm    the TP all-reduce(s) of the layer
 *   router     the gate (fp16) over every row
 *   moe_comm   dispatch (all-gather, int8 rows) and combine (reduce-scatter, fp16 rows)
 *   experts    the grouped matmul of the chip's experts: the expected distinct experts' weights
 *              and the busiest chip's token-expert pairs (routing.c)
 *   shared     the shared expert's slice
 *   mlp        a dense model's MLP
 * and once: lm_head; overhead is the fitted fixed cost per layer (kernel launches, synchronisation,
 * collective latency). Each op costs max(bytes / (bandwidth x eta), ops / (peak x eta)); ops
 * count a multiply-add as 2. A speculative step verifies batch x spec_rows rows against the same
 * sequences' caches, after the drafter's levels (spec_rows - 1 of them, a chain such as a
 * multi-token-prediction head drafts), each a plain pass of draft_layers layers and the lm_head.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/errors.h"
#include "sim/sim.h"

enum { OP_ATTN_PROJ, OP_ATTENTION, OP_TP_COMM, OP_ROUTER, OP_MOE_COMM, OP_EXPERTS, OP_SHARED, OP_MLP, OP_LM_HEAD, OP_OVERHEAD, N_OPS };
static const char *const OP_NAMES[N_OPS] = {"attn_proj", "attention", "tp_comm", "router", "moe_comm",
                                            "experts",   "shared",    "mlp",     "lm_head", "overhead"};

typedef enum { CAT_WEIGHTS, CAT_KV, CAT_COMPUTE, CAT_COMM, CAT_OVERHEAD, N_CAT } cat;

typedef struct {
    double op_s[N_OPS];
    double op_mem_s[N_OPS], op_compute_s[N_OPS]; /* how much of each op was memory- / compute-bound */
    double cat_s[N_CAT];
    double total_s, layers_s; /* layers_s: everything but the lm_head */
    double distinct, distinct_chip, pairs_max, pairs_mean, imbalance; /* sums over MoE layers */
} pass_acc;

typedef struct {
    const model_config *c;
    const sim_device *d;
    const sim_routing *r;
    const sim_consts *k;
    int chips, tp, dp, owners, slice, batch, context;
    bool moe, moge;
    double wb, ab, kvb; /* bytes per weight, per matmul activation, per KV value */
    double mm_peak;     /* ops/s of the matmuls (int8 with W8A8, else fp16) */
} model_ctx;

/* Adds an op of `bytes` (weights unless kv) and `ops` to acc, n times. */
static void add_op(pass_acc *a, int op, double bytes, double bw, double ops, double peak, double n, bool kv) {
    bool mem;
    double t = n * sim_roofline_s(bytes, bw, ops, peak, &mem);
    a->op_s[op] += t;
    if (mem) a->op_mem_s[op] += t, a->cat_s[kv ? CAT_KV : CAT_WEIGHTS] += t;
    else a->op_compute_s[op] += t, a->cat_s[CAT_COMPUTE] += t;
}

static void add_comm(pass_acc *a, int op, double t) {
    a->op_s[op] += t;
    a->cat_s[CAT_COMM] += t;
}

/* One forward pass over rows_per_seq rows of each of the batch's sequences. */
static void run_pass(const model_ctx *m, int rows_per_seq, pass_acc *a) {
    memset(a, 0, sizeof *a);
    const model_config *c = m->c;
    const sim_device *d = m->d;
    double bw = d->mem_bw * m->k->eta_mem, bw_kv = d->mem_bw * m->k->eta_kv;
    double pk = m->mm_peak * m->k->eta_compute, pk16 = d->fp16_ops * m->k->eta_compute;
    double L = c->n_layer, h = c->n_embd, hd = c->head_dim;
    double qd = (double)c->n_head * hd, kvd = (double)c->n_head_kv * hd;
    double seqs = ceil((double)m->batch / m->dp), rows = seqs * rows_per_seq, R = (double)m->batch * rows_per_seq;
    double kvh = c->n_head_kv >= m->tp ? ceil((double)c->n_head_kv / m->tp) : 1, qh = (double)c->n_head / m->tp;

    double proj = (h * (qd + 2 * kvd) + qd * h) / m->tp;
    add_op(a, OP_ATTN_PROJ, proj * m->wb + rows * (2 * h + (2 * qd + 2 * kvd) / m->tp) * m->ab, bw, 2 * rows * proj, pk, L, false);
    /* Attention streams the cache at its own (fitted) efficiency: time of the KV bytes at bw_kv,
     * expressed as bytes at bw so that add_op's roofline compares like with like. */
    double kv_bytes = seqs * (m->context + rows_per_seq) * 2 * kvh * hd * m->kvb;
    double att_ops = rows * (m->context + rows_per_seq) * 4 * qh * hd;
    add_op(a, OP_ATTENTION, kv_bytes * (bw / bw_kv), bw, att_ops, pk16, L, true);
    add_comm(a, OP_TP_COMM, L * sim_collective_s(d, SIM_ALL_REDUCE, rows * h * 2, m->tp));

    if (m->moe) {
        double N = c->n_expert, ffe = c->n_ff_expert, ffs = c->n_ff_shared;
        add_op(a, OP_ROUTER, h * N * 2 + R * h * m->ab, bw, 2 * R * h * N, pk16, L, false);
        add_comm(a, OP_MOE_COMM, L * (sim_collective_s(d, SIM_ALL_GATHER, R * h * m->ab, m->chips) +
                                      sim_collective_s(d, SIM_REDUCE_SCATTER, R * h * 2, m->chips)));
        double expert = 3 * h * ffe / m->slice;
        for (int l = 0; l < c->n_layer; l++) {
            /* measured frequencies of every layer, or of the mean layer when the file has another
             * layer count; uniform ones have one layer */
            sim_moe_load ld;
            const sim_routing *r = m->r;
            const double *p = r->p + (size_t)(r->n_layer == c->n_layer ? l : 0) * r->n_expert;
            double mean_p[4096];
            if (r->n_layer != c->n_layer && r->n_layer > 1) {
                for (int e = 0; e < r->n_expert; e++) {
                    double s = 0;
                    for (int j = 0; j < r->n_layer; j++) s += r->p[(size_t)j * r->n_expert + e];
                    mean_p[e] = s / r->n_layer;
                }
                p = mean_p;
            }
            sim_moe_layer_load(p, c->n_expert, c->n_group, c->n_expert_used, m->moge, m->owners, R, &ld);
            add_op(a, OP_EXPERTS, ld.distinct_max * expert * m->wb + ld.pairs_max * (2 * h + 3 * ffe / m->slice) * m->ab, bw,
                   2 * ld.pairs_max * expert, pk, 1, false);
            a->distinct += ld.distinct, a->distinct_chip += ld.distinct_max;
            a->pairs_max += ld.pairs_max, a->pairs_mean += ld.pairs_mean, a->imbalance += ld.imbalance;
        }
        if (ffs > 0) {
            double sh = 3 * h * ffs / m->chips;
            add_op(a, OP_SHARED, sh * m->wb + R * (2 * h + 3 * ffs / m->chips) * m->ab, bw, 2 * R * sh, pk, L, false);
        }
    } else {
        double mlp = 3 * h * c->n_ff / m->tp;
        add_op(a, OP_MLP, mlp * m->wb + rows * (2 * h + 3 * c->n_ff / m->tp) * m->ab, bw, 2 * rows * mlp, pk, L, false);
        add_comm(a, OP_TP_COMM, L * sim_collective_s(d, SIM_ALL_REDUCE, rows * h * 2, m->tp));
    }
    a->op_s[OP_OVERHEAD] = a->cat_s[CAT_OVERHEAD] = L * m->k->layer_overhead_s;
    for (int i = 0; i < N_OPS; i++) a->layers_s += a->op_s[i];
    /* lm_head in fp16 (W8A8 deployments keep it unquantized), split over every chip by vocabulary */
    double lm = (double)c->n_vocab * h / m->chips;
    add_op(a, OP_LM_HEAD, lm * 2 + R * h * 2, bw, 2 * R * lm, pk16, 1, false);
    for (int i = 0; i < N_OPS; i++) a->total_s += a->op_s[i];
}

moge_status sim_load_config(const char *model, model_config *c, char *err, size_t n) {
    struct stat sb;
    char path[4200];
    if (!model || !*model) return set_err(err, n, MOGE_ERR_ARG, "model: no model directory or config.json given");
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(path, sizeof path, "%s/config.json", model);
    else snprintf(path, sizeof path, "%s", model);
    return config_load(c, path, err, n);
}

/* Checks p against the device and the model and fills the layout of m. */
static moge_status setup(model_ctx *m, const model_config *c, const moge_simulate_params *p, char *err, size_t n) {
    const sim_device *d = sim_device_find(p->device);
    if (!d) return set_err(err, n, MOGE_ERR_ARG, "device \"%s\" is not modelled (known: %s)", p->device ? p->device : "(null)", sim_device_names());
    if (p->cards < 1 || p->cards > d->max_cards)
        return set_err(err, n, MOGE_ERR_ARG, "cards: %d is not 1..%d (one %s server; scale-out is not modelled)", p->cards, d->max_cards, d->name);
    if (p->batch < 1 || p->batch > 1000000) return set_err(err, n, MOGE_ERR_ARG, "batch: %d is not 1..1000000", p->batch);
    if (p->context < 1 || p->context > 100000000) return set_err(err, n, MOGE_ERR_ARG, "context: %d is not 1..100000000", p->context);
    if (p->weight_bits != 8 && p->weight_bits != 16)
        return set_err(err, n, MOGE_ERR_ARG, "weight_bits: %d is not 8 (W8A8) or 16 (fp16)", p->weight_bits);
    if (p->kv_bits != 8 && p->kv_bits != 16) return set_err(err, n, MOGE_ERR_ARG, "kv_bits: %d is not 8 or 16", p->kv_bits);
    if (p->spec_rows < 1 || p->spec_rows > 1024) return set_err(err, n, MOGE_ERR_ARG, "spec_rows: %d is not 1..1024", p->spec_rows);
    if (!(p->tau == 0 || (p->tau >= 1 && p->tau <= p->spec_rows)))
        return set_err(err, n, MOGE_ERR_ARG, "tau: %g is not between 1 and the %d rows verified per sequence", p->tau, p->spec_rows);
    if (p->draft_layers < 0 || p->draft_layers > c->n_layer)
        return set_err(err, n, MOGE_ERR_ARG, "draft_layers: %d is not 0..%d (the model's layers)", p->draft_layers, c->n_layer);
    int chips = p->cards * d->chips_per_card;
    int tp = p->attn_tp ? p->attn_tp : (chips >= 2 ? chips / 2 : 1);
    if (tp < 1 || chips % tp)
        return set_err(err, n, MOGE_ERR_ARG, "attn_tp: %d does not divide the %d chips (%d cards x %d)", tp, chips, p->cards, d->chips_per_card);
    if (c->n_head % tp)
        return set_err(err, n, MOGE_ERR_ARG, "attn_tp: %d does not divide the model's %d attention heads", tp, c->n_head);
    *m = (model_ctx){.c = c, .d = d, .chips = chips, .tp = tp, .dp = chips / tp, .owners = 1, .slice = 1, .batch = p->batch,
                     .context = p->context, .wb = p->weight_bits / 8.0, .ab = p->weight_bits == 8 ? 1 : 2, .kvb = p->kv_bits / 8.0,
                     .mm_peak = p->weight_bits == 8 ? d->int8_ops : d->fp16_ops};
    m->moe = c->n_expert > 0;
    if (!m->moe) {
        if (p->routing != MOGE_ROUTING_DEFAULT)
            return set_err(err, n, MOGE_ERR_ARG, "routing: %s is a dense model without experts", c->architecture);
        return MOGE_OK;
    }
    moge_routing rule = p->routing != MOGE_ROUTING_DEFAULT ? p->routing : c->routing;
    if (rule != MOGE_ROUTING_MOGE && rule != MOGE_ROUTING_TOPK)
        return set_err(err, n, MOGE_ERR_ARG, "routing: %s is not modelled (moge or topk)", moge_routing_name(rule));
    m->moge = rule == MOGE_ROUTING_MOGE;
    int M = c->n_group;
    if (m->moge && c->n_expert_used % M)
        return set_err(err, n, MOGE_ERR_ARG, "routing: MoGE needs the %d experts per token to be a multiple of the %d groups", c->n_expert_used, M);
    if (M % chips == 0) m->owners = chips;
    else if (chips % M == 0) m->owners = M, m->slice = chips / M;
    else
        return set_err(err, n, MOGE_ERR_ARG,
                       "cards: the %d chips (%d cards x %d) must divide the model's %d expert groups or be a multiple of them", chips,
                       p->cards, d->chips_per_card, M);
    return MOGE_OK;
}

/* Resident bytes of one chip: weights (embedding and lm_head split by vocabulary) and KV. */
static void memory(const model_ctx *m, moge_simulate_result *out) {
    const model_config *c = m->c;
    double h = c->n_embd, hd = c->head_dim, qd = (double)c->n_head * hd, kvd = (double)c->n_head_kv * hd;
    double layer = (h * (qd + 2 * kvd) + qd * h) / m->tp * m->wb;
    if (m->moe)
        layer += (double)c->n_expert / m->owners * 3 * h * c->n_ff_expert / m->slice * m->wb + 3 * h * c->n_ff_shared / m->chips * m->wb +
                 h * c->n_expert * 2;
    else layer += 3 * h * c->n_ff / m->tp * m->wb;
    out->weight_bytes_per_chip = c->n_layer * layer + 2.0 * c->n_vocab * h * 2 / m->chips;
    double kvh = c->n_head_kv >= m->tp ? ceil((double)c->n_head_kv / m->tp) : 1;
    out->kv_bytes_per_chip = ceil((double)m->batch / m->dp) * m->context * 2 * kvh * hd * m->kvb * c->n_layer;
    out->capacity_per_chip = m->d->mem_bytes;
}

moge_status sim_step(const model_config *c, const moge_simulate_params *p, const sim_routing *r, const sim_consts *k,
                     moge_simulate_result *out, char *err, size_t n) {
    memset(out, 0, sizeof *out);
    model_ctx m = {0};
    moge_status st = setup(&m, c, p, err, n);
    if (st != MOGE_OK) return st;
    if (m.moe && (!r || r->n_expert != c->n_expert || r->n_expert > 4096))
        return set_err(err, n, MOGE_ERR_ARG, "routing: frequencies for %d experts needed", c->n_expert);
    m.r = r;
    m.k = k;
    pass_acc v, plain = {0};
    run_pass(&m, p->spec_rows, &v);
    double draft = 0;
    int levels = p->spec_rows - 1;
    if (levels > 0 && p->draft_layers > 0) {
        run_pass(&m, 1, &plain);
        draft = levels * (p->draft_layers * plain.layers_s / c->n_layer + plain.op_s[OP_LM_HEAD]);
    }
    snprintf(out->architecture, sizeof out->architecture, "%s", c->architecture);
    out->n_layer = c->n_layer, out->n_expert = c->n_expert, out->n_group = c->n_group, out->n_expert_used = c->n_expert_used;
    out->n_ff_shared = c->n_ff_shared;
    out->chips = m.chips, out->attn_tp = m.tp, out->attn_dp = m.dp;
    out->step_s = v.total_s + draft;
    double tau = p->tau > 0 ? p->tau : 1;
    out->tokens_per_s_per_card = p->batch * tau / out->step_s / p->cards;
    double *cat[N_CAT] = {&out->t_weights_s, &out->t_kv_s, &out->t_compute_s, &out->t_comm_s, &out->t_overhead_s};
    for (int i = 0; i < N_CAT; i++) *cat[i] = v.cat_s[i] + (draft > 0 ? plain.cat_s[i] * draft / plain.total_s : 0);
    out->t_draft_s = draft;
    for (int i = 0; i < N_OPS; i++) {
        if (v.op_s[i] <= 0) continue;
        moge_simulate_op *o = &out->ops[out->n_ops++];
        o->name = OP_NAMES[i];
        o->seconds = v.op_s[i];
        o->bound = i == OP_OVERHEAD ? "overhead" : (i == OP_TP_COMM || i == OP_MOE_COMM) ? "communication"
                                                 : v.op_mem_s[i] >= v.op_compute_s[i] ? "memory" : "compute";
    }
    if (draft > 0) {
        moge_simulate_op *o = &out->ops[out->n_ops++];
        o->name = "draft";
        o->seconds = draft;
        o->bound = plain.cat_s[CAT_COMPUTE] > plain.cat_s[CAT_WEIGHTS] + plain.cat_s[CAT_KV] ? "compute" : "memory";
    }
    out->routing = !m.moe ? "dense" : moge_routing_name(m.moge ? MOGE_ROUTING_MOGE : MOGE_ROUTING_TOPK);
    if (m.moe) {
        out->routing_measured = r->measured;
        out->distinct_experts = v.distinct / c->n_layer;
        out->distinct_experts_chip = v.distinct_chip / c->n_layer;
        out->expert_pairs_max = v.pairs_max / c->n_layer;
        out->expert_pairs_mean = v.pairs_mean / c->n_layer;
        out->imbalance = v.imbalance / c->n_layer;
        out->expert_owners = m.owners;
    }
    memory(&m, out);
    out->eta_mem = k->eta_mem, out->eta_compute = k->eta_compute, out->eta_kv = k->eta_kv, out->layer_overhead_s = k->layer_overhead_s;
    return MOGE_OK;
}

moge_simulate_params moge_simulate_default_params(void) {
    return (moge_simulate_params){.device = "800I-A2", .cards = 4, .batch = 1, .context = 2048, .attn_tp = 0, .weight_bits = 8,
                                  .kv_bits = 8, .routing = MOGE_ROUTING_DEFAULT, .routing_stats = NULL, .spec_rows = 1, .tau = 0,
                                  .draft_layers = 1};
}

moge_status moge_simulate(const char *model, const moge_simulate_params *p, moge_simulate_result *out, char *err, size_t n) {
    moge_simulate_params def = moge_simulate_default_params();
    if (!p) p = &def;
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_simulate: no result struct");
    memset(out, 0, sizeof *out);
    model_config c;
    moge_status st = sim_load_config(model, &c, err, n);
    if (st != MOGE_OK) return st;
    sim_routing r = {0};
    if (c.n_expert > 0) {
        if (c.n_expert > 4096) return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: more than 4096 experts are not modelled", model);
        st = p->routing_stats ? sim_routing_load(&r, p->routing_stats, c.n_expert, c.n_group, c.n_expert_used, err, n)
                              : sim_routing_uniform(&r, c.n_expert, c.n_group, c.n_expert_used, err, n);
        if (st != MOGE_OK) return st;
    } else if (p->routing_stats) {
        return set_err(err, n, MOGE_ERR_ARG, "routing_stats: %s is a dense model without experts", c.architecture);
    }
    sim_consts k = sim_consts_default();
    st = sim_step(&c, p, c.n_expert > 0 ? &r : NULL, &k, out, err, n);
    sim_routing_free(&r);
    return st;
}
