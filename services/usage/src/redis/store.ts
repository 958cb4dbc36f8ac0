import type { RedisClient } from "../../../kit/src/redis.js";
import type { Month, MonthClock } from "../months.js";
import { APPLY, LEVELS, SET_QUOTAS } from "./scripts.js";

/**
 * Where the usage unit keeps each line in Redis. A line hashes (FNV-1a) to one of `buckets`
 * buckets; a bucket belongs to one of `groups` line groups (bucket mod groups), and the group is
 * the hash tag of every key, so one script call can work on all lines of a group on a Redis
 * Cluster. Per bucket, a month's counters and the lines' quotas are hashes (one field per line)
 * that Redis keeps as compact listpacks while they hold at most hash-max-listpack-entries fields
 * (512 by default in Redis 7): 8,192 buckets keep ≈ 122 lines each at 1M lines. A counting call
 * reads and writes each bucket it touches once, and a field lookup scans its listpack: measured
 * here, 100–250 lines per bucket cost least (fewer calls per event, short scans); keep well
 * under the listpack limit, or Redis converts a bucket to a real hash table (≈ 3× the memory).
 *
 *   usage:{u<g>}:m:<bucket>:<YYYYMM>  hash  line → packed counters (see scripts.ts)
 *   usage:{u<g>}:q:<bucket>           hash  line → quota
 *   usage:{u<g>}:outbox               hash  notification id → alert, until the relay published it
 *   usage:{u<g>}:relay                string  the lease of the one relay publishing the outbox
 *   usage:{u<g>}:pos                  hash  "<topic>|<partition>" → last position applied (offset:index:timestamp)
 *   usage:{u<g>}:stale                hash  positions dead-lettered as too late (7 days)
 *   usage:{u<g>}:late                 hash  "#closed:<YYYYMM>" → when the month was closed for billing;
 *                                           "<line>|<YYYYMM>" → bytes of that closed month counted after
 *   usage:closed                      hash  YYYYMM → when the month was closed (the unit's own listing)
 *   usage:layout                      the bucket and group counts the data was written with
 */
export class Layout {
  constructor(
    readonly buckets: number,
    readonly groups: number,
  ) {}

  bucket(sid: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < sid.length; i++) {
      h ^= sid.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return (h >>> 0) % this.buckets;
  }

  group(bucket: number): number {
    return bucket % this.groups;
  }

  monthKey(bucket: number, month: Month): string {
    return `usage:{u${this.group(bucket)}}:m:${bucket}:${month.num}`;
  }

  quotaKey(bucket: number): string {
    return `usage:{u${this.group(bucket)}}:q:${bucket}`;
  }

  outboxKey(group: number): string {
    return `usage:{u${group}}:outbox`;
  }

  /** Held by the one relay publishing the group's outbox. */
  relayLeaseKey(group: number): string {
    return `usage:{u${group}}:relay`;
  }

  positionKey(group: number): string {
    return `usage:{u${group}}:pos`;
  }

  staleKey(group: number): string {
    return `usage:{u${group}}:stale`;
  }

  lateKey(group: number): string {
    return `usage:{u${group}}:late`;
  }

  /**
   * Records the layout on first use and refuses a different one later: changing the counts would
   * move every line to another key and lose its counters.
   */
  async claim(redis: RedisClient): Promise<void> {
    const want = JSON.stringify({ buckets: this.buckets, groups: this.groups });
    const set = await redis.set(LAYOUT_KEY, want, "NX");
    if (set === "OK") return;
    const have = await redis.get(LAYOUT_KEY);
    if (have !== want) {
      throw new LayoutMismatch(
        `Redis holds usage counters laid out as ${have}, not ${want}: keep USAGE_REDIS_BUCKETS and ` +
          "USAGE_REDIS_GROUPS as they were (changing them needs a migration of the keys)",
      );
    }
  }
}

export class LayoutMismatch extends Error {}

export const LAYOUT_KEY = "usage:layout";
export const CLOSED_KEY = "usage:closed";
const DEFAULT_OPEN_MAX_MS = 45 * 86_400_000;

/** A month asked to close after its counters expired (nobody closed it in time). */
export class MonthExpired extends Error {}
/** How often the months closed are read again (the aggregator's expiry and too-late decisions). */
const CLOSED_REFRESH_MS = 10_000;
/** The most lines ListTopLines answers. */
export const TOP_K = 100;
/** Events per script call at most: one call must not hold Redis for long. */
const MAX_EVENTS_PER_CALL = 400;

export interface UsageInput {
  sid: string;
  seq: number;
  bytes: number;
  month: Month;
  /** W3C traceparent of the record the event came in, or "". */
  traceparent: string;
  /** Where the event sits in its source: record offset, index in the record, record timestamp (ms). */
  pos?: { offset: number; index: number; ts: number };
}

export interface ApplyResult {
  counted: number;
  /** Producer duplicates: a sequence number the line's window has seen. */
  duplicates: number;
  /** Redelivered events (at or before the position the group applied). */
  replayed: number;
  alerts: number;
  /** Indices of events older than the duplicate window of their line: neither counted nor dropped. */
  stale: number[];
  /** Groups whose outbox got alerts. */
  alertGroups: number[];
}

export type QuotaMode = "plan" | "snapshot" | "terminate" | "override";

export interface QuotaUpdate {
  sid: string;
  /**
   * plan: the domain unit's plan from `from` on (applied when lineSequence is newer than the
   * stored one); snapshot: the plan read from the domain unit for this month and, in `next`, a plan
   * made for later (applied when not older, but not over an operator's override of the same
   * sequence); terminate: no alerts from `from` on; override: an operator's quota for this month on.
   */
  mode: QuotaMode;
  /** The line's domain event sequence (ignored for overrides). */
  lineSequence: bigint;
  /** Bytes; 0 = unlimited. Ignored for "terminate". */
  quotaBytes: bigint;
  /** The first month the change applies to: plan and terminate (default: this month). */
  from?: Month;
  /** For snapshots: a plan made for a later month. */
  next?: { from: Month; quotaBytes: bigint };
  traceparent?: string;
}

export interface LineState {
  usedBytes: bigint;
  alertedLevels: number[];
  /** undefined: not known yet; 0n: unlimited. A terminated line reports its last quota as unknown. */
  quotaBytes: bigint | undefined;
  terminated: boolean;
  /** Neither usage this month nor a quota is known. */
  unknown: boolean;
}

export interface StoreSettings {
  layout: Layout;
  clock: MonthClock;
  /** How long a month's counters are kept after the month was closed for billing. */
  graceMs: number;
  /** How long a month nobody closed keeps its counters after it ends (default 45 days). */
  openMaxMs?: number;
  /** How long a ListTopLines answer is reused (default 30 s). */
  topCacheMs?: number;
  now?: () => number;
}

type Script = (numKeys: number, ...args: (string | number | Buffer)[]) => Promise<unknown>;

/** A line's live usage in Redis: counting, quotas, alerts into the outbox, and reads. */
export class UsageStore {
  readonly layout: Layout;
  readonly clock: MonthClock;
  private readonly apply_: Script;
  private readonly quotas_: Script;
  private readonly now: () => number;
  private readonly topCache = new Map<number, { at: number; lines: { sid: string; used: bigint }[] }>();
  private readonly topScans = new Map<number, Promise<{ sid: string; used: bigint }[]>>();
  /** Per line group and source, the last call sent (see apply). */
  private readonly tails = new Map<string, Promise<void>>();
  /** Per line group and source, the first position of a call that failed (see apply). */
  private readonly failedAt = new Map<string, { offset: number; index: number }>();
  /** Months closed for billing → when (see refreshClosed). */
  private closed = new Map<number, number>();
  private closedReadAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly redis: RedisClient,
    private readonly s: StoreSettings,
  ) {
    this.layout = s.layout;
    this.clock = s.clock;
    this.now = s.now ?? Date.now;
    redis.defineCommand("usageApply", { lua: APPLY });
    redis.defineCommand("usageSetQuotas", { lua: SET_QUOTAS });
    const r = redis as unknown as Record<string, Script>;
    this.apply_ = (...a) => (r.usageApply as Script).apply(redis, a);
    this.quotas_ = (...a) => (r.usageSetQuotas as Script).apply(redis, a);
  }

  /**
   * Unix seconds at which a month's keys expire: the grace after its close for billing, or, while
   * nobody closed it, USAGE_MONTH_OPEN_MAX_DAYS after its end.
   */
  expireAt(month: Month): number {
    const closed = this.closed.get(month.num);
    const until =
      closed !== undefined ? closed + this.s.graceMs : month.endMs + (this.s.openMaxMs ?? DEFAULT_OPEN_MAX_MS);
    return Math.floor(until / 1000);
  }

  /** Whether a month's counters are still kept (events of it are still counted). */
  isOpen(month: Month): boolean {
    return this.now() < this.expireAt(month) * 1000;
  }

  /** The months whose counters are kept now: the current one and those before it still kept. */
  openMonths(): Month[] {
    const cur = this.clock.monthOf(this.now());
    const out = [cur];
    for (let k = 1; k <= 3; k++) {
      const m = this.clock.shift(cur, -k);
      if (this.isOpen(m)) out.unshift(m);
    }
    return out;
  }

  /** Reads the months closed again (at most every 10 s; `force` now). */
  async refreshClosed(force = false): Promise<void> {
    if (!force && this.now() - this.closedReadAt < CLOSED_REFRESH_MS) return;
    const all = await this.redis.hgetall(CLOSED_KEY);
    this.closed = new Map(Object.entries(all).map(([k, v]) => [Number(k), Number(v)]));
    this.closedReadAt = this.now();
  }

  /** When the month was closed for billing, if it was (read from Redis, not the cache). */
  async closedAt(month: Month): Promise<number | undefined> {
    const v = await this.redis.hget(CLOSED_KEY, String(month.num));
    return v === null ? undefined : Number(v);
  }

  /**
   * Closes a month for billing: from now on every line group counts the month's events also as
   * late usage (each group's mark is set atomically with respect to its counting), so the month's
   * total at the close stays readable; its counters then expire the grace after the close. A second
   * close keeps the first one's time (and completes the marks a failed close left unset).
   */
  async closeMonth(month: Month): Promise<{ closedAtMs: number; already: boolean }> {
    if (
      (await this.closedAt(month)) === undefined &&
      this.now() >= month.endMs + (this.s.openMaxMs ?? DEFAULT_OPEN_MAX_MS)
    ) {
      // Its counters are gone: closing it now would make billing read empty totals as if real.
      throw new MonthExpired(
        `${month.label} was never closed and its counters expired at ${new Date(this.expireAt(month) * 1000).toISOString()}`,
      );
    }
    await this.pruneLate(month);
    const set = await this.redis.hsetnx(CLOSED_KEY, String(month.num), String(this.now()));
    const closedAtMs = Number(await this.redis.hget(CLOSED_KEY, String(month.num)));
    const field = `#closed:${month.num}`;
    await Promise.all(
      Array.from({ length: this.layout.groups }, (_, g) =>
        this.redis.hsetnx(this.layout.lateKey(g), field, String(closedAtMs)),
      ),
    );
    this.closed.set(month.num, closedAtMs);
    const at = this.expireAt(month);
    for (let b0 = 0; b0 < this.layout.buckets; b0 += 512) {
      await Promise.all(
        Array.from({ length: Math.min(512, this.layout.buckets - b0) }, (_, k) =>
          this.redis.expireat(this.layout.monthKey(b0 + k, month), at),
        ),
      );
    }
    return { closedAtMs, already: set === 0 };
  }

  /**
   * Drops late usage and close marks of months 13 or more before `month` (billing has long billed
   * them; their counters are gone), so the late hashes hold about a year.
   */
  private async pruneLate(month: Month): Promise<void> {
    const cutoff = this.clock.shift(month, -13).num;
    await Promise.all(
      Array.from({ length: this.layout.groups }, async (_, g) => {
        const key = this.layout.lateKey(g);
        const old = Object.keys(await this.redis.hgetall(key)).filter(
          (f) => Number(f.slice(f.lastIndexOf(f.startsWith("#") ? ":" : "|") + 1)) <= cutoff,
        );
        if (old.length > 0) await this.redis.hdel(key, ...old);
      }),
    );
  }

  /** Late usage of closed months: per line and month, the bytes counted after the close (cumulative). */
  async *lateUsage(): AsyncGenerator<{ sid: string; month: number; bytes: bigint }[]> {
    for (let g = 0; g < this.layout.groups; g++) {
      const h = await this.redis.hgetall(this.layout.lateKey(g));
      const page: { sid: string; month: number; bytes: bigint }[] = [];
      for (const [f, v] of Object.entries(h)) {
        if (f.startsWith("#")) continue;
        const cut = f.lastIndexOf("|");
        page.push({ sid: f.slice(0, cut), month: Number(f.slice(cut + 1)), bytes: BigInt(v) });
      }
      if (page.length > 0) yield page;
    }
  }

  /**
   * The months a quota change may find counters in: this one and the one before (when still kept),
   * and the next (reports dated a few minutes ahead of the clock count there before the month
   * begins): three, as the quota script takes per line. An older month still kept because billing
   * has not closed it yet has had its alerts; its counting goes on against the quota it holds.
   */
  private quotaMonths(): Month[] {
    const open = this.openMonths().slice(-2);
    return [...open, this.clock.shift(open[open.length - 1] as Month, 1)];
  }

  /**
   * Counts events (validated by the caller): one script call per line group and ≤ 400 events.
   * `source` ("<topic>|<partition>") names where the events come from, in position order (every
   * event then has `pos`): redeliveries of that source are skipped exactly.
   */
  async apply(events: UsageInput[], source = ""): Promise<ApplyResult> {
    await this.refreshClosed();
    const byGroup = new Map<number, number[]>();
    const buckets = new Array<number>(events.length);
    for (let i = 0; i < events.length; i++) {
      const b = this.layout.bucket((events[i] as UsageInput).sid);
      buckets[i] = b;
      const g = this.layout.group(b);
      const list = byGroup.get(g);
      if (list) list.push(i);
      else byGroup.set(g, [i]);
    }
    const result: ApplyResult = { counted: 0, duplicates: 0, replayed: 0, alerts: 0, stale: [], alertGroups: [] };
    // Groups in parallel; a group's calls for one source one after another, also across applies
    // made before the previous one finished: its position must only move forward (a call retried
    // after a cluster redirection must not land after its successor, whose position would make
    // Redis skip it as a redelivery). A call after one that failed fails too, unsent: the caller
    // retries them all from the first, which a later call's position must not have overtaken.
    await Promise.all(
      [...byGroup].map(([g, all]) => {
        const key = `${g}|${source}`;
        const previous = this.tails.get(key);
        const run = (async () => {
          if (previous) await previous;
          const first = (events[all[0] as number] as UsageInput).pos;
          const stuck = this.failedAt.get(key);
          // After a failed call only the reading again of its batch may go on: a later position
          // applied first would make Redis skip the failed events as redeliveries.
          if (stuck && source && first && before(stuck, first) && !(await this.appliedPast(g, source, stuck))) {
            throw new Error(
              `line group ${g} of ${source}: a call from offset ${stuck.offset} failed; waiting for it to be read again`,
            );
          }
          try {
            for (let from = 0; from < all.length; from += MAX_EVENTS_PER_CALL) {
              await this.applyGroup(g, all.slice(from, from + MAX_EVENTS_PER_CALL), events, buckets, result, source);
            }
          } catch (e) {
            if (source && first && (!stuck || before(first, stuck))) this.failedAt.set(key, first);
            throw e;
          }
          if (stuck) this.failedAt.delete(key);
        })();
        this.tails.set(key, run);
        void run
          .catch(() => {})
          .finally(() => {
            if (this.tails.get(key) === run) this.tails.delete(key);
          });
        return run;
      }),
    );
    return result;
  }

  /**
   * Whether the group's stored position for a source is at or past `pos`: the events of a failed
   * call were applied since (by the group's next owner reading them again after a rebalance).
   */
  private async appliedPast(g: number, source: string, pos: { offset: number; index: number }): Promise<boolean> {
    const raw = await this.redis.hget(this.layout.positionKey(g), source);
    const m = raw ? /^(\d+):(\d+):/.exec(raw) : null;
    return m !== null && !before({ offset: Number(m[1]), index: Number(m[2]) }, pos);
  }

  private async applyGroup(
    g: number,
    idx: number[],
    events: UsageInput[],
    buckets: number[],
    result: ApplyResult,
    source: string,
  ): Promise<void> {
    // Indices (1-based, as the script's KEYS and ARGV lists) of the months, buckets, entries
    // (bucket × month) and traceparents this call touches.
    const monthIdx = new Map<number, number>();
    const months: Month[] = [];
    const bucketIdx = new Map<number, number>();
    const bucketList: number[] = [];
    const entryIdx = new Map<number, number>();
    const entries: { bucket: number; month: Month; b: number; m: number }[] = [];
    const tpIdx = new Map<string, number>();
    const tps: string[] = [];
    const data = Buffer.allocUnsafe(idx.reduce((n, i) => n + 48 + (events[i] as UsageInput).sid.length, 0));
    let at = 0;
    for (const i of idx) {
      const e = events[i] as UsageInput;
      const bucket = buckets[i] as number;
      let m = monthIdx.get(e.month.num);
      if (m === undefined) {
        months.push(e.month);
        m = months.length;
        monthIdx.set(e.month.num, m);
      }
      let b = bucketIdx.get(bucket);
      if (b === undefined) {
        bucketList.push(bucket);
        b = bucketList.length;
        bucketIdx.set(bucket, b);
      }
      const ek = bucket * 64 + m;
      let entry = entryIdx.get(ek);
      if (entry === undefined) {
        entries.push({ bucket, month: e.month, b, m });
        entry = entries.length;
        entryIdx.set(ek, entry);
      }
      let tp = 0;
      if (e.traceparent !== "") {
        tp = tpIdx.get(e.traceparent) ?? 0;
        if (tp === 0) {
          tps.push(e.traceparent);
          tp = tps.length;
          tpIdx.set(e.traceparent, tp);
        }
      }
      // EVENT_FORMAT "<HddddIHBc0".
      at = data.writeUInt16LE(entry, at);
      at = data.writeDoubleLE(e.seq, at);
      at = data.writeDoubleLE(e.bytes, at);
      at = data.writeDoubleLE(e.pos?.offset ?? 0, at);
      at = data.writeDoubleLE(e.pos?.ts ?? 0, at);
      at = data.writeUInt32LE(e.pos?.index ?? 0, at);
      at = data.writeUInt16LE(tp, at);
      at = data.writeUInt8(e.sid.length, at);
      at += data.write(e.sid, at, "latin1");
    }
    const keys = [
      this.layout.outboxKey(g),
      this.layout.positionKey(g),
      this.layout.staleKey(g),
      this.layout.lateKey(g),
      ...bucketList.map((b) => this.layout.quotaKey(b)),
      ...entries.map((x) => this.layout.monthKey(x.bucket, x.month)),
    ];
    const args: (string | number | Buffer)[] = [
      months.length,
      bucketList.length,
      entries.length,
      this.now(),
      source,
      tps.length,
      ...months.flatMap((m) => [m.label, m.num, this.expireAt(m)]),
      ...entries.flatMap((x) => [x.b, x.m]),
      ...tps,
      data.subarray(0, at),
    ];
    const out = (await this.apply_(keys.length, ...keys, ...args)) as number[];
    result.counted += out[0] as number;
    result.duplicates += out[1] as number;
    result.replayed += out[3] as number;
    if ((out[2] as number) > 0) {
      result.alerts += out[2] as number;
      result.alertGroups.push(g);
    }
    for (let k = 4; k < out.length; k++) result.stale.push(idx[out[k] as number] as number);
  }

  /** Applies quota changes; each re-evaluates the line's open months. Returns the groups alerted. */
  async setQuotas(updates: QuotaUpdate[]): Promise<{ applied: number; alerts: number; alertGroups: number[] }> {
    const open = this.quotaMonths();
    const byGroup = new Map<number, QuotaUpdate[]>();
    for (const u of updates) {
      const g = this.layout.group(this.layout.bucket(u.sid));
      const list = byGroup.get(g);
      if (list) list.push(u);
      else byGroup.set(g, [u]);
    }
    const total = { applied: 0, alerts: 0, alertGroups: [] as number[] };
    await Promise.all(
      [...byGroup].map(async ([g, list]) => {
        for (let from = 0; from < list.length; from += MAX_EVENTS_PER_CALL) {
          const r = await this.setGroupQuotas(g, list.slice(from, from + MAX_EVENTS_PER_CALL), open);
          total.applied += r[0] as number;
          if ((r[1] as number) > 0) {
            total.alerts += r[1] as number;
            total.alertGroups.push(g);
          }
        }
      }),
    );
    return total;
  }

  private async setGroupQuotas(g: number, list: QuotaUpdate[], open: Month[]): Promise<number[]> {
    const oldest = open[0] as Month;
    const cur = this.clock.monthOf(this.now());
    const quotaIdx = new Map<number, number>();
    const monthIdx = new Map<string, number>();
    const monthKeys: string[] = [];
    const monthArgs: (string | number)[] = [];
    const lineArgs: (string | number)[] = [];
    for (const u of list) {
      const b = this.layout.bucket(u.sid);
      let qi = quotaIdx.get(b);
      if (qi === undefined) {
        qi = quotaIdx.size + 1;
        quotaIdx.set(b, qi);
      }
      const mis = open.map((m) => {
        const k = `${b}:${m.num}`;
        let mi = monthIdx.get(k);
        if (mi === undefined) {
          monthKeys.push(this.layout.monthKey(b, m));
          monthArgs.push(m.label, m.num, this.expireAt(m));
          mi = monthKeys.length;
          monthIdx.set(k, mi);
        }
        return mi;
      });
      const quota = u.mode === "terminate" ? "-1" : u.quotaBytes.toString();
      lineArgs.push(
        qi,
        mis[0] ?? 0,
        mis[1] ?? 0,
        mis[2] ?? 0,
        u.sid,
        u.mode,
        u.lineSequence.toString(),
        quota,
        (u.from ?? cur).num,
        u.next ? u.next.from.num : "",
        u.next ? u.next.quotaBytes.toString() : "",
        u.traceparent ?? "",
      );
    }
    const keys = [this.layout.outboxKey(g), ...[...quotaIdx.keys()].map((b) => this.layout.quotaKey(b)), ...monthKeys];
    const args = [quotaIdx.size, monthKeys.length, this.now(), oldest.num, cur.num, ...monthArgs, ...lineArgs];
    return (await this.quotas_(keys.length, ...keys, ...args)) as number[];
  }

  /** A line's usage in a month and its quota. */
  async get(sid: string, month: Month): Promise<LineState> {
    const b = this.layout.bucket(sid);
    const [raw, quota] = await Promise.all([
      this.redis.hgetBuffer(this.layout.monthKey(b, month), sid),
      this.redis.hget(this.layout.quotaKey(b), sid),
    ]);
    const counters = raw ? unpack(raw) : undefined;
    const q = parseQuota(quota, month);
    return {
      usedBytes: counters ? BigInt(counters.used) : 0n,
      alertedLevels: counters ? levelsOf(counters.alerted) : [],
      quotaBytes: q.quota,
      terminated: q.terminated,
      unknown: !counters && quota === null,
    };
  }

  /** The group outboxes' keys, for the relay. */
  outboxKeys(): string[] {
    return Array.from({ length: this.layout.groups }, (_, g) => this.layout.outboxKey(g));
  }

  /**
   * The `limit` lines (≤ TOP_K) with the most usage in a month, most first. Kept out of the
   * counting path (a sorted set per group cost a fifth of the script's time): every month hash
   * is read, and the answer kept for `topCacheMs`.
   */
  async top(month: Month, limit: number): Promise<{ sid: string; used: bigint }[]> {
    const cached = this.topCache.get(month.num);
    const now = this.now();
    if (cached && now - cached.at < (this.s.topCacheMs ?? 30_000)) return cached.lines.slice(0, limit);
    // One scan per month at a time: callers meanwhile wait for its answer.
    let scan = this.topScans.get(month.num);
    if (!scan) {
      scan = this.scanTop(month, now).finally(() => this.topScans.delete(month.num));
      this.topScans.set(month.num, scan);
    }
    return (await scan).slice(0, limit);
  }

  private async scanTop(month: Month, now: number): Promise<{ sid: string; used: bigint }[]> {
    const best: { sid: string; used: number }[] = [];
    for await (const page of this.monthTotals(month, { atClose: false })) {
      for (const t of page) {
        const used = Number(t.used);
        if (best.length === TOP_K && used <= (best[TOP_K - 1] as { used: number }).used) continue;
        best.push({ sid: t.sid, used });
        best.sort((x, y) => (x.used === y.used ? (x.sid < y.sid ? -1 : 1) : y.used - x.used));
        if (best.length > TOP_K) best.pop();
      }
    }
    const lines = best.map((b) => ({ sid: b.sid, used: BigInt(b.used) }));
    this.topCache.set(month.num, { at: now, lines });
    return lines;
  }

  /**
   * Every line's total of a month, bucket by bucket (64 buckets read at a time). For a month closed
   * for billing: the totals at its close (each bucket read with its group's late usage in one
   * MULTI, so what the close left out is taken off exactly), the same on every read.
   */
  async *monthTotals(month: Month, opts: { atClose?: boolean } = {}): AsyncGenerator<{ sid: string; used: bigint }[]> {
    const window = 64;
    const atClose = opts.atClose !== false && (await this.closedAt(month)) !== undefined;
    const suffix = `|${month.num}`;
    for (let b0 = 0; b0 < this.layout.buckets; b0 += window) {
      const buckets = Array.from({ length: Math.min(window, this.layout.buckets - b0) }, (_, k) => b0 + k);
      const read = buckets.map(async (b) => {
        if (!atClose) return { h: await this.redis.hgetallBuffer(this.layout.monthKey(b, month)), late: {} };
        const r = await this.redis
          .multi()
          .hgetallBuffer(this.layout.monthKey(b, month))
          .hgetall(this.layout.lateKey(this.layout.group(b)))
          .exec();
        if (!r || r.some(([e]) => e)) throw new Error(`reading bucket ${b} of ${month.label} at its close failed`);
        return { h: r[0]?.[1] as Record<string, Buffer>, late: r[1]?.[1] as Record<string, string> };
      });
      const page: { sid: string; used: bigint }[] = [];
      for (const { h, late } of await Promise.all(read)) {
        for (const [sid, raw] of Object.entries(h)) {
          const l = late[sid + suffix];
          page.push({ sid, used: BigInt(unpack(raw).used) - (l === undefined ? 0n : BigInt(l)) });
        }
      }
      if (page.length > 0) yield page;
    }
  }
}

/** Whether position a comes before position b. */
function before(a: { offset: number; index: number }, b: { offset: number; index: number }): boolean {
  return a.offset < b.offset || (a.offset === b.offset && a.index < b.index);
}

/** Decodes a line's packed month counters (33 bytes; 25 before quotas were carried in them). */
export function unpack(raw: Buffer): { used: number; hi: number; window: number; alerted: number } {
  return {
    used: raw.readDoubleLE(0),
    hi: raw.readDoubleLE(8),
    window: raw.readDoubleLE(16),
    alerted: raw.readUInt8(24),
  };
}

export function levelsOf(mask: number): number[] {
  return LEVELS.filter((_, i) => (mask & (1 << i)) !== 0);
}

/** The quota in force for `month` from a stored quota field. */
export function parseQuota(
  field: string | null,
  month: Month,
): { quota: bigint | undefined; terminated: boolean; lineSequence: bigint } {
  if (field === null) return { quota: undefined, terminated: false, lineSequence: 0n };
  // "line_sequence|kind|q0|from|q|from|q..." (see scripts.ts).
  const parts = field.split("|");
  let q = BigInt(parts[2] ?? "-2");
  for (let i = 3; i + 1 < parts.length; i += 2) {
    if (month.num >= Number(parts[i])) q = BigInt(parts[i + 1] as string);
  }
  return { quota: q < 0n ? undefined : q, terminated: q === -1n, lineSequence: BigInt(parts[0] ?? "0") };
}
