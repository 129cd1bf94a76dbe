"""The virtual machine: an x86-64 CPU on Unicorn, RAM, devices, and the run loop.

Import the parts you need (``vmm.machine.Machine``, ``vmm.boundary.LiveBoundary``);
this package imports nothing on its own so that ``trace_format`` can use
``vmm.errors`` without pulling in Unicorn.
"""
