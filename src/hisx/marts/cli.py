"""CLI commands of the marts: ``hisx share install | grant --center C | grant --region |
roles`` and ``hisx report [--out PATH]``. Wired by :func:`add_parser`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hisx.config import Settings
from hisx.connectors.warehouse import Warehouse


def cmd_share(args: argparse.Namespace) -> int:
    from hisx.marts import share

    s = Settings.from_env()
    with Warehouse.from_url(s.warehouse_url) as wh:
        if args.share_cmd == "install":
            views = share.install(wh)
            print(f"installed {len(views)} share views on {wh.dialect}"
                  + ("" if wh.dialect == "postgresql" else " (single-user: no roles, no RLS)"))
        elif args.share_cmd == "grant":
            share.install(wh)
            pw = os.environ.get(share.PASSWORD_ENV) or None
            if args.region:
                role, password = share.grant_region(wh, pw)
            else:
                role, password = share.grant_center(wh, args.center, pw)
            print(f"role {role} ready (SELECT on share.* only)")
            if pw is None:
                print(f"password (shown once): {password}")
        else:
            print(share.list_roles(wh).to_string(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hisx.marts.report_html import write_report

    s = Settings.from_env()
    out = Path(args.out) if args.out else s.home / "report.html"
    with Warehouse.from_url(s.warehouse_url) as wh:
        write_report(wh, out)
    print(f"report: {out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``share`` and ``report`` on the ``hisx`` command's subparsers."""
    sh = subparsers.add_parser("share", help="the SQL share: views, per-center roles (RLS)")
    ssub = sh.add_subparsers(dest="share_cmd", required=True)
    ssub.add_parser("install", help="create/refresh share.* views, comments, RLS policies")
    g = ssub.add_parser("grant", help="create or refresh a read-only login role; password "
                        "from HISX_SHARE_PASSWORD or generated and printed once")
    who = g.add_mutually_exclusive_group(required=True)
    who.add_argument("--center", help="tenant (org_code) the role may read")
    who.add_argument("--region", action="store_true", help="the region role (all centers)")
    ssub.add_parser("roles", help="list share login roles and their tenants")
    sh.set_defaults(func=cmd_share)

    rep = subparsers.add_parser("report", help="write the HTML report of the marts")
    rep.add_argument("--out", help="output path (default: .hisx/report.html)")
    rep.set_defaults(func=cmd_report)
