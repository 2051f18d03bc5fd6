#!/usr/bin/env python3
"""A Pipecat echo pipeline on smallwebrtc's transport: `transport.input() -> Echo ->
transport.output()` per client, behind our signalling server (Pipecat's SmallWebRTC HTTP
routes, no FastAPI). The caller's audio (and camera, unless --no-video) comes back, each
app message m comes back as {"echo": m}, and Pipecat's RTVI processor answers the client's
client-ready (--no-rtvi leaves it out, as the scale bench's Pipecat bot does).
Two messages stand in for a voice bot's speech and barge-in: {"say_hz": F, "secs": S}
queues S seconds of an F Hz tone as bot audio, {"interrupt": true} interrupts it.

    python python/examples/pipecat_echo_bot.py --addr 127.0.0.1:7860

Prints "open http://HOST:PORT/" once listening; --stdin stops it when stdin closes.
"""

import argparse
import asyncio
import math
import sys

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    OutputTransportMessageUrgentFrame,
    UserImageRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from smallwebrtc import PeerConfig, ServerConfig, ServerLimits
from smallwebrtc.pipecat import SmallWebRTCConnection, SmallWebRTCServer, SmallWebRTCTransport

SAMPLE_RATE = 48_000  # in and out, as our Rust echo example: nothing resamples


class Echo(FrameProcessor):
    """Turns input audio into output audio and camera frames into output images."""

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels))
        elif isinstance(frame, UserImageRawFrame):
            await self.push_frame(OutputImageRawFrame(
                image=frame.image, size=frame.size, format=frame.format))
        else:
            await self.push_frame(frame, direction)


def tone(hz: float, secs: float) -> OutputAudioRawFrame:
    """Bot speech stand-in: a -20 dBFS sine."""
    t = np.arange(int(SAMPLE_RATE * min(secs, 60.0))) / SAMPLE_RATE
    pcm = (3277 * np.sin(2 * math.pi * hz * t)).astype(np.int16).tobytes()
    return OutputAudioRawFrame(audio=pcm, sample_rate=SAMPLE_RATE, num_channels=1)


async def run_bot(connection: SmallWebRTCConnection, video: bool, rtvi: bool):
    transport = SmallWebRTCTransport(
        connection,
        TransportParams(
            audio_in_enabled=True, audio_out_enabled=True,
            audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE,
            video_in_enabled=video, video_out_enabled=video,
            video_out_width=640, video_out_height=480,
        ),
    )
    worker = PipelineWorker(
        Pipeline([transport.input(), Echo(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE),
        enable_rtvi=rtvi,
        enable_turn_tracking=False,
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_app_message")
    async def on_app_message(_transport, message, _sender):
        await worker.queue_frame(OutputTransportMessageUrgentFrame(message={"echo": message}))
        if isinstance(message, dict) and "say_hz" in message:
            await worker.queue_frame(tone(float(message["say_hz"]), float(message.get("secs", 5))))
        elif message == {"interrupt": True}:
            await worker.queue_frame(InterruptionFrame())

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client):
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:7860")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--no-rtvi", action="store_true")
    p.add_argument("--stdin", action="store_true", help="stop when stdin closes")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--max-peers", type=int, help="live peers (default: the library's, 256)")
    p.add_argument("--max-peers-per-source", type=int,
                   help="live peers from one address (default: the library's, 32)")
    args = p.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    video = not args.no_video
    config = ServerConfig(addr=args.addr, peer=PeerConfig(
        audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE,
        video_in_enabled=video, video_out_enabled=video),
        limits=ServerLimits(max_peers=args.max_peers,
                            max_peers_per_source=args.max_peers_per_source))
    server = SmallWebRTCServer(lambda c: run_bot(c, video, not args.no_rtvi), config)
    await server.start()
    print(f"open {server.url}/", flush=True)
    try:
        if args.stdin:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        else:
            await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
