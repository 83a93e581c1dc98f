/*
 * sim.h — the device performance model behind moge_simulate() (`moge simulate`): hardware figures
 * of the Ascend servers with their sources (devices.c), the roofline of one op and the cost of a
 * collective (roofline.c), the expert traffic a batch causes from routing frequencies (routing.c),
 * and the op-by-op decode step (step.c). It predicts; it runs nothing and is not a backend.
 *
 * Constants. Efficiencies that come from public measurements are priors (SIM_ETA_MEM,
 * SIM_ETA_COMPUTE); exactly two constants are fitted, by sim_calibrate(), to two of the paper's
 * numbers (arXiv 2505.21411, Pangu Pro MoE on 4 x Atlas 800I A2 NPUs, W8A8):
 *   SIM_LAYER_OVERHEAD_S  the fixed cost of one layer (kernel launches, synchronisation, collective
 *                         latency), fitted to the batch-1 step of 18.44 ms;
 *   SIM_ETA_KV            the achieved share of memory bandwidth of the attention's KV-cache stream
 *                         (paged, per-head rows), fitted to 1148 tokens/s per card at batch 456.
 * Every other paper row is a prediction (moge simulate --paper prints them side by side).
 */
#ifndef MOGE_SIM_H
#define MOGE_SIM_H

#include <stdbool.h>
#include <stddef.h>

#include "moge.h"
#include "runtime/model.h"

/* ---- hardware (devices.c) ---------------------------------------------------------------- */

typedef enum { SIM_ALL_GATHER, SIM_REDUCE_SCATTER, SIM_ALL_REDUCE } sim_collective;

typedef struct {
    const char *name;        /* "800I-A2", "300I-Duo" */
    const char *chip;        /* "Ascend 910B4", "Ascend 310P3" */
    int chips_per_card, max_cards;
    double mem_bw;           /* bytes/s of one chip's memory, peak */
    double int8_ops;         /* int8 ops/s of one chip (cube), peak; an op is a multiply or an add */
    double fp16_ops;         /* fp16 ops/s, peak */
    double mem_bytes;        /* memory of one chip */
    /* Collectives. HCCS (800I A2): measured algorithm bandwidth (bytes of the result / time) at
     * 2, 4 and 8 NPUs (index 1, 2, 3; between them interpolated in the NPU count). PCIe (300I
     * Duo): a ring over links of link_bw bytes/s per chip. */
    bool hccs;
    double all_gather_bw[4], all_reduce_bw[4];
    double link_bw;
} sim_device;

/* The device called name (case-insensitive), or NULL. */
const sim_device *sim_device_find(const char *name);
/* "800I-A2, 300I-Duo" (for messages). */
const char *sim_device_names(void);

/* ---- roofline (roofline.c) ---------------------------------------------------------------- */

/* Priors from public measurements (sources in devices.c). */
#define SIM_ETA_MEM 0.80     /* memory streams: an element-wise kernel at ~1.28 of 1.6 TB/s on 910B */
#define SIM_ETA_COMPUTE 0.92 /* matmul: large GEMMs at 91-93 % of cube peak on 910B */
/* Fitted by sim_calibrate (see the top of this file); test_simulate checks that a fresh fit gives
 * these values. */
#define SIM_LAYER_OVERHEAD_S 2.98284e-04
#define SIM_ETA_KV 0.25413

typedef struct {
    double eta_mem, eta_compute, eta_kv; /* shares of peak bandwidth / compute achieved */
    double layer_overhead_s;             /* fixed cost per layer */
} sim_consts;

/* The shipped constants. */
sim_consts sim_consts_default(void);

/* max(bytes / bw, ops / peak): the time of an op that streams `bytes` at `bw` bytes/s and does
 * `ops` operations at `peak` ops/s, the two overlapped. *memory_bound (may be NULL) tells which
 * term won (ties: memory). */
double sim_roofline_s(double bytes, double bw, double ops, double peak, bool *memory_bound);

/* Time of a collective of `bytes` (the full result: all-gather's output, reduce-scatter's input,
 * all-reduce's buffer) among n chips of d; 0 for n <= 1. */
double sim_collective_s(const sim_device *d, sim_collective kind, double bytes, int n);

/* ---- routing (routing.c) ------------------------------------------------------------------ */

/* Per MoE layer and expert, the probability that one row routes to the expert (measured: hits /
 * rows of `moge eval --json`; uniform: K/M / (N/M) for MoGE, K/N for top-K). */
typedef struct {
    int n_expert, n_group, k, n_layer;
    bool measured;
    double *p; /* (n_layer, n_expert), malloc'd */
} sim_routing;

/* Uniform frequencies of one layer. */
moge_status sim_routing_uniform(sim_routing *r, int n_expert, int n_group, int k, char *err, size_t err_size);
/* Frequencies from a `moge eval --json` file; its experts, groups and K must be the model's.
 * Errors name the file and the field. */
moge_status sim_routing_load(sim_routing *r, const char *path, int n_expert, int n_group, int k, char *err, size_t err_size);
void sim_routing_free(sim_routing *r);

/* Expected load of one MoE layer on a batch of `rows` independent rows, experts placed by whole
 * groups on `owners` devices (owners divides n_group; device o holds experts o*N/owners ...). */
typedef struct {
    double distinct;      /* expected distinct experts the batch touches, all devices */
    double distinct_max;  /* the largest expected distinct count of one device */
    double pairs_mean;    /* expected token-expert pairs per device (rows * K / owners) */
    double pairs_max;     /* expected pairs of the busiest device: MoGE exact; top-K a normal
                             approximation of E[max] (hypergeometric variance per row) */
    double imbalance;     /* expected Imbalance Score (max - min pairs) / rows */
} sim_moe_load;

/* p: (n_expert) per-row probabilities of one layer; moge: the rule picks K/M per group (pairs
 * per device are then fixed). */
void sim_moe_layer_load(const double *p, int n_expert, int n_group, int k, bool moge, int owners, double rows, sim_moe_load *out);
/* sum over e of 1 - (1 - p[e])^rows: the expected distinct experts among n of them. */
double sim_distinct_expected(const double *p, int n, double rows);
/* E[max of n independent standard normals] (0 for n <= 1), by numerical integration. */
double sim_normal_max(int n);

/* ---- the step (step.c) ------------------------------------------------------------------- */

/* moge_simulate() on a parsed config, routing frequencies (NULL for a dense model) and constants. */
moge_status sim_step(const model_config *c, const moge_simulate_params *p, const sim_routing *r, const sim_consts *k,
                     moge_simulate_result *out, char *err, size_t err_size);

/* Fits SIM_LAYER_OVERHEAD_S and SIM_ETA_KV (k's other fields kept) to the paper's batch-1 step
 * (18.44 ms) and batch-456 rate (1148 tokens/s per card) of the Pangu Pro MoE config `pangu`
 * (config.json) on 4 x 800I-A2. */
moge_status sim_calibrate(const char *pangu, sim_consts *k, char *err, size_t err_size);

/* config.json of a model directory or the file itself into *c. */
moge_status sim_load_config(const char *model, model_config *c, char *err, size_t err_size);

#endif
