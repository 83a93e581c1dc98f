/*
 * matmul.c — the cpu backend's matmul op (backend_ops.matmul): y (n, out) = x · Wᵀ + bias.
 *
 * The weights the cpu backend loads are held in panel layout (tensor.h, laid out or quantized
 * into it at load, or mapped as they are from a pre-quantized "panel16" file): panel tiles
 * (matmul_float.c ptile, matmul_quant.c qptile) of up to 8 input rows × 32 outputs (6 × 16 with
 * AVX2 only) walk the panels' columns, broadcasting one input value and multiply-adding a vector
 * of 16 weights per step (Q8/Q4: 16 codes converted and multiplied by their scales first, the
 * exact dequantized values), so each output is one fused multiply-add chain in element order: no
 * horizontal sums, the weights read once per tile of rows, and the same bits at any batch size
 * (decode, tree verification and prompt prefill alike; a 680-token prefill of the dense
 * benchmark model took 1.1 s against 4.0 s through OpenBLAS sgemm on the 2-core machine).
 * Weights in row layout (a tied lm_head, which the token lookup shares; block-quantized
 * matrices built outside the loader) use tiles of 4 weight rows × 4 input rows with a fixed
 * reduction order up to BACKEND_INVARIANT_ROWS rows (matmul_rows: matmul_float.c tile_f;
 * matmul_quant.c tile_q, int16 activations and integer dot products, VNNI where present, for
 * Q8/Q4); beyond, each panel of 16 weight rows is converted to f32 once and run through the panel
 * kernel (matmul_deq; OpenBLAS sgemm, used before, was slower on the machines measured). W8A8 /
 * W4A8 weights (DTYPE_Q8A8 / Q4A8) multiply int8 activations by integer dot products
 * (matmul_quant.c qatile; VNNI where present), again one fixed chain per value. Output rows are
 * split over the thread pool.
 *
 * This file chooses the kernel and splits the work; without AVX2 (the scalar and generic
 * variants) it holds the portable twin of every kernel, the same per-value orders.
 */
#include "runtime/cpu/kernels.h"

/* The activations matmul_range needs for weights w: x itself, or x quantized into scratch
 * (quant_act_floats(n, in) floats). */
acts prepare_acts(const tensor *w, const float *x, int n, float *scratch) {
    acts a = {.x = x};
    if (dtype_act8(w->type)) qa_act8_rows(x, n, w->shape[1], scratch, &a.a8);
    else if (dtype_is_quant(w->type) && !w->panel) qa_act_rows(x, n, w->shape[1], scratch, &a.q, &a.d);
    return a;
}

/* W8A8 / W4A8 (DTYPE_Q8A8 / DTYPE_Q4A8) in either layout, one value at a time: the kernels' twin
 * (quant.h act8_dot). */
static void matmul_act8_scalar(float *y, const act8_rows *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int64_t out = w->shape[0];
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r++) y[(int64_t)r * out + o] = act8_dot(w, o, x, r) + (bias ? bias[o] : 0.0f);
}

#ifdef MOGE_AVX2
/* y[r * out + o + a] += bias[o + a] for r < n, a < cols (after the chains: the same rounding for
 * every kernel); nothing without a bias. */
static void add_bias(float *y, int n, int64_t out, const float *bias, int o, int cols) {
    if (!bias) return;
    for (int r = 0; r < n; r++)
        for (int a = 0; a < cols; a++) y[(int64_t)r * out + o + a] += bias[o + a];
}

/* The panels of the next tile from output o of [o, o1): `widest` (one of `chain`, a kernel's tile
 * widths from the widest down to 1), or the next narrower one the panels left still fill; *cols
 * gets the outputs the tile covers. */
static int next_panels(int o, int o1, int widest, const int *chain, int *cols) {
    int left = (o1 - o + TENSOR_PANEL - 1) / TENSOR_PANEL, i = 0;
    while (chain[i] != widest) i++;
    while (chain[i] > left && chain[i] > 1) i++;
    *cols = o1 - o < chain[i] * TENSOR_PANEL ? o1 - o : chain[i] * TENSOR_PANEL;
    return chain[i];
}

/* Rows of pass g of `passes` over a batch of n rows of which r are done: the batch split as evenly
 * as the passes allow (16 rows in tiles of up to 6: 6 5 5, not 6 6 4; 8: 4 4, not 6 2), so that no
 * pass is a thin tile whose few accumulator chains wait on the multiply-add latency (measured with
 * AVX2 on the 1.6 GB MoGE stand-in: 8 rows 3 %, 7 rows 7 %, 13 rows 7 % faster; a value's chain
 * does not depend on its tile, so the same bits). */
static inline int pass_rows(int n, int r, int passes, int g) { return (n - r) / (passes - g); }

/* Whether a tile of c panels, one of `passes` passes over them for a batch of n rows, brings the
 * next tile into L2 as it goes (kernels.h pt_prefetch_ahead). With more passes than one, always:
 * the later passes find the tile in cache and would leave memory idle while they compute. A
 * single pass of several rows over one panel, too: one stream, which the hardware prefetchers
 * keep too few lines ahead of (a core streamed an expert's f32 weights at 2/3 of the one-row
 * rate with 4 rows); the next tile's is a second stream. Measured on a Zen 3 (AVX2: one panel
 * from 4 rows of f32, 3 of F16 / BF16 / Q8, 2 of W8A8 / W4A8): 4-row forwards of both stand-ins
 * 6-7 % faster in f32 and 6 % in Q8, 2-row ones 13-18 % in W8A8 / W4A8. Not where the tile walks
 * two panels or more (f32 at 2 rows 21 %, at 3 rows 2-3 % slower so), nor for Q4, whose tiles
 * wait on their conversions (4 rows 5-13 % slower), nor for one row. */
static bool tile_prefetches(int n, int passes, int c, dtype t) { return passes > 1 || (n >= 2 && c == 1 && t != DTYPE_Q4); }

/* The next tile's prefetch for a tile at wp of c panels of pb bytes, when `prefetch` and a next
 * tile exists (from output `next_o` of [next_o, o1)): *ahead gets its first byte and the result
 * is the bytes to prefetch per step, its bytes spread evenly over the `passes` passes of `steps`
 * steps each (columns of float panels, blocks of int8 ones); 0 and NULL when none. */
static size_t tile_ahead(const char *wp, int c, size_t pb, int next_o, int o1, int widest, const int *chain, int passes, int steps,
                         bool prefetch, const char **ahead) {
    *ahead = NULL;
    if (!prefetch || next_o >= o1) return 0;
    int next_cols, next = next_panels(next_o, o1, widest, chain, &next_cols);
    *ahead = wp + (size_t)c * pb;
    return ((size_t)next * pb + (size_t)passes * steps - 1) / ((size_t)passes * steps);
}

/* y (n, out) columns [o0, o1) (o0 a multiple of TENSOR_PANEL) for panel-layout weights. */
static void matmul_panels(float *y, const float *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    size_t pb = tensor_panel_bytes(w->type, TENSOR_PANEL, in); /* one panel */
    ptile_fn *fn = w->type == DTYPE_F16 ? ptile_F16 : w->type == DTYPE_BF16 ? ptile_BF16 : w->type == DTYPE_Q8 ? ptile_Q8 :
        w->type == DTYPE_Q4 ? ptile_Q4 : ptile_F32;
    static const int chain[] = {PT_C1, PT_C2, PT_PANELS, 1};
    /* the 2-panel 3-row tile only for f32: the others' conversions need registers (F16 / BF16 spilled
     * an accumulator there) */
    int widest = n == 1 ? PT_C1 : n == 2 ? PT_C2 : n == 3 && w->type == DTYPE_F32 ? PT_C3 : PT_PANELS, passes = (n + PT_ROWS - 1) / PT_ROWS;
    for (int o = o0, cols; o < o1; o += cols) {
        int c = next_panels(o, o1, widest, chain, &cols);
        const char *wp = (const char *)w->data + (size_t)(o / TENSOR_PANEL) * pb;
        const char *ahead = NULL;
        size_t step = tile_ahead(wp, c, pb, o + cols, o1, widest, chain, passes, in, tile_prefetches(n, passes, c, w->type), &ahead);
        for (int r = 0, g = 0, rows; r < n; r += rows, g++) {
            rows = pass_rows(n, r, passes, g);
            fn(rows, c, wp, pb, in, x + (int64_t)r * in, y + (int64_t)r * out + o, out, cols, ahead ? ahead + (size_t)g * in * step : NULL,
               step);
        }
        add_bias(y, n, out, bias, o, cols);
    }
}

/* y (n, out) columns [o0, o1) (o0 a multiple of TENSOR_PANEL) for W8A8 / W4A8 weights. */
static void matmul_act8(float *y, const act8_rows *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    if (!w->panel) {
        matmul_act8_scalar(y, x, n, w, bias, o0, o1);
        return;
    }
    int out = (int)w->shape[0];
    size_t pb = tensor_panel_bytes(w->type, TENSOR_PANEL, w->shape[1]);
    qatile_fn *fn = w->type == DTYPE_Q4A8 ? qatile_Q4A8 : qatile_Q8A8;
    static const int chain[] = {QA_C1, QA_PANELS, 1};
    int widest = n == 1 ? QA_C1 : QA_PANELS, passes = (n + QA_ROWS - 1) / QA_ROWS, nb = (int)x->nb;
    for (int o = o0, cols; o < o1; o += cols) {
        int c = next_panels(o, o1, widest, chain, &cols);
        const char *wp = (const char *)w->data + (size_t)(o / TENSOR_PANEL) * pb;
        const char *ahead = NULL; /* per block of 32 columns */
        size_t step = tile_ahead(wp, c, pb, o + cols, o1, widest, chain, passes, nb, tile_prefetches(n, passes, c, w->type), &ahead);
        for (int r = 0, g = 0, rows; r < n; r += rows, g++) {
            rows = pass_rows(n, r, passes, g);
            fn(rows, c, wp, pb, x, r, y + (int64_t)r * out + o, out, cols, ahead ? ahead + (size_t)g * nb * step : NULL, step);
        }
        add_bias(y, n, out, bias, o, cols);
    }
}

/* Bytes of input rows a span covers: keeps the span's slice of all the batch's rows in L1 while
 * the tile's weight slice is reused for each group of 4 rows. */
#ifndef SPAN_BYTES
#define SPAN_BYTES (32 * 1024)
#endif

/* y (n, out) rows [o0, o1) = x · Wᵀ + bias for n <= BACKEND_INVARIANT_ROWS. Up to 4 rows: one
 * pass over each weight tile. More: each weight tile is walked in spans, every group of 4 rows
 * taking the span in turn, so the weight slice is read from memory once and from L1 after. */
static void matmul_rows(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    int quant = dtype_is_quant(w->type);
    tile_fn *fn;
    switch (w->type) {
    case DTYPE_F16: fn = tile_F16; break;
    case DTYPE_BF16: fn = tile_BF16; break;
    case DTYPE_Q8: fn = tile_Q8; break;
    case DTYPE_Q4: fn = tile_Q4; break;
    default: fn = tile_F32; break;
    }
    /* steps: blocks of 32 (quantized) or elements up to the last multiple of VL */
    int steps = quant ? (in + QBLOCK - 1) / QBLOCK : in / VL * VL;
    int unit = quant ? QBLOCK * 2 : 4; /* activation bytes per step unit and row */
    int span = n <= 4 ? steps : SPAN_BYTES / (unit * n);
    if (!quant) span = span / 32 * 32;
    if (span < (quant ? 2 : 32)) span = quant ? 2 : 32;
    if (span >= steps) span = steps;
    vf save[BACKEND_INVARIANT_ROWS / 4][16];
    for (int o = o0; o < o1;) {
        int to = o1 - o >= TILE_O ? TILE_O : 1;
        if (steps == 0) { /* in < VL: the scalar tail only */
            for (int r = 0; r < n; r += 4)
                fn(to, n - r < 4 ? n - r : 4, w, o, in, x, r, 0, 0, TILE_FIRST | TILE_LAST, save[0], y + (int64_t)r * out + o, out);
        }
        for (int k0 = 0; k0 < steps; k0 += span) {
            int k1 = steps - k0 < span ? steps : k0 + span;
            for (int r = 0; r < n; r += 4) {
                int flags = (k0 == 0 ? TILE_FIRST : 0) | (k1 == steps ? TILE_LAST : 0) | (r == 0 ? TILE_PREFETCH : 0) |
                            (n > 4 ? TILE_PREFETCH_L2 : 0);
                fn(to, n - r < 4 ? n - r : 4, w, o, in, x, r, k0, k1, flags, save[r / 4], y + (int64_t)r * out + o, out);
            }
        }
        add_bias(y, n, out, bias, o, to);
        o += to;
    }
}

/* Any number of rows: panel-layout weights directly, others BACKEND_INVARIANT_ROWS rows at a
 * time (each row's values do not depend on the others, so the blocks change nothing; the tile
 * state of matmul_rows is sized for that many rows). */
void matmul_range(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    if (dtype_act8(w->type)) {
        matmul_act8(y, &x->a8, n, w, bias, o0, o1);
        return;
    }
    if (w->panel) {
        matmul_panels(y, x->x, n, w, bias, o0, o1);
        return;
    }
    int64_t out = w->shape[0], in = w->shape[1], nb = (in + QBLOCK - 1) / QBLOCK;
    for (int r0 = 0; r0 < n; r0 += BACKEND_INVARIANT_ROWS) {
        acts part = *x;
        if (part.x) part.x += r0 * in;
        if (part.q) part.q += r0 * nb * QBLOCK, part.d += r0 * nb;
        int rows = n - r0 < BACKEND_INVARIANT_ROWS ? n - r0 : BACKEND_INVARIANT_ROWS;
        matmul_rows(y + r0 * out, &part, rows, w, bias, o0, o1);
    }
}

/* Weights not in panel layout (quantized, or a tied lm_head) and more rows than the invariant
 * kernels take (a long prefill): each panel of TENSOR_PANEL weight rows is converted once into
 * `panel` (TENSOR_PANEL * in floats, panel layout, the values tensor_get gives) and multiplied
 * into all n rows by the float panel kernel, so the conversion is paid once per pass, not per
 * row. (This replaced OpenBLAS sgemm, which was slower here and is not batch-invariant.) */
static void matmul_deq(float *y, const float *x, int n, const tensor *w, int o0, int o1, float *panel) {
    int64_t out = w->shape[0], in = w->shape[1];
    for (int64_t o = o0; o < o1; o += TENSOR_PANEL) {
        for (int j = 0; j < TENSOR_PANEL; j++)
            for (int64_t c = 0; c < in; c++) panel[c * TENSOR_PANEL + j] = o + j < o1 ? tensor_get(w, (o + j) * in + c) : 0.0f;
        int cols = o1 - o < TENSOR_PANEL ? (int)(o1 - o) : TENSOR_PANEL;
        for (int r = 0; r < n; r += PT_ROWS)
            ptile_F32(n - r < PT_ROWS ? n - r : PT_ROWS, 1, (const char *)panel, 0, (int)in, x + (int64_t)r * in, y + (int64_t)r * out + o,
                      out, cols, NULL, 0);
    }
}
#else
/* Portable fallback: the same per-value orders (one accumulator per value, element or block
 * order; panel layout: the same fmaf chain as the vector kernel, so the same bits). */
static void matmul_panels(float *y, const float *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r++) {
            float acc = 0.0f;
            for (int k = 0; k < in; k++) acc = fmaf(x[(int64_t)r * in + k], tensor_get(w, (int64_t)o * in + k), acc);
            y[(int64_t)r * out + o] = acc + (bias ? bias[o] : 0.0f);
        }
}

/* Over 64 rows, any layout: the values tensor_get gives, f32 activations (as the vector build). */
static void matmul_deq(float *y, const float *x, int n, const tensor *w, int o0, int o1, float *panel) {
    (void)panel;
    matmul_panels(y, x, n, w, NULL, o0, o1);
}

void matmul_range(float *y, const acts *x, int n, const tensor *w, const float *bias, int o0, int o1) {
    if (dtype_act8(w->type)) {
        matmul_act8_scalar(y, &x->a8, n, w, bias, o0, o1);
        return;
    }
    if (w->panel) {
        matmul_panels(y, x->x, n, w, bias, o0, o1);
        return;
    }
    int out = (int)w->shape[0], in = (int)w->shape[1], nb = (in + QBLOCK - 1) / QBLOCK;
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < n; r++) {
            float acc = 0.0f;
            if (dtype_is_quant(w->type)) {
                for (int b = 0; b < nb; b++) {
                    int32_t s = 0;
                    float dw = 0.0f;
                    for (int j = 0; j < QBLOCK; j++) {
                        int q;
                        if (w->type == DTYPE_Q8) {
                            const block_q8 *blk = (const block_q8 *)((const char *)w->data + (size_t)o * dtype_row_bytes(w->type, in)) + b;
                            q = blk->q[j], dw = blk->d;
                        } else {
                            const block_q4 *blk = (const block_q4 *)((const char *)w->data + (size_t)o * dtype_row_bytes(w->type, in)) + b;
                            q = (j < QBLOCK / 2 ? (blk->q[j] & 15) : (blk->q[j - QBLOCK / 2] >> 4)) - 8, dw = blk->d;
                        }
                        s += q * x->q[((int64_t)r * nb + b) * QBLOCK + j];
                    }
                    acc += (float)s * (dw * x->d[(int64_t)r * nb + b]);
                }
            } else {
                for (int i = 0; i < in; i++) acc += tensor_get(w, (int64_t)o * in + i) * x->x[(int64_t)r * in + i];
            }
            y[(int64_t)r * out + o] = acc + (bias ? bias[o] : 0.0f);
        }
}
#endif

typedef struct {
    float *y;
    const acts *x;
    const float *xf; /* matmul_deq_task: f32 rows */
    int n, n_tasks;
    const tensor *w;
    const float *bias;
    float *panels;   /* matmul_deq_task: TENSOR_PANEL * in floats per task */
} matmul_job;

static void matmul_task(void *arg, int t) {
    const matmul_job *j = arg;
    int out = (int)j->w->shape[0];
    int o0 = (int)((int64_t)out * t / j->n_tasks), o1 = (int)((int64_t)out * (t + 1) / j->n_tasks);
    if (j->w->panel) { /* whole tiles of panels */
        int unit = TENSOR_PANEL * PT_PANELS, units = (out + unit - 1) / unit;
        o0 = (int)((int64_t)units * t / j->n_tasks) * unit;
        o1 = (int)((int64_t)units * (t + 1) / j->n_tasks) * unit;
        if (o1 > out) o1 = out;
        if (o0 >= o1) return;
    }
    matmul_range(j->y, j->x, j->n, j->w, j->bias, o0, o1);
}

static void matmul_deq_task(void *arg, int t) {
    const matmul_job *j = arg;
    int out = (int)j->w->shape[0], in = (int)j->w->shape[1], units = (out + TENSOR_PANEL - 1) / TENSOR_PANEL;
    int o0 = (int)((int64_t)units * t / j->n_tasks) * TENSOR_PANEL, o1 = (int)((int64_t)units * (t + 1) / j->n_tasks) * TENSOR_PANEL;
    if (o1 > out) o1 = out;
    if (o0 >= o1) return;
    matmul_deq(j->y, j->xf, j->n, j->w, o0, o1, j->panels + (int64_t)t * TENSOR_PANEL * in);
    if (j->bias)
        for (int r = 0; r < j->n; r++)
            for (int o = o0; o < o1; o++) j->y[(int64_t)r * out + o] += j->bias[o];
}

void cpu_matmul(const backend_env *env, float *y, const float *x, int n, const tensor *w, const float *bias) {
    int out = (int)w->shape[0], in = (int)w->shape[1];
    if (dtype_act8(w->type) && n > BACKEND_INVARIANT_ROWS) { /* the int8 rows of env->ws hold that many */
        for (int r = 0; r < n; r += BACKEND_INVARIANT_ROWS)
            cpu_matmul(env, y + (int64_t)r * out, x + (int64_t)r * in, n - r < BACKEND_INVARIANT_ROWS ? n - r : BACKEND_INVARIANT_ROWS, w, bias);
        return;
    }
    if (n <= BACKEND_INVARIANT_ROWS || w->panel) {
        /* small products are not worth waking the pool for (about 50 µs of hand-over) */
        int threads = threadpool_size(env->pool);
        int64_t work = (int64_t)out * in * n;
        acts xa = prepare_acts(w, x, n, env->ws);
        matmul_job j = {.y = y, .x = &xa, .n = n, .n_tasks = work >= (1 << 18) && out >= 16 * threads ? 4 * threads : 1, .w = w, .bias = bias};
        threadpool_run(env->pool, j.n_tasks, matmul_task, &j);
        return;
    }
    /* one task per thread, each with its own panel of env->ws (backend_ws_floats) */
    matmul_job j = {.y = y, .xf = x, .n = n, .n_tasks = threadpool_size(env->pool), .w = w, .bias = bias, .panels = env->ws};
    threadpool_run(env->pool, j.n_tasks, matmul_deq_task, &j);
}
