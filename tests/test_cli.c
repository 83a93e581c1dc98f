/*
 * test_cli.c — the `moge` binary end to end (build/moge, run from the repository root):
 *  - `moge run -m models/stories260K -n 200 --temp 0` prints exactly llama2.c's published text
 *    (one trailing newline allowed), statistics on stderr, exit 0;
 *  - every speculative mode prints the same text;
 *  - --stats-json holds the documented fields;
 *  - bad input: a clear message naming the flag or path and a non-zero exit.
 */
#include <stdint.h>
#include <sys/wait.h>

#include "harness.h"
#include "test_util.h"


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

static void test_stats_json(void) {
    CHECK(MOGE("run -m models/stories260K -n 50 --temp 0 --draft-layers 3 --stats-json build/test_cli.json") == 0);
    char *j = slurp_text("build/test_cli.json");
    static const char *keys[] = {"\"ids\"", "\"tokens\"", "\"prefill_seconds\"", "\"seconds\"", "\"tokens_per_s\"", "\"target_passes\"",
                                 "\"mean_accepted\"", "\"accept_by_depth\"", "\"time_split\"", "\"draft\"", "\"verify\"", "\"sample\"", "\"rollback\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECKF(strstr(j, keys[i]) != NULL, "stats JSON lacks %s", keys[i]);
    free(j);
    CHECK(MOGE("run -m tests/fixtures/moe/pangu_16e4g -n 20 --temp 0 -p x --stats-json build/test_cli.json") != 0); /* no tokenizer */
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "tokenizer.json") != NULL, "%s", err);
    free(err);
}

static void test_prompt_not_echoed(void) {
    CHECK(MOGE("run -m models/stories260K -p \"Once upon a time\" -n 20 --temp 0") == 0);
    char *out = slurp_text(OUT);
    CHECKF(strncmp(out, "Once upon a time", 16) != 0 && strlen(out) > 10, "stdout: %s", out);
    free(out);
}

static void test_errors(void) {
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
        {"frob", 2, "unknown command"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = MOGE(cases[i].args);
        char *err = slurp_text(ERR);
        CHECKF(rc == cases[i].rc, "moge %s: exit %d, expected %d (%s)", cases[i].args, rc, cases[i].rc, err);
        CHECKF(strstr(err, cases[i].needle) != NULL, "moge %s: stderr does not mention \"%s\": %s", cases[i].args, cases[i].needle, err);
        free(err);
    }
}

static void test_info(void) {
    CHECK(MOGE("info -m tests/fixtures/moe/pangu_64e8g_bf16") == 0);
    char *out = slurp_text(OUT);
    CHECKF(strstr(out, "PanguProMoEForCausalLM") && strstr(out, "64 routed") && strstr(out, "8 groups") && strstr(out, "routing moge"),
           "moge info: %s", out);
    free(out);
    CHECK(MOGE("--help") == 0);
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

int main(void) {
    RUN_TESTS(T(test_run_greedy_matches_llama2c), T(test_speculative_modes_same_text), T(test_stats_json), T(test_prompt_not_echoed),
              T(test_errors), T(test_info), T(test_library_example), T(test_quant_speculative_same_text));
}
