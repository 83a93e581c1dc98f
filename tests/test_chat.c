/*
 * test_chat.c — `moge chat` end to end ($MOGE_BIN, default build/moge, run from the repository
 * root), on models/stories260K unless said otherwise:
 *  - through a real pseudo-terminal (forkpty): the banner, a streamed answer and its dim status
 *    line, /temp, /spec, /tree, /stats (τ, acceptance by depth), /tokens (the KV cache equals a
 *    fresh prefill of the conversation, down to the next token's logits), /reset, Ctrl-C at the
 *    prompt (clears the line), Ctrl-C during a long answer (back to the prompt at once), a small
 *    context filling up (reported, the next turn refused, /reset recovers), Ctrl-D (exit 0);
 *  - with lines piped on stdin: no escape codes, and at --temp 0 each answer equals `moge run`
 *    on the fresh, fully rendered conversation (so reusing the KV cache across turns changes
 *    nothing);
 *  - a ChatML template on an MoE model (the qwen3_moe fixture with a tokenizer written here):
 *    the cache stays a fresh prefill when re-tokenizing an answer differs from the generated
 *    tokens, and /stats reports the expert load;
 *  - no -m (a committed demo model), bad options and models: a message and a non-zero exit.
 * Every failed check prints what the screen (or stderr) showed. Children run in their own
 * session and are killed (process group) if they outlive a case; scratch files go to
 * build/test_chat.PID/, removed at the end.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test_util.h"

static const char *bin(void) { return getenv("MOGE_BIN") ? getenv("MOGE_BIN") : "build/moge"; }

/* The scratch directory build/test_chat.PID (concurrent runs do not collide). */
static char g_dir[64];

static const char *tmp(const char *name) {
    static char ring[8][128];
    static int k;
    char *p = ring[k++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", g_dir, name);
    return p;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------------------------------ */
/* A terminal: the child's output as bytes (raw) and as the text the screen shows (escape     */
/* sequences and carriage returns removed).                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int fd;
    char *raw, *screen;
    size_t n_raw, n_screen, cap_raw, cap_screen;
    size_t mark;   /* expect() searches the screen from here */
    int esc;       /* escape parser state: 0 text, 1 after ESC, 2 inside CSI, 3 inside OSC */
    bool eof, reaped;
    bool broken;   /* an expectation failed: later ones fail at once (the case stays short) */
    int status;
} term;

static void put(char **buf, size_t *n, size_t *cap, char ch) {
    if (*n + 2 > *cap) {
        *cap = *cap ? 2 * *cap : 4096;
        *buf = realloc(*buf, *cap);
    }
    (*buf)[(*n)++] = ch;
    (*buf)[*n] = 0;
}

static void feed(term *t, char ch) {
    put(&t->raw, &t->n_raw, &t->cap_raw, ch);
    unsigned char u = (unsigned char)ch;
    switch (t->esc) {
    case 1: t->esc = ch == '[' ? 2 : ch == ']' ? 3 : 0; return;
    case 2: if (u >= 0x40 && u <= 0x7e) t->esc = 0; return;
    case 3: if (ch == '\a') t->esc = 0; else if (ch == '\033') t->esc = 1; return;
    }
    if (ch == '\033') t->esc = 1;
    else if (ch != '\r' && ch != '\a' && ch != '\b') put(&t->screen, &t->n_screen, &t->cap_screen, ch);
}

/* Reads what the child wrote within ms milliseconds (returns at the first data). */
static void pump(term *t, int ms) {
    if (t->eof) return;
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0) return;
    char buf[4096];
    ssize_t n = read(t->fd, buf, sizeof buf);
    if (n <= 0) { t->eof = true; return; } /* EIO: the child closed the terminal */
    for (ssize_t i = 0; i < n; i++) feed(t, buf[i]);
}

static bool spawn(term *t, const char *args) {
    memset(t, 0, sizeof *t);
    t->raw = calloc(1, 1);
    t->screen = calloc(1, 1);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s %s", bin(), args);
    struct winsize ws = {.ws_row = 40, .ws_col = 200};
    t->pid = forkpty(&t->fd, NULL, NULL, &ws);
    if (t->pid < 0) return false;
    if (t->pid == 0) {
        setenv("TERM", "xterm", 1);
        setenv("LC_ALL", "C.UTF-8", 1);
        setenv("HOME", g_dir, 1); /* the history file goes there */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return true;
}

static void send_keys(term *t, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(t->fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void show_screen(const term *t) {
    size_t from = t->n_screen > 3000 ? t->n_screen - 3000 : 0;
    printf("  ---- the screen showed (%s%zu chars) ----\n%s\n  ----\n", from ? "last 3000 of " : "", t->n_screen, t->screen + from);
}

/* Waits until the screen, from the mark on, shows `needle`; moves the mark past it. Returns a
 * pointer to the match in t->screen (valid until the next read), or NULL after printing it. */
static const char *expect(term *t, const char *needle, int timeout_ms) {
    if (t->broken) timeout_ms = 0;
    double end = now_ms() + timeout_ms;
    for (;;) {
        const char *hit = strstr(t->screen + t->mark, needle);
        if (hit) {
            t->mark = (size_t)(hit - t->screen) + strlen(needle);
            return hit;
        }
        double left = end - now_ms();
        if (left <= 0 || t->eof) break;
        pump(t, left > 100 ? 100 : (int)left + 1);
    }
    printf("  expected \"%s\" on the screen within %d ms%s\n", needle, timeout_ms, t->eof ? " (the program had closed the terminal)" : "");
    if (!t->broken) show_screen(t);
    t->broken = true;
    return NULL;
}

/* Waits for the prompt and for libedit to switch the terminal to raw mode: keys sent earlier
 * would meet the terminal's line discipline (which swallows Ctrl-D). The master side of a
 * pseudo-terminal reads the slave's settings. Returns false after printing the screen. */
static bool at_prompt(term *t, int timeout_ms) {
    if (!expect(t, "> ", timeout_ms)) return false;
    double end = now_ms() + timeout_ms;
    struct termios tio;
    while (now_ms() < end) {
        if (tcgetattr(t->fd, &tio) == 0 && !(tio.c_lflag & ICANON)) return true;
        pump(t, 5);
    }
    printf("  the prompt is shown but the terminal never left canonical mode\n");
    show_screen(t);
    t->broken = true;
    return false;
}

/* Waits for the child to exit; returns its exit status, or -1 after killing it. */
static int finish(term *t, int timeout_ms) {
    if (t->broken && timeout_ms > 1000) timeout_ms = 1000;
    double end = now_ms() + timeout_ms;
    while (!t->reaped && now_ms() < end) {
        pump(t, 20);
        if (waitpid(t->pid, &t->status, WNOHANG) == t->pid) t->reaped = true;
    }
    if (!t->reaped) {
        printf("  the program did not exit within %d ms; killing it\n", timeout_ms);
        show_screen(t);
        kill(-t->pid, SIGKILL);
        kill(t->pid, SIGKILL);
        waitpid(t->pid, &t->status, 0);
        t->reaped = true;
        return -1;
    }
    return WIFEXITED(t->status) ? WEXITSTATUS(t->status) : -1;
}

static void term_close(term *t) {
    if (getenv("MOGE_TEST_VERBOSE")) show_screen(t);
    if (t->pid > 0 && !t->reaped) finish(t, 1);
    if (t->fd > 0) close(t->fd);
    free(t->raw);
    free(t->screen);
    t->raw = t->screen = NULL;
}

/* The n of the next "[n tokens" status line after the mark (advancing it), or -1. */
static int status_tokens(term *t, int timeout_ms, char *line, size_t cap) {
    const char *s = expect(t, " tokens/s, ", timeout_ms);
    if (!s) return -1;
    const char *start = s;
    while (start > t->screen && start[-1] != '[' && start[-1] != '\n') start--;
    const char *eol = strchr(s, ']');
    if (!eol) eol = s + strlen(s);
    snprintf(line, cap, "%.*s", (int)(eol - start), start);
    return atoi(start);
}

#define CHECK_SCREEN(t, cond, ...)                      \
    do {                                                \
        if (!(cond)) {                                  \
            CHECKF(cond, __VA_ARGS__);                  \
            show_screen(t);                             \
        }                                               \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Terminal sessions                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Types keys at the next prompt. */
static void say(term *t, const char *keys) {
    CHECK(at_prompt(t, 5000));
    send_keys(t, keys);
}

/* /tokens: the KV cache must be a prefix of the tokens of the rendered conversation, and the next
 * token's logits on it must equal those of a fresh prefill. Returns the cached token count. */
static int check_tokens_cmd(term *t) {
    say(t, "/tokens\r");
    const char *s = expect(t, "tokens: KV cache ", 5000);
    int kv = -1, past = -2, conv = -3, agree = -4;
    if (s) sscanf(s, "tokens: KV cache %d (n_past %d), conversation %d, agreeing prefix %d", &kv, &past, &conv, &agree);
    CHECK_SCREEN(t, kv > 0 && kv == past && agree == kv && conv > kv, "kv %d n_past %d conversation %d agreeing %d", kv, past, conv, agree);
    s = expect(t, "KV cache vs fresh prefill: max difference ", 5000);
    CHECK_SCREEN(t, s && atof(s + strlen("KV cache vs fresh prefill: max difference ")) < 1e-4, "logits differ");
    return kv;
}

static void test_pty_session(void) {
    term t;
    CHECK(spawn(&t, "chat -m models/stories260K --temp 0 -n 40"));
    CHECK(expect(&t, "moge chat: model models/stories260K", 10000));
    CHECK(expect(&t, "this model has no chat template (a base model)", 2000));

    say(&t, "Once upon a time there was a cat.\r");
    CHECK(expect(&t, "Once upon a time there was a cat.\n", 2000)); /* the line as typed */
    size_t answer_at = t.mark;
    char status[256] = "";
    int n = status_tokens(&t, 10000, status, sizeof status);
    CHECK_SCREEN(&t, n > 0 && n <= 40, "status line \"%s\"", status);
    CHECK_SCREEN(&t, strstr(status, "τ 1.00") != NULL, "no τ in the status line \"%s\"", status);
    size_t letters = 0;
    for (size_t i = answer_at; i < t.mark; i++) letters += (t.screen[i] >= 'a' && t.screen[i] <= 'z');
    CHECK_SCREEN(&t, letters > 40, "no answer text before the status line (%zu letters)", letters);
    CHECK_SCREEN(&t, strstr(t.raw, "\033[2m[") != NULL, "the status line is not dim (no ESC[2m)");

    say(&t, "/temp 0.5\r");
    CHECK(expect(&t, "temperature 0.5", 2000));
    say(&t, "/spec tree\r");
    CHECK(expect(&t, "speculation: tree, drafter: prompt lookup", 2000));
    say(&t, "/tree 8\r");
    CHECK(expect(&t, "tree: up to 8 draft nodes per step", 2000));
    say(&t, "/temp\r"); /* without an argument: the current value */
    CHECK(expect(&t, "temperature 0.5; /temp T changes it", 2000));
    say(&t, "/tree\r");
    CHECK(expect(&t, "tree: up to 8 draft nodes per step; /tree N changes it", 2000));
    say(&t, "/spec\r");
    CHECK(expect(&t, "speculation: tree, drafter: prompt lookup; /spec", 2000));
    say(&t, "/temp 0\r");
    CHECK(expect(&t, "temperature 0 (greedy)", 2000));

    say(&t, "The cat ran to the park.\r");
    CHECK(status_tokens(&t, 10000, status, sizeof status) > 0);
    say(&t, "/stats\r");
    CHECK(expect(&t, "last answer: ", 2000));
    CHECK(expect(&t, "speculation tree: ", 2000));
    CHECK(expect(&t, "τ ", 2000));
    CHECK(expect(&t, "acceptance by depth: 1: ", 2000));
    CHECK(expect(&t, "time: draft ", 2000));
    CHECK(expect(&t, "experts: dense model", 2000));
    CHECK(check_tokens_cmd(&t) > 60);

    /* Ctrl-C at the prompt clears the line and keeps the session. */
    say(&t, "abc");
    CHECK(expect(&t, "abc", 2000));
    send_keys(&t, "\003");
    say(&t, "/temp 0.25\r");
    CHECK(expect(&t, "temperature 0.25", 2000));
    CHECK_SCREEN(&t, !strstr(t.screen, "unknown command"), "the cleared line was kept");

    say(&t, "/reset\r");
    CHECK(expect(&t, "conversation cleared", 2000));
    say(&t, "/tokens\r");
    CHECK(expect(&t, "tokens: KV cache 0 (n_past 0)", 2000));
    say(&t, "/frobnicate\r");
    CHECK(expect(&t, "unknown command /frobnicate", 2000));

    say(&t, "\004");
    CHECKF(finish(&t, 5000) == 0, "Ctrl-D: exit status %d", WIFEXITED(t.status) ? WEXITSTATUS(t.status) : -1);
    term_close(&t);
}

static void test_pty_ctrl_c_stops_answer(void) {
    term t;
    /* 512 tokens of context at 20 ms per token: an answer left alone runs for 10 s. */
    CHECK(spawn(&t, "chat -m models/stories260K --temp 0 -n 100000 --token-delay 20"));
    say(&t, "Once upon a time\r");
    CHECK(expect(&t, "Once upon a time\n", 2000));
    size_t at = t.mark;
    double t0 = now_ms();
    while (t.n_screen < at + 40 && now_ms() - t0 < 5000) pump(&t, 50); /* the answer streams */
    CHECK_SCREEN(&t, t.n_screen >= at + 40, "the answer did not stream");
    double t1 = now_ms();
    send_keys(&t, "\003");
    char status[256] = "";
    int n = status_tokens(&t, 3000, status, sizeof status);
    double waited = now_ms() - t1;
    CHECK_SCREEN(&t, n > 0 && n < 200 && strstr(status, "stopped"), "status line \"%s\" after Ctrl-C", status);
    CHECK_SCREEN(&t, !strstr(t.screen + at, "^C"), "the terminal echoed ^C into the answer");
    CHECKF(waited < 2000, "Ctrl-C took %.0f ms to stop the answer", waited);
    CHECK(check_tokens_cmd(&t) > 0); /* the cache is consistent after an interrupted answer */
    say(&t, "\004");
    CHECK(finish(&t, 5000) == 0);
    term_close(&t);
}

static void test_pty_context_full(void) {
    term t;
    CHECK(spawn(&t, "chat -m models/stories260K --temp 0 -c 64 -n 1000"));
    CHECK(expect(&t, "context 64 tokens", 10000));
    say(&t, "Once upon a time\r");
    CHECK(expect(&t, "context full (64 tokens): your next line drops the oldest turns", 10000));
    say(&t, "Then a big dog came to the park and barked.\r"); /* the first turn leaves, this one is answered */
    CHECK(expect(&t, "the oldest 1 turn left the conversation to make room", 5000));
    char status[256];
    CHECK(status_tokens(&t, 10000, status, sizeof status) > 0);
    say(&t, "/reset\r");
    CHECK(expect(&t, "conversation cleared", 2000));
    say(&t, "One two three four five six seven eight nine ten one two three four five six seven eight nine ten one two three "
            "four five six seven eight nine ten one two three four five six seven eight nine ten one two three four five six.\r");
    CHECK(expect(&t, "this line does not fit the context", 5000));
    say(&t, "Then a big dog came.\r");
    CHECK(status_tokens(&t, 10000, status, sizeof status) > 0);
    say(&t, "/quit\r");
    CHECK(finish(&t, 5000) == 0);
    term_close(&t);
}

/* ------------------------------------------------------------------------------------------ */
/* Piped stdin                                                                                */
/* ------------------------------------------------------------------------------------------ */



static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\n') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

/* `moge run` greedy on a prompt file; returns its stdout with the trailing newline removed. */
static char *run_greedy(const char *prompt, int n) {
    char cmd[1024];
    spit(tmp("prompt"), prompt);
    snprintf(cmd, sizeof cmd, "%s run -m models/stories260K --temp 0 -n %d -p \"$(cat %s)\" >%s 2>/dev/null", bin(), n, tmp("prompt"),
             tmp("run"));
    CHECK(shell(cmd) == 0);
    char *out = slurp_text(tmp("run"));
    size_t len = strlen(out);
    if (len > 0 && out[len - 1] == '\n') out[len - 1] = 0;
    return out;
}

static void test_piped_turns_equal_fresh_prefill(void) {
    const char *l1 = "Once upon a time there was a cat.", *l2 = "The dog ran to the park.";
    char input[512], cmd[1024];
    snprintf(input, sizeof input, "%s\n/temp 0\n%s\n/stats\n/tokens\n", l1, l2);
    spit(tmp("in"), input);
    snprintf(cmd, sizeof cmd, "%s chat -m models/stories260K --temp 0 -n 30 <%s >%s 2>%s", bin(), tmp("in"), tmp("out"), tmp("err"));
    int rc = shell(cmd);
    char *out = slurp_text(tmp("out")), *err = slurp_text(tmp("err"));
    CHECKF(rc == 0, "exit status %d; stderr:\n%s", rc, err);
    CHECKF(!strchr(out, '\033') && !strchr(err, '\033'), "escape codes without a terminal:\n%s\n%s", out, err);
    CHECKF(strstr(err, "this model has no chat template") && strstr(err, "[30 tokens, "), "stderr:\n%s", err);
    /* /stats after the second answer: only the new tokens were prefilled. */
    const char *p = strstr(out, "new tokens prefilled in ");
    int n_new = -1, reused = -1;
    if (p) {
        while (p > out && p[-1] != '\n') p--;
        sscanf(p, "prompt: %d new tokens prefilled in %*f s, %d reused", &n_new, &reused);
    }
    CHECKF(n_new > 0 && reused > 30 && n_new < reused, "second turn: %d new tokens, %d reused:\n%s", n_new, reused, out);

    /* stdout: answer 1, "temperature 0 (greedy)", answer 2, then /stats. */
    char *sep = strstr(out, "temperature 0 (greedy)\n"), *stats = strstr(out, "last answer: ");
    CHECKF(sep && stats && stats > sep, "stdout:\n%s", out);
    if (!sep || !stats || stats < sep) { free(out); free(err); return; }
    *sep = 0;
    stats[0] = 0;
    char *a1 = trim(out), *a2 = trim(sep + strlen("temperature 0 (greedy)\n"));

    /* A base model's turn is rendered "user: LINE\nassistant: LINE" and the answer continues it. */
    char prompt[4096];
    snprintf(prompt, sizeof prompt, "user: %s\nassistant: %s", l1, l1);
    char *r1 = run_greedy(prompt, 30), *r1copy = strdup(r1), *r1t = trim(r1copy);
    CHECKF(!strcmp(a1, r1t), "answer 1 differs from moge run on the rendered turn:\n  chat: %s\n  run:  %s", a1, r1t);
    /* The second answer, on the KV cache kept from the first turn, equals a fresh prefill. */
    size_t n1 = strlen(r1);
    while (n1 > 0 && (r1[n1 - 1] == ' ' || r1[n1 - 1] == '\n')) r1[--n1] = 0;
    snprintf(prompt, sizeof prompt, "user: %s\nassistant: %s%s\nuser: %s\nassistant: %s", l1, l1, r1, l2, l2);
    char *r2 = run_greedy(prompt, 30), *r2t = trim(r2);
    CHECKF(!strcmp(a2, r2t), "answer 2 differs from moge run on the whole rendered conversation:\n  chat: %s\n  run:  %s", a2, r2t);
    char *tok = strstr(stats + 1, "tokens: KV cache ");
    int kv = -1, past = -2, conv = -3, agree = -4;
    if (tok) sscanf(tok, "tokens: KV cache %d (n_past %d), conversation %d, agreeing prefix %d", &kv, &past, &conv, &agree);
    CHECKF(kv > 0 && kv == past && agree == kv, "/tokens: %s", tok ? tok : "(missing)");
    free(r1); free(r1copy); free(r2); free(out); free(err);
}

/* A model with a ChatML template and MoE layers: the MoE fixture (79 ids) with a character-level
 * tokenizer written here (lowercase letters, punctuation, <|im_start|>/<|im_end|>, filler pieces
 * up to 79 ids) and a chat_template that moge recognises as ChatML. */
static bool make_chatml_moe_model(const char *dir) {
    char path[512], weights[4096];
    if (!realpath("tests/fixtures/moe/qwen3_moe/model.safetensors", weights)) return false;
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    if (symlink(weights, path) != 0) return false;
    char *config = slurp_text("tests/fixtures/moe/qwen3_moe/config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    spit(path, config);
    free(config);
    static const char *specials[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"};
    char json[16384];
    size_t n = 0;
    n += (size_t)snprintf(json + n, sizeof json - n, "{\"version\": \"1.0\", \"added_tokens\": [");
    for (int i = 0; i < 5; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, "
                              "\"rstrip\": false, \"normalized\": false, \"special\": true}", i ? ", " : "", i, specials[i]);
    n += (size_t)snprintf(json + n, sizeof json - n,
                          "], \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\u2581\"}, "
                          "\"pre_tokenizer\": null, \"post_processor\": null, "
                          "\"decoder\": {\"type\": \"Replace\", \"pattern\": {\"String\": \"\u2581\"}, \"content\": \" \"}, "
                          "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": false, "
                          "\"merges\": [], \"vocab\": {");
    const char *chars = "abcdefghijklmnopqrstuvwxyz.,:?";
    int id = 0;
    for (; id < 5; id++) n += (size_t)snprintf(json + n, sizeof json - n, "\"%s\": %d, ", specials[id], id);
    n += (size_t)snprintf(json + n, sizeof json - n, "\"\\n\": %d, \"\u2581\": %d", id, id + 1);
    id += 2;
    for (const char *c = chars; *c; c++) n += (size_t)snprintf(json + n, sizeof json - n, ", \"%c\": %d", *c, id++);
    for (int k = 0; id < 79; k++) n += (size_t)snprintf(json + n, sizeof json - n, ", \"#%d\": %d", k, id++);
    snprintf(json + n, sizeof json - n, "}}}\n");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    spit(path, json);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    spit(path, "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}\\n"
               "{{ m.content }}<|im_end|>\\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}\"}\n");
    return true;
}

/* ChatML turns keep the cache equal to a fresh prefill too; /stats summarises the expert load. */
static void test_chatml_moe_turns(void) {
    CHECK(make_chatml_moe_model(tmp("moe")));
    char cmd[1024];
    spit(tmp("in"), "hello there.\nhow are you?\n/tokens\n/stats\n");
    snprintf(cmd, sizeof cmd, "%s chat -m %s --system \"be brief.\" --temp 0 -n 12 <%s >%s 2>%s", bin(), tmp("moe"), tmp("in"),
             tmp("out"), tmp("err"));
    int rc = shell(cmd);
    char *out = slurp_text(tmp("out")), *err = slurp_text(tmp("err"));
    CHECKF(rc == 0, "exit status %d; stderr:\n%s", rc, err);
    CHECKF(strstr(err, "chat template: chatml") && !strstr(err, "no chat template"), "stderr:\n%s", err);
    const char *tok = strstr(out, "tokens: KV cache ");
    int kv = -1, past = -2, conv = -3, agree = -4;
    if (tok) sscanf(tok, "tokens: KV cache %d (n_past %d), conversation %d, agreeing prefix %d", &kv, &past, &conv, &agree);
    CHECKF(kv > 40 && kv == past && agree == kv && conv > kv, "/tokens:\n%s", out);
    const char *d = strstr(out, "KV cache vs fresh prefill: max difference ");
    CHECKF(d && atof(d + strlen("KV cache vs fresh prefill: max difference ")) < 1e-4, "stdout:\n%s", out);
    CHECKF(strstr(out, "experts: 2 MoE layers on ") && strstr(out, "Imbalance Score mean ") && strstr(out, "of 8 experts per pass"),
           "/stats:\n%s", out);
    free(out);
    free(err);
}

static void test_default_model_and_errors(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "printf 'Once upon a time\\n' | %s chat -n 5 >%s 2>%s", bin(), tmp("out"), tmp("err"));
    int rc = shell(cmd);
    char *err = slurp_text(tmp("err"));
    CHECKF(rc == 0, "exit status %d; stderr:\n%s", rc, err);
    CHECKF(strstr(err, "moge chat: model ") && strstr(err, "models/") && strstr(err, " tokens/s"), "no -m: %s", err);
    free(err);
    static const struct { const char *args; int rc; const char *needle; } cases[] = {
        {"chat -m no/such/model", 1, "no/such/model"},
        {"chat -m models/stories260K --temp abc", 2, "--temp"},
        {"chat -m models/stories260K --spec forest", 2, "--spec"},
        {"chat -m models/stories260K --frobnicate", 2, "--frobnicate"},
        {"chat -m models/stories260K --lookup --draft-layers 2", 2, "one drafter"},
        {"chat -m models/stories260K --threads 0", 2, "--threads"},
        {"chat -m models/stories260K --temp -1", 2, "--temp"},
        {"chat -m models/stories260K --draft-max", 2, "--draft-max needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s %s </dev/null >%s 2>%s", bin(), cases[i].args, tmp("out"), tmp("err"));
        rc = shell(cmd);
        err = slurp_text(tmp("err"));
        CHECKF(rc == cases[i].rc && strstr(err, cases[i].needle), "moge %s: exit %d (expected %d): %s", cases[i].args, rc, cases[i].rc, err);
        free(err);
    }
}

static int run_all(void) {
    RUN_TESTS(T(test_pty_session), T(test_pty_ctrl_c_stops_answer), T(test_pty_context_full), T(test_piped_turns_equal_fresh_prefill),
              T(test_chatml_moe_turns), T(test_default_model_and_errors));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    mkdir("build", 0755);
    snprintf(g_dir, sizeof g_dir, "build/test_chat.%d", (int)getpid());
    mkdir(g_dir, 0755);
    int rc = run_all();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) rc = 1;
    return rc;
}
