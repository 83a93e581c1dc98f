/* quant.c — block quantization (quant.h; formats in tensor.h). */
#include <math.h>
#include <string.h>
#include "runtime/quant.h"
#include "runtime/quant_act.h"

const char *quant_format_name(moge_quant q) {
    const char *s = moge_quant_name(q);
    return s ? s : "none";
}

static const moge_quant FORMATS[] = {MOGE_QUANT_Q8, MOGE_QUANT_Q4, MOGE_QUANT_W8A8, MOGE_QUANT_W4A8};
#define N_FORMATS (sizeof FORMATS / sizeof FORMATS[0])

bool quant_format_parse(const char *s, moge_quant *q) {
    for (size_t i = 0; i < N_FORMATS; i++)
        if (s && strcmp(s, quant_format_name(FORMATS[i])) == 0) {
            *q = FORMATS[i];
            return true;
        }
    return false;
}

dtype quant_format_dtype(moge_quant q) {
    return q == MOGE_QUANT_Q8 ? DTYPE_Q8 : q == MOGE_QUANT_W8A8 ? DTYPE_Q8A8 : q == MOGE_QUANT_W4A8 ? DTYPE_Q4A8 : DTYPE_Q4;
}

const char *quant_dtype_format(dtype t) {
    for (size_t i = 0; i < N_FORMATS; i++)
        if (quant_format_dtype(FORMATS[i]) == t) return quant_format_name(FORMATS[i]);
    return "none";
}

/* max |x| over the block's n (<= QBLOCK) values, and the scale d = max / levels. */
static float block_scale(const float *x, int n, float levels) { return qa_amax(x, n) / levels; }

/* round(x / d) clamped to [-lim, lim]; 0 when d == 0. */
static int quant_value(float x, float d, int lim) {
    if (d == 0.0f) return 0;
    int q = (int)lrintf(x / d);
    return q > lim ? lim : q < -lim ? -lim : q;
}

void quant_row_q8(const float *x, int64_t n, block_q8 *out) {
    for (int64_t b = 0; b * QBLOCK < n; b++) {
        const float *xb = x + b * QBLOCK;
        int m = n - b * QBLOCK < QBLOCK ? (int)(n - b * QBLOCK) : QBLOCK;
        float d = block_scale(xb, m, 127.0f);
        out[b].d = d;
        for (int j = 0; j < QBLOCK; j++) out[b].q[j] = (int8_t)(j < m ? quant_value(xb[j], d, 127) : 0);
    }
}

void quant_row_q4(const float *x, int64_t n, block_q4 *out) {
    for (int64_t b = 0; b * QBLOCK < n; b++) {
        const float *xb = x + b * QBLOCK;
        int m = n - b * QBLOCK < QBLOCK ? (int)(n - b * QBLOCK) : QBLOCK;
        float d = block_scale(xb, m, 7.0f);
        out[b].d = d;
        uint8_t q[QBLOCK];
        for (int j = 0; j < QBLOCK; j++) q[j] = (uint8_t)((j < m ? quant_value(xb[j], d, 7) : 0) + 8);
        for (int j = 0; j < QBLOCK / 2; j++) out[b].q[j] = (uint8_t)(q[j] | (q[j + QBLOCK / 2] << 4));
    }
}

void quant_tensor(const tensor *src, dtype type, void *dst, float *row, tensor *out) {
    int64_t rows = src->shape[0], cols = src->shape[1];
    size_t rb = dtype_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++) {
        tensor_to_f32(src, r * cols, cols, row);
        char *o = (char *)dst + (size_t)r * rb;
        if (dtype_base(type) == DTYPE_Q8) quant_row_q8(row, cols, (block_q8 *)o); /* Q8, Q8A8 */
        else quant_row_q4(row, cols, (block_q4 *)o);
    }
    *out = *src;
    out->type = type;
    out->data = dst;
}

void quant_tensor_panels(const tensor *src, dtype type, void *dst, float *row, void *slab, tensor *out) {
    int64_t rows = src->shape[0], cols = src->shape[1];
    size_t pb = tensor_panel_bytes(type, TENSOR_PANEL, cols);
    for (int64_t r0 = 0; r0 < rows; r0 += TENSOR_PANEL) {
        tensor part = *src, q; /* the panel's rows of the row-major source */
        part.shape[0] = rows - r0 < TENSOR_PANEL ? rows - r0 : TENSOR_PANEL;
        part.data = (const char *)src->data + (size_t)r0 * (size_t)cols * dtype_size(src->type);
        quant_tensor(&part, type, slab, row, &q);
        tensor packed;
        tensor_pack_panels(&q, (char *)dst + (size_t)(r0 / TENSOR_PANEL) * pb, &packed);
    }
    *out = *src;
    out->type = type;
    out->data = dst;
    out->panel = TENSOR_PANEL;
}

void quant_act_row(const float *x, int64_t n, int16_t *q, float *d) { qa_act_row(x, n, q, d); }
void quant_act_rows(const float *x, int64_t n, int64_t cols, float *scratch, const int16_t **q, const float **d) {
    qa_act_rows(x, n, cols, scratch, q, d);
}
void quant_act8_row(const float *x, int64_t n, int8_t *q, float *d, int32_t *s) { qa_act8_row(x, n, q, d, s); }
void quant_act8_rows(const float *x, int64_t n, int64_t cols, float *scratch, act8_rows *out) {
    qa_act8_rows(x, n, cols, scratch, out);
}

float act8_dot(const tensor *w, int64_t o, const act8_rows *x, int64_t r) {
    int64_t cols = w->shape[1], nb = x->nb;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t sum = 0;
        float dw = 0.0f;
        for (int j = 0; j < QBLOCK && b * QBLOCK + j < cols; j++)
            sum += tensor_code(w, o, b * QBLOCK + j, &dw) * x->q[(r * nb + b) * QBLOCK + j];
        acc = fmaf((float)sum, dw * x->d[r * nb + b], acc);
    }
    return acc;
}
