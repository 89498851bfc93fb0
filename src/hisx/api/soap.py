"""SOAP 1.1 web service ``/ws`` (document/literal wrapped), WSDL at ``/ws?wsdl``.

Operations mirror the key REST reads: ``QueryMart``, ``QueryRecords``, ``GetFeedStatus``,
``GetUploadStatus``. The XSD types are generated: record types from the datasets' JSON
Schemas (the feed contract), row types from the mart DDL, status types from the REST
schemas. The key goes in the HTTP header (``Authorization: Bearer`` or ``X-API-Key``), as for
REST. Faults: ``soap:Client`` for bad input and denials (HTTP 401/403/429 for denials, 500
otherwise, as SOAP 1.1 over HTTP prescribes for faults), ``soap:Server`` for our errors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hisx.api import catalog, data, rest, xmlsafe
from hisx.api.auth import ApiError, authenticate, presented_key, resolve_center
from hisx.api.keys import ApiKey

log = logging.getLogger("hisx.api.soap")
TNS = "urn:hisx:share:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XS = "http://www.w3.org/2001/XMLSchema"
_CENTER = re.compile(rest.CENTER_PATTERN)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# -- XSD from the schemas ----------------------------------------------------------------------
@dataclass(frozen=True)
class XField:
    name: str
    xs_type: str  # xs:string, xs:long, xs:double, xs:decimal, xs:boolean, xs:date, ...
    optional: bool
    restriction: str = ""  # facets for xs:string


def _types(p: dict[str, Any]) -> set[str]:
    t = p.get("type")
    return {t} if isinstance(t, str) else set(t or ())


def fields_from_json_schema(schema: dict[str, Any]) -> list[XField]:
    out = []
    for name, p in schema["properties"].items():
        types = _types(p)
        optional = "null" in types
        fmt = p.get("format")
        facets = ""
        if fmt == "date":
            xt = "xs:date"
        elif fmt == "date-time":
            xt = "xs:dateTime"
        elif "integer" in types:
            xt = "xs:long"
        elif "number" in types:
            xt = "xs:decimal" if p.get("x-sql-type", "").startswith("NUMERIC") else "xs:double"
        elif "boolean" in types:
            xt = "xs:boolean"
        else:
            xt = "xs:string"
            for code in p.get("enum") or ():
                if code is not None:
                    facets += f"<xs:enumeration value={quoteattr(str(code))}/>"
            if p.get("maxLength") and not facets:
                facets += f'<xs:maxLength value="{int(p["maxLength"])}"/>'
            pat = p.get("pattern")
            if pat and not facets and pat.startswith("^") and pat.endswith("$"):
                facets += f"<xs:pattern value={quoteattr(pat[1:-1])}/>"
        out.append(XField(name, xt, optional, facets))
    return out


def _complex(name: str, fields: list[XField]) -> str:
    parts = [f'<xs:complexType name="{name}"><xs:sequence>']
    for f in fields:
        occurs = ' minOccurs="0"' if f.optional else ""
        if f.restriction:
            parts.append(f'<xs:element name="{f.name}"{occurs}><xs:simpleType>'
                         f'<xs:restriction base="xs:string">{f.restriction}</xs:restriction>'
                         "</xs:simpleType></xs:element>")
        else:
            parts.append(f'<xs:element name="{f.name}" type="{f.xs_type}"{occurs}/>')
    parts.append("</xs:sequence></xs:complexType>")
    return "".join(parts)


def record_fields(ds: str) -> list[XField]:
    return fields_from_json_schema(catalog.record_schema(ds))


def mart_fields(name: str) -> list[XField]:
    return fields_from_json_schema(catalog.mart_row_schema(name))


def _wrapper(name: str, body: str) -> str:
    return f'<xs:element name="{name}"><xs:complexType><xs:sequence>{body}</xs:sequence>' \
           "</xs:complexType></xs:element>"


def _opt(name: str, xt: str) -> str:
    return f'<xs:element name="{name}" type="{xt}" minOccurs="0"/>'


def _enum_type(name: str, values: list[str]) -> str:
    facets = "".join(f"<xs:enumeration value={quoteattr(v)}/>" for v in values)
    return (f'<xs:simpleType name="{name}"><xs:restriction base="xs:string">{facets}'
            "</xs:restriction></xs:simpleType>")


def xsd() -> str:
    marts, dss = list(catalog.marts()), catalog.datasets()
    t = [_enum_type("MartName", marts), _enum_type("DatasetName", dss),
         '<xs:complexType name="Filter"><xs:sequence><xs:element name="name" '
         'type="xs:string"/><xs:element name="value" type="xs:string"/></xs:sequence>'
         "</xs:complexType>"]
    t += [_complex(f"{m}_row", mart_fields(m)) for m in marts]
    t += [_complex(f"{d}_record", record_fields(d)) for d in dss]
    t.append(_complex("FeedStatus", fields_from_json_schema(rest.FEED_ITEM)))
    t.append(_complex("UploadStatus", fields_from_json_schema(rest.QUALITY_ITEM)))
    page = (_opt("center", "xs:string") + _opt("dateFrom", "xs:date")
            + _opt("dateTo", "xs:date") + _opt("limit", "xs:int") + _opt("offset", "xs:long"))
    t.append(_wrapper("QueryMart", '<xs:element name="mart" type="tns:MartName"/>' + page
                      + '<xs:element name="filter" type="tns:Filter" minOccurs="0" '
                        'maxOccurs="unbounded"/>'))
    t.append(_wrapper("QueryMartResponse", '<xs:element name="mart" type="xs:string"/>'
                      + _opt("center", "xs:string") + _opt("nextOffset", "xs:long")
                      + '<xs:element name="rows"><xs:complexType><xs:sequence>'
                      + "".join(f'<xs:element name="{m}" type="tns:{m}_row" minOccurs="0" '
                                'maxOccurs="unbounded"/>' for m in marts)
                      + "</xs:sequence></xs:complexType></xs:element>"))
    t.append(_wrapper("QueryRecords", '<xs:element name="dataset" type="tns:DatasetName"/>'
                      + page))
    t.append(_wrapper("QueryRecordsResponse", '<xs:element name="dataset" type="xs:string"/>'
                      + _opt("center", "xs:string") + _opt("nextOffset", "xs:long")
                      + '<xs:element name="records"><xs:complexType><xs:sequence>'
                      + "".join(f'<xs:element name="{d}" type="tns:{d}_record" minOccurs="0"'
                                ' maxOccurs="unbounded"/>' for d in dss)
                      + "</xs:sequence></xs:complexType></xs:element>"))
    t.append(_wrapper("GetFeedStatus", _opt("center", "xs:string")))
    t.append(_wrapper("GetFeedStatusResponse", '<xs:element name="status" '
                      'type="tns:FeedStatus" minOccurs="0" maxOccurs="unbounded"/>'))
    t.append(_wrapper("GetUploadStatus", _opt("center", "xs:string")
                      + _opt("dateFrom", "xs:date") + _opt("dateTo", "xs:date")))
    t.append(_wrapper("GetUploadStatusResponse", '<xs:element name="upload" '
                      'type="tns:UploadStatus" minOccurs="0" maxOccurs="unbounded"/>'))
    t.append('<xs:element name="error"><xs:complexType><xs:sequence><xs:element '
             'name="status" type="xs:int"/><xs:element name="code" type="xs:string"/>'
             "</xs:sequence></xs:complexType></xs:element>")
    return (f'<xs:schema xmlns:xs="{XS}" xmlns:tns="{TNS}" targetNamespace="{TNS}" '
            f'elementFormDefault="qualified">{"".join(t)}</xs:schema>')


def wsdl(location: str) -> str:
    ops = list(OPERATIONS)
    msgs = "".join(
        f'<wsdl:message name="{o}In"><wsdl:part name="parameters" element="tns:{o}"/>'
        f'</wsdl:message><wsdl:message name="{o}Out"><wsdl:part name="parameters" '
        f'element="tns:{o}Response"/></wsdl:message>' for o in ops)
    port = "".join(f'<wsdl:operation name="{o}"><wsdl:input message="tns:{o}In"/>'
                   f'<wsdl:output message="tns:{o}Out"/></wsdl:operation>' for o in ops)
    binding = "".join(
        f'<wsdl:operation name="{o}"><soap:operation soapAction="{TNS}#{o}" '
        'style="document"/><wsdl:input><soap:body use="literal"/></wsdl:input>'
        '<wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation>' for o in ops)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
        f'xmlns:xs="{XS}" xmlns:tns="{TNS}" targetNamespace="{TNS}" name="HisxShare">'
        f"<wsdl:types>{xsd()}</wsdl:types>{msgs}"
        f'<wsdl:portType name="HisxSharePort">{port}</wsdl:portType>'
        '<wsdl:binding name="HisxShareBinding" type="tns:HisxSharePort">'
        '<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f"{binding}</wsdl:binding>"
        '<wsdl:service name="HisxShareService"><wsdl:port name="HisxSharePort" '
        f'binding="tns:HisxShareBinding"><soap:address location={quoteattr(location)}/>'
        "</wsdl:port></wsdl:service></wsdl:definitions>")


# -- messages ------------------------------------------------------------------------------------
class SoapFault(Exception):
    def __init__(self, code: str, message: str, status: int = 500,
                 fault: str = "soap:Client") -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.fault = code, message, status, fault


def _text(v: Any, xt: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if xt == "xs:decimal" and isinstance(v, float):
        return format(Decimal(repr(v)), "f")
    return _INVALID_XML.sub("\ufffd", str(v))


def _element(name: str, row: dict[str, Any], fields: list[XField]) -> str:
    parts = [f"<tns:{name}>"]
    for f in fields:
        v = row.get(f.name)
        if v is None:
            continue
        parts.append(f"<tns:{f.name}>{escape(_text(v, f.xs_type))}</tns:{f.name}>")
    parts.append(f"</tns:{name}>")
    return "".join(parts)


def envelope(body: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
            f'xmlns:tns="{TNS}"><soap:Body>{body}</soap:Body></soap:Envelope>')


def fault_xml(f: SoapFault) -> str:
    return envelope(f"<soap:Fault><faultcode>{f.fault}</faultcode><faultstring>"
                    f"{escape(f.code + ': ' + f.message)}</faultstring><detail><tns:error>"
                    f"<tns:status>{f.status}</tns:status><tns:code>{escape(f.code)}</tns:code>"
                    "</tns:error></detail></soap:Fault>")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _args(op: Element) -> dict[str, Any]:
    """Child elements by local name; repeated ``filter`` elements as a list of pairs."""
    out: dict[str, Any] = {"filter": []}
    for child in op:
        name = _local(child.tag)
        if name == "filter":
            pair = {_local(c.tag): (c.text or "") for c in child}
            out["filter"].append((pair.get("name", ""), pair.get("value", "")))
        else:
            out[name] = (child.text or "").strip()
    return out


def _center(a: dict[str, Any]) -> str | None:
    c = a.get("center") or None
    if c is not None and not _CENTER.match(c):
        raise SoapFault("invalid_parameter", "center must match " + rest.CENTER_PATTERN)
    return c


def _date(a: dict[str, Any], name: str) -> date | None:
    v = a.get(name)
    if not v:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise SoapFault("invalid_parameter", f"{name} must be a date YYYY-MM-DD") from None


def _int(a: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = a.get(name)
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise SoapFault("invalid_parameter", f"{name} must be an integer") from None
    if not lo <= n <= hi:
        raise SoapFault("invalid_parameter", f"{name} must be in [{lo}, {hi}]")
    return n


@dataclass
class Call:
    request: Request
    key: ApiKey
    args: dict[str, Any]
    audit_params: dict[str, Any]


def _audit_rows(call: Call, op: str, table) -> None:
    persons = ([p for p in table.column("person_key").to_pylist() if p]
               if "person_key" in table.column_names else [])
    if not persons:
        return
    call.request.app.state.keys.audit(
        key=call.key, interface="soap", endpoint=op, params=call.audit_params,
        outcome="allowed", status=200, person_keys=persons,
        record_keys=table.column("source_key").to_pylist()
        if "source_key" in table.column_names else [])


def op_query_mart(call: Call) -> str:
    a = call.args
    name = a.get("mart", "")
    mart = catalog.marts().get(name)
    if mart is None:
        raise SoapFault("invalid_parameter", "mart must be one of the MartName values")
    tenant = resolve_center(call.key, _center(a))
    allowed = {c.name: c for c in mart.filters}
    filters: dict[str, Any] = {}
    for fname, value in a["filter"]:
        col = allowed.get(fname)
        if col is None:
            raise SoapFault("invalid_parameter", f"{name} has no filter {fname[:40]!r}")
        if col.kind == "boolean":
            if value not in ("true", "false", "1", "0"):
                raise SoapFault("invalid_parameter", f"filter {fname} takes a boolean")
            filters[fname] = value in ("true", "1")
        else:
            filters[fname] = value
    limit = _int(a, "limit", 1000, 1, rest.PAGE_MAX)
    offset = _int(a, "offset", 0, 0, 2**40)
    with call.request.app.state.reader.session() as s:
        table, nxt = data.query_mart(s, name, tenant, _date(a, "dateFrom"), _date(a, "dateTo"),
                                     filters, limit, offset)
    _audit_rows(call, "QueryMart", table)
    fields = mart_fields(name)
    items = "".join(_element(name, r, fields) for r in catalog.rows(table))
    return _page_response("QueryMart", ("mart", name), tenant, nxt, ("rows", items))


def _page_response(op: str, head: tuple[str, str], tenant: str | None, nxt: int | None,
                   body: tuple[str, str]) -> str:
    """``<tns:{op}Response>`` of a paged read: what was asked, the center, next offset, rows."""
    return (f"<tns:{op}Response><tns:{head[0]}>{head[1]}</tns:{head[0]}>"
            + (f"<tns:center>{escape(tenant)}</tns:center>" if tenant else "")
            + (f"<tns:nextOffset>{nxt}</tns:nextOffset>" if nxt is not None else "")
            + f"<tns:{body[0]}>{body[1]}</tns:{body[0]}></tns:{op}Response>")


def op_query_records(call: Call) -> str:
    a = call.args
    ds = a.get("dataset", "")
    if ds not in catalog.datasets():
        raise SoapFault("invalid_parameter", "dataset must be one of the DatasetName values")
    tenant = resolve_center(call.key, _center(a))
    limit = _int(a, "limit", 1000, 1, rest.PAGE_MAX)
    offset = _int(a, "offset", 0, 0, 2**40)
    with call.request.app.state.reader.session() as s:
        table, nxt = data.query_records(s, ds, tenant, _date(a, "dateFrom"),
                                        _date(a, "dateTo"), limit, offset)
    _audit_rows(call, "QueryRecords", table)
    fields = record_fields(ds)
    items = "".join(_element(ds, r, fields) for r in catalog.rows(table))
    return _page_response("QueryRecords", ("dataset", ds), tenant, nxt, ("records", items))


def op_feed_status(call: Call) -> str:
    tenant = resolve_center(call.key, _center(call.args))
    with call.request.app.state.reader.session() as s:
        rows = catalog.rows(data.feed_status(s, tenant))
    fields = fields_from_json_schema(rest.FEED_ITEM)
    return ("<tns:GetFeedStatusResponse>" + "".join(_element("status", r, fields)
                                                    for r in rows)
            + "</tns:GetFeedStatusResponse>")


def op_upload_status(call: Call) -> str:
    a = call.args
    tenant = resolve_center(call.key, _center(a))
    with call.request.app.state.reader.session() as s:
        rows = catalog.rows(data.quality(s, tenant, _date(a, "dateFrom"), _date(a, "dateTo")))
    fields = fields_from_json_schema(rest.QUALITY_ITEM)
    return ("<tns:GetUploadStatusResponse>" + "".join(_element("upload", r, fields)
                                                      for r in rows)
            + "</tns:GetUploadStatusResponse>")


#: operation name -> handler (the WSDL is generated from this; tests enumerate it)
OPERATIONS: dict[str, Callable[[Call], str]] = {
    "QueryMart": op_query_mart,
    "QueryRecords": op_query_records,
    "GetFeedStatus": op_feed_status,
    "GetUploadStatus": op_upload_status,
}


# -- HTTP ----------------------------------------------------------------------------------------
def _xml(text: str, status: int = 200) -> Response:
    return Response(text.encode("utf-8"), status_code=status,
                    media_type="text/xml; charset=utf-8")


def build_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/ws")
    def get_wsdl(request: Request) -> Response:
        if "wsdl" not in {k.lower() for k in request.query_params}:
            return _xml(fault_xml(SoapFault("use_post", "POST SOAP 1.1 envelopes here; the "
                                            "WSDL is at /ws?wsdl")), 405)
        return _xml(wsdl(str(request.base_url).rstrip("/") + "/ws"))

    @r.post("/ws")
    async def soap_call(request: Request) -> Response:
        st = request.app.state
        key: ApiKey | None = None
        op_name, params = "?", {}
        try:
            try:
                body = await xmlsafe.read_capped(request.stream(),
                                                 request.headers.get("content-length"))
                root = xmlsafe.parse(body)
            except xmlsafe.XmlRejected as exc:
                raise SoapFault(exc.code, str(exc), 413 if exc.code == "too_large" else 500
                                ) from None
            if root.tag != f"{{{SOAP_ENV}}}Envelope":
                raise SoapFault("not_soap11", "root element must be a SOAP 1.1 Envelope")
            bodies = [c for c in root if c.tag == f"{{{SOAP_ENV}}}Body"]
            if len(bodies) != 1 or len(bodies[0]) != 1:
                raise SoapFault("bad_envelope", "one Body with one operation element expected")
            op_el = bodies[0][0]
            op_name = _local(op_el.tag)
            handler = OPERATIONS.get(op_name)
            if handler is None or not op_el.tag.startswith(f"{{{TNS}}}"):
                op_name = op_name[:60]
                raise SoapFault("unknown_operation", f"no operation {op_name!r} in {TNS}")
            args = _args(op_el)
            params = {k: v for k, v in args.items() if v}
            key = authenticate(st.key_cache, st.limiter,
                               presented_key(request.headers.get("authorization"),
                                             request.headers.get("x-api-key")))
            call = Call(request, key, args, params)
            out = await run_in_threadpool(handler, call)
            return _xml(envelope(out))
        except ApiError as exc:
            if exc.denied:
                st.keys.audit(key=key, interface="soap", endpoint=op_name, params=params,
                              outcome="denied", status=exc.status,
                              reason=f"{exc.code}: {exc.message}")
            status = exc.status if exc.denied or exc.status == 503 else 500
            resp = _xml(fault_xml(SoapFault(exc.code, exc.message, status)), status)
            if exc.retry_after is not None:
                resp.headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
            return resp
        except SoapFault as f:
            return _xml(fault_xml(f), f.status)
        except Exception:
            log.exception("SOAP operation %s failed", op_name)
            return _xml(fault_xml(SoapFault("internal", "internal error", 500, "soap:Server")),
                        500)

    return r
