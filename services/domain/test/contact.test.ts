/**
 * SubscriptionService.GetLineContact on a real server (port 0) and the real test database: the
 * message unit's service token gets a line's number and its customer's e-mail and name in
 * clear; no other role may call it; field-named validation; NOT_FOUND for an unknown line.
 * The personal values here are generated test data; the assertions compare them without
 * putting them into their messages.
 */

import assert from "node:assert/strict";
import { randomInt, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { LineStatus, SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { personal, personalPhone } from "../../../test/support/personal.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import type { RoleName } from "../../kit/src/auth.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { ownPool } from "./pool-fixture.js";

let units: RunningUnits;
const subscriptions = async (role: RoleName, lines: string[] = []) =>
  grpcClient(SubscriptionService, units.at.domain.url, await tokenFor(role, lines));
const customers = async (role: RoleName) => grpcClient(CustomerService, units.at.domain.url, await tokenFor(role));

const PHONE_RE = /^010-\d{4}-\d{4}$/;

/** A customer (with or without an e-mail) and a line, created through the RPCs as customer care. */
async function customerWithLine(email: boolean) {
  const tag = randomUUID().slice(0, 8);
  const digits = personalPhone(`010${randomInt(10_000_000, 99_999_999)}`);
  const fields = {
    name: personal(`연락처${tag}`),
    email: email ? personal(`contact.${tag}@example.kr`) : "",
  };
  const operator = await customers("operator");
  const created = await operator.createCustomer({
    requestId: randomUUID(),
    ...fields,
    phoneNumber: `${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}`,
    birthDate: "1979-02-14",
  });
  const customerId = created.customer?.customerId as string;
  const lines = await subscriptions("operator");
  const activated = await lines.activateLine({ requestId: randomUUID(), customerId, planId: "5G-STD-110G" });
  const subscriptionId = activated.line?.subscriptionId as string;
  // The line's number in clear, as an audited reveal shows it to an operator.
  const revealed = await lines.getLine({ subscriptionId, reveal: true, revealReason: "contact test" });
  return { ...fields, customerId, subscriptionId, number: revealed.line?.phoneNumber as string };
}

before(async () => {
  units = await startUnits();
  // Numbers of earlier runs are sealed with other test keys: give this run numbers it can open.
  await ownPool(units.knex.domain, 10);
});
after(async () => {
  await units?.stop();
});

describe("SubscriptionService.GetLineContact", () => {
  it("answers a service token the line's number and its customer's e-mail and name in clear", async () => {
    const c = await customerWithLine(true);
    const service = await subscriptions("service");
    const got = await service.getLineContact({ subscriptionId: c.subscriptionId });
    assert.equal(got.subscriptionId, c.subscriptionId);
    assert.equal(got.status, LineStatus.ACTIVE);
    assert.ok(PHONE_RE.test(got.phoneNumber), "the number is formatted 010-XXXX-XXXX");
    assert.ok(got.phoneNumber === c.number, "the number is the line's, as a reveal shows it");
    assert.ok(got.email === c.email, "the customer's e-mail, in clear");
    assert.ok(got.name === c.name, "the customer's name, in clear");
  });

  it("answers an empty e-mail when the customer gave none", async () => {
    const c = await customerWithLine(false);
    const got = await (await subscriptions("service")).getLineContact({ subscriptionId: c.subscriptionId });
    assert.equal(got.email, "");
    assert.ok(got.name === c.name, "the customer's name, in clear");
    assert.ok(got.phoneNumber === c.number, "the line's number");
  });

  it("still answers for a terminated line, with its status", async () => {
    const c = await customerWithLine(true);
    await (await subscriptions("operator")).terminateLine({
      requestId: randomUUID(),
      subscriptionId: c.subscriptionId,
    });
    const got = await (await subscriptions("service")).getLineContact({ subscriptionId: c.subscriptionId });
    assert.equal(got.status, LineStatus.TERMINATED);
    assert.ok(got.phoneNumber === c.number, "the line's number");
    assert.ok(got.email === c.email, "the customer's e-mail");
  });

  it("refuses every role but service with PERMISSION_DENIED, even for the subscriber's own line", async () => {
    const c = await customerWithLine(true);
    for (const role of ["admin", "operator", "viewer", "subscriber"] as const) {
      const client = await subscriptions(role, role === "subscriber" ? [c.subscriptionId] : []);
      const err = await rejects(client.getLineContact({ subscriptionId: c.subscriptionId }), Code.PermissionDenied);
      assert.match(err.rawMessage, new RegExp(`role ${role} may not call GetLineContact`), role);
    }
  });

  it("answers INVALID_ARGUMENT naming subscription_id for a missing or malformed id", async () => {
    const service = await subscriptions("service");
    for (const subscriptionId of ["", "L123", "X0000000001", "L00000000001", "l0000000001"]) {
      const err = await rejects(service.getLineContact({ subscriptionId }), Code.InvalidArgument);
      assert.deepEqual(
        fieldViolations(err).map((v) => v.field),
        ["subscription_id"],
        JSON.stringify(subscriptionId),
      );
    }
  });

  it("answers NOT_FOUND for an unknown line", async () => {
    const service = await subscriptions("service");
    const unknown = `L${String(randomInt(0, 1_000_000)).padStart(10, "9")}`;
    const known = await units.knex.domain("domain.subscriptions").where({ subscription_id: unknown }).first();
    assert.equal(known, undefined, "the id is unused");
    await rejects(service.getLineContact({ subscriptionId: unknown }), Code.NotFound);
  });
});
