import nodemailer, { type Transporter } from "nodemailer";
import type { Outcome, Outgoing, Provider, ProviderContext, ProviderModule } from "./provider.js";

/** nodemailer error codes raised before the message was handed over (connect, greeting, TLS, auth). */
const NOT_HANDED_OVER = new Set(["ECONNECTION", "ETIMEDOUT", "ESOCKET", "EDNS", "EPROTOCOL"]);
/** Refused credentials or TLS: retried as transient (they may be fixed), then dead-lettered. */
const REFUSED_SETUP = new Set(["EAUTH", "ETLS"]);

/**
 * E-mail over SMTP (nodemailer, pooled connections). The body is HTML (its variable values were
 * escaped when it was rendered). An SMTP 4xx reply is transient, 5xx permanent; a connection
 * that cannot be made is `unavailable`; a connection lost after DATA leaves the outcome unknown.
 */
class SmtpProvider implements Provider {
  readonly name = "smtp";
  readonly channel = "email" as const;
  private transport: Transporter | undefined;
  private readonly from: string;
  private readonly url: string;
  private lastFailure = 0;

  constructor(ctx: ProviderContext) {
    this.url = ctx.env.MESSAGE_SMTP_URL ?? "smtp://127.0.0.1:2525";
    if (!/^smtps?:\/\//.test(this.url))
      throw new Error("MESSAGE_SMTP_URL must be smtp://[user:pass@]host:port or smtps://…");
    this.from = ctx.env.MESSAGE_SMTP_FROM ?? "Telco <no-reply@telco.example>";
  }

  async start(): Promise<void> {
    this.transport = nodemailer.createTransport(this.url, { pool: true, maxConnections: 4 } as never);
  }

  /** Assumed up; after a connection failure it says no for a second so the dispatcher backs off. */
  available(): boolean {
    return Date.now() - this.lastFailure > 1_000;
  }

  async send(m: Outgoing): Promise<Outcome> {
    if (!this.transport) return { kind: "unavailable", reason: "SMTP transport not started" };
    if (!m.email) return { kind: "permanent", reason: "the customer has no e-mail address" };
    try {
      const info = await this.transport.sendMail({
        from: this.from,
        to: m.email,
        subject: m.subject,
        html: m.body,
        headers: { "X-Telco-Message-Id": m.messageId },
      });
      return { kind: "sent", providerIds: [String(info.messageId ?? "")] };
    } catch (e) {
      const err = e as { code?: string; responseCode?: number; command?: string; message?: string };
      const code = err.responseCode;
      if (code !== undefined && code >= 500)
        return { kind: "permanent", reason: `SMTP ${code} to ${err.command ?? "command"}` };
      if (code !== undefined && code >= 400)
        return { kind: "transient", reason: `SMTP ${code} to ${err.command ?? "command"}` };
      if (err.code && REFUSED_SETUP.has(err.code)) return { kind: "transient", reason: `SMTP ${err.code}` };
      if (err.code && NOT_HANDED_OVER.has(err.code) && err.command !== "DATA" && err.command !== "DATA end") {
        this.lastFailure = Date.now();
        return { kind: "unavailable", reason: `SMTP server not reachable (${err.code})` };
      }
      return { kind: "unknown", reason: `SMTP ${err.code ?? "error"} during ${err.command ?? "send"}` };
    }
  }

  async stop(): Promise<void> {
    this.transport?.close();
    this.transport = undefined;
  }
}

export const provider: ProviderModule = {
  name: "smtp",
  channel: "email",
  settings: {
    MESSAGE_SMTP_URL: "SMTP server, smtp://[user:pass@]host:port (default smtp://127.0.0.1:2525)",
    MESSAGE_SMTP_FROM: 'sender (default "Telco <no-reply@telco.example>")',
  },
  create: (ctx) => new SmtpProvider(ctx),
};
