import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { NotificationKind } from "../../../../gen/telco/message/v1/events_pb.js";
import {
  type CancelMessageRequest,
  CancelMessageResponseSchema,
  type GetMessageRequest,
  GetMessageResponseSchema,
  type ListMessagesRequest,
  ListMessagesResponseSchema,
  type Message,
  MessageSchema,
  type MessageService,
  type SendMessageRequest,
  SendMessageResponseSchema,
} from "../../../../gen/telco/message/v1/message_pb.js";
import { assertLineAccess, principalOf } from "../../../kit/src/auth.js";
import { ID_RE, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import { trace, traceparentOf } from "../../../kit/src/telemetry.js";
import type { Clock, QuietWindow, ZonedTime } from "../delivery/quiet-hours.js";
import { messagesAccepted } from "../metrics.js";
import {
  CHANNEL_TO_PROTO,
  type HistoryRow,
  type MessageRow,
  type MessageStore,
  STATUS_TO_PROTO,
} from "../store/message-store.js";
import type { TemplateStore } from "../store/template-store.js";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const REQUEST_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const KIND_TO_PROTO = {
  usage_threshold: NotificationKind.USAGE_THRESHOLD,
  welcome: NotificationKind.WELCOME,
  invoice_issued: NotificationKind.INVOICE_ISSUED,
  direct: NotificationKind.UNSPECIFIED,
} as const;
/** How far ahead a message may be scheduled. */
const MAX_SCHEDULE_MS = 366 * 86_400_000;

export interface MessageServiceDeps {
  messages: MessageStore;
  templates: TemplateStore;
  clock: Clock;
  zone: ZonedTime;
  quiet: QuietWindow | undefined;
  /** A message accepted for now: the dispatcher of this process may look at once. */
  onAccepted?: () => void;
}

export function toMessage(r: MessageRow, history: HistoryRow[] = [], templateName = ""): Message {
  return create(MessageSchema, {
    messageId: r.message_id,
    requestId: r.request_id,
    subscriptionId: r.subscription_id,
    channel: CHANNEL_TO_PROTO[r.channel],
    kind: KIND_TO_PROTO[r.kind],
    templateId: r.template_id,
    templateName,
    templateVersion: r.template_version,
    status: STATUS_TO_PROTO[r.status],
    urgent: r.urgent,
    sendAt: timestampFromDate(r.send_at),
    provider: r.provider,
    attempts: r.attempts,
    reason: r.reason,
    createdAt: timestampFromDate(r.created_at),
    segments: r.segments,
    cancellable: r.status === "queued" || r.status === "deferred",
    history: history.map((h) => ({ status: STATUS_TO_PROTO[h.status], at: timestampFromDate(h.at), reason: h.reason })),
  });
}

export class MessageServiceImpl implements ServiceImpl<typeof MessageService> {
  constructor(private readonly d: MessageServiceDeps) {}

  private async answer(row: MessageRow): Promise<Message> {
    const [history, tpl] = await Promise.all([
      this.d.messages.history([row.message_id]),
      this.d.templates.get(row.template_id, row.template_version),
    ]);
    return toMessage(row, history.get(row.message_id), tpl?.name ?? "");
  }

  async sendMessage(req: SendMessageRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(REQUEST_ID_RE.test(req.requestId), "request_id", "required: 1-200 letters, digits or . _ : -");
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", "required: a line id");
    v.check(UUID_RE.test(req.templateId), "template_id", "required: a UUID");
    for (const name of Object.keys(req.variables)) {
      if (!/^[a-z][a-z0-9_]{0,63}$/.test(name))
        v.add(`variables[${JSON.stringify(name).slice(0, 70)}]`, "not a variable name");
    }
    const nowMs = this.d.clock.now();
    let sendAtMs = nowMs;
    if (req.sendAt) {
      sendAtMs = timestampDate(req.sendAt).getTime();
      v.check(Number.isFinite(sendAtMs), "send_at", "not a valid time");
      v.check(sendAtMs <= nowMs + MAX_SCHEDULE_MS, "send_at", "at most 366 days ahead");
      if (sendAtMs < nowMs) sendAtMs = nowMs;
    }
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const version = await this.d.templates.get(req.templateId, req.templateVersion);
    if (!version) {
      throw notFound(
        req.templateVersion > 0
          ? `template ${req.templateId} version ${req.templateVersion}`
          : `template ${req.templateId}`,
      );
    }
    if (req.templateVersion === 0 && version.status !== "active") {
      throw new ConnectError(
        `template ${req.templateId} has no active version; publish one or name a version`,
        Code.FailedPrecondition,
      );
    }
    // Scheduled or not, quiet hours apply when it becomes due; a message due inside them now waits.
    const quiet = req.urgent ? undefined : this.d.zone.quietUntil(sendAtMs, this.d.quiet);
    const existing = await this.d.messages.byRequest(req.requestId, version.channel);
    if (existing) {
      if (existing.subscription_id !== req.subscriptionId || existing.template_id !== req.templateId) {
        throw new ConnectError(`request_id ${req.requestId} was already used for another message`, Code.AlreadyExists);
      }
      return create(SendMessageResponseSchema, { message: await this.answer(existing) });
    }
    await this.d.messages.accept(
      [
        {
          requestId: req.requestId,
          channel: version.channel,
          subscriptionId: req.subscriptionId,
          kind: "direct",
          templateId: version.template_id,
          templateVersion: version.version,
          variables: { ...req.variables },
          urgent: req.urgent,
          sendAt: new Date(quiet ?? sendAtMs),
          deferredBecause: quiet !== undefined ? "quiet hours" : undefined,
          // The SendMessage span's own context: the dispatch continues this call's trace.
          traceparent: traceparentOf(trace.getActiveSpan()) || (ctx.requestHeader.get("traceparent") ?? undefined),
        },
      ],
      new Date(nowMs),
    );
    const row = await this.d.messages.byRequest(req.requestId, version.channel);
    if (!row) throw new ConnectError("message vanished after it was stored", Code.Internal);
    messagesAccepted.inc({ channel: row.channel });
    if (row.send_at.getTime() <= nowMs) this.d.onAccepted?.();
    return create(SendMessageResponseSchema, { message: await this.answer(row) });
  }

  private async visible(id: string, ctx: HandlerContext): Promise<MessageRow> {
    const v = new Violations();
    v.check(UUID_RE.test(id), "message_id", "required: a UUID");
    v.throwIfAny();
    const row = await this.d.messages.get(id);
    if (!row) throw notFound(`message ${id}`);
    assertLineAccess(principalOf(ctx), row.subscription_id);
    return row;
  }

  async cancelMessage(req: CancelMessageRequest, ctx: HandlerContext) {
    await this.visible(req.messageId, ctx);
    const r = await this.d.messages.cancel(req.messageId, new Date(this.d.clock.now()));
    if (!r) throw notFound(`message ${req.messageId}`);
    if (!r.cancelled) {
      throw new ConnectError(
        `message ${req.messageId} is ${r.row.status}: only a queued or deferred message can be cancelled`,
        Code.FailedPrecondition,
      );
    }
    return create(CancelMessageResponseSchema, { message: await this.answer(r.row) });
  }

  async getMessage(req: GetMessageRequest, ctx: HandlerContext) {
    const row = await this.visible(req.messageId, ctx);
    return create(GetMessageResponseSchema, { message: await this.answer(row) });
  }

  async listMessages(req: ListMessagesRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", "required: a line id");
    const limit = pageSize(req.pageSize, 50, 200, v);
    let after: { at: string; id: string } | undefined;
    if (req.pageToken !== "") {
      try {
        const t = JSON.parse(Buffer.from(req.pageToken, "base64url").toString("utf8")) as {
          at?: unknown;
          id?: unknown;
        };
        if (
          typeof t.at !== "string" ||
          typeof t.id !== "string" ||
          !UUID_RE.test(t.id) ||
          Number.isNaN(Date.parse(t.at))
        )
          throw new Error("bad token");
        after = { at: t.at, id: t.id };
      } catch {
        v.add("page_token", "not a token this RPC returned");
      }
    }
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const rows = await this.d.messages.listByLine(req.subscriptionId, limit + 1, after);
    const page = rows.slice(0, limit);
    const history = await this.d.messages.history(page.map((r) => r.message_id));
    // The templates' names (a template keeps its name across versions): one read per template.
    const names = new Map<string, string>();
    await Promise.all(
      [...new Map(page.map((r) => [r.template_id, r.template_version])).entries()].map(async ([id, version]) => {
        names.set(id, (await this.d.templates.get(id, version))?.name ?? "");
      }),
    );
    const last = page.at(-1);
    return create(ListMessagesResponseSchema, {
      messages: page.map((r) => toMessage(r, history.get(r.message_id), names.get(r.template_id) ?? "")),
      nextPageToken:
        rows.length > limit && last
          ? Buffer.from(JSON.stringify({ at: last.created_at.toISOString(), id: last.message_id })).toString(
              "base64url",
            )
          : "",
    });
  }
}
