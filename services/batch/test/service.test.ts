/**
 * BillingJobService over gRPC and Connect, with the job running in the batch unit: start, watch
 * the progress stream to the end, get and list the history, stop and restart; clear errors
 * (INVALID_ARGUMENT naming the field, ALREADY_EXISTS, FAILED_PRECONDITION, NOT_FOUND,
 * PERMISSION_DENIED). And the usage unit's side of a month's close: CloseMonth, StreamLateUsage.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { BatchStatus, BillingJobService } from "../../../gen/telco/batch/v1/billing_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { bearer, tokenFor, verifier } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { testLogger } from "../../../test/support/env.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { createKnex } from "../../kit/src/postgres.js";
import type { Listening, RpcServer } from "../../kit/src/server.js";
import { policy } from "../src/routes.js";
import { createServer } from "../src/server.js";
import { JobRepository } from "../src/store/job-repository.js";
import { BillingHarness, MiB } from "./harness.js";

let h: BillingHarness;
let server: RpcServer;
let at: Listening;
let knex: ReturnType<typeof createKnex>;

before(async () => {
  h = await BillingHarness.start("service");
  await h.addLines(Array.from({ length: 40 }, (_, i) => ({ id: `LS${String(i).padStart(4, "0")}` })));
  knex = createKnex({ url: h.url, schema: "billing", poolMax: 2 });
  server = createServer(
    { jobs: new JobRepository(knex), job: await h.job({ chunkSize: 3 }) },
    { logger: testLogger("batch"), drainDelayMs: 0, drainTimeoutMs: 2_000, auth: { verifier, policy } },
  );
  at = await server.listen(0);
});
after(async () => {
  await server.drain();
  await knex.destroy();
  await h.stop();
});

describe("BillingJobService", () => {
  it("starts a month's job, streams its progress to the end, keeps its history", async () => {
    const op = grpcClient(BillingJobService, at.url, await tokenFor("operator"));
    const started = await op.startBillingJob({ month: "2026-05" });
    const id = started.execution?.jobExecutionId ?? 0n;
    assert.ok(id > 0n);
    assert.equal(started.execution?.status, BatchStatus.STARTED);
    assert.deepEqual(started.execution?.parameters, { month: "2026-05", partitions: "3" });

    // Over Connect as well: the stream a portal reads.
    const viewer = createClient(
      BillingJobService,
      createConnectTransport({ baseUrl: at.url, httpVersion: "1.1", interceptors: [bearer(await tokenFor("viewer"))] }),
    );
    const seen: { status: BatchStatus; done: bigint; total: bigint }[] = [];
    for await (const m of viewer.watchJobExecution({ jobExecutionId: id })) {
      seen.push({
        status: m.execution?.status ?? 0,
        done: m.execution?.itemsDone ?? 0n,
        total: m.execution?.itemsTotal ?? 0n,
      });
    }
    const last = seen.at(-1);
    assert.equal(last?.status, BatchStatus.COMPLETED);
    assert.equal(last?.done, 40n);
    assert.equal(last?.total, 40n);
    assert.ok(seen.length >= 2, "progress before the end");
    for (let i = 1; i < seen.length; i++)
      assert.ok((seen[i]?.done ?? 0n) >= (seen[i - 1]?.done ?? 0n), "progress only grows");

    const got = await viewer.getJobExecution({ jobExecutionId: id });
    assert.deepEqual(
      got.execution?.steps.map((s) => [s.stepName, BatchStatus[s.status]]),
      [
        ["snapshot-usage", "COMPLETED"],
        ["bill-lines:partition-1", "COMPLETED"],
        ["bill-lines:partition-2", "COMPLETED"],
        ["bill-lines:partition-3", "COMPLETED"],
        ["notify-invoices", "COMPLETED"],
        ["close-month", "COMPLETED"],
      ],
    );
    const parts = got.execution?.steps.filter((s) => s.stepName.startsWith("bill-lines")) ?? [];
    assert.equal(
      parts.reduce((n, s) => n + s.itemsTotal, 0n),
      40n,
    );
    for (const s of parts) assert.equal(s.commitCount, (s.writeCount + 2n) / 3n, "a commit per chunk of 3");

    await rejects(op.startBillingJob({ month: "2026-05" }), Code.FailedPrecondition);
    await rejects(op.restartJobExecution({ jobExecutionId: id }), Code.FailedPrecondition);
    const list = await viewer.listJobExecutions({ jobName: "monthly-billing" });
    assert.equal(list.executions[0]?.jobExecutionId, id);
  });

  it("stops a running execution and restarts it", async () => {
    const op = grpcClient(BillingJobService, at.url, await tokenFor("operator"));
    const started = await op.startBillingJob({ month: "2026-04", partitions: 1 });
    const id = started.execution?.jobExecutionId ?? 0n;
    await rejects(op.startBillingJob({ month: "2026-04" }), Code.AlreadyExists);
    await op.stopJobExecution({ jobExecutionId: id });
    let status = BatchStatus.STOPPING;
    for await (const m of op.watchJobExecution({ jobExecutionId: id })) status = m.execution?.status ?? 0;
    assert.equal(status, BatchStatus.STOPPED);
    const again = await op.restartJobExecution({ jobExecutionId: id });
    const next = again.execution?.jobExecutionId ?? 0n;
    assert.ok(next > id);
    for await (const m of op.watchJobExecution({ jobExecutionId: next })) status = m.execution?.status ?? 0;
    assert.equal(status, BatchStatus.COMPLETED);
    const n = await h.pool.query("select count(*)::int n from billing.invoices where month = '2026-04'");
    assert.equal(n.rows[0].n, 40);
  });

  it("answers bad requests with the field and refuses callers without the role", async () => {
    const op = grpcClient(BillingJobService, at.url, await tokenFor("operator"));
    const bad = await rejects(op.startBillingJob({ month: "2026-13", partitions: 65 }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(bad)
        .map((v) => v.field)
        .sort(),
      ["month", "partitions"],
    );
    const noId = await rejects(op.getJobExecution({ jobExecutionId: 0n }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(noId).map((v) => v.field),
      ["job_execution_id"],
    );
    await rejects(op.getJobExecution({ jobExecutionId: 999_999n }), Code.NotFound);
    await rejects(op.stopJobExecution({ jobExecutionId: 999_999n }), Code.NotFound);
    await rejects(op.restartJobExecution({ jobExecutionId: 999_999n }), Code.NotFound);
    await rejects(op.startBillingJob({ month: "2099-01" }), Code.FailedPrecondition);
    const viewer = grpcClient(BillingJobService, at.url, await tokenFor("viewer"));
    await rejects(viewer.startBillingJob({ month: "2026-03" }), Code.PermissionDenied);
    const sub = grpcClient(BillingJobService, at.url, await tokenFor("subscriber", ["LS0001"]));
    await rejects(sub.listJobExecutions({}), Code.PermissionDenied);
  });
});

describe("the usage unit's close of a month", () => {
  it("CloseMonth keeps the first close; StreamLateUsage reports what came after it", async () => {
    const usage = grpcClient(UsageService, h.usageAt.url, await tokenFor("admin"));
    const bad = await rejects(usage.closeMonth({ month: "2026/03" }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(bad).map((v) => v.field),
      ["month"],
    );
    await rejects(usage.closeMonth({ month: "2099-01" }), Code.FailedPrecondition);
    // Never closed and its counters long expired: closing it now would let billing read nothing as real.
    const gone = await rejects(usage.closeMonth({ month: "2024-01" }), Code.FailedPrecondition);
    assert.match(gone.message, /2024-01 was never closed and its counters expired at /);
    await h.use("LS0001", "2026-03", [Number(3n * MiB)]);
    const first = await usage.closeMonth({ month: "2026-03" });
    assert.equal(first.alreadyClosed, false);
    await h.use("LS0001", "2026-03", [Number(2n * MiB)], 2);
    // The month's counters now expire on their own, the grace (15 days) after the close.
    const m = h.store.clock.parse("2026-03");
    const ttl = await h.store.redis.ttl(h.store.layout.monthKey(h.store.layout.bucket("LS0001"), m));
    assert.ok(ttl > 15 * 86_400 - 120 && ttl <= 15 * 86_400, `TTL ${ttl} s`);
    const second = await usage.closeMonth({ month: "2026-03" });
    assert.equal(second.alreadyClosed, true);
    assert.deepEqual(second.closedAt, first.closedAt);
    const totals = [];
    for await (const p of usage.streamMonthTotals({ month: "2026-03" })) totals.push(...p.totals);
    assert.deepEqual(
      totals.filter((t) => t.subscriptionId === "LS0001").map((t) => t.usedBytes),
      [3n * MiB],
    );
    const late = [];
    for await (const p of usage.streamLateUsage({})) late.push(...p.usage);
    assert.deepEqual(
      late.filter((l) => l.subscriptionId === "LS0001").map((l) => [l.month, l.lateBytes]),
      [["2026-03", 2n * MiB]],
    );
    const sub = grpcClient(UsageService, h.usageAt.url, await tokenFor("operator"));
    await rejects(sub.closeMonth({ month: "2026-03" }), Code.PermissionDenied);
  });
});
