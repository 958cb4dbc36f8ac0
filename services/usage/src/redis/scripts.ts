/**
 * The usage unit's Redis Lua scripts. Each runs atomically on the keys of one line group (one
 * hash tag, so one Redis Cluster slot) and validates every argument before its first write:
 * a Lua error does not roll back what was written before it.
 *
 * Per line and month one hash field holds struct.pack("<dddB", used, hi, window, alerted):
 *  - used: bytes counted (exact up to 2^53);
 *  - hi: the highest sequence number seen; window: bit k set = sequence hi-k seen (k < 52), so a
 *    late number never seen is still counted and a number seen is dropped as a duplicate;
 *  - alerted: levels done this month, bitmask 50=1, 80=2, 100=4.
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

/**
 * Counts a batch of events of one line group.
 * KEYS: outbox, m month keys, qn quota keys, m top keys (same order as the month keys), and when
 *       a source is named: its position hash and its stale-event hash.
 * ARGV: m, qn, now_ms, top_k, source ('' = none, e.g. "usage.events|3"); m × (label, yyyymm,
 *       expire_at_s); then per event (month index, quota index, subscription id, seq, bytes,
 *       traceparent, record offset, index in the record, record timestamp ms).
 * Events of a named source come in (offset, index) order. The position hash keeps, per source,
 * the last position this group applied and its record's timestamp: an event at or before it is a
 * redelivery and is skipped whatever its sequence number, so replaying a partition is exact even
 * past the duplicate window. Only when its record is not newer than that timestamp: a topic
 * deleted and made again starts its offsets at 0 with new timestamps, and is counted (its
 * duplicates still meet the sequence window). An event dead-lettered as stale is remembered (7 days) so that its redelivery is
 * reported stale again rather than lost between the count and the dead-letter write.
 * Returns {counted, duplicates, alerts, replayed, stale event indices (0-based)...}.
 */
export const APPLY = `${PRELUDE}
local m, qn, now, K = int(ARGV[1], 1, 1000), int(ARGV[2], 1, 100000), int(ARGV[3], 0, 1e15), int(ARGV[4], 1, 1000)
local src = ARGV[5]
local nk = 1 + 2 * m + qn
if src and src ~= '' then nk = nk + 2 end
if not m or not qn or not now or not K or not src or #KEYS ~= nk then
  return redis.error_reply('ERR usage apply: bad header or key count')
end
now = n(now)
local mo = months(6, m, function(i) return KEYS[1 + i] end)
if not mo then return redis.error_reply('ERR usage apply: bad month arguments') end
for i = 1, m do mo[i].top = KEYS[1 + m + qn + i] end
local base = 5 + 3 * m
local nargs = #ARGV - base
if nargs <= 0 or nargs % 9 ~= 0 then return redis.error_reply('ERR usage apply: bad event argument count') end
local count = nargs / 9
for e = 0, count - 1 do
  local o = base + 9 * e
  if not int(ARGV[o + 1], 1, m) or not int(ARGV[o + 2], 1, qn) or ARGV[o + 3] == ''
    or not int(ARGV[o + 4], 0, P[53] - 1) or not int(ARGV[o + 5], 1, P[53] - 1)
    or not int(ARGV[o + 7], 0, P[53] - 1) or not int(ARGV[o + 8], 0, 1e9) or not int(ARGV[o + 9], 0, 1e15) then
    return redis.error_reply('ERR usage apply: bad event ' .. e)
  end
end
local posKey, staleKey = KEYS[nk - 1], KEYS[nk]
local pOff, pIdx, pTs = -1, -1, -1
if src ~= '' then
  local raw = redis.call('HGET', posKey, src)
  if raw then
    local a, b, c = string.match(raw, '^(%d+):(%d+):(%d+)$')
    if a then pOff, pIdx, pTs = tonumber(a), tonumber(b), tonumber(c) end
  end
end
local lines, quotas, stale = {}, {}, {}
local counted, dups, alerts, replayed = 0, 0, 0, 0
local lastOff, lastIdx, lastTs, newStale = nil, nil, nil, false
for e = 0, count - 1 do
  local o = base + 9 * e
  local mi, qi, sid = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), ARGV[o + 3]
  local seq, bytes, tp = tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5]), ARGV[o + 6]
  local off, idx, ts = tonumber(ARGV[o + 7]), tonumber(ARGV[o + 8]), tonumber(ARGV[o + 9])
  local pos = src .. '@' .. n(off) .. ':' .. n(idx)
  if src ~= '' and ts <= pTs and (off < pOff or (off == pOff and idx <= pIdx)) then
    replayed = replayed + 1
    if redis.call('HEXISTS', staleKey, pos) == 1 then stale[#stale + 1] = e end
  else
    lastOff, lastIdx = off, idx
    if not lastTs or ts > lastTs then lastTs = ts end
    local month = mo[mi]
    local lk = mi .. ' ' .. sid
    local st = lines[lk]
    if not st then
      local raw = redis.call('HGET', month.key, sid)
      if raw then
        local used, hi, win, al = struct.unpack('<dddB', raw)
        st = {used = used, hi = hi, win = win, al = al}
      else
        st = {used = 0, hi = -1, win = 0, al = 0}
      end
      st.sid, st.month, st.dirty = sid, month, false
      lines[lk] = st
    end
    local fresh = false
    if st.hi < 0 then
      st.hi, st.win, fresh = seq, 1, true
    elseif seq > st.hi then
      local d = seq - st.hi
      if d >= W then st.win = 1 else st.win = (st.win * P[d]) % P[W] + 1 end
      st.hi, fresh = seq, true
    else
      local k = st.hi - seq
      if k >= W then
        stale[#stale + 1] = e
        if src ~= '' then
          redis.call('HSET', staleKey, pos, '1')
          newStale = true
        end
      elseif has(st.win, P[k]) then dups = dups + 1
      else st.win, fresh = st.win + P[k], true end
    end
    if fresh then
      counted = counted + 1
      st.used = st.used + bytes
      st.dirty = true
      local qk = qi .. ' ' .. sid
      local qt = quotas[qk]
      if qt == nil then
        qt = parseQuota(redis.call('HGET', KEYS[1 + m + qi], sid)) or false
        quotas[qk] = qt
      end
      if qt then
        local q = quotaIn(qt, month.ym)
        local al, level = evaluate(st.used, st.al, q)
        st.al = al
        if level then
          enqueue(KEYS[1], sid, month.label, level, st.used, q, now, tp)
          alerts = alerts + 1
        end
      end
    end
  end
end
for _, st in pairs(lines) do
  if st.dirty then
    redis.call('HSET', st.month.key, st.sid, struct.pack('<dddB', st.used, st.hi, st.win, st.al))
    st.month.dirty = true
  end
end
if lastOff and src ~= '' then
  redis.call('HSET', posKey, src, n(lastOff) .. ':' .. n(lastIdx) .. ':' .. n(math.max(lastTs, pTs)))
end
if newStale then redis.call('EXPIRE', staleKey, 7 * 86400) end
for i = 1, m do
  local month = mo[i]
  if month.dirty then
    redis.call('EXPIREAT', month.key, month.exp)
    local card = redis.call('ZCARD', month.top)
    local min = -1
    if card >= K then min = tonumber(redis.call('ZRANGE', month.top, 0, 0, 'WITHSCORES')[2]) end
    local added = false
    for _, st in pairs(lines) do
      if st.dirty and st.month == month and (card < K or st.used > min) then
        redis.call('ZADD', month.top, st.used, st.sid)
        added = true
      end
    end
    if added then
      local c = redis.call('ZCARD', month.top)
      if c > K then redis.call('ZREMRANGEBYRANK', month.top, 0, c - K - 1) end
      redis.call('EXPIREAT', month.top, month.exp)
    end
  end
end
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
          local quota = quotaIn(new, month.ym)
          local nal, level = evaluate(used, al, quota)
          if nal ~= al then redis.call('HSET', month.key, sid, struct.pack('<dddB', used, hi, win, nal)) end
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
