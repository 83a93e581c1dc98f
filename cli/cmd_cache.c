/*
 * cmd_cache.c — `moge list` and `moge rm OWNER/NAME`: what `moge pull` left in the download cache
 * (hub/cache.c). Exit status: 0 done, 1 the cache could not be read or the model is not in
 * it, 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"
#include "moge_hub.h"

static void on_entry(const moge_cache_entry *e, void *user) {
    int *n = user;
    char size[32];
    if ((*n)++ == 0) printf("%-40s %10s  %-28s %s\n", "NAME", "SIZE", "REVISIONS", "PATH");
    printf("%-40s %10s  %-28s %s%s\n", e->repo, cli_human_bytes(e->bytes, size, sizeof size), e->revisions[0] ? e->revisions : "-",
           e->path, e->partial_files ? "  (partial: moge pull resumes it)" : "");
}

static void list_usage(FILE *f) {
    fputs("usage: moge list\n\nLists the models `moge pull` downloaded into the cache ($MOGE_CACHE, else ~/.cache/moge):\n"
          "name, size on disk, revisions (with the start of their commit) and folder. `moge rm OWNER/NAME` removes one.\n", f);
}

static void rm_usage(FILE *f) {
    fputs("usage: moge rm OWNER/NAME...\n\nRemoves models (every revision) from the download cache; moge list shows them.\n", f);
}

int cmd_list(int argc, char **argv) {
    const char *pos[1];
    int n_pos, rc = cli_parse_flags("list", NULL, 0, argc, argv, pos, 0, &n_pos, list_usage);
    if (rc >= 0) return rc;
    char err[1024];
    int n = 0;
    if (moge_cache_list(on_entry, &n, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge list: %s\n", err);
        return 1;
    }
    if (n == 0) {
        const char *cache = getenv("MOGE_CACHE");
        fprintf(stderr, "moge list: no models in the cache (%s); moge pull OWNER/NAME downloads one\n", cache && *cache ? cache : "~/.cache/moge");
    }
    return 0;
}

int cmd_rm(int argc, char **argv) {
    const char *names[64];
    int n_names, rc = cli_parse_flags("rm", NULL, 0, argc, argv, names, 64, &n_names, rm_usage);
    if (rc >= 0) return rc;
    if (n_names == 0) {
        fprintf(stderr, "moge rm: give the model to remove: moge rm OWNER/NAME (moge list shows them)\n");
        return 2;
    }
    rc = 0;
    for (int i = 0; i < n_names; i++) {
        char err[1024], size[32];
        int64_t freed = 0;
        moge_status st = moge_cache_remove(names[i], &freed, err, sizeof err);
        if (st != MOGE_OK) {
            fprintf(stderr, "moge rm: %s\n", err);
            rc = st == MOGE_ERR_ARG ? 2 : 1;
            continue;
        }
        printf("removed %s (%s)\n", names[i], cli_human_bytes(freed, size, sizeof size));
    }
    return rc;
}
