#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/seeds/<target>/, from the
vectors (tests/vectors/vectors.json, and ../shared/vectors/vectors.json beside
the repository when it is there), the built-in scheme descriptors
(src/scheme/presets.toml), the shipped config, and hand-written cases.

Run from anywhere: python3 fuzz/seeds.py
Then fuzz with them (see docs/testing.md).
"""

import hashlib
import json
import pathlib
import re
import shutil

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent

def vectors():
    """The repository's vectors, and the shared ones it has not copied."""
    out = {v["id"]: v for v in json.loads((ROOT / "tests/vectors/vectors.json").read_text())}
    shared = ROOT.parent / "shared/vectors/vectors.json"
    if shared.is_file():
        for v in json.loads(shared.read_text()):
            out.setdefault(v["id"], v)
    return list(out.values())


VECTORS = vectors()
PRESETS = (ROOT / "src/scheme/presets.toml").read_text()
NOW = 1700000000


def write(target, data):
    """Stores one seed, named by its hash like libFuzzer's corpus files."""
    if isinstance(data, str):
        data = data.encode()
    folder = FUZZ / "seeds" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def delivery(v):
    """A vector as hookgate_fuzz::Delivery reads it."""
    target = v["url"] or "/hooks/in"
    head = [f"{v['method']} {target}"]
    head += [f"{k}: {val}" for k, val in v["headers"].items()]
    return "\n".join(head) + "\n\n" + v["body"]


def json_pointers(body):
    """Pointers to every member and element of a JSON body, and a few misses."""
    out = ["", "/missing", "/0", "/id/x"]

    def walk(value, at):
        out.append(at)
        if isinstance(value, dict):
            for k, child in value.items():
                walk(child, at + "/" + k.replace("~", "~0").replace("/", "~1"))
        elif isinstance(value, list):
            for i, child in enumerate(value):
                walk(child, f"{at}/{i}")

    try:
        walk(json.loads(body), "")
    except ValueError:
        pass
    return out


TEMPLATES = sorted(set(re.findall(r'(?:signed|body) = "((?:[^"\\]|\\.)*)"', PRESETS))) + [
    "{method}{url}{path}?{query}{id}.{timestamp}.{body}{secret}{form_params}",
    "{header:x-id}{json:/data/type}{form:id}{query:id}{signature:t}",
    "{hmac:json:/payload/plainToken}{hmac:query:challenge}",
    "v0:{timestamp}:{body}{json:/a~1b/~0c/0}",
]

HANDWRITTEN_DELIVERIES = [
    "POST /in?id=q1&challenge=c&hub.mode=subscribe\ncontent-type: application/x-www-form-urlencoded\nx-sig: t=1700000000,v1=00,id=s1\n\nid=f1&Digits=1234&Digits=5678&From=%2B1415+x",
    "GET https://h.example:8443/in?challenge=abc&validationToken=Validation%3A+Testing\nx-id: h1\n\n",
    'POST /in\ncontent-type: application/json\nauthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjE3MDAwMDAwMDB9.AQI\n\n{"id":"e1","data":{"type":"t","challenge":"c"},"type":1,"value":[{"clientState":"s"}]}',
]

BODIES = [
    "POST /in HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello",
    "POST /in HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "POST /in HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    "POST /in HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nx\r\n0\r\n\r\n",
    "POST /in HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "POST /in HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "POST /in HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "POST /in HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "POST /in HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "POST /in HTTP/1.0\r\nContent-Length: 2\r\n\r\nhiPOST /in HTTP/1.1\r\n\r\n",
    "GET /in HTTP/1.1\r\nHost: gw\r\n\r\n",
]


def framings(body):
    """A body sent with Content-Length, and in chunks."""
    raw = body.encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(raw[i : i + 7]), raw[i : i + 7]) for i in range(0, len(raw), 7))
    return [
        b"POST /in HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s" % (len(raw), raw),
        b"POST /in HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % chunks,
    ]


CONFIG_ROUTE = """
[[routes]]
name = "{name}"
path = "/{name}"
upstream = "http://127.0.0.1:3000/in"
{extra}
[routes.verify]
scheme = "{scheme}"
secrets = ["{secret}"]
"""

CONFIG_FULL = """
[server]
listen = ["127.0.0.1:8080", "[::1]:8081"]
admin_listen = "127.0.0.1:9190"
threads = 2
max_body_bytes = 65536
read_timeout_ms = 5000
upstream_timeout_ms = 5000
access_log = "off"
header_timeout_ms = 1000
keepalive_timeout_secs = 5
max_connections = 10
max_header_bytes = 8192
max_inflight_body_bytes = 1048576

[schemes.acme]
algorithm = "hmac-sha512"
key = "base64"
signed = "{method}{url}{timestamp}.{id}.{body}"
url_ports = true
tolerance_secs = 120
signature = { header = ["X-Acme-Sig", "X-Acme-Sig-2"], format = "versioned", separator = " ", key = "v2", encoding = "base64url" }
timestamp = { from = "header:X-Acme-Time", format = "unix-ms" }
event = { id = ["header:X-Acme-Id", "json:/id"], type = "json:/data/type" }
[[schemes.acme.handshake]]
method = "GET"
verify_first = false
when = "query:challenge"
verify_token = "query:token"
status = 200
content_type = "text/plain"
body = "{query:challenge}"
headers = { "X-Echo" = "{header:X-Challenge}" }

[[routes]]
name = "acme"
host = "hooks.example.com:8443"
path_prefix = "/acme/"
methods = ["POST", "GET"]
upstream = "https://[::1]:8443/in/?k=v"
upstream_ca_file = "ca.pem"
public_url = "https://hooks.example.com/acme"
verify_token = "file:secret"
strip_signature_headers = true
max_body_bytes = 1024
[[routes.verify]]
scheme = "acme"
secrets = ["c2VjcmV0", "env:HOOKGATE_FUZZ_UNSET"]
[[routes.verify]]
scheme = "hmac"
header = "X-Webhook-Signature"
algorithm = "sha1"
encoding = "base64"
prefix = "sha1="
payload = "{timestamp}.{id}.{body}"
timestamp_header = "X-Webhook-Timestamp"
id_header = "X-Webhook-Id"
tolerance_secs = 0
secrets = ["file:secret"]
[[routes.handshake]]
when = "json:/challenge"
json = { challenge = "{json:/challenge}", ok = true, list = [1, "{hmac:json:/challenge}"] }
"""

# Bodies holding a member twice on a pointer's way (the view notes it), or
# off it (it does not), each after its pointer line.
REPEATED_MEMBERS = [
    '/Message\n{"Message":"attacker","Type":"Notification","Message":"signed"}',
    '/Message\n{"Mess\\u0061ge":"attacker","Message":"signed"}',
    '/data/id\n{"data":{"id":"a","id":"b"},"pad":{"k":1,"k":2}}',
    '/data/id\n{"data":{"id":"a"},"data":{"id":"b"}}',
    '/value/0/clientState\n{"value":[{"clientState":"a","clientState":"b"}]}',
    '/0/event\n[{"event":"a","event":"b"}]',
    '/id\n{"id":"e1","pad":{"k":1,"k":2},"pad":0}',
]

# The signed SNS fixtures, as deliveries naming certificate URLs of every shape.
SNS_V1 = json.loads((ROOT / "tests/fixtures/remote_keys/sns-v1.json").read_text())
CERT_URLS = [
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem",
    "https://sns.s3.amazonaws.com/SimpleNotificationService-a.pem",
    "https://sns.us-gov-west-1.amazonaws.com/x/%2e%2e/SimpleNotificationService-a.pem",
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.pem?v=1",
]

# Admin request heads.
ADMIN_HEADS = [
    "GET /config\nHost: 127.0.0.1:9190\nAuthorization: Bearer fuzz-admin-token-5d0c81\n\n",
    "POST /reload\nHost: evil.example:9190\nAuthorization: Bearer fuzz-admin-token-5d0c81\n\n",
    "GET /deliveries/0123456789abcdeffedcba9876543210\nHost: gw.internal\nAuthorization: bearer  fuzz-admin-token-5d0c81\n\n",
    "DELETE /deliveries/0123456789ABCDEF0000000000000000\nHost: [::1]\n\n",
    "GET http://10.0.0.5:9190/metrics\nAuthorization: Basic eDp5\n\n",
    "GET /healthz\nHost: anything\n\n",
]


def main():
    shutil.rmtree(FUZZ / "seeds", ignore_errors=True)
    for message in SNS_V1:
        for url in CERT_URLS:
            body = json.dumps({**message, "SigningCertURL": url})
            write("remote_keys", f"{NOW}\nPOST /sns\nContent-Type: text/plain\n\n{body}")
    for head in ADMIN_HEADS:
        write("admin", head)
    for v in VECTORS:
        write("signature", "\n".join(v["headers"].values()))
        for pointer in json_pointers(v["body"]):
            write("json", pointer + "\n" + v["body"])
        write("verify", f"{v['now'] or NOW} {v['secret'] or ''}\n" + delivery(v))
        write("remote_keys", f"{v['now'] or NOW}\n" + delivery(v))
        write("sources", TEMPLATES[len(v["id"]) % len(TEMPLATES)] + "\n" + delivery(v))
        for framed in framings(v["body"]):
            write("body", b"\x07\x40\x00" + framed)
    for template in TEMPLATES:
        for d in HANDWRITTEN_DELIVERIES:
            write("sources", template + "\n" + d)
    for d in HANDWRITTEN_DELIVERIES:
        write("verify", f"{NOW} fuzz-secret\n" + d)
    for seed in REPEATED_MEMBERS:
        write("json", seed)
    for body in BODIES:
        for piece in (b"\x01", b"\xff"):
            write("body", piece + b"\x00\x10" + body.encode())

    write("config", (ROOT / "conf/hookgate.toml").read_text())
    write("config", CONFIG_FULL)
    schemes = set(re.findall(r"^\[schemes\.([a-z0-9-]+)\]", PRESETS, re.M))
    for scheme in sorted(schemes):
        extra = 'verify_token = "t"' if scheme.startswith("meta") or scheme == "okta" else ""
        write("config", CONFIG_ROUTE.format(name=scheme, scheme=scheme, secret="s", extra=extra))
    # Every preset again as a config's own descriptor.
    own = re.sub(r"^(\[\[?)schemes\.", r"\1schemes.own-", PRESETS.split("[aliases]")[0], flags=re.M)
    routes = "".join(
        CONFIG_ROUTE.format(name=s, scheme="own-" + s, secret="s", extra='verify_token = "t"')
        for s in ("stripe", "twilio", "monday", "mailgun")
    )
    write("config", own + routes)


if __name__ == "__main__":
    main()
