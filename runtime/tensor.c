/* tensor.c — dtype names and bulk conversion to f32. */
#include "runtime/tensor.h"

const char *dtype_name(dtype t) {
    switch (t) {
    case DTYPE_F32: return "F32";
    case DTYPE_F16: return "F16";
    case DTYPE_BF16: return "BF16";
    }
    return "?";
}

void tensor_to_f32(const tensor *t, int64_t first, int64_t n, float *dst) {
    if (t->type == DTYPE_F32) {
        memcpy(dst, (const float *)t->data + first, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *src = (const uint16_t *)t->data + first;
    if (t->type == DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
    }
}
