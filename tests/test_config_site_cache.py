"""Reload with a :class:`SiteCache`: only the sites whose text changed are parsed again, the result
is the one a load without the cache gives, and every problem is reported with the same file, line
and field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from uptimewatch.config.loader import ConfigError, ConfigIssue, LoadedConfig, SiteCache, load_config

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = REPO / "config.example.yaml"


def _site(k: int, *, district: str = "d0", indent: str = "") -> str:
    i = indent
    return (
        f"{i}- id: site-{k:03d}\n"
        f"{i}  name: Trạm {k}\n"
        f"{i}  district: {district}\n"
        f"{i}  carrier: vnpt\n"
        f"{i}  devices:\n"
        f"{i}    - id: bts\n"
        f"{i}      role: bts\n"
        f"{i}      address: 127.30.{k // 250}.{k % 250 + 1}\n"
        f"{i}      profile: auto\n"
    )


HEAD = """province: {id: test, name: Tỉnh Thử}
defaults:
  interval: 60s
  snmp: {version: 2c, community: public}
carriers:
  - {id: vnpt, name: VNPT}
districts:
  - id: d0
    name: Huyện 0
sites:
"""
TAIL = "storage: {}\n"


def _province(sites: list[str], *, head: str = HEAD, tail: str = TAIL) -> str:
    return head + "".join(sites) + tail


def _fresh(path: Path) -> LoadedConfig:
    return load_config(path)


def _issues(path: Path, cache: SiteCache | None, known: tuple[str, ...] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, cache=cache, known_profiles=known)
    return caught.value.issues


def _same(a: LoadedConfig, b: LoadedConfig) -> None:
    assert a.config == b.config
    assert a.devices == b.devices
    assert a.digest == b.digest


def test_unchanged_sites_keep_their_objects_and_the_result_is_a_fresh_load(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    sites = [_site(k) for k in range(20)]
    path.write_text(_province(sites), encoding="utf-8")
    cache = SiteCache()
    first = load_config(path, cache=cache)
    assert len(cache) == 20

    sites[7] = _site(7).replace("Trạm 7", "Trạm bảy")
    sites.insert(3, _site(99))  # every later site moves down nine lines
    path.write_text(_province(sites), encoding="utf-8")
    again = load_config(path, cache=cache)
    _same(again, _fresh(path))
    old = {s.id: s for s in first.config.sites}
    kept = {s.id for s in again.config.sites if old.get(s.id) is s}
    assert kept == {f"site-{k:03d}" for k in range(20)} - {"site-007"}
    # an unchanged site under an unchanged cascade keeps its resolved devices too
    before = {d.key: d for d in first.devices}
    assert before[("site-001", "bts")] is next(d for d in again.devices if d.key == ("site-001", "bts"))


def test_a_changed_cascade_resolves_every_device_again(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    sites = [_site(k) for k in range(5)]
    path.write_text(_province(sites), encoding="utf-8")
    cache = SiteCache()
    load_config(path, cache=cache)
    path.write_text(_province(sites, head=HEAD.replace("interval: 60s", "interval: 20s")), encoding="utf-8")
    again = load_config(path, cache=cache)
    _same(again, _fresh(path))
    assert {d.interval for d in again.devices} == {20.0}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        # a schema error in a changed site, below sites that moved
        (lambda s: s.replace("address: ", "addres: "), "site"),
        # a key given twice in a changed site
        (lambda s: s.replace("  carrier: vnpt\n", "  carrier: vnpt\n  carrier: vnpt\n", 1), "site"),
        # a cross-reference error in an unchanged site: its district is gone
        (lambda s: s.replace("  - id: d0\n    name: Huyện 0\n", "  - id: d1\n    name: Huyện 1\n"), "rest"),
        # a YAML syntax error in the part around the sites
        (lambda s: s.replace("storage: {}", "storage: {"), "rest"),
    ],
)
def test_problems_on_a_warm_cache_read_as_without_it(tmp_path: Path, change: object, where: str) -> None:
    path = tmp_path / "p.yaml"
    sites = [_site(k) for k in range(6)]
    path.write_text(_province(sites), encoding="utf-8")
    cache = SiteCache()
    load_config(path, cache=cache)
    sites.insert(0, _site(50))
    text = _province(sites)
    assert callable(change)
    broken = change(text) if where == "rest" else text.replace(sites[4], change(sites[4]))
    assert broken != text
    path.write_text(broken, encoding="utf-8")
    warm = _issues(path, cache)
    assert warm == _issues(path, None)
    assert all(i.line is not None for i in warm)
    assert len(cache) == 6  # a failed load leaves the cache as the last good one left it


def test_environment_in_a_site_is_read_on_every_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    sites = [_site(k) for k in range(3)]
    sites[1] = sites[1].replace("address: 127.30.0.2", "address: ${BTS_ADDRESS}")
    path.write_text(_province(sites), encoding="utf-8")
    cache = SiteCache()
    monkeypatch.setenv("BTS_ADDRESS", "127.30.9.1")
    load_config(path, cache=cache)
    monkeypatch.setenv("BTS_ADDRESS", "127.30.9.2")
    again = load_config(path, cache=cache)
    assert next(d.address for d in again.devices if d.site_id == "site-001") == "127.30.9.2"
    monkeypatch.delenv("BTS_ADDRESS")
    issues = _issues(path, cache)
    assert [(i.line, i.field) for i in issues] == [(i.line, i.field) for i in _issues(path, None)]
    assert "BTS_ADDRESS" in issues[0].message


@pytest.mark.parametrize(
    "layout",
    [
        "indented",  # "  - id: ..." under sites:
        "flow",  # sites: [...] is not split: the whole file is parsed
        "anchors",  # anchors in the list: the whole file is parsed
        "comments",  # comments between and before the items
        "last",  # the sites are the file's last key, its last line without a newline
    ],
)
def test_layouts_load_as_without_the_cache(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "p.yaml"
    sites = [_site(k, indent="  " if layout == "indented" else "") for k in range(4)]
    if layout == "flow":
        text = HEAD.replace("sites:\n", "sites: [{id: s1, name: S, district: d0, carrier: vnpt}]\n") + TAIL
    elif layout == "anchors":
        sites[0] = sites[0].replace("  carrier: vnpt\n", "  carrier: &c vnpt\n")
        sites[2] = sites[2].replace("  carrier: vnpt\n", "  carrier: *c\n")
        text = _province(sites)
    elif layout == "last":
        text = _province(sites, tail="").rstrip("\n")
    elif layout == "comments":
        text = _province(["# the hubs first\n", *[f"{s}# next\n\n" for s in sites]])
    else:
        text = _province(sites)
    path.write_text(text, encoding="utf-8")
    cache = SiteCache()
    load_config(path, cache=cache)
    _same(load_config(path, cache=cache), _fresh(path))
    path.write_text(text.replace("Trạm 2", "Trạm hai").replace("name: S,", "name: T,"), encoding="utf-8")
    _same(load_config(path, cache=cache), _fresh(path))


def test_the_example_reloads_as_without_the_cache(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE.parent / "secrets", tmp_path / "secrets")
    path = tmp_path / "config.yaml"
    text = EXAMPLE.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    cache = SiteCache()
    load_config(path, cache=cache)
    assert len(cache) > 0
    _same(load_config(path, cache=cache), _fresh(path))
    changed = re.sub(r"(?m)^(    priority: )critical$", r"\1high", text, count=1)
    assert changed != text
    path.write_text(changed, encoding="utf-8")
    _same(load_config(path, cache=cache), _fresh(path))


@pytest.mark.parametrize("path", sorted(DATA.glob("invalid-*.yaml")), ids=lambda p: p.name)
def test_invalid_examples_read_the_same_on_a_warm_cache(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPTIMEWATCH_TEST_NEVER_SET", raising=False)
    target = tmp_path / path.name
    for item in DATA.iterdir():  # the examples read files beside them
        (tmp_path / item.name).symlink_to(item)
    target.unlink()
    # warm the cache with the same file less its problems where that is valid: the valid sites
    # of the example then come from the cache
    cache = SiteCache()
    valid = _province([_site(k) for k in range(3)])
    target.write_text(valid, encoding="utf-8")
    load_config(target, cache=cache)
    target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    known = ("huawei-bbu5900", "vertiv-netsure") if "profile" in path.name else None
    assert [str(i) for i in _issues(target, cache, known)] == [str(i) for i in _issues(target, None, known)]


def test_sites_and_devices_share_their_fields_sets_and_keep_what_they_say(tmp_path: Path) -> None:
    """Each frozen model's set of explicitly given names is one shared object per distinct set
    (hundreds of bytes a device at 300,000 devices), equal to what the model was given."""
    path = tmp_path / "p.yaml"
    sites = [_site(k) for k in range(10)]
    sites[4] = _site(4).replace("      profile: auto\n", "      profile: auto\n      interval: 30s\n")
    path.write_text(_province(sites), encoding="utf-8")
    cache = SiteCache()
    first = load_config(path, cache=cache)
    devices = [s.devices[0] for s in first.config.sites]
    plain = [d for i, d in enumerate(devices) if i != 4]
    assert {id(d.model_fields_set) for d in plain} == {id(plain[0].model_fields_set)}
    assert plain[0].model_fields_set == {"id", "role", "address", "profile"}
    assert devices[4].model_fields_set == {"id", "role", "address", "profile", "interval"}
    assert devices[4].model_fields_set is not plain[0].model_fields_set
    assert len({id(s.model_fields_set) for s in first.config.sites}) == 1
    # a copy with an update gets a set of its own; the shared one is untouched
    copied = plain[0].model_copy(update={"name": "BTS"})
    assert "name" in copied.model_fields_set
    assert "name" not in plain[1].model_fields_set
    # what a load without sharing gives, compared as pydantic compares models
    assert first.config == _fresh(path).config
    again = load_config(path, cache=cache)
    assert again.config.sites[0] is first.config.sites[0]
    assert again.config.sites[0].devices[0].model_fields_set is plain[0].model_fields_set
