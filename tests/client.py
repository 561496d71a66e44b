#!/usr/bin/python3
"""Test client that speaks exactly as the existing Python client does (v1):
one json.dumps() object, no newline, no shutdown of the write side, then a
single recv(65536) parsed as one JSON object. With --v2 it adds "version": 2
and signs the parameters too (docs/protocol.md).

  client.py [--socket P] [--secret-file F | --secret S] [--v2] [--id ID]
            [--timestamp TS] [--signature HEX] [--raw JSON] ACTION [key=value ...]

Values that look like integers are sent as integers. Prints the reply as one
JSON line; exit 0 whatever the reply says (tests assert on it)."""
import argparse, datetime, hashlib, hmac, json, socket, sys, uuid


def sign(key, message):
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", default="/run/luminous-healing.sock")
    ap.add_argument("--secret-file")
    ap.add_argument("--secret")
    ap.add_argument("--v2", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="v2 only: check everything, run nothing")
    ap.add_argument("--id")
    ap.add_argument("--timestamp")
    ap.add_argument("--signature", help="send this signature instead of computing one ('null' for none)")
    ap.add_argument("--raw", help="send these bytes verbatim instead of building a request")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("action", nargs="?")
    ap.add_argument("params", nargs="*")
    a = ap.parse_args()

    if a.raw is not None:
        data = a.raw.encode()
    else:
        key = a.secret
        if a.secret_file:
            with open(a.secret_file) as f:
                key = f.read().rstrip("\n")
        params = {}
        for p in a.params:
            k, _, v = p.partition("=")
            params[k] = int(v) if v.lstrip("-").isdigit() else v
        req = {
            "id": a.id or str(uuid.uuid4()),
            "action": a.action,
            "parameters": params,
            "timestamp": a.timestamp or datetime.datetime.now().isoformat(),
            "signature": None,
        }
        if a.v2:
            req["version"] = 2
            canon = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            msg = "luminous-healing-v2\n%s\n%s\n%s\n%s" % (req["id"], req["action"], req["timestamp"], canon)
            if a.dry_run:
                req["dry_run"] = True
                msg += "\ndry-run"
        else:
            msg = "%s:%s:%s" % (req["id"], req["action"], req["timestamp"])
        if a.signature == "null":
            req["signature"] = None
        elif a.signature:
            req["signature"] = a.signature
        elif key is not None:
            req["signature"] = sign(key, msg)
        data = json.dumps(req).encode()

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    s.connect(a.socket)
    s.sendall(data)
    reply = s.recv(65536)
    s.close()
    try:
        obj = json.loads(reply)
    except ValueError:
        print(json.dumps({"client_error": "reply is not one JSON object", "bytes": reply.decode("latin-1")}))
        return 0
    print(json.dumps(obj))
    return 0


if __name__ == "__main__":
    sys.exit(main())
