"""featviz model zoo (installed as featviz.zoo)."""
