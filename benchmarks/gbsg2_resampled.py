"""A larger GBSG2-like cohort for timing `medloop risk train`: GBSG2's patients drawn
with replacement, each number jittered by 5% (nodes and grade kept whole), follow-up
times too, rounded to whole days as GBSG2's are. Writes a CSV that `medloop patients
import` reads (id column `patient_id`), like the demo's `gbsg2_table()`.

    python benchmarks/gbsg2_resampled.py --patients 3000 --out /tmp/gbsg2_3000.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medloop.workflows.demo import gbsg2_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    source = gbsg2_table()
    table = source.iloc[rng.choice(len(source), args.patients)].reset_index(drop=True)
    n = len(table)
    for column in ("age", "tumor_size", "progesterone_receptor", "estrogen_receptor"):
        table[column] = (table[column] * np.exp(rng.normal(0, 0.05, n))).round(1)
    table["positive_nodes"] = (table["positive_nodes"] * np.exp(rng.normal(0, 0.05, n))).round()
    table["time"] = (table["time"] * np.exp(rng.normal(0, 0.05, n))).round().clip(lower=1)
    table["patient_id"] = [f"R-{i + 1:05d}" for i in range(n)]
    table.to_csv(args.out, index=False)
    events = table["event"].astype(bool)
    print(
        f"{n} patients, {int(events.sum())} events, "
        f"{table.loc[events, 'time'].nunique()} distinct event times -> {args.out}"
    )


if __name__ == "__main__":
    main()
