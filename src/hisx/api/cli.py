"""CLI of the share API: ``hisx serve``, ``hisx keys create|list|revoke``, ``hisx audit``.
Wired by :func:`add_parser` (``add_parser(sub)`` in :mod:`hisx.cli`)."""

from __future__ import annotations

import argparse
import json

from hisx.api.keys import SCOPES, KeyStore


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hisx.api.app import create_app

    if args.host not in ("127.0.0.1", "::1", "localhost") and not args.allow_remote:
        raise ValueError(f"refusing to bind {args.host}: loopback only unless --allow-remote "
                         "(put a TLS proxy in front)")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    store = KeyStore()
    try:
        if args.keys_cmd == "create":
            scopes = [s for part in args.scopes for s in part.split(",") if s]
            plain, rec = store.create(args.tenant, scopes, label=args.label, rate=args.rate,
                                      burst=args.burst)
            print(f"key id {rec.key_id} for tenant {rec.tenant}, scopes "
                  f"{' '.join(sorted(rec.scopes))}")
            print(f"API key (shown once, store it in your secret store): {plain}")
        elif args.keys_cmd == "list":
            for k in store.list():
                state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
                print(f"{k.key_id}  {k.tenant:<24} {' '.join(sorted(k.scopes)):<40} "
                      f"{k.rate:g}/s burst {k.burst:g}  {state}  {k.label or ''}")
        else:
            if not store.revoke(args.key_id):
                raise ValueError(f"no active key {args.key_id}")
            print(f"revoked {args.key_id}")
    finally:
        store.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    store = KeyStore()
    try:
        rows = store.audit_rows(tenant=args.tenant, person=args.person, since=args.since,
                                outcome=args.outcome, limit=args.limit)
    finally:
        store.close()
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the share API (REST /api/v1, SOAP /ws)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback bind address")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys: create | list | revoke")
    ks = keys.add_subparsers(dest="keys_cmd", required=True)
    c = ks.add_parser("create", help="create a key (printed once)")
    c.add_argument("--tenant", required=True, help="center code, or '*' for the region")
    c.add_argument("--scopes", nargs="+", required=True,
                   help=f"one or more of {', '.join(SCOPES)} (space or comma separated)")
    c.add_argument("--label")
    c.add_argument("--rate", type=float, default=50.0, help="requests per second")
    c.add_argument("--burst", type=float, default=100.0, help="bucket size")
    ks.add_parser("list", help="list keys (never the secrets)")
    rv = ks.add_parser("revoke", help="revoke a key by id")
    rv.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    audit = sub.add_parser("audit", help="query the API audit trail (newest first, JSON lines)")
    audit.add_argument("--tenant")
    audit.add_argument("--person", help="pseudonymous person key")
    audit.add_argument("--since", help="ISO date or timestamp (UTC)")
    audit.add_argument("--outcome", choices=["allowed", "denied"])
    audit.add_argument("--limit", type=int, default=1000)
    audit.set_defaults(func=cmd_audit)
