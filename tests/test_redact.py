"""redact: URLs lose their credentials and query values, remembered secrets are masked, the rest
of the text (scheme, host, port, path, punctuation) stays for the operator to read."""

from __future__ import annotations

import logging

import pytest

from uptimewatch.redact import RedactingFormatter, redact, redact_url, remember_secrets, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@127.0.0.1:9/hook?token=abc&x=1#frag", "http://***@127.0.0.1:9/hook?token=***&x=***#***"),
        ("https://hooks.example.vn/T000/B000", "https://hooks.example.vn/T000/B000"),
        ("http://127.0.0.1:9093", "http://127.0.0.1:9093"),
        ("http://h/x?SECRETONLY", "http://h/x?***"),
        ("http://h/x?flag=", "http://h/x?flag="),
        ("http://[::1/x?t=1", "http://***"),  # unparsable: the scheme only
        ("https://h:99999/?a=b", "https://***"),
    ],
)
def test_a_url_keeps_its_endpoint_and_loses_its_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_in_running_text_and_the_punctuation_after_them() -> None:
    text = "POST http://u:pw@h:1/x?token=abc: refused; see https://h2/y?k=v."
    assert redact(text) == "POST http://***@h:1/x?token=***: refused; see https://h2/y?k=***."


def test_remembered_secrets_are_masked_anywhere_longest_first() -> None:
    remember_secrets(["abcd-Secret-9", "abcd-Secret-9-longer", "ok"])
    assert redact("got abcd-Secret-9-longer and abcd-Secret-9") == "got *** and ***"
    assert redact("ok stays: too short to mask") == "ok stays: too short to mask"


def test_the_secrets_a_url_carries() -> None:
    assert sorted(url_secrets("http://user:pw-1@h/x?token=t-2&a=b#f")) == sorted(
        ["user", "pw-1", "t-2", "b", "f"]
    )
    assert url_secrets("http://h/x") == []


def test_the_log_formatter_redacts_message_arguments_and_tracebacks() -> None:
    remember_secrets(["tracebackSecret-77"])
    formatter = RedactingFormatter(logging.Formatter("%(levelname)s %(message)s"))
    try:
        raise ValueError("bad key tracebackSecret-77")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "t", logging.WARNING, __file__, 1, "POST %s failed", ("http://u:p@h/?token=zz",), sys.exc_info()
        )
    line = formatter.format(record)
    assert line.startswith("WARNING POST http://***@h/?token=*** failed")
    assert "ValueError: bad key ***" in line
    assert "tracebackSecret-77" not in line
    assert "token=zz" not in line
