"""The algorithm registry: every algorithm ddn trains, declared once.

An :class:`Algorithm` says everything the rest of ddn needs to know about a method:
its name and display label, how to build its learner, its TD objective and mixer (for
the value-decomposition methods and DDN's teacher), its own config section, the
networks it evaluates (and under which names), and the method it is built on. The CLI
(``ddn list``, ``--algo``), the config's keys, the training loop, ``ddn evaluate`` and
``export``, sweeps, plots and reports all read it from here. Adding an algorithm is
one module plus one :func:`register` call here: docs/adding-an-algorithm.md walks
through an example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from ddn.config import (
    Config,
    ConfigError,
    MixerConfig,
    declare_section,
    follows,
    fraction,
    non_negative,
    positive,
)
from ddn.envs import EnvSpec
from ddn.learners.base import STUDENT_PREFIX, TEACHER_PREFIX, Learner
from ddn.learners.ctds import CTDSLearner, TeacherObsConfig
from ddn.learners.ddn import DDNLearner
from ddn.learners.igm_da import IGMBCLearner, IGMDAConfig, IGMDALearner
from ddn.learners.objectives import IndependentTD, MixerTD, QTranTD, TDObjective, WeightedQMixTD
from ddn.learners.ptde import PTDEConfig, PTDELearner
from ddn.learners.value_decomposition import VDLearner
from ddn.nets.mixers import Mixer, QattenMixer, QMixer, QPLEXMixer, VDNMixer
from ddn.suggest import suggest

# (cfg, spec, device) -> the learner; (cfg, spec) -> the objective, the mixer.
LearnerFactory = Callable[[Config, EnvSpec, torch.device], Learner]
ObjectiveFactory = Callable[[Config, EnvSpec], TDObjective]
MixerFactory = Callable[[Config, EnvSpec], Mixer]


# ---------------------------------------------------------------------- config sections
@dataclass
class WQMIXConfig:
    """Weighted QMIX (CW-QMIX, OW-QMIX)."""

    w: float = fraction(0.1)  # weight of the down-weighted joint actions (alpha in the paper)
    central_mixing_embed_dim: int = positive(256)
    central_loss: float = 1.0
    qmix_loss: float = 1.0


@dataclass
class QTRANConfig:
    """QTRAN-base's constraint weights."""

    opt_loss: float = 1.0
    nopt_min_loss: float = 0.1


@dataclass
class DDNConfig:
    """DDN (ddn* algorithms; docs/ddn.md maps each switch to the paper's tables)."""

    personalized_state: bool = True  # GGN input: PFB personalized state, else raw [S, o_i, ...]
    fusion_dim: int = positive(32)  # d: width of the PFB / IOB outputs
    fusion_hypernet_dim: int = positive(4)  # h: rank of the hypernetwork producing W_i
    act_with: Literal["teacher", "student"] = "teacher"
    # LPN's Adam learning rate (paper B.3: 5e-4); unset, it follows lr, so a preset that
    # changes lr (3s5z_vs_3s6z: 1e-3) changes it for every network.
    student_lr: float | None = follows("lr")
    distill_block: bool = True  # L_B
    w_block: float = non_negative(1.0)
    distill_q: bool = True  # L_Q
    w_q: float = non_negative(1.0)
    distill_feature: bool = True  # L_F
    w_feature: float = non_negative(1.0)
    distill_temperature: float = positive(1.0)
    idm: bool = True  # Internal Distillation Module (RND on the global state)
    idm_mask_prob: float = fraction(0.75)  # mu: Bernoulli probability that a transition gets r_I
    idm_coef: float = non_negative(0.1)  # r_I = idm_coef * m * e / running_rms(e)
    idm_next_state: bool = True  # novelty of S^{t+1} (as RND); false: of S^t
    idm_normalize: bool = True  # divide e by its running root mean square
    idm_embed_dim: int = positive(64)
    idm_lr: float | None = follows("lr")  # IDM predictor's Adam lr; unset, it follows lr


# ---------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class EvaluationPolicy:
    """A network an algorithm tests: ``name`` is what ``--policy`` takes and
    episodes.jsonl records, ``prefix`` its metrics' prefix, ``label`` what plots and
    tables call it next to the algorithm's label ("" for a run's only network)."""

    name: Literal["teacher", "student"]
    prefix: str
    label: str


ONLY_NETWORK = (EvaluationPolicy("teacher", TEACHER_PREFIX, ""),)


def teacher_student(teacher: str = "teacher", student: str = "student") -> tuple:
    """The policies of a teacher-student method, labelled as it names its networks."""
    return (
        EvaluationPolicy("teacher", TEACHER_PREFIX, teacher),
        EvaluationPolicy("student", STUDENT_PREFIX, student),
    )


@dataclass(frozen=True)
class Algorithm:
    name: str  # what --algo takes and config.yaml records
    label: str  # display name in plots and tables (the paper's)
    description: str  # one line for `ddn list`
    learner: LearnerFactory
    # The TD objective and mixer of a value-decomposition method (the learner's
    # objective asks for them; DDN's teacher trains with its base method's).
    objective: ObjectiveFactory | None = None
    mixer: MixerFactory | None = None
    # Its own config sections (keys beyond the common ones), declared at registration.
    sections: tuple[type, ...] = ()
    policies: tuple[EvaluationPolicy, ...] = ONLY_NETWORK
    base: str | None = None  # the registered method it is built on (ddn_vdn: vdn)
    family: str = ""  # what reports group by (every DDN variant: "ddn"); default its name
    keys: tuple[str, ...] = field(default=(), init=False)  # its sections' keys

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)
        names = tuple(f for s in self.sections for f in s.__dataclass_fields__)
        object.__setattr__(self, "keys", names)

    @property
    def base_method(self) -> str:
        """The value-decomposition method under it (itself for a base method)."""
        return self.base or self.name

    @property
    def has_student(self) -> bool:
        return any(p.name == "student" for p in self.policies)

    def policy(self, name: str) -> EvaluationPolicy:
        """The evaluated network called ``name``, or one ConfigError."""
        for p in self.policies:
            if p.name == name:
                return p
        raise ConfigError(f"this run ({self.name}) has no {name} network; use --policy teacher")

    def policy_by_prefix(self, prefix: str) -> EvaluationPolicy:
        for p in self.policies:
            if p.prefix == prefix:
                return p
        raise KeyError(f"{self.name} declares no evaluation policy with prefix {prefix!r}")

    def learning_rate_keys(self) -> list[str]:
        """Its learning-rate keys (``lr`` and any ``*_lr`` of its sections)."""
        return ["lr", *(k for k in self.keys if k.endswith("_lr"))]


_REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Add ``algorithm`` (and make its sections' keys config keys)."""
    if algorithm.name in _REGISTRY:
        raise ValueError(f"algorithm {algorithm.name!r} is registered twice")
    if algorithm.base is not None and algorithm.base not in _REGISTRY:
        raise ValueError(f"{algorithm.name}: base {algorithm.base!r} must be registered first")
    for section in algorithm.sections:
        declare_section(section)
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def find_algorithm(name: str) -> Algorithm | None:
    return _REGISTRY.get(name)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``, or one ConfigError that suggests the closest."""
    found = _REGISTRY.get(name)
    if found is None:
        raise ConfigError(
            f"unknown algorithm {name!r}.{suggest(name, _REGISTRY)} "
            f"Valid algorithms: {', '.join(_REGISTRY)}"
        )
    return found


def algorithm_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def all_algorithms() -> Iterator[Algorithm]:
    return iter(tuple(_REGISTRY.values()))


def label(name: str) -> str:
    """Display label; a name not registered (an old run's) shows as itself."""
    found = _REGISTRY.get(name)
    return found.label if found is not None else name


def policies_of(name: str) -> tuple[EvaluationPolicy, ...]:
    """The evaluated networks of ``name`` (one, for a name not registered)."""
    found = _REGISTRY.get(name)
    return found.policies if found is not None else ONLY_NETWORK


# ---------------------------------------------------------------------- built-in methods
def _qmix_mixer(cfg: MixerConfig, spec: EnvSpec) -> Mixer:
    return QMixer(
        spec.n_agents, spec.state_dim, embed_dim=cfg.mixing_embed_dim,
        hypernet_layers=cfg.hypernet_layers, hypernet_embed=cfg.hypernet_embed,
    )  # fmt: skip


def _qatten_mixer(cfg: MixerConfig, spec: EnvSpec) -> Mixer:
    return QattenMixer(spec.n_agents, spec.state_dim, embed_dim=cfg.mixing_embed_dim,
                       n_heads=cfg.n_head)  # fmt: skip


def _qplex_mixer(cfg: MixerConfig, spec: EnvSpec) -> Mixer:
    return QPLEXMixer(
        spec.n_agents, spec.state_dim, spec.n_actions, embed_dim=cfg.mixing_embed_dim,
        n_heads=cfg.n_head, adv_hypernet_layers=cfg.adv_hypernet_layers,
    )  # fmt: skip


def _vdn_mixer(cfg: MixerConfig, spec: EnvSpec) -> Mixer:
    return VDNMixer()


# IQL first: the no-mixer baseline every value-decomposition method is measured against.
BASE_METHODS = (
    Algorithm(
        "iql", "IQL", "independent Q-learning: each agent's own TD loss on the team reward",
        VDLearner, IndependentTD,
    ),
    Algorithm("vdn", "VDN", "Q_tot = sum of the agents' Q_i", VDLearner, MixerTD, _vdn_mixer),
    Algorithm("qmix", "QMIX", "monotonic hypernetwork mixer", VDLearner, MixerTD, _qmix_mixer),
    Algorithm("qatten", "Qatten", "multi-head attention mixer", VDLearner, MixerTD,
              _qatten_mixer),
    Algorithm("qplex", "QPLEX", "duplex dueling mixer", VDLearner, MixerTD, _qplex_mixer),
    Algorithm(
        "cw_qmix", "CW-QMIX", "centrally-weighted QMIX", VDLearner, WeightedQMixTD,
        sections=(WQMIXConfig,),
    ),
    Algorithm(
        "ow_qmix", "OW-QMIX", "optimistically-weighted QMIX", VDLearner, WeightedQMixTD,
        sections=(WQMIXConfig,),
    ),
    Algorithm(
        "qtran", "QTRAN", "QTRAN-base: free joint Q with the L_opt / L_nopt constraints",
        VDLearner, QTranTD, sections=(QTRANConfig,),
    ),
)  # fmt: skip


def ddn_on(base: Algorithm, name: str | None = None, label: str | None = None) -> Algorithm:
    """DDN with ``base``'s TD objective and mixer training its teacher (GGN)."""
    return Algorithm(
        name or f"ddn_{base.name}",
        label or f"{base.label}_DDN",
        f"DDN (GGN teacher, LPN student, IDM) on {base.label}",
        DDNLearner,
        base.objective,
        base.mixer,
        sections=(*base.sections, DDNConfig),
        policies=teacher_student("GGN", "LPN"),
        base=base.name,
        family="ddn",
    )


for _method in BASE_METHODS:
    register(_method)
# Plain "ddn" is the paper's headline: DDN on QMIX.
register(ddn_on(get_algorithm("qmix"), name="ddn", label="DDN"))
for _method in BASE_METHODS:
    register(ddn_on(_method))


def rival_on(
    base: Algorithm,
    name: str,
    label: str,
    description: str,
    learner: LearnerFactory,
    sections: tuple[type, ...],
    family: str,
) -> Algorithm:
    """One of DDN's Table 2 rivals (docs/rivals.md): a teacher trained by ``base``'s
    TD objective and mixer, and a student on local observations."""
    return Algorithm(
        name, label, description, learner, base.objective, base.mixer,
        sections=(*base.sections, *sections), policies=teacher_student(),
        base=base.name, family=family,
    )  # fmt: skip


_CTDS = "a teacher on privileged inputs, a local student regressed onto its Q-values"
register(rival_on(get_algorithm("qmix"), "ctds", "CTDS", _CTDS, CTDSLearner,
                  (TeacherObsConfig,), "ctds"))  # fmt: skip
for _name, _base in (("ctds_vdn", "vdn"), ("ctds_qplex", "qplex")):
    _method = get_algorithm(_base)
    register(rival_on(_method, _name, f"CTDS ({_method.label})", f"{_CTDS}, on {_method.label}",
                      CTDSLearner, (TeacherObsConfig,), "ctds"))  # fmt: skip
_PTDE = "GIP teacher on the state, its z distilled offline into a local MLP after the budget"
register(rival_on(get_algorithm("qmix"), "ptde", "PTDE", _PTDE, PTDELearner, (PTDEConfig,),
                  "ptde"))  # fmt: skip
# PTDE's code has a VDN version (gire_z_vdn), IGM-DA's a QPLEX one (qplex_HDA).
_vdn = get_algorithm("vdn")
register(rival_on(_vdn, "ptde_vdn", "PTDE (VDN)", f"{_PTDE}, on VDN", PTDELearner,
                  (PTDEConfig,), "ptde"))  # fmt: skip
_IGM = "an expert on more information, a local learner imitating it"
for _suffix, _base in (("", "qmix"), ("_qplex", "qplex")):
    _method = get_algorithm(_base)
    _label, _on = (f", {_method.label}", f", on {_method.label}") if _suffix else ("", "")
    for _kind, _variant, _how, _learner in (
        ("da", "DAgger", "DAgger", IGMDALearner),
        ("bc", "BC", "behaviour cloning", IGMBCLearner),
    ):
        register(rival_on(_method, f"igm_{_kind}{_suffix}", f"IGM-DA ({_variant}{_label})",
                          f"{_IGM} ({_how}){_on}", _learner,
                          (TeacherObsConfig, IGMDAConfig), "igm"))  # fmt: skip
