# What the benchmark scripts share; sourced, not run.

# bench_mode [--smoke]: sets smoke to true or false from the script's
# arguments; anything else stops it with its usage, USAGE_EXTRA appended.
bench_mode() {
  smoke=false
  case "${1:-}" in
    --smoke) smoke=true ;;
    "") ;;
    *)
      echo "usage: bash bench/$(basename "$0") [--smoke]${USAGE_EXTRA:+   $USAGE_EXTRA}" >&2
      exit 2
      ;;
  esac
}

# bench_binaries PACKAGE...: sets bin_dir to a directory holding the
# binaries of PACKAGE... . BENCH_BIN_DIR names binaries built already (CI's
# smokes run the ones its tests built); otherwise the release profile's are
# built now, since benchmark figures come from that profile.
bench_binaries() {
  if [ -n "${BENCH_BIN_DIR:-}" ]; then
    bin_dir=$(cd "$BENCH_BIN_DIR" && pwd)
    echo "the binaries of $bin_dir"
  else
    echo "building the release binaries of $*"
    local packages=()
    local package
    for package in "$@"; do packages+=(-p "$package"); done
    cargo build --release --locked --quiet "${packages[@]}"
    bin_dir=$PWD/target/release
  fi
}

# wait_for_line FILE PATTERN PID SECONDS: waits until a line of FILE (a
# server's output) matches the grep pattern PATTERN, for at most SECONDS,
# while process PID runs. Returns 1 when PID stopped or the time ran out.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3 tenths=$(($4 * 10)) _
  for _ in $(seq 1 "$tenths"); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q -- "$pattern" "$file" 2>/dev/null
}
