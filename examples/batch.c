/*
 * batch.c — many sequences at once: one context with a slot per sequence, a drafter serving all
 * of them, and a decoder that verifies every sequence's draft tree in one target pass per step.
 * Each sequence's text is exactly what it would get alone (greedy).
 *   build/examples/batch [TARGET_DIR [DRAFT_DIR]]   (default: the demo pair under models/)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moge.h"

#define N_SEQ 4

static const char *const prompts[N_SEQ] = {"Once upon a time", "The little dog", "Lily and Ben", "One day, the sun"};

typedef struct {
    char text[4096];
    size_t len;
    moge_detok_stream *stream;
} output;

static bool on_token(int32_t id, void *user) { /* collects a sequence's text; no printing here */
    output *o = user;
    size_t n = 0;
    if (o->len + 256 < sizeof o->text && moge_detok_stream_push(o->stream, id, o->text + o->len, 256, &n) == MOGE_OK) o->len += n;
    return true;
}

int main(int argc, char **argv) {
    const char *target_dir = argc > 1 ? argv[1] : "models/tinystories-moge";
    const char *draft_dir = argc > 2 ? argv[2] : "models/tinystories-draft";
    char err[512];
    moge_model *target = NULL, *draft = NULL;
    moge_tokenizer *tok = NULL, *draft_tok = NULL;
    moge_context *ctx = NULL;
    moge_drafter *drafter = NULL;
    moge_decoder *dec = NULL;
    output out[N_SEQ] = {0};
    int rc = 1;
    moge_context_params cp = moge_context_default_params();
    cp.n_ctx = 256;   /* slots per sequence */
    cp.n_seq = N_SEQ; /* one region of the KV cache per sequence */
    if (moge_model_load(target_dir, NULL, &target, err, sizeof err) || moge_tokenizer_load(target_dir, &tok, err, sizeof err) ||
        moge_model_load(draft_dir, NULL, &draft, err, sizeof err) || moge_tokenizer_load(draft_dir, &draft_tok, err, sizeof err) ||
        moge_context_new(target, &cp, &ctx, err, sizeof err) ||
        moge_drafter_new_model_seqs(draft, tok, draft_tok, 256, N_SEQ, &drafter, err, sizeof err)) {
        fprintf(stderr, "batch: %s\n", err);
        goto out;
    }
    if (moge_decoder_new(ctx, &dec) != MOGE_OK) goto fail;
    moge_generate_params gp = moge_generate_default_params();
    gp.n_predict = 48;
    gp.sampler.temperature = 0;
    gp.spec = MOGE_SPEC_TREE;
    gp.drafter = drafter; /* made for N_SEQ sequences: one drafting pass for all of them */
    for (int i = 0; i < N_SEQ; i++) {
        int32_t ids[64], id;
        size_t n_ids = 0;
        if (moge_detok_stream_new(tok, &out[i].stream) != MOGE_OK ||
            moge_tokenize(tok, prompts[i], strlen(prompts[i]), true, ids, 64, &n_ids) != MOGE_OK)
            goto fail;
        moge_detok_stream_prime(out[i].stream, ids, n_ids); /* the prompt sets the detokenizer's context (a space before the next word) */
        if (moge_decoder_add(dec, ids, (int32_t)n_ids, &gp, on_token, &out[i], &id) != MOGE_OK) goto fail;
    }
    for (int32_t running = N_SEQ; running > 0;)
        if (moge_decoder_step(dec, &running) != MOGE_OK) goto fail;
    for (int i = 0; i < N_SEQ; i++) {
        moge_stats st;
        moge_decoder_seq_stats(dec, i, &st, NULL, NULL);
        printf("[%d] %s%.*s\n    (%d tokens, %.2f per target pass)\n", i, prompts[i], (int)out[i].len, out[i].text, st.n_generated,
               st.mean_accepted);
    }
    moge_decoder_stats ds;
    moge_decoder_get_stats(dec, &ds);
    printf("%lld tokens in %lld target passes, %.0f tokens/s together\n", (long long)ds.n_generated, (long long)ds.n_passes,
           ds.t_decode_s > 0 ? ds.n_generated / ds.t_decode_s : 0);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "batch: %s\n", moge_context_error(ctx));
out:
    for (int i = 0; i < N_SEQ; i++) moge_detok_stream_free(out[i].stream);
    moge_decoder_free(dec);
    moge_drafter_free(drafter);
    moge_context_free(ctx);
    moge_tokenizer_free(draft_tok);
    moge_tokenizer_free(tok);
    moge_model_free(draft);
    moge_model_free(target);
    return rc;
}
