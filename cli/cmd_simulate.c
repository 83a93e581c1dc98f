/*
 * cmd_simulate.c — `moge simulate`: how fast a model would decode on Ascend NPUs, as modelled by
 * moge_simulate() (sim/: public hardware figures, an op-level roofline, collectives, two constants
 * fitted to the Pangu Pro MoE paper). Nothing runs on an NPU: every line printed says "modelled".
 *
 * Contract:
 *  - -m DIR | config.json (a model directory, a pulled OWNER/NAME, or a bare config.json); the
 *    shapes of the paper's models ship in models/configs/. --device, --cards, --batch, --context,
 *    --attn-tp, --quant w8a8|fp16, --kv int8|fp16, --routing moge|topk, --routing-stats FILE
 *    (`moge eval --json` output: its per-expert hits replace uniform routing frequencies).
 *  - Speculation: --spec-rows K (rows verified per sequence: root and draft nodes) with --tau T
 *    (accepted tokens per step), or --spec-from FILE (`moge bench --json`: the tree mode's measured
 *    tau and mean tree nodes, else the chain's), --draft-layers N (drafter layers per level).
 *  - --paper: the paper's decode rows against the model (models/configs under the working
 *    directory or next to the binary), which rows the constants were fitted to, and the tau that
 *    reproduces each speculation row; --tau T (default 1.85) is the stated tau its prediction uses.
 *  - --json FILE: the result (or the table) as JSON, written to FILE.PID.tmp and renamed ("-":
 *    stdout). Exit 0; 2 for usage errors (the message names the flag); 1 when the model or a file
 *    cannot be read.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"
#include "moge_hub.h"

#define CMD "simulate"
#define PAPER_TAU 1.85 /* stated: DeepSeek-V3's MTP head accepts its one draft token 85-90 % of the time */

static void usage(FILE *f) {
    fputs("usage: moge simulate -m DIR|config.json [--device 800I-A2|300I-Duo] [--cards N] [--batch B | --latency MS]\n"
          "                     [--context L] [--quant w8a8|fp16] [--kv int8|fp16] [--attn-tp N]\n"
          "                     [--routing moge|topk] [--routing-stats EVAL.json]\n"
          "                     [--spec-rows K --tau T | --spec-from BENCH.json] [--draft-layers N] [--json FILE]\n"
          "       moge simulate --paper [--tau T] [--json FILE]\n"
          "\n"
          "Models one decode step of the model on Ascend NPUs: every matmul, grouped expert matmul,\n"
          "attention and collective, each max(bytes / bandwidth, ops / compute) on the slowest chip,\n"
          "from public hardware figures (sim/devices.c cites them) and two constants fitted to the\n"
          "Pangu Pro MoE paper's batch-1 step and 1148 tokens/s. A model, not a measurement: no NPU runs.\n"
          "\n"
          "  -m, --model M         a model directory, a pulled OWNER/NAME or a config.json (shapes of the\n"
          "                        paper's models: models/configs/pangu-pro-moe-72b, qwen2.5-32b, qwen2.5-72b)\n"
          "      --device D        800I-A2 (910B4 NPUs; default) or 300I-Duo (two 310P3 chips per card)\n"
          "      --cards N         cards of one server (default 4)\n"
          "      --batch B         sequences decoded together (default 1)\n"
          "      --latency MS      instead of --batch: the largest batch whose time per token of a sequence\n"
          "                        (step / tau) is at most MS and whose weights and KV fit in memory\n"
          "      --context L       KV positions each sequence attends to (default 2048)\n"
          "      --quant Q         w8a8 (int8 weights and activations; default) or fp16\n"
          "      --kv F            KV cache int8 (default) or fp16\n"
          "      --attn-tp N       attention tensor parallelism (default half the chips: DP2 x TP)\n"
          "      --routing R       MoE rule to model: moge or topk (default the config's)\n"
          "      --routing-stats F per-expert routing frequencies from `moge eval --json` (default uniform)\n"
          "      --spec-rows K     rows verified per sequence per step (root + draft nodes; default 1)\n"
          "      --tau T           accepted tokens per step (1..K)\n"
          "      --spec-from F     K and tau measured by `moge bench --json` (tree mode, else chain)\n"
          "      --draft-layers N  drafter layers per draft level (default 1: an MTP head)\n"
          "      --paper           the paper's decode rows against the model\n"
          "      --json FILE       write the result as JSON (- for stdout)\n",
          f);
}

typedef struct {
    const char *model, *json, *spec_from;
    bool paper, tau_given, batch_given;
    double latency_ms; /* --latency: the largest batch whose time per token is at most this; 0 = off */
    moge_simulate_params p;
} sim_opts;

typedef struct {
    const char *name;
    int value;
} choice;

/* The value of flag's word v among the two choices c; false after printing an error naming both. */
static bool pick(const char *flag, const char *v, const choice c[2], int *out) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(v, c[i].name)) {
            *out = c[i].value;
            return true;
        }
    fprintf(stderr, "moge simulate: %s: \"%s\" is not %s or %s\n", flag, v, c[0].name, c[1].name);
    return false;
}

/* The values of the flags the table takes as words (numbers with a fraction, names): *o's
 * fields; false after printing an error naming the flag. */
static bool convert_words(sim_opts *o, const char *latency, const char *tau, const char *routing, const char *quant, const char *kv) {
    static const choice QUANT[] = {{"w8a8", 8}, {"fp16", 16}}, KV[] = {{"int8", 8}, {"fp16", 16}};
    double x;
    if (latency && !cli_float(CMD, "--latency", latency, 0.001, 1e7, &o->latency_ms)) return false;
    if (tau) {
        if (!cli_float(CMD, "--tau", tau, 1, 1024, &x)) return false;
        o->p.tau = x;
        o->tau_given = true;
    }
    if (routing && (moge_routing_parse(routing, &o->p.routing) != MOGE_OK ||
                    (o->p.routing != MOGE_ROUTING_MOGE && o->p.routing != MOGE_ROUTING_TOPK))) {
        fprintf(stderr, "moge simulate: --routing: \"%s\" is not %s or %s\n", routing, moge_routing_name(MOGE_ROUTING_MOGE),
                moge_routing_name(MOGE_ROUTING_TOPK));
        return false;
    }
    int c;
    if (quant) {
        if (!pick("--quant", quant, QUANT, &c)) return false;
        o->p.weight_bits = c;
    }
    if (kv) {
        if (!pick("--kv", kv, KV, &c)) return false;
        o->p.kv_bits = c;
    }
    return true;
}

/* Parses argv into o; returns -1 when parsed, else the exit status (0 after --help). */
static int parse(int argc, char **argv, sim_opts *o) {
    o->p = moge_simulate_default_params();
    const int32_t default_batch = o->p.batch;
    o->p.batch = 0; /* 0 after parsing: --batch not given */
    const char *latency = NULL, *tau = NULL, *routing = NULL, *quant = NULL, *kv = NULL, *pos[1];
    const long most = 100000000;
    const cli_flag flags[] = {
        {"-m", "--model", CLI_ARG_STR, &o->model, 0, 0},
        {NULL, "--device", CLI_ARG_STR, &o->p.device, 0, 0},
        {NULL, "--json", CLI_ARG_STR, &o->json, 0, 0},
        {NULL, "--routing-stats", CLI_ARG_STR, &o->p.routing_stats, 0, 0},
        {NULL, "--spec-from", CLI_ARG_STR, &o->spec_from, 0, 0},
        {NULL, "--cards", CLI_ARG_I32, &o->p.cards, 1, most},
        {NULL, "--batch", CLI_ARG_I32, &o->p.batch, 1, most},
        {NULL, "--context", CLI_ARG_I32, &o->p.context, 1, most},
        {NULL, "--attn-tp", CLI_ARG_I32, &o->p.attn_tp, 1, most},
        {NULL, "--spec-rows", CLI_ARG_I32, &o->p.spec_rows, 1, most},
        {NULL, "--draft-layers", CLI_ARG_I32, &o->p.draft_layers, 0, most},
        {NULL, "--latency", CLI_ARG_STR, &latency, 0, 0},
        {NULL, "--tau", CLI_ARG_STR, &tau, 0, 0},
        {NULL, "--routing", CLI_ARG_STR, &routing, 0, 0},
        {NULL, "--quant", CLI_ARG_STR, &quant, 0, 0},
        {NULL, "--kv", CLI_ARG_STR, &kv, 0, 0},
        {NULL, "--paper", CLI_ARG_SWITCH, &o->paper, 0, 0},
    };
    int n_pos, rc = cli_parse_flags(CMD, flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, pos, 0, &n_pos, usage);
    if (rc >= 0) return rc;
    o->batch_given = o->p.batch != 0;
    if (!o->batch_given) o->p.batch = default_batch;
    if (!convert_words(o, latency, tau, routing, quant, kv)) return 2;
    if (o->paper) {
        if (o->model || o->spec_from) {
            fprintf(stderr, "moge simulate: --paper takes no model or speculation flags (only --tau and --json)\n");
            return 2;
        }
        return -1;
    }
    if (!o->model) {
        fprintf(stderr, "moge simulate: -m DIR|config.json is required (or --paper)\n");
        return 2;
    }
    if (o->spec_from && (o->tau_given || o->p.spec_rows != 1)) {
        fprintf(stderr, "moge simulate: --spec-from FILE replaces --spec-rows and --tau: give one or the other\n");
        return 2;
    }
    if (o->latency_ms > 0 && o->batch_given) {
        fprintf(stderr, "moge simulate: --latency MS chooses the batch: give it or --batch, not both\n");
        return 2;
    }
    if (o->tau_given && o->p.spec_rows == 1) {
        fprintf(stderr, "moge simulate: --tau needs --spec-rows K (rows verified per sequence, K >= 2)\n");
        return 2;
    }
    return -1;
}

/* --spec-from: the tree mode of a `moge bench --json` file (else the first speculative mode with
 * verified nodes): spec_rows = 1 + its mean tree nodes (rounded, at least ceil(tau)), tau its
 * measured tau. False after printing an error naming the file. */
static bool spec_from_bench(const char *path, moge_simulate_params *p, char *mode, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "moge simulate: --spec-from %s: cannot open\n", path);
        return false;
    }
    char *buf = NULL;
    size_t len = 0, got;
    char chunk[65536];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        char *nb = realloc(buf, len + got + 1);
        if (!nb) break;
        buf = nb;
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    cJSON *root = buf ? cJSON_ParseWithLength(buf, len) : NULL;
    free(buf);
    const cJSON *modes = cJSON_GetObjectItemCaseSensitive(root, "modes"), *best = NULL, *m;
    cJSON_ArrayForEach(m, modes) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "mode"), *nodes = cJSON_GetObjectItemCaseSensitive(m, "mean_tree_nodes");
        const cJSON *tau = cJSON_GetObjectItemCaseSensitive(m, "tau");
        if (!cJSON_IsString(name) || !cJSON_IsNumber(nodes) || !cJSON_IsNumber(tau) || !(nodes->valuedouble > 0)) continue;
        if (!best || !strcmp(name->valuestring, "tree")) best = m;
    }
    if (!best) {
        fprintf(stderr, "moge simulate: --spec-from %s: no speculative mode with \"tau\" and \"mean_tree_nodes\" (expected moge bench --json output)\n",
                path);
        cJSON_Delete(root);
        return false;
    }
    double tau = cJSON_GetObjectItemCaseSensitive(best, "tau")->valuedouble;
    double nodes = cJSON_GetObjectItemCaseSensitive(best, "mean_tree_nodes")->valuedouble;
    if (!(tau >= 1 && tau <= 1025 && nodes < 1024)) {
        fprintf(stderr, "moge simulate: --spec-from %s: tau %g or mean_tree_nodes %g out of range\n", path, tau, nodes);
        cJSON_Delete(root);
        return false;
    }
    int rows = (int)lround(1 + nodes);
    if (rows < ceil(tau)) rows = (int)ceil(tau);
    p->spec_rows = rows < 2 ? 2 : rows;
    p->tau = tau;
    snprintf(mode, cap, "%s", cJSON_GetObjectItemCaseSensitive(best, "mode")->valuestring);
    cJSON_Delete(root);
    return true;
}

static const char *bits_name(int bits, bool kv) { return bits == 8 ? (kv ? "int8" : "w8a8") : "fp16"; }

static double ms(double s) { return s * 1e3; }

/* alt: the same step under the other MoE rule (NULL for a dense model). */
static void print_result(const sim_opts *o, const char *model, const moge_simulate_result *r, const moge_simulate_result *alt,
                         const char *spec_src) {
    const moge_simulate_params *p = &o->p;
    printf("modelled  %s on %d x %s: a model of the step from public hardware figures, not a measurement\n", model, p->cards, p->device);
    printf("modelled  layout       %d chip%s: attention DP%d x TP%d", r->chips, r->chips == 1 ? "" : "s", r->attn_dp, r->attn_tp);
    if (r->n_expert > 0) {
        if (r->expert_owners == r->chips) printf(", %d whole expert group%s per chip", r->n_group / r->chips, r->n_group / r->chips == 1 ? "" : "s");
        else printf(", each expert group split over %d chips", r->chips / r->expert_owners);
        if (r->n_ff_shared) printf(", shared expert split over all");
    } else {
        printf(", MLP TP%d", r->attn_tp);
    }
    printf("\n");
    printf("modelled  inputs       batch %d, context %d, %s, KV %s\n", p->batch, p->context, bits_name(p->weight_bits, false),
           bits_name(p->kv_bits, true));
    printf("modelled  step         %.2f ms\n", ms(r->step_s));
    if (p->spec_rows > 1) {
        printf("modelled  speculation  %d rows per sequence verified per step (%s), drafter %d layer%s per level: %.2f ms of the step\n",
               p->spec_rows, spec_src, p->draft_layers, p->draft_layers == 1 ? "" : "s", ms(r->t_draft_s));
        if (p->tau > 0)
            printf("modelled  accepted     %.1f tokens/s per card at tau %.3f (%.1f per server)\n", r->tokens_per_s_per_card, p->tau,
                   r->tokens_per_s_per_card * p->cards);
        else
            printf("modelled  accepted     at least %.1f tokens/s per card (tau not given: 1 token per step); "
                   "tau T gives T x that\n", r->tokens_per_s_per_card);
    } else {
        printf("modelled  throughput   %.1f tokens/s per card (%.1f per server), %.2f ms per token of a sequence\n", r->tokens_per_s_per_card,
               r->tokens_per_s_per_card * p->cards, ms(r->step_s));
    }
    printf("modelled  split        weights and activations %.2f ms, KV cache %.2f, compute %.2f, communication %.2f, overhead %.2f\n",
           ms(r->t_weights_s), ms(r->t_kv_s), ms(r->t_compute_s), ms(r->t_comm_s), ms(r->t_overhead_s));
    for (int i = 0; i < r->n_ops; i++)
        printf("modelled  op %-10s %8.2f ms  %5.1f %%  %s%s\n", r->ops[i].name, ms(r->ops[i].seconds), 100 * r->ops[i].seconds / r->step_s,
               r->ops[i].bound, strcmp(r->ops[i].bound, "overhead") && strcmp(r->ops[i].bound, "communication") ? "-bound" : "");
    if (r->n_expert > 0) {
        printf("modelled  experts      %s routing, %s frequencies%s%s: %.1f of %d experts read per layer, the busiest chip %.1f;\n", r->routing,
               r->routing_measured ? "measured" : "uniform", r->routing_measured ? " from " : "", r->routing_measured ? p->routing_stats : "",
               r->distinct_experts, r->n_expert, r->distinct_experts_chip);
        printf("modelled  experts      token-expert pairs on the busiest chip %.1f (mean %.1f), Imbalance Score %.3f\n", r->expert_pairs_max,
               r->expert_pairs_mean, r->imbalance);
        if (alt)
            printf("modelled  other rule   %s routing of the same experts: step %.2f ms (%+.1f %%), the busiest chip %.1f experts and %.1f pairs, "
                   "Imbalance Score %.3f\n",
                   alt->routing, ms(alt->step_s), 100 * (alt->step_s / r->step_s - 1), alt->distinct_experts_chip, alt->expert_pairs_max,
                   alt->imbalance);
    }
    double need = r->weight_bytes_per_chip + r->kv_bytes_per_chip;
    printf("modelled  memory       per chip %.1f GB weights + %.1f GB KV = %.1f GB of %.0f GB: %s\n", r->weight_bytes_per_chip / 1e9,
           r->kv_bytes_per_chip / 1e9, need / 1e9, r->capacity_per_chip / 1e9, need <= r->capacity_per_chip ? "fits" : "DOES NOT FIT");
    printf("modelled  constants    eta memory %.2f, matmul %.2f, KV stream %.3f (fitted), %.1f us per layer (fitted)\n", r->eta_mem,
           r->eta_compute, r->eta_kv, r->layer_overhead_s * 1e6);
}

static cJSON *result_json(const sim_opts *o, const char *model, const moge_simulate_result *r, const moge_simulate_result *alt,
                          const char *spec_src) {
    const moge_simulate_params *p = &o->p;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "modelled", true);
    cJSON_AddStringToObject(j, "note", "a model of the step from public hardware figures (moge simulate), not a measurement");
    cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "architecture", r->architecture);
    cJSON_AddStringToObject(j, "device", p->device);
    cJSON_AddNumberToObject(j, "cards", p->cards);
    cJSON_AddNumberToObject(j, "chips", r->chips);
    cJSON_AddNumberToObject(j, "attn_tp", r->attn_tp);
    cJSON_AddNumberToObject(j, "attn_dp", r->attn_dp);
    cJSON_AddNumberToObject(j, "batch", p->batch);
    cJSON_AddNumberToObject(j, "context", p->context);
    cJSON_AddStringToObject(j, "quant", bits_name(p->weight_bits, false));
    cJSON_AddStringToObject(j, "kv", bits_name(p->kv_bits, true));
    cJSON_AddNumberToObject(j, "step_ms", ms(r->step_s));
    cJSON_AddNumberToObject(j, "tokens_per_s_per_card", r->tokens_per_s_per_card);
    cJSON *s = cJSON_AddObjectToObject(j, "split");
    cJSON_AddNumberToObject(s, "weights_ms", ms(r->t_weights_s));
    cJSON_AddNumberToObject(s, "kv_ms", ms(r->t_kv_s));
    cJSON_AddNumberToObject(s, "compute_ms", ms(r->t_compute_s));
    cJSON_AddNumberToObject(s, "communication_ms", ms(r->t_comm_s));
    cJSON_AddNumberToObject(s, "overhead_ms", ms(r->t_overhead_s));
    cJSON *ops = cJSON_AddArrayToObject(j, "ops");
    for (int i = 0; i < r->n_ops; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", r->ops[i].name);
        cJSON_AddNumberToObject(x, "ms", ms(r->ops[i].seconds));
        cJSON_AddStringToObject(x, "bound", r->ops[i].bound);
        cJSON_AddItemToArray(ops, x);
    }
    if (p->spec_rows > 1) {
        cJSON *x = cJSON_AddObjectToObject(j, "speculation");
        cJSON_AddNumberToObject(x, "rows_per_sequence", p->spec_rows);
        if (p->tau > 0) cJSON_AddNumberToObject(x, "tau", p->tau);
        else cJSON_AddNullToObject(x, "tau");
        cJSON_AddStringToObject(x, "source", spec_src);
        cJSON_AddNumberToObject(x, "draft_layers", p->draft_layers);
        cJSON_AddNumberToObject(x, "draft_ms", ms(r->t_draft_s));
    }
    if (r->n_expert > 0) {
        cJSON *x = cJSON_AddObjectToObject(j, "moe");
        cJSON_AddStringToObject(x, "routing", r->routing);
        cJSON_AddStringToObject(x, "frequencies", r->routing_measured ? "measured" : "uniform");
        if (r->routing_measured) cJSON_AddStringToObject(x, "routing_stats", p->routing_stats);
        cJSON_AddNumberToObject(x, "distinct_experts", r->distinct_experts);
        cJSON_AddNumberToObject(x, "distinct_experts_busiest_chip", r->distinct_experts_chip);
        cJSON_AddNumberToObject(x, "pairs_busiest_chip", r->expert_pairs_max);
        cJSON_AddNumberToObject(x, "pairs_mean_chip", r->expert_pairs_mean);
        cJSON_AddNumberToObject(x, "imbalance", r->imbalance);
        if (alt) {
            cJSON *y = cJSON_AddObjectToObject(x, "other_rule");
            cJSON_AddStringToObject(y, "routing", alt->routing);
            cJSON_AddNumberToObject(y, "step_ms", ms(alt->step_s));
            cJSON_AddNumberToObject(y, "tokens_per_s_per_card", alt->tokens_per_s_per_card);
            cJSON_AddNumberToObject(y, "distinct_experts_busiest_chip", alt->distinct_experts_chip);
            cJSON_AddNumberToObject(y, "pairs_busiest_chip", alt->expert_pairs_max);
            cJSON_AddNumberToObject(y, "imbalance", alt->imbalance);
        }
    }
    cJSON *m = cJSON_AddObjectToObject(j, "memory_per_chip");
    cJSON_AddNumberToObject(m, "weights_bytes", r->weight_bytes_per_chip);
    cJSON_AddNumberToObject(m, "kv_bytes", r->kv_bytes_per_chip);
    cJSON_AddNumberToObject(m, "capacity_bytes", r->capacity_per_chip);
    cJSON *k = cJSON_AddObjectToObject(j, "constants");
    cJSON_AddNumberToObject(k, "eta_mem", r->eta_mem);
    cJSON_AddNumberToObject(k, "eta_compute", r->eta_compute);
    cJSON_AddNumberToObject(k, "eta_kv", r->eta_kv);
    cJSON_AddNumberToObject(k, "layer_overhead_ms", ms(r->layer_overhead_s));
    cJSON_AddStringToObject(k, "fitted_to", "Pangu Pro MoE on 4 x 800I A2: the batch-1 step (18.44 ms) and 1148 tokens/s per card at batch 456");
    return j;
}

static bool write_json(const char *path, cJSON *j) {
    char *text = cJSON_Print(j);
    bool ok = text && cli_write_text(CMD, "--json", path, text);
    if (!text) fprintf(stderr, "moge simulate: --json %s: out of memory\n", path);
    free(text);
    return ok;
}

static int run_paper(const sim_opts *o) {
    double tau = o->tau_given ? o->p.tau : PAPER_TAU;
    cJSON *j = o->json ? cJSON_CreateObject() : NULL, *rows = j ? cJSON_AddArrayToObject(j, "rows") : NULL;
    if (j) {
        cJSON_AddBoolToObject(j, "modelled", true);
        cJSON_AddStringToObject(j, "source", "Pangu Pro MoE, arXiv 2505.21411: W8A8, input 2048, 4 cards, tokens/s per card = batch / TPOT / 4");
        cJSON_AddNumberToObject(j, "tau_stated", tau);
    }
    printf("modelled  paper vs model: Pangu Pro MoE paper (arXiv 2505.21411), W8A8, context 2048, KV int8, 4 cards\n");
    printf("modelled  %-32s %6s %9s %9s %12s %12s %7s\n", "row", "batch", "paper ms", "model ms", "paper tok/s", "model tok/s", "error");
    moge_simulate_paper_row row;
    for (int32_t i = 0; moge_simulate_paper(i, &row); i++) {
        char dir[4096], err[1024];
        if (!cli_committed_model(row.model, dir, sizeof dir)) {
            fprintf(stderr, "moge simulate: --paper: models/%s/config.json not found under ./models or next to the binary\n", row.model);
            cJSON_Delete(j);
            return 1;
        }
        moge_simulate_params p = moge_simulate_default_params();
        p.device = row.device, p.cards = row.cards, p.batch = row.batch, p.spec_rows = row.spec_rows;
        if (row.spec_rows > 1) p.tau = tau;
        moge_simulate_result r;
        if (moge_simulate(dir, &p, &r, err, sizeof err) != MOGE_OK) {
            fprintf(stderr, "moge simulate: --paper: %s\n", err);
            cJSON_Delete(j);
            return 1;
        }
        double model_tps = r.tokens_per_s_per_card, model_ms = ms(r.step_s);
        double e = row.tokens_per_s_per_card > 0 ? model_tps / row.tokens_per_s_per_card - 1 : model_ms / row.step_ms - 1;
        double tau_star = row.spec_rows > 1 ? row.tokens_per_s_per_card * row.cards * r.step_s / row.batch : 0;
        /* the paper's TPOT is per token; a speculative step emits tau of them */
        if (row.spec_rows > 1) model_ms = ms(r.step_s) / tau;
        char paper_tps[32] = "-";
        if (row.tokens_per_s_per_card > 0) snprintf(paper_tps, sizeof paper_tps, "%.0f", row.tokens_per_s_per_card);
        printf("modelled  %-32s %6d %9.2f %9.2f %12s %12.0f %+6.1f%%  %s\n", row.label, row.batch, row.step_ms, model_ms, paper_tps, model_tps,
               100 * e, row.calibrated ? "fitted (calibration row)" : row.spec_rows > 1 ? "predicted at the stated tau" : "predicted");
        if (row.spec_rows > 1)
            printf("modelled  %-32s %6s step %.2f ms for %d rows per sequence (1 draft token, MTP): tau %.3f reproduces %.0f\n", "", "", ms(r.step_s),
                   row.spec_rows, tau_star, row.tokens_per_s_per_card);
        if (rows) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "row", row.label);
            cJSON_AddStringToObject(x, "model", row.model);
            cJSON_AddStringToObject(x, "device", row.device);
            cJSON_AddNumberToObject(x, "batch", row.batch);
            cJSON_AddNumberToObject(x, "paper_ms", row.step_ms);
            if (row.tokens_per_s_per_card > 0) cJSON_AddNumberToObject(x, "paper_tokens_per_s_per_card", row.tokens_per_s_per_card);
            cJSON_AddNumberToObject(x, "step_ms", ms(r.step_s));
            cJSON_AddNumberToObject(x, "tokens_per_s_per_card", model_tps);
            cJSON_AddNumberToObject(x, "error", e);
            cJSON_AddBoolToObject(x, "calibrated", row.calibrated);
            if (row.spec_rows > 1) {
                cJSON_AddNumberToObject(x, "spec_rows", row.spec_rows);
                cJSON_AddNumberToObject(x, "tau", tau);
                cJSON_AddNumberToObject(x, "tau_reproducing_paper", tau_star);
            }
            cJSON_AddItemToArray(rows, x);
        }
    }
    printf("modelled  fitted: the fixed cost per layer and the KV-stream efficiency, to the two calibration rows; every other row is a prediction.\n"
           "modelled  speculation rows: tau %.2f stated (DeepSeek-V3's MTP accepts its draft token 85-90 %% of the time; the paper gives none)\n",
           tau);
    bool ok = !j || write_json(o->json, j);
    cJSON_Delete(j);
    return ok ? 0 : 1;
}

/* Time per token of one sequence (step / tau) of o's parameters at `batch`, and whether the weights
 * and KV fit; false after printing the library's error. */
static bool per_token_at(const sim_opts *o, const char *model, int32_t batch, double *ms_per_token, bool *fits) {
    moge_simulate_params p = o->p;
    p.batch = batch;
    moge_simulate_result r;
    char err[2048];
    if (moge_simulate(model, &p, &r, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge simulate: %s\n", err);
        return false;
    }
    *ms_per_token = ms(r.step_s) / (p.tau > 0 ? p.tau : 1);
    *fits = r.weight_bytes_per_chip + r.kv_bytes_per_chip <= r.capacity_per_chip;
    return true;
}

/* --latency: sets o->p.batch to the largest batch (1..1000000) whose time per token is within the
 * target and that fits (the time grows with the batch: bisection). False after printing why not. */
static bool largest_batch(sim_opts *o, const char *model) {
    double t;
    bool fits;
    if (!per_token_at(o, model, 1, &t, &fits)) return false;
    if (t > o->latency_ms || !fits) {
        fprintf(stderr, "moge simulate: --latency %g: even batch 1 takes %.2f ms per token (modelled)%s\n", o->latency_ms, t,
                fits ? "" : " and does not fit in memory");
        return false;
    }
    int32_t lo = 1, hi = 1000000; /* lo meets the target; find the largest that does */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo + 1) / 2;
        if (!per_token_at(o, model, mid, &t, &fits)) return false;
        if (t <= o->latency_ms && fits) lo = mid;
        else hi = mid - 1;
    }
    o->p.batch = lo;
    printf("modelled  batch        %d: the largest whose time per token is within %g ms and that fits in memory\n", lo, o->latency_ms);
    return true;
}

int cmd_simulate(int argc, char **argv) {
    sim_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.paper) return run_paper(&o);
    char dir[4096], err[2048], spec_src[128] = "--spec-rows and --tau";
    struct stat sb;
    const char *model = o.model;
    if (!(stat(model, &sb) == 0 && S_ISREG(sb.st_mode))) {
        if (moge_resolve_model(model, dir, sizeof dir, err, sizeof err) != MOGE_OK) {
            fprintf(stderr, "moge simulate: -m %s: %s\n", model, err);
            return 1;
        }
        model = dir;
    }
    if (o.spec_from) {
        char mode[64];
        if (!spec_from_bench(o.spec_from, &o.p, mode, sizeof mode)) return 1;
        snprintf(spec_src, sizeof spec_src, "measured by moge bench, mode %.40s", mode);
    }
    if (o.latency_ms > 0 && !largest_batch(&o, model)) return 1;
    moge_simulate_result r;
    moge_status st = moge_simulate(model, &o.p, &r, err, sizeof err);
    if (st != MOGE_OK) {
        fprintf(stderr, "moge simulate: %s\n", err);
        return st == MOGE_ERR_ARG ? 2 : 1;
    }
    /* the same experts under the other rule: what MoGE's balanced groups change */
    moge_simulate_result alt;
    bool have_alt = false;
    if (r.n_expert > 0) {
        moge_simulate_params q = o.p;
        q.routing = !strcmp(r.routing, moge_routing_name(MOGE_ROUTING_MOGE)) ? MOGE_ROUTING_TOPK : MOGE_ROUTING_MOGE;
        have_alt = moge_simulate(model, &q, &alt, err, sizeof err) == MOGE_OK; /* MoGE may not fit K and the groups */
    }
    print_result(&o, o.model, &r, have_alt ? &alt : NULL, spec_src);
    if (o.json) {
        cJSON *j = result_json(&o, o.model, &r, have_alt ? &alt : NULL, spec_src);
        bool ok = j && write_json(o.json, j);
        cJSON_Delete(j);
        if (!ok) return 1;
    }
    return 0;
}
