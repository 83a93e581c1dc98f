/*
 * test_bench_cli.c — `moge bench` end to end ($MOGE_BIN, default build/moge, run from the
 * repository root, on models/stories260K drafting for itself, and the MoGE demo pair):
 *  - the table has one row per mode and the documented columns: tok/s inside its min–max range,
 *    the speedup column headed "x BASE" with the baseline's 1.00, "pred", "nodes" and "plain"
 *    "-" where no planner ran (mode none, --no-adaptive), "MB/pass", "MoE IS" and "experts" "-"
 *    for a dense target and numbers for a MoE one, "same" "yes" on every row (greedy); the
 *    legend names the baseline and the number of interleaved repeats; the line under it says all
 *    modes produced identical text;
 *  - the repeats interleave the modes: stderr (not a terminal) has one line per repeat and mode,
 *    repeat 1's modes in --modes order, then repeat 2's, ...;
 *  - --json writes the documented fields with their types (numbers, arrays, null where not
 *    measured), tokens_per_s_repeats has --repeats entries whose median, min and max are
 *    tokens_per_s, _min and _max, the speedup is tokens/s over the baseline's, the table shows
 *    the JSON's numbers, and every mode's ids equal the baseline's;
 *  - without mode none the first mode listed is the baseline ("x chain", JSON "baseline");
 *  - a --prompts file of 2 prompts gives 2 id lists per mode; --lookup adds a lookup row;
 *  - the sampling, backend and tree flags run and chat take work in bench too (sampled: "-");
 *  - --batch 3 (the demo pair, every mode, a 2-prompt file): the table gains "tok/s/seq" (the JSON's
 *    tokens_per_s_per_seq, tokens_per_s / 3) and its legend, the JSON "batch": 3 and one id list
 *    per sequence, every mode identical to none, sequence 3 (prompt 1 again: the list cycles) the
 *    same ids as sequence 1 and every sequence the ids the same prompt gets without --batch (the
 *    batch's planner choosing its trees); --batch 1 runs too;
 *  - bad input: --modes bogus names --modes (exit 2); a missing --prompts file is named (exit 1);
 *    --batch 0, 4097 (above MOGE_MAX_SEQ) or x names --batch (exit 2).
 */
#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>

#include "harness.h"
#include "test_util.h"


#define OUT "build/test_bench.out"
#define ERR "build/test_bench.err"
/* runs $MOGE_BIN with the arguments; stdout and stderr land in OUT and ERR */
#define MOGE(args) moge_cmd(args, OUT, ERR)
#define JSON "build/test_bench.json"
#define BENCH "bench -m models/stories260K -d models/stories260K -n 40 --repeats 1"

/* What a bench run was asked for: the checks depend on it. */
typedef struct {
    const char *const *modes;
    int n_modes, n_prompts, repeats;
    const char *base;  /* the baseline mode */
    bool dense;        /* the target has no MoE layer */
    bool no_adaptive;  /* --no-adaptive: no planner in any mode */
    int tree_max;      /* most draft nodes a pass may verify in any mode */
    int batch;         /* --batch N (0: not given): column tok/s/seq after min–max, N id lists */
} bench_run;

/* The table's columns: from the left up to acceptance by depth (which spans fields), then from
 * the right: f[n - R_SAME] is the last. */
enum { F_MODE, F_TPS, F_RANGE, F_SPEEDUP, F_PRED, F_TAU, F_NODES, F_PLAIN, F_ACCEPT };
enum { R_SAME = 1, R_MB, R_EXPERTS, R_IS, N_FIELDS_MIN = F_ACCEPT + 1 + 4 };

/* The line of `table` that starts with `word` and a blank, split on blanks into at most 32
 * fields; returns the count (0: no such line). Modifies table. */
static int line_fields(char *table, const char *word, char *fields[32]) {
    size_t len = strlen(word);
    for (char *line = table; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!strncmp(line, word, len) && line[len] == ' ') {
            int n = 0;
            for (char *t = strtok(line, " "); t && n < 32; t = strtok(NULL, " ")) fields[n++] = t;
            return n;
        }
        line = next;
    }
    return 0;
}

static int row_fields(char *table, const char *mode, char *fields[32]) { return line_fields(table, mode, fields); }

/* A number that fills the whole field. */
static bool number(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == 0;
}

/* "lo–hi" (an en dash) into lo and hi. */
static bool range(const char *s, double *lo, double *hi) {
    char *end;
    *lo = strtod(s, &end);
    if (end == s || strncmp(end, "–", strlen("–"))) return false;
    return number(end + strlen("–"), hi);
}

/* Checks the header, each mode's row and the lines under the table. */
static void check_table(const char *out, const bench_run *b) {
    char *copy = strdup(out), *f[32], want[64];
    int sh = b->batch > 0, n = line_fields(copy, "mode", f); /* sh: tok/s/seq comes before the speedup */
    snprintf(want, sizeof want, "x %s", b->base);
    CHECKF(n > F_PLAIN + sh && !strcmp(f[F_SPEEDUP + sh], "x") && !strcmp(f[F_SPEEDUP + sh + 1], b->base), "header does not say \"%s\":\n%s", want, out);
    static const char *const heads[] = {"tok/s", "min–max", "pred", "τ", "nodes", "plain", "accept", "MoE", "experts", "MB/pass", "same"};
    free(copy);
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) CHECKF(strstr(out, heads[i]) != NULL, "no column \"%s\" in:\n%s", heads[i], out);
    for (int k = 0; k < b->n_modes; k++) {
        const char *mode = b->modes[k];
        copy = strdup(out);
        n = row_fields(copy, mode, f);
        CHECKF(n >= N_FIELDS_MIN + sh, "no row for mode %s in:\n%s", mode, out);
        if (n >= N_FIELDS_MIN + sh) {
            double tps, lo, hi, v;
            bool none = !strcmp(mode, "none");
            CHECKF(number(f[F_TPS], &tps) && tps > 0, "mode %s: tok/s \"%s\"", mode, f[F_TPS]);
            CHECKF(range(f[F_RANGE], &lo, &hi) && lo > 0 && lo <= tps && tps <= hi, "mode %s: min–max \"%s\" around %s", mode, f[F_RANGE], f[F_TPS]);
            if (!strcmp(mode, b->base)) CHECKF(!strcmp(f[F_SPEEDUP + sh], "1.00"), "speedup of the baseline %s is \"%s\"", mode, f[F_SPEEDUP + sh]);
            CHECKF(number(f[F_SPEEDUP + sh], &v) && v > 0, "mode %s: speedup \"%s\"", mode, f[F_SPEEDUP + sh]);
            if (none || b->no_adaptive) CHECKF(!strcmp(f[F_PRED + sh], "-") && !strcmp(f[F_PLAIN + sh], "-"), "mode %s without a planner: pred \"%s\", plain \"%s\"", mode, f[F_PRED + sh], f[F_PLAIN + sh]);
            CHECKF(!strcmp(f[F_PRED + sh], "-") || (number(f[F_PRED + sh], &v) && v > 0), "mode %s: pred \"%s\"", mode, f[F_PRED + sh]);
            CHECKF(number(f[F_TAU + sh], &v) && v >= 1, "mode %s: τ \"%s\"", mode, f[F_TAU + sh]);
            if (none) CHECKF(!strcmp(f[F_NODES + sh], "-"), "mode none: nodes \"%s\"", f[F_NODES + sh]);
            else CHECKF(number(f[F_NODES + sh], &v) && v >= 0 && v <= b->tree_max, "mode %s: nodes \"%s\"", mode, f[F_NODES + sh]);
            size_t pl = strlen(f[F_PLAIN + sh]);
            CHECKF(!strcmp(f[F_PLAIN + sh], "-") || (pl > 1 && f[F_PLAIN + sh][pl - 1] == '%' && (v = strtod(f[F_PLAIN + sh], NULL)) >= 0 && v <= 100),
                   "mode %s: plain \"%s\"", mode, f[F_PLAIN + sh]);
            if (b->dense) {
                CHECKF(!strcmp(f[n - R_MB], "-") && !strcmp(f[n - R_IS], "-") && !strcmp(f[n - R_EXPERTS], "-"),
                       "dense target, mode %s: MoE IS \"%s\", experts \"%s\", MB/pass \"%s\"", mode, f[n - R_IS], f[n - R_EXPERTS], f[n - R_MB]);
            } else {
                CHECKF(number(f[n - R_IS], &v) && v >= 0 && v <= 1, "mode %s: MoE IS \"%s\"", mode, f[n - R_IS]);
                CHECKF(number(f[n - R_EXPERTS], &v) && v >= 1, "mode %s: experts \"%s\"", mode, f[n - R_EXPERTS]);
                CHECKF(!strcmp(f[n - R_MB], "-") || (number(f[n - R_MB], &v) && v > 0), "mode %s: MB/pass \"%s\"", mode, f[n - R_MB]);
            }
            CHECKF(!strcmp(f[n - R_SAME], "yes"), "mode %s: same is \"%s\"", mode, f[n - R_SAME]);
        }
        free(copy);
    }
    char legend[160];
    snprintf(legend, sizeof legend, "median of %d interleaved repeat%s", b->repeats, b->repeats == 1 ? "" : "s");
    CHECKF(strstr(out, legend) != NULL, "no \"%s\" in:\n%s", legend, out);
    snprintf(legend, sizeof legend, "x %s: tok/s over mode %s", b->base, b->base);
    CHECKF(strstr(out, legend) != NULL, "no \"%s\" in:\n%s", legend, out);
    CHECKF(strstr(out, "all modes produced identical text") != NULL, "no identity line in:\n%s", out);
}

static bool ids_equal(const cJSON *a, const cJSON *b) {
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b) || cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return false;
    for (int i = 0; i < cJSON_GetArraySize(a); i++)
        if (cJSON_GetArrayItem(a, i)->valuedouble != cJSON_GetArrayItem(b, i)->valuedouble) return false;
    return true;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1e300;
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* tokens_per_s_repeats has b->repeats positive numbers whose median, min and max are
 * tokens_per_s, tokens_per_s_min and tokens_per_s_max. */
static void check_repeats(const cJSON *m, const char *mode, const bench_run *b) {
    const cJSON *reps = cJSON_GetObjectItem(m, "tokens_per_s_repeats");
    CHECKF(cJSON_IsArray(reps) && cJSON_GetArraySize(reps) == b->repeats, "mode %s: tokens_per_s_repeats has %d entries, expected %d", mode,
           cJSON_GetArraySize(reps), b->repeats);
    double v[64];
    int n = 0;
    for (int i = 0; i < cJSON_GetArraySize(reps) && n < 64; i++) {
        const cJSON *x = cJSON_GetArrayItem(reps, i);
        CHECKF(cJSON_IsNumber(x) && x->valuedouble > 0, "mode %s: repeat %d's tokens/s is not a positive number", mode, i + 1);
        if (cJSON_IsNumber(x)) v[n++] = x->valuedouble;
    }
    double med = num(m, "tokens_per_s"), lo = num(m, "tokens_per_s_min"), hi = num(m, "tokens_per_s_max");
    CHECKF(lo > 0 && lo <= med && med <= hi, "mode %s: min %g, median %g, max %g", mode, lo, med, hi);
    if (n != b->repeats || n == 0) return;
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    double want = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    CHECKF(close_to(med, want) && close_to(lo, v[0]) && close_to(hi, v[n - 1]), "mode %s: median/min/max %g/%g/%g of the repeats are %g/%g/%g", mode,
           med, lo, hi, want, v[0], v[n - 1]);
}

/* The keys every mode has, and their types; null is allowed where noted. */
static void check_mode_keys(const cJSON *m, const char *mode, const bench_run *b) {
    static const char *numbers[] = {"tokens_per_s", "tokens_per_s_min", "tokens_per_s_max", "speedup", "tau", "draft_share", "mean_tree_nodes"};
    static const char *arrays[] = {"tokens_per_s_repeats", "accept_by_depth", "ids"};
    static const char *optional[] = {"predicted_speedup", "plain_step_share", "expert_mb_per_pass", "nodes_proposed_per_pass", "moe_imbalance",
                                     "distinct_experts"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        CHECKF(cJSON_IsNumber(cJSON_GetObjectItem(m, numbers[i])), "mode %s: \"%s\" is not a number", mode, numbers[i]);
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        CHECKF(cJSON_IsArray(cJSON_GetObjectItem(m, arrays[i])), "mode %s: \"%s\" is not an array", mode, arrays[i]);
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        const cJSON *v = cJSON_GetObjectItem(m, optional[i]);
        CHECKF(cJSON_IsNumber(v) || cJSON_IsNull(v), "mode %s: \"%s\" is neither a number nor null", mode, optional[i]);
    }
    bool none = !strcmp(mode, "none");
    const cJSON *pred = cJSON_GetObjectItem(m, "predicted_speedup"), *plain = cJSON_GetObjectItem(m, "plain_step_share");
    const cJSON *mb = cJSON_GetObjectItem(m, "expert_mb_per_pass"), *proposed = cJSON_GetObjectItem(m, "nodes_proposed_per_pass");
    if (none || b->no_adaptive) CHECKF(cJSON_IsNull(pred) && cJSON_IsNull(plain), "mode %s without a planner: predicted_speedup or plain_step_share not null", mode);
    CHECKF(!cJSON_IsNumber(pred) || pred->valuedouble > 0, "mode %s: predicted_speedup %g", mode, pred->valuedouble);
    CHECKF(!cJSON_IsNumber(plain) || (plain->valuedouble >= 0 && plain->valuedouble <= 1), "mode %s: plain_step_share %g", mode, plain->valuedouble);
    double nodes = num(m, "mean_tree_nodes");
    if (none) CHECKF(nodes == 0, "mode none: mean_tree_nodes %g", nodes);
    CHECKF(nodes >= 0 && nodes <= b->tree_max, "mode %s: mean_tree_nodes %g", mode, nodes);
    CHECKF(!cJSON_IsNumber(proposed) || proposed->valuedouble >= nodes - 1e-9, "mode %s: %g nodes proposed per pass, fewer than the %g verified", mode,
           proposed->valuedouble, nodes);
    if (b->dense)
        CHECKF(cJSON_IsNull(mb) && cJSON_IsNull(cJSON_GetObjectItem(m, "moe_imbalance")) && cJSON_IsNull(cJSON_GetObjectItem(m, "distinct_experts")),
               "dense target, mode %s: expert_mb_per_pass, moe_imbalance or distinct_experts not null", mode);
    else
        CHECKF(cJSON_IsNumber(cJSON_GetObjectItem(m, "moe_imbalance")) && cJSON_IsNumber(cJSON_GetObjectItem(m, "distinct_experts")) &&
                   (cJSON_IsNull(mb) || mb->valuedouble > 0),
               "MoE target, mode %s: moe_imbalance, distinct_experts or expert_mb_per_pass", mode);
    /* where the target's forwards spent the timed turns: every part, a dense target none in router or experts */
    const cJSON *ft = cJSON_GetObjectItem(m, "target_forward_times");
    static const char *parts[] = {"qkv", "attention", "out_proj", "mlp", "router", "experts", "lm_head", "other"};
    double sum = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const cJSON *v = cJSON_GetObjectItem(ft, parts[i]);
        CHECKF(cJSON_IsNumber(v) && v->valuedouble >= 0, "mode %s: target_forward_times.%s", mode, parts[i]);
        if (cJSON_IsNumber(v)) sum += v->valuedouble;
    }
    double fw = num(ft, "forwards"), rows = num(ft, "rows");
    CHECKF(fw >= b->repeats && rows >= fw && sum > 0, "mode %s: target_forward_times: %g forwards, %g rows, %g s", mode, fw, rows, sum);
    if (b->dense) CHECKF(num(ft, "router") == 0 && num(ft, "experts") == 0, "dense target, mode %s: router or expert time", mode);
    else CHECKF(num(ft, "experts") > 0, "MoE target, mode %s: no expert time", mode);
    check_repeats(m, mode, b);
}

/* The table shows the JSON's numbers: tok/s (no decimals from 100 up), nodes, pred, MB/pass. */
static void check_table_matches_json(const char *out, const cJSON *m, const char *mode, const bench_run *b) {
    char *copy = strdup(out), *f[32], want[64];
    int sh = b->batch > 0, n = row_fields(copy, mode, f);
    if (n >= N_FIELDS_MIN + sh) {
        double tps = num(m, "tokens_per_s");
        snprintf(want, sizeof want, tps < 100 ? "%.1f" : "%.0f", tps);
        CHECKF(!strcmp(f[F_TPS], want), "mode %s: table tok/s \"%s\", JSON %g", mode, f[F_TPS], tps);
        if (b->batch) {
            double per_seq = num(m, "tokens_per_s_per_seq");
            CHECKF(close_to(per_seq, tps / b->batch), "mode %s: tokens_per_s_per_seq %g is not %g / %d", mode, per_seq, tps, b->batch);
            snprintf(want, sizeof want, per_seq < 100 ? "%.1f" : "%.0f", per_seq);
            CHECKF(!strcmp(f[F_RANGE + 1], want), "mode %s: table tok/s/seq \"%s\", JSON %g", mode, f[F_RANGE + 1], per_seq);
        }
        if (strcmp(mode, "none")) {
            snprintf(want, sizeof want, "%.1f", num(m, "mean_tree_nodes"));
            CHECKF(!strcmp(f[F_NODES + sh], want), "mode %s: table nodes \"%s\", JSON %s", mode, f[F_NODES + sh], want);
        }
        const cJSON *pred = cJSON_GetObjectItem(m, "predicted_speedup"), *mb = cJSON_GetObjectItem(m, "expert_mb_per_pass");
        if (cJSON_IsNumber(pred)) snprintf(want, sizeof want, "%.2f", pred->valuedouble); else snprintf(want, sizeof want, "-");
        CHECKF(!strcmp(f[F_PRED + sh], want), "mode %s: table pred \"%s\", JSON \"%s\"", mode, f[F_PRED + sh], want);
        if (cJSON_IsNumber(mb)) snprintf(want, sizeof want, "%.2f", mb->valuedouble); else snprintf(want, sizeof want, "-");
        CHECKF(!strcmp(f[n - R_MB], want), "mode %s: table MB/pass \"%s\", JSON \"%s\"", mode, f[n - R_MB], want);
    }
    free(copy);
}

/* Parses JSON and checks the top-level fields, the modes in order with their keys, and every
 * mode's ids (n_prompts non-empty lists) against the baseline's. Returns the document (or NULL). */
static cJSON *check_json(const char *out, const bench_run *b, int n_predict) {
    char *text = slurp_text(JSON);
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECKF(root != NULL, "%s does not parse", JSON);
    if (!root) return NULL;
    static const char *top[] = {"target", "draft", "threads", "prompts", "n_predict", "repeats", "temperature", "baseline", "modes"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        CHECKF(cJSON_GetObjectItem(root, top[i]) != NULL, "JSON lacks \"%s\"", top[i]);
    const cJSON *jm = cJSON_GetObjectItem(root, "modes"), *base_ids = NULL, *base = cJSON_GetObjectItem(root, "baseline");
    CHECK(cJSON_GetObjectItem(root, "prompts") && cJSON_GetObjectItem(root, "prompts")->valueint == b->n_prompts);
    const cJSON *batch = cJSON_GetObjectItem(root, "batch");
    if (b->batch) CHECKF(cJSON_IsNumber(batch) && batch->valueint == b->batch, "JSON \"batch\" is not %d", b->batch);
    else CHECKF(batch == NULL, "JSON has \"batch\" without --batch");
    int lists = b->batch ? b->batch : b->n_prompts; /* id lists per mode: one per prompt, or per sequence */
    CHECK(cJSON_GetObjectItem(root, "n_predict") && cJSON_GetObjectItem(root, "n_predict")->valueint == n_predict);
    CHECK(cJSON_GetObjectItem(root, "repeats") && cJSON_GetObjectItem(root, "repeats")->valueint == b->repeats);
    CHECKF(cJSON_IsString(base) && !strcmp(base->valuestring, b->base), "JSON baseline is not \"%s\"", b->base);
    CHECKF(cJSON_GetArraySize(jm) == b->n_modes, "JSON has %d modes, expected %d", cJSON_GetArraySize(jm), b->n_modes);
    static const char *fields[] = {"mode", "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max", "tokens_per_s_repeats", "speedup",
                                   "predicted_speedup", "tau", "accept_by_depth", "draft_share", "mean_tree_nodes", "nodes_proposed_per_pass",
                                   "plain_step_share", "expert_mb_per_pass", "moe_imbalance", "distinct_experts", "identical", "ids"};
    double base_tps = 0;
    for (int k = 0; k < cJSON_GetArraySize(jm); k++) {
        const cJSON *m = cJSON_GetArrayItem(jm, k), *name = cJSON_GetObjectItem(m, "mode");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, b->base)) base_ids = cJSON_GetObjectItem(m, "ids"), base_tps = num(m, "tokens_per_s");
    }
    for (int k = 0; k < b->n_modes && k < cJSON_GetArraySize(jm); k++) {
        const char *mode = b->modes[k];
        const cJSON *m = cJSON_GetArrayItem(jm, k), *ids = cJSON_GetObjectItem(m, "ids");
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            CHECKF(cJSON_GetObjectItem(m, fields[i]) != NULL, "mode %d lacks \"%s\"", k, fields[i]);
        const cJSON *name = cJSON_GetObjectItem(m, "mode");
        CHECKF(cJSON_IsString(name) && !strcmp(name->valuestring, mode), "mode %d is not %s", k, mode);
        check_mode_keys(m, mode, b);
        check_table_matches_json(out, m, mode, b);
        CHECKF(base_tps > 0 && close_to(num(m, "speedup"), num(m, "tokens_per_s") / base_tps), "mode %s: speedup %g is not %g / %g", mode,
               num(m, "speedup"), num(m, "tokens_per_s"), base_tps);
        CHECKF(cJSON_IsTrue(cJSON_GetObjectItem(m, "identical")), "mode %s: identical is not true", mode);
        CHECKF(cJSON_GetArraySize(ids) == lists, "mode %s: %d id lists, expected %d", mode, cJSON_GetArraySize(ids), lists);
        CHECKF((cJSON_GetObjectItem(m, "tokens_per_s_per_seq") != NULL) == (b->batch > 0), "mode %s: tokens_per_s_per_seq %s", mode,
               b->batch ? "missing with --batch" : "without --batch");
        for (int i = 0; i < cJSON_GetArraySize(ids); i++)
            CHECKF(cJSON_GetArraySize(cJSON_GetArrayItem(ids, i)) > 0, "mode %s: prompt %d has no ids", mode, i);
        CHECKF(!base_ids || cJSON_GetArraySize(ids) == cJSON_GetArraySize(base_ids), "mode %s: id list count differs from %s", mode, b->base);
        for (int i = 0; base_ids && i < cJSON_GetArraySize(ids) && i < cJSON_GetArraySize(base_ids); i++)
            CHECKF(ids_equal(cJSON_GetArrayItem(ids, i), cJSON_GetArrayItem(base_ids, i)), "mode %s prompt %d: ids differ from %s", mode, i, b->base);
    }
    CHECKF(base_ids != NULL, "no mode %s in the JSON", b->base);
    return root;
}

/* A bench run's table and JSON (written to JSON) checked against what it was asked; returns the
 * JSON document (or NULL) and, when out_text is not NULL, stdout and stderr (the caller frees). */
static cJSON *bench(const char *args, const bench_run *b, int n_predict, char **out_text, char **err_text) {
    char cmd[1024];
    remove(JSON);
    snprintf(cmd, sizeof cmd, "%s --json " JSON, args);
    int rc = MOGE(cmd);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(rc == 0, "moge %s: exit %d: %s", cmd, rc, err);
    check_table(out, b);
    cJSON *root = check_json(out, b, n_predict);
    if (out_text) *out_text = out; else free(out);
    if (err_text) *err_text = err; else free(err);
    return root;
}

static void test_default_modes(void) {
    static const char *modes[] = {"none", "chain", "tree"};
    bench_run b = {.modes = modes, .n_modes = 3, .n_prompts = 8, .repeats = 1, .base = "none", .dense = true, .tree_max = 24};
    char *out, *err;
    cJSON *root = bench(BENCH, &b, 40, &out, &err);
    CHECKF(strstr(out, "lookup") == NULL, "lookup ran without being asked:\n%s", out);
    CHECKF(strstr(out, "target models/stories260K, draft models/stories260K") != NULL, "models not stated in:\n%s", out);
    CHECKF(strstr(err, "models/stories260K") != NULL, "stderr does not name the models: %s", err);
    if (root) {
        const cJSON *none = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "modes"), 0);
        CHECK(cJSON_GetObjectItem(none, "speedup")->valuedouble == 1.0);
        const cJSON *chain = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "modes"), 1);
        CHECKF(cJSON_GetObjectItem(chain, "tau")->valuedouble > 1.0, "chain drafting with the target itself: tau <= 1");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(chain, "accept_by_depth")) > 0);
    }
    cJSON_Delete(root);
    free(out); free(err);
}

/* stderr's "moge bench: repeat R/N: MODE" lines must be exactly repeat 1's modes in order, then
 * repeat 2's, ... */
static void check_interleaved(const char *err, const char *const *modes, int n_modes, int repeats) {
    const char *at = err;
    int seen = 0;
    for (const char *line = strstr(err, "moge bench: repeat "); line; line = strstr(line + 1, "moge bench: repeat ")) seen++;
    CHECKF(seen == n_modes * repeats, "%d progress lines, expected %d:\n%s", seen, n_modes * repeats, err);
    for (int rep = 0; rep < repeats; rep++)
        for (int k = 0; k < n_modes; k++) {
            char want[128];
            snprintf(want, sizeof want, "moge bench: repeat %d/%d: %s ", rep + 1, repeats, modes[k]);
            const char *next = strstr(at, "moge bench: repeat ");
            CHECKF(next && !strncmp(next, want, strlen(want)), "expected \"%s\" next, at:\n%s", want, next ? next : "(end)");
            if (!next) return;
            at = next + 1;
        }
}

static void test_interleaved_repeats(void) {
    static const char *modes[] = {"tree", "none", "chain"};
    bench_run b = {.modes = modes, .n_modes = 3, .n_prompts = 8, .repeats = 3, .base = "none", .dense = true, .tree_max = 24};
    char *err;
    cJSON_Delete(bench("bench -m models/stories260K -d models/stories260K -n 40 --repeats 3 --modes tree,none,chain", &b, 40, NULL, &err));
    check_interleaved(err, modes, 3, 3);
    free(err);
}

/* Without mode none the first mode listed is the baseline; --no-adaptive runs no planner, and a
 * chain verifies at most --draft-max nodes per pass. */
static void test_baseline_and_fixed_trees(void) {
    static const char *modes[] = {"chain", "lookup"};
    bench_run b = {.modes = modes, .n_modes = 2, .n_prompts = 8, .repeats = 2, .base = "chain", .dense = true, .no_adaptive = true, .tree_max = 4};
    cJSON *root = bench("bench -m models/stories260K -d models/stories260K -n 24 --repeats 2 --modes chain,lookup --no-adaptive --draft-max 4 "
                        "--tree-nodes 4",
                        &b, 24, NULL, NULL);
    const cJSON *chain = root ? cJSON_GetArrayItem(cJSON_GetObjectItem(root, "modes"), 0) : NULL;
    CHECKF(chain && num(chain, "mean_tree_nodes") > 2, "a fixed chain of 4 drafting with the target itself verifies %g nodes per pass",
           chain ? num(chain, "mean_tree_nodes") : -1);
    cJSON_Delete(root);
}

/* The MoGE demo target: Imbalance Score and distinct experts are numbers, MB/pass a number or
 * "-" (a runtime that does not count the bytes), the same in table and JSON. */
static void test_moe_columns(void) {
    static const char *modes[] = {"none", "tree"};
    bench_run b = {.modes = modes, .n_modes = 2, .n_prompts = 8, .repeats = 1, .base = "none", .dense = false, .tree_max = 24};
    cJSON_Delete(bench("bench -m models/tinystories-moge -d models/tinystories-draft -n 16 --repeats 1 --modes none,tree", &b, 16, NULL, NULL));
}

static void test_prompts_file_and_lookup(void) {
    FILE *f = fopen("build/test_bench_prompts.txt", "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("Lily and Tom went to the park.\n\nThe little dog was happy\n", f); /* the blank line is skipped */
    fclose(f);
    static const char *modes[] = {"none", "chain", "tree", "lookup"};
    bench_run b = {.modes = modes, .n_modes = 4, .n_prompts = 2, .repeats = 1, .base = "none", .dense = true, .tree_max = 24};
    cJSON_Delete(bench(BENCH " --prompts build/test_bench_prompts.txt --lookup", &b, 40, NULL, NULL));
}

/* The flags bench shares with run and chat (cli/cmd_common.c): sampling at --temp > 0 with
 * top-k/top-p/min-p/penalty, the ref backend, a dynamic tree's --branch, sampled drafts. */
static void test_shared_sampling_flags(void) {
    CHECK(MOGE("bench -m models/stories260K -d models/stories260K -n 16 --repeats 1 --modes none,tree --temp 0.7 --top-k 5 --top-p 0.9 "
               "--min-p 0.01 --repeat-penalty 1.1 --seed 3 --backend ref --branch 2 --sampled-draft") == 0);
    char *out = slurp_text(OUT), *err = slurp_text(ERR), *f[32];
    char *copy = strdup(out);
    int n = row_fields(copy, "tree", f);
    CHECKF(n >= N_FIELDS_MIN && !strcmp(f[n - R_SAME], "-"), "no sampled tree row in:\n%s%s", out, err);
    CHECKF(strstr(out, "temperature 0.7: outputs are sampled") != NULL, "%s", out);
    free(copy); free(out); free(err);
}

/* chain:N and tree:N: fixed sizes in one interleaved run (a sweep), no planner, named as listed. */
static void test_fixed_sizes(void) {
    static const char *const modes[] = {"none", "chain:2", "tree:5"};
    bench_run b = {.modes = modes, .n_modes = 3, .n_prompts = 8, .repeats = 1, .base = "none", .dense = true, .no_adaptive = true, .tree_max = 5};
    cJSON *root = bench("bench -m models/stories260K -d models/stories260K -n 16 --repeats 1 --modes none,chain:2,tree:5", &b, 16, NULL, NULL);
    const cJSON *ms = root ? cJSON_GetObjectItem(root, "modes") : NULL;
    CHECK(cJSON_GetArraySize(ms) == 3);
    for (int k = 1; k < 3 && ms; k++) {
        const cJSON *m = cJSON_GetArrayItem(ms, k);
        const cJSON *name = cJSON_GetObjectItem(m, "mode"), *nodes = cJSON_GetObjectItem(m, "mean_tree_nodes");
        CHECK(cJSON_IsString(name) && !strcmp(name->valuestring, modes[k]));
        CHECKF(cJSON_IsNumber(nodes) && nodes->valuedouble > (k == 1 ? 1.0 : 2.0) && nodes->valuedouble <= (k == 1 ? 2 : 5),
               "%s: %g nodes per pass", modes[k], cJSON_IsNumber(nodes) ? nodes->valuedouble : -1);
    }
    cJSON_Delete(root);
}

/* --batch 3 over a 2-prompt file on the demo pair: sequence k runs prompt k mod 2, each with the ids
 * the same prompt gets alone; --batch 1 runs a decoder of one sequence. */
static void test_batch(void) {
    FILE *f = fopen("build/test_bench_batch.txt", "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("Lily and Tom went to the park.\nThe little dog was happy\n", f);
    fclose(f);
    static const char *modes[] = {"none", "chain", "tree", "lookup"};
    bench_run b = {.modes = modes, .n_modes = 4, .n_prompts = 2, .repeats = 2, .base = "none", .tree_max = 24, .batch = 3};
    char *out, *err;
    cJSON *root = bench("bench -m models/tinystories-moge -d models/tinystories-draft -n 16 --repeats 2 --lookup --batch 3 "
                        "--prompts build/test_bench_batch.txt", &b, 16, &out, &err);
    check_interleaved(err, modes, 4, 2);
    CHECKF(strstr(out, "tok/s/seq") && strstr(out, "tok/s/seq: tok/s / 3") && strstr(out, "batch 3 (sequence k: prompt k mod 2)"),
           "no tok/s/seq column, legend or batch in the summary:\n%s", out);
    free(out); free(err);
    /* the same prompts one at a time */
    bench_run alone = {.modes = modes, .n_modes = 1, .n_prompts = 2, .repeats = 1, .base = "none", .tree_max = 24};
    cJSON *single = bench("bench -m models/tinystories-moge -d models/tinystories-draft -n 16 --repeats 1 --modes none "
                          "--prompts build/test_bench_batch.txt", &alone, 16, NULL, NULL);
    const cJSON *want = single ? cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(single, "modes"), 0), "ids") : NULL;
    const cJSON *ms = root ? cJSON_GetObjectItem(root, "modes") : NULL;
    for (int k = 0; want && k < cJSON_GetArraySize(ms); k++) {
        const cJSON *ids = cJSON_GetObjectItem(cJSON_GetArrayItem(ms, k), "ids");
        for (int q = 0; q < 3; q++)
            CHECKF(ids_equal(cJSON_GetArrayItem(ids, q), cJSON_GetArrayItem(want, q % 2)), "mode %s, sequence %d: not the ids of prompt %d alone",
                   modes[k], q + 1, q % 2 + 1);
    }
    cJSON_Delete(single);
    cJSON_Delete(root);
    bench_run one = {.modes = modes, .n_modes = 3, .n_prompts = 8, .repeats = 1, .base = "none", .tree_max = 24, .batch = 1};
    cJSON_Delete(bench("bench -m models/tinystories-moge -d models/tinystories-draft -n 8 --repeats 1 --modes none,chain,tree --batch 1", &one, 8, NULL, NULL));
}

static void test_errors(void) {
    static const struct { const char *args; int rc; const char *needle; } cases[] = {
        {BENCH " --modes bogus", 2, "--modes"},
        {BENCH " --modes none,none", 2, "--modes"},
        {BENCH " --modes none,tree:0", 2, "tree:N"},
        {BENCH " --modes none:3", 2, "chain:N"},
        {BENCH " --modes chain:x", 2, "chain:N"},
        {BENCH " --modes tree:64", 2, "tree:N"},
        {BENCH " --modes chain:4,chain:4", 2, "listed twice"},
        {BENCH " --modes none,chain:1,chain:2,chain:3,chain:4,chain:5,chain:6,chain:7,chain:8,tree:1,tree:2,tree:3,tree:4,tree:5,tree:6,tree:7,tree:8", 2, "at most 16"},
        {BENCH " --prompts build/no_such_prompts.txt", 1, "build/no_such_prompts.txt"},
        {BENCH " --repeats 0", 2, "--repeats"},
        {"bench -m models/stories260K", 2, "drafter"},
        {"bench -m no/such/model -d models/stories260K", 1, "no/such/model"},
        {BENCH " --threads 0", 2, "--threads"},
        {BENCH " --draft-max", 2, "--draft-max needs a value"},
        {BENCH " --batch 0", 2, "--batch"},
        {BENCH " --batch 4097", 2, "--batch"},
        {BENCH " --batch x", 2, "--batch"},
        {BENCH " --batch", 2, "--batch needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_moge_error(cases[i].args, cases[i].rc, cases[i].needle, OUT, ERR);
    }
}

int main(void) {
    RUN_TESTS(T(test_default_modes), T(test_interleaved_repeats), T(test_baseline_and_fixed_trees), T(test_moe_columns),
              T(test_prompts_file_and_lookup), T(test_shared_sampling_flags), T(test_fixed_sizes), T(test_batch), T(test_errors));
}
