"""The `fervi` command: one entry point for every stage of the product."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fervi import __version__
from fervi.logs import setup_logging
from fervi.settings import Settings, load_settings
from fervi.training.config import AUGMENTATIONS, FRAMINGS, TrainConfig

if TYPE_CHECKING:
    import subprocess

TRAIN = TrainConfig(data=[])  # `fervi train`'s defaults are the training run's own

log = logging.getLogger("fervi")

C = TypeVar("C", bound=Callable[..., Any])


def _votes_options(default: str | None, with_votes: str, without_votes: str) -> Callable[[C], C]:
    """`--votes` and `--no-votes`: the FER+ crowd votes of a FER-2013 CSV, as `train` and `evaluate` take them."""

    def add(command: C) -> C:
        command = click.option("--no-votes", "votes", flag_value=None, help=without_votes)(command)
        return click.option(
            "--votes",
            default=default,
            show_default=True,
            help="FER+ crowd votes for a FER-2013 CSV: 'auto' uses ferplus_votes.csv.gz beside the CSV if it is "
            f"there, or name the file. {with_votes}",
        )(command)

    return add


def _output_option(flag: str, default: str, help: str, folder: bool = False) -> Callable[[C], C]:
    """An option naming where a command writes a file (or, `folder`, a folder), with its default shown."""
    path = click.Path(file_okay=False) if folder else click.Path(dir_okay=False)
    return click.option(flag, default=default, show_default=True, type=path, help=help)


class _Main(click.Group):
    """The command group: a Redis that cannot be reached is one line naming the setting, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from fervi.bus import RedisUnreachable

        try:
            return super().invoke(ctx)
        except RedisUnreachable as err:
            from fervi.settings import mask_password

            url = mask_password(ctx.obj.redis_url) if isinstance(ctx.obj, Settings) else ""
            raise click.ClickException(
                f"cannot reach Redis at {url or '(none set)'} (FERVI_REDIS_URL): {err}"
            ) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fervi")
@click.option("--log-level", default="INFO", show_default=True, envvar="FERVI_LOG_LEVEL", help="Logging level.")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """FERVI: real-time facial-expression analytics on camera feeds, webcams and video files.

    Settings come from FERVI_* environment variables (see `fervi config`). With no FERVI_REDIS_URL,
    `fervi up` runs a private embedded Redis.
    """
    setup_logging(log_level)
    try:
        ctx.obj = load_settings()
    except ValueError as err:  # a setting, not the command line: one line, without the usage text
        raise click.ClickException(str(err)) from None


def _settings() -> Settings:
    settings: Settings = click.get_current_context().find_root().obj
    return settings


def _redis_url(settings: Settings) -> str:
    """FERVI_REDIS_URL, or else the Redis of a `fervi up` running with the same FERVI_HOME."""
    if settings.redis_url:
        return settings.redis_url
    from fervi.app.stack import running_stack

    stack = running_stack(settings.home)
    if stack is None:
        raise click.ClickException(
            "no Redis to use: set FERVI_REDIS_URL (for example redis://127.0.0.1:6379/0), or "
            f"start `fervi up` (none is running with FERVI_HOME={settings.home})"
        )
    log.debug("event=redis_of_running_stack pid=%s redis=%s", stack["pid"], stack["redis"])
    url: str = stack["redis"]
    return url


def _jobs_url(settings: Settings, redis_url: str) -> str:
    """The Redis of video jobs: FERVI_RQ_REDIS_URL, else the bus's own (not a cluster: RQ cannot use one)."""
    from fervi.bus import is_cluster_url

    url = settings.rq_redis_url or redis_url
    if is_cluster_url(url):
        raise click.UsageError(
            "video jobs need a standalone Redis (RQ does not support Redis Cluster): set FERVI_RQ_REDIS_URL"
        )
    return url


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _human(key: str, value: str, now: float) -> str:
    """A status field as people read it: `last_seen` as '2 s ago', `started` as 'up 3 h'."""
    try:
        stamp = float(value)
    except (TypeError, ValueError):
        return f"{key}={value}"
    if key == "last_seen":
        return f"seen {_ago(max(0.0, now - stamp))} ago"
    if key == "started":
        return f"up {_ago(max(0.0, now - stamp))}"
    return f"{key}={value}"


def _start_rq_workers(redis_url: str, count: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """`fervi analyze` alone: RQ workers of its own on its embedded Redis, logging to FERVI_HOME/logs."""
    import subprocess

    from fervi.service import spawn

    env = {**os.environ, "FERVI_REDIS_URL": redis_url}
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(count):
        with open(log_dir / f"rq-worker-{i + 1}.log", "ab") as log_file:
            procs.append(spawn(["rq-worker"], env, stdout=log_file, stderr=subprocess.STDOUT))
    return procs


def _check_port(host: str, port: int) -> None:
    from fervi.app.stack import PortBusy, check_port_free

    try:
        check_port_free(host, port)
    except PortBusy as err:
        raise click.ClickException(str(err)) from None


@contextmanager
def redis_for_command(settings: Settings) -> Iterator[str]:
    """The configured Redis, or an embedded one for the lifetime of the command."""
    if settings.redis_url:
        yield settings.redis_url
        return
    from fervi.embedded import EmbeddedRedis, RedisStartError

    try:
        server = EmbeddedRedis(Path(settings.home) / "redis", settings.redis_port).start()
    except RedisStartError as err:
        raise click.ClickException(str(err)) from None
    try:  # (not `with server`: entering it would start a second redis-server)
        yield server.url
    finally:
        server.stop()


@main.command("redis-repair")
def redis_repair() -> None:
    """Repair the embedded Redis's damaged append-only file (after a crash or a full disk): cut it after its
    last whole command, keeping a copy of the damaged file. Run it while `fervi up` is stopped."""
    from fervi.app.stack import running_stack
    from fervi.embedded import repair_aof

    settings = _settings()
    if running_stack(settings.home) is not None:
        raise click.ClickException("`fervi up` runs with this FERVI_HOME: stop it first")
    try:
        click.echo(repair_aof(Path(settings.home) / "redis"))
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def config(as_json: bool) -> None:
    """Print the effective settings and where each comes from (env, default, or a running `fervi up`)."""
    from urllib.parse import urlsplit

    from fervi.app.stack import running_stack
    from fervi.settings import mask_password

    settings = _settings()
    rows = [(env, value, doc, "env" if os.environ.get(env) else "default") for env, value, doc in settings.describe()]
    stack = running_stack(settings.home)
    if stack is not None:  # what its processes were given, where the environment did not say
        dashboard = urlsplit(stack.get("dashboard", ""))
        given = {
            "FERVI_REDIS_URL": mask_password(stack.get("redis", "")),
            "FERVI_DASHBOARD_HOST": dashboard.hostname,
            "FERVI_DASHBOARD_PORT": dashboard.port,
        }
        rows = [
            (env, str(given[env]), doc, "fervi up")
            if source == "default" and given.get(env)
            else (env, value, doc, source)
            for env, value, doc, source in rows
        ]
    if as_json:
        click.echo(json.dumps({env: value for env, value, _, _ in rows}, indent=2))
        return
    width = max(len(env) for env, *_ in rows)
    click.echo(f"{'SETTING':<{width}}  {'VALUE':<28}  {'FROM':<8}  MEANING")
    for env, value, doc, source in rows:
        click.echo(f"{env:<{width}}  {value:<28}  {source:<8}  {doc}")
    if stack is not None:
        click.echo(
            f'\n`fervi up` runs with FERVI_HOME={settings.home} (pid {stack["pid"]}): rows FROM "fervi up" are '
            "what it gave its processes."
        )


@main.command()
@click.option("--workers", type=click.IntRange(0), help="Worker processes (default: one per core).")
@click.option("--demo/--no-demo", default=True, show_default=True, help="Run the demo camera.")
@click.option(
    "--camera", "cameras", multiple=True, metavar="NAME=SOURCE", help="Also ingest SOURCE as camera NAME (repeatable)."
)
@click.option("--host", help="Dashboard address (default: FERVI_DASHBOARD_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Dashboard port (default: FERVI_DASHBOARD_PORT, 8000).")
def up(workers: int | None, demo: bool, cameras: tuple[str, ...], host: str | None, port: int | None) -> None:
    """Run the whole stack: Redis (embedded unless FERVI_REDIS_URL), workers, demo camera. Ctrl-C stops it."""
    from dataclasses import replace

    from fervi.app.stack import Stack, running_stack
    from fervi.protocol import CameraSource, ProtocolError

    extra = []
    for item in cameras:
        name, sep, source = item.partition("=")
        if not sep or not source:
            raise click.BadParameter(f"{item!r}: expected NAME=SOURCE", param_hint="--camera")
        try:
            extra.append((name, CameraSource(name, _source_spec(source)).source))  # checked before anything starts
        except ProtocolError as err:
            raise click.BadParameter(f"{item!r}: {err}", param_hint="--camera") from None
    settings = _settings()
    settings = replace(
        settings,
        dashboard_host=host or settings.dashboard_host,
        dashboard_port=settings.dashboard_port if port is None else port,
    )
    from fervi.dashboard.app import ExposureError, check_exposure

    try:
        check_exposure(settings.dashboard_host, settings.dashboard_token)
    except ExposureError as err:
        raise click.ClickException(str(err)) from None
    other = running_stack(settings.home)
    if other is not None:
        raise click.ClickException(
            f"`fervi up` already runs with FERVI_HOME={settings.home} (pid {other['pid']}, "
            f"dashboard {other['dashboard']}): stop it, or set another FERVI_HOME"
        )
    _check_port(settings.dashboard_host, settings.dashboard_port)
    from fervi.embedded import RedisStartError

    try:
        code = Stack(settings, workers, demo, extra).run()
    except RedisStartError as err:
        raise click.ClickException(str(err)) from None
    sys.exit(code)


@main.command()
@click.argument("source")
@click.option("--camera", required=True, help="Camera name: letters, digits, '_', '.', '-'.")
@click.option("--fps", type=click.FloatRange(min=0.1), help="Frames per second to send (live: drop the rest).")
@click.option("--loop", is_flag=True, help="Start a file again at its end.")
@click.option(
    "--live/--no-live",
    "live",
    default=None,
    help="Treat the source as live (drop frames, never wait) or as a file (wait, drop nothing). "
    "Default: webcams and URLs are live, files are not.",
)
@click.option(
    "--within",
    "within",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Folder a file source must stay inside, checked at each open (symlinks resolved); repeatable.",
)
@click.option("--metrics-port", type=int, help="Port for /healthz and /metrics (default FERVI_METRICS_PORT).")
def ingest(
    source: str,
    camera: str,
    fps: float | None,
    loop: bool,
    live: bool | None,
    within: tuple[str, ...],
    metrics_port: int | None,
) -> None:
    """Send frames of SOURCE to Redis: a webcam index, an RTSP/HTTP URL, a video file, an image or a folder.

    SOURCE `-` reads it from FERVI_INGEST_SOURCE (keeps a stream's password out of the process list).
    """
    from fervi.ingest.publisher import run_ingest
    from fervi.protocol import INGEST_SOURCE_ENV, ProtocolError, check_camera

    if source == "-":
        source = os.environ.get(INGEST_SOURCE_ENV, "")
        if not source:
            raise click.BadParameter(f"SOURCE '-' reads {INGEST_SOURCE_ENV}, which is empty", param_hint="SOURCE")

    try:
        check_camera(camera)
    except ProtocolError as err:
        raise click.BadParameter(str(err), param_hint="--camera") from None
    settings = _settings()
    sys.exit(
        run_ingest(
            settings,
            _redis_url(settings),
            camera,
            source,
            fps,
            loop,
            live,
            metrics_port,
            [str(Path(w).resolve()) for w in within],
        )
    )


@main.group()
def cameras() -> None:
    """The cameras FERVI runs for you: list, add and remove them; `supervise` runs their ingest.

    `fervi up` runs the supervisor; the dashboard's Cameras page does the same as these commands.
    """


def _source_spec(source: str, warn_missing: bool = True) -> str:
    """A file named on the command line, as the absolute path the supervisor needs (webcams and URLs as given).
    `warn_missing`: say that a missing file will show as the camera's error (`fervi up --camera`; `fervi
    cameras add` refuses it instead)."""
    from fervi.protocol import source_kind

    if source_kind(source) != "file":
        return source
    path = Path(source).expanduser().resolve()
    if warn_missing and not path.exists():
        click.echo(f"warning: {path} does not exist here; the camera will show the error until it does", err=True)
    return str(path)


@cameras.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cameras_list(as_json: bool) -> None:
    """Each registered camera, its source and its ingest state (live, reconnecting, error and why, ...)."""
    from fervi.bus import Bus, connect
    from fervi.settings import mask_password

    bus = Bus(connect(_redis_url(_settings())))
    sources = bus.sources()
    states = bus.source_states(sources)
    rows: dict[str, dict[str, Any]] = {
        c: {
            "source": mask_password(s.source),
            "kind": s.kind,
            "fps": s.fps,
            "loop": s.loop,
            "origin": s.origin,
            **{k: v for k, v in states.get(c, {}).items() if k in ("state", "reason", "sent", "updated_at")},
        }
        for c, s in sources.items()
    }
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no cameras registered: add one with `fervi cameras add NAME SOURCE`")
    now = time.time()
    for camera, row in rows.items():
        state = row.get("state", "waiting for a supervisor")
        when = f" ({_ago(max(0.0, now - float(row['updated_at'])))} ago)" if row.get("updated_at") else ""
        reason = f": {row['reason']}" if row.get("reason") else ""
        click.echo(f"{camera:<16} {row['kind']:<7} {state}{when}{reason}  {row['source']}")


@cameras.command("add")
@click.argument("name")
@click.argument("source")
@click.option("--fps", type=click.FloatRange(0, 120), default=0, help="Frames per second to send (0: the source's).")
@click.option("--loop", is_flag=True, help="Start a file again at its end.")
@click.option(
    "--live/--no-live",
    "live",
    default=None,
    help="Paced and dropping like a camera (the default here, files too), or every frame of a file as fast "
    "as the workers take them.",
)
@click.option("--replace", is_flag=True, help="Replace a camera of the same name.")
def cameras_add(name: str, source: str, fps: float, loop: bool, live: bool | None, replace: bool) -> None:
    """Run SOURCE as camera NAME: a webcam index, an RTSP/HTTP URL, or a video, image or folder path.

    A file plays at its own frame rate, as a camera would (--no-live: every frame, as fast as the workers go).
    """
    from fervi.bus import Bus, RegistryFull, connect
    from fervi.protocol import CameraSource, ProtocolError, check_file_on_disk, source_kind

    try:
        spec = _source_spec(source, warn_missing=False)
        if source_kind(spec) == "file":
            check_file_on_disk(spec)  # the Cameras page's rule: what the supervisor could never open is refused
            if live is None:
                live = True  # a file plays at its own frame rate, as a camera would (charts count video time)
        camera = CameraSource(name, spec, fps, loop, live, origin="cli")
    except ProtocolError as err:
        raise click.UsageError(str(err)) from None
    settings = _settings()
    bus = Bus(connect(_redis_url(settings)))
    if bus.streams_elsewhere(name):
        raise click.ClickException(
            f"a camera named {name!r} already streams (run by `fervi ingest` elsewhere): pick another name"
        )
    try:
        added = bus.add_source(camera, replace=replace, most=settings.cameras_max)
    except RegistryFull as err:
        raise click.ClickException(str(err)) from None
    if not added:
        raise click.ClickException(f"a camera named {name!r} exists: remove it first, or pass --replace")
    click.echo(
        f"added {name}"
        + ("" if bus.supervisor_running() else " (no supervisor runs: start `fervi up` or `fervi cameras supervise`)")
    )


@cameras.command("remove")
@click.argument("names", nargs=-1, required=True)
def cameras_remove(names: tuple[str, ...]) -> None:
    """Stop running the cameras NAMES (their charts and tracks stay)."""
    from fervi.bus import Bus, connect
    from fervi.protocol import ProtocolError, check_camera

    bus = Bus(connect(_redis_url(_settings())))
    missing = []
    for name in names:
        try:
            removed = bus.remove_source(check_camera(name))
        except ProtocolError as err:
            raise click.UsageError(str(err)) from None
        if removed:
            click.echo(f"removed {name}")
        else:
            missing.append(name)
    if missing:
        raise click.ClickException(f"not registered: {', '.join(missing)} (see `fervi cameras list`)")


@cameras.command("supervise")
@click.option("--metrics-port", type=int, help="Port for /healthz and /metrics (default FERVI_METRICS_PORT).")
def cameras_supervise(metrics_port: int | None) -> None:
    """Run an ingest for each registered camera, restart those that fail, stop those removed."""
    from fervi.ingest.supervisor import run_supervisor

    settings = _settings()
    sys.exit(run_supervisor(settings, _redis_url(settings), metrics_port))


@main.command()
@click.option("--metrics-port", type=int, help="Port for /healthz and /metrics (default FERVI_METRICS_PORT).")
def worker(metrics_port: int | None) -> None:
    """Detect faces and classify emotions for every camera (joins the consumer group)."""
    from fervi.workers.worker import run_worker

    settings = _settings()
    sys.exit(run_worker(settings, _redis_url(settings), metrics_port))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quick", is_flag=True, help="Fewer frames and shorter runs.")
@click.option("--save", type=click.Path(dir_okay=False), help="Also write the JSON to this file.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="FER-2013 CSV whose PublicTest rows both classifiers are scored on (default: "
    "FERVI_FER2013_CSV; neither: no accuracy is measured).",
)
@click.option("--no-peer", is_flag=True, help="Skip the side-by-side run of the `fer` package.")
def bench(as_json: bool, quick: bool, save: str | None, data: str | None, no_peer: bool) -> None:
    """Speed, latency and scaling of this machine, side by side with the `fer` package (own venv).

    Classifier faces/s (batch 1, 8, 32), detector ms per 640x480 frame, one real worker's frames/s
    (1 and 4 faces), 2-worker scaling, capture-to-tracks latency at 4 live cameras, memory, tracking
    flip rate, and the peer's frames/s and PublicTest accuracy.
    """
    from fervi.bench.harness import run_bench

    settings = _settings()
    data = data or settings.fer2013_csv or None
    if data and not Path(data).is_file():
        raise click.BadParameter(f"{data}: no such file (FERVI_FER2013_CSV)", param_hint="--data")
    with redis_for_command(settings) as url:
        report = run_bench(settings, url, quick, data, peer=not no_peer)
    text = json.dumps(report, indent=None if as_json else 2)
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        Path(save).write_text(json.dumps(report, indent=2) + "\n")
    click.echo(text)


@main.command("demo-video")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--frames", default=120, show_default=True, type=click.IntRange(1))
@click.option("--fps", default=10.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--faces", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--size", default="640x480", show_default=True, help="WIDTHxHEIGHT")
def demo_video(path: str, frames: int, fps: float, faces: int, size: str) -> None:
    """Write a demo video of real face photos (shipped in wheels) moving across the frame."""
    from fervi.demo import write_video

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{size!r}: expected WIDTHxHEIGHT", param_hint="--size") from None
    click.echo(write_video(path, frames, fps, width, height, faces))


def _library_logs_quiet(verbose: bool) -> None:
    """`analyze` and `evaluate` talk to a person: INFO lines of library code (a job submitted, a model loaded)
    go only where asked for (--verbose, --log-level, FERVI_LOG_LEVEL); warnings and errors always show."""
    from click.core import ParameterSource

    root = logging.getLogger()
    if not verbose and os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2":  # FERVI's default (`setup_logging`)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # nor TensorFlow's C++ errors of no consequence ("cuInit")
    if verbose:
        root.setLevel(min(root.level, logging.INFO))
    elif click.get_current_context().find_root().get_parameter_source("log_level") == ParameterSource.DEFAULT:
        root.setLevel(max(root.level, logging.WARNING))


def _terminal_bar(**options: Any) -> Any:
    """tqdm's bar on stderr, off where stderr is no terminal (CI logs), as its disable=None is. A terminal
    that reports no size (a fresh pty, `docker exec -t`) is taken as 80x24: tqdm would print nothing at all
    for its 0 rows (and no bar for its 0 columns)."""
    from tqdm import tqdm

    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # no terminal, or no file behind sys.stderr (tests)
        size = None
    if size is not None and (size.columns == 0 or size.lines == 0):
        options = {"ncols": 80, "nrows": 24, **options}
    return tqdm(disable=None, **options)


@main.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out", default="out", show_default=True, type=click.Path(file_okay=False), help="Outputs go to OUT/<video stem>/."
)
@click.option(
    "--segments",
    default=0,
    type=click.IntRange(0),
    help="Segments per video, analysed in parallel (default: one per RQ worker, at least 2).",
)
@click.option("--every", default=1, show_default=True, type=click.IntRange(1), help="Analyse every K-th frame.")
@click.option(
    "--detect-every",
    type=click.IntRange(1),
    help="Run the face detector on every N-th analysed frame and interpolate the boxes between; every "
    "analysed frame is still classified (default: keyframes 0.1 s of video apart, 3 at 30 fps; "
    "1: detect on every frame).",
)
@click.option(
    "--workers",
    "rq_workers",
    type=click.IntRange(1),
    help="RQ workers to start when using the embedded Redis (default: one per core).",
)
@click.option("--no-wait", is_flag=True, help="Enqueue (FERVI_REDIS_URL must be set), print job ids, return.")
@click.option("--verbose", "-v", is_flag=True, help="Show the INFO log lines too (as FERVI_LOG_LEVEL=INFO does).")
def analyze(
    videos: tuple[str, ...],
    out: str,
    segments: int,
    every: int,
    detect_every: int | None,
    rq_workers: int | None,
    no_wait: bool,
    verbose: bool,
) -> None:
    """Analyse video files offline as RQ jobs: faces.csv, summary.json, annotated.mp4, timeline.png."""
    from fervi.app.stack import running_stack
    from fervi.bus import Bus
    from fervi.offline.jobs import QUEUE
    from fervi.offline.runner import submit_all
    from fervi.service import stop_processes

    _library_logs_quiet(verbose)
    settings = _settings()
    missing = [v for v in videos if not Path(v).is_file()]
    if missing:
        raise click.ClickException(f"no such file: {', '.join(missing)}")
    stack = None if settings.redis_url else running_stack(settings.home)
    if stack is not None:  # its Redis and its RQ worker: a second server must not open the same data folder
        settings = settings.replace(redis_url=stack["redis"])
        click.echo(f"using the running `fervi up` (pid {stack['pid']}): its Redis and RQ worker", err=True)
    if no_wait and not settings.redis_url:
        raise click.UsageError("--no-wait needs FERVI_REDIS_URL: the embedded Redis ends with this command")
    workers = rq_workers or (os.cpu_count() or 1)
    segments = segments or max(2, workers)
    click.echo(
        f"outputs: {Path(out).resolve()}/<video name>/ (faces.csv, summary.json, annotated.mp4, timeline.png)", err=True
    )
    with redis_for_command(settings) as url:
        url = _jobs_url(settings, url)
        bus = Bus.from_url(url)
        queue = bus.queue(QUEUE)
        procs = [] if settings.redis_url else _start_rq_workers(url, workers, Path(settings.home) / "logs")
        try:
            states = submit_all(queue, list(videos), out, segments, every, detect_every)
            if no_wait:
                for state in states:
                    ids = [job.id for job in state.submitted.jobs] if state.submitted else []
                    click.echo(json.dumps({"video": state.video, "jobs": ids, "error": state.error or None}))
                return
            _follow_with_bar(states, queue)
        finally:
            stop_processes(procs)
    failed = 0
    for state in states:
        if state.error:
            failed += 1
            click.echo(f"{state.video}: failed: {state.error}", err=True)
        else:
            click.echo(
                f"{state.video}: {state.result.get('face_rows', 0)} face rows, "
                f"{state.result.get('tracks', 0)} tracks -> {state.result.get('out')}"
            )
    sys.exit(1 if failed else 0)


def _follow_with_bar(states: list[Any], queue: Any) -> None:
    """Follow the videos' jobs to their end with a bar of frames: those analysed of all the videos' frames,
    then a second bar of those drawn into annotated.mp4 (a frame is the unit a user knows from the video);
    log lines print above the bars. Ctrl-C stops the jobs."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from fervi.offline.runner import FramesDone, cancel, follow

    frames = sum(state.frames for state in states)
    bars = [_terminal_bar(total=frames, unit="frame", desc="analyse")] if frames else []

    def progress(done: FramesDone) -> None:
        if len(bars) == 1 and done.analysed >= done.frames:
            bars[0].update(done.frames - bars[0].n)
            bars[0].close()  # left on the screen, full
            bars.append(_terminal_bar(total=done.frames, unit="frame", desc="annotate"))
        if bars:
            bars[-1].update(max(0, (done.analysed if len(bars) == 1 else done.annotated) - bars[-1].n))

    try:
        with logging_redirect_tqdm():
            follow(states, queue, progress)
    except KeyboardInterrupt:
        cancel(states)
        raise click.Abort() from None
    finally:
        for bar in bars:
            bar.close()


@main.command("rq-worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def rq_worker(burst: bool) -> None:
    """Run an RQ worker for offline video jobs (plain `rq worker fervi-video` works too)."""
    from fervi.offline.runner import rq_worker as run

    settings = _settings()
    sys.exit(run(_jobs_url(settings, _redis_url(settings)), burst))


@main.command()
@click.option("--host", help="Address to bind (default FERVI_DASHBOARD_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default FERVI_DASHBOARD_PORT, 8000).")
def dashboard(host: str | None, port: int | None) -> None:
    """Serve the dashboard (Gunicorn): live wall, browser camera, acting challenge, charts, image mode, videos."""
    from fervi.dashboard.app import ExposureError, check_exposure, run_dashboard

    settings = _settings()
    host = host or settings.dashboard_host
    try:
        check_exposure(host, settings.dashboard_token)
    except ExposureError as err:
        raise click.ClickException(str(err)) from None
    port = settings.dashboard_port if port is None else port
    _check_port(host, port)
    sys.exit(run_dashboard(settings, _redis_url(settings), host, port, settings.dashboard_token))


@main.command()
@click.option(
    "--shard",
    default="0/1",
    show_default=True,
    metavar="I/N",
    help="Track the cameras whose stable hash modulo N is I (run N trackers to share cameras).",
)
@click.option("--metrics-port", type=int, help="Port for /healthz and /metrics (default FERVI_METRICS_PORT).")
def tracker(shard: str, metrics_port: int | None) -> None:
    """Give faces stable track ids, smooth their emotions, keep per-camera statistics."""
    from fervi.tracker.service import run_tracker

    try:
        index, count = (int(v) for v in shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{shard!r}: expected I/N with 0 <= I < N", param_hint="--shard") from None
    settings = _settings()
    sys.exit(run_tracker(settings, _redis_url(settings), index, count, metrics_port))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """List live FERVI processes (by heartbeat) and each camera's backlog and counters."""
    from fervi.bus import Bus, connect, is_cluster_url

    settings = _settings()
    url = _redis_url(settings)
    jobs_url = settings.rq_redis_url or ("" if is_cluster_url(url) else url)  # RQ's workers are listed from there
    bus = Bus(connect(url), jobs=connect(jobs_url) if jobs_url else None)
    from fervi.clock import clock_warning

    refusal = bus.write_refusal()
    cameras = bus.cameras()
    clocks = {c: clock_warning(s) for c, s in bus.source_states(cameras).items()}
    state: dict[str, Any] = {
        "redis": refusal or "ok",
        "processes": {**bus.processes(), **(bus.rq_workers() if jobs_url else {})},
        "cameras": {
            c: {
                "backlog": bus.backlog(c),
                "last_frame_at": bus.last_frame_at(c),
                **bus.stats(c),
                **({"clock": clocks[c]} if clocks.get(c) else {}),
            }
            for c in cameras
        },
    }
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    now = time.time()
    if refusal:  # no process can write its heartbeat then: the list below is short for that reason
        click.echo(f"warning: Redis {refusal}: every process waits until it takes writes again")
    click.echo(f"{len(state['processes'])} process(es)")
    for name, info in sorted(state["processes"].items(), key=lambda item: (item[1].get("kind", ""), item[0])):
        click.echo(
            f"  {info.get('kind', '?'):<10} {name}  "
            + " ".join(_human(k, v, now) for k, v in sorted(info.items()) if k != "kind")
        )
    click.echo(f"{len(state['cameras'])} camera(s) with data (live ones first)")
    recent = sorted(state["cameras"].items(), key=lambda item: -float(item[1]["last_frame_at"] or 0))
    for name, info in recent:
        last = float(info.pop("last_frame_at") or 0)
        seen = f"last frame {_ago(max(0.0, now - last))} ago" if last else "no frame tracked yet"
        clock = info.pop("clock", "")
        click.echo(f"  {name}  {seen}  " + " ".join(f"{k}={v}" for k, v in sorted(info.items())))
        if clock:
            click.echo(f"    warning: {clock}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON line per image.")
def predict(images: tuple[str, ...], as_json: bool) -> None:
    """Find faces in still images and label their emotions."""
    from fervi.emotions import EMOTIONS
    from fervi.vision.images import ImageError, decode_image, read_image_file
    from fervi.vision.pipeline import FacePipeline

    settings = _settings()
    pipeline = FacePipeline.from_settings(settings)
    failed = 0
    for path in images:
        try:
            image = decode_image(read_image_file(path, settings.max_image_bytes), settings.max_frame_pixels)
        except (OSError, ImageError) as err:
            failed += 1
            message = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            message = message.removeprefix(f"{path}: ")  # the line names the file once
            if as_json:
                click.echo(json.dumps({"image": path, "error": message}))
            else:
                click.echo(f"{path}: error: {message}", err=True)
            continue
        faces = pipeline.analyze([image])[0]
        items = [
            {
                "box": [int(round(v)) for v in box],
                "label": label,
                "score": round(float(p.max()), 4),
                "probabilities": {e: round(float(v), 4) for e, v in zip(EMOTIONS, p, strict=True)},
            }
            for box, p, label in zip(faces.boxes, faces.label_probs, faces.labels, strict=True)
        ]
        if as_json:
            click.echo(json.dumps({"image": path, "faces": items}))
        else:
            click.echo(f"{path}: {len(items)} face(s)")
            for item in items:
                click.echo(f"  box={item['box']} {item['label']} {item['score']:.2f}")
    sys.exit(1 if failed else 0)


@main.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Dataset: FER-2013 CSV (.csv/.csv.gz), FER image folders, or CK+ emotion folders. "
    "Repeatable; the first selects the model on its validation split.",
)
@click.option("--model", "model_name", default=TRAIN.model, show_default=True, help="Architecture name.")
@click.option("--epochs", default=TRAIN.epochs, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=TRAIN.batch_size, show_default=True, type=click.IntRange(1))
@click.option(
    "--learning-rate", default=TRAIN.learning_rate, show_default=True, type=float, help="Peak rate (warm-up, cosine)."
)
@click.option("--label-smoothing", default=TRAIN.label_smoothing, show_default=True, type=float)
@click.option(
    "--oversample",
    "oversample_min_share",
    default=TRAIN.oversample_min_share,
    show_default=True,
    type=float,
    help="Repeat training faces of small classes up to this share of the largest class (0: off).",
)
@click.option(
    "--weight-decay",
    default=TRAIN.weight_decay,
    show_default=True,
    type=click.FloatRange(0),
    help="AdamW's weight decay (0: Adam).",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENTATIONS),
    default=TRAIN.augment,
    show_default=True,
    help="Training-split augmentation: flip, rotation, zoom, shift and light (full), mirror images "
    "only (flip, for gentle fine-tunes), or none.",
)
@click.option(
    "--framing",
    type=click.Choice(FRAMINGS),
    default=TRAIN.framing,
    show_default=True,
    help="detector: frame every split's faces through the workers' default detector and crop margin, "
    "as live faces are framed (faces it misses keep their crop); both: that, and each training "
    "face shown in its dataset crop or the detector's at random every epoch; dataset: the "
    "datasets' own crops.",
)
@click.option(
    "--agreement",
    default=TRAIN.agreement,
    show_default=True,
    type=click.FloatRange(0),
    help="Teach labels that do not swing with the framing: each batch shows every training face in "
    "two framings (crop margins within 0.1 of the workers', or its dataset crop) and the loss "
    "adds this weight x the divergence between their predictions (0: off).",
)
@_votes_options(
    TRAIN.votes,
    "With votes the model learns each face's vote distribution and is selected on agreement with the crowd's majority.",
    "Learn the CSV's own single labels even where votes exist.",
)
@click.option(
    "--posed-repeat",
    default=TRAIN.posed_repeat,
    show_default=True,
    type=click.IntRange(1),
    help="Show each training face of the posed datasets (every --data after the first: CK+) this many times an epoch.",
)
@click.option("--patience", default=TRAIN.patience, show_default=True, help="Early stopping patience in epochs.")
@click.option("--seed", default=TRAIN.seed, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --work-dir from its last epoch.")
@click.option("--skip-bad", is_flag=True, help="Skip and count malformed rows instead of failing.")
@click.option("--include-contempt", is_flag=True, help="Keep CK+ contempt faces (as disgust).")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N training faces (smoke runs).")
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    help="Start from this trained .keras model's weights (same architecture): continue or fine-tune.",
)
@click.option(
    "--select",
    type=click.Choice(["best", "last"]),
    default=TRAIN.select,
    show_default=True,
    help="Checkpoint to export: best validation accuracy (single view), or the last epoch.",
)
@click.option("--export-only", is_flag=True, help="Export the run in --work-dir again, without training.")
@click.option("--note", default=TRAIN.note, help="A note on the run for the model card (resumed, shared machine...).")
@click.option(
    "--device-pack",
    type=click.Path(file_okay=False),
    help="Write the split, over-sampled training data to this folder for training/gpu_train.py "
    "(PyTorch, on a GPU machine) and stop.",
)
@click.option(
    "--from-torch",
    type=click.Path(exists=True, dir_okay=False),
    help="Import a training/gpu_train.py run (.npz) instead of training here, then export it.",
)
@_output_option("--out", TRAIN.out, "Where the trained model, TFLite export, card and figures go.", folder=True)
@_output_option("--work-dir", TRAIN.work_dir, "Checkpoints, backups and logs of the run.", folder=True)
def train(data: tuple[str, ...], model_name: str, **options: Any) -> None:
    """Train the emotion classifier honestly (split first, augment the training split only), export to --out."""
    from fervi.training.datasets import DatasetError
    from fervi.training.trainer import train as run_training

    try:
        card = run_training(TrainConfig(data=list(data), model=model_name, **options))
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    if "device_pack" in card:
        click.echo(json.dumps(card))
        return
    val = card["metrics"]["validation_flip_averaged"]
    click.echo(
        json.dumps({"out": options["out"], "accuracy": val["accuracy"], "macro_f1": val["macro_f1"], "n": val["n"]})
    )


@main.command()
@click.option("--data", type=click.Path(exists=True), help="Dataset of face crops to evaluate the classifier on.")
@click.option(
    "--images",
    type=click.Path(exists=True),
    help="Labelled photos (one folder per emotion, or a CSV of path,label): the whole chain, detector "
    "included, is evaluated.",
)
@click.option(
    "--usage",
    default="PublicTest",
    show_default=True,
    help="Rows of this Usage (ignored when the data has no Usage column: all rows).",
)
@click.option(
    "--model",
    "model_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A .tflite or .keras model (default: the shipped TFLite model).",
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N rows of the selection.")
@click.option(
    "--flip/--no-flip",
    default=None,
    help="Average each face with its mirror image, or not (default: as the workers, FERVI_FLIP_AVERAGE).",
)
@click.option("--skip-bad", is_flag=True, help="Skip and count malformed rows instead of failing.")
@_output_option("--confusion-png", ".fervi/eval/confusion_matrix.png", "Where to write the confusion matrix figure.")
@_votes_options(
    "auto",
    "With votes, the faces people could label are scored against the crowd's majority and the original labels "
    "side by side, with calibration (ECE).",
    "Score against the CSV's own labels only.",
)
@_output_option(
    "--reliability-png", ".fervi/eval/reliability.png", "Where to write the reliability diagram (with votes)."
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@click.option("--verbose", "-v", is_flag=True, help="Show the INFO log lines too (as FERVI_LOG_LEVEL=INFO does).")
def evaluate(
    data: str | None,
    images: str | None,
    usage: str,
    model_file: str | None,
    limit: int | None,
    flip: bool | None,
    skip_bad: bool,
    confusion_png: str,
    votes: str | None,
    reliability_png: str,
    as_json: bool,
    verbose: bool,
) -> None:
    """Accuracy, macro-F1, per-class metrics, confusion matrix, parameters and faces/s of a model; with crowd
    votes, agreement with people beside agreement with the original labels.

    With --images: faces found, accuracy, macro-F1, per-class recall and results per face size on your own
    labelled photos, through detection, cropping and classification as the workers run them."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from fervi.training.datasets import DatasetError
    from fervi.training.evaluate_cli import evaluate_model

    _library_logs_quiet(verbose)
    settings = _settings()
    if images and not data:
        _evaluate_images(images, settings, model_file, flip, confusion_png, as_json)
        return
    if not data or images:
        raise click.UsageError("give exactly one of --data (face crops) or --images (labelled photos)")
    try:
        flip = settings.flip_average if flip is None else flip
        with logging_redirect_tqdm():  # log lines print above the bars
            report = evaluate_model(
                data,
                usage,
                model_file,
                settings.models,
                limit,
                flip,
                skip_bad,
                confusion_png,
                votes,
                reliability_png,
                make_bar=_terminal_bar,
            )
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{report['n']} faces ({report['selection']}), model {report['model']} ({report['params']:,} params), "
        f"{'flip-averaged' if flip else 'single view'}"
    )
    if "crowd" in report:
        _echo_crowd(report)
    else:
        click.echo(
            f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  {report['faces_per_s']:.0f} faces/s"
        )
    click.echo(f"{'emotion':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>6}")
    for name, m in report["per_class"].items():
        click.echo(f"{name:<10} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>6}")
    click.echo(f"confusion matrix: {report['confusion_png']}")


def _echo_crowd(report: dict[str, Any]) -> None:
    """Agreement with the crowd and with the original labels, side by side."""
    crowd, original = report["crowd"], report["original_labels"]
    for note in report["notes"]:
        click.echo(note)
    click.echo(f"{'':<34} {'crowd majority':>15} {'original label':>15}")
    click.echo(f"{'accuracy':<34} {crowd['majority_accuracy']:>15.4f} {crowd['original_label_accuracy']:>15.4f}")
    click.echo(f"{'macro-F1':<34} {report['macro_f1']:>15.4f} {original['macro_f1']:>15.4f}")
    paper = crowd["paper_protocol"]
    click.echo(
        f"accuracy as the FER+ paper scored it (single votes dropped, {paper['n']} faces with an emotion over "
        f"half the rest): {paper['accuracy']:.4f}"
    )
    click.echo(
        f"mean probability given to the crowd's votes {crowd['mean_probability_of_votes']:.4f}; "
        f"expected calibration error {crowd['calibration_vs_majority']['ece']:.4f}; "
        f"{report['faces_per_s']:.0f} faces/s"
    )
    click.echo(
        "share of each emotion, predicted / crowd's majority: "
        + ", ".join(
            f"{name} {share['predicted']:.1%} / {share['crowd']:.1%}" for name, share in crowd["shares"].items()
        )
    )
    click.echo(f"reliability diagram: {report['reliability_png']}")
    click.echo("per class, against the crowd's majority:")


def _evaluate_images(
    images: str, settings: Settings, model_file: str | None, flip: bool | None, confusion_png: str, as_json: bool
) -> None:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from fervi.training.datasets import DatasetError
    from fervi.training.evaluate_images import evaluate_images, skipped_folders
    from fervi.vision.classifier import MODEL_KERAS, MODEL_TFLITE
    from fervi.vision.pipeline import FacePipeline

    changes: dict[str, object] = {"flip_average": flip} if flip is not None else {}
    if model_file:
        if Path(model_file).name not in (MODEL_TFLITE, MODEL_KERAS):
            raise click.UsageError(f"with --images, --model must be a folder's {MODEL_TFLITE} or {MODEL_KERAS}")
        changes["model_dir"] = str(Path(model_file).parent)
    settings = settings.replace(**changes)
    for skipped in skipped_folders(images):
        click.echo(f"skipped {skipped}", err=True)
    try:
        pipeline = FacePipeline.from_settings(settings)
        with logging_redirect_tqdm():  # log lines print above the bar
            report = evaluate_images(
                images,
                pipeline,
                settings.max_frame_pixels,
                settings.max_image_bytes,
                confusion_png,
                lambda photos: _terminal_bar(iterable=photos, desc="detect and classify", unit="image"),
            )
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(report))
        return
    for item in report["unreadable"]:
        click.echo(f"skipped {item['path']}: {item['error']}", err=True)
    click.echo(
        f"{report['evaluated']} images, faces found in {report['faces_found']} ({report['found_rate']:.1%}); "
        f"detector {settings.detector}"
    )
    click.echo(
        f"accuracy {report['accuracy']:.4f} (a photo without a face counts as wrong), "
        f"on found faces {report['accuracy_of_found']:.4f}, macro-F1 {report['macro_f1_of_found']:.4f}"
    )
    click.echo(f"{'emotion':<10} {'recall':>7}")
    for name, recall in report["per_class_recall"].items():
        if recall is not None:
            click.echo(f"{name:<10} {recall:>7.3f}")
    for bucket in report["by_face_width"]:
        click.echo(
            f"faces {bucket['face_width_px']:>9} px wide: {bucket['faces']:>5} faces, accuracy {bucket['accuracy']:.3f}"
        )
    click.echo(f"confusion matrix: {report['confusion_png']}")


if __name__ == "__main__":
    main()
