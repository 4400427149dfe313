"""Budget presets: one algorithm, three sizes per task family (architecture.md §Budgets).

A preset changes sizes only, never code paths. The classic ``paper`` preset is exactly
protocol.md's classic-control budget (§2.1, §3.2): 4 members, batch 20k in fragments of 200,
30 epochs of minibatch 128, evaluation of 10 episodes at every perturbation interval of 40k steps,
600k steps per member.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from metapb2_core.errors import MetaPB2Error, UnknownNameError


@dataclass(frozen=True)
class Budget:
    name: str
    population_size: int
    train_batch_size: int  # env steps per PPO iteration and member
    fragment_length: int  # rollout fragment; batch / fragment environments run side by side
    num_epochs: int
    minibatch_size: int
    interval: int  # perturbation interval in env steps; evaluation happens at its end
    total_steps: int  # env steps per member
    eval_episodes: int

    def __post_init__(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise MetaPB2Error(f"budget {self.name!r}: {what}")

        for f in (
            "population_size",
            "train_batch_size",
            "fragment_length",
            "num_epochs",
            "minibatch_size",
            "interval",
            "total_steps",
            "eval_episodes",
        ):
            need(getattr(self, f) > 0, f"{f} must be positive")
        need(
            self.train_batch_size % self.fragment_length == 0,
            "train_batch_size must be a multiple of fragment_length",
        )
        need(self.minibatch_size <= self.train_batch_size, "minibatch_size exceeds train_batch_size")
        need(self.interval % self.train_batch_size == 0, "interval must be a multiple of train_batch_size")
        need(self.total_steps % self.interval == 0, "total_steps must be a multiple of interval")

    @property
    def num_envs(self) -> int:
        return self.train_batch_size // self.fragment_length

    @property
    def iterations_per_interval(self) -> int:
        return self.interval // self.train_batch_size

    @property
    def num_intervals(self) -> int:
        return self.total_steps // self.interval

    @property
    def minibatches_per_epoch(self) -> int:
        # Full minibatches over a fresh permutation per epoch; the remainder of the batch is
        # left out of that epoch (20 000 / 128 → 156 minibatches, 32 samples left out).
        return self.train_batch_size // self.minibatch_size

    def to_dict(self) -> dict:
        return asdict(self)


BUDGET_NAMES = ("smoke", "demo", "short", "paper")

# Family -> preset name -> sizes. Brax ``paper`` is protocol.md's brax budget (§2.1): batch 25k,
# evaluation every 8 iterations (= the 200k-step perturbation interval), 3M steps per member.
BUDGETS: dict[str, dict[str, Budget]] = {
    "classic": {
        b.name: b
        for b in (
            Budget("smoke", 4, 400, 50, 2, 100, 800, 2400, 2),
            # the main command's: smoke sizes over 5 intervals, so every method does its real work
            # (MultiTaskPB2 needs two distinct times in its window: perturbation rounds 3 and 4)
            Budget("demo", 4, 400, 50, 2, 100, 800, 4000, 2),
            Budget("short", 4, 4000, 200, 30, 128, 8000, 120_000, 10),
            Budget("paper", 4, 20_000, 200, 30, 128, 40_000, 600_000, 10),
        )
    },
    "brax": {
        b.name: b
        for b in (
            Budget("smoke", 4, 400, 50, 2, 100, 800, 2400, 2),
            Budget("demo", 4, 400, 50, 2, 100, 800, 4000, 2),
            Budget("short", 4, 5000, 200, 30, 128, 20_000, 100_000, 10),
            Budget("paper", 4, 25_000, 200, 30, 128, 200_000, 3_000_000, 10),
        )
    },
}


def get_budget(name: str, family: str = "classic") -> Budget:
    if family not in BUDGETS:
        raise UnknownNameError("task family", family, list(BUDGETS))
    try:
        return BUDGETS[family][name]
    except KeyError:
        raise UnknownNameError("budget", name, list(BUDGETS[family])) from None
