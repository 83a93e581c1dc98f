/* cli.h — small helpers shared by the `moge` subcommands: strict number parsing for flags. */
#ifndef MOGE_CLI_H
#define MOGE_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Parse a flag's value; on failure print "moge CMD: FLAG: ..." to stderr and return false. */
bool cli_int(const char *cmd, const char *flag, const char *s, long min, long max, long *out);
bool cli_float(const char *cmd, const char *flag, const char *s, double min, double max, double *out);
bool cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);
/* --tree-shape LIST: up to 16 numbers 1..16 separated by commas, e.g. "4,2,2,1,1" (children per
 * node at each depth) into shape[16]; *n their count. False after printing an error. */
bool cli_tree_shape(const char *cmd, const char *s, int32_t *shape, int32_t *n);
/* --quant VALUE: none, q8 or q4. */
bool cli_quant(const char *cmd, const char *s, int *out);
/* The value of flag argv[*i] (advancing *i), or NULL after printing an error when it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

#endif
