"""Cost-aware labelling: lay answers or a doctor, for the same money.

PneumoniaMNIST training items (their reference labels as the truth) are labelled by a
simulated crowd (30 lay annotators, accuracies drawn around 0.7, per-person confusion
matrices) and a simulated doctor (right 97% of the time), each lay answer costing 1
and a doctor's review `--doctor-cost`. As in the web queue, nobody answers an item
twice: more answers come from other people. Every policy spends the same budget per
item:

- `lay_only`: the budget spread as evenly as it goes over lay answers;
- `fixed_mix`: 3 lay answers per item, the rest on doctor reviews from the top of the
  review queue (medloop's loop before cost-aware planning);
- `cost_aware`: one lay answer per item, then `--steps` rounds of
  `medloop.aggregation.allocation.plan_labelling` on the Dawid-Skene posteriors (the
  typical lay confusion matrix estimated by the same fit), each spending an equal share
  of what is left.

Doctor decisions are final labels (known to the aggregator); the score is the accuracy
of the final labels over every item. Prints one JSON object per (policy, budget,
doctor cost, seed), then one mean per (policy, budget, doctor cost).

    python benchmarks/cost_aware_labelling.py --items 1000 --budgets 3 4 6 \
        --doctor-costs 10 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from medloop.aggregation import DawidSkene
from medloop.aggregation.allocation import Action, mean_confusion, plan_labelling
from medloop.annotation.simulate import SimulatedCrowd, SimulatedDoctor
from medloop.review.queue import rank_for_review

POLICIES = ("lay_only", "fixed_mix", "cost_aware")
DOCTOR_ACCURACY = 0.97


class Simulation:
    """A crowd, a doctor and a running account of answers, decisions and money spent."""

    def __init__(self, truth: np.ndarray, *, doctor_cost: float, seed: int) -> None:
        self.truth = truth
        self.doctor_cost = doctor_cost
        self.crowd = SimulatedCrowd(30, n_classes=2, accuracy_mean=0.7, seed=seed)
        self.doctor = SimulatedDoctor(
            n_classes=2, accuracy=DOCTOR_ACCURACY, budget=len(truth), seed=seed + 1
        )
        self.answers: list[pd.DataFrame] = []
        self.answered_by: defaultdict[int, set[str]] = defaultdict(set)
        self.decisions = pd.Series(dtype=np.int64)
        self.spent = 0.0

    def ask_crowd(self, items: np.ndarray, redundancy: int) -> None:
        """More answers for `items`, from people who have not answered them yet."""
        if len(items):
            answered = self.crowd.answer(
                items,
                self.truth[items],
                redundancy=redundancy,
                answered_by=[self.answered_by[int(i)] for i in items],
            )
            for item, worker in zip(answered["task"], answered["worker"], strict=True):
                self.answered_by[int(item)].add(worker)
            self.answers.append(answered)
            self.spent += len(answered)

    def ask_doctor(self, items: np.ndarray) -> None:
        if len(items):
            answered = self.doctor.answer(items, self.truth[items])
            self.decisions = pd.concat(
                [self.decisions, answered.set_index("task")["label"].astype(np.int64)]
            )
            self.spent += len(items) * self.doctor_cost

    def fit(self) -> DawidSkene:
        answers = pd.concat(self.answers, ignore_index=True)
        return DawidSkene(classes=[0, 1]).fit(answers, known=self.decisions)

    def accuracy(self) -> float:
        labels = self.fit().labels_.reindex(np.arange(len(self.truth)))
        return float((labels.to_numpy() == self.truth).mean())


def lay_only(sim: Simulation, budget: float) -> None:
    n = len(sim.truth)
    per_item, extra = divmod(int(budget * n), n)
    rng = np.random.default_rng(0)
    items = np.arange(n)
    sim.ask_crowd(items, per_item)
    sim.ask_crowd(np.sort(rng.choice(n, size=extra, replace=False)), 1)


def fixed_mix(sim: Simulation, budget: float) -> None:
    n = len(sim.truth)
    sim.ask_crowd(np.arange(n), 3)
    reviews = int((budget * n - sim.spent) // sim.doctor_cost)
    queue = rank_for_review(sim.fit().probas_)
    sim.ask_doctor(queue.index[:reviews].to_numpy(dtype=np.intp))


def cost_aware(sim: Simulation, budget: float, *, steps: int) -> None:
    n = len(sim.truth)
    total = budget * n
    sim.ask_crowd(np.arange(n), 1)
    for step in range(steps):
        model = sim.fit()
        counts = pd.concat(sim.answers)["worker"].value_counts().reindex(model.workers_)
        lay = mean_confusion(model.errors_, counts.to_numpy(dtype=float))
        share = (total - sim.spent) / (steps - step)
        plan = plan_labelling(
            model.probas_,
            lay_confusion=lay,
            doctor_accuracy=DOCTOR_ACCURACY,
            lay_cost=1.0,
            doctor_cost=sim.doctor_cost,
            budget=share,
        )
        plan = plan.sort_index()  # the simulated people answer in item order
        sim.ask_doctor(plan.index[plan["action"] == Action.DOCTOR].to_numpy(dtype=np.intp))
        crowd = plan[plan["action"] == Action.CROWD]
        for answers, group in crowd.groupby("answers"):
            sim.ask_crowd(group.index.to_numpy(dtype=np.intp), int(answers))


def run(
    policy: str, truth: np.ndarray, *, budget: float, doctor_cost: float, seed: int, steps: int
) -> dict[str, float | int | str]:
    sim = Simulation(truth, doctor_cost=doctor_cost, seed=seed)
    if policy == "lay_only":
        lay_only(sim, budget)
    elif policy == "fixed_mix":
        fixed_mix(sim, budget)
    else:
        cost_aware(sim, budget, steps=steps)
    lay_answers = int(sum(len(a) for a in sim.answers))
    return {
        "policy": policy,
        "budget_per_item": budget,
        "doctor_cost": doctor_cost,
        "seed": seed,
        "accuracy": round(sim.accuracy(), 4),
        "spent_per_item": round(sim.spent / len(truth), 3),
        "lay_answers": lay_answers,
        "doctor_reviews": len(sim.decisions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--budgets", type=float, nargs="+", default=[3.0, 4.0, 6.0])
    parser.add_argument("--doctor-costs", type=float, nargs="+", default=[10.0, 20.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=10, help="re-planning rounds")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    default_dir = os.environ.get("MEDLOOP_DATA_DIR", "../shared/data/medmnist")
    parser.add_argument("--data", type=Path, default=Path(default_dir) / "pneumoniamnist.npz")
    args = parser.parse_args()

    labels = np.load(args.data)["train_labels"][:, 0].astype(np.intp)
    rows: list[dict[str, float | int | str]] = []
    for budget in args.budgets:
        for doctor_cost in args.doctor_costs:
            for seed in args.seeds:
                rng = np.random.default_rng(1000 + seed)
                truth = labels[rng.permutation(len(labels))[: args.items]]
                for policy in args.policies:
                    row = run(
                        policy,
                        truth,
                        budget=budget,
                        doctor_cost=doctor_cost,
                        seed=seed,
                        steps=args.steps,
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby(["policy", "budget_per_item", "doctor_cost"], sort=False).agg(
        accuracy=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        doctor_reviews=("doctor_reviews", "mean"),
        lay_answers=("lay_answers", "mean"),
    )
    for (policy, budget, doctor_cost), row in summary.iterrows():
        print(
            json.dumps(
                {
                    "summary": policy,
                    "budget_per_item": budget,
                    "doctor_cost": doctor_cost,
                    "accuracy": round(float(row["accuracy"]), 4),
                    "accuracy_std": round(float(row["accuracy_std"]), 4),
                    "doctor_reviews": float(row["doctor_reviews"]),
                    "lay_answers": float(row["lay_answers"]),
                }
            )
        )


if __name__ == "__main__":
    main()
