"""A simulated Asterisk for demos, tests and the end-to-end benchmark.

- ``Simulation.start(clock, agents=..., profile=...)``: a call centre with traffic on an AMI
  socket (simulation.py).
- ``SimPbx``: the PBX itself, scriptable (``place_call``, ``pause``, Originate via AMI).
- ``TrafficProfile`` / ``load_profile``: config/traffic.toml; ``plan_day``: a seeded day.
- ``Ledger``: what really happened to every subscriber.
- ``SCENARIOS`` / ``play``: the shared captures' scenarios, scripted.
- ``Recorder``: the simulator's traffic in the capture format.
"""

from .ledger import CallbackRecord, InboundRecord, Ledger, SubscriberRecord
from .model import AgentSpec, CallerScript, CustomerResponse, PbxSpec, QueueSpec
from .pbx import SimPbx
from .profile import ProfileError, TrafficProfile, load_profile
from .recording import Recorder
from .scenarios import SCENARIOS, play, run_for
from .simulation import Simulation, with_agents
from .traffic import DayPlan, TrafficRunner, plan_day

__all__ = [
    "SCENARIOS",
    "AgentSpec",
    "CallbackRecord",
    "CallerScript",
    "CustomerResponse",
    "DayPlan",
    "InboundRecord",
    "Ledger",
    "PbxSpec",
    "ProfileError",
    "QueueSpec",
    "Recorder",
    "SimPbx",
    "Simulation",
    "SubscriberRecord",
    "TrafficProfile",
    "TrafficRunner",
    "load_profile",
    "plan_day",
    "play",
    "run_for",
    "with_agents",
]
