"""Test configuration shared by the whole suite.

* 8 virtual CPU devices: the XLA flag must be set before jax is imported, so it is set
  here, at the top of the first module pytest imports. Single-device tests are
  unaffected (computations run on device 0); sharding tests take the `devices8`
  fixture. Multi-process tests start their own subprocesses.
* `jax_numpy_rank_promotion='raise'`: implicit rank broadcasting is a bug in rlx code.
* `--xla_llvm_disable_expensive_passes=true`: the suite's tiny models spend more time
  compiling than running; without LLVM's expensive passes XLA:CPU compiles about twice as
  fast (measured cold: test_exact_resume + test_chunked_rollouts_give_the_same_samples
  125 s -> 85 s). (-O0 is as fast but changes rounding: FMA contraction.) Put the flag in
  XLA_FLAGS yourself to override; tests/helpers/multiprocess_worker.py sets it too.
"""

import os

for _name, _flag in (("xla_force_host_platform_device_count", "--xla_force_host_platform_device_count=8"),
                     ("xla_llvm_disable_expensive_passes", "--xla_llvm_disable_expensive_passes=true")):
    if _name not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Compile once per session: identical programs (every Engine of the same config, every
# model of the same shape) are loaded from a persistent cache instead of recompiled.
# Set RLX_TEST_COMPILE_CACHE to keep the cache between runs.
_cache = os.environ.get("RLX_TEST_COMPILE_CACHE") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".pytest_cache", "jax_compile_cache")
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def devices8():
    """The 8 virtual CPU devices (fails loudly if the flag did not take effect)."""
    devs = jax.devices()
    assert len(devs) >= 8, f"expected 8 virtual CPU devices, got {len(devs)}"
    return devs[:8]
