/**
 * The portal in Debian's Chromium (playwright-core, /usr/bin/chromium; no browser downloads),
 * against the four units as their own processes on real PostgreSQL, Redis and Kafka (with a real
 * SMSC), through the portal's local gateway (services/portal/gateway.ts) serving the built app.
 * Screenshots of each page go to .data/screenshots/ (the data in them is the test's own, made up).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Redis } from "ioredis";
import { type Browser, chromium, type Page } from "playwright-core";
import { build } from "vite";
import { SubscriptionService } from "../gen/telco/domain/v1/subscription_pb.js";
import { UsageEventSchema } from "../gen/telco/usage/v1/events_pb.js";
import { UsageService } from "../gen/telco/usage/v1/usage_pb.js";
import { OperatorStore } from "../services/domain/src/store/operator-store.js";
import { createKafka, createProducer, encodeRecord, publish } from "../services/kit/src/kafka.js";
import { createKnex } from "../services/kit/src/postgres.js";
import { createGateway } from "../services/portal/gateway.js";
import { tokenFor } from "./support/auth.js";
import { grpcClient } from "./support/clients.js";
import { eventually, KAFKA_BROKERS, testLogger, unique } from "./support/env.js";
import { Platform } from "./support/platform.js";
import { ROOT } from "./support/processes.js";

const REDIS_URL = "redis://127.0.0.1:6379/9";
const INFLUX_URL = "http://127.0.0.1:8086";
/** The usage history's own database, dropped afterwards. */
const INFLUX_DB = `portal_${process.pid}_${Date.now()}`;
const SHOTS = join(ROOT, ".data", "screenshots");
const PASSWORD = "correct horse battery";
const thisMonth = () =>
  new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Seoul", year: "numeric", month: "2-digit" })
    .format(new Date())
    .slice(0, 7);

let platform: Platform;
let gateway: Server;
let base = "";
let browser: Browser;
let line: { subscriptionId: string; msisdn: string; personal: string[] };
let quota = 0n;
const users = {
  operator: unique("op")
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, ""),
  viewer: "",
  subscriber: "",
};
users.viewer = users.operator.replace(/^op/, "vw");
users.subscriber = users.operator.replace(/^op/, "sb");
/** Another customer's line: the subscriber must not see it. */
let other: { subscriptionId: string; customerId: string };
/** A customer who gave up their line today: its number is held for them and comes back. */
let leaver: { phone: string; msisdn: string };

before(async () => {
  const redis = new Redis(REDIS_URL);
  await redis.flushdb();
  redis.disconnect();
  platform = new Platform({
    redisUrl: REDIS_URL,
    // The usage unit also writes the usage history (InfluxDB), flushed often for the chart.
    env: {
      USAGE_COMPONENTS: "aggregator,relay,quotas,timeseries",
      USAGE_TIMESERIES_FLUSH_MS: "500",
      INFLUX_URL,
      INFLUX_DB,
    },
  });
  await platform.start();
  await platform.alertTemplates();
  line = await platform.line();
  const usage = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("operator"));
  const known = await eventually(
    async () => {
      const u = await usage
        .getLineUsage({ subscriptionId: line.subscriptionId, month: thisMonth() })
        .catch(() => undefined);
      return u?.quotaKnown && u.quotaBytes > 0n ? u : undefined;
    },
    60_000,
    "the line's quota at the usage unit",
  );
  quota = known.quotaBytes;
  const knex = createKnex({ url: platform.url, schema: "domain", poolMax: 1 });
  try {
    // The line has been active for four months (its plan too), so that last month bills it.
    await knex.raw(
      "update domain.subscriptions set activated_at = now() - interval '120 days' where subscription_id = ?",
      [line.subscriptionId],
    );
    await knex.raw(
      "update domain.subscription_plan set valid = tstzrange(now() - interval '120 days', upper(valid), '[)') where subscription_id = ?",
      [line.subscriptionId],
    );
    const ops = new OperatorStore(knex);
    await ops.create(users.operator, PASSWORD, "operator");
    await ops.create(users.viewer, PASSWORD, "viewer");
    // The line's customer signs in to self-service with an account of their own.
    const { customer_id } = await knex("domain.subscriptions")
      .where({ subscription_id: line.subscriptionId })
      .first<{ customer_id: string }>("customer_id");
    await ops.accounts().createSubscriber(users.subscriber, PASSWORD, customer_id);
    const theirs = await platform.line();
    const owner = await knex("domain.subscriptions")
      .where({ subscription_id: theirs.subscriptionId })
      .first<{ customer_id: string }>("customer_id");
    other = { subscriptionId: theirs.subscriptionId, customerId: owner.customer_id };
    const gone = await platform.line();
    await grpcClient(SubscriptionService, platform.urlOf("domain"), await tokenFor("operator")).terminateLine({
      requestId: randomUUID(),
      subscriptionId: gone.subscriptionId,
    });
    leaver = { phone: gone.personal[2] as string, msisdn: gone.msisdn };
  } finally {
    await knex.destroy();
  }
  await build({ configFile: join(ROOT, "services/portal/vite.config.ts"), logLevel: "warn" });
  gateway = await createGateway({
    upstreams: {
      usage: platform.urlOf("usage"),
      message: platform.urlOf("message"),
      domain: platform.urlOf("domain"),
      batch: platform.urlOf("batch"),
    },
  });
  await new Promise<void>((r) => gateway.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (gateway ? gateway.close(r) : r(undefined)));
  await platform?.stop();
  await fetch(`${INFLUX_URL}/query?q=${encodeURIComponent(`DROP DATABASE "${INFLUX_DB}"`)}`, { method: "POST" }).catch(
    () => undefined,
  );
});

/** A page at a width, collecting console errors and uncaught exceptions. */
async function open(width: number): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width, height: 860 }, locale: "ko-KR" });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base);
  return { page, errors };
}

async function signIn(page: Page, username: string): Promise<void> {
  await page.getByLabel("사용자 이름").fill(username);
  await page.getByLabel("비밀번호").fill(PASSWORD);
  await page.getByRole("button", { name: "로그인" }).click();
  await page.getByRole("heading", { name: "고객" }).waitFor();
}

/** The customer's contact phone, as an operator types it. */
const phoneOf = () => line.personal[2] as string;
const nameOf = () => line.personal[0] as string;

async function openCustomer(page: Page, phone = phoneOf()): Promise<void> {
  await page.getByLabel("검색어").fill(phone);
  await page.getByRole("button", { name: "검색" }).click();
  const results = page.getByTestId("search-results");
  await results.waitFor();
  assert.equal(await results.locator("tbody tr").count(), 1, "one customer has that phone number");
  await results.locator("tbody a").first().click();
  await page.getByTestId("customer-fields").waitFor();
}

// Code that runs in the page (strings: this project's TypeScript has no DOM types).
/** Form controls without an accessible name (label element, aria-label or aria-labelledby). */
const unlabelled = (page: Page) =>
  page.evaluate<string[]>(`[...document.querySelectorAll("input, select, textarea")]
    .filter((e) => e.type !== "hidden")
    .filter((e) => !((e.labels?.length ?? 0) > 0 || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby")))
    .map((e) => e.outerHTML.slice(0, 120))`);

/** Wider than the viewport: something does not fit at this width. */
const overflows = async (page: Page) => {
  const wide = await page.evaluate<string[]>(`[...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest("[data-scroll]"))
    .filter((e) => getComputedStyle(e).position !== "fixed")
    .map((e) => e.tagName + "." + (e.getAttribute("class") ?? "").split(" ")[0] + " " + (e.getAttribute("data-testid") ?? ""))
    .slice(0, 5)`);
  const over = await page.evaluate<boolean>("document.documentElement.scrollWidth > window.innerWidth");
  if (over) console.error(`wider than the viewport: ${wide.join(", ")}`);
  return over;
};

/** A full-page screenshot, from the top (the header is fixed: scrolled, it would cover the page). */
async function shot(page: Page, name: string): Promise<void> {
  await page.evaluate("window.scrollTo(0, 0)");
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
}

/** Picks `option` (matched by its text) in the Mantine select labelled `label`. */
async function choose(page: Page, label: string, option: RegExp): Promise<void> {
  await page.getByRole("combobox", { name: label, exact: true }).click();
  await page.getByRole("option", { name: option }).click();
}

/** The masked national form of an MSISDN (821012345678 → 010-****-5678), as the units show it. */
const maskedOf = (msisdn: string) => `0${msisdn.slice(2, 4)}-****-${msisdn.slice(-4)}`;

/** Waits until the gauge shows at least `percent`. */
const gaugeAtLeast = (page: Page, percent: number) =>
  page.waitForFunction(
    `Number(document.querySelector("[data-testid=usage-gauge]")?.getAttribute("aria-valuenow")) >= ${percent}`,
  );

describe("the portal in Chromium", () => {
  it("an operator signs in, finds the customer by phone, sees them masked, and reveals them with a reason (audited)", async () => {
    const { page, errors } = await open(1280);
    await shot(page, "portal-sign-in.png");
    // A wrong password: the domain unit's message, on the page.
    await page.getByLabel("사용자 이름").fill(users.operator);
    await page.getByLabel("비밀번호").fill("wrong password");
    await page.getByRole("button", { name: "로그인" }).click();
    await page.getByRole("alert").filter({ hasText: "user name or password is wrong" }).waitFor();
    await signIn(page, users.operator);
    await openCustomer(page);
    await shot(page, "portal-customer-masked.png");
    const fields = page.getByTestId("customer-fields");
    assert.equal(await page.getByTestId("pii-state").textContent(), "마스킹됨");
    const masked = (await fields.locator("tr").first().locator("td").textContent()) ?? "";
    assert.ok(masked.includes("*") && masked !== nameOf(), "the name is masked");
    // Reveal without a reason: the field says why not.
    await page.getByRole("button", { name: "개인정보 보기" }).click();
    await page.getByText("required with reveal").waitFor();
    await page.getByLabel("조회 사유").fill("고객 본인 확인 요청");
    await page.getByRole("button", { name: "개인정보 보기" }).click();
    await page.getByTestId("pii-state").filter({ hasText: "원문 표시 중" }).waitFor();
    const clear = (await fields.locator("tr").first().locator("td").textContent()) ?? "";
    assert.ok(clear === nameOf(), "the revealed name is the customer's");
    await shot(page, "portal-customer-revealed.png");
    // The customer's lines, with the plan.
    const lines = page.getByTestId("customer-lines");
    assert.equal(await lines.locator("tbody tr").count(), 1);
    assert.match((await lines.locator("tbody tr").first().textContent()) ?? "", /5G-SLIM-8G/);
    assert.deepEqual(await unlabelled(page), [], "every form control has a label");
    // Chromium logs every non-2xx response: here exactly the two refusals this test provoked
    // (the wrong password, the reveal without a reason), and nothing else.
    assert.deepEqual(
      errors,
      [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)",
        "Failed to load resource: the server responded with a status of 400 (Bad Request)",
      ],
      "no console errors but the provoked refusals",
    );
    await page.context().close();
  });

  it("an operator activates a line (the customer's old number comes back, then a new one), changes its plan, adds a VAS and a discount, sees the history, records a micro-payment", async () => {
    const { page, errors } = await open(1280);
    await signIn(page, users.operator);
    await openCustomer(page, leaver.phone);
    const lines = page.getByTestId("customer-lines");
    assert.equal(await lines.locator("tbody tr").count(), 1, "the terminated line");
    const ended = (await lines.locator("tbody tr").first().textContent()) ?? "";
    assert.match(ended, /TERMINATED/);
    assert.ok(!ended.includes("무제한"), `a terminated line has no quota, not an unlimited one: ${ended}`);
    // The wizard: plan, then the number (this customer's old number is held for them), then the result.
    await page.getByRole("button", { name: "회선 개통" }).click();
    const wizard = page.getByTestId("activate-wizard");
    await choose(page, "요금제", /5G-BASIC-24G/);
    await wizard.getByRole("button", { name: "다음" }).click();
    assert.match((await page.getByTestId("number-outlook").textContent()) ?? "", /해지한 회선이 있습니다/);
    assert.match((await wizard.textContent()) ?? "", new RegExp(`${maskedOf(leaver.msisdn).replace(/\*/g, "\\*")}`));
    await shot(page, "portal-activate-number.png");
    await wizard.getByRole("button", { name: "개통", exact: true }).click();
    const source = page.getByTestId("number-source");
    await source.waitFor();
    assert.equal(await source.getAttribute("data-source"), "RETURNED");
    assert.equal(await source.textContent(), `이전에 쓰던 번호로 개통했습니다: ${maskedOf(leaver.msisdn)}`);
    await shot(page, "portal-activate-returned.png");
    await lines.locator("tbody tr").nth(1).waitFor();
    // A second line: nothing is held any more, so a new number.
    await wizard.getByRole("button", { name: "회선 추가 개통" }).click();
    await choose(page, "요금제", /5G-SLIM-8G/);
    await wizard.getByRole("button", { name: "다음" }).click();
    await wizard.getByRole("button", { name: "개통", exact: true }).click();
    await source.waitFor();
    assert.equal(await source.getAttribute("data-source"), "ALLOCATED");
    const fresh = ((await source.textContent()) ?? "").replace(/^새 번호가 할당되었습니다: /, "");
    assert.match(fresh, /^010-\*{4}-\d{4}$/);
    assert.notEqual(fresh, maskedOf(leaver.msisdn));
    await lines.locator("tbody tr").nth(2).waitFor();
    assert.equal(await lines.locator("tbody tr").count(), 3);
    // The new line: change its plan now, add a VAS and a discount; the timeline shows them all.
    await wizard.getByRole("link", { name: "개통된 회선 열기" }).click();
    const summary = page.getByTestId("line-summary");
    await summary.waitFor();
    assert.equal(await page.getByTestId("plan-in-force").textContent(), "5G-SLIM-8G");
    const history = page.getByTestId("line-history");
    await history.getByText(/요금제: .*5G-SLIM-8G/).waitFor();
    await choose(page, "새 요금제", /5G-STD-110G/);
    await page.getByRole("button", { name: "요금제 변경" }).click();
    await page.getByRole("status").filter({ hasText: "5G-STD-110G 요금제가" }).waitFor();
    await page.getByTestId("plan-in-force").filter({ hasText: "5G-STD-110G" }).waitFor();
    await choose(page, "부가서비스 가입", /CLOUD-50G/);
    await page.getByTestId("line-plan").getByRole("button", { name: "추가" }).first().click();
    await history.locator("[data-kind=vas]").waitFor();
    await choose(page, "할인 적용", /FAMILY-5500/);
    await page.getByTestId("line-plan").getByRole("button", { name: "추가" }).nth(1).click();
    await history.locator("[data-kind=discount]").waitFor();
    const items = await Promise.all(
      (await history.locator("[data-kind]").all()).map(
        async (e) => `${await e.getAttribute("data-kind")}: ${await e.textContent()}`,
      ),
    );
    assert.equal(items.length, 5, items.join("\n"));
    assert.match(items.join("\n"), /^plan: 요금제: .*\(5G-SLIM-8G\).* ~ /m, "the first plan, closed by the change");
    assert.match(items.join("\n"), /^status: 상태: ACTIVE/m, "the activation");
    assert.match(items.join("\n"), /^plan: 요금제: .*\(5G-STD-110G\).*부터$/m, "the new plan, open");
    assert.match(items.join("\n"), /^vas: 부가서비스: .*\(CLOUD-50G\)/m);
    assert.match(items.join("\n"), /^discount: 할인: .*\(FAMILY-5500\)/m);
    await shot(page, "portal-line-plan-history.png");
    // A micro-payment: a negative amount is refused next to the field, then one is recorded.
    const form = page.getByTestId("record-payment");
    await form.getByLabel("가맹점").fill("앱마켓");
    await form.getByLabel("금액 (원)").fill("-500");
    await form.getByRole("button", { name: "결제 등록" }).click();
    await form.getByText("must be positive (whole won)").waitFor();
    // Next to the amount: the field is marked invalid and described by the reason.
    const amount = form.getByLabel("금액 (원)");
    assert.equal(await amount.getAttribute("aria-invalid"), "true");
    const described = (await amount.getAttribute("aria-describedby")) ?? "";
    assert.match((await page.locator(`[id="${described.split(" ").at(-1)}"]`).textContent()) ?? "", /must be positive/);
    await form.getByLabel("금액 (원)").fill("3300");
    await form.getByRole("button", { name: "결제 등록" }).click();
    const payments = page.getByTestId("payments");
    await payments.waitFor();
    assert.equal(await payments.locator("tbody tr").count(), 1);
    assert.match((await payments.locator("tbody tr").first().textContent()) ?? "", /앱마켓.*₩3,300/);
    assert.match((await page.getByTestId("payments-total").textContent()) ?? "", /₩3,300/);
    await shot(page, "portal-line-payments.png");
    assert.deepEqual(await unlabelled(page), [], "every form control has a label");
    assert.deepEqual(
      errors,
      ["Failed to load resource: the server responded with a status of 400 (Bad Request)"],
      "no console errors but the provoked refusal",
    );
    await page.context().close();
  });

  it("usage events pushed into Kafka move the line's gauge live, and the 50 % alert shows as sent", async () => {
    const { page, errors } = await open(1280);
    await signIn(page, users.operator);
    await page.goto(`${base}/#/lines/${encodeURIComponent(line.subscriptionId)}`);
    const gauge = page.getByTestId("usage-gauge");
    await gauge.waitFor();
    await page.getByTestId("live-state").filter({ hasText: "실시간" }).waitFor();
    assert.equal(await gauge.getAttribute("aria-valuenow"), "0");
    await shot(page, "portal-line-usage-0.png");

    const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "portal-test", logger: testLogger("test") });
    const producer = await createProducer(kafka);
    const event = (seq: number, percent: bigint) =>
      encodeRecord(
        UsageEventSchema,
        create(UsageEventSchema, {
          eventId: `portal-${line.subscriptionId}-${seq}`,
          subscriptionId: line.subscriptionId,
          seq: BigInt(seq),
          bytes: (quota * percent) / 100n,
          occurredAt: timestampNow(),
          source: "portal-test",
        }),
        { key: line.subscriptionId },
      );
    try {
      await publish(producer, [{ topic: platform.topics.usage, messages: [event(1, 30n)] }]);
      // The page was not reloaded: the server stream moved the gauge.
      await gaugeAtLeast(page, 30);
      assert.match((await page.getByTestId("alerted-levels").textContent()) ?? "", /없음/);
      await publish(producer, [{ topic: platform.topics.usage, messages: [event(2, 25n)] }]);
      await gaugeAtLeast(page, 55);
      await page.getByTestId("alerted-levels").getByText("50%").waitFor();
    } finally {
      await producer.disconnect();
    }
    assert.equal(Number(await page.getByTestId("usage-gauge").getAttribute("aria-valuenow")), 55);
    await shot(page, "portal-line-usage-55.png");
    // And the alert left as one SMS at the SMSC.
    await eventually(
      async () => (platform.smsc.submitted.some((s) => s.destination === line.msisdn) ? true : undefined),
      30_000,
      "the 50 % alert's submit_sm",
    );
    assert.equal(platform.smsc.submitted.filter((s) => s.destination === line.msisdn).length, 1, "one SMS");
    // The line's message log shows it, with its status history, without a reload.
    const log = page.getByTestId("message-log");
    await log.waitFor({ timeout: 20_000 });
    const row = log.locator("tbody tr").filter({ hasText: "usage-threshold-50" });
    await row
      .getByText("SENT")
      .waitFor({ timeout: 20_000 })
      .catch(async (e: Error) => {
        throw new Error(`${e.message}; the log shows: ${await log.textContent()}`);
      });
    assert.equal(await log.locator("tbody tr").count(), 1, "one message in the log");
    assert.match((await row.textContent()) ?? "", /QUEUED.*SENT/, "its history: queued, then sent");
    await shot(page, "portal-line-messages.png");
    // The usage history (InfluxDB, through the usage unit) has the 55 % too: the day's bar.
    const expected = (quota * 30n) / 100n + (quota * 25n) / 100n;
    await page.waitForFunction(
      `document.querySelector("[data-testid=usage-chart]")?.getAttribute("data-total") === "${expected}"`,
      undefined,
      { timeout: 45_000 },
    );
    await shot(page, "portal-line-usage-chart.png");
    // The month's top lines: this one leads (the others used nothing).
    await page.getByRole("link", { name: "사용량 상위 회선" }).click();
    const top = page.getByTestId("top-lines");
    await top.waitFor();
    const first = (await top.locator("tbody tr").first().textContent()) ?? "";
    assert.ok(first.includes(line.subscriptionId) && first.includes("55.0") && first.includes("50%"), first);
    await shot(page, "portal-top-lines.png");
    assert.deepEqual(errors, [], "no console errors");
    await page.context().close();
  });

  it("a viewer sees the customer masked and is offered no reveal", async () => {
    const { page, errors } = await open(1280);
    await signIn(page, users.viewer);
    assert.equal(await page.getByTestId("signed-in-as").textContent(), "로그인: 조회자");
    await openCustomer(page);
    await page.getByTestId("reveal-not-allowed").waitFor();
    assert.equal(await page.getByRole("button", { name: "개인정보 보기" }).count(), 0);
    assert.equal(await page.getByTestId("pii-state").textContent(), "마스킹됨");
    await shot(page, "portal-customer-viewer.png");
    assert.deepEqual(errors, [], "no console errors");
    await page.context().close();
  });

  it("a template edit creates a version, the diff shows it, the preview counts its SMS segments; publish and roll back", async () => {
    const { page, errors } = await open(1280);
    await signIn(page, users.operator);
    await page.getByRole("link", { name: "템플릿" }).click();
    await page.getByTestId("templates").waitFor();
    await page.getByRole("link", { name: "usage-threshold-100 (ko-KR)" }).click();
    const body = page.getByLabel("본문");
    await body.waitFor();
    assert.equal(await body.inputValue(), "{{month}} 데이터를 100% 사용했습니다.");
    // Korean is UCS-2: 70 characters fit one SMS. This body renders to more than 70.
    const longer =
      "{{month}} 데이터를 100% 모두 사용했습니다. 추가 데이터는 고객센터나 앱에서 신청할 수 있으며, 다음 달 1일에 다시 제공됩니다.";
    await body.fill(longer);
    await page.getByRole("button", { name: "저장 (새 버전)" }).click();
    await page.getByTestId("notice").filter({ hasText: "버전 2(으)로 저장했습니다." }).waitFor();
    const versions = page.getByTestId("versions");
    assert.match((await versions.locator("tr").first().textContent()) ?? "", /v2.*초안/);
    assert.match((await versions.locator("tr").nth(1).textContent()) ?? "", /v1.*게시됨/);
    await versions.getByRole("button", { name: "이전 버전과 비교" }).click();
    const diff = page.getByTestId("diff");
    await diff.waitFor();
    const diffText = (await diff.textContent()) ?? "";
    assert.ok(diffText.includes("- {{month}} 데이터를 100% 사용했습니다."), diffText);
    assert.ok(diffText.includes(`+ ${longer}`), diffText);
    await page.getByLabel("month 예시 값").fill("2026-12");
    await page.getByRole("button", { name: "미리보기 만들기" }).click();
    const info = page.getByTestId("sms-info");
    await info.waitFor();
    const rendered = longer.replace("{{month}}", "2026-12");
    assert.equal(await page.getByTestId("preview").locator("pre").textContent(), rendered);
    assert.match(
      (await info.textContent()) ?? "",
      new RegExp(`UCS2 · 글자 수\\(인코딩 기준\\): ${[...rendered].length} · 세그먼트: 2 · 장문`),
    );
    await shot(page, "portal-template.png");
    await versions.getByRole("button", { name: "게시 v2" }).click();
    await page.getByTestId("notice").filter({ hasText: "v2: 게시됨" }).waitFor();
    assert.match((await versions.locator("tr").first().textContent()) ?? "", /v2.*게시됨/);
    await versions.getByRole("button", { name: "이 버전으로 되돌리기" }).click();
    await page.getByTestId("notice").filter({ hasText: "v1: 게시됨" }).waitFor();
    assert.match((await versions.locator("tr").nth(1).textContent()) ?? "", /v1.*게시됨/);
    assert.deepEqual(await unlabelled(page), [], "every form control has a label");
    assert.deepEqual(errors, [], "no console errors");
    await page.context().close();
  });

  it("a billing run for last month: started from the page, followed live to COMPLETED, then in its history; bad and repeated starts are refused readably", async () => {
    const { page, errors } = await open(1280);
    await signIn(page, users.operator);
    await page.getByRole("link", { name: "청구" }).click();
    const month = page.getByLabel("청구 월 (YYYY-MM)");
    await month.waitFor();
    // Bad input first: the batch unit's reason, next to the field.
    await month.fill("2026-13");
    await page.getByRole("button", { name: "청구 시작" }).click();
    await page
      .getByText(/YYYY-MM/)
      .nth(1)
      .waitFor();
    const previous = (() => {
      const [y, m] = thisMonth().split("-").map(Number) as [number, number];
      return m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, "0")}`;
    })();
    await month.fill(previous);
    await page.getByRole("button", { name: "청구 시작" }).click();
    const watched = page.getByTestId("watched");
    await watched.waitFor();
    assert.match((await watched.textContent()) ?? "", new RegExp(previous));
    await page.getByTestId("watched-status").filter({ hasText: "COMPLETED" }).waitFor({ timeout: 60_000 });
    assert.ok((await page.getByTestId("partition").count()) >= 1, "a progress bar per step");
    // The platform has one line, active all of last month: one line billed.
    assert.equal(await page.getByTestId("watched-items").textContent(), "1 / 1 회선");
    const history = page.getByTestId("executions");
    await history.locator("tbody tr").filter({ hasText: previous }).filter({ hasText: "COMPLETED" }).waitFor();
    await shot(page, "portal-billing.png");
    await page.getByRole("button", { name: "청구 시작" }).click();
    await page.getByRole("alert").filter({ hasText: "FailedPrecondition" }).waitFor();
    // The line's invoice of that month, with its lines, on the line's page.
    await page.goto(`${base}/#/lines/${encodeURIComponent(line.subscriptionId)}`);
    const invoices = page.getByTestId("invoices");
    await invoices.waitFor();
    const row = invoices.locator("tbody tr").filter({ hasText: previous });
    assert.equal(await invoices.locator("tbody tr").count(), 1, "one invoice");
    assert.match((await row.textContent()) ?? "", new RegExp(`${previous}-0000001`), "numbered first of its month");
    await row.getByRole("button", { name: "내역 보기" }).click();
    const detail = page.getByTestId("invoice-lines");
    await detail.waitFor();
    const text = (await detail.textContent()) ?? "";
    assert.match(text, /5G/, "the plan's fee");
    assert.match(text, /합계.*₩/, "the total");
    await shot(page, "portal-line-invoice.png");
    assert.deepEqual(await unlabelled(page), [], "every form control has a label");
    assert.deepEqual(
      errors,
      [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)",
        "Failed to load resource: the server responded with a status of 400 (Bad Request)",
      ],
      "no console errors but the two provoked refusals",
    );
    await page.context().close();
  });

  it("a subscriber signs in on a phone and sees only their own line: its usage, messages and bills", async () => {
    const { page, errors } = await open(390);
    await page.getByLabel("사용자 이름").fill(users.subscriber);
    await page.getByLabel("비밀번호").fill(PASSWORD);
    await page.getByRole("button", { name: "로그인" }).click();
    await page.getByRole("heading", { name: "내 회선" }).waitFor();
    assert.equal(await page.getByRole("link", { name: "고객" }).count(), 0, "no customer search for subscribers");
    const mine = page.getByTestId("my-lines");
    await mine.locator("tbody tr").first().waitFor();
    assert.equal(await mine.locator("tbody tr").count(), 1, "their one line");
    await mine.locator("tbody a").first().click();
    await page.getByTestId("usage-gauge").waitFor();
    await page.getByTestId("live-state").filter({ hasText: "실시간" }).waitFor();
    assert.equal(Number(await page.getByTestId("usage-gauge").getAttribute("aria-valuenow")), 55);
    await page.getByTestId("message-log").waitFor();
    await page.getByTestId("invoices").waitFor();
    await page.getByTestId("usage-chart").waitFor();
    await page.getByTestId("line-summary").waitFor();
    await page.getByTestId("payments-total").waitFor();
    assert.equal(await page.getByTestId("record-payment").count(), 0, "subscribers do not record payments");
    assert.equal(await page.getByRole("combobox", { name: "새 요금제" }).count(), 1, "they change their plan");
    assert.equal(await page.getByRole("combobox", { name: "부가서비스 가입" }).count(), 0, "but add no VAS");
    assert.equal(await overflows(page), false, "fits at 390 px");
    assert.deepEqual(await unlabelled(page), [], "every form control has a label");
    await shot(page, "portal-subscriber-line-390.png");
    // My plan: a change from next month (subscribers cannot change it now), then in the timeline as scheduled.
    await page.getByText("다음 달 1일부터 적용됩니다.").waitFor();
    await choose(page, "새 요금제", /5G-BASIC-24G/);
    await page.getByRole("button", { name: "요금제 변경" }).click();
    await page.getByRole("status").filter({ hasText: "5G-BASIC-24G 요금제가" }).waitFor();
    const scheduled = page.getByTestId("line-history").locator("[data-future=true]");
    await scheduled.waitFor();
    assert.match((await scheduled.textContent()) ?? "", /5G-BASIC-24G.*예정/);
    assert.equal(await page.getByTestId("plan-in-force").textContent(), "5G-SLIM-8G", "this month's plan stays");
    await shot(page, "portal-subscriber-plan-390.png");
    // Another customer's line, by its address: refused by the units, said on the page (the
    // usage, the message log and the invoices each say so), and none of it shown.
    await page.goto(`${base}/#/lines/${encodeURIComponent(other.subscriptionId)}`);
    await eventually(
      async () =>
        (await page.getByRole("alert").filter({ hasText: "PermissionDenied" }).count()) >= 3 ? true : undefined,
      15_000,
      "three refusals on the page",
    );
    assert.equal(await page.getByTestId("usage-gauge").count(), 0, "no usage of someone else's line");
    for (const id of ["line-summary", "usage-chart", "payments-total"])
      assert.equal(await page.getByTestId(id).count(), 0, `no ${id} of someone else's line`);
    assert.equal(await page.getByTestId("message-log").count(), 0, "no messages of someone else's line");
    assert.equal(await page.getByTestId("invoices").count(), 0, "no bills of someone else's line");
    assert.ok(errors.length > 0 && errors.every((e) => e.endsWith("status of 403 (Forbidden)")), errors.join("\n"));
    // And every line- or customer-scoped RPC the gateway passes, called with the subscriber's own
    // token and the other customer's ids: refused.
    const session = JSON.parse((await page.evaluate<string | null>("sessionStorage.getItem('session')")) ?? "{}") as {
      token: string;
      role: string;
    };
    assert.equal(session.role, "subscriber");
    const sid = other.subscriptionId;
    const calls: [string, unknown][] = [
      ["telco.usage.v1.UsageService/GetLineUsage", { subscriptionId: sid, month: thisMonth() }],
      ["telco.domain.v1.SubscriptionService/GetLine", { subscriptionId: sid }],
      ["telco.domain.v1.SubscriptionService/GetLineHistory", { subscriptionId: sid }],
      [
        "telco.domain.v1.SubscriptionService/ChangePlan",
        {
          requestId: randomUUID(),
          subscriptionId: sid,
          newPlanId: "5G-BASIC-24G",
          timing: "PLAN_CHANGE_TIMING_NEXT_MONTH",
        },
      ],
      [
        "telco.usage.v1.UsageService/GetLineUsageHistory",
        { subscriptionId: sid, from: "2026-12-01T00:00:00Z", to: "2026-12-02T00:00:00Z", step: "3600s" },
      ],
      ["telco.domain.v1.InvoiceService/ListInvoices", { subscriptionId: sid }],
      ["telco.domain.v1.MicroPaymentService/ListPayments", { subscriptionId: sid, month: thisMonth() }],
      ["telco.message.v1.MessageService/ListMessages", { subscriptionId: sid }],
      ["telco.domain.v1.CustomerService/GetCustomer", { customerId: other.customerId }],
      ["telco.domain.v1.CustomerService/ListCustomerLines", { customerId: other.customerId }],
    ];
    for (const [rpc, body] of calls) {
      const r = await fetch(`${base}/${rpc}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${session.token}` },
        body: JSON.stringify(body),
      });
      const answer = (await r.json()) as { code?: string };
      assert.deepEqual([r.status, answer.code], [403, "permission_denied"], `${rpc} for another customer`);
    }
    await page.context().close();
  });

  it("works at 390 px and switches to English", async () => {
    const { page, errors } = await open(390);
    assert.equal(await overflows(page), false, "sign-in fits at 390 px");
    assert.deepEqual(await unlabelled(page), [], "sign-in: every form control has a label");
    await signIn(page, users.operator);
    assert.equal(await overflows(page), false, "search fits at 390 px");
    assert.deepEqual(await unlabelled(page), [], "search: every form control has a label");
    await openCustomer(page);
    assert.equal(await overflows(page), false, "the customer fits at 390 px");
    await shot(page, "portal-customer-390.png");
    await page.goto(`${base}/#/lines/${encodeURIComponent(line.subscriptionId)}`);
    await page.getByTestId("usage-gauge").waitFor();
    await page.getByTestId("line-summary").waitFor();
    await page.getByTestId("payments-total").waitFor();
    await page.getByTestId("usage-chart").waitFor();
    assert.equal(await overflows(page), false, "the line page fits at 390 px");
    await shot(page, "portal-line-usage-390.png");
    assert.deepEqual(await unlabelled(page), [], "the line: every form control has a label");
    for (const [hash, ready] of [
      ["#/top", "top-lines"],
      ["#/templates", "templates"],
      ["#/billing", "executions"],
    ] as const) {
      await page.goto(`${base}/${hash}`);
      await page.getByTestId(ready).waitFor();
      assert.equal(await overflows(page), false, `${hash} fits at 390 px`);
      assert.deepEqual(await unlabelled(page), [], `${hash}: every form control has a label`);
    }
    await page.goto(`${base}/#/lines/${encodeURIComponent(line.subscriptionId)}`);
    await page.getByTestId("usage-gauge").waitFor();
    await page.getByText("English").click();
    await page.getByRole("heading", { name: /Usage this month/ }).waitFor();
    assert.equal(await page.evaluate<string>("document.documentElement.lang"), "en");
    assert.deepEqual(errors, [], "no console errors");
    await page.context().close();
  });

  it("the gateway routes only the RPCs people use, and serves the app on any other path", async () => {
    // An RPC only services call (the message unit reads recipients with it): not routed.
    // A malformed path is a 400, not a crash; an RPC path by GET is no route.
    assert.equal((await fetch(`${base}/%E0`)).status, 400);
    assert.equal((await fetch(`${base}/telco.domain.v1.AuthService/Login`)).status, 404);
    const r = await fetch(`${base}/telco.domain.v1.SubscriptionService/GetLineContact`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(r.status, 404);
    const login = await fetch(`${base}/telco.domain.v1.AuthService/Login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: users.viewer, password: PASSWORD }),
    });
    assert.equal(login.status, 200);
    assert.ok(((await login.json()) as { accessToken?: string }).accessToken, "a token through the gateway");
    const page = await fetch(`${base}/customers/anything`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<div id="root">/);
  });
});
