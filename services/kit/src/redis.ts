import { Cluster, Redis, type RedisOptions } from "ioredis";
import { redactUrl } from "./config.js";
import type { Logger } from "./logger.js";

/**
 * An ioredis client that queues commands while it reconnects but fails each after 3 reconnection
 * attempts (rather than waiting without bound), and logs connection trouble once per state change.
 */
export function createRedis(url: string, logger: Logger, name: string, extra: RedisOptions = {}): Redis {
  const log = logger.child({ component: "redis" });
  const redis = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: 3,
    enableOfflineQueue: true,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    ...extra,
  });
  logStateChanges(redis, log, "redis");
  return redis;
}

/** Logs connection trouble once when it starts and once when it is over (not at every retry). */
function logStateChanges(client: Redis | Cluster, log: Logger, what: string): void {
  let down = false;
  client.on("error", (err: Error) => {
    if (!down) log.warn({ err: err.message }, `${what} connection problem`);
    down = true;
  });
  client.on("ready", () => {
    if (down) log.info(`${what} connection restored`);
    down = false;
  });
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

/** A standalone client or a Redis Cluster client: both run the same commands and scripts. */
export type RedisClient = Redis | Cluster;

/**
 * A client for `url`, or for the Redis Cluster whose nodes `clusterNodes` lists ("host:port";
 * the URL then only lends its password). On a single Redis, commands issued in the same tick are
 * pipelined automatically. Not on a cluster: ioredis routes an auto-pipelined script call by its
 * first argument (the key count, not a key), which fails for scripts; commands still go out
 * without waiting for each other's replies.
 */
export function createRedisClient(url: string, clusterNodes: string[], logger: Logger, name: string): RedisClient {
  if (clusterNodes.length === 0) {
    return createRedis(url, logger, name, { enableAutoPipelining: true });
  }
  const log = logger.child({ component: "redis-cluster" });
  const password = new URL(url).password || undefined;
  const cluster = new Cluster(
    clusterNodes.map((n) => {
      const [host, port] = n.split(":");
      return { host: host ?? "127.0.0.1", port: Number(port) };
    }),
    {
      redisOptions: { connectionName: name, password, maxRetriesPerRequest: 3 },
      clusterRetryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    },
  );
  logStateChanges(cluster, log, "redis cluster");
  return cluster;
}

/** Waits until a standalone or cluster client is ready (see redisReady). */
export async function clientReady(client: RedisClient, what: string, timeoutMs = 10_000): Promise<void> {
  if (client.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`redis at ${what} not reachable within ${timeoutMs} ms`)), timeoutMs);
    client.once("ready", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
