"""Cameras at runtime: the owner of the running configuration and of the file it came from.

`CameraControl` validates a change with the config models, writes it to the YAML file (comments,
layout and `${ENV}` references kept) and applies it to the pipeline, one change at a time;
`CameraApi` is its REST face on the dashboard's server; `reload` re-reads the file (SIGHUP).
`IdentityApi` lets the operator correct cross-camera identities, behind the same checks.
"""

from streamer.control.api import CameraApi, openapi_document
from streamer.control.cameras import CameraControl, ChangeRefused, ReloadReport
from streamer.control.document import ConfigDocument
from streamer.control.identities import IdentityApi

__all__ = [
    "CameraApi",
    "CameraControl",
    "ChangeRefused",
    "ConfigDocument",
    "IdentityApi",
    "ReloadReport",
    "openapi_document",
]
