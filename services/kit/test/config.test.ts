import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, defineConfig, loadConfig, redactUrl } from "../src/config.js";
import { commonSpec } from "../src/settings.js";

const spec = defineConfig({
  ...commonSpec,
  X_PORT: { type: "int", min: 0, max: 65_535, default: 50051, description: "port" },
  X_MODE: { type: "enum", values: ["single", "batch"], default: "single", description: "mode" },
  X_KEY: { type: "string", description: "a key without default", secret: true },
});

describe("configuration from the environment", () => {
  it("fills defaults that work on a fresh local machine", () => {
    const c = loadConfig(spec, { X_KEY: "k", AUTH_VERIFY_KEY: "pub" });
    assert.equal(c.X_PORT, 50051);
    assert.deepEqual(c.KAFKA_BROKERS, ["127.0.0.1:9092"]);
    assert.equal(c.TIME_ZONE, "Asia/Seoul");
    assert.equal(c.DRAIN_DELAY_MS, 1000);
  });

  it("parses and validates every kind of value", () => {
    const c = loadConfig(spec, {
      AUTH_VERIFY_KEY: "pub",
      X_PORT: "8080",
      X_MODE: "batch",
      X_KEY: "k",
      KAFKA_BROKERS: "a:1, b:2,",
      DRAIN_TIMEOUT_MS: "0",
    });
    assert.equal(c.X_PORT, 8080);
    assert.equal(c.X_MODE, "batch");
    assert.deepEqual(c.KAFKA_BROKERS, ["a:1", "b:2"]);
    assert.equal(c.DRAIN_TIMEOUT_MS, 0);
  });

  it("never echoes a secret that fails to parse", () => {
    assert.throws(
      () =>
        loadConfig(spec, {
          X_KEY: "k",
          REDIS_URL: "redis://:pw-secret@[bad:6379",
          DATABASE_URL: "postgres//u:db-pass@h",
        }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /REDIS_URL must be a URL \(got \(hidden\)\)/);
        assert.match(e.message, /DATABASE_URL must be a URL \(got \(hidden\)\)/);
        assert.doesNotMatch(e.message, /pw-secret|db-pass/);
        return true;
      },
    );
    assert.equal(redactUrl("redis://user:pw-secret@h:6379/1"), "redis://***:***@h:6379/1");
  });

  it("names every problem at once and never echoes a secret", () => {
    assert.throws(
      () =>
        loadConfig(spec, {
          X_PORT: "70000",
          X_MODE: "both",
          REDIS_URL: "not a url",
          DATABASE_URL: "pg://u:pw-123@h/db",
        }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.deepEqual(
          e.problems.map((p) => p.split(" ")[0]),
          ["REDIS_URL", "DATABASE_URL", "AUTH_VERIFY_KEY", "X_PORT", "X_MODE", "X_KEY"],
        );
        assert.match(e.message, /X_PORT must be <= 65535 \(got 70000\)/);
        assert.match(e.message, /X_KEY is required/);
        assert.doesNotMatch(e.message, /pw-123/);
        return true;
      },
    );
  });
});
