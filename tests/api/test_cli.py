"""``hisx keys create|list|revoke`` and ``hisx audit`` through the parser built by add_parser."""

from __future__ import annotations

import argparse
import json

from hisx.api import cli
from hisx.api.keys import KeyStore


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hisx")
    cli.add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_keys_and_audit_cli(tmp_path, monkeypatch, capsys) -> None:
    db = tmp_path / "keys.sqlite"
    monkeypatch.setenv("HISX_API_DB", str(db))
    assert _run(["keys", "create", "--tenant", "C1", "--scopes", "center:read,person:read"]) == 0
    out = capsys.readouterr().out
    plain = out.split("shown once, store it in your secret store): ")[1].strip()
    key_id = out.split()[2]
    store = KeyStore(db)
    assert store.verify(plain).tenant == "C1"
    store.audit(key=store.verify(plain), interface="rest", endpoint="/x", params={},
                outcome="denied", status=403, person_keys=["a" * 64])
    store.close()
    assert _run(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "active" in listed and plain.rsplit("_", 1)[1] not in listed
    assert _run(["audit", "--tenant", "C1", "--person", "a" * 64]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["outcome"] == "denied"
    assert _run(["audit", "--tenant", "C2"]) == 0 and capsys.readouterr().out == ""
    assert _run(["keys", "revoke", key_id]) == 0
    store = KeyStore(db)
    assert store.verify(plain) is None
    store.close()


def test_keys_create_rejects_bad_scopes(tmp_path, monkeypatch) -> None:
    import pytest

    monkeypatch.setenv("HISX_API_DB", str(tmp_path / "k.sqlite"))
    with pytest.raises(ValueError, match="unknown"):
        _run(["keys", "create", "--tenant", "C1", "--scopes", "everything"])
    with pytest.raises(ValueError, match="region:read needs tenant"):
        _run(["keys", "create", "--tenant", "C1", "--scopes", "region:read"])


def test_serve_refuses_non_loopback() -> None:
    import pytest

    with pytest.raises(ValueError, match="loopback only"):
        _run(["serve", "--host", "0.0.0.0"])
