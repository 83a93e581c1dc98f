/*
 * moge.h — the one public header of the moge inference runtime.
 *
 * Conventions (apply to every function below unless it says otherwise):
 *  - Functions return a moge_status; MOGE_OK is 0. moge_status_str() turns a code into text.
 *  - Constructors take `char *err, size_t err_size`: on failure a one-line message that names
 *    the file, tensor, field or flag at fault is written there (always NUL-terminated when
 *    err_size > 0; err may be NULL). On failure *out is set to NULL and nothing leaks.
 *  - Handles are opaque; every *_free() accepts NULL.
 *  - Library code never prints and never exits.
 *  - Thread-safety: a model and a tokenizer are read-only after loading and may be shared by
 *    threads; a context (and a detokenizer stream) must be used by one thread at a time.
 */
#ifndef MOGE_H
#define MOGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* MOGE_API marks what the library exports: it is built with hidden visibility, so only the
 * functions of this header are visible to a program that links libmoge.a or libmoge.so. */
#if defined(_WIN32)
#define MOGE_API
#elif defined(__GNUC__)
#define MOGE_API __attribute__((visibility("default")))
#else
#define MOGE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
    MOGE_OK = 0,
    MOGE_ERR_IO,           /* a file is missing, unreadable or cannot be mapped */
    MOGE_ERR_FORMAT,       /* malformed JSON, safetensors header, offsets past the end, ... */
    MOGE_ERR_UNSUPPORTED,  /* unknown architecture, dtype, rope_scaling, tokenizer type, ... */
    MOGE_ERR_SHAPE,        /* a tensor's shape or dtype differs from what the config implies */
    MOGE_ERR_NOMEM,        /* an allocation failed */
    MOGE_ERR_ARG,          /* an invalid argument (NULL handle, token id out of range, ...) */
    MOGE_ERR_CONTEXT_FULL, /* the batch would not fit in the context's KV cache */
    MOGE_ERR_BUFFER,       /* an output buffer is too small; the needed size is reported */
    MOGE_ERR_TOO_COMPLEX,  /* a tokenizer regex hit PCRE2's match limit: the pattern is too complex for the input */
    MOGE_ERR_NUMERIC,      /* a forward produced NaN or Inf logits (the message names the weight at fault) */
    MOGE_ERR_ABORTED,      /* the caller's abort callback returned true (moge_model_params, moge_context_params) */
} moge_status;

/* Returns a static, human-readable name for a status code ("ok", "I/O error", ...). */
MOGE_API const char *moge_status_str(moge_status st);

/* The library's version, "MAJOR.MINOR.PATCH" (MOGE_VERSION of the header it was built with). */
#define MOGE_VERSION "0.2.0"
MOGE_API const char *moge_version(void);

/* The names of the enums' values (below), one table each, as the command line and JSON write
 * them: moge_X_name(v) is NULL for a value outside the enum; moge_X_parse(name, &v) is MOGE_OK for
 * exactly those names, else MOGE_ERR_ARG (v untouched). Defined for spec ("none", "chain",
 * "tree"), quant ("none", "q8", "q4", "w8a8", "w4a8"), routing ("default", "moge", "topk",
 * "group_limited") and backend ("cpu", "ref"); stop reasons have a name only. */

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer (tokenizer/)                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct moge_tokenizer moge_tokenizer;

/* Loads a Hugging Face tokenizer. `path` is a model directory (reads tokenizer.json and, when
 * present, tokenizer_config.json) or the path of a tokenizer.json file.
 * On success *out owns the tokenizer; free it with moge_tokenizer_free(). */
MOGE_API moge_status moge_tokenizer_load(const char *path, moge_tokenizer **out, char *err, size_t err_size);
MOGE_API void moge_tokenizer_free(moge_tokenizer *tok);

/* Vocabulary size (largest id + 1, added tokens included). */
MOGE_API int32_t moge_tokenizer_n_vocab(const moge_tokenizer *tok);
/* A static description of the tokenizer's model, e.g. "BPE, byte-level". */
MOGE_API const char *moge_tokenizer_kind(const moge_tokenizer *tok);
/* BOS / EOS ids, or -1 when the tokenizer has none. */
MOGE_API int32_t moge_tokenizer_bos(const moge_tokenizer *tok);
MOGE_API int32_t moge_tokenizer_eos(const moge_tokenizer *tok);
/* The raw vocabulary string of a token (NUL-terminated, owned by the tokenizer), or NULL when
 * id is out of range. */
MOGE_API const char *moge_tokenizer_piece(const moge_tokenizer *tok, int32_t id);

/* Encodes `len` bytes of `text`. With add_special the tokenizer's post-processor template is
 * applied (e.g. BOS first); otherwise no special token is added. Writes at most max_ids ids to
 * `ids` and always sets *n_ids to the number of ids the full encoding has: when that exceeds
 * max_ids the result is MOGE_ERR_BUFFER (call again with a larger buffer; nothing is silently
 * truncated). MOGE_ERR_TOO_COMPLEX when a normalizer or pre-tokenizer regex hit PCRE2's match
 * limit on this text (a pattern that backtracks catastrophically). */
MOGE_API moge_status moge_tokenize(const moge_tokenizer *tok, const char *text, size_t len, bool add_special,
                          int32_t *ids, size_t max_ids, size_t *n_ids);

/* Decodes ids to text with the tokenizer's decoder pipeline. `cap` is the size of `out`, the NUL
 * included: the text and its NUL are written when the text is shorter than cap (at most cap - 1
 * bytes plus the NUL); *n_out is set to the full length (without NUL). MOGE_ERR_BUFFER when
 * cap <= that length (out then holds "" when cap > 0): call again with *n_out + 1 bytes. */
MOGE_API moge_status moge_detokenize(const moge_tokenizer *tok, const int32_t *ids, size_t n_ids,
                            char *out, size_t cap, size_t *n_out);

/* Streaming detokenizer: push ids one at a time and receive the text that became complete.
 * Never emits part of a UTF-8 character; the concatenation of everything pushed plus
 * moge_detok_stream_flush() equals moge_detokenize() of all ids. */
typedef struct moge_detok_stream moge_detok_stream;
MOGE_API moge_status moge_detok_stream_new(const moge_tokenizer *tok, moge_detok_stream **out);
MOGE_API void moge_detok_stream_free(moge_detok_stream *s);
/* Pushes one id; writes the newly complete text (maybe empty) and a NUL to out (cap: its size, the
 * NUL included) and its length to *n_out. MOGE_ERR_BUFFER when cap is too small; a buffer of
 * moge_detok_stream_max_bytes() + 1 bytes, asked right before the call, always suffices (the
 * bound grows while a run of byte tokens is held, e.g. CJK text in a byte-fallback vocabulary). */
MOGE_API moge_status moge_detok_stream_push(moge_detok_stream *s, int32_t id, char *out, size_t cap, size_t *n_out);
/* Emits what is still pending (an incomplete UTF-8 sequence becomes U+FFFD as the reference does). */
MOGE_API moge_status moge_detok_stream_flush(moge_detok_stream *s, char *out, size_t cap, size_t *n_out);
/* An upper bound on the bytes the next push or flush can produce (it grows with held text). */
MOGE_API size_t moge_detok_stream_max_bytes(const moge_detok_stream *s);
/* Primes a new stream with the prompt's ids (n_ids; special tokens such as BOS are skipped, as
 * they are when text is shown), so that the generated tokens pushed next decode as they do after
 * that text: the first one's leading space (Metaspace "▁word"), a byte-fallback sequence begun in
 * the prompt. The prompt's own text is not delivered: pushes and flush then give exactly
 * the text the generated tokens add (moge_detokenize(prompt + generated) minus
 * moge_detokenize(prompt), when the prompt's text ends on a whole character). Call it on a
 * fresh stream (or once all its text was delivered). */
MOGE_API moge_status moge_detok_stream_prime(moge_detok_stream *s, const int32_t *ids, size_t n_ids);

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer: token lookup and chat templates                                                 */
/* ------------------------------------------------------------------------------------------ */

/* The id of a token string (added tokens first, then the model vocabulary), or -1. */
MOGE_API int32_t moge_tokenizer_token_id(const moge_tokenizer *tok, const char *piece, size_t len);
/* True when id is an added token marked "special" (e.g. <s>, <|im_end|>). */
MOGE_API bool moge_tokenizer_is_special(const moge_tokenizer *tok, int32_t id);

/* Chat templates (chat_template.c). The families moge can render; a template that is none of
 * them is MOGE_CHAT_UNKNOWN (renderable only through the plain fallback, and callers should say
 * so); a tokenizer without a chat_template is MOGE_CHAT_NONE. */
typedef enum {
    MOGE_CHAT_NONE = 0, /* no chat_template in tokenizer_config.json */
    MOGE_CHAT_UNKNOWN,  /* a template moge does not recognise */
    MOGE_CHAT_CHATML,   /* <|im_start|>role\n...<|im_end|>\n (Qwen, ChatML) */
    MOGE_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    MOGE_CHAT_MISTRAL,  /* [INST] ... [/INST] (Mistral, Llama-2) */
    MOGE_CHAT_PANGU,    /* [unused9]role:...[unused10] (openPangu) */
    MOGE_CHAT_PLAIN,    /* "role: content\n" lines, ending with "assistant:" — the fallback */
} moge_chat_family;

typedef struct {
    const char *role;    /* "system", "user", "assistant", ... */
    const char *content; /* NUL-terminated UTF-8 */
} moge_chat_message;

/* Classifies a Jinja chat template by the markers it uses (NULL or "" -> MOGE_CHAT_NONE). */
MOGE_API moge_chat_family moge_chat_detect(const char *chat_template);
/* A static name: "none", "unknown", "chatml", "llama3", "mistral", "pangu", "plain". */
MOGE_API const char *moge_chat_family_name(moge_chat_family family);
/* The chat_template string of tokenizer_config.json (the "default" one when it is a list), or
 * NULL; and its family. */
MOGE_API const char *moge_tokenizer_chat_template(const moge_tokenizer *tok);
MOGE_API moge_chat_family moge_tokenizer_chat_family(const moge_tokenizer *tok);
/* Renders messages as the family's template does. bos_text (e.g. "<s>", "<|begin_of_text|>")
 * is written first where the family's template writes the BOS token, and eos_text (e.g. "</s>")
 * after assistant turns where it writes the EOS token; pass NULL for none (e.g. when the BOS id
 * is added by moge_tokenize's add_special instead). With add_generation_prompt the header of
 * the assistant's turn is appended. On success *out is a malloc'd NUL-terminated string the
 * caller frees. MOGE_ERR_UNSUPPORTED for MOGE_CHAT_NONE / MOGE_CHAT_UNKNOWN (render with
 * MOGE_CHAT_PLAIN explicitly, and tell the user the template was not recognised),
 * MOGE_ERR_ARG for a conversation the family cannot express (e.g. Mistral's user/assistant
 * alternation broken, or an unknown role). */
MOGE_API moge_status moge_chat_render(moge_chat_family family, const moge_chat_message *msgs, size_t n_msgs,
                             bool add_generation_prompt, const char *bos_text, const char *eos_text,
                             char **out, char *err, size_t err_size);

/* ------------------------------------------------------------------------------------------ */
/* Models (runtime/)                                                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct moge_model moge_model;
typedef struct moge_context moge_context;
typedef struct moge_comm moge_comm; /* the processes of one MPI job (see "Expert parallelism" below) */

typedef enum {
    MOGE_BACKEND_CPU = 0, /* vectorised kernels (AVX2/AVX-512), threaded */
    MOGE_BACKEND_REF = 1, /* plain loops with double accumulators: slow, the test oracle */
} moge_backend;

/* How a MoE layer picks experts for a token (docs/design.md §3). Every rule works on the softmax p over
 * all N experts, picks per token only (never looks at other rows), and breaks ties to the lower
 * expert id. The weight of a chosen expert is p[e] * router_scale[e] (1 when the checkpoint has
 * no router_scale), divided by the sum of the chosen p when norm_topk_prob is set. */
typedef enum {
    MOGE_ROUTING_DEFAULT = 0,   /* what the checkpoint's architecture uses */
    MOGE_ROUTING_MOGE,          /* top K/M inside each of M contiguous groups (Pangu Pro MoE) */
    MOGE_ROUTING_TOPK,          /* global top-K (Mixtral, Qwen-MoE) */
    MOGE_ROUTING_GROUP_LIMITED, /* keep the topk_group groups with the best expert, top-K in them (DeepSeek-V2) */
} moge_routing;

/* Weight quantization at load (runtime/quant.c; formats in runtime/tensor.h). Every 2-D weight
 * matrix except the embedding table and the MoE routers (lm_head included, also when tied) is
 * read once from the mapping and kept only in the quantized form; blocks of 32 values with one
 * f32 scale each, symmetric, every value within scale/2 of the original. moge_quantize_model()
 * writes those blocks to a pre-quantized directory that loads with no quantization pass. */
typedef enum {
    MOGE_QUANT_NONE = 0, /* weights as stored (F32/F16/BF16, mmapped) */
    MOGE_QUANT_Q8,       /* int8, scale = max|w| / 127: 1.125 bytes per weight */
    MOGE_QUANT_Q4,       /* 4-bit -7..7, scale = max|w| / 7: 0.625 bytes per weight */
    MOGE_QUANT_W8A8,     /* Q8 weights times activations quantized to int8 per token and block of
                            32 (integer dot products; a second rounding, of the activations) */
    MOGE_QUANT_W4A8,     /* Q4 weights times int8 activations, likewise */
} moge_quant;

MOGE_API const char *moge_backend_name(moge_backend backend);
MOGE_API moge_status moge_backend_parse(const char *name, moge_backend *out);
MOGE_API const char *moge_routing_name(moge_routing routing);
MOGE_API moge_status moge_routing_parse(const char *name, moge_routing *out);
MOGE_API const char *moge_quant_name(moge_quant quant);
MOGE_API moge_status moge_quant_parse(const char *name, moge_quant *out);

typedef struct {
    moge_backend backend;  /* default MOGE_BACKEND_CPU */
    int n_threads;         /* threads for the cpu backend: the default of the model's contexts
                              (moge_context_params.n_threads); default 0 = moge_cpu_default_threads() */
    moge_routing routing;  /* override the checkpoint's routing rule; default MOGE_ROUTING_DEFAULT */
    int32_t n_group;       /* groups for MOGE/GROUP_LIMITED overrides; 0 = the checkpoint's (Pangu: K) */
    int32_t topk_group;    /* groups kept by GROUP_LIMITED; 0 = half of n_group */
    moge_quant quant;      /* default MOGE_QUANT_NONE; for a pre-quantized directory NONE or its
                              own format (a no-op): another one is MOGE_ERR_ARG */
    /* Called while the weights are quantized and laid out for the backend (a second or more on a
     * large model) with the fraction of that work done, increasing, the last call with 1.0; at
     * most about 100 calls. NULL: none (default). */
    void (*progress)(double done, void *progress_user);
    void *progress_user;
    /* Called between the matrices moge_model_load quantizes or lays out, between a GGUF file's
     * tensors (converted as they are read), and between the load's phases (configuration, weight
     * files, binding, quantizing, layout): returning true stops the load
     * with MOGE_ERR_ABORTED ("aborted by the caller" in err), nothing left allocated. NULL: none
     * (default). */
    bool (*abort_cb)(void *abort_cb_user);
    void *abort_cb_user;
    /* cpu backend: the kernel variant to run (moge_cpu_kernels_name(), e.g. "avx2"); NULL or ""
     * = the MOGE_KERNELS environment variable when set, else moge_cpu_kernels_best(). A name
     * that is not built, or that this processor cannot run, is MOGE_ERR_ARG. */
    const char *kernels;
    /* Expert parallelism (moge_comm_mpi_init): NULL (default) = one process. On rank 0 of a job of
     * N > 1 ranks the model is loaded by every rank, each holding the replicated weights and only
     * the experts of its n_group / N groups (N must divide n_group); its contexts run every
     * forward on all ranks. Followers never call this: moge_comm_serve does it for them. */
    moge_comm *comm;
} moge_model_params;

MOGE_API moge_model_params moge_model_default_params(void);

/* CPU kernel variants. The cpu backend is compiled once per instruction set into the same
 * library (on x86-64: "scalar", "avx2", "avxvnni", "avx512", "avx512vnni"; elsewhere "generic")
 * and a model picks one at load (moge_model_params.kernels), so one binary runs at full speed on
 * any processor. Each variant is batch-invariant (exact speculation) on its own; two variants may
 * differ in the last bits of a logit. */
MOGE_API int moge_cpu_kernels_count(void);
MOGE_API const char *moge_cpu_kernels_name(int i);     /* i in [0, count), the baseline first; NULL outside */
MOGE_API bool moge_cpu_kernels_runs(const char *name); /* built and runnable on this processor (and OS) */
MOGE_API const char *moge_cpu_kernels_best(void);      /* the widest variant this processor runs */
/* The variants this processor runs, baseline first, as "scalar, avx2, ..." (for messages). */
MOGE_API void moge_cpu_kernels_list(char *out, size_t size);
/* The processor's name (CPUID brand string, or /proc/cpuinfo), at most size - 1 bytes and a NUL. */
MOGE_API void moge_cpu_name(char *out, size_t size);
/* The threads a model uses when not told (moge_model_params.n_threads 0): one per physical core
 * among the CPUs this process may run on (its affinity mask: taskset, a container's cpuset), at
 * most its cgroup's CPU quota (cgroup v2 cpu.max or v1 cpu.cfs_quota_us, rounded up), at least 1.
 * Hardware threads that share a core count once: a decode gains no bandwidth from the second. */
MOGE_API int32_t moge_cpu_default_threads(void);
/* The CPUs this process may run on (its affinity mask, else every online CPU), at least 1: more
 * threads than these wait for each other at every op. */
MOGE_API int32_t moge_cpu_usable(void);

/* Loads a Hugging Face model directory: config.json and model.safetensors, or the shards named by
 * model.safetensors.index.json. Architectures LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM, Qwen3ForCausalLM (dense), PanguProMoEForCausalLM (MoGE), MixtralForCausalLM,
 * Qwen2MoeForCausalLM and Qwen3MoeForCausalLM (MoE); weights F32, F16 or BF16 (mmapped, not copied; with params->quant the
 * matrices are quantized once into an owned buffer instead), or a pre-quantized directory
 * written by moge_quantize_model() (its blocks mmapped and used in place). params may be NULL
 * for the defaults. `dir` may also be a GGUF file (llama.cpp's format, v2/v3: architectures llama
 * (Mistral, Mixtral), qwen2, qwen3, qwen2moe, qwen3moe; tensors F32, F16, BF16, Q8_0, Q4_0, Q4_K,
 * Q6_K; README "GGUF files" says what each becomes).
 * On success *out owns the model: free it with moge_model_free() after every context made from
 * it. */
MOGE_API moge_status moge_model_load(const char *dir, const moge_model_params *params, moge_model **out,
                            char *err, size_t err_size);
MOGE_API void moge_model_free(moge_model *model);

typedef struct {
    const char *architecture; /* e.g. "LlamaForCausalLM"; owned by the model */
    const char *backend;      /* "cpu" or "ref" */
    const char *kernels;      /* cpu: the kernel variant it runs (moge_cpu_kernels_name); ref: NULL */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int32_t max_position;     /* max_position_embeddings (or the sliding window, when smaller) */
    float rope_theta, norm_eps;
    bool tie_embeddings;
    int32_t bos_id, eos_id;   /* -1 when the config has none */
    int32_t n_expert;         /* routed experts per MoE layer; 0 for a dense model */
    int32_t n_expert_used;    /* experts per token (K) */
    int32_t n_group;          /* expert groups (M); experts of a group are contiguous */
    int32_t n_ff_expert;      /* intermediate size of a routed expert */
    int32_t n_ff_shared;      /* intermediate size of the shared expert; 0 = none */
    int32_t n_devices;        /* MoE: workers a context places whole groups on by default (largest
                                 divisor of n_group not above the model's threads) */
    const char *dtype;        /* the stored dtype of the weight matrices: "F32", "F16", "BF16" or "mixed"
                                 (pre-quantized: of those not stored as blocks) */
    int64_t kv_bytes_per_token; /* KV cache bytes one token takes (f32 K and V, every layer) */
    const char *routing;      /* "moge", "topk", "group_limited" or "dense" */
    int64_t n_params;         /* number of weights */
    int64_t n_params_active;  /* weights a single token reads (embedding row excluded) */
    int64_t weight_bytes;     /* bytes of weights as stored */
    const char *quant;        /* "none", "q8", "q4", "w8a8" or "w4a8" (moge_quant_name) */
    bool prequantized;        /* the quantized matrices were read from a pre-quantized file
                                 (moge_quantize_model), not made at load */
    int64_t resident_bytes;   /* bytes of weights the loaded model holds and reads: quantized
                                 matrices, f32 copies of vectors, and the matrices still used
                                 from the mapping (each counted once) */
    int64_t mapped_bytes;     /* of resident_bytes: the matrices used in place from the mmapped
                                 weight files (pages of the page cache, not a copy; each counted
                                 once) */
} moge_model_info;

/* Fills *info (never fails for a loaded model). */
MOGE_API void moge_model_get_info(const moge_model *model, moge_model_info *info);

/* Pre-quantized model files (runtime/quant_file.c documents the format). moge_quantize_model()
 * reads the model directory in_dir (F32/F16/BF16 weights, one file or shards) and writes
 * out_dir: config.json with "quantization_config": {"quant_method": "moge", "format": "q8",
 * "block_size": 32, "layout": "panel16"}, one model.safetensors whose quantized matrices are U8
 * tensors holding the blocks in the cpu backend's panel layout exactly as moge_model_params.quant
 * makes them at load (so the logits are bit-identical, and loading maps them with no copy) and
 * every other tensor unchanged, and copies of the tokenizer, generation config, LICENSE and
 * README files. It writes into a temporary directory next to out_dir and renames it at the end:
 * on failure nothing is left behind. An existing out_dir must be empty unless p->overwrite
 * (then it may hold files but no directories; it is replaced); it must not be in_dir. */
typedef void (*moge_quantize_progress_fn)(const char *tensor, int32_t index, int32_t count, int64_t bytes_done,
                                          int64_t bytes_total, void *progress_user);

typedef struct {
    moge_quant quant;                   /* MOGE_QUANT_Q8 (default) or MOGE_QUANT_Q4 */
    bool overwrite;                     /* replace a non-empty out_dir; default false */
    bool row_major;                     /* write the first version of the format (row-major blocks, no
                                           layout marks), which moge builds before the panel layout read;
                                           the cpu backend copies its blocks into panels at load. Default
                                           false: the panel layout, used in place by both backends */
    moge_quantize_progress_fn progress; /* called after each tensor is written (index 1..count); may be NULL */
    void *progress_user;                /* passed to progress */
} moge_quantize_params;

typedef struct {
    int64_t in_bytes;     /* bytes of the input safetensors files */
    int64_t out_bytes;    /* bytes of the written model.safetensors */
    int32_t n_quantized;  /* tensors written as blocks */
    int32_t n_copied;     /* tensors copied unchanged */
    int32_t n_files;      /* other files copied (tokenizer, LICENSE, ...) */
} moge_quantize_stats;

MOGE_API moge_quantize_params moge_quantize_default_params(void);
/* p may be NULL for the defaults; stats may be NULL. */
MOGE_API moge_status moge_quantize_model(const char *in_dir, const char *out_dir, const moge_quantize_params *p,
                                moge_quantize_stats *stats, char *err, size_t err_size);

/* Memory-bound stand-ins (runtime/pad.c documents the construction). moge_pad_model() reads a
 * trained model (F32/F16/BF16; Llama, Mistral, Qwen2, Qwen3, Pangu MoGE, Mixtral, Qwen2-MoE,
 * Qwen3-MoE) and writes a wider and deeper one that computes the same function (the same logits
 * up to float rounding) at the memory cost of its own size: the added hidden dimensions, heads,
 * intermediate units and layers come after the real ones, hold random weights wherever they
 * cannot reach the real outputs and zeros wherever they would. out_dir gets one F32
 * model.safetensors, config.json (the sizes, rms_norm_eps scaled by old/new hidden size), the
 * tokenizer and licence files and a README.md naming the source. Written like
 * moge_quantize_model: through a temporary directory, nothing left behind on failure, an
 * existing out_dir replaced only with overwrite. A size of 0 keeps the source's; a smaller one
 * than the source's is MOGE_ERR_ARG, as is a width the model does not have. */
typedef struct {
    int32_t hidden;      /* hidden_size */
    int32_t layers;      /* num_hidden_layers: the real layers spread evenly, inserted ones between */
    int32_t heads;       /* num_attention_heads; key/value heads keep the source's ratio, head_dim is kept */
    int32_t ff;          /* intermediate_size of a dense model's MLP */
    int32_t ff_expert;   /* intermediate size of each routed expert (MoE) */
    int32_t ff_shared;   /* intermediate size of the shared expert (a model that has one) */
    uint64_t seed;       /* of the random weights; default 0 */
    bool overwrite;      /* replace a non-empty out_dir; default false */
    void (*progress)(double done, void *progress_user); /* fraction of the bytes written, increasing, the
                                                  last call with 1.0; about 100 calls; may be NULL */
    void *progress_user; /* passed to progress */
} moge_pad_params;

MOGE_API moge_pad_params moge_pad_default_params(void);
/* p may be NULL for the defaults (a copy of the source in F32). */
MOGE_API moge_status moge_pad_model(const char *in_dir, const char *out_dir, const moge_pad_params *p, char *err, size_t err_size);

/* ------------------------------------------------------------------------------------------ */
/* Contexts: KV cache, batched forward, commit                                                */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int32_t n_ctx;     /* KV cache slots (tokens) per sequence; default 0 = the model's max_position.
                          The cache is allocated as it fills (256 slots first, doubling), so a
                          large n_ctx costs memory only for the tokens a sequence holds */
    int32_t n_batch;   /* most rows one moge_forward() may take, all sequences together; default 512
                          (clamped to n_seq * n_ctx) */
    int32_t n_seq;     /* sequences the context holds, each with its own n_ctx slots (the cache takes
                          at most n_seq * n_ctx * kv_bytes_per_token); default 1. With more than one, a
                          sequence's rows in one forward are at most MOGE_SEQ_ROWS */
    int32_t n_devices; /* MoE: workers that each own whole expert groups; default 0 = the largest
                          divisor of the group count that does not exceed the context's threads */
    int32_t n_threads; /* threads of the context's own pool (cpu backend); default 0 = the model's
                          moge_model_params.n_threads (moge_cpu_default_threads() unless set). Contexts of
                          one model may use different counts; the logits do not depend on it */
    /* Called by the calling thread at the start of every moge_forward() and between its layers
     * (in an MPI job: at the start only), so also between the steps of moge_generate():
     * returning true stops the work with MOGE_ERR_ABORTED ("aborted by the caller" in
     * moge_context_error; in moge_decoder_step() an error of the shared pass, which stops the
     * sequences in it). An aborted forward changes no committed token and keeps none of its
     * rows (with `extend` the rows it extended stay uncommitted; without, the earlier uncommitted
     * rows may be dropped, as by any forward); moge_generate() then keeps, as after any
     * error, the prompt tokens it prefilled and the tokens it emitted but the last
     * (moge_context_n_past() says how many). The context stays usable. NULL: none (default). */
    bool (*abort_cb)(void *abort_cb_user);
    void *abort_cb_user;
} moge_context_params;

#define MOGE_MAX_SEQ 4096 /* the most sequences one context holds */
#define MOGE_SEQ_ROWS 512 /* with n_seq > 1: the most rows of one sequence in a forward (and uncommitted) */

MOGE_API moge_context_params moge_context_default_params(void);

/* Creates a context: allocates all run state once, and the KV cache for its first slots; a
 * forward that needs more slots grows the cache (up to n_ctx; MOGE_ERR_NOMEM when it cannot).
 * params may be NULL. The model must outlive the context. */
MOGE_API moge_status moge_context_new(moge_model *model, const moge_context_params *params, moge_context **out,
                             char *err, size_t err_size);
MOGE_API void moge_context_free(moge_context *ctx);

/* The message of the last failed call on this context ("" when none). Owned by the context. */
MOGE_API const char *moge_context_error(const moge_context *ctx);

/* Tokens whose K/V are committed in the cache (the next free slot) of sequence 0. */
MOGE_API int32_t moge_context_n_past(const moge_context *ctx);
MOGE_API int32_t moge_context_n_ctx(const moge_context *ctx);
MOGE_API int32_t moge_context_n_batch(const moge_context *ctx);
MOGE_API int32_t moge_context_n_seq(const moge_context *ctx);
/* Threads of the context's pool (moge_context_params.n_threads, or the model's; 1 on the ref backend's
 * unthreaded loops). */
MOGE_API int32_t moge_context_n_threads(const moge_context *ctx);
/* Committed tokens of sequence seq (-1 when seq is not 0..n_seq-1). */
MOGE_API int32_t moge_seq_n_past(const moge_context *ctx, int32_t seq);

/* One batched forward. Row i is token tokens[i] of sequence seq[i] at RoPE position pos[i]; it
 * sees every committed slot 0..n_past-1 of its sequence and, within the batch, the rows of its
 * sequence its visibility rule allows:
 *   parent == NULL: causal, row i sees its sequence's rows up to itself;
 *   parent != NULL: a tree, parent[i] < i (or -1 for a root); row i sees its ancestors and itself.
 * Rows are numbered per sequence: a sequence's uncommitted rows kept with `extend` first, then its
 * rows of this batch in order; parent[i] is such a number (for one sequence: the row index).
 * The rows of one sequence form one contiguous run of the batch. Rows never see another
 * sequence's slots: each sequence's logits are those it would get alone.
 * pos == NULL means n_past + i (causal) or n_past + depth(i) (tree), per sequence. */
typedef struct {
    int32_t n;
    const int32_t *tokens; /* (n) */
    const int32_t *pos;    /* (n) or NULL */
    const int32_t *parent; /* (n) or NULL */
    const int32_t *seq;    /* (n) sequence of each row, 0..n_seq-1; NULL = every row in sequence 0 */
    bool logits_last_only; /* compute logits for the last row of each sequence's run only (prefill):
                              one row of logits per run, in batch order; default false = all rows */
    bool extend;           /* every sequence of the batch keeps the uncommitted rows of its previous
                              forward(s) and appends to them (e.g. one draft tree level per call):
                              rows are then numbered after those, parent[i] may point at them, and
                              commit counts them. Without extend a sequence's earlier uncommitted
                              rows are dropped when it appears in a batch; other sequences' stay. */
} moge_batch;

/* Runs the model on `batch`, writing each sequence's rows' K/V into its slots n_past .. n_past+n-1
 * (after the kept uncommitted rows with `extend`; n_past itself does not move: commit what you keep
 * with moge_kv_commit / moge_seq_kv_commit). The cpu backend computes rows batch-invariantly — a row's logits do not depend,
 * bit for bit, on the other rows — at any batch size (a tied lm_head in row layout: up to 64
 * rows). On success *logits points to
 * (n, n_vocab) floats (or (1, n_vocab) with logits_last_only), owned by the context and valid until
 * the next forward. Errors: MOGE_ERR_ARG (bad token id, parent or size),
 * MOGE_ERR_CONTEXT_FULL (a sequence's n_past + its rows > n_ctx), MOGE_ERR_NOMEM (the KV cache
 * could not grow); on these the cache is unchanged. MOGE_ERR_NUMERIC: the logits hold NaN or Inf
 * (every returned row is checked); moge_context_error names the first weight holding one (a scan
 * made only then), or says the weights are finite. */
MOGE_API moge_status moge_forward(moge_context *ctx, const moge_batch *batch, const float **logits);

/* Keeps uncommitted rows (those of the last forward, plus earlier ones it extended):
 * rows[k] (strictly increasing row numbers) is moved to slot n_past + k, then n_past += n_rows and
 * every other uncommitted row is dropped. rows == NULL keeps rows 0..n_rows-1 as they are (a
 * causal batch). */
MOGE_API moge_status moge_kv_commit(moge_context *ctx, const int32_t *rows, int32_t n_rows);

/* Forgets every committed token from slot n_past on (0 <= n_past <= current n_past). */
MOGE_API moge_status moge_kv_truncate(moge_context *ctx, int32_t n_past);

/* The same for sequence seq (moge_kv_commit and moge_kv_truncate act on sequence 0). */
MOGE_API moge_status moge_seq_kv_commit(moge_context *ctx, int32_t seq, const int32_t *rows, int32_t n_rows);
MOGE_API moge_status moge_seq_kv_truncate(moge_context *ctx, int32_t seq, int32_t n_past);

/* Expert load of one MoE layer. For the last forward: the batch's figures; for the totals:
 * sums over every forward since the context was created or moge_moe_stats_reset(). */
typedef struct {
    int32_t n_devices;
    int32_t n_experts;
    int64_t n_rows;              /* token rows routed (summed over forwards for totals) */
    int64_t n_forwards;          /* forwards counted (1 for the last forward) */
    const int64_t *device_pairs; /* (n_devices) token-expert pairs each device computed */
    const int64_t *expert_hits;  /* (n_experts) rows routed to each expert */
    double imbalance;            /* Imbalance Score (max_d T_d - min_d T_d) / rows; totals: the mean over forwards */
    double imbalance_max;        /* the largest per-forward Imbalance Score */
    double distinct_experts;     /* experts touched by the batch; totals: the mean over forwards */
} moge_moe_stats;

/* Number of MoE layers of the model (0 for a dense model). */
MOGE_API int32_t moge_context_n_moe_layers(const moge_context *ctx);
/* Fills *out for MoE layer `layer` (0-based among MoE layers). totals = false: the last forward;
 * true: the running totals. Pointers inside stay valid until the next forward or reset. */
MOGE_API moge_status moge_moe_stats_get(const moge_context *ctx, int32_t layer, bool totals, moge_moe_stats *out);
MOGE_API void moge_moe_stats_reset(moge_context *ctx);

/* Where a context's forwards spent their time (this process's wall clock, seconds), summed over
 * every forward since the context was created or moge_forward_times_reset(). The parts add up to
 * the forwards' time: a kernel variant's profile without perf, per op kind. */
typedef enum {
    MOGE_PART_QKV,       /* "qkv": the q, k, v projections (matmuls and biases) */
    MOGE_PART_ATTENTION, /* "attention": scores, softmax and the weighted sum over the visible slots */
    MOGE_PART_OUT_PROJ,  /* "out_proj": the attention output projection */
    MOGE_PART_MLP,       /* "mlp": a dense layer's gate / up / down and SwiGLU; an MoE layer's shared expert */
    MOGE_PART_ROUTER,    /* "router": an MoE layer's router matmul and its top-k selection */
    MOGE_PART_EXPERTS,   /* "experts": the routed experts (gate / up / down of every active expert), their sum */
    MOGE_PART_LM_HEAD,   /* "lm_head": the final norm and the vocabulary projection */
    MOGE_PART_OTHER,     /* "other": embeddings, norms, RoPE, the KV cache writes, residual adds, the
                            exchange of an MPI job's expert outputs */
    MOGE_N_PARTS
} moge_forward_part;

typedef struct {
    double seconds[MOGE_N_PARTS]; /* by moge_forward_part */
    int64_t forwards;             /* forwards counted */
    int64_t rows;                 /* their rows */
} moge_forward_times;

MOGE_API void moge_forward_times_get(const moge_context *ctx, moge_forward_times *out);
MOGE_API void moge_forward_times_reset(moge_context *ctx);
/* The part's name as above ("qkv", ..., "other"); NULL outside [0, MOGE_N_PARTS). */
MOGE_API const char *moge_forward_part_name(int part);

/* ------------------------------------------------------------------------------------------ */
/* Expert parallelism across processes (runtime/comm.c; MPI in runtime/comm_mpi.c)            */
/* ------------------------------------------------------------------------------------------ */

/* A job of N processes (ranks) started by mpirun, on one machine or several. Rank 0 runs the
 * program: it loads the target with moge_model_params.comm set, owns the tokenizer, drafting,
 * sampling and I/O, and uses the model and its contexts exactly as in one process. Every other
 * rank calls moge_comm_serve(), which follows rank 0's steps: it loads the same model holding only
 * its own expert groups, makes the same contexts, runs every forward (attention and routing for all
 * rows, its own experts for the rows routed to them) and applies every KV commit/truncate. In a
 * forward the ranks exchange the per-(row, expert) outputs (an all-gather) and each sums a row's
 * experts in the order one process does: logits are bit-identical to a single-process run.
 * A rank that fails (a load error, an MPI error) makes every rank's call fail with a message naming
 * it ("rank 2: ..."); a rank that dies is reported by mpirun, which ends the job.
 *
 * moge_comm_mpi_init (runtime/comm_mpi.c) is in libmoge-mpi.a, libmoge.a with MPI: link that one
 * and `pkg-config --libs ompi-c` to run jobs. libmoge.a and libmoge.so hold no MPI: there it
 * returns MOGE_ERR_UNSUPPORTED saying so. */

/* True when this process was started by an MPI launcher (mpirun / srun: its environment names a
 * rank), so that a program can call moge_comm_mpi_init only then and run alone otherwise. */
MOGE_API bool moge_comm_launched(void);
/* MPI_Init (with threads funneled to the caller) and a communicator over MPI_COMM_WORLD whose MPI
 * errors return codes instead of aborting. Call once, before any other MPI use. */
MOGE_API moge_status moge_comm_mpi_init(int *argc, char ***argv, moge_comm **out, char *err, size_t err_size);
MOGE_API int32_t moge_comm_rank(const moge_comm *comm); /* 0 for NULL */
MOGE_API int32_t moge_comm_size(const moge_comm *comm); /* 1 for NULL */
/* Ranks other than 0: follows rank 0 until it calls moge_comm_free; *exit_status (may be NULL)
 * receives the status rank 0 passed there. An error (a failed forward here, an MPI error, a state
 * that differs from rank 0's) returns with the message in err. */
MOGE_API moge_status moge_comm_serve(moge_comm *comm, int *exit_status, char *err, size_t err_size);
/* Rank 0: tells the followers to stop with exit_status (they return from moge_comm_serve), then
 * every rank finalizes MPI and frees comm. Free the models and contexts first. NULL is a no-op. */
MOGE_API void moge_comm_free(moge_comm *comm, int exit_status);

/* One rank's figures for a context, since it was made (moge_moe_stats_reset leaves them). */
typedef struct {
    int32_t rank;
    int64_t expert_bytes;     /* bytes of routed-expert weights the rank holds (as laid out) */
    int64_t resident_bytes;   /* the process's resident memory (VmRSS), measured when asked */
    int64_t pairs;            /* token-expert pairs it computed, summed over layers and forwards */
    double compute_seconds;   /* in forwards, outside the exchange (attention, routing, its experts, ...) */
    double expert_seconds;    /* of which in its own routed experts */
    double comm_seconds;      /* in the exchange of expert outputs, waiting for slower ranks included */
    int64_t bytes_sent;       /* expert outputs it sent (its pairs x n_embd floats x the other ranks),
                                 plus on rank 0 the broadcast steps */
    int64_t forwards;         /* forwards run */
    int64_t rows;             /* rows routed, summed over MoE layers and forwards */
    int64_t spread_pairs;     /* the same sum of (most - fewest pairs a rank computed), from the block
                                 sizes the ranks exchanged: the same on every rank */
} moge_rank_stats;

/* Ranks a context's forwards run on (1 without a comm). */
MOGE_API int32_t moge_context_n_ranks(const moge_context *ctx);
/* Fills out[0..n_ranks-1] (every rank's figures, gathered from the followers: call on rank 0).
 * The ranks' Imbalance Score (docs/design.md §3, per layer and batch, weighted by rows):
 * spread_pairs / rows. */
MOGE_API moge_status moge_context_rank_stats(moge_context *ctx, moge_rank_stats *out);

/* The routing of the last forward at MoE layer `layer`: (n, k) expert ids (ascending per row) and
 * their weights, n = the last batch's rows, k = experts per token. Owned by the context, valid
 * until the next forward. Either pointer may be NULL. */
MOGE_API moge_status moge_moe_routing(const moge_context *ctx, int32_t layer, const int32_t **experts, const float **weights);

/* ------------------------------------------------------------------------------------------ */
/* Sampling (sampling/) and generation (verify/)                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    float temperature;      /* 0 = greedy (argmax, ties to the lower id); default 0.8 */
    int32_t top_k;          /* keep the k most probable tokens; 0 = off; default 40 */
    float top_p;            /* keep the smallest set with mass >= top_p; 1 = off; default 0.95 */
    float min_p;            /* drop tokens below min_p * the top probability; 0 = off; default 0 */
    float repeat_penalty;   /* divide positive (multiply negative) logits of recent tokens; 1 = off; default 1 */
    int32_t repeat_last_n;  /* how many recent tokens the penalty looks at; default 64 */
    uint64_t seed;          /* RNG seed; the same seed gives the same output; default 42 */
} moge_sampler_params;

MOGE_API moge_sampler_params moge_sampler_default_params(void);

/* The sampler's random state (splitmix64), owned by the caller: the engine's generation of one
 * sequence starts from moge_rng_seed(sampler.seed) and draws one number per emitted token, so a
 * caller that feeds moge_sample the same logits and tokens gets moge_generate's tokens. */
typedef struct {
    uint64_t state;
} moge_rng;

MOGE_API moge_rng moge_rng_seed(uint64_t seed);

/* Chooses a token from one row of logits (n_vocab floats) as moge_generate's target-only decoding
 * does (the same code): the repetition penalty over the last repeat_last_n of `recent` (the
 * tokens so far, prompt and generated, oldest first; NULL/0 = none), then temperature 0: argmax
 * (ties to the lower id), no random number used; else temperature, top-k, top-p and min-p, and
 * one uniform number drawn from *rng (advanced). Writes the token to *out. MOGE_ERR_ARG for a NULL
 * pointer, n_vocab < 1, n_recent < 0 or non-finite sampler parameters; MOGE_ERR_NOMEM when the
 * scratch (2 x n_vocab x 4 bytes, temperature > 0 or a penalty) cannot be allocated. */
MOGE_API moge_status moge_sample(const float *logits, int32_t n_vocab, const moge_sampler_params *sp, const int32_t *recent,
                                 int32_t n_recent, moge_rng *rng, int32_t *out);

/* ------------------------------------------------------------------------------------------ */
/* Token trees (draft/) and tree verification (verify/)                                       */
/* ------------------------------------------------------------------------------------------ */

/* A draft token tree as parallel arrays. Node 0 is the root: the last emitted token, not yet in
 * the target's KV cache. Nodes are in topological order (parent[i] < i). */
typedef struct {
    int32_t n, cap;
    int32_t *token;   /* (cap) */
    int32_t *parent;  /* (cap) parent[0] = -1 */
    int32_t *depth;   /* (cap) depth[0] = 0 */
    float *logp;      /* (cap) draft log-probability of the path root -> node (0 for the root) */
    /* How children were chosen, for the acceptance rule:
     *   sampled == false: deterministically (e.g. the draft's top-k): sample-and-match;
     *   sampled == true: each node's children were drawn from q[node] (an (n_vocab) distribution
     *   owned by the drafter), without replacement when without_replacement, in child order. */
    bool sampled, without_replacement;
    const float **q;  /* (cap) or NULL when !sampled */
} moge_tree;

/* Allocates a tree of `cap` nodes (cap >= 1); free with moge_tree_free. */
MOGE_API moge_status moge_tree_init(moge_tree *t, int32_t cap);
MOGE_API void moge_tree_free(moge_tree *t);
/* Empties the tree and sets the root token. */
MOGE_API void moge_tree_reset(moge_tree *t, int32_t root_token);
/* Adds a child; returns its node id, or -1 when the tree is full or parent is invalid. */
MOGE_API int32_t moge_tree_add(moge_tree *t, int32_t parent, int32_t token, float logp);

typedef struct {
    int32_t n_path;   /* accepted nodes, root included: path[0] = 0 */
    int32_t bonus;    /* the token the target chose after the last accepted node */
} moge_verify_result;

/* Verifies `tree` with the target in one forward (positions n_past + depth, tree mask), walks it
 * from the root with the acceptance rule (greedy at temperature 0; sample-and-match for
 * deterministic children; rejection sampling with residuals for sampled children; docs/design.md §4)
 * on the target's distribution processed by `sp` with the history `history` (the tokens before
 * the root), commits the accepted path into the context's KV cache, and writes the accepted
 * node ids to path (tree->n entries). rng: the caller's RNG state (advanced). */
MOGE_API moge_status moge_verify_tree(moge_context *ctx, const moge_tree *tree, const moge_sampler_params *sp,
                             const int32_t *history, int32_t n_history, uint64_t *rng,
                             int32_t *path, moge_verify_result *res);

/* One sequence's tree in moge_verify_trees(). */
typedef struct {
    int32_t seq;                     /* the sequence of the context it extends */
    const moge_tree *tree;
    const moge_sampler_params *sp;
    const int32_t *history;          /* the sequence's tokens before the root */
    int32_t n_history;
    uint64_t *rng;                   /* the sequence's RNG state (advanced) */
    int32_t *path;                   /* (tree->n) out: accepted node ids, root first */
    moge_verify_result res;          /* out */
    moge_status status;              /* out: this item's walk and commit */
} moge_verify_item;

/* moge_verify_tree for several sequences (each at most once) in one forward: their trees' rows
 * together must fit the context's n_batch. Each item is walked and committed in its own sequence
 * as if verified alone (the same logits, the same result); an item whose walk fails reports it in
 * its status and leaves its sequence's committed tokens unchanged, the others are unaffected. */
MOGE_API moge_status moge_verify_trees(moge_context *ctx, moge_verify_item *items, int32_t n_items);

/* ------------------------------------------------------------------------------------------ */
/* Drafters (draft/)                                                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int32_t draft_max;      /* deepest tree level (chain length); default 6 */
    int32_t tree_nodes;     /* most nodes below the root; default 24 (chain: draft_max) */
    int32_t branch;         /* children considered per expanded node; default 4 (chain: 1) */
    const int32_t *shape;   /* static tree: children per node at each depth, e.g. {4,2,2,1,1}; NULL = dynamic */
    int32_t n_shape;
    float min_path_prob;    /* stop growing paths whose draft probability falls below; default 0.01 */
    bool sampled;           /* draw children from the draft's distribution instead of its top-k */
} moge_draft_params;

typedef struct moge_drafter moge_drafter;

/* One sequence's proposal in a drafter serving several sequences (propose_seqs below). */
typedef struct {
    int32_t seq;                    /* the sequence (0..n_seq-1 of the drafter; a decoder passes its slot) */
    const int32_t *history;         /* as propose's */
    int32_t n_history;
    const moge_draft_params *dp;
    const moge_sampler_params *sp;
    moge_tree *tree;                /* already reset to the root */
    moge_status status;             /* out */
} moge_draft_job;

/* What a drafter does; library users can implement their own (moge_drafter_new_custom). */
typedef struct {
    /* Grows `tree` (already reset to the root) under dp. history: every token before the root
     * (prompt and emitted), n_history of them. sp: the sampling parameters of the run. */
    moge_status (*propose)(void *self, const int32_t *history, int32_t n_history, const moge_draft_params *dp,
                           const moge_sampler_params *sp, moge_tree *tree);
    /* The target accepted path[0..n_path-1] (node ids of `tree`, root first). */
    moge_status (*accept)(void *self, const moge_tree *tree, const int32_t *path, int32_t n_path);
    /* Forget everything (a new generation starts). */
    void (*reset)(void *self);
    void (*free)(void *self);
    /* Optional (NULL for a drafter of one sequence): a drafter serving several sequences, each with
     * state of its own, for moge_decoder: n_seq(self) sequences; propose_seqs grows every job's
     * tree (each as propose would for that sequence alone, but e.g. with one draft forward per
     * level for all of them), accept_seq and reset_seq are accept and reset for one sequence.
     * propose, accept and reset act on sequence 0. */
    int32_t (*n_seq)(void *self);
    moge_status (*propose_seqs)(void *self, moge_draft_job *jobs, int32_t n_jobs);
    moge_status (*accept_seq)(void *self, int32_t seq, const moge_tree *tree, const int32_t *path, int32_t n_path);
    void (*reset_seq)(void *self, int32_t seq);
} moge_drafter_iface;

MOGE_API moge_status moge_drafter_new_custom(const moge_drafter_iface *iface, void *self, moge_drafter **out);

/* A separate draft model sharing the target's vocabulary: refused with MOGE_ERR_ARG (naming the
 * first differing token) when the two tokenizers differ. The drafter keeps its own context of
 * n_ctx slots (0 = the draft's maximum). The model must outlive the drafter. */
MOGE_API moge_status moge_drafter_new_model(moge_model *draft, const moge_tokenizer *target_tok,
                                   const moge_tokenizer *draft_tok, int32_t n_ctx, moge_drafter **out,
                                   char *err, size_t err_size);
/* Self-draft: the target's first n_layers layers, then its final norm and lm_head. */
MOGE_API moge_status moge_drafter_new_layer_skip(moge_model *target, int32_t n_layers, int32_t n_ctx,
                                        moge_drafter **out, char *err, size_t err_size);
/* The same drafters for a moge_decoder of n_seq sequences (MOGE_MAX_SEQ at most): one drafter
 * serves every sequence of the decoder (sequence i of the decoder is the drafter's sequence i),
 * each with its own draft cache in one draft context of n_seq sequences, and drafts all of them
 * together: one draft forward for the roots, then one per tree level. Each sequence's tree is
 * the one a one-sequence drafter proposes for it. */
MOGE_API moge_status moge_drafter_new_model_seqs(moge_model *draft, const moge_tokenizer *target_tok, const moge_tokenizer *draft_tok,
                                        int32_t n_ctx, int32_t n_seq, moge_drafter **out, char *err, size_t err_size);
MOGE_API moge_status moge_drafter_new_layer_skip_seqs(moge_model *target, int32_t n_layers, int32_t n_ctx, int32_t n_seq,
                                             moge_drafter **out, char *err, size_t err_size);
/* Prompt lookup: find the longest recent n-gram (up to ngram_max tokens, default 3) that occurred
 * earlier in the context and propose what followed it; no model. It keeps no state, so one lookup
 * drafter serves every sequence of a decoder. */
MOGE_API moge_status moge_drafter_new_lookup(int32_t ngram_max, moge_drafter **out, char *err, size_t err_size);
MOGE_API void moge_drafter_free(moge_drafter *d);

/* ------------------------------------------------------------------------------------------ */
/* Generation (verify/)                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
    MOGE_STOP_LENGTH = 0,  /* n_predict tokens were generated */
    MOGE_STOP_EOS,         /* the model produced its end-of-sequence token (not passed to the callback) */
    MOGE_STOP_CALLBACK,    /* the callback returned false */
    MOGE_STOP_CONTEXT_FULL,/* the KV cache has no slot left */
} moge_stop_reason;

typedef enum {
    MOGE_SPEC_NONE = 0,    /* target only */
    MOGE_SPEC_CHAIN,       /* one draft path of up to draft_max tokens */
    MOGE_SPEC_TREE,        /* a draft tree (static shape or dynamic) */
} moge_spec_mode;

MOGE_API const char *moge_spec_name(moge_spec_mode mode);
MOGE_API moge_status moge_spec_parse(const char *name, moge_spec_mode *out);
MOGE_API const char *moge_stop_name(moge_stop_reason reason); /* "length", "end of sequence", "stopped", "context full" */

typedef struct {
    int32_t n_predict;             /* most tokens to generate; default 128 */
    moge_sampler_params sampler;
    moge_spec_mode spec;           /* default MOGE_SPEC_NONE; needs a drafter otherwise */
    moge_drafter *drafter;         /* not owned */
    moge_draft_params draft;
    bool adaptive;                 /* let the planner choose each step's tree (none, a chain or a tree up to
                                      `draft`'s limits) by expected accepted tokens per expected second;
                                      false = always the tree `draft` describes; default true */
    /* The tokens the context already holds (exactly moge_context_n_past() of them, e.g. earlier
     * turns of a conversation), so the drafter and the repetition penalty see the whole text;
     * NULL/0 = they see this call's prompt only. Not owned. */
    const int32_t *context_tokens;
    int32_t n_context_tokens;
} moge_generate_params;

MOGE_API moge_generate_params moge_generate_default_params(void);
MOGE_API moge_draft_params moge_draft_default_params(void);

#define MOGE_MAX_DEPTH 32

typedef struct {
    int32_t n_prompt;        /* prompt tokens prefilled */
    int32_t n_generated;     /* tokens emitted through the callback */
    int32_t n_forward;       /* target passes after the prefill (verifications or decodes); the target
                                passes of the generation are n_forward + 1 (the prefill's last pass
                                produced the first token) */
    int32_t n_prefill_forward; /* target forward passes of the prefill */
    double t_prefill_s;      /* wall time of the prefill */
    double t_decode_s;       /* wall time of the generation after the prefill */
    double tokens_per_s;     /* n_generated / t_decode_s */
    double mean_accepted;    /* τ: n_generated / (n_forward + 1), tokens emitted per target pass */
    int64_t n_draft_nodes;   /* draft nodes the target verified (below roots), summed over steps */
    int64_t n_draft_proposed;/* draft nodes the drafter proposed (the planner may verify fewer) */
    int32_t n_plain_steps;   /* steps the planner ran without a tree (plain decoding) */
    double predicted_speedup;/* the planner's prediction of tokens/s over plain decoding (0 = no planner) */
    double expert_bytes_read;/* bytes of routed-expert weights the target's passes after the prefill
                                read: sum over passes and MoE layers of distinct experts x bytes of
                                one expert (0 for a dense target) */
    int64_t accept_tries[MOGE_MAX_DEPTH];  /* steps whose walk reached depth d-1 with a child at depth d (index d) */
    int64_t accept_hits[MOGE_MAX_DEPTH];   /* ... and accepted a node at depth d */
    /* Time split of the generation after the prefill: */
    double t_draft_s;        /* the drafter proposing trees, and the planner choosing what to verify */
    double t_verify_s;       /* verification passes: the target's forward, the walk with the acceptance
                                rule (sampling included) and the KV commit of the accepted path */
    double t_draft_accept_s; /* the drafter taking the accepted path (its cache rolled back to it) */
    double t_emit_s;         /* emitting the accepted tokens: mostly the token callback (was t_sample_s) */
    moge_stop_reason stop;
} moge_stats;

/* Called with every generated token; return false to stop. */
typedef bool (*moge_token_cb)(int32_t token, void *cb_user);

/* Appends `prompt` (n_prompt >= 1 tokens) to the context's committed tokens, then generates up to
 * params->n_predict tokens, calling cb (may be NULL) with each. With params->spec != NONE the
 * drafter proposes chains or trees that the target verifies in one pass each; the output is
 * exactly the target-only output at temperature 0 and distributed as it otherwise.
 * Stops at EOS, at n_predict, when cb returns false, or when the context is full (reported in
 * stats->stop, not as an error). Afterwards the context holds the prompt and every emitted token
 * but the last (which is not evaluated yet), so a conversation can continue in it. Errors: MOGE_ERR_CONTEXT_FULL when the prompt itself does not
 * fit, MOGE_ERR_ARG for bad tokens or a speculative mode without drafter. stats may be NULL. */
MOGE_API moge_status moge_generate(moge_context *ctx, const int32_t *prompt, int32_t n_prompt,
                          const moge_generate_params *params, moge_token_cb cb, void *cb_user,
                          moge_stats *stats);

/* ------------------------------------------------------------------------------------------ */
/* Many sequences at once (verify/decoder.c)                                                  */
/* ------------------------------------------------------------------------------------------ */

/* A decoder generates up to moge_context_n_seq(ctx) sequences together in one context: every
 * step, the prompts of newly added sequences are prefilled (several per forward, up to n_batch
 * rows), then one target pass verifies every running sequence's next token or draft tree
 * together (continuous batching: sequences join with moge_decoder_add and leave when they stop,
 * and a removed sequence's slot is reused). Each sequence's tokens are exactly those
 * moge_generate() gives it alone with the same parameters (the kernels are batch-invariant;
 * greedy, or sampled with the same seed and mode).
 *
 * Ownership and threads: the decoder uses (does not own) the context, which must outlive it and
 * must not be used otherwise while the decoder runs sequences in it; one thread at a time. Each
 * sequence's drafter (generate params) is not owned and belongs to that sequence alone while it
 * runs (a drafter keeps per-sequence state): a drafter already running another sequence of the
 * decoder is refused. Callbacks run on the calling thread during moge_decoder_step(). */
typedef struct moge_decoder moge_decoder;

typedef struct {
    int64_t n_passes;         /* target verification passes (one per step with running sequences) */
    int64_t n_prefill_passes; /* target forwards of prompt prefills */
    int64_t n_rows;           /* rows of the verification passes (roots and verified draft nodes) */
    int64_t n_generated;      /* tokens emitted, all sequences (each one's first, from its prefill, included) */
    double t_prefill_s, t_decode_s; /* wall time in prefill forwards / in the rest of the steps */
    double expert_bytes_read; /* routed-expert weight bytes the verification passes read */
} moge_decoder_stats;

/* On error *out is NULL and the context's error message (moge_context_error) says why. */
MOGE_API moge_status moge_decoder_new(moge_context *ctx, moge_decoder **out);
/* Ends every running sequence (as moge_decoder_remove) and frees the decoder. */
MOGE_API void moge_decoder_free(moge_decoder *d);

/* Adds a sequence: its prompt (copied) is prefilled at the next step, then it generates under
 * params (NULL = defaults; context_tokens must be empty: a sequence starts in an empty slot) and
 * calls cb(token, cb_user) with each token. Writes its id (the slot, 0..n_seq-1) to *id.
 * Errors (nothing added; moge_context_error says which limit): MOGE_ERR_CONTEXT_FULL when every
 * slot holds a sequence or the prompt does not fit in n_ctx; MOGE_ERR_ARG for a bad prompt, a
 * speculative mode without drafter or a drafter another sequence of the decoder runs with. */
MOGE_API moge_status moge_decoder_add(moge_decoder *d, const int32_t *prompt, int32_t n_prompt, const moge_generate_params *params,
                             moge_token_cb cb, void *cb_user, int32_t *id);

/* One step for every sequence (see above). *n_running (may be NULL) receives the sequences still
 * generating afterwards. A sequence that fails (its drafter, a walk) stops with its own status
 * (moge_decoder_seq_stats) and the others go on; an error of the shared pass itself stops every
 * sequence in it and is returned. */
MOGE_API moge_status moge_decoder_step(moge_decoder *d, int32_t *n_running);

/* The statistics of sequence id so far (final once it stopped), whether it stopped, and the
 * status that stopped it (MOGE_OK unless an error did); any out pointer may be NULL. */
MOGE_API moge_status moge_decoder_seq_stats(const moge_decoder *d, int32_t id, moge_stats *stats, bool *stopped,
                                   moge_status *status);

/* The ids of the sequences that stopped and are not removed yet, in id order: writes at most cap
 * of them to ids (may be NULL with cap 0) and returns how many there are. */
MOGE_API int32_t moge_decoder_stopped(const moge_decoder *d, int32_t *ids, int32_t cap);

/* Removes sequence id (stopping it if it still runs) and frees its slot for a new sequence. */
MOGE_API moge_status moge_decoder_remove(moge_decoder *d, int32_t id);

/* Totals of the decoder's passes since moge_decoder_new. */
MOGE_API void moge_decoder_get_stats(const moge_decoder *d, moge_decoder_stats *out);

/* ------------------------------------------------------------------------------------------ */
/* Device performance model (sim/): a model, not a backend                                    */
/* ------------------------------------------------------------------------------------------ */

/* moge_simulate() predicts one decode step of a model on Ascend NPUs from public hardware figures
 * (sim/devices.c cites each one): every matmul, grouped expert matmul, attention and collective of
 * the step on the slowest device, each max(bytes / achievable bandwidth, ops / achievable compute),
 * collectives latency-free bytes / measured algorithm bandwidth, plus a fixed cost per layer
 * (launches, synchronisation). Two constants are fitted to two of the paper's numbers (sim/sim.h
 * says which); nothing runs on an NPU. Expert traffic comes from the expected number of distinct
 * experts a batch touches, from measured routing frequencies (moge eval --json) or uniform ones.
 * The result is a pure function of the model's config.json, the parameters and the stats file. */
typedef struct {
    const char *device;        /* "800I-A2" (Atlas 800I A2, 910B4 NPUs; default) or "300I-Duo" (Atlas
                                  300I Duo, two 310P3 chips per card) */
    int32_t cards;             /* cards of one server; default 4 (the paper's decode) */
    int32_t batch;             /* sequences decoded together; default 1 */
    int32_t context;           /* KV positions each sequence attends to at the step; default 2048 */
    int32_t attn_tp;           /* attention tensor-parallel degree, dividing the chips; the rest is
                                  data parallel; 0 = half the chips (the paper's DP2 x TP), default */
    int32_t weight_bits;       /* 8: W8A8, int8 weights and activations (default); 16: fp16 */
    int32_t kv_bits;           /* 8: int8 KV cache (default); 16: fp16 */
    moge_routing routing;      /* MoE rule to model: DEFAULT = the config's, MOGE or TOPK */
    const char *routing_stats; /* a `moge eval --json` file whose expert hits give the routing
                                  frequencies; NULL = uniform (default) */
    int32_t spec_rows;         /* rows verified per sequence per step (root and draft nodes); 1 = no
                                  speculation (default) */
    double tau;                /* accepted tokens per sequence per step (1 <= tau <= spec_rows); 0 = not
                                  given (tokens/s then counts one token per step) */
    int32_t draft_layers;      /* layers of the target's shape the drafter runs per draft level
                                  (a multi-token-prediction head: 1, default); 0 = free drafter */
} moge_simulate_params;

MOGE_API moge_simulate_params moge_simulate_default_params(void);

#define MOGE_SIM_MAX_OPS 16

typedef struct {
    const char *name;  /* static: "attn_proj", "attention", "tp_comm", "router", "moe_comm", "experts",
                          "shared", "mlp", "lm_head", "overhead", "draft" (sim/step.c says what each holds) */
    double seconds;    /* on the slowest device, summed over layers */
    const char *bound; /* static: "memory", "compute", "communication" or "overhead" */
} moge_simulate_op;

typedef struct {
    char architecture[64];              /* the config's, e.g. "PanguProMoEForCausalLM" */
    int32_t n_layer, n_expert, n_group, n_expert_used, n_ff_shared; /* its shape (n_expert 0: dense) */
    int32_t chips;                      /* NPUs (cards x chips per card) */
    int32_t attn_tp, attn_dp;           /* the attention layout */
    double step_s;                      /* one step: draft, verification pass, overhead */
    double tokens_per_s_per_card;       /* batch x tau / step_s / cards: plain decoding tau = 1;
                                           speculation without tau: 1 (the floor: the bonus token) */
    double t_weights_s, t_kv_s, t_compute_s, t_comm_s, t_overhead_s; /* split of step_s */
    double t_draft_s;                   /* of step_s: the drafter's levels */
    int32_t n_ops;
    moge_simulate_op ops[MOGE_SIM_MAX_OPS];
    /* MoE (0 for a dense model), expected values per layer, means over the layers: */
    double distinct_experts;            /* experts the step's rows touch, all chips */
    double distinct_experts_chip;       /* experts the busiest chip reads (of its whole groups) */
    double expert_pairs_max;            /* token-expert pairs of the busiest chip */
    double expert_pairs_mean;           /* ... and of the average chip */
    double imbalance;                   /* Imbalance Score (max - min pairs) / rows: 0 under MoGE */
    int32_t expert_owners;              /* chips (or chip groups) holding whole expert groups */
    const char *routing;                /* static: "moge", "topk" or "dense" */
    bool routing_measured;              /* frequencies from routing_stats, not uniform */
    double weight_bytes_per_chip;       /* resident weights of one chip */
    double kv_bytes_per_chip;           /* KV cache of one chip at this batch and context */
    double capacity_per_chip;           /* its memory */
    /* The constants the step was modelled with: shares of peak achieved by memory streams, matmuls
     * and the attention's KV-cache stream, and the fixed cost of one layer (the last two fitted). */
    double eta_mem, eta_compute, eta_kv, layer_overhead_s;
} moge_simulate_result;

/* Models `model` (a model directory holding config.json, or the path of a config.json) under p
 * (NULL = defaults) into *out. Errors: MOGE_ERR_ARG naming the parameter (unknown device, cards,
 * batch, context, a layout whose chips do not divide the heads or the expert groups, tau outside
 * [1, spec_rows], ...), the config parser's errors naming the file and key, MOGE_ERR_FORMAT for a
 * routing_stats file that is not `moge eval --json` output of a model with the same experts and
 * groups. */
MOGE_API moge_status moge_simulate(const char *model, const moge_simulate_params *p, moge_simulate_result *out, char *err,
                          size_t err_size);

/* The paper's decode figures (Pangu Pro MoE, arXiv 2505.21411; W8A8, input 2048) for the
 * paper-vs-model table: row i (0-based) into *out; false past the last row. model is the name of
 * a committed config under models/ (e.g. "configs/pangu-pro-moe-72b"). */
typedef struct {
    const char *label, *model, *device;
    int32_t cards, batch, spec_rows;  /* spec_rows > 1: a speculation row (its tau is solved for) */
    double step_ms;                   /* the paper's TPOT */
    double tokens_per_s_per_card;     /* the paper's figure; 0 when it gives none (batch 1) */
    bool calibrated;                  /* one of the two numbers the model's constants are fitted to */
} moge_simulate_paper_row;

MOGE_API bool moge_simulate_paper(int32_t i, moge_simulate_paper_row *out);

#ifdef __cplusplus
}
#endif
#endif /* MOGE_H */
