"""Schemathesis against the OpenAPI, in-process on the ASGI app with a valid region key: no
server error, no response that violates the documented schema, status or content type.
Every operation gets a bounded number of generated examples (the whole run stays < 60 s)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
EXAMPLES = 15


def test_every_operation_conforms(api) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api.client.app)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) > 24 + 9
    calls = []
    for op in ops:
        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(headers=api.h(api.region_key), checks=CHECKS)
            calls.append(case.path)

        run()
    assert len(set(calls)) == len(ops)
