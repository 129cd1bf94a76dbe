"""gdb remote protocol server for vmrr traces: ``vmrr gdbserver TRACE``.

``protocol`` frames packets, ``target`` describes the x86-64 registers to gdb, ``server``
answers gdb's requests from a ``replay.timetravel.TimeTravel``, ``monitor`` runs the
``monitor`` commands. The package is a client of ``replay/``; the core never imports it.
"""
