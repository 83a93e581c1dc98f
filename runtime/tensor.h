/*
 * tensor.h — views of weight tensors (usually straight into an mmapped safetensors file, or into
 * the model's buffer of quantized weights) and the element conversions every backend shares.
 *
 * Block-quantized matrices (DTYPE_Q8, DTYPE_Q4; 2-D only, made at load by quant.c): each row of
 * `cols` values is cut into ceil(cols / QBLOCK) blocks of QBLOCK consecutive values, the last
 * one zero-padded; a row is its blocks back to back, rows follow each other. Both formats are
 * symmetric with one f32 scale per block, and a value is the float product (float)q * d:
 *   Q8: d = max|w| / 127, q = round(w / d) in -127..127            (36 bytes per 32 values)
 *   Q4: d = max|w| / 7,   q = round(w / d) in -7..7, stored q + 8   (20 bytes per 32 values);
 *       value j of a block is in the low nibble of byte j for j < 16, the high nibble of byte
 *       j - 16 otherwise.
 * So every value is within d / 2 of the original.
 * Q8A8 (W8A8) and Q4A8 (W4A8): the Q8 / Q4 weights, multiplied with activations quantized to
 * int8 per row and block (quant.h quant_act8_row) by integer dot products; row-major they are
 * exactly Q8's / Q4's blocks (dtype_base).
 *
 * Panel layout (panel == TENSOR_PANEL, made at load for the cpu backend by tensor_pack_panels):
 * the rows are cut into panels of TENSOR_PANEL (P) consecutive rows (the last one zero-padded).
 * Float types: a panel stores its cols × P values column by column, so value (r, c) is element
 * ((r / P) * cols + c) * P + r % P. Q8 / Q4: a panel is its ceil(cols / QBLOCK) blocks of P rows
 * (pblock_q8 / pblock_q4: the P rows' scales, then per column of the block the P rows' codes; Q4
 * codes two to a byte: byte j of pair k / 2 holds row j's code of column k in its low nibble for
 * even k, the high nibble for odd k): the same scales and codes as the row-major blocks, so the
 * same values. Q8A8: pblock_q8a8, the P rows' scales, then per group of 4 columns of the block the
 * P rows' 4 codes each, stored as code + 128 (unsigned 1..255: the operand order of the integer
 * dot-product instructions). Q4A8: pblock_q4a8, the scales, then per group of 4 columns of the
 * block's first half the P rows' 4 bytes, each holding the stored code (q + 8) of column 4 g + i
 * in its low nibble and of column 16 + 4 g + i in its high nibble. A kernel
 * reads one column of a panel as a vector: P outputs advance together along the dot product,
 * with no horizontal sums.
 */
#ifndef MOGE_TENSOR_H
#define MOGE_TENSOR_H

#include <stdint.h>
#include <string.h>

typedef enum { DTYPE_F32 = 0, DTYPE_F16, DTYPE_BF16, DTYPE_Q8, DTYPE_Q4, DTYPE_Q8A8, DTYPE_Q4A8 } dtype;

#define QBLOCK 32
typedef struct { float d; int8_t q[QBLOCK]; } block_q8;
typedef struct { float d; uint8_t q[QBLOCK / 2]; } block_q4;

typedef struct {
    const char *name;   /* owned by the safetensors table it came from */
    dtype type;
    int n_dims;         /* 1 or 2 */
    int64_t shape[2];   /* row-major: shape[0] rows of shape[1] elements (n_dims == 2) */
    const void *data;   /* shape[0] * shape[1] elements of `type`, suitably aligned */
    int panel;          /* 0: row-major; TENSOR_PANEL: panel layout (above) */
} tensor;

#define TENSOR_PANEL 16
typedef struct { float d[TENSOR_PANEL]; int8_t q[QBLOCK][TENSOR_PANEL]; } pblock_q8;
typedef struct { float d[TENSOR_PANEL]; uint8_t q[QBLOCK / 2][TENSOR_PANEL]; } pblock_q4;
typedef struct { float d[TENSOR_PANEL]; uint8_t q[QBLOCK / 4][TENSOR_PANEL][4]; } pblock_q8a8;
typedef struct { float d[TENSOR_PANEL]; uint8_t q[QBLOCK / 8][TENSOR_PANEL][4]; } pblock_q4a8;

/* Bytes per element of the float types (F32, F16, BF16); not for the block types. */
static inline size_t dtype_size(dtype t) { return t == DTYPE_F32 ? 4 : 2; }
static inline int dtype_is_quant(dtype t) { return t == DTYPE_Q8 || t == DTYPE_Q4 || t == DTYPE_Q8A8 || t == DTYPE_Q4A8; }
/* Whether matmuls quantize the activations to int8 (W8A8, W4A8). */
static inline int dtype_act8(dtype t) { return t == DTYPE_Q8A8 || t == DTYPE_Q4A8; }
/* The weight format: Q8 for Q8A8, Q4 for Q4A8 (the same blocks row-major), else t. */
static inline dtype dtype_base(dtype t) { return t == DTYPE_Q8A8 ? DTYPE_Q8 : t == DTYPE_Q4A8 ? DTYPE_Q4 : t; }
/* Bytes of one row of `cols` values. */
static inline size_t dtype_row_bytes(dtype t, int64_t cols) {
    int64_t nb = (cols + QBLOCK - 1) / QBLOCK;
    switch (t) {
    case DTYPE_Q8:
    case DTYPE_Q8A8: return (size_t)nb * sizeof(block_q8);
    case DTYPE_Q4:
    case DTYPE_Q4A8: return (size_t)nb * sizeof(block_q4);
    default: return (size_t)cols * dtype_size(t);
    }
}
const char *dtype_name(dtype t);

static inline float q8_value(const block_q8 *b, int j) { return (float)b->q[j] * b->d; }
static inline float q4_value(const block_q4 *b, int j) {
    int q = j < QBLOCK / 2 ? (b->q[j] & 15) : (b->q[j - QBLOCK / 2] >> 4);
    return (float)(q - 8) * b->d;
}

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

/* Element (r, c) of a block-quantized matrix (any quantized type, either layout) as its integer
 * code and the scale of its block: the value is (float)code * *d. */
static inline int tensor_code(const tensor *t, int64_t r, int64_t c, float *d) {
    int64_t nb = (t->shape[1] + QBLOCK - 1) / QBLOCK;
    int k = (int)(c % QBLOCK);
    if (t->panel) {
        int64_t blk = (r / TENSOR_PANEL) * nb + c / QBLOCK;
        int j = (int)(r % TENSOR_PANEL), byte;
        switch (t->type) {
        case DTYPE_Q8: {
            const pblock_q8 *b = (const pblock_q8 *)t->data + blk;
            *d = b->d[j];
            return b->q[k][j];
        }
        case DTYPE_Q8A8: {
            const pblock_q8a8 *b = (const pblock_q8a8 *)t->data + blk;
            *d = b->d[j];
            return (int)b->q[k / 4][j][k % 4] - 128;
        }
        case DTYPE_Q4A8: {
            const pblock_q4a8 *b = (const pblock_q4a8 *)t->data + blk;
            *d = b->d[j];
            byte = b->q[k % 16 / 4][j][k % 4];
            return (k < 16 ? byte & 15 : byte >> 4) - 8;
        }
        default: { /* Q4 */
            const pblock_q4 *b = (const pblock_q4 *)t->data + blk;
            *d = b->d[j];
            byte = b->q[k / 2][j];
            return (k % 2 ? byte >> 4 : byte & 15) - 8;
        }
        }
    }
    int64_t b = r * nb + c / QBLOCK;
    if (dtype_base(t->type) == DTYPE_Q8) {
        const block_q8 *blk = (const block_q8 *)t->data + b;
        *d = blk->d;
        return blk->q[k];
    }
    const block_q4 *blk = (const block_q4 *)t->data + b;
    *d = blk->d;
    return (k < QBLOCK / 2 ? blk->q[k] & 15 : blk->q[k - QBLOCK / 2] >> 4) - 8;
}

/* Element i (row-major over the logical shape) of a tensor's data as f32. */
static inline float tensor_get(const tensor *t, int64_t i) {
    if (dtype_is_quant(t->type)) {
        float d;
        int q = tensor_code(t, i / t->shape[1], i % t->shape[1], &d);
        return (float)q * d;
    }
    if (t->panel) {
        int64_t cols = t->shape[1], r = i / cols, c = i % cols;
        i = ((r / TENSOR_PANEL) * cols + c) * TENSOR_PANEL + r % TENSOR_PANEL;
    }
    switch (t->type) {
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)t->data)[i]);
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
    }
}

/* Converts n elements starting at element `first` into dst (f32); block types dequantize. */
void tensor_to_f32(const tensor *t, int64_t first, int64_t n, float *dst);

/* Bytes of a 2-D matrix in panel layout (rows rounded up to whole panels). */
static inline size_t tensor_panel_bytes(dtype t, int64_t rows, int64_t cols) {
    size_t panels = (size_t)((rows + TENSOR_PANEL - 1) / TENSOR_PANEL), nb = (size_t)((cols + QBLOCK - 1) / QBLOCK);
    if (t == DTYPE_Q8) return panels * nb * sizeof(pblock_q8);
    if (t == DTYPE_Q8A8) return panels * nb * sizeof(pblock_q8a8);
    if (t == DTYPE_Q4A8) return panels * nb * sizeof(pblock_q4a8);
    if (t == DTYPE_Q4) return panels * nb * sizeof(pblock_q4);
    return panels * TENSOR_PANEL * (size_t)cols * dtype_size(t);
}
/* Copies the row-major matrix src into dst (tensor_panel_bytes bytes) in panel layout, same type
 * and values; *out becomes the panel view (name of src, data dst). */
void tensor_pack_panels(const tensor *src, void *dst, tensor *out);

#endif
