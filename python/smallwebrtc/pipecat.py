"""A Pipecat transport on smallwebrtc: use it where Pipecat's ``SmallWebRTCTransport`` goes.

``SmallWebRTCServer`` serves Pipecat's SmallWebRTC HTTP routes (our signalling server, no
FastAPI) and hands each new client to your coroutine as a ``SmallWebRTCConnection``;
``SmallWebRTCTransport(connection, params)`` gives the pipeline its ``input()`` and
``output()`` processors and the events ``on_client_connected``, ``on_client_disconnected``
and ``on_app_message``, as Pipecat's does. Media never passes through aiortc or PyAV:
decoded 20 ms frames come from the library's workers straight onto the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable, Optional

from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    CancelFrame,
    ClientConnectedFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    UserImageRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from . import AudioFrame, Event, MessageEvent, NewPeer, PeerState, Server, ServerConfig
from . import SmallWebRTCError, StateEvent, VideoFrame, VideoSource

log = logging.getLogger("smallwebrtc.pipecat")

# Mic frames waiting for the pipeline; past this the oldest go (1 s of 20 ms frames).
AUDIO_IN_QUEUE = 50
# How far ahead of real time the output writes (the library sends in real time). What is
# queued rides over event-loop stalls: 40 ms broke speech into pieces on a busy machine
# with video in the same loop; an interruption drops it all anyway (clear_audio).
AUDIO_OUT_LEAD_S = 0.1


class SmallWebRTCConnection:
    """One client the server handed over: its peer, pc_id and request_data. Events come
    from the library's callback thread onto the event loop, in order; the peer is freed
    when it closes."""

    def __init__(self, new: NewPeer, loop: asyncio.AbstractEventLoop):
        self.peer = new.peer
        self.pc_id = new.pc_id
        self.request_data = new.request_data
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()  # bounded by the library's event queue
        self.closed = asyncio.Event()
        self.claimed = False  # a transport connected it and frees it once it closes
        self.peer.set_on_event(lambda ev: self.call_soon(self.events.put_nowait, ev))

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Runs ``fn`` on the event loop; from any thread. Dropped once the loop is closed."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def close(self) -> None:
        self.peer.close()
        self.closed.set()


class SmallWebRTCServer:
    """Pipecat's SmallWebRTC routes (``POST``/``PATCH /api/offer``, ``POST /start``) on our
    signalling server. ``on_connection(connection)`` runs as a task on the event loop that
    called ``start()``, once per new client. ``config.peer`` sets the audio rates the peers
    use; the transports resample when the pipeline's differ."""

    def __init__(
        self,
        on_connection: Callable[[SmallWebRTCConnection], Awaitable[None]],
        config: Optional[ServerConfig] = None,
    ):
        self.config = config or ServerConfig()
        self._on_connection = on_connection
        self._server: Optional[Server] = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_peer(new: NewPeer) -> None:  # an HTTP thread: hand over, do not wait
            conn = SmallWebRTCConnection(new, loop)
            conn.call_soon(self._spawn, conn)

        self._server = Server(self.config, on_peer=on_peer)

    def _spawn(self, conn: SmallWebRTCConnection) -> None:
        task = asyncio.get_running_loop().create_task(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: SmallWebRTCConnection) -> None:
        try:
            await self._on_connection(conn)
        except Exception:  # noqa: BLE001 - one bot's failure must not stop the server
            log.exception("smallwebrtc: bot of %s failed", conn.pc_id)
        finally:
            if not conn.claimed:  # no transport ever connected it: nobody else will free it
                conn.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.url

    async def close(self) -> None:
        """Stops listening, then cancels the bots still running."""
        if self._server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._server.close)
            self._server = None
        for t in list(self._tasks):
            t.cancel()


class _Client:
    """What the input and output processors share: the connection, connected once."""

    def __init__(self, conn: SmallWebRTCConnection, transport: "SmallWebRTCTransport"):
        self.conn = conn
        self.peer = conn.peer
        self.transport = transport
        self.connected = False  # we called peer.connect()
        self.closing = False  # we are the ones disconnecting
        self.ended = False  # CLOSED or FAILED seen
        self.event_task: Optional[asyncio.Task] = None

    def connect(self) -> None:
        if self.connected or self.ended:
            return
        self.connected = True
        self.conn.claimed = True
        if self.event_task is None:
            self.event_task = asyncio.get_running_loop().create_task(self._events())
        try:
            self.peer.connect()
        except SmallWebRTCError as e:
            log.info("smallwebrtc: %s: connect failed: %s", self.conn.pc_id, e)

    def disconnect(self) -> None:
        if not self.connected or self.closing:
            return
        self.closing = True
        try:
            self.peer.disconnect()  # the last one closes the peer; CLOSED follows
        except SmallWebRTCError:
            pass

    async def _events(self) -> None:
        while True:
            ev: Event = await self.conn.events.get()
            if isinstance(ev, MessageEvent):
                try:
                    message: Any = json.loads(ev.data)
                except ValueError:
                    message = ev.text
                await self.transport._on_app_message(message, self.conn.pc_id)
            elif isinstance(ev, StateEvent):
                if ev.state == PeerState.CONNECTED:
                    await self.transport._on_client_connected(self.conn)
                elif ev.state in (PeerState.FAILED, PeerState.CLOSED) and not self.ended:
                    self.ended = True
                    if not self.closing:
                        await self.transport._on_client_disconnected(self.conn)
                if ev.state == PeerState.CLOSED:
                    self.conn.close()
                    return


class SmallWebRTCInputTransport(BaseInputTransport):
    """Mic audio as ``InputAudioRawFrame`` and camera frames as ``UserImageRawFrame``;
    app messages are broadcast as ``InputTransportMessageFrame`` by the transport."""

    def __init__(self, client: _Client, params: TransportParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._client = client
        self._audio: asyncio.Queue = asyncio.Queue(maxsize=AUDIO_IN_QUEUE)
        self._audio_dropped = 0
        self._video: Optional[VideoFrame] = None  # latest wins
        self._video_ready = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._resampler = create_stream_resampler()

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        self._client.connect()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        peer, conn = self._client.peer, self._client.conn
        if not self._tasks and not self._client.ended:
            try:
                if self._params.audio_in_enabled and peer.config.audio_in_enabled:
                    self._tasks.append(self.create_task(self._push_audio()))
                    peer.set_audio_callback(lambda f: conn.call_soon(self._audio_in, f))
                if self._params.video_in_enabled and peer.config.video_in_enabled:
                    self._tasks.append(self.create_task(self._push_video()))
                    peer.set_video_callback(
                        VideoSource.CAMERA, lambda f: conn.call_soon(self._video_in, f)
                    )
            except SmallWebRTCError as e:  # the client already left
                log.info("smallwebrtc: %s: no media: %s", conn.pc_id, e)
        await self.set_transport_ready(frame)

    async def push_app_message(self, message: Any) -> None:
        """Sends an app message into the pipeline, both ways, as Pipecat's transport does."""
        await self.broadcast_frame(InputTransportMessageFrame, message=message)

    def _audio_in(self, frame: AudioFrame) -> None:
        if self._audio.full():
            self._audio.get_nowait()
            self._audio_dropped += 1
            if self._audio_dropped in (1, 10, 100) or self._audio_dropped % 1000 == 0:
                log.warning("smallwebrtc: %d mic frames dropped (pipeline behind)", self._audio_dropped)
        self._audio.put_nowait(frame)

    def _video_in(self, frame: VideoFrame) -> None:
        self._video = frame
        self._video_ready.set()

    async def _push_audio(self) -> None:
        while True:
            f: AudioFrame = await self._audio.get()
            pcm = f.pcm
            if f.sample_rate != self.sample_rate:
                pcm = await self._resampler.resample(pcm, f.sample_rate, self.sample_rate)
            out = InputAudioRawFrame(audio=pcm, sample_rate=self.sample_rate, num_channels=f.channels)
            await self.push_audio_frame(out)

    async def _push_video(self) -> None:
        while True:
            await self._video_ready.wait()
            self._video_ready.clear()
            f, self._video = self._video, None
            if f is None:
                continue
            image = UserImageRawFrame(
                user_id=self._client.conn.pc_id, image=f.rgb, size=(f.width, f.height), format="RGB"
            )
            image.transport_source = "camera"
            await self.push_video_frame(image)

    async def _teardown(self) -> None:
        for t in self._tasks:
            await self.cancel_task(t)
        self._tasks.clear()
        self._client.disconnect()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._teardown()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._teardown()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._teardown()


class SmallWebRTCOutputTransport(BaseOutputTransport):
    """Sends ``OutputAudioRawFrame`` (paced to real time), ``OutputImageRawFrame`` (RGB of
    the configured size) and transport messages; an interruption drops the audio the
    library still has queued (``clear_audio``)."""

    def __init__(self, client: _Client, params: TransportParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._client = client
        self._play_end = 0.0  # monotonic time the audio written so far ends playing
        self._resampler = create_stream_resampler()

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        self._client.connect()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame) and self._client.peer.config.audio_out_enabled:
            try:
                self._client.peer.clear_audio()
            except SmallWebRTCError:
                pass
            self._play_end = 0.0

    async def send_message(
        self, frame: OutputTransportMessageFrame | OutputTransportMessageUrgentFrame
    ) -> None:
        if self._client.closing:
            return
        try:
            self._client.peer.send_message(json.dumps(frame.message))
        except SmallWebRTCError as e:
            log.debug("smallwebrtc: message not sent: %s", e)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        peer = self._client.peer
        cfg = peer.config
        if self._client.closing or not cfg.audio_out_enabled:
            return False
        audio = frame.audio
        if frame.sample_rate != cfg.audio_out_sample_rate:
            audio = await self._resampler.resample(audio, frame.sample_rate, cfg.audio_out_sample_rate)
        per_10ms = cfg.audio_out_sample_rate // 100 * cfg.audio_out_channels * 2
        if len(audio) % per_10ms:
            audio += bytes(per_10ms - len(audio) % per_10ms)  # whole 10 ms only
        try:
            peer.write_audio(audio, timeout=0)
        except SmallWebRTCError as e:
            log.debug("smallwebrtc: audio not written: %s", e)
            return False
        # Pace to real time: the library plays what we write; stay a little ahead of it.
        now = time.monotonic()
        self._play_end = max(now, self._play_end) + len(audio) / (per_10ms * 100)
        ahead = self._play_end - now - AUDIO_OUT_LEAD_S
        if ahead > 0:
            await asyncio.sleep(ahead)
        return True

    async def write_video_frame(self, frame: OutputImageRawFrame) -> bool:
        if self._client.closing or frame.format not in (None, "RGB"):
            return False
        try:
            self._client.peer.write_video(frame.image, frame.size[0], frame.size[1])
        except SmallWebRTCError as e:
            log.debug("smallwebrtc: video not written: %s", e)
            return False
        return True

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        self._client.disconnect()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        self._client.disconnect()


class SmallWebRTCTransport(BaseTransport):
    """The transport of one client. Events, as Pipecat's ``SmallWebRTCTransport``:
    ``on_client_connected(transport, connection)``, ``on_client_disconnected(transport,
    connection)`` and ``on_app_message(transport, message, sender)``."""

    def __init__(
        self,
        webrtc_connection: SmallWebRTCConnection,
        params: TransportParams,
        input_name: Optional[str] = None,
        output_name: Optional[str] = None,
    ):
        super().__init__(input_name=input_name, output_name=output_name)
        self._params = params
        self._client = _Client(webrtc_connection, self)
        self._input: Optional[SmallWebRTCInputTransport] = None
        self._output: Optional[SmallWebRTCOutputTransport] = None
        self._register_event_handler("on_app_message")
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")

    def get_client_id(self, client: Any) -> str:
        return client.pc_id

    def input(self) -> SmallWebRTCInputTransport:
        if not self._input:
            self._input = SmallWebRTCInputTransport(self._client, self._params, name=self._input_name)
        return self._input

    def output(self) -> SmallWebRTCOutputTransport:
        if not self._output:
            self._output = SmallWebRTCOutputTransport(self._client, self._params, name=self._output_name)
        return self._output

    async def send_audio(self, frame: OutputAudioRawFrame) -> None:
        if self._output:
            await self._output.queue_frame(frame, FrameDirection.DOWNSTREAM)

    async def send_image(self, frame: OutputImageRawFrame) -> None:
        if self._output:
            await self._output.queue_frame(frame, FrameDirection.DOWNSTREAM)

    async def _on_app_message(self, message: Any, sender: str) -> None:
        if self._input:
            await self._input.push_app_message(message)
        await self._call_event_handler("on_app_message", message, sender)

    async def _on_client_connected(self, conn: SmallWebRTCConnection) -> None:
        await self._call_event_handler("on_client_connected", conn)
        if self._input:
            await self._input.push_frame(ClientConnectedFrame())

    async def _on_client_disconnected(self, conn: SmallWebRTCConnection) -> None:
        await self._call_event_handler("on_client_disconnected", conn)
