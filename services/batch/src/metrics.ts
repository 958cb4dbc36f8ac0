import { Counter, Gauge } from "prom-client";
import { registry } from "../../kit/src/metrics.js";

/** The batch unit's own series (besides the kit's RPC ones). */
export const billingItems = new Counter({
  name: "telco_billing_items_total",
  help: "Items billing steps wrote, by step: usage totals snapshotted, invoices written (bill-lines), bill messages sent (notify-invoices). A chunk whose transaction is rolled back and run again counts again.",
  labelNames: ["step"] as const,
  registers: [registry],
});
export const billingExecutions = new Counter({
  name: "telco_billing_executions_total",
  help: "Billing executions this process ended, by status (COMPLETED, FAILED, STOPPED); FAILED includes executions found abandoned by a dead process.",
  labelNames: ["status"] as const,
  registers: [registry],
});

for (const step of ["snapshot-usage", "bill-lines", "notify-invoices"]) billingItems.inc({ step }, 0);
for (const status of ["COMPLETED", "FAILED", "STOPPED"]) billingExecutions.inc({ status }, 0);

const PARTITION_STATUSES = ["STARTED", "COMPLETED", "FAILED", "STOPPED"] as const;

/**
 * Gauges read from the job repository at each scrape: the partition steps of the newest
 * execution by status (every batch process reports the same figures), and whether an execution
 * runs in this process.
 */
export function watchBilling(
  query: (sql: string) => Promise<{ rows: { status: string; n: string }[] }>,
  running: () => number,
): void {
  new Gauge({
    name: "telco_billing_partitions",
    help: "Partition steps (bill-lines:partition-N) of the newest billing execution, by status.",
    labelNames: ["status"] as const,
    registers: [registry],
    // A database that is down or slow must not fail or stall the scrape (the process's other
    // series, and `up`, would go with it): after 2 s the last figures stand.
    async collect() {
      let timer: NodeJS.Timeout | undefined;
      try {
        const r = await Promise.race([
          query(
            `select s.status, count(*) as n from billing.step_execution s
              where s.job_execution_id = (select max(job_execution_id) from billing.job_execution)
                and s.step_name like 'bill-lines:%' group by s.status`,
          ),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error("timeout")), 2_000);
          }),
        ]);
        const by = new Map(r.rows.map((x) => [x.status, Number(x.n)]));
        for (const status of PARTITION_STATUSES) this.set({ status }, by.get(status) ?? 0);
      } catch {
        // Keeps the last values; the unit's own logs say when the database is unreachable.
      } finally {
        clearTimeout(timer);
      }
    },
  });
  new Gauge({
    name: "telco_billing_execution_running",
    help: "Billing executions running in this process (0 or 1).",
    registers: [registry],
    collect() {
      this.set(running());
    },
  });
}
