"""The secret keys come from the models' SecretStr fields: one source of truth, no hand list."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from tests.fixtures.daemon import write_yaml
from uptimewatch.config.loader import ConfigError, load_config
from uptimewatch.config.secrets import secret_file_keys, secret_keys


def test_every_secret_of_the_shipped_models_is_known() -> None:
    assert secret_keys() == {
        "community",  # snmp
        "auth_key",  # snmp v3, trap users
        "priv_key",
        "password",  # mqtt broker, email channel
        "secret",  # webhook signing
        "communities",  # traps
        "bearer_tokens",  # alerting API
        "password_bcrypt",
        "token",  # the cluster's NATS token
    }
    assert dict(secret_file_keys()) == {
        "snmp": ("community", "auth_key", "priv_key"),
        "mqtt": ("password",),
        "email": ("password",),
        "webhook": ("secret",),
    }


class _Inner(BaseModel):
    token: SecretStr | None = None
    token_file: str | None = None
    tokens: list[SecretStr] = Field(default_factory=list)
    plain: str = ""


class _Outer(BaseModel):
    api: _Inner | None = None
    many: list[_Inner] = Field(default_factory=list, alias="several")
    key: SecretStr = SecretStr("x")


def test_a_new_secret_field_is_found_without_a_list() -> None:
    assert secret_keys(_Outer) == {"token", "tokens", "key"}
    assert dict(secret_file_keys(_Outer)) == {"api": ("token",), "several": ("token",)}


def test_a_mistyped_secret_is_not_echoed(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "config.yaml",
        {
            "province": {"id": "hb", "name": "Hòa Bình"},
            "carriers": [{"id": "vnpt", "name": "VNPT"}],
            "districts": [{"id": "d1", "name": "D1"}],
            "sites": [],
            "traps": {"enabled": True, "communities": [987654321012]},
        },
    )
    try:
        load_config(config)
    except ConfigError as exc:
        text = str(exc)
    else:
        raise AssertionError("a number where a community belongs must be an error")
    assert "communities" in text
    assert "987654321012" not in text
