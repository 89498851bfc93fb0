"""The share API application: REST under ``/api/v1`` and SOAP 1.1 under ``/ws``.

``create_app`` takes the warehouse URL (default ``Settings.warehouse_url``) and the key
store (default ``$HISX_HOME/api/keys.sqlite``). Every denial (401/403/429) is audited with
the key, the endpoint and its parameters. Non-person-level reads go through a response cache
valid for one warehouse version (:mod:`hisx.api.cache`, ``HISX_API_CACHE_SECONDS``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hisx.api import rest, soap
from hisx.api.auth import ApiError, KeyCache, RateLimiter
from hisx.api.cache import ResponseCache
from hisx.api.db import Reader
from hisx.api.keys import KeyStore


def _lifespan(reader: Reader):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        reader.close()

    return lifespan


def create_app(warehouse_url: str | None = None, keys: KeyStore | str | Path | None = None,
               reader: Reader | None = None, cache: ResponseCache | None = None) -> FastAPI:
    if reader is None:
        if warehouse_url is None:
            from hisx.config import Settings

            warehouse_url = Settings.from_env().warehouse_url
        reader = Reader.from_url(warehouse_url)
    store = keys if isinstance(keys, KeyStore) else KeyStore(keys)

    app = FastAPI(title="hisx share API",
                  version="1.0.0",
                  description="Share interfaces of the regional community cloud HIS: marts, "
                              "standardized records (the feed contract), person history for "
                              "family-doctor teams, data quality, feed status and named SQL "
                              "queries. SOAP 1.1 at /ws (WSDL: /ws?wsdl).",
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs",
                  redoc_url=None, lifespan=_lifespan(reader))
    app.state.reader = reader
    app.state.keys = store
    app.state.key_cache = KeyCache(store)
    app.state.limiter = RateLimiter()
    app.state.cache = cache if cache is not None else ResponseCache.from_env()

    @app.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.denied:
            params = {**request.query_params, **request.path_params}
            store.audit(key=getattr(request.state, "api_key", None), interface="rest",
                        endpoint=rest.endpoint_of(request), params=params, outcome="denied",
                        status=exc.status, reason=f"{exc.code}: {exc.message}")
        return rest.error_response(exc)

    app.state.rest_router = rest.build_router()  # its routes: what tests enumerate
    app.include_router(app.state.rest_router)
    app.include_router(soap.build_router())

    return app
