"""`python -m rlx.train --config=configs/grpo.py [--config.key=value ...] [--resume] [--overwrite]`.

Errors a user can fix (config, run directory, checkpoints) print one line and exit 2.
SIGTERM / SIGINT save a checkpoint after the current step and exit 128 + the signal
number (143 / 130) with one line saying how to resume.
"""

from __future__ import annotations

import logging
import signal
import sys


def main(argv=None) -> dict:
    from rlx.train.config import ConfigError, parse_args
    argv = sys.argv[1:] if argv is None else argv
    try:
        config, flags = parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rlx.train.checkpoint import RestoreError
    from rlx.train.engine import Engine
    from rlx.train.resume import RunDirError
    try:
        engine = Engine(config, resume=flags["resume"], overwrite=flags["overwrite"],
                        allow_changes=flags["allow_changes"])
    except (ConfigError, RunDirError, RestoreError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        summary = engine.run()
    except FloatingPointError as e:          # non-finite training: the last good checkpoint is kept
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        engine.close()
    if summary.get("stopped"):
        print(f"{summary['stopped']}: stopped after step {summary['step']} with a checkpoint in "
              f"{summary['run_dir']}; continue with --resume", file=sys.stderr)
        raise SystemExit(128 + int(getattr(signal, summary["stopped"])))
    if summary.get("complete"):
        print(f"run in {summary['run_dir']} is already complete; nothing to do")
    print(f"accuracy before: {summary['accuracy_before']:.3f}  after: {summary['accuracy_after']:.3f}  "
          f"(run dir: {summary['run_dir']})")
    return summary


if __name__ == "__main__":
    main()
