"""harden's passes, one file each, and the registry every tool reads."""

from harden.core.pass_base import Pass
from harden.passes.fuse_qkv import FuseQKV
from harden.passes.lower_harden import LowerHardenOps
from harden.passes.lower_linear import LowerLinear
from harden.passes.stream_schedule import StreamSchedule
from harden.passes.ternarize import Ternarize
from harden.passes.ternary_policy import TernaryPolicy
from harden.passes.verify_backend_contract import VerifyBackendContract
from harden.passes.verify_schedule import VerifySchedule

# In pipeline order, as --list-passes shows them.
PASS_CLASSES: list[type[Pass]] = [
    FuseQKV,
    TernaryPolicy,
    Ternarize,
    StreamSchedule,
    VerifySchedule,
    LowerHardenOps,
    LowerLinear,
    VerifyBackendContract,
]

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in PASS_CLASSES}
