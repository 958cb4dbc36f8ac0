/**
 * The units as the processes `npm start` runs: each boots from its environment, answers
 * `buf curl --list-methods` through reflection alone (no local proto files), and on SIGTERM
 * drains and exits 0. A bad setting stops a unit at once with a message naming it.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { UsageEventSchema } from "../gen/telco/usage/v1/events_pb.js";
import { migrateAll } from "../scripts/migrate.js";
import { createKafka, createProducer, encodeRecord } from "../services/kit/src/kafka.js";
import { AUTH_ENV, tokenFor } from "./support/auth.js";
import { KAFKA_BROKERS, TEST_DATABASE_URL, TEST_REDIS_URL, testLogger, unique } from "./support/env.js";
import { freePort, ROOT, run, spawnScript, spawnUnit, type UnitProcess, waitForLog } from "./support/processes.js";

const UNITS = {
  usage: ["telco.usage.v1.UsageService/GetLineUsage", "telco.usage.v1.UsageService/SetLineQuota"],
  message: ["telco.message.v1.TemplateService/CreateTemplate", "telco.message.v1.TemplateService/GetTemplate"],
  domain: ["telco.domain.v1.CatalogService/ListPlans", "telco.domain.v1.CatalogService/GetPlan"],
  batch: ["telco.batch.v1.BillingJobService/GetJobExecution", "telco.batch.v1.BillingJobService/ListJobExecutions"],
} as const;
type Unit = keyof typeof UNITS;

const running = new Map<Unit, { p: UnitProcess; port: number }>();

before(async () => {
  await migrateAll(TEST_DATABASE_URL, undefined, () => {});
  for (const unit of Object.keys(UNITS) as Unit[]) {
    const port = await freePort();
    const p = spawnUnit(unit, {
      [`${unit.toUpperCase()}_PORT`]: String(port),
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      DRAIN_DELAY_MS: "300",
      LOG_LEVEL: "info",
      // The usage unit's consumers are tested on their own topics (services/usage/test).
      USAGE_COMPONENTS: "none",
      // Likewise the message unit's intake, dispatcher and relay (services/message/test).
      MESSAGE_COMPONENTS: "none",
      ...AUTH_ENV,
    });
    running.set(unit, { p, port });
  }
  await Promise.all([...running.values()].map(({ p }) => waitForLog(p, /unit listening/)));
});

after(() => {
  for (const { p } of running.values()) if (p.child.exitCode === null) p.child.kill("SIGKILL");
});

describe("unit processes", () => {
  for (const unit of Object.keys(UNITS) as Unit[]) {
    it(`${unit}: buf curl lists its methods through reflection`, async () => {
      const { port } = running.get(unit) ?? assert.fail();
      const r = await run(`${ROOT}/node_modules/.bin/buf`, [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        `http://127.0.0.1:${port}`,
        "--list-methods",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const methods = r.stdout.trim().split("\n");
      for (const m of UNITS[unit]) assert.ok(methods.includes(m), `${m} missing from:\n${r.stdout}`);
      assert.ok(methods.includes("grpc.health.v1.Health/Check"));
    });
  }

  it("buf curl calls a method with JSON, schema from reflection only", async () => {
    const { port } = running.get("domain") ?? assert.fail();
    const r = await run(`${ROOT}/node_modules/.bin/buf`, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-H",
      `authorization: Bearer ${await tokenFor("viewer")}`,
      "-d",
      '{"plan_id":"5G-SLIM-8G"}',
      `http://127.0.0.1:${port}/telco.domain.v1.CatalogService/GetPlan`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { plan: { name: string; quotaBytes: string } };
    assert.equal(body.plan.name, "5G 슬림 8GB");
    assert.equal(body.plan.quotaBytes, String(8 * 1024 ** 3));
  });

  it("SIGTERM drains each unit and exits 0", async () => {
    for (const [unit, { p }] of running) {
      p.child.kill("SIGTERM");
      const code = await Promise.race([p.exited, new Promise((r) => setTimeout(() => r("timeout"), 15_000))]);
      assert.equal(code, 0, `${unit} exit: ${code}\n${p.stderr()}`);
      await waitForLog(p, /draining: health NOT_SERVING/, 1);
      await waitForLog(p, /shutdown complete/, 1);
    }
  });
});

describe("configuration errors", () => {
  it("a unit without a token verification key refuses to start, and says how to get one", async () => {
    // (Jobs off: running them needs SERVICE_SIGNING_KEY too, which is not what this is about.)
    const p = spawnUnit("batch", { AUTH_VERIFY_KEY: "", BATCH_COMPONENTS: "none" });
    assert.equal(await p.exited, 78);
    assert.match(p.stderr(), /AUTH_VERIFY_KEY is required/);
    const q = spawnUnit("batch", { AUTH_VERIFY_KEY: "bm90IGEga2V5", BATCH_COMPONENTS: "none" });
    assert.equal(await q.exited, 78);
    assert.match(q.stderr(), /AUTH_VERIFY_KEY is not usable: not a public key PEM/);
  });

  it("a bad setting stops the unit with exit 78 and names every bad variable", async () => {
    const p = spawnUnit("usage", { USAGE_PORT: "not-a-port", REDIS_URL: "http://wrong", LOG_LEVEL: "loud" });
    const code = await p.exited;
    assert.equal(code, 78);
    const err = p.stderr();
    assert.match(err, /USAGE_PORT must be an integer/);
    assert.match(err, /REDIS_URL must use redis or rediss/);
    assert.match(err, /LOG_LEVEL must be one of/);
  });

  it("an unknown time zone is refused rather than silently counted in UTC", async () => {
    const p = spawnUnit("usage", { TIME_ZONE: "Asia/Seol", ...AUTH_ENV });
    assert.equal(await p.exited, 78);
    assert.match(p.stderr(), /TIME_ZONE must be an IANA time zone/);
  });

  it("a password in DATABASE_URL is never echoed", async () => {
    const p = spawnUnit("domain", { DATABASE_URL: "mysql://user:s3cret-pw@db/telco", ...AUTH_ENV });
    assert.equal(await p.exited, 78);
    assert.match(p.stderr(), /DATABASE_URL must use postgres or postgresql/);
    assert.doesNotMatch(p.stderr(), /s3cret-pw/);
  });
});

describe("SIGTERM with a Kafka batch in hand", () => {
  it("finishes the batch, commits its offsets, then exits 0", async () => {
    const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "sigterm-test", logger: testLogger("test") });
    const admin = kafka.admin();
    await admin.connect();
    try {
      const topic = unique("test.sigterm");
      const groupId = unique("sigterm-group");
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          { topic, numPartitions: 1 },
          { topic: `${topic}.dlq`, numPartitions: 1 },
        ],
      });
      const producer = await createProducer(kafka);
      await producer.send({
        topic,
        messages: Array.from({ length: 50 }, (_, i) =>
          encodeRecord(
            UsageEventSchema,
            create(UsageEventSchema, { eventId: `e${i}`, subscriptionId: "L", seq: BigInt(i + 1), bytes: 1n }),
            { key: "L" },
          ),
        ),
      });
      await producer.disconnect();

      const fixture = spawnScript("test/fixtures/consumer-unit.ts", {
        FIXTURE_TOPIC: topic,
        FIXTURE_GROUP: groupId,
        FIXTURE_HANDLE_MS: "1500",
        DRAIN_DELAY_MS: "0",
        ...AUTH_ENV,
      });
      await waitForLog(fixture, /batch started/);
      fixture.child.kill("SIGTERM");
      assert.equal(await fixture.exited, 0, fixture.stderr());
      const handled = fixture
        .stdout()
        .split("\n")
        .filter((l) => l.includes('"batch handled"'))
        .map((l) => JSON.parse(l) as { last: string });
      assert.ok(handled.length >= 1, "the batch in hand was finished before exit");
      const lastHandled = Number(handled.at(-1)?.last);
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
      assert.equal(
        Number(offsets?.partitions[0]?.offset),
        lastHandled + 1,
        `committed exactly up to the last handled record; the unit logged:\n${fixture.stdout()}`,
      );
    } finally {
      await admin.disconnect();
    }
  });
});
