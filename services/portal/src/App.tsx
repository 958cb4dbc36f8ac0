import { Anchor, AppShell, Button, Group, SegmentedControl, Text, Title } from "@mantine/core";
import { useState } from "react";
import { loadSession, type Session, saveSession } from "./api.js";
import { type Lang, useI18n } from "./i18n.js";
import { BillingPage } from "./pages/BillingPage.js";
import { CustomerPage } from "./pages/CustomerPage.js";
import { CustomersPage } from "./pages/CustomersPage.js";
import { LinePage } from "./pages/LinePage.js";
import { MyLinesPage } from "./pages/MyLinesPage.js";
import { SignInPage } from "./pages/SignInPage.js";
import { TemplatePage } from "./pages/TemplatePage.js";
import { TemplatesPage } from "./pages/TemplatesPage.js";
import { TopLinesPage } from "./pages/TopLinesPage.js";
import { useRoute } from "./route.js";

export function App() {
  const { t, lang, setLang } = useI18n();
  const [session, setSession] = useState<Session | undefined>(loadSession);
  const route = useRoute();
  const signIn = (s: Session | undefined) => {
    saveSession(s);
    setSession(s);
    if (s) window.location.hash = s.role === "subscriber" ? "#/me" : "#/customers";
  };
  const language = (
    <SegmentedControl
      aria-label={t("language")}
      size="xs"
      value={lang}
      onChange={(v) => setLang(v as Lang)}
      data={[
        { value: "ko", label: "한국어" },
        { value: "en", label: "English" },
      ]}
    />
  );
  return (
    <AppShell header={{ height: 56 }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Title order={1} size="h4">
            <a href="#/customers" style={{ color: "inherit", textDecoration: "none" }}>
              {t("appTitle")}
            </a>
          </Title>
          <Group gap="xs" wrap="nowrap">
            {language}
            {session && (
              <>
                <Text size="sm" visibleFrom="sm" data-testid="signed-in-as">
                  {t("signedInAs", { role: t(`role_${session.role}`) })}
                </Text>
                <Button size="xs" variant="default" onClick={() => signIn(undefined)}>
                  {t("signOut")}
                </Button>
              </>
            )}
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Main>
        {session && session.role !== "subscriber" && (
          <Group gap="md" mb="md" component="nav" aria-label={t("appTitle")}>
            <Anchor href="#/customers">{t("customers")}</Anchor>
            <Anchor href="#/top">{t("topLines")}</Anchor>
            <Anchor href="#/templates">{t("templates")}</Anchor>
            <Anchor href="#/billing">{t("billing")}</Anchor>
          </Group>
        )}
        <main>
          {!session ? (
            <SignInPage onSignedIn={signIn} />
          ) : route.page === "customer" ? (
            <CustomerPage key={route.customerId} session={session} customerId={route.customerId} />
          ) : session.role === "subscriber" && route.page !== "line" ? (
            <MyLinesPage session={session} />
          ) : route.page === "line" ? (
            <LinePage key={route.subscriptionId} session={session} subscriptionId={route.subscriptionId} />
          ) : route.page === "billing" ? (
            <BillingPage session={session} />
          ) : route.page === "top" ? (
            <TopLinesPage session={session} />
          ) : route.page === "templates" ? (
            <TemplatesPage session={session} />
          ) : route.page === "template" ? (
            <TemplatePage key={route.templateId} session={session} templateId={route.templateId} />
          ) : (
            <CustomersPage session={session} />
          )}
        </main>
      </AppShell.Main>
    </AppShell>
  );
}
