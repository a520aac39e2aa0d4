"""CURVE keys and the learner's ZAP handler (ZeroMQ authentication, RFC 27).

Key directory written by `generate_keys(DIR)` (what `serl keys generate DIR` runs)::

    DIR/server.key          learner public key   -> copy to every actor machine
    DIR/server.key_secret   learner secret key   -> stays on the learner (GPU) PC
    DIR/<client>.key        actor public key
    DIR/<client>.key_secret actor secret key     -> copy to the actor (robot) PC
    DIR/authorized/         the actor public keys the learner accepts (one .key per actor)

The learner answers ZAP requests itself, inside `LearnerServer.poll` (no hidden thread): a
peer is let in only if it speaks CURVE with a public key found in `authorized/`. A peer with
no keys (NULL mechanism), a wrong key or the wrong server key fails the ZMTP handshake, so
no message of its ever reaches the application. Loaders fail closed: a missing file raises
`AuthError` naming it, never falls back to an unencrypted socket.

Secret keys are written owner-only (files 0600 in a 0700 directory) and, as ssh does with
private keys, a secret that group or others can read is refused with the chmod that fixes it:
whoever can read it can speak for the learner or the actor.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

logger = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "serl"
SERVER_NAME = "server"
AUTHORIZED_DIR = "authorized"


class AuthError(RuntimeError):
    """Keys are missing or unusable; the socket is not opened."""


@dataclass(frozen=True)
class ServerKeys:
    """The learner's CURVE keypair and the directory of actor public keys it accepts."""

    public: bytes
    secret: bytes
    authorized_dir: Path


@dataclass(frozen=True)
class ClientKeys:
    """An actor's CURVE keypair and the learner public key it expects to talk to."""

    public: bytes
    secret: bytes
    server_public: bytes


def generate_keys(
    key_dir: Path | str, client_names: tuple[str, ...] = ("actor",), *, force: bool = False
) -> Path:
    """Write a server keypair and one keypair per client into `key_dir`; authorize the clients.

    Keys already there are kept and this raises `AuthError`, unless `force`: new keys lock out
    every machine that holds the old ones. Secrets are owner-only. Returns `key_dir`.
    """
    key_dir = Path(key_dir)
    names = (SERVER_NAME, *client_names)
    existing = [key_dir / f"{n}{ext}" for n in names for ext in (".key", ".key_secret")]
    existing = [str(p) for p in existing if p.exists()]
    if existing and not force:
        raise AuthError(
            f"{', '.join(existing)} already exist; new keys would lock out the machines that "
            "hold them. Pass --force to replace them, or choose another directory"
        )
    authorized = key_dir / AUTHORIZED_DIR
    authorized.mkdir(parents=True, exist_ok=True)
    key_dir.chmod(0o700)
    for name in names:
        public_file, secret_file = zmq.auth.create_certificates(key_dir, name)
        Path(secret_file).chmod(0o600)
        if name != SERVER_NAME:
            shutil.copy(public_file, authorized / f"{name}.key")
    logger.info("wrote CURVE keys for server and %s to %s", ", ".join(client_names), key_dir)
    return key_dir


def _load(path: Path, want_secret: bool, hint: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise AuthError(f"CURVE key file {path} is missing; {hint}")
    mode = path.stat().st_mode & 0o777
    if want_secret and mode & 0o077:
        raise AuthError(
            f"secret key {path} can be read by other users (mode {mode:04o}); anyone who can "
            f"read it can impersonate its owner. Run: chmod 600 {path}"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except Exception as exc:  # zmq raises ValueError/OSError for unreadable certificates
        raise AuthError(f"CURVE key file {path} is unreadable ({exc}); {hint}") from None
    if want_secret and not secret:
        raise AuthError(f"{path} holds no secret key; {hint}")
    return public, secret


def load_server_keys(key_dir: Path | str) -> ServerKeys:
    """Load the learner's keys; fail closed if the secret or every authorized key is missing."""
    key_dir = Path(key_dir)
    hint = f"run `serl keys generate {key_dir}` on the learner machine"
    public, secret = _load(key_dir / f"{SERVER_NAME}.key_secret", True, hint)
    authorized = key_dir / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise AuthError(
            f"no authorized actor keys in {authorized}: every actor would be refused; "
            f"copy the actors' <name>.key files there ({hint})"
        )
    assert secret is not None
    return ServerKeys(public=public, secret=secret, authorized_dir=authorized)


def load_client_keys(key_dir: Path | str, name: str = "actor") -> ClientKeys:
    """Load an actor's keypair and the learner's public key; fail closed on a missing file."""
    key_dir = Path(key_dir)
    hint = f"copy {name}.key_secret and server.key from the learner's key directory"
    others = sorted(p.name[: -len(".key_secret")] for p in key_dir.glob("*.key_secret"))
    others = [n for n in others if n not in (name, SERVER_NAME)]
    if others:  # keys made with `serl keys generate --clients robot-0`: the name was not given
        hint += f", or pass the key name this folder holds: --key-name {others[0]}"
    public, secret = _load(key_dir / f"{name}.key_secret", True, hint)
    server_public, _ = _load(key_dir / f"{SERVER_NAME}.key", False, hint)
    assert secret is not None
    return ClientKeys(public=public, secret=secret, server_public=server_public)


def configure_server_socket(sock: zmq.Socket, keys: ServerKeys) -> None:
    """Make `sock` a CURVE server whose peers are checked by the ZAP handler (bind after)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()
    # Refuse every peer if no ZAP handler answers, instead of letting them in (fail closed).
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def configure_client_socket(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make `sock` a CURVE client of the learner whose public key is `keys.server_public`."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public


def peer_user_id(frame: zmq.Frame) -> str:
    """The ZAP user id libzmq attached to a received frame (the peer's CURVE public key, as
    `ZapHandler` answers), or "" without CURVE."""
    try:
        return frame.get("User-Id") or ""
    except (zmq.ZMQError, AttributeError, TypeError):
        return ""


class ZapHandler:
    """Answers ZAP requests for one context from the caller's loop (no thread).

    Only the CURVE mechanism with a public key from `authorized_dir` is allowed; NULL and
    PLAIN peers are denied. Counts decisions in `allowed` / `denied`.
    """

    def __init__(self, context: zmq.Context, authorized_dir: Path) -> None:
        self.authorized_dir = authorized_dir
        self.allowed = 0
        self.denied = 0
        self._keys = self._load_keys()
        self.socket = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)

    def _load_keys(self) -> set[bytes]:
        keys = set(zmq.auth.load_certificates(self.authorized_dir))
        if not keys:
            raise AuthError(f"no actor public keys (*.key) in {self.authorized_dir}")
        return keys

    def reload(self) -> None:
        """Re-read `authorized_dir` (after adding or removing an actor's key)."""
        self._keys = self._load_keys()

    def handle_pending(self) -> int:
        """Answer every waiting ZAP request; return how many were handled."""
        handled = 0
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return handled
            handled += 1
            self.socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            self.denied += 1
            request_id = request[1] if len(request) > 1 else b""
            return [b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        if version == b"1.0" and mechanism == b"CURVE" and len(credentials) == 1:
            key = z85.encode(credentials[0])
            if key in self._keys:
                self.allowed += 1
                # The user id is the peer's public key: every message it sends carries it
                # (ZMQ "User-Id"), so the learner can tie an actor_id to the key that used it.
                return [b"1.0", request_id, b"200", b"OK", key, b""]
            reason = b"unknown CURVE key"
        else:
            reason = b"CURVE required"
        self.denied += 1
        logger.warning(
            "refused a peer from %s: %s", address.decode(errors="replace"), reason.decode()
        )
        return [b"1.0", request_id, b"400", reason, b"", b""]

    def close(self) -> None:
        self.socket.close(linger=0)
