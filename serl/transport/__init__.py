"""Actor <-> learner transport over ZeroMQ: wire codec, learner server, actor client, auth.

See DESIGN §4. The learner owns a `LearnerServer` and calls `poll()` from its loop; each
actor owns an `ActorClient`, whose background thread does all network I/O.
"""

from serl.transport.auth import (
    AuthError,
    ClientKeys,
    ServerKeys,
    generate_keys,
    load_client_keys,
    load_server_keys,
)
from serl.transport.client import ActorClient, Weights
from serl.transport.codec import Limits, Message, WireError, decode, encode, expect
from serl.transport.protocol import (
    PROTOCOL_VERSION,
    Chunk,
    ChunkRejected,
    Handshake,
    HandshakeRefused,
    Kind,
    TransitionSpec,
    check_handshake,
    chunk_arrays,
)
from serl.transport.server import ActorInfo, EpisodeStats, LearnerServer, PollResult
from serl.transport.sockets import InsecureBindError

__all__ = [
    "PROTOCOL_VERSION",
    "ActorClient",
    "ActorInfo",
    "AuthError",
    "Chunk",
    "ChunkRejected",
    "ClientKeys",
    "EpisodeStats",
    "Handshake",
    "HandshakeRefused",
    "InsecureBindError",
    "Kind",
    "LearnerServer",
    "Limits",
    "Message",
    "PollResult",
    "ServerKeys",
    "TransitionSpec",
    "Weights",
    "WireError",
    "check_handshake",
    "chunk_arrays",
    "decode",
    "encode",
    "expect",
    "generate_keys",
    "load_client_keys",
    "load_server_keys",
]
