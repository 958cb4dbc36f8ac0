import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { NotificationKind, NotificationRequestSchema } from "../../../../gen/telco/message/v1/events_pb.js";
import { UsageService } from "../../../../gen/telco/usage/v1/usage_pb.js";
import { createKafka, createProducer, publish } from "../../../kit/src/kafka.js";
import type { Logger } from "../../../kit/src/logger.js";
import { ServiceTokens, unitClient } from "../../../kit/src/unit-client.js";
import type { BatchConfig } from "../config.js";
import { BillingJob, type InvoiceNotice, type NotificationRecord } from "./job.js";

/** The invoice-issued request of an invoice: its id is the send's idempotency key. */
export function invoiceNotice(n: InvoiceNotice): NotificationRecord {
  const request = create(NotificationRequestSchema, {
    requestId: `invoice-issued:${n.subscriptionId}:${n.month}`,
    subscriptionId: n.subscriptionId,
    kind: NotificationKind.INVOICE_ISSUED,
    requestedAt: timestampNow(),
    detail: {
      case: "invoiceIssued",
      value: {
        invoiceId: n.invoiceId,
        month: n.month,
        total: { currencyCode: "KRW", amountMinor: n.totalKrw },
        dueDate: n.dueDate,
      },
    },
  });
  return { key: n.subscriptionId, value: toBinary(NotificationRequestSchema, request), headers: {} };
}

/**
 * The billing job with its real parts: a PostgreSQL pool of its own (partitions + 2), the usage
 * unit's generated client for the month's totals, a Kafka producer for the bill messages.
 */
export async function createBillingJob(
  config: BatchConfig,
  logger: Logger,
  opts: { partitions?: number } = {},
): Promise<{ job: BillingJob; close(): Promise<void> }> {
  const partitions = opts.partitions ?? config.BATCH_PARTITIONS;
  const pool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: Math.max(config.BATCH_DB_POOL_MAX, partitions + 2),
    application_name: "batch-billing",
  });
  const tokens = await ServiceTokens.create(config.SERVICE_SIGNING_KEY, "batch");
  const usage = unitClient(UsageService, config.USAGE_URL, tokens);
  const kafka = createKafka({ brokers: config.KAFKA_BROKERS, clientId: "batch", logger });
  const producer = await createProducer(kafka, { maxInFlightRequests: 5 });
  const job = new BillingJob({
    pool,
    logger,
    timeZone: config.TIME_ZONE,
    partitions,
    chunkSize: config.BATCH_CHUNK_SIZE,
    leaseMs: config.BATCH_LEASE_MS,
    heartbeatMs: config.BATCH_HEARTBEAT_MS,
    dueDay: config.BILLING_DUE_DAY,
    usageTotals: async function* (month) {
      for await (const page of usage.streamMonthTotals({ month, pageSize: 10_000 })) yield page.totals;
    },
    notice: invoiceNotice,
    async publish(records) {
      await publish(producer, [
        {
          topic: config.NOTIFICATION_TOPIC,
          messages: records.map((r) => ({ key: r.key, value: Buffer.from(r.value), headers: r.headers })),
        },
      ]);
    },
    async closeUsageMonth(month) {
      await usage.closeMonth({ month });
    },
    lateUsage: async function* () {
      for await (const page of usage.streamLateUsage({ pageSize: 10_000 })) yield page.usage;
    },
  });
  return {
    job,
    async close() {
      await producer.disconnect().catch(() => {});
      await pool.end();
    },
  };
}
