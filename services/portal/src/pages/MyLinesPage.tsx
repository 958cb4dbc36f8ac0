import { Anchor, Stack, Table, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import { type Line, LineStatus, SubscriptionService } from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { bytes, clientFor, type Problem, problemOf, type Session } from "../api.js";
import { DataTable, ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";
import { href } from "../route.js";

/** A subscriber's own lines (those their token carries); each opens its usage, messages and bills. */
export function MyLinesPage({ session }: { session: Session }) {
  const { t } = useI18n();
  const [lines, setLines] = useState<Line[]>([]);
  const [problem, setProblem] = useState<Problem>();
  useEffect(() => {
    const client = clientFor(SubscriptionService, session);
    Promise.all(session.subscriptionIds.map((subscriptionId) => client.getLine({ subscriptionId })))
      .then((r) => setLines(r.flatMap((x) => (x.line ? [x.line] : []))))
      .catch((err) => setProblem(problemOf(err)));
  }, [session]);
  return (
    <Stack>
      <Title order={2}>{t("myLines")}</Title>
      <ProblemAlert problem={problem} />
      <DataTable testId="my-lines" head={[t("line"), t("plan"), t("status"), t("quota")]}>
        {lines.map((l) => (
          <Table.Tr key={l.subscriptionId}>
            <Table.Td>
              <Anchor href={href({ page: "line", subscriptionId: l.subscriptionId })}>{l.phoneNumber}</Anchor>
            </Table.Td>
            <Table.Td>{l.planId}</Table.Td>
            <Table.Td>{LineStatus[l.status]}</Table.Td>
            <Table.Td>{l.quotaBytes === 0n ? t("unlimited") : bytes(l.quotaBytes)}</Table.Td>
          </Table.Tr>
        ))}
      </DataTable>
    </Stack>
  );
}
