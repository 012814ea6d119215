"""``python -m ray_runtime``: the ``ray-runtime`` command.

``python -m ray_runtime run ...`` is every plugin job's entrypoint, so it skips the CLI framework and starts fast.
"""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "run":
    from ray_runtime.plugins.job import main

    sys.exit(main(sys.argv[2:]))

from ray_runtime.cli import main

main()
