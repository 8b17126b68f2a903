"""Lifeguard's local health multiplier (LHM): how much this node distrusts its own timeliness.

Rules (memberlist ``awareness.go``):

- The score is an integer clamped to [0, max_multiplier - 1].
- It goes up by one per expected nack that did not arrive after a failed probe (by one if no
  relay was asked), and by one each time this node has to refute an accusation about itself.
- It goes down by one after every successful probe.
- The probe interval is multiplied by (score + 1); the ack timeout is not.

A node that cannot even hear nacks from its relays is probably the slow one, so it probes less
often and gives its peers longer to answer, instead of accusing them.
"""

from __future__ import annotations


class Awareness:
    """The LHM score of one node."""

    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier - 1
        self.score = 0

    def apply(self, delta: int) -> None:
        """Move the score by ``delta``, staying inside the clamp."""
        self.score = min(self._max, max(0, self.score + delta))

    def scale(self, duration: float) -> float:
        """``duration`` stretched by the current health."""
        return duration * (self.score + 1)
