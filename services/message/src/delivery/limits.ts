import type { RedisClient } from "../../../kit/src/redis.js";

/**
 * GCRA (the generic cell rate algorithm) for one provider, in one atomic script: a send may go
 * when the theoretical arrival time (TAT) is at most `burst - 1` intervals ahead of now; each
 * send moves the TAT on by one interval. Redis's own clock, so every dispatcher shares one time.
 * Returns 0 when the send may go now (and takes the slot), else the milliseconds to wait.
 * KEYS[1] tat key; ARGV interval µs, burst.
 */
const GCRA = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if not interval or interval <= 0 or not burst or burst < 1 then return redis.error_reply('bad arguments') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowAt = tat - (burst - 1) * interval
if allowAt > now then return math.ceil((allowAt - now) / 1000) end
local nextTat = tat + interval
redis.call('SET', KEYS[1], nextTat, 'PX', math.ceil((nextTat - now) / 1000) + 1000)
return 0
`;

/**
 * Per-recipient cap per day: takes one of the day's sends if any is left. KEYS[1] the line's
 * counter of the day; ARGV cap, ttl seconds. Returns 1 (taken) or 0 (cap reached).
 */
const CAP = `
local cap = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if not cap or cap < 1 or not ttl or ttl < 1 then return redis.error_reply('bad arguments') end
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= cap then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
return 1
`;

export interface RateLimit {
  /** Sends per second; 0 = no limit. */
  perSecond: number;
  /** Sends allowed back to back (≥ 1). */
  burst: number;
}

/** Gives one send back (never below zero). KEYS[1] the line's counter of the day. */
const GIVE_BACK = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
`;

const capKey = (subscriptionId: string, channel: string, day: string) =>
  `message:{cap:${subscriptionId}}:${channel}:${day}`;

type Scripted = RedisClient & {
  msgGiveBack(key: string): Promise<number>;
  msgGcra(key: string, intervalUs: number, burst: number): Promise<number>;
  msgCap(key: string, cap: number, ttl: number): Promise<number>;
};

export class Limits {
  private readonly r: Scripted;

  constructor(redis: RedisClient) {
    redis.defineCommand("msgGcra", { numberOfKeys: 1, lua: GCRA });
    redis.defineCommand("msgCap", { numberOfKeys: 1, lua: CAP });
    redis.defineCommand("msgGiveBack", { numberOfKeys: 1, lua: GIVE_BACK });
    this.r = redis as Scripted;
  }

  /**
   * Waits until the provider may take `slots` more sends (one after the other), then takes them.
   * Throws when stopped, or when the wait would pass `maxWaitMs` (the slots taken so far are
   * spent: the limit errs on the side of sending less).
   */
  async acquire(
    provider: string,
    limit: RateLimit,
    signal?: AbortSignal,
    { slots = 1, maxWaitMs = Number.POSITIVE_INFINITY } = {},
  ): Promise<number> {
    if (limit.perSecond <= 0) return 0;
    // Rounded up: the interval never comes out shorter than the rate allows.
    const intervalUs = Math.max(1, Math.ceil(1_000_000 / limit.perSecond));
    let waited = 0;
    for (let taken = 0; taken < slots; ) {
      if (signal?.aborted) throw new Error("stopped while waiting for a send slot");
      const wait = await this.r.msgGcra(`message:{rate:${provider}}`, intervalUs, Math.max(1, limit.burst));
      if (wait === 0) {
        taken++;
        continue;
      }
      if (waited + wait > maxWaitMs) throw new Error(`no send slot within ${maxWaitMs} ms`);
      waited += wait;
      await new Promise((r) => setTimeout(r, wait));
    }
    return waited;
  }

  /** Takes one of the line's sends of `day` (YYYY-MM-DD) on a channel; false when the cap is reached. */
  async takeDaily(subscriptionId: string, channel: string, day: string, cap: number): Promise<boolean> {
    if (cap <= 0) return true;
    return (await this.r.msgCap(capKey(subscriptionId, channel, day), cap, 2 * 86_400)) === 1;
  }

  /** Gives back a send takeDaily took for a message that did not go out after all. */
  async giveBackDaily(subscriptionId: string, channel: string, day: string, cap: number): Promise<void> {
    if (cap <= 0) return;
    await this.r.msgGiveBack(capKey(subscriptionId, channel, day));
  }
}
