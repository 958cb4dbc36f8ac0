import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdirSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface UnitProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name) once its output is fully read. */
  exited: Promise<number | string>;
}

/** Starts `services/<unit>/src/main.ts` as its own process, as `npm start` does. */
export function spawnUnit(unit: string, env: Record<string, string>): UnitProcess {
  return spawnScript(`services/${unit}/src/main.ts`, env);
}

/** Runs a TypeScript entry point (path relative to the repository root) as its own process. */
export function spawnScript(script: string, env: Record<string, string>, args: string[] = []): UnitProcess {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: ROOT,
    // Any free metrics port unless the test names one: several units of one kind may run at once.
    // Under `npm test`, debug logs unless the test sets a level: the run's logs are scanned.
    env: { ...process.env, METRICS_PORT: "0", ...(process.env.TEST_LOG_DIR ? { LOG_LEVEL: "debug" } : {}), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  // Under `npm test` everything a process writes is kept for the run's personal-data scan.
  const log = logFileFor(script, child.pid);
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
    if (log) appendFileSync(log, d);
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
    if (log) appendFileSync(log, d);
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("close", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Where a child process's output is kept under `npm test` (TEST_LOG_DIR), or undefined. */
function logFileFor(what: string, pid: number | undefined): string | undefined {
  const dir = process.env.TEST_LOG_DIR;
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  return join(dir, `${what.replace(/[^A-Za-z0-9.-]+/g, "_").slice(-80)}-${pid ?? "x"}.log`);
}

/** Waits until the process logs a JSON line with this message (or dies first). */
export async function waitForLog(p: UnitProcess, msg: RegExp, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of p.stdout().split("\n")) {
      if (!line.startsWith("{")) continue;
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (typeof entry.msg === "string" && msg.test(entry.msg)) return entry;
    }
    if (p.child.exitCode !== null)
      throw new Error(`process exited (${p.child.exitCode}) before logging ${msg}:\n${p.stderr()}${p.stdout()}`);
    if (Date.now() > deadline)
      throw new Error(`no log line ${msg} within ${timeoutMs} ms:\n${p.stderr()}${p.stdout()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function run(
  cmd: string,
  args: string[],
  {
    timeoutMs = 30_000,
    env = {},
    input = "",
  }: { timeoutMs?: number; env?: Record<string, string>; input?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: timeoutMs,
    });
    let stdout = "";
    let stderr = "";
    const log = logFileFor([cmd, ...args].join(" "), child.pid);
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (log) appendFileSync(log, d);
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (log) appendFileSync(log, d);
    });
    child.stdin.end(input);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
