import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { Logger } from "../../../kit/src/logger.js";
import { context, ROOT_CONTEXT } from "../../../kit/src/telemetry.js";
import { billingExecutions, billingItems } from "../metrics.js";
import {
  BillingMonth,
  type Catalog,
  type ComputedInvoice,
  computeInvoice,
  type DiscountInfo,
  lateAdjustment,
  type Period,
  type PlanInfo,
  type VasInfo,
} from "./invoice.js";

/**
 * The monthly billing job, after Spring Batch's partitioned chunk-oriented step, on the job
 * repository in schema `billing`:
 *
 *   snapshot-usage          the usage unit's totals of the month, read once into billing.usage_snapshot
 *   bill-lines:partition-N  N key ranges of the month's lines, billed in parallel, chunk by chunk
 *   notify-invoices         one invoice-issued request per invoice on notification.requests
 *   close-month             checks the numbers and closes the month (billing.months, the usage unit)
 *
 * Each chunk of a partition (lines read by key after the last one done, never OFFSET) is written
 * with its step's counts and execution context in one transaction, so a process killed at any
 * moment leaves every partition at its last committed chunk; a restart (a new execution of the
 * same job instance) runs only the steps that did not complete, each partition from its context.
 * Invoice numbers are positions: a partition owns the block base+1..base+count fixed when the
 * instance was partitioned, so any run, interrupted or not, numbers every line the same way.
 *
 * An execution's process writes a heartbeat; one whose heartbeat is older than the lease is taken
 * for dead, and the next start or restart marks it FAILED before running. Every chunk checks in
 * its transaction that its execution is still running and its own (a process presumed dead that
 * wakes up commits nothing).
 */

export const JOB_NAME = "monthly-billing";
export const SNAPSHOT_STEP = "snapshot-usage";
export const PARTITION_STEP = "bill-lines:partition-";
export const NOTIFY_STEP = "notify-invoices";
export const CLOSE_STEP = "close-month";

export type JobErrorCode = "already_exists" | "failed_precondition" | "not_found";

/** A refused request, with the reason a caller can act on. */
export class JobError extends Error {
  constructor(
    readonly code: JobErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** This process no longer owns the execution (it was taken for dead, or stopped from outside). */
class Fenced extends Error {}

export interface PartitionContext {
  /** Lines with from < id ≤ to (from "" = from the first). */
  from: string;
  to: string;
  /** Invoice numbers of this partition are base + 1 .. base + count. */
  base: number;
  count: number;
  /** The last line billed ("" = none yet) and how many lines that is. */
  after: string;
  written: number;
}

export interface NotificationRecord {
  key: string;
  value: Uint8Array;
  headers: Record<string, string>;
}

export interface InvoiceNotice {
  invoiceId: string;
  subscriptionId: string;
  month: string;
  totalKrw: bigint;
  dueDate: string;
}

export interface BillingJobSettings {
  pool: pg.Pool;
  logger: Logger;
  timeZone: string;
  /** Partitions of a new instance. */
  partitions: number;
  /** Lines per chunk (one transaction). */
  chunkSize: number;
  /** An execution whose heartbeat is older than this is taken for dead. */
  leaseMs: number;
  heartbeatMs: number;
  /** Day of the next month an invoice is due. */
  dueDay: number;
  /** The usage unit's totals of a month, in pages. */
  usageTotals(month: string): AsyncIterable<{ subscriptionId: string; usedBytes: bigint }[]>;
  /** Encodes an invoice-issued notification request. */
  notice(n: InvoiceNotice): NotificationRecord;
  /** Sends records to notification.requests; resolves once the broker acknowledged them all. */
  publish(records: NotificationRecord[]): Promise<void>;
  /**
   * Closes the month in the usage unit before its totals are read: from then on its totals stay
   * as read, and usage of it still arriving is late usage, billed on the next invoice.
   */
  closeUsageMonth(month: string): Promise<void>;
  /** Late usage of closed months (cumulative bytes per line and month), from the usage unit. */
  lateUsage(): AsyncIterable<{ subscriptionId: string; month: string; lateBytes: bigint }[]>;
  now?: () => number;
}

interface LateRow {
  subscriptionId: string;
  origin: string;
  through: bigint;
}

interface ExecutionRow {
  job_execution_id: string;
  job_instance_id: string;
  status: string;
  owner: string;
  created_at: Date;
  /** Since the last heartbeat, by the database's clock. */
  silent_ms: number;
  ended_at: Date | null;
}

const RUNNING = ["STARTING", "STARTED", "STOPPING"];
const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** A deterministic invoice id (a name-based UUID of line and month): the same invoice in every run. */
export function invoiceId(subscriptionId: string, month: string): string {
  const h = createHash("sha1").update(`telco-invoice|${subscriptionId}|${month}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x50;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** Invoice numbers are "YYYY-MM-" and 7 digits. */
const MAX_INVOICES = 9_999_999;
export const invoiceNumber = (month: string, n: number) => `${month}-${String(n).padStart(7, "0")}`;

async function tx<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query("begin");
    const out = await fn(c);
    await c.query("commit");
    return out;
  } catch (e) {
    await c.query("rollback").catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

/**
 * Asks an execution to stop: a running one ends STOPPED after its chunks in hand; one whose
 * process died is stopped at once. Stopping an execution that has ended changes nothing.
 */
export async function stopExecution(pool: pg.Pool, executionId: string, leaseMs: number): Promise<void> {
  await tx(pool, async (c) => {
    const r = await c.query<ExecutionRow>(
      `select e.job_execution_id, e.status, e.owner, e.created_at,
              (extract(epoch from now() - coalesce((select h.beat_at from billing.job_heartbeat h where h.job_execution_id = e.job_execution_id), e.created_at)) * 1000)::float8 silent_ms
         from billing.job_execution e where e.job_execution_id = $1 for update`,
      [executionId],
    );
    const e = r.rows[0];
    if (!e) throw new JobError("not_found", `job execution ${executionId} not found`);
    if (!RUNNING.includes(e.status)) return;
    // The database's clock, the one heartbeats are written with (hosts' clocks may differ).
    if (e.silent_ms >= leaseMs) {
      const msg = `stopped: its process (${e.owner}) had stopped heartbeating`;
      await c.query(
        `update billing.step_execution set status = 'STOPPED', exit_code = 'STOPPED', exit_message = $2, ended_at = now()
          where job_execution_id = $1 and status in ('STARTING', 'STARTED', 'STOPPING')`,
        [executionId, msg],
      );
      await c.query(
        `update billing.job_execution set status = 'STOPPED', exit_code = 'STOPPED', exit_message = $2, ended_at = now(), last_updated = now()
          where job_execution_id = $1`,
        [executionId, msg],
      );
    } else {
      await c.query(
        "update billing.job_execution set status = 'STOPPING', last_updated = now() where job_execution_id = $1",
        [executionId],
      );
    }
  });
}

/** A value in COPY's text format (backslash, tab and line ends escaped). */
function copyText(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r");
}

type CatalogJson = { plans: Record<string, unknown>[]; vas: VasInfo[]; discounts: DiscountInfo[] };

/** The catalogue as JSON for an execution context (bigints as strings). */
function catalogJson(c: Catalog): CatalogJson {
  return {
    plans: [...c.plans.values()].map((p) => ({
      ...p,
      quotaBytes: p.quotaBytes.toString(),
      overageUnitBytes: p.overageUnitBytes.toString(),
    })),
    vas: [...c.vas.values()],
    discounts: [...c.discounts.values()],
  };
}

function catalogFrom(j: CatalogJson): Catalog {
  return {
    plans: new Map(
      j.plans.map((p) => {
        const plan = {
          ...p,
          quotaBytes: BigInt(p.quotaBytes as string),
          overageUnitBytes: BigInt(p.overageUnitBytes as string),
        } as PlanInfo;
        return [plan.planId, plan];
      }),
    ),
    vas: new Map(j.vas.map((v) => [v.vasId, v])),
    discounts: new Map(j.discounts.map((d) => [d.discountId, d])),
  };
}

export class BillingJob {
  readonly owner = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  private readonly pool: pg.Pool;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly running = new Map<string, Promise<void>>();
  private readonly controls = new Map<string, { stopRequested: boolean; fenced: boolean }>();

  constructor(private readonly s: BillingJobSettings) {
    this.pool = s.pool;
    this.log = s.logger.child({ component: "billing-job" });
    this.now = s.now ?? Date.now;
  }

  /** Executions this process runs now, by id (their completion). */
  inFlight(): Map<string, Promise<void>> {
    return this.running;
  }

  /**
   * Starts billing `month`: a new instance, or a restart of its failed or stopped one. Returns the
   * new execution's id; `run` runs it (the caller decides where: in the background or awaited).
   */
  async start(month: string, partitions = this.s.partitions): Promise<{ executionId: string; restart: boolean }> {
    if (!MONTH_RE.test(month))
      throw new JobError("failed_precondition", `month ${JSON.stringify(month)}: expected YYYY-MM`);
    const m = new BillingMonth(month, this.s.timeZone);
    if (m.endMs > this.now()) {
      throw new JobError(
        "failed_precondition",
        `${month} has not ended yet in ${this.s.timeZone}: it can be billed from ${new Date(m.endMs).toISOString()}`,
      );
    }
    const params = { month };
    const key = JSON.stringify(params);
    return tx(this.pool, async (c) => {
      await c.query(
        `insert into billing.job_instance (job_name, job_key, parameters) values ($1, $2, $3)
         on conflict (job_name, job_key) do nothing`,
        [JOB_NAME, key, { ...params, partitions: String(partitions) }],
      );
      const inst = await c.query<{ job_instance_id: string }>(
        "select job_instance_id from billing.job_instance where job_name = $1 and job_key = $2 for update",
        [JOB_NAME, key],
      );
      return this.launch(c, inst.rows[0]?.job_instance_id as string, month);
    });
  }

  /** Restarts a FAILED or STOPPED execution (or one whose process died): a new execution. */
  async restart(executionId: string): Promise<{ executionId: string }> {
    return tx(this.pool, async (c) => {
      const r = await c.query<{ job_instance_id: string; month: string }>(
        `select i.job_instance_id, i.parameters->>'month' as month from billing.job_execution e
           join billing.job_instance i using (job_instance_id)
          where e.job_execution_id = $1 and i.job_name = $2`,
        [executionId, JOB_NAME],
      );
      const row = r.rows[0];
      if (!row) throw new JobError("not_found", `job execution ${executionId} not found`);
      await c.query("select 1 from billing.job_instance where job_instance_id = $1 for update", [row.job_instance_id]);
      const latest = await c.query<{ job_execution_id: string }>(
        "select max(job_execution_id) as job_execution_id from billing.job_execution where job_instance_id = $1",
        [row.job_instance_id],
      );
      if (latest.rows[0]?.job_execution_id !== executionId) {
        throw new JobError(
          "failed_precondition",
          `job execution ${executionId} is not the newest of ${row.month} (${latest.rows[0]?.job_execution_id} is): restart that one`,
        );
      }
      return this.launch(c, row.job_instance_id, row.month);
    });
  }

  /** Inside the instance's row lock: refuses, or creates the next execution. */
  private async launch(c: pg.PoolClient, instanceId: string, month: string) {
    const prev = await c.query<ExecutionRow>(
      `select e.job_execution_id, e.job_instance_id, e.status, e.owner, e.created_at, e.ended_at,
              (extract(epoch from now() - coalesce((select h.beat_at from billing.job_heartbeat h where h.job_execution_id = e.job_execution_id), e.created_at)) * 1000)::float8 silent_ms
         from billing.job_execution e where e.job_instance_id = $1 order by e.job_execution_id desc limit 1`,
      [instanceId],
    );
    const last = prev.rows[0];
    if (last) {
      if (RUNNING.includes(last.status)) {
        const silentMs = last.silent_ms;
        if (silentMs < this.s.leaseMs) {
          throw new JobError(
            "already_exists",
            `${month} is being billed by execution ${last.job_execution_id} (${last.status}, heartbeat ${(silentMs / 1000).toFixed(1)} s ago): a second run is refused`,
          );
        }
        await this.abandon(
          c,
          last.job_execution_id,
          `its process (${last.owner}) stopped heartbeating ${(silentMs / 1000).toFixed(0)} s ago`,
        );
      } else if (last.status === "COMPLETED") {
        throw new JobError(
          "failed_precondition",
          `${month} is already billed: execution ${last.job_execution_id} completed at ${last.ended_at?.toISOString()}`,
        );
      }
    }
    const ins = await c.query<{ job_execution_id: string }>(
      `insert into billing.job_execution (job_instance_id, status, started_at, owner)
       values ($1, 'STARTED', now(), $2) returning job_execution_id`,
      [instanceId, this.owner],
    );
    const id = ins.rows[0]?.job_execution_id as string;
    await c.query("insert into billing.job_heartbeat (job_execution_id, owner, beat_at) values ($1, $2, now())", [
      id,
      this.owner,
    ]);
    this.log.info({ month, executionId: id, restart: last !== undefined }, "billing execution created");
    return { executionId: id, restart: last !== undefined };
  }

  private async abandon(c: pg.PoolClient, executionId: string, why: string) {
    await c.query(
      `update billing.step_execution set status = 'FAILED', exit_code = 'FAILED', exit_message = $2, ended_at = now(), last_updated = now()
        where job_execution_id = $1 and status in ('STARTING', 'STARTED', 'STOPPING')`,
      [executionId, `abandoned: ${why}`],
    );
    const failed = await c.query(
      `update billing.job_execution set status = 'FAILED', exit_code = 'FAILED', exit_message = $2, ended_at = now(), last_updated = now()
        where job_execution_id = $1`,
      [executionId, `abandoned: ${why}`],
    );
    if ((failed.rowCount ?? 0) > 0) billingExecutions.inc({ status: "FAILED" });
    this.log.warn({ executionId }, `billing execution failed as abandoned: ${why}`);
  }

  /** See stopExecution; an execution this process runs stops at its next chunk. */
  async stop(executionId: string): Promise<void> {
    await stopExecution(this.pool, executionId, this.s.leaseMs);
    const ctl = this.controls.get(executionId);
    if (ctl) ctl.stopRequested = true;
  }

  /** Runs an execution created by start/restart in this process, to its end. */
  run(executionId: string): Promise<void> {
    // Never rejects: how it ended is in the job repository (an execution that could not even record
    // its end stops heartbeating and is taken for dead).
    // Out of the trace of the RPC that started it (which ends at once): a run of a million
    // invoices is not one span's children; its steps' progress is in the job repository.
    const p = context
      .with(ROOT_CONTEXT, () => this.execute(executionId))
      .catch((e) => this.log.error({ err: e, executionId }, "billing execution could not run"))
      .finally(() => this.running.delete(executionId));
    this.running.set(executionId, p);
    return p;
  }

  private async execute(executionId: string): Promise<void> {
    const meta = await this.pool.query<{ job_instance_id: string; month: string; partitions: string }>(
      `select i.job_instance_id, i.parameters->>'month' as month, i.parameters->>'partitions' as partitions
         from billing.job_execution e join billing.job_instance i using (job_instance_id) where e.job_execution_id = $1`,
      [executionId],
    );
    const {
      job_instance_id: instanceId,
      month: label,
      partitions,
    } = meta.rows[0] as {
      job_instance_id: string;
      month: string;
      partitions: string;
    };
    const month = new BillingMonth(label, this.s.timeZone);
    const ctl = { stopRequested: false, fenced: false };
    this.controls.set(executionId, ctl);
    let beating = false;
    const beat = setInterval(() => {
      if (beating) return;
      beating = true;
      this.heartbeat(executionId, ctl)
        .catch((e) => this.log.warn({ err: e, executionId }, "billing heartbeat failed"))
        .finally(() => {
          beating = false;
        });
    }, this.s.heartbeatMs);
    beat.unref();
    const started = Date.now();
    try {
      const done = await this.completedSteps(instanceId);
      if (!done.has(SNAPSHOT_STEP)) await this.snapshot(executionId, month);
      const parts = await this.partitionSteps(
        executionId,
        instanceId,
        month,
        Number(partitions) || this.s.partitions,
        done,
      );
      const catalog = await this.snapshotCatalog(instanceId);
      const results = await Promise.allSettled(
        parts.map((p) => this.billPartition(executionId, p, month, catalog, ctl)),
      );
      const failures = results.flatMap((r, i) =>
        r.status === "rejected" ? [`${parts[i]?.name}: ${(r.reason as Error).message}`] : [],
      );
      if (ctl.fenced) throw new Fenced("the execution is no longer this process's");
      if (failures.length > 0) {
        await this.endExecution(executionId, "FAILED", failures.join("; "));
        return;
      }
      if (ctl.stopRequested || results.some((r) => r.status === "fulfilled" && r.value === "STOPPED")) {
        await this.endExecution(
          executionId,
          "STOPPED",
          "stopped on request; restart resumes each partition from its last chunk",
        );
        return;
      }
      if (!done.has(NOTIFY_STEP)) await this.notify(executionId, instanceId, month, ctl);
      if (ctl.stopRequested) {
        await this.endExecution(executionId, "STOPPED", "stopped on request while sending bill messages");
        return;
      }
      const unbilled = await this.close(executionId, instanceId, month);
      await this.endExecution(
        executionId,
        "COMPLETED",
        `billed ${label} in ${((Date.now() - started) / 1000).toFixed(1)} s${unbilled}`,
      );
    } catch (e) {
      if (e instanceof Fenced || ctl.fenced) {
        this.log.warn({ executionId }, "billing execution is no longer ours; stopped without writing");
        return;
      }
      this.log.error({ err: e, executionId }, "billing execution failed");
      await this.endExecution(executionId, "FAILED", (e as Error).message).catch(() => {});
    } finally {
      clearInterval(beat);
      this.controls.delete(executionId);
    }
  }

  /** Beats (its own row: never waits for a chunk's lock), and reads whether it is asked to stop. */
  private async heartbeat(executionId: string, ctl: { stopRequested: boolean; fenced: boolean }) {
    await this.pool.query(
      "update billing.job_heartbeat set beat_at = now() where job_execution_id = $1 and owner = $2",
      [executionId, this.owner],
    );
    const r = await this.pool.query<{ status: string; owner: string }>(
      "select status, owner from billing.job_execution where job_execution_id = $1",
      [executionId],
    );
    const e = r.rows[0];
    if (!e || e.owner !== this.owner || !["STARTED", "STOPPING"].includes(e.status)) ctl.fenced = true;
    else if (e.status === "STOPPING") ctl.stopRequested = true;
  }

  private async endExecution(executionId: string, status: "COMPLETED" | "FAILED" | "STOPPED", message: string) {
    const ended = await this.pool.query(
      `update billing.job_execution set status = $2, exit_code = $2, exit_message = $3, ended_at = now(), last_updated = now()
        where job_execution_id = $1 and owner = $4 and status in ('STARTED', 'STOPPING')`,
      [executionId, status, message.slice(0, 2000), this.owner],
    );
    // Not when another process took the execution over (it ended it already).
    if ((ended.rowCount ?? 0) > 0) billingExecutions.inc({ status });
    this.log.info({ executionId, status }, `billing execution ${status}: ${message.slice(0, 500)}`);
  }

  /** Step names whose newest step execution in the instance completed. */
  private async completedSteps(instanceId: string): Promise<Set<string>> {
    const r = await this.pool.query<{ step_name: string; status: string }>(
      `select distinct on (s.step_name) s.step_name, s.status from billing.step_execution s
         join billing.job_execution e using (job_execution_id)
        where e.job_instance_id = $1 order by s.step_name, s.step_execution_id desc`,
      [instanceId],
    );
    return new Set(r.rows.filter((x) => x.status === "COMPLETED").map((x) => x.step_name));
  }

  private async beginStep(
    c: pg.Pool | pg.PoolClient,
    executionId: string,
    name: string,
    context: unknown,
  ): Promise<string> {
    const r = await c.query<{ step_execution_id: string }>(
      `insert into billing.step_execution (job_execution_id, step_name, status, started_at)
       values ($1, $2, 'STARTED', clock_timestamp()) returning step_execution_id`,
      [executionId, name],
    );
    const id = r.rows[0]?.step_execution_id as string;
    await c.query("insert into billing.step_execution_context (step_execution_id, context) values ($1, $2)", [
      id,
      JSON.stringify(context),
    ]);
    return id;
  }

  private async endStep(c: pg.Pool | pg.PoolClient, stepId: string, status: string, message = "") {
    await c.query(
      `update billing.step_execution set status = $2, exit_code = $2, exit_message = $3, ended_at = clock_timestamp(),
              last_updated = clock_timestamp() where step_execution_id = $1`,
      [stepId, status, message.slice(0, 2000)],
    );
  }

  /** In a chunk's transaction: the execution must still be running and this process's. */
  private async fence(c: pg.PoolClient, executionId: string) {
    const r = await c.query<{ status: string; owner: string }>(
      "select status, owner from billing.job_execution where job_execution_id = $1 for share",
      [executionId],
    );
    const e = r.rows[0];
    if (!e || e.owner !== this.owner || !["STARTED", "STOPPING"].includes(e.status)) throw new Fenced("fenced");
  }

  /**
   * Closes the month in the usage unit, then reads its totals (as at the close, the same on every
   * read) into billing.usage_snapshot and the late usage of earlier months into
   * billing.late_snapshot, in one transaction with the step's end.
   */
  private async snapshot(executionId: string, month: BillingMonth) {
    const stepId = await this.beginStep(this.pool, executionId, SNAPSHOT_STEP, {});
    try {
      await this.s.closeUsageMonth(month.label);
      // Everything read before the transaction opens: a read failing half-way must not leave a
      // COPY open (its rollback would wait behind it, holding the execution's row).
      const totals: string[] = [];
      let lines = 0;
      for await (const page of this.s.usageTotals(month.label)) {
        totals.push(page.map((t) => `${month.label}\t${copyText(t.subscriptionId)}\t${t.usedBytes}\n`).join(""));
        lines += page.length;
      }
      const late: { subscriptionId: string; month: string; lateBytes: bigint }[] = [];
      for await (const page of this.s.lateUsage())
        late.push(...page.filter((l) => l.month < month.label && l.lateBytes > 0n));
      // The catalogue as the month is billed: a restart bills its remaining lines at these prices.
      const catalog = await this.catalog();
      await tx(this.pool, async (c) => {
        await this.fence(c, executionId);
        await c.query("delete from billing.usage_snapshot where month = $1", [month.label]);
        await pipeline(
          Readable.from(totals),
          c.query(copyFrom("copy billing.usage_snapshot (month, subscription_id, used_bytes) from stdin")),
        );
        await c.query("delete from billing.late_snapshot where month = $1", [month.label]);
        for (let i = 0; i < late.length; i += 10_000) {
          const rows = late.slice(i, i + 10_000);
          await c.query(
            `insert into billing.late_snapshot (month, subscription_id, origin_month, late_bytes)
             select $1, * from unnest($2::text[], $3::text[], $4::bigint[])`,
            [
              month.label,
              rows.map((r) => r.subscriptionId),
              rows.map((r) => r.month),
              rows.map((r) => r.lateBytes.toString()),
            ],
          );
        }
        await c.query(
          `update billing.step_execution set read_count = $2, write_count = $2, commit_count = 1 where step_execution_id = $1`,
          [stepId, lines + late.length],
        );
        billingItems.inc({ step: "snapshot-usage" }, lines + late.length);
        await c.query(
          "update billing.step_execution_context set context = $2, updated_at = now() where step_execution_id = $1",
          [stepId, JSON.stringify({ lines, late: late.length, catalog: catalogJson(catalog) })],
        );
        await this.endStep(c, stepId, "COMPLETED");
      });
      this.log.info({ executionId, lines, late: late.length }, "usage snapshot taken");
    } catch (e) {
      if (!(e instanceof Fenced))
        await this.endStep(this.pool, stepId, "FAILED", `usage totals: ${(e as Error).message}`);
      throw e;
    }
  }

  /** The catalogue the instance's snapshot step kept. */
  private async snapshotCatalog(instanceId: string): Promise<Catalog> {
    const r = await this.pool.query<{ context: { catalog?: CatalogJson } }>(
      `select x.context from billing.step_execution s join billing.job_execution e using (job_execution_id)
         join billing.step_execution_context x using (step_execution_id)
        where e.job_instance_id = $1 and s.step_name = $2 and s.status = 'COMPLETED' order by s.step_execution_id desc limit 1`,
      [instanceId, SNAPSHOT_STEP],
    );
    const kept = r.rows[0]?.context.catalog;
    if (!kept) throw new Error("the usage snapshot step kept no catalogue");
    return catalogFrom(kept);
  }

  /**
   * This execution's partition steps: the instance's plan (made by its first execution that got
   * here, from the month's lines) for the partitions that did not complete, each resuming from the
   * context of its newest step execution.
   */
  private async partitionSteps(
    executionId: string,
    instanceId: string,
    month: BillingMonth,
    n: number,
    done: Set<string>,
  ): Promise<{ name: string; stepId: string; ctx: PartitionContext }[]> {
    return tx(this.pool, async (c) => {
      await this.fence(c, executionId);
      const prev = await c.query<{ step_name: string; status: string; context: PartitionContext }>(
        `select distinct on (s.step_name) s.step_name, s.status, x.context from billing.step_execution s
           join billing.job_execution e using (job_execution_id)
           join billing.step_execution_context x using (step_execution_id)
          where e.job_instance_id = $1 and s.step_name like $2 order by s.step_name, s.step_execution_id desc`,
        [instanceId, `${PARTITION_STEP}%`],
      );
      let plan: { name: string; ctx: PartitionContext }[];
      if (prev.rows.length > 0) {
        plan = prev.rows.filter((r) => !done.has(r.step_name)).map((r) => ({ name: r.step_name, ctx: r.context }));
      } else {
        const r = await c.query<{ p: number; lo: string; hi: string; n: string }>(
          `select p, min(subscription_id) lo, max(subscription_id) hi, count(*) n from (
             select subscription_id, ntile($3::int) over (order by subscription_id) p from domain.subscriptions
              where activated_at < $1 and (terminated_at is null or terminated_at > $2)) t
           group by p order by p`,
          [new Date(month.endMs), new Date(month.startMs), n],
        );
        let base = 0;
        let from = "";
        plan = r.rows.map((row, i) => {
          const ctx: PartitionContext = { from, to: row.hi, base, count: Number(row.n), after: from, written: 0 };
          base += Number(row.n);
          from = row.hi;
          return { name: `${PARTITION_STEP}${i + 1}`, ctx };
        });
        if (base > MAX_INVOICES) {
          throw new Error(
            `${month.label} has ${base} lines to bill: invoice numbers hold ${MAX_INVOICES} a month (7 digits)`,
          );
        }
        this.log.info({ executionId, partitions: plan.length, lines: base }, "month partitioned");
      }
      const out: { name: string; stepId: string; ctx: PartitionContext }[] = [];
      for (const p of plan) out.push({ ...p, stepId: await this.beginStep(c, executionId, p.name, p.ctx) });
      return out;
    });
  }

  private async catalog(): Promise<Catalog> {
    const [plans, vas, discounts] = await Promise.all([
      this.pool.query("select * from domain.plans"),
      this.pool.query("select * from domain.vas"),
      this.pool.query("select * from domain.discounts"),
    ]);
    return {
      plans: new Map(
        plans.rows.map((p) => [
          p.plan_id,
          {
            planId: p.plan_id,
            name: p.name,
            monthlyFeeKrw: Number(p.monthly_fee_krw),
            quotaBytes: BigInt(p.quota_bytes),
            overageUnitBytes: BigInt(p.overage_unit_bytes),
            overageUnitPriceKrw: Number(p.overage_unit_price_krw),
            overageCapKrw: Number(p.overage_cap_krw),
          },
        ]),
      ),
      vas: new Map(
        vas.rows.map((v) => [v.vas_id, { vasId: v.vas_id, name: v.name, monthlyFeeKrw: Number(v.monthly_fee_krw) }]),
      ),
      discounts: new Map(
        discounts.rows.map((d) => [
          d.discount_id,
          {
            discountId: d.discount_id,
            name: d.name,
            kind: d.kind,
            percentBp: Number(d.percent_bp),
            amountKrw: Number(d.amount_krw),
            target: d.target,
            applyOrder: Number(d.apply_order),
          },
        ]),
      ),
    };
  }

  /** One partition, chunk by chunk from its context. Resolves with how the step ended. */
  private async billPartition(
    executionId: string,
    p: { name: string; stepId: string; ctx: PartitionContext },
    month: BillingMonth,
    catalog: Catalog,
    ctl: { stopRequested: boolean; fenced: boolean },
  ): Promise<"COMPLETED" | "STOPPED"> {
    const ctx = { ...p.ctx };
    const issuedAt = new Date(month.endMs);
    const next = month.month === 12 ? [month.year + 1, 1] : [month.year, month.month + 1];
    const dueDate = `${next[0]}-${String(next[1]).padStart(2, "0")}-${String(this.s.dueDay).padStart(2, "0")}`;
    try {
      for (;;) {
        if (ctl.fenced) throw new Fenced("fenced");
        if (ctl.stopRequested) {
          await this.endStep(this.pool, p.stepId, "STOPPED", `stopped after ${ctx.written} of ${ctx.count} lines`);
          return "STOPPED";
        }
        const { invoices, late } = await this.readChunk(ctx, month, catalog);
        if (invoices.length === 0) {
          if (ctx.written !== ctx.count) {
            throw new Error(
              `billed ${ctx.written} lines where the partition had ${ctx.count} (lines changed in the month since it was partitioned)`,
            );
          }
          await this.endStep(this.pool, p.stepId, "COMPLETED");
          return "COMPLETED";
        }
        if (ctx.written + invoices.length > ctx.count) {
          throw new Error(`partition has more lines than the ${ctx.count} it was planned with`);
        }
        await this.writeChunk(executionId, p.stepId, ctx, invoices, late, month.label, issuedAt, dueDate);
      }
    } catch (e) {
      if (e instanceof Fenced) {
        ctl.fenced = true;
        throw e;
      }
      await this.pool
        .query("update billing.step_execution set rollback_count = rollback_count + 1 where step_execution_id = $1", [
          p.stepId,
        ])
        .catch(() => {});
      await this.endStep(this.pool, p.stepId, "FAILED", (e as Error).message).catch(() => {});
      throw e;
    }
  }

  /** The next chunk of the partition's lines after ctx.after, with their month's history, billed. */
  private async readChunk(
    ctx: PartitionContext,
    month: BillingMonth,
    catalog: Catalog,
  ): Promise<{ invoices: ComputedInvoice[]; late: LateRow[] }> {
    const start = new Date(month.startMs);
    const end = new Date(month.endMs);
    const lines = await this.pool.query<{ subscription_id: string; activated_at: Date; terminated_at: Date | null }>(
      `select subscription_id, activated_at, terminated_at from domain.subscriptions
        where subscription_id > $1 and subscription_id <= $2 and activated_at < $3 and (terminated_at is null or terminated_at > $4)
        order by subscription_id limit $5`,
      [ctx.after, ctx.to, end, start, this.s.chunkSize],
    );
    if (lines.rows.length === 0) return { invoices: [], late: [] };
    const first = lines.rows[0]?.subscription_id as string;
    const last = lines.rows[lines.rows.length - 1]?.subscription_id as string;
    const range = [first, last, start, end];
    const hist = (table: string, id: string) =>
      this.pool.query<{ subscription_id: string; id: string; f: Date; t: Date | null }>(
        `select subscription_id, ${id} as id, lower(valid) f, upper(valid) t from domain.${table}
          where subscription_id between $1 and $2 and valid && tstzrange($3, $4) order by subscription_id, lower(valid)`,
        range,
      );
    const [plans, vas, discounts, pays, usage, lateRows] = await Promise.all([
      hist("subscription_plan", "plan_id"),
      hist("subscription_vas", "vas_id"),
      hist("subscription_discount", "discount_id"),
      this.pool.query<{ subscription_id: string; merchant: string; amount_krw: string }>(
        `select subscription_id, merchant, amount_krw from domain.micro_payments
          where month = $3 and subscription_id between $1 and $2 order by subscription_id, occurred_at, payment_id`,
        [first, last, month.label],
      ),
      this.pool.query<{ subscription_id: string; used_bytes: string }>(
        "select subscription_id, used_bytes from billing.usage_snapshot where month = $3 and subscription_id between $1 and $2",
        [first, last, month.label],
      ),
      // Late usage of earlier months, what earlier invoices billed of it, and what the month's own
      // invoice billed (its usage and its final plan: the overage rule the late bytes fall under).
      this.pool.query<{
        subscription_id: string;
        origin_month: string;
        late_bytes: string;
        prior: string;
        billed_used: string | null;
        plan_id: string | null;
      }>(
        `select s.subscription_id, s.origin_month, s.late_bytes,
                coalesce((select max(b.through_bytes) from billing.late_billed b
                           where b.subscription_id = s.subscription_id and b.origin_month = s.origin_month
                             and b.billed_month < s.month), 0) prior,
                i.used_bytes billed_used,
                (select l.ref_id from billing.invoice_lines l where l.invoice_id = i.invoice_id and l.kind = 'plan_fee'
                  order by l.line_no desc limit 1) plan_id
           from billing.late_snapshot s
           left join billing.invoices i on i.subscription_id = s.subscription_id and i.month = s.origin_month
          where s.month = $3 and s.subscription_id between $1 and $2 order by s.subscription_id, s.origin_month`,
        [first, last, month.label],
      ),
    ]);
    const group = <R extends { subscription_id: string }>(rows: R[]) => {
      const m = new Map<string, R[]>();
      for (const r of rows) {
        const l = m.get(r.subscription_id);
        if (l) l.push(r);
        else m.set(r.subscription_id, [r]);
      }
      return m;
    };
    const periods = (rows: { id: string; f: Date; t: Date | null }[] | undefined): Period[] =>
      (rows ?? []).map((r) => ({ id: r.id, fromMs: r.f.getTime(), toMs: r.t ? r.t.getTime() : null }));
    const byPlan = group(plans.rows);
    const byVas = group(vas.rows);
    const byDiscount = group(discounts.rows);
    const byPay = group(pays.rows);
    const used = new Map(usage.rows.map((u) => [u.subscription_id, BigInt(u.used_bytes)]));
    const late: LateRow[] = [];
    const adjustments = new Map<string, { description: string; amountKrw: number; refId: string }[]>();
    for (const r of lateRows.rows) {
      const fresh = BigInt(r.late_bytes) - BigInt(r.prior);
      // No invoice of the line for that month (its billing did not complete): nothing to price the
      // bytes against yet; they stay for the next invoice after it.
      if (fresh <= 0n || r.billed_used === null) continue;
      const plan = r.plan_id ? catalog.plans.get(r.plan_id) : undefined;
      const billed = BigInt(r.billed_used ?? 0) + BigInt(r.prior);
      const l = adjustments.get(r.subscription_id) ?? [];
      l.push(lateAdjustment(r.origin_month, plan, billed, fresh));
      adjustments.set(r.subscription_id, l);
      late.push({ subscriptionId: r.subscription_id, origin: r.origin_month, through: BigInt(r.late_bytes) });
    }
    const invoices = lines.rows.map((l) =>
      computeInvoice(month, catalog, {
        subscriptionId: l.subscription_id,
        activatedMs: l.activated_at.getTime(),
        terminatedMs: l.terminated_at ? l.terminated_at.getTime() : null,
        plans: periods(byPlan.get(l.subscription_id)),
        vas: periods(byVas.get(l.subscription_id)),
        discounts: periods(byDiscount.get(l.subscription_id)),
        microPayments: (byPay.get(l.subscription_id) ?? []).map((x) => ({
          merchant: x.merchant,
          amountKrw: Number(x.amount_krw),
        })),
        usedBytes: used.get(l.subscription_id) ?? 0n,
        adjustments: adjustments.get(l.subscription_id) ?? [],
      }),
    );
    const billedLines = new Set(lines.rows.map((l) => l.subscription_id));
    return { invoices, late: late.filter((r) => billedLines.has(r.subscriptionId)) };
  }

  /** A chunk's invoices, the step's counts and its context, in one transaction. */
  private async writeChunk(
    executionId: string,
    stepId: string,
    ctx: PartitionContext,
    invoices: ComputedInvoice[],
    late: LateRow[],
    month: string,
    issuedAt: Date,
    dueDate: string,
  ) {
    const ids = invoices.map((i) => invoiceId(i.subscriptionId, month));
    const next: PartitionContext = {
      ...ctx,
      after: invoices[invoices.length - 1]?.subscriptionId as string,
      written: ctx.written + invoices.length,
    };
    const L = {
      id: [] as string[],
      no: [] as number[],
      kind: [] as string[],
      desc: [] as string[],
      amt: [] as number[],
      ref: [] as string[],
    };
    invoices.forEach((inv, k) => {
      for (const l of inv.lines) {
        L.id.push(ids[k] as string);
        L.no.push(l.lineNo);
        L.kind.push(l.kind);
        L.desc.push(l.description);
        L.amt.push(l.amountKrw);
        L.ref.push(l.refId);
      }
    });
    await tx(this.pool, async (c) => {
      await this.fence(c, executionId);
      await c.query(
        `insert into billing.invoices (invoice_id, invoice_number, subscription_id, month, subtotal_krw, vat_krw, total_krw,
                                       issued_at, due_date, job_execution_id, used_bytes)
         select u.id, u.num, u.sid, $4, u.sub, u.vat, u.tot, $8, $9::date, $10, u.used
           from unnest($1::uuid[], $2::text[], $3::text[], $5::bigint[], $6::bigint[], $7::bigint[], $11::bigint[])
             as u(id, num, sid, sub, vat, tot, used)`,
        [
          ids,
          invoices.map((_, k) => invoiceNumber(month, ctx.base + ctx.written + k + 1)),
          invoices.map((i) => i.subscriptionId),
          month,
          invoices.map((i) => i.subtotalKrw),
          invoices.map((i) => i.vatKrw),
          invoices.map((i) => i.totalKrw),
          issuedAt,
          dueDate,
          executionId,
          invoices.map((i) => i.usedBytes.toString()),
        ],
      );
      await c.query(
        `insert into billing.invoice_lines (invoice_id, line_no, kind, description, amount_krw, ref_id)
         select * from unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::text[])`,
        [L.id, L.no, L.kind, L.desc, L.amt, L.ref],
      );
      if (late.length > 0) {
        await c.query(
          `insert into billing.late_billed (subscription_id, origin_month, billed_month, through_bytes)
           select u.sid, u.origin, $4, u.through from unnest($1::text[], $2::text[], $3::bigint[]) as u(sid, origin, through)`,
          [late.map((l) => l.subscriptionId), late.map((l) => l.origin), late.map((l) => l.through.toString()), month],
        );
      }
      await c.query(
        `update billing.step_execution set read_count = read_count + $2, write_count = write_count + $2,
                commit_count = commit_count + 1, last_updated = now() where step_execution_id = $1`,
        [stepId, invoices.length],
      );
      billingItems.inc({ step: "bill-lines" }, invoices.length);
      await c.query(
        "update billing.step_execution_context set context = $2, updated_at = now() where step_execution_id = $1",
        [stepId, JSON.stringify(next)],
      );
    });
    Object.assign(ctx, next);
  }

  /**
   * One invoice-issued request per invoice, in invoice-number order: a chunk is sent and
   * acknowledged, then its position committed. A crash between sends a chunk again; the requests'
   * ids are deterministic ("invoice-issued:<line>:<month>"), so the message unit sends one bill.
   */
  private async notify(
    executionId: string,
    instanceId: string,
    month: BillingMonth,
    ctl: { stopRequested: boolean; fenced: boolean },
  ) {
    const prev = await this.pool.query<{ context: { after?: string; sent?: number } }>(
      `select x.context from billing.step_execution s join billing.job_execution e using (job_execution_id)
         join billing.step_execution_context x using (step_execution_id)
        where e.job_instance_id = $1 and s.step_name = $2 order by s.step_execution_id desc limit 1`,
      [instanceId, NOTIFY_STEP],
    );
    const ctx = { after: prev.rows[0]?.context.after ?? "", sent: prev.rows[0]?.context.sent ?? 0 };
    const stepId = await this.beginStep(this.pool, executionId, NOTIFY_STEP, ctx);
    const size = Math.max(2000, this.s.chunkSize * 2);
    // A million invoices just written: without fresh statistics the planner reads every remaining
    // invoice for each page instead of walking the (month, invoice_number) index.
    await this.pool.query("analyze billing.invoices");
    const page = (after: string) =>
      this.pool.query<{
        invoice_id: string;
        invoice_number: string;
        subscription_id: string;
        total_krw: string;
        due: string;
      }>(
        `select invoice_id, invoice_number, subscription_id, total_krw, to_char(due_date, 'YYYY-MM-DD') due from billing.invoices
          where month = $1 and invoice_number > $2 order by month, invoice_number limit $3`,
        [month.label, after, size],
      );
    try {
      // The next page is read while this one is sent.
      let next = page(ctx.after);
      // A page read ahead and never awaited (the step stopped) must not fail unhandled.
      next.catch(() => {});
      for (;;) {
        if (ctl.fenced) throw new Fenced("fenced");
        if (ctl.stopRequested) {
          await this.endStep(this.pool, stepId, "STOPPED", `stopped after ${ctx.sent} bill messages`);
          return;
        }
        const r = await next;
        if (r.rows.length === 0) break;
        const last = r.rows[r.rows.length - 1]?.invoice_number as string;
        next = page(last);
        next.catch(() => {});
        await this.s.publish(
          r.rows.map((i) =>
            this.s.notice({
              invoiceId: i.invoice_id,
              subscriptionId: i.subscription_id,
              month: month.label,
              totalKrw: BigInt(i.total_krw),
              dueDate: i.due,
            }),
          ),
        );
        ctx.after = last;
        ctx.sent += r.rows.length;
        await tx(this.pool, async (c) => {
          await this.fence(c, executionId);
          await c.query(
            `update billing.step_execution set read_count = read_count + $2, write_count = write_count + $2,
                    commit_count = commit_count + 1, last_updated = now() where step_execution_id = $1`,
            [stepId, r.rows.length],
          );
          billingItems.inc({ step: "notify-invoices" }, r.rows.length);
          await c.query(
            "update billing.step_execution_context set context = $2, updated_at = now() where step_execution_id = $1",
            [stepId, JSON.stringify(ctx)],
          );
        });
      }
      await this.endStep(this.pool, stepId, "COMPLETED");
    } catch (e) {
      if (!(e instanceof Fenced))
        await this.endStep(this.pool, stepId, "FAILED", `bill messages: ${(e as Error).message}`).catch(() => {});
      throw e;
    }
  }

  /**
   * Checks the month's invoices against the partition plan (every line billed once, numbers
   * 1..n without a gap) and marks the month closed (billing.months). Returns what the execution's
   * message says of late usage left unbilled (lines with no invoice this month, e.g. terminated,
   * or whose month's own invoice is missing): counted, not silently dropped.
   */
  private async close(executionId: string, instanceId: string, month: BillingMonth): Promise<string> {
    const stepId = await this.beginStep(this.pool, executionId, CLOSE_STEP, {});
    try {
      const planned = await this.pool.query<{ n: string }>(
        `select coalesce(sum((x.context->>'count')::bigint), 0) n from (
           select distinct on (s.step_name) s.step_execution_id from billing.step_execution s
             join billing.job_execution e using (job_execution_id)
            where e.job_instance_id = $1 and s.step_name like $2 order by s.step_name, s.step_execution_id desc) p
           join billing.step_execution_context x using (step_execution_id)`,
        [instanceId, `${PARTITION_STEP}%`],
      );
      const want = Number(planned.rows[0]?.n ?? 0);
      await tx(this.pool, async (c) => {
        await this.fence(c, executionId);
        const r = await c.query<{ n: string; lo: number | null; hi: number | null; total: string | null }>(
          `select count(*) n, min(right(invoice_number, 7)::int) lo, max(right(invoice_number, 7)::int) hi, sum(total_krw) total
             from billing.invoices where month = $1`,
          [month.label],
        );
        const got = r.rows[0] as { n: string; lo: number | null; hi: number | null; total: string | null };
        const n = Number(got.n);
        if (n !== want || (n > 0 && (got.lo !== 1 || got.hi !== n))) {
          throw new Error(
            `${month.label} has ${n} invoices numbered ${got.lo ?? "-"}..${got.hi ?? "-"} where ${want} were planned (1..${want})`,
          );
        }
        await c.query(
          `insert into billing.months (month, closed_at, job_execution_id, invoices, total_krw) values ($1, now(), $2, $3, $4)
           on conflict (month) do update set closed_at = excluded.closed_at, job_execution_id = excluded.job_execution_id,
             invoices = excluded.invoices, total_krw = excluded.total_krw`,
          [month.label, executionId, n, got.total ?? "0"],
        );
        await c.query(
          "update billing.step_execution set read_count = $2, write_count = 1, commit_count = 1 where step_execution_id = $1",
          [stepId, n],
        );
      });
      const left = await this.pool.query<{ lines: number; bytes: string | null }>(
        `select count(distinct s.subscription_id)::int lines, sum(s.late_bytes - coalesce(b.through, 0)) bytes
           from billing.late_snapshot s
           left join lateral (select max(through_bytes) through from billing.late_billed b
                               where b.subscription_id = s.subscription_id and b.origin_month = s.origin_month
                                 and b.billed_month <= s.month) b on true
          where s.month = $1 and s.late_bytes > coalesce(b.through, 0)`,
        [month.label],
      );
      const l = left.rows[0] ?? { lines: 0, bytes: null };
      await this.pool.query("update billing.step_execution_context set context = $2 where step_execution_id = $1", [
        stepId,
        JSON.stringify({ invoices: want, unbilledLateLines: l.lines, unbilledLateBytes: l.bytes ?? "0" }),
      ]);
      await this.endStep(this.pool, stepId, "COMPLETED");
      if (l.lines > 0) {
        this.log.warn({ executionId, lines: l.lines, bytes: l.bytes }, "late usage left unbilled");
        return `; late usage of ${l.lines} line(s), ${l.bytes} bytes, left unbilled (no invoice of theirs this month or of the month it belongs to)`;
      }
      return "";
    } catch (e) {
      if (!(e instanceof Fenced)) await this.endStep(this.pool, stepId, "FAILED", (e as Error).message).catch(() => {});
      throw e;
    }
  }
}
