"""Deploying a student alone, acting from local observations only: DDN's LPN, or a
rival's student (CTDS's and IGM-DA's recurrent agents, PTDE's trunk + z MLP + head).

``ddn export --run DIR --out lpn.pt`` writes the file; then::

    from ddn.deploy import load_student

    policy = load_student("lpn.pt")
    policy.reset(batch=1)
    actions = policy.act(obs, avail)  # obs [N, O] or [B, N, O]; avail optional, same shape with A

Nothing about the global state is in the file or in the policy's inputs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddn.checkpoint import CheckpointError, unreadable_reason
from ddn.nets.actor import GreedyActor
from ddn.nets.agent import AgentQNetwork
from ddn.nets.ddn import LocalPolicyNetwork
from ddn.nets.rivals import AvailInputAgent, PTDEStudent

FORMAT = "ddn-lpn-1"  # kept for every kind: files written before the rivals stay readable
# The student networks an export can hold, by the ``kind`` the file names (none: "lpn").
KINDS: dict[str, type[nn.Module]] = {
    "lpn": LocalPolicyNetwork,
    "rnn": AgentQNetwork,
    "rnn_avail": AvailInputAgent,
    "ptde": PTDEStudent,
}


def _arch(network: nn.Module) -> tuple[str, dict[str, Any]]:
    """The kind of ``network`` and the constructor arguments that rebuild it."""
    if isinstance(network, LocalPolicyNetwork):
        return "lpn", {
            "obs_dim": network.iob.value_dim,
            "n_agents": network.n_agents,
            "n_actions": network.n_actions,
            "hidden_dim": network.net.hidden_dim,
            "fusion_dim": network.iob.out_dim,
            "hypernet_dim": network.iob.hypernet_dim,
            "last_action": network.last_action,
            "agent_id": network.agent_id,
        }
    common = {"n_agents": network.n_agents, "n_actions": network.n_actions}
    flags = {"last_action": network.last_action, "agent_id": network.agent_id}
    if isinstance(network, PTDEStudent):
        return "ptde", {
            "obs_dim": network.obs_dim, **common, "hidden_dim": network.hidden_dim,
            "z_dim": network.z_dim, "noise_std": network.noise_std, **flags,
        }  # fmt: skip
    if isinstance(network, AgentQNetwork):  # the input is [o_i, (avail_i), u, id]
        obs_dim = network.inputs.obs_dim
        kind = "rnn"
        if isinstance(network, AvailInputAgent):
            kind, obs_dim = "rnn_avail", obs_dim - network.n_actions
        return kind, {
            "obs_dim": obs_dim, **common, "hidden_dim": network.net.hidden_dim, **flags,
        }  # fmt: skip
    raise TypeError(f"no export for a {type(network).__name__}")


def export_student(network: nn.Module, path: str | Path) -> Path:
    kind, arch = _arch(network)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:  # through a file object: a full disk raises its OSError, not torch's RuntimeError
        with tmp.open("wb") as f:
            torch.save({"format": FORMAT, "kind": kind, "arch": arch, "state_dict": state}, f)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # no partial file stays behind
        raise
    return path


class StudentPolicy:
    """Greedy decentralised execution with a student (a
    :class:`~ddn.nets.actor.GreedyActor` fed local observations only); keeps each
    agent's GRU state and last action."""

    def __init__(self, network: nn.Module, device: str | torch.device = "cpu"):
        self.network = network.to(device).eval()
        self.device = torch.device(device)
        self.actor = GreedyActor(self.network, self.device)

    def reset(self, batch: int = 1) -> None:
        """Start new episodes (clears the recurrent state and the last actions)."""
        self.actor.reset(batch)

    @property
    def hidden(self) -> torch.Tensor:
        """Each agent's recurrent state, [B, N, H]."""
        return self.actor.hidden

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        single = obs.dim() == 2
        if single:
            obs = obs.unsqueeze(0)
        if avail is not None:
            avail = torch.as_tensor(avail, dtype=torch.bool, device=self.device)
            avail = avail.unsqueeze(0) if single else avail
        elif isinstance(self.network, AvailInputAgent):
            raise ValueError(
                "this student (IGM-DA's learner) reads the available actions: pass avail"
            )
        actions = self.actor.act(obs, avail)
        return actions[0] if single else actions


def load_student(path: str | Path, device: str | torch.device = "cpu") -> StudentPolicy:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise CheckpointError(
            f"{path} is not a readable ddn export ({unreadable_reason(exc)})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ddn LPN export (make one with `ddn export`)")
    try:
        kind = data.get("kind", "lpn")
        if kind not in KINDS:
            raise CheckpointError(f"{path} holds a student of kind {kind!r}, unknown to this ddn")
        network = KINDS[kind](**data["arch"])
        network.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is a damaged ddn student export ({first})") from None
    return StudentPolicy(network, device)
