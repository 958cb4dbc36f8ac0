import type { Outcome, Outgoing, Provider, ProviderContext, ProviderModule } from "./provider.js";

/**
 * Push as an FCM-style HTTP request (the FCM HTTP v1 `messages:send` body) to a configurable
 * endpoint. Devices subscribe to their line's topic ("line-<subscription_id>"), so the platform
 * keeps no device tokens. 2xx = sent (the answer's `name` is the id); 429 and 5xx transient; other
 * 4xx permanent; no connection = unavailable; a timeout after the request went out = unknown.
 */
class PushProvider implements Provider {
  readonly name = "fcm";
  readonly channel = "push" as const;
  private readonly url: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private lastFailure = 0;

  constructor(ctx: ProviderContext) {
    this.url = ctx.env.MESSAGE_PUSH_URL ?? "http://127.0.0.1:8090/v1/projects/telco/messages:send";
    if (!/^https?:\/\//.test(this.url)) throw new Error("MESSAGE_PUSH_URL must be an http(s) URL");
    this.token = ctx.env.MESSAGE_PUSH_TOKEN ?? "";
    this.timeoutMs = Number(ctx.env.MESSAGE_PUSH_TIMEOUT_MS ?? 10_000);
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new Error("MESSAGE_PUSH_TIMEOUT_MS must be a positive integer of milliseconds");
    }
  }

  async start(): Promise<void> {}

  available(): boolean {
    return Date.now() - this.lastFailure > 1_000;
  }

  async send(m: Outgoing): Promise<Outcome> {
    const body = JSON.stringify({
      message: {
        topic: `line-${m.subscriptionId}`,
        notification: { title: m.subject, body: m.body },
        data: { message_id: m.messageId },
      },
    });
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      if (cause === "ECONNREFUSED" || cause === "ENOTFOUND" || cause === "EHOSTUNREACH") {
        this.lastFailure = Date.now();
        return { kind: "unavailable", reason: `push endpoint not reachable (${cause})` };
      }
      return { kind: "unknown", reason: `push request failed: ${(e as Error).name}` };
    }
    const text = await res.text().catch(() => "");
    if (res.ok) {
      let name = "";
      try {
        name = String((JSON.parse(text) as { name?: string }).name ?? "");
      } catch {}
      return { kind: "sent", providerIds: [name] };
    }
    if (res.status === 429 || res.status >= 500)
      return { kind: "transient", reason: `push endpoint answered ${res.status}` };
    return { kind: "permanent", reason: `push endpoint refused: ${res.status}` };
  }

  async stop(): Promise<void> {}
}

export const provider: ProviderModule = {
  name: "fcm",
  channel: "push",
  settings: {
    MESSAGE_PUSH_URL: "FCM-style endpoint (default http://127.0.0.1:8090/v1/projects/telco/messages:send)",
    MESSAGE_PUSH_TOKEN: "bearer token for it (a Secret in the cluster)",
    MESSAGE_PUSH_TIMEOUT_MS: "request timeout (default 10000)",
  },
  create: (ctx) => new PushProvider(ctx),
};
