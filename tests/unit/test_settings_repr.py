"""A repr of the settings (logs, tracebacks) shows no secret."""

from __future__ import annotations

from vod2s3.config import Settings, masked_url


def test_repr_masks_the_master_key_the_operator_token_and_the_database_password() -> None:
    settings = Settings(
        database_url="postgresql://vod2s3:Pa55w0rd@db.internal:5432/vod2s3",
        master_key="a-master-key-value",
        operator_token="an-operator-token-value",
    )
    shown = repr(settings)
    for secret in ("Pa55w0rd", "a-master-key-value", "an-operator-token-value"):
        assert secret not in shown
    assert "postgresql://vod2s3:***@db.internal:5432/vod2s3" in shown
    assert "worker_concurrency=16" in shown  # the rest is still there


def test_masked_url_leaves_urls_without_a_password_alone() -> None:
    assert masked_url("sqlite:///vod2s3.db") == "sqlite:///vod2s3.db"
    assert masked_url("postgresql://vod2s3@db/x") == "postgresql://vod2s3@db/x"
    assert masked_url("postgresql://u:p:q@db/x") == "postgresql://u:***@db/x"
