import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  BatchStatus,
  type BillingJobService,
  type GetJobExecutionRequest,
  GetJobExecutionResponseSchema,
  type JobExecution,
  JobExecutionSchema,
  type ListJobExecutionsRequest,
  ListJobExecutionsResponseSchema,
  RestartJobExecutionResponseSchema,
  type StartBillingJobRequest,
  StartBillingJobResponseSchema,
  StopJobExecutionResponseSchema,
  WatchJobExecutionResponseSchema,
} from "../../../../gen/telco/batch/v1/billing_pb.js";
import { decodePageToken, encodePageToken, MONTH_RE, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import { type BillingJob, JobError } from "../billing/job.js";
import type { BatchStatusName, JobExecutionRow, JobRepository, StepExecutionRow } from "../store/job-repository.js";

const STATUS: Record<BatchStatusName, BatchStatus> = {
  STARTING: BatchStatus.STARTING,
  STARTED: BatchStatus.STARTED,
  STOPPING: BatchStatus.STOPPING,
  STOPPED: BatchStatus.STOPPED,
  COMPLETED: BatchStatus.COMPLETED,
  FAILED: BatchStatus.FAILED,
  ABANDONED: BatchStatus.ABANDONED,
};
const JOB_NAME_RE = /^[a-z][a-z0-9-]{0,63}$/;
const ts = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

function toExecution(e: JobExecutionRow, steps: StepExecutionRow[]): JobExecution {
  return create(JobExecutionSchema, {
    jobExecutionId: BigInt(e.job_execution_id),
    jobInstanceId: BigInt(e.job_instance_id),
    jobName: e.job_name,
    parameters: e.parameters,
    status: STATUS[e.status],
    createdAt: timestampFromDate(e.created_at),
    startedAt: ts(e.started_at),
    endedAt: ts(e.ended_at),
    exitCode: e.exit_code,
    exitMessage: e.exit_message,
    itemsTotal: BigInt(e.items_total ?? 0),
    itemsDone: BigInt(e.items_done ?? 0),
    steps: steps.map((s) => ({
      stepExecutionId: BigInt(s.step_execution_id),
      stepName: s.step_name,
      status: STATUS[s.status],
      readCount: BigInt(s.read_count),
      writeCount: BigInt(s.write_count),
      skipCount: BigInt(s.skip_count),
      commitCount: BigInt(s.commit_count),
      rollbackCount: BigInt(s.rollback_count),
      startedAt: ts(s.started_at),
      endedAt: ts(s.ended_at),
      exitCode: s.exit_code,
      exitMessage: s.exit_message,
      itemsTotal: BigInt(s.context?.count ?? 0),
      itemsDone: BigInt(s.context?.written ?? s.context?.sent ?? s.context?.lines ?? 0),
    })),
  });
}

const JOB_ERROR_CODE = {
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  not_found: Code.NotFound,
};

function asConnect(e: unknown): unknown {
  return e instanceof JobError ? new ConnectError(e.message, JOB_ERROR_CODE[e.code]) : e;
}

function executionId(id: bigint): bigint {
  const v = new Violations();
  v.check(id > 0n, "job_execution_id", "required: a positive execution id");
  v.throwIfAny();
  return id;
}

/** Progress is polled from the job repository at this interval while an execution is watched. */
const WATCH_POLL_MS = 500;
const ENDED = new Set(["COMPLETED", "FAILED", "STOPPED", "ABANDONED"]);

export class BillingJobServiceImpl implements ServiceImpl<typeof BillingJobService> {
  constructor(
    private readonly repo: JobRepository,
    /** Runs the jobs this unit starts; absent, the mutating RPCs answer UNAVAILABLE. */
    private readonly job?: BillingJob,
  ) {}

  private runner(): BillingJob {
    if (!this.job) throw new ConnectError("this batch instance does not run jobs", Code.Unavailable);
    return this.job;
  }

  private async execution(id: bigint): Promise<JobExecution> {
    const e = await this.repo.getExecution(id);
    if (!e) throw notFound(`job execution ${id}`);
    return toExecution(e, await this.repo.stepsOf([e.job_execution_id]));
  }

  async startBillingJob(req: StartBillingJobRequest) {
    const v = new Violations();
    v.check(MONTH_RE.test(req.month), "month", "required: YYYY-MM, e.g. 2026-10");
    v.check(req.partitions >= 0 && req.partitions <= 64, "partitions", "0..64 (0 = the unit's default)");
    v.throwIfAny();
    const job = this.runner();
    try {
      const { executionId: id } = await job.start(req.month, req.partitions || undefined);
      void job.run(id);
      return create(StartBillingJobResponseSchema, { execution: await this.execution(BigInt(id)) });
    } catch (e) {
      throw asConnect(e);
    }
  }

  async stopJobExecution(req: { jobExecutionId: bigint }) {
    const id = executionId(req.jobExecutionId);
    try {
      await this.runner().stop(id.toString());
    } catch (e) {
      throw asConnect(e);
    }
    return create(StopJobExecutionResponseSchema, { execution: await this.execution(id) });
  }

  async restartJobExecution(req: { jobExecutionId: bigint }) {
    const id = executionId(req.jobExecutionId);
    const job = this.runner();
    try {
      const { executionId: next } = await job.restart(id.toString());
      void job.run(next);
      return create(RestartJobExecutionResponseSchema, { execution: await this.execution(BigInt(next)) });
    } catch (e) {
      throw asConnect(e);
    }
  }

  async *watchJobExecution(req: { jobExecutionId: bigint }, ctx: HandlerContext) {
    const id = executionId(req.jobExecutionId);
    let last = "";
    for (;;) {
      const e = await this.execution(id);
      const seen = JSON.stringify(
        [e.status, e.itemsDone, e.steps.map((s) => [s.status, s.itemsDone, s.writeCount])],
        (_, v) => (typeof v === "bigint" ? v.toString() : v),
      );
      if (seen !== last) {
        last = seen;
        yield create(WatchJobExecutionResponseSchema, { execution: e });
      }
      if (ENDED.has(BatchStatus[e.status] ?? "")) return;
      await new Promise((r) => setTimeout(r, WATCH_POLL_MS));
      if (ctx.signal.aborted) return;
    }
  }

  async getJobExecution(req: GetJobExecutionRequest) {
    const v = new Violations();
    v.check(req.jobExecutionId > 0n, "job_execution_id", "required: a positive execution id");
    v.throwIfAny();
    const e = await this.repo.getExecution(req.jobExecutionId);
    if (!e) throw notFound(`job execution ${req.jobExecutionId}`);
    return create(GetJobExecutionResponseSchema, {
      execution: toExecution(e, await this.repo.stepsOf([e.job_execution_id])),
    });
  }

  async listJobExecutions(req: ListJobExecutionsRequest) {
    const v = new Violations();
    if (req.jobName !== "")
      v.check(JOB_NAME_RE.test(req.jobName), "job_name", "lower-case letters, digits or '-', e.g. monthly-billing");
    const limit = pageSize(req.pageSize, 50, 200, v);
    const token = decodePageToken(req.pageToken, v);
    if (token !== undefined && !/^\d+$/.test(String(token)))
      v.add("page_token", "not a token returned by a previous call");
    v.throwIfAny();
    const rows = await this.repo.listExecutions({
      jobName: req.jobName || undefined,
      before: token === undefined ? undefined : BigInt(token),
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const steps = await this.repo.stepsOf(page.map((e) => e.job_execution_id));
    const last = page.at(-1);
    return create(ListJobExecutionsResponseSchema, {
      executions: page.map((e) =>
        toExecution(
          e,
          steps.filter((s) => s.job_execution_id === e.job_execution_id),
        ),
      ),
      nextPageToken: rows.length > limit && last ? encodePageToken(last.job_execution_id) : "",
    });
  }
}
