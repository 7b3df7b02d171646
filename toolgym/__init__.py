"""toolgym: automatically built tool-use scenarios as registered Gymnasium environments (FTRL).

Importing the package registers every pack in ``envs_generated/`` as ``ToolGym/<Name>-v<N>``, so
``gym.make("ToolGym/FlightBooking-v0")`` (or ``gym.make("toolgym:ToolGym/FlightBooking-v0")``) works, and
``gym.make_vec("ToolGym/FlightBooking-v0", num_envs=n)`` gives the batched :class:`ToolVectorEnv`.
"""

from toolgym.curriculum import Curriculum, CurriculumEnv, CurriculumState
from toolgym.env import ToolEnv
from toolgym.packs import PackError, load_scenarios, scenario_from_ftrl
from toolgym.registry import register_all, register_pack, registered_ids
from toolgym.scenario import KINDS, Scenario, StateCheck, SubTask
from toolgym.sources import ProceduralSource, StaticSource
from toolgym.vector import ToolVectorEnv, make_async

__version__ = "0.1.0"
__all__ = [
    "KINDS",
    "Curriculum",
    "CurriculumEnv",
    "CurriculumState",
    "PackError",
    "ProceduralSource",
    "Scenario",
    "StateCheck",
    "StaticSource",
    "SubTask",
    "ToolEnv",
    "ToolVectorEnv",
    "load_scenarios",
    "make_async",
    "register_all",
    "register_pack",
    "registered_ids",
    "scenario_from_ftrl",
]

register_all()
