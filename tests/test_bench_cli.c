/*
 * test_bench_cli.c — `moge bench` end to end ($MOGE_BIN, default build/moge, run from the
 * repository root, on models/stories260K drafting for itself):
 *  - the table has one row per mode, none's speedup is 1.00, every row says identical "yes"
 *    (greedy), and the line under it says all modes produced identical text;
 *  - the repeats interleave the modes: stderr (not a terminal) has one line per repeat and mode,
 *    repeat 1's modes in --modes order, then repeat 2's;
 *  - --json writes the documented fields, and every mode's ids equal mode none's;
 *  - a --prompts file of 2 prompts gives 2 id lists per mode; --lookup adds a lookup row;
 *  - the sampling, backend and tree flags run and chat take work in bench too (sampled: "-");
 *  - bad input: --modes bogus names --modes (exit 2); a missing --prompts file is named (exit 1).
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



/* The table row of `mode` split on blanks into at most 32 fields; returns the count (0: no row). */
static int row_fields(char *table, const char *mode, char *fields[32]) {
    size_t len = strlen(mode);
    for (char *line = table; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!strncmp(line, mode, len) && line[len] == ' ') {
            int n = 0;
            for (char *t = strtok(line, " "); t && n < 32; t = strtok(NULL, " ")) fields[n++] = t;
            return n;
        }
        line = next;
    }
    return 0;
}

/* Checks each mode's row: speedup 1.00 for none, identical "yes" as the last column. */
static void check_table(const char *out, const char *const *modes, int n_modes) {
    for (int k = 0; k < n_modes; k++) {
        char *copy = strdup(out), *f[32];
        int n = row_fields(copy, modes[k], f);
        CHECKF(n >= 9, "no row for mode %s in:\n%s", modes[k], out);
        if (n >= 9) {
            CHECKF(strtod(f[1], NULL) > 0, "mode %s: tokens/s \"%s\"", modes[k], f[1]);
            if (!strcmp(modes[k], "none")) CHECKF(!strcmp(f[2], "1.00"), "speedup of none is \"%s\"", f[2]);
            CHECKF(!strcmp(f[n - 1], "yes"), "mode %s: identical is \"%s\"", modes[k], f[n - 1]);
        }
        free(copy);
    }
    CHECKF(strstr(out, "all modes produced identical text") != NULL, "no identity line in:\n%s", out);
    CHECKF(strstr(out, "target models/stories260K, draft models/stories260K") != NULL, "models not stated in:\n%s", out);
}

static bool ids_equal(const cJSON *a, const cJSON *b) {
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b) || cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return false;
    for (int i = 0; i < cJSON_GetArraySize(a); i++)
        if (cJSON_GetArrayItem(a, i)->valuedouble != cJSON_GetArrayItem(b, i)->valuedouble) return false;
    return true;
}

/* Parses JSON and checks the top-level fields, the modes in order, and every mode's ids
 * (n_prompts non-empty lists) against mode none's. Returns the parsed document (or NULL). */
static cJSON *check_json(const char *const *modes, int n_modes, int n_prompts) {
    char *text = slurp_text(JSON);
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECKF(root != NULL, "%s does not parse", JSON);
    if (!root) return NULL;
    static const char *top[] = {"target", "draft", "threads", "prompts", "n_predict", "repeats", "temperature", "modes"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        CHECKF(cJSON_GetObjectItem(root, top[i]) != NULL, "JSON lacks \"%s\"", top[i]);
    const cJSON *jm = cJSON_GetObjectItem(root, "modes"), *none_ids = NULL;
    CHECK(cJSON_GetObjectItem(root, "prompts") && cJSON_GetObjectItem(root, "prompts")->valueint == n_prompts);
    CHECK(cJSON_GetObjectItem(root, "n_predict") && cJSON_GetObjectItem(root, "n_predict")->valueint == 40);
    CHECKF(cJSON_GetArraySize(jm) == n_modes, "JSON has %d modes, expected %d", cJSON_GetArraySize(jm), n_modes);
    static const char *fields[] = {"mode", "tokens_per_s", "speedup", "tau", "accept_by_depth", "draft_share",
                                   "moe_imbalance", "distinct_experts", "identical", "ids"};
    for (int k = 0; k < n_modes && k < cJSON_GetArraySize(jm); k++) {
        const cJSON *m = cJSON_GetArrayItem(jm, k), *ids = cJSON_GetObjectItem(m, "ids");
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            CHECKF(cJSON_GetObjectItem(m, fields[i]) != NULL, "mode %d lacks \"%s\"", k, fields[i]);
        const cJSON *name = cJSON_GetObjectItem(m, "mode");
        CHECKF(cJSON_IsString(name) && !strcmp(name->valuestring, modes[k]), "mode %d is not %s", k, modes[k]);
        CHECKF(cJSON_IsTrue(cJSON_GetObjectItem(m, "identical")), "mode %s: identical is not true", modes[k]);
        CHECKF(cJSON_GetArraySize(ids) == n_prompts, "mode %s: %d id lists, expected %d", modes[k], cJSON_GetArraySize(ids), n_prompts);
        for (int i = 0; i < cJSON_GetArraySize(ids); i++)
            CHECKF(cJSON_GetArraySize(cJSON_GetArrayItem(ids, i)) > 0, "mode %s: prompt %d has no ids", modes[k], i);
        if (!strcmp(modes[k], "none")) none_ids = ids;
    }
    CHECKF(none_ids != NULL, "no mode none in the JSON");
    for (int k = 0; none_ids && k < cJSON_GetArraySize(jm); k++) {
        const cJSON *ids = cJSON_GetObjectItem(cJSON_GetArrayItem(jm, k), "ids");
        CHECKF(cJSON_GetArraySize(ids) == cJSON_GetArraySize(none_ids), "mode %d: id list count differs from none", k);
        for (int i = 0; i < cJSON_GetArraySize(ids) && i < cJSON_GetArraySize(none_ids); i++)
            CHECKF(ids_equal(cJSON_GetArrayItem(ids, i), cJSON_GetArrayItem(none_ids, i)), "mode %d prompt %d: ids differ from none", k, i);
    }
    return root;
}

static void test_default_modes(void) {
    remove(JSON);
    CHECK(MOGE(BENCH " --json " JSON) == 0);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    static const char *modes[] = {"none", "chain", "tree"};
    check_table(out, modes, 3);
    CHECKF(strstr(out, "lookup") == NULL, "lookup ran without being asked:\n%s", out);
    CHECKF(strstr(err, "models/stories260K") != NULL, "stderr does not name the models: %s", err);
    cJSON *root = check_json(modes, 3, 8);
    if (root) {
        const cJSON *none = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "modes"), 0);
        CHECK(cJSON_GetObjectItem(none, "speedup")->valuedouble == 1.0);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(none, "moe_imbalance"))); /* stories260K is dense */
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
    remove(JSON);
    CHECK(MOGE("bench -m models/stories260K -d models/stories260K -n 40 --repeats 3 --modes tree,none,chain --json " JSON) == 0);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    static const char *modes[] = {"tree", "none", "chain"};
    check_table(out, modes, 3);
    check_interleaved(err, modes, 3, 3);
    free(out); free(err);
}

static void test_prompts_file_and_lookup(void) {
    FILE *f = fopen("build/test_bench_prompts.txt", "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("Lily and Tom went to the park.\n\nThe little dog was happy\n", f); /* the blank line is skipped */
    fclose(f);
    remove(JSON);
    CHECK(MOGE(BENCH " --prompts build/test_bench_prompts.txt --lookup --json " JSON) == 0);
    char *out = slurp_text(OUT);
    static const char *modes[] = {"none", "chain", "tree", "lookup"};
    check_table(out, modes, 4);
    cJSON_Delete(check_json(modes, 4, 2));
    free(out);
}

/* The flags bench shares with run and chat (examples/cmd_common.c): sampling at --temp > 0 with
 * top-k/top-p/min-p/penalty, the ref backend, a dynamic tree's --branch, sampled drafts. */
static void test_shared_sampling_flags(void) {
    CHECK(MOGE("bench -m models/stories260K -d models/stories260K -n 16 --repeats 1 --modes none,tree --temp 0.7 --top-k 5 --top-p 0.9 "
               "--min-p 0.01 --repeat-penalty 1.1 --seed 3 --backend ref --branch 2 --sampled-draft") == 0);
    char *out = slurp_text(OUT), *err = slurp_text(ERR), *f[32];
    char *copy = strdup(out);
    int n = row_fields(copy, "tree", f);
    CHECKF(n >= 9 && !strcmp(f[n - 1], "-"), "no sampled tree row in:\n%s%s", out, err);
    CHECKF(strstr(out, "temperature 0.7: outputs are sampled") != NULL, "%s", out);
    free(copy); free(out); free(err);
}

static void test_errors(void) {
    static const struct { const char *args; int rc; const char *needle; } cases[] = {
        {BENCH " --modes bogus", 2, "--modes"},
        {BENCH " --modes none,none", 2, "--modes"},
        {BENCH " --prompts build/no_such_prompts.txt", 1, "build/no_such_prompts.txt"},
        {BENCH " --repeats 0", 2, "--repeats"},
        {"bench -m models/stories260K", 2, "drafter"},
        {"bench -m no/such/model -d models/stories260K", 1, "no/such/model"},
        {BENCH " --threads 0", 2, "--threads"},
        {BENCH " --draft-max", 2, "--draft-max needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_moge_error(cases[i].args, cases[i].rc, cases[i].needle, OUT, ERR);
    }
}

int main(void) {
    RUN_TESTS(T(test_default_modes), T(test_interleaved_repeats), T(test_prompts_file_and_lookup), T(test_shared_sampling_flags), T(test_errors));
}
