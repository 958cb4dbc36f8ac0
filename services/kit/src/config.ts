/**
 * Configuration from environment variables: read once at start, validated, and a process with a
 * bad setting refuses to start with one message naming every offending variable.
 */

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

interface Base<T> {
  /** Shown in the README's configuration table and in error messages. */
  description: string;
  default?: T;
  /** Values that would leak in logs (keys, passwords) are never echoed back in errors. */
  secret?: boolean;
}

export type Spec =
  | (Base<string> & { type: "string"; pattern?: RegExp })
  | (Base<number> & { type: "int"; min?: number; max?: number })
  | (Base<boolean> & { type: "bool" })
  | (Base<string> & { type: "url"; protocols?: string[] })
  | (Base<string> & { type: "enum"; values: readonly string[] })
  | (Base<string[]> & { type: "list" });

type ValueOf<S extends Spec> = S extends { type: "int" }
  ? number
  : S extends { type: "bool" }
    ? boolean
    : S extends { type: "list" }
      ? string[]
      : string;

export type ConfigOf<T extends Record<string, Spec>> = { [K in keyof T]: ValueOf<T[K]> };

export function defineConfig<T extends Record<string, Spec>>(spec: T): T {
  return spec;
}

function show(spec: Spec, raw: string): string {
  return spec.secret ? "(hidden)" : JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw);
}

function parseOne(name: string, spec: Spec, raw: string): { value?: unknown; problem?: string } {
  switch (spec.type) {
    case "string":
      if (spec.pattern && !spec.pattern.test(raw)) {
        return { problem: `${name} must match ${spec.pattern} (got ${show(spec, raw)})` };
      }
      return { value: raw };
    case "int": {
      if (!/^-?\d+$/.test(raw.trim())) return { problem: `${name} must be an integer (got ${show(spec, raw)})` };
      const n = Number(raw.trim());
      if (spec.min !== undefined && n < spec.min) return { problem: `${name} must be >= ${spec.min} (got ${n})` };
      if (spec.max !== undefined && n > spec.max) return { problem: `${name} must be <= ${spec.max} (got ${n})` };
      return { value: n };
    }
    case "bool": {
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return { value: true };
      if (["0", "false", "no", "off", ""].includes(v)) return { value: false };
      return { problem: `${name} must be true or false (got ${show(spec, raw)})` };
    }
    case "url": {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        return { problem: `${name} must be a URL (got ${show(spec, raw)})` };
      }
      if (spec.protocols && !spec.protocols.includes(u.protocol.replace(/:$/, ""))) {
        return { problem: `${name} must use ${spec.protocols.join(" or ")} (got ${u.protocol.replace(/:$/, "")})` };
      }
      return { value: raw };
    }
    case "enum":
      if (!spec.values.includes(raw)) {
        return { problem: `${name} must be one of ${spec.values.join(", ")} (got ${show(spec, raw)})` };
      }
      return { value: raw };
    case "list":
      return {
        value: raw
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== ""),
      };
  }
}

/** Reads and validates every variable of the spec; throws one ConfigError naming all problems. */
export function loadConfig<T extends Record<string, Spec>>(spec: T, env: Env = process.env): ConfigOf<T> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, s] of Object.entries(spec)) {
    const raw = env[name];
    // Empty counts as unset, except for strings that have a default (where "" is a choice).
    if (raw === undefined || (raw === "" && (s.type !== "string" || s.default === undefined))) {
      if (s.default === undefined) problems.push(`${name} is required: ${s.description}`);
      else out[name] = s.default;
      continue;
    }
    const { value, problem } = parseOne(name, s, raw);
    if (problem) problems.push(problem);
    else out[name] = value;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as ConfigOf<T>;
}

/** For main.ts: a bad configuration prints one clear message and exits 78 (EX_CONFIG). */
export function configOrExit<T>(unit: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${unit}: ${e.message}\n`);
      process.exit(78);
    }
    throw e;
  }
}

/** Markdown rows for the README's configuration table. */
export function describeConfig(spec: Record<string, Spec>): string[] {
  return Object.entries(spec).map(([name, s]) => {
    const def = s.default === undefined ? "(required)" : s.secret ? "(dev value)" : `\`${String(s.default)}\``;
    return `| \`${name}\` | ${def} | ${s.description} |`;
  });
}

/** A URL with its user and password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username) u.username = "***";
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}
