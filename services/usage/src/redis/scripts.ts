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
 * Per line one quota field holds the line's quota by month over the months still open:
 * "line_sequence|kind|q0" then "|fromYYYYMM|q" pairs in ascending months: q0 applies before the
 * first pair's month, each q from its month on (a plan changed this month leaves last month's
 * quota to last month; a plan for next month waits for it). kind: 'p' as the domain unit's plan
 * says, 'o' an operator's override (kept until the plan changes again). A quota of -1 is a
 * terminated line (no alerts), -2 not known yet, 0 unlimited (no alerts). No field = not known.
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
  for part in string.gmatch(s, '[^|]+') do t[#t + 1] = part end
  local qt = {seq = tonumber(t[1]) or 0, kind = t[2] or 'p', q0 = tonumber(t[3]) or -2, ch = {}}
  for i = 4, #t - 1, 2 do qt.ch[#qt.ch + 1] = {tonumber(t[i]), tonumber(t[i + 1])} end
  return qt
end
local function fmtQuota(qt)
  local out = {n(qt.seq), qt.kind, n(qt.q0)}
  for _, c in ipairs(qt.ch) do out[#out + 1] = n(c[1]); out[#out + 1] = n(c[2]) end
  return table.concat(out, '|')
end
local function quotaIn(qt, ym)
  if not qt then return nil end
  local q = qt.q0
  for _, c in ipairs(qt.ch) do if ym >= c[1] then q = c[2] end end
  return q
end
-- The quota becomes q from month 'from' on. What applied before 'from' stays; a change after it
-- is replaced, unless keepLater (an override this month keeps a plan already made for later).
-- Changes no open month needs any more (at or before 'oldest') fold into q0.
local function change(qt, from, q, keepLater, oldest)
  local out, placed = {}, false
  for _, c in ipairs(qt.ch) do
    if c[1] > from and not placed then out[#out + 1] = {from, q}; placed = true end
    if c[1] < from or (keepLater and c[1] > from) then out[#out + 1] = c end
  end
  if not placed then out[#out + 1] = {from, q} end
  while #out > 0 and out[1][1] <= oldest do
    qt.q0 = out[1][2]
    table.remove(out, 1)
  end
  -- A change to the quota already in force changes nothing (and costs memory at 1M lines).
  local kept, last = {}, qt.q0
  for _, c in ipairs(out) do
    if c[2] ~= last then kept[#kept + 1] = c; last = c[2] end
  end
  qt.ch = kept
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
 * KEYS: outbox, position hash, stale hash, late hash, nb quota keys (one per bucket), ne month
 *       keys (one per bucket and month: an "entry").
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
 * The late hash holds, per month closed for billing, "#closed:<yyyymm>" → when (set by
 * closeMonth in every group), and "<sid>|<yyyymm>" → bytes of that closed month counted after
 * its close: an event of a closed month counts in the month as any other (usage stays exact) and
 * in the late hash too, in the same step, so the month's total at its close stays readable
 * (used − late) and the rest goes on the next invoice.
 * Reads and writes each hash once per call (HMGET, then one HSET of what changed).
 * Returns {counted, duplicates, alerts, replayed, stale event ordinals (0-based)...}.
 */
export const APPLY = `${PRELUDE}
local nm, nb, ne = int(ARGV[1], 1, 24), int(ARGV[2], 1, 100000), int(ARGV[3], 1, 100000)
local now, src, nt = int(ARGV[4], 0, 1e15), ARGV[5], int(ARGV[6], 0, 100000)
if not nm or not nb or not ne or not now or not src or not nt
  or #KEYS ~= 4 + nb + ne or #ARGV ~= 7 + 3 * nm + 2 * ne + nt then
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
  enKey[j], enBucket[j], enMonth[j], enSids[j], enAt[j] = KEYS[4 + nb + j], b, mo[mi], {}, {}
end
local lateKey = KEYS[4]
do
  local f = {}
  for i = 1, nm do f[i] = '#closed:' .. n(mo[i].ym) end
  local cl = redis.call('HMGET', lateKey, unpack(f))
  for i = 1, nm do mo[i].closed = cl[i] ~= false end
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
  local raw = redis.call('HMGET', KEYS[4 + b], unpack(names))
  for k = 1, #l do
    local q = quotaIn(parseQuota(raw[k]), l[k][3])
    if q then l[k][2][5] = q end
  end
end

local stale = {}
local counted, dups, alerts, replayed = 0, 0, 0, 0
local lastOff, lastIdx, lastTs, newStale = nil, nil, nil, false
local written, late = {}, {}
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
      if enMonth[e].closed then
        local f = sid .. '|' .. n(enMonth[e].ym)
        late[f] = (late[f] or 0) + BYTES[i]
      end
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
for f, b in pairs(late) do redis.call('HINCRBY', lateKey, f, n(b)) end
if lastOff and src ~= '' then
  redis.call('HSET', posKey, src, n(lastOff) .. ':' .. n(lastIdx) .. ':' .. n(math.max(lastTs, pTs)))
end
if newStale then redis.call('EXPIRE', staleKey, 7 * 86400) end
local out = {counted, dups, alerts, replayed}
for i, e in ipairs(stale) do out[4 + i] = e end
return out
`;

/**
 * Changes the quotas of lines of one line group and re-evaluates their open months against them.
 * KEYS: outbox, qn quota keys, m month keys.
 * ARGV: qn, m, now_ms, oldest open yyyymm, current yyyymm; m × (label, yyyymm, expire_at_s);
 *   then per line (quota index, month indices of up to three open months (0 = none), subscription
 *   id, mode, line_sequence, quota, from yyyymm, next from yyyymm or '', next quota or '',
 *   traceparent).
 * Modes: 'plan' (the domain unit's plan from 'from' on; applied when line_sequence is newer than
 * the stored one), 'snapshot' (the plans read from the domain unit: this month's and, if given,
 * the next one's; applied when not older, but not over an override of the same sequence),
 * 'terminate' (no alerts from 'from' on), 'override' (an operator's quota for this month on,
 * keeping a plan already made for later; keeps the stored sequence).
 * A month is re-evaluated only when its quota changes: the highest level newly crossed is alerted.
 * Returns {applied, alerts}.
 */
export const SET_QUOTAS = `${PRELUDE}
local qn, m, now = int(ARGV[1], 1, 100000), int(ARGV[2], 0, 100000), int(ARGV[3], 0, 1e15)
local oldest, cur = int(ARGV[4], 190001, 999912), int(ARGV[5], 190001, 999912)
if not qn or not m or not now or not oldest or not cur or #KEYS ~= 1 + qn + m then
  return redis.error_reply('ERR usage quotas: bad header or key count')
end
now = n(now)
local mo = months(6, m, function(i) return KEYS[1 + qn + i] end)
if not mo then return redis.error_reply('ERR usage quotas: bad month arguments') end
local base = 5 + 3 * m
local F = 12
local nargs = #ARGV - base
if nargs <= 0 or nargs % F ~= 0 then return redis.error_reply('ERR usage quotas: bad line argument count') end
local count = nargs / F
local MODES = {plan = true, snapshot = true, terminate = true, override = true}
for e = 0, count - 1 do
  local o = base + F * e
  local okNext = (ARGV[o + 10] == '' and ARGV[o + 11] == '')
    or (int(ARGV[o + 10], 190001, 999912) and int(ARGV[o + 11], -1, P[53] - 1))
  if not int(ARGV[o + 1], 1, qn) or not int(ARGV[o + 2], 0, m) or not int(ARGV[o + 3], 0, m)
    or not int(ARGV[o + 4], 0, m) or ARGV[o + 5] == '' or not MODES[ARGV[o + 6]]
    or not int(ARGV[o + 7], 0, P[53] - 1) or not int(ARGV[o + 8], -1, P[53] - 1)
    or not int(ARGV[o + 9], 190001, 999912) or not okNext then
    return redis.error_reply('ERR usage quotas: bad line ' .. e)
  end
end
local applied, alerts = 0, 0
for e = 0, count - 1 do
  local o = base + F * e
  local qkey, sid, mode = KEYS[1 + tonumber(ARGV[o + 1])], ARGV[o + 5], ARGV[o + 6]
  local seq, q, from, tp = tonumber(ARGV[o + 7]), tonumber(ARGV[o + 8]), tonumber(ARGV[o + 9]), ARGV[o + 12]
  local nfrom, nq = tonumber(ARGV[o + 10]), tonumber(ARGV[o + 11])
  local old = parseQuota(redis.call('HGET', qkey, sid))
  -- The first quota heard of a line is the best there is for its earlier open months too.
  local qt = old or {seq = 0, kind = 'p', q0 = mode == 'terminate' and -1 or q, ch = {}}
  local ok = false
  if mode == 'override' then
    change(qt, cur, q, true, oldest)
    qt.kind, ok = 'o', true
  elseif not old or seq > old.seq or (mode == 'snapshot' and seq == old.seq and old.kind ~= 'o') then
    if mode == 'terminate' then q = -1 end
    change(qt, from, q, false, oldest)
    if mode == 'snapshot' and nfrom then change(qt, nfrom, nq, false, oldest) end
    qt.seq, qt.kind, ok = seq, 'p', true
  end
  if ok then
    applied = applied + 1
    redis.call('HSET', qkey, sid, fmtQuota(qt))
    for j = 2, 4 do
      local mi = tonumber(ARGV[o + j])
      if mi > 0 then
        local month = mo[mi]
        local raw = redis.call('HGET', month.key, sid)
        if raw then
          local used, hi, win, al = struct.unpack('<dddB', raw)
          local had = #raw == 33 and select(5, struct.unpack('<dddBd', raw)) or nil
          local quota = quotaIn(qt, month.ym)
          -- Only a month whose quota changes is written and re-evaluated.
          if quota ~= had then
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
end
return {applied, alerts}
`;
