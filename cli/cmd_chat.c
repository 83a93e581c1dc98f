/*
 * cmd_chat.c — `moge chat`: an interactive chat (REPL) with one model.
 *
 * Contract:
 *  - Input: lines from a terminal through libedit (line editing; history kept in
 *    $HOME/.moge_chat_history), or plain lines from stdin when stdin is not a terminal (then no
 *    prompt and no escape codes). A line starting with '/' is a command (/help lists them); any
 *    other non-empty line is the user's turn.
 *  - Output: answers stream to stdout token by token; the banner, one status line per answer
 *    (tokens, tokens/s, τ; ANSI dim when interactive) and diagnostics go to stderr; command
 *    output (/stats, /help, acknowledgements) goes to stdout.
 *  - Template: the tokenizer's chat family renders the conversation. When there is none, or one
 *    moge does not recognise, the banner says so and the plain "user: ...\nassistant:" fallback
 *    (MOGE_CHAT_PLAIN) is used. A tokenizer without any chat template is a base model (e.g. the
 *    TinyStories demos): its assistant turn starts with the user's line ("assistant: LINE"), so
 *    the answer continues that line as a story.
 *  - KV reuse: the context keeps the conversation between turns. Each turn renders the whole
 *    conversation, tokenizes it, and feeds moge_generate only the tokens past the longest prefix
 *    the cache already holds: normally the previous answer's last token (which moge_generate leaves
 *    unevaluated), the closing of that answer and the new turn. Should the re-tokenized answer
 *    differ from the generated tokens, the cache is truncated to the common prefix right after
 *    the answer. The cache therefore always holds a prefix of a fresh prefill of the rendered
 *    conversation; /tokens checks that, down to the next token's logits.
 *  - An answer ends at EOS, at any special token (end-of-turn markers such as <|im_end|>, the BOS
 *    that separates TinyStories), after -n tokens, at Ctrl-C, or when the context is full.
 *  - Ctrl-C stops an answer and returns to the prompt; at the prompt it clears the line. Ctrl-D on
 *    an empty line, /quit or the end of piped input exit with status 0. A full context is
 *    reported and a turn that does not fit is refused; the session goes on (/reset empties it).
 */
#include <errno.h>
#include <histedit.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"

#define DEFAULT_MAX_CTX 8192 /* without -c: the model's maximum, at most this */


static void usage(FILE *f, const cli_common_opts *o) {
    fputs("usage: moge chat [-m DIR] [options]\n"
          "\n"
          "Chats with a model: type a line, the answer streams back; the conversation stays in the\n"
          "model's KV cache between turns. /help lists the commands; Ctrl-C stops an answer, Ctrl-D quits.\n"
          "When stdin is not a terminal, each input line is one turn (or command).\n"
          "\n",
          f);
    cli_common_usage(f, o,
                     "  -sys, --system TEXT    system message at the start of the conversation (also --system-prompt)\n"
                     "      --token-delay MS   pause MS milliseconds after each streamed token (demos, tests)\n");
}

static void help(void) {
    puts("commands:\n"
         "  /help           this list\n"
         "  /stats          the last answer: tokens, tokens/s, τ, acceptance by depth, draft vs verify time, expert load\n"
         "  /reset          forget the conversation (empties the KV cache)\n"
         "  /temp F         sampling temperature (0 = greedy)\n"
         "  /spec MODE      speculation: none, chain or tree (prompt lookup when started without a drafter)\n"
         "  /tree N         draft nodes per speculative step (1..63)\n"
         "  /tokens         (debugging) check the KV cache against a fresh prefill of the conversation\n"
         "  /quit           leave (so do Ctrl-D and /exit)\n"
         "Ctrl-C stops an answer; at the prompt it clears the line.");
}

/* ------------------------------------------------------------------------------------------ */
/* Options                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    cli_common_opts c; /* the flags run, chat and bench share */
    const char *system;
    int token_delay_ms;
} chat_opts;


/* Returns -1 when parsing succeeded, else the exit status (0 after --help). */
static int parse_args(int argc, char **argv, chat_opts *o) {
    cli_common_opts *c = &o->c;
    cli_common_init(c, "chat", CLI_CHAT);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long l;
        int r = cli_parse_common(argc, argv, &i, c);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout, c); return 0; }
        if (!strcmp(a, "--system") || !strcmp(a, "-sys") || !strcmp(a, "--system-prompt")) { if (!(o->system = cli_value(c->cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--token-delay")) {
            if (!(v = cli_value(c->cmd, argc, argv, &i)) || !cli_int(c->cmd, a, v, 0, 10000, &l)) return 2;
            o->token_delay_ms = (int)l;
        }
        else return cli_unknown_option(c, a);
    }
    return cli_check_drafters(c) ? -1 : 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Session state                                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char *role, *content;
} chat_msg;

/* The last answer's numbers, for /stats (taken right after the answer). */
typedef struct {
    bool valid;
    moge_stats st;
    moge_spec_mode spec;
    int32_t n_reused, n_kv;
    const char *stop;
    int32_t moe_layers, moe_devices, moe_experts, worst_layer;
    double moe_is_mean, moe_is_worst_layer, moe_is_max, moe_distinct;
} answer_stats;

typedef struct {
    cli_models m;              /* target, tokenizer, context (and the draft model of -d) */
    const cli_common_opts *opts;
    moge_drafter *drafter;
    char drafter_desc[CLI_PATH_CAP + 64];
    moge_chat_family family;   /* what renders the conversation (MOGE_CHAT_PLAIN for the fallback) */
    bool continue_user;        /* base model: the assistant's turn starts with the user's line */
    const char *eos_text;      /* written after assistant turns by families that do ([INST]) */
    moge_generate_params gp;
    uint64_t seed;
    int token_delay_ms;
    int32_t n_devices;         /* the context's MoE workers, for /tokens' fresh context */
    chat_msg *msgs;
    size_t n_msgs, cap_msgs;
    int32_t *kv, n_kv;         /* the tokens the KV cache holds, in order (n_kv == n_past) */
    int32_t n_answers;
    answer_stats last;
    bool interactive, color;
    EditLine *el;
    History *hist;
    char hist_path[PATH_MAX];
} chat;

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) {
        fputs("moge chat: out of memory\n", stderr);
        exit(1);
    }
    return d;
}

static void push_msg(chat *c, const char *role, const char *content) {
    if (c->n_msgs == c->cap_msgs) {
        size_t cap = c->cap_msgs ? 2 * c->cap_msgs : 16;
        chat_msg *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) {
            fputs("moge chat: out of memory\n", stderr);
            exit(1);
        }
        c->msgs = m;
        c->cap_msgs = cap;
    }
    c->msgs[c->n_msgs].role = xstrdup(role);
    c->msgs[c->n_msgs++].content = xstrdup(content);
}

/* Removes message i (later ones move up). */
static void drop_msg(chat *c, size_t i) {
    free(c->msgs[i].role);
    free(c->msgs[i].content);
    memmove(c->msgs + i, c->msgs + i + 1, (c->n_msgs - i - 1) * sizeof *c->msgs);
    c->n_msgs--;
}

static void pop_msg(chat *c) {
    c->n_msgs--;
    free(c->msgs[c->n_msgs].role);
    free(c->msgs[c->n_msgs].content);
}

/* Forgets the conversation (the system message stays) and empties the KV cache. */
static void reset_conversation(chat *c, const char *system) {
    while (c->n_msgs > 0) pop_msg(c);
    if (system && system[0]) push_msg(c, "system", system);
    moge_kv_truncate(c->m.ctx, 0);
    c->n_kv = 0;
    c->n_answers = 0;
    c->last.valid = false;
}

/* ------------------------------------------------------------------------------------------ */
/* Rendering and tokenizing                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* The conversation as text. for_answer: it ends with a user turn and the text stops where the
 * model's answer starts (the generation prompt, plus the user's line for a base model). */
static moge_status render(const chat *c, bool for_answer, char **out, char *err, size_t err_size) {
    moge_chat_message *m = malloc((c->n_msgs ? c->n_msgs : 1) * sizeof *m);
    if (!m) return MOGE_ERR_NOMEM;
    for (size_t i = 0; i < c->n_msgs; i++) m[i] = (moge_chat_message){c->msgs[i].role, c->msgs[i].content};
    char *text = NULL;
    moge_status st = moge_chat_render(c->family, m, c->n_msgs, for_answer, NULL, c->eos_text, &text, err, err_size);
    free(m);
    if (st == MOGE_OK && for_answer && c->continue_user) {
        const char *line = c->msgs[c->n_msgs - 1].content;
        size_t n = strlen(text);
        char *t = realloc(text, n + strlen(line) + 2);
        if (!t) { free(text); return MOGE_ERR_NOMEM; }
        text = t;
        sprintf(text + n, " %s", line);
    }
    *out = st == MOGE_OK ? text : NULL;
    return st;
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* The tokens of a fresh prefill of the conversation (see render()); prints what went wrong. */
static bool conversation_tokens(const chat *c, bool for_answer, int32_t **ids, size_t *n_ids) {
    char err[512] = "", *text = NULL;
    *ids = NULL;
    *n_ids = 0;
    moge_status st = render(c, for_answer, &text, err, sizeof err);
    if (st == MOGE_OK) st = cli_tokenize(c->m.tok, text, ids, n_ids);
    free(text);
    if (st == MOGE_OK) return true;
    fprintf(stderr, "moge chat: rendering the conversation: %s\n", err[0] ? err : moge_status_str(st));
    free(*ids);
    *ids = NULL;
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Output helpers                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* A line on stderr, dim on a terminal. */
static void dim_line(const chat *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    if (c->color) fputs("\033[2m", stderr);
    vfprintf(stderr, fmt, ap);
    if (c->color) fputs("\033[0m", stderr);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

static void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}


/* ------------------------------------------------------------------------------------------ */
/* One answer                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    chat *c;
    moge_detok_stream *stream;
    char *buf;
    size_t cap;
    int32_t *ids;             /* every id passed to the callback */
    int32_t n_ids, cap_ids;
    char *text;               /* everything the stream produced (leading spaces included) */
    size_t n_text, cap_text;
    bool shown_any, end_of_turn, failed;
} answer;

static bool append_text(answer *a, const char *s, size_t n) {
    if (a->n_text + n + 1 > a->cap_text) {
        size_t cap = (a->n_text + n + 1) * 2;
        char *t = realloc(a->text, cap);
        if (!t) return false;
        a->text = t;
        a->cap_text = cap;
    }
    memcpy(a->text + a->n_text, s, n);
    a->n_text += n;
    a->text[a->n_text] = 0;
    return true;
}

/* Appends streamed text and prints it, skipping the answer's leading whitespace on screen. */
static bool show(answer *a, const char *s, size_t n) {
    if (!append_text(a, s, n)) return false;
    if (!a->shown_any) {
        while (n > 0 && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) { s++; n--; }
        a->shown_any = n > 0;
    }
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    return true;
}

static void pause_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (!cli_interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static bool on_token(int32_t id, void *user) {
    answer *a = user;
    if (a->n_ids == a->cap_ids) {
        int32_t cap = a->cap_ids ? 2 * a->cap_ids : 256, *ids = realloc(a->ids, (size_t)cap * sizeof *ids);
        if (!ids) { a->failed = true; return false; }
        a->ids = ids;
        a->cap_ids = cap;
    }
    a->ids[a->n_ids++] = id;
    if (moge_tokenizer_is_special(a->c->m.tok, id)) { /* a control token ends the turn */
        a->end_of_turn = true;
        return false;
    }
    size_t n = 0;
    if (cli_detok_push(a->stream, id, &a->buf, &a->cap, &n) != MOGE_OK || !show(a, a->buf, n)) {
        a->failed = true;
        return false;
    }
    if (a->c->token_delay_ms > 0) pause_ms(a->c->token_delay_ms);
    return !cli_interrupted;
}

static const char *stop_name(const moge_stats *st, const answer *a) {
    if (a->end_of_turn || st->stop == MOGE_STOP_EOS) return "end of turn";
    return moge_stop_name(st->stop);
}

/* Copies the MoE load of the last answer (totals since moge_generate reset them). */
static void snapshot_moe(chat *c) {
    answer_stats *s = &c->last;
    s->moe_layers = moge_context_n_moe_layers(c->m.ctx);
    s->moe_is_mean = s->moe_is_worst_layer = s->moe_is_max = s->moe_distinct = 0;
    s->worst_layer = -1;
    for (int32_t l = 0; l < s->moe_layers; l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(c->m.ctx, l, true, &ms) != MOGE_OK) continue;
        s->moe_devices = ms.n_devices;
        s->moe_experts = ms.n_experts;
        s->moe_is_mean += ms.imbalance / s->moe_layers;
        s->moe_distinct += ms.distinct_experts / s->moe_layers;
        if (ms.imbalance_max > s->moe_is_max) s->moe_is_max = ms.imbalance_max;
        if (s->worst_layer < 0 || ms.imbalance > s->moe_is_worst_layer) {
            s->worst_layer = l;
            s->moe_is_worst_layer = ms.imbalance;
        }
    }
}

/* Truncates the KV cache to its longest prefix that a fresh prefill of the rendered conversation
 * shares: re-tokenizing an answer's text need not give the tokens the model generated. */
static void keep_common_prefix(chat *c) {
    int32_t *ids;
    size_t n_ids;
    if (!conversation_tokens(c, false, &ids, &n_ids)) return;
    int32_t common = (int32_t)common_prefix(c->kv, (size_t)c->n_kv, ids, n_ids);
    if (common < c->n_kv) {
        moge_kv_truncate(c->m.ctx, common);
        c->n_kv = common;
    }
    free(ids);
}

/* After an answer: the KV cache holds the fed prompt and every answer token but the last. */
static void record_answer(chat *c, const answer *a, const int32_t *prompt, int32_t n_prompt) {
    memcpy(c->kv + c->n_kv, prompt, (size_t)n_prompt * sizeof *prompt);
    c->n_kv += n_prompt;
    int32_t keep = a->n_ids > 0 ? a->n_ids - 1 : 0;
    if (c->n_kv + keep > moge_context_n_ctx(c->m.ctx)) keep = moge_context_n_ctx(c->m.ctx) - c->n_kv;
    memcpy(c->kv + c->n_kv, a->ids, (size_t)keep * sizeof *a->ids);
    c->n_kv += keep;
    if (c->n_kv != moge_context_n_past(c->m.ctx)) { /* never expected; keep the cache and the record in step */
        note("moge chat: internal: the KV cache holds %d tokens, expected %d; use /reset", moge_context_n_past(c->m.ctx), c->n_kv);
        if (c->n_kv > moge_context_n_past(c->m.ctx)) c->n_kv = moge_context_n_past(c->m.ctx);
        moge_kv_truncate(c->m.ctx, c->n_kv);
    }
    /* The assistant's message is the text shown (a base model's includes the user's line). */
    const char *t = a->text ? a->text : "";
    size_t n = a->n_text;
    while (n > 0 && strchr(" \t\r\n", t[n - 1])) n--;
    char *content;
    if (c->continue_user) {
        const char *line = c->msgs[c->n_msgs - 1].content;
        content = malloc(strlen(line) + n + 1);
        if (content) sprintf(content, "%s%.*s", line, (int)n, t);
    } else {
        while (n > 0 && strchr(" \t\r\n", *t)) { t++; n--; }
        content = malloc(n + 1);
        if (content) sprintf(content, "%.*s", (int)n, t);
    }
    push_msg(c, "assistant", content ? content : "");
    free(content);
    keep_common_prefix(c);
}

static void report_answer(chat *c, const moge_stats *st, const answer *a, int32_t n_reused) {
    answer_stats *s = &c->last;
    s->valid = true;
    s->st = *st;
    s->spec = c->gp.spec;
    s->n_reused = n_reused;
    s->n_kv = c->n_kv;
    s->stop = stop_name(st, a);
    snapshot_moe(c);
    const char *why = !strcmp(s->stop, "stopped") ? ", stopped" : !strcmp(s->stop, "length") ? ", length limit" : "";
    dim_line(c, "[%d tokens, %.1f tokens/s, τ %.2f%s]", st->n_generated, st->tokens_per_s, st->mean_accepted, why);
    if (st->stop == MOGE_STOP_CONTEXT_FULL && !a->end_of_turn)
        note("context full (%d tokens): your next line drops the oldest turns to make room (/reset starts over)", moge_context_n_ctx(c->m.ctx));
}

/* Prepares the stream so the first answer token decodes in context (e.g. its leading space). */
static moge_status answer_init(answer *a, chat *c, const int32_t *prompt, int32_t n_prompt) {
    memset(a, 0, sizeof *a);
    a->c = c;
    moge_status st = moge_detok_stream_new(c->m.tok, &a->stream);
    if (st != MOGE_OK) return st;
    return moge_detok_stream_prime(a->stream, prompt, (size_t)n_prompt);
}

static void answer_free(answer *a) {
    moge_detok_stream_free(a->stream);
    free(a->buf);
    free(a->ids);
    free(a->text);
}

/* The tokens of the conversation up to the new answer, or NULL (after saying why) when they do not
 * fit. The KV cache is truncated to the prefix it shares with them (normally all of it); *common
 * is that prefix's length, and at least one token is left to feed. */
static int32_t *prepare_turn(chat *c, size_t *n_ids, size_t *common) {
    int32_t *ids;
    int32_t n_ctx = moge_context_n_ctx(c->m.ctx);
    /* room for an answer: -n tokens, at most a quarter of the context */
    int64_t room = c->gp.n_predict < n_ctx / 4 ? c->gp.n_predict : n_ctx / 4;
    int n_dropped = 0;
    for (;;) {
        if (!conversation_tokens(c, true, &ids, n_ids)) return NULL;
        if ((int64_t)*n_ids + room <= n_ctx) break;
        /* the context fills: the oldest turn goes (user line and answer), the system message stays */
        size_t first = c->n_msgs > 0 && !strcmp(c->msgs[0].role, "system") ? 1 : 0;
        if (c->n_msgs - first < 2) break; /* only this line is left */
        free(ids);
        drop_msg(c, first);
        if (first < c->n_msgs - 1 && !strcmp(c->msgs[first].role, "assistant")) drop_msg(c, first);
        n_dropped++;
    }
    if (n_dropped) note("context full (%d tokens): the oldest %d turn%s left the conversation to make room", n_ctx, n_dropped, n_dropped > 1 ? "s" : "");
    if ((int64_t)*n_ids > n_ctx) {
        note("this line does not fit the context: with the conversation it takes %zu tokens of %d%s", *n_ids, n_ctx,
             c->n_msgs > 1 ? "" : " (a shorter line, or a larger -c)");
        free(ids);
        return NULL;
    }
    *common = common_prefix(c->kv, (size_t)c->n_kv, ids, *n_ids);
    if (*common == *n_ids) *common = *n_ids - 1; /* moge_generate needs at least one new token */
    if ((int32_t)*common < c->n_kv) {
        moge_kv_truncate(c->m.ctx, (int32_t)*common);
        c->n_kv = (int32_t)*common;
    }
    return ids;
}

/* While an answer streams on a terminal, keys are not echoed: a Ctrl-C's "^C" (or a key typed
 * ahead) would land inside the answer's text. Returns whether it changed the mode (restore then). */
static bool tty_quiet(bool quiet, struct termios *saved) {
    if (quiet) {
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, saved) != 0) return false;
        struct termios t = *saved;
        t.c_lflag &= ~(tcflag_t)(ECHO | ECHOCTL);
        return tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    tcsetattr(STDIN_FILENO, TCSANOW, saved);
    return false;
}

/* One user turn: render, feed the new tokens, stream the answer, remember it. */
static void user_turn(chat *c, const char *line) {
    push_msg(c, "user", line);
    size_t n_ids, common;
    int32_t *ids = prepare_turn(c, &n_ids, &common);
    if (!ids) {
        pop_msg(c);
        return;
    }
    int32_t n_new = (int32_t)(n_ids - common);
    const int32_t *prompt = ids + common;
    answer a;
    moge_stats stats;
    c->gp.sampler.seed = c->seed + (uint64_t)c->n_answers;
    cli_interrupted = 0;
    moge_status st = answer_init(&a, c, prompt, n_new);
    c->gp.context_tokens = ids; /* the drafter and the penalty see the whole conversation */
    c->gp.n_context_tokens = (int32_t)common;
    struct termios saved;
    bool restore = c->interactive && tty_quiet(true, &saved);
    if (st == MOGE_OK) st = moge_generate(c->m.ctx, prompt, n_new, &c->gp, on_token, &a, &stats);
    if (st == MOGE_ERR_ABORTED && stats.n_generated > 0) { /* Ctrl-C in a pass: as if the callback had stopped it */
        st = MOGE_OK;
        stats.stop = MOGE_STOP_CALLBACK;
    }
    if (restore) tty_quiet(false, &saved);
    c->gp.context_tokens = NULL;
    c->gp.n_context_tokens = 0;
    size_t n = 0;
    if (a.stream && cli_detok_flush(a.stream, &a.buf, &a.cap, &n) == MOGE_OK) show(&a, a.buf, n);
    if (a.shown_any) fputc('\n', stdout);
    fflush(stdout);
    if (st == MOGE_ERR_ABORTED) { /* Ctrl-C before the first token: the turn is dropped */
        note("moge chat: interrupted before the answer began");
        moge_kv_truncate(c->m.ctx, c->n_kv);
        pop_msg(c);
    } else if (st != MOGE_OK) {
        note("moge chat: %s", moge_context_error(c->m.ctx)[0] ? moge_context_error(c->m.ctx) : moge_status_str(st));
        moge_kv_truncate(c->m.ctx, c->n_kv);
        pop_msg(c);
    } else {
        record_answer(c, &a, prompt, n_new);
        c->n_answers++;
        report_answer(c, &stats, &a, (int32_t)common);
        if (a.failed) note("moge chat: the answer stopped: a token could not be decoded");
    }
    cli_interrupted = 0;
    answer_free(&a);
    free(ids);
}

/* ------------------------------------------------------------------------------------------ */
/* Commands                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void print_stats(const chat *c) {
    const answer_stats *s = &c->last;
    if (!s->valid) {
        puts("no answer yet");
        return;
    }
    const moge_stats *st = &s->st;
    printf("last answer: %d tokens in %.3f s, %.1f tokens/s, stop: %s\n", st->n_generated, st->t_decode_s, st->tokens_per_s, s->stop);
    printf("prompt: %d new tokens prefilled in %.3f s, %d reused from the KV cache; context %d of %d tokens\n", st->n_prompt,
           st->t_prefill_s, s->n_reused, s->n_kv, moge_context_n_ctx(c->m.ctx));
    printf("speculation %s: %d target passes, τ %.2f tokens per pass, %lld draft nodes (%.1f per step)\n", moge_spec_name(s->spec),
           st->n_forward + 1, st->mean_accepted, (long long)st->n_draft_nodes,
           st->n_forward > 0 ? (double)st->n_draft_nodes / st->n_forward : 0.0);
    fputs("acceptance by depth:", stdout);
    int shown = 0;
    for (int d = 1; d < MOGE_MAX_DEPTH && st->accept_tries[d] > 0; d++, shown++)
        printf(" %d: %.2f (%lld/%lld)", d, (double)st->accept_hits[d] / st->accept_tries[d], (long long)st->accept_hits[d],
               (long long)st->accept_tries[d]);
    puts(shown ? "" : " none (nothing drafted)");
    printf("time: draft %.3f s, verify %.3f s, draft accept %.3f s, emit %.3f s\n", st->t_draft_s, st->t_verify_s, st->t_draft_accept_s,
           st->t_emit_s);
    if (s->moe_layers == 0) {
        puts("experts: dense model (no MoE layers)");
    } else {
        printf("experts: %d MoE layers on %d devices (%s routing): Imbalance Score mean %.3f, worst layer %d at %.3f, worst pass %.3f; "
               "%.1f of %d experts per pass\n",
               s->moe_layers, s->moe_devices, c->m.info.routing, s->moe_is_mean, s->worst_layer, s->moe_is_worst_layer, s->moe_is_max,
               s->moe_distinct, s->moe_experts);
    }
}

/* /tokens: the KV cache must be a prefix of a fresh prefill of the rendered conversation; runs the
 * next token on the live cache (not committed) and on a fresh context, and compares the logits. */
static void check_tokens(chat *c) {
    char err[512] = "";
    int32_t *ids;
    size_t n_ids;
    if (!conversation_tokens(c, false, &ids, &n_ids)) return;
    size_t agree = common_prefix(c->kv, (size_t)c->n_kv, ids, n_ids);
    printf("tokens: KV cache %d (n_past %d), conversation %zu, agreeing prefix %zu\n", c->n_kv, moge_context_n_past(c->m.ctx), n_ids,
           agree);
    if (agree != (size_t)c->n_kv || n_ids <= agree || c->n_kv == 0) {
        free(ids);
        return;
    }
    if (c->n_kv >= moge_context_n_ctx(c->m.ctx)) {
        puts("tokens: the context is full: no room to check the next token's logits");
        free(ids);
        return;
    }
    /* Fresh context: prefill ids[0..n_kv) in causal chunks, then the next token. */
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = c->n_kv + 1;
    cp.n_batch = 64;
    cp.n_devices = c->n_devices;
    moge_context *fresh = NULL;
    const float *lg = NULL;
    float *want = NULL;
    int32_t V = c->m.info.n_vocab;
    moge_status st = moge_context_new(c->m.model, &cp, &fresh, err, sizeof err);
    for (int32_t done = 0; st == MOGE_OK && done <= c->n_kv;) {
        int32_t chunk = c->n_kv + 1 - done < 64 ? c->n_kv + 1 - done : 64;
        moge_batch b = {.n = chunk, .tokens = ids + done, .logits_last_only = true};
        st = moge_forward(fresh, &b, &lg);
        if (st == MOGE_OK) st = moge_kv_commit(fresh, NULL, chunk);
        done += chunk;
    }
    if (st == MOGE_OK && (want = malloc((size_t)V * sizeof *want)) != NULL) {
        memcpy(want, lg, (size_t)V * sizeof *want);
        moge_batch b = {.n = 1, .tokens = ids + c->n_kv, .logits_last_only = true};
        st = moge_forward(c->m.ctx, &b, &lg); /* not committed: the next forward drops the row */
    }
    if (st == MOGE_OK && want) {
        double diff = 0;
        for (int32_t v = 0; v < V; v++) {
            double d = (double)lg[v] - want[v];
            if (d < 0) d = -d;
            if (d > diff) diff = d;
        }
        printf("tokens: next-token logits, KV cache vs fresh prefill: max difference %.3g\n", diff);
    } else {
        printf("tokens: the fresh-prefill check failed: %s\n", err[0] ? err : moge_status_str(st));
    }
    free(want);
    moge_context_free(fresh);
    free(ids);
}

/* /spec MODE: speculation needs a drafter; without one, prompt lookup is made on demand. */
static void set_spec(chat *c, const char *arg) {
    moge_spec_mode spec;
    if (!arg[0]) { /* no argument: the current setting */
        if (c->gp.spec == MOGE_SPEC_NONE) puts("speculation: none (target only); /spec none|chain|tree changes it");
        else printf("speculation: %s, drafter: %s; /spec none|chain|tree changes it\n", moge_spec_name(c->gp.spec), c->drafter_desc);
        return;
    }
    if (moge_spec_parse(arg, &spec) != MOGE_OK) {
        puts("usage: /spec none|chain|tree");
        return;
    }
    if (spec != MOGE_SPEC_NONE && !c->drafter) {
        if (!cli_load_drafter(c->opts, CLI_DRAFT_LOOKUP, &c->m, 1, &c->drafter, c->drafter_desc, sizeof c->drafter_desc)) {
            puts("speculation: cannot make a drafter (see the message above)");
            return;
        }
        c->gp.drafter = c->drafter;
    }
    c->gp.spec = (moge_spec_mode)spec;
    if (spec == MOGE_SPEC_NONE) puts("speculation: none (target only)");
    else printf("speculation: %s, drafter: %s\n", moge_spec_name(c->gp.spec), c->drafter_desc);
}

static void set_tree(chat *c, const char *arg) {
    long n;
    if (!arg[0]) {
        printf("tree: up to %d draft nodes per step%s; /tree N changes it\n", (int)c->gp.draft.tree_nodes,
               c->gp.spec == MOGE_SPEC_TREE ? "" : " (used with /spec tree)");
        return;
    }
    if (!cli_int("chat", "/tree", arg, 1, 63, &n)) return;
    c->gp.draft.tree_nodes = (int32_t)n;
    c->gp.draft.shape = NULL; /* a node budget means a dynamic tree */
    c->gp.draft.n_shape = 0;
    printf("tree: up to %ld draft nodes per step%s\n", n, c->gp.spec == MOGE_SPEC_TREE ? "" : " (used with /spec tree)");
}

static void set_temp(chat *c, const char *arg) {
    double t;
    if (!arg[0]) {
        printf("temperature %g%s; /temp T changes it\n", (double)c->gp.sampler.temperature, c->gp.sampler.temperature == 0 ? " (greedy)" : "");
        return;
    }
    if (!cli_float("chat", "/temp", arg, 0, 100, &t)) return;
    c->gp.sampler.temperature = (float)t;
    printf("temperature %g%s\n", t, t == 0 ? " (greedy)" : "");
}

/* Runs a /command; returns false for /quit. */
static bool command(chat *c, const char *line, const char *system) {
    char name[32] = "";
    const char *arg = line + 1;
    size_t k = 0;
    while (*arg && *arg != ' ' && k + 1 < sizeof name) name[k++] = *arg++;
    name[k] = 0;
    while (*arg == ' ') arg++;
    if (!strcmp(name, "quit") || !strcmp(name, "exit")) return false;
    if (!strcmp(name, "help")) help();
    else if (!strcmp(name, "stats")) print_stats(c);
    else if (!strcmp(name, "reset")) {
        reset_conversation(c, system);
        puts("conversation cleared");
    }
    else if (!strcmp(name, "temp")) set_temp(c, arg);
    else if (!strcmp(name, "spec")) set_spec(c, arg);
    else if (!strcmp(name, "tree")) set_tree(c, arg);
    else if (!strcmp(name, "tokens")) check_tokens(c);
    else printf("unknown command /%s (see /help)\n", name);
    fflush(stdout);
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Input: libedit on a terminal, plain lines otherwise                                         */
/* ------------------------------------------------------------------------------------------ */

static const char *prompt_fn(EditLine *el) {
    (void)el;
    return "> ";
}

/* libedit's character reader: returns -1 as soon as Ctrl-C set the flag, 0 at end of input, 1 with
 * a character. libedit's own reader retries an interrupted read, and SIGINT may be handled by
 * another thread (OpenBLAS and the runtime start some), which leaves read() blocked: so it polls. */
static int getc_fn(EditLine *el, wchar_t *wc) {
    (void)el;
    char bytes[MB_LEN_MAX];
    size_t n = 0;
    for (;;) {
        if (cli_interrupted) {
            errno = EINTR;
            return -1;
        }
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue; /* timeout or EINTR: look at the flag again */
        ssize_t r = read(STDIN_FILENO, bytes + n, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return (int)r;
        n++;
        mbstate_t mbs;
        memset(&mbs, 0, sizeof mbs);
        size_t k = mbrtowc(wc, bytes, n, &mbs);
        if (k == (size_t)-2 && n < sizeof bytes) continue;
        if (k == (size_t)-1 || k == (size_t)-2) { n = 0; continue; } /* not UTF-8: drop it */
        return 1;
    }
}

static bool editor_open(chat *c, const char *argv0) {
    if (!setlocale(LC_CTYPE, "") || MB_CUR_MAX == 1) setlocale(LC_CTYPE, "C.UTF-8");
    c->el = el_init(argv0, stdin, stdout, stderr);
    c->hist = history_init();
    if (!c->el || !c->hist) return false;
    HistEvent ev;
    history(c->hist, &ev, H_SETSIZE, 1000);
    history(c->hist, &ev, H_SETUNIQUE, 1);
    const char *home = getenv("HOME");
    if (home && home[0]) {
        snprintf(c->hist_path, sizeof c->hist_path, "%s/.moge_chat_history", home);
        history(c->hist, &ev, H_LOAD, c->hist_path);
    }
    el_set(c->el, EL_EDITOR, "emacs");
    el_set(c->el, EL_SIGNAL, 1);
    el_set(c->el, EL_PROMPT, prompt_fn);
    el_set(c->el, EL_HIST, history, c->hist);
    el_set(c->el, EL_GETCFN, getc_fn);
    el_source(c->el, NULL); /* ~/.editrc */
    return true;
}

static void editor_close(chat *c) {
    if (c->hist) {
        HistEvent ev;
        if (c->hist_path[0]) history(c->hist, &ev, H_SAVE, c->hist_path);
        history_end(c->hist);
    }
    if (c->el) el_end(c->el);
}

/* Reads a line without its newline into *line (malloc'd). Returns 1 for a line, 0 at the end of
 * input, -1 when Ctrl-C cleared the prompt. */
static int read_line(chat *c, char **line) {
    *line = NULL;
    cli_interrupted = 0;
    if (!c->interactive) {
        size_t cap = 0;
        ssize_t n = getline(line, &cap, stdin);
        if (n < 0) {
            free(*line);
            *line = NULL;
            return 0;
        }
        while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
        return 1;
    }
    int count = 0;
    const char *s = el_gets(c->el, &count);
    if (!s) {
        if (count < 0 && cli_interrupted) {
            fputc('\n', stdout);
            fflush(stdout);
            cli_interrupted = 0;
            return -1;
        }
        fputc('\n', stdout); /* Ctrl-D: leave the shell's prompt on a fresh line */
        return 0;
    }
    *line = xstrdup(s);
    size_t n = strlen(*line);
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
    if (n > 0) {
        HistEvent ev;
        history(c->hist, &ev, H_ENTER, *line);
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Loads the model, tokenizer, context and drafter named by the options. Prints the error. */
static bool load(chat *c, chat_opts *o) {
    c->opts = &o->c;
    o->c.cp.abort_cb = cli_abort_cb; /* Ctrl-C also stops a long prefill or verification pass */
    if (!cli_load_model(&o->c, DEFAULT_MAX_CTX, &c->m)) return false;
    c->kv = malloc((size_t)moge_context_n_ctx(c->m.ctx) * sizeof *c->kv);
    if (!c->kv) return false;
    cli_draft_kind kind = cli_draft_choice(&o->c);
    if (o->c.spec < 0) o->c.spec = kind != CLI_DRAFT_NONE ? MOGE_SPEC_TREE : MOGE_SPEC_NONE;
    /* a drafter given with --spec none is made too, for /spec; chain or tree without one: lookup */
    if ((kind != CLI_DRAFT_NONE || o->c.spec != MOGE_SPEC_NONE) &&
        !cli_load_drafter(&o->c, kind, &c->m, 1, &c->drafter, c->drafter_desc, sizeof c->drafter_desc))
        return false;
    c->gp = o->c.gp;
    c->gp.spec = (moge_spec_mode)o->c.spec;
    c->gp.drafter = c->drafter;
    c->seed = o->c.gp.sampler.seed;
    c->token_delay_ms = o->token_delay_ms;
    c->n_devices = o->c.cp.n_devices;
    return true;
}

/* Picks how the conversation is rendered (see the contract at the top). */
static void choose_template(chat *c) {
    moge_chat_family f = moge_tokenizer_chat_family(c->m.tok);
    c->continue_user = f == MOGE_CHAT_NONE;
    c->family = f == MOGE_CHAT_NONE || f == MOGE_CHAT_UNKNOWN ? MOGE_CHAT_PLAIN : f;
    int32_t eos = moge_tokenizer_eos(c->m.tok);
    c->eos_text = f == MOGE_CHAT_MISTRAL && eos >= 0 ? moge_tokenizer_piece(c->m.tok, eos) : NULL;
}

static void banner(const chat *c, const char *model_arg) {
    char where[256];
    cli_backend_desc(&c->m.info, where, sizeof where);
    note("moge chat: model %s (%s, %.1fM parameters, %s), context %d tokens", model_arg, c->m.info.architecture,
         c->m.info.n_params / 1e6, where, moge_context_n_ctx(c->m.ctx));
    if (c->gp.spec != MOGE_SPEC_NONE) note("speculation: %s, drafter: %s", moge_spec_name(c->gp.spec), c->drafter_desc);
    else note("speculation: none (/spec tree drafts%s)", c->drafter ? "" : " by prompt lookup");
    moge_chat_family f = moge_tokenizer_chat_family(c->m.tok);
    if (f == MOGE_CHAT_NONE)
        note("this model has no chat template (a base model): each answer continues your line (a story start works best)");
    else if (f == MOGE_CHAT_UNKNOWN)
        note("the model's chat template is not one moge knows: using plain 'user:/assistant:' turns");
    else
        note("chat template: %s", moge_chat_family_name(f));
    if (c->interactive) note("/help lists the commands; Ctrl-C stops an answer, Ctrl-D quits.");
}

static void unload(chat *c) {
    while (c->n_msgs > 0) pop_msg(c);
    free(c->msgs);
    free(c->kv);
    moge_drafter_free(c->drafter);
    cli_models_free(&c->m);
}

int cmd_chat(int argc, char **argv) {
    chat_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    if (!cli_default_models(&o.c, true, false)) return 2;
    chat c;
    memset(&c, 0, sizeof c);
    c.interactive = isatty(STDIN_FILENO);
    c.color = c.interactive && isatty(STDERR_FILENO);
    if (!load(&c, &o)) {
        unload(&c);
        return 1;
    }
    choose_template(&c);
    reset_conversation(&c, o.system);
    if (c.interactive && !editor_open(&c, "moge")) {
        fputs("moge chat: cannot start libedit\n", stderr);
        editor_close(&c);
        unload(&c);
        return 1;
    }
    banner(&c, o.c.model);
    struct sigaction old;
    if (c.interactive) cli_catch_sigint(false, &old);
    for (;;) {
        char *line;
        int r = read_line(&c, &line);
        if (r == 0) break;
        if (r < 0) continue;
        bool go = true;
        if (line[0] == '/') go = command(&c, line, o.system);
        else if (line[0]) user_turn(&c, line);
        free(line);
        if (!go) break;
    }
    if (c.interactive) sigaction(SIGINT, &old, NULL);
    editor_close(&c);
    unload(&c);
    return 0;
}
