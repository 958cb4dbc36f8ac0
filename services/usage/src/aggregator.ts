import type { DescMessage } from "@bufbuild/protobuf";
import { UsageEventBatchSchema, UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { ID_RE } from "../../kit/src/errors.js";
import { type Decoded, MESSAGE_TYPE_HEADER, type Rejection } from "../../kit/src/kafka.js";
import type { Logger } from "../../kit/src/logger.js";
import { usageEvents } from "./metrics.js";
import type { Month, MonthClock } from "./months.js";
import { MAX_SEQ, SEQ_WINDOW } from "./redis/scripts.js";
import type { UsageInput, UsageStore } from "./redis/store.js";
import { readUsageEvent, readUsageEventBatch, type WireEvent } from "./wire.js";

/** Largest usage one report may carry: 1 TiB. More is a unit mistake, not traffic. */
export const MAX_EVENT_BYTES = 2 ** 40;
/** Header of a dead-lettered event that came in a batch record: its index in the batch. */
export const BATCH_INDEX_HEADER = "dlq-batch-index";

/** A usage.events record's value as the aggregator reads it (see wire.ts). */
export interface UsageValue {
  batch: boolean;
  events: WireEvent[];
  /** The record's value: a batch event's own bytes are a slice of it. */
  raw: Buffer;
}

export type UsageRecord = Decoded<UsageValue>;

/** Reads a usage.events value of either schema (the consumer's decodeValue). */
export function readUsageValue(schema: DescMessage, raw: Buffer): UsageValue {
  if (schema.typeName === UsageEventBatchSchema.typeName) return { batch: true, events: readUsageEventBatch(raw), raw };
  return { batch: false, events: [readUsageEvent(raw)], raw };
}

/** Running counts of what the aggregator did (metrics, the benchmark, tests). */
export interface AggregatorStats {
  records: number;
  events: number;
  counted: number;
  duplicates: number;
  replayed: number;
  deadLettered: number;
  alerts: number;
  batches: number;
}

export interface AggregatorOptions {
  store: UsageStore;
  logger: Logger;
  /** Events dated further ahead than this are refused (a clock gone wrong, not usage). */
  maxClockSkewMs: number;
  /** Told which line groups got alerts, so the relay publishes them at once. */
  onAlerts?: (groups: number[]) => void;
  now?: () => number;
}

/**
 * The handler of the `usage.events` consumer group: per fetched batch it checks every event,
 * counts the good ones with one atomic script call per line group (see redis/store.ts), and
 * returns the ones it cannot take, each with its reason, to be dead-lettered before the commit.
 * Redelivered batches are harmless: the script skips positions of the partition it has applied
 * (and, for producer retries, sequence numbers the line has seen).
 */
export class Aggregator {
  readonly stats: AggregatorStats = {
    records: 0,
    events: 0,
    counted: 0,
    duplicates: 0,
    replayed: 0,
    deadLettered: 0,
    alerts: 0,
    batches: 0,
  };
  private readonly now: () => number;
  private readonly checker: EventChecker;

  constructor(private readonly o: AggregatorOptions) {
    this.now = o.now ?? Date.now;
    this.checker = new EventChecker(o.store, o.maxClockSkewMs);
  }

  handle = async (
    records: UsageRecord[],
    from?: { topic: string; partition: number },
  ): Promise<Rejection<UsageValue>[]> => {
    const inputs: UsageInput[] = [];
    const origin: { record: UsageRecord; index: number; event: WireEvent }[] = [];
    const rejections: Rejection<UsageValue>[] = [];
    const now = this.now();
    for (const record of records) {
      const { batch, events } = record.value;
      if (batch && events.length === 0) {
        rejections.push({ record, reason: "batch record holds no events" });
        continue;
      }
      const traceparent = record.headers.traceparent ?? "";
      const offset = Number(record.offset);
      // The record's timestamp only guards replays against a re-made topic (see the script); one
      // out of range (a producer's clock, or -1 for none) must not make the whole call fail.
      const stamp = Number(record.timestamp);
      const ts = Number.isFinite(stamp) && stamp >= 0 && stamp <= 1e15 ? Math.floor(stamp) : 0;
      for (let index = 0; index < events.length; index++) {
        const event = events[index] as WireEvent;
        const c = this.checker.check(event, batch ? undefined : record.key, now);
        if (typeof c === "string") {
          rejections.push(batch ? eventRejection(record, index, event, c) : { record, reason: c });
          continue;
        }
        const { month } = c;
        inputs.push({
          sid: event.subscriptionId,
          seq: event.seq,
          bytes: event.bytes,
          month,
          traceparent,
          pos: { offset, index, ts },
        });
        origin.push({ record, index, event });
      }
      this.stats.events += events.length;
    }
    this.stats.records += records.length;
    this.stats.batches += 1;
    if (inputs.length > 0) {
      const r = await this.o.store.apply(inputs, from ? `${from.topic}|${from.partition}` : "");
      this.stats.counted += r.counted;
      this.stats.duplicates += r.duplicates;
      this.stats.replayed += r.replayed;
      usageEvents.inc({ result: "counted" }, r.counted);
      usageEvents.inc({ result: "duplicate" }, r.duplicates + r.replayed);
      this.stats.alerts += r.alerts;
      for (const i of r.stale) {
        const { record, index, event } = origin[i] as (typeof origin)[number];
        const reason =
          `seq ${event.seq} is more than ${SEQ_WINDOW} behind the highest seen for line ${event.subscriptionId}: ` +
          "too late to tell a new event from a producer's retry";
        rejections.push(record.value.batch ? eventRejection(record, index, event, reason) : { record, reason });
      }
      if (r.alertGroups.length > 0) this.o.onAlerts?.(r.alertGroups);
    }
    this.stats.deadLettered += rejections.length;
    return rejections;
  };
}

/** Where an event counts: its occurrence time (ms) and month in the carrier's time zone. */
export interface Placed {
  ms: number;
  month: Month;
}

/**
 * The checks every usage event passes before it counts, shared by the aggregator (which
 * dead-letters what fails) and the time series writer (which skips it: the aggregator's group
 * already dead-letters it).
 */
export class EventChecker {
  constructor(
    private readonly months: { clock: MonthClock; isOpen(m: Month): boolean },
    private readonly maxClockSkewMs: number,
  ) {}

  /** Why an event cannot be counted, or where it counts. `key`: the record key of a single-event record. */
  check(e: WireEvent, key: string | undefined, now: number): string | Placed {
    if (!ID_RE.test(e.subscriptionId)) return "subscription_id is missing or malformed";
    if (key !== undefined && key !== e.subscriptionId) {
      return `record key ${JSON.stringify(key)} is not the event's subscription_id ${e.subscriptionId}`;
    }
    if (e.eventId.length === 0 || e.eventId.length > 128) return "event_id must be 1-128 characters";
    if (e.bytes === 0) return "bytes must be > 0";
    if (e.bytes > MAX_EVENT_BYTES) return `bytes ${big(e.bytes)} exceeds ${MAX_EVENT_BYTES} (1 TiB) per event`;
    if (e.seq > MAX_SEQ) return `seq ${big(e.seq)} exceeds ${MAX_SEQ}`;
    if (!e.hasTime) return "occurred_at is missing";
    const ms = e.seconds * 1000 + Math.floor(e.nanos / 1e6);
    if (!Number.isFinite(ms) || ms < 0) return "occurred_at is not a valid time";
    if (ms > now + this.maxClockSkewMs) {
      return `occurred_at ${new Date(ms).toISOString()} is in the future (more than ${this.maxClockSkewMs / 1000} s ahead)`;
    }
    const month = this.months.clock.monthOf(ms);
    if (!this.months.isOpen(month)) {
      return `occurred_at ${new Date(ms).toISOString()} is in ${month.label}, whose counters are closed`;
    }
    return { ms, month };
  }
}

/** A number as read from the wire, exactly when it is below 2^53. */
function big(n: number): string {
  return Number.isSafeInteger(n) ? String(n) : `≥ 2^53 (about ${n.toExponential(3)})`;
}

/** One bad event of a batch record, dead-lettered on its own: its own bytes, a single UsageEvent. */
function eventRejection(record: UsageRecord, index: number, event: WireEvent, reason: string): Rejection<UsageValue> {
  return {
    record,
    reason: `batch event ${index}: ${reason}`,
    value: record.value.raw.subarray(event.start, event.end),
    headers: { [MESSAGE_TYPE_HEADER]: UsageEventSchema.typeName, [BATCH_INDEX_HEADER]: String(index) },
  };
}
