/**
 * The four units, each on a real server (port 0) with the real test database and Redis, called
 * the ways their users call them: generated Connect clients over gRPC, the Connect protocol
 * (HTTP/1.1 and HTTP/2) and gRPC-Web; a stock @grpc/grpc-js client built from the .proto files;
 * health and reflection.
 */

import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { BatchStatus, BillingJobService } from "../gen/telco/batch/v1/billing_pb.js";
import { AuthService, Role } from "../gen/telco/domain/v1/auth_pb.js";
import { CatalogService } from "../gen/telco/domain/v1/catalog_pb.js";
import { Channel } from "../gen/telco/message/v1/events_pb.js";
import { TemplateService, TemplateStatus, VariableType } from "../gen/telco/message/v1/template_pb.js";
import { UsageService } from "../gen/telco/usage/v1/usage_pb.js";
import { OperatorStore } from "../services/domain/src/store/operator-store.js";
import { fieldViolations } from "../services/kit/src/errors.js";
import { rejects } from "./support/assertions.js";
import { bearer, tokenFor } from "./support/auth.js";
import { clients, grpc, grpcClient, grpcJsClient, PROTO_ROOT } from "./support/clients.js";
import { unique } from "./support/env.js";
import { type RunningUnits, startUnits, type UnitName } from "./support/units.js";
import { usageStore } from "./support/usage.js";

let units: RunningUnits;
/** An operator's token: most tests act as customer care. */
let staff: string;

/** Orders descriptors so that every file comes after its imports, as a FileDescriptorSet must. */
function importsFirst(files: FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((f) => [f.name, f]));
  const out: FileDescriptorProto[] = [];
  const done = new Set<string>();
  const visit = (f: FileDescriptorProto) => {
    if (done.has(f.name)) return;
    done.add(f.name);
    for (const dep of f.dependency) {
      const d = byName.get(dep);
      assert.ok(d, `reflection did not send ${dep}, imported by ${f.name}`);
      visit(d);
    }
    out.push(f);
  };
  files.forEach(visit);
  return out;
}
const GiB = 1024n ** 3n;

/** "YYYY-MM" now in the carrier's time zone. */
const thisMonth = () => usageStore(units.redis).clock.monthOf(Date.now()).label;

/** A line the usage unit knows, as the domain unit's activation event would make it. */
const known = (line: string) =>
  usageStore(units.redis).setQuotas([{ sid: line, mode: "plan", lineSequence: 1n, quotaBytes: 0n }]);

before(async () => {
  staff = await tokenFor("operator");
  units = await startUnits();
});
after(async () => {
  await units?.stop();
});

describe("usage unit", () => {
  it("sets and reads a line's quota over gRPC, Connect (HTTP/1.1 and HTTP/2) and gRPC-Web", async () => {
    for (const [protocol, client] of clients(UsageService, units.at.usage.url, staff)) {
      const line = unique(`line-${protocol}`);
      await known(line);
      const quota = 8n * GiB + BigInt(protocol.length); // distinct per protocol
      const set = await client.setLineQuota({ subscriptionId: line, quotaBytes: quota });
      assert.equal(set.quotaBytes, quota, protocol);
      const got = await client.getLineUsage({ subscriptionId: line, month: thisMonth() });
      assert.equal(got.quotaBytes, quota, protocol);
      assert.equal(got.usedBytes, 0n, protocol);
      assert.equal(got.quotaKnown, true, protocol);
      assert.deepEqual(got.alertedLevels, [], protocol);
    }
  });

  it("reads counters the aggregator wrote: a jump to 90 % marks 50 and 80 done", async () => {
    const [[, client]] = clients(UsageService, units.at.usage.url, staff) as [
      [string, ReturnType<typeof createClient<typeof UsageService>>],
    ];
    const line = unique("line");
    const store = usageStore(units.redis);
    await store.setQuotas([{ sid: line, mode: "plan", lineSequence: 1n, quotaBytes: 10n * GiB }]);
    const month = store.clock.monthOf(Date.now());
    await store.apply([{ sid: line, seq: 1, bytes: Number(9n * GiB), month, traceparent: "" }]);
    const got = await client.getLineUsage({ subscriptionId: line, month: month.label });
    assert.equal(got.usedBytes, 9n * GiB);
    assert.deepEqual(got.alertedLevels, [50, 80]);
    assert.equal(got.percent, 90);
  });

  it("answers INVALID_ARGUMENT naming every bad field, and NOT_FOUND for an unknown line", async () => {
    const client = grpcClient(UsageService, units.at.usage.url, staff);
    const err = await rejects(client.getLineUsage({ subscriptionId: "", month: "2026-13" }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(err).map((v) => v.field),
      ["subscription_id", "month"],
    );
    const quotaErr = await rejects(
      client.setLineQuota({ subscriptionId: "x", quotaBytes: 1n << 60n }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(quotaErr).map((v) => v.field),
      ["quota_bytes"],
    );
    await rejects(client.getLineUsage({ subscriptionId: unique("nobody"), month: thisMonth() }), Code.NotFound);
    await rejects(client.setLineQuota({ subscriptionId: unique("nobody"), quotaBytes: 1n }), Code.NotFound);
  });

  it("answers a body that is not Protobuf with INVALID_ARGUMENT naming the message expected, over gRPC and Connect", async () => {
    // 0x0f 0xff…: a field tag whose varint never ends, so no Protobuf parser can take it.
    const garbage = Buffer.from([0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    const frame = (flags: number, body: Buffer) => {
      const head = Buffer.alloc(5);
      head.writeUInt8(flags, 0);
      head.writeUInt32BE(body.length, 1);
      return Buffer.concat([head, body]);
    };
    const call = (path: string, headers: Record<string, string>, body: Buffer) =>
      new Promise<{ headers: Record<string, string>; body: Buffer }>((resolve, reject) => {
        const session = http2.connect(units.at.usage.url);
        session.on("error", reject);
        const req = session.request({ ":method": "POST", ":path": path, authorization: `Bearer ${staff}`, ...headers });
        const got: Record<string, string> = {};
        const chunks: Buffer[] = [];
        req.on("response", (h) => Object.assign(got, h));
        req.on("trailers", (h) => Object.assign(got, h));
        req.on("data", (d: Buffer) => chunks.push(d));
        req.on("end", () => {
          session.close();
          resolve({
            headers: Object.fromEntries(Object.entries(got).map(([k, v]) => [k, String(v)])),
            body: Buffer.concat(chunks),
          });
        });
        req.end(body);
      });
    const unary = "/telco.usage.v1.UsageService/GetLineUsage";
    const grpcAnswer = await call(unary, { "content-type": "application/grpc", te: "trailers" }, frame(0, garbage));
    assert.equal(grpcAnswer.headers["grpc-status"], String(Code.InvalidArgument));
    assert.match(
      decodeURIComponent(grpcAnswer.headers["grpc-message"] ?? ""),
      /^the request body is not a valid telco\.usage\.v1\.GetLineUsageRequest \(Protobuf binary\): /,
    );
    const connectAnswer = await call(
      unary,
      { "content-type": "application/proto", "connect-protocol-version": "1" },
      garbage,
    );
    assert.equal(connectAnswer.headers[":status"], "400");
    const error = JSON.parse(connectAnswer.body.toString()) as { code: string; message: string };
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, /not a valid telco\.usage\.v1\.GetLineUsageRequest/);
    // A server stream over Connect: the error is in the end-of-stream message.
    const stream = await call(
      "/telco.usage.v1.UsageService/WatchLineUsage",
      { "content-type": "application/connect+proto", "connect-protocol-version": "1" },
      frame(0, garbage),
    );
    const end = stream.body.subarray(5);
    assert.equal(stream.body.readUInt8(0) & 0x02, 0x02, "an end-stream envelope");
    assert.equal((JSON.parse(end.toString()) as { error: { code: string } }).error.code, "invalid_argument");
  });
});

describe("domain unit", () => {
  it("lists the plan catalogue, paging by key, over every protocol", async () => {
    for (const [protocol, client] of clients(CatalogService, units.at.domain.url, staff)) {
      const all = await client.listPlans({ includeInactive: true });
      const ids = all.plans.map((p) => p.planId);
      assert.ok(ids.includes("5G-PREMIUM-UNL"), protocol);
      assert.deepEqual(ids, [...ids].sort(), `${protocol}: ordered by plan_id`);
      const unl = all.plans.find((p) => p.planId === "5G-PREMIUM-UNL");
      assert.equal(unl?.quotaBytes, 0n, "unlimited plan has quota 0");
      assert.equal(unl?.monthlyFee?.amountMinor, 89_000n);

      const paged: string[] = [];
      let token = "";
      do {
        const page = await client.listPlans({ pageSize: 2, pageToken: token, includeInactive: true });
        assert.ok(page.plans.length <= 2);
        paged.push(...page.plans.map((p) => p.planId));
        token = page.nextPageToken;
      } while (token !== "");
      assert.deepEqual(paged, ids, `${protocol}: pages add up to the whole list`);

      const active = await client.listPlans({});
      assert.ok(!active.plans.some((p) => !p.active), `${protocol}: inactive plans hidden by default`);
    }
  });

  it("lists value-added services and discounts in the order billing applies them", async () => {
    const client = grpcClient(CatalogService, units.at.domain.url, staff);
    const { vas } = await client.listVas({});
    assert.ok(vas.some((v) => v.vasId === "RINGBACK" && v.monthlyFee?.amountMinor === 990n));
    const { discounts } = await client.listDiscounts({});
    const orders = discounts.map((d) => d.applyOrder);
    assert.deepEqual(
      orders,
      [...orders].sort((a, b) => a - b),
    );
    const contract = discounts.find((d) => d.discountId === "CONTRACT-25");
    assert.equal(contract?.percentBp, 2500);
  });

  it("rejects bad arguments by field and unknown plans with NOT_FOUND", async () => {
    const client = grpcClient(CatalogService, units.at.domain.url, staff);
    const e1 = await rejects(client.listPlans({ pageSize: 10_000, pageToken: "!!not-a-token" }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(e1).map((v) => v.field),
      ["page_size", "page_token"],
    );
    const e2 = await rejects(client.getPlan({ planId: "lower case" }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(e2).map((v) => v.field),
      ["plan_id"],
    );
    await rejects(client.getPlan({ planId: "NO-SUCH-PLAN" }), Code.NotFound);
  });
});

describe("message unit", () => {
  it("creates a template as version 1 (draft) and reads it back, over every protocol", async () => {
    for (const [protocol, client] of clients(TemplateService, units.at.message.url, staff)) {
      const name = unique(`usage-alert-${protocol}`).toLowerCase();
      const created = await client.createTemplate({
        name,
        channel: Channel.SMS,
        body: "안녕하세요 {{user_name}}님, 이번 달 데이터의 {{percent}}%를 사용하셨습니다.",
        variables: [
          { name: "user_name", type: VariableType.STRING, required: true, example: "홍길동" },
          { name: "percent", type: VariableType.NUMBER, required: true, example: "80" },
        ],
      });
      const t = created.template;
      assert.ok(t, protocol);
      assert.equal(t.version, 1);
      assert.equal(t.status, TemplateStatus.DRAFT);
      assert.equal(t.locale, "ko-KR", "empty locale defaults to Korean");
      const got = await client.getTemplate({ templateId: t.templateId });
      assert.equal(got.template?.body, t.body);
      assert.deepEqual(
        got.template?.variables.map((v) => v.name),
        ["user_name", "percent"],
      );
      await rejects(client.createTemplate({ name, channel: Channel.SMS, body: "x" }), Code.AlreadyExists);
    }
  });

  it("rejects a placeholder the template does not declare, naming the field", async () => {
    const client = grpcClient(TemplateService, units.at.message.url, staff);
    const err = await rejects(
      client.createTemplate({
        name: unique("bad").toLowerCase(),
        channel: Channel.EMAIL,
        subject: "",
        body: "Dear {{user_name}}, you owe {{amount}}",
        variables: [{ name: "user_name", type: VariableType.STRING, required: true }],
      }),
      Code.InvalidArgument,
    );
    const v = fieldViolations(err);
    assert.deepEqual(
      v.map((x) => x.field),
      ["subject", "body"],
    );
    assert.match(v[1]?.description ?? "", /\{\{amount\}\} is not a declared variable/);
    await rejects(client.getTemplate({ templateId: "not-a-uuid" }), Code.InvalidArgument);
    await rejects(client.getTemplate({ templateId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound);
  });
});

describe("batch unit", () => {
  it("reads job executions with their partition steps, newest first", async () => {
    const k = units.knex.billing;
    const month = `2099-${String(1 + Math.floor(Math.random() * 12)).padStart(2, "0")}-${unique("t")}`;
    const [inst] = await k("job_instance")
      .insert({ job_name: "monthly-billing", job_key: JSON.stringify({ month }), parameters: { month } })
      .returning("job_instance_id");
    const [exec] = await k("job_execution")
      .insert({ job_instance_id: inst.job_instance_id, status: "FAILED", exit_code: "FAILED", exit_message: "boom" })
      .returning("job_execution_id");
    await k("step_execution").insert([
      {
        job_execution_id: exec.job_execution_id,
        step_name: "bill-lines:partition-0",
        status: "COMPLETED",
        write_count: 10,
      },
      {
        job_execution_id: exec.job_execution_id,
        step_name: "bill-lines:partition-1",
        status: "FAILED",
        write_count: 4,
      },
    ]);
    for (const [protocol, client] of clients(BillingJobService, units.at.batch.url, staff)) {
      const got = await client.getJobExecution({ jobExecutionId: BigInt(exec.job_execution_id) });
      assert.equal(got.execution?.status, BatchStatus.FAILED, protocol);
      assert.equal(got.execution?.parameters.month, month);
      assert.deepEqual(
        got.execution?.steps.map((s) => [s.stepName, s.writeCount]),
        [
          ["bill-lines:partition-0", 10n],
          ["bill-lines:partition-1", 4n],
        ],
      );
      const list = await client.listJobExecutions({ jobName: "monthly-billing", pageSize: 1 });
      assert.equal(list.executions.length, 1);
      assert.equal(list.executions[0]?.jobExecutionId, BigInt(exec.job_execution_id), "newest first");
    }
  });

  it("refuses a second running execution of one job instance (database constraint)", async () => {
    const k = units.knex.billing;
    const month = unique("m");
    const [inst] = await k("job_instance")
      .insert({ job_name: "monthly-billing", job_key: JSON.stringify({ month }), parameters: { month } })
      .returning("job_instance_id");
    await k("job_execution").insert({ job_instance_id: inst.job_instance_id, status: "STARTED" });
    await assert.rejects(
      k("job_execution").insert({ job_instance_id: inst.job_instance_id, status: "STARTING" }),
      /job_execution_one_running/,
    );
  });

  it("answers NOT_FOUND and INVALID_ARGUMENT by field", async () => {
    const client = grpcClient(BillingJobService, units.at.batch.url, staff);
    await rejects(client.getJobExecution({ jobExecutionId: 999_999_999n }), Code.NotFound);
    const err = await rejects(client.listJobExecutions({ jobName: "Bad Name", pageToken: "x" }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(err).map((v) => v.field),
      ["job_name", "page_token"],
    );
  });
});

describe("stock @grpc/grpc-js clients built from the .proto files", () => {
  const address = (u: UnitName) => `127.0.0.1:${units.at[u].port}`;

  it("calls every unit", async () => {
    const usage = grpcJsClient(
      `${PROTO_ROOT}/telco/usage/v1/usage.proto`,
      "telco.usage.v1.UsageService",
      address("usage"),
      staff,
    );
    const line = unique("grpcjs");
    await known(line);
    await usage.call("SetLineQuota", { subscription_id: line, quota_bytes: "1000" });
    const u = await usage.call<{ quota_bytes: string; quota_known: boolean }>("GetLineUsage", {
      subscription_id: line,
      month: thisMonth(),
    });
    assert.equal(u.quota_bytes, "1000");
    assert.equal(u.quota_known, true);
    usage.close();

    const domain = grpcJsClient(
      `${PROTO_ROOT}/telco/domain/v1/catalog.proto`,
      "telco.domain.v1.CatalogService",
      address("domain"),
      staff,
    );
    const plan = await domain.call<{ plan: { plan_id: string; monthly_fee: { amount_minor: string } } }>("GetPlan", {
      plan_id: "5G-STD-110G",
    });
    assert.equal(plan.plan.monthly_fee.amount_minor, "69000");
    domain.close();

    const message = grpcJsClient(
      `${PROTO_ROOT}/telco/message/v1/template.proto`,
      "telco.message.v1.TemplateService",
      address("message"),
      staff,
    );
    const t = await message.call<{ template: { version: number; channel: string } }>("CreateTemplate", {
      name: unique("grpcjs").toLowerCase(),
      channel: "CHANNEL_PUSH",
      subject: "데이터 알림",
      body: "{{percent}}% 사용",
      variables: [{ name: "percent", type: "VARIABLE_TYPE_NUMBER", required: true }],
    });
    assert.equal(t.template.version, 1);
    assert.equal(t.template.channel, "CHANNEL_PUSH");
    message.close();

    const batch = grpcJsClient(
      `${PROTO_ROOT}/telco/batch/v1/billing.proto`,
      "telco.batch.v1.BillingJobService",
      address("batch"),
      staff,
    );
    const list = await batch.call<{ executions: unknown[] }>("ListJobExecutions", { page_size: 5 });
    assert.ok(Array.isArray(list.executions));
    batch.close();
  });

  it("gets INVALID_ARGUMENT with the field named, as a grpc status", async () => {
    const usage = grpcJsClient(
      `${PROTO_ROOT}/telco/usage/v1/usage.proto`,
      "telco.usage.v1.UsageService",
      address("usage"),
      staff,
    );
    await assert.rejects(
      usage.call("GetLineUsage", { subscription_id: "ok", month: "November" }),
      (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
        assert.match(e.details, /month/);
        return true;
      },
    );
    usage.close();
  });

  it("checks health with the standard health proto", async () => {
    for (const unit of ["usage", "message", "domain", "batch"] as const) {
      const health = grpcJsClient(`${PROTO_ROOT}/grpc/health/v1/health.proto`, "grpc.health.v1.Health", address(unit));
      const r = await health.call<{ status: string }>("Check", { service: "" });
      assert.equal(r.status, "SERVING", unit);
      health.close();
    }
  });
});

describe("health and reflection", () => {
  const serviceOf: Record<UnitName, string> = {
    usage: "telco.usage.v1.UsageService",
    message: "telco.message.v1.TemplateService",
    domain: "telco.domain.v1.CatalogService",
    batch: "telco.batch.v1.BillingJobService",
  };

  it("reports SERVING for the server and each of its services, NOT_FOUND for others", async () => {
    for (const unit of Object.keys(serviceOf) as UnitName[]) {
      const health = createClient(Health, createGrpcTransport({ baseUrl: units.at[unit].url }));
      assert.equal((await health.check({ service: "" })).status, Status.SERVING);
      assert.equal((await health.check({ service: serviceOf[unit] })).status, Status.SERVING);
      await rejects(health.check({ service: "no.such.Service" }), Code.NotFound);
    }
  });

  it("describes each unit's services through reflection v1 and v1alpha, with their imports", async () => {
    for (const unit of Object.keys(serviceOf) as UnitName[]) {
      const transport = createGrpcTransport({ baseUrl: units.at[unit].url });
      for (const Reflection of [ReflectionV1, ReflectionV1Alpha]) {
        const client = createClient(Reflection as typeof ReflectionV1, transport);
        async function* requests() {
          yield { messageRequest: { case: "listServices" as const, value: "" } };
          yield { messageRequest: { case: "fileContainingSymbol" as const, value: serviceOf[unit] } };
          yield { messageRequest: { case: "fileByFilename" as const, value: "no/such.proto" } };
        }
        const responses = [];
        for await (const r of client.serverReflectionInfo(requests())) responses.push(r);
        const [list, file, missing] = responses;
        assert.equal(list?.messageResponse.case, "listServicesResponse");
        const names =
          list?.messageResponse.case === "listServicesResponse"
            ? list.messageResponse.value.service.map((s) => s.name)
            : [];
        assert.ok(names.includes(serviceOf[unit]), `${unit}: ${names.join(",")}`);
        assert.ok(names.includes("grpc.health.v1.Health"));

        assert.equal(file?.messageResponse.case, "fileDescriptorResponse");
        const protos =
          file?.messageResponse.case === "fileDescriptorResponse"
            ? file.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b))
            : [];
        // The descriptors alone, with their imports, rebuild the service: what grpcurl does.
        const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(protos) }));
        const svc = registry.getService(serviceOf[unit]);
        assert.ok(svc, `${unit}: service rebuilt from reflection`);
        assert.ok(svc.methods.length >= 2);

        // The INVALID_ARGUMENT detail type is described too, so clients can decode it.
        const detail = [];
        for await (const r of client.serverReflectionInfo(
          (async function* () {
            yield { messageRequest: { case: "fileContainingSymbol" as const, value: "google.rpc.BadRequest" } };
          })(),
        ))
          detail.push(r);
        assert.equal(detail[0]?.messageResponse.case, "fileDescriptorResponse", `${unit}: google.rpc.BadRequest`);

        assert.equal(missing?.messageResponse.case, "errorResponse");
        if (missing?.messageResponse.case === "errorResponse")
          assert.equal(missing.messageResponse.value.errorCode, Code.NotFound);
      }
    }
  });
});

describe("authentication and roles", () => {
  it("refuses calls without a valid token, before reading them", async () => {
    const anonymous = grpcClient(CatalogService, units.at.domain.url);
    const e1 = await rejects(anonymous.listPlans({}), Code.Unauthenticated);
    assert.match(e1.message, /missing access token/);
    const forged = grpcClient(CatalogService, units.at.domain.url, `${staff.slice(0, -4)}AAAA`);
    await rejects(forged.listPlans({}), Code.Unauthenticated);
    const { generateAuthKeys, TokenSigner } = await import("../services/kit/src/auth.js");
    const otherKeys = await TokenSigner.fromPrivateKey(generateAuthKeys().signingKey);
    const { token } = await otherKeys.sign({ subject: "intruder", role: "admin", subscriptionIds: [] }, 60);
    await rejects(grpcClient(CatalogService, units.at.domain.url, token).listPlans({}), Code.Unauthenticated);
    // Health and reflection stay open for probes and grpcurl.
    const health = createClient(Health, createGrpcTransport({ baseUrl: units.at.domain.url }));
    assert.equal((await health.check({ service: "" })).status, Status.SERVING);
  });

  it("signs operators in with their password; the token works on every unit", async () => {
    const username = unique("op")
      .toLowerCase()
      .replace(/[^a-z0-9.-]/g, "");
    await new OperatorStore(units.knex.domain).create(username, "correct horse battery", "viewer");
    const auth = grpcClient(AuthService, units.at.domain.url); // no token needed to sign in
    await rejects(auth.login({ username, password: "wrong" }), Code.Unauthenticated);
    await rejects(auth.login({ username: "nobody-here", password: "correct horse battery" }), Code.Unauthenticated);
    // A NUL in the name: refused by the unit (PostgreSQL text cannot even hold it), not an INTERNAL.
    await rejects(auth.login({ username: "a\u0000b", password: "x" }), Code.InvalidArgument);
    const r = await auth.login({ username, password: "correct horse battery" });
    assert.equal(r.role, Role.VIEWER);
    const plans = await grpcClient(CatalogService, units.at.domain.url, r.accessToken).listPlans({});
    assert.ok(plans.plans.length > 0);
    const jobs = await grpcClient(BillingJobService, units.at.batch.url, r.accessToken).listJobExecutions({});
    assert.ok(Array.isArray(jobs.executions));
    await rejects(
      grpcClient(UsageService, units.at.usage.url, r.accessToken).setLineQuota({
        subscriptionId: "L1",
        quotaBytes: 1n,
      }),
      Code.PermissionDenied,
    );
    await units.knex.domain("operators").where({ username }).update({ active: false });
    await rejects(auth.login({ username, password: "correct horse battery" }), Code.Unauthenticated);
  });

  it("publishes the signing key as a JWK set that verifies its tokens, as the ingress gateway does", async () => {
    const { createLocalJWKSet, decodeProtectedHeader, jwtVerify } = await import("jose");
    const { AUDIENCE, ISSUER, JWKS_PATH } = await import("../services/kit/src/auth.js");
    const username = unique("jw")
      .toLowerCase()
      .replace(/[^a-z0-9.-]/g, "");
    await new OperatorStore(units.knex.domain).create(username, "correct horse battery", "operator");
    const { accessToken } = await grpcClient(AuthService, units.at.domain.url).login({
      username,
      password: "correct horse battery",
    });
    // Over HTTP/2 (cleartext, prior knowledge), as the domain unit's sidecar passes the gateway's
    // fetch on (the Service port is gRPC), and over HTTP/1.1 (curl, a browser).
    const h2 = http2.connect(units.at.domain.url);
    const viaH2 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = h2.request({ ":method": "GET", ":path": JWKS_PATH });
      let status = 0;
      let body = "";
      req.on("response", (h) => {
        status = Number(h[":status"]);
      });
      req.setEncoding("utf8");
      req.on("data", (c: string) => {
        body += c;
      });
      req.on("end", () => resolve({ status, body }));
      req.on("error", reject);
    });
    h2.close();
    assert.equal(viaH2.status, 200, "JWK set over HTTP/2");
    const head = await fetch(`${units.at.domain.url}${JWKS_PATH}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(
      head.headers.get("content-length"),
      String(Buffer.byteLength(viaH2.body)),
      "HEAD: its length, no body",
    );
    const res = await fetch(`${units.at.domain.url}${JWKS_PATH}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    const jwks = (await res.json()) as { keys: Record<string, unknown>[] };
    assert.deepEqual(JSON.parse(viaH2.body), jwks, "the same document over both");
    assert.equal(jwks.keys.length, 1);
    assert.deepEqual(
      Object.keys(jwks.keys[0] ?? {}).sort(),
      ["alg", "crv", "kid", "kty", "use", "x"],
      "public members only",
    );
    assert.equal(decodeProtectedHeader(accessToken).kid, jwks.keys[0]?.kid, "tokens name the key they are signed with");
    const { payload } = await jwtVerify(accessToken, createLocalJWKSet(jwks as never), {
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ["EdDSA"],
    });
    assert.equal(payload.role, "operator");
    // A token from another key does not verify against it.
    const { generateAuthKeys, TokenSigner } = await import("../services/kit/src/auth.js");
    const other = await TokenSigner.fromPrivateKey(generateAuthKeys().signingKey);
    const { token } = await other.sign({ subject: "intruder", role: "admin", subscriptionIds: [] }, 60);
    await assert.rejects(jwtVerify(token, createLocalJWKSet(jwks as never)));
    // Only that document: other paths are 404, other methods 405.
    assert.equal((await fetch(`${units.at.domain.url}/.well-known/other`)).status, 404);
    assert.equal((await fetch(`${units.at.domain.url}${JWKS_PATH}`, { method: "DELETE" })).status, 405);
  });

  it("enforces each unit's role policy", async () => {
    const viewer = await tokenFor("viewer");
    await rejects(
      grpcClient(UsageService, units.at.usage.url, viewer).setLineQuota({ subscriptionId: "L1", quotaBytes: 1n }),
      Code.PermissionDenied,
    );
    await rejects(
      grpcClient(TemplateService, units.at.message.url, viewer).createTemplate({
        name: "x",
        channel: Channel.SMS,
        body: "x",
      }),
      Code.PermissionDenied,
    );
    const subscriber = await tokenFor("subscriber", ["L-mine"]);
    await rejects(
      grpcClient(BillingJobService, units.at.batch.url, subscriber).listJobExecutions({}),
      Code.PermissionDenied,
    );
  });

  it("lets a subscriber read only their own lines", async () => {
    const mine = unique("mine");
    const theirs = unique("theirs");
    const admin = grpcClient(UsageService, units.at.usage.url, staff);
    await known(mine);
    await known(theirs);
    await admin.setLineQuota({ subscriptionId: mine, quotaBytes: 100n });
    await admin.setLineQuota({ subscriptionId: theirs, quotaBytes: 100n });
    const subscriber = createClient(
      UsageService,
      createGrpcTransport({
        baseUrl: units.at.usage.url,
        interceptors: [bearer(await tokenFor("subscriber", [mine]))],
      }),
    );
    assert.equal((await subscriber.getLineUsage({ subscriptionId: mine, month: thisMonth() })).quotaBytes, 100n);
    await rejects(subscriber.getLineUsage({ subscriptionId: theirs, month: thisMonth() }), Code.PermissionDenied);
  });
});
