"""The command lines (``tools/*.py`` and the installed ``sdfseg-*`` commands): argument parsing, then a
call into the package; every error is one line and exit 2 (:func:`sdfseg.errors.run_cli`)."""
