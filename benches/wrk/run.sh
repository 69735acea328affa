#!/usr/bin/env bash
# Webhook ingest measured the issue's way: the release binary as an operator runs it (its worker
# on), driven by wrk from outside the process, with the baselines taken in the same run:
# GET /healthz through wrk, and raw one-commit-each inserts of the same body into the same
# kind of database (a Python sqlite3 loop on SQLite; pgbench at the same concurrency on
# PostgreSQL). Prints figures; asserts nothing.
#
#   cargo build --release && benches/wrk/run.sh            # SQLite in a temp dir
#   WRK_DATABASE_URL=postgres://postgres@127.0.0.1:5432/porteiro_wrk benches/wrk/run.sh
#
# WRK_SECS (default 10) per row; WRK_BIN for another binary; WRK_KEYS=random for random buyers and
# transactions (real-world index order) instead of keys that grow with the run. Needs wrk
# (apt-get install wrk).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${WRK_BIN:-$root/target/release/porteiro}
secs=${WRK_SECS:-10}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk" >&2; exit 2; }
[ -x "$bin" ] || { echo "no $bin: cargo build --release first" >&2; exit 2; }

dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "${WRK_LOG_FILE:-}" ] && cp "$dir/server.log" "$WRK_LOG_FILE"
  rm -rf "$dir"
}
trap cleanup EXIT
url=${WRK_DATABASE_URL:-sqlite://$dir/wrk.db?mode=rwc}
hottok=wrk-bench-hottok-0123456789

# The server refuses PORTEIRO_ settings it does not know; give it only its own.
# RUST_LOG from WRK_SERVER_LOG (e.g. porteiro=debug); the server's log is kept in $WRK_LOG_FILE.
server_env=(env -u PORTEIRO_MASTER_KEY -u PORTEIRO_JWT_KEY DATABASE_URL="$url" PORTEIRO_DATA_DIR="$dir"
  PORTEIRO_BIND=127.0.0.1:0 RUST_LOG="${WRK_SERVER_LOG:-error}")
cd "$dir"
# Not through a function: $! must be the server itself (env execs it), to kill and to sample.
"${server_env[@]}" "$bin" serve 2>"$dir/server.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$dir/server.log" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*porteiro listening on //p' "$dir/server.log" | head -1)
[ -n "$addr" ] || { cat "$dir/server.log" >&2; exit 1; }
token=$("${server_env[@]}" "$bin" token --app default --role admin)
gql() { curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' "$addr/graphql" -d "$1"; }
hook=$(gql "{\"query\":\"mutation { saveHotmartIntegration(input: {hottok: \\\"$hottok\\\"}) { webhookUrl } }\"}" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["data"]["saveHotmartIntegration"]["webhookUrl"].split("/webhooks/")[1])')
gql '{"query":"mutation { createSubscriptionPlan(input: {name: \"Bench\", hotmartProductIds: [\"4100001\"]}) { id } }"}' >/dev/null

# A sale paid now and due again in 30 days (plans fail closed: the fixture's old dates would
# give access that is already over); "IDX" marks what each request makes unique.
python3 - "$root/rules/fixtures/purchase_approved.json" "$dir/sale.json" <<'PY'
import json, sys, time
v = json.load(open(sys.argv[1]))
now = int(time.time() * 1000)
v["creation_date"] = now
p = v["data"]["purchase"]
p["approved_date"], p["date_next_charge"], p["transaction"] = now, now + 30 * 86400000, "HPIDX"
v["id"] = "IDX"
v["data"]["subscription"]["subscriber"]["code"] = "SBIDX"
v["data"]["buyer"]["email"] = "buyerIDX@example.com"
open(sys.argv[2], "w").write(json.dumps(v))
PY

# A metric summed over its series: a whole number, or in the printf format $2 (a histogram's _sum).
metric() { curl -sf "$addr/metrics" | awk -v m="$1" -v f="${2:-%d}" '$1 ~ "^"m"([{]|$)" { s += $2 } END { printf f "\n", s }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
# The whole machine's busy ticks (wrk and PostgreSQL included), and all its ticks.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
hz=$(getconf CLK_TCK)

# wrk's summary as "rate p50 p99 non2xx" (latencies in ms).
wrk_row() {
  wrk "$@" --latency | python3 -c '
import re, sys
t = sys.stdin.read()
def ms(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\b" % p, t, re.M)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)] if m else float("nan")
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(rate, ms(50), ms(99), bad.group(1) if bad else 0)'
}

echo "porteiro ingest through wrk: ${secs} s per row, $(echo "$url" | cut -d: -f1), worker running"
read -r health hp50 hp99 _ < <(wrk_row -t2 -c64 -d"${secs}s" "$addr/healthz")
printf '%-44s %9.0f/s  p50 %6.2f ms  p99 %6.2f ms\n' "GET /healthz, 64 connections (baseline)" "$health" "$hp50" "$hp99"

if [[ $url == postgres* ]]; then
  PGOPTIONS='-c client_min_messages=warning' psql "$url" -qc "DROP TABLE IF EXISTS wrk_raw" -qc "CREATE TABLE wrk_raw (id bigserial PRIMARY KEY, body text NOT NULL)"
  echo 'INSERT INTO wrk_raw (body) VALUES (:body)' >"$dir/raw.sql"
  raw=$(pgbench -n -M prepared -c16 -j2 -T"$secs" -D body="$(cat "$dir/sale.json")" -f "$dir/raw.sql" "$url" 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  psql "$url" -qc "DROP TABLE wrk_raw"
  raw_label="raw insert, one commit each, 16 clients (pgbench)"
else
  raw=$(python3 - "$dir/raw.db" "$dir/sale.json" "$secs" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
body, n, t = open(sys.argv[2]).read(), 0, time.time()
while time.time() - t < float(sys.argv[3]):
    db.execute("INSERT INTO raw VALUES (?, ?)", ("raw-%d" % n, body)); n += 1
print(n / (time.time() - t))
PY
)
  raw_label="raw insert, one commit each (Python sqlite3)"
fi
printf '%-44s %9.0f/s\n' "$raw_label" "$raw"

started=$(date +%s.%N)
for c in 16 64; do
  groups0=$(metric porteiro_ingest_groups_total); stored0=$(metric porteiro_ingest_group_deliveries_total)
  wait0=$(metric porteiro_ingest_gate_wait_seconds_sum %.6f); commit0=$(metric porteiro_ingest_commit_seconds_sum %.6f)
  ticks0=$(cpu_ticks); read -r busy0 all0 < <(machine_ticks); t0=$(date +%s.%N)
  read -r rate p50 p99 bad < <(RUN="c$c" KEYS="${WRK_KEYS:-}" SALE_TEMPLATE="$dir/sale.json" HOTTOK=$hottok \
    wrk_row -t2 -c"$c" -d"${secs}s" -s "$here/sale.lua" "$addr/webhooks/$hook")
  cores=$(echo "($(cpu_ticks) - $ticks0) / $hz / ($(date +%s.%N) - $t0)" | bc -l)
  read -r busy all < <(machine_ticks); machine=$(echo "100 * ($busy - $busy0) / ($all - $all0)" | bc -l)
  groups=$(( $(metric porteiro_ingest_groups_total) - groups0 )); stored=$(( $(metric porteiro_ingest_group_deliveries_total) - stored0 ))
  per=$(( groups > 0 ? groups : 1 ))
  waited=$(echo "1000 * ($(metric porteiro_ingest_gate_wait_seconds_sum %.6f) - $wait0) / $per" | bc -l)
  committing=$(echo "1000 * ($(metric porteiro_ingest_commit_seconds_sum %.6f) - $commit0) / $per" | bc -l)
  printf '%-44s %9.0f/s  p50 %6.2f ms  p99 %6.2f ms  %.2fx raw  (%s not 2xx; %.1f a commit, which waited %.2f ms for the write gate and took %.2f ms; server %.2f cores, machine %.0f%% busy)\n' \
    "webhook ack, new sales, $c connections" "$rate" "$p50" "$p99" "$(echo "$rate / $raw" | bc -l)" "$bad" \
    "$(echo "$stored / $per" | bc -l)" "$waited" "$committing" "$cores" "$machine"
done
# End to end: from the first sale until the worker has settled every stored one.
stored=$(metric porteiro_ingest_group_deliveries_total)
# Bounded: an event the worker could not settle must not hang the run. Polled four times a second:
# every scrape of /metrics counts the pending rows, which with a backlog of 50,000 cost PostgreSQL
# 48 ms each; polled every 50 ms, that was a core of the database's time taken from the worker.
until [ "$(metric porteiro_events_processed_total)" -ge "$stored" ]; do
  if (( $(echo "$(date +%s.%N) - $started > 600" | bc) )); then
    echo "the worker settled $(metric porteiro_events_processed_total) of $stored in 600 s; giving up" >&2
    exit 1
  fi
  sleep 0.25
done
took=$(echo "$(date +%s.%N) - $started" | bc -l)
printf '%-44s %9.0f/s  %.2fx raw  (%d events in %.1f s)\n' "end to end: acked, ruled, granted" \
  "$(echo "$stored / $took" | bc -l)" "$(echo "$stored / $took / $raw" | bc -l)" "$stored" "$took"
