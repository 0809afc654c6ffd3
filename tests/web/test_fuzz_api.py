"""Schemathesis fuzzes every operation of the OpenAPI schema, as each role and anonymously,
with data that fits the schema and data that does not: no request may get a 5xx.

The examples are bounded and derandomized (the same cases every run); set
MEDLOOP_FUZZ_EXAMPLES to fuzz deeper locally.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from sqlalchemy import select
from web_support import Site

from medloop.store.models import Task

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

EXAMPLES = int(os.environ.get("MEDLOOP_FUZZ_EXAMPLES", "12"))
#: annotator, doctor, admin, and nobody (no Authorization header)
WHO = ("alice", "dora", "adam", None)


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def cases(operation: Any, mode: str, ids: list[int]) -> Any:
    """Generated cases; where the path has an id, half of them use an id that exists."""
    generation_mode = schemathesis.GenerationMode(mode)
    generated = operation.as_strategy(generation_mode=generation_mode)
    names = [parameter.name for parameter in operation.path_parameters]
    if not names:
        return generated
    existing = st.sampled_from(ids).flatmap(
        lambda i: operation.as_strategy(
            generation_mode=generation_mode, path_parameters=dict.fromkeys(names, i)
        )
    )
    return st.one_of(generated, existing)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_never_get_a_5xx(site: Site, mode: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", site.client.app)
    tokens = {name: site.token(name) for name in WHO if name is not None}
    ops = operations(schema)
    with site.ws.db.session() as s:  # task and item ids overlap in this small site
        ids = sorted(set(s.scalars(select(Task.id))) | set(s.scalars(select(Task.item_id))))
    assert len(ops) >= 12, "every API operation is in the schema"
    failures: list[str] = []
    calls: list[int] = []

    for operation in ops:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=cases(operation, mode, ids),
            who=st.sampled_from(WHO),
        )
        def fuzz(case: Any, who: str | None) -> None:
            headers = {"Authorization": f"Bearer {tokens[who]}"} if who else None
            response = case.call(headers=headers)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{response.status_code} {case.method} {case.formatted_path} as {who}: "
                    f"query={case.query} body={case.body!r} -> {response.text[:200]}"
                )

        try:
            fuzz()
        except Unsatisfiable:  # nothing invalid to send (e.g. GET /api/health)
            assert mode == "negative", operation.label
    assert len(calls) >= EXAMPLES * len(ops) // 2, "the fuzzer made requests"
    assert not failures, "\n".join(failures[:20])
    assert site.client.get("/api/health").status_code == 200, "the server stays up"
