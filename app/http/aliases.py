"""Caller routes answer under `/v1` and under the `/api/v1` alias the seed vendor's clients use
(api-contract.md). Both behave the same; the OpenAPI document lists the `/v1` one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

PREFIXES = ("/v1", "/api/v1")


def add_caller_route(
    router: APIRouter,
    path: str,
    endpoint: Callable[..., Any],
    *,
    method: str,
    response_model: Any,
    summary: str,
    responses: dict[int | str, dict[str, Any]],
    **documentation: Any,
) -> None:
    """Register `endpoint` at `/v1{path}` and `/api/v1{path}`. `responses` documents the errors
    (the contract's error model lives with the contract, in `app.api.schemas`)."""
    for prefix in PREFIXES:
        router.add_api_route(
            f"{prefix}{path}",
            endpoint,
            methods=[method],
            response_model=response_model,
            responses=responses,
            summary=summary,
            include_in_schema=prefix == PREFIXES[0],
            **documentation,
        )
