"""Wire codec: exact round trips, zero-copy decode, and every malformed form refused."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import numpy as np
import pytest

from serl.transport.codec import Limits, Message, WireError, decode, encode, expect
from tests.transport.helpers import file_creating_pickle, image_chunk, state_chunk


def _frames_bytes(frames: list) -> list[bytes]:
    return [bytes(f) for f in frames]


def _header(frames: list) -> dict:
    return msgpack.unpackb(bytes(frames[0]))


def _with_header(frames: list, header: dict) -> list[bytes]:
    return [msgpack.packb(header), *_frames_bytes(frames[1:])]


def test_state_chunk_round_trips_exactly() -> None:
    arrays = state_chunk(3.0)
    message = decode(_frames_bytes(encode("chunk", {"seq": 5, "conn": 1}, arrays)))
    assert message.kind == "chunk"
    assert message.fields == {"seq": 5, "conn": 1}
    assert list(message.arrays) == list(arrays)
    for name, arr in arrays.items():
        assert message.arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(message.arrays[name], arr)


def test_dict_of_images_chunk_round_trips_exactly() -> None:
    arrays = image_chunk(n=3)
    message = decode(_frames_bytes(encode("chunk", {}, arrays)))
    for name, arr in arrays.items():
        assert message.arrays[name].shape == arr.shape
        np.testing.assert_array_equal(message.arrays[name], arr)


def test_empty_and_scalar_arrays_round_trip() -> None:
    arrays = {"empty": np.zeros((0, 3), np.float32), "scalar": np.array(2.5, np.float64)}
    message = decode(_frames_bytes(encode("x", {}, arrays)))
    assert message.arrays["empty"].shape == (0, 3)
    assert message.arrays["scalar"] == 2.5


def test_non_contiguous_and_big_endian_arrays_are_sent_in_wire_layout() -> None:
    base = np.arange(24, dtype=">i4").reshape(4, 6)
    message = decode(_frames_bytes(encode("x", {}, {"a": base[:, ::2]})))
    np.testing.assert_array_equal(message.arrays["a"], base[:, ::2])
    assert message.arrays["a"].dtype == np.dtype("<i4")


def test_decode_views_the_received_frames_without_copying() -> None:
    frames = [bytearray(f) for f in encode("x", {}, {"a": np.arange(1000, dtype=np.float32)})]
    message = decode(frames)
    frames[1][0:4] = np.float32(42.0).tobytes()
    assert message.arrays["a"][0] == 42.0  # the array is the frame's memory


def test_encode_views_the_arrays_without_copying() -> None:
    arr = np.arange(100_000, dtype=np.float32)
    frames = encode("x", {}, {"a": arr})
    assert np.shares_memory(np.frombuffer(frames[1], np.float32), arr)


def test_encode_refuses_object_arrays() -> None:
    with pytest.raises(WireError, match="bad_dtype"):
        encode("x", {}, {"a": np.array([{"x": 1}], dtype=object)})


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_rejected(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = [rng.bytes(int(rng.integers(0, 300))) for _ in range(int(rng.integers(1, 4)))]
    with pytest.raises(WireError):
        decode(frames)


def test_truncated_array_frame_is_rejected() -> None:
    frames = _frames_bytes(encode("chunk", {}, state_chunk(1.0)))
    frames[1] = frames[1][:-3]
    with pytest.raises(WireError, match="frame_size_mismatch.*'obs/state'"):
        decode(frames)


def test_truncated_header_is_rejected() -> None:
    frames = _frames_bytes(encode("chunk", {"seq": 1}, state_chunk(1.0)))
    frames[0] = frames[0][: len(frames[0]) // 2]
    with pytest.raises(WireError, match="bad_msgpack"):
        decode(frames)


def test_header_lying_about_shape_is_rejected() -> None:
    frames = encode("chunk", {}, {"a": np.zeros((4, 17), np.float32)})
    header = _header(frames)
    header["arrays"][0]["shape"] = [400, 17]
    with pytest.raises(WireError, match="frame_size_mismatch"):
        decode(_with_header(frames, header))


def test_header_lying_about_dtype_is_rejected() -> None:
    frames = encode("chunk", {}, {"a": np.zeros((4, 17), np.float32)})
    header = _header(frames)
    header["arrays"][0]["dtype"] = "float64"
    with pytest.raises(WireError, match="frame_size_mismatch"):
        decode(_with_header(frames, header))


@pytest.mark.parametrize("dtype", ["object", "O", "<U8", "V16", "complex128", "datetime64"])
def test_dtypes_outside_the_allow_list_are_rejected(dtype: str) -> None:
    frames = encode("chunk", {}, {"a": np.zeros(2, np.float64)})
    header = _header(frames)
    header["arrays"][0]["dtype"] = dtype
    with pytest.raises(WireError, match="bad_dtype"):
        decode(_with_header(frames, header))


@pytest.mark.parametrize("shape", [[-1, 4], [2.0, 4], ["2"], [1] * 9, [2**62, 0], "4"])
def test_bad_shapes_are_rejected(shape: object) -> None:
    frames = encode("chunk", {}, {"a": np.zeros(0, np.float32)})
    header = _header(frames)
    header["arrays"][0]["shape"] = shape
    with pytest.raises(WireError, match="bad_shape"):
        decode(_with_header(frames, header))


def test_more_frames_than_the_header_lists_are_rejected() -> None:
    frames = _frames_bytes(encode("chunk", {}, {"a": np.zeros(3, np.float32)}))
    with pytest.raises(WireError, match="frame_count_mismatch"):
        decode([*frames, b"\0" * 12])


def test_more_frames_than_the_limit_are_rejected_before_parsing() -> None:
    with pytest.raises(WireError, match="too_many_frames"):
        decode([b"\x80"] + [b""] * 100, Limits(max_arrays=64))


def test_oversized_message_is_rejected() -> None:
    frames = _frames_bytes(encode("chunk", {}, {"a": np.zeros(1000, np.float64)}))
    with pytest.raises(WireError, match="oversized"):
        decode(frames, Limits(max_message_bytes=4000))


def test_oversized_header_is_rejected() -> None:
    frames = _frames_bytes(encode("chunk", {"note": "x" * 3000}))
    with pytest.raises(WireError, match="header_too_large"):
        decode(frames, Limits(max_header_bytes=1024))


def test_long_strings_and_containers_in_the_header_are_rejected() -> None:
    with pytest.raises(WireError, match="bad_msgpack"):
        decode(_frames_bytes(encode("x", {"s": "y" * 5000})))
    with pytest.raises(WireError, match="bad_msgpack"):
        decode(_frames_bytes(encode("x", {"l": list(range(1000))})))


@pytest.mark.parametrize("header", [[1, 2, 3], "chunk", 7, None, b"raw"])
def test_non_map_header_is_rejected(header: object) -> None:
    with pytest.raises(WireError, match="bad_header"):
        decode([msgpack.packb(header)])


def test_header_with_missing_or_extra_keys_is_rejected() -> None:
    with pytest.raises(WireError, match="bad_header"):
        decode([msgpack.packb({"kind": "x", "fields": {}})])
    with pytest.raises(WireError, match="bad_header"):
        decode([msgpack.packb({"kind": "x", "fields": {}, "arrays": [], "extra": 1})])


def test_msgpack_ext_types_are_rejected() -> None:
    header = msgpack.packb({"kind": "x", "fields": {"e": msgpack.ExtType(5, b"abc")}, "arrays": []})
    with pytest.raises(WireError):
        decode([header])


def test_bool_array_with_other_bytes_is_rejected() -> None:
    frames = _frames_bytes(encode("x", {}, {"done": np.zeros(4, bool)}))
    frames[1] = b"\x00\x01\x02\x00"
    with pytest.raises(WireError, match="bad_bool"):
        decode(frames)


def test_pickle_payload_is_rejected_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = file_creating_pickle(marker, proto=True)
    for frames in ([payload], [file_creating_pickle(marker)], [payload, payload]):
        with pytest.raises(WireError):
            decode(frames)
    # A valid header pointing at the pickle as if it were an object array.
    header = {
        "kind": "chunk",
        "fields": {},
        "arrays": [{"name": "a", "dtype": "object", "shape": [1]}],
    }
    with pytest.raises(WireError, match="bad_dtype"):
        decode([msgpack.packb(header), payload])
    assert not marker.exists()
    assert not os.path.exists("pwned")


def test_expect_passes_matching_arrays_with_wildcards() -> None:
    message = Message("chunk", {}, {"obs": np.zeros((5, 3), np.float32)})
    expect(message, {"obs": ("float32", (None, 3))})


def test_expect_lists_every_mismatch() -> None:
    message = Message(
        "chunk", {}, {"obs": np.zeros((5, 4), np.float64), "junk": np.zeros(1, np.uint8)}
    )
    with pytest.raises(WireError) as info:
        expect(message, {"obs": ("float32", (None, 3)), "reward": ("float32", (None,))})
    text = str(info.value)
    assert "missing array 'reward'" in text
    assert "'obs' dtype float64, expected float32" in text
    assert "'obs' shape (5, 4), expected (None, 3)" in text
    assert "unexpected array 'junk'" in text
