#!/usr/bin/env python3
"""Writes crn_tiny_state.safetensors (a PyTorch CRN state_dict, channels
[4,8,8,8,16], hidden 32, with trained-looking BatchNorm statistics) and
crn_tiny_io.safetensors (an input and the model's eval-mode output), so that
test_checkpoint.c checks PyTorch -> sinter without Python.
Run: .venv/bin/python tests/app/golden/gen_interop_golden.py   (torch: SINTER_PY_TORCH=1 scripts/install.sh)"""
import os, sys
import torch
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from test_interop_torch import CRN, save_safetensors

torch.manual_seed(1234)
m = CRN((4, 8, 8, 8, 16), hidden=32, rnn="lstm")
m.train()
with torch.no_grad():  # a few training-mode passes give non-trivial running stats
    for _ in range(3):
        m(torch.rand(2, 1, 12, 161) * 2)
m.eval()
x = torch.rand(2, 1, 12, 161)
with torch.no_grad():
    y = m(x)
save_safetensors(os.path.join(here, "crn_tiny_state.safetensors"), m.state_dict())
save_safetensors(os.path.join(here, "crn_tiny_io.safetensors"), {"input": x, "output": y},
                 {"hidden": "32", "rnn": "lstm", "channels": "4,8,8,8,16", "torch": torch.__version__})
print("wrote", here)
