import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { ROOT } from "./processes.js";

export interface Call {
  /** The calling unit (services/<unit>/src). */
  caller: string;
  /** The RPC's HTTP path, "/telco.domain.v1.SubscriptionService/GetLineContact". */
  path: string;
  /** Where: file:line. */
  at: string;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

const upper = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * Every RPC each unit's code calls on another unit, found by the type checker: a call `x.m(...)`
 * whose method `m` is declared by a generated service descriptor (gen/telco/<pkg>/…_pb.ts,
 * `export declare const <Service>: GenService<{ m: … }>`), i.e. a call through a generated
 * client of that service. What the code calls is what the mesh must allow, and nothing else.
 */
export function rpcCalls(units: string[]): Call[] {
  const files = units.flatMap((u) => sources(join(ROOT, "services", u, "src")));
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    allowImportingTsExtensions: false,
  });
  const checker = program.getTypeChecker();
  const calls: Call[] = [];
  for (const file of files) {
    const sf = program.getSourceFile(file);
    if (!sf) continue;
    const caller = relative(join(ROOT, "services"), file).split("/")[0] as string;
    const visit = (node: ts.Node) => {
      if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
        const sym = checker.getSymbolAtLocation(node.expression.name);
        for (const decl of sym?.declarations ?? []) {
          const declFile = decl.getSourceFile().fileName;
          const m = /\/gen\/(telco\/[a-z]+\/v\d+)\/[^/]+_pb\.ts$/.exec(declFile);
          if (!m) continue;
          let v: ts.Node | undefined = decl;
          while (v && !ts.isVariableDeclaration(v)) v = v.parent;
          if (!v || !ts.isVariableDeclaration(v) || !ts.isIdentifier(v.name)) continue;
          const service = `${(m[1] as string).replaceAll("/", ".")}.${v.name.text}`;
          const { line } = sf.getLineAndCharacterOfPosition(node.getStart());
          calls.push({
            caller,
            path: `/${service}/${upper(node.expression.name.text)}`,
            at: `${relative(ROOT, file)}:${line + 1}`,
          });
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return calls;
}
