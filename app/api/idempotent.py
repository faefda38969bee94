"""Running a POST under its `Idempotency-Key`, and replaying the first answer.

A route hands over a `produce` function that does the work and returns the response plus the
typed template it was rendered from (`app.api.replay`). The template is what is kept; a replay
renders it again through the same wire module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi.responses import Response
from starlette.requests import Request

from app.api.gemini_wire import GenerateContentAnswer
from app.api.google_wire import PredictAnswer
from app.api.replay import ReplayContext, ReplayTemplate
from app.api.tasks import TaskAnswer
from app.api.unified_wire import ImagesAnswer
from app.errors import ModelNotAllowed
from app.http.caller_post import CallerPost
from app.idempotency import service as idem
from app.keys.auth import Caller

Produce = Callable[[bool], Awaitable[tuple[Response, ReplayTemplate | None]]]

# Every kind a template was ever kept as: stored ones must keep replaying after an upgrade.
KINDS: dict[str, Callable[[dict[str, Any]], ReplayTemplate]] = {
    ImagesAnswer.kind: ImagesAnswer.from_json,
    PredictAnswer.kind: PredictAnswer.from_json,
    GenerateContentAnswer.kind: GenerateContentAnswer.from_json,
    TaskAnswer.kind: TaskAnswer.from_json,
}


async def with_idempotency(request: Request, post: CallerPost, produce: Produce) -> Response:
    key = request.headers.get("idempotency-key")
    if key is None:
        response, _ = await produce(False)
        return response
    gateway = post.gateway
    claim = await idem.begin(
        gateway.db,
        post.caller.account_id,
        key,
        idem.fingerprint(request.url.path, post.raw),
        run_for=timedelta(seconds=gateway.settings.request_deadline_s + 60),
    )
    if isinstance(claim, idem.Replay):
        template = KINDS[claim.response["kind"]](claim.response)
        context = ReplayContext(gateway.db, gateway.files, gateway.settings.public_url, post.base_url)
        await _refuse_unless_key_may_use(post.caller, template, context)
        replayed = await template.render(context)
        replayed.status_code = claim.status_code
        replayed.headers["idempotent-replayed"] = "true"
        return replayed
    try:
        response, kept = await produce(True)
    except BaseException:
        await asyncio.shield(idem.abandon(gateway.db, claim))
        raise
    if kept is None:
        await idem.abandon(gateway.db, claim)
    else:
        await idem.complete(gateway.db, claim, response.status_code, kept.to_json())
    return response


async def _refuse_unless_key_may_use(caller: Caller, template: ReplayTemplate, context: ReplayContext) -> None:
    """Idempotency keys are scoped to the account, so another key of the account can replay an
    answer; it gets it only if it may use the model that answer came from, as a fresh request."""
    if caller.models is None:
        return
    model = await template.served_model(context)
    if model is None or not caller.may_use(model):
        raise ModelNotAllowed(f"This key may not use the model {model!r}.", param="model")
