import { Alert, Anchor, Badge, Button, Card, Group, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { type FormEvent, useCallback, useEffect, useState } from "react";
import { type Customer, CustomerService } from "../../../../gen/telco/domain/v1/customer_pb.js";
import type { Line } from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { clientFor, mayReveal, mayWrite, type Problem, problemOf, type Session } from "../api.js";
import { useI18n } from "../i18n.js";
import { ActivateWizard } from "./ActivateWizard.js";
import { LinesTable } from "./LinesTable.js";

/** A customer, masked; staff with the permission reveal the personal fields with a reason (audited). */
export function CustomerPage({ session, customerId }: { session: Session; customerId: string }) {
  const { t } = useI18n();
  const [customer, setCustomer] = useState<Customer>();
  const [lines, setLines] = useState<Line[]>([]);
  const [problem, setProblem] = useState<Problem>();
  const [reason, setReason] = useState("");
  const [revealProblem, setRevealProblem] = useState<Problem>();
  const [activating, setActivating] = useState(false);
  const loadLines = useCallback(
    () =>
      clientFor(CustomerService, session)
        .listCustomerLines({ customerId })
        .then((l) => setLines(l.lines))
        .catch((err) => setProblem(problemOf(err))),
    [session, customerId],
  );
  useEffect(() => {
    clientFor(CustomerService, session)
      .getCustomer({ customerId })
      .then((c) => setCustomer(c.customer))
      .catch((err) => setProblem(problemOf(err)));
    void loadLines();
  }, [session, customerId, loadLines]);
  const reveal = async (e: FormEvent) => {
    e.preventDefault();
    setRevealProblem(undefined);
    try {
      const r = await clientFor(CustomerService, session).getCustomer({
        customerId,
        reveal: true,
        revealReason: reason,
      });
      setCustomer(r.customer);
    } catch (err) {
      setRevealProblem(problemOf(err));
    }
  };
  if (problem)
    return (
      <Alert color="red" role="alert">
        {problem.message}
      </Alert>
    );
  if (!customer) return <Text>{t("loading")}</Text>;
  const rows: [string, string][] = [
    [t("name"), customer.name],
    [t("phone"), customer.phoneNumber],
    [t("email"), customer.email],
    [t("birthDate"), customer.birthDate],
  ];
  return (
    <Stack>
      <Anchor href="#/customers">← {t("back")}</Anchor>
      <Group justify="space-between">
        <Title order={2}>{t("customer")}</Title>
        <Badge color={customer.revealed ? "orange" : "gray"} data-testid="pii-state">
          {customer.revealed ? t("revealed") : t("masked")}
        </Badge>
      </Group>
      <Card withBorder>
        <Table data-testid="customer-fields">
          <Table.Tbody>
            {rows.map(([k, v]) => (
              <Table.Tr key={k}>
                <Table.Th w={140}>{k}</Table.Th>
                <Table.Td>{v}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Card>
      {!customer.revealed &&
        (mayReveal(session) ? (
          <form onSubmit={reveal} noValidate>
            <Group align="flex-end" wrap="wrap">
              <TextInput
                style={{ flex: 1, minWidth: 200 }}
                label={t("revealReason")}
                name="reveal_reason"
                value={reason}
                onChange={(e) => setReason(e.currentTarget.value)}
                error={revealProblem?.fields.reveal_reason}
              />
              <Button type="submit" color="orange">
                {t("reveal")}
              </Button>
            </Group>
            {revealProblem && !revealProblem.fields.reveal_reason && (
              <Alert color="red" role="alert" mt="sm">
                {revealProblem.message}
              </Alert>
            )}
          </form>
        ) : (
          <Text size="sm" c="dimmed" data-testid="reveal-not-allowed">
            {t("revealNotAllowed")}
          </Text>
        ))}
      <Group justify="space-between">
        <Title order={3}>{t("lines")}</Title>
        {mayWrite(session) && !activating && (
          <Button variant="light" onClick={() => setActivating(true)}>
            {t("activateLine")}
          </Button>
        )}
      </Group>
      {activating && <ActivateWizard session={session} customerId={customerId} lines={lines} onActivated={loadLines} />}
      <LinesTable lines={lines} testId="customer-lines" />
    </Stack>
  );
}
