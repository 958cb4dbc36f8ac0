import type { RedisClient } from "../../../kit/src/redis.js";
import type { Month, MonthClock } from "../months.js";
import { APPLY, LEVELS, SET_QUOTAS } from "./scripts.js";

/**
 * Where the usage unit keeps each line in Redis. A line hashes (FNV-1a) to one of `buckets`
 * buckets; a bucket belongs to one of `groups` line groups (bucket mod groups), and the group is
 * the hash tag of every key, so one script call can work on all lines of a group on a Redis
 * Cluster. Per bucket, a month's counters and the lines' quotas are small hashes (one field per
 * line) that Redis keeps as compact listpacks while they hold at most 128 fields
 * (hash-max-listpack-entries): 32,768 buckets keep ≈ 31 lines each at 1M lines.
 *
 *   usage:{u<g>}:m:<bucket>:<YYYYMM>  hash  line → packed counters (see scripts.ts)
 *   usage:{u<g>}:q:<bucket>           hash  line → quota
 *   usage:{u<g>}:top:<YYYYMM>         zset  the group's top lines by usage (≤ TOP_K)
 *   usage:{u<g>}:outbox               hash  notification id → alert, until the relay published it
 *   usage:{u<g>}:pos                  hash  "<topic>|<partition>" → last position applied (offset:index:timestamp)
 *   usage:{u<g>}:stale                hash  positions dead-lettered as too late (7 days)
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

  topKey(group: number, month: Month): string {
    return `usage:{u${group}}:top:${month.num}`;
  }

  outboxKey(group: number): string {
    return `usage:{u${group}}:outbox`;
  }

  positionKey(group: number): string {
    return `usage:{u${group}}:pos`;
  }

  staleKey(group: number): string {
    return `usage:{u${group}}:stale`;
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
/** Lines kept per group and month for ListTopLines. */
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

export type QuotaMode = "current" | "snapshot" | "pending" | "terminate" | "override";

export interface QuotaUpdate {
  sid: string;
  mode: QuotaMode;
  /** The line's domain event sequence (ignored for overrides). */
  lineSequence: bigint;
  /** Bytes; 0 = unlimited. Ignored for "terminate" and, when the line's quota is known, "pending". */
  quotaBytes: bigint;
  /** For "pending" (and snapshots with a plan change ahead): the month the next quota applies from. */
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
  /** How long a month's counters outlive the month. */
  graceMs: number;
  now?: () => number;
}

type Script = (numKeys: number, ...args: (string | number)[]) => Promise<unknown>;

/** A line's live usage in Redis: counting, quotas, alerts into the outbox, and reads. */
export class UsageStore {
  readonly layout: Layout;
  readonly clock: MonthClock;
  private readonly apply_: Script;
  private readonly quotas_: Script;
  private readonly now: () => number;

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

  /** Unix seconds at which a month's keys expire. */
  expireAt(month: Month): number {
    return Math.floor((month.endMs + this.s.graceMs) / 1000);
  }

  /** Whether a month's counters are still kept (its end + grace is ahead). */
  isOpen(month: Month): boolean {
    return this.now() < month.endMs + this.s.graceMs;
  }

  /** The months whose counters are kept now: the current one and, during the grace, the previous. */
  openMonths(): Month[] {
    const cur = this.clock.monthOf(this.now());
    const prev = this.clock.shift(cur, -1);
    return this.isOpen(prev) ? [prev, cur] : [cur];
  }

  /**
   * Counts events (validated by the caller): one script call per line group and ≤ 400 events.
   * `source` ("<topic>|<partition>") names where the events come from, in position order (every
   * event then has `pos`): redeliveries of that source are skipped exactly.
   */
  async apply(events: UsageInput[], source = ""): Promise<ApplyResult> {
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
    // Groups in parallel; a group's calls one after another: its position must only move forward
    // (a call retried after a cluster redirection must not land after its successor).
    await Promise.all(
      [...byGroup].map(async ([g, all]) => {
        for (let from = 0; from < all.length; from += MAX_EVENTS_PER_CALL) {
          await this.applyGroup(g, all.slice(from, from + MAX_EVENTS_PER_CALL), events, buckets, result, source);
        }
      }),
    );
    return result;
  }

  private async applyGroup(
    g: number,
    idx: number[],
    events: UsageInput[],
    buckets: number[],
    result: ApplyResult,
    source: string,
  ): Promise<void> {
    const months = new Map<string, number>();
    const monthList: { bucket: number; month: Month }[] = [];
    const quotas = new Map<number, number>();
    const evArgs: (string | number)[] = [];
    for (const i of idx) {
      const e = events[i] as UsageInput;
      const b = buckets[i] as number;
      const mk = `${b}:${e.month.num}`;
      let mi = months.get(mk);
      if (mi === undefined) {
        monthList.push({ bucket: b, month: e.month });
        mi = monthList.length;
        months.set(mk, mi);
      }
      let qi = quotas.get(b);
      if (qi === undefined) {
        qi = quotas.size + 1;
        quotas.set(b, qi);
      }
      evArgs.push(mi, qi, e.sid, e.seq, e.bytes, e.traceparent, e.pos?.offset ?? 0, e.pos?.index ?? 0, e.pos?.ts ?? 0);
    }
    const keys = [
      this.layout.outboxKey(g),
      ...monthList.map((m) => this.layout.monthKey(m.bucket, m.month)),
      ...[...quotas.keys()].map((b) => this.layout.quotaKey(b)),
      ...monthList.map((m) => this.layout.topKey(g, m.month)),
      ...(source ? [this.layout.positionKey(g), this.layout.staleKey(g)] : []),
    ];
    const args = [
      monthList.length,
      quotas.size,
      this.now(),
      TOP_K,
      source,
      ...monthList.flatMap((m) => [m.month.label, m.month.num, this.expireAt(m.month)]),
      ...evArgs,
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
    const open = this.openMonths();
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
        u.sid,
        u.mode,
        u.lineSequence.toString(),
        quota,
        u.next ? u.next.from.num : "",
        u.next ? u.next.quotaBytes.toString() : "",
        u.traceparent ?? "",
      );
    }
    const keys = [this.layout.outboxKey(g), ...[...quotaIdx.keys()].map((b) => this.layout.quotaKey(b)), ...monthKeys];
    const args = [quotaIdx.size, monthKeys.length, this.now(), ...monthArgs, ...lineArgs];
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

  /** The `limit` lines (≤ TOP_K) with the most usage in a month, most first. */
  async top(month: Month, limit: number): Promise<{ sid: string; used: bigint }[]> {
    const per = await Promise.all(
      Array.from({ length: this.layout.groups }, (_, g) =>
        this.redis.zrevrange(this.layout.topKey(g, month), 0, limit - 1, "WITHSCORES"),
      ),
    );
    const all: { sid: string; used: bigint }[] = [];
    for (const flat of per) {
      for (let i = 0; i < flat.length; i += 2)
        all.push({ sid: flat[i] as string, used: BigInt(flat[i + 1] as string) });
    }
    all.sort((a, b) => (a.used === b.used ? (a.sid < b.sid ? -1 : 1) : a.used > b.used ? -1 : 1));
    return all.slice(0, limit);
  }

  /** Every line's total of a month, bucket by bucket (16 buckets read at a time). */
  async *monthTotals(month: Month): AsyncGenerator<{ sid: string; used: bigint }[]> {
    const window = 16;
    for (let b0 = 0; b0 < this.layout.buckets; b0 += window) {
      const hashes = await Promise.all(
        Array.from({ length: Math.min(window, this.layout.buckets - b0) }, (_, k) =>
          this.redis.hgetallBuffer(this.layout.monthKey(b0 + k, month)),
        ),
      );
      const page: { sid: string; used: bigint }[] = [];
      for (const h of hashes) {
        for (const [sid, raw] of Object.entries(h)) page.push({ sid, used: BigInt(unpack(raw).used) });
      }
      if (page.length > 0) yield page;
    }
  }
}

/** Decodes a line's packed month counters. */
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
  const [q, seq, from, next] = field.split("|");
  const inForce = from !== undefined && month.num >= Number(from) ? next : q;
  const n = BigInt(inForce ?? "-2");
  return { quota: n < 0n ? undefined : n, terminated: n === -1n, lineSequence: BigInt(seq ?? "0") };
}
