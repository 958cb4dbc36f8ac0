/**
 * The usage unit's Redis Lua scripts. Each runs atomically on the keys of one line group (one
 * hash tag, so one Redis Cluster slot) and validates every argument before its first write:
 * a Lua error does not roll back what was written before it.
 *
 * Per line and month one hash field holds struct.pack("<dddBd", used, hi, window, alerted, quota)
 * (33 bytes):
 *  - used: bytes counted (exact up to 2^53);
 *  - hi: the highest sequence number seen; window: bit k set = sequence hi-k seen (k < 52), so a
 *    late number never seen is still counted and a number seen is dropped as a duplicate;
 *  - alerted: levels done this month, bitmask 50=1, 80=2, 100=4;
 *  - quota: the quota in force for the month, copied from the quota field when the line's first
 *    event of the month counts and rewritten by every quota change (-2 not known yet, -1
 *    terminated, 0 unlimited), so that counting reads one hash per bucket, not two.
 * Per line one quota field holds "quota|line_sequence" or "quota|line_sequence|fromYYYYMM|next":
 * quota -1 is a terminated line (no alerts), -2 not known yet, 0 unlimited (no alerts); `next` applies to months
 * from `fromYYYYMM` on (a plan change made for next month). No field = quota not known yet.
 * The outbox hash maps a notification's deterministic id to "used|quota|requested_ms|traceparent".
 */

/** Sequence numbers a line may arrive late by (behind its highest seen) and still be told apart. */
export const SEQ_WINDOW = 52;
export const LEVELS = [50, 80, 100] as const;
/** Largest sequence number accepted: Lua counts in doubles. */
export const MAX_SEQ = 2 ** 53 - 1;

const PRELUDE = `
local W = ${SEQ_WINDOW}
local P = {}
do local v = 1 for i = 0, 53 do P[i] = v; v = v * 2 end end
local LEVELS = {50, 80, 100}
local LBIT = {1, 2, 4}
local function has(mask, b) return math.floor(mask / b) % 2 == 1 end
local function n(x) return string.format('%.0f', x) end
local function int(s, lo, hi)
  local v = tonumber(s)
  if v == nil or v % 1 ~= 0 or v < lo or v > hi then return nil end
  return v
end
local function parseQuota(s)
  if not s then return nil end
  local t = {}
  for part in string.gmatch(s, '[^|]+') do t[#t + 1] = tonumber(part) end
  return {q = t[1], seq = t[2] or 0, from = t[3], nq = t[4]}
end
local function fmtQuota(qt)
  if qt.from then return n(qt.q) .. '|' .. n(qt.seq) .. '|' .. n(qt.from) .. '|' .. n(qt.nq) end
  return n(qt.q) .. '|' .. n(qt.seq)
end
local function quotaIn(qt, ym)
  if not qt then return nil end
  if qt.from and ym >= qt.from then return qt.nq end
  return qt.q
end
-- Levels crossed at 'used' against quota q; returns the new done-mask and the highest level newly
-- crossed (nil when none): a jump past several levels alerts the highest and marks all done.
local function evaluate(used, alerted, q)
  if not q or q <= 0 then return alerted, nil end
  local all, level = alerted, nil
  for i = 3, 1, -1 do
    if used * 100 >= LEVELS[i] * q and not has(alerted, LBIT[i]) then
      if not level then level = LEVELS[i] end
      all = all + LBIT[i]
    end
  end
  return all, level
end
local function enqueue(outbox, sid, label, level, used, q, now, tp)
  redis.call('HSET', outbox, 'usage-threshold:' .. sid .. ':' .. label .. ':' .. level,
    n(used) .. '|' .. n(q) .. '|' .. now .. '|' .. tp)
end
local function months(first, m, keyOf)
  local out = {}
  for i = 1, m do
    local o = first + 3 * (i - 1)
    local label, ym, exp = ARGV[o], int(ARGV[o + 1], 190001, 999912), int(ARGV[o + 2], 0, 1e11)
    if not label or not string.match(label, '^%d%d%d%d%-%d%d$') or not ym or not exp then return nil end
    out[i] = {key = keyOf(i), label = label, ym = ym, exp = exp, dirty = false}
  end
  return out
end
`;

/** Layout of one event in APPLY's packed argument (Lua struct format, little-endian). */
export const EVENT_FORMAT = "<HddddIHBc0";

/**
 * Counts a batch of events of one line group, read from one packed argument.
 * KEYS: outbox, position hash, stale hash, nb quota keys (one per bucket), ne month keys (one
 *       per bucket and month: an "entry").
 * ARGV: nm, nb, ne, now_ms, source ('' = none, e.g. "usage.events|3"), nt;
 *       nm × (label, yyyymm, expire_at_s); ne × (bucket index, month index); nt traceparents;
 *       then the events, each EVENT_FORMAT: entry index, seq, bytes, record offset, record
 *       timestamp ms, index in the record, traceparent index (0 = none), subscription id.
 * Events of a named source come in (offset, index) order. The position hash keeps, per source,
 * the last position this group applied and the newest record timestamp: an event at or before
 * that position is a redelivery and is skipped whatever its sequence number, so replaying a
 * partition is exact even past the duplicate window. Only when its record is not newer than
 * that timestamp: a topic deleted and made again starts its offsets at 0 with new timestamps,
 * and is counted (its duplicates still meet the sequence window). An event dead-lettered as
 * stale is remembered (7 days) so that its redelivery is reported stale again rather than lost
 * between the count and the dead-letter write.
 * Reads and writes each hash once per call (HMGET, then one HSET of what changed).
 * Returns {counted, duplicates, alerts, replayed, stale event ordinals (0-based)...}.
 */
export const APPLY = `${PRELUDE}
local nm, nb, ne = int(ARGV[1], 1, 24), int(ARGV[2], 1, 100000), int(ARGV[3], 1, 100000)
local now, src, nt = int(ARGV[4], 0, 1e15), ARGV[5], int(ARGV[6], 0, 100000)
if not nm or not nb or not ne or not now or not src or not nt
  or #KEYS ~= 3 + nb + ne or #ARGV ~= 7 + 3 * nm + 2 * ne + nt then
  return redis.error_reply('ERR usage apply: bad header, key or argument count')
end
now = n(now)
local mo = months(7, nm, function() return nil end)
if not mo then return redis.error_reply('ERR usage apply: bad month arguments') end
local enKey, enBucket, enMonth, enSids, enAt = {}, {}, {}, {}, {}
local eb = 6 + 3 * nm
for j = 1, ne do
  local b, mi = int(ARGV[eb + 2 * j - 1], 1, nb), int(ARGV[eb + 2 * j], 1, nm)
  if not b or not mi then return redis.error_reply('ERR usage apply: bad entry ' .. j) end
  enKey[j], enBucket[j], enMonth[j], enSids[j], enAt[j] = KEYS[3 + nb + j], b, mo[mi], {}, {}
end
local tps = {}
for t = 1, nt do tps[t] = ARGV[eb + 2 * ne + t] end
-- Parse and check every event before the first write (columns, not a table per event).
local data = ARGV[#ARGV]
local E, SEQ, BYTES, OFF, TS, IDX, TP, SID = {}, {}, {}, {}, {}, {}, {}, {}
local c, p, len, MAXN = 0, 1, #data, P[53] - 1
local unpackEv = struct.unpack
while p <= len do
  local ok, e, seq, bytes, off, ts, idx, tp, sid, nxt = pcall(unpackEv, '${EVENT_FORMAT}', data, p)
  if not ok or e < 1 or e > ne or seq < 0 or seq > MAXN or seq % 1 ~= 0 or bytes < 1 or bytes > MAXN
    or bytes % 1 ~= 0 or off < 0 or off > MAXN or off % 1 ~= 0 or ts < 0 or ts > 1e15 or ts % 1 ~= 0
    or tp > nt or sid == '' then
    return redis.error_reply('ERR usage apply: bad event ' .. c)
  end
  c = c + 1
  E[c], SEQ[c], BYTES[c], OFF[c], TS[c], IDX[c], TP[c], SID[c] = e, seq, bytes, off, ts, idx, tp, sid
  local at = enAt[e]
  if not at[sid] then
    local l = enSids[e]
    l[#l + 1] = sid
    at[sid] = true
  end
  p = nxt
end
if c == 0 then return redis.error_reply('ERR usage apply: no events') end

local posKey, staleKey = KEYS[2], KEYS[3]
local pOff, pIdx, pTs = -1, -1, -1
if src ~= '' then
  local raw = redis.call('HGET', posKey, src)
  if raw then
    local a, b, t = string.match(raw, '^(%d+):(%d+):(%d+)$')
    if a then pOff, pIdx, pTs = tonumber(a), tonumber(b), tonumber(t) end
  end
end
-- Each month hash read once. A line's month value carries the quota in force for that month;
-- a line new in the month takes it from the bucket's quota hash (read once, for those lines).
-- st = {used, hi, window, alerted, quota (-2 unknown, -1 terminated, 0 unlimited), dirty}
local state, fresh, needQ = {}, {}, {}
for j = 1, ne do
  local sids = enSids[j]
  local raw = redis.call('HMGET', enKey[j], unpack(sids))
  local st, any = {}, false
  for k = 1, #sids do
    local r = raw[k]
    if r and #r == 33 then
      local used, hi, win, al, q = struct.unpack('<dddBd', r)
      st[sids[k]] = {used, hi, win, al, q, false}
      any = true
    else
      local row = {0, -1, 0, 0, -2, false}
      if r then
        -- Written before quotas were carried in the value: counters kept, quota read.
        row[1], row[2], row[3], row[4] = struct.unpack('<dddB', r)
        any = true
      end
      st[sids[k]] = row
      local b = enBucket[j]
      local l = needQ[b]
      if not l then l = {}; needQ[b] = l end
      l[#l + 1] = {sids[k], row, enMonth[j].ym}
    end
  end
  state[j] = st
  -- No line of the call in the hash: it may be new, and needs its expiry.
  fresh[j] = not any
end
for b, l in pairs(needQ) do
  local names = {}
  for k = 1, #l do names[k] = l[k][1] end
  local raw = redis.call('HMGET', KEYS[3 + b], unpack(names))
  for k = 1, #l do
    local q = quotaIn(parseQuota(raw[k]), l[k][3])
    if q then l[k][2][5] = q end
  end
end

local stale = {}
local counted, dups, alerts, replayed = 0, 0, 0, 0
local lastOff, lastIdx, lastTs, newStale = nil, nil, nil, false
local written = {}
for j = 1, ne do written[j] = {} end
for i = 1, c do
  local off, idx, ts = OFF[i], IDX[i], TS[i]
  if src ~= '' and ts <= pTs and (off < pOff or (off == pOff and idx <= pIdx)) then
    replayed = replayed + 1
    if redis.call('HEXISTS', staleKey, src .. '@' .. n(off) .. ':' .. n(idx)) == 1 then stale[#stale + 1] = i - 1 end
  else
    lastOff, lastIdx = off, idx
    if not lastTs or ts > lastTs then lastTs = ts end
    local e, sid, seq = E[i], SID[i], SEQ[i]
    local st = state[e][sid]
    local hi, win = st[2], st[3]
    local new = false
    if hi < 0 then
      hi, win, new = seq, 1, true
    elseif seq > hi then
      local d = seq - hi
      if d >= W then win = 1 else win = (win * P[d]) % P[W] + 1 end
      hi, new = seq, true
    else
      local k = hi - seq
      if k >= W then
        stale[#stale + 1] = i - 1
        if src ~= '' then
          redis.call('HSET', staleKey, src .. '@' .. n(off) .. ':' .. n(idx), '1')
          newStale = true
        end
      elseif has(win, P[k]) then dups = dups + 1
      else win, new = win + P[k], true end
    end
    if new then
      counted = counted + 1
      local used = st[1] + BYTES[i]
      st[1], st[2], st[3] = used, hi, win
      if not st[6] then
        st[6] = true
        local w = written[e]
        w[#w + 1] = sid
      end
      -- Most events leave the line below its next level: only then is it worth evaluating.
      local q, al = st[5], st[4]
      if q > 0 and al < 7 and used * 2 >= q then
        local level
        al, level = evaluate(used, al, q)
        st[4] = al
        if level then
          local tp = TP[i]
          enqueue(KEYS[1], sid, enMonth[e].label, level, used, q, now, tp > 0 and tps[tp] or '')
          alerts = alerts + 1
        end
      end
    end
  end
end
-- Each changed hash written once; a hash that may be new gets the month's expiry.
for j = 1, ne do
  local w = written[j]
  if #w > 0 then
    local args, st = {}, state[j]
    for k = 1, #w do
      local s = st[w[k]]
      args[2 * k - 1] = w[k]
      args[2 * k] = struct.pack('<dddBd', s[1], s[2], s[3], s[4], s[5])
    end
    redis.call('HSET', enKey[j], unpack(args))
    if fresh[j] then redis.call('EXPIREAT', enKey[j], enMonth[j].exp) end
  end
end
if lastOff and src ~= '' then
  redis.call('HSET', posKey, src, n(lastOff) .. ':' .. n(lastIdx) .. ':' .. n(math.max(lastTs, pTs)))
end
if newStale then redis.call('EXPIRE', staleKey, 7 * 86400) end
local out = {counted, dups, alerts, replayed}
for i, e in ipairs(stale) do out[4 + i] = e end
return out
`;

/**
 * Sets the quotas of lines of one line group and re-evaluates their open months against them.
 * KEYS: outbox, qn quota keys, m month keys.
 * ARGV: qn, m, now_ms; m × (label, yyyymm, expire_at_s); then per line
 *   (quota index, month index a, month index b (0 = none), subscription id, mode, line_sequence,
 *    quota, from yyyymm or '', next quota or '', traceparent)
 * Modes: 'current' (a plan in force now; applied when line_sequence is newer than the stored one),
 * 'snapshot' (the same read from the domain unit: applied when not older), 'pending' (a plan from a
 * later month; keeps the current quota), 'terminate' (no more alerts), 'override' (an operator's
 * quota: applied always, keeps the stored sequence and any pending plan).
 * Returns {applied, alerts}.
 */
export const SET_QUOTAS = `${PRELUDE}
local qn, m, now = int(ARGV[1], 1, 100000), int(ARGV[2], 0, 100000), int(ARGV[3], 0, 1e15)
if not qn or not m or not now or #KEYS ~= 1 + qn + m then
  return redis.error_reply('ERR usage quotas: bad header or key count')
end
now = n(now)
local mo = months(4, m, function(i) return KEYS[1 + qn + i] end)
if not mo then return redis.error_reply('ERR usage quotas: bad month arguments') end
local base = 3 + 3 * m
local nargs = #ARGV - base
if nargs <= 0 or nargs % 10 ~= 0 then return redis.error_reply('ERR usage quotas: bad line argument count') end
local count = nargs / 10
local MODES = {current = true, snapshot = true, pending = true, terminate = true, override = true}
for e = 0, count - 1 do
  local o = base + 10 * e
  local mode = ARGV[o + 5]
  local okFrom = ARGV[o + 8] == '' or int(ARGV[o + 8], 190001, 999912)
  local okNext = ARGV[o + 9] == '' or int(ARGV[o + 9], 0, P[53] - 1)
  if not int(ARGV[o + 1], 1, qn) or not int(ARGV[o + 2], 0, m) or not int(ARGV[o + 3], 0, m) or ARGV[o + 4] == ''
    or not MODES[mode] or not int(ARGV[o + 6], 0, P[53] - 1) or not int(ARGV[o + 7], -1, P[53] - 1)
    or not okFrom or not okNext or ((ARGV[o + 8] == '') ~= (ARGV[o + 9] == '')) then
    return redis.error_reply('ERR usage quotas: bad line ' .. e)
  end
end
local applied, alerts = 0, 0
for e = 0, count - 1 do
  local o = base + 10 * e
  local qkey, sid, mode = KEYS[1 + tonumber(ARGV[o + 1])], ARGV[o + 4], ARGV[o + 5]
  local seq, q, tp = tonumber(ARGV[o + 6]), tonumber(ARGV[o + 7]), ARGV[o + 10]
  local from, nq = tonumber(ARGV[o + 8]), tonumber(ARGV[o + 9])
  local old = parseQuota(redis.call('HGET', qkey, sid))
  local new = nil
  if mode == 'override' then
    if old then new = {q = q, seq = old.seq, from = old.from, nq = old.nq} else new = {q = q, seq = 0} end
  elseif not old or seq > old.seq or (mode == 'snapshot' and seq >= old.seq) then
    if mode == 'pending' then
      -- A plan for a later month of a line whose current quota is not known keeps it unknown (-2).
      new = {q = old and old.q or -2, seq = seq, from = from, nq = nq}
    elseif mode == 'terminate' then
      new = {q = -1, seq = seq}
    else
      new = {q = q, seq = seq, from = from, nq = nq}
    end
  end
  if new then
    applied = applied + 1
    redis.call('HSET', qkey, sid, fmtQuota(new))
    for j = 2, 3 do
      local mi = tonumber(ARGV[o + j])
      if mi > 0 then
        local month = mo[mi]
        local raw = redis.call('HGET', month.key, sid)
        if raw then
          local used, hi, win, al = struct.unpack('<dddB', raw)
          -- The month's value carries the quota in force for that month (APPLY reads it there).
          local quota = quotaIn(new, month.ym)
          local nal, level = evaluate(used, al, quota)
          redis.call('HSET', month.key, sid, struct.pack('<dddBd', used, hi, win, nal, quota))
          if level then
            enqueue(KEYS[1], sid, month.label, level, used, quota, now, tp)
            alerts = alerts + 1
          end
        end
      end
    end
  end
end
return {applied, alerts}
`;
