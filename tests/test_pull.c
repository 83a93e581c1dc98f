/*
 * test_pull.c — moge_pull and moge_resolve_model against tests/hub_server.h, a loopback
 * imitation of the Hugging Face hub in C (see its header for the repositories and their faults).
 * Every case pulls into a fresh mkdtemp cache under /tmp that it removes; the server is started
 * on demand, stopped by the offline case and at exit (it also exits by itself after 60 s).
 * Paths checked: success (files identical to models/stories260K, skipped files absent, cache
 * reuse, resolution offline), resume after a cut-off transfer (next pull and within one pull,
 * also against a server that ignores Range), SHA-256 mismatch, 401, 404, 500, a repository
 * without weights, disk errors, a locked partial file, bad arguments; a hub that lists no sizes or
 * hashes (they come from the HEAD headers X-Linked-Size / X-Linked-Etag / ETag; a truncated file in
 * the cache is fetched again), wrong hashes there and in "blobId", and one that says nothing at all
 * (every file reported unverified, by the library and on moge pull's stderr).
 */
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "hub_server.h"
#include "moge.h"
#include "moge_hub.h"
#include "hub/download.h"

#define MODEL "models/stories260K"
#define TOKEN "test-token-123"
#define DIR_CAP 4096

/* ------------------------------------------------------------------------------------------ */
/* The server                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static pid_t server_pid = -1;
static char endpoint[64];

static void server_stop(void) {
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    server_pid = -1;
    endpoint[0] = 0;
}

/* Starts the imitation hub (tests/hub_server.h) in a child process when it is not running;
 * returns its endpoint or NULL. */
static const char *server(void) {
    if (server_pid <= 0) server_pid = hub_start(MODEL, endpoint, sizeof endpoint);
    return server_pid > 0 ? endpoint : NULL;
}

typedef struct { char *buf; size_t len; } membuf;

static size_t mem_write(char *p, size_t s, size_t n, void *u) {
    membuf *m = u;
    char *nb = realloc(m->buf, m->len + s * n + 1);
    if (!nb) return 0;
    memcpy(nb + m->len, p, s * n);
    m->len += s * n;
    nb[m->len] = 0;
    m->buf = nb;
    return s * n;
}

/* The server's request log (a JSON array), or NULL. */
static cJSON *server_log(void) {
    if (!server()) return NULL;
    char url[128];
    snprintf(url, sizeof url, "%s/_log", endpoint);
    CURL *c = curl_easy_init();
    membuf m = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    cJSON *j = rc == CURLE_OK && m.buf ? cJSON_Parse(m.buf) : NULL;
    free(m.buf);
    return j;
}

/* Requests of `method` (NULL: any) whose path ends with `suffix` (and, when range_prefix is set,
 * whose Range starts with it; "" = requests without a Range). When range_value is not NULL, the
 * last match's Range is copied there. */
static int count_requests_of(const char *method, const char *suffix, const char *range_prefix, char *range_value, size_t cap) {
    cJSON *log = server_log();
    int count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, log) {
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(it, "path"));
        const char *range = cJSON_GetStringValue(cJSON_GetObjectItem(it, "range"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "method"));
        size_t a = path ? strlen(path) : 0, b = strlen(suffix);
        if (a < b || strcmp(path + a - b, suffix) != 0) continue;
        if (method && (!m || strcmp(m, method) != 0)) continue;
        if (range_prefix && !*range_prefix && range) continue;
        if (range_prefix && *range_prefix && (!range || strncmp(range, range_prefix, strlen(range_prefix)) != 0)) continue;
        count++;
        if (range_value) snprintf(range_value, cap, "%s", range ? range : "");
    }
    cJSON_Delete(log);
    return count;
}

static int count_requests(const char *suffix, const char *range_prefix, char *range_value, size_t cap) {
    return count_requests_of(NULL, suffix, range_prefix, range_value, cap);
}

static int count_method(const char *method, const char *suffix) { return count_requests_of(method, suffix, NULL, NULL, 0); }

/* Requests for paths containing `repo`, with the test token and without it. */
static void count_auth(const char *repo, int *with, int *without) {
    *with = *without = 0;
    cJSON *log = server_log();
    const cJSON *it;
    cJSON_ArrayForEach(it, log) {
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(it, "path"));
        const char *auth = cJSON_GetStringValue(cJSON_GetObjectItem(it, "auth"));
        if (!path || !strstr(path, repo)) continue;
        if (auth && !strcmp(auth, "Bearer " TOKEN)) ++*with;
        else ++*without;
    }
    cJSON_Delete(log);
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static bool new_cache(char *dir) {
    strcpy(dir, "/tmp/moge-test-pull-XXXXXX");
    bool ok = mkdtemp(dir) != NULL;
    CHECKF(ok, "mkdtemp: %s", strerror(errno));
    return ok;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) {
    if (dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool exists(const char *dir, const char *name) {
    char path[DIR_CAP + 256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static long long file_size(const char *dir, const char *name) {
    char path[DIR_CAP + 256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* dir/name has exactly the bytes of models/stories260K/name. */
static bool same_as_model(const char *dir, const char *name) {
    char a[DIR_CAP + 256], b[256];
    snprintf(a, sizeof a, "%s/%s", dir, name);
    snprintf(b, sizeof b, "%s/%s", MODEL, name);
    size_t la = 0, lb = 0;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    bool same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static void digest_hex(const EVP_MD *md, const void *data, size_t len, char *hex) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_Digest(data, len, d, &dl, md, NULL);
    for (unsigned int i = 0; i < dl; i++) sprintf(hex + 2 * i, "%02x", d[i]);
}

static void sha256_hex(const char *path, char hex[65]) {
    size_t len = 0;
    char *data = slurp(path, &len);
    hex[0] = 0;
    if (data) digest_hex(EVP_sha256(), data, len, hex);
    free(data);
}

/* The commit hub_server.h gives a repository: sha1 of its id. */
static void commit_of(const char *repo, char hex[41]) { digest_hex(EVP_sha1(), repo, strlen(repo), hex); }

/* Names under dir (recursively) ending with ".part". */
static int n_part_files(const char *dir) {
    char cmd[DIR_CAP + 64];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.part' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Pulling                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int calls;
    int finished;             /* calls with done == total */
    long long last_done, last_total;
    int bad;                  /* calls with done > total or done < 0 */
} progress_log;

static void on_progress(const char *file, int64_t done, int64_t total, void *user) {
    progress_log *p = user;
    p->calls++;
    if (done < 0 || (total >= 0 && done > total) || !file || !*file) p->bad++;
    if (done == total) p->finished++;
    if (!strcmp(file, "model.safetensors")) {
        p->last_done = done;
        p->last_total = total;
    }
}

static moge_pull_params params(const char *cache, int retries) {
    moge_pull_params p = moge_pull_default_params();
    p.endpoint = server();
    p.cache_dir = cache;
    p.max_retries = retries;
    return p;
}

static moge_status pull(const char *repo, const char *cache, int retries, char *dir, char *err, size_t err_size) {
    moge_pull_params p = params(cache, retries);
    return moge_pull(repo, &p, dir, DIR_CAP, err, err_size);
}

#define CHECK_ERR_HAS(err, text) CHECKF(strstr(err, text) != NULL, "message \"%s\" lacks \"%s\"", err, text)

/* ------------------------------------------------------------------------------------------ */
/* Cases                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_bad_arguments(void) {
    char cache[64], dir[DIR_CAP], err[512];
    if (!new_cache(cache)) return;
    static const char *bad[] = {"", "noslash", "a/b/c", "../x", "a/..", "owner/", "/name", "a/b@", "a/b@../x",
                                "a/b@-x", "a--b/c", "a/.hidden", "a b/c", "a/b@x//y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        moge_status st = pull(bad[i], cache, 0, dir, err, sizeof err);
        CHECKF(st == MOGE_ERR_ARG, "\"%s\": %s (%s)", bad[i], moge_status_str(st), err);
        CHECKF(strstr(err, bad[i]) != NULL, "message \"%s\" does not name \"%s\"", err, bad[i]);
    }
    CHECK(moge_pull(NULL, NULL, dir, sizeof dir, err, sizeof err) == MOGE_ERR_ARG);
    CHECK(moge_pull("test/tiny", NULL, NULL, 0, err, sizeof err) == MOGE_ERR_ARG);
    moge_pull_params p = params(cache, 0);
    p.endpoint = "ftp://example.com";
    CHECK(moge_pull("test/tiny", &p, dir, sizeof dir, err, sizeof err) == MOGE_ERR_ARG);
    CHECK_ERR_HAS(err, "ftp://example.com");
    p = params(cache, -1);
    CHECK(moge_pull("test/tiny", &p, dir, sizeof dir, err, sizeof err) == MOGE_ERR_ARG);
    CHECK_ERR_HAS(err, "max_retries");
    p = params(cache, 0);
    p.token = "abc\r\nX-Evil: 1";
    CHECK(moge_pull("test/tiny", &p, dir, sizeof dir, err, sizeof err) == MOGE_ERR_ARG);
    /* nothing was fetched or written for any of these */
    CHECK(count_requests("/api/models/test/tiny", NULL, NULL, 0) == 0);
    CHECK(!exists(cache, "models"));
    CHECK(moge_resolve_model(NULL, dir, sizeof dir, err, sizeof err) == MOGE_ERR_ARG);
    CHECK(moge_resolve_model("", dir, sizeof dir, err, sizeof err) == MOGE_ERR_ARG);
    CHECK(moge_resolve_model(MODEL, NULL, 0, err, sizeof err) == MOGE_ERR_ARG);
    rm_rf(cache);
}

static void test_pull_success(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    progress_log pl = {0};
    moge_pull_params p = params(cache, 0);
    p.progress = on_progress;
    p.progress_user = &pl;
    moge_status st = moge_pull("test/tiny", &p, dir, sizeof dir, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECKF(strncmp(dir, cache, strlen(cache)) == 0 && strstr(dir, "/models/test/tiny/"), "dir %s", dir);
    static const char *want[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
                                 "README.md", "LICENSE"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECKF(same_as_model(dir, want[i]), "%s/%s differs from " MODEL, dir, want[i]);
    static const char *skip[] = {".gitattributes", "pytorch_model.bin", "original", "consolidated.safetensors",
                                 "LICENSE-big.txt"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) CHECKF(!exists(dir, skip[i]), "%s was downloaded", skip[i]);
    CHECK(n_part_files(cache) == 0);
    CHECK(pl.bad == 0);
    CHECKF(pl.finished == 6, "%d files reported finished", pl.finished);
    CHECKF(pl.calls > 6, "only %d progress calls", pl.calls);
    CHECK(pl.last_done == 1044984 && pl.last_total == 1044984);
    char refs[DIR_CAP + 64], line[128] = "";
    snprintf(refs, sizeof refs, "%s/models/test/tiny/refs/main", cache);
    FILE *f = fopen(refs, "r");
    CHECKF(f != NULL, "no %s", refs);
    if (f) {
        CHECK(fgets(line, sizeof line, f) != NULL);
        fclose(f);
    }
    line[strcspn(line, "\n")] = 0;
    CHECKF(line[0] && strstr(dir, line) != NULL, "refs/main \"%s\" is not the snapshot of %s", line, dir);
    char commit[41], req[128];
    commit_of("test/tiny", commit);
    CHECKF(strstr(dir, commit) != NULL, "%s is not the snapshot of commit %s", dir, commit);
    snprintf(req, sizeof req, "/test/tiny/resolve/%s/model.safetensors", commit);
    CHECK(count_requests(req, NULL, NULL, 0) == 1);
    CHECK(count_requests("pytorch_model.bin", NULL, NULL, 0) == 0);

    /* a second pull downloads nothing */
    int before = count_requests("/model.safetensors", NULL, NULL, 0) + count_requests("/config.json", NULL, NULL, 0);
    char dir2[DIR_CAP];
    st = pull("test/tiny", cache, 0, dir2, err, sizeof err);
    CHECKF(st == MOGE_OK && !strcmp(dir, dir2), "%s", err);
    int after = count_requests("/model.safetensors", NULL, NULL, 0) + count_requests("/config.json", NULL, NULL, 0);
    CHECKF(after == before, "%d file requests, then %d", before, after);

    /* an explicit revision gets its own snapshot */
    st = pull("test/tiny@v1", cache, 0, dir2, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECKF(strcmp(dir, dir2) != 0 && same_as_model(dir2, "model.safetensors"), "%s", dir2);
    CHECK(count_requests("/api/models/test/tiny/revision/v1", NULL, NULL, 0) == 1);

    /* a too small buffer */
    char small[8];
    st = moge_pull("test/tiny", &p, small, sizeof small, err, sizeof err);
    CHECKF(st == MOGE_ERR_BUFFER, "%s", moge_status_str(st));

    /* a partial file that another process is writing is not touched */
    char path[DIR_CAP + 64];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(unlink(path) == 0);
    strcat(path, ".part");
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
    st = pull("test/tiny", cache, 0, dir2, err, sizeof err);
    CHECKF(st == MOGE_ERR_IO, "%s", moge_status_str(st));
    CHECK_ERR_HAS(err, "another moge pull");
    CHECK_ERR_HAS(err, path);
    close(fd);
    st = pull("test/tiny", cache, 0, dir2, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors") && !exists(dir, "model.safetensors.part"));
    rm_rf(cache);
}

static void test_resolve_offline(void) {
    char cache[64], dir[DIR_CAP], res[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/tiny", cache, 0, dir, err, sizeof err);
    CHECKF(st == MOGE_OK && strrchr(dir, '/'), "%s", err);
    if (st != MOGE_OK || !strrchr(dir, '/')) {
        rm_rf(cache);
        return;
    }
    char gone[64], url[128];
    snprintf(gone, sizeof gone, "%s", endpoint);
    snprintf(url, sizeof url, "%s/api/models/test/tiny", endpoint);
    server_stop();

    setenv("MOGE_CACHE", cache, 1);
    st = moge_resolve_model("test/tiny", res, sizeof res, err, sizeof err);
    CHECKF(st == MOGE_OK && !strcmp(res, dir), "%s (%s)", err, res);
    st = moge_resolve_model("test/tiny@main", res, sizeof res, err, sizeof err);
    CHECKF(st == MOGE_OK && !strcmp(res, dir), "%s (%s)", err, res);
    const char *commit = strrchr(dir, '/') + 1;
    char name[128];
    snprintf(name, sizeof name, "test/tiny@%s", commit);
    st = moge_resolve_model(name, res, sizeof res, err, sizeof err);
    CHECKF(st == MOGE_OK && !strcmp(res, dir), "%s: %s (%s)", name, err, res);
    moge_model *m = NULL;
    st = moge_model_load(res, NULL, &m, err, sizeof err);
    CHECKF(st == MOGE_OK, "loading the pulled model: %s", err);
    moge_model_free(m);

    st = moge_resolve_model(MODEL, res, sizeof res, err, sizeof err);
    CHECKF(st == MOGE_OK && !strcmp(res, MODEL), "%s", err);
    st = moge_resolve_model("test/tiny@v1", res, sizeof res, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "moge pull test/tiny@v1");
    st = moge_resolve_model("test/other", res, sizeof res, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "not in the cache");
    CHECK_ERR_HAS(err, cache);
    CHECK_ERR_HAS(err, "moge pull test/other");
    st = moge_resolve_model("no/such/dir", res, sizeof res, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "no/such/dir");
    st = moge_resolve_model("test/tiny", res, 4, err, sizeof err);
    CHECK(st == MOGE_ERR_BUFFER);
    unsetenv("MOGE_CACHE");

    /* the network is gone: the error names the URL */
    moge_pull_params p = moge_pull_default_params();
    p.endpoint = gone;
    p.cache_dir = cache;
    p.max_retries = 0;
    st = moge_pull("test/tiny", &p, dir, sizeof dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "network error");
    CHECK_ERR_HAS(err, url);
    rm_rf(cache);
}

static void test_resume_next_pull(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/flaky", cache, 0, dir, err, sizeof err);
    CHECKF(st == MOGE_ERR_IO, "%s", moge_status_str(st));
    CHECK_ERR_HAS(err, "/test/flaky/resolve/");
    CHECK_ERR_HAS(err, "model.safetensors.part");
    CHECK_ERR_HAS(err, "run moge pull again");
    char snap[DIR_CAP + 64], commit[41], cdn[128];
    commit_of("test/flaky", commit);
    snprintf(snap, sizeof snap, "%s/models/test/flaky/%s", cache, commit);
    snprintf(cdn, sizeof cdn, "/_cdn/test/flaky/%s/model.safetensors", commit);
    long long part = file_size(snap, "model.safetensors.part");
    CHECKF(part > 0 && part < 1044984, "partial file of %lld bytes", part);
    CHECK(!exists(snap, "model.safetensors"));
    CHECK(same_as_model(snap, "config.json"));
    setenv("MOGE_CACHE", cache, 1);
    CHECK(moge_resolve_model("test/flaky", dir, sizeof dir, err, sizeof err) == MOGE_ERR_IO);
    unsetenv("MOGE_CACHE");

    st = pull("test/flaky", cache, 0, dir, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors"));
    CHECK(n_part_files(cache) == 0);
    char want[64], got[64] = "";
    snprintf(want, sizeof want, "bytes=%lld-", part);
    CHECKF(count_requests(cdn, want, NULL, 0) == 1, "no request with Range %s", want);
    CHECKF(count_requests(cdn, "bytes=", got, sizeof got) == 1, "Range requests: last \"%s\"", got);
    CHECK(count_requests(cdn, "", NULL, 0) == 1);
    rm_rf(cache);
}

static void test_resume_within_pull(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/flaky-retry", cache, 2, dir, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors"));
    int cdn_full = 0, cdn_range = 0;
    cJSON *log = server_log();
    const cJSON *it;
    cJSON_ArrayForEach(it, log) {
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(it, "path"));
        const char *range = cJSON_GetStringValue(cJSON_GetObjectItem(it, "range"));
        if (!path || !strstr(path, "/_cdn/test/flaky-retry/")) continue;
        if (range && !strncmp(range, "bytes=", 6) && atoll(range + 6) > 0) cdn_range++;
        else cdn_full++;
    }
    cJSON_Delete(log);
    CHECKF(cdn_full == 1 && cdn_range == 1, "%d full and %d range requests", cdn_full, cdn_range);

    /* a server that ignores Range the second time: the file is started over, still intact */
    progress_log pl = {0};
    moge_pull_params p = params(cache, 1);
    p.progress = on_progress;
    p.progress_user = &pl;
    st = moge_pull("test/norange", &p, dir, sizeof dir, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECKF(pl.bad == 0, "%d progress calls past the total", pl.bad);
    CHECK(pl.last_done == 1044984 && pl.last_total == 1044984);
    CHECK(same_as_model(dir, "model.safetensors"));
    CHECK(n_part_files(cache) == 0);
    rm_rf(cache);
}

static void test_checksum_mismatch(void) {
    char cache[64], dir[DIR_CAP], err[1024] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/badsum", cache, 0, dir, err, sizeof err);
    CHECKF(st == MOGE_ERR_FORMAT, "%s (%s)", moge_status_str(st), err);
    char real[65], wrong[65];
    sha256_hex(MODEL "/model.safetensors", real);
    digest_hex(EVP_sha256(), "not the file", 12, wrong);
    CHECK_ERR_HAS(err, "model.safetensors");
    CHECK_ERR_HAS(err, "SHA-256");
    CHECK_ERR_HAS(err, real);
    CHECK_ERR_HAS(err, wrong);
    CHECK_ERR_HAS(err, "deleted");
    CHECK(n_part_files(cache) == 0);
    char cmd[DIR_CAP + 128];
    snprintf(cmd, sizeof cmd, "find '%s' -name 'model.safetensors*' | grep -q .", cache);
    CHECKF(system(cmd) != 0, "a model.safetensors file was kept under %s", cache);
    CHECK(!exists(cache, "models/test/badsum/refs/main"));
    setenv("MOGE_CACHE", cache, 1);
    CHECK(moge_resolve_model("test/badsum", dir, sizeof dir, err, sizeof err) == MOGE_ERR_IO);
    unsetenv("MOGE_CACHE");
    rm_rf(cache);
}

/* The hub's sizes and ranges are checked too: a file longer than announced, a 206 for the wrong bytes. */
static void test_size_and_range_mismatch(void) {
    char cache[64], dir[DIR_CAP], err[1024] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/badsize", cache, 0, dir, err, sizeof err);
    CHECKF(st == MOGE_ERR_FORMAT, "%s (%s)", moge_status_str(st), err);
    CHECK_ERR_HAS(err, "config.json: size mismatch: expected 479 bytes, got 489");
    char cmd[DIR_CAP + 128];
    snprintf(cmd, sizeof cmd, "find '%s' -name 'config.json*' | grep -q .", cache);
    CHECKF(system(cmd) != 0, "a config.json file was kept under %s", cache);

    st = pull("test/badrange", cache, 1, dir, err, sizeof err);
    CHECKF(st == MOGE_ERR_FORMAT, "%s (%s)", moge_status_str(st), err);
    CHECK_ERR_HAS(err, "asked for bytes 522492- but the answer starts at byte 0");
    CHECK_ERR_HAS(err, "/test/badrange/resolve/");
    snprintf(cmd, sizeof cmd, "find '%s' -name 'model.safetensors' | grep -q .", cache);
    CHECKF(system(cmd) != 0, "a model.safetensors was kept under %s", cache);
    rm_rf(cache);
}

static void test_unauthorized(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/private", cache, 0, dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "HF_TOKEN missing or not accepted");
    CHECK_ERR_HAS(err, "401");
    CHECK_ERR_HAS(err, "test/private");
    moge_pull_params p = params(cache, 0);
    p.token = "wrong";
    st = moge_pull("test/private", &p, dir, sizeof dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "HF_TOKEN missing or not accepted");
    p.token = TOKEN;
    st = moge_pull("test/private", &p, dir, sizeof dir, err, sizeof err);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors"));
    rm_rf(cache);

    /* the token from HF_TOKEN, sent with every request (API, 6 files, the weights' redirect) */
    if (!new_cache(cache)) return;
    int with0, without0, with1, without1;
    count_auth("test/private", &with0, &without0);
    setenv("HF_TOKEN", TOKEN, 1);
    st = pull("test/private", cache, 0, dir, err, sizeof err);
    unsetenv("HF_TOKEN");
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "tokenizer.json"));
    count_auth("test/private", &with1, &without1);
    CHECKF(with1 - with0 == 8 && without1 == without0, "%d requests with the token, %d without",
           with1 - with0, without1 - without0);
    rm_rf(cache);
}

static void test_not_found(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/missing", cache, 3, dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "repository test/missing not found");
    CHECK_ERR_HAS(err, "404");
    CHECK(count_requests("/api/models/test/missing", NULL, NULL, 0) == 1); /* not retried */
    st = pull("test/tiny@nope", cache, 0, dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "revision \"nope\" not found");
    CHECK_ERR_HAS(err, "test/tiny");
    st = pull("test/noweights", cache, 0, dir, err, sizeof err);
    CHECK(st == MOGE_ERR_UNSUPPORTED);
    CHECK_ERR_HAS(err, "test/noweights");
    CHECK_ERR_HAS(err, ".safetensors");
    CHECK(!exists(cache, "models/test/missing"));
    rm_rf(cache);
}

static void test_server_error(void) {
    char cache[64], dir[DIR_CAP], err[1024] = "";
    if (!new_cache(cache)) return;
    moge_status st = pull("test/broken", cache, 1, dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, "HTTP 500");
    CHECK_ERR_HAS(err, "/test/broken/resolve/");
    CHECK_ERR_HAS(err, "2 attempts");
    CHECK(count_requests("/model.safetensors", NULL, NULL, 0) >= 2);
    CHECK(n_part_files(cache) == 0); /* nothing received: no partial file left */
    rm_rf(cache);
}

static void test_sharded(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    setenv("MOGE_HF_ENDPOINT", server() ? endpoint : "", 1);
    setenv("MOGE_CACHE", cache, 1);
    moge_status st = moge_pull("test/sharded", NULL, dir, sizeof dir, err, sizeof err); /* all from the environment */
    unsetenv("MOGE_HF_ENDPOINT");
    unsetenv("MOGE_CACHE");
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(strncmp(dir, cache, strlen(cache)) == 0);
    CHECK(file_size(dir, "model-00001-of-00002.safetensors") == 256 * 40);
    CHECK(file_size(dir, "model-00002-of-00002.safetensors") == 256 * 30);
    CHECK(exists(dir, "model.safetensors.index.json") && exists(dir, "config.json"));
    CHECK(!exists(dir, "consolidated.safetensors"));
    CHECK(count_requests("consolidated.safetensors", NULL, NULL, 0) == 0);
    rm_rf(cache);
}

static void test_disk_error(void) {
    char cache[64], dir[DIR_CAP], err[1024] = "", path[DIR_CAP];
    if (!new_cache(cache)) return;
    snprintf(path, sizeof path, "%s/file", cache);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    strcat(path, "/cache");
    moge_status st = pull("test/tiny", path, 0, dir, err, sizeof err);
    CHECK(st == MOGE_ERR_IO);
    CHECK_ERR_HAS(err, path);
    CHECK_ERR_HAS(err, "Not a directory");
    rm_rf(cache);
}

/* Files reported unverified by moge_pull, and whether their size was checked. */
typedef struct {
    int n, n_sized;
    char names[512];
} unverified_log;

static void on_unverified(const char *file, bool size_checked, void *user) {
    unverified_log *u = user;
    u->n++;
    u->n_sized += size_checked;
    snprintf(u->names + strlen(u->names), sizeof u->names - strlen(u->names), "%s ", file);
}

static moge_status pull_logged(const char *repo, const char *cache, int retries, char *dir, char *err, size_t err_size,
                               unverified_log *u) {
    moge_pull_params p = params(cache, retries);
    p.unverified = on_unverified;
    p.unverified_user = u;
    return moge_pull(repo, &p, dir, DIR_CAP, err, err_size);
}

/* Halves dir/name in place (a truncated copy in the cache). */
static bool truncate_half(const char *dir, const char *name) {
    char path[DIR_CAP + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 && truncate(path, sb.st_size / 2) == 0;
}

/* Issue 18, defect 10: a listing without sizes or hashes (test/nosizes): the HEAD headers give
 * them (X-Linked-Size / X-Linked-Etag for the LFS weights, Content-Length and the git blob id as
 * ETag for the rest), so a cut-off transfer resumes, every file is verified, and a truncated file
 * left in the cache is fetched again instead of being taken as complete. */
static void test_sizes_from_headers(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    unverified_log u = {0};
    moge_status st = pull_logged("test/nosizes", cache, 2, dir, err, sizeof err, &u);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors") && same_as_model(dir, "config.json") && same_as_model(dir, "tokenizer.json"));
    CHECKF(u.n == 0, "unverified: %s", u.names);
    char commit[41], cdn[128];
    commit_of("test/nosizes", commit);
    snprintf(cdn, sizeof cdn, "/_cdn/test/nosizes/%s/model.safetensors", commit);
    CHECK(count_method("HEAD", "/resolve/main/config.json") + count_method("HEAD", "/config.json") >= 1);
    CHECK(count_method("HEAD", "/model.safetensors") >= 1);
    CHECKF(count_requests(cdn, "bytes=", NULL, 0) == 1, "the cut-off transfer did not resume with a Range request");
    CHECK(n_part_files(cache) == 0);
    /* a truncated file in the snapshot: the next pull fetches it again */
    CHECK(truncate_half(dir, "model.safetensors"));
    int before = count_method("GET", cdn);
    st = pull_logged("test/nosizes", cache, 0, dir, err, sizeof err, &u);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors"));
    CHECK(count_method("GET", cdn) == before + 1);
    /* a wrong X-Linked-Etag is a SHA-256 mismatch, the download deleted */
    st = pull_logged("test/nosizes-badsum", cache, 0, dir, err, sizeof err, &u);
    CHECKF(st == MOGE_ERR_FORMAT, "%s: %s", moge_status_str(st), err);
    CHECK_ERR_HAS(err, "model.safetensors: SHA-256 mismatch");
    CHECK(n_part_files(cache) == 0);
    /* a file kept in git is checked against its blob id ("blobId" of the listing) */
    st = pull_logged("test/badgit", cache, 0, dir, err, sizeof err, &u);
    CHECKF(st == MOGE_ERR_FORMAT, "%s: %s", moge_status_str(st), err);
    CHECK_ERR_HAS(err, "config.json: git blob id (SHA-1) mismatch");
    rm_rf(cache);
}

/* test/bare says nothing of its files (no listing info, no X-Linked-* or ETag, no Content-Length):
 * the pull works, reports every file as unverified (not even a size checked), and never keeps a
 * file of the cache on trust: a truncated one is fetched whole again. */
static void test_unverified_reported(void) {
    char cache[64], dir[DIR_CAP], err[512] = "";
    if (!new_cache(cache)) return;
    unverified_log u = {0};
    moge_status st = pull_logged("test/bare", cache, 0, dir, err, sizeof err, &u);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors") && same_as_model(dir, "config.json"));
    CHECKF(u.n == 4 && u.n_sized == 0 && strstr(u.names, "model.safetensors") && strstr(u.names, "config.json"), "%d unverified (%d sized): %s",
           u.n, u.n_sized, u.names);
    CHECK(truncate_half(dir, "model.safetensors"));
    memset(&u, 0, sizeof u);
    st = pull_logged("test/bare", cache, 0, dir, err, sizeof err, &u);
    CHECKF(st == MOGE_OK, "%s", err);
    CHECK(same_as_model(dir, "model.safetensors"));
    CHECK(u.n == 4);
    /* the command says so on stderr */
    char cmd[1024];
    const char *bin = getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge";
    snprintf(cmd, sizeof cmd, "MOGE_HF_ENDPOINT=%s MOGE_CACHE=%s %s pull test/bare >/dev/null 2>%s/stderr.txt", server(), cache, bin, cache);
    CHECK(system(cmd) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/stderr.txt", cache);
    size_t len = 0;
    char *text = slurp(path, &len);
    CHECKF(text && strstr(text, "model.safetensors") && strstr(text, "not verified"), "stderr: %s", text ? text : "(none)");
    free(text);
    rm_rf(cache);
}

int main(void) {
    /* nothing from the caller's environment may redirect these tests */
    static const char *vars[] = {"HF_TOKEN", "MOGE_HF_ENDPOINT", "MOGE_CACHE", "http_proxy", "HTTP_PROXY",
                                 "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atexit(server_stop);
    RUN_TESTS(T(test_bad_arguments), T(test_pull_success), T(test_resolve_offline), T(test_resume_next_pull),
              T(test_resume_within_pull), T(test_checksum_mismatch),
              T(test_size_and_range_mismatch), T(test_unauthorized), T(test_not_found),
              T(test_server_error), T(test_sharded), T(test_disk_error), T(test_sizes_from_headers), T(test_unverified_reported));
}
