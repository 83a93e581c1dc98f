/* cmd_common.c — what the subcommands share (see cli.h): flag value parsing; the flag table of
 * run, chat and bench, its parser and its help; loading the model and the drafter. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "moge.h"
#include "moge_hub.h"

#include "cli/cli.h"

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "moge %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_int(const char *cmd, const char *flag, const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "moge %s: %s: expected an integer in %ld..%ld, got \"%s\"\n", cmd, flag, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *cmd, const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "moge %s: %s: expected a number in %g..%g, got \"%s\"\n", cmd, flag, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "moge %s: %s: expected a non-negative integer, got \"%s\"\n", cmd, flag, s);
        return false;
    }
    *out = v;
    return true;
}

/* The index of s in names (NULL-terminated), or -1 after printing "expected a, b or c". */
/* The value v >= first whose name_of(v) is s; -1 after printing the names offered. */
static int choice(const char *cmd, const char *flag, const char *s, const char *(*name_of)(int), int first) {
    int end = first;
    for (; name_of(end); end++)
        if (!strcmp(s, name_of(end))) return end;
    fprintf(stderr, "moge %s: %s: expected ", cmd, flag);
    for (int k = first; k < end; k++) fprintf(stderr, "%s%s", k == first ? "" : k == end - 1 ? " or " : ", ", name_of(k));
    fprintf(stderr, ", got \"%s\"\n", s);
    return -1;
}

bool cli_tree_shape(const char *cmd, const char *s, int32_t *shape, int32_t *n) {
    *n = 0;
    for (const char *q = s; *q;) {
        char *end;
        long x = strtol(q, &end, 10);
        if (end == q || x < 1 || x > 16 || *n == 16 || (*end && *end != ',')) break;
        shape[(*n)++] = (int32_t)x;
        if (!*end) return true;
        q = end + 1;
    }
    fprintf(stderr, "moge %s: --tree-shape: expected up to 16 numbers 1..16 separated by commas, got \"%s\"\n", cmd, s);
    return false;
}

bool cli_write_text(const char *cmd, const char *flag, const char *path, const char *text) {
    if (!strcmp(path, "-")) return puts(text) >= 0;
    char tmp[CLI_PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) == 0) return true;
    fprintf(stderr, "moge %s: %s: cannot write %s\n", cmd, flag, path);
    remove(tmp);
    return false;
}

const char *cli_human_bytes(int64_t n, char *buf, size_t cap) {
    if (n < 1000) snprintf(buf, cap, "%lld B", (long long)n);
    else if (n < 1000000) snprintf(buf, cap, "%.1f kB", n / 1e3);
    else if (n < 1000000000) snprintf(buf, cap, "%.1f MB", n / 1e6);
    else snprintf(buf, cap, "%.2f GB", n / 1e9);
    return buf;
}

bool cli_check_output(const char *cmd, const char *flag, const char *path) {
    if (!strcmp(path, "-")) return true;
    char tmp[CLI_PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    struct stat st;
    const char *why = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) why = "it is a directory";
    else {
        FILE *f = fopen(tmp, "w");
        if (!f) why = strerror(errno);
        else {
            fclose(f);
            remove(tmp);
        }
    }
    if (why) fprintf(stderr, "moge %s: %s %s: cannot write there (%s)\n", cmd, flag, path, why);
    return !why;
}

moge_status cli_tokenize(const moge_tokenizer *tok, const char *text, int32_t **ids, size_t *n) {
    size_t len = strlen(text), cap = len + 8;
    if (!(*ids = malloc(cap * sizeof **ids))) return MOGE_ERR_NOMEM;
    moge_status st = moge_tokenize(tok, text, len, true, *ids, cap, n);
    if (st == MOGE_ERR_BUFFER) {
        int32_t *bigger = realloc(*ids, *n * sizeof **ids);
        if (!bigger) return MOGE_ERR_NOMEM;
        *ids = bigger;
        st = moge_tokenize(tok, text, len, true, *ids, *n, n);
    }
    return st;
}

bool cli_read_prompts(const char *cmd, const char *path, char ***lines, int *n) {
    *lines = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "moge %s: --prompts %s: cannot open it\n", cmd, path);
        return false;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n_cap = 0;
    bool ok = true;
    while (ok && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (strspn(line, " \t") >= (size_t)len) continue;
        if (*n == n_cap) {
            n_cap = n_cap ? 2 * n_cap : 16;
            char **more = realloc(*lines, (size_t)n_cap * sizeof *more);
            if (!(ok = more != NULL)) break;
            *lines = more;
        }
        if ((ok = ((*lines)[*n] = strndup(line, (size_t)len)) != NULL)) ++*n;
    }
    free(line);
    fclose(f);
    if (!ok) fprintf(stderr, "moge %s: --prompts %s: out of memory\n", cmd, path);
    else if (*n == 0) fprintf(stderr, "moge %s: --prompts %s: the file has no prompt (one per line)\n", cmd, path);
    return ok && *n > 0;
}

char *cli_unescape(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '\\' || !r[1]) { *w++ = *r; continue; }
        char c = r[1];
        const char *hex = "0123456789abcdef";
        if (c == 'x' && r[2] && r[3] && strchr(hex, tolower((unsigned char)r[2])) && strchr(hex, tolower((unsigned char)r[3]))) {
            *w++ = (char)((strchr(hex, tolower((unsigned char)r[2])) - hex) * 16 + (strchr(hex, tolower((unsigned char)r[3])) - hex));
            r += 3;
            continue;
        }
        char e = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c == '\\' || c == '\'' || c == '"' ? c : 0;
        if (!e) { *w++ = *r; continue; } /* not an escape: the backslash stays */
        *w++ = e;
        r++;
    }
    *w = 0;
    return s;
}

bool cli_stdin_is_pipe(void) {
    struct stat st;
    return fstat(0, &st) == 0 && S_ISFIFO(st.st_mode);
}

char *cli_read_text(const char *cmd, const char *what, const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "moge %s: %s %s: %s\n", cmd, what, path, strerror(errno));
        return NULL;
    }
    size_t n = 0, cap = 4096;
    char *s = malloc(cap);
    for (size_t got; s; n += got) {
        if (cap - n < 2) {
            char *bigger = realloc(s, cap * 2);
            if (!bigger) { free(s); s = NULL; break; }
            s = bigger;
            cap *= 2;
        }
        if ((got = fread(s + n, 1, cap - n - 1, f)) == 0) break;
    }
    bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!s || bad) {
        fprintf(stderr, "moge %s: %s %s: %s\n", cmd, what, path, s ? "read error" : "out of memory");
        free(s);
        return NULL;
    }
    s[n] = 0;
    if (strlen(s) != n) {
        fprintf(stderr, "moge %s: %s %s: the text holds a NUL byte\n", cmd, what, path);
        free(s);
        return NULL;
    }
    if (n && s[n - 1] == '\n') s[--n] = 0;
    if (n && s[n - 1] == '\r') s[--n] = 0;
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* The shared flag table                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* How a row stores its value in the field of cli_common_opts at `off`: K_INT int, K_I32 int32_t,
 * K_F32 float, K_U64 uint64_t, K_STR the string, K_TRUE/K_FALSE a bool, K_ENUM vals[k] for the
 * k-th of names into an enum (int-sized, see below), K_SHAPE --tree-shape, K_KERNELS the string
 * of a kernel variant this processor runs. */
typedef enum { K_STR, K_INT, K_I32, K_F32, K_U64, K_TRUE, K_FALSE, K_ENUM, K_SHAPE, K_KERNELS } kind;

typedef struct {
    unsigned who;                  /* CLI_RUN | CLI_CHAT | CLI_BENCH */
    const char *shrt, *name, *arg; /* "-t", "--threads", "N" (shrt and arg may be NULL) */
    kind k;
    double min, max;               /* K_INT, K_I32, K_F32 */
    size_t off;
    const char *(*name_of)(int);   /* K_ENUM: the library's name of a value (NULL past the last) */
    int first;                     /* K_ENUM: the first value the flag offers */
    const char *help;
    bool show_default;             /* append " (default X)" with the command's default */
    const char *alias;             /* other names, space-separated: llama.cpp's (-md --model-draft) */
    const char *ignored;           /* a flag accepted for copied scripts and ignored: why (one line) */
} row;

_Static_assert(sizeof(moge_backend) == sizeof(int) && sizeof(moge_routing) == sizeof(int) && sizeof(moge_quant) == sizeof(int),
               "K_ENUM stores enums as int");

/* The library's name tables (moge_*_name) as K_ENUM rows read them. */
static const char *backend_name(int v) { return moge_backend_name((moge_backend)v); }
static const char *quant_name(int v) { return moge_quant_name((moge_quant)v); }
static const char *routing_name(int v) { return moge_routing_name((moge_routing)v); }
static const char *spec_name(int v) { return moge_spec_name((moge_spec_mode)v); }
#define ENUM(fn, from) .name_of = fn, .first = from
#define ALL (CLI_RUN | CLI_CHAT | CLI_BENCH)
#define MODEL_FLAGS (ALL | CLI_EVAL) /* the flags of the model alone */
#define AT(field) .off = offsetof(cli_common_opts, field)
#define INDENT "\n                         " /* a help text's next line, under the first */

/* In help order; the command's own lines follow -m, the speculation heading precedes -d. A flag
 * may have a row per command. */
static const row rows[] = {
    {CLI_RUN | CLI_EVAL, "-m", "--model", "DIR", K_STR, AT(model), .help = "model directory, or OWNER/NAME[@REV] pulled with moge pull (required)"},
    {CLI_CHAT | CLI_BENCH, "-m", "--model", "DIR", K_STR, AT(model),
     .help = "model directory or OWNER/NAME[@REV] (default: models/tinystories-moge when it" INDENT
             "and models/tinystories-draft exist, else models/stories260K)"},
    {CLI_RUN, "-n", "--n-predict", "N", K_I32, -1, 1L << 30, AT(gp.n_predict), .help = "tokens to generate, -1 = until the end of text or context",
     .show_default = true},
    {CLI_CHAT, "-n", "--n-predict", "N", K_I32, 1, 1L << 30, AT(gp.n_predict), .help = "most tokens per answer", .show_default = true},
    {CLI_BENCH, "-n", "--n-predict", "N", K_I32, 1, 1L << 24, AT(gp.n_predict), .help = "tokens per prompt", .show_default = true},
    {ALL, NULL, "--temp", "F", K_F32, 0, 100, AT(gp.sampler.temperature), .help = "temperature, 0 = greedy", .show_default = true},
    {ALL, NULL, "--top-k", "N", K_I32, 0, 1L << 30, AT(gp.sampler.top_k), .help = "0 = off", .show_default = true},
    {ALL, NULL, "--top-p", "F", K_F32, 1e-6, 1, AT(gp.sampler.top_p), .help = "1 = off", .show_default = true},
    {ALL, NULL, "--min-p", "F", K_F32, 0, 1, AT(gp.sampler.min_p), .help = "0 = off", .show_default = true},
    {ALL, NULL, "--repeat-penalty", "F", K_F32, 1e-3, 100, AT(gp.sampler.repeat_penalty), .help = "1 = off", .show_default = true},
    {CLI_RUN, "-s", "--seed", "N", K_U64, AT(gp.sampler.seed), .help = "RNG seed (default: a random one, printed)"},
    {CLI_BENCH, "-s", "--seed", "N", K_U64, AT(gp.sampler.seed), .help = "RNG seed", .show_default = true},
    {CLI_CHAT, "-s", "--seed", "N", K_U64, AT(gp.sampler.seed), .help = "RNG seed of the first answer; answer k uses N+k (default: random, printed)"},
    {CLI_RUN | CLI_BENCH, "-c", "--ctx", "N", K_I32, 1, 1L << 24, AT(cp.n_ctx), .help = "context length in tokens (default: the model's maximum)",
     .alias = "--ctx-size"},
    {CLI_CHAT, "-c", "--ctx", "N", K_I32, 1, 1L << 24, AT(cp.n_ctx),
     .help = "context length in tokens (default: the model's maximum, at most 8192)", .alias = "--ctx-size"},
    {MODEL_FLAGS, "-t", "--threads", "N", K_INT, 1, 1024, AT(mp.n_threads), .help = "threads (default: one per physical core this process may run on; moge info shows it)"},
    {MODEL_FLAGS, "-ngl", "--n-gpu-layers", "N", K_INT, 0, 1L << 30, .ignored = "there is no GPU backend: every layer runs on the cpu"},
    {MODEL_FLAGS, NULL, "--backend", "NAME", K_ENUM, AT(mp.backend), ENUM(backend_name, MOGE_BACKEND_CPU),
     .help = "cpu (default) or ref (slow reference loops)"},
    {MODEL_FLAGS, NULL, "--quant", "FORMAT", K_ENUM, AT(mp.quant), ENUM(quant_name, MOGE_QUANT_NONE),
     .help = "quantize the weights at load, blocks of 32: q8 (int8), q4 (4-bit), w8a8 / w4a8 (the same weights times int8 activations)"},
    {MODEL_FLAGS, NULL, "--kernels", "NAME", K_KERNELS, AT(mp.kernels),
     .help = "cpu kernel variant (instruction set): scalar, avx2, avxvnni, avx512, avx512vnni" INDENT
             "(default: $MOGE_KERNELS, else the widest this processor runs; moge info lists them)"},
    {MODEL_FLAGS, NULL, "--routing", "RULE", K_ENUM, AT(mp.routing), ENUM(routing_name, MOGE_ROUTING_MOGE),
     .help = "MoE models: override the routing rule: moge, topk or group_limited"},
    {MODEL_FLAGS, NULL, "--n-group", "N", K_I32, 1, 1024, AT(mp.n_group), .help = "MoE: expert groups for the override (default: the checkpoint's)"},
    {MODEL_FLAGS, NULL, "--topk-group", "N", K_I32, 1, 1024, AT(mp.topk_group), .help = "MoE group_limited: groups kept (default: half)"},
    {ALL, NULL, "--devices", "N", K_I32, 1, 1024, AT(cp.n_devices), .help = "MoE: workers owning whole expert groups (default: automatic)"},
    {CLI_EVAL, NULL, "--devices", "N", K_I32, 1, 1024, AT(cp.n_devices), .help = "MoE: workers owning whole expert groups (default: one group each)"},
    {CLI_RUN, "-d", "--draft", "DIR", K_STR, AT(draft), .help = "a draft model with the target's tokenizer", .alias = "-md --model-draft"},
    {CLI_CHAT, "-d", "--draft", "DIR", K_STR, AT(draft),
     .help = "a draft model with the target's tokenizer (default with the demo model:" INDENT "models/tinystories-draft)",
     .alias = "-md --model-draft"},
    {CLI_BENCH, "-d", "--draft", "DIR", K_STR, AT(draft),
     .help = "a draft model with the target's tokenizer (default with the demo model:" INDENT
             "models/tinystories-draft, or stories260K drafting for itself)", .alias = "-md --model-draft"},
    {ALL, NULL, "--draft-layers", "L", K_I32, 1, 1024, AT(draft_layers), .help = "self-draft with the target's first L layers"},
    {CLI_RUN | CLI_CHAT, NULL, "--lookup", NULL, K_TRUE, AT(lookup), .help = "prompt-lookup drafting (no model)"},
    {CLI_BENCH, NULL, "--lookup", NULL, K_TRUE, AT(lookup), .help = "add prompt-lookup drafting to the modes"},
    {CLI_RUN, NULL, "--spec", "MODE", K_ENUM, AT(spec), ENUM(spec_name, MOGE_SPEC_NONE), .help = "none, chain or tree (default: tree with a drafter, else none)"},
    {CLI_CHAT, NULL, "--spec", "MODE", K_ENUM, AT(spec), ENUM(spec_name, MOGE_SPEC_NONE),
     .help = "none, chain or tree (default: tree with a drafter, else none;" INDENT "chain or tree without a drafter use prompt lookup)"},
    {ALL, NULL, "--draft-max", "N", K_I32, 1, MOGE_MAX_DEPTH - 1, AT(gp.draft.draft_max), .help = "deepest draft level / chain length",
     .show_default = true},
    {ALL, NULL, "--tree-nodes", "N", K_I32, 1, 63, AT(gp.draft.tree_nodes), .help = "draft nodes per step", .show_default = true},
    {ALL, NULL, "--branch", "N", K_I32, 1, 16, AT(gp.draft.branch), .help = "children per expanded node, dynamic trees", .show_default = true},
    {ALL, NULL, "--min-path-prob", "P", K_F32, 0, 1, AT(gp.draft.min_path_prob), .help = "stop growing draft paths less likely than P",
     .show_default = true, .alias = "--draft-p-min"},
    {ALL, NULL, "--draft-min", "N", K_INT, 0, 1L << 30, .ignored = "the planner sizes each step's tree (--no-adaptive verifies every drafted node)"},
    {ALL, NULL, "--tree-shape", "LIST", K_SHAPE, .help = "static tree: children per depth, e.g. 4,2,2,1,1"},
    {ALL, NULL, "--sampled-draft", NULL, K_TRUE, AT(gp.draft.sampled), .help = "draw draft children from the draft's distribution (rejection sampling)"},
    {ALL, NULL, "--no-adaptive", NULL, K_FALSE, AT(gp.adaptive), .help = "verify every drafted node (no planner)"},
};
#define N_ROWS (sizeof rows / sizeof rows[0])

void cli_common_init(cli_common_opts *o, const char *cmd, unsigned who) {
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->who = who;
    o->spec = -1;
    o->mp = moge_model_default_params();
    o->cp = moge_context_default_params();
    o->gp = moge_generate_default_params();
    if (who == CLI_CHAT) o->gp.n_predict = 256;          /* most tokens per answer */
    if (who & (CLI_RUN | CLI_CHAT)) {                     /* llama.cpp's default: a random seed, printed */
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            seed = (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)t.tv_sec ^ (uint64_t)getpid() << 32;
        }
        o->gp.sampler.seed = seed >> 1; /* < 2^63: every shell and JSON reader takes it back */
        o->seed_random = true;
    }
    if (who == CLI_BENCH) o->gp.sampler.temperature = 0; /* greedy: the modes' texts are compared */
}

void cli_backend_desc(const moge_model_info *in, char *buf, size_t cap) {
    char cpu[128];
    moge_cpu_name(cpu, sizeof cpu);
    if (in->kernels) snprintf(buf, cap, "%s backend, %s kernels on %s", in->backend, in->kernels, cpu);
    else snprintf(buf, cap, "%s backend on %s", in->backend, cpu);
}

void cli_ranks_out(struct cJSON *root, FILE *f, const char *cmd, const char *label, const moge_rank_stats *rs, int R) {
    double is = rs[0].rows > 0 ? (double)rs[0].spread_pairs / (double)rs[0].rows : 0.0;
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "ranks") : NULL;
    for (int r = 0; r < R; r++) {
        const moge_rank_stats *s = &rs[r];
        if (arr) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "rank", s->rank);
            cJSON_AddNumberToObject(o, "expert_bytes", (double)s->expert_bytes);
            cJSON_AddNumberToObject(o, "resident_bytes", (double)s->resident_bytes);
            cJSON_AddNumberToObject(o, "pairs", (double)s->pairs);
            cJSON_AddNumberToObject(o, "compute_seconds", s->compute_seconds);
            cJSON_AddNumberToObject(o, "expert_seconds", s->expert_seconds);
            cJSON_AddNumberToObject(o, "comm_seconds", s->comm_seconds);
            cJSON_AddNumberToObject(o, "bytes_sent", (double)s->bytes_sent);
            cJSON_AddNumberToObject(o, "forwards", (double)s->forwards);
            cJSON_AddNumberToObject(o, "rows", (double)s->rows);
            cJSON_AddNumberToObject(o, "spread_pairs", (double)s->spread_pairs);
            cJSON_AddItemToArray(arr, o);
        }
        if (f && R > 1)
            fprintf(f, "moge %s: %srank %d: experts %.2f MB, resident %.1f MB, %lld pairs, compute %.3f s (experts %.3f s), exchange %.3f s, sent %.2f MB\n",
                    cmd, label, s->rank, s->expert_bytes / 1e6, s->resident_bytes / 1e6, (long long)s->pairs, s->compute_seconds, s->expert_seconds,
                    s->comm_seconds, s->bytes_sent / 1e6);
    }
    if (root) cJSON_AddNumberToObject(root, "rank_imbalance", is);
    if (f && R > 1) fprintf(f, "moge %s: %s%d ranks, Imbalance Score of their loads %.3f\n", cmd, label, R, is);
}

void cli_report_ranks(struct cJSON *root, FILE *f, const char *cmd, moge_context *ctx) {
    int R = moge_context_n_ranks(ctx), L = moge_context_n_moe_layers(ctx);
    if (R < 1 || (R == 1 && L == 0)) return;
    moge_rank_stats *rs = calloc((size_t)R, sizeof *rs);
    if (!rs || moge_context_rank_stats(ctx, rs) != MOGE_OK) {
        if (f) fprintf(f, "moge %s: the ranks' statistics: %s\n", cmd, rs ? moge_context_error(ctx) : "out of memory");
        free(rs);
        return;
    }
    cli_ranks_out(root, f, cmd, "", rs, R);
    free(rs);
}

void cli_forward_times_out(struct cJSON *root, const char *key, FILE *f, const char *cmd, const char *label, const moge_forward_times *ft) {
    double total = 0;
    for (int i = 0; i < MOGE_N_PARTS; i++) total += ft->seconds[i];
    if (root) {
        cJSON *o = cJSON_AddObjectToObject(root, key);
        for (int i = 0; i < MOGE_N_PARTS; i++) cJSON_AddNumberToObject(o, moge_forward_part_name(i), ft->seconds[i]);
        cJSON_AddNumberToObject(o, "forwards", (double)ft->forwards);
        cJSON_AddNumberToObject(o, "rows", (double)ft->rows);
    }
    if (!f || ft->forwards == 0) return;
    fprintf(f, "moge %s: %s: %lld forwards (%lld rows), %.3f s:", cmd, label, (long long)ft->forwards, (long long)ft->rows, total);
    for (int i = 0; i < MOGE_N_PARTS; i++)
        fprintf(f, "%s %s %.1f %%", i ? "," : "", moge_forward_part_name(i), total > 0 ? 100.0 * ft->seconds[i] / total : 0.0);
    fputc('\n', f);
}

void cli_json_backend(struct cJSON *root, const moge_model_info *in) {
    char cpu[128];
    moge_cpu_name(cpu, sizeof cpu);
    cJSON_AddStringToObject(root, "backend", in->backend);
    if (in->kernels) cJSON_AddStringToObject(root, "kernels", in->kernels);
    else cJSON_AddNullToObject(root, "kernels");
    cJSON_AddStringToObject(root, "processor", cpu);
}

bool cli_kernels(const char *cmd, const char *flag, const char *v) {
    if (moge_cpu_kernels_runs(v)) return true;
    char runs[256], cpu[128];
    moge_cpu_kernels_list(runs, sizeof runs);
    moge_cpu_name(cpu, sizeof cpu);
    bool built = false;
    for (int i = 0; i < moge_cpu_kernels_count(); i++) built |= !strcmp(v, moge_cpu_kernels_name(i));
    if (built) fprintf(stderr, "moge %s: %s %s: this processor (%s) cannot run them; it runs: %s\n", cmd, flag, v, cpu, runs);
    else fprintf(stderr, "moge %s: %s \"%s\": no such kernel variant; this processor (%s) runs: %s\n", cmd, flag, v, cpu, runs);
    return false;
}

/* Whether a is one of the row's names (its short and long one, or an alias). */
static bool row_named(const row *r, const char *a) {
    if (!strcmp(a, r->name) || (r->shrt && !strcmp(a, r->shrt))) return true;
    size_t len = strlen(a);
    for (const char *p = r->alias; p && *p; p += strspn(p, " ")) {
        size_t n = strcspn(p, " ");
        if (n == len && !strncmp(p, a, n)) return true;
        p += n;
    }
    return false;
}

int cli_parse_common(int argc, char **argv, int *i, cli_common_opts *o) {
    const char *a = argv[*i], *v = NULL;
    const row *r = NULL;
    for (size_t k = 0; k < N_ROWS && !r; k++)
        if ((rows[k].who & o->who) && row_named(&rows[k], a)) r = &rows[k];
    if (!r) return 0;
    if (r->arg && !(v = cli_value(o->cmd, argc, argv, i))) return -1;
    long l;
    double d;
    int idx;
    if (r->ignored) { /* checked like any value, then dropped with a note */
        if (r->k == K_INT && !cli_int(o->cmd, a, v, (long)r->min, (long)r->max, &l)) return -1;
        fprintf(stderr, "moge %s: note: %s is ignored: %s\n", o->cmd, a, r->ignored);
        return 1;
    }
    char *field = (char *)o + r->off;
    switch (r->k) {
    case K_STR: *(const char **)field = v; break;
    case K_INT:
    case K_I32:
        if (!cli_int(o->cmd, a, v, (long)r->min, (long)r->max, &l)) return -1;
        if (r->off == offsetof(cli_common_opts, cp.n_ctx)) o->ctx_flag = a;
        if (r->off == offsetof(cli_common_opts, cp.n_devices)) o->devices_flag = a;
        if (l == -1 && r->min == -1) l = (long)r->max; /* -n -1: no limit */
        if (r->k == K_INT) *(int *)field = (int)l;
        else *(int32_t *)field = (int32_t)l;
        break;
    case K_F32:
        if (!cli_float(o->cmd, a, v, r->min, r->max, &d)) return -1;
        *(float *)field = (float)d;
        break;
    case K_U64:
        if (!cli_u64(o->cmd, a, v, (uint64_t *)field)) return -1;
        if (r->off == offsetof(cli_common_opts, gp.sampler.seed)) o->seed_random = false;
        break;
    case K_TRUE: *(bool *)field = true; break;
    case K_FALSE: *(bool *)field = false; break;
    case K_ENUM:
        if ((idx = choice(o->cmd, a, v, r->name_of, r->first)) < 0) return -1;
        *(int *)field = idx;
        break;
    case K_SHAPE:
        if (!cli_tree_shape(o->cmd, v, o->shape, &o->gp.draft.n_shape)) return -1;
        o->gp.draft.shape = o->shape;
        break;
    case K_KERNELS:
        if (!cli_kernels(o->cmd, a, v)) return -1;
        *(const char **)field = v;
        break;
    }
    return 1;
}

int cli_unknown(const char *cmd, const char *arg) {
    fprintf(stderr, "moge %s: unknown option \"%s\" (see moge %s --help)\n", cmd, arg, cmd);
    return 2;
}

int cli_unknown_option(const cli_common_opts *o, const char *arg) { return cli_unknown(o->cmd, arg); }

/* cli_parse_flags, with the shared flags of c (when not NULL) tried before the table. */
static int parse_flags(const char *cmd, cli_common_opts *c, const cli_flag *flags, int n_flags, int argc, char **argv,
                       const char **pos, int max_pos, int *n_pos, void (*usage)(FILE *)) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = c ? cli_parse_common(argc, argv, &i, c) : 0;
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-' || !a[1]) {
            if (*n_pos == max_pos) {
                if (max_pos == 0) fprintf(stderr, "moge %s: unexpected argument \"%s\" (see moge %s --help)\n", cmd, a, cmd);
                else fprintf(stderr, "moge %s: too many arguments at \"%s\" (at most %d; see moge %s --help)\n", cmd, a, max_pos, cmd);
                return 2;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        const cli_flag *f = NULL;
        for (int k = 0; k < n_flags && !f; k++)
            if (!strcmp(a, flags[k].name) || (flags[k].shrt && !strcmp(a, flags[k].shrt))) f = &flags[k];
        if (!f) return cli_unknown(cmd, a);
        if (f->kind == CLI_ARG_SWITCH) {
            *(bool *)f->dest = true;
            continue;
        }
        if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
        long l;
        switch (f->kind) {
        case CLI_ARG_STR: *(const char **)f->dest = v; break;
        case CLI_ARG_I32:
        case CLI_ARG_INT:
            if (!cli_int(cmd, a, v, f->min, f->max, &l)) return 2;
            if (f->kind == CLI_ARG_I32) *(int32_t *)f->dest = (int32_t)l;
            else *(int *)f->dest = (int)l;
            break;
        case CLI_ARG_U64:
            if (!cli_u64(cmd, a, v, (uint64_t *)f->dest)) return 2;
            break;
        case CLI_ARG_SWITCH: break;
        }
    }
    return -1;
}

int cli_parse_flags(const char *cmd, const cli_flag *flags, int n_flags, int argc, char **argv, const char **pos, int max_pos,
                    int *n_pos, void (*usage)(FILE *)) {
    return parse_flags(cmd, NULL, flags, n_flags, argc, argv, pos, max_pos, n_pos, usage);
}

int cli_parse_flags_common(cli_common_opts *c, const cli_flag *flags, int n_flags, int argc, char **argv, void (*usage)(FILE *)) {
    int n_pos;
    return parse_flags(c->cmd, c, flags, n_flags, argc, argv, NULL, 0, &n_pos, usage);
}

void cli_common_usage(FILE *f, const cli_common_opts *given, const char *own) {
    static cli_common_opts defaults; /* the defaults, not the values of flags before --help */
    const cli_common_opts *o = &defaults;
    cli_common_init(&defaults, given->cmd, given->who);
    for (size_t k = 0; k < N_ROWS; k++) {
        const row *r = &rows[k];
        if (!(r->who & o->who)) continue;
        if (!strcmp(r->name, "--draft"))
            fputs("\nspeculative decoding (output identical to target-only at --temp 0, same distribution otherwise):\n", f);
        char flag[64];
        snprintf(flag, sizeof flag, "%s%s%s%s%s", r->shrt ? r->shrt : "", r->shrt ? ", " : "    ", r->name, r->arg ? " " : "",
                 r->arg ? r->arg : "");
        if (r->ignored) {
            fprintf(f, "  %-22s accepted and ignored: %s\n", flag, r->ignored);
            continue;
        }
        fprintf(f, "  %-22s %s", flag, r->help);
        const char *field = (const char *)o + r->off;
        if (r->show_default) {
            if (r->k == K_INT) fprintf(f, " (default %d)", *(const int *)field);
            else if (r->k == K_I32) fprintf(f, " (default %d)", (int)*(const int32_t *)field);
            else if (r->k == K_F32) fprintf(f, " (default %g)", (double)*(const float *)field);
            else if (r->k == K_U64) fprintf(f, " (default %llu)", (unsigned long long)*(const uint64_t *)field);
        }
        if (r->alias) fprintf(f, " (also %s)", r->alias);
        fputc('\n', f);
        if (own && !strcmp(r->name, "--model")) fputs(own, f);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Models and drafters                                                                        */
/* ------------------------------------------------------------------------------------------ */

cli_draft_kind cli_draft_choice(const cli_common_opts *o) {
    if (o->draft) return CLI_DRAFT_MODEL;
    if (o->draft_layers > 0) return CLI_DRAFT_LAYERS;
    if (o->lookup && o->who != CLI_BENCH) return CLI_DRAFT_LOOKUP;
    return CLI_DRAFT_NONE;
}

bool cli_check_drafters(const cli_common_opts *o) {
    bool lookup = o->lookup && o->who != CLI_BENCH;
    if ((o->draft != NULL) + (o->draft_layers > 0) + lookup <= 1) return true;
    if (o->who == CLI_BENCH)
        fprintf(stderr, "moge bench: choose one drafter for chain and tree: -d DIR or --draft-layers L\n");
    else
        fprintf(stderr, "moge %s: choose one drafter: -d, --draft-layers or --lookup\n", o->cmd);
    return false;
}

/* The committed demo model `name`: models/NAME under the working directory, else next to the
 * binary (BIN/../models/NAME). Returns false when neither has a config.json. */
static bool find_demo_model(const char *name, char *out, size_t cap) {
    struct stat sb;
    char probe[PATH_MAX + 64], exe[PATH_MAX];
    snprintf(out, cap, "models/%s", name);
    snprintf(probe, sizeof probe, "%s/config.json", out);
    if (stat(probe, &sb) == 0) return true;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = 0;
    if (snprintf(out, cap, "%s/../models/%s", exe, name) >= (int)cap) return false;
    if (snprintf(probe, sizeof probe, "%s/config.json", out) >= (int)sizeof probe) return false;
    return stat(probe, &sb) == 0;
}

bool cli_committed_model(const char *name, char *out, size_t cap) { return find_demo_model(name, out, cap); }

bool cli_default_models(cli_common_opts *o, bool want_draft, bool self_draft) {
    if (o->model) return true;
    bool pair = find_demo_model("tinystories-moge", o->model_buf, sizeof o->model_buf) &&
                find_demo_model("tinystories-draft", o->draft_buf, sizeof o->draft_buf);
    if (!pair && !find_demo_model("stories260K", o->model_buf, sizeof o->model_buf)) {
        fprintf(stderr, "moge %s: no -m DIR given and no demo model under ./models or next to the binary; use -m DIR\n", o->cmd);
        return false;
    }
    o->model = o->model_buf;
    o->model_default = true;
    if (want_draft && cli_draft_choice(o) == CLI_DRAFT_NONE && (pair || self_draft)) {
        o->draft = pair ? o->draft_buf : o->model_buf;
        o->draft_default = true;
    }
    return true;
}

/* Loading a large model takes a while (the weights are laid out, or quantized, for the backend):
 * on a terminal, a progress line once it has taken half a second, cleared when done. */
typedef struct {
    const char *cmd, *what;
    struct timespec t0;
    bool shown;
} load_note;

static void load_progress(double done, void *user) {
    load_note *n = user;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double s = (double)(t.tv_sec - n->t0.tv_sec) + (double)(t.tv_nsec - n->t0.tv_nsec) * 1e-9;
    if (!n->shown && (s < 0.5 || done >= 1.0)) return;
    n->shown = true;
    fprintf(stderr, "\rmoge %s: loading %s: %3.0f %%", n->cmd, n->what, 100.0 * done);
    fflush(stderr);
}

moge_comm *cli_comm;

/* moge_model_load with the progress line (o->mp otherwise; comm: the job to load across, or NULL). */
static moge_status load_with_progress(const cli_common_opts *o, const char *dir, moge_comm *comm, moge_model **out, char *err, size_t n) {
    moge_model_params mp = o->mp;
    mp.comm = comm;
    load_note note = {.cmd = o->cmd, .what = dir};
    clock_gettime(CLOCK_MONOTONIC, &note.t0);
    if (isatty(2)) {
        mp.progress = load_progress;
        mp.progress_user = &note;
    }
    moge_status st = moge_model_load(dir, &mp, out, err, n);
    if (note.shown) fputs("\r\033[K", stderr);
    return st;
}

/* m->ctx from cp (o->devices_per_group applied); false after printing the error. */
static bool new_context(const cli_common_opts *o, cli_models *m, moge_context_params cp) {
    char err[1024];
    if (cp.n_devices == 0 && o->devices_per_group && m->info.n_expert > 0) cp.n_devices = m->info.n_group;
    if (moge_context_new(m->model, &cp, &m->ctx, err, sizeof err) != MOGE_OK) { /* names n_ctx, n_seq or n_devices */
        /* the flag as typed, when the message is about its value */
        if (o->devices_flag && strstr(err, "n_devices")) fprintf(stderr, "moge %s: %s %d: %s\n", o->cmd, o->devices_flag, o->cp.n_devices, err);
        else if (o->ctx_flag && strstr(err, "n_ctx")) fprintf(stderr, "moge %s: %s %d: %s\n", o->cmd, o->ctx_flag, o->cp.n_ctx, err);
        else fprintf(stderr, "moge %s: %s\n", o->cmd, err);
        return false;
    }
    return true;
}

/* How an error names where a tokenizer's ids or a model's vocab_size come from: PATH (a .json
 * file), PATH (GGUF_FIELD) for a GGUF file, PATH/DIR_FILE for a directory. True for a GGUF file. */
static bool cli_source_name(char *buf, size_t cap, const char *path, const char *dir_file, const char *gguf_field) {
    struct stat sb;
    size_t l = strlen(path);
    bool file = stat(path, &sb) == 0 && S_ISREG(sb.st_mode), gguf = file && !(l >= 5 && strcmp(path + l - 5, ".json") == 0);
    if (gguf) snprintf(buf, cap, "%s (%s)", path, gguf_field);
    else if (file) snprintf(buf, cap, "%s", path);
    else snprintf(buf, cap, "%s%s%s", path, l && path[l - 1] == '/' ? "" : "/", dir_file);
    return gguf;
}

/* A tokenizer whose ids reach past the model's vocab_size would feed the model ids it has no
 * embedding for (and the model's ids would not cover the tokenizer): refused, naming both sources
 * and sizes. A smaller tokenizer is usual (padded embedding tables). False after printing. */
static bool cli_tokenizer_fits(const cli_common_opts *o, const char *tok_path, const moge_tokenizer *tok, const char *model_dir,
                               const moge_model_info *info) {
    int32_t n = moge_tokenizer_n_vocab(tok);
    if (n <= info->n_vocab) return true;
    char tok_src[PATH_MAX + 64], model_src[PATH_MAX + 64];
    bool tok_gguf = cli_source_name(tok_src, sizeof tok_src, tok_path, "tokenizer.json", "tokenizer.ggml.tokens");
    cli_source_name(model_src, sizeof model_src, model_dir, "config.json", "token_embd.weight");
    if (tok_gguf && strcmp(tok_path, model_dir) == 0)
        fprintf(stderr, "moge %s: %s: its tokenizer (tokenizer.ggml.tokens) has %d token ids but its vocab_size is %d: this "
                "tokenizer does not belong to this model\n", o->cmd, tok_path, (int)n, (int)info->n_vocab); /* one GGUF file */
    else
        fprintf(stderr, "moge %s: %s has %d token ids but %s has vocab_size %d: this tokenizer does not belong to this model\n", o->cmd,
                tok_src, (int)n, model_src, (int)info->n_vocab);
    return false;
}

bool cli_load_model(const cli_common_opts *o, int32_t max_ctx, cli_models *m) {
    char err[1024], dir[CLI_PATH_CAP];
    if (moge_resolve_model(o->model, dir, sizeof dir, err, sizeof err) != MOGE_OK ||
        load_with_progress(o, dir, cli_comm, &m->model, err, sizeof err) != MOGE_OK ||
        (!o->tokenizer && moge_tokenizer_load(dir, &m->tok, err, sizeof err) != MOGE_OK)) {
        fprintf(stderr, "moge %s: -m %s: %s\n", o->cmd, o->model, err);
        return false;
    }
    if (o->tokenizer && moge_tokenizer_load(o->tokenizer, &m->tok, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge %s: --tokenizer %s: %s\n", o->cmd, o->tokenizer, err);
        return false;
    }
    moge_model_get_info(m->model, &m->info);
    if (!cli_tokenizer_fits(o, o->tokenizer ? o->tokenizer : dir, m->tok, dir, &m->info)) return false;
    if (!o->quiet && o->mp.quant == MOGE_QUANT_NONE && m->info.resident_bytes > 2 * m->info.weight_bytes) {
        char held[32], stored[32]; /* weights that grew at load: a GGUF's K-quants, dequantized exactly */
        fprintf(stderr, "moge %s: note: the weights take %s in memory against %s stored (blocks held as f32); --quant q8 "
                "(or w4a8) keeps them small and decodes several times faster\n", o->cmd,
                cli_human_bytes(m->info.resident_bytes, held, sizeof held), cli_human_bytes(m->info.weight_bytes, stored, sizeof stored));
    }
    int usable = (int)moge_cpu_usable(); /* -t above it: the pool's threads spin between ops and wait for a CPU */
    if (!o->quiet && o->mp.n_threads > usable)
        fprintf(stderr, "moge %s: note: -t %d is more threads than the %d CPU%s this process may run on; they wait for each other at every "
                "op (without -t: %d)\n", o->cmd, o->mp.n_threads, usable, usable == 1 ? "" : "s", (int)moge_cpu_default_threads());
    if (o->seed_random && !o->quiet && (o->gp.sampler.temperature > 0 || o->who == CLI_CHAT))
        fprintf(stderr, "moge %s: seed %llu (--seed %llu repeats this run)\n", o->cmd, (unsigned long long)o->gp.sampler.seed,
                (unsigned long long)o->gp.sampler.seed);
    if (max_ctx < 0) return true; /* the caller makes its context (cli_batch_context) */
    moge_context_params cp = o->cp;
    if (cp.n_ctx == 0 && max_ctx > 0) cp.n_ctx = m->info.max_position < max_ctx ? m->info.max_position : max_ctx;
    return new_context(o, m, cp);
}

int32_t cli_prompt_limit(const cli_common_opts *o, const cli_models *m) {
    if (m->ctx) return moge_context_n_ctx(m->ctx);
    return o->cp.n_ctx > 0 ? o->cp.n_ctx : m->info.max_position;
}

int32_t cli_tree_nodes(const moge_generate_params *gp) {
    if (gp->spec == MOGE_SPEC_NONE) return 0;
    return gp->spec == MOGE_SPEC_CHAIN ? gp->draft.draft_max : gp->draft.tree_nodes;
}

bool cli_batch_context(const cli_common_opts *o, cli_models *m, int32_t n_seq, int32_t longest_prompt, int32_t largest_tree) {
    moge_context_params cp = o->cp;
    cp.n_seq = n_seq;
    if (cp.n_ctx == 0) { /* just enough: the last pass verifies a tree after every token but the last */
        int64_t need = (int64_t)longest_prompt + o->gp.n_predict + largest_tree + 1;
        cp.n_ctx = need < m->info.max_position ? (int32_t)need : m->info.max_position;
    }
    /* one pass takes every sequence's root and tree (logits and activations scale with it) */
    int64_t rows = (int64_t)n_seq * (largest_tree + 1), cap = n_seq > CLI_BATCH_ROWS_CAP ? n_seq : CLI_BATCH_ROWS_CAP;
    if (rows < 64) rows = 64;
    cp.n_batch = (int32_t)(rows < cap ? rows : cap);
    return new_context(o, m, cp);
}

bool cli_load_drafter(const cli_common_opts *o, cli_draft_kind kind, cli_models *m, int32_t n_seq, moge_drafter **out, char *desc,
                      size_t desc_cap) {
    char err[1024], dir[CLI_PATH_CAP];
    int32_t n_ctx = moge_context_n_ctx(m->ctx);
    moge_status st = MOGE_OK;
    if (kind == CLI_DRAFT_MODEL) {
        if (!m->draft_model) { /* a later drafter shares the draft model and tokenizer loaded first */
            if ((st = moge_resolve_model(o->draft, dir, sizeof dir, err, sizeof err)) == MOGE_OK &&
                (st = load_with_progress(o, dir, NULL, &m->draft_model, err, sizeof err)) == MOGE_OK)
                st = moge_tokenizer_load(dir, &m->draft_tok, err, sizeof err);
            if (st == MOGE_OK) {
                moge_model_info di;
                moge_model_get_info(m->draft_model, &di);
                if (!cli_tokenizer_fits(o, dir, m->draft_tok, dir, &di)) return false;
            }
        }
        if (st == MOGE_OK) st = moge_drafter_new_model_seqs(m->draft_model, m->tok, m->draft_tok, n_ctx, n_seq, out, err, sizeof err);
        if (st != MOGE_OK) fprintf(stderr, "moge %s: -d %s (draft model): %s\n", o->cmd, o->draft, err);
        else if (desc) snprintf(desc, desc_cap, "draft model %s", o->draft);
    } else if (kind == CLI_DRAFT_LAYERS) {
        st = moge_drafter_new_layer_skip_seqs(m->model, o->draft_layers, n_ctx, n_seq, out, err, sizeof err);
        if (st != MOGE_OK) fprintf(stderr, "moge %s: --draft-layers %d: %s\n", o->cmd, (int)o->draft_layers, err);
        else if (desc) snprintf(desc, desc_cap, "the target's first %d layers", (int)o->draft_layers);
    } else {
        st = moge_drafter_new_lookup(3, out, err, sizeof err);
        if (st != MOGE_OK) fprintf(stderr, "moge %s: --lookup: %s\n", o->cmd, err);
        else if (desc) snprintf(desc, desc_cap, "prompt lookup");
    }
    return st == MOGE_OK;
}

void cli_models_free(cli_models *m) {
    moge_tokenizer_free(m->draft_tok);
    moge_model_free(m->draft_model);
    moge_context_free(m->ctx);
    moge_tokenizer_free(m->tok);
    moge_model_free(m->model);
    memset(m, 0, sizeof *m);
}

static bool detok_room(moge_detok_stream *s, char **buf, size_t *cap) {
    size_t need = moge_detok_stream_max_bytes(s) + 1;
    if (*buf && *cap >= need) return true;
    char *b = realloc(*buf, need);
    if (!b) return false;
    *buf = b;
    *cap = need;
    return true;
}

volatile sig_atomic_t cli_interrupted;

void cli_on_sigint(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

bool cli_abort_cb(void *abort_cb_user) {
    (void)abort_cb_user;
    return cli_interrupted != 0;
}

void cli_catch_sigint(bool once, struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_on_sigint;
    sa.sa_flags = once ? SA_RESETHAND : 0;
    sigemptyset(&sa.sa_mask);
    cli_interrupted = 0;
    sigaction(SIGINT, &sa, old);
}

moge_status cli_detok_push(moge_detok_stream *s, int32_t id, char **buf, size_t *cap, size_t *n) {
    *n = 0;
    if (!detok_room(s, buf, cap)) return MOGE_ERR_NOMEM;
    return moge_detok_stream_push(s, id, *buf, *cap, n);
}

moge_status cli_detok_flush(moge_detok_stream *s, char **buf, size_t *cap, size_t *n) {
    *n = 0;
    if (!detok_room(s, buf, cap)) return MOGE_ERR_NOMEM;
    return moge_detok_stream_flush(s, *buf, *cap, n);
}

