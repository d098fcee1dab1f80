"""The bus's Lua scripts: each changes several keys of one hash tag atomically."""

# KEYS: frames, seq counter, results, reader. ARGV: maxlen (0 = no trim), bell prefix ("" = none), camera,
# then field, value, ...
# A counter that is missing while the camera has frames or results (some client deleted it) starts again
# after the newest seq in them: seqs are never given twice (the workers' once-only bitmap is keyed by seq).
# The doorbell (one Redis only: its keys are the reader's, not the camera's): the camera's reader (the worker
# that owns it) is rung once until it answers: its name goes on the reader's bell list when it is not in the
# reader's rung set. Rung with pcall: a bell key some client spoilt never stops a frame.
ADD_FRAME = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local last = 0
  for _, key in ipairs({KEYS[1], KEYS[3]}) do
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    if newest then
      local fields = newest[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'seq' then last = math.max(last, tonumber(fields[i + 1]) or 0) end
      end
    end
  end
  redis.call('SET', KEYS[2], last)
end
local seq = redis.call('INCR', KEYS[2])
local args = {KEYS[1]}
if tonumber(ARGV[1]) > 0 then
  args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = ARGV[1]
end
args[#args + 1] = '*'; args[#args + 1] = 'seq'; args[#args + 1] = seq
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', unpack(args))
if ARGV[2] ~= '' then
  local reader = redis.pcall('GET', KEYS[4])
  if type(reader) == 'string' and #reader <= 200 then
    local bell = ARGV[2] .. reader
    if redis.pcall('SADD', bell .. ':rung', ARGV[3]) == 1 then redis.pcall('RPUSH', bell, ARGV[3]) end
  end
end
return {seq, id}
"""

# KEYS: results, seen bitmap, frames. ARGV: seq bit, ttl, maxlen, group, entry id, field, value, ...
# A camera whose frames stream is gone was forgotten (a browser that left): its result is dropped (-1)
# rather than creating its keys again.
PUBLISH_RESULT = """
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local first = redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 0
if first then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  local args = {KEYS[1], 'MAXLEN', '~', ARGV[3], '*'}
  for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
  redis.call('XADD', unpack(args))
end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[3], ARGV[5])
return first and 1 or 0
"""


# KEYS: record. ARGV: field, value, ... Written only while the record exists (a deleted video stays deleted).
UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: live, owners, leaving, sids. ARGV: camera, address, now, most cameras, most per address, client id.
# 1: a known camera (its time and client updated: a tab that reconnected); 2: admitted; -1: too many browser
# cameras; -2: too many for the address.
ADMIT_WEBCAM = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
local mine = 0
for _, owner in ipairs(redis.call('HVALS', KEYS[2])) do
  if owner == ARGV[2] then mine = mine + 1 end
end
if mine >= tonumber(ARGV[5]) then return -2 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
return 2
"""

# KEYS: games, game dates. ARGV: name, score, when, names kept. A name's best game only (and its date).
RECORD_GAME = """
local best = redis.call('ZSCORE', KEYS[1], ARGV[1])
if best and tonumber(best) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local n = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if n > 0 then
  for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, n - 1)) do redis.call('HDEL', KEYS[2], name) end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
end
return 1
"""

# KEYS: live, owners, shared, leaving, sids. ARGV: camera, now. 1 if the camera was live.
LEAVE_WEBCAM = """
local was = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if was == 1 then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
return was
"""


# KEYS: a lease. ARGV: owner, ttl ms. Renews the lease only if `owner` holds it: 1, else 0.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: a camera's reader. ARGV: the worker giving it up, its new reader. 1 if handed over, 0 if another
# worker had become its reader meanwhile.
HAND_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: a lease. ARGV: owner. Deletes the lease only if `owner` holds it.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the camera registry. ARGV: camera, source JSON, most, replace (1/0). 1 added, 0 the name is taken,
# -1 the registry is full (a camera is a process: the cap keeps a client from starting thousands).
ADD_SOURCE = """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if exists and ARGV[4] ~= '1' then return 0 end
if not exists and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
