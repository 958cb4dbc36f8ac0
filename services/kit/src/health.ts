import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

/**
 * grpc.health.v1.Health for Connect servers. Status is kept per service name; "" is the whole
 * server. Watchers get the current status at once and every change after it; at shutdown they
 * receive NOT_SERVING and their streams end, so load balancers stop routing before the drain.
 */
export class HealthRegistry {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<() => void>();
  private closed = false;

  constructor(serviceNames: string[]) {
    this.statuses.set("", ServingStatus.SERVING);
    for (const name of serviceNames) this.statuses.set(name, ServingStatus.SERVING);
  }

  set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const wake of this.watchers) wake();
  }

  /** Marks every service; used when draining (NOT_SERVING) and when dependencies fail. */
  setAll(status: ServingStatus): void {
    for (const name of this.statuses.keys()) this.set(name, status);
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Ends all Watch streams (after they have seen the last status). */
  close(): void {
    this.closed = true;
    for (const wake of this.watchers) wake();
  }

  impl(): ServiceImpl<typeof Health> {
    return {
      check: (req: HealthCheckRequest): HealthCheckResponse => {
        const status = this.statuses.get(req.service);
        if (status === undefined)
          throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
        return create(HealthCheckResponseSchema, { status });
      },
      list: () =>
        create(HealthListResponseSchema, {
          statuses: Object.fromEntries(
            [...this.statuses].map(([name, status]) => [name, create(HealthCheckResponseSchema, { status })]),
          ),
        }),
      watch: (req: HealthCheckRequest, ctx: HandlerContext) => this.watch(req.service, ctx.signal),
    };
  }

  private async *watch(service: string, signal: AbortSignal): AsyncGenerator<HealthCheckResponse> {
    let last: ServingStatus | undefined;
    let wake: (() => void) | undefined;
    // A change may land while this generator is suspended at `yield`: the flag keeps it.
    let dirty = true;
    const changed = () => {
      dirty = true;
      wake?.();
    };
    this.watchers.add(changed);
    signal.addEventListener("abort", changed);
    try {
      for (;;) {
        if (!dirty) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
        dirty = false;
        const status = this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield create(HealthCheckResponseSchema, { status });
        }
        if (this.closed || signal.aborted) return;
      }
    } finally {
      this.watchers.delete(changed);
      signal.removeEventListener("abort", changed);
    }
  }
}
