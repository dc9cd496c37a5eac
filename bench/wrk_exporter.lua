-- wrk script for the snmp_exporter phase of bench/poll_bench.py: cycles through the targets named
-- in the file given after `--`, one /snmp?target=...&module=bench_ups10 request each, and counts
-- the answers that hold the values (an unanswered target still gets a 200 with snmp_error).
local targets = {}
local next_target = 0
ok = 0
bad = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then targets[#targets + 1] = line end
  end
end

function request()
  next_target = next_target % #targets + 1
  return wrk.format("GET", wrk.path .. "?module=bench_ups10&target=" .. targets[next_target])
end

function response(status, headers, body)
  if status == 200 and string.find(body, "\nupsBatteryVoltage ", 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
  end
  b = b + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("UWBENCH ok=%d bad=%d requests=%d\n", o, b, summary.requests))
end
