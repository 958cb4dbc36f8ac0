/**
 * The usage unit with the real domain unit (PostgreSQL, its outbox relay, Kafka): quotas loaded
 * through the domain unit's generated client and kept current from domain.events; a mid-month
 * plan change re-evaluates the levels (the highest newly crossed is alerted, none twice); and
 * the UsageService reads: the live stream, the top lines, every line's month total, with
 * INVALID_ARGUMENT by field, NOT_FOUND, PERMISSION_DENIED and FAILED_PRECONDITION where due.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PlanChangeTiming, SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { AUTH_KEYS, bearer, tokenFor, verifier } from "../../../test/support/auth.js";
import { eventually, testLogger, unique } from "../../../test/support/env.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { newCustomer, ownPool } from "../../domain/test/pool-fixture.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { OutboxRelay } from "../../kit/src/outbox-relay.js";
import type { RpcServer } from "../../kit/src/server.js";
import { TOPICS } from "../../kit/src/topics.js";
import { ServiceTokens, unitClient } from "../../kit/src/unit-client.js";
import type { Month } from "../src/months.js";
import { UsagePipeline } from "../src/pipeline.js";
import { loadQuotas } from "../src/quotas.js";
import { policy } from "../src/routes.js";
import { createServer } from "../src/server.js";
import { Harness } from "./harness.js";

const GiB = 1024n ** 3n;

describe("usage unit with the domain unit", () => {
  const h = new Harness("standalone");
  let units: RunningUnits;
  let relay: OutboxRelay;
  let pipeline: UsagePipeline;
  let server: RpcServer;
  let usage: ReturnType<typeof createClient<typeof UsageService>>;
  let usageUrl = "";
  let domain: ReturnType<typeof createClient<typeof SubscriptionService>>;
  const logger = testLogger("usage");

  before(async () => {
    units = await startUnits();
    await ownPool(units.knex.domain, 20);
    await h.start({ pipeline: false });
    relay = new OutboxRelay({
      knex: units.knex.domain,
      table: "domain.outbox",
      producer: h.producer,
      logger,
      batchSize: 500,
      pollIntervalMs: 50,
    });
    relay.start();
    // The quota consumer on the real domain.events; the alerts to this test's topic.
    pipeline = new UsagePipeline({
      kafka: h.kafka,
      producer: h.producer,
      redis: h.redis,
      store: h.store,
      logger,
      components: { aggregator: false, relay: true, quotas: true },
      topics: { domainEvents: TOPICS.domainEvents, notifications: h.topics.notifications },
      groupPrefix: unique("usage-svc"),
      relaySweepMs: 200,
      // The shared topic holds earlier runs' events of the same line ids (the test database is
      // new each run): a group of its own from the topic's end, ready before the first change.
      quotasFromBeginning: false,
    });
    const consumer = pipeline.quotaConsumer?.consumer;
    const fetched = new Promise<void>((resolve) => consumer?.on(consumer.events.FETCH, () => resolve()));
    await pipeline.start();
    await fetched;
    const tokens = await ServiceTokens.create(AUTH_KEYS.signingKey, "usage");
    const domainForUsage = unitClient(SubscriptionService, units.at.domain.url, tokens);
    server = createServer(
      {
        store: h.store,
        reloadQuotas: () =>
          loadQuotas({ domain: domainForUsage, store: h.store, redis: h.redis, logger, onAlerts: pipeline.onAlerts }),
        watchIntervalMs: 100,
      },
      { logger, drainDelayMs: 0, drainTimeoutMs: 1_000, auth: { verifier, policy } },
    );
    const at = await server.listen(0);
    usageUrl = at.url;
    // An admin: reloading every quota and reading every line's total are admin (and service) calls.
    const staff = await tokenFor("admin");
    usage = createClient(UsageService, createGrpcTransport({ baseUrl: at.url, interceptors: [bearer(staff)] }));
    domain = createClient(
      SubscriptionService,
      createGrpcTransport({ baseUrl: units.at.domain.url, interceptors: [bearer(staff)] }),
    );
  });
  after(async () => {
    await server?.drain();
    await pipeline?.stop();
    await relay?.stop();
    await h.stop();
    await units?.stop();
  });

  const month = (): Month => h.store.clock.monthOf(Date.now());
  const alertsOf = (line: string) => h.received.filter((r) => r.key === line).map((r) => r.requestId);
  const activate = async (planId: string) =>
    (await domain.activateLine({ requestId: randomUUID(), customerId: await newCustomer(units.knex.domain), planId }))
      .line?.subscriptionId as string;

  it("loads every quota through the domain unit's client, a plan for next month included", async () => {
    const std = await activate("5G-STD-110G");
    const unl = await activate("5G-PREMIUM-UNL");
    await domain.changePlan({
      requestId: randomUUID(),
      subscriptionId: std,
      newPlanId: "5G-SLIM-8G",
      timing: PlanChangeTiming.NEXT_MONTH,
    });
    const { linesLoaded } = await usage.reloadQuotas({});
    assert.ok(linesLoaded >= 2n, `loaded ${linesLoaded}`);
    const now = await usage.getLineUsage({ subscriptionId: std, month: month().label });
    assert.equal(now.quotaBytes, 110n * GiB);
    assert.equal(now.quotaKnown, true);
    const next = await h.store.get(std, h.store.clock.shift(month(), 1));
    assert.equal(next.quotaBytes, 8n * GiB, "the next month's plan applies from next month");
    const u = await usage.getLineUsage({ subscriptionId: unl, month: month().label });
    assert.equal(u.quotaBytes, 0n, "unlimited");
    assert.equal(u.quotaKnown, true);
  });

  it("a plan change in the domain unit re-evaluates the month: 60 % of 110 GB is 825 % of 8 GB", async () => {
    const line = await activate("5G-STD-110G");
    // The activation reaches the usage unit through the outbox and domain.events.
    await eventually(
      async () => ((await h.store.get(line, month())).quotaBytes === 110n * GiB ? true : undefined),
      30_000,
      "the activation's quota",
    );
    await h.store.apply([{ sid: line, seq: 1, bytes: Number(66n * GiB), month: month(), traceparent: "" }]);
    const label = month().label;
    await eventually(async () => (alertsOf(line).length === 1 ? true : undefined), 20_000, "the 50 % alert");
    assert.deepEqual(alertsOf(line), [`usage-threshold:${line}:${label}:50`]);

    await domain.changePlan({
      requestId: randomUUID(),
      subscriptionId: line,
      newPlanId: "5G-SLIM-8G",
      timing: PlanChangeTiming.NOW,
    });
    await eventually(async () => (alertsOf(line).length === 2 ? true : undefined), 30_000, "the re-evaluation's alert");
    assert.deepEqual(alertsOf(line), [`usage-threshold:${line}:${label}:50`, `usage-threshold:${line}:${label}:100`]);
    const got = await usage.getLineUsage({ subscriptionId: line, month: label });
    assert.equal(got.quotaBytes, 8n * GiB);
    assert.deepEqual(got.alertedLevels, [50, 80, 100], "80 % is done with the jump: never sent");
    assert.equal(got.percent, 825);

    // Loading all quotas again (an older snapshot of the same line sequence) changes nothing.
    await usage.reloadQuotas({});
    assert.deepEqual((await usage.getLineUsage({ subscriptionId: line, month: label })).alertedLevels, [50, 80, 100]);
    assert.equal(alertsOf(line).length, 2);

    // A terminated line keeps its usage and refuses an operator's quota.
    await domain.terminateLine({ requestId: randomUUID(), subscriptionId: line });
    await eventually(
      async () => ((await h.store.get(line, month())).terminated ? true : undefined),
      30_000,
      "termination",
    );
    await rejects(usage.setLineQuota({ subscriptionId: line, quotaBytes: GiB }), Code.FailedPrecondition);
  });

  it("streams a line's usage as it changes", async () => {
    const line = unique("watch");
    await h.store.setQuotas([{ sid: line, mode: "plan", lineSequence: 1n, quotaBytes: 1000n }]);
    const stop = new AbortController();
    const seen: bigint[] = [];
    const watching = (async () => {
      for await (const m of usage.watchLineUsage({ subscriptionId: line }, { signal: stop.signal })) {
        seen.push(m.usage?.usedBytes ?? -1n);
        if (seen.length === 3) stop.abort();
      }
    })().catch((e) => {
      if (!stop.signal.aborted) throw e;
    });
    await eventually(async () => (seen.length === 1 ? true : undefined), 5_000, "the first message");
    await h.store.apply([{ sid: line, seq: 1, bytes: 300, month: month(), traceparent: "" }]);
    await eventually(async () => (seen.length === 2 ? true : undefined), 5_000, "the second message");
    await h.store.apply([{ sid: line, seq: 2, bytes: 200, month: month(), traceparent: "" }]);
    await watching;
    assert.deepEqual(seen, [0n, 300n, 500n]);
    await rejects(
      (async () => {
        for await (const _ of usage.watchLineUsage({ subscriptionId: unique("nobody") })) break;
      })(),
      Code.NotFound,
    );
  });

  it("lists the top lines and streams every line's total of a month", async () => {
    // A month of its own, so that other tests' lines do not mix in.
    const far = h.store.clock.month(2090 + Math.floor(Math.random() * 900), 1 + Math.floor(Math.random() * 12));
    const lines = Array.from({ length: 7 }, (_, i) => ({ sid: unique(`top${i}`), bytes: (i + 1) * 1000 }));
    try {
      await h.store.apply(lines.map((l) => ({ sid: l.sid, seq: 1, bytes: l.bytes, month: far, traceparent: "" })));
      const top = await usage.listTopLines({ month: far.label, limit: 3 });
      assert.deepEqual(
        top.lines.map((l) => [l.subscriptionId, l.usedBytes]),
        [...lines]
          .reverse()
          .slice(0, 3)
          .map((l) => [l.sid, BigInt(l.bytes)]),
      );
      const totals = new Map<string, bigint>();
      let pages = 0;
      for await (const page of usage.streamMonthTotals({ month: far.label, pageSize: 2 })) {
        pages += 1;
        assert.ok(page.totals.length <= 2);
        for (const t of page.totals) totals.set(t.subscriptionId, t.usedBytes);
      }
      assert.deepEqual(new Map(lines.map((l) => [l.sid, BigInt(l.bytes)])), totals);
      assert.equal(pages, 4);
    } finally {
      const keys = await h.redis.keys(`usage:*:${far.num}`);
      if (keys.length > 0) await Promise.all(keys.map((k) => h.redis.del(k)));
    }
  });

  it("answers INVALID_ARGUMENT naming the fields, and PERMISSION_DENIED by role", async () => {
    const bad = async (p: Promise<unknown>, fields: string[]) =>
      assert.deepEqual(
        fieldViolations(await rejects(p, Code.InvalidArgument)).map((v) => v.field),
        fields,
      );
    await bad(usage.listTopLines({ month: "2026-1", limit: 101 }), ["month", "limit"]);
    await bad(
      (async () => {
        for await (const _ of usage.streamMonthTotals({ month: "x", pageSize: 20_000 })) break;
      })(),
      ["month", "page_size"],
    );
    await bad(
      (async () => {
        for await (const _ of usage.watchLineUsage({ subscriptionId: "" })) break;
      })(),
      ["subscription_id"],
    );
    await bad(usage.getLineUsageHistory({ subscriptionId: "a b" }), ["subscription_id", "from", "to"]);
    const mine = unique("mine");
    await h.store.setQuotas([{ sid: mine, mode: "plan", lineSequence: 1n, quotaBytes: 1000n }]);
    const subscriber = createClient(
      UsageService,
      createGrpcTransport({ baseUrl: usageUrl, interceptors: [bearer(await tokenFor("subscriber", [mine]))] }),
    );
    assert.equal((await subscriber.getLineUsage({ subscriptionId: mine, month: month().label })).quotaBytes, 1000n);
    await rejects(
      subscriber.getLineUsage({ subscriptionId: unique("other"), month: month().label }),
      Code.PermissionDenied,
    );
    await rejects(subscriber.listTopLines({ month: month().label }), Code.PermissionDenied);
    await rejects(subscriber.reloadQuotas({}), Code.PermissionDenied);
    await rejects(subscriber.setLineQuota({ subscriptionId: mine, quotaBytes: 1n }), Code.PermissionDenied);
  });
});
