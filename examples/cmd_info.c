/* cmd_info.c — `moge info -m DIR`: architecture and sizes of a model directory. */
#include <stdio.h>
#include <string.h>

#include "examples/cli.h"
#include "examples/commands.h"
#include "moge.h"

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: moge info -m DIR\n\nPrints the architecture, layer sizes and weight bytes of a model directory.");
            return 0;
        }
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (!(dir = cli_value("info", argc, argv, &i))) return 2;
        } else {
            fprintf(stderr, "moge info: unknown option \"%s\"\n", argv[i]);
            return 2;
        }
    }
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
    printf("model         %s\n", dir);
    printf("architecture  %s\n", in.architecture);
    printf("parameters    %lld (%.2f MB of weights, %s)\n", (long long)in.n_params, in.weight_bytes / 1e6, in.quant);
    printf("layers        %d\n", in.n_layer);
    if (in.n_expert > 0) {
        printf("hidden        %d\n", in.n_embd);
        printf("experts       %d routed (width %d) in %d groups of %d, %d per token (%d per group), routing %s\n",
               in.n_expert, in.n_ff_expert, in.n_group, in.n_expert / in.n_group, in.n_expert_used,
               in.n_expert_used / in.n_group, in.routing);
        if (in.n_ff_shared > 0) printf("shared expert width %d\n", in.n_ff_shared);
        printf("active        %lld parameters per token (%.1f %%)\n", (long long)in.n_params_active,
               100.0 * in.n_params_active / in.n_params);
    } else {
        printf("hidden        %d (feed-forward %d)\n", in.n_embd, in.n_ff);
    }
    printf("attention     %d heads, %d KV heads, head_dim %d\n", in.n_head, in.n_head_kv, in.head_dim);
    printf("vocabulary    %d (BOS %d, EOS %d)\n", in.n_vocab, in.bos_id, in.eos_id);
    printf("context       %d positions, rope_theta %g, rms_norm_eps %g\n", in.max_position, in.rope_theta, in.norm_eps);
    printf("embeddings    %s\n", in.tie_embeddings ? "tied" : "untied");
    moge_model_free(m);
    return 0;
}
