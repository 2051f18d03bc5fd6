// Entry point bundled by esbuild (build.mjs) into dist/official_client.js.
//
// A plain page that runs the official Pipecat client (@pipecat-ai/client-js +
// @pipecat-ai/small-webrtc-transport) against a SmallWebRTC server. The
// transport's default media manager (DailyMediaManager) loads daily-js code
// from the internet at run time, so the page gives it FakeDeviceMediaManager:
// plain getUserMedia, which in the tests is Chromium's fake devices (the mic
// plays the WAV given by --use-file-for-fake-audio-capture, the camera is the
// fake camera). It supports no screen share, so the client creates two
// transceivers (audio, video), as it does with WavMediaManager.
//
// The driver (official_client.mjs) calls window.swrtcOfficial.connect(...) and
// reads everything else through window.__swrtcProbe (lib/probe.js).

import { PipecatClient, LogLevel } from "@pipecat-ai/client-js";
import { SmallWebRTCTransport } from "@pipecat-ai/small-webrtc-transport";

const localParticipant = () => ({ id: "local", name: "", local: true });

// Implements the MediaManager interface the transport uses (see
// MediaManager / WavMediaManager in small-webrtc-transport's dist/index.module.js).
class FakeDeviceMediaManager {
  constructor() {
    this._callbacks = {};
    this._options = undefined;
    this._micEnabled = true;
    this._camEnabled = false;
    this._supportsScreenShare = false;
    this._stream = null;
    this._initialized = false;
    this._userAudioCallback = undefined;
  }
  setUserAudioCallback(cb) {
    this._userAudioCallback = cb;
  }
  setClientOptions(options, override = false) {
    if (this._options && !override) return;
    this._options = options;
    this._callbacks = options.callbacks ?? {};
    this._micEnabled = options.enableMic ?? true;
    this._camEnabled = options.enableCam ?? false;
  }
  get supportsScreenShare() {
    return this._supportsScreenShare;
  }
  async initialize() {
    if (this._initialized) return;
    const constraints = {
      // No echo cancellation, noise suppression or gain control: the test
      // tone must reach the encoder as it is in the WAV.
      audio: this._micEnabled
        ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
        : false,
      video: this._camEnabled ? { width: 640, height: 480, frameRate: 30 } : false,
    };
    if (constraints.audio || constraints.video) {
      this._stream = await navigator.mediaDevices.getUserMedia(constraints);
    }
    this._initialized = true;
    const devices = await navigator.mediaDevices.enumerateDevices();
    this._callbacks.onAvailableMicsUpdated?.(devices.filter((d) => d.kind === "audioinput"));
    this._callbacks.onAvailableCamsUpdated?.(devices.filter((d) => d.kind === "videoinput"));
    this._callbacks.onAvailableSpeakersUpdated?.(devices.filter((d) => d.kind === "audiooutput"));
    const mic = this._deviceOf(this._stream?.getAudioTracks()[0], devices);
    if (mic) this._callbacks.onMicUpdated?.(mic);
    const cam = this._deviceOf(this._stream?.getVideoTracks()[0], devices);
    if (cam) this._callbacks.onCamUpdated?.(cam);
  }
  _deviceOf(track, devices) {
    if (!track) return undefined;
    const id = track.getSettings().deviceId;
    return devices.find((d) => d.deviceId === id && d.kind === (track.kind === "audio" ? "audioinput" : "videoinput"));
  }
  async connect() {
    if (!this._initialized) await this.initialize();
    for (const t of this._stream?.getTracks() ?? []) {
      t.enabled = t.kind === "audio" ? this._micEnabled : this._camEnabled;
      this._callbacks.onTrackStarted?.(t, localParticipant());
    }
  }
  async disconnect() {
    for (const t of this._stream?.getTracks() ?? []) t.stop();
    this._stream = null;
    this._initialized = false;
  }
  async userStartedSpeaking() {}
  bufferBotAudio() {}
  async getAllMics() {
    return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  }
  async getAllCams() {
    return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  }
  async getAllSpeakers() {
    return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audiooutput");
  }
  async updateMic() {}
  updateCam() {}
  updateSpeaker() {}
  get selectedMic() {
    const t = this._stream?.getAudioTracks()[0];
    return t ? { deviceId: t.getSettings().deviceId, kind: "audioinput", label: t.label, groupId: "" } : {};
  }
  get selectedCam() {
    const t = this._stream?.getVideoTracks()[0];
    return t ? { deviceId: t.getSettings().deviceId, kind: "videoinput", label: t.label, groupId: "" } : {};
  }
  get selectedSpeaker() {
    return {};
  }
  enableMic(enable) {
    this._micEnabled = enable;
    for (const t of this._stream?.getAudioTracks() ?? []) t.enabled = enable;
  }
  enableCam(enable) {
    this._camEnabled = enable;
    for (const t of this._stream?.getVideoTracks() ?? []) t.enabled = enable;
  }
  enableScreenShare() {
    console.warn("FakeDeviceMediaManager does not support screen sharing.");
  }
  get isCamEnabled() {
    return this._camEnabled;
  }
  get isMicEnabled() {
    return this._micEnabled;
  }
  get isSharingScreen() {
    return false;
  }
  tracks() {
    const local = {};
    const audio = this._stream?.getAudioTracks()[0];
    const video = this._stream?.getVideoTracks()[0];
    if (audio) local.audio = audio;
    if (video) local.video = video;
    return { local };
  }
}

const state = {
  client: null,
  transport: null,
  events: [],
  botReady: null,
  serverMessages: [],
  errors: [],
};

function note(ev, extra = {}) {
  state.events.push({ t: performance.now(), ev, ...extra });
}

window.swrtcOfficial = {
  state,
  // Connects to `offerUrl` (the server's /api/offer). Resolves with timings
  // and the bot-ready data once connect() resolves (which needs the server to
  // answer RTVI client-ready with bot-ready); rejects with the client's error.
  // `iceServers` (RTCIceServer[]) goes to the transport as a user would give it.
  async connect({ offerUrl, enableCam = true, enableMic = true, audioCodec, videoCodec, logLevel, iceServers } = {}) {
    const transport = new SmallWebRTCTransport({
      mediaManager: new FakeDeviceMediaManager(),
      audioCodec: audioCodec ?? null,
      videoCodec: videoCodec ?? null,
      ...(iceServers ? { iceServers } : {}),
    });
    const client = new PipecatClient({
      transport,
      enableMic,
      enableCam,
      callbacks: {
        onTransportStateChanged: (s) => note("transport-state", { state: s }),
        onConnected: () => note("connected"),
        onDisconnected: () => note("disconnected"),
        onBotConnected: () => note("bot-connected"),
        onBotDisconnected: () => note("bot-disconnected"),
        onBotReady: (data) => {
          state.botReady = data ?? null;
          note("bot-ready");
        },
        onServerMessage: (data) => {
          state.serverMessages.push(data);
          note("server-message");
        },
        onTrackStarted: (track, participant) =>
          note("track-started", { kind: track.kind, local: !!participant?.local }),
        onTrackStopped: (track, participant) =>
          note("track-stopped", { kind: track.kind, local: !!participant?.local }),
        onError: (m) => {
          state.errors.push(m);
          note("error");
        },
        onMessageError: (m) => {
          state.errors.push(m);
          note("message-error");
        },
      },
    });
    client.setLogLevel(logLevel ?? LogLevel.WARN);
    state.client = client;
    state.transport = transport;
    const t0 = performance.now();
    note("connect-called");
    const botReady = await client.connect({ webrtcRequestParams: { endpoint: offerUrl } });
    const t1 = performance.now();
    note("connect-resolved");
    return { t0, t1, botReady: botReady ?? null, version: client.version, pcId: transport.pc_id };
  },
  // Sends an app message through the official API (an RTVI client-message)
  // and returns the exact envelope that went on the wire (found by its id in
  // the probe's log of sent data-channel messages).
  sendClientMessage(type, data) {
    state.client.sendClientMessage(type, data);
  },
  // Sends a raw (non-RTVI) message on the client's data channel.
  sendRaw(obj) {
    state.transport.dc.send(JSON.stringify(obj));
  },
  peerConnection() {
    return state.transport?.pc ?? null;
  },
  async disconnect() {
    await state.client?.disconnect();
  },
};
