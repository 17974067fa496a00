"""The ``synesthesia`` command. Sub-commands import what they need lazily so that ``--help``
is instant and a service never imports training code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from synesthesia.apps.client_args import add_client_flags, client_options
from synesthesia.modality import Modality

DEFAULT_HOST = "127.0.0.1"
ENCODERS = ("text", "image", "audio")
# services that parse their own flags: ``cli_main(argv)`` of these modules
OWN_FLAGS = {
    "search": "synesthesia.services.search.app",
    "ray": "synesthesia.services.ray.__main__",
}


def serve_parser() -> argparse.ArgumentParser:
    # No abbreviations (``--p`` is not ``--port``) and no -h of its own: search and ray get
    # every flag this parser does not know, their --help included.
    parser = argparse.ArgumentParser(
        prog="synesthesia serve",
        description="run a service; --host/--port go before or after its name, other flags "
        "go to search and ray (encoders take their settings from SYNESTHESIA_* variables)",
        allow_abbrev=False,
        add_help=False,
    )
    parser.add_argument("service", choices=[*ENCODERS, *OWN_FLAGS])
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default per service)")
    return parser


def serve_main(argv: list[str]) -> int:
    parser = serve_parser()
    asks_help = any(a in ("-h", "--help") for a in argv)
    if asks_help and not any(a in OWN_FLAGS for a in argv):
        parser.print_help()
        return 0
    args, rest = parser.parse_known_args(argv)
    if args.service in ENCODERS:
        if rest:
            parser.error(
                f"unknown arguments for {args.service}: {' '.join(rest)} (an encoder takes "
                "--host and --port; other settings come from SYNESTHESIA_* variables)"
            )
        from synesthesia.services.encoder.app import main

        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        main(Modality(args.service), **overrides)
        return 0
    flags = [
        f
        for k in ("host", "port")
        if getattr(args, k) is not None
        for f in (f"--{k}", str(getattr(args, k)))
    ]
    return _delegate(OWN_FLAGS[args.service], "cli_main", [*flags, *rest])


def _read_item(modality: Modality, arg: str) -> str | bytes:
    if modality is Modality.TEXT and not Path(arg).is_file():
        return arg
    return Path(arg).read_bytes()


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    modality = Modality.parse(args.modality)
    items = [_read_item(modality, a) for a in args.inputs]
    if args.local:
        from synesthesia.models import create_model

        vectors = create_model(args.model, modalities=[modality]).embed(modality, items)
    else:
        from synesthesia.client import EncoderClient
        from synesthesia.services.encoder.settings import DEFAULT_PORTS

        target = args.address or f"{DEFAULT_HOST}:{DEFAULT_PORTS[modality]}"
        options = client_options(args)
        if args.application:
            options["application"] = args.application
        with EncoderClient(target, timeout=args.timeout, **options) as client:
            vectors = client.embed(modality, items, ids=[str(a) for a in args.inputs])
    if args.out:
        np.save(args.out, vectors)
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 to {args.out}")
    else:
        np.set_printoptions(precision=5, suppress=True, linewidth=120, threshold=12)
        for name, vec in zip(args.inputs, vectors, strict=True):
            print(f"{name}\t{vec}")
    return 0


def convert_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia convert",
        description="write per-modality safetensors files that load faster and hold one slice",
    )
    parser.add_argument("family", choices=["imagebind"])
    parser.add_argument("checkpoint", type=Path, help="the official imagebind_huge.pth")
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    from synesthesia.models.imagebind import convert_checkpoint

    for modality, path in convert_checkpoint(args.checkpoint, args.outdir).items():
        print(f"{modality:8s} {path}")
    return 0


def certs_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia certs",
        description="write a local CA, one certificate per server name (valid for that name, "
        "localhost and 127.0.0.1) and a client certificate, as PEM files, for TLS and mTLS "
        "(development and private networks)",
    )
    parser.add_argument("dir", type=Path)
    parser.add_argument(
        "--server",
        action="append",
        metavar="NAME",
        help="a server name (repeat); default: text, image, audio, search",
    )
    parser.add_argument("--client", default="client", help="the client certificate's name")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args(argv)
    from synesthesia.serving.certs import make_certs

    servers = args.server or ["text", "image", "audio", "search"]
    issued = make_certs(args.dir, servers=servers, client=args.client, days=args.days)
    for name, files in issued.items():
        print(f"{name:10s} {files.cert}" + (f"  {files.key}" if name != "ca" else ""))
    return 0


def token_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="synesthesia token",
        description="make a bearer token: prints it once; only its digest goes to the file",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="a new token")
    new.add_argument("--role", required=True, choices=["read", "write"])
    new.add_argument("--name", default="", help="who or what it is for (kept in the file)")
    new.add_argument(
        "--file", type=Path, help="append the hashed line here (the servers' tokens file)"
    )
    args = parser.parse_args(argv)
    from synesthesia.serving.security import new_token

    if args.name and (args.name.strip() != args.name or "\n" in args.name or "#" in args.name):
        parser.error("--name must be one line without '#' or surrounding spaces")
    token, line = new_token(args.role, args.name)
    if args.file is not None:
        existing = args.file.read_text(encoding="utf-8") if args.file.exists() else ""
        sep = "" if not existing or existing.endswith("\n") else "\n"
        with args.file.open("a", encoding="utf-8") as f:
            f.write(f"{sep}{line}\n")
        args.file.chmod(0o600)
        print(f"appended to {args.file}: {line}", file=sys.stderr)
    else:
        print(f"tokens file line: {line}", file=sys.stderr)
    print(token)
    return 0


def _delegate(module: str, function: str, argv: Sequence[str]) -> int:
    import importlib

    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    return int(fn(list(argv)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synesthesia", description="Text, images and audio in one embedding space."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", help="embed files (or texts) and print vectors or save .npy")
    embed.add_argument("--modality", "-m", required=True, choices=[m.value for m in Modality])
    embed.add_argument("inputs", nargs="+", help="files; for text, strings or .txt files")
    embed.add_argument("--address", help="encoder service host:port (default: local default port)")
    embed.add_argument("--local", action="store_true", help="embed in-process, no service")
    embed.add_argument("--model", default="synesthesia-minilm", help="model for --local")
    embed.add_argument("--out", "-o", help="write an [n, dim] float32 .npy file")
    embed.add_argument("--timeout", type=float, default=120.0)
    embed.add_argument(
        "--application", help="Ray Serve application behind a shared gRPC proxy (e.g. text)"
    )
    add_client_flags(embed)
    embed.set_defaults(func=_cmd_embed)

    for name, (_module, _function, text) in DELEGATED.items():
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


# Sub-commands that own their argument parsing: ``synesthesia NAME ARGS…`` -> module.function(ARGS)
DELEGATED: dict[str, tuple[str, str, str]] = {
    name: (module, function, text)
    for name, module, function, text in (
        ("serve", "synesthesia.apps.cli", "serve_main", "run a service (serve --help)"),
        ("train", "synesthesia.train.cli", "train_main", "train the image/audio towers"),
        ("eval", "synesthesia.train.cli", "eval_main", "evaluate weights on the fixed splits"),
        ("convert", "synesthesia.apps.cli", "convert_main", "convert imagebind CHECKPOINT OUTDIR"),
        ("index", "synesthesia.apps.search_cli", "index_main", "index a folder into a collection"),
        ("search", "synesthesia.apps.search_cli", "search_main", "query a collection"),
        ("classify", "synesthesia.apps.search_cli", "classify_main", "rank labels for an item"),
        ("healthcheck", "synesthesia.apps.healthcheck", "main", "is a server SERVING?"),
        ("export", "synesthesia.apps.cli", "export_main", "export a tower: export onnx --help"),
        ("certs", "synesthesia.apps.cli", "certs_main", "a local CA and certificates (TLS)"),
        ("token", "synesthesia.apps.cli", "token_main", "token new --role read|write"),
        ("demo", "synesthesia.apps.demo", "demo_main", "the local stack and a cross-modal demo"),
        ("ui", "synesthesia.apps.ui", "ui_main", "serve the web page that talks to the services"),
    )
}


def export_main(argv: list[str]) -> int:
    """``synesthesia export onnx ...`` (the one export format today)."""
    if not argv or argv[0] != "onnx":
        print("usage: synesthesia export onnx --modality M --out FILE [...]", file=sys.stderr)
        print("(see: synesthesia export onnx --help)", file=sys.stderr)
        return 2
    from synesthesia.export.onnx import export_main as onnx_main

    return onnx_main(argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from synesthesia.errors import SynesthesiaError

    try:
        if argv and argv[0] in DELEGATED:
            module, function, _ = DELEGATED[argv[0]]
            return _delegate(module, function, argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except SynesthesiaError as exc:  # a service's answer or a local check: one line
        print(f"error: {exc.code}: {exc.message or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
