/*
 * lookup.c — prompt-lookup drafting: no model. Take the last n tokens of the context (n from
 * ngram_max down to 1), find their latest earlier occurrence, and propose the tokens that
 * followed it as a chain (deterministic children: accepted by sample-and-match). Stateless, so one
 * lookup drafter serves every sequence of a decoder.
 */
#include <stdlib.h>

#include "draft/drafter.h"
#include "base/errors.h"

typedef struct {
    int32_t ngram_max;
} lookup_drafter;

static moge_status lk_propose(void *self, const int32_t *history, int32_t n_history, const moge_draft_params *dp,
                              const moge_sampler_params *sp, moge_tree *tree) {
    (void)sp;
    const lookup_drafter *d = self;
    int32_t root = tree->token[0], n_all = n_history + 1; /* the context ends with the root */
#define AT(i) ((i) < n_history ? history[i] : root)
    int32_t budget = dp->draft_max < dp->tree_nodes ? dp->draft_max : dp->tree_nodes;
    for (int32_t n = d->ngram_max; n >= 1; n--) {
        if (n >= n_all) continue;
        /* latest start s < n_all - n with tokens s..s+n-1 == the last n tokens */
        for (int32_t s = n_all - n - 1; s >= 0; s--) {
            int32_t k = 0;
            while (k < n && AT(s + k) == AT(n_all - n + k)) k++;
            if (k < n) continue;
            int32_t parent = 0;
            for (int32_t j = s + n; j < n_all && budget > 0; j++, budget--) {
                parent = moge_tree_add(tree, parent, AT(j), 0.0f);
                if (parent < 0) break;
            }
            return MOGE_OK;
        }
    }
#undef AT
    return MOGE_OK;
}

static moge_status lk_accept(void *self, const moge_tree *tree, const int32_t *path, int32_t n_path) {
    (void)self; (void)tree; (void)path; (void)n_path;
    return MOGE_OK;
}

static void lk_reset(void *self) { (void)self; }
static void lk_free(void *self) { free(self); }

/* It keeps no state: one lookup drafter serves any number of sequences of a decoder. */
static int32_t lk_n_seq(void *self) { (void)self; return MOGE_MAX_SEQ; }

static moge_status lk_propose_seqs(void *self, moge_draft_job *jobs, int32_t n_jobs) {
    for (int32_t j = 0; j < n_jobs; j++) jobs[j].status = lk_propose(self, jobs[j].history, jobs[j].n_history, jobs[j].dp, jobs[j].sp, jobs[j].tree);
    return MOGE_OK;
}

static moge_status lk_accept_seq(void *self, int32_t seq, const moge_tree *tree, const int32_t *path, int32_t n_path) {
    (void)seq;
    return lk_accept(self, tree, path, n_path);
}

static void lk_reset_seq(void *self, int32_t seq) { (void)seq; lk_reset(self); }

moge_status moge_drafter_new_lookup(int32_t ngram_max, moge_drafter **out, char *err, size_t n) {
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_drafter_new_lookup: out must not be NULL");
    *out = NULL;
    if (ngram_max < 0 || ngram_max > 64) return set_err(err, n, MOGE_ERR_ARG, "lookup drafter: n-gram size %d outside 1..64", ngram_max);
    lookup_drafter *d = malloc(sizeof *d);
    if (!d) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    d->ngram_max = ngram_max ? ngram_max : 3;
    static const moge_drafter_iface iface = {.propose = lk_propose, .accept = lk_accept, .reset = lk_reset, .free = lk_free,
                                             .n_seq = lk_n_seq, .propose_seqs = lk_propose_seqs, .accept_seq = lk_accept_seq,
                                             .reset_seq = lk_reset_seq};
    moge_status st = moge_drafter_new_custom(&iface, d, out);
    if (st != MOGE_OK) { free(d); return set_err(err, n, st, "out of memory"); }
    return MOGE_OK;
}
