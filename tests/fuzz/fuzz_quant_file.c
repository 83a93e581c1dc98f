/*
 * fuzz_quant_file.c — a model directory as moge_model_load reads it, seeded with the
 * pre-quantized files moge quantize writes (runtime/quant_file.c: "moge.quant" / "moge.layout"
 * metadata, U8 blocks, quantization_config; row-major and panel layouts) and the float model
 * they came from: the input is config.json, FUZZ_SEP, model.safetensors. A model that loads
 * runs two tokens through a context (fuzz_model.h).
 */
#include "tests/fuzz/fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    if (fuzz_split(data, size, part, len) < 2) return 0;
    char path[600], dir[600];
    fuzz_write("quant_file", "config.json", part[0], len[0], path);
    fuzz_write("quant_file", "model.safetensors", part[1], len[1], path);
    fuzz_model_load_run(fuzz_dir("quant_file", dir));
    return 0;
}
