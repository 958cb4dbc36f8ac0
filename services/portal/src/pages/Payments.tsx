import { Code } from "@connectrpc/connect";
import { Button, Card, Group, NumberInput, Progress, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { type ListPaymentsResponse, MicroPaymentService } from "../../../../gen/telco/domain/v1/micropayment_pb.js";
import { clientFor, mayWrite, type Problem, problemOf, type Session, thisMonth, useRequestId } from "../api.js";
import { DataTable, ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";
import { won } from "./Invoices.js";

const when = (seconds: bigint | undefined) =>
  seconds === undefined
    ? ""
    : new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Seoul", dateStyle: "short", timeStyle: "short" }).format(
        Number(seconds) * 1000,
      );

/**
 * A line's micro-payments this month against its monthly limit; customer care records one (an
 * idempotency key per form submission, so a retried click does not charge twice).
 */
export function Payments({ session, subscriptionId }: { session: Session; subscriptionId: string }) {
  const { t } = useI18n();
  const client = useMemo(() => clientFor(MicroPaymentService, session), [session]);
  const [month] = useState(thisMonth);
  const [list, setList] = useState<ListPaymentsResponse>();
  const [problem, setProblem] = useState<Problem>();
  const [merchant, setMerchant] = useState("");
  const [amount, setAmount] = useState<number | string>("");
  const [formProblem, setFormProblem] = useState<Problem>();
  const [notice, setNotice] = useState("");
  const [key, nextKey] = useRequestId(`${merchant}/${amount}`);
  const refresh = useCallback(
    () =>
      client
        .listPayments({ subscriptionId, month })
        .then((l) => {
          setList(l);
          setProblem(undefined);
        })
        .catch((err) => setProblem(problemOf(err))),
    [client, subscriptionId, month],
  );
  useEffect(() => {
    void refresh();
  }, [refresh]);
  const record = async (e: FormEvent) => {
    e.preventDefault();
    setFormProblem(undefined);
    setNotice("");
    try {
      await client.recordPayment({
        idempotencyKey: key,
        subscriptionId,
        merchant,
        amount: { currencyCode: "KRW", amountMinor: BigInt(typeof amount === "number" ? Math.trunc(amount) : 0) },
      });
      nextKey();
      setMerchant("");
      setAmount("");
      await refresh();
    } catch (err) {
      const p = problemOf(err);
      if (p.code === Code.AlreadyExists) {
        // The key was taken by an attempt whose answer was lost: it may be recorded already.
        nextKey();
        setNotice(t("paymentMaybeRecorded"));
        await refresh();
        return;
      }
      setFormProblem(p);
    }
  };
  const total = Number(list?.monthTotal?.amountMinor ?? 0n);
  const limit = Number(list?.monthLimit?.amountMinor ?? 0n);
  // Over the monthly limit is about the amount too.
  const amountError =
    formProblem?.fields["amount.amount_minor"] ??
    formProblem?.fields.amount ??
    (formProblem?.code === Code.FailedPrecondition ? formProblem.message : undefined);
  return (
    <Stack gap="xs">
      <Title order={3}>
        {t("payments")} · {month}
      </Title>
      <ProblemAlert problem={problem} />
      {list && (
        <Card withBorder>
          <Stack gap="xs">
            <Text data-testid="payments-total">
              {t("paymentsOfLimit", { total: won(list.monthTotal), limit: won(list.monthLimit) })}
            </Text>
            <Progress
              value={limit > 0 ? Math.min((total / limit) * 100, 100) : 0}
              aria-label={t("payments")}
              color={total >= limit ? "red" : "blue"}
            />
            {list.payments.length === 0 ? (
              <Text size="sm">{t("noPayments")}</Text>
            ) : (
              <DataTable testId="payments" head={[t("when"), t("merchant"), t("amount")]}>
                {list.payments.map((p) => (
                  <Table.Tr key={p.paymentId}>
                    <Table.Td>{when(p.occurredAt?.seconds)}</Table.Td>
                    <Table.Td>{p.merchant}</Table.Td>
                    <Table.Td ta="right">{won(p.amount)}</Table.Td>
                  </Table.Tr>
                ))}
              </DataTable>
            )}
          </Stack>
        </Card>
      )}
      {mayWrite(session) && (
        <form onSubmit={record} noValidate data-testid="record-payment">
          <Stack gap="xs">
            <Group align="flex-end" wrap="wrap">
              <TextInput
                style={{ flex: 2, minWidth: 180 }}
                label={t("merchant")}
                name="merchant"
                value={merchant}
                onChange={(e) => setMerchant(e.currentTarget.value)}
                error={formProblem?.fields.merchant}
              />
              <NumberInput
                style={{ flex: 1, minWidth: 140 }}
                label={t("amountKrw")}
                name="amount"
                value={amount}
                onChange={setAmount}
                allowDecimal={false}
                thousandSeparator=","
                error={amountError}
              />
              <Button type="submit">{t("recordPayment")}</Button>
            </Group>
            {formProblem && !formProblem.fields.merchant && !amountError && (
              <ProblemAlert problem={formProblem} fields />
            )}
            {notice && (
              <Text size="sm" role="status">
                {notice}
              </Text>
            )}
          </Stack>
        </form>
      )}
    </Stack>
  );
}
