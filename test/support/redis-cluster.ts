import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { eventually } from "./env.js";

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");

/** A port free now, whose cluster bus port (+10000) is free too. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    if (port + 10_000 > 65_535) continue;
    const busFree = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port + 10_000, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (busFree) return port;
  }
}

/**
 * A Redis Cluster of `masters` masters (no replicas) from the OS's redis-server, on spare
 * loopback ports, with no persistence, for one test process; `stop` kills it and removes its files.
 */
export class LocalRedisCluster {
  private readonly procs: ChildProcess[] = [];
  readonly ports: number[] = [];
  private dir = "";

  get nodes(): string[] {
    return this.ports.map((p) => `127.0.0.1:${p}`);
  }

  async start(masters = 3): Promise<void> {
    for (let i = 0; i < masters; i++) this.ports.push(await freePort());
    this.dir = join(ROOT, ".data", `redis-cluster-${process.pid}`);
    for (const port of this.ports) {
      const dir = join(this.dir, String(port));
      mkdirSync(dir, { recursive: true });
      const p = spawn(
        "redis-server",
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, "nodes.conf"),
          "--cluster-node-timeout",
          "5000",
          "--save",
          "",
          "--appendonly",
          "no",
          "--dir",
          dir,
          "--logfile",
          join(dir, "redis.log"),
        ],
        { stdio: "ignore" },
      );
      this.procs.push(p);
    }
    await Promise.all(
      this.ports.map((port) =>
        eventually(
          async () => {
            const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null });
            r.on("error", () => {});
            try {
              await r.connect();
              return (await r.ping()) === "PONG" ? true : undefined;
            } catch {
              return undefined;
            } finally {
              r.disconnect();
            }
          },
          10_000,
          `redis-server on ${port}`,
        ),
      ),
    );
    await run("redis-cli", ["--cluster", "create", ...this.nodes, "--cluster-replicas", "0", "--cluster-yes"]);
    await eventually(
      async () => {
        for (const port of this.ports) {
          const { stdout } = await run("redis-cli", ["-p", String(port), "cluster", "info"]);
          if (!/cluster_state:ok/.test(stdout)) return undefined;
        }
        return true;
      },
      20_000,
      "the Redis Cluster to report cluster_state:ok",
    );
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once("exit", () => resolve());
            p.kill("SIGKILL");
          }),
      ),
    );
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
