#!/usr/bin/env node
// Drives the official Pipecat JS client (@pipecat-ai/client-js +
// @pipecat-ai/small-webrtc-transport, bundled by build.mjs into
// dist/official_client.html) in headless Chromium against a SmallWebRTC
// server, e.g. the echo example.
//
//   node official_client.mjs URL [--timeout S] [--no-cam] [--expect-video]
//        [--audio-codec C] [--video-codec C] [--bursts N] [--verbose]
//        [--ice-servers JSON]
//
// --ice-servers takes an RTCIceServer[] (JSON) for the transport's
// `iceServers` option, e.g. a TURN server with username and credential.
// URL is the server's base URL (http://127.0.0.1:PORT) or its offer endpoint
// (…/api/offer). The page is served from another origin (a static server on
// 127.0.0.1), so the server's CORS headers are exercised too. Checks, each
// with a deadline:
//   1. connect() resolves (the server must answer RTVI client-ready with bot-ready);
//   2. an RTVI client-message sent with sendClientMessage() comes back as
//      {"echo": <the message as sent>}, and so does a raw 4 KB JSON message
//      (the client passes no message without label "rtvi-ai" to the app, so
//      echoes are read on the data channel itself);
//   3. the client hears its own tone bursts (the fake mic plays the WAV) come
//      back on the remote audio track; their lag is the echo round trip;
//   4. disconnect() completes.
// Prints one JSON line with the results and timings on stdout; logs go to
// stderr. Exit status 0 when every check passed, 1 otherwise.
import { join } from "node:path";
import { existsSync } from "node:fs";
import {
  HERE, PROBE_SRC, checkAudioEcho, checkMessageEcho, checkVideoGrowth, cleanupDir, collectReport, launchBrowser, log,
  makeRun, makeTempDir, parseArgs, serveStatic, watchConsole, within, writeToneWav,
} from "./lib/common.mjs";

const args = parseArgs(process.argv.slice(2));
const target = args.positional[0];
if (!target) {
  process.stderr.write("usage: node official_client.mjs URL [--timeout S] [--no-cam] [--expect-video] [--bursts N]\n");
  process.exit(2);
}
const offerUrl = /\/api\/offer\/?$/.test(target) ? target : target.replace(/\/+$/, "") + "/api/offer";
const run = makeRun("official_client", Number(args.timeout ?? 60) * 1000);
const { result, cleanups } = run;
result.offerUrl = offerUrl;

run.run(async () => {
  const dist = join(HERE, "dist");
  if (!existsSync(join(dist, "official_client.js"))) {
    throw new Error("no dist/official_client.js: run `node build.mjs` in tests/browser (or .ci/setup-browser.sh)");
  }
  const tmp = makeTempDir("swrtc-official-");
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
  log("page loaded; connecting to", offerUrl);

  // 1. connect() resolves on bot-ready.
  let conn;
  try {
    conn = await within(20000, "connect() to resolve (bot-ready)", () => page.evaluate(
      (cfg) => window.swrtcOfficial.connect(cfg),
      {
        offerUrl, enableCam: !args["no-cam"], audioCodec: args["audio-codec"], videoCodec: args["video-codec"],
        iceServers: args["ice-servers"] ? JSON.parse(args["ice-servers"]) : undefined,
      },
    ));
  } catch (e) {
    result.debug = await page.evaluate(() => ({
      events: window.__swrtcProbe.events, fetches: window.__swrtcProbe.fetches,
      received: window.__swrtcProbe.received, client: window.swrtcOfficial.state.events,
    })).catch(() => null);
    throw new Error(`connect() failed: ${e.message.split("\n")[0]}`);
  }
  result.clientVersion = conn.version;
  result.pcId = conn.pcId;
  result.botReady = conn.botReady;
  log("connect() resolved; pc_id", conn.pcId);

  // 2. App messages come back as {"echo": m}.
  result.messages = {
    rtvi: await checkMessageEcho(page,
      () => page.evaluate(() => window.swrtcOfficial.sendClientMessage("swrtc-echo-test",
        { seq: 1, text: "héllo wörld ✓", nested: { a: [1, 2, 3], b: null, c: true } })),
      (s) => s.json?.type === "client-message" && s.json?.data?.t === "swrtc-echo-test",
      "an RTVI client-message"),
    raw4k: await checkMessageEcho(page,
      () => page.evaluate(() => window.swrtcOfficial.sendRaw({ kind: "raw", seq: 2, big: "x".repeat(4000) })),
      (s) => s.json?.kind === "raw" && s.json?.seq === 2,
      "a raw 4 KB message"),
  };
  for (const [k, v] of Object.entries(result.messages)) {
    if (!v.ok) result.problems.push(`message echo (${k}): ${v.problem}`);
    delete v.sent;
  }

  // 3. The tone bursts come back.
  const { echo, problem } = await checkAudioEcho(page, { minBursts: Number(args.bursts ?? 5) });
  if (problem) result.problems.push(problem);

  const report = await collectReport(page, { offerUrl, echo, pcExpr: "window.swrtcOfficial.peerConnection()" });
  result.problems.push(...report.problems);
  result.timings = {
    connectCallToResolveMs: Math.round((conn.t1 - conn.t0) * 10) / 10,
    ...report.timings,
    postToBotReadyMs: report.postT0 != null ? Math.round((conn.t1 - report.postT0) * 10) / 10 : null,
  };
  result.audio = echo;
  result.video = report.video;
  if (args["expect-video"]) {
    if (!(report.video.framesDecoded > 0)) result.problems.push("no remote video frames decoded");
    const grown = await checkVideoGrowth(page, report, { offerUrl, echo, pcExpr: "window.swrtcOfficial.peerConnection()" });
    result.video = grown.video;
    if (grown.problem) result.problems.push(grown.problem);
  }
  Object.assign(result, { http: report.http, stats: report.stats, answer: report.answer, events: report.events });
  result.clientEvents = await page.evaluate(() => window.swrtcOfficial.state.events.map(
    (e) => `${Math.round(e.t)} ${e.ev}${e.state ? ":" + e.state : ""}${e.kind ? ":" + e.kind : ""}${e.local ? ":local" : ""}`));

  // 4. Leave like a user.
  try {
    await within(5000, "disconnect()", () => page.evaluate(() => window.swrtcOfficial.disconnect()));
  } catch (e) {
    result.problems.push(`disconnect(): ${e.message.split("\n")[0]}`);
  }
});
