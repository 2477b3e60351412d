#!/usr/bin/env python3
"""Writes data/stft_ref.bin: STFT/iSTFT reference values from the float64 numpy
reference (DESIGN.md's reference/stft_ref.py, imported from --ref-dir, not copied).

Run:  .venv/bin/python tests/audio/gen_stft_ref.py [--ref-dir /work/shared/reference]
File: records of  b"<name> <count>\\n" + count little-endian float32.
"""
import argparse, os, sys
sys.dont_write_bytecode = True  # do not leave __pycache__ in the shared reference dir
import numpy as np

def write(f, name, a):
    a = np.ascontiguousarray(a, dtype='<f4').ravel()
    f.write(f"{name} {a.size}\n".encode())
    f.write(a.tobytes())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-dir", default=os.environ.get("SINTER_REFERENCE", "/work/shared/reference"))
    args = ap.parse_args()
    sys.path.insert(0, args.ref_dir)
    import stft_ref

    rng = np.random.default_rng(1234)
    n = 1280 + 37                       # not a multiple of the hop: tail samples have no frame
    x = (0.3 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
    X = stft_ref.stft(x.astype(np.float64))
    T = X.shape[0]
    # A random spectrum with non-zero imaginary DC/Nyquist: irfft ignores them.
    Y = (rng.standard_normal((T, 161)) + 1j * rng.standard_normal((T, 161))).astype(np.complex64)
    y = stft_ref.istft(Y.astype(np.complex128), n)
    # The enhancement path with a fixed nonlinear "model" m*(0.5 + 0.4*m/(1+m)); f(m)/m stays
    # bounded, so float32 phase noise at near-zero bins cannot dominate the comparison.
    enh = stft_ref.enhance(lambda m: m * (0.5 + 0.4 * m / (1 + m)), x.astype(np.float64))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "stft_ref.bin")
    with open(out, "wb") as f:
        write(f, "x", x)
        write(f, "re", X.real)
        write(f, "im", X.imag)
        write(f, "mag", np.abs(X))
        write(f, "Yre", Y.real)
        write(f, "Yim", Y.imag)
        write(f, "istft", y)
        write(f, "enhance", enh)
    print(f"wrote {out}: n={n} T={T}")

if __name__ == "__main__":
    main()
