/* cli.h — what the `moge` subcommands share: strict flag values, and for run, chat and bench one
 * table of the model, sampling and speculation flags (parser and help) and one loader of the
 * model and the drafter. */
#ifndef MOGE_CLI_H
#define MOGE_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "moge.h"

/* Ctrl-C in the commands that handle it (run, chat, eval): cli_on_sigint sets cli_interrupted (the
 * command clears it), and cli_abort_cb, a moge_context_params.abort_cb, then stops the forward in
 * progress. cli_catch_sigint clears the flag and installs cli_on_sigint without SA_RESTART (a
 * blocked read returns), once (SA_RESETHAND: a second Ctrl-C ends the process) or for good; the
 * previous action goes to *old, for sigaction(SIGINT, old, NULL) when the command is done. */
extern volatile sig_atomic_t cli_interrupted;
void cli_on_sigint(int sig);
bool cli_abort_cb(void *abort_cb_user);
void cli_catch_sigint(bool once, struct sigaction *old);

/* The MPI job this process is rank 0 of (cli/moge.c), or NULL: cli_load_model loads the
 * target across its ranks; draft models stay on rank 0. */
extern moge_comm *cli_comm;

/* Parse a flag's value; on failure print "moge CMD: FLAG: ..." to stderr and return false. */
bool cli_int(const char *cmd, const char *flag, const char *s, long min, long max, long *out);
bool cli_float(const char *cmd, const char *flag, const char *s, double min, double max, double *out);
bool cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);
/* --tree-shape LIST: up to 16 numbers 1..16 separated by commas, e.g. "4,2,2,1,1" (children per
 * node at each depth) into shape[16]; *n their count. False after printing an error. */
bool cli_tree_shape(const char *cmd, const char *s, int32_t *shape, int32_t *n);
/* Where a model runs, for reports: "cpu backend, avx512vnni kernels on PROCESSOR" ("ref backend
 * on PROCESSOR"). */
void cli_backend_desc(const moge_model_info *in, char *buf, size_t cap);
/* The same into a JSON object: "backend", "kernels" (null for ref) and "processor". */
struct cJSON;
void cli_json_backend(struct cJSON *root, const moge_model_info *in);
/* The ranks' figures rs[0..R-1] (moge_context_rank_stats) into root (may be NULL): "ranks":
 * [{"rank", "expert_bytes", "resident_bytes", "pairs", "compute_seconds", "expert_seconds",
 * "comm_seconds", "bytes_sent", "forwards", "rows", "spread_pairs"}] and "rank_imbalance"
 * (spread_pairs / rows: the
 * Imbalance Score of the ranks' real loads per layer and batch, weighted by rows); with f and
 * more than one rank, a line per rank there too ("moge CMD: LABELrank R: ..."). */
void cli_ranks_out(struct cJSON *root, FILE *f, const char *cmd, const char *label, const moge_rank_stats *rs, int R);
/* The same for ctx's figures since it was made. Nothing for a dense model in one process. */
void cli_report_ranks(struct cJSON *root, FILE *f, const char *cmd, moge_context *ctx);
/* Where a context's forwards spent their time (moge_forward_times): into root (when not NULL) as
 * object `key` (seconds per part: qkv, attention, out_proj, mlp, router, experts, lm_head, other;
 * forwards, rows), and on f (when not NULL) as one line "moge CMD: LABEL: N forwards (R rows),
 * S s: qkv P %, ...". Nothing on f when no forward was counted. */
void cli_forward_times_out(struct cJSON *root, const char *key, FILE *f, const char *cmd, const char *label, const moge_forward_times *ft);
/* --kernels NAME: a cpu kernel variant this processor runs; false after printing an error naming
 * the ones it does. */
bool cli_kernels(const char *cmd, const char *flag, const char *name);
/* The value of flag argv[*i] (advancing *i), or NULL after printing an error when it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
/* Writes text and a newline to path through path.PID.tmp and a rename ("-": stdout). False after
 * printing "moge CMD: FLAG: cannot write PATH". */
bool cli_write_text(const char *cmd, const char *flag, const char *path, const char *text);
/* Before the work starts: whether cli_write_text will be able to write path (its folder takes a
 * new file; it is not a directory). False after printing "moge CMD: FLAG PATH: cannot write there (why)". */
bool cli_check_output(const char *cmd, const char *flag, const char *path);
/* "512 B", "14.8 kB", "1.0 MB", "3.21 GB" into buf; returns buf. */
const char *cli_human_bytes(int64_t n, char *buf, size_t cap);
/* --prompts FILE: its lines without their line ends, blank ones (nothing but spaces and tabs)
 * skipped, into *lines (malloc'd strings in a malloc'd array; the caller frees them, also on
 * failure) and their count *n. False after printing "moge CMD: --prompts FILE: ..." (it cannot be
 * opened, it has no prompt, out of memory). */
bool cli_read_prompts(const char *cmd, const char *path, char ***lines, int *n);
/* Replaces the escapes of s in place as llama.cpp's -e does: \\n \\r \\t \\' \\" \\\\ and \\xHH (two hex
 * digits); any other backslash stays. Returns s. */
char *cli_unescape(char *s);
/* Whether standard input is a pipe (moge run reads its prompt from one when -p is not given). */
bool cli_stdin_is_pipe(void);
/* The whole text of path ("-": standard input) as a malloc'd string without one final line end
 * ("\n" or "\r\n"); NULL after printing "moge CMD: WHAT: ..." (cannot be read, NUL bytes, out of memory). */
char *cli_read_text(const char *cmd, const char *what, const char *path);
/* Tokenizes text with the tokenizer's special tokens (BOS) into *ids (malloc'd, also on failure:
 * the caller frees it) and *n. */
moge_status cli_tokenize(const moge_tokenizer *tok, const char *text, int32_t **ids, size_t *n);

/* ------------------------------------------------------------------------------------------ */
/* Every other command's flags: a table per command, one parser                                */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
    CLI_ARG_STR,    /* const char **dest = the value */
    CLI_ARG_I32,    /* int32_t *dest, in [min, max] */
    CLI_ARG_INT,    /* int *dest, in [min, max] */
    CLI_ARG_U64,    /* uint64_t *dest */
    CLI_ARG_SWITCH, /* bool *dest = true (no value) */
} cli_arg_kind;

typedef struct {
    const char *shrt, *name; /* "-m" (may be NULL), "--model" */
    cli_arg_kind kind;
    void *dest;
    long min, max;           /* CLI_ARG_I32, CLI_ARG_INT */
} cli_flag;

/* Parses argv[1..argc) by the table: "-h"/"--help" calls usage(stdout) and returns 0; a word that
 * is not a flag (or "-" alone) goes to pos[*n_pos] (at most max_pos of them; more is an error); an
 * unknown flag, a missing or bad value print one message naming it. Returns -1 when parsing
 * succeeded, else the exit status (2). */
int cli_parse_flags(const char *cmd, const cli_flag *flags, int n_flags, int argc, char **argv, const char **pos, int max_pos,
                    int *n_pos, void (*usage)(FILE *));
/* "moge CMD: unknown option "ARG" (see moge CMD --help)"; returns the exit status 2. */
int cli_unknown(const char *cmd, const char *arg);

/* ------------------------------------------------------------------------------------------ */
/* The flags run, chat and bench share                                                         */
/* ------------------------------------------------------------------------------------------ */

/* The commands a row of the shared flag table applies to. Intended differences are rows of their
 * own: -n's range and default, --temp's default (bench: 0), bench's --lookup (a mode of its own),
 * --spec (not in bench, which has --modes), and help texts that mention a command's defaults.
 * eval takes only the model flags (-m, -t, --backend, --quant, --routing, --n-group,
 * --topk-group, --devices). */
enum { CLI_RUN = 1, CLI_CHAT = 2, CLI_BENCH = 4, CLI_EVAL = 8 };

#define CLI_PATH_CAP 4096

typedef struct {
    const char *cmd;                  /* "run", "chat", "bench" or "eval": every message starts "moge CMD: " */
    unsigned who;                     /* CLI_RUN, CLI_CHAT, CLI_BENCH or CLI_EVAL */
    const char *model, *draft;        /* -m, -d (NULL: not given) */
    const char *tokenizer;            /* the tokenizer to load instead of the model directory's (NULL: its own) */
    bool devices_per_group;           /* MoE without --devices: one expert group per device (not automatic) */
    bool model_default, draft_default; /* chosen by cli_default_models, not given */
    int32_t draft_layers;             /* --draft-layers L; 0 = off */
    bool lookup;                      /* --lookup */
    int spec;                         /* --spec as a moge_spec_mode; -1 = not given */
    bool seed_random;
    bool quiet;                       /* run -q: no statistics on stderr (errors only) */
    const char *ctx_flag, *devices_flag; /* the spelling the user typed for -c and --devices (errors name it) */                 /* run, chat: no --seed, gp.sampler.seed is a random one (printed at load) */
    int32_t shape[16];                /* --tree-shape (gp.draft.shape points here) */
    moge_model_params mp;             /* -t --backend --quant --routing --n-group --topk-group */
    moge_context_params cp;           /* -c --devices */
    moge_generate_params gp;          /* -n, the sampler, the draft parameters, --no-adaptive */
    char model_buf[CLI_PATH_CAP], draft_buf[CLI_PATH_CAP]; /* the default models' paths */
} cli_common_opts;

/* The library's defaults, and the command's where they differ (chat: -n 256; bench: --temp 0). */
void cli_common_init(cli_common_opts *o, const char *cmd, unsigned who);
/* Consumes the shared flag argv[*i] and its value (advancing *i). Returns 1 when consumed, 0 when
 * the flag is not a shared one of this command, -1 after printing an error naming the flag. */
int cli_parse_common(int argc, char **argv, int *i, cli_common_opts *o);
/* Prints "unknown option" for arg with a pointer to --help; returns the exit status 2. */
int cli_unknown_option(const cli_common_opts *o, const char *arg);
/* cli_parse_flags for a command with shared flags (bench, eval): each word is tried as one of
 * c's shared flags (cli_parse_common) first, then against the command's own table; no positional
 * words. Returns -1 when parsing succeeded, else the exit status (0 after --help, 2). */
int cli_parse_flags_common(cli_common_opts *c, const cli_flag *flags, int n_flags, int argc, char **argv, void (*usage)(FILE *));
/* The help of o's command's shared flags with its defaults (not the values of flags parsed so
 * far); own (the command's own option lines, may be NULL) follows the -m line. */
void cli_common_usage(FILE *f, const cli_common_opts *o, const char *own);

typedef enum { CLI_DRAFT_NONE, CLI_DRAFT_MODEL, CLI_DRAFT_LAYERS, CLI_DRAFT_LOOKUP } cli_draft_kind;

/* The drafter the flags chose; bench's --lookup is a mode of its own, not a drafter. */
cli_draft_kind cli_draft_choice(const cli_common_opts *o);
/* False after printing an error when more than one drafter is given. */
bool cli_check_drafters(const cli_common_opts *o);
/* Without -m: models/tinystories-moge when it and models/tinystories-draft exist (under the
 * working directory or next to the binary), else models/stories260K. When want_draft and no
 * drafter was given, -d becomes tinystories-draft with that pair, else (self_draft) the target
 * itself. False after printing an error when no demo model exists. */
bool cli_default_models(cli_common_opts *o, bool want_draft, bool self_draft);
/* A committed model directory models/NAME (e.g. "stories260K", "configs/qwen2.5-32b") under the
 * working directory, else next to the binary, into out; false when neither has a config.json. */
bool cli_committed_model(const char *name, char *out, size_t cap);

typedef struct {
    moge_model *model, *draft_model;
    moge_tokenizer *tok, *draft_tok;
    moge_context *ctx;
    moge_model_info info;
} cli_models;

/* -m: resolves o->model, loads it and its tokenizer (o->tokenizer when set), makes a context
 * (o->cp; without -c the model's maximum, at most max_ctx when max_ctx > 0; for a MoE model
 * without --devices and with o->devices_per_group, n_group devices). max_ctx < 0: no context
 * (m->ctx NULL), the caller makes one with cli_batch_context. False after printing an error. */
bool cli_load_model(const cli_common_opts *o, int32_t max_ctx, cli_models *m);
/* The most prompt tokens a sequence can take: m->ctx's n_ctx, or without a context -c, else the
 * model's maximum. */
int32_t cli_prompt_limit(const cli_common_opts *o, const cli_models *m);
/* Draft nodes below the root one step of gp can verify: 0 (no speculation), draft_max (chain)
 * or tree_nodes (tree). */
int32_t cli_tree_nodes(const moge_generate_params *gp);
#define CLI_BATCH_ROWS_CAP 2048 /* cli_batch_context's n_batch, unless n_seq is larger */
/* m->ctx (NULL before: cli_load_model with max_ctx < 0) for n_seq sequences decoded together
 * (moge_decoder): n_ctx per sequence -c when given, else just what the longest prompt,
 * o->gp.n_predict tokens and a tree of largest_tree nodes need (the model's maximum at most), so
 * that the KV cache (n_seq x n_ctx slots) holds no slot the run cannot use; n_batch
 * n_seq x (largest_tree + 1) rows, so one pass verifies every sequence's root and tree (at least
 * 64, at most CLI_BATCH_ROWS_CAP or n_seq; past it the decoder gives trees fewer nodes).
 * Devices as cli_load_model. False after printing an error. */
bool cli_batch_context(const cli_common_opts *o, cli_models *m, int32_t n_seq, int32_t longest_prompt, int32_t largest_tree);
/* A drafter for m's target (with m->ctx's n_ctx) serving n_seq sequences (one drafter for a whole
 * batch): kind MODEL loads -d with the target's model parameters (its tokenizer must equal the
 * target's) on the first call and shares that draft model and tokenizer with the drafters of later
 * calls, LAYERS the target's first --draft-layers layers, else prompt lookup (any number). desc (may be NULL) gets a description such as
 * "draft model DIR". False after printing an error that names the flag. The draft model and
 * tokenizer stay in m (one per m); the caller frees *out, before cli_models_free. */
bool cli_load_drafter(const cli_common_opts *o, cli_draft_kind kind, cli_models *m, int32_t n_seq, moge_drafter **out, char *desc,
                      size_t desc_cap);

void cli_models_free(cli_models *m);

/* moge_detok_stream_push / _flush into *buf (cap bytes), grown first to what the call may write:
 * a run of byte tokens (ByteFallback) is held until it ends, so that bound grows with the run.
 * *n: the bytes written. MOGE_ERR_NOMEM when the buffer cannot grow. */
moge_status cli_detok_push(moge_detok_stream *s, int32_t id, char **buf, size_t *cap, size_t *n);
moge_status cli_detok_flush(moge_detok_stream *s, char **buf, size_t *cap, size_t *n);

#endif
