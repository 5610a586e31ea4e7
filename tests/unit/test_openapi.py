"""/openapi.json describes every REST route the gateway has, and nothing it lacks, and is valid OpenAPI 3.1."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from starlette.routing import Route

from gateways.app import create_app
from gateways.openapi import document
from infra.settings import Secret, Settings

NOT_REST = ("gateways.web",)  # web pages and static files: not part of the REST API


def _app_operations() -> set[tuple[str, str]]:
    app = create_app(Settings().with_section("auth", jwt_secret=Secret("s" * 40)))
    found = set()
    for route in app.routes:
        if not isinstance(route, Route) or route.endpoint.__module__ in NOT_REST:
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((path, method.lower()))
    return found


def _documented() -> set[tuple[str, str]]:
    return {(path, method) for path, ops in document()["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_operation_exists() -> None:
    app_ops, documented = _app_operations(), _documented()
    assert app_ops - documented == set(), "routes missing from gateways/openapi.py"
    assert documented - app_ops == set(), "documented operations the gateway does not have"


def test_the_document_is_valid_openapi_31() -> None:
    doc = document("http://127.0.0.1:8080")
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "http://127.0.0.1:8080"}]


def test_every_error_answer_is_a_problem_document() -> None:
    for path, ops in document()["paths"].items():
        for method, operation in ops.items():
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")) and "content" in answer and path != "/readyz":
                    assert "application/problem+json" in answer["content"], (path, method, code)
