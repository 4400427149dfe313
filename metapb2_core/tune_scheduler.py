"""Every registered method as a Ray Tune scheduler, for function trainables that report and
checkpoint (``tune.report(metrics, checkpoint=...)``), in synchronous rounds as the paper runs them.

The scheduler is Ray's synchronous PopulationBasedTraining with our ask/tell population deciding
what it always decides in our own runs: the initial configurations (prior draws, or a portfolio's
entries), which members exploit, which member each one clones, and the new configuration (the
method's, with its diagnostics). Ray keeps doing what it does: pausing the trials until all reached
the perturbation point, saving the upper members' checkpoints, restoring a cloned checkpoint into
the exploiting trial. When the experiment ends the scheduler writes our run record (points,
perturbations with lineage and GP diagnostics) into ``records``, so ``metapb2 report`` and
``metapb2 meta`` read Tune experiments like our own runs::

    scheduler = MethodScheduler.create("pb2_star", {"lr": (1e-5, 1e-2, "log")}, population_size=4,
                                       seed=0, metric="score", time_attr="training_iteration",
                                       perturbation_interval=5, task="my-env", records="runs")
    tune.Tuner(train, tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=4),
               run_config=tune.RunConfig(stop={"training_iteration": 50})).fit()
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray.tune.error import TuneError
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.errors import MetaPB2Error
from metapb2_core.rounds import QUANTILE_FRACTION, Perturbation, quantiles
from metapb2_core.space import SearchSpace
from metapb2_core.store import RunRecord, write_record
from metapb2_core.tune_space import domain_of, space_from_spec


class MethodScheduler(PopulationBasedTraining):
    @classmethod
    def create(
        cls,
        method: str,
        space: SearchSpace | dict[str, Any],
        population_size: int,
        seed: int,
        *,
        metric: str,
        perturbation_interval: int,
        mode: str = "max",
        time_attr: str = "training_iteration",
        task: str = "tune",
        records: str | Path | None = None,
        meta: str | Path | None = None,
        portfolio: str | Path | list | None = None,
        faithful: bool = False,
    ) -> MethodScheduler:
        """The scheduler of ``method`` (a registered name) for ``population_size`` trials over
        ``space``: a ``SearchSpace``, our declarations, or Tune's domains (``tune.uniform``,
        ``loguniform``, ``randint``, ``lograndint``, ``qrandint``, ``choice``). Values of tuned
        names in the Tuner's ``param_space`` become the trials' initial configurations (checked
        against the space), or are refused by a method that starts from its own (a portfolio).
        Bad input (bounds outside a parameter's domain, a meta method without meta-data, an
        unknown name) is refused here, before any trial starts."""
        if mode not in ("max", "min"):
            raise MetaPB2Error(f"mode must be 'max' or 'min', got {mode!r}")
        if not metric:
            raise MetaPB2Error("a metric to rank the trials by is required (what the trainable reports)")
        if not (isinstance(perturbation_interval, int) and perturbation_interval > 0):
            raise MetaPB2Error(
                f"perturbation_interval must be a positive integer, got {perturbation_interval!r}"
            )
        population = AskTellPopulation.create(
            method,
            space_from_spec(space),
            population_size,
            seed,
            task=task,
            meta=meta,
            portfolio=portfolio,
            faithful=faithful,
        )
        return cls(population, method, seed, metric, mode, time_attr, perturbation_interval, task, records)

    def __init__(
        self,
        population: AskTellPopulation,
        method: str,
        seed: int,
        metric: str,
        mode: str,
        time_attr: str,
        perturbation_interval: int,
        task: str,
        records: str | Path | None,
    ):
        space = population.space
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            perturbation_interval=perturbation_interval,
            hyperparam_mutations={p.name: domain_of(p) for p in space.params},
            quantile_fraction=QUANTILE_FRACTION,
            resample_probability=0.0,
            log_config=False,
            require_attrs=True,
            synch=True,
        )
        self.population, self.method, self.seed, self.task = population, method, seed, task
        self.records = Path(records) if records is not None else None
        self.record: RunRecord | None = None
        self._members: dict[Trial, int] = {}
        self._plan: dict[int, Perturbation] = {}
        self._upper: list[int] = []
        self._rows: list[dict] = []
        self._done: set[int] = set()
        self._start = time.perf_counter()
        self.round_seconds: list[float] = []  # the scheduler's own time per perturbation round

    # ---- Tune's hooks ---------------------------------------------------------------------------
    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        m = len(self._members)
        if m >= self.population.size:
            raise TuneError(
                f"{self.method} was built for {self.population.size} trials; set num_samples to that"
            )
        self._members[trial] = m
        # the values a user put in param_space for tuned names are this member's start (checked),
        # or refused where the method starts from its own (a portfolio); the rest are the method's
        untuned = sorted(set(trial.evaluated_params) - set(self.population.space.names))
        if untuned:  # PBT's exploit copies the clone's whole config: such a value would spread unchecked
            raise MetaPB2Error(
                f"{', '.join(untuned)} drawn by Tune from the param_space but not in {self.method}'s "
                "space: every exploit would copy the clone's value until all trials hold one; declare "
                "it in the scheduler's space or give it a constant"
            )
        given = {n: trial.config[n] for n in self.population.space.names if n in trial.config}
        config = self.population.start_from(m, given) if given else self.population.ask()[m]
        trial.config.update(config)
        trial.evaluated_params.update(config)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if self._metric not in result:
            raise MetaPB2Error(
                f"trial {trial.trial_id} reported {sorted(result)} without the metric {self._metric!r} "
                f"{self.method} ranks by: report it with tune.report({{{self._metric!r}: ...}})"
            )
        self._record(trial, result, fresh=result.get(self._time_attr, 0) % self._perturbation_interval == 0)
        if not self.population.method.perturbs:  # random search: no rounds, so no pausing for them
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        if result:
            self._record(trial, result, fresh=True)
        self._done.add(self._members[trial])
        super().on_trial_complete(tune_controller, trial, result)
        if len(self._done) == self.population.size:
            self.record = self._make_record()
            if self.records is not None:
                write_record(self.record, self.records)

    # ---- where our population decides instead of Ray's PBT --------------------------------------
    def _quantiles(self) -> tuple[list[Trial], list[Trial]]:
        """Called once per synchronous round, when every trial reached the perturbation point: the
        round is our population's (who exploits, whom it clones, the new configuration)."""
        t0 = time.perf_counter()
        if len(self._members) < self.population.size:  # Tune adds trials one by one: whole only now
            raise MetaPB2Error(
                f"{self.method} was built for {self.population.size} trials but only {len(self._members)} "
                f"were started: set num_samples to {self.population.size}"
            )
        trial_of = {m: t for t, m in self._members.items()}
        # PBT's last_score is the metric signed by mode: higher is better, as our methods want
        scores = np.array(
            [float(self._trial_state[trial_of[m]].last_score) for m in range(self.population.size)]
        )
        now = max(int(self._trial_state[t].last_train_time) for t in self._members)
        self.population.tell_all(now, scores)
        self._plan = {p.member: p for p in self.population.perturb()}
        self._upper = quantiles(scores)[1]
        self.round_seconds.append(time.perf_counter() - t0)
        lower = [trial_of[m] for m in self._plan]
        return lower, [trial_of[m] for m in self._upper]

    def _checkpoint_or_exploit(self, trial: Trial, tune_controller, upper_quantile, lower_quantile) -> None:
        super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, [])  # save the upper ones
        plan = self._plan.get(self._members[trial])
        if plan is None:
            return
        clone = next(t for t, m in self._members.items() if m == plan.cloned_from)
        if not self._resolved_checkpoint(clone):
            raise MetaPB2Error(
                f"trial {clone.trial_id} has no checkpoint to clone: the trainable must report with "
                "tune.report(metrics, checkpoint=...) at every perturbation point"
            )
        self._exploit(tune_controller, trial, clone)

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        plan = self._plan[self._members[trial]]
        config = copy.deepcopy(trial_to_clone.config)
        config.update(plan.new_config)
        return config, {}

    # ---- helpers --------------------------------------------------------------------------------
    def _resolved_checkpoint(self, trial: Trial) -> bool:
        state = self._trial_state[trial]
        last = state.last_checkpoint
        if last is not None and hasattr(last, "resolve"):  # a save Ray scheduled this round
            resolved = last.resolve()
            state.last_checkpoint = resolved.checkpoint if resolved else None
            if resolved:
                state.last_result = resolved.metrics
        return bool(state.last_checkpoint)

    def _record(self, trial: Trial, result: dict, fresh: bool) -> None:
        m = self._members[trial]
        config = {p.name: p.coerce(trial.config[p.name]) for p in self.population.space.params}
        self._rows.append(
            {
                "member": m,
                "training_iteration": int(result.get("training_iteration", 0)),
                "timesteps": int(result[self._time_attr]),
                **config,
                "eval_return": float(result[self._metric]),
                "eval_is_fresh": bool(fresh),
                "wall_seconds": time.perf_counter() - self._start,
            }
        )

    def _make_record(self) -> RunRecord:
        points = pd.DataFrame(self._rows).sort_values(["timesteps", "member"], kind="stable")
        points = points.drop_duplicates(["member", "timesteps"], keep="last").reset_index(drop=True)
        wall = time.perf_counter() - self._start
        points["total_run_time"] = wall
        extra = {
            "scheduler": "ray.tune",
            "time_attr": self._time_attr,
            "metric": self._metric,
            "mode": self._mode,
            "wall_seconds": wall,
            "scheduler_seconds_per_round": [round(s, 6) for s in self.round_seconds],
        }
        return self.population.to_record(self.task, self.seed, budget="tune", points=points, extra=extra)
