"""A schema registry and a Confluent-wire-format Avro encoder for lake's tests.

No Confluent, Karapace or Redpanda registry installs on the test machine (they need a JVM,
Docker, or Python 3.12), so `serve` implements the registry's documented REST endpoints that
producers and lake use, in memory:

  POST /subjects/{subject}/versions   {"schema": "<avro json>"} -> {"id": n}  (same schema: same id)
  GET  /schemas/ids/{id}              -> {"schema": "<avro json>"}, 404 {"error_code": 40403}
  GET  /subjects                      -> ["subject", ...]
  GET  /subjects/{subject}/versions   -> [1, 2, ...]

With --user/--password it asks for HTTP basic auth (401 otherwise); --fail-first N answers the
first N schema lookups with HTTP 503, as a registry that is restarting does.

`encode --registry URL` reads JSON lines {"topic", "key_schema"?, "key"?, "schema"?, "value"?} from
stdin, registers each schema under <topic>-key / <topic>-value, encodes the datums with fastavro
(an Avro implementation other than lake's) and writes one JSON line per message:
{"key": "<base64>"|null, "value": "<base64>"|null}. Strings in decimal fields become Decimals.
"value": null is a tombstone; "raw_value" (base64) is sent as given (corrupt data).

Usage: python avro_registry.py serve --port-file F [--user U --password P] [--fail-first N]
       python avro_registry.py encode --registry http://127.0.0.1:PORT
"""

import argparse
import base64
import decimal
import io
import json
import struct
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT = "application/vnd.schemaregistry.v1+json"


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}
        self.ids = {}
        self.subjects = {}

    def register(self, subject, schema):
        canon = json.dumps(json.loads(schema), sort_keys=True)
        with self.lock:
            sid = self.ids.get(canon)
            if sid is None:
                sid = len(self.by_id) + 1
                self.ids[canon] = sid
                self.by_id[sid] = schema
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid


def serve(args):
    reg = Registry()
    failures = {"left": args.fail_first}
    expected_auth = None
    if args.user is not None:
        token = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
        expected_auth = f"Basic {token}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if expected_auth is None or self.headers.get("Authorization") == expected_auth:
                return True
            self.reply(401, {"error_code": 401, "message": "Unauthorized"})
            return False

        def do_GET(self):
            if not self.authorized():
                return
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts[:2] == ["schemas", "ids"] and len(parts) == 3:
                with reg.lock:
                    if failures["left"] > 0:
                        failures["left"] -= 1
                        self.reply(503, {"error_code": 50003, "message": "restarting"})
                        return
                try:
                    schema = reg.by_id.get(int(parts[2]))
                except ValueError:
                    schema = None
                if schema is None:
                    self.reply(404, {"error_code": 40403, "message": f"Schema {parts[2]} not found"})
                else:
                    self.reply(200, {"schema": schema})
            elif parts == ["subjects"]:
                self.reply(200, sorted(reg.subjects))
            elif len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                versions = reg.subjects.get(parts[1])
                if versions is None:
                    self.reply(404, {"error_code": 40401, "message": "Subject not found"})
                else:
                    self.reply(200, list(range(1, len(versions) + 1)))
            else:
                self.reply(404, {"error_code": 404, "message": "not found"})

        def do_POST(self):
            if not self.authorized():
                return
            parts = [p for p in self.path.split("/") if p]
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                self.reply(200, {"id": reg.register(parts[1], body["schema"])})
            else:
                self.reply(404, {"error_code": 404, "message": "not found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os

    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


def register(url, subject, schema, auth):
    req = urllib.request.Request(
        f"{url}/subjects/{subject}/versions",
        data=json.dumps({"schema": json.dumps(schema)}).encode(),
        headers={"Content-Type": CONTENT},
        method="POST",
    )
    if auth:
        req.add_header("Authorization", auth)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["id"]


def collect(schema, named):
    """Named types of a schema by short and full name."""
    if isinstance(schema, list):
        for branch in schema:
            collect(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "error", "enum", "fixed") and "name" in schema:
            named[schema["name"]] = schema
            if "namespace" in schema:
                named[schema["namespace"] + "." + schema["name"]] = schema
        for f in schema.get("fields", []):
            collect(f["type"], named)
        for k in ("items", "values", "type"):
            if isinstance(schema.get(k), (dict, list)):
                collect(schema[k], named)


def with_decimals(schema, value, named):
    """Strings in decimal-typed places become Decimals (JSON has no decimal type)."""
    if value is None:
        return None
    if isinstance(schema, str):
        if schema in named:
            return with_decimals(named[schema], value, named)
        return value
    if isinstance(schema, list):
        for branch in schema:
            if branch == "null":
                continue
            return with_decimals(branch, value, named)
        return value
    t = schema.get("type")
    if schema.get("logicalType") == "decimal" and isinstance(value, str):
        return decimal.Decimal(value)
    if t in ("record", "error"):
        return {
            f["name"]: with_decimals(f["type"], value.get(f["name"]), named)
            for f in schema["fields"]
            if f["name"] in value
        }
    if isinstance(t, (dict, list)) or (isinstance(t, str) and t in named):
        return with_decimals(t, value, named)
    return value


def encode(args):
    import fastavro

    auth = None
    if args.user is not None:
        auth = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    ids = {}

    def framed(subject, schema, datum):
        key = json.dumps(schema, sort_keys=True)
        if (subject, key) not in ids:
            ids[(subject, key)] = (register(args.registry, subject, schema, auth), fastavro.parse_schema(schema))
        sid, parsed = ids[(subject, key)]
        out = io.BytesIO()
        out.write(b"\x00" + struct.pack(">I", sid))
        named = {}
        collect(schema, named)
        fastavro.schemaless_writer(out, parsed, with_decimals(schema, datum, named))
        return base64.b64encode(out.getvalue()).decode()

    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        key = None
        if m.get("key") is not None:
            key = framed(m["topic"] + "-key", m["key_schema"], m["key"])
        if "raw_value" in m:
            value = m["raw_value"]
        elif m.get("value") is None:
            value = None
        else:
            value = framed(m["topic"] + "-value", m["schema"], m["value"])
        sys.stdout.write(json.dumps({"key": key, "value": value}) + "\n")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port-file", required=True)
    s.add_argument("--user")
    s.add_argument("--password")
    s.add_argument("--fail-first", type=int, default=0)
    e = sub.add_parser("encode")
    e.add_argument("--registry", required=True)
    e.add_argument("--user")
    e.add_argument("--password")
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else encode(args)


if __name__ == "__main__":
    main()
