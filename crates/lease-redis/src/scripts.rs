//! The Lua scripts: each compare-and-set runs as one script, atomically on the server.
//!
//! Every value reaches a script as an argument (`KEYS`, `ARGV`); no configured or stored text
//! is ever put into script source. Writes answer `{'won', <the lease hash>}`, `{'lost'}` or
//! (checkpoints) `{'regression', stored checkpoint, stored sub-sequence}`.

use redis::Script;

/// Helpers shared by the scripts: holding at a counter (the checkpoint owner during a
/// hand-off, otherwise the owner), and checkpoint progress compared as
/// numbers (canonical decimals: the longer is larger, equal lengths compare byte by byte; Lua's
/// `<` on strings follows the locale, so it is not used). The one negative sub-sequence number
/// is -1 (before a record), below every other.
const HELPERS: &str = r"
local function owned_at(key, counter, holder)
  local v = redis.call('HMGET', key, 'counter', 'owner', 'cp_owner')
  return v[1] == counter and (v[3] or v[2]) == holder
end
local function cmp_num(a, b)
  if #a ~= #b then
    if #a < #b then return -1 else return 1 end
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 else return 1 end
    end
  end
  return 0
end
local function rank(cp)
  if cp == 'SHARD_END' then return 2 end
  if cp == 'TRIM_HORIZON' or cp == 'LATEST' or cp == 'AT_TIMESTAMP' then return 0 end
  return 1
end
local function cmp_progress(cp_a, sub_a, cp_b, sub_b)
  local ra, rb = rank(cp_a), rank(cp_b)
  if ra ~= rb then
    if ra < rb then return -1 else return 1 end
  end
  if ra ~= 1 then return 0 end
  local c = cmp_num(cp_a, cp_b)
  if c ~= 0 then return c end
  if sub_a == sub_b then return 0 end
  if sub_a == '-1' then return -1 end
  if sub_b == '-1' then return 1 end
  return cmp_num(sub_a, sub_b)
end
local function won(key)
  return {'won', unpack(redis.call('HGETALL', key))}
end
";

/// KEYS: the membership hash. ARGV: worker, expected heartbeat. Answers the new heartbeat, or
/// -1 when it was not the one expected.
const HEARTBEAT_AT: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
return -1
";

/// KEYS: the membership hash. ARGV: worker, expected heartbeat. Answers 1 when removed.
const LEAVE: &str = r"
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
";

/// KEYS: lease hash, index. ARGV: lease key, then field/value pairs.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'lost'} end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return won(KEYS[1])
";

/// KEYS: lease hash. ARGV: expected counter, new owner.
const TAKE: &str = r"
if redis.call('HGET', KEYS[1], 'counter') ~= ARGV[1] then return {'lost'} end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[1], 'switches', 1)
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('HDEL', KEYS[1], 'cp_owner')
redis.call('HINCRBY', KEYS[1], 'counter', 1)
return won(KEYS[1])
";

/// KEYS: lease hash. ARGV: expected counter, owner. Answers the new counter, or nil.
const RENEW: &str = r"
if not owned_at(KEYS[1], ARGV[1], ARGV[2]) then return false end
return redis.call('HINCRBY', KEYS[1], 'counter', 1)
";

/// KEYS: lease hashes. ARGV: owner, then the expected counter of each key. Answers one new
/// counter per key, -1 where the lease was not renewed. Keys are handled in order, so a key
/// given twice behaves as two renewals in sequence.
const RENEW_MANY: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  if owned_at(key, ARGV[i + 1], ARGV[1]) then
    out[i] = redis.call('HINCRBY', key, 'counter', 1)
  else
    out[i] = -1
  end
end
return out
";

/// KEYS: lease hash. ARGV: expected counter, holder. During a hand-off the lease goes to its
/// owner (the checkpoint owner is removed), otherwise to nobody.
const EVICT: &str = r"
if not owned_at(KEYS[1], ARGV[1], ARGV[2]) then return {'lost'} end
if redis.call('HDEL', KEYS[1], 'cp_owner') == 0 then
  redis.call('HDEL', KEYS[1], 'owner')
end
redis.call('HINCRBY', KEYS[1], 'counter', 1)
return won(KEYS[1])
";

/// KEYS: lease hash. ARGV: expected counter, holder, new owner.
const REQUEST_HANDOFF: &str = r"
local v = redis.call('HMGET', KEYS[1], 'counter', 'owner', 'cp_owner')
if v[1] ~= ARGV[1] or v[2] ~= ARGV[2] or v[3] then return {'lost'} end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'cp_owner', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'switches', 1)
redis.call('HINCRBY', KEYS[1], 'counter', 1)
return won(KEYS[1])
";

/// KEYS: lease hash. ARGV: expected counter, owner, checkpoint, sub-sequence, pending
/// checkpoint, pending sub-sequence, pending state, has pending ('1'/'0'), has state ('1'/'0').
const CHECKPOINT: &str = r"
if not owned_at(KEYS[1], ARGV[1], ARGV[2]) then return {'lost'} end
local stored = redis.call('HMGET', KEYS[1], 'cp', 'cp_sub')
local cp, sub = stored[1] or '', stored[2] or '0'
if cmp_progress(ARGV[3], ARGV[4], cp, sub) < 0 then return {'regression', cp, sub} end
redis.call('HSET', KEYS[1], 'cp', ARGV[3], 'cp_sub', ARGV[4], 'switches', '0')
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'pend', ARGV[5], 'pend_sub', ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'pend', 'pend_sub')
end
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[1], 'pend_state', ARGV[7])
else
  redis.call('HDEL', KEYS[1], 'pend_state')
end
redis.call('HINCRBY', KEYS[1], 'counter', 1)
return won(KEYS[1])
";

/// KEYS: lease hash. ARGV: expected counter, owner, child shard ids (comma-separated).
const MARK_ENDED: &str = r"
if not owned_at(KEYS[1], ARGV[1], ARGV[2]) then return {'lost'} end
redis.call('HSET', KEYS[1], 'cp', 'SHARD_END', 'cp_sub', '0', 'switches', '0', 'children', ARGV[3])
redis.call('HDEL', KEYS[1], 'pend', 'pend_sub', 'pend_state')
redis.call('HINCRBY', KEYS[1], 'counter', 1)
return won(KEYS[1])
";

/// KEYS: lease hash. ARGV: expected counter, checkpoint, sub-sequence.
const RESET_CHECKPOINT: &str = r"
if redis.call('HGET', KEYS[1], 'counter') ~= ARGV[1] then return {'lost'} end
redis.call('HDEL', KEYS[1], 'owner', 'cp_owner', 'pend', 'pend_sub', 'pend_state')
redis.call('HSET', KEYS[1], 'cp', ARGV[2], 'cp_sub', ARGV[3], 'switches', '0')
redis.call('HINCRBY', KEYS[1], 'counter', 1)
return won(KEYS[1])
";

/// KEYS: lease hash, index. ARGV: expected counter, lease key. Answers 1 when deleted.
const DELETE: &str = r"
if redis.call('HGET', KEYS[1], 'counter') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
";

/// KEYS: lease hashes. Answers each hash as a flat field/value list (empty when missing); a
/// key holding another type answers `{'!type', <its type>}` instead of failing the whole read.
const READ: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key).ok
  if kind == 'hash' or kind == 'none' then
    out[i] = redis.call('HGETALL', key)
  else
    out[i] = {'!type', kind}
  end
end
return out
";

/// Every script, compiled into a [`Script`] once per store (its SHA-1 computed once; `EVALSHA`
/// on every call, loaded again on `NOSCRIPT`, as after a server restart).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) take: Script,
    pub(crate) renew: Script,
    pub(crate) renew_many: Script,
    pub(crate) evict: Script,
    pub(crate) checkpoint: Script,
    pub(crate) mark_ended: Script,
    pub(crate) request_handoff: Script,
    pub(crate) reset_checkpoint: Script,
    pub(crate) delete: Script,
    pub(crate) read: Script,
    pub(crate) leave: Script,
    pub(crate) heartbeat_at: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_helpers = |body: &str| Script::new(&format!("{HELPERS}{body}"));
        Self {
            create: with_helpers(CREATE),
            take: with_helpers(TAKE),
            renew: with_helpers(RENEW),
            renew_many: with_helpers(RENEW_MANY),
            evict: with_helpers(EVICT),
            checkpoint: with_helpers(CHECKPOINT),
            mark_ended: with_helpers(MARK_ENDED),
            request_handoff: with_helpers(REQUEST_HANDOFF),
            reset_checkpoint: with_helpers(RESET_CHECKPOINT),
            delete: with_helpers(DELETE),
            read: with_helpers(READ),
            leave: Script::new(LEAVE),
            heartbeat_at: Script::new(HEARTBEAT_AT),
        }
    }
}
