/*
 * moge_hub.h — the hub module of moge: download models from a Hugging Face compatible hub into a
 * local cache (libcurl, SHA-256), find them there by name, list and remove them. A separate
 * library (libmoge-hub, pkg-config moge-hub) so that a program that only loads local files
 * links neither libcurl nor OpenSSL: libmoge is the inference library alone.
 */
#ifndef MOGE_HUB_H
#define MOGE_HUB_H

#include "moge.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Model download (hub/download.c)                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Progress of one file: done bytes of total (total is -1 when the hub gave no size). Called when
 * a transfer (or a retry) starts, often during it (keep it cheap), and exactly once with
 * done == total, when the file is complete and checked (for a file already in the cache, that is
 * the only call). `file` is the repository file name, valid during the call. Called from the
 * thread that called moge_pull. */
typedef void (*moge_pull_progress_fn)(const char *file, int64_t done, int64_t total, void *progress_user);

/* A file that could not be verified: the hub gave no hash of it (neither in its listing nor in
 * the X-Linked-Etag / ETag headers of the file), so only its size was checked (size_checked), or,
 * without a size either (no listing size, X-Linked-Size or Content-Length), nothing was: it is
 * fetched whole on every pull. Called once per such file, after it is in place. */
typedef void (*moge_pull_unverified_fn)(const char *file, bool size_checked, void *unverified_user);

typedef struct {
    const char *endpoint;           /* hub URL; NULL = $MOGE_HF_ENDPOINT, else https://huggingface.co */
    const char *token;              /* bearer token; NULL = $HF_TOKEN; "" = none */
    const char *cache_dir;          /* NULL = $MOGE_CACHE, else $HOME/.cache/moge */
    moge_pull_progress_fn progress; /* may be NULL */
    void *progress_user;            /* passed to progress */
    int max_retries;                /* extra attempts per request after a network failure; default 3 */
    moge_pull_unverified_fn unverified; /* may be NULL */
    void *unverified_user;          /* passed to unverified */
} moge_pull_params;

MOGE_API moge_pull_params moge_pull_default_params(void);

/* Downloads repository `repo` ("OWNER/NAME" or "OWNER/NAME@REVISION"; default revision "main")
 * into the cache and writes the snapshot directory (CACHE/models/OWNER/NAME/COMMIT) to dir_out
 * (dir_cap bytes, NUL-terminated). p may be NULL for the defaults. */
MOGE_API moge_status moge_pull(const char *repo, const moge_pull_params *p, char *dir_out, size_t dir_cap,
                      char *err, size_t err_size);

/* Finds a model: when `name` is an existing directory (or GGUF file), writes it unchanged to dir_out; else when
 * it is OWNER/NAME[@REVISION] pulled completely into the cache ($MOGE_CACHE or ~/.cache/moge),
 * writes its snapshot directory. Never touches the network. Otherwise MOGE_ERR_IO with
 * "NAME: not a directory and not in the cache (CACHE); run moge pull OWNER/NAME". */
MOGE_API moge_status moge_resolve_model(const char *name, char *dir_out, size_t dir_cap, char *err, size_t err_size);

/* The download cache (hub/cache.c): one entry per repository moge_pull stored there. */
typedef struct {
    char repo[256];          /* OWNER/NAME */
    char revisions[512];     /* "main@0123456789ab, v1@..." (a revision and the start of its commit) */
    char path[4096];         /* the repository's folder in the cache */
    int64_t bytes;           /* on disk, every snapshot and partial download */
    int32_t partial_files;   /* downloads that did not finish (a later pull resumes them) */
} moge_cache_entry;
typedef void (*moge_cache_list_fn)(const moge_cache_entry *entry, void *cb_user);

/* Calls fn for each repository in the cache ($MOGE_CACHE, else ~/.cache/moge), in directory
 * order; an empty or absent cache is MOGE_OK with no call. */
MOGE_API moge_status moge_cache_list(moge_cache_list_fn cb, void *cb_user, char *err, size_t err_size);
/* Deletes OWNER/NAME (every revision) from the cache; *bytes_freed (may be NULL) what it took.
 * MOGE_ERR_ARG for a malformed name, MOGE_ERR_IO when it is not in the cache. */
MOGE_API moge_status moge_cache_remove(const char *repo, int64_t *bytes_freed, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* MOGE_HUB_H */
