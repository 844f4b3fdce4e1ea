# Sourced by the bench scripts that take an optional BUILD_DIR argument (convert.sh, df.sh),
# from the repository root.

# bench_server NAME [BUILD_DIR]: sets $server to BUILD_DIR/shed-server as an absolute path
# (BUILD_DIR defaults to build-release where it is built, else build); NAME: exits with
# "NAME: ... not built" when it is not there.
bench_server() {
  local name=$1 build=${2:-}
  if [[ -z $build ]]; then
    if [[ -x build-release/shed-server ]]; then build=build-release; else build=build; fi
  fi
  case $build in /*) server=$build/shed-server ;; *) server=$PWD/$build/shed-server ;; esac
  [[ -x $server ]] || { echo "$name: $server not built" >&2; exit 1; }
}
