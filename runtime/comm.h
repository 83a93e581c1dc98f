/*
 * comm.h — the expert exchange between ranks (docs/design.md §2: `comm`, one process or MPI).
 *
 * A moge_comm is a table of transport operations (ops) and the ranks' bookkeeping. The only
 * transport is MPI (runtime/comm_mpi.c, the one file that includes mpi.h); one process has no
 * comm at all (NULL), and every function here treats NULL or a job of one rank as "nothing to
 * exchange". So the library never references an MPI symbol unless the program calls
 * moge_comm_mpi_init.
 *
 * Protocol: rank 0 drives. Each call on rank 0 that changes what every rank must hold — a model
 * load or free, a layer view, a context new or free, a forward, a KV commit or truncate, a statistics
 * gather — first broadcasts a command (a fixed header, then its payload); the other ranks
 * wait for commands in moge_comm_serve and run the same call. Loads and context creation end with
 * an agreement (every rank's status gathered; the first failure's message broadcast), so a rank
 * that fails makes every rank fail with "rank R: ...". Ranks never broadcast but from rank 0.
 */
#ifndef MOGE_COMM_H
#define MOGE_COMM_H

#include <stdbool.h>
#include <stdint.h>
#include "moge.h"

typedef struct comm_ops {
    const char *name; /* "mpi" */
    /* Each returns 0, or non-zero after writing a message to err. */
    int (*bcast)(moge_comm *c, void *buf, int64_t bytes, int root, char *err, size_t n);
    /* From rank 0, non-blocking (it matches only itself: every rank sends or receives command
     * headers with it); a rank other than 0 waits sleeping (a follower between commands). */
    int (*bcast_idle)(moge_comm *c, void *buf, int64_t bytes, char *err, size_t n);
    /* recv: every rank's bytes[r] at displ[r]; this rank's own part is there already (in place). */
    int (*allgatherv)(moge_comm *c, void *recv, const int *bytes, const int *displ, char *err, size_t n);
    void (*finalize)(moge_comm *c);
} comm_ops;

struct moge_comm {
    int rank, size;
    const comm_ops *ops;
    void *impl;
    void **objects;   /* followers: models and contexts by id */
    int n_objects;
    int next_id;      /* rank 0: the id of the next model or context */
    bool following;   /* a follower inside moge_comm_serve (a load runs locally, no broadcast) */
};

enum {
    COMM_STOP = 1, COMM_MODEL_LOAD, COMM_MODEL_FREE, COMM_VIEW_NEW, COMM_CTX_NEW, COMM_CTX_FREE, COMM_FORWARD,
    COMM_COMMIT, COMM_TRUNCATE, COMM_RANK_STATS,
};

/* True on rank 0 of a job of more than one rank: the caller broadcasts what it does. */
static inline bool comm_leads(const moge_comm *c) { return c && c->size > 1 && c->rank == 0; }
/* True for a job of more than one rank. */
static inline bool comm_multi(const moge_comm *c) { return c && c->size > 1; }

/* Rank 0: broadcasts command `cmd` with header values h0..h3 and payload (bytes, may be 0). */
moge_status comm_command(moge_comm *c, int cmd, int64_t id, int64_t h0, int64_t h1, int64_t h2, int64_t h3, const void *payload,
                         int64_t bytes, char *err, size_t n);
/* Every rank: gathers each rank's status; when some failed, every rank gets the first failed
 * rank's message as "rank R: MESSAGE" in err and its status. msg: this rank's message. */
moge_status comm_agree(moge_comm *c, moge_status st, const char *msg, char *err, size_t n);
/* Rank 0: the id of a new model or context (sent in its command); followers store theirs under it. */
static inline int comm_new_id(moge_comm *c) { return c->next_id++; }

/* The experts rank `rank` of c holds: [*lo, *hi), whole groups. MOGE_ERR_ARG naming both counts
 * when the ranks do not divide the groups. */
moge_status comm_expert_range(const moge_comm *c, const void *model_config, int *lo, int *hi, char *err, size_t n);

/* Loads on every rank (rank 0 broadcasts the directory and parameters first) and agrees. */
moge_status comm_model_load(const char *dir, const moge_model_params *p, moge_model **out, char *err, size_t n);

/* Rank 0: makes a context on every rank (context.c's context_new there) and agrees. */
moge_status comm_context_new(moge_model *m, const moge_context_params *p, moge_context **out, char *err, size_t n);
/* Rank 0, in moge_forward after the batch was checked: sends it with its sequences' state. */
moge_status comm_forward_command(moge_context *ctx, const moge_batch *b);
/* int32 words of a context's forward command buffer (ctx->cmd_buf). */
int64_t comm_forward_buf_ints(int n_batch);
/* Every rank, in a MoE layer after computing its own experts' pairs into ctx->pair_out: sends them
 * and receives the others' so that ctx->pair_out holds every pair of the batch (n rows). */
moge_status comm_exchange_pairs(moge_context *ctx, const int32_t *experts, int n);

/* The process's resident memory in bytes (VmRSS), or 0 when unknown. */
int64_t comm_resident_bytes(void);
double comm_now(void);

#endif
