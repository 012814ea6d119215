"""``python -m ray_runtime`` runs the ``ray-runtime`` command."""

from ray_runtime.cli import main

main()
