/*
 * test_kernels.c — one binary, every processor: the cpu backend's kernel variants (backend.h,
 * runtime/cpu_dispatch.c).
 *
 *  - detection: the variants this processor runs are the ones /proc/cpuinfo's flags allow, the
 *    best one runs, the baseline always runs; no object outside the variants holds AVX code;
 *  - per variant this processor runs (a model loaded with moge_model_params.kernels = it): the
 *    logits of the demo models and two MoE fixtures within 1e-4 of the references made outside
 *    the runtime, tree speculation token for token equal to plain greedy decoding (f32 and
 *    W8A8), and the greedy text of stories260K equal to the scalar variant's;
 *  - bad names (a flag or MOGE_KERNELS): a clear error naming the variants that run here.
 * The kernel-level comparisons against the ref backend and the scalar twins run per variant in
 * test_backend_ops, test_quant and test_moe.
 */
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"
#include "test_util.h"
#include "test_kernels.h"
#include "test_model.h"
#include "test_ref.h"
#include "moge.h"

static bool has_flag(const char *flags, const char *f) {
    size_t n = strlen(f);
    for (const char *p = flags; (p = strstr(p, f)); p += n)
        if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

/* The first "flags" line of /proc/cpuinfo ("" when there is none). */
static char *cpu_flags(void) {
    char *all = slurp_text("/proc/cpuinfo");
    char *p = strstr(all, "\nflags");
    char *out = calloc(1, 1);
    if (p) {
        p = strchr(p, ':');
        size_t n = p ? strcspn(p + 1, "\n") : 0;
        free(out);
        out = strndup(p ? p + 1 : "", n);
    }
    free(all);
    return out;
}

static void test_detection(void) {
    int n = moge_cpu_kernels_count();
    CHECK(n >= 1);
    const char *best = moge_cpu_kernels_best();
    CHECKF(best && moge_cpu_kernels_runs(best), "best %s", best ? best : "(null)");
    CHECK(moge_cpu_kernels_runs(moge_cpu_kernels_name(0))); /* the baseline */
    CHECK(moge_cpu_kernels_name(n) == NULL && moge_cpu_kernels_name(-1) == NULL);
    CHECK(!moge_cpu_kernels_runs("no-such-kernels") && !moge_cpu_kernels_runs(NULL));
    char name[128], list[256], want[256] = "";
    moge_cpu_name(name, sizeof name);
    CHECK(name[0] != 0);
    moge_cpu_kernels_list(list, sizeof list);
    for (int i = 0; i < n; i++)
        if (moge_cpu_kernels_runs(moge_cpu_kernels_name(i)))
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", want[0] ? ", " : "", moge_cpu_kernels_name(i));
    CHECKF(!strcmp(list, want), "moge_cpu_kernels_list: \"%s\", expected \"%s\"", list, want);
    printf("  processor: %s; kernel variants:", name);
    for (int i = 0; i < n; i++) printf(" %s%s", moge_cpu_kernels_name(i), moge_cpu_kernels_runs(moge_cpu_kernels_name(i)) ? "" : " (not here)");
    printf("; best: %s\n", best);
#if defined(__x86_64__)
    /* CPUID against the kernel's view of the processor (the flags Linux prints are the features
     * the kernel found and enabled, XSAVE state included) */
    char *f = cpu_flags();
    if (f[0]) {
        bool v3 = has_flag(f, "avx2") && has_flag(f, "fma") && has_flag(f, "f16c") && has_flag(f, "bmi1") && has_flag(f, "bmi2") &&
                  has_flag(f, "abm") && has_flag(f, "movbe");
        bool v4 = v3 && has_flag(f, "avx512f") && has_flag(f, "avx512bw") && has_flag(f, "avx512dq") && has_flag(f, "avx512cd") &&
                  has_flag(f, "avx512vl");
        CHECKF(moge_cpu_kernels_runs("avx2") == v3, "avx2: CPUID says %d, /proc/cpuinfo %d", moge_cpu_kernels_runs("avx2"), v3);
        CHECK(moge_cpu_kernels_runs("avxvnni") == (v3 && has_flag(f, "avx_vnni")));
        CHECK(moge_cpu_kernels_runs("avx512") == v4);
        CHECK(moge_cpu_kernels_runs("avx512vnni") == (v4 && has_flag(f, "avx512_vnni")));
    }
    free(f);
#endif
}

/* Outside the kernel variants the library and the command are baseline code: no object but
 * the kernel variants' runtime/cpu/<file>-<variant>.o holds a 256- or 512-bit vector instruction (objdump, from binutils, which
 * build-essential brings), so the binary starts and runs on any x86-64-v2 processor; and the
 * check can fail: the avx512 objects hold zmm instructions. */
static void test_baseline_objects(void) {
#if defined(__x86_64__)
    const char *build = getenv("BUILD") && getenv("BUILD")[0] ? getenv("BUILD") : "build";
    char cmd[1536];
    /* every module's objects whose source is still in the tree and still built (a moved file's
     * object, e.g. runtime/backend_cpu-<variant>.o of builds before runtime/cpu/, may linger in an
     * old build folder), but the kernel variants (runtime/cpu/) */
    snprintf(cmd, sizeof cmd,
             "for d in base runtime tokenizer sampling draft verify sim hub cli examples; do [ -d %s/$d ] && find %s/$d -name '*.o' "
             "! -path '*/runtime/cpu/*'; done | while read f; do src=${f#%s/}; [ -f \"${src%%.o}.c\" ] || continue; "
             "n=$(objdump -d --no-show-raw-insn \"$f\" | grep -c '%%[yz]mm'); [ \"$n\" = 0 ] || echo \"$f: $n\"; done >build/test_kernels.out 2>&1; "
             "objdump -d --no-show-raw-insn %s/runtime/cpu/*-avx512.o | grep -c '%%zmm' >build/test_kernels.zmm",
             build, build, build, build);
    CHECK(system(cmd) == 0);
    char *bad = slurp_text("build/test_kernels.out"), *zmm = slurp_text("build/test_kernels.zmm");
    CHECKF(bad[0] == 0, "vector instructions outside the kernel variants:\n%s", bad);
    CHECKF(atoi(zmm) > 100, "runtime/cpu/*-avx512.o: %s zmm instructions", zmm);
    free(bad);
    free(zmm);
#endif
}

/* ---------------------------------------------------------------------------------------- */

static moge_model *load_kernels(const char *dir, const char *kernels, moge_quant q) {
    moge_model_params p = moge_model_default_params();
    p.kernels = kernels;
    p.quant = q;
    moge_model *m = test_load_params(dir, &p);
    if (m) {
        moge_model_info info;
        moge_model_get_info(m, &info);
        CHECKF(info.kernels && !strcmp(info.kernels, kernels), "%s: runs %s, asked %s", dir, info.kernels ? info.kernels : "(null)",
               kernels);
    }
    return m;
}

static void check_ref(const char *dir, const char *path) {
    test_ref r;
    if (!ref_read(path, &r)) return;
    moge_model *m = load_kernels(dir, cpu->variant, MOGE_QUANT_NONE);
    if (m) ref_check(m, &r, path, cpu->variant);
    moge_model_free(m);
    ref_free(&r);
}

static void test_refs(void) {
    check_ref("models/tinystories-moge", "tests/fixtures/demo/tinystories-moge.ref");
    check_ref("models/tinystories-draft", "tests/fixtures/demo/tinystories-draft.ref");
    check_ref("tests/fixtures/moe/pangu_64e8g_bf16", "tests/fixtures/moe/pangu_64e8g_bf16.ref");
    check_ref("tests/fixtures/moe/qwen3_moe", "tests/fixtures/moe/qwen3_moe.ref");
}

/* Tree speculation with the demo draft equals plain greedy decoding, token for token. */
static void test_speculation_lossless(void) {
    char err[512];
    for (int qi = 0; qi < 2; qi++) {
        moge_quant q = qi ? MOGE_QUANT_W8A8 : MOGE_QUANT_NONE;
        moge_model *t = load_kernels("models/tinystories-moge", cpu->variant, q);
        moge_model *dm = load_kernels("models/tinystories-draft", cpu->variant, q);
        moge_context *c = t ? test_new_ctx(t, 256) : NULL;
        moge_drafter *d = NULL;
        moge_tokenizer *tok = NULL; /* the pair shares one tokenizer */
        CHECKF(moge_tokenizer_load("models/tinystories-moge", &tok, err, sizeof err) == MOGE_OK, "%s", err);
        if (dm && tok) CHECKF(moge_drafter_new_model(dm, tok, tok, 256, &d, err, sizeof err) == MOGE_OK, "%s", err);
        moge_generate_params base = moge_generate_default_params(), spec;
        base.sampler.temperature = 0;
        base.n_predict = 48;
        spec = base;
        spec.spec = MOGE_SPEC_TREE;
        spec.drafter = d;
        static const int32_t prompt[] = {1, 426, 113, 263, 93};
        test_ids a, b;
        if (c && d) {
            CHECKF(test_generate(c, prompt, 5, &base, &a, NULL) == MOGE_OK, "%s", moge_context_error(c));
            CHECK(test_generate(c, prompt, 5, &spec, &b, NULL) == MOGE_OK);
            CHECKF(a.n == b.n && a.n > 0 && !memcmp(a.ids, b.ids, sizeof(int32_t) * (size_t)a.n), "%s, %s: speculative output differs",
                   cpu->variant, qi ? "w8a8" : "f32");
        }
        moge_drafter_free(d);
        moge_tokenizer_free(tok);
        moge_context_free(c);
        moge_model_free(dm);
        moge_model_free(t);
    }
}

/* The greedy text of a real trained model is the same under every variant (they differ in the
 * last bits of a logit at most). */
static void test_same_text(void) {
    static test_ids scalar;
    static bool have;
    moge_model *m = load_kernels("models/stories260K", cpu->variant, MOGE_QUANT_NONE);
    moge_context *c = m ? test_new_ctx(m, 256) : NULL;
    moge_generate_params g = moge_generate_default_params();
    g.sampler.temperature = 0;
    g.n_predict = 100;
    static const int32_t prompt[] = {1, 403, 407};
    test_ids ids;
    if (c && test_generate(c, prompt, 3, &g, &ids, NULL) == MOGE_OK) {
        if (!have) scalar = ids, have = true; /* the first variant is the baseline */
        CHECKF(ids.n == scalar.n && !memcmp(ids.ids, scalar.ids, sizeof(int32_t) * (size_t)ids.n), "%s: greedy text differs from %s",
               cpu->variant, moge_cpu_kernels_name(0));
    } else
        CHECK(0);
    moge_context_free(c);
    moge_model_free(m);
}

/* ---------------------------------------------------------------------------------------- */

static void expect_refused(const char *kernels, const char *want) {
    moge_model_params p = moge_model_default_params();
    p.kernels = kernels;
    moge_model *m = NULL;
    char err[512] = "";
    moge_status st = moge_model_load("models/stories260K", &p, &m, err, sizeof err);
    CHECKF(st == MOGE_ERR_ARG && m == NULL, "kernels %s: status %d", kernels ? kernels : "(env)", (int)st);
    CHECKF(strstr(err, want) && strstr(err, moge_cpu_kernels_name(0)), "kernels %s: message \"%s\"", kernels ? kernels : "(env)", err);
    moge_model_free(m);
}

static void test_bad_names(void) {
    expect_refused("avx9", "moge_model_params.kernels: no kernel variant \"avx9\"");
    for (int i = 0; i < moge_cpu_kernels_count(); i++)
        if (!moge_cpu_kernels_runs(moge_cpu_kernels_name(i))) expect_refused(moge_cpu_kernels_name(i), "cannot run");
    /* the environment variable, when the parameter is not set */
    setenv("MOGE_KERNELS", "AVX2 ", 1);
    expect_refused(NULL, "MOGE_KERNELS: no kernel variant \"AVX2 \"");
    setenv("MOGE_KERNELS", moge_cpu_kernels_name(0), 1);
    moge_model *m = test_load("models/stories260K", MOGE_BACKEND_CPU, 1);
    moge_model_info info;
    if (m) moge_model_get_info(m, &info);
    CHECK(m && !strcmp(info.kernels, moge_cpu_kernels_name(0)));
    moge_model_free(m);
    unsetenv("MOGE_KERNELS");
    /* the ref backend has no kernel variant */
    m = test_load("models/stories260K", MOGE_BACKEND_REF, 1);
    if (m) moge_model_get_info(m, &info);
    CHECK(m && info.kernels == NULL);
    moge_model_free(m);
}

int main(void) {
    static const harness_case once[] = {T(test_detection), T(test_baseline_objects), T(test_bad_names)};
    static const harness_case per_kernels[] = {T(test_refs), T(test_speculation_lossless), T(test_same_text)};
    int rc = harness_run(once, 3);
    return harness_run_per_kernels(per_kernels, 3) | rc;
}
