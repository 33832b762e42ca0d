"""Shared fixtures: real weights from the assets folder, one real embedded Triton per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from streamer.benchmarks.footage import IdleFootage, build_idle_footage
from streamer.core.assets import ASSETS_ENV_VAR, assets_dir
from streamer.inference.catalog import CATALOG, find_demo_weights, prepare
from streamer.inference.repository import CONFIG_FILE, shipped_config
from streamer.inference.server import EmbeddedTritonServer
from tests.support.checkout import REPO_ROOT, SAMPLE_CLIP
from tests.support.rtsp import RtspServerFactory


def require_asset(relative: str) -> Path:
    """A path under the assets folder; fails (never skips) with how to get it when missing."""
    path = assets_dir(start=REPO_ROOT) / relative
    if not path.exists():
        pytest.fail(
            f"missing test asset {path}: point {ASSETS_ENV_VAR} at the shared assets folder "
            "(default: the nearest shared/ folder above the checkout; see README 'Models, weights "
            "and assets')",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def assets() -> Path:
    folder = assets_dir(start=REPO_ROOT)
    if not (folder / "models").is_dir():
        pytest.fail(
            f"assets folder {folder} has no models/: set {ASSETS_ENV_VAR} to the shared assets "
            "folder (default: the nearest shared/ folder above the checkout)",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    assert SAMPLE_CLIP.is_file(), f"{SAMPLE_CLIP} is part of the repository and must exist"
    return SAMPLE_CLIP


@pytest.fixture(scope="session")
def idle_footage() -> IdleFootage:
    """The sample clip's street, empty 80% of the time (streamer/benchmarks/footage.py); built
    once into the cache folder ($STREAMER_CACHE, default /tmp/streamer-cache), then reused."""
    require_asset("videos/vtest.avi")
    return build_idle_footage()


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Path:
    """The shipped repository configs with every catalogue model prepared from the demo weights."""
    repository = tmp_path_factory.mktemp("model_repository")
    for item in CATALOG:
        if shipped_config(item.name) is None:
            continue
        if find_demo_weights(item, assets) is None:
            pytest.fail(f"missing demo weights {item.demo_weights} in {assets / 'models'}", pytrace=False)
        prepare(item, repository, assets=assets)
    return repository


@pytest.fixture(scope="session")
async def embedded_triton(model_repository: Path) -> AsyncIterator[EmbeddedTritonServer]:
    """One real tritonserver for the whole session, serving every prepared model."""
    models = sorted(p.name for p in model_repository.iterdir() if (p / CONFIG_FILE).is_file())
    server = EmbeddedTritonServer(model_repository, models, ort_threads=1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def rtsp_server_factory() -> Iterator[RtspServerFactory]:
    """Starts real RTSP cameras (tests/support/rtsp.py); every one is killed when the test ends."""
    with RtspServerFactory() as factory:
        yield factory
