"""The gRPC channels to the target: a blocking one for the checks before traffic, and the aio one
each sender makes for the load on its own event loop."""
from __future__ import annotations

import grpc
import grpc.aio

from fastload.contract.config import TlsConfig
from fastload.contract.exits import TargetUnavailable

# Room for a tensor of any reasonable shape plus headers.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)
REACH_TIMEOUT_S = 3.0


def open_channel(tls: TlsConfig | None, address: str, aio: bool = False
                 ) -> grpc.Channel | grpc.aio.Channel:
    """A channel to the target: blocking, or ``aio`` for the load (made on its event loop)."""
    channels = grpc.aio if aio else grpc
    if tls is None:
        return channels.insecure_channel(address, options=CHANNEL_OPTIONS)
    credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.client_key, tls.client_cert)
    return channels.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


def check_reachable(channel: grpc.Channel, address: str, tls: bool) -> None:
    """TargetUnavailable unless the channel connects within REACH_TIMEOUT_S."""
    try:
        grpc.channel_ready_future(channel).result(timeout=REACH_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        hint = ("; if it is up, the TLS handshake failed: check --ca-cert and the server's "
                "certificate" if tls else
                "; start the reference one with `python -m fastload.scheduler` or pass --embedded")
        raise TargetUnavailable(
            f"cannot reach the scheduler at {address} within {REACH_TIMEOUT_S:g} s{hint}"
        ) from None
