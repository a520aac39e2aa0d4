"""Wire codec: a msgpack header frame plus one raw numpy buffer frame per array.

A message is one ZeroMQ multipart message::

    frame 0      msgpack map {"kind": str, "fields": {str: scalar | small container},
                              "arrays": [{"name": str, "dtype": str, "shape": [int, ...]}, ...]}
    frame 1..n   the raw bytes of each array, C-contiguous, little-endian, in header order

Why this shape: numpy buffers travel without a copy on either side (ZeroMQ sends the array's
memory, `np.frombuffer` views the received frame), and the header is plain data, so decoding
never runs code. There is no pickle anywhere, on purpose (DESIGN §4).

`decode` trusts nothing: the header size, the msgpack lengths, the dtype (an allow-list, so
`object` and structured dtypes can never appear), the rank and every dimension, the frame
count and each frame's exact byte length are checked before any array is built. Any
violation raises `WireError`, whose `reason` is a short stable code the learner counts by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

# The wire is little-endian; names are numpy dtype names.
ALLOWED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool",
        "uint8",
        "int8",
        "uint16",
        "int32",
        "int64",
        "float16",
        "float32",
        "float64",
    )
}

Scalar = None | bool | int | float | str | bytes
FrameLike = bytes | bytearray | memoryview | Any  # Any: zmq.Frame (buffer protocol)


class WireError(ValueError):
    """A message failed validation. `reason` is a short code for counters, e.g. 'bad_dtype'."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Caps on everything `decode` reads; a message over any of them is refused unread.

    The defaults fit a chunk of 256 transitions carrying two 128x128x3 camera frames each
    with room to spare; raise `max_message_bytes` for bigger chunks or policies.
    """

    max_message_bytes: int = 128 * 2**20
    """Sum of all frame lengths (header included)."""
    max_frame_bytes: int | None = None
    """Largest single frame, set as ZMQ_MAXMSGSIZE (libzmq drops a peer that sends a larger
    one); None: `max_message_bytes`."""
    max_header_bytes: int = 64 * 2**10
    """Frame 0 (the msgpack header)."""
    max_arrays: int = 64
    """Array frames per message."""
    max_ndim: int = 8
    """Rank of one array."""
    max_str_len: int = 4096
    """Any msgpack string in the header."""
    max_container_len: int = 256
    """Any msgpack list or map in the header (fields, array list, spec maps)."""

    @property
    def frame_cap(self) -> int:
        """ZMQ_MAXMSGSIZE for a socket receiving under these limits."""
        return self.max_message_bytes if self.max_frame_bytes is None else self.max_frame_bytes

    def unpack_kwargs(self) -> dict[str, int]:
        """Keyword caps for `msgpack.unpackb`: no ext types, every length bounded."""
        return {
            "max_str_len": self.max_str_len,
            "max_bin_len": self.max_str_len,
            "max_array_len": self.max_container_len,
            "max_map_len": self.max_container_len,
            "max_ext_len": 0,
        }


DEFAULT_LIMITS = Limits()


@dataclass
class Message:
    """A decoded message. Arrays view the received frames (no copy) and keep them alive."""

    kind: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _to_wire_array(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    dtype = ALLOWED_DTYPES.get(arr.dtype.name)
    if dtype is None:
        allowed = ", ".join(ALLOWED_DTYPES)
        raise WireError(
            "bad_dtype", f"array {name!r} has dtype {arr.dtype}; the wire allows {allowed}"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def _byte_view(arr: np.ndarray) -> bytes | memoryview:
    """The array's memory as a flat byte view (no copy); b'' for empty arrays."""
    if arr.nbytes == 0:
        return b""
    return memoryview(arr.reshape(-1)).cast("B")


def encode(
    kind: str,
    fields: Mapping[str, Any] | None = None,
    arrays: Mapping[str, Any] | None = None,
) -> list[bytes | memoryview]:
    """Encode one message as ZeroMQ frames; array frames view the arrays' memory.

    Keep the arrays unchanged until the frames are sent (ZeroMQ may send them later, without
    a copy). A non-contiguous or big-endian array is copied once into wire layout.
    """
    header_arrays = []
    frames: list[bytes | memoryview] = [b""]
    for name, value in (arrays or {}).items():
        arr = _to_wire_array(name, value)
        header_arrays.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        frames.append(_byte_view(arr))
    header = {"kind": kind, "fields": dict(fields or {}), "arrays": header_arrays}
    frames[0] = msgpack.packb(header, use_bin_type=True)
    return frames


def _frame_len(frame: FrameLike) -> int:
    return memoryview(frame).nbytes


def _refuse_ext(code: int, data: bytes) -> Any:
    raise WireError("bad_header", f"msgpack ext type {code} is not allowed")


def _unpack_header(frame: FrameLike, limits: Limits) -> dict[str, Any]:
    size = _frame_len(frame)
    if size > limits.max_header_bytes:
        raise WireError(
            "header_too_large", f"header is {size} bytes, limit {limits.max_header_bytes}"
        )
    try:
        header = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            **limits.unpack_kwargs(),
        )
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several types (ExtraData, ValueError, ...)
        raise WireError("bad_msgpack", f"header is not valid msgpack ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("bad_header", f"header is a {type(header).__name__}, not a map")
    return header


def _check_shape(name: str, shape: Any, limits: Limits) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > limits.max_ndim:
        raise WireError(
            "bad_shape", f"array {name!r}: shape {shape!r} is not a list of <= {limits.max_ndim}"
        )
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= limits.max_message_bytes:
            raise WireError(
                "bad_shape",
                f"array {name!r}: dimension {dim!r} is not an int in "
                f"[0, {limits.max_message_bytes}]",
            )
    return tuple(shape)


def _parse_array_entries(entries: Any, limits: Limits) -> list[tuple[str, np.dtype, tuple]]:
    if not isinstance(entries, list):
        raise WireError("bad_header", "header 'arrays' is not a list")
    if len(entries) > limits.max_arrays:
        raise WireError("too_many_frames", f"{len(entries)} arrays, limit {limits.max_arrays}")
    parsed = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape"}:
            raise WireError("bad_header", f"array entry {entry!r} is not {{name, dtype, shape}}")
        name, dtype_name, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or not name or name in seen:
            raise WireError("bad_header", f"array name {name!r} is empty, not a str or repeated")
        seen.add(name)
        if not isinstance(dtype_name, str) or dtype_name not in ALLOWED_DTYPES:
            raise WireError(
                "bad_dtype",
                f"array {name!r}: dtype {dtype_name!r} is not one of {', '.join(ALLOWED_DTYPES)}",
            )
        parsed.append((name, ALLOWED_DTYPES[dtype_name], _check_shape(name, shape, limits)))
    return parsed


def decode(frames: Sequence[FrameLike], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Validate and decode the frames of one message (routing frames already removed).

    Raises WireError naming the first thing that was wrong; builds arrays only after every
    check passed, with `np.frombuffer` (zero copy, no object dtypes possible).
    """
    if len(frames) == 0:
        raise WireError("bad_frames", "empty message")
    if len(frames) - 1 > limits.max_arrays:
        raise WireError("too_many_frames", f"{len(frames)} frames, limit {limits.max_arrays + 1}")
    sizes = [_frame_len(f) for f in frames]
    if sum(sizes) > limits.max_message_bytes:
        raise WireError(
            "oversized", f"message is {sum(sizes)} bytes, limit {limits.max_message_bytes}"
        )
    header = _unpack_header(frames[0], limits)
    if set(header) != {"kind", "fields", "arrays"}:
        raise WireError("bad_header", f"header keys {sorted(header)} != [arrays, fields, kind]")
    kind, fields = header["kind"], header["fields"]
    if not isinstance(kind, str) or not kind:
        raise WireError("bad_header", f"kind {kind!r} is not a non-empty str")
    if not isinstance(fields, dict):
        raise WireError("bad_header", "header 'fields' is not a map")
    entries = _parse_array_entries(header["arrays"], limits)
    if len(entries) != len(frames) - 1:
        raise WireError(
            "frame_count_mismatch",
            f"header lists {len(entries)} arrays but {len(frames) - 1} array frames arrived",
        )
    arrays: dict[str, np.ndarray] = {}
    for (name, dtype, shape), frame, size in zip(entries, frames[1:], sizes[1:], strict=True):
        count = math.prod(shape)
        if count * dtype.itemsize != size:
            raise WireError(
                "frame_size_mismatch",
                f"array {name!r}: {dtype.name}{list(shape)} needs {count * dtype.itemsize} "
                f"bytes, frame has {size}",
            )
        if count:
            arr = np.frombuffer(frame, dtype=dtype, count=count).reshape(shape)
        else:
            arr = np.empty(shape, dtype=dtype)
        if dtype.kind == "b" and count and arr.view(np.uint8).max() > 1:
            raise WireError("bad_bool", f"array {name!r}: bool bytes other than 0 and 1")
        arrays[name] = arr
    return Message(kind=kind, fields=fields, arrays=arrays)


def expect(
    message: Message,
    schema: Mapping[str, tuple[str, Sequence[int | None]]],
    *,
    allow_extra: bool = False,
) -> None:
    """Check a message's arrays against {name: (dtype, shape)}; None in a shape matches any size.

    Raises WireError('schema_mismatch') listing every missing, unexpected or mismatched array.
    """
    problems = []
    for name, (dtype_name, shape) in schema.items():
        arr = message.arrays.get(name)
        if arr is None:
            problems.append(f"missing array {name!r}")
            continue
        if arr.dtype.name != dtype_name:
            problems.append(f"array {name!r} dtype {arr.dtype.name}, expected {dtype_name}")
        fits = len(arr.shape) == len(shape) and all(
            want is None or want == got for want, got in zip(shape, arr.shape, strict=True)
        )
        if not fits:
            problems.append(f"array {name!r} shape {arr.shape}, expected {tuple(shape)}")
    if not allow_extra:
        problems += [f"unexpected array {name!r}" for name in message.arrays if name not in schema]
    if problems:
        raise WireError("schema_mismatch", f"{message.kind!r} message: " + "; ".join(problems))
