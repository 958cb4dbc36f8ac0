import { toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Kafka, Producer } from "kafkajs";
import {
  Channel,
  NotificationKind,
  type NotificationRequest,
  NotificationRequestSchema,
} from "../../../../gen/telco/message/v1/events_pb.js";
import { ID_RE } from "../../../kit/src/errors.js";
import { type Decoded, ProtoConsumer, type Rejection } from "../../../kit/src/kafka.js";
import type { Logger } from "../../../kit/src/logger.js";
import { messagesAccepted } from "../metrics.js";
import type { KindName, MessageStore, NewMessage } from "../store/message-store.js";
import type { ChannelName } from "../store/template-store.js";
import type { Clock, QuietWindow, ZonedTime } from "./quiet-hours.js";

const CHANNEL_NAMES: Partial<Record<Channel, ChannelName>> = {
  [Channel.SMS]: "sms",
  [Channel.EMAIL]: "email",
  [Channel.PUSH]: "push",
};

/** Channels a kind goes to when the request names none. */
export const DEFAULT_CHANNELS: Record<KindName, ChannelName[]> = {
  usage_threshold: ["sms"],
  welcome: ["sms"],
  invoice_issued: ["email"],
  direct: [],
};

const LEVELS = new Set([50, 80, 100]);
const REQUEST_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const LOCALE_RE = /^[a-z]{2,3}(-[A-Z]{2})?$/;

/** The template a request of this kind uses, by name (one per channel and locale). */
export function templateName(req: NotificationRequest): string | undefined {
  switch (req.detail.case) {
    case "usageThreshold":
      return `usage-threshold-${req.detail.value.level}`;
    case "welcome":
      return "welcome";
    case "invoiceIssued":
      return "invoice-issued";
    default:
      return undefined;
  }
}

function kindOf(req: NotificationRequest): KindName | undefined {
  switch (req.kind) {
    case NotificationKind.USAGE_THRESHOLD:
      return "usage_threshold";
    case NotificationKind.WELCOME:
      return "welcome";
    case NotificationKind.INVOICE_ISSUED:
      return "invoice_issued";
    default:
      return undefined;
  }
}

const DETAIL_OF_KIND: Record<KindName, string> = {
  usage_threshold: "usageThreshold",
  welcome: "welcome",
  invoice_issued: "invoiceIssued",
  direct: "",
};

/** Why a request cannot become messages (dead-lettered), or undefined when it is well formed. */
export function checkRequest(req: NotificationRequest): string | undefined {
  if (!REQUEST_ID_RE.test(req.requestId)) return "request_id: required, letters, digits and . _ : - (at most 200)";
  if (!ID_RE.test(req.subscriptionId)) return "subscription_id: required, a line id";
  const kind = kindOf(req);
  if (!kind) return `kind: unknown notification kind ${req.kind}`;
  if (req.detail.case !== DETAIL_OF_KIND[kind])
    return `detail: a ${kind} request needs its ${DETAIL_OF_KIND[kind]} detail`;
  if (req.detail.case === "usageThreshold") {
    const d = req.detail.value;
    if (!LEVELS.has(d.level)) return `usage_threshold.level: 50, 80 or 100 (got ${d.level})`;
    if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(d.month)) return "usage_threshold.month: YYYY-MM";
  }
  if (req.detail.case === "invoiceIssued") {
    const d = req.detail.value;
    if (!d.invoiceId) return "invoice_issued.invoice_id: required";
    if (!d.total || d.total.currencyCode === "") return "invoice_issued.total: required";
  }
  for (const c of req.channels) if (!CHANNEL_NAMES[c]) return `channels: unknown channel ${c}`;
  if (req.locale !== "" && !LOCALE_RE.test(req.locale))
    return `locale: a BCP 47 tag such as ko-KR (got ${JSON.stringify(req.locale)})`;
  for (const name of Object.keys(req.variables)) {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(name)) return `variables: ${JSON.stringify(name)} is not a variable name`;
  }
  return undefined;
}

/** The template variables a request carries in its detail, as text. */
export function variablesOf(req: NotificationRequest): Record<string, string> {
  const out: Record<string, string> = {};
  switch (req.detail.case) {
    case "usageThreshold": {
      const d = req.detail.value;
      Object.assign(out, {
        month: d.month,
        level: String(d.level),
        used_bytes: String(d.usedBytes),
        quota_bytes: String(d.quotaBytes),
      });
      break;
    }
    case "welcome": {
      const d = req.detail.value;
      out.plan_id = d.planId;
      if (d.activatedAt) out.activated_at = timestampDate(d.activatedAt).toISOString().slice(0, 10);
      break;
    }
    case "invoiceIssued": {
      const d = req.detail.value;
      Object.assign(out, {
        invoice_id: d.invoiceId,
        month: d.month,
        total: String(d.total?.amountMinor ?? 0n),
        currency: d.total?.currencyCode ?? "",
        due_date: d.dueDate,
      });
      break;
    }
  }
  // What the producer put in variables wins over what is derived.
  return { ...out, ...req.variables };
}

export interface IntakeOptions {
  kafka: Kafka;
  producer: Producer;
  store: MessageStore;
  topic: string;
  groupId: string;
  logger: Logger;
  clock: Clock;
  zone: ZonedTime;
  quiet: QuietWindow | undefined;
  defaultLocale: string;
  /** Called after messages were stored (the dispatcher in this process looks at once). */
  onAccepted?: (count: number) => void;
  fromBeginning?: boolean;
}

/**
 * The consumer of notification.requests: turns each request into one message per channel with
 * the exact template version active now, in one transaction per batch, before the offsets are
 * committed. The (request id, channel) unique key makes a redelivered request change nothing.
 * Requests that cannot become messages go to notification.requests.dlq with the reason.
 */
export class Intake {
  readonly consumer: ProtoConsumer<typeof NotificationRequestSchema>;

  constructor(private readonly o: IntakeOptions) {
    this.consumer = new ProtoConsumer({
      kafka: o.kafka,
      groupId: o.groupId,
      topic: o.topic,
      schemas: [NotificationRequestSchema],
      producer: o.producer,
      logger: o.logger,
      fromBeginning: o.fromBeginning ?? true,
      validate: (req) => checkRequest(req),
      handle: (records) => this.handle(records),
    });
  }

  start(): Promise<void> {
    return this.consumer.start();
  }

  stop(): Promise<void> {
    return this.consumer.consumer.disconnect();
  }

  private async handle(records: Decoded<NotificationRequest>[]): Promise<Rejection<NotificationRequest>[]> {
    const rejected: Rejection<NotificationRequest>[] = [];
    const messages: NewMessage[] = [];
    const nowMs = this.o.clock.now();
    const templates = new Map<string, { template_id: string; version: number } | undefined>();
    for (const record of records) {
      const req = record.value;
      const kind = kindOf(req) as KindName;
      const name = templateName(req) as string;
      const channels =
        req.channels.length > 0
          ? [...new Set(req.channels.map((c) => CHANNEL_NAMES[c] as ChannelName))]
          : DEFAULT_CHANNELS[kind];
      const missing: string[] = [];
      for (const channel of channels) {
        const locales = [req.locale || this.o.defaultLocale, this.o.defaultLocale];
        let tpl: { template_id: string; version: number } | undefined;
        for (const locale of locales) {
          const key = `${name}|${channel}|${locale}`;
          if (!templates.has(key)) templates.set(key, await this.o.store.activeTemplate(name, channel, locale));
          tpl = templates.get(key);
          if (tpl) break;
        }
        if (!tpl) {
          missing.push(`no active ${channel} template "${name}" for ${locales[0]}`);
          continue;
        }
        const quietUntil = req.urgent ? undefined : this.o.zone.quietUntil(nowMs, this.o.quiet);
        messages.push({
          requestId: req.requestId,
          channel,
          subscriptionId: req.subscriptionId,
          kind,
          templateId: tpl.template_id,
          templateVersion: tpl.version,
          variables: variablesOf(req),
          urgent: req.urgent,
          sendAt: new Date(quietUntil ?? nowMs),
          deferredBecause: quietUntil !== undefined ? "quiet hours" : undefined,
          request: toBinary(NotificationRequestSchema, req),
          source: { topic: this.o.topic, partition: record.partition, offset: record.offset },
          traceparent: record.headers.traceparent,
        });
      }
      if (missing.length > 0) rejected.push({ record, reason: missing.join("; ") });
    }
    const created = await this.o.store.accept(messages, new Date(nowMs));
    for (const m of created) messagesAccepted.inc({ channel: m.channel });
    if (created.length > 0) this.o.onAccepted?.(created.length);
    return rejected;
  }
}
