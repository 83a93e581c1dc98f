/*
 * moge.c — the `moge` command: dispatches to the subcommands in examples/cmd_*.c.
 */
#include <stdio.h>
#include <string.h>

#include "examples/commands.h"
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
          "\n"
          "`moge COMMAND --help` shows a command's options; `moge --version` the version.\n",
          f);
}

int main(int argc, char **argv) {
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
    if (!strcmp(cmd, "list") || !strcmp(cmd, "ls")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "rm")) return cmd_rm(argc - 1, argv + 1);
    fprintf(stderr, "moge: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
