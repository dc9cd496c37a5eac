"""Shared test setup. Fixtures that start real parts live in tests/fixtures/, one module each."""

pytest_plugins = [
    "tests.fixtures.snmpsim",
    "tests.fixtures.netns",
    "tests.fixtures.daemon",
    "tests.fixtures.mosquitto",
    "tests.fixtures.smtp",
    "tests.fixtures.alertmanager",
    "tests.fixtures.nats",
    "tests.fixtures.snmpd",
    "tests.fixtures.wheel",
]
