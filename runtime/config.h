/*
 * config.h — a model's hyper-parameters: config.json (runtime/config.c) parsed and checked into
 * model_config (every number range-checked as a double before any cast; errors name the key).
 */
#ifndef MOGE_CONFIG_H
#define MOGE_CONFIG_H

#include <stdbool.h>
#include "moge.h"

typedef enum {
    ARCH_LLAMA = 0, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3, /* dense */
    ARCH_PANGU_MOE, ARCH_MIXTRAL, ARCH_QWEN2_MOE, ARCH_QWEN3_MOE, /* MoE */
} model_arch;

typedef struct {
    char architecture[64];  /* as in config.json, e.g. "LlamaForCausalLM" */
    model_arch arch;
    int n_vocab;       /* vocab_size */
    int n_embd;        /* hidden_size */
    int n_layer;       /* num_hidden_layers */
    int n_head;        /* num_attention_heads */
    int n_head_kv;     /* num_key_value_heads (default n_head) */
    int head_dim;      /* head_dim (default n_embd / n_head) */
    int n_ff;          /* intermediate_size */
    int max_position;  /* max_position_embeddings */
    float norm_eps;    /* rms_norm_eps */
    float rope_theta;  /* rope_theta (default 10000) */
    bool tie_embeddings;
    bool qkv_bias;     /* Qwen2, or Llama with attention_bias */
    bool o_bias;       /* Llama with attention_bias */
    int bos_id, eos_id; /* -1 when absent; eos_id is the first when a list is given */
    bool qk_norm;      /* Qwen3: RMSNorm over each q and k head before RoPE */
    /* MoE (n_expert > 0): every decoder layer is a MoE layer */
    int n_expert;      /* num_experts / num_local_experts */
    int n_expert_used; /* num_experts_per_tok (K) */
    int n_ff_expert;   /* moe_intermediate_size (Mixtral: intermediate_size) */
    int n_ff_shared;   /* shared_expert_intermediate_size, 0 = no shared expert */
    bool shared_gate;  /* Qwen2-MoE: shared expert scaled by sigmoid(shared_expert_gate · h) */
    moge_routing routing; /* never MOGE_ROUTING_DEFAULT after loading */
    int n_group;       /* expert groups (placement unit on devices; MoGE/group-limited routing) */
    int topk_group;    /* group-limited: groups kept */
    bool norm_topk_prob;
    moge_quant quant_file; /* "quantization_config" of a pre-quantized directory (moge quantize), else NONE */
    int quant_panel;       /* its "layout": TENSOR_PANEL for "panel16", 0 when absent (row-major blocks) */
} model_config;

/* Parses `path` (a config.json). Errors name the file and key. */
moge_status config_load(model_config *c, const char *path, char *err, size_t err_size);
/* The same from a parsed config.json object (another format's metadata made into one: `what`
 * names it in messages). */
struct cJSON;
moge_status config_from_json(model_config *c, const struct cJSON *root, const char *what, char *err, size_t err_size);
/* Applies the routing override of the load parameters (after config_load). */
moge_status config_set_routing(model_config *c, const moge_model_params *p, char *err, size_t err_size);
const char *routing_name(moge_routing r);

#endif
