"""Learners: the value-decomposition TD learner, DDN built on it by composition, and
DDN's Table 2 rivals (CTDS, PTDE, IGM-DA) built the same way."""

from ddn.learners.ctds import CTDSLearner
from ddn.learners.ddn import DDNLearner
from ddn.learners.igm_da import IGMBCLearner, IGMDALearner
from ddn.learners.ptde import PTDELearner
from ddn.learners.value_decomposition import VDLearner

__all__ = ["CTDSLearner", "DDNLearner", "IGMBCLearner", "IGMDALearner", "PTDELearner", "VDLearner"]
