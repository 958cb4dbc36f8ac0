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

export class JobRepository {
  constructor(private readonly knex: Knex) {}

  private executions() {
    return this.knex("job_execution as e")
      .join("job_instance as i", "i.job_instance_id", "e.job_instance_id")
      .select<JobExecutionRow[]>(EXECUTION_COLUMNS);
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
    return this.knex<StepExecutionRow>("step_execution")
      .whereIn("job_execution_id", executionIds)
      .orderBy(["job_execution_id", "step_name"]);
  }
}
