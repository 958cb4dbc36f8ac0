import { Alert, Button, Card, PasswordInput, Stack, TextInput, Title } from "@mantine/core";
import { type FormEvent, useState } from "react";
import { AuthService } from "../../../../gen/telco/domain/v1/auth_pb.js";
import { clientFor, type Problem, problemOf, roleName, type Session } from "../api.js";
import { useI18n } from "../i18n.js";

export function SignInPage({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const { t } = useI18n();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setProblem(undefined);
    try {
      const r = await clientFor(AuthService, undefined).login({ username, password });
      const role = roleName(r.role);
      if (!role) throw new Error("this account cannot use the portal");
      onSignedIn({
        token: r.accessToken,
        role,
        subscriptionIds: r.subscriptionIds,
        expiresAt: r.expiresAt ? Number(r.expiresAt.seconds) * 1000 : Date.now() + 600_000,
      });
    } catch (err) {
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card withBorder maw={420} mx="auto" mt="xl" padding="lg">
      <form onSubmit={submit} noValidate>
        <Stack>
          <Title order={2}>{t("signIn")}</Title>
          <TextInput
            label={t("username")}
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.currentTarget.value)}
            error={problem?.fields.username}
          />
          <PasswordInput
            label={t("password")}
            name="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.currentTarget.value)}
            error={problem?.fields.password}
          />
          {problem && Object.keys(problem.fields).length === 0 && (
            <Alert color="red" role="alert">
              {problem.message}
            </Alert>
          )}
          <Button type="submit" loading={busy}>
            {t("signIn")}
          </Button>
        </Stack>
      </form>
    </Card>
  );
}
