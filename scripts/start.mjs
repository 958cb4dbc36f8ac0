#!/usr/bin/env node
// `npm start`: installs dependencies, brings the local infrastructure up (PostgreSQL, Redis,
// Kafka in KRaft mode, InfluxDB), migrates, starts the four units as child processes, builds the
// portal and serves it with its local gateway at http://127.0.0.1:8080 (PORTAL_PORT), and prints
// where everything is. Ctrl-C (SIGINT) or SIGTERM drains every unit and exits; the infrastructure
// keeps running (`npm run infra:down` stops it).
//   npm start                       # all units
//   npm start -- --units usage,domain
//   npm start -- --demo             # the whole flow once (npm run scenario) and its reconciliation
import { spawn, spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { devKeys } from "./lib/dev-keys.mjs";
import { ensureInstalled, ROOT } from "./lib/install.mjs";

const UNITS = [
  { name: "usage", port: 50051, service: "telco.usage.v1.UsageService", color: 36 },
  { name: "message", port: 50052, service: "telco.message.v1.TemplateService", color: 35 },
  { name: "domain", port: 50053, service: "telco.domain.v1.CatalogService", color: 33 },
  { name: "batch", port: 50054, service: "telco.batch.v1.BillingJobService", color: 32 },
];

let options;
try {
  options = parseArgs({
    options: { units: { type: "string" }, demo: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    allowPositionals: false,
  }).values;
} catch (e) {
  console.error(`npm start: ${e.message}\nusage: npm start [-- --units usage,message,domain,batch | --demo]`);
  process.exit(2);
}
if (options.help) {
  console.log("usage: npm start [-- --units usage,message,domain,batch | --demo]");
  process.exit(0);
}
if (options.demo) {
  // The scenario runs the units on a platform of its own (their own database, topics, Redis,
  // SMSC and SMTP server), so it can run next to a started platform.
  ensureInstalled();
  const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/reliability.ts", "--scenario"], {
    cwd: ROOT,
    stdio: "inherit",
  });
  process.exit(r.status ?? 1);
}
const wanted = options.units ? options.units.split(",").map((s) => s.trim()) : UNITS.map((u) => u.name);
const bad = wanted.filter((w) => !UNITS.some((u) => u.name === w));
if (bad.length) {
  console.error(`npm start: unknown unit ${bad.join(", ")}; expected some of ${UNITS.map((u) => u.name).join(", ")}`);
  process.exit(2);
}
const units = UNITS.filter((u) => wanted.includes(u.name)).map((u) => ({
  ...u,
  port: Number(process.env[`${u.name.toUpperCase()}_PORT`] ?? u.port),
}));

const tty = process.stdout.isTTY;
const tag = (u) => (tty ? `\x1b[${u.color}m[${u.name.padEnd(7)}]\x1b[0m` : `[${u.name.padEnd(7)}]`);

function prefixLines(u, stream, out) {
  let buf = "";
  stream.on("data", (d) => {
    buf += d.toString();
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    for (const line of lines) out.write(`${tag(u)} ${line}\n`);
  });
}

const children = new Map();
let keys = {};
/** What the units get of the development keys (not the admin's password). */
// Units sign their calls to other units (service tokens) with the same development key the domain
// unit signs access tokens with: every unit verifies with its one public half.
const unitEnv = () => ({
  ...(keys.AUTH_SIGNING_KEY && !process.env.SERVICE_SIGNING_KEY ? { SERVICE_SIGNING_KEY: keys.AUTH_SIGNING_KEY } : {}),
  ...Object.fromEntries(Object.entries(keys).filter(([k]) => k !== "DEV_ADMIN_PASSWORD")),
});
let stopping = false;

function startUnit(u, restarts = 0) {
  const child = spawn(process.execPath, ["--import", "tsx", `services/${u.name}/src/main.ts`], {
    cwd: ROOT,
    env: { ...process.env, ...unitEnv(), [`${u.name.toUpperCase()}_PORT`]: String(u.port) },
    stdio: ["ignore", "pipe", "pipe"],
    // Own process group: a terminal's Ctrl-C reaches only this supervisor, which then sends each
    // unit one SIGTERM (a second signal would make a unit skip its drain).
    detached: true,
  });
  prefixLines(u, child.stdout, process.stdout);
  prefixLines(u, child.stderr, process.stderr);
  children.set(u.name, child);
  child.on("exit", (code, signal) => {
    children.delete(u.name);
    if (stopping) return;
    if (code === 78) {
      console.error(`${tag(u)} configuration error (see above): not restarting`);
      return;
    }
    if (restarts >= 5) {
      console.error(`${tag(u)} exited (${code ?? signal}) ${restarts + 1} times: giving up on it`);
      return;
    }
    console.error(`${tag(u)} exited (${code ?? signal}); restarting in 2 s`);
    setTimeout(() => startUnit(u, restarts + 1), 2_000);
  });
}

const PORTAL = { name: "portal", port: Number(process.env.PORTAL_PORT ?? 8080), color: 34 };

/** The portal: built once (vite), then served by its local gateway, which passes RPCs to the units. */
function startPortal() {
  const built = spawnSync(
    process.execPath,
    ["node_modules/vite/bin/vite.js", "build", "services/portal", "--logLevel", "warn"],
    {
      cwd: ROOT,
      stdio: "inherit",
    },
  );
  if (built.status !== 0) throw new Error("the portal's build failed (see above)");
  const upstreams = Object.fromEntries(units.map((u) => [`${u.name.toUpperCase()}_URL`, `http://127.0.0.1:${u.port}`]));
  const child = spawn(process.execPath, ["--import", "tsx", "services/portal/gateway.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...upstreams, PORTAL_PORT: String(PORTAL.port) },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  prefixLines(PORTAL, child.stdout, process.stdout);
  prefixLines(PORTAL, child.stderr, process.stderr);
  children.set(PORTAL.name, child);
  child.on("exit", (code, signal) => {
    children.delete(PORTAL.name);
    if (!stopping) console.error(`${tag(PORTAL)} exited (${code ?? signal}): the portal is down, the units are not`);
  });
}

async function waitServing(u, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${u.port}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      if (r.ok && (await r.json()).status === "SERVING") return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

async function main() {
  ensureInstalled();
  const { DEV_ADMIN_PASSWORD, ...unitKeys } = devKeys();
  keys = { ...unitKeys, DEV_ADMIN_PASSWORD };
  const { infraUp } = await import("./infra/lib.mjs");
  await infraUp({});
  const migrate = spawnSync(process.execPath, ["--import", "tsx", "scripts/migrate.ts"], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (migrate.status !== 0) throw new Error("migrations failed (see above)");

  for (const u of units) startUnit(u);
  startPortal();
  const up = await Promise.all(units.map((u) => waitServing(u)));
  const buf = "node_modules/.bin/buf";
  const example = units.find((u) => u.name === "domain") ?? units[0];
  const lines = [
    "",
    "Message platform is up:",
    ...units.map(
      (u, i) =>
        `  ${u.name.padEnd(8)} ${up[i] ? "SERVING    " : "NOT READY  "} grpc/connect/grpc-web  http://127.0.0.1:${u.port}   ${u.service}`,
    ),
    `  portal   http://127.0.0.1:${PORTAL.port}  (the admin portal; RPCs people use, over Connect, through its gateway)`,
    "  kafka    127.0.0.1:9092      redis 127.0.0.1:6379      postgres 127.0.0.1:5432/telco      influxdb http://127.0.0.1:8086",
    "",
    `Sign in: user "admin", password in ~/.config/telco-platform/dev-keys.env (DEV_ADMIN_PASSWORD); or TOKEN=$(npm run -s token -- --role admin)`,
    "",
    "Try:",
    `  ${buf} curl --protocol grpc --http2-prior-knowledge http://127.0.0.1:${example.port} --list-methods`,
    `  ${buf} curl --protocol grpc --http2-prior-knowledge -d '{"service":""}' http://127.0.0.1:${example.port}/grpc.health.v1.Health/Check`,
    `  ${buf} curl --http2-prior-knowledge -H "authorization: Bearer $TOKEN" -d '{}' http://127.0.0.1:50053/telco.domain.v1.CatalogService/ListPlans`,
    "",
    "Ctrl-C drains and stops the units; `npm run infra:down` stops Kafka and InfluxDB.",
    "",
  ];
  console.log(lines.join("\n"));
  if (!up.every(Boolean)) console.error("some units did not report SERVING within 60 s: see their log lines above");
}

function stop(signal) {
  if (stopping) {
    for (const c of children.values()) c.kill("SIGKILL");
    process.exit(1);
  }
  stopping = true;
  console.log(`\n${signal}: draining ${children.size} unit(s)...`);
  const pending = [...children.values()].map((c) => new Promise((r) => c.once("exit", r)));
  for (const c of children.values()) c.kill("SIGTERM");
  Promise.all(pending).then(() => {
    console.log("all units stopped");
    process.exit(0);
  });
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("exit", () => {
  for (const c of children.values()) c.kill("SIGKILL");
});

main().catch((e) => {
  console.error(`npm start: ${e.message}`);
  stopping = true;
  const pending = [...children.values()].map((c) => new Promise((r) => c.once("exit", r)));
  for (const c of children.values()) c.kill("SIGTERM");
  Promise.all(pending).then(() => process.exit(1));
});
