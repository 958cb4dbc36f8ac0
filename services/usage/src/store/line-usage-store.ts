import type { Redis } from "ioredis";

/**
 * A line's live counters in Redis. Every key of one line carries the line id as its hash tag
 * (`{<subscriptionId>}`) so that one Lua script can touch them all on a Redis Cluster.
 */
export const keys = {
  /** Hash: used (bytes), alerted (bitmask of levels 50=1, 80=2, 100=4) for one month "YYYYMM". */
  month: (subscriptionId: string, month: string) => `usage:{${subscriptionId}}:${month.replace("-", "")}`,
  /** String: the line's monthly quota in bytes; "0" = unlimited. Absent = not known yet. */
  quota: (subscriptionId: string) => `quota:{${subscriptionId}}`,
};

export const LEVELS = [50, 80, 100] as const;

export interface LineUsage {
  usedBytes: bigint;
  /** undefined while the quota is not known. */
  quotaBytes: bigint | undefined;
  alertedLevels: number[];
  /** Neither a quota nor any usage is known for the line. */
  unknown: boolean;
}

export class LineUsageStore {
  constructor(private readonly redis: Redis) {}

  async get(subscriptionId: string, month: string): Promise<LineUsage> {
    const [[, counters], [, quota]] = (await this.redis
      .multi()
      .hmget(keys.month(subscriptionId, month), "used", "alerted")
      .get(keys.quota(subscriptionId))
      .exec()) as [[null, (string | null)[]], [null, string | null]];
    const [used, alerted] = counters;
    const mask = Number(alerted ?? 0);
    return {
      usedBytes: BigInt(used ?? 0),
      quotaBytes: quota === null ? undefined : BigInt(quota),
      alertedLevels: LEVELS.filter((_, i) => (mask & (1 << i)) !== 0),
      unknown: used === null && quota === null,
    };
  }

  async setQuota(subscriptionId: string, quotaBytes: bigint): Promise<void> {
    await this.redis.set(keys.quota(subscriptionId), quotaBytes.toString());
  }
}
