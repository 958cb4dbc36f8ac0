import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import ts from "typescript";
import { ROOT } from "./processes.js";

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML
type Obj = Record<string, any>;

const require = createRequire(join(ROOT, "package.json"));

const resolvable = (m: string) => {
  try {
    require.resolve(m);
    return true;
  } catch {
    return false;
  }
};

/**
 * The npm module of a kind's model: kubernetes-models for Kubernetes, @kubernetes-models/istio
 * for Istio. Istio's v1 APIs are its v1beta1 ones promoted unchanged; where the package has no
 * v1 model of a kind (DestinationRule, PeerAuthentication), the v1beta1 one checks it.
 */
export function modelModule(apiVersion: string, kind: string): string | undefined {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group?.endsWith("istio.io")) {
    const v1 = `@kubernetes-models/istio/${group}/${version}/${kind}`;
    return version === "v1" && !resolvable(v1) ? `@kubernetes-models/istio/${group}/v1beta1/${kind}` : v1;
  }
  if (group === "kustomize.config.k8s.io") return undefined;
  if (group === "keda.sh") return `@kubernetes-models/keda/${group}/${version}/${kind}`;
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
}

/**
 * Validates manifests against the models shipped in npm packages (kubernetes-models and
 * @kubernetes-models/istio): their JSON-schema validators check types, enums and required
 * fields, and — since those accept fields they do not know — their TypeScript declarations are
 * walked with the type checker so that any field the kind does not have is an error (a typo such
 * as `replica:` or `livenessprobe:` would otherwise apply as nothing).
 */
export class ManifestSchemas {
  private readonly checker: ts.TypeChecker;
  private readonly types = new Map<string, ts.Type>();

  constructor(kinds: { apiVersion: string; kind: string }[]) {
    const unique = [...new Map(kinds.map((k) => [`${k.apiVersion} ${k.kind}`, k])).values()].filter((k) =>
      modelModule(k.apiVersion, k.kind),
    );
    const file = join(ROOT, ".data", "manifest-kinds.ts");
    const lines = unique.map(
      (k, i) =>
        `import type { I${k.kind} as T${i} } from "${modelModule(k.apiVersion, k.kind)}";\nexport type K${i} = T${i};`,
    );
    writeFileSync(file, `${lines.join("\n")}\n`);
    const program = ts.createProgram([file], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
    });
    this.checker = program.getTypeChecker();
    const sf = program.getSourceFile(file);
    if (!sf) throw new Error("manifest kinds not compiled");
    const exports = this.checker.getExportsOfModule(this.checker.getSymbolAtLocation(sf) as ts.Symbol);
    unique.forEach((k, i) => {
      const sym = exports.find((e) => e.name === `K${i}`);
      if (sym) this.types.set(`${k.apiVersion} ${k.kind}`, this.checker.getDeclaredTypeOfSymbol(sym));
    });
  }

  /** What is wrong with one object: unknown kind, invalid values, unknown fields (each with its path). */
  problems(obj: Obj): string[] {
    const mod = modelModule(obj.apiVersion, obj.kind);
    if (!mod) return [];
    let Model: new (o: Obj) => { validate(): void };
    try {
      Model = (require(mod) as Record<string, new (o: Obj) => { validate(): void }>)[obj.kind] as typeof Model;
    } catch {
      return [`no schema for ${obj.apiVersion} ${obj.kind} (${mod})`];
    }
    const out: string[] = [];
    // A v1beta1 model checks the v1 object under its own apiVersion.
    const asModel =
      mod.includes("/v1beta1/") && obj.apiVersion.endsWith("/v1")
        ? { ...obj, apiVersion: obj.apiVersion.replace(/v1$/, "v1beta1") }
        : obj;
    try {
      new Model(asModel).validate();
    } catch (e) {
      out.push((e as Error).message.split("\n").slice(0, 6).join("; "));
    }
    const type = this.types.get(`${obj.apiVersion} ${obj.kind}`);
    if (!type) out.push(`no type for ${obj.apiVersion} ${obj.kind}`);
    else this.walk(asModel, type, "", out);
    return out;
  }

  private walk(value: unknown, type: ts.Type, path: string, out: string[]): void {
    if (value === null || typeof value !== "object") return;
    const t = this.checker.getNonNullableType(type);
    if (Array.isArray(value)) {
      const element = this.checker.getIndexTypeOfType(t, ts.IndexKind.Number);
      if (element) {
        value.forEach((v, i) => {
          this.walk(v, element, `${path}[${i}]`, out);
        });
      }
      return;
    }
    // A map (labels, annotations, data) or a free-form object: any key.
    if (t.getStringIndexType() || t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) {
      const inner = t.getStringIndexType();
      if (inner) for (const [k, v] of Object.entries(value)) this.walk(v, inner, `${path}.${k}`, out);
      return;
    }
    // A union of object shapes (oneOf): a field is known if any member has it.
    const members = t.isUnion() ? t.types : [t];
    if (members.some((m) => m.getStringIndexType() || m.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown))) return;
    for (const [k, v] of Object.entries(value)) {
      const props = members.map((m) => m.getProperty(k)).filter((p): p is ts.Symbol => p !== undefined);
      if (props.length === 0) {
        out.push(`${path || "."}: unknown field ${JSON.stringify(k)}`);
        continue;
      }
      const propType = this.checker.getTypeOfSymbol(props[0] as ts.Symbol);
      this.walk(v, propType, `${path}.${k}`, out);
    }
  }
}
