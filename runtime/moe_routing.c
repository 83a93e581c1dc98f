/*
 * moe_routing.c — the routing rules of design.md §3, per token row:
 *   moge:          softmax over all N; top K/M inside each of M contiguous groups
 *   topk:          softmax; global top-K
 *   group_limited: keep the topk_group groups whose best expert is best, then top-K inside them
 * Weight of a chosen expert e: p[e] (divided by the chosen experts' sum of p when
 * norm_topk_prob), times router_scale[e] when the checkpoint has one.
 */
#include <math.h>
#include <string.h>

#include "runtime/moe.h"

/* Index of the largest logit in [lo, hi) not yet taken (lowest index on ties), or -1. */
static int best_untaken(const float *logits, const uint8_t *taken, int lo, int hi) {
    int best = -1;
    for (int e = lo; e < hi; e++)
        if (!taken[e] && (best < 0 || logits[e] > logits[best])) best = e;
    return best;
}

void moe_route_row(const float *logits, const model_config *c, const float *router_scale,
                   int32_t *experts, float *weights, float *p, uint8_t *taken) {
    int N = c->n_expert, K = c->n_expert_used, G = c->n_group, width = N / G, n_chosen = 0;
    memset(taken, 0, (size_t)N);
    switch (c->routing) {
    case MOGE_ROUTING_MOGE:
        for (int g = 0; g < G; g++)
            for (int j = 0; j < K / G; j++) {
                int e = best_untaken(logits, taken, g * width, (g + 1) * width);
                taken[e] = 1;
                experts[n_chosen++] = e;
            }
        break;
    case MOGE_ROUTING_GROUP_LIMITED: {
        /* Rank groups by their best logit; mark the experts of dropped groups as taken. */
        uint8_t keep[1024] = {0};
        for (int kept = 0; kept < c->topk_group; kept++) {
            int best_g = -1;
            float best = -INFINITY;
            for (int g = 0; g < G; g++) {
                if (keep[g]) continue;
                float m = logits[g * width];
                for (int e = g * width + 1; e < (g + 1) * width; e++) m = logits[e] > m ? logits[e] : m;
                if (best_g < 0 || m > best) { best = m; best_g = g; }
            }
            keep[best_g] = 1;
        }
        for (int e = 0; e < N; e++) taken[e] = !keep[e / width];
        for (int j = 0; j < K; j++) {
            int e = best_untaken(logits, taken, 0, N);
            taken[e] = 1;
            experts[n_chosen++] = e;
        }
        break;
    }
    default: /* MOGE_ROUTING_TOPK */
        for (int j = 0; j < K; j++) {
            int e = best_untaken(logits, taken, 0, N);
            taken[e] = 1;
            experts[n_chosen++] = e;
        }
        break;
    }
    /* ascending ids (insertion sort: K is small) */
    for (int i = 1; i < K; i++)
        for (int j = i; j > 0 && experts[j - 1] > experts[j]; j--) {
            int32_t t = experts[j]; experts[j] = experts[j - 1]; experts[j - 1] = t;
        }
    float maxl = logits[0];
    for (int e = 1; e < N; e++) maxl = logits[e] > maxl ? logits[e] : maxl;
    double sum = 0;
    for (int e = 0; e < N; e++) {
        p[e] = expf(logits[e] - maxl);
        sum += p[e];
    }
    double chosen = 0;
    for (int j = 0; j < K; j++) chosen += p[experts[j]] / sum;
    for (int j = 0; j < K; j++) {
        double w = p[experts[j]] / sum;
        if (c->norm_topk_prob) w /= chosen;
        if (router_scale) w *= router_scale[experts[j]];
        weights[j] = (float)w;
    }
}

void moe_device_ranges(const model_config *c, int n_devices, int32_t *begin) {
    int groups_per_device = c->n_group / n_devices, width = c->n_expert / c->n_group;
    for (int d = 0; d <= n_devices; d++) begin[d] = d * groups_per_device * width;
}

int moe_default_devices(const model_config *c, int n_threads) {
    int best = 1;
    for (int d = 1; d <= c->n_group && d <= n_threads; d++)
        if (c->n_group % d == 0) best = d;
    return best;
}

void moe_combine(float *out, const float *pair_out, const float *weights, int n, int k, int E) {
    for (int r = 0; r < n; r++) {
        float *o = out + (int64_t)r * E;
        for (int i = 0; i < E; i++) o[i] = 0.0f;
        for (int j = 0; j < k; j++) {
            const float *y = pair_out + (int64_t)(r * k + j) * E;
            float w = weights[r * k + j];
            for (int i = 0; i < E; i++) o[i] += w * y[i];
        }
    }
}
