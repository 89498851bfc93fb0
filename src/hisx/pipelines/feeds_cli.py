"""``hisx feeds``: status | publish | replay | dead-letters | asyncapi.

Wire into the main parser with ``feeds_cli.add_parser(sub)`` where ``sub`` is the object
returned by ``parser.add_subparsers(...)``; each command sets ``func``.
"""

from __future__ import annotations

import argparse
import json
import sys

from hisx.config import Settings


def _wh(s: Settings):
    from hisx.connectors.warehouse import Warehouse

    return Warehouse.from_url(s.warehouse_url)


def _print_df(df) -> None:
    print(df.to_string(index=False) if len(df) else "(none)")


def cmd_status(args: argparse.Namespace) -> int:
    from hisx.pipelines import feeds

    s = Settings.from_env()
    with _wh(s) as wh:
        _print_df(feeds.status(wh))
    print(f"mode: {'kafka ' + s.feed_bootstrap if s.feed_bootstrap else 'outbox ' + str(s.outbox_dir)}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from hisx.pipelines import feeds

    s = Settings.from_env()
    cfg = feeds.FeedConfig.from_settings(s, batch_size=args.batch_size)
    with _wh(s) as wh:
        st = feeds.publish(wh, cfg)
    print(json.dumps(st.as_dict(), ensure_ascii=False))
    return 0 if st.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from hisx.pipelines import feeds

    s = Settings.from_env()
    with _wh(s) as wh:
        st = feeds.replay(wh, args.dataset, args.center, args.start, args.end, s)
    print(json.dumps(st.as_dict(), ensure_ascii=False))
    return 0 if st.ok else 1


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from hisx.pipelines import feeds

    with _wh(Settings.from_env()) as wh:
        _print_df(feeds.dead_letters(wh, limit=args.limit))
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from hisx.pipelines import asyncapi

    sys.stdout.write(asyncapi.render(args.format))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``feeds`` and its commands on the main parser's subparsers."""
    p = subparsers.add_parser("feeds", help="push feeds to the regional platform (Kafka/outbox)")
    sub = p.add_subparsers(dest="feeds_cmd", required=True)
    sub.add_parser("status", help="ledger counts per dataset, center, state").set_defaults(
        func=cmd_status)
    pub = sub.add_parser("publish", help="send pending ledger messages (resumes after outage)")
    pub.add_argument("--batch-size", type=int, default=5000)
    pub.set_defaults(func=cmd_publish)
    rp = sub.add_parser("replay", help="re-send a range with the same message ids")
    rp.add_argument("--dataset", required=True)
    rp.add_argument("--center", required=True, help="center (tenant org_code)")
    rp.add_argument("--from", dest="start", required=True, help="business date/time, inclusive")
    rp.add_argument("--to", dest="end", required=True,
                    help="business date (whole day included) or time (exclusive)")
    rp.set_defaults(func=cmd_replay)
    dl = sub.add_parser("dead-letters", help="messages routed to hisx.dlq.v1, with reasons")
    dl.add_argument("--limit", type=int, default=100)
    dl.set_defaults(func=cmd_dead_letters)
    aa = sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of the feeds")
    aa.add_argument("--format", choices=["yaml", "json"], default="yaml")
    aa.set_defaults(func=cmd_asyncapi)
    return p
