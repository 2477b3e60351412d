"""safetensors interop helper for tests/io/test_safetensors.c.

  st_interop.py write OUT       writes a file the way Python's safetensors does,
                                by hand with struct + json (so it can hold BF16)
  st_interop.py write-pkg OUT   writes the same tensors, but BF16, with the package
  st_interop.py check IN        reads a sinter-written file with the package
Run with .venv/bin/python (scripts/install.sh). Exit 0 on success, 1 on mismatch.
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


def write_pkg(path):
    # The same tensors (but BF16, which numpy lacks) written by the safetensors package itself.
    import numpy as np
    from safetensors.numpy import save_file
    save_file({
        "enc.0.weight": np.array([[1, -2, 3.5], [4, 5, 6]], dtype=np.float32),
        "ebn.0.num_batches_tracked": np.array(123456789012, dtype=np.int64),
        "half": np.array([1, -2, 2.0 ** -24], dtype=np.float16),
        "d": np.array([[0.1]], dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }, path, metadata={"format": "pt", "step": "42"})


def check(path):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    want = {"w": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "step": [7]}
    t = load_file(path)
    ok = list(t["w"].shape) == [2, 3] and t["w"].dtype.name == "float32"
    ok = ok and [float(x) for x in t["w"].reshape(-1)] == want["w"]
    ok = ok and t["step"].dtype.name == "int64" and t["step"].shape == () and int(t["step"]) == 7
    with safe_open(path, "np") as f:
        ok = ok and f.metadata() == {"config": "a: 1\nb: \"x\"\n", "unicode": "\u00e9\u6f22"}
    print("checked with the safetensors package:", "ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    cmds = {"write": write, "write-pkg": write_pkg, "check": check}
    sys.exit(cmds[sys.argv[1]](sys.argv[2]) or 0)
