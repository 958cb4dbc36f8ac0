/**
 * Each unit's Dockerfile, built without Docker: its stages' COPY and RUN steps carried out in
 * temporary directories (the same `npm ci --omit=dev` against the lockfile, the same files
 * copied from the repository), then its CMD run there with the image's ENV. The unit must load
 * with production dependencies only: it gets as far as reading its configuration (exit 78,
 * "AUTH_VERIFY_KEY is required"), which happens after every static import has resolved; the
 * tracing SDK, imported only when an OTLP endpoint is set, loads too; and the Deployment's init
 * container (the schema migration) runs from the image on an empty database.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parseAllDocuments } from "yaml";
import { ROOT } from "./support/processes.js";

const UNITS = ["usage", "message", "domain", "batch"];

interface Step {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  steps: Step[];
}

/** The Dockerfile's stages and their instructions (continuation lines joined, comments dropped). */
function stagesOf(path: string): Stage[] {
  const text = readFileSync(join(ROOT, path), "utf8").replace(/\\\n/g, " ");
  const stages: Stage[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [op = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (op.toUpperCase() === "FROM") {
      const as = /\bAS\s+(\S+)/i.exec(args);
      stages.push({ name: as?.[1] ?? String(stages.length), steps: [] });
    } else stages[stages.length - 1]?.steps.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

const work = mkdtempSync(join(tmpdir(), "telco-images-"));
after(() => rmSync(work, { recursive: true, force: true }));
/** Built stages by their instructions: units whose deps stage is the same share one. */
const built = new Map<string, string>();

/** Carries out a stage's steps in a directory of its own; answers the directory (its /app). */
function build(stage: Stage, others: Map<string, string>): { dir: string; env: Record<string, string>; cmd: string[] } {
  const key = JSON.stringify(stage.steps);
  const env: Record<string, string> = {};
  let cmd: string[] = [];
  const cached = built.get(key);
  const dir = cached ?? mkdtempSync(join(work, `${stage.name}-`));
  for (const { op, args } of stage.steps) {
    if (op === "ENV") {
      for (const m of args.matchAll(/(\w+)=(\S+)/g)) env[m[1] as string] = m[2] as string;
    } else if (op === "CMD") {
      cmd = JSON.parse(args) as string[];
    } else if (cached) {
      // Already built: only ENV and CMD are needed again.
    } else if (op === "WORKDIR") {
      assert.equal(args, "/app", "WORKDIR /app");
    } else if (op === "COPY") {
      const parts = args.split(/\s+/).filter((p) => !p.startsWith("--chown"));
      const from = parts[0]?.startsWith("--from=") ? (parts.shift() as string).slice(7) : undefined;
      const dest = parts.pop() as string;
      for (const src of parts) {
        const origin = from ? join(others.get(from) as string, src.replace(/^\/app\//, "")) : join(ROOT, src);
        assert.ok(existsSync(origin), `COPY ${from ? `--from=${from} ` : ""}${src}: no such path`);
        const target = dest.endsWith("/") ? join(dir, dest, src.split("/").pop() as string) : join(dir, dest);
        mkdirSync(join(target, ".."), { recursive: true });
        cpSync(origin, target, { recursive: true });
      }
    } else if (op === "RUN") {
      const r = spawnSync("sh", ["-c", args], {
        cwd: dir,
        env: { ...process.env, ...env, npm_config_cache: join(work, "npm-cache"), npm_config_update_notifier: "false" },
        encoding: "utf8",
        timeout: 300_000,
      });
      assert.equal(r.status, 0, `RUN ${args}: ${r.stderr.slice(-2000)}`);
    }
  }
  built.set(key, dir);
  return { dir, env, cmd };
}

describe("the Dockerfiles' build steps, run without Docker", () => {
  for (const unit of UNITS) {
    it(`services/${unit}/Dockerfile: production dependencies only, and the unit loads`, () => {
      const stages = stagesOf(`services/${unit}/Dockerfile`);
      assert.ok(stages.length >= 2, "multi-stage");
      const dirs = new Map<string, string>();
      let last: ReturnType<typeof build> | undefined;
      for (const s of stages) {
        last = build(s, dirs);
        dirs.set(s.name, last.dir);
      }
      const { dir, env, cmd } = last as ReturnType<typeof build>;
      // What the runtime stage holds: no dev dependency, no tests.
      assert.ok(existsSync(join(dir, "node_modules/tsx")), "tsx is installed (production dependency)");
      assert.ok(!existsSync(join(dir, "node_modules/@biomejs")), "dev dependencies are not in the image");
      assert.ok(!existsSync(join(dir, "test")), "the tests are not in the image");
      const [bin, ...args] = cmd;
      assert.equal(bin, "node");
      const r = spawnSync(process.execPath, args, {
        cwd: dir,
        env: { PATH: process.env.PATH ?? "", HOME: work, ...env },
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(r.status, 78, `the unit did not get to its configuration: ${r.stderr.slice(-1500)}`);
      assert.match(r.stderr, /AUTH_VERIFY_KEY is required/);
      // Its init container (the schema migration) works from the image, on an empty database.
      const deployment = parseAllDocuments(readFileSync(join(ROOT, `deploy/k8s/base/${unit}/deployment.yaml`), "utf8"))
        .map(
          (d) =>
            d.toJS() as { kind?: string; spec?: { template: { spec: { initContainers?: { args: string[] }[] } } } },
        )
        .find((d) => d.kind === "Deployment");
      for (const init of deployment?.spec?.template.spec.initContainers ?? []) {
        const db = `telco_test_image_${unit}`;
        execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-qc", `drop database if exists ${db}`]);
        execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-qc", `create database ${db}`]);
        try {
          const [, ...initArgs] = init.args;
          const m = spawnSync(process.execPath, initArgs, {
            cwd: dir,
            env: {
              PATH: process.env.PATH ?? "",
              HOME: work,
              ...env,
              DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${db}`,
            },
            encoding: "utf8",
            timeout: 60_000,
          });
          assert.equal(m.status, 0, `init container ${init.args.join(" ")}: ${m.stderr.slice(-1500)}`);
          assert.match(m.stdout, new RegExp(`\\[migrate\\] ${unit} \\(schema \\w+\\): applied `));
        } finally {
          execFileSync("psql", [
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-qc",
            `drop database if exists ${db} with (force)`,
          ]);
        }
      }
      if (unit === "usage") {
        // The tracing SDK and its instrumentations, loaded as a unit does when an endpoint is set.
        const t = execFileSync(
          process.execPath,
          [
            "--import",
            "tsx",
            "-e",
            'const m = await import("./services/kit/src/telemetry.ts"); const t = await m.startTelemetry("image-check", { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" }); console.log(t.enabled); await t.shutdown();',
          ],
          { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: work, ...env }, encoding: "utf8", timeout: 60_000 },
        );
        assert.equal(t.trim(), "true");
      }
    });
  }
});
