// Local dev/CI infrastructure: PostgreSQL, Redis, InfluxDB 1.x and a single-node
// KRaft Kafka, brought up for real on this machine (no containers here).
//
// Everything must work from a fresh clone on a fresh machine, so missing pieces
// are installed on demand (apt for Debian packages, mvn for the Kafka jars:
// those are the only registries reachable), and everything must be cheap to
// re-run, so each step first checks whether its work is already done.
//
// PostgreSQL and Redis are the machine's own services: we start them if they are
// down but never stop them. InfluxDB and Kafka are processes we own (pid files
// under .run/, state under .data/), so `down` stops them.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureTopics, loadKafkajs } from "./topics.mjs";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const DATA = join(ROOT, ".data");
const RUN = join(ROOT, ".run");
const CACHE = join(ROOT, ".cache");
const LOGS = join(DATA, "logs");
const INFRA = join(ROOT, "scripts", "infra");

export const COMPONENTS = ["postgres", "redis", "influxdb", "kafka"];

// Kafka 4.1.1 is the version we develop against; 4.3.1 is the fallback only
// when the default cannot be resolved (an explicit KAFKA_VERSION is never swapped).
const KAFKA_DEFAULT_VERSION = "4.1.1";
const KAFKA_FALLBACK_VERSION = "4.3.1";
const KAFKA_START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

/** An error whose message is meant for humans, optionally with the log that explains it. */
export class InfraError extends Error {
  constructor(message, { logFiles = [] } = {}) {
    super(message);
    this.logFiles = logFiles;
  }
}

// ---------------------------------------------------------------------------
// small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms) => `${(ms / 1000).toFixed(1)}s`;

function makeLogger(quiet) {
  return (component) => (msg) => {
    if (!quiet) console.log(`[infra] ${component}: ${msg}`);
  };
}

/** Runs a command to completion; never throws for a non-zero exit (callers decide). */
function run(cmd, args, { env, input, logFile, timeoutMs } = {}) {
  return new Promise((resolve) => {
    let child;
    const out = [];
    try {
      child = spawn(cmd, args, {
        env: { ...process.env, ...env },
        stdio: ["pipe", "pipe", "pipe"],
      });
    } catch (err) {
      resolve({ code: 127, out: String(err), error: err });
      return;
    }
    const timer = timeoutMs ? setTimeout(() => child.kill("SIGKILL"), timeoutMs) : null;
    child.stdout.on("data", (d) => out.push(d));
    child.stderr.on("data", (d) => out.push(d));
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      resolve({ code: 127, out: String(error), error });
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      const text = Buffer.concat(out).toString();
      if (logFile)
        writeFileSync(logFile, `$ ${cmd} ${args.join(" ")}\n${text}`, {
          flag: "a",
        });
      resolve({ code: code ?? 1, out: text });
    });
    // A child that exits (or fails to start) before reading its input closes the pipe: EPIPE on
    // stdin is then no error of ours, and its exit code says what happened.
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });
}

function which(cmd) {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = join(dir || ".", cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {}
  }
  return null;
}

async function waitFor(probe, { timeoutMs, intervalMs = 250, abort }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    const why = abort?.();
    if (why) throw why;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

// Written into a service's stdout log before each start, so a failure report
// shows only the latest attempt and not errors left over from earlier ones.
const START_BANNER = "=== infra: starting";

/**
 * Last lines of a log, minus Java stack frames: a JVM failure is mostly
 * `at ...` lines, which would push the one `Caused by:` that matters off screen.
 */
export function tail(file, lines = 30) {
  try {
    return readFileSync(file, "utf8")
      .trimEnd()
      .split("\n")
      .filter((_, i, all) => i >= all.findLastIndex((l) => l.startsWith(START_BANNER)))
      .filter((l) => !/^\s+(at |\.\.\. \d+ more)/.test(l))
      .slice(-lines)
      .join("\n");
  } catch {
    return null;
  }
}

function ensureDir(dir) {
  mkdirSync(dir, { recursive: true });
  return dir;
}

const isLocalHost = (host) =>
  ["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"].includes(host) || host.startsWith("127.");

// apt and dpkg hold a global lock, and components start in parallel: serialize.
let aptQueue = Promise.resolve();
let aptUpdated = false;
function aptInstall(pkgs, log) {
  const job = aptQueue.then(async () => {
    const logFile = join(ensureDir(LOGS), "apt.log");
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const install = () =>
      run("apt-get", ["install", "-y", "--no-install-recommends", ...pkgs], {
        env,
        logFile,
      });
    log(`installing ${pkgs.join(" ")} with apt-get (first run only)...`);
    let res = await install();
    if (res.code !== 0 && !aptUpdated) {
      // Fresh machines often ship with stale or empty package lists.
      log("apt-get install failed, refreshing package lists once and retrying...");
      aptUpdated = true;
      await run("apt-get", ["update"], { env, logFile });
      res = await install();
    }
    if (res.code !== 0)
      throw new InfraError(`apt-get install ${pkgs.join(" ")} failed`, {
        logFiles: [logFile],
      });
  });
  aptQueue = job.catch(() => {});
  return job;
}

/**
 * Debian packages tests run directly rather than as infrastructure: Prometheus and promtool
 * (the observability test scrapes the units with the project's configuration and checks the
 * alert rules).
 */
export async function ensureTools({ quiet = false } = {}) {
  const log = (m) => {
    if (!quiet) console.log(`[infra] ${m}`);
  };
  const missing = [];
  if (!existsSync("/usr/bin/prometheus") || !existsSync("/usr/bin/promtool")) missing.push("prometheus");
  // Debian's Chromium for the portal's browser tests (playwright-core drives it; no browser downloads).
  if (!existsSync("/usr/bin/chromium")) missing.push("chromium");
  // A Korean font: without one the portal's Korean pages render as empty boxes in screenshots.
  if (!existsSync("/usr/share/fonts/truetype/nanum")) missing.push("fonts-nanum");
  if (missing.length > 0) await aptInstall(missing, log);
}

// --- pid files for the processes we own ------------------------------------

function pidFile(name) {
  return join(RUN, `${name}.pid`);
}

function readPid(name) {
  try {
    const pid = Number.parseInt(readFileSync(pidFile(name), "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Alive *and* still the program we started: pids get reused after a reboot or crash. */
function isOurProcess(pid, marker) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (cmdline === "") return false; // zombie
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (/^\d+ \(.*\) Z /.test(stat)) return false;
    return cmdline.includes(marker);
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** Returns the live pid for `name`, removing the pid file if it is stale. */
function livePid(name, marker) {
  const pid = readPid(name);
  if (pid === null) return null;
  if (isOurProcess(pid, marker)) return pid;
  rmSync(pidFile(name), { force: true });
  return null;
}

function spawnDetached(name, cmd, args, { logFile, env, cwd = ROOT }) {
  ensureDir(RUN);
  ensureDir(LOGS);
  const fd = openSync(logFile, "a");
  try {
    writeFileSync(fd, `${START_BANNER} ${cmd} at ${new Date().toISOString()} ===\n`);
    // detached + own stdio + unref: the service must outlive this script (and npm).
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      detached: true,
      stdio: ["ignore", fd, fd],
    });
    child.unref();
    if (!child.pid)
      throw new InfraError(`${name}: failed to spawn ${cmd}`, {
        logFiles: [logFile],
      });
    writeFileSync(pidFile(name), `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function stopOwned(name, marker, log) {
  const pid = livePid(name, marker);
  if (pid === null) {
    log("not running (no live pid file)");
    return false;
  }
  const t0 = Date.now();
  log(`stopping pid ${pid}...`);
  process.kill(pid, "SIGTERM");
  const gone = await waitFor(() => !isOurProcess(pid, marker), {
    timeoutMs: STOP_TIMEOUT_MS,
    intervalMs: 200,
  });
  if (!gone) {
    log(`did not exit within ${STOP_TIMEOUT_MS / 1000}s, sending SIGKILL`);
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
    await waitFor(() => !isOurProcess(pid, marker), {
      timeoutMs: 5_000,
      intervalMs: 100,
    });
  }
  rmSync(pidFile(name), { force: true });
  log(`stopped (${seconds(Date.now() - t0)})`);
  return true;
}

/**
 * Serializes concurrent `up`s (a developer's infra:up racing the test runner's):
 * two starters would each spawn a broker, and the loser's pid file would hide
 * the winner from `down`. A holder that died leaves a lock we can take over.
 */
async function withLock(name, log, fn) {
  const file = join(ensureDir(RUN), `${name}.lock`);
  const deadline = Date.now() + 10 * 60_000; // a cold apt + mvn can be slow
  let announced = false;
  for (;;) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
      const holder = Number.parseInt(readFileSync(file, "utf8"), 10);
      let alive = false;
      try {
        process.kill(holder, 0);
        alive = true;
      } catch {}
      if (!alive || holder === process.pid) {
        rmSync(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new InfraError(`${name}: still locked by pid ${holder} (${file})`);
      if (!announced) log(`another infra run (pid ${holder}) is starting it, waiting...`);
      announced = true;
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}

/** Rejects early if a process we are waiting on has already died. */
function diedCheck(name, pid, marker, logFiles) {
  return () => {
    if (isOurProcess(pid, marker)) return null;
    rmSync(pidFile(name), { force: true });
    return new InfraError(`${name}: process ${pid} exited during startup`, {
      logFiles,
    });
  };
}

// ---------------------------------------------------------------------------
// PostgreSQL (machine service)

function pgConfig(env = process.env) {
  return {
    host: env.PGHOST || "127.0.0.1",
    port: env.PGPORT || "5432",
    user: env.PGUSER || "postgres",
  };
}

const PG_DATABASES = ["telco", "telco_test"];

async function pgReady({ host, port }) {
  if (!which("pg_isready")) return false;
  return (await run("pg_isready", ["-h", host, "-p", port], { timeoutMs: 5_000 })).code === 0;
}

const postgres = {
  address: () => {
    const c = pgConfig();
    return `${c.host}:${c.port}`;
  },
  isUp: () => pgReady(pgConfig()),
  async up(log) {
    const cfg = pgConfig();
    if (await pgReady(cfg)) {
      log(`already accepting connections on ${cfg.host}:${cfg.port}`);
    } else {
      if (!isLocalHost(cfg.host))
        throw new InfraError(`postgres: ${cfg.host}:${cfg.port} is not reachable and is not local, so not starting it`);
      if (!which("pg_ctlcluster") || !existsSync("/etc/postgresql"))
        await aptInstall(["postgresql", "postgresql-client"], log);
      const versions = existsSync("/etc/postgresql") ? readdirSync("/etc/postgresql").sort() : [];
      const version = versions.at(-1);
      if (!version) throw new InfraError("postgres: no cluster under /etc/postgresql");
      log(`starting cluster ${version}/main...`);
      const logFile = join(ensureDir(LOGS), "postgres-start.log");
      const res = await run("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "start"], { logFile });
      const pgLog = `/var/log/postgresql/postgresql-${version}-main.log`;
      if (res.code !== 0 && !(await pgReady(cfg))) {
        throw new InfraError(`postgres: pg_ctlcluster start failed (exit ${res.code})`, { logFiles: [logFile, pgLog] });
      }
      const ready = await waitFor(() => pgReady(cfg), { timeoutMs: 30_000, intervalMs: 300 });
      if (!ready) {
        throw new InfraError(`postgres: not accepting connections on ${cfg.host}:${cfg.port} after 30s`, {
          logFiles: [pgLog],
        });
      }
    }
    const base = ["-h", cfg.host, "-p", cfg.port, "-U", cfg.user];
    for (const db of PG_DATABASES) {
      const exists = `select 1 from pg_database where datname='${db}'`;
      const q = await run("psql", [...base, "-d", "postgres", "-tAc", exists]);
      if (q.code !== 0)
        throw new InfraError(`postgres: cannot query as ${cfg.user} (trust auth expected): ${q.out.trim()}`);
      if (q.out.trim() === "1") continue;
      const c = await run("createdb", [...base, db]);
      // A concurrent `up` may have won the race; that is fine.
      if (c.code !== 0 && !/already exists/.test(c.out))
        throw new InfraError(`postgres: createdb ${db} failed: ${c.out.trim()}`);
      log(`created database ${db}`);
    }
    return `${cfg.host}:${cfg.port}`;
  },
  async down(log) {
    log("left running (machine service, not started by this script)");
  },
};

// ---------------------------------------------------------------------------
// Redis (machine service)

function redisConfig(env = process.env) {
  const url = new URL(env.REDIS_URL || "redis://127.0.0.1:6379");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return { url: url.toString(), host, port: url.port || "6379" };
}

async function redisPing({ url }) {
  if (!which("redis-cli")) return false;
  const res = await run("redis-cli", ["-u", url, "ping"], { timeoutMs: 5_000 });
  return res.code === 0 && res.out.includes("PONG");
}

const redis = {
  address: () => {
    const c = redisConfig();
    return `${c.host}:${c.port}`;
  },
  isUp: () => redisPing(redisConfig()),
  async up(log) {
    const cfg = redisConfig();
    const addr = `${cfg.host}:${cfg.port}`;
    if (await redisPing(cfg)) {
      log(`already answering on ${addr}`);
      return addr;
    }
    if (!isLocalHost(cfg.host))
      throw new InfraError(`redis: ${addr} is not reachable and is not local, so not starting it`);
    if (!which("redis-server") || !which("redis-cli")) await aptInstall(["redis-server"], log);
    ensureDir("/var/lib/redis");
    ensureDir("/var/log/redis");
    const logFile = "/var/log/redis/ci.log";
    log(`starting redis-server on ${addr}...`);
    // Persistence off: this is a cache/queue for tests, and RDB snapshots of a
    // busy test run only cost IO.
    const res = await run("redis-server", [
      "--daemonize",
      "yes",
      "--bind",
      "127.0.0.1",
      "-::1",
      "--port",
      cfg.port,
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      "/var/lib/redis",
      "--logfile",
      logFile,
    ]);
    if (res.code !== 0)
      throw new InfraError(`redis: redis-server failed to start: ${res.out.trim()}`, { logFiles: [logFile] });
    if (
      !(await waitFor(() => redisPing(cfg), {
        timeoutMs: 10_000,
        intervalMs: 200,
      }))
    ) {
      throw new InfraError(`redis: no PONG from ${addr} after 10s`, {
        logFiles: [logFile],
      });
    }
    return addr;
  },
  async down(log) {
    log("left running (machine service)");
  },
};

// ---------------------------------------------------------------------------
// InfluxDB 1.x (our process)

const INFLUX_DIR = join(DATA, "influxdb");
const INFLUX_DATABASES = ["telco", "telco_test"];
const INFLUX_MARKER = "influxd";

function influxConfig(env = process.env) {
  const url = new URL(env.INFLUX_URL || "http://127.0.0.1:8086");
  return { url: url.origin, host: url.hostname, port: url.port || "8086" };
}

async function influxPing({ url }) {
  try {
    const res = await fetch(`${url}/ping`, {
      signal: AbortSignal.timeout(1_000),
    });
    return res.status === 204;
  } catch {
    return false;
  }
}

function writeInfluxConfig(port) {
  ensureDir(INFLUX_DIR);
  const file = join(INFLUX_DIR, "influxdb.conf");
  // Every listener except HTTP is pinned to loopback or disabled: the Debian
  // defaults bind the RPC port on all interfaces, and _internal monitoring
  // writes would just be noise (and disk) on a dev box.
  const conf = `# Generated by scripts/infra/lib.mjs; rewritten on every start.
reporting-disabled = true
bind-address = "127.0.0.1:8088"

[meta]
  dir = "${join(INFLUX_DIR, "meta")}"
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = "${join(INFLUX_DIR, "data")}"
  wal-dir = "${join(INFLUX_DIR, "wal")}"
  index-version = "tsi1"
  query-log-enabled = false
  trace-logging-enabled = false
  cache-max-memory-size = "256m"

[coordinator]
  write-timeout = "10s"

[retention]
  enabled = true
  check-interval = "30m"

[shard-precreation]
  enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:${port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
  flux-enabled = false

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false
`;
  writeFileSync(file, conf);
  return file;
}

async function influxEnsureDatabases({ url }) {
  for (const db of INFLUX_DATABASES) {
    // CREATE DATABASE is idempotent in InfluxDB 1.x.
    const res = await fetch(`${url}/query`, {
      method: "POST",
      body: new URLSearchParams({ q: `CREATE DATABASE ${db}` }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = await res.text();
    if (!res.ok || body.includes('"error"'))
      throw new InfraError(`influxdb: CREATE DATABASE ${db} failed: ${res.status} ${body}`);
  }
}

const influxdb = {
  address: () => {
    const c = influxConfig();
    return `${c.host}:${c.port}`;
  },
  isUp: () => influxPing(influxConfig()),
  async up(log) {
    const cfg = influxConfig();
    const addr = `${cfg.host}:${cfg.port}`;
    const logFile = join(LOGS, "influxdb.log");
    if (await influxPing(cfg)) {
      log(`already answering on ${addr}`);
    } else {
      if (!isLocalHost(cfg.host))
        throw new InfraError(`influxdb: ${addr} is not reachable and is not local, so not starting it`);
      let pid = livePid("influxdb", INFLUX_MARKER);
      if (pid) {
        log(`pid ${pid} is running but not answering yet, waiting...`);
      } else {
        if (!existsSync("/usr/bin/influxd")) await aptInstall(["influxdb"], log);
        const conf = writeInfluxConfig(cfg.port);
        log(`starting influxd on ${addr}...`);
        pid = spawnDetached("influxdb", "/usr/bin/influxd", ["-config", conf], {
          logFile,
        });
      }
      const ok = await waitFor(() => influxPing(cfg), {
        timeoutMs: 30_000,
        abort: diedCheck("influxdb", pid, INFLUX_MARKER, [logFile]),
      });
      if (!ok)
        throw new InfraError(`influxdb: /ping did not answer 204 within 30s`, {
          logFiles: [logFile],
        });
    }
    await influxEnsureDatabases(cfg);
    return addr;
  },
  down: (log) => stopOwned("influxdb", INFLUX_MARKER, log),
  purge: () => rmSync(INFLUX_DIR, { recursive: true, force: true }),
};

// ---------------------------------------------------------------------------
// Kafka 4.x, KRaft combined mode, jars from Maven Central (our process)

const KAFKA_DIR = join(DATA, "kafka");
const KAFKA_MARKER = "kafka.Kafka";
const KAFKA_POM = join(INFRA, "kafka", "pom.xml");
const KAFKA_LOG4J = join(INFRA, "kafka", "log4j2.properties");

function kafkaConfig(env = process.env) {
  const brokers = (env.KAFKA_BROKERS || "127.0.0.1:9092")
    .split(",")
    .map((b) => b.trim())
    .filter(Boolean);
  const first = brokers[0];
  const idx = first.lastIndexOf(":");
  const host = first.slice(0, idx).replace(/^\[|\]$/g, "");
  const port = Number(first.slice(idx + 1));
  return {
    brokers,
    host,
    port,
    controllerPort: port + 1,
    heap: env.KAFKA_HEAP || "512m",
  };
}

/** Whether a broker answers Kafka protocol requests; a bare TCP accept happens long before that. */
async function kafkaAnswers(brokers, timeoutMs = 1_500) {
  let admin;
  try {
    const { Kafka, logLevel } = await loadKafkajs();
    const kafka = new Kafka({
      clientId: "infra-probe",
      brokers,
      logLevel: logLevel.NOTHING,
      connectionTimeout: timeoutMs,
      requestTimeout: timeoutMs,
      retry: { retries: 0 },
    });
    admin = kafka.admin();
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0;
  } catch (err) {
    if (/kafkajs is not installed/.test(err.message)) throw err;
    return false;
  } finally {
    await admin?.disconnect().catch(() => {});
  }
}

function pomHash(version) {
  return createHash("sha256").update(readFileSync(KAFKA_POM)).update(version).digest("hex").slice(0, 16);
}

async function ensureJava(log) {
  if (!which("java")) await aptInstall(["openjdk-17-jre-headless"], log);
}

/**
 * Resolves the broker classpath into .cache/kafka/<version>/lib. A marker file
 * (keyed by the POM contents) makes the warm path a single stat call; the
 * directory is built beside and renamed into place so an interrupted mvn never
 * leaves a half-filled lib dir that looks complete.
 */
async function ensureKafkaJars(version, log) {
  const dir = join(CACHE, "kafka", version);
  const lib = join(dir, "lib");
  const marker = join(dir, ".resolved");
  const hash = pomHash(version);
  if (existsSync(marker) && readFileSync(marker, "utf8").trim() === hash && existsSync(lib)) return lib;
  if (!which("mvn")) await aptInstall(["maven"], log);
  log(`resolving jars for ${version} with mvn (first run only)...`);
  const tmp = join(dir, `lib.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  ensureDir(dir);
  const logFile = join(ensureDir(LOGS), "kafka-mvn.log");
  const t0 = Date.now();
  const res = await run(
    "mvn",
    [
      "-q",
      "-B",
      "-Dstyle.color=never",
      "-f",
      KAFKA_POM,
      `-Dkafka.version=${version}`,
      "dependency:copy-dependencies",
      `-DoutputDirectory=${tmp}`,
    ],
    { logFile },
  );
  if (res.code !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { recursive: true, force: true });
    throw new InfraError(`kafka: mvn could not resolve org.apache.kafka:kafka_2.13:${version}`, {
      logFiles: [logFile],
    });
  }
  rmSync(lib, { recursive: true, force: true });
  renameSync(tmp, lib);
  writeFileSync(marker, `${hash}\n`);
  log(`resolved ${readdirSync(lib).length} jars in ${seconds(Date.now() - t0)}`);
  return lib;
}

async function resolveKafka(log) {
  const explicit = process.env.KAFKA_VERSION;
  try {
    return {
      version: explicit || KAFKA_DEFAULT_VERSION,
      lib: await ensureKafkaJars(explicit || KAFKA_DEFAULT_VERSION, log),
    };
  } catch (err) {
    if (explicit) throw err;
    log(`${KAFKA_DEFAULT_VERSION} did not resolve, trying ${KAFKA_FALLBACK_VERSION}`);
    return {
      version: KAFKA_FALLBACK_VERSION,
      lib: await ensureKafkaJars(KAFKA_FALLBACK_VERSION, log),
    };
  }
}

/** Kafka's Uuid format (16 random bytes, base64url); a leading '-' would read as a CLI flag. */
function newClusterId() {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

function writeServerProperties(cfg) {
  const logDirs = join(KAFKA_DIR, "logs");
  const h = cfg.host.includes(":") ? `[${cfg.host}]` : cfg.host;
  const props = `# Generated by scripts/infra/lib.mjs; rewritten on every start.
# Single node, KRaft combined mode (broker + controller in one JVM).
process.roles=broker,controller
node.id=1
# Dynamic quorum (KIP-853): works with \`StorageTool format --standalone\`.
controller.quorum.bootstrap.servers=${h}:${cfg.controllerPort}
listeners=PLAINTEXT://${h}:${cfg.port},CONTROLLER://${h}:${cfg.controllerPort}
# 4.x wants the controller listener advertised too, so the voter can register
# its endpoint with the quorum.
advertised.listeners=PLAINTEXT://${h}:${cfg.port},CONTROLLER://${h}:${cfg.controllerPort}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${logDirs}

# One broker: every internal topic must have RF 1, or consumer groups never
# find a coordinator and transactions/share groups never initialise.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

num.partitions=1
# Topics come from services/kit/src/topics.json; a typo in a topic name should
# fail loudly, not silently create a new topic.
auto.create.topics.enable=false
delete.topic.enable=true
# Tests join and leave groups constantly; the 3s default delay only slows them.
group.initial.rebalance.delay.ms=0

# Sized for a 2-core dev box / CI runner.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.retention.hours=24
log.retention.bytes=1073741824
log.segment.bytes=67108864
log.retention.check.interval.ms=300000
`;
  ensureDir(KAFKA_DIR);
  const file = join(KAFKA_DIR, "server.properties");
  writeFileSync(file, props);
  return { file, logDirs };
}

function parseMegabytes(size) {
  const m = /^(\d+)([kmg]?)$/i.exec(size);
  if (!m) throw new InfraError(`kafka: KAFKA_HEAP=${size} is not a JVM size like 512m`);
  const n = Number(m[1]);
  return { k: n / 1024, m: n, g: n * 1024, "": n / (1024 * 1024) }[m[2].toLowerCase()];
}

async function formatKafkaStorage({ lib, file, logDirs }, log) {
  if (existsSync(join(logDirs, "meta.properties"))) return;
  const idFile = join(KAFKA_DIR, "cluster.id");
  // Keep the id across re-formats so a purge-less reformat does not orphan data dirs.
  let clusterId = existsSync(idFile) ? readFileSync(idFile, "utf8").trim() : "";
  if (!clusterId) {
    clusterId = newClusterId();
    writeFileSync(idFile, `${clusterId}\n`);
  }
  log(`formatting storage (cluster id ${clusterId})...`);
  const logFile = join(LOGS, "kafka-format.log");
  const res = await run(
    "java",
    [
      `-Dlog4j2.configurationFile=${KAFKA_LOG4J}`,
      `-Dkafka.logs.dir=${LOGS}`,
      "-cp",
      `${lib}/*`,
      "kafka.tools.StorageTool",
      "format",
      "-t",
      clusterId,
      "-c",
      file,
      "--standalone",
    ],
    { logFile },
  );
  if (res.code !== 0)
    throw new InfraError(`kafka: StorageTool format failed (exit ${res.code})`, { logFiles: [logFile] });
}

const kafka = {
  address: () => kafkaConfig().brokers.join(","),
  isUp: () => kafkaAnswers(kafkaConfig().brokers),
  async up(log) {
    const cfg = kafkaConfig();
    const addr = cfg.brokers.join(",");
    const outFile = join(LOGS, "kafka.out");
    const serverLog = join(LOGS, "server.log");
    if (await kafkaAnswers(cfg.brokers)) {
      log(`already answering on ${addr}`);
    } else {
      if (!isLocalHost(cfg.host) || cfg.brokers.length > 1) {
        throw new InfraError(`kafka: ${addr} is not answering and is not a single local broker, so not starting it`);
      }
      let pid = livePid("kafka", KAFKA_MARKER);
      if (pid) {
        log(`pid ${pid} is running but not answering yet, waiting...`);
      } else {
        await ensureJava(log);
        const { version, lib } = await resolveKafka(log);
        const props = writeServerProperties(cfg);
        await formatKafkaStorage({ lib, ...props }, log);
        const heapMb = parseMegabytes(cfg.heap);
        log(`starting broker ${version} on ${addr} (heap ${cfg.heap})...`);
        pid = spawnDetached(
          "kafka",
          "java",
          [
            `-Xms${Math.min(256, heapMb)}m`,
            `-Xmx${cfg.heap}`,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            `-Dlog4j2.configurationFile=${KAFKA_LOG4J}`,
            `-Dkafka.logs.dir=${LOGS}`,
            "-cp",
            `${lib}/*`,
            "kafka.Kafka",
            props.file,
          ],
          { logFile: outFile },
        );
      }
      const ok = await waitFor(() => kafkaAnswers(cfg.brokers), {
        timeoutMs: KAFKA_START_TIMEOUT_MS,
        intervalMs: 500,
        abort: diedCheck("kafka", pid, KAFKA_MARKER, [outFile, serverLog]),
      });
      if (!ok) {
        throw new InfraError(
          `kafka: broker did not answer on ${addr} within ${KAFKA_START_TIMEOUT_MS / 1000}s (pid ${pid} left running)`,
          {
            logFiles: [outFile, serverLog],
          },
        );
      }
    }
    const res = await ensureTopics({ brokers: cfg.brokers, log });
    if (res.created.length === 0 && res.grown.length === 0) log(`topics ok (${res.unchanged.length})`);
    return addr;
  },
  down: (log) => stopOwned("kafka", KAFKA_MARKER, log),
  purge: () => rmSync(KAFKA_DIR, { recursive: true, force: true }),
};

const IMPL = { postgres, redis, influxdb, kafka };
// Components whose processes this script owns (pid files, `down` stops them).
const OWNED = new Set(["influxdb", "kafka"]);

function select(only) {
  if (!only || only.length === 0) return COMPONENTS;
  const unknown = only.filter((c) => !COMPONENTS.includes(c));
  if (unknown.length > 0)
    throw new InfraError(`unknown component(s): ${unknown.join(", ")} (known: ${COMPONENTS.join(", ")})`);
  return COMPONENTS.filter((c) => only.includes(c));
}

// ---------------------------------------------------------------------------
// public API

/**
 * Brings the selected components up, in parallel (they are independent and the
 * slow ones - apt, mvn, JVM start - overlap nicely). Resolves to per-component
 * results; rejects with an InfraError (after all components finished) if any failed.
 */
export async function infraUp({ only, quiet = false } = {}) {
  const logger = makeLogger(quiet);
  const names = select(only);
  const t0 = Date.now();
  const results = await Promise.all(
    names.map(async (name) => {
      const start = Date.now();
      try {
        const log = logger(name);
        const address = OWNED.has(name)
          ? await withLock(name, log, () => IMPL[name].up(log))
          : await IMPL[name].up(log);
        const ms = Date.now() - start;
        logger(name)(`up on ${address} (${seconds(ms)})`);
        return { name, ok: true, address, ms };
      } catch (error) {
        return { name, ok: false, error, ms: Date.now() - start };
      }
    }),
  );
  const summary = {
    ok: results.every((r) => r.ok),
    results,
    ms: Date.now() - t0,
  };
  if (!summary.ok) {
    const failed = results.filter((r) => !r.ok);
    const err = new InfraError(failed.map((r) => r.error.message).join("\n"), {
      logFiles: failed.flatMap((r) => r.error.logFiles ?? []),
    });
    err.summary = summary;
    throw err;
  }
  return summary;
}

export async function infraDown({ only, purge = false, quiet = false } = {}) {
  const logger = makeLogger(quiet);
  const names = select(only);
  // Sequential: stopping is quick and interleaved shutdown output is hard to read.
  for (const name of names) {
    const impl = IMPL[name];
    await impl.down(logger(name));
    if (purge && impl.purge) {
      impl.purge();
      logger(name)("purged data directory");
    }
  }
}

export async function infraStatus({ only } = {}) {
  const names = select(only);
  const results = await Promise.all(
    names.map(async (name) => {
      const impl = IMPL[name];
      let up = false;
      try {
        up = await impl.isUp();
      } catch {}
      const pid = OWNED.has(name) ? livePid(name, name === "kafka" ? KAFKA_MARKER : INFLUX_MARKER) : null;
      return { name, up, address: impl.address(), pid };
    }),
  );
  return { ok: results.every((r) => r.up), results };
}
