import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import smpp, { type PDU, type Server, type Session } from "smpp";
import { SMTPServer } from "smtp-server";

/** One submit_sm as the SMSC received it. */
export interface Submitted {
  at: number;
  messageId: string;
  destination: string;
  dataCoding: number;
  esmClass: number;
  /** The text of the part (UDH stripped), decoded. */
  text: string;
  udh: Buffer | undefined;
}

/**
 * A real SMSC for tests, the `smpp` package's server side: binds transceivers, answers submit_sm
 * (ok, or a refusal chosen per destination), sends a delivery receipt (deliver_sm) per accepted
 * part, and can go down (listener closed, sessions dropped) and come back on the same port.
 * Like a real SMSC it keeps a receipt until the ESME answers it with deliver_sm_resp: a receipt
 * whose session closed first (the client killed, the SMSC down) is sent again on a bound session
 * (another one, or the next to bind); one answered with an error, again a second later.
 */
export class TestSmsc {
  readonly submitted: Submitted[] = [];
  private server: Server | undefined;
  private readonly sessions = new Set<Session>();
  /** Sessions that have bound: the ones receipts can go to. */
  private readonly bound = new Set<Session>();
  port = 0;
  private next = 1;
  /** Destination (international digits) → SMPP command_status to answer; 0x58 throttled, 0x0b invalid. */
  readonly refuse = new Map<string, number>();
  /** Receipt stat per destination (default DELIVRD); "none" sends no receipt. */
  readonly receiptStat = new Map<string, string>();
  receiptDelayMs = 20;
  /**
   * Receipts not yet answered, by message id: due once its delay is over, with the session it was
   * last sent on (undefined: waiting for one).
   */
  private readonly unanswered = new Map<
    string,
    { fields: Record<string, unknown>; due: boolean; on: Session | undefined }
  >();
  /** The message ids whose receipt went out again (its session closed, or the ESME refused it). */
  readonly receiptsResent = new Set<string>();

  async start(port = 0): Promise<void> {
    const server = smpp.createServer({}, (session: Session) => {
      this.sessions.add(session);
      session.on("close", () => {
        this.sessions.delete(session);
        this.bound.delete(session);
        for (const r of this.unanswered.values()) if (r.on === session) r.on = undefined;
        this.resendReceipts();
      });
      session.on("error", () => {});
      session.on("bind_transceiver", (pdu: PDU) => {
        session.send(pdu.response());
        this.bound.add(session);
        this.resendReceipts();
      });
      session.on("enquire_link", (pdu: PDU) => session.send(pdu.response()));
      session.on("unbind", (pdu: PDU) => {
        session.send(pdu.response());
        session.close();
      });
      session.on("deliver_sm_resp", () => {});
      session.on("submit_sm", (pdu: PDU) => this.onSubmit(session, pdu));
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  get url(): string {
    return `smpp://127.0.0.1:${this.port}`;
  }

  private onSubmit(session: Session, pdu: PDU): void {
    const dest = String(pdu.destination_addr ?? "");
    const status = this.refuse.get(dest);
    if (status !== undefined) {
      session.send(pdu.response({ command_status: status }));
      return;
    }
    const messageId = `smsc-${this.next++}`;
    const raw = pdu.short_message as { message?: string | Buffer; udh?: Buffer[] } | string | Buffer | undefined;
    const sm = typeof raw === "string" || Buffer.isBuffer(raw) ? { message: raw } : raw;
    const message = sm?.message;
    this.submitted.push({
      at: Date.now(),
      messageId,
      destination: dest,
      dataCoding: Number(pdu.data_coding ?? 0),
      esmClass: Number(pdu.esm_class ?? 0),
      text: typeof message === "string" ? message : (message?.toString("utf16le") ?? ""),
      udh: (sm as { udh?: Buffer[] } | undefined)?.udh?.[0],
    });
    session.send(pdu.response({ message_id: messageId }));
    const stat = this.receiptStat.get(dest) ?? "DELIVRD";
    if (stat === "none") return;
    const fields = {
      source_addr: dest,
      destination_addr: String(pdu.source_addr ?? ""),
      esm_class: 0x04,
      short_message: `id:${messageId} sub:001 dlvrd:001 submit date:2612010000 done date:2612010000 stat:${stat} err:000 text:`,
    };
    const r = { fields, due: false, on: undefined as Session | undefined };
    this.unanswered.set(messageId, r);
    setTimeout(() => {
      r.due = true;
      // The submitting session, if it is still bound; else another one, or the next to bind.
      if (this.bound.has(session)) this.sendReceipt(messageId, session);
      else this.resendReceipts();
    }, this.receiptDelayMs);
  }

  /** Whether the SMSC still holds the message's receipt, unanswered. */
  holdsReceipt(messageId: string): boolean {
    return this.unanswered.has(messageId);
  }

  /** Every receipt whose session closed unanswered, on a session still bound (if any). */
  private resendReceipts(): void {
    const [session] = this.bound;
    if (!session) return;
    for (const [id, r] of this.unanswered)
      if (r.due && r.on === undefined) {
        this.receiptsResent.add(id);
        this.sendReceipt(id, session);
      }
  }

  private sendReceipt(messageId: string, session: Session): void {
    const r = this.unanswered.get(messageId);
    if (!r) return;
    r.on = session;
    const sent = session.deliver_sm({ ...r.fields }, (resp: PDU) => {
      if (resp.command_status === 0) this.unanswered.delete(messageId);
      else if (r.on === session) {
        // Refused (the ESME could not store it): offered again a second later.
        r.on = undefined;
        setTimeout(() => this.resendReceipts(), 1_000).unref();
      }
    });
    if (!sent) r.on = undefined;
  }

  /** Closes the listener and drops every bound session (the SMSC is down). */
  async down(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    this.bound.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Back on the same port. */
  async up(): Promise<void> {
    await this.start(this.port);
  }

  async stop(): Promise<void> {
    await this.down();
  }
}

export interface Mail {
  to: string[];
  raw: string;
}

/** A real SMTP server (`smtp-server`), no auth, collecting what it is sent. */
export class TestSmtp {
  readonly mails: Mail[] = [];
  private server: SMTPServer | undefined;
  port = 0;
  /** Recipient → SMTP reply code to refuse RCPT TO with (e.g. 550 permanent, 451 transient). */
  readonly refuse = new Map<string, number>();

  async start(): Promise<void> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      onRcptTo: (address, _session, cb) => {
        const code = this.refuse.get(address.address);
        if (code) {
          const err = new Error(code >= 500 ? "mailbox unavailable" : "try again later") as Error & {
            responseCode: number;
          };
          err.responseCode = code;
          cb(err);
          return;
        }
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          this.mails.push({
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString("utf8"),
          });
          cb();
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    this.port = (server.server.address() as AddressInfo).port;
    this.server = server;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** An FCM-style endpoint: answers {name} for each POSTed message and keeps the bodies. */
export class TestPush {
  readonly requests: { body: unknown; authorization: string | undefined }[] = [];
  private server: HttpServer | undefined;
  port = 0;

  async start(): Promise<void> {
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
        this.requests.push({ body, authorization: req.headers.authorization });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ name: `projects/telco/messages/${this.requests.length}` }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/projects/telco/messages:send`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
