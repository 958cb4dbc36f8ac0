// Installs the project's npm dependencies when they are missing or stale, with only Node's own
// modules (this runs before node_modules exists). The lockfile's hash is kept in node_modules so
// that a warm run costs one file read.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const STAMP = `${ROOT}/node_modules/.telco-install-stamp`;

export function ensureInstalled(log = console.log) {
  const lock = readFileSync(`${ROOT}/package-lock.json`);
  const want = createHash("sha256").update(lock).digest("hex");
  if (existsSync(STAMP) && readFileSync(STAMP, "utf8") === want) return false;
  log("[install] npm ci (dependencies missing or package-lock.json changed)...");
  const started = Date.now();
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) {
    throw new Error(`npm ci failed (exit ${r.status}); see the npm output above`);
  }
  writeFileSync(STAMP, want);
  log(`[install] done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return true;
}

/** Runs a command from node_modules/.bin (or the PATH), streaming its output; throws on failure. */
export function runStep(label, cmd, args, { env, quiet = false } = {}) {
  const started = Date.now();
  const bin = existsSync(`${ROOT}/node_modules/.bin/${cmd}`) ? `${ROOT}/node_modules/.bin/${cmd}` : cmd;
  const r = spawnSync(bin, args, {
    cwd: ROOT,
    stdio: quiet ? ["ignore", "pipe", "pipe"] : "inherit",
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (r.status !== 0) {
    if (quiet) process.stderr.write(`${r.stdout ?? ""}${r.stderr ?? ""}`);
    throw new Error(`${label} failed (exit ${r.status ?? r.signal})`);
  }
  console.log(`[${label}] ok (${secs}s)`);
  return r;
}
