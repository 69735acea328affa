"""An app that keeps its own copy of who may open what, from Porteiro's app API.

Standard library only. PORTEIRO_URL and PORTEIRO_KEY (a key with the access:read and
changes:read scopes) come from the environment; PLAN is a plan's id or key.

    python3 app_sync.py ana@example.com
"""
import json
import os
import sys
import urllib.parse
import urllib.request

BASE = os.environ.get("PORTEIRO_URL", "http://127.0.0.1:8080") + "/v1"
KEY = os.environ["PORTEIRO_KEY"]
PLAN = os.environ.get("PLAN", "1")


def get(path, **params):
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(f"{BASE}{path}?{query}", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req) as res:
        return json.load(res)


# 1. May this buyer open the plan now?
email = sys.argv[1]
check = get("/access/check", email=email, plan=PLAN)
print("check", email, check["active"], check["status"], check["willRenew"])

# 2. Everyone who holds it, a page at a time.
holders, after = [], None
while True:
    page = get(f"/plans/{PLAN}/holders", after=after, limit=100)
    holders += [h["email"] for h in page["data"]]
    after = page["nextCursor"]
    if after is None:
        break
print("holders", len(holders))

# 3. Catch up on every change since the last cursor kept (0: from the start), then rely on
#    notifications; keep the highest version of each entitlement.
cursor, versions = "0", {}
while True:
    page = get("/changes", after=cursor, limit=1000)
    for change in page["data"]:
        e = change["data"]["entitlement"]
        versions[e["id"]] = max(versions.get(e["id"], 0), e["version"])
    cursor = page["nextCursor"]
    if not page["hasMore"]:
        break
print("changes", len(versions), "cursor", cursor)
