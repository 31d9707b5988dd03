"""Deploying DDN's student: the LPN alone, acting from local observations only.

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

import torch

from ddn.checkpoint import CheckpointError, unreadable_reason
from ddn.nets.actor import GreedyActor
from ddn.nets.ddn import LocalPolicyNetwork

FORMAT = "ddn-lpn-1"


def export_student(network: LocalPolicyNetwork, path: str | Path) -> Path:
    net = network.net
    arch = {
        "obs_dim": network.iob.value_dim,
        "n_agents": network.n_agents,
        "n_actions": network.n_actions,
        "hidden_dim": net.hidden_dim,
        "fusion_dim": network.iob.out_dim,
        "hypernet_dim": network.iob.hypernet_dim,
        "last_action": network.last_action,
        "agent_id": network.agent_id,
    }
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:  # through a file object: a full disk raises its OSError, not torch's RuntimeError
        with tmp.open("wb") as f:
            torch.save({"format": FORMAT, "arch": arch, "state_dict": state}, f)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # no partial file stays behind
        raise
    return path


class StudentPolicy:
    """Greedy decentralised execution with the LPN (a :class:`~ddn.nets.actor.GreedyActor`
    fed local observations only); keeps each agent's GRU state and last action."""

    def __init__(self, network: LocalPolicyNetwork, device: str | torch.device = "cpu"):
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
        arch = data["arch"]
        network = LocalPolicyNetwork(
            arch["obs_dim"], arch["n_agents"], arch["n_actions"], arch["hidden_dim"],
            arch["fusion_dim"], arch["hypernet_dim"], arch["last_action"], arch["agent_id"],
        )  # fmt: skip
        network.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is a damaged ddn LPN export ({first})") from None
    return StudentPolicy(network, device)
