/*
 * test_reference_models.c — the C forward against logits computed independently by
 * tools/reference_forward.py (numpy, float64, from the same stored weights) for the random
 * fixture models of tools/make_test_fixtures.py: Llama F32 untied with GQA, Qwen2 BF16 with q/k/v
 * biases and tied embeddings, Mistral F16 sharded with an explicit head_dim, Llama BF16 with
 * attention biases. Both backends; every row within 1e-4 relative (normalised) error.
 *
 * .ref format (little-endian): "MOGEREF1", int32 n_tokens, int32 n_vocab, int32 tokens[n],
 * float32 logits[n][n_vocab] (the causal sequence starting at position 0).
 */
#include <stdint.h>

#include "harness.h"
#include "moge.h"
#include "test_util.h"

static const char *NAMES[] = {"llama_f32", "qwen2_bf16", "mistral_f16_sharded", "llama_bias_bf16"};

static void check_model(const char *name, moge_backend backend) {
    char path[512], err[1024];
    snprintf(path, sizeof path, "tests/fixtures/models/%s.ref", name);
    int32_t n = 0, V = 0, *tok = NULL;
    float *want = NULL;
    int ok = test_read_ref(path, &n, &V, &tok, &want);
    CHECKF(ok, "cannot read %s", path);
    if (!ok) return;

    snprintf(path, sizeof path, "tests/fixtures/models/%s", name);
    moge_model_params mp = moge_model_default_params();
    mp.backend = backend;
    mp.n_threads = 2;
    moge_model *m = NULL;
    moge_context *c = NULL;
    moge_status st = moge_model_load(path, &mp, &m, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s: %s", path, err);
    if (st == MOGE_OK) st = moge_context_new(m, NULL, &c, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s: %s", path, err);
    const float *lg = NULL;
    moge_batch b = {.n = n, .tokens = tok};
    if (ok && st == MOGE_OK && moge_forward(c, &b, &lg) == MOGE_OK) {
        double worst = 0;
        int worst_row = 0, top_agree = 0;
        for (int i = 0; i < n; i++) {
            double num = 0, den = 0;
            int a = 0, r = 0;
            for (int v = 0; v < V; v++) {
                double d = (double)lg[(int64_t)i * V + v] - want[(int64_t)i * V + v];
                num += d * d;
                den += (double)want[(int64_t)i * V + v] * want[(int64_t)i * V + v];
                if (lg[(int64_t)i * V + v] > lg[(int64_t)i * V + a]) a = v;
                if (want[(int64_t)i * V + v] > want[(int64_t)i * V + r]) r = v;
            }
            double e = sqrt(num / den);
            if (e > worst) { worst = e; worst_row = i; }
            top_agree += a == r;
        }
        CHECKF(worst <= 1e-4, "%s (%s): row %d normalised error %.3g", name, backend == MOGE_BACKEND_REF ? "ref" : "cpu", worst_row, worst);
        CHECKF(top_agree == n, "%s: argmax agrees on %d of %d rows", name, top_agree, n);
    } else {
        CHECKF(0, "%s: forward failed: %s", name, c ? moge_context_error(c) : "");
    }
    moge_context_free(c);
    moge_model_free(m);
    free(tok);
    free(want);
}

static void test_cpu_backend(void) { for (int i = 0; i < 4; i++) check_model(NAMES[i], MOGE_BACKEND_CPU); }
static void test_ref_backend(void) { for (int i = 0; i < 4; i++) check_model(NAMES[i], MOGE_BACKEND_REF); }

int main(void) { RUN_TESTS(T(test_cpu_backend), T(test_ref_backend)); }
