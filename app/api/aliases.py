"""Caller routes answer under `/v1` and under the `/api/v1` alias the seed vendor's clients use
(api-contract.md). Both behave the same; the OpenAPI document lists the `/v1` one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from app.api.schemas import ERROR_RESPONSES

PREFIXES = ("/v1", "/api/v1")


def add_caller_route(
    router: APIRouter,
    path: str,
    endpoint: Callable[..., Any],
    *,
    method: str,
    response_model: Any,
    summary: str,
    responses: dict[int | str, dict[str, Any]] | None = None,
    **documentation: Any,
) -> None:
    """Register `endpoint` at `/v1{path}` and `/api/v1{path}`, with the contract's error responses."""
    for prefix in PREFIXES:
        router.add_api_route(
            f"{prefix}{path}",
            endpoint,
            methods=[method],
            response_model=response_model,
            responses=responses or ERROR_RESPONSES,
            summary=summary,
            include_in_schema=prefix == PREFIXES[0],
            **documentation,
        )
