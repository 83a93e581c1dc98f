/*
 * sampling.h — logits to a processed distribution, and drawing from it, as pure functions:
 * randomness comes in as an argument (a uniform number in [0, 1) or an rng state), so every
 * step is testable and reproducible. The acceptance rules of speculative decoding go here too.
 */
#ifndef MOGE_SAMPLING_H
#define MOGE_SAMPLING_H

#include <stdint.h>
#include "moge.h"

/* splitmix64: the seeded RNG every sampler uses. */
uint64_t rng_next(uint64_t *state);
/* A uniform float in [0, 1) (24 random bits). */
float rng_uniform(uint64_t *state);

/* argmax of x (n); ties go to the lower index. */
int32_t sampling_argmax(const float *x, int32_t n);

/* The processed distribution: repetition penalty over `recent` (n_recent ids), temperature,
 * top-k, top-p, min-p; writes probs (n) summing to 1 (zeros outside the kept set).
 * Temperature must be > 0 (greedy is argmax). idx: scratch of n int32. */
void sampling_probs(const float *logits, int32_t n, const moge_sampler_params *p,
                    const int32_t *recent, int32_t n_recent, float *probs, int32_t *idx);

/* Draws an index from probs (n) with the uniform number coin in [0, 1). */
int32_t sampling_draw(const float *probs, int32_t n, float coin);

#endif
