"""Config commands: ``validate``, ``show-config``, ``presets``, ``init NAME [DEST]``."""

from __future__ import annotations

import yaml

from pipeline import api
from pipeline.cli.common import add_config_args
from pipeline.config import public_dict


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a config; print nothing else on success")
    add_config_args(p)
    p.set_defaults(handler=validate)
    p = sub.add_parser("show-config", help="print the resolved config (every default filled in)")
    add_config_args(p)
    p.set_defaults(handler=show_config)
    sub.add_parser("presets", help="list the bundled presets").set_defaults(handler=presets)
    p = sub.add_parser("init", help="copy a bundled preset to edit")
    p.add_argument("name", help="a bundled preset (python -m pipeline presets)")
    p.add_argument("dest", nargs="?", help="file or folder (default: the current folder)")
    p.set_defaults(handler=init)


def validate(args) -> int:
    api.load_config(args.config, args.overrides)
    print(f"{args.config}: ok")
    return 0


def show_config(args) -> int:
    print(yaml.safe_dump(public_dict(api.load_config(args.config, args.overrides)), sort_keys=False), end="")
    return 0


def _first_comment(path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#") and "python -m" not in line:
            return line.lstrip("# ").strip()
    return ""


def presets(args) -> int:
    for name, path in api.presets().items():
        print(f"{name:<18} {_first_comment(path)}")
    return 0


def init(args) -> int:
    dest = api.init_config(args.name, args.dest)
    print(f"wrote {dest}; run it with: python -m pipeline run {dest}")
    return 0
