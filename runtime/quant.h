/*
 * quant.h — block quantization of weight matrices (formats in tensor.h): Q8 (int8, one f32 scale
 * per 32 values) and Q4 (4-bit, one f32 scale per 32 values), both symmetric.
 */
#ifndef MOGE_QUANT_H
#define MOGE_QUANT_H

#include <stdbool.h>
#include <stdint.h>
#include "moge.h"
#include "runtime/tensor.h"

/* The quantization formats by name ("q8", "q4", "w8a8", "w4a8"; "none"), as flags, file metadata and
 * config.json spell them, and the tensor type each gives the quantized matrices. */
const char *quant_format_name(moge_quant q);
bool quant_format_parse(const char *s, moge_quant *q); /* false: not a format name ("none" is not one) */
dtype quant_format_dtype(moge_quant q);
const char *quant_dtype_format(dtype t); /* the format whose matrices are of type t; "none" for a float type */

/* Quantizes the n values of x into ceil(n / QBLOCK) blocks (the last zero-padded). */
void quant_row_q8(const float *x, int64_t n, block_q8 *out);
void quant_row_q4(const float *x, int64_t n, block_q4 *out);

/* Activations for the integer kernels of the cpu backend: the n values of x as ceil(n / QBLOCK)
 * blocks of QBLOCK int16 (the last zero-padded) with one f32 scale per block,
 * d = max|x| / 32767, q = lrintf(x * (32767 / max|x|)) (every value within about d / 2, i.e.
 * 1.5e-5 of the block's largest). Row-local, so batch-invariant. Writes q[0 .. nb * QBLOCK) and
 * d[0 .. nb). */
#define QACT_MAX 32767
void quant_act_row(const float *x, int64_t n, int16_t *q, float *d);
/* Floats of scratch quant_act_rows needs for n rows of `cols` values. */
static inline int64_t quant_act_floats(int64_t n, int64_t cols) {
    int64_t nb = (cols + QBLOCK - 1) / QBLOCK;
    return n * nb * (QBLOCK / 2 + 1);
}
/* n rows of x (stride cols) into scratch (quant_act_floats(n, cols) floats): *q gets the int16
 * rows (stride nb * QBLOCK), *d the scales (stride nb). */
void quant_act_rows(const float *x, int64_t n, int64_t cols, float *scratch, const int16_t **q, const float **d);

/* W8A8 / W4A8 activations (DTYPE_Q8A8 / DTYPE_Q4A8 weights): the n values of x as ceil(n / QBLOCK) blocks of QBLOCK
 * int8 (the last zero-padded), d = max|x| / 127, q = lrintf(x * (127 / max|x|)) (every value
 * within d / 2), and s = the sum of the block's codes (the integer kernels use it to undo the
 * +128 / +8 of the weights' stored codes). Row-local, so batch-invariant. */
#define QACT8_MAX 127
void quant_act8_row(const float *x, int64_t n, int8_t *q, float *d, int32_t *s);
typedef struct {
    const int8_t *q;  /* rows of nb * QBLOCK codes */
    const float *d;   /* rows of nb scales */
    const int32_t *s; /* rows of nb code sums */
    int64_t nb;
} act8_rows;
/* Floats of scratch quant_act8_rows needs for n rows of `cols` values (<= quant_act_floats). */
static inline int64_t quant_act8_floats(int64_t n, int64_t cols) {
    int64_t nb = (cols + QBLOCK - 1) / QBLOCK;
    return n * nb * (2 + QBLOCK / 4);
}
void quant_act8_rows(const float *x, int64_t n, int64_t cols, float *scratch, act8_rows *out);
/* The W8A8 / W4A8 product of row o of w (Q8A8 or Q4A8, either layout) and activation row r: per block b in order,
 * acc = fmaf((float)S_b, d_w * d_x, acc) from 0, S_b the exact integer dot product of the codes.
 * The obviously-correct twin of the cpu kernels, which give the same bits. */
float act8_dot(const tensor *w, int64_t o, const act8_rows *x, int64_t r);

/* Quantizes the 2-D matrix src (F32, F16 or BF16; read once, row by row) into dst, which holds
 * src->shape[0] * dtype_row_bytes(type, src->shape[1]) bytes; `row` is scratch of
 * src->shape[1] floats. Afterwards *out is the quantized view (name of src, data dst). */
void quant_tensor(const tensor *src, dtype type, void *dst, float *row, tensor *out);
/* The same values in panel layout (tensor.h) in dst (tensor_panel_bytes(type, rows, cols) bytes)
 * from a row-major F32/F16/BF16 src: TENSOR_PANEL rows at a time quantized into slab (TENSOR_PANEL * dtype_row_bytes(type, cols)
 * bytes) and packed. *out is the panel view. */
void quant_tensor_panels(const tensor *src, dtype type, void *dst, float *row, void *slab, tensor *out);

#endif
