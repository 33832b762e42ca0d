"""`streamer models`: what the repository expects, what is present, and how to get the rest.

The repository is `--repository`, else the `triton.model_repository` of `--config` (relative to
that file), else `model_repository` in the working directory; `prepare` writes the shipped
config.pbtxt there too where it is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamer.config import ConfigError, load_config
from streamer.inference.catalog import (
    CATALOG,
    PIXEL_PRESETS,
    CatalogEntry,
    WeightsMissing,
    entry,
    fetch,
    find_demo_weights,
    prepare,
    sha256,
)
from streamer.inference.repository import (
    CONFIG_FILE,
    MODEL_FILE,
    RepositoryError,
    read_model,
    shipped_config,
)
from streamer.inference.triton import resolve_repository

DEFAULT_REPOSITORY = "model_repository"


def _selected(args: argparse.Namespace) -> tuple[list[CatalogEntry], Path, Path | None]:
    repository = args.repository
    assets = None
    names = list(args.names)
    if args.config:
        from streamer.assembly import registered, required_models

        try:
            config = load_config(args.config, registered=registered())
        except ConfigError as exc:
            raise SystemExit("\n".join(f"error: {line}" for line in exc.lines)) from None
        repository = repository or resolve_repository(config)
        assets = config.assets_dir
        names = names or required_models(config)
    if repository is None:
        repository = Path(DEFAULT_REPOSITORY).absolute()
    try:
        items = [entry(n) for n in names] if names else list(CATALOG)
    except KeyError as exc:
        raise SystemExit(f"error: {exc.args[0]}") from None
    return items, repository, assets


def list_models(items: list[CatalogEntry], repository: Path, assets: Path | None) -> int:
    for item in items:
        print(f"{item.name}: {item.role}")
        try:
            model = read_model(repository, item.name)
            print(f"  config     {model.directory / CONFIG_FILE}")
        except RepositoryError as exc:
            if shipped_config(item.name) is None:
                print(f"  config     MISSING: {exc}")
            else:
                print(
                    f"  config     shipped; `streamer models prepare` (or the embedded server at "
                    f"start) writes it to {repository / item.name / CONFIG_FILE}"
                )
        served = repository / item.name / "1" / MODEL_FILE
        if served.is_file():
            print(f"  prepared   {served} sha256={sha256(served)}")
        else:
            print(f"  prepared   missing ({served})")
        demo = find_demo_weights(item, assets)
        if demo is not None:
            print(f"  demo       {demo} sha256={sha256(demo)} [{item.demo_licence}]")
        else:
            how = "`streamer models fetch`" if item.fetch_url else "the project's shared assets"
            print(f"  demo       {item.demo_weights} not found; get it with {how}")
        print(f"  production {item.production}")
    return 0


def main(args: argparse.Namespace) -> int:
    items, repository, assets = _selected(args)
    classes = getattr(args, "classes", None)
    if classes is not None:
        others = [item.name for item in items if item.detector_classes is None]
        if classes < 0 or others or args.action != "prepare":
            raise SystemExit(
                f"error: --classes {classes}: a count of 0 or more, for `prepare person_detector` "
                f"only" + (f" (not {', '.join(others)})" if others else "")
            )
    if args.action == "list":
        return list_models(items, repository, assets)
    failures = 0
    for item in items:
        try:
            if args.action == "fetch":
                if find_demo_weights(item, assets) is not None:
                    print(f"{item.name}: {item.demo_weights} already present")
                    continue
                print(f"{item.name}: fetched {fetch(item, args.mirror, assets)}")
            else:
                if args.pixels and args.pixels not in PIXEL_PRESETS:
                    known = ", ".join(PIXEL_PRESETS)
                    raise SystemExit(f"error: --pixels {args.pixels}: unknown (known: {known})")
                pixels = PIXEL_PRESETS[args.pixels] if args.pixels else None
                prepared = prepare(item, repository, args.source, assets, pixels, classes)
                print(f"{item.name}: prepared {prepared}")
        except WeightsMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
        except ValueError as exc:  # weights the rewrite cannot handle: say which, and why
            print(f"error: {item.name}: {exc}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0
