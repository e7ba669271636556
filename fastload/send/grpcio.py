"""The run's calls over grpcio (``--transport grpcio``): a grpc.aio channel, each call awaited
by a task of its own that hands its end to the dispatcher."""
from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from fastload.contract.config import TlsConfig
from fastload.send.base import CONNECT_TIMEOUT_S, Ended
from fastload.send.channel import open_channel


class GrpcioCalls:
    """Calls on one grpc.aio channel (a ``Calls``). No serializers: the encoder's bytes go to
    the wire as they are (grpcio copies them when the call's task first runs), the response's
    come back as they are."""

    def __init__(self, channel: grpc.aio.Channel, method: str, timeout_s: float,
                 metadata: tuple[tuple[str, str], ...]) -> None:
        self._loop = asyncio.get_running_loop()
        self._channel = channel
        self._infer = channel.unary_unary(method, _registered_method=True)
        self._timeout_s = timeout_s
        self._metadata = metadata or None

    def start(self, payload: bytes, ended: Ended) -> grpc.aio.UnaryUnaryCall:
        call = self._infer(payload, timeout=self._timeout_s, metadata=self._metadata)
        self._loop.create_task(_await_end(call, ended))
        return call

    async def close(self) -> None:
        await self._channel.close()


async def _await_end(call: grpc.aio.UnaryUnaryCall, ended: Ended) -> None:
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        ended(error.code(), error.details() or "", None)
    except asyncio.CancelledError:  # cancelled by the dispatcher's watchdog or at close
        ended(grpc.StatusCode.CANCELLED, "", None)
    else:
        ended(grpc.StatusCode.OK, "", response)


async def open_grpcio_calls(tls: TlsConfig | None, address: str, timeout_s: float,
                            metadata: tuple[tuple[str, str], ...], method: str) -> GrpcioCalls:
    """Calls on a channel made on the running loop, connected if the target answers within
    CONNECT_TIMEOUT_S, so the first sample does not wait for the handshake."""
    channel = open_channel(tls, address, aio=True)
    try:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass  # the calls will say what is wrong, sample by sample
    return GrpcioCalls(channel, method, timeout_s, metadata)
