"""The algorithm registry, the learner interface and the config's sections."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from ddn import algorithms, config
from ddn.algorithms import (
    DDNConfig,
    WQMIXConfig,
    algorithm_names,
    all_algorithms,
    get_algorithm,
    label,
)
from ddn.config import Config, ConfigError, MixerConfig, OptimConfig, resolve
from ddn.experiment import Experiment, build_learner, make_env
from ddn.learners.base import Learner, PostBudgetLearner
from ddn.logging import read_metrics
from ddn.rollout import Collector

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SMALL = [
    "device=cpu", "batch_size_run=4", "batch_size=4", "buffer_size=8", "rnn_hidden_dim=8",
    "mixing_embed_dim=8", "hypernet_embed=8", "central_mixing_embed_dim=8", "fusion_dim=8",
    "idm_embed_dim=8", "ptde_z_dim=8", "ptde_hyper_dim=4", "ptde_dataset_episodes=4",
    "ptde_distill_steps=5", "ptde_distill_batch=8",
]  # fmt: skip


# ---------------------------------------------------------------- the registry
def test_names_labels_and_bases():
    names = algorithm_names()
    assert names[:8] == ("iql", "vdn", "qmix", "qatten", "qplex", "cw_qmix", "ow_qmix", "qtran")
    assert len(set(names)) == len(names)
    bases = [a for a in all_algorithms() if a.base is None]
    # DDN on every base method, and plain "ddn" = DDN on QMIX (the paper's headline).
    for base in bases:
        ddn = get_algorithm(f"ddn_{base.name}")
        assert (ddn.base, ddn.family, ddn.objective, ddn.mixer) == (
            base.name, "ddn", base.objective, base.mixer,
        )  # fmt: skip
        assert set(base.sections) < set(ddn.sections) and DDNConfig in ddn.sections
    assert get_algorithm("ddn").base == "qmix"
    assert (label("ddn"), label("ddn_vdn"), label("cw_qmix"), label("iql")) == (
        "DDN", "VDN_DDN", "CW-QMIX", "IQL",
    )  # fmt: skip
    assert label("an_old_algorithm") == "an_old_algorithm"  # a run of an unknown name
    assert get_algorithm("ddn_qtran").learning_rate_keys() == ["lr", "student_lr", "idm_lr"]
    assert get_algorithm("qmix").learning_rate_keys() == ["lr"]


def test_unknown_algorithm_is_one_error_with_a_suggestion():
    with pytest.raises(ConfigError) as info:
        get_algorithm("ddn_qmx")
    message = str(info.value)
    assert "unknown algorithm 'ddn_qmx'. Did you mean 'ddn_qmix'?" in message
    assert "\n" not in message and all(n in message for n in algorithm_names())


def test_policies():
    qmix, ddn = get_algorithm("qmix"), get_algorithm("ddn")
    assert not qmix.has_student and ddn.has_student
    assert [(p.name, p.prefix, p.label) for p in ddn.policies] == [
        ("teacher", "test", "GGN"), ("student", "test_student", "LPN"),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"this run \(qmix\) has no student network"):
        qmix.policy("student")


def test_register_refuses_duplicates_and_unknown_bases(monkeypatch):
    monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))
    with pytest.raises(ValueError, match="registered twice"):
        algorithms.register(get_algorithm("qmix"))
    orphan = dataclasses.replace(get_algorithm("ddn"), name="x", base="nothing")
    with pytest.raises(ValueError, match="base 'nothing' must be registered first"):
        algorithms.register(orphan)


def test_a_section_key_must_be_new():
    @dataclasses.dataclass
    class Clash:
        lr: float = 1.0

    with pytest.raises(ValueError, match="config key 'lr' of Clash is already OptimConfig's"):
        config.declare_section(Clash)


# ---------------------------------------------------------------- the learner interface
def _batch(learner: Learner, cfg: Config):
    env = make_env(cfg, cfg.batch_size_run, cfg.seed, CPU)
    batch, _ = Collector(env, CPU).run(learner.acting_network, 1.0, CPU)
    return env, batch


@pytest.mark.parametrize("algo", algorithm_names())
def test_every_algorithm_builds_a_learner_with_the_interface(algo):
    cfg = resolve("matrix", algo, overrides=SMALL)
    entry = get_algorithm(algo)
    env = make_env(cfg, 1, 0, CPU)
    learner = build_learner(cfg, env.spec, CPU)
    assert isinstance(learner, Learner)
    # The networks it evaluates are the ones its registry entry names (a learner with a
    # post-budget phase, PTDE, evaluates its student once that phase has made it).
    prefixes = [p.prefix for p in entry.policies]
    post_budget = isinstance(learner, PostBudgetLearner)
    if post_budget:
        assert list(learner.evaluation_policies()) == prefixes[:1]
    else:
        assert list(learner.evaluation_policies()) == prefixes
    assert set(learner.policy_state_dict())
    env, batch = _batch(learner, cfg)
    metrics = learner.train(batch, cfg.batch_size_run)
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    if post_budget:
        assert not learner.post_budget_done
        done = learner.post_budget(env, lambda: False, False)
        assert done is not None and learner.post_budget_done
        assert list(learner.evaluation_policies()) == prefixes
    key = "win_rate" if env.spec.has_win_condition else "return_mean"
    test = {f"{p.prefix}/{key}": 0.5 if p.name == "student" else 1.0 for p in entry.policies}
    extra = learner.evaluation_metrics(test)
    if entry.has_student:
        assert extra == {"test/transfer_rate": 0.5}
    else:
        assert extra == {}


# ---------------------------------------------------------------- config sections
def test_sections_read_and_write_through_flat_names():
    cfg = resolve("matrix", "ddn_cw_qmix", overrides=["w=0.3", "fusion_dim=8", "lr=0.002"])
    ddn = cfg.section(DDNConfig)
    assert isinstance(ddn, DDNConfig) and ddn.fusion_dim == cfg.fusion_dim == 8
    assert cfg.section(WQMIXConfig).w == cfg.w == 0.3
    assert cfg.section(OptimConfig) is cfg and isinstance(cfg, MixerConfig)
    assert ddn.student_lr == ddn.idm_lr == 0.002  # follows lr
    cfg.fusion_dim = 16
    assert ddn.fusion_dim == 16 and cfg.to_dict()["fusion_dim"] == 16
    with pytest.raises(AttributeError, match="fusion_dimm"):
        _ = cfg.fusion_dimm
    with pytest.raises(AttributeError, match="no key 'fusion_dimm'"):
        cfg.fusion_dimm = 3


def test_replace_copy_and_pickle_keep_every_section():
    cfg = resolve("matrix", "ddn", overrides=["fusion_dim=8"])
    other = dataclasses.replace(cfg, threads=3)
    assert other.threads == 3 and other.fusion_dim == 8
    other.fusion_dim = 4  # the copy's sections are its own
    assert cfg.fusion_dim == 8
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert Config(fusion_dim=8, algo="ddn").fusion_dim == 8  # flat keyword arguments
    with pytest.raises(TypeError, match="unknown key 'fusion'"):
        Config(fusion=8)


def test_a_config_unpickled_in_a_fresh_process_reads_its_algorithm_keys(tmp_path):
    """As a Ray worker gets it: the algorithm keys are properties the registry adds, and
    unpickling the sections imports it."""
    path = tmp_path / "cfg.pkl"
    path.write_bytes(pickle.dumps(resolve("matrix", "ddn_cw_qmix", overrides=["w=0.2"])))
    code = f"import pickle; c = pickle.loads(open({str(path)!r}, 'rb').read()); print(c.w)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert out.stdout.strip() == "0.2"


def test_flat_round_trip(tmp_path):
    cfg = resolve("matrix", "ddn_qtran", overrides=["opt_loss=2", "w_q=0.5", "gamma=0.9"])
    flat = cfg.to_dict()
    assert list(flat) == config.keys()  # flat, in one order, nothing nested but env
    assert config.from_dict(flat) == cfg
    config.save(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == flat
    assert config.load(tmp_path / "config.yaml") == cfg
    assert config.differing_keys(flat, cfg) == []
    assert config.differing_keys({**flat, "w_q": 1.0}, cfg) == ["w_q"]


def test_an_algorithm_on_a_base_takes_the_base_methods_preset_then_its_own():
    # qtran.yaml widens QTRAN's joint network; DDN on QTRAN trains its teacher with it.
    assert resolve("matrix", "qtran").mixing_embed_dim == 64
    assert resolve("matrix", "ddn_qtran").mixing_embed_dim == 64
    assert (
        resolve("matrix", "ddn_qmix").mixing_embed_dim == resolve("matrix", "qmix").mixing_embed_dim
    )
    assert resolve("matrix", "ddn_qtran", overrides=["mixing_embed_dim=8"]).mixing_embed_dim == 8


def test_a_flat_config_written_before_sections_still_loads():
    path = REPO / "tests" / "data" / "config_flat_before_sections.yaml"
    saved = config.load_yaml_mapping(path)
    cfg = config.load(path)
    assert (cfg.algo, cfg.w, cfg.fusion_dim, cfg.idm, cfg.mixing_embed_dim) == (
        "ddn_cw_qmix", 0.3, 8, False, 16,
    )  # fmt: skip
    # Every key it holds reads back; keys added since (the rivals') take their defaults.
    loaded = cfg.to_dict()
    assert {k: v for k, v in loaded.items() if k in saved} == saved
    defaults = Config().to_dict()
    assert {k: v for k, v in loaded.items() if k not in saved} == {
        k: v for k, v in defaults.items() if k not in saved
    }
    assert config.differing_keys(saved, cfg) == []
    # A record from before a key existed: the key counts as its default.
    older = {k: v for k, v in saved.items() if k != "runaway_q_factor"}
    assert config.differing_keys(older, cfg) == []


@pytest.mark.parametrize("path", sorted(REPO.glob("results/**/config.yaml")), ids=str)
def test_the_stored_results_configs_load_unchanged(path):
    saved = config.load_yaml_mapping(path)
    cfg = config.load(path)
    assert config.differing_keys(saved, cfg) == []
    assert {k: cfg.to_dict()[k] for k in saved} == saved


def test_ranges_are_declared_with_the_defaults():
    with pytest.raises(ConfigError, match="idm_embed_dim must be > 0, got 0"):
        resolve("matrix", "ddn", overrides=["idm_embed_dim=0"])
    with pytest.raises(ConfigError, match=r"idm_mask_prob must be in \[0, 1\], got 2.0"):
        resolve("matrix", "ddn", overrides=["idm_mask_prob=2"])
    with pytest.raises(ConfigError, match="w_q must be >= 0"):
        resolve("matrix", "ddn", overrides=["w_q=-1"])
    with pytest.raises(ConfigError, match="act_with must be one of"):
        resolve("matrix", "ddn", overrides=["act_with=both"])


# ---------------------------------------------------------------- the worked example
def _doc_blocks() -> list[str]:
    text = (REPO / "docs" / "adding-an-algorithm.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture
def example(monkeypatch, request):
    """docs/adding-an-algorithm.md's module and registry entry, registered for one test."""
    module_code, entry_code = _doc_blocks()
    module = types.ModuleType("ddn_doc_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(module_code, "docs/adding-an-algorithm.md", "exec"), module.__dict__)
    monkeypatch.setattr(algorithms, "_REGISTRY", dict(algorithms._REGISTRY))
    monkeypatch.setattr(config, "_ALGORITHM_SECTIONS", dict(config._ALGORITHM_SECTIONS))
    monkeypatch.setattr(config, "_OWNER", dict(config._OWNER))
    exec(entry_code, {**vars(algorithms), **module.__dict__})
    for key in get_algorithm("vdn_scaled").keys:  # the properties declare_section added
        request.addfinalizer(lambda key=key: delattr(Config, key))
    return module


def test_the_documented_example_is_one_module_and_one_entry(example, tmp_path, monkeypatch):
    entry = get_algorithm("vdn_scaled")
    assert entry.keys == ("reward_scale",) and entry.base == "vdn"
    with pytest.raises(ConfigError, match="Did you mean 'reward_scale'"):
        resolve("matrix", "vdn_scaled", overrides=["reward_scal=0.5"])
    with pytest.raises(ConfigError, match="reward_scale must be > 0"):
        resolve("matrix", "vdn_scaled", overrides=["reward_scale=0"])
    cfg = resolve("matrix", "vdn_scaled", overrides=[*SMALL, "reward_scale=0.5", "t_max=16"])
    assert cfg.section(example.RewardScaleConfig).reward_scale == 0.5
    # The learner trains on the scaled reward: its TD target is half of VDN's.
    torch.manual_seed(0)
    scaled = build_learner(cfg, make_env(cfg, 1, 0, CPU).spec, CPU)
    torch.manual_seed(0)
    vdn_cfg = resolve("matrix", "vdn", overrides=[*SMALL, "t_max=16"])
    plain = build_learner(vdn_cfg, make_env(vdn_cfg, 1, 0, CPU).spec, CPU)
    _, batch = _batch(scaled, cfg)
    assert isinstance(scaled, example.RewardScaledLearner)
    target_scaled = scaled.train(batch, 4)["train/target_mean"]
    target_plain = plain.train(batch, 4)["train/target_mean"]
    assert target_scaled == pytest.approx(0.5 * target_plain)
    # Through the generic loop: trained, tested, its key in config.yaml, and whatever
    # its evaluation hook returns logged with the test.
    monkeypatch.setattr(
        example.RewardScaledLearner, "evaluation_metrics", lambda self, m: {"test/hook": 1.0}
    )
    run = tmp_path / "run"
    Experiment(
        resolve("matrix", "vdn_scaled", overrides=[*SMALL, "t_max=16", "test_interval=8",
                                                   "test_nepisode=2", "reward_scale=0.5"]),
        run, progress=False,
    ).run()  # fmt: skip
    assert yaml.safe_load((run / "config.yaml").read_text())["reward_scale"] == 0.5
    tests = [e for e in read_metrics(run / "metrics.jsonl") if "test/return_mean" in e]
    assert tests and all(e["test/hook"] == 1.0 for e in tests)
