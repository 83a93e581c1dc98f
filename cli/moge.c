/*
 * moge.c — the `moge` command: dispatches to the subcommands in cli/cmd_*.c.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "moge.h"

static void usage(FILE *f) {
    fputs("usage: moge COMMAND [options]\n"
          "\n"
          "commands:\n"
          "  run        generate text from a prompt (moge run -m models/stories260K -p \"Once\")\n"
          "  chat       talk with a model in a REPL (moge chat; default: a committed demo model)\n"
          "  tokenize   print the token ids of a text, or decode ids\n"
          "  info       print a model's architecture and sizes\n"
          "  pull       download a model from a Hugging Face hub into the cache\n"
          "  list       the models in the download cache (size, revisions)\n"
          "  rm         remove a model from the download cache\n"
          "  bench      compare tokens/s of no speculation, chain and tree drafting on the same prompts\n"
          "  quantize   write a pre-quantized (q8/q4) copy of a model that loads with no quantization pass\n"
          "  eval       validation loss / perplexity on a text file, and MoE expert load\n"
          "  pad        write a wider, deeper stand-in of a model that computes the same function\n"
          "  simulate   model decode speed on Ascend NPUs (800I A2, 300I Duo): a model, not a measurement\n"
          "\n"
          "`moge COMMAND --help` shows a command's options; `moge --version` the version.\n",
          f);
}

/* Under mpirun the job's other ranks end by SIGTERM when one rank fails (mpirun names it): say so. */
static void on_term(int sig) {
    (void)sig;
    static const char msg[] = "moge: stopped by the MPI launcher: another rank of the job failed (mpirun names it)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(143);
}

static int dispatch(int argc, char **argv);

/* Started by mpirun (an expert-parallel job): rank 0 runs the command with the job as its
 * models' comm; every other rank follows it (moge_comm_serve) and exits with rank 0's status.
 * Started alone, nothing of MPI is touched. */
int main(int argc, char **argv) {
    if (!moge_comm_launched()) return dispatch(argc, argv);
    char err[1024];
    moge_comm *comm = NULL;
    if (moge_comm_mpi_init(&argc, &argv, &comm, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge: %s\n", err);
        return 1;
    }
    signal(SIGTERM, on_term);
    int rank = moge_comm_rank(comm), rc = 1;
    if (rank == 0) {
        cli_comm = comm;
        rc = dispatch(argc, argv);
        cli_comm = NULL;
    } else if (moge_comm_serve(comm, &rc, err, sizeof err) != MOGE_OK) {
        fprintf(stderr, "moge: %s\n", err);
        fflush(stderr);
        _exit(1); /* without MPI_Finalize: mpirun ends the job */
    }
    moge_comm_free(comm, rc);
    return rc;
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        char cpu[128], runs[256];
        moge_cpu_name(cpu, sizeof cpu);
        moge_cpu_kernels_list(runs, sizeof runs);
        printf("moge %s\ncpu kernels: %s (this processor runs: %s; %s)\n", moge_version(), moge_cpu_kernels_best(), runs, cpu);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "pull")) return cmd_pull(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "pad")) return cmd_pad(argc - 1, argv + 1);
    if (!strcmp(cmd, "simulate")) return cmd_simulate(argc - 1, argv + 1);
    if (!strcmp(cmd, "list") || !strcmp(cmd, "ls")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "rm")) return cmd_rm(argc - 1, argv + 1);
    fprintf(stderr, "moge: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
