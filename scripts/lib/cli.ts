import { type ParseArgsConfig, parseArgs } from "node:util";

/**
 * Command-line flags of a script, parsed strictly: misuse prints "<command>: <what is wrong>"
 * and the usage on stderr and exits 2; --help prints the usage and exits 0.
 */
export function cli(command: string, usage: string, options: NonNullable<ParseArgsConfig["options"]>) {
  const fail = (msg: string): never => {
    process.stderr.write(`${command}: ${msg}\n${usage}\n`);
    process.exit(2);
  };
  let values: Record<string, string | boolean | (string | boolean)[] | undefined> = {};
  try {
    values = parseArgs({ options: { ...options, help: { type: "boolean", default: false } }, strict: true }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  /** A number flag within [min, max] (integers only when `int`). */
  const num = (name: string, min: number, max: number, int = true): number => {
    const raw = String(values[name]);
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) {
      fail(`--${name} must be ${int ? "an integer" : "a number"} from ${min} to ${max} (got ${JSON.stringify(raw)})`);
    }
    return v;
  };
  return { values, num, fail };
}
