import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Card, Group, SegmentedControl, Stack, Text, Title } from "@mantine/core";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { type UsagePoint, UsageService } from "../../../../gen/telco/usage/v1/usage_pb.js";
import { bytes, clientFor, type Problem, problemOf, type Session, thisMonth, useLatest } from "../api.js";
import { ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** The usage unit keeps 5-minute points: windows start on that grid. */
const grid = (at: number, step: number) => at - (at % step);

type Range = "month" | "day";

/**
 * The range asked for (`from`, `to`, `step`) and the bars drawn (`slots` from `from`): this month
 * by day (from the 1st, Seoul time, to the month's end), or the last 24 hours by hour.
 */
function rangeOf(range: Range, now: number): { from: number; to: number; step: number; slots: number } {
  const to = grid(now, 5 * MINUTE) + 5 * MINUTE;
  if (range === "day") return { from: grid(now - DAY, HOUR) + HOUR, to, step: HOUR, slots: 24 };
  const month = thisMonth();
  const [y, m] = month.split("-").map(Number) as [number, number];
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return { from: Date.parse(`${month}-01T00:00:00+09:00`), to, step: DAY, slots: days };
}

/** One bar per slot: the unit answers only the steps that have usage. */
function slotsOf(points: UsagePoint[], w: { from: number; step: number; slots: number }): [number, bigint][] {
  const by = new Map(points.map((p) => [Number(p.start?.seconds ?? 0n) * 1000, p.bytes]));
  return Array.from({ length: w.slots }, (_, i) => {
    const at = w.from + i * w.step;
    return [at, by.get(at) ?? 0n];
  });
}

const label = (at: number, range: Range) =>
  new Intl.DateTimeFormat("sv-SE", {
    timeZone: "Asia/Seoul",
    ...(range === "day" ? { hour: "2-digit", minute: "2-digit" } : { month: "2-digit", day: "2-digit" }),
  }).format(at);

/**
 * A line's usage over time from the usage unit's history (InfluxDB): bars per day this month or
 * per hour over a day. Read again every 15 s and whenever `refresh` changes (the history lags the
 * live counter by the writer's flush interval).
 */
export function UsageChart({
  session,
  subscriptionId,
  refresh,
}: {
  session: Session;
  subscriptionId: string;
  refresh?: string;
}) {
  const { t } = useI18n();
  const client = useMemo(() => clientFor(UsageService, session), [session]);
  const [range, setRange] = useState<Range>("month");
  const [points, setPoints] = useState<{ range: Range; bars: [number, bigint][] }>();
  const [problem, setProblem] = useState<Problem>();
  const latest = useLatest();
  const rangeNow = useRef(range);
  rangeNow.current = range;
  const pending = useRef<ReturnType<typeof setTimeout>>(undefined);
  // biome-ignore lint/correctness/useExhaustiveDependencies: latest is stable (a ref inside)
  const load = useCallback(() => {
    const r = rangeNow.current;
    const w = rangeOf(r, Date.now());
    const isLatest = latest();
    client
      .getLineUsageHistory({
        subscriptionId,
        from: timestampFromMs(w.from),
        to: timestampFromMs(w.to),
        step: { seconds: BigInt(w.step / 1000), nanos: 0 },
      })
      .then((res) => {
        if (!isLatest()) return;
        setPoints({ range: r, bars: slotsOf(res.points, w) });
        setProblem(undefined);
      })
      .catch((err) => isLatest() && setProblem(problemOf(err)));
  }, [client, subscriptionId]);
  // At once on a new range; every 15 s; and once, 1.5 s after the gauge moves (the history has
  // it after the writer's next flush), however often it moves meanwhile: a throttle, not a
  // debounce, so that a line in constant use still gets its chart redrawn.
  // biome-ignore lint/correctness/useExhaustiveDependencies: range only triggers a new read
  useEffect(() => load(), [load, range]);
  useEffect(() => {
    if (refresh === undefined || pending.current) return;
    pending.current = setTimeout(() => {
      pending.current = undefined;
      load();
    }, 1_500);
  }, [refresh, load]);
  useEffect(() => {
    const id = setInterval(load, 15_000);
    return () => {
      clearInterval(id);
      clearTimeout(pending.current);
      pending.current = undefined;
    };
  }, [load]);
  const bars = points?.bars ?? [];
  const total = bars.reduce((sum, [, b]) => sum + b, 0n);
  let max = 0n;
  for (const [, b] of bars) if (b > max) max = b;
  const W = 600;
  const H = 160;
  const n = Math.max(bars.length, 1);
  const bar = W / n;
  return (
    <Card withBorder>
      <Stack gap="xs">
        <Group justify="space-between" wrap="wrap">
          <Title order={3}>{t("usageHistory")}</Title>
          <SegmentedControl
            aria-label={t("usageHistory")}
            size="xs"
            value={range}
            onChange={(v) => setRange(v as Range)}
            data={[
              { value: "month", label: t("thisMonthByDay") },
              { value: "day", label: t("lastDayByHour") },
            ]}
          />
        </Group>
        <ProblemAlert problem={problem} />
        {points && (
          <>
            <svg
              viewBox={`0 0 ${W} ${H + 4}`}
              width="100%"
              role="img"
              aria-label={t("usageHistoryTotal", { total: bytes(total) })}
              data-testid="usage-chart"
              data-total={String(total)}
              data-points={bars.filter(([, b]) => b > 0n).length}
            >
              <line x1={0} x2={W} y1={H} y2={H} stroke="var(--mantine-color-gray-5)" />
              {bars.map(([at, b], i) => {
                const h = max === 0n ? 0 : Number((b * BigInt(H - 4)) / max);
                return (
                  <g key={at}>
                    <rect
                      x={i * bar + bar * 0.1}
                      y={H - h}
                      width={bar * 0.8}
                      height={h}
                      fill="var(--mantine-color-blue-6)"
                    >
                      <title>{`${label(at, points.range)}: ${bytes(b)}`}</title>
                    </rect>
                  </g>
                );
              })}
            </svg>
            {/* Axis labels in HTML: legible at any width (an SVG's text shrinks with it). */}
            <Group justify="space-between" gap={4} aria-hidden wrap="nowrap">
              {bars
                .filter((_, i) => i % Math.ceil(n / 6) === 0)
                .map(([at]) => (
                  <Text key={at} size="xs" c="dimmed">
                    {label(at, points.range)}
                  </Text>
                ))}
            </Group>
            <Text size="sm" data-testid="usage-chart-total">
              {t("usageHistoryTotal", { total: bytes(total) })}
            </Text>
          </>
        )}
      </Stack>
    </Card>
  );
}
