/**
 * The mesh allows exactly the calls the code makes. The call graph is derived from the code: the
 * RPCs each unit calls through generated clients of another unit (test/support/call-graph.ts, by
 * the type checker), and, for the gateway (portal, gRPC-Web), every RPC whose role policy
 * (services/<unit>/src/routes.ts) admits a person (admin, operator, viewer, subscriber). The
 * ALLOW rules of istio/base/<unit>/authorization-policy.yaml must grant exactly those (caller
 * principal, method, exact path) triples: a call the code makes that no rule allows, and a rule
 * no code needs, both fail. Besides RPCs the one document a unit serves, the domain unit's JWK
 * set, is allowed exactly to the workloads whose RequestAuthentication fetches it.
 *
 * The edge (istio/base/gateway) is checked the same way: the gateway routes exactly the RPCs
 * people use, demands a token for all of them but the open ones, and checks tokens with the
 * issuer, audience and key set of the code.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { parseAllDocuments } from "yaml";
import { AUDIENCE, ISSUER, JWKS_PATH, OPEN_METHODS, type Policy } from "../services/kit/src/auth.js";
import { rpcCalls } from "./support/call-graph.js";
import { ROOT } from "./support/processes.js";

const UNITS = ["usage", "message", "domain", "batch"];
const GATEWAY = "cluster.local/ns/gateway/sa/gateway";
const PEOPLE = new Set(["admin", "operator", "viewer", "subscriber"]);
const principalOf = (unit: string) => `cluster.local/ns/${unit}/sa/${unit}`;
const PORTS: Record<string, number> = { usage: 50051, message: 50052, domain: 50053, batch: 50054 };

// biome-ignore lint/suspicious/noExplicitAny: untyped YAML
type Obj = Record<string, any>;
/** The objects of an istio/ file. */
const objects = (file: string): Obj[] =>
  parseAllDocuments(readFileSync(join(ROOT, file), "utf8"))
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);

/** The RPCs people use: those whose role policy admits admin, operator, viewer or subscriber. */
async function peoplesRpcs(
  unit: string,
): Promise<{ path: string; roles: readonly string[]; method: DescService["methods"][number] }[]> {
  const { policy } = (await import(join(ROOT, "services", unit, "src/routes.ts"))) as { policy: Policy };
  const out = [];
  for (const s of await servicesOf(unit)) {
    for (const m of s.methods) {
      const roles = policy[m.name] ?? [];
      if (roles.some((r) => PEOPLE.has(r))) out.push({ path: `/${s.typeName}/${m.name}`, roles, method: m });
    }
  }
  return out;
}

/** The principals of the workloads that fetch a JWK set from a unit, by the RequestAuthentications. */
function jwksFetchers(): { principal: string; host: string; port: number; path: string }[] {
  const out = [];
  for (const ns of ["gateway", ...UNITS]) {
    const file = `istio/base/${ns}/request-authentication.yaml`;
    let docs: Obj[];
    try {
      docs = objects(file);
    } catch {
      continue;
    }
    for (const ra of docs.filter((o) => o.kind === "RequestAuthentication")) {
      for (const rule of ra.spec.jwtRules ?? []) {
        const u = new URL(rule.jwksUri);
        // The workload's identity: its namespace's ServiceAccount of the same name.
        out.push({
          principal: `cluster.local/ns/${ns}/sa/${ns}`,
          host: u.hostname,
          port: Number(u.port),
          path: u.pathname,
        });
      }
    }
  }
  return out;
}

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

/** What the code needs, as "principal METHOD path". */
async function needed(): Promise<Map<string, string>> {
  const want = new Map<string, string>();
  for (const c of rpcCalls(UNITS)) want.set(`${principalOf(c.caller)} POST ${c.path}`, `called at ${c.at}`);
  for (const unit of UNITS) {
    for (const r of await peoplesRpcs(unit)) {
      want.set(`${GATEWAY} POST ${r.path}`, `${unit} policy: ${r.method.name} is for ${r.roles.join(", ")}`);
    }
  }
  for (const f of jwksFetchers())
    want.set(`${f.principal} GET ${f.path}`, `its RequestAuthentication fetches ${f.host}`);
  return want;
}

/** What the AuthorizationPolicies of the units allow, as "principal METHOD path". */
function allowed(): Map<string, string> {
  const got = new Map<string, string>();
  for (const unit of UNITS) {
    const file = `istio/base/${unit}/authorization-policy.yaml`;
    for (const p of objects(file)) {
      if (p?.kind !== "AuthorizationPolicy" || (p.spec?.action ?? "ALLOW") !== "ALLOW") continue;
      for (const rule of p.spec?.rules ?? []) {
        // Every source names callers by principal only: another key in one of them (namespaces,
        // ipBlocks, …) would admit more than the principals say.
        for (const f of rule.from ?? []) {
          assert.deepEqual(
            Object.keys(f.source ?? {}),
            ["principals"],
            `${file} ${p.metadata.name}: sources by principal only`,
          );
        }
        assert.equal(rule.when, undefined, `${file} ${p.metadata.name}: no conditions`);
        const principals: string[] = (rule.from ?? []).flatMap(
          (f: { source?: { principals?: string[] } }) => f.source?.principals ?? [],
        );
        assert.ok(principals.length > 0, `${file} ${p.metadata.name}: a rule without a caller principal allows anyone`);
        assert.ok(
          (rule.to ?? []).length > 0,
          `${file} ${p.metadata.name}: a rule without operations allows everything`,
        );
        for (const t of rule.to as { operation?: { paths?: string[]; methods?: string[] } }[]) {
          const paths = t.operation?.paths ?? [];
          const methods = t.operation?.methods ?? [];
          assert.ok(paths.length > 0, `${file} ${p.metadata.name}: an operation without exact paths allows every RPC`);
          assert.equal(methods.length, 1, `${file} ${p.metadata.name}: one method per operation`);
          for (const path of paths) {
            assert.ok(!/[*]/.test(path), `${file}: ${path} is not an exact path`);
            if (methods[0] === "POST")
              assert.ok(path.startsWith(`/telco.${unit}.`), `${file}: ${path} is not served in namespace ${unit}`);
            for (const principal of principals)
              got.set(`${principal} ${methods[0]} ${path}`, `${file} ${p.metadata.name}`);
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

type Method = DescService["methods"][number];
/** "3s", "1.5s", "500ms" in milliseconds. */
const durationMs = (d: string) =>
  /^\d+(\.\d+)?s$/.test(d) ? Number(d.slice(0, -1)) * 1000 : /^\d+ms$/.test(d) ? Number(d.slice(0, -2)) : Number.NaN;
const IDEMPOTENT = new Set([MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS, MethodOptions_IdempotencyLevel.IDEMPOTENT]);

/**
 * The routes of a VirtualService: each expected RPC routed exactly once, by exact path, to its
 * unit's Service and port; unary calls 10 s and retried only if the proto declares them
 * idempotent; streams without a route timeout and never retried; no route for anything else.
 */
function checkRoutes(file: string, vs: Obj, expected: { path: string; unit: string; method: Method }[]): void {
  assert.equal(vs.kind, "VirtualService", file);
  const routed = new Map<
    string,
    { retries: number; retryOn: string; perTryTimeout: string; timeout: string; host: string; port: number }
  >();
  for (const r of vs.spec.http) {
    assert.equal(r.route.length, 1, `${file} ${r.name}: one destination`);
    const d = r.route[0].destination;
    for (const m of r.match) {
      const path = m.uri?.exact as string;
      assert.ok(path, `${file} ${r.name}: routes match exact paths`);
      assert.ok(!routed.has(path), `${file}: ${path} in two routes`);
      routed.set(path, {
        retries: r.retries?.attempts ?? 2,
        retryOn: r.retries?.retryOn ?? "",
        perTryTimeout: r.retries?.perTryTimeout ?? "",
        timeout: r.timeout ?? "",
        host: d.host,
        port: d.port?.number,
      });
    }
  }
  for (const { path, unit, method: m } of expected) {
    const r = routed.get(path);
    assert.ok(r, `${file}: no route for ${path}`);
    routed.delete(path);
    assert.equal(r.host, `${unit}.${unit}.svc.cluster.local`, `${file}: ${path} goes to its unit`);
    assert.equal(r.port, PORTS[unit], `${file}: ${path} goes to its unit's gRPC port`);
    if (m.methodKind === "unary") {
      assert.equal(r.timeout, "10s", `${file}: ${path} timeout`);
      if (IDEMPOTENT.has(m.idempotency)) {
        assert.ok(r.retries > 0, `${file}: idempotent ${path} is not retried`);
        // gRPC callers see UNAVAILABLE as grpc-status, Connect callers (browsers) as HTTP 503.
        for (const on of ["unavailable", "503", "connect-failure"])
          assert.ok(r.retryOn.split(",").includes(on), `${file}: ${path} retries on ${on}`);
        assert.ok(
          durationMs(r.perTryTimeout) > 0 && durationMs(r.perTryTimeout) < 10_000,
          `${file}: ${path} perTryTimeout`,
        );
      } else assert.equal(r.retries, 0, `${file}: ${path} has side effects and must not be retried`);
    } else {
      assert.equal(r.timeout, "0s", `${file}: the stream ${path} must have no route timeout`);
      assert.equal(r.retries, 0, `${file}: the stream ${path} is not retried`);
    }
  }
  assert.deepEqual([...routed.keys()], [], `${file}: routes for RPCs that are not expected here`);
}

describe("the mesh's routes against the contracts", () => {
  it("routes every RPC of a unit once, retries exactly the ones declared idempotent, gives streams no timeout", async () => {
    for (const unit of UNITS) {
      const file = `istio/base/${unit}/virtual-service.yaml`;
      const vs = objects(file)[0] as Obj;
      assert.deepEqual(vs.spec.hosts, [`${unit}.${unit}.svc.cluster.local`], `${file}: hosts`);
      assert.equal(vs.spec.gateways, undefined, `${file}: applies to the sidecars (the mesh)`);
      const expected = (await servicesOf(unit)).flatMap((s) =>
        s.methods.map((method) => ({ path: `/${s.typeName}/${method.name}`, unit, method })),
      );
      checkRoutes(file, vs, expected);
    }
  });
});

describe("the edge (istio/base/gateway)", () => {
  it("the Gateway selects the gateway pods; its VirtualService routes exactly the RPCs people use, with the mesh's rules", async () => {
    const [gw] = objects("istio/base/gateway/gateway.yaml");
    assert.equal(gw?.kind, "Gateway");
    const deployment = objects("deploy/k8s/base/gateway/deployment.yaml")[0] as Obj;
    const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(gw?.spec.selector as Record<string, string>))
      assert.equal(podLabels[k], v, `the Gateway's selector ${k}=${v} matches the gateway pods`);
    assert.equal(deployment.spec.template.spec.serviceAccountName, GATEWAY.split("/").pop(), "the gateway's identity");
    assert.equal(deployment.metadata.namespace, GATEWAY.split("/")[2], "the gateway's namespace");
    const vs = objects("istio/base/gateway/virtual-service.yaml")[0] as Obj;
    assert.deepEqual(vs.spec.gateways, [`${gw?.metadata.namespace}/${gw?.metadata.name}`], "bound to the Gateway");
    const expected = [];
    for (const unit of UNITS)
      for (const r of await peoplesRpcs(unit)) expected.push({ path: r.path, unit, method: r.method });
    assert.ok(expected.length > 20, `${expected.length} RPCs for people`);
    checkRoutes("istio/base/gateway/virtual-service.yaml", vs, expected);
  });

  it("refuses every RPC without a valid token at the edge, except the open ones, and checks tokens as the code signs them", async () => {
    const [deny, ...others] = objects("istio/base/gateway/authorization-policy.yaml");
    assert.equal(others.length, 0);
    assert.equal(deny?.kind, "AuthorizationPolicy");
    assert.equal(deny?.spec.action, "DENY");
    assert.deepEqual(deny?.spec.selector.matchLabels, { istio: "gateway" });
    // The whole rule, so that a narrowing (a method, a host, a port, a condition) fails too: it
    // would let requests without a token through.
    assert.deepEqual(
      deny?.spec.rules,
      [
        {
          from: [{ source: { notRequestPrincipals: [`${ISSUER}/*`] } }],
          to: [{ operation: { paths: ["/telco.*"], notPaths: [...OPEN_METHODS].map((m) => `/${m}`) } }],
        },
      ],
      "denies every RPC without a verified token of the domain unit's, but the open methods (services/kit/src/auth.ts)",
    );

    // One RequestAuthentication applies to the gateway (another would add issuers it trusts).
    const rendered = parseAllDocuments(
      execFileSync("kubectl", ["kustomize", join(ROOT, "istio")], { encoding: "utf8" }),
    )
      .map((d) => d.toJS() as Obj)
      .filter((o) => o?.kind === "RequestAuthentication");
    assert.equal(rendered.length, 1, "one RequestAuthentication in the mesh");
    const [ra] = objects("istio/base/gateway/request-authentication.yaml");
    assert.equal(ra?.kind, "RequestAuthentication");
    assert.deepEqual(ra?.spec.selector.matchLabels, { istio: "gateway" });
    assert.equal(ra?.spec.jwtRules.length, 1);
    const [jwt] = ra?.spec.jwtRules ?? [];
    assert.equal(jwt.issuer, ISSUER, "the issuer of the domain unit's tokens");
    assert.deepEqual(jwt.audiences, [AUDIENCE], "their audience");
    assert.equal(jwt.forwardOriginalToken, true, "the units need the token too (they authorise by its role and lines)");
    assert.equal(
      jwt.jwksUri,
      `http://domain.domain.svc.cluster.local:${PORTS.domain}${JWKS_PATH}`,
      "the domain unit's key set",
    );
    // Istio's default has istiod fetch the key set; istiod is outside the mesh and STRICT mTLS
    // would refuse it. The gateway's Envoy fetches it when istiod runs with this setting.
    const values = parseAllDocuments(readFileSync(join(ROOT, "istio/install/istiod-values.yaml"), "utf8"))[0]?.toJS();
    assert.ok(
      ["hybrid", "envoy", "true"].includes(values?.pilot?.env?.PILOT_JWT_ENABLE_REMOTE_JWKS),
      "istio/install/istiod-values.yaml: PILOT_JWT_ENABLE_REMOTE_JWKS lets Envoy fetch a mesh-internal key set",
    );
    // And the domain unit lets exactly the fetchers GET it (the allow test above checks the rule).
    assert.deepEqual(
      jwksFetchers().map((f) => `${f.principal} ${f.host}:${f.port}${f.path}`),
      [`${GATEWAY} domain.domain.svc.cluster.local:${PORTS.domain}${JWKS_PATH}`],
    );
  });
});
