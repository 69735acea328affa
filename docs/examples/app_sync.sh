#!/bin/sh
# The same three calls with curl. PORTEIRO_URL, PORTEIRO_KEY and PLAN as for app_sync.py.
set -eu
BASE="${PORTEIRO_URL:-http://127.0.0.1:8080}/v1"
AUTH="Authorization: Bearer $PORTEIRO_KEY"
PLAN="${PLAN:-1}"
# 1. May this buyer open the plan now?
curl -fsS -H "$AUTH" "$BASE/access/check?email=$1&plan=$PLAN"; echo
# 2. Who holds it (first page; follow nextCursor with &after=…).
curl -fsS -H "$AUTH" "$BASE/plans/$PLAN/holders?limit=100&includeTotal=true"; echo
# 3. What changed since cursor 0 (follow nextCursor while hasMore).
curl -fsS -H "$AUTH" "$BASE/changes?after=0&limit=1000"; echo
