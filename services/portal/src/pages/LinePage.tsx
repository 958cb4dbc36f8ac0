import { Code } from "@connectrpc/connect";
import { Alert, Anchor, Badge, Box, Card, Group, Stack, Text, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import { type GetLineUsageResponse, UsageService } from "../../../../gen/telco/usage/v1/usage_pb.js";
import { bytes, clientFor, type Problem, problemOf, type Session, thisMonth } from "../api.js";
import { LevelBadge } from "../components.js";
import { type T, useI18n } from "../i18n.js";
import { Invoices } from "./Invoices.js";
import { LinePlan } from "./LinePlan.js";
import { MessageLog } from "./MessageLog.js";
import { Payments } from "./Payments.js";
import { UsageChart } from "./UsageChart.js";

const MARKS = [50, 80, 100];

/** The month's gauge with the 50 / 80 / 100 marks; its needle is the usage percentage. */
export function Gauge({ usage, t }: { usage: GetLineUsageResponse; t: T }) {
  const pct = Math.min(usage.percent, 100);
  const color =
    usage.percent >= 100
      ? "var(--mantine-color-red-6)"
      : usage.percent >= 80
        ? "var(--mantine-color-orange-6)"
        : usage.percent >= 50
          ? "var(--mantine-color-yellow-6)"
          : "var(--mantine-color-blue-6)";
  const label =
    usage.quotaBytes === 0n
      ? `${bytes(usage.usedBytes)} (${t("unlimited")})`
      : t("usageOf", {
          used: bytes(usage.usedBytes),
          quota: bytes(usage.quotaBytes),
          percent: usage.percent.toFixed(1),
        });
  return (
    <Stack gap={4}>
      <Box
        role="meter"
        aria-label={t("usage")}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Number(usage.percent.toFixed(1))}
        aria-valuetext={label}
        data-testid="usage-gauge"
        style={{ position: "relative", height: 28, borderRadius: 6, background: "var(--mantine-color-gray-2)" }}
      >
        <Box
          style={{ width: `${pct}%`, height: "100%", borderRadius: 6, background: color, transition: "width 300ms" }}
        />
        {MARKS.map((m) => (
          <Box
            key={m}
            aria-hidden
            style={{
              position: "absolute",
              left: `calc(${m}% - 1px)`,
              top: -4,
              bottom: -4,
              width: 2,
              background: "var(--mantine-color-dark-4)",
            }}
          />
        ))}
      </Box>
      <Box aria-hidden style={{ position: "relative", height: 18 }}>
        {MARKS.map((m) => (
          <Text
            key={m}
            size="xs"
            style={{
              position: "absolute",
              left: `${m}%`,
              transform: m === 100 ? "translateX(-100%)" : "translateX(-50%)",
            }}
          >
            {m}%
          </Text>
        ))}
      </Box>
      <Text data-testid="usage-text">{label}</Text>
    </Stack>
  );
}

/** A line's usage this month, kept live by the usage unit's server stream (reconnects if it ends). */
export function LinePage({ session, subscriptionId }: { session: Session; subscriptionId: string }) {
  const { t } = useI18n();
  const [usage, setUsage] = useState<GetLineUsageResponse>();
  const [live, setLive] = useState(false);
  const [problem, setProblem] = useState<Problem>();
  useEffect(() => {
    const client = clientFor(UsageService, session);
    const stop = new AbortController();
    client
      .getLineUsage({ subscriptionId, month: thisMonth() })
      .then((u) => setUsage((now) => now ?? u))
      .catch((err) => {
        if (!stop.signal.aborted) setProblem(problemOf(err));
      });
    (async () => {
      let backoff = 500;
      while (!stop.signal.aborted) {
        try {
          for await (const m of client.watchLineUsage({ subscriptionId }, { signal: stop.signal })) {
            setLive(true);
            backoff = 500;
            if (m.usage) setUsage(m.usage);
          }
        } catch (err) {
          if (stop.signal.aborted) return;
          const p = problemOf(err);
          // Refusals do not get better by retrying; a dropped stream does.
          if ([Code.PermissionDenied, Code.Unauthenticated, Code.NotFound, Code.InvalidArgument].includes(p.code)) {
            setProblem(p);
            return;
          }
        }
        setLive(false);
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 10_000);
      }
    })();
    return () => stop.abort();
  }, [session, subscriptionId]);
  return (
    <Stack>
      <Anchor href={session.role === "subscriber" ? "#/me" : "#/customers"}>← {t("back")}</Anchor>
      <Group justify="space-between">
        <Title order={2}>
          {t("usage")} · {usage?.month ?? thisMonth()}
        </Title>
        <Badge color={live ? "green" : "gray"} data-testid="live-state">
          {live ? t("live") : t("reconnecting")}
        </Badge>
      </Group>
      {problem && (
        <Alert color="red" role="alert">
          {problem.message}
        </Alert>
      )}
      {usage ? (
        <Card withBorder>
          <Stack>
            <Gauge usage={usage} t={t} />
            <Group gap="xs" data-testid="alerted-levels">
              <Text size="sm">{t("alertsSent")}:</Text>
              {usage.alertedLevels.length === 0 ? (
                <Text size="sm">{t("none")}</Text>
              ) : (
                usage.alertedLevels.map((l) => <LevelBadge key={l} level={l} />)
              )}
            </Group>
          </Stack>
        </Card>
      ) : (
        !problem && <Text>{t("loading")}</Text>
      )}
      <UsageChart session={session} subscriptionId={subscriptionId} refresh={usage?.usedBytes.toString()} />
      <LinePlan session={session} subscriptionId={subscriptionId} />
      <Payments session={session} subscriptionId={subscriptionId} />
      {/* Read again whenever another alert level has been sent. */}
      <MessageLog session={session} subscriptionId={subscriptionId} refresh={usage?.alertedLevels.join(",")} />
      <Invoices session={session} subscriptionId={subscriptionId} />
    </Stack>
  );
}
