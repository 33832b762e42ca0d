"""Repository models served by the session's embedded Triton, as the pipeline's TritonModel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import tritonclient.grpc.aio as grpcclient

from streamer.inference.client import TritonModel
from streamer.inference.server import EmbeddedTritonServer

REQUESTS_IN_FLIGHT = 4
QUEUE_SIZE = 64
REQUEST_TIMEOUT_S = 30.0
SERVED = ("face_detector", "face_embedder", "person_reid", "person_reid_retail")


@pytest.fixture(scope="session")
async def served_models(
    embedded_triton: EmbeddedTritonServer,
) -> AsyncIterator[dict[str, TritonModel]]:
    """face/ReID models behind the same queue-and-workers client the pipeline uses."""
    client = grpcclient.InferenceServerClient(embedded_triton.grpc_url)
    models: dict[str, TritonModel] = {}
    try:
        for name in SERVED:
            model = TritonModel(
                client,
                name,
                requests_in_flight=REQUESTS_IN_FLIGHT,
                queue_size=QUEUE_SIZE,
                use_shared_memory=True,
                request_timeout_s=REQUEST_TIMEOUT_S,
            )
            await model.start()
            models[name] = model
        yield models
    finally:
        for model in models.values():
            await model.stop()
        await client.close()
