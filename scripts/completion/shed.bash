# bash completion for shed and shed-server. Installed as
# <datadir>/bash-completion/completions/shed and .../shed-server; or: source this file.
#
# The programs answer themselves: `PROG __complete WORD... CURRENT` prints the candidates
# for CURRENT from the same command tables that parse the line (commands, subcommands,
# options, shed names from the server where that is cheap), or ":files" when a file name
# is wanted. So this script never goes out of date.
_shed_complete()
{
    local cur=${COMP_WORDS[COMP_CWORD]}
    local IFS=$'\n'
    local -a words=("${COMP_WORDS[@]:1:COMP_CWORD}")
    local out
    out=$("${COMP_WORDS[0]}" __complete "${words[@]}" 2>/dev/null) || return 0
    if [[ $out == ":files" ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return 0
    fi
    COMPREPLY=($(compgen -W "$out" -- "$cur"))
}
complete -F _shed_complete shed shed-server
