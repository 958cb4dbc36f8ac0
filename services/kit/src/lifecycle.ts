import type { Logger } from "./logger.js";

/**
 * Ordered graceful shutdown. Steps registered in the same phase run in parallel; phases run in
 * order: "drain" (stop taking work: RPC server drain, Kafka consumers finish their batch and
 * commit offsets), then "flush" (producers and relays deliver what they hold), then "close"
 * (datastores). A second signal, or the overall timeout, exits at once with status 1.
 */
export type Phase = "drain" | "flush" | "close";

const PHASES: Phase[] = ["drain", "flush", "close"];

export class Lifecycle {
  private readonly steps: { phase: Phase; name: string; run: () => Promise<unknown> }[] = [];
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly timeoutMs = 30_000,
  ) {}

  onShutdown(phase: Phase, name: string, run: () => Promise<unknown>): void {
    this.steps.push({ phase, name, run });
  }

  /** Runs every step once; later calls return the same promise. */
  shutdown(reason: string): Promise<void> {
    if (!this.stopping) this.stopping = this.run(reason);
    return this.stopping;
  }

  private async run(reason: string): Promise<void> {
    const started = Date.now();
    this.logger.info({ reason }, "shutting down");
    for (const phase of PHASES) {
      const steps = this.steps.filter((s) => s.phase === phase);
      await Promise.all(
        steps.map(async (s) => {
          try {
            await s.run();
          } catch (err) {
            this.logger.error({ err, step: s.name }, "shutdown step failed");
          }
        }),
      );
    }
    this.logger.info({ ms: Date.now() - started }, "shutdown complete");
  }

  /** SIGTERM / SIGINT start the shutdown and exit 0 when it is done. */
  installSignalHandlers(exit: (code: number) => void = (c) => process.exit(c)): void {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        this.logger.warn({ signal }, "second signal: exiting now");
        exit(1);
        return;
      }
      const timer = setTimeout(() => {
        this.logger.error({ timeoutMs: this.timeoutMs }, "shutdown timed out: exiting");
        exit(1);
      }, this.timeoutMs);
      timer.unref();
      this.shutdown(signal).then(
        () => exit(0),
        () => exit(1),
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  }
}
