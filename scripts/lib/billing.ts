import type pg from "pg";

/**
 * Forgets a month's billing in a database: its invoices, job instance with its executions and
 * steps, usage snapshots, the late usage its invoices billed, and its close. For the benchmark
 * (`--reset`) and the tests, to bill a month again from nothing; never part of the batch unit.
 */
export async function forgetMonth(pool: pg.Pool, month: string): Promise<void> {
  const ids = "select job_instance_id from billing.job_instance where parameters->>'month' = $1";
  const execs = `select job_execution_id from billing.job_execution where job_instance_id in (${ids})`;
  const steps = `select step_execution_id from billing.step_execution where job_execution_id in (${execs})`;
  for (const sql of [
    `delete from billing.step_execution_context where step_execution_id in (${steps})`,
    `delete from billing.step_execution where job_execution_id in (${execs})`,
    `delete from billing.job_heartbeat where job_execution_id in (${execs})`,
    "delete from billing.late_billed where billed_month = $1",
    "delete from billing.invoices where month = $1",
    "delete from billing.months where month = $1",
    "delete from billing.usage_snapshot where month = $1",
    "delete from billing.late_snapshot where month = $1",
    `delete from billing.job_execution where job_instance_id in (${ids})`,
    "delete from billing.job_instance where parameters->>'month' = $1",
  ]) {
    await pool.query(sql, [month]);
  }
}
