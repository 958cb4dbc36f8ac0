#!/usr/bin/env node
// Contract checks, the same on a laptop and in CI:
//   1. buf lint (STANDARD);
//   2. gen/ is what `buf generate` makes from proto/ now (generated into a temp dir and compared,
//      so the check never touches the working tree);
//   3. buf breaking (FILE): HEAD against its parent commit, and uncommitted proto/ edits against
//      HEAD. A shallow clone fails (it cannot see the parent). BUF_BREAKING_AGAINST replaces both
//      with one reference, e.g. ".git#branch=main".
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { ROOT, runStep } from "./lib/install.mjs";

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

function git(args) {
  const r = spawnSync("git", args, { cwd: ROOT, encoding: "utf8" });
  return { ok: r.status === 0, out: (r.stdout ?? "").trim() };
}

export function checkContracts() {
  runStep("buf lint", "buf", ["lint"]);

  const tmp = mkdtempSync(join(tmpdir(), "telco-gen-"));
  try {
    const template = JSON.stringify({
      version: "v2",
      inputs: [{ directory: "proto" }],
      plugins: [
        { local: `${ROOT}/node_modules/.bin/protoc-gen-es`, out: tmp, opt: ["target=ts", "import_extension=js"] },
      ],
    });
    runStep("buf generate (drift check)", "buf", ["generate", "--template", template]);
    const want = listFiles(tmp);
    const have = listFiles(join(ROOT, "gen"));
    const stale = [
      ...want.filter((f) => !have.includes(f)).map((f) => `missing gen/${f}`),
      ...have.filter((f) => !want.includes(f)).map((f) => `extra gen/${f}`),
      ...want
        .filter((f) => have.includes(f))
        .filter((f) => !readFileSync(join(tmp, f)).equals(readFileSync(join(ROOT, "gen", f))))
        .map((f) => `changed gen/${f}`),
    ];
    if (stale.length > 0) {
      throw new Error(`gen/ is stale; run \`npm run gen\` and commit the result:\n  ${stale.join("\n  ")}`);
    }
    console.log(`[gen] up to date (${want.length} files)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  if (process.env.BUF_BREAKING_AGAINST) {
    runStep(`buf breaking vs ${process.env.BUF_BREAKING_AGAINST}`, "buf", [
      "breaking",
      "--against",
      process.env.BUF_BREAKING_AGAINST,
    ]);
    return;
  }
  if (!git(["rev-parse", "--verify", "HEAD"]).ok) {
    console.log("[buf breaking] skipped: no commit yet");
    return;
  }
  if (git(["rev-parse", "--is-shallow-repository"]).out === "true") {
    throw new Error(
      "buf breaking needs the previous commit, but this clone is shallow: `git fetch --unshallow` (or set BUF_BREAKING_AGAINST)",
    );
  }
  // Uncommitted proto/ edits are checked against HEAD; HEAD itself against its parent.
  if (git(["status", "--porcelain", "--", "proto"]).out !== "") {
    runStep("buf breaking vs HEAD (uncommitted proto/ changes)", "buf", ["breaking", "--against", ".git#ref=HEAD"]);
  }
  if (!git(["rev-parse", "--verify", "HEAD~1"]).ok) {
    console.log("[buf breaking] HEAD is the first commit: nothing earlier to compare with");
    return;
  }
  const headOnly = mkdtempSync(join(tmpdir(), "telco-head-"));
  try {
    // HEAD's own tree (not the working tree) against HEAD~1.
    const archive = spawnSync("sh", ["-c", `git archive HEAD proto buf.yaml | tar -x -C '${headOnly}'`], { cwd: ROOT });
    if (archive.status !== 0) throw new Error("git archive HEAD failed");
    runStep("buf breaking: HEAD vs HEAD~1", "buf", ["breaking", headOnly, "--against", ".git#ref=HEAD~1"]);
  } finally {
    rmSync(headOnly, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    checkContracts();
  } catch (e) {
    console.error(`[contracts] ${e.message}`);
    process.exit(1);
  }
}
