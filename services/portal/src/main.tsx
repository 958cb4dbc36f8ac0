import "@mantine/core/styles.css";
import { MantineProvider } from "@mantine/core";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App.js";
import { I18nProvider } from "./i18n.js";

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <MantineProvider defaultColorScheme="light">
        <I18nProvider>
          <App />
        </I18nProvider>
      </MantineProvider>
    </StrictMode>,
  );
}
