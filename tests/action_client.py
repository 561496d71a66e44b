#!/usr/bin/python3
"""Speaks the dispatcher-to-action protocol (services/protocol/src/internal.rs)
to one action socket directly, the way the dispatcher does: one ActionRequest
JSON line, one ActionReply JSON line back. For tests that must bypass the
dispatcher (refused uids, killing an action mid-request); run it as the
dispatcher's user with setpriv.

  action_client.py ACTION [key=value ...] [--socket P] [--caller-uid N]
                   [--caller-pid N] [--dry-run] [--raw TEXT] [--hold SECONDS]

Values that look like integers are sent as integers; the value @self is
this client's own pid (the "dispatcher" as the action sees it). --dry-run sets
the request's dry_run: the action checks and reads, and acts on nothing. Prints the reply line,
or {"client_error": ...} when none came."""
import argparse, json, os, socket, sys, time, uuid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("action")
    ap.add_argument("params", nargs="*")
    ap.add_argument("--socket")
    ap.add_argument("--caller-uid", type=int, default=os.getuid())
    ap.add_argument("--caller-gid", type=int, default=os.getgid())
    ap.add_argument("--caller-pid", type=int, default=os.getpid())
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--raw", help="send these bytes instead of a request")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()
    params = {}
    for p in a.params:
        k, _, v = p.partition("=")
        params[k] = os.getpid() if v == "@self" else int(v) if v.lstrip("-").isdigit() else v
    req = {
        "id": str(uuid.uuid4()),
        "action": a.action,
        "parameters": params,
        "caller": {"uid": a.caller_uid, "gid": a.caller_gid, "pid": a.caller_pid},
    }
    if a.dry_run:
        req["dry_run"] = True
    data = a.raw.encode() if a.raw is not None else (json.dumps(req) + "\n").encode()
    path = a.socket or "/run/luminous-healing/actions/%s.sock" % a.action
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        s.connect(path)
        try:
            s.sendall(data)
        except BrokenPipeError:
            # a refused peer is answered and hung up on before its request is
            # read: the answer is already waiting in our receive buffer
            pass
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError as e:
        print(json.dumps({"client_error": "%s: %s" % (type(e).__name__, e)}))
        return 0
    finally:
        s.close()
    if not buf:
        print(json.dumps({"client_error": "connection closed without a reply"}))
        return 0
    try:
        print(json.dumps(json.loads(buf)))
    except ValueError:
        print(json.dumps({"client_error": "reply is not JSON", "bytes": buf.decode("latin-1")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
