"""Per-layer convolution times of the CRN in PyTorch/cuDNN, to set beside sinter's
per-node profile (SN_PROFILE=2 bench_step --device cuda): each encoder Conv2d and
decoder ConvTranspose2d alone: forward, and the data and weight gradients as
aten.convolution_backward calls (no autograd), with
cudnn.benchmark on (cuDNN tries its algorithms and keeps the fastest).
  python3 bench/torch_conv_layers.py [--batch 4] [--frames 400] [--runs 20] [--tf32 off|on]
Prints one JSON line per layer (ms, median of --runs, CUDA events)."""
import argparse, json
import torch
import torch.nn.functional as F


def timed(fn, runs):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return round(ts[len(ts) // 2], 4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tf32", default="off", choices=("off", "on"))
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    dev, B, T = torch.device("cuda"), a.batch, a.frames
    ch, f = [1, 16, 32, 64, 128, 256], [161]
    for _ in range(5):
        f.append((f[-1] - 3) // 2 + 1)
    total = {"fwd": 0.0, "dgrad": 0.0, "wgrad": 0.0}
    layers = []
    for i in range(5):  # encoder: causal pad of one frame, then the conv
        x = torch.randn(B, ch[i], T + 1, f[i], device=dev)
        w = torch.randn(ch[i + 1], ch[i], 2, 3, device=dev)
        layers.append((f"enc.{i}", False, x, w, (1, 2), 0))
    dch, outpad = [256, 128, 64, 32, 16, 1], [0, 0, 0, 1, 0]
    for i in range(5):  # decoder: input = cat(x, skip), 2 * dch[i] channels
        x = torch.randn(B, 2 * dch[i], T, f[5 - i], device=dev)
        w = torch.randn(2 * dch[i], dch[i + 1], 2, 3, device=dev)
        layers.append((f"dec.{i}", True, x, w, (1, 2), outpad[i]))
    bwd = torch.ops.aten.convolution_backward
    for name, tr, x, w, st, op in layers:
        conv = (lambda x, w: F.conv_transpose2d(x, w, stride=st, output_padding=(0, op))) if tr else \
            (lambda x, w: F.conv2d(x, w, stride=st))
        gy = torch.randn_like(conv(x, w))
        # the backward ops alone (cuDNN's data and weight gradients), no autograd around them
        args = (gy, x, w, None, list(st), [0, 0], [1, 1], tr, [0, op] if tr else [0, 0], 1)
        r = {"layer": name, "x": list(x.shape), "w": list(w.shape), "tf32": a.tf32,
             "fwd": timed(lambda: conv(x, w), a.runs),
             "dgrad": timed(lambda: bwd(*args, [True, False, False]), a.runs),
             "wgrad": timed(lambda: bwd(*args, [False, True, False]), a.runs)}
        for k in total:
            total[k] += r[k]
        print(json.dumps(r))
    print(json.dumps({"layer": "all", "batch": B, "tf32": a.tf32, **{k: round(v, 3) for k, v in total.items()},
                      "sum": round(sum(total.values()), 3), "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
