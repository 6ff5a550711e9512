"""``python -m alignpt ...`` is the ``alignpt`` command, for launchers.

``torchrun --nproc_per_node 8 -m alignpt train CONFIG --condition NAME`` and
``accelerate launch --num_processes 8 -m alignpt train ...`` run ``alignpt train`` on every
rank.
"""

from alignpt.cli import main

if __name__ == "__main__":
    main()
