"""One widget per file; each renders a ``tui.session.Moment`` and never touches TimeTravel."""
