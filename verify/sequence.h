/*
 * sequence.h — one sequence's generation, step by step (verify/sequence.c). moge_generate()
 * (verify/generate.c) drives one of them; the decoder (verify/decoder.c) drives many in one
 * context and verifies their trees in one target pass. Every line that decides a token is here,
 * shared by both.
 *
 * Life of a sequence: seq_begin (checks, buffers, planner) -> prefill chunks (seq_prefill_next,
 * then seq_prefilled with the chunk's last logits) -> steps (seq_plan grows and chooses the tree
 * to verify, the caller verifies it with the others, seq_after emits the accepted tokens) ->
 * seq_end (the cache keeps the prompt and the emitted tokens but the last; stats final).
 */
#ifndef MOGE_SEQUENCE_H
#define MOGE_SEQUENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "moge.h"
#include "verify/planner.h"

typedef struct {
    moge_context *ctx;
    int32_t seq;                /* the context's sequence it runs in */
    moge_generate_params gp;
    moge_token_cb cb;
    void *user;
    moge_stats stats;
    int32_t *hist, n_hist;      /* context tokens, prompt, emitted tokens */
    int32_t n_prompt, prefilled, base;
    int32_t eos, tree_cap;
    moge_tree tree, vtree;
    int32_t *path, *opath, *map;
    planner *pl;                /* its own planner (the one-sequence case), or NULL */
    bool batch_planned;         /* this step's depth comes from plan_levels / plan_width and a decoder's
                                   planner chooses the nodes (verify/decoder.c) */
    int32_t plan_levels, plan_width;
    planner *shared_pl;         /* that planner, for the predicted speedup */
    uint64_t rng;
    int32_t draft_from, drafted_to, levels;
    const moge_tree *vt;        /* the tree of this step's verification (after seq_plan) */
    moge_draft_params dp;       /* this step's draft parameters */
    double t0, t1, ts, draft_s, choose_s;
    bool go;                    /* still generating (prefill included) */
    bool ended;                 /* seq_end ran */
    moge_status st;             /* the error that ended it, or MOGE_OK */
} seq_gen;

/* Checks and prepares a generation of `prompt` in sequence `seq` of ctx (appended to what the
 * sequence holds). use_planner: let params->adaptive start the planner (the one-sequence case).
 * On error nothing is left to free and ctx's error message says why. */
moge_status seq_begin(seq_gen *g, moge_context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt,
                      const moge_generate_params *params, moge_token_cb cb, void *user, bool use_planner);
/* Prompt tokens still to prefill (0 once the prefill is done), and where they start. */
int32_t seq_prefill_left(const seq_gen *g, const int32_t **tokens);
/* After a forward of the next `n` prompt tokens: commits them; with the prompt complete, samples
 * the first token from `last_logits` (the logits of the chunk's last row). */
void seq_prefilled(seq_gen *g, int32_t n, const float *last_logits);
/* Before a verification pass: grows and chooses this step's tree (g->vt) in at most max_rows rows
 * (>= 1); with batch_planned it drafts plan_levels levels and leaves g->vt the drafted tree for
 * the decoder's planner to cut. False when the sequence has nothing to verify (it stopped:
 * g->go is false). */
bool seq_plan(seq_gen *g, int32_t max_rows);
/* seq_plan in parts, so that a decoder can run several sequences' drafting together:
 * seq_plan_begin sets up the step and, when it drafts, the job (job->tree NULL: no drafting;
 * false: the sequence stopped); the caller runs the job (seq_propose, or the drafter's
 * propose_seqs with other sequences' jobs); seq_plan_end takes the drafter's status and the
 * seconds of drafting this sequence is charged, and chooses with the sequence's own planner. */
bool seq_plan_begin(seq_gen *g, int32_t max_rows, moge_draft_job *job);
moge_status seq_propose(seq_gen *g, moge_draft_job *job);
bool seq_plan_end(seq_gen *g, moge_status draft_st, double draft_s);
/* The sequence of g's drafter that g drafts in (its slot), or -1 for a one-sequence drafter. */
int32_t seq_drafter_seq(const seq_gen *g);
/* After the pass: the verification of g->vt (its walk's status and result), the pass's seconds. */
void seq_after(seq_gen *g, const moge_verify_item *it, double verify_s);
/* Stops the generation with an error (its status). */
void seq_fail(seq_gen *g, moge_status st);
/* A monotonic clock in seconds. */
/* g's statistics now (with the time-derived figures as of now), or final once it ended. */
void seq_stats(const seq_gen *g, moge_stats *out);
/* Ends the generation (once; also after an error): trims the cache, finishes the stats, frees. */
void seq_end(seq_gen *g);

#endif
