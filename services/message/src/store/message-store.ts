import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Knex } from "knex";
import { Channel, DeliveryResultSchema, DeliveryStatus } from "../../../../gen/telco/message/v1/events_pb.js";
import { DLQ, dlqTopic } from "../../../kit/src/kafka.js";
import { enqueueOutbox } from "../../../kit/src/outbox-relay.js";
import { messagesTotal } from "../metrics.js";
import type { ChannelName } from "./template-store.js";

export const OUTBOX_TABLE = "message.outbox";

export type KindName = "usage_threshold" | "welcome" | "invoice_issued" | "direct";
export type MessageStatus = "queued" | "deferred" | "sending" | "sent" | "delivered" | "failed" | "cancelled";

export interface MessageRow {
  message_id: string;
  request_id: string;
  channel: ChannelName;
  subscription_id: string;
  kind: KindName;
  template_id: string;
  template_version: number;
  variables: Record<string, string>;
  urgent: boolean;
  status: MessageStatus;
  send_at: Date;
  attempts: number;
  provider: string;
  reason: string;
  segments: number;
  request: Buffer | null;
  source_topic: string | null;
  source_partition: number | null;
  source_offset: string | null;
  traceparent: string | null;
  claim_token: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface NewMessage {
  requestId: string;
  channel: ChannelName;
  subscriptionId: string;
  kind: KindName;
  templateId: string;
  templateVersion: number;
  variables: Record<string, string>;
  urgent: boolean;
  sendAt: Date;
  /** Deferred (quiet hours) rather than queued, with why. */
  deferredBecause?: string;
  request?: Uint8Array;
  source?: { topic: string; partition: number; offset: string };
  traceparent?: string;
}

export interface HistoryRow {
  status: MessageStatus;
  at: Date;
  reason: string;
}

export const STATUS_TO_PROTO: Record<MessageStatus, DeliveryStatus> = {
  queued: DeliveryStatus.QUEUED,
  sending: DeliveryStatus.QUEUED,
  deferred: DeliveryStatus.DEFERRED,
  sent: DeliveryStatus.SENT,
  delivered: DeliveryStatus.DELIVERED,
  failed: DeliveryStatus.FAILED,
  cancelled: DeliveryStatus.CANCELLED,
};
export const CHANNEL_TO_PROTO: Record<ChannelName, Channel> = {
  sms: Channel.SMS,
  email: Channel.EMAIL,
  push: Channel.PUSH,
};

/** Receipt stats that end a part as delivered; every other final stat fails it. */
const DELIVERED_STATS = new Set(["DELIVRD", "ACCEPTD"]);
const PENDING_STATS = new Set(["ENROUTE", "UNKNOWN"]);

/**
 * A receipt can arrive while its submit is being recorded: both take the part's lock (until their
 * commit), so whichever comes second sees what the first wrote and settles the message.
 */
async function lockParts(trx: Knex.Transaction, providerIds: string[]): Promise<void> {
  for (const id of [...providerIds].sort()) {
    await trx.raw("select pg_advisory_xact_lock(hashtext('sms-part:' || ?))", [id]);
  }
}

/**
 * Messages and their statuses. Every status change is one transaction: the row, a history row,
 * and the DeliveryResult for message.results in the outbox (and, for a failed request, its
 * dead letter for notification.requests.dlq), so none of them exists without the others.
 */
export class MessageStore {
  constructor(
    private readonly knex: Knex,
    private readonly topics: { results: string; requests: string },
  ) {}

  private async changed(
    trx: Knex.Transaction,
    row: MessageRow,
    status: MessageStatus,
    reason: string,
    at: Date,
  ): Promise<void> {
    const [h] = await trx("message.message_status_history")
      .insert({ message_id: row.message_id, status, at, reason })
      .returning<{ id: string }[]>("id");
    const result = create(DeliveryResultSchema, {
      messageId: row.message_id,
      requestId: row.request_id,
      subscriptionId: row.subscription_id,
      channel: CHANNEL_TO_PROTO[row.channel],
      status: STATUS_TO_PROTO[status],
      provider: row.provider,
      reason,
      occurredAt: timestampFromDate(at),
      templateId: row.template_id,
      templateVersion: row.template_version,
    });
    await enqueueOutbox(trx, OUTBOX_TABLE, {
      eventId: `result:${row.message_id}:${h?.id}`,
      topic: this.topics.results,
      key: row.message_id,
      payload: toBinary(DeliveryResultSchema, result),
      headers: row.traceparent ? { traceparent: row.traceparent } : {},
    });
  }

  /**
   * Stores new messages; a (request id, channel) already stored is left as it is (the request
   * was delivered again). Returns the rows this call created.
   */
  async accept(messages: NewMessage[], now: Date): Promise<MessageRow[]> {
    if (messages.length === 0) return [];
    return this.knex.transaction(async (trx) => {
      const created: MessageRow[] = [];
      for (const m of messages) {
        const status: MessageStatus = m.deferredBecause ? "deferred" : "queued";
        const rows = await trx("message.messages")
          .insert({
            request_id: m.requestId,
            channel: m.channel,
            subscription_id: m.subscriptionId,
            kind: m.kind,
            template_id: m.templateId,
            template_version: m.templateVersion,
            variables: JSON.stringify(m.variables),
            urgent: m.urgent,
            status,
            reason: m.deferredBecause ?? "",
            send_at: m.sendAt,
            request: m.request ? Buffer.from(m.request) : null,
            source_topic: m.source?.topic ?? null,
            source_partition: m.source?.partition ?? null,
            source_offset: m.source?.offset ?? null,
            traceparent: m.traceparent ?? null,
          })
          .onConflict(["request_id", "channel"])
          .ignore()
          .returning<MessageRow[]>("*");
        const row = rows[0];
        if (!row) continue;
        await this.changed(trx, row, status, m.deferredBecause ?? "", now);
        created.push(row);
      }
      return created;
    });
  }

  async byRequest(requestId: string, channel: ChannelName): Promise<MessageRow | undefined> {
    return this.knex("message.messages").where({ request_id: requestId, channel }).first();
  }

  /**
   * Claims up to `limit` due messages of these channels for one dispatcher (SKIP LOCKED: several
   * run at once). The claim lasts `leaseMs` of database time; a dispatcher that dies leaves it to
   * recoverStale.
   */
  async claimDue(channels: ChannelName[], now: Date, limit: number, leaseMs: number): Promise<MessageRow[]> {
    if (channels.length === 0) return [];
    const { rows } = await this.knex.raw<{ rows: MessageRow[] }>(
      `update message.messages m set status = 'sending', claimed_until = now() + (? * interval '1 millisecond'),
              claim_token = gen_random_uuid(), submitting_at = null, updated_at = now()
        where m.message_id in (
          select message_id from message.messages
           where status in ('queued', 'deferred') and send_at <= ? and channel = any(?)
           order by urgent desc, send_at
           limit ? for update skip locked)
        returning m.*`,
      [leaseMs, now, channels, limit],
    );
    return rows;
  }

  /**
   * About to hand the message to its provider: from here a crash leaves its outcome unknown. Only
   * while this claim still holds (its token, its lease renewed for the send): false means the
   * claim ran out and the message is someone else's now, so it must not be sent.
   */
  async markSubmitting(id: string, claimToken: string, provider: string, leaseMs: number): Promise<boolean> {
    const n = await this.knex("message.messages")
      .where({ message_id: id, status: "sending", claim_token: claimToken })
      .where("claimed_until", ">", this.knex.fn.now())
      .update({
        submitting_at: this.knex.fn.now(),
        claimed_until: this.knex.raw("now() + (? * interval '1 millisecond')", [leaseMs]),
        attempts: this.knex.raw("attempts + 1"),
        provider,
        updated_at: this.knex.fn.now(),
      });
    return n === 1;
  }

  /**
   * Back to waiting until `sendAt` (status deferred with a reason, or queued for a retry), if this
   * claim still holds. `uncount`: the send it made did not reach the provider (no attempt used).
   */
  async requeue(
    id: string,
    claimToken: string | null,
    sendAt: Date,
    status: "queued" | "deferred",
    reason: string,
    now: Date,
    { uncount = false } = {},
  ): Promise<void> {
    await this.knex.transaction(async (trx) => {
      const q = trx("message.messages").where({ message_id: id, status: "sending" });
      if (claimToken) q.where({ claim_token: claimToken });
      const [row] = await q
        .update({
          status,
          send_at: sendAt,
          claimed_until: null,
          claim_token: null,
          submitting_at: null,
          reason,
          updated_at: trx.fn.now(),
          ...(uncount ? { attempts: trx.raw("greatest(attempts - 1, 0)") } : {}),
        })
        .returning<MessageRow[]>("*");
      // Only a visible change is history: a retry is, waiting for a provider to come back is not.
      if (row && (status === "deferred" || reason.startsWith("retry")))
        await this.changed(trx, row, status, reason, now);
    });
  }

  /** Handed over: sent, with the provider's ids of its parts (receipts that came first apply now). */
  async recordSent(id: string, provider: string, providerIds: string[], segments: number, now: Date): Promise<void> {
    await this.knex.transaction(async (trx) => {
      const [row] = await trx("message.messages")
        .where({ message_id: id })
        .whereIn("status", ["sending"])
        .update({ status: "sent", provider, segments, claimed_until: null, reason: "", updated_at: trx.fn.now() })
        .returning<MessageRow[]>("*");
      if (!row) return;
      await this.changed(trx, row, "sent", "", now);
      // An SMSC that answers without ids sends no receipts we could match: the message stays sent.
      if (row.channel === "sms" && providerIds.length > 0 && providerIds.every((p) => p !== "")) {
        await lockParts(trx, providerIds);
        await trx("message.sms_parts")
          .insert(providerIds.map((smsc_message_id, i) => ({ smsc_message_id, message_id: id, part: i + 1 })))
          .onConflict("smsc_message_id")
          .ignore();
        await this.settleSms(trx, id, now);
      }
    });
  }

  /**
   * Fails the message for good; a message made from a notification request dead-letters that
   * request (its original bytes, the reason and where it was read) in the same transaction.
   */
  async fail(id: string, reason: string, now: Date, fromStatus: MessageStatus[] = ["sending"]): Promise<void> {
    await this.knex.transaction(async (trx) => {
      const [row] = await trx("message.messages")
        .where({ message_id: id })
        .whereIn("status", fromStatus)
        .update({ status: "failed", reason, claimed_until: null, updated_at: trx.fn.now() })
        .returning<MessageRow[]>("*");
      if (!row) return;
      await this.changed(trx, row, "failed", reason, now);
      if (row.request) {
        await enqueueOutbox(trx, OUTBOX_TABLE, {
          eventId: `dlq:${row.message_id}`,
          topic: dlqTopic(this.topics.requests),
          key: row.subscription_id,
          payload: row.request,
          headers: {
            [DLQ.reason]: `${row.channel}: ${reason}`,
            [DLQ.sourceTopic]: row.source_topic ?? this.topics.requests,
            [DLQ.sourcePartition]: String(row.source_partition ?? ""),
            [DLQ.sourceOffset]: String(row.source_offset ?? ""),
            [DLQ.consumerGroup]: "message-delivery",
            [DLQ.failedAt]: now.toISOString(),
            "message-id": row.message_id,
            ...(row.traceparent ? { traceparent: row.traceparent } : {}),
          },
        });
      }
    });
  }

  /**
   * Claims whose dispatcher died: never written to the provider → due again; written → outcome
   * unknown: failed (and dead-lettered), never sent a second time.
   */
  async recoverStale(now: Date): Promise<{ requeued: number; unknown: number }> {
    const stale = await this.knex("message.messages")
      .where({ status: "sending" })
      .where("claimed_until", "<", this.knex.fn.now())
      .select<{ message_id: string; submitting_at: Date | null }[]>("message_id", "submitting_at");
    let requeued = 0;
    let unknown = 0;
    for (const s of stale) {
      if (s.submitting_at === null) {
        const n = await this.knex("message.messages")
          .where({ message_id: s.message_id, status: "sending" })
          .whereNull("submitting_at")
          .update({ status: "queued", claimed_until: null, claim_token: null, updated_at: this.knex.fn.now() });
        requeued += n;
      } else {
        await this.fail(s.message_id, "outcome unknown: the sender stopped while handing it to the provider", now);
        unknown++;
      }
    }
    return { requeued, unknown };
  }

  /** A delivery receipt from the SMSC (stored even before its submit is recorded). */
  async applyReceipt(providerId: string, stat: string, now: Date): Promise<void> {
    await this.knex.transaction(async (trx) => {
      await lockParts(trx, [providerId]);
      await trx("message.sms_receipts")
        .insert({ smsc_message_id: providerId, stat })
        .onConflict("smsc_message_id")
        .merge(["stat", "received_at"]);
      const part = await trx("message.sms_parts").where({ smsc_message_id: providerId }).first();
      if (part) await this.settleSms(trx, part.message_id as string, now);
    });
  }

  /** A sent SMS becomes delivered once every part has a DELIVRD receipt, failed on any final failure. */
  private async settleSms(trx: Knex.Transaction, id: string, now: Date): Promise<void> {
    // Receipts of two parts can be stored at once: the message's row lock makes the second wait,
    // and then read the first one's receipt too.
    await trx.raw("select 1 from message.messages where message_id = ? for update", [id]);
    const parts = await trx("message.sms_parts as p")
      .leftJoin("message.sms_receipts as r", "r.smsc_message_id", "p.smsc_message_id")
      .where("p.message_id", id)
      .select<{ stat: string | null }[]>("r.stat");
    if (parts.length === 0) return;
    const failed = parts.find((p) => p.stat && !DELIVERED_STATS.has(p.stat) && !PENDING_STATS.has(p.stat));
    const allDelivered = parts.every((p) => p.stat && DELIVERED_STATS.has(p.stat));
    if (!failed && !allDelivered) return;
    const [row] = await trx("message.messages")
      .where({ message_id: id, status: "sent" })
      .update({
        status: failed ? "failed" : "delivered",
        reason: failed ? `SMSC receipt: ${failed.stat}` : "",
        updated_at: trx.fn.now(),
      })
      .returning<MessageRow[]>("*");
    if (row) {
      await this.changed(trx, row, row.status, row.reason, now);
      messagesTotal.inc({ channel: "sms", provider: row.provider, status: failed ? "undeliverable" : "delivered" });
    }
  }

  /** Cancels a message not yet handed to a provider; undefined when it is unknown. */
  async cancel(id: string, now: Date): Promise<{ row: MessageRow; cancelled: boolean } | undefined> {
    return this.knex.transaction(async (trx) => {
      const [row] = await trx("message.messages")
        .where({ message_id: id })
        .whereIn("status", ["queued", "deferred"])
        .update({ status: "cancelled", reason: "cancelled", updated_at: trx.fn.now() })
        .returning<MessageRow[]>("*");
      if (row) {
        await this.changed(trx, row, "cancelled", "cancelled", now);
        return { row, cancelled: true };
      }
      const current = await trx("message.messages").where({ message_id: id }).first();
      return current ? { row: current as MessageRow, cancelled: false } : undefined;
    });
  }

  async get(id: string): Promise<MessageRow | undefined> {
    return this.knex("message.messages").where({ message_id: id }).first();
  }

  async history(ids: string[]): Promise<Map<string, HistoryRow[]>> {
    const out = new Map<string, HistoryRow[]>();
    if (ids.length === 0) return out;
    const rows = await this.knex("message.message_status_history")
      .whereIn("message_id", ids)
      .orderBy("id")
      .select<(HistoryRow & { message_id: string })[]>("message_id", "status", "at", "reason");
    for (const r of rows) {
      const list = out.get(r.message_id) ?? [];
      list.push({ status: r.status, at: r.at, reason: r.reason });
      out.set(r.message_id, list);
    }
    return out;
  }

  /** A line's messages, newest first, after the (created_at, message_id) of the page token. */
  async listByLine(subscriptionId: string, limit: number, after?: { at: string; id: string }): Promise<MessageRow[]> {
    const q = this.knex("message.messages").where({ subscription_id: subscriptionId });
    // Page tokens carry milliseconds; the database keeps microseconds: compare at the token's precision.
    if (after)
      q.whereRaw("(date_trunc('milliseconds', created_at), message_id) < (?::timestamptz, ?::uuid)", [
        after.at,
        after.id,
      ]);
    return q.orderByRaw("date_trunc('milliseconds', created_at) desc, message_id desc").limit(limit);
  }

  /** The active version of the template named for a channel and locale. */
  async activeTemplate(
    name: string,
    channel: ChannelName,
    locale: string,
  ): Promise<{ template_id: string; version: number } | undefined> {
    return this.knex("message.templates as t")
      .join("message.template_versions as v", "v.template_id", "t.template_id")
      .where({ "t.name": name, "t.channel": channel, "t.locale": locale, "v.status": "active" })
      .first<{ template_id: string; version: number } | undefined>("t.template_id", "v.version");
  }
}
