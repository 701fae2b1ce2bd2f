"""HTTP JSON API over a `Recommender` (FastAPI): /recommend, /items, /similar, /healthz.

(No `from __future__ import annotations` here: FastAPI reads the request models from real annotations.)

Invalid requests get 4xx answers with a message (422: malformed JSON or wrong types; 400: an impossible request
such as an empty history or k larger than the catalogue; 404: unknown item ids, the first `max_echoed_ids` of them
listed with their count; 413: a body over `max_body_bytes`; 401/403: a write without the API key, or writes
disabled), never a 500.

Writes (`/items`) need the API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`); without a key configured
they are disabled unless `allow_anonymous_writes`. Every request is bounded (`ServerLimits`). Added items are
appended to a JSON-lines log (`items_log`), each line written whole and synced before the answer, and replayed when
the server starts, so a restart loses no item it acknowledged.
"""

import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from textrec.serve.recommender import Recommender, UnknownItemsError

logger = logging.getLogger(__name__)


@dataclass
class ServerLimits:
    """What one request, and the server as a whole, may ask for."""

    max_body_bytes: int = 256 * 1024
    max_k: int = 1000
    max_history: int = 1000  # item ids in a history
    max_text_chars: int = 4000  # a free-text history, or one field of an added item
    max_id_chars: int = 256
    max_items_per_request: int = 100
    max_fields_per_item: int = 32
    max_added_items: int = 10_000  # items added over the server's life (the log included)
    max_echoed_ids: int = 20  # unknown ids listed in a 404


class ItemsLog:
    """Append-only JSON lines of added items; each line written in one call and synced before returning."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self) -> list:
        """The items logged so far. A last line cut short by a crash (never acknowledged) is skipped with a
        warning; any other bad line is an error naming the line."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").split("\n")
        items = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError:
                if number == len(lines):  # the unterminated last line of an interrupted append
                    logger.warning(f"{self.path}, line {number}: incomplete last line skipped (never acknowledged)")
                    continue
                raise ValueError(f"{self.path}, line {number}: not valid JSON") from None
        return items

    def append(self, items) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def create_app(
    recommender: Recommender,
    *,
    api_key: str | None = None,
    allow_anonymous_writes: bool = False,
    limits: ServerLimits | None = None,
    items_log: str | Path | None = None,
):
    from fastapi import Depends, FastAPI

    limits = limits or ServerLimits()
    log = ItemsLog(items_log) if items_log else None
    lock = threading.Lock()  # add_items changes the index; queries must not see it half-done
    added = {"count": 0}
    if log is not None:  # replay what was added before a restart
        replayed = [i for i in log.read() if str(i.get("item_id")) not in recommender.positions]
        if replayed:
            recommender.add_items(replayed)
        added["count"] = len(log.read())
        logger.info(f"{log.path}: {len(replayed)} added items replayed")

    app = FastAPI(title="textrec", version="1")
    RecommendRequest, ItemsRequest, SimilarRequest = _request_models(limits)
    _install_handlers(app, limits)
    writer = _writer(api_key, allow_anonymous_writes)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "items": len(recommender), "user_tower": recommender.towers.user_tower}

    @app.post("/recommend")
    def recommend(req: RecommendRequest):
        _check_history(req.history, limits)
        with lock:
            return {"items": _items(recommender.recommend(req.history, req.k, req.exclude_seen))}

    @app.post("/items", dependencies=[Depends(writer)])
    def add_items(req: ItemsRequest):
        _check_items(req.items, limits, added["count"])
        with lock:
            ids = recommender.add_items(req.items)
            if log is not None:
                log.append(req.items)  # synced before the answer: an acknowledged item survives a restart
            added["count"] += len(ids)
        return {"added": ids, "items": len(recommender)}

    @app.post("/similar")
    def similar(req: SimilarRequest):
        with lock:
            return {"items": _items(recommender.similar_items(req.item_id, req.k))}

    return app


def _request_models(limits: ServerLimits):
    """The request bodies of /recommend, /items and /similar, with the server's limits."""
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[StrictStr] | StrictStr = Field(description="item ids, oldest first, or one free text")
        k: StrictInt = Field(10, ge=1, le=limits.max_k)
        exclude_seen: StrictBool = True

    class ItemsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[dict[StrictStr, StrictStr]] = Field(min_length=1, max_length=limits.max_items_per_request)

    class SimilarRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        item_id: StrictStr = Field(max_length=limits.max_id_chars)
        k: StrictInt = Field(10, ge=1, le=limits.max_k)

    return RecommendRequest, ItemsRequest, SimilarRequest


def _install_handlers(app, limits: ServerLimits) -> None:
    """The body-size limit and the answers to unknown ids (404) and bad values (400)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse(status_code=411, content={"detail": "a Content-Length header is required"})
            if int(length) > limits.max_body_bytes:
                detail = f"request body of {length} bytes is over the limit of {limits.max_body_bytes}"
                return JSONResponse(status_code=413, content={"detail": detail})
        return await call_next(request)

    @app.exception_handler(UnknownItemsError)
    async def unknown_items(request: Request, exc: UnknownItemsError):
        shown = [i[: limits.max_id_chars] for i in exc.ids[: limits.max_echoed_ids]]
        detail = f"{len(exc.ids)} unknown item ids" + (" (first ones listed)" if len(exc.ids) > len(shown) else "")
        return JSONResponse(
            status_code=404, content={"detail": detail, "unknown_item_ids": shown, "unknown_count": len(exc.ids)}
        )

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"detail": str(exc)[:1000]})


def _writer(api_key: str | None, allow_anonymous_writes: bool):
    """The dependency that guards writes: the API key, or anonymous writes when explicitly allowed."""
    from fastapi import HTTPException, Request

    def writer(request: Request):
        if api_key is None:
            if not allow_anonymous_writes:
                raise HTTPException(403, "writes are disabled: start the server with --api-key (or TEXTREC_API_KEY)")
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "a valid API key is required for writes")

    return writer


def _items(pairs):
    return [{"item_id": item_id, "score": score} for item_id, score in pairs]


def _check_history(history, limits: ServerLimits) -> None:
    if isinstance(history, str):
        if len(history) > limits.max_text_chars:
            raise ValueError(f"history: text of {len(history)} characters (at most {limits.max_text_chars})")
    elif len(history) > limits.max_history:
        raise ValueError(f"history: {len(history)} items (at most {limits.max_history})")


def _check_items(items, limits: ServerLimits, count: int) -> None:
    if count + len(items) > limits.max_added_items:
        raise ValueError(f"items: the server holds at most {limits.max_added_items} added items")
    for n, item in enumerate(items):
        if len(item) > limits.max_fields_per_item:
            raise ValueError(f"items[{n}]: {len(item)} fields (at most {limits.max_fields_per_item})")
        if len(item.get("item_id", "")) > limits.max_id_chars:
            raise ValueError(f"items[{n}].item_id: longer than {limits.max_id_chars} characters")
        for name, value in item.items():
            if len(value) > limits.max_text_chars:
                raise ValueError(f"items[{n}].{name[:64]}: longer than {limits.max_text_chars} characters")
