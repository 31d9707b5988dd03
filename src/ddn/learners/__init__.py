"""Learners: the value-decomposition TD learner, and DDN built on it by composition."""

from ddn.learners.ddn import DDNLearner
from ddn.learners.value_decomposition import VDLearner

__all__ = ["DDNLearner", "VDLearner"]
