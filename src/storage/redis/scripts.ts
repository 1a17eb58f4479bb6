/**
 * The Redis limiter's Lua scripts, as strings (tsc copies no .lua files). Each runs atomically
 * and reads the time only from Redis (`TIME`), so gateways whose clocks disagree still share one
 * window. A key's state lives under one hash tag, `gw:{<keyId>}:`, so a Redis Cluster keeps it
 * in one slot; keys beyond KEYS are derived from that same prefix (ARGV[1]).
 *
 *   req        sorted set: the requests of the last minute (member: reservation id, score: ms)
 *   tok        sorted set: the token entries of the last minute; tok:a hash: their amounts, '#' their sum
 *   cc         sorted set: concurrency slots (score: lease end)
 *   lease      sorted set: reservations in flight (score: lease end)
 *   r:<id>     hash: one reservation (day, amount, tok: 1 when it holds a token entry)
 *   b:<day>    hash: the day's budget (spent, reserved)
 */

const COMMON = `
local WINDOW = 60000
local DAY_TTL = 172800000
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pruneCount(z, edge)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', edge)
  return redis.call('ZCARD', z)
end
local function pruneSum(z, a, edge)
  while true do
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', edge, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local amounts = redis.call('HMGET', a, unpack(old))
    local freed = 0
    for _, v in ipairs(amounts) do freed = freed + (tonumber(v) or 0) end
    redis.call('HDEL', a, unpack(old))
    redis.call('ZREM', z, unpack(old))
    redis.call('HINCRBY', a, '#', -freed)
  end
  return tonumber(redis.call('HGET', a, '#') or '0')
end
local function oldestReset(z, now)
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return tonumber(first[2]) + WINDOW - now
end
-- Reservations whose gateway stopped extending their lease: charged in full (money-safe),
-- their slots freed. Returns id, amount pairs for the gateway to log.
local function reap(P, now)
  local out = {}
  local dead = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', now, 'LIMIT', 0, 500)
  for _, id in ipairs(dead) do
    local r = redis.call('HMGET', P .. 'r:' .. id, 'day', 'amount')
    if r[1] then
      local b = P .. 'b:' .. r[1]
      if redis.call('EXISTS', b) == 1 then
        redis.call('HINCRBY', b, 'reserved', -tonumber(r[2]))
        redis.call('HINCRBY', b, 'spent', tonumber(r[2]))
      end
      redis.call('DEL', P .. 'r:' .. id)
      out[#out + 1] = id
      out[#out + 1] = r[2]
    end
    redis.call('ZREM', P .. 'lease', id)
    redis.call('ZREM', P .. 'cc', id)
  end
  redis.call('ZREMRANGEBYSCORE', P .. 'cc', '-inf', now)
  return out
end
`

/** Result status of ADMIT (first element). */
export const ADMIT = { ok: 0, requests: 1, tokens: 2, budget: 3, seed: 4 } as const

/**
 * Admits one request against all of a key's limits, all or nothing.
 * KEYS: req, tok, tok:a, cc, lease, b:<day>, r:<id>
 * ARGV: prefix, id, leaseMs, rpm, tpm, daily, concurrency (-1: none), amount, day, seed spent ('' unknown)
 * Returns {status, detail, reqUsed, reqReset, tokUsed, tokReset, spent, reserved, slot, now, expired id/amount pairs...};
 * detail is the wait in ms of a refusal (-1: never fits).
 */
export const ADMIT_SCRIPT = `${COMMON}
local P, id = ARGV[1], ARGV[2]
local lease, rpm, tpm, daily, conc, amount = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = nowMs()
local edge = now - WINDOW
local expired = reap(P, now)
local reqUsed = pruneCount(KEYS[1], edge)
local tokUsed = pruneSum(KEYS[2], KEYS[3], edge)
local b = KEYS[6]
local spent, reserved, slot = 0, 0, 0
local function res(status, detail)
  local out = {status, detail, reqUsed, oldestReset(KEYS[1], now), tokUsed, oldestReset(KEYS[2], now), spent, reserved, slot, now}
  for _, v in ipairs(expired) do out[#out + 1] = v end
  return out
end
if redis.call('EXISTS', b) == 0 then
  if ARGV[10] == '' then return res(4, 0) end
  redis.call('HSET', b, 'spent', ARGV[10], 'reserved', 0)
  redis.call('PEXPIRE', b, DAY_TTL)
end
local v = redis.call('HMGET', b, 'spent', 'reserved')
spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
if rpm >= 0 and reqUsed + 1 > rpm then
  local at = redis.call('ZRANGE', KEYS[1], reqUsed - rpm, reqUsed - rpm, 'WITHSCORES')
  return res(1, tonumber(at[2]) + WINDOW - now)
end
if daily >= 0 and amount > daily - spent - reserved then return res(3, 0) end
if tpm >= 0 and tokUsed + amount > tpm then
  if amount > tpm then return res(2, -1) end
  local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local freed, wait = 0, WINDOW
  for i = 1, #all, 2 do
    freed = freed + (tonumber(redis.call('HGET', KEYS[3], all[i])) or 0)
    if tokUsed - freed + amount <= tpm then
      wait = tonumber(all[i + 1]) + WINDOW - now
      break
    end
  end
  return res(2, wait)
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], WINDOW + 1000)
  reqUsed = reqUsed + 1
end
local tok = 0
if tpm >= 0 then
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', KEYS[3], id, amount)
  redis.call('HINCRBY', KEYS[3], '#', amount)
  redis.call('PEXPIRE', KEYS[2], WINDOW + 1000)
  redis.call('PEXPIRE', KEYS[3], WINDOW + 1000)
  tokUsed = tokUsed + amount
  tok = 1
end
redis.call('HINCRBY', b, 'reserved', amount)
reserved = reserved + amount
redis.call('HSET', KEYS[7], 'day', ARGV[9], 'amount', amount, 'tok', tok)
redis.call('PEXPIRE', KEYS[7], DAY_TTL)
redis.call('ZADD', KEYS[5], now + lease, id)
redis.call('PEXPIRE', KEYS[5], DAY_TTL)
if conc < 0 then
  slot = 1
elseif redis.call('ZCARD', KEYS[4]) < conc then
  redis.call('ZADD', KEYS[4], now + lease, id)
  redis.call('PEXPIRE', KEYS[4], DAY_TTL)
  slot = 1
end
return res(0, 0)
`

/**
 * Takes a concurrency slot for an admitted reservation if one is free.
 * KEYS: cc, r:<id>   ARGV: prefix, id, leaseMs, concurrency
 * Returns {1 taken | 0 full | -1 reservation gone, expired id/amount pairs...}.
 */
export const SLOT_SCRIPT = `${COMMON}
local P, id, lease, conc = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = nowMs()
local out = {0}
for _, v in ipairs(reap(P, now)) do out[#out + 1] = v end
if redis.call('EXISTS', KEYS[2]) == 0 then
  out[1] = -1
elseif redis.call('ZSCORE', KEYS[1], id) or redis.call('ZCARD', KEYS[1]) < conc then
  redis.call('ZADD', KEYS[1], now + lease, id)
  redis.call('PEXPIRE', KEYS[1], DAY_TTL)
  out[1] = 1
end
return out
`

/**
 * Settles a reservation to what was used, once: a second settle of the same id finds no
 * reservation and changes nothing. KEYS: r:<id>   ARGV: prefix, id, used. Returns 1 or 0.
 */
export const SETTLE_SCRIPT = `
local P, id, used = ARGV[1], ARGV[2], tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'day', 'amount', 'tok')
if not r[1] then return 0 end
local amount = tonumber(r[2])
local b = P .. 'b:' .. r[1]
if redis.call('EXISTS', b) == 1 then
  redis.call('HINCRBY', b, 'reserved', -amount)
  redis.call('HINCRBY', b, 'spent', used)
end
if r[3] == '1' then
  local old = redis.call('HGET', P .. 'tok:a', id)
  if old then
    redis.call('HSET', P .. 'tok:a', id, used)
    redis.call('HINCRBY', P .. 'tok:a', '#', used - tonumber(old))
  end
end
redis.call('ZREM', P .. 'cc', id)
redis.call('ZREM', P .. 'lease', id)
redis.call('DEL', KEYS[1])
return 1
`

/** Extends a live reservation's lease (and its slot's). KEYS: r:<id>   ARGV: prefix, id, leaseMs. Returns 1, or 0 if gone. */
export const EXTEND_SCRIPT = `${COMMON}
local P, id, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = nowMs() + lease
redis.call('ZADD', P .. 'lease', 'XX', t, id)
redis.call('ZADD', P .. 'cc', 'XX', t, id)
return 1
`

/**
 * A per-address window (requests, or failed authentications) of one per minute each.
 * KEYS: the window   ARGV: limit, id. Returns -1 when counted, else the wait in ms.
 */
export const ADDRESS_SCRIPT = `${COMMON}
local now = nowMs()
local used = pruneCount(KEYS[1], now - WINDOW)
local limit = tonumber(ARGV[1])
if used + 1 > limit then
  local at = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
  return tonumber(at[2]) + WINDOW - now
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], WINDOW + 1000)
return -1
`

/**
 * Shrinks reservations whose prompts were held at their byte bound to the counted figure
 * (budget held and token entry alike); gone ones are skipped.
 * KEYS: r:<id> for each   ARGV: prefix, day-budget-less pairs: id, amount, id, amount, ...
 */
export const RESIZE_SCRIPT = `
local P = ARGV[1]
for i = 1, #KEYS do
  local id, amount = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local r = redis.call('HMGET', KEYS[i], 'day', 'amount', 'tok')
  if r[1] then
    local delta = amount - tonumber(r[2])
    redis.call('HSET', KEYS[i], 'amount', amount)
    local b = P .. 'b:' .. r[1]
    if redis.call('EXISTS', b) == 1 then redis.call('HINCRBY', b, 'reserved', delta) end
    if r[3] == '1' and redis.call('HEXISTS', P .. 'tok:a', id) == 1 then
      redis.call('HINCRBY', P .. 'tok:a', id, delta)
      redis.call('HINCRBY', P .. 'tok:a', '#', delta)
    end
  end
end
return 1
`
