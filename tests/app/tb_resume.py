"""Reads a resumed sinter run with tensorboard's EventAccumulator: the steps
redone after the resume appear once, with the resumed run's values (those of
metrics.csv), because sinter wrote a SessionLog START at the resume step.
Usage: tb_resume.py RUN_DIR   exit 0 ok, 1 mismatch (the interpreter is .venv's: sn_pyref.h)."""
import csv
import os
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def main(run_dir):
    acc = ea.EventAccumulator(run_dir, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        want = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f) if r["loss"]]
    steps = [s for s, _ in got]
    ok = steps == [s for s, _ in want] and len(set(steps)) == len(steps)
    ok = ok and all(abs(a[1] - b[1]) <= 1e-6 * max(1.0, abs(b[1])) for a, b in zip(got, want))
    if not ok:
        print("MISMATCH: tensorboard", got, "metrics.csv", want)
    print("tensorboard read back after resume:", "ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
