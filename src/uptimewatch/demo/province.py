"""Generates the demo province: districts, communes, carriers and sites on loopback addresses.

The output is two views of one province: the daemon's configuration (a dict valid for
:class:`uptimewatch.config.models.Config`) and the simulator's site and device specs. Generation
is deterministic for a given size and seed, so a scenario's ``hub#0`` always means the same site.

Topology: each district has one hub (the fibre point of presence); every sixth site is an
aggregation site hanging off the hub over microwave, and the others hang off the nearest
aggregation site. Site ``i`` uses 127.(16 + i // 250).(i % 250 + 1).{1,2,3} for its router,
power plant and radio, so 127.0.0.1 stays free for the daemon and 60,000 sites fit.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .device_models import data_dir
from .devices import DeviceSpec, SiteSpec

DEFAULT_SITES = 120
MAX_SITES = 60_000
GROUP_SIZE = 6  # an aggregation site plus the sites behind it
#: the simulated plants' low-voltage disconnect (devices.py: 46 V plus 6 V times the charge)
SIM_CUTOFF_VOLTS = 46.0


@dataclass(frozen=True, slots=True)
class Names:
    """The place names and carriers of ``demo/data/province.yaml``."""

    province_id: str
    province_name: str
    #: the language of the demo's emails, reports and status page (``vi``)
    language: str
    #: (name, (lat, lon) centre, communes)
    districts: tuple[tuple[str, tuple[float, float], tuple[str, ...]], ...]
    #: (id, name, share of the sites, community)
    carriers: tuple[tuple[str, str, float, str], ...]


@functools.cache
def load_names() -> Names:
    """Reads ``demo/data/province.yaml`` once (blocking)."""
    with (data_dir() / "province.yaml").open("r", encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return Names(
        province_id=str(raw["province"]["id"]),
        province_name=str(raw["province"]["name"]),
        language=str(raw["province"].get("language", "vi")),
        districts=tuple(
            (str(d["name"]), (float(d["centre"][0]), float(d["centre"][1])), tuple(map(str, d["communes"])))
            for d in raw["districts"]
        ),
        carriers=tuple(
            (str(c["id"]), str(c["name"]), float(c["share"]), str(c["community"])) for c in raw["carriers"]
        ),
    )


_PREFIXES = ("Thành phố ", "Thị trấn ", "Huyện ", "Phường ", "Xã ", "Tỉnh ")


def slug(text: str) -> str:
    """ASCII id from a Vietnamese name: ``Xã Pà Cò`` -> ``pa-co`` (administrative prefix dropped)."""
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    return "-".join(ascii_fold(text).lower().split())


def ascii_fold(text: str) -> str:
    """``Xã Pà Cò`` -> ``Xa Pa Co``: SNMP DisplayStrings are ASCII, and so are real sites' sysLocation."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def short_name(text: str) -> str:
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    return text


#: second octet of the first site's addresses (127.16.1.x)
FIRST_NET = 16


def site_address(index: int, device: int, first_net: int = FIRST_NET) -> str:
    """Loopback address of device ``device`` (1 router, 2 power, 3 radio) of site ``index``.

    ``first_net`` moves the whole province (tests running beside another demo use their own
    range, since the demo's faults act on addresses)."""
    limit = (256 - first_net) * 250
    if not 0 <= index < min(MAX_SITES, limit):
        raise ValueError(f"site index {index} outside 0..{min(MAX_SITES, limit) - 1}")
    return f"127.{first_net + index // 250}.{index % 250 + 1}.{device}"


@dataclass
class DemoProvince:
    config: dict[str, Any]
    sites: list[SiteSpec]
    devices: list[DeviceSpec]
    #: site ids by topology role: "hub" (district PoP), "agg" (aggregation), "leaf"
    roles: dict[str, list[str]] = field(default_factory=dict)

    def site_name(self, site_id: str) -> str:
        return next((s.name for s in self.sites if s.id == site_id), site_id)

    def select(self, target: str) -> str:
        """A site id from ``hub#0`` / ``agg#2`` / ``leaf#5`` (n-th site of that role) or a site id."""
        role, sep, nth = target.partition("#")
        if sep:
            ids = self.roles.get(role)
            if ids is None:
                raise KeyError(f"unknown site role {role!r} in {target!r}: use hub, agg or leaf")
            if not nth.isdigit() or int(nth) >= len(ids):
                raise KeyError(f"{target!r}: this province has {len(ids)} {role} sites")
            return ids[int(nth)]
        if not any(s.id == target for s in self.sites):
            raise KeyError(f"no site {target!r}")
        return target

    def downstream(self, site_id: str) -> list[str]:
        """Sites reached through ``site_id`` (not including it)."""
        children: dict[str, list[str]] = {}
        for s in self.sites:
            for up in s.upstream:
                children.setdefault(up, []).append(s.id)
        out: list[str] = []
        todo = list(children.get(site_id, ()))
        while todo:
            sid = todo.pop()
            out.append(sid)
            todo.extend(children.get(sid, ()))
        return out

    def accelerate(self, speed: float) -> None:
        """Fits the time-to-dark alert horizon to a simulation ``speed`` times faster than the
        wall clock. The plants report their runtime figures in simulated time, as firmware that
        knows nothing of the acceleration would; the daemon's trends measure the drain on the
        wall clock, so its predictions are in real seconds (and the cross-check shows the vendor
        figure disagreeing with them), and the 2-hour horizon shrinks to 2 hours / ``speed``."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        power = self.config["defaults"].setdefault("power", {})
        power["time_to_dark_alert_horizon"] = round(2 * 3600.0 / speed, 3)

    def write_config(self, path: Path) -> None:
        """Writes the daemon's configuration as YAML (blocking)."""
        header = (
            "# uptimewatch demo province, generated by `uptimewatch demo`; rewritten on each run.\n"
            "# Every address is a simulated device on loopback. Communities are demo values.\n"
        )
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        body = yaml.dump(self.config, Dumper=dumper, allow_unicode=True, sort_keys=False, width=120)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + body, encoding="utf-8")


def _defaults(snmp_port: int, interval: str) -> dict[str, Any]:
    return {
        "interval": interval,
        "timeout": "8s",
        "hard_after": 2,
        "snmp": {"version": "2c", "port": snmp_port, "timeout": "1s", "retries": 1},
        "icmp": {"count": 2, "interval": "20ms", "timeout": "1s"},
        # the simulated plants disconnect their load at 46.0 V (an empty battery), not at 43.2 V
        "power": {"cutoff_voltage_volts": SIM_CUTOFF_VOLTS},
        "thresholds": {
            # a full hub bank lasts 60 min: the 60-minute default would warn about it on mains
            "battery_minutes_warning": 30,
            "battery_minutes_critical": 15,
            "rx_level_dbm_warning": -52,
            "rx_level_dbm_critical": -58,
            "snr_db_warning": 12,
            "snr_db_critical": 6,
        },
    }


def generate_province(
    sites: int = DEFAULT_SITES,
    *,
    districts: int | None = None,
    snmp_port: int = 161,
    listen: str = "127.0.0.1:9847",
    interval: str | None = None,
    seed: int = 7,
    first_net: int = FIRST_NET,
) -> DemoProvince:
    """A province of ``sites`` sites over ``districts`` districts (default: 8, or all 10 when large)."""
    if not 1 <= first_net <= 255:
        raise ValueError("first_net must be between 1 and 255")
    most = min(MAX_SITES, (256 - first_net) * 250)
    if not 1 <= sites <= most:
        raise ValueError(f"sites must be between 1 and {most}")
    names = load_names()
    all_districts = names.districts
    n_districts = districts if districts is not None else (8 if sites <= 2000 else len(all_districts))
    n_districts = max(1, min(n_districts, len(all_districts), sites))
    rng = random.Random(seed)
    carrier_ids = [c[0] for c in names.carriers]
    carrier_weights = [c[2] for c in names.carriers]
    community = {c[0]: c[3] for c in names.carriers}
    carrier_name = {c[0]: c[1] for c in names.carriers}
    hub_carrier = carrier_ids[0]
    province_short = short_name(names.province_name)

    district_cfg: list[dict[str, Any]] = []
    site_cfg: list[dict[str, Any]] = []
    site_specs: list[SiteSpec] = []
    device_specs: list[DeviceSpec] = []
    roles: dict[str, list[str]] = {"hub": [], "agg": [], "leaf": []}
    per_district = [sites // n_districts + (1 if d < sites % n_districts else 0) for d in range(n_districts)]

    index = 0
    for d, (dname, (lat0, lon0), communes) in enumerate(all_districts[:n_districts]):
        did = slug(dname)
        commune_ids = [slug(c) for c in communes]
        district_cfg.append(
            {
                "id": did,
                "name": dname,
                "communes": [{"id": cid, "name": c} for cid, c in zip(commune_ids, communes, strict=True)],
            }
        )
        counters: dict[str, int] = {}
        hub_id = ""
        agg_id = ""
        for k in range(per_district[d]):
            c = k % len(communes)
            cname, cid = communes[c], commune_ids[c]
            if k == 0:
                role, carrier = "hub", hub_carrier
                sid, name = f"{did}-hub", f"Trạm HUB {short_name(dname)}"
                upstream: list[str] = []
                priority = "critical"
            else:
                carrier = rng.choices(carrier_ids, carrier_weights)[0]
                counters[cid] = counters.get(cid, 0) + 1
                sid = f"{did}-{cid}-{counters[cid]:02d}"
                if (k - 1) % GROUP_SIZE == 0:
                    role, name, upstream, priority = "agg", f"Trạm gom {short_name(cname)}", [hub_id], "high"
                else:
                    role, upstream, priority = "leaf", [agg_id], "normal"
                    name = f"BTS {short_name(cname)} {counters[cid]:02d}"
            roles[role].append(sid)
            if role == "hub":
                hub_id = sid
            elif role == "agg":
                agg_id = sid
            lat = round(lat0 + rng.uniform(-0.12, 0.12), 5)
            lon = round(lon0 + rng.uniform(-0.12, 0.12), 5)
            router_role = "bts" if role == "leaf" else "router"
            devices = [
                ("bts", router_role, "bts-router", 1, f"Router {name}"),
                ("power", "power", "power", 2, f"Nguồn {name}"),
                ("link", "link", "radio", 3, f"Viba {name}"),
            ]
            site_cfg.append(
                {
                    "id": sid,
                    "name": name,
                    "district": did,
                    "commune": cid,
                    "carrier": carrier,
                    "location": {"lat": lat, "lon": lon},
                    "priority": priority,
                    "upstream": upstream,
                    "defaults": {"snmp": {"community": community[carrier]}},
                    "devices": [
                        {
                            "id": dev_id,
                            "role": drole,
                            "address": site_address(index, n, first_net),
                            "name": dname_,
                        }
                        for dev_id, drole, _model, n, dname_ in devices
                    ],
                }
            )
            site_specs.append(
                SiteSpec(
                    id=sid,
                    name=name,
                    location=ascii_fold(f"{cname}, {dname}, {names.province_name}"),
                    contact=ascii_fold(f"NOC {carrier_name[carrier]} {province_short} (demo)"),
                    upstream=tuple(upstream),
                    # hubs carry more load on smaller battery banks: their batteries run out first
                    battery_runtime_s=3600.0 if role == "hub" else 3 * 3600.0,
                    load_amps=60.0 if role == "hub" else 25.0,
                )
            )
            device_specs.extend(
                DeviceSpec(
                    site_id=sid,
                    device_id=dev_id,
                    model=model,
                    address=site_address(index, n, first_net),
                    community=community[carrier],
                    name=f"{sid}-{dev_id}",  # sysName: a host name, as real devices have
                )
                for dev_id, _drole, model, n, dname_ in devices
            )
            index += 1

    config: dict[str, Any] = {
        "province": {"id": names.province_id, "name": names.province_name, "language": names.language},
        "server": {"listen": listen},
        # a small province is polled often, so the accelerated scenario's faults show within seconds
        "defaults": _defaults(snmp_port, interval or ("5s" if sites <= 500 else "60s")),
        "carriers": [{"id": cid, "name": name} for cid, name, _w, _c in names.carriers],
        "districts": district_cfg,
        "sites": site_cfg,
    }
    return DemoProvince(config=config, sites=site_specs, devices=device_specs, roles=roles)
