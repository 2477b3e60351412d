"""safetensors interop helper for tests/io/test_safetensors.c.

  st_interop.py write OUT       writes a file the way Python's safetensors does,
                                using only struct + json (no package needed)
  st_interop.py check IN        reads a sinter-written file; with the
                                `safetensors` package if importable, else by hand
Exit 0 on success, 1 on mismatch, 77 when nothing can be checked.
"""
import json
import struct
import sys


def write(path):
    # Same layout as safetensors.serialize: header padded with spaces to 8 bytes.
    tensors = {
        "enc.0.weight": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 4, 5, 6)),
        "ebn.0.num_batches_tracked": ("I64", [], struct.pack("<q", 123456789012)),
        "half": ("F16", [3], struct.pack("<3H", 0x3C00, 0xC000, 0x0001)),  # 1, -2, 2^-24
        "bf": ("BF16", [2], struct.pack("<2H", 0x3F80, 0x4049)),  # 1, 3.140625
        "d": ("F64", [1, 1], struct.pack("<d", 0.1)),
        "empty": ("F32", [0, 4], b""),
    }
    header = {"__metadata__": {"format": "pt", "step": "42"}}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check(path):
    want = {"w": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "step": [7]}
    try:
        from safetensors.numpy import load_file
        import safetensors  # noqa: F401
    except Exception:
        load_file = None
    if load_file is not None:
        from safetensors import safe_open
        t = load_file(path)
        ok = list(t["w"].shape) == [2, 3] and t["w"].dtype.name == "float32"
        ok = ok and [float(x) for x in t["w"].reshape(-1)] == want["w"]
        ok = ok and t["step"].dtype.name == "int64" and int(t["step"]) == 7
        with safe_open(path, "np") as f:
            ok = ok and f.metadata() == {"config": "a: 1\nb: \"x\"\n", "unicode": "\u00e9\u6f22"}
        print("checked with the safetensors package:", "ok" if ok else "MISMATCH")
        return 0 if ok else 1
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if (8 + n) % 8:
        print("data region not 8-byte aligned")
        return 1
    h = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    b, e = h["w"]["data_offsets"]
    ok = list(struct.unpack("<6f", data[b:e])) == want["w"]
    b, e = h["step"]["data_offsets"]
    ok = ok and struct.unpack("<q", data[b:e])[0] == 7
    print("checked by hand (no safetensors package):", "ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(write(sys.argv[2]) or 0 if sys.argv[1] == "write" else check(sys.argv[2]))
