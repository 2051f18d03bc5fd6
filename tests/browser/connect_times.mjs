#!/usr/bin/env node
// Connect times of the official Pipecat JS client in headless Chromium, for the
// connect bench (`cargo bench --bench connect -- stacks`): one browser, one
// page, one warm-up connect and then N sequential connects, each
// connect() (resolves on bot-ready) → disconnect(). Per connect the time from
// the POST of the offer to the "chat" channel's open event, both as the page
// saw them (the probe's fetch and data-channel hooks). Audio only, as the
// other stacks of the bench.
//
//   node connect_times.mjs URL N [--timeout S] [--verbose]
//
// Prints one JSON line {ok, times: [ms...], problems}; logs go to stderr.
import { join } from "node:path";
import { existsSync } from "node:fs";
import {
  HERE, PROBE_SRC, cleanupDir, launchBrowser, log, makeRun, makeTempDir, parseArgs, serveStatic,
  watchConsole, within, writeToneWav,
} from "./lib/common.mjs";

const args = parseArgs(process.argv.slice(2));
const [target, count] = args.positional;
if (!target || !count) {
  process.stderr.write("usage: node connect_times.mjs URL N [--timeout S]\n");
  process.exit(2);
}
const n = Number(count);
const offerUrl = /\/api\/offer\/?$/.test(target) ? target : target.replace(/\/+$/, "") + "/api/offer";
const run = makeRun("connect_times", Number(args.timeout ?? 300) * 1000);
const { result, cleanups } = run;
result.times = [];

run.run(async () => {
  const dist = join(HERE, "dist");
  if (!existsSync(join(dist, "official_client.js"))) {
    throw new Error("no dist/official_client.js: run `node build.mjs` in tests/browser (or .ci/setup-browser.sh)");
  }
  const tmp = makeTempDir("swrtc-connect-");
  cleanups.push(() => cleanupDir(tmp));
  const wav = join(tmp, "tone.wav");
  writeToneWav(wav);
  const server = await serveStatic(dist);
  cleanups.push(() => server.close());
  const browser = await within(30000, "launch Chromium", () =>
    launchBrowser({ wavPath: wav, profileDir: join(tmp, "profile") }));
  cleanups.push(() => browser.close());
  await browser.context.addInitScript({ content: PROBE_SRC });
  const page = await browser.context.newPage();
  result.consoleErrors = watchConsole(page, args.verbose);
  await page.goto(`${server.url}/official_client.html`, { timeout: 15000 });
  await page.waitForFunction(() => !!window.swrtcOfficial, null, { timeout: 10000 });

  for (let i = 0; i <= n; i++) {
    const ms = await page.evaluate(async (offerUrl) => {
      const p = window.__swrtcProbe;
      const [f0, e0] = [p.fetches.length, p.events.length];
      await window.swrtcOfficial.connect({ offerUrl, enableCam: false });
      const post = p.fetches.slice(f0).find((f) => f.method === "POST");
      const open = p.events.slice(e0).find((e) => e.ev === "dc-open");
      await window.swrtcOfficial.disconnect();
      return post && open ? open.t - post.t0 : null;
    }, offerUrl).catch((e) => {
      throw new Error(`connect ${i}: ${e.message.split("\n")[0]}`);
    });
    if (ms == null) throw new Error(`connect ${i}: no POST or no data channel open seen`);
    // The first connect warms up (page, codecs, certificate): not counted.
    if (i > 0) result.times.push(Math.round(ms * 100) / 100);
    if (args.verbose) log(`connect ${i}: ${ms.toFixed(1)} ms`);
  }
});
