"""The JSON endpoints, fuzzed from FastAPI's OpenAPI schema with schemathesis: never a 500.

Every generated request carries the app's CSRF token (otherwise each would stop at the guard
and nothing behind it would be exercised). The worker thread is off, so uploads that pass the
checks queue jobs without scoring anything; the number of examples is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from cleftscore.web.app import MethodChoice, create_app  # noqa: E402
from cleftscore.web.settings import WebSettings  # noqa: E402

NO_GAN = MethodChoice("gan", False, "no weights in the tests")


@pytest.fixture(scope="module")
def web_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from fastapi.testclient import TestClient

    # "testserver" is the host name schemathesis's ASGI client sends.
    settings_ = WebSettings(
        db=tmp_path_factory.mktemp("fuzz") / "study.sqlite",
        start_worker=False,
        max_file_bytes=200_000,
        extra_hosts=("testserver",),
    )
    app = create_app(settings_, gan=NO_GAN)
    with TestClient(app, base_url="http://127.0.0.1") as client:  # lifespan on; a patient and visit to find
        h = {"X-CSRF-Token": app.state.ctx.guard.csrf_token}
        assert client.post("/api/patients", json={"code": "P001"}, headers=h).status_code == 201
        assert (
            client.post(
                "/api/patients/P001/visits", json={"date": "2026-01-10", "phase": "pre-op"}, headers=h
            ).status_code
            == 201
        )
        yield app


def test_no_endpoint_answers_with_a_server_error(web_app) -> None:
    # schemathesis's own pytest plugin does not run on this pytest; its strategies do, one operation at a time.
    from hypothesis import given
    from schemathesis import checks

    schema = schemathesis.openapi.from_asgi("/openapi.json", web_app)
    headers = {"X-CSRF-Token": web_app.state.ctx.guard.csrf_token}
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def fuzz(case) -> None:
            # An empty file list cannot be told from a missing one in multipart, so schemathesis's
            # "positive data accepted" check cannot hold for the upload; every other check runs.
            case.call_and_validate(headers=headers, excluded_checks=[checks.positive_data_acceptance])

        fuzz()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 10 and "POST /api/visits/{visit_id}/jobs" in tested
