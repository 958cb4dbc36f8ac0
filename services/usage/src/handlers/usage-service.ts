import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type CloseMonthRequest,
  CloseMonthResponseSchema,
  type GetLineUsageHistoryRequest,
  GetLineUsageHistoryResponseSchema,
  type GetLineUsageRequest,
  type GetLineUsageResponse,
  GetLineUsageResponseSchema,
  type ListTopLinesRequest,
  ListTopLinesResponseSchema,
  ReloadQuotasResponseSchema,
  type SetLineQuotaRequest,
  SetLineQuotaResponseSchema,
  type StreamLateUsageRequest,
  StreamLateUsageResponseSchema,
  type StreamMonthTotalsRequest,
  StreamMonthTotalsResponseSchema,
  type UsageService,
  type WatchLineUsageRequest,
  WatchLineUsageResponseSchema,
} from "../../../../gen/telco/usage/v1/usage_pb.js";
import { assertLineAccess, principalOf } from "../../../kit/src/auth.js";
import { ID_RE, MONTH_RE, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import type { Month } from "../months.js";
import type { LineState, UsageStore } from "../redis/store.js";
import { MonthExpired, TOP_K } from "../redis/store.js";

/** Largest quota accepted: 64 TiB (quota × 100 stays exact in the counting script's doubles). */
export const MAX_QUOTA = 1n << 46n;
const LINE_RULE = "required: 1-64 letters, digits, '.', '_', ':' or '-'";
const MONTH_RULE = 'required: "YYYY-MM", e.g. "2026-11"';
const MINUTE = 60_000;

/** Reads a line's usage over time (the InfluxDB time series). */
export interface HistorySource {
  lineHistory(
    subscriptionId: string,
    fromMs: number,
    toMs: number,
    stepMs: number,
  ): Promise<{ startMs: number; bytes: bigint }[]>;
}

export interface UsageServiceDeps {
  store: UsageStore;
  history?: HistorySource;
  /** Loads every quota from the domain unit again; absent when this instance does not manage quotas. */
  reloadQuotas?: () => Promise<number>;
  /** How often WatchLineUsage looks for a change. */
  watchIntervalMs?: number;
  /** WatchLineUsage streams one instance serves at once (default 1000). */
  maxWatches?: number;
}

export class UsageServiceImpl implements ServiceImpl<typeof UsageService> {
  /** WatchLineUsage streams open now (each polls Redis). */
  private watches = 0;

  constructor(private readonly d: UsageServiceDeps) {}

  private get store() {
    return this.d.store;
  }

  async getLineUsage(req: GetLineUsageRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", LINE_RULE);
    v.check(MONTH_RE.test(req.month), "month", MONTH_RULE);
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const month = this.store.clock.parse(req.month);
    const u = await this.store.get(req.subscriptionId, month);
    if (u.unknown) throw notFound(`line ${req.subscriptionId}`);
    return usageMessage(req.subscriptionId, month, u);
  }

  async setLineQuota(req: SetLineQuotaRequest) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", LINE_RULE);
    v.check(req.quotaBytes <= MAX_QUOTA, "quota_bytes", `must be at most ${MAX_QUOTA} (64 TiB); 0 means unlimited`);
    v.throwIfAny();
    const before = await this.store.get(req.subscriptionId, this.store.clock.monthOf(Date.now()));
    // The usage unit knows a line from its quota (the domain unit's events) or its usage.
    if (before.unknown) throw notFound(`line ${req.subscriptionId}`);
    if (before.terminated) {
      throw new ConnectError(`line ${req.subscriptionId} is terminated`, Code.FailedPrecondition);
    }
    await this.store.setQuotas([
      { sid: req.subscriptionId, mode: "override", lineSequence: 0n, quotaBytes: req.quotaBytes },
    ]);
    return create(SetLineQuotaResponseSchema, { subscriptionId: req.subscriptionId, quotaBytes: req.quotaBytes });
  }

  async getLineUsageHistory(req: GetLineUsageHistoryRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", LINE_RULE);
    v.check(req.from !== undefined, "from", "required");
    v.check(req.to !== undefined, "to", "required");
    const from = req.from ? timestampMs(req.from) : 0;
    const to = req.to ? timestampMs(req.to) : 0;
    if (req.from && req.to) {
      v.check(to > from, "to", "must be after from");
      v.check(to - from <= 400 * 24 * 60 * MINUTE, "to", "at most 400 days after from");
    }
    const step = req.step ? durationMs(req.step) : 60 * MINUTE;
    v.check(
      step >= 5 * MINUTE && step % (5 * MINUTE) === 0,
      "step",
      "a whole multiple of 5 minutes (the stored resolution)",
    );
    if (v.empty && (to - from) / step > 2_000) v.add("step", "too small for the range: at most 2000 points per answer");
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    if (!this.d.history) throw new ConnectError("usage history is not available here", Code.Unavailable);
    // Steps start at `from` on the 5-minute grid the series is stored at.
    const start = from - (from % (5 * MINUTE));
    const points = await this.d.history.lineHistory(req.subscriptionId, start, to, step);
    if (points.length === 0) {
      const known = await this.store.get(req.subscriptionId, this.store.clock.monthOf(Date.now()));
      if (known.unknown) throw notFound(`line ${req.subscriptionId}`);
    }
    return create(GetLineUsageHistoryResponseSchema, {
      subscriptionId: req.subscriptionId,
      step: durationFromMs(step),
      points: points.map((p) => ({ start: timestampFromMs(p.startMs), bytes: p.bytes })),
    });
  }

  async *watchLineUsage(req: WatchLineUsageRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", LINE_RULE);
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const max = this.d.maxWatches ?? 1_000;
    if (this.watches >= max) {
      throw new ConnectError(
        `at most ${max} usage streams at once on this instance; try again later`,
        Code.ResourceExhausted,
      );
    }
    this.watches += 1;
    try {
      yield* this.watch(req, ctx);
    } finally {
      this.watches -= 1;
    }
  }

  private async *watch(req: WatchLineUsageRequest, ctx: HandlerContext) {
    const interval = this.d.watchIntervalMs ?? 500;
    let last = "";
    let first = true;
    while (!ctx.signal.aborted) {
      const month = this.store.clock.monthOf(Date.now());
      const u = await this.store.get(req.subscriptionId, month);
      if (first && u.unknown) throw notFound(`line ${req.subscriptionId}`);
      first = false;
      const msg = usageMessage(req.subscriptionId, month, u);
      const sig = `${msg.month}|${msg.usedBytes}|${msg.quotaBytes}|${msg.alertedLevels.join(",")}`;
      if (sig !== last) {
        last = sig;
        yield create(WatchLineUsageResponseSchema, { usage: msg });
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, interval);
        ctx.signal.addEventListener(
          "abort",
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  }

  async listTopLines(req: ListTopLinesRequest) {
    const v = new Violations();
    v.check(MONTH_RE.test(req.month), "month", MONTH_RULE);
    v.check(req.limit >= 0 && req.limit <= TOP_K, "limit", `1..${TOP_K}; 0 means 10`);
    v.throwIfAny();
    const month = this.store.clock.parse(req.month);
    const top = await this.store.top(month, req.limit || 10);
    const states = await Promise.all(top.map((t) => this.store.get(t.sid, month)));
    return create(ListTopLinesResponseSchema, {
      lines: top.map((t, i) => usageMessage(t.sid, month, states[i] as LineState)),
    });
  }

  async *streamMonthTotals(req: StreamMonthTotalsRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(MONTH_RE.test(req.month), "month", MONTH_RULE);
    const size = pageSize(req.pageSize, 5_000, 10_000, v);
    v.throwIfAny();
    const month = this.store.clock.parse(req.month);
    await this.store.refreshClosed(true);
    if (!this.store.isOpen(month) && month.endMs <= Date.now()) {
      throw new ConnectError(
        `${req.month}'s counters have expired (kept until ${new Date(this.store.expireAt(month) * 1000).toISOString()}): its totals are gone`,
        Code.FailedPrecondition,
      );
    }
    let page: { subscriptionId: string; usedBytes: bigint }[] = [];
    for await (const chunk of this.store.monthTotals(month)) {
      if (ctx.signal.aborted) return;
      for (const t of chunk) {
        page.push({ subscriptionId: t.sid, usedBytes: t.used });
        if (page.length === size) {
          yield create(StreamMonthTotalsResponseSchema, { totals: page });
          page = [];
        }
      }
    }
    if (page.length > 0) yield create(StreamMonthTotalsResponseSchema, { totals: page });
  }

  async closeMonth(req: CloseMonthRequest) {
    const v = new Violations();
    v.check(MONTH_RE.test(req.month), "month", MONTH_RULE);
    v.throwIfAny();
    const month = this.store.clock.parse(req.month);
    if (month.endMs > Date.now()) {
      throw new ConnectError(
        `${req.month} has not ended yet: a month is closed after its end`,
        Code.FailedPrecondition,
      );
    }
    let closed: { closedAtMs: number; already: boolean };
    try {
      closed = await this.store.closeMonth(month);
    } catch (e) {
      if (e instanceof MonthExpired) throw new ConnectError(e.message, Code.FailedPrecondition);
      throw e;
    }
    const { closedAtMs, already } = closed;
    return create(CloseMonthResponseSchema, { closedAt: timestampFromMs(closedAtMs), alreadyClosed: already });
  }

  async *streamLateUsage(req: StreamLateUsageRequest, ctx: HandlerContext) {
    const v = new Violations();
    const size = pageSize(req.pageSize, 5_000, 10_000, v);
    v.throwIfAny();
    let page: { subscriptionId: string; month: string; lateBytes: bigint }[] = [];
    for await (const chunk of this.store.lateUsage()) {
      if (ctx.signal.aborted) return;
      for (const l of chunk) {
        const month = `${Math.floor(l.month / 100)}-${String(l.month % 100).padStart(2, "0")}`;
        page.push({ subscriptionId: l.sid, month, lateBytes: l.bytes });
        if (page.length === size) {
          yield create(StreamLateUsageResponseSchema, { usage: page });
          page = [];
        }
      }
    }
    if (page.length > 0) yield create(StreamLateUsageResponseSchema, { usage: page });
  }

  async reloadQuotas() {
    if (!this.d.reloadQuotas) {
      throw new ConnectError("this instance does not load quotas (USAGE_COMPONENTS has no quotas)", Code.Unavailable);
    }
    const lines = await this.d.reloadQuotas();
    return create(ReloadQuotasResponseSchema, { linesLoaded: BigInt(lines) });
  }
}

function usageMessage(sid: string, month: Month, u: LineState): GetLineUsageResponse {
  const quota = u.quotaBytes ?? 0n;
  return create(GetLineUsageResponseSchema, {
    subscriptionId: sid,
    month: month.label,
    usedBytes: u.usedBytes,
    quotaBytes: quota,
    alertedLevels: u.alertedLevels,
    percent: quota > 0n ? Number((u.usedBytes * 10_000n) / quota) / 100 : 0,
    quotaKnown: u.quotaBytes !== undefined,
  });
}
