#!/usr/bin/env node
// Drives the server's built-in test page (served at `/`) in headless Chromium.
//
//   node builtin_page.mjs URL [--timeout S] [--query Q] [--expect-video] [--bursts N] [--verbose]
//
// URL is the server's base URL (http://127.0.0.1:PORT); --query adds a query
// string to the page's URL (e.g. "cam=1" for the page's camera option). The page is expected
// to have the stable hooks #connect, #status, #chat-input, #chat-log, #stats
// and window.swrtcTest = {state, messagesReceived, statsSnapshot()}. Checks,
// each with a deadline:
//   1. clicking #connect connects (the page's RTCPeerConnection reaches
//      "connected", its data channel opens, swrtcTest.state says connected);
//   2. a chat message (JSON) typed into #chat-input (Enter, or #chat-send if
//      there is one) comes back as {"echo": <the message as sent>} on the data
//      channel, and shows up in #chat-log and swrtcTest.messagesReceived;
//   3. the tone bursts of the fake mic come back on the remote audio track;
//   4. getStats has an RTT, and #stats shows something;
//   5. the server-side panel (#server-stats, from GET /api/stats) shows an RTT and the
//      selected pair, and the #plot canvas is drawn (SWRTC_SCREENSHOT=path.png saves
//      a screenshot of the page then).
// Prints one JSON line with the results and timings on stdout; logs go to
// stderr. Exit status 0 when every check passed, 1 otherwise.
import { join } from "node:path";
import {
  PROBE_SRC, checkAudioEcho, checkMessageEcho, checkVideoGrowth, cleanupDir, collectReport, launchBrowser, log,
  makeRun, makeTempDir, parseArgs, sleep, waitFor, watchConsole, within, writeToneWav,
} from "./lib/common.mjs";

const args = parseArgs(process.argv.slice(2));
const target = args.positional[0];
if (!target) {
  process.stderr.write("usage: node builtin_page.mjs URL [--timeout S] [--expect-video] [--bursts N]\n");
  process.exit(2);
}
const pageUrl = target.replace(/\/+$/, "") + "/" + (args.query ? `?${args.query}` : "");
const offerUrl = new URL("api/offer", pageUrl).href;
const run = makeRun("builtin_page", Number(args.timeout ?? 60) * 1000);
const { result, cleanups } = run;
result.pageUrl = pageUrl;

const CONNECTED = /^(connected|ready)$/i;

run.run(async () => {
  const tmp = makeTempDir("swrtc-builtin-");
  cleanups.push(() => cleanupDir(tmp));
  const wav = join(tmp, "tone.wav");
  writeToneWav(wav);
  const browser = await within(30000, "launch Chromium", () =>
    launchBrowser({ wavPath: wav, profileDir: join(tmp, "profile") }));
  cleanups.push(() => browser.close());
  await browser.context.addInitScript({ content: PROBE_SRC });
  const page = await browser.context.newPage();
  result.consoleErrors = watchConsole(page, args.verbose);

  await page.goto(pageUrl, { timeout: 15000 });
  const missing = await page.evaluate(() =>
    ["connect", "status", "chat-input", "chat-log", "stats"].filter((id) => !document.getElementById(id)));
  if (missing.length) result.problems.push(`the page lacks element(s) #${missing.join(", #")}`);
  const hasTestHook = await page.evaluate(() => typeof window.swrtcTest === "object" && window.swrtcTest !== null);
  if (!hasTestHook) result.problems.push("the page has no window.swrtcTest");
  log("page loaded; clicking #connect");

  // 1. Connect.
  const tClick = await page.evaluate(() => performance.now());
  await page.click("#connect", { timeout: 5000 });
  try {
    await waitFor(20000, "the peer connection to connect and the data channel to open", () =>
      page.evaluate(() => {
        const p = window.__swrtcProbe;
        const pc = p.pcs.at(-1);
        return !!pc && pc.connectionState === "connected" && p.dcs.some((d) => d.readyState === "open");
      }));
    if (hasTestHook) {
      await waitFor(5000, "window.swrtcTest.state to say connected", () =>
        page.evaluate((re) => new RegExp(re, "i").test(String(window.swrtcTest.state)), CONNECTED.source));
    }
  } catch (e) {
    result.debug = await page.evaluate(() => ({
      events: window.__swrtcProbe.events, fetches: window.__swrtcProbe.fetches,
      status: document.getElementById("status")?.textContent ?? null, state: window.swrtcTest?.state ?? null,
    })).catch(() => null);
    throw new Error(`connect: ${e.message}`);
  }
  const tConnected = await page.evaluate(() => performance.now());
  result.status = await page.evaluate(() => document.getElementById("status")?.textContent?.trim() ?? null);
  log("connected; status:", result.status);

  // 2. Chat message echo.
  const text = `hello from the built-in page test ${Date.now()}`;
  const chat = await checkMessageEcho(page,
    async () => {
      await page.fill("#chat-input", JSON.stringify({ type: "chat", text, n: 1 }), { timeout: 3000 });
      await page.press("#chat-input", "Enter");
      await sleep(300);
      const sent = await page.evaluate((t) => window.__swrtcProbe.sent.some((s) => JSON.stringify(s).includes(t)), text);
      if (!sent && (await page.$("#chat-send"))) await page.click("#chat-send", { timeout: 3000 });
    },
    (s) => JSON.stringify(s).includes(text),
    "a chat message");
  result.messages = { chat: { ok: chat.ok, rttMs: chat.rttMs ?? null, sent: chat.sent ?? null } };
  if (!chat.ok) result.problems.push(`chat echo: ${chat.problem}`);
  else {
    try {
      await waitFor(3000, "the echo to appear in #chat-log", () =>
        page.evaluate((t) => (document.getElementById("chat-log")?.textContent ?? "").includes(t), text));
    } catch (e) {
      result.problems.push(e.message);
    }
    if (hasTestHook) {
      const inHook = await page.evaluate((t) =>
        Array.isArray(window.swrtcTest.messagesReceived) &&
        window.swrtcTest.messagesReceived.some((m) => JSON.stringify(m).includes(t)), text);
      if (!inHook) result.problems.push("the echo is not in window.swrtcTest.messagesReceived");
    }
  }

  // 3. Audio echo.
  const { echo, problem } = await checkAudioEcho(page, { minBursts: Number(args.bursts ?? 5) });
  if (problem) result.problems.push(problem);

  // 4. Stats.
  const report = await collectReport(page, { offerUrl, echo });
  result.problems.push(...report.problems);
  result.timings = {
    clickToConnectedMs: Math.round((tConnected - tClick) * 10) / 10,
    ...report.timings,
  };
  result.audio = echo;
  result.video = report.video;
  if (report.stats?.rttMs == null) result.problems.push("getStats has no RTT on the selected candidate pair");
  if (args["expect-video"]) {
    if (!(report.video.framesDecoded > 0)) result.problems.push("no remote video frames decoded");
    const grown = await checkVideoGrowth(page, report, { offerUrl, echo });
    result.video = grown.video;
    if (grown.problem) result.problems.push(grown.problem);
  }
  Object.assign(result, { http: report.http, stats: report.stats, answer: report.answer, events: report.events });
  result.page = await page.evaluate(async () => {
    let snapshot = null;
    let snapshotError = null;
    try {
      const s = await window.swrtcTest?.statsSnapshot?.();
      snapshot = s == null ? null : typeof s === "object" ? Object.keys(s).length : typeof s;
    } catch (e) {
      snapshotError = String(e);
    }
    return {
      state: window.swrtcTest?.state ?? null,
      messagesReceived: Array.isArray(window.swrtcTest?.messagesReceived) ? window.swrtcTest.messagesReceived.length : null,
      statsText: (document.getElementById("stats")?.textContent ?? "").trim().slice(0, 500),
      statsSnapshotEntries: snapshot,
      statsSnapshotError: snapshotError,
    };
  });
  // 5. The server-side stats panel: /api/stats answers, #server-stats fills in, the plot
  //    has points and ink on its canvas.
  if (hasTestHook) {
    try {
      await waitFor(15000, "#server-stats to show the server's RTT and candidate pair", () =>
        page.evaluate(() => {
          const s = window.swrtcTest.serverStats;
          return !!s && s.network.reports >= 2 && s.network.rtt_ms > 0 && !!s.network.selected_pair
            && window.swrtcTest.plot.length >= 3
            && /RTT: [0-9.]+ ms/.test(document.getElementById("server-stats")?.textContent ?? "");
        }));
    } catch (e) {
      result.problems.push(e.message);
    }
    result.serverStats = await page.evaluate(() => {
      const c = document.getElementById("plot");
      const px = c ? c.getContext("2d").getImageData(0, 0, c.width, c.height).data : [];
      let ink = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
      const s = window.swrtcTest.serverStats;
      return {
        text: (document.getElementById("server-stats")?.textContent ?? "").slice(0, 600),
        network: s ? s.network : null,
        plotPoints: window.swrtcTest.plot.length,
        plotInkPixels: ink,
        maxEchoLevelDbfs: Math.max(-120, ...window.swrtcTest.plot.map((q) => q.level)),
        fetches: window.__swrtcProbe.fetches.filter((f) => f.url.includes("/api/stats")).slice(-3),
        pageErrors: window.swrtcTest.errors.slice(-5),
      };
    });
    if (!(result.serverStats.plotInkPixels > 500)) {
      result.problems.push(`the stats plot is blank: ${JSON.stringify(result.serverStats)}`);
    }
    if (process.env.SWRTC_SCREENSHOT) await page.screenshot({ path: process.env.SWRTC_SCREENSHOT, fullPage: true });
  }
  if (hasTestHook && result.page.statsSnapshotError) result.problems.push(`swrtcTest.statsSnapshot(): ${result.page.statsSnapshotError}`);
  if (!result.page.statsText) result.problems.push("#stats is empty");
});
