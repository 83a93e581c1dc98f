/*
 * chat_template.c — chat templates without a Jinja engine: tokenizer_config.json's
 * chat_template is classified by the markers it uses into one of a few families (ChatML/Qwen,
 * Llama-3, Mistral/Llama-2 [INST], openPangu [unused9]...[unused10]), and each family renders a
 * conversation the way its reference template does for plain {role, content} messages (no tools,
 * no images). A template that fits none of them is reported as MOGE_CHAT_UNKNOWN, never guessed;
 * the caller may render it with the explicit MOGE_CHAT_PLAIN fallback.
 */
#include "tokenizer/tokenizer.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

moge_chat_family moge_chat_detect(const char *t) {
    if (!t || !t[0]) return MOGE_CHAT_NONE;
    if (strstr(t, "[unused9]") && strstr(t, "[unused10]")) return MOGE_CHAT_PANGU;
    if (strstr(t, "<|start_header_id|>") && strstr(t, "<|end_header_id|>")) return MOGE_CHAT_LLAMA3;
    if (strstr(t, "<|im_start|>") && strstr(t, "<|im_end|>")) return MOGE_CHAT_CHATML;
    if (strstr(t, "[INST]") && strstr(t, "[/INST]")) return MOGE_CHAT_MISTRAL;
    return MOGE_CHAT_UNKNOWN;
}

const char *moge_chat_family_name(moge_chat_family f) {
    switch (f) {
    case MOGE_CHAT_NONE: return "none";
    case MOGE_CHAT_UNKNOWN: return "unknown";
    case MOGE_CHAT_CHATML: return "chatml";
    case MOGE_CHAT_LLAMA3: return "llama3";
    case MOGE_CHAT_MISTRAL: return "mistral";
    case MOGE_CHAT_PANGU: return "pangu";
    case MOGE_CHAT_PLAIN: return "plain";
    }
    return "unknown";
}

static int puts_(tk_buf *b, const char *s) { return s ? tk_buf_put(b, s, strlen(s)) : 0; }

/* Llama-3's template writes message['content'] | trim. */
static int put_trimmed(tk_buf *b, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    return tk_buf_put(b, s + a, n - a);
}

static const char *pangu_label(const char *role) {
    if (!strcmp(role, "system")) return "系统";
    if (!strcmp(role, "user")) return "用户";
    if (!strcmp(role, "assistant")) return "助手";
    if (!strcmp(role, "tool")) return "工具";
    if (!strcmp(role, "function")) return "方法";
    return NULL;
}

static moge_status render_mistral(tk_buf *b, const moge_chat_message *m, size_t n, const char *bos, const char *eos,
                                  char *err, size_t err_size) {
    int rc = puts_(b, bos);
    const char *system = NULL;
    size_t turn = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!strcmp(m[i].role, "system")) {
            if (i != 0)
                return set_err(err, err_size, MOGE_ERR_ARG, "chat: messages[%zu]: a system message must come first", i);
            system = m[i].content;
            continue;
        }
        bool user = !strcmp(m[i].role, "user");
        if (!user && strcmp(m[i].role, "assistant") != 0)
            return set_err(err, err_size, MOGE_ERR_ARG, "chat: messages[%zu]: role \"%s\" is not supported by [INST] templates",
                           i, m[i].role);
        if (user != (turn % 2 == 0))
            return set_err(err, err_size, MOGE_ERR_ARG,
                           "chat: messages[%zu]: conversation roles must alternate user/assistant/user/...", i);
        turn++;
        if (user) {
            rc = puts_(b, "[INST] ");
            if (system && turn == 1) rc = rc || puts_(b, system) || puts_(b, "\n\n");
            rc = rc || puts_(b, m[i].content) || puts_(b, " [/INST]");
        } else {
            rc = puts_(b, m[i].content) || puts_(b, eos);
        }
    }
    return rc ? set_err(err, err_size, MOGE_ERR_NOMEM, "chat: out of memory") : MOGE_OK;
}

moge_status moge_chat_render(moge_chat_family family, const moge_chat_message *msgs, size_t n, bool add_gen,
                             const char *bos, const char *eos, char **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!out) return set_err(err, err_size, MOGE_ERR_ARG, "chat: out is NULL");
    *out = NULL;
    if (n && !msgs) return set_err(err, err_size, MOGE_ERR_ARG, "chat: messages is NULL");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return set_err(err, err_size, MOGE_ERR_ARG, "chat: messages[%zu]: role and content are required", i);
    if (family == MOGE_CHAT_NONE)
        return set_err(err, err_size, MOGE_ERR_UNSUPPORTED, "chat: the tokenizer has no chat_template");
    if (family == MOGE_CHAT_UNKNOWN)
        return set_err(err, err_size, MOGE_ERR_UNSUPPORTED,
                       "chat: the chat_template is not one moge recognises (ChatML, Llama-3, [INST], Pangu)");
    tk_buf b = {0};
    int rc = tk_buf_put(&b, "", 0);
    moge_status st = MOGE_OK;
    switch (family) {
    case MOGE_CHAT_CHATML:
        for (size_t i = 0; i < n && !rc; i++)
            rc = puts_(&b, "<|im_start|>") || puts_(&b, msgs[i].role) || puts_(&b, "\n") || puts_(&b, msgs[i].content) ||
                 puts_(&b, "<|im_end|>\n");
        if (add_gen && !rc) rc = puts_(&b, "<|im_start|>assistant\n");
        break;
    case MOGE_CHAT_LLAMA3:
        rc = rc || puts_(&b, bos);
        for (size_t i = 0; i < n && !rc; i++)
            rc = puts_(&b, "<|start_header_id|>") || puts_(&b, msgs[i].role) || puts_(&b, "<|end_header_id|>\n\n") ||
                 put_trimmed(&b, msgs[i].content) || puts_(&b, "<|eot_id|>");
        if (add_gen && !rc) rc = puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case MOGE_CHAT_MISTRAL:
        st = render_mistral(&b, msgs, n, bos, eos, err, err_size);
        break;
    case MOGE_CHAT_PANGU:
        rc = rc || puts_(&b, bos);
        if (n && strcmp(msgs[0].role, "system") != 0) rc = rc || puts_(&b, "[unused9]系统：[unused10]");
        for (size_t i = 0; i < n && !rc; i++) {
            const char *label = pangu_label(msgs[i].role);
            if (!label) {
                st = set_err(err, err_size, MOGE_ERR_ARG, "chat: messages[%zu]: role \"%s\" is not supported by Pangu",
                             i, msgs[i].role);
                break;
            }
            rc = puts_(&b, "[unused9]") || puts_(&b, label) || puts_(&b, "：") || puts_(&b, msgs[i].content) ||
                 puts_(&b, "[unused10]");
        }
        if (add_gen && !rc && !st) rc = puts_(&b, "[unused9]助手：");
        break;
    case MOGE_CHAT_PLAIN:
        for (size_t i = 0; i < n && !rc; i++)
            rc = puts_(&b, msgs[i].role) || puts_(&b, ": ") || puts_(&b, msgs[i].content) || puts_(&b, "\n");
        if (add_gen && !rc) rc = puts_(&b, "assistant:");
        break;
    default:
        st = set_err(err, err_size, MOGE_ERR_ARG, "chat: unknown family %d", (int)family);
    }
    if (!st && rc) st = set_err(err, err_size, MOGE_ERR_NOMEM, "chat: out of memory");
    if (st) {
        tk_buf_free(&b);
        return st;
    }
    *out = b.p;
    return MOGE_OK;
}
