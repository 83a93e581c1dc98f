/*
 * planner.h — the speculation planner (verify/planner.c): each step it chooses the tree the target
 * verifies (none, a chain, a tree up to the draft parameters' limits) that maximises expected
 * accepted tokens per expected second.
 *
 *   value: a node's probability of being accepted, the product along its path of calibrated
 *          acceptance rates (by the draft's conditional probability of the child and its rank
 *          among siblings, counted from every verification of this generation);
 *   cost:  draft seconds per tree level (measured) + verification seconds of n rows touching E
 *          distinct experts (a calibration per model and machine: time of n rows whose routing
 *          repeats, plus seconds per extra distinct expert; cached under ~/.cache/moge/calib),
 *          with E(n) predicted from the experts the target's rows chose so far.
 *
 * MOGE_PLAN_COST="a,b[,c]" in the environment replaces the calibration by T(n, E) = a + b n + c E
 * seconds and ignores every measured time (draft, verification, the rest), so the planner's
 * choices depend on the acceptance counts only: for tests and experiments.
 *
 * Decisions never steer by measured tokens/s: the cost model's shape is calibrated once, only its
 * overall scale follows the measured verification times, and the gains come from acceptance
 * counts, so a busy machine moves both sides of every comparison alike.
 */
#ifndef MOGE_PLANNER_H
#define MOGE_PLANNER_H

#include <stdbool.h>
#include <stdint.h>

#include "moge.h"

#define PLAN_MAX_ROWS 128 /* the most verification rows the cost model covers */

typedef struct planner planner;

/* The acceptance rule a generation's counts are of: chain or tree, greedy or sampled, children
 * drawn or taken (what planner_start's `rule` is). */
static inline int32_t planner_rule(const moge_generate_params *gp) {
    return (gp->spec == MOGE_SPEC_CHAIN) | (gp->sampler.temperature > 0) << 1 | gp->draft.sampled << 2;
}

/* The context's planner for a generation (made on first use and kept by the context, which frees
 * it: what it learned carries over to the next generation in the context). The first use
 * calibrates the target (a few seconds at most; then cached per model and machine under
 * $MOGE_CACHE or ~/.cache/moge, calib/) in sequence seq of the context; its forwards leave the
 * cache as it was. max_rows: the largest tree + root; drafter, rule: what the acceptance counts are of (another drafter or
 * acceptance rule starts them anew); history: tokens for the calibration's rows.
 * MOGE_RECALIBRATE=1 calibrates anew. MOGE_ERR_CONTEXT_FULL: no room left to calibrate in. */
moge_status planner_start(moge_context *ctx, int32_t seq, int32_t max_rows, const void *drafter, int32_t rule,
                          const int32_t *history, int32_t n_history, planner **out);
void planner_free(planner *p);

/* Before drafting: the tree depth to draft this step (0 = a plain step, no drafting), and in *width
 * the most children per node worth drafting (one more than the widest sibling rank chosen last). */
int32_t planner_depth(planner *p, int32_t draft_max, int32_t *width);

/* After drafting (draft_s seconds for `levels` levels): chooses the nodes of `tree` to verify and
 * writes them into `out` (the root and the chosen nodes, in tree order; out->cap >= tree->n);
 * map[i] = the node of `tree` that out's node i is. */
void planner_choose(planner *p, const moge_tree *tree, int32_t levels, double draft_s, moge_tree *out, int32_t *map);

/* After the verification of `tree` (the tree planner_choose wrote, or a plain step's root alone):
 * its accepted path, the pass's seconds; reads the pass's routing from the context. */
void planner_observe(planner *p, const moge_tree *tree, const int32_t *path, int32_t n_path, double verify_s,
                     double other_s);

/* A batch of n sequences verified in one pass (verify/decoder.c): the same decisions over the
 * sequences' drafted trees together — the nodes are taken by value across all trees and the pass
 * of at most max_rows rows (every root included) with the best expected tokens (summed over the
 * sequences) per expected second of the whole pass is verified, so more sequences leave smaller
 * trees where the extra rows cost more than they bring. */
void planner_choose_batch(planner *p, int32_t n, const moge_tree *const *trees, int32_t levels, double draft_s,
                          moge_tree *const *outs, int32_t *const *maps, int32_t max_rows);
void planner_observe_batch(planner *p, int32_t n, const moge_tree *const *trees, const int32_t *const *paths,
                           const int32_t *n_paths, double verify_s, double other_s);

/* Whether the planner decodes plainly and only probes now and then whether speculating pays again
 * (its last drafting steps promised less than the margin over plain decoding). */
bool planner_probing(const planner *p);

/* Bytes of routed-expert weights the context's last forward read (0 for a dense model). */
double planner_expert_bytes(const moge_context *ctx);

/* Predicted tokens/s of the steps so far over plain decoding's (0 before any step). */
double planner_predicted_speedup(const planner *p);

#endif
