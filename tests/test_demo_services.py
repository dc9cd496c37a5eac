"""What the demo starts beside the simulator: the SMTP sink, the nftables table that makes faults
real to ping, the mosquitto broker, and the alerting settings written into its config."""

from __future__ import annotations

import json
import logging
import os
import socket
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from icmplib import async_ping

from uptimewatch.config.models import Config
from uptimewatch.demo.alerting import add_alerting
from uptimewatch.demo.broker import Mosquitto
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import BOOT_DELAY_S, ManualClock, Simulator
from uptimewatch.demo.firewall import IcmpFirewall, table_exists_sync, unavailable_reason
from uptimewatch.demo.mailsink import MailSink
from uptimewatch.demo.province import generate_province

#: an address range no demo uses, so a demo running on this machine is not disturbed
FIRST_NET = 212
needs_nft = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"nftables table not usable: {unavailable_reason()}"
)


async def test_mail_sink_keeps_each_message_as_eml_with_an_index(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "0001.eml").write_text("left from a previous run")
    async with MailSink(tmp_path / "mail") as sink:
        assert not (tmp_path / "mail" / "0001.eml").exists()  # a fresh directory per run
        msg = EmailMessage()
        msg["Subject"] = "[FIRING:1] OnBattery — Trạm HUB Mai Châu (VNPT)"
        msg["From"] = "uptimewatch Hòa Bình <uptimewatch@hoabinh.example.vn>"
        msg["To"] = "Trực ca ngày <truc-ca-ngay@hoabinh.example.vn>"
        msg["X-Uptimewatch-Kind"] = "firing"
        msg.set_content("Mất điện lưới tại Trạm HUB Mai Châu")
        await aiosmtplib.send(msg, hostname=sink.host, port=sink.port, start_tls=None)
        assert [m.file for m in sink.messages] == ["0001.eml"]
        port = sink.port
    [record] = sink.messages
    assert record.subject == "[FIRING:1] OnBattery — Trạm HUB Mai Châu (VNPT)"
    assert (record.kind, record.rcpt_tos) == ("firing", ("truc-ca-ngay@hoabinh.example.vn",))
    [line] = (tmp_path / "mail" / "index.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["subject"] == record.subject
    raw = (tmp_path / "mail" / "0001.eml").read_bytes()
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]  # stored as sent: RFC 2047 encoded
    with socket.socket() as s:  # the port is closed again
        assert s.connect_ex((sink.host, port)) != 0


async def test_mail_sink_writes_one_console_line_per_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with MailSink(tmp_path / "mail") as sink:
        for n in range(3):
            msg = EmailMessage()
            msg["Subject"] = f"[FIRING:1] SiteDown {n}"
            msg["From"] = "uptimewatch <uptimewatch@hoabinh.example.vn>"
            msg["To"] = "noc@hoabinh.example.vn"
            msg.set_content("Mất kết nối")
            await aiosmtplib.send(msg, hostname=sink.host, port=sink.port, start_tls=None)
    smtp_chatter = [r for r in caplog.records if r.name.startswith("mail.")]
    ours = [r for r in caplog.records if r.name == "uptimewatch.demo.mailsink"]
    assert smtp_chatter == []
    assert [r.getMessage() for r in ours] == [
        f"mail sink: {n + 1:04d}.eml to noc@hoabinh.example.vn: [FIRING:1] SiteDown {n}" for n in range(3)
    ]


def test_alerting_settings_validate_with_and_without_a_broker() -> None:
    for mqtt_port in (None, 1883):
        province = generate_province(6, districts=1, first_net=FIRST_NET)
        add_alerting(province.config, smtp_host="127.0.0.1", smtp_port=2525, mqtt_port=mqtt_port)
        config = Config.model_validate(province.config)
        receivers = {r.name: r for r in config.notify.receivers}
        assert {"truc-ca-ngay", "truc-ca-dem", "noc-vnpt", "noc-viettel", "noc-mobifone"} <= set(receivers)
        assert ("bang-tin" in receivers) == (mqtt_port is not None)
        email = receivers["noc-vnpt"].email
        assert email is not None
        assert (email.starttls, email.password) == ("opportunistic", None)
        assert config.alerting.group_by == ["district", "carrier"]
        assert {s.receiver for s in config.alerting.roster} == {"truc-ca-ngay", "truc-ca-dem"}
        assert config.defaults.power is not None
        assert config.defaults.power.cutoff_voltage_volts == 46.0


def test_silent_addresses_follow_cuts_deaths_and_reboots() -> None:
    province = generate_province(8, districts=1, first_net=FIRST_NET)
    clock = ManualClock(1000.0)
    sim = Simulator(province.sites, province.devices, load_models(), clock)
    assert sim.silent_addresses() == set()
    agg = province.select("agg#0")
    behind = {agg, *province.downstream(agg)}
    sim.set_cut(agg, True)
    expected = {d.address for d in province.devices if d.site_id in behind}
    assert sim.silent_addresses() == expected
    sim.set_cut(agg, False)
    hub = province.select("hub#0")
    sim.set_dead(f"{hub}/power", True)
    sim.reboot(f"{hub}/bts")
    by_key = {d.key: d.address for d in province.devices}
    assert sim.silent_addresses() == {by_key[f"{hub}/power"], by_key[f"{hub}/bts"]}
    clock.advance(BOOT_DELAY_S + 1)
    assert sim.silent_addresses() == {by_key[f"{hub}/power"]}


@needs_nft
async def test_firewall_drops_pings_to_silent_addresses_only_and_removes_its_table() -> None:
    table = f"uwdemo_svc_{os.getpid()}"
    a, b = f"127.{FIRST_NET}.9.1", f"127.{FIRST_NET}.9.2"
    # a table left by a killed demo is replaced, not added to
    stale = IcmpFirewall(table)
    await stale.start()
    await stale.sync({a, b})
    firewall = IcmpFirewall(table)
    async with firewall:
        assert (await async_ping(a, count=1, timeout=0.5)).is_alive
        assert await firewall.sync({a}) == (1, 0)
        assert not (await async_ping(a, count=1, timeout=0.5)).is_alive
        assert (await async_ping(b, count=1, timeout=0.5)).is_alive
        assert await firewall.sync({b}) == (1, 1)
        assert (await async_ping(a, count=1, timeout=0.5)).is_alive
        assert not (await async_ping(b, count=1, timeout=0.5)).is_alive
        assert await firewall.sync({b}) == (0, 0)
    assert not table_exists_sync(table)
    assert (await async_ping(b, count=1, timeout=0.5)).is_alive


@pytest.mark.skipif(not Mosquitto.available(), reason="/usr/sbin/mosquitto is not installed")
async def test_broker_starts_on_a_free_port_and_stops(tmp_path: Path) -> None:
    async with Mosquitto(tmp_path / "mosquitto") as broker:
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
    with socket.socket() as s:
        assert s.connect_ex((broker.host, broker.port)) != 0
