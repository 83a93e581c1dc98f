/*
 * test_mpi.c — expert parallelism across MPI ranks (issue 17), with `mpirun --oversubscribe` on
 * this machine's loopback:
 *  - library: this program under `mpirun -np N` (child mode): rank 0 loads the model across the
 *    job (moge_model_params.comm) and alone, runs the same forwards on both — a causal prefill, a
 *    draft tree with a commit of a path, two sequences in one batch, a truncate, last-row logits
 *    — and compares every logit bit for bit; each rank holds 1/N of the expert bytes and the
 *    ranks' pairs add up to rows x k x layers. Demo target and the random Pangu fixtures, cpu and
 *    ref backends, N = 2, 4, 8 where N divides the groups;
 *  - CLI: `mpirun -np N build/moge run` with N = 1, 2, 4, 8 prints the single-process text, greedy,
 *    plain and with tree speculation (-d models/tinystories-draft --spec tree), with the layer-skip
 *    self-draft and with several prompts decoded together (--prompts --batch), on the demo target
 *    and on pangu_64e8g_bf16 (with the character tokenizer of tests/fixtures/eval); --stats-json
 *    "ranks": expert_bytes = single / N on every rank, and resident memory (N = 2, 4) smaller than
 *    one rank's under mpirun by at least 40 % of the expert bytes the rank does not hold; the ranks' Imbalance Score 0 for MoGE routing,
 *    above 0 for the top-K twin;
 *  - failures: N that does not divide the groups (a clear error), a rank that fails to load (a
 *    tensor of its experts missing: every rank exits non-zero, the message names the rank and the
 *    tensor), rank 1 killed (SIGKILL) mid-generation: the job ends non-zero within 10 s (a hang
 *    bound, not a speed figure), mpirun names rank 1, no rank is left;
 *  - a program that does not call moge_comm_mpi_init does not link libmpi (ldd); libmoge.a and
 *    libmoge.so hold no MPI (their moge_comm_mpi_init is a stub saying so), libmoge-mpi.a does.
 */
#include <cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "harness.h"
#include "test_util.h"
#include "moge.h"

#define OUT "build/test_mpi.out"
#define ERR "build/test_mpi.err"
#define DEMO "models/tinystories-moge"
#define DRAFT "models/tinystories-draft"
#define PANGU8 "build/test_mpi_pangu8" /* pangu_64e8g_bf16 with the character tokenizer */
#define PROMPT "Once upon a time, there was a little robot who"
/* As root (this machine's tests run as root), oversubscribing the cores. Under the ASan build the
 * ranks run without the leak check: Open MPI keeps allocations past MPI_Finalize in components it
 * has unloaded by then (no module name left to suppress them by); address and UB checks stay. */
#define MPIRUN                                                                                                 \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 " \
    "mpirun --oversubscribe"

/* ------------------------------------------------------------------------------------------ */
/* child mode: one rank of `mpirun -np N test_mpi --child MODEL BACKEND`                      */

static int n_mismatch;

static void compare(const char *what, const float *a, const float *b, int64_t n) {
    if (memcmp(a, b, (size_t)n * sizeof(float)) == 0) return;
    printf("MISMATCH %s: normalised error %.3g\n", what, nerr(a, b, n));
    n_mismatch++;
}

/* The same batch through both contexts; its logits (rows x vocab) compared bit for bit. */
static int both(moge_context *dist, moge_context *one, const moge_batch *b, int vocab, const char *what) {
    const float *la, *lb;
    if (moge_forward(dist, b, &la) != MOGE_OK || moge_forward(one, b, &lb) != MOGE_OK) {
        printf("FORWARD FAILED %s: %s / %s\n", what, moge_context_error(dist), moge_context_error(one));
        return 1;
    }
    int rows = b->logits_last_only ? 1 : b->n;
    compare(what, la, lb, (int64_t)rows * vocab);
    return 0;
}

static int lead(moge_comm *comm, const char *dir, moge_backend backend) {
    char err[1024];
    moge_model_params mp = moge_model_default_params();
    mp.n_threads = 1;
    mp.backend = backend;
    moge_model *md = NULL, *m1 = NULL;
    moge_context *cd = NULL, *c1 = NULL;
    mp.comm = comm;
    if (moge_model_load(dir, &mp, &md, err, sizeof err) != MOGE_OK) {
        printf("LOAD FAILED (job): %s\n", err);
        return 1;
    }
    mp.comm = NULL;
    if (moge_model_load(dir, &mp, &m1, err, sizeof err) != MOGE_OK) {
        printf("LOAD FAILED (alone): %s\n", err);
        return 1;
    }
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 16;
    cp.n_seq = 2;
    if (moge_context_new(md, &cp, &cd, err, sizeof err) != MOGE_OK || moge_context_new(m1, &cp, &c1, err, sizeof err) != MOGE_OK) {
        printf("CONTEXT FAILED: %s\n", err);
        return 1;
    }
    moge_model_info info;
    moge_model_get_info(m1, &info);
    int V = info.n_vocab, rc = 0;
    uint32_t s = 12345;
    int32_t tok[16];
    for (int i = 0; i < 16; i++) s = s * 1664525u + 1013904223u, tok[i] = 3 + (int32_t)((s >> 8) % (uint32_t)(V - 3));
    moge_context *ctxs[2] = {cd, c1};
    /* 1: causal prefill of sequence 0 */
    moge_batch b = {.n = 6, .tokens = tok};
    rc |= both(cd, c1, &b, V, "prefill");
    for (int k = 0; k < 2; k++) rc |= moge_kv_commit(ctxs[k], NULL, 6) != MOGE_OK;
    /* 2: a draft tree, then the path 0 -> 2 -> 5 committed */
    int32_t parent[7] = {-1, 0, 0, 1, 1, 2, 5}, path[3] = {0, 2, 5};
    b = (moge_batch){.n = 7, .tokens = tok + 6, .parent = parent};
    rc |= both(cd, c1, &b, V, "tree");
    for (int k = 0; k < 2; k++) rc |= moge_kv_commit(ctxs[k], path, 3) != MOGE_OK;
    /* 3: two sequences in one batch */
    int32_t seq[5] = {0, 0, 1, 1, 1};
    b = (moge_batch){.n = 5, .tokens = tok + 9, .seq = seq};
    rc |= both(cd, c1, &b, V, "two sequences");
    for (int k = 0; k < 2; k++) {
        rc |= moge_seq_kv_commit(ctxs[k], 1, NULL, 3) != MOGE_OK;
        rc |= moge_seq_kv_truncate(ctxs[k], 0, 4) != MOGE_OK;
    }
    /* 4: after the truncate, last-row logits of sequence 0 */
    b = (moge_batch){.n = 3, .tokens = tok + 13, .logits_last_only = true};
    rc |= both(cd, c1, &b, V, "after truncate");
    /* the ranks: each holds 1/N of the experts; their pairs are every row's k per layer */
    int R = moge_context_n_ranks(cd);
    moge_rank_stats rs[16], one;
    if (R < 1 || R > 16 || moge_context_rank_stats(cd, rs) != MOGE_OK || moge_context_rank_stats(c1, &one) != MOGE_OK) {
        printf("RANK STATS FAILED: %s\n", moge_context_error(cd));
        rc = 1;
    } else {
        int64_t pairs = 0, rows = 6 + 7 + 5 + 3;
        for (int r = 0; r < R; r++) {
            pairs += rs[r].pairs;
            if (rs[r].rank != r || rs[r].expert_bytes * R != one.expert_bytes) {
                printf("RANK %d holds %lld expert bytes of %lld (%d ranks)\n", r, (long long)rs[r].expert_bytes, (long long)one.expert_bytes, R);
                rc = 1;
            }
        }
        if (pairs != rows * info.n_expert_used * info.n_layer || one.pairs != pairs) {
            printf("PAIRS %lld over the ranks, %lld alone, expected %lld\n", (long long)pairs, (long long)one.pairs,
                   (long long)(rows * info.n_expert_used * info.n_layer));
            rc = 1;
        }
    }
    if (rc == 0 && n_mismatch == 0) printf("logits identical over %d ranks: 4 forwards, expert bytes 1/%d each\n", R, R);
    moge_context_free(cd);
    moge_context_free(c1);
    moge_model_free(md);
    moge_model_free(m1);
    return rc || n_mismatch ? 1 : 0;
}

static int child(int argc, char **argv) {
    char err[1024];
    moge_comm *comm = NULL;
    if (argc < 4 || moge_comm_mpi_init(&argc, &argv, &comm, err, sizeof err) != MOGE_OK) {
        printf("child: %s\n", argc < 4 ? "usage: test_mpi --child MODEL cpu|ref" : err);
        return 1;
    }
    int rc = 1;
    if (moge_comm_rank(comm) == 0) rc = lead(comm, argv[2], strcmp(argv[3], "ref") == 0 ? MOGE_BACKEND_REF : MOGE_BACKEND_CPU);
    else if (moge_comm_serve(comm, &rc, err, sizeof err) != MOGE_OK) {
        printf("rank %d: %s\n", moge_comm_rank(comm), err);
        fflush(stdout);
        _exit(1);
    }
    fflush(stdout);
    moge_comm_free(comm, rc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* driver                                                                                     */

static const char *bin(void) { return getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge"; }
static char self[512], self_dir[512]; /* this program (BUILD/tests/test_mpi) and its folder */

static void library_logits(void) {
    static const struct { const char *dir, *backend; int n; } runs[] = {
        {DEMO, "cpu", 2}, {DEMO, "cpu", 4}, {DEMO, "cpu", 8},
        {"tests/fixtures/moe/pangu_64e8g_bf16", "cpu", 8}, {"tests/fixtures/moe/pangu_64e8g_bf16", "ref", 2},
        {"tests/fixtures/moe/pangu_16e4g", "cpu", 4}, {"tests/fixtures/moe/pangu_16e4g", "ref", 4},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s --child %s %s >" OUT " 2>" ERR " </dev/null", runs[i].n, self, runs[i].dir,
                 runs[i].backend);
        int rc = shell(cmd);
        char *out = slurp_text(OUT), *err = slurp_text(ERR);
        CHECKF(rc == 0 && strstr(out, "logits identical"), "%s (%s backend) on %d ranks: exit %d: %s%s", runs[i].dir, runs[i].backend,
               runs[i].n, rc, out, err);
        free(out);
        free(err);
    }
}

static cJSON *load_json(const char *path) {
    char *text = slurp_text(path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/* `[mpirun -np n] moge run ARGS --stats-json JSON` (n 0: alone); returns its exit status. */
static int run_moge(int n, const char *args, const char *out, const char *json) {
    char cmd[2048], pre[256] = "";
    if (n > 0) snprintf(pre, sizeof pre, MPIRUN " -np %d ", n);
    snprintf(cmd, sizeof cmd, "%s%s run %s -t 1 --temp 0 --stats-json %s >%s 2>" ERR " </dev/null", pre, bin(), args, json, out);
    return shell(cmd);
}

static int64_t rank_field(const cJSON *root, int r, const char *key) {
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(root, "ranks");
    const cJSON *o = cJSON_GetArrayItem(ranks, r);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}


/* The text of `moge run ARGS` on n ranks equals the single process's; expert bytes 1/n each. */
static void cli_same(const char *args, const int *ns, int count) {
    CHECK(run_moge(0, args, "build/test_mpi.1.out", "build/test_mpi.1.json") == 0);
    char *one = slurp_text("build/test_mpi.1.out");
    cJSON *j1 = load_json("build/test_mpi.1.json");
    int64_t experts = rank_field(j1, 0, "expert_bytes");
    CHECKF(strlen(one) > 10 && experts > 0, "moge run %s alone: %s", args, one);
    for (int i = 0; i < count; i++) {
        int n = ns[i];
        int rc = run_moge(n, args, OUT, "build/test_mpi.json");
        char *text = slurp_text(OUT), *err = slurp_text(ERR);
        CHECKF(rc == 0 && strcmp(text, one) == 0, "moge run %s on %d ranks: exit %d, text %s (alone: %s) %s", args, n, rc, text, one, err);
        cJSON *j = load_json("build/test_mpi.json");
        CHECKF(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "ranks")) == n, "%d ranks in the JSON", n);
        for (int r = 0; r < n; r++) {
            int64_t held = rank_field(j, r, "expert_bytes");
            CHECKF(held * n == experts, "rank %d of %d holds %lld expert bytes, alone %lld", r, n, (long long)held, (long long)experts);
        }
        cJSON_Delete(j);
        free(text);
        free(err);
    }
    cJSON_Delete(j1);
    free(one);
}

static void cli_demo_plain(void) {
    int ns[] = {1, 2, 4, 8};
    cli_same("-m " DEMO " -n 40 -p \"" PROMPT "\"", ns, 4);
}

static void cli_demo_tree(void) {
    int ns[] = {1, 2, 4, 8};
    cli_same("-m " DEMO " -d " DRAFT " --spec tree -n 40 -p \"" PROMPT "\"", ns, 4);
}

/* The layer-skip self-draft (a view of the target: its contexts run on every rank too) and many
 * sequences through one decoder (continuous batching) with a draft model. */
static void cli_demo_layer_skip_and_batch(void) {
    int ns[] = {2, 4};
    cli_same("-m " DEMO " --draft-layers 2 -n 30 -p \"" PROMPT "\"", ns, 2);
    CHECK(shell("printf 'Once upon a time\\nThe little dog\\nA girl named Lily\\n' >build/test_mpi.batch") == 0);
    cli_same("-m " DEMO " -d " DRAFT " --prompts build/test_mpi.batch --batch 2 -n 24", ns, 2);
}

/* A dense model has no experts to split: every rank runs the whole model, the text is the same. */
static void cli_dense(void) {
    const char *args = "-m models/stories260K -n 30 -p Once";
    CHECK(run_moge(0, args, "build/test_mpi.1.out", "build/test_mpi.1.json") == 0);
    int rc = run_moge(2, args, OUT, "build/test_mpi.json");
    char *one = slurp_text("build/test_mpi.1.out"), *two = slurp_text(OUT), *err = slurp_text(ERR);
    CHECKF(rc == 0 && strlen(one) > 10 && strcmp(one, two) == 0, "exit %d, text %s (alone: %s) %s", rc, two, one, err);
    free(one);
    free(two);
    free(err);
}

static double json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The ranks' Imbalance Score from the blocks they exchanged: 0 for MoGE routing (each rank gets
 * K / M pairs of every row per group it holds), above 0 for the top-K twin; rows = routed rows x
 * MoE layers; every rank's pairs add up to rows x k. */
static void rank_imbalance(void) {
    static const struct { const char *dir; bool balanced; } runs[] = {{DEMO, true}, {"models/tinystories-topk", false}};
    for (int i = 0; i < 2; i++) {
        char args[256];
        snprintf(args, sizeof args, "-m %s -n 24 -p Once", runs[i].dir);
        CHECK(run_moge(2, args, OUT, "build/test_mpi.json") == 0);
        cJSON *j = load_json("build/test_mpi.json");
        double is = json_num(j, "rank_imbalance");
        int64_t rows = rank_field(j, 0, "rows"), pairs = rank_field(j, 0, "pairs") + rank_field(j, 1, "pairs");
        CHECKF(runs[i].balanced ? is == 0 : is > 0, "%s on 2 ranks: rank_imbalance %g", runs[i].dir, is);
        CHECKF(rows > 0 && rows == rank_field(j, 1, "rows") && pairs == rows * 8, "%s: rows %lld, pairs %lld", runs[i].dir, (long long)rows,
               (long long)pairs);
        CHECKF(rank_field(j, 0, "spread_pairs") == rank_field(j, 1, "spread_pairs"), "%s: the ranks see the same spread", runs[i].dir);
        cJSON_Delete(j);
    }
}

/* Resident memory against a single process under mpirun (the MPI runtime's own memory on both sides). */
static void cli_demo_memory(void) {
    int ns[] = {2, 4};
    char cmd[2048];
    /* the baseline: one rank under mpirun */
    snprintf(cmd, sizeof cmd, MPIRUN " -np 1 %s run -m " DEMO " -n 8 -t 1 --temp 0 -p Once --stats-json build/test_mpi.1.json >/dev/null 2>" ERR, bin());
    CHECK(shell(cmd) == 0);
    cJSON *j1 = load_json("build/test_mpi.1.json");
    int64_t base = rank_field(j1, 0, "resident_bytes"), experts = rank_field(j1, 0, "expert_bytes");
    for (int i = 0; i < 2; i++) {
        int n = ns[i];
        CHECK(run_moge(n, "-m " DEMO " -n 8 -p Once", OUT, "build/test_mpi.json") == 0);
        cJSON *j = load_json("build/test_mpi.json");
        for (int r = 0; r < n; r++) {
            int64_t held = rank_field(j, r, "expert_bytes"), res = rank_field(j, r, "resident_bytes");
            CHECKF(held * n == experts && res > 0 && res < base - (experts - held) * 2 / 5,
                   "rank %d of %d: %lld expert bytes (alone %lld), resident %lld (alone %lld)", r, n, (long long)held, (long long)experts,
                   (long long)res, (long long)base);
        }
        cJSON_Delete(j);
    }
    cJSON_Delete(j1);
}

/* tests/fixtures/eval/chars/tokenizer.json grown with ASCII characters to `vocab` ids, so that every
 * id a random model of that vocabulary emits prints, into dir/tokenizer.json. */
static void write_char_tokenizer(const char *dir, int vocab) {
    cJSON *t = load_json("tests/fixtures/eval/chars/tokenizer.json");
    cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "model"), "vocab");
    CHECK(cJSON_IsObject(v));
    int n = cJSON_GetArraySize(v);
    for (int ch = 33; ch < 127 && n < vocab; ch++) {
        char key[2] = {(char)ch, 0};
        if (!cJSON_GetObjectItemCaseSensitive(v, key)) cJSON_AddNumberToObject(v, key, n++);
    }
    CHECK(n == vocab);
    char path[256], *text = cJSON_Print(t);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && text && fputs(text, f) >= 0);
    if (f) fclose(f);
    free(text);
    cJSON_Delete(t);
}

static void cli_pangu(void) {
    CHECK(shell("rm -rf " PANGU8 " && mkdir -p " PANGU8 " && cp tests/fixtures/moe/pangu_64e8g_bf16/config.json "
                "tests/fixtures/moe/pangu_64e8g_bf16/model.safetensors " PANGU8) == 0);
    write_char_tokenizer(PANGU8, 97);
    int ns[] = {2, 4, 8};
    cli_same("-m " PANGU8 " -n 30 -p \"the cat\"", ns, 3);
}

/* Every rank and mpirun exit non-zero, and stderr says `needle`. */
static void job_fails(int n, const char *args, const char *needle) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s %s >" OUT " 2>" ERR " </dev/null", n, bin(), args);
    int rc = shell(cmd);
    char *err = slurp_text(ERR);
    CHECKF(rc != 0 && strstr(err, needle), "mpirun -np %d moge %s: exit %d, stderr: %s", n, args, rc, err);
    free(err);
}

static void ranks_must_divide_groups(void) {
    job_fails(8, "run -m tests/fixtures/moe/pangu_16e4g -n 4 -p x", "8 ranks cannot share the 4 expert groups");
}

/* A copy of pangu_64e8g_bf16 whose expert 63 of layer 1 has lost its down_proj (renamed in the
 * header, same length): rank 1 of 2 holds it. */
static void rank_fails_to_load(void) {
    const char *dir = "build/test_mpi_broken";
    CHECK(shell("rm -rf build/test_mpi_broken && mkdir -p build/test_mpi_broken && cp tests/fixtures/moe/pangu_64e8g_bf16/config.json "
                "tests/fixtures/moe/pangu_64e8g_bf16/model.safetensors tests/fixtures/eval/chars/tokenizer.json build/test_mpi_broken") == 0);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    uint64_t hlen = 0;
    CHECK(fread(&hlen, 8, 1, f) == 1 && hlen < 1 << 20);
    char *h = calloc(hlen + 1, 1);
    CHECK(fread(h, 1, hlen, f) == hlen);
    char *at = strstr(h, "model.layers.1.mlp.experts.63.down_proj.weight");
    CHECK(at != NULL);
    if (at) {
        memcpy(at, "model.layers.1.mlp.experts.63.down_proj.weighX", 46);
        fseek(f, 8, SEEK_SET);
        CHECK(fwrite(h, 1, hlen, f) == hlen);
    }
    fclose(f);
    free(h);
    job_fails(2, "run -m build/test_mpi_broken -n 4 -p x", "rank 1: ");
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "model.layers.1.mlp.experts.63.down_proj.weight"), "the missing tensor is named: %s", err);
    free(err);
    /* the tensor belongs to rank 1: a single process fails the same way, naming it */
    expect_moge_error("run -m build/test_mpi_broken -n 4 -p x", 1, "model.layers.1.mlp.experts.63.down_proj.weight", OUT, ERR);
}

/* Processes whose environment holds tag (this test's marker) and, when rank >= 0, that rank. */
static int find_ranks(const char *tag, int rank, pid_t *pids, int cap) {
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    while (d && (e = readdir(d)) && n < cap) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64], buf[65536];
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        bool has_tag = false, has_rank = rank < 0, is_rank = false;
        for (size_t i = 0; i < len; i += strlen(buf + i) + 1) {
            has_tag |= strcmp(buf + i, tag) == 0;
            has_rank |= strcmp(buf + i, want) == 0;
            is_rank |= strncmp(buf + i, "OMPI_COMM_WORLD_RANK=", 21) == 0;
        }
        if (has_tag && has_rank && is_rank) pids[n++] = pid;
    }
    if (d) closedir(d);
    return n;
}

static void rank_killed_mid_generation(void) {
    char tag[64], cmd[2048];
    snprintf(tag, sizeof tag, "MOGE_TEST_MPI_TAG=%d", (int)getpid());
    CHECK(shell("printf 'Once upon a time\\nThe little dog\\nA girl named Lily\\nOne day, a bird\\nTom and Sue\\nThe sun was\\n' >build/test_mpi.prompts") == 0);
    snprintf(cmd, sizeof cmd, "%s " MPIRUN " -np 2 %s run -m " DEMO " -t 1 --temp 0 -n 400 --prompts build/test_mpi.prompts --batch 1 >" OUT
             " 2>" ERR " </dev/null", tag, bin());
    remove(OUT);
    pid_t job = fork();
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    CHECK(job > 0);
    /* generation has begun once text comes out */
    double t0 = clock_now();
    char *out = NULL;
    for (;;) {
        free(out);
        out = slurp_text(OUT);
        if (strlen(out) > 40 || clock_now() - t0 > 120 || waitpid(job, NULL, WNOHANG) != 0) break;
        usleep(20000);
    }
    pid_t victim[4];
    int n = find_ranks(tag, 1, victim, 4);
    CHECKF(n == 1 && strlen(out) > 40, "rank 1 found %d times, text so far: %s", n, out);
    free(out);
    if (n != 1) {
        kill(job, SIGKILL);
        waitpid(job, NULL, 0);
        return;
    }
    kill(victim[0], SIGKILL);
    double t_kill = clock_now();
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid(job, &status, WNOHANG)) == 0 && clock_now() - t_kill < 10) usleep(20000);
    CHECKF(done == job, "the job still runs 10 s after rank 1 was killed");
    if (done != job) {
        pid_t left[16];
        int k = find_ranks(tag, -1, left, 16);
        for (int i = 0; i < k; i++) kill(left[i], SIGKILL);
        kill(job, SIGKILL);
        waitpid(job, NULL, 0);
    }
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) != 0, "mpirun's status %d", status);
    char *err = slurp_text(ERR);
    CHECKF(strstr(err, "rank 1") && (strstr(err, "signal 9") || strstr(err, "Killed")), "stderr names rank 1 and its cause: %s", err);
    free(err);
    pid_t left[16];
    CHECKF(find_ranks(tag, -1, left, 16) == 0, "a rank of the killed job is still running");
}

/* The library's MPI part is an object of its own: programs that do not use it do not link libmpi. */
static void library_users_do_not_link_mpi(void) {
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "ldd %s/test_cli | grep -q libmpi", self_dir);
    CHECK(shell(cmd) != 0);
    snprintf(cmd, sizeof cmd, "ldd %s | grep -q libmpi", self);
    CHECK(shell(cmd) == 0);
    /* the command's archive: MPI only in comm_mpi.o */
    snprintf(cmd, sizeof cmd, "nm -A %s/../libmoge-internal.a 2>/dev/null | grep ' U MPI_Init_thread' | grep -q comm_mpi.o", self_dir);
    CHECK(shell(cmd) == 0);
    snprintf(cmd, sizeof cmd, "nm -A %s/../libmoge-internal.a 2>/dev/null | grep ' U P\\?MPI_' | grep -v comm_mpi.o | grep -q .", self_dir);
    CHECK(shell(cmd) != 0);
    /* the public libraries: no MPI in libmoge.a and libmoge.so (their moge_comm_mpi_init says so),
     * the real one in libmoge-mpi.a */
    snprintf(cmd, sizeof cmd, "nm %s/../libmoge.a 2>/dev/null | grep -q ' U P\\?MPI_'", self_dir);
    CHECK(shell(cmd) != 0);
    snprintf(cmd, sizeof cmd, "ldd %s/../libmoge.so | grep -q libmpi", self_dir);
    CHECK(shell(cmd) != 0);
    snprintf(cmd, sizeof cmd, "nm %s/../libmoge-mpi.a 2>/dev/null | grep -q ' T moge_comm_mpi_init'", self_dir);
    CHECK(shell(cmd) == 0);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child(argc, argv);
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(self_dir, sizeof self_dir, "%s", argv[0]);
    char *slash = strrchr(self_dir, '/');
    if (slash) *slash = 0;
    else snprintf(self_dir, sizeof self_dir, ".");
    RUN_TESTS(T(library_logits), T(cli_demo_plain), T(cli_demo_tree), T(cli_demo_layer_skip_and_batch), T(cli_demo_memory), T(rank_imbalance), T(cli_dense), T(cli_pangu), T(ranks_must_divide_groups),
              T(rank_fails_to_load), T(rank_killed_mid_generation), T(library_users_do_not_link_mpi));
}
