/*
 * hub_server.h — a small imitation of the Hugging Face hub for tests/test_pull.c, in C (the tests
 * must not need Python). hub_serve() runs in a child process of the test on a listening socket
 * the test made on 127.0.0.1; one request per connection (HTTP/1.0: a cut-off transfer closes it),
 * handled one after the other; it exits after `lifetime_s` seconds or when killed.
 *
 * Endpoints (as the hub serves them):
 *   GET /api/models/OWNER/NAME[/revision/REV][?blobs=true]
 *         {"id", "sha", "siblings": [{"rfilename", and with blobs: "size", "lfs": {"sha256", "size"}}]}
 *         404 + X-Error-Code RepoNotFound / RevisionNotFound; 401 for test/private without the token
 *   GET /OWNER/NAME/resolve/REV/FILE
 *         small files directly (ETag: their git blob id), *.safetensors / *.bin through a 302 to
 *         /_cdn/OWNER/NAME/COMMIT/FILE (as the hub sends LFS files to its CDN) carrying
 *         X-Linked-Size and X-Linked-Etag (the SHA-256); "Range: bytes=N-" gives 206 (416 past the end)
 *   HEAD of any of these: the same status and headers, no body
 *   GET /_log   the requests seen so far: [{"method", "path", "range", "auth"}], oldest first
 *
 * Repositories (all but test/sharded and test/noweights serve models/stories260K's files):
 *   test/tiny        revisions main and v1 (two commits, same files), plus files a pull must skip
 *   test/flaky       the first transfer of model.safetensors is cut off halfway
 *   test/flaky-retry same, a separate counter
 *   test/norange     cut off halfway once, then ignores Range (answers 200 with the whole file)
 *   test/badsum      advertises a wrong sha256 for model.safetensors
 *   test/badsize     advertises config.json 10 bytes shorter than it is
 *   test/badrange    cut off once, then answers a Range request with a 206 that starts at byte 0
 *   test/private     401 unless "Authorization: Bearer test-token-123"
 *   test/broken      model.safetensors always answers 500
 *   test/sharded     model.safetensors.index.json naming two shards, and a consolidated.safetensors it does not name
 *   test/noweights   config.json only
 *   test/nosizes     a listing without sizes, hashes or blob ids (blobs=true or not), the first
 *                    transfer of model.safetensors cut off halfway: size and hash come from the headers
 *   test/nosizes-badsum  the same, X-Linked-Etag of model.safetensors wrong
 *   test/badgit      advertises a wrong git blob id for config.json
 *   test/bare        no sizes or hashes anywhere: no listing info, no X-Linked-* or ETag, no
 *                    Content-Length (bodies end when the connection closes)
 * Anything else is 404 RepoNotFound.
 */
#ifndef MOGE_HUB_SERVER_H
#define MOGE_HUB_SERVER_H

#include <cJSON.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HUB_TOKEN "test-token-123"
#define HUB_MAX_FILES 16
#define HUB_MAX_REPOS 16

typedef struct { char name[64]; unsigned char *data; size_t len; } hub_file;
typedef struct {
    char id[32];
    hub_file files[HUB_MAX_FILES];
    int n_files;
    char main_sha[41], v1_sha[41]; /* v1: test/tiny only */
    bool cut_once, cut_done, ignore_range, wrong_sha, wrong_size, bad_range, token, fail_500;
    bool no_listing_info, no_linked, no_length; /* test/nosizes, test/bare */
    bool wrong_git;                             /* test/badgit */
} hub_repo;

static bool hub_head_only;   /* the request being answered is a HEAD: headers only */
static bool hub_omit_length; /* answer without Content-Length (test/bare) */

static hub_repo hub_repos[HUB_MAX_REPOS];
static int hub_n_repos;
static cJSON *hub_log;

static void hub_hex(const unsigned char *d, unsigned n, char *out) {
    for (unsigned i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void hub_digest(const char *alg, const void *data, size_t len, char *out) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, d, &n, strcmp(alg, "sha1") == 0 ? EVP_sha1() : EVP_sha256(), NULL);
    hub_hex(d, n, out);
}

static unsigned char *hub_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void hub_add_file(hub_repo *r, const char *name, const void *data, size_t len) {
    hub_file *f = &r->files[r->n_files++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->data = malloc(len + 1);
    memcpy(f->data, data, len);
    f->len = len;
}

static void hub_add_filled(hub_repo *r, const char *name, int byte, size_t len) {
    unsigned char *b = malloc(len);
    memset(b, byte, len);
    hub_add_file(r, name, b, len);
    free(b);
}

static hub_repo *hub_new_repo(const char *id) {
    hub_repo *r = &hub_repos[hub_n_repos++];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    hub_digest("sha1", id, strlen(id), r->main_sha);
    return r;
}

/* The model files every repository but test/sharded and test/noweights serves. */
static void hub_add_model(hub_repo *r, const char *model_dir) {
    static const char *names[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", "README.md", "LICENSE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", model_dir, names[i]);
        unsigned char *b = hub_read(path, &len);
        if (b) hub_add_file(r, names[i], b, len);
        free(b);
    }
}

static void hub_make_repos(const char *model_dir) {
    hub_n_repos = 0;
    hub_repo *r = hub_new_repo("test/tiny");
    hub_add_model(r, model_dir);
    const char *ga = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n";
    hub_add_file(r, ".gitattributes", ga, strlen(ga));
    hub_add_filled(r, "pytorch_model.bin", 0, 4096);
    hub_add_filled(r, "original/consolidated.safetensors", 1, 4096);
    hub_add_filled(r, "LICENSE-big.txt", 'x', (1 << 20) | 1);
    hub_digest("sha1", "test/tiny@v1", strlen("test/tiny@v1"), r->v1_sha);
    static const char *faulty[] = {"test/flaky", "test/flaky-retry", "test/norange", "test/badsum", "test/badsize", "test/badrange", "test/private", "test/broken"};
    for (size_t i = 0; i < sizeof faulty / sizeof faulty[0]; i++) {
        r = hub_new_repo(faulty[i]);
        hub_add_model(r, model_dir);
        r->cut_once = i == 0 || i == 1 || i == 2 || i == 5;
        r->ignore_range = i == 2;
        r->wrong_sha = i == 3;
        r->wrong_size = i == 4;
        r->bad_range = i == 5;
        r->token = i == 6;
        r->fail_500 = i == 7;
    }
    r = hub_new_repo("test/sharded");
    hub_repo *tiny = &hub_repos[0];
    hub_add_file(r, "config.json", tiny->files[0].data, tiny->files[0].len);
    hub_add_file(r, "tokenizer.json", tiny->files[1].data, tiny->files[1].len);
    unsigned char s1[256 * 40], s2[256 * 30];
    for (size_t i = 0; i < sizeof s1; i++) s1[i] = (unsigned char)(i % 256);
    for (size_t i = 0; i < sizeof s2; i++) s2[i] = (unsigned char)(255 - i % 256);
    char index[512];
    snprintf(index, sizeof index,
             "{\"metadata\": {\"total_size\": %zu}, \"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\", "
             "\"b.weight\": \"model-00002-of-00002.safetensors\", \"c.weight\": \"model-00001-of-00002.safetensors\"}}",
             sizeof s1 + sizeof s2);
    hub_add_file(r, "model.safetensors.index.json", index, strlen(index));
    hub_add_file(r, "model-00001-of-00002.safetensors", s1, sizeof s1);
    hub_add_file(r, "model-00002-of-00002.safetensors", s2, sizeof s2);
    hub_add_filled(r, "consolidated.safetensors", 2, 5000);
    r = hub_new_repo("test/noweights");
    hub_add_file(r, "config.json", tiny->files[0].data, tiny->files[0].len);
    r = hub_new_repo("test/badgit");
    hub_add_model(r, model_dir);
    r->wrong_git = true;
    static const char *bare[] = {"test/nosizes", "test/nosizes-badsum", "test/bare"};
    for (size_t i = 0; i < sizeof bare / sizeof bare[0]; i++) {
        r = hub_new_repo(bare[i]);
        hub_add_model(r, model_dir);
        r->no_listing_info = true;
        r->cut_once = i == 0;
        r->wrong_sha = i == 1;
        r->no_linked = r->no_length = i == 2;
    }
}

/* The git blob id of a file: SHA-1 of "blob LEN\0" and the content. */
static void hub_git_id(const hub_file *f, char *out) {
    char head[32];
    int k = snprintf(head, sizeof head, "blob %zu", f->len);
    unsigned char *b = malloc((size_t)k + 1 + f->len);
    memcpy(b, head, (size_t)k + 1);
    memcpy(b + k + 1, f->data, f->len);
    hub_digest("sha1", b, (size_t)k + 1 + f->len, out);
    free(b);
}

static bool hub_is_lfs(const char *name) {
    size_t n = strlen(name);
    return (n >= 12 && strcmp(name + n - 12, ".safetensors") == 0) || (n >= 4 && strcmp(name + n - 4, ".bin") == 0);
}

static void hub_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k <= 0) return;
        c += k;
        n -= (size_t)k;
    }
}

/* Status line and headers (extra: already formatted "Name: value\r\n" lines), then the body. */
static void hub_send(int fd, int code, const char *ctype, const char *extra, const void *body, size_t len) {
    const char *reason = code == 200 ? "OK" : code == 206 ? "Partial Content" : code == 302 ? "Found" : code == 400 ? "Bad Request"
                       : code == 401 ? "Unauthorized" : code == 404 ? "Not Found" : code == 416 ? "Range Not Satisfiable" : "Internal Server Error";
    char head[1024], length[64] = "";
    if (!hub_omit_length) snprintf(length, sizeof length, "Content-Length: %zu\r\n", len);
    int k = snprintf(head, sizeof head, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\n%s%s\r\n", code, reason, ctype, length, extra ? extra : "");
    hub_write_all(fd, head, (size_t)k);
    if (len && !hub_head_only) hub_write_all(fd, body, len);
}

static void hub_error(int fd, int code, const char *message, const char *error_code) {
    char body[512], extra[128] = "";
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", message);
    char *s = cJSON_PrintUnformatted(j);
    snprintf(body, sizeof body, "%s", s);
    free(s);
    cJSON_Delete(j);
    if (error_code) snprintf(extra, sizeof extra, "X-Error-Code: %s\r\n", error_code);
    hub_send(fd, code, "application/json", extra, body, strlen(body));
}

static hub_repo *hub_find(int fd, const char *id, const char *auth) {
    for (int i = 0; i < hub_n_repos; i++)
        if (strcmp(hub_repos[i].id, id) == 0) {
            hub_repo *r = &hub_repos[i];
            if (r->token && !(auth && strcmp(auth, "Bearer " HUB_TOKEN) == 0)) {
                hub_error(fd, 401, "Invalid credentials in Authorization header", NULL);
                return NULL;
            }
            return r;
        }
    hub_error(fd, 404, "Repository not found", "RepoNotFound");
    return NULL;
}

static const char *hub_commit(int fd, hub_repo *r, const char *rev) {
    if (strcmp(rev, "main") == 0 || strcmp(rev, r->main_sha) == 0) return r->main_sha;
    if (r->v1_sha[0] && (strcmp(rev, "v1") == 0 || strcmp(rev, r->v1_sha) == 0)) return r->v1_sha;
    char msg[256];
    snprintf(msg, sizeof msg, "Invalid rev id: %s", rev);
    hub_error(fd, 404, msg, "RevisionNotFound");
    return NULL;
}

static void hub_api(int fd, char **parts, int n, bool blobs, const char *auth) {
    /* parts: OWNER NAME [revision REV...] */
    if (n < 2 || (n > 2 && (strcmp(parts[2], "revision") != 0 || n < 4))) { hub_error(fd, 404, "no such endpoint", NULL); return; }
    char id[128], rev[256] = "main";
    snprintf(id, sizeof id, "%s/%s", parts[0], parts[1]);
    if (n > 2) {
        rev[0] = 0;
        for (int i = 3; i < n; i++) snprintf(rev + strlen(rev), sizeof rev - strlen(rev), "%s%s", i > 3 ? "/" : "", parts[i]);
    }
    hub_repo *r = hub_find(fd, id, auth);
    if (!r) return;
    const char *sha = hub_commit(fd, r, rev);
    if (!sha) return;
    cJSON *j = cJSON_CreateObject(), *sib = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "modelId", id);
    cJSON_AddStringToObject(j, "sha", sha);
    cJSON_AddBoolToObject(j, "private", r->token);
    for (int i = 0; i < r->n_files; i++) {
        const hub_file *f = &r->files[i];
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "rfilename", f->name);
        if (blobs && !r->no_listing_info) {
            char git[41];
            if (hub_is_lfs(f->name)) hub_digest("sha1", f->name, strlen(f->name), git); /* the pointer file's id */
            else if (r->wrong_git && strcmp(f->name, "config.json") == 0) hub_digest("sha1", "not the file", 12, git);
            else hub_git_id(f, git);
            cJSON_AddStringToObject(s, "blobId", git);
            cJSON_AddNumberToObject(s, "size", (double)f->len - (r->wrong_size && strcmp(f->name, "config.json") == 0 ? 10 : 0));
            if (hub_is_lfs(f->name)) {
                char digest[65];
                if (r->wrong_sha && strcmp(f->name, "model.safetensors") == 0) hub_digest("sha256", "not the file", 12, digest);
                else hub_digest("sha256", f->data, f->len, digest);
                cJSON *lfs = cJSON_AddObjectToObject(s, "lfs");
                cJSON_AddStringToObject(lfs, "sha256", digest);
                cJSON_AddNumberToObject(lfs, "size", (double)f->len);
                cJSON_AddNumberToObject(lfs, "pointerSize", 134);
            }
        }
        cJSON_AddItemToArray(sib, s);
    }
    cJSON_AddItemToObject(j, "siblings", sib);
    char *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    hub_send(fd, 200, "application/json", NULL, body, strlen(body));
    free(body);
}

/* A file's bytes; direct: answered at /resolve (a file kept in git: ETag is its blob id), else
 * from the CDN. */
static void hub_blob(int fd, const char *repo_id, const char *name, const char *range, bool direct) {
    hub_repo *r = NULL;
    for (int i = 0; i < hub_n_repos; i++)
        if (strcmp(hub_repos[i].id, repo_id) == 0) r = &hub_repos[i];
    const hub_file *f = NULL;
    for (int i = 0; r && i < r->n_files; i++)
        if (strcmp(r->files[i].name, name) == 0) f = &r->files[i];
    if (!f) { hub_error(fd, 404, "Entry not found", "EntryNotFound"); return; }
    bool weights = strcmp(name, "model.safetensors") == 0, cut = false;
    if (weights && r->fail_500) { hub_error(fd, 500, "Internal Error", NULL); return; }
    if (weights && r->cut_once && !hub_head_only) {
        cut = !r->cut_done;
        r->cut_done = true;
    }
    size_t start = 0;
    if (range && !(r->ignore_range && !cut)) {
        if (strncmp(range, "bytes=", 6) != 0 || range[6] < '0' || range[6] > '9') {
            char msg[256];
            snprintf(msg, sizeof msg, "bad Range %s", range);
            hub_error(fd, 400, msg, NULL);
            return;
        }
        start = (size_t)strtoull(range + 6, NULL, 10);
        if (start >= f->len) {
            char extra[96];
            snprintf(extra, sizeof extra, "Content-Range: bytes */%zu\r\n", f->len);
            hub_send(fd, 416, "application/json", extra, NULL, 0);
            return;
        }
    }
    char extra[512], digest[65];
    if (start && r->bad_range) {
        snprintf(extra, sizeof extra, "Content-Range: bytes 0-%zu/%zu\r\n", f->len - 1, f->len);
        hub_send(fd, 206, "application/octet-stream", extra, f->data, f->len);
        return;
    }
    if (direct) hub_git_id(f, digest);
    else hub_digest("sha256", f->data, f->len, digest);
    int k = snprintf(extra, sizeof extra, "Accept-Ranges: bytes\r\n");
    if (!r->no_linked) k += snprintf(extra + k, sizeof extra - (size_t)k, "ETag: \"%s\"\r\n", digest);
    if (start) snprintf(extra + k, sizeof extra - (size_t)k, "Content-Range: bytes %zu-%zu/%zu\r\n", start, f->len - 1, f->len);
    size_t len = f->len - start;
    if (cut) { /* the headers announce the whole body; half of it comes, then the connection drops */
        char head[1024];
        int h = snprintf(head, sizeof head, "HTTP/1.0 %d %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n%s\r\n",
                         start ? 206 : 200, start ? "Partial Content" : "OK", len, extra);
        hub_write_all(fd, head, (size_t)h);
        hub_write_all(fd, f->data + start, len / 2);
        return;
    }
    hub_send(fd, start ? 206 : 200, "application/octet-stream", extra, f->data + start, len);
}

static void hub_unquote(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '%' && s[1] && s[2]) {
            char hex[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

/* The value of header `name` in the request head (NUL-terminated lines), or NULL; into buf. */
static const char *hub_header(const char *head, const char *name, char *buf, size_t cap) {
    size_t n = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            l += n + 1;
            while (*l == ' ') l++;
            const char *e = strstr(l, "\r\n");
            size_t len = e ? (size_t)(e - l) : strlen(l);
            if (len >= cap) len = cap - 1;
            memcpy(buf, l, len);
            buf[len] = 0;
            return buf;
        }
    }
    return NULL;
}

static void hub_handle(int fd) {
    char req[8192];
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (len < sizeof req - 1 && poll(&p, 1, 5000) > 0) {
        ssize_t k = read(fd, req + len, sizeof req - 1 - len);
        if (k <= 0) break;
        len += (size_t)k;
        req[len] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[len] = 0;
    char method[16] = "", target[2048] = "", range_buf[256], auth_buf[256];
    if (sscanf(req, "%15s %2047s", method, target) != 2) return;
    hub_head_only = strcmp(method, "HEAD") == 0;
    hub_omit_length = false;
    for (int i = 0; i < hub_n_repos; i++) /* test/bare answers everything without Content-Length */
        if (hub_repos[i].no_length && strstr(target, hub_repos[i].id)) hub_omit_length = true;
    const char *range = hub_header(req, "Range", range_buf, sizeof range_buf);
    const char *auth = hub_header(req, "Authorization", auth_buf, sizeof auth_buf);
    char *query = strchr(target, '?');
    if (query) *query++ = 0;
    if (strcmp(target, "/_log") == 0) {
        char *body = cJSON_PrintUnformatted(hub_log);
        hub_send(fd, 200, "application/json", NULL, body, strlen(body));
        free(body);
        return;
    }
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "method", method);
    cJSON_AddStringToObject(entry, "path", target);
    if (range) cJSON_AddStringToObject(entry, "range", range);
    else cJSON_AddNullToObject(entry, "range");
    if (auth) cJSON_AddStringToObject(entry, "auth", auth);
    else cJSON_AddNullToObject(entry, "auth");
    cJSON_AddItemToArray(hub_log, entry);
    /* the path's parts, unquoted */
    char *parts[64];
    int n = 0;
    for (char *tok = strtok(target + 1, "/"); tok && n < 64; tok = strtok(NULL, "/")) {
        hub_unquote(tok);
        parts[n++] = tok;
    }
    char name[1024] = "";
    if (n >= 3 && strcmp(parts[0], "api") == 0 && strcmp(parts[1], "models") == 0) {
        hub_api(fd, parts + 2, n - 2, query && strstr(query, "blobs=true") != NULL, auth);
    } else if (n >= 5 && strcmp(parts[2], "resolve") == 0) {
        char id[128];
        snprintf(id, sizeof id, "%s/%s", parts[0], parts[1]);
        for (int i = 4; i < n; i++) snprintf(name + strlen(name), sizeof name - strlen(name), "%s%s", i > 4 ? "/" : "", parts[i]);
        hub_repo *r = hub_find(fd, id, auth);
        if (!r) return;
        const char *sha = hub_commit(fd, r, parts[3]);
        if (!sha) return;
        bool found = false;
        for (int i = 0; i < r->n_files; i++) found |= strcmp(r->files[i].name, name) == 0;
        if (!found) { hub_error(fd, 404, "Entry not found", "EntryNotFound"); return; }
        if (hub_is_lfs(name)) {
            char extra[1400], digest[65];
            int k = snprintf(extra, sizeof extra, "Location: /_cdn/%s/%s/%s\r\n", id, sha, name);
            const hub_file *f = NULL;
            for (int i = 0; i < r->n_files; i++)
                if (strcmp(r->files[i].name, name) == 0) f = &r->files[i];
            if (!r->no_linked) { /* what the hub says of an LFS file on its redirect */
                if (r->wrong_sha && strcmp(name, "model.safetensors") == 0) hub_digest("sha256", "not the file", 12, digest);
                else hub_digest("sha256", f->data, f->len, digest);
                snprintf(extra + k, sizeof extra - (size_t)k, "X-Linked-Size: %zu\r\nX-Linked-Etag: \"%s\"\r\n", f->len, digest);
            }
            hub_send(fd, 302, "application/json", extra, NULL, 0);
        } else {
            hub_blob(fd, id, name, range, true);
        }
    } else if (n >= 5 && strcmp(parts[0], "_cdn") == 0) {
        char id[128];
        snprintf(id, sizeof id, "%s/%s", parts[1], parts[2]);
        for (int i = 4; i < n; i++) snprintf(name + strlen(name), sizeof name - strlen(name), "%s%s", i > 4 ? "/" : "", parts[i]);
        hub_blob(fd, id, name, range, false);
    } else {
        hub_error(fd, 404, "no such endpoint", NULL);
    }
}

/* Serves on `listener` (bound, listening) until lifetime_s seconds have passed. */
static void hub_serve(int listener, const char *model_dir, double lifetime_s) {
    hub_make_repos(model_dir);
    hub_log = cJSON_CreateArray();
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double left = lifetime_s - ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9);
        if (left <= 0) break;
        struct pollfd p = {.fd = listener, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        hub_handle(fd);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
}

/* Serves model_dir's files (the repositories above) from a child process on a fresh loopback
 * port; its URL goes to endpoint ("http://127.0.0.1:PORT"). Returns the child's pid, or -1 after
 * printing why. */
static pid_t hub_start(const char *model_dir, char *endpoint, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 || getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        printf("  hub server: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        hub_serve(fd, model_dir, 60.0);
        _exit(0);
    }
    close(fd);
    snprintf(endpoint, cap, "http://127.0.0.1:%d", (int)ntohs(a.sin_port));
    return pid;
}

#endif
