/*
 * routing.c — how many expert weights a batch reads and how evenly its token-expert pairs fall on
 * devices, from per-expert routing frequencies (measured by `moge eval --json`, or uniform).
 *
 * Rows are taken as independent, each with the layer's per-expert probabilities p[e] (the share of
 * rows that route to e). Then the expected number of distinct experts touched by R rows is exact:
 * sum_e 1 - (1 - p[e])^R (linearity of expectation; within a row the choices may be dependent).
 * With uniform p, MoGE and global top-K touch the same number in expectation (p = K/N for both);
 * they differ in how the pairs spread over devices: MoGE gives every group, and so every device
 * holding whole groups, exactly R*K/M pairs per group; top-K's per-device count varies from batch
 * to batch, and the busiest device sets the step's pace.
 */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/errors.h"
#include "runtime/json_num.h"
#include "sim/sim.h"

void sim_routing_free(sim_routing *r) {
    if (!r) return;
    free(r->p);
    r->p = NULL;
}

moge_status sim_routing_uniform(sim_routing *r, int n_expert, int n_group, int k, char *err, size_t n) {
    memset(r, 0, sizeof *r);
    if (n_expert < 1 || n_group < 1 || n_expert % n_group || k < 1 || k > n_expert)
        return set_err(err, n, MOGE_ERR_ARG, "routing: %d experts in %d groups with %d per token is not a valid MoE layer", n_expert,
                       n_group, k);
    r->p = malloc(sizeof(double) * (size_t)n_expert);
    if (!r->p) return set_err(err, n, MOGE_ERR_NOMEM, "routing: out of memory");
    *r = (sim_routing){.n_expert = n_expert, .n_group = n_group, .k = k, .n_layer = 1, .measured = false, .p = r->p};
    for (int e = 0; e < n_expert; e++) r->p[e] = (double)k / n_expert; /* = (K/M) / (N/M) under MoGE too */
    return MOGE_OK;
}

moge_status sim_routing_load(sim_routing *r, const char *path, int n_expert, int n_group, int k, char *err, size_t n) {
    memset(r, 0, sizeof *r);
    cJSON *root;
    moge_status st = json_read_file(path, &root, err, n);
    if (st != MOGE_OK) return st;
    const cJSON *moe = cJSON_GetObjectItemCaseSensitive(root, "moe");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(moe, "layers");
    int32_t fe = 0, fg = 0, fk = 0;
    int64_t rows = 0;
    if (!cJSON_IsObject(moe) || !cJSON_IsArray(layers) || cJSON_GetArraySize(layers) < 1) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: no \"moe\" object with \"layers\" (moge eval --json of a MoE model writes one)", path);
        goto done;
    }
    if (!json_int32(cJSON_GetObjectItemCaseSensitive(moe, "n_experts"), 1, 1 << 20, &fe) ||
        !json_int32(cJSON_GetObjectItemCaseSensitive(moe, "n_group"), 1, 1 << 20, &fg) ||
        !json_int32(cJSON_GetObjectItemCaseSensitive(moe, "k"), 1, 1 << 20, &fk) ||
        !json_integer(cJSON_GetObjectItemCaseSensitive(moe, "rows"), 1, 9e15, &rows)) {
        st = set_err(err, n, MOGE_ERR_FORMAT, "%s: moe.n_experts, moe.n_group, moe.k and moe.rows must be positive integers", path);
        goto done;
    }
    if (fe != n_expert || fg != n_group || fk != k) {
        st = set_err(err, n, MOGE_ERR_FORMAT,
                     "%s: measured on %d experts in %d groups with %d per token; the model has %d in %d groups with %d per token", path, fe,
                     fg, fk, n_expert, n_group, k);
        goto done;
    }
    int L = cJSON_GetArraySize(layers);
    r->p = malloc(sizeof(double) * (size_t)L * (size_t)n_expert);
    if (!r->p) {
        st = set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    r->n_expert = n_expert, r->n_group = n_group, r->k = k, r->n_layer = L, r->measured = true;
    for (int l = 0; l < L; l++) {
        const cJSON *hits = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(layers, l), "expert_hits");
        if (!cJSON_IsArray(hits) || cJSON_GetArraySize(hits) != n_expert) {
            st = set_err(err, n, MOGE_ERR_FORMAT, "%s: moe.layers[%d].expert_hits must be an array of %d counts", path, l, n_expert);
            goto done;
        }
        int64_t sum = 0;
        for (int e = 0; e < n_expert; e++) {
            int64_t h;
            if (!json_integer(cJSON_GetArrayItem(hits, e), 0, (double)rows, &h)) {
                st = set_err(err, n, MOGE_ERR_FORMAT, "%s: moe.layers[%d].expert_hits[%d] must be a count from 0 to moe.rows (%lld)", path,
                             l, e, (long long)rows);
                goto done;
            }
            sum += h;
            r->p[(size_t)l * n_expert + e] = (double)h / (double)rows;
        }
        if (sum != rows * k) {
            st = set_err(err, n, MOGE_ERR_FORMAT, "%s: moe.layers[%d].expert_hits sum to %lld, not moe.rows x k = %lld", path, l,
                         (long long)sum, (long long)(rows * k));
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    if (st != MOGE_OK) sim_routing_free(r);
    return st;
}

double sim_distinct_expected(const double *p, int n, double rows) {
    double s = 0;
    for (int e = 0; e < n; e++) s += 1.0 - pow(1.0 - p[e], rows);
    return s;
}

/* E[max of n standard normals] = integral of x d(Phi(x)^n), by the trapezoid rule on [-10, 10]. */
double sim_normal_max(int n) {
    if (n <= 1) return 0;
    const int steps = 20000;
    const double a = -10, b = 10, h = (b - a) / steps;
    double s = 0;
    for (int i = 0; i <= steps; i++) {
        double x = a + i * h;
        double phi = exp(-0.5 * x * x) / sqrt(2 * M_PI), cdf = 0.5 * erfc(-x / sqrt(2));
        double f = x * n * pow(cdf, n - 1) * phi;
        s += (i == 0 || i == steps) ? 0.5 * f : f;
    }
    return s * h;
}

void sim_moe_layer_load(const double *p, int n_expert, int n_group, int k, bool moge, int owners, double rows, sim_moe_load *out) {
    (void)n_group;
    int per = n_expert / owners;
    double dmax = 0, pmax = 0, pmin = 1e300, qmax = 0;
    out->distinct = sim_distinct_expected(p, n_expert, rows);
    for (int o = 0; o < owners; o++) {
        double d = sim_distinct_expected(p + o * per, per, rows), mass = 0;
        for (int e = o * per; e < (o + 1) * per; e++) mass += p[e];
        if (d > dmax) dmax = d;
        double mu = rows * mass;
        if (mu > pmax) pmax = mu;
        if (mu < pmin) pmin = mu;
        if (mass / k > qmax) qmax = mass / k;
    }
    out->distinct_max = dmax;
    out->pairs_mean = rows * k / owners;
    out->pairs_max = pmax;
    out->imbalance = rows > 0 ? (pmax - pmin) / rows : 0;
    if (!moge && owners > 1 && n_expert > 1) {
        /* Pairs of a device per row: K draws without replacement from N experts, q*N of them on
         * the device: hypergeometric variance K q (1 - q) (N - K) / (N - 1). Over R independent rows
         * the count is near normal; E[max over devices] ~ mean + sd * E[max of owners normals],
         * E[min] the mirror image. At most every pair of the batch, R * min(K, experts per device). */
        double q = qmax, var = k * q * (1 - q) * (double)(n_expert - k) / (n_expert - 1);
        double spread = sqrt(rows * var) * sim_normal_max(owners);
        double cap = rows * (k < per ? k : per);
        out->pairs_max = pmax + spread > cap ? cap : pmax + spread;
        out->imbalance = rows > 0 ? (out->pairs_max - (pmin - spread > 0 ? pmin - spread : 0)) / rows : 0;
        /* The busiest device also reads more experts: its distinct count as if its pairs came from
         * (mean + spread) / mean times the rows. */
        out->distinct_max = 0;
        for (int o = 0; o < owners; o++) {
            double mass = 0;
            for (int e = o * per; e < (o + 1) * per; e++) mass += p[e];
            if (mass <= 0) continue;
            double mu = rows * mass, scale = (mu + spread > cap ? cap : mu + spread) / mu;
            double d = sim_distinct_expected(p + o * per, per, rows * scale);
            if (d > out->distinct_max) out->distinct_max = d;
        }
    }
}
