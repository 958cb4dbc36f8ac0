import type { Producer } from "kafkajs";
import type { Knex } from "knex";
import { publish } from "./kafka.js";
import type { Logger } from "./logger.js";

/** One record of a unit's transactional outbox. */
export interface OutboxRecord {
  /** Deterministic: the same change always yields the same id; a second insert is ignored. */
  eventId: string;
  topic: string;
  key: string;
  payload: Uint8Array;
  /** Record headers, e.g. the W3C traceparent of the request that made the change. */
  headers?: Record<string, string>;
}

/** Writes a record into `table` (see OutboxRelayOptions.table) inside the change's transaction. */
export async function enqueueOutbox(trx: Knex.Transaction, table: string, r: OutboxRecord): Promise<void> {
  await trx(table)
    .insert({
      event_id: r.eventId,
      topic: r.topic,
      key: r.key,
      payload: Buffer.from(r.payload),
      headers: JSON.stringify(r.headers ?? {}),
    })
    .onConflict("event_id")
    .ignore();
}

export interface OutboxRelayOptions {
  knex: Knex;
  /**
   * The unit's outbox table, schema-qualified (e.g. "domain.outbox"): outbox_id bigserial, event_id
   * text unique, topic, key, payload bytea, headers jsonb, created_at, published_at.
   */
  table: string;
  producer: Producer;
  logger: Logger;
  /** Rows per round trip. */
  batchSize?: number;
  /** Pause after a round that found nothing to send. */
  pollIntervalMs?: number;
  /**
   * The Kafka topic of a row's stream when it is not the one the row names (rows name the
   * standard topic, e.g. "domain.events"; a deployment or a test may publish it elsewhere).
   */
  topics?: Record<string, string>;
}

interface OutboxRow {
  outbox_id: string;
  topic: string;
  key: string;
  payload: Buffer;
  headers: Record<string, string>;
}

/**
 * Publishes the outbox: takes the oldest unpublished rows, sends them to their topics (key and
 * headers as written, so the W3C traceparent of the change travels on) and marks them published
 * only after the broker acknowledged them, in the transaction that holds their row locks.
 *
 * At least once: a crash after the ack and before the commit sends those rows again (consumers
 * deduplicate on the event id). In order per line: rows are sent in id order, one request in
 * flight (see createProducer), and several relays may run at once: SKIP LOCKED keeps them off
 * each other's rows, and a row is only taken when no earlier unpublished row of the same key is
 * outside the batch (i.e. held by another relay), so a line's later change never overtakes an
 * earlier one.
 *
 * One record that cannot be produced (its topic is missing, the broker refuses it) does not hold
 * up the other lines: when the batch fails, its rows go one by one in id order; a key whose row
 * fails is logged (ids and topic only) and skipped for the round, its later rows unsent so its
 * order holds, and retried the next round. Keys that failed last round go one by one from the
 * start, so the others keep the fast path. A round that publishes nothing at all fails (backoff).
 */
/** Failures in a row on one topic within a round after which its other rows wait for the next round. */
const TOPIC_FAILURES_TO_GIVE_UP = 2;

export class OutboxRelay {
  private running = false;
  /** Keys with a row that could not be produced in their latest round. */
  private suspects = new Set<string>();
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly log: Logger;
  private readonly batchSize: number;
  private readonly pollIntervalMs: number;
  private readonly table: string;

  constructor(private readonly o: OutboxRelayOptions) {
    if (!/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/.test(o.table)) throw new Error(`bad outbox table name ${o.table}`);
    this.table = o.table;
    this.log = o.logger.child({ component: "outbox-relay" });
    this.batchSize = o.batchSize ?? 500;
    this.pollIntervalMs = o.pollIntervalMs ?? 200;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Finishes the round in hand (its rows are acknowledged and marked), then stops. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let sent = 0;
      try {
        sent = await this.relayOnce();
        failures = 0;
      } catch (err) {
        failures++;
        this.log.error({ err, failures }, "outbox relay round failed; rows stay unpublished and are retried");
      }
      if (sent === 0 || failures > 0) {
        const pause = failures > 0 ? Math.min(this.pollIntervalMs * 2 ** failures, 10_000) : this.pollIntervalMs;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pause);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /** One round: returns how many records were published. */
  async relayOnce(): Promise<number> {
    return this.o.knex.transaction(async (trx) => {
      const { rows } = await trx.raw<{ rows: OutboxRow[] }>(
        `with batch as (
           select outbox_id, key from ${this.table}
            where published_at is null
            order by outbox_id
            limit ?
            for update skip locked)
         select o.outbox_id, o.topic, o.key, o.payload, o.headers
           from ${this.table} o join batch b on b.outbox_id = o.outbox_id
          where not exists (
            select 1 from ${this.table} e
             where e.key = b.key and e.published_at is null and e.outbox_id < b.outbox_id
               and e.outbox_id not in (select outbox_id from batch))
          order by o.outbox_id`,
        [this.batchSize],
      );
      if (rows.length === 0) return 0;
      for (const r of rows) r.topic = this.o.topics?.[r.topic] ?? r.topic;
      const sent = await this.publish(rows);
      if (sent.length > 0) {
        await trx(this.table)
          .whereIn(
            "outbox_id",
            sent.map((r) => r.outbox_id),
          )
          .update({ published_at: trx.fn.now() });
      }
      if (sent.length === 0) throw new Error(`none of ${rows.length} outbox records could be published`);
      return sent.length;
    });
  }

  /** Sends `rows` (in outbox order); returns those the broker acknowledged. */
  private async publish(rows: OutboxRow[]): Promise<OutboxRow[]> {
    const healthy = rows.filter((r) => !this.suspects.has(r.key));
    const suspect = rows.filter((r) => this.suspects.has(r.key));
    const sent: OutboxRow[] = [];
    const failed = new Set<string>();
    const topicFailures = new Map<string, number>();
    if (healthy.length > 0) {
      try {
        await this.send(healthy);
        sent.push(...healthy);
      } catch (err) {
        this.log.warn(
          { error: (err as Error).message, rows: healthy.length },
          "outbox batch not acknowledged; sending its records one by one",
        );
        sent.push(...(await this.oneByOne(healthy, failed, topicFailures)));
      }
    }
    if (suspect.length > 0) sent.push(...(await this.oneByOne(suspect, failed, topicFailures)));
    for (const r of rows) this.suspects.delete(r.key);
    for (const key of failed) this.suspects.add(key);
    if (failed.size > 0) {
      this.log.warn(
        { keys: failed.size, sent: sent.length, of: rows.length },
        "outbox keys skipped this round; retried next round",
      );
    }
    return sent;
  }

  /**
   * Sends each row alone, in outbox order. A key whose row fails is skipped for the rest of the
   * round (its later rows stay unsent, so its order holds); after repeated failures on a topic,
   * that topic's remaining rows wait for the next round too (a missing topic, a broker down).
   */
  private async oneByOne(
    rows: OutboxRow[],
    failed: Set<string>,
    topicFailures: Map<string, number>,
  ): Promise<OutboxRow[]> {
    const sent: OutboxRow[] = [];
    for (const r of rows) {
      if (failed.has(r.key)) continue;
      if ((topicFailures.get(r.topic) ?? 0) >= TOPIC_FAILURES_TO_GIVE_UP) {
        failed.add(r.key);
        continue;
      }
      try {
        await this.send([r]);
        sent.push(r);
        topicFailures.set(r.topic, 0);
      } catch (err) {
        failed.add(r.key);
        topicFailures.set(r.topic, (topicFailures.get(r.topic) ?? 0) + 1);
        // Ids and the topic only: never the payload or headers.
        this.log.warn(
          { key: r.key, topic: r.topic, outboxId: r.outbox_id, error: (err as Error).message },
          "outbox record not acknowledged; its key waits for the next round",
        );
      }
    }
    return sent;
  }

  private async send(rows: OutboxRow[]): Promise<void> {
    const byTopic = new Map<string, OutboxRow[]>();
    for (const r of rows) {
      const list = byTopic.get(r.topic) ?? [];
      list.push(r);
      byTopic.set(r.topic, list);
    }
    await publish(
      this.o.producer,
      [...byTopic].map(([topic, list]) => ({
        topic,
        messages: list.map((r) => ({ key: r.key, value: r.payload, headers: { ...r.headers } })),
      })),
    );
  }
}
