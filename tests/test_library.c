/*
 * test_library.c — the library as a user links it: libmoge.a and libmoge.so export exactly the
 * functions include/moge.h declares (every one marked MOGE_API, nothing else: no internal name
 * can clash with a user's), a program with its own set_err/tk_hash links against the static
 * library, and `make install PREFIX=...` gives a header, libraries, command and moge.pc with
 * which `cc app.c $(pkg-config --cflags --libs moge)` builds examples/simple.c, whose text
 * equals the in-tree build's.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "moge.h"
#include "tests/harness.h"
#include "tests/test_util.h"

#define MAX_NAMES 1024

typedef struct {
    char *name[MAX_NAMES];
    int n;
} name_set;

static void names_add(name_set *s, const char *name, size_t len) {
    if (s->n < MAX_NAMES) s->name[s->n++] = strndup(name, len);
}
static void names_free(name_set *s) {
    for (int i = 0; i < s->n; i++) free(s->name[i]);
    s->n = 0;
}
static bool names_has(const name_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name)) return true;
    return false;
}

static const char *build_dir(void) { return getenv("BUILD") ? getenv("BUILD") : "build"; }

/* The functions include/moge.h declares: lines at column 0 that declare `moge_x(`. Those without
 * MOGE_API go to unmarked. */
static void header_functions(const char *header, name_set *api, name_set *unmarked) {
    char *h = slurp_text(header);
    for (char *line = h; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        bool decl = isalpha((unsigned char)line[0]) && strncmp(line, "typedef", 7) != 0;
        char *paren = decl ? memchr(line, '(', len) : NULL;
        if (paren) {
            char *id = paren;
            while (id > line && (isalnum((unsigned char)id[-1]) || id[-1] == '_')) id--;
            if (paren - id > 5 && !strncmp(id, "moge_", 5)) {
                bool marked = !strncmp(line, "MOGE_API ", 9);
                names_add(marked ? api : unmarked, id, (size_t)(paren - id));
            }
        }
        line = end ? end + 1 : NULL;
    }
    free(h);
}

/* Defined global symbols of a library, as `nm` lists them (3rd field). */
static int library_exports(const char *nm_args, name_set *out) {
    char cmd[512], path[256];
    snprintf(path, sizeof path, "%s/test_library.nm", build_dir());
    snprintf(cmd, sizeof cmd, "nm %s >%s 2>&1", nm_args, path);
    int rc = shell(cmd);
    char *text = slurp_text(path);
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        char a[256], b[16], c[256];
        if (sscanf(line, "%255s %15s %255s", a, b, c) == 3) names_add(out, c, strlen(c));
        line = end ? end + 1 : NULL;
    }
    free(text);
    return rc;
}

static void check_exports(const char *what, const char *nm_args, const char *header, int at_least) {
    name_set api = {0}, unmarked = {0}, exported = {0};
    header_functions(header, &api, &unmarked);
    CHECKF(api.n >= at_least, "%s: only %d MOGE_API functions found", header, api.n);
    for (int i = 0; i < unmarked.n; i++) CHECKF(0, "%s declares %s without MOGE_API", header, unmarked.name[i]);
    CHECKF(library_exports(nm_args, &exported) == 0, "nm %s failed", nm_args);
    for (int i = 0; i < exported.n; i++)
        CHECKF(names_has(&api, exported.name[i]), "%s exports %s, which %s does not declare", what, exported.name[i], header);
    for (int i = 0; i < api.n; i++)
        CHECKF(names_has(&exported, api.name[i]), "%s does not export %s", what, api.name[i]);
    names_free(&api);
    names_free(&unmarked);
    names_free(&exported);
}

static void test_static_exports(void) {
    char args[256];
    snprintf(args, sizeof args, "-g --defined-only %s/libmoge.a", build_dir());
    check_exports("libmoge.a", args, "include/moge.h", 50);
    snprintf(args, sizeof args, "-g --defined-only %s/libmoge-hub.a", build_dir());
    check_exports("libmoge-hub.a", args, "include/moge_hub.h", 5);
}

static void test_shared_exports(void) {
    char args[256];
    snprintf(args, sizeof args, "-D --defined-only %s/libmoge.so", build_dir());
    check_exports("libmoge.so", args, "include/moge.h", 50);
    snprintf(args, sizeof args, "-D --defined-only %s/libmoge-hub.so", build_dir());
    check_exports("libmoge-hub.so", args, "include/moge_hub.h", 5);
    /* the inference library needs neither libcurl nor OpenSSL (the hub library does) */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "readelf -d %s/libmoge.so | grep NEEDED | grep -Eq 'libcurl|libcrypto|libssl'", build_dir());
    CHECKF(shell(cmd) != 0, "libmoge.so links libcurl or OpenSSL");
    snprintf(cmd, sizeof cmd, "readelf -d %s/libmoge-hub.so | grep NEEDED | grep -q libcurl", build_dir());
    CHECKF(shell(cmd) == 0, "libmoge-hub.so does not link libcurl");
}

/* The shell variables the commands below use: the compiler and optimisation flags the library
 * was built with: the sanitizer build links its runtime too) as TEST_CC and B (the build folder). */
static void set_shell_vars(void) {
    char cc[512];
    snprintf(cc, sizeof cc, "%s %s -std=c11", getenv("MOGE_TEST_CC") ? getenv("MOGE_TEST_CC") : "cc",
             getenv("MOGE_TEST_OPT") ? getenv("MOGE_TEST_OPT") : "-O2");
    setenv("TEST_CC", cc, 1);
    setenv("B", build_dir(), 1);
    if (!getenv("MOGE_TEST_OPT")) setenv("MOGE_TEST_OPT", "-O2", 1);
}

/* A user program with functions named like the library's internals links against libmoge.a
 * (a duplicate definition would fail the link) and calls into it. */
static void test_user_names_do_not_clash(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/test_library_clash.c", build_dir());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("#include <stdio.h>\n#include <string.h>\n#include \"moge.h\"\n"
          "int set_err(void) { return 1; }\nint tk_hash(void) { return 2; }\n"
          "int read_whole_file(void) { return 3; }\nint config_load(void) { return 4; }\n"
          "int threadpool_new(void) { return 5; }\nint backend_cpu(void) { return 6; }\n"
          "int main(void) {\n  moge_model *m = NULL; char err[256];\n"
          "  moge_status st = moge_model_load(\"models/stories260K\", NULL, &m, err, sizeof err);\n"
          "  if (st != MOGE_OK) { puts(err); return 1; }\n  moge_model_info info; moge_model_get_info(m, &info);\n"
          "  printf(\"%d %d\\n\", info.n_layer, set_err() + tk_hash() + read_whole_file() + config_load() + threadpool_new() + backend_cpu());\n"
          "  moge_model_free(m);\n  return 0;\n}\n", f);
    fclose(f);
    set_shell_vars();
    int rc = shell("$TEST_CC -Iinclude -o $B/test_library_clash $B/test_library_clash.c $B/libmoge.a "
                   "$(pkg-config --libs libpcre2-8 libcjson libutf8proc) -lpthread -lm "
                   ">$B/test_library_clash.err 2>&1 && $B/test_library_clash >$B/test_library_clash.out 2>>$B/test_library_clash.err");
    snprintf(path, sizeof path, "%s/test_library_clash.err", build_dir());
    char *err = slurp_text(path);
    CHECKF(rc == 0, "a program defining set_err, tk_hash, ... did not link or run against libmoge.a: %s", err);
    free(err);
    snprintf(path, sizeof path, "%s/test_library_clash.out", build_dir());
    char *out = slurp_text(path);
    CHECKF(!strcmp(out, "5 21\n"), "output %s", out);
    free(out);
}

/* make install into a fresh prefix; examples/simple.c built with pkg-config against it, shared and
 * static, prints what the in-tree build prints (the text; the speed line differs). */
static void test_install(void) {
    char prefix[512], path[600];
    char *cwd = realpath(".", NULL);
    if (build_dir()[0] == '/') snprintf(prefix, sizeof prefix, "%s/test_library_prefix", build_dir()); /* make BUILD=/abs/path */
    else snprintf(prefix, sizeof prefix, "%s/%s/test_library_prefix", cwd, build_dir());
    free(cwd);
    set_shell_vars();
    setenv("P", prefix, 1);
    int rc = shell("rm -rf $P && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s install BUILD=$B OPT=\"$MOGE_TEST_OPT\" PREFIX=$P "
                   ">$P.log 2>&1");
    snprintf(path, sizeof path, "%s.log", prefix);
    char *log = slurp_text(path);
    CHECKF(rc == 0, "make install PREFIX=%s failed: %s", prefix, log);
    free(log);
    if (rc) return;
    static const char *const files[] = {"include/moge.h", "include/moge_hub.h", "lib/libmoge.a", "lib/libmoge.so",
                                        "lib/libmoge.so.0", "lib/libmoge-hub.a", "lib/libmoge-hub.so", "bin/moge",
                                        "lib/pkgconfig/moge.pc", "lib/pkgconfig/moge-hub.pc"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", prefix, files[i]);
        FILE *f = fopen(path, "rb");
        CHECKF(f != NULL, "make install did not install %s", path);
        if (f) fclose(f);
    }
    rc = shell("export PKG_CONFIG_PATH=$P/lib/pkgconfig; "
               "$TEST_CC -o $P/simple-shared examples/simple.c $(pkg-config --cflags --libs moge) >$P/cc.err 2>&1 && "
               "$TEST_CC -o $P/simple-static examples/simple.c $(pkg-config --cflags moge) $P/lib/libmoge.a "
               "$(pkg-config --libs $(pkg-config --print-requires-private moge)) -lpthread -lm >>$P/cc.err 2>&1");
    snprintf(path, sizeof path, "%s/cc.err", prefix);
    char *err = slurp_text(path);
    CHECKF(rc == 0, "examples/simple.c does not build with pkg-config against the install: %s", err);
    free(err);
    if (rc) return;
    rc = shell("A='models/stories260K models/stories260K'; "
               "LD_LIBRARY_PATH=$P/lib ldd $P/simple-shared | grep -q \"$P/lib/libmoge.so.0\" && "
               "LD_LIBRARY_PATH=$P/lib $P/simple-shared $A 'Once upon a time' 2>$P/shared.err | grep -v tokens/s >$P/shared.out && "
               "$P/simple-static $A 'Once upon a time' 2>$P/static.err | grep -v tokens/s >$P/static.out && "
               "$B/examples/simple $A 'Once upon a time' 2>$P/tree.err | grep -v tokens/s >$P/tree.out && "
               "cmp $P/shared.out $P/tree.out && cmp $P/static.out $P/tree.out");
    CHECKF(rc == 0, "the installed libraries' simple does not run the prefix's shared library or prints other "
           "text than build/examples/simple (%s: shared.out, static.out, tree.out)", prefix);
    snprintf(path, sizeof path, "%s/tree.out", prefix);
    char *out = slurp_text(path);
    CHECKF(strlen(out) > 40, "examples/simple printed too little: %s", out);
    free(out);
    CHECKF(shell("$P/bin/moge info -m models/stories260K >$P/info.out 2>&1") == 0, "%s/bin/moge info failed", prefix);
    /* the hub library through its own pkg-config file: an empty cache lists nothing */
    FILE *f = fopen(strcat(strcpy(path, prefix), "/hub.c"), "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("#include <stdio.h>\n#include \"moge_hub.h\"\nstatic void on(const moge_cache_entry *e, void *u) { (void)e; ++*(int *)u; }\n"
          "int main(void) { int n = 0; char err[256];\n  if (moge_cache_list(on, &n, err, sizeof err) != MOGE_OK) { puts(err); return 1; }\n"
          "  printf(\"%d %s\\n\", n, moge_version());\n  return 0;\n}\n", f);
    fclose(f);
    rc = shell("export PKG_CONFIG_PATH=$P/lib/pkgconfig; $TEST_CC -o $P/hub $P/hub.c $(pkg-config --cflags --libs moge-hub) >$P/hub.err 2>&1 && "
               "mkdir -p $P/empty-cache && MOGE_CACHE=$P/empty-cache LD_LIBRARY_PATH=$P/lib $P/hub >$P/hub.out 2>>$P/hub.err");
    snprintf(path, sizeof path, "%s/hub.err", prefix);
    char *herr = slurp_text(path);
    CHECKF(rc == 0, "a program of the hub library does not build or run with pkg-config moge-hub: %s", herr);
    free(herr);
    snprintf(path, sizeof path, "%s/hub.out", prefix);
    char *hout = slurp_text(path);
    CHECKF(!strncmp(hout, "0 ", 2), "hub program printed %s", hout);
    free(hout);
}

/* One name table per enum: every value's name parses back to it, the next value has no name, and
 * anything else is MOGE_ERR_ARG leaving the output alone. */
static void test_enum_names(void) {
#define ROUND_TRIP(kind, type, last, want_last)                                                          \
    do {                                                                                                 \
        for (int v = 0; v <= (int)(last); v++) {                                                         \
            const char *name = moge_##kind##_name((type)v);                                              \
            type back = (type)3;                                                                         \
            CHECKF(name && moge_##kind##_parse(name, &back) == MOGE_OK && (int)back == v, #kind " %d", v); \
        }                                                                                                \
        CHECK(!strcmp(moge_##kind##_name(last), want_last));                                             \
        CHECK(moge_##kind##_name((type)((int)(last) + 1)) == NULL);                                      \
        type keep = (type)1;                                                                             \
        CHECK(moge_##kind##_parse("no-such", &keep) == MOGE_ERR_ARG && (int)keep == 1);                 \
        CHECK(moge_##kind##_parse(NULL, &keep) == MOGE_ERR_ARG);                                        \
    } while (0)
    ROUND_TRIP(spec, moge_spec_mode, MOGE_SPEC_TREE, "tree");
    ROUND_TRIP(quant, moge_quant, MOGE_QUANT_W4A8, "w4a8");
    ROUND_TRIP(routing, moge_routing, MOGE_ROUTING_GROUP_LIMITED, "group_limited");
    ROUND_TRIP(backend, moge_backend, MOGE_BACKEND_REF, "ref");
    CHECK(!strcmp(moge_stop_name(MOGE_STOP_CONTEXT_FULL), "context full") && !strcmp(moge_stop_name(MOGE_STOP_LENGTH), "length"));
    CHECK(moge_stop_name((moge_stop_reason)4) == NULL);
}

int main(void) {
    RUN_TESTS(T(test_enum_names), T(test_static_exports), T(test_shared_exports), T(test_user_names_do_not_clash), T(test_install));
}
