"""JAX PPO following RLlib 2.8.1's settings (protocol.md §2), vectorised over population members."""
