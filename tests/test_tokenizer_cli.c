/*
 * test_tokenizer_cli.c — `moge tokenize` (cli/cmd_tokenize.c, compiled into this test): ids
 * for -p, --add-special, --decode, --jsonl in order (against the reference's ids for all of
 * Mistral's dev cases), and the errors for bad flags, files and ids. Each command runs in a
 * child process with stdin from a file and stdout/stderr captured.
 */
#include "harness.h"

#include "../cli/cmd_tokenize.c"
#include "../cli/cmd_common.c" /* cli_parse_flags, which cmd_tokenize uses */

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MISTRAL "tests/fixtures/tokenizers/mistral"
#define QWEN3 "tests/fixtures/tokenizers/qwen3"

typedef struct {
    int rc;
    char *out, *err;
} result;

static char *read_fd(int fd) {
    tk_buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0) tk_buf_put(&b, chunk, (size_t)n);
    if (!b.p) tk_buf_put(&b, "", 0);
    return b.p;
}

/* Runs cmd_tokenize(args...) with stdin read from stdin_file (NULL: empty). */
static result run(const char *stdin_file, const char *const *args) {
    result r = {-1, NULL, NULL};
    char outp[] = "/tmp/moge_cli_out_XXXXXX", errp[] = "/tmp/moge_cli_err_XXXXXX";
    int of = mkstemp(outp), ef = mkstemp(errp);
    if (of < 0 || ef < 0) return r;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int in = open(stdin_file ? stdin_file : "/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(of, 1);
        dup2(ef, 2);
        char *argv[32];
        int argc = 0;
        argv[argc++] = "tokenize";
        for (; args[argc - 1] && argc < 31; argc++) argv[argc] = (char *)args[argc - 1];
        argv[argc] = NULL;
        int rc = cmd_tokenize(argc, argv);
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    lseek(of, 0, SEEK_SET);
    lseek(ef, 0, SEEK_SET);
    r.out = read_fd(of);
    r.err = read_fd(ef);
    close(of);
    close(ef);
    unlink(outp);
    unlink(errp);
    return r;
}

static void done(result *r) {
    free(r->out);
    free(r->err);
}

/* The output --jsonl should give for a cases file: one {"ids": [...]} line per case. */
static char *slurp_cases(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    tk_buf b = {0};
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *p = strstr(line, "\"ids\":[");
        if (!p) continue;
        tk_buf_put(&b, "{\"ids\": [", 9);
        p += 7;
        for (bool first = true; *p && *p != ']'; first = false) {
            char *e;
            long v = strtol(p, &e, 10);
            char num[32];
            int k = snprintf(num, sizeof num, first ? "%ld" : ", %ld", v);
            tk_buf_put(&b, num, (size_t)k);
            p = *e == ',' ? e + 1 : e;
        }
        tk_buf_put(&b, "]}\n", 3);
    }
    free(line);
    fclose(f);
    *len = b.len;
    return b.p;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_cli_encode_prompt(void) {
    result r = run(NULL, ARGS("-m", QWEN3, "-p", "Hello world<|im_end|>"));
    CHECKF(r.rc == 0 && strcmp(r.out, "9707 1879 151645\n") == 0, "rc %d out \"%s\" err \"%s\"", r.rc, r.out, r.err);
    done(&r);
    r = run(NULL, ARGS("-m", MISTRAL "/tokenizer.json", "-p", "Hello world", "--add-special"));
    CHECKF(r.rc == 0 && strcmp(r.out, "1 22557 1526\n") == 0, "out \"%s\"", r.out);
    done(&r);
    r = run(NULL, ARGS("-m", MISTRAL, "-p", ""));
    CHECK(r.rc == 0 && strcmp(r.out, "\n") == 0);
    done(&r);
}

static void test_cli_decode(void) {
    result r = run(NULL, ARGS("-m", MISTRAL, "--decode", "-p", "1 22557 1526"));
    CHECKF(r.rc == 0 && strcmp(r.out, "<s> Hello world\n") == 0, "out \"%s\" err \"%s\"", r.out, r.err);
    done(&r);
    char path[] = "/tmp/moge_cli_in_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "22557,\n1526\n", 12) == 12);
    close(fd);
    r = run(path, ARGS("-m", MISTRAL, "--decode"));
    CHECKF(r.rc == 0 && strcmp(r.out, "Hello world\n") == 0, "out \"%s\"", r.out);
    done(&r);
    unlink(path);
}

static void test_cli_jsonl_matches_reference(void) {
    result r = run(MISTRAL "/cases-dev.jsonl", ARGS("-m", MISTRAL, "--jsonl"));
    CHECKF(r.rc == 0, "rc %d err %s", r.rc, r.err);
    size_t len;
    char *want = slurp_cases(MISTRAL "/cases-dev.jsonl", &len);
    CHECK(want != NULL);
    size_t lines = 0, same = 0;
    const char *a = r.out, *b = want;
    while (a && b && *a && *b) {
        const char *ae = strchr(a, '\n'), *be = strchr(b, '\n');
        if (!ae || !be) break;
        lines++;
        same += (ae - a) == (be - b) && memcmp(a, b, (size_t)(ae - a)) == 0;
        a = ae + 1;
        b = be + 1;
    }
    printf("  moge tokenize --jsonl: %zu/%zu lines equal the reference ids\n", same, lines);
    CHECK(lines == 176 && same == lines);
    free(want);
    done(&r);
}

static void test_cli_jsonl_decode(void) {
    char path[] = "/tmp/moge_cli_in_XXXXXX";
    int fd = mkstemp(path);
    const char *in = "{\"ids\": [9707, 1879]}\n{\"ids\": [198, 1, 151643]}\n";
    CHECK(fd >= 0 && write(fd, in, strlen(in)) == (ssize_t)strlen(in));
    close(fd);
    result r = run(path, ARGS("-m", QWEN3, "--jsonl", "--decode"));
    CHECKF(r.rc == 0 && strcmp(r.out, "{\"text\": \"Hello world\"}\n{\"text\": \"\\n\\\"<|endoftext|>\"}\n") == 0,
           "out \"%s\" err \"%s\"", r.out, r.err);
    done(&r);
    unlink(path);
}

static void test_cli_errors(void) {
    result r = run(NULL, ARGS("-p", "x"));
    CHECK(r.rc == 2 && strstr(r.err, "-m PATH is required"));
    done(&r);
    r = run(NULL, ARGS("-m", MISTRAL, "--frobnicate"));
    CHECK(r.rc == 2 && strstr(r.err, "--frobnicate"));
    done(&r);
    r = run(NULL, ARGS("-m"));
    CHECK(r.rc == 2 && strstr(r.err, "-m needs a value"));
    done(&r);
    r = run(NULL, ARGS("-m", "tests/fixtures/tokenizers/nope", "-p", "x"));
    CHECK(r.rc == 1 && strstr(r.err, "-m") && strstr(r.err, "tokenizers/nope"));
    done(&r);
    r = run(NULL, ARGS("-m", MISTRAL, "--decode", "-p", "1 32000"));
    CHECK(r.rc == 1 && strstr(r.err, "32000") && strstr(r.err, "-p"));
    done(&r);
    r = run(NULL, ARGS("-m", MISTRAL, "--decode", "-p", "1 x2"));
    CHECK(r.rc == 1 && strstr(r.err, "'x2' is not a token id"));
    done(&r);
    char path[] = "/tmp/moge_cli_in_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "{\"text\": \"ok\"}\n{\"txt\": 1}\n", 26) == 26);
    close(fd);
    r = run(path, ARGS("-m", MISTRAL, "--jsonl"));
    CHECK(r.rc == 1 && strstr(r.err, "stdin line 2") && strncmp(r.out, "{\"ids\": [", 9) == 0);
    done(&r);
    unlink(path);
}

int main(void) {
    RUN_TESTS(T(test_cli_encode_prompt), T(test_cli_decode), T(test_cli_jsonl_matches_reference),
              T(test_cli_jsonl_decode), T(test_cli_errors));
}
