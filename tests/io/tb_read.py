"""Reads a sinter TensorBoard event file with tensorboard's EventAccumulator
and checks what tests/io/test_events.c wrote.
Usage: .venv/bin/python tb_read.py RUN_DIR   exit 0 ok, 1 mismatch."""
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def main(run_dir):
    acc = ea.EventAccumulator(run_dir, size_guidance={ea.SCALARS: 0, ea.AUDIO: 0})
    acc.Reload()
    tags = acc.Tags()
    ok = True

    def check(cond, what):
        nonlocal ok
        if not cond:
            print("MISMATCH:", what)
            ok = False

    check(sorted(tags["scalars"]) == ["loss/train", "loss/valid"], "scalar tags %r" % tags["scalars"])
    tr = acc.Scalars("loss/train")
    check([e.step for e in tr] == list(range(0, 100, 10)), "train steps %r" % [e.step for e in tr])
    check(all(abs(e.value - 1.0 / (1 + e.step)) < 1e-6 for e in tr), "train values")
    va = acc.Scalars("loss/valid")
    check([(e.step, round(e.value, 4)) for e in va] == [(50, 0.25), (3000000000, 0.125)], "valid %r" % va)
    check(tags["audio"] == ["valid/enhanced_0"], "audio tags %r" % tags["audio"])
    au = acc.Audio("valid/enhanced_0")
    check(len(au) == 2 and [a.step for a in au] == [50, 100], "audio steps")
    a = au[0]
    check(a.content_type == "audio/wav" and a.sample_rate == 16000 and a.length_frames == 1600,
          "audio fields %r %r %r" % (a.content_type, a.sample_rate, a.length_frames))
    import io, wave
    w = wave.open(io.BytesIO(a.encoded_audio_string))
    check(w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == 16000 and w.getnframes() == 1600,
          "wav header")
    print("tensorboard read back:", "ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
