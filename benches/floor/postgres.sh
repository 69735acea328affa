#!/usr/bin/env bash
# What PostgreSQL alone does with the writes of one event: the floor under the server's
# PostgreSQL figures, with the server's real schema, measured by pgbench against pgbench's
# one-row-a-commit inserts (the baseline of benches/wrk/run.sh) in the same run.
#
#   cargo build --release
#   FLOOR_DATABASE_URL=postgres://postgres@127.0.0.1:5432/porteiro_floor benches/floor/postgres.sh
#
# The database must be empty (the binary migrates it). FLOOR_SECS per row (default 8).
# Rows:
# - ingest alone: 16 clients inserting inbox rows in groups of 6 a commit (what ingest commits at
#   64 connections under wrk on PostgreSQL);
# - the worker alone: one client doing the worker's batches of 64 on that backlog: claim the
#   oldest pending rows, write a buyer, an entitlement, a fact, a subscriber code and an audit row
#   for each, set the outcome, upsert the tally, in one statement and transaction. Fewer round
#   trips than the server makes, and none of its reads: an upper bound;
# - end to end at best: both costs added (an event costs the machine both);
# - end to end: ingest paced at shares of that, the worker beside it: the fastest pace it keeps
#   up with.
# No HTTP, no JSON, no rules.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
url=${FLOOR_DATABASE_URL:?set FLOOR_DATABASE_URL to an empty PostgreSQL database}
secs=${FLOOR_SECS:-8}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
(cd "$dir" && DATABASE_URL="$url" "$root/target/release/porteiro" migrate up >/dev/null 2>&1)
body=$(cat "$root/rules/fixtures/purchase_approved.json")
psql "$url" -qc "INSERT INTO app (id, slug, name, webhook_key, created_at, updated_at) VALUES (1, 'default', 'd', 'k', now(), now())" \
  -qc "CREATE TABLE floor_raw (id bigserial PRIMARY KEY, body text NOT NULL)"

tps() { sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }

echo 'INSERT INTO floor_raw (body) VALUES (:body)' >"$dir/raw.sql"
cat >"$dir/ingest.sql" <<'SQL'
\set r random(1, 9000000000000000000)
INSERT INTO webhook_event (app_id, provider, origin, event_id, event_type, format, raw_body, headers, received_at, status)
SELECT 1, 'hotmart', 'webhook', :client_id || '-' || :r || '-' || g, 'PURCHASE_APPROVED', 'v2', convert_to(:body, 'UTF8'), '{}', now(), 'pending'
FROM generate_series(1, 6) g ON CONFLICT DO NOTHING;
SQL
cat >"$dir/worker.sql" <<'SQL'
WITH c AS (
  SELECT id, event_id FROM webhook_event WHERE status = 'pending' ORDER BY id LIMIT 64 FOR UPDATE SKIP LOCKED
), b AS (
  INSERT INTO buyer (app_id, email, name, created_at, updated_at)
  SELECT 1, 'b' || event_id || '@example.com', 'Buyer Name', now(), now() FROM c RETURNING id, email
), cb AS (
  SELECT c.id, c.event_id, b.id AS buyer_id FROM c JOIN b ON b.email = 'b' || c.event_id || '@example.com'
), e AS (
  INSERT INTO entitlement (app_id, buyer_id, target_kind, target_id, source, status, granted_at, expires_at,
                           last_event_id, rule_version, reason, created_at, updated_at, version)
  SELECT 1, buyer_id, 'plan', 1, 'src-' || event_id, 'active', now(), now() + interval '30 days', id, 1,
         'PURCHASE_APPROVED', now(), now(), 1 FROM cb
  ON CONFLICT (app_id, source) DO UPDATE SET status = excluded.status, version = entitlement.version + 1
  RETURNING id
), f AS (
  INSERT INTO access_fact (app_id, source, effect, event_type, fact_key, "transaction", occurred_at, until, email,
                           target_kind, target_id, webhook_event_id, rule_version, actor, reason, created_at)
  SELECT 1, 'src-' || event_id, 'grant', 'PURCHASE_APPROVED', 'k-' || id, 'HP' || id, now(), now() + interval '30 days',
         'b' || event_id || '@example.com', 'plan', 1, id, 1, 'rules', 'approved', now() FROM c
), s AS (
  INSERT INTO buyer_subscriber_code (app_id, buyer_id, code, created_at) SELECT 1, buyer_id, 'src-' || event_id, now() FROM cb
), a AS (
  INSERT INTO audit_log (app_id, actor, action, target, before, after, reason, created_at)
  SELECT 1, 'rules', 'access.granted', 'entitlement:' || id, NULL,
         '{"status":"active","target":"plan:1","expiresAt":"2026-12-31T12:00:00Z","email":"b@example.com","version":1}',
         'PURCHASE_APPROVED', now() FROM e
), u AS (
  UPDATE webhook_event w SET status = 'processed', decision = '{"action":"grant","reason":"approved"}',
         email = 'b' || c.event_id || '@example.com', source_key = 'src-' || c.event_id, target_kind = 'plan',
         target_id = 1, attempts = 1, processed_at = now()
  FROM c WHERE w.id = c.id RETURNING 1
)
INSERT INTO rollup (app_id, family, bucket, n)
SELECT 1, 'changes', '2026-12-01T12|access.granted', count(*) FROM u HAVING count(*) > 0
ON CONFLICT (app_id, family, bucket) DO UPDATE SET n = rollup.n + excluded.n;
SQL

count() { psql "$url" -Atqc "SELECT count(*) FROM webhook_event WHERE status = '$1'"; }

echo "PostgreSQL $(psql "$url" -Atqc 'SHOW server_version') alone, the server's schema, ${secs} s a row"
raw=$(pgbench -n -M prepared -c16 -j2 -T"$secs" -D body="$body" -f "$dir/raw.sql" "$url" 2>/dev/null | tps)
printf '%-44s %8.0f/s\n' "raw insert, one commit each, 16 clients" "$raw"
ingest=$(pgbench -n -M prepared -c16 -j2 -T"$secs" -D body="$body" -f "$dir/ingest.sql" "$url" 2>/dev/null | tps)
printf '%-44s %8.0f events/s = %.2fx raw\n' "ingest alone, groups of 6, 16 clients" "$(echo "$ingest * 6" | bc -l)" \
  "$(echo "$ingest * 6 / $raw" | bc -l)"
# The worker alone, on the backlog ingest just left (more than it settles in the time).
done0=$(count processed)
pgbench -n -M prepared -c1 -j1 -T"$secs" -f "$dir/worker.sql" "$url" >/dev/null 2>&1
worker_alone=$(echo "($(count processed) - $done0) / $secs" | bc -l)
printf '%-44s %8.0f events/s = %.2fx raw\n' "worker alone, batches of 64, 1 client" "$worker_alone" \
  "$(echo "$worker_alone / $raw" | bc -l)"
# Each at full machine: sharing it, an event costs both, so at best this many end to end.
both=$(echo "1 / (1 / ($ingest * 6) + 1 / $worker_alone)" | bc -l)
printf '%-44s %8.0f events/s = %.2fx raw\n' "end to end at best (the two costs added)" "$both" "$(echo "$both / $raw" | bc -l)"
# Both at once, ingest paced at a share of that estimate: the fastest pace the worker keeps up with
# (settles 97 % of it, and less than a few batches left pending) is the end-to-end floor.
kept=0
for share in 50 60 70 80 90 100 110 120 130 140; do
  psql "$url" -qc "UPDATE webhook_event SET status = 'old' WHERE status = 'pending'"
  pace=$(echo "$both * $share / 100" | bc)
  done0=$(count processed)
  pgbench -n -M prepared -c1 -j1 -T"$secs" -f "$dir/worker.sql" "$url" >/dev/null 2>&1 &
  worker=$!
  ingested=$(pgbench -n -M prepared -c16 -j2 -T"$secs" -R $(( pace / 6 )) -D body="$body" -f "$dir/ingest.sql" "$url" 2>/dev/null | tps)
  wait "$worker"
  settled=$(echo "($(count processed) - $done0) / $secs" | bc -l)
  left=$(count pending)
  printf '  paced at %3d%%: ingest %6.0f/s, the worker settled %6.0f/s, %d left pending\n' "$share" \
    "$(echo "$ingested * 6" | bc -l)" "$settled" "$left"
  if (( $(echo "$settled >= 0.97 * $ingested * 6 && $left < 256" | bc) )); then kept=$settled; else break; fi
done
printf '%-44s %8.0f events/s = %.2fx raw\n' "end to end, the fastest pace kept up with" "$kept" "$(echo "$kept / $raw" | bc -l)"
