/**
 * Static checks of the cluster files: the Kubernetes manifests (deploy/), the Istio configuration
 * (istio/), the Dockerfiles and the Tiltfile. No cluster and no Docker engine are needed; where
 * `kubectl` is installed, the overlays are also rendered with its built-in kustomize.
 *
 *   node --import tsx --test test/manifests.test.ts
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { ManifestSchemas } from "./support/k8s-schema.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const rel = (p: string) => relative(ROOT, p).split("\\").join("/");
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");
const exists = (p: string) => existsSync(join(ROOT, p));

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML
type Obj = Record<string, any>;
interface Doc {
  file: string;
  obj: Obj;
}

/** The units: the services with a main.ts (services/kit is a library). */
const UNITS = readdirSync(join(ROOT, "services"))
  .filter((d) => existsSync(join(ROOT, "services", d, "src", "main.ts")))
  .sort();

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(name)) out.push(rel(p));
    }
  };
  if (existsSync(join(ROOT, dir))) walk(join(ROOT, dir));
  return out;
}

function parseYaml(text: string, where: string): Obj[] {
  const docs: Obj[] = [];
  for (const d of parseAllDocuments(text)) {
    if ("errors" in d && d.errors.length > 0) throw new Error(`${where}: ${d.errors.map((e) => e.message).join("; ")}`);
    const js = d.toJS();
    if (js !== null && js !== undefined) docs.push(js as Obj);
  }
  return docs;
}

/**
 * The observability stack's own files (Prometheus, Loki, Tempo, Grafana, compose) run on a VM
 * outside the cluster and are checked by test/observability-config.test.ts; of it only Alloy
 * (a DaemonSet) is a cluster manifest.
 */
const VM_STACK = (f: string) => f.startsWith("deploy/observability/") && !f.startsWith("deploy/observability/alloy/");
/** Values of Istio's Helm charts (how istiod is installed), not manifests; test/mesh-policy.test.ts reads them. */
const INSTALL_VALUES = (f: string) => f.startsWith("istio/install/");
const FILES = [
  ...yamlFiles("deploy").filter((f) => !VM_STACK(f)),
  ...yamlFiles("istio").filter((f) => !INSTALL_VALUES(f)),
];
const DOCS: Doc[] = FILES.flatMap((file) => parseYaml(read(file), file).map((obj) => ({ file, obj })));
const isKustomization = (d: Doc) => d.obj.kind === "Kustomization";
/** The objects (everything but the kustomizations; overlay patches are inline). */
const OBJECTS = DOCS.filter((d) => !isKustomization(d));
const ofKind = (kind: string) => OBJECTS.filter((d) => d.obj.kind === kind);
const find = (kind: string, namespace: string | undefined, name: string) =>
  OBJECTS.find((d) => d.obj.kind === kind && d.obj.metadata?.namespace === namespace && d.obj.metadata?.name === name);
const where = (d: Doc) => `${d.file}: ${d.obj.kind} ${d.obj.metadata?.namespace ?? ""}/${d.obj.metadata?.name}`;
/** The edge: the Istio ingress gateway's namespace (its pods are Istio's proxy, not a unit). */
const GATEWAY_NS = "gateway";
const unitDeployments = () => ofKind("Deployment").filter((d) => UNITS.includes(d.obj.metadata.namespace));

/** Each secret setting, and how a unit's main.ts shows that it uses it. */
const SECRET_USE: Record<string, RegExp> = {
  DATABASE_URL: /\b(createKnex|postgresFor)\(/,
  REDIS_URL: /\bcreateRedis(Client)?\(/,
  SERVICE_SIGNING_KEY: /\bServiceTokens\.create\(/,
  AUTH_SIGNING_KEY: /\bTokenSigner\.fromPrivateKey\(/,
  DOMAIN_PII_KEYS: /\bparseKeyRing\([^)]*\bDOMAIN_PII_KEYS\b/,
  DOMAIN_BLIND_INDEX_KEY: /\bparseKeyRing\([^)]*\bDOMAIN_BLIND_INDEX_KEY\b/,
};

/** The text of every TypeScript module under services/<unit>/src, migrations aside. */
function unitSources(unit: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        if (name !== "migrations") walk(p);
      } else if (name.endsWith(".ts")) out.push(readFileSync(p, "utf8"));
    }
  };
  walk(join(ROOT, "services", unit, "src"));
  return out.join("\n");
}

/**
 * A placeholder for each setting a Deployment takes from a ConfigMap or a Secret by key (their
 * values are not in the repository), in the form the unit's config loader accepts.
 */
const PLACEHOLDERS: Record<string, string> = {
  DATABASE_URL: "postgres://u@db:5432/telco",
  REDIS_URL: "redis://r:6379",
  AUTH_VERIFY_KEY: generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString(),
  DOMAIN_PII_KEYS: `k1:${Buffer.alloc(32).toString("base64")}`,
  DOMAIN_PII_ACTIVE_KEY: "k1",
  DOMAIN_BLIND_INDEX_KEY: Buffer.alloc(32).toString("base64"),
};

/** Settings that come from a ConfigMap outside the repository (made by operators; locally by the Tiltfile). */
const SHARED_CONFIG: Record<string, { configMap: string }> = {
  AUTH_VERIFY_KEY: { configMap: "telco-auth" },
};

const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"]);

const selects = (selector: Obj | undefined, labels: Obj | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** "5s", "1m30s" → milliseconds (the Go durations Istio uses; enough of them for these files). */
function durationMs(s: string): number {
  const m = /^(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(String(s).trim());
  assert.ok(m && (m[1] || m[2]), `not a duration: ${s}`);
  return (Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 1000;
}

// ---------------------------------------------------------------- contracts

/** Every RPC of proto/telco as its HTTP path, /<package>.<Service>/<Method>. */
function rpcPaths(): Set<string> {
  const paths = new Set<string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".proto")) {
        const text = readFileSync(p, "utf8").replace(/\/\/.*$/gm, "");
        const pkg = /^\s*package\s+([\w.]+)\s*;/m.exec(text)?.[1];
        assert.ok(pkg, `${rel(p)} has no package`);
        const parts = text.split(/\bservice\s+(\w+)\s*\{/);
        for (let i = 1; i < parts.length; i += 2) {
          for (const m of (parts[i + 1] ?? "").matchAll(/\brpc\s+(\w+)\s*\(/g))
            paths.add(`/${pkg}.${parts[i]}/${m[1]}`);
        }
      }
    }
  };
  walk(join(ROOT, "proto", "telco"));
  return paths;
}

// ---------------------------------------------------------------- Dockerfiles and Tiltfile

interface Dockerfile {
  unit: string;
  path: string;
  workdir: string | undefined;
  copySources: string[];
  cmd: string[];
  expose: number[];
  user: string | undefined;
}

function dockerfile(unit: string): Dockerfile {
  const path = `services/${unit}/Dockerfile`;
  const lines = read(path)
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const out: Dockerfile = { unit, path, workdir: undefined, copySources: [], cmd: [], expose: [], user: undefined };
  for (const line of lines) {
    const [instr = "", ...rest] = line.split(/\s+/);
    const args = rest.filter((a) => !a.startsWith("--"));
    const from = rest.some((a) => a.startsWith("--from="));
    switch (instr.toUpperCase()) {
      case "WORKDIR":
        out.workdir = args[0];
        break;
      case "COPY":
      case "ADD":
        // Sources from the build context only (a --from stage is not the context).
        if (!from) out.copySources.push(...args.slice(0, -1).map((s) => posix.normalize(s)));
        break;
      case "CMD":
        out.cmd = JSON.parse(line.slice(3).trim()) as string[];
        break;
      case "EXPOSE":
        out.expose.push(...args.map((a) => Number.parseInt(a, 10)));
        break;
      case "USER":
        out.user = args[0];
        break;
    }
  }
  return out;
}

interface Tiltfile {
  text: string;
  units: Map<string, number>;
  /** SECRET_KEYS: unit → the keys of its telco-<unit>-secrets Secret (units with no keys left out). */
  secretKeys: Map<string, string[]>;
  /** SECRET_VALUES: key → the environment variable its value is read from. */
  secretEnv: Map<string, string>;
  /** Literal paths after expanding {unit} for every unit. */
  dockerfiles: string[];
  only: string[];
  syncs: { from: string; to: string }[];
  kustomizeDirs: string[];
  deps: string[];
  objectSelectors: string[];
  /** The objects made with k8s_yaml(encode_yaml({…})) in a `for unit in …` loop, one per namespace. */
  objects: TiltObject[];
}

interface TiltObject {
  kind: string;
  name: string;
  namespace: string;
  /** data keys → the expression of the value (a literal dict only; a comprehension gives none). */
  data: Map<string, string>;
}

/** The text from `open` (an opening bracket) to its closing bracket, skipping quoted strings. */
function balanced(text: string, open: number): string {
  const pairs: Record<string, string> = { "(": ")", "[": "]", "{": "}" };
  const stack: string[] = [];
  for (let i = open; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === "'" || ch === '"') {
      const end = text.indexOf(ch, i + 1);
      i = end < 0 ? text.length : end;
    } else if (pairs[ch]) stack.push(pairs[ch] as string);
    else if (ch === stack[stack.length - 1]) {
      stack.pop();
      if (stack.length === 0) return text.slice(open, i + 1);
    }
  }
  throw new Error(`Tiltfile: unbalanced ${text[open]} at ${open}`);
}

/** Objects a Tiltfile `for <var>[, …] in <iterable>:` loop makes, for every unit the loop visits. */
function tiltObjects(text: string, loopUnits: (iterable: string) => string[]): TiltObject[] {
  const out: TiltObject[] = [];
  for (const loop of text.matchAll(
    /^for\s+(\w+)(?:\s*,\s*\w+)?\s+in\s+([\w.()]+)\s*:[ \t]*\n((?:(?:[ \t]+.*)?\n)*)/gm,
  )) {
    const [, variable = "", iterable = "", body = ""] = loop;
    for (const m of body.matchAll(/k8s_yaml\(\s*encode_yaml\(\s*\{/g)) {
      const dict = balanced(body, (m.index ?? 0) + m[0].length - 1);
      const kind = /'kind'\s*:\s*'(\w+)'/.exec(dict)?.[1] ?? "";
      const meta = /'metadata'\s*:\s*\{([^}]*)\}/.exec(dict)?.[1] ?? "";
      const name = /'name'\s*:\s*'([^']*)'/.exec(meta)?.[1] ?? "";
      const ns = /'namespace'\s*:\s*(\w+|'[^']*')/.exec(meta)?.[1] ?? "";
      const dataBlock = /'(?:data|stringData)'\s*:\s*(\{[^}]*\})/.exec(dict)?.[1] ?? "";
      const data = new Map(
        [...dataBlock.matchAll(/'([\w-]+)'\s*:\s*([^,}]+)/g)].map((d) => [d[1] as string, (d[2] as string).trim()]),
      );
      const units = ns === variable ? loopUnits(iterable) : [ns.replace(/^'|'$/g, "")];
      for (const u of units) out.push({ kind, name: name.replaceAll(`{${variable}}`, u), namespace: u, data });
    }
  }
  return out;
}

function tiltfile(): Tiltfile {
  const text = read("Tiltfile").replace(/#.*$/gm, "");
  const units = new Map<string, number>();
  const unitsBlock = /\bUNITS\s*=\s*\{([^}]*)\}/.exec(text)?.[1] ?? "";
  for (const m of unitsBlock.matchAll(/'([\w-]+)'\s*:\s*(\d+)/g)) units.set(m[1] as string, Number(m[2]));
  const secretKeys = new Map<string, string[]>();
  const secretKeysBlock = /\bSECRET_KEYS\s*=\s*\{([^}]*)\}/.exec(text)?.[1] ?? "";
  for (const m of secretKeysBlock.matchAll(/'([\w-]+)'\s*:\s*\[([^\]]*)\]/g)) {
    const keys = [...(m[2] as string).matchAll(/'([\w-]+)'/g)].map((k) => k[1] as string);
    if (keys.length > 0) secretKeys.set(m[1] as string, keys);
  }
  const secretEnv = new Map<string, string>();
  const secretValuesBlock = /\bSECRET_VALUES\s*=\s*\{([\s\S]*?)\n\}/.exec(text)?.[1] ?? "";
  for (const m of secretValuesBlock.matchAll(/'([\w-]+)'\s*:\s*os\.getenv\(\s*'([\w-]+)'/g))
    secretEnv.set(m[1] as string, m[2] as string);
  const strings = (s: string) => [...s.matchAll(/'([^']*)'/g)].map((m) => m[1] as string);
  const expand = (s: string) => (s.includes("{unit}") ? [...units.keys()].map((u) => s.replaceAll("{unit}", u)) : [s]);
  const all = (re: RegExp) => [...text.matchAll(re)].flatMap((m) => strings(m[1] as string)).flatMap(expand);
  const syncs = [...text.matchAll(/\bsync\(\s*'([^']*)'[^,]*,\s*'([^']*)'/g)].flatMap((m) =>
    [...units.keys()].map((u) => ({
      from: (m[1] as string).replaceAll("{unit}", u),
      to: (m[2] as string).replaceAll("{unit}", u),
    })),
  );
  return {
    text,
    units,
    secretKeys,
    secretEnv,
    dockerfiles: all(/\bdockerfile\s*=\s*('[^']*')/g),
    only: all(/\bonly\s*=\s*\[([^\]]*)\]/g),
    syncs,
    kustomizeDirs: all(/\bkustomize\(\s*('[^']*')/g),
    deps: all(/\bdeps\s*=\s*\[([^\]]*)\]/g),
    // objects.append(…) sits under `if SECRET_KEYS.get(unit)`: those selectors expand over those units only.
    objectSelectors: all(/\bobjects\s*=\s*\[([^\]]*)\]/g)
      .concat(all(/\bCALLER_POLICIES\s*=\s*\{([^}]*)\}/g).filter((s) => s.includes(":")))
      .concat(
        [...text.matchAll(/objects\.append\(\s*('[^']*')/g)]
          .flatMap((m) => strings(m[1] as string))
          .flatMap((s) => [...secretKeys.keys()].map((u) => s.replaceAll("{unit}", u))),
      ),
    objects: tiltObjects(text, (iterable) => {
      if (/^UNITS(\.(keys|items)\(\))?$/.test(iterable)) return [...units.keys()];
      // SECRET_KEYS skips (`continue`) the units without keys.
      if (/^SECRET_KEYS(\.(keys|items)\(\))?$/.test(iterable)) return [...secretKeys.keys()];
      throw new Error(`Tiltfile: the test does not know the units of the loop over ${iterable}`);
    }),
  };
}

/**
 * Whether `lhs` (a regex source) is followed by os.getenv('TELCO_CLUSTER_<key>', '') or <f>('<key>'),
 * where <f> is a function of the Tiltfile that prints the development key <key> with a quiet
 * local(…): `node -e` importing scripts/lib/dev-keys.mjs (which exists and makes <key>) and
 * writing devKeys()[key], the key passed as the script's argument.
 */
function devKeyFallback(text: string, lhs: string, key: string): boolean {
  const m = new RegExp(
    `${lhs}os\\.getenv\\(\\s*'TELCO_CLUSTER_${key}'\\s*,\\s*''\\s*\\)\\s*or\\s*(\\w+)\\(\\s*'${key}'\\s*\\)`,
  ).exec(text);
  const fn = m?.[1];
  assert.ok(fn, `Tiltfile: no os.getenv('TELCO_CLUSTER_${key}', '') or <function>('${key}')`);
  const def = new RegExp(`^def\\s+${fn}\\(\\s*(\\w+)\\s*\\):\\n((?:(?:[ \\t]+.*)?\\n)*)`, "m").exec(text);
  assert.ok(def, `Tiltfile: no def ${fn}(key)`);
  const [, param = "", body = ""] = def;
  const call = /\blocal\(/.exec(body);
  assert.ok(call, `Tiltfile: ${fn}() runs no local(…)`);
  const local = balanced(body, call.index + call[0].length - 1);
  assert.match(local, /\bquiet\s*=\s*True\b/, `Tiltfile: ${fn}(): local(…) must be quiet=True`);
  assert.match(local, /^\(\s*\[\s*'node'\s*,\s*'-e'\s*,/, `Tiltfile: ${fn}(): local(['node', '-e', …])`);
  assert.match(local, new RegExp(`,\\s*${param}\\s*,?\\s*\\]`), `Tiltfile: ${fn}(): passes ${param} to the script`);
  const script = /import\(\s*'\.\/([^']+)'\s*\)/.exec(local)?.[1] ?? "";
  assert.ok(script && exists(script), `Tiltfile: ${fn}() imports ${script || "nothing"}, which does not exist`);
  assert.match(read(script), /export function devKeys\b/, `${script}: exports no devKeys`);
  assert.match(read(script), new RegExp(`\\b${key}:`), `${script}: makes no ${key}`);
  assert.match(
    local,
    /process\.argv\[1\][\s\S]*delete process\.env\[\w+\][\s\S]*devKeys\([^)]*\)[^[]*\[\w+\]/,
    `Tiltfile: ${fn}() must print devKeys()[key] with key unset in its environment (devKeys leaves out what is set)`,
  );
  return true;
}

const underAny = (path: string, roots: string[]) =>
  roots.some((r) => path === r || path.startsWith(`${r.replace(/\/$/, "")}/`));

// ================================================================ tests

test("every YAML file parses; every object has apiVersion, kind and metadata.name, and is unique", () => {
  assert.ok(FILES.length > 0, "no YAML files under deploy/ and istio/");
  for (const unit of UNITS) {
    assert.ok(
      FILES.some((f) => f.startsWith(`deploy/k8s/base/${unit}/`)),
      `unit ${unit} has no deploy/k8s/base/${unit}/`,
    );
  }
  const seen = new Map<string, string>();
  for (const d of DOCS) {
    assert.equal(typeof d.obj.apiVersion, "string", `${d.file}: a document without apiVersion`);
    assert.equal(typeof d.obj.kind, "string", `${d.file}: a document without kind`);
    if (isKustomization(d)) {
      assert.equal(d.obj.apiVersion, "kustomize.config.k8s.io/v1beta1", `${d.file}: kustomization apiVersion`);
      continue;
    }
    assert.equal(typeof d.obj.metadata?.name, "string", `${d.file}: ${d.obj.kind} without metadata.name`);
    if (!CLUSTER_SCOPED.has(d.obj.kind)) {
      assert.equal(typeof d.obj.metadata?.namespace, "string", `${where(d)}: namespaced object without namespace`);
    }
    const id = `${d.obj.kind}/${d.obj.metadata?.namespace ?? ""}/${d.obj.metadata.name}`;
    assert.ok(!seen.has(id), `${id} is defined twice: ${seen.get(id)} and ${d.file}`);
    seen.set(id, d.file);
  }
});

test("every kustomization lists files that exist, and every manifest is listed by one", () => {
  const listed = new Set<string>();
  for (const d of DOCS.filter(isKustomization)) {
    const dir = posix.dirname(d.file);
    assert.notEqual(posix.basename(d.file), "kustomization.yml", `${d.file}: name it kustomization.yaml`);
    listed.add(d.file);
    const refs: string[] = [...(d.obj.resources ?? []), ...(d.obj.components ?? [])];
    for (const p of d.obj.patches ?? []) if (p.path) refs.push(p.path);
    for (const r of refs) {
      const p = posix.normalize(posix.join(dir, r));
      assert.ok(exists(p), `${d.file}: ${r} does not exist`);
      if (statSync(join(ROOT, p)).isDirectory()) {
        assert.ok(exists(`${p}/kustomization.yaml`), `${d.file}: ${r} is a directory without kustomization.yaml`);
      } else {
        listed.add(p);
      }
    }
  }
  for (const file of FILES)
    assert.ok(listed.has(file), `${file} is in no kustomization.yaml (kustomize would skip it)`);
  assert.ok(exists("deploy/k8s/base/kustomization.yaml"), "deploy/k8s/base/kustomization.yaml is missing");
  const base = parseYaml(read("deploy/k8s/base/kustomization.yaml"), "base")[0] ?? {};
  for (const unit of UNITS) assert.ok(base.resources?.includes(unit), `the base kustomization does not list ${unit}`);
});

test("every unit's namespace has sidecar injection and its own ServiceAccount", () => {
  for (const unit of UNITS) {
    const ns = find("Namespace", undefined, unit);
    assert.ok(ns, `no Namespace ${unit}`);
    assert.equal(ns.obj.metadata.labels?.["istio-injection"], "enabled", `${where(ns)}: istio-injection`);
    assert.ok(find("ServiceAccount", unit, unit), `no ServiceAccount ${unit}/${unit}`);
  }
});

test("every Deployment: grpc port behind a Service, grpc probes, locked-down container, drain fits the grace period", async () => {
  assert.deepEqual(
    ofKind("Deployment")
      .map((d) => `${d.obj.metadata.namespace}/${d.obj.metadata.name}`)
      .sort(),
    [...UNITS, GATEWAY_NS].map((u) => `${u}/${u}`).sort(),
    "one Deployment per unit, and the gateway",
  );
  const deployments = unitDeployments();
  for (const d of deployments) {
    const unit = d.obj.metadata.name as string;
    const ns = d.obj.metadata.namespace as string;
    const spec = d.obj.spec.template.spec as Obj;
    const podLabels = d.obj.spec.template.metadata?.labels as Obj;
    assert.ok(selects(d.obj.spec.selector?.matchLabels, podLabels), `${where(d)}: selector does not match the pod`);
    assert.equal(spec.serviceAccountName, unit, `${where(d)}: serviceAccountName`);
    assert.ok(find("ServiceAccount", ns, spec.serviceAccountName), `${where(d)}: its ServiceAccount is missing`);
    assert.equal(spec.containers.length, 1, `${where(d)}: one container`);
    const c = spec.containers[0] as Obj;
    assert.equal(c.image, `telco/${unit}`, `${where(d)}: image`);

    // The port, its Service and the probes.
    const grpcPorts = (c.ports ?? []).filter((p: Obj) => p.name === "grpc");
    assert.equal(grpcPorts.length, 1, `${where(d)}: the container has no port named grpc`);
    const port = grpcPorts[0].containerPort as number;
    const services = ofKind("Service").filter(
      (s) => s.obj.metadata.namespace === ns && selects(s.obj.spec.selector, podLabels),
    );
    assert.ok(services.length > 0, `${where(d)}: no Service selects its pods`);
    for (const s of services) {
      const sp = (s.obj.spec.ports ?? []).find((p: Obj) => p.targetPort === "grpc" || p.targetPort === port);
      assert.ok(sp, `${where(s)}: no port targets the grpc container port`);
      assert.equal(sp.name, "grpc", `${where(s)}: the port must be named grpc`);
      assert.equal(sp.appProtocol, "grpc", `${where(s)}: appProtocol must be grpc`);
    }
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      assert.equal(c[probe]?.grpc?.port, port, `${where(d)}: ${probe} must be a grpc probe on port ${port}`);
    }

    // Security.
    const sc = { ...(spec.securityContext ?? {}), ...(c.securityContext ?? {}) } as Obj;
    assert.equal(sc.runAsNonRoot, true, `${where(d)}: runAsNonRoot`);
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${where(d)}: readOnlyRootFilesystem`);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${where(d)}: allowPrivilegeEscalation`);
    assert.ok(c.securityContext?.capabilities?.drop?.includes("ALL"), `${where(d)}: capabilities must drop ALL`);
    const tmp = (c.volumeMounts ?? []).find((m: Obj) => m.mountPath === "/tmp");
    assert.ok(tmp, `${where(d)}: no writable /tmp (tsx caches there)`);
    assert.ok(
      (spec.volumes ?? []).some((v: Obj) => v.name === tmp.name && v.emptyDir),
      `${where(d)}: /tmp is not an emptyDir`,
    );

    // Configuration: the ConfigMap is what the unit's own config loader accepts, with no secret in it.
    const cmName = (c.envFrom ?? []).find((e: Obj) => e.configMapRef)?.configMapRef?.name;
    const cm = cmName && find("ConfigMap", ns, cmName);
    assert.ok(cm, `${where(d)}: envFrom a ConfigMap of its namespace`);
    const data = cm.obj.data as Record<string, string>;
    const { spec: configSpec, readConfig } = (await import(`../services/${unit}/src/config.js`)) as {
      spec: Record<string, { secret?: boolean; default?: unknown }>;
      readConfig: (env: Record<string, string | undefined>) => Record<string, unknown>;
    };
    for (const key of Object.keys(data)) {
      assert.ok(key in configSpec, `${where(cm)}: ${key} is not a setting of the ${unit} unit`);
      assert.ok(!configSpec[key]?.secret, `${where(cm)}: ${key} is a secret and belongs in a Secret`);
    }
    // What the Deployment takes by key from a ConfigMap or a Secret (values not in the repository):
    // a placeholder each. A literal env value is used as it is.
    const fromEnv: Record<string, string> = {};
    for (const e of c.env ?? []) {
      assert.ok(e.name in configSpec, `${where(d)}: env ${e.name} is not a setting of the ${unit} unit`);
      const ref = e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef;
      if (ref) {
        assert.ok(ref.name && ref.key, `${where(d)}: env ${e.name} names no ConfigMap/Secret and key`);
        fromEnv[e.name] = PLACEHOLDERS[e.name] ?? `placeholder-${e.name}`;
      } else if (typeof e.value === "string") {
        fromEnv[e.name] = e.value;
      }
    }
    // Every required setting (no default) is provided, by the ConfigMap or by an env ref.
    for (const [key, setting] of Object.entries(configSpec)) {
      if (setting.default !== undefined) continue;
      assert.ok(
        key in data || key in fromEnv,
        `${where(d)}: ${key} is required by the ${unit} unit (no default) but neither ${cmName} nor env provides it`,
      );
    }
    // Settings from a ConfigMap that is not in the repository: from it, by the same key, and not
    // from the unit's own ConfigMap.
    for (const [key, { configMap }] of Object.entries(SHARED_CONFIG)) {
      if (!(key in configSpec)) continue;
      assert.ok(!(key in data), `${where(cm)}: ${key} comes from the ConfigMap ${configMap}, not from ${cmName}`);
      const envs = (c.env ?? []).filter((e: Obj) => e.name === key);
      assert.ok(envs.length <= 1, `${where(d)}: ${key} is set ${envs.length} times`);
      assert.deepEqual(
        envs[0]?.valueFrom?.configMapKeyRef,
        { name: configMap, key },
        `${where(d)}: ${key} from ConfigMap ${configMap}, key ${key}`,
      );
    }
    const config = readConfig({ ...data, ...fromEnv });
    assert.equal(config[`${unit.toUpperCase()}_PORT`], port, `${where(cm)}: ${unit.toUpperCase()}_PORT`);
    assert.equal(config.BIND_HOST, "0.0.0.0", `${where(cm)}: BIND_HOST must be 0.0.0.0 in a cluster`);

    // Every secret setting from the unit's Secret, under the same key, exactly when the unit uses it.
    // What the unit's code uses: main.ts and every module of its src (main wires them).
    const main = unitSources(unit);
    assert.ok(
      !(c.envFrom ?? []).some((e: Obj) => e.secretRef),
      `${where(d)}: envFrom a Secret would hand the unit every key of it; name each secret in env`,
    );
    for (const [key, setting] of Object.entries(configSpec)) {
      if (!setting.secret) continue;
      const use = SECRET_USE[key];
      assert.ok(use, `test: no rule tells whether a unit uses the secret setting ${key} (add it to SECRET_USE)`);
      const envs = (c.env ?? []).filter((e: Obj) => e.name === key);
      assert.ok(envs.length <= 1, `${where(d)}: ${key} is set ${envs.length} times`);
      if (use.test(main)) {
        assert.deepEqual(
          envs[0]?.valueFrom?.secretKeyRef,
          { name: `telco-${unit}-secrets`, key },
          `${where(d)}: ${key} from Secret telco-${unit}-secrets, key ${key}`,
        );
      } else {
        assert.equal(envs[0], undefined, `${where(d)}: the ${unit} unit does not use ${key} (${use}): no ${key}`);
      }
    }
    for (const e of c.env ?? []) {
      assert.ok(
        !configSpec[e.name]?.secret || e.valueFrom?.secretKeyRef,
        `${where(d)}: ${e.name} must come from a Secret`,
      );
    }

    // Graceful termination: longer than the drain and the unit's own shutdown limit; the sidecar
    // outlives the unit's shutdown.
    const graceMs = (spec.terminationGracePeriodSeconds ?? 30) * 1000;
    const drainMs = (config.DRAIN_DELAY_MS as number) + (config.DRAIN_TIMEOUT_MS as number);
    assert.ok(graceMs > drainMs, `${where(d)}: terminationGracePeriodSeconds must exceed the drain (${drainMs} ms)`);
    assert.ok(graceMs > (config.SHUTDOWN_TIMEOUT_MS as number), `${where(d)}: grace period <= SHUTDOWN_TIMEOUT_MS`);
    const proxy = parseYaml(d.obj.spec.template.metadata?.annotations?.["proxy.istio.io/config"] ?? "", "proxy")[0];
    const sidecarMs = proxy?.terminationDrainDuration ? durationMs(proxy.terminationDrainDuration) : 5000;
    assert.ok(sidecarMs >= (config.SHUTDOWN_TIMEOUT_MS as number), `${where(d)}: the sidecar stops before the unit`);
    assert.ok(sidecarMs < graceMs, `${where(d)}: terminationDrainDuration must fit in the grace period`);

    // Resources and the disruption budget.
    for (const k of ["requests", "limits"]) {
      assert.ok(c.resources?.[k]?.cpu && c.resources?.[k]?.memory, `${where(d)}: resources.${k}`);
    }
    assert.ok(
      ofKind("PodDisruptionBudget").some(
        (p) => p.obj.metadata.namespace === ns && selects(p.obj.spec.selector?.matchLabels, podLabels),
      ),
      `${where(d)}: no PodDisruptionBudget`,
    );

    // The container runs what the image runs.
    const df = dockerfile(unit);
    assert.deepEqual(c.args ?? df.cmd, df.cmd, `${where(d)}: args differ from ${df.path}'s CMD`);
    assert.ok(df.expose.includes(port), `${df.path}: EXPOSE ${port}`);
  }
});

test("the ingress gateway: Istio's gateway injection, its own identity, a Service for 80/443, a disruption budget", () => {
  const d = find("Deployment", GATEWAY_NS, "gateway") as Doc;
  assert.ok(d, "no Deployment gateway/gateway");
  const ns = find("Namespace", undefined, GATEWAY_NS);
  assert.equal(ns?.obj.metadata.labels?.["istio-injection"], "enabled", "namespace gateway: istio-injection");
  const tpl = d.obj.spec.template as Obj;
  assert.ok(
    selects(d.obj.spec.selector?.matchLabels, tpl.metadata.labels),
    `${where(d)}: selector does not match the pod`,
  );
  assert.equal(tpl.metadata.annotations?.["inject.istio.io/templates"], "gateway", `${where(d)}: the gateway template`);
  assert.equal(tpl.metadata.labels?.["sidecar.istio.io/inject"], "true", `${where(d)}: injected`);
  assert.equal(
    tpl.spec.serviceAccountName,
    "gateway",
    `${where(d)}: its identity is cluster.local/ns/gateway/sa/gateway`,
  );
  assert.ok(find("ServiceAccount", GATEWAY_NS, "gateway"), "no ServiceAccount gateway/gateway");
  // The injector fills in the proxy only for a container named istio-proxy with image auto.
  const [c, ...more] = tpl.spec.containers as Obj[];
  assert.equal(more.length, 0, `${where(d)}: one container`);
  assert.equal(c?.name, "istio-proxy");
  assert.equal(c?.image, "auto");
  assert.equal(c?.securityContext?.runAsNonRoot, true, `${where(d)}: runAsNonRoot`);
  assert.equal(c?.securityContext?.allowPrivilegeEscalation, false);
  assert.ok(c?.securityContext?.capabilities?.drop?.includes("ALL"));
  for (const k of ["requests", "limits"]) assert.ok(c?.resources?.[k]?.memory, `${where(d)}: resources.${k}`);
  const ports = new Map(((c?.ports ?? []) as Obj[]).map((p) => [p.name, p.containerPort]));
  // The Gateway's servers listen on the container's ports, and the Service reaches them.
  const gw = find("Gateway", GATEWAY_NS, "portal") as Doc;
  for (const server of gw.obj.spec.servers as Obj[]) {
    assert.ok(
      [...ports.values()].includes(server.port.number),
      `${where(gw)}: ${server.port.number} is no container port`,
    );
  }
  const svc = find("Service", GATEWAY_NS, "gateway") as Doc;
  assert.ok(selects(svc.obj.spec.selector, tpl.metadata.labels), `${where(svc)}: selects the gateway pods`);
  const targets = (svc.obj.spec.ports as Obj[]).map((p) => `${p.port}->${p.targetPort}`).sort();
  assert.deepEqual(targets, ["443->https", "80->http"], `${where(svc)}: ports`);
  for (const name of ["http", "https"]) assert.ok(ports.has(name), `${where(d)}: container port ${name}`);
  assert.ok(
    ofKind("PodDisruptionBudget").some(
      (p) => p.obj.metadata.namespace === GATEWAY_NS && selects(p.obj.spec.selector?.matchLabels, tpl.metadata.labels),
    ),
    "no PodDisruptionBudget for the gateway",
  );
  const proxy = parseYaml(tpl.metadata.annotations?.["proxy.istio.io/config"] ?? "", "proxy")[0];
  assert.ok(
    durationMs(proxy?.terminationDrainDuration ?? "5s") < (tpl.spec.terminationGracePeriodSeconds ?? 30) * 1000,
    `${where(d)}: the drain fits in the grace period`,
  );
  // istiod serves the Gateway's certificate (credentialName) only if the gateway may read Secrets.
  const binding = find("RoleBinding", GATEWAY_NS, "gateway") as Doc;
  assert.deepEqual(binding?.obj.subjects, [{ kind: "ServiceAccount", name: "gateway", namespace: GATEWAY_NS }]);
  const role = find("Role", GATEWAY_NS, binding.obj.roleRef.name) as Doc;
  assert.ok(role?.obj.rules.some((r: Obj) => r.resources.includes("secrets") && r.verbs.includes("get")));
});

test("the monthly billing CronJob: 02:00 Asia/Seoul on the 1st, never two at once, the batch CLI with the batch unit's secrets", () => {
  const jobs = ofKind("CronJob");
  assert.deepEqual(
    jobs.map((j) => `${j.obj.metadata.namespace}/${j.obj.metadata.name}`),
    ["batch/monthly-billing"],
  );
  const j = jobs[0] as Doc;
  assert.equal(j.obj.apiVersion, "batch/v1");
  assert.equal(j.obj.spec.schedule, "0 2 1 * *", `${where(j)}: 02:00 on the 1st`);
  assert.equal(j.obj.spec.timeZone, "Asia/Seoul", `${where(j)}: in the carrier's time zone`);
  assert.equal(j.obj.spec.concurrencyPolicy, "Forbid", `${where(j)}: no concurrent runs`);
  const pod = j.obj.spec.jobTemplate.spec.template.spec as Obj;
  assert.equal(pod.serviceAccountName, "batch", `${where(j)}: the batch unit's identity (istio/base/usage allows it)`);
  assert.equal(pod.restartPolicy, "Never");
  const c = pod.containers[0] as Obj;
  assert.equal(c.image, "telco/batch");
  const [node, imp, tsx, script, ...args] = c.args as string[];
  assert.deepEqual([node, imp, tsx], ["node", "--import", "tsx"]);
  assert.ok(exists(script as string), `${where(j)}: ${script} does not exist`);
  assert.deepEqual(args, ["bill", "--month", "previous"]);
  assert.ok(read(script as string).includes('month === "previous"'), `${script} does not understand --month previous`);
  const deployment = find("Deployment", "batch", "batch") as Doc;
  const secretEnv = (x: Obj) =>
    (x.env ?? []).filter((e: Obj) => e.valueFrom?.secretKeyRef).map((e: Obj) => [e.name, e.valueFrom.secretKeyRef]);
  assert.deepEqual(
    secretEnv(c),
    secretEnv(deployment.obj.spec.template.spec.containers[0]),
    `${where(j)}: the Deployment's secrets`,
  );
  assert.deepEqual(c.envFrom, [{ configMapRef: { name: "batch-config" } }]);
  assert.equal(c.securityContext?.runAsNonRoot, true);
  assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
});

const kubectl = (() => {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

function render(dir: string): Obj[] {
  return parseYaml(execFileSync("kubectl", ["kustomize", join(ROOT, dir)], { encoding: "utf8" }), dir);
}

test("the overlays render: local one replica, production two or an autoscaler (HPA, KEDA on Kafka lag)", async () => {
  // kustomize rendering is the point of this test: without kubectl it fails rather than skips.
  assert.ok(kubectl, "kubectl (with its built-in kustomize) is needed to render the overlays; it is not on the PATH");
  const local = render("deploy/k8s/overlays/local");
  const localDeployments = local.filter((o) => o.kind === "Deployment");
  assert.equal(localDeployments.length, UNITS.length + 1, "local: one Deployment per unit, and the gateway");
  for (const o of localDeployments) {
    assert.equal(o.spec.replicas, 1, `local ${o.metadata.name}: replicas`);
    const c = o.spec.template.spec.containers[0];
    if (o.metadata.namespace === GATEWAY_NS) {
      // Istio's proxy as the injector makes it: the units' local patches are not for it.
      assert.deepEqual(
        [c.image, c.args, c.imagePullPolicy],
        ["auto", undefined, undefined],
        "local gateway: untouched",
      );
      continue;
    }
    assert.equal(c.imagePullPolicy, "IfNotPresent", `local ${o.metadata.name}`);
    assert.equal(c.args[1], "--watch", `local ${o.metadata.name}: node --watch for live_update`);
  }
  const localGateway = local.find((o) => o.kind === "Service" && o.metadata.namespace === GATEWAY_NS);
  assert.equal(localGateway?.spec.type, "ClusterIP", "local: no cloud load balancer (the Tiltfile forwards 8080)");
  for (const o of local.filter((x) => x.kind === "ConfigMap")) {
    assert.ok(Number(o.data.DRAIN_DELAY_MS) < 5000, `local ${o.metadata.name}: a shorter DRAIN_DELAY_MS`);
  }

  const prod = render("deploy/k8s/overlays/production");
  const prodGateway = prod.find((o) => o.kind === "Service" && o.metadata.namespace === GATEWAY_NS);
  assert.equal(prodGateway?.spec.type, "LoadBalancer", "production: the gateway behind a load balancer");
  const tls = render("istio/production").find((o) => o.kind === "Gateway");
  const https = tls?.spec.servers.find((x: Obj) => x.port.protocol === "HTTPS");
  assert.equal(https?.tls?.mode, "SIMPLE", "production: the portal on HTTPS");
  assert.ok(https?.tls?.credentialName, "production: the certificate from a Secret");
  assert.ok(
    tls?.spec.servers.every((x: Obj) => x.port.protocol === "HTTPS" || x.tls?.httpsRedirect === true),
    "production: plain HTTP only redirects",
  );
  const hpas = prod.filter((o) => o.kind === "HorizontalPodAutoscaler");
  for (const h of hpas) {
    assert.equal(h.apiVersion, "autoscaling/v2", `HPA ${h.metadata.name}: autoscaling/v2`);
    assert.ok(
      prod.some((o) => o.kind === h.spec.scaleTargetRef.kind && o.metadata.name === h.spec.scaleTargetRef.name),
      `HPA ${h.metadata.name}: its target does not exist`,
    );
  }
  const domainHpa = hpas.find((h) => h.spec.scaleTargetRef.name === "domain");
  assert.ok(domainHpa, "production: no HPA for domain");
  assert.deepEqual(
    domainHpa.spec.metrics.map((m: Obj) => m.resource?.name).sort(),
    ["cpu", "memory"],
    "production: domain scales on CPU and memory",
  );
  // The Kafka consumers scale on their lag (KEDA), the usage unit on CPU too; each trigger names
  // the unit's own topic and consumer group (its config defaults) and stops at the partitions.
  const scaled = prod.filter((x) => x.kind === "ScaledObject");
  const topics = JSON.parse(read("services/kit/src/topics.json")) as Record<string, { partitions: number }>;
  const lagOf = {
    usage: { topic: "usage.events", group: "usage-aggregator", triggers: ["cpu", "kafka"] },
    message: { topic: "notification.requests", group: "message-intake", triggers: ["kafka"] },
  };
  for (const [unit, want] of Object.entries(lagOf)) {
    const so = scaled.find((s) => s.spec.scaleTargetRef.name === unit && s.metadata.namespace === unit);
    assert.ok(so, `production: no ScaledObject for ${unit}`);
    assert.deepEqual(so.spec.triggers.map((t: Obj) => t.type).sort(), want.triggers, `${unit}: triggers`);
    const kafka = so.spec.triggers.find((t: Obj) => t.type === "kafka");
    assert.equal(kafka.metadata.topic, want.topic, `${unit}: lag of its topic`);
    assert.equal(kafka.metadata.consumerGroup, want.group, `${unit}: lag of its consumer group`);
    assert.ok(so.spec.minReplicaCount >= 2, `${unit}: minReplicaCount >= 2`);
    const brokers = prod.find((o) => o.kind === "ConfigMap" && o.metadata.namespace === unit && o.data?.KAFKA_BROKERS);
    assert.equal(
      kafka.metadata.bootstrapServers,
      brokers?.data.KAFKA_BROKERS,
      `${unit}: KEDA reads the unit's own Kafka`,
    );
    assert.ok(
      so.spec.maxReplicaCount <= (topics[want.topic]?.partitions ?? 0),
      `${unit}: more replicas than ${want.topic} has partitions would idle`,
    );
  }
  const { spec: usageSpec } = (await import("../services/usage/src/config.js")) as { spec: Obj };
  const { spec: messageSpec } = (await import("../services/message/src/config.js")) as { spec: Obj };
  assert.equal(`${usageSpec.USAGE_GROUP_PREFIX.default}-aggregator`, lagOf.usage.group);
  assert.equal(usageSpec.USAGE_EVENTS_TOPIC.default, lagOf.usage.topic);
  assert.equal(messageSpec.MESSAGE_GROUP.default, lagOf.message.group);
  assert.equal(messageSpec.NOTIFICATION_TOPIC.default, lagOf.message.topic);
  for (const o of prod.filter((x) => x.kind === "Deployment")) {
    const hpa = hpas.find(
      (h) => h.spec.scaleTargetRef.kind === "Deployment" && h.spec.scaleTargetRef.name === o.metadata.name,
    );
    const so = scaled.find((s) => s.spec.scaleTargetRef.name === o.metadata.name);
    assert.ok(!(hpa && so), `production ${o.metadata.name}: an HPA and a ScaledObject would fight`);
    if (hpa || so) {
      assert.ok((hpa?.spec.minReplicas ?? so?.spec.minReplicaCount) >= 2, `production ${o.metadata.name}: at least 2`);
      assert.equal(o.spec.replicas, undefined, `production ${o.metadata.name}: replicas would fight its autoscaler`);
    } else {
      assert.ok(o.spec.replicas >= 2, `production ${o.metadata.name}: replicas >= 2`);
    }
    assert.equal(
      o.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem,
      true,
      "production: read-only",
    );
  }
});

test("Istio: mTLS STRICT mesh-wide, deny by default, allow rules name RPCs that exist", () => {
  const rpcs = rpcPaths();
  assert.ok(rpcs.size > 0, "no RPCs found in proto/telco");
  const pa = ofKind("PeerAuthentication");
  assert.ok(
    pa.some(
      (p) =>
        p.obj.apiVersion === "security.istio.io/v1" &&
        p.obj.metadata.namespace === "istio-system" &&
        !p.obj.spec?.selector &&
        p.obj.spec?.mtls?.mode === "STRICT",
    ),
    "no mesh-wide STRICT PeerAuthentication (security.istio.io/v1, istio-system)",
  );
  const policies = ofKind("AuthorizationPolicy");
  for (const p of policies) {
    assert.equal(p.obj.apiVersion, "security.istio.io/v1", `${where(p)}: use security.istio.io/v1`);
    const ns = p.obj.metadata.namespace as string;
    if (ns === GATEWAY_NS) {
      // At the edge one policy: no token, no RPC (test/mesh-policy.test.ts checks it in full).
      assert.equal(p.obj.spec.action, "DENY", `${where(p)}: the edge only denies`);
      continue;
    }
    assert.ok(UNITS.includes(ns), `${where(p)}: not in a unit's namespace`);
    for (const rule of p.obj.spec?.rules ?? []) {
      for (const f of rule.from ?? []) {
        for (const principal of f.source?.principals ?? []) {
          assert.match(principal, /^cluster\.local\/ns\/[\w-]+\/sa\/[\w-]+$/, `${where(p)}: principal ${principal}`);
        }
      }
      for (const t of rule.to ?? []) {
        assert.ok((t.operation?.paths ?? []).length > 0, `${where(p)}: an operation without exact paths`);
        if (t.operation.methods?.[0] === "GET") {
          // The one document a unit serves besides its RPCs: the domain unit's JWK set.
          assert.deepEqual(
            [ns, t.operation.methods, t.operation.paths],
            ["domain", ["GET"], ["/.well-known/jwks.json"]],
          );
          continue;
        }
        assert.deepEqual(t.operation?.methods, ["POST"], `${where(p)}: RPCs are POST`);
        for (const path of t.operation.paths) {
          assert.ok(rpcs.has(path), `${where(p)}: ${path} is not an RPC in proto/telco`);
          assert.ok(path.startsWith(`/telco.${ns}.`), `${where(p)}: ${path} is not served in namespace ${ns}`);
        }
      }
    }
  }
  for (const unit of UNITS) {
    const allowNothing = policies.find(
      (p) => p.obj.metadata.namespace === unit && (p.obj.spec === null || Object.keys(p.obj.spec ?? {}).length === 0),
    );
    assert.ok(allowNothing, `namespace ${unit} has no deny-by-default (allow-nothing, spec: {}) AuthorizationPolicy`);
  }
  for (const dr of ofKind("DestinationRule")) {
    const [name, ns] = String(dr.obj.spec.host).split(".");
    assert.ok(find("Service", ns, name ?? ""), `${where(dr)}: host ${dr.obj.spec.host} is no Service`);
    assert.equal(dr.obj.spec.trafficPolicy?.tls?.mode, "ISTIO_MUTUAL", `${where(dr)}: ISTIO_MUTUAL`);
    assert.ok(dr.obj.spec.trafficPolicy?.connectionPool?.http?.http2MaxRequests, `${where(dr)}: http2MaxRequests`);
    assert.ok(dr.obj.spec.trafficPolicy?.outlierDetection, `${where(dr)}: outlierDetection`);
  }
  for (const unit of UNITS) {
    assert.ok(
      ofKind("DestinationRule").some((d) => d.obj.spec.host === `${unit}.${unit}.svc.cluster.local`),
      `no DestinationRule for ${unit}`,
    );
  }
});

test("Dockerfiles copy only what exists and run the unit as a numeric non-root user", () => {
  const ignore = read(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const ignored = (p: string) =>
    ignore.some((pat) =>
      pat.startsWith("**/") ? p.split("/").includes(pat.slice(3)) : p === pat || p.startsWith(`${pat}/`),
    );
  for (const unit of UNITS) {
    const df = dockerfile(unit);
    assert.ok(exists(df.path), `${df.path} is missing`);
    assert.equal(df.workdir, "/app", `${df.path}: WORKDIR /app (Tilt syncs there)`);
    assert.ok(df.copySources.length > 0, `${df.path}: no COPY from the context`);
    for (const src of df.copySources) {
      assert.ok(exists(src), `${df.path}: COPY ${src}: no such path`);
      assert.ok(!ignored(src), `${df.path}: COPY ${src} is excluded by .dockerignore`);
    }
    assert.deepEqual(df.cmd.slice(0, 3), ["node", "--import", "tsx"], `${df.path}: CMD node --import tsx`);
    assert.equal(df.cmd[3], `services/${unit}/src/main.ts`, `${df.path}: CMD runs the unit`);
    assert.ok(exists(df.cmd[3] ?? ""), `${df.path}: ${df.cmd[3]} does not exist`);
    assert.match(df.user ?? "", /^[1-9]\d*(:\d+)?$/, `${df.path}: USER must be a numeric non-root uid (runAsNonRoot)`);
  }
  const pkg = JSON.parse(read("package.json")) as { dependencies?: Record<string, string> };
  assert.ok(pkg.dependencies?.tsx, "tsx must be a production dependency: the images run with it");
});

test("the Tiltfile references only paths that exist, and agrees with the Dockerfiles and manifests", () => {
  const tf = tiltfile();
  assert.ok(!tf.text.includes("ext://"), "Tiltfile: no ext:// extensions");
  assert.deepEqual([...tf.units.keys()].sort(), UNITS, "Tiltfile: UNITS");
  for (const p of [...tf.dockerfiles, ...tf.only, ...tf.syncs.map((s) => s.from), ...tf.kustomizeDirs, ...tf.deps]) {
    assert.ok(exists(p), `Tiltfile: ${p} does not exist`);
  }
  for (const dir of tf.kustomizeDirs)
    assert.ok(exists(`${dir}/kustomization.yaml`), `Tiltfile: ${dir} has no kustomization`);
  assert.ok(tf.kustomizeDirs.includes("deploy/k8s/overlays/local"), "Tiltfile: deploys the local overlay");
  assert.ok(tf.kustomizeDirs.includes("istio"), "Tiltfile: deploys istio/");

  const gen = /local_resource\(\s*'gen'\s*,\s*'npm run (\w+)'/.exec(tf.text);
  assert.ok(gen, "Tiltfile: local_resource('gen', 'npm run …')");
  const scripts = (JSON.parse(read("package.json")) as { scripts?: Record<string, string> }).scripts ?? {};
  assert.ok(scripts[gen[1] as string], `Tiltfile: npm script ${gen[1]} does not exist`);

  for (const unit of UNITS) {
    const df = dockerfile(unit);
    assert.ok(tf.dockerfiles.includes(df.path), `Tiltfile: no docker_build for ${df.path}`);
    // Everything the Dockerfile copies must be in the build context Tilt sends.
    for (const src of df.copySources) {
      assert.ok(underAny(src, tf.only), `Tiltfile: only= lacks ${src} (copied by ${df.path})`);
    }
    // The ports forwarded are the units' ports.
    const port = tf.units.get(unit);
    const cm = find("ConfigMap", unit, `${unit}-config`);
    assert.equal(String(port), cm?.obj.data?.[`${unit.toUpperCase()}_PORT`], `Tiltfile: port of ${unit}`);
  }
  for (const s of tf.syncs) {
    assert.ok(underAny(s.from, tf.only), `Tiltfile: sync('${s.from}') is outside the docker_build only= paths`);
    assert.equal(s.to, `/app/${s.from}`, `Tiltfile: sync('${s.from}') must land where the Dockerfile copies it`);
  }
  assert.match(tf.text, /k8s_resource\([\s\S]*resource_deps\s*=\s*\['gen'[\],]/, "Tiltfile: units depend on gen");
  // And on the local infrastructure, each a resource of the local overlay's workloads.
  const workloads = new Set(
    render("deploy/k8s/overlays/local")
      .filter((o) => ["StatefulSet", "Job", "Deployment"].includes(o.kind))
      .map((o) => o.metadata.name as string),
  );
  for (const m of tf.text.matchAll(/k8s_resource\('([\w-]+)'/g)) {
    assert.ok(workloads.has(m[1] as string), `Tiltfile: k8s_resource('${m[1]}') is no workload of the local overlay`);
  }
  const deps = /resource_deps=\[([^\]]*)\],\n\s*labels=\[unit\]/.exec(tf.text)?.[1] ?? "";
  for (const d of [...deps.matchAll(/'([\w-]+)'/g)].map((m) => m[1] as string).filter((d) => d !== "gen")) {
    assert.ok(workloads.has(d), `Tiltfile: the units wait for ${d}, which is no workload`);
  }

  // Secrets the Deployments reference are made by the Tiltfile for the local cluster: each unit's
  // Secret holds exactly the keys its Deployment takes from it, and no other unit gets one.
  const referenced = new Map<string, string[]>();
  for (const d of ofKind("Deployment")) {
    const unit = d.obj.metadata.namespace as string;
    for (const e of d.obj.spec.template.spec.containers[0].env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (!ref) continue;
      assert.equal(
        ref.name,
        `telco-${unit}-secrets`,
        `${where(d)}: ${e.name} from a Secret the Tiltfile does not make`,
      );
      referenced.set(unit, [...(referenced.get(unit) ?? []), ref.key as string]);
    }
  }
  const sortedEntries = (m: Map<string, string[]>) =>
    [...m.entries()].map(([u, keys]) => [u, [...keys].sort()] as const).sort(([a], [b]) => a.localeCompare(b));
  assert.ok(tf.secretKeys.size > 0, "Tiltfile: no SECRET_KEYS found");
  assert.deepEqual(
    sortedEntries(tf.secretKeys),
    sortedEntries(referenced),
    "Tiltfile: SECRET_KEYS = the units with a Secret and the keys their Deployments take from it",
  );
  for (const key of new Set([...tf.secretKeys.values()].flat())) {
    assert.equal(
      tf.secretEnv.get(key),
      `TELCO_CLUSTER_${key}`,
      `Tiltfile: SECRET_VALUES['${key}'] must be os.getenv('TELCO_CLUSTER_${key}', …)`,
    );
  }
  const secretUnits = [...referenced.keys()].sort();

  // ConfigMaps the Deployments take keys from that are not in the repository (telco-auth: the key
  // material is the operators' in production) are made by the Tiltfile in the unit's namespace,
  // with exactly the keys the Deployments take from them.
  const tiltConfigMaps = tf.objects.filter((o) => o.kind === "ConfigMap");
  const cmReferenced = new Map<string, Set<string>>();
  for (const d of ofKind("Deployment")) {
    const ns = d.obj.metadata.namespace as string;
    for (const e of d.obj.spec.template.spec.containers[0].env ?? []) {
      const ref = e.valueFrom?.configMapKeyRef;
      if (!ref || find("ConfigMap", ns, ref.name)) continue;
      const made = tiltConfigMaps.find((o) => o.name === ref.name && o.namespace === ns);
      assert.ok(
        made,
        `Tiltfile: makes no ConfigMap ${ref.name} in namespace ${ns} (${where(d)} takes ${e.name} from it)`,
      );
      assert.ok(made.data.has(ref.key), `Tiltfile: ConfigMap ${ns}/${ref.name} has no key ${ref.key}`);
      const id = `${ns}/${ref.name}`;
      cmReferenced.set(id, new Set([...(cmReferenced.get(id) ?? []), ref.key as string]));
    }
  }
  for (const o of tiltConfigMaps) {
    assert.deepEqual(
      [...o.data.keys()].sort(),
      [...(cmReferenced.get(`${o.namespace}/${o.name}`) ?? [])].sort(),
      `Tiltfile: ConfigMap ${o.namespace}/${o.name} must hold exactly the keys the Deployments take from it`,
    );
  }
  for (const [key, { configMap }] of Object.entries(SHARED_CONFIG)) {
    for (const unit of UNITS) {
      assert.ok(
        tiltConfigMaps.some((o) => o.name === configMap && o.namespace === unit && o.data.has(key)),
        `Tiltfile: no ConfigMap ${configMap} with ${key} in namespace ${unit}`,
      );
    }
    // Its value: TELCO_CLUSTER_<key>, else the development key.
    const variables = new Set(tiltConfigMaps.filter((o) => o.name === configMap).map((o) => o.data.get(key)));
    assert.equal(variables.size, 1, `Tiltfile: ${configMap} ${key} must have one value in every namespace`);
    const variable = [...variables][0] ?? "";
    assert.match(variable, /^\w+$/, `Tiltfile: ${configMap} ${key} must be a variable`);
    assert.ok(
      devKeyFallback(tf.text, `\\b${variable}\\s*=\\s*`, key),
      `Tiltfile: ${variable} = os.getenv('TELCO_CLUSTER_${key}', '') or dev_key('${key}')`,
    );
  }
  // The development keys are one pair: a key the development keys provide (the domain unit's
  // AUTH_SIGNING_KEY) falls back to it too, or tokens signed locally would not verify.
  const devKeysScript = read("scripts/lib/dev-keys.mjs");
  for (const key of new Set([...tf.secretKeys.values()].flat())) {
    if (!new RegExp(`\\b${key}:`).test(devKeysScript)) continue;
    assert.ok(
      devKeyFallback(tf.text, `'${key}'\\s*:\\s*`, key),
      `Tiltfile: SECRET_VALUES['${key}'] = os.getenv('TELCO_CLUSTER_${key}', '') or dev_key('${key}')`,
    );
  }

  // Every k8s_resource object selector names exactly one object of the local deployment, and
  // every object the Tiltfile makes is grouped into a resource.
  const made = [
    ...secretUnits.map((u) => `telco-${u}-secrets:secret:${u}`),
    ...tiltConfigMaps.map((o) => `${o.name}:configmap:${o.namespace}`.toLowerCase()),
  ];
  const names = [
    ...OBJECTS.map((d) => `${d.obj.metadata.name}:${d.obj.kind}:${d.obj.metadata.namespace ?? ""}`.toLowerCase()),
    ...made,
  ];
  const selected = (sel: string, n: string) => n === sel.toLowerCase() || n.startsWith(`${sel.toLowerCase()}:`);
  assert.ok(tf.objectSelectors.length > 0, "Tiltfile: no objects= selectors found");
  for (const sel of tf.objectSelectors) {
    const matches = names.filter((n) => selected(sel, n));
    assert.equal(matches.length, 1, `Tiltfile: selector ${sel} matches ${matches.length} objects`);
  }
  for (const n of made) {
    assert.ok(
      tf.objectSelectors.some((sel) => selected(sel, n)),
      `Tiltfile: ${n} is in no k8s_resource objects= (group it with its unit)`,
    );
  }
});

test("every manifest, and the kustomize output of every overlay, validates against the Kubernetes and Istio schemas; unknown fields are refused", () => {
  assert.ok(kubectl, "kubectl (with its built-in kustomize) is needed to render the overlays; it is not on the PATH");
  const rendered = [
    "deploy/k8s/overlays/local",
    "deploy/k8s/overlays/production",
    "istio",
    "istio/production",
    "deploy/observability/alloy",
  ].flatMap((dir) => render(dir).map((obj) => ({ file: `kustomize ${dir}`, obj })));
  const all = [...OBJECTS, ...rendered];
  const schemas = new ManifestSchemas(all.map((d) => d.obj as { apiVersion: string; kind: string }));
  const problems = all.flatMap((d) => schemas.problems(d.obj).map((p) => `${where(d)}: ${p}`));
  assert.deepEqual(problems, []);
  assert.ok(rendered.length >= 40, `${rendered.length} rendered objects`);

  // The check itself: a misspelt field and a wrong type are caught, in Kubernetes and Istio kinds.
  const deployment = structuredClone(ofKind("Deployment")[0]?.obj) as Obj;
  deployment.spec.template.spec.containers[0].livenessprobe = deployment.spec.template.spec.containers[0].livenessProbe;
  deployment.spec.replica = 2;
  assert.deepEqual(
    schemas
      .problems(deployment)
      .filter((p) => p.includes("unknown field"))
      .sort(),
    ['.spec.template.spec.containers[0]: unknown field "livenessprobe"', '.spec: unknown field "replica"'],
  );
  const policy = structuredClone(ofKind("AuthorizationPolicy").find((p) => p.obj.spec?.rules)?.obj) as Obj;
  policy.spec.rules[0].to[0].operation.path = ["/x"];
  policy.spec.action = 7;
  const found = schemas.problems(policy);
  assert.ok(
    found.some((p) => p.includes('unknown field "path"')),
    found.join("\n"),
  );
  assert.ok(
    found.some((p) => /action/.test(p) && !p.includes("unknown field")),
    found.join("\n"),
  );
});

test("the local cluster's infrastructure: what the units' settings name, and the topics of topics.json", () => {
  const local = render("deploy/k8s/overlays/local");
  const infra = local.filter((o) => o.metadata?.namespace === "infra");
  const services = new Set(
    infra.filter((o) => o.kind === "Service").map((o) => `${o.metadata.name}.infra.svc.cluster.local`),
  );
  // Every infra host a unit's ConfigMap or the Tiltfile's secret URLs name is a Service here.
  const named = new Set<string>();
  for (const cm of local.filter((o) => o.kind === "ConfigMap" && UNITS.includes(o.metadata.namespace))) {
    for (const v of Object.values(cm.data ?? {}) as string[]) {
      for (const m of v.matchAll(/([a-z0-9-]+\.infra\.svc\.cluster\.local)/g)) named.add(m[1] as string);
    }
  }
  for (const m of read("Tiltfile").matchAll(/([a-z0-9-]+\.infra\.svc\.cluster\.local)/g)) named.add(m[1] as string);
  assert.ok(named.size >= 4, `${[...named].join(", ")}`);
  for (const host of named)
    assert.ok(services.has(host), `${host} is named by a unit's settings but is no Service in infra`);
  for (const s of infra.filter((o) => o.kind === "StatefulSet")) {
    assert.ok(s.spec.volumeClaimTemplates?.length, `${s.metadata.name}: keeps its data on a volume`);
  }
  const redis = infra.find((o) => o.kind === "StatefulSet" && o.metadata.name === "redis");
  assert.ok(redis?.spec.template.spec.containers[0].args.includes("--appendonly"), "Redis keeps an append-only file");
  // The topics Job makes exactly topics.json's topics and their .dlq, with their partitions.
  const job = infra.find((o) => o.kind === "Job" && o.metadata.name === "kafka-topics");
  assert.ok(job, "a kafka-topics Job");
  const script = (job.spec.template.spec.containers[0].command as string[]).join("\n");
  const made = [...script.matchAll(/--topic (\S+) --partitions (\d+)/g)].map((m) => `${m[1]}:${m[2]}`).sort();
  const topics = JSON.parse(read("services/kit/src/topics.json")) as Record<string, { partitions: number }>;
  const want = Object.entries(topics)
    .flatMap(([t, { partitions }]) => [`${t}:${partitions}`, `${t}.dlq:${partitions}`])
    .sort();
  assert.deepEqual(made, want);
});
