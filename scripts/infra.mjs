#!/usr/bin/env node
// CLI for local infrastructure; the work is in scripts/infra/lib.mjs so the test
// runner can call it in-process.
//
//   node scripts/infra.mjs up [--only kafka,redis] [--quiet]
//   node scripts/infra.mjs down [--only ...] [--purge]
//   node scripts/infra.mjs status [--only ...]
import { parseArgs } from "node:util";
import { InfraError, infraDown, infraStatus, infraUp, tail } from "./infra/lib.mjs";

const USAGE = "usage: node scripts/infra.mjs up|down|status [--only postgres,redis,influxdb,kafka] [--purge] [--quiet]";

function printFailure(err) {
  console.error(`[infra] FAILED: ${err.message}`);
  for (const file of new Set(err.logFiles ?? [])) {
    const text = tail(file, 25);
    if (text) console.error(`\n--- last lines of ${file} ---\n${text}\n---`);
  }
  if (!(err instanceof InfraError)) console.error(err.stack);
}

function printSummary({ results, ms }) {
  console.log(`[infra] summary (${(ms / 1000).toFixed(1)}s total):`);
  for (const r of results) {
    const state = r.ok ? `up    ${r.address}` : `FAILED ${r.error.message.split("\n")[0]}`;
    console.log(`[infra]   ${r.name.padEnd(9)} ${state}  (${(r.ms / 1000).toFixed(1)}s)`);
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      only: { type: "string" },
      purge: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const [command] = positionals;
  const only = values.only
    ? values.only
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  switch (command) {
    case "up": {
      try {
        const summary = await infraUp({ only, quiet: values.quiet });
        if (!values.quiet) printSummary(summary);
        return 0;
      } catch (err) {
        if (err.summary) printSummary(err.summary);
        throw err;
      }
    }
    case "down":
      await infraDown({ only, purge: values.purge, quiet: values.quiet });
      return 0;
    case "status": {
      const { ok, results } = await infraStatus({ only });
      for (const r of results) {
        const pid = r.pid ? `  pid ${r.pid}` : "";
        console.log(`[infra] ${r.name.padEnd(9)} ${r.up ? "up  " : "down"}  ${r.address}${pid}`);
      }
      return ok ? 0 : 1;
    }
    default:
      console.error(USAGE);
      return 2;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    printFailure(err);
    process.exitCode = 1;
  },
);
