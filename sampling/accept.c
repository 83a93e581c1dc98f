/*
 * accept.c — the acceptance rules of speculative decoding (design.md §4) as pure functions.
 * Each looks at one tree node: the target's processed distribution p there, the tokens of the
 * node's children in child order, and (for sampled children) the draft distribution q they were
 * drawn from. Each returns the index of the accepted child, or -1 with *chosen set to the token
 * the target emits instead (the bonus).
 */
#include <string.h>

#include "sampling/sampling.h"

static int32_t find_child(const int32_t *child_tok, int32_t nc, int32_t tok) {
    for (int32_t c = 0; c < nc; c++)
        if (child_tok[c] == tok) return c;
    return -1;
}

int32_t accept_greedy(int32_t best, const int32_t *child_tok, int32_t nc, int32_t *chosen) {
    *chosen = best;
    return find_child(child_tok, nc, best);
}

int32_t accept_match(const float *p, int32_t n_vocab, const int32_t *child_tok, int32_t nc, float coin, int32_t *chosen) {
    *chosen = sampling_draw(p, n_vocab, coin);
    return find_child(child_tok, nc, *chosen);
}

/* Residual p <- norm(max(0, p - q)); leaves p as it is if nothing remains (then p == q). */
static void residual(float *p, const float *q, int32_t n) {
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += p[i] > q[i] ? p[i] - q[i] : 0.0f;
    if (sum <= 0) return;
    for (int32_t i = 0; i < n; i++) p[i] = p[i] > q[i] ? (float)((p[i] - q[i]) / sum) : 0.0f;
}

int32_t accept_rejection(float *p, const float *q_in, float *q, int32_t n_vocab, const int32_t *child_tok, int32_t nc,
                         bool without_replacement, uint64_t *rng, int32_t *chosen) {
    memcpy(q, q_in, (size_t)n_vocab * sizeof(float));
    for (int32_t c = 0; c < nc; c++) {
        int32_t x = child_tok[c];
        float ratio = q[x] > 0 ? p[x] / q[x] : 1.0f;
        if (rng_uniform(rng) < ratio) {
            *chosen = x;
            return c;
        }
        residual(p, q, n_vocab);
        if (without_replacement) { /* the next child was drawn from q without x */
            double rest = 1.0 - q[x];
            q[x] = 0.0f;
            if (rest > 0)
                for (int32_t i = 0; i < n_vocab; i++) q[i] = (float)(q[i] / rest);
        }
    }
    *chosen = sampling_draw(p, n_vocab, rng_uniform(rng));
    return -1;
}
