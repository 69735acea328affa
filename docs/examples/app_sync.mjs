// An app that keeps its own copy of who may open what, from Porteiro's app API (Node 18+ or a
// browser-free runtime with fetch). PORTEIRO_URL and PORTEIRO_KEY (a key with the access:read
// and changes:read scopes) come from the environment; PLAN is a plan's id or key.
//
//     node app_sync.mjs ana@example.com
const BASE = (process.env.PORTEIRO_URL ?? "http://127.0.0.1:8080") + "/v1";
const KEY = process.env.PORTEIRO_KEY;
const PLAN = process.env.PLAN ?? "1";

async function get(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null));
  const res = await fetch(`${BASE}${path}?${query}`, { headers: { Authorization: `Bearer ${KEY}` } });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

// 1. May this buyer open the plan now?
const email = process.argv[2];
const check = await get("/access/check", { email, plan: PLAN });
console.log("check", email, check.active, check.status, check.willRenew);

// 2. Everyone who holds it, a page at a time.
const holders = [];
for (let after = null; ; ) {
  const page = await get(`/plans/${PLAN}/holders`, { after, limit: 100 });
  holders.push(...page.data.map((h) => h.email));
  after = page.nextCursor;
  if (after == null) break;
}
console.log("holders", holders.length);

// 3. Catch up on every change since the last cursor kept, then rely on notifications.
let cursor = "0";
const versions = new Map();
for (;;) {
  const page = await get("/changes", { after: cursor, limit: 1000 });
  for (const change of page.data) {
    const e = change.data.entitlement;
    versions.set(e.id, Math.max(versions.get(e.id) ?? 0, e.version));
  }
  cursor = page.nextCursor;
  if (!page.hasMore) break;
}
console.log("changes", versions.size, "cursor", cursor);
