"""tests.pgcluster, the throwaway PostgreSQL cluster the restart test stops and starts: it
goes down and comes back when told, leaves no server or directory behind, and without the
server binaries fails under CI=true (saying what to install) and skips elsewhere."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests import pgcluster
from tests.pgcluster import throwaway_postgres


@pytest.mark.postgres
def test_stop_start_restart_and_nothing_left_behind(tmp_path: Path) -> None:
    with throwaway_postgres(keep_log=tmp_path / "server.log") as cluster:
        assert cluster.port != 5432
        with psycopg.connect(cluster.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("vod2s3",)
        first = cluster.postmaster_pid()
        assert first is not None

        cluster.stop()
        assert not cluster.ready()
        assert cluster.postmaster_pid() is None
        cluster.start()
        assert cluster.ready()
        cluster.restart()
        assert cluster.ready()
        last = cluster.postmaster_pid()
        assert last is not None
        assert last != first
        base = cluster.base

    assert not base.exists()
    assert not pgcluster._alive(last)
    assert "database system is ready to accept connections" in (tmp_path / "server.log").read_text()


@pytest.mark.postgres
def test_the_cluster_is_stopped_when_the_test_fails() -> None:
    running: list[tuple[int | None, Path]] = []

    def a_failing_test() -> None:
        with throwaway_postgres() as cluster:
            running.append((cluster.postmaster_pid(), cluster.base))
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError, match="the test failed"):
        a_failing_test()
    [(pid, base)] = running
    assert pid is not None
    assert not pgcluster._alive(pid)
    assert not base.exists()


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_server_binaries_fail_under_ci_and_skip_elsewhere(
    ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgcluster, "find_bindir", lambda: None)
    monkeypatch.setenv("CI", ci)

    def a_postgres_test() -> None:
        with throwaway_postgres():
            raise AssertionError("a cluster without initdb")

    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match=r"apt-get install postgresql") as stopped:
        a_postgres_test()
    assert ("required when CI=true" in str(stopped.value)) == bool(ci)
