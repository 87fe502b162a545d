"""Which check a worker sends with an account's bodies, and what the record may say of it.

An account's integrity mode (``vod2s3 accounts set --integrity``, else
``VOD2S3_INTEGRITY``) is a check to send, or ``auto``: probe the account's store once
(per worker process and hour, worker/findings.py) and send the cheapest check it verifies
(s3/probe.py). The record's ``integrity`` then says which check was sent and who verified it:

- ``"store"``: the probe saw this store refuse a body that did not match that check;
- ``"unknown"``: the operator chose the check, or the store could not be probed;
- ``"nobody"``: the probe found that the store verifies none of the three checks (moto,
  for one): the bytes went with a CRC32C that nobody checked, and the record says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vod2s3.s3 import S3Target
from vod2s3.s3.integrity import ALGORITHMS, MODES, Mode
from vod2s3.s3.probe import ProbeFailed, first_verified
from vod2s3.worker.clients import ClientCache
from vod2s3.worker.findings import Findings

if TYPE_CHECKING:  # the stubs are a development dependency only
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

CHEAPEST: Mode = "crc32c"


@dataclass(frozen=True)
class Integrity:
    mode: Mode
    verified_by: str  # "store", "unknown" or "nobody"

    def record(self) -> dict[str, Any]:
        """The record's ``integrity`` field."""
        return {"algorithm": ALGORITHMS[self.mode], "verified_by": self.verified_by}


class IntegrityChooser:
    def __init__(self, clients: ClientCache, default_mode: str) -> None:
        self._clients = clients
        self._default = default_mode
        self._found: Findings[Integrity] = Findings()

    def client(self, target: S3Target, mode: Mode) -> S3Client:
        """The client to send ``mode``'s bodies with: payload signing is the sha256 check."""
        return self._clients.get(target, "on" if mode == "sha256" else "")

    def choose(self, target: S3Target, account_mode: str | None, bucket: str) -> Integrity:
        setting = account_mode or self._default
        if setting in MODES:
            return Integrity(setting, "unknown")
        return self._found.get(
            (target.endpoint_url, target.access_key_id),
            lambda: self._probe(target, bucket),
            keep=lambda integrity: integrity.verified_by != "unknown",  # a probe that failed
        )

    def _probe(self, target: S3Target, bucket: str) -> Integrity:
        def client_for(mode: Mode) -> S3Client:
            # Only the check under test may refuse: no payload signing beside the others.
            return self._clients.get(target, "on" if mode == "sha256" else "off")

        where = target.endpoint_url or "AWS"
        try:
            mode = first_verified(client_for, bucket)
        except ProbeFailed as error:
            log.info("could not probe the checks %s verifies (%s): sending CRC32C", where, error)
            return Integrity(CHEAPEST, "unknown")
        if mode is None:
            log.warning(
                "%s verifies none of CRC32C, Content-MD5 and signed payloads: uploads go with "
                "a CRC32C that nobody checks, and their records say so",
                where,
            )
            return Integrity(CHEAPEST, "nobody")
        log.info("%s verifies %s: uploads carry it", where, ALGORITHMS[mode])
        return Integrity(mode, "store")
