/*
 * tensor.h — views of weight tensors (usually straight into an mmapped safetensors file) and
 * the element conversions every backend shares.
 */
#ifndef MOGE_TENSOR_H
#define MOGE_TENSOR_H

#include <stdint.h>
#include <string.h>

typedef enum { DTYPE_F32 = 0, DTYPE_F16, DTYPE_BF16 } dtype;

typedef struct {
    const char *name;   /* owned by the safetensors table it came from */
    dtype type;
    int n_dims;         /* 1 or 2 */
    int64_t shape[2];   /* row-major: shape[0] rows of shape[1] elements (n_dims == 2) */
    const void *data;   /* shape[0] * shape[1] elements of `type`, suitably aligned */
} tensor;

static inline size_t dtype_size(dtype t) { return t == DTYPE_F32 ? 4 : 2; }
const char *dtype_name(dtype t);

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element i of a tensor's data as f32. */
static inline float tensor_get(const tensor *t, int64_t i) {
    switch (t->type) {
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)t->data)[i]);
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
    }
}

/* Converts n elements starting at element `first` into dst (f32). */
void tensor_to_f32(const tensor *t, int64_t first, int64_t n, float *dst);

#endif
