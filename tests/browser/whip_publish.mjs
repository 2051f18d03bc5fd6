#!/usr/bin/env node
// Publishes over WHIP from headless Chromium and views over WHEP, against an
// app that checks what it receives (tests/browser_whip.rs).
//
//   node whip_publish.mjs URL [--timeout S] [--hz F] [--view-hz G] [--verbose]
//
// In one page served by the bot (URL is its base URL), with the few lines of
// JS a WHIP/WHEP client needs (fetch, 201, Location, ETag):
//   - a viewer POSTs a recvonly offer (audio and video) to /whep;
//   - a publisher POSTs a sendonly offer to /whip with a WebAudio oscillator
//     at --hz (default 520) through a MediaStreamDestination, and a canvas
//     camera.
// The app starts writing its own tone (--view-hz, default 660) and video to
// the viewer only once it has heard the publisher's tone and seen its video,
// so the viewer hearing --view-hz also says the app's checks are done before
// the sessions are deleted. Checks here:
//   1. both POSTs answer 201 with application/sdp, a Location under their
//      endpoint and an ETag;
//   2. both peer connections connect;
//   3. the viewer's audio has the app's tone (dominant frequency within 5%),
//      and its video decodes frames;
//   4. DELETE on both resources answers 200, and a second DELETE 404.
// Prints one JSON line with the results on stdout; logs go to stderr. Exit
// status 0 when every check passed, 1 otherwise.
import { join } from "node:path";
import {
  cleanupDir, launchBrowser, log, makeRun, makeTempDir, parseArgs, watchConsole, within, writeToneWav,
} from "./lib/common.mjs";

const args = parseArgs(process.argv.slice(2));
const target = args.positional[0];
if (!target) {
  process.stderr.write("usage: node whip_publish.mjs URL [--timeout S] [--hz F] [--view-hz G]\n");
  process.exit(2);
}
const pageUrl = target.replace(/\/+$/, "") + "/";
const hz = Number(args.hz ?? 520);
const viewHz = Number(args["view-hz"] ?? 660);
const run = makeRun("whip_publish", Number(args.timeout ?? 60) * 1000);
const { result, cleanups } = run;

run.run(async () => {
  const tmp = makeTempDir("swrtc-whip-");
  cleanups.push(() => cleanupDir(tmp));
  // The fake mic is not used (the tone comes from WebAudio), but the launcher wants one.
  const wav = join(tmp, "tone.wav");
  writeToneWav(wav);
  const browser = await within(30000, "launch Chromium", () =>
    launchBrowser({ wavPath: wav, profileDir: join(tmp, "profile") }));
  cleanups.push(() => browser.close());
  const page = await browser.context.newPage();
  result.consoleErrors = watchConsole(page, args.verbose);
  await page.goto(pageUrl, { timeout: 15000 });
  log("page loaded; viewing over WHEP, publishing over WHIP");

  const out = await within(70000, "WHIP publish and WHEP view", () => page.evaluate(async ({ hz, viewHz }) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const t0 = performance.now();
    const ms = () => Math.round(performance.now() - t0);
    const gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
    });
    const connected = async (pc, what) => {
      for (let i = 0; i < 400; i++) {
        if (pc.connectionState === "connected") return ms();
        if (pc.connectionState === "failed") throw new Error(`${what} failed`);
        await sleep(50);
      }
      throw new Error(`${what} did not connect (${pc.connectionState})`);
    };
    // The whole WHIP/WHEP client: POST the gathered offer, apply the answer.
    const signal = async (pc, endpoint) => {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const r = await fetch(endpoint, {
        method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
      });
      const res = {
        status: r.status, type: r.headers.get("Content-Type"),
        location: r.headers.get("Location"), etag: r.headers.get("ETag"),
      };
      const body = await r.text();
      if (r.status !== 201) throw new Error(`${endpoint}: ${r.status} ${body}`);
      await pc.setRemoteDescription({ type: "answer", sdp: body });
      return res;
    };

    const ac = new AudioContext({ sampleRate: 48000 });
    await ac.resume();

    const viewer = new RTCPeerConnection();
    viewer.addTransceiver("audio", { direction: "recvonly" });
    viewer.addTransceiver("video", { direction: "recvonly" });
    const analyser = ac.createAnalyser();
    analyser.fftSize = 8192;
    const sink = document.createElement("audio");
    sink.muted = true; // Chrome feeds remote WebRTC audio to WebAudio only while it plays
    viewer.ontrack = (e) => {
      if (e.track.kind === "audio") {
        sink.srcObject = new MediaStream([e.track]);
        sink.play().catch(() => {});
        ac.createMediaStreamSource(new MediaStream([e.track])).connect(analyser);
      }
    };
    const whep = await signal(viewer, "/whep");

    const osc = ac.createOscillator();
    osc.frequency.value = hz;
    const gain = ac.createGain();
    gain.gain.value = 0.3;
    const dest = ac.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    const canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 240;
    const g = canvas.getContext("2d");
    let n = 0;
    const paint = setInterval(() => {
      g.fillStyle = `hsl(${(n++ * 7) % 360} 80% 50%)`;
      g.fillRect(0, 0, 320, 240);
    }, 33);
    const publisher = new RTCPeerConnection();
    publisher.addTransceiver(dest.stream.getAudioTracks()[0], { direction: "sendonly" });
    publisher.addTransceiver(canvas.captureStream(30).getVideoTracks()[0], { direction: "sendonly" });
    const whip = await signal(publisher, "/whip");
    const timings = {
      publisherConnectedMs: await connected(publisher, "the WHIP publisher"),
      viewerConnectedMs: await connected(viewer, "the WHEP viewer"),
    };

    // The dominant frequency the viewer hears, until it is the app's tone (or 45 s:
    // the app first has to hear the publisher).
    const bins = new Float32Array(analyser.frequencyBinCount);
    let heard = null;
    for (let i = 0; i < 450; i++) {
      await sleep(100);
      analyser.getFloatFrequencyData(bins);
      let best = 0;
      for (let k = 1; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
      heard = { hz: best * ac.sampleRate / analyser.fftSize, db: bins[best] };
      if (heard.db > -70 && Math.abs(heard.hz - viewHz) < viewHz * 0.05) break;
    }
    timings.viewerHeardMs = ms();
    let framesDecoded = 0;
    for (let i = 0; i < 100 && framesDecoded < 5; i++) {
      for (const s of (await viewer.getStats()).values()) {
        if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded = s.framesDecoded ?? 0;
      }
      if (framesDecoded < 5) await sleep(100);
    }
    let framesSent = 0;
    for (const s of (await publisher.getStats()).values()) {
      if (s.type === "outbound-rtp" && s.kind === "video") framesSent = s.framesEncoded ?? 0;
    }
    const del = async (loc) => [
      (await fetch(loc, { method: "DELETE" })).status,
      (await fetch(loc, { method: "DELETE" })).status,
    ];
    const deletes = { whip: await del(whip.location), whep: await del(whep.location) };
    clearInterval(paint);
    osc.stop();
    publisher.close();
    viewer.close();
    return { whip, whep, heard, framesDecoded, framesSent, deletes, timings };
  }, { hz, viewHz }));
  Object.assign(result, out);
  log("result", JSON.stringify(out));
  for (const [name, r] of [["whip", out.whip], ["whep", out.whep]]) {
    if (r.type !== "application/sdp") result.problems.push(`${name}: Content-Type ${r.type}`);
    if (!r.location?.startsWith(`/${name}/`)) result.problems.push(`${name}: Location ${r.location}`);
    if (!r.etag) result.problems.push(`${name}: no ETag readable by the page`);
    if (String(out.deletes[name]) !== "200,404") result.problems.push(`${name}: DELETE gave ${out.deletes[name]}`);
  }
  if (!(out.heard && Math.abs(out.heard.hz - viewHz) < viewHz * 0.05)) {
    result.problems.push(`the viewer heard ${JSON.stringify(out.heard)}, not the app's ${viewHz} Hz`);
  }
  if (!(out.framesDecoded > 0)) result.problems.push("the viewer decoded no video");
});
