#!/usr/bin/env python3
"""The apps' REST API against its own OpenAPI document, with schemathesis (PyPI).

Starts the server (the debug binary, SQLite in a temporary directory), gives the default app
a plan, a package, an API key and real buyers (the Hotmart fixtures, dated now), then runs
every schemathesis check for a bounded time with that key. Fails on any 5xx or response that
breaks the document. Usage: contract.py BINARY SCHEMATHESIS [SECONDS]
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "rules" / "fixtures"
HOTTOK = "CONTRACTHOTTOKabcdefghijklmnopqrstuv0001"


def main() -> int:
    binary, schemathesis = str(pathlib.Path(sys.argv[1]).resolve()), sys.argv[2]
    seconds = sys.argv[3] if len(sys.argv) > 3 else "120"
    work = pathlib.Path(tempfile.mkdtemp(prefix="porteiro-contract-"))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite://{work}/p.db?mode=rwc",
        PORTEIRO_DATA_DIR=str(work / "data"),
        PORTEIRO_BIND="127.0.0.1:0",
        RUST_LOG="warn",
    )
    server = subprocess.Popen([binary, "serve"], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    try:
        addr = None
        for line in server.stderr:
            if line.startswith("porteiro listening on "):
                addr = line.split("porteiro listening on ", 1)[1].strip()
                break
        if not addr:
            print("the server did not start", file=sys.stderr)
            return 1
        # Keep reading its output so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        base = addr if addr.startswith("http") else f"http://{addr}"
        token = subprocess.run(
            [binary, "token", "--app", "default", "--role", "admin"],
            cwd=work, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()
        key = seed(base, token)
        cmd = [
            schemathesis, "run", f"{base}/v1/openapi.json",
            "--url", f"{base}/v1",
            "--checks", "all",
            # Rules across parameters (exactly one of email and subscriberCode, of package and
            # plan; at most 500 buyers per lookup) cannot be written in OpenAPI 3.0 query
            # parameters: the server answers them with the documented 400, which this check
            # would call a valid request rejected.
            "--exclude-checks", "positive_data_acceptance",
            # schemathesis 4.32's coverage phase crashes inside Python's ast module (a tool
            # bug, "AST constructor recursion depth mismatch"); examples and fuzzing run.
            "--phases", "examples,fuzzing",
            "--header", f"Authorization: Bearer {key}",
            "--max-time", seconds,
            "--workers", "2",
        ]
        print("==", " ".join(c if "Bearer" not in c else "Authorization: Bearer pk_…" for c in cmd), flush=True)
        return subprocess.run(cmd, env=dict(os.environ, NO_COLOR="1")).returncode
    finally:
        server.kill()
        server.wait()


def gql(base: str, token: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    body = json.load(urllib.request.urlopen(req))
    if body.get("errors"):
        raise SystemExit(f"GraphQL refused {query}: {body['errors']}")
    return body["data"]


def fixture(name: str, edits: dict) -> bytes:
    v = json.loads((FIXTURES / name).read_text())
    for path, value in edits.items():
        cur = v
        parts = path.split(".")
        for p in parts[:-1]:
            cur = cur[p]
        cur[parts[-1]] = value
    return json.dumps(v).encode()


def seed(base: str, token: str) -> str:
    gql(base, token, "mutation($h: String!) { saveHotmartIntegration(input: {hottok: $h}) { verified } }", {"h": HOTTOK})
    gql(base, token, 'mutation { createSubscriptionPlan(input: {name: "Mensal", key: "mensal", hotmartProductIds: ["4100001"]}) { id } }')
    gql(base, token, 'mutation { createProductPackage(input: {name: "Curso", key: "curso", hotmartProductIds: ["5200001"]}) { id } }')
    key = gql(base, token, 'mutation { createApiKey(name: "contract", scopes: ["access:read", "changes:read"]) { secret } }')
    shown = gql(base, token, "{ hotmartIntegration { webhookUrl } }")["hotmartIntegration"]["webhookUrl"]
    # Bound to port 0, the URL shown to admins names no port: keep its path.
    url = base + "/webhooks/" + shown.split("/webhooks/", 1)[1]
    now = int(time.time() * 1000)
    day = 86_400_000
    deliveries = []
    for i in range(20):
        email = f"comprador{i}@example.com"
        deliveries.append(fixture("purchase_approved.json", {
            "id": f"contract-sub-{i}", "creation_date": now - day, "data.purchase.approved_date": now - day,
            "data.purchase.transaction": f"HPC{i:012d}", "data.purchase.date_next_charge": now + 29 * day,
            "data.subscription.subscriber.code": f"CT{i:06d}", "data.buyer.email": email,
        }))
        deliveries.append(fixture("purchase_approved_single.json", {
            "id": f"contract-one-{i}", "creation_date": now - day, "data.purchase.approved_date": now - day,
            "data.purchase.transaction": f"HPO{i:012d}", "data.product.id": 5200001, "data.buyer.email": email,
        }))
    # The documented example buyer, and one whose subscription was refunded.
    deliveries.append(fixture("purchase_approved.json", {
        "id": "contract-ana", "creation_date": now - day, "data.purchase.approved_date": now - day,
        "data.purchase.date_next_charge": now + 29 * day,
    }))
    deliveries.append(fixture("purchase_refunded.json", {"id": "contract-refund", "creation_date": now}))
    for body in deliveries:
        req = urllib.request.Request(url, data=body, headers={
            "Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK,
        })
        urllib.request.urlopen(req).read()
    # The worker applies them in the background: wait until every one is settled.
    for _ in range(100):
        events = gql(base, token, "{ webhookEvents(first: 100) { nodes { status } } }")["webhookEvents"]["nodes"]
        if events and all(e["status"] != "pending" for e in events):
            break
        time.sleep(0.1)
    return key["createApiKey"]["secret"]


if __name__ == "__main__":
    sys.exit(main())
