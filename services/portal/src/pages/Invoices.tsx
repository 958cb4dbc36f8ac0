import { Anchor, Card, Stack, Table, Text, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import type { Money } from "../../../../gen/telco/common/v1/money_pb.js";
import { type Invoice, InvoiceService } from "../../../../gen/telco/domain/v1/invoice_pb.js";
import { clientFor, type Problem, problemOf, type Session } from "../api.js";
import { DataTable, ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";

export const won = (m: Money | undefined) =>
  m
    ? new Intl.NumberFormat("ko-KR", { style: "currency", currency: m.currencyCode || "KRW" }).format(
        Number(m.amountMinor),
      )
    : "";

/** A line's invoices, newest month first; one opens with its lines. */
export function Invoices({ session, subscriptionId }: { session: Session; subscriptionId: string }) {
  const { t } = useI18n();
  const [invoices, setInvoices] = useState<Invoice[]>();
  const [open, setOpen] = useState<Invoice>();
  const [problem, setProblem] = useState<Problem>();
  useEffect(() => {
    clientFor(InvoiceService, session)
      .listInvoices({ subscriptionId, pageSize: 24 })
      .then((r) => setInvoices(r.invoices))
      .catch((err) => setProblem(problemOf(err)));
  }, [session, subscriptionId]);
  const show = (invoiceId: string) =>
    clientFor(InvoiceService, session)
      .getInvoice({ key: { case: "invoiceId", value: invoiceId } })
      .then((r) => setOpen(r.invoice))
      .catch((err) => setProblem(problemOf(err)));
  return (
    <Stack gap="xs">
      <Title order={3}>{t("invoices")}</Title>
      <ProblemAlert problem={problem} />
      {invoices && invoices.length === 0 && <Text>{t("noInvoices")}</Text>}
      {invoices && invoices.length > 0 && (
        <DataTable testId="invoices" head={[t("month"), t("invoiceNumber"), t("total"), t("dueDate"), ""]}>
          {invoices.map((i) => (
            <Table.Tr key={i.invoiceId}>
              <Table.Td>{i.month}</Table.Td>
              <Table.Td>{i.invoiceNumber}</Table.Td>
              <Table.Td>{won(i.total)}</Table.Td>
              <Table.Td>{i.dueDate}</Table.Td>
              <Table.Td>
                <Anchor component="button" type="button" onClick={() => show(i.invoiceId)}>
                  {t("showLines")}
                </Anchor>
              </Table.Td>
            </Table.Tr>
          ))}
        </DataTable>
      )}
      {open && (
        <Card withBorder data-testid="invoice-lines">
          <Text fw={500}>
            {open.invoiceNumber} · {open.month}
          </Text>
          <Table>
            <Table.Tbody>
              {open.lines.map((l) => (
                <Table.Tr key={l.lineNo}>
                  <Table.Td>{l.description}</Table.Td>
                  <Table.Td ta="right">{won(l.amount)}</Table.Td>
                </Table.Tr>
              ))}
              <Table.Tr>
                <Table.Th>{t("total")}</Table.Th>
                <Table.Th ta="right">{won(open.total)}</Table.Th>
              </Table.Tr>
            </Table.Tbody>
          </Table>
        </Card>
      )}
    </Stack>
  );
}
