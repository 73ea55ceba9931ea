import os

from hypothesis import HealthCheck, settings

# ops are cheap but each example builds and runs a graph at several thread counts.
# The default profile (CI, `make test`) draws the same examples on every run, so a
# red CI is a change's fault, never the draw's; `make test-slow` explores at random.
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
