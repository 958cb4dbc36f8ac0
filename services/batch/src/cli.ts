/**
 * The billing job from the command line, run in this process (as Spring Batch's
 * CommandLineJobRunner): `npm run batch -- <command>` locally (scripts/batch.ts adds the
 * development keys), `node --import tsx services/batch/src/cli.ts bill --month previous` in the
 * Kubernetes CronJob (keys from its Secret).
 *
 *   bill --month 2026-10 [--partitions N] [--chunk-size N]   bill a month (restarts it if its last run failed or stopped)
 *   restart --execution ID                                   restart a failed or stopped execution
 *   stop --execution ID                                      ask a running execution to stop
 *   list [--limit N]                                         executions, newest first
 *   show --execution ID                                      one execution with its steps
 *
 * Progress on stderr (a bar on a terminal, a line every 5 s otherwise); a summary, then a JSON
 * line, on stdout. Exit 0 completed, 1 failed or stopped, 2 misuse, 3 refused (the month is being
 * billed or was billed), 78 configuration. SIGINT / SIGTERM stop the run after its chunks in hand
 * (it ends STOPPED; `bill` again or `restart` resumes it).
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../../kit/src/config.js";
import { createLogger } from "../../kit/src/logger.js";
import { createKnex } from "../../kit/src/postgres.js";
import { ZonedTime } from "../../kit/src/zoned-time.js";
import { JobError, stopExecution } from "./billing/job.js";
import { createBillingJob } from "./billing/wiring.js";
import { readConfig } from "./config.js";
import { type JobExecutionRow, JobRepository, type StepExecutionRow } from "./store/job-repository.js";

const USAGE = `usage: npm run batch -- <command> [options]
  bill --month YYYY-MM|previous [--partitions N] [--chunk-size N]
  restart --execution ID
  stop --execution ID
  list [--limit N]
  show --execution ID`;

function fail(msg: string): never {
  process.stderr.write(`batch: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

let parsed: ReturnType<
  typeof parseArgs<{ options: Record<string, { type: "string" | "boolean" }>; allowPositionals: true; strict: true }>
>;
try {
  parsed = parseArgs({
    options: {
      month: { type: "string" },
      partitions: { type: "string" },
      "chunk-size": { type: "string" },
      execution: { type: "string" },
      limit: { type: "string" },
      help: { type: "boolean" },
    },
    allowPositionals: true,
    strict: true,
  });
} catch (e) {
  fail((e as Error).message);
}
const { values, positionals } = parsed;
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const command = positionals[0];
if (!command) fail("a command is required");
if (positionals.length > 1) fail(`unexpected argument ${JSON.stringify(positionals[1])}`);
const int = (name: string, min: number, max: number): number | undefined => {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max)
    fail(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  return v;
};

let config: ReturnType<typeof readConfig>;
try {
  const env = { ...process.env };
  const chunk = int("chunk-size", 1, 20_000);
  if (chunk !== undefined) env.BATCH_CHUNK_SIZE = String(chunk);
  const parts = int("partitions", 1, 64);
  if (parts !== undefined) {
    env.BATCH_PARTITIONS = String(parts);
    env.BATCH_DB_POOL_MAX = String(Math.max(Number(env.BATCH_DB_POOL_MAX ?? 10), parts + 2));
  }
  if (!["bill", "restart"].includes(command)) env.BATCH_COMPONENTS = "none";
  // The command line serves no RPCs and verifies no tokens (the CronJob does not mount telco-auth).
  env.AUTH_VERIFY_KEY ||= "unused-by-the-command-line";
  config = readConfig(env);
} catch (e) {
  if (e instanceof ConfigError) {
    process.stderr.write(`batch: ${e.message}\n`);
    process.exit(78);
  }
  throw e;
}
const logger = createLogger({ unit: "batch", level: process.env.LOG_LEVEL ?? "warn", destination: process.stderr });
const knex = createKnex({ url: config.DATABASE_URL, schema: "billing", poolMax: 2, applicationName: "batch-cli" });
const repo = new JobRepository(knex);

const fmt = (n: number | bigint) => Number(n).toLocaleString("en-US");
const STATUS_EXIT: Record<string, number> = { COMPLETED: 0, FAILED: 1, STOPPED: 1 };

function describe(e: JobExecutionRow, steps: StepExecutionRow[]): string {
  const lines = [
    `execution ${e.job_execution_id} of ${e.job_name} ${JSON.stringify(e.parameters)}: ${e.status}` +
      (e.started_at ? `, started ${e.started_at.toISOString()}` : "") +
      (e.ended_at ? `, ended ${e.ended_at.toISOString()}` : ""),
    `  lines billed ${fmt(Number(e.items_done))} of ${fmt(Number(e.items_total))}${e.exit_message ? `; ${e.exit_message}` : ""}`,
  ];
  for (const s of steps) {
    lines.push(
      `  ${s.step_name.padEnd(26)} ${s.status.padEnd(9)} read ${fmt(Number(s.read_count))} write ${fmt(Number(s.write_count))} commits ${fmt(Number(s.commit_count))}` +
        (s.exit_message ? `  ${s.exit_message}` : ""),
    );
  }
  return lines.join("\n");
}

async function show(id: string) {
  const e = await repo.getExecution(BigInt(id));
  if (!e) {
    process.stderr.write(`batch: job execution ${id} not found\n`);
    return 1;
  }
  process.stdout.write(`${describe(e, await repo.stepsOf([e.job_execution_id]))}\n`);
  return 0;
}

/** Polls the repository and draws progress until the run ends. */
function progress(id: string, done: Promise<void>) {
  const tty = process.stderr.isTTY;
  const t0 = Date.now();
  let lastLine = Number.NEGATIVE_INFINITY;
  let ended = false;
  void done.finally(() => {
    ended = true;
  });
  return (async () => {
    // Every second on a terminal; otherwise at once, every 5 s, and once more at the end.
    for (;;) {
      await Promise.race([done, new Promise((r) => setTimeout(r, 1000))]);
      const last = ended;
      const e = await repo.getExecution(BigInt(id));
      if (e) {
        const total = Number(e.items_total);
        const billed = Number(e.items_done);
        const secs = (Date.now() - t0) / 1000;
        const steps = await repo.stepsOf([id]);
        const step = steps.filter((s) => s.status === "STARTED").map((s) => s.step_name.replace(/:partition-\d+$/, ""));
        const pct = total > 0 ? billed / total : 0;
        const width = 30;
        const bar = `${"#".repeat(Math.round(pct * width))}${".".repeat(width - Math.round(pct * width))}`;
        const rate = billed / Math.max(secs, 0.001);
        const eta = rate > 0 && total > billed ? ` ETA ${Math.ceil((total - billed) / rate)} s` : "";
        const text = `[${bar}] ${(pct * 100).toFixed(1)}% ${fmt(billed)}/${fmt(total)} lines ${fmt(Math.round(rate))}/s${eta} ${[...new Set(step)].join(",") || e.status}`;
        if (tty) process.stderr.write(`\r${text.padEnd(110)}`);
        else if (last || Date.now() - lastLine >= 5000) {
          process.stderr.write(`${text}\n`);
          lastLine = Date.now();
        }
      }
      if (last) break;
    }
    if (tty) process.stderr.write("\n");
  })();
}

/** The month `bill` was given ("previous": the month before this one in the carrier's zone). */
function monthArg(): string {
  const month = values.month as string | undefined;
  if (!month) fail("bill needs --month YYYY-MM (or previous)");
  if (month === "previous") {
    const f = new ZonedTime(config.TIME_ZONE).fields(Date.now());
    const [y, m] = f.month === 1 ? [f.year - 1, 12] : [f.year, f.month - 1];
    return `${y}-${String(m).padStart(2, "0")}`;
  }
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(month))
    fail(`--month must be YYYY-MM or previous (got ${JSON.stringify(month)})`);
  return month;
}

function executionArg(command: string): string {
  const ex = values.execution as string | undefined;
  if (!ex || !/^\d+$/.test(ex)) fail(`${command} needs --execution ID`);
  return ex;
}

async function runJob(kind: "bill" | "restart"): Promise<number> {
  // Arguments first: misuse is told before anything connects.
  const month = kind === "bill" ? monthArg() : "";
  const restartOf = kind === "restart" ? executionArg("restart") : "";
  const billing = await createBillingJob(config, logger);
  const { job } = billing;
  try {
    let id: string;
    try {
      if (kind === "bill") {
        const r = await job.start(month);
        id = r.executionId;
        process.stderr.write(`${r.restart ? "restarting" : "billing"} ${month}: execution ${id}\n`);
      } else {
        id = (await job.restart(restartOf)).executionId;
        process.stderr.write(`restarted as execution ${id}\n`);
      }
    } catch (e) {
      if (e instanceof JobError) {
        process.stderr.write(`batch: ${e.message}\n`);
        return e.code === "not_found" ? 1 : 3;
      }
      throw e;
    }
    const t0 = Date.now();
    const stopOnSignal = () => {
      process.stderr.write("\nstopping after the chunks in hand...\n");
      job
        .stop(id)
        .catch((e) => process.stderr.write(`batch: could not ask execution ${id} to stop: ${(e as Error).message}\n`));
    };
    process.once("SIGINT", stopOnSignal);
    process.once("SIGTERM", stopOnSignal);
    const done = job.run(id);
    await Promise.all([done, progress(id, done)]);
    const e = (await repo.getExecution(BigInt(id))) as JobExecutionRow;
    const steps = await repo.stepsOf([id]);
    const seconds = (Date.now() - t0) / 1000;
    process.stdout.write(`${describe(e, steps)}\n`);
    const billed = e.parameters.month as string;
    const totals = await knex.raw<{ rows: { n: string; total: string | null }[] }>(
      "select count(*) n, sum(total_krw) total from billing.invoices where month = ?",
      [billed],
    );
    const invoices = Number(totals.rows[0]?.n ?? 0);
    const written = steps
      .filter((s) => s.step_name.startsWith("bill-lines"))
      .reduce((n, s) => n + Number(s.write_count), 0);
    process.stdout.write(
      `${billed}: ${fmt(invoices)} invoices, ${fmt(Number(totals.rows[0]?.total ?? 0))} KRW in all; this run wrote ${fmt(written)} in ${seconds.toFixed(1)} s (${fmt(Math.round(written / Math.max(seconds, 0.001)))}/s)\n`,
    );
    process.stdout.write(
      `${JSON.stringify({ execution: Number(id), month: billed, status: e.status, invoices, written, seconds: Number(seconds.toFixed(2)) })}\n`,
    );
    return STATUS_EXIT[e.status] ?? 1;
  } finally {
    await billing.close();
  }
}

let code = 0;
try {
  switch (command) {
    case "bill":
    case "restart":
      code = await runJob(command);
      break;
    case "stop": {
      const ex = executionArg("stop");
      const pg = (await import("pg")).default;
      const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1 });
      try {
        await stopExecution(pool, ex, config.BATCH_LEASE_MS);
      } catch (e) {
        if (e instanceof JobError) {
          process.stderr.write(`batch: ${e.message}\n`);
          code = 1;
          break;
        }
        throw e;
      } finally {
        await pool.end();
      }
      code = await show(ex);
      break;
    }
    case "list": {
      const limit = int("limit", 1, 200) ?? 20;
      for (const e of await repo.listExecutions({ limit })) {
        process.stdout.write(
          `${e.job_execution_id.padStart(6)}  ${String(e.parameters.month ?? "").padEnd(8)} ${e.status.padEnd(9)} ${fmt(Number(e.items_done)).padStart(11)}/${fmt(Number(e.items_total)).padEnd(11)} ${e.started_at?.toISOString() ?? ""}  ${e.exit_message.slice(0, 80)}\n`,
        );
      }
      break;
    }
    case "show": {
      code = await show(executionArg("show"));
      break;
    }
    default:
      fail(`unknown command ${JSON.stringify(command)}`);
  }
} finally {
  await knex.destroy();
}
process.exit(code);
