"""Train from an experiment config; works under ``torchrun`` for multi-GPU runs.

python scripts/train.py configs/detect_baggage_synth.yaml --set train.epochs=5
torchrun --nproc_per_node 2 scripts/train.py configs/detect_baggage_synth.yaml
"""

from __future__ import annotations

import sys

from xscan.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
