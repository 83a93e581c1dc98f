/*
 * test_cli.c — the `moge` binary end to end (build/moge, run from the repository root):
 *  - `moge run -m models/stories260K -n 200 --temp 0` prints exactly llama2.c's published text
 *    (one trailing newline allowed), statistics on stderr, exit 0;
 *  - every speculative mode prints the same text;
 *  - --stats-json holds the documented fields, the planner's statistics with their types (null
 *    predicted_speedup and no plain steps where no planner runs: plain decoding, --no-adaptive);
 *  - run --prompts FILE --batch 3 (4 prompts and blank lines; target alone and with the draft
 *    model, greedy): per prompt a "--- prompt K" line and exactly what run -p prints for it alone
 *    with the same flags; --stats-json has one object per prompt and the totals; --batch without
 *    --prompts, --prompts with -p, --batch 0 or above MOGE_MAX_SEQ: exit 2 naming the flag;
 *  - bad input: a clear message naming the flag or path and a non-zero exit;
 *  - the flags run, chat and bench share (cli/cmd_common.c) give the same errors, the same
 *    drafter errors (a draft with another tokenizer) and the same help through all three.
 */
#include <cJSON.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"


#define OUT "build/test_cli.out"
#define ERR "build/test_cli.err"
/* runs $MOGE_BIN with the arguments; stdout and stderr land in OUT and ERR */
#define MOGE(args) moge_cmd(args, OUT, ERR)

static char *expected(void) {
    char *e = slurp_text("tests/fixtures/stories260K-greedy-200.txt");
    CHECKF(strlen(e) > 400, "missing tests/fixtures/stories260K-greedy-200.txt");
    return e;
}

/* stdout must equal e, optionally followed by one newline */
static int same_text(const char *out, const char *e) {
    size_t n = strlen(e);
    return strncmp(out, e, n) == 0 && (out[n] == 0 || (out[n] == '\n' && out[n + 1] == 0));
}

static void test_run_greedy_matches_llama2c(void) {
    char *e = expected();
    CHECK(MOGE("run -m models/stories260K -n 200 --temp 0") == 0);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(same_text(out, e), "stdout differs from the expected text:\n%s", out);
    CHECKF(strstr(err, "generated 200 tokens") != NULL, "stderr: %s", err);
    free(out); free(err); free(e);
}

static void test_speculative_modes_same_text(void) {
    char *e = expected();
    static const char *modes[] = {
        "--lookup", "--draft-layers 3", "-d models/stories260K", "-d models/stories260K --spec chain --draft-max 4",
        "-d models/stories260K --tree-shape 4,2,2,1,1", "--draft-layers 2 --tree-nodes 8 --branch 2 --no-adaptive",
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, "run -m models/stories260K -n 200 --temp 0 %s", modes[i]);
        CHECKF(MOGE(args) == 0, "%s failed", modes[i]);
        char *out = slurp_text(OUT), *err = slurp_text(ERR);
        CHECKF(same_text(out, e), "%s: text differs", modes[i]);
        CHECKF(strstr(err, "speculative") != NULL, "%s: no speculative statistics on stderr: %s", modes[i], err);
        free(out); free(err);
    }
    free(e);
}

/* With Q8 weights the speculative output still equals the (Q8) target-only output. */
static void test_quant_speculative_same_text(void) {
    CHECK(MOGE("run -m models/stories260K -n 120 --temp 0 --quant q8") == 0);
    char *plain = slurp_text(OUT);
    CHECK(MOGE("run -m models/stories260K -n 120 --temp 0 --quant q8 --draft-layers 3 --no-adaptive") == 0);
    char *spec = slurp_text(OUT);
    CHECKF(strlen(plain) > 200 && strcmp(plain, spec) == 0, "q8 plain:\n%s\nq8 speculative:\n%s", plain, spec);
    free(plain);
    free(spec);
}

/* The planner's statistics in --stats-json: draft_nodes_verified (= draft_nodes),
 * draft_nodes_proposed (0 when not counted, else at least the verified), plain_steps (at most
 * the passes after the prefill), predicted_speedup (null without a planner, else > 0) and
 * expert_bytes_read (0 for a dense target). `planner`: a planner may have run. */
static void check_planner_stats(const char *text, const char *what, bool planner, bool moe) {
    cJSON *root = cJSON_Parse(text);
    CHECKF(root != NULL, "%s: the stats JSON does not parse", what);
    if (!root) return;
    const cJSON *verified = cJSON_GetObjectItem(root, "draft_nodes_verified"), *proposed = cJSON_GetObjectItem(root, "draft_nodes_proposed");
    const cJSON *plain = cJSON_GetObjectItem(root, "plain_steps"), *pred = cJSON_GetObjectItem(root, "predicted_speedup");
    const cJSON *bytes = cJSON_GetObjectItem(root, "expert_bytes_read"), *passes = cJSON_GetObjectItem(root, "target_passes");
    CHECKF(cJSON_IsNumber(verified) && cJSON_IsNumber(proposed) && cJSON_IsNumber(plain) && cJSON_IsNumber(bytes) && cJSON_IsNumber(passes) &&
               (cJSON_IsNumber(pred) || cJSON_IsNull(pred)),
           "%s: planner statistics missing or of the wrong type: %s", what, text);
    if (cJSON_IsNumber(verified) && cJSON_IsNumber(proposed) && cJSON_IsNumber(plain) && cJSON_IsNumber(bytes) && cJSON_IsNumber(passes)) {
        CHECKF(verified->valuedouble == cJSON_GetObjectItem(root, "draft_nodes")->valuedouble, "%s: draft_nodes_verified != draft_nodes", what);
        CHECKF(proposed->valuedouble == 0 || proposed->valuedouble >= verified->valuedouble, "%s: %g nodes proposed, %g verified", what,
               proposed->valuedouble, verified->valuedouble);
        CHECKF(plain->valuedouble >= 0 && plain->valuedouble <= passes->valuedouble - 1, "%s: %g plain steps of %g passes", what,
               plain->valuedouble, passes->valuedouble);
        CHECKF(moe ? bytes->valuedouble >= 0 : bytes->valuedouble == 0, "%s: expert_bytes_read %g", what, bytes->valuedouble);
        if (!planner) CHECKF(cJSON_IsNull(pred) && plain->valuedouble == 0, "%s: no planner, yet predicted_speedup or plain_steps", what);
        CHECKF(!cJSON_IsNumber(pred) || pred->valuedouble > 0, "%s: predicted_speedup %g", what, pred->valuedouble);
    }
    /* forward_times: one target forward per pass (the prefill's included), each part's seconds,
     * no router or expert time in a dense model */
    const cJSON *ft = cJSON_GetObjectItem(root, "forward_times"), *fw = cJSON_GetObjectItem(ft, "forwards"), *rows = cJSON_GetObjectItem(ft, "rows");
    CHECKF(cJSON_IsNumber(fw) && cJSON_IsNumber(passes) && fw->valuedouble == passes->valuedouble && cJSON_IsNumber(rows) &&
               rows->valuedouble >= fw->valuedouble,
           "%s: forward_times: %s", what, text);
    static const char *parts[] = {"qkv", "attention", "out_proj", "mlp", "router", "experts", "lm_head", "other"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const cJSON *v = cJSON_GetObjectItem(ft, parts[i]);
        bool none = !moe && (i == 4 || i == 5);
        CHECKF(cJSON_IsNumber(v) && (none ? v->valuedouble == 0 : v->valuedouble > 0), "%s: forward_times.%s", what, parts[i]);
    }
    cJSON_Delete(root);
}

static void test_stats_json(void) {
    CHECK(MOGE("run -m models/stories260K -n 50 --temp 0 --draft-layers 3 --stats-json build/test_cli.json") == 0);
    char *j = slurp_text("build/test_cli.json");
    static const char *keys[] = {"\"ids\"", "\"tokens\"", "\"prefill_seconds\"", "\"seconds\"", "\"tokens_per_s\"", "\"target_passes\"",
                                 "\"mean_accepted\"", "\"accept_by_depth\"", "\"time_split\"", "\"draft\"", "\"verify\"", "\"sample\"", "\"rollback\"", "\"draft_accept\"", "\"emit\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECKF(strstr(j, keys[i]) != NULL, "stats JSON lacks %s", keys[i]);
    check_planner_stats(j, "--draft-layers 3", true, false);
    free(j);
    /* no planner: plain decoding, and a fixed tree (--no-adaptive) */
    CHECK(MOGE("run -m models/stories260K -n 30 --temp 0 --stats-json build/test_cli.json") == 0);
    j = slurp_text("build/test_cli.json");
    check_planner_stats(j, "plain decoding", false, false);
    free(j);
    CHECK(MOGE("run -m models/stories260K -n 30 --temp 0 --draft-layers 3 --no-adaptive --stats-json build/test_cli.json") == 0);
    j = slurp_text("build/test_cli.json");
    check_planner_stats(j, "--no-adaptive", false, false);
    free(j);
    CHECK(MOGE("run -m models/tinystories-moge -d models/tinystories-draft -n 30 --temp 0 --stats-json build/test_cli.json") == 0);
    j = slurp_text("build/test_cli.json");
    check_planner_stats(j, "MoGE demo pair", true, true);
    free(j);
    CHECK(MOGE("run -m tests/fixtures/moe/pangu_16e4g -n 20 --temp 0 -p x --stats-json build/test_cli.json") != 0); /* no tokenizer */
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "tokenizer.json") != NULL, "%s", err);
    free(err);
}

/* --compare: the same generation without speculation, the speedup and identity on one line, in
 * the JSON too; the printed text is the speculative run's (the llama2.c reference). */
static void test_compare(void) {
    char *e = expected();
    CHECK(MOGE("run -m models/stories260K -d models/stories260K -n 200 --temp 0 --compare --stats-json build/test_cli.json") == 0);
    char *out = slurp_text(OUT), *err = slurp_text(ERR), *j = slurp_text("build/test_cli.json");
    CHECKF(same_text(out, e), "stdout differs from the reference");
    CHECKF(strstr(err, "tree speculation") && strstr(err, "no speculation") && strstr(err, "x in this run; text identical"), "%s", err);
    cJSON *root = cJSON_Parse(j), *cmp = cJSON_GetObjectItem(root, "compare");
    CHECKF(cmp && cJSON_IsTrue(cJSON_GetObjectItem(cmp, "identical")) && cJSON_GetObjectItem(cmp, "speedup") &&
               cJSON_GetObjectItem(cmp, "speedup")->valuedouble > 0,
           "%s", j);
    cJSON_Delete(root);
    free(out); free(err); free(j); free(e);
    CHECK(MOGE("run -m models/stories260K -n 5 --compare") == 2); /* nothing to compare */
    err = slurp_text(ERR);
    CHECKF(strstr(err, "--compare") && strstr(err, "drafter"), "%s", err);
    free(err);
}

static void test_prompt_not_echoed(void) {
    CHECK(MOGE("run -m models/stories260K -p \"Once upon a time\" -n 20 --temp 0") == 0);
    char *out = slurp_text(OUT);
    CHECKF(strncmp(out, "Once upon a time", 16) != 0 && strlen(out) > 10, "stdout: %s", out);
    free(out);
}

/* Issue 18, defect 2: a prompt whose text is a long run of byte tokens (stories260K has no CJK
 * pieces: 3 byte tokens a character, 120+ bytes held by ByteFallback) streams, is not echoed, and
 * the run and a chat turn exit 0 with text (they stopped silently with exit 1 before). */
static void test_byte_token_runs(void) {
    static const char *cjk = "東京は日本の首都です。ひらがなとカタカナ、漢字。東京は日本の首都です。ひらがなとカタカナ、漢字。";
    char args[1024];
    snprintf(args, sizeof args, "run -m models/stories260K -p \"%s\" -n 12 --temp 0 --stats-json build/test_cli_cjk.json", cjk);
    int rc = MOGE(args);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(rc == 0, "exit %d: %s", rc, err ? err : "");
    CHECKF(out && !strstr(out, "東京") && strlen(out) > 2, "stdout: %s", out ? out : "(none)");
    char *js = slurp_text("build/test_cli_cjk.json");
    CHECKF(js && strstr(js, "\"tokens\":\t12"), "12 tokens generated: %s", js ? js : "(none)");
    free(js);
    free(out);
    free(err);
    /* the same through chat (a non-interactive session reads the line from stdin) */
    char cmd[2048];
    const char *bin = getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge";
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' \"%s\" | %s chat -m models/stories260K -n 12 --temp 0 >%s 2>%s", cjk, bin, OUT, ERR);
    rc = shell(cmd);
    out = slurp_text(OUT);
    err = slurp_text(ERR);
    CHECKF(rc == 0, "chat exit %d: %s", rc, err ? err : "");
    CHECKF(out && !strstr(out, "東京"), "chat stdout: %s", out ? out : "(none)");
    free(out);
    free(err);
}

#define PROMPTS "build/test_cli_prompts.txt"

/* moge run --prompts PROMPTS --batch 3 with `flags`: stdout must be, per prompt, "--- prompt K"
 * and then what moge run -p prints for that prompt alone with the same flags. */
static void check_prompts_batch(const char *const *prompts, int n, const char *flags) {
    char args[1024];
    size_t cap = 1, len = 0;
    char *want = calloc(1, 1);
    for (int i = 0; i < n; i++) {
        snprintf(args, sizeof args, "run %s -p \"%s\"", flags, prompts[i]);
        CHECKF(MOGE(args) == 0, "moge %s failed", args);
        char *out = slurp_text(OUT), head[32];
        snprintf(head, sizeof head, "--- prompt %d\n", i + 1);
        want = realloc(want, cap += strlen(head) + strlen(out));
        len += (size_t)sprintf(want + len, "%s%s", head, out);
        CHECKF(strlen(out) > 20, "moge %s printed only \"%s\"", args, out);
        free(out);
    }
    snprintf(args, sizeof args, "run %s --prompts " PROMPTS " --batch 3 --stats-json build/test_cli_batch.json", flags);
    int rc = MOGE(args);
    char *out = slurp_text(OUT), *err = slurp_text(ERR), *j = slurp_text("build/test_cli_batch.json");
    CHECKF(rc == 0, "moge %s: exit %d: %s", args, rc, err);
    CHECKF(!strcmp(out, want), "moge %s printed:\n%s\nthe single runs:\n%s", args, out, want);
    cJSON *root = cJSON_Parse(j);
    const cJSON *seqs = cJSON_GetObjectItem(root, "sequences"), *totals = cJSON_GetObjectItem(root, "totals");
    CHECKF(cJSON_IsArray(seqs) && cJSON_GetArraySize(seqs) == n && cJSON_IsObject(totals), "stats JSON: %s", j);
    double tokens = 0;
    for (int i = 0; i < cJSON_GetArraySize(seqs); i++) {
        const cJSON *q = cJSON_GetArrayItem(seqs, i), *k = cJSON_GetObjectItem(q, "prompt"), *t = cJSON_GetObjectItem(q, "tokens");
        CHECKF(cJSON_IsNumber(k) && k->valueint == i + 1 && cJSON_IsNumber(t) && cJSON_GetArraySize(cJSON_GetObjectItem(q, "ids")) == t->valueint,
               "stats JSON sequence %d", i);
        tokens += cJSON_IsNumber(t) ? t->valuedouble : 0;
    }
    const cJSON *tt = cJSON_GetObjectItem(totals, "tokens");
    CHECKF(cJSON_IsNumber(tt) && tt->valuedouble == tokens && tokens > 0, "totals: %g tokens, the sequences %g", cJSON_IsNumber(tt) ? tt->valuedouble : -1, tokens);
    CHECKF(cJSON_IsNumber(cJSON_GetObjectItem(root, "batch")) && cJSON_GetObjectItem(root, "batch")->valueint == 3, "stats JSON batch");
    cJSON_Delete(root);
    free(out); free(err); free(j); free(want);
}

static void test_run_prompts_batch(void) {
    static const char *const prompts[] = {"Once upon a time, there was a little robot", "Tom had a red ball. One day,", "The sun was shining",
                                          "Mia wanted to bake a cake for her friend."};
    FILE *f = fopen(PROMPTS, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "%s\n\n%s\n  \t\n%s\n%s\n", prompts[0], prompts[1], prompts[2], prompts[3]); /* blank lines are skipped */
    fclose(f);
    check_prompts_batch(prompts, 4, "-m models/tinystories-moge -n 24 --temp 0");
    check_prompts_batch(prompts, 4, "-m models/tinystories-moge -d models/tinystories-draft -n 24 --temp 0");
    static const struct { const char *args; int rc; const char *needle; } cases[] = {
        {"run -m models/stories260K --batch 3", 2, "--prompts"},
        {"run -m models/stories260K --prompts " PROMPTS " -p hi", 2, "-p"},
        {"run -m models/stories260K --prompts " PROMPTS " --batch 0", 2, "--batch"},
        {"run -m models/stories260K --prompts " PROMPTS " --batch 4097", 2, "--batch"},
        {"run -m models/stories260K --prompts build/no_such_prompts.txt", 1, "build/no_such_prompts.txt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_moge_error(cases[i].args, cases[i].rc, cases[i].needle, OUT, ERR);
    CHECK(MOGE("run --help") == 0);
    char *out = slurp_text(OUT);
    CHECKF(strstr(out, "--prompts FILE") && strstr(out, "--- prompt K") && strstr(out, "--batch N"), "run --help: %s", out);
    free(out);
}

#define MISMATCH "build/test_cli_vocab_mismatch"
#define GGUF_MISMATCH "tests/fuzz/corpus/gguf_model/seed-qwen2moe64_q4_0-gpt2"
#define FIFO_MODEL "build/test_cli_fifo_model"

static void test_errors(void) {
    /* stories260K's config and weights (vocab_size 512) with Qwen3's tokenizer (151669 ids); a
     * directory whose model.safetensors is a FIFO */
    CHECK(system("rm -rf " MISMATCH " " FIFO_MODEL " && mkdir -p " MISMATCH " " FIFO_MODEL " && "
                 "ln -s \"$PWD/models/stories260K/config.json\" \"$PWD/models/stories260K/model.safetensors\" " MISMATCH "/ && "
                 "ln -s \"$PWD/tests/fixtures/tokenizers/qwen3/tokenizer.json\" " MISMATCH "/ && "
                 "cp models/stories260K/config.json models/stories260K/tokenizer.json " FIFO_MODEL "/ && "
                 "mkfifo " FIFO_MODEL "/model.safetensors") == 0);
    static const struct { const char *args; int rc; const char *needle; } cases[] = {
        {"run", 2, "-m DIR is required"},
        {"run -m", 2, "-m needs a value"},
        {"run -m models/stories260K --temp abc", 2, "--temp"},
        {"run -m models/stories260K --backend gpu", 2, "--backend"},
        {"run -m models/stories260K --spec tree", 2, "needs a drafter"},
        {"run -m models/stories260K --frobnicate", 2, "--frobnicate"},
        {"run -m no/such/model", 1, "no/such/model"},
        {"run -m tests/fixtures/broken/wrong_shape", 1, "model.layers.0.mlp.gate_proj.weight"},
        {"run -m models/stories260K --draft-layers 9", 1, "layer-skip"},
        {"run -m models/stories260K -d tests/fixtures/moe/pangu_16e4g", 1, "draft"},
        {"run -m models/stories260K -c 100000", 1, "max_position_embeddings"},
        {"run -m models/stories260K --quant q3", 2, "--quant"},
        {"run -m models/stories260K --threads 0", 2, "--threads"},
        {"run -m models/stories260K --draft-max", 2, "--draft-max needs a value"},
        /* issue 18, defect 4: a tokenizer larger than the model's vocabulary (made below) */
        {"run -m " MISMATCH " -p hi -n 1", 1, MISMATCH "/tokenizer.json has 151669 token ids but " MISMATCH "/config.json has vocab_size 512"},
        {"chat -m " MISMATCH " -n 1", 1, "has vocab_size 512"},
        {"bench -m " MISMATCH " --modes none -n 1", 1, "has 151669 token ids"},
        {"run -m models/stories260K -d " MISMATCH " --spec chain -p hi -n 1", 1, "has vocab_size 512"},
        /* the same in a GGUF file (a 40-id MoE with a 308-id tokenizer, written by tools/fuzz_seeds.py):
         * named as the file, not as a directory's tokenizer.json and config.json */
        {"run -m " GGUF_MISMATCH " -p hi -n 1", 1,
         GGUF_MISMATCH ": its tokenizer (tokenizer.ggml.tokens) has 308 token ids but its vocab_size is 40"},
        /* a GGUF model with another tokenizer: its vocab_size named as the GGUF's, not as a config.json beside it */
        {"eval -m " GGUF_MISMATCH " --tokenizer tests/fixtures/tokenizers/qwen3/tokenizer.json -f tests/fixtures/tokenizers/tinystories-valid.txt", 1,
         "tests/fixtures/tokenizers/qwen3/tokenizer.json has 151669 token ids but " GGUF_MISMATCH " (token_embd.weight) has vocab_size 40"},
        /* defect 5: a FIFO as the weights */
        {"info -m " FIFO_MODEL, 1, FIFO_MODEL "/model.safetensors: not a regular file"},
        {"frob", 2, "unknown command"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_moge_error(cases[i].args, cases[i].rc, cases[i].needle, OUT, ERR);
    }
}

static void test_info(void) {
    CHECK(MOGE("info -m tests/fixtures/moe/pangu_64e8g_bf16") == 0);
    char *out = slurp_text(OUT);
    CHECKF(strstr(out, "PanguProMoEForCausalLM") && strstr(out, "64 routed") && strstr(out, "8 groups") && strstr(out, "routing moge"),
           "moge info: %s", out);
    free(out);
    CHECK(MOGE("--help") == 0);
    /* the default threads follow the affinity mask: pinned to one CPU (the first this test may
     * use), one thread */
    cpu_set_t set;
    int first = -1;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
            if (CPU_ISSET(c, &set)) first = c;
    CHECK(first >= 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "taskset -c %d %s info -m models/stories260K >" OUT " 2>" ERR " </dev/null", first,
             getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge");
    CHECK(shell(cmd) == 0);
    out = slurp_text(OUT);
    CHECKF(strstr(out, "threads       1 by default (one per physical core of the 1 CPU this process may run on"), "taskset -c %d moge info: %s", first,
           out);
    free(out);
    /* more threads than that: a note says so (not with -q), and the text is the same */
    snprintf(cmd, sizeof cmd, "taskset -c %d %s run -m models/stories260K -n 8 --temp 0 -p hi -t 3 >" OUT " 2>" ERR " </dev/null", first,
             getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge");
    CHECK(shell(cmd) == 0);
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "note: -t 3 is more threads than the 1 CPU this process may run on") && strstr(err, "(without -t: 1)"), "stderr: %s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "taskset -c %d %s run -m models/stories260K -n 8 --temp 0 -p hi -t 3 -q >" OUT " 2>" ERR " </dev/null", first,
             getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge");
    CHECK(shell(cmd) == 0);
    err = slurp_text(ERR);
    CHECKF(err[0] == 0, "-q stderr: %s", err);
    free(err);
}

/* --kernels: every variant this processor runs gives the llama2.c text and says which it ran (text
 * and JSON); a name that is not built, or one this processor cannot run, is exit 2 naming the ones
 * it runs; MOGE_KERNELS likewise (exit 1: the load refuses it). */
static void test_kernels(void) {
    char *e = expected();
    for (int i = 0; i < moge_cpu_kernels_count(); i++) {
        const char *k = moge_cpu_kernels_name(i);
        char args[256], want[128];
        snprintf(args, sizeof args, "run -m models/stories260K -n 200 --temp 0 --kernels %s --stats-json build/test_cli.json", k);
        if (!moge_cpu_kernels_runs(k)) {
            CHECK(MOGE(args) == 2);
            char *err = slurp_text(ERR);
            CHECKF(strstr(err, "cannot run them") && strstr(err, moge_cpu_kernels_best()), "%s: %s", args, err);
            free(err);
            continue;
        }
        CHECK(MOGE(args) == 0);
        char *out = slurp_text(OUT), *err = slurp_text(ERR), *j = slurp_text("build/test_cli.json");
        snprintf(want, sizeof want, "cpu backend, %s kernels on ", k);
        CHECKF(same_text(out, e), "--kernels %s: stdout differs from the expected text:\n%s", k, out);
        CHECKF(strstr(err, want), "--kernels %s: stderr: %s", k, err);
        snprintf(want, sizeof want, "\"kernels\":\t\"%s\"", k);
        CHECKF(strstr(j, want) && strstr(j, "\"processor\":"), "--kernels %s: JSON: %s", k, j);
        free(out); free(err); free(j);
    }
    CHECK(MOGE("run -m models/stories260K -n 4 --kernels avx9") == 2);
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "moge run: --kernels \"avx9\": no such kernel variant;") && strstr(err, moge_cpu_kernels_name(0)), "%s", err);
    free(err);
    CHECK(MOGE("info -m models/stories260K") == 0);
    char *out = slurp_text(OUT), want[128];
    snprintf(want, sizeof want, "kernels       %s on ", moge_cpu_kernels_best());
    CHECKF(strstr(out, want), "moge info: %s", out);
    free(out);
    CHECK(setenv("MOGE_KERNELS", "none", 1) == 0);
    CHECK(MOGE("run -m models/stories260K -n 4") == 1);
    unsetenv("MOGE_KERNELS");
    err = slurp_text(ERR);
    CHECKF(strstr(err, "MOGE_KERNELS: no kernel variant \"none\""), "%s", err);
    free(err);
    free(e);
}

/* examples/simple.c, the library example, next to the binary: $(BUILD)/examples/simple */
static void test_library_example(void) {
    const char *bin = getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "\"$(dirname %s)/examples/simple\" >%s 2>%s </dev/null", bin, OUT, ERR);
    int rc = system(cmd);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "examples/simple failed: %s", err);
    char *e = expected();
    /* greedy from "Once upon a time": the stories260K text from that point on */
    CHECKF(strncmp(out, "Once upon a time, there was a little girl named Lily.", 52) == 0, "stdout: %s", out);
    CHECKF(strstr(out, "64 tokens") && strstr(out, "tokens per target pass"), "stdout: %s", out);
    free(out); free(err); free(e);
}

/* The three commands that share the flag table, each with a model (and for bench a drafter). */
static const char *const shared_cmds[] = {"run -m models/stories260K", "chat -m models/stories260K",
                                          "bench -m models/stories260K -d models/stories260K -n 8 --repeats 1"};

/* Every command that shares the flag table: the same error, prefixed "moge CMD: ", exit 2. */
static void test_shared_flag_errors(void) {
    static const struct { const char *args, *needle; } cases[] = {
        {"--threads 0", "--threads: expected an integer in 1..1024, got \"0\""},
        {"-t x", "-t: expected an integer in 1..1024"},
        {"--temp -1", "--temp: expected a number in 0..100, got \"-1\""},
        {"--top-p 2", "--top-p: expected a number"},
        {"--seed -3", "--seed: expected a non-negative integer"},
        {"--backend gpu", "--backend: expected cpu or ref, got \"gpu\""},
        {"--routing best", "--routing: expected moge, topk or group_limited"},
        {"--quant q3", "--quant: expected none, q8, q4, w8a8 or w4a8"},
        {"--tree-shape 4,0", "--tree-shape: expected up to 16 numbers"},
        {"--tree-nodes 64", "--tree-nodes: expected an integer in 1..63"},
        {"--branch 0", "--branch: expected an integer in 1..16"},
        {"--frobnicate", "unknown option \"--frobnicate\""},
        {"--draft-layers 2 -d models/stories260K", "choose one drafter"},
        {"--draft-max", "--draft-max needs a value"}, /* last: the flag has no value */
    };
    static const char *const names[] = {"run", "chat", "bench"};
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char args[512], want[256];
            snprintf(args, sizeof args, "%s %s", shared_cmds[c], cases[i].args);
            snprintf(want, sizeof want, "moge %s: ", names[c]);
            int rc = MOGE(args);
            char *err = slurp_text(ERR);
            CHECKF(rc == 2 && strstr(err, want) && strstr(err, cases[i].needle), "moge %s: exit %d, stderr: %s", args, rc, err);
            free(err);
        }
    /* -n: run may generate nothing (prefill only); an answer and a benchmark need a token */
    static const struct { const char *args, *needle; } n_cases[] = {
        {"run -m models/stories260K -n -2", "-n: expected an integer in -1..1073741824"}, /* -1: no limit */
        {"chat -m models/stories260K -n 0", "-n: expected an integer in 1..1073741824"},
        {"bench -m models/stories260K --lookup --modes none -n 0", "-n: expected an integer in 1..16777216"},
        {"bench -m models/stories260K --spec tree", "unknown option \"--spec\""}, /* bench has --modes */
        {"bench -m models/stories260K stray", "unexpected argument \"stray\""},
        {"bench -m models/stories260K --modes frob", "--modes: unknown mode \"frob\""},
        {"bench -m models/stories260K --repeats 0", "--repeats: expected an integer in 1..1000"},
        {"bench -m models/stories260K --batch", "--batch needs a value"},
        {"chat -m models/stories260K --repeats 2", "unknown option \"--repeats\""},
        {"run -m models/stories260K --system hi", "unknown option \"--system\""},
    };
    for (size_t i = 0; i < sizeof n_cases / sizeof n_cases[0]; i++) {
        int rc = MOGE(n_cases[i].args);
        char *err = slurp_text(ERR);
        CHECKF(rc == 2 && strstr(err, n_cases[i].needle), "moge %s: exit %d, stderr: %s", n_cases[i].args, rc, err);
        free(err);
    }
}

/* A draft model whose tokenizer differs from the target's (token 0 renamed) is refused by all
 * three commands with the same message, naming -d; so is a bad --draft-layers. */
static void test_shared_drafter_errors(void) {
    CHECK(shell("rm -rf build/test_cli_mismatch && mkdir -p build/test_cli_mismatch && "
                "cp models/stories260K/config.json models/stories260K/model.safetensors build/test_cli_mismatch/ && "
                "sed 's/<unk>/<unq>/g' models/stories260K/tokenizer.json >build/test_cli_mismatch/tokenizer.json") == 0);
    static const char *const cmds[] = {"run -m models/stories260K", "chat -m models/stories260K", "bench -m models/stories260K -n 8 --repeats 1"};
    for (size_t c = 0; c < 3; c++) {
        char args[512];
        snprintf(args, sizeof args, "%s -d build/test_cli_mismatch", cmds[c]);
        int rc = MOGE(args);
        char *err = slurp_text(ERR);
        CHECKF(rc == 1 && strstr(err, "-d build/test_cli_mismatch (draft model): the draft's tokenizer differs from the target's at token 0"),
               "moge %s: exit %d, stderr: %s", args, rc, err);
        free(err);
        snprintf(args, sizeof args, "%s --draft-layers 9", cmds[c]);
        rc = MOGE(args);
        err = slurp_text(ERR);
        CHECKF(rc == 1 && strstr(err, "--draft-layers 9: layer-skip draft"), "moge %s: exit %d, stderr: %s", args, rc, err);
        free(err);
    }
}

/* The shared flags' help, with each command's own defaults and own flags. */
static void test_shared_help(void) {
    static const struct { const char *cmd, *has[3], *lacks; } cases[] = {
        {"run --help", {"--repeat-penalty F 1 = off (default 1)", "--spec MODE", "--stats-json FILE"}, "--modes"},
        {"chat --help", {"-n, --n-predict N      most tokens per answer (default 256)", "--spec MODE", "--token-delay MS"}, "--stats-json"},
        {"bench --help", {"--temp F           temperature, 0 = greedy (default 0)", "--branch N", "--modes LIST"}, "--spec"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(MOGE(cases[i].cmd) == 0);
        char *out = slurp_text(OUT);
        for (int k = 0; k < 3; k++) CHECKF(strstr(out, cases[i].has[k]) != NULL, "moge %s lacks \"%s\":\n%s", cases[i].cmd, cases[i].has[k], out);
        CHECKF(strstr(out, cases[i].lacks) == NULL, "moge %s shows %s", cases[i].cmd, cases[i].lacks);
        free(out);
    }
    /* flags given before --help do not change the defaults it shows */
    CHECK(MOGE("run --top-k 5 --help") == 0);
    char *out = slurp_text(OUT);
    CHECKF(strstr(out, "0 = off (default 40)") != NULL, "%s", out);
    free(out);
}

int main(void) {
    RUN_TESTS(T(test_kernels), T(test_shared_flag_errors), T(test_shared_drafter_errors), T(test_shared_help), T(test_run_greedy_matches_llama2c), T(test_speculative_modes_same_text), T(test_stats_json), T(test_compare), T(test_prompt_not_echoed), T(test_byte_token_runs), T(test_run_prompts_batch),
              T(test_errors), T(test_info), T(test_library_example), T(test_quant_speculative_same_text));
}
