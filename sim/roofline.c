/*
 * roofline.c — the cost of one op (max of its memory and compute times) and of one collective.
 */
#include "sim/sim.h"

sim_consts sim_consts_default(void) {
    return (sim_consts){.eta_mem = SIM_ETA_MEM, .eta_compute = SIM_ETA_COMPUTE, .eta_kv = SIM_ETA_KV,
                        .layer_overhead_s = SIM_LAYER_OVERHEAD_S};
}

double sim_roofline_s(double bytes, double bw, double ops, double peak, bool *memory_bound) {
    double tm = bw > 0 ? bytes / bw : 0, tc = peak > 0 ? ops / peak : 0;
    if (memory_bound) *memory_bound = tm >= tc;
    return tm >= tc ? tm : tc;
}

/* Measured algorithm bandwidth at n chips: the table's points at 2, 4 and 8, linear in n between
 * them (and the 8-chip figure beyond). */
static double hccs_bw(const double *tab, int n) {
    static const int at[4] = {1, 2, 4, 8};
    if (n >= 8) return tab[3];
    for (int i = 1; i < 3; i++)
        if (n <= at[i + 1]) return tab[i] + (tab[i + 1] - tab[i]) * (double)(n - at[i]) / (at[i + 1] - at[i]);
    return tab[3];
}

double sim_collective_s(const sim_device *d, sim_collective kind, double bytes, int n) {
    if (n <= 1 || bytes <= 0) return 0;
    if (d->hccs) return bytes / hccs_bw(kind == SIM_ALL_REDUCE ? d->all_reduce_bw : d->all_gather_bw, n);
    /* A ring: every chip sends and receives (n - 1) / n of the buffer, twice for an all-reduce
     * (reduce-scatter, then all-gather). */
    double f = (double)(n - 1) / n * (kind == SIM_ALL_REDUCE ? 2 : 1);
    return f * bytes / d->link_bw;
}
