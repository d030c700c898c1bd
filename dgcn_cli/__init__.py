"""The ``dgcn`` command line."""
import os

# Before torch loads OpenMP: worker threads that sleep when idle instead of spinning. Our
# stages run processes side by side (CRF pools, image decoders, a second stage in a
# Makefile -j run), and spinning threads of one process then steal the cores the other
# needs: a CAM of one photo took 7.7 s with GNU OpenMP's default and 1.0 s with passive
# waiting while another process was busy (2-core CPU; `make bench`). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
