"""A simulated Asterisk for demos, tests and the end-to-end benchmark.

- ``Simulation.start(clock, agents=..., profile=...)``: a call centre with traffic on an AMI
  socket (simulation.py).
- ``SimPbx``: the PBX itself, scriptable (``place_call``, ``pause``, Originate via AMI).
- ``TrafficProfile`` / ``load_profile``: config/traffic.toml; ``plan_day``: a seeded day.
- ``Ledger``: what really happened to every subscriber.
- ``SCENARIOS`` / ``play``: the shared captures' scenarios, scripted.
- ``Recorder``: the simulator's traffic in the capture format.
- ``Clock``: what the simulator needs of a clock (the dialer's clocks fit); ``ManualClock`` and
  ``run_for`` move time by hand.
"""

from .clock import Clock, ManualClock, run_for
from .ledger import CallbackRecord, InboundRecord, Ledger, SubscriberRecord
from .model import AgentSpec, CallerScript, CustomerResponse, PbxSpec, QueueSpec
from .pbx import SimPbx
from .profile import ProfileError, TrafficProfile, load_profile
from .recording import Recorder
from .scenarios import SCENARIOS, play
from .simulation import Simulation, with_agents
from .traffic import DayPlan, TrafficRunner, plan_day

__all__ = [
    "SCENARIOS",
    "AgentSpec",
    "CallbackRecord",
    "CallerScript",
    "Clock",
    "CustomerResponse",
    "DayPlan",
    "InboundRecord",
    "Ledger",
    "ManualClock",
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
