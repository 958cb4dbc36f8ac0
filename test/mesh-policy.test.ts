/**
 * The mesh allows exactly the calls the code makes. The call graph is derived from the code: the
 * RPCs each unit calls through generated clients of another unit (test/support/call-graph.ts, by
 * the type checker), and, for the gateway (portal, gRPC-Web), every RPC whose role policy
 * (services/<unit>/src/routes.ts) admits a person (admin, operator, viewer, subscriber). The
 * ALLOW rules of istio/<unit>/authorization-policy.yaml must grant exactly those (caller
 * principal, exact path) pairs: a call the code makes that no rule allows, and a rule no code
 * needs, both fail.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { parseAllDocuments } from "yaml";
import type { Policy } from "../services/kit/src/auth.js";
import { rpcCalls } from "./support/call-graph.js";
import { ROOT } from "./support/processes.js";

const UNITS = ["usage", "message", "domain", "batch"];
const GATEWAY = "cluster.local/ns/gateway/sa/gateway";
const PEOPLE = new Set(["admin", "operator", "viewer", "subscriber"]);
const principalOf = (unit: string) => `cluster.local/ns/${unit}/sa/${unit}`;

/** The services a unit serves: the generated descriptors of its package. */
async function servicesOf(unit: string): Promise<DescService[]> {
  const dir = join(ROOT, "gen/telco", unit, "v1");
  const out: DescService[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith("_pb.ts"))) {
    const mod = (await import(join(dir, f))) as Record<string, unknown>;
    for (const v of Object.values(mod)) {
      if (v && typeof v === "object" && (v as { kind?: string }).kind === "service") out.push(v as DescService);
    }
  }
  return out;
}

/** The pairs "principal path" the code needs. */
async function needed(): Promise<Map<string, string>> {
  const want = new Map<string, string>();
  for (const c of rpcCalls(UNITS)) want.set(`${principalOf(c.caller)} ${c.path}`, `called at ${c.at}`);
  for (const unit of UNITS) {
    const { policy } = (await import(join(ROOT, "services", unit, "src/routes.ts"))) as { policy: Policy };
    for (const s of await servicesOf(unit)) {
      for (const m of s.methods) {
        const roles = policy[m.name] ?? [];
        if (roles.some((r) => PEOPLE.has(r))) {
          want.set(`${GATEWAY} /${s.typeName}/${m.name}`, `${unit} policy: ${m.name} is for ${roles.join(", ")}`);
        }
      }
    }
  }
  return want;
}

/** The pairs the AuthorizationPolicies allow, with the namespace each is in. */
function allowed(): Map<string, string> {
  const got = new Map<string, string>();
  for (const unit of UNITS) {
    const file = `istio/${unit}/authorization-policy.yaml`;
    for (const doc of parseAllDocuments(readFileSync(join(ROOT, file), "utf8"))) {
      // biome-ignore lint/suspicious/noExplicitAny: untyped YAML
      const p = doc.toJS() as any;
      if (p?.kind !== "AuthorizationPolicy" || (p.spec?.action ?? "ALLOW") !== "ALLOW") continue;
      for (const rule of p.spec?.rules ?? []) {
        const principals: string[] = (rule.from ?? []).flatMap(
          (f: { source?: { principals?: string[] } }) => f.source?.principals ?? [],
        );
        const paths: string[] = (rule.to ?? []).flatMap(
          (t: { operation?: { paths?: string[] } }) => t.operation?.paths ?? [],
        );
        assert.ok(principals.length > 0, `${file} ${p.metadata.name}: a rule without a caller principal allows anyone`);
        assert.ok(paths.length > 0, `${file} ${p.metadata.name}: a rule without exact paths allows every RPC`);
        for (const principal of principals) {
          for (const path of paths) {
            assert.ok(path.startsWith(`/telco.${unit}.`), `${file}: ${path} is not served in namespace ${unit}`);
            got.set(`${principal} ${path}`, `${file} ${p.metadata.name}`);
          }
        }
      }
    }
  }
  return got;
}

describe("the mesh's authorization policies against the code's call graph", () => {
  it("finds the calls units make to each other in the code", () => {
    const calls = rpcCalls(UNITS).map((c) => `${c.caller} ${c.path}`);
    // What the units do today (a new call shows up here and in the next test).
    for (const c of [
      "usage /telco.domain.v1.SubscriptionService/ListLineQuotas",
      "message /telco.domain.v1.SubscriptionService/GetLineContact",
      "batch /telco.usage.v1.UsageService/StreamMonthTotals",
    ]) {
      assert.ok(calls.includes(c), `the call graph has ${c}; found ${calls.join(", ")}`);
    }
  });

  it("allows exactly the calls the code makes, by caller principal and exact RPC path", async () => {
    const want = await needed();
    const got = allowed();
    const missing = [...want].filter(([k]) => !got.has(k)).map(([k, why]) => `${k} (${why})`);
    const extra = [...got].filter(([k]) => !want.has(k)).map(([k, where]) => `${k} (${where})`);
    assert.deepEqual(missing, [], "calls the code makes that no AuthorizationPolicy allows");
    assert.deepEqual(extra, [], "allowed calls no code makes");
  });
});

describe("the mesh's routes against the contracts", () => {
  it("retries exactly the RPCs whose proto declares them idempotent, gives streams no timeout, and routes every RPC once", async () => {
    const idempotent = new Set([
      MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
      MethodOptions_IdempotencyLevel.IDEMPOTENT,
    ]);
    for (const unit of UNITS) {
      const file = `istio/${unit}/virtual-service.yaml`;
      // biome-ignore lint/suspicious/noExplicitAny: untyped YAML
      const vs = parseAllDocuments(readFileSync(join(ROOT, file), "utf8"))[0]?.toJS() as any;
      assert.equal(vs.kind, "VirtualService", file);
      const host = `${unit}.${unit}.svc.cluster.local`;
      assert.deepEqual(vs.spec.hosts, [host], `${file}: hosts`);
      const routed = new Map<string, { retries: number; timeout: string }>();
      for (const r of vs.spec.http) {
        for (const d of r.route) assert.equal(d.destination.host, host, `${file} ${r.name}: destination`);
        for (const m of r.match) {
          const path = m.uri?.exact as string;
          assert.ok(path, `${file} ${r.name}: routes match exact paths`);
          assert.ok(!routed.has(path), `${file}: ${path} in two routes`);
          routed.set(path, { retries: r.retries?.attempts ?? 2, timeout: r.timeout ?? "" });
        }
      }
      for (const s of await servicesOf(unit)) {
        for (const m of s.methods) {
          const path = `/${s.typeName}/${m.name}`;
          const r = routed.get(path);
          assert.ok(r, `${file}: no route for ${path}`);
          routed.delete(path);
          if (m.methodKind === "unary") {
            assert.equal(r.timeout, "10s", `${file}: ${path} timeout`);
            if (idempotent.has(m.idempotency)) assert.ok(r.retries > 0, `${file}: idempotent ${path} is not retried`);
            else assert.equal(r.retries, 0, `${file}: ${path} has side effects and must not be retried`);
          } else {
            assert.equal(r.timeout, "0s", `${file}: the stream ${path} must have no route timeout`);
            assert.equal(r.retries, 0, `${file}: the stream ${path} is not retried`);
          }
        }
      }
      assert.deepEqual([...routed.keys()], [], `${file}: routes for RPCs that do not exist`);
    }
  });
});
