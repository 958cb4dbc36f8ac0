/**
 * The batch unit's command line and the billing benchmark's smoke run, against a small seed in a
 * database of their own: the benchmark ends with its JSON line; `npm run batch` bills with a
 * progress report and a summary, lists and shows the history, and refuses misuse readably.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { checkInvoices } from "../scripts/lib/reliability/scale.js";
import { migrateAll } from "../scripts/migrate.js";
import { customersFor, personFor, seed } from "../scripts/seed.js";
import { createRedis, redisReady } from "../services/kit/src/redis.js";
import { policy as usagePolicy } from "../services/usage/src/routes.js";
import { createServer as createUsageServer } from "../services/usage/src/server.js";
import { AUTH_ENV, verifier } from "./support/auth.js";
import { testLogger } from "./support/env.js";
import { personal, personalPhone } from "./support/personal.js";
import { run } from "./support/processes.js";
import { testPii } from "./support/units.js";
import { usageStore } from "./support/usage.js";

const DB = "telco_test_batch_scripts";
const URL = `postgres://postgres@127.0.0.1:5432/${DB}`;
const REDIS = "redis://127.0.0.1:6379/13";

async function admin(sql: string) {
  const c = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const tsx = (script: string, args: string[], env: Record<string, string> = {}, timeoutMs = 240_000) =>
  run(process.execPath, ["--import", "tsx", script, ...args], { env: { DATABASE_URL: URL, ...env }, timeoutMs });

before(async () => {
  await admin(`drop database if exists ${DB} with (force)`);
  await admin(`create database ${DB}`);
  await migrateAll(URL, undefined, () => {});
  await seed({ url: URL, pii: testPii, lines: 400, log: () => {} });
  for (let k = 0; k < customersFor(400); k++) {
    const p = personFor(k);
    personal(p.name);
    personalPhone(p.phone);
    personal(p.birthDate);
    if (p.email) personal(p.email);
  }
});
after(() => admin(`drop database if exists ${DB} with (force)`));

describe("npm run bench:billing (smoke run)", () => {
  it("bills the seeded month and ends with its JSON line", async () => {
    const r = await tsx("scripts/bench-billing.ts", ["--lines", "380", "--chunk-size", "50"], {
      BENCH_REDIS_URL: REDIS,
    });
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const j = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, number>;
    for (const key of ["lines", "seconds", "invoices_per_s", "baseline_write_s", "bill_to_baseline"]) {
      assert.equal(typeof j[key], "number", key);
      assert.ok((j[key] as number) > 0, `${key} = ${j[key]}`);
    }
    assert.equal(j.invoices, j.lines, "one invoice per billable line");
    assert.match(r.stderr, /\[bench:billing\] \d{4}-\d{2}: [\d,]+ invoices \([\d,]+ invoice lines\) in [\d.]+ s/);

    const again = await tsx("scripts/bench-billing.ts", ["--lines", "380"], { BENCH_REDIS_URL: REDIS }, 60_000);
    assert.equal(again.code, 2);
    assert.match(
      again.stderr,
      /^bench:billing: \d{4}-\d{2} is already billed in this database: --reset forgets its billing first/m,
    );
  });

  it("explains misuse and exits 2", async () => {
    const r = await tsx("scripts/bench-billing.ts", ["--lines", "lots"], {}, 30_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^bench:billing: --lines must be an integer/m);
    const few = await tsx("scripts/bench-billing.ts", ["--lines", "1000000"], {}, 30_000);
    assert.equal(few.code, 2);
    assert.match(few.stderr, /has \d+ billable lines in this database, fewer than --lines 1,000,000: run npm run seed/);
  });
});

describe("npm run batch", () => {
  it("bills a month with progress and a summary; lists and shows the history; refuses a second run", async () => {
    // First without the usage unit (the month's totals come from it): the run fails at its first
    // step with the reason.
    const env = { ...AUTH_ENV, USAGE_URL: "http://127.0.0.1:9", LOG_LEVEL: "fatal" };
    let billed = 0;
    const failed = await tsx("services/batch/src/cli.ts", ["bill", "--month", "2026-01"], env);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stdout, /execution \d+ of monthly-billing \{"month":"2026-01","partitions":"\d+"\}: FAILED/);
    assert.match(failed.stdout, /snapshot-usage +FAILED .*usage totals:/);
    const first = JSON.parse(failed.stdout.trim().split("\n").pop() ?? "{}");
    assert.equal(first.status, "FAILED");

    // With a usage unit: `bill` again restarts the month and completes it.
    const redis = createRedis(REDIS, testLogger("test"), "test");
    await redisReady(redis, REDIS);
    await redis.flushdb();
    const usage = createUsageServer(
      { store: usageStore(redis, { openMaxDays: 3650 }) },
      { logger: testLogger("usage"), drainDelayMs: 0, drainTimeoutMs: 1_000, auth: { verifier, policy: usagePolicy } },
    );
    const at = await usage.listen(0);
    try {
      const ok = await tsx("services/batch/src/cli.ts", ["bill", "--month", "2026-01", "--chunk-size", "40"], {
        ...env,
        USAGE_URL: at.url,
      });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stderr, new RegExp(`^restarting 2026-01: execution ${first.execution + 1}$`, "m"));
      assert.match(
        ok.stderr,
        /^\[#{30}\] 100\.0% [\d,]+\/[\d,]+ lines [\d,]+\/s COMPLETED$/m,
        "the final progress line",
      );
      const summary = JSON.parse(ok.stdout.trim().split("\n").pop() ?? "{}");
      assert.equal(summary.status, "COMPLETED");
      billed = summary.invoices;
      // One per line live in January 2026 (Asia/Seoul), as the database counts them.
      const c = new pg.Client({ connectionString: URL });
      await c.connect();
      const live = await c.query<{ n: number }>(
        `select count(*)::int n from domain.subscriptions where activated_at < '2026-02-01T00:00:00+09:00'
           and (terminated_at is null or terminated_at > '2026-01-01T00:00:00+09:00')`,
      );
      await c.end();
      assert.ok(summary.invoices > 0);
      assert.equal(summary.invoices, live.rows[0]?.n);
      assert.match(
        ok.stdout,
        new RegExp(`^2026-01: ${summary.invoices.toLocaleString("en-US")} invoices, [\\d,]+ KRW in all`, "m"),
      );

      const again = await tsx("services/batch/src/cli.ts", ["bill", "--month", "2026-01"], {
        ...env,
        USAGE_URL: at.url,
      });
      assert.equal(again.code, 3);
      assert.match(again.stderr, /^batch: 2026-01 is already billed: execution \d+ completed at /m);
    } finally {
      await usage.drain();
      redis.disconnect();
    }

    // As the CronJob runs it: no AUTH_VERIFY_KEY (the command line verifies no tokens).
    const list = await tsx("services/batch/src/cli.ts", ["list"], { ...env, AUTH_VERIFY_KEY: "" });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^ +${first.execution + 1}  2026-01  COMPLETED`, "m"));
    assert.match(list.stdout, new RegExp(`^ +${first.execution}  2026-01  FAILED`, "m"));
    const show = await tsx("services/batch/src/cli.ts", ["show", "--execution", String(first.execution + 1)], env);
    assert.equal(show.code, 0);
    assert.match(show.stdout, /bill-lines:partition-1 +COMPLETED/);
    const stop = await tsx("services/batch/src/cli.ts", ["stop", "--execution", String(first.execution)], env);
    assert.equal(stop.code, 0, "stopping an ended execution changes nothing");

    // The larger reliability run's check of a month's invoices (scripts/lib/reliability/scale.ts)
    // on this billing: whole as billed, and it sees a wrong amount, a missing and a foreign
    // invoice, and a gap in the numbers.
    const whole = await checkInvoices(URL, "2026-01", "Asia/Seoul");
    assert.deepEqual(
      { ...whole, plain_checked: 0 },
      {
        expected: billed,
        written: billed,
        missing: 0,
        extra: 0,
        numbering_gaps: 0,
        plain_checked: 0,
        plain_wrong: 0,
      },
    );
    assert.ok(whole.plain_checked > 10, `plain invoices checked: ${whole.plain_checked}`);
    const db = new pg.Client({ connectionString: URL });
    await db.connect();
    try {
      await db.query(
        "update billing.invoices set subtotal_krw = subtotal_krw + 10, total_krw = total_krw + 10 where month = '2026-01'",
      );
      assert.equal((await checkInvoices(URL, "2026-01", "Asia/Seoul")).plain_wrong, whole.plain_checked);
      await db.query(
        "update billing.invoices set subscription_id = 'L9999999999' where invoice_number = '2026-01-0000002'",
      );
      await db.query("delete from billing.invoices where invoice_number = '2026-01-0000001'");
      const broken = await checkInvoices(URL, "2026-01", "Asia/Seoul");
      assert.equal(broken.written, billed - 1);
      assert.equal(broken.missing, 2, "the deleted line's and the moved one's");
      assert.equal(broken.extra, 1, "the invoice of a line that was never live");
      assert.equal(broken.numbering_gaps, 1, "number 1 is gone");
      // Number 3 made 0: the highest number still equals the count plus one, yet 3 is missing.
      await db.query(
        "update billing.invoices set invoice_number = '2026-01-0000000' where invoice_number = '2026-01-0000003'",
      );
      assert.equal((await checkInvoices(URL, "2026-01", "Asia/Seoul")).numbering_gaps, 2, "numbers 1 and 3 are gone");
    } finally {
      await db.end();
    }
  });

  it("explains misuse and exits 2", async () => {
    for (const [args, re] of [
      [[], /^batch: a command is required/m],
      [["frobnicate"], /^batch: unknown command "frobnicate"/m],
      [["bill"], /^batch: bill needs --month YYYY-MM \(or previous\)/m],
      [["bill", "--month", "2026-13"], /^batch: --month must be YYYY-MM or previous \(got "2026-13"\)/m],
      [["bill", "--month", "2026-10", "--partitions", "0"], /^batch: --partitions must be an integer from 1 to 64/m],
      [["show"], /^batch: show needs --execution ID/m],
      [["list", "--colour"], /^batch: Unknown option '--colour'/m],
    ] as [string[], RegExp][]) {
      const r = await tsx("services/batch/src/cli.ts", args, { ...AUTH_ENV }, 30_000);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /usage: npm run batch -- <command>/);
    }
  });
});
