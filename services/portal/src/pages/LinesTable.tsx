import { Anchor, Table } from "@mantine/core";
import { type Line, LineStatus } from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { bytes } from "../api.js";
import { DataTable } from "../components.js";
import { useI18n } from "../i18n.js";
import { href } from "../route.js";

/** Lines with their plan, status and quota; each opens the line's page (usage, messages, bills). */
export function LinesTable({ lines, testId }: { lines: Line[]; testId: string }) {
  const { t } = useI18n();
  return (
    <DataTable testId={testId} head={[t("line"), t("plan"), t("status"), t("quota")]}>
      {lines.map((l) => (
        <Table.Tr key={l.subscriptionId}>
          <Table.Td>
            <Anchor href={href({ page: "line", subscriptionId: l.subscriptionId })}>{l.phoneNumber}</Anchor>
          </Table.Td>
          <Table.Td>{l.planId || "—"}</Table.Td>
          <Table.Td>{LineStatus[l.status]}</Table.Td>
          {/* A terminated line has no plan in force, so no quota (not "unlimited"). */}
          <Table.Td>
            {l.status === LineStatus.TERMINATED ? "—" : l.quotaBytes === 0n ? t("unlimited") : bytes(l.quotaBytes)}
          </Table.Td>
        </Table.Tr>
      ))}
    </DataTable>
  );
}
