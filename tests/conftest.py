"""Test configuration shared by the whole suite.

* 8 virtual CPU devices: the XLA flag must be set before jax is imported, so it is set
  here, at the top of the first module pytest imports. Single-device tests are
  unaffected (computations run on device 0); sharding tests take the `devices8`
  fixture. Multi-process tests start their own subprocesses.
* `jax_numpy_rank_promotion='raise'`: implicit rank broadcasting is a bug in rlx code.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def devices8():
    """The 8 virtual CPU devices (fails loudly if the flag did not take effect)."""
    devs = jax.devices()
    assert len(devs) >= 8, f"expected 8 virtual CPU devices, got {len(devs)}"
    return devs[:8]
