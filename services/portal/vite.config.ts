// The portal's build (`npm run portal:build` → services/portal/dist) and its development server
// (`npx vite services/portal`), which passes RPCs to the local gateway on 8080 like the built one.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 1200 },
  server: { proxy: { "^/telco\\..*": "http://127.0.0.1:8080" } },
});
