/* cmd_info.c — `moge info -m DIR`: architecture and sizes of a model directory. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"
#include "moge_hub.h"

static void usage(FILE *f) {
    fputs("usage: moge info -m DIR\n\nPrints the architecture, layer sizes and weight bytes of a model (a directory, a .gguf\n"
          "file or OWNER/NAME from the download cache).\n", f);
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL, *pos[1];
    const cli_flag flags[] = {{"-m", "--model", CLI_ARG_STR, &dir, 0, 0}};
    int n_pos, rc = cli_parse_flags("info", flags, 1, argc, argv, pos, 0, &n_pos, usage);
    if (rc >= 0) return rc;
    if (!dir) {
        fprintf(stderr, "moge info: -m DIR is required\n");
        return 2;
    }
    char err[1024], path[4096];
    moge_model *m = NULL;
    if (moge_resolve_model(dir, path, sizeof path, err, sizeof err) != MOGE_OK || moge_model_load(path, NULL, &m, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge info: %s\n", err);
        return 1;
    }
    moge_model_info in;
    moge_model_get_info(m, &in);
    printf("model         %s%s%s\n", dir, strcmp(dir, path) ? " -> " : "", strcmp(dir, path) ? path : "");
    printf("architecture  %s\n", in.architecture);
    printf("parameters    %lld total, %lld active per token (%.1f %%)\n", (long long)in.n_params, (long long)in.n_params_active,
           100.0 * in.n_params_active / (in.n_params ? in.n_params : 1));
    if (in.prequantized)
        printf("weights       pre-quantized %s (other tensors %s), %.2f MB stored, %.2f MB resident\n", in.quant, in.dtype,
               in.weight_bytes / 1e6, in.resident_bytes / 1e6);
    else
        printf("weights       %s, %.2f MB stored (%s at load: %.2f MB resident)\n", in.dtype, in.weight_bytes / 1e6, in.quant,
               in.resident_bytes / 1e6);
    printf("in place      %.2f MB of the resident weights are used straight from the mmapped files\n", in.mapped_bytes / 1e6);
    printf("layers        %d, hidden %d\n", in.n_layer, in.n_embd);
    printf("attention     %d heads, %d KV heads, head_dim %d\n", in.n_head, in.n_head_kv, in.head_dim);
    if (in.n_expert > 0) {
        int width = in.n_expert / in.n_group, per_dev = in.n_group / (in.n_devices ? in.n_devices : 1);
        printf("experts       %d routed (width %d) in %d groups of %d, %d per token, routing %s\n", in.n_expert, in.n_ff_expert,
               in.n_group, width, in.n_expert_used, in.routing);
        if (in.n_ff_shared > 0) printf("shared expert width %d\n", in.n_ff_shared);
        printf("placement     %d devices (threads) with %d whole groups each:", in.n_devices, per_dev);
        for (int d = 0; d < in.n_devices; d++)
            printf(" d%d = experts %d-%d%s", d, d * per_dev * width, (d + 1) * per_dev * width - 1, d + 1 < in.n_devices ? "," : "\n");
    } else {
        printf("feed-forward  %d (dense SwiGLU)\n", in.n_ff);
    }
    printf("context       %d positions, rope_theta %g, rms_norm_eps %g\n", in.max_position, in.rope_theta, in.norm_eps);
    printf("memory        %.2f MB weights + %.1f KB KV cache per token = %.2f MB at the full context\n", in.resident_bytes / 1e6,
           in.kv_bytes_per_token / 1e3, (in.resident_bytes + (double)in.kv_bytes_per_token * in.max_position) / 1e6);
    printf("embeddings    %s\n", in.tie_embeddings ? "tied" : "untied");
    char cpu[128];
    moge_cpu_name(cpu, sizeof cpu);
    printf("kernels       %s on %s (built:", in.kernels ? in.kernels : in.backend, cpu);
    for (int i = 0; i < moge_cpu_kernels_count(); i++)
        printf(" %s%s", moge_cpu_kernels_name(i), moge_cpu_kernels_runs(moge_cpu_kernels_name(i)) ? "" : " (not on this processor)");
    printf("; --kernels NAME or MOGE_KERNELS picks one)\n");
    int usable = (int)moge_cpu_usable();
    printf("threads       %d by default (one per physical core of the %d CPU%s this process may run on, at most its cgroup's CPU quota; -t N sets them)\n",
           (int)moge_cpu_default_threads(), usable, usable == 1 ? "" : "s");
    moge_tokenizer *tok = NULL;
    if (moge_tokenizer_load(path, &tok, err, sizeof err) == MOGE_OK) {
        moge_chat_family fam = moge_tokenizer_chat_family(tok);
        printf("tokenizer     %s, %d tokens (BOS %d, EOS %d), chat template: %s\n", moge_tokenizer_kind(tok), moge_tokenizer_n_vocab(tok),
               moge_tokenizer_bos(tok), moge_tokenizer_eos(tok), moge_chat_family_name(fam));
        moge_tokenizer_free(tok);
    } else {
        printf("tokenizer     none (%s)\n", err);
    }
    moge_model_free(m);
    return 0;
}
