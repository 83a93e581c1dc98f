/*
 * fuzz_quant_file.c — a model directory as moge_model_load reads it, seeded with the
 * pre-quantized files moge quantize writes (runtime/quant_file.c: "moge.quant" / "moge.layout"
 * metadata, U8 blocks, quantization_config; row-major and panel layouts) and the float model
 * they came from: the input is config.json, FUZZ_SEP, model.safetensors. A model that loads
 * runs one token through a context.
 */
#include "tests/fuzz/fuzz_util.h"

#include "moge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    if (fuzz_split(data, size, part, len) < 2) return 0;
    char path[600], dir[600];
    fuzz_write("quant_file", "config.json", part[0], len[0], path);
    fuzz_write("quant_file", "model.safetensors", part[1], len[1], path);
    moge_model_params mp = moge_model_default_params();
    mp.n_threads = 1;
    moge_model *m = NULL;
    char err[512];
    if (moge_model_load(fuzz_dir("quant_file", dir), &mp, &m, err, sizeof err) != MOGE_OK) {
        FUZZ_ASSERT(m == NULL && err[0] != '\0');
        return 0;
    }
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = 4, cp.n_batch = 2;
    moge_context *ctx = NULL;
    if (moge_context_new(m, &cp, &ctx, err, sizeof err) == MOGE_OK) {
        int32_t tokens[2] = {0, 1};
        moge_batch b = {.n = 2, .tokens = tokens};
        const float *logits = NULL;
        if (moge_forward(ctx, &b, &logits) == MOGE_OK) FUZZ_ASSERT(logits != NULL);
        moge_context_free(ctx);
    }
    moge_model_free(m);
    return 0;
}
