import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { SubscriptionService } from "../../../../gen/telco/domain/v1/subscription_pb.js";
import type { Logger } from "../../../kit/src/logger.js";
import { contextFromTraceparent, inSpan, SpanKind } from "../../../kit/src/telemetry.js";
import { messagesTotal, rateLimitWaitSeconds, rateLimitWaits, submitDuration } from "../metrics.js";
import type { Provider } from "../providers/provider.js";
import { countSms } from "../sms/segments.js";
import type { MessageRow, MessageStore } from "../store/message-store.js";
import type { ChannelName, TemplateStore, TemplateVersionRow } from "../store/template-store.js";
import { RenderError, renderTemplate } from "../templates/render.js";
import type { Limits, RateLimit } from "./limits.js";
import type { Clock, QuietWindow, ZonedTime } from "./quiet-hours.js";

export interface DispatcherOptions {
  store: MessageStore;
  templates: TemplateStore;
  limits: Limits;
  providers: Map<ChannelName, Provider>;
  domain: Client<typeof SubscriptionService>;
  clock: Clock;
  zone: ZonedTime;
  quiet: QuietWindow | undefined;
  rates: Record<ChannelName, RateLimit>;
  dailyCap: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  smsMaxSegments: number;
  concurrency: number;
  pollMs: number;
  leaseMs: number;
  logger: Logger;
}

/** Delay before retry n (1-based): exponential, capped, with "equal jitter" (half fixed, half random). */
export function retryDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (exp / 2) * random());
}

/**
 * Sends the messages that are due. Claims them from PostgreSQL (SKIP LOCKED: several dispatchers
 * share the work), then per message: quiet hours and the line's daily cap (deferred, no attempt
 * used), the recipient from the domain unit, the pinned template version rendered, the
 * provider's rate slot (GCRA in Redis), and only then the send, recorded as "submitting" first so
 * that a crash during it is never followed by a second send.
 */
export class Dispatcher {
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stop$ = new AbortController();
  private wakeUp: (() => void) | undefined;
  private lastRecovery = 0;
  private readonly log: Logger;
  /** Counts since start, for logs, benchmarks and tests. */
  readonly stats = { sent: 0, failed: 0, retried: 0, deferred: 0, unknown: 0 };

  constructor(private readonly o: DispatcherOptions) {
    this.log = o.logger.child({ component: "dispatcher" });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Something became due (a new urgent message): look now instead of after the poll pause. */
  wake(): void {
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stop$.abort();
    this.wake();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        if (Date.now() - this.lastRecovery > 5_000) {
          this.lastRecovery = Date.now();
          const r = await this.o.store.recoverStale(new Date(this.o.clock.now()));
          if (r.requeued + r.unknown > 0) this.log.warn(r, "recovered the claims of a stopped dispatcher");
        }
        const free = this.o.concurrency - this.inFlight.size;
        const channels = [...this.o.providers.entries()].filter(([, p]) => p.available()).map(([c]) => c);
        const rows =
          free > 0 ? await this.o.store.claimDue(channels, new Date(this.o.clock.now()), free, this.o.leaseMs) : [];
        for (const row of rows) {
          const job = this.process(row).catch((e) => {
            this.log.error({ message_id: row.message_id, err: (e as Error).message }, "dispatching a message failed");
          });
          this.inFlight.add(job);
          void job.finally(() => {
            this.inFlight.delete(job);
            this.wake();
          });
        }
        if (rows.length === 0 || this.inFlight.size >= this.o.concurrency) await this.pause(this.o.pollMs);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, "dispatch round failed; retrying");
        await this.pause(1_000);
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  /** Stored versions never change (the database refuses it), so each is read once. */
  private readonly versions = new Map<string, Promise<TemplateVersionRow | undefined>>();
  private version(id: string, version: number): Promise<TemplateVersionRow | undefined> {
    const key = `${id}:${version}`;
    let v = this.versions.get(key);
    if (!v) {
      v = this.o.templates.get(id, version);
      if (this.versions.size > 10_000) this.versions.clear();
      this.versions.set(key, v);
      void v.then(
        (r) => r ?? this.versions.delete(key),
        () => this.versions.delete(key),
      );
    }
    return v;
  }

  private now(): Date {
    return new Date(this.o.clock.now());
  }

  /**
   * `as`: the metric's status when it differs: a message failed before the provider saw it (no
   * recipient, a template that does not render, too many segments) is "rejected", so that the
   * provider's failure rate counts only what the provider refused.
   */
  private count(row: MessageRow, status: keyof Dispatcher["stats"], as: string = status): void {
    this.stats[status]++;
    const provider = this.o.providers.get(row.channel)?.name ?? "none";
    messagesTotal.inc({ channel: row.channel, provider, status: as });
  }

  /**
   * One claimed message, in a span continuing the trace of the request it came from (its
   * domain lookup and the provider's submit are child spans).
   */
  private process(row: MessageRow): Promise<void> {
    return inSpan(
      "message dispatch",
      {
        kind: SpanKind.INTERNAL,
        parent: contextFromTraceparent(row.traceparent ?? undefined),
        attributes: { "message.id": row.message_id, "message.channel": row.channel, "message.kind": row.kind },
      },
      () => this.dispatch(row),
    );
  }

  /** One claimed message to its end (sent, failed) or back to waiting. */
  private async dispatch(row: MessageRow): Promise<void> {
    const { store } = this.o;
    const provider = this.o.providers.get(row.channel);
    if (!provider) {
      await store.fail(row.message_id, `no provider for channel ${row.channel}`, this.now());
      return;
    }
    const nowMs = this.o.clock.now();
    // Quiet hours: non-urgent messages wait for the morning.
    const until = row.urgent ? undefined : this.o.zone.quietUntil(nowMs, this.o.quiet);
    if (until !== undefined) {
      this.count(row, "deferred");
      await store.requeue(row.message_id, row.claim_token, new Date(until), "deferred", "quiet hours", this.now());
      return;
    }
    // Recipient and text before any limit is spent on it.
    let contact: { phoneNumber: string; email: string; name: string };
    try {
      contact = await this.o.domain.getLineContact(
        { subscriptionId: row.subscription_id },
        { timeoutMs: Math.min(10_000, this.o.leaseMs / 4) },
      );
    } catch (e) {
      const err = ConnectError.from(e);
      if (err.code === Code.NotFound || err.code === Code.InvalidArgument) {
        await store.fail(row.message_id, `recipient: ${err.rawMessage}`, this.now());
        this.count(row, "failed", "rejected");
      } else {
        // The domain unit is not answering: try again shortly, no attempt used.
        await store.requeue(row.message_id, row.claim_token, new Date(nowMs + 2_000), "queued", "", this.now());
      }
      return;
    }
    const version = await this.version(row.template_id, row.template_version);
    if (!version) {
      await store.fail(
        row.message_id,
        `template ${row.template_id} version ${row.template_version} is gone`,
        this.now(),
      );
      return;
    }
    let subject: string;
    let body: string;
    try {
      ({ subject, body } = renderTemplate(version, { user_name: contact.name, ...row.variables }));
    } catch (e) {
      if (!(e instanceof RenderError)) throw e;
      this.count(row, "failed", "rejected");
      await store.fail(row.message_id, e.message, this.now());
      return;
    }
    if (row.channel === "sms") {
      const c = countSms(body, this.o.smsMaxSegments);
      if (!c.fits) {
        this.count(row, "failed", "rejected");
        await store.fail(
          row.message_id,
          `text needs ${c.segments} SMS segments; at most ${this.o.smsMaxSegments}`,
          this.now(),
        );
        return;
      }
    }
    // The line's cap of the day (carrier time zone): over it, the message waits for tomorrow.
    const day = this.o.zone.day(nowMs);
    if (!(await this.o.limits.takeDaily(row.subscription_id, row.channel, day, this.o.dailyCap))) {
      this.count(row, "deferred");
      const resume = this.o.zone.nextDayAt(nowMs, this.o.quiet?.endMin ?? 0);
      await store.requeue(
        row.message_id,
        row.claim_token,
        new Date(resume),
        "deferred",
        "daily cap reached",
        this.now(),
      );
      return;
    }
    /** Not sent after all: the day's cap gets its send back. */
    const giveBack = () => this.o.limits.giveBackDaily(row.subscription_id, row.channel, day, this.o.dailyCap);
    try {
      // One rate slot per submit: a concatenated SMS is one submit_sm per part. The wait is
      // bounded well inside the claim's lease (else the claim could run out before the send).
      const slots = row.channel === "sms" ? countSms(body, this.o.smsMaxSegments).segments : 1;
      const waitedMs = await this.o.limits.acquire(provider.name, this.o.rates[row.channel], this.stop$.signal, {
        slots,
        maxWaitMs: this.o.leaseMs / 2,
      });
      if (waitedMs > 0) {
        rateLimitWaits.inc({ channel: row.channel, provider: provider.name });
        rateLimitWaitSeconds.inc({ channel: row.channel, provider: provider.name }, waitedMs / 1000);
      }
    } catch {
      // Stopping, or the provider is too busy to get a slot within the lease: nothing was
      // written to it, so the message is simply due again.
      await giveBack();
      await store.requeue(row.message_id, row.claim_token, this.now(), "queued", "", this.now());
      return;
    }
    if (
      !row.claim_token ||
      !(await store.markSubmitting(row.message_id, row.claim_token, provider.name, this.o.leaseMs))
    ) {
      // The claim ran out (a stall longer than the lease): another dispatcher may have it now.
      await giveBack();
      this.log.warn({ message_id: row.message_id }, "claim ran out before the send; left to its new claim");
      return;
    }
    const timer = submitDuration.startTimer({ channel: row.channel, provider: provider.name });
    const outcome = await provider.send({
      messageId: row.message_id,
      subscriptionId: row.subscription_id,
      phoneNumber: contact.phoneNumber,
      email: contact.email,
      subject,
      body,
    });
    timer();
    this.log.debug(
      { message_id: row.message_id, channel: row.channel, provider: provider.name, outcome: outcome.kind },
      "provider send",
    );
    const at = this.now();
    switch (outcome.kind) {
      case "sent":
        this.count(row, "sent");
        // It went out: recording it must not give up on a passing database error (the claim's
        // recovery would then call it unknown), so it is tried a few times.
        for (let attempt = 1; ; attempt++) {
          try {
            await store.recordSent(row.message_id, provider.name, outcome.providerIds, outcome.segments ?? 0, at);
            return;
          } catch (e) {
            if (attempt >= 5) throw e;
            await new Promise((r) => setTimeout(r, 200 * attempt));
          }
        }
      case "unavailable":
        // Not handed over: due again once the provider is back; the attempt does not count.
        await giveBack();
        await store.requeue(row.message_id, null, at, "queued", "", at, { uncount: true });
        return;
      case "transient": {
        const attempts = row.attempts + 1;
        if (attempts >= this.o.maxAttempts) {
          this.count(row, "failed");
          await store.fail(row.message_id, `${outcome.reason}; gave up after ${attempts} attempts`, at);
          return;
        }
        this.count(row, "retried");
        await giveBack();
        const delay = retryDelay(attempts, this.o.retryBaseMs, this.o.retryMaxMs);
        await store.requeue(
          row.message_id,
          row.claim_token,
          new Date(at.getTime() + delay),
          "queued",
          `retry ${attempts}: ${outcome.reason}`,
          at,
        );
        return;
      }
      case "permanent":
        this.count(row, "failed");
        await store.fail(row.message_id, outcome.reason, at);
        return;
      case "unknown":
        this.count(row, "unknown");
        await store.fail(row.message_id, `outcome unknown: ${outcome.reason}`, at);
        return;
    }
  }
}
