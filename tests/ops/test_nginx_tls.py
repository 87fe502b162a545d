"""deploy/nginx/vod2s3.conf, run by Debian's nginx (nginx-light) in front of `vod2s3 api`
with a certificate the test makes: the seed's PHP example passes through it over https,
and the API counts the client nginx names, because nginx is its trusted proxy."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.compat.test_php_seed import php_example, run_php
from tests.helpers import free_port, missing_requirement, php_binary, wait_for_http
from tests.service import VOD2S3
from vod2s3.accounts import IssuedCredentials

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
# The client's own address on loopback, other than nginx's (127.0.0.1): what the API must
# see through X-Forwarded-For.
CLIENT_ADDRESS = "127.0.0.5"


def substituted(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each placeholder replaced; each must be there (the shipped file is the
    source, and a change to it must not silently leave the test on stale values)."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the shipped nginx config"
        text = text.replace(old, new)
    return text


def self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        missing_requirement("openssl is not installed (Debian: apt install openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@dataclass
class Proxied:
    https_url: str  # nginx
    api_log: Path
    cert: Path
    issued: IssuedCredentials


def nginx_config(tmp: Path, api_port: int, tls_port: int, cert: Path, key: Path) -> Path:
    proxy_conf = tmp / "vod2s3-proxy.conf"
    shutil.copy(SHIPPED / "vod2s3-proxy.conf", proxy_conf)
    site = substituted(
        (SHIPPED / "vod2s3.conf").read_text(),
        {
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{api_port};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{tls_port} ssl http2;",
            "listen [::]:443 ssl http2;": "",
            "listen 80;": f"listen 127.0.0.1:{free_port()};",
            "listen [::]:80;": "",
            "/etc/vod2s3/tls/fullchain.pem": str(cert),
            "/etc/vod2s3/tls/privkey.pem": str(key),
            "/etc/nginx/vod2s3-proxy.conf": str(proxy_conf),
        },
    )
    (tmp / "vod2s3.conf").write_text(site)
    main = tmp / "nginx.conf"
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp_paths}"
        f"    include {tmp / 'vod2s3.conf'};\n}}\n"
    )
    return main


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Proxied]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        missing_requirement("nginx is not installed (Debian: apt install nginx-light)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOD2S3_")}
    env |= {
        "VOD2S3_DATABASE_URL": f"sqlite:///{tmp_path / 'vod2s3.db'}",
        "VOD2S3_MASTER_KEY": Fernet.generate_key().decode(),
        "VOD2S3_STORAGE_ROOT": str(tmp_path / "storage"),
        "VOD2S3_TRUSTED_PROXIES": "127.0.0.1/32",  # nginx, as the shipped file says
    }
    (tmp_path / "storage" / "sestore1" / "jb").mkdir(parents=True)
    for args in (
        ["db", "upgrade"],
        ["accounts", "create", "--cdn", "158", "--storage-user", "jb", "--json"],
    ):
        done = subprocess.run([VOD2S3, *args], env=env, capture_output=True, text=True, check=True)
    issued = IssuedCredentials(**json.loads(done.stdout))
    cert, key = self_signed(tmp_path)
    api_port, tls_port = free_port(), free_port()
    config = nginx_config(tmp_path, api_port, tls_port, cert, key)
    tested = subprocess.run(
        [nginx, "-t", "-c", str(config), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stderr
    api_log = tmp_path / "api.log"
    with api_log.open("ab") as out:
        api = subprocess.Popen(
            [VOD2S3, "api", "--port", str(api_port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        proxy = subprocess.Popen(
            [nginx, "-c", str(config), "-e", str(tmp_path / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{api_port}/healthz", proc=api)
            wait_for_http(
                f"https://127.0.0.1:{tls_port}/healthz", proc=proxy, verify=trusting(cert)
            )
            yield Proxied(f"https://127.0.0.1:{tls_port}", api_log, cert, issued)
        finally:
            for proc in (proxy, api):
                proc.terminate()
                proc.wait(timeout=30)


def test_the_seed_php_example_passes_through_nginx_over_https(
    proxied: Proxied, tmp_path: Path
) -> None:
    php_binary()
    script = php_example(f"{proxied.https_url}/stable/", proxied.issued, json_tail=False)
    # PHP's curl trusts the test's certificate through its CA setting; the example is
    # unchanged but for its URL and keys.
    output = run_php(script, tmp_path, "-d", f"curl.cainfo={proxied.cert}")
    assert "[status] => success" in output, output
    assert "[message] => Found AWS Status" in output


def test_the_api_counts_the_client_nginx_names_not_one_it_wrote(proxied: Proxied) -> None:
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=trusting(proxied.cert))
    with httpx.Client(transport=transport) as client:
        answer = client.post(
            f"{proxied.https_url}/stable/",
            data={"json": "{}"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    assert answer.status_code == 400  # a command without its fields: answered by the API
    lines = [line for line in proxied.api_log.read_text().splitlines() if "POST /stable/" in line]
    # The API's peer is nginx (127.0.0.1): trusted, so the client is the address nginx
    # saw, and the one the client wrote itself is dropped by nginx.
    assert any(f"{CLIENT_ADDRESS} POST /stable/ 400" in line for line in lines), lines
    assert not any("203.0.113.9" in line for line in lines), lines


def test_nginx_refuses_what_the_api_would_and_hides_metrics(proxied: Proxied) -> None:
    with httpx.Client(verify=trusting(proxied.cert)) as client:
        too_big = client.post(f"{proxied.https_url}/stable/", content=b"x" * (64 * 1024 + 1))
        metrics = client.get(f"{proxied.https_url}/metrics")
    assert too_big.status_code == 413  # VOD2S3_MAX_BODY_BYTES, refused by nginx already
    assert metrics.status_code == 404
    assert "POST /stable/" not in proxied.api_log.read_text()
