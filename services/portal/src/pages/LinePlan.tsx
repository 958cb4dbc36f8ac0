import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Badge, Button, Card, Group, SegmentedControl, Select, Stack, Text, Timeline, Title } from "@mantine/core";
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { CatalogService, type Discount, type Plan, type Vas } from "../../../../gen/telco/domain/v1/catalog_pb.js";
import {
  type GetLineHistoryResponse,
  type Line,
  LineStatus,
  PlanChangeTiming,
  SubscriptionService,
} from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { bytes, clientFor, mayWrite, type Problem, problemOf, type Session, useLatest, useRequestId } from "../api.js";
import { ProblemAlert } from "../components.js";
import { type T, useI18n } from "../i18n.js";

const ms = (t: Timestamp | undefined) => (t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : undefined);
const when = (at: number | undefined) =>
  at === undefined
    ? ""
    : new Intl.DateTimeFormat("sv-SE", {
        timeZone: "Asia/Seoul",
        dateStyle: "short",
        timeStyle: "short",
      }).format(at);

interface Entry {
  at: number;
  kind: "plan" | "vas" | "discount" | "status";
  title: string;
  detail: string;
}

/** Plan, VAS and discount periods and status changes, as one timeline in time order. */
function entries(h: GetLineHistoryResponse, names: Map<string, string>, t: T): Entry[] {
  const out: Entry[] = [];
  const period = (
    kind: Entry["kind"],
    id: string,
    from: Timestamp | undefined,
    to: Timestamp | undefined,
    label: string,
  ) => {
    const start = ms(from) ?? 0;
    const end = ms(to);
    out.push({
      at: start,
      kind,
      title: `${label}: ${names.get(id) ?? id} (${id})`,
      detail:
        end === undefined
          ? t("periodOpen", { from: when(start) })
          : t("periodClosed", { from: when(start), to: when(end) }),
    });
  };
  for (const p of h.plans) period("plan", p.planId, p.validFrom, p.validTo, t("plan"));
  for (const p of h.vas) period("vas", p.vasId, p.validFrom, p.validTo, t("vas"));
  for (const p of h.discounts) period("discount", p.discountId, p.validFrom, p.validTo, t("discount"));
  for (const s of h.statusChanges)
    out.push({
      at: ms(s.at) ?? 0,
      kind: "status",
      title: `${t("status")}: ${LineStatus[s.status]}`,
      detail: `${when(ms(s.at))}${s.reason ? ` · ${s.reason}` : ""}`,
    });
  return out.sort((a, b) => a.at - b.at);
}

/**
 * The line: its number, plan and status; plan change (now or from next month; subscribers from
 * next month, their own line), VAS and discounts (staff who write); and its history as a timeline.
 */
export function LinePlan({ session, subscriptionId }: { session: Session; subscriptionId: string }) {
  const { t } = useI18n();
  const client = useMemo(() => clientFor(SubscriptionService, session), [session]);
  const [line, setLine] = useState<Line>();
  const [history, setHistory] = useState<GetLineHistoryResponse>();
  const [plans, setPlans] = useState<Plan[]>([]);
  const [vas, setVas] = useState<Vas[]>([]);
  const [discounts, setDiscounts] = useState<Discount[]>([]);
  const [problem, setProblem] = useState<Problem>();
  const latest = useLatest();
  // biome-ignore lint/correctness/useExhaustiveDependencies: latest is stable (a ref inside)
  const refresh = useCallback(() => {
    const isLatest = latest();
    return Promise.all([client.getLine({ subscriptionId }), client.getLineHistory({ subscriptionId })])
      .then(([l, h]) => {
        if (!isLatest()) return;
        setLine(l.line);
        setHistory(h);
        setProblem(undefined);
      })
      .catch((err) => isLatest() && setProblem(problemOf(err)));
  }, [client, subscriptionId]);
  useEffect(() => {
    void refresh();
    const catalog = clientFor(CatalogService, session);
    Promise.all([catalog.listPlans({ pageSize: 100 }), catalog.listVas({}), catalog.listDiscounts({})])
      .then(([p, v, d]) => {
        setPlans(p.plans);
        setVas(v.vas);
        setDiscounts(d.discounts);
      })
      .catch((err) => setProblem(problemOf(err)));
  }, [session, refresh]);
  const names = useMemo(
    () =>
      new Map<string, string>([
        ...plans.map((p) => [p.planId, p.name] as [string, string]),
        ...vas.map((v) => [v.vasId, v.name] as [string, string]),
        ...discounts.map((d) => [d.discountId, d.name] as [string, string]),
      ]),
    [plans, vas, discounts],
  );
  const open = line !== undefined && line.status !== LineStatus.TERMINATED;
  const timeline = history ? entries(history, names, t) : [];
  const now = Date.now();
  const past = timeline.filter((e) => e.at <= now).length;
  return (
    <Stack gap="xs" data-testid="line-plan">
      <Title order={3}>{t("linePlan")}</Title>
      <ProblemAlert problem={problem} />
      {line && (
        <Card withBorder data-testid="line-summary">
          <Group gap="lg" wrap="wrap">
            <Text>
              {t("line")}: <b>{line.phoneNumber}</b>
            </Text>
            <Text>
              {t("plan")}: <b data-testid="plan-in-force">{line.planId}</b>
            </Text>
            <Text>
              {t("quota")}: {line.quotaBytes === 0n ? t("unlimited") : bytes(line.quotaBytes)}
            </Text>
            <Badge color={line.status === LineStatus.ACTIVE ? "green" : "gray"}>{LineStatus[line.status]}</Badge>
          </Group>
        </Card>
      )}
      {open && (mayWrite(session) || session.role === "subscriber") && (
        <ChangePlanForm
          session={session}
          line={line}
          plans={plans.filter((p) => p.active && p.planId !== line.planId)}
          onChanged={refresh}
        />
      )}
      {open && mayWrite(session) && (
        <Group align="flex-start" wrap="wrap">
          <AddOnForm
            label={t("subscribeVas")}
            name="vas_id"
            options={vas.filter((v) => v.active).map((v) => ({ value: v.vasId, label: `${v.name} (${v.vasId})` }))}
            run={(id, requestId) => client.subscribeVas({ requestId, subscriptionId, vasId: id })}
            onDone={refresh}
          />
          <AddOnForm
            label={t("grantDiscount")}
            name="discount_id"
            options={discounts
              .filter((d) => d.active)
              .map((d) => ({ value: d.discountId, label: `${d.name} (${d.discountId})` }))}
            run={(id, requestId) => client.grantDiscount({ requestId, subscriptionId, discountId: id })}
            onDone={refresh}
          />
        </Group>
      )}
      <Title order={4}>{t("lineHistory")}</Title>
      <Timeline active={past - 1} bulletSize={14} lineWidth={2} data-testid="line-history">
        {timeline.map((e) => (
          <Timeline.Item
            key={`${e.kind}-${e.at}-${e.title}`}
            title={e.title}
            data-kind={e.kind}
            data-future={e.at > now ? "true" : undefined}
          >
            <Text size="sm" c="dimmed">
              {e.detail}
              {e.at > now && ` · ${t("scheduled")}`}
            </Text>
          </Timeline.Item>
        ))}
      </Timeline>
    </Stack>
  );
}

function ChangePlanForm({
  session,
  line,
  plans,
  onChanged,
}: {
  session: Session;
  line: Line;
  plans: Plan[];
  onChanged: () => void;
}) {
  const { t } = useI18n();
  const subscriber = session.role === "subscriber";
  const [planId, setPlanId] = useState<string | null>(null);
  const [timing, setTiming] = useState<"now" | "next">(subscriber ? "next" : "now");
  const [problem, setProblem] = useState<Problem>();
  const [done, setDone] = useState("");
  const [busy, setBusy] = useState(false);
  const [requestId, nextRequest] = useRequestId(`${planId}/${timing}`);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setProblem(undefined);
    setDone("");
    setBusy(true);
    try {
      const r = await clientFor(SubscriptionService, session).changePlan({
        requestId,
        subscriptionId: line.subscriptionId,
        newPlanId: planId ?? "",
        timing: timing === "now" ? PlanChangeTiming.NOW : PlanChangeTiming.NEXT_MONTH,
      });
      setDone(t("planChanged", { plan: r.period?.planId ?? "", from: when(ms(r.period?.validFrom)) }));
      setPlanId(null);
      nextRequest();
      onChanged();
    } catch (err) {
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} noValidate data-testid="change-plan">
      <Stack gap="xs">
        <Group align="flex-end" wrap="wrap">
          <Select
            style={{ flex: 1, minWidth: 220 }}
            label={t("newPlan")}
            name="new_plan_id"
            placeholder={t("choosePlan")}
            data={plans.map((p) => ({ value: p.planId, label: `${p.name} (${p.planId})` }))}
            value={planId}
            onChange={setPlanId}
            // The refusal is about the plan chosen (no longer offered, already the line's, …).
            error={problem?.fields.new_plan_id ?? (problem && !problem.fields.timing ? problem.message : undefined)}
          />
          {subscriber ? (
            <Text size="sm">{t("fromNextMonth")}</Text>
          ) : (
            <SegmentedControl
              aria-label={t("timing")}
              value={timing}
              onChange={(v) => setTiming(v as "now" | "next")}
              data={[
                { value: "now", label: t("timingNow") },
                { value: "next", label: t("timingNextMonth") },
              ]}
            />
          )}
          <Button type="submit" loading={busy} disabled={!planId}>
            {t("changePlan")}
          </Button>
        </Group>
        {problem?.fields.timing && <ProblemAlert problem={problem} fields />}
        {done && (
          <Text size="sm" c="teal" role="status">
            {done}
          </Text>
        )}
      </Stack>
    </form>
  );
}

function AddOnForm({
  label,
  name,
  options,
  run,
  onDone,
}: {
  label: string;
  name: string;
  options: { value: string; label: string }[];
  run: (id: string, requestId: string) => Promise<unknown>;
  onDone: () => void;
}) {
  const { t } = useI18n();
  const [id, setId] = useState<string | null>(null);
  const [problem, setProblem] = useState<Problem>();
  const [busy, setBusy] = useState(false);
  const [requestId, nextRequest] = useRequestId(id ?? "");
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setProblem(undefined);
    setBusy(true);
    try {
      await run(id ?? "", requestId);
      setId(null);
      nextRequest();
      onDone();
    } catch (err) {
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} noValidate style={{ flex: 1, minWidth: 260 }}>
      <Group align="flex-end" wrap="nowrap">
        <Select
          style={{ flex: 1, minWidth: 0 }}
          label={label}
          name={name}
          placeholder={t("choose")}
          data={options}
          value={id}
          onChange={setId}
          error={problem?.fields[name] ?? (problem ? problem.message : undefined)}
        />
        <Button type="submit" variant="light" disabled={!id} loading={busy}>
          {t("add")}
        </Button>
      </Group>
    </form>
  );
}
