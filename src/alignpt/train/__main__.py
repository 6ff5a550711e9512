"""``python -m alignpt.train CONFIG --condition NAME``: the launcher-friendly entry point.

``torchrun --nproc_per_node 8 -m alignpt.train ...`` and
``accelerate launch --num_processes 8 -m alignpt.train ...`` run the same command as
``alignpt train`` on every rank.
"""

import sys

from alignpt.cli import main

if __name__ == "__main__":
    sys.argv.insert(1, "train")
    main()
