import { Anchor, Button, Group, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { type FormEvent, useCallback, useEffect, useState } from "react";
import { type GetLineUsageResponse, UsageService } from "../../../../gen/telco/usage/v1/usage_pb.js";
import { bytes, clientFor, type Problem, problemOf, type Session, thisMonth, useLatest } from "../api.js";
import { DataTable, LevelBadge, ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";
import { href } from "../route.js";

/** The month's heaviest lines by bytes used (the usage unit's ranking), each opening its line. */
export function TopLinesPage({ session }: { session: Session }) {
  const { t } = useI18n();
  const [month, setMonth] = useState(thisMonth);
  const [shown, setShown] = useState<{ month: string; lines: GetLineUsageResponse[] }>();
  const [problem, setProblem] = useState<Problem>();
  const latest = useLatest();
  // biome-ignore lint/correctness/useExhaustiveDependencies: latest is stable (a ref inside)
  const load = useCallback(
    (m: string) => {
      setProblem(undefined);
      const isLatest = latest();
      clientFor(UsageService, session)
        .listTopLines({ month: m, limit: 20 })
        .then((r) => isLatest() && setShown({ month: m, lines: r.lines }))
        .catch((err) => {
          if (!isLatest()) return;
          setShown(undefined);
          setProblem(problemOf(err));
        });
    },
    [session],
  );
  const lines = shown?.lines;
  useEffect(() => load(thisMonth()), [load]);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    load(month);
  };
  return (
    <Stack>
      <Title order={2}>{t("topLines")}</Title>
      <form onSubmit={submit} noValidate>
        <Group align="flex-end">
          <TextInput
            label={t("month")}
            name="month"
            value={month}
            onChange={(e) => setMonth(e.currentTarget.value)}
            error={problem?.fields.month}
            w={160}
          />
          <Button type="submit">{t("show")}</Button>
        </Group>
      </form>
      {problem && !problem.fields.month && <ProblemAlert problem={problem} />}
      {shown && <Title order={3}>{shown.month}</Title>}
      {lines && lines.length === 0 && <Text>{t("noUsageYet", { month: shown?.month ?? "" })}</Text>}
      {lines && lines.length > 0 && (
        <DataTable testId="top-lines" head={["#", t("line"), t("used"), t("quota"), "%", t("alertsSent")]}>
          {lines.map((l, i) => (
            <Table.Tr key={l.subscriptionId}>
              <Table.Td>{i + 1}</Table.Td>
              <Table.Td>
                <Anchor href={href({ page: "line", subscriptionId: l.subscriptionId })}>{l.subscriptionId}</Anchor>
              </Table.Td>
              <Table.Td>{bytes(l.usedBytes)}</Table.Td>
              <Table.Td>{l.quotaKnown ? (l.quotaBytes === 0n ? t("unlimited") : bytes(l.quotaBytes)) : "?"}</Table.Td>
              <Table.Td>{l.quotaKnown && l.quotaBytes > 0n ? l.percent.toFixed(1) : ""}</Table.Td>
              <Table.Td>
                <Group gap={4}>
                  {l.alertedLevels.map((a) => (
                    <LevelBadge key={a} level={a} size="sm" />
                  ))}
                </Group>
              </Table.Td>
            </Table.Tr>
          ))}
        </DataTable>
      )}
    </Stack>
  );
}
