"""Run the `medloop` command line in-process, as a user would type it."""

from __future__ import annotations

import sys

import pytest

from medloop.cli import main


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """`medloop ARGS...`: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["medloop", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
