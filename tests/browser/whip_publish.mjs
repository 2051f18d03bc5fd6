#!/usr/bin/env node
// Publishes over WHIP from headless Chromium and watches the result over WHEP,
// against the echo example (which relays WHIP publishers to WHEP viewers).
//
//   node whip_publish.mjs URL [--timeout S] [--hz F] [--verbose]
//
// In one page served by the bot (URL is its base URL): a viewer POSTs a
// recvonly offer to /whep, then a publisher POSTs a sendonly offer with a
// WebAudio oscillator at --hz (default 520) and a canvas camera to /whip, with
// the few lines of JS a WHIP client needs (fetch, 201, Location, ETag). Checks:
//   1. both POSTs answer 201 with application/sdp, a Location under their
//      endpoint and an ETag readable cross-origin-style (exposed headers);
//   2. both peer connections connect;
//   3. the viewer's audio has the publisher's tone (dominant frequency within
//      5%), and its video decodes frames;
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
  process.stderr.write("usage: node whip_publish.mjs URL [--timeout S] [--hz F]\n");
  process.exit(2);
}
const pageUrl = target.replace(/\/+$/, "") + "/";
const hz = Number(args.hz ?? 520);
const run = makeRun("whip_publish", Number(args.timeout ?? 60) * 1000);
const { result, cleanups } = run;

run.run(async () => {
  const tmp = makeTempDir("swrtc-whip-");
  cleanups.push(() => cleanupDir(tmp));
  const wav = join(tmp, "tone.wav");
  writeToneWav(wav);
  const browser = await within(30000, "launch Chromium", () =>
    launchBrowser({ wavPath: wav, profileDir: join(tmp, "profile") }));
  cleanups.push(() => browser.close());
  const page = await browser.context.newPage();
  result.consoleErrors = watchConsole(page, args.verbose);
  await page.goto(pageUrl, { timeout: 15000 });
  log("page loaded; publishing over WHIP, viewing over WHEP");

  const out = await within(45000, "WHIP publish and WHEP view", () => page.evaluate(async (hz) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
    });
    const connected = async (pc, what) => {
      for (let i = 0; i < 300; i++) {
        if (pc.connectionState === "connected") return;
        if (pc.connectionState === "failed") throw new Error(`${what} failed`);
        await sleep(50);
      }
      throw new Error(`${what} did not connect (${pc.connectionState})`);
    };
    // The WHIP/WHEP client: POST the gathered offer, apply the answer.
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

    const viewer = new RTCPeerConnection();
    viewer.addTransceiver("audio", { direction: "recvonly" });
    viewer.addTransceiver("video", { direction: "recvonly" });
    const ac = new AudioContext();
    await ac.resume();
    const analyser = ac.createAnalyser();
    analyser.fftSize = 8192;
    const remote = new MediaStream();
    const sink = document.createElement("audio");
    sink.muted = true; // Chrome feeds remote WebRTC audio to WebAudio only while it plays
    viewer.ontrack = (e) => {
      remote.addTrack(e.track);
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
    await connected(publisher, "the WHIP publisher");
    await connected(viewer, "the WHEP viewer");

    // The dominant frequency the viewer hears, until it is the tone (or 15 s).
    const bins = new Float32Array(analyser.frequencyBinCount);
    let heard = null;
    for (let i = 0; i < 150; i++) {
      await sleep(100);
      analyser.getFloatFrequencyData(bins);
      let best = 0;
      for (let k = 1; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
      heard = { hz: best * ac.sampleRate / analyser.fftSize, db: bins[best] };
      if (heard.db > -70 && Math.abs(heard.hz - hz) < hz * 0.05) break;
    }
    let framesDecoded = 0;
    for (const s of (await viewer.getStats()).values()) {
      if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded = s.framesDecoded ?? 0;
    }
    const del = async (loc) => [
      (await fetch(loc, { method: "DELETE" })).status,
      (await fetch(loc, { method: "DELETE" })).status,
    ];
    const deletes = { whip: await del(whip.location), whep: await del(whep.location) };
    clearInterval(paint);
    publisher.close();
    viewer.close();
    return { whip, whep, heard, framesDecoded, deletes };
  }, hz));
  Object.assign(result, out);
  log("result", JSON.stringify(out));
  for (const [name, r] of [["whip", out.whip], ["whep", out.whep]]) {
    if (r.type !== "application/sdp") result.problems.push(`${name}: Content-Type ${r.type}`);
    if (!r.location?.startsWith(`/${name}/`)) result.problems.push(`${name}: Location ${r.location}`);
    if (!r.etag) result.problems.push(`${name}: no ETag readable by the page`);
    if (String(out.deletes[name]) !== "200,404") result.problems.push(`${name}: DELETE gave ${out.deletes[name]}`);
  }
  if (!(out.heard && Math.abs(out.heard.hz - hz) < hz * 0.05)) {
    result.problems.push(`the viewer heard ${JSON.stringify(out.heard)}, not ${hz} Hz`);
  }
  if (!(out.framesDecoded > 0)) result.problems.push("the viewer decoded no video");
});
