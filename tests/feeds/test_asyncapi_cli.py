"""The AsyncAPI document and the ``hisx feeds`` commands."""

from __future__ import annotations

import argparse
import json
from datetime import date

import yaml
from jsonschema import Draft202012Validator

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import asyncapi, feeds, feeds_cli

from .samples import visits


def _resolve(doc: dict, ref: str):
    node = doc
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def test_asyncapi_has_every_dataset_channel_and_validates_real_envelopes(duck, tmp_path):
    doc = yaml.safe_load(asyncapi.render("yaml"))
    assert doc == json.loads(asyncapi.render("json"))
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {feeds.topic_for(d) for d in feeds.datasets()} | {feeds.DLQ_TOPIC}
    assert len(feeds.datasets()) == 9
    for op in doc["operations"].values():  # every reference resolves
        _resolve(doc, op["channel"]["$ref"])
        for m in op["messages"]:
            _resolve(doc, m["$ref"])
    # a real envelope validates against the channel's message schema
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", visits(n=3, day=date(2024, 3, 1)), "L1")
    feeds.publish(duck, feeds.FeedConfig(None, tmp_path / "o"))
    line = (tmp_path / "o" / "hisx.std.outpatient_visit.v1.jsonl").read_text().splitlines()[0]
    msg = doc["components"]["messages"]["outpatient_visit"]["payload"]["schema"]
    schema = {**msg, "components": doc["components"]}
    schema["properties"]["payload"] = {"$ref": "#/components/schemas/outpatient_visit"}
    v = Draft202012Validator(schema)
    assert list(v.iter_errors(json.loads(line))) == []
    bad = json.loads(line)
    bad["payload"]["dept_code"] = "ZZ"
    assert list(v.iter_errors(bad))


def _parser():
    p = argparse.ArgumentParser(prog="hisx")
    feeds_cli.add_parser(p.add_subparsers(dest="cmd", required=True))
    return p


def test_cli_publish_status_replay_dead_letters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HISX_HOME", str(tmp_path))
    monkeypatch.delenv("HISX_FEED_BOOTSTRAP", raising=False)
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv("HISX_WAREHOUSE_URL", url)
    wh = Warehouse.from_url(url)
    df = visits(n=4)
    df.loc[0, "dept_code"] = "ZZ"
    with wh.transaction():
        feeds.enqueue(wh, "outpatient_visit", "C001", df, "L1")
    wh.close()

    def run(*argv):
        args = _parser().parse_args(["feeds", *argv])
        rc = args.func(args)
        return rc, capsys.readouterr().out

    rc, out = run("publish")
    assert rc == 0 and json.loads(out)["acked"] == 3 and json.loads(out)["dead"] == 1
    rc, out = run("status")
    assert "acked" in out and "dead" in out and "outbox" in out
    rc, out = run("replay", "--dataset", "outpatient_visit", "--center", "C001",
                  "--from", "2024-03-01", "--to", "2024-03-01")
    assert rc == 0 and json.loads(out)["acked"] == 3
    rc, out = run("dead-letters")
    assert "invalid:dept_code:enum" in out
    rc, out = run("asyncapi", "--format", "json")
    assert json.loads(out)["asyncapi"] == "3.0.0"
