#!/usr/bin/python3
"""Golden files for the example models described in YAML (conf/models/*.yaml):
each model written twice, as a layer list for sinter and as a hand-written
PyTorch nn.Module with the same attribute names, and the PyTorch results stored
for the C test (tests/app/test_golden_models.c).

Run with Debian's interpreter (python3-torch):
    /usr/bin/python3 tests/golden/gen_models.py [--out tests/golden] [--conf conf/models]

--conf also writes conf/models/fc_mask.yaml and conf/models/unet_gru.yaml from
the same templates at their full widths, so the examples and the goldens cannot
drift apart; the goldens use tiny widths and T to stay small.

Each model_<name>.safetensors holds the state_dict (PyTorch names), "x",
"target", "output" (training mode), "loss", "grad.<param>" for every parameter,
"adam_losses" (5 Adam steps, lr 1e-3; [0] == loss) and "after5.<name>" for
every state_dict entry after those steps. __metadata__: "model_yaml" (the model
file: name, output, output_activation, loss, layers), batch, frames, and
"torch_f32_err.<losses|params>": how far PyTorch's own float32 run of the 5
steps lands from this float64 reference (the tests scale tolerances by it).
Computation in float64 from float32-representable inputs, as gen_golden.py.
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import DT, rand32, rel, write_safetensors  # noqa: E402

FREQ = 161


# ---- frame-wise fully-connected mask estimator ----

class FcMask(nn.Module):
    """LayerNorm over the 161 bins of a frame, two hidden ReLU layers, a sigmoid
    mask per bin; the estimate is mask * noisy magnitude."""

    def __init__(self, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(FREQ)
        self.fc1 = nn.Linear(FREQ, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, FREQ)

    def forward(self, x):
        h = F.relu(self.fc1(self.norm(x)))
        h = F.relu(self.fc2(h))
        return torch.sigmoid(self.out(h)) * x


def fc_mask_yaml(hidden):
    return f"""name: graph
output: mask               # estimate = sigmoid(net(x)) * noisy magnitude
output_activation: sigmoid
loss: l1
layers:
  - {{type: layernorm, name: norm, normalized_shape: {FREQ}}}
  - {{type: linear, name: fc1, in_features: {FREQ}, out_features: {hidden}}}
  - {{type: relu}}
  - {{type: linear, name: fc2, in_features: {hidden}, out_features: {hidden}}}
  - {{type: relu}}
  - {{type: linear, name: out, in_features: {hidden}, out_features: {FREQ}}}
"""


# ---- a small causal conv U-Net with a GRU bottleneck ----

def unet_freqs():
    f1 = (FREQ + 2 - 3) // 2 + 1   # 81
    f2 = (f1 + 2 - 3) // 2 + 1     # 41
    return f1, f2


class UNetGRU(nn.Module):
    """Two causal encoder stages (one zero frame before time, frequency padded
    by 1, kernel (2,3), stride (1,2)), a GRU over the flattened bottleneck, two
    decoder stages that concatenate the encoder outputs, crop the last frame and
    end in softplus."""

    def __init__(self, c1, c2, hidden):
        super().__init__()
        _, f2 = unet_freqs()
        self.c2, self.f2 = c2, f2
        self.enc1 = nn.Conv2d(1, c1, (2, 3), stride=(1, 2))
        self.bn1 = nn.BatchNorm2d(c1)
        self.enc2 = nn.Conv2d(c1, c2, (2, 3), stride=(1, 2))
        self.gru = nn.GRU(c2 * f2, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, c2 * f2)
        self.dec2 = nn.ConvTranspose2d(2 * c2, c1, (2, 3), stride=(1, 2), padding=(0, 1))
        self.dec1 = nn.ConvTranspose2d(2 * c1, 1, (2, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x):
        e1 = F.elu(self.bn1(self.enc1(F.pad(x, (1, 1, 1, 0)))))
        e2 = F.elu(self.enc2(F.pad(e1, (1, 1, 1, 0))))
        B, C, T, Fq = e2.shape
        y, _ = self.gru(e2.permute(0, 2, 1, 3).reshape(B, T, C * Fq))
        y = self.proj(y).reshape(B, T, C, Fq).permute(0, 2, 1, 3)
        d = F.elu(self.dec2(torch.cat([y, e2], 1))[:, :, :-1, :])
        return F.softplus(self.dec1(torch.cat([d, e1], 1))[:, :, :-1, :])


def unet_gru_yaml(c1, c2, hidden):
    _, f2 = unet_freqs()
    return f"""name: graph
output: mapping            # the network estimates the clean magnitude itself
output_activation: none    # its last layer is a softplus
loss: mse
layers:
  # encoder: causal in time (one zero frame before), frequency 161 -> 81 -> 41
  - {{type: zeropad2d, padding: [1, 1, 1, 0]}}
  - {{type: conv2d, name: enc1, in_channels: 1, out_channels: {c1}, kernel_size: [2, 3], stride: [1, 2]}}
  - {{type: batchnorm2d, name: bn1, num_features: {c1}}}
  - {{type: elu, name: e1}}
  - {{type: zeropad2d, padding: [1, 1, 1, 0]}}
  - {{type: conv2d, name: enc2, in_channels: {c1}, out_channels: {c2}, kernel_size: [2, 3], stride: [1, 2]}}
  - {{type: elu, name: e2}}
  # bottleneck: a GRU over the frames, [B,{c2},T,{f2}] -> [B,T,{c2 * f2}] and back
  - {{type: permute, dims: [0, 2, 1, 3]}}
  - {{type: flatten, start_dim: 2}}
  - {{type: gru, name: gru, input_size: {c2 * f2}, hidden_size: {hidden}}}
  - {{type: linear, name: proj, in_features: {hidden}, out_features: {c2 * f2}}}
  - {{type: unflatten, dim: 2, unflattened_size: [{c2}, {f2}]}}
  - {{type: permute, dims: [0, 2, 1, 3]}}
  # decoder: skip concatenations, transposed convs that drop the last frame (causal)
  - {{type: concat, from: [-1, e2], dim: 1}}
  - {{type: conv_transpose2d, name: dec2, in_channels: {2 * c2}, out_channels: {c1}, kernel_size: [2, 3], stride: [1, 2], padding: [0, 1]}}
  - {{type: slice, dim: 2, start: 0, end: -1}}
  - {{type: elu}}
  - {{type: concat, from: [-1, e1], dim: 1}}
  - {{type: conv_transpose2d, name: dec1, in_channels: {2 * c1}, out_channels: 1, kernel_size: [2, 3], stride: [1, 2], padding: [0, 1]}}
  - {{type: slice, dim: 2, start: 0, end: -1}}
  - {{type: softplus}}
"""


def loss_fn(kind):
    return F.l1_loss if kind == "l1" else F.mse_loss


def adam5(m, x, target, loss):
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        l = loss(m(x), target)
        l.backward()
        opt.step()
        losses.append(l.item())
    return losses, [(n, t.detach().clone()) for n, t in m.state_dict().items()]


def gen(path, seed, make, yaml, loss_kind, B=2, T=6):
    torch.manual_seed(seed)
    m = make()
    with torch.no_grad():
        # non-trivial norm affines and running stats (the defaults are 1 / 0)
        for n, p in m.named_parameters():
            if n.startswith(("norm.", "bn1.")):
                p.copy_((1.0 if n.endswith("weight") else 0.0) + rand32(*p.shape, lo=-0.2, hi=0.2).float())
        for n, b in m.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(rand32(*b.shape, lo=-0.1, hi=0.1).float())
            elif n.endswith("running_var"):
                b.copy_(rand32(*b.shape, lo=0.8, hi=1.2).float())
    state32 = {n: t.detach().clone() for n, t in m.state_dict().items()}
    m = m.to(DT)
    state = [(n, t.detach().clone()) for n, t in m.state_dict().items()]
    x = rand32(B, 1, T, FREQ, lo=0, hi=1)
    target = rand32(B, 1, T, FREQ, lo=0, hi=1)
    loss = loss_fn(loss_kind)
    m.train()
    out = m(x)
    l0 = loss(out, target)
    l0.backward()
    grads = [("grad." + n, p.grad.detach().clone()) for n, p in m.named_parameters()]
    with torch.no_grad():
        for n, t in m.state_dict().items():
            t.copy_(dict(state)[n])
    m.zero_grad(set_to_none=True)
    losses, after = adam5(m, x, target, loss)
    assert abs(losses[0] - l0.item()) < 1e-12 * max(1.0, abs(l0.item()))
    m32 = make()
    m32.load_state_dict(state32)
    l32, after32 = adam5(m32, x.float(), target.float(), loss)
    f32 = {"losses": rel(torch.tensor(l32), torch.tensor(losses)),
           "params": max(rel(a[1], b[1]) for a, b in zip(after32, after) if b[1].is_floating_point())}
    tensors = state + [("x", x), ("target", target), ("output", out), ("loss", l0.reshape(1))] + grads
    tensors += [("adam_losses", torch.tensor(losses, dtype=DT))] + [("after5." + n, t) for n, t in after]
    meta = {"model_yaml": yaml, "batch": B, "frames": T, "params": sum(p.numel() for p in m.parameters()),
            "optimizer": "adam lr=1e-3 betas=(0.9,0.999) eps=1e-8", "steps": 5,
            "generator": "tests/golden/gen_models.py", "torch": torch.__version__, "compute_dtype": "float64"}
    meta.update({"torch_f32_err." + k: "%.3e" % v for k, v in f32.items()})
    return write_safetensors(path, tensors, meta)


CONF_HEADER = {
    "fc_mask": """# A frame-wise fully-connected mask estimator, described as a layer list (model.name: graph).
# Each frame's 161 magnitudes are normalised (LayerNorm), go through two hidden ReLU
# layers, and come out as a sigmoid mask that multiplies the noisy magnitude.
# Written by tests/golden/gen_models.py --conf (its golden test checks the same template
# against a PyTorch module with the same attribute names). Try:
#   sinter model conf/models/fc_mask.yaml
#   sinter train conf/demo.yaml model.file=conf/models/fc_mask.yaml
""",
    "unet_gru": """# A small causal convolutional U-Net with a GRU bottleneck and skip concatenations,
# described as a layer list (model.name: graph). Causal in time, so `sinter enhance`
# streams it chunk by chunk.
# Written by tests/golden/gen_models.py --conf (its golden test checks the same template
# against a PyTorch module with the same attribute names). Try:
#   sinter model conf/models/unet_gru.yaml
#   sinter train conf/demo.yaml model.file=conf/models/unet_gru.yaml
""",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--conf", default=None, help="also write the example model files into this folder")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    s1 = gen(f"{a.out}/model_fc_mask.safetensors", 21, lambda: FcMask(16), fc_mask_yaml(16), "l1")
    s2 = gen(f"{a.out}/model_unet_gru.safetensors", 22, lambda: UNetGRU(3, 4, 12), unet_gru_yaml(3, 4, 12), "mse")
    print(f"model_fc_mask.safetensors  {s1} bytes\nmodel_unet_gru.safetensors {s2} bytes")
    if a.conf:
        for name, text in (("fc_mask", fc_mask_yaml(256)), ("unet_gru", unet_gru_yaml(16, 32, 256))):
            with open(os.path.join(a.conf, name + ".yaml"), "w") as f:
                f.write(CONF_HEADER[name] + text)


if __name__ == "__main__":
    main()
