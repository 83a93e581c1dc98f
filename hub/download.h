/*
 * download.h — `moge pull`: download a model repository from a Hugging Face compatible hub
 * into a local cache, and find cached models by name (hub/download.c, libcurl + libcrypto).
 *
 * Hub protocol (what the public hub and its mirrors speak):
 *   GET {endpoint}/api/models/{owner}/{name}[/revision/{rev}]?blobs=true
 *       -> {"sha": COMMIT, "siblings": [{"rfilename": F, "size": N, "lfs": {"sha256": H, "size": N}}]}
 *   GET {endpoint}/{owner}/{name}/resolve/{COMMIT}/{F}   (redirects are followed; Range honoured)
 *   HEAD of the same URL, only for a file the listing gives no size or no hash for: the hub's
 *       answer (its 302 to the CDN for an LFS file) carries X-Linked-Size and X-Linked-Etag (the
 *       SHA-256); a file kept in git itself is answered directly, with Content-Length and an ETag
 *       that is its git blob id (as the listing's "blobId" is)
 * With a token, every request carries "Authorization: Bearer TOKEN" (libcurl drops it when a
 * redirect leaves the endpoint's host, so it never reaches a CDN).
 *
 * Files downloaded (only those at the repository root, nothing else):
 *   config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
 *   special_tokens_map.json, model.safetensors.index.json, README.md and LICENSE* when under
 *   1 MiB, and the weights: the shards the index's weight_map names when the index exists,
 *   else model.safetensors when it exists, else every root *.safetensors.
 *   A repository without config.json or without any .safetensors file is refused.
 *
 * Cache layout ($MOGE_CACHE, default ~/.cache/moge):
 *   CACHE/models/OWNER/NAME/COMMIT/FILE       a snapshot: the files of one commit
 *   CACHE/models/OWNER/NAME/COMMIT/FILE.part  a partial download, resumed by the next pull
 *   CACHE/models/OWNER/NAME/refs/REV          one line: the COMMIT that revision REV ("main",
 *                                             a branch, tag or commit; '/' written as "%2F")
 *                                             resolved to when it was last pulled completely
 * A file gets its final name only after its size and its hash (the SHA-256 of an LFS file, the git
 * blob id of another) matched what the hub says (the listing, else the HEAD headers): it is
 * written to FILE.part, fsync'ed and renamed. A refs file is written (atomically) only after every
 * file of the snapshot is in place, so a model is "in the cache" exactly when a pull of it
 * completed. A file already present with the expected size is not downloaded again; without a
 * size from the hub it is downloaded again (a truncated copy is never taken as complete). A file
 * the hub gives no hash for is reported through moge_pull_params.unverified. A FILE.part is locked
 * (flock) while it is written; a second pull of the same file at the same time fails instead of
 * corrupting it.
 *
 * Errors (message in err; nothing is printed):
 *   MOGE_ERR_ARG     a malformed repository name or revision, NULL arguments
 *   MOGE_ERR_IO      network failures (naming the URL), HTTP errors: 401/403 (HF_TOKEN missing
 *                    or not accepted), 404 (names the repository or revision), others (status and
 *                    URL); disk errors (naming the path); a name not found by moge_resolve_model
 *   MOGE_ERR_FORMAT  a malformed hub answer; a downloaded file whose size or hash differs from
 *                    the hub's (names the file, expected and actual; the bad file is deleted)
 *   MOGE_ERR_UNSUPPORTED  the repository has no config.json or no .safetensors weights
 *   MOGE_ERR_BUFFER  dir_cap is too small for the directory
 * Network failures (connection, cut-off transfer, timeouts, HTTP 429 and 5xx) are retried
 * max_retries times per request, resuming from the bytes already received.
 */
#ifndef MOGE_DOWNLOAD_H
#define MOGE_DOWNLOAD_H

#include <stddef.h>
#include <stdint.h>
#include "moge.h"
#include "moge_hub.h"

/* A hub owner or repository name (huggingface_hub's rule): 1..96 of [A-Za-z0-9_.-], starting and
 * ending with [A-Za-z0-9_], without "--" or "..". Safe as a path component. */
bool valid_repo_part(const char *s, size_t len);

#endif
