/**
 * Prints an access token signed with the development key (AUTH_SIGNING_KEY from the environment,
 * else ~/.config/telco-platform/dev-keys.env), for buf curl / grpcurl and scripts:
 *   npm run token -- --role admin
 *   npm run token -- --role subscriber --subscription L0000000001 [--subscription ...]
 *   npm run token -- --role service --subject usage --ttl 600
 */
import { parseArgs } from "node:util";
import { ROLES, type RoleName, TokenSigner } from "../services/kit/src/auth.js";
// @ts-expect-error: a plain .mjs helper shared with the start script
import { devKeys } from "./lib/dev-keys.mjs";

const USAGE =
  "usage: npm run token -- --role admin|operator|viewer|subscriber|service [--subscription ID ...] [--subject NAME] [--ttl SECONDS]";

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values: { role?: string; subscription?: string[]; subject?: string; ttl?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      role: { type: "string" },
      subscription: { type: "string", multiple: true },
      subject: { type: "string" },
      ttl: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }));
} catch (e) {
  fail((e as Error).message);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const role = values.role as RoleName | undefined;
if (!role || !ROLES.includes(role)) fail(`--role must be one of ${ROLES.join(", ")}`);
const lines = values.subscription ?? [];
if (role === "subscriber" && lines.length === 0) fail("a subscriber token needs at least one --subscription");
if (role !== "subscriber" && lines.length > 0) fail("--subscription is only for --role subscriber");
const ttl = Number(values.ttl ?? 3600);
if (!Number.isInteger(ttl) || ttl < 60 || ttl > 7 * 86_400) fail("--ttl must be whole seconds between 60 and 604800");

const key = process.env.AUTH_SIGNING_KEY ?? (devKeys(() => {}) as Record<string, string>).AUTH_SIGNING_KEY;
if (!key) fail("no AUTH_SIGNING_KEY in the environment and no development keys");
const signer = await TokenSigner.fromPrivateKey(key);
const subject = values.subject ?? (role === "subscriber" ? `subscriber:${lines[0]}` : `dev-${role}`);
const { token } = await signer.sign({ subject, role, subscriptionIds: lines }, ttl);
process.stdout.write(`${token}\n`);
