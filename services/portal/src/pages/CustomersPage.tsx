import { Alert, Anchor, Button, Group, SegmentedControl, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { type FormEvent, useState } from "react";
import { type Customer, CustomerService } from "../../../../gen/telco/domain/v1/customer_pb.js";
import { clientFor, type Problem, problemOf, type Session } from "../api.js";
import { DataTable } from "../components.js";
import { useI18n } from "../i18n.js";
import { href } from "../route.js";

type By = "phone_number" | "email" | "name_prefix";

/** Customer search: phone and e-mail exact (as the domain unit's blind index allows), name by prefix. */
export function CustomersPage({ session }: { session: Session }) {
  const { t } = useI18n();
  const [by, setBy] = useState<By>("phone_number");
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<Customer[]>();
  const [problem, setProblem] = useState<Problem>();
  const [busy, setBusy] = useState(false);
  const search = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setProblem(undefined);
    try {
      const q =
        by === "phone_number"
          ? { case: "phoneNumber" as const, value: query }
          : by === "email"
            ? { case: "email" as const, value: query }
            : { case: "namePrefix" as const, value: query };
      const r = await clientFor(CustomerService, session).searchCustomers({ query: q, pageSize: 50 });
      setFound(r.customers);
    } catch (err) {
      setFound(undefined);
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  const fieldError =
    problem?.fields[by] ??
    (problem && Object.keys(problem.fields).length > 0 ? Object.values(problem.fields)[0] : undefined);
  return (
    <Stack>
      <Title order={2}>{t("customers")}</Title>
      <form onSubmit={search} noValidate>
        <Stack gap="sm">
          <div>
            <Text component="label" id="search-by-label" size="sm" fw={500}>
              {t("searchBy")}
            </Text>
            <SegmentedControl
              aria-labelledby="search-by-label"
              fullWidth
              value={by}
              onChange={(v) => setBy(v as By)}
              data={[
                { value: "phone_number", label: t("byPhone") },
                { value: "email", label: t("byEmail") },
                { value: "name_prefix", label: t("byName") },
              ]}
            />
          </div>
          <Group align="flex-end" wrap="wrap">
            <TextInput
              style={{ flex: 1, minWidth: 200 }}
              label={t("query")}
              name="query"
              inputMode={by === "phone_number" ? "tel" : by === "email" ? "email" : "text"}
              value={query}
              onChange={(e) => setQuery(e.currentTarget.value)}
              error={fieldError}
            />
            <Button type="submit" loading={busy}>
              {t("search")}
            </Button>
          </Group>
        </Stack>
      </form>
      {problem && !fieldError && (
        <Alert color="red" role="alert">
          {problem.message}
        </Alert>
      )}
      {found && found.length === 0 && <Text>{t("noResults")}</Text>}
      {found && found.length > 0 && (
        <DataTable testId="search-results" head={[t("name"), t("phone"), t("email")]}>
          {found.map((c) => (
            <Table.Tr key={c.customerId}>
              <Table.Td>
                <Anchor href={href({ page: "customer", customerId: c.customerId })}>{c.name}</Anchor>
              </Table.Td>
              <Table.Td>{c.phoneNumber}</Table.Td>
              <Table.Td>{c.email}</Table.Td>
            </Table.Tr>
          ))}
        </DataTable>
      )}
    </Stack>
  );
}
