#!/usr/bin/env python3
"""What SQLite alone does with the writes of one event, in a plain loop: the floor under the
server's figures, on the same disk, with the server's real schema, WAL and synchronous=FULL.

    cargo build --release && python3 benches/floor/sqlite.py [seconds per row, default 8]

Rows, each against one-commit-each inserts of a webhook-sized body measured just before it:
- ingest alone: the inbox insert in group commits of 31 rows (what ingest commits at 64
  connections under wrk) and of 8 (16 connections);
- end to end: groups of 31, each followed by the worker's batches of 16 (while webhooks come in),
  or groups and batches of 64 (a drain): the batch's reads, its six multi-row writes (buyers,
  entitlements, facts, subscriber codes, audit, and the inbox outcome update) and the tally
  upsert, one transaction each, every event a new buyer; with buyers' e-mails and sources in
  the order of the events, or random, as real ones are.
No HTTP, no JSON, no rules, one thread: what the server adds is everything above this.
"""
import json, os, random, shutil, sqlite3, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 8
work = tempfile.mkdtemp(prefix="porteiro-floor-")
base = os.path.join(work, "schema.db")
subprocess.run(
    [os.path.join(root, "target/release/porteiro"), "migrate", "up"],
    cwd=work, env={**os.environ, "DATABASE_URL": "sqlite://%s?mode=rwc" % base},
    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
body_tpl = open(os.path.join(root, "rules/fixtures/purchase_approved.json")).read()


def conn(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("PRAGMA foreign_keys=ON")
    return c


def raw_rate():
    """One commit per row, a webhook-sized body, as run.sh's Python row."""
    raw = os.path.join(work, "raw.db")
    for f in (raw, raw + "-wal", raw + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    r = conn(raw)
    r.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    n, t = 0, time.time()
    while time.time() - t < secs:
        r.execute("INSERT INTO raw VALUES (?, ?)", ("raw-%d" % n, body_tpl))
        n += 1
    r.close()
    return n / (time.time() - t)


def run(group, batch, ingest_only, random_keys):
    """Events per second through the inbox (and the worker's writes unless ingest_only). Buyers'
    e-mails and sources in the order of the events, or random (as real ones are: every insert
    into their unique indexes then dirties a page of its own, written to the WAL at the commit)."""
    db = os.path.join(work, "floor.db")
    for f in (db, db + "-wal", db + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    # A copy of the migrated schema (through SQLite: the migration may still sit in its WAL).
    with sqlite3.connect(base) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    c = conn(db)
    now = "2026-12-01T12:00:00+00:00"
    c.execute("INSERT INTO app (id, slug, name, webhook_key, created_at, updated_at) VALUES (1,'default','d','k',?,?)", (now, now))

    body = body_tpl.encode()
    seq = 0
    done = 0
    t = time.time()
    while time.time() - t < secs:
        # Ingest: one group commit.
        group_rows = []
        for _ in range(group):
            seq += 1
            group_rows.append((1, "hotmart", "webhook", "ev-%d" % seq, "PURCHASE_APPROVED", "v2", body, "{}", now, "pending"))
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT INTO webhook_event (app_id, provider, origin, event_id, event_type, format, raw_body, headers, received_at, status) "
            "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING", group_rows)
        c.execute("COMMIT")
        if ingest_only:
            done += group
            continue
        # Worker: batches of 16 until the inbox is empty.
        while True:
            pend = c.execute(
                "SELECT id, raw_body FROM webhook_event WHERE status='pending' ORDER BY id LIMIT ?", (batch,)).fetchall()
            if not pend:
                break
            ids = [p[0] for p in pend]
            q = ",".join("?" * len(ids))
            c.execute("BEGIN IMMEDIATE")
            c.execute("SELECT id FROM webhook_event WHERE id IN (%s) AND status='pending'" % q, ids).fetchall()
            if random_keys:
                sources = ["HP%016x" % random.getrandbits(64) for _ in ids]
                emails = ["%016x@example.com" % random.getrandbits(64) for _ in ids]
            else:
                sources = ["src-%012d" % i for i in ids]
                emails = ["b%012d@example.com" % i for i in ids]
            qs = ",".join("?" * len(sources))
            c.execute("SELECT * FROM entitlement WHERE app_id=1 AND source IN (%s)" % qs, sources).fetchall()
            c.execute("SELECT * FROM access_fact WHERE app_id=1 AND source IN (%s)" % qs, sources).fetchall()
            c.execute("SELECT * FROM buyer WHERE app_id=1 AND email IN (%s)" % qs, emails).fetchall()
            c.execute("SELECT * FROM buyer_subscriber_code WHERE app_id=1 AND code IN (%s)" % qs, sources).fetchall()
            got = c.execute(
                "INSERT INTO buyer (app_id, email, name, created_at, updated_at) VALUES %s RETURNING id, email"
                % ",".join(["(1,?,?,?,?)"] * len(ids)),
                [x for e in emails for x in (e, "Buyer Name", now, now)]).fetchall()
            bid = {e: i for (i, e) in got}
            c.execute(
                "INSERT INTO entitlement (app_id, buyer_id, target_kind, target_id, source, status, granted_at, expires_at, last_event_id, rule_version, reason, created_at, updated_at, version) VALUES %s "
                "ON CONFLICT (app_id, source) DO UPDATE SET status=excluded.status, version=excluded.version RETURNING id, app_id, source"
                % ",".join(["(1,?,'plan',1,?,'active',?,?,?,1,'PURCHASE_APPROVED',?,?,1)"] * len(ids)),
                [x for i, e, s in zip(ids, emails, sources) for x in (bid[e], s, now, now, i, now, now)]).fetchall()
            c.execute(
                "INSERT INTO access_fact (app_id, source, effect, event_type, fact_key, \"transaction\", occurred_at, until, email, target_kind, target_id, webhook_event_id, rule_version, actor, reason, created_at) VALUES %s"
                % ",".join(["(1,?,'grant','PURCHASE_APPROVED',?,?,?,?,?,'plan',1,?,1,'rules','approved',?)"] * len(ids)),
                [x for i, e, s in zip(ids, emails, sources) for x in (s, "k-%d" % i, "HP%d" % i, now, now, e, i, now)])
            c.execute(
                "INSERT INTO buyer_subscriber_code (app_id, buyer_id, code, created_at) VALUES %s"
                % ",".join(["(1,?,?,?)"] * len(ids)),
                [x for e, s in zip(emails, sources) for x in (bid[e], s, now)])
            snap = json.dumps({"status": "active", "target": "plan:1", "expiresAt": now, "email": "b@example.com", "version": 1, "reason": "PURCHASE_APPROVED"})
            c.execute(
                "INSERT INTO audit_log (app_id, actor, action, target, before, after, reason, created_at) VALUES %s"
                % ",".join(["(1,'rules','access.granted',?,NULL,?,'PURCHASE_APPROVED',?)"] * len(ids)),
                [x for i in ids for x in ("entitlement:%d" % i, snap, now)])
            decision = json.dumps({"action": "grant", "until": now, "reason": "approved"})
            c.execute(
                "WITH v(id, status, decision, email, source_key) AS (VALUES %s) UPDATE webhook_event SET status=v.status, decision=v.decision, email=v.email, source_key=v.source_key, target_kind='plan', target_id=1, attempts=1, processed_at='%s' FROM v WHERE webhook_event.id=v.id"
                % (",".join(["(?,?,?,?,?)"] * len(ids)), now),
                [x for i, e, s in zip(ids, emails, sources) for x in (i, "processed", decision, e, s)])
            c.execute(
                "INSERT INTO rollup (app_id, family, bucket, n) VALUES (1,'changes','2026-12-01T12|access.granted',?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
                (len(ids),))
            c.execute("COMMIT")
            done += len(ids)
    c.close()
    return done / (time.time() - t)


rows = [
    ("ingest alone, groups of 31", 31, 16, True, False),
    ("ingest alone, groups of 8", 8, 16, True, False),
    ("end to end, 31 / 16, keys in order", 31, 16, False, False),
    ("end to end, 31 / 16, random keys", 31, 16, False, True),
    ("end to end, 64 / 64, keys in order", 64, 64, False, False),
]
print("SQLite %s alone, the server's schema, WAL + synchronous=FULL, %g s a row" % (sqlite3.sqlite_version, secs))
for label, group, batch, ingest_only, random_keys in rows:
    raw = raw_rate()
    rate = run(group, batch, ingest_only, random_keys)
    print("%-42s %8.0f events/s = %.2fx raw one-commit-each (%.0f/s just before)" % (label, rate, rate / raw, raw))
shutil.rmtree(work, ignore_errors=True)
