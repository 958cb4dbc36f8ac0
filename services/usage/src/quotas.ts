import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { DomainEvent } from "../../../gen/telco/domain/v1/events_pb.js";
import type { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import type { Decoded } from "../../kit/src/kafka.js";
import type { Logger } from "../../kit/src/logger.js";
import type { RedisClient } from "../../kit/src/redis.js";
import type { QuotaUpdate, UsageStore } from "./redis/store.js";

/** When the quotas were last loaded in full from the domain unit (ISO time). */
export const QUOTAS_LOADED_KEY = "usage:quotas:loaded";

/**
 * The quota change a domain event means for the usage unit, or undefined when it means none.
 * A plan change dated later (e.g. next month) becomes a pending quota for the months from then.
 */
export function quotaUpdateOf(e: DomainEvent, store: UsageStore, traceparent: string): QuotaUpdate | undefined {
  const base = { sid: e.subscriptionId, lineSequence: e.lineSequence, traceparent };
  switch (e.event.case) {
    case "lineActivated":
      return { ...base, mode: "current", quotaBytes: e.event.value.quotaBytes };
    case "planChanged": {
      const from = e.event.value.effectiveFrom;
      const fromMs = from ? timestampMs(from) : 0;
      const cur = store.clock.monthOf(Date.now());
      const fromMonth = store.clock.monthOf(fromMs);
      if (fromMonth.num <= cur.num) return { ...base, mode: "current", quotaBytes: e.event.value.quotaBytes };
      return {
        ...base,
        mode: "pending",
        quotaBytes: 0n,
        next: { from: fromMonth, quotaBytes: e.event.value.quotaBytes },
      };
    }
    case "lineTerminated":
      return { ...base, mode: "terminate", quotaBytes: 0n };
    default:
      return undefined;
  }
}

/** Handler of the `domain.events` consumer: applies quota changes, in order per line. */
export function domainEventsHandler(store: UsageStore, onAlerts: (groups: number[]) => void) {
  return async (records: Decoded<DomainEvent>[]): Promise<void> => {
    const updates: QuotaUpdate[] = [];
    for (const r of records) {
      const u = quotaUpdateOf(r.value, store, r.headers.traceparent ?? "");
      if (u) updates.push(u);
    }
    if (updates.length === 0) return;
    // A line's events are applied in order within one call; the script keeps the newest sequence.
    const result = await store.setQuotas(updates);
    if (result.alertGroups.length > 0) onAlerts(result.alertGroups);
  };
}

/**
 * Loads every line's quota from the domain unit (ListLineQuotas), applying each page as a
 * snapshot: a quota already newer from domain.events (a higher line sequence) is kept.
 */
export async function loadQuotas(o: {
  domain: Client<typeof SubscriptionService>;
  store: UsageStore;
  redis: RedisClient;
  logger: Logger;
  onAlerts: (groups: number[]) => void;
  signal?: AbortSignal;
}): Promise<number> {
  const started = Date.now();
  let lines = 0;
  let lastLog = started;
  for await (const page of o.domain.listLineQuotas({ pageSize: 5_000 }, { signal: o.signal })) {
    const updates: QuotaUpdate[] = page.quotas.map((q) => ({
      sid: q.subscriptionId,
      mode: "snapshot",
      lineSequence: q.lineSequence,
      quotaBytes: q.quotaBytes,
      next: q.next?.effectiveFrom
        ? { from: o.store.clock.monthOf(timestampMs(q.next.effectiveFrom)), quotaBytes: q.next.quotaBytes }
        : undefined,
    }));
    const r = await o.store.setQuotas(updates);
    if (r.alertGroups.length > 0) o.onAlerts(r.alertGroups);
    lines += updates.length;
    if (Date.now() - lastLog > 5_000) {
      lastLog = Date.now();
      o.logger.info(
        { lines, elapsed_s: Math.round((lastLog - started) / 1000) },
        "loading quotas from the domain unit",
      );
    }
  }
  await o.redis.set(QUOTAS_LOADED_KEY, new Date().toISOString());
  o.logger.info({ lines, elapsed_ms: Date.now() - started }, "quotas loaded from the domain unit");
  return lines;
}
