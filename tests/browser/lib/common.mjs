// Shared by the browser test drivers: the test WAV, Chromium launch
// (playwright-core, Debian's chromium), a static file server, the echo
// analysis of the audio envelopes the probe (probe.js) records, deadlines and
// the one-line JSON result.
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = dirname(dirname(fileURLToPath(import.meta.url)));
export const PROBE_SRC = readFileSync(join(HERE, "lib", "probe.js"), "utf8");

// ---------------------------------------------------------------- logging
export const t0 = Date.now();
export function log(...args) {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${args.join(" ")}\n`);
}

// ---------------------------------------------------------------- args
// --key value / --key=value / --flag (the flags that never take a value are
// listed in FLAGS). Returns {positional:[], key: value|true}.
const FLAGS = new Set(["no-cam", "expect-video", "verbose"]);
export function parseArgs(argv) {
  const out = { positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
      else if (!FLAGS.has(a.slice(2)) && i + 1 < argv.length && !argv[i + 1].startsWith("--")) out[a.slice(2)] = argv[++i];
      else out[a.slice(2)] = true;
    } else out.positional.push(a);
  }
  return out;
}

// ---------------------------------------------------------------- WAV
// The test signal: 48 kHz mono s16, a tone burst (`freq` Hz, `onMs` on with
// 5 ms raised-cosine ramps) at the start of every `periodMs`, over a quiet
// continuous bed tone (`bedFreq` Hz, -26 dBFS) so that the first echoed audio
// is seen as soon as it arrives, not at the next burst; `seconds` long, a
// whole number of periods so Chromium's looping of the file keeps the rhythm.
export const TONE = {
  rate: 48000, freq: 440, onMs: 200, periodMs: 1000, amplitude: 0.5,
  bedFreq: 1000, bedAmplitude: 0.05, seconds: 30,
};

export function writeToneWav(path, tone = TONE) {
  const { rate, freq, onMs, periodMs, amplitude, bedFreq, bedAmplitude, seconds } = tone;
  const n = rate * seconds;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write("WAVE", 8);
  buf.write("fmt ", 12);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(n * 2, 40);
  const period = Math.round((rate * periodMs) / 1000);
  const on = Math.round((rate * onMs) / 1000);
  const ramp = Math.round(rate * 0.005);
  for (let i = 0; i < n; i++) {
    const k = i % period;
    let v = bedAmplitude * Math.sin((2 * Math.PI * bedFreq * i) / rate);
    if (k < on) {
      let g = 1;
      if (k < ramp) g = 0.5 - 0.5 * Math.cos((Math.PI * k) / ramp);
      else if (k >= on - ramp) g = 0.5 - 0.5 * Math.cos((Math.PI * (on - k)) / ramp);
      v += amplitude * g * Math.sin((2 * Math.PI * freq * k) / rate);
    }
    buf.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(v * 32767))), 44 + i * 2);
  }
  writeFileSync(path, buf);
}

// ---------------------------------------------------------------- temp dir
export function makeTempDir(prefix) {
  return mkdtempSync(join(tmpdir(), prefix));
}

// ---------------------------------------------------------------- Chromium
export const CHROMIUM = process.env.SWRTC_CHROMIUM || "/usr/bin/chromium";

// Launches headless Chromium with fake media devices fed by `wavPath`, in a
// fresh profile directory. Returns {context, close()}.
export async function launchBrowser({ wavPath, profileDir }) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run .ci/setup-browser.sh (Debian package 'chromium'), or set SWRTC_CHROMIUM`);
  }
  const { chromium } = await import("playwright-core");
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    // Inside a namespace that has only `lo`, Chromium would gather no ICE
    // candidate at all without this (it skips loopback interfaces).
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-audio-capture=${wavPath}`,
  ];
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args,
    ignoreDefaultArgs: ["--mute-audio"],
    permissions: ["microphone", "camera"],
    timeout: 30000,
  });
  let closed = false;
  return {
    context,
    async close() {
      if (closed) return;
      closed = true;
      await Promise.race([context.close().catch(() => {}), sleep(5000)]);
    },
  };
}

// ---------------------------------------------------------------- static server
const MIME = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".map": "application/json", ".wav": "audio/wav" };

// Serves `root` on 127.0.0.1 (random port). Resolves with {url, close()}.
export function serveStatic(root) {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^([/\\])+/, "");
    const file = join(root, path || "index.html");
    if (!file.startsWith(root + sep) || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", "content-length": body.length, "cache-control": "no-store" });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

// ---------------------------------------------------------------- helpers
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs `fn` with a deadline; rejects with a message naming the step.
export async function within(ms, what, fn) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([fn(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

// Polls `fn` (async, returns a truthy value when done) until the deadline.
export async function waitFor(ms, what, fn, everyMs = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

export const median = (xs) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------- echo analysis
// Envelope rows are [t, rmsL, rmsR, zcL, zcR], one per ENV_STEP seconds.
export const ENV_STEP = 0.005;

// Finds tone bursts in one envelope channel. A burst starts when the RMS
// rises above `thr` after at least `gapMs` below it (the start time is
// interpolated between the two rows around the crossing), and ends when it
// stays below for `holdMs`.
function findBursts(env, ch, thr, { gapMs = 150, holdMs = 40 } = {}) {
  const bursts = [];
  let cur = null;
  let lastAbove = -Infinity;
  let prev = null;
  for (const row of env) {
    const t = row[0];
    const v = row[1 + ch];
    if (v >= thr) {
      if (!cur && (t - lastAbove) * 1000 >= gapMs) {
        let start = t;
        if (prev && prev[1 + ch] < thr && v > prev[1 + ch]) {
          start = prev[0] + ((thr - prev[1 + ch]) / (v - prev[1 + ch])) * (t - prev[0]);
        }
        cur = { start, end: t, peak: v, zc: 0, zcRows: 0 };
      }
      if (cur) {
        cur.end = t + ENV_STEP;
        cur.peak = Math.max(cur.peak, v);
        cur.zc += row[3 + ch];
        cur.zcRows++;
      }
      lastAbove = t;
    } else if (cur && (t - lastAbove) * 1000 >= holdMs) {
      bursts.push(cur);
      cur = null;
    }
    prev = row;
  }
  if (cur) bursts.push({ ...cur, open: true });
  return bursts.map((b) => ({
    start: b.start,
    durMs: (b.end - b.start) * 1000,
    peak: b.peak,
    // zero crossings per row → Hz (two crossings per cycle).
    freqHz: b.zcRows ? b.zc / b.zcRows / ENV_STEP / 2 : null,
    open: !!b.open,
  }));
}

// Compares the local (sent) and remote (received) envelopes. Each complete
// remote burst is matched to the latest local burst that started before it
// (within one period); the lag is the echo round trip.
export function analyseEcho(env, { tone = TONE, minBursts = 3, maxLagMs = 700 } = {}) {
  const res = { ok: false, problems: [] };
  if (!env || env.length < 100) {
    res.problems.push(`audio tap recorded ${env?.length ?? 0} envelope rows`);
    return res;
  }
  const peakOf = (ch) => env.reduce((m, r) => Math.max(m, r[1 + ch]), 0);
  const localPeak = peakOf(0);
  const remotePeak = peakOf(1);
  res.localPeakRms = round(localPeak, 4);
  res.remotePeakRms = round(remotePeak, 4);
  const thr = (p) => Math.max(0.01, p * 0.3);
  const local = findBursts(env, 0, thr(localPeak)).filter((b) => !b.open);
  const remote = findBursts(env, 1, thr(remotePeak)).filter((b) => !b.open);
  res.localBursts = local.length;
  res.remoteBursts = remote.length;
  if (localPeak < 0.05) res.problems.push(`the local (mic) track is silent: peak RMS ${localPeak.toFixed(4)}`);
  if (remotePeak < 0.02) res.problems.push(`the remote track is silent: peak RMS ${remotePeak.toFixed(4)}`);
  const matched = [];
  for (const r of remote) {
    const cands = local.filter((l) => l.start <= r.start + 0.005 && (r.start - l.start) * 1000 <= tone.periodMs - 50);
    if (!cands.length) continue;
    const l = cands[cands.length - 1];
    const lagMs = (r.start - l.start) * 1000;
    if (lagMs > maxLagMs) continue;
    matched.push({ at: r.start, lagMs, durMs: r.durMs, freqHz: r.freqHz, localDurMs: l.durMs });
  }
  // Remote bursts that look like the tone (duration and pitch).
  const good = matched.filter((m) =>
    Math.abs(m.durMs - tone.onMs) <= 80 && m.freqHz != null && Math.abs(m.freqHz - tone.freq) <= tone.freq * 0.15);
  res.matchedBursts = matched.length;
  res.goodBursts = good.length;
  const lags = good.map((m) => m.lagMs);
  res.lagMs = {
    median: round(median(lags)),
    min: round(lags.length ? Math.min(...lags) : null),
    max: round(lags.length ? Math.max(...lags) : null),
    all: lags.map((x) => round(x)),
  };
  res.remoteBurstMs = round(median(good.map((m) => m.durMs)));
  res.remoteFreqHz = round(median(good.map((m) => m.freqHz)));
  res.firstRemoteBurstCtxTime = remote.length ? remote[0].start : null;
  // The first remote audio that is not silence (the bed tone, or a burst).
  res.firstRemoteAudioCtxTime = env.find((r) => r[2] >= 0.005)?.[0] ?? null;
  if (good.length < minBursts) {
    res.problems.push(
      `heard ${good.length} echoed tone bursts (need ${minBursts}); remote bursts ${remote.length}, matched ${matched.length}: ` +
        JSON.stringify(matched.slice(0, 6).map((m) => ({ lag: round(m.lagMs), dur: round(m.durMs), hz: round(m.freqHz) }))),
    );
  }
  res.ok = res.problems.length === 0;
  return res;
}

// ---------------------------------------------------------------- result
// Prints the one JSON result line on stdout and exits (0 if ok).
export function finish(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}

export function cleanupDir(dir) {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {}
}

// ---------------------------------------------------------------- driver steps
// Sends a message with `send()` and waits for it to come back as
// {"echo": <the message as it went on the wire>} (a message that is not JSON:
// {"echo": "<the text>"}). `pick` finds the sent
// message among the probe's log of sent data-channel messages.
export async function checkMessageEcho(page, send, pick, what, { timeoutMs = 5000 } = {}) {
  const before = await page.evaluate(() => window.__swrtcProbe.sent.length);
  await send();
  let sent;
  try {
    sent = await waitFor(timeoutMs, `${what} to be sent`, () =>
      page.evaluate((b) => window.__swrtcProbe.sent.slice(b), before).then((xs) => xs.find(pick)));
  } catch (e) {
    const xs = await page.evaluate((b) => window.__swrtcProbe.sent.slice(b), before);
    return { ok: false, problem: `${e.message}; sent since: ${JSON.stringify(xs).slice(0, 300)}` };
  }
  try {
    const got = await waitFor(timeoutMs, `the echo of ${what}`, () =>
      page.evaluate(() => window.__swrtcProbe.received).then((rs) =>
        rs.find((r) => r.json && r.t >= sent.t && deepEqual(r.json, { echo: sent.json ?? sent.text }))));
    return { ok: true, rttMs: Math.round((got.t - sent.t) * 10) / 10, sent: sent.json ?? sent.text };
  } catch (e) {
    const rs = await page.evaluate(() => window.__swrtcProbe.received.slice(-5));
    return { ok: false, problem: `${e.message}; sent ${JSON.stringify(sent.json ?? sent.text).slice(0, 200)}; last received: ${JSON.stringify(rs).slice(0, 400)}` };
  }
}

// Waits until the probe's audio envelopes show `minBursts` echoed tone bursts.
// Returns {echo, problem}.
export async function checkAudioEcho(page, { minBursts = 5, timeoutMs = 15000 } = {}) {
  let echo = null;
  try {
    await waitFor(timeoutMs, `${minBursts} echoed tone bursts`, async () => {
      const env = await page.evaluate(() => window.__swrtcProbe.audio?.env ?? null);
      echo = analyseEcho(env, { minBursts });
      return echo.ok;
    }, 250);
    return { echo };
  } catch (e) {
    const tap = await page.evaluate(() => {
      const p = window.__swrtcProbe;
      const pc = p.pcs.at(-1);
      return {
        started: !!p.audio,
        remoteAudioTrack: p.events.some((e) => e.ev === "remote-track" && e.kind === "audio"),
        audioDirection: pc?.getTransceivers().find((t) => t.receiver.track.kind === "audio")?.currentDirection ?? null,
        tapError: p.events.find((e) => e.ev === "audio-tap-error")?.error ?? null,
      };
    }).catch(() => null);
    let why = (echo?.problems ?? []).join("; ");
    if (tap && !tap.started) {
      why = tap.remoteAudioTrack
        ? `the audio tap did not start (${tap.tapError ?? "no local audio track on a sender?"})`
        : `no remote audio track arrived (audio transceiver direction: ${tap.audioDirection})`;
    }
    return { echo, problem: `audio: ${e.message}: ${why}` };
  }
}

// Reads what the probe saw on the connection `pcExpr` (a page expression for
// an RTCPeerConnection, or null for the last one created) and builds the
// common part of a result: timings relative to the POST of the offer, HTTP
// statuses, stats, the answer's candidates, the event log.
export async function collectReport(page, { offerUrl, echo, pcExpr = null }) {
  const snap = await page.evaluate(async (pcExpr) => {
    const p = window.__swrtcProbe;
    const pc = pcExpr ? (0, eval)(pcExpr) : p.pcs.at(-1);
    const sdp = pc?.remoteDescription?.sdp ?? "";
    return {
      events: p.events,
      fetches: p.fetches,
      stats: await p.stats(pc),
      remoteCandidates: [...new Set(sdp.split(/\r?\n/).filter((l) => l.startsWith("a=candidate:")))],
      answerBytes: sdp.length,
      clock: p.audio?.clock?.at(-1) ?? null,
    };
  }, pcExpr);
  const isOffer = (f) => f.url === offerUrl || new URL(f.url, "http://x").pathname.endsWith("/api/offer");
  const post = snap.fetches.find((f) => f.method === "POST" && isOffer(f));
  const patches = snap.fetches.filter((f) => f.method === "PATCH" && isOffer(f));
  const dcOpen = snap.events.find((e) => e.ev === "dc-open");
  const pcConnected = snap.events.find((e) => e.ev === "pc-state" && e.state === "connected");
  const rel = (t) => (t == null || !post ? null : Math.round((t - post.t0) * 10) / 10);
  let firstEchoPerf = null;
  if (echo?.firstRemoteAudioCtxTime != null && snap.clock) {
    firstEchoPerf = snap.clock[1] + (echo.firstRemoteAudioCtxTime - snap.clock[0]) * 1000;
  }
  const problems = [];
  if (!post) problems.push("the page made no POST to the offer URL");
  else if (post.status !== 200) problems.push(`POST ${post.url} → ${post.status ?? post.error}`);
  for (const f of patches) if (f.status !== 200) problems.push(`PATCH ${f.url} → ${f.status ?? f.error}`);
  const videoIn = snap.stats?.inbound.find((s) => s.kind === "video");
  return {
    problems,
    timings: {
      postToAnswerMs: post?.t1 != null ? Math.round((post.t1 - post.t0) * 10) / 10 : null,
      postToIceConnectedMs: rel(pcConnected?.t),
      postToDcOpenMs: rel(dcOpen?.t),
      postToFirstEchoedAudioMs: rel(firstEchoPerf),
      echoRoundTripMs: echo?.lagMs?.median ?? null,
    },
    postT0: post?.t0 ?? null,
    http: { post: post ? post.status ?? post.error : null, patches: patches.map((f) => f.status ?? f.error) },
    stats: snap.stats,
    video: { framesDecoded: videoIn?.framesDecoded ?? 0, codec: videoIn?.codec ?? null, width: videoIn?.frameWidth ?? null, height: videoIn?.frameHeight ?? null },
    answer: { bytes: snap.answerBytes, candidates: snap.remoteCandidates },
    events: snap.events.map((e) => `${Math.round(e.t)} ${e.ev}${e.state ? ":" + e.state : ""}${e.kind ? ":" + e.kind : ""}${e.label ? ":" + e.label : ""}`),
  };
}

// The echoed video must keep decoding, not just have started: framesDecoded of the remote
// video must grow by at least `minFrames` within `windowMs` after `report` was taken.
export async function checkVideoGrowth(page, report, reportArgs, { minFrames = 20, windowMs = 10000 } = {}) {
  const first = report.video.framesDecoded ?? 0;
  const end = Date.now() + windowMs;
  let latest = report;
  while (Date.now() < end) {
    await sleep(500);
    latest = await collectReport(page, reportArgs);
    if ((latest.video.framesDecoded ?? 0) - first >= minFrames) break;
  }
  const grew = (latest.video.framesDecoded ?? 0) - first;
  const video = { ...latest.video, framesDecodedGrowth: grew };
  const problem = grew >= minFrames ? null : `remote video framesDecoded grew by ${grew} (want ≥ ${minFrames} within ${windowMs} ms)`;
  return { video, problem };
}

// Console errors and warnings of a page (without the favicon 404).
export function watchConsole(page, verbose) {
  const lines = [];
  page.on("console", (m) => {
    const text = m.text();
    if (verbose) log("page", m.type(), text);
    if ((m.type() === "error" || m.type() === "warning") && !/favicon|Failed to load resource.*404/.test(text)) {
      lines.push(`${m.type()}: ${text}`.slice(0, 300));
    }
  });
  page.on("pageerror", (e) => lines.push(`pageerror: ${e.message}`.slice(0, 300)));
  page.on("requestfailed", (r) => {
    if (!/favicon/.test(r.url())) lines.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ""}`.slice(0, 300));
  });
  return lines;
}

// The run scaffolding shared by the drivers: a hard deadline that closes
// everything and prints the result, cleanups in reverse order, and the exit.
export function makeRun(driver, totalMs) {
  const result = { ok: false, driver, problems: [], timings: {} };
  const cleanups = [];
  let finished = false;
  const end = async (extra = {}) => {
    if (finished) return;
    finished = true;
    Object.assign(result, extra);
    for (const f of cleanups.reverse()) {
      try {
        await within(8000, "cleanup", f);
      } catch {}
    }
    result.ok = result.problems.length === 0 && !result.error;
    finish(result);
  };
  const timer = setTimeout(() => {
    result.error = `overall deadline of ${totalMs} ms passed`;
    log(result.error);
    end();
  }, totalMs);
  timer.unref?.();
  // Started by the Rust harness with stdin a pipe: its end means the test is gone.
  if (process.env.SWRTC_DRIVER_WATCH_STDIN === "1") {
    process.stdin.on("end", () => {
      result.error = "stdin closed: the test that started this driver is gone";
      end();
    });
    process.stdin.on("error", () => {});
    process.stdin.resume();
  }
  return {
    result,
    cleanups,
    end,
    run(main) {
      main().then(
        () => end(),
        (e) => {
          log("error:", e.stack ?? e);
          end({ error: String(e.message ?? e) });
        },
      );
    },
  };
}
