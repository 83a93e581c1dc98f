/*
 * cmd_pull.c — `moge pull OWNER/NAME[@REV]`: download a model repository from a Hugging Face
 * compatible hub into the cache (hub/download.h), print the local directory on stdout.
 * Progress goes to stderr: a redrawn bar per file when stderr is a terminal, otherwise one line
 * per finished file. Exit status: 0 done, 1 the pull failed, 2 bad usage.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"
#include "moge_hub.h"
#include "moge.h"

static void usage(FILE *f) {
    fputs("usage: moge pull OWNER/NAME[@REVISION] [options]\n"
          "\n"
          "Downloads a model (config, tokenizer and safetensors files) from a Hugging Face compatible\n"
          "hub into the cache, resuming partial downloads and checking SHA-256 sums, then prints the\n"
          "local directory. Afterwards `moge run -m OWNER/NAME` finds the model without the network.\n"
          "\n"
          "  --endpoint URL   hub URL (default: $MOGE_HF_ENDPOINT, else https://huggingface.co)\n"
          "  --cache DIR      cache directory (default: $MOGE_CACHE, else ~/.cache/moge)\n"
          "  --retries N      attempts after a network failure, per request (default 3)\n"
          "\n"
          "A private or gated repository needs a token: set HF_TOKEN.\n",
          f);
}

typedef struct {
    bool tty;
    char file[256];       /* the file being reported */
    bool first_call;      /* no call for `file` yet */
    int64_t start_done;   /* bytes present when its transfer started */
    double t_start, t_draw;
    int width;            /* length of the last drawn line, to blank it */
} progress_state;

static void on_progress(const char *file, int64_t done, int64_t total, void *user) {
    progress_state *ps = user;
    double t = clock_now();
    if (strcmp(file, ps->file) != 0) {
        snprintf(ps->file, sizeof ps->file, "%s", file);
        ps->first_call = true;
    }
    bool first = ps->first_call;
    ps->first_call = false;
    bool finished = done == total;
    char a[32], b[32];
    if (first || done < ps->start_done) { /* a new file, or a retry that started over */
        ps->start_done = done;
        ps->t_start = t;
        ps->t_draw = 0;
        if (first && done > 0 && !finished) /* a partial download from before */
            fprintf(stderr, "  %-40s resuming at %s of %s\n", file, cli_human_bytes(done, a, sizeof a),
                    total >= 0 ? cli_human_bytes(total, b, sizeof b) : "?");
    }
    double dt = t - ps->t_start;
    double mbps = dt > 0 ? (done - ps->start_done) / 1e6 / dt : 0;
    if (finished) {
        if (ps->tty) fprintf(stderr, "\r%*s\r", ps->width, "");
        if (first) fprintf(stderr, "  %-40s %10s  already downloaded\n", file, cli_human_bytes(done, a, sizeof a));
        else fprintf(stderr, "  %-40s %10s  %7.1f MB/s\n", file, cli_human_bytes(done, a, sizeof a), mbps);
        ps->width = 0;
        return;
    }
    if (!ps->tty || t - ps->t_draw < 0.1) return;
    ps->t_draw = t;
    char line[512];
    if (total > 0) {
        int pct = (int)(100.0 * done / total);
        char bar[31];
        int fill = pct * 30 / 100;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        ps->width = snprintf(line, sizeof line, "  %-40s [%s] %3d%% %10s of %-10s %7.1f MB/s", file, bar, pct,
                             cli_human_bytes(done, a, sizeof a), cli_human_bytes(total, b, sizeof b), mbps);
    } else {
        ps->width = snprintf(line, sizeof line, "  %-40s %10s %7.1f MB/s", file, cli_human_bytes(done, a, sizeof a), mbps);
    }
    fprintf(stderr, "\r%s", line);
    fflush(stderr);
}

/* The file's line was printed by on_progress (called first, with done == total). */
static void on_unverified(const char *file, bool size_checked, void *user) {
    (void)user;
    fprintf(stderr, "moge pull: warning: %s not verified: the hub gave no SHA-256 or git hash for it%s\n", file,
            size_checked ? " (its size was checked)" : ", nor its size");
}

int cmd_pull(int argc, char **argv) {
    static const char *C = "pull";
    const char *repo = NULL;
    moge_pull_params p = moge_pull_default_params();
    const cli_flag flags[] = {{NULL, "--endpoint", CLI_ARG_STR, &p.endpoint, 0, 0},
                              {NULL, "--cache", CLI_ARG_STR, &p.cache_dir, 0, 0},
                              {NULL, "--retries", CLI_ARG_INT, &p.max_retries, 0, 100}};
    int n_pos, rc = cli_parse_flags(C, flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, &repo, 1, &n_pos, usage);
    if (rc >= 0) return rc;
    if (!repo) {
        fprintf(stderr, "moge pull: OWNER/NAME is required (e.g. moge pull Qwen/Qwen2.5-0.5B-Instruct)\n");
        return 2;
    }
    progress_state ps = {.tty = isatty(2) == 1};
    p.progress = on_progress;
    p.unverified = on_unverified;
    p.progress_user = &ps;
    p.unverified_user = &ps;
    char dir[4096], err[2048];
    moge_status st = moge_pull(repo, &p, dir, sizeof dir, err, sizeof err);
    if (ps.tty && ps.width) fprintf(stderr, "\r%*s\r", ps.width, "");
    if (st != MOGE_OK) {
        fprintf(stderr, "moge pull: %s\n", err[0] ? err : moge_status_str(st));
        return st == MOGE_ERR_ARG ? 2 : 1;
    }
    printf("%s\n", dir);
    return 0;
}
