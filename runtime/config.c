/*
 * config.c — parse a Hugging Face config.json into model_config. Every error names the file and
 * the key at fault.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/errors.h"
#include "runtime/fileio.h"
#include "runtime/model.h"

static const char *json_type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* Reads a positive integer key; when absent uses `def` unless def < 0 (then it is required). */
static moge_status get_int(const cJSON *root, const char *path, const char *key, int def, int *out, char *err, size_t n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        if (def < 0) return set_err(err, n, MOGE_ERR_FORMAT, "%s: missing key \"%s\"", path, key);
        *out = def;
        return MOGE_OK;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 1 || j->valuedouble > 1e9)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be a positive integer (found %s)", path, key, json_type_name(j));
    *out = (int)j->valuedouble;
    return MOGE_OK;
}

static moge_status get_float(const cJSON *root, const char *path, const char *key, float def, float *out, char *err, size_t n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) { *out = def; return MOGE_OK; }
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be a positive number (found %s)", path, key, json_type_name(j));
    *out = (float)j->valuedouble;
    return MOGE_OK;
}

static moge_status get_bool(const cJSON *root, const char *path, const char *key, bool def, bool *out, char *err, size_t n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) { *out = def; return MOGE_OK; }
    if (!cJSON_IsBool(j)) return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be true or false (found %s)", path, key, json_type_name(j));
    *out = cJSON_IsTrue(j);
    return MOGE_OK;
}

/* A token id key that may be absent, an integer or a list of integers (the first is used). */
static moge_status get_token_id(const cJSON *root, const char *path, const char *key, int *out, char *err, size_t n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = -1;
    if (cJSON_IsArray(j)) j = cJSON_GetArrayItem(j, 0);
    if (!j || cJSON_IsNull(j)) return MOGE_OK;
    if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble != floor(j->valuedouble))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be a token id (found %s)", path, key, json_type_name(j));
    *out = (int)j->valuedouble;
    return MOGE_OK;
}

static moge_status parse(model_config *c, const cJSON *root, const char *path, char *err, size_t n) {
    static const struct { const char *name; model_arch arch; bool qkv_bias; } archs[] = {
        {"LlamaForCausalLM", ARCH_LLAMA, false},
        {"MistralForCausalLM", ARCH_MISTRAL, false},
        {"Qwen2ForCausalLM", ARCH_QWEN2, true},
    };
    if (!cJSON_IsObject(root)) return set_err(err, n, MOGE_ERR_FORMAT, "%s: expected a JSON object", path);
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_GetArrayItem(ja, 0);
    if (!cJSON_IsArray(ja) || !cJSON_IsString(a0))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"architectures\" must be a list holding the architecture's name", path);
    size_t i;
    for (i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(a0->valuestring, archs[i].name) == 0) break;
    if (i == sizeof archs / sizeof archs[0])
        return set_err(err, n, MOGE_ERR_UNSUPPORTED,
                       "%s: architecture \"%s\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                       path, a0->valuestring);
    snprintf(c->architecture, sizeof c->architecture, "%s", archs[i].name);
    c->arch = archs[i].arch;

    moge_status st;
#define TRY(x) do { if ((st = (x)) != MOGE_OK) return st; } while (0)
    TRY(get_int(root, path, "vocab_size", -1, &c->n_vocab, err, n));
    TRY(get_int(root, path, "hidden_size", -1, &c->n_embd, err, n));
    TRY(get_int(root, path, "num_hidden_layers", -1, &c->n_layer, err, n));
    TRY(get_int(root, path, "num_attention_heads", -1, &c->n_head, err, n));
    TRY(get_int(root, path, "intermediate_size", -1, &c->n_ff, err, n));
    TRY(get_int(root, path, "num_key_value_heads", c->n_head, &c->n_head_kv, err, n));
    TRY(get_int(root, path, "head_dim", c->n_embd / c->n_head, &c->head_dim, err, n));
    TRY(get_int(root, path, "max_position_embeddings", 2048, &c->max_position, err, n));
    TRY(get_float(root, path, "rms_norm_eps", 1e-6f, &c->norm_eps, err, n));
    TRY(get_float(root, path, "rope_theta", 10000.0f, &c->rope_theta, err, n));
    TRY(get_bool(root, path, "tie_word_embeddings", false, &c->tie_embeddings, err, n));
    bool attention_bias = false, mlp_bias = false;
    TRY(get_bool(root, path, "attention_bias", false, &attention_bias, err, n));
    TRY(get_bool(root, path, "mlp_bias", false, &mlp_bias, err, n));
    TRY(get_token_id(root, path, "bos_token_id", &c->bos_id, err, n));
    TRY(get_token_id(root, path, "eos_token_id", &c->eos_id, err, n));
#undef TRY
    c->qkv_bias = archs[i].qkv_bias || attention_bias;
    c->o_bias = c->arch == ARCH_LLAMA && attention_bias;
    if (mlp_bias) return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: \"mlp_bias\": true is not supported", path);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: \"hidden_act\" must be \"silu\"", path);

    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : "(none)";
        if (strcmp(type, "default") != 0)
            return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (only no rope_scaling)", path, type);
    }
    const cJSON *usw = cJSON_GetObjectItemCaseSensitive(root, "use_sliding_window");
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (cJSON_IsNumber(sw) && !cJSON_IsFalse(usw) && sw->valuedouble < c->max_position)
        c->max_position = (int)sw->valuedouble; /* sliding-window attention is not implemented: never exceed the window */

    if (c->n_head % c->n_head_kv != 0)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", path, c->n_head, c->n_head_kv);
    if (c->head_dim % 2 != 0)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: head_dim (%d) must be even for RoPE", path, c->head_dim);
    if (c->bos_id >= c->n_vocab || c->eos_id >= c->n_vocab)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: bos_token_id/eos_token_id out of range of vocab_size %d", path, c->n_vocab);
    return MOGE_OK;
}

moge_status config_load(model_config *c, const char *path, char *err, size_t n) {
    memset(c, 0, sizeof *c);
    char *buf = NULL;
    size_t len = 0;
    moge_status st = read_whole_file(path, &buf, &len, err, n);
    if (st != MOGE_OK) return st;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        long at = end ? (long)(end - buf) : -1;
        free(buf);
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: malformed JSON near byte %ld", path, at);
    }
    st = parse(c, root, path, err, n);
    cJSON_Delete(root);
    free(buf);
    return st;
}
