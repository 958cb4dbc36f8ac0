/**
 * Lines against the real PostgreSQL test database: number allocation under concurrency, the
 * held number of a returning customer, plan history that the database itself keeps free of
 * overlaps, status rules, idempotent retries, and who may read which line.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainEventSchema } from "../../../gen/telco/domain/v1/events_pb.js";
import {
  LineStatus,
  NumberSource,
  PlanChangeTiming,
  SubscriptionService,
} from "../../../gen/telco/domain/v1/subscription_pb.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { TEST_DATABASE_URL } from "../../../test/support/env.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { encodePageToken, fieldViolations } from "../../kit/src/errors.js";
import { createKnex, type Knex } from "../../kit/src/postgres.js";
import { LineStore } from "../src/store/line-store.js";
import { newCustomer as makeCustomer, ownPool } from "./pool-fixture.js";

let units: RunningUnits;
let knex: Knex;
let admin: ReturnType<typeof grpcClient<typeof SubscriptionService>>;
let url: string;
const newCustomer = () => makeCustomer(knex);
const GiB = 1024n ** 3n;

async function codeOf(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e).code;
  }
  assert.fail("expected the call to fail");
}

const numberOf = async (subscriptionId: string) =>
  (await knex("domain.subscriptions").where({ subscription_id: subscriptionId }).first())?.number_id as string;

const activate = (customerId: string, planId = "5G-STD-110G", requestId: string = randomUUID()) =>
  admin.activateLine({ requestId, customerId, planId });

/**
 * The line's plan history is one chain (each period ends where the next starts, only the last
 * is open), and its plan_changed events in the outbox are exactly its transitions, in order.
 */
async function assertPlanChain(sid: string): Promise<number> {
  const h = await admin.getLineHistory({ subscriptionId: sid });
  const plans = h.plans.map((p) => ({
    planId: p.planId,
    from: p.validFrom ? timestampDate(p.validFrom).getTime() : Number.NaN,
    to: p.validTo ? timestampDate(p.validTo).getTime() : undefined,
  }));
  for (let i = 0; i + 1 < plans.length; i++) {
    const [a, b] = [plans[i], plans[i + 1]] as [(typeof plans)[0], (typeof plans)[0]];
    assert.equal(a.to, b.from, `period ${i} ends where period ${i + 1} starts (no gap, no overlap)`);
    assert.ok(a.from < b.from, `period ${i} starts before period ${i + 1}`);
    assert.notEqual(a.planId, b.planId, "a transition changes the plan");
  }
  assert.equal(plans.at(-1)?.to, undefined, "the last period is open");
  const rows = await knex("domain.outbox").where({ key: sid, topic: "domain.events" }).orderBy("outbox_id");
  const changes = rows
    .map((r) => fromBinary(DomainEventSchema, r.payload))
    .flatMap((e) => (e.event.case === "planChanged" ? [e.event.value] : []));
  assert.equal(changes.length, plans.length - 1, "one plan_changed event per history transition");
  changes.forEach((c, i) => {
    assert.equal(c.oldPlanId, plans[i]?.planId, `event ${i}: old plan`);
    assert.equal(c.newPlanId, plans[i + 1]?.planId, `event ${i}: new plan`);
    assert.equal(c.effectiveFrom && timestampDate(c.effectiveFrom).getTime(), plans[i + 1]?.from, `event ${i}: from`);
  });
  return plans.length - 1;
}

before(async () => {
  units = await startUnits();
  knex = units.knex.domain;
  url = units.at.domain.url;
  admin = grpcClient(SubscriptionService, url, await tokenFor("admin"));
  await ownPool(knex, 400);
});
after(async () => {
  await units?.stop();
});

describe("activation", () => {
  it("200 concurrent activations hand out 200 distinct numbers", async () => {
    // Straight at the store with a pool wide enough that the transactions really overlap.
    const wide = createKnex({ url: TEST_DATABASE_URL, schema: "domain", poolMax: 50 });
    try {
      const store = new LineStore(wide);
      const customers = await Promise.all(Array.from({ length: 200 }, () => newCustomer()));
      const lines = await Promise.all(
        customers.map((c) => store.transaction((trx) => store.activate(trx, c, "5G-SLIM-8G", {}))),
      );
      const ids = lines.map((l) => l.subscriptionId);
      assert.equal(new Set(ids).size, 200);
      const numbers = await knex("domain.subscriptions").whereIn("subscription_id", ids).pluck("number_id");
      assert.equal(new Set(numbers).size, 200, "every line has its own number");
      const statuses = await knex("domain.numbers").whereIn("number_id", numbers).pluck("status");
      assert.ok(statuses.every((s) => s === "assigned"));
    } finally {
      await wide.destroy();
    }
  });

  it("activates with a masked number, the plan's quota, an open plan period and a welcome request", async () => {
    const customerId = await newCustomer();
    const { line, numberSource } = await activate(customerId, "5G-BASIC-24G");
    assert.ok(line);
    assert.equal(numberSource, NumberSource.ALLOCATED);
    assert.match(line.subscriptionId, /^L\d{10}$/);
    assert.match(line.phoneNumber, /^010-\*\*\*\*-\d{4}$/);
    assert.equal(line.status, LineStatus.ACTIVE);
    assert.equal(line.planId, "5G-BASIC-24G");
    assert.equal(line.quotaBytes, 24n * GiB);
    const history = await admin.getLineHistory({ subscriptionId: line.subscriptionId });
    assert.equal(history.plans.length, 1);
    assert.equal(history.plans[0]?.validTo, undefined);
    assert.equal(history.statusChanges[0]?.status, LineStatus.ACTIVE);
    const outbox = await knex("domain.outbox").where({ key: line.subscriptionId }).orderBy("outbox_id");
    assert.deepEqual(
      outbox.map((r) => [r.topic, r.event_id]),
      [
        ["domain.events", `${line.subscriptionId}:1`],
        ["notification.requests", `welcome:${line.subscriptionId}`],
      ],
    );
  });

  it("a returning customer gets their number back inside the window and a new one after it", async () => {
    const customerId = await newCustomer();
    const first = (await activate(customerId)).line?.subscriptionId as string;
    const number = await numberOf(first);
    await admin.terminateLine({ requestId: randomUUID(), subscriptionId: first });

    const again = await activate(customerId);
    assert.equal(again.numberSource, NumberSource.RETURNED);
    const second = again.line?.subscriptionId as string;
    assert.equal(await numberOf(second), number);

    await admin.terminateLine({ requestId: randomUUID(), subscriptionId: second });
    await knex("domain.numbers")
      .where({ number_id: number })
      .update({ held_until: knex.raw("now() - interval '1 second'") });
    const third = await activate(customerId);
    assert.equal(third.numberSource, NumberSource.ALLOCATED);
    assert.notEqual(await numberOf(third.line?.subscriptionId as string), number);
  });

  it("is idempotent on request_id, also when the retries race", async () => {
    const customerId = await newCustomer();
    const requestId = randomUUID();
    const answers = await Promise.all(Array.from({ length: 5 }, () => activate(customerId, "5G-STD-110G", requestId)));
    const ids = new Set(answers.map((a) => a.line?.subscriptionId));
    assert.equal(ids.size, 1);
    const later = await activate(customerId, "5G-STD-110G", requestId);
    assert.equal(later.line?.subscriptionId, answers[0]?.line?.subscriptionId);
    const count = await knex("domain.subscriptions")
      .where({ customer_id: customerId })
      .count<{ n: string }[]>("* as n");
    assert.equal(Number(count[0]?.n), 1);
  });

  it("refuses unknown customers and plans, inactive plans, and names bad fields", async () => {
    assert.equal(await codeOf(activate(randomUUID())), Code.NotFound);
    assert.equal(await codeOf(activate(await newCustomer(), "NO-SUCH-PLAN")), Code.NotFound);
    assert.equal(await codeOf(activate(await newCustomer(), "LTE-SENIOR-1G")), Code.FailedPrecondition);
    try {
      await admin.activateLine({ requestId: "", customerId: "nope", planId: "x" });
      assert.fail("accepted");
    } catch (e) {
      assert.equal(ConnectError.from(e).code, Code.InvalidArgument);
      assert.deepEqual(
        fieldViolations(e)
          .map((v) => v.field)
          .sort(),
        ["customer_id", "plan_id", "request_id"],
      );
    }
    try {
      await admin.changePlan({ requestId: "r", subscriptionId: "X1", newPlanId: "5G-STD-110G" });
      assert.fail("accepted");
    } catch (e) {
      assert.deepEqual(
        fieldViolations(e)
          .map((v) => v.field)
          .sort(),
        ["subscription_id", "timing"],
      );
    }
  });
});

describe("plan history", () => {
  it("the database rejects two overlapping plan rows, even by raw SQL", async () => {
    const sid = (await activate(await newCustomer())).line?.subscriptionId as string;
    await assert.rejects(
      knex.raw(
        "insert into domain.subscription_plan (subscription_id, plan_id, valid) values (?, '5G-SLIM-8G', tstzrange(now() - interval '1 day', now() + interval '1 day'))",
        [sid],
      ),
      (e: { code?: string }) => e.code === "23P01",
    );
  });

  it("a change now closes the open period and opens the new one", async () => {
    const sid = (await activate(await newCustomer(), "5G-SLIM-8G")).line?.subscriptionId as string;
    const res = await admin.changePlan({
      requestId: randomUUID(),
      subscriptionId: sid,
      newPlanId: "5G-PREMIUM-UNL",
      timing: PlanChangeTiming.NOW,
    });
    assert.equal(res.line?.planId, "5G-PREMIUM-UNL");
    assert.equal(res.line?.quotaBytes, 0n, "unlimited");
    const h = await admin.getLineHistory({ subscriptionId: sid });
    assert.deepEqual(
      h.plans.map((p) => p.planId),
      ["5G-SLIM-8G", "5G-PREMIUM-UNL"],
    );
    assert.deepEqual(h.plans[0]?.validTo, h.plans[1]?.validFrom, "closed where the new one starts");
    assert.equal(h.plans[1]?.validTo, undefined);
    const same = admin.changePlan({
      requestId: randomUUID(),
      subscriptionId: sid,
      newPlanId: "5G-PREMIUM-UNL",
      timing: PlanChangeTiming.NOW,
    });
    assert.equal(await codeOf(same), Code.FailedPrecondition);
  });

  it("a change that waited for the line's lock lands after the one that held it, not before", async () => {
    const sid = (await activate(await newCustomer(), "5G-SLIM-8G")).line?.subscriptionId as string;
    const store = new LineStore(knex);
    let started!: () => void;
    let release!: () => void;
    const bStarted = new Promise<void>((r) => {
      started = r;
    });
    const gate = new Promise<void>((r) => {
      release = r;
    });
    // B begins first (its transaction time, now(), is fixed from here), then waits;
    // A changes the plan and commits meanwhile; then B changes it.
    const b = store.transaction(async (trx) => {
      await trx.raw("select now()");
      started();
      await gate;
      return store.changePlan(trx, sid, "5G-BASIC-24G", "now", "Asia/Seoul", {});
    });
    await bStarted;
    await store.transaction((trx) => store.changePlan(trx, sid, "5G-STD-110G", "now", "Asia/Seoul", {}));
    release();
    await b;
    assert.equal(await assertPlanChain(sid), 2);
    const h = await admin.getLineHistory({ subscriptionId: sid });
    assert.deepEqual(
      h.plans.map((p) => p.planId),
      ["5G-SLIM-8G", "5G-STD-110G", "5G-BASIC-24G"],
    );
  });

  it("10 concurrent plan changes of one line leave one consistent chain and one event per transition", async () => {
    const sid = (await activate(await newCustomer(), "5G-SLIM-8G")).line?.subscriptionId as string;
    const plans = ["5G-STD-110G", "5G-BASIC-24G", "LTE-DATA-2G", "5G-PREMIUM-UNL", "5G-SLIM-8G"];
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        admin.changePlan({
          requestId: randomUUID(),
          subscriptionId: sid,
          newPlanId: plans[i % plans.length] as string,
          timing: PlanChangeTiming.NOW,
        }),
      ),
    );
    for (const r of results) {
      if (r.status === "rejected") {
        // Only "already on that plan" (two equal changes in a row) may refuse.
        assert.equal(ConnectError.from(r.reason).code, Code.FailedPrecondition, String(r.reason));
      }
    }
    const done = results.filter((r) => r.status === "fulfilled").length;
    assert.ok(done >= 1);
    assert.equal(await assertPlanChain(sid), done, "every accepted change is one transition");
  });

  it("NEXT_MONTH starts at 00:00 on the first of next month in Asia/Seoul; a later change replaces it", async () => {
    const sid = (await activate(await newCustomer(), "5G-SLIM-8G")).line?.subscriptionId as string;
    const seoulNow = new Date(Date.now() + 9 * 3_600_000);
    const expected = Date.UTC(seoulNow.getUTCFullYear(), seoulNow.getUTCMonth() + 1, 1) - 9 * 3_600_000;
    const change = (planId: string, timing: PlanChangeTiming) =>
      admin.changePlan({ requestId: randomUUID(), subscriptionId: sid, newPlanId: planId, timing });

    const res = await change("5G-BASIC-24G", PlanChangeTiming.NEXT_MONTH);
    assert.equal(Number(res.period?.validFrom?.seconds) * 1000, expected);
    assert.equal(res.line?.planId, "5G-SLIM-8G", "the current plan stays until then");

    await change("5G-STD-110G", PlanChangeTiming.NEXT_MONTH);
    let h = await admin.getLineHistory({ subscriptionId: sid });
    assert.deepEqual(
      h.plans.map((p) => [p.planId, p.validTo === undefined]),
      [
        ["5G-SLIM-8G", false],
        ["5G-STD-110G", true],
      ],
      "the pending change was replaced, not stacked",
    );
    assert.equal(Number(h.plans[0]?.validTo?.seconds) * 1000, expected);
    assert.equal(await codeOf(change("5G-STD-110G", PlanChangeTiming.NEXT_MONTH)), Code.FailedPrecondition);

    await change("LTE-DATA-2G", PlanChangeTiming.NOW);
    h = await admin.getLineHistory({ subscriptionId: sid });
    assert.deepEqual(
      h.plans.map((p) => p.planId),
      ["5G-SLIM-8G", "LTE-DATA-2G"],
      "a change now also drops the pending one",
    );
    assert.equal(h.plans[1]?.validTo, undefined);
  });

  it("VAS and discounts are history rows with the usual errors", async () => {
    const sid = (await activate(await newCustomer())).line?.subscriptionId as string;
    const r = () => randomUUID();
    await admin.subscribeVas({ requestId: r(), subscriptionId: sid, vasId: "RINGBACK" });
    assert.equal(
      await codeOf(admin.subscribeVas({ requestId: r(), subscriptionId: sid, vasId: "RINGBACK" })),
      Code.AlreadyExists,
    );
    const cancelled = await admin.cancelVas({ requestId: r(), subscriptionId: sid, vasId: "RINGBACK" });
    assert.ok(cancelled.period?.validTo);
    assert.equal(
      await codeOf(admin.cancelVas({ requestId: r(), subscriptionId: sid, vasId: "RINGBACK" })),
      Code.FailedPrecondition,
    );
    await admin.grantDiscount({ requestId: r(), subscriptionId: sid, discountId: "CONTRACT-25" });
    assert.equal(
      await codeOf(admin.grantDiscount({ requestId: r(), subscriptionId: sid, discountId: "CONTRACT-25" })),
      Code.AlreadyExists,
    );
    assert.equal(
      await codeOf(admin.withdrawDiscount({ requestId: r(), subscriptionId: sid, discountId: "FAMILY-5500" })),
      Code.FailedPrecondition,
    );
    assert.equal(
      await codeOf(admin.subscribeVas({ requestId: r(), subscriptionId: sid, vasId: "NO-SUCH" })),
      Code.NotFound,
    );
    const h = await admin.getLineHistory({ subscriptionId: sid });
    assert.equal(h.vas.length, 1);
    assert.equal(h.discounts.length, 1);
    assert.equal(h.discounts[0]?.validTo, undefined);
  });
});

describe("status", () => {
  it("suspend / resume follow the status rules", async () => {
    const sid = (await activate(await newCustomer())).line?.subscriptionId as string;
    const r = () => randomUUID();
    assert.equal(await codeOf(admin.resumeLine({ requestId: r(), subscriptionId: sid })), Code.FailedPrecondition);
    const s = await admin.suspendLine({ requestId: r(), subscriptionId: sid, reason: "lost phone" });
    assert.equal(s.line?.status, LineStatus.SUSPENDED);
    assert.equal(
      await codeOf(admin.suspendLine({ requestId: r(), subscriptionId: sid, reason: "" })),
      Code.FailedPrecondition,
    );
    const back = await admin.resumeLine({ requestId: r(), subscriptionId: sid });
    assert.equal(back.line?.status, LineStatus.ACTIVE);
    const h = await admin.getLineHistory({ subscriptionId: sid });
    assert.deepEqual(
      h.statusChanges.map((c) => c.status),
      [LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.ACTIVE],
    );
    assert.equal(h.statusChanges[1]?.reason, "lost phone");
  });

  it("refuses suspend reasons that could carry personal data, naming `reason`", async () => {
    const sid = (await activate(await newCustomer())).line?.subscriptionId as string;
    for (const reason of [
      "customer called from 01012345678",
      "reported by 010-1234-5678",
      "born 1990-01-01",
      "mail kim@example.kr",
      "x".repeat(201),
    ]) {
      try {
        await admin.suspendLine({ requestId: randomUUID(), subscriptionId: sid, reason });
        assert.fail(`accepted ${JSON.stringify(reason)}`);
      } catch (e) {
        assert.equal(ConnectError.from(e).code, Code.InvalidArgument, reason);
        assert.deepEqual(
          fieldViolations(e).map((v) => v.field),
          ["reason"],
        );
        assert.ok(!ConnectError.from(e).message.includes(reason), "the error does not echo the reason");
      }
    }
    const h = await admin.getLineHistory({ subscriptionId: sid });
    assert.equal(h.statusChanges.length, 1, "nothing was written");
    const ok = await admin.suspendLine({ requestId: randomUUID(), subscriptionId: sid, reason: "lost phone, case 42" });
    assert.equal(ok.line?.status, LineStatus.SUSPENDED);
  });

  it("terminate closes every open period and holds the number for the customer; retries replay", async () => {
    const customerId = await newCustomer();
    const sid = (await activate(customerId)).line?.subscriptionId as string;
    await admin.subscribeVas({ requestId: randomUUID(), subscriptionId: sid, vasId: "SPAM-BLOCK" });
    await admin.changePlan({
      requestId: randomUUID(),
      subscriptionId: sid,
      newPlanId: "5G-BASIC-24G",
      timing: PlanChangeTiming.NEXT_MONTH,
    });
    const requestId = randomUUID();
    const t = await admin.terminateLine({ requestId, subscriptionId: sid });
    assert.equal(t.line?.status, LineStatus.TERMINATED);
    assert.ok(t.line?.terminatedAt);
    const retry = await admin.terminateLine({ requestId, subscriptionId: sid });
    assert.deepEqual(retry.line?.terminatedAt, t.line?.terminatedAt, "the retry replays the first answer");
    assert.equal(
      await codeOf(admin.terminateLine({ requestId: randomUUID(), subscriptionId: sid })),
      Code.FailedPrecondition,
    );

    const h = await admin.getLineHistory({ subscriptionId: sid });
    assert.equal(h.plans.length, 1, "the pending change went with the line");
    assert.ok(
      [...h.plans, ...h.vas].every((p) => p.validTo !== undefined),
      "nothing stays open",
    );
    const n = await knex("domain.numbers")
      .where({ number_id: await numberOf(sid) })
      .first();
    assert.equal(n?.status, "held");
    assert.equal(n?.held_for, customerId);
    const days = (new Date(n?.held_until).getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 89.9 && days <= 90, `held for ${days} days`);
    const change = admin.changePlan({
      requestId: randomUUID(),
      subscriptionId: sid,
      newPlanId: "5G-SLIM-8G",
      timing: PlanChangeTiming.NOW,
    });
    assert.equal(await codeOf(change), Code.FailedPrecondition);
  });
});

describe("reading lines", () => {
  it("a subscriber reads their own line and nobody else's", async () => {
    const mine = (await activate(await newCustomer())).line?.subscriptionId as string;
    const theirs = (await activate(await newCustomer())).line?.subscriptionId as string;
    const me = grpcClient(SubscriptionService, url, await tokenFor("subscriber", [mine]));
    assert.equal((await me.getLine({ subscriptionId: mine })).line?.subscriptionId, mine);
    assert.equal(await codeOf(me.getLine({ subscriptionId: theirs })), Code.PermissionDenied);
    assert.equal(await codeOf(me.getLineHistory({ subscriptionId: theirs })), Code.PermissionDenied);
    assert.equal(await codeOf(me.listLines({})), Code.PermissionDenied);
    assert.equal(
      await codeOf(me.changePlan({ requestId: "r1", subscriptionId: theirs, newPlanId: "5G-SLIM-8G", timing: 2 })),
      Code.PermissionDenied,
      "not another customer's line",
    );
    assert.equal(
      await codeOf(me.getLine({ subscriptionId: mine, reveal: true, revealReason: "me" })),
      Code.PermissionDenied,
    );
  });

  it("a subscriber changes their own line's plan from next month, not now", async () => {
    const mine = (await activate(await newCustomer())).line?.subscriptionId as string;
    const me = grpcClient(SubscriptionService, url, await tokenFor("subscriber", [mine]));
    const now = me.changePlan({
      requestId: randomUUID(),
      subscriptionId: mine,
      newPlanId: "5G-SLIM-8G",
      timing: PlanChangeTiming.NOW,
    });
    const refused = await now.then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(refused?.code, Code.PermissionDenied);
    assert.match(refused?.rawMessage ?? "", /from next month/);
    const next = await me.changePlan({
      requestId: randomUUID(),
      subscriptionId: mine,
      newPlanId: "5G-SLIM-8G",
      timing: PlanChangeTiming.NEXT_MONTH,
    });
    assert.equal(next.period?.planId, "5G-SLIM-8G");
    assert.ok(next.period?.validFrom, "the new period has a start");
    assert.ok(timestampDate(next.period.validFrom) > new Date(), "from next month");
    assert.equal(next.line?.planId, "5G-STD-110G", "the plan in force stays until then");
    const history = await me.getLineHistory({ subscriptionId: mine });
    assert.deepEqual(
      history.plans.map((p) => p.planId),
      ["5G-STD-110G", "5G-SLIM-8G"],
    );
  });

  it("reveals the number only to operators and admins, with an audit entry", async () => {
    const sid = (await activate(await newCustomer())).line?.subscriptionId as string;
    const viewer = grpcClient(SubscriptionService, url, await tokenFor("viewer"));
    assert.match((await viewer.getLine({ subscriptionId: sid })).line?.phoneNumber ?? "", /\*\*\*\*/);
    assert.equal(
      await codeOf(viewer.getLine({ subscriptionId: sid, reveal: true, revealReason: "curious" })),
      Code.PermissionDenied,
    );
    const clear = await admin.getLine({ subscriptionId: sid, reveal: true, revealReason: "customer call #42" });
    assert.match(clear.line?.phoneNumber ?? "", /^010-\d{4}-\d{4}$/);
    const audit = await knex("domain.audit_log").where({ target_type: "line", target_id: sid });
    assert.equal(audit.length, 1);
    assert.equal(audit[0]?.reason, "customer call #42");
    assert.equal(audit[0]?.actor, "test-admin");
    assert.equal(await codeOf(admin.getLine({ subscriptionId: "L0000000000" })), Code.NotFound);
  });

  it("lists lines in pages and streams the current quotas", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await activate(await newCustomer(), "LTE-DATA-2G")).line?.subscriptionId as string);
    const start = `L${String(Number((ids[0] as string).slice(1)) - 1).padStart(10, "0")}`;
    const first = await admin.listLines({ pageSize: 2, pageToken: encodePageToken(start) });
    assert.deepEqual(
      first.lines.map((l) => l.subscriptionId),
      ids.slice(0, 2),
    );
    const second = await admin.listLines({ pageSize: 2, pageToken: first.nextPageToken });
    assert.equal(second.lines[0]?.subscriptionId, ids[2]);
    assert.equal(await codeOf(admin.listLines({ pageSize: 501 })), Code.InvalidArgument);

    const service = grpcClient(SubscriptionService, url, await tokenFor("service"));
    const seen = new Map<string, bigint>();
    let pages = 0;
    for await (const page of service.listLineQuotas({ pageSize: 50 })) {
      pages++;
      for (const q of page.quotas) seen.set(q.subscriptionId, q.quotaBytes);
    }
    assert.ok(pages >= 1);
    for (const id of ids) assert.equal(seen.get(id), 2n * GiB);
    const viewer = grpcClient(SubscriptionService, url, await tokenFor("viewer"));
    const denied = (async () => {
      for await (const _ of viewer.listLineQuotas({})) {
        // drain
      }
    })();
    assert.equal(await codeOf(denied), Code.PermissionDenied);
  });
});

describe("stored data that does not open", () => {
  it("answers DATA_LOSS, not INTERNAL", async () => {
    const sid = (await activate(await newCustomer())).line?.subscriptionId as string;
    const numberId = await numberOf(sid);
    const sealed = (await knex("domain.numbers").where({ number_id: numberId }).first())?.number_sealed as Buffer;
    const broken = Buffer.from(sealed);
    broken[broken.length - 1] = (broken[broken.length - 1] as number) ^ 0xff;
    await knex("domain.numbers").where({ number_id: numberId }).update({ number_sealed: broken });
    try {
      assert.equal(await codeOf(admin.getLine({ subscriptionId: sid })), Code.DataLoss);
    } finally {
      await knex("domain.numbers").where({ number_id: numberId }).update({ number_sealed: sealed });
    }
  });
});

describe("an empty pool", () => {
  it("answers RESOURCE_EXHAUSTED", async () => {
    const holder = await newCustomer();
    await knex("domain.numbers")
      .whereIn("status", ["free", "held"])
      .update({ status: "held", held_for: holder, held_until: "infinity" });
    assert.equal(await codeOf(activate(await newCustomer())), Code.ResourceExhausted);
  });
});
