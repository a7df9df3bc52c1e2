"""A pendulum swing-up in plain PyTorch: the worked example of your own env (docs/env_contract.md).

    python rpo_continuous_dflex.py --env-id examples.pendulum:Pendulum --actor-hidden 64 64 --critic-hidden 64 64

A pole of mass m and length l swings about a motorised pivot; θ is its angle from upright and ω = dθ/dt. The
action a ∈ [-1, 1] sets the motor torque τ = τ_max·a. One step is semi-implicit Euler with time step dt, the
pole a uniform rod (moment of inertia m l²/3 about the pivot):

    ω' = ω + dt·(3g/(2l)·sin θ + 3τ/(m l²)),      θ' = θ + dt·ω'

The observation is (cos θ', sin θ', ω') and the reward r = -(2(1 - cos θ') + c_ω·ω'² + c_τ·τ²) with c_ω = 0.01,
c_τ = 0.001: 0 upright and at rest, -4 hanging still (2(1 - cos θ) is θ² near the top, smooth everywhere).
With g = 10, m = l = 1, τ_max = 2 and dt = 0.05, gravity's largest angular acceleration (15 rad/s²) is far above
the motor's (6): the pole must be swung up.
Episodes last 200 steps (truncation, no termination) and start at θ ~ U(-π, π), ω ~ U(-1, 1).
Every step is a torch expression of the action, so BPTT differentiates through it.
"""
import math

import numpy as np
import torch


class Pendulum:
    def __init__(self, num_envs, device="cpu", seed=0, requires_grad=True, episode_length=200,
                 g=10.0, m=1.0, l=1.0, max_torque=2.0, dt=0.05, velocity_cost=0.01, torque_cost=0.001):
        self.num_envs, self.num_obs, self.num_actions = num_envs, 3, 1
        self.device, self.max_episode_length = torch.device(device), episode_length
        self.g, self.m, self.l, self.max_torque, self.dt = g, m, l, max_torque, dt
        self.velocity_cost, self.torque_cost = velocity_cost, torque_cost
        self.metadata = {"render_fps": round(1 / dt)}
        self.rng = torch.Generator(self.device).manual_seed(seed)
        self.theta = torch.zeros(num_envs, device=self.device)
        self.omega = torch.zeros(num_envs, device=self.device)
        self.progress = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def _obs(self):
        return torch.stack([torch.cos(self.theta), torch.sin(self.theta), self.omega], -1)

    def _initial(self, n):
        uniform = torch.rand(2, n, generator=self.rng, device=self.device) * 2 - 1
        return math.pi * uniform[0], uniform[1]

    def reset(self, seed=None):
        if seed is not None:
            self.rng.manual_seed(seed)
        self.theta, self.omega = self._initial(self.num_envs)
        self.progress.zero_()
        return self._obs()

    def step(self, actions):
        torque = self.max_torque * actions.clamp(-1, 1)[:, 0]
        gravity = 3 * self.g / (2 * self.l) * torch.sin(self.theta)
        self.omega = self.omega + self.dt * (gravity + 3 * torque / (self.m * self.l**2))
        self.theta = self.theta + self.dt * self.omega
        reward = -(2 * (1 - torch.cos(self.theta)) + self.velocity_cost * self.omega**2 + self.torque_cost * torque**2)
        self.progress += 1
        truncated = self.progress >= self.max_episode_length
        final_obs = self._obs()
        if truncated.any():  # auto-reset: fresh start states, no gradient history, for the envs that ended
            theta, omega = self._initial(self.num_envs)
            self.theta = torch.where(truncated, theta, self.theta)
            self.omega = torch.where(truncated, omega, self.omega)
            self.progress[truncated] = 0
        return self._obs(), reward, torch.zeros_like(truncated), truncated, {"final_obs": final_obs}

    def clear_grad(self):
        self.theta, self.omega = self.theta.detach(), self.omega.detach()
        return self._obs()

    def state_dict(self):
        return {"theta": self.theta.detach().clone(), "omega": self.omega.detach().clone(),
                "progress": self.progress.clone(), "rng": self.rng.get_state()}

    def load_state_dict(self, state):
        self.theta, self.omega = state["theta"].to(self.device), state["omega"].to(self.device)
        self.progress = state["progress"].to(self.device).clone()
        self.rng.set_state(state["rng"])

    def render(self, size=160):
        """The first two pendulums side by side, pivot at the centre, θ = 0 pointing up."""
        frame = np.full((size, 2 * size, 3), 255, dtype=np.uint8)
        radius = np.linspace(0, 0.45 * size, 60)
        for i, theta in enumerate(self.theta[:2].detach().cpu().tolist()):
            x = (size // 2 + i * size + radius * math.sin(theta)).astype(int)
            y = (size // 2 - radius * math.cos(theta)).astype(int)
            for dx in (-1, 0, 1):
                frame[y, np.clip(x + dx, 0, 2 * size - 1)] = (200, 40, 40)
        return frame
