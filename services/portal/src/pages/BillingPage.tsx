import { Anchor, Badge, Button, Card, Group, Progress, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { BatchStatus, BillingJobService, type JobExecution } from "../../../../gen/telco/batch/v1/billing_pb.js";
import { clientFor, mayWrite, type Problem, problemOf, type Session } from "../api.js";
import { DataTable, ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";

const RUNNING = new Set([BatchStatus.STARTING, BatchStatus.STARTED, BatchStatus.STOPPING]);
const pct = (done: bigint, total: bigint) => (total > 0n ? Number((done * 1000n) / total) / 10 : 0);

/** The previous month in the carrier's time zone: the one billing normally runs for. */
function previousMonth(): string {
  const now = new Date(new Date().toLocaleString("en-US", { timeZone: "Asia/Seoul" }));
  const d = new Date(now.getFullYear(), now.getMonth() - 1, 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

/** Billing runs: start one, watch its partitions live, stop and restart, and the history. */
export function BillingPage({ session }: { session: Session }) {
  const { t } = useI18n();
  const client = useMemo(() => clientFor(BillingJobService, session), [session]);
  const [month, setMonth] = useState(previousMonth);
  const [executions, setExecutions] = useState<JobExecution[]>([]);
  const [watched, setWatched] = useState<JobExecution>();
  const [problem, setProblem] = useState<Problem>();
  const refresh = useCallback(
    () =>
      client
        .listJobExecutions({ pageSize: 50 })
        .then((r) => setExecutions(r.executions))
        .catch((err) => setProblem(problemOf(err))),
    [client],
  );
  useEffect(() => {
    void refresh();
  }, [refresh]);
  const watchedId = watched?.jobExecutionId;
  // The watched execution, live from the batch unit's stream until it ends.
  useEffect(() => {
    if (watchedId === undefined) return;
    const stop = new AbortController();
    (async () => {
      try {
        for await (const m of client.watchJobExecution({ jobExecutionId: watchedId }, { signal: stop.signal })) {
          if (m.execution) setWatched(m.execution);
        }
      } catch (err) {
        if (!stop.signal.aborted) setProblem(problemOf(err));
      }
      if (!stop.signal.aborted) void refresh();
    })();
    return () => stop.abort();
  }, [client, watchedId, refresh]);
  const act = async (f: () => Promise<JobExecution | undefined>) => {
    setProblem(undefined);
    try {
      const e = await f();
      if (e) setWatched(e);
      await refresh();
    } catch (err) {
      setProblem(problemOf(err));
    }
  };
  const start = (e: FormEvent) => {
    e.preventDefault();
    void act(async () => (await client.startBillingJob({ month })).execution);
  };
  return (
    <Stack>
      <Title order={2}>{t("billing")}</Title>
      {mayWrite(session) && (
        <form onSubmit={start} noValidate>
          <Group align="flex-end" wrap="wrap">
            <TextInput
              style={{ flex: 1, minWidth: 200 }}
              label={t("billingMonth")}
              name="month"
              value={month}
              onChange={(e) => setMonth(e.currentTarget.value)}
              error={problem?.fields.month}
            />
            <Button type="submit">{t("startBilling")}</Button>
          </Group>
        </form>
      )}
      {!problem?.fields.month && <ProblemAlert problem={problem} />}
      {watched && (
        <Card withBorder data-testid="watched">
          <Stack gap="xs">
            <Group justify="space-between">
              <Text fw={500}>
                {t("execution")} #{String(watched.jobExecutionId)} · {watched.parameters.month}
              </Text>
              <Badge data-testid="watched-status">{BatchStatus[watched.status]}</Badge>
            </Group>
            <Progress value={pct(watched.itemsDone, watched.itemsTotal)} aria-label={t("progress")} />
            <Text size="sm" data-testid="watched-items">
              {t("itemsOf", { done: String(watched.itemsDone), total: String(watched.itemsTotal) })}
            </Text>
            <Text size="sm" fw={500}>
              {t("partitions")}
            </Text>
            {watched.steps.map((s) => (
              <Group key={String(s.stepExecutionId)} wrap="nowrap" gap="xs" data-testid="partition">
                <Text size="xs" w={150} style={{ flexShrink: 0 }}>
                  {s.stepName}
                </Text>
                <Progress
                  style={{ flex: 1 }}
                  value={pct(s.itemsDone, s.itemsTotal)}
                  aria-label={`${s.stepName} ${t("progress")}`}
                />
                <Text size="xs" w={80} ta="right">
                  {String(s.itemsDone)}/{String(s.itemsTotal)}
                </Text>
              </Group>
            ))}
          </Stack>
        </Card>
      )}
      <Title order={3}>{t("executions")}</Title>
      <DataTable testId="executions" head={[t("execution"), t("month"), t("status"), t("progress"), ""]}>
        {executions.map((x) => (
          <Table.Tr key={String(x.jobExecutionId)}>
            <Table.Td>
              <Anchor component="button" type="button" onClick={() => setWatched(x)}>
                #{String(x.jobExecutionId)}
              </Anchor>
            </Table.Td>
            <Table.Td>{x.parameters.month}</Table.Td>
            <Table.Td>{BatchStatus[x.status]}</Table.Td>
            <Table.Td>{t("itemsOf", { done: String(x.itemsDone), total: String(x.itemsTotal) })}</Table.Td>
            <Table.Td>
              {mayWrite(session) && RUNNING.has(x.status) && (
                <Button
                  size="compact-xs"
                  color="red"
                  onClick={() =>
                    act(async () => (await client.stopJobExecution({ jobExecutionId: x.jobExecutionId })).execution)
                  }
                >
                  {t("stop")}
                </Button>
              )}
              {mayWrite(session) && (x.status === BatchStatus.FAILED || x.status === BatchStatus.STOPPED) && (
                <Button
                  size="compact-xs"
                  onClick={() =>
                    act(async () => (await client.restartJobExecution({ jobExecutionId: x.jobExecutionId })).execution)
                  }
                >
                  {t("restart")}
                </Button>
              )}
            </Table.Td>
          </Table.Tr>
        ))}
      </DataTable>
    </Stack>
  );
}
