/*
 * cmd_bench.c — `moge bench`: throughput of the decoding modes, side by side.
 *
 * Contract:
 *  - Runs the same prompts (--prompts FILE, one per line, blank lines skipped; default: 8
 *    built-in TinyStories-style openings) in each mode of --modes (default none,chain,tree, plus
 *    lookup with --lookup; chain:N and tree:N are a fixed chain of N / dynamic tree of N nodes
 *    without the planner, so one run can sweep sizes). Every prompt is tokenized with add_special
 *    (BOS) and generated from an empty KV cache (moge_kv_truncate(ctx, 0)); moge_generate resets
 *    the drafter. The planner's state lives in the context, so it learns across the prompts.
 *  - The repeats interleave the modes: repeat 1 runs every mode in --modes order (each over all
 *    prompts), then repeat 2 runs every mode, and so on, so that a burst of load on a shared
 *    machine is spread over the modes. Each mode's turn in a repeat starts with one short
 *    untimed generation (16 tokens of the first prompt) that warms its caches.
 *  - A repeat's tokens/s is (tokens generated over all prompts) / (generation seconds after the
 *    prefill over all prompts), as moge_stats.tokens_per_s counts. The table's "tok/s" is the
 *    median over --repeats, "min–max" their range (values of 100 and more without decimals).
 *    The speedup column is headed "x BASE" and is the median tokens/s over the baseline's median:
 *    the baseline is mode none, or when none is not run the first mode listed; JSON "baseline".
 *  - Summed over every prompt and repeat (moge_stats): τ (tokens per target pass, the prefill's
 *    last pass included), acceptance by depth (at most 8 depths shown, all in JSON), "nodes" =
 *    n_draft_nodes / n_forward (draft nodes the target verified per pass after the prefill; "-"
 *    for mode none), "plain" = n_plain_steps / n_forward (steps the planner ran without a tree),
 *    "MB/pass" = expert_bytes_read / n_forward in 10^6 bytes (routed-expert weights read per
 *    pass). "pred" is the mean over the generations (prompts x repeats) of
 *    moge_stats.predicted_speedup, the planner's own estimate of the speedup, to read beside the
 *    measured one. No planner ran (mode none, --no-adaptive, a runtime without the planner:
 *    predicted_speedup and n_plain_steps 0 in every generation): "plain" and "pred" are "-"
 *    (null in JSON). MB/pass is "-" (null) for a dense target and when expert_bytes_read is 0
 *    (not counted). The draft share of time is in the JSON only.
 *  - MoE columns: per MoE layer the mean Imbalance Score and distinct experts over the target's
 *    verification passes (the prefill excluded), then the mean over layers; "-" for dense.
 *  - Greedy (--temp 0): every mode's ids, in every repeat, must equal the baseline's; the table
 *    says yes/NO per mode ("same") and the line under it names the first prompt that differed.
 *    Sampling: "-" (null in JSON).
 *  - JSON per mode, besides the table's numbers: tokens_per_s (median), tokens_per_s_min,
 *    tokens_per_s_max, tokens_per_s_repeats (--repeats numbers, in repeat order), speedup,
 *    predicted_speedup (or null), tau, accept_by_depth, draft_share (drafting's share of the
 *    generation seconds), mean_tree_nodes (0 for none), nodes_proposed_per_pass (n_draft_proposed
 *    / n_forward; null when nodes were verified but none counted as proposed, i.e. the runtime
 *    does not count them), plain_step_share (or null), expert_mb_per_pass (or null),
 *    moe_imbalance and distinct_experts (null for dense), identical (or null), ids (repeat
 *    1's, per prompt) and target_forward_times: where the target context's forwards spent the
 *    timed turns of every repeat (prompt prefills included, the drafter's own context not),
 *    seconds per part of moge_forward_times (qkv, attention, out_proj, mlp, router, experts,
 *    lm_head, other) with their forwards and rows.
 *  - stdout: the table, two lines saying what its columns mean, and one summary line. stderr:
 *    the models used, then a progress bar when stderr is a terminal, else one line per mode and
 *    repeat in the order they ran ("moge bench: repeat 1/3: none 812.4 tokens/s"). --json FILE:
 *    the same as JSON (top level: target, draft, threads, prompts, n_predict, repeats,
 *    temperature, baseline, modes), written to FILE.PID.tmp and renamed.
 *  - Default models: models/tinystories-moge with models/tinystories-draft when both exist (under
 *    ./models or next to the binary), else models/stories260K drafting for itself; a flag given
 *    replaces only its own default. The model, sampling and draft flags are run's and chat's
 *    (cli.h); --lookup adds a mode instead of choosing the drafter, --modes replaces --spec.
 *  - --batch N (1..MOGE_MAX_SEQ; anything else is a usage error naming --batch): each mode's turn
 *    decodes N sequences together through one moge_decoder over a context of N sequences, made
 *    for the batch once the prompts are tokenized (cli_batch_context: n_ctx -c, else the longest
 *    prompt used + n_predict + the largest tree of any mode + 1, at most the model's maximum;
 *    n_batch N x (largest tree + 1), at least 64, at most max(N, CLI_BATCH_ROWS_CAP)). Sequence
 *    k (0-based) generates prompt k mod (number of prompts), so the prompt list cycles; one
 *    drafter serves every sequence (-d or --draft-layers: one draft forward per tree level for
 *    all of them; lookup keeps no state). The warm-up is the whole batch at 16
 *    tokens. The decoder's planner shares each pass among the sequences (planner_choose_batch;
 *    --no-adaptive and chain:N / tree:N turn it off); "pred" is its prediction, "plain" the
 *    sequences' plain steps over their passes. Changed meanings: a repeat's tokens/s is every sequence's tokens over the decoder's
 *    t_decode_s (its steps' time outside prompt prefills; the tokens are the sequences' n_generated,
 *    whose first comes from the prefill, as moge_stats.tokens_per_s counts it); column "tok/s/seq" (JSON
 *    tokens_per_s_per_seq) is that over N; τ is the sequences' tokens over their passes (sums of
 *    n_generated / sums of n_forward + 1: tokens per pass per sequence); "nodes" is draft nodes
 *    verified per sequence per pass; MoE IS and experts are means over the batched verification
 *    passes (each pass's figures, moge_moe_stats of the last forward, after every step);
 *    MB/pass is the decoder's expert_bytes_read / n_passes (per batched pass); draft_share is the
 *    sequences' drafting seconds over the decoder's t_decode_s. "same" compares each sequence's
 *    ids with the baseline's ids of the same sequence, and JSON ids has one list per sequence
 *    (N). JSON adds "batch": N at the top level ("prompts" stays the number of prompts). Three
 *    legend lines (instead of two) under the table say what changed; the summary line says "batch N (sequence k:
 *    prompt k mod P)" instead of "P prompts". Without --batch nothing of this applies.
 *  - Exit 0; 2 for usage errors (the message names the flag); 1 for failures (the message names
 *    the path or prompt).
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"

#define CMD "bench"
#define MAX_MODES 16
#define MAX_SHOWN_DEPTHS 8
#define STR_(x) #x
#define STR(x) STR_(x)

static void usage(FILE *f) {
    fputs("usage: moge bench [options]\n"
          "\n"
          "Generates the same prompts in each decoding mode, the modes taking turns within each repeat,\n"
          "and prints one table: tokens/s (median and range of the repeats), speedup over none and the\n"
          "planner's predicted speedup, tau (tokens per target pass), draft nodes verified per pass, the\n"
          "share of steps run without a tree, acceptance by depth, MoE load (Imbalance Score, distinct\n"
          "experts and routed-expert MB read per pass) and, when greedy, whether every mode produced\n"
          "the same text as none.\n"
          "\n",
          f);
    cli_common_usage(f, &(cli_common_opts){.cmd = CMD, .who = CLI_BENCH},
                     "      --prompts FILE     one prompt per line (default: 8 built-in story openings)\n"
                     "      --repeats R        timed repeats, each running every mode in turn; tokens/s is their\n"
                     "                         median (default 3)\n"
                     "      --modes LIST       comma-separated: none, chain, tree, lookup (default none,chain,tree);\n"
                     "                         chain:N / tree:N: a fixed chain of N / tree of N nodes, no planner\n"
                     "      --batch N          decode N prompts together (one context of N sequences, the prompt\n"
                     "                         list cycling); tok/s counts every sequence's tokens (1.." STR(MOGE_MAX_SEQ) ")\n"
                     "      --json FILE        also write the results as JSON\n");
}

static const char *const builtin_prompts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "Tom had a red ball. One day,",
    "The sun was shining and the birds were singing.",
    "Once upon a time, in a big forest, there lived a small bear.",
    "Sam and his mom went to the park.",
    "One day, a little cat found a shiny box.",
    "Mia wanted to bake a cake for her friend.",
    "There was a big tree near the river. Every day,",
};

/* ------------------------------------------------------------------------------------------ */
/* Options                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef enum { MODE_NONE, MODE_CHAIN, MODE_TREE, MODE_LOOKUP } mode_id;
/* The speculation modes by the library's names, and prompt lookup (a mode of bench's own). */
static const char *mode_name(int m) { return m == MODE_LOOKUP ? "lookup" : moge_spec_name((moge_spec_mode)m); }
_Static_assert((int)MODE_NONE == (int)MOGE_SPEC_NONE && (int)MODE_CHAIN == (int)MOGE_SPEC_CHAIN && (int)MODE_TREE == (int)MOGE_SPEC_TREE, "bench modes are spec modes");

/* A mode of the table: its kind and, for "chain:N" / "tree:N", a fixed size (no planner). */
typedef struct {
    mode_id kind;
    int size;      /* 0: as the flags say */
    char name[24]; /* as listed: "tree", "chain:4" */
} bench_mode;

typedef struct {
    cli_common_opts c; /* the flags run, chat and bench share; c.gp's spec and drafter are set per mode */
    const char *prompts_file, *json;
    int repeats;
    int batch;         /* --batch N: sequences decoded together; 0 = one prompt at a time (moge_generate) */
    bench_mode modes[MAX_MODES];
    int n_modes;
    bool modes_given;
    moge_model_info info; /* the target's, once loaded (its backend and kernel variant) */
} bench_opts;

/* "none,chain,tree:8" -> modes; false after printing an error naming --modes. */
static bool parse_modes(const char *v, bench_opts *o) {
    o->n_modes = 0;
    for (const char *q = v;;) {
        size_t len = strcspn(q, ","), base = strcspn(q, ",:");
        int m = -1;
        long size = 0;
        for (int k = MODE_NONE; k <= MODE_LOOKUP; k++)
            if (strlen(mode_name(k)) == base && !strncmp(q, mode_name(k), base)) m = k;
        if (m >= 0 && base < len) { /* ":N": a fixed chain of N or tree of N nodes */
            char num[16], *end;
            size_t nl = len - base - 1;
            snprintf(num, sizeof num, "%.*s", (int)(nl < 15 ? nl : 15), q + base + 1);
            size = strtol(num, &end, 10);
            if ((m != MODE_CHAIN && m != MODE_TREE) || nl == 0 || nl > 4 || *end || size < 1 || size > (m == MODE_CHAIN ? MOGE_MAX_DEPTH - 1 : 63)) {
                fprintf(stderr, "moge bench: --modes: \"%.*s\": a size is chain:N (N 1..%d) or tree:N (N 1..63)\n", (int)len, q,
                        MOGE_MAX_DEPTH - 1);
                return false;
            }
        }
        if (m < 0 || len >= sizeof o->modes[0].name) {
            fprintf(stderr, "moge bench: --modes: unknown mode \"%.*s\" (expected none, chain, tree, lookup, chain:N or tree:N, comma-separated)\n",
                    (int)len, q);
            return false;
        }
        if (o->n_modes == MAX_MODES) {
            fprintf(stderr, "moge bench: --modes: at most %d modes\n", MAX_MODES);
            return false;
        }
        bench_mode bm = {.kind = (mode_id)m, .size = (int)size};
        snprintf(bm.name, sizeof bm.name, "%.*s", (int)len, q);
        for (int k = 0; k < o->n_modes; k++)
            if (!strcmp(o->modes[k].name, bm.name)) {
                fprintf(stderr, "moge bench: --modes: \"%s\" is listed twice\n", bm.name);
                return false;
            }
        o->modes[o->n_modes++] = bm;
        if (!q[len]) return true;
        q += len + 1;
    }
}

static bool mode_listed(const bench_opts *o, mode_id m) {
    for (int k = 0; k < o->n_modes; k++)
        if (o->modes[k].kind == m) return true;
    return false;
}

static bench_mode plain_mode(mode_id m) {
    bench_mode bm = {.kind = m};
    snprintf(bm.name, sizeof bm.name, "%s", mode_name(m));
    return bm;
}

/* Fills the defaults that depend on other flags and checks the combination. Returns 0 or 2. */
static int finish_opts(bench_opts *o) {
    cli_common_opts *c = &o->c;
    if (!o->modes_given) {
        o->n_modes = 3;
        o->modes[0] = plain_mode(MODE_NONE), o->modes[1] = plain_mode(MODE_CHAIN), o->modes[2] = plain_mode(MODE_TREE);
    }
    if (c->lookup && !mode_listed(o, MODE_LOOKUP) && o->n_modes < MAX_MODES) o->modes[o->n_modes++] = plain_mode(MODE_LOOKUP);
    bool needs_model_drafter = mode_listed(o, MODE_CHAIN) || mode_listed(o, MODE_TREE);
    if (!cli_check_drafters(c) || !cli_default_models(c, needs_model_drafter, true)) return 2;
    if (needs_model_drafter && cli_draft_choice(c) == CLI_DRAFT_NONE) {
        fprintf(stderr, "moge bench: modes chain and tree need a drafter for -m %s: give -d DIR or --draft-layers L "
                        "(or --modes none,lookup)\n", c->model);
        return 2;
    }
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, bench_opts *o) {
    memset(o, 0, sizeof *o);
    cli_common_init(&o->c, CMD, CLI_BENCH);
    o->repeats = 3;
    const char *modes = NULL;
    const cli_flag flags[] = {
        {NULL, "--prompts", CLI_ARG_STR, &o->prompts_file, 0, 0},
        {NULL, "--json", CLI_ARG_STR, &o->json, 0, 0},
        {NULL, "--modes", CLI_ARG_STR, &modes, 0, 0},
        {NULL, "--repeats", CLI_ARG_INT, &o->repeats, 1, 1000},
        {NULL, "--batch", CLI_ARG_INT, &o->batch, 1, MOGE_MAX_SEQ},
    };
    int rc = cli_parse_flags_common(&o->c, flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, usage);
    if (rc >= 0) return rc;
    if (modes && !parse_modes(modes, o)) return 2;
    o->modes_given = modes != NULL;
    rc = finish_opts(o);
    if (!rc && o->json && !cli_check_output(CMD, "--json", o->json)) rc = 2;
    return rc ? rc : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Prompts                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char **text;
    int32_t **ids;
    int32_t *n_ids;
    int n;
} prompt_set;

static void prompts_free(prompt_set *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->text[i]);
        if (p->ids) free(p->ids[i]);
    }
    free(p->text);
    free(p->ids);
    free(p->n_ids);
    memset(p, 0, sizeof *p);
}

/* The prompts of `path` (one a line, blank lines skipped) or the built-in ones. Returns 0 or 1. */
static int prompts_load(const char *path, prompt_set *p) {
    if (path) return cli_read_prompts(CMD, path, &p->text, &p->n) ? 0 : 1;
    int n = (int)(sizeof builtin_prompts / sizeof builtin_prompts[0]);
    if (!(p->text = calloc((size_t)n, sizeof *p->text))) return 1;
    for (; p->n < n; p->n++)
        if (!(p->text[p->n] = strdup(builtin_prompts[p->n]))) return 1;
    return 0;
}

/* Tokenizes every prompt with BOS; checks each fits the context. Returns 0 or 1. */
static int prompts_tokenize(prompt_set *p, const moge_tokenizer *tok, int32_t n_ctx) {
    p->ids = calloc((size_t)p->n, sizeof *p->ids);
    p->n_ids = calloc((size_t)p->n, sizeof *p->n_ids);
    if (!p->ids || !p->n_ids) return 1;
    for (int i = 0; i < p->n; i++) {
        size_t n = 0;
        moge_status st = cli_tokenize(tok, p->text[i], &p->ids[i], &n);
        if (st != MOGE_OK || n == 0 || (int64_t)n > n_ctx) {
            fprintf(stderr, "moge bench: prompt %d (\"%.40s\"): %s\n", i + 1, p->text[i],
                    st != MOGE_OK ? moge_status_str(st) : n == 0 ? "no tokens" : "longer than the context (use -c)");
            return 1;
        }
        p->n_ids[i] = (int32_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Models and drafters                                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    cli_models m;
    moge_drafter *drafter; /* -d or --draft-layers (with --batch serving every sequence); NULL when not given */
    moge_drafter *lookup;  /* NULL unless mode lookup runs */
} bench_env;

static void env_free(bench_env *e) {
    moge_drafter_free(e->lookup);
    moge_drafter_free(e->drafter);
    cli_models_free(&e->m);
}

static moge_generate_params mode_params(const bench_opts *o, const bench_env *e, bench_mode bm);
static int prompts_tokenize(prompt_set *p, const moge_tokenizer *tok, int32_t n_ctx);

/* --batch: the batch's context, just large enough for the prompts used, n_predict and the largest
 * tree of any mode (cli_batch_context). */
static bool batch_context(bench_env *e, const bench_opts *o, const prompt_set *p) {
    int32_t longest = 0, tree = 0;
    for (int i = 0; i < p->n && i < o->batch; i++) longest = p->n_ids[i] > longest ? p->n_ids[i] : longest;
    for (int k = 0; k < o->n_modes; k++) {
        moge_generate_params gp = mode_params(o, e, o->modes[k]);
        tree = cli_tree_nodes(&gp) > tree ? cli_tree_nodes(&gp) : tree;
    }
    return cli_batch_context(&o->c, &e->m, o->batch, longest, tree);
}

/* The model, the prompts' ids and the drafters (with --batch drafters serving every sequence, over
 * a context made for the batch once the prompts' lengths are known). Returns 0 or 1. */
static int env_load(bench_env *e, const bench_opts *o, prompt_set *p) {
    cli_draft_kind kind = cli_draft_choice(&o->c);
    int32_t n_seq = o->batch ? o->batch : 1;
    if (!cli_load_model(&o->c, o->batch ? -1 : 0, &e->m)) return 1;
    if (o->batch && (prompts_tokenize(p, e->m.tok, cli_prompt_limit(&o->c, &e->m)) || !batch_context(e, o, p))) return 1;
    if ((kind != CLI_DRAFT_NONE && !cli_load_drafter(&o->c, kind, &e->m, n_seq, &e->drafter, NULL, 0)) ||
        (mode_listed(o, MODE_LOOKUP) && !cli_load_drafter(&o->c, CLI_DRAFT_LOOKUP, &e->m, n_seq, &e->lookup, NULL, 0)))
        return 1;
    return o->batch ? 0 : prompts_tokenize(p, e->m.tok, cli_prompt_limit(&o->c, &e->m));
}

/* ------------------------------------------------------------------------------------------ */
/* Running one mode                                                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    bench_mode mode;
    double *tps;              /* (repeats) tokens/s of each repeat, in repeat order */
    double tokens_per_s, tps_min, tps_max, speedup; /* median, min and max of tps; median over the baseline's */
    int64_t n_generated, n_passes, tries[MOGE_MAX_DEPTH], hits[MOGE_MAX_DEPTH];
    int64_t n_forward;        /* target passes after the prefills (one per step; per sequence with --batch) */
    int64_t draft_nodes, draft_proposed, plain_steps; /* moge_stats' sums */
    double predicted_sum;     /* moge_stats.predicted_speedup summed over the generations that have one */
    int n_predicted;          /* ... and their count: 0 = no planner ran */
    double expert_bytes;      /* routed-expert bytes the verification passes read ... */
    int64_t expert_passes;    /* ... and those passes (--batch: the decoder's batched passes) */
    double t_draft, t_decode;
    double *moe_is, *moe_distinct, *moe_passes; /* (MoE layers) sums over verification passes */
    int32_t **ids, *n_ids;    /* (prompts; --batch: sequences) ids of repeat 0 */
    bool repeat_differs;      /* a later repeat gave other ids than repeat 0 */
    int identical;            /* greedy: 1 when every repeat equals the baseline's repeat 0, else 0; -1 sampling */
    int diff_prompt, diff_at; /* the first prompt (--batch: sequence) and token that differ from the baseline */
    moge_rank_stats *ranks;   /* (n_ranks) the ranks' figures over the timed turns (a MoE target) */
    int n_ranks;
    moge_forward_times ft;    /* the target context's forwards over the timed turns */
} mode_result;

/* ctx's ranks' figures into snap (n_ranks of them); false when there are none (dense, one process). */
static bool rank_snapshot(moge_context *ctx, moge_rank_stats *snap) {
    return moge_context_n_moe_layers(ctx) > 0 && moge_context_rank_stats(ctx, snap) == MOGE_OK;
}

/* r->ranks += after - before, per rank (expert_bytes and resident_bytes: after's). */
static void rank_add(mode_result *r, const moge_rank_stats *before, const moge_rank_stats *after) {
    for (int i = 0; i < r->n_ranks; i++) {
        moge_rank_stats *a = &r->ranks[i];
        a->rank = after[i].rank;
        a->expert_bytes = after[i].expert_bytes;
        a->resident_bytes = after[i].resident_bytes;
        a->pairs += after[i].pairs - before[i].pairs;
        a->compute_seconds += after[i].compute_seconds - before[i].compute_seconds;
        a->expert_seconds += after[i].expert_seconds - before[i].expert_seconds;
        a->comm_seconds += after[i].comm_seconds - before[i].comm_seconds;
        a->bytes_sent += after[i].bytes_sent - before[i].bytes_sent;
        a->forwards += after[i].forwards - before[i].forwards;
        a->rows += after[i].rows - before[i].rows;
        a->spread_pairs += after[i].spread_pairs - before[i].spread_pairs;
    }
}

/* What a generation's callback collects (one collector per sequence with --batch). */
typedef struct {
    moge_context *ctx; /* NULL: leave the MoE totals alone (--batch reads each pass's figures) */
    int32_t *ids;
    int32_t n, cap;
    int32_t id;        /* --batch: the sequence's id in the decoder */
    bool moe_reset;    /* MoE totals were reset after the prefill */
} collector;

static bool collect(int32_t tok, void *user) {
    collector *c = user;
    if (!c->moe_reset && c->ctx) { /* the first token comes from the prefill: count verification passes only */
        moge_moe_stats_reset(c->ctx);
        c->moe_reset = true;
    }
    if (c->n < c->cap) c->ids[c->n++] = tok;
    return true;
}

/* The generation parameters of a mode (with --batch: of every sequence). */
static moge_generate_params mode_params(const bench_opts *o, const bench_env *e, bench_mode bm) {
    moge_generate_params gp = o->c.gp;
    mode_id m = bm.kind;
    gp.spec = m == MODE_NONE ? MOGE_SPEC_NONE : m == MODE_TREE ? MOGE_SPEC_TREE : MOGE_SPEC_CHAIN;
    gp.drafter = m == MODE_NONE ? NULL : m == MODE_LOOKUP ? e->lookup : e->drafter;
    if (bm.size > 0) { /* chain:N, tree:N: that tree every step */
        gp.adaptive = false;
        if (m == MODE_CHAIN) gp.draft.draft_max = bm.size;
        else gp.draft.tree_nodes = bm.size;
    }
    return gp;
}

/* Adds MoE figures to the mode's sums: this generation's totals (verification passes), or with
 * totals false the last forward's (--batch: the step's pass). */
static void add_moe(mode_result *r, const moge_context *ctx, bool totals) {
    for (int l = 0; l < moge_context_n_moe_layers(ctx); l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(ctx, l, totals, &ms) != MOGE_OK || ms.n_forwards == 0) continue;
        r->moe_is[l] += ms.imbalance * (double)ms.n_forwards;
        r->moe_distinct[l] += ms.distinct_experts * (double)ms.n_forwards;
        r->moe_passes[l] += (double)ms.n_forwards;
    }
}

/* Adds one sequence's statistics; the time and the expert bytes per pass are the caller's (a
 * batch's are the decoder's). */
static void add_stats(mode_result *r, const moge_stats *st) {
    r->n_generated += st->n_generated;
    r->n_passes += st->n_forward + 1;
    r->n_forward += st->n_forward;
    r->draft_nodes += st->n_draft_nodes;
    r->draft_proposed += st->n_draft_proposed;
    r->plain_steps += st->n_plain_steps;
    if (st->predicted_speedup > 0) r->predicted_sum += st->predicted_speedup, r->n_predicted++;
    for (int d = 0; d < MOGE_MAX_DEPTH; d++) r->tries[d] += st->accept_tries[d], r->hits[d] += st->accept_hits[d];
    r->t_draft += st->t_draft_s;
}

/* Generates prompt i from an empty cache into col; returns 0 or 1 after printing an error. */
static int generate_one(bench_env *e, const prompt_set *p, int i, const moge_generate_params *gp, collector *col,
                        moge_stats *st) {
    col->n = 0;
    col->moe_reset = false;
    moge_kv_truncate(e->m.ctx, 0);
    moge_status s = moge_generate(e->m.ctx, p->ids[i], p->n_ids[i], gp, collect, col, st);
    if (s != MOGE_OK) {
        const char *msg = moge_context_error(e->m.ctx);
        fprintf(stderr, "moge bench: prompt %d: %s\n", i + 1, msg[0] ? msg : moge_status_str(s));
        return 1;
    }
    return 0;
}

/* --batch: sequence k (prompt k mod prompts, drafter k) of the batch for every k, n_predict tokens
 * each, through one decoder over e's context, into cols[k]. With r, adds every sequence's
 * statistics and every pass's MoE figures to r. *ds: the decoder's totals; *gen: the tokens every
 * sequence generated (moge_stats.n_generated: the first, which the prefill gives, included).
 * Returns 0, or 1 after printing an error. */
static int generate_batch(bench_env *e, const bench_opts *o, const prompt_set *p, bench_mode bm, int32_t n_predict, collector *cols,
                          mode_result *r, moge_decoder_stats *ds, int64_t *gen) {
    moge_context *ctx = e->m.ctx;
    moge_decoder *dec = NULL;
    moge_status st = moge_decoder_new(ctx, &dec);
    for (int k = 0; k < o->batch && st == MOGE_OK; k++) {
        moge_generate_params gp = mode_params(o, e, bm);
        gp.n_predict = n_predict;
        cols[k].n = 0;
        st = moge_decoder_add(dec, p->ids[k % p->n], p->n_ids[k % p->n], &gp, collect, &cols[k], &cols[k].id);
    }
    int64_t passes = 0;
    *gen = 0;
    for (int32_t running = 1; st == MOGE_OK && running > 0;) {
        st = moge_decoder_step(dec, &running);
        moge_decoder_get_stats(dec, ds);
        if (r && ds->n_passes > passes) add_moe(r, ctx, false);
        passes = ds->n_passes;
    }
    for (int k = 0; k < o->batch && st == MOGE_OK; k++) {
        moge_stats s;
        moge_status seq_st = MOGE_OK;
        st = moge_decoder_seq_stats(dec, cols[k].id, &s, NULL, &seq_st);
        if (st == MOGE_OK && seq_st != MOGE_OK) {
            fprintf(stderr, "moge bench: --batch, mode %s, sequence %d (prompt %d): %s\n", bm.name, k + 1, k % p->n + 1, moge_status_str(seq_st));
            moge_decoder_free(dec);
            return 1;
        }
        if (st == MOGE_OK && r) add_stats(r, &s);
        if (st == MOGE_OK) *gen += s.n_generated;
    }
    moge_decoder_free(dec);
    if (st != MOGE_OK) {
        const char *msg = moge_context_error(ctx);
        fprintf(stderr, "moge bench: --batch %d, mode %s: %s\n", o->batch, bm.name, msg[0] ? msg : moge_status_str(st));
        return 1;
    }
    return 0;
}

/* Keeps repeat 0's ids of prompt (--batch: sequence) i; later repeats are compared with them. */
static int record_ids(mode_result *r, int i, int rep, const collector *col) {
    if (rep > 0) {
        if (col->n != r->n_ids[i] || memcmp(col->ids, r->ids[i], (size_t)col->n * sizeof(int32_t)))
            r->repeat_differs = true;
        return 0;
    }
    if (!(r->ids[i] = malloc(((size_t)col->n + 1) * sizeof(int32_t)))) return 1;
    memcpy(r->ids[i], col->ids, (size_t)col->n * sizeof(int32_t));
    r->n_ids[i] = col->n;
    return 0;
}

/* Progress on stderr: a bar redrawn after each generation (--batch: each batch) when stderr is a
 * terminal. */
typedef struct {
    bool tty;
    int done, total;
} progress;

static void progress_draw(const progress *pg, const char *mode, int rep, int repeats) {
    if (!pg->tty) return;
    int width = 30, fill = pg->total ? pg->done * width / pg->total : width;
    fprintf(stderr, "\r\033[Kmoge bench [");
    for (int k = 0; k < width; k++) fputc(k < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d  %s, repeat %d/%d", pg->done, pg->total, mode, rep + 1, repeats);
    fflush(stderr);
}

/* Without a terminal: one line per mode and repeat, in the order they ran. */
static void progress_turn_done(const progress *pg, const mode_result *r, int rep, int repeats) {
    if (pg->tty) return;
    fprintf(stderr, "moge bench: repeat %d/%d: %s %.1f tokens/s\n", rep + 1, repeats, r->mode.name, r->tps[rep]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* One untimed short generation so the mode's timed run does not pay for caches another mode left
 * cold (the drafter's, the allocator's): 16 tokens of the first prompt, or with --batch of the
 * whole batch. */
static int warm_up(bench_env *e, const bench_opts *o, const prompt_set *p, bench_mode bm, collector *cols) {
    moge_generate_params gp = mode_params(o, e, bm);
    gp.n_predict = gp.n_predict < 16 ? gp.n_predict : 16;
    moge_stats st;
    moge_decoder_stats ds;
    int64_t gen;
    return o->batch ? generate_batch(e, o, p, bm, gp.n_predict, cols, NULL, &ds, &gen) : generate_one(e, p, 0, &gp, cols, &st);
}

/* Repeat `rep` of one mode: a warm-up, then every prompt (--batch: the batch), timed. */
static int run_turn(bench_env *e, const bench_opts *o, const prompt_set *p, mode_result *r, int rep, collector *cols, progress *pg) {
    moge_generate_params gp = mode_params(o, e, r->mode);
    if (warm_up(e, o, p, r->mode, cols)) return 1;
    moge_forward_times ft0, ft1;
    moge_forward_times_get(e->m.ctx, &ft0);
    moge_rank_stats *before = r->ranks + r->n_ranks, *after = before + r->n_ranks; /* scratch after the totals */
    bool ranks = r->n_ranks > 0 && rank_snapshot(e->m.ctx, before);
    int64_t gen = 0;
    double secs = 0;
    if (o->batch) {
        progress_draw(pg, r->mode.name, rep, o->repeats);
        moge_decoder_stats ds;
        if (generate_batch(e, o, p, r->mode, gp.n_predict, cols, r, &ds, &gen)) return 1;
        for (int k = 0; k < o->batch; k++)
            if (record_ids(r, k, rep, &cols[k])) return 1;
        secs = ds.t_decode_s;
        r->expert_bytes += ds.expert_bytes_read;
        r->expert_passes += ds.n_passes;
        pg->done += o->batch;
    }
    for (int i = 0; i < p->n && !o->batch; i++) {
        progress_draw(pg, r->mode.name, rep, o->repeats);
        moge_stats st;
        if (generate_one(e, p, i, &gp, cols, &st) || record_ids(r, i, rep, cols)) return 1;
        if (cols->moe_reset) add_moe(r, e->m.ctx, true);
        add_stats(r, &st);
        r->expert_bytes += st.expert_bytes_read;
        r->expert_passes += st.n_forward;
        gen += st.n_generated;
        secs += st.t_decode_s;
        pg->done++;
    }
    if (ranks && rank_snapshot(e->m.ctx, after)) rank_add(r, before, after);
    moge_forward_times_get(e->m.ctx, &ft1);
    for (int i = 0; i < MOGE_N_PARTS; i++) r->ft.seconds[i] += ft1.seconds[i] - ft0.seconds[i];
    r->ft.forwards += ft1.forwards - ft0.forwards;
    r->ft.rows += ft1.rows - ft0.rows;
    r->t_decode += secs;
    r->tps[rep] = secs > 0 ? (double)gen / secs : 0;
    progress_draw(pg, r->mode.name, rep, o->repeats);
    progress_turn_done(pg, r, rep, o->repeats);
    return 0;
}

/* The repeats interleave the modes (repeat 1 runs every mode, then repeat 2, ...), so a burst of
 * load on a shared machine slows every mode a little rather than one mode a lot. */
static int run_all(bench_env *e, const bench_opts *o, const prompt_set *p, mode_result *r, collector *cols, progress *pg) {
    for (int rep = 0; rep < o->repeats; rep++)
        for (int k = 0; k < o->n_modes; k++)
            if (run_turn(e, o, p, &r[k], rep, cols, pg)) return 1;
    for (int k = 0; k < o->n_modes; k++) {
        r[k].tokens_per_s = median(r[k].tps, o->repeats);
        r[k].tps_min = r[k].tps_max = r[k].tps[0];
        for (int rep = 1; rep < o->repeats; rep++) {
            if (r[k].tps[rep] < r[k].tps_min) r[k].tps_min = r[k].tps[rep];
            if (r[k].tps[rep] > r[k].tps_max) r[k].tps_max = r[k].tps[rep];
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Results                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static int results_alloc(mode_result *r, int n_modes, const bench_opts *o, int n_prompts, int n_moe, int n_ranks) {
    for (int k = 0; k < n_modes; k++) {
        r[k].mode = o->modes[k];
        r[k].n_ranks = n_moe > 0 ? n_ranks : 0;
        if (r[k].n_ranks && !(r[k].ranks = calloc((size_t)n_ranks * 3, sizeof *r[k].ranks))) return 1; /* totals, before, after */
        r[k].identical = -1;
        r[k].diff_prompt = -1;
        r[k].tps = calloc((size_t)o->repeats, sizeof(double));
        r[k].ids = calloc((size_t)n_prompts, sizeof(int32_t *));
        r[k].n_ids = calloc((size_t)n_prompts, sizeof(int32_t));
        r[k].moe_is = calloc((size_t)n_moe + 1, sizeof(double));
        r[k].moe_distinct = calloc((size_t)n_moe + 1, sizeof(double));
        r[k].moe_passes = calloc((size_t)n_moe + 1, sizeof(double));
        if (!r[k].tps || !r[k].ids || !r[k].n_ids || !r[k].moe_is || !r[k].moe_distinct || !r[k].moe_passes) return 1;
    }
    return 0;
}

static void results_free(mode_result *r, int n_modes, int n_prompts) {
    for (int k = 0; k < n_modes; k++) {
        for (int i = 0; r[k].ids && i < n_prompts; i++) free(r[k].ids[i]);
        free(r[k].ids);
        free(r[k].n_ids);
        free(r[k].tps);
        free(r[k].moe_is);
        free(r[k].moe_distinct);
        free(r[k].moe_passes);
        free(r[k].ranks);
    }
}

/* The mean over MoE layers of a per-layer mean over passes; < 0 when the model is dense. */
static double moe_mean(const double *sums, const double *passes, int n_moe) {
    double total = 0;
    int n = 0;
    for (int l = 0; l < n_moe; l++)
        if (passes[l] > 0) total += sums[l] / passes[l], n++;
    return n ? total / n : -1;
}

/* The index of the baseline: mode none, else the first mode. */
static int baseline(const mode_result *r, int n_modes) {
    for (int k = 0; k < n_modes; k++)
        if (r[k].mode.kind == MODE_NONE) return k;
    return 0;
}

/* Speedups and, when greedy, the identity of every mode's ids with the baseline's. */
static void compare_modes(mode_result *r, int n_modes, int base, int n_prompts, bool greedy) {
    for (int k = 0; k < n_modes; k++) {
        r[k].speedup = r[base].tokens_per_s > 0 ? r[k].tokens_per_s / r[base].tokens_per_s : 0;
        if (!greedy) continue;
        r[k].identical = !r[k].repeat_differs;
        for (int i = 0; i < n_prompts && r[k].identical; i++) {
            int32_t n = r[k].n_ids[i] < r[base].n_ids[i] ? r[k].n_ids[i] : r[base].n_ids[i], t = 0;
            while (t < n && r[k].ids[i][t] == r[base].ids[i][t]) t++;
            if (t < n || r[k].n_ids[i] != r[base].n_ids[i]) {
                r[k].identical = 0;
                r[k].diff_prompt = i;
                r[k].diff_at = t;
            }
        }
    }
}

static bool speculative(const mode_result *r) { return r->mode.kind != MODE_NONE; }

/* Draft nodes the target verified per pass after the prefill (0 for mode none). */
static double mean_tree_nodes(const mode_result *r) { return r->n_forward ? (double)r->draft_nodes / r->n_forward : 0; }

/* Draft nodes proposed per pass; < 0 when the runtime did not count them (none proposed but some
 * verified: a runtime without the planner leaves n_draft_proposed 0). */
static double nodes_proposed_per_pass(const mode_result *r) {
    if (r->draft_proposed == 0 && r->draft_nodes > 0) return -1;
    return r->n_forward ? (double)r->draft_proposed / r->n_forward : 0;
}

/* The share of steps the planner ran without a tree; < 0 when no planner ran (mode none,
 * --no-adaptive, a runtime without the planner). */
static double plain_step_share(const mode_result *r) {
    if ((r->n_predicted == 0 && r->plain_steps == 0) || r->n_forward == 0) return -1;
    return (double)r->plain_steps / r->n_forward;
}

/* The mean of the generations' predicted speedups; < 0 when no planner ran. */
static double predicted_speedup(const mode_result *r) { return r->n_predicted ? r->predicted_sum / r->n_predicted : -1; }

/* Routed-expert MB (10^6 bytes) read per target pass after the prefill; < 0 for a dense target
 * or a runtime that does not count them. */
static double expert_mb_per_pass(const mode_result *r, int n_moe) {
    if (n_moe == 0 || r->expert_bytes <= 0 || r->expert_passes == 0) return -1;
    return r->expert_bytes / 1e6 / r->expert_passes;
}

static void fmt_accept(const mode_result *r, char *s, size_t cap) {
    size_t len = 0;
    s[0] = 0;
    int shown = 0;
    for (int d = 1; d < MOGE_MAX_DEPTH && r->tries[d] > 0 && len < cap; d++) {
        if (shown == MAX_SHOWN_DEPTHS) {
            snprintf(s + len, cap - len, " …");
            return;
        }
        len += (size_t)snprintf(s + len, cap - len, "%s%.2f", shown ? " " : "", (double)r->hits[d] / r->tries[d]);
        shown++;
    }
    if (!shown) snprintf(s, cap, "-");
}

/* Display width of UTF-8 text (one column per code point). */
static int width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

enum {
    COL_MODE, COL_TPS, COL_RANGE, COL_TPS_SEQ, COL_SPEEDUP, COL_PREDICTED, COL_TAU, COL_NODES, COL_PLAIN, COL_ACCEPT, COL_IS, COL_EXPERTS,
    COL_MB, COL_IDENTICAL, N_COLS
};

/* tokens/s with one decimal below 100, none above (the repeats differ by more than that). */
static void fmt_rate(char *s, size_t cap, double v) { snprintf(s, cap, v < 100 ? "%.1f" : "%.0f", v); }

/* v with fmt, or "-" when v < 0 (not measured). */
static void fmt_opt(char *s, size_t cap, const char *fmt, double v) {
    if (v < 0) snprintf(s, cap, "-");
    else snprintf(s, cap, fmt, v);
}

/* --batch N: tokens/s per sequence, the aggregate's share of one sequence. */
static double tps_per_seq(const mode_result *r, int batch) { return r->tokens_per_s / batch; }

static void fill_row(const mode_result *r, int n_moe, int batch, char cell[N_COLS][128]) {
    double is = moe_mean(r->moe_is, r->moe_passes, n_moe), ex = moe_mean(r->moe_distinct, r->moe_passes, n_moe);
    char lo[32], hi[32];
    snprintf(cell[COL_MODE], 128, "%s", r->mode.name);
    fmt_rate(cell[COL_TPS], 128, r->tokens_per_s);
    fmt_rate(lo, sizeof lo, r->tps_min);
    fmt_rate(hi, sizeof hi, r->tps_max);
    snprintf(cell[COL_RANGE], 128, "%s–%s", lo, hi);
    if (batch) fmt_rate(cell[COL_TPS_SEQ], 128, tps_per_seq(r, batch));
    else cell[COL_TPS_SEQ][0] = 0; /* not shown */
    snprintf(cell[COL_SPEEDUP], 128, "%.2f", r->speedup);
    fmt_opt(cell[COL_PREDICTED], 128, "%.2f", predicted_speedup(r));
    snprintf(cell[COL_TAU], 128, "%.2f", r->n_passes ? (double)r->n_generated / r->n_passes : 0);
    fmt_opt(cell[COL_NODES], 128, "%.1f", speculative(r) ? mean_tree_nodes(r) : -1);
    fmt_opt(cell[COL_PLAIN], 128, "%.0f%%", plain_step_share(r) < 0 ? -1 : 100 * plain_step_share(r));
    fmt_accept(r, cell[COL_ACCEPT], 128);
    fmt_opt(cell[COL_IS], 128, "%.3f", is);
    fmt_opt(cell[COL_EXPERTS], 128, "%.1f", ex);
    fmt_opt(cell[COL_MB], 128, "%.2f", expert_mb_per_pass(r, n_moe));
    snprintf(cell[COL_IDENTICAL], 128, "%s", r->identical < 0 ? "-" : r->identical ? "yes" : "NO");
}

static void print_cell(const char *s, int w, bool left, bool last) {
    int pad = w - width(s);
    if (!left) printf("%*s", pad, "");
    fputs(s, stdout);
    if (left && !last) printf("%*s", pad, "");
    if (!last) fputs("  ", stdout);
}

/* The table, then what its less obvious columns mean. Column tok/s/seq with --batch only. */
static void print_table(const mode_result *r, int n_modes, int base, int n_moe, const bench_opts *o) {
    char speedup_head[32];
    snprintf(speedup_head, sizeof speedup_head, "x %s", r[base].mode.name);
    const char *head[N_COLS] = {"mode", "tok/s", "min–max", "tok/s/seq", speedup_head, "pred", "τ", "nodes", "plain",
                                "accept by depth", "MoE IS", "experts", "MB/pass", "same"};
    static const bool left[N_COLS] = {true, false, false, false, false, false, false, false, false, true, false, false, false, true};
    char cells[MAX_MODES][N_COLS][128];
    int w[N_COLS];
    for (int c = 0; c < N_COLS; c++) w[c] = width(head[c]);
    for (int k = 0; k < n_modes; k++) {
        fill_row(&r[k], n_moe, o->batch, cells[k]);
        for (int c = 0; c < N_COLS; c++) w[c] = width(cells[k][c]) > w[c] ? width(cells[k][c]) : w[c];
    }
    for (int row = -1; row < n_modes; row++) {
        for (int c = 0; c < N_COLS; c++)
            if (c != COL_TPS_SEQ || o->batch) print_cell(row < 0 ? head[c] : cells[row][c], w[c], left[c], c == N_COLS - 1);
        fputc('\n', stdout);
    }
    const char *b = r[base].mode.name;
    int n = o->repeats;
    if (o->batch)
        printf("tok/s: all %d sequences' tokens per second of the batched decode, median of %d interleaved repeat%s (min–max: their range)\n"
               "tok/s/seq: tok/s / %d; x %s: tok/s over mode %s; pred: the planner's x %s; τ: tokens per pass per sequence\n"
               "nodes: draft nodes verified per sequence per pass; plain: steps without a tree; MB/pass: routed-expert weights read per pass (all sequences)\n",
               o->batch, n, n == 1 ? "" : "s", o->batch, b, b, b);
    else
        printf("tok/s: median of %d interleaved repeat%s (min–max: their range); x %s: tok/s over mode %s; pred: the planner's x %s\n"
               "nodes: draft nodes verified per target pass; plain: steps without a tree; MB/pass: routed-expert weights read per pass\n",
               n, n == 1 ? "" : "s", b, b, b);
}

static int n_threads(const bench_opts *o) {
    return o->c.mp.n_threads > 0 ? o->c.mp.n_threads : moge_cpu_default_threads();
}

/* "models/x", "first L layers of the target", or "none" (lookup / none only). */
static void draft_text(const bench_opts *o, char *s, size_t cap) {
    if (o->c.draft) snprintf(s, cap, "%s", o->c.draft);
    else if (o->c.draft_layers > 0) snprintf(s, cap, "the target's first %d layers", o->c.draft_layers);
    else snprintf(s, cap, "none");
}

static void print_summary(const bench_opts *o, const mode_result *r, int n_modes, int base, int n_prompts) {
    char draft[256];
    draft_text(o, draft, sizeof draft);
    int t = n_threads(o);
    char where[256];
    cli_backend_desc(&o->info, where, sizeof where);
    printf("target %s, draft %s, %s, %d thread%s, ", o->c.model, draft, where, t, t == 1 ? "" : "s");
    if (o->batch) printf("batch %d (sequence k: prompt k mod %d), ", o->batch, n_prompts);
    else printf("%d prompt%s, ", n_prompts, n_prompts == 1 ? "" : "s");
    printf("%d tokens each, %d repeat%s; ", o->c.gp.n_predict, o->repeats, o->repeats == 1 ? "" : "s");
    if (o->c.gp.sampler.temperature > 0) {
        printf("temperature %g: outputs are sampled, not compared\n", o->c.gp.sampler.temperature);
        return;
    }
    bool all = true;
    for (int k = 0; k < n_modes; k++) {
        if (r[k].identical) continue;
        if (r[k].diff_prompt >= 0 && o->batch)
            printf("%s%s differs from %s on sequence %d (prompt %d, token %d)", all ? "" : "; ", r[k].mode.name, r[base].mode.name,
                   r[k].diff_prompt + 1, r[k].diff_prompt % n_prompts + 1, r[k].diff_at + 1);
        else if (r[k].diff_prompt >= 0)
            printf("%s%s differs from %s on prompt %d (token %d)", all ? "" : "; ", r[k].mode.name, r[base].mode.name,
                   r[k].diff_prompt + 1, r[k].diff_at + 1);
        else
            printf("%s%s gave different text in different repeats", all ? "" : "; ", r[k].mode.name);
        all = false;
    }
    printf("%s\n", all ? "all modes produced identical text" : "");
}

/* An expert-parallel job (mpirun): per mode, each rank's share of the timed turns (stdout). */
static void print_ranks(const mode_result *r, int n_modes) {
    for (int k = 0; k < n_modes && r[k].n_ranks > 1; k++) {
        char label[64];
        snprintf(label, sizeof label, "%s: ", r[k].mode.name);
        cli_ranks_out(NULL, stdout, CMD, label, r[k].ranks, r[k].n_ranks);
    }
}

static cJSON *ids_json(const mode_result *r, int n_prompts) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n_prompts; i++) {
        cJSON *ids = cJSON_CreateArray();
        for (int32_t t = 0; t < r->n_ids[i]; t++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->ids[i][t]));
        cJSON_AddItemToArray(a, ids);
    }
    return a;
}

/* v, or null when v < 0 (not measured). */
static void add_opt(cJSON *o, const char *key, double v) {
    if (v < 0) cJSON_AddNullToObject(o, key);
    else cJSON_AddNumberToObject(o, key, v);
}

/* n_items: id lists (prompts; --batch: sequences). */
static cJSON *mode_json(const mode_result *r, int n_moe, int n_items, int repeats, int batch) {
    cJSON *m = cJSON_CreateObject();
    double is = moe_mean(r->moe_is, r->moe_passes, n_moe), ex = moe_mean(r->moe_distinct, r->moe_passes, n_moe);
    cJSON_AddStringToObject(m, "mode", r->mode.name);
    cJSON_AddNumberToObject(m, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(m, "tokens_per_s_min", r->tps_min);
    cJSON_AddNumberToObject(m, "tokens_per_s_max", r->tps_max);
    cJSON_AddItemToObject(m, "tokens_per_s_repeats", cJSON_CreateDoubleArray(r->tps, repeats));
    if (batch) cJSON_AddNumberToObject(m, "tokens_per_s_per_seq", tps_per_seq(r, batch));
    cJSON_AddNumberToObject(m, "speedup", r->speedup);
    add_opt(m, "predicted_speedup", predicted_speedup(r));
    cJSON_AddNumberToObject(m, "tau", r->n_passes ? (double)r->n_generated / r->n_passes : 0);
    cJSON *acc = cJSON_AddArrayToObject(m, "accept_by_depth");
    for (int d = 1; d < MOGE_MAX_DEPTH && r->tries[d] > 0; d++) cJSON_AddItemToArray(acc, cJSON_CreateNumber((double)r->hits[d] / r->tries[d]));
    cJSON_AddNumberToObject(m, "draft_share", speculative(r) && r->t_decode > 0 ? r->t_draft / r->t_decode : 0);
    cJSON_AddNumberToObject(m, "mean_tree_nodes", mean_tree_nodes(r));
    add_opt(m, "nodes_proposed_per_pass", nodes_proposed_per_pass(r));
    add_opt(m, "plain_step_share", plain_step_share(r));
    add_opt(m, "expert_mb_per_pass", expert_mb_per_pass(r, n_moe));
    if (is >= 0) cJSON_AddNumberToObject(m, "moe_imbalance", is); else cJSON_AddNullToObject(m, "moe_imbalance");
    if (ex >= 0) cJSON_AddNumberToObject(m, "distinct_experts", ex); else cJSON_AddNullToObject(m, "distinct_experts");
    if (r->identical < 0) cJSON_AddNullToObject(m, "identical"); else cJSON_AddBoolToObject(m, "identical", r->identical);
    cJSON_AddItemToObject(m, "ids", ids_json(r, n_items));
    cli_forward_times_out(m, "target_forward_times", NULL, CMD, "", &r->ft);
    if (r->n_ranks > 0) cli_ranks_out(m, NULL, CMD, "", r->ranks, r->n_ranks);
    return m;
}

static int write_json(const bench_opts *o, const mode_result *r, int n_modes, int base, int n_prompts, int n_moe) {
    char draft[256];
    draft_text(o, draft, sizeof draft);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "target", o->c.model);
    cJSON_AddStringToObject(root, "draft", draft);
    cli_json_backend(root, &o->info);
    cJSON_AddNumberToObject(root, "threads", n_threads(o));
    cJSON_AddNumberToObject(root, "prompts", n_prompts);
    if (o->batch) cJSON_AddNumberToObject(root, "batch", o->batch);
    cJSON_AddNumberToObject(root, "n_predict", o->c.gp.n_predict);
    cJSON_AddNumberToObject(root, "repeats", o->repeats);
    cJSON_AddNumberToObject(root, "temperature", o->c.gp.sampler.temperature);
    cJSON_AddStringToObject(root, "baseline", r[base].mode.name);
    cJSON *modes = cJSON_AddArrayToObject(root, "modes");
    for (int k = 0; k < n_modes; k++) cJSON_AddItemToArray(modes, mode_json(&r[k], n_moe, o->batch ? o->batch : n_prompts, o->repeats, o->batch));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = text && cli_write_text(CMD, "--json", o->json, text) ? 0 : 1;
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The command                                                                                */
/* ------------------------------------------------------------------------------------------ */

static void print_models(const bench_opts *o) {
    char draft[256];
    draft_text(o, draft, sizeof draft);
    fprintf(stderr, "moge bench: target %s%s, draft %s%s\n", o->c.model, o->c.model_default ? " (default)" : "", draft,
            o->c.draft_default ? " (default)" : "");
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    prompt_set p = {0};
    if (prompts_load(o.prompts_file, &p)) {
        prompts_free(&p);
        return 1;
    }
    print_models(&o);
    bench_env e = {0};
    mode_result r[MAX_MODES];
    memset(r, 0, sizeof r);
    int n_cols = o.batch ? o.batch : 1, n_items = o.batch ? o.batch : p.n; /* collectors; id lists per mode */
    collector *cols = calloc((size_t)n_cols, sizeof *cols);
    rc = 1;
    if (!cols || env_load(&e, &o, &p)) goto done;
    o.info = e.m.info;
    int n_moe = moge_context_n_moe_layers(e.m.ctx);
    for (int k = 0; k < n_cols; k++) {
        cols[k].ctx = o.batch ? NULL : e.m.ctx;
        cols[k].cap = o.c.gp.n_predict;
        if (!(cols[k].ids = malloc((size_t)o.c.gp.n_predict * sizeof *cols[k].ids))) goto oom;
    }
    if (results_alloc(r, o.n_modes, &o, n_items, n_moe, moge_context_n_ranks(e.m.ctx))) goto oom;
    progress pg = {.tty = isatty(STDERR_FILENO), .total = o.n_modes * o.repeats * n_items};
    if (run_all(&e, &o, &p, r, cols, &pg)) goto done;
    if (pg.tty) fputs("\r\033[K", stderr);
    int base = baseline(r, o.n_modes);
    compare_modes(r, o.n_modes, base, n_items, o.c.gp.sampler.temperature == 0);
    print_table(r, o.n_modes, base, n_moe, &o);
    print_summary(&o, r, o.n_modes, base, p.n);
    print_ranks(r, o.n_modes);
    fflush(stdout);
    rc = o.json ? write_json(&o, r, o.n_modes, base, p.n, n_moe) : 0;
    goto done;
oom:
    fprintf(stderr, "moge bench: out of memory\n");
done:
    for (int k = 0; cols && k < n_cols; k++) free(cols[k].ids);
    free(cols);
    results_free(r, o.n_modes, n_items);
    env_free(&e);
    prompts_free(&p);
    return rc;
}
