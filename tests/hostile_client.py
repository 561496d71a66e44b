#!/usr/bin/python3
"""Hostile requests for tests/reliability_hostile.sh (stdlib only).

  hostile_client.py --secret-file F CASE [ARG ...]

Sends the bytes of CASE over one connection, framed as the v1 client frames
them, and prints the reply as one JSON line. ARG is a pid where a case needs
one (the test's canary process: alive afterwards = nothing ran).
  silent N       holds N connections open without a byte, prints when they
                 are all connected, then keeps them until killed"""
import datetime, hashlib, hmac, json, resource, socket, sys, time, uuid

SOCK = "/run/luminous-healing.sock"


def sign(key, msg):
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()


def ts():
    return datetime.datetime.now().isoformat()


def v1(key, action, params_json, rid=None, extra=""):
    """A signed v1 envelope with the parameters as raw JSON text."""
    rid = rid or str(uuid.uuid4())
    t = ts()
    sig = sign(key, "%s:%s:%s" % (rid, action, t))
    return ('{"id": %s, "action": %s, "parameters": %s, "timestamp": "%s", "signature": "%s"%s}'
            % (json.dumps(rid), json.dumps(action), params_json, t, sig, extra)).encode()


def v2(key, action, params_json, signed_params, dry_run=False, rid=None):
    """A v2 envelope whose signature covers `signed_params` (a dict) while
    the wire carries `params_json` verbatim."""
    rid = rid or str(uuid.uuid4())
    t = ts()
    canon = json.dumps(signed_params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    msg = "luminous-healing-v2\n%s\n%s\n%s\n%s" % (rid, action, t, canon) + ("\ndry-run" if dry_run else "")
    return ('{"version": 2, "id": %s, "action": %s, "parameters": %s, "timestamp": "%s", "signature": "%s"%s}'
            % (json.dumps(rid), json.dumps(action), params_json, t, sign(key, msg),
               ', "dry_run": true' if dry_run else "")).encode()


def send(data, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(SOCK)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before it was all read: the reply is waiting
    buf = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            # the dispatcher answered and closed with the rest unread
            break
        if not b:
            break
        buf += b
    s.close()
    return buf


def cases(key, a):
    pid = int(a[0]) if a else 0
    kill = lambda p: '{"pid": %s, "signal": "TERM"}' % p
    return {
        # serde_json's recursion limit (128) ends the parse
        "deep_nesting": lambda: v1(key, "kill_process", '{"pid": %d, "signal": "TERM", "x": %s%s}' % (pid, "[" * 20000, "]" * 20000)),
        "deep_nesting_object": lambda: v1(key, "kill_process", kill(pid)[:-1] + ', "x": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"),
        "huge_number_exponent": lambda: v1(key, "kill_process", kill("1e400")),
        "huge_number_2_64": lambda: v1(key, "kill_process", kill("18446744073709551616")),
        "huge_number_2_63": lambda: v1(key, "kill_process", kill("9223372036854775808")),
        "huge_number_long_digits": lambda: v1(key, "kill_process", kill("1" * 5000)),
        "fraction_pid": lambda: v1(key, "kill_process", kill("%d.0" % pid)),
        "pid_minus_1": lambda: v1(key, "kill_process", kill(-1)),
        "pid_0": lambda: v1(key, "kill_process", kill(0)),
        "pid_2_31": lambda: v1(key, "kill_process", kill(2 ** 31)),
        "pid_string_minus_1": lambda: v1(key, "kill_process", kill('"-1"')),
        "signal_number": lambda: v1(key, "kill_process", '{"pid": %d, "signal": 9}' % pid),
        "signal_number_string": lambda: v1(key, "kill_process", '{"pid": %d, "signal": "9"}' % pid),
        "signal_sigkill_name": lambda: v1(key, "kill_process", '{"pid": %d, "signal": "SIGKILL"}' % pid),
        "non_utf8_in_unit": lambda: v1(key, "restart_service", '{"service": "ng\xffinx"}'.encode("latin-1").decode("latin-1")).replace(b"\xc3\xbf", b"\xff"),
        "raw_nul_in_string": lambda: v1(key, "restart_service", '{"service": "nginx\x00.service"}'),
        "escaped_nul_in_unit": lambda: v1(key, "restart_service", '{"service": "nginx\\u0000.service"}'),
        "escaped_nul_in_id": lambda: v1(key, "status", "{}", rid="id\x00nul"),
        "nul_after_object": lambda: v1(key, "status", "{}") + b"\x00\x00",
        "lookalike_unit_cyrillic": lambda: v1(key, "restart_service", json.dumps({"service": "nginx.\u0455ervice"})),
        "format_char_unit_zwsp": lambda: v1(key, "restart_service", json.dumps({"service": "ngi\u200bnx.service"})),
        "format_char_unit_rtl_override": lambda: v1(key, "restart_service", json.dumps({"service": "\u202enginx.service"})),
        "format_char_id_rtl_override": lambda: v1(key, "status", "{}", rid="req-\u202e1337"),
        "format_char_id_zwsp": lambda: v1(key, "status", "{}", rid="req\u200b-1"),
        "line_separator_id": lambda: v1(key, "status", "{}", rid="req\u2028-1"),
        # duplicate keys: serde_json keeps the last; the v2 signature covers
        # the parameters as parsed, so signing the first value does not pass
        "duplicate_param_signed_first": lambda: v2(key, "kill_process", '{"pid": %d, "signal": "TERM", "pid": %d}' % (pid, int(a[1])),
                                                   {"pid": pid, "signal": "TERM"}, dry_run=True),
        "duplicate_param_signed_last": lambda: v2(key, "kill_process", '{"pid": %d, "signal": "TERM", "pid": %d}' % (pid, int(a[1])),
                                                  {"pid": int(a[1]), "signal": "TERM"}, dry_run=True),
        "duplicate_action_key": lambda: v1(key, "status", "{}").replace(b'"action": "status"', b'"action": "kill_process", "action": "status"'),
        "duplicate_version_key": lambda: v2(key, "status", "{}", {}).replace(b'{"version": 2,', b'{"version": 2, "version": 1,'),
    }


def main():
    args = sys.argv[1:]
    key = None
    if args[:1] == ["--secret-file"]:
        key = open(args[1]).read().rstrip("\n")
        args = args[2:]
    case, rest = args[0], args[1:]
    if case == "silent":
        n = int(rest[0])
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, n + 64))
        held = []
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(SOCK)
            held.append(s)
        print("connected %d" % len(held), flush=True)
        time.sleep(600)
        return 0
    print(json.dumps(as_json(send(cases(key, rest)[case]()))))
    return 0


def as_json(reply):
    """The reply as an object, or what the client got instead of one."""
    try:
        return json.loads(reply)
    except ValueError:
        return {"client_error": "reply is not one JSON object", "bytes": reply.decode("latin-1")}


if __name__ == "__main__":
    sys.exit(main())
