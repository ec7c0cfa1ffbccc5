"""The ``callback-dialer`` command. Errors end in one line naming the problem, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from .config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status 1."""


def _config_path(value: str | None) -> Path | None:
    if value:
        return Path(value)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(getattr(args, "config", None)))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(Path(args.file))
    names = ", ".join(config.category_names())
    print(f"{args.file}: OK ({len(config.categories)} categories: {names})")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from .web.auth import hash_password

    password = args.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise UserError("the two passwords differ")
    if len(password) < 8:
        raise UserError("use at least 8 characters")
    print(hash_password(password))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    from .app import run_dialer

    return asyncio.run(run_dialer(config))


def cmd_demo(args: argparse.Namespace) -> int:
    config = _load(args) if args.config else None
    if config is not None:
        from .demo import demo_conflicts

        problems = demo_conflicts(config)
        if problems:
            raise ConfigError(f"{args.config} (for the demo)", problems)
    traffic = Path(args.traffic) if args.traffic else None
    try:
        from simpbx.profile import ProfileError, load_profile
    except ImportError:
        # The simulator is a separate distribution: the product never needs it.
        raise UserError(
            "the demo needs the PBX simulator: pip install -e ./sim (or '.[demo]' with it)"
        ) from None
    if traffic is not None:
        try:
            load_profile(traffic)  # a bad profile stops here with one line per fault
        except ProfileError as exc:
            for problem in exc.problems:
                print(f"traffic profile error: {exc.source}: {problem}", file=sys.stderr)
            return 1
    from .demo import run_demo

    return asyncio.run(
        run_demo(
            config,
            speed=args.speed,
            port=args.port,
            agents=args.agents,
            seed=args.seed,
            traffic=traffic,
        )
    )


def cmd_replay(args: argparse.Namespace) -> int:
    config = _load(args)
    from .detect.replay import replay_command

    return asyncio.run(replay_command(config, Path(args.capture), redis_url=args.redis_url))


def cmd_record(args: argparse.Namespace) -> int:
    config = _load(args)
    from .ami.record import record_command

    return asyncio.run(record_command(config, Path(args.out), seconds=args.seconds))


def cmd_worker(args: argparse.Namespace) -> int:
    config = _load(args)
    from .jobs.worker import run_worker

    return run_worker(config, burst=args.burst)


def cmd_dialplan(args: argparse.Namespace) -> int:
    from .ivr.dialplan import render_dialplan

    print(render_dialplan(_load(args)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callback-dialer",
        description="Calls back every caller your Asterisk call centre missed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_text: str, config: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if config:
            p.add_argument(
                "--config",
                metavar="PATH",
                help=f"configuration file (default: {DEFAULT_CONFIG_PATH} if present)",
            )
        p.set_defaults(func=func)
        return p

    add("run", cmd_run, "run the dialer against the configured Asterisk and Redis")
    p = add(
        "demo",
        cmd_demo,
        "run the whole product against a simulated PBX (and an embedded Redis if none answers)",
    )
    p.add_argument(
        "--speed", type=float, default=30.0, help="simulated seconds per real second (default 30)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="status page port (default: the file's [web] port, else 8080; another free one "
        "if taken)",
    )
    p.add_argument(
        "--agents", type=int, default=None, help="simulated agents (default: the traffic profile's)"
    )
    p.add_argument("--seed", type=int, default=None, help="the same seed gives the same day")
    p.add_argument(
        "--traffic",
        metavar="PATH",
        help="traffic profile (default: built in; see config/traffic.toml)",
    )
    p = add(
        "check-config",
        cmd_check_config,
        "check a configuration file; exit 0 when usable",
        config=False,
    )
    p.add_argument("file", help="the TOML file to check")
    p = add(
        "replay",
        cmd_replay,
        "play a recorded AMI capture through the dialer into a throwaway queue and print "
        "the callbacks left open, one JSON line each",
    )
    p.add_argument("capture", help="a .jsonl capture (the format of ../shared/ami-captures)")
    p.add_argument(
        "--redis-url",
        help="use this Redis for the throwaway queue "
        "(default: the configured one, under a random key prefix)",
    )
    p = add("record", cmd_record, "record live AMI traffic into a .jsonl capture")
    p.add_argument("out", help="file to write")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p = add("worker", cmd_worker, "run the rq worker for webhooks, SMS and reports")
    p.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    add("dialplan", cmd_dialplan, "print the Asterisk dialplan matching this configuration")
    p = add(
        "hash-password",
        cmd_hash_password,
        "hash a password for a [[web.users]] entry",
        config=False,
    )
    p.add_argument("--password", help="read from the terminal when not given")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {exc.source}: {problem}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: one line for the user, the trace on request
        if os.environ.get("CALLBACK_DIALER_DEBUG"):
            traceback.print_exc()
        print(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(set CALLBACK_DIALER_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
