/**
 * The CI/CD workflows (.github/workflows): one per unit, triggered by path filters on what the
 * unit is built from, each calling the one reusable pipeline with its unit; and everything they
 * name exists: paths in the filters, scripts and files the steps run, the Dockerfile and overlay
 * they build and deploy, the test files they run.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { ROOT } from "./support/processes.js";

const UNITS = ["usage", "message", "domain", "batch"];
const DIR = join(ROOT, ".github/workflows");
// biome-ignore lint/suspicious/noExplicitAny: untyped YAML
const load = (f: string) => parse(readFileSync(join(DIR, f), "utf8")) as any;
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };

/** The fixed part of a path pattern (up to the first glob character) exists. */
function patternExists(p: string): boolean {
  const fixed = p.split(/[*?[{]/)[0]?.replace(/\/$/, "") ?? "";
  return fixed === "" || existsSync(join(ROOT, fixed));
}

describe("CI/CD workflows", () => {
  it("one workflow per unit, on pushes to main and pull requests touching what the unit is built from", () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith(".yml"));
    for (const unit of UNITS) {
      assert.ok(files.includes(`${unit}.yml`), `.github/workflows/${unit}.yml`);
      const w = load(`${unit}.yml`);
      assert.deepEqual(w.on.push.branches, ["main"]);
      assert.deepEqual(w.on.push.paths, w.on.pull_request.paths, `${unit}: the same filters for pushes and PRs`);
      for (const must of [`services/${unit}/**`, "services/kit/**", `proto/telco/${unit}/**`, "package-lock.json"]) {
        assert.ok(w.on.push.paths.includes(must), `${unit}.yml: filters on ${must}`);
      }
      for (const p of w.on.push.paths as string[])
        assert.ok(patternExists(p), `${unit}.yml: path filter ${p} names nothing`);
      const jobs = Object.values(w.jobs) as { uses?: string; with?: Record<string, string> }[];
      assert.equal(jobs.length, 1, `${unit}.yml: one job, the shared pipeline`);
      assert.equal(jobs[0]?.uses, "./.github/workflows/unit.yml");
      assert.equal(jobs[0]?.with?.unit, unit);
    }
  });

  it("the shared pipeline checks, tests, builds and deploys with files and scripts that exist, for every unit", () => {
    const w = load("unit.yml");
    assert.ok(w.on.workflow_call.inputs.unit.required, "input unit");
    assert.deepEqual(Object.keys(w.jobs), ["check", "test", "image", "deploy"]);
    assert.equal(w.jobs.deploy.if.includes("refs/heads/main"), true, "deploys from main only");
    const steps = Object.values(w.jobs).flatMap(
      (j) => (j as { steps: { run?: string; uses?: string; with?: Obj }[] }).steps,
    );
    for (const s of steps) {
      if (s.uses) assert.match(s.uses, /^[\w-]+\/[\w-]+@v\d+$/, `action ${s.uses} pinned to a major version`);
    }
    for (const unit of UNITS) {
      const sub = (t: string) => t.replaceAll(`\${{ inputs.unit }}`, unit);
      for (const s of steps) {
        for (const v of Object.values(s.with ?? {})) {
          if (typeof v === "string" && /Dockerfile/.test(v))
            assert.ok(existsSync(join(ROOT, sub(v))), `${sub(v)} exists`);
        }
        if (!s.run) continue;
        const run = sub(s.run);
        for (const m of run.matchAll(/npm run ([\w:-]+)/g)) assert.ok(pkg.scripts[m[1] as string], `npm run ${m[1]}`);
        for (const m of run.matchAll(/node (scripts\/\S+)/g))
          assert.ok(existsSync(join(ROOT, m[1] as string)), `${m[1]} exists`);
        for (const m of run.matchAll(/\bcd (\S+)/g))
          assert.ok(existsSync(join(ROOT, m[1] as string)), `cd ${m[1]}: exists`);
        const t = /npm test -- (.*)/.exec(run);
        if (t) {
          for (const arg of (t[1] as string).split(/\s+/).filter((a) => a && !a.startsWith("--"))) {
            assert.ok(patternExists(arg), `npm test runs ${arg}, which names nothing`);
            if (!/[*?]/.test(arg)) assert.ok(existsSync(join(ROOT, arg)), `${arg} exists`);
          }
        }
      }
    }
  });
});

describe("the edge's workflow (gateway.yml)", () => {
  it("checks the manifests and mesh policy and deploys the mesh and the gateway namespace, on what they are made of", () => {
    const w = load("gateway.yml");
    assert.deepEqual(w.on.push.branches, ["main"]);
    assert.deepEqual(w.on.push.paths, w.on.pull_request.paths, "the same filters for pushes and PRs");
    for (const must of ["deploy/k8s/base/gateway/**", "istio/**"])
      assert.ok(w.on.push.paths.includes(must), `gateway.yml: filters on ${must}`);
    for (const p of w.on.push.paths as string[])
      assert.ok(patternExists(p), `gateway.yml: path filter ${p} names nothing`);
    const runs = (w.jobs.check.steps as { run?: string }[]).map((s) => s.run ?? "").join("\n");
    for (const t of ["test/manifests.test.ts", "test/mesh-policy.test.ts"])
      assert.ok(runs.includes(t), `checks with ${t}`);
    assert.ok(w.jobs.deploy.if.includes("refs/heads/main"), "deploys from main only");
    const deploy = (w.jobs.deploy.steps as { run?: string }[]).map((s) => s.run ?? "").join("\n");
    assert.match(deploy, /kubectl apply -k istio\/production/);
    assert.match(deploy, /render-unit\.mjs gateway\b/);
  });
});

describe("every workflow", () => {
  it("renders and applies only kustomizations and scripts that exist", () => {
    for (const f of readdirSync(DIR).filter((x) => x.endsWith(".yml"))) {
      const text = readFileSync(join(DIR, f), "utf8");
      for (const m of text.matchAll(/kubectl (?:apply -k|kustomize) (\S+)/g)) {
        assert.ok(existsSync(join(ROOT, m[1] as string, "kustomization.yaml")), `${f}: ${m[1]} is no kustomization`);
      }
      for (const m of text.matchAll(/node (scripts\/\S+)/g))
        assert.ok(existsSync(join(ROOT, m[1] as string)), `${f}: ${m[1]} exists`);
      for (const m of text.matchAll(/node --import tsx --test ((?:\S+\.ts ?)+)/g)) {
        for (const t of (m[1] as string).trim().split(" ")) assert.ok(existsSync(join(ROOT, t)), `${f}: ${t} exists`);
      }
    }
  });
});

// biome-ignore lint/suspicious/noExplicitAny: untyped YAML
type Obj = Record<string, any>;

describe("the deploy step's rendering of one unit (scripts/render-unit.mjs)", () => {
  it("keeps the unit's namespace only and sets its image in every container, init container and CronJob", () => {
    const rendered = execFileSync("kubectl", ["kustomize", join(ROOT, "deploy/k8s/overlays/production")], {
      encoding: "utf8",
    });
    const ref = "ghcr.io/acme/telco-batch:0123abc";
    const out = execFileSync(process.execPath, [join(ROOT, "scripts/render-unit.mjs"), "batch", ref], {
      input: rendered,
      encoding: "utf8",
    });
    const objs = parseAllDocuments(out).map((d) => d.toJS() as Obj);
    assert.equal(objs[0]?.kind, "Namespace", "the Namespace comes first");
    for (const o of objs) {
      assert.equal(
        o.kind === "Namespace" ? o.metadata.name : o.metadata.namespace,
        "batch",
        `${o.kind} ${o.metadata.name}`,
      );
    }
    const kinds = new Set(objs.map((o) => o.kind));
    for (const k of ["Deployment", "CronJob", "Service", "ConfigMap", "ServiceAccount"]) assert.ok(kinds.has(k), k);
    const images = objs.flatMap((o) => {
      const pod = o.kind === "CronJob" ? o.spec.jobTemplate.spec.template.spec : o.spec?.template?.spec;
      return [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])].map((c: Obj) => c.image as string);
    });
    assert.ok(images.length >= 3, `${images.length} containers (Deployment, its init container, the CronJob)`);
    assert.deepEqual([...new Set(images)], [ref]);
    const bad = spawnSync(process.execPath, [join(ROOT, "scripts/render-unit.mjs"), "nope", ref], {
      input: rendered,
      encoding: "utf8",
    });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /no Deployment in namespace nope/);
  });
});
