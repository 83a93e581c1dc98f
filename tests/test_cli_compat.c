/*
 * test_cli_compat.c — what a llama.cpp user types works (issue 19): its flag names as aliases
 * (-md/--model-draft, -s, --ctx-size, --draft-p-min, -sys), -n -1, -f FILE / - / a pipe for the
 * prompt, escapes in -p (and --no-escape), -ngl and --draft-min accepted and ignored with a note,
 * `moge --version`; a random seed by default that is printed and repeats the run; errors that
 * name the flag as typed; output files checked before the work starts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_util.h"
#include "moge.h"

#define OUT "build/test_cli_compat.out"
#define ERR "build/test_cli_compat.err"
#define MOGE(args) moge_cmd(args, OUT, ERR)
#define M260 "-m models/stories260K"

/* stdout of `moge args` (exit status 0 required), malloc'd. */
static char *run_out(const char *args) {
    int rc = MOGE(args);
    char *err = slurp_text(ERR);
    CHECKF(rc == 0, "moge %s: exit %d: %s", args, rc, err);
    free(err);
    return slurp_text(OUT);
}

/* `moge a` and `moge b` print the same non-empty text. */
static void same_output(const char *a, const char *b) {
    char *x = run_out(a), *y = run_out(b);
    CHECKF(strlen(x) > 10, "moge %s printed too little: \"%s\"", a, x);
    CHECKF(!strcmp(x, y), "moge %s and moge %s differ:\n%s\n---\n%s", a, b, x, y);
    free(x);
    free(y);
}

static void test_aliases(void) {
    same_output("run " M260 " -n 24 --temp 0 -p Once -d models/stories260K", "run " M260 " -n 24 --temp 0 -p Once -md models/stories260K");
    same_output("run " M260 " -n 24 --temp 0 -p Once -d models/stories260K", "run " M260 " -n 24 --temp 0 -p Once --model-draft models/stories260K");
    same_output("run " M260 " -n 24 --temp 0.9 -p Once --seed 7", "run " M260 " -n 24 --temp 0.9 -p Once -s 7");
    same_output("run " M260 " -n 24 --temp 0 -p Once -c 64", "run " M260 " -n 24 --temp 0 -p Once --ctx-size 64");
    same_output("run " M260 " -n 24 --temp 0 -p Once -d models/stories260K --min-path-prob 0.3",
                "run " M260 " -n 24 --temp 0 -p Once -d models/stories260K --draft-p-min 0.3");
    /* a flag of run's table is not one of eval's */
    expect_moge_error("eval " M260 " -f tests/fixtures/tokenizers/tinystories-valid.txt -md models/stories260K", 2, "unknown option \"-md\"", OUT, ERR);
}

static void test_ignored_flags(void) {
    same_output("run " M260 " -n 16 --temp 0 -p Once", "run " M260 " -n 16 --temp 0 -p Once -ngl 99");
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "-ngl is ignored: there is no GPU backend") != NULL, "stderr: %s", err);
    free(err);
    same_output("run " M260 " -n 16 --temp 0 -p Once -d models/stories260K", "run " M260 " -n 16 --temp 0 -p Once -d models/stories260K --draft-min 3");
    err = slurp_text(ERR);
    CHECKF(strstr(err, "--draft-min is ignored") != NULL, "stderr: %s", err);
    free(err);
    expect_moge_error("run " M260 " -ngl lots", 2, "-ngl", OUT, ERR);
    expect_moge_error("run " M260 " -ngl", 2, "-ngl", OUT, ERR);
}

/* -n -1 generates until the end of text or a full context. */
static void test_n_minus_one(void) {
    int rc = MOGE("run " M260 " -n -1 -c 48 --temp 0 -p Once");
    char *err = slurp_text(ERR), *out = slurp_text(OUT);
    CHECKF(rc == 0, "exit %d: %s", rc, err);
    CHECKF(strstr(err, "stop: ") != NULL && (strstr(err, "context") || strstr(err, "end of text")), "stderr: %s", err);
    CHECKF(strlen(out) > 40, "stdout: %s", out);
    free(err);
    free(out);
    expect_moge_error("run " M260 " -n -2", 2, "-n", OUT, ERR);
}

static void test_prompt_sources(void) {
    FILE *f = fopen("build/test_cli_compat_prompt.txt", "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("Once upon a time\n", f); /* the final line end is dropped, as llama.cpp does */
    fclose(f);
    const char *p = "run " M260 " -n 24 --temp 0 -p 'Once upon a time'";
    same_output(p, "run " M260 " -n 24 --temp 0 -f build/test_cli_compat_prompt.txt");
    char *a = run_out(p);
    CHECK(shell("$MOGE_BIN run " M260 " -n 24 --temp 0 -f - <build/test_cli_compat_prompt.txt >" OUT " 2>" ERR) == 0);
    char *b = slurp_text(OUT);
    CHECKF(!strcmp(a, b), "-f - differs:\n%s\n---\n%s", a, b);
    free(b);
    CHECK(shell("cat build/test_cli_compat_prompt.txt | $MOGE_BIN run " M260 " -n 24 --temp 0 >" OUT " 2>" ERR) == 0);
    b = slurp_text(OUT);
    CHECKF(!strcmp(a, b), "a piped prompt differs:\n%s\n---\n%s", a, b);
    free(b);
    free(a);
    expect_moge_error("run " M260 " -p Once -f build/test_cli_compat_prompt.txt", 2, "not both", OUT, ERR);
    expect_moge_error("run " M260 " -f build/no-such-prompt.txt", 1, "-f build/no-such-prompt.txt", OUT, ERR);
}

/* \n in -p is a line break (llama.cpp's -e, on by default); --no-escape keeps the backslash. */
static void test_escapes(void) {
    FILE *f = fopen("build/test_cli_compat_nl.txt", "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("Tom said \"hi\".\n\tThen\\ he left.\n", f);
    fclose(f);
    same_output("run " M260 " -n 16 --temp 0 -p 'Tom said \\\"hi\\\".\\n\\tThen\\\\ he left.'",
                "run " M260 " -n 16 --temp 0 -f build/test_cli_compat_nl.txt");
    same_output("run " M260 " -n 16 --temp 0 -e -p 'A\\x42C'", "run " M260 " -n 16 --temp 0 -p ABC");
    char *a = run_out("run " M260 " -n 16 --temp 0 -p 'Once\\nupon'"), *b = run_out("run " M260 " -n 16 --temp 0 --no-escape -p 'Once\\nupon'");
    CHECKF(strcmp(a, b) != 0, "--no-escape made no difference: %s", a);
    free(a);
    free(b);
}

/* Without --seed a sampled run picks a random seed and prints it; --seed with it repeats the text. */
static void test_random_seed(void) {
    char *a = run_out("run " M260 " -n 32 --temp 1 -p Once");
    char *err = slurp_text(ERR);
    unsigned long long seed = 0;
    const char *s = strstr(err, "seed ");
    CHECKF(s && sscanf(s, "seed %llu", &seed) == 1, "no seed on stderr: %s", err);
    char args[256];
    snprintf(args, sizeof args, "run " M260 " -n 32 --temp 1 -p Once --seed %llu", seed);
    char *b = run_out(args);
    CHECKF(!strcmp(a, b), "--seed %llu does not repeat the run:\n%s\n---\n%s", seed, a, b);
    char *err2 = slurp_text(ERR);
    CHECKF(strstr(err2, "(--seed") == NULL, "a given seed is announced: %s", err2);
    free(err2);
    free(a);
    free(b);
    free(err);
    /* two runs without --seed: two seeds */
    unsigned long long s2 = 0;
    char *c = run_out("run " M260 " -n 4 --temp 1 -p Once");
    err = slurp_text(ERR);
    CHECKF((s = strstr(err, "seed ")) && sscanf(s, "seed %llu", &s2) == 1 && s2 != seed, "second seed %llu, first %llu", s2, seed);
    free(c);
    free(err);
}

static void test_version(void) {
    char *out = run_out("--version");
    char want[64];
    snprintf(want, sizeof want, "moge %s\n", moge_version());
    CHECKF(!strncmp(out, want, strlen(want)), "moge --version: %s", out);
    CHECK(!strcmp(moge_version(), MOGE_VERSION));
    free(out);
}

/* The flag as typed is named; output files are checked before loading. */
static void test_errors_name_flags(void) {
    expect_moge_error("run " M260 " -c 100000 -p Once", 1, "-c 100000", OUT, ERR);
    expect_moge_error("run " M260 " --ctx-size 100000 -p Once", 1, "--ctx-size 100000", OUT, ERR);
    expect_moge_error("run -m models/tinystories-moge --devices 3 -p Once", 1, "--devices 3", OUT, ERR);
    expect_moge_error("run " M260 " -p Once --stats-json build/no-such-dir/x.json", 2, "--stats-json build/no-such-dir/x.json: cannot write", OUT, ERR);
    expect_moge_error("run " M260 " -p Once --stats-json build", 2, "it is a directory", OUT, ERR);
    expect_moge_error("bench " M260 " -n 4 --modes none --json build/no-such-dir/x.json", 2, "--json build/no-such-dir/x.json: cannot write", OUT, ERR);
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "tokens/s") == NULL && strstr(err, "loading") == NULL, "bench ran before refusing its --json: %s", err);
    free(err);
    expect_moge_error("eval " M260 " -f tests/fixtures/tokenizers/tinystories-valid.txt --json build/no-such-dir/x.json", 2, "cannot write", OUT, ERR);
}

/* run on the MoGE demo target: one MoE line by default, a line per layer and the forwards' time by
 * part with -v, nothing with -q. */
static void test_quiet_verbose(void) {
    const char *base = "run -m models/tinystories-moge -n 8 --temp 0 -p Once";
    char args[256];
    char *out = run_out(base), *err = slurp_text(ERR);
    CHECKF(strstr(err, "mean Imbalance Score") && !strstr(err, "layer  0:") && strstr(err, "generated 8 tokens") && !strstr(err, "forwards ("),
           "default stderr: %s", err);
    free(out); free(err);
    snprintf(args, sizeof args, "%s -v", base);
    out = run_out(args), err = slurp_text(ERR);
    CHECKF(strstr(err, "layer  0:") && strstr(err, "layer  5:"), "-v stderr: %s", err);
    /* the prompt's forward and one per token after the first (plain decoding), by part */
    CHECKF(strstr(err, "time of the target's forwards: 8 forwards (9 rows)") && strstr(err, "experts ") && strstr(err, " %, other "), "-v stderr: %s", err);
    free(out); free(err);
    char *plain = run_out(base);
    snprintf(args, sizeof args, "%s -q --temp 0.8", base);
    out = run_out(args), err = slurp_text(ERR);
    CHECKF(err[0] == 0, "-q stderr is not empty: %s", err);
    free(out); free(err);
    snprintf(args, sizeof args, "%s --quiet", base);
    out = run_out(args);
    CHECKF(!strcmp(out, plain), "--quiet changed the text: %s vs %s", out, plain);
    free(out); free(plain);
}

/* A GGUF of K-quants is held as f32 by default: run says so once and points at --quant; not with
 * --quant, -q, or weights used as stored. */
static void test_kquant_note(void) {
    const char *k = "run -m tests/fixtures/gguf/llama256_q4_k.gguf -n 2 --temp 0";
    char args[256];
    static const struct { const char *extra; bool note; } cases[] = {{"", true}, {" --quant q8", false}, {" -q", false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "%s%s", k, cases[i].extra);
        char *out = run_out(args), *err = slurp_text(ERR);
        CHECKF((strstr(err, "note: the weights take") && strstr(err, "--quant q8")) == cases[i].note, "moge %s: stderr %s", args, err);
        free(out);
        free(err);
    }
    char *out = run_out("run -m tests/fixtures/gguf/llama256_q8_0.gguf -n 2 --temp 0"), *err = slurp_text(ERR);
    CHECKF(!strstr(err, "note: the weights take"), "Q8_0 file: %s", err);
    free(out);
    free(err);
}

/* chat takes -sys for its system message. */
static void test_chat_sys(void) {
    CHECK(shell("printf 'Hello\\n' | $MOGE_BIN chat " M260 " --temp 0 -n 8 -sys 'You tell stories.' >" OUT " 2>" ERR) == 0);
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "unknown option") == NULL, "stderr: %s", err);
    free(err);
}

int main(void) {
    setenv("MOGE_BIN", getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge", 1);
    RUN_TESTS(T(test_aliases), T(test_ignored_flags), T(test_n_minus_one), T(test_prompt_sources), T(test_escapes), T(test_random_seed),
              T(test_version), T(test_errors_name_flags), T(test_quiet_verbose), T(test_kquant_note), T(test_chat_sys));
}
