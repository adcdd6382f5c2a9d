"""``pixseek serve``: the REST API and the search page over the library roots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pixseek.cli.common import err, global_options, quiet_model_loading, user_errors
from pixseek.cli.options import DeviceOption, ModelOption, PrecisionOption, reranker_model_options
from pixseek.errors import PixseekError
from pixseek.vocabulary import RerankChoice

if TYPE_CHECKING:
    from pixseek.api.config import ServerSettings

app = typer.Typer()

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
@global_options
@reranker_model_options
def serve(
    ctx: typer.Context,
    reranker_models: dict[str, object],
    roots: Annotated[
        list[Path] | None,
        typer.Option(
            "--root",
            "-r",
            metavar="FOLDER",
            help="Library folder to index and serve (repeatable) [env PIXSEEK_LIBRARY_ROOTS; default: the "
            "folders the collection was indexed from]",
        ),
    ] = None,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Server processes: searches spread over them; one at a time indexes, watches and saves "
            "the index (elected by a file lock), the others follow its changes within a second",
        ),
    ] = 1,
    api_key: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Key required by mutating endpoints [env PIXSEEK_API_KEY]"),
    ] = None,
    allow_no_key: Annotated[
        bool, typer.Option(help="Allow binding a non-loopback address without an API key")
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ORIGIN", help="Allow browser calls from this origin (repeatable); default: CORS off"
        ),
    ] = None,
    watch: Annotated[
        bool | None,
        typer.Option(
            "--watch/--no-watch", help="Index changes in the roots as they happen [env PIXSEEK_WATCH]"
        ),
    ] = None,
    poll: Annotated[
        bool | None, typer.Option("--poll", help="Watch by polling (network mounts, inotify limits)")
    ] = None,
    rerank: Annotated[
        RerankChoice | None,
        typer.Option(
            metavar="RERANKER",
            help="Re-rankers to load and offer: none, bridgetower, blip2 or both; also the default for "
            "searches that do not choose [env PIXSEEK_RERANK]",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Answer searches with the collection's shards on this Ray cluster (auto, HOST:6379, "
            "ray://HOST:10001, local); indexing stays local [env PIXSEEK_RAY_ADDRESS]",
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
) -> None:
    """Serve the REST API (docs at /docs) and the search page (at /) over the library roots;
    with --watch, changes in the roots are indexed as they happen. Nothing outside the roots is
    ever indexed or served."""
    import uvicorn

    from pixseek.api.app import WORKER_SETTINGS_ENV, create_app
    from pixseek.api.config import ServerSettings

    with user_errors():
        overrides = {
            "library_roots": roots,
            "api_key": api_key,
            "cors_origins": cors_origin,
            "watch": watch,
            "watch_poll": poll,
            "rerank": rerank,
            **reranker_models,
            "model": model,
            "device": device,
            "precision": precision,
            "ray_address": ray_address,
        }
        settings = ServerSettings(**{**ctx.obj, **{k: v for k, v in overrides.items() if v is not None}})
        if host not in _LOOPBACK and not settings.api_key and not allow_no_key:
            raise PixseekError(
                f"refusing to serve on {host} without an API key: set --api-key (or PIXSEEK_API_KEY), "
                "or pass --allow-no-key if the network is trusted"
            )
        if settings.ray_address is not None:
            from pixseek.distributed import require_ray

            require_ray()  # before the model loads: a missing extra is a one-line error at once
        quiet_model_loading()
        settings = _with_default_roots(settings)
        if workers > 1:  # each worker process builds its app from these settings (spawned, not forked)
            passed = {"workers": workers, "settings": settings.model_dump(mode="json")}
            os.environ[WORKER_SETTINGS_ENV] = json.dumps(passed)
            factory = "pixseek.api.app:worker_app"
            # A worker loading its model on busy cores may answer the supervisor's ping late: give it
            # 30 s, not 5, before it is taken for hung and replaced.
            uvicorn.run(
                factory,
                factory=True,
                workers=workers,
                host=host,
                port=port,
                log_level="info",
                timeout_worker_healthcheck=30,
            )
            return
        application = create_app(settings)
    uvicorn.run(application, host=host, port=port, log_level="info")


def _with_default_roots(settings: ServerSettings) -> ServerSettings:
    """Without --root, serve the folders the collection was indexed from (still only those), and say
    at start-up what is served and why."""
    from pixseek.library import Library

    with Library(settings) as library:
        if settings.library_roots:
            err.print(f"serving {', '.join(map(str, settings.library_roots))} (--root)")
            return settings
        recorded = [Path(root) for root in library.roots() if Path(root).is_dir()]
        collection = library.collection_name
    if not recorded:
        err.print(
            f"note: collection {collection!r} has no indexed folders recorded and no --root was given: "
            "nothing is served; pass --root FOLDER (then POST /index or --watch indexes it)"
        )
        return settings
    err.print(
        f"serving what collection {collection!r} was indexed from: {', '.join(map(str, recorded))} "
        "(pass --root to serve other folders)",
        soft_wrap=True,
    )
    return settings.model_copy(update={"library_roots": recorded})
