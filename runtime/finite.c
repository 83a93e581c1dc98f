/*
 * finite.c — NaN and Inf in a forward's output. moge_forward checks every logit it returns
 * (logits_finite: a pass over the rows, small next to the lm_head matmul that wrote them); only
 * when that fails does model_find_nonfinite scan the weights, slowly and once, to name the tensor
 * at fault in the error (a NaN norm weight otherwise samples as blank text with exit 0).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"
#include "runtime/finite.h"

bool logits_finite(const float *x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) { /* exponent all ones: Inf or NaN; a bit test vectorizes */
        uint32_t b;
        memcpy(&b, &x[i], 4);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* The first non-finite value of v[0..n): its index, or -1. */
static int64_t first_nonfinite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return -1;
}

typedef struct {
    char *msg;
    size_t cap;
    bool found;
    float *row;
} scan_state;

static void found(scan_state *s, const char *name, int64_t at, float v) {
    snprintf(s->msg, s->cap, "tensor %s holds %s at element %lld", name, isnan(v) ? "NaN" : "Inf", (long long)at);
    s->found = true;
}

static void scan_matrix(moge_model *m, tensor *t, matrix_kind kind, void *arg) {
    (void)m, (void)kind;
    scan_state *s = arg;
    if (s->found || !t->data || !s->row) return;
    int64_t cols = t->shape[1];
    for (int64_t r = 0; r < t->shape[0]; r++) {
        tensor_to_f32(t, r * cols, cols, s->row);
        int64_t k = first_nonfinite(s->row, cols);
        if (k >= 0) {
            found(s, t->name ? t->name : "(a weight matrix)", r * cols + k, s->row[k]);
            return;
        }
    }
}

static void scan_vector(scan_state *s, int layer, const char *what, const float *v, int64_t n) {
    if (s->found || !v) return;
    int64_t k = first_nonfinite(v, n);
    if (k < 0) return;
    char name[160];
    if (layer < 0) snprintf(name, sizeof name, "%s", what);
    else snprintf(name, sizeof name, "model.layers.%d.%s", layer, what);
    found(s, name, k, v[k]);
}

bool model_find_nonfinite(const moge_model *m, char *msg, size_t cap) {
    const model_config *c = &m->cfg;
    int64_t E = c->n_embd, D = c->head_dim, Q = (int64_t)c->n_head * D, KV = (int64_t)c->n_head_kv * D;
    scan_state s = {.msg = msg, .cap = cap};
    /* the vectors first (norm weights and biases: the usual culprits, and cheap) */
    scan_vector(&s, -1, "model.norm.weight", m->out_norm, E);
    for (int l = 0; l < c->n_layer && !s.found; l++) {
        const layer_weights *w = &m->layers[l];
        scan_vector(&s, l, "input_layernorm.weight", w->attn_norm, E);
        scan_vector(&s, l, "self_attn.q_proj.bias", w->bq, Q);
        scan_vector(&s, l, "self_attn.k_proj.bias", w->bk, KV);
        scan_vector(&s, l, "self_attn.v_proj.bias", w->bv, KV);
        scan_vector(&s, l, "self_attn.o_proj.bias", w->bo, E);
        scan_vector(&s, l, "self_attn.q_norm.weight", w->q_norm, D);
        scan_vector(&s, l, "self_attn.k_norm.weight", w->k_norm, D);
        scan_vector(&s, l, "post_attention_layernorm.weight", w->ffn_norm, E);
        scan_vector(&s, l, "mlp.router_scale", w->router_scale, c->n_expert);
        scan_vector(&s, l, "mlp.shared_expert_gate.weight", w->sh_gate_w, E);
    }
    if (!s.found) {
        int64_t cols = E;
        if (c->n_ff > cols) cols = c->n_ff;
        if (c->n_ff_expert > cols) cols = c->n_ff_expert;
        if (c->n_ff_shared > cols) cols = c->n_ff_shared;
        if (Q > cols) cols = Q;
        s.row = malloc((size_t)cols * sizeof(float));
        if (!s.row) {
            snprintf(msg, cap, "the weight matrices could not be scanned (out of memory)");
            return false;
        }
        model_for_each_matrix((moge_model *)m, scan_matrix, &s);
        free(s.row);
    }
    if (!s.found) snprintf(msg, cap, "every weight is finite: the activations overflowed");
    return s.found;
}
