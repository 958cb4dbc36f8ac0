/**
 * The message unit's delivery end to end in this process, against real peers: an SMSC (the
 * `smpp` package's server), an SMTP server (`smtp-server`) and an FCM-style HTTP endpoint, with
 * the real domain unit for recipients, PostgreSQL, Redis and Kafka.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  DeliveryStatus,
  NotificationKind,
  NotificationRequestSchema,
} from "../../../gen/telco/message/v1/events_pb.js";
import { MessageService } from "../../../gen/telco/message/v1/message_pb.js";
import { TemplateService, VariableType } from "../../../gen/telco/message/v1/template_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { eventually, sleep } from "../../../test/support/env.js";
import { DLQ, headerString } from "../../kit/src/kafka.js";
import { Limits } from "../src/delivery/limits.js";
import { Channel, Harness, kst, type Line, THRESHOLD_VARS } from "./harness.js";

const h = new Harness();
const messages = async () => grpcClient(MessageService, h.units.at.message.url, await tokenFor("admin"));
const templatesClient = async () => grpcClient(TemplateService, h.units.at.message.url, await tokenFor("admin"));

/** The message row of a request and channel, once it reached one of these statuses. */
async function settled(requestId: string, statuses: string[], channel: "sms" | "email" | "push" = "sms") {
  return eventually(
    async () => {
      const row = await h.store.byRequest(requestId, channel);
      return row && statuses.includes(row.status) ? row : undefined;
    },
    20_000,
    `${requestId} to be ${statuses.join("/")}`,
  );
}

async function ensureTemplate(
  name: string,
  channel: Channel,
  body: string,
  opts: Parameters<Harness["template"]>[3] = {},
) {
  try {
    return await h.template(name, channel, body, opts);
  } catch (e) {
    if (ConnectError.from(e).code !== Code.AlreadyExists) throw e;
    const ch = channel === Channel.SMS ? "sms" : channel === Channel.EMAIL ? "email" : "push";
    const t = await h.store.activeTemplate(name, ch, "ko-KR");
    assert.ok(t, `template ${name} exists but has no active version`);
    return { id: t.template_id, version: t.version };
  }
}

before(async () => {
  await h.start();
  for (const level of [50, 80, 100]) {
    await ensureTemplate(
      `usage-threshold-${level}`,
      Channel.SMS,
      `{{user_name}}님, {{month}} 데이터 사용량이 ${level === 100 ? "제공량을 모두 소진했습니다" : `{{level}}%에 도달했습니다`}.`,
      { variables: THRESHOLD_VARS.filter((v) => level !== 100 || v.name !== "level") },
    );
  }
  await ensureTemplate("welcome", Channel.SMS, "{{user_name}}님, 가입을 환영합니다.", {
    variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
  });
  await ensureTemplate(
    "invoice-issued",
    Channel.EMAIL,
    "<p>{{user_name}}님, {{month}} 청구 금액은 <b>{{total}}원</b>입니다.</p>",
    {
      subject: "{{month}} 청구서",
      variables: [
        { name: "user_name", type: VariableType.STRING, required: true },
        { name: "month", type: VariableType.STRING, required: true },
        { name: "total", type: VariableType.MONEY, required: true },
      ],
    },
  );
  await ensureTemplate("usage-threshold-80", Channel.PUSH, "{{month}} 사용량 {{level}}%", {
    subject: "데이터 사용량",
    variables: THRESHOLD_VARS.filter((v) => v.name !== "user_name"),
  });
});
after(async () => {
  await h.stop();
});

describe("message delivery", () => {
  it("a request delivered twice sends one submit_sm; its statuses go queued → sent → delivered", async () => {
    const line = await h.line();
    const req = h.threshold(line, 50);
    // Working hours in Seoul (quiet hours are another test).
    h.clock.set(kst("2026-12-01T14:00"));
    await h.request(req, req);
    const row = await settled(req.requestId as string, ["delivered"]);
    // A redelivery after the send (a consumer restarted from an old offset) changes nothing.
    await h.request(req);
    await sleep(1_000);
    const submits = h.submitsTo(line);
    assert.equal(submits.length, 1, "one submit_sm at the SMSC");
    assert.equal(submits[0]?.dataCoding, 0x08, "Korean goes as UCS-2");
    assert.match(submits[0]?.text ?? "", /50%에 도달했습니다/);
    const got = await (await messages()).getMessage({ messageId: row.message_id });
    assert.deepEqual(
      got.message?.history.map((s) => s.status),
      [DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED],
    );
    assert.equal(got.message?.templateVersion, 1);
    await eventually(async () => {
      const mine = h.results.filter((r) => r.messageId === row.message_id).map((r) => r.status);
      return mine.length === 3 ? mine : undefined;
    });
  });

  it("a burst of 1,000 requests never exceeds the provider's rate at the SMSC", async () => {
    await h.stopDispatcher();
    const rate = 100;
    await h.startDispatcher({
      rates: {
        sms: { perSecond: rate, burst: 1 },
        email: { perSecond: 0, burst: 1 },
        push: { perSecond: 0, burst: 1 },
      },
    });
    h.clock.set(kst("2026-12-01T15:00"));
    const lines = await Promise.all(Array.from({ length: 10 }, () => h.line()));
    const from = h.smsc.submitted.length;
    const batch = Array.from({ length: 1_000 }, (_, i) => {
      const line = lines[i % lines.length] as Line;
      return {
        requestId: `welcome:${line.subscriptionId}:${randomUUID()}`,
        subscriptionId: line.subscriptionId,
        kind: NotificationKind.WELCOME,
        detail: { case: "welcome" as const, value: { planId: "5G-STD-110G" } },
      };
    });
    await h.request(...batch);
    await eventually(async () => (h.smsc.submitted.length - from >= 1_000 ? true : undefined), 60_000, "1,000 submits");
    const times = h.smsc.submitted.slice(from).map((s) => s.at);
    // The most submits the SMSC saw in any 1-second window.
    let most = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while ((times[i] as number) - (times[j] as number) >= 1_000) j++;
      most = Math.max(most, i - j + 1);
    }
    const span = ((times.at(-1) as number) - (times[0] as number)) / 1000;
    assert.ok(most <= rate, `at most ${rate} submits in any second at the SMSC (saw ${most})`);
    assert.ok(
      span >= (1_000 - 1) / rate - 0.5,
      `1,000 sends at ${rate}/s take about ${(999 / rate).toFixed(1)} s (took ${span.toFixed(1)} s)`,
    );
    await h.stopDispatcher();
    await h.startDispatcher();
  });

  it("a 50 % alert at 23:00 KST waits for 08:00; a 100 % alert goes at once", async () => {
    const line = await h.line();
    h.clock.set(kst("2026-12-01T23:00"));
    const half = h.threshold(line, 50);
    const full = h.threshold(line, 100);
    await h.request(half, full);
    const urgent = await settled(full.requestId as string, ["sent", "delivered"]);
    assert.ok(urgent);
    const held = await settled(half.requestId as string, ["deferred"]);
    assert.equal(held.send_at.getTime(), kst("2026-12-02T08:00"), "held until 08:00 KST");
    await sleep(500);
    assert.equal(h.submitsTo(line).length, 1, "only the 100 % alert went out during quiet hours");
    h.clock.set(kst("2026-12-02T08:00") + 1_000);
    await settled(half.requestId as string, ["sent", "delivered"]);
    assert.equal(h.submitsTo(line).length, 2);
  });

  it("the SMSC down for a while, then up, loses nothing and sends nothing twice", async () => {
    h.clock.set(kst("2026-12-01T10:00"));
    const lines = await Promise.all(Array.from({ length: 5 }, () => h.line()));
    await h.smsc.down();
    const reqs = lines.flatMap((l) => [h.threshold(l, 50), h.threshold(l, 80)]);
    await h.request(...reqs);
    await sleep(2_000);
    for (const l of lines) assert.equal(h.submitsTo(l).length, 0, "nothing reaches a down SMSC");
    const waiting = await Promise.all(reqs.map((r) => h.store.byRequest(r.requestId as string, "sms")));
    assert.ok(
      waiting.every((r) => r && (r.status === "queued" || r.status === "sending")),
      "all still waiting",
    );
    await h.smsc.up();
    for (const r of reqs) await settled(r.requestId as string, ["delivered"]);
    for (const l of lines) assert.equal(h.submitsTo(l).length, 2, "each request sent exactly once");
    const rows = await Promise.all(reqs.map((r) => h.store.byRequest(r.requestId as string, "sms")));
    assert.ok(
      rows.every((r) => r?.attempts === 1),
      "waiting for the SMSC used no attempts",
    );
  });

  it("a receipt that comes while the sender is down is delivered once it binds again", async () => {
    h.clock.set(kst("2026-12-01T11:00"));
    const line = await h.line();
    const req = h.threshold(line, 80);
    h.smsc.receiptDelayMs = 1_500;
    try {
      await h.request(req);
      await settled(req.requestId as string, ["sent"]);
      // The sender goes away between the submit_sm_resp and the SMSC's deliver_sm.
      await h.stopDispatcher();
      await sleep(2_000);
      assert.equal((await h.store.byRequest(req.requestId as string, "sms"))?.status, "sent");
      const [submit] = h.submitsTo(line);
      assert.ok(submit && h.smsc.holdsReceipt(submit.messageId), "the SMSC still holds this message's receipt");
      await h.startDispatcher();
      await settled(req.requestId as string, ["delivered"]);
      assert.ok(h.smsc.receiptsResent.has(submit.messageId), "its receipt came on the new bind");
      assert.equal(h.smsc.holdsReceipt(submit.messageId), false, "and was answered");
      assert.equal(h.submitsTo(line).length, 1, "sent once");
    } finally {
      h.smsc.receiptDelayMs = 20;
    }
  });

  it("a permanently failing request ends in the .dlq topic with its reason; a transient one after its retries", async () => {
    h.clock.set(kst("2026-12-01T11:00"));
    const bad = await h.line();
    const busy = await h.line();
    h.smsc.refuse.set(bad.msisdn, 0x0b); // ESME_RINVDSTADR
    h.smsc.refuse.set(busy.msisdn, 0x58); // ESME_RTHROTTLED
    const a = h.threshold(bad, 80);
    const b = h.threshold(busy, 80);
    await h.request(a, b);
    const failed = await settled(a.requestId as string, ["failed"]);
    assert.equal(failed.attempts, 1, "a permanent error is not retried");
    const gaveUp = await settled(b.requestId as string, ["failed"]);
    assert.equal(gaveUp.attempts, 3, "a transient error is retried up to the limit");
    const dead = await eventually(async () => {
      const mine = h.dead.filter(
        (m) => m.key?.toString() === bad.subscriptionId || m.key?.toString() === busy.subscriptionId,
      );
      return mine.length === 2 ? mine : undefined;
    });
    const byLine = new Map(dead.map((m) => [m.key?.toString(), m]));
    const permanent = byLine.get(bad.subscriptionId) as (typeof dead)[number];
    assert.match(headerString(permanent.headers, DLQ.reason) ?? "", /status 0xb/);
    assert.equal(
      fromBinary(NotificationRequestSchema, permanent.value as Buffer).requestId,
      a.requestId,
      "the request itself",
    );
    assert.match(
      headerString(byLine.get(busy.subscriptionId)?.headers, DLQ.reason) ?? "",
      /0x58; gave up after 3 attempts/,
    );
    assert.equal(h.submitsTo(bad).length + h.submitsTo(busy).length, 0);
    h.smsc.refuse.clear();
  });

  it("a template edit creates version n+1 while a scheduled message still sends version n", async () => {
    h.clock.set(kst("2026-12-01T12:00"));
    const line = await h.line();
    const name = `notice-${h.tag}`;
    const tpl = await h.template(name, Channel.SMS, "공지 v1: {{user_name}}님", {
      variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
    });
    const m = await messages();
    const sent = await m.sendMessage({
      requestId: `notice:${randomUUID()}`,
      subscriptionId: line.subscriptionId,
      templateId: tpl.id,
      sendAt: timestampFromMs(h.clock.now() + 2_000),
    });
    assert.equal(sent.message?.templateVersion, 1, "pinned to the version active when it was scheduled");
    const t = await templatesClient();
    const edited = await t.updateTemplate({
      templateId: tpl.id,
      baseVersion: 1,
      body: "공지 v2: {{user_name}}님",
      variables: [{ name: "user_name", type: VariableType.STRING, required: true, example: "x" }],
    });
    assert.equal(edited.template?.version, 2);
    await t.publishTemplate({ templateId: tpl.id, version: 2 });
    const done = await eventually(async () => {
      const r = await h.store.get(sent.message?.messageId as string);
      return r && (r.status === "sent" || r.status === "delivered") ? r : undefined;
    });
    assert.equal(done.template_version, 1);
    const texts = h.submitsTo(line).map((s) => s.text);
    assert.equal(texts.length, 1);
    assert.match(texts[0] as string, /^공지 v1: /, "the scheduled message sent version 1's text");
  });

  it("Korean text of 71 characters goes as two concatenated segments", async () => {
    h.clock.set(kst("2026-12-01T13:00"));
    const line = await h.line();
    const text = "가".repeat(71);
    const tpl = await h.template(`long-${h.tag}`, Channel.SMS, text);
    const sent = await (await messages()).sendMessage({
      requestId: `long:${randomUUID()}`,
      subscriptionId: line.subscriptionId,
      templateId: tpl.id,
    });
    await eventually(async () => {
      const r = await h.store.get(sent.message?.messageId as string);
      return r?.status === "delivered" ? r : undefined;
    });
    const parts = h.submitsTo(line);
    assert.equal(parts.length, 2, "two submit_sm");
    assert.deepEqual(
      parts.map((p) => p.text.length),
      [67, 4],
    );
    assert.equal(parts.map((p) => p.text).join(""), text);
    assert.deepEqual([...(parts[0]?.udh ?? [])].slice(3, 5), [2, 1], "UDH: part 1 of 2");
    const got = await (await messages()).getMessage({ messageId: sent.message?.messageId as string });
    assert.equal(got.message?.segments, 2);
    assert.equal(got.message?.status, DeliveryStatus.DELIVERED, "delivered once both parts' receipts came");
  });

  it("e-mail goes over SMTP with values HTML-escaped; push as an FCM-style request", async () => {
    h.clock.set(kst("2026-12-01T16:00"));
    const line = await h.line();
    const invoice = {
      requestId: `invoice-issued:${line.subscriptionId}:2026-11`,
      subscriptionId: line.subscriptionId,
      kind: NotificationKind.INVOICE_ISSUED,
      variables: { month: "2026-11 <b>" },
      detail: {
        case: "invoiceIssued" as const,
        value: {
          invoiceId: "INV-1",
          month: "2026-11",
          total: { currencyCode: "KRW", amountMinor: 45_100n },
          dueDate: "2026-12-25",
        },
      },
    };
    await h.request(invoice, { ...h.threshold(line, 80), channels: [Channel.PUSH] });
    await settled(invoice.requestId, ["sent"], "email");
    const mail = h.smtp.mails.find((m) => m.to.includes(line.email));
    assert.ok(mail, "the SMTP server got the invoice mail");
    const split = mail.raw.search(/\r?\n\r?\n/);
    const head = mail.raw.slice(0, split);
    const body = mail.raw.slice(split).trim();
    const encoding = /^content-transfer-encoding:\s*(\S+)/im.exec(head)?.[1]?.toLowerCase();
    const html =
      encoding === "base64"
        ? Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8")
        : encoding === "quoted-printable"
          ? Buffer.from(
              body
                .replace(/=\r?\n/g, "")
                .replace(/=([0-9A-F]{2})/gi, (_, x: string) => String.fromCharCode(Number.parseInt(x, 16))),
              "latin1",
            ).toString("utf8")
          : body;
    assert.match(head, /^content-type: text\/html; charset=utf-8/im);
    assert.ok(html.includes("<b>45,100원</b>"), "the total, formatted, in the operator's HTML");
    assert.ok(html.includes("2026-11 &lt;b&gt;"), "a variable's value is escaped in the HTML body");
    await settled(h.threshold(line, 80).requestId as string, ["sent"], "push");
    const push = h.push.requests.find((r) => JSON.stringify(r.body).includes(`line-${line.subscriptionId}`));
    assert.ok(push, "the push endpoint got the alert for the line's topic");
  });

  it("a sender that died while handing a message over never sends it again; one that died before does", async () => {
    h.clock.set(kst("2026-12-01T17:00"));
    await h.stopDispatcher();
    const lines = [await h.line(), await h.line()];
    const [written, notYet] = lines.map((l) => h.threshold(l, 50));
    await h.request(written as never, notYet as never);
    await settled(written?.requestId as string, ["queued"]);
    await settled(notYet?.requestId as string, ["queued"]);
    // A dispatcher claims both and dies: one after it began writing to the SMSC, one before.
    const claimed = await h.store.claimDue(["sms"], new Date(h.clock.now()), 100, 300);
    const w = claimed.find((r) => r.request_id === written?.requestId);
    assert.ok(w && claimed.some((r) => r.request_id === notYet?.requestId));
    assert.ok(await h.store.markSubmitting(w.message_id, w.claim_token as string, "smpp", 1));
    await sleep(400);
    await h.startDispatcher();
    const unknown = await settled(written?.requestId as string, ["failed"]);
    assert.match(unknown.reason, /outcome unknown/);
    await settled(notYet?.requestId as string, ["delivered"]);
    assert.equal(h.submitsTo(lines[0] as Line).length, 0, "the interrupted one is not sent again");
    assert.equal(h.submitsTo(lines[1] as Line).length, 1);
  });

  it("records that are not requests, and requests without a template, are dead-lettered; good ones keep flowing", async () => {
    h.clock.set(kst("2026-12-01T18:00"));
    const line = await h.line();
    await h.producer.send({
      topic: h.topics.requests,
      messages: [{ key: line.subscriptionId, value: Buffer.from([0xff, 0x01, 0x02, 0x03]) }],
    });
    await h.request(
      {
        ...h.threshold(line, 80),
        requestId: `nolevel:${line.subscriptionId}`,
        detail: { case: "usageThreshold", value: { month: "2026-12", level: 70 } },
      } as never,
      { ...h.threshold(line, 80), channels: [Channel.EMAIL], requestId: `noemailtemplate:${line.subscriptionId}` },
      h.threshold(line, 80),
    );
    await settled(h.threshold(line, 80).requestId as string, ["delivered"]);
    const reasons = await eventually(async () => {
      const mine = h.dead
        .filter((m) => m.key?.toString() === line.subscriptionId)
        .map((m) => headerString(m.headers, DLQ.reason));
      return mine.length === 3 ? mine : undefined;
    });
    assert.ok(
      reasons.some((r) => /not a valid telco.message.v1.NotificationRequest/.test(r ?? "")),
      "random bytes",
    );
    assert.ok(
      reasons.some((r) => /level: 50, 80 or 100/.test(r ?? "")),
      "a level that does not exist",
    );
    assert.ok(
      reasons.some((r) => /no active email template "usage-threshold-80"/.test(r ?? "")),
      "no template",
    );
  });

  it("SendMessage and the other RPCs name the offending fields; cancel stops a scheduled message", async () => {
    const m = await messages();
    const err = await rejects(
      m.sendMessage({ requestId: "", subscriptionId: "no spaces", templateId: "x" }),
      Code.InvalidArgument,
    );
    for (const f of ["request_id", "subscription_id", "template_id"]) assert.match(err.rawMessage, new RegExp(`${f}:`));
    await rejects(m.getMessage({ messageId: "nope" }), Code.InvalidArgument);
    await rejects(m.getMessage({ messageId: randomUUID() }), Code.NotFound);
    const line = await h.line();
    const tpl = await h.template(`cancel-${h.tag}`, Channel.SMS, "취소될 메시지");
    const scheduled = await m.sendMessage({
      requestId: `cancel:${randomUUID()}`,
      subscriptionId: line.subscriptionId,
      templateId: tpl.id,
      sendAt: timestampFromMs(h.clock.now() + 3_600_000),
    });
    const cancelled = await m.cancelMessage({ messageId: scheduled.message?.messageId as string });
    assert.equal(cancelled.message?.status, DeliveryStatus.CANCELLED);
    await rejects(m.cancelMessage({ messageId: scheduled.message?.messageId as string }), Code.FailedPrecondition);
    const list = await m.listMessages({ subscriptionId: line.subscriptionId });
    assert.equal(list.messages.length, 1);
    // The log names each message's template, as GetMessage does.
    assert.equal(list.messages[0]?.templateName, `cancel-${h.tag}`);
    assert.equal(
      list.messages[0]?.templateName,
      (await m.getMessage({ messageId: scheduled.message?.messageId as string })).message?.templateName,
    );
    // A subscriber sees only their own line's messages.
    const other = grpcClient(MessageService, h.units.at.message.url, await tokenFor("subscriber", ["L-someone-else"]));
    await rejects(other.listMessages({ subscriptionId: line.subscriptionId }), Code.PermissionDenied);
  });

  it("the per-line daily cap holds across dispatchers (atomic in Redis)", async () => {
    const limits = new Limits(h.redis);
    const line = `L-cap-${randomUUID().slice(0, 8)}`;
    const taken = await Promise.all(Array.from({ length: 50 }, () => limits.takeDaily(line, "sms", "2026-12-01", 7)));
    assert.equal(taken.filter(Boolean).length, 7);
  });
});
