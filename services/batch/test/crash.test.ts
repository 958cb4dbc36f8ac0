/**
 * Invariant 5: the billing job's process (the batch CLI, `bill --month`) SIGKILLed at random
 * moments several times and started again each time ends with invoices byte-identical to an
 * uninterrupted run's, one per line, numbered without gaps; every bill message sent at least once.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { spawnScript } from "../../../test/support/processes.js";
import { BillingHarness, GiB, kst, type LineSpec, LONG_AGO, MiB } from "./harness.js";

const MONTH = "2026-06";
const LINES = 5_000;
const PLANS = ["5G-SLIM-8G", "5G-BASIC-24G", "5G-STD-110G", "5G-PREMIUM-UNL", "LTE-DATA-2G"];

let h: BillingHarness;

/** A deterministic mix: plan changes, VAS, discounts, micro-payments, lines starting and ending in the month. */
function lines(): LineSpec[] {
  let x = 42;
  const r = () => {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
    return x / 2 ** 31;
  };
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)] as T;
  return Array.from({ length: LINES }, (_, i) => {
    const id = `LC${String(i).padStart(6, "0")}`;
    const activated = r() < 0.05 ? kst(2026, 6, 1 + Math.floor(r() * 29), Math.floor(r() * 24)) : LONG_AGO;
    const ends = kst(2026, 6, 1 + Math.floor(r() * 29), 1 + Math.floor(r() * 22));
    const terminated = r() < 0.03 && ends > activated ? ends : null;
    const end = terminated ?? undefined;
    let plans: [string, number, number?][] = [[pick(PLANS), activated, end]];
    const change = kst(2026, 6, 2 + Math.floor(r() * 27), Math.floor(r() * 24));
    if (r() < 0.1 && change > activated && (terminated === null || change < terminated)) {
      plans = [
        [pick(PLANS), activated, change],
        [pick(PLANS), change, end],
      ];
    }
    const spec: LineSpec = { id, activated, terminated, plans };
    if (r() < 0.2) spec.vas = [[pick(["RINGBACK", "CLOUD-50G", "ROAMING-PASS"]), activated, end]];
    if (r() < 0.2) spec.discounts = [[pick(["CONTRACT-25", "FAMILY-5500", "WELFARE-11000"]), activated, end]];
    if (r() < 0.1)
      spec.pays = [
        { merchant: pick(["APP-STORE", "GAME-CO"]), amount: 1_000 + Math.floor(r() * 30_000), at: kst(2026, 6, 15) },
      ];
    return spec;
  });
}

/** The batch CLI billing the month, as its own process; output is stdout and stderr together. */
function bill(env: Record<string, string>) {
  const p = spawnScript("services/batch/src/cli.ts", env, ["bill", "--month", MONTH]);
  return { ...p, output: () => `${p.stdout()}${p.stderr()}` };
}

/** Resolves when the run has created or taken over its execution (or ended). */
async function jobBegun(run: ReturnType<typeof bill>): Promise<number> {
  while (!/(billing|restarting) \d{4}-\d{2}: execution \d+/.test(run.output()) && run.child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now();
}

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

before(async () => {
  h = await BillingHarness.start("crash");
  const all = lines();
  for (let i = 0; i < all.length; i += 500) await h.addLines(all.slice(i, i + 500));
  // Usage for every other line (some over their quota), in the month, counted by the usage unit.
  const m = h.store.clock.parse(MONTH);
  const events = all
    .filter((_, i) => i % 2 === 0)
    .map((l, i) => ({
      sid: l.id,
      seq: 1,
      bytes: Number((BigInt(i % 7) * GiB) / 2n + BigInt(i) * MiB),
      month: m,
      traceparent: "",
    }))
    .filter((e) => e.bytes > 0);
  for (let i = 0; i < events.length; i += 400) await h.store.apply(events.slice(i, i + 400));
});
after(() => h.stop());

describe("billing job under SIGKILL", () => {
  it("killed at random points and restarted each time, it writes exactly the invoices of a clean run", async (t) => {
    const env = h.env({
      BATCH_PARTITIONS: "3",
      BATCH_CHUNK_SIZE: "10",
      BATCH_LEASE_MS: "1200",
      BATCH_HEARTBEAT_MS: "200",
    });

    const clean = bill(env);
    const begun = await jobBegun(clean);
    assert.equal(await clean.exited, 0, clean.output());
    // The job's own time, process start-up left out.
    const cleanMs = Date.now() - begun;
    const reference = await h.dump(MONTH);
    const invoices = (await h.pool.query("select count(*)::int n from billing.invoices where month = $1", [MONTH]))
      .rows[0].n;
    assert.ok(invoices > LINES * 0.9, `${invoices} invoices`);
    assert.match(clean.output(), /"status":"COMPLETED"/);
    t.diagnostic(`clean run: ${invoices} invoices in ${cleanMs} ms (after process start-up)`);

    await h.forget(MONTH);
    let kills = 0;
    let refused = 0;
    const where: string[] = [];
    for (let attempt = 0; attempt < 60; attempt++) {
      const run = bill(env);
      const done = await h.pool.query<{ n: number }>("select count(*)::int n from billing.invoices where month = $1", [
        MONTH,
      ]);
      const remaining = 1 - (done.rows[0]?.n ?? 0) / invoices;
      await jobBegun(run);
      // Somewhere in what is left of the work, once the run has its execution.
      const killAt = kills < 6 ? (0.05 + Math.random() * 0.5) * cleanMs * Math.max(remaining, 0.1) : 600_000;
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        run.exited,
        new Promise((r) => (timer = setTimeout(() => r("kill"), killAt))),
      ]);
      clearTimeout(timer);
      if (outcome === "kill") {
        run.child.kill("SIGKILL");
        await run.exited;
        kills++;
        const steps = await h.pool.query<{ step_name: string; status: string }>(
          `select s.step_name, s.status from billing.step_execution s where s.job_execution_id =
             (select max(job_execution_id) from billing.job_execution) order by step_execution_id`,
        );
        const billed = await h.pool.query<{ n: number }>(
          "select count(*)::int n from billing.invoices where month = $1",
          [MONTH],
        );
        where.push(
          `kill ${kills} at ${Math.round(killAt)} ms: ${billed.rows[0]?.n}/${invoices} invoices; ${
            steps.rows
              .filter((s) => s.status === "STARTED")
              .map((s) => s.step_name)
              .join(", ") || "no step started"
          }`,
        );
        continue;
      }
      if (outcome === 3) {
        // The killed run's heartbeat is not yet older than the lease: refused, try again shortly.
        assert.match(run.output(), /is being billed by execution \d+/);
        refused++;
        await new Promise((r) => setTimeout(r, 300));
        continue;
      }
      assert.equal(outcome, 0, run.output());
      break;
    }
    for (const w of where) t.diagnostic(w);
    t.diagnostic(`${kills} SIGKILLs, ${refused} starts refused while a killed run's lease ran`);
    assert.ok(kills >= 5, `killed ${kills} times`);

    const final = await h.dump(MONTH);
    assert.equal(sha(final), sha(reference), "invoices byte-identical to the clean run's");
    assert.equal(final, reference);
    const execs = await h.pool.query<{ status: string; exit_message: string }>(
      `select e.status, e.exit_message from billing.job_execution e join billing.job_instance i using (job_instance_id)
        where i.parameters->>'month' = $1 order by job_execution_id`,
      [MONTH],
    );
    assert.equal(execs.rows.at(-1)?.status, "COMPLETED");
    const abandoned = execs.rows.filter((e) => e.status === "FAILED");
    assert.equal(abandoned.length, execs.rows.length - 1, "every killed execution was failed before the next ran");
    for (const e of abandoned) assert.match(e.exit_message, /^abandoned: its process \(.+\) stopped heartbeating/);

    const bills = await h.billMessages(invoices);
    const sent = [...bills.values()].reduce((n, x) => n + x, 0);
    t.diagnostic(
      `bill messages: ${bills.size} distinct, ${sent} records over the clean run and the killed ones (a request sent again is sent once by the message unit)`,
    );
    assert.equal(bills.size, invoices);
  });
});
