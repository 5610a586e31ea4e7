"""The ``glasscast`` command.

    glasscast up [--data-dir DIR] [--http-port N] [--rtmp-port N]   run the platform
    glasscast status                                                what runs
    glasscast run {gateway,processors,registry}                     one service (compose)
    glasscast topics list                                           topics and counts
    glasscast tail TOPIC [--from-beginning | --since T] [--json]    follow a topic
    glasscast export TOPIC --out FILE.avro                          topic to an Avro file
    glasscast rebuild-views                                         replay the log into views
    glasscast settings                                              every GLASSCAST_ variable
    glasscast sql "SELECT ..." [--format table|csv|json]            read-only SQL over the analytics store

Settings come from GLASSCAST_* variables; flags override them.  Tools find a
running embedded platform through the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import InfraError
from infra.logs import configure_logging
from infra.runstate import resolve
from infra.settings import Settings, env_names, load_settings
from topics.errors import TopicsError

if TYPE_CHECKING:
    from topics.serde import AvroSerde


# Services `glasscast run` knows (each is a container in infra/docker-compose.yml).
SERVICES = ("gateway", "processors", "registry", "ingest", "media-worker", "analytics")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glasscast", description="Glasscast live streaming platform")
    parser.add_argument("--data-dir", type=Path, help="data directory (GLASSCAST_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole platform on this machine")
    up.add_argument("--data-dir", type=Path, dest="data_dir_up")
    up.add_argument("--http-port", type=int, help="gateway port (default 8080)")
    up.add_argument("--rtmp-port", type=int, help="RTMP ingest port (default 1935)")

    sub.add_parser("status", help="show what runs")
    run = sub.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", choices=list(SERVICES))

    topics = sub.add_parser("topics", help="topic tools")
    topics.add_argument("action", choices=["list"])

    tail = sub.add_parser("tail", help="follow a topic")
    tail.add_argument("topic")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true")
    start.add_argument("--since", help="ISO 8601 time, epoch ms, or e.g. 15m, 2h")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--exit-at-end", action="store_true", help="stop at the end of the topic")
    tail.add_argument("--max-messages", type=int, default=0)

    export = sub.add_parser("export", help="write a topic to an Avro object container file")
    export.add_argument("topic")
    export.add_argument("--out", required=True)

    sub.add_parser("rebuild-views", help="drop the views and replay the log into them")
    sub.add_parser("videos", help="list the videos kept and the storage their objects use")

    live = sub.add_parser("go-live", help="push a synthetic test stream (moving bars and a tone)")
    live.add_argument("--key", help="stream key of an existing channel (default: create a demo channel)")
    live.add_argument("--seconds", type=float, default=120.0)
    live.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    live.add_argument("--fps", type=int, default=30)
    live.add_argument("--url", help="RTMP server URL (default: the running platform's)")
    sub.add_parser("settings", help="list every GLASSCAST_ setting")
    sql = sub.add_parser("sql", help="run read-only SQL (SELECT, WITH, SHOW, DESCRIBE) over the analytics store")
    sql.add_argument("statement")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sub.add_parser("kcat", help="run the system's kcat against the platform's broker "
                                "(the arguments after it are kcat's)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(os.environ)
    data_dir = getattr(args, "data_dir_up", None) or args.data_dir
    if data_dir:
        settings = replace(settings, data_dir=data_dir)
    if getattr(args, "http_port", None):
        settings = settings.with_section("gateway", port=args.http_port)
    if getattr(args, "rtmp_port", None):
        settings = settings.with_section("ingest", rtmp_port=args.rtmp_port)
    return settings


def _serde(settings: Settings) -> AvroSerde:
    from topics.runtime import make_serde  # imported late: `glasscast up` never loads the Avro stack

    return make_serde(settings)


def _freeze_heap() -> None:
    """Keep what a server has built before it serves (modules, its app) out of the garbage collector's scans.

    A full collection walks every tracked object; in a gateway that is the whole import graph, and answering a
    report of 10,000 minutes allocates enough to set one off mid-request (the tail of bench/analytics.py's
    channel-week latency).  Frozen objects are never collected, which is what they would be anyway.
    """
    gc.collect()
    gc.freeze()


def _run_service(settings: Settings, service: str) -> int:
    configure_logging(settings.log, service)
    if service == "gateway":
        from gateways.app import WEBSOCKET_OPTIONS, create_app
        from gateways.drain import serve_gateway
        from gateways.http_deadlines import http_options

        # SIGTERM drains first (chat sockets told to reconnect over the window, requests in flight
        # finished), then uvicorn shuts down as usual: gateways/drain.py.
        gateway = create_app(settings)
        _freeze_heap()
        serve_gateway(gateway, settings.gateway.host, settings.gateway.port,
                      settings.gateway.drain_window_s, **WEBSOCKET_OPTIONS,
                      **http_options(settings.gateway))  # header, body and keep-alive deadlines
    elif service == "media-worker":
        from media.transcode.service import serve_worker

        asyncio.run(serve_worker(settings))
    elif service == "ingest":
        from media.ingest.service import serve_ingest

        asyncio.run(serve_ingest(settings))
    elif service == "analytics":
        from processors.analytics.service import serve_analytics

        _freeze_heap()
        serve_analytics(settings)
    elif service == "registry":
        from infra.embedded.registry.app import serve_registry

        serve_registry(settings)
    elif service == "processors":
        import mode.loop
        from faust import Worker

        mode.loop.use("uvloop")  # before the worker makes its loop: as the gateway's uvicorn does

        from processors.app import build_processors
        from topics.admin import ensure_topics

        ensure_topics(settings.kafka)
        app = build_processors(settings, _serde(settings))
        Worker(app, loglevel=settings.log.level.lower(), quiet=True,
               override_logging=False).execute_from_commandline()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if "kcat" in argv:  # everything after it is kcat's own command line, options included
        at = argv.index("kcat")
        argv, passed = argv[: at + 1], argv[at + 1:]
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "up":
            from infra.supervisor import run_up

            configure_logging(settings.log, "supervisor")
            return run_up(settings)
        if args.command == "status":
            from infra.supervisor import status

            info = status(settings.data_dir)
            print(json.dumps(info, indent=2))
            return 0 if info["running"] else 3
        if args.command == "settings":
            for name in sorted(env_names()):
                print(name)
            return 0
        if args.command == "run":
            return _run_service(settings, args.service)
        if args.command == "kcat":
            return _kcat(settings, passed)
        configure_logging(replace(settings.log, level="WARNING"), "cli")
        if args.command == "go-live":
            return _go_live(settings, args)
        if args.command == "sql":
            return _sql(settings, args)
        settings = resolve(settings)
        return _tool(settings, args)
    except (InfraError, TopicsError) as exc:
        print(f"glasscast: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _tool(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "topics":
        from topics.admin import list_topics

        print(f"{'TOPIC':32} {'PARTITIONS':>10} {'MESSAGES':>10}")
        for info in list_topics(settings.kafka):
            print(f"{info.name:32} {info.partitions:>10} {info.messages:>10}")
        return 0
    if args.command == "tail":
        from topics.tools import parse_since, print_events, read_topic

        since = parse_since(args.since, time.time()) if args.since else None
        serde = _serde(settings)
        events = read_topic(settings.kafka, serde, args.topic,
                            start="beginning" if args.from_beginning else "end",
                            since_ms=since, exit_at_end=args.exit_at_end)
        if args.max_messages:
            import itertools

            events = itertools.islice(events, args.max_messages)
        print_events(events, serde, args.json, lambda line: print(line, flush=True))
        return 0
    if args.command == "export":
        from topics.tools import export_topic

        count = export_topic(settings.kafka, _serde(settings), args.topic, args.out)
        print(f"exported {count} events of {args.topic} to {args.out}")
        return 0
    if args.command == "rebuild-views":
        from processors.rebuild import rebuild_views

        report = asyncio.run(rebuild_views(settings, _serde(settings)))
        print(f"dropped {report.dropped_keys} view keys; replayed {report.events} events")
        return 0
    if args.command == "videos":
        from media.vod.report import format_report, storage_report

        for line in format_report(asyncio.run(storage_report(settings))):
            print(line)
        return 0
    raise AssertionError(args.command)


def _sql(settings: Settings, args: argparse.Namespace) -> int:
    from infra.analytics_sql import sql_command
    from infra.runstate import resolve_analytics
    from views.analytics.errors import AnalyticsError

    try:
        print(sql_command(resolve_analytics(settings), args.statement, args.format), end="")
    except AnalyticsError as exc:
        print(f"glasscast sql: {exc}", file=sys.stderr)
        return 2
    return 0


def _kcat(settings: Settings, args: list[str]) -> int:
    """Run the system's kcat (infra/kcat.py says why through confluent-kafka's librdkafka)."""
    import subprocess

    from infra.kcat import bundled_librdkafka, find_kcat, kcat_argv, kcat_env, library_dir
    from infra.runstate import read_state

    if find_kcat() is None:
        raise InfraError("kcat is not installed (Debian: apt-get install kcat)")
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        state = read_state(settings.data_dir)
        if state is None:
            raise InfraError("no running platform found: start `glasscast up`, or set "
                             "GLASSCAST_KAFKA_BOOTSTRAP_SERVERS, or give kcat -b")
        bootstrap = state.bootstrap_servers
    library = bundled_librdkafka()
    lib_dir = library_dir(settings.data_dir, library) if library is not None else None
    return subprocess.call(kcat_argv(args, bootstrap), env=kcat_env(os.environ, lib_dir))


def _go_live(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    import httpx

    from infra.runstate import read_state
    from media.testpattern import Pattern, push

    state = read_state(settings.data_dir)
    base = args.url or (state.rtmp_url if state else settings.rtmp_url)
    key = args.key
    if key is None:
        if state is None:
            raise InfraError("give --key, or start `glasscast up` so a demo channel can be created")
        name = f"demo_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        with httpx.Client(base_url=state.gateway_url, timeout=30) as api:
            api.post("/v1/users", json={"username": name, "password": password}).raise_for_status()
            token = api.post("/v1/auth/login", json={"username": name, "password": password}).json()
            made = api.post("/v1/channels", json={"name": name, "title": "Glasscast test pattern"},
                            headers={"Authorization": f"Bearer {token['access_token']}"})
            made.raise_for_status()
            key = made.json()["stream_key"]
        print(f"created channel {name} (user {name}, password {password})")
        print(f"  {state.gateway_url}/v1/channels/{name}")
    width, _, height = args.size.partition("x")
    print(f"publishing {args.seconds:.0f} s of test pattern to {base}/<key> (Ctrl-C stops)", flush=True)
    frames = push(f"{base.rstrip('/')}/{key}", args.seconds, Pattern(width=int(width), height=int(height),
                                                                       fps=args.fps))
    print(f"sent {frames} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
