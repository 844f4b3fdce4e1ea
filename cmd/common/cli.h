/* The command-line conventions shed and shed-server share, so both behave alike: command
 * tables (names, aliases, summaries, options), a permuting option parser with our own
 * one-line errors and "did you mean", `help [CMD]` and `--help` generated from the tables,
 * and shell completion answered from the same tables (`PROG __complete WORD...`).
 *
 * What a user can rely on (docs/cli.md):
 * - Options anywhere after the program name: the program's global options before or after
 *   the command; a command's own options after its name, before or after its operands.
 *   "--" ends the options. Forms: --name=VALUE, --name VALUE, -x VALUE, -xVALUE, -abc.
 *   Long names match exactly (no abbreviations: a new option never changes what an old
 *   script meant); a near miss gets "did you mean".
 * - `--format json` is another spelling of `--json` wherever --json is accepted.
 * - Usage errors: one line on stderr, "PROG CMD: message (...)", exit status 2.
 * - `help [CMD [SUB]]`, `CMD --help`: the help on stdout, exit 0.
 *
 * A command's handler gets a struct cli_call: the options in command-line order (globals
 * included, whatever their position) and the operands. */
#ifndef SHED_CMD_CLI_H
#define SHED_CMD_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* Exit statuses of both programs (exec passes its command's through). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2 };

/* Option ids the layer handles itself; programs number theirs from CLI_FIRST_OPTION_ID. */
enum { CLI_OPT_HELP = 1, CLI_OPT_VERSION, CLI_FIRST_OPTION_ID = 16 };

struct cli_option {
    const char *name;       /* long name without "--"; NULL (with short_name 0) ends a table */
    int short_name;         /* a letter, or 0 */
    const char *value_name; /* NULL: a flag; else it takes a value, shown as --name=VALUE */
    const char *help;       /* one line for the help; NULL hides the option from it */
    int id;                 /* what the handler sees; one id may appear in many tables */
};

struct cli_call;
typedef int (*cli_run_fn)(const struct cli_call *call);

struct cli_command {
    const char *name;    /* NULL ends a table */
    const char *aliases; /* other names, space separated ("ls ps"), or NULL */
    const char *usage;   /* what follows the command's words, e.g. "[OPTIONS] NAME..." */
    const char *summary; /* one line, for the command list */
    const char *help;    /* more text for `help CMD` (may be NULL), ends with a newline */
    const struct cli_option *options;      /* everything it accepts, globals included */
    const struct cli_command *subcommands; /* a group: one of these names follows */
    const char *default_subcommand;        /* a group run without a subcommand, or NULL */
    cli_run_fn run;                        /* a leaf's handler */
    int min_operands, max_operands;        /* max -1: any number */
    /* > 0: once that many operands are read, the rest of the line is operands too (the
     * command of `exec NAME CMD...`); options may still stand between them and a "--". */
    int passthrough_after;
    int complete_kind; /* what its operands are, for completion (the program's numbering) */
};

/* One option as given: its id, its value (NULL for a flag), its table entry. */
struct cli_value {
    int id;
    const char *value;
    const struct cli_option *option;
};

struct cli_program {
    const char *name;                   /* "shed" */
    const char *summary;                /* one line under the usage */
    const struct cli_option *options;   /* accepted before the command (the globals) */
    const struct cli_command *commands; /* "help" and "__complete" are built in */
    const char *footer;                 /* the end of `PROG help`: exit statuses, files */
    const char *version;                /* printed by --version */
    /* Runs after parsing, before the handler (NULL: none): 0 goes on, else the status. */
    int (*before_run)(struct cli_call *call);
    /* Completion of operands and option values: prints candidates (one per line) of kind
     * (a command's complete_kind) beginning with prefix. call holds what was parsed so far
     * (e.g. -s SERVER). NULL: no operand completion. */
    void (*complete)(const struct cli_call *call, int kind, const char *prefix);
};

struct cli_call {
    const struct cli_program *program;
    const struct cli_command *command; /* the leaf being run */
    char path[96];                     /* its words: "images prune" */
    struct cli_value *options;         /* in command-line order */
    size_t option_count;
    char **operands;
    size_t operand_count;
    void *ctx; /* the program's, from cli_main (before_run may set it) */
};

/* Parses argv, handles help/--help/--version/__complete, runs the command. Returns the
 * exit status. */
int cli_main(const struct cli_program *program, int argc, char **argv, void *ctx);

/* The value of the last occurrence of option id (NULL when absent or a flag). */
const char *cli_value(const struct cli_call *call, int id);
/* Whether option id was given. */
bool cli_flag(const struct cli_call *call, int id);

/* A usage error of the running command: "PROG PATH: message (see 'PROG PATH --help')" as one
 * line on stderr. Returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
