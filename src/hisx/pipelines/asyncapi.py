"""AsyncAPI 3.0 document of the push feeds, generated from the datasets' JSON Schemas.

One channel per dataset topic (``hisx.std.<dataset>.v<major>``) plus the dead-letter topic;
each message is the feed envelope whose ``payload`` is the dataset's schema, with the Kafka
key and headers described. The platform team reads it as the contract (``hisx feeds
asyncapi > docs/asyncapi.yaml``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hisx.pipelines import feeds

JSON_SCHEMA_FORMAT = "application/schema+json;version=draft-07"

HEADERS = {
    "type": "object",
    "required": ["schema_id", "message_id", "dataset", "content-type"],
    "properties": {
        "schema_id": {"type": "string", "description": "the payload's JSON Schema $id"},
        "message_id": {"type": "string", "format": "uuid",
                       "description": "uuid5(center, dataset, source key, row version)"},
        "dataset": {"type": "string"},
        "content-type": {"type": "string", "const": "application/json"},
    },
}


def _envelope(payload: dict[str, Any], *, dead_letter: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {
        "message_id": {"type": "string", "format": "uuid",
                       "description": "deterministic: the same record version always has the "
                                      "same id; consumers dedup on it"},
        "produced_at": {"type": "string", "format": "date-time"},
        "replayed": {"type": "boolean", "description": "true when re-sent by a replay"},
        "dataset": {"type": "string"},
        "schema_id": {"type": "string"},
        "schema_version": {"type": "string"},
        "tenant": {"type": "string", "description": "center (org_code)"},
        "source_key": {"type": ["integer", "null"]},
        "row_version": {"type": ["integer", "null"]},
        "event_time": {"type": ["string", "null"],
                       "description": "business time, China local with offset"},
        "map_version": {"type": ["string", "null"]},
        "load_id": {"type": "string"},
        "payload": payload,
    }
    required = ["message_id", "produced_at", "dataset", "schema_id", "schema_version", "tenant",
                "source_key", "row_version", "event_time", "map_version", "load_id", "payload"]
    if dead_letter:
        props["original_topic"] = {"type": "string"}
        props["reasons"] = {"type": "array", "items": {"type": "string"},
                            "description": "kind:field[:keyword], never values"}
        required += ["original_topic", "reasons"]
    return {"type": "object", "required": required, "properties": props,
            "additionalProperties": False}


def _payload_schema(schema: dict[str, Any]) -> dict[str, Any]:
    s = copy.deepcopy(schema)
    s.pop("$schema", None)
    return s


def document(datasets: list[str] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict."""
    names = datasets or feeds.datasets()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name in names:
        c = feeds.contract(name)
        schemas[name] = _payload_schema(dict(c.schema))
        messages[name] = {
            "name": name, "title": f"std {name} record version",
            "contentType": "application/json",
            "headers": HEADERS,
            "payload": {"schemaFormat": JSON_SCHEMA_FORMAT,
                        "schema": _envelope({"$ref": f"#/components/schemas/{name}"})},
            "bindings": {"kafka": {"key": {"type": "string", "pattern": r"^[^:]+:-?\d+$",
                                           "description": "<center>:<source key>"},
                                   "bindingVersion": "0.5.0"}},
        }
        channels[name] = {
            "address": c.topic, "title": name,
            "description": f"{c.schema.get('description', name)}; schema {c.schema_id} "
                           f"v{c.version}",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish_{name}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    messages["dead_letter"] = {
        "name": "dead_letter", "contentType": "application/json", "headers": HEADERS,
        "payload": {"schemaFormat": JSON_SCHEMA_FORMAT,
                    "schema": _envelope({"type": "object"}, dead_letter=True)},
    }
    channels["dead_letter"] = {
        "address": feeds.DLQ_TOPIC, "title": "dead letters",
        "description": "records whose payload failed its schema, with the reasons",
        "messages": {"dead_letter": {"$ref": "#/components/messages/dead_letter"}},
    }
    operations["publish_dead_letter"] = {
        "action": "send", "channel": {"$ref": "#/channels/dead_letter"},
        "messages": [{"$ref": "#/channels/dead_letter/messages/dead_letter"}],
    }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:hisx:feeds",
        "info": {"title": "hisx push feeds to the regional health information platform",
                 "version": "1.0.0",
                 "description": "Standardized, schema-valid record versions; keyed by "
                                "center and source key (per-key order); at-least-once with "
                                "deterministic message ids: dedup on message_id."},
        "defaultContentType": "application/json",
        "servers": {"regional": {"host": "kafka.regional.example:9092", "protocol": "kafka",
                                 "description": "set HISX_FEED_BOOTSTRAP"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(fmt: str = "yaml", datasets: list[str] | None = None) -> str:
    doc = document(datasets)
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=100)
