// Development keys for `npm start`: made on first use into ~/.config/telco-platform/dev-keys.env
// (TELCO_DEV_KEYS_FILE overrides), never committed. They live per machine, not per checkout,
// because the local PostgreSQL they seal data in is the machine's: every checkout must open what
// another seeded. In a cluster the same variables come from Kubernetes Secrets.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

const FILE =
  process.env.TELCO_DEV_KEYS_FILE ??
  join(process.env.XDG_CONFIG_HOME || join(homedir(), ".config"), "telco-platform", "dev-keys.env");

export const DEV_KEYS_FILE = FILE;

function generate() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const b64 = (s) => Buffer.from(s, "utf8").toString("base64");
  const keyId = `dev${new Date().toISOString().slice(0, 10).replaceAll("-", "")}`;
  return {
    AUTH_SIGNING_KEY: b64(privateKey.export({ type: "pkcs8", format: "pem" }).toString()),
    AUTH_VERIFY_KEY: b64(publicKey.export({ type: "spki", format: "pem" }).toString()),
    DOMAIN_PII_KEYS: `${keyId}:${randomBytes(32).toString("base64")}`,
    DOMAIN_PII_ACTIVE_KEY: keyId,
    DOMAIN_BLIND_INDEX_KEY: randomBytes(32).toString("base64"),
    // The local admin operator's password (npm start creates the account "admin").
    DEV_ADMIN_PASSWORD: randomBytes(12).toString("base64url"),
  };
}

/** The development keys (created if missing), without overriding what the environment sets. */
export function devKeys(log = console.log) {
  let keys;
  if (existsSync(FILE)) {
    keys = Object.fromEntries(
      readFileSync(FILE, "utf8")
        .split("\n")
        .filter((l) => l.includes("=") && !l.startsWith("#"))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  }
  const fresh = generate();
  if (!keys || Object.keys(fresh).some((k) => !(k in keys))) {
    keys = { ...fresh, ...(keys ?? {}) };
    mkdirSync(dirname(FILE), { recursive: true, mode: 0o700 });
    writeFileSync(
      FILE,
      `# Development keys made by npm start; never commit, never use in production.\n${Object.entries(keys)
        .map(([k, v]) => `${k}=${v}`)
        .join("\n")}\n`,
      { mode: 0o600 },
    );
    log(`[keys] development keys written to ${FILE}`);
  }
  return Object.fromEntries(Object.entries(keys).filter(([k]) => process.env[k] === undefined));
}
