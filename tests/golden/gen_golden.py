#!/usr/bin/python3
"""Golden files for sinter: PyTorch outputs and gradients of every layer of the
prototype CRN, and of the whole CRN over 5 Adam steps.

Run with an interpreter that has torch and numpy, e.g. the project's .venv after
`SINTER_PY_TORCH=1 scripts/install.sh`:
    .venv/bin/python tests/golden/gen_golden.py [--out tests/golden]

Inputs and weights are drawn in float32 (torch.manual_seed), then every
computation runs in float64 so the goldens are the exact results for those
float32 inputs; tensors are stored as F32 (num_batches_tracked as I64). The
safetensors format is written here with struct + json (no safetensors package):
u64 little-endian header length, JSON header, raw little-endian data.

Per-layer files (<op>.safetensors): "input", the parameters under their PyTorch
names, "output", "R" (random), and "grad.input", "grad.<param>" for
loss = sum(output * R). BatchNorm adds the running stats before (PyTorch names)
and after the call ("running_mean.after", "running_var.after").

CRN files (crn_<rnn>.safetensors): the state_dict (PyTorch names), "x", "target",
"output" (training mode), "loss" (MSE), "grad.<param>" for every parameter,
"adam_losses" (5 steps of Adam lr 1e-3 eps ADAM_EPS from these weights; [0] == loss),
"eval_output0" (eval mode, initial state_dict), "after5.<bn>.running_mean|running_var|
num_batches_tracked", "eval_output" (eval mode after the 5 steps). __metadata__ holds
the model config and "torch_f32_err.<losses|running_mean|running_var|eval_output>":
the error (max |a - ref| / max |ref|) of PyTorch's own float32 run of the 5 steps
against this float64 reference (see gen_crn).
"""
import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DT = torch.float64


def write_safetensors(path, tensors, meta):
    """tensors: list of (name, torch tensor or numpy array); float -> F32, int -> I64."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        if a.dtype.kind in "iu":
            a, dt = a.astype("<i8"), "I64"
        else:
            a, dt = a.astype("<f4"), "F32"
        b = np.ascontiguousarray(a).tobytes()
        assert name not in header, name
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # data region 8-byte aligned, like the Python writer
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return os.path.getsize(path)


def rand32(*shape, lo=-1.0, hi=1.0):
    """float32 uniform values, returned as float64 (exact copies)."""
    return (torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo).to(DT)


def layer_file(path, op, module, x, meta, extra_before=(), forward=None, after=None):
    """Runs module on x in float64, backward of sum(out * R); writes the file."""
    module = module.to(DT)
    # float32-representable parameters
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.float().to(DT))
    params = [(n, p.detach().clone()) for n, p in module.named_parameters()]
    before = [(n, b.detach().clone()) for n, b in module.named_buffers() if b.is_floating_point()]
    x = x.clone().requires_grad_(True)
    out = forward(module, x) if forward else module(x)
    R = rand32(*out.shape)
    (out * R).sum().backward()
    tensors = [("input", x)] + params + before + [("output", out), ("R", R), ("grad.input", x.grad)]
    tensors += [("grad." + n, p.grad) for n, p in module.named_parameters()]
    if after:
        tensors += after(module)
    meta = dict(meta, op=op, generator="tests/golden/gen_golden.py", torch=torch.__version__,
                compute_dtype="float64", loss="sum(output * R)")
    return write_safetensors(path, tensors, meta)


def gen_layers(out):
    sizes = {}
    torch.manual_seed(1)
    m = nn.Conv2d(4, 5, (2, 3), stride=(1, 2))
    sizes["conv2d"] = layer_file(f"{out}/conv2d.safetensors", "conv2d", m, rand32(3, 4, 7, 13),
                                 {"kernel": "2,3", "stride": "1,2", "padding": "0,0"})
    torch.manual_seed(2)
    m = nn.ConvTranspose2d(6, 5, (2, 3), stride=(1, 2), output_padding=(0, 1))
    sizes["conv_transpose2d"] = layer_file(f"{out}/conv_transpose2d.safetensors", "conv_transpose2d", m,
                                           rand32(3, 6, 5, 9), {"kernel": "2,3", "stride": "1,2", "padding": "0,0",
                                                                 "output_padding": "0,1"})
    torch.manual_seed(3)
    m = nn.BatchNorm2d(5, eps=1e-5, momentum=0.1)
    with torch.no_grad():  # non-trivial affine and running stats
        m.weight.copy_(rand32(5, lo=0.5, hi=1.5))
        m.bias.copy_(rand32(5, lo=-0.5, hi=0.5))
        m.running_mean.copy_(rand32(5, lo=-0.5, hi=0.5))
        m.running_var.copy_(rand32(5, lo=0.5, hi=2.0))
    m.train()
    x = rand32(3, 5, 6, 7, lo=-2, hi=3)
    sizes["batchnorm2d"] = layer_file(
        f"{out}/batchnorm2d.safetensors", "batchnorm2d", m, x, {"eps": "1e-5", "momentum": "0.1", "training": "1"},
        after=lambda mod: [("running_mean.after", mod.running_mean), ("running_var.after", mod.running_var),
                           ("num_batches_tracked.after", mod.num_batches_tracked)])
    torch.manual_seed(4)
    sizes["elu"] = layer_file(f"{out}/elu.safetensors", "elu", nn.ELU(1.0), rand32(3, 4, 5, 6, lo=-3, hi=3),
                              {"alpha": "1"})
    torch.manual_seed(5)
    # spans both sides of the threshold (beta*x > 20 is linear)
    sizes["softplus"] = layer_file(f"{out}/softplus.safetensors", "softplus", nn.Softplus(1.0, 20.0),
                                   rand32(3, 4, 5, 6, lo=-25, hi=25), {"beta": "1", "threshold": "20"})
    torch.manual_seed(6)
    sizes["linear"] = layer_file(f"{out}/linear.safetensors", "linear", nn.Linear(7, 9), rand32(2, 5, 7), {})
    torch.manual_seed(7)
    lstm = nn.LSTM(10, 8, num_layers=2, batch_first=True)
    sizes["lstm"] = layer_file(f"{out}/lstm.safetensors", "lstm", lstm, rand32(3, 6, 10),
                               {"layers": "2", "hidden": "8", "batch_first": "1"},
                               forward=lambda mod, x: mod(x)[0])
    torch.manual_seed(8)
    gru = nn.GRU(10, 8, num_layers=2, batch_first=True)
    sizes["gru"] = layer_file(f"{out}/gru.safetensors", "gru", gru, rand32(3, 6, 10),
                              {"layers": "2", "hidden": "8", "batch_first": "1"},
                              forward=lambda mod, x: mod(x)[0])
    torch.manual_seed(9)
    mha = nn.MultiheadAttention(16, 4, dropout=0.0, batch_first=True)
    with torch.no_grad():  # PyTorch initialises these biases to zero
        mha.in_proj_bias.copy_(rand32(48, lo=-0.2, hi=0.2))
        mha.out_proj.bias.copy_(rand32(16, lo=-0.2, hi=0.2))
    T = 7

    def mha_fwd(mod, x):
        mask = torch.triu(torch.full((T, T), float("-inf"), dtype=DT), diagonal=1)
        return mod(x, x, x, attn_mask=mask, need_weights=False)[0]

    sizes["attention"] = layer_file(f"{out}/attention.safetensors", "attention", mha, rand32(2, T, 16),
                                    {"heads": "4", "causal": "1", "batch_first": "1"}, forward=mha_fwd)
    torch.manual_seed(10)
    ln = nn.LayerNorm(12, eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(rand32(12, lo=0.5, hi=1.5))
        ln.bias.copy_(rand32(12, lo=-0.5, hi=0.5))
    sizes["layernorm"] = layer_file(f"{out}/layernorm.safetensors", "layernorm", ln, rand32(3, 5, 12, lo=-2, hi=2),
                                    {"eps": "1e-5"})
    return sizes


class CRN(nn.Module):
    """DESIGN.md's CRN with configurable channels and hidden size (the reference
    crn_torch.py fixes them at 16..256 and a middle width of 1024)."""

    def __init__(self, rnn="lstm", hidden=1024, layers=2, channels=(16, 32, 64, 128, 256), freq=161):
        super().__init__()
        ch = [1] + list(channels)
        fo = freq
        for _ in range(5):
            fo = (fo - 3) // 2 + 1
        width = ch[5] * fo
        self.enc = nn.ModuleList()
        self.ebn = nn.ModuleList()
        for i in range(5):
            self.enc.append(nn.Conv2d(ch[i], ch[i + 1], (2, 3), stride=(1, 2)))
            self.ebn.append(nn.BatchNorm2d(ch[i + 1]))
        self.attention = rnn == "attention"
        if self.attention:
            block = nn.TransformerEncoderLayer(width, 8, 2 * width, dropout=0.0, activation="relu", batch_first=True,
                                               norm_first=True)
            self.rnn = nn.TransformerEncoder(block, num_layers=layers, enable_nested_tensor=False)
            hidden = width
        else:
            R = nn.LSTM if rnn == "lstm" else nn.GRU
            self.rnn = R(width, hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(hidden, width) if hidden != width else None
        dch = [ch[5], ch[4], ch[3], ch[2], ch[1], 1]
        outpad = [0, 0, 0, 1, 0]
        self.dec = nn.ModuleList()
        self.dbn = nn.ModuleList()
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
        y = x.permute(0, 2, 1, 3).reshape(B, T, C * Fq)
        if self.attention:
            mask = torch.triu(torch.full((T, T), float("-inf"), dtype=y.dtype), diagonal=1)
            y = self.rnn(y, mask=mask)
        else:
            y, _ = self.rnn(y)
        if self.proj is not None:
            y = self.proj(y)
        x = y.reshape(B, T, C, Fq).permute(0, 2, 1, 3)
        for i, d in enumerate(self.dec):
            x = d(torch.cat([x, skips[4 - i]], 1))[:, :, :-1, :]
            x = F.elu(self.dbn[i](x)) if i < 4 else F.softplus(x)
        return x


def rel(a, ref):
    """The tests' metric: max |a - ref| / max |ref|."""
    a, ref = a.double(), ref.double()
    return ((a - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


# Adam's eps in the 5 steps. A conv bias before a training-mode BatchNorm has an exact
# gradient of zero; in float32 it gets rounding noise (up to ~3e-7 here), which Adam with
# its default eps (1e-8) normalises into steps of up to lr, each implementation in its own
# random direction: the eval output after 5 steps then spreads over ~5e-3 between runs
# that differ by one ulp in the weights (measured with sinter's CPU backend), and a test
# of it compares noise. At 1e-4 noise moves those biases by < 1e-2 lr while the real
# gradients (up to ~1e-1) still take Adam's normalised steps: the same spread is ~4e-6.
ADAM_EPS = 1e-4


def adam5(m, x, target):
    """5 Adam steps (lr 1e-3, eps ADAM_EPS); returns the losses, the BatchNorm buffers and the eval-mode output after them."""
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=ADAM_EPS)
    losses = []
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        l = F.mse_loss(m(x), target)
        l.backward()
        opt.step()
        losses.append(l.item())
    after = [("after5." + n, t.detach().clone()) for n, t in m.state_dict().items()
             if n.split(".")[-1] in ("running_mean", "running_var", "num_batches_tracked")]
    m.eval()
    eval_out = m(x).detach()  # grad enabled: the plain (non fast-path) Transformer code
    return losses, after, eval_out


def gen_crn(path, seed, rnn, hidden, channels, layers=2, B=2, T=12, freq=161):
    torch.manual_seed(seed)
    m = CRN(rnn, hidden, layers, channels, freq)  # PyTorch's default init, in float32
    with torch.no_grad():
        # Non-trivial norm affines, attention biases and running stats (defaults are 1/0).
        for n, p in m.named_parameters():
            if n.startswith(("ebn.", "dbn.")) or ".norm" in n:
                p.copy_((1.0 if n.endswith("weight") else 0.0) + rand32(*p.shape, lo=-0.2, hi=0.2).float())
            elif n.endswith(("in_proj_bias", "out_proj.bias")):
                p.copy_(rand32(*p.shape, lo=-0.1, hi=0.1).float())
        for n, b in m.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(rand32(*b.shape, lo=-0.1, hi=0.1).float())
            elif n.endswith("running_var"):
                b.copy_(rand32(*b.shape, lo=0.8, hi=1.2).float())
    m = m.to(DT)
    state = [(n, t.detach().clone()) for n, t in m.state_dict().items()]
    x = rand32(B, 1, T, freq, lo=0, hi=1)
    target = rand32(B, 1, T, freq, lo=0, hi=1)
    m.train()
    out = m(x)
    loss = F.mse_loss(out, target)
    loss.backward()
    grads = [("grad." + n, p.grad.detach().clone()) for n, p in m.named_parameters()]
    with torch.no_grad():
        for n, t in m.state_dict().items():
            t.copy_(dict(state)[n])
    m.eval()
    eval_out0 = m(x).detach()  # eval mode on the initial state_dict (grad enabled: no fast path)
    m.train()
    m.zero_grad(set_to_none=True)
    losses, after, eval_out = adam5(m, x, target)
    assert abs(losses[0] - loss.item()) < 1e-12 * max(1.0, abs(loss.item()))
    # The same 5 steps in float32: how far PyTorch's own float32 run lands from this
    # float64 reference (the tests allow a multiple of it; ADAM_EPS keeps it small).
    m32 = CRN(rnn, hidden, layers, channels, freq)
    m32.load_state_dict({n: t.float() for n, t in state})
    l32, after32, eval32 = adam5(m32, x.float(), target.float())
    f32err = {"losses": rel(torch.tensor(l32), torch.tensor(losses)), "eval_output": rel(eval32, eval_out)}
    for kind in ("running_mean", "running_var"):
        f32err[kind] = max(rel(a[1], b[1]) for a, b in zip(after32, after) if a[0].endswith(kind))
    nparam = sum(p.numel() for p in m.parameters())
    tensors = state + [("x", x), ("target", target), ("output", out), ("loss", loss.reshape(1))] + grads
    tensors += [("eval_output0", eval_out0), ("adam_losses", torch.tensor(losses, dtype=DT))] + after
    tensors += [("eval_output", eval_out)]
    meta = {"rnn": rnn, "hidden": hidden, "layers": layers, "channels": ",".join(map(str, channels)),
            "freq_bins": freq, "batch": B, "frames": T, "optimizer": "adam lr=1e-3 betas=(0.9,0.999) eps=%g" % ADAM_EPS, "adam_eps": "%g" % ADAM_EPS,
            "steps": 5, "params": nparam, "generator": "tests/golden/gen_golden.py", "torch": torch.__version__,
            "compute_dtype": "float64"}
    meta.update({"torch_f32_err." + k: "%.3e" % v for k, v in f32err.items()})
    return write_safetensors(path, tensors, meta), nparam


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--only", choices=("layers", "crn"), help="write only the per-layer or only the CRN files")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    sizes = gen_layers(a.out) if a.only != "crn" else {}
    # Channels are reduced from 16..256 to keep the files small (weights + gradients);
    # the LSTM has hidden != width (proj), the GRU hidden == width (no proj).
    if a.only != "layers":
        sizes["crn_lstm"] = gen_crn(f"{a.out}/crn_lstm.safetensors", 11, "lstm", 64, (8, 16, 32, 32, 64))
        sizes["crn_gru"] = gen_crn(f"{a.out}/crn_gru.safetensors", 12, "gru", 64, (8, 16, 16, 32, 16))
        sizes["crn_attention"] = gen_crn(f"{a.out}/crn_attention.safetensors", 13, "attention", 64, (4, 8, 8, 8, 16))
    total = 0
    for k, v in sizes.items():
        s = v[0] if isinstance(v, tuple) else v
        total += s
        print(f"{k:20s} {s:9d} bytes" + (f"  ({v[1]} params)" if isinstance(v, tuple) else ""))
    print(f"{'total':20s} {total:9d} bytes")


if __name__ == "__main__":
    main()
