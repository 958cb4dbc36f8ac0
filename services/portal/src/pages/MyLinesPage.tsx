import { Stack, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import { type Line, SubscriptionService } from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { clientFor, type Problem, problemOf, type Session } from "../api.js";
import { ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";
import { LinesTable } from "./LinesTable.js";

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
      <LinesTable lines={lines} testId="my-lines" />
    </Stack>
  );
}
