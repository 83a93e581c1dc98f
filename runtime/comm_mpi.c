/*
 * comm_mpi.c — the MPI transport of runtime/comm.h, the one file that includes mpi.h (Open MPI,
 * pkg-config ompi-c). A program that never calls moge_comm_mpi_init does not pull this object
 * from libmoge.a and so does not link libmpi.
 *
 * MPI errors return codes (MPI_ERRORS_RETURN on a duplicate of MPI_COMM_WORLD) that become
 * messages; a process that dies is seen by the launcher (mpirun), which ends the whole job.
 * Between commands a follower waits in MPI_Ibcast + MPI_Test, sleeping after a short spin, so
 * idle ranks leave the cores to rank 0's drafting and sampling (and to each other when the job
 * oversubscribes a machine).
 */
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/comm.h"
#include "base/errors.h"

typedef struct {
    MPI_Comm comm;
} mpi_impl;

static MPI_Comm world(moge_comm *c) { return ((mpi_impl *)c->impl)->comm; }

/* Writes "CALL: MPI's message" to err and returns 1 when rc is an error. */
static int check(int rc, const char *call, char *err, size_t n) {
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    if (err && n) snprintf(err, n, "%s: %s", call, msg);
    return 1;
}

static int mpi_bcast(moge_comm *c, void *buf, int64_t bytes, int root, char *err, size_t n) {
    for (int64_t off = 0; off < bytes;) { /* counts are int */
        int chunk = bytes - off > INT_MAX / 2 ? INT_MAX / 2 : (int)(bytes - off);
        if (check(MPI_Bcast((char *)buf + off, chunk, MPI_BYTE, root, world(c)), "MPI_Bcast", err, n)) return 1;
        off += chunk;
    }
    return 0;
}

static int mpi_bcast_idle(moge_comm *c, void *buf, int64_t bytes, char *err, size_t n) {
    MPI_Request req;
    if (bytes > INT_MAX) return set_err(err, n, MOGE_ERR_ARG, "a command header of %lld bytes", (long long)bytes), 1;
    if (check(MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, world(c), &req), "MPI_Ibcast", err, n)) return 1;
    if (c->rank == 0) return check(MPI_Wait(&req, MPI_STATUS_IGNORE), "MPI_Wait", err, n);
    long sleep_ns = 0;
    for (int spins = 0;; spins++) {
        int done = 0;
        if (check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test", err, n)) return 1;
        if (done) return 0;
        if (spins < 2000) { /* rank 0's next step usually follows at once */
            sched_yield();
            continue;
        }
        sleep_ns = sleep_ns ? (sleep_ns < 1000000 ? sleep_ns * 2 : 1000000) : 20000;
        nanosleep(&(struct timespec){.tv_nsec = sleep_ns}, NULL);
    }
}

static int mpi_allgatherv(moge_comm *c, void *recv, const int *bytes, const int *displ, char *err, size_t n) {
    return check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, bytes, displ, MPI_BYTE, world(c)), "MPI_Allgatherv", err, n);
}

static void mpi_finalize(moge_comm *c) {
    mpi_impl *m = c->impl;
    if (m) MPI_Comm_free(&m->comm);
    free(m);
    c->impl = NULL;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

static const comm_ops mpi_ops = {
    .name = "mpi",
    .bcast = mpi_bcast,
    .bcast_idle = mpi_bcast_idle,
    .allgatherv = mpi_allgatherv,
    .finalize = mpi_finalize,
};

moge_status moge_comm_mpi_init(int *argc, char ***argv, moge_comm **out, char *err, size_t n) {
    if (!out) return set_err(err, n, MOGE_ERR_ARG, "moge_comm_mpi_init: out must not be NULL");
    *out = NULL;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (inited) return set_err(err, n, MOGE_ERR_ARG, "moge_comm_mpi_init: MPI is initialized already");
    char e[MPI_MAX_ERROR_STRING + 32] = "";
    if (check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", e, sizeof e))
        return set_err(err, n, MOGE_ERR_IO, "%s", e);
    moge_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        MPI_Finalize();
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory");
    }
    c->ops = &mpi_ops;
    c->impl = m;
    if (check(MPI_Comm_dup(MPI_COMM_WORLD, &m->comm), "MPI_Comm_dup", e, sizeof e) ||
        check(MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", e, sizeof e) ||
        check(MPI_Comm_rank(m->comm, &c->rank), "MPI_Comm_rank", e, sizeof e) ||
        check(MPI_Comm_size(m->comm, &c->size), "MPI_Comm_size", e, sizeof e)) {
        free(m);
        free(c);
        MPI_Finalize();
        return set_err(err, n, MOGE_ERR_IO, "%s", e);
    }
    *out = c;
    return MOGE_OK;
}
