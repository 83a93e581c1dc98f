/*
 * draft_model.c — the model drafters: a separate draft model with the target's vocabulary, or the
 * target's own first layers (layer-skip self-draft). Both keep a KV cache of their own, grow the
 * tree one level per batched forward (`extend` batches with a tree mask), and keep in their
 * cache exactly the tokens the target accepted.
 *
 * Rows of the draft context during one proposal: pending tokens (accepted earlier but never run
 * through the draft, e.g. an accepted leaf), then the root, then the tree levels.
 *
 * A drafter made for n_seq sequences (the *_seqs constructors, for a decoder) keeps each
 * sequence's cache in its own sequence of one draft context, and proposes for several sequences
 * at once: one draft forward for every sequence's root, then one per tree level for all of them.
 * A sequence's tree is the one it would get alone (the draft's kernels are batch-invariant too).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draft/drafter.h"
#include "base/errors.h"
#include "runtime/model.h"
#include "sampling/sampling.h"

#define DRAFT_BATCH 64 /* the most rows one sequence's proposal puts in the draft's cache */
#define MAX_BRANCH 16
#define DRAFT_PASS_ROWS 1024 /* the most rows of one draft forward (sequences batched together) */

/* One sequence's state. */
typedef struct {
    int32_t *cached;    /* (n_ctx) the tokens in the draft's committed cache */
    int32_t n_cached;
    int32_t n_pending;  /* rows 0..n_pending-1 of the current proposal: pending tokens; then the root */
    int32_t pending[DRAFT_BATCH];
    int32_t row_of[DRAFT_BATCH + 1];     /* draft row of each tree node, -1 if never forwarded */
    float *q;           /* (DRAFT_BATCH, V) distributions children were drawn from (sampled mode), made on first use */
    float *logits;      /* (DRAFT_BATCH, V) logits of the frontier */
    uint64_t rng;
} md_seq;

typedef struct {
    moge_model *view;   /* owned layer-skip view, or NULL */
    moge_context *ctx;  /* n_seq sequences */
    int32_t V, n_ctx, n_seq, n_batch;
    md_seq *seq;        /* (n_seq) */
    float *probs;       /* (V) */
    int32_t *idx;       /* (V) */
    int32_t *tok, *par, *sid; /* (n_batch) a batched forward's rows */
} model_drafter;

static void md_free(void *self) {
    model_drafter *d = self;
    if (!d) return;
    moge_context_free(d->ctx);
    moge_model_free(d->view);
    for (int32_t s = 0; d->seq && s < d->n_seq; s++) {
        free(d->seq[s].cached);
        free(d->seq[s].q);
        free(d->seq[s].logits);
    }
    free(d->seq); free(d->probs); free(d->idx); free(d->tok); free(d->par); free(d->sid);
    free(d);
}

static void md_reset_seq(void *self, int32_t seq) {
    model_drafter *d = self;
    if (seq < 0 || seq >= d->n_seq) return;
    moge_seq_kv_truncate(d->ctx, seq, 0);
    d->seq[seq].n_cached = 0;
    d->seq[seq].row_of[0] = -1;
}

static void md_reset(void *self) { md_reset_seq(self, 0); }

/* The k best tokens of logits (descending, ties to the lower id) with their log-softmax. */
static int top_k_logprobs(const float *logits, int32_t V, int k, int32_t *tok, float *lp) {
    float maxl = logits[sampling_argmax(logits, V)];
    double sum = 0;
    for (int32_t i = 0; i < V; i++) sum += exp((double)logits[i] - maxl);
    double lse = maxl + log(sum);
    int n = 0;
    for (int j = 0; j < k && j < V; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < V; i++) {
            int used = 0;
            for (int u = 0; u < n; u++) if (tok[u] == i) { used = 1; break; }
            if (!used && (best < 0 || logits[i] > logits[best])) best = i;
        }
        tok[n] = best;
        lp[n++] = (float)(logits[best] - lse);
    }
    return n;
}

/* Draws k distinct tokens from q in order (each from q without the earlier draws). */
static int draw_without_replacement(const float *q, int32_t V, int k, uint64_t *rng, int32_t *tok, float *lp) {
    int n = 0;
    double removed = 0;
    for (int j = 0; j < k; j++) {
        double rest = 1.0 - removed;
        if (rest <= 1e-9) break;
        double coin = rng_uniform(rng) * rest, cum = 0;
        int32_t pick = -1;
        for (int32_t i = 0; i < V; i++) {
            int used = 0;
            for (int u = 0; u < n; u++) if (tok[u] == i) { used = 1; break; }
            if (used || q[i] <= 0) continue;
            cum += q[i];
            pick = i;
            if (coin < cum) break;
        }
        if (pick < 0) break;
        tok[n] = pick;
        lp[n++] = logf(q[pick]);
        removed += q[pick];
    }
    return n;
}

typedef struct { int32_t parent, token; float score; } cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
    return x->token < y->token ? -1 : 1;
}

/* One sequence's proposal in progress: the level loop of md_propose_seqs, one level at a time. */
typedef struct {
    moge_draft_job *job;
    md_seq *q;
    int32_t seq, depth, budget, n_front, n_rows, n_new;
    int32_t frontier[DRAFT_BATCH], new_nodes[DRAFT_BATCH];
    bool sampled, active;
    float min_lp;
    moge_sampler_params qp;
} md_work;

/* Syncs sequence w->seq's cache with the history: keeps the common prefix and catches up on the
 * rest in chunks of its own forwards, leaving q->n_pending rows. False: the draft's context is
 * full; *st an error. */
static bool md_sync(model_drafter *d, md_work *w, moge_status *st) {
    md_seq *q = w->q;
    const int32_t *history = w->job->history;
    int32_t n_history = w->job->n_history, common = 0;
    const float *lg;
    while (common < q->n_cached && common < n_history && q->cached[common] == history[common]) common++;
    if (common < q->n_cached) {
        moge_seq_kv_truncate(d->ctx, w->seq, common);
        q->n_cached = common;
    }
    int32_t sid[DRAFT_BATCH];
    for (int i = 0; i < DRAFT_BATCH; i++) sid[i] = w->seq;
    while (n_history - q->n_cached > DRAFT_BATCH / 2) { /* catch up in chunks, keeping room for the tree */
        int32_t chunk = n_history - q->n_cached - DRAFT_BATCH / 2;
        if (chunk > DRAFT_BATCH) chunk = DRAFT_BATCH;
        if (q->n_cached + chunk > d->n_ctx) return false; /* the draft's context is full: no proposal */
        moge_batch b = {.n = chunk, .tokens = history + q->n_cached, .seq = sid, .logits_last_only = true};
        if ((*st = moge_forward(d->ctx, &b, &lg)) != MOGE_OK || (*st = moge_seq_kv_commit(d->ctx, w->seq, NULL, chunk)) != MOGE_OK)
            return false;
        memcpy(q->cached + q->n_cached, history + q->n_cached, (size_t)chunk * sizeof(int32_t));
        q->n_cached += chunk;
    }
    q->n_pending = n_history - q->n_cached;
    return true;
}

/* Syncs sequence w->seq's cache with the history (md_sync) and sets up the proposal. False: no
 * proposal (the draft's context is full); *st an error. */
static bool md_begin(model_drafter *d, md_work *w, moge_status *st) {
    moge_draft_job *job = w->job;
    md_seq *q = w->q;
    *st = MOGE_OK;
    q->row_of[0] = -1;
    if (!md_sync(d, w, st)) return false;
    int32_t room = d->n_ctx - q->n_cached - q->n_pending - 1; /* slots left for tree nodes */
    if (room < 0) return false;
    memcpy(q->pending, job->history + q->n_cached, (size_t)q->n_pending * sizeof(int32_t));
    moge_tree *tree = job->tree;
    const moge_draft_params *dp = job->dp;
    for (int i = 0; i < tree->cap && i <= DRAFT_BATCH; i++) q->row_of[i] = -1;
    q->row_of[0] = q->n_pending;
    w->n_rows = q->n_pending + 1;
    w->budget = dp->tree_nodes;
    if (w->budget > tree->cap - 1) w->budget = tree->cap - 1;
    if (w->budget > DRAFT_BATCH - w->n_rows) w->budget = DRAFT_BATCH - w->n_rows;
    if (w->budget > room) w->budget = room;
    w->sampled = dp->sampled && job->sp->temperature > 0.0f;
    tree->sampled = w->sampled;
    tree->without_replacement = w->sampled;
    if (w->sampled && !q->q && !(q->q = malloc((size_t)DRAFT_BATCH * d->V * sizeof(float)))) {
        *st = MOGE_ERR_NOMEM;
        return false;
    }
    w->qp = *job->sp;
    w->qp.repeat_penalty = 1.0f; /* any q is lossless; keep the draft's cheap */
    w->min_lp = dp->min_path_prob > 0 ? logf(dp->min_path_prob) : -INFINITY;
    w->n_front = 1;
    w->frontier[0] = 0;
    w->depth = 0;
    return true;
}

/* The candidate children of the frontier's nodes (whose logits are in q->logits): per node its k
 * most probable tokens, or k drawn without replacement when sampled (its q recorded in the
 * tree); their count in cands. */
static int md_candidates(model_drafter *d, md_work *w, int k, cand *cands) {
    moge_tree *tree = w->job->tree;
    md_seq *q = w->q;
    int nc = 0;
    for (int f = 0; f < w->n_front; f++) {
        int32_t node = w->frontier[f], toks[MAX_BRANCH];
        float lps[MAX_BRANCH];
        const float *nl = q->logits + (int64_t)f * d->V;
        int got;
        if (w->sampled) {
            float *qd = q->q + (int64_t)(q->row_of[node] - q->n_pending) * d->V;
            sampling_probs(nl, d->V, &w->qp, NULL, 0, qd, d->idx);
            tree->q[node] = qd;
            got = draw_without_replacement(qd, d->V, k, &q->rng, toks, lps);
        } else {
            got = top_k_logprobs(nl, d->V, k, toks, lps);
        }
        for (int j = 0; j < got; j++) cands[nc++] = (cand){node, toks[j], tree->logp[node] + lps[j]};
    }
    return nc;
}

/* Grows one level from the frontier (whose logits are in q->logits); w->n_new nodes to forward
 * (0: the proposal is complete). */
static void md_level(model_drafter *d, md_work *w) {
    moge_tree *tree = w->job->tree;
    const moge_draft_params *dp = w->job->dp;
    w->n_new = 0;
    if (w->depth >= dp->draft_max || w->budget <= 0 || w->n_front <= 0) return;
    int k = dp->shape ? (w->depth < dp->n_shape ? dp->shape[w->depth] : 0) : dp->branch;
    if (k > MAX_BRANCH) k = MAX_BRANCH;
    if (k < 1) return;
    cand cands[DRAFT_BATCH * MAX_BRANCH];
    int nc = md_candidates(d, w, k, cands);
    /* Static shapes and sampled children keep every candidate (parents' draws in order);
     * dynamic trees keep the `branch` most probable paths of this level. */
    int keep = nc;
    if (!dp->shape && !w->sampled) {
        qsort(cands, (size_t)nc, sizeof *cands, cmp_cand);
        if (keep > dp->branch) keep = dp->branch;
        /* a budget too small for `branch` nodes on every level is shared out over the levels
         * left (at least one each), so a small tree still goes deep: 4 nodes make a chain of
         * 4, not 4 siblings (a depth-1 tree accepts at most 1 token) */
        int left = dp->draft_max - w->depth, fair = (w->budget + left - 1) / left;
        if (keep > fair) keep = fair;
    }
    if (keep > w->budget) keep = w->budget;
    int n_new = 0;
    for (int c = 0; c < keep; c++) {
        if (cands[c].score < w->min_lp) {
            if (!dp->shape && !w->sampled) break; /* sorted: the rest are less probable still */
            continue;
        }
        int32_t id = moge_tree_add(tree, cands[c].parent, cands[c].token, cands[c].score);
        if (id < 0) break;
        w->new_nodes[n_new++] = id;
    }
    w->budget -= n_new;
    w->depth++;
    /* forward the new level to get its children's distributions, unless nothing follows it */
    if (n_new == 0 || w->depth >= dp->draft_max || w->budget == 0) return;
    w->n_new = n_new;
}

/* Runs the rows of works[0..n) (each a run of its sequence) in forwards of at most n_batch rows
 * and copies each run's logits to its sequence's logits buffer. level0: each work's pending rows
 * and root (logits of the root only); else its new level (extending the uncommitted rows). */
static moge_status md_forward(model_drafter *d, md_work *works, int32_t n, bool level0) {
    int32_t first = 0;
    while (first < n) {
        int32_t rows = 0, last = first;
        for (; last < n; last++) {
            md_work *w = &works[last];
            int32_t r = level0 ? w->q->n_pending + 1 : w->n_new;
            if (rows + r > d->n_batch && last > first) break;
            const moge_tree *tree = w->job->tree;
            for (int32_t i = 0; i < r; i++) {
                if (level0) {
                    d->tok[rows + i] = i < w->q->n_pending ? w->q->pending[i] : tree->token[0];
                    d->par[rows + i] = i - 1;
                } else {
                    int32_t node = w->new_nodes[i];
                    d->tok[rows + i] = tree->token[node];
                    d->par[rows + i] = w->q->row_of[tree->parent[node]];
                    w->q->row_of[node] = w->n_rows + i;
                }
                d->sid[rows + i] = w->seq;
            }
            rows += r;
        }
        const float *lg;
        moge_batch b = {.n = rows, .tokens = d->tok, .parent = d->par, .seq = d->sid, .logits_last_only = level0, .extend = !level0};
        moge_status st = moge_forward(d->ctx, &b, &lg);
        if (st != MOGE_OK) return st;
        for (int32_t k = first, off = 0; k < last; k++) {
            md_work *w = &works[k];
            int32_t r = level0 ? 1 : w->n_new;
            memcpy(w->q->logits, lg + (int64_t)off * d->V, (size_t)r * d->V * sizeof(float));
            off += r;
            if (!level0) {
                w->n_rows += w->n_new;
                memcpy(w->frontier, w->new_nodes, (size_t)w->n_new * sizeof(int32_t));
                w->n_front = w->n_new;
            }
        }
        first = last;
    }
    return MOGE_OK;
}

static moge_status md_propose_seqs(void *self, moge_draft_job *jobs, int32_t n_jobs) {
    model_drafter *d = self;
    md_work *works = malloc((size_t)(n_jobs > 0 ? n_jobs : 1) * sizeof *works);
    if (!works) return MOGE_ERR_NOMEM;
    int32_t n = 0;
    moge_status st = MOGE_OK;
    for (int32_t j = 0; j < n_jobs; j++) {
        jobs[j].status = MOGE_OK;
        if (jobs[j].seq < 0 || jobs[j].seq >= d->n_seq) {
            jobs[j].status = MOGE_ERR_ARG;
            continue;
        }
        for (int32_t k = 0; k < n; k++)
            if (works[k].seq == jobs[j].seq) jobs[j].status = MOGE_ERR_ARG; /* a sequence twice */
        if (jobs[j].status != MOGE_OK) continue;
        md_work *w = &works[n];
        w->job = &jobs[j];
        w->seq = jobs[j].seq;
        w->q = &d->seq[w->seq];
        if (md_begin(d, w, &jobs[j].status)) n++;
    }
    if (n > 0) st = md_forward(d, works, n, true);
    while (st == MOGE_OK && n > 0) {
        int32_t m = 0;
        for (int32_t k = 0; k < n; k++) { /* the sequences that grow another level stay */
            md_level(d, &works[k]);
            if (works[k].n_new > 0) works[m++] = works[k];
        }
        n = m;
        if (n > 0) st = md_forward(d, works, n, false);
    }
    free(works);
    if (st != MOGE_OK) return st;
    for (int32_t j = 0; j < n_jobs; j++)
        if (jobs[j].status != MOGE_OK) return jobs[j].status;
    return MOGE_OK;
}

static moge_status md_propose(void *self, const int32_t *history, int32_t n_history, const moge_draft_params *dp,
                              const moge_sampler_params *sp, moge_tree *tree) {
    moge_draft_job job = {.seq = 0, .history = history, .n_history = n_history, .dp = dp, .sp = sp, .tree = tree};
    return md_propose_seqs(self, &job, 1);
}

static moge_status md_accept_seq(void *self, int32_t seq, const moge_tree *tree, const int32_t *path, int32_t n_path) {
    model_drafter *d = self;
    if (seq < 0 || seq >= d->n_seq) return MOGE_ERR_ARG;
    md_seq *q = &d->seq[seq];
    if (q->row_of[0] < 0) return MOGE_OK; /* nothing was proposed */
    int32_t rows[DRAFT_BATCH + 1], n = 0;
    for (int i = 0; i < q->n_pending; i++) {
        rows[n++] = i;
        q->cached[q->n_cached++] = q->pending[i];
    }
    for (int i = 0; i < n_path && path[i] < tree->n && path[i] <= DRAFT_BATCH && q->row_of[path[i]] >= 0; i++) {
        rows[n++] = q->row_of[path[i]];
        q->cached[q->n_cached++] = tree->token[path[i]];
    }
    q->row_of[0] = -1;
    return moge_seq_kv_commit(d->ctx, seq, rows, n);
}

static moge_status md_accept(void *self, const moge_tree *tree, const int32_t *path, int32_t n_path) {
    return md_accept_seq(self, 0, tree, path, n_path);
}

static int32_t md_n_seq(void *self) { return ((model_drafter *)self)->n_seq; }

static moge_status md_new(moge_model *model, moge_model *view, int32_t n_ctx, int32_t n_seq, moge_drafter **out, char *err, size_t n) {
    model_drafter *d = calloc(1, sizeof *d);
    if (!d) { moge_model_free(view); return set_err(err, n, MOGE_ERR_NOMEM, "out of memory"); }
    d->view = view;
    if (n_seq < 1) n_seq = 1;
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq = n_seq;
    cp.n_batch = (int64_t)n_seq * DRAFT_BATCH < DRAFT_PASS_ROWS ? n_seq * DRAFT_BATCH : DRAFT_PASS_ROWS;
    moge_status st = moge_context_new(view ? view : model, &cp, &d->ctx, err, n);
    if (st != MOGE_OK) { md_free(d); return st; }
    moge_model_info in;
    moge_model_get_info(view ? view : model, &in);
    d->V = in.n_vocab;
    d->n_ctx = moge_context_n_ctx(d->ctx);
    d->n_seq = n_seq;
    d->n_batch = moge_context_n_batch(d->ctx);
    d->seq = calloc((size_t)n_seq, sizeof *d->seq);
    d->probs = malloc((size_t)d->V * sizeof(float));
    d->idx = malloc((size_t)d->V * sizeof(int32_t));
    d->tok = malloc((size_t)d->n_batch * sizeof(int32_t));
    d->par = malloc((size_t)d->n_batch * sizeof(int32_t));
    d->sid = malloc((size_t)d->n_batch * sizeof(int32_t));
    bool ok = d->seq && d->probs && d->idx && d->tok && d->par && d->sid;
    for (int32_t s = 0; ok && s < n_seq; s++) {
        md_seq *q = &d->seq[s];
        q->cached = malloc((size_t)d->n_ctx * sizeof(int32_t));
        q->logits = malloc((size_t)DRAFT_BATCH * d->V * sizeof(float));
        q->rng = 0x5eed5eedull;
        q->row_of[0] = -1;
        ok = q->cached && q->logits;
    }
    if (!ok) { md_free(d); return set_err(err, n, MOGE_ERR_NOMEM, "out of memory"); }
    static const moge_drafter_iface iface = {.propose = md_propose, .accept = md_accept, .reset = md_reset, .free = md_free,
                                             .n_seq = md_n_seq, .propose_seqs = md_propose_seqs, .accept_seq = md_accept_seq,
                                             .reset_seq = md_reset_seq};
    st = moge_drafter_new_custom(&iface, d, out);
    if (st != MOGE_OK) { md_free(d); return set_err(err, n, st, "out of memory"); }
    return MOGE_OK;
}

moge_status moge_drafter_new_model(moge_model *draft, const moge_tokenizer *target_tok, const moge_tokenizer *draft_tok,
                                   int32_t n_ctx, moge_drafter **out, char *err, size_t n) {
    return moge_drafter_new_model_seqs(draft, target_tok, draft_tok, n_ctx, 1, out, err, n);
}

moge_status moge_drafter_new_model_seqs(moge_model *draft, const moge_tokenizer *target_tok, const moge_tokenizer *draft_tok,
                                        int32_t n_ctx, int32_t n_seq, moge_drafter **out, char *err, size_t n) {
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_model: out must not be NULL");
    *out = NULL;
    if (!draft || !target_tok || !draft_tok) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_model: NULL argument");
    int32_t nv_t = moge_tokenizer_n_vocab(target_tok), nv_d = moge_tokenizer_n_vocab(draft_tok);
    if (nv_t != nv_d)
        return set_err(err, n, MOGE_ERR_ARG, "the draft's tokenizer differs from the target's: %d tokens vs %d", nv_d, nv_t);
    for (int32_t i = 0; i < nv_t; i++) {
        const char *a = moge_tokenizer_piece(target_tok, i), *b = moge_tokenizer_piece(draft_tok, i);
        if (!a || !b || strcmp(a, b) != 0)
            return set_err(err, n, MOGE_ERR_ARG, "the draft's tokenizer differs from the target's at token %d (\"%s\" vs \"%s\")", i,
                           b ? b : "(none)", a ? a : "(none)");
    }
    moge_model_info in;
    moge_model_get_info(draft, &in);
    if (in.n_vocab < nv_t)
        return set_err(err, n, MOGE_ERR_ARG, "the draft model's vocab_size %d is smaller than the tokenizer's %d tokens", in.n_vocab, nv_t);
    if (n_seq < 1 || n_seq > MOGE_MAX_SEQ)
        return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_model: n_seq %d is outside 1..%d", n_seq, MOGE_MAX_SEQ);
    return md_new(draft, NULL, n_ctx, n_seq, out, err, n);
}

moge_status moge_drafter_new_layer_skip(moge_model *target, int32_t n_layers, int32_t n_ctx, moge_drafter **out, char *err, size_t n) {
    return moge_drafter_new_layer_skip_seqs(target, n_layers, n_ctx, 1, out, err, n);
}

moge_status moge_drafter_new_layer_skip_seqs(moge_model *target, int32_t n_layers, int32_t n_ctx, int32_t n_seq, moge_drafter **out,
                                             char *err, size_t n) {
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_layer_skip: out must not be NULL");
    *out = NULL;
    if (!target) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_layer_skip: NULL target");
    moge_model *view = NULL;
    moge_status st = model_new_layer_view(target, n_layers, &view, err, n);
    if (st != MOGE_OK) return st;
    if (n_seq < 1 || n_seq > MOGE_MAX_SEQ) {
        moge_model_free(view);
        return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_layer_skip: n_seq %d is outside 1..%d", n_seq, MOGE_MAX_SEQ);
    }
    return md_new(target, view, n_ctx, n_seq, out, err, n);
}
