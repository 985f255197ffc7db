"""The query sample a LeanVec-OOD collection fits its query map to."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from encoders.base import EncoderInputError
from index.errors import DimensionMismatch, PayloadTooLarge
from nestor_client.models import QuerySampleRequest
from server.auth import Role, require
from server.convert import vector_array
from server.deps import CatalogDep, SettingsDep
from server.embedding import collection_encoder, embed
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections/{name}/queries", tags=["collections"], route_class=NestorRoute)


@router.post(
    "/sample",
    summary="Add example queries for LeanVec-OOD fitting (the next optimization refits)",
    dependencies=[require(Role.write)],
)
async def post_query_sample(
    name: str, body: QuerySampleRequest, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    vname, vcfg = coll.vector_config(body.using)
    rows = len(body.vectors or body.texts or [])
    if rows > settings.max_batch_points:
        raise PayloadTooLarge(f"{rows} sample rows in one request exceeds max_batch_points {settings.max_batch_points}")
    if body.texts is not None:
        encoder = collection_encoder(coll, vname)
        texts = body.texts
        emb = await run_in_threadpool(lambda: embed(encoder, texts, query=True))
        if emb.errors:
            raise EncoderInputError(emb.errors)
        mat = emb.dense()
    else:
        mat = np.empty((rows, vcfg.dim), np.float32)
        for i, v in enumerate(body.vectors or []):
            arr = vector_array(v, f"sample row #{i}")
            if arr.shape != (vcfg.dim,):
                raise DimensionMismatch(f"sample row #{i}: expected dimension {vcfg.dim}, got {arr.shape[-1]}")
            mat[i] = arr
    size = await run_in_threadpool(lambda: coll.add_query_sample(mat, replace=body.replace, using=vname))
    return envelope(request, {"size": size}, started)
