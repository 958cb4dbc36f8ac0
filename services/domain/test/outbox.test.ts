/**
 * The outbox through the real Kafka broker: a plan change is published to domain.events once,
 * with the new quota; a change committed while no relay runs is delivered when one starts (the
 * crash between commit and relay); two relays at once send each record once, in line order.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import type { Kafka, Producer } from "kafkajs";
import { type DomainEvent, DomainEventSchema } from "../../../gen/telco/domain/v1/events_pb.js";
import { PlanChangeTiming, SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { NotificationKind, NotificationRequestSchema } from "../../../gen/telco/message/v1/events_pb.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { eventually, KAFKA_BROKERS, sleep, testLogger, unique } from "../../../test/support/env.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { createKafka, createProducer } from "../../kit/src/kafka.js";
import { OutboxRelay } from "../../kit/src/outbox-relay.js";
import type { Knex } from "../../kit/src/postgres.js";
import { TOPICS } from "../../kit/src/topics.js";
import { newCustomer, ownPool } from "./pool-fixture.js";

const GiB = 1024n ** 3n;
const logger = testLogger("outbox-test");
let units: RunningUnits;
let knex: Knex;
let kafka: Kafka;
let producer: Producer;
let admin: ReturnType<typeof grpcClient<typeof SubscriptionService>>;

/**
 * Where each partition ended when this file started: line ids restart with every fresh test
 * database, so records of earlier runs may carry the same keys and must not count.
 */
const startOffsets = new Map<string, Map<number, bigint>>();

async function markStart(topic: string): Promise<void> {
  const kadmin = kafka.admin();
  await kadmin.connect();
  try {
    const offsets = await kadmin.fetchTopicOffsets(topic);
    startOffsets.set(topic, new Map(offsets.map((o) => [o.partition, BigInt(o.high)])));
  } finally {
    await kadmin.disconnect();
  }
}

/** Collects every record of a topic written since this file started whose key is one of `keys`. */
async function watch(topic: string, keys: Set<string>) {
  const got: { key: string; value: Buffer; headers: Record<string, string> }[] = [];
  const consumer = kafka.consumer({ groupId: unique("outbox-reader") });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const key = message.key?.toString() ?? "";
      if (!keys.has(key) || !message.value) return;
      if (BigInt(message.offset) < (startOffsets.get(topic)?.get(partition) ?? 0n)) return;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
      got.push({ key, value: message.value, headers });
    },
  });
  return { got, stop: () => consumer.disconnect() };
}

const events = (got: { value: Buffer }[]): DomainEvent[] => got.map((m) => fromBinary(DomainEventSchema, m.value));

function relay(): OutboxRelay {
  return new OutboxRelay({ knex, table: "domain.outbox", producer, logger, batchSize: 7, pollIntervalMs: 50 });
}

async function activate(): Promise<string> {
  const res = await admin.activateLine({
    requestId: randomUUID(),
    customerId: await newCustomer(knex),
    planId: "5G-SLIM-8G",
  });
  return res.line?.subscriptionId as string;
}

const changePlan = (subscriptionId: string, newPlanId: string, traceparent?: string) =>
  admin.changePlan(
    { requestId: randomUUID(), subscriptionId, newPlanId, timing: PlanChangeTiming.NOW },
    traceparent ? { headers: { traceparent } } : undefined,
  );

before(async () => {
  units = await startUnits();
  knex = units.knex.domain;
  admin = grpcClient(SubscriptionService, units.at.domain.url, await tokenFor("admin"));
  kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "outbox-test", logger });
  producer = await createProducer(kafka);
  await markStart(TOPICS.domainEvents);
  await markStart(TOPICS.notificationRequests);
  await ownPool(knex, 50);
});
after(async () => {
  await producer?.disconnect();
  await units?.stop();
});

describe("outbox relay", () => {
  it("a plan change emits exactly one domain.events record with the new quota, trace context on", async () => {
    const r = relay();
    r.start();
    try {
      const sid = await activate();
      const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
      await changePlan(sid, "5G-STD-110G", traceparent);
      const w = await watch(TOPICS.domainEvents, new Set([sid]));
      try {
        await eventually(async () => (w.got.length >= 2 ? true : undefined), 30_000, "two events of the line");
        await sleep(1_500); // a duplicate would have arrived by now
        const evs = events(w.got);
        const changes = evs.filter((e) => e.event.case === "planChanged");
        assert.equal(changes.length, 1, "exactly one plan_changed record");
        const change = changes[0] as DomainEvent;
        assert.equal(change.event.case === "planChanged" && change.event.value.quotaBytes, 110n * GiB);
        assert.equal(change.event.case === "planChanged" && change.event.value.newPlanId, "5G-STD-110G");
        assert.equal(change.lineSequence, 2n);
        assert.equal(change.eventId, `${sid}:2`);
        assert.deepEqual(
          evs.map((e) => e.event.case),
          ["lineActivated", "planChanged"],
        );
        const withTrace = w.got.find((m) => fromBinary(DomainEventSchema, m.value).event.case === "planChanged");
        assert.equal(withTrace?.headers.traceparent, traceparent);
      } finally {
        await w.stop();
      }
    } finally {
      await r.stop();
    }
  });

  it("a change committed while no relay runs is delivered once a relay starts", async () => {
    const sid = await activate();
    await changePlan(sid, "5G-PREMIUM-UNL");
    const pending = await knex("domain.outbox").where({ key: sid }).whereNull("published_at");
    assert.equal(pending.length, 3, "activation, welcome and the change wait in the outbox");

    const w = await watch(TOPICS.domainEvents, new Set([sid]));
    const welcome = await watch(TOPICS.notificationRequests, new Set([sid]));
    const r = relay();
    r.start();
    try {
      await eventually(async () => (w.got.length >= 2 ? true : undefined), 30_000, "the two events");
      await eventually(async () => (welcome.got.length >= 1 ? true : undefined), 30_000, "the welcome request");
      await sleep(1_500);
      const evs = events(w.got);
      assert.deepEqual(
        evs.map((e) => e.event.case),
        ["lineActivated", "planChanged"],
      );
      assert.equal(evs[1]?.event.case === "planChanged" && evs[1].event.value.quotaBytes, 0n, "unlimited");
      assert.equal(welcome.got.length, 1);
      const req = fromBinary(NotificationRequestSchema, (welcome.got[0] as { value: Buffer }).value);
      assert.equal(req.kind, NotificationKind.WELCOME);
      assert.equal(req.requestId, `welcome:${sid}`);
      await eventually(
        async () =>
          (await knex("domain.outbox").where({ key: sid }).whereNull("published_at")).length === 0 ? true : undefined,
        10_000,
        "rows marked published",
      );
    } finally {
      await r.stop();
      await w.stop();
      await welcome.stop();
    }
  });

  it("two relays at once send every record once, in order per line", async () => {
    const lines = await Promise.all(Array.from({ length: 4 }, () => activate()));
    const plans = ["5G-STD-110G", "5G-BASIC-24G", "LTE-DATA-2G", "5G-PREMIUM-UNL", "5G-SLIM-8G"];
    for (const plan of plans) await Promise.all(lines.map((sid) => changePlan(sid, plan)));
    const w = await watch(TOPICS.domainEvents, new Set(lines));
    const relays = [relay(), relay()];
    for (const r of relays) r.start();
    try {
      const expected = lines.length * (1 + plans.length);
      await eventually(async () => (w.got.length >= expected ? true : undefined), 30_000, `${expected} events`);
      await sleep(1_500);
      const evs = events(w.got);
      assert.equal(evs.length, expected, "no record twice");
      for (const sid of lines) {
        const seqs = evs.filter((e) => e.subscriptionId === sid).map((e) => Number(e.lineSequence));
        assert.deepEqual(
          seqs,
          Array.from({ length: 1 + plans.length }, (_, i) => i + 1),
          `line ${sid} in order`,
        );
      }
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
      await w.stop();
    }
  });
});
