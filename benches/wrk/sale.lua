-- wrk script: every request is a new PURCHASE_APPROVED sale (its own event id, transaction,
-- subscriber and buyer), built from the template at $SALE_TEMPLATE, whose "IDX" marks are
-- replaced by "<run>t<thread>n<request>", or with KEYS=random by a random 64-bit hex string (as
-- real buyers' e-mails and transaction codes are: random against the order of the indexes).
local template = io.open(os.getenv("SALE_TEMPLATE")):read("*a")
local random_keys = os.getenv("KEYS") == "random"
local run = os.getenv("RUN") or "0"
local threads = 0
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-HOTMART-HOTTOK"] = os.getenv("HOTTOK")
end

function request()
  counter = counter + 1
  local key = run .. "t" .. tid .. "n" .. counter
  if random_keys then
    key = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  end
  local body = template:gsub("IDX", key)
  return wrk.format(nil, nil, nil, body)
end
