/*
 * fuzz_config.c — config.json (runtime/config.c): every field range-checked before use, and the
 * routing override applied to whatever loaded.
 */
#include "tests/fuzz/fuzz_util.h"

#include "runtime/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_write("config", "config.json", data, size, path);
    model_config c;
    char err[512];
    if (config_load(&c, path, err, sizeof err) == MOGE_OK) {
        FUZZ_ASSERT(c.n_embd > 0 && c.n_layer > 0 && c.n_head > 0 && c.n_vocab > 0);
        FUZZ_ASSERT(memchr(c.architecture, '\0', sizeof c.architecture) != NULL);
        FUZZ_ASSERT(c.n_expert == 0 || c.routing != MOGE_ROUTING_DEFAULT);
        moge_model_params p = moge_model_default_params();
        for (int r = MOGE_ROUTING_DEFAULT; r <= MOGE_ROUTING_GROUP_LIMITED; r++) {
            model_config d = c;
            p.routing = (moge_routing)r;
            if (config_set_routing(&d, &p, err, sizeof err) == MOGE_OK) FUZZ_ASSERT(d.n_expert == 0 || d.routing != MOGE_ROUTING_DEFAULT);
        }
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    return 0;
}
