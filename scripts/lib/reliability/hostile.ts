/**
 * Hostile input for `npm run reliability`: every RPC of every unit fed generated invalid requests
 * over gRPC and over Connect (bytes that are not Protobuf, broken and mistyped JSON, messages with
 * huge strings, malformed ids, negative and extreme numbers, unknown enum values, no token), each
 * answer classified by its code; every topic fed random bytes and valid-but-wrong records, each
 * expected on the topic's dead-letter topic with a reason while good records keep counting.
 */
import { randomBytes } from "node:crypto";
import * as http2 from "node:http2";
import {
  create,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  toBinary,
} from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Kafka, type Message, type Producer } from "kafkajs";
import { BillingJobService } from "../../../gen/telco/batch/v1/billing_pb.js";
import { AuthService } from "../../../gen/telco/domain/v1/auth_pb.js";
import { CatalogService } from "../../../gen/telco/domain/v1/catalog_pb.js";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { InvoiceService } from "../../../gen/telco/domain/v1/invoice_pb.js";
import { MicroPaymentService } from "../../../gen/telco/domain/v1/micropayment_pb.js";
import { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import {
  NotificationKind,
  NotificationRequestSchema,
  UsageThresholdSchema,
} from "../../../gen/telco/message/v1/events_pb.js";
import { MessageService } from "../../../gen/telco/message/v1/message_pb.js";
import { TemplateService } from "../../../gen/telco/message/v1/template_pb.js";
import { UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { DLQ, dlqTopic, encodeRecord, publish } from "../../../services/kit/src/kafka.js";
import { bearer, tokenFor } from "../../../test/support/auth.js";
import { KAFKA_BROKERS } from "../../../test/support/env.js";
import type { Platform, Unit } from "../../../test/support/platform.js";

const SERVICES: [Unit, DescService][] = [
  ["usage", UsageService],
  ["message", MessageService],
  ["message", TemplateService],
  ["domain", AuthService],
  ["domain", CatalogService],
  ["domain", CustomerService],
  ["domain", InvoiceService],
  ["domain", MicroPaymentService],
  ["domain", SubscriptionService],
  ["batch", BillingJobService],
];

/** Answers that mean the unit did not handle the input: no code, or a code for its own failure. */
const BAD = new Set<Code>([Code.Unknown, Code.Internal, Code.DataLoss]);
const CALL_TIMEOUT_MS = 10_000;

export interface HostileReport {
  inputs: number;
  badAnswers: number;
  crashed: number;
  deadLetteredExpected: number;
  deadLettered: number;
  goodAfterGarbage: boolean;
  table: string[];
}

type Outcome = string; // a code's name, "stream-open", or what was wrong ("no-code 500", "timeout")

const log = (s: string) => process.stderr.write(`[reliability] ${s}\n`);
const HUGE = "가".repeat(100_000);
const MALFORMED = ["L12' or '1'='1", "../../../etc/passwd", "\u0000\uFFFF", "%00", "L-0000000001", "🙂".repeat(40)];

/** A value of the field's type meant to be refused: `variant` picks which kind. */
function hostileValue(f: DescField, variant: number, depth: number): unknown {
  if (f.fieldKind === "message") {
    if (depth > 1) return undefined;
    if (f.message.typeName === "google.protobuf.Timestamp") {
      return variant % 2 ? timestampFromMs(-62_135_596_800_000) : timestampFromMs(253_402_300_799_000 + 1000);
    }
    if (f.message.typeName === "google.protobuf.Duration") return { seconds: -1n, nanos: -1 };
    return hostileMessage(f.message, variant, depth + 1);
  }
  if (f.fieldKind === "enum") return 9_999;
  if (f.fieldKind === "map") return undefined;
  const scalar = f.fieldKind === "list" ? f.scalar : f.fieldKind === "scalar" ? f.scalar : undefined;
  if (scalar === undefined) return undefined;
  switch (scalar) {
    case 9: // string
      return variant === 0 ? HUGE : (MALFORMED[variant % MALFORMED.length] as string);
    case 12: // bytes
      return randomBytes(variant === 0 ? 200_000 : 17);
    case 8: // bool
      return true;
    case 1: // double
    case 2: // float
      return variant % 2 ? Number.NaN : -1e308;
    case 3: // int64
    case 16: // sfixed64
    case 18: // sint64
      return variant % 2 ? -(2n ** 63n) : -1n;
    case 4: // uint64
    case 6: // fixed64
      return variant % 2 ? 2n ** 64n - 1n : 0n;
    case 13: // uint32
    case 7: // fixed32
      return 4_294_967_295;
    default: // int32 and friends
      return variant % 2 ? -2_147_483_648 : -1;
  }
}

/** Every field of the message set to a hostile value (lists of three; one case of each oneof). */
function hostileMessage(schema: DescMessage, variant: number, depth = 0) {
  const msg = create(schema);
  const r = reflect(schema, msg);
  const oneofsSet = new Set<string>();
  for (const f of schema.fields) {
    if (f.oneof) {
      if (oneofsSet.has(f.oneof.name)) continue;
      oneofsSet.add(f.oneof.name);
    }
    const v = hostileValue(f, variant, depth);
    if (v === undefined) continue;
    try {
      if (f.fieldKind === "list") {
        const list = r.get(f);
        for (let i = 0; i < 3; i++) list.add(v as never);
      } else if (f.fieldKind === "message") {
        r.set(f, reflect(f.message, create(f.message, v as never)) as never);
      } else {
        r.set(f, v as never);
      }
    } catch {
      // A value the type cannot hold at all (e.g. NaN for an integer): that field stays unset.
    }
  }
  return msg;
}

/** What a JSON of the wrong types looks like: every field a value of another JSON type. */
function mistypedJson(schema: DescMessage): string {
  const o: Record<string, unknown> = {};
  for (const f of schema.fields) {
    o[f.jsonName] =
      f.fieldKind === "message"
        ? "not an object"
        : f.fieldKind === "list"
          ? { not: "a list" }
          : f.fieldKind === "scalar" && f.scalar === 9
            ? { not: "a string" }
            : ["not", "a", "number"];
  }
  return JSON.stringify(o);
}

const frame = (body: Uint8Array, flags = 0) => {
  const b = Buffer.alloc(5 + body.length);
  b.writeUInt8(flags, 0);
  b.writeUInt32BE(body.length, 1);
  Buffer.from(body).copy(b, 5);
  return b;
};

/** One raw HTTP/2 request; resolves with the status, headers and trailers merged, and the body. */
function h2(
  url: string,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(url);
    client.on("error", reject);
    const req = client.request({ ":method": "POST", ":path": path, ...headers });
    const got: Record<string, string> = {};
    let status = 0;
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      req.close();
      client.close();
      reject(new Error("timeout"));
    }, CALL_TIMEOUT_MS);
    req.on("response", (h) => {
      status = Number(h[":status"]);
      for (const [k, v] of Object.entries(h)) got[k] = String(v);
    });
    req.on("trailers", (h) => {
      for (const [k, v] of Object.entries(h)) got[k] = String(v);
    });
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      clearTimeout(timer);
      client.close();
      resolve({ status, headers: got, body: Buffer.concat(chunks) });
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      client.close();
      reject(e);
    });
    req.end(body);
  });
}

const codeName = (c: number | string): string => {
  if (typeof c === "number") return Code[c] ?? `code ${c}`;
  // Connect's JSON names: "invalid_argument" → "InvalidArgument".
  return c.replace(/(^|_)([a-z])/g, (_, __, ch: string) => ch.toUpperCase());
};

/** gRPC: a frame of random bytes; the answer must carry a grpc-status. */
async function grpcGarbage(url: string, m: DescMethod, token: string): Promise<Outcome> {
  const r = await h2(
    url,
    `/${m.parent.typeName}/${m.name}`,
    { "content-type": "application/grpc+proto", te: "trailers", authorization: `Bearer ${token}` },
    frame(randomBytes(64)),
  );
  const s = r.headers["grpc-status"];
  if (s === undefined) return `no-code ${r.status}`;
  return codeName(Number(s));
}

/** Connect: a body that is not Protobuf, or JSON that is broken or of the wrong types. */
async function connectRaw(
  url: string,
  m: DescMethod,
  token: string,
  kind: "proto" | "json" | "mistyped",
): Promise<Outcome> {
  const streaming = m.methodKind !== "unary";
  const body =
    kind === "proto" ? randomBytes(64) : Buffer.from(kind === "json" ? '{"subscriptionId": ' : mistypedJson(m.input));
  const type = `application/${streaming ? "connect+" : ""}${kind === "proto" ? "proto" : "json"}`;
  const r = await h2(
    url,
    `/${m.parent.typeName}/${m.name}`,
    { "content-type": type, "connect-protocol-version": "1", authorization: `Bearer ${token}` },
    streaming ? frame(body) : body,
  );
  if (!streaming) {
    if (r.status === 200) return "OK";
    try {
      const e = JSON.parse(r.body.toString()) as { code?: string };
      return e.code ? codeName(e.code) : `no-code ${r.status}`;
    } catch {
      return `no-code ${r.status}`;
    }
  }
  // The end of a Connect stream: an envelope with flag 2 and {"error": {...}} or nothing.
  let at = 0;
  while (at + 5 <= r.body.length) {
    const flags = r.body.readUInt8(at);
    const len = r.body.readUInt32BE(at + 1);
    const payload = r.body.subarray(at + 5, at + 5 + len);
    at += 5 + len;
    if (flags & 0x02) {
      const end = JSON.parse(payload.toString() || "{}") as { error?: { code?: string } };
      return end.error?.code ? codeName(end.error.code) : "OK";
    }
  }
  return `no-code ${r.status}`;
}

/** A typed call with a hostile message through a generated client (gRPC or Connect). */
async function typed(transport: Transport, service: DescService, m: DescMethod, msg: unknown): Promise<Outcome> {
  const client = createClient(service, transport) as unknown as Record<
    string,
    (req: unknown, o: { signal: AbortSignal; timeoutMs?: number }) => unknown
  >;
  const call = client[m.localName] as (req: unknown, o: { signal: AbortSignal }) => unknown;
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), m.methodKind === "unary" ? CALL_TIMEOUT_MS : 1_500);
  try {
    if (m.methodKind === "unary") {
      await (call(msg, { signal: stop.signal }) as Promise<unknown>);
      return "OK";
    }
    for await (const _ of call(msg, { signal: stop.signal }) as AsyncIterable<unknown>) {
      // One answer is enough: the stream was accepted.
      return "stream-open";
    }
    return "OK";
  } catch (e) {
    if (stop.signal.aborted) return m.methodKind === "unary" ? "timeout" : "stream-open";
    return codeName(ConnectError.from(e).code);
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
}

const isBad = (o: Outcome) =>
  o.startsWith("no-code") || o === "timeout" || o === "error" || BAD.has(Code[o as keyof typeof Code]);

export async function hostileInput(platform: Platform, producer: Producer): Promise<HostileReport> {
  const admin = await tokenFor("admin");
  const perRpc = new Map<string, Map<Outcome, number>>();
  const bad: string[] = [];
  let inputs = 0;
  const note = (rpc: string, what: string, o: Outcome) => {
    inputs += 1;
    const m = perRpc.get(rpc) ?? new Map<Outcome, number>();
    m.set(o, (m.get(o) ?? 0) + 1);
    perRpc.set(rpc, m);
    if (isBad(o)) bad.push(`${rpc} ${what}: ${o}`);
  };
  const attempt = async (rpc: string, what: string, f: () => Promise<Outcome>) => {
    try {
      note(rpc, what, await f());
    } catch (e) {
      note(rpc, what, (e as Error).message === "timeout" ? "timeout" : `error`);
      bad.push(`${rpc} ${what}: ${(e as Error).message}`);
    }
  };
  log("hostile input: every RPC, over gRPC and Connect");
  for (const [unit, service] of SERVICES) {
    const url = platform.urlOf(unit);
    const grpc = createGrpcTransport({ baseUrl: url, interceptors: [bearer(admin)] });
    const connect = createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [bearer(admin)] });
    const anonymous = createConnectTransport({ baseUrl: url, httpVersion: "1.1" });
    for (const m of service.methods) {
      const rpc = `${service.name}/${m.name}`;
      await attempt(rpc, "grpc: random bytes", () => grpcGarbage(url, m, admin));
      await attempt(rpc, "connect: random bytes", () => connectRaw(url, m, admin, "proto"));
      await attempt(rpc, "connect: broken JSON", () => connectRaw(url, m, admin, "json"));
      await attempt(rpc, "connect: wrong JSON types", () => connectRaw(url, m, admin, "mistyped"));
      await attempt(rpc, "connect: no token", () => typed(anonymous, service, m, create(m.input)));
      for (const [name, t] of [
        ["grpc", grpc],
        ["connect", connect],
      ] as const) {
        await attempt(rpc, `${name}: empty`, () => typed(t, service, m, create(m.input)));
        for (let variant = 0; variant < 3; variant++) {
          await attempt(rpc, `${name}: hostile fields #${variant}`, () =>
            typed(t, service, m, hostileMessage(m.input, variant)),
          );
        }
      }
    }
  }
  let crashed = 0;
  for (const u of ["domain", "usage", "message", "batch"] as Unit[]) {
    const p = platform.procs.get(u);
    if (p && (p.child.exitCode !== null || p.child.signalCode !== null)) {
      crashed += 1;
      bad.push(`${u} exited (${p.child.exitCode ?? p.child.signalCode}) during the hostile input`);
    }
  }
  const topics = await hostileRecords(platform, producer);
  const table = [
    "| RPC | inputs | answers |",
    "|---|---|---|",
    ...[...perRpc.entries()].map(
      ([rpc, m]) =>
        `| ${rpc} | ${[...m.values()].reduce((s, n) => s + n, 0)} | ${[...m.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([o, n]) => `${o} ${n}`)
          .join(", ")} |`,
    ),
    "",
    ...topics.table,
  ];
  for (const b of bad.slice(0, 60)) log(`  BAD: ${b}`);
  log(
    `hostile input: ${inputs} requests to ${perRpc.size} RPCs, ${bad.length} answered without a proper code; ` +
      `${topics.deadLettered}/${topics.expected} bad records dead-lettered with a reason`,
  );
  return {
    inputs,
    badAnswers: bad.length,
    crashed,
    deadLetteredExpected: topics.expected,
    deadLettered: topics.deadLettered,
    goodAfterGarbage: topics.goodCounted,
    table,
  };
}

/**
 * Random bytes and valid-but-wrong records into the usage and notification topics, good ones
 * after them: every bad one on the dead-letter topic with a reason, the good ones counted.
 */
async function hostileRecords(
  platform: Platform,
  producer: Producer,
): Promise<{ expected: number; deadLettered: number; goodCounted: boolean; table: string[] }> {
  const usage = platform.topics.usage;
  const notes = platform.topics.notifications;
  const future = Date.now() + 40 * 24 * 3600 * 1000;
  const ev = (o: Partial<{ sid: string; bytes: bigint; at: number; eventId: string; seq: bigint }>) =>
    encodeRecord(
      UsageEventSchema,
      create(UsageEventSchema, {
        eventId: o.eventId ?? `hostile-${randomBytes(6).toString("hex")}`,
        subscriptionId: o.sid ?? "L0000000001",
        seq: o.seq ?? 1n,
        bytes: o.bytes ?? 1000n,
        occurredAt: timestampFromMs(o.at ?? Date.now()),
        source: "reliability-hostile",
      }),
      { key: o.sid ?? "L0000000001" },
    );
  const garbage = (n: number, key: string) =>
    Array.from({ length: n }, () => ({ key, value: randomBytes(1 + Math.floor(Math.random() * 200)) }));
  const badUsage: [string, Message[]][] = [
    ["random bytes", garbage(20, "L0000000001")],
    ["future month", [ev({ at: future })]],
    ["zero bytes", [ev({ bytes: 0n })]],
    ["malformed line id", [ev({ sid: "../etc/passwd" })]],
    ["key is not the line", [{ ...ev({}), key: "L0000000002" }]],
    ["empty event id", [ev({ eventId: "" })]],
  ];
  const req = (o: Partial<{ sid: string; kind: NotificationKind; requestId: string }>) => {
    const r = create(NotificationRequestSchema, {
      requestId: o.requestId ?? `hostile-${randomBytes(6).toString("hex")}`,
      subscriptionId: o.sid ?? "L0000000001",
      kind: o.kind ?? NotificationKind.USAGE_THRESHOLD,
      requestedAt: timestampFromMs(Date.now()),
      detail: {
        case: "usageThreshold",
        value: create(UsageThresholdSchema, { level: 50, month: "2026-12" }),
      },
    });
    return { key: r.subscriptionId, value: Buffer.from(toBinary(NotificationRequestSchema, r)) };
  };
  const badNotes: [string, Message[]][] = [
    ["random bytes", garbage(20, "L0000000001")],
    ["unknown kind", [req({ kind: 77 as NotificationKind })]],
    ["malformed line id", [req({ sid: "../etc" })]],
    ["malformed request id", [req({ requestId: "has spaces and ; semicolons" })]],
  ];
  const expected = [...badUsage, ...badNotes].reduce((s, [, r]) => s + r.length, 0);
  const kafka = new Kafka({ brokers: KAFKA_BROKERS, clientId: "reliability-dlq", logLevel: 0 });
  const hex = (v: Buffer | string | null | undefined) =>
    v === null || v === undefined ? "" : Buffer.from(v).toString("hex");
  /** Every record on the two dead-letter topics: its value (hex) → its reason. */
  const deadLetters = async (): Promise<Map<string, string>> => {
    const out = new Map<string, string>();
    const admin = kafka.admin();
    await admin.connect();
    const ends = new Map<string, number>();
    for (const t of [dlqTopic(usage), dlqTopic(notes)]) {
      ends.set(
        t,
        (await admin.fetchTopicOffsets(t)).reduce((s, p) => s + Number(p.high), 0),
      );
    }
    await admin.disconnect();
    const total = [...ends.values()].reduce((s, n) => s + n, 0);
    if (total === 0) return out;
    const consumer = kafka.consumer({ groupId: `reliability-dlq-${randomBytes(4).toString("hex")}` });
    await consumer.connect();
    await consumer.subscribe({ topics: [...ends.keys()], fromBeginning: true });
    let seen = 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 20_000);
      void consumer.run({
        eachMessage: async ({ topic, message }) => {
          seen += 1;
          out.set(
            `${topic === dlqTopic(usage) ? "usage" : "notification"}:${hex(message.value)}`,
            message.headers?.[DLQ.reason]?.toString() ?? "",
          );
          if (seen >= total) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
    await consumer.disconnect();
    return out;
  };
  log(`topics: ${expected} bad records into ${usage} and ${notes}, then good ones`);
  for (const [, records] of badUsage) await publish(producer, [{ topic: usage, messages: records }]);
  for (const [, records] of badNotes) await publish(producer, [{ topic: notes, messages: records }]);
  // Good records after the bad: a line of the platform, counted.
  const line = await platform.line();
  const usageClient = (await import("../../../test/support/clients.js")).grpcClient(
    UsageService,
    platform.urlOf("usage"),
    await tokenFor("operator"),
  );
  const month = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Seoul", year: "numeric", month: "2-digit" })
    .format(new Date())
    .slice(0, 7);
  // One good record into each partition, behind the bad ones there: a consumer stuck on a bad
  // record would leave its partition's good one uncounted.
  for (let i = 1; i <= 3; i++) {
    const good = ev({
      sid: line.subscriptionId,
      bytes: 1000n,
      seq: BigInt(i),
      eventId: `good-${line.subscriptionId}-${i}`,
    });
    await publish(producer, [{ topic: usage, messages: [{ ...good, partition: i - 1 }] }]);
  }
  let goodCounted = false;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const u = await usageClient.getLineUsage({ subscriptionId: line.subscriptionId, month }).catch(() => undefined);
    if (u?.usedBytes === 3000n) {
      goodCounted = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  // Each bad record on its dead-letter topic, found by its bytes, with a reason.
  const found = (stream: "usage" | "notification", records: Message[], dl: Map<string, string>) =>
    records.filter((r) => (dl.get(`${stream}:${hex(r.value)}`) ?? "") !== "").length;
  const count = (dl: Map<string, string>) =>
    badUsage.reduce((s, [, r]) => s + found("usage", r, dl), 0) +
    badNotes.reduce((s, [, r]) => s + found("notification", r, dl), 0);
  let dl = await deadLetters();
  for (let i = 0; i < 10 && count(dl) < expected; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    dl = await deadLetters();
  }
  const deadLettered = count(dl);
  const reasonOf = (stream: "usage" | "notification", records: Message[]) =>
    [
      ...new Set(
        records.map((r) =>
          (dl.get(`${stream}:${hex(r.value)}`) ?? "(not dead-lettered)")
            .replace(/\d{4}-\d{2}-\d{2}T[\d:.]+Z/g, "<time>")
            .slice(0, 80),
        ),
      ),
    ]
      .slice(0, 2)
      .join(" / ");
  const table = [
    "| topic | input | records | dead-lettered with a reason | reason |",
    "|---|---|---|---|---|",
    ...badUsage.map(
      ([w, r]) => `| usage.events | ${w} | ${r.length} | ${found("usage", r, dl)} | ${reasonOf("usage", r)} |`,
    ),
    ...badNotes.map(
      ([w, r]) =>
        `| notification.requests | ${w} | ${r.length} | ${found("notification", r, dl)} | ${reasonOf("notification", r)} |`,
    ),
    `| usage.events | good records after the bad | 3 | counted: ${goodCounted ? "3 of 3" : "no"} | |`,
  ];
  return { expected, deadLettered, goodCounted, table };
}
