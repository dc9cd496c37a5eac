"""``uptimewatch ack ALERT_ID --by NAME --comment TEXT``: acknowledge an alert on a running daemon.

Credentials: ``--token`` (or ``$UPTIMEWATCH_TOKEN``) for a bearer token, or ``--user`` with the
password in ``$UPTIMEWATCH_PASSWORD`` for basic auth: a password on the command line would land
in the shell history and in ``ps``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9847"


def _authorization(args: argparse.Namespace) -> str | None:
    token = args.token or os.environ.get("UPTIMEWATCH_TOKEN")
    if token:
        return f"Bearer {token}"
    if args.user:
        password = os.environ.get("UPTIMEWATCH_PASSWORD", "")
        pair = f"{args.user}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    return None


def cli_ack(args: argparse.Namespace) -> int:
    url = f"{args.url.rstrip('/')}/api/v1/alerts/{urllib.parse.quote(args.alert_id, safe='')}/ack"
    body = json.dumps({"by": args.by, "comment": args.comment or ""}).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if (auth := _authorization(args)) is not None:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            alert = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        print(f"uptimewatch ack: {exc.code} {message}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"uptimewatch ack: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(f"acknowledged {alert['id']} {alert['name']}: {alert['summary']} (by {alert['ack']['by']})")
    return 0
