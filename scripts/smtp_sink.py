"""A local SMTP server for tests: every message it accepts is written to a directory.

For each message N (1, 2, ...) it writes `N.json` (envelope: mail_from, rcpt_tos) and then
`N.eml` (the raw message), each atomically (temporary name, then rename), so a reader that sees
`N.eml` can read both. Prints `listening HOST:PORT` on stdout once it accepts connections (port 0
picks a free port). Optional AUTH PLAIN/LOGIN over plain text with `--auth USER:PASSWORD`.
Started by scripts/smtp-server.sh; needs aiosmtpd.
"""

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class DirectoryHandler:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    def _write(self, name, data):
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.directory, name))

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "authenticated": bool(getattr(session, "authenticated", False)),
        }
        self._write(f"{n}.json", json.dumps(meta).encode())
        self._write(f"{n}.eml", envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def authenticator_for(credentials):
    user, _, password = credentials.partition(":")

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False: let aiosmtpd send the 235 or 535 reply itself.
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--auth", help="USER:PASSWORD; when set, AUTH is required")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    handler = DirectoryHandler(args.dir)

    def factory():
        if args.auth:
            return SMTP(
                handler,
                authenticator=authenticator_for(args.auth),
                auth_required=True,
                auth_require_tls=False,
            )
        return SMTP(handler)

    if args.auth:
        # Plain-text AUTH is what the tests exercise; silence aiosmtpd's warning about it.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host=args.host, port=args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
