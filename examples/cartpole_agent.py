"""A small agent of a user's own: a linear softmax policy on gymnasium's CartPole trained by
REINFORCE with a running baseline, in numpy. Its hyperparameters are a learning rate and a discount;
a "task" is CartPole under a gravity. The examples tune it with MetaPB2's methods, in Ray Tune and in
a plain ask/tell loop."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SPACE = {"lr": (1e-4, 0.5, "log"), "gamma": (0.8, 0.999)}
GRAVITY = {"earth": 9.8, "moon": 1.62, "mars": 3.71, "jupiter": 24.8}


class Agent:
    def __init__(self, seed: int, gravity: float = 9.8):
        self.env = gym.make("CartPole-v1")
        self.env.unwrapped.gravity = gravity
        self.rng = np.random.default_rng(seed)
        self.w = np.zeros((4, 2))
        self.baseline = 0.0
        self.episodes = 0
        self._seed = seed

    # the weights and baseline are the agent's state: what an exploit copies
    def state(self) -> dict:
        return {"w": self.w.copy(), "baseline": self.baseline}

    def load(self, state: dict) -> None:
        self.w, self.baseline = np.array(state["w"]), float(state["baseline"])

    def episode(self, greedy: bool = False) -> tuple[list, list, list]:
        obs, _ = self.env.reset(seed=int(self.rng.integers(2**31)))
        observations, actions, rewards = [], [], []
        done = False
        while not done:
            logits = obs @ self.w
            p = np.exp(logits - logits.max())
            p /= p.sum()
            a = int(np.argmax(p)) if greedy else int(self.rng.random() < p[1])
            observations.append(obs)
            actions.append(a)
            obs, r, terminated, truncated, _ = self.env.step(a)
            rewards.append(r)
            done = terminated or truncated
        return observations, actions, rewards

    def train(self, config: dict, episodes: int = 5) -> float:
        """``episodes`` REINFORCE updates; returns the mean undiscounted return of their episodes."""
        returns = []
        for _ in range(episodes):
            obs, acts, rews = self.episode()
            g, discounted = 0.0, []
            for r in reversed(rews):
                g = r + config["gamma"] * g
                discounted.append(g)
            discounted = np.array(discounted[::-1])
            self.baseline += 0.1 * (discounted.mean() - self.baseline)
            grad = np.zeros_like(self.w)
            for o, a, adv in zip(obs, acts, discounted - self.baseline, strict=True):
                logits = o @ self.w
                p = np.exp(logits - logits.max())
                p /= p.sum()
                grad += np.outer(o, np.eye(2)[a] - p) * adv
            self.w += config["lr"] * grad / len(obs)
            returns.append(sum(rews))
        self.episodes += episodes
        return float(np.mean(returns))

    def evaluate(self, episodes: int = 3) -> float:
        return float(np.mean([sum(self.episode(greedy=True)[2]) for _ in range(episodes)]))
