# safetensors_np.py — read and write the safetensors format with numpy only (no `safetensors`
# package). Imported by the other tools in this folder; it produces nothing by itself.
#
# Format: 8-byte little-endian header length N, N bytes of JSON
#   {"__metadata__": {...}, NAME: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}
# (padded with spaces to a multiple of 8), then the tensor data; offsets are relative to the end
# of the header. BF16 has no numpy dtype: it is kept as raw uint16 bit patterns here.

import json
import os
import struct

import numpy as np

# Storage dtype of each safetensors dtype name (BF16 as its raw 16-bit pattern).
ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}


def f32_to_bf16_bits(x):
    """Rounds float values to bfloat16 (round to nearest, ties to even); returns uint16 bits."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(bits):
    """Widens uint16 bfloat16 bit patterns to float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def encode(values, dtype):
    """Converts float values to the storage array of safetensors dtype `dtype`."""
    if dtype == "BF16":
        return f32_to_bf16_bits(values)
    return np.ascontiguousarray(values, dtype=ST_DTYPES[dtype])


def decode(raw, dtype):
    """Converts a storage array of safetensors dtype `dtype` to float64."""
    if dtype == "BF16":
        return bf16_bits_to_f32(raw).astype(np.float64)
    return np.asarray(raw).astype(np.float64)


def build_header(entries, metadata=None):
    """entries: list of (name, dtype, shape, begin, end). Returns the padded header bytes
    (without the 8-byte length)."""
    header = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    for name, dtype, shape, begin, end in entries:
        header[name] = {"dtype": dtype, "shape": [int(s) for s in shape],
                        "data_offsets": [int(begin), int(end)]}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return text


def write(path, tensors, metadata=None):
    """Writes tensors, a list of (name, dtype, storage_array) in file order, to `path`.
    storage_array must already have the storage dtype (see encode())."""
    entries, blobs, offset = [], [], 0
    for name, dtype, arr in tensors:
        arr = np.ascontiguousarray(arr)
        assert arr.dtype == ST_DTYPES[dtype], (name, arr.dtype, dtype)
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        entries.append((name, dtype, arr.shape, offset, offset + len(data)))
        blobs.append(data)
        offset += len(data)
    header = build_header(entries, metadata)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for data in blobs:
            f.write(data)


def read(path):
    """Reads a safetensors file. Returns {name: (dtype, storage_array)} and the metadata."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        dtype, shape = info["dtype"], info["shape"]
        begin, end = info["data_offsets"]
        st = ST_DTYPES[dtype]
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * st.itemsize or base + end > len(blob):
            raise ValueError(f"{path}: bad data_offsets for {name}")
        arr = np.frombuffer(blob, dtype=st, count=count, offset=base + begin).reshape(shape)
        out[name] = (dtype, arr)
    return out, metadata


def read_dir(model_dir):
    """Reads every tensor of a Hugging Face model directory (single file or sharded via
    model.safetensors.index.json). Returns {name: (dtype, storage_array)}."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            part, _ = read(os.path.join(model_dir, shard))
            for name, value in part.items():
                if weight_map.get(name) == shard:
                    tensors[name] = value
        missing = [n for n in weight_map if n not in tensors]
        if missing:
            raise ValueError(f"{model_dir}: tensors missing from their shards: {missing}")
        return tensors
    tensors, _ = read(os.path.join(model_dir, "model.safetensors"))
    return tensors
