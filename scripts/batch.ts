/**
 * `npm run batch -- <command>`: the batch unit's command line (services/batch/src/cli.ts) with the
 * local development keys npm start made, unless the environment sets SERVICE_SIGNING_KEY.
 */
// @ts-expect-error: a plain .mjs helper shared with the start script
import { devKeys } from "./lib/dev-keys.mjs";

if (!process.env.SERVICE_SIGNING_KEY) {
  process.env.SERVICE_SIGNING_KEY = (devKeys(() => {}) as Record<string, string>).AUTH_SIGNING_KEY;
}
await import("../services/batch/src/cli.js");
