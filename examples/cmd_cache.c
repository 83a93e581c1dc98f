/*
 * cmd_cache.c — `moge list` and `moge rm OWNER/NAME`: what `moge pull` left in the download cache
 * (runtime/cache.c). Exit status: 0 done, 1 the cache could not be read or the model is not in
 * it, 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/cli.h"
#include "examples/commands.h"
#include "moge.h"

static void on_entry(const moge_cache_entry *e, void *user) {
    int *n = user;
    char size[32];
    if ((*n)++ == 0) printf("%-40s %10s  %-28s %s\n", "NAME", "SIZE", "REVISIONS", "PATH");
    printf("%-40s %10s  %-28s %s%s\n", e->repo, cli_human_bytes(e->bytes, size, sizeof size), e->revisions[0] ? e->revisions : "-",
           e->path, e->partial_files ? "  (partial: moge pull resumes it)" : "");
}

int cmd_list(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: moge list\n\nLists the models `moge pull` downloaded into the cache ($MOGE_CACHE, else ~/.cache/moge):\n"
                 "name, size on disk, revisions (with the start of their commit) and folder. `moge rm OWNER/NAME` removes one.");
            return 0;
        }
        fprintf(stderr, "moge list: unknown option \"%s\" (see moge list --help)\n", argv[i]);
        return 2;
    }
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
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: moge rm OWNER/NAME...\n\nRemoves models (every revision) from the download cache; moge list shows them.");
            return 0;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "moge rm: unknown option \"%s\" (see moge rm --help)\n", argv[i]);
            return 2;
        }
        n_names++;
    }
    if (n_names == 0) {
        fprintf(stderr, "moge rm: give the model to remove: moge rm OWNER/NAME (moge list shows them)\n");
        return 2;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        char err[1024], size[32];
        int64_t freed = 0;
        moge_status st = moge_cache_remove(argv[i], &freed, err, sizeof err);
        if (st != MOGE_OK) {
            fprintf(stderr, "moge rm: %s\n", err);
            rc = st == MOGE_ERR_ARG ? 2 : 1;
            continue;
        }
        printf("removed %s (%s)\n", argv[i], cli_human_bytes(freed, size, sizeof size));
    }
    return rc;
}
