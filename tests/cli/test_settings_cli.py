"""Settings from the environment, as the command line meets them: a wrong or unsafe
setting is one line and exit status 2, never a traceback; pseudonymising with the public
development key is said out loud."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import event
from sqlalchemy.engine import Engine

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import ConfigError

Run = tuple[pytest.MonkeyPatch, pytest.CaptureFixture[str]]


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.delenv("MEDLOOP_SECRET_KEY", raising=False)
    monkeypatch.delenv("MEDLOOP_ENVIRONMENT", raising=False)
    return monkeypatch, capsys


def test_a_wrong_setting_is_one_line(cli: Run) -> None:
    monkeypatch, capsys = cli
    monkeypatch.setenv("MEDLOOP_ENVIRONMENT", "prod")
    code, _, err = run(monkeypatch, capsys, "init")
    assert code == 2 and "MEDLOOP_ENVIRONMENT" in err and "'production'" in err
    assert "Traceback" not in err
    monkeypatch.setenv("MEDLOOP_ENVIRONMENT", " Production ")
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", "short")
    code, _, err = run(monkeypatch, capsys, "init")
    assert code == 2 and "32 or more characters in production" in " ".join(err.split())
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", "k" * 32)
    assert run(monkeypatch, capsys, "init")[0] == 0


def test_production_needs_a_long_private_key() -> None:
    for key in (None, "short", "x" * 31):
        with pytest.raises(ConfigError, match="MEDLOOP_SECRET_KEY"):
            Settings(environment="production", secret_key=key)
    assert Settings(environment="PRODUCTION", secret_key="x" * 32).environment == "production"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("garbage://", "MEDLOOP_DATABASE_URL is not a database URL"),
        ("not a url at all", "MEDLOOP_DATABASE_URL is not a database URL"),
        ("postgresql+psycopg://medloop:secret@127.0.0.1:1/none", "cannot open the database"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line(cli: Run, url: str, said: str) -> None:
    monkeypatch, capsys = cli
    monkeypatch.setenv("MEDLOOP_DATABASE_URL", url)
    code, _, err = run(monkeypatch, capsys, "init")
    assert code == 2 and said in " ".join(err.split()) and "Traceback" not in err
    assert "secret" not in err  # the password is never printed


def test_pseudonymising_with_the_development_key_is_warned_about(cli: Run, tmp_path: Path) -> None:
    monkeypatch, capsys = cli
    source = Path(str(get_testdata_file("CT_small.dcm", download=False)))
    code, _, err = run(monkeypatch, capsys, "deid", str(source), str(tmp_path / "a.dcm"))
    assert code == 0 and "MEDLOOP_SECRET_KEY is not set" in " ".join(err.split())
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", "a-private-key")
    code, _, err = run(monkeypatch, capsys, "deid", str(source), str(tmp_path / "b.dcm"))
    assert code == 0 and "MEDLOOP_SECRET_KEY" not in err


def test_serving_beyond_this_machine_needs_a_private_key(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the public development key, anyone holding the raw ids could recompute the
    pseudonyms (a brute force over a million MRNs takes a second)."""
    monkeypatch.delenv("MEDLOOP_SECRET_KEY", raising=False)
    served: list[str] = []
    monkeypatch.setattr("medloop.cli.web.run_server", lambda s, host, **_: served.append(host))
    code, _, err = run(monkeypatch, capsys, "serve", "--host", "0.0.0.0")
    assert code == 2 and "MEDLOOP_SECRET_KEY is not set" in " ".join(err.split())
    assert served == []
    code, _, err = run(monkeypatch, capsys, "serve")  # this machine only: a warning
    assert code == 0 and served == ["127.0.0.1"]
    assert "development key" in " ".join(err.split())
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", "x" * 40)
    code, _, _ = run(monkeypatch, capsys, "serve", "--host", "0.0.0.0")
    assert code == 0 and served[-1] == "0.0.0.0"


@pytest.fixture
def disk_full_later() -> Iterator[Callable[[], None]]:
    """Call it, and every new SQLite connection may not grow its database: a full disk,
    as SQLite meets one (SQLITE_FULL)."""

    def no_room(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA max_page_count = 1")  # raised to the current size

    yield lambda: event.listen(Engine, "connect", no_room)
    if event.contains(Engine, "connect", no_room):
        event.remove(Engine, "connect", no_room)


def test_a_full_disk_is_one_line_and_nothing_half_written(
    cli: Run, tmp_path: Path, disk_full_later: Callable[[], None]
) -> None:
    monkeypatch, capsys = cli
    table = tmp_path / "cohort.csv"
    rows = [f"p{i},{40 + i % 30},{'x' * 200}" for i in range(2000)]
    table.write_text("id,age,remark\n" + "\n".join(rows) + "\n")
    imported = ("patients", "import", str(table), "-p", "c", "--id-column", "id")
    assert run(monkeypatch, capsys, "init")[0] == 0
    disk_full_later()
    code, _, err = run(monkeypatch, capsys, *imported, "--text", "remark")
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert "the database could not be written: database or disk is full" in said
    assert "The failed write was undone" in said
