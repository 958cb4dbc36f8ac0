#!/usr/bin/env node
// `npm test`: installs dependencies, checks the contracts (buf lint, gen drift, buf breaking),
// type-checks and lints, brings up the infrastructure the tests use (PostgreSQL, Redis, Kafka,
// InfluxDB), then runs every test file with Node's test runner against it; after a full run it
// greps every log line the run wrote for the personal values the tests created.
//   npm test                          # everything
//   npm test -- test/services.test.ts # only these test files (checks still run)
//   npm test -- --skip-checks ...     # tests only
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { ensureInstalled, ROOT, runStep } from "./lib/install.mjs";

const started = Date.now();
const args = process.argv.slice(2);
const skipChecks = args.includes("--skip-checks");
const unknown = args.filter((a) => a.startsWith("--") && a !== "--skip-checks");
if (unknown.length) {
  console.error(`npm test: unknown option ${unknown.join(" ")}\nusage: npm test [-- [--skip-checks] [test files...]]`);
  process.exit(2);
}

function findTests() {
  const out = [];
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      if (name === "node_modules") continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".test.ts")) out.push(relative(ROOT, p));
    }
  };
  walk(join(ROOT, "services"));
  walk(join(ROOT, "test"));
  return out.sort();
}

/**
 * Every run starts on an empty telco_test database (migrated by the tests themselves), so no
 * run inherits rows, sequences or sealed values from an earlier one.
 */
async function freshTestDatabase() {
  const url = new URL(process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco_test");
  const name = url.pathname.slice(1);
  if (!/^[a-z_][a-z0-9_]*$/.test(name) || !name.includes("test")) {
    throw new Error(`refusing to recreate database ${JSON.stringify(name)}: its name must contain "test"`);
  }
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`drop database if exists ${name} with (force)`);
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
  console.log(`[test] database ${name} recreated`);
}

/**
 * And on an empty Redis test database: ids the domain unit hands out start again with the fresh
 * PostgreSQL database, so counters and quotas an earlier run left under the same ids must go.
 */
async function freshTestRedis() {
  const url = new URL(process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/15");
  const db = Number(url.pathname.slice(1) || "0");
  if (!Number.isInteger(db) || db === 0) {
    throw new Error(`refusing to empty Redis database ${db} of TEST_REDIS_URL: tests use a database other than 0`);
  }
  const { Redis } = await import("ioredis");
  const redis = new Redis(url.toString(), { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await redis.flushdb();
  } finally {
    redis.disconnect();
  }
  console.log(`[test] redis database ${db} emptied`);
}

async function main() {
  ensureInstalled();
  if (!skipChecks) {
    const { checkContracts } = await import("./contracts.mjs");
    checkContracts();
    runStep("tsc", "tsc", ["-p", "tsconfig.json"]);
    runStep("tsc (portal)", "tsc", ["-p", "services/portal/tsconfig.json"]);
    runStep("biome", "biome", ["check", "--error-on-warnings", "."], { quiet: true });
  }
  const { infraUp, ensureTools } = await import("./infra/lib.mjs");
  await ensureTools();
  const infra = await infraUp({ only: ["postgres", "redis", "kafka", "influxdb"], quiet: true });
  console.log(
    `[infra] up (${(infra.ms / 1000).toFixed(1)}s): ${infra.results.map((r) => `${r.name} ${(r.ms / 1000).toFixed(1)}s`).join(", ")}`,
  );

  await freshTestDatabase();
  await freshTestRedis();

  const selected = args.filter((a) => !a.startsWith("--"));
  const files = selected.length ? selected : findTests();
  for (const f of files) {
    if (!existsSync(join(ROOT, f))) throw new Error(`no such test file: ${f}`);
  }
  mkdirSync(join(ROOT, ".data"), { recursive: true });
  // Every log line of the run lands here (the runner's output, each process a test starts, each
  // in-process unit's log), so that the run can be grepped for personal data afterwards.
  const logDir = join(ROOT, ".data", "test-logs");
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const runnerLog = join(logDir, "runner.log");
  const tap = join(ROOT, ".data", "test-results.tap");
  console.log(`[test] ${files.length} files`);
  const runTests = (testFiles, tapFile) =>
    new Promise((resolve) => {
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "--test",
          "--test-concurrency=1",
          "--test-reporter=spec",
          "--test-reporter-destination=stdout",
          "--test-reporter=tap",
          `--test-reporter-destination=${tapFile}`,
          ...testFiles,
        ],
        {
          cwd: ROOT,
          stdio: ["ignore", "pipe", "pipe"],
          env: { ...process.env, NODE_ENV: "test", TEST_LOG_DIR: logDir },
        },
      );
      for (const [from, to] of [
        [child.stdout, process.stdout],
        [child.stderr, process.stderr],
      ]) {
        from.on("data", (d) => {
          to.write(d);
          appendFileSync(runnerLog, d);
        });
      }
      child.on("close", (c, signal) => resolve(c ?? (signal ? 1 : 0)));
    });
  const counts = (tapFile) => {
    const summary = readFileSync(tapFile, "utf8");
    const count = (k) => Number(summary.match(new RegExp(`^# ${k} (\\d+)$`, "m"))?.[1] ?? 0);
    return ["pass", "fail", "skipped", "todo", "cancelled"].map(count);
  };
  let code = await runTests(files, tap);
  let [pass, fail, skipped, todo, cancelled] = counts(tap);
  if (!selected.length) {
    // After the whole suite: its logs, grepped for the personal values the tests created.
    console.log("[test] after the run: personal data in its logs");
    const afterTap = join(ROOT, ".data", "after-run.tap");
    const after = await runTests(["test/after-run/personal-data-in-logs.check.ts"], afterTap);
    code = code || after;
    const more = counts(afterTap);
    [pass, fail, skipped, todo, cancelled] = [pass, fail, skipped, todo, cancelled].map((n, i) => n + more[i]);
  }
  console.log(`[test] ${((Date.now() - started) / 1000).toFixed(1)}s in all`);
  if (skipped + todo > 0) console.log(`[test] ${skipped} skipped and ${todo} todo: these count as failures here`);
  console.log(`${pass} passed, ${fail + cancelled + skipped + todo} failed`);
  return code === 0 && fail + cancelled + skipped + todo === 0 && pass > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`npm test: ${e.message}`);
    process.exit(1);
  },
);
