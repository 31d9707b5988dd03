"""Typed run configuration: presets, --set parsing, validation errors, save/load."""

from __future__ import annotations

import pytest
import yaml

from ddn import config
from ddn.algorithms import algorithm_names
from ddn.config import Config, ConfigError, parse_override, resolve
from ddn.envs import list_envs

ENVS = sorted(list_envs())
ALGORITHMS = algorithm_names()


# ---------------------------------------------------------------- presets
@pytest.mark.parametrize("env_name", ENVS)
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_preset_combination_resolves(env_name, algo):
    cfg = resolve(env_name, algo)
    assert isinstance(cfg, Config)
    assert (cfg.env_name, cfg.algo, cfg.map_name) == (env_name, algo, None)


def _preset(*parts: str) -> dict:
    return config.load_yaml_mapping(config._preset_dir().joinpath(*parts))


def _alg_preset(algo: str) -> dict:
    path = config._preset_dir() / "algs" / f"{algo}.yaml"
    return config.load_yaml_mapping(path) if path.exists() else {}


@pytest.mark.parametrize("env_name", ENVS)
@pytest.mark.parametrize("algo", ["qmix", "qtran", "cw_qmix"])
def test_preset_precedence(env_name, algo):
    # The dataclass defaults < envs/<env>.yaml < algs/<algo>.yaml, key by key.
    # (student_lr and idm_lr follow lr: tested below.)
    defaults = {k: v for k, v in Config().to_dict().items() if k not in ("student_lr", "idm_lr")}
    layers = [defaults, _preset("envs", f"{env_name}.yaml"), _alg_preset(algo)]
    cfg = resolve(env_name, algo).to_dict()
    for key in set().union(*layers) - {"env", "env_name", "algo"}:
        want = next(layer[key] for layer in reversed(layers) if key in layer)
        assert cfg[key] == want, key
    env_params = {}
    for layer in layers:
        env_params.update(layer.get("env", {}))
    assert cfg["env"] == env_params


def test_overrides_win_over_presets_and_keywords():
    cfg = resolve("matrix", "qtran", overrides=["mixing_embed_dim=5", "batch_size_run=3"])
    assert (cfg.mixing_embed_dim, cfg.batch_size_run) == (5, 3)
    # Explicit keyword values (the CLI's --seed, --t-max) sit below --set.
    cfg = resolve("matrix", "vdn", seed=7, t_max=123, overrides=["t_max=456"])
    assert (cfg.seed, cfg.t_max) == (7, 456)
    assert resolve("matrix", "vdn", seed=None).seed == Config().seed


def test_paper_predator_prey_preset():
    cfg = resolve("predator_prey", "qmix")
    assert cfg.env == {
        "n_agents": 8, "n_prey": 8, "height": 10, "width": 10, "view": 5,
        "capture_reward": 10.0, "punishment": 2.0, "episode_limit": 200,
    }  # fmt: skip
    assert cfg.t_max == 1_000_000


def test_env_overrides_merge_into_the_preset():
    cfg = resolve("predator_prey", "qmix", overrides=["env.n_prey=2", "env.punishment=0.5"])
    assert cfg.env["n_prey"] == 2 and cfg.env["punishment"] == 0.5
    assert cfg.env["n_agents"] == 8  # the rest of the preset stays


def test_list_presets():
    algs = set(config.list_presets("algs"))
    assert algs <= set(ALGORITHMS)
    assert "qtran" in algs  # the others have no setting that differs from the defaults
    assert set(config.list_presets("envs")) <= set(ENVS)
    assert "predator_prey" in config.list_presets("envs")


def test_presets_use_only_known_keys():
    keys = set(config.keys())
    root = config._preset_dir()
    # Run presets only: configs/sweeps/ holds sweep files, a format of their own.
    paths = [*root.glob("envs/*.yaml"), *root.glob("algs/*.yaml"), *root.glob("maps/*/*.yaml")]
    assert paths
    for path in paths:
        assert set(config.load_yaml_mapping(path)) <= keys, path


def test_defaults_have_one_source():
    """The dataclasses hold every default: no default.yaml, and an algorithm preset only
    says where its algorithm differs from them (else a changed default would not reach
    that algorithm)."""
    root = config._preset_dir()
    assert not (root / "default.yaml").exists()
    defaults = Config().to_dict()
    for path in root.glob("algs/*.yaml"):
        preset = config.load_yaml_mapping(path)
        assert preset, path
        for key, value in preset.items():
            assert config.from_dict({key: value}).to_dict()[key] != defaults[key], (path, key)


def test_map_presets_apply_to_their_map_only():
    """The paper's 3s5z_vs_3s6z: 5M steps, lr 1e-3, epsilon over 1M steps (Section B.3)."""
    hard = resolve("smax", "qmix", "3s5z_vs_3s6z")
    assert (hard.t_max, hard.lr, hard.epsilon_anneal_time) == (5_050_000, 0.001, 1_000_000)
    other = resolve("smax", "qmix", "3m")
    assert (other.t_max, other.lr, other.epsilon_anneal_time) == (2_050_000, 0.0005, 50_000)
    # The command line still wins over the map preset.
    assert resolve("smax", "qmix", "3s5z_vs_3s6z", ["lr=0.002"]).lr == 0.002


# ---------------------------------------------------------------- --set parsing
@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        # YAML 1.1 keeps "1e-3" a string; the typed check of each key converts it
        # (so a string key such as map_name=1e3 stays a string).
        ("lr=1e-3", "lr", "1e-3"),
        ("lr=0.001", "lr", 0.001),
        ("t_max=1e6", "t_max", "1e6"),
        ("map_name=1e3", "map_name", "1e3"),
        ("batch_size=16", "batch_size", 16),
        ("double_q=false", "double_q", False),
        ("double_q=True", "double_q", True),
        ("map_name=null", "map_name", None),
        ("optimizer=adam", "optimizer", "adam"),
        (" seed =3", "seed", 3),
        ("env.payoff=[[11,-30,0],[-30,7,6],[0,0,5]]", "env.payoff",
         [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]),
        ("env.note=a=b", "env.note", "a=b"),
    ],
)  # fmt: skip
def test_parse_override(item, key, value):
    got_key, got = parse_override(item)
    assert got_key == key
    assert got == value
    assert type(got) is type(value)


def test_parsed_values_reach_the_config_with_their_types():
    cfg = resolve(
        "matrix",
        "qmix",
        overrides=["lr=1e-3", "t_max=1e4", "double_q=false",
                   "env.payoff=[[11,-30,0],[-30,7,6],[0,0,5]]"],
    )  # fmt: skip
    assert cfg.lr == 0.001 and type(cfg.lr) is float
    assert cfg.t_max == 10_000 and type(cfg.t_max) is int
    assert cfg.double_q is False
    assert cfg.env["payoff"] == [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
    # An int given for a float key becomes a float.
    assert type(resolve("matrix", "qmix", overrides=["lr=1"]).lr) is float


@pytest.mark.parametrize("item", ["lr", "lr:0.1", ""])
def test_override_without_equals(item):
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_override(item)


def test_override_unparsable_yaml():
    with pytest.raises(ConfigError, match="cannot parse value"):
        parse_override("env.payoff=[[1,2]")


def test_nested_keys_other_than_env_are_rejected():
    with pytest.raises(ConfigError, match=r"only env\.<param> keys are nested"):
        resolve("matrix", "qmix", overrides=["optim.lr=0.1"])


# ---------------------------------------------------------------- errors
def test_unknown_key_names_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as info:
        resolve("matrix", "qmix", overrides=["learning_rat=0.1"])
    msg = str(info.value)
    assert "unknown config key 'learning_rat'" in msg
    assert "Valid keys:" in msg and "batch_size" in msg and "td_lambda" in msg
    with pytest.raises(ConfigError, match=r"Did you mean 'batch_size'\?"):
        resolve("matrix", "qmix", overrides=["batch_sise=4"])


@pytest.mark.parametrize(
    ("item", "pattern"),
    [
        ("lr=abc", "lr must be a number, got 'abc'"),
        ("lr=true", "lr must be a number"),
        ("batch_size=1.5", "batch_size must be an integer, got 1.5"),
        ("batch_size=abc", "batch_size must be an integer"),
        ("seed=true", "seed must be an integer"),
        ("double_q=3", "double_q must be true or false, got 3"),
        ("double_q=yes please", "double_q must be true or false"),
        ("optimizer=sgd", r"optimizer must be one of \['rmsprop', 'adam'\]"),
        ("device=tpu", "device must be one of"),
        ("env=3", "env must be a mapping"),
        ("map_name=[1]", "map_name must be a string"),
    ],
)
def test_wrong_type(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve("matrix", "qmix", overrides=[item])


def test_unknown_env_parameter():
    with pytest.raises(ConfigError) as info:
        resolve("predator_prey", "qmix", overrides=["env.n_pray=3"])
    msg = str(info.value)
    assert "unknown environment parameter env.n_pray for 'predator_prey'" in msg
    assert "Did you mean 'n_prey'?" in msg
    assert "env.n_agents (default 8)" in msg


def test_unknown_algorithm_suggests():
    with pytest.raises(ConfigError) as info:
        resolve("matrix", "qmx")
    msg = str(info.value)
    assert "unknown algorithm 'qmx'" in msg and "Did you mean 'qmix'?" in msg
    assert all(a in msg for a in ALGORITHMS)


def test_unknown_environment_suggests():
    with pytest.raises(ConfigError) as info:
        resolve("predator_pray", "qmix")
    msg = str(info.value)
    assert "unknown environment 'predator_pray'" in msg
    assert "Did you mean 'predator_prey'?" in msg


@pytest.mark.parametrize(
    ("item", "pattern"),
    [
        ("batch_size=0", "batch_size must be > 0, got 0"),
        ("t_max=-5", "t_max must be > 0"),
        ("lr=0", "lr must be > 0"),
        ("buffer_size=0", "buffer_size must be > 0"),
        ("test_nepisode=-1", "test_nepisode must be >= 0"),
        ("grad_norm_clip=-1", "grad_norm_clip must be > 0"),
        ("grad_norm_clip=0", "grad_norm_clip must be > 0"),
        ("gamma=1.5", r"gamma must be in \[0, 1\], got 1.5"),
        ("td_lambda=-0.1", r"td_lambda must be in \[0, 1\]"),
        ("epsilon_finish=2", r"epsilon_finish must be in \[0, 1\]"),
        ("w=1.1", r"w must be in \[0, 1\]"),
        ("updates_per_iteration=0", "updates_per_iteration must be > 0, got 0"),
        ("student_lr=0", "student_lr must be > 0"),
    ],
)
def test_out_of_range(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve("matrix", "qmix", overrides=[item])


def test_updates_per_iteration_must_be_a_whole_number():
    with pytest.raises(ConfigError, match=r"updates_per_iteration must be an integer, got 1\.5"):
        resolve("matrix", "qmix", overrides=["updates_per_iteration=1.5"])


def test_paper_presets_make_one_update_per_episode():
    """PyMARL's runner (the paper's) makes one update per collected episode."""
    for cfg in (resolve("smax", "qmix", "3m"), resolve("smac", "ddn", "MMM2")):
        assert cfg.updates_per_iteration == cfg.batch_size_run == 8
    assert resolve("predator_prey", "qmix").updates_per_iteration == 1  # ddn's own default


def test_student_and_idm_learning_rates_follow_lr_unless_set():
    cfg = resolve("smax", "ddn", "3s5z_vs_3s6z")  # the paper's lr 1e-3 on this map
    assert (cfg.lr, cfg.student_lr, cfg.idm_lr) == (0.001, 0.001, 0.001)
    default = resolve("predator_prey", "ddn")
    assert (default.lr, default.student_lr, default.idm_lr) == (0.0005, 0.0005, 0.0005)
    own = resolve("predator_prey", "ddn", overrides=["lr=0.002", "idm_lr=0.0001"])
    assert (own.student_lr, own.idm_lr) == (0.002, 0.0001)


def test_boundary_values_are_accepted():
    cfg = resolve("matrix", "qmix", overrides=["gamma=1", "td_lambda=0", "test_nepisode=0"])
    assert (cfg.gamma, cfg.td_lambda, cfg.test_nepisode) == (1.0, 0.0, 0)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_from_dict_checks_plain_dicts():
    cfg = config.from_dict({"algo": "vdn", "env_name": "matrix", "lr": 2})
    assert cfg.lr == 2.0 and cfg.algo == "vdn"
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        config.from_dict({"nope": 1})


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    cfg = resolve(
        "matrix", "cw_qmix",
        overrides=["lr=1e-3", "double_q=false", "env.payoff=[[11,-30,0],[-30,7,6],[0,0,5]]"],
        seed=5,
    )  # fmt: skip
    path = tmp_path / "config.yaml"
    config.save(cfg, path)
    loaded = config.load(path)
    assert loaded == cfg
    assert loaded.to_dict() == cfg.to_dict()
    # A readable YAML mapping with every key.
    data = yaml.safe_load(path.read_text())
    assert set(data) == set(config.keys())
    assert data["env"]["payoff"][0] == [11, -30, 0]


def test_predator_prey_round_trip(tmp_path):
    cfg = resolve("predator_prey", "qplex", overrides=["env.n_prey=3", "map_name=null"])
    config.save(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config.load(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        config.load(bad)
    bad.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="lr must be a number"):
        config.load(bad)
