"""Command line: ``uptimewatch run | check-config | probe | profiles check | demo``.

Each subcommand's work lives in the module that owns it; this file only parses arguments, so
``uptimewatch --help`` stays fast and a broken optional part cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .redact import install_log_redaction

Handler = Callable[[argparse.Namespace], int]


def _lazy(target: str) -> Handler:
    module_name, _, func_name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # a dependency that cannot be imported (an install with --no-deps, a broken wheel): one
            # line with the cure, not a traceback
            from .config.capabilities import missing_dependency

            problem = missing_dependency(exc)
            if problem is None:
                raise
            print(f"uptimewatch {args.command}: cannot start: {problem}", file=sys.stderr)
            return 1
        func: Handler = getattr(module, func_name)
        return func(args)

    return run


def _check_config(args: argparse.Namespace) -> int:
    # the same protocols as the daemon: a probes: block of a shipped or installed one is valid
    from .config.loader import cli_check_config
    from .probing.registry import RegistryError, installed

    try:
        models = installed().settings()
    except RegistryError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    return cli_check_config(args, probe_models=models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uptimewatch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"uptimewatch {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the monitoring daemon")
    run.add_argument("-c", "--config", required=True, help="configuration file (YAML)")
    run.add_argument("--listen", help="HOST:PORT for /metrics and the API (default: server.listen)")
    run.set_defaults(handler=_lazy("uptimewatch.app:cli_run"))

    check = sub.add_parser("check-config", help="validate a configuration file; exit 1 on errors")
    check.add_argument("config", help="configuration file (YAML)")
    check.set_defaults(handler=_check_config)

    probe = sub.add_parser("probe", help="poll one device once and print its normalized fields")
    probe.add_argument("target", help="HOST or HOST:PORT")
    probe.add_argument("--community", "-c", default=None, help="SNMP v1/v2c community (default public)")
    probe.add_argument("--snmp-version", "-v", default=None, choices=["1", "2c", "3"])
    probe.add_argument("--v3-user", default=None)
    probe.add_argument("--v3-auth-key", default=None)
    probe.add_argument("--v3-auth-protocol", default="SHA")
    probe.add_argument("--v3-priv-key", default=None)
    probe.add_argument("--v3-priv-protocol", default="AES")
    probe.add_argument("--v3-context", default="")
    probe.add_argument("--profile", default="auto", help="auto (match by sysObjectID) or a profile name")
    probe.add_argument("--profiles-dir", default=None, help="directory of probe profiles (default: shipped)")
    probe.add_argument("--timeout", type=float, default=2.0, help="seconds per SNMP request")
    probe.add_argument("--retries", type=int, default=1)
    probe.add_argument("--icmp", action="store_true", help="also send an ICMP echo burst")
    probe.add_argument("--no-snmp", action="store_true", help="ICMP only")
    probe.add_argument("--json", action="store_true", help="print JSON")
    probe.add_argument(
        "--lang", default=None, choices=["vi", "en"], help="language of the messages (default: from LANG)"
    )
    probe.set_defaults(handler=_lazy("uptimewatch.probing.probe_cli:cli_probe"))

    profiles = sub.add_parser("profiles", help="work with probe profiles")
    profiles_sub = profiles.add_subparsers(dest="profiles_command", required=True, metavar="ACTION")
    pcheck = profiles_sub.add_parser("check", help="validate profile files; exit 1 on errors")
    pcheck.add_argument("paths", nargs="*", help="files or directories (default: shipped probes/)")
    pcheck.set_defaults(handler=_lazy("uptimewatch.profiles:cli_profiles_check"))

    demo = sub.add_parser("demo", help="simulate a province on loopback and monitor it")
    demo.add_argument("--sites", type=int, default=None, help="number of sites (default: a small province)")
    demo.add_argument("--listen", default="127.0.0.1:9847", help="HOST:PORT for the daemon")
    demo.add_argument("--workdir", default=None, help="where the demo writes its config and state")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument(
        "--snmp-port", type=int, default=None, help="UDP port of the simulated devices (default 161 as root)"
    )
    demo.add_argument("--scenario", default=None, help="scenario file (default: WORKDIR/scenario.yaml)")
    demo.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="watch the province with N uptimewatch processes over a local 3-server NATS cluster "
        "(docs/cluster.md); the first listens on --listen, the others on the ports after it",
    )
    demo.add_argument(
        "--kill-leader-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --nodes: kill -9 the leader after SECONDS, report the failover, restart it a minute later",
    )
    demo.set_defaults(handler=_lazy("uptimewatch.demo:cli_demo"))

    report = sub.add_parser("report", help="availability report from the daemon's ledger (docs/reports.md)")
    report.add_argument("-c", "--config", required=True, help="the daemon's configuration file")
    report.add_argument("--db", default=None, help="ledger database (default: the config's storage.path)")
    report.add_argument("--from", dest="start", help="first day (YYYY-MM-DD) or time, province time zone")
    report.add_argument("--to", dest="end", help="last day, included (YYYY-MM-DD), or an end time")
    report.add_argument("--by", choices=["site", "commune", "district", "carrier"], default="site")
    report.add_argument("--format", choices=["md", "csv", "html", "pdf"], default="md")
    report.add_argument("--lang", choices=["vi", "en"], default=None, help="default: province.language")
    report.add_argument("--incidents", action="store_true", help="CSV: the incidents instead of the table")
    period = report.add_mutually_exclusive_group()
    period.add_argument("--critical-period", help="a dated period by name (alerting.critical_periods)")
    period.add_argument("--window", nargs=2, metavar=("START", "END"), help="a critical window of your own")
    report.add_argument("--margin", type=float, default=None, help="hours before/after the critical window")
    report.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")
    report.set_defaults(handler=_lazy("uptimewatch.report.cli:cli_report"))

    cluster = sub.add_parser("cluster", help="several probe nodes as one monitor (docs/cluster.md)")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    cstatus = cluster_sub.add_parser("status", help="the nodes, the leader and who polls how many sites")
    cstatus.add_argument("-c", "--config", required=True, help="the configuration file of any node")
    cstatus.add_argument("--json", action="store_true", help="print JSON, as GET /api/v1/cluster")
    cstatus.set_defaults(handler=_lazy("uptimewatch.cluster.cli:cli_cluster_status"))

    ack = sub.add_parser("ack", help="acknowledge an alert on a running daemon (docs/alerts.md)")
    ack.add_argument("alert_id", help="alert id from /api/v1/alerts, or a unique prefix of it")
    ack.add_argument("--by", required=True, help="who acknowledges (your name)")
    ack.add_argument("--comment", default="", help="what you are doing about it")
    ack.add_argument("--url", default="http://127.0.0.1:9847", help="the daemon's base URL")
    ack.add_argument("--token", default=None, help="bearer token (default: $UPTIMEWATCH_TOKEN)")
    ack.add_argument("--user", default=None, help="basic auth user; password from $UPTIMEWATCH_PASSWORD")
    ack.add_argument("--timeout", type=float, default=10.0, help="seconds")
    ack.set_defaults(handler=_lazy("uptimewatch.alerts.cli:cli_ack"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
