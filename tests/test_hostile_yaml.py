"""Hostile YAML gives a clear error, at once, naming the file and line (and the field where one is
known): alias bombs, recursive aliases, absurd nesting and numbers too long to convert, in the
configuration and in every kind of profile file.

The alias bomb runs ``uptimewatch check-config`` in a child limited to 2 GiB of address space: a
billion laughs that were built (PyYAML shares aliased objects, the walks after it do not) would
die there of MemoryError with a traceback instead of printing its one line.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures.daemon import province_config, write_yaml
from uptimewatch.config.loader import ConfigError, load_config
from uptimewatch.probing.traps import profile_traps
from uptimewatch.profiles import ProfileError, load_profiles
from uptimewatch.profiles.telemetry import TelemetryProfileError, load_telemetry_profiles
from uptimewatch.yaml_limits import MAX_ALIAS_NODES, YamlLimitError, check_graph

ADDRESS_SPACE = 2 * 1024**3


def _laughs(levels: int, indent: str = "") -> str:
    """``levels`` anchors, each a list of ten aliases of the one before: 10**levels leaves."""
    text = f"{indent}a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    prev = "a"
    for name in "bcdefghijk"[: levels - 1]:
        text += f"{indent}{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = name
    return text


def _config_text(device_extra: str = "") -> str:
    site = {
        "id": "s1",
        "name": "Trạm s1",
        "district": "d1",
        "commune": "c1",
        "carrier": "vnpt",
        "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1"}],
    }
    text = yaml.safe_dump(
        province_config([site], listen="127.0.0.1:9847"), allow_unicode=True, sort_keys=False
    )
    assert text.endswith("address: 127.0.0.1\n"), text
    return text + device_extra


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


# -- alias bombs --------------------------------------------------------------------------------


def test_a_billion_laughs_in_the_config_is_one_error_line_not_gigabytes(tmp_path: Path) -> None:
    text = _config_text("    labels:\n" + _laughs(9, indent="      "))
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,  # a guard against a hang, not a speed check (bench/ measures speed)
        preexec_fn=_limit_memory,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    line = _line_of(text, "f: &f")  # where the expansion first passes the limit
    assert done.stderr.splitlines() == [
        f"{path}:{line}: aliases expand this document by more than {MAX_ALIAS_NODES:,} nodes "
        "(an alias bomb?); write the values out, or use the defaults"
    ], (done.stderr, elapsed)


BOMBS = [
    pytest.param("    labels:\n" + _laughs(9, indent="      "), "f: &f", id="sequences"),
    pytest.param(
        "    labels:\n"
        "      a: &a {x0: lol, x1: lol, x2: lol, x3: lol, x4: lol, x5: lol, x6: lol, x7: lol}\n"
        + "".join(
            f"      {n}: &{n} {{" + ", ".join(f"y{i}: *{p}" for i in range(8)) + "}\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "g: &g",
        id="mappings",
    ),
    pytest.param(
        "    labels:\n"
        "      a: &a {x0: lol, x1: lol, x2: lol, x3: lol, x4: lol, x5: lol, x6: lol, x7: lol}\n"
        + "".join(
            f"      {n}: &{n} {{"
            + ", ".join(f"<<: *{p}" if i == 0 else f"y{i}: *{p}" for i in range(8))
            + "}\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "g: &g",
        id="merge-keys",
    ),
]


@pytest.mark.parametrize(("extra", "where"), BOMBS)
def test_alias_bombs_of_every_shape_are_refused_before_they_are_built(
    tmp_path: Path, extra: str, where: str
) -> None:
    text = _config_text(extra)
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line) == (str(path), _line_of(text, where))
    assert issue.message.startswith("aliases expand this document by more than")


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        pytest.param(
            "    labels: &loop\n      again: *loop\n",
            "labels: &loop",
            "the node anchored here contains an alias to itself",
            id="recursive-mapping",
        ),
        pytest.param(
            "    tags: &loop [a, *loop]\n",
            "tags: &loop",
            "the node anchored here contains an alias to itself",
            id="recursive-sequence",
        ),
        pytest.param(
            "    labels: {deep: " + "[" * 150 + "]" * 150 + "}\n",
            "labels: {deep",
            "nested deeper than 100 levels",
            id="flow-nesting",
        ),
        pytest.param(
            "    labels:\n      deep:\n" + "".join("  " * (4 + i) + f"k{i}:\n" for i in range(150)),
            "k93:",
            "nested deeper than 100 levels",
            id="block-nesting",
        ),
    ],
)
def test_structures_without_end_are_refused(tmp_path: Path, extra: str, where: str, message: str) -> None:
    text = _config_text(extra)
    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line) == (str(path), _line_of(text, where))
    assert issue.message.startswith(message), issue.message


def test_aliases_used_the_ordinary_way_still_load(tmp_path: Path) -> None:
    """Hundreds of devices sharing one SNMP block through an anchor stay far below the limit."""
    sites = "sites:\n"
    for n in range(300):
        snmp = "&snmp {version: 2c, community: public, port: 1161}" if n == 0 else "*snmp"
        sites += (
            f"  - id: s{n}\n    name: Trạm {n}\n    district: d1\n    commune: c1\n    carrier: vnpt\n"
            f"    devices:\n      - {{id: bts, role: bts, address: 127.0.0.1, snmp: {snmp}}}\n"
        )
    head = _config_text().split("sites:\n")[0]
    path = tmp_path / "anchors.yaml"
    path.write_text(head + sites, encoding="utf-8")
    loaded = load_config(path)
    assert len(loaded.devices) == 300
    assert {d.snmp.port for d in loaded.devices if d.snmp is not None} == {1161}


def test_the_limit_counts_expansion_beyond_the_nodes_written(tmp_path: Path) -> None:
    """A document of many distinct nodes is no bomb, however large; one that aliases add to by
    just over the limit is."""
    wide = yaml.compose("[" + ", ".join(f"v{i}" for i in range(50_000)) + "]")
    assert wide is not None
    check_graph(wide, max_alias_nodes=10)
    # a is written once and aliased three times: 3 x 5 nodes more
    just_over = yaml.compose("a: &a [1, 2, 3, 4]\nb: [*a, *a, *a]\n")
    assert just_over is not None
    check_graph(just_over, max_alias_nodes=15)
    with pytest.raises(YamlLimitError):
        check_graph(just_over, max_alias_nodes=14)


# -- numbers too long to convert -------------------------------------------------------------------

DIGITS = "9" * 5000

NUMBERS = [
    pytest.param(
        f"    interval: {DIGITS}\n",
        "interval:",
        "sites[s1].devices[bts].interval",
        "number too long (5,000 characters; at most 100)",
        id="int",
    ),
    pytest.param(
        f"    labels:\n      x: -{DIGITS}\n",
        "x: -",
        "sites[s1].devices[bts].labels.x",
        "number too long",
        id="negative-int",
    ),
    pytest.param(
        f"    tags: [a, {DIGITS}]\n",
        "tags:",
        "sites[s1].devices[bts].tags[1]",
        "number too long",
        id="int-in-a-list",
    ),
    pytest.param(
        f"    timeout: 1.{DIGITS}\n",
        "timeout:",
        "sites[s1].devices[bts].timeout",
        "number too long",
        id="float",
    ),
    pytest.param(
        "    thresholds: {loss_ratio_warning: 1.0e+999}\n",
        "thresholds:",
        "sites[s1].devices[bts].thresholds.loss_ratio_warning",
        "number out of range: 1.0e+999",
        id="float-overflow",
    ),
    pytest.param(
        f"    interval: '{DIGITS}s'\n",
        "interval:",
        "sites[s1].devices[bts].interval",
        "invalid duration '999999",
        id="duration-string",
    ),
    pytest.param(
        f"    snmp: {{port: '{DIGITS}'}}\n",
        "snmp:",
        "sites[s1].devices[bts].snmp.port",
        "Unable to parse input string as an integer",
        id="port-string",
    ),
]


@pytest.mark.parametrize(("extra", "where", "field", "message"), NUMBERS)
def test_a_number_too_long_is_a_config_error_with_file_line_and_field(
    tmp_path: Path, extra: str, where: str, field: str, message: str
) -> None:
    text = _config_text(extra)
    path = tmp_path / "numbers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.field) == (str(path), _line_of(text, where), field)
    assert issue.message.startswith(message), issue.message
    assert len(str(issue)) < 300, "an error line must not repeat the 5,000 digits"


@pytest.mark.parametrize("port", [DIGITS, "\u00b2", "０"], ids=["digits", "superscript", "fullwidth"])
def test_listen_ports_that_str_isdigit_accepts_but_int_does_not(tmp_path: Path, port: str) -> None:
    path = write_yaml(tmp_path / "listen.yaml", province_config([], listen=f"127.0.0.1:{port}"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.line, issue.field) == (5, "server.listen")
    assert issue.message.startswith("listen must be HOST:PORT"), issue.message


def test_check_config_prints_the_clean_error_for_a_long_number(tmp_path: Path) -> None:
    text = _config_text(f"    interval: {DIGITS}\n")
    path = tmp_path / "numbers.yaml"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{path}:{_line_of(text, 'interval:')}: sites[s1].devices[bts].interval: "
        "number too long (5,000 characters; at most 100)"
    ]


# -- profile files: device profiles, their traps, telemetry profiles ------------------------------

PROFILE = """\
name: tiny
description: a valid profile the hostile ones start from
match:
  oid_exists: ['1.3.6.1.2.1.33.1.2.1.0']
scalars:
  power.battery_charge_percent: {oid: '1.3.6.1.2.1.33.1.2.4.0', type: int}
"""


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        pytest.param("x-laughs:\n" + _laughs(9, indent="  "), "f: &f", "aliases expand", id="bomb"),
        pytest.param("priority: " + DIGITS + "\n", "priority:", "priority: number too long", id="number"),
        pytest.param("x: &loop [*loop]\n", "x: &loop", "the node anchored here", id="recursive"),
    ],
)
def test_hostile_device_profiles_name_file_and_line(
    tmp_path: Path, extra: str, where: str, message: str
) -> None:
    text = PROFILE + extra
    path = tmp_path / "tiny.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    [issue] = caught.value.issues
    assert str(issue).startswith(f"{path}:{_line_of(text, where)}: "), str(issue)
    assert message in str(issue)
    # the trap table reads the same files: it skips the hostile one instead of building it
    assert profile_traps(tmp_path) == {}


def test_cli_profiles_check_reports_a_bomb(tmp_path: Path) -> None:
    text = PROFILE + "x-laughs:\n" + _laughs(9, indent="  ")
    (tmp_path / "tiny.yaml").write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "profiles", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{tmp_path / 'tiny.yaml'}:{_line_of(text, 'f: &f')}: aliases expand")


def test_hostile_telemetry_profiles_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text("name: bomb\nx:\n" + _laughs(9, indent="  "), encoding="utf-8")
    (tmp_path / "long.yaml").write_text(f"name: long\nversion: {DIGITS}\n", encoding="utf-8")
    with pytest.raises(TelemetryProfileError) as caught:
        load_telemetry_profiles(tmp_path)
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{tmp_path / 'bomb.yaml'}: cannot read: ")
    assert "aliases expand this document" in problems[0]
    long = tmp_path / "long.yaml"
    assert problems[1] == f"{long}:2: version: number too long (5,000 characters; at most 100)"


def test_without_anchors_the_depth_limit_is_the_same() -> None:
    # a file with no '&' skips the alias walk: the depth check alone must refuse what it refused
    from yaml import CSafeLoader
    from yaml.nodes import Node

    from uptimewatch.yaml_limits import MAX_DEPTH, check_depth

    def node(text: str) -> Node:
        composed = yaml.compose(text, Loader=CSafeLoader)
        assert composed is not None
        return composed

    for depth in (MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1):
        for leaf in ("1", "[]", "{a: 1}"):
            text = "[" * depth + leaf + "]" * depth
            outcomes = []
            for check in (check_graph, check_depth):
                try:
                    check(node(text))
                    outcomes.append(None)
                except YamlLimitError as exc:
                    outcomes.append(str(exc.problem))
            assert outcomes[0] == outcomes[1], (depth, leaf, outcomes)
    assert any(o is not None for o in outcomes)
    lines = [f"{'  ' * i}b{i}:" for i in range(MAX_DEPTH + 2)]
    deep = "\n".join(lines) + "\n" + "  " * (MAX_DEPTH + 2) + "x\n"
    with pytest.raises(YamlLimitError, match="nested deeper"):
        check_depth(node(deep))
