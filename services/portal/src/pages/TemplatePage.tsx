import {
  Alert,
  Anchor,
  Badge,
  Button,
  Card,
  Code,
  Group,
  Stack,
  Table,
  Text,
  Textarea,
  TextInput,
  Title,
} from "@mantine/core";
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { Channel } from "../../../../gen/telco/message/v1/events_pb.js";
import {
  DiffLine_Op,
  type DiffTemplateVersionsResponse,
  type RenderPreviewResponse,
  SmsEncoding,
  type Template,
  TemplateService,
  TemplateStatus,
} from "../../../../gen/telco/message/v1/template_pb.js";
import { clientFor, mayWrite, type Problem, problemOf, type Session } from "../api.js";
import { ProblemAlert } from "../components.js";
import { useI18n } from "../i18n.js";
import { statusKey } from "./TemplatesPage.js";

/** One template: edit (a save is a new version), versions with publish / rollback and a diff, and a preview. */
export function TemplatePage({ session, templateId }: { session: Session; templateId: string }) {
  const { t } = useI18n();
  const client = useMemo(() => clientFor(TemplateService, session), [session]);
  const [versions, setVersions] = useState<Template[]>([]);
  const [body, setBody] = useState("");
  // The version the text in the editor is based on: a save starts from it, so that a version
  // someone else saved meanwhile is refused (ABORTED) instead of overwritten.
  const [base, setBase] = useState<Template>();
  const [problem, setProblem] = useState<Problem>();
  const [notice, setNotice] = useState("");
  const [diff, setDiff] = useState<{ to: number; d: DiffTemplateVersionsResponse }>();
  const [sample, setSample] = useState<Record<string, string>>({});
  const [preview, setPreview] = useState<RenderPreviewResponse>();
  const latest = versions[0];

  const load = useCallback(async () => {
    const r = await client.listTemplateVersions({ templateId });
    const sorted = [...r.versions].sort((a, b) => b.version - a.version);
    setVersions(sorted);
    return sorted;
  }, [client, templateId]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: load once per template
  useEffect(() => {
    load()
      .then((v) => {
        setBody(v[0]?.body ?? "");
        setBase(v[0]);
      })
      .catch((err) => setProblem(problemOf(err)));
  }, [templateId]);

  const act = async (f: () => Promise<string>) => {
    setProblem(undefined);
    setNotice("");
    try {
      const done = await f();
      await load();
      setNotice(done);
    } catch (err) {
      setProblem(problemOf(err));
    }
  };
  const save = (e: FormEvent) => {
    e.preventDefault();
    if (!base) return;
    void act(async () => {
      const r = await client.updateTemplate({
        templateId,
        baseVersion: base.version,
        subject: base.subject,
        body,
        variables: base.variables,
      });
      setBase(r.template);
      return t("saved", { v: r.template?.version ?? "?" });
    });
  };
  const render = async (e: FormEvent) => {
    e.preventDefault();
    setProblem(undefined);
    try {
      setPreview(await client.renderPreview({ templateId, version: latest?.version ?? 0, variables: sample }));
    } catch (err) {
      setProblem(problemOf(err));
    }
  };
  const showDiff = async (to: number) => {
    try {
      setDiff({ to, d: await client.diffTemplateVersions({ templateId, fromVersion: to - 1, toVersion: to }) });
    } catch (err) {
      setProblem(problemOf(err));
    }
  };
  if (!latest)
    return problem ? (
      <Alert color="red" role="alert">
        {problem.message}
      </Alert>
    ) : (
      <Text>{t("loading")}</Text>
    );
  const active = versions.find((v) => v.status === TemplateStatus.ACTIVE);
  return (
    <Stack>
      <Anchor href="#/templates">← {t("back")}</Anchor>
      <Title order={2}>
        {latest.name} ({latest.locale}, {Channel[latest.channel]})
      </Title>
      {notice && (
        <Alert color="green" role="status" data-testid="notice">
          {notice}
        </Alert>
      )}
      <ProblemAlert problem={problem} fields />
      {mayWrite(session) && (
        <Card withBorder>
          <form onSubmit={save} noValidate>
            <Stack gap="sm">
              <Textarea
                label={t("body")}
                name="body"
                autosize
                minRows={3}
                value={body}
                onChange={(e) => setBody(e.currentTarget.value)}
                error={problem?.fields.body}
              />
              <Group>
                <Button type="submit">{t("save")}</Button>
              </Group>
            </Stack>
          </form>
        </Card>
      )}
      <Title order={3}>{t("versions")}</Title>
      <Table.ScrollContainer minWidth={360}>
        <Table data-testid="versions">
          <Table.Tbody>
            {versions.map((v) => (
              <Table.Tr key={v.version}>
                <Table.Td>v{v.version}</Table.Td>
                <Table.Td>
                  <Badge variant="light" color={v.status === TemplateStatus.ACTIVE ? "green" : "gray"}>
                    {t(statusKey(v.status))}
                  </Badge>
                </Table.Td>
                <Table.Td>
                  <Group gap="xs">
                    {v.version > 1 && (
                      <Button size="compact-xs" variant="default" onClick={() => showDiff(v.version)}>
                        {t("diffWithPrevious")}
                      </Button>
                    )}
                    {mayWrite(session) && v.status === TemplateStatus.DRAFT && (
                      <Button
                        size="compact-xs"
                        onClick={() =>
                          act(async () => {
                            await client.publishTemplate({ templateId, version: v.version });
                            return `v${v.version}: ${t("status_ACTIVE")}`;
                          })
                        }
                      >
                        {t("publish")} v{v.version}
                      </Button>
                    )}
                    {mayWrite(session) &&
                      active &&
                      v.version < active.version &&
                      v.status !== TemplateStatus.ACTIVE && (
                        <Button
                          size="compact-xs"
                          color="orange"
                          onClick={() =>
                            act(async () => {
                              await client.rollbackTemplate({ templateId, version: v.version });
                              return `v${v.version}: ${t("status_ACTIVE")}`;
                            })
                          }
                        >
                          {t("rollback")}
                        </Button>
                      )}
                  </Group>
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {diff && (
        <Card withBorder data-testid="diff">
          <Text fw={500}>
            v{diff.to - 1} → v{diff.to}
          </Text>
          <Code block>
            {diff.d.body
              .map((l) => `${l.op === DiffLine_Op.ADDED ? "+" : l.op === DiffLine_Op.REMOVED ? "-" : " "} ${l.text}`)
              .join("\n")}
          </Code>
        </Card>
      )}
      <Title order={3}>{t("preview")}</Title>
      <Card withBorder>
        <form onSubmit={render} noValidate>
          <Stack gap="sm">
            {latest.variables.map((v) => (
              <TextInput
                key={v.name}
                label={t("sampleValue", { name: v.name })}
                name={`var-${v.name}`}
                placeholder={v.example}
                value={sample[v.name] ?? ""}
                onChange={(e) => setSample({ ...sample, [v.name]: e.currentTarget.value })}
              />
            ))}
            <Group>
              <Button type="submit" variant="light">
                {t("render")}
              </Button>
            </Group>
          </Stack>
        </form>
        {preview && (
          <Stack gap={4} mt="sm" data-testid="preview">
            <Code block>{preview.body}</Code>
            {preview.sms && (
              <Text size="sm" data-testid="sms-info">
                {t("encoding")}: {SmsEncoding[preview.sms.encoding]} · {t("units")}: {preview.sms.units} ·{" "}
                {t("segments")}: {preview.sms.segments}
                {preview.sms.longMessage ? ` · ${t("longMessage")}` : ""}
              </Text>
            )}
          </Stack>
        )}
      </Card>
    </Stack>
  );
}
