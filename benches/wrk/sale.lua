-- wrk script: every request is a new PURCHASE_APPROVED sale (its own event id, transaction,
-- subscriber and buyer), built from the template at $SALE_TEMPLATE, whose "IDX" marks are
-- replaced by "<run>t<thread>n<request>".
local template = io.open(os.getenv("SALE_TEMPLATE")):read("*a")
local run = os.getenv("RUN") or "0"
local threads = 0
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-HOTMART-HOTTOK"] = os.getenv("HOTTOK")
end

function request()
  counter = counter + 1
  local body = template:gsub("IDX", run .. "t" .. tid .. "n" .. counter)
  return wrk.format(nil, nil, nil, body)
end
