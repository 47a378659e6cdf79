"""rlx: JAX-native RL post-training of language models (see README.md)."""

from setuptools import find_packages, setup

setup(
    name="rlx",
    version="0.1.0",
    description="JAX-native reinforcement-learning post-training of language models: "
                "exact, tested, composable policy-optimization functions on one sharded engine",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # `configs` ships too, so that a config file anywhere can fork a shipped one
    # (`from configs import grpo`); rlx's own modules never import it.
    packages=find_packages(include=["rlx", "rlx.*", "configs", "configs.*"]),
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2",
        "orbax-checkpoint>=0.11",
        "chex>=0.1.88",
        "ml-collections>=1.0",
        "tensorflow-datasets>=4.9",
        "grain>=0.2",
        "transformers>=4.45",
        "safetensors>=0.4",
        "tokenizers>=0.20",
        "numpy>=1.26",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "tensorboardX>=2.6",
        "math-verify>=0.7",              # the math task's answer equivalence (rlx.rewards.math_answers)
        # LoRA / QLoRA: the quantized frozen base (qwix.quantize / dequantize).
        "qwix>=0.1.8",
    ],
    extras_require={
        # What the test suite needs. torch is pinned: it is used only to cross-check
        # rlx against `transformers` (on rlx machines 2.13.0 is a CPU build on local
        # disk; an unpinned torch would pull a multi-GB CUDA build).
        # peft: the PEFT adapter export is checked by loading it in peft + transformers.
        # libtpu: the TPU compiler, for `python -m rlx.plan --topology=v5e-8` on a host
        # without a TPU (the suite plans a tiny config for a v5e-8).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "ruff>=0.6",
                 "torch==2.13.0", "libtpu>=0.0.52", "peft>=0.17"],
        # Compile-only planning for TPU topologies (rlx.plan); verified with jax 0.10.2 +
        # libtpu 0.0.52.
        "plan": ["libtpu>=0.0.52"],
        # Experiment tracking (`--config.log.wandb=True`).
        "wandb": ["wandb>=0.17"],
        # Peers the benchmarks compare against (run by hand, never in CI).
        "bench": ["torch==2.13.0", "trl>=0.20"],
    },
)
