/**
 * `npm run bench:message`: sustained sends per second from notification.requests to a local SMSC
 * (the `smpp` package's server) with rate limits off, and the latency from producing a request
 * to its submit_sm at the SMSC; baseline in the same run: a bare SMPP client's submit rate to the
 * same SMSC (no Kafka, no database). Everything in this process on the bench database
 * `telco_bench` (recreated), the local Kafka and Redis DB 14. Last line JSON.
 *
 *   npm run bench:message -- [--messages 5000] [--lines 200] [--seconds 10] [--concurrency 32]
 */
import { randomUUID } from "node:crypto";
import smpp from "smpp";
import { cli } from "./lib/cli.js";

const USAGE =
  "usage: npm run bench:message -- [--messages N] [--lines N] [--seconds S] [--concurrency N]\n" +
  "  --messages     requests of the throughput phase (default 5000)\n" +
  "  --lines        subscriber lines they go to (default 200)\n" +
  "  --seconds      length of the latency phase, at half the measured rate (default 10)\n" +
  "  --concurrency  messages the dispatcher works on at once (default 32)";
const { num } = cli("bench:message", USAGE, {
  messages: { type: "string", default: "5000" },
  lines: { type: "string", default: "200" },
  seconds: { type: "string", default: "10" },
  concurrency: { type: "string", default: "32" },
});
const N = num("messages", 10, 1_000_000);
const LINES = num("lines", 1, 100_000);
const SECONDS = num("seconds", 1, 3_600);
const CONCURRENCY = num("concurrency", 1, 1_000);

const DB = "telco_bench";
process.env.TEST_DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${DB}`;
process.env.TEST_REDIS_URL = "redis://127.0.0.1:6379/14";
process.env.TEST_LOG_LEVEL ??= "error";

const log = (s: string) => process.stderr.write(`${s}\n`);
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

async function recreateDatabase() {
  const { default: pg } = await import("pg");
  const c = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
  await c.connect();
  await c.query(`drop database if exists ${DB} with (force)`);
  await c.query(`create database ${DB}`);
  await c.end();
}

/** A bare SMPP client submitting `count` messages with `window` in flight: the SMSC's own ceiling here. */
async function baseline(url: string, count: number, window: number): Promise<number> {
  const session = smpp.connect({ url });
  await new Promise<void>((resolve, reject) => {
    session.on("error", reject);
    session.on("connect", () => session.bind_transceiver({ system_id: "bench", password: "" }, () => resolve()));
  });
  const started = performance.now();
  let sent = 0;
  let done = 0;
  await new Promise<void>((resolve) => {
    const next = () => {
      while (sent < count && sent - done < window) {
        sent++;
        session.submit_sm(
          { destination_addr: "821000000000", short_message: { message: "기준 측정 메시지" }, data_coding: 8 },
          () => {
            done++;
            if (done === count) resolve();
            else next();
          },
        );
      }
    };
    next();
  });
  const rate = count / ((performance.now() - started) / 1000);
  session.destroy();
  return rate;
}

async function main() {
  await recreateDatabase();
  const { Harness, kst } = await import("../services/message/test/harness.js");
  const { Channel, NotificationKind } = await import("../gen/telco/message/v1/events_pb.js");
  const { VariableType } = await import("../gen/telco/message/v1/template_pb.js");
  // Database pools as a unit has them by default (MESSAGE_DB_POOL_MAX, DOMAIN_DB_POOL_MAX).
  const h = new Harness({ poolMax: 10, numbers: LINES + 10 });
  await h.start({
    concurrency: CONCURRENCY,
    rates: { sms: { perSecond: 0, burst: 1 }, email: { perSecond: 0, burst: 1 }, push: { perSecond: 0, burst: 1 } },
  });
  try {
    h.clock.set(kst("2026-12-01T12:00"));
    await h.template("welcome", Channel.SMS, "{{user_name}}님, 가입을 환영합니다. ({{ref}})", {
      variables: [
        { name: "user_name", type: VariableType.STRING, required: true },
        { name: "ref", type: VariableType.STRING, required: true },
      ],
    });
    log(`bench:message: creating ${LINES} lines through the domain unit`);
    const lines: Awaited<ReturnType<typeof h.line>>[] = [];
    for (let i = 0; i < LINES; i++) lines.push(await h.line());
    // No receipts: the benchmark is about submits (receipts would double the SMSC's work).
    for (const l of lines) h.smsc.receiptStat.set(l.msisdn, "none");

    const baseRate = await baseline(h.smsc.url, Math.min(N, 20_000), CONCURRENCY);
    log(`bench:message: baseline bare SMPP client ${baseRate.toFixed(0)} submits/s`);

    const producedAt = new Map<string, number>();
    const request = (ref: string) => {
      const line = lines[Math.floor(Math.random() * lines.length)] as (typeof lines)[number];
      return {
        requestId: `welcome:${line.subscriptionId}:${ref}`,
        subscriptionId: line.subscriptionId,
        kind: NotificationKind.WELCOME,
        variables: { ref },
        detail: { case: "welcome" as const, value: { planId: "5G-STD-110G" } },
      };
    };
    const refOf = (text: string) => /\(([^)]+)\)$/.exec(text)?.[1];
    const progress = (phase: string, from: number, target: number, t0: number) =>
      setInterval(() => {
        const n = h.smsc.submitted.length - from;
        log(
          `bench:message: ${phase} ${n}/${target} submitted, ${(n / ((performance.now() - t0) / 1000)).toFixed(0)}/s`,
        );
      }, 1_000);

    // Phase 1: N requests at once; the rate at which the SMSC receives them.
    const from1 = h.smsc.submitted.length;
    const t0 = performance.now();
    const tick1 = progress("throughput", from1, N, t0);
    for (let i = 0; i < N; i += 500) {
      const batch = Array.from({ length: Math.min(500, N - i) }, (_, k) => request(`a${i + k}`));
      await h.request(...batch);
    }
    while (h.smsc.submitted.length - from1 < N) await new Promise((r) => setTimeout(r, 50));
    clearInterval(tick1);
    const subs = h.smsc.submitted.slice(from1);
    const elapsed1 = ((subs.at(-1)?.at ?? 0) - (subs[0]?.at ?? 0)) / 1000;
    const sendsPerS = (N - 1) / Math.max(elapsed1, 0.001);
    const endToEnd = N / ((performance.now() - t0) / 1000);
    log(
      `bench:message: ${N} submits, ${sendsPerS.toFixed(0)}/s sustained at the SMSC (${endToEnd.toFixed(0)}/s including the intake's start)`,
    );

    // Phase 2: half that rate for SECONDS; request → submit_sm latency of each.
    const offered = Math.max(1, Math.floor(sendsPerS / 2));
    const from2 = h.smsc.submitted.length;
    const t2 = performance.now();
    const tick2 = progress("latency", from2, offered * SECONDS, t2);
    let sent2 = 0;
    while (performance.now() - t2 < SECONDS * 1000) {
      const due = Math.floor(((performance.now() - t2) / 1000) * offered) - sent2;
      if (due > 0) {
        const batch = Array.from({ length: due }, (_, k) => request(`b${sent2 + k}`));
        const at = Date.now();
        for (const r of batch) producedAt.set(r.variables.ref, at);
        await h.request(...batch);
        sent2 += due;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    while (h.smsc.submitted.length - from2 < sent2) await new Promise((r) => setTimeout(r, 50));
    clearInterval(tick2);
    const latencies = h.smsc.submitted
      .slice(from2)
      .map((s) => {
        const ref = refOf(s.text);
        const at = ref ? producedAt.get(ref) : undefined;
        return at === undefined ? undefined : s.at - at;
      })
      .filter((x): x is number => x !== undefined);
    const doubled = new Set<string>();
    const seen = new Set<string>();
    for (const s of h.smsc.submitted) {
      const ref = refOf(s.text);
      if (ref === undefined) continue; // the baseline's submits
      if (seen.has(ref)) doubled.add(ref);
      seen.add(ref);
    }
    const result = {
      messages: N,
      lines: LINES,
      concurrency: CONCURRENCY,
      sends_per_s: Math.round(sendsPerS),
      end_to_end_per_s: Math.round(endToEnd),
      baseline_smpp_per_s: Math.round(baseRate),
      ratio_to_baseline: Number((sendsPerS / baseRate).toFixed(3)),
      latency_offered_per_s: offered,
      latency_samples: latencies.length,
      p50_ms: pct(latencies, 50),
      p99_ms: pct(latencies, 99),
      duplicates_at_smsc: doubled.size,
      run: randomUUID().slice(0, 8),
    };
    log(
      `bench:message: at ${offered}/s offered, request → submit_sm p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms (${latencies.length} samples); ${doubled.size} sent twice`,
    );
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await h.stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench:message: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
