"""`python -m rlx.export --run-dir=DIR [--step=N] [--format=merged|peft] [--out=DIR] [--dtype=NAME]`.

Exports a saved step of a run as a standalone HF model (`merged`, the default) or a PEFT
adapter directory (`peft`, LoRA runs); see `rlx.train.export`. Default `--out`:
`<run-dir>/hf/<step>` (merged) or `<run-dir>/peft/<step>`. Errors print one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(prog="python -m rlx.export", description=__doc__.split("\n\n")[1])
    ap.add_argument("--run-dir", required=True, help="an rlx run directory (config.json + checkpoints/)")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    ap.add_argument("--format", default="merged", choices=("merged", "peft"))
    ap.add_argument("--out", default=None, help="output directory")
    ap.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                    help="weights' dtype (default: the checkpoint's)")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    from rlx.train.checkpoint import RestoreError
    from rlx.train.export import export_run
    try:
        out = export_run(a.run_dir, step=a.step, fmt=a.format, out=a.out, dtype=a.dtype)
    except (FileNotFoundError, ValueError, RestoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"exported {a.format} to {out}")
    return out


if __name__ == "__main__":
    main()
