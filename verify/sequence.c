/*
 * sequence.c — one sequence's generation (design.md §1), step by step (sequence.h): prefill the
 * prompt, sample the first token, then repeat: the drafter grows a tree rooted at the last
 * emitted token, the target verifies it (with other sequences' trees when a decoder batches
 * them), the accepted tokens and the bonus token are emitted, and the drafter keeps the accepted
 * path. Without speculation the tree is the root alone, so the target-only path and the
 * speculative path share every line that decides a token.
 *
 * With the planner (verify/planner.c) each step's tree is chosen — how deep to draft, which of the
 * drafted nodes the target verifies (none: a plain step) — by expected accepted tokens per
 * expected second; without it every step verifies the tree the drafter made.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "draft/drafter.h"
#include "runtime/context.h"
#include "base/errors.h"
#include "sampling/sampling.h"
#include "verify/sequence.h"
#include "verify/verify_state.h"

#define DRAFT_WINDOW 32

static void seq_free(seq_gen *g) {
    free(g->hist);
    free(g->path);
    moge_tree_free(&g->tree);
    moge_tree_free(&g->vtree);
    g->hist = g->path = NULL;
}

moge_status seq_begin(seq_gen *g, moge_context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt,
                      const moge_generate_params *params, moge_token_cb cb, void *user, bool use_planner) {
    memset(g, 0, sizeof *g);
    g->ended = true; /* until it is ready */
    if (!prompt || n_prompt < 1)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: the prompt needs at least one token");
    if (seq < 0 || seq >= ctx->n_seq) return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: no sequence %d", seq);
    moge_generate_params gp = params ? *params : moge_generate_default_params();
    if (gp.spec != MOGE_SPEC_NONE && !gp.drafter)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: speculative mode without a drafter");
    if (gp.spec == MOGE_SPEC_CHAIN) {
        gp.draft.branch = 1;
        gp.draft.shape = NULL;
        gp.draft.tree_nodes = gp.draft.draft_max;
    }
    if (gp.draft.draft_max > MOGE_MAX_DEPTH - 1) gp.draft.draft_max = MOGE_MAX_DEPTH - 1;
    const model_config *c = &ctx->model->cfg;
    int32_t n_past = ctx->seq[seq].n_past;
    if (n_past + n_prompt > ctx->n_ctx)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_CONTEXT_FULL,
                       "the prompt (%d tokens) does not fit in the context (%d of %d slots used)", n_prompt, n_past, ctx->n_ctx);
    if (gp.n_context_tokens != 0 && (!gp.context_tokens || gp.n_context_tokens != n_past))
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                       "moge_generate: context_tokens lists %d tokens but the context holds %d", gp.n_context_tokens, n_past);
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->n_vocab)
            return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_generate: prompt token %d at %d is outside the vocabulary (0..%d)",
                           prompt[i], i, c->n_vocab - 1);
    int32_t n_hist_max = gp.n_context_tokens + n_prompt + (gp.n_predict > 0 ? gp.n_predict : 0) + 1;
    int32_t tree_cap = gp.spec == MOGE_SPEC_NONE ? 1 : gp.draft.tree_nodes + 1;
    if (tree_cap > ctx->seq_rows) tree_cap = ctx->seq_rows;
    if (tree_cap < 1) tree_cap = 1;
    *g = (seq_gen){.ctx = ctx, .seq = seq, .gp = gp, .cb = cb, .user = user, .eos = c->eos_id, .tree_cap = tree_cap,
                   .n_prompt = n_prompt, .base = n_past, .rng = gp.sampler.seed, .ended = true};
    g->hist = malloc((size_t)n_hist_max * sizeof(int32_t));
    g->path = malloc((size_t)tree_cap * 3 * sizeof(int32_t));
    moge_status st = moge_tree_init(&g->tree, tree_cap), st2 = moge_tree_init(&g->vtree, tree_cap);
    if (!g->hist || !g->path || st != MOGE_OK || st2 != MOGE_OK) {
        seq_free(g);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory");
    }
    g->opath = g->path + tree_cap;
    g->map = g->path + 2 * tree_cap;
    if (gp.n_context_tokens > 0) memcpy(g->hist, gp.context_tokens, (size_t)gp.n_context_tokens * sizeof(int32_t));
    memcpy(g->hist + gp.n_context_tokens, prompt, (size_t)n_prompt * sizeof(int32_t));
    g->n_hist = gp.n_context_tokens + n_prompt;
    /* the planner (calibrating the target on its first use: before the prefill, leaving the cache
     * as it is); a context too full to calibrate in runs the configured tree */
    if (use_planner && gp.adaptive && gp.spec != MOGE_SPEC_NONE && tree_cap > 1) {
        st = planner_start(ctx, seq, tree_cap, gp.drafter, planner_rule(&gp), g->hist, g->n_hist, &g->pl);
        if (st == MOGE_ERR_CONTEXT_FULL) st = MOGE_OK;
        if (st != MOGE_OK) {
            seq_free(g);
            return set_err(ctx->err, sizeof ctx->err, st, "calibrating the speculation planner: %s", moge_status_str(st));
        }
    }
    if (gp.drafter) {
        int32_t ds = seq_drafter_seq(g);
        if (ds >= 0) gp.drafter->iface.reset_seq(gp.drafter->self, ds);
        else if (gp.drafter->iface.reset) gp.drafter->iface.reset(gp.drafter->self);
    }
    g->stats.n_prompt = n_prompt;
    g->stats.stop = MOGE_STOP_LENGTH;
    g->go = true;
    g->ended = false;
    g->t0 = clock_now();
    return MOGE_OK;
}

int32_t seq_prefill_left(const seq_gen *g, const int32_t **tokens) {
    if (!g->go || g->prefilled >= g->n_prompt) return 0;
    if (tokens) *tokens = g->hist + g->gp.n_context_tokens + g->prefilled;
    return g->n_prompt - g->prefilled;
}

/* Emits one token; returns false when generation must stop (EOS, length, callback). */
static bool emit(seq_gen *g, int32_t tok) {
    if (tok == g->eos) {
        g->stats.stop = MOGE_STOP_EOS;
        return false;
    }
    g->hist[g->n_hist++] = tok;
    g->stats.n_generated++;
    if (g->cb && !g->cb(tok, g->user)) {
        g->stats.stop = MOGE_STOP_CALLBACK;
        return false;
    }
    if (g->stats.n_generated >= g->gp.n_predict) {
        g->stats.stop = MOGE_STOP_LENGTH;
        return false;
    }
    return true;
}

void seq_fail(seq_gen *g, moge_status st) {
    g->st = st;
    g->go = false;
}

void seq_prefilled(seq_gen *g, int32_t n, const float *last_logits) {
    moge_context *ctx = g->ctx;
    moge_status st = moge_seq_kv_commit(ctx, g->seq, NULL, n);
    g->stats.n_prefill_forward++;
    if (st != MOGE_OK) return seq_fail(g, st);
    g->prefilled += n;
    if (g->prefilled < g->n_prompt) return;
    g->t1 = clock_now();
    g->stats.t_prefill_s = g->t1 - g->t0;
    /* The first token is sampled from the prefill's logits, before any drafting. */
    g->go = g->gp.n_predict > 0;
    if (g->go) {
        verify_state *vs = verify_state_get(ctx);
        if (!vs) return seq_fail(g, MOGE_ERR_NOMEM);
        g->go = emit(g, sampling_choose(last_logits, ctx->model->cfg.n_vocab, &g->gp.sampler, g->hist, g->n_hist, vs->probs,
                                        vs->idx, &g->rng));
    }
    g->draft_from = 0;
    g->drafted_to = g->n_hist - 1; /* the drafter's window of the history */
}

int32_t seq_drafter_seq(const seq_gen *g) {
    const moge_drafter *d = g->gp.drafter;
    int32_t n = d ? drafter_n_seq(d) : 1;
    return n > 1 && g->seq < n ? g->seq : -1;
}

bool seq_plan_begin(seq_gen *g, int32_t max_rows, moge_draft_job *job) {
    moge_context *ctx = g->ctx;
    job->tree = NULL;
    if (!g->go || g->prefilled < g->n_prompt) return false;
    const kv_seq *sq = &ctx->seq[g->seq];
    if (sq->n_past + 1 > ctx->n_ctx) {
        g->stats.stop = MOGE_STOP_CONTEXT_FULL;
        g->go = false;
        return false;
    }
    g->ts = clock_now();
    moge_tree_reset(&g->tree, g->hist[g->n_hist - 1]);
    moge_draft_params *dp = &g->dp;
    *dp = g->gp.draft;
    g->levels = 0;
    if (g->gp.spec != MOGE_SPEC_NONE) {
        int32_t width = dp->branch;
        if (g->batch_planned) {
            g->levels = g->plan_levels < dp->draft_max ? g->plan_levels : dp->draft_max;
            width = g->plan_width;
        } else {
            g->levels = g->pl ? planner_depth(g->pl, dp->draft_max, &width) : dp->draft_max;
        }
        if (!dp->shape && width < dp->branch) dp->branch = width < 1 ? 1 : width;
        dp->draft_max = g->levels;
        int32_t room = ctx->n_ctx - sq->n_past - 1;
        if (dp->tree_nodes > g->tree_cap - 1) dp->tree_nodes = g->tree_cap - 1;
        if (dp->tree_nodes > max_rows - 1) dp->tree_nodes = max_rows - 1;
        if (dp->tree_nodes > room) dp->tree_nodes = room;
        if (g->levels > 0 && dp->tree_nodes > 0) {
            /* after many plain steps the drafter would first have to read every token it
             * missed: a probe of the planner's gives it the last DRAFT_WINDOW tokens only,
             * and the drafter sees the history from there on while it keeps speculating */
            if ((g->pl || g->batch_planned) && g->n_hist - 1 - g->drafted_to > DRAFT_WINDOW) g->draft_from = g->n_hist - 1 - DRAFT_WINDOW;
            g->drafted_to = g->n_hist - 1;
            *job = (moge_draft_job){.seq = seq_drafter_seq(g), .history = g->hist + g->draft_from, .n_history = g->n_hist - 1 - g->draft_from,
                                    .dp = dp, .sp = &g->gp.sampler, .tree = &g->tree};
        }
    }
    return true;
}

bool seq_plan_end(seq_gen *g, moge_status draft_st, double draft_s) {
    moge_context *ctx = g->ctx;
    if (draft_st != MOGE_OK) {
        set_err(ctx->err, sizeof ctx->err, draft_st, "sequence %d: the drafter failed: %s", g->seq, moge_status_str(draft_st));
        seq_fail(g, draft_st);
        return false;
    }
    if (g->tree.n > g->dp.tree_nodes + 1) g->tree.n = g->dp.tree_nodes + 1; /* a custom drafter went over */
    g->draft_s = draft_s;
    /* the planner picks the nodes worth verifying (vtree; map: its nodes' ids in tree) */
    double t0 = clock_now();
    g->vt = &g->tree;
    if (g->pl && g->levels > 0) {
        int32_t drafted = 1;
        for (int32_t i = 1; i < g->tree.n; i++) if (g->tree.depth[i] > drafted) drafted = g->tree.depth[i];
        planner_choose(g->pl, &g->tree, drafted, draft_s, &g->vtree, g->map);
        g->vt = &g->vtree;
    }
    g->choose_s = clock_now() - t0;
    return true;
}

moge_status seq_propose(seq_gen *g, moge_draft_job *job) {
    moge_drafter *d = g->gp.drafter;
    if (job->seq >= 0) {
        moge_status st = d->iface.propose_seqs(d->self, job, 1);
        return st != MOGE_OK ? st : job->status;
    }
    return d->iface.propose(d->self, job->history, job->n_history, job->dp, job->sp, job->tree);
}

bool seq_plan(seq_gen *g, int32_t max_rows) {
    moge_draft_job job;
    if (!seq_plan_begin(g, max_rows, &job)) return false;
    moge_status st = job.tree ? seq_propose(g, &job) : MOGE_OK;
    return seq_plan_end(g, st, clock_now() - g->ts);
}

void seq_after(seq_gen *g, const moge_verify_item *it, double verify_s) {
    moge_context *ctx = g->ctx;
    moge_stats *stats = &g->stats;
    if (it->status != MOGE_OK) return seq_fail(g, it->status);
    const moge_tree *vt = g->vt;
    const int32_t *path = it->path;
    const moge_verify_result vr = it->res;
    double tv = clock_now();
    stats->expert_bytes_read += planner_expert_bytes(ctx);
    for (int32_t i = 0; i < vr.n_path; i++) g->opath[i] = vt == &g->tree ? path[i] : g->map[path[i]];
    if (g->tree.n > 1) {
        moge_drafter *d = g->gp.drafter;
        int32_t ds = seq_drafter_seq(g);
        moge_status st = ds >= 0 ? d->iface.accept_seq(d->self, ds, &g->tree, g->opath, vr.n_path)
                                 : d->iface.accept(d->self, &g->tree, g->opath, vr.n_path);
        if (st != MOGE_OK) {
            set_err(ctx->err, sizeof ctx->err, st, "sequence %d: the drafter failed: %s", g->seq, moge_status_str(st));
            return seq_fail(g, st);
        }
    }
    double ta = clock_now();
    stats->n_forward++;
    stats->n_draft_proposed += g->tree.n - 1;
    stats->n_draft_nodes += vt->n - 1;
    if ((g->pl || g->batch_planned) && vt->n == 1) stats->n_plain_steps++;
    for (int32_t i = 0; i < vr.n_path && vt->n > 1; i++) {
        /* a try at depth d+1: the walk stood at a node of depth d that has a child */
        int32_t node = path[i], d = vt->depth[node] + 1;
        bool has_child = false;
        for (int32_t j = node + 1; j < vt->n && !has_child; j++) has_child = vt->parent[j] == node;
        if (!has_child || d >= MOGE_MAX_DEPTH) continue;
        stats->accept_tries[d]++;
        if (i + 1 < vr.n_path) stats->accept_hits[d]++;
    }
    bool go = true;
    for (int32_t i = 1; i < vr.n_path && go; i++) go = emit(g, vt->token[path[i]]);
    if (go) go = emit(g, vr.bonus);
    g->go = go;
    double te = clock_now();
    stats->t_draft_s += g->draft_s + g->choose_s;
    stats->t_verify_s += verify_s;
    stats->t_draft_accept_s += ta - tv;
    stats->t_emit_s += te - ta;
    if (g->pl) planner_observe(g->pl, vt, path, vr.n_path, verify_s, te - tv);
}

void seq_end(seq_gen *g) {
    if (g->ended) return;
    g->go = false;
    moge_context *ctx = g->ctx;
    moge_stats *stats = &g->stats;
    /* Keep in the cache exactly the prompt and the emitted tokens but the last (a path accepted
     * past n_predict or an EOS is dropped), so a conversation can go on in this context. */
    int32_t keep = g->base + g->prefilled + (stats->n_generated > 0 ? stats->n_generated - 1 : 0);
    if (ctx->seq[g->seq].n_past > keep) moge_seq_kv_truncate(ctx, g->seq, keep);
    ctx->seq[g->seq].n_last = 0;
    seq_stats(g, stats); /* the figures become final */
    g->ended = true;
    seq_free(g);
}

void seq_stats(const seq_gen *g, moge_stats *out) {
    *out = g->stats;
    if (g->ended) return; /* final already */
    double now = clock_now(), t1 = g->t1 > 0 ? g->t1 : now;
    out->t_decode_s = now - t1;
    out->tokens_per_s = out->t_decode_s > 0 ? out->n_generated / out->t_decode_s : 0;
    /* τ: emitted tokens per target pass; the first token came from the prefill's last pass */
    out->mean_accepted = (double)out->n_generated / (out->n_forward + 1);
    out->predicted_speedup = planner_predicted_speedup(g->pl ? g->pl : g->shared_pl);
}
