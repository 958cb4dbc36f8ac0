import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");

async function until(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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
 * redis-server processes of our own on spare loopback ports: one standalone server (`start(0)`),
 * or a Redis Cluster of `masters` masters without replicas, for a test process or a benchmark;
 * `stop` kills them and removes their files. No persistence, unless `durable`: then each server
 * keeps an append-only file fsynced before every reply (`appendfsync always`), so a write Redis
 * has acknowledged survives a SIGKILL (`crash` and `recover` do one to a standalone server).
 */
export class LocalRedis {
  constructor(private readonly o: { durable?: boolean } = {}) {}
  private readonly procs: ChildProcess[] = [];
  readonly ports: number[] = [];
  private dir = "";

  /** The servers' process ids. */
  get pids(): number[] {
    return this.procs.map((p) => p.pid ?? 0).filter((pid) => pid > 0);
  }

  get nodes(): string[] {
    return this.ports.map((p) => `127.0.0.1:${p}`);
  }

  /** The standalone server's URL. */
  get url(): string {
    return `redis://127.0.0.1:${this.ports[0]}`;
  }

  /** `masters` = 0: one standalone server; otherwise a cluster of that many masters. */
  async start(masters = 3): Promise<void> {
    const cluster = masters > 0;
    for (let i = 0; i < Math.max(1, masters); i++) this.ports.push(await freePort());
    this.dir = join(ROOT, ".data", `redis-${cluster ? "cluster" : "server"}-${process.pid}-${this.ports[0]}`);
    for (const port of this.ports) this.spawn(port, cluster);
    await this.ready();
    if (!cluster) return;
    await run("redis-cli", ["--cluster", "create", ...this.nodes, "--cluster-replicas", "0", "--cluster-yes"]);
    await until(
      async () => {
        for (const port of this.ports) {
          const { stdout } = await run("redis-cli", ["-p", String(port), "cluster", "info"]);
          if (!/cluster_state:ok/.test(stdout)) return false;
        }
        return true;
      },
      20_000,
      "the Redis Cluster to report cluster_state:ok",
    );
  }

  /** SIGKILLs the standalone server (its files stay). */
  async crash(): Promise<void> {
    const p = this.procs.pop();
    if (!p) throw new Error("no redis-server running");
    await new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  /** Starts the standalone server again on its port and files (replaying its append-only file). */
  async recover(): Promise<void> {
    this.spawn(this.ports[0] as number, false);
    await this.ready();
  }

  private spawn(port: number, cluster: boolean): void {
    const dir = join(this.dir, String(port));
    mkdirSync(dir, { recursive: true });
    const p = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        ...(cluster
          ? [
              "--cluster-enabled",
              "yes",
              "--cluster-config-file",
              join(dir, "nodes.conf"),
              "--cluster-node-timeout",
              "5000",
            ]
          : []),
        "--save",
        "",
        "--appendonly",
        this.o.durable ? "yes" : "no",
        ...(this.o.durable ? ["--appendfsync", "always"] : []),
        "--dir",
        dir,
        "--logfile",
        join(dir, "redis.log"),
      ],
      { stdio: "ignore" },
    );
    this.procs.push(p);
  }

  private async ready(): Promise<void> {
    await Promise.all(
      this.ports.map((port) =>
        until(
          async () => {
            const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null });
            r.on("error", () => {});
            try {
              await r.connect();
              return (await r.ping()) === "PONG";
            } catch {
              return false;
            } finally {
              r.disconnect();
            }
          },
          10_000,
          `redis-server on ${port}`,
        ),
      ),
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
