"""TFDS builders: build small ArrayRecord splits offline in a tmp dir and read them back.

TensorFlow is not installed in rlx's environment, and the tests also check that the
builders never import it (`tensorflow` stays out of `sys.modules`).
"""

import os
import sys

import pytest

from rlx.data import arithmetic, countdown, knights_knaves
from rlx.data import tfds_builders as tb

GEN = {"countdown": countdown.generate_example, "arithmetic": arithmetic.generate_example,
       "knights_knaves": knights_knaves.generate_example}


@pytest.fixture
def no_tensorflow():
    """The builders must not import TensorFlow (not installed here; TFDS only needs it for
    tfrecord / as_dataset, which rlx never uses)."""
    had_tf = "tensorflow" in sys.modules
    yield
    if not had_tf:
        assert "tensorflow" not in sys.modules, "the TFDS path imported tensorflow"


@pytest.mark.parametrize("task,level", [("countdown", 2), ("arithmetic", 4), ("knights_knaves", 3)])
def test_build_and_read_back(tmp_path, no_tensorflow, task, level):
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    sources = tb.build(task, level, str(tmp_path), train_size=6, test_size=3, seed=7)
    assert set(sources) == {"train", "test"}
    assert len(sources["train"]) == 6 and len(sources["test"]) == 3
    files = os.listdir(tmp_path / f"rlx_{task}" / f"level{level}_n6_3_s7_default" / "1.0.0")
    assert any(".array_record" in f for f in files)
    template = tb._DEFAULT_TEMPLATE[task]
    for split, indices in (("train", range(0, 6)), ("test", range(6, 9))):
        got = sorted((sources[split][i] for i in range(len(sources[split]))), key=lambda e: e["index"])
        assert [e["index"] for e in got] == list(indices)
        for rec in got:
            expected = GEN[task](7, level, rec["index"], template=template)
            assert rec == {k: expected[k] for k in rec}             # same fields, same values, decoded
            assert set(rec) == set(tb._COMMON) | set(tb._TASK_FEATURES[task])
    # Random access works in any order and repeats.
    assert sources["train"][5] == sources["train"][5]


def test_rebuild_reuses_prepared_data_and_rejects_bad_args(tmp_path, no_tensorflow):
    a = tb.build("arithmetic", 1, str(tmp_path), train_size=4, test_size=2)
    b = tb.build("arithmetic", 1, str(tmp_path), train_size=4, test_size=2)
    assert [a["train"][i] for i in range(4)] == [b["train"][i] for i in range(4)]
    with pytest.raises(ValueError, match="no TFDS builder"):
        tb.make_builder("chess", 1, str(tmp_path))
    with pytest.raises(ValueError, match="level"):
        tb.make_builder("countdown", 42, str(tmp_path))
    # Configs: one per difficulty level.
    assert [c.level for c in tb.RlxKnightsKnaves.BUILDER_CONFIGS] == list(knights_knaves.LEVELS)
    assert [c.level for c in tb.RlxCountdown.BUILDER_CONFIGS] == sorted(countdown.LEVELS)
    assert [c.level for c in tb.RlxArithmetic.BUILDER_CONFIGS] == sorted(arithmetic.LEVELS)
