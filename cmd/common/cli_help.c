/* The help texts of both programs, generated from their command tables (cli.h): the
 * program's (commands with aliases, global options, footer) and each command's (usage,
 * summary, help text, options or subcommands). */
#include <stdio.h>
#include <string.h>

#include "cli_private.h"
#include "cmd/common/cli.h"

#define HELP_COLUMN_MAX 30 /* an option wider than this gets its help on the next line */
#define HELP_WIDTH 79

static void format_option(const struct cli_option *option, char *out, size_t len)
{
    char shortname[8] = "    ";
    if (option->short_name != 0)
        snprintf(shortname, sizeof shortname, "-%c, ", option->short_name);
    if (option->value_name != NULL)
        snprintf(out, len, "%s--%s=%s", shortname, option->name, option->value_name);
    else
        snprintf(out, len, "%s--%s", shortname, option->name);
}

/* "  LEFT  help text", the help wrapped at HELP_WIDTH columns under itself. */
static void print_option_line(FILE *out, const char *left, const char *help, int width)
{
    int indent = 2 + width + 2;
    if ((int)strlen(left) > width)
        fprintf(out, "  %s\n%*s", left, indent, "");
    else
        fprintf(out, "  %-*s  ", width, left);
    int column = indent;
    for (const char *word = help; *word != '\0';) {
        size_t len = strcspn(word, " ");
        if (column > indent && column + 1 + (int)len > HELP_WIDTH) {
            fprintf(out, "\n%*s", indent, "");
            column = indent;
        } else if (column > indent) {
            fputc(' ', out);
            column++;
        }
        fprintf(out, "%.*s", (int)len, word);
        column += (int)len;
        word += len;
        word += strspn(word, " ");
    }
    fputc('\n', out);
}

static void print_options(FILE *out, const struct cli_option *table, bool with_version)
{
    int width = (int)strlen("-h, --help");
    char left[128];
    for (const struct cli_option *o = table; o != NULL && !option_table_end(o); o++) {
        if (o->help == NULL)
            continue;
        format_option(o, left, sizeof left);
        if ((int)strlen(left) > width && strlen(left) <= HELP_COLUMN_MAX)
            width = (int)strlen(left);
    }
    for (const struct cli_option *o = table; o != NULL && !option_table_end(o); o++) {
        if (o->help == NULL)
            continue;
        format_option(o, left, sizeof left);
        print_option_line(out, left, o->help, width);
    }
    print_option_line(out, "-h, --help", "show this help", width);
    if (with_version)
        print_option_line(out, "    --version", "show the version", width);
}

static void command_names(const struct cli_command *command, char *out, size_t len)
{
    snprintf(out, len, "%s", command->name);
    size_t used = strlen(out);
    for (const char *alias = command->aliases; alias != NULL && *alias != '\0';) {
        size_t alias_len = strcspn(alias, " ");
        snprintf(out + used, len - used, ", %.*s", (int)alias_len, alias);
        used = strlen(out);
        alias += alias_len;
        alias += strspn(alias, " ");
    }
}

static void print_commands(FILE *out, const struct cli_command *table, bool with_help)
{
    int width = 4;
    char names[128];
    for (const struct cli_command *c = table; c != NULL && c->name != NULL; c++) {
        command_names(c, names, sizeof names);
        if (c->summary != NULL && (int)strlen(names) > width)
            width = (int)strlen(names);
    }
    for (const struct cli_command *c = table; c != NULL && c->name != NULL; c++) {
        if (c->summary == NULL)
            continue;
        command_names(c, names, sizeof names);
        fprintf(out, "  %-*s  %s\n", width, names, c->summary);
    }
    if (with_help)
        fprintf(out, "  %-*s  %s\n", width, "help", "Show the help of a command.");
}

static void print_program_help(const struct cli_program *program, FILE *out)
{
    fprintf(out, "Usage: %s [OPTIONS] COMMAND [ARGS...]\n\n%s\n\nCommands:\n", program->name,
            program->summary);
    print_commands(out, program->commands, true);
    fprintf(out, "\nGlobal options (before or after the command):\n");
    print_options(out, program->options, program->version != NULL);
    if (program->footer != NULL)
        fprintf(out, "\n%s", program->footer);
    fprintf(out, "\nRun '%s help COMMAND' for a command's options.\n", program->name);
}

void cli_print_help_of(const struct cli_program *program, const char *path,
                       const struct cli_command *command, FILE *out)
{
    if (command == NULL) {
        print_program_help(program, out);
        return;
    }
    if (command->subcommands != NULL)
        fprintf(out, "Usage: %s %s %s [OPTIONS]\n\n%s\n", program->name, path,
                command->default_subcommand != NULL ? "[COMMAND]" : "COMMAND", command->summary);
    else
        fprintf(out, "Usage: %s %s%s%s\n\n%s\n", program->name, path, command->usage ? " " : "",
                command->usage ? command->usage : "", command->summary);
    if (command->aliases != NULL) {
        char names[128];
        command_names(command, names, sizeof names);
        fprintf(out, "\nNames: %s\n", names);
    }
    if (command->help != NULL)
        fprintf(out, "\n%s", command->help);
    if (command->subcommands != NULL) {
        fprintf(out, "\nCommands:\n");
        print_commands(out, command->subcommands, false);
        if (command->default_subcommand != NULL)
            fprintf(out, "\nWithout COMMAND: %s %s %s.\n", program->name, path,
                    command->default_subcommand);
        fprintf(out, "\nRun '%s help %s COMMAND' for a command's options.\n", program->name, path);
        return;
    }
    fprintf(out, "\nOptions:\n");
    print_options(out, command->options, false);
}
