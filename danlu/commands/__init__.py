"""Sub-commands of the later packages, one module each (see danlu/cli.py: COMMAND_MODULES)."""
