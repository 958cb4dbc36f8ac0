/**
 * CustomerService over the generated client on a real server (port 0) and the real test
 * database: masked answers, audited reveals, roles, field-named validation, idempotency.
 */

import assert from "node:assert/strict";
import { randomInt, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { LineStatus } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { personal, personalPhone } from "../../../test/support/personal.js";
import { type RunningUnits, startUnits, testPii } from "../../../test/support/units.js";
import type { RoleName } from "../../kit/src/auth.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { SEAL_CONTEXT } from "../src/store/customer-store.js";

let units: RunningUnits;
const as = async (role: RoleName, lines: string[] = []) =>
  grpcClient(CustomerService, units.at.domain.url, await tokenFor(role, lines));

before(async () => {
  units = await startUnits();
});
after(async () => {
  await units?.stop();
});

const digits = () => `010${randomInt(10_000_000, 99_999_999)}`;
const dashed = (d: string) => `${d.slice(0, 3)}-${d.slice(3, 7)}-${d.slice(7)}`;
/** A first character no other test uses, so that a name-prefix search finds only this run's customers. */
const rareHan = () => String.fromCodePoint(0x4e00 + randomInt(0, 20_000));

function newCustomer() {
  const phone = personalPhone(digits());
  const email = `Gil.Dong.${randomUUID().slice(0, 8)}@Example.kr`;
  personal(email.toLowerCase());
  return {
    requestId: randomUUID(),
    name: personal(`${rareHan()}길동`),
    phoneNumber: dashed(phone),
    email: personal(email),
    birthDate: "1988-04-17",
    digits: phone,
  };
}

async function auditRows(customerId: string) {
  return units.knex.domain("domain.audit_log").where({ target_type: "customer", target_id: customerId });
}

describe("CustomerService", () => {
  it("creates a customer once per request id and answers masked", async () => {
    const operator = await as("operator");
    const c = newCustomer();
    const first = await operator.createCustomer(c);
    const again = await operator.createCustomer(c);
    assert.equal(again.customer?.customerId, first.customer?.customerId, "a retry returns the first customer");
    // The same request id with a different body is another request: refused, nothing created.
    const other = await rejects(operator.createCustomer({ ...c, name: "다른이름" }), Code.AlreadyExists);
    assert.match(other.rawMessage, /request_id .* was already used for a different request/);
    const rows = await units.knex.domain("domain.customers").where({ create_request_id: c.requestId });
    assert.equal(rows.length, 1);

    const got = first.customer;
    assert.ok(got);
    assert.equal(got.revealed, false);
    assert.equal(got.name, `${[...c.name][0]}*동`);
    assert.equal(got.phoneNumber, `010-****-${c.digits.slice(7)}`);
    assert.match(got.email, /^g\*\*\*@example\.kr$/);
    assert.equal(got.birthDate, "1988-**-**");
    assert.equal(rows[0].key_id, testPii.activeKeyId);
  });

  it("gets masked; reveals to an operator with a reason, writing the audit log", async () => {
    const operator = await as("operator");
    const c = newCustomer();
    const id = (await operator.createCustomer(c)).customer?.customerId as string;

    const masked = await operator.getCustomer({ customerId: id });
    assert.equal(masked.customer?.phoneNumber, `010-****-${c.digits.slice(7)}`);
    assert.equal((await auditRows(id)).length, 0, "a masked read is not a reveal");

    const clear = await operator.getCustomer({ customerId: id, reveal: true, revealReason: "billing dispute #42" });
    assert.deepEqual(
      {
        name: clear.customer?.name,
        phone: clear.customer?.phoneNumber,
        email: clear.customer?.email,
        birth: clear.customer?.birthDate,
        revealed: clear.customer?.revealed,
      },
      { name: c.name, phone: c.phoneNumber, email: c.email.toLowerCase(), birth: c.birthDate, revealed: true },
    );
    const audit = await auditRows(id);
    assert.equal(audit.length, 1);
    assert.deepEqual(
      { actor: audit[0].actor, role: audit[0].role, action: audit[0].action, reason: audit[0].reason },
      { actor: "test-operator", role: "operator", action: "reveal", reason: "billing dispute #42" },
    );

    const e = await rejects(operator.getCustomer({ customerId: id, reveal: true }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(e).map((v) => v.field),
      ["reveal_reason"],
    );
    assert.equal((await auditRows(id)).length, 1, "a refused reveal is not written as one");
  });

  it("refuses a viewer's reveal (PERMISSION_DENIED) but lets a viewer read masked", async () => {
    const operator = await as("operator");
    const viewer = await as("viewer");
    const id = (await operator.createCustomer(newCustomer())).customer?.customerId as string;
    assert.equal((await viewer.getCustomer({ customerId: id })).customer?.revealed, false);
    await rejects(viewer.getCustomer({ customerId: id, reveal: true, revealReason: "curious" }), Code.PermissionDenied);
    assert.equal((await auditRows(id)).length, 0);
    await rejects(viewer.createCustomer(newCustomer()), Code.PermissionDenied);
    await rejects(
      viewer.updateCustomer({ requestId: randomUUID(), customerId: id, name: "바꿈" }),
      Code.PermissionDenied,
    );
  });

  it("names every offending field, never echoing the values", async () => {
    const operator = await as("operator");
    const bad = {
      requestId: "",
      name: "   ",
      phoneNumber: "02-555-NOT-A-PHONE-7781",
      email: "not-an-email-7781",
      birthDate: "1988-02-30",
    };
    const e = await rejects(operator.createCustomer(bad), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(e)
        .map((v) => v.field)
        .sort(),
      ["birth_date", "email", "name", "phone_number", "request_id"],
    );
    for (const value of [bad.phoneNumber, bad.email, bad.birthDate]) {
      assert.ok(!e.message.includes(value), "the error does not repeat the value");
    }

    const u = await rejects(
      operator.updateCustomer({ requestId: randomUUID(), customerId: "nope", phoneNumber: "123", email: "x@" }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(u)
        .map((v) => v.field)
        .sort(),
      ["customer_id", "email", "phone_number"],
    );

    const s = await rejects(operator.searchCustomers({}), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(s).map((v) => v.field),
      ["query"],
    );
    await rejects(operator.getCustomer({ customerId: randomUUID() }), Code.NotFound);
    await rejects(
      operator.updateCustomer({ requestId: randomUUID(), customerId: randomUUID(), name: "없음" }),
      Code.NotFound,
    );
  });

  it("searches by phone (any format), e-mail (any case) and masked-name prefix, with paging", async () => {
    const operator = await as("operator");
    const c = newCustomer();
    const id = (await operator.createCustomer(c)).customer?.customerId as string;

    for (const phoneNumber of [c.phoneNumber, c.digits, `+82 ${c.digits.slice(1, 3)} ${c.digits.slice(3)}`]) {
      const r = await operator.searchCustomers({ query: { case: "phoneNumber", value: phoneNumber } });
      assert.deepEqual(
        r.customers.map((x) => x.customerId),
        [id],
      );
      assert.equal(r.customers[0]?.revealed, false);
    }
    const byEmail = await operator.searchCustomers({ query: { case: "email", value: c.email.toUpperCase() } });
    assert.deepEqual(
      byEmail.customers.map((x) => x.customerId),
      [id],
    );

    const first = [...c.name][0] as string;
    const twin = (await operator.createCustomer({ ...newCustomer(), name: `${first}이름` })).customer?.customerId;
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await operator.searchCustomers({
        query: { case: "namePrefix", value: first },
        pageSize: 1,
        pageToken,
      });
      assert.ok(page.customers.length <= 1);
      for (const x of page.customers) {
        assert.ok(x.name.startsWith(first));
        seen.push(x.customerId);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.ok(seen.includes(id) && seen.includes(twin as string), "both customers found across pages");

    const service = await as("service");
    assert.equal(
      (await service.searchCustomers({ query: { case: "email", value: c.email } })).customers[0]?.customerId,
      id,
    );
    await rejects(
      (await as("subscriber", ["L0"])).searchCustomers({ query: { case: "email", value: c.email } }),
      Code.PermissionDenied,
    );
  });

  it("updates the fields that are set, once per request id; search follows the new values", async () => {
    const operator = await as("operator");
    const c = newCustomer();
    const id = (await operator.createCustomer(c)).customer?.customerId as string;
    const newPhone = digits();
    const requestId = randomUUID();
    const updated = await operator.updateCustomer({ requestId, customerId: id, phoneNumber: newPhone });
    assert.equal(updated.customer?.phoneNumber, `010-****-${newPhone.slice(7)}`);
    assert.match(updated.customer?.email ?? "", /^g\*\*\*@example\.kr$/, "other fields kept");

    // A retry of the same request answers the first result and changes nothing more; the same
    // request id with another body is refused and changes nothing.
    const retry = await operator.updateCustomer({ requestId, customerId: id, phoneNumber: newPhone });
    assert.equal(retry.customer?.phoneNumber, updated.customer?.phoneNumber);
    await rejects(operator.updateCustomer({ requestId, customerId: id, phoneNumber: digits() }), Code.AlreadyExists);
    const clear = await operator.getCustomer({ customerId: id, reveal: true, revealReason: "test" });
    assert.equal(clear.customer?.phoneNumber, dashed(newPhone));
    assert.equal(clear.customer?.name, c.name);

    const byNew = await operator.searchCustomers({ query: { case: "phoneNumber", value: newPhone } });
    assert.deepEqual(
      byNew.customers.map((x) => x.customerId),
      [id],
    );
    const byOld = await operator.searchCustomers({ query: { case: "phoneNumber", value: c.digits } });
    assert.deepEqual(byOld.customers, []);

    // An empty e-mail removes it.
    const noMail = await operator.updateCustomer({ requestId: randomUUID(), customerId: id, email: "" });
    assert.equal(noMail.customer?.email, "");
    assert.deepEqual((await operator.searchCustomers({ query: { case: "email", value: c.email } })).customers, []);
  });

  it("lists a customer's lines, masked, with the plan in force; a subscriber sees only their own customer", async () => {
    const operator = await as("operator");
    const c = newCustomer();
    const id = (await operator.createCustomer(c)).customer?.customerId as string;
    assert.deepEqual((await operator.listCustomerLines({ customerId: id })).lines, []);

    // A line as the subscription flow leaves it (written directly: this file tests the reads).
    const lineNumber = digits();
    const knex = units.knex.domain;
    const [n] = await knex("domain.numbers")
      .insert({
        number_sealed: testPii.seal(lineNumber, SEAL_CONTEXT.number),
        number_index: testPii.blindIndex("number", lineNumber),
        status: "assigned",
        key_id: testPii.activeKeyId,
      })
      .returning("number_id");
    const [s] = await knex("domain.subscriptions")
      .insert({ customer_id: id, number_id: n.number_id, status: "active", activated_at: new Date() })
      .returning("subscription_id");
    await knex.raw(
      "insert into domain.subscription_plan (subscription_id, plan_id, valid) values (?, '5G-SLIM-8G', tstzrange(now() - interval '1 day', null))",
      [s.subscription_id],
    );

    const lines = (await operator.listCustomerLines({ customerId: id })).lines;
    assert.equal(lines.length, 1);
    assert.deepEqual(
      {
        id: lines[0]?.subscriptionId,
        phone: lines[0]?.phoneNumber,
        status: lines[0]?.status,
        plan: lines[0]?.planId,
        quota: lines[0]?.quotaBytes,
      },
      {
        id: s.subscription_id,
        phone: `010-****-${lineNumber.slice(7)}`,
        status: LineStatus.ACTIVE,
        plan: "5G-SLIM-8G",
        quota: 8n * 1024n ** 3n,
      },
    );

    const own = await as("subscriber", [s.subscription_id]);
    assert.equal((await own.getCustomer({ customerId: id })).customer?.customerId, id);
    assert.equal((await own.listCustomerLines({ customerId: id })).lines.length, 1);
    await rejects(own.getCustomer({ customerId: id, reveal: true, revealReason: "me" }), Code.PermissionDenied);
    const other = await as("subscriber", ["L9999999999"]);
    await rejects(other.getCustomer({ customerId: id }), Code.PermissionDenied);
    await rejects(other.listCustomerLines({ customerId: id }), Code.PermissionDenied);
    await rejects(operator.listCustomerLines({ customerId: randomUUID() }), Code.NotFound);
  });
});
