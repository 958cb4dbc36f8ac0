import type { HistorySource } from "../handlers/usage-service.js";
import type { InfluxClient } from "./influx.js";
import { LINE_MEASUREMENT, PLATFORM_MEASUREMENT } from "./writer.js";

/**
 * Reads the series the time series writer keeps. Steps start at `from` (GROUP BY time with an
 * offset), so a caller asking from local midnight gets local days.
 */
export class UsageHistory implements HistorySource {
  constructor(private readonly influx: InfluxClient) {}

  async lineHistory(
    subscriptionId: string,
    fromMs: number,
    toMs: number,
    stepMs: number,
  ): Promise<{ startMs: number; bytes: bigint }[]> {
    const series = await this.influx.query(
      `SELECT sum("bytes") FROM "${LINE_MEASUREMENT}" WHERE "line" = $line AND ${range(fromMs, toMs)} ${groupBy(fromMs, stepMs)}`,
      { line: subscriptionId },
    );
    return points(series[0]?.values ?? []).map(([startMs, bytes]) => ({ startMs, bytes }));
  }

  /** The platform's usage per step: bytes and events, all partitions summed. */
  async platformHistory(
    fromMs: number,
    toMs: number,
    stepMs: number,
  ): Promise<{ startMs: number; bytes: bigint; events: bigint }[]> {
    const series = await this.influx.query(
      `SELECT sum("bytes"), sum("events") FROM "${PLATFORM_MEASUREMENT}" WHERE ${range(fromMs, toMs)} ${groupBy(fromMs, stepMs)}`,
    );
    return (series[0]?.values ?? []).map((row) => ({
      startMs: Number(row[0]),
      bytes: BigInt(Math.round(Number(row[1] ?? 0))),
      events: BigInt(Math.round(Number(row[2] ?? 0))),
    }));
  }
}

const range = (fromMs: number, toMs: number) =>
  `time >= ${BigInt(fromMs) * 1_000_000n} AND time < ${BigInt(toMs) * 1_000_000n}`;

const groupBy = (fromMs: number, stepMs: number) =>
  `GROUP BY time(${stepMs}ms, ${((fromMs % stepMs) + stepMs) % stepMs}ms) fill(none)`;

function points(values: unknown[][]): [number, bigint][] {
  // Sums of integer fields come back as JSON numbers: exact below 2^53 bytes (8 PiB) per step.
  return values.map((row) => [Number(row[0]), BigInt(Math.round(Number(row[1] ?? 0)))]);
}
