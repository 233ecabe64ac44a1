"""``cloud-service``: run the cloud side; manage API keys, the plan book and the alert rules."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from cloud_service.alerts.errors import RuleError
from cloud_service.alerts.records import iso
from cloud_service.alerts.rule_store import SqlRuleStore, rules_to_toml
from cloud_service.alerts.rules import load_rules
from cloud_service.analytics.cli import register as register_analyze
from cloud_service.analytics.cli import run as run_analyze
from cloud_service.api.errors import ApiKeyError
from cloud_service.api.keys import ApiKey, Scope, SqlApiKeyStore
from cloud_service.app import build_app
from cloud_service.errors import ConfigError, MetadataError
from cloud_service.metadata import MetadataStore
from cloud_service.plans.codec import load_plan, plan_to_json, plan_to_toml
from cloud_service.plans.errors import PlanError
from cloud_service.plans.store import SqlPlanStore
from cloud_service.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloud-service",
        description="Flightdeck cloud service: MQTT ingest into InfluxDB with end-to-end acks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, help="TOML settings file (env FLIGHTDECK_CLOUD_* wins)")
    run.add_argument("--log-level", default="INFO")
    check = sub.add_parser("check-config", help="validate a settings file and print it")
    check.add_argument("config", type=Path)
    migrate = sub.add_parser("migrate", help="bring the metadata store's schema up to date")
    migrate.add_argument("--config", type=Path)
    register_analyze(sub)
    _key_commands(sub)
    _plan_commands(sub)
    _rule_commands(sub)
    return parser


def _key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("api-key", help="create, list and revoke REST API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print its token (only now)")
    create.add_argument("name")
    create.add_argument(
        "--scope",
        choices=[s.value for s in Scope],
        default=Scope.READ.value,
        help="read < ack (acknowledge, shelve) < admin (replace rules and plans); default read",
    )
    create.add_argument(
        "--site",
        action="append",
        default=[],
        dest="sites",
        help="restrict the key to this site (repeat for several; none: every site)",
    )
    actions.add_parser("list", help="list keys (never their tokens)")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("name")
    for action in actions.choices.values():
        action.add_argument("--config", type=Path)


def _plan_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plans = sub.add_parser("plans", help="import or export the plan book (SKUs, targets)")
    actions = plans.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="replace the stored plan book with a TOML file")
    imp.add_argument("file", type=Path)
    exp = actions.add_parser("export", help="print the stored plan book")
    exp.add_argument("--format", choices=["toml", "json"], default="toml")
    for action in actions.choices.values():
        action.add_argument("--config", type=Path)


def _rule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="import, export or check the alert rules")
    actions = rules.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="replace the stored alert rules with a TOML file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--config", type=Path)
    exp = actions.add_parser("export", help="print the stored alert rules as TOML")
    exp.add_argument("--config", type=Path)
    check = actions.add_parser("check", help="validate a rule file (exit 2 if invalid)")
    check.add_argument("file", type=Path)


async def _open_store(config: Path | None) -> MetadataStore:
    store = MetadataStore.from_settings(load_settings(config).metadata)
    try:
        await store.migrate()
    except BaseException:
        await store.aclose()
        raise
    return store


def _key_line(key: ApiKey) -> str:
    def when(ms: int | None) -> str:
        return iso(ms) or "-"

    state = f"revoked {when(key.revoked_ms)}" if key.revoked_ms else "active"
    sites = ",".join(sorted(key.sites)) or "*"
    return (f"{key.name:<24} {key.scope.value:<5} sites {sites}  created {when(key.created_ms)}  "
            f"last used {when(key.last_used_ms)}  {state}")  # fmt: skip


async def _api_key(args: argparse.Namespace) -> None:
    store = await _open_store(args.config)
    try:
        keys = SqlApiKeyStore(store.engine)
        if args.action == "create":
            key, token = await keys.create(args.name, args.scope, args.sites)
            print(token)
            where = ", ".join(sorted(key.sites)) or "every site"
            print(f"API key {key.name!r} ({key.scope.value}, {where}): the token above is "
                  "shown only once; send it as 'Authorization: Bearer <token>'",
                  file=sys.stderr)  # fmt: skip
        elif args.action == "list":
            for key in await keys.list():
                print(_key_line(key))
        else:
            print(_key_line(await keys.revoke(args.name)))
    finally:
        await store.aclose()


async def _plans(args: argparse.Namespace) -> None:
    book = load_plan(args.file) if args.action == "import" else None
    store = await _open_store(args.config)
    try:
        plans = SqlPlanStore(store.engine)
        if book is not None:
            await plans.replace(book)
            print(f"imported {len(book.skus)} SKU policies, {len(book.production)} production "
                  f"and {len(book.demand)} demand targets, {len(book.receipts)} scheduled "
                  f"receipts from {args.file}")  # fmt: skip
        else:
            stored = await plans.load()
            print(plan_to_json(stored, indent=2) if args.format == "json" else plan_to_toml(stored))
    finally:
        await store.aclose()


async def _rules(args: argparse.Namespace) -> None:
    new = load_rules(args.file) if args.action == "import" else None  # validate before opening
    store = await _open_store(args.config)
    try:
        rules = SqlRuleStore(store.engine)
        if new is not None:
            await rules.replace(new, actor="cli")
            print(f"imported {len(new)} alert rules from {args.file} (a running service "
                  "picks them up when it restarts)")  # fmt: skip
        else:
            print(rules_to_toml(await rules.load()), end="")
    finally:
        await store.aclose()


async def _migrate(config: Path | None) -> None:
    store = MetadataStore.from_settings(load_settings(config).metadata)
    try:
        await store.migrate()
    finally:
        await store.aclose()


async def _run(config: Path | None) -> None:
    app = build_app(load_settings(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.run(stop)


def _dispatch(args: argparse.Namespace) -> None:
    if args.command in ("api-key", "plans"):
        asyncio.run(_api_key(args) if args.command == "api-key" else _plans(args))
        return
    if args.command == "rules":
        if args.action == "check":
            rules = load_rules(args.file)
            print(f"{args.file}: {len(rules)} alert rules, all valid")
        else:
            asyncio.run(_rules(args))
        return
    if args.command == "check-config":
        print(load_settings(args.config).model_dump_json(indent=2))
        return
    if args.command == "migrate":
        logging.basicConfig(level="INFO")
        asyncio.run(_migrate(args.config))
        return
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per write is noise
    asyncio.run(_run(args.config))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "analyze":
        return run_analyze(args)
    try:
        _dispatch(args)
    except (ConfigError, PlanError, RuleError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ApiKeyError, MetadataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
