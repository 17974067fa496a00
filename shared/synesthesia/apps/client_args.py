"""The flags every command that talks to a service shares: TLS (``--tls-ca``, ``--tls-cert``,
``--tls-key``), a bearer token (``--token``) and ``--wait``. Unset flags fall back to
``SYNESTHESIA_CLIENT_TLS_CA`` / ``_CERT`` / ``_KEY`` and ``SYNESTHESIA_TOKEN``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synesthesia.client import TLS


def add_client_flags(parser: argparse.ArgumentParser, wait: bool = True) -> None:
    g = parser.add_argument_group(
        "security",
        "TLS and token for the services (default: SYNESTHESIA_CLIENT_TLS_CA, "
        "SYNESTHESIA_CLIENT_TLS_CERT, SYNESTHESIA_CLIENT_TLS_KEY, SYNESTHESIA_TOKEN)",
    )
    g.add_argument("--tls-ca", type=Path, help="CA file to trust: speak TLS to the services")
    g.add_argument("--tls-cert", type=Path, help="client certificate (mTLS)")
    g.add_argument("--tls-key", type=Path, help="key of --tls-cert")
    g.add_argument("--token", help="bearer token (prefer SYNESTHESIA_TOKEN: argv is visible)")
    if wait:
        parser.add_argument(
            "--wait",
            action="store_true",
            help="wait (up to the timeout) for a service that is not up yet instead of failing",
        )


def tls_of(args: argparse.Namespace) -> TLS | None:
    """A TLS from the flags; None (the environment decides) when none is given."""
    from synesthesia.client import TLS

    flags = (args.tls_ca, args.tls_cert, args.tls_key)
    return TLS(*flags) if any(flags) else None


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for EncoderClient/SearchClient."""
    return {
        "tls": tls_of(args),
        "token": args.token,
        "wait_for_ready": bool(getattr(args, "wait", False)),
    }
