#!/usr/bin/env python3
"""Writes data/metrics_ref.txt: STOI/ESTOI from pystoi and SNR/SI-SDR from
float64 numpy for deterministic speech-like signals. The signals are not
stored: synth() here and synth.h beside this file make the same ones.

Run:  .venv/bin/python tests/audio/gen_metrics_ref.py   (.venv: scripts/install.sh)
Line: name fs n variant kind seed snr_db  sum_clean sum_est sumsq_est  stoi estoi snr si_sdr
"""
import os
import numpy as np
from pystoi import stoi

M32 = 0xFFFFFFFF

def gauss(seed, n):
    s = seed or 1
    u = np.empty(2 * n)
    for i in range(2 * n):
        s ^= (s << 13) & M32
        s ^= s >> 17
        s ^= (s << 5) & M32
        u[i] = ((s >> 8) + 0.5) / 16777216.0
    u1, u2 = u[0::2], u[1::2]
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

def speech(fs, n, variant):
    f0b = 110.0 + 20.0 * variant
    K = min(20, int(np.floor(0.45 * fs / (f0b + 30.0))))
    t = np.arange(n) / fs
    f0 = f0b + 30.0 * np.sin(2 * np.pi * 0.5 * t)
    ph = 2 * np.pi * (f0b * t - 30.0 / (2 * np.pi * 0.5) * np.cos(2 * np.pi * 0.5 * t))
    F1 = 600.0 + 100.0 * np.sin(2 * np.pi * 1.3 * t)
    F2 = 1700.0 + 300.0 * np.sin(2 * np.pi * 0.7 * t)
    s = np.zeros(n)
    for k in range(1, K + 1):
        fk = k * f0
        a = (1.0 / k) * (1.0 + 3.0 * np.exp(-((fk - F1) / 200.0) ** 2) + 2.0 * np.exp(-((fk - F2) / 300.0) ** 2))
        s += a * np.sin(k * ph)
    r = 3.0 * t
    syl = np.floor(r)
    e = np.sin(np.pi * (r - syl)) ** 2
    e[np.fmod(syl, 4.0) == 3.0] = 0
    return 0.3 * e * s

def noise(fs, n, kind, seed):
    v = gauss(seed, n)
    if kind == 1:
        y = 0.0
        for i in range(n):
            y = v[i] + 0.95 * y
            v[i] = y
    elif kind == 2:
        v *= 1.0 + 0.9 * np.sin(2 * np.pi * 4.0 * np.arange(n) / fs)
    return v

def synth(fs, n, variant, kind, seed, snr_db):
    x = speech(fs, n, variant)
    if kind == -1:
        return x.astype(np.float32), x.astype(np.float32)
    v = noise(fs, n, max(kind, 0), seed)
    g = np.sqrt(np.sum(x * x) / (np.sum(v * v) * 10.0 ** (snr_db / 10.0)))
    est = g * v if kind == -2 else x + g * v
    return x.astype(np.float32), est.astype(np.float32)

EPS = np.finfo(np.float64).eps

def snr(r, e):
    return 10 * np.log10((np.sum(r * r) + EPS) / (np.sum((r - e) ** 2) + EPS))

def si_sdr(r, e):
    r = r - r.mean(); e = e - e.mean()
    a = (np.dot(e, r) + EPS) / (np.dot(r, r) + EPS)
    t = a * r
    return 10 * np.log10((np.sum(t * t) + EPS) / (np.sum((e - t) ** 2) + EPS))

CASES = [  # name fs seconds variant kind seed snr_db
    ("white16k_snr10", 16000, 3.0, 0, 0, 11, 10.0),
    ("white16k_snr0", 16000, 3.0, 1, 0, 12, 0.0),
    ("lowpass16k_snr-5", 16000, 2.0, 2, 1, 13, -5.0),
    ("mod16k_snr5_long", 16000, 4.5, 0, 2, 14, 5.0),
    ("white8k_snr5", 8000, 3.0, 1, 0, 15, 5.0),
    ("lowpass44k_snr0", 44100, 2.5, 0, 1, 16, 0.0),
    ("mod10k_snr15", 10000, 3.0, 2, 2, 17, 15.0),
    ("white22k_snr20", 22050, 2.0, 1, 0, 18, 20.0),
    ("identical16k", 16000, 1.3, 0, -1, 0, 0.0),
    ("noiseonly16k", 16000, 2.0, 0, -2, 19, 0.0),
    ("short16k", 16000, 0.25, 0, 0, 20, 10.0),
]

def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "metrics_ref.txt")
    with open(out, "w") as f:
        f.write("# made by gen_metrics_ref.py (pystoi %s); do not edit\n" % __import__("pystoi").__version__
                if hasattr(__import__("pystoi"), "__version__") else "# made by gen_metrics_ref.py; do not edit\n")
        for name, fs, sec, var, kind, seed, snr_db in CASES:
            n = int(round(sec * fs))
            x, y = synth(fs, n, var, kind, seed, snr_db)
            xd, yd = x.astype(np.float64), y.astype(np.float64)
            st = stoi(xd, yd, fs, extended=False)
            np.random.seed(0)  # pystoi's ESTOI adds EPS-sized random noise: keep the file reproducible
            es = stoi(xd, yd, fs, extended=True)
            f.write("%s %d %d %d %d %d %.17g  %.17g %.17g %.17g  %.17g %.17g %.17g %.17g\n" % (
                name, fs, n, var, kind, seed, snr_db, xd.sum(), yd.sum(), np.sum(yd * yd),
                st, es, snr(xd, yd), si_sdr(xd, yd)))
            print(f"{name}: stoi {st:.5f} estoi {es:.5f} snr {snr(xd, yd):.3f} si-sdr {si_sdr(xd, yd):.3f}")
    print("wrote", out)

if __name__ == "__main__":
    main()
