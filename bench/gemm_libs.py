# GEMM throughput of numpy's BLAS and torch's (MKL) at the LSTM's shapes.
#   python3 bench/gemm_libs.py THREADS
import time, sys, numpy as np, torch
th = int(sys.argv[1])
torch.set_num_threads(th)
shapes = [(1600, 1024, 4096), (4096, 1600, 1024)]
for (m, k, n) in shapes:
    a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for name, f in [("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)]:
        f(); t0 = time.perf_counter(); r = 5
        for _ in range(r): f()
        dt = (time.perf_counter() - t0) / r
        print(f"threads {th} {name} {m}x{k}x{n}: {2*m*k*n/dt/1e9:.0f} GFLOP/s")
print("numpy", np.__version__, "torch", torch.__version__)
