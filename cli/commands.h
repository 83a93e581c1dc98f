/* commands.h — the subcommands of the `moge` binary; each returns the process exit status. */
#ifndef MOGE_COMMANDS_H
#define MOGE_COMMANDS_H

int cmd_run(int argc, char **argv);      /* cli/cmd_run.c */
int cmd_tokenize(int argc, char **argv); /* cli/cmd_tokenize.c */
int cmd_info(int argc, char **argv);     /* cli/cmd_info.c */
int cmd_pull(int argc, char **argv);     /* cli/cmd_pull.c */
int cmd_chat(int argc, char **argv);     /* cli/cmd_chat.c */
int cmd_bench(int argc, char **argv);    /* cli/cmd_bench.c */
int cmd_quantize(int argc, char **argv); /* cli/cmd_quantize.c */
int cmd_eval(int argc, char **argv);     /* cli/cmd_eval.c */
int cmd_pad(int argc, char **argv);      /* cli/cmd_pad.c */
int cmd_simulate(int argc, char **argv); /* cli/cmd_simulate.c */
int cmd_list(int argc, char **argv);     /* cli/cmd_cache.c */
int cmd_rm(int argc, char **argv);       /* cli/cmd_cache.c */

#endif
