"""PyTorch baseline for bench_lstm: nn.LSTM / nn.GRU (2 layers, I = H = 1024) forward +
backward of a sum over the output, median of the timed runs after warm-up.
  python3 bench/torch_lstm.py [--device cuda] [--batch 4] [--frames 400] [--gru]
         [--runs 10] [--tf32 default|on|off]
--tf32 off forbids TF32 in cuDNN (PyTorch's default allows it there). Prints one JSON line."""
import argparse, json, time
import torch
import torch.nn as nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--gru", action="store_true")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--tf32", default="default", choices=("default", "on", "off"))
    a = ap.parse_args()
    if a.tf32 != "default":
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    torch.manual_seed(0)
    dev = torch.device(a.device)
    rnn = (nn.GRU if a.gru else nn.LSTM)(a.hidden, a.hidden, num_layers=2, batch_first=True).to(dev)
    x = torch.randn(a.batch, a.frames, a.hidden, device=dev, requires_grad=True)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def run(backward):
        y = rnn(x)[0]
        if backward:
            y.sum().backward()

    res = {}
    for name, bwd in (("fwd", False), ("fwd_bwd", True)):
        for _ in range(3):
            run(bwd)
        sync()
        ts = []
        for _ in range(a.runs):
            t0 = time.perf_counter(); run(bwd); sync(); ts.append(time.perf_counter() - t0)
        ts.sort()
        res[name + "_ms"] = round(1e3 * ts[len(ts) // 2], 3)
    print(json.dumps(dict(impl="pytorch", op="gru" if a.gru else "lstm", device=a.device, batch=a.batch,
                          frames=a.frames, hidden=a.hidden, tf32=a.tf32,
                          cudnn_tf32=torch.backends.cudnn.allow_tf32, torch=torch.__version__, **res)))


if __name__ == "__main__":
    main()
