"""The PC's devices, one per file, each given the bus (``bus.py``), never the Machine; ``pc.py`` wires the board."""
