-- One credential per request, drawn at random from the file named by $CREDENTIALS.
-- $HEADER is X-API-Key, or Authorization (then "Bearer " is prepended).
local credentials = {}
for line in io.lines(os.getenv("CREDENTIALS")) do
  credentials[#credentials + 1] = line
end
local header = os.getenv("HEADER") or "X-API-Key"
local path = os.getenv("REQUEST_PATH") or "/v1/accounts"
math.randomseed(os.time())

request = function()
  local value = credentials[math.random(#credentials)]
  if header == "Authorization" then
    value = "Bearer " .. value
  end
  return wrk.format("GET", path, { [header] = value })
end
