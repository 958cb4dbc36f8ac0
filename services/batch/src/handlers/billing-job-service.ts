import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  BatchStatus,
  type BillingJobService,
  type GetJobExecutionRequest,
  GetJobExecutionResponseSchema,
  type JobExecution,
  JobExecutionSchema,
  type ListJobExecutionsRequest,
  ListJobExecutionsResponseSchema,
} from "../../../../gen/telco/batch/v1/billing_pb.js";
import { decodePageToken, encodePageToken, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
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
    })),
  });
}

export class BillingJobServiceImpl implements ServiceImpl<typeof BillingJobService> {
  constructor(private readonly repo: JobRepository) {}

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
