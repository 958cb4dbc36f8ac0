/**
 * The second process of `npm run reliability`'s held-load check: the RPCs operators use most
 * (a line's usage this month, a customer looked up by phone) from `concurrency` callers for
 * `seconds`, over gRPC, as an operator. Its spec comes in RELIABILITY_LOAD (JSON; the phone
 * numbers are personal data, so they never go on a command line or into the output). Prints one
 * JSON line: per RPC the calls, errors by code, and p50 / p99 latency in ms.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { grpcClient } from "../../../test/support/clients.js";
import { median, percentile } from "./ledger.js";

interface Spec {
  usageUrl: string;
  domainUrl: string;
  token: string;
  month: string;
  lines: string[];
  phones: string[];
  seconds: number;
  concurrency: number;
}

const spec = JSON.parse(process.env.RELIABILITY_LOAD ?? "{}") as Spec;
const usage = grpcClient(UsageService, spec.usageUrl, spec.token);
const customers = grpcClient(CustomerService, spec.domainUrl, spec.token);
const stats = {
  GetLineUsage: { ms: [] as number[], errors: {} as Record<string, number> },
  SearchCustomers: { ms: [] as number[], errors: {} as Record<string, number> },
};
const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)] as T;
const until = Date.now() + spec.seconds * 1000;

async function caller(n: number): Promise<void> {
  for (let i = n; Date.now() < until; i++) {
    const rpc = i % 2 === 0 ? "GetLineUsage" : "SearchCustomers";
    const t0 = performance.now();
    try {
      if (rpc === "GetLineUsage")
        await usage.getLineUsage({ subscriptionId: pick(spec.lines), month: spec.month }, { timeoutMs: 10_000 });
      else
        await customers.searchCustomers(
          { query: { case: "phoneNumber", value: pick(spec.phones) } },
          { timeoutMs: 10_000 },
        );
      stats[rpc].ms.push(performance.now() - t0);
    } catch (e) {
      const code = Code[ConnectError.from(e).code] ?? "Unknown";
      stats[rpc].errors[code] = (stats[rpc].errors[code] ?? 0) + 1;
    }
  }
}

await Promise.all(Array.from({ length: spec.concurrency }, (_, n) => caller(n)));
const out: Record<string, unknown> = {};
for (const [rpc, s] of Object.entries(stats)) {
  out[rpc] = {
    calls: s.ms.length + Object.values(s.errors).reduce((a, b) => a + b, 0),
    errors: s.errors,
    p50_ms: Number(median(s.ms).toFixed(2)),
    p99_ms: Number(percentile(s.ms, 99).toFixed(2)),
  };
}
process.stdout.write(`${JSON.stringify(out)}\n`);
