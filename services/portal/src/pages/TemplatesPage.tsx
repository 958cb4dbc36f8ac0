import { Anchor, Badge, Stack, Table, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import { Channel } from "../../../../gen/telco/message/v1/events_pb.js";
import { type Template, TemplateService, TemplateStatus } from "../../../../gen/telco/message/v1/template_pb.js";
import { clientFor, type Problem, problemOf, type Session } from "../api.js";
import { DataTable, ProblemAlert } from "../components.js";
import { type Key, useI18n } from "../i18n.js";
import { href } from "../route.js";

export const statusKey = (s: TemplateStatus) => `status_${TemplateStatus[s]}` as Key;

/** Every template: its active version, or its latest when none is active. */
export function TemplatesPage({ session }: { session: Session }) {
  const { t } = useI18n();
  const [templates, setTemplates] = useState<Template[]>();
  const [problem, setProblem] = useState<Problem>();
  useEffect(() => {
    clientFor(TemplateService, session)
      .listTemplates({ pageSize: 200 })
      .then((r) => setTemplates(r.templates))
      .catch((err) => setProblem(problemOf(err)));
  }, [session]);
  return (
    <Stack>
      <Title order={2}>{t("templates")}</Title>
      <ProblemAlert problem={problem} />
      {templates && (
        <DataTable testId="templates" head={[t("template"), t("channel"), t("version"), t("status")]}>
          {templates.map((x) => (
            <Table.Tr key={x.templateId}>
              <Table.Td>
                <Anchor href={href({ page: "template", templateId: x.templateId })}>
                  {x.name} ({x.locale})
                </Anchor>
              </Table.Td>
              <Table.Td>{Channel[x.channel]}</Table.Td>
              <Table.Td>v{x.version}</Table.Td>
              <Table.Td>
                <Badge variant="light">{t(statusKey(x.status))}</Badge>
              </Table.Td>
            </Table.Tr>
          ))}
        </DataTable>
      )}
    </Stack>
  );
}
