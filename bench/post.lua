-- bench/post.lua - wrk script: POST a JSON body to the URL given to wrk.
-- The body is read from the file named by BENCH_BODY_FILE (bench.mjs
-- writes bench/results/bodies/chat.json); without it, a small chat.
local body = '{"model":"bench:1b","messages":[{"role":"user","content":"Say hello."}],"stream":false,"options":{"num_predict":8}}'
local path = os.getenv("BENCH_BODY_FILE")
if path ~= nil and path ~= "" then
  local f = assert(io.open(path, "rb"))
  body = f:read("*a"):gsub("%s+$", "")
  f:close()
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
