"""The recorder: runs a guest on the live host and logs every input into a trace.

``RecordSession`` builds the Machine, taps its ``LiveBoundary`` so that every answer
from the host goes to the ``TraceWriter`` with its icount, and between slices adds
state digests and checkpoints. replay/ is its mirror image.
"""

from recorder.session import RecordSession, RecordSummary

__all__ = ["RecordSession", "RecordSummary"]
