/**
 * The monthly billing job against real PostgreSQL, a real usage unit on real Redis, and Kafka:
 * a month billed from the lines' history and the usage totals, numbered without gaps, a bill
 * message per invoice, the month closed; a second start refused while one runs; a partition that
 * fails failing the execution with its message and a restart re-running only that partition; a
 * stop and restart giving the invoices of an uninterrupted run; usage arriving after a month's
 * close billed once, as an adjustment on a later invoice.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createKnex } from "../../kit/src/postgres.js";
import { CLOSE_STEP, type JobError, NOTIFY_STEP, SNAPSHOT_STEP } from "../src/billing/job.js";
import { JobRepository } from "../src/store/job-repository.js";
import { BillingHarness, GiB, kst, type LineSpec, LONG_AGO, MiB } from "./harness.js";

let h: BillingHarness;
let repo: JobRepository;
let knex: ReturnType<typeof createKnex>;

const FILLER: LineSpec[] = Array.from({ length: 20 }, (_, i) => ({ id: `LB10${String(i).padStart(2, "0")}` }));
const LINES: LineSpec[] = [
  { id: "LB0001" },
  {
    id: "LB0002",
    plans: [
      ["5G-SLIM-8G", LONG_AGO, kst(2026, 10, 15, 10)],
      ["5G-STD-110G", kst(2026, 10, 15, 10)],
    ],
    vas: [["ROAMING-PASS", kst(2026, 10, 5), kst(2026, 10, 12)]],
    discounts: [["CONTRACT-25", LONG_AGO]],
    pays: [{ merchant: "GAME-CO", amount: 5_000, at: kst(2026, 10, 3, 12) }],
  },
  { id: "LB0003", plans: [["LTE-DATA-2G", LONG_AGO]] },
  { id: "LB0004", activated: kst(2026, 10, 10, 15), plans: [["5G-BASIC-24G", kst(2026, 10, 10, 15)]] },
  { id: "LB0005", terminated: kst(2026, 10, 20, 9) },
  { id: "LB0006", activated: kst(2026, 11, 5) },
  { id: "LB0007", terminated: kst(2026, 9, 20) },
  ...FILLER,
];

const expectJobError = (code: string, re: RegExp) => (e: unknown) =>
  (e as JobError).code === code && re.test((e as Error).message);

async function invoiceOf(sid: string, month: string) {
  const r = await h.pool.query(
    `select i.*, (select json_agg(json_build_object('kind', kind, 'amount', amount_krw, 'd', description) order by line_no)
                    from billing.invoice_lines l where l.invoice_id = i.invoice_id) lines
       from billing.invoices i where subscription_id = $1 and month = $2`,
    [sid, month],
  );
  return r.rows[0] as
    | {
        invoice_number: string;
        total_krw: string;
        subtotal_krw: string;
        vat_krw: string;
        used_bytes: string;
        lines: { kind: string; amount: number; d: string }[];
      }
    | undefined;
}

async function numbers(month: string): Promise<string[]> {
  const r = await h.pool.query<{ invoice_number: string }>(
    "select invoice_number from billing.invoices where month = $1 order by invoice_number",
    [month],
  );
  return r.rows.map((x) => x.invoice_number);
}

const seq = (month: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${month}-${String(i + 1).padStart(7, "0")}`);

before(async () => {
  h = await BillingHarness.start("job");
  knex = createKnex({ url: h.url, schema: "billing", poolMax: 2 });
  repo = new JobRepository(knex);
  await h.addLines(LINES);
});
after(async () => {
  await knex.destroy();
  await h.stop();
});

describe("monthly billing job", () => {
  it("a partition that fails fails the execution with its message; a restart re-runs only that partition", async () => {
    const month = "2026-08";
    // No plan row for 08/01-08/02: the line cannot be billed.
    await h.addLines([{ id: "LB1009X", plans: [["5G-STD-110G", kst(2026, 8, 3)]] }]);
    const job = await h.job();
    const { executionId } = await job.start(month);
    await job.run(executionId);

    const failed = await repo.getExecution(BigInt(executionId));
    assert.equal(failed?.status, "FAILED");
    assert.match(
      failed?.exit_message ?? "",
      /^bill-lines:partition-(\d): line LB1009X has no plan in force on 2026-08-01$/,
    );
    const broken = (/partition-(\d)/.exec(failed?.exit_message ?? "") as RegExpExecArray)[1];
    const steps = await repo.stepsOf([executionId]);
    const parts = steps.filter((s) => s.step_name.startsWith("bill-lines"));
    assert.equal(parts.length, 3);
    for (const s of parts) {
      assert.equal(s.status, s.step_name.endsWith(`-${broken}`) ? "FAILED" : "COMPLETED", s.step_name);
    }
    assert.ok(
      !steps.some((s) => s.step_name === NOTIFY_STEP || s.step_name === CLOSE_STEP),
      "nothing after the partitions ran",
    );
    const brokenStep = parts.find((s) => s.step_name.endsWith(`-${broken}`));
    const doneBefore = Number(brokenStep?.write_count);
    assert.equal(Number(brokenStep?.rollback_count), 1);
    assert.equal(await invoiceOf("LB1009X", month), undefined);
    const before = await h.dump(month);

    // The data fixed, the restart runs the broken partition only, from its last committed chunk,
    // at the prices the month was partitioned with (the catalogue changing meanwhile changes nothing).
    await h.pool.query("update domain.plans set monthly_fee_krw = 99000 where plan_id = '5G-STD-110G'");
    await h.pool.query(
      "insert into domain.subscription_plan (subscription_id, plan_id, valid) values ('LB1009X', '5G-STD-110G', tstzrange($1, $2, '[)'))",
      [new Date(LONG_AGO), new Date(kst(2026, 8, 3))],
    );
    await assert.rejects(job.restart(String(Number(executionId) + 99)), expectJobError("not_found", /not found/));
    const again = await job.restart(executionId);
    await job.run(again.executionId);
    const restarted = await repo.getExecution(BigInt(again.executionId));
    assert.equal(restarted?.status, "COMPLETED", restarted?.exit_message);
    const rerun = await repo.stepsOf([again.executionId]);
    assert.deepEqual(
      rerun.map((s) => s.step_name),
      [`bill-lines:partition-${broken}`, NOTIFY_STEP, CLOSE_STEP],
    );
    const part = rerun[0] as (typeof rerun)[0];
    assert.equal(
      Number(part.read_count),
      (part.context?.count ?? 0) - doneBefore,
      "read only the lines not billed before",
    );
    // Lines live in August: all but LB0004 (from October) and LB0006 (November).
    const live = LINES.length - 2 + 1;
    assert.deepEqual(await numbers(month), seq(month, live));
    assert.ok((await h.dump(month)).startsWith(before.split("\n")[0] as string));
    await h.pool.query("update domain.plans set monthly_fee_krw = 69000 where plan_id = '5G-STD-110G'");
    const inv = await invoiceOf("LB1009X", month);
    assert.equal(inv?.total_krw, String(69_000 + 6_900), "billed at the price of the month's snapshot");
    assert.equal(Number(restarted?.items_done), live);
    assert.equal(Number(restarted?.items_total), live);

    await assert.rejects(job.restart(again.executionId), expectJobError("failed_precondition", /already billed/));
    await assert.rejects(job.restart(executionId), expectJobError("failed_precondition", /is not the newest/));
  });

  it("a second start while one runs is refused, also by the database itself", async () => {
    const month = "2026-09";
    // Late usage of August (closed by its billing above), for the September invoice.
    await h.use("LB0003", "2026-08", [Number(20n * MiB)], 1);
    const job = await h.job();
    const other = await h.job();
    const { executionId } = await job.start(month);
    const running = job.run(executionId);
    await assert.rejects(
      other.start(month),
      expectJobError("already_exists", /2026-09 is being billed by execution \d+ \(STARTED/),
    );
    const inst = await h.pool.query("select job_instance_id from billing.job_execution where job_execution_id = $1", [
      executionId,
    ]);
    await assert.rejects(
      h.pool.query("insert into billing.job_execution (job_instance_id, status) values ($1, 'STARTED')", [
        inst.rows[0]?.job_instance_id,
      ]),
      /job_execution_one_running/,
    );
    await running;
    assert.equal((await repo.getExecution(BigInt(executionId)))?.status, "COMPLETED");
    await assert.rejects(
      other.start(month),
      expectJobError("failed_precondition", /2026-09 is already billed: execution \d+/),
    );
    await assert.rejects(other.start("2026-12"), expectJobError("failed_precondition", /2026-12 has not ended yet/));

    // The late August bytes: 20 MiB on LTE-DATA-2G's overage rule, August having billed none.
    const inv = await invoiceOf("LB0003", month);
    const adj = inv?.lines.filter((l) => l.kind === "adjustment");
    assert.deepEqual(adj, [{ kind: "adjustment", amount: 0, d: "2026-08 마감 후 사용 20.00MB 정산" }]);
  });

  it("bills a month from the history and the usage unit's totals: one invoice per line, numbers without gaps, a bill message each, the month closed", async () => {
    const month = "2026-10";
    await h.use("LB0001", month, [Number(5n * GiB)]);
    await h.use("LB0003", month, [Number(2n * GiB), Number(100n * MiB), 1]);
    // Five more late MiB of August: only these are billed now (20 were on September's invoice).
    await h.use("LB0003", "2026-08", [Number(5n * MiB)], 2);
    const job = await h.job();
    const { executionId } = await job.start(month);
    await job.run(executionId);
    const e = await repo.getExecution(BigInt(executionId));
    assert.equal(e?.status, "COMPLETED", e?.exit_message);
    assert.match(e?.exit_message ?? "", /^billed 2026-10 in [\d.]+ s$/);

    // Live in October: all but LB0006 (activated in November) and LB0007 (terminated in September).
    const live = LINES.length - 2 + 1;
    assert.deepEqual(await numbers(month), seq(month, live));
    const ids = (
      await h.pool.query("select subscription_id from billing.invoices where month = $1 order by invoice_number", [
        month,
      ])
    ).rows.map((r) => r.subscription_id);
    assert.deepEqual(ids, [...ids].sort(), "numbered in line order");
    assert.ok(!ids.includes("LB0006") && !ids.includes("LB0007"));

    // Hand-computed (services/batch/test/invoice.test.ts has the rules): SLIM 14 days 24,838,
    // STD 17 days 37,838, roaming 7 days 2,483, 25 % of (55,000 × 14 + 69,000 × 17) / 31 = 15,669,
    // micro-payment 5,000 (no VAT); VAT 10 % of 49,490 = 4,949.
    const two = await invoiceOf("LB0002", month);
    assert.deepEqual(
      two?.lines.map((l) => [l.kind, l.amount]),
      [
        ["plan_fee", 24_838],
        ["plan_fee", 37_838],
        ["vas_fee", 2_483],
        ["discount", -15_669],
        ["micro_payment", 5_000],
        ["vat", 4_949],
      ],
    );
    assert.deepEqual([two?.subtotal_krw, two?.vat_krw, two?.total_krw], ["54490", "4949", "59439"]);
    // 101 started MiB over the 2 GiB at 23 won; the 5 late August MiB priced on August's usage.
    const three = await invoiceOf("LB0003", month);
    assert.deepEqual(
      three?.lines.map((l) => [l.kind, l.amount, l.kind === "adjustment" ? l.d : ""]),
      [
        ["plan_fee", 33_000, ""],
        ["data_overage", 2_323, ""],
        ["adjustment", 0, "2026-08 마감 후 사용 5.00MB 정산"],
        ["vat", 3_532, ""],
      ],
    );
    assert.equal(three?.used_bytes, String(2n * GiB + 100n * MiB + 1n));
    assert.equal((await invoiceOf("LB0001", month))?.used_bytes, String(5n * GiB));
    // Activated 10/10 15:00: 22 days of 59,000; terminated 10/20 09:00: 20 days of 69,000.
    assert.equal((await invoiceOf("LB0004", month))?.subtotal_krw, String(Math.floor((59_000 * 22) / 31)));
    assert.equal((await invoiceOf("LB0005", month))?.subtotal_krw, String(Math.floor((69_000 * 20) / 31)));

    const steps = await repo.stepsOf([executionId]);
    assert.deepEqual(
      steps.map((s) => [s.step_name, s.status]),
      [
        [SNAPSHOT_STEP, "COMPLETED"],
        ["bill-lines:partition-1", "COMPLETED"],
        ["bill-lines:partition-2", "COMPLETED"],
        ["bill-lines:partition-3", "COMPLETED"],
        [NOTIFY_STEP, "COMPLETED"],
        [CLOSE_STEP, "COMPLETED"],
      ],
    );
    let total = 0;
    for (const s of steps.filter((x) => x.step_name.startsWith("bill-lines"))) {
      const n = s.context?.count ?? 0;
      total += n;
      assert.equal(Number(s.read_count), n);
      assert.equal(Number(s.write_count), n);
      assert.equal(Number(s.commit_count), Math.ceil(n / 7), "one commit per chunk of 7");
      assert.equal(s.context?.written, n);
    }
    assert.equal(total, live);

    const closed = await h.pool.query("select invoices, job_execution_id from billing.months where month = $1", [
      month,
    ]);
    assert.deepEqual(closed.rows[0], { invoices: String(live), job_execution_id: executionId });

    const bills = await h.billMessages(live * 3);
    for (const sid of ids)
      assert.ok((bills.get(`invoice-issued:${sid}:${month}`) ?? 0) >= 1, `bill message for ${sid}`);
    assert.equal([...bills.keys()].filter((k) => k.endsWith(`:${month}`)).length, live);
  });

  it("usage arriving after the month closed: counted by the usage unit, billed once on the next invoice", async () => {
    // October was closed for billing by its job above: the usage unit keeps its totals at the close.
    const lateOct = [Number(50n * MiB)];
    await h.use("LB0003", "2026-10", lateOct, 10);
    await h.use("LB0001", "2026-10", [Number(GiB)], 10);
    // LB0005 was terminated on 10/20: no November invoice to carry its late bytes.
    await h.use("LB0005", "2026-10", [Number(3n * MiB)], 1);
    const at = await h.store.get("LB0003", h.store.clock.parse("2026-10"));
    assert.equal(at.usedBytes, 2n * GiB + 150n * MiB + 1n, "the usage unit's count stays exact");
    const totals = new Map<string, bigint>();
    for await (const page of h.store.monthTotals(h.store.clock.parse("2026-10")))
      for (const t of page) totals.set(t.sid, t.used);
    assert.equal(totals.get("LB0003"), 2n * GiB + 100n * MiB + 1n, "totals at the close, as billed");

    const job = await h.job();
    const { executionId } = await job.start("2026-11");
    await job.run(executionId);
    const nov = await repo.getExecution(BigInt(executionId));
    assert.equal(nov?.status, "COMPLETED");
    assert.match(
      nov?.exit_message ?? "",
      new RegExp(`; late usage of 1 line\\(s\\), ${3n * MiB} bytes, left unbilled \\(no invoice of theirs this month`),
      "late usage no invoice can carry is reported, not dropped",
    );
    // 50 late MiB on top of October's 100 MiB + 1 byte over: 151 units − 101 billed = 50 × 23.
    const three = await invoiceOf("LB0003", "2026-11");
    assert.deepEqual(
      three?.lines.filter((l) => l.kind === "adjustment"),
      [{ kind: "adjustment", amount: 1_150, d: "2026-10 마감 후 사용 50.00MB 정산" }],
    );
    // No overage rule on 5G-STD-110G: the late GiB shows, at 0.
    const one = await invoiceOf("LB0001", "2026-11");
    assert.deepEqual(
      one?.lines.filter((l) => l.kind === "adjustment"),
      [{ kind: "adjustment", amount: 0, d: "2026-10 마감 후 사용 1.00GB 정산" }],
    );
    const billed = await h.pool.query(
      "select subscription_id, origin_month, billed_month, through_bytes from billing.late_billed order by 1, 2, 3",
    );
    assert.deepEqual(
      billed.rows.map((r) => [r.subscription_id, r.origin_month, r.billed_month, r.through_bytes]),
      [
        ["LB0001", "2026-10", "2026-11", String(GiB)],
        ["LB0003", "2026-08", "2026-09", String(20n * MiB)],
        ["LB0003", "2026-08", "2026-10", String(25n * MiB)],
        ["LB0003", "2026-10", "2026-11", String(50n * MiB)],
      ],
    );
  });

  it("stopped mid-run it ends STOPPED; restarted it ends with the invoices of an uninterrupted run", async () => {
    const month = "2026-07";
    const job = await h.job({ chunkSize: 1, partitions: 1 });
    const { executionId } = await job.start(month);
    const running = job.run(executionId);
    for (;;) {
      const e = await repo.getExecution(BigInt(executionId));
      if (Number(e?.items_done) >= 2) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await job.stop(executionId);
    await running;
    const stopped = await repo.getExecution(BigInt(executionId));
    assert.equal(stopped?.status, "STOPPED");
    const done = Number(stopped?.items_done);
    assert.ok(done < Number(stopped?.items_total), `stopped before the end (${done} of ${stopped?.items_total})`);
    const again = await job.restart(executionId);
    await job.run(again.executionId);
    assert.equal((await repo.getExecution(BigInt(again.executionId)))?.status, "COMPLETED");
    const interrupted = await h.dump(month);

    await h.forget(month);
    const clean = await h.job();
    const c = await clean.start(month);
    await clean.run(c.executionId);
    assert.equal((await repo.getExecution(BigInt(c.executionId)))?.status, "COMPLETED");
    assert.equal(await h.dump(month), interrupted);
  });
});
