import { defineConfig } from "vite";

// The daemon embeds dist/ and serves it at "/" with an SPA fallback, so every
// asset URL must be absolute. For `npm run dev`, API calls are proxied to a
// running daemon started with `cloudlet serve --http ADDR` (CLOUDLET_URL).
const target = process.env.CLOUDLET_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: {
      "/v1": { target, changeOrigin: false },
      "/readyz": { target },
      "/healthz": { target },
    },
  },
});
