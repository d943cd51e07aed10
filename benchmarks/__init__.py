"""featviz's benchmarks: scripts run from the repository root as modules.

  python -m benchmarks.render_throughput --steps 32 --batches 1,8

``benchmarks/README.md`` says what each measures; rows go to ``benchmarks/RESULTS.md``. The
library never imports this package.
"""
