#!/usr/bin/env bash
# Benchmark of the web pages: `jiuzhu serve --demo` on a district of the
# chosen size (SQLite), driven over loopback by a separate process
# (crates/loadgen, `jiuzhu-loadgen web`). It logs in once as the demo's
# resident and once as its admin, then, for each page, keeps CONCURRENCY
# users asking again as soon as they are answered, for DURATION seconds,
# and reports answers per second and p50/p99/max latency of:
#
#   baseline   /static/app.css   the same server, nothing read from the store
#   invoices   /me               the resident's assisted invoices, explained
#   dashboard  /staff            the staff dashboard and its charts
#
# and the ratio of each page's p99 to the baseline's, measured in the same
# run. Target: p99 under 50 ms at 100 users with 1M recipients and 10M bills.
#
#   bash bench/web.sh             1,000,000 recipients, 10,000,000 bills (the store takes long to make)
#   bash bench/web.sh --smoke     2,000 recipients, 10,000 bills, 2 s per page: checks that it all runs
#
#   PEOPLE=.. INVOICES=.. CONCURRENCY=100 DURATION=10 to choose; BENCH_TMP=DIR for the store.
#   DEMO_STORE=FILE DEMO_DISTRICT=DIR: instead of making the district, serve the
#   store FILE already filled from the district generated into DIR (the feed
#   store and data folder that `KEEP=1 bash bench/import.sh` leaves, run in
#   its folder for its data key); the demo's staff, phones, applications and
#   batches are added to it, so a store serves this once.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
bench_mode "$@"

if $smoke; then
  people=${PEOPLE:-2000}
  invoices=${INVOICES:-10000}
  duration=${DURATION:-2}
  concurrency=${CONCURRENCY:-20}
else
  people=${PEOPLE:-1000000}
  invoices=${INVOICES:-10000000}
  duration=${DURATION:-10}
  concurrency=${CONCURRENCY:-100}
fi

fail() {
  echo "bench/web.sh: $*" >&2
  exit 1
}

work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/jiuzhu-web.XXXXXX")
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

bench_binaries jiuzhu-cli jiuzhu-loadgen
jiuzhu=$bin_dir/jiuzhu
loadgen=$bin_dir/jiuzhu-loadgen
[ -x "$jiuzhu" ] && [ -x "$loadgen" ] || fail "no jiuzhu and jiuzhu-loadgen in $bin_dir"

started=$(date +%s)
if [ -n "${DEMO_STORE:-}" ]; then
  [ -f "$DEMO_STORE" ] && [ -d "${DEMO_DISTRICT:-}" ] || fail "DEMO_STORE needs the store file and DEMO_DISTRICT its district's folder"
  store=$(cd "$(dirname "$DEMO_STORE")" && pwd)/$(basename "$DEMO_STORE")
  district=$(cd "$DEMO_DISTRICT" && pwd)
  echo "== the demo added to $store (district $district: $(($(wc -l <"$district/spells.csv") - 1)) spells, $(($(wc -l <"$district/invoices.csv") - 1)) bills)"
  (cd "$(dirname "$store")" && exec "$jiuzhu" serve --demo --demo-district "$district" \
    --listen 127.0.0.1:0 --database "sqlite://$store" >"$work/serve.out" 2>"$work/serve.err") &
else
  store=$work/demo.db
  echo "== a demo district of $people recipients and $invoices bills"
  (cd "$work" && exec "$jiuzhu" serve --demo --demo-people "$people" --demo-invoices "$invoices" \
    --listen 127.0.0.1:0 --database "sqlite://$store" >"$work/serve.out" 2>"$work/serve.err") &
fi
server=$!
if ! wait_for_line "$work/serve.out" "^A resident logs in" "$server" 7200; then
  cat "$work/serve.err" >&2
  fail "the demo did not start"
fi
echo "made and serving in $(($(date +%s) - started)) s; store $(du -sh "$store" | cut -f1)"
base=$(sed -n 's|^Open \(http://[^/]*\)/ in a browser.*|\1|p' "$work/serve.out")
password=$(sed -n 's|.* each with the password \([^:]*\):$|\1|p' "$work/serve.out")
resident=$(sed -n 's|^A resident logs in at /login with ID \([0-9X]*\) and phone \([0-9]*\);.*|\1|p' "$work/serve.out")
phone=$(sed -n 's|^A resident logs in at /login with ID \([0-9X]*\) and phone \([0-9]*\);.*|\2|p' "$work/serve.out")
[ -n "$base" ] && [ -n "$password" ] && [ -n "$resident" ] && [ -n "$phone" ] || {
  cat "$work/serve.out" >&2
  fail "cannot read the address and logins the demo printed"
}

echo
output=$("$loadgen" web --base "$base" --staff admin --password "$password" --resident "$resident" \
  --phone "$phone" --concurrency "$concurrency" --duration-seconds "$duration")
echo "$output" | grep -v '^RESULT'
p99() { echo "$output" | sed -n "s/^RESULT page=$1 .* p99_us=\([0-9]*\) .*/\1/p"; }
base_p99=$(p99 baseline)
[ -n "$base_p99" ] || fail "no baseline figure"
echo
printf '%-10s %10s %14s\n' page "p99 ms" "p99/baseline"
for page in baseline invoices dashboard; do
  value=$(p99 "$page")
  [ -n "$value" ] || fail "no figure for $page"
  awk -v page="$page" -v p99="$value" -v base="$base_p99" \
    'BEGIN { printf "%-10s %10.1f %13.1fx\n", page, p99 / 1000, (base > 0 ? p99 / base : 0) }'
done
echo "($concurrency users at once, $duration s per page; target: p99 < 50 ms at 100 users with 1M recipients"
echo " and 10M bills; $(nproc) cores shared by server and load; load average $(cut -d' ' -f1-3 /proc/loadavg))"
