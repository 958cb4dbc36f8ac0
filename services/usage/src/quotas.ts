import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { DomainEvent } from "../../../gen/telco/domain/v1/events_pb.js";
import type { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { ID_RE } from "../../kit/src/errors.js";
import type { Decoded, Rejection } from "../../kit/src/kafka.js";
import type { Logger } from "../../kit/src/logger.js";
import type { RedisClient } from "../../kit/src/redis.js";
import { MAX_QUOTA } from "./handlers/usage-service.js";
import { MAX_SEQ } from "./redis/scripts.js";
import type { QuotaUpdate, UsageStore } from "./redis/store.js";

/** Line sequences are kept in the counting script's doubles. */
const MAX_LINE_SEQUENCE = BigInt(MAX_SEQ);

/** When the quotas were last loaded in full from the domain unit (ISO time). */
export const QUOTAS_LOADED_KEY = "usage:quotas:loaded";

/**
 * The quota change a domain event means for the usage unit, undefined when it means none, or why
 * it cannot be taken (dead-lettered: one bad event must not hold every other line's quota back).
 * A change applies from the month of its effective time: last month keeps its own quota, and a
 * plan dated next month waits for it.
 */
export function quotaUpdateOf(
  e: DomainEvent,
  store: UsageStore,
  traceparent: string,
): QuotaUpdate | string | undefined {
  if (e.event.case === undefined) return undefined;
  if (!ID_RE.test(e.subscriptionId)) return "subscription_id is missing or malformed";
  if (e.lineSequence > MAX_LINE_SEQUENCE) return `line_sequence ${e.lineSequence} exceeds ${MAX_LINE_SEQUENCE}`;
  const monthAt = (t: Timestamp | undefined) => store.clock.monthOf(t ? timestampMs(t) : Date.now());
  const base = { sid: e.subscriptionId, lineSequence: e.lineSequence, traceparent };
  const quota = (q: bigint) => (q > MAX_QUOTA ? `quota_bytes ${q} exceeds ${MAX_QUOTA}` : undefined);
  switch (e.event.case) {
    case "lineActivated": {
      const v = e.event.value;
      const bad = quota(v.quotaBytes);
      if (bad) return bad;
      return { ...base, mode: "plan", quotaBytes: v.quotaBytes, from: monthAt(v.activatedAt ?? e.occurredAt) };
    }
    case "planChanged": {
      const v = e.event.value;
      const bad = quota(v.quotaBytes);
      if (bad) return bad;
      return { ...base, mode: "plan", quotaBytes: v.quotaBytes, from: monthAt(v.effectiveFrom ?? e.occurredAt) };
    }
    case "lineTerminated":
      return { ...base, mode: "terminate", quotaBytes: 0n, from: monthAt(e.event.value.terminatedAt ?? e.occurredAt) };
    default:
      return undefined;
  }
}

/** Handler of the `domain.events` consumer: applies quota changes, in order per line. */
export function domainEventsHandler(store: UsageStore, onAlerts: (groups: number[]) => void) {
  return async (records: Decoded<DomainEvent>[]): Promise<Rejection<DomainEvent>[]> => {
    const updates: QuotaUpdate[] = [];
    const rejections: Rejection<DomainEvent>[] = [];
    for (const r of records) {
      const u = quotaUpdateOf(r.value, store, r.headers.traceparent ?? "");
      if (typeof u === "string") rejections.push({ record: r, reason: u });
      else if (u) updates.push(u);
    }
    if (updates.length === 0) return rejections;
    // A line's events are applied in order within one call; the script keeps the newest sequence.
    const result = await store.setQuotas(updates);
    if (result.alertGroups.length > 0) onAlerts(result.alertGroups);
    return rejections;
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
