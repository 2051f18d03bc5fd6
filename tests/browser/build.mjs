// Bundles the official Pipecat client page into dist/ (esbuild, no network).
// Run by .ci/setup-browser.sh and by the Rust browser tests; idempotent.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, "src", "official_client_page.js")],
  outfile: join(dist, "official_client.js"),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "chrome120",
  sourcemap: "inline",
  logLevel: "warning",
  legalComments: "none",
});
copyFileSync(join(here, "src", "official_client.html"), join(dist, "official_client.html"));
