/**
 * What each change of a line tells the other units: the DomainEvent written to the outbox in the
 * change's transaction, in order per line, with deterministic ids and no personal data.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { type DomainEvent, DomainEventSchema } from "../../../gen/telco/domain/v1/events_pb.js";
import { PlanChangeTiming, SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import type { Knex } from "../../kit/src/postgres.js";
import { newCustomer, ownPool } from "./pool-fixture.js";

const GiB = 1024n ** 3n;
let units: RunningUnits;
let knex: Knex;
let lines: ReturnType<typeof grpcClient<typeof SubscriptionService>>;

before(async () => {
  units = await startUnits();
  knex = units.knex.domain;
  lines = grpcClient(SubscriptionService, units.at.domain.url, await tokenFor("operator"));
  await ownPool(knex, 20);
});
after(async () => {
  await units?.stop();
});

async function eventsOf(sid: string): Promise<DomainEvent[]> {
  const rows = (await knex("domain.outbox")
    .where({ key: sid, topic: "domain.events" })
    .orderBy("outbox_id")
    .select("payload", "event_id")) as { payload: Buffer; event_id: string }[];
  return rows.map((r) => {
    const e = fromBinary(DomainEventSchema, r.payload);
    assert.equal(e.eventId, r.event_id, "the outbox row and the event carry the same id");
    return e;
  });
}

describe("domain events of a line's life", () => {
  it("activation, plan, VAS, discount, suspend, resume and terminate each emit one event, in order", async () => {
    const customerId = await newCustomer(knex);
    const rid = () => randomUUID();
    const { line } = await lines.activateLine({ requestId: rid(), customerId, planId: "5G-SLIM-8G" });
    const sid = line?.subscriptionId as string;
    await lines.changePlan({
      requestId: rid(),
      subscriptionId: sid,
      newPlanId: "5G-PREMIUM-UNL",
      timing: PlanChangeTiming.NOW,
    });
    await lines.subscribeVas({ requestId: rid(), subscriptionId: sid, vasId: "RINGBACK" });
    await lines.cancelVas({ requestId: rid(), subscriptionId: sid, vasId: "RINGBACK" });
    await lines.grantDiscount({ requestId: rid(), subscriptionId: sid, discountId: "CONTRACT-25" });
    await lines.withdrawDiscount({ requestId: rid(), subscriptionId: sid, discountId: "CONTRACT-25" });
    await lines.suspendLine({ requestId: rid(), subscriptionId: sid, reason: "lost phone" });
    await lines.resumeLine({ requestId: rid(), subscriptionId: sid });
    await lines.terminateLine({ requestId: rid(), subscriptionId: sid });

    const events = await eventsOf(sid);
    assert.deepEqual(
      events.map((e) => e.event.case),
      [
        "lineActivated",
        "planChanged",
        "vasChanged",
        "vasChanged",
        "discountChanged",
        "discountChanged",
        "lineSuspended",
        "lineResumed",
        "lineTerminated",
      ],
    );
    assert.deepEqual(
      events.map((e) => e.lineSequence),
      events.map((_, i) => BigInt(i + 1)),
      "line_sequence counts the line's events",
    );
    assert.deepEqual(
      events.map((e) => e.eventId),
      events.map((_, i) => `${sid}:${i + 1}`),
    );
    for (const e of events) assert.equal(e.subscriptionId, sid);

    const [activated, plan, vasOn, vasOff, discOn, discOff, suspended] = events;
    assert.ok(activated?.event.case === "lineActivated");
    assert.equal(activated.event.value.customerId, customerId);
    assert.equal(activated.event.value.quotaBytes, 8n * GiB);
    assert.ok(plan?.event.case === "planChanged");
    assert.deepEqual(
      [plan.event.value.oldPlanId, plan.event.value.newPlanId, plan.event.value.quotaBytes],
      ["5G-SLIM-8G", "5G-PREMIUM-UNL", 0n],
    );
    assert.ok(vasOn?.event.case === "vasChanged" && vasOff?.event.case === "vasChanged");
    assert.deepEqual(
      [vasOn.event.value.vasId, vasOn.event.value.subscribed, vasOff.event.value.subscribed],
      ["RINGBACK", true, false],
    );
    assert.ok(discOn?.event.case === "discountChanged" && discOff?.event.case === "discountChanged");
    assert.deepEqual(
      [discOn.event.value.discountId, discOn.event.value.granted, discOff.event.value.granted],
      ["CONTRACT-25", true, false],
    );
    assert.ok(suspended?.event.case === "lineSuspended");
    assert.equal(suspended.event.value.reason, "lost phone");
  });

  it("a refused change emits nothing", async () => {
    const customerId = await newCustomer(knex);
    const { line } = await lines.activateLine({ requestId: randomUUID(), customerId, planId: "5G-SLIM-8G" });
    const sid = line?.subscriptionId as string;
    await assert.rejects(lines.resumeLine({ requestId: randomUUID(), subscriptionId: sid }));
    await assert.rejects(lines.cancelVas({ requestId: randomUUID(), subscriptionId: sid, vasId: "RINGBACK" }));
    assert.deepEqual(
      (await eventsOf(sid)).map((e) => e.event.case),
      ["lineActivated"],
    );
  });
});
