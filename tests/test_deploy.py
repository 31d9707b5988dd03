"""Deploying DDN's student: ``ddn export``, ``load_student`` / ``StudentPolicy`` and
``ddn evaluate --policy student``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddn.checkpoint import CheckpointError, list_checkpoints
from ddn.cli import main
from ddn.deploy import FORMAT, StudentPolicy, export_student, load_student
from ddn.envs import make
from ddn.run import load_run

TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.view=3",
    "env.episode_limit=10", "batch_size_run=4", "batch_size=4", "buffer_size=32",
    "t_max=120", "test_interval=60", "test_nepisode=4", "log_interval=40",
    "save_model_interval=60", "rnn_hidden_dim=16", "fusion_dim=8", "mixing_embed_dim=8",
    "hypernet_embed=16", "device=cpu",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def train(out: Path, algo: str) -> Path:
    sets = [x for item in TINY for x in ("--set", item)]
    args = ["train", "--env", "predator_prey", "--algo", algo, "--out", str(out)]
    assert main([*args, "--no-progress", *sets]) == 0
    return out


@pytest.fixture(scope="module")
def ddn_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("deploy") / "ddn", "ddn")


@pytest.fixture(scope="module")
def vdn_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("deploy") / "vdn", "vdn")


@pytest.fixture(scope="module")
def exported(ddn_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "sub" / "lpn.pt"
    assert main(["export", "--run", str(ddn_run), "--out", str(out)]) == 0
    return out


def one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("ddn: error: ")
    return lines[0]


# ---------------------------------------------------------------- export
def test_export_writes_the_student_alone(ddn_run, exported, capsys):
    assert exported.is_file()
    assert not list(exported.parent.glob("*.tmp"))
    data = torch.load(exported, weights_only=True)
    assert data["format"] == FORMAT
    run = load_run(ddn_run)
    spec = run.env.spec
    assert data["arch"]["obs_dim"] == spec.obs_dim != spec.state_dim
    assert "state_dim" not in data["arch"]
    student = run.learner.student.state_dict()
    assert set(data["state_dict"]) == set(student)
    for k, v in student.items():
        assert torch.equal(data["state_dict"][k], v), k
    # The command prints one JSON line naming the checkpoint it exported.
    out = exported.parent / "again.pt"
    assert main(["export", "--run", str(ddn_run), "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checkpoint"] == run.t_env and Path(info["out"]) == out


def test_export_of_an_earlier_checkpoint(ddn_run, tmp_path):
    first, *_, latest = list_checkpoints(ddn_run)
    out = tmp_path / "early.pt"
    args = ["export", "--run", str(ddn_run), "--out", str(out), "--checkpoint", str(first)]
    assert main(args) == 0
    early = load_run(ddn_run, first).learner.student.state_dict()
    late = load_run(ddn_run, latest).learner.student.state_dict()
    data = torch.load(out, weights_only=True)
    assert all(torch.equal(data["state_dict"][k], v) for k, v in early.items())
    assert not all(torch.equal(data["state_dict"][k], v) for k, v in late.items())


def test_loaded_policy_acts_like_the_checkpointed_lpn(ddn_run, exported):
    """Closed loop in fresh environments: the deployed policy and the run's LPN, stepped
    by hand with its own greedy actions, choose the same actions at every step."""
    run = load_run(ddn_run)
    student = run.learner.student
    env = make("predator_prey", num_envs=6, seed=3, **run.cfg.env)
    policy = load_student(exported)
    assert isinstance(policy, StudentPolicy)
    policy.reset(batch=env.num_envs)
    out = env.reset()
    hidden = student.initial_hidden(env.num_envs, torch.device("cpu"))
    last = torch.full((env.num_envs, env.spec.n_agents), -1, dtype=torch.long)
    steps = 0
    with torch.no_grad():
        while not bool(out.done.all()):
            actions = policy.act(out.obs, out.avail)
            q, hidden = student.step(student.inputs.encode(out.obs, last), hidden)
            expected = q.masked_fill(~out.avail, float("-inf")).argmax(dim=-1)
            assert torch.equal(actions, expected), steps
            # The recurrent state too (it carries the last actions into the next step).
            assert torch.allclose(policy.hidden, hidden, atol=1e-6), steps
            assert out.avail.gather(-1, actions.unsqueeze(-1)).all()
            out = env.step(actions)
            last = actions
            steps += 1
    assert steps >= 2


def test_single_observation_and_avail_masking(exported):
    policy = load_student(exported)
    n, o = policy.network.n_agents, policy.network.iob.value_dim
    obs = torch.rand(n, o, generator=torch.Generator().manual_seed(0))
    policy.reset()
    free = policy.act(obs)  # [N, O] -> [N]: one environment
    assert free.shape == (n,)
    # Forbid every agent's unmasked choice: each must pick another, available action.
    avail = torch.ones(n, policy.network.n_actions, dtype=torch.bool)
    avail[torch.arange(n), free] = False
    policy.reset()
    masked = policy.act(obs, avail)
    assert (masked != free).all() and avail[torch.arange(n), masked].all()
    # Only one action left: it is taken.
    only = torch.zeros_like(avail)
    only[:, 2] = True
    policy.reset()
    assert policy.act(obs, only).tolist() == [2] * n
    # Batched input gives the same as one environment at a time; numpy arrays and plain
    # lists (what a deployed environment hands over) work as well as tensors.
    policy.reset(batch=2)
    both = policy.act(torch.stack([obs, obs]), torch.stack([avail, avail]))
    assert both.shape == (2, n) and torch.equal(both[0], masked) and torch.equal(both[1], masked)
    policy.reset()
    assert torch.equal(policy.act(obs.numpy(), avail.numpy()), masked)
    policy.reset()
    assert torch.equal(policy.act(obs.tolist(), avail.tolist()), masked)
    policy.reset(batch=2)
    assert torch.equal(policy.act(np.stack([obs.numpy()] * 2)), torch.stack([free, free]))


def test_reset_clears_the_recurrent_state(exported):
    policy = load_student(exported)
    n, o = policy.network.n_agents, policy.network.iob.value_dim
    seq = torch.rand(5, n, o, generator=torch.Generator().manual_seed(1))
    first = [policy.act(x) for x in seq]
    policy.reset()
    again = [policy.act(x) for x in seq]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_export_and_load_round_trip_in_python(ddn_run, tmp_path):
    student = load_run(ddn_run).learner.student
    path = export_student(student, tmp_path / "x" / "lpn.pt")
    policy = load_student(path)
    for k, v in student.state_dict().items():
        assert torch.equal(policy.network.state_dict()[k], v)
    assert not policy.network.training


# ---------------------------------------------------------------- errors
def test_export_of_a_non_ddn_run_is_refused(vdn_run, tmp_path, capsys):
    out = tmp_path / "lpn.pt"
    line = one_line_error(capsys, main(["export", "--run", str(vdn_run), "--out", str(out)]))
    assert "vdn" in line and "LPN" in line
    assert not out.exists()


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code = main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "o.pt")])
    assert "not a ddn run folder" in one_line_error(capsys, code)


@pytest.mark.parametrize("kind", ["garbage", "empty", "other_format", "not_a_dict", "pickle"])
def test_a_corrupt_or_wrong_file_raises_a_checkpoint_error(tmp_path, kind):
    path = tmp_path / "bad.pt"
    if kind == "garbage":
        path.write_bytes(b"\x00not a torch file at all" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "other_format":
        torch.save({"format": "something-else", "state_dict": {}}, path)
    elif kind == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    else:
        torch.save({"format": FORMAT, "obj": SimpleNamespace(a=1)}, path)  # needs unpickling
    with pytest.raises(CheckpointError) as info:
        load_student(path)
    assert "\n" not in str(info.value)


def test_a_checkpoint_is_not_an_export(ddn_run):
    state = sorted((ddn_run / "checkpoints").glob("*/state.pt"))[-1]
    with pytest.raises(CheckpointError, match="not a ddn LPN export"):
        load_student(state)


def test_a_truncated_export_raises_a_checkpoint_error(exported, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(exported.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_student(path)


def test_missing_file_raises_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        load_student(tmp_path / "nope.pt")


# ---------------------------------------------------------------- evaluate --policy
def test_evaluate_student_prints_json(ddn_run, capsys):
    args = ["evaluate", "--run", str(ddn_run), "--episodes", "3"]
    assert main([*args, "--policy", "student"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "student" and out["episodes"] == 3
    assert {"return_mean", "return_std", "ep_length_mean"} <= {k.split("/")[-1] for k in out}
    assert main([*args, "--policy", "teacher"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"] == "teacher"


def test_evaluate_student_of_a_non_ddn_run(vdn_run, capsys):
    args = ["evaluate", "--run", str(vdn_run), "--episodes", "2", "--policy", "student"]
    line = one_line_error(capsys, main(args))
    assert "no student" in line
    assert main(["evaluate", "--run", str(vdn_run), "--episodes", "2"]) == 0
