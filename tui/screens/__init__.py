"""The screens of the debugger: the main one, help, and the one-line prompt."""
