/*
 * download.c — `moge pull` and model name resolution (contract, cache layout and errors in
 * hub/download.h).
 *
 * Shape of a pull: parse OWNER/NAME[@REV] -> list the repository through the hub's API (one
 * JSON answer: commit sha and files with sizes and LFS sha256) -> pick the files a model needs
 * -> download each to FILE.part (resuming with "Range: bytes=N-" when a part exists), check its
 * size and SHA-256, fsync, rename into place -> write refs/REV. Every request goes through
 * fetch(), which retries network failures; every failure leaves a message naming the URL or
 * path at fault. All libcurl and libcrypto state is per call; nothing is printed.
 */
#include <cJSON.h>
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hub/download.h"
#include "base/fileio.h"
#include "base/errors.h"
#include "runtime/gguf.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define SMALL_DOC_MAX (1 << 20)      /* README / LICENSE files larger than this are skipped */
#define API_ANSWER_MAX (64 << 20)    /* the most bytes of a JSON answer kept in memory */
#define PATH_CAP 4096

/* ------------------------------------------------------------------------------------------ */
/* Names and paths                                                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char owner[97], name[97];
    char rev[256];   /* "main" when none was given */
    bool rev_given;
} repo_spec;

static bool name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static bool word_char(char c) { return name_char(c) && c != '-' && c != '.'; }

/* (download.h) A hub owner or repository name (huggingface_hub's rule): 1..96 of [A-Za-z0-9_.-], starting and
 * ending with [A-Za-z0-9_], without "--" or "..". Safe as a path component. */
bool valid_repo_part(const char *s, size_t len) {
    if (len == 0 || len > 96 || !word_char(s[0]) || !word_char(s[len - 1])) return false;
    for (size_t i = 0; i < len; i++) {
        if (!name_char(s[i])) return false;
        if (i > 0 && (s[i] == '-' || s[i] == '.') && s[i - 1] == s[i]) return false;
    }
    return true;
}

/* A revision: a branch, tag or commit; may contain '/' (refs/pr/1) but no "..", "//", leading
 * '/', '-' or '.', trailing '/'. */
static bool valid_revision(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > 255 || s[0] == '/' || s[0] == '-' || s[0] == '.' || s[len - 1] == '/') return false;
    for (size_t i = 0; i < len; i++) {
        if (!name_char(s[i]) && s[i] != '/') return false;
        if (i > 0 && ((s[i] == '.' && s[i - 1] == '.') || (s[i] == '/' && s[i - 1] == '/'))) return false;
    }
    return true;
}

/* A commit as a path component: 1..128 of [A-Za-z0-9_.-], not starting with '.'. */
static bool valid_commit(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > 128 || s[0] == '.') return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char(s[i])) return false;
    return true;
}

static moge_status parse_repo(const char *s, repo_spec *r, char *err, size_t n) {
    static const char *want = "expected OWNER/NAME or OWNER/NAME@REVISION";
    memset(r, 0, sizeof *r);
    const char *slash = strchr(s, '/');
    const char *at = strchr(s, '@');
    size_t end = at ? (size_t)(at - s) : strlen(s);
    if (!slash || (size_t)(slash - s) >= end)
        return set_err(err, n, MOGE_ERR_ARG, "\"%s\": %s", s, want);
    size_t lo = (size_t)(slash - s), ln = end - lo - 1;
    if (!valid_repo_part(s, lo))
        return set_err(err, n, MOGE_ERR_ARG, "\"%s\": invalid owner \"%.*s\" (%s; names use A-Z a-z 0-9 _ - .)",
                       s, (int)lo, s, want);
    if (!valid_repo_part(slash + 1, ln))
        return set_err(err, n, MOGE_ERR_ARG, "\"%s\": invalid name \"%.*s\" (%s; names use A-Z a-z 0-9 _ - .)",
                       s, (int)ln, slash + 1, want);
    memcpy(r->owner, s, lo);
    memcpy(r->name, slash + 1, ln);
    if (at) {
        if (!valid_revision(at + 1))
            return set_err(err, n, MOGE_ERR_ARG, "\"%s\": invalid revision \"%s\"", s, at + 1);
        snprintf(r->rev, sizeof r->rev, "%s", at + 1);
        r->rev_given = true;
    } else {
        snprintf(r->rev, sizeof r->rev, "main");
    }
    return MOGE_OK;
}

/* snprintf into a path buffer; false when it did not fit. */
__attribute__((format(printf, 3, 4))) static bool path_fmt(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < cap;
}

/* A revision as a file name under refs/: '/' becomes "%2F" (revisions never contain '%'). */
static void ref_file_name(const char *rev, char *out, size_t cap) {
    size_t k = 0;
    for (const char *p = rev; *p && k + 4 < cap; p++) {
        if (*p == '/') { memcpy(out + k, "%2F", 3); k += 3; }
        else out[k++] = *p;
    }
    out[k] = 0;
}

static moge_status copy_out(const char *dir, char *out, size_t cap, char *err, size_t n) {
    size_t len = strlen(dir);
    if (len + 1 > cap)
        return set_err(err, n, MOGE_ERR_BUFFER, "the directory path %s needs %zu bytes, the buffer has %zu", dir, len + 1, cap);
    memcpy(out, dir, len + 1);
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Pull state                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char *name;         /* file name at the repository root */
    int64_t size;       /* bytes; -1 = the hub did not say */
    char sha256[65];    /* lowercase hex; "" = the hub did not say */
    char git_sha1[41];  /* the git blob id of a file stored in git itself (not LFS), lowercase hex; "" = unknown */
    bool wanted;
} hub_file;

typedef struct {
    repo_spec repo;
    char repo_id[200];            /* OWNER/NAME */
    char endpoint[2048];          /* without trailing '/' */
    char cache[PATH_CAP];
    char commit[256];             /* validated by valid_commit: at most 128 characters */
    char snap[PATH_CAP];          /* CACHE/models/OWNER/NAME/COMMIT */
    int max_retries;
    moge_pull_progress_fn progress;
    moge_pull_unverified_fn unverified;
    void *progress_user, *unverified_user;
    CURL *curl;
    struct curl_slist *headers;   /* Authorization, when there is a token */
    char curl_err[CURL_ERROR_SIZE];
    hub_file *files;
    size_t n_files;
    char *err;
    size_t err_size;
} pull_state;

static void pull_state_free(pull_state *ps) {
    if (!ps) return;
    if (ps->curl) curl_easy_cleanup(ps->curl);
    curl_slist_free_all(ps->headers);
    for (size_t i = 0; i < ps->n_files; i++) free(ps->files[i].name);
    free(ps->files);
    free(ps);
}

moge_pull_params moge_pull_default_params(void) {
    return (moge_pull_params){.max_retries = 3};
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP: one request with retries, into memory or onto the end of a file                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    pull_state *ps;
    /* memory sink (fd < 0) */
    char *mem;
    size_t mem_len, mem_cap;
    bool mem_too_big;
    /* file sink (fd >= 0) */
    int fd;
    const char *path;    /* the .part path, for messages */
    const char *file;    /* the repository file name, for progress */
    int64_t total;       /* expected size, -1 = unknown */
    int64_t offset;      /* bytes in the file before this response's body */
    int64_t received;    /* body bytes written by this attempt */
    int write_errno;     /* set when a write failed */
    bool bad_range;      /* a 206 whose Content-Range does not start at offset */
    bool body_started;
    bool head;           /* a HEAD request (probe): no body */
    /* what the hub says of the file (kept across redirects: it says it on its own 302) */
    int64_t linked_size; /* X-Linked-Size, -1 = none */
    char linked_etag[80]; /* X-Linked-Etag (an LFS file's SHA-256), unquoted */
    char etag[80];       /* ETag of the last response, unquoted */
    int64_t content_length; /* of the last response, -1 = none */
    bool redirected;     /* a 3xx came before the last response */
    /* the last response's head (redirects reset it) */
    long status;
    int64_t range_start; /* Content-Range start, -1 = none */
    char error_code[128]; /* X-Error-Code (the hub's RepoNotFound, RevisionNotFound, GatedRepo, ...) */
    char errbody[512];   /* the start of a non-2xx body */
    size_t errbody_len;
} xfer;

/* Compares header line `line` (length len) with "NAME:"; returns the value (trimmed into out). */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0) return false;
    const char *v = line + nl + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
    size_t k = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
    memcpy(out, v, k);
    out[k] = 0;
    return true;
}

/* A byte count in a header: digits only, below 2^53; -1 otherwise. */
static int64_t header_size(const char *v) {
    if (!*v || strlen(v) > 15) return -1;
    for (const char *p = v; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    return (int64_t)strtoll(v, NULL, 10);
}

/* An entity tag without its weak prefix and quotes, lowercased. */
static void unquote_etag(const char *v, char *out, size_t cap) {
    if (!strncmp(v, "W/", 2)) v += 2;
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') v++, len -= 2;
    size_t k = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < k; i++) out[i] = (char)tolower((unsigned char)v[i]);
    out[k] = 0;
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t len = size * nmemb;
    char val[128];
    if (len > 5 && !strncmp(buf, "HTTP/", 5)) { /* a new response (after a redirect or 100) */
        if (x->status >= 300 && x->status < 400) x->redirected = true;
        x->status = 0;
        x->range_start = -1;
        x->error_code[0] = 0;
        x->etag[0] = 0;
        x->content_length = -1;
        const char *sp = memchr(buf, ' ', len);
        if (sp) x->status = strtol(sp + 1, NULL, 10);
    } else if (header_value(buf, len, "x-error-code", val, sizeof val)) {
        snprintf(x->error_code, sizeof x->error_code, "%s", val);
    } else if (header_value(buf, len, "content-range", val, sizeof val)) {
        long long start;
        if (sscanf(val, "bytes %lld-", &start) == 1) x->range_start = start;
    } else if (header_value(buf, len, "x-linked-size", val, sizeof val)) {
        x->linked_size = header_size(val);
    } else if (header_value(buf, len, "content-length", val, sizeof val)) {
        x->content_length = header_size(val);
    } else if (header_value(buf, len, "x-linked-etag", val, sizeof val)) {
        unquote_etag(val, x->linked_etag, sizeof x->linked_etag);
    } else if (header_value(buf, len, "etag", val, sizeof val)) {
        unquote_etag(val, x->etag, sizeof x->etag);
    }
    return len;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t len = size * nmemb;
    if (x->status < 200 || x->status >= 300) { /* an error page: keep its start for the message */
        size_t room = sizeof x->errbody - 1 - x->errbody_len;
        size_t k = len < room ? len : room;
        memcpy(x->errbody + x->errbody_len, ptr, k);
        x->errbody_len += k;
        x->errbody[x->errbody_len] = 0;
        return len;
    }
    if (x->fd < 0) {
        if (x->mem_len + len + 1 > API_ANSWER_MAX) { x->mem_too_big = true; return 0; }
        if (x->mem_len + len + 1 > x->mem_cap) {
            size_t cap = x->mem_cap ? x->mem_cap : 65536;
            while (cap < x->mem_len + len + 1) cap *= 2;
            char *nb = realloc(x->mem, cap);
            if (!nb) { x->mem_too_big = true; return 0; }
            x->mem = nb;
            x->mem_cap = cap;
        }
        memcpy(x->mem + x->mem_len, ptr, len);
        x->mem_len += len;
        x->mem[x->mem_len] = 0;
        return len;
    }
    if (!x->body_started) {
        x->body_started = true;
        if (x->status == 206) {
            if (x->range_start != x->offset) { x->bad_range = true; return 0; }
        } else if (x->offset > 0) { /* the server ignored the Range header: start over */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) < 0) { x->write_errno = errno; return 0; }
            x->offset = 0;
        }
    }
    for (size_t done = 0; done < len;) {
        ssize_t k = write(x->fd, ptr + done, len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { x->write_errno = k < 0 ? errno : ENOSPC; return 0; }
        done += (size_t)k;
    }
    x->received += (int64_t)len;
    int64_t done = x->offset + x->received;
    if (x->ps->progress && done != x->total) /* done == total is reported once, after the checks */
        x->ps->progress(x->file, done, x->total, x->ps->progress_user);
    return len;
}

/* " (hub: MESSAGE)" from a JSON error body {"error": "..."}, or "". */
static void hub_message(const xfer *x, char *out, size_t cap) {
    out[0] = 0;
    cJSON *j = x->errbody_len ? cJSON_Parse(x->errbody) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsString(e) && e->valuestring[0]) snprintf(out, cap, " (hub: %.200s)", e->valuestring);
    cJSON_Delete(j);
}

/* The message for a final non-2xx answer. `file` is NULL for the API listing. */
static moge_status http_error(pull_state *ps, const xfer *x, const char *url, const char *file) {
    char hub[256];
    hub_message(x, hub, sizeof hub);
    const char *code = x->error_code, *id = ps->repo_id, *rev = ps->repo.rev;
    long s = x->status;
    char *e = ps->err;
    size_t n = ps->err_size;
    if (!strcmp(code, "GatedRepo"))
        return set_err(e, n, MOGE_ERR_IO, "%s is gated: accept its conditions on the hub, then set HF_TOKEN "
                       "to a token of that account (HTTP %ld from %s)%s", id, s, url, hub);
    if (!strcmp(code, "RepoNotFound"))
        return set_err(e, n, MOGE_ERR_IO, "repository %s not found%s (HTTP %ld from %s)%s", id,
                       s == 401 ? ", or it is private and HF_TOKEN is missing or not accepted" : "", s, url, hub);
    if (!strcmp(code, "RevisionNotFound"))
        return set_err(e, n, MOGE_ERR_IO, "revision \"%s\" not found in repository %s (HTTP %ld from %s)%s",
                       rev, id, s, url, hub);
    if (s == 401)
        return set_err(e, n, MOGE_ERR_IO, "%s%s%s: HF_TOKEN missing or not accepted (HTTP 401 from %s)%s",
                       id, file ? " " : "", file ? file : "", url, hub);
    if (s == 403)
        return set_err(e, n, MOGE_ERR_IO, "%s%s%s: access denied: HF_TOKEN missing or not accepted, or the "
                       "repository is gated (HTTP 403 from %s)%s", id, file ? " " : "", file ? file : "", url, hub);
    if (s == 404 && file)
        return set_err(e, n, MOGE_ERR_IO, "%s not found in repository %s at commit %s (HTTP 404 from %s)%s",
                       file, id, ps->commit, url, hub);
    if (s == 404 && ps->repo.rev_given)
        return set_err(e, n, MOGE_ERR_IO, "repository %s or its revision \"%s\" not found (HTTP 404 from %s)%s",
                       id, rev, url, hub);
    if (s == 404)
        return set_err(e, n, MOGE_ERR_IO, "repository %s not found (HTTP 404 from %s)%s", id, url, hub);
    return set_err(e, n, MOGE_ERR_IO, "HTTP %ld from %s%s", s, url, hub);
}

static bool retryable_curl_code(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE: case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

static void backoff(int attempt) {
    long ms = 500L << (attempt < 5 ? attempt : 5);
    if (ms > 10000) ms = 10000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* GET url into x (memory when x->fd < 0, else appended to the file x->fd, resuming from its
 * current size when x->total is known). Retries network failures, HTTP 429/5xx and transfers
 * that ended early ps->max_retries times. On failure ps->err names the URL (or the path). */
static moge_status fetch(pull_state *ps, const char *url, xfer *x, const char *file) {
    CURL *c = ps->curl;
    char *e = ps->err;
    size_t n = ps->err_size;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    char why[PATH_CAP + 512] = ""; /* why the last attempt failed, for the final message */
    for (int attempt = 0;; attempt++) {
        char range[40];
        curl_easy_setopt(c, CURLOPT_RANGE, NULL);
        x->offset = 0;
        if (x->fd >= 0) {
            off_t size = lseek(x->fd, 0, SEEK_END);
            if (size < 0) return set_err(e, n, MOGE_ERR_IO, "%s: %s", x->path, strerror(errno));
            if (size > 0 && x->total < 0) { /* unknown size: no resuming, start over */
                if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) < 0)
                    return set_err(e, n, MOGE_ERR_IO, "%s: %s", x->path, strerror(errno));
                size = 0;
            }
            x->offset = size;
            if (x->total >= 0 && size >= x->total) return MOGE_OK; /* nothing left to fetch */
            if (size > 0) {
                snprintf(range, sizeof range, "%lld-", (long long)size);
                curl_easy_setopt(c, CURLOPT_RANGE, range);
            }
        } else {
            x->mem_len = 0;
        }
        x->received = 0;
        x->write_errno = 0;
        x->bad_range = x->body_started = x->mem_too_big = false;
        x->status = 0;
        x->range_start = -1;
        x->error_code[0] = 0;
        x->errbody_len = 0;
        x->errbody[0] = 0;
        x->linked_size = x->content_length = -1;
        x->linked_etag[0] = x->etag[0] = 0;
        x->redirected = false;
        ps->curl_err[0] = 0;
        if (x->fd >= 0 && ps->progress) ps->progress(file, x->offset, x->total, ps->progress_user);

        if (x->head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        CURLcode rc = curl_easy_perform(c);
        if (x->head) curl_easy_setopt(c, CURLOPT_HTTPGET, 1L); /* back to GET for the next request */

        if (rc == CURLE_WRITE_ERROR && x->write_errno)
            return set_err(e, n, MOGE_ERR_IO, "%s: write failed: %s", x->path, strerror(x->write_errno));
        if (rc == CURLE_WRITE_ERROR && x->bad_range)
            return set_err(e, n, MOGE_ERR_FORMAT, "%s: asked for bytes %lld- but the answer starts at byte %lld",
                           url, (long long)x->offset, (long long)x->range_start);
        if (rc == CURLE_WRITE_ERROR && x->mem_too_big)
            return set_err(e, n, MOGE_ERR_FORMAT, "%s: the answer is larger than %d MiB", url, API_ANSWER_MAX >> 20);
        bool retry = true;
        if (rc != CURLE_OK) {
            snprintf(why, sizeof why, "network error fetching %s: %s", url,
                     ps->curl_err[0] ? ps->curl_err : curl_easy_strerror(rc));
            retry = retryable_curl_code(rc);
        } else if (x->status < 200 || x->status >= 300) {
            if (x->status != 429 && x->status < 500) return http_error(ps, x, url, file);
            snprintf(why, sizeof why, "HTTP %ld from %s", x->status, url);
        } else if (x->fd >= 0 && x->total >= 0 && x->offset + x->received < x->total) {
            snprintf(why, sizeof why, "network error fetching %s: the transfer ended after %lld of %lld bytes", url,
                     (long long)(x->offset + x->received), (long long)x->total);
        } else {
            return MOGE_OK;
        }
        if (!retry || attempt >= ps->max_retries) {
            char tries[48] = "", kept[PATH_CAP + 128] = "";
            if (attempt > 0) snprintf(tries, sizeof tries, " (%d attempts)", attempt + 1);
            off_t have = x->fd >= 0 ? lseek(x->fd, 0, SEEK_END) : 0;
            if (have > 0 && x->total >= 0)
                snprintf(kept, sizeof kept, "; %lld of %lld bytes kept in %s, run moge pull again to resume",
                         (long long)have, (long long)x->total, x->path);
            return set_err(e, n, MOGE_ERR_IO, "%s%s%s", why, tries, kept);
        }
        backoff(attempt);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The repository listing                                                                     */
/* ------------------------------------------------------------------------------------------ */

static bool is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'))) return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* A file name moge may write: at the repository root, not hidden, printable, not a .part. */
static bool safe_file_name(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > 200 || s[0] == '.' || ends_with(s, ".part")) return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '/' || s[i] == '\\') return false;
    return true;
}

/* The files other than weights that a model directory needs (or that are worth keeping). */
static bool wanted_support_file(const hub_file *f) {
    static const char *names[] = {"config.json", "generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json", "special_tokens_map.json",
                                  "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(f->name, names[i])) return true;
    bool doc = !strcmp(f->name, "README.md") || !strncmp(f->name, "LICENSE", 7);
    return doc && f->size >= 0 && f->size <= SMALL_DOC_MAX;
}

static hub_file *find_file(pull_state *ps, const char *name) {
    for (size_t i = 0; i < ps->n_files; i++)
        if (!strcmp(ps->files[i].name, name)) return &ps->files[i];
    return NULL;
}

static int64_t json_size(const cJSON *j) {
    return cJSON_IsNumber(j) && j->valuedouble >= 0 ? (int64_t)j->valuedouble : -1;
}

/* Reads the API answer: the commit and the root files (with sizes and LFS sha256). */
static moge_status parse_listing(pull_state *ps, const char *json, const char *url) {
    char *e = ps->err;
    size_t n = ps->err_size;
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return set_err(e, n, MOGE_ERR_FORMAT, "%s: the answer is not a JSON object", url);
    }
    moge_status st = MOGE_OK;
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(root, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(root, "siblings");
    if (cJSON_IsString(sha) && valid_commit(sha->valuestring)) {
        snprintf(ps->commit, sizeof ps->commit, "%s", sha->valuestring);
    } else if (!sha && valid_commit(ps->repo.rev)) { /* a hub that does not say: use the revision */
        snprintf(ps->commit, sizeof ps->commit, "%s", ps->repo.rev);
    } else {
        st = set_err(e, n, MOGE_ERR_FORMAT, "%s: \"sha\" is missing or not a commit id", url);
        goto done;
    }
    if (!cJSON_IsArray(sib)) {
        st = set_err(e, n, MOGE_ERR_FORMAT, "%s: \"siblings\" is missing or not an array", url);
        goto done;
    }
    ps->files = calloc((size_t)cJSON_GetArraySize(sib) + 1, sizeof *ps->files);
    if (!ps->files) { st = set_err(e, n, MOGE_ERR_NOMEM, "out of memory"); goto done; }
    const cJSON *it;
    cJSON_ArrayForEach(it, sib) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "rfilename");
        if (!cJSON_IsString(name)) {
            st = set_err(e, n, MOGE_ERR_FORMAT, "%s: a sibling without \"rfilename\"", url);
            goto done;
        }
        if (!safe_file_name(name->valuestring)) continue; /* in a folder, hidden, or odd: never needed */
        hub_file *f = &ps->files[ps->n_files];
        f->size = json_size(cJSON_GetObjectItemCaseSensitive(it, "size"));
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(it, "lfs");
        const cJSON *blob = cJSON_GetObjectItemCaseSensitive(it, "blobId");
        if (!lfs && cJSON_IsString(blob) && is_hex(blob->valuestring, 40)) /* the git hash of the file itself */
            for (int i = 0; i < 41; i++) f->git_sha1[i] = (char)tolower((unsigned char)blob->valuestring[i]);
        if (cJSON_IsObject(lfs)) {
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(lfs, "sha256");
            int64_t sz = json_size(cJSON_GetObjectItemCaseSensitive(lfs, "size"));
            if (sz >= 0) f->size = sz;
            if (h && !(cJSON_IsString(h) && is_hex(h->valuestring, 64))) {
                st = set_err(e, n, MOGE_ERR_FORMAT, "%s: %s: \"lfs\".\"sha256\" is not 64 hex digits", url,
                             name->valuestring);
                goto done;
            }
            if (h)
                for (int i = 0; i < 65; i++) f->sha256[i] = (char)tolower((unsigned char)h->valuestring[i]);
        }
        f->name = strdup(name->valuestring);
        if (!f->name) { st = set_err(e, n, MOGE_ERR_NOMEM, "out of memory"); goto done; }
        ps->n_files++;
    }
done:
    cJSON_Delete(root);
    return st;
}

/* Marks the weights: the shards the index names, else model.safetensors, else every .safetensors. */
static moge_status select_weights(pull_state *ps) {
    char *e = ps->err;
    size_t n = ps->err_size;
    hub_file *index = find_file(ps, "model.safetensors.index.json");
    if (index) {
        char path[PATH_CAP];
        if (!path_fmt(path, sizeof path, "%s/%s", ps->snap, index->name))
            return set_err(e, n, MOGE_ERR_ARG, "%s: path too long", ps->snap);
        char *buf = NULL;
        size_t len = 0;
        moge_status rst = read_whole_file(path, &buf, &len, e, n);
        if (rst != MOGE_OK) return rst;
        cJSON *root = cJSON_ParseWithLength(buf, len);
        free(buf);
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
        moge_status st = MOGE_OK;
        if (!cJSON_IsObject(map) || !map->child)
            st = set_err(e, n, MOGE_ERR_FORMAT, "%s: \"weight_map\" is missing or empty", path);
        const cJSON *it;
        if (st == MOGE_OK) cJSON_ArrayForEach(it, map) {
            hub_file *w = cJSON_IsString(it) ? find_file(ps, it->valuestring) : NULL;
            if (!w) {
                st = set_err(e, n, MOGE_ERR_FORMAT, "%s: weight_map names %s, which repository %s does not have",
                             path, cJSON_IsString(it) ? it->valuestring : "a non-string", ps->repo_id);
                break;
            }
            w->wanted = true;
        }
        cJSON_Delete(root);
        return st;
    }
    hub_file *single = find_file(ps, "model.safetensors");
    if (single) {
        single->wanted = true;
        return MOGE_OK;
    }
    for (size_t i = 0; i < ps->n_files; i++)
        if (ends_with(ps->files[i].name, ".safetensors")) ps->files[i].wanted = true;
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* One file: download, verify, rename                                                         */
/* ------------------------------------------------------------------------------------------ */

/* The SHA-256 of the whole file fd as lowercase hex, or with git (size: the file's) its git blob
 * id: the SHA-1 of "blob SIZE\0" and the content. */
static moge_status file_digest(int fd, const char *path, bool git, int64_t size, char *hex, char *err, size_t n) {
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    moge_status st = MOGE_OK;
    if (!buf || !md || EVP_DigestInit_ex(md, git ? EVP_sha1() : EVP_sha256(), NULL) != 1) {
        st = set_err(err, n, MOGE_ERR_NOMEM, "%s: cannot set up %s", path, git ? "SHA-1" : "SHA-256");
        goto done;
    }
    if (git) {
        char head[40];
        int k = snprintf(head, sizeof head, "blob %lld", (long long)size);
        EVP_DigestUpdate(md, head, (size_t)k + 1); /* the NUL included */
    }
    for (off_t off = 0;;) {
        ssize_t k = pread(fd, buf, CHUNK, off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { st = set_err(err, n, MOGE_ERR_IO, "%s: read failed: %s", path, strerror(errno)); goto done; }
        if (k == 0) break;
        EVP_DigestUpdate(md, buf, (size_t)k);
        off += k;
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, d, &dl);
    for (unsigned i = 0; i < dl; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
done:
    EVP_MD_CTX_free(md);
    free(buf);
    return st;
}

/* What the hub says of a file the listing left without a size or a hash: a HEAD request, whose
 * X-Linked-Size / X-Linked-Etag (the size and SHA-256 of an LFS file, on the hub's redirect), or
 * else Content-Length and, unredirected, ETag (a git file's blob id), complete f. A failed probe
 * only leaves f as it was (the download reports the error). */
static void probe_file(pull_state *ps, const char *url, hub_file *f) {
    xfer x = {.ps = ps, .fd = -1, .total = -1, .head = true};
    char *saved = ps->err, none[8];
    size_t saved_size = ps->err_size;
    ps->err = none; /* the GET that follows reports failures */
    ps->err_size = sizeof none;
    moge_status st = fetch(ps, url, &x, f->name);
    ps->err = saved;
    ps->err_size = saved_size;
    free(x.mem);
    if (st != MOGE_OK) return;
    if (f->size < 0) f->size = x.linked_size >= 0 ? x.linked_size : x.content_length;
    if (!f->sha256[0] && is_hex(x.linked_etag, 64)) memcpy(f->sha256, x.linked_etag, 65);
    if (!f->sha256[0] && !f->git_sha1[0] && !x.linked_etag[0] && !x.redirected && is_hex(x.etag, 40)) memcpy(f->git_sha1, x.etag, 41);
}

/* Tells the caller that f could not be checked against a hash (and maybe not even a size). */
static void report_unverified(pull_state *ps, const hub_file *f) {
    if (!f->sha256[0] && !f->git_sha1[0] && ps->unverified) ps->unverified(f->name, f->size >= 0, ps->unverified_user);
}

static moge_status download_file(pull_state *ps, const hub_file *listed) {
    char *e = ps->err;
    size_t n = ps->err_size;
    char final[PATH_CAP], part[PATH_CAP + 8];
    hub_file info = *listed, *f = &info;
    if (!path_fmt(final, sizeof final, "%s/%s", ps->snap, f->name) || !path_fmt(part, sizeof part, "%s.part", final))
        return set_err(e, n, MOGE_ERR_ARG, "%s: path too long", ps->snap);

    char *esc = curl_easy_escape(ps->curl, f->name, 0);
    if (!esc) return set_err(e, n, MOGE_ERR_NOMEM, "out of memory");
    char url[PATH_CAP];
    bool fits = path_fmt(url, sizeof url, "%s/%s/resolve/%s/%s", ps->endpoint, ps->repo_id, ps->commit, esc);
    curl_free(esc);
    if (!fits) return set_err(e, n, MOGE_ERR_ARG, "%s: URL too long", f->name);
    if (f->size < 0 || (!f->sha256[0] && !f->git_sha1[0])) probe_file(ps, url, f);

    /* a file in place with the size the hub gives was verified when it was renamed; without a
     * size from the hub, nothing says it is whole (a truncated copy must not pass): fetched again */
    struct stat sb;
    if (f->size >= 0 && stat(final, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == f->size) {
        if (ps->progress) ps->progress(f->name, sb.st_size, sb.st_size, ps->progress_user);
        report_unverified(ps, f);
        return MOGE_OK;
    }

    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return set_err(e, n, MOGE_ERR_IO, "cannot write %s: %s", part, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int er = errno;
        close(fd);
        if (er == EWOULDBLOCK)
            return set_err(e, n, MOGE_ERR_IO, "%s is being downloaded by another moge pull", part);
        return set_err(e, n, MOGE_ERR_IO, "cannot lock %s: %s", part, strerror(er));
    }
    moge_status st = MOGE_OK;
    xfer x = {.ps = ps, .fd = fd, .path = part, .file = f->name, .total = f->size};
    if (fstat(fd, &sb) != 0) {
        st = set_err(e, n, MOGE_ERR_IO, "%s: %s", part, strerror(errno));
        goto fail;
    }
    if (f->size >= 0 && sb.st_size > f->size && ftruncate(fd, 0) != 0) { /* longer than the file: stale */
        st = set_err(e, n, MOGE_ERR_IO, "%s: %s", part, strerror(errno));
        goto fail;
    }

    st = fetch(ps, url, &x, f->name);
    if (st != MOGE_OK) goto fail;

    off_t got = lseek(fd, 0, SEEK_END);
    if (got < 0) {
        st = set_err(e, n, MOGE_ERR_IO, "%s: %s", part, strerror(errno));
        goto fail;
    }
    if (f->size >= 0 && got != f->size) {
        unlink(part);
        st = set_err(e, n, MOGE_ERR_FORMAT, "%s: size mismatch: expected %lld bytes, got %lld (from %s; the download "
                     "was deleted)", f->name, (long long)f->size, (long long)got, url);
        goto fail;
    }
    if (f->sha256[0] || f->git_sha1[0]) {
        bool git = !f->sha256[0];
        const char *want = git ? f->git_sha1 : f->sha256;
        char hex[65];
        st = file_digest(fd, part, git, (int64_t)got, hex, e, n);
        if (st != MOGE_OK) goto fail;
        if (strcmp(hex, want) != 0) {
            unlink(part);
            st = set_err(e, n, MOGE_ERR_FORMAT, "%s: %s mismatch: expected %s, got %s (from %s; the download was deleted)", f->name,
                         git ? "git blob id (SHA-1)" : "SHA-256", want, hex, url);
            goto fail;
        }
    }
    if (fsync(fd) != 0) {
        st = set_err(e, n, MOGE_ERR_IO, "%s: fsync failed: %s", part, strerror(errno));
        goto fail;
    }
    if (rename(part, final) != 0) {
        st = set_err(e, n, MOGE_ERR_IO, "cannot rename %s to %s: %s", part, final, strerror(errno));
        goto fail;
    }
    close(fd);
    if (ps->progress) ps->progress(f->name, (int64_t)got, (int64_t)got, ps->progress_user);
    report_unverified(ps, f);
    return MOGE_OK;
fail:
    if (fstat(fd, &sb) == 0 && sb.st_size == 0) unlink(part); /* nothing worth resuming */
    close(fd);
    return st;
}

/* Writes CACHE/models/OWNER/NAME/refs/REV = commit, through a temporary file and a rename. */
static moge_status write_ref(pull_state *ps, const char *rev) {
    char *e = ps->err;
    size_t n = ps->err_size;
    char dir[PATH_CAP], path[PATH_CAP], tmp[PATH_CAP + 32], fname[800];
    ref_file_name(rev, fname, sizeof fname);
    if (!path_fmt(dir, sizeof dir, "%s/models/%s/refs", ps->cache, ps->repo_id) ||
        !path_fmt(path, sizeof path, "%s/%s", dir, fname) ||
        !path_fmt(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()))
        return set_err(e, n, MOGE_ERR_ARG, "%s: path too long", ps->cache);
    moge_status st = file_make_dirs(dir, e, n);
    if (st != MOGE_OK) return st;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return set_err(e, n, MOGE_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    char line[160];
    int len = snprintf(line, sizeof line, "%s\n", ps->commit);
    bool ok = write(fd, line, (size_t)len) == len && fsync(fd) == 0;
    int er = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        if (ok) er = errno;
        unlink(tmp);
        return set_err(e, n, MOGE_ERR_IO, "cannot write %s: %s", path, strerror(er));
    }
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* moge_pull                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Endpoint, token, cache and libcurl handle from the parameters and the environment. */
static moge_status pull_setup(pull_state *ps, const moge_pull_params *p) {
    char *e = ps->err;
    size_t n = ps->err_size;
    const char *ep = p->endpoint ? p->endpoint : getenv("MOGE_HF_ENDPOINT");
    if (!ep || !*ep) ep = DEFAULT_ENDPOINT;
    if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)
        return set_err(e, n, MOGE_ERR_ARG, "endpoint \"%s\": expected an http:// or https:// URL", ep);
    if (!path_fmt(ps->endpoint, sizeof ps->endpoint, "%s", ep))
        return set_err(e, n, MOGE_ERR_ARG, "endpoint \"%.100s...\": too long", ep);
    size_t len = strlen(ps->endpoint);
    while (len > 0 && ps->endpoint[len - 1] == '/') ps->endpoint[--len] = 0;

    const char *token = p->token ? p->token : getenv("HF_TOKEN");
    if (token && strpbrk(token, "\r\n"))
        return set_err(e, n, MOGE_ERR_ARG, "%s contains a line break", p->token ? "the token" : "HF_TOKEN");

    moge_status st = file_cache_root(p->cache_dir, ps->cache, sizeof ps->cache, e, n);
    if (st != MOGE_OK) return st;

    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) return set_err(e, n, MOGE_ERR_IO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
    ps->curl = curl_easy_init();
    if (!ps->curl) return set_err(e, n, MOGE_ERR_NOMEM, "libcurl: cannot create a handle");
    if (token && *token) {
        char *h = malloc(strlen(token) + 32);
        if (!h) return set_err(e, n, MOGE_ERR_NOMEM, "out of memory");
        sprintf(h, "Authorization: Bearer %s", token);
        ps->headers = curl_slist_append(NULL, h);
        free(h);
        if (!ps->headers) return set_err(e, n, MOGE_ERR_NOMEM, "out of memory");
    }
    CURL *c = ps->curl;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, ps->headers);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_USERAGENT, "moge/0.1 (+libcurl)");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled transfer: under 1 B/s for 60 s */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ps->curl_err);
    return MOGE_OK;
}

static moge_status pull_run(pull_state *ps) {
    char *e = ps->err;
    size_t n = ps->err_size;

    /* 1. the listing */
    char url[PATH_CAP];
    char *rev = curl_easy_escape(ps->curl, ps->repo.rev, 0);
    if (!rev) return set_err(e, n, MOGE_ERR_NOMEM, "out of memory");
    bool fits = ps->repo.rev_given
        ? path_fmt(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", ps->endpoint, ps->repo_id, rev)
        : path_fmt(url, sizeof url, "%s/api/models/%s?blobs=true", ps->endpoint, ps->repo_id);
    curl_free(rev);
    if (!fits) return set_err(e, n, MOGE_ERR_ARG, "endpoint too long");
    xfer x = {.ps = ps, .fd = -1, .total = -1};
    moge_status st = fetch(ps, url, &x, NULL);
    if (st == MOGE_OK && !x.mem) st = set_err(e, n, MOGE_ERR_FORMAT, "%s: empty answer", url);
    if (st == MOGE_OK) st = parse_listing(ps, x.mem, url);
    free(x.mem);
    if (st != MOGE_OK) return st;

    /* 2. what to fetch */
    if (!find_file(ps, "config.json"))
        return set_err(e, n, MOGE_ERR_UNSUPPORTED, "repository %s has no config.json at its root: not a model moge can load",
                       ps->repo_id);
    bool any_weights = false;
    for (size_t i = 0; i < ps->n_files; i++) {
        ps->files[i].wanted = wanted_support_file(&ps->files[i]);
        any_weights |= ends_with(ps->files[i].name, ".safetensors");
    }
    if (!any_weights)
        return set_err(e, n, MOGE_ERR_UNSUPPORTED, "repository %s has no .safetensors weights at its root "
                       "(moge loads safetensors only)", ps->repo_id);

    /* 3. the small files (the index among them), then the weights */
    if (!path_fmt(ps->snap, sizeof ps->snap, "%s/models/%s/%s", ps->cache, ps->repo_id, ps->commit))
        return set_err(e, n, MOGE_ERR_ARG, "%s: path too long", ps->cache);
    st = file_make_dirs(ps->snap, e, n);
    for (size_t i = 0; st == MOGE_OK && i < ps->n_files; i++)
        if (ps->files[i].wanted) st = download_file(ps, &ps->files[i]);
    if (st != MOGE_OK) return st;
    st = select_weights(ps);
    for (size_t i = 0; st == MOGE_OK && i < ps->n_files; i++)
        if (ps->files[i].wanted && ends_with(ps->files[i].name, ".safetensors")) st = download_file(ps, &ps->files[i]);
    if (st != MOGE_OK) return st;

    /* 4. complete: record what the revision (and the commit itself) points to */
    st = write_ref(ps, ps->repo.rev);
    if (st == MOGE_OK && strcmp(ps->repo.rev, ps->commit) != 0) st = write_ref(ps, ps->commit);
    return st;
}

moge_status moge_pull(const char *repo, const moge_pull_params *p, char *dir_out, size_t dir_cap,
                      char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!repo || !dir_out || dir_cap == 0)
        return set_err(err, err_size, MOGE_ERR_ARG, "moge_pull: %s is NULL or empty",
                       !repo ? "repo" : "dir_out");
    dir_out[0] = 0;
    moge_pull_params defaults = moge_pull_default_params();
    if (!p) p = &defaults;
    if (p->max_retries < 0 || p->max_retries > 100)
        return set_err(err, err_size, MOGE_ERR_ARG, "max_retries %d: expected 0..100", p->max_retries);
    pull_state *ps = calloc(1, sizeof *ps);
    if (!ps) return set_err(err, err_size, MOGE_ERR_NOMEM, "out of memory");
    ps->err = err;
    ps->err_size = err_size;
    ps->max_retries = p->max_retries;
    ps->progress = p->progress;
    ps->unverified = p->unverified;
    ps->progress_user = p->progress_user;
    ps->unverified_user = p->unverified_user;
    moge_status st = parse_repo(repo, &ps->repo, err, err_size);
    if (st == MOGE_OK) {
        snprintf(ps->repo_id, sizeof ps->repo_id, "%s/%s", ps->repo.owner, ps->repo.name);
        st = pull_setup(ps, p);
    }
    if (st == MOGE_OK) st = pull_run(ps);
    if (st == MOGE_OK) st = copy_out(ps->snap, dir_out, dir_cap, err, err_size);
    pull_state_free(ps);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* moge_resolve_model                                                                         */
/* ------------------------------------------------------------------------------------------ */

moge_status moge_resolve_model(const char *name, char *dir_out, size_t dir_cap, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!name || !*name || !dir_out || dir_cap == 0)
        return set_err(err, err_size, MOGE_ERR_ARG, "moge_resolve_model: %s is NULL or empty",
                       !name || !*name ? "name" : "dir_out");
    dir_out[0] = 0;
    struct stat sb;
    if (stat(name, &sb) == 0 && S_ISDIR(sb.st_mode)) return copy_out(name, dir_out, dir_cap, err, err_size);
    if (gguf_is_file(name)) return copy_out(name, dir_out, dir_cap, err, err_size); /* a GGUF file stands for a directory */

    repo_spec r;
    if (parse_repo(name, &r, NULL, 0) != MOGE_OK)
        return set_err(err, err_size, MOGE_ERR_IO, "%s: not a directory, and not a repository name "
                       "OWNER/NAME[@REVISION] to look up in the cache", name);
    char cache[PATH_CAP], ref[PATH_CAP], fname[800], snap[PATH_CAP], config[PATH_CAP + 16];
    moge_status st = file_cache_root(NULL, cache, sizeof cache, err, err_size);
    if (st != MOGE_OK) return st;
    ref_file_name(r.rev, fname, sizeof fname);
    char commit[160] = "";
    if (path_fmt(ref, sizeof ref, "%s/models/%s/%s/refs/%s", cache, r.owner, r.name, fname)) file_read_line(ref, commit, sizeof commit);
    if (valid_commit(commit) && path_fmt(snap, sizeof snap, "%s/models/%s/%s/%s", cache, r.owner, r.name, commit) &&
        path_fmt(config, sizeof config, "%s/config.json", snap) && stat(config, &sb) == 0)
        return copy_out(snap, dir_out, dir_cap, err, err_size);
    return set_err(err, err_size, MOGE_ERR_IO, "%s: not a directory and not in the cache (%s); run moge pull %s",
                   name, cache, name);
}
