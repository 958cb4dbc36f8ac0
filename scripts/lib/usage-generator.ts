/**
 * The "product server": N subscriber lines, each reporting its data usage every T seconds to
 * `usage.events`, as the carrier's network elements do, with a configurable share of producer
 * duplicates, reordering and late reports, and a month-boundary mode. Records are single
 * `UsageEvent`s keyed by the line, or `UsageEventBatch`es of the lines of one partition.
 *
 * Used by `npm run load:usage` and by the usage benchmark.
 */
import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Message, Partitioners, type Producer } from "kafkajs";
import { type UsageEvent, UsageEventBatchSchema, UsageEventSchema } from "../../gen/telco/usage/v1/events_pb.js";
import { MESSAGE_TYPE_HEADER } from "../../services/kit/src/kafka.js";
import { mulberry32 } from "./random.js";

export interface GeneratorOptions {
  producer: Producer;
  topic: string;
  partitions: number;
  lines: number;
  /** Seconds between two reports of one line. */
  intervalS: number;
  /** How long to run; 0 = until stop() (or maxEvents). */
  seconds: number;
  /** Stop after this many reports (duplicates not counted); 0 = no limit. */
  maxEvents?: number;
  mode: "single" | "batch";
  /** Events per batch record. */
  batchSize: number;
  /** Share of events sent twice (a producer retry). */
  duplicates: number;
  /** Share of events held back one round of their line (they arrive after the next). */
  reorder: number;
  /** Share of events held back `lateSeconds`. */
  late: number;
  lateSeconds: number;
  /**
   * Month-boundary mode: occurrence times run from `boundaryMs` − seconds/2, so that the first
   * half of the run falls in the month before the boundary, the second half in the month of it.
   */
  boundaryMs?: number;
  /** Mean bytes per report. */
  meanBytes: number;
  /**
   * Share of records that carry a sampled W3C traceparent, as an instrumented producer's would
   * (each its own trace): what the aggregator's tracing costs per traced record.
   */
  traced?: number;
  /** First line number (lines are L<10 digits>, as the domain unit numbers them). */
  firstLine?: number;
  source?: string;
  /** Called for every event as it is produced (the benchmark's model of alerts). */
  onEvent?: (line: number, seq: number, bytes: number, producedAtMs: number) => void;
  /** Progress, about once a second. */
  onProgress?: (p: GeneratorProgress) => void;
}

export interface GeneratorProgress {
  elapsedS: number;
  events: number;
  records: number;
  duplicates: number;
  held: number;
  eventsPerS: number;
  /** Events behind the schedule (the producer cannot keep up when this grows). */
  behind: number;
}

export interface GeneratorResult {
  events: number;
  records: number;
  duplicates: number;
  seconds: number;
  eventsPerS: number;
  bytes: number;
}

/** Bytes per produce request at most (a record batch per partition stays well under 1 MB). */
const REQUEST_BYTES = 512 * 1024;

/** A record's bytes in a request: key, value, headers and ~20 bytes of record framing. */
function recordBytes(m: Message): number {
  let n = 20 + Buffer.byteLength(String(m.key ?? "")) + (m.value as Buffer).length;
  for (const [k, v] of Object.entries(m.headers ?? {})) n += Buffer.byteLength(k) + Buffer.byteLength(String(v ?? ""));
  return n;
}

export const lineId = (n: number) => `L${String(n).padStart(10, "0")}`;

/** Deterministic bytes of a report (so a run can be reproduced and modelled). */
export function reportBytes(line: number, seq: number, mean: number): number {
  let h = (line * 2654435761 + seq * 40503) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  // Uniform in [mean/2, 3·mean/2).
  return Math.max(1, Math.floor(mean / 2 + (h / 2 ** 32) * mean));
}

interface Pending {
  line: number;
  seq: number;
  bytes: number;
  atMs: number;
  dueMs: number;
}

/** A Kafka partition per line, as the client's default partitioner puts the line's key. */
export function partitionsOf(topic: string, lines: number, partitions: number, firstLine = 1): Uint16Array {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, p) => ({
    partitionId: p,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  const out = new Uint16Array(lines);
  for (let i = 0; i < lines; i++) {
    out[i] = partitioner({ topic, partitionMetadata, message: { key: lineId(firstLine + i), value: null } });
  }
  return out;
}

export class UsageGenerator {
  private stopped = false;
  private readonly seqs: Uint32Array;
  private readonly partition: Uint16Array;
  private readonly held: Pending[] = [];
  /** Per line, the event held for one round (reorder), if any. */
  private readonly heldRound = new Map<number, Pending>();
  private readonly first: number;
  private readonly ids: string[];

  constructor(private readonly o: GeneratorOptions) {
    this.first = o.firstLine ?? 1;
    this.seqs = new Uint32Array(o.lines);
    this.partition = partitionsOf(o.topic, o.lines, o.partitions, this.first);
    this.ids = Array.from({ length: o.lines }, (_, i) => lineId(this.first + i));
  }

  stop(): void {
    this.stopped = true;
  }

  async run(): Promise<GeneratorResult> {
    const o = this.o;
    const started = Date.now();
    const periodMs = o.intervalS * 1000;
    const rng = mulberry32(0x5eed);
    let scheduled = 0; // events due so far: lines × rounds, in line order within a round
    let events = 0;
    let records = 0;
    let duplicates = 0;
    let bytes = 0;
    let lastProgress = started;
    let lastEvents = 0;
    const tickMs = 50;
    const inFlight = new Set<Promise<unknown>>();
    const maxInFlight = 8;
    const endMs = o.seconds > 0 ? started + o.seconds * 1000 : Number.POSITIVE_INFINITY;

    // Every tick sends what the tick made: per partition, batch records of up to batchSize events
    // (or single records), in one produce request.
    const batches: UsageEvent[][] = Array.from({ length: o.partitions }, () => []);
    const singles: Message[][] = Array.from({ length: o.partitions }, () => []);
    let failure: Error | undefined;
    const flush = async () => {
      const messages: (Message & { partition: number })[] = [];
      for (let p = 0; p < o.partitions; p++) {
        const list = batches[p] as UsageEvent[];
        for (let k = 0; k < list.length; k += o.batchSize) {
          const part = list.slice(k, k + o.batchSize);
          messages.push({
            key: (part[0] as UsageEvent).subscriptionId,
            value: Buffer.from(toBinary(UsageEventBatchSchema, create(UsageEventBatchSchema, { events: part }))),
            partition: p,
            headers: { [MESSAGE_TYPE_HEADER]: UsageEventBatchSchema.typeName },
          });
        }
        list.length = 0;
        for (const m of singles[p] as Message[]) messages.push({ ...m, partition: p });
        (singles[p] as Message[]).length = 0;
      }
      if (messages.length === 0) return;
      const traced = o.traced ?? 0;
      if (traced > 0) {
        for (const m of messages) {
          if (Math.random() >= traced) continue;
          const id = randomBytes(24).toString("hex");
          m.headers = { ...m.headers, traceparent: `00-${id.slice(0, 32)}-${id.slice(32)}-01` };
        }
      }
      records += messages.length;
      // One produce request per REQUEST_BYTES of records: after a stall (a broker down, a
      // producer behind) a tick catches up with up to 50,000 events, and a partition's record
      // batch of all of them would be more than the broker accepts (message.max.bytes, 1 MB).
      for (let k = 0; k < messages.length; ) {
        let end = k;
        for (let bytes = 0; end < messages.length && (end === k || bytes < REQUEST_BYTES); end++)
          bytes += recordBytes(messages[end] as Message);
        const part = messages.slice(k, end);
        k = end;
        const send = o.producer.send({ topic: o.topic, acks: -1, messages: part }).then(
          () => undefined,
          (e: Error) => {
            failure ??= e;
          },
        );
        inFlight.add(send);
        void send.finally(() => inFlight.delete(send));
        while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
        if (failure) throw new Error(`producing to ${o.topic} failed: ${failure.message}`);
      }
    };

    const emit = (ev: Pending, nowMs: number) => {
      const id = this.ids[ev.line] as string;
      const e = create(UsageEventSchema, {
        eventId: `${id}:${ev.seq}`,
        subscriptionId: id,
        seq: BigInt(ev.seq),
        bytes: BigInt(ev.bytes),
        occurredAt: timestampFromMs(ev.atMs),
        source: o.source ?? "pgw-seoul-01",
      });
      const copies = rng() < o.duplicates ? 2 : 1;
      duplicates += copies - 1;
      const p = this.partition[ev.line] as number;
      for (let c = 0; c < copies; c++) {
        if (o.mode === "batch") {
          (batches[p] as UsageEvent[]).push(e);
        } else {
          (singles[p] as Message[]).push({ key: id, value: Buffer.from(toBinary(UsageEventSchema, e)) });
        }
      }
      events += 1;
      bytes += ev.bytes;
      o.onEvent?.(this.first + ev.line, ev.seq, ev.bytes, nowMs);
    };

    while (!this.stopped) {
      const nowMs = Date.now();
      if (nowMs >= endMs || (o.maxEvents && scheduled >= o.maxEvents)) break;
      const elapsed = nowMs - started;
      let due = Math.floor((elapsed * o.lines) / periodMs);
      if (o.maxEvents) due = Math.min(due, o.maxEvents);
      const budget = Math.min(due - scheduled, 50_000);
      for (let k = 0; k < budget; k++) {
        const line = scheduled % o.lines;
        scheduled += 1;
        const seq = (this.seqs[line] as number) + 1;
        this.seqs[line] = seq;
        const at = o.boundaryMs === undefined ? nowMs : o.boundaryMs - (o.seconds * 1000) / 2 + elapsed;
        const ev: Pending = { line, seq, bytes: reportBytes(this.first + line, seq, o.meanBytes), atMs: at, dueMs: 0 };
        const roundHeld = this.heldRound.get(line);
        if (roundHeld) {
          this.heldRound.delete(line);
          emit(ev, nowMs);
          emit(roundHeld, nowMs);
          continue;
        }
        const r = rng();
        if (r < o.reorder) {
          this.heldRound.set(line, ev);
        } else if (r < o.reorder + o.late) {
          ev.dueMs = nowMs + o.lateSeconds * 1000;
          this.held.push(ev);
        } else {
          emit(ev, nowMs);
        }
      }
      while (this.held.length > 0 && (this.held[0] as Pending).dueMs <= nowMs)
        emit(this.held.shift() as Pending, nowMs);
      await flush();
      if (nowMs - lastProgress >= 1000) {
        o.onProgress?.({
          elapsedS: elapsed / 1000,
          events,
          records,
          duplicates,
          held: this.held.length + this.heldRound.size,
          eventsPerS: ((events - lastEvents) * 1000) / (nowMs - lastProgress),
          behind: Math.max(0, due - scheduled),
        });
        lastProgress = nowMs;
        lastEvents = events;
      }
      if (budget < 50_000) await new Promise((r) => setTimeout(r, Math.max(0, tickMs - (Date.now() - nowMs))));
    }
    // What is held back goes out at the end: nothing the run generated is lost.
    const nowMs = Date.now();
    for (const ev of this.heldRound.values()) emit(ev, nowMs);
    this.heldRound.clear();
    for (const ev of this.held.splice(0)) emit(ev, nowMs);
    await flush();
    await Promise.all(inFlight);
    if (failure) throw new Error(`producing to ${o.topic} failed: ${(failure as Error).message}`);
    const seconds = (Date.now() - started) / 1000;
    return { events, records, duplicates, seconds, eventsPerS: events / seconds, bytes };
  }
}
