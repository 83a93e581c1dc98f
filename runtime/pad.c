/*
 * pad.c — memory-bound stand-ins: moge_pad_model() turns a trained model into a wider and deeper
 * one that computes the same function at the memory cost of its own size, so that speculative
 * decoding can be measured where decoding is memory-bound, with the text of a real model.
 *
 * The construction. The source has hidden size d, H query heads over HKV key/value heads (ratio
 * r = H / HKV) of head_dim hd, L layers, MLP / expert / shared-expert widths F, FE, FS. The
 * stand-in has D >= d, H' >= H (a multiple of r; HKV' = H' / r; hd kept), L' >= L, F' >= F,
 * FE' >= FE, FS' >= FS; the number of experts, groups, experts per token and the router scales
 * stay. Every added dimension comes after the real ones (real hidden dims first, real heads
 * first, real intermediate units first), and every tensor holds the source's (converted to f32)
 * in its top-left block:
 *   - zero: whatever writes into the residual stream's padding dims (embedding columns >= d, so a
 *     tied lm_head agrees; rows >= d of o_proj and its bias, of every down_proj: dense, each
 *     expert's, the shared expert's), whatever writes from an added head or an added
 *     intermediate unit into the residual (o_proj columns of added heads, down_proj columns of
 *     added units), and in an inserted layer every output projection (o_proj and its bias,
 *     down_proj of the MLP, of every expert and of the shared expert);
 *   - random (deterministic from the seed and the tensor's name: uniform, standard deviation
 *     0.02; norm weights and router scales 1 +- that): everything else that was added, so that
 *     the kernels, attention and routing do real work — q/k/v columns reading padding dims, rows
 *     and biases of added heads, gate/up rows of added units, router and lm_head columns of
 *     padding dims, norm weights of padding dims, and every other weight of an inserted layer.
 *     Inserted layers are spread evenly between the real ones (real layer i at position
 *     round(i (L' - 1) / (L - 1)); with L > 1 the first and the last layer are real).
 *   - RMSNorm: rms_norm_eps becomes eps' = eps d / D in config.json and the real dims' weights of
 *     every residual norm (attention, MLP, final) are multiplied by sqrt(d / D). Qwen3's per-head
 *     q/k norms keep their weights (head_dim is kept) but see eps' too: their real heads' q and k
 *     rows and biases are multiplied by sqrt(d / D) instead.
 *
 * Why the real dims compute the same function. Invariant: the residual x (D values per token)
 * holds the source's residual on dims < d and exactly 0 on dims >= d, after the embedding and
 * after every layer.
 *   1. The embedding's columns >= d are zero: the invariant holds at the input.
 *   2. RMSNorm of such an x: sum(x^2) over D dims is the sum over the d real ones, so
 *      mean_D + eps' = (d / D) (mean_d + eps) and 1 / sqrt(mean_D + eps') = sqrt(D / d) / sqrt(mean_d
 *      + eps); times the weights w sqrt(d / D) the real dims get exactly the source's normed
 *      values; the padding dims get 0 times their (random) weights = 0.
 *   3. A matrix reading a normed input: its columns >= d multiply zeros, so real rows give the
 *      source's outputs (q, k, v of real heads, gate and up of real units, router logits, lm_head
 *      logits); the cpu kernels add the extra terms after the real ones in one fma chain, and
 *      adding 0 changes nothing, so these outputs are even bit-identical given the same input.
 *   4. Attention: real query head h < H reads key/value head floor(h / r) < HKV, a real one (the
 *      ratio is kept and real heads come first); head_dim, RoPE and the 1/sqrt(hd) scale are
 *      unchanged, so real heads output the source's values. o_proj's columns of added heads and
 *      its rows >= d (and bias >= d) are zero: the layer adds the source's update to dims < d and
 *      0 to dims >= d. (Qwen3 q/k norms: with s = sqrt(d / D), norm(s q) under eps' = s^2 eps is
 *      s q w / sqrt(s^2 mean + s^2 eps) = norm(q) under eps.)
 *   5. MLP and experts: real units see the source's gate and up (3); added units' outputs meet
 *      zero down_proj columns; down rows >= d are zero. The router logits are the source's (3),
 *      so the same experts are chosen with the same weights (router scales copied); the shared
 *      expert and Qwen2-MoE's shared-expert gate likewise.
 *   6. An inserted layer's output projections are zero, so it adds exactly 0 (finite values times
 *      zero) to every dim, whatever its random attention and routing computed.
 *   7. The final norm (2) and lm_head (3; tied: the embedding, zero beyond d) give the source's
 *      logits.
 * What differs is rounding in the norms (a sum over more terms, a scaled eps and weights):
 * relative logit differences of about 1e-7 (tests/test_pad.c measures them).
 *
 * Output: one F32 model.safetensors (only the tensors the loader binds; md_st_layout's order),
 * config.json with the new sizes (hidden_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, intermediate_size / moe_intermediate_size /
 * shared_expert_intermediate_size; head_dim added when hidden_size / num_attention_heads no
 * longer gives it, for the architectures that read the key; torch_dtype "float32"; rms_norm_eps
 * scaled) and every other key kept, the tokenizer and licence files, and a README.md.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "base/errors.h"
#include "base/fileio.h"
#include "runtime/model.h"
#include "runtime/model_dir.h"

#define RAND_STD 0.02
#define MAX_DIM (1 << 20)   /* any hidden size, head count, width */
#define MAX_LAYERS 65536

moge_pad_params moge_pad_default_params(void) {
    moge_pad_params p = {0};
    return p;
}

/* What fills a tensor outside its block of source values. */
typedef enum { FILL_ZERO, FILL_RANDOM, FILL_SCALE /* 1 + random: norm weights, router scales */ } fill_kind;

typedef struct {
    char name[128];
    int n_dims;                  /* as written: 1 (a vector) or 2 */
    int64_t rows, cols;          /* a vector is 1 x len */
    const tensor *src;           /* source matrix, or NULL */
    const float *src_vec;        /* source vector (the loader's f32 copy), or NULL */
    int64_t src_rows, src_cols;  /* the block [0, src_rows) x [0, src_cols) holds the source */
    double scale;                /* source values times this */
    fill_kind outside;
} pad_tensor;

typedef struct {
    pad_tensor *t;
    int n, cap;
    bool oom;
} pad_list;

/* The stand-in's sizes. */
typedef struct {
    int64_t d, D;         /* hidden */
    int L, L2;            /* layers */
    int H, H2, r, hd;     /* query heads, ratio to key/value heads, head_dim */
    int64_t F, F2, FE, FE2, FS, FS2;
    bool add_head_dim;    /* config.json gets "head_dim" */
} pad_dims;

static pad_tensor *add(pad_list *l, const char *name, int n_dims, int64_t rows, int64_t cols, fill_kind outside) {
    if (l->oom) return NULL;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        pad_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) { l->oom = true; return NULL; }
        l->t = t;
        l->cap = cap;
    }
    pad_tensor *t = &l->t[l->n++];
    *t = (pad_tensor){.n_dims = n_dims, .rows = rows, .cols = cols, .scale = 1.0, .outside = outside};
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

/* A [rows, cols] matrix; src (may be NULL: an inserted layer's) fills its top-left block. */
static void add_mat(pad_list *l, const char *name, int64_t rows, int64_t cols, const tensor *src, double scale, fill_kind outside) {
    pad_tensor *t = add(l, name, 2, rows, cols, outside);
    if (!t || !src) return;
    t->src = src;
    t->src_rows = src->shape[0];
    t->src_cols = src->shape[1];
    t->scale = scale;
}

/* A vector of len (written [len], or [1, len] when the source stores it so); src (src_len values) may be NULL. */
static void add_vec(pad_list *l, const char *name, int n_dims, int64_t len, const float *src, int64_t src_len, double scale,
                    fill_kind outside) {
    pad_tensor *t = add(l, name, n_dims, 1, len, outside);
    if (!t || !src) return;
    t->src_vec = src;
    t->src_rows = 1;
    t->src_cols = src_len;
    t->scale = scale;
}

/* How the source stores a vector: 1 or 2 ([1, len]) dimensions. */
static int vec_dims(const moge_model *m, const char *name) {
    const st_entry *e = st_find(&m->st, name);
    return e && e->n_dims == 2 ? 2 : 1;
}

/* Output layer j's source layer, or -1 for an inserted one. */
static int source_layer(const pad_dims *p, int j) {
    if (p->L == 1) return j == 0 ? 0 : -1;
    for (int i = 0; i < p->L; i++) {
        int pos = (int)(((int64_t)i * (p->L2 - 1) * 2 + (p->L - 1)) / (2 * (p->L - 1))); /* round(i (L'-1) / (L-1)) */
        if (pos == j) return i;
        if (pos > j) break;
    }
    return -1;
}

/* Every tensor of the stand-in, in the loader's order. */
static void plan_tensors(const moge_model *m, const pad_dims *p, pad_list *l) {
    const model_config *c = &m->cfg;
    int64_t D = p->D, Q2 = (int64_t)p->H2 * p->hd, KV2 = (int64_t)(p->H2 / p->r) * p->hd;
    double s = sqrt((double)p->d / (double)p->D), sqk = c->qk_norm ? s : 1.0;
    char name[160], first[160];
    add_mat(l, "model.embed_tokens.weight", c->n_vocab, D, &m->tok_embd, 1.0, FILL_ZERO);
    add_vec(l, "model.norm.weight", 1, D, m->out_norm, p->d, s, FILL_SCALE);
    if (!c->tie_embeddings) add_mat(l, "lm_head.weight", c->n_vocab, D, &m->lm_head, 1.0, FILL_RANDOM);
    bool mixtral = c->arch == ARCH_MIXTRAL;
    const char *moe = mixtral ? "block_sparse_moe" : "mlp";
    for (int j = 0; j < p->L2; j++) {
        int i = source_layer(p, j);
        const layer_weights *w = i >= 0 ? &m->layers[i] : NULL;
#define NAME(...) (snprintf(name, sizeof name, "model.layers.%d.", j), \
                   snprintf(name + strlen(name), sizeof name - strlen(name), __VA_ARGS__), name)
#define FIRST(...) (snprintf(first, sizeof first, "model.layers.0."), \
                    snprintf(first + strlen(first), sizeof first - strlen(first), __VA_ARGS__), first)
        add_vec(l, NAME("input_layernorm.weight"), 1, D, w ? w->attn_norm : NULL, p->d, s, FILL_SCALE);
        add_mat(l, NAME("self_attn.q_proj.weight"), Q2, D, w ? &w->wq : NULL, sqk, FILL_RANDOM);
        add_mat(l, NAME("self_attn.k_proj.weight"), KV2, D, w ? &w->wk : NULL, sqk, FILL_RANDOM);
        add_mat(l, NAME("self_attn.v_proj.weight"), KV2, D, w ? &w->wv : NULL, 1.0, FILL_RANDOM);
        add_mat(l, NAME("self_attn.o_proj.weight"), D, Q2, w ? &w->wo : NULL, 1.0, FILL_ZERO);
        if (c->qkv_bias) {
            add_vec(l, NAME("self_attn.q_proj.bias"), 1, Q2, w ? w->bq : NULL, m->layers[0].wq.shape[0], sqk, FILL_RANDOM);
            add_vec(l, NAME("self_attn.k_proj.bias"), 1, KV2, w ? w->bk : NULL, m->layers[0].wk.shape[0], sqk, FILL_RANDOM);
            add_vec(l, NAME("self_attn.v_proj.bias"), 1, KV2, w ? w->bv : NULL, m->layers[0].wv.shape[0], 1.0, FILL_RANDOM);
        }
        if (c->o_bias) add_vec(l, NAME("self_attn.o_proj.bias"), 1, D, w ? w->bo : NULL, p->d, 1.0, FILL_ZERO);
        if (c->qk_norm) {
            add_vec(l, NAME("self_attn.q_norm.weight"), 1, p->hd, w ? w->q_norm : NULL, p->hd, 1.0, FILL_SCALE);
            add_vec(l, NAME("self_attn.k_norm.weight"), 1, p->hd, w ? w->k_norm : NULL, p->hd, 1.0, FILL_SCALE);
        }
        add_vec(l, NAME("post_attention_layernorm.weight"), 1, D, w ? w->ffn_norm : NULL, p->d, s, FILL_SCALE);
        if (c->n_expert == 0) {
            add_mat(l, NAME("mlp.gate_proj.weight"), p->F2, D, w ? &w->w_gate : NULL, 1.0, FILL_RANDOM);
            add_mat(l, NAME("mlp.up_proj.weight"), p->F2, D, w ? &w->w_up : NULL, 1.0, FILL_RANDOM);
            add_mat(l, NAME("mlp.down_proj.weight"), D, p->F2, w ? &w->w_down : NULL, 1.0, FILL_ZERO);
            continue;
        }
        add_mat(l, NAME("%s.gate.weight", moe), c->n_expert, D, w ? &w->router : NULL, 1.0, FILL_RANDOM);
        if (m->layers[0].router_scale)
            add_vec(l, NAME("mlp.router_scale"), vec_dims(m, FIRST("mlp.router_scale")), c->n_expert, w ? w->router_scale : NULL,
                    c->n_expert, 1.0, FILL_SCALE);
        for (int e = 0; e < c->n_expert; e++) {
            add_mat(l, NAME("%s.experts.%d.%s.weight", moe, e, mixtral ? "w1" : "gate_proj"), p->FE2, D, w ? &w->exp_gate[e] : NULL, 1.0,
                    FILL_RANDOM);
            add_mat(l, NAME("%s.experts.%d.%s.weight", moe, e, mixtral ? "w3" : "up_proj"), p->FE2, D, w ? &w->exp_up[e] : NULL, 1.0,
                    FILL_RANDOM);
            add_mat(l, NAME("%s.experts.%d.%s.weight", moe, e, mixtral ? "w2" : "down_proj"), D, p->FE2, w ? &w->exp_down[e] : NULL, 1.0,
                    FILL_ZERO);
        }
        if (p->FS > 0) {
            add_mat(l, NAME("mlp.shared_expert.gate_proj.weight"), p->FS2, D, w ? &w->sh_gate : NULL, 1.0, FILL_RANDOM);
            add_mat(l, NAME("mlp.shared_expert.up_proj.weight"), p->FS2, D, w ? &w->sh_up : NULL, 1.0, FILL_RANDOM);
            add_mat(l, NAME("mlp.shared_expert.down_proj.weight"), D, p->FS2, w ? &w->sh_down : NULL, 1.0, FILL_ZERO);
            if (c->shared_gate)
                add_vec(l, NAME("mlp.shared_expert_gate.weight"), vec_dims(m, FIRST("mlp.shared_expert_gate.weight")), D,
                        w ? w->sh_gate_w : NULL, p->d, 1.0, FILL_RANDOM);
        }
#undef NAME
#undef FIRST
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the values                                                                                  */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The random stream of one tensor: the seed and its name (FNV-1a), so a tensor's values do not
 * depend on which others are written or in which order. */
static uint64_t tensor_stream(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    uint64_t s = seed ^ h;
    return splitmix64(&s);
}

/* Fills dst[0..n) with the tensor's values outside the source block. */
static void fill(float *dst, int64_t n, fill_kind k, uint64_t *rng) {
    if (k == FILL_ZERO) {
        memset(dst, 0, (size_t)n * sizeof *dst);
        return;
    }
    const float a = (float)(RAND_STD * 1.7320508075688772), base = k == FILL_SCALE ? 1.0f : 0.0f; /* uniform on [-a, a]: std 0.02 */
    for (int64_t i = 0; i < n; i++) {
        float u = (float)(splitmix64(rng) >> 40) * 0x1p-24f; /* [0, 1) */
        dst[i] = base + (2.0f * u - 1.0f) * a;
    }
}

/* Row i of t into dst (t->cols values). */
static void make_row(const pad_tensor *t, int64_t i, float *dst, uint64_t *rng) {
    int64_t c0 = i < t->src_rows ? t->src_cols : 0;
    if (c0) {
        if (t->src) tensor_to_f32(t->src, i * t->src_cols, c0, dst);
        else memcpy(dst, t->src_vec, (size_t)c0 * sizeof *dst);
        if (t->scale != 1.0)
            for (int64_t k = 0; k < c0; k++) dst[k] = (float)((double)dst[k] * t->scale);
    }
    fill(dst + c0, t->cols - c0, t->outside, rng);
}

typedef struct {
    const moge_pad_params *p;
    uint64_t done, total;
    int reported; /* percent */
} progress;

static void progress_add(progress *pg, uint64_t bytes) {
    pg->done += bytes;
    if (!pg->p->progress || pg->total == 0) return;
    int pct = pg->done >= pg->total ? 100 : (int)(100 * pg->done / pg->total);
    if (pct > pg->reported) {
        pg->reported = pct;
        pg->p->progress(pct >= 100 ? 1.0 : (double)pg->done / (double)pg->total, pg->p->progress_user);
    }
}

/* Writes t's values a slab of rows at a time. */
static moge_status write_tensor(FILE *f, const moge_model *m, const pad_tensor *t, uint64_t seed, float *buf, int64_t buf_floats,
                                progress *pg, const char *path, char *err, size_t n) {
    uint64_t rng = tensor_stream(seed, t->name);
    int64_t slab = buf_floats / t->cols;
    moge_status st = MOGE_OK;
    for (int64_t r = 0; st == MOGE_OK && r < t->rows; r += slab) {
        int64_t k = t->rows - r < slab ? t->rows - r : slab;
        for (int64_t i = 0; i < k; i++) make_row(t, r + i, buf + i * t->cols, &rng);
        size_t bytes = (size_t)(k * t->cols) * sizeof(float);
        st = md_write_bytes(f, buf, bytes, path, err, n);
        progress_add(pg, bytes);
    }
    if (t->src) { /* read once: keeps the memory of a large source bounded */
        const st_entry *e = st_find(&m->st, t->src->name);
        if (e) st_release(e);
    }
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* checks, config.json, README.md                                                              */

/* Appends to a fixed buffer. */
static void cat(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* Architectures whose Hugging Face code computes head_dim as hidden_size / num_attention_heads
 * (it ignores a "head_dim" key). */
static bool derives_head_dim(model_arch a) { return a == ARCH_PANGU_MOE || a == ARCH_QWEN2 || a == ARCH_QWEN2_MOE; }

/* One requested size: 0 keeps the source's; smaller or absurd ones are errors naming the flag. */
static moge_status pick(int64_t want, int64_t have, int64_t max, const char *what, const char *flag, const char *key, const char *cfg,
                        int64_t *out, char *err, size_t n) {
    if (want == 0) want = have;
    if (want < have)
        return set_err(err, n, MOGE_ERR_ARG, "%s %lld (%s) is smaller than the source's %s %lld (%s)", what, (long long)want, flag, key,
                       (long long)have, cfg);
    if (want > max) return set_err(err, n, MOGE_ERR_ARG, "%s %lld (%s) is larger than %lld", what, (long long)want, flag, (long long)max);
    *out = want;
    return MOGE_OK;
}

static moge_status check_dims(const moge_model *m, const moge_pad_params *p, const char *cfg, bool has_head_dim, pad_dims *o, char *err,
                              size_t n) {
    const model_config *c = &m->cfg;
    const char *arch = c->architecture;
    moge_status st;
    int64_t v;
    memset(o, 0, sizeof *o);
    if (p->hidden < 0 || p->layers < 0 || p->heads < 0 || p->ff < 0 || p->ff_expert < 0 || p->ff_shared < 0)
        return set_err(err, n, MOGE_ERR_ARG, "moge_pad_model: sizes must not be negative (0 keeps the source's)");
    if (c->n_expert == 0 && (p->ff_expert || p->ff_shared))
        return set_err(err, n, MOGE_ERR_ARG, "%s: the source (%s, %s) is a dense model without experts; --ff sets its MLP's width",
                       p->ff_expert ? "--ff-expert (expert width)" : "--ff-shared (shared-expert width)", arch, cfg);
    if (c->n_expert > 0 && p->ff)
        return set_err(err, n, MOGE_ERR_ARG,
                       "--ff (MLP width): the source (%s, %s) is a MoE model without a dense MLP; --ff-expert and --ff-shared set its experts' widths",
                       arch, cfg);
    if (c->n_expert > 0 && c->n_ff_shared == 0 && p->ff_shared)
        return set_err(err, n, MOGE_ERR_ARG, "--ff-shared (shared-expert width): the source (%s, %s) has no shared expert", arch, cfg);
    o->d = c->n_embd;
    o->L = c->n_layer;
    o->H = c->n_head;
    o->r = c->n_head / c->n_head_kv;
    o->hd = c->head_dim;
    if ((st = pick(p->hidden, c->n_embd, MAX_DIM, "hidden size", "--hidden", "hidden_size", cfg, &o->D, err, n)) != MOGE_OK) return st;
    if ((st = pick(p->layers, c->n_layer, MAX_LAYERS, "layer count", "--layers", "num_hidden_layers", cfg, &v, err, n)) != MOGE_OK) return st;
    o->L2 = (int)v;
    if ((st = pick(p->heads, c->n_head, MAX_DIM / c->head_dim, "head count", "--heads", "num_attention_heads", cfg, &v, err, n)) != MOGE_OK)
        return st;
    o->H2 = (int)v;
    if (o->H2 % o->r != 0)
        return set_err(err, n, MOGE_ERR_ARG,
                       "head count %d (--heads) is not a multiple of %d, the source's ratio of num_attention_heads %d to num_key_value_heads %d "
                       "(%s): key/value heads keep that ratio",
                       o->H2, o->r, c->n_head, c->n_head_kv, cfg);
    int64_t Q2 = (int64_t)o->H2 * o->hd;
    if (o->D != Q2) {
        if (derives_head_dim(c->arch) && o->d == (int64_t)o->H * o->hd) {
            char hint[160] = "";
            if (o->D % o->hd == 0 && (o->D / o->hd) % o->r == 0)
                snprintf(hint, sizeof hint, "; --heads %lld fits --hidden %lld", (long long)(o->D / o->hd), (long long)o->D);
            cat(hint, sizeof hint, "; --hidden %lld fits --heads %d", (long long)Q2, o->H2);
            return set_err(err, n, MOGE_ERR_ARG,
                           "hidden size %lld (--hidden) must equal head count %d (--heads) x head_dim %d = %lld for %s, which computes head_dim "
                           "as hidden_size / num_attention_heads%s",
                           (long long)o->D, o->H2, o->hd, (long long)Q2, arch, hint);
        }
        o->add_head_dim = !has_head_dim;
    }
    if (c->n_expert == 0) {
        o->F = c->n_ff;
        if ((st = pick(p->ff, c->n_ff, MAX_DIM, "MLP width", "--ff", "intermediate_size", cfg, &o->F2, err, n)) != MOGE_OK) return st;
    } else {
        o->FE = c->n_ff_expert;
        o->FS = c->n_ff_shared;
        const char *ekey = c->arch == ARCH_MIXTRAL ? "intermediate_size" : "moe_intermediate_size";
        if ((st = pick(p->ff_expert, o->FE, MAX_DIM, "expert width", "--ff-expert", ekey, cfg, &o->FE2, err, n)) != MOGE_OK) return st;
        if ((st = pick(p->ff_shared, o->FS, MAX_DIM, "shared-expert width", "--ff-shared", "shared_expert_intermediate_size", cfg, &o->FS2, err,
                       n)) != MOGE_OK)
            return st;
    }
    return MOGE_OK;
}

/* Sets key to v, in place when present. */
static bool set_number(cJSON *root, const char *key, double v) {
    cJSON *num = cJSON_CreateNumber(v);
    if (!num) return false;
    if (cJSON_GetObjectItemCaseSensitive(root, key)) return cJSON_ReplaceItemInObjectCaseSensitive(root, key, num);
    if (cJSON_AddItemToObject(root, key, num)) return true;
    cJSON_Delete(num);
    return false;
}

typedef struct {
    const pad_dims *d;
    const model_config *c;
} config_sizes;

static moge_status set_sizes(cJSON *root, const char *config_path, void *user, char *err, size_t n) {
    const config_sizes *cs = user;
    const pad_dims *p = cs->d;
    const model_config *c = cs->c;
    bool ok = set_number(root, "hidden_size", (double)p->D) && set_number(root, "num_hidden_layers", p->L2) &&
              set_number(root, "num_attention_heads", p->H2);
    if (ok && cJSON_GetObjectItemCaseSensitive(root, "num_key_value_heads")) ok = set_number(root, "num_key_value_heads", p->H2 / p->r);
    if (ok && p->add_head_dim) ok = set_number(root, "head_dim", p->hd);
    if (ok && c->n_expert == 0) ok = set_number(root, "intermediate_size", (double)p->F2);
    if (ok && c->n_expert > 0)
        ok = set_number(root, c->arch == ARCH_MIXTRAL ? "intermediate_size" : "moe_intermediate_size", (double)p->FE2) &&
             (p->FS == 0 || set_number(root, "shared_expert_intermediate_size", (double)p->FS2));
    if (ok && p->D != p->d) {
        /* the loader's value, read as a double (config_load keeps a float), or its default */
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "rms_norm_eps");
        double eps = cJSON_IsNumber(e) ? e->valuedouble : 1e-6;
        ok = set_number(root, "rms_norm_eps", eps * (double)p->d / (double)p->D);
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (ok && dt && !(cJSON_IsString(dt) && !strcmp(dt->valuestring, "float32"))) {
        cJSON *s = cJSON_CreateString("float32");
        ok = s && cJSON_ReplaceItemInObjectCaseSensitive(root, "torch_dtype", s);
    }
    return ok ? MOGE_OK : set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing %s", config_path);
}

static char *readme_text(const char *in_dir, const char *out_dir, const moge_model *m, const pad_dims *p, uint64_t seed, uint64_t bytes) {
    const model_config *c = &m->cfg;
    size_t cap = 8192;
    char *t = calloc(cap, 1), cmd[1024] = "";
    if (!t) return NULL;
    const char *base = strrchr(out_dir, '/');
    cat(cmd, sizeof cmd, "moge pad -m %s -o %s --hidden %lld --layers %d --heads %d", in_dir, out_dir, (long long)p->D, p->L2, p->H2);
    if (c->n_expert == 0) cat(cmd, sizeof cmd, " --ff %lld", (long long)p->F2);
    else cat(cmd, sizeof cmd, " --ff-expert %lld", (long long)p->FE2);
    if (p->FS > 0) cat(cmd, sizeof cmd, " --ff-shared %lld", (long long)p->FS2);
    cat(cmd, sizeof cmd, " --seed %llu", (unsigned long long)seed);
    cat(t, cap, "# %s: a stand-in, not a trained model\n\n", base ? base + 1 : out_dir);
    cat(t, cap,
        "`moge pad` made this directory from `%s` (%s).\nIt computes the same function as that model (the same\n"
        "logits up to float rounding, the same greedy text) at the memory cost of its own size: %.1f MB of F32\n"
        "weights. It exists to measure memory-bound decoding (speculative decoding, kernels) with a real\n"
        "model's text. Its weights carry the source's licence.\n\n",
        in_dir, c->architecture, (double)bytes / 1e6);
    cat(t, cap, "| | source | stand-in |\n|---|---:|---:|\n");
    cat(t, cap, "| hidden_size | %lld | %lld |\n| num_hidden_layers | %d | %d |\n", (long long)p->d, (long long)p->D, p->L, p->L2);
    cat(t, cap, "| num_attention_heads / num_key_value_heads | %d / %d | %d / %d |\n| head_dim | %d | %d |\n", p->H, p->H / p->r, p->H2,
        p->H2 / p->r, p->hd, p->hd);
    if (c->n_expert == 0) cat(t, cap, "| intermediate_size | %lld | %lld |\n", (long long)p->F, (long long)p->F2);
    else cat(t, cap, "| expert width (%d experts, %d per token) | %lld | %lld |\n", c->n_expert, c->n_expert_used, (long long)p->FE,
             (long long)p->FE2);
    if (p->FS > 0) cat(t, cap, "| shared_expert_intermediate_size | %lld | %lld |\n", (long long)p->FS, (long long)p->FS2);
    cat(t, cap, "\nMade with `%s`.\n\n", cmd);
    cat(t, cap,
        "Construction (runtime/pad.c): the added hidden dims, heads, intermediate units and layers come after the\n"
        "real ones; whatever would write into the residual's added dims, or from an added head or unit into it,\n"
        "is zero (so are the output projections of the inserted layers); every other added weight is random\n"
        "(seed %llu); rms_norm_eps is scaled by %lld/%lld and the real dims' norm weights by its square root.\n",
        (unsigned long long)seed, (long long)p->d, (long long)p->D);
    return t;
}

/* ------------------------------------------------------------------------------------------ */

moge_status moge_pad_model(const char *in_dir, const char *out_dir, const moge_pad_params *params, char *err, size_t n) {
    moge_pad_params pp = params ? *params : moge_pad_default_params();
    if (!in_dir || !out_dir || !in_dir[0] || !out_dir[0])
        return set_err(err, n, MOGE_ERR_ARG, "moge_pad_model: in_dir and out_dir must not be NULL or empty");
    char cfg[MD_PATH_CAP], path[MD_PATH_CAP];
    if (!md_join(cfg, in_dir, "/config.json")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", in_dir);
    md_out o;
    moge_status st = md_out_check(&o, in_dir, out_dir, pp.overwrite, err, n);
    if (st != MOGE_OK) return st;

    moge_model_params mp = moge_model_default_params();
    mp.backend = MOGE_BACKEND_REF; /* only the weight views (and the vectors' f32 copies) are used */
    mp.n_threads = 1;
    moge_model *m = NULL;
    st = moge_model_load(in_dir, &mp, &m, err, n);
    if (st != MOGE_OK) return st;
    if (m->prequantized) {
        st = set_err(err, n, MOGE_ERR_ARG, "%s: pre-quantized (%s); pad the original weights", in_dir, quant_format_name(m->quant));
        moge_model_free(m);
        return st;
    }
    /* does config.json give head_dim itself? */
    bool has_head_dim = false;
    {
        char *text = NULL;
        size_t len = 0;
        if (read_whole_file(cfg, &text, &len, err, n) == MOGE_OK) {
            cJSON *root = cJSON_ParseWithLength(text, len);
            has_head_dim = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "head_dim"));
            cJSON_Delete(root);
        }
        free(text);
    }
    pad_dims d;
    pad_list l = {0};
    md_tensor *w = NULL;
    md_st_header h = {0};
    float *buf = NULL;
    st = check_dims(m, &pp, cfg, has_head_dim, &d, err, n);
    if (st == MOGE_OK) {
        plan_tensors(m, &d, &l);
        w = l.oom ? NULL : calloc((size_t)l.n, sizeof *w);
        if (!w) st = set_err(err, n, MOGE_ERR_NOMEM, "out of memory planning %s", o.out);
    }
    int64_t max_cols = 1;
    for (int i = 0; st == MOGE_OK && i < l.n; i++) {
        const pad_tensor *t = &l.t[i];
        w[i] = (md_tensor){.name = t->name, .dtype = "F32", .n_dims = t->n_dims, .index = i,
                           .nbytes = (uint64_t)t->rows * (uint64_t)t->cols * sizeof(float)};
        if (t->n_dims == 1) w[i].shape[0] = t->cols;
        else { w[i].shape[0] = t->rows; w[i].shape[1] = t->cols; }
        if (t->cols > max_cols) max_cols = t->cols;
    }
    const char *meta[] = {"format", "pt", NULL};
    if (st == MOGE_OK) st = md_st_layout(w, l.n, meta, &h, err, n);
    int64_t buf_floats = max_cols > (1 << 20) ? max_cols : (1 << 20);
    if (st == MOGE_OK && !(buf = malloc((size_t)buf_floats * sizeof *buf)))
        st = set_err(err, n, MOGE_ERR_NOMEM, "out of memory padding %s", in_dir);
    if (st == MOGE_OK) st = md_out_make_tmp(&o, err, n);
    if (st == MOGE_OK) {
        struct statvfs vfs;
        uint64_t need = 8 + h.header_len + h.data_bytes + (1u << 20);
        if (statvfs(o.tmp, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < need)
            st = set_err(err, n, MOGE_ERR_IO, "%s: the stand-in needs %.2f GB, its file system has %.2f GB free", o.out, (double)need / 1e9,
                         (double)vfs.f_bavail * vfs.f_frsize / 1e9);
    }
    if (st == MOGE_OK && (st = md_out_path(&o, "model.safetensors", path, err, n)) == MOGE_OK) {
        FILE *f;
        st = md_st_begin(path, &h, &f, err, n);
        if (st == MOGE_OK) {
            progress pg = {.p = &pp, .total = h.data_bytes};
            for (int i = 0; st == MOGE_OK && i < l.n; i++) st = write_tensor(f, m, &l.t[w[i].index], pp.seed, buf, buf_floats, &pg, path, err, n);
            if (st == MOGE_OK) st = md_close_file(f, path, err, n);
            else fclose(f); /* the first error is the one to report */
        }
    }
    config_sizes cs = {.d = &d, .c = &m->cfg};
    if (st == MOGE_OK && (st = md_out_path(&o, "config.json", path, err, n)) == MOGE_OK)
        st = md_write_config(in_dir, path, set_sizes, &cs, err, n);
    int32_t copied = 0;
    if (st == MOGE_OK) st = md_copy_side_files(in_dir, o.tmp, true, &copied, err, n);
    if (st == MOGE_OK && (st = md_out_path(&o, "README.md", path, err, n)) == MOGE_OK) {
        char *text = readme_text(in_dir, o.out, m, &d, pp.seed, h.data_bytes);
        st = text ? md_write_text(path, text, err, n) : set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing %s", path);
        free(text);
    }
    moge_model_free(m);
    free(l.t);
    free(w);
    free(buf);
    md_st_header_free(&h);
    return md_out_finish(&o, st, &mp, err, n);
}
