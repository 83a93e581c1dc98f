/*
 * test_demo_models.c — the committed demo models (models/tinystories-moge, -topk, -draft; trained
 * by tools/train/) against the trainer's own PyTorch forward (tools/train/make_fixtures.py:
 * tests/fixtures/demo/NAME.ref): logits within 1e-4, the same experts, routing weights within
 * 1e-4, on both backends; and their parameter counts.
 *
 * Kept in tools/train/ until the models are committed: then it moves to tests/ (see
 * tools/train/README.md, "Finishing"), where make test builds and runs it.
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"
#include "test_model.h"
#include "test_ref.h"

static const struct {
    const char *name;
    int64_t params; /* as the runtime counts them (the twin's exported router_scale of ones included) */
} MODELS[] = {
    {"tinystories-moge", 5763136},
    {"tinystories-topk", 5763136},
    {"tinystories-draft", 260032},
};

static void check_model(int i, moge_backend backend) {
    char dir[256], path[256];
    snprintf(dir, sizeof dir, "models/%s", MODELS[i].name);
    snprintf(path, sizeof path, "tests/fixtures/demo/%s.ref", MODELS[i].name);
    test_ref r;
    if (!ref_read(path, &r)) return;
    moge_model *m = test_load(dir, backend, 2);
    if (m) {
        moge_model_info info;
        moge_model_get_info(m, &info);
        CHECKF(info.n_params == MODELS[i].params, "%s: %lld params, expected %lld", dir, (long long)info.n_params,
               (long long)MODELS[i].params);
        ref_check(m, &r, path, backend == MOGE_BACKEND_REF ? "ref" : "cpu");
    }
    moge_model_free(m);
    ref_free(&r);
}

static void test_cpu(void) {
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) check_model((int)i, MOGE_BACKEND_CPU);
}

static void test_ref_backend(void) {
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) check_model((int)i, MOGE_BACKEND_REF);
}

int main(void) {
    RUN_TESTS(T(test_cpu), T(test_ref_backend));
}
