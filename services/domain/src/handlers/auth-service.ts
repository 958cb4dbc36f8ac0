import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type AuthService,
  type LoginRequest,
  LoginResponseSchema,
  Role,
} from "../../../../gen/telco/domain/v1/auth_pb.js";
import type { RoleName, TokenSigner } from "../../../kit/src/auth.js";
import { Violations } from "../../../kit/src/errors.js";
import type { AccountStore } from "../store/operator-store.js";

export const ROLE_OF: Record<RoleName, Role> = {
  admin: Role.ADMIN,
  operator: Role.OPERATOR,
  viewer: Role.VIEWER,
  subscriber: Role.SUBSCRIBER,
  service: Role.SERVICE,
};

export class AuthServiceImpl implements ServiceImpl<typeof AuthService> {
  constructor(
    private readonly accounts: AccountStore,
    private readonly signer: TokenSigner,
    private readonly ttlSeconds: number,
  ) {}

  async login(req: LoginRequest) {
    const v = new Violations();
    v.check(req.username.length > 0 && req.username.length <= 64, "username", "required");
    // No user name holds control characters (and PostgreSQL text cannot hold NUL at all).
    v.check(!/\p{Cc}/u.test(req.username), "username", "must not contain control characters");
    v.check(req.password.length > 0 && req.password.length <= 256, "password", "required, at most 256 characters");
    v.throwIfAny();
    const account = await this.accounts.authenticate(req.username, req.password);
    // One answer for an unknown user and a wrong password: nothing to learn about accounts.
    if (!account) throw new ConnectError("user name or password is wrong", Code.Unauthenticated);
    // Subscribers' tokens carry their customer's lines (every unit lets them see only those).
    const principal =
      account.kind === "operator"
        ? { subject: `operator:${account.id}`, role: account.role, subscriptionIds: [] }
        : {
            subject: `subscriber:${account.id}`,
            role: "subscriber" as const,
            subscriptionIds: account.subscriptionIds,
          };
    const { token, expiresAt } = await this.signer.sign(principal, this.ttlSeconds);
    return create(LoginResponseSchema, {
      accessToken: token,
      expiresAt: timestampFromDate(expiresAt),
      role: ROLE_OF[principal.role],
      subscriptionIds: principal.subscriptionIds,
    });
  }
}
