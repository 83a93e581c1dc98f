/*
 * cache.c — what `moge pull` left in the download cache: list the repositories, remove one.
 * Layout (hub/download.c): CACHE/models/OWNER/NAME/refs/REV holds a commit id, and
 * CACHE/models/OWNER/NAME/COMMIT/ that commit's files (partial ones end in ".part").
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moge.h"
#include "moge_hub.h"
#include "base/errors.h"
#include "base/fileio.h"
#include "hub/download.h"

#define CACHE_PATH_CAP 4096

static bool visible_dir(const char *parent, const struct dirent *d) {
    if (d->d_name[0] == '.') return false;
    char path[CACHE_PATH_CAP];
    struct stat sb;
    return snprintf(path, sizeof path, "%s/%s", parent, d->d_name) < (int)sizeof path && lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Bytes on disk under path (symbolic links not followed) and the partial downloads there. */
static void dir_usage(const char *path, int64_t *bytes, int32_t *partial, int depth) {
    DIR *d = depth < 16 ? opendir(path) : NULL;
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[CACHE_PATH_CAP];
        struct stat sb;
        if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child || lstat(child, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) dir_usage(child, bytes, partial, depth + 1);
        else if (S_ISREG(sb.st_mode)) {
            *bytes += (int64_t)sb.st_blocks * 512; /* what the file takes on disk */
            size_t l = strlen(e->d_name);
            *partial += l > 5 && !strcmp(e->d_name + l - 5, ".part");
        }
    }
    closedir(d);
}

/* "main -> 0123abc..., v1 -> ..." from refs/ (revision names as stored, %2F for '/'). */
static void read_refs(const char *repo_dir, char *out, size_t cap) {
    char refs[CACHE_PATH_CAP];
    out[0] = 0;
    if (snprintf(refs, sizeof refs, "%s/refs", repo_dir) >= (int)sizeof refs) return;
    DIR *d = opendir(refs);
    if (!d) return;
    size_t k = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[CACHE_PATH_CAP + 256], commit[128] = "";
        snprintf(path, sizeof path, "%s/%s", refs, e->d_name);
        file_read_line(path, commit, sizeof commit);
        int w = snprintf(out + k, cap - k, "%s%s@%.12s", k ? ", " : "", e->d_name, commit);
        if (w < 0 || (size_t)w >= cap - k) break;
        k += (size_t)w;
    }
    closedir(d);
}

moge_status moge_cache_list(moge_cache_list_fn cb, void *cb_user, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!cb) return set_err(err, err_size, MOGE_ERR_ARG, "moge_cache_list: cb is NULL");
    char cache[CACHE_PATH_CAP], models[CACHE_PATH_CAP + 16];
    moge_status st = file_cache_root(NULL, cache, sizeof cache, err, err_size);
    if (st != MOGE_OK) return st;
    snprintf(models, sizeof models, "%s/models", cache);
    DIR *owners = opendir(models);
    if (!owners) {
        if (errno == ENOENT) return MOGE_OK; /* nothing pulled yet */
        return set_err(err, err_size, MOGE_ERR_IO, "%s: %s", models, strerror(errno));
    }
    for (struct dirent *o; (o = readdir(owners));) {
        if (!visible_dir(models, o)) continue;
        char owner_dir[CACHE_PATH_CAP + 16 + 256];
        snprintf(owner_dir, sizeof owner_dir, "%s/%s", models, o->d_name);
        DIR *names = opendir(owner_dir);
        if (!names) continue;
        for (struct dirent *nm; (nm = readdir(names));) {
            if (!visible_dir(owner_dir, nm)) continue;
            moge_cache_entry e;
            memset(&e, 0, sizeof e);
            snprintf(e.repo, sizeof e.repo, "%.127s/%.127s", o->d_name, nm->d_name);
            if (snprintf(e.path, sizeof e.path, "%s/%s", owner_dir, nm->d_name) >= (int)sizeof e.path) continue;
            read_refs(e.path, e.revisions, sizeof e.revisions);
            dir_usage(e.path, &e.bytes, &e.partial_files, 0);
            cb(&e, cb_user);
        }
        closedir(names);
    }
    closedir(owners);
    return MOGE_OK;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

moge_status moge_cache_remove(const char *repo, int64_t *bytes_freed, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (bytes_freed) *bytes_freed = 0;
    const char *slash = repo ? strchr(repo, '/') : NULL;
    if (!slash || !valid_repo_part(repo, (size_t)(slash - repo)) || !valid_repo_part(slash + 1, strlen(slash + 1)))
        return set_err(err, err_size, MOGE_ERR_ARG, "\"%s\": expected OWNER/NAME as moge list shows it (names use A-Z a-z 0-9 _ - .)",
                       repo ? repo : "(null)");
    char cache[CACHE_PATH_CAP], path[CACHE_PATH_CAP + 300];
    moge_status st = file_cache_root(NULL, cache, sizeof cache, err, err_size);
    if (st != MOGE_OK) return st;
    snprintf(path, sizeof path, "%s/models/%s", cache, repo);
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return set_err(err, err_size, MOGE_ERR_IO, "%s is not in the cache (%s); moge list shows what is", repo, cache);
    int64_t bytes = 0;
    int32_t partial = 0;
    dir_usage(path, &bytes, &partial, 0);
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return set_err(err, err_size, MOGE_ERR_IO, "%s: cannot remove everything: %s", path, strerror(errno));
    if (bytes_freed) *bytes_freed = bytes;
    /* the owner's folder goes too when this was its last repository */
    char *cut = strrchr(path, '/');
    *cut = 0;
    rmdir(path);
    return MOGE_OK;
}
