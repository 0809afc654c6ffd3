"""Annotation: planning tasks (redundancy, gold honeypots), gold accuracy, simulated annotators."""

from medloop.annotation.simulate import SimulatedCrowd, SimulatedDoctor
from medloop.annotation.tasks import TaskPlan, gold_accuracy, plan_tasks, wilson_interval

__all__ = [
    "SimulatedCrowd",
    "SimulatedDoctor",
    "TaskPlan",
    "gold_accuracy",
    "plan_tasks",
    "wilson_interval",
]
