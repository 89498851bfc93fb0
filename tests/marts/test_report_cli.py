"""The HTML report renders every chart as an embedded PNG; the CLI parser wiring."""

from __future__ import annotations

import argparse
import base64
import re

from hisx.marts import cli, report_html


def test_report_is_self_contained_with_every_chart(duck_world, tmp_path) -> None:
    out = report_html.write_report(duck_world, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == len(report_html.CHARTS)
    for b64 in imgs:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "http://" not in text and "https://" not in text
    assert "<h2>Centers</h2>" in text


def test_cli_parsers() -> None:
    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers(dest="cmd", required=True))
    a = p.parse_args(["share", "grant", "--center", "42500061231011511B1001"])
    assert a.func is cli.cmd_share and a.share_cmd == "grant" and not a.region
    assert p.parse_args(["share", "grant", "--region"]).region
    assert p.parse_args(["share", "roles"]).share_cmd == "roles"
    assert p.parse_args(["share", "install"]).share_cmd == "install"
    r = p.parse_args(["report", "--out", "x.html"])
    assert r.func is cli.cmd_report and r.out == "x.html"
