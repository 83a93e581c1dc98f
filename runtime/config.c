/*
 * config.c — parse a Hugging Face config.json into model_config. Every error names the file and
 * the key at fault.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/fileio.h"
#include "runtime/json_num.h"
#include "runtime/config.h"
#include "runtime/model.h"
#include "runtime/quant.h"

static const char *json_type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* What a key holds, for a message: its type, or for a number its value. */
static const char *json_found(const cJSON *j, char *buf, size_t cap) {
    if (!cJSON_IsNumber(j)) return json_type_name(j);
    snprintf(buf, cap, "%.10g", j->valuedouble);
    return buf;
}

/* Reads a positive integer key; when absent uses `def` unless def < 0 (then it is required). */
static moge_status get_int(const cJSON *root, const char *path, const char *key, int def, int *out, char *err, size_t n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        if (def < 0) return set_err(err, n, MOGE_ERR_FORMAT, "%s: missing key \"%s\"", path, key);
        *out = def;
        return MOGE_OK;
    }
    int32_t v;
    char buf[32];
    if (!json_int32(j, 1, 1000000000, &v))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be a positive integer up to 10^9 (found %s)", path, key,
                       json_found(j, buf, sizeof buf));
    *out = v;
    return MOGE_OK;
}

/* Reads a number in (0, max]; when absent uses `def`. */
static moge_status get_float(const cJSON *root, const char *path, const char *key, float def, double max, float *out, char *err,
                             size_t n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) { *out = def; return MOGE_OK; }
    char buf[32];
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0) || !(j->valuedouble <= max))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be a positive number up to %g (found %s)", path, key, max,
                       json_found(j, buf, sizeof buf));
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
    int32_t v;
    if (!json_int32(j, 0, INT32_MAX - 1, &v))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"%s\" must be a token id, an integer from 0 (found %s)", path, key,
                       cJSON_IsNumber(j) ? "a number out of range" : json_type_name(j));
    *out = v;
    return MOGE_OK;
}

static const struct {
    const char *name;
    model_arch arch;
    bool qkv_bias, o_bias, qk_norm, moe;
} ARCHS[] = {
    {"LlamaForCausalLM", ARCH_LLAMA, false, false, false, false},
    {"MistralForCausalLM", ARCH_MISTRAL, false, false, false, false},
    {"Qwen2ForCausalLM", ARCH_QWEN2, true, false, false, false},
    {"Qwen3ForCausalLM", ARCH_QWEN3, false, false, true, false},
    {"PanguProMoEForCausalLM", ARCH_PANGU_MOE, true, true, false, true},
    {"MixtralForCausalLM", ARCH_MIXTRAL, false, false, false, true},
    {"Qwen2MoeForCausalLM", ARCH_QWEN2_MOE, true, false, false, true},
    {"Qwen3MoeForCausalLM", ARCH_QWEN3_MOE, false, false, true, true},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const char *routing_name(moge_routing r) {
    const char *s = moge_routing_name(r);
    return s ? s : "default";
}


/* Checks the group structure of the routing rule. */
static moge_status check_routing(const model_config *c, const char *what, char *err, size_t n) {
    if (c->n_group < 1 || c->n_group > 1024 || c->n_expert % c->n_group != 0)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: %d experts cannot form %d equal groups", what, c->n_expert, c->n_group);
    if (c->routing == MOGE_ROUTING_MOGE && c->n_expert_used % c->n_group != 0)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: MoGE routing needs num_experts_per_tok (%d) to be a multiple of the %d groups",
                       what, c->n_expert_used, c->n_group);
    if (c->routing == MOGE_ROUTING_GROUP_LIMITED &&
        (c->topk_group < 1 || c->topk_group > c->n_group || c->topk_group * (c->n_expert / c->n_group) < c->n_expert_used))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: group-limited routing keeps %d of %d groups, too few for %d experts per token",
                       what, c->topk_group, c->n_group, c->n_expert_used);
    return MOGE_OK;
}

/* MoE keys of the MoE architectures (and moge's own "moge_routing" extension). */
static moge_status parse_moe(model_config *c, const cJSON *root, const char *path, char *err, size_t n) {
    moge_status st;
    if (c->arch == ARCH_MIXTRAL) {
        TRY(get_int(root, path, "num_local_experts", -1, &c->n_expert, err, n));
        c->n_ff_expert = c->n_ff;
        c->norm_topk_prob = true;
    } else {
        TRY(get_int(root, path, "num_experts", -1, &c->n_expert, err, n));
        TRY(get_int(root, path, "moe_intermediate_size", -1, &c->n_ff_expert, err, n));
    }
    TRY(get_int(root, path, "num_experts_per_tok", -1, &c->n_expert_used, err, n));
    if (c->n_expert_used > c->n_expert)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: num_experts_per_tok (%d) exceeds the number of experts (%d)", path, c->n_expert_used, c->n_expert);
    if (c->arch == ARCH_PANGU_MOE || c->arch == ARCH_QWEN2_MOE)
        TRY(get_int(root, path, "shared_expert_intermediate_size", c->arch == ARCH_PANGU_MOE ? -1 : 0, &c->n_ff_shared, err, n));
    c->shared_gate = c->arch == ARCH_QWEN2_MOE && c->n_ff_shared > 0;
    if (c->arch == ARCH_QWEN2_MOE || c->arch == ARCH_QWEN3_MOE) {
        int step = 1;
        TRY(get_int(root, path, "decoder_sparse_step", 1, &step, err, n));
        const cJSON *only = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
        if (step != 1 || (cJSON_IsArray(only) && cJSON_GetArraySize(only) > 0))
            return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: decoder_sparse_step/mlp_only_layers: dense layers between MoE layers are not supported", path);
    }
    /* Default rule of the architecture, then the optional extension keys. */
    c->routing = c->arch == ARCH_PANGU_MOE ? MOGE_ROUTING_MOGE : MOGE_ROUTING_TOPK;
    /* Pangu: one group per chosen expert. Others: each expert is its own group (groups are also
     * the unit placed on devices). */
    c->n_group = c->arch == ARCH_PANGU_MOE ? c->n_expert_used : c->n_expert;
    bool norm = c->norm_topk_prob;
    TRY(get_bool(root, path, "norm_topk_prob", norm, &c->norm_topk_prob, err, n));
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "moge_routing");
    if (r && !cJSON_IsNull(r)) {
        if (!cJSON_IsString(r))
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"moge_routing\" must be \"moge\", \"topk\" or \"group_limited\" (found %s)", path, json_type_name(r));
        if (!strcmp(r->valuestring, "moge")) c->routing = MOGE_ROUTING_MOGE;
        else if (!strcmp(r->valuestring, "topk")) c->routing = MOGE_ROUTING_TOPK;
        else if (!strcmp(r->valuestring, "group_limited")) c->routing = MOGE_ROUTING_GROUP_LIMITED;
        else return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: \"moge_routing\": unknown rule \"%s\" (moge, topk, group_limited)", path, r->valuestring);
    }
    TRY(get_int(root, path, "n_group", c->n_group, &c->n_group, err, n));
    TRY(get_int(root, path, "topk_group", c->n_group > 1 ? c->n_group / 2 : 1, &c->topk_group, err, n));
    return check_routing(c, path, err, n);
}

/* "quantization_config": {"quant_method": "moge", "format": "q8" | "q4", "block_size": 32} and,
 * for blocks in panel layout, "layout": "panel16" marks a directory written by moge quantize
 * (format in runtime/quant_file.c); other methods (GPTQ, AWQ, bitsandbytes, FP8, ...) store
 * weights moge cannot read. */
static moge_status parse_quantization(model_config *c, const cJSON *root, const char *path, char *err, size_t n) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!q || cJSON_IsNull(q)) return MOGE_OK;
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (!cJSON_IsObject(q) || !cJSON_IsString(method))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"quantization_config\" must be an object with a string \"quant_method\"", path);
    if (strcmp(method->valuestring, "moge") != 0)
        return set_err(err, n, MOGE_ERR_UNSUPPORTED,
                       "%s: quantization_config.quant_method \"%s\" is not supported (only moge's own \"moge\"; "
                       "load the unquantized checkpoint, optionally with a quantization at load)", path, method->valuestring);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(q, "format"), *block = cJSON_GetObjectItemCaseSensitive(q, "block_size");
    if (!cJSON_IsString(format) || !quant_format_parse(format->valuestring, &c->quant_file))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: quantization_config.format must be \"q8\", \"q4\", \"w8a8\" or \"w4a8\"", path);
    if (!cJSON_IsNumber(block) || block->valuedouble != QBLOCK)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: quantization_config.block_size must be %d", path, QBLOCK);
    const cJSON *layout = cJSON_GetObjectItemCaseSensitive(q, "layout");
    if (layout && !(cJSON_IsString(layout) && strcmp(layout->valuestring, "panel16") == 0))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: quantization_config.layout must be \"panel16\" (or absent: row-major blocks)", path);
    c->quant_panel = layout ? TENSOR_PANEL : 0;
    return MOGE_OK;
}

static moge_status parse(model_config *c, const cJSON *root, const char *path, char *err, size_t n) {
    if (!cJSON_IsObject(root)) return set_err(err, n, MOGE_ERR_FORMAT, "%s: expected a JSON object", path);
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_GetArrayItem(ja, 0);
    if (!cJSON_IsArray(ja) || !cJSON_IsString(a0))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"architectures\" must be a list holding the architecture's name", path);
    size_t i;
    for (i = 0; i < N_ARCHS; i++)
        if (strcmp(a0->valuestring, ARCHS[i].name) == 0) break;
    if (i == N_ARCHS) {
        char list[512] = "";
        for (size_t k = 0; k < N_ARCHS; k++) {
            strcat(list, k ? ", " : "");
            strcat(list, ARCHS[k].name);
        }
        return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)", path, a0->valuestring, list);
    }
    snprintf(c->architecture, sizeof c->architecture, "%s", ARCHS[i].name);
    c->arch = ARCHS[i].arch;

    moge_status st;
    TRY(get_int(root, path, "vocab_size", -1, &c->n_vocab, err, n));
    TRY(get_int(root, path, "hidden_size", -1, &c->n_embd, err, n));
    TRY(get_int(root, path, "num_hidden_layers", -1, &c->n_layer, err, n));
    TRY(get_int(root, path, "num_attention_heads", -1, &c->n_head, err, n));
    /* Pangu and Qwen-MoE have no dense MLP; Mixtral's intermediate_size is its experts' width. */
    bool needs_ff = !ARCHS[i].moe || c->arch == ARCH_MIXTRAL;
    TRY(get_int(root, path, "intermediate_size", needs_ff ? -1 : 0, &c->n_ff, err, n));
    if (!needs_ff) c->n_ff = 0;
    TRY(get_int(root, path, "num_key_value_heads", c->n_head, &c->n_head_kv, err, n));
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if ((!hd || cJSON_IsNull(hd)) && c->n_embd % c->n_head != 0) /* the default head_dim would not cover hidden_size */
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: num_attention_heads (%d) %s hidden_size (%d) and no \"head_dim\" is given",
                       path, c->n_head, c->n_head > c->n_embd ? "exceeds" : "does not divide", c->n_embd);
    TRY(get_int(root, path, "head_dim", c->n_embd / c->n_head, &c->head_dim, err, n));
    TRY(get_int(root, path, "max_position_embeddings", 2048, &c->max_position, err, n));
    /* an epsilon is a small guard against division by zero (1e-5, 1e-6): far above 1 the norms
     * scale every activation to zero (1e300 becomes Inf as a float) and the model says nothing */
    TRY(get_float(root, path, "rms_norm_eps", 1e-6f, 1.0, &c->norm_eps, err, n));
    TRY(get_float(root, path, "rope_theta", 10000.0f, 1e30, &c->rope_theta, err, n));
    TRY(get_bool(root, path, "tie_word_embeddings", false, &c->tie_embeddings, err, n));
    bool attention_bias = false, mlp_bias = false;
    TRY(get_bool(root, path, "attention_bias", false, &attention_bias, err, n));
    TRY(get_bool(root, path, "mlp_bias", false, &mlp_bias, err, n));
    TRY(get_token_id(root, path, "bos_token_id", &c->bos_id, err, n));
    TRY(get_token_id(root, path, "eos_token_id", &c->eos_id, err, n));
    c->qkv_bias = ARCHS[i].qkv_bias || attention_bias;
    c->o_bias = ARCHS[i].o_bias || (c->arch == ARCH_LLAMA && attention_bias);
    c->qk_norm = ARCHS[i].qk_norm;
    if (mlp_bias) return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: \"mlp_bias\": true is not supported", path);
    if (ARCHS[i].moe) TRY(parse_moe(c, root, path, err, n));

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
    if (sw && !cJSON_IsNull(sw) && !cJSON_IsFalse(usw)) {
        int32_t w;
        char buf[32];
        if (!json_int32(sw, 1, 1000000000, &w))
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: \"sliding_window\" must be a positive integer up to 10^9, or null (found %s)",
                           path, json_found(sw, buf, sizeof buf));
        if (w < c->max_position) c->max_position = w; /* sliding-window attention is not implemented: never exceed the window */
    }

    TRY(parse_quantization(c, root, path, err, n));

    if (c->n_head % c->n_head_kv != 0)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", path, c->n_head, c->n_head_kv);
    if (c->head_dim % 2 != 0)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: head_dim (%d) must be even for RoPE", path, c->head_dim);
    if (c->bos_id >= c->n_vocab || c->eos_id >= c->n_vocab)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: bos_token_id/eos_token_id out of range of vocab_size %d", path, c->n_vocab);
    return MOGE_OK;
}

moge_status config_set_routing(model_config *c, const moge_model_params *p, char *err, size_t n) {
    if (p->routing == MOGE_ROUTING_DEFAULT && p->n_group == 0 && p->topk_group == 0) return MOGE_OK;
    if (c->n_expert == 0)
        return set_err(err, n, MOGE_ERR_ARG, "routing override: %s is a dense model without experts", c->architecture);
    if (p->routing < MOGE_ROUTING_DEFAULT || p->routing > MOGE_ROUTING_GROUP_LIMITED || p->n_group < 0 || p->topk_group < 0)
        return set_err(err, n, MOGE_ERR_ARG, "routing override: invalid rule or group counts");
    if (p->routing != MOGE_ROUTING_DEFAULT) c->routing = p->routing;
    if (p->n_group > 0) c->n_group = p->n_group;
    else if (c->routing == MOGE_ROUTING_MOGE && c->n_expert_used % c->n_group != 0)
        c->n_group = c->n_expert_used; /* Pangu's rule: one group per chosen expert */
    c->topk_group = p->topk_group > 0 ? p->topk_group : (c->n_group > 1 ? c->n_group / 2 : 1);
    return check_routing(c, "routing override", err, n);
}

moge_status config_from_json(model_config *c, const struct cJSON *root, const char *what, char *err, size_t n) {
    memset(c, 0, sizeof *c);
    return parse(c, root, what, err, n);
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
