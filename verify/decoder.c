/*
 * decoder.c — many sequences in one context (moge.h, "Many sequences at once"): continuous
 * batching over the context's sequence slots. Each step prefills the prompts of new sequences
 * (runs of several sequences per forward, up to n_batch rows), then verifies every running
 * sequence's tree in one target pass (moge_verify_trees). A sequence's generation is the same
 * seq_gen that moge_generate() runs (verify/sequence.c), so its tokens are those it gets alone.
 *
 * Speculative sequences with params.adaptive share one planner (the context's, calibrated in the
 * slot of the first such sequence): each step it picks one drafting depth for all of them, then
 * chooses the nodes of their drafted trees that the pass verifies, together, by expected tokens
 * over the expected seconds of the whole pass (planner_choose_batch): the tree budget is shared,
 * so more sequences mean smaller trees where the rows cost more than they bring. It learns one
 * acceptance model from all of them (per kind of drafter and acceptance rule of the first).
 * Sequences without speculation join every pass with their root; fixed trees (adaptive off) are
 * verified as drafted, their rows taken out of the planner's budget.
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "draft/drafter.h"
#include "runtime/context.h"
#include "base/errors.h"
#include "verify/planner.h"
#include "verify/sequence.h"

#define PROBE_SEQS 4 /* planned sequences that draft in a probe (see plan_pass) */

struct moge_decoder {
    moge_context *ctx;
    int32_t n_slots;
    seq_gen *g;            /* (n_slots) */
    uint8_t *used;         /* (n_slots) the slot holds a sequence (running or stopped) */
    moge_verify_item *items; /* (n_slots) this step's verification, items[i].seq its slot */
    int32_t *tok, *seq;    /* (n_batch) prefill batch */
    int32_t *pf_slot, *pf_n; /* (n_batch) the prefill batch's runs */
    int32_t next;          /* the slot the next pass starts with (fair when slots > n_batch) */
    planner *pl;           /* the shared planner, once an adaptive speculative sequence came */
    const moge_tree **trees; /* (n_slots) scratch of the planner's calls */
    moge_tree **outs;
    int32_t **maps, **paths, *n_paths;
    int32_t *pass;         /* (n_slots) the slots of this step's pass */
    moge_draft_job *jobs, *group; /* (n_slots) the pass's drafting jobs (by pass index); one drafter's */
    int32_t *group_of;     /* (n_slots) pass index of each job of group */
    moge_status *job_st;   /* (n_slots) */
    double *job_s;         /* (n_slots) drafting seconds charged to each */
    uint8_t *job_done;     /* (n_slots) */
    int32_t *max_rows;     /* (n_slots) rows each unplanned sequence's tree may take */
    uint64_t probes;       /* the planner's probes so far (which sequences draft in the next) */
    moge_decoder_stats stats;
};

moge_status moge_decoder_new(moge_context *ctx, moge_decoder **out) {
    if (!out) return MOGE_ERR_ARG;
    *out = NULL;
    if (!ctx) return MOGE_ERR_ARG;
    moge_decoder *d = calloc(1, sizeof *d);
    int32_t S = ctx->n_seq, B = ctx->n_batch;
    if (d) {
        d->ctx = ctx;
        d->n_slots = S;
        d->g = calloc((size_t)S, sizeof *d->g);
        d->used = calloc((size_t)S, 1);
        d->items = calloc((size_t)S, sizeof *d->items);
        d->tok = calloc((size_t)B, sizeof(int32_t));
        d->seq = calloc((size_t)B, sizeof(int32_t));
        d->pf_slot = calloc((size_t)B, sizeof(int32_t));
        d->pf_n = calloc((size_t)B, sizeof(int32_t));
        d->trees = calloc((size_t)S, sizeof *d->trees);
        d->outs = calloc((size_t)S, sizeof *d->outs);
        d->maps = calloc((size_t)S, sizeof *d->maps);
        d->paths = calloc((size_t)S, sizeof *d->paths);
        d->n_paths = calloc((size_t)S, sizeof *d->n_paths);
        d->pass = calloc((size_t)S, sizeof *d->pass);
        d->jobs = calloc((size_t)S, sizeof *d->jobs);
        d->group = calloc((size_t)S, sizeof *d->group);
        d->group_of = calloc((size_t)S, sizeof *d->group_of);
        d->job_st = calloc((size_t)S, sizeof *d->job_st);
        d->job_s = calloc((size_t)S, sizeof *d->job_s);
        d->job_done = calloc((size_t)S, 1);
        d->max_rows = calloc((size_t)S, sizeof(int32_t));
    }
    if (!d || !d->g || !d->used || !d->items || !d->tok || !d->seq || !d->pf_slot || !d->pf_n || !d->trees ||
        !d->outs || !d->maps || !d->paths || !d->n_paths || !d->pass || !d->jobs || !d->group || !d->group_of || !d->job_st ||
        !d->job_s || !d->job_done || !d->max_rows) {
        moge_decoder_free(d);
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_NOMEM, "out of memory");
    }
    moge_moe_stats_reset(ctx);
    *out = d;
    return MOGE_OK;
}

void moge_decoder_free(moge_decoder *d) {
    if (!d) return;
    for (int32_t s = 0; d->g && d->used && s < d->n_slots; s++)
        if (d->used[s]) seq_end(&d->g[s]);
    free(d->g); free(d->used); free(d->items);
    free(d->tok); free(d->seq); free(d->pf_slot); free(d->pf_n);
    free(d->trees); free(d->outs); free(d->maps); free(d->paths); free(d->n_paths); free(d->pass);
    free(d->jobs); free(d->group); free(d->group_of); free(d->job_st); free(d->job_s); free(d->job_done); free(d->max_rows);
    free(d);
}

moge_status moge_decoder_add(moge_decoder *d, const int32_t *prompt, int32_t n_prompt, const moge_generate_params *params,
                             moge_token_cb cb, void *user, int32_t *id) {
    if (!d || !id) return MOGE_ERR_ARG;
    moge_context *ctx = d->ctx;
    *id = -1;
    if (params && params->n_context_tokens != 0)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG, "moge_decoder_add: a sequence starts in an empty slot (context_tokens must be empty)");
    int32_t slot = -1;
    for (int32_t s = 0; s < d->n_slots && slot < 0; s++)
        if (!d->used[s]) slot = s;
    if (slot < 0)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_CONTEXT_FULL,
                       "moge_decoder_add: all %d sequence slots of the context are in use (n_seq %d); remove a stopped sequence first",
                       d->n_slots, d->n_slots);
    const moge_drafter *dr = params && params->spec != MOGE_SPEC_NONE ? params->drafter : NULL;
    int32_t dr_seqs = dr ? drafter_n_seq(dr) : 1;
    bool multi = dr_seqs > 1; /* else a drafter of one sequence */
    if (multi && slot >= dr_seqs)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                       "moge_decoder_add: the drafter serves %d sequences, the context %d (make it with n_seq %d)", dr_seqs, d->n_slots,
                       d->n_slots);
    if (dr && !multi)
        for (int32_t s = 0; s < d->n_slots; s++)
            if (d->used[s] && !d->g[s].ended && d->g[s].gp.spec != MOGE_SPEC_NONE && d->g[s].gp.drafter == dr)
                return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_ARG,
                               "moge_decoder_add: the drafter already runs sequence %d; each sequence needs a drafter of its own "
                               "(or one made for several sequences, e.g. moge_drafter_new_model_seqs)", s);
    moge_seq_kv_truncate(ctx, slot, 0);
    moge_status st = seq_begin(&d->g[slot], ctx, slot, prompt, n_prompt, params, cb, user, false);
    if (st != MOGE_OK) return st;
    seq_gen *g = &d->g[slot];
    if (g->gp.adaptive && g->gp.spec != MOGE_SPEC_NONE && g->tree_cap > 1) {
        if (!d->pl) { /* the first: calibrates (or reads the cache) in its slot, still empty */
            st = planner_start(ctx, slot, PLAN_MAX_ROWS, (const void *)g->gp.drafter->iface.propose, planner_rule(&g->gp), g->hist,
                               g->n_hist, &d->pl);
            if (st != MOGE_OK && st != MOGE_ERR_CONTEXT_FULL) {
                seq_end(g);
                return set_err(ctx->err, sizeof ctx->err, st, "calibrating the speculation planner: %s", moge_status_str(st));
            }
        }
        g->batch_planned = d->pl != NULL;
        g->shared_pl = d->pl;
    }
    d->used[slot] = 1;
    *id = slot;
    return MOGE_OK;
}

/* Prefills every new sequence's prompt: forwards of runs of several sequences, n_batch rows each. */
static moge_status prefill(moge_decoder *d) {
    moge_context *ctx = d->ctx;
    for (;;) {
        int32_t rows = 0, runs = 0;
        for (int32_t s = 0; s < d->n_slots && rows < ctx->n_batch; s++) {
            const int32_t *toks;
            int32_t left = d->used[s] ? seq_prefill_left(&d->g[s], &toks) : 0;
            if (left == 0) continue;
            int32_t n = left < ctx->n_batch - rows ? left : ctx->n_batch - rows;
            if (n > ctx->seq_rows) n = ctx->seq_rows;
            memcpy(d->tok + rows, toks, (size_t)n * sizeof(int32_t));
            for (int32_t i = 0; i < n; i++) d->seq[rows + i] = s;
            d->pf_slot[runs] = s;
            d->pf_n[runs++] = n;
            rows += n;
        }
        if (runs == 0) return MOGE_OK;
        double t = clock_now();
        moge_batch b = {.n = rows, .tokens = d->tok, .seq = d->seq, .logits_last_only = true};
        const float *logits = NULL;
        moge_status st = moge_forward(ctx, &b, &logits);
        d->stats.n_prefill_passes++;
        for (int32_t r = 0; r < runs; r++) {
            seq_gen *g = &d->g[d->pf_slot[r]];
            int32_t before = g->stats.n_generated;
            if (st != MOGE_OK) seq_fail(g, st);
            else seq_prefilled(g, d->pf_n[r], logits + (int64_t)r * ctx->model->cfg.n_vocab);
            d->stats.n_generated += g->stats.n_generated - before; /* the first token */
            if (!g->go) seq_end(g);
        }
        d->stats.t_prefill_s += clock_now() - t;
        if (st != MOGE_OK) return st;
    }
}

/* Drafts every sequence of the pass: the jobs of a drafter that serves several sequences in one
 * call (one draft forward per level for all), the others one by one. Planned sequences draft
 * their plan_levels deep and plan_width wide; the others their own trees, in at most max_rows[i]
 * rows. Returns the seconds the planned sequences' drafting took. */
static double draft_all(moge_decoder *d, int32_t n, const int32_t *max_rows) {
    for (int32_t i = 0; i < n; i++) {
        seq_gen *g = &d->g[d->pass[i]];
        d->job_done[i] = 0;
        d->job_st[i] = MOGE_OK;
        d->job_s[i] = 0;
        if (!seq_plan_begin(g, g->batch_planned ? g->tree_cap : max_rows[i], &d->jobs[i])) seq_end(g);
    }
    double planned_s = 0;
    for (int32_t i = 0; i < n; i++) {
        seq_gen *g = &d->g[d->pass[i]];
        if (!g->go || !d->jobs[i].tree || d->job_done[i]) continue;
        double t = clock_now();
        int32_t m = 0, n_planned = 0;
        if (d->jobs[i].seq >= 0) { /* every job of this drafter, in one call */
            moge_drafter *dr = g->gp.drafter;
            for (int32_t j = i; j < n; j++) {
                seq_gen *h = &d->g[d->pass[j]];
                if (h->go && d->jobs[j].tree && !d->job_done[j] && h->gp.drafter == dr) {
                    d->group[m] = d->jobs[j];
                    d->group_of[m++] = j;
                }
            }
            moge_status st = dr->iface.propose_seqs(dr->self, d->group, m);
            for (int32_t k = 0; k < m; k++) { /* a failing call without a job's own status fails them all */
                int32_t j = d->group_of[k];
                d->job_st[j] = d->group[k].status != MOGE_OK ? d->group[k].status : st;
            }
        } else {
            d->job_st[i] = seq_propose(g, &d->jobs[i]);
            d->group_of[m++] = i;
        }
        double secs = clock_now() - t;
        for (int32_t k = 0; k < m; k++) {
            int32_t j = d->group_of[k];
            d->job_done[j] = 1;
            d->job_s[j] = secs / m;
            n_planned += d->g[d->pass[j]].batch_planned;
        }
        planned_s += secs * n_planned / m;
    }
    for (int32_t i = 0; i < n; i++) {
        seq_gen *g = &d->g[d->pass[i]];
        if (g->go && !seq_plan_end(g, d->job_st[i], d->job_s[i])) seq_end(g);
    }
    return planned_s;
}

/* Chooses this step's pass: the running sequences (round-robin from d->next, at most n_batch of
 * them), each one's tree grown and, for the planned ones, cut by the shared planner. Returns the
 * number of sequences in d->pass; *n_forest: how many trees the planner chose among (0 when it
 * did not run). */
static int32_t plan_pass(moge_decoder *d, int32_t *n_forest) {
    moge_context *ctx = d->ctx;
    int32_t n = 0, n_planned = 0, draft_max = 0;
    *n_forest = 0;
    for (int32_t k = 0; k < d->n_slots && n < ctx->n_batch; k++) {
        int32_t s = (d->next + k) % d->n_slots;
        if (!d->used[s] || !d->g[s].go || seq_prefill_left(&d->g[s], NULL) > 0) continue;
        d->pass[n++] = s;
        if (d->g[s].batch_planned) {
            n_planned++;
            if (d->g[s].gp.draft.draft_max > draft_max) draft_max = d->g[s].gp.draft.draft_max;
        }
    }
    /* one drafting depth for every planned sequence; while the planner only probes whether
     * speculation pays again (it found it did not), PROBE_SEQS of them draft, in turn, the others
     * take a plain step: the probe asks whether speculating pays at the margin, which a few
     * sequences answer at a fraction of the batch's drafting */
    int32_t levels = 0, width = 1 << 20;
    bool planned = d->pl && n_planned > 0;
    if (planned) levels = planner_depth(d->pl, draft_max, &width);
    int32_t probe_first = -1;
    if (levels > 0 && n_planned > PROBE_SEQS && planner_probing(d->pl)) probe_first = (int32_t)(d->probes++ % (uint64_t)n_planned);
    for (int32_t i = 0, k = 0; i < n; i++) {
        seq_gen *g = &d->g[d->pass[i]];
        if (!g->batch_planned) continue;
        int32_t rel = probe_first < 0 ? 0 : (k - probe_first + n_planned) % n_planned;
        g->plan_levels = rel < PROBE_SEQS ? levels : 0;
        g->plan_width = width;
        k++;
    }
    /* the others' trees as asked when they all fit, else the rows left after the roots shared out */
    int64_t want = n_planned;
    int32_t n_trees_fixed = 0;
    for (int32_t i = 0; i < n; i++) {
        const seq_gen *g = &d->g[d->pass[i]];
        if (g->batch_planned) continue;
        want += g->tree_cap;
        n_trees_fixed += g->tree_cap > 1;
    }
    int32_t spare = ctx->n_batch - n, share = n_trees_fixed ? spare / n_trees_fixed : 0;
    for (int32_t i = 0; i < n; i++) {
        const seq_gen *g = &d->g[d->pass[i]];
        d->max_rows[i] = want <= ctx->n_batch || g->tree_cap <= 1 ? g->tree_cap : 1 + share;
    }
    double draft_s = draft_all(d, n, d->max_rows);
    /* the fixed trees' rows are verified as drafted; the planner has the rest */
    int32_t fixed_rows = 0, n_trees = 0, drafted = 1;
    for (int32_t i = 0; i < n; i++) {
        const seq_gen *g = &d->g[d->pass[i]];
        if (g->go && !g->batch_planned && g->vt->n > 1) fixed_rows += g->vt->n;
    }
    /* the planned ones' trees, and the sequences with a root alone: the planner's forest */
    for (int32_t i = 0; i < n; i++) {
        seq_gen *g = &d->g[d->pass[i]];
        if (!g->go) continue;
        if (g->batch_planned) {
            for (int32_t j = 1; j < g->tree.n; j++) if (g->tree.depth[j] > drafted) drafted = g->tree.depth[j];
        } else if (g->vt->n > 1) {
            continue;
        }
        d->trees[n_trees] = g->vt;
        d->outs[n_trees] = &g->vtree;
        d->maps[n_trees++] = g->map;
    }
    if (planned && n_trees > 0) {
        if (levels > 0) { /* the vtrees become the verified trees */
            planner_choose_batch(d->pl, n_trees, d->trees, drafted, draft_s, d->outs, d->maps, ctx->n_batch - fixed_rows);
            for (int32_t i = 0; i < n; i++) {
                seq_gen *g = &d->g[d->pass[i]];
                if (g->go && (g->batch_planned || g->vt->n == 1)) g->vt = &g->vtree;
            }
        }
        *n_forest = n_trees;
    }
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++) /* the sequences that stopped while planning leave the pass */
        if (d->g[d->pass[i]].go) d->pass[kept++] = d->pass[i];
    return kept;
}

moge_status moge_decoder_step(moge_decoder *d, int32_t *n_running) {
    if (n_running) *n_running = 0;
    if (!d) return MOGE_ERR_ARG;
    moge_context *ctx = d->ctx;
    moge_status st = prefill(d);
    double t = clock_now();
    int32_t n_forest = 0;
    int32_t n_items = plan_pass(d, &n_forest), rows = 0;
    for (int32_t i = 0; i < n_items; i++) {
        int32_t s = d->pass[i];
        seq_gen *g = &d->g[s];
        d->items[i] = (moge_verify_item){.seq = s, .tree = g->vt, .sp = &g->gp.sampler, .history = g->hist,
                                         .n_history = g->n_hist - 1, .rng = &g->rng, .path = g->path};
        rows += g->vt->n;
    }
    if (n_items > 0) {
        double tp = clock_now();
        moge_status pst = moge_verify_trees(ctx, d->items, n_items);
        double pass_s = clock_now() - tp;
        d->stats.n_passes++;
        d->stats.n_rows += rows;
        d->stats.expert_bytes_read += planner_expert_bytes(ctx);
        bool shared_failed = pst != MOGE_OK;
        for (int32_t i = 0; i < n_items; i++) shared_failed = shared_failed && d->items[i].status == MOGE_OK;
        int32_t n_obs = 0;
        for (int32_t i = 0; i < n_items; i++) {
            seq_gen *g = &d->g[d->items[i].seq];
            if (shared_failed) d->items[i].status = pst; /* the forward itself failed: every item */
            if (n_forest > 0 && (g->batch_planned || g->vt->n == 1) && d->items[i].status == MOGE_OK) {
                d->trees[n_obs] = g->vt; /* the planner's forest, as verified */
                d->paths[n_obs] = g->path;
                d->n_paths[n_obs++] = d->items[i].res.n_path;
            }
            int32_t before = g->stats.n_generated;
            seq_after(g, &d->items[i], pass_s);
            d->stats.n_generated += g->stats.n_generated - before;
        }
        if (n_obs > 0) planner_observe_batch(d->pl, n_obs, d->trees, (const int32_t *const *)d->paths, d->n_paths, pass_s,
                                             clock_now() - tp - pass_s);
        for (int32_t i = 0; i < n_items; i++)
            if (!d->g[d->items[i].seq].go) seq_end(&d->g[d->items[i].seq]);
        if (shared_failed && st == MOGE_OK) st = pst;
        d->next = (d->items[n_items - 1].seq + 1) % d->n_slots;
    }
    d->stats.t_decode_s += clock_now() - t;
    int32_t running = 0;
    for (int32_t s = 0; s < d->n_slots; s++) running += d->used[s] && d->g[s].go;
    if (n_running) *n_running = running;
    return st;
}

moge_status moge_decoder_seq_stats(const moge_decoder *d, int32_t id, moge_stats *stats, bool *stopped, moge_status *status) {
    if (!d || id < 0 || id >= d->n_slots || !d->used[id]) return MOGE_ERR_ARG;
    const seq_gen *g = &d->g[id];
    if (stats) seq_stats(g, stats); /* running: the figures so far */
    if (stopped) *stopped = !g->go;
    if (status) *status = g->st;
    return MOGE_OK;
}

int32_t moge_decoder_stopped(const moge_decoder *d, int32_t *ids, int32_t cap) {
    int32_t n = 0;
    for (int32_t s = 0; d && s < d->n_slots; s++)
        if (d->used[s] && !d->g[s].go) {
            if (ids && n < cap) ids[n] = s;
            n++;
        }
    return n;
}

moge_status moge_decoder_remove(moge_decoder *d, int32_t id) {
    if (!d || id < 0 || id >= d->n_slots || !d->used[id]) return MOGE_ERR_ARG;
    seq_end(&d->g[id]);
    d->used[id] = 0;
    return MOGE_OK;
}

void moge_decoder_get_stats(const moge_decoder *d, moge_decoder_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (d) *out = d->stats;
}
