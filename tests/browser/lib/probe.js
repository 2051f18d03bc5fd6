// Injected into every page before its own scripts (playwright addInitScript).
// Records, on window.__swrtcProbe:
//   - every RTCPeerConnection the page creates (state changes, data channels,
//     the messages sent and received on them, except "ping..." keepalives);
//   - every fetch (method, url, status, start/end times);
//   - on request (startAudio), a 10 ms energy envelope of a local and a
//     remote audio track, taken by one AudioWorklet on one AudioContext so
//     both share a clock: the lag between the two envelopes is the echo
//     round trip (capture → encode → network → server → decode → playout).
// Times are performance.now() milliseconds.
(() => {
  if (window.__swrtcProbe) return;
  const now = () => performance.now();
  const probe = {
    events: [],
    fetches: [],
    pcs: [],
    dcs: [],
    sent: [],
    received: [],
    audio: null,
  };
  window.__swrtcProbe = probe;
  const log = (ev, extra = {}) => probe.events.push({ t: now(), ev, ...extra });

  const parse = (data) => {
    if (typeof data !== "string") return { binary: true, bytes: data?.byteLength ?? data?.size ?? 0 };
    try {
      return { json: JSON.parse(data) };
    } catch {
      return { text: data };
    }
  };
  const isPing = (data) => typeof data === "string" && data.startsWith("ping");

  function hookDc(dc, how) {
    const idx = probe.dcs.length;
    probe.dcs.push(dc);
    log("dc-created", { idx, label: dc.label, how });
    dc.addEventListener("open", () => log("dc-open", { idx, label: dc.label }));
    dc.addEventListener("close", () => log("dc-close", { idx, label: dc.label }));
    dc.addEventListener("message", (e) => {
      if (isPing(e.data)) return;
      probe.received.push({ t: now(), dc: idx, ...parse(e.data) });
    });
    const send = dc.send.bind(dc);
    dc.send = (data) => {
      if (!isPing(data)) probe.sent.push({ t: now(), dc: idx, ...parse(data) });
      return send(data);
    };
  }

  const NativePC = window.RTCPeerConnection;
  if (NativePC) {
    class ProbedPC extends NativePC {
      constructor(...args) {
        super(...args);
        const idx = probe.pcs.length;
        probe.pcs.push(this);
        log("pc-created", { idx });
        this.addEventListener("connectionstatechange", () =>
          log("pc-state", { idx, state: this.connectionState }));
        this.addEventListener("iceconnectionstatechange", () =>
          log("ice-state", { idx, state: this.iceConnectionState }));
        this.addEventListener("datachannel", (e) => hookDc(e.channel, "remote"));
        this.addEventListener("track", (e) => {
          log("remote-track", { idx, kind: e.track.kind, mid: e.transceiver?.mid ?? null });
          if (e.track.kind === "audio" && probe.autoTap) autoTap(this, e.track);
        });
      }
      createDataChannel(...args) {
        const dc = super.createDataChannel(...args);
        hookDc(dc, "local");
        return dc;
      }
    }
    window.RTCPeerConnection = ProbedPC;
    if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = ProbedPC;
  }

  const nativeFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const method = (init?.method || (typeof input === "object" && input.method) || "GET").toUpperCase();
    const rec = { url, method, t0: now(), t1: null, status: null, error: null };
    probe.fetches.push(rec);
    try {
      const res = await nativeFetch(input, init);
      rec.t1 = now();
      rec.status = res.status;
      return res;
    } catch (e) {
      rec.t1 = now();
      rec.error = String(e);
      throw e;
    }
  };

  // One worklet, two inputs (0: local, 1: remote). Per 5 ms of context time
  // it posts [contextTime, rmsLocal, rmsRemote, zeroCrossingsLocal, zeroCrossingsRemote].
  const WORKLET = `
    class SwrtcEnvelope extends AudioWorkletProcessor {
      constructor() {
        super();
        this.win = Math.round(sampleRate / 200);
        this.n = 0; this.start = currentTime;
        this.sq = [0, 0]; this.zc = [0, 0]; this.prev = [0, 0];
        this.batch = [];
      }
      process(inputs) {
        const len = 128;
        for (let i = 0; i < len; i++) {
          for (let k = 0; k < 2; k++) {
            const ch = inputs[k] && inputs[k][0];
            const x = ch ? ch[i] : 0;
            this.sq[k] += x * x;
            if ((x >= 0) !== (this.prev[k] >= 0)) this.zc[k]++;
            this.prev[k] = x;
          }
          if (++this.n === this.win) {
            this.batch.push([this.start, Math.sqrt(this.sq[0] / this.n), Math.sqrt(this.sq[1] / this.n), this.zc[0], this.zc[1]]);
            this.n = 0; this.start = currentTime + (i + 1) / sampleRate;
            this.sq = [0, 0]; this.zc = [0, 0];
          }
        }
        if (this.batch.length >= 20) { this.port.postMessage(this.batch); this.batch = []; }
        return true;
      }
    }
    registerProcessor("swrtc-envelope", SwrtcEnvelope);
  `;

  // The AudioContext and its worklet are made at page start, so that the tap
  // is running before the first remote audio can arrive.
  let ctxReady = null;
  const prepareAudio = () => {
    if (!ctxReady) {
      ctxReady = (async () => {
        const ctx = new AudioContext({ sampleRate: 48000 });
        const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
        await ctx.audioWorklet.addModule(url);
        return ctx;
      })();
      ctxReady.catch((e) => log("audio-prepare-error", { error: String(e) }));
    }
    return ctxReady;
  };
  try {
    prepareAudio();
  } catch (e) {
    log("audio-prepare-error", { error: String(e) });
  }

  probe.startAudio = async (localTrack, remoteTrack) => {
    if (probe.audio) return;
    const ctx = await prepareAudio();
    await ctx.resume();
    const node = new AudioWorkletNode(ctx, "swrtc-envelope", {
      numberOfInputs: 2,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
    });
    // Chromium renders a remote WebRTC track into WebAudio only while it is
    // also attached to a media element; a muted one is enough.
    const el = document.createElement("audio");
    el.muted = true;
    el.autoplay = true;
    el.srcObject = new MediaStream([remoteTrack]);
    document.body.appendChild(el);
    el.play().catch(() => {});
    ctx.createMediaStreamSource(new MediaStream([localTrack])).connect(node, 0, 0);
    ctx.createMediaStreamSource(new MediaStream([remoteTrack])).connect(node, 0, 1);
    const sink = ctx.createGain();
    sink.gain.value = 0;
    node.connect(sink).connect(ctx.destination);
    const audio = { ctx, node, el, env: [], clock: [] };
    node.port.onmessage = (e) => {
      for (const row of e.data) audio.env.push(row);
      const ts = ctx.getOutputTimestamp();
      if (ts.contextTime) audio.clock.push([ts.contextTime, ts.performanceTime]);
    };
    probe.audio = audio;
    log("audio-tap-started", { sampleRate: ctx.sampleRate, state: ctx.state });
  };

  // Starts the audio tap as soon as the page has a remote audio track and a
  // local audio track on a sender of the same connection, so that the first
  // echoed audio is seen. Set probe.autoTap = false to start it by hand.
  probe.autoTap = true;
  function autoTap(pc, remoteTrack) {
    const started = now();
    const attempt = () => {
      if (probe.audio || probe.audioStarting) return;
      const local = pc.getSenders().map((s) => s.track).find((t) => t && t.kind === "audio");
      if (!local) {
        if (now() - started < 30000) setTimeout(attempt, 20);
        return;
      }
      probe.audioStarting = true;
      probe.startAudio(local, remoteTrack).catch((e) => log("audio-tap-error", { error: String(e) }));
    };
    attempt();
  }

  // Maps context seconds to performance.now() ms, from the latest clock sample.
  probe.audioTimeToPerf = (ctxTime) => {
    const c = probe.audio?.clock?.at(-1);
    if (!c) return null;
    return c[1] + (ctxTime - c[0]) * 1000;
  };

  probe.snapshot = () => ({
    events: probe.events,
    fetches: probe.fetches,
    sent: probe.sent,
    received: probe.received,
    audio: probe.audio
      ? {
          env: probe.audio.env,
          clock: probe.audio.clock.at(-1) ?? null,
          state: probe.audio.ctx.state,
          sampleRate: probe.audio.ctx.sampleRate,
        }
      : null,
  });

  // A compact view of RTCPeerConnection.getStats for the report.
  probe.stats = async (pc) => {
    pc = pc ?? probe.pcs.at(-1);
    if (!pc) return null;
    const report = await pc.getStats();
    const all = [...report.values()];
    const byId = new Map(all.map((s) => [s.id, s]));
    const codecOf = (s) => byId.get(s.codecId)?.mimeType ?? null;
    const pair = all.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded")
      ?? all.find((s) => s.type === "candidate-pair" && s.state === "succeeded");
    const out = {
      rttMs: pair?.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null,
      localCandidate: pair ? byId.get(pair.localCandidateId)?.address ?? null : null,
      localCandidateType: pair ? byId.get(pair.localCandidateId)?.candidateType ?? null : null,
      localRelayProtocol: pair ? byId.get(pair.localCandidateId)?.relayProtocol ?? null : null,
      remoteCandidate: pair ? byId.get(pair.remoteCandidateId)?.address ?? null : null,
      remoteCandidateType: pair ? byId.get(pair.remoteCandidateId)?.candidateType ?? null : null,
      remoteCandidateProtocol: pair ? byId.get(pair.remoteCandidateId)?.protocol ?? null : null,
      inbound: [],
      outbound: [],
      transceivers: pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.direction, currentDirection: t.currentDirection })),
    };
    for (const s of all) {
      if (s.type === "inbound-rtp") {
        out.inbound.push({
          kind: s.kind, mid: s.mid ?? null, codec: codecOf(s),
          packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, bytesReceived: s.bytesReceived,
          jitterMs: s.jitter != null ? s.jitter * 1000 : null,
          jitterBufferMs: s.jitterBufferEmittedCount ? (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000 : null,
          concealedSamples: s.concealedSamples ?? null, totalSamplesReceived: s.totalSamplesReceived ?? null,
          framesDecoded: s.framesDecoded ?? null, frameWidth: s.frameWidth ?? null, frameHeight: s.frameHeight ?? null,
          keyFramesDecoded: s.keyFramesDecoded ?? null,
        });
      } else if (s.type === "outbound-rtp") {
        out.outbound.push({
          kind: s.kind, mid: s.mid ?? null, codec: codecOf(s),
          packetsSent: s.packetsSent, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded ?? null,
        });
      }
    }
    return out;
  };
})();
