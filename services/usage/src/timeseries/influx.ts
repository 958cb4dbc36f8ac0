import type { Logger } from "../../../kit/src/logger.js";

export interface InfluxSettings {
  /** e.g. http://127.0.0.1:8086 */
  url: string;
  db: string;
  logger: Logger;
  /** Per HTTP request. */
  timeoutMs?: number;
}

/** One series of an InfluxQL answer. */
export interface InfluxSeries {
  name: string;
  columns: string[];
  values: unknown[][];
  tags?: Record<string, string>;
}

export class InfluxError extends Error {
  constructor(
    message: string,
    /** A 4xx answer: sending the same thing again will not help. */
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = "InfluxError";
  }
}

/** Escapes a tag key or value, or a measurement name, for the line protocol. */
export function escapeTag(s: string): string {
  return s.replace(/[,= \\]/g, (c) => `\\${c}`);
}

/**
 * The small part of InfluxDB 1.x's HTTP API the usage unit needs: writes in line protocol
 * (nanosecond timestamps) and InfluxQL queries with bound parameters. Writes of up to
 * `maxLinesPerWrite` lines per request; a failed request is retried with backoff unless
 * InfluxDB refused the data itself (4xx).
 */
export class InfluxClient {
  private readonly timeoutMs: number;
  private readonly log: Logger;
  readonly maxLinesPerWrite = 5_000;

  constructor(private readonly s: InfluxSettings) {
    this.timeoutMs = s.timeoutMs ?? 15_000;
    this.log = s.logger.child({ component: "influx" });
  }

  get db(): string {
    return this.s.db;
  }

  /** CREATE DATABASE is idempotent in InfluxDB 1.x. */
  async ensureDatabase(): Promise<void> {
    await this.post("/query", new URLSearchParams({ q: `CREATE DATABASE "${this.s.db}"` }), "query");
  }

  /** Writes line-protocol lines (timestamps in ns), in requests of at most maxLinesPerWrite lines. */
  async write(lines: string[], { attempts = 5 } = {}): Promise<void> {
    for (let i = 0; i < lines.length; i += this.maxLinesPerWrite) {
      const body = lines.slice(i, i + this.maxLinesPerWrite).join("\n");
      const path = `/write?${new URLSearchParams({ db: this.s.db, precision: "ns" })}`;
      for (let attempt = 1; ; attempt++) {
        try {
          await this.post(path, body, "write");
          break;
        } catch (e) {
          if (e instanceof InfluxError && e.permanent) throw e;
          if (attempt >= attempts) throw e;
          const wait = Math.min(200 * 2 ** attempt, 5_000);
          this.log.warn({ err: (e as Error).message, attempt, retry_in_ms: wait }, "influx write failed; retrying");
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    }
  }

  /** Runs one InfluxQL SELECT with bound parameters ($name in the query); times as epoch ms. */
  async query(q: string, params: Record<string, string | number> = {}): Promise<InfluxSeries[]> {
    const form = new URLSearchParams({ db: this.s.db, q, epoch: "ms", params: JSON.stringify(params) });
    const body = (await this.post("/query", form, "query")) as {
      results?: { series?: InfluxSeries[]; error?: string }[];
      error?: string;
    };
    const r = body.results?.[0];
    const err = body.error ?? r?.error;
    if (err) throw new InfluxError(`influx query failed: ${err}`, true);
    return r?.series ?? [];
  }

  private async post(path: string, body: string | URLSearchParams, what: string): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.s.url}${path}`, {
        method: "POST",
        body,
        headers: typeof body === "string" ? { "content-type": "text/plain; charset=utf-8" } : undefined,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new InfluxError(`influx ${what} at ${this.s.url} failed: ${(e as Error).message}`, false);
    }
    if (res.status === 204) return undefined;
    const text = await res.text();
    if (!res.ok) {
      throw new InfluxError(`influx ${what} answered ${res.status}: ${text.slice(0, 300)}`, res.status < 500);
    }
    return text.length > 0 ? JSON.parse(text) : undefined;
  }
}
