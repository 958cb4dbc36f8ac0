import { readdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Logger } from "../../../kit/src/logger.js";
import type { ChannelName } from "../store/template-store.js";

/** What a provider is handed: the rendered text and where it goes (personal data: never logged). */
export interface Outgoing {
  messageId: string;
  subscriptionId: string;
  /** "010-XXXX-XXXX" for SMS. */
  phoneNumber: string;
  email: string;
  subject: string;
  body: string;
}

/**
 * How a send ended. Only `sent` means the provider took it. `unavailable`: not handed over at all
 * (no session, connection refused): waits for the provider without using an attempt.
 * `transient`: refused for now (throttled, queue full): retried with backoff up to the limit.
 * `permanent`: will never work (invalid number): failed at once. `unknown`: written to the
 * provider but no answer came: it may have gone out, so it is never sent again (at most once).
 */
export type Outcome =
  | { kind: "sent"; providerIds: string[]; segments?: number }
  | { kind: "unavailable" | "transient" | "permanent" | "unknown"; reason: string };

/** A delivery receipt: the provider's id of a part and its final state. */
export interface Receipt {
  providerId: string;
  /** SMPP stat text, e.g. DELIVRD, UNDELIV, EXPIRED, REJECTD. */
  stat: string;
}

export interface Provider {
  readonly name: string;
  readonly channel: ChannelName;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Whether a send could be handed over now (false while the SMSC is unreachable). */
  available(): boolean;
  send(m: Outgoing): Promise<Outcome>;
}

export interface ProviderContext {
  env: Record<string, string | undefined>;
  logger: Logger;
  /** Receipts the provider gets later (SMPP deliver_sm). */
  onReceipt: (r: Receipt) => Promise<void>;
}

/**
 * A provider module: one file in this directory exporting `provider`. Adding a provider touches
 * that one file: modules are found here at start and picked by name with MESSAGE_PROVIDER_<CHANNEL>.
 */
export interface ProviderModule {
  name: string;
  channel: ChannelName;
  /** Settings it reads from the environment, for the README and errors: name → meaning. */
  settings: Record<string, string>;
  create(ctx: ProviderContext): Provider;
}

/** Every provider module of this directory, by name. */
export async function providerModules(): Promise<Map<string, ProviderModule>> {
  const here = dirname(fileURLToPath(import.meta.url));
  const out = new Map<string, ProviderModule>();
  for (const file of readdirSync(here).sort()) {
    if (!/\.(ts|js)$/.test(file) || file.endsWith(".d.ts") || file.startsWith("provider.")) continue;
    const mod = (await import(pathToFileURL(`${here}/${file}`).href)) as { provider?: ProviderModule };
    if (mod.provider) out.set(mod.provider.name, mod.provider);
  }
  return out;
}
