/* The shared command-line layer: parsing, errors and completion from the command tables
 * (cli.h); the help texts are cli_help.c's. */
#include "cmd/common/cli.h"

#include "cli_private.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tables ------------------------------------------------------------------------------ */

/* Whether word is the command's name or one of its aliases. */
static bool command_is_named(const struct cli_command *command, const char *word)
{
    if (strcmp(command->name, word) == 0)
        return true;
    size_t len = strlen(word);
    for (const char *alias = command->aliases; alias != NULL && *alias != '\0';) {
        size_t alias_len = strcspn(alias, " ");
        if (alias_len == len && strncmp(alias, word, len) == 0)
            return true;
        alias += alias_len;
        alias += strspn(alias, " ");
    }
    return false;
}

static const struct cli_command *find_command(const struct cli_command *table, const char *word)
{
    for (const struct cli_command *command = table; command != NULL && command->name != NULL;
         command++)
        if (command_is_named(command, word))
            return command;
    return NULL;
}

static const struct cli_option *find_long(const struct cli_option *table, const char *name,
                                          size_t len)
{
    for (const struct cli_option *option = table; option != NULL && !option_table_end(option);
         option++)
        if (option->name != NULL && strlen(option->name) == len &&
            strncmp(option->name, name, len) == 0)
            return option;
    return NULL;
}

static const struct cli_option *find_short(const struct cli_option *table, int letter)
{
    for (const struct cli_option *option = table; option != NULL && !option_table_end(option);
         option++)
        if (option->short_name == letter)
            return option;
    return NULL;
}

static bool table_has_id(const struct cli_option *table, int id)
{
    for (const struct cli_option *option = table; option != NULL && !option_table_end(option);
         option++)
        if (option->id == id)
            return true;
    return false;
}

/* ---- did you mean ------------------------------------------------------------------------ */

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), bounded:
 * words longer than 64 bytes are never close to anything. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64)
        return SIZE_MAX;
    size_t d[65][65];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

/* The closest of the candidates (NULL-terminated) to word by edit distance, or NULL when
 * none is close enough to be what was meant. */
static const char *cli_closest(const char *word, const char *const *candidates)
{
    size_t len = strlen(word);
    /* One typo in a short word, two in a longer one; a prefix counts as one. */
    size_t allowed = len >= 4 ? 2 : 1;
    const char *best = NULL;
    size_t best_distance = SIZE_MAX;
    for (const char *const *candidate = candidates; *candidate != NULL; candidate++) {
        size_t distance = edit_distance(word, *candidate);
        if (len >= 2 && strncmp(*candidate, word, len) == 0 && distance > 1)
            distance = 1;
        if (distance < best_distance && distance <= allowed && distance < strlen(*candidate)) {
            best = *candidate;
            best_distance = distance;
        }
    }
    return best;
}

/* The names and aliases of a command table, for cli_closest (the words point into a
 * buffer of the caller: aliases are split in place). */
struct word_list {
    const char *words[128];
    size_t count;
    char buffer[2048];
    size_t used;
};

static void word_list_add(struct word_list *list, const char *word, size_t len)
{
    if (list->count + 1 >= sizeof list->words / sizeof list->words[0] ||
        list->used + len + 1 > sizeof list->buffer)
        return;
    char *copy = list->buffer + list->used;
    memcpy(copy, word, len);
    copy[len] = '\0';
    list->used += len + 1;
    list->words[list->count++] = copy;
    list->words[list->count] = NULL;
}

static void word_list_add_commands(struct word_list *list, const struct cli_command *table)
{
    for (const struct cli_command *command = table; command != NULL && command->name != NULL;
         command++) {
        if (command->summary == NULL)
            continue; /* hidden */
        word_list_add(list, command->name, strlen(command->name));
        for (const char *alias = command->aliases; alias != NULL && *alias != '\0';) {
            size_t alias_len = strcspn(alias, " ");
            word_list_add(list, alias, alias_len);
            alias += alias_len;
            alias += strspn(alias, " ");
        }
    }
}

static void word_list_add_options(struct word_list *list, const struct cli_option *table)
{
    for (const struct cli_option *option = table; option != NULL && !option_table_end(option);
         option++)
        if (option->name != NULL && option->help != NULL)
            word_list_add(list, option->name, strlen(option->name));
}

/* ---- the parse state ------------------------------------------------------------------- */

struct parse {
    const struct cli_program *program;
    int argc;
    char **argv;
    struct cli_call call;
    /* The command the next words belong to: NULL (the program), a group or a leaf. */
    const struct cli_command *scope;
    const struct cli_command *group; /* the scope's parent, when it is a subcommand */
    const struct cli_command *leaf;
    bool help;                         /* --help seen, or the help command */
    bool help_command;                 /* `PROG help WORDS`: the words name the command */
    bool version;                      /* --version seen */
    bool options_ended;                /* after "--" */
    bool passthrough;                  /* the rest of the line is operands */
    bool quiet;                        /* completion: no messages */
    size_t option_capacity;            /* of call.options */
    const struct cli_option *awaiting; /* completion: the last word wants this option's value */
};

static int parse_error(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "PROG[ PATH]: message" + a hint, one line. */
static int parse_error(struct parse *p, const char *fmt, ...)
{
    if (p->quiet)
        return CLI_EXIT_USAGE;
    fprintf(stderr, "%s%s%s: ", p->program->name, p->call.path[0] ? " " : "", p->call.path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EXIT_USAGE;
}

static void hint_suffix(const struct parse *p, char *out, size_t len)
{
    snprintf(out, len, "see '%s%s%s --help'", p->program->name, p->call.path[0] ? " " : "",
             p->call.path);
}

static void path_append(struct parse *p, const char *word)
{
    size_t used = strlen(p->call.path);
    snprintf(p->call.path + used, sizeof p->call.path - used, "%s%s", used ? " " : "", word);
}

/* The option tables of the current scope: the program's, a leaf's, or every subcommand's
 * of a group (a group's options are its subcommands'). */
static const struct cli_option *scope_find_long(const struct parse *p, const char *name, size_t len)
{
    if (p->scope == NULL)
        return find_long(p->program->options, name, len);
    const struct cli_option *found = find_long(p->scope->options, name, len);
    for (const struct cli_command *sub = p->scope->subcommands;
         found == NULL && sub != NULL && sub->name != NULL; sub++)
        found = find_long(sub->options, name, len);
    return found;
}

static const struct cli_option *scope_find_short(const struct parse *p, int letter)
{
    if (p->scope == NULL)
        return find_short(p->program->options, letter);
    const struct cli_option *found = find_short(p->scope->options, letter);
    for (const struct cli_command *sub = p->scope->subcommands;
         found == NULL && sub != NULL && sub->name != NULL; sub++)
        found = find_short(sub->options, letter);
    return found;
}

static void scope_option_words(const struct parse *p, struct word_list *list)
{
    if (p->scope == NULL) {
        word_list_add_options(list, p->program->options);
        return;
    }
    word_list_add_options(list, p->scope->options);
    for (const struct cli_command *sub = p->scope->subcommands; sub != NULL && sub->name != NULL;
         sub++)
        word_list_add_options(list, sub->options);
}

static void add_option(struct parse *p, const struct cli_option *option, const char *value)
{
    if (p->call.option_count >= p->option_capacity)
        return; /* cannot happen: one option per byte of the line at most */
    p->call.options[p->call.option_count++] =
        (struct cli_value){.id = option->id, .value = value, .option = option};
}

/* An option this scope does not know: a global the command does not take, or a typo. */
static int unknown_option(struct parse *p, const char *word, const char *long_name, size_t len)
{
    char typed[80]; /* the option without its =VALUE */
    if (long_name != NULL)
        snprintf(typed, sizeof typed, "--%.*s", (int)(len < 70 ? len : 70), long_name);
    else
        snprintf(typed, sizeof typed, "%.2s", word);
    const struct cli_option *global = NULL;
    if (p->scope != NULL)
        global = long_name != NULL ? find_long(p->program->options, long_name, len)
                                   : find_short(p->program->options, typed[1]);
    if (global != NULL)
        return parse_error(p, "option '%s' does not apply here", typed);
    /* an option of a sibling: `system df --until` */
    for (const struct cli_command *s = p->group != NULL ? p->group->subcommands : NULL;
         s != NULL && s->name != NULL; s++)
        if ((long_name != NULL ? find_long(s->options, long_name, len)
                               : find_short(s->options, typed[1])) != NULL)
            return parse_error(p, "option '%s' only applies to '%s %s'", typed, p->group->name,
                               s->name);
    char hint[160];
    hint_suffix(p, hint, sizeof hint);
    if (long_name != NULL) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(len < 127 ? len : 127), long_name);
        struct word_list words = {.count = 0};
        scope_option_words(p, &words);
        word_list_add(&words, "help", 4);
        const char *near = cli_closest(name, words.words);
        if (near != NULL)
            return parse_error(p, "unknown option '--%s' (did you mean '--%s'?)", name, near);
        return parse_error(p, "unknown option '--%s' (%s)", name, hint);
    }
    return parse_error(p, "unknown option '-%c' (%s)", typed[1], hint);
}

/* --format FORMAT: "json" is --json where the scope has it; "table" is the default. */
static int parse_format(struct parse *p, const char *value)
{
    const struct cli_option *json = scope_find_long(p, "json", 4);
    if (strcmp(value, "json") == 0)
        add_option(p, json, NULL);
    else if (strcmp(value, "table") != 0)
        return parse_error(p, "unknown format '%s' (json or table)", value);
    return 0;
}

/* The value of an option: "=VALUE" (or the rest of a short bundle), else the next word.
 * *value stays NULL when the line ends first: an error, except while completing (the value
 * is the word being completed, p->awaiting). */
static int take_value(struct parse *p, int *i, const char *inline_value, const char *spelling,
                      const struct cli_option *option, const char **value)
{
    *value = NULL;
    if (inline_value != NULL) {
        *value = inline_value;
        return 0;
    }
    if (*i + 1 < p->argc) {
        *value = p->argv[++*i];
        return 0;
    }
    if (p->quiet) {
        p->awaiting = option;
        return 0;
    }
    return parse_error(p, "option '%s' needs a value", spelling);
}

static int parse_long(struct parse *p, int *i)
{
    const char *word = p->argv[*i];
    const char *name = word + 2;
    const char *equals = strchr(name, '=');
    size_t len = equals != NULL ? (size_t)(equals - name) : strlen(name);
    const char *inline_value = equals != NULL ? equals + 1 : NULL;
    if (len == 4 && strncmp(name, "help", 4) == 0) {
        p->help = true;
        return 0;
    }
    if (p->scope == NULL && p->program->version != NULL && len == 7 &&
        strncmp(name, "version", 7) == 0) {
        p->version = true;
        return 0;
    }
    const struct cli_option *option = scope_find_long(p, name, len);
    if (option == NULL && len == 6 && strncmp(name, "format", 6) == 0 &&
        scope_find_long(p, "json", 4) != NULL) {
        static const struct cli_option format = {"format", 0, "FORMAT", NULL, 0};
        const char *value = NULL;
        int rc = take_value(p, i, inline_value, "--format", &format, &value);
        return rc != 0 || value == NULL ? rc : parse_format(p, value);
    }
    if (option == NULL)
        return unknown_option(p, word, name, len);
    if (option->value_name == NULL) {
        if (inline_value != NULL)
            return parse_error(p, "option '--%s' takes no value", option->name);
        add_option(p, option, NULL);
        return 0;
    }
    const char *value = NULL;
    int rc = take_value(p, i, inline_value, word, option, &value);
    if (rc == 0 && value != NULL)
        add_option(p, option, value);
    return rc;
}

/* -abc, -xVALUE, -x VALUE. */
static int parse_short(struct parse *p, int *i)
{
    const char *word = p->argv[*i];
    for (const char *c = word + 1; *c != '\0'; c++) {
        char spelling[3] = {'-', *c, '\0'};
        if (*c == 'h') {
            p->help = true;
            continue;
        }
        const struct cli_option *option = scope_find_short(p, *c);
        if (option == NULL)
            return unknown_option(p, spelling, NULL, 0);
        if (option->value_name == NULL) {
            add_option(p, option, NULL);
            continue;
        }
        const char *value = NULL;
        int rc = take_value(p, i, c[1] != '\0' ? c + 1 : NULL, spelling, option, &value);
        if (rc == 0 && value != NULL)
            add_option(p, option, value);
        return rc;
    }
    return 0;
}

static bool is_option_word(const char *word)
{
    return word[0] == '-' && word[1] != '\0';
}

static int parse_option_word(struct parse *p, int *i)
{
    p->awaiting = NULL;
    return p->argv[*i][1] == '-' ? parse_long(p, i) : parse_short(p, i);
}

/* Whether word is an option of the scope (or --help); *takes_next: its value is the next word. */
static bool known_option_word(const struct parse *p, const char *word, bool *takes_next)
{
    *takes_next = false;
    if (word[1] == '-') {
        const char *equals = strchr(word + 2, '=');
        size_t len = equals != NULL ? (size_t)(equals - word - 2) : strlen(word + 2);
        if (len == 4 && strncmp(word + 2, "help", 4) == 0)
            return true;
        const struct cli_option *option = scope_find_long(p, word + 2, len);
        *takes_next = option != NULL && option->value_name != NULL && equals == NULL;
        return option != NULL;
    }
    for (const char *c = word + 1; *c != '\0'; c++) {
        const struct cli_option *option = *c == 'h' ? NULL : scope_find_short(p, *c);
        if (option == NULL && *c != 'h')
            return false;
        if (option != NULL && option->value_name != NULL) {
            *takes_next = c[1] == '\0';
            return true;
        }
    }
    return true;
}

/* exec NAME [-t] -- CMD...: when every word from i up to a "--" is an option of the scope,
 * returns the index of that "--"; otherwise -1 (the command starts at i). */
static int options_before_separator(const struct parse *p, int i)
{
    for (; i < p->argc; i++) {
        const char *word = p->argv[i];
        bool takes_next = false;
        if (strcmp(word, "--") == 0)
            return i;
        if (!is_option_word(word) || !known_option_word(p, word, &takes_next))
            return -1;
        if (takes_next)
            i++;
    }
    return -1;
}

static int enter_command(struct parse *p, const struct cli_command *table, const char *word)
{
    const struct cli_command *command = find_command(table, word);
    if (command == NULL) {
        struct word_list words = {.count = 0};
        word_list_add_commands(&words, table);
        if (p->scope == NULL)
            word_list_add(&words, "help", 4);
        const char *near = cli_closest(word, words.words);
        const char *what = p->scope == NULL ? "command" : "subcommand";
        if (near != NULL)
            return parse_error(p, "unknown %s '%s' (did you mean '%s'?)", what, word, near);
        char hint[160];
        hint_suffix(p, hint, sizeof hint);
        return parse_error(p, "unknown %s '%s' (%s)", what, word, hint);
    }
    path_append(p, command->name);
    p->group = p->scope;
    p->scope = command;
    if (command->subcommands == NULL)
        p->leaf = command;
    return 0;
}

static int parse_operand(struct parse *p, int *i)
{
    const char *word = p->argv[*i];
    if (p->help_command) {
        /* help WORDS: walk the tables, the words are commands */
        const struct cli_command *table =
            p->scope == NULL ? p->program->commands : p->scope->subcommands;
        if (table == NULL)
            return parse_error(p, "'%s' has no subcommand '%s'", p->call.path, word);
        return enter_command(p, table, word);
    }
    if (p->scope == NULL) {
        if (strcmp(word, "help") == 0 && find_command(p->program->commands, "help") == NULL) {
            p->help = p->help_command = true;
            return 0;
        }
        return enter_command(p, p->program->commands, word);
    }
    if (p->leaf == NULL)
        return enter_command(p, p->scope->subcommands, word);
    p->call.operands[p->call.operand_count++] = p->argv[*i];
    int after = p->leaf->passthrough_after;
    if (after > 0 && p->call.operand_count == (size_t)after && *i + 1 < p->argc) {
        int separator = options_before_separator(p, *i + 1);
        for (int j = *i + 1; j < separator; j++) {
            int rc = parse_option_word(p, &j);
            if (rc != 0)
                return rc;
        }
        if (separator >= 0)
            *i = separator;
        else if (strcmp(p->argv[*i + 1], "--") == 0)
            (*i)++;
        p->passthrough = true;
    }
    return 0;
}

static int parse_words(struct parse *p, int first)
{
    for (int i = first; i < p->argc; i++) {
        const char *word = p->argv[i];
        int rc = 0;
        if (p->passthrough || p->options_ended) {
            if (p->leaf != NULL && !p->help_command)
                p->call.operands[p->call.operand_count++] = p->argv[i];
            else
                rc = parse_operand(p, &i);
        } else if (strcmp(word, "--") == 0) {
            p->options_ended = true;
        } else if (is_option_word(word)) {
            rc = parse_option_word(p, &i);
        } else {
            p->awaiting = NULL;
            rc = parse_operand(p, &i);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- completion -------------------------------------------------------------------------- */

static void complete_print(const char *candidate, const char *prefix)
{
    if (strncmp(candidate, prefix, strlen(prefix)) == 0)
        printf("%s\n", candidate);
}

static void complete_options(const struct cli_option *table, const char *prefix)
{
    char word[128];
    for (const struct cli_option *o = table; o != NULL && !option_table_end(o); o++) {
        if (o->name == NULL || o->help == NULL)
            continue;
        snprintf(word, sizeof word, "--%s", o->name);
        complete_print(word, prefix);
    }
}

static void complete_commands(const struct cli_command *table, const char *prefix, bool with_help)
{
    struct word_list words = {.count = 0};
    word_list_add_commands(&words, table);
    if (with_help)
        word_list_add(&words, "help", 4);
    for (size_t i = 0; i < words.count; i++)
        complete_print(words.words[i], prefix);
}

static void complete_word(struct parse *p, const char *prefix)
{
    if (p->awaiting != NULL) {
        /* a value: the shell completes file names for FILE/DIR/PATH, nothing else */
        const char *v = p->awaiting->value_name;
        if (strcmp(v, "FILE") == 0 || strcmp(v, "DIR") == 0 || strcmp(v, "PATH") == 0)
            printf(":files\n");
        return;
    }
    if (prefix[0] == '-' && !p->passthrough && !p->options_ended) {
        if (p->scope == NULL) {
            complete_options(p->program->options, prefix);
            if (p->program->version != NULL)
                complete_print("--version", prefix);
        } else {
            complete_options(p->scope->options, prefix);
            for (const struct cli_command *s = p->scope->subcommands; s && s->name; s++)
                complete_options(s->options, prefix);
        }
        complete_print("--help", prefix);
        return;
    }
    if (p->scope == NULL) {
        complete_commands(p->program->commands, prefix, true);
    } else if (p->leaf == NULL) {
        complete_commands(p->scope->subcommands, prefix, false);
    } else if (!p->help_command && p->program->complete != NULL && p->leaf->complete_kind != 0 &&
               (p->leaf->max_operands < 0 ||
                p->call.operand_count < (size_t)p->leaf->max_operands)) {
        p->call.command = p->leaf;
        p->program->complete(&p->call, p->leaf->complete_kind, prefix);
    }
}

/* PROG __complete WORD... CURRENT: the candidates for CURRENT, one per line. */
static int run_completion(struct parse *p)
{
    p->quiet = true;
    if (p->argc < 3)
        return CLI_EXIT_OK;
    const char *current = p->argv[p->argc - 1];
    p->argv++; /* parse WORD... as if they followed the program name */
    p->argc -= 2;
    if (parse_words(p, 1) == 0)
        complete_word(p, current);
    return CLI_EXIT_OK;
}

/* ---- running ----------------------------------------------------------------------------- */

const char *cli_value(const struct cli_call *call, int id)
{
    const char *value = NULL;
    for (size_t i = 0; i < call->option_count; i++)
        if (call->options[i].id == id)
            value = call->options[i].value;
    return value;
}

bool cli_flag(const struct cli_call *call, int id)
{
    for (size_t i = 0; i < call->option_count; i++)
        if (call->options[i].id == id)
            return true;
    return false;
}

int cli_usage_error(const struct cli_call *call, const char *fmt, ...)
{
    fprintf(stderr, "%s %s: ", call->program->name, call->path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see '%s %s --help')\n", call->program->name, call->path);
    return CLI_EXIT_USAGE;
}

/* Options given before the command (or its subcommand) must be ones the command takes. */
static int check_options_apply(struct parse *p)
{
    for (size_t i = 0; i < p->call.option_count; i++) {
        const struct cli_value *given = &p->call.options[i];
        if (table_has_id(p->leaf->options, given->id))
            continue;
        const struct cli_command *sibling = NULL;
        for (const struct cli_command *s = p->group != NULL ? p->group->subcommands : NULL;
             sibling == NULL && s != NULL && s->name != NULL; s++)
            if (table_has_id(s->options, given->id))
                sibling = s;
        if (sibling != NULL)
            return parse_error(p, "option '--%s' only applies to '%s %s'", given->option->name,
                               p->group->name, sibling->name);
        return parse_error(p, "option '--%s' does not apply here", given->option->name);
    }
    return 0;
}

/* The operand word of the usage at index (skipping [OPTIONS]-style words), "NAME" of
 * "NAME...", into out; "" when the usage names none. */
static void usage_operand(const char *usage, size_t index, char *out, size_t len)
{
    out[0] = '\0';
    for (const char *word = usage; word != NULL && *word != '\0';) {
        word += strspn(word, " ");
        size_t word_len = strcspn(word, " ");
        if (word_len == 0)
            break;
        if (word[0] != '[' && index-- == 0) {
            if (word_len > 3 && strncmp(word + word_len - 3, "...", 3) == 0)
                word_len -= 3;
            snprintf(out, len, "%.*s", (int)word_len, word);
            return;
        }
        word += word_len;
    }
}

static int check_operands(struct parse *p)
{
    const struct cli_command *c = p->leaf;
    size_t count = p->call.operand_count;
    char usage[256], missing[64];
    snprintf(usage, sizeof usage, "usage: %s %s%s%s", p->program->name, p->call.path,
             c->usage ? " " : "", c->usage ? c->usage : "");
    if (count < (size_t)c->min_operands) {
        usage_operand(c->usage, count, missing, sizeof missing);
        return parse_error(p, "missing %s (%s)", missing[0] ? missing : "arguments", usage);
    }
    if (c->max_operands >= 0 && count > (size_t)c->max_operands)
        return parse_error(p, "unexpected argument '%s' (%s)", p->call.operands[c->max_operands],
                           usage);
    return 0;
}

/* After the words: help, version, the default subcommand, the checks. */
static int finish_parse(struct parse *p, bool *done)
{
    *done = true;
    if (p->help) {
        cli_print_help_of(p->program, p->call.path, p->scope, stdout);
        return CLI_EXIT_OK;
    }
    if (p->version && p->scope == NULL) {
        printf("%s\n", p->program->version);
        return CLI_EXIT_OK;
    }
    if (p->scope == NULL) {
        cli_print_help_of(p->program, "", NULL, stderr);
        return CLI_EXIT_USAGE;
    }
    if (p->leaf == NULL) {
        const char *sub = p->scope->default_subcommand;
        if (sub == NULL) {
            struct word_list words = {.count = 0};
            word_list_add_commands(&words, p->scope->subcommands);
            char list[512] = "";
            for (size_t i = 0; i < words.count; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                         words.words[i]);
            return parse_error(p, "missing subcommand (%s)", list);
        }
        int rc = enter_command(p, p->scope->subcommands, sub);
        if (rc != 0)
            return rc;
    }
    int rc = check_options_apply(p);
    if (rc == 0)
        rc = check_operands(p);
    if (rc != 0)
        return rc;
    *done = false;
    return 0;
}

int cli_main(const struct cli_program *program, int argc, char **argv, void *ctx)
{
    struct parse p = {.program = program, .argc = argc, .argv = argv};
    p.call.program = program;
    p.call.ctx = ctx;
    /* -abc is three options in one word: at most one option per byte of the line */
    for (int i = 0; i < argc; i++)
        p.option_capacity += strlen(argv[i]) + 1;
    p.call.options = calloc(p.option_capacity, sizeof *p.call.options);
    p.call.operands = calloc((size_t)argc + 1, sizeof *p.call.operands);
    if (p.call.options == NULL || p.call.operands == NULL) {
        free(p.call.options);
        free(p.call.operands);
        fprintf(stderr, "%s: NO_MEMORY: out of memory\n", program->name);
        return CLI_EXIT_FAILURE;
    }
    int rc;
    bool done = true;
    if (argc >= 2 && strcmp(argv[1], "__complete") == 0)
        rc = run_completion(&p);
    else if ((rc = parse_words(&p, 1)) == 0)
        rc = finish_parse(&p, &done);
    if (!done) {
        p.call.command = p.leaf;
        rc = program->before_run != NULL ? program->before_run(&p.call) : 0;
        if (rc == 0)
            rc = p.leaf->run(&p.call);
    }
    free(p.call.options);
    free(p.call.operands);
    return rc;
}
