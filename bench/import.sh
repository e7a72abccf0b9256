#!/usr/bin/env bash
# Benchmark of the importers, each against a baseline measured in the same
# run on the same disk.
#
# A department's spells (`jiuzhu import spells`): a generated spells file of
# about a million spells imported into a fresh SQLite store (policy loaded
# first), timed as a bureau sees it (the whole command: reading, checking,
# planning the history, encrypting IDs, storing, auditing). The baseline
# (`bulk-baseline --kind spells`) copies the very person and spell rows the
# import stored to a fresh SQLite file with plain multi-row inserts in one
# durable transaction, as the import writes a file. Prints spells stored
# per second for both and the ratio (target: at least 0.50).
#
# The insurance feed (`jiuzhu import invoices`): generated invoices imported
# into a fresh SQLite store (policy and spells loaded first), timed as a
# bureau sees it (the whole command: reading, checking, deciding, storing).
# The baseline (crates/loadgen, `bulk-baseline`) copies the very invoice and
# decision rows the import stored to a fresh SQLite file with plain
# multi-row inserts and nothing else: the same tables and indexes, the same
# durability (WAL, synchronous=FULL) and the same rows per transaction; only
# its transactions are timed. Prints rows stored per second for both and
# the ratio (target: at least 0.50).
#
#   bash bench/import.sh              about 1,000,000 spells, 10,000,000 invoices
#   bash bench/import.sh --smoke      about 3,000 spells, 20,000 invoices: checks that it all runs
#
#   SPELL_PEOPLE=.. for the people of the spells file (810,000 by default: about 1.24 spells each);
#   INVOICES=1000000 for the feed (PEOPLE defaults to a tenth of it);
#   STEPS="spells invoices" to choose what runs;
#   CHUNK=1024 rows per transaction for both; BENCH_TMP=DIR for the work
#   folder, which needs about 4 GB per million invoices; KEEP=1 keeps the
#   feed's store and files there (for bench/clear.sh STORE=..., say).
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
bench_mode "$@"

if $smoke; then
  invoices=${INVOICES:-20000}
  spell_people=${SPELL_PEOPLE:-2000}
else
  invoices=${INVOICES:-10000000}
  spell_people=${SPELL_PEOPLE:-810000}
fi
steps=${STEPS:-spells invoices}
people=${PEOPLE:-$((invoices / 10 > 0 ? invoices / 10 : 1))}
chunk=${CHUNK:-1024}

fail() {
  echo "bench/import.sh: $*" >&2
  exit 1
}

work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/jiuzhu-import.XXXXXX")
keep=${KEEP:-0}
if [ "$keep" = 1 ]; then
  trap 'echo "kept: $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

bench_binaries jiuzhu-cli jiuzhu-loadgen
jiuzhu=$bin_dir/jiuzhu
loadgen=$bin_dir/jiuzhu-loadgen
[ -x "$jiuzhu" ] && [ -x "$loadgen" ] || fail "no jiuzhu and jiuzhu-loadgen in $bin_dir"

echo "work folder $work: $(df -h --output=avail "$work" | tail -n 1 | tr -d ' ') available"
cd "$work"
"$jiuzhu" init >/dev/null

now_ns() { date +%s%N; }
# rate ROWS NANOSECONDS: rows per second, whole.
rate() { awk -v rows="$1" -v ns="$2" 'BEGIN { printf "%d", rows * 1e9 / (ns > 0 ? ns : 1) }'; }
# reported LABEL FILE: the number on the import report's line LABEL.
reported() {
  awk -v label="$1" 'index($0, "  " label " ") == 1 {
      split(substr($0, length(label) + 3), field, " "); gsub(",", "", field[1]); print field[1]; exit }' "$2"
}
# peak_rss COMMAND...: runs it, its standard output to stdout.txt, and
# prints its peak resident memory in MB when /usr/bin/time is there.
peak_rss() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%M" -o rss.txt "$@" >stdout.txt
    echo "$(($(tail -n 1 rss.txt) / 1024)) MB"
  else
    "$@" >stdout.txt
    echo "unknown"
  fi
}

report=()

# A department's spells, then their baseline.
bench_spells() {
  echo
  "$jiuzhu" gen --people "$spell_people" --invoices 1 --seed 2 --dir spells-data
  local spells=$(($(wc -l <spells-data/spells.csv) - 1))
  echo "== spells: $spells spells of $spell_people people, one file"
  local url=sqlite://$work/spells.db
  "$jiuzhu" policy load spells-data/policy.toml --database "$url" >/dev/null

  local started elapsed rss stored
  started=$(now_ns)
  rss=$(peak_rss "$jiuzhu" import spells spells-data/spells.csv --source 民政 --database "$url")
  elapsed=$(($(now_ns) - started))
  cat stdout.txt
  stored=$(sed -n 's/.*; \([0-9]*\) added, .*/\1/p' stdout.txt)
  [ -n "$stored" ] && [ "$stored" -gt 0 ] || fail "the import stored no spells"
  "$jiuzhu" audit verify --database "$url" | cut -c1-60
  local spells_rate
  spells_rate=$(rate "$stored" "$elapsed")
  echo "import: $stored spells stored in $((elapsed / 1000000)) ms: $spells_rate rows/s; peak memory $rss; store $(du -sh "$work/spells.db" | cut -f1)"

  echo
  echo "== baseline: the same $stored spell rows and their persons, plain durable inserts in one transaction"
  local output base_rate
  output=$("$loadgen" bulk-baseline --kind spells --from "$url" --database "sqlite://$work/baseline.db" --chunk 1000)
  echo "$output" | grep -v '^RESULT'
  base_rate=$(echo "$output" | sed -n 's/^RESULT .*rows_per_second=\([0-9]*\).*/\1/p')
  [ -n "$base_rate" ] || fail "no baseline rate"
  rm -f "$work"/baseline.db*

  report+=("$(awk -v label="import spells ($spells)" -v feed="$spells_rate" -v base="$base_rate" \
    'BEGIN { printf "%-32s %12d %12d %8.2fx", label, feed, base, (base > 0 ? feed / base : 0) }')")
  rm -f "$work"/spells.db* stdout.txt rss.txt
  rm -rf spells-data
}

# The insurance feed, then its baseline.
bench_invoices() {
  echo
  echo "== insurance feed: $invoices invoices of $people people"
  "$jiuzhu" gen --people "$people" --invoices "$invoices" --seed 1 --dir data
  local url=sqlite://$work/feed.db
  "$jiuzhu" policy load data/policy.toml --database "$url" >/dev/null
  "$jiuzhu" import spells data/spells.csv --source 民政 --database "$url"

  local started elapsed rss stored rows
  started=$(now_ns)
  rss=$(peak_rss "$jiuzhu" import invoices data/invoices.csv --chunk "$chunk" --database "$url")
  elapsed=$(($(now_ns) - started))
  grep -v ' repeats line ' stdout.txt | grep -v '^  … and ' || true
  rows=$(reported "rows read" stdout.txt)
  stored=$(reported "decided now" stdout.txt)
  [ -n "$stored" ] && [ "$stored" -gt 0 ] || fail "the import stored nothing"
  [ "$rows" = "$invoices" ] || fail "the import read $rows rows of $invoices"
  "$jiuzhu" audit verify --database "$url" | cut -c1-60
  local feed_rate
  feed_rate=$(rate "$stored" "$elapsed")
  local database_size
  database_size=$(du -sh "$work/feed.db" | cut -f1)
  echo "import: $stored bills stored in $((elapsed / 1000000)) ms: $feed_rate rows/s; peak memory $rss; store $database_size"

  echo
  echo "== baseline: the same $stored invoice and decision rows, plain durable inserts of $chunk rows"
  local output base_rate
  output=$("$loadgen" bulk-baseline --from "$url" --database "sqlite://$work/baseline.db" --chunk "$chunk")
  echo "$output" | grep -v '^RESULT'
  base_rate=$(echo "$output" | sed -n 's/^RESULT .*rows_per_second=\([0-9]*\).*/\1/p')
  [ -n "$base_rate" ] || fail "no baseline rate"
  rm -f "$work"/baseline.db*

  report+=("$(awk -v label="import invoices ($invoices)" -v feed="$feed_rate" -v base="$base_rate" \
    'BEGIN { printf "%-32s %12d %12d %8.2fx", label, feed, base, (base > 0 ? feed / base : 0) }')")
  if [ "$keep" != 1 ]; then
    rm -f "$work"/feed.db* stdout.txt rss.txt
    rm -rf data
  fi
}

for step in $steps; do
  case $step in
    spells) bench_spells ;;
    invoices) bench_invoices ;;
    *) fail "unknown step $step (spells, invoices)" ;;
  esac
done

echo
printf '%-32s %12s %12s %9s\n' step "rows/s" "baseline/s" ratio
printf '%s\n' "${report[@]}"
echo "(rows/s: spells or bills stored per second of the whole command; baseline: the same rows as plain"
echo " durable multi-row inserts, WAL and synchronous=FULL, on the same disk: spells in one transaction,"
echo " as the import; invoices $chunk per transaction, as the import;"
echo " target: ratio >= 0.50; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg))"
