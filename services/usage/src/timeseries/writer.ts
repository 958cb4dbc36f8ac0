import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from "kafkajs";
import { UsageEventBatchSchema, UsageEventSchema } from "../../../../gen/telco/usage/v1/events_pb.js";
import { decodeRecord } from "../../../kit/src/kafka.js";
import type { Logger } from "../../../kit/src/logger.js";
import { type EventChecker, readUsageValue } from "../aggregator.js";
import type { WireEvent } from "../wire.js";
import { escapeTag, type InfluxClient } from "./influx.js";

/** Resolution of the per-line series. */
export const LINE_STEP_MS = 5 * 60_000;
/** Resolution of the platform totals. */
export const PLATFORM_STEP_MS = 60_000;
/** A chunk spans the records of one partition whose record timestamps fall in this window. */
export const CHUNK_WINDOW_MS = 5 * 60_000;
export const LINE_MEASUREMENT = "line_usage";
export const PLATFORM_MEASUREMENT = "platform_usage";
/** Sequence numbers of a line a chunk tells apart (a producer retry comes right after its original). */
const DEDUPE_WINDOW = 32;

export interface WriterStats {
  events: number;
  skipped: number;
  duplicates: number;
  points: number;
  chunksClosed: number;
  writes: number;
}

export interface TimeSeriesWriterOptions {
  kafka: Kafka;
  influx: InfluxClient;
  logger: Logger;
  topic: string;
  groupId: string;
  checker: EventChecker;
  /** How often the open chunks' changed points are written. */
  flushMs: number;
}

interface LinePoint {
  sid: string;
  bucketMs: number;
  bytes: number;
}

interface PlatformPoint {
  minuteMs: number;
  bytes: number;
  events: number;
}

/** The records of one partition from `start` until the first record stamped at or after `windowEnd`. */
interface Chunk {
  partition: number;
  start: bigint;
  windowEnd: number;
  /** The offset the next record must have to continue this chunk. */
  next: bigint;
  lines: Map<string, LinePoint>;
  platform: Map<number, PlatformPoint>;
  /** Per line: the highest sequence number seen in the chunk and a bit per the 31 below it. */
  seen: Map<string, { hi: number; win: number }>;
  dirtyLines: Set<LinePoint>;
  dirtyPlatform: Set<PlatformPoint>;
}

/**
 * The second consumer group of `usage.events`: sums usage into InfluxDB per line and 5 minutes
 * (by occurrence time) and platform totals per minute, in its own group so that it never holds
 * the aggregator back.
 *
 * Exact across crashes without a transaction: each partition's records are cut into chunks whose
 * bounds depend only on the records (a chunk ends before the first record stamped 5 minutes past
 * the window its first record opened), and a chunk's points carry the chunk's start offset in
 * their nanoseconds (a point is identified by series and timestamp), so writing a chunk again
 * overwrites its own points. The group's offset is committed at chunk starts only; a restarted
 * writer reads the chunk again from its start and writes the same points. The open chunk's
 * changed points are written every `flushMs` (a prefix of the chunk: never more than the final
 * value). A producer retry inside one chunk is dropped; one that straddles two chunks counts in
 * the series twice (the live counters in Redis are the exact figures).
 */
export class TimeSeriesWriter {
  readonly stats: WriterStats = { events: 0, skipped: 0, duplicates: 0, points: 0, chunksClosed: 0, writes: 0 };
  private consumer: Consumer | undefined;
  private readonly chunks = new Map<number, Chunk>();
  private timer: NodeJS.Timeout | undefined;
  /** Writes run one at a time: a flush and a chunk close never interleave. */
  private writing: Promise<void> = Promise.resolve();
  private rebalancing = false;
  private readonly log: Logger;

  constructor(private readonly o: TimeSeriesWriterOptions) {
    this.log = o.logger.child({ component: "timeseries", topic: o.topic, group: o.groupId });
  }

  async start(): Promise<void> {
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      allowAutoTopicCreation: false,
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxWaitTimeInMs: 500,
    });
    this.consumer = consumer;
    // After a rebalance another member may own a partition: forget its open chunk, so that no
    // prefix of it is written after that member wrote the whole. (Partitions kept resume at
    // their committed chunk start, which opens a new chunk anyway.)
    // While the group rebalances, nothing is written (a partition may be moving to another member).
    consumer.on(consumer.events.REBALANCING, () => {
      this.rebalancing = true;
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const mine = new Set(e.payload.memberAssignment[this.o.topic] ?? []);
      for (const p of [...this.chunks.keys()]) if (!mine.has(p)) this.chunks.delete(p);
      this.rebalancing = false;
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [this.o.topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (p) => this.onBatch(p),
    });
    const tick = () => {
      this.timer = setTimeout(() => {
        void this.flush()
          .catch((e) => this.log.warn({ err: (e as Error).message }, "time series flush failed; retried next time"))
          .finally(() => {
            if (this.consumer) tick();
          });
      }, this.o.flushMs);
    };
    tick();
  }

  /**
   * Stops reading, writes what the open chunks hold (their offsets stay uncommitted), then
   * leaves the group: written while the partitions are still this member's.
   */
  async stop(): Promise<void> {
    const c = this.consumer;
    this.consumer = undefined;
    if (this.timer) clearTimeout(this.timer);
    try {
      c?.pause([{ topic: this.o.topic }]);
    } catch {
      // Not running yet.
    }
    await this.flush().catch((e) => this.log.warn({ err: (e as Error).message }, "time series flush failed at stop"));
    await c?.disconnect();
  }

  /** Writes every open chunk's changed points now. */
  flush(): Promise<void> {
    return this.serial(async () => {
      if (this.rebalancing) return;
      for (const chunk of this.chunks.values()) await this.writeChunk(chunk);
    });
  }

  private serial(f: () => Promise<void>): Promise<void> {
    const p = this.writing.then(f);
    this.writing = p.catch(() => {});
    return p;
  }

  private async onBatch({
    batch,
    resolveOffset,
    heartbeat,
    isRunning,
    isStale,
    commitOffsetsIfNecessary,
  }: EachBatchPayload): Promise<void> {
    for (const m of batch.messages) {
      if (!isRunning() || isStale()) return;
      const offset = BigInt(m.offset);
      const ts = Number(m.timestamp);
      let chunk = this.chunks.get(batch.partition);
      // A record that does not continue the chunk in hand (first batch, after a rebalance or a
      // seek) starts a chunk: consumption always resumes at a committed chunk start.
      if (!chunk || chunk.next !== offset) chunk = this.open(batch.partition, offset, ts);
      else if (ts >= chunk.windowEnd) {
        const closing = chunk;
        await this.serial(() => this.writeChunk(closing));
        this.stats.chunksClosed += 1;
        await commitOffsetsIfNecessary({
          topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: m.offset }] }],
        });
        chunk = this.open(batch.partition, offset, ts);
      }
      this.add(chunk, batch.partition, m);
      chunk.next = offset + 1n;
      resolveOffset(m.offset);
    }
    await heartbeat();
  }

  private open(partition: number, start: bigint, ts: number): Chunk {
    const chunk: Chunk = {
      partition,
      start,
      windowEnd: Math.floor(ts / CHUNK_WINDOW_MS) * CHUNK_WINDOW_MS + CHUNK_WINDOW_MS,
      next: start,
      lines: new Map(),
      platform: new Map(),
      seen: new Map(),
      dirtyLines: new Set(),
      dirtyPlatform: new Set(),
    };
    this.chunks.set(partition, chunk);
    return chunk;
  }

  private add(chunk: Chunk, partition: number, m: KafkaMessage): void {
    // The record's own time, not the clock's: a chunk read again after a crash takes the same events.
    const now = Number(m.timestamp);
    let events: WireEvent[];
    let batch = false;
    try {
      const d = decodeRecord([UsageEventSchema, UsageEventBatchSchema], partition, m, readUsageValue);
      ({ batch, events } = d.value);
    } catch {
      // The aggregator's group dead-letters it.
      this.stats.skipped += 1;
      return;
    }
    const key = batch ? undefined : m.key?.toString("utf8");
    for (const e of events) {
      const placed = this.o.checker.check(e, key, now);
      if (typeof placed === "string") {
        this.stats.skipped += 1;
        continue;
      }
      this.stats.events += 1;
      if (!fresh(chunk, e.subscriptionId, e.seq)) {
        this.stats.duplicates += 1;
        continue;
      }
      const bytes = e.bytes;
      const bucketMs = Math.floor(placed.ms / LINE_STEP_MS) * LINE_STEP_MS;
      const lk = `${e.subscriptionId} ${bucketMs}`;
      let lp = chunk.lines.get(lk);
      if (!lp) {
        lp = { sid: e.subscriptionId, bucketMs, bytes: 0 };
        chunk.lines.set(lk, lp);
      }
      lp.bytes += bytes;
      chunk.dirtyLines.add(lp);
      const minuteMs = Math.floor(placed.ms / PLATFORM_STEP_MS) * PLATFORM_STEP_MS;
      let pp = chunk.platform.get(minuteMs);
      if (!pp) {
        pp = { minuteMs, bytes: 0, events: 0 };
        chunk.platform.set(minuteMs, pp);
      }
      pp.bytes += bytes;
      pp.events += 1;
      chunk.dirtyPlatform.add(pp);
    }
  }

  private async writeChunk(chunk: Chunk): Promise<void> {
    if (chunk.dirtyLines.size === 0 && chunk.dirtyPlatform.size === 0) return;
    const lines = [...chunk.dirtyLines];
    const platform = [...chunk.dirtyPlatform];
    chunk.dirtyLines.clear();
    chunk.dirtyPlatform.clear();
    const lineNs = chunkNs(chunk, LINE_STEP_MS);
    const platNs = chunkNs(chunk, PLATFORM_STEP_MS);
    const out: string[] = [];
    for (const p of lines) {
      out.push(
        `${LINE_MEASUREMENT},line=${escapeTag(p.sid)} bytes=${p.bytes}i ${BigInt(p.bucketMs) * 1_000_000n + lineNs}`,
      );
    }
    for (const p of platform) {
      out.push(
        `${PLATFORM_MEASUREMENT},partition=${chunk.partition} bytes=${p.bytes}i,events=${p.events}i ${BigInt(p.minuteMs) * 1_000_000n + platNs}`,
      );
    }
    try {
      await this.o.influx.write(out);
    } catch (e) {
      // Not written: mark them again so the next flush (or the chunk's close) carries them.
      for (const p of lines) chunk.dirtyLines.add(p);
      for (const p of platform) chunk.dirtyPlatform.add(p);
      throw e;
    }
    this.stats.points += out.length;
    this.stats.writes += 1;
  }
}

/**
 * The nanoseconds a chunk's points carry inside their step: distinct per chunk start and
 * partition (a misrouted line on two partitions keeps both), always less than the step.
 */
function chunkNs(chunk: Chunk, stepMs: number): bigint {
  const slots = (BigInt(stepMs) * 1_000_000n) / 64n - 1n;
  return (chunk.start % slots) * 64n + BigInt(chunk.partition % 64);
}

/** Whether a line's sequence number is new in this chunk (recording it). */
function fresh(chunk: Chunk, sid: string, seq: number): boolean {
  const s = chunk.seen.get(sid);
  if (!s) {
    chunk.seen.set(sid, { hi: seq, win: 1 });
    return true;
  }
  if (seq > s.hi) {
    const d = seq - s.hi;
    s.win = d >= DEDUPE_WINDOW ? 1 : ((s.win << d) | 1) >>> 0;
    s.hi = seq;
    return true;
  }
  const k = s.hi - seq;
  if (k >= DEDUPE_WINDOW) return true;
  if ((s.win >>> k) & 1) return false;
  s.win = (s.win | (1 << k)) >>> 0;
  return true;
}
