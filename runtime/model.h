/*
 * model.h — the loaded model: hyper-parameters from config.json and weight views.
 *
 * Weights of 2-D matrices are views into the mmapped safetensors files (any of F32/F16/BF16);
 * 1-D vectors (norm weights, biases) are converted to f32 copies at load, since every row of
 * every batch reads them. With a quantization (moge_model_params.quant) every matrix but the
 * embedding table and the MoE routers is quantized at load into one owned buffer (`qbuf`), and
 * the pages of its source in the mapping are released. A pre-quantized directory (written by
 * moge quantize, format in runtime/quant_file.c) holds exactly those matrices as blocks already,
 * in the panel layout of the cpu backend (tensor.h): they are bound as DTYPE_Q8/DTYPE_Q4 panel
 * views into the mapping, with no pass and no copy, for both backends (files of the first version
 * hold row-major blocks: the ref backend uses them in place, the cpu backend copies them once into
 * panels, like float matrices).
 */
#ifndef MOGE_MODEL_H
#define MOGE_MODEL_H

#include <stdbool.h>
#include "moge.h"
#include "runtime/backend.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

#include "runtime/config.h"

typedef struct {
    float *attn_norm;          /* (n_embd) */
    tensor wq;                 /* (n_head * head_dim, n_embd) */
    tensor wk, wv;             /* (n_head_kv * head_dim, n_embd) */
    tensor wo;                 /* (n_embd, n_head * head_dim) */
    float *bq, *bk, *bv, *bo;  /* biases or NULL: (n_head*head_dim), (n_head_kv*head_dim) x2, (n_embd) */
    float *ffn_norm;           /* (n_embd) */
    float *q_norm, *k_norm;    /* (head_dim) Qwen3 per-head norms, or NULL */
    /* dense MLP */
    tensor w_gate, w_up;       /* (n_ff, n_embd) */
    tensor w_down;             /* (n_embd, n_ff) */
    /* MoE */
    tensor router;             /* (n_expert, n_embd) */
    float *router_scale;       /* (n_expert) or NULL */
    tensor *exp_gate, *exp_up; /* [n_expert] of (n_ff_expert, n_embd) */
    tensor *exp_down;          /* [n_expert] of (n_embd, n_ff_expert) */
    tensor sh_gate, sh_up;     /* (n_ff_shared, n_embd) when n_ff_shared > 0 */
    tensor sh_down;            /* (n_embd, n_ff_shared) */
    float *sh_gate_w;          /* (n_embd) Qwen2-MoE shared expert gate, or NULL */
} layer_weights;

/* Progress of the work done at load (quantizing, laying out): bytes of source matrices. */
typedef struct {
    void (*fn)(double done, void *user);
    void *user;
    int64_t done, total;
    int reported; /* in percent */
    bool (*abort_cb)(void *abort_cb_user); /* moge_model_params.abort_cb */
    void *abort_cb_user;
    bool aborted; /* it returned true: the remaining matrices are skipped */
} load_progress;

/* The abort callback of a load said stop (asked again on each call until it does; then true). */
bool load_abort_check(load_progress *p);

/* A GGUF file (runtime/model_gguf.c) as a config and the tensors of a Hugging Face directory:
 * metadata checked and converted, tensors under their Hugging Face names (Q8_0 / Q4_0 as moge's
 * Q8 / Q4 blocks, Q4_K / Q6_K dequantized to F32, the rest in place; with a quantization at load,
 * quant, every block-type matrix already in its format, row-major). */
moge_status gguf_model_open(model_config *c, st_table *t, const char *path, moge_quant quant, load_progress *lp, char *err, size_t err_size);

struct moge_model {
    model_config cfg;
    load_progress progress;     /* during moge_model_load only */
    st_table st;
    tensor tok_embd;           /* (n_vocab, n_embd) */
    float *out_norm;           /* (n_embd) */
    tensor lm_head;            /* (n_vocab, n_embd): a copy of tok_embd's view when tied */
    layer_weights *layers;     /* [n_layer] */
    float *rope_inv_freq;      /* (head_dim / 2): theta^(-2j / head_dim) */
    const backend_ops *ops;
    int n_threads;
    const moge_model *view_of; /* set for a layer-skip view: weights belong to that model */
    moge_quant quant;
    bool prequantized;         /* the quantized matrices come from a pre-quantized file: views into it
                                  (row-major blocks on the cpu backend: their panel copies in pbuf) */
    void *qbuf;                /* matrices quantized at load (owned), or NULL */
    int64_t qbuf_bytes;        /* bytes of quantized matrices (in qbuf, or in the mapping when prequantized;
                                  row-major blocks the cpu backend copied into pbuf are not counted here) */
    void *pbuf;                /* float matrices (and row-major pre-quantized blocks) in panel layout for
                                  the cpu backend (owned), or NULL */
    int64_t pbuf_bytes;        /* bytes of it in use */
    int64_t vector_bytes;      /* bytes of the f32 vector copies */
    /* expert parallelism (runtime/comm.h): the job (NULL: one process), this model's id in it, and
     * the routed experts this rank holds, [expert_lo, expert_hi) (all of them in one process); the
     * others' tensors are left empty (data NULL) */
    moge_comm *comm;
    int comm_id;
    int expert_lo, expert_hi;
};

/* The 2-D weights by role: quantization (at load, or by moge quantize) converts MAT_OTHER only. */
typedef enum { MAT_EMBD, MAT_ROUTER, MAT_OTHER } matrix_kind;
/* Bytes of the routed-expert matrices the model holds, as laid out (this rank's share). */
int64_t model_expert_bytes(const moge_model *m);
/* Calls fn on every 2-D weight the model holds (lm_head also when it is the tied embedding),
 * in a fixed order. */
void model_for_each_matrix(moge_model *m, void (*fn)(moge_model *, tensor *, matrix_kind, void *), void *arg);

/* A model that runs only the first n_layers layers of `m` (then m's final norm and lm_head),
 * sharing every weight: the layer-skip self-draft. Free with moge_model_free before m. */
moge_status model_new_layer_view(const moge_model *m, int n_layers, moge_model **out, char *err, size_t err_size);

#endif
