import type { Redis } from "ioredis";
import type { Knex } from "knex";
import { migrateAll } from "../../scripts/migrate.js";
import { policy as batchPolicy } from "../../services/batch/src/routes.js";
import { createServer as createBatchServer } from "../../services/batch/src/server.js";
import { JobRepository } from "../../services/batch/src/store/job-repository.js";
import { PiiCipher } from "../../services/domain/src/pii/cipher.js";
import { policy as domainPolicy } from "../../services/domain/src/routes.js";
import { createServer as createDomainServer } from "../../services/domain/src/server.js";
import { CatalogStore, ExtrasStore } from "../../services/domain/src/store/catalog-store.js";
import { CustomerStore } from "../../services/domain/src/store/customer-store.js";
import { InvoiceStore } from "../../services/domain/src/store/invoice-store.js";
import { LineStore } from "../../services/domain/src/store/line-store.js";
import { OperatorStore } from "../../services/domain/src/store/operator-store.js";
import { PaymentStore } from "../../services/domain/src/store/payment-store.js";
import type { Policy } from "../../services/kit/src/auth.js";
import { createLogger } from "../../services/kit/src/logger.js";
import { createKnex } from "../../services/kit/src/postgres.js";
import { createRedis, redisReady } from "../../services/kit/src/redis.js";
import type { Listening, RpcServer } from "../../services/kit/src/server.js";
import { policy as messagePolicy } from "../../services/message/src/routes.js";
import { createServer as createMessageServer } from "../../services/message/src/server.js";
import { MessageStore } from "../../services/message/src/store/message-store.js";
import { TemplateStore } from "../../services/message/src/store/template-store.js";
import { policy as usagePolicy } from "../../services/usage/src/routes.js";
import { createServer as createUsageServer } from "../../services/usage/src/server.js";
import { signer, verifier } from "./auth.js";
import { testKeyRing } from "./keys.js";
import { usageStore } from "./usage.js";

/** Personal data in tests is sealed with keys made for this process. */
export const testRing = testKeyRing();
export const testPii = new PiiCipher(testRing);

import { TEST_DATABASE_URL, TEST_REDIS_URL, testLogger } from "./env.js";

export type UnitName = "usage" | "message" | "domain" | "batch";

export interface RunningUnits {
  servers: Record<UnitName, RpcServer>;
  at: Record<UnitName, Listening>;
  knex: Record<"domain" | "message" | "billing", Knex>;
  redis: Redis;
  stop(): Promise<void>;
}

/**
 * The four units in this process on port 0, on the real test database and Redis. `logs`: write
 * the units' logs there (level debug) instead of stdout, for tests that inspect them. `clock`: the
 * message unit's time (quiet hours, schedules) in tests that set it. `poolMax`: connections per
 * unit (default 4).
 */
export async function startUnits(
  opts: { logs?: NodeJS.WritableStream; clock?: { now(): number }; poolMax?: number } = {},
): Promise<RunningUnits> {
  await migrateAll(TEST_DATABASE_URL, undefined, () => {});
  const knex = {
    domain: createKnex({ url: TEST_DATABASE_URL, schema: "domain", poolMax: opts.poolMax ?? 4 }),
    message: createKnex({ url: TEST_DATABASE_URL, schema: "message", poolMax: opts.poolMax ?? 4 }),
    billing: createKnex({ url: TEST_DATABASE_URL, schema: "billing", poolMax: 4 }),
  };
  const redis = createRedis(TEST_REDIS_URL, testLogger("test"), "test");
  await redisReady(redis, TEST_REDIS_URL);
  const settings = (unit: string, policy: Policy) => ({
    logger: opts.logs ? createLogger({ unit, level: "debug", destination: opts.logs }) : testLogger(unit),
    drainDelayMs: 0,
    drainTimeoutMs: 2_000,
    auth: { verifier, policy },
  });
  const servers: Record<UnitName, RpcServer> = {
    usage: createUsageServer({ store: usageStore(redis) }, settings("usage", usagePolicy)),
    message: createMessageServer(
      {
        templates: new TemplateStore(knex.message),
        messages: new MessageStore(knex.message, { results: "message.results", requests: "notification.requests" }),
        clock: opts.clock,
      },
      settings("message", messagePolicy),
    ),
    domain: createDomainServer(
      {
        catalog: new CatalogStore(knex.domain),
        extras: new ExtrasStore(knex.domain),
        operators: new OperatorStore(knex.domain),
        signer,
        tokenTtlSeconds: 600,
        pii: testPii,
        customers: new CustomerStore(knex.domain, testPii),
        numberRetentionDays: 90,
        payments: new PaymentStore(knex.domain, "Asia/Seoul"),
        invoices: new InvoiceStore(knex.domain),
        lines: new LineStore(knex.domain),
        timeZone: "Asia/Seoul",
      },
      settings("domain", domainPolicy),
    ),
    batch: createBatchServer({ jobs: new JobRepository(knex.billing) }, settings("batch", batchPolicy)),
  };
  const at = {} as Record<UnitName, Listening>;
  for (const [name, server] of Object.entries(servers) as [UnitName, RpcServer][]) {
    at[name] = await server.listen(0);
  }
  return {
    servers,
    at,
    knex,
    redis,
    async stop() {
      await Promise.all(Object.values(servers).map((s) => s.drain()));
      await Promise.all(Object.values(knex).map((k) => k.destroy()));
      redis.disconnect();
    },
  };
}
