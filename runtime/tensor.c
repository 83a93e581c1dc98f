/* tensor.c — dtype names and bulk conversion to f32. */
#include "runtime/tensor.h"

const char *dtype_name(dtype t) {
    switch (t) {
    case DTYPE_F32: return "F32";
    case DTYPE_F16: return "F16";
    case DTYPE_BF16: return "BF16";
    case DTYPE_Q8: return "Q8";
    case DTYPE_Q4: return "Q4";
    case DTYPE_Q8A8: return "Q8A8";
    case DTYPE_Q4A8: return "Q4A8";
    }
    return "?";
}

/* Values c0..c1-1 of row r of a block-quantized matrix. */
static void dequant_range(const tensor *t, int64_t r, int64_t c0, int64_t c1, float *dst) {
    int64_t nb = (t->shape[1] + QBLOCK - 1) / QBLOCK;
    for (int64_t c = c0; c < c1;) {
        int64_t b = r * nb + c / QBLOCK;
        int j = (int)(c % QBLOCK), end = c1 - c + j < QBLOCK ? (int)(c1 - c + j) : QBLOCK;
        if (dtype_base(t->type) == DTYPE_Q8) {
            const block_q8 *blk = (const block_q8 *)t->data + b;
            for (; j < end; j++) *dst++ = q8_value(blk, j);
        } else {
            const block_q4 *blk = (const block_q4 *)t->data + b;
            for (; j < end; j++) *dst++ = q4_value(blk, j);
        }
        c = (c / QBLOCK + 1) * QBLOCK;
    }
}

void tensor_to_f32(const tensor *t, int64_t first, int64_t n, float *dst) {
    if (t->panel) {
        for (int64_t i = 0; i < n; i++) dst[i] = tensor_get(t, first + i);
        return;
    }
    if (t->type == DTYPE_F32) {
        memcpy(dst, (const float *)t->data + first, (size_t)n * sizeof(float));
        return;
    }
    if (dtype_is_quant(t->type)) {
        int64_t cols = t->shape[1];
        while (n > 0) {
            int64_t r = first / cols, c0 = first % cols, c1 = c0 + n < cols ? c0 + n : cols;
            dequant_range(t, r, c0, c1, dst);
            dst += c1 - c0;
            first += c1 - c0;
            n -= c1 - c0;
        }
        return;
    }
    const uint16_t *src = (const uint16_t *)t->data + first;
    if (t->type == DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
    }
}

/* Q8 / Q4 / Q8A8 / Q4A8 rows (row-major blocks) into panel blocks: the same scales and codes. */
static void pack_blocks(const tensor *src, void *dst) {
    int64_t rows = src->shape[0], cols = src->shape[1], nb = (cols + QBLOCK - 1) / QBLOCK, P = TENSOR_PANEL;
    size_t rb = dtype_row_bytes(src->type, cols);
    for (int64_t r = 0; r < rows; r++) {
        int64_t p = r / P;
        int j = (int)(r % P);
        const char *row = (const char *)src->data + (size_t)r * rb;
        for (int64_t b = 0; b < nb; b++) {
            if (src->type == DTYPE_Q8) {
                const block_q8 *in = (const block_q8 *)row + b;
                pblock_q8 *o = (pblock_q8 *)dst + p * nb + b;
                o->d[j] = in->d;
                for (int k = 0; k < QBLOCK; k++) o->q[k][j] = in->q[k];
            } else if (src->type == DTYPE_Q8A8) {
                const block_q8 *in = (const block_q8 *)row + b;
                pblock_q8a8 *o = (pblock_q8a8 *)dst + p * nb + b;
                o->d[j] = in->d;
                for (int k = 0; k < QBLOCK; k++) o->q[k / 4][j][k % 4] = (uint8_t)(in->q[k] + 128);
            } else if (src->type == DTYPE_Q4A8) {
                const block_q4 *in = (const block_q4 *)row + b;
                pblock_q4a8 *o = (pblock_q4a8 *)dst + p * nb + b;
                o->d[j] = in->d; /* the stored nibbles of block_q4 are columns k and k + 16 already */
                for (int k = 0; k < QBLOCK / 2; k++) o->q[k / 4][j][k % 4] = in->q[k];
            } else {
                const block_q4 *in = (const block_q4 *)row + b;
                pblock_q4 *o = (pblock_q4 *)dst + p * nb + b;
                o->d[j] = in->d;
                for (int k = 0; k < QBLOCK; k++) {
                    int q = k < QBLOCK / 2 ? (in->q[k] & 15) : (in->q[k - QBLOCK / 2] >> 4);
                    uint8_t *byte = &o->q[k / 2][j];
                    *byte = (uint8_t)(k % 2 ? (*byte & 0x0F) | (q << 4) : (*byte & 0xF0) | q);
                }
            }
        }
    }
}

void tensor_pack_panels(const tensor *src, void *dst, tensor *out) {
    int64_t rows = src->shape[0], cols = src->shape[1], P = TENSOR_PANEL;
    memset(dst, 0, tensor_panel_bytes(src->type, rows, cols));
    *out = *src;
    out->data = dst;
    out->panel = (int)P;
    if (dtype_is_quant(src->type)) {
        pack_blocks(src, dst);
        return;
    }
    /* panel by panel: its P source rows read in step (sequential streams), the panel written in
     * order; the missing rows of a last partial panel stay zero */
    for (int64_t r0 = 0; r0 < rows; r0 += P) {
        int n = rows - r0 < P ? (int)(rows - r0) : (int)P;
        if (src->type == DTYPE_F32) {
            const float *in = (const float *)src->data + r0 * cols;
            float *o = (float *)dst + r0 * cols;
            for (int64_t c = 0; c < cols; c++)
                for (int j = 0; j < n; j++) o[c * P + j] = in[(int64_t)j * cols + c];
        } else { /* F16 / BF16: 2-byte values */
            const uint16_t *in = (const uint16_t *)src->data + r0 * cols;
            uint16_t *o = (uint16_t *)dst + r0 * cols;
            for (int64_t c = 0; c < cols; c++)
                for (int j = 0; j < n; j++) o[c * P + j] = in[(int64_t)j * cols + c];
        }
    }
}
