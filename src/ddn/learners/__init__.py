"""Learners: the value-decomposition TD learner (and DDN built on it)."""

from ddn.learners.value_decomposition import VDLearner

__all__ = ["VDLearner"]
