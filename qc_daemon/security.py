"""CURVE encryption and client authentication (ZeroMQ CurveZMQ + ZAP), and key files for `mrsqc keys`.

Key files are ZeroMQ certificates (``zmq.auth.create_certificates``): ``NAME.key`` holds the public key and
may be copied anywhere; ``NAME.key_secret`` holds the secret key and stays with its owner (mode 0600).
The daemon serves all three sockets with its secret certificate; with an allow-list directory, only clients
whose public certificate is in it can connect (others are refused by the ZAP handler, never reach the QC).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def generate_keys(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Create NAME.key (public) and NAME.key_secret (secret, mode 0600) in out_dir; refuses to overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise FileExistsError(f"{public} or {secret} already exists")
    pub, sec = zmq.auth.create_certificates(str(out), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def _load(path: str | Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    public, secret = zmq.auth.load_certificate(str(path))
    if need_secret and not secret:
        raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


@dataclass
class CurveConfig:
    """Server side: the daemon's secret certificate and an optional allow-list folder of client certificates."""

    server_secret: Path
    clients_dir: Path | None = None
    _auth: ThreadAuthenticator | None = field(default=None, repr=False)

    def serve(self, ctx: zmq.Context, sockets) -> None:
        public, secret = _load(self.server_secret, need_secret=True)
        if self.clients_dir is not None and not Path(self.clients_dir).is_dir():
            raise ValueError(f"client key folder {self.clients_dir} does not exist")
        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        location = str(self.clients_dir) if self.clients_dir else zmq.auth.CURVE_ALLOW_ANY
        self._auth.configure_curve(domain="*", location=location)
        for s in sockets:
            s.curve_secretkey = secret
            s.curve_publickey = public
            s.curve_server = True

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


@dataclass
class ClientCurve:
    """Client side: this client's secret certificate and the daemon's public certificate."""

    client_secret: Path
    server_public: Path

    def apply(self, sock: zmq.Socket) -> None:
        public, secret = _load(self.client_secret, need_secret=True)
        server_public, _ = _load(self.server_public, need_secret=False)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = server_public
