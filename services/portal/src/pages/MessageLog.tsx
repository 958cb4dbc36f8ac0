import { Badge, Group, Stack, Table, Text, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import { Channel, DeliveryStatus } from "../../../../gen/telco/message/v1/events_pb.js";
import { type Message, MessageService } from "../../../../gen/telco/message/v1/message_pb.js";
import { clientFor, type Problem, problemOf, type Session } from "../api.js";
import { DataTable, ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";

const when = (ts: { seconds: bigint } | undefined) =>
  ts ? new Date(Number(ts.seconds) * 1000).toLocaleString("sv-SE", { timeZone: "Asia/Seoul" }) : "";

/**
 * A line's messages, newest first, each with its status history. Read again when `refresh`
 * changes (a new alert level) and every 5 s while shown: a message's status moves after the alert.
 */
export function MessageLog({
  session,
  subscriptionId,
  refresh,
}: {
  session: Session;
  subscriptionId: string;
  refresh: unknown;
}) {
  const { t } = useI18n();
  const [messages, setMessages] = useState<Message[]>();
  const [problem, setProblem] = useState<Problem>();
  // biome-ignore lint/correctness/useExhaustiveDependencies: refresh is the trigger to read again
  useEffect(() => {
    let gone = false;
    const read = () =>
      clientFor(MessageService, session)
        .listMessages({ subscriptionId, pageSize: 50 })
        .then((r) => {
          if (!gone) {
            setMessages(r.messages);
            setProblem(undefined);
          }
        })
        .catch((err) => {
          if (!gone) setProblem(problemOf(err));
        });
    read();
    const timer = setInterval(read, 5_000);
    return () => {
      gone = true;
      clearInterval(timer);
    };
  }, [session, subscriptionId, refresh]);
  return (
    <Stack gap="xs">
      <Title order={3}>{t("messages")}</Title>
      <ProblemAlert problem={problem} />
      {messages && messages.length === 0 && <Text>{t("noMessages")}</Text>}
      {messages && messages.length > 0 && (
        <DataTable testId="message-log" head={[t("sentAt"), t("channel"), t("template"), t("history")]}>
          {messages.map((m) => (
            <Table.Tr key={m.messageId}>
              <Table.Td>{when(m.createdAt)}</Table.Td>
              <Table.Td>{Channel[m.channel]}</Table.Td>
              <Table.Td>
                {m.templateName} v{m.templateVersion}
                {m.segments > 0 && (
                  <Text span size="xs" c="dimmed">
                    {" "}
                    · {t("segmentsN", { n: m.segments })}
                  </Text>
                )}
              </Table.Td>
              <Table.Td>
                <Group gap={4}>
                  {m.history.map((h) => (
                    <Badge key={`${h.status}-${h.at?.seconds}`} variant="light" title={`${when(h.at)} ${h.reason}`}>
                      {DeliveryStatus[h.status]}
                    </Badge>
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
