#!/usr/bin/env bash
# Benchmark of `jiuzhu simulate` against DuckDB computing the same results.csv
# in SQL (bench/duckdb_simulate.py), on data from `jiuzhu gen` under
# bench/closed-form-policy.toml. Both outputs must be identical byte for byte.
#
#   bash bench/simulate.sh                        1M and 10M invoices (people = invoices / 10)
#   SIZES="100000 1000000" bash bench/simulate.sh other sizes
#   bash bench/simulate.sh --smoke                the hand-worked case and 20k invoices, in seconds
#
# Data goes to bench/data/ (gitignored; BENCH_DATA to choose), or a temporary
# folder for --smoke. Both sides use every core. Wall time and peak memory
# come from /usr/bin/time -v.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
USAGE_EXTRA='(SIZES="1000000 10000000" to choose sizes)'
bench_mode "$@"

if $smoke; then
  sizes=${SIZES:-20000}
  data_root=$(mktemp -d)
  trap 'rm -rf "$data_root"' EXIT
else
  sizes=${SIZES:-1000000 10000000}
  data_root=${BENCH_DATA:-bench/data}
fi
policy=bench/closed-form-policy.toml
seed=${SEED:-1}

fail() {
  echo "bench/simulate.sh: $*" >&2
  exit 1
}

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time for /usr/bin/time -v"
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
python3 -c 'import duckdb' 2>/dev/null || fail "the Python package duckdb is missing: pip install duckdb"

bench_binaries jiuzhu-cli
jiuzhu=$bin_dir/jiuzhu
[ -x "$jiuzhu" ] || fail "no binary $jiuzhu"

# measure NAME LOG COMMAND...: runs COMMAND under /usr/bin/time -v, its output
# in LOG; sets NAME_seconds and NAME_kib. Shows the log and stops on failure.
measure() {
  local name=$1 log=$2
  shift 2
  if ! /usr/bin/time -v -o "$log.time" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "$name failed: $*"
  fi
  local seconds kib
  seconds=$(awk -F': ' '/Elapsed \(wall clock\)/ {
      n = split($2, part, ":"); s = 0
      for (i = 1; i <= n; i++) s = s * 60 + part[i]
      print s }' "$log.time")
  kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log.time")
  printf -v "${name}_seconds" '%s' "$seconds"
  printf -v "${name}_kib" '%s' "$kib"
}

# same EXPECTED ACTUAL: fails loudly, with the first differences, unless identical.
same() {
  if ! cmp -s "$1" "$2"; then
    echo "MISMATCH: $1 and $2 differ" >&2
    cmp "$1" "$2" >&2 || true
    diff "$1" "$2" | head -20 >&2 || true
    fail "the two results differ"
  fi
}

# The hand-worked case (bench/cases/closed-form/README.md): both must give expected.csv.
case_dir=bench/cases/closed-form
case_out=$data_root/hand-worked
mkdir -p "$case_out"
python3 bench/duckdb_simulate.py --policy "$case_dir/policy.toml" --spells "$case_dir/spells.csv" \
  --invoices "$case_dir/invoices.csv" --out "$case_out/duckdb.csv"
same "$case_dir/expected.csv" "$case_out/duckdb.csv"
"$jiuzhu" simulate --policy "$case_dir/policy.toml" --spells "$case_dir/spells.csv" \
  --invoices "$case_dir/invoices.csv" --out "$case_out/jiuzhu.csv" >"$case_out/jiuzhu.log" 2>&1 ||
  { cat "$case_out/jiuzhu.log" >&2; fail "jiuzhu simulate failed on the hand-worked case"; }
same "$case_dir/expected.csv" "$case_out/jiuzhu.csv"
echo "hand-worked case: jiuzhu and DuckDB both give $case_dir/expected.csv"

report=()
for size in $sizes; do
  people=$((size / 10))
  [ "$people" -gt 0 ] || people=1
  dir=$data_root/$size
  mkdir -p "$dir"
  echo
  echo "== $size invoices, $people people (seed $seed)"
  "$jiuzhu" gen --people "$people" --invoices "$size" --seed "$seed" --dir "$dir"
  measure jiuzhu "$dir/jiuzhu.log" "$jiuzhu" simulate --policy "$policy" --spells "$dir/spells.csv" \
    --invoices "$dir/invoices.csv" --out "$dir/jiuzhu-results.csv"
  measure duckdb "$dir/duckdb.log" python3 bench/duckdb_simulate.py --policy "$policy" \
    --spells "$dir/spells.csv" --invoices "$dir/invoices.csv" --out "$dir/duckdb-results.csv"
  same "$dir/duckdb-results.csv" "$dir/jiuzhu-results.csv"
  rows=$(($(wc -l <"$dir/jiuzhu-results.csv") - 1))
  [ "$rows" -eq "$size" ] || fail "results.csv has $rows rows for $size invoices"
  # shellcheck disable=SC2154 # set by measure through printf -v
  line=$(awk -v size="$size" -v js="$jiuzhu_seconds" -v ds="$duckdb_seconds" \
    -v jk="$jiuzhu_kib" -v dk="$duckdb_kib" 'BEGIN {
      printf "%-10s %9.2f s %9.2f s %8.2f %9d MiB %9d MiB   identical", \
        size, js, ds, (ds > 0 ? js / ds : 0), jk / 1024, dk / 1024 }')
  echo "$line"
  report+=("$line")
done

echo
printf '%-10s %11s %11s %8s %13s %13s\n' invoices jiuzhu duckdb ratio "jiuzhu peak" "duckdb peak"
printf '%s\n' "${report[@]}"
echo "(ratio = jiuzhu wall time / DuckDB wall time; both on $(nproc) cores)"
