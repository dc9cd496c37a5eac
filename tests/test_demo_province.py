"""The generated demo province is a valid configuration, at the default size and at 10,000 sites."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from uptimewatch.config.loader import load_config
from uptimewatch.config.models import Config
from uptimewatch.config.resolve import resolve_all
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import ManualClock, Simulator
from uptimewatch.demo.province import DEFAULT_SITES, DemoProvince, generate_province, site_address, slug


def check_province(province: DemoProvince, sites: int) -> Config:
    config = Config.model_validate(province.config)
    assert len(config.sites) == sites
    site_ids = [s.id for s in config.sites]
    assert len(set(site_ids)) == sites
    addresses = [d.address for s in config.sites for d in s.devices]
    assert len(addresses) == 3 * sites
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        ip = ipaddress.IPv4Address(address)
        assert ip in ipaddress.IPv4Network("127.0.0.0/8")
        assert address != "127.0.0.1"
    known = set(site_ids)
    districts = {d.id: {c.id for c in d.communes} for d in config.districts}
    carriers = {c.id for c in config.carriers}
    for site in config.sites:
        assert set(site.upstream) <= known
        assert site.id not in site.upstream
        assert site.commune in districts[site.district]
        assert site.carrier in carriers
        assert {d.id for d in site.devices} == {"bts", "power", "link"}
    # the simulator gets the same devices on the same addresses
    assert sorted(addresses) == sorted(d.address for d in province.devices)
    return config


def test_default_province_is_valid_config() -> None:
    province = generate_province(DEFAULT_SITES, snmp_port=16161)
    config = check_province(province, DEFAULT_SITES)
    assert len(config.districts) == 8
    assert {c.name for c in config.carriers} == {"VNPT", "Viettel", "MobiFone"}
    assert config.province.name == "Tỉnh Hòa Bình"
    assert any("ò" in d.name or "à" in d.name for d in config.districts)  # Vietnamese with diacritics
    assert all(
        c.name.startswith(("Xã ", "Thị trấn ", "Phường ")) for d in config.districts for c in d.communes
    )
    assert len(province.roles["hub"]) == 8
    # every non-hub site is reached through another; hubs are the roots
    hubs = set(province.roles["hub"])
    assert all(bool(s.upstream) != (s.id in hubs) for s in config.sites)
    devices = resolve_all(config)
    assert {d.snmp.port for d in devices if d.snmp} == {16161}
    communities = {
        s.carrier: s.defaults.snmp.community for s in config.sites if s.defaults and s.defaults.snmp
    }
    resolved = {
        d.snmp.community.get_secret_value() for d in devices if d.snmp is not None and d.snmp.community
    }
    assert resolved == {c.get_secret_value() for c in communities.values() if c is not None}


def test_ten_thousand_sites_generate_and_validate() -> None:
    province = generate_province(10_000)
    config = check_province(province, 10_000)
    assert len(config.districts) == 10
    assert config.defaults.interval == 60.0  # a big province is polled once a minute


def test_written_config_loads_through_the_project_loader(tmp_path: Path) -> None:
    province = generate_province(30, snmp_port=16161)
    path = tmp_path / "config.yaml"
    province.write_config(path)
    assert "Trạm HUB" in path.read_text(encoding="utf-8")  # UTF-8 kept, not escaped
    loaded = load_config(path)
    assert len(loaded.config.sites) == 30
    assert len(loaded.devices) == 90


def test_generation_is_deterministic_and_selectors_resolve() -> None:
    a, b = generate_province(40), generate_province(40)
    assert a.config == b.config
    hub = a.select("hub#0")
    agg = a.select("agg#0")
    assert a.select(hub) == hub
    assert hub in next(s.upstream for s in a.sites if s.id == agg)
    behind = a.downstream(agg)
    assert behind
    assert all(agg in next(s.upstream for s in a.sites if s.id == sid) for sid in behind)
    assert set(a.downstream(hub)) > set(behind)
    with pytest.raises(KeyError, match="has 8 hub sites"):
        a.select("hub#9")
    with pytest.raises(KeyError, match="unknown site role"):
        a.select("tower#0")


def test_simulator_accepts_every_generated_device() -> None:
    province = generate_province(DEFAULT_SITES)
    sim = Simulator(province.sites, province.devices, load_models(), ManualClock())
    assert len(sim.devices) == 3 * DEFAULT_SITES
    assert {d.model.kind for d in sim.devices.values()} == {"router", "power", "radio"}


def test_addresses_and_ids() -> None:
    assert site_address(0, 1) == "127.16.1.1"
    assert site_address(250, 3) == "127.17.1.3"
    assert site_address(59_999, 2) == "127.255.250.2"
    with pytest.raises(ValueError, match="outside"):
        site_address(60_000, 1)
    assert slug("Xã Đồng Chum") == "dong-chum"
    assert slug("Thị trấn Mai Châu") == "mai-chau"
