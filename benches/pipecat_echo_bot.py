#!/usr/bin/env python3
"""The smallest Pipecat echo bot, the reference server for `benches/scale.sh`.

Pipecat's own SmallWebRTC stack (SmallWebRTCRequestHandler + SmallWebRTCTransport on
aiortc) behind the HTTP routes Pipecat's development runner serves (FastAPI + uvicorn):
`POST /api/offer` and `PATCH /api/offer`. Each peer runs one pipeline,
`transport.input() -> Echo -> transport.output()`, that sends the caller's audio back.
Audio rates match our echo example (`smallwebrtc::signalling::echo::echo_peer_config`):
48 kHz mono in and out, so neither side resamples.

    python benches/pipecat_echo_bot.py --port 7861

Installed by `benches/scale.sh` into its own venv from `benches/requirements-pipecat.txt`.
"""

import argparse
import asyncio
import logging
import sys

import aioice.ice
import uvicorn
from fastapi import BackgroundTasks, FastAPI
from loguru import logger

from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 48_000  # as our echo example: 48 kHz mono in and out

# Loopback only: aioice gathers host candidates from aioice.ice.get_host_addresses(), which
# drops 127.0.0.1; the bench runs on 127.0.0.1 alone, so gather exactly that (as the aiortc
# test peer does, tests/peers/aiortc_peer.py). The request handler passes no ICE servers, so
# there is no STUN either.
if not hasattr(aioice.ice, "get_host_addresses"):
    raise SystemExit("aioice.ice.get_host_addresses not found: pin the versions in "
                     "benches/requirements-pipecat.txt")
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


class Echo(FrameProcessor):
    """Turns each input audio frame into an output audio frame; passes everything else."""

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio,
                    sample_rate=frame.sample_rate,
                    num_channels=frame.num_channels,
                )
            )
        else:
            await self.push_frame(frame, direction)


async def run_bot(connection: SmallWebRTCConnection):
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=SAMPLE_RATE,
            audio_out_sample_rate=SAMPLE_RATE,
        ),
    )
    worker = PipelineWorker(
        Pipeline([transport.input(), Echo(), transport.output()]),
        params=PipelineParams(
            audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
        ),
        enable_rtvi=False,
        enable_turn_tracking=False,
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client):
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def make_app() -> FastAPI:
    app = FastAPI()
    handler = SmallWebRTCRequestHandler()

    @app.post("/api/offer")
    async def offer(request: SmallWebRTCRequest, background_tasks: BackgroundTasks):
        async def on_connection(connection: SmallWebRTCConnection):
            background_tasks.add_task(run_bot, connection)

        return await handler.handle_web_request(
            request=request, webrtc_connection_callback=on_connection
        )

    @app.patch("/api/offer")
    async def patch(request: SmallWebRTCPatchRequest):
        await handler.handle_patch_request(request)
        return {"status": "success"}

    return app


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    uvicorn.run(make_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
