/*
 * simple.c — the smallest complete use of the library: load a target and a draft, generate
 * speculatively with a streaming callback, print the statistics.
 *   build/examples/simple [TARGET_DIR [DRAFT_DIR [PROMPT]]]   (default: models/stories260K twice)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moge.h"

static bool on_token(int32_t id, void *user) {
    moge_detok_stream *stream = user;
    char text[256];
    size_t n = 0;
    if (moge_detok_stream_push(stream, id, text, sizeof text, &n) == MOGE_OK) fwrite(text, 1, n, stdout);
    fflush(stdout);
    return true; /* false would stop the generation */
}

int main(int argc, char **argv) {
    const char *target_dir = argc > 1 ? argv[1] : "models/stories260K";
    const char *draft_dir = argc > 2 ? argv[2] : target_dir;
    const char *prompt = argc > 3 ? argv[3] : "Once upon a time";
    char err[512];
    moge_model *target = NULL, *draft = NULL;
    moge_tokenizer *tok = NULL, *draft_tok = NULL;
    moge_context *ctx = NULL;
    moge_drafter *drafter = NULL;
    moge_detok_stream *stream = NULL;
    int rc = 1;
    if (moge_model_load(target_dir, NULL, &target, err, sizeof err) || moge_tokenizer_load(target_dir, &tok, err, sizeof err) ||
        moge_model_load(draft_dir, NULL, &draft, err, sizeof err) || moge_tokenizer_load(draft_dir, &draft_tok, err, sizeof err) ||
        moge_context_new(target, NULL, &ctx, err, sizeof err) ||
        moge_drafter_new_model(draft, tok, draft_tok, 0, &drafter, err, sizeof err) || moge_detok_stream_new(tok, &stream)) {
        fprintf(stderr, "simple: %s\n", err);
        goto out;
    }
    int32_t ids[256];
    size_t n_ids = 0;
    if (moge_tokenize(tok, prompt, strlen(prompt), true, ids, 256, &n_ids) != MOGE_OK) goto out;
    moge_generate_params gp = moge_generate_default_params();
    gp.n_predict = 64;
    gp.sampler.temperature = 0; /* greedy: exactly what the target alone would write */
    gp.spec = MOGE_SPEC_TREE;
    gp.drafter = drafter;
    moge_stats st;
    printf("%s", prompt);
    moge_detok_stream_prime(stream, ids, n_ids); /* the prompt sets the detokenizer's context; it is printed already */
    if (moge_generate(ctx, ids, (int32_t)n_ids, &gp, on_token, stream, &st) != MOGE_OK) {
        fprintf(stderr, "simple: %s\n", moge_context_error(ctx));
        goto out;
    }
    printf("\n%d tokens, %.1f tokens/s, %.2f tokens per target pass\n", st.n_generated, st.tokens_per_s, st.mean_accepted);
    rc = 0;
out:
    moge_detok_stream_free(stream);
    moge_drafter_free(drafter);
    moge_context_free(ctx);
    moge_tokenizer_free(draft_tok);
    moge_tokenizer_free(tok);
    moge_model_free(draft);
    moge_model_free(target);
    return rc;
}
