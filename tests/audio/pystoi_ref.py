"""STOI and ESTOI from pystoi for tests/audio/test_audio_metrics.c.
Usage: .venv/bin/python pystoi_ref.py FS CLEAN EST [FS CLEAN EST ...]
CLEAN and EST are raw float32 files; prints "stoi estoi" per triple, in float64."""
import sys

import numpy as np
from pystoi import stoi

args = sys.argv[1:]
if not args or len(args) % 3:
    sys.exit(__doc__)
for i in range(0, len(args), 3):
    fs = int(args[i])
    x = np.fromfile(args[i + 1], dtype="<f4").astype(np.float64)
    y = np.fromfile(args[i + 2], dtype="<f4").astype(np.float64)
    st = stoi(x, y, fs, extended=False)
    np.random.seed(0)  # ESTOI adds EPS-sized noise: keep it reproducible
    es = stoi(x, y, fs, extended=True)
    print("%.17g %.17g" % (st, es))
