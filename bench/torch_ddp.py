"""PyTorch DDP baseline for bench_dist_step: the same CRN (bench/torch_step.py), one
process per GPU, NCCL, default buckets (25 MB), Adam; each step timed between barriers
and the slowest rank's time kept, median after warm-up.
  torchrun --standalone --nproc_per_node N bench/torch_ddp.py [--batch 16] [--frames 400]
           [--steps 20] [--warmup 3] [--hidden 1024]
Rank 0 prints one JSON line."""
import argparse, json, os, sys, time
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import CRN  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=1024)
    a = ap.parse_args()
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = CRN(hidden=a.hidden).to(dev)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local])
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    g = torch.Generator(device="cpu").manual_seed(12345 + rank)
    x = torch.rand(a.batch, 1, a.frames, 161, generator=g).to(dev)
    y = torch.rand(a.batch, 1, a.frames, 161, generator=g).to(dev)
    times = []
    for i in range(a.steps + a.warmup + 1):
        dist.barrier()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(ddp(x), y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        dt = torch.tensor([time.perf_counter() - t0], device=dev)
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)
        times.append(dt.item())
    timed = sorted(times[1 + a.warmup:])
    med = timed[len(timed) // 2]
    if rank == 0:
        print(json.dumps({"impl": "pytorch-ddp", "world": world, "batch_per_device": a.batch,
                          "global_batch": a.batch * world, "frames": a.frames, "step_ms_median": 1e3 * med,
                          "step_ms_min": 1e3 * timed[0], "samples_per_s": a.batch * world / med,
                          "loss": loss.item(), "torch": torch.__version__}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
