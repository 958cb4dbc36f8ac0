import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Knex } from "knex";
import { type DomainEvent, DomainEventSchema } from "../../../../gen/telco/domain/v1/events_pb.js";
import { type NotificationRequest, NotificationRequestSchema } from "../../../../gen/telco/message/v1/events_pb.js";
import { enqueueOutbox, type OutboxRecord } from "../../../kit/src/outbox-relay.js";
import { TOPICS } from "../../../kit/src/topics.js";

/**
 * The transactional outbox: a change and the records that announce it commit together, and the
 * relay (kit/src/outbox-relay.ts) publishes them afterwards. Nothing here talks to Kafka.
 */

export type { OutboxRecord };

export async function enqueue(trx: Knex.Transaction, r: OutboxRecord): Promise<void> {
  await enqueueOutbox(trx, "domain.outbox", r);
}

type EventCase = MessageInitShape<typeof DomainEventSchema>["event"];

/**
 * Appends a DomainEvent for a line: bumps the line's sequence (the caller holds the line's row
 * lock, so the sequence and the outbox order agree) and writes the event keyed by the line.
 * The event id is "<subscription_id>:<line_sequence>": deterministic, and unique per change.
 */
export async function appendDomainEvent(
  trx: Knex.Transaction,
  subscriptionId: string,
  occurredAt: Date,
  event: EventCase,
  headers?: Record<string, string>,
): Promise<DomainEvent> {
  const { rows } = await trx.raw<{ rows: { line_sequence: string }[] }>(
    `update domain.subscriptions set line_sequence = line_sequence + 1, updated_at = now()
      where subscription_id = ? returning line_sequence`,
    [subscriptionId],
  );
  const [row] = rows;
  if (!row) throw new Error(`line ${subscriptionId} vanished inside its own transaction`);
  const value = create(DomainEventSchema, {
    eventId: `${subscriptionId}:${row.line_sequence}`,
    subscriptionId,
    occurredAt: timestampFromDate(occurredAt),
    lineSequence: BigInt(row.line_sequence),
    event,
  });
  await enqueue(trx, {
    eventId: value.eventId,
    topic: TOPICS.domainEvents,
    key: subscriptionId,
    payload: toBinary(DomainEventSchema, value),
    headers,
  });
  return value;
}

export async function appendNotification(
  trx: Knex.Transaction,
  request: NotificationRequest,
  headers?: Record<string, string>,
): Promise<void> {
  await enqueue(trx, {
    eventId: request.requestId,
    topic: TOPICS.notificationRequests,
    key: request.subscriptionId,
    payload: toBinary(NotificationRequestSchema, request),
    headers,
  });
}
