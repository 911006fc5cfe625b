"""The plain Hugging Face baseline now lives in `train/baseline.py` (`python -m train.baseline`); this
script keeps the earlier command working with the same options:

    python benchmarks/baseline_marian.py --minutes 12 --output runs/baseline-marian

`python -m train.compare_baseline` runs the recipe and this baseline one after the other.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.baseline import main  # noqa: E402

if __name__ == "__main__":
    main()
