import { Redis } from "ioredis";
import { redactUrl } from "./config.js";
import type { Logger } from "./logger.js";

/**
 * An ioredis client that queues commands while it reconnects but fails each after 3 reconnection
 * attempts (rather than waiting without bound), and logs connection trouble once per state change.
 */
export function createRedis(url: string, logger: Logger, name: string): Redis {
  const log = logger.child({ component: "redis" });
  const redis = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: 3,
    enableOfflineQueue: true,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  let down = false;
  redis.on("error", (err) => {
    if (!down) log.warn({ err: err.message }, "redis connection problem");
    down = true;
  });
  redis.on("ready", () => {
    if (down) log.info("redis connection restored");
    down = false;
  });
  return redis;
}

/** Waits until the client is ready or fails with a clear message naming the address. */
export async function redisReady(redis: Redis, url: string, timeoutMs = 10_000): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`redis at ${redactUrl(url)} not reachable within ${timeoutMs} ms`)),
      timeoutMs,
    );
    redis.once("ready", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
