/*
 * moe.h — Mixture-of-Experts layers: routing (a pure per-row function), the dispatch plan
 * (pairs sorted by expert, experts placed on devices by whole groups) and load statistics.
 * The expert arithmetic itself is the backend's `moe_experts` op (backend.h).
 */
#ifndef MOGE_MOE_H
#define MOGE_MOE_H

#include <stdint.h>
#include "runtime/model.h"

/* Routes one row: logits (n_expert) of the router -> k = n_expert_used chosen experts in
 * ascending id order and their weights. Selection compares logits (softmax is monotone); ties go
 * to the lower expert (and group) id. p: scratch of n_expert floats; taken: n_expert bytes.
 * Depends on nothing but this row. */
void moe_route_row(const float *logits, const model_config *c, const float *router_scale,
                   int32_t *experts, float *weights, float *p, uint8_t *taken);

/* Device d owns experts [begin[d], begin[d+1]): whole groups, n_group / n_devices each. */
void moe_device_ranges(const model_config *c, int n_devices, int32_t *begin);

/* Default device count: the largest divisor of n_group that is <= n_threads. */
int moe_default_devices(const model_config *c, int n_threads);

#endif
