#!/usr/bin/env bash
# Benchmark of real-time settlement: `jiuzhu serve` driven over loopback by a
# separate load generator (crates/loadgen), on SQLite, then on PostgreSQL
# with one and with two server processes. Reports settlements per second and
# p50/p99/max latency, closed loop at rising concurrency and open loop at a
# fixed rate, and the ratio of throughput to a baseline measured in the same
# run: one durable SQLite transaction (WAL, synchronous=FULL) per
# settlement-sized write (five rows, about 1 KB) on the same disk.
#
#   bash bench/settle.sh             20,000 people, 200,000 invoices, 10 s per step
#   bash bench/settle.sh --smoke     tiny sizes, 2 s per step: checks that it all runs
#
#   DURATION=20 CONCURRENCY="1 4 16 64" RATE=1000 PEOPLE=.. INVOICES=.. to choose;
#   PG_URL=postgres://root@127.0.0.1:5432 (a fresh database is made and dropped there);
#   BACKENDS="sqlite" to leave PostgreSQL out; TIMELINE=1 to print each second's p99 and max.
#
# Every invoice is sent once: a replay would be cheaper than a settlement.
# The load generator and the servers share this machine's cores; the load
# average is printed with each step.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
bench_mode "$@"

if $smoke; then
  people=${PEOPLE:-300}
  invoices=${INVOICES:-6000}
  duration=${DURATION:-2}
  concurrency=${CONCURRENCY:-1 4}
  rate=${RATE:-100}
  baseline_writes=${BASELINE_WRITES:-100}
else
  people=${PEOPLE:-20000}
  invoices=${INVOICES:-200000}
  duration=${DURATION:-10}
  concurrency=${CONCURRENCY:-1 4 16 64}
  rate=${RATE:-1000}
  baseline_writes=${BASELINE_WRITES:-3000}
fi
pg_url=${PG_URL:-postgres://root@127.0.0.1:5432}
backends=${BACKENDS:-sqlite postgres}
timeline_args=()
[ "${TIMELINE:-0}" = 1 ] && timeline_args=(--timeline)
pg_database=jiuzhu_bench_$$
export PGOPTIONS="--client-min-messages=warning"

fail() {
  echo "bench/settle.sh: $*" >&2
  exit 1
}

work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/jiuzhu-settle.XXXXXX")
server_pids=()
pg_created=false
stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pids=()
}
cleanup() {
  stop_servers
  if $pg_created; then
    psql "$pg_url/postgres" -qc "DROP DATABASE IF EXISTS $pg_database" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

bench_binaries jiuzhu-cli jiuzhu-loadgen
jiuzhu=$bin_dir/jiuzhu
loadgen=$bin_dir/jiuzhu-loadgen
[ -x "$jiuzhu" ] && [ -x "$loadgen" ] || fail "no jiuzhu and jiuzhu-loadgen in $bin_dir"

echo "bureau in $work: $people people, $invoices invoices"
cd "$work"
"$jiuzhu" init >/dev/null
"$jiuzhu" gen --people "$people" --invoices "$invoices" --seed 1 --dir data

# prepare_database URL: the policy, the spells and one API key per hospital
# (keys.tsv: HOSPITAL<TAB>KEY, as the load generator reads it).
prepare_database() {
  local url=$1
  "$jiuzhu" policy load data/policy.toml --database "$url" >/dev/null
  "$jiuzhu" import spells data/spells.csv --source 民政 --database "$url" >/dev/null
  # The hospital is the third column of invoices.csv.
  tail -n +2 data/invoices.csv | cut -d, -f3 | sort -u >hospitals.txt
  "$jiuzhu" apikey create --hospitals hospitals.txt --database "$url" >keys.tsv 2>/dev/null
  rm -f cursor
}

# start_server URL: starts `jiuzhu serve` on port 0 and appends its base URL
# (from the first line it prints) to bases.
start_server() {
  local url=$1 log=server-${#server_pids[@]} address=""
  "$jiuzhu" serve --listen 127.0.0.1:0 --database "$url" >"$log.out" 2>"$log.err" &
  server_pids+=("$!")
  if wait_for_line "$log.out" 'http://[0-9.:]*' "$!" 60; then
    address=$(grep -o -m 1 'http://[0-9.:]*' "$log.out")
  fi
  if [ -z "$address" ]; then
    cat "$log.err" >&2
    fail "jiuzhu serve on $url did not start"
  fi
  bases+=("$address")
}

load_average() { cut -d' ' -f1-3 /proc/loadavg; }

report=()
# run_load LABEL ARGS...: one load step against the servers in bases.
run_load() {
  local label=$1 output result base
  shift
  local base_args=()
  for base in "${bases[@]}"; do base_args+=(--base "$base"); done
  output=$("$loadgen" load "${base_args[@]}" --keys keys.tsv --invoices data/invoices.csv \
    --policy data/policy.toml --duration-seconds "$duration" --cursor cursor "${timeline_args[@]}" "$@") ||
    fail "the load generator failed: $label"
  echo "$output" | grep -v '^RESULT'
  result=$(echo "$output" | grep '^RESULT')
  local line
  line=$(awk -v label="$label" -v base="$baseline_rate" -v la="$(load_average)" -v r="$result" 'BEGIN {
      n = split(r, field, " ")
      for (i = 2; i <= n; i++) { split(field[i], kv, "="); v[kv[1]] = kv[2] }
      printf "%-30s %8d %8d %7s %9d/s %9.3f %9.3f %9.3f %7.2fx   %s", label, v["requests"], v["settled"], \
        v["errors"], v["throughput"], v["p50_us"] / 1000, v["p99_us"] / 1000, v["max_us"] / 1000, \
        (base > 0 ? v["throughput"] / base : 0), la }')
  report+=("$line")
}

# run_steps LABEL: the closed-loop steps, then the open-loop one.
run_steps() {
  local label=$1 workers
  for workers in $concurrency; do
    echo "-- $label, closed loop, $workers workers (load $(load_average))"
    run_load "$label c=$workers" --concurrency "$workers"
  done
  echo "-- $label, open loop at $rate/s (load $(load_average))"
  run_load "$label rate=$rate" --rate "$rate"
}

echo
echo "== baseline: $baseline_writes durable SQLite transactions on the same disk"
baseline_output=$("$loadgen" baseline --database "sqlite://$work/baseline.db" --writes "$baseline_writes")
echo "$baseline_output" | grep -v '^RESULT'
baseline_rate=$(echo "$baseline_output" | sed -n 's/^RESULT .*writes_per_second=\([0-9]*\).*/\1/p')
[ -n "$baseline_rate" ] || fail "no baseline rate"
rm -f baseline.db baseline.db-wal baseline.db-shm

echo
echo "== SQLite, one server"
sqlite_url=sqlite://$work/jiuzhu.db
prepare_database "$sqlite_url"
bases=()
start_server "$sqlite_url"
run_steps "sqlite, 1 server"
stop_servers
"$jiuzhu" audit verify --database "$sqlite_url" | tail -n 1

if [[ " $backends " != *" postgres "* ]]; then
  echo
  echo "PostgreSQL left out (BACKENDS=$backends)"
elif pg_isready -d "$pg_url/postgres" -q 2>/dev/null; then
  for servers in 1 2; do
    echo
    echo "== PostgreSQL, $servers server(s)"
    psql "$pg_url/postgres" -qc "DROP DATABASE IF EXISTS $pg_database" >/dev/null
    psql "$pg_url/postgres" -qc "CREATE DATABASE $pg_database" >/dev/null
    pg_created=true
    postgres_url=$pg_url/$pg_database
    prepare_database "$postgres_url"
    bases=()
    for _ in $(seq 1 "$servers"); do start_server "$postgres_url"; done
    run_steps "postgres, $servers server(s)"
    stop_servers
    "$jiuzhu" audit verify --database "$postgres_url" | tail -n 1
    psql "$pg_url/postgres" -qc "DROP DATABASE $pg_database" >/dev/null
    pg_created=false
  done
else
  echo "PostgreSQL is not answering at $pg_url: its rows are left out" >&2
  $smoke || fail "PostgreSQL is needed for the full benchmark"
fi

echo
printf '%-30s %8s %8s %7s %11s %9s %9s %9s %8s   %s\n' step requests settled errors throughput \
  "p50 ms" "p99 ms" "max ms" ratio "load average"
printf '%s\n' "${report[@]}"
echo "(baseline: $baseline_rate durable SQLite writes/s on the same disk; ratio = settlements/s / baseline;"
echo " targets: ratio >= 1.00x, p99 < 20 ms at 1,000 requests/s; $(nproc) cores shared by servers and load generator;"
echo " $duration s per step; errors are any answer but a new 200 settlement)"
