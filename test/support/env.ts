import { randomUUID } from "node:crypto";
import { createLogger, type Logger } from "../../services/kit/src/logger.js";

/** Tests use their own database and Redis DB index, so they never touch the dev platform's data. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco_test";
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/15";
export const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");

export const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Service logs during tests: warnings and errors only, unless TEST_LOG_LEVEL says otherwise. */
export function testLogger(unit: string): Logger {
  return createLogger({ unit, level: process.env.TEST_LOG_LEVEL ?? "warn" });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value (not undefined) or the time is up. */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}
