"""A real SMTP server (aiosmtpd) for the email tests, on loopback.

    server.py --port P --maildir DIR [--tls starttls|smtps|none] [--cert C --key K]
              [--user U --password-file F]

Messages land in the Maildir DIR (one file per message in DIR/new). With --user, AUTH PLAIN
and LOGIN are offered and required; aiosmtpd refuses AUTH before the connection is encrypted
(auth_require_tls), and every AUTH attempt is appended to DIR/auth.log as
`<tls|plain> <user> <ok|bad>`, so a test can prove credentials never crossed in the clear.
Prints `ready` once it listens.
"""

import argparse
import asyncio
import mailbox
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--tls", choices=["starttls", "smtps", "none"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password-file")
    a = p.parse_args()
    mailbox.Maildir(a.maildir, create=True)
    log = os.path.join(a.maildir, "auth.log")
    password = open(a.password_file).read().strip() if a.password_file else None

    def authenticator(server, session, envelope, mechanism, auth_data):
        tls = "tls" if session.ssl else "plain"
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == a.user
            and auth_data.password.decode() == password
        )
        user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        with open(log, "a") as f:
            f.write(f"{tls} {user} {'ok' if ok else 'bad'}\n")
        return AuthResult(success=ok)

    context = None
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
    kwargs = dict(hostname="127.0.0.1", port=a.port)
    if a.user:
        kwargs.update(authenticator=authenticator, auth_required=True)
    if a.tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif a.tls == "smtps":
        kwargs.update(ssl_context=context)
    elif a.user:
        # Plain with AUTH only for a test that proves the client will not send it.
        kwargs.update(auth_require_tls=False)
    controller = Controller(Mailbox(a.maildir), **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
