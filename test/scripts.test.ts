/** The command-line tools operators use: tokens for buf curl, operator accounts. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { migrateAll } from "../scripts/migrate.js";
import { OperatorStore } from "../services/domain/src/store/operator-store.js";
import { createKnex } from "../services/kit/src/postgres.js";
import { AUTH_KEYS, verifier } from "./support/auth.js";
import { TEST_DATABASE_URL, unique } from "./support/env.js";
import { run } from "./support/processes.js";

/** Runs a TypeScript script of the repository as `npm run` does. */
const tsx = (script: string, args: string[], env: Record<string, string>, input = "") =>
  run(process.execPath, ["--import", "tsx", script, ...args], { env, input });

describe("npm run token", () => {
  it("prints a token the units accept, with the role and lines asked for", async () => {
    const r = await tsx("scripts/token.ts", ["--role", "subscriber", "--subscription", "L0000000042"], {
      AUTH_SIGNING_KEY: AUTH_KEYS.signingKey,
    });
    assert.equal(r.code, 0, r.stderr);
    const p = await verifier.verify(r.stdout.trim());
    assert.equal(p.role, "subscriber");
    assert.deepEqual(p.subscriptionIds, ["L0000000042"]);
  });

  it("explains misuse and exits 2", async () => {
    for (const args of [["--role", "king"], ["--role", "subscriber"], ["--role", "admin", "--ttl", "5"], ["--bogus"]]) {
      const r = await tsx("scripts/token.ts", args, { AUTH_SIGNING_KEY: AUTH_KEYS.signingKey });
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /^token: .+\nusage: npm run token/, args.join(" "));
    }
  });
});

describe("npm run operator", () => {
  it("adds an operator whose password then signs in, and disables it", async () => {
    await migrateAll(TEST_DATABASE_URL, ["domain"], () => {});
    const username = unique("cs").toLowerCase();
    const env = { DATABASE_URL: TEST_DATABASE_URL };
    const added = await tsx(
      "scripts/operator.ts",
      ["add", "--username", username, "--role", "operator"],
      env,
      "a-long-password-42\n",
    );
    assert.equal(added.code, 0, added.stderr);
    assert.doesNotMatch(added.stdout, /a-long-password-42/, "a given password is never printed");
    const knex = createKnex({ url: TEST_DATABASE_URL, schema: "domain", poolMax: 1 });
    try {
      const store = new OperatorStore(knex);
      assert.equal((await store.authenticate(username, "a-long-password-42"))?.role, "operator");
      assert.equal(await store.authenticate(username, "wrong-password-42"), undefined);
      const disabled = await tsx("scripts/operator.ts", ["disable", "--username", username], env);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.equal(await store.authenticate(username, "a-long-password-42"), undefined);
      const short = await tsx(
        "scripts/operator.ts",
        ["add", "--username", username, "--role", "viewer"],
        env,
        "short\n",
      );
      assert.equal(short.code, 2);
      assert.match(short.stderr, /at least 12 characters/);
    } finally {
      await knex.destroy();
    }
  });
});
