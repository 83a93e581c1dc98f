/*
 * bench_speculation.c — `make bench`: speculative decoding against plain decoding, the planner
 * against a sweep of fixed chains and trees, each case one interleaved `moge bench` run (so the
 * ratios of a case are measured side by side).
 *
 * Cases (the stand-ins are made by `make standins`, a dependency of `make bench`):
 *   demo        models/tinystories-moge + models/tinystories-draft, greedy, 8 prompts x 128 tokens
 *   demo-busy   the same, none vs the planner's tree, while a busy loop runs on one core
 *   moge        build/standins/tinystories-moge-1.6g (memory-bound MoGE) + the demo draft, greedy
 *   moge-t0.8   the same at temperature 0.8 (seed fixed; text is not compared)
 *   dense       build/standins/stories260K-1.7g (memory-bound dense Llama) + the demo draft, greedy
 * Each prints the `moge bench` table, then one summary line: plain tokens/s, the planner's tree and
 * chain (speedup over none), the best fixed configuration of the sweep and the planner's best
 * as a share of it. The JSON of every case is kept under build/bench-speculation/.
 * `bench_speculation CASE...` runs only those cases (also MOGE_BENCH_SPEC=demo,moge,...).
 */
#include <cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#define MOGE "build/moge"
#define OUT_DIR "build/bench-speculation"
#define SWEEP "none,chain:2,chain:3,chain:4,chain:6,tree:8,tree:16,tree:24,chain,tree"

typedef struct {
    const char *name, *model, *args, *modes;
    bool busy;
} bench_case;

static const bench_case cases[] = {
    {"demo", "models/tinystories-moge", "-d models/tinystories-draft -n 128 --repeats 3 --temp 0", "none,chain:2,chain:4,tree:8,chain,tree", false},
    {"demo-busy", "models/tinystories-moge", "-d models/tinystories-draft -n 128 --repeats 3 --temp 0", "none,tree", true},
    {"moge", "build/standins/tinystories-moge-1.6g", "-d models/tinystories-draft --prompts " OUT_DIR "/prompts.txt -n 64 --repeats 2 --temp 0", SWEEP, false},
    {"moge-t0.8", "build/standins/tinystories-moge-1.6g", "-d models/tinystories-draft --prompts " OUT_DIR "/prompts.txt -n 64 --repeats 2 --temp 0.8",
     "none,chain:3,chain:4,tree:8,tree:16,chain,tree", false},
    {"dense", "build/standins/stories260K-1.7g", "-d models/tinystories-draft --prompts " OUT_DIR "/prompts.txt -n 64 --repeats 2 --temp 0", SWEEP, false},
};

static const char *const prompts =
    "Once upon a time, there was a little girl named Lily.\n"
    "Tom had a red ball. One day,\n"
    "The sun was shining and the birds were singing.\n"
    "Sam and his mom went to the park.\n";

static bool wanted(const char *name, int argc, char **argv) {
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (!strcmp(argv[i], name)) return true;
        return false;
    }
    const char *only = getenv("MOGE_BENCH_SPEC");
    if (!only || !*only) return true;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, name, n)) return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static cJSON *read_json(const char *path) {
    char *text = slurp_text(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* The summary line of one case from its JSON. */
static void summarize(const bench_case *c, const cJSON *root) {
    const cJSON *modes = cJSON_GetObjectItem(root, "modes"), *m;
    double plain = 0, tree = 0, chain = 0, best = 0, pred_tree = 0;
    const char *best_name = "-";
    bool identical = true;
    cJSON_ArrayForEach(m, modes) {
        const cJSON *name = cJSON_GetObjectItem(m, "mode"), *same = cJSON_GetObjectItem(m, "identical");
        if (!cJSON_IsString(name)) continue;
        const char *n = name->valuestring;
        double tps = num(m, "tokens_per_s");
        if (cJSON_IsFalse(same)) identical = false;
        if (!strcmp(n, "none")) plain = tps;
        else if (!strcmp(n, "tree")) tree = tps, pred_tree = num(m, "predicted_speedup");
        else if (!strcmp(n, "chain")) chain = tps;
        else if (tps > best) best = tps, best_name = n;
    }
    if (plain <= 0) return;
    printf("%s: plain %.1f tok/s; planner tree %.2fx (predicted %.2fx)", c->name, plain, tree / plain, pred_tree);
    if (chain > 0) printf(", planner chain %.2fx", chain / plain);
    if (best > 0) {
        double mine = tree > chain ? tree : chain;
        printf("; best fixed %s %.2fx; planner %.0f%% of it", best_name, best / plain, 100 * mine / best);
    }
    printf("; text %s\n\n", c->busy || strstr(c->args, "--temp 0.8") ? "not compared (sampling or load)" : identical ? "identical" : "DIFFERS");
}

/* A child that spins on one core until killed. */
static pid_t busy_loop(void) {
    pid_t pid = fork();
    if (pid == 0) {
        volatile unsigned long x = 0;
        for (;;) x++;
    }
    return pid;
}

int main(int argc, char **argv) {
    mkdir("build", 0755);
    mkdir(OUT_DIR, 0755);
    FILE *f = fopen(OUT_DIR "/prompts.txt", "w");
    if (!f || fputs(prompts, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "bench_speculation: cannot write " OUT_DIR "/prompts.txt\n");
        return 1;
    }
    printf("== speculative decoding: the planner against plain decoding and fixed trees (moge bench, interleaved repeats) ==\n\n");
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bench_case *c = &cases[i];
        if (!wanted(c->name, argc, argv)) continue;
        char cfg[512];
        snprintf(cfg, sizeof cfg, "%s/config.json", c->model);
        if (access(cfg, R_OK) != 0) {
            printf("%s: %s is missing (make standins makes the stand-ins)\n\n", c->name, c->model);
            failed = 1;
            continue;
        }
        char json[256], cmd[1024];
        snprintf(json, sizeof json, OUT_DIR "/%s.json", c->name);
        snprintf(cmd, sizeof cmd, MOGE " bench -m %s %s --modes %s --json %s 2>" OUT_DIR "/%s.err", c->model, c->args, c->modes, json, c->name);
        printf("[%s]%s %s\n", c->name, c->busy ? " (a busy loop on one core)" : "", cmd);
        fflush(stdout);
        pid_t busy = c->busy ? busy_loop() : 0;
        int rc = system(cmd);
        if (busy > 0) {
            kill(busy, SIGKILL);
            waitpid(busy, NULL, 0);
        }
        cJSON *root = rc == 0 ? read_json(json) : NULL;
        if (!root) {
            printf("%s: moge bench failed (exit %d): see " OUT_DIR "/%s.err\n\n", c->name, rc, c->name);
            failed = 1;
            continue;
        }
        summarize(c, root);
        cJSON_Delete(root);
    }
    return failed;
}
