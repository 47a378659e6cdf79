"""Tasks and data: offline generators, loaders, prompt templates, TFDS builders, iterators.

Every example is a dict with at least `task`, `prompt` (text), `answer` (canonical
answer), `source` (data-source name), `level` (difficulty), `index`, `template` and
`response_prefix`, plus task-specific fields. Generators are deterministic in
(seed, level, index). `rlx.data.tfds_builders` (TFDS, ArrayRecord) is imported on first
use so that `import rlx.data` stays light.
"""

import importlib

from rlx.data import arithmetic, countdown, gsm8k, iterators, knights_knaves, preference, templates
from rlx.data.iterators import (
    EpochIterator,
    GeneratedSource,
    ListSource,
    MixtureIterator,
    MultiSource,
    StreamIterator,
)
from rlx.data.templates import render

__all__ = [
    "EpochIterator", "GeneratedSource", "ListSource", "MixtureIterator", "MultiSource", "StreamIterator",
    "arithmetic", "countdown", "gsm8k", "iterators", "knights_knaves", "preference", "render", "templates",
    "tfds_builders",
]


def __getattr__(name):
    if name == "tfds_builders":
        return importlib.import_module("rlx.data.tfds_builders")
    raise AttributeError(f"module 'rlx.data' has no attribute {name!r}")
