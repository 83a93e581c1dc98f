/*
 * comm_nompi.c — moge_comm_mpi_init in the libraries without MPI (libmoge.a, libmoge.so): it says
 * which library has it. libmoge-internal.a and libmoge-mpi.a take runtime/comm_mpi.c instead.
 */
#include "base/errors.h"

moge_status moge_comm_mpi_init(int *argc, char ***argv, moge_comm **out, char *err, size_t n) {
    (void)argc;
    (void)argv;
    if (out) *out = NULL;
    return set_err(err, n, MOGE_ERR_UNSUPPORTED,
                   "moge_comm_mpi_init: this library (libmoge.a / libmoge.so) is built without MPI: link libmoge-mpi.a and "
                   "`pkg-config --libs ompi-c` to run expert-parallel jobs");
}
