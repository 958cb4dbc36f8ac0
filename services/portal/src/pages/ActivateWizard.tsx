import { Code } from "@connectrpc/connect";
import { Alert, Anchor, Button, Card, Group, List, Select, Stack, Stepper, Text } from "@mantine/core";
import { useEffect, useState } from "react";
import { CatalogService, type Plan } from "../../../../gen/telco/domain/v1/catalog_pb.js";
import {
  type ActivateLineResponse,
  type Line,
  LineStatus,
  NumberSource,
  SubscriptionService,
} from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { bytes, clientFor, type Problem, problemOf, type Session, useRequestId } from "../api.js";
import { ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";
import { href } from "../route.js";
import { won } from "./Invoices.js";

/** The day in the carrier's time zone (a termination at 08:00 in Seoul is that day, not the one before in UTC). */
const day = (s: bigint | undefined) =>
  s === undefined
    ? ""
    : new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Seoul", dateStyle: "short" }).format(Number(s) * 1000);

/**
 * A new line for a customer in three steps: the plan; the number (a number the customer gave up
 * recently is held for them and comes back, otherwise a free one is allocated: the domain unit
 * decides, the page says which it did); the result. One request id per wizard, so a retried
 * activation (a dropped answer) does not open a second line.
 */
export function ActivateWizard({
  session,
  customerId,
  lines,
  onActivated,
}: {
  session: Session;
  customerId: string;
  lines: Line[];
  onActivated: () => void;
}) {
  const { t } = useI18n();
  const [step, setStep] = useState(0);
  const [plans, setPlans] = useState<Plan[]>([]);
  const [planId, setPlanId] = useState<string | null>(null);
  const [requestId, nextRequest] = useRequestId(planId ?? "");
  const [result, setResult] = useState<ActivateLineResponse>();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem>();
  const [plansProblem, setPlansProblem] = useState<Problem>();
  useEffect(() => {
    clientFor(CatalogService, session)
      .listPlans({ pageSize: 100 })
      .then((r) => setPlans(r.plans.filter((p) => p.active)))
      .catch((err) => setPlansProblem(problemOf(err)));
  }, [session]);
  const plan = plans.find((p) => p.planId === planId);
  // Numbers an open line of the customer has again are not waiting for them any more.
  const inUse = new Set(lines.filter((l) => l.status !== LineStatus.TERMINATED).map((l) => l.phoneNumber));
  const ended = lines.filter((l) => l.status === LineStatus.TERMINATED && !inUse.has(l.phoneNumber));
  const activate = async () => {
    setBusy(true);
    setProblem(undefined);
    try {
      const r = await clientFor(SubscriptionService, session).activateLine({
        requestId,
        customerId,
        planId: planId ?? "",
      });
      setResult(r);
      setStep(2);
      onActivated();
    } catch (err) {
      const p = problemOf(err);
      if (p.code === Code.AlreadyExists) {
        // The id was taken by an attempt whose answer was lost: the line may exist already.
        nextRequest();
        onActivated();
        setProblem({ ...p, message: `${t("numberRefused")} (${p.message})` });
      } else {
        setProblem(p);
        // A reason about the plan belongs next to the plan, on the first step.
        if (p.fields.plan_id) setStep(0);
      }
    } finally {
      setBusy(false);
    }
  };
  const again = () => {
    nextRequest();
    setResult(undefined);
    setPlanId(null);
    setStep(0);
  };
  return (
    <Card withBorder data-testid="activate-wizard">
      <Stepper active={step} size="sm" allowNextStepsSelect={false}>
        <Stepper.Step label={t("stepPlan")}>
          <Stack>
            <ProblemAlert problem={plansProblem} />
            <Select
              label={t("plan")}
              name="plan_id"
              placeholder={t("choosePlan")}
              data={plans.map((p) => ({
                value: p.planId,
                label: `${p.name} (${p.planId}) · ${won(p.monthlyFee)} · ${p.quotaBytes === 0n ? t("unlimited") : bytes(p.quotaBytes)}`,
              }))}
              value={planId}
              onChange={setPlanId}
              error={problem?.fields.plan_id}
              searchable
            />
            <Group>
              <Button disabled={!planId} onClick={() => setStep(1)}>
                {t("next")}
              </Button>
            </Group>
          </Stack>
        </Stepper.Step>
        <Stepper.Step label={t("stepNumber")}>
          <Stack>
            <Text>
              {t("planChosen")}: <b>{plan ? `${plan.name} (${plan.planId})` : planId}</b>
            </Text>
            {ended.length > 0 ? (
              <>
                <Text data-testid="number-outlook">{t("numberMayReturn")}</Text>
                <List size="sm">
                  {ended.map((l) => (
                    <List.Item key={l.subscriptionId}>
                      {t("endedLine", { number: l.phoneNumber, date: day(l.terminatedAt?.seconds) })}
                    </List.Item>
                  ))}
                </List>
              </>
            ) : (
              <Text data-testid="number-outlook">{t("numberWillBeNew")}</Text>
            )}
            <ProblemAlert problem={problem} fields />
            <Group>
              <Button variant="default" onClick={() => setStep(0)} disabled={busy}>
                {t("previous")}
              </Button>
              <Button onClick={activate} loading={busy}>
                {t("activate")}
              </Button>
            </Group>
          </Stack>
        </Stepper.Step>
        <Stepper.Completed>
          {result?.line && (
            <Stack>
              <Alert
                color={result.numberSource === NumberSource.RETURNED ? "teal" : "blue"}
                data-testid="number-source"
                data-source={NumberSource[result.numberSource]}
              >
                {result.numberSource === NumberSource.RETURNED
                  ? t("numberReturned", { number: result.line.phoneNumber })
                  : t("numberAllocated", { number: result.line.phoneNumber })}
              </Alert>
              <Group>
                <Anchor href={href({ page: "line", subscriptionId: result.line.subscriptionId })}>
                  {t("openLine")}
                </Anchor>
                <Button variant="default" onClick={again}>
                  {t("activateAnother")}
                </Button>
              </Group>
            </Stack>
          )}
        </Stepper.Completed>
      </Stepper>
    </Card>
  );
}
