"""The `triton` and `inference` sections: where models are served and how requests are sent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from streamer.config.base import BackoffConfig, Section, on_off


class TritonConfig(Section):
    mode: Literal["embedded", "external"] = Field(
        "embedded",
        description="'embedded' starts the tritonserver shipped in nvidia-pytriton on loopback "
        "(CPU, ONNX Runtime); 'external' connects to `url`.",
    )
    url: str = Field("127.0.0.1:8001", description="gRPC host:port of an external Triton server.")
    model_repository: Path = Field(
        Path("model_repository"),
        description="The model repository (config.pbtxt and 1/model.onnx per model), beside the "
        "config file by default. Embedded mode writes the shipped config.pbtxt of each model it "
        "needs there when missing and prepares the weights (as `streamer models prepare` does); "
        "a config.pbtxt edited there is kept.",
    )
    shared_memory: Annotated[Literal["auto", "on", "off"], BeforeValidator(on_off)] = Field(
        "auto",
        description="Pass tensors through system shared memory; 'auto' = when the server is "
        "on this host (embedded, or an external URL on loopback).",
    )
    startup_timeout_s: float = Field(120.0, gt=0, description="Wait this long for server ready.")
    request_timeout_s: float = Field(10.0, gt=0, description="Deadline of one inference request.")
    ort_threads: int = Field(
        0,
        ge=0,
        description="Embedded: ONNX Runtime intra-op threads per model instance; 0 = the cores "
        "divided by the model's instance count.",
    )
    log_verbose: int = Field(0, ge=0, description="Embedded: tritonserver --log-verbose level.")
    health_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often the server's health (process, readiness, shared-memory regions) "
        "is checked; a dead or restarted server is noticed within about this long.",
    )
    restart: BackoffConfig = Field(
        default_factory=lambda: BackoffConfig(initial_delay_s=0.5, max_delay_s=10.0),
        description="Backoff between attempts to bring a failed server back (restarting the "
        "embedded one, reconnecting to an external one).",
    )
    give_up_after_s: float | None = Field(
        120.0,
        gt=0,
        description="A server down this long is reported loudly (ERROR) and, with "
        "`exit_on_failure`, ends the service with exit code 1 so that systemd or Kubernetes "
        "restarts it; None = keep trying for ever.",
    )
    exit_on_failure: Annotated[Literal["auto", "on", "off"], BeforeValidator(on_off)] = Field(
        "auto",
        description="Exit when the server stays down beyond `give_up_after_s`; 'auto' = on for "
        "embedded (the service owns the server), off for external (another supervisor does).",
    )


class InferenceConfig(Section):
    requests_in_flight: int = Field(
        8,
        ge=1,
        description="Concurrent requests per model; Triton batches only concurrent requests, "
        "so this bounds the dynamic batch size. A model the server runs without dynamic "
        "batching (the embedded server's detector on a 2-core machine) gets at most its "
        "instances + 2 at once: more would only queue at the server in arrival order, where "
        "flooding cameras get ahead, so they wait in this process's fair queue instead.",
    )
    max_request_batch: int = Field(
        2,
        ge=1,
        le=64,
        description="Items (frames, crops) one request may carry: a worker sends what is already "
        "queued, up to this many and one round of the fair order, in one request (never waiting "
        "for more). Each request costs this process and the server about 1 ms of CPU whatever "
        "it carries. On the embedded CPU server, which runs the images of a request one after "
        "another, 2 is a little faster than 1 and more gain nothing (`streamer bench` compares "
        "1 and 2). Capped by the model's max_batch_size; shared memory per model grows with "
        "requests_in_flight x this.",
    )
    queue_size: int = Field(64, ge=1, description="Shared request queue length per model.")
    frames_in_flight_per_camera: int = Field(
        2,
        ge=1,
        description="Frames of one camera in detection at once: 2 overlaps one frame's round "
        "trip with the next; results still reach the tracker in frame order.",
    )
