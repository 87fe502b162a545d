"""Build the boto3 S3 client for one account's credentials and endpoint."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final, Literal

import boto3
import botocore.auth
from botocore.config import Config
from botocore.handlers import add_expect_header

from vod2s3.s3.body import signing_began, signing_ended
from vod2s3.s3.model import S3Target

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

BODY_OPERATIONS = ("PutObject", "UploadPart")

# botocore's own SigV4 signer for S3, under a name of ours (see sign_bodies_with_hashlib).
HASHLIB_SIGNER = "vod2s3-s3v4-hashlib"
botocore.auth.AUTH_TYPE_MAPS.setdefault(HASHLIB_SIGNER, botocore.auth.S3SigV4Auth)


def make_client(
    target: S3Target,
    *,
    connect_timeout: float = 10,
    read_timeout: float = 60,
    max_pool_connections: int = 10,
    payload_signing: str = "auto",
    session: boto3.session.Session | None = None,
    user_agent_extra: str = "",
    stall_seconds: float = 30.0,
) -> S3Client:
    """A client that never retries on its own: the worker retries whole attempts, with backoff.

    ``max_pool_connections`` should be at least the upload's ``parts_in_flight``, or urllib3
    discards and reopens connections. ``session``: a boto3 session to build the client in,
    which keeps the service model it loaded for the next client; the caller must not build
    two clients in one session at once (boto3 sessions are not thread-safe).
    ``user_agent_extra`` is appended to the User-Agent: the worker names itself there, so
    S3 access logs (and the tests' proxy) tell which worker sent a request.
    ``stall_seconds``: see :func:`abandon_stalled_connections`.
    """
    over_tls = not target.endpoint_url or target.endpoint_url.lower().startswith("https:")
    sign_payload = payload_signing == "on" or (payload_signing == "auto" and not over_tls)
    addressing: Literal["auto", "virtual", "path"] = (
        "virtual" if target.addressing_style == "virtual" else "path"
    )
    if target.addressing_style not in ("path", "virtual"):
        # S3-compatible servers (MinIO, moto, Ceph) are usually reached by address, not
        # by per-bucket DNS names.
        addressing = "path" if target.endpoint_url else "auto"
    config = Config(
        region_name=target.region,
        signature_version="s3v4",
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        user_agent_extra=user_agent_extra or None,
        # The checks are ours (s3/integrity.py): botocore adds none of its own. Its default
        # since 1.36 would add a CRC32 trailer in aws-chunked encoding to every body sent
        # without one, which stores such as Ceph RGW 16 refuse (MissingContentLength).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={
            "addressing_style": addressing,
            # We send our own check of every body, one the store is found to verify
            # (s3/integrity.py), and TLS protects it in transit, so SHA-256 payload signing (a
            # second pass over every byte) buys nothing there, unless it is the check itself
            # ("sha256", which turns it on). Over plain http the payload stays signed by
            # default: there the signature is the surest tamper check. Operators may turn it
            # off for a trusted network ("off").
            "payload_signing_enabled": sign_payload,
        },
    )
    # Never boto3's default session: it is not safe to share across the worker's threads
    # while clients are being created.
    session = session or boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=target.endpoint_url or None,
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        config=config,
        verify=target.ca_bundle or None,
    )
    skip_expect_continue(client)
    abandon_stalled_connections(client, stall_seconds)
    keep_send_queues_short(client)
    if sign_payload:
        sign_bodies_with_hashlib(client)
        hashing_reads_send_nothing(client)
    return client


def abandon_stalled_connections(client: S3Client, seconds: float) -> None:
    """A connection whose sent bytes stay unacknowledged for ``seconds`` is closed by the
    kernel (TCP_USER_TIMEOUT, Linux), and the request fails; the part goes again on a fresh
    connection. It counts from the last byte the store took, so a slow connection that
    keeps moving lives on, and it covers a store (or a middlebox) that stops reading while
    its window stays shut, which no socket timeout of ours sees: urllib3 bounds a body's
    writes by the connect timeout only, and each of our writes is a whole block. (Not
    Linux: only those timeouts apply.)
    """
    _add_tcp_option(client, "TCP_USER_TIMEOUT", max(1, round(seconds * 1000)))


# How many bytes a connection may hold written but not yet sent (TCP_NOTSENT_LOWAT).
UNSENT_BYTES: Final = 256 * 1024


def keep_send_queues_short(client: S3Client) -> None:
    """A write returns once the bytes are on the wire, or nearly, not once they are queued.

    The kernel grows a connection's send buffer to several MiB on a long link, and a write
    into it returns at once: the bytes counted as sent (by the uplink budget, and by the
    controller that decides how many connections to keep busy, s3/concurrency.py) would run
    megabytes ahead of the network whenever a connection opens, making the window in which
    connections were added look faster than the link, and the next one slower. With at
    most UNSENT_BYTES queued beyond what the network has taken, the count follows the link.
    The congestion window still fills: this bounds only the bytes not yet sent.
    """
    _add_tcp_option(client, "TCP_NOTSENT_LOWAT", UNSENT_BYTES)


def _add_tcp_option(client: S3Client, name: str, value: int) -> None:
    """botocore's Config has no socket options; its session passes the list it was built
    with to urllib3's pool manager, which opens every connection with it, so an option
    joins that list before the first connection is opened."""
    option = getattr(socket, name, None)
    if option is None:
        return  # not Linux: the option does not exist here
    options: list[tuple[int, int, int]] = client._endpoint.http_session._socket_options  # type: ignore[attr-defined]
    options.append((socket.IPPROTO_TCP, option, value))


def skip_expect_continue(client: S3Client) -> None:
    """Send request bodies without ``Expect: 100-continue`` first.

    botocore adds the header to every PUT or POST whose body is a stream, and then waits a
    round trip for the server's go-ahead before sending the body. Our bodies are parts
    already in memory (s3/body.py), and the worker, not botocore, retries: the handshake
    would only save sending one part to a request S3 refuses (a wrong key, a missing
    bucket), which ends the upload anyway, at the cost of a round trip on every request.
    """
    client.meta.events.unregister("before-call.s3", add_expect_header)


def hashing_reads_send_nothing(client: S3Client) -> None:
    """A signed body is read twice: by the signer, to hash it, then to send it. Only the
    second read is paid to the uplink budget's throttle (s3/body.py): the body knows which
    one it is from a flag set before the signer runs and cleared before the request goes."""
    for operation in BODY_OPERATIONS:
        client.meta.events.register(f"before-sign.s3.{operation}", signing_began)
        client.meta.events.register(f"before-send.s3.{operation}", signing_ended)


def sign_bodies_with_hashlib(client: S3Client) -> None:
    """Sign PutObject and UploadPart with botocore's own SigV4 signer, not awscrt's.

    With awscrt installed (we use it for CRC32C), botocore signs S3 requests with awscrt's
    signer, which hashes a signed body by reading it back through a Python stream, a
    callback per small block. botocore's own signer reads it a block at a time (s3/body.py)
    and hashes each with hashlib, which releases the GIL, so parts in
    flight hash on both cores at once. Same signature, 0.2 CPU-s/GiB less
    (docs/benchmarks.md). Other operations carry no body and keep awscrt's signer.
    """

    def choose(signature_version: str, **_kwargs: object) -> str | None:
        return HASHLIB_SIGNER if signature_version == "s3v4" else None

    for operation in BODY_OPERATIONS:
        # choose-signer handlers answer with a value; the stubs type every handler as None.
        client.meta.events.register(f"choose-signer.s3.{operation}", choose)  # type: ignore[arg-type]
