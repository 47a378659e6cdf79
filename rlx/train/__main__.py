"""`python -m rlx.train --config=configs/grpo.py [--config.key=value ...] [--resume]`."""

from __future__ import annotations

import logging
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
    from rlx.train.engine import Engine
    engine = Engine(config, resume=flags["resume"])
    try:
        summary = engine.run()
    finally:
        engine.close()
    print(f"accuracy before: {summary['accuracy_before']:.3f}  after: {summary['accuracy_after']:.3f}  "
          f"(run dir: {summary['run_dir']})")
    return summary


if __name__ == "__main__":
    main()
