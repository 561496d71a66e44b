#!/usr/bin/python3
"""Load client for the reliability tests (stdlib only, threads): N clients,
each sending M requests of a mix of kinds, one connection each, framed as
the existing v1 client frames them (tests/client.py).

  load_client.py --secret-file F [--clients 64] [--requests 500]
                 [--kinds good,badsig,replay,overlimit,malformed,unknown]
                 [--ids-out FILE] [--socket P]

Kinds:
  good       status, v1, signed
  badsig     status with a wrong signature            -> Invalid signature
  replay     the id of this client's last good request -> Replayed request id
  overlimit  adjust_swappiness (the caller's budget is spent beforehand)
                                                       -> Rate limit exceeded
  malformed  half a JSON object, then the write side shut -> Invalid request format
  unknown    a signed request for an unknown action  -> Action frobnicate not allowed

Prints one JSON object: sent, replies, no_reply (connect or read failures,
with a sample of their errors), by kind and outcome, seconds, rate.
With --ids-out, writes the ids of the good requests answered with success."""
import argparse, datetime, hashlib, hmac, json, socket, sys, threading, time, uuid
from collections import Counter


def sign(key, msg):
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()


def envelope(key, action, params, rid=None, badsig=False):
    rid = rid or str(uuid.uuid4())
    ts = datetime.datetime.now().isoformat()
    sig = sign("not-the-key" if badsig else key, "%s:%s:%s" % (rid, action, ts))
    return rid, json.dumps({"id": rid, "action": action, "parameters": params,
                            "timestamp": ts, "signature": sig}).encode()


def exchange(path, data, shut=False, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:  # the server closes after its one reply
            b = s.recv(65536)
            if not b:
                break
            buf += b
        return json.loads(buf)
    finally:
        s.close()


EXPECT = {
    "good": lambda r: r.get("success") is True,
    "badsig": lambda r: r.get("error") == "Invalid signature",
    "replay": lambda r: r.get("error") == "Replayed request id",
    "overlimit": lambda r: r.get("error") == "Rate limit exceeded",
    "malformed": lambda r: r.get("error") == "Invalid request format" and r.get("request_id") == "unknown",
    "unknown": lambda r: r.get("error") == "Action frobnicate not allowed",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", default="/run/luminous-healing.sock")
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--kinds", default="good,badsig,replay,overlimit,malformed,unknown")
    ap.add_argument("--ids-out")
    a = ap.parse_args()
    key = open(a.secret_file).read().rstrip("\n")
    kinds = a.kinds.split(",")
    lock = threading.Lock()
    outcomes = Counter()
    errors = []
    good_ids = []
    sent = [0]

    def client(n):
        last_good = None
        local, ids, errs, count = Counter(), [], [], 0
        for i in range(a.requests):
            kind = kinds[(n + i) % len(kinds)]
            if kind == "replay" and last_good is None:
                kind = "good"
            shut = False
            if kind == "good":
                rid, data = envelope(key, "status", {})
            elif kind == "badsig":
                rid, data = envelope(key, "status", {}, badsig=True)
            elif kind == "replay":
                rid, data = envelope(key, "status", {}, rid=last_good)
            elif kind == "overlimit":
                rid, data = envelope(key, "adjust_swappiness", {"value": 10})
            elif kind == "malformed":
                rid, data, shut = None, b'{"id": "half', True
            else:
                rid, data = envelope(key, "frobnicate", {})
            count += 1
            try:
                r = exchange(a.socket, data, shut)
            except Exception as e:  # no reply: the test decides whether that is allowed
                local[(kind, "no reply")] += 1
                if len(errs) < 5:
                    errs.append("%s: %r" % (kind, e))
                continue
            ok = EXPECT[kind](r)
            local[(kind, "expected" if ok else "unexpected: %s" % (r.get("error"),))] += 1
            if kind == "good" and ok:
                last_good = rid
                ids.append(rid)
        with lock:
            outcomes.update(local)
            good_ids.extend(ids)
            errors.extend(errs)
            sent[0] += count

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    no_reply = sum(v for (k, o), v in outcomes.items() if o == "no reply")
    unexpected = sum(v for (k, o), v in outcomes.items() if o.startswith("unexpected"))
    if a.ids_out:
        with open(a.ids_out, "w") as f:
            f.write("\n".join(good_ids) + "\n")
    print(json.dumps({
        "sent": sent[0], "replies": sent[0] - no_reply, "no_reply": no_reply,
        "unexpected": unexpected, "errors": errors[:10],
        "by_kind": {"%s/%s" % k: v for k, v in sorted(outcomes.items())},
        "seconds": round(secs, 2), "rate": round(sent[0] / secs) if secs else 0,
    }))


if __name__ == "__main__":
    sys.exit(main())
