"""One boto3 client per account's S3 settings, shared by that account's uploads."""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING

import boto3

from vod2s3.s3 import S3Target, make_client

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client


class ClientCache:
    """boto3 clients are thread-safe and expensive to build: build each once.

    They share one boto3 session, built under the cache's lock: the first client loads and
    parses S3's service model (about 0.2 CPU-s), and the session keeps it for the next
    account's client (a few ms)."""

    def __init__(
        self,
        connect_timeout: float,
        read_timeout: float,
        payload_signing: str,
        pool_size: int,
        user_agent_extra: str = "",
        stall_seconds: float = 30.0,
    ) -> None:
        self._stall_seconds = stall_seconds
        self._user_agent_extra = user_agent_extra
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._payload_signing = payload_signing
        self._pool_size = pool_size
        self._clients: dict[str, S3Client] = {}
        self._lock = threading.Lock()
        self._session = boto3.session.Session()

    def warm(self) -> None:
        """Load S3's service model now, at start-up, instead of in the first upload. The
        client built for it is thrown away (it never sends anything)."""
        with self._lock:
            self._build(S3Target("warm-up", "warm-up", "us-east-1", "http://127.0.0.1:9"))

    def get(self, target: S3Target, payload_signing: str = "") -> S3Client:
        """The client for ``target``; ``payload_signing`` ("on", "off") overrides the
        service's setting (the sha256 integrity check needs it on, the probes of the
        others off)."""
        signing = payload_signing or target.payload_signing or self._payload_signing
        # Keyed by a digest, so that no secret sits in a dict key that might get printed.
        identity = "\0".join(
            (
                target.access_key_id,
                target.secret_access_key,
                target.region,
                target.endpoint_url,
                target.addressing_style,
                target.ca_bundle,
                signing,
            )
        )
        key = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._build(target, signing)
                self._clients[key] = client
            return client

    def _build(self, target: S3Target, payload_signing: str = "") -> S3Client:
        return make_client(
            target,
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            payload_signing=payload_signing or self._payload_signing,
            max_pool_connections=self._pool_size,
            session=self._session,
            user_agent_extra=self._user_agent_extra,
            stall_seconds=self._stall_seconds,
        )
