import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { pino } from "pino";
import { createLogger, type Logger } from "../../services/kit/src/logger.js";

/** Tests use their own database and Redis DB index, so they never touch the dev platform's data. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco_test";
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/15";
export const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");

export const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/**
 * Service logs during tests: warnings and errors on stdout, unless TEST_LOG_LEVEL says
 * otherwise. Under `npm test` (TEST_LOG_DIR set) every line from debug up also goes to a file
 * there, which the run's personal-data scan reads.
 */
let file: pino.DestinationStream | undefined;

export function testLogger(unit: string): Logger {
  const level = process.env.TEST_LOG_LEVEL ?? "warn";
  const dir = process.env.TEST_LOG_DIR;
  if (!dir) return createLogger({ unit, level });
  file ??= pino.destination({ dest: join(dir, `inproc-${process.pid}.log`), sync: true, mkdir: true });
  const streams = pino.multistream([
    { level: level as pino.Level, stream: process.stdout },
    { level: "debug", stream: file },
  ]);
  return createLogger({ unit, level: "debug", destination: streams as unknown as NodeJS.WritableStream });
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
