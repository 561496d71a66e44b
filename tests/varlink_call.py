#!/usr/bin/env python3
"""A Varlink client for tests on systemd 252, which has no varlinkctl: the
`varlink` package from PyPI (installed by .ci/install-deps into a directory
the tests bind read-only and put on PYTHONPATH; docs/testing.md).

  varlink_call.py introspect SOCKET INTERFACE   print the interface description
                                                (parsed by the package first)
  varlink_call.py info SOCKET                   GetInfo, as JSON
  varlink_call.py call SOCKET METHOD [JSON]     call METHOD (interface.Method)
                                                through the parsed interface

A reply prints its parameters as JSON on stdout (exit 0). A Varlink error
prints "Method call METHOD() failed: ERROR" and its parameters as JSON on
stderr (exit 1), as varlinkctl does. A socket that cannot be reached prints
the OS error (exit 2).
"""
import json
import sys

import varlink


def main():
    cmd, sock = sys.argv[1], sys.argv[2]
    try:
        with varlink.Client(address="unix:" + sock) as client:
            if cmd == "introspect":
                iface = client.get_interface(sys.argv[3])
                print(iface.description)
                return 0
            if cmd == "info":
                conn = client.open("org.varlink.service")
                print(json.dumps(conn.GetInfo()))
                return 0
            method = sys.argv[3]
            params = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
            iface_name, name = method.rsplit(".", 1)
            with client.open(iface_name) as conn:
                try:
                    reply = getattr(conn, name)(**params)
                except varlink.VarlinkError as e:
                    print("Method call %s() failed: %s" % (method, e.error()), file=sys.stderr)
                    print(json.dumps(e.parameters()), file=sys.stderr)
                    return 1
                print(json.dumps(reply))
                return 0
    except OSError as e:
        print("%s: %s" % (sock, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
