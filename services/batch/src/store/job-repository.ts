import type { Knex } from "knex";

export type BatchStatusName = "STARTING" | "STARTED" | "STOPPING" | "STOPPED" | "COMPLETED" | "FAILED" | "ABANDONED";

export interface JobExecutionRow {
  job_execution_id: string;
  job_instance_id: string;
  job_name: string;
  parameters: Record<string, string>;
  status: BatchStatusName;
  created_at: Date;
  started_at: Date | null;
  ended_at: Date | null;
  exit_code: string;
  exit_message: string;
  /** Lines of the month to bill and billed so far, over every execution of the instance. */
  items_total: string;
  items_done: string;
}

export interface StepExecutionRow {
  step_execution_id: string;
  job_execution_id: string;
  step_name: string;
  status: BatchStatusName;
  read_count: string;
  write_count: string;
  skip_count: string;
  commit_count: string;
  rollback_count: string;
  started_at: Date | null;
  ended_at: Date | null;
  exit_code: string;
  exit_message: string;
  context: { count?: number; written?: number; sent?: number; lines?: number } | null;
}

const EXECUTION_COLUMNS = [
  "e.job_execution_id",
  "e.job_instance_id",
  "i.job_name",
  "i.parameters",
  "e.status",
  "e.created_at",
  "e.started_at",
  "e.ended_at",
  "e.exit_code",
  "e.exit_message",
];

/** Σ count / written of the newest step execution of each partition of the instance. */
const PROGRESS = `(select coalesce(sum((x.context->>'{f}')::bigint), 0) from (
    select distinct on (s.step_name) s.step_execution_id from billing.step_execution s
      join billing.job_execution e2 using (job_execution_id)
     where e2.job_instance_id = e.job_instance_id and e2.job_execution_id <= e.job_execution_id
       and s.step_name like 'bill-lines:partition-%' order by s.step_name, s.step_execution_id desc) p
    join billing.step_execution_context x using (step_execution_id))`;

export class JobRepository {
  constructor(private readonly knex: Knex) {}

  private executions() {
    return this.knex("job_execution as e")
      .join("job_instance as i", "i.job_instance_id", "e.job_instance_id")
      .select<JobExecutionRow[]>([
        ...EXECUTION_COLUMNS,
        this.knex.raw(`${PROGRESS.replace("{f}", "count")} as items_total`),
        this.knex.raw(`${PROGRESS.replace("{f}", "written")} as items_done`),
      ]);
  }

  async getExecution(id: bigint): Promise<JobExecutionRow | undefined> {
    return this.executions().where("e.job_execution_id", id.toString()).first();
  }

  /** Newest first; keyset paging on the execution id. */
  async listExecutions(opts: { jobName?: string; before?: bigint; limit: number }): Promise<JobExecutionRow[]> {
    const q = this.executions().orderBy("e.job_execution_id", "desc").limit(opts.limit);
    if (opts.jobName) q.where("i.job_name", opts.jobName);
    if (opts.before !== undefined) q.where("e.job_execution_id", "<", opts.before.toString());
    return q;
  }

  async stepsOf(executionIds: string[]): Promise<StepExecutionRow[]> {
    if (executionIds.length === 0) return [];
    return this.knex("step_execution as s")
      .leftJoin("step_execution_context as x", "x.step_execution_id", "s.step_execution_id")
      .select<StepExecutionRow[]>(["s.*", "x.context"])
      .whereIn("s.job_execution_id", executionIds)
      .orderBy(["s.job_execution_id", "s.step_execution_id"]);
  }
}
