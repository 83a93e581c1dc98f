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

/* The target's choice at one position, as ordinary (non-speculative) sampling makes it:
 * temperature 0: argmax of the (penalised) logits; else a draw from sampling_probs with one
 * uniform number from *rng. probs (n) receives the processed distribution (temperature > 0). */
int32_t sampling_choose(const float *logits, int32_t n, const moge_sampler_params *p, const int32_t *recent,
                        int32_t n_recent, float *probs, int32_t *idx, uint64_t *rng);

/* Acceptance rules (accept.c). Each returns the accepted child's index in child_tok, or -1 and
 * sets *chosen to the target's own token (the bonus). */
/* Greedy: best is the target's argmax. */
int32_t accept_greedy(int32_t best, const int32_t *child_tok, int32_t nc, int32_t *chosen);
/* Deterministic children: x ~ p with the uniform number coin; descend if a child carries x. */
int32_t accept_match(const float *p, int32_t n_vocab, const int32_t *child_tok, int32_t nc, float coin, int32_t *chosen);
/* Sampled children, drawn from q_in in child order (without replacement when set): accept child c
 * with min(1, p(c)/q(c)), else p <- norm(max(0, p - q)) and (w/o replacement) drop c from q; if all
 * fail, draw from the residual p. p is modified; q: scratch (n_vocab). */
int32_t accept_rejection(float *p, const float *q_in, float *q, int32_t n_vocab, const int32_t *child_tok, int32_t nc,
                         bool without_replacement, uint64_t *rng, int32_t *chosen);

#endif
