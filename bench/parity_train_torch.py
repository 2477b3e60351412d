#!/usr/bin/env python3
"""Training parity, sinter vs PyTorch: the same model, initial weights, batches,
learning rates and validation set; compares the validation SI-SDR improvement.

  1. SINTER_DUMP_BATCHES=/tmp/dump build/sinter train conf/prototype.yaml \
        model.hidden=256 data.segment_seconds=2 --max-steps 300 train.valid_every=300
     (writes /tmp/dump/init.safetensors = step-0 checkpoint, batch_NNNNNN.safetensors
      = every batch trained on with its lr, valid.safetensors = validation waveforms)
  2. python3 bench/parity_train_torch.py /tmp/dump RUN_DIR
     trains the PyTorch CRN on those batches and prints both SI-SDRi numbers
     (sinter's from RUN_DIR/metrics.csv).
Metrics as sinter computes them: estimated magnitude + noisy phase, iSTFT, SI-SDR
over the samples two frames cover ([160, 160*(T-1)+160))."""
import csv, glob, os, sys
import numpy as np
import torch, torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "app"))
from test_interop_torch import crn_from_meta, load_safetensors  # noqa: E402

N_FFT, HOP = 320, 160
WIN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)


def stft(x):
    T = 1 + (len(x) - N_FFT) // HOP
    return np.fft.rfft(np.stack([x[HOP * t:HOP * t + N_FFT] * WIN for t in range(T)]), axis=1)


def istft(Y, n):
    fr = np.fft.irfft(Y, n=N_FFT, axis=1)
    y, d = np.zeros(n), np.zeros(n)
    for t in range(Y.shape[0]):
        y[HOP * t:HOP * t + N_FFT] += WIN * fr[t]
        d[HOP * t:HOP * t + N_FFT] += WIN ** 2
    return np.where(d > 1e-8, y / np.maximum(d, 1e-30), 0.0)


def si_sdr(r, e):
    r = r - r.mean(); e = e - e.mean()
    eps = np.finfo(float).eps
    a = (e @ r + eps) / (r @ r + eps); t = a * r
    return 10 * np.log10((t @ t + eps) / ((e - t) @ (e - t) + eps))


def validate(m, valid):
    m.eval()
    nz, cl = valid["noisy"].double().numpy(), valid["clean"].double().numpy()
    gains = []
    with torch.no_grad():
        for x, c in zip(nz, cl):
            X = stft(x)
            T = X.shape[0]
            est = m(torch.from_numpy(np.abs(X)).float()[None, None])[0, 0].double().numpy()
            y = istft(est * np.exp(1j * np.angle(X)), len(x))
            a, b = HOP, HOP * (T - 1) + HOP
            gains.append(si_sdr(c[a:b], y[a:b]) - si_sdr(c[a:b], x[a:b]))
    m.train()
    return float(np.mean(gains))


def main():
    dump, run = sys.argv[1], sys.argv[2]
    torch.set_num_threads(os.cpu_count() or 2)
    sd, meta = load_safetensors(os.path.join(dump, "init.safetensors"))
    m = crn_from_meta(meta)
    m.load_state_dict({k: v for k, v in sd.items() if not k.startswith("optim.")}, strict=True)
    cfg = meta["sinter.config"]
    clip = 0.0
    for line in cfg.splitlines():
        if line.strip().startswith("grad_clip:"):
            clip = float(line.split(":")[1].split("#")[0])
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    m.train()
    files = sorted(glob.glob(os.path.join(dump, "batch_*.safetensors")))
    for i, f in enumerate(files):
        b, bm = load_safetensors(f)
        for g in opt.param_groups:
            g["lr"] = float(bm["lr"])
        opt.zero_grad()
        loss = F.mse_loss(m(b["noisy_mag"]), b["clean_mag"])
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
        opt.step()
        if i % 50 == 0 or i == len(files) - 1:
            print(f"torch step {i + 1}: loss {loss.item():.5f}", flush=True)
    valid, _ = load_safetensors(os.path.join(dump, "valid.safetensors"))
    t = validate(m, valid)
    s = None
    with open(os.path.join(run, "metrics.csv")) as fh:
        for row in csv.DictReader(fh):
            if row["valid_sisdri"]:
                s = float(row["valid_sisdri"])
    print(f"steps {len(files)}: validation SI-SDRi sinter {s:+.2f} dB, PyTorch {t:+.2f} dB, difference {abs(s - t):.2f} dB")


if __name__ == "__main__":
    main()
