#!/usr/bin/env bash
# Benchmark of periodic clearing (定期清算) against `jiuzhu simulate` on the
# same data, measured in the same run.
#
# A generated district is stored in a fresh SQLite file as a bureau would
# have it: the policy, four persons in five's spells, every bill through the
# insurance feed (decided then), every decided amount paid through a bank
# batch, then the remaining persons' spells, late (so that the clearing
# finds top-ups to pay). Then `jiuzhu clear` runs for
# each year of the bills (the generator spreads them over two years), timed
# as a bureau sees it (the whole command: reading the year from the store,
# recomputing every invoice, storing lines, changed invoices, counters and
# audit, writing the CSV and XLSX report). The baseline is `jiuzhu
# simulate` over the same policy, all the spells and all the bills, from
# the CSV files. Prints both times and the ratio (target: a few times the
# simulation at most, and a full year of 10,000,000 invoices of 1,000,000
# persons under 10 minutes).
#
#   bash bench/clear.sh            10,000,000 invoices of 1,000,000 people
#   bash bench/clear.sh --smoke    20,000 invoices of 2,000 people: checks that it all runs
#
#   INVOICES=.. PEOPLE=.. to choose; BENCH_TMP=DIR for the work folder (about
#   4 GB per million invoices); BENCH_BIN_DIR=DIR to use binaries built already.
#   STORE=FILE DATA=DIR: instead of making the store, clear the store FILE
#   filled from the district generated into DIR, as `KEEP=1 bash
#   bench/import.sh` leaves them (all spells before the bills: the clearing
#   recomputes every bill but may find nothing to pay); run in FILE's folder
#   for its data key. The clearings are stored in it.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
bench_mode "$@"
if $smoke; then
  invoices=${INVOICES:-20000}
else
    invoices=${INVOICES:-10000000}
fi
people=${PEOPLE:-$((invoices / 10 > 0 ? invoices / 10 : 1))}

fail() {
  echo "bench/clear.sh: $*" >&2
  exit 1
}

work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/jiuzhu-clear.XXXXXX")
trap 'rm -rf "$work"' EXIT

bench_binaries jiuzhu-cli
jiuzhu=$bin_dir/jiuzhu
[ -x "$jiuzhu" ] || fail "no jiuzhu in $bin_dir"

now_ns() { date +%s%N; }
if [ -n "${STORE:-}" ]; then
  [ -f "$STORE" ] && [ -d "${DATA:-}" ] || fail "STORE needs the store file and DATA its district's folder"
  folder=$(cd "$(dirname "$STORE")" && pwd)
  url=sqlite://$folder/$(basename "$STORE")
  data=$(cd "$DATA" && pwd)
  late=false
  cd "$folder"
  echo "== the store $url, filled from $data: $(($(wc -l <"$data/invoices.csv") - 1)) invoices"
else
  echo "work folder $work: $(df -h --output=avail "$work" | tail -n 1 | tr -d ' ') available"
  cd "$work"
  "$jiuzhu" init >/dev/null
  data=$work/data
  late=true

  echo "== $invoices invoices of $people people"
  "$jiuzhu" gen --people "$people" --invoices "$invoices" --seed 3 --dir data
  # The spells of one person in five come late, each person's in one file.
  awk -F, 'NR == 1 { print > "early.csv"; print > "late.csv"; next }
    { sum = 0; for (i = 1; i <= length($1); i++) sum += index("0123456789X", substr($1, i, 1));
      print > (sum % 5 == 0 ? "late.csv" : "early.csv") }' data/spells.csv
  url=sqlite://$work/jiuzhu.db
  "$jiuzhu" policy load data/policy.toml --database "$url" >/dev/null
  "$jiuzhu" import spells early.csv --source 民政 --database "$url" | head -n 1
  "$jiuzhu" import invoices data/invoices.csv --database "$url" | tail -n 1
  # The bureau pays what the feed decided before the late spells come: a
  # bank account for each person with a spell, one batch of everything
  # owed, approved by a second person, exported, and the bank's return of
  # every line paid. The clearing then reads a store whose bills are paid.
  "$jiuzhu" staff add maker --roles admin --database "$url" >/dev/null
  "$jiuzhu" staff add checker --roles approver --database "$url" >/dev/null
  awk -F, 'NR == 1 { print "person_id,name,bank,account"; next }
    !seen[$1]++ { printf "%s,持卡人,农业银行,622848%013d\n", $1, NR }' early.csv >accounts.csv
  "$jiuzhu" disburse accounts accounts.csv --as maker --database "$url" | tail -n 1
  started=$(now_ns)
  "$jiuzhu" disburse create --as maker --database "$url" | head -n 1 | sed "s/ — .*//"
  "$jiuzhu" disburse approve 1 --as checker --database "$url" >/dev/null
  "$jiuzhu" disburse export 1 --out payment.csv --as checker --database "$url" >/dev/null
  awk -F, 'NR == 1 { print "line_id,status,reason"; next } { print $2 ",paid," }' payment.csv >return.csv
  "$jiuzhu" disburse return 1 return.csv --as checker --database "$url" >/dev/null
  echo "batch 1 made, approved, exported and answered all paid: $(( ($(now_ns) - started) / 1000000 )) ms"
  "$jiuzhu" import spells late.csv --source 民政 --database "$url" | head -n 1
  echo "store: $(du -sh "$work/jiuzhu.db" | cut -f1)"
fi

years=$(cut -d, -f5 "$data/invoices.csv" | tail -n +2 | cut -c1-4 | sort -u | tr '\n' ' ')
echo
echo "== clearing each year: $years"
clear_ns=0
for year in $years; do
  started=$(now_ns)
  "$jiuzhu" clear --period "$year" --out "$work/report-$year" --database "$url" 2>/dev/null
  elapsed=$(($(now_ns) - started))
  clear_ns=$((clear_ns + elapsed))
  echo "clearing $year: $((elapsed / 1000000)) ms"
  [ -s "$work/report-$year/differences.csv" ] || fail "no differences.csv for $year"
done
lines=$(cat "$work"/report-*/differences.csv | grep -vc '^person_id' || true)
echo "differences: $lines lines"
if $late; then
  [ "$lines" -gt 0 ] || fail "the clearings found nothing to pay: the late spells should owe something"
fi
"$jiuzhu" audit verify --database "$url" | cut -c1-60

echo
echo "== baseline: jiuzhu simulate over the same policy, spells and invoices"
started=$(now_ns)
"$jiuzhu" simulate --policy "$data/policy.toml" --spells "$data/spells.csv" --invoices "$data/invoices.csv" \
  --out "$work/results.csv" >/dev/null 2>&1
simulate_ns=$(($(now_ns) - started))
echo "simulate: $((simulate_ns / 1000000)) ms"

echo
printf '%-44s %10s %10s %8s\n' step "clearing" "simulate" ratio
awk -v label="clear $invoices invoices ($people people)" -v clear="$clear_ns" -v sim="$simulate_ns" \
  'BEGIN { printf "%-44s %9.1fs %9.1fs %7.2fx\n", label, clear / 1e9, sim / 1e9, (sim > 0 ? clear / sim : 0) }'
echo "(clearing: every year of the store cleared, whole commands; simulate: the same invoices from CSV;"
echo " ratio = clearing / simulate, lower is better; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg))"
