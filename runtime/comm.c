/*
 * comm.c — expert parallelism across processes, independent of the transport (comm.h): rank 0's
 * commands, the followers' loop (moge_comm_serve), agreement on loads, the expert-output exchange
 * of a forward, and the ranks' statistics. The MPI transport is runtime/comm_mpi.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/comm.h"
#include "runtime/context.h"
#include "base/errors.h"
#include "runtime/moe.h"

#define HDR 8 /* int64 words of a command header: cmd, id, h0..h3, payload bytes, spare */

double comm_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int64_t comm_resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    int ok = f && fscanf(f, "%lld %lld", &size, &resident) == 2;
    if (f) fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? (int64_t)resident * page : 0;
}

bool moge_comm_launched(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

int32_t moge_comm_rank(const moge_comm *c) { return c ? c->rank : 0; }
int32_t moge_comm_size(const moge_comm *c) { return c ? c->size : 1; }

moge_status comm_command(moge_comm *c, int cmd, int64_t id, int64_t h0, int64_t h1, int64_t h2, int64_t h3, const void *payload,
                         int64_t bytes, char *err, size_t n) {
    char e[256] = "";
    int64_t h[HDR] = {cmd, id, h0, h1, h2, h3, bytes, 0};
    if (c->ops->bcast_idle(c, h, sizeof h, e, sizeof e) || (bytes > 0 && c->ops->bcast(c, (void *)payload, bytes, 0, e, sizeof e)))
        return set_err(err, n, MOGE_ERR_IO, "rank 0: sending a step to the other ranks: %s", e);
    return MOGE_OK;
}

moge_status comm_agree(moge_comm *c, moge_status st, const char *msg, char *err, size_t n) {
    if (!comm_multi(c)) return st;
    char e[256] = "", text[512] = "";
    if (msg) snprintf(text, sizeof text, "%s", msg);
    int *all = calloc((size_t)c->size * 3, sizeof(int));
    if (!all) return set_err(err, n, MOGE_ERR_NOMEM, "rank %d: out of memory", c->rank);
    int *bytes = all + c->size, *displ = bytes + c->size;
    for (int r = 0; r < c->size; r++) bytes[r] = (int)sizeof(int), displ[r] = r * (int)sizeof(int);
    all[c->rank] = (int)st;
    int failed = -1;
    if (c->ops->allgatherv(c, all, bytes, displ, e, sizeof e) == 0) {
        for (int r = 0; r < c->size && failed < 0; r++)
            if (all[r] != MOGE_OK) failed = r;
        if (failed >= 0 && c->ops->bcast(c, text, sizeof text, failed, e, sizeof e) != 0) failed = -2;
    } else failed = -2;
    moge_status out = failed >= 0 ? (moge_status)all[failed] : MOGE_OK;
    free(all);
    if (failed == -2) return set_err(err, n, MOGE_ERR_IO, "rank %d: agreeing with the other ranks: %s", c->rank, e);
    if (failed >= 0) {
        text[sizeof text - 1] = 0;
        return set_err(err, n, out, "rank %d: %s", failed, text);
    }
    return MOGE_OK;
}

moge_status comm_expert_range(const moge_comm *c, const void *config, int *lo, int *hi, char *err, size_t n) {
    const model_config *cfg = config;
    *lo = 0;
    *hi = cfg->n_expert;
    if (!comm_multi(c)) return MOGE_OK;
    if (cfg->n_group % c->size != 0)
        return set_err(err, n, MOGE_ERR_ARG,
                       "%d ranks cannot share the %d expert groups (each rank holds whole groups): the number of ranks must divide %d",
                       c->size, cfg->n_group, cfg->n_group);
    int per = cfg->n_expert / c->size;
    *lo = c->rank * per;
    *hi = *lo + per;
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* objects: models and contexts by id (followers)                                            */

static moge_status store(moge_comm *c, int id, void *o, char *err, size_t n) {
    if (id < 0) return set_err(err, n, MOGE_ERR_ARG, "rank %d: bad object id %d from rank 0", c->rank, id);
    if (id >= c->n_objects) {
        int cap = id + 16;
        void **objs = realloc(c->objects, (size_t)cap * sizeof *objs);
        if (!objs) return set_err(err, n, MOGE_ERR_NOMEM, "rank %d: out of memory", c->rank);
        memset(objs + c->n_objects, 0, (size_t)(cap - c->n_objects) * sizeof *objs);
        c->objects = objs;
        c->n_objects = cap;
    }
    c->objects[id] = o;
    return MOGE_OK;
}

static void *object(moge_comm *c, int64_t id) { return id >= 0 && id < c->n_objects ? c->objects[id] : NULL; }

/* ------------------------------------------------------------------------------------------ */
/* model load                                                                                 */

typedef struct {
    int32_t backend, n_threads, routing, n_group, topk_group, quant;
    char kernels[64];
    char dir[4096];
} load_msg;

/* This rank's load (p->comm set, local), then the agreement; the model keeps id on success. */
static moge_status load_agreed(const char *dir, moge_model_params p, int id, moge_model **out, char *err, size_t n) {
    moge_comm *c = p.comm;
    bool was = c->following;
    c->following = true; /* moge_model_load loads here only */
    p.comm = c;
    moge_status st = moge_model_load(dir, &p, out, err, n);
    c->following = was;
    st = comm_agree(c, st, err, err, n);
    if (st != MOGE_OK) {
        if (*out) (*out)->comm = NULL; /* freed here alone */
        moge_model_free(*out);
        *out = NULL;
        return st;
    }
    (*out)->comm_id = id;
    return MOGE_OK;
}

moge_status comm_model_load(const char *dir, const moge_model_params *p, moge_model **out, char *err, size_t n) {
    moge_comm *c = p->comm;
    *out = NULL;
    if (c->rank != 0)
        return set_err(err, n, MOGE_ERR_ARG, "moge_model_load: rank %d follows rank 0 (moge_comm_serve); only rank 0 loads models", c->rank);
    load_msg m = {.backend = p->backend, .n_threads = p->n_threads, .routing = p->routing, .n_group = p->n_group,
                  .topk_group = p->topk_group, .quant = p->quant};
    if (p->kernels) snprintf(m.kernels, sizeof m.kernels, "%s", p->kernels);
    if (snprintf(m.dir, sizeof m.dir, "%s", dir) >= (int)sizeof m.dir)
        return set_err(err, n, MOGE_ERR_ARG, "moge_model_load: the path %s is too long", dir);
    int id = comm_new_id(c);
    moge_status st = comm_command(c, COMM_MODEL_LOAD, id, 0, 0, 0, 0, &m, sizeof m, err, n);
    if (st != MOGE_OK) return st;
    return load_agreed(dir, *p, id, out, err, n);
}

static moge_status serve_load(moge_comm *c, int id, const load_msg *m, char *err, size_t n) {
    moge_model_params p = moge_model_default_params();
    p.backend = (moge_backend)m->backend;
    p.n_threads = m->n_threads;
    p.routing = (moge_routing)m->routing;
    p.n_group = m->n_group;
    p.topk_group = m->topk_group;
    p.quant = (moge_quant)m->quant;
    p.kernels = m->kernels[0] ? m->kernels : NULL;
    p.comm = c;
    moge_model *model = NULL;
    if (load_agreed(m->dir, p, id, &model, err, n) != MOGE_OK) return MOGE_OK; /* rank 0 reports it */
    return store(c, id, model, err, n);
}

/* ------------------------------------------------------------------------------------------ */
/* contexts                                                                                   */

moge_status comm_context_new(moge_model *m, const moge_context_params *p, moge_context **out, char *err, size_t n) {
    moge_comm *c = m->comm;
    int id = comm_new_id(c);
    moge_context_params q = p ? *p : moge_context_default_params();
    moge_status st = comm_command(c, COMM_CTX_NEW, id, m->comm_id, 0, 0, 0, &q, sizeof q, err, n);
    if (st != MOGE_OK) return st;
    st = context_new(m, &q, out, err, n);
    st = comm_agree(c, st, err, err, n);
    if (st != MOGE_OK) {
        moge_context_free(*out); /* its comm is not set yet: freed here alone */
        *out = NULL;
        return st;
    }
    (*out)->comm = c;
    (*out)->comm_id = id;
    return MOGE_OK;
}

static moge_status serve_context(moge_comm *c, int id, int64_t model_id, const moge_context_params *q, char *err, size_t n) {
    moge_model *m = object(c, model_id);
    moge_context *ctx = NULL;
    moge_context_params p = *q;
    p.abort_cb = NULL; /* rank 0's callback (an address there); a follower's forwards follow rank 0's */
    p.abort_cb_user = NULL;
    moge_status st = m ? context_new(m, &p, &ctx, err, n) : set_err(err, n, MOGE_ERR_ARG, "no model %lld here", (long long)model_id);
    if (comm_agree(c, st, err, err, n) != MOGE_OK) {
        moge_context_free(ctx);
        return MOGE_OK; /* rank 0 reports it */
    }
    ctx->comm = c;
    ctx->comm_id = id;
    return store(c, id, ctx, err, n);
}

/* ------------------------------------------------------------------------------------------ */
/* forward: the batch and each of its sequences' state                                         */

enum { F_POS = 1, F_PARENT = 2, F_SEQ = 4, F_LAST_ONLY = 8, F_EXTEND = 16 };

int64_t comm_forward_buf_ints(int n_batch) { return 7 * (int64_t)n_batch; }

moge_status comm_forward_command(moge_context *ctx, const moge_batch *b) {
    int n = b->n, flags = (b->pos ? F_POS : 0) | (b->parent ? F_PARENT : 0) | (b->seq ? F_SEQ : 0) |
                          (b->logits_last_only ? F_LAST_ONLY : 0) | (b->extend ? F_EXTEND : 0);
    int32_t *w = ctx->cmd_buf;
    memcpy(w, b->tokens, (size_t)n * sizeof *w), w += n;
    if (b->pos) memcpy(w, b->pos, (size_t)n * sizeof *w), w += n;
    if (b->parent) memcpy(w, b->parent, (size_t)n * sizeof *w), w += n;
    if (b->seq) memcpy(w, b->seq, (size_t)n * sizeof *w), w += n;
    for (int r = 0; r < ctx->n_runs; r++) { /* what the other ranks must hold for these sequences */
        const kv_seq *sq = &ctx->seq[ctx->runs[r].seq];
        *w++ = ctx->runs[r].seq;
        *w++ = sq->n_past;
        *w++ = sq->n_last;
    }
    int64_t bytes = (int64_t)(w - ctx->cmd_buf) * (int64_t)sizeof *w;
    ctx->rstat.bytes_sent += (bytes + HDR * 8) * (ctx->n_ranks - 1);
    return comm_command(ctx->comm, COMM_FORWARD, ctx->comm_id, n, flags, ctx->n_runs, 0, ctx->cmd_buf, bytes, ctx->err, sizeof ctx->err);
}

static moge_status serve_forward(moge_comm *c, moge_context *ctx, const int64_t *h, const int32_t *w, char *err, size_t n) {
    int rows = (int)h[2], flags = (int)h[3], n_runs = (int)h[4];
    if (rows < 1 || rows > ctx->n_batch) return set_err(err, n, MOGE_ERR_ARG, "rank %d: a forward of %d rows from rank 0", c->rank, rows);
    moge_batch b = {.n = rows, .tokens = w, .logits_last_only = flags & F_LAST_ONLY, .extend = flags & F_EXTEND};
    w += rows;
    if (flags & F_POS) b.pos = w, w += rows;
    if (flags & F_PARENT) b.parent = w, w += rows;
    if (flags & F_SEQ) b.seq = w, w += rows;
    for (int r = 0; r < n_runs; r++, w += 3) {
        if (w[0] < 0 || w[0] >= ctx->n_seq || ctx->seq[w[0]].n_past != w[1])
            return set_err(err, n, MOGE_ERR_ARG, "rank %d: sequence %d holds %d tokens here but %d on rank 0 (the ranks diverged)", c->rank,
                           w[0], w[0] >= 0 && w[0] < ctx->n_seq ? ctx->seq[w[0]].n_past : -1, w[1]);
        ctx->seq[w[0]].n_last = w[2]; /* rank 0's module above may drop uncommitted rows directly */
    }
    const float *logits;
    moge_status st = moge_forward(ctx, &b, &logits);
    if (st != MOGE_OK) return set_err(err, n, st, "rank %d: forward: %s", c->rank, ctx->err);
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* the exchange of expert outputs                                                             */

moge_status comm_exchange_pairs(moge_context *ctx, const int32_t *experts, int n) {
    const model_config *cfg = &ctx->model->cfg;
    int R = ctx->n_ranks, me = ctx->rank, K = cfg->n_expert_used, E = cfg->n_embd, per = cfg->n_expert / R;
    int *bytes = ctx->xchg_bytes, *displ = ctx->xchg_displ, *at = ctx->xchg_at;
    double t0 = comm_now();
    memset(bytes, 0, (size_t)R * sizeof *bytes);
    for (int p = 0; p < n * K; p++) bytes[experts[p] / per] += E * (int)sizeof(float);
    for (int r = 0, off = 0; r < R; r++) displ[r] = off, off += bytes[r];
    float *dst = ctx->xchg + displ[me] / (int)sizeof(float);
    for (int p = 0; p < n * K; p++) /* this rank's pairs, in pair order */
        if (experts[p] / per == me) memcpy(dst, ctx->pair_out + (int64_t)p * E, (size_t)E * sizeof(float)), dst += E;
    char e[256] = "";
    if (ctx->comm->ops->allgatherv(ctx->comm, ctx->xchg, bytes, displ, e, sizeof e) != 0)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_IO, "rank %d: exchanging expert outputs: %s", me, e);
    for (int r = 0; r < R; r++) at[r] = displ[r] / (int)sizeof(float);
    for (int p = 0; p < n * K; p++) { /* every other rank's pairs, where one process has them */
        int r = experts[p] / per;
        if (r == me) continue;
        memcpy(ctx->pair_out + (int64_t)p * E, ctx->xchg + at[r], (size_t)E * sizeof(float));
        at[r] += E;
    }
    int lo = bytes[0], hi = bytes[0];
    for (int r = 1; r < R; r++) lo = bytes[r] < lo ? bytes[r] : lo, hi = bytes[r] > hi ? bytes[r] : hi;
    ctx->rstat.spread_pairs += (hi - lo) / (E * (int64_t)sizeof(float));
    ctx->rstat.rows += n;
    ctx->rstat.pairs += bytes[me] / (E * (int64_t)sizeof(float));
    ctx->rstat.bytes_sent += (int64_t)bytes[me] * (R - 1);
    ctx->rstat.comm_seconds += comm_now() - t0;
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* statistics                                                                                 */

int32_t moge_context_n_ranks(const moge_context *ctx) { return ctx ? ctx->n_ranks : 0; }

static void own_stats(const moge_context *ctx, moge_rank_stats *s) {
    *s = ctx->rstat;
    s->rank = ctx->rank;
    s->expert_bytes = model_expert_bytes(ctx->model->view_of ? ctx->model->view_of : ctx->model);
    s->resident_bytes = comm_resident_bytes();
}

static moge_status gather_stats(moge_context *ctx, moge_rank_stats *out) {
    moge_comm *c = ctx->comm;
    int *bytes = ctx->xchg_bytes, *displ = ctx->xchg_displ;
    for (int r = 0; r < c->size; r++) bytes[r] = (int)sizeof *out, displ[r] = r * (int)sizeof *out;
    own_stats(ctx, &out[c->rank]);
    char e[256] = "";
    if (c->ops->allgatherv(c, out, bytes, displ, e, sizeof e) != 0)
        return set_err(ctx->err, sizeof ctx->err, MOGE_ERR_IO, "rank %d: gathering the ranks' statistics: %s", c->rank, e);
    return MOGE_OK;
}

moge_status moge_context_rank_stats(moge_context *ctx, moge_rank_stats *out) {
    if (!ctx || !out) return MOGE_ERR_ARG;
    if (!comm_multi(ctx->comm)) {
        own_stats(ctx, out);
        return MOGE_OK;
    }
    moge_status st = comm_command(ctx->comm, COMM_RANK_STATS, ctx->comm_id, 0, 0, 0, 0, NULL, 0, ctx->err, sizeof ctx->err);
    return st == MOGE_OK ? gather_stats(ctx, out) : st;
}

/* ------------------------------------------------------------------------------------------ */
/* the followers' loop                                                                        */

moge_status moge_comm_serve(moge_comm *c, int *exit_status, char *err, size_t n) {
    if (exit_status) *exit_status = 1;
    if (!c || c->rank == 0) return set_err(err, n, MOGE_ERR_ARG, "moge_comm_serve: only ranks other than 0 follow");
    c->following = true;
    char *buf = NULL;
    int64_t cap = 0;
    moge_status st = MOGE_OK;
    for (;;) {
        int64_t h[HDR];
        char e[256] = "";
        if (c->ops->bcast_idle(c, h, sizeof h, e, sizeof e) != 0) {
            st = set_err(err, n, MOGE_ERR_IO, "rank %d: waiting for rank 0: %s", c->rank, e);
            break;
        }
        if (h[6] > cap) {
            char *nb = realloc(buf, (size_t)h[6]);
            if (!nb) {
                st = set_err(err, n, MOGE_ERR_NOMEM, "rank %d: out of memory (%lld bytes of a step)", c->rank, (long long)h[6]);
                break;
            }
            buf = nb;
            cap = h[6];
        }
        if (h[6] > 0 && c->ops->bcast(c, buf, h[6], 0, e, sizeof e) != 0) {
            st = set_err(err, n, MOGE_ERR_IO, "rank %d: receiving a step from rank 0: %s", c->rank, e);
            break;
        }
        void *o = object(c, h[1]);
        int cmd = (int)h[0];
        bool needs = cmd == COMM_MODEL_FREE || cmd == COMM_CTX_FREE || cmd == COMM_FORWARD || cmd == COMM_COMMIT ||
                     cmd == COMM_TRUNCATE || cmd == COMM_RANK_STATS;
        if (needs && !o) {
            st = set_err(err, n, MOGE_ERR_ARG, "rank %d: step %d names object %lld, which this rank does not hold", c->rank, cmd, (long long)h[1]);
            break;
        }
        switch (cmd) {
        case COMM_STOP:
            if (exit_status) *exit_status = (int)h[2];
            free(buf);
            c->following = false;
            return MOGE_OK;
        case COMM_MODEL_LOAD:
            if (h[6] != (int64_t)sizeof(load_msg)) st = set_err(err, n, MOGE_ERR_FORMAT, "rank %d: a bad load step", c->rank);
            else st = serve_load(c, (int)h[1], (const load_msg *)buf, err, n);
            break;
        case COMM_VIEW_NEW: {
            moge_model *m = object(c, h[2]), *v = NULL;
            if (!m) st = set_err(err, n, MOGE_ERR_ARG, "rank %d: no model %lld for a layer view", c->rank, (long long)h[2]);
            else if ((st = model_new_layer_view(m, (int)h[3], &v, err, n)) == MOGE_OK) {
                v->comm_id = (int)h[1];
                st = store(c, (int)h[1], v, err, n);
            }
            break;
        }
        case COMM_MODEL_FREE:
            moge_model_free(o);
            c->objects[h[1]] = NULL;
            break;
        case COMM_CTX_NEW:
            if (h[6] != (int64_t)sizeof(moge_context_params)) st = set_err(err, n, MOGE_ERR_FORMAT, "rank %d: a bad context step", c->rank);
            else st = serve_context(c, (int)h[1], h[2], (const moge_context_params *)buf, err, n);
            break;
        case COMM_CTX_FREE:
            moge_context_free(o);
            c->objects[h[1]] = NULL;
            break;
        case COMM_FORWARD:
            st = serve_forward(c, o, h, (const int32_t *)buf, err, n);
            break;
        case COMM_COMMIT:
            st = moge_seq_kv_commit(o, (int32_t)h[2], h[4] ? (const int32_t *)buf : NULL, (int32_t)h[3]);
            if (st != MOGE_OK) st = set_err(err, n, st, "rank %d: commit: %s", c->rank, moge_context_error(o));
            break;
        case COMM_TRUNCATE:
            st = moge_seq_kv_truncate(o, (int32_t)h[2], (int32_t)h[3]);
            if (st != MOGE_OK) st = set_err(err, n, st, "rank %d: truncate: %s", c->rank, moge_context_error(o));
            break;
        case COMM_RANK_STATS: {
            moge_context *ctx = o;
            moge_rank_stats *all = calloc((size_t)c->size, sizeof *all);
            st = all ? gather_stats(ctx, all) : set_err(err, n, MOGE_ERR_NOMEM, "rank %d: out of memory", c->rank);
            if (st != MOGE_OK && all) set_err(err, n, st, "%s", ctx->err);
            free(all);
            break;
        }
        default:
            st = set_err(err, n, MOGE_ERR_FORMAT, "rank %d: unknown step %d from rank 0", c->rank, cmd);
        }
        if (st != MOGE_OK) break;
    }
    free(buf);
    c->following = false;
    return st;
}

void moge_comm_free(moge_comm *c, int exit_status) {
    if (!c) return;
    if (comm_leads(c)) comm_command(c, COMM_STOP, -1, exit_status, 0, 0, 0, NULL, 0, NULL, 0);
    free(c->objects);
    if (c->ops && c->ops->finalize) c->ops->finalize(c);
    free(c);
}
