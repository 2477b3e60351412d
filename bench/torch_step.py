"""PyTorch baseline for bench_step: the same CRN (DESIGN.md), the same training step
(forward, MSE, backward, Adam), timed the same way (median after warm-up).
  python3 bench/torch_step.py --device cpu|cuda [--threads N] [--batch 4] [--frames 400]
         [--steps 10] [--mode eager|compile|bf16] [--rnn lstm|gru|attention] [--infer]
         [--tf32 default|on|off]
--tf32 off: strict fp32 in cuBLAS and cuDNN (PyTorch's default lets cuDNN's
convolutions and LSTM use TF32 tensor cores; matmuls stay fp32). on: TF32 in both.
Prints one JSON line."""
import argparse, json, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class CRN(nn.Module):
    def __init__(self, rnn="lstm", hidden=1024, ch=(16, 32, 64, 128, 256)):
        super().__init__()
        c = (1,) + tuple(ch)
        self.enc = nn.ModuleList(nn.Conv2d(c[i], c[i + 1], (2, 3), (1, 2)) for i in range(5))
        self.ebn = nn.ModuleList(nn.BatchNorm2d(c[i + 1]) for i in range(5))
        width = c[5] * 4
        self.kind = rnn
        if rnn == "attention":
            layer = nn.TransformerEncoderLayer(width, 8, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            self.rnn = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            hidden = width
        else:
            self.rnn = (nn.LSTM if rnn == "lstm" else nn.GRU)(width, hidden, num_layers=2, batch_first=True)
        self.proj = nn.Linear(hidden, width) if hidden != width else None
        d = (c[5], c[4], c[3], c[2], c[1], 1)
        self.dec = nn.ModuleList(
            nn.ConvTranspose2d(2 * d[i], d[i + 1], (2, 3), (1, 2), output_padding=(0, 1 if i == 3 else 0))
            for i in range(5))
        self.dbn = nn.ModuleList(nn.BatchNorm2d(d[i + 1]) for i in range(4))

    def forward(self, x):
        skips = []
        for conv, bn in zip(self.enc, self.ebn):
            x = F.elu(bn(conv(F.pad(x, (0, 0, 1, 0)))))
            skips.append(x)
        b, ch, t, f = x.shape
        y = x.permute(0, 2, 1, 3).reshape(b, t, ch * f)
        if self.kind == "attention":
            y = self.rnn(y, mask=nn.Transformer.generate_square_subsequent_mask(t, device=y.device))
        else:
            y = self.rnn(y)[0]
        if self.proj is not None:
            y = self.proj(y)
        x = y.reshape(b, t, ch, f).permute(0, 2, 1, 3)
        for i, conv in enumerate(self.dec):
            x = conv(torch.cat([x, skips[4 - i]], 1))[:, :, :-1]
            x = F.elu(self.dbn[i](x)) if i < 4 else F.softplus(x)
        return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mode", default="eager")
    ap.add_argument("--rnn", default="lstm")
    ap.add_argument("--infer", action="store_true")
    ap.add_argument("--tf32", default="default", choices=("default", "on", "off"))
    a = ap.parse_args()
    if a.tf32 != "default":
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    t_start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = CRN(a.rnn).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fn = torch.compile(model) if a.mode == "compile" else model
    x = torch.rand(a.batch, 1, a.frames, 161, device=dev)
    y = torch.rand(a.batch, 1, a.frames, 161, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        if a.infer:
            with torch.no_grad():
                return fn(x).sum()
        opt.zero_grad(set_to_none=True)
        if a.mode == "bf16":
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                out = fn(x)
            loss = F.mse_loss(out.float(), y)
        else:
            loss = F.mse_loss(fn(x), y)
        loss.backward()
        opt.step()
        return loss

    if a.infer:
        model.eval()
    step(); sync()
    first = time.perf_counter() - t_start
    for _ in range(a.warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(a.steps):
        t0 = time.perf_counter(); loss = step(); sync(); ts.append(time.perf_counter() - t0)
    ts.sort()
    print(json.dumps(dict(impl="pytorch", device=a.device, mode="infer" if a.infer else a.mode, rnn=a.rnn,
                          batch=a.batch, frames=a.frames, threads=torch.get_num_threads(),
                          params=sum(p.numel() for p in model.parameters()), first_step_s=round(first, 4),
                          step_ms_median=round(1e3 * ts[len(ts) // 2], 3), step_ms_min=round(1e3 * ts[0], 3),
                          loss=float(loss), tf32=a.tf32,
                          cudnn_tf32=torch.backends.cudnn.allow_tf32,
                          matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                          peak_mem_mb=(torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None),
                          torch=torch.__version__)))


if __name__ == "__main__":
    main()
