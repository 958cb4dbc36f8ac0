import type { RedisClient } from "../../services/kit/src/redis.js";
import { MonthClock } from "../../services/usage/src/months.js";
import { Layout, UsageStore } from "../../services/usage/src/redis/store.js";

/** The usage unit's defaults (USAGE_REDIS_BUCKETS / _GROUPS): what a spawned unit claims too. */
export const TEST_LAYOUT = { buckets: 8_192, groups: 256 };
export const TEST_TIME_ZONE = "Asia/Seoul";

/** The usage unit's store on a test Redis, as the unit builds it with its default settings. */
export function usageStore(
  redis: RedisClient,
  o: { graceDays?: number; openMaxDays?: number; now?: () => number } = {},
): UsageStore {
  return new UsageStore(redis, {
    layout: new Layout(TEST_LAYOUT.buckets, TEST_LAYOUT.groups),
    clock: new MonthClock(TEST_TIME_ZONE),
    graceMs: (o.graceDays ?? 15) * 86_400_000,
    openMaxMs: (o.openMaxDays ?? 45) * 86_400_000,
    now: o.now,
  });
}
