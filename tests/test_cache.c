/*
 * test_cache.c — `moge list` and `moge rm` on a cache that `moge pull` filled from the loopback
 * imitation of the hub (tests/hub_server.h): list names the model with its size and revisions,
 * `moge run -m OWNER/NAME` runs it, rm frees it (and says how much), list is empty again; bad
 * names and models not in the cache are clear errors; the library calls agree with the command.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "hub_server.h"
#include "moge.h"
#include "test_util.h"

#define OUT "build/test_cache.out"
#define ERR "build/test_cache.err"
#define MOGE(args) moge_cmd(args, OUT, ERR)

static pid_t server_pid = -1;

/* The imitation hub in a child process; its endpoint goes to $MOGE_HF_ENDPOINT. */
static bool server_start(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 || getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        printf("  hub server: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return false;
    }
    fflush(stdout);
    if ((server_pid = fork()) == 0) {
        hub_serve(fd, "models/stories260K", 60.0);
        _exit(0);
    }
    close(fd);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", (int)ntohs(a.sin_port));
    setenv("MOGE_HF_ENDPOINT", endpoint, 1);
    return server_pid > 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void count_entry(const moge_cache_entry *e, void *user) {
    int *n = user;
    (*n)++;
    CHECKF(!strcmp(e->repo, "test/tiny") && e->bytes > 500000 && strstr(e->revisions, "main@") && e->partial_files == 0,
           "entry %s, %lld bytes, revisions %s, %d partial", e->repo, (long long)e->bytes, e->revisions, e->partial_files);
}

static void test_list_run_rm(void) {
    char cache[] = "/tmp/moge-test-cache-XXXXXX";
    CHECK(mkdtemp(cache) != NULL);
    setenv("MOGE_CACHE", cache, 1);
    CHECK(MOGE("list") == 0);
    char *err = slurp_text(ERR), *out = slurp_text(OUT);
    CHECKF(strstr(err, "no models in the cache") && out[0] == 0, "empty cache: stdout %s, stderr %s", out, err);
    free(err);
    free(out);

    CHECK(MOGE("pull test/tiny") == 0);
    CHECK(MOGE("pull test/tiny@v1") == 0);
    CHECK(MOGE("list") == 0);
    out = slurp_text(OUT);
    CHECKF(strstr(out, "NAME") && strstr(out, "test/tiny") && strstr(out, " MB") && strstr(out, "main@") && strstr(out, "v1@"),
           "moge list: %s", out);
    free(out);
    int n = 0;
    char msg[512];
    CHECK(moge_cache_list(count_entry, &n, msg, sizeof msg) == MOGE_OK && n == 1);

    CHECK(MOGE("run -m test/tiny -n 8 --temp 0 -p Once") == 0);
    out = slurp_text(OUT);
    CHECKF(strlen(out) > 10, "run -m test/tiny: %s", out);
    free(out);

    CHECK(MOGE("rm test/tiny") == 0);
    out = slurp_text(OUT);
    CHECKF(strstr(out, "removed test/tiny (") && strstr(out, " MB)"), "moge rm: %s", out);
    free(out);
    CHECK(MOGE("list") == 0);
    out = slurp_text(OUT);
    CHECKF(out[0] == 0, "list after rm: %s", out);
    free(out);
    expect_moge_error("run -m test/tiny -n 4", 1, "not in the cache", OUT, ERR);
    expect_moge_error("rm test/tiny", 1, "test/tiny is not in the cache", OUT, ERR);
    expect_moge_error("rm ../etc", 2, "expected OWNER/NAME", OUT, ERR);
    expect_moge_error("rm test/..", 2, "expected OWNER/NAME", OUT, ERR);
    expect_moge_error("rm", 2, "give the model to remove", OUT, ERR);
    expect_moge_error("rm --force x/y", 2, "unknown option \"--force\"", OUT, ERR);
    expect_moge_error("list --all", 2, "unknown option \"--all\"", OUT, ERR);
    CHECK(moge_cache_remove(NULL, NULL, msg, sizeof msg) == MOGE_ERR_ARG);
    CHECK(moge_cache_remove("a/b/c", NULL, msg, sizeof msg) == MOGE_ERR_ARG);
    nftw(cache, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    unsetenv("MOGE_CACHE");
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (!server_start()) {
        puts("FAIL test_list_run_rm (no loopback server)");
        return 1;
    }
    int rc;
    {
        static const harness_case cases[] = {T(test_list_run_rm)};
        rc = harness_run(cases, 1);
    }
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
    return rc;
}
