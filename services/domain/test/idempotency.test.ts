/**
 * Idempotency on request ids (src/idempotency.ts) on a real server and the real test database: a
 * retry of the same request replays the first answer; the same request id with a different body,
 * or from another caller, is refused with ALREADY_EXISTS and changes nothing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  ActivateLineRequestSchema,
  PlanChangeTiming,
  SubscriptionService,
} from "../../../gen/telco/domain/v1/subscription_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import type { Knex } from "../../kit/src/postgres.js";
import { requestFingerprint } from "../src/idempotency.js";
import { newCustomer, ownPool } from "./pool-fixture.js";

let units: RunningUnits;
let knex: Knex;
let admin: ReturnType<typeof grpcClient<typeof SubscriptionService>>;

const linesOf = async (customerId: string) => knex("domain.subscriptions").where({ customer_id: customerId });

before(async () => {
  units = await startUnits();
  knex = units.knex.domain;
  admin = grpcClient(SubscriptionService, units.at.domain.url, await tokenFor("admin"));
  await ownPool(knex, 20);
});
after(async () => {
  await units?.stop();
});

describe("request fingerprint", () => {
  it("ignores the request id, and tells bodies and callers apart", () => {
    const req = (requestId: string, planId: string) =>
      create(ActivateLineRequestSchema, { requestId, customerId: randomUUID(), planId });
    const a = req("r-1", "5G-STD-110G");
    const fp = (m: typeof a, subject = "op-1") => requestFingerprint(ActivateLineRequestSchema, m, subject);
    assert.equal(fp(a).length, 32);
    assert.deepEqual(fp(a), fp({ ...a, requestId: "r-2" }));
    assert.notDeepEqual(fp(a), fp({ ...a, planId: "5G-SLIM-8G" }));
    assert.notDeepEqual(fp(a), fp(a, "op-2"));
    assert.equal(a.requestId, "r-1", "the request itself is left alone");
  });
});

describe("ActivateLine", () => {
  it("replays a retry of the same request", async () => {
    const customerId = await newCustomer(knex);
    const req = { requestId: randomUUID(), customerId, planId: "5G-STD-110G" };
    const first = await admin.activateLine(req);
    const again = await admin.activateLine(req);
    assert.equal(again.line?.subscriptionId, first.line?.subscriptionId);
    assert.equal((await linesOf(customerId)).length, 1);
  });

  it("refuses the same request_id with a different plan: ALREADY_EXISTS, nothing changed", async () => {
    const customerId = await newCustomer(knex);
    const requestId = randomUUID();
    const first = await admin.activateLine({ requestId, customerId, planId: "5G-STD-110G" });
    const e = await rejects(admin.activateLine({ requestId, customerId, planId: "5G-SLIM-8G" }), Code.AlreadyExists);
    assert.match(e.rawMessage, new RegExp(`request_id ${requestId} was already used for a different request`));
    assert.ok(
      !e.rawMessage.includes(first.line?.subscriptionId ?? "-"),
      "the refusal names nothing of the first answer",
    );
    const lines = await linesOf(customerId);
    assert.equal(lines.length, 1);
    const line = await admin.getLine({ subscriptionId: first.line?.subscriptionId ?? "" });
    assert.equal(line.line?.planId, "5G-STD-110G");
    // The first request can still be retried.
    const again = await admin.activateLine({ requestId, customerId, planId: "5G-STD-110G" });
    assert.equal(again.line?.subscriptionId, first.line?.subscriptionId);
  });

  it("refuses the same request_id from another caller", async () => {
    const customerId = await newCustomer(knex);
    const req = { requestId: randomUUID(), customerId, planId: "5G-STD-110G" };
    await admin.activateLine(req);
    const other = grpcClient(SubscriptionService, units.at.domain.url, await tokenFor("admin", [], "another-admin"));
    await rejects(other.activateLine(req), Code.AlreadyExists);
    assert.equal((await linesOf(customerId)).length, 1);
  });

  it("still replays an answer kept before fingerprints existed", async () => {
    const customerId = await newCustomer(knex);
    const requestId = randomUUID();
    const first = await admin.activateLine({ requestId, customerId, planId: "5G-STD-110G" });
    const n = await knex("domain.idempotency_keys")
      .where({ method: "ActivateLine", request_id: requestId })
      .update({ fingerprint: null });
    assert.equal(n, 1);
    const again = await admin.activateLine({ requestId, customerId, planId: "5G-SLIM-8G" });
    assert.equal(again.line?.subscriptionId, first.line?.subscriptionId);
    assert.equal((await linesOf(customerId)).length, 1);
  });

  it("never replays such an answer to a subscriber, even for their own line", async () => {
    const customerId = await newCustomer(knex);
    const line = (await admin.activateLine({ requestId: randomUUID(), customerId, planId: "5G-STD-110G" })).line
      ?.subscriptionId as string;
    const requestId = randomUUID();
    const change = { requestId, subscriptionId: line, newPlanId: "5G-SLIM-8G", timing: PlanChangeTiming.NEXT_MONTH };
    await admin.changePlan(change);
    await knex("domain.idempotency_keys")
      .where({ method: "ChangePlan", request_id: requestId })
      .update({ fingerprint: null });
    const me = grpcClient(SubscriptionService, units.at.domain.url, await tokenFor("subscriber", [line]));
    await rejects(me.changePlan(change), Code.AlreadyExists);
  });
});
