import smpp, { type PDU, type Session } from "smpp";
import type { Logger } from "../../../kit/src/logger.js";
import { inSpan, SpanKind, SpanStatusCode } from "../../../kit/src/telemetry.js";
import { smsEncoding, splitSms } from "../sms/segments.js";
import type { Outcome, Outgoing, Provider, ProviderContext, ProviderModule, Receipt } from "./provider.js";

/** SMPP command_status values (SMPP 3.4 / 5.0) this provider tells apart. */
const STATUS = { ok: 0x00, msgQueueFull: 0x14, sysErr: 0x08, throttled: 0x58, invalidDest: 0x0b, invalidSource: 0x0a };
/** Refusals that may work later; everything else the SMSC refuses is permanent. */
const TRANSIENT = new Set([STATUS.msgQueueFull, STATUS.sysErr, STATUS.throttled, 0x64 /* ESME_RX_T_APPN */]);
const ESM_DELIVERY_RECEIPT = 0x04;
const DATA_CODING = { gsm7: 0x00, ucs2: 0x08 } as const;

interface SmppSettings {
  url: string;
  systemId: string;
  password: string;
  sourceAddr: string;
  /** Waiting for a submit_sm_resp longer than this leaves the message's outcome unknown. */
  responseTimeoutMs: number;
  reconnectMaxMs: number;
  enquireLinkMs: number;
}

function settingsOf(env: Record<string, string | undefined>): SmppSettings {
  const num = (name: string, def: number) => {
    const v = env[name];
    if (v === undefined || v === "") return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer of milliseconds, got ${v}`);
    return n;
  };
  const url = env.MESSAGE_SMPP_URL ?? "smpp://127.0.0.1:2775";
  if (!/^s?smpp:\/\/[^/]+$/.test(url)) throw new Error(`MESSAGE_SMPP_URL must be smpp://host:port, got ${url}`);
  return {
    url,
    systemId: env.MESSAGE_SMPP_SYSTEM_ID ?? "telco",
    password: env.MESSAGE_SMPP_PASSWORD ?? "",
    sourceAddr: env.MESSAGE_SMPP_SOURCE_ADDR ?? "1577",
    responseTimeoutMs: num("MESSAGE_SMPP_RESPONSE_TIMEOUT_MS", 10_000),
    reconnectMaxMs: num("MESSAGE_SMPP_RECONNECT_MAX_MS", 10_000),
    enquireLinkMs: num("MESSAGE_SMPP_ENQUIRE_LINK_MS", 15_000),
  };
}

/** "010-1234-5678" → "821012345678": international, without the trunk 0 (TON 1, NPI 1). */
export function toInternational(phone: string): string {
  const digits = phone.replace(/\D/g, "");
  return digits.startsWith("0") ? `82${digits.slice(1)}` : digits;
}

/** The receipted message id and stat of a deliver_sm receipt (TLV first, then the text). */
export function parseReceipt(pdu: PDU): Receipt | undefined {
  if (((pdu.esm_class ?? 0) & ESM_DELIVERY_RECEIPT) === 0) return undefined;
  const sm = pdu.short_message;
  const text = typeof sm === "string" ? sm : Buffer.isBuffer(sm) ? sm.toString("latin1") : String(sm?.message ?? "");
  const id = pdu.receipted_message_id || /\bid:(\S+)/i.exec(text)?.[1];
  const stat = /\bstat:(\w+)/i.exec(text)?.[1];
  if (!id || !stat) return undefined;
  return { providerId: String(id), stat: stat.toUpperCase() };
}

/**
 * SMS over SMPP 3.4 (the `smpp` package): one bound transceiver session, re-bound with backoff
 * whenever it drops. A text of more than one segment goes as concatenated parts (UDH, 8-bit
 * reference), each its own submit_sm; Korean and anything outside GSM-7 as UCS-2.
 */
class SmppProvider implements Provider {
  readonly name = "smpp";
  readonly channel = "sms" as const;
  private session: Session | undefined;
  private bound = false;
  private stopped = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private ref = Math.floor(Math.random() * 256);
  private readonly log: Logger;
  private readonly s: SmppSettings;
  /** Who waits for the first bind (start resolves once bound or after the first failure). */
  private firstBind: (() => void) | undefined;

  constructor(private readonly ctx: ProviderContext) {
    this.s = settingsOf(ctx.env);
    this.log = ctx.logger.child({ component: "smpp", smsc: this.s.url });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.firstBind = resolve;
      this.connect();
    });
  }

  available(): boolean {
    return this.bound;
  }

  private connect(): void {
    if (this.stopped) return;
    const session = smpp.connect({ url: this.s.url, auto_enquire_link_period: this.s.enquireLinkMs });
    // Every submit in flight listens for the session closing.
    session.setMaxListeners(0);
    this.session = session;
    const down = (why: string) => {
      if (this.session !== session) return;
      if (this.bound) this.log.warn({ why }, "SMSC session lost; messages wait until it is back");
      this.bound = false;
      this.session = undefined;
      session.destroy();
      this.firstBind?.();
      this.firstBind = undefined;
      if (this.stopped) return;
      const wait = Math.min(this.s.reconnectMaxMs, 200 * 2 ** Math.min(this.attempt++, 10));
      this.reconnectTimer = setTimeout(() => this.connect(), wait * (0.5 + Math.random() / 2));
    };
    session.on("error", (e: Error) => down(e.message));
    session.on("close", () => down("connection closed"));
    session.on("connect", () => {
      session.bind_transceiver({ system_id: this.s.systemId, password: this.s.password }, (pdu) => {
        if (pdu.command_status !== STATUS.ok) {
          this.log.error({ command_status: pdu.command_status }, "SMSC refused the bind");
          down(`bind refused (status ${pdu.command_status})`);
          return;
        }
        this.bound = true;
        this.attempt = 0;
        this.log.info("bound to the SMSC");
        this.firstBind?.();
        this.firstBind = undefined;
      });
    });
    session.on("deliver_sm", (pdu: PDU) => {
      const receipt = parseReceipt(pdu);
      // Answered only once the receipt is stored: a receipt lost in a crash is sent again by the SMSC.
      void (receipt ? this.ctx.onReceipt(receipt) : Promise.resolve()).then(
        () => session.send(pdu.response()),
        (e) => {
          this.log.error({ err: (e as Error).message }, "storing a delivery receipt failed; the SMSC will resend it");
          session.send(pdu.response({ command_status: STATUS.sysErr }));
        },
      );
    });
    session.on("unbind", (pdu: PDU) => {
      session.send(pdu.response());
      down("SMSC unbound");
    });
    session.on("enquire_link", (pdu: PDU) => session.send(pdu.response()));
  }

  async send(m: Outgoing): Promise<Outcome> {
    const session = this.session;
    if (!session || !this.bound) return { kind: "unavailable", reason: "not bound to the SMSC" };
    const encoding = smsEncoding(m.body);
    const parts = splitSms(m.body);
    const destination = toInternational(m.phoneNumber);
    if (!/^\d{8,15}$/.test(destination)) return { kind: "permanent", reason: "phone number is not a valid MSISDN" };
    this.ref = (this.ref + 1) % 256;
    const ref = this.ref;
    const ids: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      const udh = parts.length > 1 ? Buffer.from([0x05, 0x00, 0x03, ref, parts.length, i + 1]) : undefined;
      const pdu: Record<string, unknown> = {
        source_addr: this.s.sourceAddr,
        source_addr_ton: 0,
        source_addr_npi: 0,
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: destination,
        registered_delivery: 1,
        data_coding: DATA_CODING[encoding],
        short_message: udh ? { udh, message: parts[i] } : { message: parts[i] },
      };
      const r = await inSpan(
        "SMPP submit_sm",
        {
          kind: SpanKind.CLIENT,
          attributes: {
            "network.protocol.name": "smpp",
            "server.address": this.s.url.replace(/^s?smpp:\/\//, ""),
            "smpp.data_coding": DATA_CODING[encoding],
            "smpp.segment": i + 1,
            "smpp.segments": parts.length,
          },
        },
        async (span) => {
          const outcome = await this.submit(session, pdu);
          span.setAttribute("smpp.outcome", outcome.kind);
          if (outcome.kind === "sent") span.setAttribute("smpp.message_id", outcome.providerIds[0] ?? "");
          else span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason });
          return outcome;
        },
      );
      // A later part failing after earlier ones went out: the message is partly sent, never resent.
      if (r.kind !== "sent") {
        return ids.length > 0 && r.kind !== "unknown"
          ? { kind: "unknown", reason: `part ${i + 1} of ${parts.length}: ${r.reason}` }
          : r;
      }
      ids.push(...r.providerIds);
    }
    return { kind: "sent", providerIds: ids, segments: parts.length };
  }

  private submit(session: Session, pdu: Record<string, unknown>): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let done = false;
      const finish = (o: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        session.off("close", onClose);
        resolve(o);
      };
      const timer = setTimeout(
        () => finish({ kind: "unknown", reason: `no submit_sm_resp within ${this.s.responseTimeoutMs} ms` }),
        this.s.responseTimeoutMs,
      );
      const onClose = () => finish({ kind: "unknown", reason: "SMSC connection closed before submit_sm_resp" });
      session.once("close", onClose);
      const written = session.submit_sm(pdu, (resp) => {
        const status = resp.command_status;
        if (status === STATUS.ok) finish({ kind: "sent", providerIds: [String(resp.message_id ?? "")] });
        else if (TRANSIENT.has(status)) finish({ kind: "transient", reason: `SMSC status 0x${status.toString(16)}` });
        else finish({ kind: "permanent", reason: `SMSC refused: status 0x${status.toString(16)}` });
      });
      // Not writable: nothing went out.
      if (written === false) finish({ kind: "unavailable", reason: "SMSC connection not writable" });
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    const session = this.session;
    this.session = undefined;
    this.bound = false;
    if (!session) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        session.destroy();
        resolve();
      }, 2_000);
      session.unbind({}, () => {
        clearTimeout(t);
        session.close(() => resolve());
      });
    });
  }
}

export const provider: ProviderModule = {
  name: "smpp",
  channel: "sms",
  settings: {
    MESSAGE_SMPP_URL: "SMSC address, smpp://host:port (default smpp://127.0.0.1:2775)",
    MESSAGE_SMPP_SYSTEM_ID: "bind system_id (default telco)",
    MESSAGE_SMPP_PASSWORD: "bind password (a Secret in the cluster)",
    MESSAGE_SMPP_SOURCE_ADDR: "sender address (default 1577)",
    MESSAGE_SMPP_RESPONSE_TIMEOUT_MS: "wait for submit_sm_resp before the outcome counts as unknown (default 10000)",
    MESSAGE_SMPP_RECONNECT_MAX_MS: "longest pause between re-binds (default 10000)",
    MESSAGE_SMPP_ENQUIRE_LINK_MS: "enquire_link period (default 15000)",
  },
  create: (ctx) => new SmppProvider(ctx),
};
