import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Producer } from "kafkajs";
import {
  NotificationKind,
  type NotificationRequest,
  NotificationRequestSchema,
} from "../../../gen/telco/message/v1/events_pb.js";
import { encodeRecord, publish } from "../../kit/src/kafka.js";
import type { Logger } from "../../kit/src/logger.js";
import type { RedisClient } from "../../kit/src/redis.js";
import { context, ROOT_CONTEXT } from "../../kit/src/telemetry.js";
import { TOPICS } from "../../kit/src/topics.js";
import { notificationsRelayed, usageAlerts } from "./metrics.js";
import type { Layout } from "./redis/store.js";

/** How long a relay holds an outbox's lease at most: a publication takes far less; one that takes longer may be repeated by another relay (same ids). */
const LEASE_MS = 15_000;
/** Releases a lease only when this relay still holds it. */
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

export interface RelayStats {
  published: number;
  sweeps: number;
  failures: number;
}

export interface RelayOptions {
  redis: RedisClient;
  layout: Layout;
  producer: Producer;
  logger: Logger;
  /** How often every group's outbox is checked (alerts are also published as soon as they are counted). */
  sweepMs: number;
  topic?: string;
}

/**
 * Publishes the alerts the counting script put into the line groups' outboxes to
 * `notification.requests`, and removes an entry only after the broker acknowledged it. A crash
 * between the two publishes the entry again with the same request id (at least once); the message
 * unit sends one message per request id, so the subscriber gets one SMS. Entries are never lost:
 * they stay in Redis until acknowledged.
 */
export class OutboxRelay {
  readonly stats: RelayStats = { published: 0, sweeps: 0, failures: 0 };
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly running = new Map<number, Promise<void>>();
  private readonly again = new Set<number>();
  private readonly log: Logger;
  private readonly topic: string;
  /** This relay's name in the leases it takes. */
  private readonly id = randomBytes(8).toString("hex");

  constructor(private readonly o: RelayOptions) {
    this.log = o.logger.child({ component: "outbox-relay" });
    this.topic = o.topic ?? TOPICS.notificationRequests;
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      void this.sweep().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.o.sweepMs);
      });
    };
    tick();
  }

  /** Publishes the outboxes of these groups now. */
  kick(groups: number[]): void {
    // Not in the trace of the batch that kicked it: each entry carries its own event's context.
    context.with(ROOT_CONTEXT, () => {
      for (const g of groups) void this.drain(g);
    });
  }

  /** Checks every group's outbox once. */
  async sweep(): Promise<void> {
    this.stats.sweeps += 1;
    const groups = Array.from({ length: this.o.layout.groups }, (_, g) => g);
    const sizes = await Promise.all(groups.map((g) => this.o.redis.hlen(this.o.layout.outboxKey(g)).catch(() => 0)));
    await Promise.all(groups.filter((g) => (sizes[g] as number) > 0).map((g) => this.drain(g)));
  }

  /** Stops sweeping and waits for publications in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([...this.running.values()]);
  }

  /** One drain per group at a time; a kick during one runs another right after. */
  private drain(g: number): Promise<void> {
    const current = this.running.get(g);
    if (current) {
      this.again.add(g);
      return current;
    }
    const p = this.publish(g)
      .catch((err) => {
        this.stats.failures += 1;
        this.log.warn({ err: (err as Error).message, group: g }, "outbox publish failed; kept for the next sweep");
      })
      .finally(() => {
        this.running.delete(g);
        if (this.again.delete(g) && !this.stopped) void this.drain(g);
      });
    this.running.set(g, p);
    return p;
  }

  private async publish(g: number): Promise<void> {
    const key = this.o.layout.outboxKey(g);
    // One relay at a time per outbox (every usage process may run one): the lease outlives a
    // publication with its retries; a relay that dies holding it is replaced when it runs out.
    const lease = this.o.layout.relayLeaseKey(g);
    if ((await this.o.redis.set(lease, this.id, "PX", LEASE_MS, "NX")) !== "OK") return;
    try {
      await this.publishHeld(key);
    } finally {
      await this.o.redis.eval(RELEASE, 1, lease, this.id).catch(() => {});
    }
  }

  private async publishHeld(key: string): Promise<void> {
    const entries = await this.o.redis.hgetall(key);
    const ids = Object.keys(entries);
    if (ids.length === 0) return;
    const messages = ids.map((id) => {
      const { request, traceparent } = toRequest(id, entries[id] as string);
      return encodeRecord(NotificationRequestSchema, request, {
        key: request.subscriptionId,
        headers: traceparent ? { traceparent } : {},
      });
    });
    // An alert whose usage event carried no trace context starts a trace of its own here.
    await publish(this.o.producer, [{ topic: this.topic, messages }], { newTrace: { fallback: newTraceparent } });
    await this.o.redis.hdel(key, ...ids);
    this.stats.published += ids.length;
    notificationsRelayed.inc(ids.length);
    for (const id of ids) usageAlerts.inc({ level: id.slice(id.lastIndexOf(":") + 1) });
  }
}

/** The notification request of an outbox entry: id "usage-threshold:<line>:<YYYY-MM>:<level>". */
export function toRequest(id: string, value: string): { request: NotificationRequest; traceparent: string } {
  const parts = id.split(":");
  const level = Number(parts.pop());
  const month = parts.pop() as string;
  const sid = parts.slice(1).join(":");
  const [used, quota, at, traceparent = ""] = value.split("|");
  const request = create(NotificationRequestSchema, {
    requestId: id,
    subscriptionId: sid,
    kind: NotificationKind.USAGE_THRESHOLD,
    urgent: level >= 100,
    requestedAt: timestampFromMs(Number(at)),
    detail: {
      case: "usageThreshold",
      value: { month, level, usedBytes: BigInt(used ?? 0), quotaBytes: BigInt(quota ?? 0) },
    },
  });
  return { request, traceparent };
}

/** A fresh W3C traceparent, for alerts whose usage event carried none. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
}
