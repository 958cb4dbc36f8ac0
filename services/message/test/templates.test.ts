/**
 * Template versions against the real PostgreSQL test database, through the message unit's server:
 * edits as new versions, the lost-update guard, publish and rollback (also concurrent), the
 * checks on saved texts and on rendered values, diffs, previews with SMS counts, and who may call
 * what. The renderer the delivery side uses is tested directly as well.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { Channel } from "../../../gen/telco/message/v1/events_pb.js";
import {
  DiffLine_Op,
  SmsEncoding,
  TemplateService,
  TemplateStatus,
  VariableType,
} from "../../../gen/telco/message/v1/template_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { unique } from "../../../test/support/env.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { TemplateServiceImpl } from "../src/handlers/template-service.js";
import { TemplateStore } from "../src/store/template-store.js";
import { formatBytes, formatMoney, RenderError, renderTemplate } from "../src/templates/render.js";

let units: RunningUnits;
let client: ReturnType<typeof grpcClient<typeof TemplateService>>;
let viewer: ReturnType<typeof grpcClient<typeof TemplateService>>;
let service: ReturnType<typeof grpcClient<typeof TemplateService>>;

before(async () => {
  units = await startUnits();
  client = grpcClient(TemplateService, units.at.message.url, await tokenFor("operator"));
  viewer = grpcClient(TemplateService, units.at.message.url, await tokenFor("viewer"));
  service = grpcClient(TemplateService, units.at.message.url, await tokenFor("service", [], "message-delivery"));
});
after(async () => {
  await units?.stop();
});

const name = (prefix: string) => unique(prefix).toLowerCase();

/** An SMS template (version 1, a draft) with a required name and an optional percent. */
async function smsTemplate(body = "{{user_name}}님, 데이터 {{percent}}% 사용") {
  const t = await client.createTemplate({
    name: name("tpl"),
    channel: Channel.SMS,
    body,
    variables: [
      { name: "user_name", type: VariableType.STRING, required: true, example: "홍길동" },
      { name: "percent", type: VariableType.NUMBER, required: false, example: "80" },
    ],
  });
  assert.ok(t.template);
  return t.template;
}

const edit = (templateId: string, baseVersion: number, body: string) =>
  client.updateTemplate({
    templateId,
    baseVersion,
    body,
    variables: [
      { name: "user_name", type: VariableType.STRING, required: true, example: "홍길동" },
      { name: "percent", type: VariableType.NUMBER, required: false, example: "80" },
    ],
  });

describe("template versions", () => {
  it("stores an edit as version n+1, a draft, and leaves version n as it was", async () => {
    const v1 = await smsTemplate();
    const v2 = (await edit(v1.templateId, 1, "{{user_name}}님, {{percent}}% 썼어요")).template;
    assert.equal(v2?.version, 2);
    assert.equal(v2?.status, TemplateStatus.DRAFT);
    assert.equal(v2?.name, v1.name);
    const again = await client.getTemplate({ templateId: v1.templateId, version: 1 });
    assert.equal(again.template?.body, v1.body);
    assert.equal(again.template?.status, TemplateStatus.DRAFT);
    const list = await client.listTemplateVersions({ templateId: v1.templateId });
    assert.deepEqual(
      list.versions.map((v) => [v.version, v.body]),
      [
        [2, "{{user_name}}님, {{percent}}% 썼어요"],
        [1, v1.body],
      ],
    );
    // The database refuses to overwrite a version's text, whoever asks.
    await assert.rejects(
      units.knex
        .message("template_versions")
        .where({ template_id: v1.templateId, version: 1 })
        .update({ body: "overwritten" }),
      /immutable/,
    );
    await rejects(client.listTemplateVersions({ templateId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound);
  });

  it("refuses an edit from a stale base version with ABORTED naming base_version", async () => {
    const v1 = await smsTemplate();
    await edit(v1.templateId, 1, "{{user_name}}님 두 번째");
    const err = await rejects(edit(v1.templateId, 1, "{{user_name}}님 늦은 편집"), Code.Aborted);
    assert.deepEqual(
      fieldViolations(err).map((v) => v.field),
      ["base_version"],
    );
    assert.match(err.message, /base_version.*latest version \(2\)/);
    await rejects(edit(v1.templateId, 7, "{{user_name}}"), Code.NotFound);
    await rejects(edit("00000000-0000-4000-8000-000000000000", 1, "{{user_name}}"), Code.NotFound);
    const zero = await rejects(edit(v1.templateId, 0, "{{user_name}}"), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(zero).map((v) => v.field),
      ["base_version"],
    );

    // Concurrent edits from the same base: exactly one is stored.
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => edit(v1.templateId, 2, `{{user_name}}님 동시 편집 ${i}`)),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) if (r.status === "rejected") await rejects(Promise.reject(r.reason), Code.Aborted);
    const versions = await client.listTemplateVersions({ templateId: v1.templateId });
    assert.deepEqual(
      versions.versions.map((v) => v.version),
      [3, 2, 1],
    );
  });

  it("publishes and rolls back: one active version, and version 0 follows it", async () => {
    const v1 = await smsTemplate();
    const id = v1.templateId;
    const active = async () => (await client.getTemplate({ templateId: id, version: 0 })).template?.version;
    const statuses = async () =>
      (await client.listTemplateVersions({ templateId: id })).versions.map((v) => [
        v.version,
        TemplateStatus[v.status],
      ]);

    await rejects(client.rollbackTemplate({ templateId: id, version: 1 }), Code.FailedPrecondition);
    const published = await client.publishTemplate({ templateId: id, version: 1 });
    assert.equal(published.template?.status, TemplateStatus.ACTIVE);
    await edit(id, 1, "{{user_name}}님 v2");
    assert.equal(await active(), 1, "a new draft does not change what is sent");
    await client.publishTemplate({ templateId: id, version: 2 });
    assert.equal(await active(), 2);
    assert.deepEqual(await statuses(), [
      [2, "ACTIVE"],
      [1, "ARCHIVED"],
    ]);
    // Publishing the active one again changes nothing.
    assert.equal(
      (await client.publishTemplate({ templateId: id, version: 2 })).template?.status,
      TemplateStatus.ACTIVE,
    );

    const rolled = await client.rollbackTemplate({ templateId: id, version: 1 });
    assert.equal(rolled.template?.version, 1);
    assert.equal(rolled.template?.status, TemplateStatus.ACTIVE);
    assert.equal(await active(), 1);
    assert.deepEqual(await statuses(), [
      [2, "ARCHIVED"],
      [1, "ACTIVE"],
    ]);

    const same = await rejects(client.rollbackTemplate({ templateId: id, version: 1 }), Code.FailedPrecondition);
    assert.match(same.message, /not older than the active version 1/);
    await rejects(client.rollbackTemplate({ templateId: id, version: 2 }), Code.FailedPrecondition);
    await rejects(client.publishTemplate({ templateId: id, version: 9 }), Code.NotFound);
    await rejects(client.rollbackTemplate({ templateId: id, version: 0 }), Code.InvalidArgument);
    await rejects(
      client.publishTemplate({ templateId: "00000000-0000-4000-8000-000000000000", version: 1 }),
      Code.NotFound,
    );
    // Forward again: an archived newer version can be published.
    await client.publishTemplate({ templateId: id, version: 2 });
    assert.equal(await active(), 2);
  });

  it("keeps exactly one active version under concurrent publishes", async () => {
    const v1 = await smsTemplate();
    for (let base = 1; base < 6; base++) await edit(v1.templateId, base, `{{user_name}}님 v${base + 1}`);
    const results = await Promise.allSettled(
      [1, 2, 3, 4, 5, 6, 3, 5].map((version) => client.publishTemplate({ templateId: v1.templateId, version })),
    );
    assert.deepEqual(
      results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason)),
      [],
    );
    const rows = await units.knex.message("template_versions").where({ template_id: v1.templateId, status: "active" });
    assert.equal(rows.length, 1);
    assert.equal((await client.getTemplate({ templateId: v1.templateId })).template?.version, rows[0].version);
  });

  it("rejects an edit with a placeholder it does not declare, naming the field", async () => {
    const v1 = await smsTemplate();
    const err = await rejects(
      client.updateTemplate({
        templateId: v1.templateId,
        baseVersion: 1,
        body: "{{user_name}}님, {{amount}}원",
        variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
      }),
      Code.InvalidArgument,
    );
    const v = fieldViolations(err);
    assert.deepEqual(
      v.map((x) => x.field),
      ["body"],
    );
    assert.match(v[0]?.description ?? "", /\{\{amount\}\} is not a declared variable/);

    const mail = await client.createTemplate({
      name: name("mail"),
      channel: Channel.EMAIL,
      subject: "안내",
      body: "<p>{{user_name}}</p>",
      variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
    });
    const mailErr = await rejects(
      client.updateTemplate({
        templateId: mail.template?.templateId ?? "",
        baseVersion: 1,
        subject: "{{month}} 청구서",
        body: "<p>{{user_name}}</p>",
        variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
      }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(mailErr).map((x) => x.field),
      ["subject"],
    );
    const noSubject = await rejects(
      client.updateTemplate({ templateId: mail.template?.templateId ?? "", baseVersion: 1, body: "x" }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(noSubject).map((x) => x.field),
      ["subject"],
      "an e-mail edit needs a subject too",
    );
  });
});

describe("rendering", () => {
  it("names a required variable without value, and renders an optional one as empty", async () => {
    const t = await client.createTemplate({
      name: name("render"),
      channel: Channel.PUSH,
      subject: "알림",
      body: "{{user_name}}님{{suffix}}, {{percent}}%",
      variables: [
        { name: "user_name", type: VariableType.STRING, required: true },
        { name: "suffix", type: VariableType.STRING, required: false },
        { name: "percent", type: VariableType.NUMBER, required: true, example: "80" },
      ],
    });
    const id = t.template?.templateId ?? "";
    const err = await rejects(client.renderPreview({ templateId: id }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(err).map((x) => x.field),
      ["variables.user_name"],
    );
    const blank = await rejects(
      client.renderPreview({ templateId: id, variables: { user_name: "  " } }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(blank).map((x) => x.field),
      ["variables.user_name"],
      "a blank value is no value",
    );
    const ok = await client.renderPreview({ templateId: id, variables: { user_name: "김철수" } });
    assert.equal(ok.body, "김철수님, 80%", "optional without value → empty; percent takes its example");
    assert.equal(ok.sms, undefined, "SMS info only for SMS templates");
    const unknown = await rejects(
      client.renderPreview({ templateId: id, variables: { user_name: "a", nickname: "b" } }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(unknown).map((x) => x.field),
      ["variables.nickname"],
    );
  });

  it("escapes e-mail values for HTML and leaves the template's own HTML alone", async () => {
    const t = await client.createTemplate({
      name: name("html"),
      channel: Channel.EMAIL,
      subject: "{{user_name}}님의 청구서",
      body: '<p class="greeting">안녕하세요 <b>{{user_name}}</b>님</p>',
      variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
    });
    const value = `<script>alert("x")</script> & 'Tom'`;
    const r = await client.renderPreview({ templateId: t.template?.templateId ?? "", variables: { user_name: value } });
    assert.equal(
      r.body,
      '<p class="greeting">안녕하세요 <b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;Tom&#39;</b>님</p>',
    );
    assert.equal(r.subject, `${value}님의 청구서`, "the subject is a header, not HTML");
  });

  it("checks and formats typed values, naming each wrong one", async () => {
    const t = await client.createTemplate({
      name: name("typed"),
      channel: Channel.PUSH,
      subject: "{{month_end}}",
      body: "{{percent}}% · {{used}} · {{amount}}원 · {{month_end}}",
      variables: [
        { name: "percent", type: VariableType.NUMBER, required: true },
        { name: "used", type: VariableType.BYTES, required: true },
        { name: "amount", type: VariableType.MONEY, required: true },
        { name: "month_end", type: VariableType.DATE, required: true },
      ],
    });
    const id = t.template?.templateId ?? "";
    const r = await client.renderPreview({
      templateId: id,
      variables: { percent: "80.5", used: String((3n * 1024n ** 3n) / 2n), amount: "12345", month_end: "2026-12-31" },
    });
    assert.equal(r.body, "80.5% · 1.5 GB · 12,345원 · 2026-12-31");
    const err = await rejects(
      client.renderPreview({
        templateId: id,
        variables: { percent: "eighty", used: "1.5GB", amount: "12,345", month_end: "2026-02-30" },
      }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(err).map((x) => x.field),
      ["variables.percent", "variables.used", "variables.amount", "variables.month_end"],
    );
    assert.doesNotMatch(err.message, /eighty|2026-02-30/, "values are never echoed");
  });

  it("is a pure function the delivery side can call, with a typed error", () => {
    const version = {
      channel: "sms" as const,
      subject: "",
      body: "{{name}} {{bill}}원, {{quota}}, {{due}}",
      variables: [
        { name: "name", type: "string", required: true, example: "" },
        { name: "bill", type: "money", required: true, example: "" },
        { name: "quota", type: "bytes", required: false, example: "" },
        { name: "due", type: "date", required: false, example: "" },
      ],
    };
    assert.deepEqual(
      renderTemplate(version, {
        name: "<홍>",
        bill: "-1234567",
        quota: String(110n * 1024n ** 3n),
        due: "2026-12-01T23:30:00+09:00",
      }),
      { subject: "", body: "<홍> -1,234,567원, 110 GB, 2026-12-01" },
      "SMS is not HTML: no escaping; a date-time shows its own calendar date",
    );
    assert.throws(
      () => renderTemplate(version, Object.assign(Object.create(null), { bill: "1" })),
      (e: unknown) => e instanceof RenderError && e.variable === "name" && e.problems[0]?.reason === "missing",
    );
    assert.throws(
      () => renderTemplate(version, { name: "a", bill: "1.5" }),
      (e: unknown) => e instanceof RenderError && e.variable === "bill" && e.problems[0]?.reason === "type",
    );
    // Inherited properties are no values.
    const proto = {
      ...version,
      body: "{{constructor}}",
      variables: [{ name: "constructor", type: "string", required: true, example: "" }],
    };
    assert.throws(() => renderTemplate(proto, {}), RenderError);
    assert.deepEqual([0n, 1023n, 1024n, 1536n, 1048575n, 10n ** 9n, 2n ** 64n - 1n].map(formatBytes), [
      "0 B",
      "1023 B",
      "1 KB",
      "1.5 KB",
      "1 MB",
      "953.7 MB",
      "16 EB",
    ]);
    assert.deepEqual([0n, 999n, 1000n, -12345n].map(formatMoney), ["0", "999", "1,000", "-12,345"]);
  });
});

describe("diffs, lists and previews", () => {
  it("diffs two versions' subject and body by line, and their variables by name", async () => {
    const t = await client.createTemplate({
      name: name("diff"),
      channel: Channel.EMAIL,
      subject: "청구서 안내",
      body: "<p>안녕하세요 {{user_name}}님</p>\n<p>이번 달 요금은 {{amount}}원입니다.</p>\n<p>감사합니다.</p>",
      variables: [
        { name: "user_name", type: VariableType.STRING, required: true },
        { name: "amount", type: VariableType.MONEY, required: true },
        { name: "plan", type: VariableType.STRING, required: false },
      ],
    });
    const id = t.template?.templateId ?? "";
    await client.updateTemplate({
      templateId: id,
      baseVersion: 1,
      subject: "청구서 안내",
      body: "<p>안녕하세요 {{user_name}}님</p>\n<p>{{month}} 요금은 {{amount}}원입니다.</p>\n<p>납부일: {{due}}</p>\n<p>감사합니다.</p>",
      variables: [
        { name: "user_name", type: VariableType.STRING, required: true },
        { name: "amount", type: VariableType.MONEY, required: false },
        { name: "month", type: VariableType.STRING, required: true },
        { name: "due", type: VariableType.DATE, required: true },
      ],
    });
    const d = await viewer.diffTemplateVersions({ templateId: id, fromVersion: 1, toVersion: 2 });
    const show = (lines: typeof d.body) => lines.map((l) => `${DiffLine_Op[l.op]} ${l.text}`);
    assert.deepEqual(show(d.subject), ["SAME 청구서 안내"]);
    assert.deepEqual(show(d.body), [
      "SAME <p>안녕하세요 {{user_name}}님</p>",
      "REMOVED <p>이번 달 요금은 {{amount}}원입니다.</p>",
      "ADDED <p>{{month}} 요금은 {{amount}}원입니다.</p>",
      "ADDED <p>납부일: {{due}}</p>",
      "SAME <p>감사합니다.</p>",
    ]);
    assert.deepEqual(
      [d.variablesAdded, d.variablesRemoved, d.variablesChanged],
      [["month", "due"], ["plan"], ["amount"]],
    );
    const back = await client.diffTemplateVersions({ templateId: id, fromVersion: 2, toVersion: 1 });
    assert.deepEqual([back.variablesAdded, back.variablesRemoved], [["plan"], ["month", "due"]]);
    await rejects(client.diffTemplateVersions({ templateId: id, fromVersion: 1, toVersion: 3 }), Code.NotFound);
    const bad = await rejects(
      client.diffTemplateVersions({ templateId: id, fromVersion: 0, toVersion: 0 }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(bad).map((x) => x.field),
      ["from_version", "to_version"],
    );
  });

  it("previews an SMS with its encoding and segments", async () => {
    const t = await smsTemplate("{{user_name}}님, 이번 달 데이터의 {{percent}}%를 사용하셨습니다.");
    const id = t.templateId;
    const short = await service.renderPreview({ templateId: id });
    assert.equal(short.body, "홍길동님, 이번 달 데이터의 80%를 사용하셨습니다.");
    assert.equal(short.sms?.encoding, SmsEncoding.UCS2);
    assert.equal(short.sms?.units, short.body.length);
    assert.equal(short.sms?.segments, 1);
    assert.equal(short.sms?.longMessage, false);
    assert.equal(short.sms?.maxSegments, 10);
    assert.equal(short.sms?.remainingInSegment, 70 - short.body.length);

    const long = await service.renderPreview({ templateId: id, variables: { user_name: "가".repeat(100) } });
    const units = 100 + short.body.length - "홍길동".length;
    assert.equal(long.sms?.units, units);
    assert.equal(long.sms?.segments, Math.ceil(units / 67));
    assert.equal(long.sms?.longMessage, true);
    assert.equal(long.sms?.remainingInSegment, 67 - (units % 67 || 67));
  });

  it("previews a GSM-7 SMS, and reports the configured maximum", async () => {
    const t = await smsTemplate("Hi {{user_name}}, you used {{percent}}% of your data [80% alert] ~ thanks");
    const local = createClient(
      TemplateService,
      createRouterTransport((router) =>
        router.service(
          TemplateService,
          new TemplateServiceImpl(new TemplateStore(units.knex.message), { smsMaxSegments: 2 }),
        ),
      ),
    );
    const r = await local.renderPreview({ templateId: t.templateId, variables: { user_name: "Kim" } });
    assert.equal(r.body, "Hi Kim, you used 80% of your data [80% alert] ~ thanks");
    assert.equal(r.sms?.encoding, SmsEncoding.GSM7);
    assert.equal(r.sms?.units, r.body.length + 3, "[ ] ~ count two septets each");
    assert.equal(r.sms?.maxSegments, 2);
    assert.throws(() => new TemplateServiceImpl(new TemplateStore(units.knex.message), { smsMaxSegments: 0 }));
  });

  it("lists templates by name, a page at a time, filtered by channel", async () => {
    const prefix = name("list");
    const ids: string[] = [];
    for (const suffix of ["c", "a", "b"]) {
      const t = await client.createTemplate({
        name: `${prefix}-${suffix}`,
        channel: Channel.EMAIL,
        subject: "s",
        body: "b",
      });
      ids.push(t.template?.templateId ?? "");
    }
    await client.updateTemplate({ templateId: ids[1] ?? "", baseVersion: 1, subject: "s", body: "b2" });
    await client.publishTemplate({ templateId: ids[0] ?? "", version: 1 });
    const seen: { name: string; version: number; status: TemplateStatus; channel: Channel }[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await service.listTemplates({ channel: Channel.EMAIL, pageSize: 2, pageToken });
      assert.ok(page.templates.length <= 2);
      seen.push(...page.templates);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 10_000);
    assert.ok(seen.every((t) => t.channel === Channel.EMAIL));
    const names = seen.map((t) => t.name);
    assert.deepEqual(names, [...names].sort(), "ordered by name");
    assert.deepEqual(
      seen
        .filter((t) => t.name.startsWith(prefix))
        .map((t) => [t.name.slice(prefix.length), t.version, TemplateStatus[t.status]]),
      [
        ["-a", 2, "DRAFT"],
        ["-b", 1, "DRAFT"],
        ["-c", 1, "ACTIVE"],
      ],
      "each template's active version, or its latest",
    );
    const bad = await rejects(service.listTemplates({ pageSize: 501, pageToken: "garbage!" }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(bad).map((x) => x.field),
      ["page_size", "page_token"],
    );
  });

  it("lets staff read and only writers change", async () => {
    const t = await smsTemplate();
    await rejects(
      viewer.updateTemplate({ templateId: t.templateId, baseVersion: 1, body: "x" }),
      Code.PermissionDenied,
    );
    await rejects(viewer.publishTemplate({ templateId: t.templateId, version: 1 }), Code.PermissionDenied);
    await rejects(
      service.diffTemplateVersions({ templateId: t.templateId, fromVersion: 1, toVersion: 1 }),
      Code.PermissionDenied,
    );
    assert.equal((await viewer.listTemplateVersions({ templateId: t.templateId })).versions.length, 1);
    assert.equal((await service.renderPreview({ templateId: t.templateId })).body, "홍길동님, 데이터 80% 사용");
  });
});
