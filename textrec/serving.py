"""HTTP JSON API over a `Recommender` (FastAPI): /recommend, /items, /similar, /healthz.

(No `from __future__ import annotations` here: FastAPI reads the request models from real annotations.)

Invalid requests get 4xx answers with a message (422: malformed JSON or wrong types; 400: an impossible request
such as an empty history or k larger than the catalogue; 404: unknown item ids, all of them listed), never a 500.
"""

import threading

from textrec.recommender import Recommender, UnknownItemsError


def create_app(recommender: Recommender):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

    app = FastAPI(title="textrec", version="1")
    lock = threading.Lock()  # add_items changes the index; queries must not see it half-done

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[StrictStr] | StrictStr = Field(description="item ids, oldest first, or one free text")
        k: StrictInt = Field(10, ge=1)
        exclude_seen: StrictBool = True

    class ItemsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[dict[StrictStr, StrictStr]] = Field(min_length=1)

    class SimilarRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        item_id: StrictStr
        k: StrictInt = Field(10, ge=1)

    @app.exception_handler(UnknownItemsError)
    async def unknown_items(request: Request, exc: UnknownItemsError):
        return JSONResponse(status_code=404, content={"detail": str(exc), "unknown_item_ids": exc.ids})

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    def _items(pairs):
        return [{"item_id": item_id, "score": score} for item_id, score in pairs]

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "items": len(recommender), "user_tower": recommender.model.user_tower}

    @app.post("/recommend")
    def recommend(req: RecommendRequest):
        with lock:
            return {"items": _items(recommender.recommend(req.history, req.k, req.exclude_seen))}

    @app.post("/items")
    def add_items(req: ItemsRequest):
        with lock:
            added = recommender.add_items(req.items)
        return {"added": added, "items": len(recommender)}

    @app.post("/similar")
    def similar(req: SimilarRequest):
        with lock:
            return {"items": _items(recommender.similar_items(req.item_id, req.k))}

    return app
