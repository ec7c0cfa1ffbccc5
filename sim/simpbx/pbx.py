"""The simulated PBX: the switch (switch.py) with the calls that can be placed on it.

``SimPbx`` is what callers of the simulator hold: one Asterisk's state and output (``Switch``)
and the entry point of an inbound call through the IVR (inbound.py). Originate comes in over
AMI (ami.py, originate.py) and needs only the switch.
"""

from __future__ import annotations

from .inbound import InboundCall
from .model import CallerScript
from .switch import Switch


class SimPbx(Switch):
    def place_call(
        self,
        number: str,
        script: CallerScript | None = None,
        *,
        tag: str = "",
        internal: bool = False,
    ) -> InboundCall:
        """A subscriber (or, ``internal``, an office phone) calls the IVR now."""
        call = InboundCall(self, number, script or CallerScript(), tag=tag, internal=internal)
        self.scheduler.run(call.start)
        return call
