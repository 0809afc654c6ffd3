"""Opening a workspace: a new home is private to its owner; a home that cannot be one
is a clear error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from medloop.config import Settings
from medloop.exceptions import ConfigError
from medloop.workflows import Workspace


def test_a_new_home_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "home"
    Workspace.open(Settings(home=home, secret_key="k")).close()
    assert stat.S_IMODE(home.stat().st_mode) & 0o077 == 0  # pseudonymised patients' data
    Workspace.open(Settings(home=home, secret_key="k")).close()  # and opens again


def test_a_home_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
