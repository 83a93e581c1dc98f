/*
 * test_api.c — the public header's helpers for callers who drive the model themselves (issue 19):
 *  - moge_sample: a token from a row of logits with the sampling parameters and a caller-owned
 *    RNG gives exactly moge_generate's target-only tokens when fed moge_forward's logits
 *    (sampled with top-k/top-p/min-p and a repetition penalty, and greedy), and checks arguments;
 *  - abort callbacks: a forward stopped at its start or between layers returns MOGE_ERR_ABORTED
 *    with its message and leaves the cache as it was (the same logits afterwards as a context that
 *    was never stopped, kept uncommitted rows included); moge_generate stops with it and its
 *    context goes on; moge_model_load stops at its first check and in the middle of quantizing;
 *  - threads per context: two contexts of one model with 1 and 3 threads give identical logits;
 *  - moge_detok_stream_prime: after the prompt, pushed tokens give exactly the text they add to
 *    the prompt's (leading space, byte runs), for every split of real texts in two tokenizers;
 *  - the timer of the token callback (t_emit_s) holds the callback's time;
 *  - moge_forward_times: the forwards and rows counted, the parts of a dense and of an MoE model
 *    (no router or expert time in the dense one), together within the forwards' wall time, reset;
 *  - the default thread count: one per physical core of the allowed CPUs (hardware threads that
 *    share a core count once), at most the cgroup v2 / v1 CPU quota, CPUs without topology files
 *    each a core, at least 1 (trees of sysfs / procfs files written under build/); on this
 *    machine at least 1, at most its online CPUs, and what a model with n_threads 0 runs;
 *    moge_cpu_usable() is the affinity mask's count.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>
#include <unistd.h>

#include "moge.h"
#include "runtime/cpu_threads.h"
#include "tests/harness.h"
#include "tests/test_model.h"
#include "tests/test_util.h"

#define STORIES "models/stories260K"

static const int32_t PROMPT[] = {1, 403, 407, 261, 378};
#define N_PROMPT ((int32_t)(sizeof PROMPT / sizeof PROMPT[0]))

/* ---- moge_sample ------------------------------------------------------------------------- */

/* Reproduces a target-only generation of n_predict tokens with moge_forward and moge_sample in a
 * fresh context: the prompt's last logits, then one row per emitted token; EOS ends it. */
static int reproduce(moge_model *m, const moge_sampler_params *sp, int n_predict, int32_t *out) {
    moge_context *ctx = test_new_ctx(m, 256);
    if (!ctx) return -1;
    moge_model_info info;
    moge_model_get_info(m, &info);
    int32_t hist[512], n_hist = N_PROMPT, n = 0;
    memcpy(hist, PROMPT, sizeof PROMPT);
    moge_rng rng = moge_rng_seed(sp->seed);
    const float *logits = NULL;
    moge_batch b = {.n = N_PROMPT, .tokens = PROMPT, .logits_last_only = true};
    moge_status st = moge_forward(ctx, &b, &logits);
    if (st == MOGE_OK) st = moge_kv_commit(ctx, NULL, N_PROMPT);
    while (st == MOGE_OK && n < n_predict) {
        int32_t tok = -1;
        st = moge_sample(logits, info.n_vocab, sp, hist, n_hist, &rng, &tok);
        if (st != MOGE_OK || tok == info.eos_id) break;
        out[n++] = hist[n_hist++] = tok;
        b = (moge_batch){.n = 1, .tokens = &tok};
        st = moge_forward(ctx, &b, &logits);
        if (st == MOGE_OK) st = moge_kv_commit(ctx, NULL, 1);
    }
    CHECKF(st == MOGE_OK, "%s", moge_context_error(ctx));
    moge_context_free(ctx);
    return n;
}

static void check_reproduced(moge_model *m, const moge_sampler_params *sp, const char *what) {
    moge_context *ctx = test_new_ctx(m, 256);
    if (!ctx) return;
    moge_generate_params gp = moge_generate_default_params();
    gp.sampler = *sp;
    gp.n_predict = 60;
    test_ids got = {.n = 0};
    moge_stats stats;
    CHECK(moge_generate(ctx, PROMPT, N_PROMPT, &gp, test_collect, &got, &stats) == MOGE_OK);
    int32_t mine[64];
    int n = reproduce(m, sp, gp.n_predict, mine);
    CHECKF(n == got.n && n > 10, "%s: %d tokens by moge_sample, %d by moge_generate", what, n, got.n);
    for (int i = 0; i < n && i < got.n; i++) CHECKF(mine[i] == got.ids[i], "%s: token %d: %d vs %d", what, i, mine[i], got.ids[i]);
    moge_context_free(ctx);
}

static void test_sample_matches_generate(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 2);
    if (!m) return;
    moge_sampler_params sp = moge_sampler_default_params(); /* temperature 0.8, top-k 40, top-p 0.95 */
    for (uint64_t seed = 1; seed <= 4; seed++) {
        sp.seed = seed;
        check_reproduced(m, &sp, "defaults");
    }
    sp.min_p = 0.05f;
    sp.repeat_penalty = 1.3f;
    sp.repeat_last_n = 8;
    sp.temperature = 1.2f;
    check_reproduced(m, &sp, "min-p, penalty, temperature 1.2");
    sp.temperature = 0;
    check_reproduced(m, &sp, "greedy with a penalty");
    moge_model_free(m);
}

static void test_sample_rules(void) {
    float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
    moge_sampler_params sp = moge_sampler_default_params();
    moge_rng rng = moge_rng_seed(9), r0 = rng;
    int32_t tok = -1;
    sp.temperature = 0;
    CHECK(moge_sample(logits, 6, &sp, NULL, 0, &rng, &tok) == MOGE_OK && tok == 1); /* ties to the lower id */
    CHECK(rng.state == r0.state);                                                  /* greedy draws nothing */
    int32_t recent[] = {1};
    sp.repeat_penalty = 2.0f; /* 2.0 / 2 = 1.0: id 3 wins */
    CHECK(moge_sample(logits, 6, &sp, recent, 1, &rng, &tok) == MOGE_OK && tok == 3);
    sp = moge_sampler_default_params();
    sp.top_k = 1; /* one candidate: the argmax, one number drawn */
    CHECK(moge_sample(logits, 6, &sp, NULL, 0, &rng, &tok) == MOGE_OK && tok == 1 && rng.state != r0.state);
    sp.top_k = 0;
    sp.top_p = 1.0f;
    int counts[6] = {0};
    rng = moge_rng_seed(3);
    for (int i = 0; i < 2000; i++) {
        CHECK(moge_sample(logits, 6, &sp, NULL, 0, &rng, &tok) == MOGE_OK && tok >= 0 && tok < 6);
        if (tok >= 0 && tok < 6) counts[tok]++;
    }
    CHECK(counts[1] > counts[4] && counts[3] > counts[4] && counts[4] > counts[2] && counts[2] > 0);
    moge_rng a = moge_rng_seed(77), b = moge_rng_seed(77);
    int32_t ta = -1, tb = -2;
    CHECK(moge_sample(logits, 6, &sp, NULL, 0, &a, &ta) == MOGE_OK && moge_sample(logits, 6, &sp, NULL, 0, &b, &tb) == MOGE_OK && ta == tb);
    /* arguments */
    CHECK(moge_sample(NULL, 6, &sp, NULL, 0, &rng, &tok) == MOGE_ERR_ARG);
    CHECK(moge_sample(logits, 0, &sp, NULL, 0, &rng, &tok) == MOGE_ERR_ARG);
    CHECK(moge_sample(logits, 6, NULL, NULL, 0, &rng, &tok) == MOGE_ERR_ARG);
    CHECK(moge_sample(logits, 6, &sp, NULL, 3, &rng, &tok) == MOGE_ERR_ARG);
    CHECK(moge_sample(logits, 6, &sp, NULL, 0, NULL, &tok) == MOGE_ERR_ARG);
    CHECK(moge_sample(logits, 6, &sp, NULL, 0, &rng, NULL) == MOGE_ERR_ARG);
    sp.temperature = NAN;
    CHECK(moge_sample(logits, 6, &sp, NULL, 0, &rng, &tok) == MOGE_ERR_ARG);
}

/* ---- abort callbacks --------------------------------------------------------------------- */

typedef struct {
    int calls;    /* calls so far */
    int stop_at;  /* return true at this call (1-based); 0 = never */
    int emitted;  /* tokens the generation emitted (moge_generate test) */
    int stop_after_tokens; /* return true once this many were emitted; 0 = off */
} abort_state;

static bool abort_cb(void *abort_cb_user) {
    abort_state *a = abort_cb_user;
    a->calls++;
    if (a->stop_after_tokens > 0 && a->emitted >= a->stop_after_tokens) return true;
    return a->stop_at > 0 && a->calls == a->stop_at;
}

static moge_context *abortable_ctx(moge_model *m, abort_state *a) {
    char err[512];
    moge_context_params p = moge_context_default_params();
    p.n_ctx = 256;
    p.n_batch = 64;
    p.abort_cb = abort_cb;
    p.abort_cb_user = a;
    moge_context *c = NULL;
    CHECKF(moge_context_new(m, &p, &c, err, sizeof err) == MOGE_OK, "%s", err);
    return c;
}

static void test_abort_forward(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 2);
    if (!m) return;
    moge_model_info info;
    moge_model_get_info(m, &info);
    const int V = info.n_vocab;
    abort_state a = {0};
    moge_context *ctx = abortable_ctx(m, &a), *ref = test_new_ctx(m, 256);
    if (!ctx || !ref) goto out;
    const float *lg = NULL;
    moge_batch pre = {.n = N_PROMPT, .tokens = PROMPT};
    CHECK(moge_forward(ctx, &pre, &lg) == MOGE_OK && moge_kv_commit(ctx, NULL, N_PROMPT) == MOGE_OK);
    CHECK(moge_forward(ref, &pre, &lg) == MOGE_OK && moge_kv_commit(ref, NULL, N_PROMPT) == MOGE_OK);
    CHECK(a.calls == 1 + info.n_layer); /* at the start, between the layers and before the lm_head */
    /* a tree level kept uncommitted, then a second level (extend) that is stopped at each point */
    const int32_t lvl1[] = {300, 301, 302}, par1[] = {-1, 0, 0};
    const int32_t lvl2[] = {310, 311}, par2[] = {1, 2};
    moge_batch b1 = {.n = 3, .tokens = lvl1, .parent = par1};
    moge_batch b2 = {.n = 2, .tokens = lvl2, .parent = par2, .extend = true};
    float want[2 * 512];
    CHECK(V <= 512);
    CHECK(moge_forward(ref, &b1, &lg) == MOGE_OK && moge_forward(ref, &b2, &lg) == MOGE_OK);
    if (lg) memcpy(want, lg, (size_t)2 * V * sizeof(float));
    CHECK(moge_forward(ctx, &b1, &lg) == MOGE_OK);
    for (int at = 1; at <= info.n_layer + 1; at++) {
        a = (abort_state){.stop_at = at};
        CHECKF(moge_forward(ctx, &b2, &lg) == MOGE_ERR_ABORTED && lg == NULL, "stop at call %d", at);
        CHECK(strstr(moge_context_error(ctx), "aborted by the caller") != NULL);
        CHECK(moge_context_n_past(ctx) == N_PROMPT);
    }
    a = (abort_state){0};
    CHECK(moge_forward(ctx, &b2, &lg) == MOGE_OK && lg && !memcmp(lg, want, (size_t)2 * V * sizeof(float)));
    /* commit the path 0 -> 2 -> 311 (rows 0, 2, 4 of the extended tree) in both: the same next logits */
    const int32_t path[] = {0, 2, 4}, next = 320;
    CHECK(moge_kv_commit(ctx, path, 3) == MOGE_OK && moge_kv_commit(ref, path, 3) == MOGE_OK);
    moge_batch b3 = {.n = 1, .tokens = &next};
    CHECK(moge_forward(ref, &b3, &lg) == MOGE_OK);
    if (lg) memcpy(want, lg, (size_t)V * sizeof(float));
    CHECK(moge_forward(ctx, &b3, &lg) == MOGE_OK && lg && !memcmp(lg, want, (size_t)V * sizeof(float)));
    CHECK(moge_context_n_past(ctx) == N_PROMPT + 3);
    /* a batch without extend drops the earlier uncommitted rows, stopped or not: none is left to commit */
    CHECK(moge_forward(ctx, &b1, &lg) == MOGE_OK);
    a = (abort_state){.stop_at = 3};
    CHECK(moge_forward(ctx, &b1, &lg) == MOGE_ERR_ABORTED);
    CHECK(moge_kv_commit(ctx, NULL, 1) == MOGE_ERR_ARG && strstr(moge_context_error(ctx), "left 0 uncommitted"));
out:
    moge_context_free(ctx);
    moge_context_free(ref);
    moge_model_free(m);
}

static bool count_token(int32_t tok, void *cb_user) {
    abort_state *a = cb_user;
    (void)tok;
    a->emitted++;
    return true;
}

static void test_abort_generate(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 2);
    if (!m) return;
    abort_state a = {.stop_after_tokens = 7};
    moge_context *ctx = abortable_ctx(m, &a);
    moge_drafter *d = NULL;
    char err[256];
    CHECK(moge_drafter_new_layer_skip(m, 2, 0, &d, err, sizeof err) == MOGE_OK);
    for (int spec = 0; ctx && d && spec < 2; spec++) {
        moge_generate_params gp = moge_generate_default_params();
        gp.sampler.temperature = 0;
        gp.n_predict = 40;
        gp.spec = spec ? MOGE_SPEC_TREE : MOGE_SPEC_NONE;
        gp.drafter = spec ? d : NULL;
        a = (abort_state){.stop_after_tokens = 7};
        moge_kv_truncate(ctx, 0);
        moge_stats st;
        CHECKF(moge_generate(ctx, PROMPT, N_PROMPT, &gp, count_token, &a, &st) == MOGE_ERR_ABORTED, "spec %d", spec);
        CHECK(strstr(moge_context_error(ctx), "aborted by the caller") != NULL);
        CHECKF(st.n_generated == a.emitted && a.emitted >= 7 && a.emitted < 40, "spec %d: %d tokens", spec, a.emitted);
        CHECK(moge_context_n_past(ctx) == N_PROMPT + st.n_generated - 1); /* as after any stop: the last is not evaluated */
        /* the context goes on */
        a = (abort_state){0};
        int32_t more = 300;
        CHECK(moge_generate(ctx, &more, 1, &gp, count_token, &a, &st) == MOGE_OK && st.n_generated > 0);
    }
    /* an abort before the first token: the prefill stops, nothing emitted */
    a = (abort_state){.stop_at = 1};
    moge_kv_truncate(ctx, 0);
    moge_stats st;
    moge_generate_params gp = moge_generate_default_params();
    CHECK(ctx && moge_generate(ctx, PROMPT, N_PROMPT, &gp, count_token, &a, &st) == MOGE_ERR_ABORTED && st.n_generated == 0);
    CHECK(ctx && moge_context_n_past(ctx) == 0);
    moge_drafter_free(d);
    moge_context_free(ctx);
    moge_model_free(m);
}

static void test_abort_load(void) {
    char err[512];
    moge_model *m = (moge_model *)&err; /* set to NULL on failure */
    abort_state a = {.stop_at = 1};
    moge_model_params p = moge_model_default_params();
    p.abort_cb = abort_cb;
    p.abort_cb_user = &a;
    CHECK(moge_model_load(STORIES, &p, &m, err, sizeof err) == MOGE_ERR_ABORTED && m == NULL);
    CHECKF(strstr(err, "aborted by the caller") && strstr(err, STORIES), "%s", err);
    /* in the middle of quantizing: the first calls are the phases, then one per matrix */
    p.quant = MOGE_QUANT_Q8;
    a = (abort_state){0};
    CHECK(moge_model_load(STORIES, &p, &m, err, sizeof err) == MOGE_OK && m);
    int total = a.calls;
    moge_model_free(m);
    CHECKF(total > 20, "%d calls", total);
    for (int at = 2; at <= total; at += 7) {
        a = (abort_state){.stop_at = at};
        m = (moge_model *)&err;
        CHECKF(moge_model_load(STORIES, &p, &m, err, sizeof err) == MOGE_ERR_ABORTED && m == NULL, "stop at call %d", at);
    }
    /* a GGUF file: between its tensors (Q4_K ones are converted to f32 there) */
    const char *gguf = "tests/fixtures/gguf/llama256_q4_k.gguf";
    p = moge_model_default_params();
    p.abort_cb = abort_cb;
    p.abort_cb_user = &a;
    a = (abort_state){0};
    CHECK(moge_model_load(gguf, &p, &m, err, sizeof err) == MOGE_OK && m);
    total = a.calls;
    moge_model_free(m);
    CHECKF(total > 10, "%d calls", total);
    for (int at = 1; at <= total; at += 3) {
        a = (abort_state){.stop_at = at};
        m = (moge_model *)&err;
        CHECKF(moge_model_load(gguf, &p, &m, err, sizeof err) == MOGE_ERR_ABORTED && m == NULL && strstr(err, gguf), "stop at call %d: %s", at, err);
    }
    CHECK(!strcmp(moge_status_str(MOGE_ERR_ABORTED), "aborted by the caller"));
}

/* ---- threads per context ----------------------------------------------------------------- */

static void check_context_threads(const char *dir) {
    moge_model *m = test_load(dir, MOGE_BACKEND_CPU, 2);
    if (!m) return;
    moge_model_info info;
    moge_model_get_info(m, &info);
    char err[512];
    moge_context_params p = moge_context_default_params();
    p.n_ctx = 64;
    moge_context *c0 = NULL, *c1 = NULL, *c3 = NULL;
    CHECK(moge_context_new(m, &p, &c0, err, sizeof err) == MOGE_OK && moge_context_n_threads(c0) == 2); /* the model's */
    p.n_threads = 1;
    CHECK(moge_context_new(m, &p, &c1, err, sizeof err) == MOGE_OK && moge_context_n_threads(c1) == 1);
    p.n_threads = 3;
    CHECK(moge_context_new(m, &p, &c3, err, sizeof err) == MOGE_OK && moge_context_n_threads(c3) == 3);
    if (c1 && c3) {
        int32_t ids[N_PROMPT];
        for (int i = 0; i < N_PROMPT; i++) ids[i] = PROMPT[i] % info.n_vocab;
        moge_batch b = {.n = N_PROMPT, .tokens = ids};
        const float *l1 = NULL, *l3 = NULL;
        CHECK(moge_forward(c1, &b, &l1) == MOGE_OK && moge_forward(c3, &b, &l3) == MOGE_OK);
        CHECKF(l1 && l3 && !memcmp(l1, l3, (size_t)N_PROMPT * info.n_vocab * sizeof(float)), "%s: 1 and 3 threads differ", dir);
    }
    p.n_threads = -1;
    moge_context *bad = (moge_context *)&err;
    CHECK(moge_context_new(m, &p, &bad, err, sizeof err) == MOGE_ERR_ARG && bad == NULL && strstr(err, "n_threads"));
    moge_context_free(c0);
    moge_context_free(c1);
    moge_context_free(c3);
    moge_model_free(m);
}

static void test_context_threads(void) {
    check_context_threads(STORIES);
    check_context_threads("tests/fixtures/moe/pangu_64e8g_bf16"); /* MoE: per-thread expert scratch */
}

/* ---- moge_detok_stream_prime ------------------------------------------------------------- */

/* The text of ids through a stream primed with the first k of them. */
static char *primed_text(const moge_tokenizer *tok, const int32_t *ids, size_t n, size_t k) {
    moge_detok_stream *s = NULL;
    if (moge_detok_stream_new(tok, &s) != MOGE_OK) return NULL;
    size_t cap = 1 << 16, len = 0, got = 0;
    char *out = malloc(cap);
    moge_status st = moge_detok_stream_prime(s, ids, k);
    for (size_t i = k; st == MOGE_OK && i <= n; i++) {
        if (moge_detok_stream_max_bytes(s) + 1 > cap - len) st = MOGE_ERR_BUFFER;
        else if (i < n) st = moge_detok_stream_push(s, ids[i], out + len, cap - len, &got);
        else st = moge_detok_stream_flush(s, out + len, cap - len, &got);
        len += got;
    }
    moge_detok_stream_free(s);
    if (st != MOGE_OK) {
        free(out);
        return NULL;
    }
    out[len] = 0;
    return out;
}

/* The text of ids without the special tokens (the text a stream shows). */
static char *detok(const moge_tokenizer *tok, const int32_t *ids, size_t n) {
    int32_t text_ids[512];
    size_t k = 0, len = 0;
    for (size_t i = 0; i < n && k < 512; i++)
        if (!moge_tokenizer_is_special(tok, ids[i])) text_ids[k++] = ids[i];
    moge_detokenize(tok, text_ids, k, NULL, 0, &len);
    char *s = malloc(len + 1);
    if (s && moge_detokenize(tok, text_ids, k, s, len + 1, &len) != MOGE_OK) s[0] = 0;
    return s;
}

static void check_prime(const char *dir, const char *text, bool leading_space) {
    char err[512];
    moge_tokenizer *tok = NULL;
    CHECKF(moge_tokenizer_load(dir, &tok, err, sizeof err) == MOGE_OK, "%s", err);
    if (!tok) return;
    int32_t ids[512];
    size_t n = 0;
    CHECK(moge_tokenize(tok, text, strlen(text), true, ids, 512, &n) == MOGE_OK && n > 4);
    char *full = detok(tok, ids, n);
    int checked = 0;
    for (size_t k = 1; full && k < n; k++) {
        char *head = detok(tok, ids, k);
        /* a prompt that ends inside a character has no text of its own to subtract */
        bool whole = head && !strstr(head, "\xef\xbf\xbd") && !strncmp(full, head, strlen(head));
        char *tail = whole ? primed_text(tok, ids, n, k) : NULL;
        if (whole) {
            CHECKF(tail && !strcmp(tail, full + strlen(head)), "%s: split at %zu: \"%s\" vs \"%s\"", dir, k, tail ? tail : "(error)",
                   full + strlen(head));
            checked++;
        }
        free(tail);
        free(head);
    }
    CHECKF(checked > 4, "%s: %d splits", dir, checked);
    if (leading_space) { /* unprimed, the first word loses its space: the test can tell */
        char *bare = primed_text(tok, ids + 2, n - 2, 0), *primed = primed_text(tok, ids, n, 2);
        CHECK(bare && primed && strcmp(bare, primed) != 0 && primed[0] == ' ');
        free(bare);
        free(primed);
    }
    CHECK(moge_detok_stream_prime(NULL, ids, 1) == MOGE_ERR_ARG);
    free(full);
    moge_tokenizer_free(tok);
}

static void test_detok_prime(void) {
    check_prime(STORIES, "Once upon a time, a little girl named Lily found a shiny stone. She said: \"Wow!\" \xe2\x98\x83 caf\xc3\xa9.", true);
    check_prime("tests/fixtures/tokenizers/qwen3", "Hello world, this is a test of caf\xc3\xa9 and \xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c!", false);
}

/* ---- timers ------------------------------------------------------------------------------ */

static bool slow_token(int32_t tok, void *cb_user) {
    (void)tok;
    (*(int *)cb_user)++;
    struct timespec ts = {0, 2000000}; /* 2 ms */
    while (nanosleep(&ts, &ts) != 0) {}
    return true;
}

static void test_emit_timer(void) {
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 2);
    moge_context *ctx = m ? test_new_ctx(m, 256) : NULL;
    if (ctx) {
        moge_generate_params gp = moge_generate_default_params();
        gp.n_predict = 20;
        moge_stats st;
        int n = 0;
        CHECK(moge_generate(ctx, PROMPT, N_PROMPT, &gp, slow_token, &n, &st) == MOGE_OK);
        /* every callback after the first (the prefill's token) is inside t_emit_s: 2 ms at least each */
        CHECKF(n > 2 && st.t_emit_s >= 0.002 * (n - 1), "%d tokens, t_emit_s %.4f", n, st.t_emit_s);
    }
    moge_context_free(ctx);
    moge_model_free(m);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check_forward_times(const char *dir, bool moe) {
    moge_model *m = test_load(dir, MOGE_BACKEND_CPU, 2);
    moge_context *ctx = m ? test_new_ctx(m, 64) : NULL;
    if (!ctx) {
        moge_model_free(m);
        return;
    }
    moge_forward_times t;
    moge_forward_times_get(ctx, &t);
    CHECKF(t.forwards == 0 && t.rows == 0 && t.seconds[MOGE_PART_QKV] == 0, "%s: a new context has counted %lld forwards", dir, (long long)t.forwards);
    const float *logits;
    double wall = 0;
    static const int32_t sizes[] = {5, 1, 3};
    int32_t rows = 0;
    static const int32_t toks[] = {1, 40, 7, 26, 37}; /* in both vocabularies */
    for (int i = 0; i < 3; i++) {
        moge_batch b = {.n = sizes[i], .tokens = toks};
        double t0 = now_s();
        CHECK(moge_forward(ctx, &b, &logits) == MOGE_OK);
        wall += now_s() - t0;
        rows += sizes[i];
    }
    moge_forward_times_get(ctx, &t);
    const double *part = t.seconds;
    double sum = 0;
    for (int i = 0; i < MOGE_N_PARTS; i++) {
        CHECKF(part[i] >= 0, "%s: part %d is %g s", dir, i, part[i]);
        sum += part[i];
    }
    CHECKF(t.forwards == 3 && t.rows == rows, "%s: %lld forwards, %lld rows", dir, (long long)t.forwards, (long long)t.rows);
    /* the parts are consecutive intervals of the forwards: they cannot exceed the time around the
     * calls, and leave out only the checks of the batch */
    CHECKF(sum <= wall * 1.0001 && sum >= 0.5 * wall, "%s: the parts add up to %.6f s of %.6f s", dir, sum, wall);
    double router = t.seconds[MOGE_PART_ROUTER], experts = t.seconds[MOGE_PART_EXPERTS];
    CHECKF(t.seconds[MOGE_PART_QKV] > 0 && t.seconds[MOGE_PART_ATTENTION] > 0 && t.seconds[MOGE_PART_OUT_PROJ] > 0 && t.seconds[MOGE_PART_MLP] > 0 &&
               t.seconds[MOGE_PART_LM_HEAD] > 0,
           "%s: a part is 0", dir);
    if (moe) CHECKF(router > 0 && experts > 0, "%s: router %g s, experts %g s", dir, router, experts);
    else CHECKF(router == 0 && experts == 0, "%s: a dense model's router %g s, experts %g s", dir, router, experts);
    moge_forward_times_reset(ctx);
    moge_forward_times_get(ctx, &t);
    CHECK(t.forwards == 0 && t.rows == 0 && t.seconds[MOGE_PART_MLP] == 0 && t.seconds[MOGE_PART_EXPERTS] == 0);
    moge_forward_times_get(NULL, &t); /* no context: zeros */
    CHECK(t.forwards == 0 && t.seconds[MOGE_PART_LM_HEAD] == 0);
    CHECK(!strcmp(moge_forward_part_name(MOGE_PART_OUT_PROJ), "out_proj") && moge_forward_part_name(MOGE_N_PARTS) == NULL &&
          moge_forward_part_name(-1) == NULL);
    moge_forward_times_reset(NULL);
    moge_forward_times_get(ctx, NULL);
    moge_context_free(ctx);
    moge_model_free(m);
}

static void test_forward_times(void) {
    check_forward_times(STORIES, false);
    check_forward_times("tests/fixtures/moe/pangu_64e8g_bf16", true); /* MoGE, with a shared expert */
}

/* ---- default threads ---------------------------------------------------------------------- */

/* Writes text to root + path, making its directories. */
static void put_file(const char *root, const char *path, const char *text) {
    char full[1024];
    snprintf(full, sizeof full, "%s%s", root, path);
    for (char *p = full + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(full, 0755);
            *p = '/';
        }
    FILE *f = fopen(full, "w");
    CHECKF(f != NULL, "cannot write %s", full);
    if (f) fputs(text, f), fclose(f);
}

static void test_default_threads(void) {
    const char *root = "build/test_cpu_threads";
    CHECK(shell("rm -rf build/test_cpu_threads") == 0);
    /* 4 CPUs on 2 cores (0 and 2 share one, 1 and 3 the other), no cgroup files */
    static const char *const sib[] = {"0,2", "1,3", "0,2", "1,3"};
    for (int c = 0; c < 4; c++) {
        char path[128];
        snprintf(path, sizeof path, "/a/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", c);
        put_file(root, path, sib[c]);
    }
    char a[256];
    snprintf(a, sizeof a, "%s/a", root);
    int all[] = {0, 1, 2, 3}, pair[] = {0, 2}, two[] = {0, 1}, eight[] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECKF(cpu_threads_default_at(a, all, 4) == 2, "4 CPUs on 2 cores: %d", cpu_threads_default_at(a, all, 4));
    CHECKF(cpu_threads_default_at(a, pair, 2) == 1, "two threads of one core: %d", cpu_threads_default_at(a, pair, 2));
    CHECKF(cpu_threads_default_at(a, two, 2) == 2, "one thread of each core: %d", cpu_threads_default_at(a, two, 2));
    CHECKF(cpu_threads_default_at(a, eight, 8) == 6, "CPUs 4-7 without topology count one each: %d", cpu_threads_default_at(a, eight, 8));
    /* cgroup v2 quota, no topology: 8 allowed CPUs */
    char b[256];
    snprintf(b, sizeof b, "%s/b", root);
    put_file(b, "/proc/self/cgroup", "0::/user.slice/job\n");
    static const struct { const char *max; int want; } v2[] = {{"150000 100000", 2}, {"max 100000", 8}, {"50000 100000", 1}, {"2000000 100000", 8}};
    for (size_t i = 0; i < sizeof v2 / sizeof v2[0]; i++) {
        put_file(b, "/sys/fs/cgroup/user.slice/job/cpu.max", v2[i].max);
        int got = cpu_threads_default_at(b, eight, 8);
        CHECKF(got == v2[i].want, "cgroup v2 cpu.max \"%s\", 8 CPUs: %d threads, expected %d", v2[i].max, got, v2[i].want);
    }
    /* cgroup v1 (a hybrid system: the cpu controller on v1, the 0:: line too) */
    char c1[256];
    snprintf(c1, sizeof c1, "%s/c", root);
    put_file(c1, "/proc/self/cgroup", "5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n");
    put_file(c1, "/sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n");
    put_file(c1, "/sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "300000\n");
    CHECKF(cpu_threads_default_at(c1, eight, 8) == 3, "cgroup v1 quota of 3 CPUs: %d", cpu_threads_default_at(c1, eight, 8));
    put_file(c1, "/sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "-1\n");
    CHECKF(cpu_threads_default_at(c1, eight, 8) == 8, "cgroup v1 without a quota: %d", cpu_threads_default_at(c1, eight, 8));
    /* nothing readable: the allowed CPUs; none: 1 */
    CHECK(cpu_threads_default_at("build/test_cpu_threads/none", eight, 8) == 8);
    CHECK(cpu_threads_default_at("build/test_cpu_threads/none", eight, 0) == 1);
    /* this machine */
    int n = moge_cpu_default_threads();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECKF(n >= 1 && n <= online, "moge_cpu_default_threads() = %d of %ld online CPUs", n, online);
    cpu_set_t set;
    CPU_ZERO(&set);
    int usable = moge_cpu_usable(), mask = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    CHECKF(usable == mask && usable >= n, "moge_cpu_usable() = %d: the affinity mask holds %d CPUs, the default is %d threads", usable, mask, n);
    moge_model *m = test_load(STORIES, MOGE_BACKEND_CPU, 0);
    moge_context *ctx = m ? test_new_ctx(m, 64) : NULL;
    if (ctx) CHECKF(moge_context_n_threads(ctx) == n, "a model with n_threads 0 runs %d threads, the default is %d", moge_context_n_threads(ctx), n);
    moge_context_free(ctx);
    moge_model_free(m);
}

int main(void) {
    RUN_TESTS(T(test_sample_matches_generate), T(test_sample_rules), T(test_abort_forward), T(test_abort_generate), T(test_abort_load),
              T(test_context_threads), T(test_detok_prime), T(test_emit_timer), T(test_forward_times), T(test_default_threads));
}
