"""The configured gallery backend: in this process, or shared by every instance through Redis."""

from __future__ import annotations

from streamer.config import GalleryConfig
from streamer.identities.gallery import IdentityGallery, InMemoryGallery
from streamer.identities.shared import SharedGallery


def build_gallery(settings: GalleryConfig) -> IdentityGallery:
    if settings.backend == "redis":
        return SharedGallery(settings)
    return InMemoryGallery(settings)
