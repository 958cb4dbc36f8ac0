#!/usr/bin/env node
// Contract checks, the same on a laptop and in CI:
//   1. buf lint (STANDARD);
//   2. gen/ is what `buf generate` makes from proto/ now (generated into a temp dir and compared,
//      so the check never touches the working tree);
//   3. buf breaking (FILE) against the previous commit (or against HEAD when proto/ has
//      uncommitted changes). BUF_BREAKING_AGAINST overrides the reference, e.g. ".git#branch=main".
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

  let against = process.env.BUF_BREAKING_AGAINST;
  if (!against) {
    if (!git(["rev-parse", "--verify", "HEAD"]).ok) {
      console.log("[buf breaking] skipped: no commit yet");
      return;
    }
    const dirty = git(["status", "--porcelain", "--", "proto"]).out !== "";
    if (dirty) against = ".git#ref=HEAD";
    else if (git(["rev-parse", "--verify", "HEAD~1"]).ok) against = ".git#ref=HEAD~1";
    else {
      console.log("[buf breaking] skipped: HEAD has no parent (first commit or shallow clone)");
      return;
    }
  }
  runStep(`buf breaking vs ${against}`, "buf", ["breaking", "--against", against]);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    checkContracts();
  } catch (e) {
    console.error(`[contracts] ${e.message}`);
    process.exit(1);
  }
}
