/*
 * test_eval.c — `moge eval` end to end, against tests/fixtures/eval/expected.json (made by
 * tools/make_eval_fixture.py, Python code that shares nothing with the runtime):
 *  - stories260K on TinyStories valid.txt: the loss equals what tools/train/evaluate.py printed
 *    for the same flags within 1e-4 nats/token; the stream length, the windows chosen and the
 *    predictions scored are equal;
 *  - the random PanguProMoE fixture (tests/fixtures/moe/pangu_16e4g) with a character tokenizer on
 *    six stories, its own MoGE routing and the topk override, 4 and 2 devices: the loss equals the
 *    float64 numpy forward's within 1e-4; per layer the expert histogram and the pairs per device
 *    equal numpy's, each sums to windows x window x k; the mean and largest Imbalance Score equal
 *    numpy's and what the library reports for the same forwards (moge_moe_stats_get per window);
 *  - errors: missing -m / -f, unreadable or non-UTF-8 file, fewer tokens than one window, bad
 *    --window / --windows, a window beyond the model's context, --json to an unwritable path
 *    (refused before any work, nothing written), a tokenizer without BOS, a tokenizer that does
 *    not fit the model;
 *  - Ctrl-C (SIGINT) during the windows: exit 130, and a --json that is complete and marked
 *    partial (or none when no window was done), never a half-written file.
 */
#include <cJSON.h>
#include <stdint.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"

#define OUT "build/test_eval.out"
#define ERR "build/test_eval.err"
#define JSON "build/test_eval.json"
#define EXPECTED "tests/fixtures/eval/expected.json"

static cJSON *load_json(const char *path) {
    char *text = slurp_text(path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : "";
}

static const cJSON *arr(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

/* Two JSON arrays of numbers are equal. */
static bool same_numbers(const cJSON *a, const cJSON *b) {
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b) || cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return false;
    for (const cJSON *x = a->child, *y = b->child; x; x = x->next, y = y->next)
        if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) || x->valuedouble != y->valuedouble) return false;
    return true;
}

static double sum_numbers(const cJSON *a) {
    double s = 0;
    for (const cJSON *x = a ? a->child : NULL; x; x = x->next) s += x->valuedouble;
    return s;
}

/* Runs `moge eval args --json JSON` and returns the parsed JSON (NULL after a failed check). */
static cJSON *eval_json(const char *args) {
    char cmd[2048];
    remove(JSON);
    snprintf(cmd, sizeof cmd, "eval %s --json " JSON, args);
    int rc = moge_cmd(cmd, OUT, ERR);
    char *err = slurp_text(ERR);
    CHECKF(rc == 0, "moge %s: exit %d: %s", cmd, rc, err);
    free(err);
    cJSON *j = load_json(JSON);
    CHECKF(j != NULL, "moge %s: no JSON in " JSON, cmd);
    return j;
}

/* The fields every case of expected.json has, against the command's JSON. */
static void check_common(const char *what, const cJSON *got, const cJSON *want) {
    double a = num(got, "val_loss"), b = num(want, "val_loss");
    printf("  %s: moge eval %.8f, Python %.8f nats/token (difference %.1e)\n", what, a, b, fabs(a - b));
    CHECKF(fabs(a - b) < 1e-4, "%s: loss %.8f, expected %.8f", what, a, b);
    CHECKF(num(got, "tokens") == num(want, "tokens"), "%s: %g tokens in the stream, expected %g", what, num(got, "tokens"),
           num(want, "tokens"));
    CHECKF(num(got, "windows_total") == num(want, "windows_total"), "%s: %g windows in the stream, expected %g", what,
           num(got, "windows_total"), num(want, "windows_total"));
    CHECKF(same_numbers(arr(got, "window_indices"), arr(want, "window_indices")), "%s: other windows chosen", what);
    CHECKF(num(got, "predictions") == num(want, "predictions"), "%s: %g predictions, expected %g", what, num(got, "predictions"),
           num(want, "predictions"));
    CHECKF(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(got, "partial")), "%s: marked partial", what);
    CHECKF(fabs(num(got, "perplexity") - exp(a)) < 1e-9 * exp(a), "%s: perplexity %g is not exp(loss)", what, num(got, "perplexity"));
}

static void test_stories260K_matches_evaluate_py(void) {
    cJSON *e = load_json(EXPECTED);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "stories260K");
    CHECKF(d != NULL, "no " EXPECTED);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(d, "cases")) {
        char args[1024];
        snprintf(args, sizeof args, "-m %s -f %s %s", str(d, "model"), str(d, "file"), str(c, "args"));
        cJSON *j = eval_json(args);
        if (j) check_common(str(c, "args"), j, c);
        char *out = slurp_text(OUT);
        CHECKF(strstr(out, "nats/token") && strstr(out, "perplexity") && !strstr(out, "MoE load"), "stdout: %s", out);
        free(out);
        cJSON_Delete(j);
    }
    cJSON_Delete(e);
}

/* The per-forward Imbalance Scores the library reports for the case's windows: mean and max per
 * layer (L <= 8). */
static void library_imbalance(const cJSON *moe, const cJSON *c, int n_devices, moge_routing routing, int L, double *mean, double *mx) {
    moge_model_params mp = moge_model_default_params();
    mp.routing = routing;
    moge_context_params cp = moge_context_default_params();
    int32_t W = (int32_t)num(moe, "window");
    cp.n_ctx = W;
    cp.n_devices = n_devices;
    moge_model *m = NULL;
    moge_context *ctx = NULL;
    char err[256];
    CHECKF(moge_model_load(str(moe, "model"), &mp, &m, err, sizeof err) == MOGE_OK, "%s", err);
    CHECKF(m && moge_context_new(m, &cp, &ctx, err, sizeof err) == MOGE_OK, "%s", err);
    const cJSON *stream = arr(moe, "stream");
    int n = cJSON_GetArraySize(stream), n_win = 0;
    int32_t *ids = calloc((size_t)n, sizeof *ids);
    int k = 0;
    for (const cJSON *x = stream->child; x; x = x->next) ids[k++] = (int32_t)x->valuedouble;
    for (int l = 0; l < L; l++) mean[l] = mx[l] = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, arr(c, "window_indices")) {
        if (!ctx) break;
        const float *logits;
        moge_kv_truncate(ctx, 0);
        moge_batch b = {.n = W, .tokens = ids + (int64_t)w->valuedouble * W};
        CHECK(moge_forward(ctx, &b, &logits) == MOGE_OK);
        for (int l = 0; l < L; l++) {
            moge_moe_stats st;
            CHECK(moge_moe_stats_get(ctx, l, false, &st) == MOGE_OK && st.n_rows == W && st.n_devices == n_devices);
            mean[l] += st.imbalance;
            mx[l] = st.imbalance > mx[l] ? st.imbalance : mx[l];
        }
        n_win++;
    }
    for (int l = 0; l < L; l++) mean[l] /= n_win > 0 ? n_win : 1;
    free(ids);
    moge_context_free(ctx);
    moge_model_free(m);
}

static void test_moe_load(void) {
    cJSON *e = load_json(EXPECTED);
    const cJSON *moe = cJSON_GetObjectItemCaseSensitive(e, "moe"), *c;
    CHECKF(moe != NULL, "no " EXPECTED);
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(moe, "cases")) {
        char args[1024];
        const char *a = str(c, "args");
        snprintf(args, sizeof args, "-m %s --tokenizer %s -f %s %s", str(moe, "model"), str(moe, "tokenizer"), str(moe, "file"), a);
        cJSON *j = eval_json(args);
        if (!j) continue;
        check_common(a, j, c);
        const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "moe");
        int D = (int)num(c, "n_devices"), K = (int)num(jm, "k"), L = cJSON_GetArraySize(arr(c, "layers"));
        double windows = num(j, "windows"), window = num(j, "window");
        CHECKF(num(jm, "n_devices") == D && num(jm, "forwards") == windows && K == 4 && L == 2, "%s: n_devices %g, forwards %g, k %d", a,
               num(jm, "n_devices"), num(jm, "forwards"), K);
        CHECKF(cJSON_GetArraySize(arr(jm, "layers")) == L, "%s: %d layers in the JSON", a, cJSON_GetArraySize(arr(jm, "layers")));
        double lib_mean[8], lib_max[8];
        library_imbalance(moe, c, D, strstr(a, "topk") ? MOGE_ROUTING_TOPK : MOGE_ROUTING_DEFAULT, L, lib_mean, lib_max);
        for (int l = 0; l < L && l < 8; l++) {
            const cJSON *got = cJSON_GetArrayItem(arr(jm, "layers"), l), *want = cJSON_GetArrayItem(arr(c, "layers"), l);
            double pairs = windows * window * K;
            CHECKF(sum_numbers(arr(got, "expert_hits")) == pairs && sum_numbers(arr(got, "pairs_per_device")) == pairs,
                   "%s layer %d: %g hits, %g device pairs, expected %g each", a, l, sum_numbers(arr(got, "expert_hits")),
                   sum_numbers(arr(got, "pairs_per_device")), pairs);
            CHECKF(cJSON_GetArraySize(arr(got, "pairs_per_device")) == D && cJSON_GetArraySize(arr(got, "expert_hits")) == 16, "%s layer %d", a, l);
            CHECKF(same_numbers(arr(got, "expert_hits"), arr(want, "expert_hits")), "%s layer %d: expert histogram differs from numpy's", a, l);
            CHECKF(same_numbers(arr(got, "pairs_per_device"), arr(want, "pairs_per_device")), "%s layer %d: pairs per device differ", a, l);
            double is = num(got, "imbalance"), ismax = num(got, "imbalance_max");
            CHECKF(fabs(is - num(want, "imbalance")) < 1e-12 && fabs(ismax - num(want, "imbalance_max")) < 1e-12,
                   "%s layer %d: IS %g / max %g, numpy %g / %g", a, l, is, ismax, num(want, "imbalance"), num(want, "imbalance_max"));
            CHECKF(fabs(is - lib_mean[l]) < 1e-12 && ismax == lib_max[l], "%s layer %d: IS %g / max %g, the library per forward %g / %g", a, l,
                   is, ismax, lib_mean[l], lib_max[l]);
            printf("  %s layer %d: IS mean %.4f max %.4f (numpy %.4f / %.4f, library %.4f / %.4f)\n", a, l, is, ismax,
                   num(want, "imbalance"), num(want, "imbalance_max"), lib_mean[l], lib_max[l]);
        }
        char *out = slurp_text(OUT);
        CHECKF(strstr(out, "MoE load") && strstr(out, "IS mean"), "stdout: %s", out);
        free(out);
        cJSON_Delete(j);
    }
    cJSON_Delete(e);
}

static void test_errors(void) {
    CHECK(shell("mkdir -p build && printf 'Hi there.\\n<|endoftext|>\\nBye.\\n' >build/test_eval_short.txt && "
                "printf 'caf\\351\\n' >build/test_eval_latin1.txt && rm -f build/test_eval_none.json && "
                "mkdir -p build/test_eval_nobos && "
                "printf '{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}' >build/test_eval_nobos/tokenizer.json") == 0);
    static const struct { const char *args; int rc; const char *needle; } cases[] = {
        {"eval -f tests/fixtures/eval/tinystories-6.txt", 2, "-m DIR is required"},
        {"eval -m models/stories260K", 2, "-f FILE is required"},
        {"eval -m models/stories260K -f", 2, "-f needs a value"},
        {"eval -m models/stories260K -f no/such/file.txt", 1, "-f no/such/file.txt: cannot open"},
        {"eval -m models/stories260K -f build", 1, "-f build: cannot"},
        {"eval -m models/stories260K -f build/test_eval_latin1.txt", 1, "build/test_eval_latin1.txt: not UTF-8"},
        {"eval -m models/stories260K -f build/test_eval_short.txt", 1, "fewer than one window"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --window 0", 2, "--window: expected an integer"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --window abc", 2, "--window: expected an integer"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --window 1000", 1, "--window 1000: the model's context holds 512"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --windows -1", 2, "--windows: expected an integer"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --json /no/such/dir/x.json", 2, "--json /no/such/dir/x.json: cannot write"}, /* checked before the work */
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --frob", 2, "unknown option \"--frob\""},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --temp 0", 2, "unknown option \"--temp\""},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt stray", 2, "unexpected argument \"stray\""},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --doc-sep", 2, "--doc-sep needs a value"},
        {"eval -m tests/fixtures/moe/pangu_16e4g -f tests/fixtures/eval/tinystories-6.txt", 1, "tokenizer.json"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --tokenizer build/test_eval_nobos", 1,
         "has no BOS token: give --no-bos"},
        /* a tokenizer larger than the model's vocabulary is refused at load (issue 18, defect 4) */
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --tokenizer tests/fixtures/tokenizers/qwen3 --no-bos", 1,
         "tests/fixtures/tokenizers/qwen3/tokenizer.json has 151669 token ids but models/stories260K/config.json has vocab_size 512"},
        {"eval -m models/stories260K -f tests/fixtures/eval/tinystories-6.txt --tokenizer no/such/tok", 1, "--tokenizer no/such/tok"},
        {"eval -m no/such/model -f tests/fixtures/eval/tinystories-6.txt", 1, "no/such/model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = moge_cmd(cases[i].args, OUT, ERR);
        char *err = slurp_text(ERR);
        CHECKF(rc == cases[i].rc && strstr(err, "moge eval") != NULL, "moge %s: exit %d, expected %d (%s)", cases[i].args, rc, cases[i].rc, err);
        CHECKF(strstr(err, cases[i].needle) != NULL, "moge %s: stderr does not mention \"%s\": %s", cases[i].args, cases[i].needle, err);
        free(err);
    }
    /* an error after the --json check writes no JSON and leaves no temporary file */
    CHECK(moge_cmd("eval -m models/stories260K -f build/test_eval_short.txt --json build/test_eval_none.json", OUT, ERR) == 1);
    CHECK(shell("test ! -e build/test_eval_none.json && ! ls build/test_eval_none.json.*.tmp >/dev/null 2>&1") == 0);
    /* the short file scores with a window that fits it */
    CHECK(moge_cmd("eval -m models/stories260K -f build/test_eval_short.txt --window 4", OUT, ERR) == 0);
}

/* SIGINT while the windows run: exit 130 and a complete JSON marked partial (or none at all when
 * the signal came before the first window). */
static void test_interrupt(void) {
    const char *bin = getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge";
    char cmd[1024];
    remove(JSON);
    /* SIGINT one second after the "scoring" line (the handler is installed before it), not at a
     * fixed time after the start: on a loaded machine an ASan build may not have got that far.
     * The previous case's stderr goes first: its "scoring" line would otherwise be seen before
     * this process has opened (and emptied) the file, and the signal came while it tokenized. */
    remove(ERR);
    snprintf(cmd, sizeof cmd,
             "%s eval -m models/stories260K -f tests/fixtures/tokenizers/tinystories-valid.txt -t 1 --json " JSON " >" OUT " 2>" ERR
             " </dev/null & p=$!; i=0; while ! grep -q scoring " ERR " 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; "
             "sleep 1; kill -INT $p; wait $p",
             bin);
    int rc = shell(cmd);
    char *out = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(rc == 130, "exit %d after SIGINT, expected 130: %s", rc, err);
    CHECK(shell("! ls " JSON ".*.tmp >/dev/null 2>&1") == 0);
    cJSON *j = load_json(JSON);
    if (strstr(err, "interrupted before the first window")) {
        CHECKF(j == NULL, "a JSON without a window");
        printf("  SIGINT came before the first window (slow machine): no result, no JSON\n");
    } else {
        CHECKF(j && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "partial")), "JSON not marked partial: %s", err);
        double done = num(j, "windows"), chosen = num(j, "windows_chosen");
        CHECKF(done >= 1 && done < chosen && isfinite(num(j, "val_loss")), "partial JSON: %g of %g windows, loss %g", done, chosen,
               num(j, "val_loss"));
        CHECKF(strstr(out, "PARTIAL") != NULL, "stdout: %s", out);
        printf("  interrupted after %g of %g windows: loss %.4f\n", done, chosen, num(j, "val_loss"));
    }
    cJSON_Delete(j);
    free(out);
    free(err);
}

static void test_help(void) {
    CHECK(moge_cmd("eval --help", OUT, ERR) == 0);
    char *out = slurp_text(OUT);
    CHECKF(strstr(out, "--window N") && strstr(out, "--skip-boundaries") && strstr(out, "--devices N") &&
               strstr(out, "one group each") && strstr(out, "--routing") && !strstr(out, "--temp") && !strstr(out, "--draft"),
           "moge eval --help: %s", out);
    free(out);
    CHECK(moge_cmd("--help", OUT, ERR) == 0);
    out = slurp_text(OUT);
    CHECKF(strstr(out, "  eval ") != NULL, "moge --help: %s", out);
    free(out);
}

int main(void) {
    RUN_TESTS(T(test_stories260K_matches_evaluate_py), T(test_moe_load), T(test_errors), T(test_interrupt), T(test_help));
}
