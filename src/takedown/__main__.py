"""``python -m takedown`` runs the CLI."""

from takedown.cli import main

main()
