/**
 * Graceful drain of a real server: health turns NOT_SERVING (watchers are told), calls in flight
 * finish, then the port refuses new calls.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { Redis } from "ioredis";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { UsageService } from "../gen/telco/usage/v1/usage_pb.js";
import { createRedis, redisReady } from "../services/kit/src/redis.js";
import type { Month } from "../services/usage/src/months.js";
import { UsageStore } from "../services/usage/src/redis/store.js";
import { policy } from "../services/usage/src/routes.js";
import { createServer } from "../services/usage/src/server.js";
import { bearer, tokenFor, verifier } from "./support/auth.js";
import { eventually, sleep, TEST_REDIS_URL, testLogger, unique } from "./support/env.js";
import { usageStore } from "./support/usage.js";

/** The real store, slowed down so that a call is still in flight when the drain starts. */
class SlowStore extends UsageStore {
  constructor(
    redis: Redis,
    private readonly delayMs: number,
  ) {
    const real = usageStore(redis);
    super(redis, { layout: real.layout, clock: real.clock, graceMs: 15 * 86_400_000 });
  }
  override async get(subscriptionId: string, month: Month) {
    await sleep(this.delayMs);
    return super.get(subscriptionId, month);
  }
}

let redis: Redis;
let token: string;
before(async () => {
  token = await tokenFor("operator");
  redis = createRedis(TEST_REDIS_URL, testLogger("test"), "test");
  await redisReady(redis, TEST_REDIS_URL);
});
after(() => redis.disconnect());

describe("graceful drain", () => {
  it("answers NOT_SERVING while draining, tells watchers, finishes calls in flight, then refuses", async () => {
    const server = createServer(
      { store: new SlowStore(redis, 800) },
      { logger: testLogger("usage"), auth: { verifier, policy }, drainDelayMs: 500, drainTimeoutMs: 5_000 },
    );
    const at = await server.listen(0);
    const transport = createGrpcTransport({ baseUrl: at.url, interceptors: [bearer(token)] });
    const health = createClient(Health, transport);
    const usage = createClient(UsageService, transport);
    const line = unique("drain");
    await usageStore(redis).setQuotas([{ sid: line, mode: "override", lineSequence: 0n, quotaBytes: 1000n }]);

    const seen: Status[] = [];
    const watching = (async () => {
      for await (const r of health.watch({ service: "telco.usage.v1.UsageService" })) seen.push(r.status);
    })();
    await eventually(async () => (seen.length > 0 ? true : undefined), 5_000, "first watch message");
    assert.deepEqual(seen, [Status.SERVING]);

    const inFlight = usage.getLineUsage({ subscriptionId: line, month: "2026-11" });
    await eventually(async () => (server.inFlight >= 2 ? true : undefined), 5_000, "call in flight"); // watch + call
    const draining = server.drain();

    // During the drain delay the server still answers, but says it is not serving.
    await sleep(100);
    assert.equal((await health.check({ service: "" })).status, Status.NOT_SERVING);

    const r = await inFlight;
    assert.equal(r.quotaBytes, 1000n, "the call in flight completed normally");
    const { cancelled } = await draining;
    assert.equal(cancelled, 0);
    await watching;
    assert.deepEqual(seen, [Status.SERVING, Status.NOT_SERVING], "watch saw the change, then ended");

    const fresh = createClient(Health, createGrpcTransport({ baseUrl: at.url, interceptors: [bearer(token)] }));
    await assert.rejects(fresh.check({ service: "" }), (e) => ConnectError.from(e).code === Code.Unavailable);
  });

  it("serves every call sent before the drain, over HTTP/1.1 and HTTP/2 alike", async () => {
    const server = createServer(
      { store: new SlowStore(redis, 50) },
      { logger: testLogger("usage"), auth: { verifier, policy }, drainDelayMs: 2_000, drainTimeoutMs: 5_000 },
    );
    const at = await server.listen(0);
    const line = unique("burst");
    await usageStore(redis).setQuotas([{ sid: line, mode: "override", lineSequence: 0n, quotaBytes: 7n }]);
    const callers = [
      createClient(UsageService, createGrpcTransport({ baseUrl: at.url, interceptors: [bearer(token)] })),
      createClient(
        UsageService,
        createConnectTransport({ baseUrl: at.url, httpVersion: "1.1", interceptors: [bearer(token)] }),
      ),
      createClient(
        UsageService,
        createConnectTransport({ baseUrl: at.url, httpVersion: "2", interceptors: [bearer(token)] }),
      ),
    ];
    const calls = Array.from({ length: 300 }, (_, i) =>
      (callers[i % callers.length] ?? assert.fail()).getLineUsage({ subscriptionId: line, month: "2026-11" }),
    );
    // Sent before the drain began, the calls reach the server within its drain delay (the window
    // load balancers get to move away): every one of them must be answered, none reset.
    const draining = server.drain();
    const results = await Promise.allSettled(calls);
    const failed = results.filter((r) => r.status === "rejected").map((r) => ConnectError.from(r.reason).message);
    assert.deepEqual(
      failed,
      [],
      `${failed.length} of ${calls.length} calls failed: ${[...new Set(failed)].join(" | ")}`,
    );
    assert.equal((await draining).cancelled, 0);
  });

  it("cancels calls still running after the drain timeout", async () => {
    const server = createServer(
      { store: new SlowStore(redis, 4_000) },
      { logger: testLogger("usage"), auth: { verifier, policy }, drainDelayMs: 0, drainTimeoutMs: 300 },
    );
    const at = await server.listen(0);
    const usage = createClient(UsageService, createGrpcTransport({ baseUrl: at.url, interceptors: [bearer(token)] }));
    const started = Date.now();
    const slow = usage.getLineUsage({ subscriptionId: unique("slow"), month: "2026-11" });
    await eventually(async () => (server.inFlight >= 1 ? true : undefined), 5_000, "call in flight");
    const { cancelled } = await server.drain();
    assert.equal(cancelled, 1);
    await assert.rejects(slow, (e) => ConnectError.from(e).code === Code.Unavailable);
    assert.ok(Date.now() - started < 3_500, "cancelled, not waited out");
  });
});
