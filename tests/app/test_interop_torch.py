#!/usr/bin/env python3
"""sinter <-> PyTorch interop for the CRN (DESIGN.md), with no dependency
beyond torch and numpy (safetensors read/written here by hand).

  test_interop_torch.py check CKPT IO      a sinter checkpoint loads into the
      PyTorch CRN with load_state_dict(strict=True) and, on IO's "input",
      gives IO's "output" (sinter's inference) -- exit 0 when it does.
  golden/gen_interop_golden.py uses CRN + save_safetensors from here.
"""
import json, struct, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    meta = head.pop("__metadata__", {})
    out = {}
    for k, v in head.items():
        b, e = v["data_offsets"]
        a = np.frombuffer(data[b:e], dtype=_DT[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(a.copy())
    return out, meta


def save_safetensors(path, tensors, meta=None):
    names = {torch.float32: "F32", torch.int64: "I64", torch.float64: "F64"}
    head, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.detach().cpu().contiguous().numpy().tobytes()
        head[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        head["__metadata__"] = meta
    h = json.dumps(head).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class CRN(nn.Module):
    """The prototype CRN with configurable encoder channels and hidden size."""

    def __init__(self, channels=(16, 32, 64, 128, 256), hidden=1024, rnn="lstm", layers=2, freq=161):
        super().__init__()
        ch = [1] + list(channels)
        f = freq
        for _ in range(5):
            f = (f - 3) // 2 + 1
        width = ch[5] * f
        self.enc, self.ebn = nn.ModuleList(), nn.ModuleList()
        for i in range(5):
            self.enc.append(nn.Conv2d(ch[i], ch[i + 1], (2, 3), stride=(1, 2)))
            self.ebn.append(nn.BatchNorm2d(ch[i + 1]))
        R = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = R(width, hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(hidden, width) if hidden != width else None
        dch = ch[::-1]
        dch[-1] = 1
        dch = [ch[5], ch[4], ch[3], ch[2], ch[1], 1]
        outpad = [0, 0, 0, 1, 0]
        self.dec, self.dbn = nn.ModuleList(), nn.ModuleList()
        for i in range(5):
            self.dec.append(nn.ConvTranspose2d(dch[i] * 2, dch[i + 1], (2, 3), stride=(1, 2),
                                               output_padding=(0, outpad[i])))
            if i < 4:
                self.dbn.append(nn.BatchNorm2d(dch[i + 1]))

    def forward(self, x):
        skips = []
        for c, b in zip(self.enc, self.ebn):
            x = F.elu(b(c(F.pad(x, (0, 0, 1, 0)))))
            skips.append(x)
        B, C, T, Fq = x.shape
        y, _ = self.rnn(x.permute(0, 2, 1, 3).reshape(B, T, C * Fq))
        if self.proj is not None:
            y = self.proj(y)
        x = y.reshape(B, T, C, Fq).permute(0, 2, 1, 3)
        for i, d in enumerate(self.dec):
            x = d(torch.cat([x, skips[4 - i]], 1))[:, :, :-1, :]
            x = F.elu(self.dbn[i](x)) if i < 4 else F.softplus(x)
        return x


def crn_from_meta(meta):
    """Builds the CRN that a sinter checkpoint's config describes (the few keys needed)."""
    cfg = meta.get("sinter.config", "")
    model, sec = {}, None
    for line in cfg.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            sec = line.split(":")[0].strip()
            continue
        if sec == "model":
            k, v = line.strip().split(":", 1)
            model[k.strip()] = v.split("#")[0].strip()
    ch = [int(c) for c in model["channels"].strip("[]").split(",")]
    return CRN(ch, int(model["hidden"]), model["rnn"].strip("'\""), int(model["layers"]))


def check(ckpt, io):
    sd, meta = load_safetensors(ckpt)
    assert meta.get("sinter.format_version") == "1", meta.keys()
    m = crn_from_meta(meta)
    weights = {k: v for k, v in sd.items() if not k.startswith("optim.")}
    m.load_state_dict(weights, strict=True)
    # optimizer state: one entry per trainable parameter, same shape
    for k, p in m.named_parameters():
        for s in ("exp_avg", "exp_avg_sq"):
            assert sd[f"optim.{s}.{k}"].shape == p.shape, k
    m.eval()
    t, _ = load_safetensors(io)
    with torch.no_grad():
        y = m(t["input"])
    err = ((y - t["output"]).abs().max() / t["output"].abs().max().clamp(min=1e-3)).item()
    print(f"PyTorch vs sinter: max rel err {err:.3g} ({sum(p.numel() for p in m.parameters())} parameters)")
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    print(__doc__)
    sys.exit(2)
