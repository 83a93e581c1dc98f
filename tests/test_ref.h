/*
 * test_ref.h — reference forwards made outside the runtime (MOGEREF2 files: the MoE fixtures of
 * tools/make_moe_fixtures.py, the demo models' of tools/train/make_fixtures.py) and the check of
 * a loaded model against one: logits within 1e-4 (normalised, per row), the same expert choices,
 * routing weights within 1e-4 (relative).
 *
 * MOGEREF2, little-endian: b"MOGEREF2", int32 n_tokens, n_vocab, n_moe_layers, k,
 * int32 tokens[n], float32 logits[n][V], int32 experts[L][n][k] (ascending),
 * float32 weights[L][n][k]; a dense model has L = k = 0.
 * Include after harness.h and test_util.h.
 */
#ifndef MOGE_TEST_REF_H
#define MOGE_TEST_REF_H

#include <string.h>

#include "moge.h"

typedef struct {
    int32_t n, V, L, K;
    int32_t *tokens;
    float *logits;
    int32_t *experts; /* (L, n, K) */
    float *weights;
} test_ref;

static int ref_read(const char *path, test_ref *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    if (!f) return 0;
    char magic[8];
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "MOGEREF2", 8) && fread(&r->n, 4, 1, f) == 1 &&
             fread(&r->V, 4, 1, f) == 1 && fread(&r->L, 4, 1, f) == 1 && fread(&r->K, 4, 1, f) == 1 &&
             r->n > 0 && r->n < 4096 && r->V > 0 && r->V < 1000000 && r->L >= 0 && r->L < 1000 && r->K >= 0 && r->K < 1000 &&
             (r->L == 0) == (r->K == 0);
    if (ok) {
        size_t nk = (size_t)r->L * r->n * r->K;
        r->tokens = malloc((size_t)r->n * 4);
        r->logits = malloc((size_t)r->n * r->V * 4);
        r->experts = malloc(nk * 4 + 4);
        r->weights = malloc(nk * 4 + 4);
        ok = r->tokens && r->logits && r->experts && r->weights && fread(r->tokens, 4, (size_t)r->n, f) == (size_t)r->n &&
             fread(r->logits, 4, (size_t)r->n * r->V, f) == (size_t)r->n * r->V && fread(r->experts, 4, nk, f) == nk &&
             fread(r->weights, 4, nk, f) == nk;
    }
    fclose(f);
    CHECKF(ok, "%s: bad or truncated file", path);
    return ok;
}

static void ref_free(test_ref *r) { free(r->tokens); free(r->logits); free(r->experts); free(r->weights); }

/* One causal forward of r->tokens from position 0 on a fresh context of m, checked against r. */
static void ref_check(moge_model *m, const test_ref *r, const char *path, const char *label) {
    moge_context *c = NULL;
    char err[256];
    moge_status st = moge_context_new(m, NULL, &c, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s: %s", path, err);
    if (st != MOGE_OK) return;
    const float *lg = NULL;
    moge_batch b = {.n = r->n, .tokens = r->tokens};
    st = moge_forward(c, &b, &lg);
    CHECKF(st == MOGE_OK, "%s: %s", path, moge_context_error(c));
    if (st == MOGE_OK) {
        double worst = 0;
        for (int i = 0; i < r->n; i++) {
            double e = nerr(lg + (int64_t)i * r->V, r->logits + (int64_t)i * r->V, r->V);
            worst = e > worst ? e : worst;
        }
        CHECKF(worst <= 1e-4, "%s (%s): logits normalised error %.3g", path, label, worst);
        CHECKF(moge_context_n_moe_layers(c) == r->L, "%s: %d MoE layers, reference %d", path, moge_context_n_moe_layers(c), r->L);
        int mismatches = 0;
        double wworst = 0;
        for (int l = 0; l < r->L && l < moge_context_n_moe_layers(c); l++) {
            const int32_t *ex = NULL;
            const float *w = NULL;
            CHECK(moge_moe_routing(c, l, &ex, &w) == MOGE_OK);
            for (int i = 0; ex && i < r->n * r->K; i++) {
                int64_t at = (int64_t)l * r->n * r->K + i;
                if (ex[i] != r->experts[at]) {
                    if (mismatches++ < 3)
                        printf("  %s: layer %d row %d slot %d: expert %d, reference %d\n", path, l, i / r->K, i % r->K, ex[i], r->experts[at]);
                } else {
                    double d = fabs(w[i] - r->weights[at]) / fabs(r->weights[at]);
                    wworst = d > wworst ? d : wworst;
                }
            }
        }
        CHECKF(mismatches == 0, "%s (%s): %d expert choices differ", path, label, mismatches);
        CHECKF(wworst < 1e-4, "%s (%s): routing weight relative error %.3g", path, label, wworst);
    }
    moge_context_free(c);
}

#endif
