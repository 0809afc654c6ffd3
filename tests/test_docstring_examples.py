"""Every example in the package's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import medloop

MODULES = sorted(m.name for m in pkgutil.walk_packages(medloop.__path__, "medloop."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_the_examples_are_found() -> None:
    """A check that this file checks something: the crowd engine's examples are there."""
    finder = doctest.DocTestFinder()
    examples = finder.find(importlib.import_module("medloop.aggregation.dawid_skene"))
    assert sum(len(test.examples) for test in examples) > 0
